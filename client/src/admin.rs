//! [`Admin`]: cluster administration over the remoting protocol (what `mqadmin` does).
//!
//! Topic changes go to every master of a cluster (UPDATE_AND_CREATE_TOPIC,
//! DELETE_TOPIC_IN_BROKER) and deletions also to the NameServers (DELETE_TOPIC_IN_NAMESRV).
//! Statistics and offsets are gathered from every master that holds the topic and merged.
//! Message queries ask every master of the topic (QUERY_MESSAGE) and keep exact matches only,
//! because the broker's index may return hash collisions (PROTOCOL.md §2.4, §4.2).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tern_common::message::{decode_messages, decode_offset_msg_id, MessageExt};
use tern_common::protocol::body::{
    ConsumeStats, ConsumerConnection, KVTable, ResetOffsetBody, TopicStatsTable,
};
use tern_common::protocol::header::{
    CreateTopicRequestHeader, DeleteTopicFromNamesrvRequestHeader, DeleteTopicRequestHeader,
    GetConsumeStatsRequestHeader, GetConsumerConnectionListRequestHeader,
    GetTopicStatsInfoRequestHeader, QueryMessageRequestHeader, ResetOffsetRequestHeader,
    ViewMessageByIdRequestHeader,
};
use tern_common::protocol::{RemotingCommand, RequestCode, ResponseCode, SerializeType};
use tern_common::route::{ClusterInfo, MessageQueue, TopicConfig, TopicList, TopicRouteData};

use crate::config::{now_ms, ClientConfig};
use crate::consumer::api::{self, PullArgs, PullStatus};
use crate::error::{ClientError, Result};
use crate::instance::{decode_response, expect_success, ClientInstance};

/// Timeout of QUERY_MESSAGE (index scans can be slow).
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Builder of an [`Admin`]; see [`Admin::builder`].
#[derive(Debug, Clone, Default)]
pub struct AdminBuilder {
    config: ClientConfig,
}

impl AdminBuilder {
    /// NameServer addresses, `;`-separated.
    pub fn namesrv_addr(mut self, addrs: &str) -> Self {
        self.config.set_namesrv_addr(addrs);
        self
    }

    /// Header and body encoding; MessagePack by default, JSON for Apache RocketMQ.
    pub fn serialize_type(mut self, t: SerializeType) -> Self {
        self.config.serialize_type = t;
        self
    }

    /// Timeout of ordinary requests. Default 3 s.
    pub fn rpc_timeout(mut self, d: Duration) -> Self {
        self.config.rpc_timeout = d;
        self
    }

    /// Replaces the whole shared client configuration.
    pub fn client_config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }

    /// Starts the admin client (no network traffic yet).
    ///
    /// # Errors
    /// [`ClientError::Config`] without a NameServer address.
    pub async fn build(self) -> Result<Admin> {
        Ok(Admin {
            instance: ClientInstance::start(self.config)?,
        })
    }
}

/// One queue's consumption progress of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueProgress {
    /// The queue.
    pub message_queue: MessageQueue,
    /// The queue's max offset (next offset to be written).
    pub broker_offset: i64,
    /// The group's committed offset.
    pub consumer_offset: i64,
    /// Messages not yet consumed: `broker_offset - consumer_offset` (never negative).
    pub lag: i64,
    /// Store time of the last consumed message, epoch ms (0 when unknown).
    pub last_timestamp: i64,
}

/// The administration client; cheap to clone.
#[derive(Debug, Clone)]
pub struct Admin {
    instance: Arc<ClientInstance>,
}

impl Admin {
    /// A builder with the defaults.
    pub fn builder() -> AdminBuilder {
        AdminBuilder::default()
    }

    /// Closes connections.
    pub async fn shutdown(&self) {
        self.instance.shutdown().await;
    }

    fn timeout(&self) -> Duration {
        self.instance.config.rpc_timeout
    }

    /// Clusters and their brokers (GET_BROKER_CLUSTER_INFO).
    ///
    /// # Errors
    /// Transport errors, error codes, undecodable body.
    pub async fn cluster_info(&self) -> Result<ClusterInfo> {
        let req = RemotingCommand::request_empty(RequestCode::GetBrokerClusterInfo);
        let response = expect_success("nameserver", self.instance.invoke_namesrv(req).await?)?;
        decode_response(&response)
    }

    /// The route of `topic` (GET_ROUTEINFO_BY_TOPIC).
    ///
    /// # Errors
    /// [`ClientError::NoRoute`] for an unknown topic; transport errors.
    pub async fn topic_route(&self, topic: &str) -> Result<TopicRouteData> {
        self.instance
            .update_route(topic)
            .await?
            .ok_or_else(|| ClientError::NoRoute {
                topic: topic.to_string(),
            })
    }

    /// Every topic the NameServer knows (GET_ALL_TOPIC_LIST_FROM_NAMESERVER), sorted.
    ///
    /// # Errors
    /// Transport errors, error codes, undecodable body.
    pub async fn topic_list(&self) -> Result<Vec<String>> {
        let req = RemotingCommand::request_empty(RequestCode::GetAllTopicListFromNameserver);
        let response = expect_success("nameserver", self.instance.invoke_namesrv(req).await?)?;
        let list: TopicList = decode_response(&response)?;
        Ok(list.topic_list.into_iter().collect())
    }

    /// The master addresses of `cluster`'s brokers.
    async fn cluster_masters(&self, cluster: &str) -> Result<Vec<String>> {
        let info = self.cluster_info().await?;
        let names = info
            .cluster_addr_table
            .get(cluster)
            .ok_or_else(|| ClientError::Config(format!("unknown cluster `{cluster}`")))?;
        Ok(names
            .iter()
            .filter_map(|n| info.broker_addr_table.get(n))
            .filter_map(|bd| bd.master_addr().map(str::to_string))
            .collect())
    }

    /// Creates (or updates) `topic` with `queue_nums` read/write queues on every master of
    /// `cluster`.
    ///
    /// # Errors
    /// Unknown cluster; any broker's error.
    pub async fn create_topic(&self, cluster: &str, topic: &str, queue_nums: i32) -> Result<()> {
        self.create_topic_with(cluster, &TopicConfig::new(topic, queue_nums))
            .await
    }

    /// Creates (or updates) a topic from a full [`TopicConfig`] on every master of `cluster`.
    ///
    /// # Errors
    /// Invalid topic name; unknown cluster; any broker's error.
    pub async fn create_topic_with(&self, cluster: &str, config: &TopicConfig) -> Result<()> {
        tern_common::message::validate_topic(&config.topic_name)
            .map_err(|e| ClientError::InvalidMessage(e.to_string()))?;
        for addr in self.cluster_masters(cluster).await? {
            self.create_topic_on(&addr, config).await?;
        }
        Ok(())
    }

    /// Creates (or updates) a topic on the one broker at `broker_addr`
    /// (UPDATE_AND_CREATE_TOPIC, as `mqadmin updateTopic -b`).
    ///
    /// # Errors
    /// Invalid topic name; transport errors; the broker's error code.
    pub async fn create_topic_on(&self, broker_addr: &str, config: &TopicConfig) -> Result<()> {
        tern_common::message::validate_topic(&config.topic_name)
            .map_err(|e| ClientError::InvalidMessage(e.to_string()))?;
        let header = CreateTopicRequestHeader {
            topic: config.topic_name.clone(),
            default_topic: crate::producer::AUTO_CREATE_TOPIC.to_string(),
            read_queue_nums: config.read_queue_nums,
            write_queue_nums: config.write_queue_nums,
            perm: config.perm,
            topic_filter_type: config.topic_filter_type.as_str().to_string(),
            topic_sys_flag: Some(config.topic_sys_flag),
            order: config.order,
            attributes: None,
            force: None,
        };
        let req = RemotingCommand::request(RequestCode::UpdateAndCreateTopic, &header);
        self.instance
            .invoke_ok(broker_addr, req, self.timeout())
            .await
            .map(|_| ())
    }

    /// Deletes `topic` from every master of `cluster`, then from the NameServers.
    ///
    /// # Errors
    /// Unknown cluster; any broker's or NameServer's error.
    pub async fn delete_topic(&self, cluster: &str, topic: &str) -> Result<()> {
        for addr in self.cluster_masters(cluster).await? {
            self.delete_topic_on(&addr, topic).await?;
        }
        self.delete_topic_in_namesrv(topic, Some(cluster)).await
    }

    /// Deletes `topic` from the one broker at `broker_addr` (DELETE_TOPIC_IN_BROKER).
    ///
    /// # Errors
    /// Transport errors; the broker's error code.
    pub async fn delete_topic_on(&self, broker_addr: &str, topic: &str) -> Result<()> {
        let header = DeleteTopicRequestHeader {
            topic: topic.to_string(),
        };
        let req = RemotingCommand::request(RequestCode::DeleteTopicInBroker, &header);
        self.instance
            .invoke_ok(broker_addr, req, self.timeout())
            .await
            .map(|_| ())
    }

    /// Deletes `topic`'s route from every NameServer (DELETE_TOPIC_IN_NAMESRV), only for
    /// `cluster`'s brokers when given; every NameServer must succeed.
    ///
    /// # Errors
    /// Transport errors; the first NameServer's error code.
    pub async fn delete_topic_in_namesrv(&self, topic: &str, cluster: Option<&str>) -> Result<()> {
        for ns in &self.instance.config.namesrv_addrs {
            let header = DeleteTopicFromNamesrvRequestHeader {
                topic: topic.to_string(),
                cluster_name: cluster.map(str::to_string),
            };
            let req = RemotingCommand::request(RequestCode::DeleteTopicInNamesrv, &header);
            self.instance.invoke_ok(ns, req, self.timeout()).await?;
        }
        Ok(())
    }

    /// The masters holding `topic`, from its route.
    async fn topic_masters(&self, topic: &str) -> Result<Vec<String>> {
        let route = self.topic_route(topic).await?;
        Ok(route
            .broker_datas
            .iter()
            .filter_map(|bd| bd.master_addr().map(str::to_string))
            .collect())
    }

    /// Min/max offsets of every queue of `topic`, merged over its brokers
    /// (GET_TOPIC_STATS_INFO).
    ///
    /// # Errors
    /// Unknown topic; any broker's error.
    pub async fn topic_stats(&self, topic: &str) -> Result<TopicStatsTable> {
        let mut merged = TopicStatsTable::default();
        for addr in self.topic_masters(topic).await? {
            let table = self.topic_stats_on(&addr, topic).await?;
            merged.offset_table.0.extend(table.offset_table.0);
            merged.topic_put_tps += table.topic_put_tps;
        }
        Ok(merged)
    }

    /// Min/max offsets of `topic`'s queues on the one broker at `broker_addr`
    /// (GET_TOPIC_STATS_INFO).
    ///
    /// # Errors
    /// Transport errors; the broker's error code (TOPIC_NOT_EXIST, 17); undecodable body.
    pub async fn topic_stats_on(&self, broker_addr: &str, topic: &str) -> Result<TopicStatsTable> {
        let header = GetTopicStatsInfoRequestHeader {
            topic: topic.to_string(),
        };
        let req = RemotingCommand::request(RequestCode::GetTopicStatsInfo, &header);
        let response = self
            .instance
            .invoke_ok(broker_addr, req, self.timeout())
            .await?;
        decode_response(&response)
    }

    /// A group's offsets per queue (GET_CONSUME_STATS) of `topic`, or of every topic the
    /// group consumes on the brokers of its retry topic when `topic` is `None`.
    ///
    /// # Errors
    /// No route; any broker's error.
    pub async fn consume_stats(&self, group: &str, topic: Option<&str>) -> Result<ConsumeStats> {
        let route_topic =
            topic.map_or_else(|| tern_common::message::retry_topic(group), str::to_string);
        let mut merged = ConsumeStats::default();
        for addr in self.topic_masters(&route_topic).await? {
            let stats = self.consume_stats_on(&addr, group, topic).await?;
            merged.offset_table.0.extend(stats.offset_table.0);
            merged.consume_tps += stats.consume_tps;
        }
        Ok(merged)
    }

    /// A group's offsets per queue on the one broker at `broker_addr` (GET_CONSUME_STATS), of
    /// `topic` or of every topic the group consumes there.
    ///
    /// # Errors
    /// Transport errors; the broker's error code; undecodable body.
    pub async fn consume_stats_on(
        &self,
        broker_addr: &str,
        group: &str,
        topic: Option<&str>,
    ) -> Result<ConsumeStats> {
        let header = GetConsumeStatsRequestHeader {
            consumer_group: group.to_string(),
            topic: topic.map(str::to_string),
            topic_list: None,
        };
        let req = RemotingCommand::request(RequestCode::GetConsumeStats, &header);
        let response = self
            .instance
            .invoke_ok(broker_addr, req, self.timeout())
            .await?;
        decode_response(&response)
    }

    /// A group's progress on `topic` per queue, with the lag, sorted by queue.
    ///
    /// # Errors
    /// As [`consume_stats`](Self::consume_stats).
    pub async fn consumer_progress(&self, group: &str, topic: &str) -> Result<Vec<QueueProgress>> {
        let stats = self.consume_stats(group, Some(topic)).await?;
        Ok(stats
            .offset_table
            .0
            .into_iter()
            .filter(|(mq, _)| mq.topic == topic)
            .map(|(mq, w)| QueueProgress {
                lag: (w.broker_offset - w.consumer_offset.max(0)).max(0),
                message_queue: mq,
                broker_offset: w.broker_offset,
                consumer_offset: w.consumer_offset,
                last_timestamp: w.last_timestamp,
            })
            .collect())
    }

    /// The live connections of a consumer group (GET_CONSUMER_CONNECTION_LIST), from the
    /// first broker of its retry topic that knows it.
    ///
    /// # Errors
    /// No route; CONSUMER_NOT_ONLINE (206) from every broker.
    pub async fn consumer_connection(&self, group: &str) -> Result<ConsumerConnection> {
        let mut last = None;
        for addr in self
            .topic_masters(&tern_common::message::retry_topic(group))
            .await?
        {
            match self.consumer_connection_on(&addr, group).await {
                Ok(connection) => return Ok(connection),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::NoRoute {
            topic: group.to_string(),
        }))
    }

    /// The connections of a consumer group to the one broker at `broker_addr`
    /// (GET_CONSUMER_CONNECTION_LIST).
    ///
    /// # Errors
    /// Transport errors; CONSUMER_NOT_ONLINE (206) when no consumer of the group is connected
    /// there; undecodable body.
    pub async fn consumer_connection_on(
        &self,
        broker_addr: &str,
        group: &str,
    ) -> Result<ConsumerConnection> {
        let header = GetConsumerConnectionListRequestHeader {
            consumer_group: group.to_string(),
        };
        let req = RemotingCommand::request(RequestCode::GetConsumerConnectionList, &header);
        let response = self
            .instance
            .invoke_ok(broker_addr, req, self.timeout())
            .await?;
        decode_response(&response)
    }

    /// The names of the subscription groups the broker at `broker_addr` knows
    /// (GET_ALL_SUBSCRIPTIONGROUP_CONFIG, the keys of its `subscriptionGroupTable`), sorted.
    ///
    /// # Errors
    /// Transport errors; the broker's error code; undecodable body.
    pub async fn subscription_groups_on(&self, broker_addr: &str) -> Result<Vec<String>> {
        let req = RemotingCommand::request_empty(RequestCode::GetAllSubscriptiongroupConfig);
        let response = self
            .instance
            .invoke_ok(broker_addr, req, self.timeout())
            .await?;
        let value: serde_json::Value = decode_response(&response)?;
        let mut groups: Vec<String> = value
            .get("subscriptionGroupTable")
            .and_then(serde_json::Value::as_object)
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default();
        groups.sort();
        Ok(groups)
    }

    /// Messages of `topic` whose KEYS contain `key`, stored between `begin_ms` and `end_ms`
    /// (at most `max` per broker), from every master of the topic.
    ///
    /// # Errors
    /// Unknown topic; a broker's error other than QUERY_NOT_FOUND.
    pub async fn query_message_by_key(
        &self,
        topic: &str,
        key: &str,
        max: i32,
        begin_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<MessageExt>> {
        let found = self
            .query_index(topic, key, max, begin_ms, end_ms, false)
            .await?;
        Ok(found
            .into_iter()
            .filter(|m| m.message.keys().any(|k| k == key))
            .collect())
    }

    async fn query_index(
        &self,
        topic: &str,
        key: &str,
        max: i32,
        begin_ms: i64,
        end_ms: i64,
        unique: bool,
    ) -> Result<Vec<MessageExt>> {
        let mut out = Vec::new();
        for addr in self.topic_masters(topic).await? {
            let header = QueryMessageRequestHeader {
                topic: topic.to_string(),
                key: key.to_string(),
                max_num: max,
                begin_timestamp: begin_ms,
                end_timestamp: end_ms,
                unique_key_query: Some(unique),
            };
            let req = RemotingCommand::request(RequestCode::QueryMessage, &header);
            let response = self.instance.invoke(&addr, req, QUERY_TIMEOUT).await?;
            if response.code == i32::from(ResponseCode::QueryNotFound) {
                continue;
            }
            let response = expect_success(&addr, response)?;
            let msgs =
                decode_messages(&response.body).map_err(|e| ClientError::Record(e.to_string()))?;
            out.extend(msgs.into_iter().filter(|m| m.message.topic == topic));
        }
        Ok(out)
    }

    /// One message by id: an offset message id (VIEW_MESSAGE_BY_ID at the broker it names)
    /// or a client `UNIQ_KEY` (QUERY_MESSAGE with `_UNIQUE_KEY_QUERY=true`).
    ///
    /// # Errors
    /// Unknown topic; [`ClientError::Broker`] with QUERY_NOT_FOUND (22) when nothing matches.
    pub async fn query_message_by_id(&self, topic: &str, id: &str) -> Result<MessageExt> {
        if let Ok((store_host, offset)) = decode_offset_msg_id(id) {
            let addr = store_host.to_string();
            // A UNIQ_KEY also decodes as an offset id; only trust it when it names a broker.
            if self.instance.all_broker_addrs(false).contains(&addr) || self.is_broker(&addr).await
            {
                if let Ok(m) = self.view_message_by_offset(&addr, offset).await {
                    return Ok(m);
                }
            }
        }
        let found = self.query_index(topic, id, 32, 0, i64::MAX, true).await?;
        found
            .into_iter()
            .find(|m| m.message.uniq_key() == Some(id))
            .ok_or_else(|| ClientError::Broker {
                addr: "cluster".into(),
                code: i32::from(ResponseCode::QueryNotFound),
                remark: format!("no message with id {id}"),
            })
    }

    /// The record at CommitLog offset `commit_log_offset` of the broker at `broker_addr`
    /// (VIEW_MESSAGE_BY_ID; both halves of an offset message id, see
    /// [`decode_offset_msg_id`]).
    ///
    /// # Errors
    /// Transport errors; the broker's error code; [`ClientError::Record`] when the answer holds
    /// no decodable record.
    pub async fn view_message_by_offset(
        &self,
        broker_addr: &str,
        commit_log_offset: i64,
    ) -> Result<MessageExt> {
        let header = ViewMessageByIdRequestHeader {
            offset: commit_log_offset,
            topic: None,
        };
        let req = RemotingCommand::request(RequestCode::ViewMessageById, &header);
        let response = self
            .instance
            .invoke_ok(broker_addr, req, self.timeout())
            .await?;
        let mut msgs =
            decode_messages(&response.body).map_err(|e| ClientError::Record(e.to_string()))?;
        if msgs.is_empty() {
            return Err(ClientError::Record(format!(
                "{broker_addr} returned no record at offset {commit_log_offset}"
            )));
        }
        Ok(msgs.swap_remove(0))
    }

    async fn is_broker(&self, addr: &str) -> bool {
        self.cluster_info().await.is_ok_and(|info| {
            info.broker_addr_table
                .values()
                .any(|bd| bd.broker_addrs.values().any(|a| a == addr))
        })
    }

    /// The message at `queue_offset` of `mq` (a one-message pull).
    ///
    /// # Errors
    /// [`ClientError::Broker`] with PULL_NOT_FOUND (19) if there is none.
    pub async fn view_message(&self, mq: &MessageQueue, queue_offset: i64) -> Result<MessageExt> {
        let addr = self.master_of(mq).await?;
        let expr = tern_common::message::SubscriptionExpr::all();
        let args = PullArgs {
            group: tern_common::message::TOOLS_CONSUMER_GROUP,
            mq,
            offset: queue_offset,
            max_msgs: 1,
            sys_flag: api::PULL_FLAG_SUBSCRIPTION,
            commit_offset: 0,
            suspend_timeout: Duration::ZERO,
            subscription: "*",
            sub_version: 0,
        };
        let result = api::pull(&self.instance, &addr, &args, &expr, self.timeout()).await?;
        match (result.status, result.messages.into_iter().next()) {
            (PullStatus::Found, Some(m)) if m.queue_offset == queue_offset => Ok(m),
            _ => Err(ClientError::Broker {
                addr,
                code: i32::from(ResponseCode::PullNotFound),
                remark: format!("no message at offset {queue_offset} of {mq}"),
            }),
        }
    }

    /// Resets `group`'s offsets on `topic` to the first message stored at or after
    /// `timestamp_ms`, on every broker of the topic (INVOKE_BROKER_TO_RESET_OFFSET); online
    /// consumers are told by the broker. Returns the new offset per queue.
    ///
    /// # Errors
    /// Unknown topic or group; any broker's error.
    pub async fn reset_offset_by_time(
        &self,
        group: &str,
        topic: &str,
        timestamp_ms: i64,
        force: bool,
    ) -> Result<BTreeMap<MessageQueue, i64>> {
        let mut out = BTreeMap::new();
        for addr in self.topic_masters(topic).await? {
            out.extend(
                self.reset_offset_by_time_on(&addr, group, topic, timestamp_ms, force)
                    .await?,
            );
        }
        Ok(out)
    }

    /// [`reset_offset_by_time`](Self::reset_offset_by_time) on the one broker at
    /// `broker_addr`; returns the new offset of each of its queues.
    ///
    /// # Errors
    /// Transport errors; the broker's error code; undecodable body.
    pub async fn reset_offset_by_time_on(
        &self,
        broker_addr: &str,
        group: &str,
        topic: &str,
        timestamp_ms: i64,
        force: bool,
    ) -> Result<BTreeMap<MessageQueue, i64>> {
        let header = ResetOffsetRequestHeader {
            group: group.to_string(),
            topic: topic.to_string(),
            queue_id: Some(-1),
            offset: Some(-1),
            timestamp: timestamp_ms,
            is_force: force,
        };
        let req = RemotingCommand::request(RequestCode::InvokeBrokerToResetOffset, &header);
        let response = self
            .instance
            .invoke_ok(broker_addr, req, self.timeout())
            .await?;
        if response.body.is_empty() {
            return Ok(BTreeMap::new());
        }
        let body: ResetOffsetBody = decode_response(&response)?;
        Ok(body.offset_table.0.into_iter().collect())
    }

    /// A broker's runtime statistics (GET_BROKER_RUNTIME_INFO) as a string table.
    ///
    /// # Errors
    /// Transport errors, error codes, undecodable body.
    pub async fn broker_runtime_info(&self, broker_addr: &str) -> Result<BTreeMap<String, String>> {
        let req = RemotingCommand::request_empty(RequestCode::GetBrokerRuntimeInfo);
        let response = self
            .instance
            .invoke_ok(broker_addr, req, self.timeout())
            .await?;
        let table: KVTable = decode_response(&response)?;
        Ok(table.table)
    }

    /// The smallest offset of `mq` (GET_MIN_OFFSET).
    ///
    /// # Errors
    /// Unknown broker; the broker's error.
    pub async fn min_offset(&self, mq: &MessageQueue) -> Result<i64> {
        let addr = self.master_of(mq).await?;
        api::queue_offset(&self.instance, &addr, mq, false).await
    }

    /// The next offset to be written in `mq` (GET_MAX_OFFSET).
    ///
    /// # Errors
    /// Unknown broker; the broker's error.
    pub async fn max_offset(&self, mq: &MessageQueue) -> Result<i64> {
        let addr = self.master_of(mq).await?;
        api::queue_offset(&self.instance, &addr, mq, true).await
    }

    /// The first offset of `mq` stored at or after `timestamp_ms` (SEARCH_OFFSET_BY_TIMESTAMP).
    ///
    /// # Errors
    /// Unknown broker; the broker's error.
    pub async fn search_offset(&self, mq: &MessageQueue, timestamp_ms: i64) -> Result<i64> {
        let addr = self.master_of(mq).await?;
        api::search_offset(&self.instance, &addr, mq, timestamp_ms).await
    }

    /// The master address of `mq`'s broker, refreshing the topic's route when unknown.
    async fn master_of(&self, mq: &MessageQueue) -> Result<String> {
        self.instance
            .find_master_or_refresh(&mq.broker_name, &mq.topic)
            .await
    }

    /// Sends a raw request to `addr` and returns the raw response (for tools).
    ///
    /// # Errors
    /// Transport errors.
    pub async fn invoke_raw(
        &self,
        addr: &str,
        request: RemotingCommand,
    ) -> Result<RemotingCommand> {
        self.instance.invoke(addr, request, self.timeout()).await
    }

    /// Milliseconds since the epoch (a convenience for time-based calls).
    pub fn now_ms() -> i64 {
        now_ms()
    }
}
