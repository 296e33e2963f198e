//! CONSUMER_SEND_MSG_BACK (36): a consumer hands a message it failed to consume back to the
//! broker (PROTOCOL.md §2.4, §6.3; Java `AbstractSendMessageProcessor.consumerSendMsgBack`).
//!
//! The original is read by its CommitLog offset and re-stored as a new record:
//! - in `%DLQ%<group>` (created with one read-write queue) when its reconsume times reached the
//!   limit (header `maxReconsumeTimes` from clients at version ≥ 121, else the group's
//!   `retryMaxTimes`) or when `delayLevel` < 0, without a delay level;
//! - otherwise in `%RETRY%<group>` (a random queue among the group's `retryQueueNums`) with
//!   delay level `delayLevel`, or 3 + reconsume times when it is 0 — so it is parked in
//!   `SCHEDULE_TOPIC_XXXX` first and comes back to the retry topic when due.
//!
//! The copy keeps body, flag, sysFlag, born timestamp/host, tags and properties; adds
//! `RETRY_TOPIC` (the original topic, if absent), `ORIGIN_MESSAGE_ID` (the original's, else its
//! offset message id) and `WAIT=false`; its reconsume times is the original's + 1.

use std::collections::BTreeMap;

use rand::Rng;
use tern_common::message::property::MAX_PROPERTIES_LEN_BYTES;
use tern_common::message::record::{decode_record, RecordInput};
use tern_common::message::{
    dlq_topic, encode_properties, offset_msg_id, property_key, retry_topic, SCHEDULE_TOPIC_XXXX,
};
use tern_common::protocol::header::ConsumerSendMsgBackRequestHeader;
use tern_common::protocol::{RemotingCommand, ResponseCode};
use tern_common::remoting::Connection;
use tern_common::route::perm;
use tracing::debug;

use super::bump;
use crate::context::BrokerContext;
use crate::error::ProcessorError;
use crate::store::PutMessageStatus;

/// Client version from which the header's `maxReconsumeTimes` is honoured (V3_4_9).
const VERSION_WITH_MAX_RECONSUME_TIMES: i32 = 121;
/// The delay level of the first retry is this plus the reconsume times (10 s with the default
/// table).
const FIRST_RETRY_LEVEL: i32 = 3;

/// Where a sent-back message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SendBackTarget {
    /// `%RETRY%<group>` with this delay level (≥ 1).
    Retry {
        /// Delay level (1-based).
        delay_level: i32,
    },
    /// `%DLQ%<group>`.
    Dlq,
}

/// The §6.3 decision: DLQ when `reconsume_times ≥ max_reconsume_times` or `delay_level < 0`,
/// else a retry with `delay_level`, or 3 + `reconsume_times` when it is 0.
pub(crate) fn decide(
    delay_level: i32,
    reconsume_times: i32,
    max_reconsume_times: i32,
) -> SendBackTarget {
    if reconsume_times >= max_reconsume_times || delay_level < 0 {
        SendBackTarget::Dlq
    } else if delay_level == 0 {
        SendBackTarget::Retry {
            delay_level: FIRST_RETRY_LEVEL.saturating_add(reconsume_times.max(0)),
        }
    } else {
        SendBackTarget::Retry { delay_level }
    }
}

fn reject(code: ResponseCode, remark: impl Into<String>) -> ProcessorError {
    ProcessorError::rejected(code, remark)
}

/// Handles CONSUMER_SEND_MSG_BACK (36).
///
/// # Errors
/// Header errors (SYSTEM_ERROR); SUBSCRIPTION_GROUP_NOT_EXIST for an unknown group when
/// auto-creation is off; NO_PERMISSION for a non-writable retry topic; SYSTEM_ERROR when the
/// original cannot be read or the store refuses the copy; MESSAGE_ILLEGAL when the copy's
/// properties grow past 32767 bytes.
pub async fn handle_consumer_send_msg_back(
    ctx: &BrokerContext,
    _conn: &Connection,
    request: RemotingCommand,
) -> Result<Option<RemotingCommand>, ProcessorError> {
    let header: ConsumerSendMsgBackRequestHeader = request.decode_header()?;
    let group_config = ctx.groups.find_or_create(&header.group)?.ok_or_else(|| {
        reject(
            ResponseCode::SubscriptionGroupNotExist,
            format!("subscription group not exist, {}", header.group),
        )
    })?;
    if group_config.retry_queue_nums <= 0 {
        // RocketMQ answers SUCCESS and drops the message.
        return Ok(Some(RemotingCommand::response_to(
            &request,
            ResponseCode::Success,
        )));
    }
    let record = (header.offset >= 0)
        .then(|| ctx.store.read_record(header.offset))
        .flatten()
        .ok_or_else(|| {
            reject(
                ResponseCode::SystemError,
                format!("look message by offset failed, {}", header.offset),
            )
        })?;
    let rec = decode_record(&record, false).map_err(|_| {
        reject(
            ResponseCode::SystemError,
            format!("look message by offset failed, {}", header.offset),
        )
    })?;

    let max_reconsume_times = if request.version >= VERSION_WITH_MAX_RECONSUME_TIMES {
        header
            .max_reconsume_times
            .unwrap_or(group_config.retry_max_times)
    } else {
        group_config.retry_max_times
    };
    let mut props: BTreeMap<String, String> =
        tern_common::message::decode_properties(rec.properties);
    props
        .entry(property_key::RETRY_TOPIC.to_string())
        .or_insert_with(|| rec.topic.to_string());
    let origin = props
        .get(property_key::ORIGIN_MESSAGE_ID)
        .filter(|o| !o.is_empty())
        .cloned()
        .unwrap_or_else(|| offset_msg_id(rec.store_host, rec.phy_offset));
    props.insert(property_key::ORIGIN_MESSAGE_ID.into(), origin.clone());
    props.insert(property_key::WAIT.into(), "false".into());
    props.remove(property_key::REAL_TOPIC);
    props.remove(property_key::REAL_QID);

    let decision = decide(header.delay_level, rec.reconsume_times, max_reconsume_times);
    let (mut topic, mut queue_id) = match decision {
        SendBackTarget::Dlq => {
            let dlq = dlq_topic(&header.group);
            let (config, created) = ctx.topics.get_or_create(&dlq, 1, perm::PERM_READ_WRITE)?;
            if created {
                ctx.registration.trigger();
            }
            if !perm::is_writeable(config.perm) {
                return Err(reject(
                    ResponseCode::NoPermission,
                    format!("the topic[{dlq}] sending message is forbidden"),
                ));
            }
            props.remove(property_key::DELAY);
            if let Some(retry_of) = props.get(property_key::RETRY_TOPIC).cloned() {
                props.insert(property_key::DLQ_ORIGIN_TOPIC.into(), retry_of);
            }
            let uniq = props
                .get(property_key::UNIQ_KEY)
                .cloned()
                .unwrap_or_else(|| origin.clone());
            props.insert(property_key::DLQ_ORIGIN_MESSAGE_ID.into(), uniq);
            (dlq, 0)
        }
        SendBackTarget::Retry { delay_level } => {
            let retry = retry_topic(&header.group);
            let (config, created) = ctx.topics.get_or_create(
                &retry,
                group_config.retry_queue_nums,
                perm::PERM_READ_WRITE,
            )?;
            if created {
                ctx.registration.trigger();
            }
            if !perm::is_writeable(config.perm) {
                return Err(reject(
                    ResponseCode::NoPermission,
                    format!("the topic[{retry}] sending message is forbidden"),
                ));
            }
            let queues = group_config
                .retry_queue_nums
                .min(config.write_queue_nums)
                .max(1);
            let queue_id = rand::thread_rng().gen_range(0..queues);
            props.insert(property_key::DELAY.into(), delay_level.to_string());
            (retry, queue_id)
        }
    };

    // Stored through the same delay-level rewrite as a send (§6.2): park in the schedule topic.
    if let SendBackTarget::Retry { delay_level } = decision {
        let max_level = i32::try_from(ctx.config.message_delay_level.len()).unwrap_or(i32::MAX);
        let level = delay_level.clamp(1, max_level.max(1));
        props.insert(property_key::DELAY.into(), level.to_string());
        props.insert(property_key::REAL_TOPIC.into(), topic.clone());
        props.insert(property_key::REAL_QID.into(), queue_id.to_string());
        topic = SCHEDULE_TOPIC_XXXX.to_string();
        queue_id = level - 1;
    }
    let properties = encode_properties(&props);
    if properties.len() > MAX_PROPERTIES_LEN_BYTES {
        return Err(reject(
            ResponseCode::MessageIllegal,
            "message properties size exceeded",
        ));
    }
    let input = RecordInput {
        topic,
        queue_id,
        flag: rec.flag,
        body: bytes::Bytes::copy_from_slice(rec.body),
        properties,
        sys_flag: rec.sys_flag,
        born_timestamp: rec.born_timestamp,
        born_host: rec.born_host,
        store_host: ctx.store_host,
        reconsume_times: rec.reconsume_times.saturating_add(1),
        prepared_transaction_offset: rec.prepared_transaction_offset,
    };
    let result = ctx.store.put_message(input).await;
    match result.status {
        PutMessageStatus::PutOk | PutMessageStatus::FlushDiskTimeout => {
            let service = ctx.schedule.get();
            match decision {
                SendBackTarget::Dlq => {
                    if let Some(s) = service {
                        bump(&s.stats.sent_back_dlq, 1);
                    }
                }
                SendBackTarget::Retry { .. } => {
                    if let Some(s) = service {
                        bump(&s.stats.sent_back_retry, 1);
                    }
                }
            }
            debug!(group = %header.group, offset = header.offset, ?decision, "message sent back");
            Ok(Some(RemotingCommand::response_to(
                &request,
                ResponseCode::Success,
            )))
        }
        status => Err(reject(
            ResponseCode::SystemError,
            format!("storing the sent-back message failed: {status:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_grow_from_level_three_then_dead_letter() {
        assert_eq!(decide(0, 0, 16), SendBackTarget::Retry { delay_level: 3 });
        assert_eq!(decide(0, 5, 16), SendBackTarget::Retry { delay_level: 8 });
        assert_eq!(decide(2, 5, 16), SendBackTarget::Retry { delay_level: 2 });
        assert_eq!(decide(0, 15, 16), SendBackTarget::Retry { delay_level: 18 });
        assert_eq!(decide(0, 16, 16), SendBackTarget::Dlq);
        assert_eq!(decide(3, 2, 2), SendBackTarget::Dlq);
        assert_eq!(decide(-1, 0, 16), SendBackTarget::Dlq);
    }
}
