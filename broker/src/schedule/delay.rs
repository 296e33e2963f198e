//! Delay-level delivery (PROTOCOL.md §6.2, Java `ScheduleMessageService`).
//!
//! `SCHEDULE_TOPIC_XXXX` queue N − 1 holds the messages of level N in store order, each unit's
//! tags code being its due time (store time + delay(N), in ms). Within one level due times
//! therefore never decrease, so a pass walks each level from its progress offset, re-appends
//! every unit whose due time is ≤ now, and stops at the first one that is not due yet; that
//! unit's due time is the level's next wake-up. As in Java, a due time more than one full delay
//! period in the future (clock stepped back, table changed) counts as due now.
//!
//! Progress (`{level: next queue offset}`) is persisted as a MessagePack snapshot
//! `<store>/config/delayOffset` after every pass that moved it, *after* the re-appends: a crash in
//! between delivers those messages again (at-least-once), never loses one, and never delivers
//! early.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tern_common::message::{property_key, SCHEDULE_TOPIC_XXXX};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{bump, now_ms, reappend, unpark, Reput, ScheduleService, ScheduleStats};
use super::{MAX_IDLE, RETRY_AFTER_FAILURE};
use crate::context::BrokerContext;
use crate::store::{GetMessageStatus, MessageStore};

/// Units read per store call.
const BATCH_UNITS: i32 = 256;
/// Byte budget per store call.
const BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Store calls per level and pass; a longer backlog continues in the next pass right away,
/// after the progress is persisted.
const MAX_BATCHES_PER_LEVEL: usize = 64;

/// The persisted progress: level (1-based) → next queue offset of its schedule queue
/// (RocketMQ's `delayOffset.json` `offsetTable`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelayOffsetTable {
    /// Level → next queue offset to examine.
    pub offset_table: BTreeMap<i32, i64>,
}

impl DelayOffsetTable {
    /// Reads the snapshot at `path`; a missing file is an empty table.
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

    /// Next queue offset of `level` (0 when never advanced).
    pub fn offset(&self, level: i32) -> i64 {
        self.offset_table.get(&level).copied().unwrap_or(0)
    }
}

/// What one delivery pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassOutcome {
    /// Messages re-appended to their real topic.
    pub delivered: u64,
    /// Earliest due time (ms) among the units left parked, if any was seen.
    pub next_due_ms: Option<i64>,
    /// Whether any level's progress moved (the table must be persisted).
    pub changed: bool,
    /// Whether a level stopped early (store refusal or a long backlog) and the next pass
    /// should run soon.
    pub more: bool,
}

/// The delay of `level` (1-based, clamped to the table) in ms.
pub fn level_delay_ms(delay_table: &[Duration], level: i32) -> i64 {
    let Some(max) = delay_table.len().checked_sub(1) else {
        return 0;
    };
    let index = usize::try_from(level.max(1) - 1).unwrap_or(0).min(max);
    i64::try_from(delay_table[index].as_millis()).unwrap_or(i64::MAX)
}

/// Whether a unit with due time `due_ms` of a level with delay `delay_ms` is due at `now_ms`:
/// `due ≤ now`, or `due` more than one delay period in the future (Java's correction for a
/// clock that stepped back).
pub fn is_due(due_ms: i64, delay_ms: i64, now_ms: i64) -> bool {
    due_ms <= now_ms || due_ms > now_ms.saturating_add(delay_ms)
}

/// Runs one pass over every level, re-appending due messages and advancing `table`.
/// `now` is read before each store call, so a unit is never judged due before its time.
pub fn deliver_due(
    store: &MessageStore,
    delay_table: &[Duration],
    table: &mut DelayOffsetTable,
    store_host: SocketAddr,
    stats: &ScheduleStats,
    now: &dyn Fn() -> i64,
) -> PassOutcome {
    let mut outcome = PassOutcome::default();
    let levels = i32::try_from(delay_table.len()).unwrap_or(i32::MAX);
    for level in 1..=levels {
        let queue_id = level - 1;
        let delay_ms = level_delay_ms(delay_table, level);
        let mut finished = false;
        for _ in 0..MAX_BATCHES_PER_LEVEL {
            let offset = table.offset(level);
            let now_ms = now();
            // Accept the due prefix only: once a unit is not due, every later one of this
            // batch is refused, and its due time is remembered.
            let blocked: Cell<Option<i64>> = Cell::new(None);
            let filter = |code: i64| {
                if blocked.get().is_some() {
                    false
                } else if is_due(code, delay_ms, now_ms) {
                    true
                } else {
                    blocked.set(Some(code));
                    false
                }
            };
            let result = store.get_message(
                SCHEDULE_TOPIC_XXXX,
                queue_id,
                offset,
                BATCH_UNITS,
                BATCH_BYTES,
                &filter,
            );
            let mut next = offset;
            let mut stop = blocked.get().is_some();
            match result.status {
                GetMessageStatus::Found => {
                    for (record, queue_offset) in
                        result.messages.iter().zip(&result.message_queue_offsets)
                    {
                        let input = match unpark(
                            record,
                            store_host,
                            &[
                                property_key::DELAY,
                                property_key::REAL_TOPIC,
                                property_key::REAL_QID,
                            ],
                            &[],
                        ) {
                            Ok(input) => input,
                            Err(err) => {
                                warn!(
                                    level,
                                    queue_offset,
                                    ?err,
                                    "dropping an unusable delayed message"
                                );
                                bump(&stats.dropped, 1);
                                next = queue_offset + 1;
                                continue;
                            }
                        };
                        if reappend(store, input) == Reput::Retry {
                            outcome.more = true;
                            stop = true;
                            break;
                        }
                        bump(&stats.delay_delivered, 1);
                        outcome.delivered += 1;
                        next = queue_offset + 1;
                    }
                    if !stop && result.messages.len() < usize::try_from(BATCH_UNITS).unwrap_or(0) {
                        // Fewer than a batch: the queue's end (or a removed tail) was reached.
                        if blocked.get().is_none() {
                            next = next.max(result.next_begin_offset);
                        }
                        stop = true;
                    }
                }
                GetMessageStatus::OffsetTooSmall => {
                    // Retention removed parked messages below the progress.
                    warn!(
                        level,
                        offset,
                        min = result.next_begin_offset,
                        "delay queue moved past the progress"
                    );
                    next = result.next_begin_offset;
                }
                GetMessageStatus::OffsetOverflowBadly => {
                    // The queue is shorter than the progress (its tail was lost in a crash).
                    warn!(
                        level,
                        offset,
                        max = result.next_begin_offset,
                        "delay progress beyond the queue end"
                    );
                    next = result.next_begin_offset;
                    stop = true;
                }
                GetMessageStatus::NoMatchedMessage
                | GetMessageStatus::MessageWasRemoving
                | GetMessageStatus::OffsetFoundNull => {
                    if blocked.get().is_none() {
                        next = result.next_begin_offset.max(offset);
                    }
                    stop = stop || next == offset;
                }
                _ => stop = true,
            }
            if next != offset {
                table.offset_table.insert(level, next);
                outcome.changed = true;
            }
            if let Some(due) = blocked.get() {
                outcome.next_due_ms = Some(outcome.next_due_ms.map_or(due, |d| d.min(due)));
            }
            if stop {
                finished = true;
                break;
            }
        }
        if !finished {
            outcome.more = true;
        }
    }
    outcome
}

/// The `schedule-delay` task: passes over the levels until `shutdown`, sleeping until the
/// earliest due time, an arrival in the schedule topic, or [`MAX_IDLE`].
pub(crate) async fn run_delay_loop(
    ctx: BrokerContext,
    service: Arc<ScheduleService>,
    shutdown: CancellationToken,
) {
    let path = service.delay_snapshot_path.clone();
    let mut table = match DelayOffsetTable::load(&path) {
        Ok(table) => table,
        Err(err) => {
            // Both snapshot copies are unreadable: start every level from its queue's minimum.
            // Messages already delivered are delivered again (at-least-once), none is lost.
            warn!(cause = %err, "delay progress unreadable; restarting every level from its minimum");
            DelayOffsetTable::default()
        }
    };
    info!(levels = ctx.config.message_delay_level.len(), progress = ?table.offset_table, "delay-level delivery started");
    let mut persisted = table.clone();
    loop {
        let store = Arc::clone(&ctx.store);
        let delay_table = ctx.config.message_delay_level.clone();
        let store_host = ctx.store_host;
        let service_for_pass = Arc::clone(&service);
        let mut pass_table = table.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let outcome = deliver_due(
                &store,
                &delay_table,
                &mut pass_table,
                store_host,
                &service_for_pass.stats,
                &now_ms,
            );
            (outcome, pass_table)
        })
        .await;
        let (outcome, next_table) = match joined {
            Ok(v) => v,
            Err(err) => {
                warn!(cause = %err, "delay pass failed");
                (
                    PassOutcome {
                        more: true,
                        ..PassOutcome::default()
                    },
                    table.clone(),
                )
            }
        };
        table = next_table;
        if table != persisted {
            match persist(&path, &table).await {
                Ok(()) => persisted = table.clone(),
                Err(err) => warn!(cause = %err, "persisting delay progress failed"),
            }
        }
        if outcome.delivered > 0 {
            debug!(delivered = outcome.delivered, "delayed messages delivered");
        }
        let wait = if outcome.more && outcome.delivered > 0 {
            Duration::ZERO
        } else if outcome.more {
            RETRY_AFTER_FAILURE
        } else {
            wait_until(outcome.next_due_ms, now_ms())
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = service.delay_arrival.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
    if table != persisted {
        if let Err(err) = persist(&path, &table).await {
            warn!(cause = %err, "persisting delay progress at shutdown failed");
        }
    }
}

/// How long to sleep for a next due time `due_ms` at `now_ms`: until the due time (1 ms past
/// it, so the wake-up is never early), at most [`MAX_IDLE`].
pub fn wait_until(due_ms: Option<i64>, now_ms: i64) -> Duration {
    match due_ms {
        Some(due) => {
            let ms = due.saturating_sub(now_ms).saturating_add(1).max(0);
            Duration::from_millis(u64::try_from(ms).unwrap_or(0)).min(MAX_IDLE)
        }
        None => MAX_IDLE,
    }
}

async fn persist(path: &Path, table: &DelayOffsetTable) -> std::io::Result<()> {
    let path = path.to_path_buf();
    let table = table.clone();
    tokio::task::spawn_blocking(move || table.save(&path))
        .await
        .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;
    use bytes::Bytes;
    use tern_common::message::encode_properties;
    use tern_common::message::record::RecordInput;

    fn table(secs: &[u64]) -> Vec<Duration> {
        secs.iter().map(|s| Duration::from_secs(*s)).collect()
    }

    #[test]
    fn level_delay_clamps_to_the_table() {
        let t = table(&[1, 5, 10]);
        assert_eq!(level_delay_ms(&t, 1), 1_000);
        assert_eq!(level_delay_ms(&t, 3), 10_000);
        assert_eq!(level_delay_ms(&t, 99), 10_000);
        assert_eq!(level_delay_ms(&t, 0), 1_000);
        assert_eq!(level_delay_ms(&[], 1), 0);
    }

    #[test]
    fn due_means_not_before_time_unless_absurdly_far() {
        assert!(is_due(1_000, 5_000, 1_000));
        assert!(!is_due(1_001, 5_000, 1_000));
        assert!(!is_due(6_000, 5_000, 1_000));
        assert!(is_due(6_001, 5_000, 1_000));
    }

    #[test]
    fn wait_until_is_capped_and_never_early() {
        assert_eq!(wait_until(None, 0), MAX_IDLE);
        assert_eq!(wait_until(Some(100), 0), Duration::from_millis(101));
        assert_eq!(wait_until(Some(0), 100), Duration::from_millis(0));
        assert_eq!(wait_until(Some(1_000_000), 0), MAX_IDLE);
    }

    fn parked(level: i32, real_topic: &str, tag: &str) -> RecordInput {
        let mut props = BTreeMap::new();
        props.insert(property_key::DELAY.to_string(), level.to_string());
        props.insert(property_key::REAL_TOPIC.to_string(), real_topic.to_string());
        props.insert(property_key::REAL_QID.to_string(), "0".to_string());
        props.insert(property_key::TAGS.to_string(), tag.to_string());
        RecordInput {
            topic: SCHEDULE_TOPIC_XXXX.into(),
            queue_id: level - 1,
            flag: 0,
            body: Bytes::from_static(b"x"),
            properties: encode_properties(&props),
            sys_flag: 0,
            born_timestamp: 0,
            born_host: "127.0.0.1:1".parse().unwrap(),
            store_host: "127.0.0.1:2".parse().unwrap(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
        }
    }

    #[tokio::test]
    async fn pass_delivers_only_due_messages_and_reports_the_next_due_time() {
        let dir = tempfile::tempdir().unwrap();
        let delays = table(&[1, 100]);
        let mut cfg = StoreConfig::new(dir.path()).with_small_files();
        cfg.delay_level_table = delays.clone();
        let store = MessageStore::open(cfg).unwrap();
        let a = store.put_message(parked(1, "T", "a")).await;
        let b = store.put_message(parked(2, "T", "b")).await;
        let store_ts = a.append.unwrap().store_timestamp;
        let b_end = b.append.unwrap();
        assert!(store.wait_dispatched(
            b_end.phy_offset + i64::try_from(b_end.wrote_bytes).unwrap(),
            Duration::from_secs(5)
        ));
        let stats = ScheduleStats::default();
        let host: SocketAddr = "127.0.0.1:3".parse().unwrap();
        let mut progress = DelayOffsetTable::default();

        // Just before level 1's due time: nothing moves.
        let early = store_ts + 999;
        let out = deliver_due(&store, &delays, &mut progress, host, &stats, &|| early);
        assert_eq!(out.delivered, 0);
        assert!(!out.changed);
        assert_eq!(out.next_due_ms, Some(store_ts + 1_000));
        assert_eq!(store.max_offset_in_queue("T", 0), 0);

        // At level 1's due time: only level 1 is delivered.
        let due = store_ts + 1_000;
        let out = deliver_due(&store, &delays, &mut progress, host, &stats, &|| due);
        assert_eq!(out.delivered, 1);
        assert!(out.changed);
        assert_eq!(progress.offset(1), 1);
        assert_eq!(progress.offset(2), 0);
        assert!(out.next_due_ms.is_some_and(|d| d >= store_ts + 100_000));

        // The same pass again delivers nothing more (no duplicate).
        let out = deliver_due(&store, &delays, &mut progress, host, &stats, &|| due);
        assert_eq!(out.delivered, 0);
        assert!(!out.changed);
    }

    #[test]
    fn offset_table_snapshot_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir
            .path()
            .join("config")
            .join(super::super::DELAY_OFFSET_FILE);
        assert_eq!(
            DelayOffsetTable::load(&path).unwrap(),
            DelayOffsetTable::default()
        );
        let mut t = DelayOffsetTable::default();
        t.offset_table.insert(3, 17);
        t.save(&path).unwrap();
        assert_eq!(DelayOffsetTable::load(&path).unwrap(), t);
    }
}
