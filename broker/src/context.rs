//! [`BrokerContext`]: the broker's services, built once in `lib.rs` and passed to every
//! processor and background task. Cloning is cheap (every field is an `Arc` or a handle);
//! each service guards its own state — there is no lock over the whole broker.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use tern_common::protocol::{RemotingCommand, RequestCode};
use tern_common::remoting::client::RemotingClient;
use tracing::debug;

use crate::client_manager::ClientRegistry;
use crate::config::BrokerConfig;
use crate::consumer_offset::ConsumerOffsetTable;
use crate::lock_manager::QueueLockTable;
use crate::long_polling::PullRequestHold;
use crate::metrics::BrokerMetrics;
use crate::namesrv_registration::NamesrvRegistration;
use crate::schedule::ScheduleService;
use crate::stats::BrokerStats;
use crate::store::MessageStore;
use crate::subscription_group::SubscriptionGroupTable;
use crate::topic_config::TopicConfigTable;
use crate::transaction::TransactionService;

/// Shared services of one running broker.
#[derive(Debug, Clone)]
pub struct BrokerContext {
    /// Validated configuration.
    pub config: Arc<BrokerConfig>,
    /// The message store.
    pub store: Arc<MessageStore>,
    /// Topics.
    pub topics: Arc<TopicConfigTable>,
    /// Subscription groups.
    pub groups: Arc<SubscriptionGroupTable>,
    /// Committed consumer offsets.
    pub offsets: Arc<ConsumerOffsetTable>,
    /// Producers and consumers known from heartbeats.
    pub clients: Arc<ClientRegistry>,
    /// Orderly-consumption queue locks.
    pub locks: Arc<QueueLockTable>,
    /// Parked (long-polled) pulls.
    pub pull_hold: Arc<PullRequestHold>,
    /// NameServer registration (trigger an immediate re-registration after topic changes).
    pub registration: Arc<NamesrvRegistration>,
    /// Client for the broker's own outbound calls (NameServer registration).
    pub remoting_client: RemotingClient,
    /// Counters.
    pub stats: Arc<BrokerStats>,
    /// Prometheus metrics: fed by the request instrumentation and by long-polling answers,
    /// served when `metrics_listen` is set.
    pub metrics: Arc<BrokerMetrics>,
    /// The advertised `broker_ip:bound_port`: STOREHOST of every record, `brokerAddr` of the
    /// registration, and the address inside offset message ids.
    pub store_host: SocketAddr,
    /// The transaction service, installed by `transaction::start`.
    pub transaction: Arc<OnceLock<Arc<TransactionService>>>,
    /// The schedule (delay level) service, installed by `schedule::start`.
    pub schedule: Arc<OnceLock<Arc<ScheduleService>>>,
}

impl BrokerContext {
    /// Sends NOTIFY_CONSUMER_IDS_CHANGED (40, oneway) to every consumer of `group`, in each
    /// connection's last-used serialize type, if the group's config allows it.
    pub fn notify_consumer_ids_changed(&self, group: &str) {
        let allowed = self
            .groups
            .get(group)
            .is_none_or(|g| g.notify_consumer_ids_changed_enable);
        if !allowed {
            return;
        }
        for conn in self.clients.consumer_connections(group) {
            let mut request = RemotingCommand::request_empty(RequestCode::NotifyConsumerIdsChanged)
                .with_serialize_type(conn.last_serialize_type())
                .oneway();
            request
                .ext_fields
                .insert("consumerGroup".into(), group.to_string());
            if let Err(err) = conn.send_oneway(request) {
                debug!(group, conn = conn.id(), cause = %err, "notify consumer ids changed failed");
            }
        }
    }
}
