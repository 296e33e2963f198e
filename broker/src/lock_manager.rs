//! [`QueueLockTable`]: orderly-consumption queue locks (RocketMQ `RebalanceLockManager`).
//!
//! A lock belongs to (group, message queue) and is held by one client id. It expires after
//! `lock_max_live_time` (60 s) without renewal; the holder renews it by locking again
//! (LOCK_BATCH_MQ every 20 s). One mutex over the table; every operation is short.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tern_common::route::MessageQueue;

#[derive(Debug, Clone)]
struct LockEntry {
    client_id: String,
    last_update: Instant,
}

/// The lock table of one broker.
#[derive(Debug)]
pub struct QueueLockTable {
    locks: Mutex<HashMap<String, HashMap<MessageQueue, LockEntry>>>,
    max_live_time: Duration,
}

impl QueueLockTable {
    /// An empty table whose locks expire after `max_live_time`.
    pub fn new(max_live_time: Duration) -> Self {
        QueueLockTable {
            locks: Mutex::new(HashMap::new()),
            max_live_time,
        }
    }

    /// Locks (or renews) every queue of `mqs` that is free, expired or already held by
    /// `client_id`; returns the queues now held by `client_id`.
    pub fn try_lock_batch(
        &self,
        group: &str,
        mqs: &BTreeSet<MessageQueue>,
        client_id: &str,
        now: Instant,
    ) -> BTreeSet<MessageQueue> {
        let mut locks = self.locks.lock();
        let table = locks.entry(group.to_string()).or_default();
        let mut locked = BTreeSet::new();
        for mq in mqs {
            let free = match table.get(mq) {
                None => true,
                Some(entry) => {
                    entry.client_id == client_id
                        || now.saturating_duration_since(entry.last_update) > self.max_live_time
                }
            };
            if free {
                table.insert(
                    mq.clone(),
                    LockEntry {
                        client_id: client_id.to_string(),
                        last_update: now,
                    },
                );
                locked.insert(mq.clone());
            }
        }
        locked
    }

    /// Releases the queues of `mqs` held by `client_id` (others' locks are untouched).
    pub fn unlock_batch(&self, group: &str, mqs: &BTreeSet<MessageQueue>, client_id: &str) {
        let mut locks = self.locks.lock();
        if let Some(table) = locks.get_mut(group) {
            for mq in mqs {
                if table.get(mq).is_some_and(|e| e.client_id == client_id) {
                    table.remove(mq);
                }
            }
            if table.is_empty() {
                locks.remove(group);
            }
        }
    }

    /// True if `group` holds at least one unexpired lock.
    pub fn group_holds_locks(&self, group: &str, now: Instant) -> bool {
        self.locks.lock().get(group).is_some_and(|t| {
            t.values()
                .any(|e| now.saturating_duration_since(e.last_update) <= self.max_live_time)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_are_exclusive_renewable_and_expire() {
        let table = QueueLockTable::new(Duration::from_secs(60));
        let mqs: BTreeSet<_> = (0..2)
            .map(|q| MessageQueue::new("T", "broker-a", q))
            .collect();
        let t0 = Instant::now();
        assert_eq!(table.try_lock_batch("g", &mqs, "c1", t0).len(), 2);
        assert!(table.try_lock_batch("g", &mqs, "c2", t0).is_empty());
        assert_eq!(
            table.try_lock_batch("g", &mqs, "c1", t0).len(),
            2,
            "renewal"
        );
        let later = t0 + Duration::from_secs(61);
        assert_eq!(
            table.try_lock_batch("g", &mqs, "c2", later).len(),
            2,
            "expired locks move"
        );
        table.unlock_batch("g", &mqs, "c1");
        assert!(table.group_holds_locks("g", later));
        table.unlock_batch("g", &mqs, "c2");
        assert!(!table.group_holds_locks("g", later));
    }
}
