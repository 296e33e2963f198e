//! END_TRANSACTION (37): validation (PROTOCOL.md §5.3 steps 1–3), commit and rollback (steps
//! 4–6), guarded by the claim of [`super::state`] so a transaction is resolved once.

use tern_common::message::record::{decode_record, sys_flag, RecordRef};
use tern_common::message::{
    decode_properties, encode_properties, property_key, RMQ_SYS_TRANS_HALF_TOPIC,
};
use tern_common::protocol::header::EndTransactionRequestHeader;
use tern_common::protocol::{RemotingCommand, ResponseCode};
use tern_common::remoting::Connection;
use tracing::{debug, warn};

use super::{
    append_op, bump, derive_record, is_half_topic, origin_of, service, Claim, TransactionService,
    HALF_QUEUE_ID,
};
use crate::context::BrokerContext;
use crate::error::ProcessorError;
use crate::processor::{reject, ProcessorResult};
use crate::store::PutMessageStatus;

/// Properties of a half record that do not belong on the committed message.
const STRIPPED_ON_COMMIT: [&str; 4] = [
    property_key::REAL_TOPIC,
    property_key::REAL_QID,
    property_key::TRAN_MSG,
    property_key::TRAN_PREPARED_QUEUE_OFFSET,
];

/// Index entries inspected when looking for an earlier commit of the same `UNIQ_KEY`.
const COMMIT_LOOKUP_MAX: usize = 64;

pub(super) async fn handle(
    ctx: &BrokerContext,
    conn: &Connection,
    request: RemotingCommand,
) -> ProcessorResult {
    let header: EndTransactionRequestHeader = request.decode_header()?;
    let commit = match header.commit_or_rollback {
        sys_flag::TRANSACTION_COMMIT_TYPE => true,
        sys_flag::TRANSACTION_ROLLBACK_TYPE => false,
        other => {
            // Unknown (0) or unexpected: RocketMQ does nothing and answers nothing.
            debug!(
                state = other,
                from_check = header.from_transaction_check.unwrap_or(false),
                peer = %conn.peer_addr(),
                "end transaction with state unknown"
            );
            return Ok(None);
        }
    };
    let service = service(ctx)?;
    let bytes = ctx
        .store
        .read_record(header.commit_log_offset)
        .ok_or_else(|| {
            reject(
                ResponseCode::SystemError,
                "Find prepared transaction message failed",
            )
        })?;
    let rec = decode_record(&bytes, false).map_err(|_| {
        reject(
            ResponseCode::SystemError,
            "Find prepared transaction message failed",
        )
    })?;
    validate(&header, &rec)?;

    let origin = origin_of(&rec, rec.queue_offset);
    let claim = service.state.lock().claim(origin, rec.queue_offset);
    match claim {
        Claim::Claimed => {}
        Claim::AlreadyResolved | Claim::InFlight | Claim::Obsolete => {
            bump(&service.stats.duplicates);
            debug!(
                origin,
                ?claim,
                commit,
                "end transaction for a resolved transaction ignored"
            );
            return Ok(Some(RemotingCommand::response_to(
                &request,
                ResponseCode::Success,
            )));
        }
    }
    if commit {
        if let Err(err) = append_commit(ctx, service, &rec, origin).await {
            service.state.lock().release(origin);
            return Err(err);
        }
        bump(&service.stats.commits);
    } else {
        bump(&service.stats.rollbacks);
    }
    service.state.lock().resolve(origin, rec.queue_offset);
    append_op(ctx, origin).await;
    debug!(origin, commit, "transaction resolved");
    Ok(Some(RemotingCommand::response_to(
        &request,
        ResponseCode::Success,
    )))
}

/// §5.3 steps 2–3: the record is a half message of this producer group, at the offsets the
/// request names, and (5.x) not past its immunity window unless answering a check.
fn validate(
    header: &EndTransactionRequestHeader,
    rec: &RecordRef<'_>,
) -> Result<(), ProcessorError> {
    let mismatch = |what: &str| reject(ResponseCode::SystemError, format!("The {what} wrong"));
    if !is_half_topic(rec.topic) {
        return Err(reject(
            ResponseCode::SystemError,
            "Find prepared transaction message failed",
        ));
    }
    if rec.property(property_key::PGROUP) != Some(header.producer_group.as_str()) {
        return Err(mismatch("producer group"));
    }
    if rec.queue_offset != header.tran_state_table_offset {
        return Err(mismatch("transaction state table offset"));
    }
    if rec.phy_offset != header.commit_log_offset {
        return Err(mismatch("commit log offset"));
    }
    let from_check = header.from_transaction_check.unwrap_or(false);
    if !from_check {
        let immunity_s = rec
            .property(property_key::CHECK_IMMUNITY_TIME_IN_SECONDS)
            .and_then(|v| v.trim().parse::<i64>().ok());
        if let Some(seconds) = immunity_s.filter(|s| *s > 0) {
            let deadline = rec
                .born_timestamp
                .saturating_add(seconds.saturating_mul(1000));
            if crate::topic_config::now_ms() > deadline {
                return Err(reject(
                    ResponseCode::IllegalOperation,
                    "the transaction immunity window passed; waiting for a check-back",
                ));
            }
        }
    }
    Ok(())
}

/// §5.3 step 4: appends the committed message unless a previous broker process already did.
///
/// The in-memory state only knows resolutions of this process and those whose op record
/// survived; a previous process may have appended the COMMIT and crashed before its op record.
/// So whenever the transaction's *origin* half record (not the record named, which may be a
/// check-back copy appended after the restart) was written before this process started, the
/// key index is asked for a COMMIT of the same `UNIQ_KEY` first. Refuses (SYSTEM_ERROR; the
/// check-back asks again) while the dispatch has not indexed everything the previous process
/// wrote.
async fn append_commit(
    ctx: &BrokerContext,
    service: &TransactionService,
    rec: &RecordRef<'_>,
    origin: i64,
) -> Result<(), ProcessorError> {
    let real_topic = rec
        .property(property_key::REAL_TOPIC)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| reject(ResponseCode::SystemError, "half message without REAL_TOPIC"))?;
    let real_qid: i32 = rec
        .property(property_key::REAL_QID)
        .and_then(|q| q.trim().parse().ok())
        .filter(|q| *q >= 0)
        .ok_or_else(|| reject(ResponseCode::SystemError, "half message without REAL_QID"))?;
    let origin_phy = if origin == rec.queue_offset {
        rec.phy_offset
    } else {
        origin_phy_offset(ctx, origin)
    };
    if origin_phy < service.start_phy_offset {
        if ctx.store.dispatched_phy_offset() < service.start_phy_offset {
            return Err(reject(
                ResponseCode::SystemError,
                "the index is not caught up after the restart; try again",
            ));
        }
        if already_committed(ctx, rec, real_topic) {
            warn!(
                origin,
                real_topic,
                uniq_key = rec.uniq_key().unwrap_or_default(),
                named_queue_offset = rec.queue_offset,
                named_record_is_new = rec.phy_offset >= service.start_phy_offset,
                "commit found from before the restart; not appending it again"
            );
            return Ok(());
        }
    }
    let mut props = decode_properties(rec.properties);
    for key in STRIPPED_ON_COMMIT {
        props.remove(key);
    }
    let flag = sys_flag::reset_transaction_value(rec.sys_flag, sys_flag::TRANSACTION_COMMIT_TYPE);
    // A committed message with a delay level is scheduled like a send (PROTOCOL.md §6.2).
    let delay_level: i64 = props
        .get(property_key::DELAY)
        .and_then(|d| d.trim().parse().ok())
        .unwrap_or(0);
    let (topic, queue_id) = if delay_level > 0 {
        crate::processor::send::park_for_delay_level(
            ctx,
            real_topic,
            real_qid,
            delay_level,
            &mut props,
        )
    } else {
        (real_topic.to_string(), real_qid)
    };
    let mut input = derive_record(rec, &topic, queue_id, encode_properties(&props), flag);
    input.prepared_transaction_offset = rec.phy_offset;
    let result = ctx.store.put_message(input).await;
    match result.status {
        PutMessageStatus::PutOk | PutMessageStatus::FlushDiskTimeout => Ok(()),
        PutMessageStatus::MessageIllegal | PutMessageStatus::PropertiesSizeExceeded => Err(reject(
            ResponseCode::MessageIllegal,
            "the committed message is illegal",
        )),
        PutMessageStatus::ServiceNotAvailable => Err(reject(
            ResponseCode::ServiceNotAvailable,
            "service not available now",
        )),
        other => Err(reject(
            ResponseCode::SystemError,
            format!("commit append failed: {other:?}"),
        )),
    }
}

/// CommitLog offset of the half record at half queue offset `origin`, or `i64::MIN` when it is
/// gone (retention) or unreadable, which makes the caller treat it as written by an earlier
/// process and check the index (the safe side).
fn origin_phy_offset(ctx: &BrokerContext, origin: i64) -> i64 {
    let result = ctx.store.get_message(
        RMQ_SYS_TRANS_HALF_TOPIC,
        HALF_QUEUE_ID,
        origin,
        1,
        super::SCAN_BATCH_BYTES,
        &|_| true,
    );
    result
        .messages
        .iter()
        .zip(&result.message_queue_offsets)
        .find(|(_, q)| **q == origin)
        .and_then(|(bytes, _)| decode_record(bytes, false).ok().map(|r| r.phy_offset))
        .unwrap_or(i64::MIN)
}

/// Whether a COMMIT record of this transaction (same `UNIQ_KEY` and producer group) is in
/// `real_topic` already, found through the key index.
fn already_committed(ctx: &BrokerContext, rec: &RecordRef<'_>, real_topic: &str) -> bool {
    let Some(uniq) = rec.uniq_key() else {
        return false;
    };
    let found = ctx
        .store
        .query_message(real_topic, uniq, COMMIT_LOOKUP_MAX, 0, i64::MAX);
    found.messages.iter().any(|bytes| {
        decode_record(bytes, false).is_ok_and(|m| {
            m.topic == real_topic
                && m.transaction_type() == sys_flag::TRANSACTION_COMMIT_TYPE
                && m.uniq_key() == Some(uniq)
                && m.property(property_key::PGROUP) == rec.property(property_key::PGROUP)
        })
    })
}
