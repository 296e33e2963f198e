//! Rebalance building blocks shared by the push and pull consumers (Java's `RebalanceImpl`):
//! which queues of a topic this client owns, and where a newly owned queue starts.
//!
//! Clustering: the topic's readable queues (sorted) and the group's client ids from one
//! broker of the topic (sorted) go through the [`AllocateStrategy`]; broadcasting: every
//! queue. A newly owned queue starts at the offset the store knows, else per
//! [`ConsumeFrom`] (PROTOCOL.md §10.3: `%RETRY%` topics start at 0 for `Last` and at the
//! end for `Timestamp`).

use tern_common::message::is_retry_topic;
use tern_common::route::MessageQueue;

use super::allocate::AllocateStrategy;
use super::api;
use super::offset_store::OffsetStore;
use super::{ConsumeFrom, MessageModel};
use crate::error::{ClientError, Result};
use crate::instance::ClientInstance;

/// The queues of `topic` this client owns now.
///
/// # Errors
/// No route for the topic, no broker address, or the consumer list could not be read.
pub(crate) async fn assigned_queues(
    instance: &ClientInstance,
    group: &str,
    topic: &str,
    model: MessageModel,
    strategy: &dyn AllocateStrategy,
) -> Result<Vec<MessageQueue>> {
    let route = instance.route(topic).await?;
    let mut queues = route.subscribe_queues(topic);
    queues.sort();
    if model == MessageModel::Broadcasting {
        return Ok(queues);
    }
    // Any broker of the topic knows the whole group (every member heartbeats every broker).
    let addr = route
        .broker_datas
        .iter()
        .find_map(|bd| bd.select_broker_addr().map(str::to_string))
        .ok_or_else(|| ClientError::NoRoute {
            topic: topic.to_string(),
        })?;
    let mut client_ids = api::consumer_ids(instance, &addr, group).await?;
    client_ids.sort();
    client_ids.dedup();
    Ok(strategy.allocate(&instance.client_id, &queues, &client_ids))
}

/// Where consumption of `mq` starts: the stored offset, else per `from`.
///
/// # Errors
/// The broker could not be asked (the caller retries the queue on the next rebalance).
pub(crate) async fn start_offset(
    instance: &ClientInstance,
    group: &str,
    mq: &MessageQueue,
    store: &OffsetStore,
    from: ConsumeFrom,
) -> Result<i64> {
    let addr = instance
        .find_master_or_refresh(&mq.broker_name, &mq.topic)
        .await?;
    if store.is_local() {
        if let Some(offset) = store.read(mq) {
            return Ok(offset);
        }
    } else if let Some(offset) = api::query_consumer_offset(instance, &addr, group, mq).await? {
        return Ok(offset);
    }
    let retry = is_retry_topic(&mq.topic);
    match from {
        ConsumeFrom::First => Ok(0),
        ConsumeFrom::Last if retry => Ok(0),
        ConsumeFrom::Last => api::queue_offset(instance, &addr, mq, true).await,
        ConsumeFrom::Timestamp(_) if retry => api::queue_offset(instance, &addr, mq, true).await,
        ConsumeFrom::Timestamp(ts) => api::search_offset(instance, &addr, mq, ts).await,
    }
}
