//! Consumer offsets and queue offset lookups (PROTOCOL.md §2.4): QUERY_CONSUMER_OFFSET (14),
//! UPDATE_CONSUMER_OFFSET (15), GET_MAX_OFFSET (30), GET_MIN_OFFSET (31),
//! SEARCH_OFFSET_BY_TIMESTAMP (29), GET_EARLIEST_MSG_STORETIME (32).
//!
//! Consumer offsets are only stored for queues that exist: QUERY/UPDATE_CONSUMER_OFFSET for
//! a topic this broker does not have answer TOPIC_NOT_EXIST (17) (5.x), and for a queue id
//! outside `0..max(readQueueNums, writeQueueNums)` INVALID_PARAMETER (29) with Java's pull
//! remark shape (`queueId[..] is illegal, ...`). The bound takes the larger of the two counts
//! so commits keep working while a topic's read and write queue counts are being changed one
//! after the other. A negative `commitOffset` is refused with INVALID_PARAMETER: offsets are
//! "next message to consume", never negative, and a stored -1 would read back as garbage.

use tern_common::protocol::header::{
    GetEarliestMsgStoretimeRequestHeader, GetEarliestMsgStoretimeResponseHeader,
    GetMaxOffsetRequestHeader, GetMaxOffsetResponseHeader, GetMinOffsetRequestHeader,
    GetMinOffsetResponseHeader, QueryConsumerOffsetRequestHeader,
    QueryConsumerOffsetResponseHeader, SearchOffsetRequestHeader, SearchOffsetResponseHeader,
    UpdateConsumerOffsetRequestHeader,
};
use tern_common::protocol::{RemotingCommand, ResponseCode};
use tern_common::remoting::Connection;

use super::{reject, success, ProcessorResult};
use crate::context::BrokerContext;
use crate::error::ProcessorError;

/// Checks that `topic` exists on this broker and that `queue_id` is one of its queues.
///
/// # Errors
/// TOPIC_NOT_EXIST for an unknown topic, INVALID_PARAMETER for a queue id outside
/// `0..max(readQueueNums, writeQueueNums)`.
fn check_queue(
    ctx: &BrokerContext,
    conn: &Connection,
    topic: &str,
    queue_id: i32,
) -> Result<(), ProcessorError> {
    let Some(config) = ctx.topics.get(topic) else {
        return Err(reject(
            ResponseCode::TopicNotExist,
            format!("topic[{topic}] not exist"),
        ));
    };
    let queues = config.read_queue_nums.max(config.write_queue_nums);
    if !(0..queues).contains(&queue_id) {
        return Err(reject(
            ResponseCode::InvalidParameter,
            format!(
                "queueId[{queue_id}] is illegal, topic:[{topic}] topicConfig.readQueueNums:[{}] consumer:[{}]",
                config.read_queue_nums,
                conn.peer_addr()
            ),
        ));
    }
    Ok(())
}

/// QUERY_CONSUMER_OFFSET: the stored offset; else (unless `setZeroIfNotFound=false`) 0 when
/// the queue still starts at offset 0; else QUERY_NOT_FOUND (22).
///
/// # Errors
/// Header errors; unknown topic (TOPIC_NOT_EXIST); queue id out of range (INVALID_PARAMETER).
pub async fn handle_query_consumer_offset(
    ctx: &BrokerContext,
    conn: &Connection,
    request: RemotingCommand,
) -> ProcessorResult {
    let header: QueryConsumerOffsetRequestHeader = request.decode_header()?;
    check_queue(ctx, conn, &header.topic, header.queue_id)?;
    let stored = ctx
        .offsets
        .query(&header.consumer_group, &header.topic, header.queue_id)
        .filter(|o| *o >= 0);
    let offset = match stored {
        Some(o) => Some(o),
        None if header.set_zero_if_not_found == Some(false) => None,
        None => {
            let min = ctx
                .store
                .min_offset_in_queue(&header.topic, header.queue_id);
            (min <= 0).then_some(0)
        }
    };
    Ok(Some(match offset {
        Some(offset) => {
            success(&request).with_header(&QueryConsumerOffsetResponseHeader { offset })
        }
        None => RemotingCommand::response_to(&request, ResponseCode::QueryNotFound)
            .with_header(&QueryConsumerOffsetResponseHeader { offset: -1 })
            .with_remark("Not found, maybe this group consumer boot first"),
    }))
}

/// UPDATE_CONSUMER_OFFSET: stores the offset (usually oneway).
///
/// # Errors
/// Header errors; unknown group (SUBSCRIPTION_GROUP_NOT_EXIST) or topic (TOPIC_NOT_EXIST);
/// queue id out of range or negative offset (INVALID_PARAMETER). Nothing is stored then.
pub async fn handle_update_consumer_offset(
    ctx: &BrokerContext,
    conn: &Connection,
    request: RemotingCommand,
) -> ProcessorResult {
    let header: UpdateConsumerOffsetRequestHeader = request.decode_header()?;
    if ctx.groups.find_or_create(&header.consumer_group)?.is_none() {
        return Err(reject(
            ResponseCode::SubscriptionGroupNotExist,
            format!("subscription group not exist, {}", header.consumer_group),
        ));
    }
    check_queue(ctx, conn, &header.topic, header.queue_id)?;
    if header.commit_offset < 0 {
        return Err(reject(
            ResponseCode::InvalidParameter,
            format!(
                "commitOffset[{}] is illegal, it must not be negative",
                header.commit_offset
            ),
        ));
    }
    ctx.offsets.commit(
        &header.consumer_group,
        &header.topic,
        header.queue_id,
        header.commit_offset,
    );
    Ok(Some(success(&request)))
}

/// GET_MAX_OFFSET: the queue's max offset (next offset to be written).
///
/// # Errors
/// Header errors.
pub async fn handle_get_max_offset(
    ctx: &BrokerContext,
    _conn: &Connection,
    request: RemotingCommand,
) -> ProcessorResult {
    let header: GetMaxOffsetRequestHeader = request.decode_header()?;
    let offset = ctx
        .store
        .max_offset_in_queue(&header.topic, header.queue_id);
    Ok(Some(
        success(&request).with_header(&GetMaxOffsetResponseHeader { offset }),
    ))
}

/// GET_MIN_OFFSET: the queue's min offset.
///
/// # Errors
/// Header errors.
pub async fn handle_get_min_offset(
    ctx: &BrokerContext,
    _conn: &Connection,
    request: RemotingCommand,
) -> ProcessorResult {
    let header: GetMinOffsetRequestHeader = request.decode_header()?;
    let offset = ctx
        .store
        .min_offset_in_queue(&header.topic, header.queue_id);
    Ok(Some(
        success(&request).with_header(&GetMinOffsetResponseHeader { offset }),
    ))
}

/// SEARCH_OFFSET_BY_TIMESTAMP: the offset of the first (lower, default) or last (upper)
/// message stored at/around the time.
///
/// # Errors
/// Header errors.
pub async fn handle_search_offset(
    ctx: &BrokerContext,
    _conn: &Connection,
    request: RemotingCommand,
) -> ProcessorResult {
    let header: SearchOffsetRequestHeader = request.decode_header()?;
    let upper = header
        .boundary_type
        .as_deref()
        .is_some_and(|b| b.eq_ignore_ascii_case("UPPER"));
    let offset = ctx
        .store
        .offset_by_time(&header.topic, header.queue_id, header.timestamp, upper);
    Ok(Some(
        success(&request).with_header(&SearchOffsetResponseHeader { offset }),
    ))
}

/// GET_EARLIEST_MSG_STORETIME: store time of the queue's first message (-1 when empty).
///
/// # Errors
/// Header errors.
pub async fn handle_earliest_msg_storetime(
    ctx: &BrokerContext,
    _conn: &Connection,
    request: RemotingCommand,
) -> ProcessorResult {
    let header: GetEarliestMsgStoretimeRequestHeader = request.decode_header()?;
    let timestamp = ctx
        .store
        .earliest_message_time(&header.topic, header.queue_id)
        .unwrap_or(-1);
    Ok(Some(success(&request).with_header(
        &GetEarliestMsgStoretimeResponseHeader { timestamp },
    )))
}
