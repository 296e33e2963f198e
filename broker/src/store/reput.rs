//! Reput: the dispatcher that tails the CommitLog behind the writer.
//!
//! For every record it appends a ConsumeQueue unit (skipping PREPARED and ROLLBACK
//! transaction records, PROTOCOL.md §3.3), index entries for `KEYS` tokens and `UNIQ_KEY`
//! (skipping ROLLBACK), and then calls the arrival listeners. For `SCHEDULE_TOPIC_XXXX` the
//! tags code is the delivery time: store timestamp + delay of the record's `DELAY` level.
//! Contract: the dispatched offset only moves forward, over records that were fully dispatched;
//! `wait_dispatched` lets callers (and tests) wait for it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_common::message::property::{iter_properties, property_key};
use tern_common::message::record::{decode_record, sys_flag, RecordError, RecordRef};
use tern_common::message::tag::tags_hash;
use tern_common::message::topic::SCHEDULE_TOPIC_XXXX;

use super::consume_queue::CqUnit;
use super::{ArrivalEvent, Inner};

/// One decoded CommitLog record handed to the reput consumers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchRequest {
    /// Topic.
    pub topic: String,
    /// Queue id.
    pub queue_id: i32,
    /// CommitLog offset of the record.
    pub phy_offset: i64,
    /// Record size in bytes.
    pub size: i32,
    /// ConsumeQueue tags code.
    pub tags_code: i64,
    /// Store timestamp (ms).
    pub store_timestamp: i64,
    /// Queue offset assigned at append.
    pub queue_offset: i64,
    /// sysFlag.
    pub sys_flag: i32,
    /// Index keys: the `KEYS` tokens and the `UNIQ_KEY`.
    pub keys: Vec<String>,
}

impl DispatchRequest {
    /// Builds the request for a decoded record; `delay_table` maps delay levels (1-based) to
    /// delays for the schedule topic's tags code.
    pub fn from_record(r: &RecordRef<'_>, delay_table: &[Duration]) -> Self {
        // The four properties dispatch needs, in one pass over the property string (the last
        // of duplicates wins, as with `RecordRef::property`).
        let (mut tags, mut keys_text, mut uniq_key, mut delay_level) = (None, None, None, None);
        for (name, value) in iter_properties(r.properties) {
            match name {
                property_key::TAGS => tags = Some(value),
                property_key::KEYS => keys_text = Some(value),
                property_key::UNIQ_KEY => uniq_key = Some(value),
                property_key::DELAY => delay_level = Some(value),
                _ => {}
            }
        }
        let tags = if r.topic == SCHEDULE_TOPIC_XXXX {
            let level = delay_level.and_then(|v| v.trim().parse::<usize>().ok());
            let delay = match level {
                Some(l) if l > 0 && !delay_table.is_empty() => {
                    delay_table[l.min(delay_table.len()) - 1]
                }
                _ => Duration::ZERO,
            };
            r.store_timestamp
                .saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX))
        } else {
            tags.map_or(0, tags_hash)
        };
        let mut keys: Vec<String> = keys_text
            .unwrap_or("")
            .split(' ')
            .filter(|k| !k.is_empty())
            .map(str::to_string)
            .collect();
        if let Some(u) = uniq_key {
            keys.push(u.to_string());
        }
        Self {
            topic: r.topic.to_string(),
            queue_id: r.queue_id,
            phy_offset: r.phy_offset,
            size: r.total_size,
            tags_code: tags,
            store_timestamp: r.store_timestamp,
            queue_offset: r.queue_offset,
            sys_flag: r.sys_flag,
            keys,
        }
    }
}

/// What one scan step found.
enum Step {
    /// Records decoded from one file, and the offset after them.
    Records(Vec<DispatchRequest>, i64),
    /// Jump to this offset (end-of-file marker or a fully read file).
    Skip(i64),
    /// Nothing more to read now.
    Idle,
    /// An undecodable record at this offset.
    Corrupt(i64, RecordError),
}

/// Maximum records decoded per scan step (bounds the batch buffer).
const MAX_RECORDS_PER_STEP: usize = 1024;

impl Inner {
    fn scan(&self, from: i64) -> Step {
        let log = &self.commit_log;
        if from < log.min_offset() {
            return Step::Skip(log.min_offset());
        }
        let Some(file) = log.files().find_file(from) else {
            return Step::Idle;
        };
        let pos = (from - file.file_from_offset()) as usize;
        let wrote = file.wrote_position();
        if pos >= wrote {
            return if wrote == file.size() {
                Step::Skip(log.roll_next_file(from))
            } else {
                Step::Idle
            };
        }
        let delay_table = &self.config.delay_level_table;
        file.with_slice(pos, wrote - pos, |buf| {
            let mut at = 0usize;
            let mut out = Vec::new();
            while at < buf.len() && out.len() < MAX_RECORDS_PER_STEP {
                match decode_record(&buf[at..], false) {
                    Ok(r) => {
                        out.push(DispatchRequest::from_record(&r, delay_table));
                        at += r.len();
                    }
                    Err(RecordError::Blank { .. }) if out.is_empty() => {
                        return Step::Skip(log.roll_next_file(from));
                    }
                    Err(RecordError::Blank { .. }) => break,
                    Err(e) if out.is_empty() => return Step::Corrupt(from, e),
                    Err(_) => break,
                }
            }
            Step::Records(out, from + at as i64)
        })
        .unwrap_or(Step::Idle)
    }

    /// Dispatches one record to the ConsumeQueue, the index and the listeners.
    fn dispatch(&self, req: &DispatchRequest) -> Result<(), super::StoreError> {
        let tx = sys_flag::transaction_value(req.sys_flag);
        let to_queue =
            tx != sys_flag::TRANSACTION_PREPARED_TYPE && tx != sys_flag::TRANSACTION_ROLLBACK_TYPE;
        let mut written = false;
        if to_queue {
            let cq = self.find_or_create_queue(&req.topic, req.queue_id)?;
            let unit = CqUnit {
                phy_offset: req.phy_offset,
                size: req.size,
                tags_code: req.tags_code,
            };
            written = cq.put_unit(req.queue_offset, unit)?;
        }
        if tx != sys_flag::TRANSACTION_ROLLBACK_TYPE && !req.keys.is_empty() {
            self.index.put(
                &req.topic,
                req.keys.iter().map(String::as_str),
                req.phy_offset,
                req.store_timestamp,
            )?;
        }
        if written {
            // Listeners are quick (their contract); they run under the read lock rather than
            // on a copy of the list made for every record.
            let listeners = self.listeners.read();
            if !listeners.is_empty() {
                let event = ArrivalEvent {
                    topic: &req.topic,
                    queue_id: req.queue_id,
                    queue_offset: req.queue_offset + 1,
                    tags_code: req.tags_code,
                    store_timestamp: req.store_timestamp,
                };
                for l in listeners.iter() {
                    l(&event);
                }
            }
        }
        Ok(())
    }

    /// Dispatches what is available up to `limit` (exclusive CommitLog offset), in bounded
    /// steps. Returns the number of records dispatched.
    pub(super) fn reput_until(&self, limit: i64, max_steps: usize) -> usize {
        let mut count = 0;
        for _ in 0..max_steps {
            let from = self.dispatched.load(Ordering::Acquire);
            if from >= limit {
                break;
            }
            match self.scan(from) {
                Step::Records(reqs, next) => {
                    let mut at = from;
                    for req in &reqs {
                        if let Err(e) = self.dispatch(req) {
                            tracing::error!(phy_offset = req.phy_offset, cause = %e, "dispatch failed; store is read-only");
                            self.flags.set_write_error();
                            self.advance_dispatched(at, req.store_timestamp);
                            self.notify_dispatched();
                            return count;
                        }
                        at = req.phy_offset + i64::from(req.size);
                        self.advance_dispatched(at, req.store_timestamp);
                        count += 1;
                    }
                    debug_assert_eq!(at, next);
                    self.notify_dispatched();
                }
                Step::Skip(next) => {
                    self.advance_dispatched(next, 0);
                    self.notify_dispatched();
                }
                Step::Idle => break,
                Step::Corrupt(at, e) => {
                    if !self.reput_corrupt_logged.swap(true, Ordering::AcqRel) {
                        tracing::error!(phy_offset = at, cause = %e, "undecodable commit log record; dispatch stalled");
                    }
                    break;
                }
            }
        }
        count
    }

    fn advance_dispatched(&self, to: i64, store_timestamp: i64) {
        self.dispatched.fetch_max(to, Ordering::AcqRel);
        if store_timestamp > 0 {
            self.dispatched_store_timestamp
                .fetch_max(store_timestamp, Ordering::AcqRel);
        }
    }

    /// Wakes `wait_dispatched` callers (once per scan step, not per record).
    fn notify_dispatched(&self) {
        let _guard = self.dispatch_lock.lock();
        self.dispatch_cv.notify_all();
    }

    /// Waits until everything below `phy_offset` is dispatched or `timeout` passes.
    pub(super) fn wait_dispatched(&self, phy_offset: i64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut guard = self.dispatch_lock.lock();
        loop {
            if self.dispatched.load(Ordering::Acquire) >= phy_offset {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            self.dispatch_cv
                .wait_for(&mut guard, (deadline - now).min(Duration::from_millis(10)));
        }
    }
}

/// Longest the reput thread parks when idle. Appends wake it at once (`after_append`); this
/// only bounds how long a missed wake-up could delay dispatch and how often a stalled dispatcher
/// (an undecodable record) retries.
const IDLE_PARK: Duration = Duration::from_millis(100);

/// How long the reput thread waits for more records, without asking appenders to wake it, when
/// it catches up while records are arriving fast (see [`LINGER_MIN_RATE`]). Under a steady
/// stream of appends this batches the records of one linger into one pass: without it the
/// dispatcher caught up after every record and parked, and every append paid a futex wake plus
/// a context switch (≈ 17 % of the broker's CPU in a publish run, docs/BENCHMARKS.md). A record
/// appended while the thread lingers waits at most this long (plus the thread's timer slack,
/// 50 µs by default on Linux) for dispatch.
const LINGER: Duration = Duration::from_micros(100);

/// Records per [`RATE_WINDOW`] from which the reput thread lingers instead of parking: 20 per
/// ms (20,000 appends/s). Below it, each record gets a wake-up and is dispatched at once, so a
/// light load (the end-to-end latency benchmark's 5,000 msgs/s) pays no linger delay.
const LINGER_MIN_RATE: u64 = 20;

/// Window over which the reput thread counts dispatched records to choose between lingering
/// and parking.
const RATE_WINDOW: Duration = Duration::from_millis(1);

/// Body of the reput thread: dispatch what the CommitLog holds. When a pass makes no progress
/// right after one that did and records arrived fast in the last window, linger for
/// [`LINGER`]; otherwise (or when a linger brought nothing either) publish `reput_parked`,
/// re-check the log (an append that raced with the flag is seen here, or it sees the flag and
/// unparks us), and park. So an idle or lightly loaded dispatcher starts on a new record
/// immediately, and appends during busy periods make no futex call.
pub(super) fn run(inner: Arc<Inner>) {
    let mut lingered = true;
    let mut window_start = Instant::now();
    let mut window_records = 0u64;
    let mut busy = false;
    while !inner.stop.load(Ordering::Acquire) {
        let before = inner.dispatched.load(Ordering::Acquire);
        let limit = inner.commit_log.max_offset();
        let dispatched_records = inner.reput_until(limit, 64);
        if inner.dispatched.load(Ordering::Acquire) != before {
            window_records += dispatched_records as u64;
            lingered = false;
            continue;
        }
        let now = Instant::now();
        if now.duration_since(window_start) >= RATE_WINDOW {
            busy = window_records >= LINGER_MIN_RATE;
            window_start = now;
            window_records = 0;
        }
        if !lingered && (busy || window_records >= LINGER_MIN_RATE) {
            lingered = true;
            std::thread::park_timeout(LINGER);
            continue;
        }
        // Idle, or stalled on a bad record: park until the next append (or stop).
        inner.reput_parked.store(true, Ordering::Relaxed);
        // Pairs with the fence in `after_append` (Dekker): the flag store is ordered before the
        // re-check below, the appender's data before its read of the flag.
        std::sync::atomic::fence(Ordering::SeqCst);
        if inner.commit_log.max_offset() != limit || inner.stop.load(Ordering::Acquire) {
            inner.reput_parked.store(false, Ordering::Relaxed);
            continue;
        }
        std::thread::park_timeout(IDLE_PARK);
        // Whether an appender cleared the flag or the park timed out (or woke spuriously),
        // we are running again: appenders need not wake us.
        inner.reput_parked.store(false, Ordering::Relaxed);
    }
    // Final pass so a clean shutdown leaves the ConsumeQueues complete (bounded by the log size).
    let max = inner.commit_log.max_offset();
    inner.reput_until(max, usize::MAX);
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use tern_common::message::record::{encode_record, RecordInput};

    use super::*;

    fn record(topic: &str, properties: &str) -> BytesMut {
        let host = "127.0.0.1:10911".parse().unwrap();
        let input = RecordInput {
            topic: topic.into(),
            queue_id: 1,
            flag: 0,
            body: bytes::Bytes::from_static(b"body"),
            properties: properties.into(),
            sys_flag: 0,
            born_timestamp: 1,
            born_host: host,
            store_host: host,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
        };
        let mut out = BytesMut::new();
        encode_record(&input, 5, 100, 1_000, &mut out).expect("encodes");
        out
    }

    /// The one-pass property read gives what the record's own accessors give, duplicates and
    /// empty values included.
    #[test]
    fn dispatch_request_reads_tags_keys_uniq_key_and_delay_like_the_accessors() {
        let props = "TAGS\u{1}A\u{2}KEYS\u{1}k1  k2\u{2}UNIQ_KEY\u{1}\u{2}TAGS\u{1}B\u{2}\
                     UNIQ_KEY\u{1}U1\u{2}KEYS\u{1} k3\u{2}DELAY\u{1}3\u{2}";
        let bytes = record("T", props);
        let r = decode_record(&bytes, false).expect("decodes");
        let req = DispatchRequest::from_record(&r, &[]);
        assert_eq!(req.tags_code, tags_hash(r.tags().unwrap()));
        assert_eq!(req.tags_code, tags_hash("B"));
        let mut expected: Vec<String> = r.keys().map(str::to_string).collect();
        expected.push(r.uniq_key().unwrap().to_string());
        assert_eq!(req.keys, expected);
        assert_eq!(req.keys, ["k3", "U1"]);

        let table = [
            Duration::from_secs(1),
            Duration::from_secs(5),
            Duration::from_secs(10),
        ];
        let bytes = record(SCHEDULE_TOPIC_XXXX, props);
        let r = decode_record(&bytes, false).expect("decodes");
        assert_eq!(
            DispatchRequest::from_record(&r, &table).tags_code,
            1_000 + 10_000
        );

        let bytes = record("T", "");
        let r = decode_record(&bytes, false).expect("decodes");
        let req = DispatchRequest::from_record(&r, &table);
        assert_eq!((req.tags_code, req.keys.len()), (0, 0));
    }
}
