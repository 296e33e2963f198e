//! The request dispatcher: one `match` from [`RequestCode`] to a processor function
//! (RocketMQ's `DefaultRequestProcessor` and `ClientRequestProcessor`, PROTOCOL.md §2.2).
//!
//! # Contract
//!
//! - Every request gets exactly one response (none for oneway requests, which are still
//!   processed: 5.x brokers send BROKER_HEARTBEAT oneway). Responses are built with
//!   [`RemotingCommand::response_to`], so they go out in the request's serialize type, and
//!   structured bodies are encoded in that type too (JSON for 0 and 1, MessagePack for 2).
//! - A code the NameServer does not serve answers REQUEST_CODE_NOT_SUPPORTED (3) with remark
//!   `" request type <code> not supported"`, as Java does.
//! - Malformed input — a missing or unparsable header field, a body that does not decode, a
//!   CRC mismatch — answers SYSTEM_ERROR (1) with a short remark naming the problem; it never
//!   panics. [`ProcessorError`] → response code is decided in one place,
//!   [`ProcessorError::response_code`].
//! - Processors are synchronous: the route table and KV store are in memory behind short
//!   locks, so no lock is ever held across an `.await`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_common::protocol::body::{decode_body, encode_body, BodyError};
use tern_common::protocol::header::{
    AddWritePermOfBrokerRequestHeader, AddWritePermOfBrokerResponseHeader,
    BrokerHeartbeatRequestHeader, DeleteKVConfigRequestHeader, DeleteTopicFromNamesrvRequestHeader,
    GetKVConfigRequestHeader, GetKVConfigResponseHeader, GetKVListByNamespaceRequestHeader,
    GetRouteInfoRequestHeader, GetTopicsByClusterRequestHeader, PutKVConfigRequestHeader,
    QueryDataVersionRequestHeader, QueryDataVersionResponseHeader, RegisterBrokerRequestHeader,
    RegisterBrokerResponseHeader, UnregisterBrokerRequestHeader,
    WipeWritePermOfBrokerRequestHeader, WipeWritePermOfBrokerResponseHeader,
};
use tern_common::protocol::{HeaderError, RemotingCommand, RequestCode, ResponseCode};
use tern_common::remoting::{Connection, RequestHandler};
use tern_common::route::{DataVersion, RegisterBrokerBody};
use thiserror::Error;
use tracing::{debug, error, warn};

use crate::config::NameServerConfig;
use crate::kv_config::{KvConfig, KvConfigError, NAMESPACE_ORDER_TOPIC_CONFIG};
use crate::route_table::{RegisterBrokerRequest, RegisterError, RouteTable};
use crate::validate::{
    check_broker_identity, drop_invalid_topics, dropped_topics_remark, InvalidRegistration,
};

/// Why a request could not be served; turned into a response by
/// [`ProcessorError::response_code`] and its `Display` text (the remark).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ProcessorError {
    /// A header field is missing or does not parse.
    #[error("{0}")]
    Header(#[from] HeaderError),
    /// The body does not decode as the expected structure.
    #[error("invalid request body: {0}")]
    Body(#[from] BodyError),
    /// REGISTER_BROKER `bodyCrc32` does not match the body.
    #[error("crc32 not match")]
    Crc32Mismatch,
    /// REGISTER_BROKER with `compressed=true`, which Tern does not decode.
    #[error("compressed register body not supported")]
    CompressedBody,
    /// The registration was refused.
    #[error("register broker failed: {0}")]
    Register(#[from] RegisterError),
    /// The KV store refused the change (full, empty namespace or key, file write failed).
    #[error("{0}")]
    KvConfig(#[from] KvConfigError),
    /// REGISTER_BROKER with an empty name or address or a negative broker id.
    #[error("register broker failed: {0}")]
    InvalidRegistration(#[from] InvalidRegistration),
}

impl ProcessorError {
    /// The response code for this error: SYSTEM_ERROR for all of them, as Java answers a
    /// processor exception or a failed header decode.
    pub fn response_code(&self) -> ResponseCode {
        ResponseCode::SystemError
    }
}

/// The NameServer's state and request handler: the route table, the KV store and the
/// configuration. Shared by every connection task behind an `Arc`.
#[derive(Debug)]
pub struct NameServer {
    config: NameServerConfig,
    routes: RouteTable,
    kv: KvConfig,
}

type Outcome = Result<RemotingCommand, ProcessorError>;

impl NameServer {
    /// A NameServer with empty route tables and its KV store loaded from
    /// `config.kv_config_path` (memory only when that is `None`).
    ///
    /// # Errors
    /// The KV file exists but cannot be read or parsed ([`KvConfigError::Io`],
    /// [`KvConfigError::Corrupt`]).
    pub fn open(config: NameServerConfig) -> Result<Self, KvConfigError> {
        let kv = KvConfig::open(config.kv_config_path.clone())?;
        Ok(NameServer {
            routes: RouteTable::new(config.broker_expiry),
            kv,
            config,
        })
    }

    /// As [`NameServer::open`], but infallible: when the KV file cannot be loaded the error
    /// is logged and the KV store runs in memory only, so the unreadable file is never
    /// overwritten. Prefer [`NameServer::open`] (the binary does, and refuses to start).
    pub fn new(config: NameServerConfig) -> Self {
        match Self::open(config.clone()) {
            Ok(server) => server,
            Err(err) => {
                error!(cause = %err, "kv config not loaded; kv store kept in memory only");
                NameServer {
                    routes: RouteTable::new(config.broker_expiry),
                    kv: KvConfig::new(),
                    config,
                }
            }
        }
    }

    /// The route table (for the liveness scan and tests).
    pub fn routes(&self) -> &RouteTable {
        &self.routes
    }

    /// The KV store.
    pub fn kv(&self) -> &KvConfig {
        &self.kv
    }

    /// The configuration.
    pub fn config(&self) -> &NameServerConfig {
        &self.config
    }

    /// Serves one request that arrived on connection `conn_id` at `now`; always returns a
    /// response (the caller drops it for oneway requests).
    pub fn process(
        &self,
        conn_id: Option<u64>,
        req: &RemotingCommand,
        now: Instant,
    ) -> RemotingCommand {
        let Ok(code) = RequestCode::try_from(req.code) else {
            return not_supported(req);
        };
        let outcome = match code {
            RequestCode::PutKvConfig => self.put_kv_config(req),
            RequestCode::GetKvConfig => self.get_kv_config(req),
            RequestCode::DeleteKvConfig => self.delete_kv_config(req),
            RequestCode::GetKvlistByNamespace => self.get_kv_list_by_namespace(req),
            RequestCode::RegisterBroker => self.register_broker(conn_id, req, now),
            RequestCode::UnregisterBroker => self.unregister_broker(req),
            RequestCode::BrokerHeartbeat => self.broker_heartbeat(req, now),
            RequestCode::QueryDataVersion => self.query_data_version(req, now),
            RequestCode::GetRouteinfoByTopic => self.get_route_info(req),
            RequestCode::GetBrokerClusterInfo => body_response(req, &self.routes.cluster_info()),
            RequestCode::GetAllTopicListFromNameserver => self.get_all_topic_list(req),
            RequestCode::GetTopicsByCluster => self.get_topics_by_cluster(req),
            RequestCode::GetSystemTopicListFromNs => {
                body_response(req, &self.routes.system_topics())
            }
            RequestCode::DeleteTopicInNamesrv => self.delete_topic(req),
            RequestCode::WipeWritePermOfBroker => self.wipe_write_perm(req),
            RequestCode::AddWritePermOfBroker => self.add_write_perm(req),
            _ => return not_supported(req),
        };
        match outcome {
            Ok(response) => response,
            Err(err) => {
                debug!(code = req.code, cause = %err, "request failed");
                RemotingCommand::response_to(req, err.response_code()).with_remark(err.to_string())
            }
        }
    }

    fn put_kv_config(&self, req: &RemotingCommand) -> Outcome {
        let h: PutKVConfigRequestHeader = req.decode_header()?;
        self.kv.put(&h.namespace, &h.key, &h.value)?;
        Ok(success(req))
    }

    fn get_kv_config(&self, req: &RemotingCommand) -> Outcome {
        let h: GetKVConfigRequestHeader = req.decode_header()?;
        match self.kv.get(&h.namespace, &h.key) {
            Some(value) => {
                Ok(success(req).with_header(&GetKVConfigResponseHeader { value: Some(value) }))
            }
            None => Ok(
                RemotingCommand::response_to(req, ResponseCode::QueryNotFound).with_remark(
                    format!("No config item, Namespace: {} Key: {}", h.namespace, h.key),
                ),
            ),
        }
    }

    fn delete_kv_config(&self, req: &RemotingCommand) -> Outcome {
        let h: DeleteKVConfigRequestHeader = req.decode_header()?;
        self.kv.delete(&h.namespace, &h.key)?;
        Ok(success(req))
    }

    fn get_kv_list_by_namespace(&self, req: &RemotingCommand) -> Outcome {
        let h: GetKVListByNamespaceRequestHeader = req.decode_header()?;
        match self.kv.list(&h.namespace) {
            Some(table) => body_response(req, &table),
            None => Ok(
                RemotingCommand::response_to(req, ResponseCode::QueryNotFound)
                    .with_remark(format!("No config item, Namespace: {}", h.namespace)),
            ),
        }
    }

    fn register_broker(
        &self,
        conn_id: Option<u64>,
        req: &RemotingCommand,
        now: Instant,
    ) -> Outcome {
        let h: RegisterBrokerRequestHeader = req.decode_header()?;
        check_broker_identity(&h.broker_name, &h.cluster_name, &h.broker_addr, h.broker_id)
            .inspect_err(|err| {
                warn!(broker = %h.broker_name, addr = %h.broker_addr, cause = %err, "register refused");
            })?;
        if let Some(expected) = h.body_crc32.filter(|c| *c != 0) {
            let actual = (crc32fast::hash(&req.body) & 0x7FFF_FFFF) as i32;
            if actual != expected {
                warn!(broker = %h.broker_name, addr = %h.broker_addr, "register body crc32 mismatch");
                return Err(ProcessorError::Crc32Mismatch);
            }
        }
        let mut body: RegisterBrokerBody = if req.body.is_empty() {
            RegisterBrokerBody::default()
        } else if h.compressed == Some(true) {
            return Err(ProcessorError::CompressedBody);
        } else {
            decode_body(&req.body, req.serialize_type)?
        };
        let dropped = drop_invalid_topics(&mut body.topic_config_serialize_wrapper);
        for (topic, problem) in &dropped {
            warn!(broker = %h.broker_name, addr = %h.broker_addr, topic = %topic, problem = %problem, "invalid topic config ignored");
        }
        let timeout = h
            .heartbeat_timeout_millis
            .filter(|ms| *ms > 0)
            .map(|ms| Duration::from_millis(ms.unsigned_abs()));
        let result = self.routes.register_broker(
            RegisterBrokerRequest {
                cluster_name: h.cluster_name,
                broker_addr: h.broker_addr,
                broker_name: h.broker_name,
                broker_id: h.broker_id,
                ha_server_addr: h.ha_server_addr,
                zone_name: h.zone_name,
                heartbeat_timeout: timeout,
                enable_acting_master: h.enable_acting_master,
                topic_config_wrapper: body.topic_config_serialize_wrapper,
                filter_server_list: body.filter_server_list,
                conn_id,
            },
            now,
        )?;
        let mut response = success(req).with_header(&RegisterBrokerResponseHeader {
            ha_server_addr: result.ha_server_addr,
            master_addr: result.master_addr,
        });
        if let Some(order_conf) = self.kv.list(NAMESPACE_ORDER_TOPIC_CONFIG) {
            response = response.with_body(encode_body(&order_conf, req.serialize_type)?);
        }
        if !dropped.is_empty() {
            response = response.with_remark(dropped_topics_remark(&dropped));
        }
        Ok(response)
    }

    fn unregister_broker(&self, req: &RemotingCommand) -> Outcome {
        let h: UnregisterBrokerRequestHeader = req.decode_header()?;
        self.routes
            .unregister_broker(&h.cluster_name, &h.broker_addr, &h.broker_name, h.broker_id);
        Ok(success(req))
    }

    fn broker_heartbeat(&self, req: &RemotingCommand, now: Instant) -> Outcome {
        let h: BrokerHeartbeatRequestHeader = req.decode_header()?;
        let timeout = h
            .heartbeat_timeout_mills
            .filter(|ms| *ms > 0)
            .map(|ms| Duration::from_millis(ms.unsigned_abs()));
        if !self
            .routes
            .heartbeat(&h.cluster_name, &h.broker_addr, timeout, now)
        {
            debug!(broker = %h.broker_name, addr = %h.broker_addr, "heartbeat from unregistered broker");
        }
        Ok(success(req))
    }

    fn query_data_version(&self, req: &RemotingCommand, now: Instant) -> Outcome {
        let h: QueryDataVersionRequestHeader = req.decode_header()?;
        let version: DataVersion = if req.body.is_empty() {
            DataVersion::default()
        } else {
            decode_body(&req.body, req.serialize_type)?
        };
        let (changed, stored) =
            self.routes
                .query_data_version(&h.cluster_name, &h.broker_addr, &version, now);
        let mut response = success(req).with_header(&QueryDataVersionResponseHeader { changed });
        if let Some(stored) = stored {
            response = response.with_body(encode_body(&stored, req.serialize_type)?);
        }
        Ok(response)
    }

    fn get_route_info(&self, req: &RemotingCommand) -> Outcome {
        let h: GetRouteInfoRequestHeader = req.decode_header()?;
        let Some(mut route) = self.routes.topic_route(&h.topic) else {
            return Ok(
                RemotingCommand::response_to(req, ResponseCode::TopicNotExist).with_remark(
                    format!(
                        "No topic route info in name server for the topic: {}",
                        h.topic
                    ),
                ),
            );
        };
        if self.config.order_message_enable {
            route.order_topic_conf = self.kv.get(NAMESPACE_ORDER_TOPIC_CONFIG, &h.topic);
        }
        body_response(req, &route)
    }

    fn get_all_topic_list(&self, req: &RemotingCommand) -> Outcome {
        if !self.config.enable_all_topic_list {
            return Ok(
                RemotingCommand::response_to(req, ResponseCode::SystemError).with_remark("disable")
            );
        }
        body_response(req, &self.routes.all_topics())
    }

    fn get_topics_by_cluster(&self, req: &RemotingCommand) -> Outcome {
        let h: GetTopicsByClusterRequestHeader = req.decode_header()?;
        body_response(req, &self.routes.topics_by_cluster(&h.cluster))
    }

    fn delete_topic(&self, req: &RemotingCommand) -> Outcome {
        let h: DeleteTopicFromNamesrvRequestHeader = req.decode_header()?;
        self.routes
            .delete_topic(&h.topic, h.cluster_name.as_deref());
        Ok(success(req))
    }

    fn wipe_write_perm(&self, req: &RemotingCommand) -> Outcome {
        let h: WipeWritePermOfBrokerRequestHeader = req.decode_header()?;
        let count = self.routes.set_write_perm(&h.broker_name, true);
        Ok(
            success(req).with_header(&WipeWritePermOfBrokerResponseHeader {
                wipe_topic_count: i32::try_from(count).unwrap_or(i32::MAX),
            }),
        )
    }

    fn add_write_perm(&self, req: &RemotingCommand) -> Outcome {
        let h: AddWritePermOfBrokerRequestHeader = req.decode_header()?;
        let count = self.routes.set_write_perm(&h.broker_name, false);
        Ok(
            success(req).with_header(&AddWritePermOfBrokerResponseHeader {
                add_topic_count: i32::try_from(count).unwrap_or(i32::MAX),
            }),
        )
    }
}

/// A SUCCESS response to `req`.
fn success(req: &RemotingCommand) -> RemotingCommand {
    RemotingCommand::response_to(req, ResponseCode::Success)
}

/// A SUCCESS response whose body is `value` in the request's serialize type.
fn body_response<T: serde::Serialize>(req: &RemotingCommand, value: &T) -> Outcome {
    Ok(success(req).with_body(encode_body(value, req.serialize_type)?))
}

/// REQUEST_CODE_NOT_SUPPORTED with Java's remark.
fn not_supported(req: &RemotingCommand) -> RemotingCommand {
    debug!(code = req.code, "request code not supported");
    RemotingCommand::response_to(req, ResponseCode::RequestCodeNotSupported)
        .with_remark(format!(" request type {} not supported", req.code))
}

/// The remoting handler: runs [`NameServer::process`] for each request and removes a broker
/// whose connection closes.
#[derive(Debug, Clone)]
pub struct NameServerHandler {
    state: Arc<NameServer>,
}

impl NameServerHandler {
    /// A handler over `state`.
    pub fn new(state: Arc<NameServer>) -> Self {
        NameServerHandler { state }
    }
}

impl RequestHandler for NameServerHandler {
    async fn handle(&self, conn: Connection, request: RemotingCommand) -> Option<RemotingCommand> {
        let response = self
            .state
            .process(Some(conn.id()), &request, Instant::now());
        (!request.is_oneway()).then_some(response)
    }

    fn on_connection_closed(&self, conn: &Connection) {
        self.state.routes.on_connection_closed(conn.id());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_common::protocol::body::KVTable;
    use tern_common::protocol::SerializeType;
    use tern_common::route::{ClusterInfo, TopicConfig, TopicList, TopicRouteData};

    fn ns() -> NameServer {
        NameServer::new(NameServerConfig::default())
    }

    fn register_req(name: &str, id: i64, addr: &str, topics: &[&str]) -> RemotingCommand {
        let mut body = RegisterBrokerBody::default();
        body.topic_config_serialize_wrapper.data_version.counter = 1;
        for t in topics {
            body.topic_config_serialize_wrapper
                .topic_config_table
                .insert(t.to_string(), TopicConfig::new(*t, 4));
        }
        let header = RegisterBrokerRequestHeader {
            broker_name: name.into(),
            broker_addr: addr.into(),
            cluster_name: "DefaultCluster".into(),
            ha_server_addr: format!("{addr}-ha"),
            broker_id: id,
            ..Default::default()
        };
        RemotingCommand::request(RequestCode::RegisterBroker, &header)
            .with_body(encode_body(&body, SerializeType::Json).unwrap())
    }

    fn route_req(topic: &str) -> RemotingCommand {
        RemotingCommand::request(
            RequestCode::GetRouteinfoByTopic,
            &GetRouteInfoRequestHeader {
                topic: topic.into(),
                accept_standard_json_only: None,
            },
        )
    }

    #[test]
    fn register_then_route() {
        let ns = ns();
        let r = ns.process(
            Some(1),
            &register_req("broker-a", 0, "a:1", &["T"]),
            Instant::now(),
        );
        assert_eq!(r.code, 0, "{:?}", r.remark);
        assert!(r.is_response());
        let r = ns.process(Some(1), &route_req("T"), Instant::now());
        assert_eq!(r.code, 0);
        let route: TopicRouteData = TopicRouteData::from_json(&r.body).unwrap();
        assert_eq!(route.queue_datas[0].write_queue_nums, 4);
        let r = ns.process(Some(1), &route_req("X"), Instant::now());
        assert_eq!(r.code, i32::from(ResponseCode::TopicNotExist));
        assert_eq!(
            r.remark.as_deref(),
            Some("No topic route info in name server for the topic: X")
        );
        assert!(r.body.is_empty());
    }

    #[test]
    fn unknown_and_unserved_codes_are_not_supported() {
        let ns = ns();
        for code in [9999, i32::from(RequestCode::SendMessage)] {
            let r = ns.process(None, &RemotingCommand::request_empty(code), Instant::now());
            assert_eq!(r.code, 3);
            assert_eq!(
                r.remark,
                Some(format!(" request type {code} not supported"))
            );
        }
    }

    #[test]
    fn missing_header_field_is_a_system_error() {
        let ns = ns();
        let mut req = register_req("broker-a", 0, "a:1", &[]);
        req.ext_fields.remove("brokerName");
        let r = ns.process(None, &req, Instant::now());
        assert_eq!(r.code, 1);
        assert!(r.remark.unwrap().contains("brokerName"));
        let r = ns.process(
            None,
            &RemotingCommand::request_empty(RequestCode::GetRouteinfoByTopic),
            Instant::now(),
        );
        assert_eq!(r.code, 1);
        let mut req = register_req("broker-a", 0, "a:1", &[]);
        req.ext_fields.insert("brokerId".into(), "zero".into());
        assert_eq!(ns.process(None, &req, Instant::now()).code, 1);
    }

    #[test]
    fn body_crc32_is_verified_when_nonzero() {
        let ns = ns();
        let mut req = register_req("broker-a", 0, "a:1", &["T"]);
        let crc = (crc32fast::hash(&req.body) & 0x7FFF_FFFF) as i32;
        req.ext_fields
            .insert("bodyCrc32".into(), (crc ^ 1).to_string());
        let r = ns.process(None, &req, Instant::now());
        assert_eq!(r.code, 1);
        assert_eq!(r.remark.as_deref(), Some("crc32 not match"));
        req.ext_fields.insert("bodyCrc32".into(), crc.to_string());
        assert_eq!(ns.process(None, &req, Instant::now()).code, 0);
        req.ext_fields.insert("bodyCrc32".into(), "0".into());
        assert_eq!(ns.process(None, &req, Instant::now()).code, 0);
    }

    #[test]
    fn garbage_register_body_is_an_error() {
        let ns = ns();
        let req = register_req("broker-a", 0, "a:1", &[]).with_body(&b"{not json"[..]);
        assert_eq!(ns.process(None, &req, Instant::now()).code, 1);
    }

    #[test]
    fn slave_registration_answers_master_addresses() {
        let ns = ns();
        ns.process(
            Some(1),
            &register_req("broker-a", 0, "m:1", &["T"]),
            Instant::now(),
        );
        let r = ns.process(
            Some(2),
            &register_req("broker-a", 1, "s:1", &[]),
            Instant::now(),
        );
        assert_eq!(r.ext("masterAddr"), Some("m:1"));
        assert_eq!(r.ext("haServerAddr"), Some("m:1-ha"));
    }

    #[test]
    fn kv_config_and_order_topic_conf() {
        let ns = NameServer::new(NameServerConfig {
            order_message_enable: true,
            ..Default::default()
        });
        let put = RemotingCommand::request(
            RequestCode::PutKvConfig,
            &PutKVConfigRequestHeader {
                namespace: NAMESPACE_ORDER_TOPIC_CONFIG.into(),
                key: "T".into(),
                value: "broker-a:2".into(),
            },
        );
        assert_eq!(ns.process(None, &put, Instant::now()).code, 0);
        let get = RemotingCommand::request(
            RequestCode::GetKvConfig,
            &GetKVConfigRequestHeader {
                namespace: NAMESPACE_ORDER_TOPIC_CONFIG.into(),
                key: "T".into(),
            },
        );
        assert_eq!(
            ns.process(None, &get, Instant::now()).ext("value"),
            Some("broker-a:2")
        );

        // Registration returns the ORDER_TOPIC_CONFIG table; the route carries orderTopicConf.
        let r = ns.process(
            Some(1),
            &register_req("broker-a", 0, "a:1", &["T"]),
            Instant::now(),
        );
        let kv: KVTable = decode_body(&r.body, SerializeType::Json).unwrap();
        assert_eq!(kv.table["T"], "broker-a:2");
        let r = ns.process(None, &route_req("T"), Instant::now());
        let route = TopicRouteData::from_json(&r.body).unwrap();
        assert_eq!(route.order_topic_conf.as_deref(), Some("broker-a:2"));
        assert_eq!(route.publish_queues("T").len(), 2);

        let list = RemotingCommand::request(
            RequestCode::GetKvlistByNamespace,
            &GetKVListByNamespaceRequestHeader {
                namespace: NAMESPACE_ORDER_TOPIC_CONFIG.into(),
            },
        );
        assert_eq!(ns.process(None, &list, Instant::now()).code, 0);
        let del = RemotingCommand::request(
            RequestCode::DeleteKvConfig,
            &DeleteKVConfigRequestHeader {
                namespace: NAMESPACE_ORDER_TOPIC_CONFIG.into(),
                key: "T".into(),
            },
        );
        assert_eq!(ns.process(None, &del, Instant::now()).code, 0);
        assert_eq!(
            ns.process(None, &get, Instant::now()).code,
            i32::from(ResponseCode::QueryNotFound)
        );
        assert_eq!(
            ns.process(None, &list, Instant::now()).code,
            i32::from(ResponseCode::QueryNotFound)
        );
    }

    #[test]
    fn order_topic_conf_is_off_by_default() {
        let ns = ns();
        ns.kv()
            .put(NAMESPACE_ORDER_TOPIC_CONFIG, "T", "broker-a:2")
            .unwrap();
        ns.process(
            Some(1),
            &register_req("broker-a", 0, "a:1", &["T"]),
            Instant::now(),
        );
        let r = ns.process(None, &route_req("T"), Instant::now());
        assert!(!String::from_utf8_lossy(&r.body).contains("orderTopicConf"));
    }

    #[test]
    fn topic_lists_cluster_info_and_delete() {
        let ns = ns();
        ns.process(
            Some(1),
            &register_req("broker-a", 0, "a:1", &["T", "U"]),
            Instant::now(),
        );
        let r = ns.process(
            None,
            &RemotingCommand::request_empty(RequestCode::GetBrokerClusterInfo),
            Instant::now(),
        );
        let ci: ClusterInfo = decode_body(&r.body, SerializeType::Json).unwrap();
        assert!(ci.cluster_addr_table["DefaultCluster"].contains("broker-a"));
        let all = RemotingCommand::request_empty(RequestCode::GetAllTopicListFromNameserver);
        let tl: TopicList = decode_body(
            &ns.process(None, &all, Instant::now()).body,
            SerializeType::Json,
        )
        .unwrap();
        assert_eq!(tl.topic_list.len(), 2);
        let by_cluster = RemotingCommand::request(
            RequestCode::GetTopicsByCluster,
            &GetTopicsByClusterRequestHeader {
                cluster: "DefaultCluster".into(),
            },
        );
        let tl: TopicList = decode_body(
            &ns.process(None, &by_cluster, Instant::now()).body,
            SerializeType::Json,
        )
        .unwrap();
        assert_eq!(tl.topic_list.len(), 2);
        let del = RemotingCommand::request(
            RequestCode::DeleteTopicInNamesrv,
            &DeleteTopicFromNamesrvRequestHeader {
                topic: "T".into(),
                cluster_name: None,
            },
        );
        assert_eq!(ns.process(None, &del, Instant::now()).code, 0);
        assert_eq!(ns.process(None, &route_req("T"), Instant::now()).code, 17);
        let sys = RemotingCommand::request_empty(RequestCode::GetSystemTopicListFromNs);
        let tl: TopicList = decode_body(
            &ns.process(None, &sys, Instant::now()).body,
            SerializeType::Json,
        )
        .unwrap();
        assert!(tl.topic_list.contains("DefaultCluster"));
    }

    #[test]
    fn all_topic_list_can_be_disabled() {
        let ns = NameServer::new(NameServerConfig {
            enable_all_topic_list: false,
            ..Default::default()
        });
        let r = ns.process(
            None,
            &RemotingCommand::request_empty(RequestCode::GetAllTopicListFromNameserver),
            Instant::now(),
        );
        assert_eq!(r.code, 1);
        assert_eq!(r.remark.as_deref(), Some("disable"));
    }

    #[test]
    fn heartbeat_and_query_data_version_refresh_liveness() {
        let ns = ns();
        let t0 = Instant::now();
        ns.process(Some(1), &register_req("broker-a", 0, "a:1", &["T"]), t0);
        let hb = RemotingCommand::request(
            RequestCode::BrokerHeartbeat,
            &BrokerHeartbeatRequestHeader {
                cluster_name: "DefaultCluster".into(),
                broker_addr: "a:1".into(),
                broker_name: "broker-a".into(),
                ..Default::default()
            },
        );
        assert_eq!(ns.process(None, &hb, t0 + Duration::from_secs(100)).code, 0);
        assert!(ns
            .routes()
            .scan_expired(t0 + Duration::from_secs(200))
            .is_empty());
        let q = RemotingCommand::request(
            RequestCode::QueryDataVersion,
            &QueryDataVersionRequestHeader {
                broker_name: "broker-a".into(),
                broker_addr: "a:1".into(),
                cluster_name: "DefaultCluster".into(),
                broker_id: 0,
            },
        )
        .with_body(
            encode_body(
                &DataVersion {
                    counter: 1,
                    ..Default::default()
                },
                SerializeType::Json,
            )
            .unwrap(),
        );
        let r = ns.process(None, &q, t0 + Duration::from_secs(210));
        assert_eq!(r.ext("changed"), Some("false"));
        let stored: DataVersion = decode_body(&r.body, SerializeType::Json).unwrap();
        assert_eq!(stored.counter, 1);
        assert!(ns
            .routes()
            .scan_expired(t0 + Duration::from_secs(320))
            .is_empty());
        assert_eq!(
            ns.routes()
                .scan_expired(t0 + Duration::from_secs(331))
                .len(),
            1
        );
    }

    #[test]
    fn messagepack_requests_get_messagepack_bodies() {
        let ns = ns();
        let mut body = RegisterBrokerBody::default();
        body.topic_config_serialize_wrapper
            .topic_config_table
            .insert("T".into(), TopicConfig::new("T", 2));
        let mut req = register_req("broker-a", 0, "a:1", &[]);
        req.body = encode_body(&body, SerializeType::MsgPack).unwrap();
        req.serialize_type = SerializeType::MsgPack;
        assert_eq!(ns.process(None, &req, Instant::now()).code, 0);
        let r = ns.process(
            None,
            &route_req("T").with_serialize_type(SerializeType::MsgPack),
            Instant::now(),
        );
        assert_eq!(r.serialize_type, SerializeType::MsgPack);
        let route: TopicRouteData = decode_body(&r.body, SerializeType::MsgPack).unwrap();
        assert_eq!(route.queue_datas[0].read_queue_nums, 2);
    }

    #[test]
    fn write_perm_wipe_and_add() {
        let ns = ns();
        ns.process(
            Some(1),
            &register_req("broker-a", 0, "a:1", &["T"]),
            Instant::now(),
        );
        let wipe = RemotingCommand::request(
            RequestCode::WipeWritePermOfBroker,
            &WipeWritePermOfBrokerRequestHeader {
                broker_name: "broker-a".into(),
            },
        );
        assert_eq!(
            ns.process(None, &wipe, Instant::now())
                .ext("wipeTopicCount"),
            Some("1")
        );
        let add = RemotingCommand::request(
            RequestCode::AddWritePermOfBroker,
            &AddWritePermOfBrokerRequestHeader {
                broker_name: "broker-a".into(),
            },
        );
        assert_eq!(
            ns.process(None, &add, Instant::now()).ext("addTopicCount"),
            Some("1")
        );
    }
}
