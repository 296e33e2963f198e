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
use tracing::debug;

use super::allocate::AllocateStrategy;
use super::api;
use super::offset_store::OffsetStore;
use super::{ConsumeFrom, MessageModel};
use crate::error::{ClientError, Result};
use crate::instance::ClientInstance;

/// The queues of `topic` this client owns now.
///
/// Before asking a broker for the group's members it makes sure the broker knows this
/// client: a heartbeat goes to brokers the routes revealed since the last one, and to the
/// asked broker when its list fails or lacks this client (then the list is read once more).
///
/// # Errors
/// No route for the topic, no broker address, the heartbeat to the asked broker failed, or
/// the consumer list could not be read.
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
    // A route that just appeared names brokers this client has not heartbeated yet.
    instance.heartbeat_if_brokers_changed().await;
    let mut client_ids = match api::consumer_ids(instance, &addr, group).await {
        Ok(ids) if ids.contains(&instance.client_id) => ids,
        first => {
            // The broker does not know this client: it was down when the route appeared or
            // restarted at the same address since the last heartbeat. Heartbeat it and ask
            // again rather than wait for the periodic heartbeat (30 s).
            if let Err(err) = &first {
                debug!(broker = %addr, %group, error = %err, "consumer list failed; heartbeating");
            }
            instance.send_heartbeat_to(&addr).await?;
            api::consumer_ids(instance, &addr, group).await?
        }
    };
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
