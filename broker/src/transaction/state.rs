//! [`TransactionState`]: which half messages are resolved, which are being resolved, where the
//! check-back scan stands, and the persisted form of all that ([`TransactionSnapshot`]).
//!
//! Identity of a transaction: its **origin**, the queue offset (in `RMQ_SYS_TRANS_HALF_TOPIC`
//! queue 0) of the first half record the producer stored. Every copy the check-back service
//! re-appends carries the origin in property `TRAN_PREPARED_QUEUE_OFFSET`, so an
//! END_TRANSACTION naming any copy resolves the same transaction, once.
//!
//! Contract (the invariants the check-back service and END_TRANSACTION rely on):
//! - every half record below `half_offset` (the scan progress) is resolved, or has a live copy
//!   at or above `half_offset` (tracked in `copies`);
//! - `resolved` maps an origin to its *horizon*, the highest half queue offset of any record
//!   of that transaction known when it was resolved; an entry is dropped once the scan passed
//!   its horizon, because no record of it can be scanned again. An END_TRANSACTION for a record
//!   below `half_offset` whose origin is neither resolved nor copied is therefore obsolete
//!   (resolved long ago) and ignored — this keeps the set bounded without ever committing twice;
//! - `in_flight` holds origins an END_TRANSACTION is committing right now (claim → append →
//!   resolve), so a concurrent duplicate cannot append a second copy.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

/// Version of [`TransactionSnapshot`]'s layout.
pub const TRANSACTION_SNAPSHOT_VERSION: u32 = 1;

/// Persisted check-back progress and bookkeeping (MessagePack, `<store>/config/transaction`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionSnapshot {
    /// Layout version ([`TRANSACTION_SNAPSHOT_VERSION`]).
    pub version: u32,
    /// Next half queue offset to scan.
    pub half_offset: i64,
    /// Next op queue offset not yet reflected in `resolved`.
    pub op_offset: i64,
    /// Resolved origins and their horizons.
    pub resolved: Vec<(i64, i64)>,
    /// Unresolved origins and the queue offset of their latest copy.
    pub copies: Vec<(i64, i64)>,
}

/// Outcome of [`TransactionState::claim`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The caller now owns the resolution; it must call `resolve` or `release`.
    Claimed,
    /// Already committed or rolled back.
    AlreadyResolved,
    /// Another END_TRANSACTION is resolving it right now.
    InFlight,
    /// The record is below the scan progress and its transaction is no longer tracked, so it
    /// was resolved (or discarded) long ago.
    Obsolete,
}

/// In-memory transaction bookkeeping; see the module doc.
#[derive(Debug, Default, Clone)]
pub struct TransactionState {
    half_offset: i64,
    op_offset: i64,
    resolved: HashMap<i64, i64>,
    copies: HashMap<i64, i64>,
    in_flight: HashSet<i64>,
}

impl TransactionState {
    /// State restored from `snapshot` (nothing in flight).
    pub fn from_snapshot(snapshot: &TransactionSnapshot) -> Self {
        TransactionState {
            half_offset: snapshot.half_offset.max(0),
            op_offset: snapshot.op_offset.max(0),
            resolved: snapshot.resolved.iter().copied().collect(),
            copies: snapshot.copies.iter().copied().collect(),
            in_flight: HashSet::new(),
        }
    }

    /// The persisted form (sorted, so equal states give equal files).
    pub fn snapshot(&self) -> TransactionSnapshot {
        let mut resolved: Vec<(i64, i64)> = self.resolved.iter().map(|(k, v)| (*k, *v)).collect();
        resolved.sort_unstable();
        let mut copies: Vec<(i64, i64)> = self.copies.iter().map(|(k, v)| (*k, *v)).collect();
        copies.sort_unstable();
        TransactionSnapshot {
            version: TRANSACTION_SNAPSHOT_VERSION,
            half_offset: self.half_offset,
            op_offset: self.op_offset,
            resolved,
            copies,
        }
    }

    /// Next half queue offset the check-back scan reads.
    pub fn half_offset(&self) -> i64 {
        self.half_offset
    }

    /// Next op queue offset not yet reflected here.
    pub fn op_offset(&self) -> i64 {
        self.op_offset
    }

    /// Records that the op queue up to (excluding) `offset` is reflected here.
    pub fn set_op_offset(&mut self, offset: i64) {
        self.op_offset = self.op_offset.max(offset);
    }

    /// Whether `origin` is resolved.
    pub fn is_resolved(&self, origin: i64) -> bool {
        self.resolved.contains_key(&origin)
    }

    /// Whether an END_TRANSACTION is resolving `origin` right now.
    pub fn is_in_flight(&self, origin: i64) -> bool {
        self.in_flight.contains(&origin)
    }

    /// Number of tracked resolved origins (for stats and tests).
    pub fn resolved_len(&self) -> usize {
        self.resolved.len()
    }

    /// Number of unresolved origins with a live copy.
    pub fn copies_len(&self) -> usize {
        self.copies.len()
    }

    /// Tries to take ownership of resolving `origin` through the record at `record_offset`.
    pub fn claim(&mut self, origin: i64, record_offset: i64) -> Claim {
        if self.resolved.contains_key(&origin) {
            return Claim::AlreadyResolved;
        }
        if self.in_flight.contains(&origin) {
            return Claim::InFlight;
        }
        if record_offset < self.half_offset && !self.copies.contains_key(&origin) {
            return Claim::Obsolete;
        }
        self.in_flight.insert(origin);
        Claim::Claimed
    }

    /// Gives a claim back after a failed resolution (the transaction stays unresolved).
    pub fn release(&mut self, origin: i64) {
        self.in_flight.remove(&origin);
    }

    /// Marks `origin` resolved; `record_offset` is the half record the resolution named.
    pub fn resolve(&mut self, origin: i64, record_offset: i64) {
        self.in_flight.remove(&origin);
        let copy = self.copies.remove(&origin).unwrap_or(origin);
        let horizon = record_offset.max(copy).max(origin);
        let entry = self.resolved.entry(origin).or_insert(horizon);
        *entry = (*entry).max(horizon);
    }

    /// Records that the check-back service appended a copy of `origin` at `copy_offset`.
    pub fn record_copy(&mut self, origin: i64, copy_offset: i64) {
        if let Some(horizon) = self.resolved.get_mut(&origin) {
            // Resolved while the copy was being appended: the copy must still be skipped.
            *horizon = (*horizon).max(copy_offset);
            return;
        }
        let latest = self.copies.entry(origin).or_insert(copy_offset);
        *latest = (*latest).max(copy_offset);
    }

    /// Moves the scan progress to `offset` and forgets resolved origins whose every record is
    /// below it.
    pub fn advance(&mut self, offset: i64) {
        if offset <= self.half_offset {
            return;
        }
        self.half_offset = offset;
        self.resolved.retain(|_, horizon| *horizon >= offset);
    }
}

/// Parses an op record body: ASCII decimal half queue offsets, each followed by `,` (4.x wrote
/// one offset without the comma). Junk tokens are skipped.
pub fn parse_op_body(body: &[u8]) -> Vec<i64> {
    let Ok(text) = std::str::from_utf8(body) else {
        return Vec::new();
    };
    text.split(',')
        .filter_map(|t| t.trim().parse::<i64>().ok())
        .filter(|o| *o >= 0)
        .collect()
}

/// The op record body for `origin` (`"<origin>,"`).
pub fn op_body(origin: i64) -> String {
    format!("{origin},")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_then_resolve_blocks_every_later_claim() {
        let mut s = TransactionState::default();
        assert_eq!(s.claim(3, 3), Claim::Claimed);
        assert_eq!(s.claim(3, 3), Claim::InFlight);
        s.resolve(3, 3);
        assert_eq!(s.claim(3, 3), Claim::AlreadyResolved);
        assert!(s.is_resolved(3));
    }

    #[test]
    fn release_allows_a_retry() {
        let mut s = TransactionState::default();
        assert_eq!(s.claim(1, 1), Claim::Claimed);
        s.release(1);
        assert_eq!(s.claim(1, 1), Claim::Claimed);
    }

    #[test]
    fn a_copy_keeps_an_old_record_claimable_and_maps_to_its_origin() {
        let mut s = TransactionState::default();
        s.record_copy(2, 10);
        s.advance(5);
        // The original record (offset 2) is below progress but has a live copy.
        assert_eq!(s.claim(2, 2), Claim::Claimed);
        s.resolve(2, 2);
        // A commit naming the copy resolves the same transaction.
        assert_eq!(s.claim(2, 10), Claim::AlreadyResolved);
        // The horizon covers the copy, so pruning keeps it until the scan passes offset 10.
        s.advance(10);
        assert!(s.is_resolved(2));
        s.advance(11);
        assert!(!s.is_resolved(2));
        assert_eq!(s.claim(2, 10), Claim::Obsolete);
    }

    #[test]
    fn untracked_record_below_progress_is_obsolete() {
        let mut s = TransactionState::default();
        s.advance(4);
        assert_eq!(s.claim(1, 1), Claim::Obsolete);
        assert_eq!(s.claim(4, 4), Claim::Claimed);
    }

    #[test]
    fn copy_after_resolution_extends_the_horizon() {
        let mut s = TransactionState::default();
        assert_eq!(s.claim(0, 0), Claim::Claimed);
        s.resolve(0, 0);
        s.record_copy(0, 7);
        assert_eq!(s.copies_len(), 0);
        s.advance(7);
        assert!(s.is_resolved(0));
        s.advance(8);
        assert_eq!(s.resolved_len(), 0);
    }

    #[test]
    fn snapshot_round_trips() {
        let mut s = TransactionState::default();
        s.record_copy(1, 9);
        assert_eq!(s.claim(3, 3), Claim::Claimed);
        s.resolve(3, 3);
        s.advance(2);
        s.set_op_offset(5);
        let snap = s.snapshot();
        let restored = TransactionState::from_snapshot(&snap);
        assert_eq!(restored.snapshot(), snap);
        assert_eq!(snap.half_offset, 2);
        assert_eq!(snap.op_offset, 5);
        assert_eq!(snap.copies, vec![(1, 9)]);
        assert_eq!(snap.resolved, vec![(3, 3)]);
        let bytes = rmp_serde::to_vec_named(&snap).unwrap();
        let back: TransactionSnapshot = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, snap);
    }

    #[test]
    fn op_bodies_parse_both_formats() {
        assert_eq!(parse_op_body(b"12,"), vec![12]);
        assert_eq!(parse_op_body(b"1,2,3,"), vec![1, 2, 3]);
        assert_eq!(parse_op_body(b"42"), vec![42]);
        assert_eq!(parse_op_body(b"x,-1,5"), vec![5]);
        assert_eq!(parse_op_body(&[0xff, 0xfe]), Vec::<i64>::new());
        assert_eq!(parse_op_body(op_body(77).as_bytes()), vec![77]);
    }
}
