//! [`ClientRegistry`]: producers and consumers known from HEART_BEAT (RocketMQ
//! `ProducerManager` + `ConsumerManager`).
//!
//! Each group maps connection id → channel info (the [`Connection`], client id, language,
//! version, last heartbeat). Consumer groups also keep their subscriptions (newer
//! `subVersion` wins) and consume type/model. Registrations disappear on UNREGISTER_CLIENT,
//! when their connection closes, and when a channel has not heartbeated for
//! `channel_expired_timeout` (120 s; scanned every 10 s). Every mutation that changes a
//! consumer group's member set or subscriptions reports it, so the caller can send
//! NOTIFY_CONSUMER_IDS_CHANGED to the group.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use tern_common::protocol::body::{ConsumeFromWhere, ConsumeType, MessageModel, SubscriptionData};
use tern_common::protocol::LanguageCode;
use tern_common::remoting::Connection;

/// One client connection as registered by its heartbeat.
#[derive(Debug, Clone)]
pub struct ClientChannelInfo {
    /// The connection to the client (for server → client requests).
    pub conn: Connection,
    /// The client's id (`clientID` of the heartbeat).
    pub client_id: String,
    /// The client's language.
    pub language: LanguageCode,
    /// The client's `MQVersion` ordinal.
    pub version: i32,
    /// Time of the last heartbeat.
    pub last_update: Instant,
}

/// A consumer group's live state.
#[derive(Debug, Clone, Default)]
pub struct ConsumerGroupInfo {
    /// Connection id → channel.
    pub channels: HashMap<u64, ClientChannelInfo>,
    /// Topic → subscription.
    pub subscriptions: BTreeMap<String, SubscriptionData>,
    /// Pull (actively) or push (passively).
    pub consume_type: ConsumeType,
    /// Clustering or broadcasting.
    pub message_model: MessageModel,
    /// Where a new consumer starts.
    pub consume_from_where: ConsumeFromWhere,
}

/// What one consumer heartbeat entry carries.
#[derive(Debug, Clone)]
pub struct ConsumerRegistration {
    /// Consume type.
    pub consume_type: ConsumeType,
    /// Message model.
    pub message_model: MessageModel,
    /// Where to start.
    pub consume_from_where: ConsumeFromWhere,
    /// The group's subscriptions as the client sent them.
    pub subscriptions: Vec<SubscriptionData>,
}

/// The registry of one broker.
#[derive(Debug, Default)]
pub struct ClientRegistry {
    producers: RwLock<HashMap<String, HashMap<u64, ClientChannelInfo>>>,
    consumers: RwLock<HashMap<String, ConsumerGroupInfo>>,
    round_robin: AtomicUsize,
}

impl ClientRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records (or refreshes) a producer channel of `group`.
    pub fn register_producer(&self, group: &str, channel: ClientChannelInfo) {
        self.producers
            .write()
            .entry(group.to_string())
            .or_default()
            .insert(channel.conn.id(), channel);
    }

    /// Removes a producer channel; returns whether it was registered.
    pub fn unregister_producer(&self, group: &str, conn_id: u64) -> bool {
        let mut producers = self.producers.write();
        let Some(channels) = producers.get_mut(group) else {
            return false;
        };
        let removed = channels.remove(&conn_id).is_some();
        if channels.is_empty() {
            producers.remove(group);
        }
        removed
    }

    /// Records (or refreshes) a consumer channel of `group` with its subscriptions.
    /// Returns true when the group's member set or subscriptions changed.
    pub fn register_consumer(
        &self,
        group: &str,
        channel: ClientChannelInfo,
        registration: ConsumerRegistration,
    ) -> bool {
        let mut consumers = self.consumers.write();
        let info = consumers.entry(group.to_string()).or_default();
        info.consume_type = registration.consume_type;
        info.message_model = registration.message_model;
        info.consume_from_where = registration.consume_from_where;
        let mut changed = info.channels.insert(channel.conn.id(), channel).is_none();
        let mut new_subs = BTreeMap::new();
        for sub in registration.subscriptions {
            new_subs.insert(sub.topic.clone(), sub);
        }
        for (topic, sub) in &new_subs {
            match info.subscriptions.get(topic) {
                Some(old) if old.sub_version >= sub.sub_version => {}
                Some(old)
                    if old.sub_string == sub.sub_string
                        && old.expression_type == sub.expression_type =>
                {
                    info.subscriptions.insert(topic.clone(), sub.clone());
                }
                _ => {
                    info.subscriptions.insert(topic.clone(), sub.clone());
                    changed = true;
                }
            }
        }
        let before = info.subscriptions.len();
        info.subscriptions
            .retain(|topic, _| new_subs.contains_key(topic));
        changed |= info.subscriptions.len() != before;
        changed
    }

    /// Removes a consumer channel of `group`; returns true when it was registered (the
    /// member set changed). An emptied group is dropped.
    pub fn unregister_consumer(&self, group: &str, conn_id: u64) -> bool {
        let mut consumers = self.consumers.write();
        let Some(info) = consumers.get_mut(group) else {
            return false;
        };
        let removed = info.channels.remove(&conn_id).is_some();
        if info.channels.is_empty() {
            consumers.remove(group);
        }
        removed
    }

    /// Forgets every registration of a closed connection; returns the consumer groups whose
    /// member set changed.
    pub fn connection_closed(&self, conn_id: u64) -> Vec<String> {
        self.producers.write().retain(|_, channels| {
            channels.remove(&conn_id);
            !channels.is_empty()
        });
        let mut changed = Vec::new();
        self.consumers.write().retain(|group, info| {
            if info.channels.remove(&conn_id).is_some() {
                changed.push(group.clone());
            }
            !info.channels.is_empty()
        });
        changed
    }

    /// Drops channels silent for longer than `timeout` or already closed; returns the consumer
    /// groups whose member set changed.
    pub fn scan_expired(&self, now: Instant, timeout: Duration) -> Vec<String> {
        let stale = |c: &ClientChannelInfo| {
            c.conn.is_closed() || now.saturating_duration_since(c.last_update) > timeout
        };
        self.producers.write().retain(|_, channels| {
            channels.retain(|_, c| !stale(c));
            !channels.is_empty()
        });
        let mut changed = Vec::new();
        self.consumers.write().retain(|group, info| {
            let before = info.channels.len();
            info.channels.retain(|_, c| !stale(c));
            if info.channels.len() != before {
                changed.push(group.clone());
            }
            !info.channels.is_empty()
        });
        changed
    }

    /// Client ids of the group's live consumers, sorted.
    pub fn consumer_ids(&self, group: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .consumers
            .read()
            .get(group)
            .map(|info| {
                info.channels
                    .values()
                    .map(|c| c.client_id.clone())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Connections of the group's consumers.
    pub fn consumer_connections(&self, group: &str) -> Vec<Connection> {
        self.consumers
            .read()
            .get(group)
            .map(|info| info.channels.values().map(|c| c.conn.clone()).collect())
            .unwrap_or_default()
    }

    /// The live channel of consumer `client_id` in `group` (RocketMQ
    /// `ConsumerManager.findChannel`), for forwarding GET_CONSUMER_RUNNING_INFO and
    /// CONSUME_MESSAGE_DIRECTLY. Closed connections are skipped; if the client has several
    /// live channels (it reconnected), the one with the latest heartbeat wins.
    pub fn find_consumer_channel(&self, group: &str, client_id: &str) -> Option<ClientChannelInfo> {
        self.consumers
            .read()
            .get(group)?
            .channels
            .values()
            .filter(|c| c.client_id == client_id && !c.conn.is_closed())
            .max_by_key(|c| c.last_update)
            .cloned()
    }

    /// A copy of the group's state.
    pub fn consumer_group(&self, group: &str) -> Option<ConsumerGroupInfo> {
        self.consumers.read().get(group).cloned()
    }

    /// The group's subscription of `topic` from heartbeats.
    pub fn subscription(&self, group: &str, topic: &str) -> Option<SubscriptionData> {
        self.consumers
            .read()
            .get(group)?
            .subscriptions
            .get(topic)
            .cloned()
    }

    /// Groups with at least one consumer subscribed to `topic`.
    pub fn groups_subscribing(&self, topic: &str) -> Vec<String> {
        self.consumers
            .read()
            .iter()
            .filter(|(_, info)| info.subscriptions.contains_key(topic))
            .map(|(g, _)| g.clone())
            .collect()
    }

    /// Channels of a producer group.
    pub fn producer_channels(&self, group: &str) -> Vec<ClientChannelInfo> {
        self.producers
            .read()
            .get(group)
            .map(|c| c.values().cloned().collect())
            .unwrap_or_default()
    }

    /// One live channel of a producer group, round-robin (for transaction check-back).
    pub fn pick_producer_channel(&self, group: &str) -> Option<Connection> {
        let mut live: Vec<ClientChannelInfo> = self
            .producer_channels(group)
            .into_iter()
            .filter(|c| !c.conn.is_closed())
            .collect();
        if live.is_empty() {
            return None;
        }
        live.sort_by_key(|c| c.conn.id());
        let i = self.round_robin.fetch_add(1, Ordering::Relaxed) % live.len();
        Some(live.swap_remove(i).conn)
    }

    /// Counts of (producer groups, consumer groups, channels) for runtime info.
    pub fn counts(&self) -> (usize, usize, usize) {
        let producers = self.producers.read();
        let consumers = self.consumers.read();
        let channels = producers.values().map(HashMap::len).sum::<usize>()
            + consumers.values().map(|i| i.channels.len()).sum::<usize>();
        (producers.len(), consumers.len(), channels)
    }
}
