//! `tern bench`: end-to-end benchmarks against a running cluster, through the SDK, the way an
//! application would use it.
//!
//! - `produce`: publish throughput with N sends in flight (default 256), plus the latency of
//!   every send.
//! - `latency`: publish latency with one send in flight.
//! - `consume`: consume throughput draining a backlog (optionally filled first).
//! - `tx`: transactional publish throughput and latency (half message + END_TRANSACTION,
//!   every local transaction committing).
//! - `e2e`: end-to-end latency (send → delivered to a push consumer) at a paced rate
//!   (default 5,000 msgs/s); the send time travels in the first 8 bytes of each body.
//!
//! Latencies are recorded in microseconds with `hdrhistogram` (3 significant digits) and
//! reported as p50/p90/p99/p999 and max. Progress is drawn with `indicatif` on a terminal.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tern_client::consumer::PullStatus;
use tern_client::{
    ConsumeConcurrentlyStatus, ConsumeFrom, LocalTransactionState, Producer, PullConsumer,
    PushConsumer, TransactionListener, TransactionProducer,
};
use tern_common::message::Message;
use tern_common::route::{MessageQueue, TopicConfig};
use tokio::sync::Mutex;

use crate::admin::AdminClient;
use crate::output::print_json;

/// Largest latency a histogram records, in microseconds (60 s).
const MAX_LATENCY_US: u64 = 60_000_000;

/// `tern bench ...`
#[derive(Debug, Subcommand)]
pub(crate) enum BenchCmd {
    /// Publish throughput: sends with many in flight.
    Produce(ProduceArgs),
    /// Publish latency: one send in flight.
    Latency(ProduceArgs),
    /// Consume throughput: drain a backlog of the topic.
    Consume(ConsumeBenchArgs),
    /// End-to-end latency at a paced send rate.
    E2e(E2eArgs),
    /// Transactional publish: half message + commit, many in flight.
    Tx(ProduceArgs),
}

/// Options every benchmark shares.
#[derive(Debug, Clone, Args)]
pub(crate) struct Common {
    /// Topic (created on every master broker if missing).
    #[arg(short = 't', long, default_value = "TernBench")]
    topic: String,
    /// Queues of the topic when it is created.
    #[arg(long, default_value_t = 8)]
    queues: i32,
    /// Message body size, bytes.
    #[arg(short = 's', long, default_value_t = 1024)]
    size: usize,
}

/// `bench produce` / `bench latency`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ProduceArgs {
    #[command(flatten)]
    common: Common,
    /// Messages to send.
    #[arg(short = 'c', long, default_value_t = 200_000)]
    count: u64,
    /// Sends in flight (`bench latency` forces 1).
    #[arg(long, default_value_t = 256)]
    in_flight: usize,
    /// Messages sent first and not measured.
    #[arg(long, default_value_t = 2_000)]
    warmup: u64,
}

/// `bench consume`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ConsumeBenchArgs {
    #[command(flatten)]
    common: Common,
    /// Send this many messages first (256 in flight) to build the backlog.
    #[arg(long, default_value_t = 0)]
    fill: u64,
    /// Messages per pull request (RocketMQ's pullBatchSize; the broker caps it).
    #[arg(long, default_value_t = 32)]
    batch: i32,
}

/// `bench e2e`.
#[derive(Debug, Clone, Args)]
pub(crate) struct E2eArgs {
    #[command(flatten)]
    common: Common,
    /// Send rate, messages per second.
    #[arg(long, default_value_t = 5_000)]
    rate: u64,
    /// How long to send, seconds.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Most sends in flight.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
}

/// One benchmark's figures.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    bench: String,
    topic: String,
    messages: u64,
    message_bytes: usize,
    elapsed_secs: f64,
    msgs_per_sec: f64,
    mib_per_sec: f64,
    in_flight: Option<usize>,
    errors: u64,
    latency_us: Option<Percentiles>,
}

/// Latency percentiles, microseconds.
#[derive(Debug, Serialize)]
struct Percentiles {
    p50: u64,
    p90: u64,
    p99: u64,
    p999: u64,
    max: u64,
    mean: f64,
    samples: u64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Option<Self> {
        (!h.is_empty()).then(|| Percentiles {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
            samples: h.len(),
        })
    }
}

impl Report {
    fn print(&self, json: bool) -> Result<()> {
        if json {
            return print_json(self);
        }
        println!(
            "{}: {} msgs of {} B in {:.2} s = {:.0} msgs/s, {:.1} MiB/s{}{}",
            self.bench,
            self.messages,
            self.message_bytes,
            self.elapsed_secs,
            self.msgs_per_sec,
            self.mib_per_sec,
            self.in_flight
                .map(|n| format!(", {n} in flight"))
                .unwrap_or_default(),
            if self.errors > 0 {
                format!(", {} errors", self.errors)
            } else {
                String::new()
            }
        );
        if let Some(p) = &self.latency_us {
            println!(
                "  latency µs: p50 {} p90 {} p99 {} p999 {} max {} (mean {:.1}, {} samples)",
                p.p50, p.p90, p.p99, p.p999, p.max, p.mean, p.samples
            );
        }
        Ok(())
    }
}

fn new_histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).map_err(|e| anyhow!("histogram: {e}"))
}

/// How often a running benchmark's progress bar is moved.
const PROGRESS_TICK: Duration = Duration::from_millis(100);

fn progress(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template(
        "{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar
}

/// Runs a benchmark.
pub(crate) async fn run(admin: &AdminClient, cmd: BenchCmd, json: bool) -> Result<()> {
    let report = match cmd {
        BenchCmd::Produce(args) => produce(admin, &args, args.in_flight, "produce").await?,
        BenchCmd::Latency(args) => produce(admin, &args, 1, "latency").await?,
        BenchCmd::Consume(args) => consume(admin, &args).await?,
        BenchCmd::E2e(args) => e2e(admin, &args).await?,
        BenchCmd::Tx(args) => produce_tx(admin, &args).await?,
    };
    report.print(json)
}

/// Creates `topic` on every master broker unless it has a route, then waits (up to 15 s) for
/// the route to show at least one writable queue.
async fn ensure_topic(admin: &AdminClient, common: &Common) -> Result<()> {
    if admin.topic_route(&common.topic).await?.is_some() {
        return Ok(());
    }
    let brokers = admin.master_brokers(None).await?;
    if brokers.is_empty() {
        bail!("no broker is registered with the NameServer");
    }
    for (_, _, addr) in &brokers {
        admin
            .sdk()
            .create_topic_on(addr, &TopicConfig::new(common.topic.clone(), common.queues))
            .await?;
    }
    for _ in 0..150 {
        if let Some(r) = admin.topic_route(&common.topic).await? {
            if !r.publish_queues(&common.topic).is_empty() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("topic {} has no route 15 s after creation", common.topic)
}

async fn new_producer(admin: &AdminClient) -> Result<Producer> {
    Producer::builder()
        .namesrv_addr(&admin.namesrv_joined())
        .group(format!("tern-bench-{}", std::process::id()))
        .send_timeout(Duration::from_secs(10))
        .build()
        .await
        .context("starting the producer")
}

fn body(size: usize) -> bytes::Bytes {
    // Printable, incompressible enough, and cheap: a repeating pattern.
    (0..size)
        .map(|i| b'a' + (i % 26) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// What a benchmark sends with: a plain or a transactional producer.
#[derive(Debug, Clone)]
enum Sender {
    Plain(Producer),
    Tx(TransactionProducer),
}

impl Sender {
    async fn send(&self, msg: Message) -> std::result::Result<(), tern_client::ClientError> {
        match self {
            Sender::Plain(p) => p.send(msg).await.map(|_| ()),
            Sender::Tx(p) => p.send_in_transaction(msg, None).await.map(|_| ()),
        }
    }

    async fn shutdown(&self) {
        match self {
            Sender::Plain(p) => p.shutdown().await,
            Sender::Tx(p) => p.shutdown().await,
        }
    }
}

/// Commits every local transaction (the benchmark measures the broker's path, not a
/// business transaction).
#[derive(Debug)]
struct CommitAll;

impl TransactionListener for CommitAll {
    fn execute_local_transaction(
        &self,
        _msg: &Message,
        _arg: Option<&(dyn std::any::Any + Send + Sync)>,
    ) -> LocalTransactionState {
        LocalTransactionState::Commit
    }

    fn check_local_transaction(
        &self,
        _msg: &tern_common::message::MessageExt,
    ) -> LocalTransactionState {
        LocalTransactionState::Commit
    }
}

/// Sends `count` messages with `in_flight` concurrent senders; returns (sent, errors,
/// histogram, elapsed).
async fn send_many(
    producer: &Sender,
    topic: &str,
    size: usize,
    count: u64,
    in_flight: usize,
    bar: Option<ProgressBar>,
) -> Result<(u64, u64, Histogram<u64>, Duration)> {
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let payload = body(size);
    // The bar is moved by a ticker rather than by each send: `ProgressBar::inc` takes a lock
    // and reads the clock, 2 % of the client's CPU at 200k sends a second.
    let ticker = bar.clone().map(|b| {
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(PROGRESS_TICK);
            loop {
                every.tick().await;
                b.set_position(done.load(Ordering::Relaxed));
            }
        })
    });
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..in_flight.max(1) {
        let producer = producer.clone();
        let next = Arc::clone(&next);
        let errors = Arc::clone(&errors);
        let done = Arc::clone(&done);
        let payload = payload.clone();
        let topic = topic.to_string();
        tasks.spawn(async move {
            // Raw samples, put into one histogram at the end: 256 live histograms (tens of KiB
            // each) made every record a cache miss, 3 % of the client's CPU.
            let mut samples = Vec::new();
            // Each iteration claims one message number; ends once `count` are claimed.
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let t0 = Instant::now();
                match producer
                    .send(Message::new(topic.clone(), payload.clone()))
                    .await
                {
                    Ok(_) => {
                        let us = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
                        samples.push(us.clamp(1, MAX_LATENCY_US));
                    }
                    Err(err) => {
                        if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                            tracing::warn!(error = %err, "send failed");
                        }
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(samples)
        });
    }
    let mut per_task = Vec::with_capacity(in_flight.max(1));
    while let Some(joined) = tasks.join_next().await {
        per_task.push(joined.context("sender task")??);
    }
    let elapsed = started.elapsed();
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    let mut total = new_histogram()?;
    for us in per_task.into_iter().flatten() {
        total.saturating_record(us);
    }
    if let Some(b) = bar {
        b.set_position(done.load(Ordering::Relaxed));
        b.finish_and_clear();
    }
    let errors = errors.load(Ordering::Relaxed);
    Ok((count.saturating_sub(errors), errors, total, elapsed))
}

fn throughput(messages: u64, size: usize, elapsed: Duration) -> (f64, f64) {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let per_sec = messages as f64 / secs;
    (per_sec, per_sec * size as f64 / (1024.0 * 1024.0))
}

async fn produce(
    admin: &AdminClient,
    args: &ProduceArgs,
    in_flight: usize,
    name: &str,
) -> Result<Report> {
    ensure_topic(admin, &args.common).await?;
    let producer = Sender::Plain(new_producer(admin).await?);
    run_produce(producer, args, in_flight, name).await
}

async fn produce_tx(admin: &AdminClient, args: &ProduceArgs) -> Result<Report> {
    ensure_topic(admin, &args.common).await?;
    let producer = TransactionProducer::builder()
        .namesrv_addr(&admin.namesrv_joined())
        .group(format!("tern-bench-tx-{}", std::process::id()))
        .send_timeout(Duration::from_secs(10))
        .listener(CommitAll)
        .warm_up_topics([args.common.topic.clone()])
        .build()
        .await
        .context("starting the transaction producer")?;
    run_produce(Sender::Tx(producer), args, args.in_flight, "tx").await
}

async fn run_produce(
    producer: Sender,
    args: &ProduceArgs,
    in_flight: usize,
    name: &str,
) -> Result<Report> {
    let topic = &args.common.topic;
    let size = args.common.size;
    let result = async {
        if args.warmup > 0 {
            send_many(&producer, topic, size, args.warmup, in_flight, None).await?;
        }
        send_many(
            &producer,
            topic,
            size,
            args.count,
            in_flight,
            Some(progress(args.count, name)),
        )
        .await
    }
    .await;
    producer.shutdown().await;
    let (sent, errors, hist, elapsed) = result?;
    let (msgs_per_sec, mib_per_sec) = throughput(sent, size, elapsed);
    Ok(Report {
        bench: name.to_string(),
        topic: topic.clone(),
        messages: sent,
        message_bytes: size,
        elapsed_secs: elapsed.as_secs_f64(),
        msgs_per_sec,
        mib_per_sec,
        in_flight: Some(in_flight),
        errors,
        latency_us: Percentiles::of(&hist),
    })
}

async fn consume(admin: &AdminClient, args: &ConsumeBenchArgs) -> Result<Report> {
    ensure_topic(admin, &args.common).await?;
    let topic = args.common.topic.clone();
    if args.fill > 0 {
        let producer = Sender::Plain(new_producer(admin).await?);
        let filled = send_many(
            &producer,
            &topic,
            args.common.size,
            args.fill,
            256,
            Some(progress(args.fill, "fill")),
        )
        .await;
        producer.shutdown().await;
        filled?;
    }
    // The backlog: every queue from its min to its current max offset.
    admin.require_route(&topic).await?;
    let mut ranges = backlog(admin, &topic).await?;
    let mut total = backlog_len(&ranges);
    // The backlog is read from the queues' max offsets, which trail the CommitLog until the
    // broker has dispatched every filled message; wait (up to 30 s) for them to settle.
    for _ in 0..300 {
        if total >= args.fill {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        ranges = backlog(admin, &topic).await?;
        total = backlog_len(&ranges);
    }
    if total == 0 {
        bail!("topic {topic} is empty: fill it first (`tern bench consume --fill 200000`)");
    }
    let consumer = PullConsumer::builder()
        .namesrv_addr(&admin.namesrv_joined())
        .group(format!("tern-bench-consume-{}", std::process::id()))
        .auto_commit(false)
        .pull_batch_size(args.batch)
        .build()?;
    consumer.start().await?;
    let bar = progress(total, "consume");
    let bytes = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (mq, min, max) in ranges {
        let consumer = consumer.clone();
        let bar = bar.clone();
        let bytes = Arc::clone(&bytes);
        let batch = args.batch;
        tasks
            .spawn(async move { drain_queue(&consumer, &mq, min, max, batch, &bar, &bytes).await });
    }
    let mut got = 0u64;
    let mut first_err = None;
    while let Some(joined) = tasks.join_next().await {
        match joined.context("consumer task").and_then(|r| r) {
            Ok(n) => got += n,
            Err(e) => first_err = first_err.or(Some(e)),
        }
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    consumer.shutdown().await;
    if let Some(e) = first_err {
        return Err(e);
    }
    let (msgs_per_sec, _) = throughput(got, args.common.size, elapsed);
    let mib_per_sec =
        bytes.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64().max(1e-9) / 1_048_576.0;
    Ok(Report {
        bench: "consume".into(),
        topic,
        messages: got,
        message_bytes: args.common.size,
        elapsed_secs: elapsed.as_secs_f64(),
        msgs_per_sec,
        mib_per_sec,
        in_flight: None,
        errors: total.saturating_sub(got),
        latency_us: None,
    })
}

/// Every queue of `topic` with messages: (queue, min offset, max offset).
async fn backlog(admin: &AdminClient, topic: &str) -> Result<Vec<(MessageQueue, i64, i64)>> {
    let stats = admin.sdk().topic_stats(topic).await?;
    Ok(stats
        .offset_table
        .iter()
        .filter(|(_, off)| off.max_offset > off.min_offset)
        .map(|(mq, off)| (mq.clone(), off.min_offset, off.max_offset))
        .collect())
}

/// How many messages the ranges of [`backlog`] hold.
fn backlog_len(ranges: &[(MessageQueue, i64, i64)]) -> u64 {
    ranges
        .iter()
        .map(|(_, min, max)| u64::try_from(max - min).unwrap_or(0))
        .sum()
}

/// Pulls `mq` from `min` until `max`; returns the number of messages read. Bounded: every
/// pull that finds nothing counts against a budget of 100 empty pulls.
async fn drain_queue(
    consumer: &PullConsumer,
    mq: &MessageQueue,
    min: i64,
    max: i64,
    batch: i32,
    bar: &ProgressBar,
    bytes: &AtomicU64,
) -> Result<u64> {
    let mut offset = min;
    let mut got = 0u64;
    let mut empty_budget = 100;
    while offset < max {
        let r = consumer.pull(mq, offset, batch).await?;
        if r.status == PullStatus::Found && !r.messages.is_empty() {
            let n = r.messages.len() as u64;
            got += n;
            bar.inc(n);
            bytes.fetch_add(
                r.messages.iter().map(|m| m.message.body.len() as u64).sum(),
                Ordering::Relaxed,
            );
        } else {
            empty_budget -= 1;
            if empty_budget == 0 {
                bail!("{mq}: no progress at offset {offset} (max {max})");
            }
        }
        if r.next_begin_offset <= offset && r.status == PullStatus::Found {
            bail!("{mq}: the broker did not advance past offset {offset}");
        }
        offset = r.next_begin_offset.max(offset);
    }
    Ok(got)
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

async fn e2e(admin: &AdminClient, args: &E2eArgs) -> Result<Report> {
    if args.common.size < 8 {
        bail!("--size must be at least 8 bytes (the send time travels in the body)");
    }
    if args.rate == 0 {
        bail!("--rate must be positive");
    }
    ensure_topic(admin, &args.common).await?;
    let topic = args.common.topic.clone();
    let hist = Arc::new(Mutex::new(new_histogram()?));
    let received = Arc::new(AtomicU64::new(0));
    // Messages sent before this instant (an older backlog of the topic, warm-up markers) are
    // delivered but not measured.
    let measure_from = Arc::new(AtomicU64::new(now_ns()));
    let consumer = {
        let hist = Arc::clone(&hist);
        let received = Arc::clone(&received);
        let measure_from = Arc::clone(&measure_from);
        PushConsumer::builder()
            .namesrv_addr(&admin.namesrv_joined())
            .group(format!("tern-bench-e2e-{}", std::process::id()))
            .subscribe(topic.clone(), "*")
            .consume_from(ConsumeFrom::Last)
            .rebalance_interval(Duration::from_secs(2))
            .register_concurrent(move |msgs: Vec<tern_common::message::MessageExt>, _ctx| {
                let hist = Arc::clone(&hist);
                let received = Arc::clone(&received);
                let from = measure_from.load(Ordering::Relaxed);
                async move {
                    let now = now_ns();
                    let mut h = hist.lock().await;
                    for m in &msgs {
                        let b = &m.message.body;
                        if b.len() >= 8 {
                            let mut t = [0u8; 8];
                            t.copy_from_slice(&b[..8]);
                            let sent = u64::from_be_bytes(t);
                            if sent < from {
                                continue;
                            }
                            let us = now.saturating_sub(sent) / 1_000;
                            h.saturating_record(us.clamp(1, MAX_LATENCY_US));
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
                }
            })
            .build()?
    };
    consumer.start().await?;
    let producer = new_producer(admin).await?;
    let result = e2e_send(&producer, args, &topic, &received, &hist, &measure_from).await;
    // Give the last deliveries up to 5 s.
    let expected = result.as_ref().map(|(sent, _, _)| *sent).unwrap_or(0);
    for _ in 0..50 {
        if received.load(Ordering::Relaxed) >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    producer.shutdown().await;
    consumer.shutdown().await;
    let (sent, errors, elapsed) = result?;
    let got = received.load(Ordering::Relaxed);
    let h = hist.lock().await;
    let (msgs_per_sec, mib_per_sec) = throughput(sent, args.common.size, elapsed);
    Ok(Report {
        bench: format!("e2e at {} msgs/s", args.rate),
        topic,
        messages: got,
        message_bytes: args.common.size,
        elapsed_secs: elapsed.as_secs_f64(),
        msgs_per_sec,
        mib_per_sec,
        in_flight: Some(args.in_flight),
        errors: errors + sent.saturating_sub(got),
        latency_us: Percentiles::of(&h),
    })
}

/// Waits until the consumer owns its queues (probe messages arrive), then sends at the
/// paced rate for the duration; returns (sent, errors, elapsed).
async fn e2e_send(
    producer: &Producer,
    args: &E2eArgs,
    topic: &str,
    received: &AtomicU64,
    hist: &Mutex<Histogram<u64>>,
    measure_from: &AtomicU64,
) -> Result<(u64, u64, Duration)> {
    let size = args.common.size;
    let mut payload = body(size).to_vec();
    // Warm-up: timed markers until the consumer owns its queues and counts one (up to 30 s).
    let mut ready = false;
    for _ in 0..30 {
        if consumer_ready(producer, topic, received, &mut payload).await? {
            ready = true;
            break;
        }
    }
    if !ready {
        bail!("the benchmark consumer received nothing within 30 s");
    }
    // Measure only what is sent from here on.
    measure_from.store(now_ns(), Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(200)).await;
    hist.lock().await.reset();
    received.store(0, Ordering::Relaxed);
    let total = args.rate.saturating_mul(args.duration_secs);
    let interval = Duration::from_nanos(1_000_000_000 / args.rate);
    let semaphore = Arc::new(tokio::sync::Semaphore::new(args.in_flight.max(1)));
    let errors = Arc::new(AtomicU64::new(0));
    let bar = progress(total, "e2e");
    // The schedule is kept by an OS thread: tokio's timer has a 1 ms resolution, which would
    // turn 5,000 msgs/s into bursts of five every millisecond; `std::thread::sleep` wakes within
    // the kernel's timer slack (~50 µs). Each send is stamped by the pacer and then started as a
    // task on the runtime, so the hand-over to the runtime counts as latency.
    let (spawned_tx, mut spawned) = tokio::sync::mpsc::unbounded_channel();
    let pacer = {
        let runtime = tokio::runtime::Handle::current();
        let producer = producer.clone();
        let topic = topic.to_string();
        let errors = Arc::clone(&errors);
        let semaphore = Arc::clone(&semaphore);
        let bar = bar.clone();
        std::thread::Builder::new()
            .name("tern-bench-pacer".into())
            .spawn(move || {
                let started = std::time::Instant::now();
                for i in 0..total {
                    let due = started + interval * u32::try_from(i).unwrap_or(u32::MAX);
                    if let Some(wait) = due.checked_duration_since(std::time::Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let mut p = payload.clone();
                    p[..8].copy_from_slice(&now_ns().to_be_bytes());
                    let producer = producer.clone();
                    let topic = topic.clone();
                    let errors = Arc::clone(&errors);
                    let semaphore = Arc::clone(&semaphore);
                    let task = runtime.spawn(async move {
                        let Ok(_permit) = semaphore.acquire_owned().await else {
                            return;
                        };
                        if producer.send(Message::new(topic, p)).await.is_err() {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                    if spawned_tx.send(task).is_err() {
                        break;
                    }
                    bar.inc(1);
                }
                started.elapsed()
            })?
    };
    let started = tokio::time::Instant::now();
    while let Some(task) = spawned.recv().await {
        if task.await.is_err() {
            errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    let _ = tokio::task::spawn_blocking(move || pacer.join()).await;
    bar.finish_and_clear();
    let errors = errors.load(Ordering::Relaxed);
    Ok((total - errors, errors, started.elapsed()))
}

/// Sends one timed marker and reports whether the consumer counted it within 1 s.
async fn consumer_ready(
    producer: &Producer,
    topic: &str,
    received: &AtomicU64,
    payload: &mut [u8],
) -> Result<bool> {
    let before = received.load(Ordering::Relaxed);
    payload[..8].copy_from_slice(&now_ns().to_be_bytes());
    producer
        .send(Message::new(topic.to_string(), payload.to_vec()))
        .await?;
    for _ in 0..10 {
        if received.load(Ordering::Relaxed) > before {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_histogram() {
        let mut h = new_histogram().unwrap();
        for v in 1..=1000u64 {
            h.record(v).unwrap();
        }
        let p = Percentiles::of(&h).unwrap();
        assert!((495..=505).contains(&p.p50), "{}", p.p50);
        assert!((985..=995).contains(&p.p99), "{}", p.p99);
        assert_eq!(p.samples, 1000);
        assert!(Percentiles::of(&new_histogram().unwrap()).is_none());
    }

    #[test]
    fn throughput_is_messages_and_mib_per_second() {
        let (m, mib) = throughput(2048, 1024, Duration::from_secs(2));
        assert!((m - 1024.0).abs() < 1e-9);
        assert!((mib - 1.0).abs() < 1e-9);
    }
}
