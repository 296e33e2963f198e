//! QUERY_MESSAGE (12) and VIEW_MESSAGE_BY_ID (33), PROTOCOL.md §2.4 and §4.2.

use bytes::BytesMut;
use tern_common::protocol::header::{
    QueryMessageRequestHeader, QueryMessageResponseHeader, ViewMessageByIdRequestHeader,
};
use tern_common::protocol::{RemotingCommand, ResponseCode};
use tern_common::remoting::Connection;

use super::{reject, success, ProcessorResult};
use crate::context::BrokerContext;

/// Most messages of a UNIQ_KEY query.
const MAX_UNIQUE_QUERY_NUM: i32 = 32;
/// Most messages of a key query.
const MAX_QUERY_NUM: i32 = 64;

/// QUERY_MESSAGE: the stored records indexed under `topic#key` within the time range (the
/// client does the exact comparison), or QUERY_NOT_FOUND.
///
/// # Errors
/// Header errors.
pub async fn handle_query_message(
    ctx: &BrokerContext,
    _conn: &Connection,
    request: RemotingCommand,
) -> ProcessorResult {
    let header: QueryMessageRequestHeader = request.decode_header()?;
    let cap = if header.unique_key_query == Some(true) {
        MAX_UNIQUE_QUERY_NUM
    } else {
        MAX_QUERY_NUM
    };
    let max_num = header.max_num.clamp(1, cap);
    let result = ctx.store.query_message(
        &header.topic,
        &header.key,
        usize::try_from(max_num).unwrap_or(1),
        header.begin_timestamp,
        header.end_timestamp,
    );
    let response_header = QueryMessageResponseHeader {
        index_last_update_timestamp: result.index_last_update_timestamp,
        index_last_update_phyoffset: result.index_last_update_phy_offset,
    };
    if result.messages.is_empty() {
        return Ok(Some(
            RemotingCommand::response_to(&request, ResponseCode::QueryNotFound)
                .with_header(&response_header)
                .with_remark("can not find message, maybe time range not correct"),
        ));
    }
    let mut body = BytesMut::with_capacity(result.messages.iter().map(|m| m.len()).sum());
    for m in &result.messages {
        body.extend_from_slice(m);
    }
    Ok(Some(
        success(&request)
            .with_header(&response_header)
            .with_body(body.freeze()),
    ))
}

/// VIEW_MESSAGE_BY_ID: the one record at a CommitLog offset.
///
/// # Errors
/// Header errors; SYSTEM_ERROR when no record starts there.
pub async fn handle_view_message_by_id(
    ctx: &BrokerContext,
    _conn: &Connection,
    request: RemotingCommand,
) -> ProcessorResult {
    let header: ViewMessageByIdRequestHeader = request.decode_header()?;
    match ctx.store.read_record(header.offset) {
        Some(record) => Ok(Some(success(&request).with_body(record))),
        None => Err(reject(
            ResponseCode::SystemError,
            format!("can not find message by the offset, {}", header.offset),
        )),
    }
}
