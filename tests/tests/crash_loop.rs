//! The kill -9 crash loop: a real `tern-broker` under `SYNC_FLUSH` is killed with SIGKILL at a
//! random moment while several SDK producers and a committing pull consumer run against it,
//! restarted on the same port and store, and checked.
//!
//! Method. One NameServer and one broker live for the whole test; the broker's store directory
//! is kept across iterations, so every iteration recovers everything the earlier ones wrote.
//! The broker runs with 1 MiB CommitLog files and 1 000-unit ConsumeQueue files so that the
//! loop also crosses file boundaries. Each iteration:
//! 1. starts [`PRODUCER_TASKS`] producer tasks that send unique bodies (random padding) to the
//!    [`QUEUES`] queues of [`TOPIC`], at most [`SENDS_PER_TASK_MAX`] each, and a pull consumer
//!    task that polls and commits its offsets;
//! 2. after a random delay (drawn from the seeded RNG) kills the broker with SIGKILL, stops
//!    the tasks and keeps every send acknowledged with `SEND_OK` (queue id, queue offset, body);
//! 3. restarts the broker and checks invariants 1, 3, 4 and 5 below through raw pulls and the
//!    admin API.
//!
//! After the last iteration the broker stops cleanly and the test opens the store files
//! itself with `tern_broker::store::MessageStore` to check invariants 1–4 on disk, this time
//! decoding every record with its body CRC.
//!
//! Invariants (STYLE.md §5):
//! 1. Every message acknowledged under `SYNC_FLUSH` is readable after the restart, with the same
//!    body at the same queue offset of the same queue.
//! 2. Every ConsumeQueue unit points at a CommitLog record that decodes (CRC included) and
//!    whose topic, queue id and queue offset are the unit's own.
//! 3. Queue offsets are contiguous from the queue's minimum to its maximum: reading from the
//!    minimum returns offsets min, min+1, ... with no gap and ends exactly at the maximum.
//! 4. Nothing is readable beyond the recovered maximum: a pull at the maximum finds nothing
//!    new and a pull past it returns no message; no record starts at the CommitLog's maximum
//!    physical offset.
//! 5. A committed consumer offset never exceeds the queue's maximum offset.
//!
//! Invariant 6 (transactions) is checked by the transactional variant at the end of this
//! file: a half message reaches its real topic only after its commit, and at most once.
//!
//! kill -9 keeps the page cache, so this loop tests process crashes (a half-finished reput, a
//! stale checkpoint, a leftover abort file), not power loss; `broker/tests/recovery.rs` covers
//! torn and lost pages with hand-built images.
//!
//! Knobs: `TERN_CRASH_ITERATIONS` (default [`DEFAULT_ITERATIONS`]) and `TERN_CRASH_SEED` (default:
//! from the clock). The seed is printed before the loop and with every iteration; rerun with
//! the printed seed to repeat the same kill delays and bodies (thread timing still varies).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use tern_broker::store::{GetMessageStatus, MessageStore, StoreConfig};
use tern_client::consumer::PullStatus;
use tern_client::transaction::{LocalTransactionState, TransactionListener, TransactionProducer};
use tern_client::{Admin, ClientConfig, ConsumeFrom, Producer, PullConsumer, SendStatus};
use tern_common::message::record::decode_record;
use tern_common::message::{Message, MessageExt};
use tern_common::route::MessageQueue;
use tern_tests::{eventually, start_broker, start_nameserver};

/// Iterations when `TERN_CRASH_ITERATIONS` is not set: small enough for CI.
const DEFAULT_ITERATIONS: u32 = 3;
/// Upper bound on `TERN_CRASH_ITERATIONS`, so a typo cannot run for hours.
const ITERATIONS_MAX: u32 = 200;
/// The topic every producer writes.
const TOPIC: &str = "CrashLoop";
/// Queues of [`TOPIC`].
const QUEUES: i32 = 4;
/// Concurrent producer tasks per iteration.
const PRODUCER_TASKS: u64 = 3;
/// Most sends of one producer task in one iteration.
const SENDS_PER_TASK_MAX: u64 = 5_000;
/// Most bytes of random padding appended to a body (keeps bodies below the SDK's
/// compression threshold, so the stored body is the sent body).
const PADDING_BYTES_MAX: u64 = 600;
/// The kill comes this many milliseconds after the producers start, plus a random part.
const KILL_DELAY_MS_MIN: u64 = 200;
/// Range of the random part of the kill delay, milliseconds.
const KILL_DELAY_MS_SPREAD: u64 = 1_300;
/// CommitLog file size of the test broker, bytes (small, so files roll during the loop).
const COMMIT_LOG_FILE_BYTES: usize = 1024 * 1024;
/// ConsumeQueue units per file of the test broker.
const CQ_UNITS_PER_FILE: usize = 1_000;
/// Index hash slots per IndexFile of the test broker.
const INDEX_HASH_SLOTS: usize = 1_000;
/// Index entries per IndexFile of the test broker.
const INDEX_ENTRIES: usize = 4_000;
/// Largest message of the test broker, bytes (must stay below the CommitLog file size).
const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Messages per pull when reading a queue back.
const PULL_BATCH: i32 = 32;
/// How long the broker may take to serve the topic again after a restart.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long stopped tasks may take to notice and return.
const TASK_JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// SplitMix64: a tiny seeded generator, enough for kill delays and padding.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// The broker flags of the loop: SYNC_FLUSH and small files (every size the store check
/// needs is passed explicitly, so [`store_config`] matches the broker).
fn broker_args() -> Vec<String> {
    [
        ("--flush-disk-type", "SYNC_FLUSH".to_string()),
        (
            "--mapped-file-size-commit-log",
            COMMIT_LOG_FILE_BYTES.to_string(),
        ),
        (
            "--consume-queue-units-per-file",
            CQ_UNITS_PER_FILE.to_string(),
        ),
        ("--max-hash-slot-num", INDEX_HASH_SLOTS.to_string()),
        ("--max-index-num", INDEX_ENTRIES.to_string()),
        ("--max-message-size", MAX_MESSAGE_BYTES.to_string()),
        ("--offset-persist-interval-ms", "200".to_string()),
        ("--transaction-check-interval-ms", "300".to_string()),
        ("--transaction-timeout-ms", "1000".to_string()),
        // 100 check-backs at 300 ms: a half message is kept 30 s while its producer reconnects.
        ("--transaction-check-max", "100".to_string()),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [flag.to_string(), value])
    .collect()
}

/// The store configuration the broker started by [`broker_args`] uses.
fn store_config(root: &Path) -> StoreConfig {
    let mut cfg = StoreConfig::new(root);
    cfg.mapped_file_size_commit_log = COMMIT_LOG_FILE_BYTES;
    cfg.consume_queue_units_per_file = CQ_UNITS_PER_FILE;
    cfg.max_hash_slot_num = INDEX_HASH_SLOTS;
    cfg.max_index_num = INDEX_ENTRIES;
    cfg.max_message_size = MAX_MESSAGE_BYTES;
    cfg
}

/// Creates `topic` with [`QUEUES`] queues and waits until the NameServer routes it.
async fn create_topic(admin: &Admin, topic: &str) -> Result<()> {
    let cluster = eventually("broker registration", READY_TIMEOUT, || {
        let admin = admin.clone();
        async move {
            let info = admin.cluster_info().await.ok()?;
            info.cluster_addr_table.keys().next().cloned()
        }
    })
    .await?;
    admin.create_topic(&cluster, topic, QUEUES).await?;
    eventually("topic route", READY_TIMEOUT, || {
        let admin = admin.clone();
        async move { admin.topic_route(topic).await.ok() }
    })
    .await?;
    Ok(())
}

/// Acknowledged sends: (queue id, queue offset) → body.
type AckedTable = BTreeMap<(i32, i64), Bytes>;

/// One producer task: sends until `stop` or [`SENDS_PER_TASK_MAX`], returns its `SEND_OK`s.
async fn produce(
    producer: Producer,
    iteration: u32,
    task: u64,
    mut rng: SplitMix64,
    stop: Arc<AtomicBool>,
) -> Vec<(i32, i64, Bytes)> {
    let mut acked = Vec::new();
    for seq in 0..SENDS_PER_TASK_MAX {
        if stop.load(Ordering::Acquire) {
            break;
        }
        let padding = "x".repeat(usize::try_from(rng.below(PADDING_BYTES_MAX)).unwrap_or(0));
        let body = Bytes::from(format!("it{iteration}-t{task}-s{seq}-{padding}"));
        match producer.send(Message::new(TOPIC, body.clone())).await {
            Ok(r) if r.status == SendStatus::SendOk => {
                acked.push((r.message_queue.queue_id, r.queue_offset, body));
            }
            // Not acknowledged: it may or may not be stored, and the check allows both.
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    acked
}

/// The committing consumer task: polls and commits until `stop`.
async fn consume(consumer: PullConsumer, stop: Arc<AtomicBool>) -> u64 {
    let mut polled = 0u64;
    // Bounded: each round takes at least the 100 ms poll timeout or returns messages, and the
    // producers stop after a bounded number of sends.
    for _ in 0..100_000 {
        if stop.load(Ordering::Acquire) {
            break;
        }
        match consumer.poll(Duration::from_millis(100)).await {
            Ok(msgs) => polled += msgs.len() as u64,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
        let _ = consumer.commit().await;
    }
    polled
}

/// What one queue holds, read back with raw pulls from its minimum offset.
#[derive(Debug)]
struct QueueContents {
    min_offset: i64,
    max_offset: i64,
    /// Messages at `min_offset`, `min_offset + 1`, ...
    messages: Vec<MessageExt>,
}

/// Reads `mq` from its minimum to its maximum offset, checking invariants 3 and 4.
async fn read_queue(reader: &PullConsumer, mq: &MessageQueue) -> Result<QueueContents> {
    let probe = reader.pull(mq, 0, 1).await.context("probing the queue")?;
    let (min_offset, max_offset) = (probe.min_offset, probe.max_offset);
    ensure!(
        0 <= min_offset && min_offset <= max_offset,
        "{mq}: min offset {min_offset} above max offset {max_offset}"
    );
    let mut messages = Vec::new();
    let mut offset = min_offset;
    // Each round advances by at least one message or ends the loop.
    let rounds_max = (max_offset - min_offset) + 2;
    for _ in 0..rounds_max {
        if offset >= max_offset {
            break;
        }
        let r = reader.pull(mq, offset, PULL_BATCH).await?;
        ensure!(
            r.status == PullStatus::Found && !r.messages.is_empty(),
            "{mq}: pull at {offset} (max {max_offset}) returned {:?} with {} messages: a gap",
            r.status,
            r.messages.len()
        );
        for m in &r.messages {
            ensure!(
                m.queue_offset == offset,
                "{mq}: invariant 3: expected queue offset {offset}, got {} (body {:?})",
                m.queue_offset,
                String::from_utf8_lossy(&m.message.body)
            );
            ensure!(
                m.topic() == mq.topic && m.queue_id == mq.queue_id,
                "{mq}: unit {offset} holds a message of {}:{}",
                m.topic(),
                m.queue_id
            );
            offset += 1;
        }
        ensure!(
            r.next_begin_offset == offset,
            "{mq}: next begin offset {} after reading up to {offset}",
            r.next_begin_offset
        );
        messages.extend(r.messages);
    }
    ensure!(
        offset == max_offset,
        "{mq}: invariant 3: read ended at {offset}, max offset {max_offset}"
    );
    for past in [max_offset, max_offset + 1] {
        let r = reader.pull(mq, past, PULL_BATCH).await?;
        ensure!(
            r.messages.is_empty() && r.status != PullStatus::Found,
            "{mq}: invariant 4: pull at {past} (max {max_offset}) returned {:?} with {} messages",
            r.status,
            r.messages.len()
        );
    }
    Ok(QueueContents {
        min_offset,
        max_offset,
        messages,
    })
}

/// Checks invariants 1, 3, 4 and 5 against the running broker.
async fn check_running_broker(
    reader: &PullConsumer,
    admin: &Admin,
    queues: &[MessageQueue],
    acked: &AckedTable,
    label: &str,
) -> Result<()> {
    let mut max_offsets = BTreeMap::new();
    for mq in queues {
        let contents = read_queue(reader, mq)
            .await
            .with_context(|| format!("{label}: reading {mq}"))?;
        for ((_, queue_offset), body) in
            acked.range((mq.queue_id, i64::MIN)..=(mq.queue_id, i64::MAX))
        {
            let index = usize::try_from(queue_offset - contents.min_offset).ok();
            let Some(found) = index.and_then(|i| contents.messages.get(i)) else {
                bail!(
                    "{label}: invariant 1: acknowledged {mq} offset {queue_offset} not readable \
                     (queue holds {}..{})",
                    contents.min_offset,
                    contents.max_offset
                );
            };
            ensure!(
                found.message.body == *body,
                "{label}: invariant 1: {mq} offset {queue_offset} holds {:?}, acknowledged {:?}",
                String::from_utf8_lossy(&found.message.body),
                String::from_utf8_lossy(body)
            );
        }
        max_offsets.insert(mq.queue_id, contents.max_offset);
    }
    // Invariant 5. The group may have committed nothing yet (then the broker knows no
    // offsets for it and the table is empty or the call fails with "not found").
    if let Ok(progress) = admin.consumer_progress(CONSUMER_GROUP, TOPIC).await {
        for p in progress {
            let max = max_offsets
                .get(&p.message_queue.queue_id)
                .copied()
                .unwrap_or(p.broker_offset);
            ensure!(
                p.consumer_offset <= max,
                "{label}: invariant 5: {} committed offset {} above max offset {max}",
                p.message_queue,
                p.consumer_offset
            );
        }
    }
    Ok(())
}

/// The group of the committing consumer.
const CONSUMER_GROUP: &str = "crash-loop-cg";

/// Waits until every queue of [`TOPIC`] answers pulls again after a restart.
async fn wait_ready(reader: &PullConsumer, queues: &[MessageQueue]) -> Result<()> {
    eventually("queues readable after restart", READY_TIMEOUT, || async {
        for mq in queues {
            reader.pull(mq, 0, 1).await.ok()?;
        }
        Some(())
    })
    .await
}

/// Opens the stopped broker's store directly and checks invariants 1–4 on the files.
fn check_store_files(root: &Path, acked: &AckedTable) -> Result<()> {
    let store = MessageStore::open(store_config(root)).context("opening the store")?;
    let result = check_open_store(&store, acked);
    store.shutdown();
    result
}

fn check_open_store(store: &MessageStore, acked: &AckedTable) -> Result<()> {
    ensure!(
        store.read_record(store.max_phy_offset()).is_none(),
        "invariant 4: a record starts at the max physical offset {}",
        store.max_phy_offset()
    );
    let mut checked_acked = 0usize;
    for (topic, queue_id) in store.topics_and_queues() {
        let min = store.min_offset_in_queue(&topic, queue_id);
        let max = store.max_offset_in_queue(&topic, queue_id);
        let mut offset = min;
        let rounds_max = (max - min) + 2;
        for _ in 0..rounds_max {
            if offset >= max {
                break;
            }
            let r = store.get_message(&topic, queue_id, offset, PULL_BATCH, 1 << 20, &|_| true);
            ensure!(
                r.status == GetMessageStatus::Found,
                "{topic}:{queue_id}: get at {offset} (max {max}) returned {:?}",
                r.status
            );
            for (record, queue_offset) in r.messages.iter().zip(&r.message_queue_offsets) {
                ensure!(
                    *queue_offset == offset,
                    "{topic}:{queue_id}: invariant 3: unit {queue_offset} where {offset} was due"
                );
                let rec = decode_record(record, true).map_err(|e| {
                    anyhow::anyhow!("{topic}:{queue_id}: invariant 2: unit {offset}: {e}")
                })?;
                ensure!(
                    rec.topic == topic && rec.queue_id == queue_id && rec.queue_offset == offset,
                    "{topic}:{queue_id}: invariant 2: unit {offset} points at a record of \
                     {}:{} offset {}",
                    rec.topic,
                    rec.queue_id,
                    rec.queue_offset
                );
                if topic == TOPIC {
                    if let Some(body) = acked.get(&(queue_id, offset)) {
                        ensure!(
                            rec.body == &body[..],
                            "invariant 1: {topic}:{queue_id} offset {offset} body differs"
                        );
                        checked_acked += 1;
                    }
                }
                offset += 1;
            }
            ensure!(
                r.next_begin_offset == offset,
                "{topic}:{queue_id}: next begin offset {} after {offset}",
                r.next_begin_offset
            );
        }
        ensure!(
            offset == max,
            "{topic}:{queue_id}: invariant 3: read ended at {offset}, max {max}"
        );
    }
    ensure!(
        checked_acked == acked.len(),
        "invariant 1: only {checked_acked} of {} acknowledged messages found in the store files",
        acked.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_kill_9_loop() -> Result<()> {
    let iterations = env_u64("TERN_CRASH_ITERATIONS").map_or(DEFAULT_ITERATIONS, |n| {
        n.min(u64::from(ITERATIONS_MAX)) as u32
    });
    let seed = env_u64("TERN_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    println!(
        "crash loop: {iterations} iterations, seed {seed} (TERN_CRASH_SEED={seed} repeats it)"
    );
    let mut rng = SplitMix64(seed);

    let dir = tempfile::tempdir()?;
    let store_dir = dir.path().join("broker-a");
    let namesrv = start_nameserver(dir.path(), &[])?;
    let args = broker_args();
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut broker = start_broker(&namesrv.addr, &store_dir, &arg_refs)?;
    let ns = namesrv.addr.clone();
    let admin = Admin::builder().namesrv_addr(&ns).build().await?;
    create_topic(&admin, TOPIC).await?;

    let producer = Producer::builder()
        .namesrv_addr(&ns)
        .group("crash-loop-pg")
        .send_timeout(Duration::from_secs(3))
        .build()
        .await?;
    let reader = PullConsumer::builder()
        .namesrv_addr(&ns)
        .group("crash-loop-reader")
        .auto_commit(false)
        .build()?;
    reader.start().await?;
    let queues = reader.fetch_queues(TOPIC).await?;
    ensure!(
        queues.len() == QUEUES as usize,
        "expected {QUEUES} queues, got {queues:?}"
    );
    let consumer = PullConsumer::builder()
        .namesrv_addr(&ns)
        .group(CONSUMER_GROUP)
        .consume_from(ConsumeFrom::First)
        .persist_interval(Duration::from_millis(200))
        .build()?;
    consumer.start().await?;
    consumer.assign(queues.clone()).await?;

    let mut acked = AckedTable::new();
    for iteration in 0..iterations {
        let kill_after = Duration::from_millis(KILL_DELAY_MS_MIN + rng.below(KILL_DELAY_MS_SPREAD));
        println!("iteration {iteration}: seed {seed}, kill after {kill_after:?}");
        let label = format!("iteration {iteration} (seed {seed})");
        let stop = Arc::new(AtomicBool::new(false));
        let producers: Vec<_> = (0..PRODUCER_TASKS)
            .map(|task| {
                let task_rng = SplitMix64(rng.next_u64());
                tokio::spawn(produce(
                    producer.clone(),
                    iteration,
                    task,
                    task_rng,
                    stop.clone(),
                ))
            })
            .collect();
        let consumer_task = tokio::spawn(consume(consumer.clone(), stop.clone()));

        tokio::time::sleep(kill_after).await;
        let killed_at = Instant::now();
        tokio::task::block_in_place(|| broker.kill());
        stop.store(true, Ordering::Release);

        let mut new_acks = 0usize;
        for handle in producers {
            let sent = tokio::time::timeout(TASK_JOIN_TIMEOUT, handle)
                .await
                .with_context(|| format!("{label}: a producer task did not stop"))??;
            for (queue_id, queue_offset, body) in sent {
                new_acks += 1;
                if let Some(previous) = acked.insert((queue_id, queue_offset), body.clone()) {
                    bail!(
                        "{label}: queue {queue_id} offset {queue_offset} acknowledged twice: \
                         {:?} and {:?}",
                        String::from_utf8_lossy(&previous),
                        String::from_utf8_lossy(&body)
                    );
                }
            }
        }
        let polled = tokio::time::timeout(TASK_JOIN_TIMEOUT, consumer_task)
            .await
            .with_context(|| format!("{label}: the consumer task did not stop"))??;
        println!(
            "iteration {iteration}: {new_acks} new acknowledgements ({} in all), {polled} polled, \
             tasks stopped {:?} after the kill",
            acked.len(),
            killed_at.elapsed()
        );

        tokio::task::block_in_place(|| broker.restart())
            .with_context(|| format!("{label}: restarting the broker"))?;
        wait_ready(&reader, &queues)
            .await
            .with_context(|| format!("{label}: broker log:\n{}", broker.log_tail(40)))?;
        check_running_broker(&reader, &admin, &queues, &acked, &label)
            .await
            .with_context(|| format!("{label}: broker log:\n{}", broker.log_tail(40)))?;
    }

    consumer.shutdown().await;
    reader.shutdown().await;
    producer.shutdown().await;
    admin.shutdown().await;
    tokio::task::block_in_place(|| broker.stop());
    let root = store_dir.clone();
    let acked = Arc::new(acked);
    tokio::task::spawn_blocking(move || check_store_files(&root, &acked))
        .await?
        .with_context(|| format!("seed {seed}: checking the store files after a clean stop"))?;
    drop(namesrv);
    Ok(())
}

/// What the transactional variant decides for a transaction, from the last character of its
/// body: `c` commits at once, `u` answers Unknown and commits on check-back, `r` rolls back
/// (at once and on check-back).
fn decision(body: &[u8]) -> (LocalTransactionState, LocalTransactionState) {
    match body.last() {
        Some(b'c') => (LocalTransactionState::Commit, LocalTransactionState::Commit),
        Some(b'u') => (
            LocalTransactionState::Unknown,
            LocalTransactionState::Commit,
        ),
        _ => (
            LocalTransactionState::Rollback,
            LocalTransactionState::Rollback,
        ),
    }
}

/// The listener of the transactional variant; see [`decision`].
#[derive(Debug, Default)]
struct DecideByBody;

impl TransactionListener for DecideByBody {
    fn execute_local_transaction(
        &self,
        msg: &Message,
        _arg: Option<&(dyn std::any::Any + Send + Sync)>,
    ) -> LocalTransactionState {
        decision(&msg.body).0
    }

    fn check_local_transaction(&self, msg: &MessageExt) -> LocalTransactionState {
        decision(&msg.message.body).1
    }
}

/// Topic of the transactional variant.
const TX_TOPIC: &str = "CrashLoopTx";
/// Most transactions sent per iteration of the transactional variant.
const TX_SENDS_MAX: u64 = 2_000;

/// Invariant 6 under kill -9: transactions are sent while the broker is killed at a random
/// moment; after the restart every transaction whose half message was acknowledged and which
/// commits (at once or on check-back) appears on the real topic exactly once, a rolled-back
/// one never, and no body appears twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_survive_kill_9_at_most_once() -> Result<()> {
    let iterations = env_u64("TERN_CRASH_ITERATIONS")
        .map_or(DEFAULT_ITERATIONS, |n| {
            n.min(u64::from(ITERATIONS_MAX)) as u32
        })
        .min(3);
    let seed = env_u64("TERN_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    println!("transactional crash loop: {iterations} iterations, seed {seed}");
    let mut rng = SplitMix64(seed);

    let dir = tempfile::tempdir()?;
    // With TERN_CRASH_KEEP_DIR set, the store and logs outlive the test for inspection.
    let _kept = std::env::var_os("TERN_CRASH_KEEP_DIR").map(|_| {
        println!("transactional crash loop: keeping {}", dir.path().display());
        KeepDir(dir.path().to_path_buf())
    });
    let namesrv = start_nameserver(dir.path(), &[])?;
    let args = broker_args();
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut broker = start_broker(&namesrv.addr, &dir.path().join("broker-a"), &arg_refs)?;
    let ns = namesrv.addr.clone();
    let admin = Admin::builder().namesrv_addr(&ns).build().await?;
    create_topic(&admin, TX_TOPIC).await?;
    // The broker counts a check-back even when no producer connection is known yet, and the
    // producer reconnects with its next heartbeat; a short heartbeat keeps the restarted
    // broker from discarding committable half messages after `--transaction-check-max`.
    let mut client_config = ClientConfig::default();
    client_config.heartbeat_interval = Duration::from_millis(300);
    let producer = TransactionProducer::builder()
        .client_config(client_config)
        .namesrv_addr(&ns)
        .group("crash-loop-tx-pg")
        .send_timeout(Duration::from_secs(3))
        .listener(DecideByBody)
        .build()
        .await?;
    let reader = PullConsumer::builder()
        .namesrv_addr(&ns)
        .group("crash-loop-tx-reader")
        .auto_commit(false)
        .build()?;
    reader.start().await?;
    let queues = reader.fetch_queues(TX_TOPIC).await?;

    // Bodies whose half message was acknowledged, by whether they must end up delivered.
    let mut must_deliver: Vec<Bytes> = Vec::new();
    let mut never_deliver: Vec<Bytes> = Vec::new();
    for iteration in 0..iterations {
        let kill_after = Duration::from_millis(KILL_DELAY_MS_MIN + rng.below(KILL_DELAY_MS_SPREAD));
        println!("tx iteration {iteration}: seed {seed}, kill after {kill_after:?}");
        let label = format!("tx iteration {iteration} (seed {seed})");
        let stop = Arc::new(AtomicBool::new(false));
        let sender = {
            let producer = producer.clone();
            let stop = stop.clone();
            let mut task_rng = SplitMix64(rng.next_u64());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for seq in 0..TX_SENDS_MAX {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    let kind = ['c', 'u', 'r'][usize::try_from(task_rng.below(3)).unwrap_or(0)];
                    let body = Bytes::from(format!("tx-it{iteration}-s{seq}-{kind}"));
                    match producer
                        .send_in_transaction(Message::new(TX_TOPIC, body.clone()), None)
                        .await
                    {
                        Ok(r) if r.send_result.status == SendStatus::SendOk => acked.push(body),
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
                acked
            })
        };
        tokio::time::sleep(kill_after).await;
        tokio::task::block_in_place(|| broker.kill());
        stop.store(true, Ordering::Release);
        let acked = tokio::time::timeout(TASK_JOIN_TIMEOUT, sender)
            .await
            .with_context(|| format!("{label}: the sender did not stop"))??;
        for body in acked {
            if decision(&body).1 == LocalTransactionState::Commit {
                must_deliver.push(body);
            } else {
                never_deliver.push(body);
            }
        }
        tokio::task::block_in_place(|| broker.restart())
            .with_context(|| format!("{label}: restarting the broker"))?;
        wait_ready(&reader, &queues).await?;

        // Check-backs resolve the transactions whose END_TRANSACTION the kill lost.
        let wanted = must_deliver.len();
        let delivered = eventually("committed transactions delivered", READY_TIMEOUT, || {
            let reader = reader.clone();
            let queues = queues.clone();
            let must = must_deliver.clone();
            async move {
                let counts = count_bodies(&reader, &queues).await.ok()?;
                must.iter()
                    .all(|b| counts.contains_key(b))
                    .then_some(counts)
            }
        })
        .await
        .with_context(|| {
            format!(
                "{label}: {wanted} committed transactions; log:\n{}",
                broker.log_tail(40)
            )
        })?;
        for (body, count) in &delivered {
            if *count != 1 {
                let copies = describe_copies(&reader, &queues, body).await;
                bail!(
                    "{label}: invariant 6: {:?} delivered {count} times:\n{copies}\nstore: {}\nlog:\n{}",
                    String::from_utf8_lossy(body),
                    dir.path().display(),
                    broker.log_tail(60)
                );
            }
            ensure!(
                decision(body).1 == LocalTransactionState::Commit,
                "{label}: invariant 6: rolled-back {:?} delivered",
                String::from_utf8_lossy(body)
            );
        }
        for body in &never_deliver {
            ensure!(
                !delivered.contains_key(body),
                "{label}: invariant 6: rolled-back {:?} delivered",
                String::from_utf8_lossy(body)
            );
        }
        println!(
            "tx iteration {iteration}: {} delivered, {} acknowledged commits, {} rollbacks",
            delivered.len(),
            must_deliver.len(),
            never_deliver.len()
        );
    }
    reader.shutdown().await;
    producer.shutdown().await;
    admin.shutdown().await;
    broker.stop();
    drop(namesrv);
    Ok(())
}

/// Copies `dir` aside when dropped (the test's temp dir is removed right after), so a failed
/// run leaves its store and logs at `<dir>.kept` for inspection.
struct KeepDir(std::path::PathBuf);

impl Drop for KeepDir {
    fn drop(&mut self) {
        let target = self.0.with_extension("kept");
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(&self.0)
            .arg(&target)
            .status();
        println!(
            "kept the test directory at {} ({status:?})",
            target.display()
        );
    }
}

/// Every stored copy of `body` in the transactional topic: where it is and which half record
/// (CommitLog offset) its commit named, for diagnosing a duplicate.
async fn describe_copies(reader: &PullConsumer, queues: &[MessageQueue], body: &[u8]) -> String {
    let mut out = String::new();
    for mq in queues {
        let Ok(contents) = read_queue(reader, mq).await else {
            continue;
        };
        for m in contents.messages.iter().filter(|m| m.message.body == body) {
            out.push_str(&format!(
                "  queue {} offset {} phy {} stored {} born {} prepared offset {} uniq {:?}\n",
                m.queue_id,
                m.queue_offset,
                m.phy_offset,
                m.store_timestamp,
                m.born_timestamp,
                m.prepared_transaction_offset,
                m.message
                    .property(tern_common::message::property_key::UNIQ_KEY)
            ));
        }
    }
    out
}

/// Reads every queue of the transactional topic and counts each body.
async fn count_bodies(
    reader: &PullConsumer,
    queues: &[MessageQueue],
) -> Result<BTreeMap<Bytes, usize>> {
    let mut counts = BTreeMap::new();
    for mq in queues {
        for m in read_queue(reader, mq).await?.messages {
            *counts.entry(m.message.body.clone()).or_insert(0) += 1;
        }
    }
    Ok(counts)
}
