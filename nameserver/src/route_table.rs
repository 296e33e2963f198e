//! The route table: which broker groups hold which topics, and which brokers are alive
//! (RocketMQ's `RouteInfoManager`, PROTOCOL.md §9.2–§9.4).
//!
//! # Contract
//!
//! - State is two tables behind two short `parking_lot::RwLock`s, never held across an
//!   `.await`: the *route tables* (cluster → broker names, broker name → [`BrokerData`],
//!   topic → broker name → [`QueueData`], broker → filter servers), which must change together,
//!   and the *live table* ((cluster, broker address) → last update, timeout, data version,
//!   connection, HA address), which heartbeats touch alone so they never block route reads.
//!   Lock order is routes, then live.
//! - A broker is removed (from its [`BrokerData`]; the whole broker name, its cluster entry and
//!   its queues of every topic when it was the last member) on UNREGISTER_BROKER, when its
//!   connection closes, or when the scan finds it silent for longer than its timeout.
//! - Time is passed in (`now: Instant`), so expiry is deterministic under test.
//! - Only a master (broker id 0) — or, with acting master enabled, the lowest-id slave while no
//!   master is registered — updates the topic queues; slaves' topic configs are ignored.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use tern_common::route::{
    perm, BrokerData, ClusterInfo, DataVersion, QueueData, TopicConfigSerializeWrapper, TopicList,
    TopicRouteData, MASTER_ID,
};
use tracing::{info, warn};

/// Identifies one registered broker process: its cluster and main address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BrokerAddrInfo {
    /// Cluster name.
    pub cluster_name: String,
    /// `ip:port` of the broker's main remoting port.
    pub broker_addr: String,
}

/// Liveness record of one broker process.
#[derive(Debug, Clone)]
struct BrokerLiveInfo {
    last_update: Instant,
    timeout: Duration,
    data_version: DataVersion,
    conn_id: Option<u64>,
    ha_server_addr: String,
}

/// Everything a REGISTER_BROKER request carries (header and decoded body).
#[derive(Debug, Clone, Default)]
pub struct RegisterBrokerRequest {
    /// Cluster name.
    pub cluster_name: String,
    /// `ip:port` of the broker's main port.
    pub broker_addr: String,
    /// Broker group name.
    pub broker_name: String,
    /// 0 = master, ≥ 1 = slave.
    pub broker_id: i64,
    /// `ip:port` of the broker's HA port.
    pub ha_server_addr: String,
    /// Zone name (`__ZONE_NAME`), if sent.
    pub zone_name: Option<String>,
    /// The broker's own expiry (`heartbeatTimeoutMillis`); `None` uses the configured default.
    pub heartbeat_timeout: Option<Duration>,
    /// `enableActingMaster`; `None` for brokers too old to send it.
    pub enable_acting_master: Option<bool>,
    /// The broker's topics and data version.
    pub topic_config_wrapper: TopicConfigSerializeWrapper,
    /// Filter server addresses (legacy).
    pub filter_server_list: Vec<String>,
    /// The connection the registration arrived on, so its close removes the broker.
    pub conn_id: Option<u64>,
}

/// What a registration answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegisterBrokerResult {
    /// For a slave: the live master's address.
    pub master_addr: Option<String>,
    /// For a slave: the live master's HA address.
    pub ha_server_addr: Option<String>,
}

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// Another live address holds this broker id with a newer state version (5.x controller
    /// mode): the registering broker is stale.
    #[error(
        "broker id {broker_id} of {broker_name} is held by {current_addr} with a newer state version"
    )]
    StaleStateVersion {
        /// Broker group.
        broker_name: String,
        /// The contested broker id.
        broker_id: i64,
        /// The address that keeps it.
        current_addr: String,
    },
}

#[derive(Debug, Default)]
struct RouteTables {
    cluster_addr_table: BTreeMap<String, BTreeSet<String>>,
    broker_addr_table: BTreeMap<String, BrokerData>,
    topic_queue_table: BTreeMap<String, BTreeMap<String, QueueData>>,
    filter_server_table: HashMap<BrokerAddrInfo, Vec<String>>,
}

/// The NameServer's route and liveness state. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct RouteTable {
    routes: RwLock<RouteTables>,
    live: RwLock<HashMap<BrokerAddrInfo, BrokerLiveInfo>>,
    default_timeout: Duration,
}

impl RouteTable {
    /// An empty table whose brokers expire after `default_timeout` unless they send their own.
    pub fn new(default_timeout: Duration) -> Self {
        RouteTable {
            routes: RwLock::new(RouteTables::default()),
            live: RwLock::new(HashMap::new()),
            default_timeout,
        }
    }

    /// Registers (or refreshes) a broker and its topics (PROTOCOL.md §9.2).
    ///
    /// # Errors
    /// [`RegisterError::StaleStateVersion`] when another live address holds the broker id
    /// with a larger `stateVersion`.
    pub fn register_broker(
        &self,
        req: RegisterBrokerRequest,
        now: Instant,
    ) -> Result<RegisterBrokerResult, RegisterError> {
        let addr_info = BrokerAddrInfo {
            cluster_name: req.cluster_name.clone(),
            broker_addr: req.broker_addr.clone(),
        };
        let data_version = req.topic_config_wrapper.data_version;
        let mut routes = self.routes.write();
        let mut live = self.live.write();

        // The 5.x stale-registration check, before anything changes.
        if let Some(bd) = routes.broker_addr_table.get(&req.broker_name) {
            if let Some(current) = bd.broker_addrs.get(&req.broker_id) {
                if *current != req.broker_addr {
                    let other = BrokerAddrInfo {
                        cluster_name: req.cluster_name.clone(),
                        broker_addr: current.clone(),
                    };
                    if let Some(other_live) = live.get(&other) {
                        if other_live.data_version.state_version > data_version.state_version {
                            return Err(RegisterError::StaleStateVersion {
                                broker_name: req.broker_name.clone(),
                                broker_id: req.broker_id,
                                current_addr: current.clone(),
                            });
                        }
                    }
                }
            }
        }

        routes
            .cluster_addr_table
            .entry(req.cluster_name.clone())
            .or_default()
            .insert(req.broker_name.clone());

        let mut register_first = false;
        let broker_data = routes
            .broker_addr_table
            .entry(req.broker_name.clone())
            .or_insert_with(|| {
                register_first = true;
                BrokerData::new(req.cluster_name.clone(), req.broker_name.clone())
            });
        if let Some(acting) = req.enable_acting_master {
            broker_data.enable_acting_master = acting;
        }
        if req.zone_name.is_some() {
            broker_data.zone_name.clone_from(&req.zone_name);
        }
        // A slave promoted to master (or the reverse) keeps its address under a new id.
        broker_data
            .broker_addrs
            .retain(|id, addr| *id == req.broker_id || *addr != req.broker_addr);
        let old_addr = broker_data
            .broker_addrs
            .insert(req.broker_id, req.broker_addr.clone());
        register_first |= old_addr.is_none();

        let is_master = req.broker_id == MASTER_ID;
        let is_prime_slave = req.enable_acting_master.unwrap_or(false)
            && !is_master
            && broker_data.broker_addrs.keys().next() == Some(&req.broker_id);
        let acting_master = broker_data.enable_acting_master;
        let master_addr = broker_data.broker_addrs.get(&MASTER_ID).cloned();

        if is_master || is_prime_slave {
            let changed = live
                .get(&addr_info)
                .is_none_or(|prev| prev.data_version != data_version);
            for (topic, config) in &req.topic_config_wrapper.topic_config_table {
                let per_broker = routes.topic_queue_table.entry(topic.clone()).or_default();
                if !(changed || register_first || !per_broker.contains_key(&req.broker_name)) {
                    continue;
                }
                let mut queue_data = config.to_queue_data(&req.broker_name);
                if is_prime_slave && acting_master {
                    // An acting master serves reads only.
                    queue_data.perm &= !perm::PERM_WRITE;
                }
                if per_broker.get(&req.broker_name) != Some(&queue_data) {
                    info!(topic = %topic, broker = %req.broker_name, "topic queue data updated");
                }
                per_broker.insert(req.broker_name.clone(), queue_data);
            }
        }

        if req.filter_server_list.is_empty() {
            routes.filter_server_table.remove(&addr_info);
        } else {
            routes
                .filter_server_table
                .insert(addr_info.clone(), req.filter_server_list.clone());
        }

        let previous = live.insert(
            addr_info,
            BrokerLiveInfo {
                last_update: now,
                timeout: req.heartbeat_timeout.unwrap_or(self.default_timeout),
                data_version,
                conn_id: req.conn_id,
                ha_server_addr: req.ha_server_addr.clone(),
            },
        );
        if previous.is_none() {
            info!(
                cluster = %req.cluster_name,
                broker = %req.broker_name,
                broker_id = req.broker_id,
                addr = %req.broker_addr,
                "broker registered"
            );
        }

        let mut result = RegisterBrokerResult::default();
        if !is_master {
            if let Some(master_addr) = master_addr {
                let master_info = BrokerAddrInfo {
                    cluster_name: req.cluster_name.clone(),
                    broker_addr: master_addr.clone(),
                };
                if let Some(master_live) = live.get(&master_info) {
                    result.ha_server_addr = Some(master_live.ha_server_addr.clone());
                    result.master_addr = Some(master_addr);
                }
            }
        }
        Ok(result)
    }

    /// Removes a broker on its own request (UNREGISTER_BROKER). The id entry is removed only
    /// if it still maps to `broker_addr`.
    pub fn unregister_broker(
        &self,
        cluster_name: &str,
        broker_addr: &str,
        broker_name: &str,
        broker_id: i64,
    ) {
        let mut routes = self.routes.write();
        let mut live = self.live.write();
        let info = BrokerAddrInfo {
            cluster_name: cluster_name.to_string(),
            broker_addr: broker_addr.to_string(),
        };
        live.remove(&info);
        routes.filter_server_table.remove(&info);
        let mut emptied = false;
        if let Some(bd) = routes.broker_addr_table.get_mut(broker_name) {
            if bd.broker_addrs.get(&broker_id).map(String::as_str) == Some(broker_addr) {
                bd.broker_addrs.remove(&broker_id);
            }
            emptied = bd.broker_addrs.is_empty();
        }
        if emptied {
            remove_broker_name(&mut routes, broker_name);
        }
        info!(cluster = %cluster_name, broker = %broker_name, broker_id, addr = %broker_addr, "broker unregistered");
    }

    /// Removes one broker process by (cluster, address) from every table.
    fn remove_broker_addr(routes: &mut RouteTables, info: &BrokerAddrInfo) {
        routes.filter_server_table.remove(info);
        let names: Vec<String> = routes
            .cluster_addr_table
            .get(&info.cluster_name)
            .map(|names| names.iter().cloned().collect())
            .unwrap_or_default();
        for name in names {
            let Some(bd) = routes.broker_addr_table.get_mut(&name) else {
                continue;
            };
            bd.broker_addrs.retain(|_, addr| *addr != info.broker_addr);
            if bd.broker_addrs.is_empty() {
                remove_broker_name(routes, &name);
            }
        }
    }

    /// Removes every broker registered over connection `conn_id` (the connection closed).
    /// Only live entries whose *latest* registration came on `conn_id` go: a broker restarted
    /// on the same address that already re-registered on a new connection is kept, however
    /// late the old connection's close is noticed. Returns the removed brokers.
    pub fn on_connection_closed(&self, conn_id: u64) -> Vec<BrokerAddrInfo> {
        let mut routes = self.routes.write();
        let mut live = self.live.write();
        let gone: Vec<BrokerAddrInfo> = live
            .iter()
            .filter(|(_, l)| l.conn_id == Some(conn_id))
            .map(|(k, _)| k.clone())
            .collect();
        for info in &gone {
            live.remove(info);
            Self::remove_broker_addr(&mut routes, info);
            warn!(cluster = %info.cluster_name, addr = %info.broker_addr, "broker connection closed, removed");
        }
        gone
    }

    /// Removes every broker whose last update is older than its timeout at `now`. Returns the
    /// removed brokers.
    pub fn scan_expired(&self, now: Instant) -> Vec<BrokerAddrInfo> {
        // A cheap read-only pass first: nearly every scan finds nothing.
        let any = self
            .live
            .read()
            .values()
            .any(|l| now.saturating_duration_since(l.last_update) > l.timeout);
        if !any {
            return Vec::new();
        }
        let mut routes = self.routes.write();
        let mut live = self.live.write();
        let gone: Vec<BrokerAddrInfo> = live
            .iter()
            .filter(|(_, l)| now.saturating_duration_since(l.last_update) > l.timeout)
            .map(|(k, _)| k.clone())
            .collect();
        for info in &gone {
            if let Some(l) = live.remove(info) {
                warn!(
                    cluster = %info.cluster_name,
                    addr = %info.broker_addr,
                    silent_ms = now.saturating_duration_since(l.last_update).as_millis() as u64,
                    "broker expired"
                );
            }
            Self::remove_broker_addr(&mut routes, info);
        }
        gone
    }

    /// Refreshes a broker's liveness (BROKER_HEARTBEAT); `timeout` replaces its expiry when
    /// given. Returns false if the broker is not registered.
    pub fn heartbeat(
        &self,
        cluster_name: &str,
        broker_addr: &str,
        timeout: Option<Duration>,
        now: Instant,
    ) -> bool {
        let info = BrokerAddrInfo {
            cluster_name: cluster_name.to_string(),
            broker_addr: broker_addr.to_string(),
        };
        match self.live.write().get_mut(&info) {
            Some(l) => {
                l.last_update = now;
                if let Some(t) = timeout {
                    l.timeout = t;
                }
                true
            }
            None => false,
        }
    }

    /// QUERY_DATA_VERSION: whether `version` differs from the stored one (true when the broker
    /// is unknown), and the stored version. An unchanged broker's liveness is refreshed, as
    /// in RocketMQ.
    pub fn query_data_version(
        &self,
        cluster_name: &str,
        broker_addr: &str,
        version: &DataVersion,
        now: Instant,
    ) -> (bool, Option<DataVersion>) {
        let info = BrokerAddrInfo {
            cluster_name: cluster_name.to_string(),
            broker_addr: broker_addr.to_string(),
        };
        let mut live = self.live.write();
        match live.get_mut(&info) {
            Some(l) => {
                let changed = l.data_version != *version;
                if !changed {
                    l.last_update = now;
                }
                (changed, Some(l.data_version))
            }
            None => (true, None),
        }
    }

    /// The route of `topic` (PROTOCOL.md §9.4), without `orderTopicConf`; `None` when the topic
    /// has no queue data or none of its broker groups is known.
    pub fn topic_route(&self, topic: &str) -> Option<TopicRouteData> {
        let routes = self.routes.read();
        let per_broker = routes.topic_queue_table.get(topic)?;
        let mut route = TopicRouteData::default();
        for (broker_name, qd) in per_broker {
            route.queue_datas.push(qd.clone());
            if let Some(bd) = routes.broker_addr_table.get(broker_name) {
                for addr in bd.broker_addrs.values() {
                    let info = BrokerAddrInfo {
                        cluster_name: bd.cluster.clone(),
                        broker_addr: addr.clone(),
                    };
                    if let Some(filters) = routes.filter_server_table.get(&info) {
                        route
                            .filter_server_table
                            .insert(addr.clone(), filters.clone());
                    }
                }
                route.broker_datas.push(bd.clone());
            }
        }
        if route.queue_datas.is_empty() || route.broker_datas.is_empty() {
            return None;
        }
        Some(route)
    }

    /// GET_BROKER_CLUSTER_INFO.
    pub fn cluster_info(&self) -> ClusterInfo {
        let routes = self.routes.read();
        ClusterInfo {
            broker_addr_table: routes.broker_addr_table.clone(),
            cluster_addr_table: routes.cluster_addr_table.clone(),
        }
    }

    /// GET_ALL_TOPIC_LIST_FROM_NAMESERVER: every topic with queue data.
    pub fn all_topics(&self) -> TopicList {
        let routes = self.routes.read();
        TopicList {
            topic_list: routes.topic_queue_table.keys().cloned().collect(),
            broker_addr: None,
        }
    }

    /// GET_TOPICS_BY_CLUSTER: topics with queues on any broker group of `cluster`.
    pub fn topics_by_cluster(&self, cluster: &str) -> TopicList {
        let routes = self.routes.read();
        let mut list = TopicList::default();
        if let Some(names) = routes.cluster_addr_table.get(cluster) {
            for (topic, per_broker) in &routes.topic_queue_table {
                if per_broker.keys().any(|b| names.contains(b)) {
                    list.topic_list.insert(topic.clone());
                }
            }
        }
        list
    }

    /// GET_SYSTEM_TOPIC_LIST_FROM_NS: every cluster name and broker name (RocketMQ treats them
    /// as system topics), plus one broker address.
    pub fn system_topics(&self) -> TopicList {
        let routes = self.routes.read();
        let mut list = TopicList::default();
        for (cluster, names) in &routes.cluster_addr_table {
            list.topic_list.insert(cluster.clone());
            list.topic_list.extend(names.iter().cloned());
        }
        list.broker_addr = routes
            .broker_addr_table
            .values()
            .find_map(|bd| bd.broker_addrs.values().next().cloned());
        list
    }

    /// DELETE_TOPIC_IN_NAMESRV: removes `topic`, or with `cluster` only its queues on that
    /// cluster's broker groups. Returns whether anything was removed.
    pub fn delete_topic(&self, topic: &str, cluster: Option<&str>) -> bool {
        let mut routes = self.routes.write();
        let Some(cluster) = cluster.filter(|c| !c.is_empty()) else {
            return routes.topic_queue_table.remove(topic).is_some();
        };
        let names = routes
            .cluster_addr_table
            .get(cluster)
            .cloned()
            .unwrap_or_default();
        let Some(per_broker) = routes.topic_queue_table.get_mut(topic) else {
            return false;
        };
        let before = per_broker.len();
        per_broker.retain(|b, _| !names.contains(b));
        let removed = per_broker.len() != before;
        if per_broker.is_empty() {
            routes.topic_queue_table.remove(topic);
        }
        removed
    }

    /// WIPE_WRITE_PERM_OF_BROKER (`wipe = true`) / ADD_WRITE_PERM_OF_BROKER: clears or sets
    /// PERM_WRITE on every queue data of `broker_name`. Returns the number of topics touched.
    pub fn set_write_perm(&self, broker_name: &str, wipe: bool) -> usize {
        let mut routes = self.routes.write();
        let mut count = 0;
        for per_broker in routes.topic_queue_table.values_mut() {
            if let Some(qd) = per_broker.get_mut(broker_name) {
                if wipe {
                    qd.perm &= !perm::PERM_WRITE;
                } else {
                    qd.perm = perm::PERM_READ | perm::PERM_WRITE;
                }
                count += 1;
            }
        }
        count
    }

    /// Number of live broker processes.
    pub fn live_broker_count(&self) -> usize {
        self.live.read().len()
    }
}

/// Removes a broker name whose last member left: its BrokerData, its cluster entry and its
/// queues of every topic (topics left without queues disappear).
fn remove_broker_name(routes: &mut RouteTables, broker_name: &str) {
    routes.broker_addr_table.remove(broker_name);
    routes.cluster_addr_table.retain(|_, names| {
        names.remove(broker_name);
        !names.is_empty()
    });
    routes.topic_queue_table.retain(|_, per_broker| {
        per_broker.remove(broker_name);
        !per_broker.is_empty()
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_common::route::TopicConfig;

    const EXPIRY: Duration = Duration::from_secs(120);

    fn wrapper(topics: &[(&str, i32)], counter: i64) -> TopicConfigSerializeWrapper {
        let mut w = TopicConfigSerializeWrapper::default();
        w.data_version.counter = counter;
        for (t, n) in topics {
            w.topic_config_table
                .insert(t.to_string(), TopicConfig::new(*t, *n));
        }
        w
    }

    fn req(name: &str, id: i64, addr: &str, topics: &[(&str, i32)]) -> RegisterBrokerRequest {
        RegisterBrokerRequest {
            cluster_name: "DefaultCluster".into(),
            broker_addr: addr.into(),
            broker_name: name.into(),
            broker_id: id,
            ha_server_addr: format!("{addr}-ha"),
            topic_config_wrapper: wrapper(topics, 1),
            conn_id: Some(id as u64 + 100 * name.len() as u64),
            ..Default::default()
        }
    }

    #[test]
    fn two_brokers_of_one_cluster_share_a_topic() {
        let t = RouteTable::new(EXPIRY);
        let now = Instant::now();
        t.register_broker(
            req("broker-a", 0, "10.0.0.1:10911", &[("T", 8), ("A", 4)]),
            now,
        )
        .unwrap();
        t.register_broker(req("broker-b", 0, "10.0.0.2:10911", &[("T", 4)]), now)
            .unwrap();
        let r = t.topic_route("T").unwrap();
        assert_eq!(r.queue_datas.len(), 2);
        assert_eq!(r.broker_datas.len(), 2);
        assert_eq!(r.queue_datas[0].broker_name, "broker-a");
        assert_eq!(r.queue_datas[0].write_queue_nums, 8);
        assert_eq!(r.publish_queues("T").len(), 12);
        let a = t.topic_route("A").unwrap();
        assert_eq!(a.broker_datas.len(), 1);
        assert!(t.topic_route("nope").is_none());
        let ci = t.cluster_info();
        assert_eq!(ci.cluster_addr_table["DefaultCluster"].len(), 2);
        assert_eq!(
            ci.broker_addr_table["broker-b"].master_addr(),
            Some("10.0.0.2:10911")
        );
        assert_eq!(t.all_topics().topic_list.len(), 2);
        assert_eq!(t.topics_by_cluster("DefaultCluster").topic_list.len(), 2);
        assert!(t.topics_by_cluster("Other").topic_list.is_empty());
    }

    #[test]
    fn silent_broker_expires_while_refreshed_one_stays() {
        let t = RouteTable::new(EXPIRY);
        let t0 = Instant::now();
        t.register_broker(req("broker-a", 0, "a:1", &[("T", 8)]), t0)
            .unwrap();
        t.register_broker(req("broker-b", 0, "b:1", &[("T", 4)]), t0)
            .unwrap();
        assert!(
            t.scan_expired(t0 + EXPIRY).is_empty(),
            "exactly at the timeout is still alive"
        );
        // broker-b re-registers at t0 + 100 s; broker-a stays silent.
        t.register_broker(
            req("broker-b", 0, "b:1", &[("T", 4)]),
            t0 + Duration::from_secs(100),
        )
        .unwrap();
        let gone = t.scan_expired(t0 + Duration::from_secs(121));
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].broker_addr, "a:1");
        let r = t.topic_route("T").unwrap();
        assert_eq!(r.queue_datas.len(), 1);
        assert_eq!(r.queue_datas[0].broker_name, "broker-b");
        assert!(!t.cluster_info().broker_addr_table.contains_key("broker-a"));
        // Then broker-b expires too and the topic disappears.
        let gone = t.scan_expired(t0 + Duration::from_secs(300));
        assert_eq!(gone.len(), 1);
        assert!(t.topic_route("T").is_none());
        assert!(t.cluster_info().cluster_addr_table.is_empty());
    }

    #[test]
    fn broker_timeout_header_overrides_default_and_heartbeat_refreshes() {
        let t = RouteTable::new(EXPIRY);
        let t0 = Instant::now();
        let mut r = req("broker-a", 0, "a:1", &[("T", 8)]);
        r.heartbeat_timeout = Some(Duration::from_secs(10));
        t.register_broker(r, t0).unwrap();
        assert!(t.heartbeat("DefaultCluster", "a:1", None, t0 + Duration::from_secs(8)));
        assert!(t.scan_expired(t0 + Duration::from_secs(15)).is_empty());
        assert_eq!(t.scan_expired(t0 + Duration::from_secs(19)).len(), 1);
        assert!(!t.heartbeat("DefaultCluster", "a:1", None, t0));
    }

    #[test]
    fn closing_the_connection_removes_only_its_broker() {
        let t = RouteTable::new(EXPIRY);
        let now = Instant::now();
        let mut a = req("broker-a", 0, "a:1", &[("T", 8)]);
        a.conn_id = Some(7);
        let mut b = req("broker-b", 0, "b:1", &[("T", 8)]);
        b.conn_id = Some(8);
        t.register_broker(a, now).unwrap();
        t.register_broker(b, now).unwrap();
        assert!(t.on_connection_closed(99).is_empty());
        let gone = t.on_connection_closed(7);
        assert_eq!(gone.len(), 1);
        assert_eq!(t.topic_route("T").unwrap().queue_datas.len(), 1);
        assert_eq!(t.live_broker_count(), 1);
    }

    #[test]
    fn restarted_broker_survives_the_close_of_its_old_connection() {
        // A broker killed and restarted on the same address re-registers on a new connection
        // before the NameServer notices the old one closed: that late close must not remove
        // the fresh registration.
        let t = RouteTable::new(EXPIRY);
        let now = Instant::now();
        let mut old = req("broker-a", 0, "a:1", &[("T", 8), ("TBW102", 8)]);
        old.conn_id = Some(1);
        t.register_broker(old, now).unwrap();
        let mut new = req("broker-a", 0, "a:1", &[("T", 8), ("TBW102", 8)]);
        new.conn_id = Some(2);
        t.register_broker(new, now).unwrap();
        assert!(t.on_connection_closed(1).is_empty());
        assert!(t.topic_route("T").is_some());
        assert!(t.topic_route("TBW102").is_some());
        assert_eq!(t.on_connection_closed(2).len(), 1);
        assert!(t.topic_route("TBW102").is_none());
    }

    #[test]
    fn reregistration_after_removal_restores_topics_with_an_unchanged_data_version() {
        // The close is noticed first: the broker is removed, then registers again with the
        // same data version (nothing changed on its side). Its topics must all come back.
        let t = RouteTable::new(EXPIRY);
        let now = Instant::now();
        let mut first = req("broker-a", 0, "a:1", &[("T", 8), ("TBW102", 8)]);
        first.conn_id = Some(1);
        t.register_broker(first, now).unwrap();
        assert_eq!(t.on_connection_closed(1).len(), 1);
        assert!(t.topic_route("TBW102").is_none());
        let mut again = req("broker-a", 0, "a:1", &[("T", 8), ("TBW102", 8)]);
        again.conn_id = Some(2);
        t.register_broker(again, now).unwrap();
        assert_eq!(
            t.topic_route("T").unwrap().queue_datas[0].write_queue_nums,
            8
        );
        assert!(t.topic_route("TBW102").is_some());
        // The same after an UNREGISTER_BROKER and after expiry.
        t.unregister_broker("DefaultCluster", "a:1", "broker-a", 0);
        assert!(t.topic_route("T").is_none());
        t.register_broker(req("broker-a", 0, "a:1", &[("T", 8)]), now)
            .unwrap();
        assert!(t.topic_route("T").is_some());
        assert_eq!(t.scan_expired(now + EXPIRY * 2).len(), 1);
        t.register_broker(req("broker-a", 0, "a:1", &[("T", 8)]), now + EXPIRY * 2)
            .unwrap();
        assert!(t.topic_route("T").is_some());
    }

    #[test]
    fn slave_gets_master_addresses_and_its_topics_are_ignored() {
        let t = RouteTable::new(EXPIRY);
        let now = Instant::now();
        // A slave registering before its master learns nothing and adds no topics.
        let res = t
            .register_broker(req("broker-a", 1, "s:1", &[("S", 2)]), now)
            .unwrap();
        assert_eq!(res, RegisterBrokerResult::default());
        assert!(t.topic_route("S").is_none());
        t.register_broker(req("broker-a", 0, "m:1", &[("T", 8)]), now)
            .unwrap();
        let res = t
            .register_broker(req("broker-a", 1, "s:1", &[("S", 2)]), now)
            .unwrap();
        assert_eq!(res.master_addr.as_deref(), Some("m:1"));
        assert_eq!(res.ha_server_addr.as_deref(), Some("m:1-ha"));
        let r = t.topic_route("T").unwrap();
        assert_eq!(r.broker_datas[0].broker_addrs.len(), 2);
        assert!(t.topic_route("S").is_none());
        // The master leaves: the group stays (the slave is still there) with no master, so
        // the topic is readable but not publishable.
        t.unregister_broker("DefaultCluster", "m:1", "broker-a", 0);
        let r = t.topic_route("T").unwrap();
        assert_eq!(r.broker_datas[0].master_addr(), None);
        assert!(r.publish_queues("T").is_empty());
        assert_eq!(r.subscribe_queues("T").len(), 8);
        // The slave leaves too: everything is gone.
        t.unregister_broker("DefaultCluster", "s:1", "broker-a", 1);
        assert!(t.topic_route("T").is_none());
        assert!(t.cluster_info().broker_addr_table.is_empty());
    }

    #[test]
    fn promoted_slave_keeps_one_entry_per_address() {
        let t = RouteTable::new(EXPIRY);
        let now = Instant::now();
        t.register_broker(req("broker-a", 1, "x:1", &[]), now)
            .unwrap();
        t.register_broker(req("broker-a", 0, "x:1", &[("T", 1)]), now)
            .unwrap();
        let bd = &t.cluster_info().broker_addr_table["broker-a"];
        assert_eq!(bd.broker_addrs.len(), 1);
        assert_eq!(bd.master_addr(), Some("x:1"));
    }

    #[test]
    fn stale_state_version_is_rejected() {
        let t = RouteTable::new(EXPIRY);
        let now = Instant::now();
        let mut m = req("broker-a", 0, "new:1", &[("T", 1)]);
        m.topic_config_wrapper.data_version.state_version = 5;
        t.register_broker(m, now).unwrap();
        let mut stale = req("broker-a", 0, "old:1", &[("T", 1)]);
        stale.topic_config_wrapper.data_version.state_version = 3;
        assert!(matches!(
            t.register_broker(stale, now),
            Err(RegisterError::StaleStateVersion { .. })
        ));
        assert_eq!(
            t.cluster_info().broker_addr_table["broker-a"].master_addr(),
            Some("new:1")
        );
    }

    #[test]
    fn topic_updates_follow_data_version() {
        let t = RouteTable::new(EXPIRY);
        let now = Instant::now();
        t.register_broker(req("broker-a", 0, "a:1", &[("T", 8)]), now)
            .unwrap();
        // Same data version with a different queue count: not applied (nothing changed).
        let mut same = req("broker-a", 0, "a:1", &[("T", 2), ("New", 1)]);
        same.topic_config_wrapper.data_version.counter = 1;
        t.register_broker(same, now).unwrap();
        assert_eq!(
            t.topic_route("T").unwrap().queue_datas[0].write_queue_nums,
            8
        );
        // ...but a topic this broker never had is added anyway.
        assert!(t.topic_route("New").is_some());
        let mut newer = req("broker-a", 0, "a:1", &[("T", 2)]);
        newer.topic_config_wrapper.data_version.counter = 2;
        t.register_broker(newer, now).unwrap();
        assert_eq!(
            t.topic_route("T").unwrap().queue_datas[0].write_queue_nums,
            2
        );
        let (changed, stored) = t.query_data_version(
            "DefaultCluster",
            "a:1",
            &DataVersion {
                counter: 2,
                ..Default::default()
            },
            now,
        );
        assert!(!changed);
        assert_eq!(stored.map(|v| v.counter), Some(2));
        let (changed, _) =
            t.query_data_version("DefaultCluster", "a:1", &DataVersion::default(), now);
        assert!(changed);
    }

    #[test]
    fn delete_topic_everywhere_or_per_cluster() {
        let t = RouteTable::new(EXPIRY);
        let now = Instant::now();
        t.register_broker(req("broker-a", 0, "a:1", &[("T", 8), ("U", 1)]), now)
            .unwrap();
        let mut other = req("broker-x", 0, "x:1", &[("T", 8)]);
        other.cluster_name = "Other".into();
        t.register_broker(other, now).unwrap();
        assert!(t.delete_topic("T", Some("Other")));
        let r = t.topic_route("T").unwrap();
        assert_eq!(r.queue_datas.len(), 1);
        assert_eq!(r.queue_datas[0].broker_name, "broker-a");
        assert!(t.delete_topic("U", None));
        assert!(t.topic_route("U").is_none());
        assert!(!t.delete_topic("U", None));
        assert!(t.delete_topic("T", Some("")));
        assert!(t.topic_route("T").is_none());
    }

    #[test]
    fn wipe_and_add_write_perm() {
        let t = RouteTable::new(EXPIRY);
        let now = Instant::now();
        t.register_broker(req("broker-a", 0, "a:1", &[("T", 8), ("U", 1)]), now)
            .unwrap();
        assert_eq!(t.set_write_perm("broker-a", true), 2);
        assert!(t.topic_route("T").unwrap().publish_queues("T").is_empty());
        assert_eq!(t.set_write_perm("broker-a", false), 2);
        assert_eq!(t.topic_route("T").unwrap().publish_queues("T").len(), 8);
        assert_eq!(t.set_write_perm("nobody", true), 0);
    }

    #[test]
    fn system_topics_list_clusters_and_broker_names() {
        let t = RouteTable::new(EXPIRY);
        t.register_broker(req("broker-a", 0, "a:1", &[]), Instant::now())
            .unwrap();
        let l = t.system_topics();
        assert!(l.topic_list.contains("DefaultCluster"));
        assert!(l.topic_list.contains("broker-a"));
        assert_eq!(l.broker_addr.as_deref(), Some("a:1"));
    }

    #[test]
    fn filter_servers_appear_in_route() {
        let t = RouteTable::new(EXPIRY);
        let mut r = req("broker-a", 0, "a:1", &[("T", 1)]);
        r.filter_server_list = vec!["f:1".into()];
        t.register_broker(r, Instant::now()).unwrap();
        assert_eq!(
            t.topic_route("T").unwrap().filter_server_table["a:1"],
            vec!["f:1"]
        );
    }
}
