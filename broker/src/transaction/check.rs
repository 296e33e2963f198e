//! The check-back service (PROTOCOL.md §5.4): one pass over the half queue per
//! `transaction_check_interval`, from the persisted progress.
//!
//! Per half record, in queue order: resolved → skip; being resolved right now → stop (look
//! again next pass); stored after the pass began → stop; younger than the immunity
//! (`transaction_timeout`, or `CHECK_IMMUNITY_TIME_IN_SECONDS` if larger) → stop; checked
//! `transaction_check_max` times → copy to `TRANS_CHECK_MAX_TIME_TOPIC`, resolve (op record)
//! and `warn!`; else re-append a copy with `TRANSACTION_CHECK_TIMES` + 1 and
//! `TRAN_PREPARED_QUEUE_OFFSET` = origin, and send CHECK_TRANSACTION_STATE for the copy to one
//! live producer connection of its `PGROUP`. The progress and bookkeeping are persisted after
//! every pass that changed them and at shutdown.

use std::sync::Arc;

use bytes::BytesMut;
use tern_common::message::record::{decode_record, encode_record, sys_flag, RecordRef};
use tern_common::message::{
    decode_properties, encode_properties, offset_msg_id, property_key, RMQ_SYS_TRANS_HALF_TOPIC,
    TRANS_CHECK_MAX_TIME_TOPIC,
};
use tern_common::protocol::header::CheckTransactionStateRequestHeader;
use tern_common::protocol::{RemotingCommand, RequestCode};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    append_op, bump, derive_record, origin_of, TransactionService, HALF_QUEUE_ID, SCAN_BATCH,
    SCAN_BATCH_BYTES,
};
use crate::context::BrokerContext;
use crate::store::{GetMessageStatus, PutMessageStatus};
use crate::topic_config::now_ms;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct PassReport {
    /// Records looked at.
    pub(super) scanned: u64,
    /// Check-backs due (copies appended).
    pub(super) checked: u64,
    /// Records moved to TRANS_CHECK_MAX_TIME_TOPIC.
    pub(super) discarded: u64,
}

/// The named background task: a pass every `transaction_check_interval` until `shutdown`.
pub(super) async fn run_check_loop(
    ctx: BrokerContext,
    service: Arc<TransactionService>,
    shutdown: CancellationToken,
) {
    let interval = ctx.config.transaction_check_interval;
    info!(
        interval_ms = interval.as_millis() as u64,
        "transaction check service started"
    );
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
        let before = service.snapshot();
        let report = run_pass(&ctx, &service).await;
        if report.checked > 0 || report.discarded > 0 {
            debug!(?report, "transaction check pass");
        }
        if service.snapshot() != before {
            persist(&service).await;
        }
    }
    persist(&service).await;
    info!("transaction check service stopped");
}

async fn persist(service: &Arc<TransactionService>) {
    let service = service.clone();
    let result = tokio::task::spawn_blocking(move || service.persist()).await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(err)) => warn!(cause = %err, "persisting transaction state failed"),
        Err(err) => warn!(cause = %err, "transaction persist task failed"),
    }
}

/// Where a pass stops.
enum Step {
    /// Go on with the next record.
    Next,
    /// Stop this pass at this record.
    Stop,
}

/// One check pass over the half queue.
pub(super) async fn run_pass(ctx: &BrokerContext, service: &TransactionService) -> PassReport {
    let mut report = PassReport::default();
    let pass_start = now_ms();
    let store = &ctx.store;
    let end = store.max_offset_in_queue(RMQ_SYS_TRANS_HALF_TOPIC, HALF_QUEUE_ID);
    let mut offset = service.state.lock().half_offset();
    // Each round either advances `offset` by at least one unit or returns; records appended
    // during the pass lie at or beyond `end`, so the loop is bounded by the queue at start.
    'scan: while offset < end {
        let result = store.get_message(
            RMQ_SYS_TRANS_HALF_TOPIC,
            HALF_QUEUE_ID,
            offset,
            SCAN_BATCH,
            SCAN_BATCH_BYTES,
            &|_| true,
        );
        match result.status {
            GetMessageStatus::Found => {}
            GetMessageStatus::OffsetTooSmall | GetMessageStatus::OffsetFoundNull
                if result.next_begin_offset > offset =>
            {
                // Retention removed old half records; they are beyond any check.
                offset = result.next_begin_offset;
                service.state.lock().advance(offset);
                continue;
            }
            _ => break,
        }
        if result.messages.is_empty() {
            break;
        }
        for (bytes, queue_offset) in result.messages.iter().zip(&result.message_queue_offsets) {
            let queue_offset = *queue_offset;
            if queue_offset >= end {
                break 'scan;
            }
            report.scanned += 1;
            let step = match decode_record(bytes, false) {
                Ok(rec) => {
                    check_one(ctx, service, &rec, queue_offset, pass_start, &mut report).await
                }
                Err(err) => {
                    warn!(queue_offset, cause = %err, "undecodable half record skipped");
                    Step::Next
                }
            };
            match step {
                Step::Next => {
                    offset = queue_offset.saturating_add(1);
                    service.state.lock().advance(offset);
                }
                Step::Stop => break 'scan,
            }
        }
    }
    let op_end = store.max_offset_in_queue(super::RMQ_SYS_TRANS_OP_HALF_TOPIC, HALF_QUEUE_ID);
    service.state.lock().set_op_offset(op_end);
    report
}

async fn check_one(
    ctx: &BrokerContext,
    service: &TransactionService,
    rec: &RecordRef<'_>,
    queue_offset: i64,
    pass_start: i64,
    report: &mut PassReport,
) -> Step {
    let origin = origin_of(rec, queue_offset);
    {
        let state = service.state.lock();
        if state.is_resolved(origin) {
            return Step::Next;
        }
        if state.is_in_flight(origin) {
            return Step::Stop;
        }
    }
    if rec.store_timestamp > pass_start {
        return Step::Stop;
    }
    let timeout_ms = i64::try_from(ctx.config.transaction_timeout.as_millis()).unwrap_or(i64::MAX);
    let immunity_ms = rec
        .property(property_key::CHECK_IMMUNITY_TIME_IN_SECONDS)
        .and_then(|v| v.trim().parse::<i64>().ok())
        .map_or(timeout_ms, |s| s.saturating_mul(1000).max(timeout_ms));
    if now_ms().saturating_sub(rec.born_timestamp) <= immunity_ms {
        return Step::Stop;
    }
    let check_times: i32 = rec
        .property(property_key::TRANSACTION_CHECK_TIMES)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    if check_times >= ctx.config.transaction_check_max {
        return discard(ctx, service, rec, origin, queue_offset, check_times, report).await;
    }

    // Re-append a copy with the check count and origin, then ask about the copy.
    let mut props = decode_properties(rec.properties);
    props.insert(
        property_key::TRANSACTION_CHECK_TIMES.into(),
        (check_times + 1).to_string(),
    );
    props.insert(
        property_key::TRAN_PREPARED_QUEUE_OFFSET.into(),
        origin.to_string(),
    );
    props.insert(property_key::WAIT.into(), "false".into());
    let copy = derive_record(
        rec,
        RMQ_SYS_TRANS_HALF_TOPIC,
        HALF_QUEUE_ID,
        encode_properties(&props),
        sys_flag::reset_transaction_value(rec.sys_flag, sys_flag::TRANSACTION_NOT_TYPE),
    );
    let result = ctx.store.put_message(copy.clone()).await;
    let append = match (result.status, result.append) {
        (PutMessageStatus::PutOk | PutMessageStatus::FlushDiskTimeout, Some(append)) => append,
        (status, _) => {
            warn!(
                origin,
                ?status,
                "re-appending a half message for check-back failed"
            );
            return Step::Stop;
        }
    };
    service
        .state
        .lock()
        .record_copy(origin, append.queue_offset);
    report.checked += 1;
    send_check(ctx, service, rec, &copy, &append, origin);
    Step::Next
}

/// Sends CHECK_TRANSACTION_STATE for the copy just appended.
fn send_check(
    ctx: &BrokerContext,
    service: &TransactionService,
    rec: &RecordRef<'_>,
    copy: &tern_common::message::record::RecordInput,
    append: &crate::store::AppendResult,
    origin: i64,
) {
    let Some(group) = rec.property(property_key::PGROUP) else {
        warn!(origin, "half message without PGROUP; no producer to check");
        return;
    };
    let Some(conn) = ctx.clients.pick_producer_channel(group) else {
        bump(&service.stats.checks_without_producer);
        debug!(origin, group, "no live producer for check-back");
        return;
    };
    // Body: the copy re-encoded with its real topic and queue (§5.4).
    let mut body_record = copy.clone();
    if let Some(topic) = rec.property(property_key::REAL_TOPIC) {
        body_record.topic = topic.to_string();
    }
    if let Some(qid) = rec
        .property(property_key::REAL_QID)
        .and_then(|q| q.trim().parse().ok())
    {
        body_record.queue_id = qid;
    }
    let mut body = BytesMut::new();
    if let Err(err) = encode_record(
        &body_record,
        append.queue_offset,
        append.phy_offset,
        append.store_timestamp,
        &mut body,
    ) {
        warn!(origin, cause = %err, "cannot encode check-back body");
        return;
    }
    let uniq = rec.uniq_key().map(str::to_string);
    let header = CheckTransactionStateRequestHeader {
        topic: Some(RMQ_SYS_TRANS_HALF_TOPIC.to_string()),
        tran_state_table_offset: append.queue_offset,
        commit_log_offset: append.phy_offset,
        msg_id: uniq.clone(),
        transaction_id: rec
            .property(property_key::TRANSACTION_ID)
            .map(str::to_string)
            .or(uniq),
        offset_msg_id: Some(offset_msg_id(ctx.store_host, append.phy_offset)),
        broker_name: Some(ctx.config.broker_name.clone()),
    };
    let request = RemotingCommand::request(RequestCode::CheckTransactionState, &header)
        .with_body(body.freeze());
    match conn.send_oneway(request) {
        Ok(()) => bump(&service.stats.checks_sent),
        Err(err) => debug!(origin, group, cause = %err, "check-back send failed"),
    }
}

/// Moves a half message checked too often to TRANS_CHECK_MAX_TIME_TOPIC and resolves it.
async fn discard(
    ctx: &BrokerContext,
    service: &TransactionService,
    rec: &RecordRef<'_>,
    origin: i64,
    queue_offset: i64,
    check_times: i32,
    report: &mut PassReport,
) -> Step {
    if service.state.lock().claim(origin, queue_offset) != super::Claim::Claimed {
        return Step::Next;
    }
    let input = derive_record(
        rec,
        TRANS_CHECK_MAX_TIME_TOPIC,
        0,
        rec.properties.to_string(),
        sys_flag::reset_transaction_value(rec.sys_flag, sys_flag::TRANSACTION_NOT_TYPE),
    );
    let result = ctx.store.put_message(input).await;
    if !matches!(
        result.status,
        PutMessageStatus::PutOk | PutMessageStatus::FlushDiskTimeout
    ) {
        service.state.lock().release(origin);
        warn!(origin, status = ?result.status, "moving a half message to TRANS_CHECK_MAX_TIME_TOPIC failed");
        return Step::Stop;
    }
    service.state.lock().resolve(origin, queue_offset);
    append_op(ctx, origin).await;
    bump(&service.stats.discarded);
    report.discarded += 1;
    warn!(
        origin,
        check_times,
        group = rec.property(property_key::PGROUP).unwrap_or_default(),
        uniq_key = rec.uniq_key().unwrap_or_default(),
        "half message checked too often; moved to TRANS_CHECK_MAX_TIME_TOPIC"
    );
    Step::Next
}
