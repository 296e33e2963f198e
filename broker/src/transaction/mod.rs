//! Transactional messages: END_TRANSACTION and the check-back service (PROTOCOL.md §5).
//!
//! Half messages are stored by the send path (`processor::send`, §5.2) in
//! `RMQ_SYS_TRANS_HALF_TOPIC` queue 0 with `REAL_TOPIC`/`REAL_QID`. This module resolves them:
//!
//! - END_TRANSACTION (37, [`handle_end_transaction`]): validates the named half record (§5.3),
//!   then **commit** appends the real message (REAL_TOPIC/REAL_QID restored, sysFlag COMMIT,
//!   PREPARED TRANSACTION OFFSET = half record's CommitLog offset) and an op record
//!   (`RMQ_SYS_TRANS_OP_HALF_TOPIC`, tag `d`, body `"<origin>,"`); **rollback** appends only
//!   the op record.
//! - The check-back service ([`start`]) scans the half queue every
//!   `transaction_check_interval` and asks a producer of the message's group
//!   (CHECK_TRANSACTION_STATE 39, oneway) about each half message older than
//!   `transaction_timeout`, re-appending a copy with `TRANSACTION_CHECK_TIMES` + 1 first; after
//!   `transaction_check_max` checks the message moves to `TRANS_CHECK_MAX_TIME_TOPIC`.
//!
//! Exactly-once commit: a transaction is identified by its origin (see [`state`]); a claim in
//! [`TransactionState`] serialises concurrent END_TRANSACTIONs (a producer retry racing a
//! check-back answer), resolved origins are remembered (and persisted with the scan progress
//! in `<store>/config/transaction`; resolutions after the last snapshot are replayed from the
//! op queue at start). A transaction whose *origin* half record was written before this broker
//! process started may have been committed just before a crash, before its op record landed —
//! whichever record the END_TRANSACTION names, including a check-back copy appended after the
//! restart: for those the commit first looks for an existing COMMIT record of the same
//! `UNIQ_KEY` in the real topic's index.
//!
//! # Layout
//! - [`state`]: resolved/copied/in-flight bookkeeping and its snapshot (pure, unit-tested).
//! - `end`: the END_TRANSACTION processor.
//! - `check`: one check-back pass and the background loop.

mod check;
mod end;
pub mod state;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tern_common::message::record::{decode_record, sys_flag, RecordInput, RecordRef};
use tern_common::message::{
    encode_properties, new_uniq_id, property_key, RMQ_SYS_TRANS_HALF_TOPIC,
    RMQ_SYS_TRANS_OP_HALF_TOPIC,
};
use tern_common::protocol::RemotingCommand;
use tern_common::remoting::Connection;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::context::BrokerContext;
use crate::error::ProcessorError;
use crate::store::{MessageStore, PutMessageStatus};

pub use state::{Claim, TransactionSnapshot, TransactionState};

/// File name of the transaction snapshot under `<store>/config/`.
pub const TRANSACTION_SNAPSHOT_FILE: &str = "transaction";

/// Queue id of the half and op queues (both topics have one queue).
pub const HALF_QUEUE_ID: i32 = 0;

/// Tag of op records (`TransactionalMessageUtil.REMOVE_TAG`).
pub const OP_TAG: &str = "d";

/// Half records read per store call during a scan.
const SCAN_BATCH: i32 = 32;

/// Byte budget per store read during a scan.
const SCAN_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Counters of the transaction service (exposed for runtime info and tests).
#[derive(Debug, Default)]
pub struct TransactionStats {
    /// Committed transactions (real message appended).
    pub commits: AtomicU64,
    /// Rolled-back transactions.
    pub rollbacks: AtomicU64,
    /// END_TRANSACTIONs ignored because the transaction was already resolved.
    pub duplicates: AtomicU64,
    /// CHECK_TRANSACTION_STATE requests sent.
    pub checks_sent: AtomicU64,
    /// Checks due but with no live producer connection.
    pub checks_without_producer: AtomicU64,
    /// Half messages moved to `TRANS_CHECK_MAX_TIME_TOPIC`.
    pub discarded: AtomicU64,
}

/// The transaction service's state, installed into [`BrokerContext::transaction`] by [`start`].
#[derive(Debug)]
pub struct TransactionService {
    state: Mutex<TransactionState>,
    snapshot_path: PathBuf,
    /// CommitLog end when this process opened the store: a transaction whose origin half
    /// record lies below it may have been committed by a previous process without an op record.
    start_phy_offset: i64,
    /// Serialises snapshot writes (from the check loop and shutdown).
    persist_lock: Mutex<()>,
    /// Counters.
    pub stats: TransactionStats,
}

impl TransactionService {
    /// Loads the snapshot and replays the op queue from its `op_offset`.
    ///
    /// Blocks until the store dispatched what recovery found (bounded by a 10 s wait), so the
    /// op queue read here is complete.
    ///
    /// # Errors
    /// I/O errors reading the snapshot (a missing file is an empty state).
    pub fn load(store: &MessageStore, snapshot_path: PathBuf) -> std::io::Result<Self> {
        let start_phy_offset = store.max_phy_offset();
        if !store.wait_dispatched(start_phy_offset, Duration::from_secs(10)) {
            warn!(
                start_phy_offset,
                "dispatch did not catch up before loading transactions"
            );
        }
        let snapshot: TransactionSnapshot =
            crate::snapshot::load(&snapshot_path)?.unwrap_or_default();
        let mut state = TransactionState::from_snapshot(&snapshot);
        let start_half_offset = store.max_offset_in_queue(RMQ_SYS_TRANS_HALF_TOPIC, HALF_QUEUE_ID);
        let replayed = replay_op_queue(store, &mut state, start_half_offset);
        info!(
            start_phy_offset,
            start_half_offset,
            half_offset = state.half_offset(),
            op_offset = state.op_offset(),
            resolved = state.resolved_len(),
            replayed,
            "transaction state loaded"
        );
        Ok(TransactionService {
            state: Mutex::new(state),
            snapshot_path,
            start_phy_offset,
            persist_lock: Mutex::new(()),
            stats: TransactionStats::default(),
        })
    }

    /// A copy of the current bookkeeping (for tests and runtime info).
    pub fn snapshot(&self) -> TransactionSnapshot {
        self.state.lock().snapshot()
    }

    /// Writes the snapshot atomically.
    ///
    /// # Errors
    /// I/O errors of the write.
    pub fn persist(&self) -> std::io::Result<()> {
        let _guard = self.persist_lock.lock();
        let snapshot = self.state.lock().snapshot();
        crate::snapshot::save(&self.snapshot_path, &snapshot)
    }
}

/// Reads op records from the state's op offset to the end of the op queue and marks their
/// origins resolved; returns how many offsets it applied.
///
/// The copies a previous process appended after its last snapshot are unknown here, so a
/// replayed resolution gets the horizon `start_half_offset - 1` (the last half record at
/// load): otherwise the scan would prune the origin before reaching such a copy and check the
/// already resolved transaction again.
fn replay_op_queue(
    store: &MessageStore,
    state: &mut TransactionState,
    start_half_offset: i64,
) -> usize {
    let horizon = start_half_offset.saturating_sub(1);
    let mut applied = 0;
    let max = store.max_offset_in_queue(RMQ_SYS_TRANS_OP_HALF_TOPIC, HALF_QUEUE_ID);
    let mut offset = state
        .op_offset()
        .max(store.min_offset_in_queue(RMQ_SYS_TRANS_OP_HALF_TOPIC, HALF_QUEUE_ID));
    // Every round advances `offset` by at least one unit or stops, so this ends at `max`.
    while offset < max {
        let result = store.get_message(
            RMQ_SYS_TRANS_OP_HALF_TOPIC,
            HALF_QUEUE_ID,
            offset,
            SCAN_BATCH,
            SCAN_BATCH_BYTES,
            &|_| true,
        );
        if result.messages.is_empty() {
            if result.next_begin_offset > offset {
                offset = result.next_begin_offset;
                continue;
            }
            break;
        }
        for (bytes, queue_offset) in result.messages.iter().zip(&result.message_queue_offsets) {
            if let Ok(rec) = decode_record(bytes, false) {
                for origin in state::parse_op_body(rec.body) {
                    state.resolve(origin, horizon.max(origin));
                    applied += 1;
                }
            }
            offset = offset.max(queue_offset.saturating_add(1));
        }
    }
    state.set_op_offset(offset);
    applied
}

/// Starts the transaction service: loads its state, installs it into
/// [`BrokerContext::transaction`] and spawns the named check-back task in `tasks`; the task
/// persists the state and stops on `shutdown`.
pub fn start(ctx: &BrokerContext, tasks: &mut JoinSet<()>, shutdown: CancellationToken) {
    let path = ctx.config.config_dir().join(TRANSACTION_SNAPSHOT_FILE);
    let service = match TransactionService::load(&ctx.store, path) {
        Ok(service) => Arc::new(service),
        Err(err) => {
            tracing::error!(cause = %err, "cannot load transaction state; transactions disabled");
            return;
        }
    };
    if ctx.transaction.set(service.clone()).is_err() {
        warn!("transaction service already started");
        return;
    }
    let ctx = ctx.clone();
    tasks.spawn(check::run_check_loop(ctx, service, shutdown));
}

/// END_TRANSACTION (37), PROTOCOL.md §5.3. Oneway requests are never answered (the dispatcher
/// drops the response); a request expecting an answer gets SUCCESS or the refusal.
///
/// # Errors
/// Header errors; [`ProcessorError::Rejected`] with SYSTEM_ERROR when the half record is
/// missing or does not match, ILLEGAL_OPERATION past the immunity window, or the store's
/// refusal of the commit.
pub async fn handle_end_transaction(
    ctx: &BrokerContext,
    conn: &Connection,
    request: RemotingCommand,
) -> Result<Option<RemotingCommand>, ProcessorError> {
    end::handle(ctx, conn, request).await
}

/// The transaction service, or SYSTEM_ERROR if it is not running.
fn service(ctx: &BrokerContext) -> Result<&Arc<TransactionService>, ProcessorError> {
    ctx.transaction.get().ok_or_else(|| {
        ProcessorError::rejected(
            tern_common::protocol::ResponseCode::SystemError,
            "transaction service not available",
        )
    })
}

/// The origin of the half record `rec` stored at half queue offset `queue_offset`: the
/// `TRAN_PREPARED_QUEUE_OFFSET` property of a check-back copy, else its own offset. A client
/// could set that property itself, so it is trusted only on records the check service wrote
/// (they also carry `TRANSACTION_CHECK_TIMES`) and only when it points backwards.
pub fn origin_of(rec: &RecordRef<'_>, queue_offset: i64) -> i64 {
    let copied = rec
        .property(property_key::TRANSACTION_CHECK_TIMES)
        .is_some();
    match rec
        .property(property_key::TRAN_PREPARED_QUEUE_OFFSET)
        .map(str::parse::<i64>)
    {
        Some(Ok(origin)) if copied && (0..=queue_offset).contains(&origin) => origin,
        _ => queue_offset,
    }
}

/// A record with the content of `rec` but the given topic, queue, properties and sysFlag.
fn derive_record(
    rec: &RecordRef<'_>,
    topic: &str,
    queue_id: i32,
    properties: String,
    sys_flag: i32,
) -> RecordInput {
    RecordInput {
        topic: topic.to_string(),
        queue_id,
        flag: rec.flag,
        body: Bytes::copy_from_slice(rec.body),
        properties,
        sys_flag,
        born_timestamp: rec.born_timestamp,
        born_host: rec.born_host,
        store_host: rec.store_host,
        reconsume_times: rec.reconsume_times,
        prepared_transaction_offset: 0,
    }
}

/// Appends the op record resolving `origin`. A failure is logged: the transaction is already
/// resolved in memory; after a restart the commit index check covers the missing op.
async fn append_op(ctx: &BrokerContext, origin: i64) -> bool {
    let mut props = std::collections::BTreeMap::new();
    props.insert(property_key::TAGS.to_string(), OP_TAG.to_string());
    props.insert(property_key::WAIT.to_string(), "false".to_string());
    props.insert(property_key::UNIQ_KEY.to_string(), new_uniq_id());
    let input = RecordInput {
        topic: RMQ_SYS_TRANS_OP_HALF_TOPIC.to_string(),
        queue_id: HALF_QUEUE_ID,
        flag: 0,
        body: Bytes::from(state::op_body(origin)),
        properties: encode_properties(&props),
        sys_flag: sys_flag::TRANSACTION_NOT_TYPE,
        born_timestamp: crate::topic_config::now_ms(),
        born_host: ctx.store_host,
        store_host: ctx.store_host,
        reconsume_times: 0,
        prepared_transaction_offset: 0,
    };
    let result = ctx.store.put_message(input).await;
    let ok = matches!(
        result.status,
        PutMessageStatus::PutOk | PutMessageStatus::FlushDiskTimeout
    );
    if !ok {
        warn!(origin, status = ?result.status, "op record append failed");
    }
    ok
}

/// Counter increment shorthand.
fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Whether `topic` is the half topic.
fn is_half_topic(topic: &str) -> bool {
    topic == RMQ_SYS_TRANS_HALF_TOPIC
}
