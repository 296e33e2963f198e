//! Queue allocation strategies for clustering rebalance.
//!
//! Every member of a consumer group runs the same strategy over the same sorted inputs (the
//! topic's queues and the group's client ids, both sorted), so all members compute the same
//! assignment without talking to each other. The contract of a strategy: for fixed inputs the
//! union of every client's result is the whole queue list and no queue is given to two clients.

use tern_common::route::MessageQueue;

/// Decides which of a topic's queues one client of a consumer group consumes.
pub trait AllocateStrategy: Send + Sync + std::fmt::Debug + 'static {
    /// The queues of `queues` that `current_client_id` owns, given every client id of the group.
    ///
    /// Both slices must be sorted (the rebalance sorts them); a client id that is not in
    /// `client_ids` gets nothing.
    fn allocate(
        &self,
        current_client_id: &str,
        queues: &[MessageQueue],
        client_ids: &[String],
    ) -> Vec<MessageQueue>;

    /// A short name for logs.
    fn name(&self) -> &'static str;
}

/// RocketMQ's default `AllocateMessageQueueAveragely`: contiguous blocks, the first
/// `queues % clients` clients get one queue more than the others.
///
/// With 8 queues and 3 clients the blocks are `[0,1,2] [3,4,5] [6,7]`; with more clients
/// than queues the clients past the last queue get nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllocateAveragely;

impl AllocateStrategy for AllocateAveragely {
    fn allocate(
        &self,
        current_client_id: &str,
        queues: &[MessageQueue],
        client_ids: &[String],
    ) -> Vec<MessageQueue> {
        let Some(index) = client_ids.iter().position(|c| c == current_client_id) else {
            return Vec::new();
        };
        if queues.is_empty() {
            return Vec::new();
        }
        let (q, c) = (queues.len(), client_ids.len());
        let rem = q % c;
        let average = if q <= c {
            1
        } else if rem > 0 && index < rem {
            q / c + 1
        } else {
            q / c
        };
        let start = if rem > 0 && index < rem {
            index * average
        } else {
            index * average + rem
        };
        if start >= q {
            // More clients than queues: this one is past the last queue.
            return Vec::new();
        }
        let range = average.min(q - start);
        queues[start..start + range].to_vec()
    }

    fn name(&self) -> &'static str {
        "AVG"
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    fn queues(n: usize) -> Vec<MessageQueue> {
        let mut v: Vec<MessageQueue> = (0..n)
            .map(|i| MessageQueue {
                topic: "T".into(),
                broker_name: if i % 2 == 0 { "broker-a" } else { "broker-b" }.into(),
                queue_id: (i / 2) as i32,
            })
            .collect();
        v.sort();
        v
    }

    fn clients(n: usize) -> Vec<String> {
        let mut v: Vec<String> = (0..n).map(|i| format!("10.0.0.{i}@{i}#1")).collect();
        v.sort();
        v
    }

    #[test]
    fn averagely_gives_contiguous_blocks_with_the_remainder_first() {
        let qs = queues(8);
        let cs = clients(3);
        let sizes: Vec<usize> = cs
            .iter()
            .map(|c| AllocateAveragely.allocate(c, &qs, &cs).len())
            .collect();
        assert_eq!(sizes, vec![3, 3, 2]);
        assert_eq!(
            AllocateAveragely.allocate(&cs[0], &qs, &cs),
            qs[0..3].to_vec()
        );
        assert_eq!(
            AllocateAveragely.allocate(&cs[1], &qs, &cs),
            qs[3..6].to_vec()
        );
        assert_eq!(
            AllocateAveragely.allocate(&cs[2], &qs, &cs),
            qs[6..8].to_vec()
        );
    }

    #[test]
    fn averagely_leaves_extra_clients_idle() {
        let qs = queues(2);
        let cs = clients(4);
        let got: Vec<usize> = cs
            .iter()
            .map(|c| AllocateAveragely.allocate(c, &qs, &cs).len())
            .collect();
        assert_eq!(got, vec![1, 1, 0, 0]);
    }

    #[test]
    fn unknown_client_gets_nothing() {
        assert!(AllocateAveragely
            .allocate("x", &queues(4), &clients(2))
            .is_empty());
    }

    #[test]
    fn single_client_gets_everything() {
        let qs = queues(5);
        let cs = clients(1);
        assert_eq!(AllocateAveragely.allocate(&cs[0], &qs, &cs), qs);
    }

    proptest! {
        #[test]
        fn averagely_owns_every_queue_exactly_once(nq in 0usize..64, nc in 1usize..16) {
            let qs = queues(nq);
            let cs = clients(nc);
            let mut seen = BTreeSet::new();
            let mut total = 0;
            for c in &cs {
                let got = AllocateAveragely.allocate(c, &qs, &cs);
                // Every client computes the same answer for any other client's id, so the
                // assignment is a pure function of the sorted inputs.
                prop_assert_eq!(&got, &AllocateAveragely.allocate(c, &qs, &cs));
                let max = nq.div_ceil(nc);
                prop_assert!(got.len() <= max.max(1));
                total += got.len();
                for q in got {
                    prop_assert!(seen.insert(q));
                }
            }
            prop_assert_eq!(total, nq);
            prop_assert_eq!(seen.len(), nq);
        }

        #[test]
        fn averagely_is_independent_of_input_order(nq in 0usize..40, nc in 1usize..10, seed in any::<u64>()) {
            use rand::{seq::SliceRandom, SeedableRng};
            let qs = queues(nq);
            let cs = clients(nc);
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut shuffled_q = qs.clone();
            shuffled_q.shuffle(&mut rng);
            let mut shuffled_c = cs.clone();
            shuffled_c.shuffle(&mut rng);
            // The rebalance sorts before allocating; two clients that saw the lists in
            // different orders still agree.
            shuffled_q.sort();
            shuffled_c.sort();
            for c in &cs {
                prop_assert_eq!(
                    AllocateAveragely.allocate(c, &qs, &cs),
                    AllocateAveragely.allocate(c, &shuffled_q, &shuffled_c)
                );
            }
        }
    }
}
