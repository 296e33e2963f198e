//! Admin requests (PROTOCOL.md §2.5): topics, subscription groups, statistics, connections,
//! offset reset, and the requests forwarded to a consumer (GET_CONSUMER_RUNNING_INFO,
//! CONSUME_MESSAGE_DIRECTLY).

use std::collections::BTreeMap;
use std::time::Duration;

use tern_common::message::{decode_offset_msg_id, is_system_topic, validate_topic};
use tern_common::protocol::body::encode_body;
use tern_common::protocol::body::{
    Connection as ConnectionBody, ConsumeStats, ConsumerConnection, KVTable, MqMap, OffsetWrapper,
    ProducerConnection, ResetOffsetBody, SubscriptionGroupConfig,
    TopicConfigAndMappingSerializeWrapper, TopicOffset, TopicStatsTable,
};
use tern_common::protocol::command::TERN_VERSION;
use tern_common::protocol::header::{
    ConsumeMessageDirectlyResultRequestHeader, CreateTopicRequestHeader,
    DeleteSubscriptionGroupRequestHeader, DeleteTopicRequestHeader,
    GetAllTopicConfigResponseHeader, GetConsumeStatsRequestHeader,
    GetConsumerConnectionListRequestHeader, GetConsumerRunningInfoRequestHeader,
    GetProducerConnectionListRequestHeader, GetTopicConfigRequestHeader,
    GetTopicStatsInfoRequestHeader, ResetConsumerClientOffsetRequestHeader,
    ResetOffsetRequestHeader,
};
use tern_common::protocol::{RemotingCommand, RequestCode, ResponseCode};
use tern_common::remoting::{Connection, RemotingError};
use tern_common::route::{MessageQueue, TopicConfig, TopicFilterType};
use tracing::{debug, info};

use super::{decode, encode, reject, success, success_with, ProcessorResult};
use crate::context::BrokerContext;

fn check_user_topic(ctx: &BrokerContext, topic: &str) -> Result<(), crate::error::ProcessorError> {
    if let Err(err) = validate_topic(topic) {
        return Err(reject(ResponseCode::InvalidParameter, format!("{err}")));
    }
    if is_system_topic(topic)
        || topic == ctx.config.broker_cluster_name
        || topic == ctx.config.broker_name
    {
        return Err(reject(
            ResponseCode::InvalidParameter,
            format!("The topic[{topic}] is conflict with system topic."),
        ));
    }
    Ok(())
}

/// UPDATE_AND_CREATE_TOPIC (17): creates or replaces a topic, persists it and re-registers.
///
/// # Errors
/// Header errors; INVALID_PARAMETER for bad or system names and queue counts.
pub async fn handle_update_and_create_topic(
    ctx: &BrokerContext,
    _conn: &Connection,
    request: RemotingCommand,
) -> ProcessorResult {
    let header: CreateTopicRequestHeader = request.decode_header()?;
    check_user_topic(ctx, &header.topic)?;
    let valid_nums = |n: i32| (1..=tern_common::route::MAX_QUEUES_PER_BROKER).contains(&n);
    if !valid_nums(header.read_queue_nums) || !valid_nums(header.write_queue_nums) {
        return Err(reject(
            ResponseCode::InvalidParameter,
            "queue nums must be within 1..=65536",
        ));
    }
    let config = TopicConfig {
        topic_name: header.topic.clone(),
        read_queue_nums: header.read_queue_nums,
        write_queue_nums: header.write_queue_nums,
        perm: header.perm,
        topic_filter_type: TopicFilterType::from_name(&header.topic_filter_type)
            .unwrap_or_default(),
        topic_sys_flag: header.topic_sys_flag.unwrap_or(0),
        order: header.order,
        attributes: BTreeMap::new(),
    };
    ctx.topics.put(config)?;
    info!(topic = %header.topic, read = header.read_queue_nums, write = header.write_queue_nums, "topic created or updated");
    ctx.registration.trigger();
    Ok(Some(success(&request)))
}

/// DELETE_TOPIC_IN_BROKER (215): removes the topic, its offsets and its queues.
///
/// # Errors
/// Header errors; INVALID_PARAMETER for system topics.
pub async fn handle_delete_topic(
    ctx: &BrokerContext,
    _conn: &Connection,
    request: RemotingCommand,
) -> ProcessorResult {
    let header: DeleteTopicRequestHeader = request.decode_header()?;
    check_user_topic(ctx, &header.topic)?;
    if ctx.topics.remove(&header.topic)?.is_some() {
        ctx.offsets.remove_topic(&header.topic);
        ctx.store.delete_topic(&header.topic);
        info!(topic = %header.topic, "topic deleted");
        ctx.registration.trigger();
    }
    Ok(Some(success(&request)))
}

/// GET_ALL_TOPIC_CONFIG (21): every topic with the table's data version.
///
/// # Errors
/// Body encode errors.
pub async fn handle_get_all_topic_config(
    ctx: &BrokerContext,
    _conn: &Connection,
    request: RemotingCommand,
) -> ProcessorResult {
    let wrapper = ctx.topics.wrapper();
    let total = i32::try_from(wrapper.topic_config_table.len()).unwrap_or(i32::MAX);
    let body = TopicConfigAndMappingSerializeWrapper {
        data_version: wrapper.data_version,
        topic_config_table: wrapper.topic_config_table,
        ..Default::default()
    };
    let bytes = encode(&request, &body)?;
    Ok(Some(
        success(&request)
            .with_header(&GetAllTopicConfigResponseHeader {
                total_topic_num: Some(total),
            })
            .with_body(bytes),
    ))
}

/// GET_TOPIC_CONFIG (351): one topic's config, or TOPIC_NOT_EXIST.
///
/// # Errors
/// Header errors; TOPIC_NOT_EXIST.
pub async fn handle_get_topic_config(
    ctx: &BrokerContext,
    _conn: &Connection,
    request: RemotingCommand,
) -> ProcessorResult {
    let header: GetTopicConfigRequestHeader = request.decode_header()?;
    let config = ctx.topics.get(&header.topic).ok_or_else(|| {
        reject(
            ResponseCode::TopicNotExist,
            format!("No topic in this broker. topic: {}", header.topic),
        )
    })?;
    success_with(&request, &config)
}

/// GET_BROKER_RUNTIME_INFO (28): a KVTable of counters and store figures.
///
/// # Errors
/// Body encode errors.
pub async fn handle_get_broker_runtime_info(
    ctx: &BrokerContext,
    _conn: &Connection,
    request: RemotingCommand,
) -> ProcessorResult {
    let (put_total, put_bytes, get_total, send_failures) = ctx.stats.snapshot();
    let (producer_groups, consumer_groups, channels) = ctx.clients.counts();
    let mut table = BTreeMap::new();
    let mut kv = |k: &str, v: String| {
        table.insert(k.to_string(), v);
    };
    kv("brokerVersionDesc", "V5_3_3".into());
    kv("brokerVersion", TERN_VERSION.to_string());
    kv("brokerName", ctx.config.broker_name.clone());
    kv("clusterName", ctx.config.broker_cluster_name.clone());
    kv("brokerAddr", ctx.store_host.to_string());
    kv("bootTimestamp", ctx.stats.started_at_ms.to_string());
    kv(
        "runtime",
        format!("{} s", ctx.stats.started_at.elapsed().as_secs()),
    );
    kv("msgPutTotalTodayNow", put_total.to_string());
    kv("msgPutTotalBytes", put_bytes.to_string());
    kv("msgGetTotalTodayNow", get_total.to_string());
    kv("sendFailures", send_failures.to_string());
    kv("commitLogMaxOffset", ctx.store.max_phy_offset().to_string());
    kv("commitLogMinOffset", ctx.store.min_phy_offset().to_string());
    kv("storeWritable", ctx.store.is_writable().to_string());
    kv("topicCount", ctx.topics.topic_names().len().to_string());
    kv("producerGroupCount", producer_groups.to_string());
    kv("consumerGroupCount", consumer_groups.to_string());
    kv("clientChannelCount", channels.to_string());
    kv("pullRequestHoldCount", ctx.pull_hold.len().to_string());
    success_with(&request, &KVTable { table })
}

/// GET_CONSUME_STATS (208): per queue of the group's topics, broker (max) offset, consumer
/// offset and the store time of the last consumed message.
///
/// # Errors
/// Header errors.
pub async fn handle_get_consume_stats(
    ctx: &BrokerContext,
    _conn: &Connection,
    request: RemotingCommand,
) -> ProcessorResult {
    let header: GetConsumeStatsRequestHeader = request.decode_header()?;
    let group = &header.consumer_group;
    let topics: Vec<String> = match header.topic.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => vec![t.to_string()],
        None => {
            let mut topics = ctx.offsets.topics_of_group(group);
            if let Some(info) = ctx.clients.consumer_group(group) {
                topics.extend(info.subscriptions.keys().cloned());
            }
            topics.sort();
            topics.dedup();
            topics
        }
    };
    let mut table = MqMap::new();
    for topic in topics {
        let Some(config) = ctx.topics.get(&topic) else {
            continue;
        };
        for queue_id in 0..config.read_queue_nums {
            let broker_offset = ctx.store.max_offset_in_queue(&topic, queue_id);
            let consumer_offset = ctx
                .offsets
                .query(group, &topic, queue_id)
                .unwrap_or(0)
                .max(0);
            let last_timestamp = if consumer_offset > 0 {
                ctx.store
                    .message_store_time(&topic, queue_id, consumer_offset - 1)
                    .unwrap_or(0)
            } else {
                0
            };
            table.insert(
                MessageQueue::new(topic.clone(), ctx.config.broker_name.clone(), queue_id),
                OffsetWrapper {
                    broker_offset,
                    consumer_offset,
                    pull_offset: consumer_offset,
                    last_timestamp,
                },
            );
        }
    }
    success_with(
        &request,
        &ConsumeStats {
            consume_tps: 0.0,
            offset_table: table,
        },
    )
}

/// GET_TOPIC_STATS_INFO (202): min/max offsets per queue, or TOPIC_NOT_EXIST.
///
/// # Errors
/// Header errors; TOPIC_NOT_EXIST.
pub async fn handle_get_topic_stats_info(
    ctx: &BrokerContext,
    _conn: &Connection,
    request: RemotingCommand,
) -> ProcessorResult {
    let header: GetTopicStatsInfoRequestHeader = request.decode_header()?;
    let config = ctx.topics.get(&header.topic).ok_or_else(|| {
        reject(
            ResponseCode::TopicNotExist,
            format!("topic[{}] not exist", header.topic),
        )
    })?;
    let mut table = MqMap::new();
    for queue_id in 0..config.write_queue_nums {
        let min_offset = ctx
            .store
            .min_offset_in_queue(&header.topic, queue_id)
            .max(0);
        let max_offset = ctx.store.max_offset_in_queue(&header.topic, queue_id);
        let last_update_timestamp = if max_offset > 0 {
            ctx.store
                .message_store_time(&header.topic, queue_id, max_offset - 1)
                .unwrap_or(0)
        } else {
            0
        };
        table.insert(
            MessageQueue::new(
                header.topic.clone(),
                ctx.config.broker_name.clone(),
                queue_id,
            ),
            TopicOffset {
                min_offset,
                max_offset,
                last_update_timestamp,
            },
        );
    }
    success_with(
        &request,
        &TopicStatsTable {
            offset_table: table,
            topic_put_tps: 0.0,
        },
    )
}

/// GET_CONSUMER_CONNECTION_LIST (203): the group's connections and subscriptions, or
/// CONSUMER_NOT_ONLINE.
///
/// # Errors
/// Header errors; CONSUMER_NOT_ONLINE.
pub async fn handle_get_consumer_connection_list(
    ctx: &BrokerContext,
    _conn: &Connection,
    request: RemotingCommand,
) -> ProcessorResult {
    let header: GetConsumerConnectionListRequestHeader = request.decode_header()?;
    let info = ctx
        .clients
        .consumer_group(&header.consumer_group)
        .filter(|i| !i.channels.is_empty())
        .ok_or_else(|| {
            reject(
                ResponseCode::ConsumerNotOnline,
                format!("the consumer group[{}] not online", header.consumer_group),
            )
        })?;
    let body = ConsumerConnection {
        connection_set: info
            .channels
            .values()
            .map(|c| ConnectionBody {
                client_addr: c.conn.peer_addr().to_string(),
                client_id: c.client_id.clone(),
                language: c.language.name().to_string(),
                version: c.version,
            })
            .collect(),
        consume_from_where: info.consume_from_where,
        consume_type: info.consume_type,
        message_model: info.message_model,
        subscription_table: info.subscriptions,
    };
    success_with(&request, &body)
}

/// GET_PRODUCER_CONNECTION_LIST (204): the producer group's connections.
///
/// # Errors
/// Header errors; SYSTEM_ERROR when the group has no connection.
pub async fn handle_get_producer_connection_list(
    ctx: &BrokerContext,
    _conn: &Connection,
    request: RemotingCommand,
) -> ProcessorResult {
    let header: GetProducerConnectionListRequestHeader = request.decode_header()?;
    let channels = ctx.clients.producer_channels(&header.producer_group);
    if channels.is_empty() {
        return Err(reject(
            ResponseCode::SystemError,
            format!("the producer group[{}] not exist", header.producer_group),
        ));
    }
    let body = ProducerConnection {
        connection_set: channels
            .iter()
            .map(|c| ConnectionBody {
                client_addr: c.conn.peer_addr().to_string(),
                client_id: c.client_id.clone(),
                language: c.language.name().to_string(),
                version: c.version,
            })
            .collect(),
    };
    success_with(&request, &body)
}

/// INVOKE_BROKER_TO_RESET_OFFSET (222): computes the group's new offsets (explicit offset, or
/// the first message at/after `timestamp`, -1 = the max offset), stores them, and sends
/// RESET_CONSUMER_CLIENT_OFFSET (220, oneway) to the group's consumers. Without `isForce`,
/// an offset only moves backwards.
///
/// # Errors
/// Header errors; TOPIC_NOT_EXIST; SUBSCRIPTION_GROUP_NOT_EXIST.
pub async fn handle_reset_offset(
    ctx: &BrokerContext,
    _conn: &Connection,
    request: RemotingCommand,
) -> ProcessorResult {
    let header: ResetOffsetRequestHeader = request.decode_header()?;
    let config = ctx.topics.get(&header.topic).ok_or_else(|| {
        reject(
            ResponseCode::TopicNotExist,
            format!("[reset-offset] topic not exist, {}", header.topic),
        )
    })?;
    if ctx.groups.get(&header.group).is_none() {
        return Err(reject(
            ResponseCode::SubscriptionGroupNotExist,
            format!(
                "[reset-offset] subscription group not exist, {}",
                header.group
            ),
        ));
    }
    let queues: Vec<i32> = match header.queue_id.filter(|q| *q >= 0) {
        Some(q) if q < config.read_queue_nums => vec![q],
        Some(q) => {
            return Err(reject(
                ResponseCode::InvalidParameter,
                format!("queueId[{q}] is illegal"),
            ));
        }
        None => (0..config.read_queue_nums).collect(),
    };
    let mut table = MqMap::new();
    for queue_id in queues {
        let max = ctx.store.max_offset_in_queue(&header.topic, queue_id);
        let min = ctx
            .store
            .min_offset_in_queue(&header.topic, queue_id)
            .max(0);
        let target = match header.offset.filter(|o| *o >= 0) {
            Some(o) => o.clamp(min, max),
            None if header.timestamp < 0 => max,
            None => ctx
                .store
                .offset_by_time(&header.topic, queue_id, header.timestamp, false),
        };
        let current = ctx.offsets.query(&header.group, &header.topic, queue_id);
        let offset = match current {
            Some(c) if !header.is_force && target >= c => c,
            _ => target,
        };
        ctx.offsets
            .commit(&header.group, &header.topic, queue_id, offset);
        table.insert(
            MessageQueue::new(
                header.topic.clone(),
                ctx.config.broker_name.clone(),
                queue_id,
            ),
            offset,
        );
    }
    let body = ResetOffsetBody {
        offset_table: table,
    };
    let client_header = ResetConsumerClientOffsetRequestHeader {
        topic: header.topic.clone(),
        group: header.group.clone(),
        timestamp: header.timestamp,
        is_force: header.is_force,
    };
    for conn in ctx.clients.consumer_connections(&header.group) {
        let ser = conn.last_serialize_type();
        let Ok(bytes) = encode_body(&body, ser) else {
            continue;
        };
        let notice =
            RemotingCommand::request(RequestCode::ResetConsumerClientOffset, &client_header)
                .with_serialize_type(ser)
                .with_body(bytes)
                .oneway();
        if let Err(err) = conn.send_oneway(notice) {
            debug!(conn = conn.id(), cause = %err, "reset offset notice not delivered");
        }
    }
    info!(group = %header.group, topic = %header.topic, timestamp = header.timestamp, "consumer offsets reset");
    success_with(&request, &body)
}

/// UPDATE_AND_CREATE_SUBSCRIPTIONGROUP (200): body = SubscriptionGroupConfig.
///
/// # Errors
/// Body decode errors; INVALID_PARAMETER for an empty group name.
pub async fn handle_update_and_create_subscription_group(
    ctx: &BrokerContext,
    _conn: &Connection,
    request: RemotingCommand,
) -> ProcessorResult {
    let config: SubscriptionGroupConfig = decode(&request)?;
    if config.group_name.trim().is_empty() {
        return Err(reject(
            ResponseCode::InvalidParameter,
            "groupName must not be empty",
        ));
    }
    info!(group = %config.group_name, "subscription group created or updated");
    ctx.groups.put(config)?;
    Ok(Some(success(&request)))
}

/// GET_ALL_SUBSCRIPTIONGROUP_CONFIG (201): every group with the table's data version.
///
/// # Errors
/// Body encode errors.
pub async fn handle_get_all_subscription_group_config(
    ctx: &BrokerContext,
    _conn: &Connection,
    request: RemotingCommand,
) -> ProcessorResult {
    success_with(&request, &ctx.groups.wrapper())
}

/// DELETE_SUBSCRIPTIONGROUP (207): removes a group's configuration.
///
/// # Errors
/// Header errors.
pub async fn handle_delete_subscription_group(
    ctx: &BrokerContext,
    _conn: &Connection,
    request: RemotingCommand,
) -> ProcessorResult {
    let header: DeleteSubscriptionGroupRequestHeader = request.decode_header()?;
    ctx.groups.remove(&header.group_name)?;
    Ok(Some(success(&request)))
}

/// How long a request forwarded to a client waits for its answer (Java
/// `Broker2Client.callClient`, 10 s); past it the admin gets CONSUME_MSG_TIMEOUT (207).
pub const FORWARD_TO_CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// GET_CONSUMER_RUNNING_INFO (307): forwarded to consumer `clientId` of `consumerGroup` on
/// its own connection (PROTOCOL.md §2.5, Java `AdminBrokerProcessor.getConsumerRunningInfo`);
/// the client's answer (a ConsumerRunningInfo body) is returned unchanged.
///
/// # Errors
/// Header errors; see [`forward_to_consumer`] for the answers when the client is not online,
/// times out or fails.
pub async fn handle_get_consumer_running_info(
    ctx: &BrokerContext,
    _conn: &Connection,
    request: RemotingCommand,
) -> ProcessorResult {
    let header: GetConsumerRunningInfoRequestHeader = request.decode_header()?;
    forward_to_consumer(
        ctx,
        &request,
        &header.consumer_group,
        &header.client_id,
        FORWARD_TO_CLIENT_TIMEOUT,
    )
    .await
}

/// CONSUME_MESSAGE_DIRECTLY (309): adds extField `brokerName`, puts the stored record named
/// by the offset `msgId` into the body (Java `AdminBrokerProcessor.consumeMessageDirectly`),
/// and forwards the request to consumer `clientId` of `consumerGroup`; the client's answer (a
/// ConsumeMessageDirectlyResult body) is returned unchanged. A `msgId` that is not an offset
/// message id of a stored record keeps the request's own body; with no body either it is
/// refused.
///
/// # Errors
/// Header errors; SYSTEM_ERROR `can not find message by the msgId, <id>` when there is no
/// message to consume; otherwise as [`forward_to_consumer`].
pub async fn handle_consume_message_directly(
    ctx: &BrokerContext,
    _conn: &Connection,
    mut request: RemotingCommand,
) -> ProcessorResult {
    let header: ConsumeMessageDirectlyResultRequestHeader = request.decode_header()?;
    request
        .ext_fields
        .insert("brokerName".into(), ctx.config.broker_name.clone());
    let msg_id = header.msg_id.unwrap_or_default();
    let record = decode_offset_msg_id(&msg_id)
        .ok()
        .and_then(|(_, phy_offset)| ctx.store.read_record(phy_offset));
    match record {
        Some(record) => request.body = record,
        None if request.body.is_empty() => {
            return Err(reject(
                ResponseCode::SystemError,
                format!("can not find message by the msgId, {msg_id}"),
            ));
        }
        None => {}
    }
    let client_id = header.client_id.unwrap_or_default();
    forward_to_consumer(
        ctx,
        &request,
        &header.consumer_group,
        &client_id,
        FORWARD_TO_CLIENT_TIMEOUT,
    )
    .await
}

/// Sends a **new** request with `request`'s code, extFields and body to the connection of
/// consumer `client_id` of `group` (known from its HEART_BEAT) and waits up to `timeout` for
/// the answer, which is returned unchanged (its code, remark, extFields and body; the
/// transport gives it the admin request's opaque). Java `AdminBrokerProcessor.callConsumer`.
/// The wait holds one of the admin connection's in-flight permits, which bounds how many
/// forwards one connection can have outstanding.
///
/// # Errors
/// SYSTEM_ERROR `The Consumer <group> <clientId> not online` when no live channel is known;
/// CONSUME_MSG_TIMEOUT (207) `consumer <group> <clientId> Timeout: ...` when the client did not
/// answer in time; SYSTEM_ERROR `invoke consumer <group> <clientId> Exception: ...` when the
/// connection closed or the request could not be sent.
pub async fn forward_to_consumer(
    ctx: &BrokerContext,
    request: &RemotingCommand,
    group: &str,
    client_id: &str,
    timeout: Duration,
) -> ProcessorResult {
    let Some(channel) = ctx.clients.find_consumer_channel(group, client_id) else {
        return Err(reject(
            ResponseCode::SystemError,
            format!("The Consumer <{group}> <{client_id}> not online"),
        ));
    };
    let mut forwarded = RemotingCommand::request_empty(request.code);
    forwarded.ext_fields = request.ext_fields.clone();
    forwarded.body = request.body.clone();
    match channel.conn.invoke(forwarded, timeout).await {
        Ok(answer) => {
            debug!(
                group,
                client_id,
                code = request.code,
                answer = answer.code,
                "forwarded to consumer"
            );
            Ok(Some(answer))
        }
        Err(RemotingError::Timeout { .. }) => Err(reject(
            ResponseCode::ConsumeMsgTimeout,
            format!(
                "consumer <{group}> <{client_id}> Timeout: no answer within {} ms",
                timeout.as_millis()
            ),
        )),
        Err(err) => Err(reject(
            ResponseCode::SystemError,
            format!("invoke consumer <{group}> <{client_id}> Exception: {err}"),
        )),
    }
}
