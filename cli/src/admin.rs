//! The admin requests `tern` sends to NameServers and brokers, over the remoting protocol
//! with JSON headers and bodies (so the same commands work against an Apache RocketMQ
//! cluster). Each function is one request and one decoded answer; the commands combine them.
//!
//! A non-SUCCESS response becomes an error carrying the code's name and the server's remark.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use tern_common::message::{decode_messages, MessageExt};
use tern_common::protocol::body::{
    decode_body, ConsumeStats, ConsumerConnection, KVTable, ResetOffsetBody, TopicStatsTable,
};
use tern_common::protocol::header::{
    CreateTopicRequestHeader, DeleteTopicFromNamesrvRequestHeader, DeleteTopicRequestHeader,
    GetConsumeStatsRequestHeader, GetConsumerConnectionListRequestHeader,
    GetRouteInfoRequestHeader, GetTopicStatsInfoRequestHeader, QueryMessageRequestHeader,
    ResetOffsetRequestHeader, ViewMessageByIdRequestHeader,
};
use tern_common::protocol::{
    CommandHeader, RemotingCommand, RequestCode, ResponseCode, SerializeType,
};
use tern_common::remoting::{ClientConfig, RemotingClient, RemotingError};
use tern_common::route::{ClusterInfo, TopicConfig, TopicList, TopicRouteData};

/// How the error for an unreachable NameServer reads; tests match on its first words.
pub(crate) const NO_NAMESRV: &str = "no NameServer answers at";

/// A connection pool to the cluster plus the NameServer list.
#[derive(Debug, Clone)]
pub(crate) struct AdminClient {
    client: RemotingClient,
    namesrv: Vec<String>,
    timeout: Duration,
}

impl AdminClient {
    /// A client for the NameServers in `namesrv` (`HOST:PORT[;HOST:PORT]`).
    pub(crate) fn new(namesrv: &str, timeout: Duration) -> Result<Self> {
        let list = parse_namesrv_list(namesrv)?;
        let client = RemotingClient::new(ClientConfig {
            connect_timeout: timeout.min(Duration::from_secs(3)),
            serialize_type: SerializeType::Json,
            ..ClientConfig::default()
        });
        Ok(AdminClient {
            client,
            namesrv: list,
            timeout,
        })
    }

    /// The NameServer list as given.
    pub(crate) fn namesrv(&self) -> &[String] {
        &self.namesrv
    }

    /// The NameServer list joined with `;`, as the SDK builders take it.
    pub(crate) fn namesrv_joined(&self) -> String {
        self.namesrv.join(";")
    }

    /// Checks that at least one NameServer accepts a connection and answers; otherwise the
    /// error says which addresses were tried and how to start a NameServer.
    pub(crate) async fn ensure_namesrv(&self) -> Result<()> {
        let mut causes = Vec::new();
        for addr in &self.namesrv {
            let request = RemotingCommand::request_empty(RequestCode::GetBrokerClusterInfo);
            match self.client.invoke(addr, request, self.timeout).await {
                Ok(_) => return Ok(()),
                Err(err) => causes.push(format!("{addr}: {}", describe_remoting(&err))),
            }
        }
        bail!(
            "{NO_NAMESRV} {} ({}).\n\
             Start a local cluster with `deploy/local-cluster.sh start` (or run `tern-nameserver`),\n\
             or point tern at a running NameServer with `-n HOST:PORT` or NAMESRV_ADDR.",
            self.namesrv.join(";"),
            causes.join("; ")
        )
    }

    /// Sends `request` to `addr` and returns the response if its code is SUCCESS.
    async fn call(&self, addr: &str, request: RemotingCommand) -> Result<RemotingCommand> {
        let code = request.code;
        let response = self
            .client
            .invoke(addr, request, self.timeout)
            .await
            .map_err(|e| anyhow!("{addr}: {}", describe_remoting(&e)))?;
        if response.code != i32::from(ResponseCode::Success) {
            let name = ResponseCode::try_from(response.code)
                .map(|c| c.to_string())
                .unwrap_or_else(|_| format!("code {}", response.code));
            let request_name = RequestCode::try_from(code)
                .map(|c| c.to_string())
                .unwrap_or_else(|_| code.to_string());
            bail!(
                "{addr} answered {request_name} with {name}: {}",
                response.remark.as_deref().unwrap_or("").trim()
            );
        }
        Ok(response)
    }

    /// Like [`call`](Self::call) with a typed header.
    async fn call_with(
        &self,
        addr: &str,
        code: RequestCode,
        header: &impl CommandHeader,
    ) -> Result<RemotingCommand> {
        self.call(addr, RemotingCommand::request(code, header))
            .await
    }

    /// Asks the NameServers in order until one answers SUCCESS.
    async fn call_namesrv(&self, make: impl Fn() -> RemotingCommand) -> Result<RemotingCommand> {
        let mut last = None;
        for addr in &self.namesrv {
            match self.call(addr, make()).await {
                Ok(response) => return Ok(response),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("no NameServer address given")))
    }

    /// GET_BROKER_CLUSTER_INFO.
    pub(crate) async fn cluster_info(&self) -> Result<ClusterInfo> {
        let response = self
            .call_namesrv(|| RemotingCommand::request_empty(RequestCode::GetBrokerClusterInfo))
            .await?;
        decode(&response.body, "cluster info")
    }

    /// GET_ROUTEINFO_BY_TOPIC; `Ok(None)` when the NameServer knows no such topic.
    pub(crate) async fn topic_route(&self, topic: &str) -> Result<Option<TopicRouteData>> {
        let header = GetRouteInfoRequestHeader {
            topic: topic.to_string(),
            accept_standard_json_only: None,
        };
        let mut last = None;
        for addr in &self.namesrv {
            let request = RemotingCommand::request(RequestCode::GetRouteinfoByTopic, &header);
            match self.client.invoke(addr, request, self.timeout).await {
                Ok(r) if r.code == i32::from(ResponseCode::Success) => {
                    let route = TopicRouteData::from_json(&r.body)
                        .with_context(|| format!("decoding the route of {topic}"))?;
                    return Ok(Some(route));
                }
                Ok(r) if r.code == i32::from(ResponseCode::TopicNotExist) => return Ok(None),
                Ok(r) => {
                    last = Some(anyhow!(
                        "{addr} answered GET_ROUTEINFO_BY_TOPIC with code {}: {}",
                        r.code,
                        r.remark.unwrap_or_default()
                    ))
                }
                Err(err) => last = Some(anyhow!("{addr}: {}", describe_remoting(&err))),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("no NameServer address given")))
    }

    /// The route of `topic`, or an error naming the topic.
    pub(crate) async fn require_route(&self, topic: &str) -> Result<TopicRouteData> {
        self.topic_route(topic)
            .await?
            .ok_or_else(|| anyhow!("topic `{topic}` does not exist (no route on the NameServer)"))
    }

    /// GET_ALL_TOPIC_LIST_FROM_NAMESERVER.
    pub(crate) async fn topic_list(&self) -> Result<TopicList> {
        let response = self
            .call_namesrv(|| {
                RemotingCommand::request_empty(RequestCode::GetAllTopicListFromNameserver)
            })
            .await?;
        decode(&response.body, "topic list")
    }

    /// UPDATE_AND_CREATE_TOPIC on one broker.
    pub(crate) async fn create_topic(&self, broker_addr: &str, config: &TopicConfig) -> Result<()> {
        let header = CreateTopicRequestHeader {
            topic: config.topic_name.clone(),
            default_topic: "TBW102".to_string(),
            read_queue_nums: config.read_queue_nums,
            write_queue_nums: config.write_queue_nums,
            perm: config.perm,
            topic_filter_type: config.topic_filter_type.as_str().to_string(),
            topic_sys_flag: Some(config.topic_sys_flag),
            order: config.order,
            attributes: None,
            force: None,
        };
        self.call_with(broker_addr, RequestCode::UpdateAndCreateTopic, &header)
            .await
            .map(|_| ())
    }

    /// DELETE_TOPIC_IN_BROKER on one broker.
    pub(crate) async fn delete_topic_in_broker(
        &self,
        broker_addr: &str,
        topic: &str,
    ) -> Result<()> {
        let header = DeleteTopicRequestHeader {
            topic: topic.to_string(),
        };
        self.call_with(broker_addr, RequestCode::DeleteTopicInBroker, &header)
            .await
            .map(|_| ())
    }

    /// DELETE_TOPIC_IN_NAMESRV on every NameServer (all must succeed).
    pub(crate) async fn delete_topic_in_namesrv(&self, topic: &str) -> Result<()> {
        let header = DeleteTopicFromNamesrvRequestHeader {
            topic: topic.to_string(),
            cluster_name: None,
        };
        for addr in &self.namesrv {
            self.call_with(addr, RequestCode::DeleteTopicInNamesrv, &header)
                .await?;
        }
        Ok(())
    }

    /// GET_TOPIC_STATS_INFO on one broker.
    pub(crate) async fn topic_stats(
        &self,
        broker_addr: &str,
        topic: &str,
    ) -> Result<TopicStatsTable> {
        let header = GetTopicStatsInfoRequestHeader {
            topic: topic.to_string(),
        };
        let response = self
            .call_with(broker_addr, RequestCode::GetTopicStatsInfo, &header)
            .await?;
        decode(&response.body, "topic stats")
    }

    /// GET_CONSUME_STATS on one broker.
    pub(crate) async fn consume_stats(
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
        let response = self
            .call_with(broker_addr, RequestCode::GetConsumeStats, &header)
            .await?;
        decode(&response.body, "consume stats")
    }

    /// GET_CONSUMER_CONNECTION_LIST on one broker.
    pub(crate) async fn consumer_connections(
        &self,
        broker_addr: &str,
        group: &str,
    ) -> Result<ConsumerConnection> {
        let header = GetConsumerConnectionListRequestHeader {
            consumer_group: group.to_string(),
        };
        let response = self
            .call_with(broker_addr, RequestCode::GetConsumerConnectionList, &header)
            .await?;
        decode(&response.body, "consumer connections")
    }

    /// GET_ALL_SUBSCRIPTIONGROUP_CONFIG on one broker: the group names it knows.
    pub(crate) async fn subscription_groups(&self, broker_addr: &str) -> Result<Vec<String>> {
        let response = self
            .call(
                broker_addr,
                RemotingCommand::request_empty(RequestCode::GetAllSubscriptiongroupConfig),
            )
            .await?;
        let value: serde_json::Value = decode(&response.body, "subscription groups")?;
        let table = value
            .get("subscriptionGroupTable")
            .and_then(serde_json::Value::as_object)
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default();
        Ok(table)
    }

    /// QUERY_MESSAGE on one broker: messages whose key (or UNIQ_KEY when `unique`) is `key`,
    /// stored between `begin_ms` and `end_ms`. An empty result is not an error.
    pub(crate) async fn query_message(
        &self,
        broker_addr: &str,
        topic: &str,
        key: &str,
        max: i32,
        unique: bool,
    ) -> Result<Vec<MessageExt>> {
        let header = QueryMessageRequestHeader {
            topic: topic.to_string(),
            key: key.to_string(),
            max_num: max,
            begin_timestamp: 0,
            end_timestamp: i64::MAX,
            unique_key_query: unique.then_some(true),
        };
        let request = RemotingCommand::request(RequestCode::QueryMessage, &header);
        let response = self
            .client
            .invoke(broker_addr, request, self.timeout)
            .await
            .map_err(|e| anyhow!("{broker_addr}: {}", describe_remoting(&e)))?;
        if response.code == i32::from(ResponseCode::QueryNotFound) {
            return Ok(Vec::new());
        }
        if response.code != i32::from(ResponseCode::Success) {
            bail!(
                "{broker_addr} answered QUERY_MESSAGE with code {}: {}",
                response.code,
                response.remark.unwrap_or_default()
            );
        }
        decode_messages(&response.body).context("decoding QUERY_MESSAGE records")
    }

    /// VIEW_MESSAGE_BY_ID: the record at CommitLog offset `phy_offset` of the broker `addr`.
    pub(crate) async fn view_message(&self, addr: &str, phy_offset: i64) -> Result<MessageExt> {
        let header = ViewMessageByIdRequestHeader {
            offset: phy_offset,
            topic: None,
        };
        let response = self
            .call_with(addr, RequestCode::ViewMessageById, &header)
            .await?;
        let mut messages = decode_messages(&response.body).context("decoding the record")?;
        if messages.is_empty() {
            bail!("{addr} returned no record at offset {phy_offset}");
        }
        Ok(messages.swap_remove(0))
    }

    /// INVOKE_BROKER_TO_RESET_OFFSET on one broker: moves `group`'s offsets of `topic` to the
    /// first message stored at or after `timestamp_ms`; returns the new offsets.
    pub(crate) async fn reset_offset(
        &self,
        broker_addr: &str,
        group: &str,
        topic: &str,
        timestamp_ms: i64,
        force: bool,
    ) -> Result<ResetOffsetBody> {
        let header = ResetOffsetRequestHeader {
            group: group.to_string(),
            topic: topic.to_string(),
            queue_id: None,
            offset: None,
            timestamp: timestamp_ms,
            is_force: force,
        };
        let response = self
            .call_with(broker_addr, RequestCode::InvokeBrokerToResetOffset, &header)
            .await?;
        if response.body.is_empty() {
            return Ok(ResetOffsetBody::default());
        }
        decode(&response.body, "reset offsets")
    }

    /// GET_BROKER_RUNTIME_INFO on one broker.
    pub(crate) async fn runtime_info(&self, broker_addr: &str) -> Result<KVTable> {
        let response = self
            .call(
                broker_addr,
                RemotingCommand::request_empty(RequestCode::GetBrokerRuntimeInfo),
            )
            .await?;
        decode(&response.body, "runtime info")
    }

    /// Master addresses of every broker in the cluster info (optionally of one cluster),
    /// sorted by broker name: `(cluster, broker name, address)`.
    pub(crate) async fn master_brokers(
        &self,
        cluster: Option<&str>,
    ) -> Result<Vec<(String, String, String)>> {
        let info = self.cluster_info().await?;
        let mut out = Vec::new();
        for (name, data) in &info.broker_addr_table {
            if cluster.is_some_and(|c| c != data.cluster) {
                continue;
            }
            if let Some(addr) = data.broker_addrs.get(&0) {
                out.push((data.cluster.clone(), name.clone(), addr.clone()));
            }
        }
        if let Some(c) = cluster {
            if out.is_empty() && !info.cluster_addr_table.contains_key(c) {
                bail!("cluster `{c}` is unknown to the NameServer");
            }
        }
        Ok(out)
    }
}

/// Splits `HOST:PORT[;HOST:PORT]`, rejecting empty lists and entries without a port.
pub(crate) fn parse_namesrv_list(text: &str) -> Result<Vec<String>> {
    let list: Vec<String> = text
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if list.is_empty() {
        bail!("no NameServer address: pass -n HOST:PORT or set NAMESRV_ADDR");
    }
    for addr in &list {
        let port = addr.rsplit_once(':').map(|(_, p)| p);
        if port.and_then(|p| p.parse::<u16>().ok()).is_none() {
            bail!("NameServer address `{addr}` is not HOST:PORT");
        }
    }
    Ok(list)
}

/// A remoting error in words, with its cause (connection refused, timed out, ...).
pub(crate) fn describe_remoting(err: &RemotingError) -> String {
    match err {
        RemotingError::Connect { source, .. } => format!("cannot connect: {source}"),
        other => other.to_string(),
    }
}

/// Decodes a JSON body, naming `what` in the error.
fn decode<T: DeserializeOwned>(body: &Bytes, what: &str) -> Result<T> {
    decode_body(body, SerializeType::Json).with_context(|| format!("decoding the {what} body"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namesrv_list_splits_and_validates() {
        assert_eq!(
            parse_namesrv_list("127.0.0.1:9876; 10.0.0.2:9876").unwrap(),
            vec!["127.0.0.1:9876".to_string(), "10.0.0.2:9876".to_string()]
        );
        assert!(parse_namesrv_list(" ; ").is_err());
        assert!(parse_namesrv_list("localhost").is_err());
        assert!(parse_namesrv_list("localhost:99999").is_err());
    }

    #[tokio::test]
    async fn unreachable_namesrv_error_says_how_to_start_one() {
        // Bind then drop a listener: the port is free and nothing answers there.
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let admin = AdminClient::new(&addr.to_string(), Duration::from_secs(2)).unwrap();
        let err = admin.ensure_namesrv().await.unwrap_err().to_string();
        assert!(err.starts_with(NO_NAMESRV), "{err}");
        assert!(err.contains(&addr.to_string()), "{err}");
        assert!(err.contains("local-cluster.sh start"), "{err}");
    }
}
