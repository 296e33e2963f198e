//! SEND_MESSAGE (10), SEND_MESSAGE_V2 (310) and SEND_BATCH_MESSAGE (320), PROTOCOL.md §2.3
//! "Broker processing" steps 1–10, §3.7 (batch), §5.2 (half messages), §6.2 (delay levels)
//! and §6.3 (retry → DLQ rule).
//!
//! The response always carries the full header (msgId, queueId, queueOffset, MSG_REGION,
//! TRACE_ON) on codes 0/10/11/12, because the message is stored in each of those cases.

use std::collections::BTreeMap;

use rand::Rng;
use tern_common::message::id::OffsetMsgIds;
use tern_common::message::property::MAX_PROPERTIES_LEN_BYTES;
use tern_common::message::record::{encoded_len, sys_flag, RecordInput};
use tern_common::message::{
    decode_batch, decode_properties, dlq_topic, encode_properties, group_of_retry_or_dlq_topic,
    is_retry_topic, is_send_forbidden_topic, new_uniq_id, property_key, validate_topic,
    RMQ_SYS_TRANS_HALF_TOPIC, SCHEDULE_TOPIC_XXXX,
};
use tern_common::protocol::header::{SendMessageRequestHeader, SendMessageResponseHeader};
use tern_common::protocol::{ExtFields, RemotingCommand, ResponseCode};
use tern_common::remoting::Connection;
use tern_common::route::{perm, TopicConfig, TopicFilterType};

use super::{reject, ProcessorResult};
use crate::context::BrokerContext;
use crate::store::{PutMessageResult, PutMessageStatus};

/// Client version from which the header's `maxReconsumeTimes` is honoured (V3_4_9).
const VERSION_WITH_MAX_RECONSUME_TIMES: i32 = 121;

/// Where one send ends up after the §2.3 rewrites.
#[derive(Debug)]
struct Target {
    topic: String,
    queue_id: i32,
    /// The queue id reported to the client (the original one for half messages).
    reported_queue_id: i32,
    /// The property string to store.
    properties: String,
    sys_flag: i32,
    transaction_id: Option<String>,
}

/// A send whose append is done: answered, or (SYNC_FLUSH with `WAIT`) waiting for the group
/// commit before its answer.
enum Sent {
    Answered(RemotingCommand),
    Flushing(Box<FlushingPut>),
}

/// What a SYNC_FLUSH send needs to answer once its group commit is done.
struct FlushingPut {
    result: PutMessageResult,
    flushed: tokio::sync::oneshot::Receiver<bool>,
    lengths: Vec<usize>,
    reported_queue_id: i32,
    transaction_id: Option<String>,
}

/// Handles codes 10, 310 and 320.
///
/// Everything up to and including the append runs synchronously; only a SYNC_FLUSH send then
/// waits, in a boxed future. This keeps the future of every request small: it is moved whole
/// at each level of the request's call chain, and a send's used to be 1.4 KiB of the 2 KiB.
///
/// # Errors
/// Header errors (SYSTEM_ERROR) and the refusals of §2.3 as [`ProcessorError::Rejected`].
pub async fn handle_send_message(
    ctx: &BrokerContext,
    conn: &Connection,
    request: RemotingCommand,
) -> ProcessorResult {
    // No temporary of the match may live across the await, or it would be in the future.
    let put = match send_now(ctx, conn, &request)? {
        Sent::Answered(response) => return Ok(Some(response)),
        Sent::Flushing(put) => put,
    };
    Ok(Some(
        Box::pin(answer_after_flush(ctx, &request, *put)).await,
    ))
}

/// The answer of a SYNC_FLUSH send once its group commit is done (or timed out).
async fn answer_after_flush(
    ctx: &BrokerContext,
    request: &RemotingCommand,
    put: FlushingPut,
) -> RemotingCommand {
    let result = ctx.store.wait_flushed(put.result, put.flushed).await;
    put_response(
        ctx,
        request,
        &result,
        &put.lengths,
        put.reported_queue_id,
        put.transaction_id,
    )
}

/// Answers `result` at once, or hands it to the flush wait when `flushed` is set.
fn settle(
    ctx: &BrokerContext,
    request: &RemotingCommand,
    (result, flushed): (
        PutMessageResult,
        Option<tokio::sync::oneshot::Receiver<bool>>,
    ),
    lengths: Vec<usize>,
    reported_queue_id: i32,
    transaction_id: Option<String>,
) -> Sent {
    match flushed {
        None => Sent::Answered(put_response(
            ctx,
            request,
            &result,
            &lengths,
            reported_queue_id,
            transaction_id,
        )),
        Some(flushed) => Sent::Flushing(Box::new(FlushingPut {
            result,
            flushed,
            lengths,
            reported_queue_id,
            transaction_id,
        })),
    }
}

/// Steps 1–10 of a send up to its append.
fn send_now(
    ctx: &BrokerContext,
    conn: &Connection,
    request: &RemotingCommand,
) -> Result<Sent, crate::error::ProcessorError> {
    let mut header = SendMessageRequestHeader::decode_for_code(request.code, &request.ext_fields)?;
    let batch = header.is_batch()
        || request.code == i32::from(tern_common::protocol::RequestCode::SendBatchMessage);

    // Step 2: topic name and forbidden system topics.
    if let Err(err) = validate_topic(&header.topic) {
        return Err(reject(ResponseCode::InvalidParameter, format!("{err}")));
    }
    if is_send_forbidden_topic(&header.topic) {
        return Err(reject(
            ResponseCode::NoPermission,
            format!("Sending message to topic[{}] is forbidden.", header.topic),
        ));
    }
    // Step 3: topic lookup or auto-creation.
    let topic_config = find_or_create_topic(ctx, &header)?;
    if !perm::is_writeable(topic_config.perm) {
        return Err(reject(
            ResponseCode::NoPermission,
            format!("the topic[{}] sending message is forbidden", header.topic),
        ));
    }
    // Step 4: queue id.
    let max_queues = topic_config
        .read_queue_nums
        .max(topic_config.write_queue_nums);
    if header.queue_id >= max_queues {
        return Err(reject(
            ResponseCode::InvalidParameter,
            format!(
                "request queueId[{}] is illegal, {} Producer: {}",
                header.queue_id,
                topic_config.topic_name,
                conn.peer_addr()
            ),
        ));
    }
    let queue_id = if header.queue_id < 0 {
        rand::thread_rng().gen_range(0..topic_config.write_queue_nums.max(1))
    } else {
        header.queue_id
    };
    // Step 5: sizes.
    let max_size = usize::try_from(ctx.config.max_message_size).unwrap_or(usize::MAX);
    if request.body.len() > max_size {
        return Err(reject(
            ResponseCode::MessageIllegal,
            format!(
                "message body size exceeded, body size {} max {max_size}",
                request.body.len()
            ),
        ));
    }
    let properties_text = header.properties.take().unwrap_or_default();
    if properties_text.len() > MAX_PROPERTIES_LEN_BYTES {
        return Err(reject(
            ResponseCode::MessageIllegal,
            format!(
                "message properties size exceeded, size {}",
                properties_text.len()
            ),
        ));
    }
    if batch {
        header.properties = Some(properties_text);
        send_batch(ctx, conn, request, &header, &topic_config, queue_id)
    } else {
        send_single(
            ctx,
            conn,
            request,
            &header,
            &topic_config,
            queue_id,
            properties_text,
        )
    }
}

/// Step 3: the topic's config, auto-created through the template when allowed.
fn find_or_create_topic(
    ctx: &BrokerContext,
    header: &SendMessageRequestHeader,
) -> Result<TopicConfig, crate::error::ProcessorError> {
    if let Some(config) = ctx.topics.get(&header.topic) {
        return Ok(config);
    }
    let created = if is_retry_topic(&header.topic) {
        Some(
            ctx.topics
                .get_or_create(&header.topic, 1, perm::PERM_READ_WRITE)?,
        )
    } else {
        ctx.topics.create_topic_in_send(
            &header.topic,
            &header.default_topic,
            header.default_topic_queue_nums,
            0,
        )?
    };
    match created {
        Some((config, new)) => {
            if new {
                tracing::info!(topic = %config.topic_name, queues = config.write_queue_nums, "auto-created topic");
                ctx.registration.trigger();
            }
            Ok(config)
        }
        None => Err(reject(
            ResponseCode::TopicNotExist,
            format!(
                "topic[{}] not exist, apply first please! https://rocketmq.apache.org/docs/bestPractice/06FAQ",
                header.topic
            ),
        )),
    }
}

/// Step 6–9 for one message: retry/DLQ, broker properties, half message, delay level.
fn rewrite(
    ctx: &BrokerContext,
    request: &RemotingCommand,
    header: &SendMessageRequestHeader,
    topic_config: &TopicConfig,
    queue_id: i32,
    mut properties: BTreeMap<String, String>,
) -> Result<Target, crate::error::ProcessorError> {
    let mut topic = header.topic.clone();
    let mut queue_id = queue_id;
    let mut sys_flag = header.sys_flag;
    let reconsume_times = header.reconsume_times.unwrap_or(0);

    // Step 6: retry topic → DLQ when the retries are exhausted.
    if is_retry_topic(&topic) {
        let group = group_of_retry_or_dlq_topic(&topic)
            .unwrap_or_default()
            .to_string();
        let group_config = ctx.groups.find_or_create(&group)?.ok_or_else(|| {
            reject(
                ResponseCode::SubscriptionGroupNotExist,
                format!("subscription group not exist, {group}"),
            )
        })?;
        let max = if request.version >= VERSION_WITH_MAX_RECONSUME_TIMES {
            header
                .max_reconsume_times
                .unwrap_or(group_config.retry_max_times)
        } else {
            group_config.retry_max_times
        };
        if reconsume_times > max {
            let dlq = dlq_topic(&group);
            let (_, created) = ctx.topics.get_or_create(&dlq, 1, perm::PERM_READ_WRITE)?;
            if created {
                ctx.registration.trigger();
            }
            topic = dlq;
            queue_id = 0;
            properties.insert(property_key::DELAY.into(), "-1".into());
        }
    }

    // Step 7: broker-added properties.
    let uniq = match properties.get(property_key::UNIQ_KEY) {
        Some(u) if !u.is_empty() => u.clone(),
        _ => {
            let u = new_uniq_id();
            properties.insert(property_key::UNIQ_KEY.into(), u.clone());
            u
        }
    };
    properties.insert(
        property_key::CLUSTER.into(),
        ctx.config.broker_cluster_name.clone(),
    );
    if topic_config.topic_filter_type == TopicFilterType::MultiTag {
        sys_flag |= sys_flag::MULTI_TAGS_FLAG;
    }

    let delay_level: i64 = properties
        .get(property_key::DELAY)
        .and_then(|d| d.trim().parse().ok())
        .unwrap_or(0);
    let reported_queue_id = queue_id;
    let mut transaction_id = None;

    // Step 8: transactional half message (§5.2), except the pre-4.6.1 compatibility case.
    let is_tran = properties
        .get(property_key::TRAN_MSG)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let half = is_tran && !(reconsume_times > 0 && delay_level > 0);
    if half {
        properties.insert(property_key::TRANSACTION_ID.into(), uniq.clone());
        properties.insert(property_key::REAL_TOPIC.into(), topic.clone());
        properties.insert(property_key::REAL_QID.into(), queue_id.to_string());
        sys_flag = sys_flag::reset_transaction_value(sys_flag, sys_flag::TRANSACTION_NOT_TYPE);
        topic = RMQ_SYS_TRANS_HALF_TOPIC.to_string();
        queue_id = 0;
        transaction_id = Some(uniq);
    } else if delay_level > 0
        && sys_flag::transaction_value(sys_flag) != sys_flag::TRANSACTION_PREPARED_TYPE
        && sys_flag::transaction_value(sys_flag) != sys_flag::TRANSACTION_ROLLBACK_TYPE
    {
        // Step 9: delay level → SCHEDULE_TOPIC_XXXX (§6.2).
        (topic, queue_id) =
            park_for_delay_level(ctx, &topic, queue_id, delay_level, &mut properties);
    } else if delay_level <= 0 {
        // Timer messages (§6.5) are parked in `rmq_sys_wheel_timer` by the schedule module.
        if let Some((timer_topic, timer_queue)) =
            crate::schedule::rewrite_timer(ctx, &topic, queue_id, &mut properties)?
        {
            topic = timer_topic;
            queue_id = timer_queue;
        }
    }
    Ok(Target {
        topic,
        queue_id,
        reported_queue_id,
        properties: encode_properties(&properties),
        sys_flag,
        transaction_id,
    })
}

/// Property names whose presence calls for the full rewrite of [`rewrite`]: a delay level,
/// a transactional flag, timer properties, or a cluster name the broker replaces.
fn needs_full_rewrite(name: &str) -> bool {
    name == property_key::DELAY
        || name == property_key::TRAN_MSG
        || name == property_key::CLUSTER
        || name.starts_with("TIMER_")
}

/// The stored property string of a plain send (no retry topic, delay, transaction or timer)
/// computed on the string itself: `text` with the broker's `CLUSTER` entry added in key
/// order. `None` unless the result is byte for byte what decoding `text` into a map, adding
/// `CLUSTER` and encoding it again ([`rewrite`]) gives: every entry valid, names strictly
/// increasing (so no repeats), nothing skipped, a `UNIQ_KEY` present (RocketMQ clients always
/// send one) and none of the names [`needs_full_rewrite`] looks for. The map round trip
/// costs an allocation per property, which this path avoids for the common send.
fn plain_send_properties(text: &str, cluster: &str) -> Option<String> {
    use tern_common::message::property::{
        is_valid_property, iter_properties, NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR,
    };
    if !is_valid_property(property_key::CLUSTER, cluster) {
        return None;
    }
    let mut out =
        String::with_capacity(text.len() + property_key::CLUSTER.len() + cluster.len() + 2);
    let push = |out: &mut String, name: &str, value: &str| {
        out.push_str(name);
        out.push(NAME_VALUE_SEPARATOR);
        out.push_str(value);
        out.push(PROPERTY_SEPARATOR);
    };
    let mut consumed = 0usize;
    let mut previous: Option<&str> = None;
    let mut cluster_written = false;
    let mut has_uniq = false;
    for (name, value) in iter_properties(text) {
        // `iter_properties` yields only entries `is_valid_property` accepts (non-empty, split
        // on the separators), so the check is not repeated here.
        debug_assert!(is_valid_property(name, value));
        if needs_full_rewrite(name) || previous.is_some_and(|p| p >= name) {
            return None;
        }
        if !cluster_written && name > property_key::CLUSTER {
            push(&mut out, property_key::CLUSTER, cluster);
            cluster_written = true;
        }
        has_uniq |= name == property_key::UNIQ_KEY;
        push(&mut out, name, value);
        consumed += name.len() + value.len() + 2;
        previous = Some(name);
    }
    if consumed != text.len() || !has_uniq {
        return None;
    }
    if !cluster_written {
        push(&mut out, property_key::CLUSTER, cluster);
    }
    Some(out)
}

/// Parks a message with delay level `delay_level` (> 0) in `SCHEDULE_TOPIC_XXXX` (PROTOCOL.md
/// §6.2): the level is clamped to the configured table, `REAL_TOPIC`/`REAL_QID` remember the
/// destination, and the returned (topic, queue id) is the schedule queue `level - 1`. Used by
/// sends and by transaction commits, which RocketMQ schedules the same way.
pub(crate) fn park_for_delay_level(
    ctx: &BrokerContext,
    topic: &str,
    queue_id: i32,
    delay_level: i64,
    properties: &mut BTreeMap<String, String>,
) -> (String, i32) {
    let max_level = i64::try_from(ctx.config.message_delay_level.len()).unwrap_or(18);
    let level = delay_level.clamp(1, max_level.max(1));
    properties.insert(property_key::DELAY.into(), level.to_string());
    properties.insert(property_key::REAL_TOPIC.into(), topic.to_string());
    properties.insert(property_key::REAL_QID.into(), queue_id.to_string());
    (
        SCHEDULE_TOPIC_XXXX.to_string(),
        i32::try_from(level - 1).unwrap_or(0),
    )
}

#[allow(clippy::too_many_arguments)] // Internal step function; the arguments are the send's parts.
fn send_single(
    ctx: &BrokerContext,
    conn: &Connection,
    request: &RemotingCommand,
    header: &SendMessageRequestHeader,
    topic_config: &TopicConfig,
    queue_id: i32,
    properties_text: String,
) -> Result<Sent, crate::error::ProcessorError> {
    let fast = if is_retry_topic(&header.topic) {
        None
    } else {
        plain_send_properties(&properties_text, &ctx.config.broker_cluster_name)
    };
    let target = match fast {
        Some(properties) => {
            let mut sys_flag = header.sys_flag;
            if topic_config.topic_filter_type == TopicFilterType::MultiTag {
                sys_flag |= sys_flag::MULTI_TAGS_FLAG;
            }
            Target {
                topic: header.topic.clone(),
                queue_id,
                reported_queue_id: queue_id,
                properties,
                sys_flag,
                transaction_id: None,
            }
        }
        None => {
            let properties = decode_properties(&properties_text);
            rewrite(ctx, request, header, topic_config, queue_id, properties)?
        }
    };
    let properties = target.properties;
    if properties.len() > MAX_PROPERTIES_LEN_BYTES {
        return Err(reject(
            ResponseCode::MessageIllegal,
            "message properties size exceeded",
        ));
    }
    let input = RecordInput {
        topic: target.topic,
        queue_id: target.queue_id,
        flag: header.flag,
        body: request.body.clone(),
        properties,
        sys_flag: target.sys_flag,
        born_timestamp: header.born_timestamp,
        born_host: conn.peer_addr(),
        store_host: ctx.store_host,
        reconsume_times: header.reconsume_times.unwrap_or(0),
        prepared_transaction_offset: 0,
    };
    let lengths = vec![encoded_len(&input)];
    let appended = ctx.store.append(std::slice::from_ref(&input));
    Ok(settle(
        ctx,
        request,
        appended,
        lengths,
        target.reported_queue_id,
        target.transaction_id,
    ))
}

fn send_batch(
    ctx: &BrokerContext,
    conn: &Connection,
    request: &RemotingCommand,
    header: &SendMessageRequestHeader,
    topic_config: &TopicConfig,
    queue_id: i32,
) -> Result<Sent, crate::error::ProcessorError> {
    if is_retry_topic(&header.topic) {
        return Err(reject(
            ResponseCode::MessageIllegal,
            "batch request does not support retry group",
        ));
    }
    let batch_props = decode_properties(header.properties.as_deref().unwrap_or_default());
    if sys_flag::transaction_value(header.sys_flag) != sys_flag::TRANSACTION_NOT_TYPE
        || batch_props.contains_key(property_key::TRAN_MSG)
    {
        return Err(reject(
            ResponseCode::MessageIllegal,
            "batch message does not support transaction",
        ));
    }
    if batch_props
        .get(property_key::DELAY)
        .is_some_and(|d| d.trim().parse::<i64>().is_ok_and(|v| v > 0))
    {
        return Err(reject(
            ResponseCode::MessageIllegal,
            "batch message does not support delay level",
        ));
    }
    let entries = decode_batch(&request.body).map_err(|err| {
        reject(
            ResponseCode::MessageIllegal,
            format!("bad batch body: {err}"),
        )
    })?;
    if entries.is_empty() {
        return Err(reject(ResponseCode::MessageIllegal, "empty batch"));
    }
    let mut sys = header.sys_flag;
    if topic_config.topic_filter_type == TopicFilterType::MultiTag {
        sys |= sys_flag::MULTI_TAGS_FLAG;
    }
    let mut inputs = Vec::with_capacity(entries.len());
    for entry in entries {
        let mut props = decode_properties(&entry.properties);
        if props
            .get(property_key::DELAY)
            .is_some_and(|d| d.trim().parse::<i64>().is_ok_and(|v| v > 0))
        {
            return Err(reject(
                ResponseCode::MessageIllegal,
                "batch message does not support delay level",
            ));
        }
        let properties = if props
            .get(property_key::UNIQ_KEY)
            .is_some_and(|u| !u.is_empty())
        {
            entry.properties
        } else {
            props.insert(property_key::UNIQ_KEY.into(), new_uniq_id());
            encode_properties(&props)
        };
        if properties.len() > MAX_PROPERTIES_LEN_BYTES {
            return Err(reject(
                ResponseCode::MessageIllegal,
                "message properties size exceeded",
            ));
        }
        inputs.push(RecordInput {
            topic: header.topic.clone(),
            queue_id,
            flag: entry.flag,
            body: entry.body,
            properties,
            sys_flag: sys,
            born_timestamp: header.born_timestamp,
            born_host: conn.peer_addr(),
            store_host: ctx.store_host,
            reconsume_times: header.reconsume_times.unwrap_or(0),
            prepared_transaction_offset: 0,
        });
    }
    let lengths: Vec<usize> = inputs.iter().map(encoded_len).collect();
    let appended = ctx.store.append_batch(&inputs);
    Ok(settle(ctx, request, appended, lengths, queue_id, None))
}

/// Step 10: store status → response (with the full header when the message is stored).
fn put_response(
    ctx: &BrokerContext,
    request: &RemotingCommand,
    result: &PutMessageResult,
    lengths: &[usize],
    reported_queue_id: i32,
    transaction_id: Option<String>,
) -> RemotingCommand {
    let (code, remark) = match result.status {
        PutMessageStatus::PutOk => (ResponseCode::Success, None),
        PutMessageStatus::FlushDiskTimeout => {
            (ResponseCode::FlushDiskTimeout, Some("flush disk timeout"))
        }
        PutMessageStatus::CreateMappedFileFailed => (
            ResponseCode::SystemError,
            Some("create mapped file failed, server is busy or broken"),
        ),
        PutMessageStatus::MessageIllegal | PutMessageStatus::PropertiesSizeExceeded => (
            ResponseCode::MessageIllegal,
            Some("the message is illegal, maybe msg body or properties length not matched"),
        ),
        PutMessageStatus::ServiceNotAvailable => (
            ResponseCode::ServiceNotAvailable,
            Some("service not available now, maybe disk full or the store is read-only"),
        ),
        PutMessageStatus::OsPageCacheBusy => (
            ResponseCode::SystemBusy,
            Some("[PC_SYNCHRONIZED]broker busy, start flow control for a while"),
        ),
        _ => (ResponseCode::SystemError, Some("UNKNOWN_ERROR")),
    };
    let stored = matches!(code, ResponseCode::Success | ResponseCode::FlushDiskTimeout);
    let mut response = RemotingCommand::response_to(request, code);
    if let Some(remark) = remark {
        response.remark = Some(remark.to_string());
    }
    match (&result.append, stored) {
        (Some(append), true) => {
            response.ext_fields = ExtFields::with_capacity(6);
            SendMessageResponseHeader::encode_stored(
                &mut response.ext_fields,
                OffsetMsgIds::new(ctx.store_host, append.phy_offset, lengths),
                reported_queue_id,
                append.queue_offset,
                transaction_id.as_deref(),
            );
            ctx.stats.record_put(
                u64::try_from(lengths.len()).unwrap_or(0),
                u64::try_from(lengths.iter().sum::<usize>()).unwrap_or(0),
            );
            response
        }
        _ => {
            ctx.stats.record_send_failure();
            if response.code == i32::from(ResponseCode::Success) {
                // A PutOk without an append result breaks the store's contract; answer
                // SYSTEM_ERROR rather than a success without a header.
                response.code = i32::from(ResponseCode::SystemError);
                response.remark = Some("store returned no append result".into());
            }
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What [`rewrite`] stores for a plain send: decode, add CLUSTER, encode.
    fn by_map(text: &str, cluster: &str) -> String {
        let mut props = decode_properties(text);
        props.insert(property_key::CLUSTER.into(), cluster.into());
        encode_properties(&props)
    }

    #[test]
    fn plain_send_properties_match_the_map_round_trip() {
        let cases = [
            "UNIQ_KEY\u{1}AB\u{2}",
            "KEYS\u{1}k1 k2\u{2}TAGS\u{1}TagA\u{2}UNIQ_KEY\u{1}AB\u{2}WAIT\u{1}true\u{2}",
            "A\u{1}1\u{2}UNIQ_KEY\u{1}AB\u{2}",
            "UNIQ_KEY\u{1}AB\u{2}WAIT\u{1}false\u{2}a_lower\u{1}x\u{2}",
            "BUYER_ID\u{1}b\u{2}CLUSTERX\u{1}c\u{2}UNIQ_KEY\u{1}AB\u{2}",
        ];
        for text in cases {
            let fast = plain_send_properties(text, "DefaultCluster").expect(text);
            assert_eq!(fast, by_map(text, "DefaultCluster"), "{text:?}");
        }
    }

    #[test]
    fn plain_send_properties_leave_special_or_irregular_strings_to_the_map() {
        let cases = [
            // No UNIQ_KEY: the broker must generate one.
            "TAGS\u{1}TagA\u{2}",
            // Out of order, repeated, or not terminated.
            "WAIT\u{1}true\u{2}UNIQ_KEY\u{1}AB\u{2}",
            "UNIQ_KEY\u{1}AB\u{2}UNIQ_KEY\u{1}CD\u{2}",
            "UNIQ_KEY\u{1}AB",
            // An entry the decoder drops.
            "EMPTY\u{1}\u{2}UNIQ_KEY\u{1}AB\u{2}",
            // Names that need the full rewrite.
            "DELAY\u{1}3\u{2}UNIQ_KEY\u{1}AB\u{2}",
            "TRAN_MSG\u{1}true\u{2}UNIQ_KEY\u{1}AB\u{2}",
            "TIMER_DELAY_SEC\u{1}5\u{2}UNIQ_KEY\u{1}AB\u{2}",
            "CLUSTER\u{1}other\u{2}UNIQ_KEY\u{1}AB\u{2}",
        ];
        for text in cases {
            assert_eq!(
                plain_send_properties(text, "DefaultCluster"),
                None,
                "{text:?}"
            );
        }
        // A cluster name that is not a valid property value is left to the map path too.
        assert_eq!(
            plain_send_properties("UNIQ_KEY\u{1}AB\u{2}", "a\u{2}b"),
            None
        );
    }
}
