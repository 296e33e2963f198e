//! [`PullRequestHold`]: long polling (RocketMQ `PullRequestHoldService`, PROTOCOL.md §8).
//!
//! A pull that would answer PULL_NOT_FOUND with the SUSPEND bit set is parked here under
//! `topic@queueId` instead of being answered. A parked pull leaves the table — and is
//! re-executed without suspension, its answer sent on its own connection with its own opaque
//! — when:
//! * a message arrives on its queue at an offset it is waiting for and passes its tag filter
//!   ([`PullRequestHold::take_arrived`], driven by the store's arrival listener);
//! * the periodic check (every 5 s, or the short-polling time) finds the queue's max offset
//!   beyond its offset ([`PullRequestHold::take_ready`]);
//! * its hold time is over (also [`PullRequestHold::take_ready`], checked every 200 ms).
//!
//! Parked pulls of a closed connection are dropped. The table is bounded per queue
//! (`max_suspended_pulls_per_queue`); [`PullRequestHold::park`] refuses beyond it and the
//! caller answers at once.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{fence, AtomicUsize, Ordering};
use std::time::Instant;

use parking_lot::Mutex;
use tern_common::protocol::RemotingCommand;
use tern_common::remoting::Connection;

/// One parked pull.
#[derive(Debug)]
pub struct HeldPull {
    /// The connection the pull came on.
    pub conn: Connection,
    /// The original request (re-executed as is).
    pub request: RemotingCommand,
    /// The queue offset it asked for.
    pub queue_offset: i64,
    /// Tag codes it accepts; `None` = every message.
    pub code_filter: Option<BTreeSet<i64>>,
    /// When its hold time is over.
    pub deadline: Instant,
}

impl HeldPull {
    fn accepts(&self, tags_code: i64) -> bool {
        self.code_filter
            .as_ref()
            .is_none_or(|codes| codes.contains(&tags_code))
    }
}

/// The table of parked pulls.
#[derive(Debug)]
pub struct PullRequestHold {
    held: Mutex<HashMap<String, Vec<HeldPull>>>,
    /// Number of pulls in `held`, changed under its lock, read without it by
    /// [`PullRequestHold::may_hold`].
    count: AtomicUsize,
    max_per_queue: usize,
}

/// Reports a queue's max offset: `(topic, queue id) -> max offset`.
pub type MaxOffsetFn<'a> = &'a dyn Fn(&str, i32) -> i64;

fn key(topic: &str, queue_id: i32) -> String {
    format!("{topic}@{queue_id}")
}

fn parse_key(key: &str) -> Option<(&str, i32)> {
    let (topic, qid) = key.rsplit_once('@')?;
    Some((topic, qid.parse().ok()?))
}

impl PullRequestHold {
    /// An empty table holding at most `max_per_queue` pulls per topic@queue.
    pub fn new(max_per_queue: usize) -> Self {
        PullRequestHold {
            held: Mutex::new(HashMap::new()),
            count: AtomicUsize::new(0),
            max_per_queue,
        }
    }

    /// Parks `pull` on (topic, queue). Gives it back when that queue's table is full.
    ///
    /// # Errors
    /// The pull itself, when the per-queue bound is reached.
    pub fn park(&self, topic: &str, queue_id: i32, pull: HeldPull) -> Result<(), Box<HeldPull>> {
        let mut held = self.held.lock();
        let list = held.entry(key(topic, queue_id)).or_default();
        let before = list.len();
        list.retain(|p| !p.conn.is_closed());
        self.count.fetch_sub(before - list.len(), Ordering::SeqCst);
        if list.len() >= self.max_per_queue {
            return Err(Box::new(pull));
        }
        list.push(pull);
        // Pairs with the fence in `may_hold`: the caller re-reads the queue's max offset after
        // this, so an arrival either sees the count or is seen by that re-read.
        self.count.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        Ok(())
    }

    /// Whether any pull may be parked: false means an arrival has nothing to wake, so the
    /// store's arrival listener can skip the table (and its lock) for every record appended
    /// while no consumer waits. Call it after the arrival is visible in the ConsumeQueue: a pull
    /// parked concurrently re-reads the max offset after [`PullRequestHold::park`] and wakes
    /// itself (Dekker: both sides order their write before their read with a `SeqCst` fence).
    pub fn may_hold(&self) -> bool {
        fence(Ordering::SeqCst);
        self.count.load(Ordering::SeqCst) > 0
    }

    /// Removes and returns the pulls of (topic, queue) woken by a message arrival: those
    /// waiting for an offset below `new_max_offset` whose filter accepts `tags_code`.
    pub fn take_arrived(
        &self,
        topic: &str,
        queue_id: i32,
        new_max_offset: i64,
        tags_code: i64,
    ) -> Vec<HeldPull> {
        let mut held = self.held.lock();
        let k = key(topic, queue_id);
        let Some(list) = held.get_mut(&k) else {
            return Vec::new();
        };
        let (ready, keep): (Vec<_>, Vec<_>) = std::mem::take(list).into_iter().partition(|p| {
            p.conn.is_closed() || (p.queue_offset < new_max_offset && p.accepts(tags_code))
        });
        self.count.fetch_sub(ready.len(), Ordering::SeqCst);
        *list = keep;
        if list.is_empty() {
            held.remove(&k);
        }
        ready.into_iter().filter(|p| !p.conn.is_closed()).collect()
    }

    /// Removes and returns the pulls of (topic, queue) waiting for an offset below
    /// `max_offset`, whatever their filter (used right after parking, when a message may have
    /// arrived between the read and the park).
    pub fn take_below(&self, topic: &str, queue_id: i32, max_offset: i64) -> Vec<HeldPull> {
        let mut held = self.held.lock();
        let k = key(topic, queue_id);
        let Some(list) = held.get_mut(&k) else {
            return Vec::new();
        };
        let (ready, keep): (Vec<_>, Vec<_>) = std::mem::take(list)
            .into_iter()
            .partition(|p| p.conn.is_closed() || p.queue_offset < max_offset);
        self.count.fetch_sub(ready.len(), Ordering::SeqCst);
        *list = keep;
        if list.is_empty() {
            held.remove(&k);
        }
        ready.into_iter().filter(|p| !p.conn.is_closed()).collect()
    }

    /// Removes and returns pulls whose hold time is over at `now`, and — when `max_offset`
    /// is given — those whose queue's max offset (as `max_offset(topic, queue)` reports) is
    /// beyond their offset. Parked pulls of closed connections are dropped.
    pub fn take_ready(&self, now: Instant, max_offset: Option<MaxOffsetFn<'_>>) -> Vec<HeldPull> {
        let mut held = self.held.lock();
        let mut ready = Vec::new();
        held.retain(|k, list| {
            let queue_max = match (max_offset, parse_key(k)) {
                (Some(f), Some((topic, qid))) => Some(f(topic, qid)),
                _ => None,
            };
            let (go, keep): (Vec<_>, Vec<_>) = std::mem::take(list).into_iter().partition(|p| {
                p.conn.is_closed()
                    || now >= p.deadline
                    || queue_max.is_some_and(|max| p.queue_offset < max)
            });
            self.count.fetch_sub(go.len(), Ordering::SeqCst);
            ready.extend(go.into_iter().filter(|p| !p.conn.is_closed()));
            *list = keep;
            !list.is_empty()
        });
        ready
    }

    /// Number of parked pulls (runtime info, tests).
    pub fn len(&self) -> usize {
        self.held.lock().values().map(Vec::len).sum()
    }

    /// True when nothing is parked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every parked pull (shutdown).
    pub fn drain(&self) -> Vec<HeldPull> {
        let mut held = self.held.lock();
        self.count.store(0, Ordering::SeqCst);
        held.drain().flat_map(|(_, v)| v).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_with_at_signs_in_topics() {
        assert_eq!(parse_key(&key("%RETRY%g", 3)), Some(("%RETRY%g", 3)));
        assert_eq!(parse_key("bad"), None);
    }
}
