//! Consumer-side broker calls (Java's `MQClientAPIImpl` consumer half and `PullAPIWrapper`):
//! pull, offsets, group membership, queue locks and send-back. Each function is one request
//! with PROTOCOL.md §2.4's header fields.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;
use tern_common::filter::{EXPRESSION_TYPE_SQL92, EXPRESSION_TYPE_TAG};
use tern_common::message::MessageExt;
use tern_common::protocol::body::{
    ConsumerListBody, LockBatchRequestBody, LockBatchResponseBody, SubscriptionData,
    UnlockBatchRequestBody,
};
use tern_common::protocol::header::{
    ConsumerSendMsgBackRequestHeader, GetConsumerListByGroupRequestHeader,
    GetMaxOffsetRequestHeader, GetMaxOffsetResponseHeader, GetMinOffsetRequestHeader,
    PullMessageRequestHeader, PullMessageResponseHeader, QueryConsumerOffsetRequestHeader,
    QueryConsumerOffsetResponseHeader, SearchOffsetRequestHeader, SearchOffsetResponseHeader,
    UpdateConsumerOffsetRequestHeader,
};
use tern_common::protocol::{RemotingCommand, RequestCode, ResponseCode};
use tern_common::route::MessageQueue;

use crate::error::{ClientError, Result};
use crate::instance::{broker_error, decode_response, expect_success, ClientInstance};

/// PULL_MESSAGE sysFlag bit: the request carries a commit offset.
pub(crate) const PULL_FLAG_COMMIT_OFFSET: i32 = 0x1;
/// PULL_MESSAGE sysFlag bit: the broker may hold the request (long polling).
pub(crate) const PULL_FLAG_SUSPEND: i32 = 0x2;
/// PULL_MESSAGE sysFlag bit: the request carries the subscription expression.
pub(crate) const PULL_FLAG_SUBSCRIPTION: i32 = 0x4;

/// What a pull found (PROTOCOL.md §2.4: codes 0, 19, 20, 21).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PullStatus {
    /// Messages were returned.
    Found,
    /// Nothing new at the requested offset.
    NoNewMsg,
    /// Entries were scanned but none matched the subscription.
    NoMatchedMsg,
    /// The requested offset is outside the queue; continue from `next_begin_offset`.
    OffsetIllegal,
}

/// The result of one pull.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PullResult {
    /// What happened.
    pub status: PullStatus,
    /// Where the next pull of this queue should start.
    pub next_begin_offset: i64,
    /// The queue's smallest offset.
    pub min_offset: i64,
    /// The queue's next offset to be written.
    pub max_offset: i64,
    /// The messages (only for [`PullStatus::Found`]), already filtered by tag.
    pub messages: Vec<MessageExt>,
}

/// The arguments of one PULL_MESSAGE.
#[derive(Debug, Clone)]
pub(crate) struct PullArgs<'a> {
    pub(crate) group: &'a str,
    pub(crate) mq: &'a MessageQueue,
    pub(crate) offset: i64,
    pub(crate) max_msgs: i32,
    pub(crate) sys_flag: i32,
    pub(crate) commit_offset: i64,
    pub(crate) suspend_timeout: Duration,
    pub(crate) subscription: &'a str,
    pub(crate) sub_version: i64,
}

/// The wire `expressionType` of a subscription: `SQL92` or `TAG`.
pub(crate) fn expression_type(sql92: bool) -> &'static str {
    if sql92 {
        EXPRESSION_TYPE_SQL92
    } else {
        EXPRESSION_TYPE_TAG
    }
}

/// The CHECK_CLIENT_CONFIG body (`CheckClientRequestBody.java`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CheckClientRequestBody<'a> {
    client_id: &'a str,
    group: &'a str,
    subscription_data: &'a SubscriptionData,
}

/// CHECK_CLIENT_CONFIG (46) for one subscription, sent to one broker of its topic (the first
/// with an address, masters first) as Java's `checkClientInBroker` does for SQL92
/// subscriptions at start (PROTOCOL.md §10.3 step 3).
///
/// # Errors
/// [`ClientError::NoRoute`] / [`ClientError::BrokerNotFound`] when no broker serves the
/// topic; [`ClientError::Broker`] with SUBSCRIPTION_PARSE_FAILED (23) when the expression
/// does not compile, or SYSTEM_ERROR (1) when the broker does not filter by properties.
pub(crate) async fn check_client_config(
    instance: &ClientInstance,
    group: &str,
    sub: &SubscriptionData,
) -> Result<()> {
    let route = instance.route(&sub.topic).await?;
    let addr = route
        .broker_datas
        .iter()
        .find_map(|bd| bd.broker_addrs.values().next().cloned())
        .ok_or_else(|| ClientError::NoRoute {
            topic: sub.topic.clone(),
        })?;
    let body = instance.encode(&CheckClientRequestBody {
        client_id: &instance.client_id,
        group,
        subscription_data: sub,
    })?;
    let req = RemotingCommand::request_empty(RequestCode::CheckClientConfig).with_body(body);
    instance
        .invoke_ok(&addr, req, instance.config.rpc_timeout)
        .await?;
    Ok(())
}

/// Sends one PULL_MESSAGE to `addr` and waits up to `timeout` (longer than the suspend
/// time). Messages are decoded, decompressed and filtered exactly by `tags` (PROTOCOL.md
/// §7: the broker's filter may over-match).
///
/// # Errors
/// Transport errors; error codes other than 0/19/20/21; undecodable records.
pub(crate) async fn pull(
    instance: &ClientInstance,
    addr: &str,
    args: &PullArgs<'_>,
    tags: &tern_common::message::SubscriptionExpr,
    timeout: Duration,
) -> Result<PullResult> {
    pull_typed(instance, addr, args, tags, EXPRESSION_TYPE_TAG, timeout).await
}

/// [`pull`] with an explicit `expressionType` (`TAG` or `SQL92`, see [`expression_type`]).
/// A SQL92 subscription has no tags, so the client keeps every message the broker returns.
///
/// # Errors
/// As [`pull`].
pub(crate) async fn pull_typed(
    instance: &ClientInstance,
    addr: &str,
    args: &PullArgs<'_>,
    tags: &tern_common::message::SubscriptionExpr,
    expression_type: &str,
    timeout: Duration,
) -> Result<PullResult> {
    let header = PullMessageRequestHeader {
        consumer_group: args.group.to_string(),
        topic: args.mq.topic.clone(),
        queue_id: args.mq.queue_id,
        queue_offset: args.offset,
        max_msg_nums: args.max_msgs,
        sys_flag: args.sys_flag,
        commit_offset: args.commit_offset,
        suspend_timeout_millis: i64::try_from(args.suspend_timeout.as_millis()).unwrap_or(i64::MAX),
        subscription: (args.sys_flag & PULL_FLAG_SUBSCRIPTION != 0)
            .then(|| args.subscription.to_string()),
        sub_version: args.sub_version,
        expression_type: Some(expression_type.to_string()),
        ..Default::default()
    };
    let response = instance
        .invoke(
            addr,
            RemotingCommand::request(RequestCode::PullMessage, &header),
            timeout,
        )
        .await?;
    let status = match ResponseCode::try_from(response.code) {
        Ok(ResponseCode::Success) => PullStatus::Found,
        Ok(ResponseCode::PullNotFound) => PullStatus::NoNewMsg,
        Ok(ResponseCode::PullRetryImmediately) => PullStatus::NoMatchedMsg,
        Ok(ResponseCode::PullOffsetMoved) => PullStatus::OffsetIllegal,
        _ => return Err(broker_error(addr, &response)),
    };
    let PullMessageResponseHeader {
        next_begin_offset,
        min_offset,
        max_offset,
        ..
    } = response.decode_header()?;
    let mut messages = Vec::new();
    if status == PullStatus::Found {
        let decoded = tern_common::message::decode_messages(&response.body)
            .map_err(|e| ClientError::Record(e.to_string()))?;
        for mut msg in decoded {
            if !tags.matches_tag(msg.message.tags()) {
                continue;
            }
            decompress(&mut msg)?;
            messages.push(msg);
        }
    }
    Ok(PullResult {
        status,
        next_begin_offset,
        min_offset,
        max_offset,
        messages,
    })
}

/// Replaces a compressed body (sysFlag bit 0) by its uncompressed bytes and clears the
/// compression bits, as a handler must see it.
///
/// # Errors
/// [`ClientError::Record`] when the body does not decompress.
pub(crate) fn decompress(msg: &mut MessageExt) -> Result<()> {
    use tern_common::message::sys_flag::{COMPRESSED_FLAG, COMPRESSION_TYPE_MASK};
    if msg.sys_flag & COMPRESSED_FLAG != 0 {
        let body = msg
            .uncompressed_body()
            .map_err(|e| ClientError::Record(e.to_string()))?;
        msg.message.body = body;
        msg.sys_flag &= !(COMPRESSED_FLAG | COMPRESSION_TYPE_MASK);
    }
    Ok(())
}

/// QUERY_CONSUMER_OFFSET: `Ok(None)` for QUERY_NOT_FOUND (no offset stored yet).
///
/// # Errors
/// Transport errors and other error codes.
pub(crate) async fn query_consumer_offset(
    instance: &ClientInstance,
    addr: &str,
    group: &str,
    mq: &MessageQueue,
) -> Result<Option<i64>> {
    let header = QueryConsumerOffsetRequestHeader {
        consumer_group: group.to_string(),
        topic: mq.topic.clone(),
        queue_id: mq.queue_id,
        set_zero_if_not_found: None,
    };
    let req = RemotingCommand::request(RequestCode::QueryConsumerOffset, &header);
    let response = instance
        .invoke(addr, req, instance.config.rpc_timeout)
        .await?;
    if response.code == i32::from(ResponseCode::QueryNotFound) {
        return Ok(None);
    }
    let response = expect_success(addr, response)?;
    let header: QueryConsumerOffsetResponseHeader = response.decode_header()?;
    Ok(Some(header.offset))
}

/// UPDATE_CONSUMER_OFFSET, oneway or waiting for the answer.
///
/// # Errors
/// Transport errors; error codes when not oneway.
pub(crate) async fn update_consumer_offset(
    instance: &ClientInstance,
    addr: &str,
    group: &str,
    mq: &MessageQueue,
    offset: i64,
    oneway: bool,
) -> Result<()> {
    let header = UpdateConsumerOffsetRequestHeader {
        consumer_group: group.to_string(),
        topic: mq.topic.clone(),
        queue_id: mq.queue_id,
        commit_offset: offset,
    };
    let req = RemotingCommand::request(RequestCode::UpdateConsumerOffset, &header);
    if oneway {
        instance.invoke_oneway(addr, req).await
    } else {
        instance
            .invoke_ok(addr, req, instance.config.rpc_timeout)
            .await
            .map(|_| ())
    }
}

/// GET_MAX_OFFSET / GET_MIN_OFFSET of `mq`.
///
/// # Errors
/// Transport errors and error codes.
pub(crate) async fn queue_offset(
    instance: &ClientInstance,
    addr: &str,
    mq: &MessageQueue,
    max: bool,
) -> Result<i64> {
    let req = if max {
        let header = GetMaxOffsetRequestHeader {
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
            committed: None,
        };
        RemotingCommand::request(RequestCode::GetMaxOffset, &header)
    } else {
        let header = GetMinOffsetRequestHeader {
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
        };
        RemotingCommand::request(RequestCode::GetMinOffset, &header)
    };
    let response = instance
        .invoke_ok(addr, req, instance.config.rpc_timeout)
        .await?;
    // GET_MAX_OFFSET and GET_MIN_OFFSET answer the same one-field header.
    let header: GetMaxOffsetResponseHeader = response.decode_header()?;
    Ok(header.offset)
}

/// SEARCH_OFFSET_BY_TIMESTAMP: the first offset stored at or after `timestamp_ms`.
///
/// # Errors
/// Transport errors and error codes.
pub(crate) async fn search_offset(
    instance: &ClientInstance,
    addr: &str,
    mq: &MessageQueue,
    timestamp_ms: i64,
) -> Result<i64> {
    let header = SearchOffsetRequestHeader {
        topic: mq.topic.clone(),
        queue_id: mq.queue_id,
        timestamp: timestamp_ms,
        boundary_type: None,
    };
    let req = RemotingCommand::request(RequestCode::SearchOffsetByTimestamp, &header);
    let response = instance
        .invoke_ok(addr, req, instance.config.rpc_timeout)
        .await?;
    let header: SearchOffsetResponseHeader = response.decode_header()?;
    Ok(header.offset)
}

/// GET_CONSUMER_LIST_BY_GROUP: the client ids of the group's live members.
///
/// # Errors
/// Transport errors and error codes (SYSTEM_ERROR when the group has no member there).
pub(crate) async fn consumer_ids(
    instance: &ClientInstance,
    addr: &str,
    group: &str,
) -> Result<Vec<String>> {
    let header = GetConsumerListByGroupRequestHeader {
        consumer_group: group.to_string(),
    };
    let req = RemotingCommand::request(RequestCode::GetConsumerListByGroup, &header);
    let response = instance
        .invoke_ok(addr, req, instance.config.rpc_timeout)
        .await?;
    let body: ConsumerListBody = decode_response(&response)?;
    Ok(body.consumer_id_list)
}

/// LOCK_BATCH_MQ: the subset of `mqs` now locked by this client.
///
/// # Errors
/// Transport errors and error codes.
pub(crate) async fn lock_batch(
    instance: &ClientInstance,
    addr: &str,
    group: &str,
    mqs: BTreeSet<MessageQueue>,
) -> Result<BTreeSet<MessageQueue>> {
    let body = LockBatchRequestBody {
        consumer_group: group.to_string(),
        client_id: instance.client_id.clone(),
        only_this_broker: false,
        mq_set: mqs,
    };
    let req =
        RemotingCommand::request_empty(RequestCode::LockBatchMq).with_body(instance.encode(&body)?);
    let response = instance
        .invoke_ok(addr, req, instance.config.rpc_timeout)
        .await?;
    let body: LockBatchResponseBody = decode_response(&response)?;
    Ok(body.lock_ok_mq_set)
}

/// UNLOCK_BATCH_MQ, oneway.
///
/// # Errors
/// Transport errors.
pub(crate) async fn unlock_batch(
    instance: &ClientInstance,
    addr: &str,
    group: &str,
    mqs: BTreeSet<MessageQueue>,
) -> Result<()> {
    let body = UnlockBatchRequestBody {
        consumer_group: group.to_string(),
        client_id: instance.client_id.clone(),
        only_this_broker: false,
        mq_set: mqs,
    };
    let req = RemotingCommand::request_empty(RequestCode::UnlockBatchMq)
        .with_body(instance.encode(&body)?);
    instance.invoke_oneway(addr, req).await
}

/// CONSUMER_SEND_MSG_BACK for `msg` (PROTOCOL.md §2.4, §6.3): `delay_level` 0 lets the
/// broker choose (3 + reconsume times), -1 sends it to the dead-letter queue.
///
/// # Errors
/// Transport errors and error codes.
pub(crate) async fn send_back(
    instance: &ClientInstance,
    addr: &str,
    group: &str,
    msg: &MessageExt,
    delay_level: i32,
    max_reconsume_times: i32,
) -> Result<()> {
    let origin_msg_id = msg
        .message
        .properties
        .get(tern_common::message::property_key::ORIGIN_MESSAGE_ID)
        .cloned()
        .unwrap_or_else(|| msg.msg_id.clone());
    let header = ConsumerSendMsgBackRequestHeader {
        offset: msg.phy_offset,
        group: group.to_string(),
        delay_level,
        origin_msg_id: Some(origin_msg_id),
        origin_topic: Some(msg.message.topic.clone()),
        unit_mode: Some(false),
        max_reconsume_times: Some(max_reconsume_times),
    };
    let req = RemotingCommand::request(RequestCode::ConsumerSendMsgBack, &header);
    instance
        .invoke_ok(addr, req, instance.config.rpc_timeout)
        .await
        .map(|_| ())
}
