//! Drives the unmodified crates.io RocketMQ client `rocketmq-client-rust` 1.0.0
//! (mxsm/rocketmq-rust) against a running Tern NameServer + broker, through the client's public
//! producer/consumer API only (the way its README and examples use it).
//!
//! ```text
//! compat-rocketmq-rust produce-consume NAMESRV TOPIC GROUP N
//! compat-rocketmq-rust ordered         NAMESRV TOPIC GROUP
//! compat-rocketmq-rust delay           NAMESRV TOPIC GROUP   # broker: --message-delay-level "1s 2s 3s"
//! compat-rocketmq-rust transaction     NAMESRV TOPIC GROUP   # broker: short transaction timings
//! compat-rocketmq-rust retry           NAMESRV TOPIC GROUP   # broker: --message-delay-level "1s 2s 3s"
//! ```
//!
//! Every run prints one final JSON line on stdout: `{"ok":bool,"scenario":..,"checks":[..],
//! "failures":[..],"elapsedMs":..,...}` and exits 0 only when every check passed (1 on a failed
//! check or client error, 2 on bad usage, 3 on the hard timeout). The hard timeout is
//! `TERN_TIMEOUT_MS` (default 90 000 ms); a watchdog thread ends the process 15 s after it even if
//! the client's shutdown hangs.
//!
//! Topics are never created explicitly: the first send goes to a topic the NameServer does not
//! know, so the client falls back to the `TBW102` route and the broker auto-creates the topic, as
//! with Apache RocketMQ's default `autoCreateTopicEnable=true`.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rocketmq_client_rust::{
    ClientConfig, ClientRuntime, ClientRuntimeConfig, ConsumeConcurrentlyContext,
    ConsumeConcurrentlyStatus, ConsumeOrderlyContext, ConsumeOrderlyStatus, DefaultMQProducer,
    DefaultMQPushConsumer, LocalTransactionState, MQPushConsumer, SendResult, TransactionListener,
    TransactionMQProducer,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_queue::MessageQueue;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_model::common::message::MessageTrait;
use rocketmq_observability::TelemetryRuntimeGuard;
use rocketmq_runtime::RuntimeOwner;
use serde_json::{json, Value};

/// Default hard timeout of one scenario, ms (`TERN_TIMEOUT_MS` overrides it).
const DEFAULT_TIMEOUT_MS: u64 = 90_000;
/// Send timeout handed to the client, ms.
const SEND_TIMEOUT_MS: u64 = 5_000;
/// Client route refresh and heartbeat interval, ms (Java default 30 s; 10 s is the client's
/// validated minimum, `ClientConfigValidator::MIN_POLL_NAME_SERVER_INTERVAL`).
const CLIENT_INTERVAL_MS: u32 = 10_000;
/// Consumer offset persist interval, ms (Java default 5 s; 1 s is the client's minimum).
const PERSIST_INTERVAL_MS: u32 = 1_000;
/// How long to keep listening after the expected messages arrived, to catch duplicates and
/// messages that must never arrive.
const SETTLE: Duration = Duration::from_secs(3);
/// Tag of the message that auto-creates a topic before a consumer subscribes to it.
const WARMUP_TAG: &str = "Warmup";

/// Named assertions of one run, reported in the summary line.
#[derive(Default)]
struct Checks {
    items: Vec<Value>,
}

impl Checks {
    fn check(&mut self, name: &str, ok: bool, detail: Value) {
        self.items
            .push(json!({ "name": name, "ok": ok, "detail": detail }));
    }

    fn all_ok(&self) -> bool {
        !self.items.is_empty()
            && self
                .items
                .iter()
                .all(|c| c.get("ok").and_then(Value::as_bool) == Some(true))
    }

    fn failures(&self) -> Vec<Value> {
        self.items
            .iter()
            .filter(|c| c.get("ok").and_then(Value::as_bool) != Some(true))
            .cloned()
            .collect()
    }
}

/// One consumed message, copied out of the listener.
#[derive(Clone, Debug)]
struct Received {
    at: Instant,
    topic: String,
    tags: String,
    keys: String,
    body: Vec<u8>,
    msg_id: String,
    uniq_key: String,
    queue_id: i32,
    queue_offset: i64,
    reconsume_times: i32,
    store_timestamp: i64,
    properties: BTreeMap<String, String>,
}

impl Received {
    fn from_ext(m: &MessageExt) -> Self {
        let properties: BTreeMap<String, String> = m
            .properties()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Received {
            at: Instant::now(),
            topic: m.topic().to_string(),
            tags: m.get_tags().map(|t| t.to_string()).unwrap_or_default(),
            keys: properties.get("KEYS").cloned().unwrap_or_default(),
            body: m.body().map(|b| b.to_vec()).unwrap_or_default(),
            msg_id: m.msg_id().to_string(),
            uniq_key: properties.get("UNIQ_KEY").cloned().unwrap_or_default(),
            queue_id: m.queue_id(),
            queue_offset: m.queue_offset(),
            reconsume_times: m.reconsume_times(),
            store_timestamp: m.store_timestamp(),
            properties,
        }
    }

    fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn to_json(&self) -> Value {
        let body = if self.body.len() > 64 {
            format!("<{} bytes>", self.body.len())
        } else {
            self.body_text()
        };
        json!({
            "topic": self.topic, "tags": self.tags, "keys": self.keys, "body": body,
            "msgId": self.msg_id, "uniqKey": self.uniq_key, "queueId": self.queue_id,
            "queueOffset": self.queue_offset, "reconsumeTimes": self.reconsume_times,
            "storeTimestamp": self.store_timestamp,
        })
    }
}

/// Messages a listener collected, shared with the scenario.
type Inbox = Arc<Mutex<Vec<Received>>>;

fn snapshot(inbox: &Inbox) -> Vec<Received> {
    inbox.lock().map(|v| v.clone()).unwrap_or_default()
}

fn push(inbox: &Inbox, msgs: &[&MessageExt]) {
    if let Ok(mut v) = inbox.lock() {
        v.extend(msgs.iter().map(|m| Received::from_ext(m)));
    }
}

/// Command-line arguments.
struct Args {
    scenario: String,
    namesrv: String,
    topic: String,
    group: String,
    count: usize,
}

const USAGE: &str =
    "usage: compat-rocketmq-rust <produce-consume|ordered|delay|transaction|retry> \
                     NAMESRV TOPIC GROUP [N]";

/// Parses `SCENARIO NAMESRV TOPIC GROUP [N]`; `None` on bad usage.
fn parse_args() -> Option<Args> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        return None;
    }
    let count = match (args[0].as_str(), args.get(4)) {
        ("produce-consume", Some(n)) => n.parse().ok().filter(|n| *n > 0 && *n <= 10_000)?,
        ("produce-consume", None) => return None,
        (_, _) => 0,
    };
    Some(Args {
        scenario: args[0].clone(),
        namesrv: args[1].clone(),
        topic: args[2].clone(),
        group: args[3].clone(),
        count,
    })
}

fn timeout_ms() -> u64 {
    std::env::var("TERN_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_TIMEOUT_MS)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn client_config(namesrv: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set_namesrv_addr(namesrv.into());
    config.set_poll_name_server_interval(CLIENT_INTERVAL_MS);
    config.set_heartbeat_broker_interval(CLIENT_INTERVAL_MS);
    config.set_persist_consumer_offset_interval(PERSIST_INTERVAL_MS);
    config
}

fn send_result_json(r: &SendResult) -> Value {
    json!({
        "status": format!("{:?}", r.send_status),
        "msgId": r.msg_id.as_ref().map(|s| s.to_string()),
        "offsetMsgId": r.offset_msg_id,
        "queueId": r.message_queue.as_ref().map(|q| q.queue_id()),
        "brokerName": r.message_queue.as_ref().map(|q| q.broker_name().to_string()),
        "queueOffset": r.queue_offset,
        "transactionId": r.transaction_id,
        "regionId": r.region_id,
    })
}

fn is_send_ok(r: &SendResult) -> bool {
    format!("{:?}", r.send_status) == "SendOk"
}

/// Everything a scenario needs: the client runtime and where to connect.
struct Ctx {
    runtime: Arc<ClientRuntime>,
    namesrv: String,
    topic: String,
    group: String,
    count: usize,
    deadline: Instant,
}

impl Ctx {
    async fn producer(&self, group: &str) -> Result<DefaultMQProducer, String> {
        let mut producer = DefaultMQProducer::builder(self.runtime.clone())
            .client_config(client_config(&self.namesrv))
            .producer_group(group)
            .name_server_addr(self.namesrv.as_str())
            .send_msg_timeout(SEND_TIMEOUT_MS as u32)
            .build();
        producer
            .start()
            .await
            .map_err(|e| format!("producer start: {e}"))?;
        Ok(producer)
    }

    fn consumer(&self, from: ConsumeFromWhere) -> DefaultMQPushConsumer {
        let mut consumer = DefaultMQPushConsumer::builder(self.runtime.clone())
            .client_config(client_config(&self.namesrv))
            .consumer_group(self.group.as_str())
            .name_server_addr(self.namesrv.as_str())
            .consume_from_where(from)
            .build();
        consumer.set_consume_from_where(from);
        consumer
    }

    /// Sends one `Warmup`-tagged message so the broker auto-creates the topic (via the `TBW102`
    /// route) before a consumer subscribes to it.
    async fn warm_up(&self, producer: &DefaultMQProducer, checks: &mut Checks) -> bool {
        let msg = Message::builder()
            .topic(self.topic.as_str())
            .tags(WARMUP_TAG)
            .body_slice(b"warmup")
            .build_unchecked();
        match producer.send_with_timeout(msg, SEND_TIMEOUT_MS).await {
            Ok(Some(r)) => {
                let ok = is_send_ok(&r);
                checks.check(
                    "warmup send auto-creates the topic",
                    ok,
                    send_result_json(&r),
                );
                ok
            }
            Ok(None) => {
                checks.check(
                    "warmup send auto-creates the topic",
                    false,
                    json!("no result"),
                );
                false
            }
            Err(e) => {
                checks.check(
                    "warmup send auto-creates the topic",
                    false,
                    json!(e.to_string()),
                );
                false
            }
        }
    }

    /// Polls `inbox` every 100 ms until `done` holds or the deadline passes; true if `done` held.
    async fn wait_for<F>(&self, inbox: &Inbox, mut done: F) -> bool
    where
        F: FnMut(&[Received]) -> bool,
    {
        loop {
            if done(&snapshot(inbox)) {
                return true;
            }
            if Instant::now() >= self.deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn main() -> ExitCode {
    let Some(args) = parse_args() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let started = Instant::now();
    let timeout = Duration::from_millis(timeout_ms());
    let finished = Arc::new(AtomicBool::new(false));
    {
        let finished = finished.clone();
        let scenario = args.scenario.clone();
        std::thread::spawn(move || {
            let hard = timeout + Duration::from_secs(15);
            while started.elapsed() < hard {
                std::thread::sleep(Duration::from_millis(200));
                if finished.load(Ordering::Acquire) {
                    return;
                }
            }
            println!(
                "{}",
                json!({"ok": false, "scenario": scenario,
                       "error": format!("hard timeout after {hard:?} (client shutdown hung?)")})
            );
            // The main thread is stuck inside the client; only ending the process stops it.
            #[allow(clippy::disallowed_methods)]
            std::process::exit(3);
        });
    }

    let owner = match RuntimeOwner::new() {
        Ok(o) => o,
        Err(e) => {
            println!("{}", json!({"ok": false, "error": format!("runtime: {e}")}));
            return ExitCode::FAILURE;
        }
    };
    let telemetry = TelemetryRuntimeGuard::noop();
    let runtime = match ClientRuntime::try_new(
        owner.root_context().component("tern-compat"),
        ClientRuntimeConfig::default(),
        telemetry.handle(),
    ) {
        Ok(r) => r,
        Err(e) => {
            println!(
                "{}",
                json!({"ok": false, "error": format!("client runtime: {e}")})
            );
            return ExitCode::FAILURE;
        }
    };
    let ctx = Ctx {
        runtime: runtime.clone(),
        namesrv: args.namesrv.clone(),
        topic: args.topic.clone(),
        group: args.group.clone(),
        count: args.count,
        deadline: Instant::now() + timeout,
    };
    let scenario = args.scenario.clone();
    let (result, extra, client_healthy) = owner.block_on(async move {
        let mut checks = Checks::default();
        let mut extra = serde_json::Map::new();
        let run = async {
            match scenario.as_str() {
                "produce-consume" => produce_consume(&ctx, &mut checks, &mut extra).await,
                "ordered" => ordered(&ctx, &mut checks, &mut extra).await,
                "delay" => delay(&ctx, &mut checks, &mut extra).await,
                "transaction" => transaction(&ctx, &mut checks, &mut extra).await,
                "retry" => retry(&ctx, &mut checks, &mut extra).await,
                other => Err(format!("unknown scenario `{other}`")),
            }
        };
        let outcome = match tokio::time::timeout(timeout + Duration::from_secs(5), run).await {
            Ok(r) => r,
            Err(_) => Err(format!("scenario did not finish within {timeout:?}")),
        };
        let report = tokio::time::timeout(Duration::from_secs(10), ctx.runtime.shutdown()).await;
        let healthy = matches!(&report, Ok(r) if r.is_healthy());
        ((outcome, checks), extra, healthy)
    });
    let _ = owner.shutdown_runtime_blocking_with_timeout(Duration::from_secs(5));
    finished.store(true, Ordering::Release);
    let (outcome, checks) = result;
    let ok = outcome.is_ok() && checks.all_ok();
    let mut summary = json!({
        "ok": ok,
        "scenario": args.scenario,
        "topic": args.topic,
        "group": args.group,
        "elapsedMs": started.elapsed().as_millis() as u64,
        "error": outcome.err(),
        "clientShutdownHealthy": client_healthy,
        "failures": checks.failures(),
        "checks": checks.items,
    });
    if let Some(obj) = summary.as_object_mut() {
        obj.extend(extra);
    }
    println!("{summary}");
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Shuts a consumer down, bounded to 10 s.
async fn stop_consumer(consumer: &mut DefaultMQPushConsumer) {
    let _ = tokio::time::timeout(Duration::from_secs(10), consumer.shutdown()).await;
}

/// Shuts a producer down, bounded to 10 s.
async fn stop_producer(producer: &mut DefaultMQProducer) {
    let _ = tokio::time::timeout(Duration::from_secs(10), producer.shutdown()).await;
}

/// `produce-consume`: N messages alternating TagA/TagB with two keys each (one TagA body of
/// 5 000 bytes, which the client compresses); a push consumer subscribed to `TagA` must get
/// exactly the TagA ones, once each, with body, keys, tags, queue and offset as sent.
async fn produce_consume(
    ctx: &Ctx,
    checks: &mut Checks,
    extra: &mut serde_json::Map<String, Value>,
) -> Result<(), String> {
    let mut producer = ctx.producer(&format!("{}_P", ctx.group)).await?;
    let mut sent: Vec<(String, String, Vec<u8>, SendResult)> = Vec::new();
    let mut send_errors = Vec::new();
    for i in 0..ctx.count {
        let tag = if i % 2 == 0 { "TagA" } else { "TagB" };
        let body: Vec<u8> = if i == 2 {
            (0..5_000u32).map(|j| b'a' + (j % 26) as u8).collect()
        } else {
            format!("tern-rust-{i}-héllo-消息").into_bytes()
        };
        let keys = format!("K{i}_a K{i}_b");
        let msg = Message::builder()
            .topic(ctx.topic.as_str())
            .tags(tag)
            .keys(vec![format!("K{i}_a"), format!("K{i}_b")])
            .body_slice(&body)
            .build_unchecked();
        match producer.send_with_timeout(msg, SEND_TIMEOUT_MS).await {
            Ok(Some(r)) => sent.push((tag.to_string(), keys, body, r)),
            Ok(None) => send_errors.push(format!("send {i}: no result")),
            Err(e) => send_errors.push(format!("send {i}: {e}")),
        }
    }
    checks.check(
        "every send returns SEND_OK",
        send_errors.is_empty() && sent.iter().all(|s| is_send_ok(&s.3)),
        json!({"errors": send_errors,
               "results": sent.iter().map(|s| send_result_json(&s.3)).collect::<Vec<_>>()}),
    );
    stop_producer(&mut producer).await;

    let inbox: Inbox = Arc::default();
    let mut consumer = ctx.consumer(ConsumeFromWhere::ConsumeFromFirstOffset);
    consumer
        .subscribe(ctx.topic.as_str(), "TagA")
        .await
        .map_err(|e| format!("subscribe: {e}"))?;
    let sink = inbox.clone();
    consumer.register_message_listener_concurrently(
        move |msgs: &[&MessageExt], _: &ConsumeConcurrentlyContext| {
            push(&sink, msgs);
            Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
        },
    );
    consumer
        .start()
        .await
        .map_err(|e| format!("consumer start: {e}"))?;
    let expected: Vec<_> = sent.iter().filter(|s| s.0 == "TagA").collect();
    let want = expected.len();
    let arrived = ctx.wait_for(&inbox, |r| r.len() >= want).await;
    tokio::time::sleep(SETTLE).await;
    stop_consumer(&mut consumer).await;
    let got = snapshot(&inbox);
    extra.insert(
        "received".into(),
        Value::Array(got.iter().map(Received::to_json).collect()),
    );
    checks.check(
        "the TagA messages arrive",
        arrived && want > 0,
        json!({"expected": want, "received": got.len()}),
    );
    checks.check(
        "only TagA messages are delivered",
        got.iter().all(|m| m.tags == "TagA"),
        json!(got.iter().map(|m| m.tags.clone()).collect::<Vec<_>>()),
    );
    for (tag, keys, body, result) in &expected {
        let uniq = result
            .msg_id
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default();
        let matches: Vec<&Received> = got.iter().filter(|m| m.uniq_key == uniq).collect();
        let name = format!("message {uniq} delivered once, intact");
        let Some(m) = matches.first() else {
            checks.check(&name, false, json!({"missing": send_result_json(result)}));
            continue;
        };
        let queue_ok = result.message_queue.as_ref().map(|q| q.queue_id()) == Some(m.queue_id)
            && result.queue_offset as i64 == m.queue_offset;
        let offset_id_ok = result.offset_msg_id.as_deref() == Some(m.msg_id.as_str());
        checks.check(
            &name,
            matches.len() == 1
                && &m.body == body
                && &m.keys == keys
                && &m.tags == tag
                && m.topic == ctx.topic
                && queue_ok
                && offset_id_ok,
            json!({"deliveries": matches.len(), "bodyIntact": &m.body == body,
                   "keys": m.keys, "wantKeys": keys, "queueOk": queue_ok,
                   "msgIdOk": offset_id_ok, "got": m.to_json(), "sent": send_result_json(result)}),
        );
    }
    Ok(())
}

/// `ordered`: 5 orders × 6 steps sent with a queue selector keyed by order id; an orderly push
/// consumer must see each order's steps in sequence, all on the order's queue.
async fn ordered(
    ctx: &Ctx,
    checks: &mut Checks,
    extra: &mut serde_json::Map<String, Value>,
) -> Result<(), String> {
    const ORDERS: usize = 5;
    const STEPS: usize = 6;
    let mut producer = ctx.producer(&format!("{}_P", ctx.group)).await?;
    if !ctx.warm_up(&producer, checks).await {
        stop_producer(&mut producer).await;
        return Ok(());
    }
    let inbox: Inbox = Arc::default();
    let mut consumer = ctx.consumer(ConsumeFromWhere::ConsumeFromFirstOffset);
    consumer
        .subscribe(ctx.topic.as_str(), "Order")
        .await
        .map_err(|e| format!("subscribe: {e}"))?;
    let sink = inbox.clone();
    consumer.register_message_listener_orderly(
        move |msgs: &[&MessageExt], _: &mut ConsumeOrderlyContext| {
            push(&sink, msgs);
            Ok(ConsumeOrderlyStatus::Success)
        },
    );
    consumer
        .start()
        .await
        .map_err(|e| format!("consumer start: {e}"))?;

    let mut queue_of_order: HashMap<usize, i32> = HashMap::new();
    let mut send_errors = Vec::new();
    for step in 0..STEPS {
        for order in 0..ORDERS {
            let msg = Message::builder()
                .topic(ctx.topic.as_str())
                .tags("Order")
                .key(format!("order-{order}"))
                .body_slice(format!("{order}:{step}").as_bytes())
                .build_unchecked();
            let selector = |mqs: &[MessageQueue], _: &Message, arg: &usize| {
                if mqs.is_empty() {
                    None
                } else {
                    Some(mqs[arg % mqs.len()].clone())
                }
            };
            match producer
                .send_with_selector_timeout(msg, selector, order, SEND_TIMEOUT_MS)
                .await
            {
                Ok(Some(r)) if is_send_ok(&r) => {
                    let q = r.message_queue.as_ref().map(|q| q.queue_id()).unwrap_or(-1);
                    let prev = *queue_of_order.entry(order).or_insert(q);
                    if prev != q {
                        send_errors.push(format!(
                            "order {order} step {step} went to queue {q}, not {prev}"
                        ));
                    }
                }
                Ok(Some(r)) => send_errors.push(format!("{order}:{step}: {:?}", r.send_status)),
                Ok(None) => send_errors.push(format!("{order}:{step}: no result")),
                Err(e) => send_errors.push(format!("{order}:{step}: {e}")),
            }
        }
    }
    stop_producer(&mut producer).await;
    checks.check(
        "every selector send returns SEND_OK on its order's queue",
        send_errors.is_empty(),
        json!({"errors": send_errors, "queues": queue_of_order.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>()}),
    );
    let want = ORDERS * STEPS;
    let arrived = ctx.wait_for(&inbox, |r| r.len() >= want).await;
    tokio::time::sleep(SETTLE).await;
    stop_consumer(&mut consumer).await;
    let got = snapshot(&inbox);
    extra.insert(
        "receivedOrder".into(),
        json!(got
            .iter()
            .map(|m| format!("{}@q{}", m.body_text(), m.queue_id))
            .collect::<Vec<_>>()),
    );
    checks.check(
        "all ordered messages arrive exactly once",
        arrived && got.len() == want,
        json!({"expected": want, "received": got.len()}),
    );
    for order in 0..ORDERS {
        let steps: Vec<(usize, i32)> = got
            .iter()
            .filter_map(|m| {
                let text = m.body_text();
                let (o, s) = text.split_once(':')?;
                (o.parse::<usize>().ok()? == order).then_some((s.parse().ok()?, m.queue_id))
            })
            .collect();
        let in_order = steps.iter().map(|s| s.0).eq(0..STEPS);
        let queue_ok = steps
            .iter()
            .all(|s| Some(&s.1) == queue_of_order.get(&order));
        checks.check(
            &format!("order {order} consumed in sequence on one queue"),
            in_order && queue_ok,
            json!({"steps": steps.iter().map(|s| s.0).collect::<Vec<_>>(),
                   "queues": steps.iter().map(|s| s.1).collect::<Vec<_>>()}),
        );
    }
    Ok(())
}

/// `delay`: a message with delay level 2 (2 s with the broker's `1s 2s 3s` levels) must reach a
/// running consumer no earlier than 2 s and at most 6 s after its send started, on its real topic.
async fn delay(
    ctx: &Ctx,
    checks: &mut Checks,
    extra: &mut serde_json::Map<String, Value>,
) -> Result<(), String> {
    let mut producer = ctx.producer(&format!("{}_P", ctx.group)).await?;
    if !ctx.warm_up(&producer, checks).await {
        stop_producer(&mut producer).await;
        return Ok(());
    }
    let inbox: Inbox = Arc::default();
    let mut consumer = ctx.consumer(ConsumeFromWhere::ConsumeFromFirstOffset);
    consumer
        .subscribe(ctx.topic.as_str(), "*")
        .await
        .map_err(|e| format!("subscribe: {e}"))?;
    let sink = inbox.clone();
    consumer.register_message_listener_concurrently(
        move |msgs: &[&MessageExt], _: &ConsumeConcurrentlyContext| {
            push(&sink, msgs);
            Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
        },
    );
    consumer
        .start()
        .await
        .map_err(|e| format!("consumer start: {e}"))?;
    let live = ctx
        .wait_for(&inbox, |r| r.iter().any(|m| m.tags == WARMUP_TAG))
        .await;
    checks.check("consumer receives the warmup message", live, json!(null));

    let body = b"delayed-level-2".to_vec();
    let msg = Message::builder()
        .topic(ctx.topic.as_str())
        .tags("Delayed")
        .key("delayed-key")
        .delay_level(2)
        .body_slice(&body)
        .build_unchecked();
    let sent_at = Instant::now();
    let sent_ms = now_ms();
    let result = producer.send_with_timeout(msg, SEND_TIMEOUT_MS).await;
    stop_producer(&mut producer).await;
    let result = match result {
        Ok(Some(r)) => r,
        Ok(None) => return Err("delayed send: no result".into()),
        Err(e) => return Err(format!("delayed send: {e}")),
    };
    checks.check(
        "delayed send returns SEND_OK",
        is_send_ok(&result),
        send_result_json(&result),
    );
    let arrived = ctx
        .wait_for(&inbox, |r| r.iter().any(|m| m.tags == "Delayed"))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop_consumer(&mut consumer).await;
    let got: Vec<Received> = snapshot(&inbox)
        .into_iter()
        .filter(|m| m.tags == "Delayed")
        .collect();
    let Some(m) = got.first() else {
        checks.check(
            "delayed message arrives",
            false,
            json!({"arrived": arrived}),
        );
        return Ok(());
    };
    let after = m.at.duration_since(sent_at).as_millis() as u64;
    extra.insert("delayedArrivalMs".into(), json!(after));
    checks.check(
        "delayed message arrives once, not before 2 s and at most 6 s after the send",
        got.len() == 1 && (2_000..=6_000).contains(&after),
        json!({"afterMs": after, "deliveries": got.len(), "storeDelayMs": m.store_timestamp - sent_ms}),
    );
    let uniq = result
        .msg_id
        .as_ref()
        .map(|s| s.to_string())
        .unwrap_or_default();
    checks.check(
        "delayed message intact on its real topic",
        m.topic == ctx.topic && m.body == body && m.keys == "delayed-key" && m.uniq_key == uniq,
        json!({"got": m.to_json(), "properties": m.properties}),
    );
    Ok(())
}

/// Local transaction outcome chosen by the message body.
struct TxListener {
    checks: Arc<Mutex<HashMap<String, u32>>>,
}

impl TxListener {
    fn body_of(body: Option<&[u8]>) -> String {
        body.map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    }
}

impl TransactionListener for TxListener {
    fn execute_local_transaction(
        &self,
        msg: &dyn MessageTrait,
        _arg: Option<&(dyn Any + Send + Sync)>,
    ) -> LocalTransactionState {
        match Self::body_of(msg.get_body().map(|b| b.as_ref())).as_str() {
            "tx-commit" => LocalTransactionState::CommitMessage,
            "tx-rollback" => LocalTransactionState::RollbackMessage,
            _ => LocalTransactionState::Unknown,
        }
    }

    fn check_local_transaction(&self, msg: &MessageExt) -> LocalTransactionState {
        let body = Self::body_of(msg.body().as_deref());
        if let Ok(mut c) = self.checks.lock() {
            *c.entry(body.clone()).or_insert(0) += 1;
        }
        match body.as_str() {
            "tx-unknown-then-commit" => LocalTransactionState::CommitMessage,
            "tx-unknown-then-rollback" => LocalTransactionState::RollbackMessage,
            // A resolved transaction must never be checked; answering Unknown keeps it visible.
            _ => LocalTransactionState::Unknown,
        }
    }
}

/// `transaction`: a TransactionMQProducer whose listener commits, rolls back, or answers unknown
/// (then commit / rollback on the broker's check-back). Committed ones are consumed exactly once,
/// rolled-back ones never; only the unknown ones are checked back.
async fn transaction(
    ctx: &Ctx,
    checks: &mut Checks,
    extra: &mut serde_json::Map<String, Value>,
) -> Result<(), String> {
    let mut plain = ctx.producer(&format!("{}_W", ctx.group)).await?;
    let warmed = ctx.warm_up(&plain, checks).await;
    stop_producer(&mut plain).await;
    if !warmed {
        return Ok(());
    }
    let inbox: Inbox = Arc::default();
    let mut consumer = ctx.consumer(ConsumeFromWhere::ConsumeFromFirstOffset);
    consumer
        .subscribe(ctx.topic.as_str(), "Tx")
        .await
        .map_err(|e| format!("subscribe: {e}"))?;
    let sink = inbox.clone();
    consumer.register_message_listener_concurrently(
        move |msgs: &[&MessageExt], _: &ConsumeConcurrentlyContext| {
            push(&sink, msgs);
            Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
        },
    );
    consumer
        .start()
        .await
        .map_err(|e| format!("consumer start: {e}"))?;

    let check_counts: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let mut producer = TransactionMQProducer::builder(ctx.runtime.clone())
        .client_config(client_config(&ctx.namesrv))
        .producer_group(format!("{}_TX", ctx.group))
        .name_server_addr(ctx.namesrv.as_str())
        .topics(vec![ctx.topic.as_str()])
        .transaction_listener(TxListener {
            checks: check_counts.clone(),
        })
        .build();
    producer
        .start()
        .await
        .map_err(|e| format!("transaction producer start: {e}"))?;
    let bodies = [
        "tx-commit",
        "tx-rollback",
        "tx-unknown-then-commit",
        "tx-unknown-then-rollback",
    ];
    let mut results = Vec::new();
    let mut send_ok = true;
    for body in bodies {
        let msg = Message::builder()
            .topic(ctx.topic.as_str())
            .tags("Tx")
            .key(body)
            .body_slice(body.as_bytes())
            .build_unchecked();
        match producer
            .send_message_in_transaction::<(), _>(msg, None)
            .await
        {
            Ok(r) => {
                let state = format!("{:?}", r.local_transaction_state);
                let ok = r.send_result.as_ref().is_some_and(is_send_ok);
                send_ok &= ok;
                results.push(json!({"body": body, "localState": state,
                    "send": r.send_result.as_ref().map(send_result_json)}));
            }
            Err(e) => {
                send_ok = false;
                results.push(json!({"body": body, "error": e.to_string()}));
            }
        }
    }
    checks.check("half messages sent (SEND_OK)", send_ok, json!(results));
    let counts = check_counts.clone();
    let resolved = ctx
        .wait_for(&inbox, |r| {
            let checked = counts
                .lock()
                .map(|c| {
                    c.contains_key("tx-unknown-then-commit")
                        && c.contains_key("tx-unknown-then-rollback")
                })
                .unwrap_or(false);
            checked
                && r.iter().any(|m| m.body_text() == "tx-commit")
                && r.iter().any(|m| m.body_text() == "tx-unknown-then-commit")
        })
        .await;
    tokio::time::sleep(SETTLE).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), producer.shutdown()).await;
    stop_consumer(&mut consumer).await;
    let got = snapshot(&inbox);
    let counts = check_counts.lock().map(|c| c.clone()).unwrap_or_default();
    extra.insert("checkBacks".into(), json!(counts));
    extra.insert(
        "received".into(),
        Value::Array(got.iter().map(Received::to_json).collect()),
    );
    checks.check("commits and check-backs completed", resolved, json!(null));
    let deliveries = |b: &str| got.iter().filter(|m| m.body_text() == b).count();
    checks.check(
        "COMMIT consumed exactly once",
        deliveries("tx-commit") == 1,
        json!(deliveries("tx-commit")),
    );
    checks.check(
        "ROLLBACK never consumed",
        deliveries("tx-rollback") == 0,
        json!(deliveries("tx-rollback")),
    );
    checks.check(
        "UNKNOWN → check → COMMIT consumed exactly once",
        deliveries("tx-unknown-then-commit") == 1,
        json!(deliveries("tx-unknown-then-commit")),
    );
    checks.check(
        "UNKNOWN → check → ROLLBACK never consumed",
        deliveries("tx-unknown-then-rollback") == 0,
        json!(deliveries("tx-unknown-then-rollback")),
    );
    checks.check(
        "resolved transactions are never checked back",
        !counts.contains_key("tx-commit") && !counts.contains_key("tx-rollback"),
        json!(counts),
    );
    if let Some(m) = got.iter().find(|m| m.body_text() == "tx-commit") {
        checks.check(
            "committed message intact on its real topic",
            m.topic == ctx.topic && m.keys == "tx-commit" && m.tags == "Tx",
            json!({"got": m.to_json(), "properties": m.properties}),
        );
    }
    Ok(())
}

/// `retry`: a concurrent listener answers RECONSUME_LATER on the first delivery; the message must
/// come back (via `%RETRY%<group>`, level 3 + reconsumeTimes → 3 s with `1s 2s 3s`) with
/// reconsume count 1, on the original topic, body and keys intact.
async fn retry(
    ctx: &Ctx,
    checks: &mut Checks,
    extra: &mut serde_json::Map<String, Value>,
) -> Result<(), String> {
    let mut producer = ctx.producer(&format!("{}_P", ctx.group)).await?;
    if !ctx.warm_up(&producer, checks).await {
        stop_producer(&mut producer).await;
        return Ok(());
    }
    let inbox: Inbox = Arc::default();
    let mut consumer = ctx.consumer(ConsumeFromWhere::ConsumeFromFirstOffset);
    consumer
        .subscribe(ctx.topic.as_str(), "Retry")
        .await
        .map_err(|e| format!("subscribe: {e}"))?;
    let sink = inbox.clone();
    consumer.register_message_listener_concurrently(
        move |msgs: &[&MessageExt], _: &ConsumeConcurrentlyContext| {
            let first = msgs.iter().any(|m| m.reconsume_times() == 0);
            push(&sink, msgs);
            Ok(if first {
                ConsumeConcurrentlyStatus::ReconsumeLater
            } else {
                ConsumeConcurrentlyStatus::ConsumeSuccess
            })
        },
    );
    consumer
        .start()
        .await
        .map_err(|e| format!("consumer start: {e}"))?;
    let body = b"retry-me".to_vec();
    let msg = Message::builder()
        .topic(ctx.topic.as_str())
        .tags("Retry")
        .key("retry-key")
        .body_slice(&body)
        .build_unchecked();
    let result = producer.send_with_timeout(msg, SEND_TIMEOUT_MS).await;
    stop_producer(&mut producer).await;
    let result = match result {
        Ok(Some(r)) => r,
        Ok(None) => return Err("send: no result".into()),
        Err(e) => return Err(format!("send: {e}")),
    };
    checks.check(
        "send returns SEND_OK",
        is_send_ok(&result),
        send_result_json(&result),
    );
    let arrived = ctx.wait_for(&inbox, |r| r.len() >= 2).await;
    tokio::time::sleep(SETTLE).await;
    stop_consumer(&mut consumer).await;
    let got = snapshot(&inbox);
    extra.insert(
        "received".into(),
        json!(got
            .iter()
            .map(|m| json!({"msg": m.to_json(), "properties": m.properties}))
            .collect::<Vec<_>>()),
    );
    checks.check(
        "delivered, rejected, delivered again — exactly twice",
        arrived && got.len() == 2,
        json!(got.len()),
    );
    if let [first, second] = got.as_slice() {
        let gap = second.at.duration_since(first.at).as_millis() as u64;
        checks.check(
            "reconsume counts 0 then 1",
            first.reconsume_times == 0 && second.reconsume_times == 1,
            json!([first.reconsume_times, second.reconsume_times]),
        );
        checks.check(
            "redelivery on the original topic, body and keys intact",
            second.topic == ctx.topic && second.body == body && second.keys == "retry-key",
            json!({"topic": second.topic, "keys": second.keys, "body": second.body_text()}),
        );
        checks.check(
            "redelivery waits for its delay level (3 s with 1s 2s 3s)",
            (2_800..=8_000).contains(&gap),
            json!({"gapMs": gap}),
        );
    }
    Ok(())
}
