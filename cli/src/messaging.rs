//! `tern send`, `tern consume` and `tern message` (lookup by key, id or queue offset).

use std::io::BufRead;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde::Serialize;
use tern_client::consumer::PullStatus;
use tern_client::{ClientError, ConsumeFrom, Producer, PullConsumer, SendResult};
use tern_common::message::{decode_offset_msg_id, Message, MessageExt};
use tern_common::protocol::ResponseCode;
use tern_common::route::MessageQueue;

use crate::admin::AdminClient;
use crate::output::{print_json, print_json_line, print_message, MessageView};
use crate::time_arg::now_ms;

/// Largest line `tern send` reads from standard input, in bytes (the broker's default
/// `max_message_size`).
const MAX_STDIN_LINE_BYTES: usize = 4 * 1024 * 1024;

/// `tern message ...`
#[derive(Debug, Subcommand)]
pub(crate) enum MessageCmd {
    /// Messages of a topic with this key (QUERY_MESSAGE on every broker of the topic).
    Key {
        /// Topic.
        topic: String,
        /// Message key (exact match).
        key: String,
        /// Most messages to show.
        #[arg(long, default_value_t = 32)]
        max: i32,
        /// Body bytes to preview.
        #[arg(long, default_value_t = 256)]
        preview_bytes: usize,
    },
    /// A message by id: a broker offset id (offsetMsgId), or with `--topic` also a client
    /// id (msgId, the UNIQ_KEY).
    Id {
        /// The id (32 hex digits for IPv4 brokers).
        id: String,
        /// Topic, needed to look a client msgId up.
        #[arg(short = 't', long)]
        topic: Option<String>,
        /// Body bytes to preview.
        #[arg(long, default_value_t = 256)]
        preview_bytes: usize,
    },
    /// The message at a queue offset.
    At {
        /// Topic.
        topic: String,
        /// Broker name (as in `tern topic route`).
        broker: String,
        /// Queue id.
        queue: i32,
        /// Queue offset.
        offset: i64,
        /// Body bytes to preview.
        #[arg(long, default_value_t = 256)]
        preview_bytes: usize,
    },
}

/// `tern send TOPIC [BODY...]`
#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// Topic.
    topic: String,
    /// Message bodies; none: one message per line of standard input.
    bodies: Vec<String>,
    /// Tag of every message.
    #[arg(long)]
    tag: Option<String>,
    /// Keys of every message (comma-separated).
    #[arg(long)]
    keys: Option<String>,
    /// Delay level (1 = 1s, 2 = 5s, ... with the default table).
    #[arg(long)]
    delay_level: Option<u32>,
    /// Extra property `NAME=VALUE` (repeatable).
    #[arg(long = "property", value_name = "NAME=VALUE")]
    properties: Vec<String>,
    /// Producer group.
    #[arg(long, default_value = "tern-cli-producer")]
    group: String,
}

/// `tern consume TOPIC`
#[derive(Debug, Args)]
pub(crate) struct ConsumeArgs {
    /// Topic.
    topic: String,
    /// Consumer group; default a fresh one per run (`tern-cli-<pid>`), whose offsets
    /// nobody else reads.
    #[arg(short = 'g', long)]
    group: Option<String>,
    /// Tag expression (`*`, `TagA`, `TagA || TagB`).
    #[arg(long, default_value = "*")]
    tag: String,
    /// For a group with no committed offset: start at each queue's first message.
    #[arg(long)]
    from_beginning: bool,
    /// Stop after this many messages.
    #[arg(short = 'c', long)]
    count: Option<u64>,
    /// Keep waiting for new messages (until Ctrl-C or --count).
    #[arg(short = 'f', long)]
    follow: bool,
    /// Without --follow: stop after this long with no new message, in milliseconds.
    #[arg(long, default_value_t = 3000, value_name = "MS")]
    timeout_ms: u64,
    /// Read one queue directly from --offset (needs --broker and --queue); commits nothing.
    #[arg(long, requires_all = ["queue", "offset"])]
    broker: Option<String>,
    /// Queue id (with --broker).
    #[arg(long, requires = "broker")]
    queue: Option<i32>,
    /// Queue offset to start from (with --broker).
    #[arg(long, requires = "broker")]
    offset: Option<i64>,
    /// Body bytes to preview.
    #[arg(long, default_value_t = 256)]
    preview_bytes: usize,
}

/// One send's outcome as printed.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SendView {
    status: String,
    msg_id: String,
    offset_msg_id: String,
    topic: String,
    broker_name: String,
    queue_id: i32,
    queue_offset: i64,
}

impl SendView {
    fn of(r: &SendResult) -> Self {
        SendView {
            status: format!("{:?}", r.status),
            msg_id: r.msg_id.clone(),
            offset_msg_id: r.offset_msg_id.clone(),
            topic: r.message_queue.topic.clone(),
            broker_name: r.message_queue.broker_name.clone(),
            queue_id: r.message_queue.queue_id,
            queue_offset: r.queue_offset,
        }
    }
}

fn build_message(args: &SendArgs, body: Vec<u8>) -> Result<Message> {
    let mut msg = Message::new(args.topic.clone(), body);
    if let Some(tag) = &args.tag {
        msg = msg.with_tags(tag.clone());
    }
    if let Some(keys) = &args.keys {
        msg = msg.with_keys(keys.split(',').map(str::trim).filter(|k| !k.is_empty()));
    }
    if let Some(level) = args.delay_level {
        msg = msg.with_delay_level(level);
    }
    for p in &args.properties {
        let Some((k, v)) = p.split_once('=') else {
            bail!("--property `{p}` is not NAME=VALUE");
        };
        msg = msg.with_property(k.trim(), v);
    }
    Ok(msg)
}

/// Runs `tern send`.
pub(crate) async fn send(admin: &AdminClient, args: SendArgs, json: bool) -> Result<()> {
    let producer = Producer::builder()
        .namesrv_addr(&admin.namesrv_joined())
        .group(args.group.clone())
        .build()
        .await
        .context("starting the producer")?;
    let result = send_all(&producer, &args, json).await;
    producer.shutdown().await;
    result
}

async fn send_all(producer: &Producer, args: &SendArgs, json: bool) -> Result<()> {
    let mut sent = 0u64;
    let mut one = |r: SendResult| -> Result<()> {
        sent += 1;
        let v = SendView::of(&r);
        if json {
            print_json_line(&v)
        } else {
            println!(
                "sent status={} msgId={} offsetMsgId={} topic={} broker={} queue={} offset={}",
                v.status,
                v.msg_id,
                v.offset_msg_id,
                v.topic,
                v.broker_name,
                v.queue_id,
                v.queue_offset
            );
            Ok(())
        }
    };
    if args.bodies.is_empty() {
        let stdin = std::io::stdin();
        let mut reader = stdin.lock();
        let mut line = Vec::new();
        // Bounded: each line is at most MAX_STDIN_LINE_BYTES; stops at end of input.
        loop {
            line.clear();
            let n = std::io::Read::take(&mut reader, MAX_STDIN_LINE_BYTES as u64 + 1)
                .read_until(b'\n', &mut line)
                .context("reading standard input")?;
            if n == 0 {
                break;
            }
            if line.len() > MAX_STDIN_LINE_BYTES {
                bail!("a line of standard input is longer than {MAX_STDIN_LINE_BYTES} bytes");
            }
            while matches!(line.last(), Some(b'\n' | b'\r')) {
                line.pop();
            }
            let msg = build_message(args, line.clone())?;
            one(producer.send(msg).await.context("sending")?)?;
        }
    } else {
        for body in &args.bodies {
            let msg = build_message(args, body.clone().into_bytes())?;
            one(producer.send(msg).await.context("sending")?)?;
        }
    }
    if sent == 0 {
        bail!("nothing to send: give bodies as arguments or lines on standard input");
    }
    Ok(())
}

fn emit(m: &MessageExt, json: bool, preview: usize) -> Result<()> {
    if json {
        print_json_line(&MessageView::of(m))
    } else {
        print_message(m, preview);
        Ok(())
    }
}

/// Runs `tern consume`.
pub(crate) async fn consume(admin: &AdminClient, args: ConsumeArgs, json: bool) -> Result<()> {
    let group = args
        .group
        .clone()
        .unwrap_or_else(|| format!("tern-cli-{}-{}", std::process::id(), now_ms()));
    let limit = args.count.unwrap_or(u64::MAX);
    let idle = Duration::from_millis(args.timeout_ms.max(1));
    let namesrv = admin.namesrv_joined();
    // Make the error for an unknown topic clear before any consumer starts.
    admin.require_route(&args.topic).await?;

    if args.broker.is_some() {
        let consumer = PullConsumer::builder()
            .namesrv_addr(&namesrv)
            .group(group)
            .auto_commit(false)
            .build()?;
        consumer.start().await?;
        let result = consume_queue(&consumer, &args, limit, idle, json).await;
        consumer.shutdown().await;
        return result;
    }

    let consumer = PullConsumer::builder()
        .namesrv_addr(&namesrv)
        .group(group)
        .subscribe(args.topic.clone(), args.tag.clone())
        .consume_from(if args.from_beginning {
            ConsumeFrom::First
        } else {
            ConsumeFrom::Last
        })
        .rebalance_interval(Duration::from_secs(5))
        .build()?;
    consumer.start().await?;
    let mut got = 0u64;
    let mut last_message = tokio::time::Instant::now();
    let result: Result<()> = async {
        while got < limit {
            let batch = tokio::select! {
                r = consumer.poll(Duration::from_millis(500)) => r?,
                _ = tokio::signal::ctrl_c() => break,
            };
            if batch.is_empty() {
                if !args.follow && last_message.elapsed() >= idle {
                    break;
                }
                continue;
            }
            last_message = tokio::time::Instant::now();
            for m in batch {
                if got >= limit {
                    break;
                }
                emit(&m, json, args.preview_bytes)?;
                got += 1;
            }
        }
        Ok(())
    }
    .await;
    let commit = consumer.commit().await;
    consumer.shutdown().await;
    result?;
    commit.context("committing offsets")?;
    if !json {
        eprintln!("consumed {got} message(s)");
    }
    if args.count.is_some_and(|c| got < c) {
        bail!("consumed {got} of {} message(s) before the timeout", limit);
    }
    Ok(())
}

/// Reads `args.queue` of `args.broker` from `args.offset` with raw pulls (no group offsets).
async fn consume_queue(
    consumer: &PullConsumer,
    args: &ConsumeArgs,
    limit: u64,
    idle: Duration,
    json: bool,
) -> Result<()> {
    let (Some(broker), Some(queue), Some(start)) =
        (args.broker.as_deref(), args.queue, args.offset)
    else {
        bail!("--broker, --queue and --offset go together");
    };
    let mq = MessageQueue::new(args.topic.clone(), broker, queue);
    let mut offset = start;
    let mut got = 0u64;
    let mut last_message = tokio::time::Instant::now();
    while got < limit {
        let max = i32::try_from((limit - got).min(32)).unwrap_or(32);
        let r = consumer.pull(&mq, offset, max).await?;
        match r.status {
            PullStatus::Found => {
                last_message = tokio::time::Instant::now();
                for m in &r.messages {
                    if got >= limit {
                        break;
                    }
                    emit(m, json, args.preview_bytes)?;
                    got += 1;
                }
            }
            PullStatus::OffsetIllegal if r.next_begin_offset == offset => {
                bail!(
                    "offset {offset} is outside queue {broker}/{queue} (min {}, max {})",
                    r.min_offset,
                    r.max_offset
                );
            }
            _ => {
                if !args.follow && last_message.elapsed() >= idle {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        offset = r.next_begin_offset;
    }
    if args.count.is_some_and(|c| got < c) {
        bail!("read {got} of {limit} message(s) from {broker}/{queue} before the timeout");
    }
    Ok(())
}

/// Runs a `message` command.
pub(crate) async fn message(admin: &AdminClient, cmd: MessageCmd, json: bool) -> Result<()> {
    match cmd {
        MessageCmd::Key {
            topic,
            key,
            max,
            preview_bytes,
        } => {
            admin.require_route(&topic).await?;
            let mut found = admin
                .sdk()
                .query_message_by_key(&topic, &key, max, 0, i64::MAX)
                .await?;
            found.sort_by_key(|m| m.store_timestamp);
            found.truncate(usize::try_from(max.max(0)).unwrap_or(0));
            print_found(&found, json, preview_bytes)
        }
        MessageCmd::Id {
            id,
            topic,
            preview_bytes,
        } => {
            let mut found = Vec::new();
            if let Some(topic) = &topic {
                admin.require_route(topic).await?;
                match admin.sdk().query_message_by_id(topic, &id).await {
                    Ok(m) => found.push(m),
                    Err(ClientError::Broker { code, .. })
                        if code == i32::from(ResponseCode::QueryNotFound) => {}
                    Err(err) => return Err(err.into()),
                }
            } else if let Ok((addr, phy)) = decode_offset_msg_id(&id) {
                if let Ok(m) = admin
                    .sdk()
                    .view_message_by_offset(&addr.to_string(), phy)
                    .await
                {
                    found.push(m);
                }
            }
            if found.is_empty() {
                bail!(
                    "no message with id {id}{}",
                    if topic.is_none() {
                        " (for a client msgId, give its topic with --topic)"
                    } else {
                        ""
                    }
                );
            }
            print_found(&found, json, preview_bytes)
        }
        MessageCmd::At {
            topic,
            broker,
            queue,
            offset,
            preview_bytes,
        } => {
            let consumer = PullConsumer::builder()
                .namesrv_addr(&admin.namesrv_joined())
                .group(format!("tern-cli-{}", std::process::id()))
                .auto_commit(false)
                .build()?;
            consumer.start().await?;
            let mq = MessageQueue::new(topic.clone(), broker.clone(), queue);
            let result = consumer.pull(&mq, offset, 1).await;
            consumer.shutdown().await;
            let r = result?;
            let Some(m) = r.messages.into_iter().find(|m| m.queue_offset == offset) else {
                bail!(
                    "no message at {topic} {broker}/{queue} offset {offset} (queue holds {}..{})",
                    r.min_offset,
                    r.max_offset
                );
            };
            print_found(&[m], json, preview_bytes)
        }
    }
}

fn print_found(found: &[MessageExt], json: bool, preview: usize) -> Result<()> {
    if json {
        let views: Vec<MessageView> = found.iter().map(MessageView::of).collect();
        return print_json(&views);
    }
    if found.is_empty() {
        println!("no message found");
    }
    for m in found {
        print_message(m, preview);
    }
    Ok(())
}
