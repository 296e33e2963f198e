//! Client management (PROTOCOL.md §2.3 HEART_BEAT/UNREGISTER_CLIENT, §2.4 consumer list and
//! locks, §2.5 CHECK_CLIENT_CONFIG).

use std::time::Instant;

use serde::{Deserialize, Serialize};
use tern_common::message::retry_topic;
use tern_common::protocol::body::{
    ConsumerListBody, HeartbeatData, LockBatchRequestBody, LockBatchResponseBody, SubscriptionData,
    UnlockBatchRequestBody,
};
use tern_common::protocol::header::{
    GetConsumerListByGroupRequestHeader, UnregisterClientRequestHeader,
};
use tern_common::protocol::{RemotingCommand, ResponseCode};
use tern_common::remoting::Connection;
use tern_common::route::perm;
use tracing::{debug, info, warn};

use super::{decode, encode, reject, success, ProcessorResult};
use crate::client_manager::{ClientChannelInfo, ConsumerRegistration};
use crate::context::BrokerContext;

fn channel(conn: &Connection, request: &RemotingCommand, client_id: &str) -> ClientChannelInfo {
    ClientChannelInfo {
        conn: conn.clone(),
        client_id: client_id.to_string(),
        language: request.language,
        version: request.version,
        last_update: Instant::now(),
    }
}

/// HEART_BEAT (34): registers producers and consumers of the connection, auto-creates each
/// consumer group and its `%RETRY%<group>` topic, and notifies a group whose members or
/// subscriptions changed. The response carries the broker version and
/// `IS_SUPPORT_HEART_BEAT_V2=true`.
///
/// # Errors
/// Body decode errors; snapshot write errors.
pub async fn handle_heartbeat(
    ctx: &BrokerContext,
    conn: &Connection,
    request: RemotingCommand,
) -> ProcessorResult {
    let data: HeartbeatData = decode(&request)?;
    let mut sub_changed = false;
    for consumer in data.consumer_data_set {
        let group = consumer.group_name.clone();
        if group.is_empty() {
            continue;
        }
        let Some(group_config) = ctx.groups.find_or_create(&group)? else {
            debug!(
                group,
                "heartbeat from a consumer of an unknown group; ignored"
            );
            continue;
        };
        if ctx.config.enable_property_filter {
            precompile_sql92(&group, &consumer.subscription_data_set);
        }
        let retry = retry_topic(&group);
        let (_, created) = ctx.topics.get_or_create(
            &retry,
            group_config.retry_queue_nums.max(1),
            perm::PERM_READ_WRITE,
        )?;
        if created {
            info!(topic = %retry, "created retry topic");
            ctx.registration.trigger();
        }
        let changed = ctx.clients.register_consumer(
            &group,
            channel(conn, &request, &data.client_id),
            ConsumerRegistration {
                consume_type: consumer.consume_type,
                message_model: consumer.message_model,
                consume_from_where: consumer.consume_from_where,
                subscriptions: consumer.subscription_data_set,
            },
        );
        if changed {
            sub_changed = true;
            debug!(group, client = %data.client_id, "consumer group changed");
            ctx.notify_consumer_ids_changed(&group);
        }
    }
    for producer in data.producer_data_set {
        if !producer.group_name.is_empty() {
            ctx.clients.register_producer(
                &producer.group_name,
                channel(conn, &request, &data.client_id),
            );
        }
    }
    let mut response = success(&request);
    response
        .ext_fields
        .insert("IS_SUPPORT_HEART_BEAT_V2".into(), "true".into());
    response
        .ext_fields
        .insert("IS_SUB_CHANGE".into(), sub_changed.to_string());
    Ok(Some(response))
}

/// UNREGISTER_CLIENT (35): removes this connection's registration in the named groups.
///
/// # Errors
/// Header errors.
pub async fn handle_unregister_client(
    ctx: &BrokerContext,
    conn: &Connection,
    request: RemotingCommand,
) -> ProcessorResult {
    let header: UnregisterClientRequestHeader = request.decode_header()?;
    if let Some(group) = header.producer_group.as_deref().filter(|g| !g.is_empty()) {
        ctx.clients.unregister_producer(group, conn.id());
    }
    if let Some(group) = header.consumer_group.as_deref().filter(|g| !g.is_empty()) {
        if ctx.clients.unregister_consumer(group, conn.id()) {
            ctx.notify_consumer_ids_changed(group);
        }
    }
    Ok(Some(success(&request)))
}

/// GET_CONSUMER_LIST_BY_GROUP (38): the group's live client ids, or SYSTEM_ERROR when none.
///
/// # Errors
/// Header errors; SYSTEM_ERROR `no consumer for this group, <g>`.
pub async fn handle_get_consumer_list(
    ctx: &BrokerContext,
    _conn: &Connection,
    request: RemotingCommand,
) -> ProcessorResult {
    let header: GetConsumerListByGroupRequestHeader = request.decode_header()?;
    let ids = ctx.clients.consumer_ids(&header.consumer_group);
    if ids.is_empty() {
        return Err(reject(
            ResponseCode::SystemError,
            format!("no consumer for this group, {}", header.consumer_group),
        ));
    }
    let body = encode(
        &request,
        &ConsumerListBody {
            consumer_id_list: ids,
        },
    )?;
    Ok(Some(success(&request).with_body(body)))
}

/// LOCK_BATCH_MQ (41): locks (or renews) the free queues for the client; the body lists the
/// queues the client now holds.
///
/// # Errors
/// Body decode errors.
pub async fn handle_lock_batch(
    ctx: &BrokerContext,
    _conn: &Connection,
    request: RemotingCommand,
) -> ProcessorResult {
    let body: LockBatchRequestBody = decode(&request)?;
    let locked = ctx.locks.try_lock_batch(
        &body.consumer_group,
        &body.mq_set,
        &body.client_id,
        Instant::now(),
    );
    let response = encode(
        &request,
        &LockBatchResponseBody {
            lock_ok_mq_set: locked,
        },
    )?;
    Ok(Some(success(&request).with_body(response)))
}

/// UNLOCK_BATCH_MQ (42): releases the client's locks on the queues.
///
/// # Errors
/// Body decode errors.
pub async fn handle_unlock_batch(
    ctx: &BrokerContext,
    _conn: &Connection,
    request: RemotingCommand,
) -> ProcessorResult {
    let body: UnlockBatchRequestBody = decode(&request)?;
    ctx.locks
        .unlock_batch(&body.consumer_group, &body.mq_set, &body.client_id);
    Ok(Some(success(&request)))
}

/// The CHECK_CLIENT_CONFIG body (`CheckClientRequestBody.java`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CheckClientRequestBody {
    /// Client id.
    pub client_id: String,
    /// Consumer group.
    pub group: String,
    /// The subscription to check.
    pub subscription_data: SubscriptionData,
}

/// Compiles the SQL92 subscriptions of a heartbeat into [`crate::filter`]'s cache, so pulls
/// find them compiled. One that does not compile is logged; its pulls answer
/// SUBSCRIPTION_PARSE_FAILED (the client learns it at start from CHECK_CLIENT_CONFIG).
fn precompile_sql92(group: &str, subscriptions: &[SubscriptionData]) {
    for sub in subscriptions
        .iter()
        .filter(|s| crate::filter::is_sql92_subscription(s))
    {
        if let Err(err) = crate::filter::compile(&sub.sub_string) {
            warn!(group, topic = %sub.topic, cause = %err, "sql92 subscription does not compile");
        }
    }
}

/// CHECK_CLIENT_CONFIG (46): TAG subscriptions are fine; SQL92 ones must compile
/// (SUBSCRIPTION_PARSE_FAILED otherwise) and need `enable_property_filter` (SYSTEM_ERROR
/// otherwise, as a Java broker with `enablePropertyFilter=false`); other expression types are
/// not supported (SYSTEM_ERROR). RocketMQ `ClientManageProcessor.checkClientConfig`.
///
/// # Errors
/// Body decode errors; SYSTEM_ERROR or SUBSCRIPTION_PARSE_FAILED as above.
pub async fn handle_check_client_config(
    ctx: &BrokerContext,
    _conn: &Connection,
    request: RemotingCommand,
) -> ProcessorResult {
    let body: CheckClientRequestBody = decode(&request)?;
    let kind = body.subscription_data.expression_type.trim();
    if kind.is_empty() || kind.eq_ignore_ascii_case("TAG") {
        return Ok(Some(success(&request)));
    }
    if !ctx.config.enable_property_filter
        || !crate::filter::is_sql92_subscription(&body.subscription_data)
    {
        return Err(reject(
            ResponseCode::SystemError,
            format!("The broker does not support consumer to filter message by {kind}"),
        ));
    }
    match crate::filter::compile(&body.subscription_data.sub_string) {
        Ok(_) => Ok(Some(success(&request))),
        Err(err) => Err(reject(
            ResponseCode::SubscriptionParseFailed,
            format!(
                "Parameter check error, or parse failed: {}, {err}",
                body.subscription_data
                    .sub_string
                    .chars()
                    .take(256)
                    .collect::<String>()
            ),
        )),
    }
}
