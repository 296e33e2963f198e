//! Consumer offsets and queue offset lookups (PROTOCOL.md §2.4): QUERY_CONSUMER_OFFSET (14),
//! UPDATE_CONSUMER_OFFSET (15), GET_MAX_OFFSET (30), GET_MIN_OFFSET (31),
//! SEARCH_OFFSET_BY_TIMESTAMP (29), GET_EARLIEST_MSG_STORETIME (32).

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

/// QUERY_CONSUMER_OFFSET: the stored offset; else (unless `setZeroIfNotFound=false`) 0 when
/// the queue still starts at offset 0; else QUERY_NOT_FOUND (22).
///
/// # Errors
/// Header errors.
pub async fn handle_query_consumer_offset(
    ctx: &BrokerContext,
    _conn: &Connection,
    request: RemotingCommand,
) -> ProcessorResult {
    let header: QueryConsumerOffsetRequestHeader = request.decode_header()?;
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
/// Header errors; unknown group or topic.
pub async fn handle_update_consumer_offset(
    ctx: &BrokerContext,
    _conn: &Connection,
    request: RemotingCommand,
) -> ProcessorResult {
    let header: UpdateConsumerOffsetRequestHeader = request.decode_header()?;
    if ctx.groups.find_or_create(&header.consumer_group)?.is_none() {
        return Err(reject(
            ResponseCode::SubscriptionGroupNotExist,
            format!("subscription group not exist, {}", header.consumer_group),
        ));
    }
    if !ctx.topics.contains(&header.topic) {
        return Err(reject(
            ResponseCode::TopicNotExist,
            format!("topic[{}] not exist", header.topic),
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
