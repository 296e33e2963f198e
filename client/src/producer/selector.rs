//! Queue selectors for [`Producer::send_with_selector`](super::Producer::send_with_selector):
//! the application picks the queue, typically so that all messages of one order id go to one
//! queue and are consumed in order (Java's `MessageQueueSelector`).

use std::hash::{Hash, Hasher};

use tern_common::message::Message;
use tern_common::route::MessageQueue;

/// Picks the queue for one message from the topic's writable queues (sorted by broker name
/// and queue id). Returning `None` fails the send with `ClientError::InvalidMessage`.
///
/// Closures `Fn(&[MessageQueue], &Message, &A) -> Option<MessageQueue>` implement it.
pub trait MessageQueueSelector<A: ?Sized>: Send + Sync {
    /// The queue for `msg`, given the caller's `arg` (an order id, a shard key, …).
    fn select(&self, queues: &[MessageQueue], msg: &Message, arg: &A) -> Option<MessageQueue>;
}

impl<A: ?Sized, F> MessageQueueSelector<A> for F
where
    F: Fn(&[MessageQueue], &Message, &A) -> Option<MessageQueue> + Send + Sync,
{
    fn select(&self, queues: &[MessageQueue], msg: &Message, arg: &A) -> Option<MessageQueue> {
        self(queues, msg, arg)
    }
}

/// Selects `queues[hash(arg) % len]` (Java's `SelectMessageQueueByHash`). The hash is
/// SipHash with fixed keys, so one argument maps to one queue in every process and run
/// while the queue list is unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct SelectByHash;

impl<A: Hash + ?Sized> MessageQueueSelector<A> for SelectByHash {
    fn select(&self, queues: &[MessageQueue], _msg: &Message, arg: &A) -> Option<MessageQueue> {
        if queues.is_empty() {
            return None;
        }
        #[allow(deprecated)] // SipHasher's fixed keys are the point: stable across processes.
        let mut hasher = std::hash::SipHasher::new();
        arg.hash(&mut hasher);
        let index = (hasher.finish() % queues.len() as u64) as usize;
        queues.get(index).cloned()
    }
}

/// Selects a uniformly random queue (Java's `SelectMessageQueueByRandom`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SelectRandom;

impl<A: ?Sized> MessageQueueSelector<A> for SelectRandom {
    fn select(&self, queues: &[MessageQueue], _msg: &Message, _arg: &A) -> Option<MessageQueue> {
        use rand::seq::SliceRandom;
        queues.choose(&mut rand::thread_rng()).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queues(n: i32) -> Vec<MessageQueue> {
        (0..n)
            .map(|i| MessageQueue::new("T", "broker-a", i))
            .collect()
    }

    fn msg() -> Message {
        Message::new("T", "body")
    }

    #[test]
    fn hash_selector_is_stable_per_argument() {
        let qs = queues(8);
        for order_id in 0u64..100 {
            let a = SelectByHash.select(&qs, &msg(), &order_id);
            let b = SelectByHash.select(&qs, &msg(), &order_id);
            assert_eq!(a, b);
            assert!(a.is_some());
        }
        // Different ids spread over more than one queue.
        let distinct: std::collections::BTreeSet<_> = (0u64..100)
            .filter_map(|id| SelectByHash.select(&qs, &msg(), &id))
            .collect();
        assert!(distinct.len() > 1);
    }

    #[test]
    fn selectors_handle_empty_queue_lists() {
        assert_eq!(SelectByHash.select(&[], &msg(), &1u32), None);
        assert_eq!(SelectRandom.select(&[], &msg(), &()), None);
    }

    #[test]
    fn closures_are_selectors() {
        let qs = queues(4);
        let by_mod = |qs: &[MessageQueue], _m: &Message, id: &usize| qs.get(id % qs.len()).cloned();
        assert_eq!(by_mod.select(&qs, &msg(), &6).map(|q| q.queue_id), Some(2));
        assert!(SelectRandom.select(&qs, &msg(), &()).is_some());
    }
}
