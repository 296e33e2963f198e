//! [`ProcessQueue`]: the client-side cache of one message queue's pulled, not yet
//! acknowledged messages (Java's `ProcessQueue`).
//!
//! Contract: messages enter in pull order ([`put`](ProcessQueue::put)) and leave when the
//! handler acknowledges them, in any order ([`remove`](ProcessQueue::remove)). The offset
//! that may be committed is always the smallest queue offset still in the cache, or one past
//! the largest offset ever cached when the cache is empty, so a crash never skips a message
//! that was not acknowledged (consumption is at-least-once). Orderly consumption moves a batch
//! into a "consuming" set with [`take`](ProcessQueue::take) and then either
//! [`commit`](ProcessQueue::commit)s it or puts it back with
//! [`rollback`](ProcessQueue::rollback).

use std::collections::BTreeMap;
use std::time::Instant;

/// The cache of one queue. `M` is the message type (`MessageExt` in the SDK; tests use `()`).
#[derive(Debug)]
pub(crate) struct ProcessQueue<M> {
    /// Cached messages not yet handed out (orderly) or not yet acknowledged (concurrent),
    /// by queue offset.
    msgs: BTreeMap<i64, M>,
    /// Orderly only: messages handed to the handler and not yet committed.
    consuming: BTreeMap<i64, M>,
    /// Largest queue offset ever put; `-1` before the first put.
    max_offset: i64,
    /// Whether the broker lock for this queue is held (orderly clustering).
    pub(crate) locked: bool,
    /// When the lock was last granted or renewed.
    pub(crate) last_lock: Option<Instant>,
}

impl<M> Default for ProcessQueue<M> {
    fn default() -> Self {
        ProcessQueue {
            msgs: BTreeMap::new(),
            consuming: BTreeMap::new(),
            max_offset: -1,
            locked: false,
            last_lock: None,
        }
    }
}

impl<M> ProcessQueue<M> {
    /// Caches pulled messages, each with its queue offset. An offset already cached is
    /// replaced (a re-pull after an offset reset may deliver it again).
    pub(crate) fn put(&mut self, msgs: impl IntoIterator<Item = (i64, M)>) {
        for (offset, msg) in msgs {
            self.max_offset = self.max_offset.max(offset);
            self.msgs.insert(offset, msg);
        }
    }

    /// Number of cached messages, including those being consumed.
    pub(crate) fn len(&self) -> usize {
        self.msgs.len() + self.consuming.len()
    }

    /// Removes acknowledged messages and returns the offset that may now be committed, or
    /// `None` if nothing was ever cached.
    pub(crate) fn remove(&mut self, offsets: impl IntoIterator<Item = i64>) -> Option<i64> {
        for offset in offsets {
            self.msgs.remove(&offset);
        }
        self.commit_offset()
    }

    /// The offset to commit: the smallest unacknowledged offset, or one past the largest
    /// offset ever cached when everything is acknowledged; `None` before the first put.
    pub(crate) fn commit_offset(&self) -> Option<i64> {
        if self.max_offset < 0 {
            return None;
        }
        let first = self.msgs.keys().next().copied();
        let first_consuming = self.consuming.keys().next().copied();
        Some(match (first, first_consuming) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => self.max_offset + 1,
        })
    }

    /// Orderly: moves up to `n` of the lowest cached messages into the consuming set and
    /// returns clones of them in offset order.
    pub(crate) fn take(&mut self, n: usize) -> Vec<(i64, M)>
    where
        M: Clone,
    {
        let mut out = Vec::new();
        while out.len() < n {
            let Some((offset, msg)) = self.msgs.pop_first() else {
                break;
            };
            out.push((offset, msg.clone()));
            self.consuming.insert(offset, msg);
        }
        out
    }

    /// Orderly: the consuming set was handled; drop it and return the offset to commit
    /// (one past the largest committed message, or the next cached one).
    pub(crate) fn commit(&mut self) -> Option<i64> {
        self.consuming.clear();
        self.commit_offset()
    }

    /// Orderly: the consuming set must be consumed again; put it back in front.
    pub(crate) fn rollback(&mut self) {
        let consuming = std::mem::take(&mut self.consuming);
        self.msgs.extend(consuming);
    }

    /// The largest queue offset ever cached, `-1` before the first put.
    #[cfg(test)]
    pub(crate) fn max_offset(&self) -> i64 {
        self.max_offset
    }

    /// A GET_CONSUMER_RUNNING_INFO snapshot of the cache: counts, offset ranges and bytes
    /// (`size_of` gives one message's body size) of the cached and the consuming messages,
    /// and the lock state. Commit offset and timestamps of pulls and handlers are the
    /// caller's to fill.
    pub(crate) fn info(&self, size_of: impl Fn(&M) -> usize) -> super::running::ProcessQueueInfo {
        let all = self.msgs.iter().chain(self.consuming.iter());
        let bytes: usize = all.map(|(_, m)| size_of(m)).sum();
        let min = self.commit_offset_if_cached();
        let max = self
            .msgs
            .keys()
            .next_back()
            .copied()
            .max(self.consuming.keys().next_back().copied());
        let last_lock_timestamp = self.last_lock.map_or(0, |t| {
            let age = i64::try_from(t.elapsed().as_millis()).unwrap_or(i64::MAX);
            crate::config::now_ms().saturating_sub(age)
        });
        super::running::ProcessQueueInfo {
            commit_offset: -1,
            cached_msg_min_offset: min.unwrap_or(0),
            cached_msg_max_offset: max.unwrap_or(0),
            cached_msg_count: i32::try_from(self.len()).unwrap_or(i32::MAX),
            cached_msg_size_in_mi_b: i32::try_from(bytes / (1024 * 1024)).unwrap_or(i32::MAX),
            transaction_msg_min_offset: self.consuming.keys().next().copied().unwrap_or(0),
            transaction_msg_max_offset: self.consuming.keys().next_back().copied().unwrap_or(0),
            transaction_msg_count: i32::try_from(self.consuming.len()).unwrap_or(i32::MAX),
            locked: self.locked,
            last_lock_timestamp,
            ..Default::default()
        }
    }

    /// The smallest cached or consuming offset, `None` when nothing is cached.
    fn commit_offset_if_cached(&self) -> Option<i64> {
        match (self.msgs.keys().next(), self.consuming.keys().next()) {
            (Some(a), Some(b)) => Some(*a.min(b)),
            (Some(a), None) | (None, Some(a)) => Some(*a),
            (None, None) => None,
        }
    }

    /// True while the broker lock is held and younger than `max_age`.
    pub(crate) fn lock_valid(&self, max_age: std::time::Duration) -> bool {
        self.locked && self.last_lock.is_some_and(|t| t.elapsed() < max_age)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_queue_has_no_commit_offset() {
        let pq = ProcessQueue::<()>::default();
        assert_eq!(pq.commit_offset(), None);
    }

    #[test]
    fn out_of_order_acks_commit_the_smallest_unacknowledged_offset() {
        let mut pq = ProcessQueue::default();
        pq.put((10..15).map(|o| (o, ())));
        assert_eq!(pq.commit_offset(), Some(10));
        // 12 and 14 finish first: 10 is still pending.
        assert_eq!(pq.remove([12, 14]), Some(10));
        assert_eq!(pq.remove([10]), Some(11));
        assert_eq!(pq.remove([11]), Some(13));
        assert_eq!(pq.remove([13]), Some(15));
        assert_eq!(pq.len(), 0);
        // Acknowledging again changes nothing.
        assert_eq!(pq.remove([13]), Some(15));
    }

    #[test]
    fn later_puts_keep_the_lowest_pending_offset() {
        let mut pq = ProcessQueue::default();
        pq.put([(0, ()), (1, ())]);
        pq.remove([1]);
        pq.put([(2, ()), (3, ())]);
        assert_eq!(pq.commit_offset(), Some(0));
        pq.remove([0, 2, 3]);
        assert_eq!(pq.commit_offset(), Some(4));
        assert_eq!(pq.max_offset(), 3);
    }

    #[test]
    fn orderly_take_commit_and_rollback() {
        let mut pq = ProcessQueue::default();
        pq.put((0..5).map(|o| (o, o * 10)));
        let batch = pq.take(2);
        assert_eq!(batch, vec![(0, 0), (1, 10)]);
        assert_eq!(pq.len(), 5);
        assert_eq!(pq.commit_offset(), Some(0));
        pq.rollback();
        assert_eq!(pq.take(3), vec![(0, 0), (1, 10), (2, 20)]);
        assert_eq!(pq.commit(), Some(3));
        pq.take(10);
        pq.rollback();
        assert_eq!(pq.take(1), vec![(3, 30)]);
        assert_eq!(pq.commit(), Some(4));
        pq.take(1);
        assert_eq!(pq.commit(), Some(5));
    }

    #[test]
    fn lock_validity_needs_a_recent_lock() {
        let mut pq = ProcessQueue::<()>::default();
        assert!(!pq.lock_valid(std::time::Duration::from_secs(30)));
        pq.locked = true;
        pq.last_lock = Some(Instant::now());
        assert!(pq.lock_valid(std::time::Duration::from_secs(30)));
        assert!(!pq.lock_valid(std::time::Duration::ZERO));
    }
}
