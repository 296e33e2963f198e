//! PULL_MESSAGE (11) and LITE_PULL_MESSAGE (361), PROTOCOL.md §2.4, §7 and §8.
//!
//! Validation follows Java's order (group, topic, queue id, subscription). The store result
//! maps to 0/19/20/21 per the §2.4 table, and every such response carries
//! suggestWhichBrokerId, nextBeginOffset, minOffset and maxOffset. A 19 with the SUSPEND bit
//! on first processing is parked in [`crate::long_polling`] instead of answered; the parked
//! pull is later re-executed by [`wake`] with suspension disallowed and without committing
//! the piggy-backed offset again.
//!
//! SQL92 subscriptions (header bit 0x4 with expressionType SQL92, or the registered
//! subscription) are compiled through [`crate::filter`] (SUBSCRIPTION_PARSE_FAILED if they do
//! not compile, SYSTEM_ERROR when `enable_property_filter` is off). Their pulls skip the
//! tags-code pre-filter, read the records and keep those whose properties the expression
//! selects. A parked SQL92 pull is woken by every arrival on its queue and re-checked: the
//! re-execution evaluates the new records and answers PULL_RETRY_IMMEDIATELY when none match.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tern_common::filter::{self, Expression};
use tern_common::message::tag::java_hash_code;
use tern_common::protocol::body::SubscriptionData;
use tern_common::protocol::header::{PullMessageRequestHeader, PullMessageResponseHeader};
use tern_common::protocol::{RemotingCommand, ResponseCode};
use tern_common::remoting::Connection;
use tern_common::route::perm;
use tracing::debug;

use super::{reject, ProcessorResult};
use crate::context::BrokerContext;
use crate::dispatch::error_response;
use crate::error::ProcessorError;
use crate::long_polling::HeldPull;
use crate::store::{GetMessageResult, GetMessageStatus};

/// sysFlag bit: commit the piggy-backed `commitOffset`.
pub const FLAG_COMMIT_OFFSET: i32 = 0x1;
/// sysFlag bit: the broker may hold the pull (long polling).
pub const FLAG_SUSPEND: i32 = 0x2;
/// sysFlag bit: the subscription travels in the header.
pub const FLAG_SUBSCRIPTION: i32 = 0x4;

/// Most messages one pull returns (Java's `maxTransferCountOnMessageInMemory`).
const MAX_TRANSFER_COUNT: i32 = 32;
/// Most bytes one pull returns (Java's `maxTransferBytesOnMessageInMemory`); at least one
/// message is always returned.
const MAX_TRANSFER_BYTES: usize = 256 * 1024;
/// Upper bound of a hold time, whatever the client asks (clients wait 30 s).
const MAX_SUSPEND: Duration = Duration::from_secs(60);

/// Handles codes 11 and 361 (first processing: suspension and offset commit allowed).
///
/// # Errors
/// Header errors and the refusals of the §2.4 validation order.
pub async fn handle_pull_message(
    ctx: &BrokerContext,
    conn: &Connection,
    request: RemotingCommand,
) -> ProcessorResult {
    process(ctx, conn, request, true)
}

/// Re-executes a parked pull and sends its answer on its connection (in a new task).
pub fn wake(ctx: &BrokerContext, held: HeldPull) {
    let ctx = ctx.clone();
    tokio::spawn(async move { answer_now(&ctx, held) });
}

/// Re-executes a parked pull without suspension and queues its answer (messages, or
/// PULL_NOT_FOUND / PULL_RETRY_IMMEDIATELY with the next offset) on its connection before
/// returning, counting its messages in the per-topic metrics. Used by [`wake`] and at
/// shutdown, where every parked pull is answered while its connection can still carry the
/// answer, so consumers re-pull at once (from another broker
/// or after the restart) instead of waiting for their request timeout.
pub fn answer_now(ctx: &BrokerContext, held: HeldPull) {
    let template = RemotingCommand {
        code: held.request.code,
        opaque: held.request.opaque,
        serialize_type: held.request.serialize_type,
        ..Default::default()
    };
    let topic = held.request.ext("topic").map(str::to_string);
    let response = match process(ctx, &held.conn, held.request, false) {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(err) => error_response(&template, &err),
    };
    if let Some(topic) = &topic {
        ctx.metrics.observe_pull_answer(topic, &response);
    }
    if let Err(err) = held.conn.send_response(response) {
        debug!(conn = held.conn.id(), cause = %err, "held pull answer not delivered");
    }
}

/// The tag code filter of a subscription: `None` accepts everything.
fn code_filter(sub: &SubscriptionData) -> Option<BTreeSet<i64>> {
    let s = sub.sub_string.trim();
    if s.is_empty() || s == "*" {
        return None;
    }
    let mut codes: BTreeSet<i64> = sub.code_set.iter().map(|c| i64::from(*c)).collect();
    if codes.is_empty() {
        codes = sub
            .tags_set
            .iter()
            .map(|t| i64::from(java_hash_code(t)))
            .collect();
    }
    if codes.is_empty() {
        // An expression without usable tags: parse it ourselves (`TagA || TagB`).
        codes = s
            .split("||")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| i64::from(java_hash_code(t)))
            .collect();
    }
    Some(codes)
}

/// Java's filter compares the low 32 bits of the stored tags code.
fn matches(filter: Option<&BTreeSet<i64>>, tags_code: i64) -> bool {
    filter.is_none_or(|codes| codes.contains(&i64::from(tags_code as i32)))
}

fn is_sql92(expression_type: Option<&str>) -> bool {
    expression_type.is_some_and(filter::is_sql92)
}

/// How one pull selects messages.
enum PullFilter {
    /// Tag codes the ConsumeQueue entries must carry; `None` accepts everything.
    Tags(Option<BTreeSet<i64>>),
    /// A compiled SQL92 expression evaluated against each record's properties.
    Sql(Arc<Expression>),
}

/// The compiled SQL92 expression of a pull, refusing it when property filtering is off.
fn sql_filter(ctx: &BrokerContext, expression: &str) -> Result<Arc<Expression>, ProcessorError> {
    if !ctx.config.enable_property_filter {
        return Err(reject(
            ResponseCode::SystemError,
            "The broker does not support consumer to filter message by SQL92",
        ));
    }
    crate::filter::compile(expression).map_err(|err| {
        reject(
            ResponseCode::SubscriptionParseFailed,
            format!("parse the consumer's subscription failed: {err}"),
        )
    })
}

/// Keeps the read records the expression selects. Records scanned but not selected still
/// advance `nextBeginOffset`; when none is left the status becomes NO_MATCHED_MESSAGE
/// (answered PULL_RETRY_IMMEDIATELY), as RocketMQ's `getMessage` reports it.
fn select_by_properties(result: &mut GetMessageResult, expression: &Expression) {
    if result.status != GetMessageStatus::Found {
        return;
    }
    let messages = std::mem::take(&mut result.messages);
    let offsets = std::mem::take(&mut result.message_queue_offsets);
    for (i, record) in messages.into_iter().enumerate() {
        if crate::filter::record_matches(expression, &record) {
            result.messages.push(record);
            if let Some(offset) = offsets.get(i) {
                result.message_queue_offsets.push(*offset);
            }
        }
    }
    if result.messages.is_empty() {
        result.status = GetMessageStatus::NoMatchedMessage;
    }
}

/// The pull logic. `allow_suspend` is true on first processing only.
fn process(
    ctx: &BrokerContext,
    conn: &Connection,
    request: RemotingCommand,
    allow_suspend: bool,
) -> ProcessorResult {
    let header: PullMessageRequestHeader = request.decode_header()?;
    let group_config = ctx
        .groups
        .find_or_create(&header.consumer_group)?
        .ok_or_else(|| {
            reject(
                ResponseCode::SubscriptionGroupNotExist,
                format!(
                    "subscription group [{}] does not exist",
                    header.consumer_group
                ),
            )
        })?;
    if !group_config.consume_enable {
        return Err(reject(
            ResponseCode::NoPermission,
            format!(
                "subscription group no permission, {}",
                header.consumer_group
            ),
        ));
    }
    let topic_config = ctx.topics.get(&header.topic).ok_or_else(|| {
        reject(
            ResponseCode::TopicNotExist,
            format!("topic[{}] not exist, apply first please!", header.topic),
        )
    })?;
    if !perm::is_readable(topic_config.perm) {
        return Err(reject(
            ResponseCode::NoPermission,
            format!("the topic[{}] pulling message is forbidden", header.topic),
        ));
    }
    if header.queue_id < 0 || header.queue_id >= topic_config.read_queue_nums {
        return Err(reject(
            ResponseCode::InvalidParameter,
            format!(
                "queueId[{}] is illegal, topic:[{}] topicConfig.readQueueNums:[{}] consumer:[{}]",
                header.queue_id,
                header.topic,
                topic_config.read_queue_nums,
                conn.peer_addr()
            ),
        ));
    }
    let filter = if header.sys_flag & FLAG_SUBSCRIPTION != 0 {
        let expression = header.subscription.clone().unwrap_or_else(|| "*".into());
        if is_sql92(header.expression_type.as_deref()) {
            PullFilter::Sql(sql_filter(ctx, &expression)?)
        } else {
            let sub = SubscriptionData {
                topic: header.topic.clone(),
                sub_string: expression,
                ..Default::default()
            };
            PullFilter::Tags(code_filter(&sub))
        }
    } else {
        let Some(group_info) = ctx.clients.consumer_group(&header.consumer_group) else {
            return Err(reject(
                ResponseCode::SubscriptionNotExist,
                format!(
                    "the consumer's group info not exist, group: {}",
                    header.consumer_group
                ),
            ));
        };
        let Some(sub) = group_info.subscriptions.get(&header.topic) else {
            return Err(reject(
                ResponseCode::SubscriptionNotExist,
                format!(
                    "the consumer's subscription not exist, group: {}",
                    header.consumer_group
                ),
            ));
        };
        if sub.sub_version < header.sub_version {
            return Err(reject(
                ResponseCode::SubscriptionNotLatest,
                "the consumer's subscription not latest",
            ));
        }
        if is_sql92(Some(&sub.expression_type)) {
            PullFilter::Sql(sql_filter(ctx, &sub.sub_string)?)
        } else {
            PullFilter::Tags(code_filter(sub))
        }
    };

    let max_count = header.max_msg_nums.clamp(1, MAX_TRANSFER_COUNT);
    let max_bytes = header
        .max_msg_bytes
        .and_then(|b| usize::try_from(b).ok())
        .filter(|b| *b > 0)
        .map_or(MAX_TRANSFER_BYTES, |b| b.min(MAX_TRANSFER_BYTES));
    let tag_codes = match &filter {
        PullFilter::Tags(codes) => codes.as_ref(),
        // The tags-code pre-filter does not apply to SQL92: read every record, then evaluate.
        PullFilter::Sql(_) => None,
    };
    let mut result = ctx.store.get_message(
        &header.topic,
        header.queue_id,
        header.queue_offset,
        max_count,
        max_bytes,
        &|code| matches(tag_codes, code),
    );
    if let PullFilter::Sql(expression) = &filter {
        select_by_properties(&mut result, expression);
    }
    let offset_nonzero = header.queue_offset != 0;
    let code = match result.status {
        GetMessageStatus::Found => ResponseCode::Success,
        GetMessageStatus::NoMatchedMessage | GetMessageStatus::MessageWasRemoving => {
            ResponseCode::PullRetryImmediately
        }
        GetMessageStatus::NoMatchedLogicQueue | GetMessageStatus::NoMessageInQueue => {
            if offset_nonzero {
                ResponseCode::PullOffsetMoved
            } else {
                ResponseCode::PullNotFound
            }
        }
        GetMessageStatus::OffsetFoundNull | GetMessageStatus::OffsetOverflowOne => {
            ResponseCode::PullNotFound
        }
        GetMessageStatus::OffsetOverflowBadly | GetMessageStatus::OffsetTooSmall => {
            ResponseCode::PullOffsetMoved
        }
        #[allow(unreachable_patterns)] // The store's enum may grow.
        _ => ResponseCode::PullRetryImmediately,
    };

    // Commit piggyback, on first processing only.
    if allow_suspend && header.sys_flag & FLAG_COMMIT_OFFSET != 0 {
        ctx.offsets.commit(
            &header.consumer_group,
            &header.topic,
            header.queue_id,
            header.commit_offset,
        );
    }

    if code == ResponseCode::PullNotFound && allow_suspend && header.sys_flag & FLAG_SUSPEND != 0 {
        let hold = if ctx.config.long_polling_enable {
            Duration::from_millis(u64::try_from(header.suspend_timeout_millis).unwrap_or(0))
                .min(MAX_SUSPEND)
        } else {
            ctx.config.short_polling_time
        };
        let held = HeldPull {
            conn: conn.clone(),
            request,
            queue_offset: header.queue_offset,
            code_filter: match filter {
                PullFilter::Tags(codes) => codes,
                // Every arrival wakes a SQL92 pull, which then re-reads and evaluates.
                PullFilter::Sql(_) => None,
            },
            deadline: Instant::now() + hold,
        };
        match ctx.pull_hold.park(&header.topic, header.queue_id, held) {
            Ok(()) => {
                // A message may have arrived between the read and the park: re-check once.
                let max = ctx
                    .store
                    .max_offset_in_queue(&header.topic, header.queue_id);
                if max > header.queue_offset {
                    for p in ctx
                        .pull_hold
                        .take_below(&header.topic, header.queue_id, max)
                    {
                        wake(ctx, p);
                    }
                }
                return Ok(None);
            }
            Err(held) => {
                debug!(topic = %header.topic, queue = header.queue_id, "pull hold table full; answering now");
                return Ok(Some(pull_response(&held.request, code, &result, &header)));
            }
        }
    }
    if code == ResponseCode::Success {
        ctx.stats
            .record_get(u64::try_from(result.messages.len()).unwrap_or(0));
    }
    Ok(Some(pull_response(&request, code, &result, &header)))
}

fn pull_response(
    request: &RemotingCommand,
    code: ResponseCode,
    result: &crate::store::GetMessageResult,
    header: &PullMessageRequestHeader,
) -> RemotingCommand {
    let response_header = PullMessageResponseHeader {
        suggest_which_broker_id: 0,
        next_begin_offset: result.next_begin_offset,
        min_offset: result.min_offset,
        max_offset: result.max_offset,
        ..Default::default()
    };
    let mut response = RemotingCommand::response_to(request, code).with_header(&response_header);
    if code == ResponseCode::Success {
        let total = result.messages.iter().map(|m| m.len()).sum();
        let mut body = BytesMut::with_capacity(total);
        for m in &result.messages {
            body.extend_from_slice(m);
        }
        response.body = body.freeze();
    } else {
        response.remark = Some(format!(
            "{:?} for {}@{}",
            result.status, header.topic, header.queue_id
        ));
    }
    response
}
