//! RocketMQ 5 timer messages (PROTOCOL.md §6.5): arbitrary delivery times.
//!
//! **At send** ([`rewrite_timer`], called by the send path for messages without a delay
//! level): the delivery time is `TIMER_DELIVER_MS` (absolute, epoch ms), else now +
//! `TIMER_DELAY_SEC` × 1000, else now + `TIMER_DELAY_MS`, rounded *down* to the second
//! (RocketMQ's `timerPrecisionMs` = 1000). More than `timer_max_delay` ahead → MESSAGE_ILLEGAL;
//! at or before now → stored as a normal message at once. Otherwise the message is parked in
//! `rmq_sys_wheel_timer` queue 0 with `TIMER_OUT_MS` = the rounded time, `REAL_TOPIC`,
//! `REAL_QID`.
//!
//! **Delivery** (the `schedule-timer` task): the CommitLog and that ConsumeQueue are the durable
//! log. An in-memory [`TimerWheel`] (due second → parked units) holds the pending ones; each pass
//! *enqueues* new units from the ConsumeQueue into the wheel and *dequeues* every slot whose
//! time has come, re-appending the real message (without `REAL_TOPIC`, `REAL_QID` and the
//! `TIMER_DELIVER_MS`/`TIMER_DELAY_*` requests, with `TIMER_DEQUEUE_MS`). After a pass the
//! [`TimerProgress`] snapshot (`<store>/config/timerProgress`) records the enqueue offset, the
//! watermark (every slot at or before it is delivered) and the smallest queue offset still
//! pending. At start the wheel is rebuilt by re-reading the ConsumeQueue from that smallest
//! pending offset, skipping units that were enqueued before the snapshot and due at or before
//! the watermark. A unit delivered after the last snapshot is delivered again after a crash
//! (at-least-once); none is lost or delivered before its (rounded) time.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tern_common::message::record::decode_record;
use tern_common::message::{property_key, RMQ_SYS_WHEEL_TIMER};
use tern_common::protocol::ResponseCode;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::delay::wait_until;
use super::RETRY_AFTER_FAILURE;
use super::{bump, now_ms, reappend, unpark, Reput, ScheduleService, ScheduleStats};
use crate::context::BrokerContext;
use crate::error::ProcessorError;
use crate::store::{GetMessageStatus, MessageStore};

/// Precision of timer delivery times (RocketMQ `timerPrecisionMs`).
pub const TIMER_PRECISION_MS: i64 = 1_000;
/// Queue of `rmq_sys_wheel_timer` that holds parked timer messages.
pub const TIMER_QUEUE_ID: i32 = 0;
/// Most timer messages held in the wheel at once; beyond it enqueuing pauses (the units wait
/// in the ConsumeQueue, so memory stays bounded and nothing is lost).
pub const MAX_PENDING: usize = 1_000_000;
/// Units read per store call.
const BATCH_UNITS: i32 = 256;
/// Byte budget per store call.
const BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Store calls per enqueue step.
const MAX_ENQUEUE_BATCHES: usize = 64;
/// Deliveries per dequeue step; a longer due backlog continues in the next pass at once.
const MAX_DEQUEUE_PER_PASS: usize = 16_384;

/// Why a timer request is refused at send time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimerError {
    /// A `TIMER_*` property is not an integer.
    #[error("illegal timer property {name}")]
    Illegal {
        /// The property.
        name: &'static str,
    },
    /// The delivery time is further ahead than allowed.
    #[error("timer message delay {delay_ms} ms exceeds the maximum of {max_ms} ms")]
    TooFar {
        /// Requested delay, ms.
        delay_ms: i64,
        /// Allowed delay, ms.
        max_ms: i64,
    },
}

/// What the send path must do with a message's timer properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerPlan {
    /// No timer property: store as is.
    None,
    /// The (rounded) time is not in the future: store as a normal message now.
    DeliverNow,
    /// Park until this epoch ms (a multiple of [`TIMER_PRECISION_MS`]).
    Park(i64),
}

/// Decides a message's timer handling from its properties at `now_ms` (pure; see the module
/// doc for the rules).
///
/// # Errors
/// [`TimerError`] for an unparsable property or a time beyond `max_delay_ms`.
pub fn plan_timer(
    props: &BTreeMap<String, String>,
    now_ms: i64,
    max_delay_ms: i64,
) -> Result<TimerPlan, TimerError> {
    let parse = |name: &'static str| -> Result<Option<i64>, TimerError> {
        props
            .get(name)
            .map(|v| {
                v.trim()
                    .parse::<i64>()
                    .map_err(|_| TimerError::Illegal { name })
            })
            .transpose()
    };
    let deliver = if let Some(at) = parse(property_key::TIMER_DELIVER_MS)? {
        at
    } else if let Some(sec) = parse(property_key::TIMER_DELAY_SEC)? {
        now_ms.saturating_add(sec.saturating_mul(1_000))
    } else if let Some(ms) = parse(property_key::TIMER_DELAY_MS)? {
        now_ms.saturating_add(ms)
    } else {
        return Ok(TimerPlan::None);
    };
    let rounded = deliver - deliver.rem_euclid(TIMER_PRECISION_MS);
    let delay_ms = rounded.saturating_sub(now_ms);
    if delay_ms > max_delay_ms {
        return Err(TimerError::TooFar {
            delay_ms,
            max_ms: max_delay_ms,
        });
    }
    if rounded <= now_ms {
        return Ok(TimerPlan::DeliverNow);
    }
    Ok(TimerPlan::Park(rounded))
}

/// The send path's timer hook (PROTOCOL.md §2.3 step 9, §6.5): for a message headed to
/// (`topic`, `queue_id`) with properties `props`, returns the parking target
/// (`rmq_sys_wheel_timer`, 0) after adding `TIMER_OUT_MS`, `REAL_TOPIC` and `REAL_QID` to
/// `props`, or `None` when the message is stored normally. A message that also carries a
/// positive `DELAY` keeps its level and loses its timer properties.
///
/// # Errors
/// MESSAGE_ILLEGAL ([`ProcessorError::Rejected`]) for an unparsable timer property or a
/// delivery time more than `timer_max_delay` ahead.
pub fn rewrite_timer(
    ctx: &BrokerContext,
    topic: &str,
    queue_id: i32,
    props: &mut BTreeMap<String, String>,
) -> Result<Option<(String, i32)>, ProcessorError> {
    let has_level = props
        .get(property_key::DELAY)
        .and_then(|d| d.trim().parse::<i64>().ok())
        .is_some_and(|d| d > 0);
    if has_level {
        for name in [
            property_key::TIMER_DELIVER_MS,
            property_key::TIMER_DELAY_SEC,
            property_key::TIMER_DELAY_MS,
        ] {
            props.remove(name);
        }
        return Ok(None);
    }
    let max_ms = i64::try_from(ctx.config.timer_max_delay.as_millis()).unwrap_or(i64::MAX);
    let plan = plan_timer(props, now_ms(), max_ms)
        .map_err(|err| ProcessorError::rejected(ResponseCode::MessageIllegal, err.to_string()))?;
    match plan {
        TimerPlan::None | TimerPlan::DeliverNow => Ok(None),
        TimerPlan::Park(at) => {
            props.insert(property_key::TIMER_OUT_MS.into(), at.to_string());
            props.insert(property_key::REAL_TOPIC.into(), topic.to_string());
            props.insert(property_key::REAL_QID.into(), queue_id.to_string());
            Ok(Some((RMQ_SYS_WHEEL_TIMER.to_string(), TIMER_QUEUE_ID)))
        }
    }
}

/// One parked timer message in the wheel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerEntry {
    /// Its queue offset in `rmq_sys_wheel_timer` queue 0.
    pub queue_offset: i64,
    /// Its CommitLog offset.
    pub phy_offset: i64,
}

/// The pending timer messages by due time (ms), with the set of their queue offsets (for the
/// smallest pending offset persisted in [`TimerProgress`]). Bounded by [`MAX_PENDING`] through
/// the enqueue step.
#[derive(Debug, Default)]
pub struct TimerWheel {
    slots: BTreeMap<i64, Vec<TimerEntry>>,
    pending: BTreeSet<i64>,
}

impl TimerWheel {
    /// Adds an entry due at `due_ms`.
    pub fn insert(&mut self, due_ms: i64, entry: TimerEntry) {
        if self.pending.insert(entry.queue_offset) {
            self.slots.entry(due_ms).or_default().push(entry);
        }
    }

    /// Number of pending entries.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Earliest due time.
    pub fn first_due(&self) -> Option<i64> {
        self.slots.keys().next().copied()
    }

    /// Smallest pending queue offset.
    pub fn min_pending_offset(&self) -> Option<i64> {
        self.pending.first().copied()
    }

    /// Removes and returns the earliest slot if it is due at `now_ms`.
    pub fn pop_due(&mut self, now_ms: i64) -> Option<(i64, Vec<TimerEntry>)> {
        let first = self.first_due()?;
        if first > now_ms {
            return None;
        }
        let entries = self.slots.remove(&first)?;
        for e in &entries {
            self.pending.remove(&e.queue_offset);
        }
        Some((first, entries))
    }

    /// Puts back entries of a slot that could not be delivered.
    pub fn restore(&mut self, due_ms: i64, entries: Vec<TimerEntry>) {
        for e in entries {
            self.insert(due_ms, e);
        }
    }
}

/// The persisted timer progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerProgress {
    /// Next queue offset of `rmq_sys_wheel_timer` queue 0 to enqueue.
    pub enqueue_offset: i64,
    /// Every unit enqueued before this snapshot and due at or before this time (ms) is
    /// delivered.
    pub watermark_ms: i64,
    /// Every unit below this queue offset is delivered (the rebuild starts here).
    pub rebuild_from: i64,
}

impl TimerProgress {
    /// Reads the snapshot at `path`; a missing file is the initial progress.
    ///
    /// # Errors
    /// I/O errors, or both the file and its `.bak` corrupt.
    pub fn load(path: &Path) -> std::io::Result<Self> {
        Ok(crate::snapshot::load(path)?.unwrap_or_default())
    }

    /// Writes the snapshot to `path` atomically.
    ///
    /// # Errors
    /// I/O errors from the write, fsync or rename.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        crate::snapshot::save(path, self)
    }
}

/// The timer's working state: the wheel plus the live progress and the rebuild rule.
#[derive(Debug)]
pub struct TimerState {
    /// Pending messages.
    pub wheel: TimerWheel,
    /// Next queue offset to enqueue.
    pub scan_offset: i64,
    /// Every slot at or before this time (ms) has been delivered.
    pub watermark_ms: i64,
    /// Units below this queue offset that are due at or before `skip_watermark_ms` were
    /// delivered before the restart (from the snapshot the state was rebuilt from).
    skip_below: i64,
    skip_watermark_ms: i64,
}

impl TimerState {
    /// The state right after a start from `snapshot`: the wheel is empty and enqueuing starts
    /// at `snapshot.rebuild_from`.
    pub fn from_snapshot(snapshot: TimerProgress) -> Self {
        Self {
            wheel: TimerWheel::default(),
            scan_offset: snapshot.rebuild_from.min(snapshot.enqueue_offset).max(0),
            watermark_ms: snapshot.watermark_ms,
            skip_below: snapshot.enqueue_offset,
            skip_watermark_ms: snapshot.watermark_ms,
        }
    }

    /// The progress to persist now, or `None` when a due entry failed to be delivered and is
    /// still in the wheel at or before the watermark (persisting would then let a restart
    /// skip it).
    pub fn snapshot(&self) -> Option<TimerProgress> {
        if self
            .wheel
            .first_due()
            .is_some_and(|due| due <= self.watermark_ms)
        {
            return None;
        }
        Some(TimerProgress {
            enqueue_offset: self.scan_offset,
            watermark_ms: self.watermark_ms,
            rebuild_from: self
                .wheel
                .min_pending_offset()
                .unwrap_or(self.scan_offset)
                .min(self.scan_offset),
        })
    }

    /// Takes one parked unit read from the ConsumeQueue into the wheel, unless the snapshot
    /// this state was rebuilt from says it was already delivered.
    pub fn enqueue(&mut self, due_ms: i64, entry: TimerEntry) {
        if entry.queue_offset < self.skip_below && due_ms <= self.skip_watermark_ms {
            return;
        }
        self.wheel.insert(due_ms, entry);
    }
}

/// What one timer pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimerPassOutcome {
    /// Units moved from the ConsumeQueue into the wheel.
    pub enqueued: u64,
    /// Messages re-appended to their real topic.
    pub delivered: u64,
    /// Whether the next pass should run at once (backlog) or after a failure pause.
    pub more: bool,
    /// Whether a re-append failed.
    pub failed: bool,
}

/// Enqueues new units, then delivers every slot due at `now()`.
pub fn timer_pass(
    store: &MessageStore,
    state: &mut TimerState,
    store_host: SocketAddr,
    stats: &ScheduleStats,
    now: &dyn Fn() -> i64,
) -> TimerPassOutcome {
    let mut outcome = TimerPassOutcome::default();
    enqueue_step(store, state, &mut outcome);
    dequeue_step(store, state, store_host, stats, now, &mut outcome);
    outcome
}

fn enqueue_step(store: &MessageStore, state: &mut TimerState, outcome: &mut TimerPassOutcome) {
    for _ in 0..MAX_ENQUEUE_BATCHES {
        if state.wheel.len() >= MAX_PENDING {
            return;
        }
        let offset = state.scan_offset;
        let result = store.get_message(
            RMQ_SYS_WHEEL_TIMER,
            TIMER_QUEUE_ID,
            offset,
            BATCH_UNITS,
            BATCH_BYTES,
            &|_| true,
        );
        match result.status {
            GetMessageStatus::Found => {
                for (record, queue_offset) in
                    result.messages.iter().zip(&result.message_queue_offsets)
                {
                    match decode_record(record, false) {
                        Ok(rec) => {
                            // A unit without a usable TIMER_OUT_MS is due at once.
                            let due = rec
                                .property(property_key::TIMER_OUT_MS)
                                .and_then(|v| v.trim().parse::<i64>().ok())
                                .unwrap_or(0);
                            state.enqueue(
                                due,
                                TimerEntry {
                                    queue_offset: *queue_offset,
                                    phy_offset: rec.phy_offset,
                                },
                            );
                            outcome.enqueued += 1;
                        }
                        Err(err) => {
                            warn!(queue_offset, cause = %err, "skipping an undecodable timer record");
                        }
                    }
                }
                state.scan_offset = result.next_begin_offset.max(offset);
                if result.messages.len() < usize::try_from(BATCH_UNITS).unwrap_or(0) {
                    return;
                }
            }
            GetMessageStatus::OffsetTooSmall
            | GetMessageStatus::NoMatchedMessage
            | GetMessageStatus::MessageWasRemoving
            | GetMessageStatus::OffsetFoundNull => {
                if result.next_begin_offset == offset {
                    return;
                }
                state.scan_offset = result.next_begin_offset;
            }
            GetMessageStatus::OffsetOverflowBadly => {
                warn!(
                    offset,
                    max = result.next_begin_offset,
                    "timer progress beyond the queue end"
                );
                state.scan_offset = result.next_begin_offset;
                return;
            }
            _ => return,
        }
    }
    outcome.more = true;
}

fn dequeue_step(
    store: &MessageStore,
    state: &mut TimerState,
    store_host: SocketAddr,
    stats: &ScheduleStats,
    now: &dyn Fn() -> i64,
    outcome: &mut TimerPassOutcome,
) {
    let mut budget = MAX_DEQUEUE_PER_PASS;
    while let Some((due, entries)) = state.wheel.pop_due(now()) {
        let mut rest = entries.into_iter();
        let mut failed_at = None;
        for entry in rest.by_ref() {
            let Some(record) = store.read_record(entry.phy_offset) else {
                // Retention removed the parked record: nothing left to deliver.
                warn!(
                    queue_offset = entry.queue_offset,
                    "timer record no longer in the CommitLog"
                );
                bump(&stats.dropped, 1);
                continue;
            };
            let input = match unpark(
                &record,
                store_host,
                &[
                    property_key::REAL_TOPIC,
                    property_key::REAL_QID,
                    property_key::TIMER_DELIVER_MS,
                    property_key::TIMER_DELAY_SEC,
                    property_key::TIMER_DELAY_MS,
                ],
                &[(property_key::TIMER_DEQUEUE_MS, now().to_string())],
            ) {
                Ok(input) => input,
                Err(err) => {
                    warn!(
                        queue_offset = entry.queue_offset,
                        ?err,
                        "dropping an unusable timer message"
                    );
                    bump(&stats.dropped, 1);
                    continue;
                }
            };
            if reappend(store, input) == Reput::Retry {
                failed_at = Some(entry);
                break;
            }
            bump(&stats.timer_delivered, 1);
            outcome.delivered += 1;
            budget = budget.saturating_sub(1);
        }
        if let Some(first) = failed_at {
            let mut left = vec![first];
            left.extend(rest);
            state.wheel.restore(due, left);
            outcome.failed = true;
            outcome.more = true;
            return;
        }
        state.watermark_ms = state.watermark_ms.max(due);
        if budget == 0 {
            outcome.more = true;
            return;
        }
    }
}

/// The `schedule-timer` task: timer passes until `shutdown`, sleeping until the earliest due
/// slot, an arrival in the timer topic, or [`super::MAX_IDLE`].
pub(crate) async fn run_timer_loop(
    ctx: BrokerContext,
    service: Arc<ScheduleService>,
    shutdown: CancellationToken,
) {
    let path = service.timer_snapshot_path.clone();
    let snapshot = match TimerProgress::load(&path) {
        Ok(s) => s,
        Err(err) => {
            // Both copies unreadable: rebuild from the whole queue (at-least-once).
            warn!(cause = %err, "timer progress unreadable; rebuilding from the queue start");
            TimerProgress::default()
        }
    };
    info!(?snapshot, "timer delivery started");
    let mut persisted = Some(snapshot);
    let state = Arc::new(parking_lot::Mutex::new(TimerState::from_snapshot(snapshot)));
    loop {
        let store = Arc::clone(&ctx.store);
        let store_host = ctx.store_host;
        let svc = Arc::clone(&service);
        let st = Arc::clone(&state);
        let joined = tokio::task::spawn_blocking(move || {
            let mut guard = st.lock();
            let outcome = timer_pass(&store, &mut guard, store_host, &svc.stats, &now_ms);
            (outcome, guard.snapshot(), guard.wheel.first_due())
        })
        .await;
        let (outcome, snapshot, first_due) = match joined {
            Ok(v) => v,
            Err(err) => {
                warn!(cause = %err, "timer pass failed");
                (
                    TimerPassOutcome {
                        more: true,
                        failed: true,
                        ..TimerPassOutcome::default()
                    },
                    None,
                    None,
                )
            }
        };
        if snapshot.is_some() && snapshot != persisted {
            if let Some(s) = snapshot {
                match persist(&path, s).await {
                    Ok(()) => persisted = snapshot,
                    Err(err) => warn!(cause = %err, "persisting timer progress failed"),
                }
            }
        }
        if outcome.delivered > 0 {
            debug!(delivered = outcome.delivered, "timer messages delivered");
        }
        let wait = if outcome.failed {
            RETRY_AFTER_FAILURE
        } else if outcome.more {
            Duration::ZERO
        } else {
            wait_until(first_due, now_ms())
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = service.timer_arrival.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
    let last = state.lock().snapshot();
    if let Some(s) = last {
        if Some(s) != persisted {
            if let Err(err) = persist(&path, s).await {
                warn!(cause = %err, "persisting timer progress at shutdown failed");
            }
        }
    }
}

async fn persist(path: &Path, progress: TimerProgress) -> std::io::Result<()> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || progress.save(&path))
        .await
        .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    const DAY3: i64 = 259_200_000;

    #[test]
    fn plan_rounds_down_to_the_second_and_checks_the_maximum() {
        let now = 10_000_500;
        assert_eq!(plan_timer(&props(&[]), now, DAY3), Ok(TimerPlan::None));
        assert_eq!(
            plan_timer(
                &props(&[(property_key::TIMER_DELIVER_MS, "10005999")]),
                now,
                DAY3
            ),
            Ok(TimerPlan::Park(10_005_000))
        );
        assert_eq!(
            plan_timer(&props(&[(property_key::TIMER_DELAY_SEC, "3")]), now, DAY3),
            Ok(TimerPlan::Park(10_003_000))
        );
        assert_eq!(
            plan_timer(&props(&[(property_key::TIMER_DELAY_MS, "2500")]), now, DAY3),
            Ok(TimerPlan::Park(10_003_000))
        );
        // In the past, or rounding down to now or before: deliver now.
        assert_eq!(
            plan_timer(&props(&[(property_key::TIMER_DELIVER_MS, "5")]), now, DAY3),
            Ok(TimerPlan::DeliverNow)
        );
        assert_eq!(
            plan_timer(&props(&[(property_key::TIMER_DELAY_MS, "400")]), now, DAY3),
            Ok(TimerPlan::DeliverNow)
        );
        assert!(matches!(
            plan_timer(
                &props(&[(property_key::TIMER_DELAY_SEC, "259201")]),
                now,
                DAY3
            ),
            Err(TimerError::TooFar { .. })
        ));
        assert_eq!(
            plan_timer(&props(&[(property_key::TIMER_DELAY_SEC, "x")]), now, DAY3),
            Err(TimerError::Illegal {
                name: property_key::TIMER_DELAY_SEC
            })
        );
    }

    fn e(q: i64) -> TimerEntry {
        TimerEntry {
            queue_offset: q,
            phy_offset: q * 100,
        }
    }

    #[test]
    fn wheel_pops_slots_in_time_order_only_when_due() {
        let mut w = TimerWheel::default();
        w.insert(3_000, e(0));
        w.insert(1_000, e(1));
        w.insert(3_000, e(2));
        w.insert(3_000, e(2)); // duplicate queue offset ignored
        assert_eq!(w.len(), 3);
        assert_eq!(w.pop_due(999), None);
        assert_eq!(w.pop_due(1_000), Some((1_000, vec![e(1)])));
        assert_eq!(w.min_pending_offset(), Some(0));
        assert_eq!(w.pop_due(2_999), None);
        assert_eq!(w.pop_due(5_000), Some((3_000, vec![e(0), e(2)])));
        assert!(w.is_empty());
    }

    #[test]
    fn rebuild_skips_only_units_delivered_before_the_snapshot() {
        let snap = TimerProgress {
            enqueue_offset: 10,
            watermark_ms: 5_000,
            rebuild_from: 4,
        };
        let mut st = TimerState::from_snapshot(snap);
        assert_eq!(st.scan_offset, 4);
        st.enqueue(4_000, e(4)); // enqueued before, due before the watermark: delivered
        st.enqueue(6_000, e(5)); // enqueued before but due later: pending
        st.enqueue(1_000, e(11)); // enqueued after the snapshot: pending even though early
        assert_eq!(st.wheel.len(), 2);
        assert_eq!(st.wheel.min_pending_offset(), Some(5));
    }

    #[test]
    fn snapshot_is_withheld_while_a_due_slot_is_undelivered() {
        let mut st = TimerState::from_snapshot(TimerProgress::default());
        st.scan_offset = 3;
        st.watermark_ms = 2_000;
        st.wheel.insert(3_000, e(1));
        assert_eq!(
            st.snapshot(),
            Some(TimerProgress {
                enqueue_offset: 3,
                watermark_ms: 2_000,
                rebuild_from: 1
            })
        );
        st.wheel.insert(1_500, e(2)); // a late unit not yet delivered
        assert_eq!(st.snapshot(), None);
    }
}
