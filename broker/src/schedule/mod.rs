//! Delayed delivery: delay levels, RocketMQ 5 timer messages, and consumer retries with
//! dead-letter queues (PROTOCOL.md §6). The design, with its durability argument, is in
//! `docs/design/schedule.md`.
//!
//! Contracts:
//! - **Delay levels** (§6.1–§6.2). The send path parks a message with `DELAY` = N > 0 in
//!   `SCHEDULE_TOPIC_XXXX` queue N − 1 with `REAL_TOPIC`/`REAL_QID`; the store's reput gives
//!   each unit the tags code *store time + delay(N)*. The delivery task ([`delay`]) walks each
//!   level's ConsumeQueue from its persisted progress (`<store>/config/delayOffset`) and re-appends
//!   a copy to the real topic and queue (without `DELAY`, `REAL_TOPIC`, `REAL_QID`) once
//!   `now ≥ tags code`. A message is never delivered before its due time; progress is persisted
//!   after each delivery pass, so a crash between a re-append and the snapshot delivers that
//!   message again (at-least-once), and nothing is lost.
//! - **Timer messages** (§6.5). [`rewrite_timer`] (called by the send path) parks a message with
//!   `TIMER_DELIVER_MS` / `TIMER_DELAY_SEC` / `TIMER_DELAY_MS` in `rmq_sys_wheel_timer` queue 0
//!   with `TIMER_OUT_MS` (rounded down to the second), `REAL_TOPIC`, `REAL_QID`. The timer task
//!   ([`timer`]) keeps the pending ones in an in-memory time-bucketed wheel rebuilt from that
//!   ConsumeQueue at start, and persists `<store>/config/timerProgress` after each pass.
//! - **CONSUMER_SEND_MSG_BACK** (36, §6.3): [`handle_consumer_send_msg_back`] re-stores a consumed
//!   message in `%RETRY%<group>` with a growing delay level, or in `%DLQ%<group>` once its
//!   retries are exhausted.
//!
//! Both background tasks wake on arrivals in their topic (a store arrival listener), at the
//! earliest due time, and at least every [`MAX_IDLE`].
//!
//! # Layout
//! - [`delay`]: the delay-level progress table and the delivery pass.
//! - [`timer`]: timer rewrite at send time, the timing wheel, its progress and the timer pass.
//! - `send_back`: the CONSUMER_SEND_MSG_BACK processor.

pub mod delay;
mod send_back;
pub mod timer;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tern_common::message::record::{decode_record, RecordInput};
use tern_common::message::{
    decode_properties, encode_properties, property_key, RMQ_SYS_WHEEL_TIMER, SCHEDULE_TOPIC_XXXX,
};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{warn, Instrument};

use crate::context::BrokerContext;
use crate::store::{MessageStore, PutMessageStatus};

pub use send_back::handle_consumer_send_msg_back;
pub use timer::rewrite_timer;

/// File name of the delay-level progress snapshot under `<store>/config/`.
pub const DELAY_OFFSET_FILE: &str = "delayOffset";
/// File name of the timer progress snapshot under `<store>/config/`.
pub const TIMER_PROGRESS_FILE: &str = "timerProgress";
/// Longest sleep of a delivery task when nothing is due and nothing arrives (a safety net
/// against a missed arrival notification).
pub const MAX_IDLE: Duration = Duration::from_secs(1);
/// Pause after a failed re-append (store not writable) before trying again.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// Counters of the schedule service (for runtime info and tests).
#[derive(Debug, Default)]
pub struct ScheduleStats {
    /// Delay-level messages re-appended to their real topic.
    pub delay_delivered: AtomicU64,
    /// Timer messages re-appended to their real topic.
    pub timer_delivered: AtomicU64,
    /// Parked messages dropped because they carry no usable `REAL_TOPIC`/`REAL_QID`.
    pub dropped: AtomicU64,
    /// Messages re-stored by CONSUMER_SEND_MSG_BACK into a retry topic.
    pub sent_back_retry: AtomicU64,
    /// Messages re-stored by CONSUMER_SEND_MSG_BACK into a dead-letter topic.
    pub sent_back_dlq: AtomicU64,
}

/// The schedule service's shared state, installed into [`BrokerContext::schedule`] by [`start`].
#[derive(Debug)]
pub struct ScheduleService {
    /// Woken by the store's reput when a unit lands in `SCHEDULE_TOPIC_XXXX`.
    delay_arrival: Notify,
    /// Woken by the store's reput when a unit lands in `rmq_sys_wheel_timer`.
    timer_arrival: Notify,
    /// Counters.
    pub stats: ScheduleStats,
    delay_snapshot_path: PathBuf,
    timer_snapshot_path: PathBuf,
}

impl ScheduleService {
    /// A service whose snapshots live under `<store_root>/config/`.
    pub fn new(store_root: &std::path::Path) -> Self {
        let config_dir = store_root.join("config");
        Self {
            delay_arrival: Notify::new(),
            timer_arrival: Notify::new(),
            stats: ScheduleStats::default(),
            delay_snapshot_path: config_dir.join(DELAY_OFFSET_FILE),
            timer_snapshot_path: config_dir.join(TIMER_PROGRESS_FILE),
        }
    }
}

/// Creates the [`ScheduleService`], installs it into [`BrokerContext::schedule`], registers the
/// arrival listener and spawns the two named delivery tasks (`schedule-delay`,
/// `schedule-timer`) in `tasks`; both stop on `shutdown` after persisting their progress.
pub fn start(ctx: &BrokerContext, tasks: &mut JoinSet<()>, shutdown: CancellationToken) {
    let service = Arc::new(ScheduleService::new(&ctx.config.store_path_root_dir));
    if ctx.schedule.set(Arc::clone(&service)).is_err() {
        warn!("schedule service already started");
        return;
    }
    {
        let service = Arc::clone(&service);
        ctx.store.add_arrival_listener(Arc::new(move |ev| {
            if ev.topic == SCHEDULE_TOPIC_XXXX {
                service.delay_arrival.notify_one();
            } else if ev.topic == RMQ_SYS_WHEEL_TIMER {
                service.timer_arrival.notify_one();
            }
        }));
    }
    tasks.spawn(
        delay::run_delay_loop(ctx.clone(), Arc::clone(&service), shutdown.clone())
            .instrument(tracing::info_span!("schedule-delay")),
    );
    tasks.spawn(
        timer::run_timer_loop(ctx.clone(), service, shutdown)
            .instrument(tracing::info_span!("schedule-timer")),
    );
}

/// Wall-clock milliseconds since the Unix epoch (the clock of store timestamps and of the
/// schedule topic's tags codes).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Why a parked record could not be turned into its real message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnparkError {
    /// The bytes do not decode as a record.
    Undecodable,
    /// `REAL_TOPIC` or `REAL_QID` is missing or not a valid queue id.
    NoRealTarget,
}

/// Builds the real message from a parked record (`SCHEDULE_TOPIC_XXXX` or
/// `rmq_sys_wheel_timer`): same body, flag, sysFlag, born timestamp and host, reconsume times
/// and properties, topic = `REAL_TOPIC`, queue = `REAL_QID`, store host = `store_host`. The
/// properties named in `drop` are removed, then `extra` added, so that the copy is not parked
/// again.
///
/// # Errors
/// [`UnparkError`] when the record does not decode or names no real target.
pub fn unpark(
    record: &[u8],
    store_host: std::net::SocketAddr,
    drop: &[&str],
    extra: &[(&str, String)],
) -> Result<RecordInput, UnparkError> {
    let rec = decode_record(record, false).map_err(|_| UnparkError::Undecodable)?;
    let mut input = RecordInput::from(&rec);
    let mut props: BTreeMap<String, String> = decode_properties(rec.properties);
    let topic = props
        .get(property_key::REAL_TOPIC)
        .filter(|t| !t.is_empty())
        .cloned()
        .ok_or(UnparkError::NoRealTarget)?;
    let queue_id = props
        .get(property_key::REAL_QID)
        .and_then(|q| q.trim().parse::<i32>().ok())
        .filter(|q| *q >= 0)
        .ok_or(UnparkError::NoRealTarget)?;
    for name in drop {
        props.remove(*name);
    }
    for (name, value) in extra {
        props.insert((*name).to_string(), value.clone());
    }
    input.topic = topic;
    input.queue_id = queue_id;
    input.properties = encode_properties(&props);
    input.store_host = store_host;
    Ok(input)
}

/// Outcome of re-appending one unparked message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reput {
    /// Appended (or dropped as unusable): move on.
    Done,
    /// The store refused the append: keep the message parked and retry later.
    Retry,
}

/// Appends `input` without waiting for a flush (PROTOCOL.md §6.2: the re-put does not wait for
/// flush or replication).
pub(crate) fn reappend(store: &MessageStore, input: RecordInput) -> Reput {
    let (result, _flush) = store.append(std::slice::from_ref(&input));
    match result.status {
        PutMessageStatus::PutOk | PutMessageStatus::FlushDiskTimeout => Reput::Done,
        PutMessageStatus::MessageIllegal | PutMessageStatus::PropertiesSizeExceeded => {
            warn!(topic = %input.topic, queue_id = input.queue_id, "dropping a parked message the store refuses as illegal");
            Reput::Done
        }
        status => {
            warn!(?status, topic = %input.topic, "re-appending a parked message failed; will retry");
            Reput::Retry
        }
    }
}

/// Increments a counter.
pub(crate) fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use tern_common::message::record::encode_record;

    fn parked(props: &[(&str, &str)]) -> Vec<u8> {
        let map: BTreeMap<String, String> = props
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        let input = RecordInput {
            topic: SCHEDULE_TOPIC_XXXX.into(),
            queue_id: 2,
            flag: 9,
            body: Bytes::from_static(b"hello"),
            properties: encode_properties(&map),
            sys_flag: 0,
            born_timestamp: 1_000,
            born_host: "10.0.0.1:5000".parse().unwrap(),
            store_host: "10.0.0.2:10911".parse().unwrap(),
            reconsume_times: 3,
            prepared_transaction_offset: 0,
        };
        let mut out = BytesMut::new();
        encode_record(&input, 5, 100, 2_000, &mut out).unwrap();
        out.to_vec()
    }

    #[test]
    fn unpark_restores_real_target_and_drops_schedule_properties() {
        let rec = parked(&[
            (property_key::DELAY, "3"),
            (property_key::REAL_TOPIC, "T"),
            (property_key::REAL_QID, "1"),
            (property_key::TAGS, "a"),
        ]);
        let host: std::net::SocketAddr = "10.0.0.3:10911".parse().unwrap();
        let input = unpark(
            &rec,
            host,
            &[
                property_key::DELAY,
                property_key::REAL_TOPIC,
                property_key::REAL_QID,
            ],
            &[],
        )
        .unwrap();
        assert_eq!(input.topic, "T");
        assert_eq!(input.queue_id, 1);
        assert_eq!(input.flag, 9);
        assert_eq!(input.reconsume_times, 3);
        assert_eq!(input.body.as_ref(), b"hello");
        assert_eq!(input.store_host, host);
        let props = decode_properties(&input.properties);
        assert_eq!(props.len(), 1);
        assert_eq!(props.get(property_key::TAGS).map(String::as_str), Some("a"));
    }

    #[test]
    fn unpark_without_real_target_is_an_error() {
        let host: std::net::SocketAddr = "10.0.0.3:10911".parse().unwrap();
        let rec = parked(&[(property_key::REAL_TOPIC, "T")]);
        assert_eq!(unpark(&rec, host, &[], &[]), Err(UnparkError::NoRealTarget));
        let rec = parked(&[
            (property_key::REAL_TOPIC, "T"),
            (property_key::REAL_QID, "-1"),
        ]);
        assert_eq!(unpark(&rec, host, &[], &[]), Err(UnparkError::NoRealTarget));
        assert_eq!(
            unpark(b"junk", host, &[], &[]),
            Err(UnparkError::Undecodable)
        );
    }
}
