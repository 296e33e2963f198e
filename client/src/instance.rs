//! [`ClientInstance`]: what every producer, consumer and admin client shares (Java's
//! `MQClientInstance`): the remoting client, the client id, the route cache and broker address
//! table, periodic route refresh and heartbeats, and the handler of requests that brokers send
//! to the client.
//!
//! Contract: routes are fetched on first use and refreshed every `route_refresh_interval`
//! (30 s); a failed refresh keeps the previous route. Heartbeats go every
//! `heartbeat_interval` (30 s) to the masters of every known route when the instance only
//! produces, and to every broker address of every known route when it consumes (PROTOCOL.md
//! §9.5, §10.3). Requests from brokers are dispatched by code: NOTIFY_CONSUMER_IDS_CHANGED
//! (40) triggers the group's rebalance, RESET_CONSUMER_CLIENT_OFFSET (220) resets the group's
//! offsets, CHECK_TRANSACTION_STATE (39) goes to the installed [`TransactionCheckHook`],
//! GET_CONSUMER_RUNNING_INFO (307), CONSUME_MESSAGE_DIRECTLY (309) and
//! GET_CONSUMER_STATUS_FROM_CLIENT (221) are answered from the group's consumer (bodies in
//! `consumer::running`, encoded in the request's serialize type); any other code is answered
//! REQUEST_CODE_NOT_SUPPORTED (unless it was oneway).
//! [`shutdown`](ClientInstance::shutdown) stops the periodic tasks and closes connections;
//! UNREGISTER_CLIENT is sent by the role that owns the group before that.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use parking_lot::{Mutex, RwLock};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tern_common::message::MessageExt;
use tern_common::protocol::body::{
    decode_body, encode_body, ConsumerData, HeartbeatData, MqMap, ProducerData, ResetOffsetBody,
};
use tern_common::protocol::header::{
    ConsumeMessageDirectlyResultRequestHeader, GetConsumerRunningInfoRequestHeader,
    GetConsumerStatusRequestHeader, GetRouteInfoRequestHeader,
    NotifyConsumerIdsChangedRequestHeader, ResetConsumerClientOffsetRequestHeader,
    UnregisterClientRequestHeader,
};
use tern_common::protocol::{RemotingCommand, RequestCode, ResponseCode, SerializeType};
use tern_common::remoting::{ClientRequestHandler, RemotingClient};
use tern_common::route::{MessageQueue, TopicRouteData};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::ClientConfig;
use crate::consumer::running::{
    self, ConsumeMessageDirectlyResult, ConsumerRunningInfo, GetConsumerStatusBody,
};
use crate::error::{ClientError, Result};

/// The producer group every client instance registers besides its own
/// (`MixAll.CLIENT_INNER_PRODUCER_GROUP`).
pub(crate) const CLIENT_INNER_PRODUCER: &str = "CLIENT_INNER_PRODUCER";

/// What the instance needs from a consumer registered with it.
pub(crate) trait ConsumerHooks: Send + Sync + 'static {
    /// The consumer's heartbeat entry.
    fn consumer_data(&self) -> ConsumerData;
    /// Topics whose routes the consumer needs.
    fn topics(&self) -> Vec<String>;
    /// Starts a rebalance soon (NOTIFY_CONSUMER_IDS_CHANGED).
    fn trigger_rebalance(&self);
    /// Applies a broker-ordered offset reset for `topic` (RESET_CONSUMER_CLIENT_OFFSET).
    fn reset_offset(&self, topic: &str, offsets: BTreeMap<MessageQueue, i64>);
    /// The consumer's part of a GET_CONSUMER_RUNNING_INFO answer (the instance adds the
    /// NameServer and version properties).
    fn running_info(&self) -> ConsumerRunningInfo;
    /// CONSUME_MESSAGE_DIRECTLY: runs `msg` (read from broker `broker_name`) through the
    /// consumer's handler; `None` when the consumer has no handler (pull consumers).
    fn consume_directly(
        &self,
        msg: MessageExt,
        broker_name: String,
    ) -> Option<BoxFuture<'static, ConsumeMessageDirectlyResult>>;
    /// GET_CONSUMER_STATUS_FROM_CLIENT: the consumer's offsets of `topic`'s queues.
    fn consume_status(&self, topic: &str) -> MqMap<i64>;
}

/// Receives CHECK_TRANSACTION_STATE (39) requests from brokers: the broker asks a producer
/// of the message's group whether a half message should be committed or rolled back
/// (PROTOCOL.md §5.4). The request is oneway; the hook answers, if it wants, with an
/// END_TRANSACTION oneway to `broker_addr`.
pub trait TransactionCheckHook: Send + Sync + 'static {
    /// Handles one check-back. `request` carries the CheckTransactionState header and the
    /// half message's record as body.
    fn check_transaction_state(
        &self,
        broker_addr: String,
        request: RemotingCommand,
    ) -> BoxFuture<'static, ()>;
}

/// A cached route and the writable queues derived from it, computed once per route update so
/// that a send does not clone the route or rebuild the queue list.
struct CachedRoute {
    route: TopicRouteData,
    publish_queues: Arc<[MessageQueue]>,
}

impl CachedRoute {
    fn new(topic: &str, route: TopicRouteData) -> Self {
        let publish_queues = route.publish_queues(topic).into();
        CachedRoute {
            route,
            publish_queues,
        }
    }
}

/// The shared per-client state; see the module doc.
pub(crate) struct ClientInstance {
    pub(crate) config: ClientConfig,
    pub(crate) client_id: String,
    remoting: RemotingClient,
    routes: RwLock<HashMap<String, CachedRoute>>,
    /// Broker name → (broker id → address), merged from every route seen.
    broker_addrs: RwLock<HashMap<String, BTreeMap<i64, String>>>,
    producer_groups: Mutex<BTreeSet<String>>,
    consumers: Mutex<HashMap<String, Arc<dyn ConsumerHooks>>>,
    transaction_hook: RwLock<Option<Arc<dyn TransactionCheckHook>>>,
    namesrv_index: std::sync::atomic::AtomicUsize,
    /// Broker addresses known at the last heartbeat triggered by a route change.
    heartbeat_addrs: Mutex<BTreeSet<String>>,
    shutdown: CancellationToken,
    /// Set just before `shutdown` is cancelled; read on every send (a token's `is_cancelled`
    /// takes a mutex).
    shut_down: std::sync::atomic::AtomicBool,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for ClientInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientInstance")
            .field("client_id", &self.client_id)
            .finish()
    }
}

/// Routes broker→client requests to the instance (held weakly so the remoting client does
/// not keep a dropped instance alive).
struct InstanceRequestHandler(Weak<ClientInstance>);

impl ClientRequestHandler for InstanceRequestHandler {
    fn handle(
        &self,
        addr: &str,
        request: RemotingCommand,
    ) -> BoxFuture<'static, Option<RemotingCommand>> {
        let instance = self.0.upgrade();
        let addr = addr.to_string();
        Box::pin(async move {
            match instance {
                Some(instance) => instance.handle_server_request(addr, request).await,
                None => None,
            }
        })
    }
}

impl ClientInstance {
    /// Creates the instance and starts its periodic route refresh and heartbeat tasks.
    ///
    /// # Errors
    /// [`ClientError::Config`] when `config` is invalid.
    pub(crate) fn start(config: ClientConfig) -> Result<Arc<Self>> {
        config.validate()?;
        let remoting = RemotingClient::new(tern_common::remoting::ClientConfig {
            serialize_type: config.serialize_type,
            ..Default::default()
        });
        let instance = Arc::new(ClientInstance {
            client_id: config.build_client_id(),
            config,
            remoting,
            routes: RwLock::new(HashMap::new()),
            broker_addrs: RwLock::new(HashMap::new()),
            producer_groups: Mutex::new(BTreeSet::new()),
            consumers: Mutex::new(HashMap::new()),
            transaction_hook: RwLock::new(None),
            namesrv_index: std::sync::atomic::AtomicUsize::new(0),
            heartbeat_addrs: Mutex::new(BTreeSet::new()),
            shutdown: CancellationToken::new(),
            shut_down: std::sync::atomic::AtomicBool::new(false),
            tasks: Mutex::new(Vec::new()),
        });
        instance
            .remoting
            .set_request_handler(Arc::new(InstanceRequestHandler(Arc::downgrade(&instance))));
        let weak = Arc::downgrade(&instance);
        let token = instance.shutdown.clone();
        let route_period = instance.config.route_refresh_interval;
        let heartbeat_period = instance.config.heartbeat_interval;
        let routes = tokio::spawn(periodic(weak.clone(), token.clone(), route_period, |i| {
            Box::pin(async move { i.refresh_all_routes().await })
        }));
        let heartbeats = tokio::spawn(periodic(weak, token, heartbeat_period, |i| {
            Box::pin(async move { i.send_heartbeat_to_all().await })
        }));
        instance.tasks.lock().extend([routes, heartbeats]);
        info!(client_id = %instance.client_id, "client instance started");
        Ok(instance)
    }

    /// Stops the periodic tasks and closes every connection.
    pub(crate) async fn shutdown(&self) {
        self.shut_down
            .store(true, std::sync::atomic::Ordering::Release);
        self.shutdown.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock());
        for task in tasks {
            let _ = task.await;
        }
        self.remoting.shutdown();
    }

    /// True once [`shutdown`](Self::shutdown) began.
    pub(crate) fn is_shut_down(&self) -> bool {
        self.shut_down.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Registers a producer group for heartbeats.
    pub(crate) fn register_producer(&self, group: &str) {
        self.producer_groups.lock().insert(group.to_string());
    }

    /// Registers a consumer group for heartbeats and broker requests.
    ///
    /// # Errors
    /// [`ClientError::Config`] if the group is already registered on this instance.
    pub(crate) fn register_consumer(
        &self,
        group: &str,
        hooks: Arc<dyn ConsumerHooks>,
    ) -> Result<()> {
        let mut consumers = self.consumers.lock();
        if consumers.contains_key(group) {
            return Err(ClientError::Config(format!(
                "consumer group `{group}` already registered"
            )));
        }
        consumers.insert(group.to_string(), hooks);
        Ok(())
    }

    /// Removes a consumer group registered with [`register_consumer`](Self::register_consumer).
    pub(crate) fn unregister_consumer(&self, group: &str) {
        self.consumers.lock().remove(group);
    }

    /// Installs the hook for CHECK_TRANSACTION_STATE requests (the transaction producer).
    #[allow(dead_code)] // Called by the transaction producer.
    pub(crate) fn set_transaction_hook(&self, hook: Arc<dyn TransactionCheckHook>) {
        *self.transaction_hook.write() = Some(hook);
    }

    // ----- transport -----------------------------------------------------------------

    /// Sends `request` to `addr` in the configured serialize type and waits for the response.
    ///
    /// # Errors
    /// [`ClientError::Remoting`] on connect errors, timeouts and closed connections.
    pub(crate) async fn invoke(
        &self,
        addr: &str,
        request: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand> {
        let request = request.with_serialize_type(self.config.serialize_type);
        self.remoting
            .invoke(addr, request, timeout)
            .await
            .map_err(|source| ClientError::Remoting {
                addr: addr.to_string(),
                source,
            })
    }

    /// Like [`invoke`](Self::invoke) but an answer other than SUCCESS is an error.
    pub(crate) async fn invoke_ok(
        &self,
        addr: &str,
        request: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand> {
        let response = self.invoke(addr, request, timeout).await?;
        expect_success(addr, response)
    }

    /// Sends a oneway request (no response).
    ///
    /// # Errors
    /// [`ClientError::Remoting`] if it could not be written.
    pub(crate) async fn invoke_oneway(&self, addr: &str, request: RemotingCommand) -> Result<()> {
        let request = request
            .with_serialize_type(self.config.serialize_type)
            .oneway();
        self.remoting
            .invoke_oneway(addr, request)
            .await
            .map_err(|source| ClientError::Remoting {
                addr: addr.to_string(),
                source,
            })
    }

    /// Sends `request` to the NameServers in turn until one answers.
    ///
    /// # Errors
    /// The last NameServer's transport error.
    pub(crate) async fn invoke_namesrv(&self, request: RemotingCommand) -> Result<RemotingCommand> {
        let addrs = &self.config.namesrv_addrs;
        let start = self
            .namesrv_index
            .load(std::sync::atomic::Ordering::Relaxed);
        let mut last = None;
        for i in 0..addrs.len() {
            let idx = (start + i) % addrs.len();
            match self
                .invoke(&addrs[idx], request.clone(), self.config.rpc_timeout)
                .await
            {
                Ok(response) => {
                    self.namesrv_index
                        .store(idx, std::sync::atomic::Ordering::Relaxed);
                    return Ok(response);
                }
                Err(err) => {
                    debug!(namesrv = %addrs[idx], error = %err, "nameserver request failed");
                    last = Some(err);
                }
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Config("no NameServer address set".into())))
    }

    /// Encodes a structured body in the configured serialize type.
    pub(crate) fn encode<T: Serialize>(&self, value: &T) -> Result<bytes::Bytes> {
        encode_body(value, self.config.serialize_type).map_err(|e| ClientError::Body(e.to_string()))
    }

    // ----- routes --------------------------------------------------------------------

    /// Asks the NameServer for `topic`'s route; `Ok(None)` when it answers TOPIC_NOT_EXIST.
    ///
    /// # Errors
    /// Transport errors, other error codes, or an undecodable body.
    pub(crate) async fn fetch_route(&self, topic: &str) -> Result<Option<TopicRouteData>> {
        let header = GetRouteInfoRequestHeader {
            topic: topic.to_string(),
            accept_standard_json_only: None,
        };
        let req = RemotingCommand::request(RequestCode::GetRouteinfoByTopic, &header);
        let response = self.invoke_namesrv(req).await?;
        if response.code == i32::from(ResponseCode::TopicNotExist) {
            return Ok(None);
        }
        let response = expect_success("nameserver", response)?;
        let route = decode_route(&response)?;
        Ok(Some(route))
    }

    /// Fetches `topic`'s route and stores it (and its broker addresses) in the cache.
    /// A TOPIC_NOT_EXIST answer removes the cached route.
    ///
    /// # Errors
    /// As [`fetch_route`](Self::fetch_route); the cache is unchanged on errors.
    pub(crate) async fn update_route(&self, topic: &str) -> Result<Option<TopicRouteData>> {
        match self.fetch_route(topic).await? {
            Some(route) => {
                {
                    let mut addrs = self.broker_addrs.write();
                    for bd in &route.broker_datas {
                        addrs.insert(bd.broker_name.clone(), bd.broker_addrs.clone());
                    }
                }
                let cached = CachedRoute::new(topic, route.clone());
                self.routes.write().insert(topic.to_string(), cached);
                Ok(Some(route))
            }
            None => {
                self.routes.write().remove(topic);
                Ok(None)
            }
        }
    }

    /// The cached route of `topic`, fetching it if it is not cached yet.
    ///
    /// # Errors
    /// [`ClientError::NoRoute`] if the NameServer has none; transport errors.
    pub(crate) async fn route(&self, topic: &str) -> Result<TopicRouteData> {
        if let Some(cached) = self.routes.read().get(topic) {
            return Ok(cached.route.clone());
        }
        self.update_route(topic)
            .await?
            .ok_or_else(|| ClientError::NoRoute {
                topic: topic.to_string(),
            })
    }

    /// The writable queues of `topic`'s cached route (sorted, masters only, as
    /// [`TopicRouteData::publish_queues`]), without a fetch; shared, not copied.
    pub(crate) fn cached_publish_queues(&self, topic: &str) -> Option<Arc<[MessageQueue]>> {
        self.routes
            .read()
            .get(topic)
            .map(|c| Arc::clone(&c.publish_queues))
    }

    /// Remembers `route` for `topic` (used for the TBW102 fallback of producers).
    pub(crate) fn insert_route(&self, topic: &str, route: TopicRouteData) {
        {
            let mut addrs = self.broker_addrs.write();
            for bd in &route.broker_datas {
                addrs.insert(bd.broker_name.clone(), bd.broker_addrs.clone());
            }
        }
        let cached = CachedRoute::new(topic, route);
        self.routes.write().insert(topic.to_string(), cached);
    }

    /// The master address of `broker_name` from the known routes.
    pub(crate) fn find_master(&self, broker_name: &str) -> Option<String> {
        self.broker_addrs
            .read()
            .get(broker_name)
            .and_then(|a| a.get(&0).cloned())
    }

    /// The master address of `broker_name`, refreshing `topic`'s route once if unknown.
    ///
    /// # Errors
    /// [`ClientError::BrokerNotFound`] when no master is known even after the refresh.
    pub(crate) async fn find_master_or_refresh(
        &self,
        broker_name: &str,
        topic: &str,
    ) -> Result<String> {
        if let Some(addr) = self.find_master(broker_name) {
            return Ok(addr);
        }
        let _ = self.update_route(topic).await;
        self.find_master(broker_name)
            .ok_or_else(|| ClientError::BrokerNotFound {
                broker_name: broker_name.to_string(),
            })
    }

    /// Every known broker address (masters and slaves), deduplicated.
    pub(crate) fn all_broker_addrs(&self, masters_only: bool) -> BTreeSet<String> {
        self.broker_addrs
            .read()
            .values()
            .flat_map(|m| m.iter())
            .filter(|(id, _)| !masters_only || **id == 0)
            .map(|(_, a)| a.clone())
            .collect()
    }

    async fn refresh_all_routes(&self) {
        let mut topics: BTreeSet<String> = self.routes.read().keys().cloned().collect();
        let consumers: Vec<Arc<dyn ConsumerHooks>> =
            self.consumers.lock().values().cloned().collect();
        for c in consumers {
            topics.extend(c.topics());
        }
        for topic in topics {
            if let Err(err) = self.update_route(&topic).await {
                debug!(%topic, error = %err, "route refresh failed; keeping the old route");
            }
        }
        self.heartbeat_if_brokers_changed().await;
    }

    // ----- heartbeats ----------------------------------------------------------------

    fn heartbeat_data(&self) -> HeartbeatData {
        let mut producer_data_set: Vec<ProducerData> = self
            .producer_groups
            .lock()
            .iter()
            .map(|g| ProducerData {
                group_name: g.clone(),
            })
            .collect();
        if !producer_data_set.is_empty() {
            producer_data_set.push(ProducerData {
                group_name: CLIENT_INNER_PRODUCER.to_string(),
            });
        }
        let consumer_data_set = self
            .consumers
            .lock()
            .values()
            .map(|c| c.consumer_data())
            .collect();
        HeartbeatData {
            client_id: self.client_id.clone(),
            producer_data_set,
            consumer_data_set,
            ..Default::default()
        }
    }

    /// Sends a HEART_BEAT to every broker that should know this client: every address of
    /// every known route when it has consumers, else the masters only. Failures are logged.
    pub(crate) async fn send_heartbeat_to_all(&self) {
        let data = self.heartbeat_data();
        if data.producer_data_set.is_empty() && data.consumer_data_set.is_empty() {
            return;
        }
        let masters_only = data.consumer_data_set.is_empty();
        let body = match self.encode(&data) {
            Ok(body) => body,
            Err(err) => {
                warn!(error = %err, "cannot encode heartbeat");
                return;
            }
        };
        let addrs = self.all_broker_addrs(masters_only);
        let sends = addrs.iter().map(|addr| {
            let req =
                RemotingCommand::request_empty(RequestCode::HeartBeat).with_body(body.clone());
            async move {
                if let Err(err) = self.invoke_ok(addr, req, self.config.rpc_timeout).await {
                    debug!(broker = %addr, error = %err, "heartbeat failed");
                }
            }
        });
        futures::future::join_all(sends).await;
    }

    /// Sends a HEART_BEAT to the one broker at `addr` now and waits for its answer. Used
    /// when that broker does not know this client (GET_CONSUMER_LIST_BY_GROUP failed or left
    /// this client out): it was down at start, or restarted at the same address, so the
    /// change-triggered heartbeat never reached the running process (Java sends
    /// `sendHeartbeatToAllBrokerWithLock` before every rebalance for the same reason).
    ///
    /// # Errors
    /// [`ClientError::Body`] if the heartbeat cannot be encoded; transport errors and error
    /// codes of the broker.
    pub(crate) async fn send_heartbeat_to(&self, addr: &str) -> Result<()> {
        let body = self.encode(&self.heartbeat_data())?;
        let req = RemotingCommand::request_empty(RequestCode::HeartBeat).with_body(body);
        self.invoke_ok(addr, req, self.config.rpc_timeout)
            .await
            .map(|_| ())
    }

    /// Heartbeats at once when routes revealed broker addresses not heartbeated yet, so a
    /// broker knows this client's groups before it is asked for a group's members or needs
    /// a producer channel for a transaction check-back.
    pub(crate) async fn heartbeat_if_brokers_changed(&self) {
        let addrs = self.all_broker_addrs(false);
        let changed = {
            let mut known = self.heartbeat_addrs.lock();
            let changed = !addrs.is_subset(&known);
            if changed {
                known.extend(addrs);
            }
            changed
        };
        if changed {
            self.send_heartbeat_to_all().await;
        }
    }

    /// Sends UNREGISTER_CLIENT for a producer and/or consumer group to every known broker.
    pub(crate) async fn unregister_client(
        &self,
        producer_group: Option<&str>,
        consumer_group: Option<&str>,
    ) {
        let header = UnregisterClientRequestHeader {
            client_id: self.client_id.clone(),
            producer_group: producer_group.map(str::to_string),
            consumer_group: consumer_group.map(str::to_string),
        };
        let template = RemotingCommand::request(RequestCode::UnregisterClient, &header);
        let addrs = self.all_broker_addrs(consumer_group.is_none());
        let sends = addrs.iter().map(|addr| {
            let req = template.clone();
            async move {
                if let Err(err) = self.invoke(addr, req, self.config.rpc_timeout).await {
                    debug!(broker = %addr, error = %err, "unregister failed");
                }
            }
        });
        futures::future::join_all(sends).await;
    }

    // ----- broker → client -----------------------------------------------------------

    async fn handle_server_request(
        self: Arc<Self>,
        addr: String,
        request: RemotingCommand,
    ) -> Option<RemotingCommand> {
        let code = RequestCode::try_from(request.code).ok();
        debug!(broker = %addr, code = request.code, "request from broker");
        match code {
            Some(RequestCode::NotifyConsumerIdsChanged) => {
                match request.decode_header::<NotifyConsumerIdsChangedRequestHeader>() {
                    Ok(header) => {
                        if let Some(hooks) = self.consumer(&header.consumer_group) {
                            hooks.trigger_rebalance();
                        }
                    }
                    Err(err) => debug!(broker = %addr, error = %err, "bad ids-changed header"),
                }
                None
            }
            Some(RequestCode::ResetConsumerClientOffset) => {
                let header = request.decode_header::<ResetConsumerClientOffsetRequestHeader>();
                let body = decode_body::<ResetOffsetBody>(&request.body, request.serialize_type);
                match (header, body) {
                    (Ok(header), Ok(body)) => {
                        if let Some(hooks) = self.consumer(&header.group) {
                            hooks.reset_offset(&header.topic, body.offset_table.0);
                        }
                    }
                    (Err(err), _) => warn!(broker = %addr, error = %err, "bad reset-offset header"),
                    (_, Err(err)) => warn!(broker = %addr, error = %err, "bad reset-offset body"),
                }
                reply_if_not_oneway(&request, ResponseCode::Success, None)
            }
            Some(RequestCode::CheckTransactionState) => {
                let hook = self.transaction_hook.read().clone();
                match hook {
                    Some(hook) => {
                        tokio::spawn(hook.check_transaction_state(addr, request.clone()));
                    }
                    None => debug!(broker = %addr, "check-back without a transaction producer"),
                }
                None
            }
            Some(RequestCode::GetConsumerRunningInfo) => {
                let answer = self.answer_running_info(&addr, &request);
                (!request.is_oneway()).then_some(answer)
            }
            Some(RequestCode::ConsumeMessageDirectly) => {
                let answer = self.answer_consume_directly(&addr, &request).await;
                (!request.is_oneway()).then_some(answer)
            }
            Some(RequestCode::GetConsumerStatusFromClient) => {
                let answer = self.answer_consumer_status(&request);
                (!request.is_oneway()).then_some(answer)
            }
            _ => reply_if_not_oneway(
                &request,
                ResponseCode::RequestCodeNotSupported,
                Some(format!(" request type {} not supported", request.code)),
            ),
        }
    }
}

impl ClientInstance {
    /// The registered consumer of `group`.
    fn consumer(&self, group: &str) -> Option<Arc<dyn ConsumerHooks>> {
        self.consumers.lock().get(group).cloned()
    }

    /// GET_CONSUMER_RUNNING_INFO (307, Java `getConsumerRunningInfo`): the consumer's
    /// [`ConsumerRunningInfo`] plus `PROP_NAMESERVER_ADDR` and `PROP_CLIENT_VERSION`, in the
    /// request's serialize type; SYSTEM_ERROR for an unknown group or a bad header.
    fn answer_running_info(&self, addr: &str, request: &RemotingCommand) -> RemotingCommand {
        let header: GetConsumerRunningInfoRequestHeader = match request.decode_header() {
            Ok(h) => h,
            Err(err) => return error_answer(request, &err),
        };
        let Some(hooks) = self.consumer(&header.consumer_group) else {
            return group_not_here(request, &header.consumer_group);
        };
        let mut info = hooks.running_info();
        info.properties.insert(
            running::PROP_NAMESERVER_ADDR.into(),
            self.config.namesrv_addrs.join(";"),
        );
        info.properties.insert(
            running::PROP_CLIENT_VERSION.into(),
            concat!("tern-client ", env!("CARGO_PKG_VERSION")).into(),
        );
        debug!(broker = %addr, group = %header.consumer_group, "running info requested");
        encoded_answer(request, &info)
    }

    /// CONSUME_MESSAGE_DIRECTLY (309, Java `consumeMessageDirectly`): decodes the record in
    /// the body, runs it through the group's handler and answers a
    /// [`ConsumeMessageDirectlyResult`]; SYSTEM_ERROR for an unknown group, a consumer
    /// without handler, a bad header or an undecodable record.
    async fn answer_consume_directly(
        &self,
        addr: &str,
        request: &RemotingCommand,
    ) -> RemotingCommand {
        let header: ConsumeMessageDirectlyResultRequestHeader = match request.decode_header() {
            Ok(h) => h,
            Err(err) => return error_answer(request, &err),
        };
        let Some(hooks) = self.consumer(&header.consumer_group) else {
            return group_not_here(request, &header.consumer_group);
        };
        let msg = match tern_common::message::decode_messages(&request.body)
            .map_err(|e| e.to_string())
            .and_then(|msgs| {
                msgs.into_iter()
                    .next()
                    .ok_or_else(|| "no message in the body".to_string())
            }) {
            Ok(msg) => msg,
            Err(err) => {
                return RemotingCommand::response_to(request, ResponseCode::SystemError)
                    .with_remark(format!("cannot decode the message: {err}"))
            }
        };
        let broker_name = header.broker_name.unwrap_or_default();
        debug!(broker = %addr, group = %header.consumer_group, msg_id = %msg.msg_id, "consume directly");
        match hooks.consume_directly(msg, broker_name) {
            Some(run) => {
                let result = run.await;
                encoded_answer(request, &result)
            }
            None => RemotingCommand::response_to(request, ResponseCode::SystemError).with_remark(
                format!(
                "The Consumer Group <{}> cannot consume messages directly (not a push consumer)",
                header.consumer_group
            ),
            ),
        }
    }

    /// GET_CONSUMER_STATUS_FROM_CLIENT (221, Java `getConsumeStatus`): the group's offsets of
    /// the topic's queues as [`GetConsumerStatusBody`]; an unknown group answers an empty
    /// table, as Java does.
    fn answer_consumer_status(&self, request: &RemotingCommand) -> RemotingCommand {
        let header: GetConsumerStatusRequestHeader = match request.decode_header() {
            Ok(h) => h,
            Err(err) => return error_answer(request, &err),
        };
        let hooks = self.consumers.lock().get(&header.group).cloned();
        let body = GetConsumerStatusBody {
            message_queue_table: hooks
                .map(|h| h.consume_status(&header.topic))
                .unwrap_or_default(),
            consumer_table: BTreeMap::new(),
        };
        encoded_answer(request, &body)
    }
}

/// A SUCCESS answer to `request` carrying `body` in the request's serialize type, or
/// SYSTEM_ERROR if it cannot be encoded.
fn encoded_answer<T: Serialize>(request: &RemotingCommand, body: &T) -> RemotingCommand {
    match encode_body(body, request.serialize_type) {
        Ok(bytes) => RemotingCommand::response_to(request, ResponseCode::Success).with_body(bytes),
        Err(err) => RemotingCommand::response_to(request, ResponseCode::SystemError)
            .with_remark(format!("cannot encode the answer: {err}")),
    }
}

/// The SYSTEM_ERROR Java's `ClientRemotingProcessor` answers when `group` is not on this
/// client.
fn group_not_here(request: &RemotingCommand, group: &str) -> RemotingCommand {
    RemotingCommand::response_to(request, ResponseCode::SystemError).with_remark(format!(
        "The Consumer Group <{group}> not exist in this consumer"
    ))
}

/// SYSTEM_ERROR answering a request whose header did not decode.
fn error_answer(request: &RemotingCommand, err: &dyn std::fmt::Display) -> RemotingCommand {
    RemotingCommand::response_to(request, ResponseCode::SystemError)
        .with_remark(format!("bad request header: {err}"))
}

fn reply_if_not_oneway(
    request: &RemotingCommand,
    code: ResponseCode,
    remark: Option<String>,
) -> Option<RemotingCommand> {
    if request.is_oneway() {
        return None;
    }
    let mut response = RemotingCommand::response_to(request, code);
    response.remark = remark;
    Some(response)
}

/// Runs `f` on the instance every `period` (first run after one period) until `token` is
/// cancelled or the instance is dropped.
async fn periodic(
    instance: Weak<ClientInstance>,
    token: CancellationToken,
    period: Duration,
    f: impl Fn(Arc<ClientInstance>) -> BoxFuture<'static, ()>,
) {
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        let Some(instance) = instance.upgrade() else {
            return;
        };
        tokio::select! {
            _ = token.cancelled() => return,
            _ = f(instance) => {}
        }
    }
}

/// Turns a non-SUCCESS response into [`ClientError::Broker`].
pub(crate) fn expect_success(addr: &str, response: RemotingCommand) -> Result<RemotingCommand> {
    if response.code == i32::from(ResponseCode::Success) {
        Ok(response)
    } else {
        Err(broker_error(addr, &response))
    }
}

/// The [`ClientError::Broker`] for an error response.
pub(crate) fn broker_error(addr: &str, response: &RemotingCommand) -> ClientError {
    ClientError::Broker {
        addr: addr.to_string(),
        code: response.code,
        remark: response.remark.clone().unwrap_or_default(),
    }
}

/// Decodes a structured response body in the response's serialize type.
pub(crate) fn decode_response<T: DeserializeOwned>(response: &RemotingCommand) -> Result<T> {
    decode_body(&response.body, response.serialize_type)
        .map_err(|e| ClientError::Body(e.to_string()))
}

fn decode_route(response: &RemotingCommand) -> Result<TopicRouteData> {
    match response.serialize_type {
        SerializeType::MsgPack => decode_response(response),
        _ => {
            TopicRouteData::from_json(&response.body).map_err(|e| ClientError::Body(e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_common::protocol::CommandHeader;

    /// A consumer that answers with fixed values.
    struct FakeConsumer;

    impl ConsumerHooks for FakeConsumer {
        fn consumer_data(&self) -> ConsumerData {
            ConsumerData::default()
        }
        fn topics(&self) -> Vec<String> {
            Vec::new()
        }
        fn trigger_rebalance(&self) {}
        fn reset_offset(&self, _topic: &str, _offsets: BTreeMap<MessageQueue, i64>) {}
        fn running_info(&self) -> ConsumerRunningInfo {
            let mut info = ConsumerRunningInfo::default();
            info.properties.insert("consumerGroup".into(), "g".into());
            info
        }
        fn consume_directly(
            &self,
            _msg: MessageExt,
            _broker_name: String,
        ) -> Option<BoxFuture<'static, ConsumeMessageDirectlyResult>> {
            None
        }
        fn consume_status(&self, topic: &str) -> MqMap<i64> {
            [(MessageQueue::new(topic, "b", 0), 42)]
                .into_iter()
                .collect()
        }
    }

    fn instance() -> Arc<ClientInstance> {
        let mut config = ClientConfig::default();
        config.set_namesrv_addr("127.0.0.1:1");
        let instance = ClientInstance::start(config).expect("instance");
        instance
            .register_consumer("g", Arc::new(FakeConsumer))
            .expect("register");
        instance
    }

    fn req(code: RequestCode, header: &impl CommandHeader, st: SerializeType) -> RemotingCommand {
        RemotingCommand::request(code, header).with_serialize_type(st)
    }

    #[tokio::test]
    async fn consumer_status_answers_the_topic_offsets_in_the_request_encoding() {
        let instance = instance();
        for st in [SerializeType::Json, SerializeType::MsgPack] {
            let header = GetConsumerStatusRequestHeader {
                topic: "T".into(),
                group: "g".into(),
                client_addr: None,
            };
            let request = req(RequestCode::GetConsumerStatusFromClient, &header, st);
            let answer = instance
                .clone()
                .handle_server_request("b:1".into(), request)
                .await
                .expect("answer");
            assert_eq!(answer.code, i32::from(ResponseCode::Success));
            let body: GetConsumerStatusBody = decode_body(&answer.body, st).expect("status body");
            assert_eq!(
                body.message_queue_table
                    .get(&MessageQueue::new("T", "b", 0)),
                Some(&42)
            );
            if st == SerializeType::Json {
                let text = String::from_utf8_lossy(&answer.body);
                assert!(text.contains("\"messageQueueTable\""), "{text}");
            }
        }
        // An unknown group answers an empty table, as Java does.
        let header = GetConsumerStatusRequestHeader {
            topic: "T".into(),
            group: "other".into(),
            client_addr: None,
        };
        let request = req(
            RequestCode::GetConsumerStatusFromClient,
            &header,
            SerializeType::Json,
        );
        let answer = instance
            .clone()
            .handle_server_request("b:1".into(), request)
            .await
            .expect("answer");
        let body: GetConsumerStatusBody =
            decode_body(&answer.body, SerializeType::Json).expect("status body");
        assert!(body.message_queue_table.is_empty());
        instance.shutdown().await;
    }

    #[tokio::test]
    async fn running_info_adds_instance_properties_and_refuses_unknown_groups() {
        let instance = instance();
        let header = GetConsumerRunningInfoRequestHeader {
            consumer_group: "g".into(),
            client_id: instance.client_id.clone(),
            jstack_enable: None,
        };
        let request = req(
            RequestCode::GetConsumerRunningInfo,
            &header,
            SerializeType::Json,
        );
        let answer = instance
            .clone()
            .handle_server_request("b:1".into(), request)
            .await
            .expect("answer");
        assert_eq!(answer.code, i32::from(ResponseCode::Success));
        let info: ConsumerRunningInfo =
            decode_body(&answer.body, SerializeType::Json).expect("info");
        assert_eq!(info.properties["consumerGroup"], "g");
        assert_eq!(
            info.properties[running::PROP_NAMESERVER_ADDR],
            "127.0.0.1:1"
        );
        assert!(info.properties[running::PROP_CLIENT_VERSION].starts_with("tern-client"));

        let header = GetConsumerRunningInfoRequestHeader {
            consumer_group: "nope".into(),
            client_id: instance.client_id.clone(),
            jstack_enable: None,
        };
        let request = req(
            RequestCode::GetConsumerRunningInfo,
            &header,
            SerializeType::Json,
        );
        let answer = instance
            .clone()
            .handle_server_request("b:1".into(), request)
            .await
            .expect("answer");
        assert_eq!(answer.code, i32::from(ResponseCode::SystemError));
        assert!(answer.remark.unwrap_or_default().contains("<nope>"));
        instance.shutdown().await;
    }

    #[tokio::test]
    async fn consume_directly_refuses_an_undecodable_message() {
        let instance = instance();
        let header = ConsumeMessageDirectlyResultRequestHeader {
            consumer_group: "g".into(),
            client_id: None,
            msg_id: None,
            broker_name: Some("b".into()),
            topic: None,
            topic_sys_flag: None,
            group_sys_flag: None,
        };
        // No decodable record in the body.
        let request = req(
            RequestCode::ConsumeMessageDirectly,
            &header,
            SerializeType::Json,
        )
        .with_body(bytes::Bytes::from_static(b"junk"));
        let answer = instance
            .clone()
            .handle_server_request("b:1".into(), request)
            .await
            .expect("answer");
        assert_eq!(answer.code, i32::from(ResponseCode::SystemError));
        instance.shutdown().await;
    }
}
