//! Routing types: what the NameServer stores and serves, and what brokers register.
//!
//! Every type here is a serde struct whose wire names are RocketMQ's camelCase Java bean names
//! (PROTOCOL.md §2.2, §9.5). JSON output through [`crate::protocol::body::encode_body`] (or
//! plain `serde_json`) is compact, keeps every field that strict clients require (§9.6.4) and
//! writes `brokerAddrs` keys as quoted strings (`{"0":"10.0.0.5:10911"}`), which every known
//! client accepts. Input is lenient: [`TopicRouteData::from_json`] and
//! [`crate::protocol::body::decode_body`] also accept the legacy fastjson form with bare
//! integer keys (`{0:"10.0.0.5:10911"}`) that Java NameServers still write (§9.6.1).
//!
//! The same types travel as MessagePack (Tern's serialize type 2) with the same field names.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

/// Permission bits of a topic or broker (`PermName.java`, PROTOCOL.md §9.5).
pub mod perm {
    /// Topics created from a template inherit from it (`TBW102` carries it).
    pub const PERM_INHERIT: i32 = 1;
    /// Producers may send.
    pub const PERM_WRITE: i32 = 2;
    /// Consumers may pull.
    pub const PERM_READ: i32 = 4;
    /// Priority flag (unused by clients).
    pub const PERM_PRIORITY: i32 = 8;
    /// The usual value: read and write (6).
    pub const PERM_READ_WRITE: i32 = PERM_READ | PERM_WRITE;

    /// True if `perm` has [`PERM_READ`].
    pub fn is_readable(perm: i32) -> bool {
        perm & PERM_READ == PERM_READ
    }

    /// True if `perm` has [`PERM_WRITE`].
    pub fn is_writeable(perm: i32) -> bool {
        perm & PERM_WRITE == PERM_WRITE
    }

    /// True if `perm` has [`PERM_INHERIT`].
    pub fn is_inherited(perm: i32) -> bool {
        perm & PERM_INHERIT == PERM_INHERIT
    }

    /// True if `perm` has [`PERM_PRIORITY`].
    pub fn is_priority(perm: i32) -> bool {
        perm & PERM_PRIORITY == PERM_PRIORITY
    }

    /// Java's `PermName.perm2String`: `R`, `W`, `X` (inherit) or `-` per bit, e.g. `RW-` for 6.
    pub fn to_perm_string(perm: i32) -> String {
        let mut s = String::with_capacity(3);
        s.push(if is_readable(perm) { 'R' } else { '-' });
        s.push(if is_writeable(perm) { 'W' } else { '-' });
        s.push(if is_inherited(perm) { 'X' } else { '-' });
        s
    }
}

/// The broker id of a master (`MixAll.MASTER_ID`).
pub const MASTER_ID: i64 = 0;

/// Upper bound on the queues [`TopicRouteData::publish_queues`] and
/// [`TopicRouteData::subscribe_queues`] expand per broker; a route claiming more is clamped,
/// so a hostile or corrupt route cannot make a client allocate without bound.
pub const MAX_QUEUES_PER_BROKER: i32 = 65_536;

/// One broker group's queues of a topic (`QueueData.java`). Every field is always emitted,
/// in fastjson's alphabetical order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct QueueData {
    /// The broker group (`brokerName`) holding the queues.
    pub broker_name: String,
    /// Permission bits, see [`perm`].
    #[serde(default)]
    pub perm: i32,
    /// Number of readable queues (ids `0..read_queue_nums`).
    #[serde(default)]
    pub read_queue_nums: i32,
    /// Topic sys flag bits (1 = unit topic, 2 = has unit subscription).
    #[serde(default)]
    pub topic_sys_flag: i32,
    /// Number of writable queues (ids `0..write_queue_nums`).
    #[serde(default)]
    pub write_queue_nums: i32,
}

/// One broker group: its cluster, name and the address of each member (`BrokerData.java`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct BrokerData {
    /// Broker id (0 = master, ≥ 1 = slaves) → `ip:port` of the main remoting port. JSON keys
    /// are written as quoted decimal strings (`"0"`).
    #[serde(default)]
    pub broker_addrs: BTreeMap<i64, String>,
    /// Broker group name, e.g. `broker-a`.
    pub broker_name: String,
    /// Cluster name, e.g. `DefaultCluster`.
    #[serde(default)]
    pub cluster: String,
    /// 5.x acting-master flag; always emitted (strict clients require it).
    #[serde(default)]
    pub enable_acting_master: bool,
    /// Zone name, emitted only when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_name: Option<String>,
}

impl BrokerData {
    /// A broker group with no members yet.
    pub fn new(cluster: impl Into<String>, broker_name: impl Into<String>) -> Self {
        BrokerData {
            cluster: cluster.into(),
            broker_name: broker_name.into(),
            ..Default::default()
        }
    }

    /// The master's address (broker id 0), if the group has a live master.
    pub fn master_addr(&self) -> Option<&str> {
        self.broker_addrs.get(&MASTER_ID).map(String::as_str)
    }

    /// The master's address, else the address of the member with the lowest id (Java's
    /// `BrokerData.selectBrokerAddr` without the randomness, so callers are deterministic).
    pub fn select_broker_addr(&self) -> Option<&str> {
        self.master_addr()
            .or_else(|| self.broker_addrs.values().next().map(String::as_str))
    }
}

/// The route of one topic, the body of GET_ROUTEINFO_BY_TOPIC (`TopicRouteData.java`, §9.5).
///
/// Fields are declared in alphabetical order so the JSON matches fastjson's sorted output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TopicRouteData {
    /// The broker groups that hold queues of the topic.
    #[serde(default)]
    pub broker_datas: Vec<BrokerData>,
    /// Broker address → filter server addresses; normally empty, always emitted.
    #[serde(default)]
    pub filter_server_table: HashMap<String, Vec<String>>,
    /// `brokerName1:queueNums;brokerName2:queueNums` for order topics; emitted only when set.
    /// When present, clients publish to these queues instead of `queueDatas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_topic_conf: Option<String>,
    /// The queues of the topic per broker group.
    #[serde(default)]
    pub queue_datas: Vec<QueueData>,
}

/// Clamps a peer-provided queue count into `0..=MAX_QUEUES_PER_BROKER`.
fn clamp_queue_nums(n: i32) -> i32 {
    n.clamp(0, MAX_QUEUES_PER_BROKER)
}

impl TopicRouteData {
    /// Parses route JSON, accepting both standard JSON and the legacy fastjson form whose
    /// `brokerAddrs` keys are bare integers (`{0:"addr"}`, PROTOCOL.md §9.6.1).
    ///
    /// # Errors
    /// The `serde_json` error when the text is not a route even after quoting bare keys.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        from_json_lenient(bytes)
    }

    /// The broker group named `broker_name`, if the route has it.
    pub fn broker_data(&self, broker_name: &str) -> Option<&BrokerData> {
        self.broker_datas
            .iter()
            .find(|b| b.broker_name == broker_name)
    }

    /// The queues a producer may send to, in the order Java's
    /// `MQClientInstance.topicRouteData2TopicPublishInfo` builds them (PROTOCOL.md §9.5):
    ///
    /// - with `orderTopicConf` set, the queues it names (`brokerName:queueNums;...`), in its
    ///   order, skipping malformed entries;
    /// - otherwise, for each QueueData sorted by broker name that is writeable and whose
    ///   broker group has a master (id 0), queues `0..writeQueueNums`.
    ///
    /// Queue counts are clamped to [`MAX_QUEUES_PER_BROKER`].
    pub fn publish_queues(&self, topic: &str) -> Vec<MessageQueue> {
        let mut out = Vec::new();
        if let Some(conf) = self.order_topic_conf.as_deref().filter(|c| !c.is_empty()) {
            for entry in conf.split(';') {
                let Some((broker, nums)) = entry.split_once(':') else {
                    continue;
                };
                let Ok(nums) = nums.trim().parse::<i32>() else {
                    continue;
                };
                for queue_id in 0..clamp_queue_nums(nums) {
                    out.push(MessageQueue::new(topic, broker.trim(), queue_id));
                }
            }
            return out;
        }
        let mut queue_datas: Vec<&QueueData> = self.queue_datas.iter().collect();
        queue_datas.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
        for qd in queue_datas {
            if !perm::is_writeable(qd.perm) {
                continue;
            }
            let has_master = self
                .broker_data(&qd.broker_name)
                .is_some_and(|b| b.master_addr().is_some());
            if !has_master {
                continue;
            }
            for queue_id in 0..clamp_queue_nums(qd.write_queue_nums) {
                out.push(MessageQueue::new(topic, qd.broker_name.as_str(), queue_id));
            }
        }
        out
    }

    /// The queues a consumer may pull from (Java's `topicRouteData2TopicSubscribeInfo`): for
    /// each readable QueueData, queues `0..readQueueNums`; the result is sorted and has no
    /// duplicates. Queue counts are clamped to [`MAX_QUEUES_PER_BROKER`].
    pub fn subscribe_queues(&self, topic: &str) -> Vec<MessageQueue> {
        let mut set = BTreeSet::new();
        for qd in &self.queue_datas {
            if !perm::is_readable(qd.perm) {
                continue;
            }
            for queue_id in 0..clamp_queue_nums(qd.read_queue_nums) {
                set.insert(MessageQueue::new(topic, qd.broker_name.as_str(), queue_id));
            }
        }
        set.into_iter().collect()
    }
}

/// The body of GET_BROKER_CLUSTER_INFO (`ClusterInfo.java`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    /// Broker name → broker group.
    #[serde(default)]
    pub broker_addr_table: BTreeMap<String, BrokerData>,
    /// Cluster name → broker names.
    #[serde(default)]
    pub cluster_addr_table: BTreeMap<String, BTreeSet<String>>,
}

/// A set of topic names (`TopicList.java`): GET_ALL_TOPIC_LIST_FROM_NAMESERVER,
/// GET_TOPICS_BY_CLUSTER, GET_SYSTEM_TOPIC_LIST_FROM_NS, GET_TOPIC_NAME_LIST.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TopicList {
    /// The topics, sorted.
    #[serde(default)]
    pub topic_list: BTreeSet<String>,
    /// A broker address, set only by GET_SYSTEM_TOPIC_LIST_FROM_NS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_addr: Option<String>,
}

/// How a topic's messages are filtered (`TopicFilterType.java`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum TopicFilterType {
    /// One tag per message (the default).
    #[default]
    #[serde(rename = "SINGLE_TAG")]
    SingleTag,
    /// Several tags per message; sends OR `0x2` into the message sysFlag.
    #[serde(rename = "MULTI_TAG")]
    MultiTag,
}

impl TopicFilterType {
    /// RocketMQ's name: `SINGLE_TAG` or `MULTI_TAG`.
    pub fn as_str(self) -> &'static str {
        match self {
            TopicFilterType::SingleTag => "SINGLE_TAG",
            TopicFilterType::MultiTag => "MULTI_TAG",
        }
    }

    /// Parses RocketMQ's name (case-insensitive); `None` for anything else.
    pub fn from_name(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("SINGLE_TAG") {
            Some(TopicFilterType::SingleTag)
        } else if name.eq_ignore_ascii_case("MULTI_TAG") {
            Some(TopicFilterType::MultiTag)
        } else {
            None
        }
    }
}

/// Java's default queue count of a new `TopicConfig` (`TopicConfig.defaultReadQueueNums`).
pub const DEFAULT_TOPIC_QUEUE_NUMS: i32 = 16;

/// One topic's configuration on a broker (`TopicConfig.java`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicConfig {
    /// 5.x attributes (e.g. `message.type` → `NORMAL`); `{}` when none.
    pub attributes: BTreeMap<String, String>,
    /// Order topic flag.
    pub order: bool,
    /// Permission bits, see [`perm`] (default 6 = read + write).
    pub perm: i32,
    /// Number of readable queues (default 16).
    pub read_queue_nums: i32,
    /// Tag filter type.
    pub topic_filter_type: TopicFilterType,
    /// Topic name.
    pub topic_name: String,
    /// Topic sys flag bits.
    pub topic_sys_flag: i32,
    /// Number of writable queues (default 16).
    pub write_queue_nums: i32,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            attributes: BTreeMap::new(),
            order: false,
            perm: perm::PERM_READ_WRITE,
            read_queue_nums: DEFAULT_TOPIC_QUEUE_NUMS,
            topic_filter_type: TopicFilterType::SingleTag,
            topic_name: String::new(),
            topic_sys_flag: 0,
            write_queue_nums: DEFAULT_TOPIC_QUEUE_NUMS,
        }
    }
}

impl TopicConfig {
    /// A topic with `queue_nums` read and write queues and read/write permission.
    pub fn new(topic_name: impl Into<String>, queue_nums: i32) -> Self {
        TopicConfig {
            topic_name: topic_name.into(),
            read_queue_nums: queue_nums,
            write_queue_nums: queue_nums,
            ..Default::default()
        }
    }

    /// The QueueData this topic contributes to a route for broker group `broker_name`.
    pub fn to_queue_data(&self, broker_name: &str) -> QueueData {
        QueueData {
            broker_name: broker_name.to_string(),
            read_queue_nums: self.read_queue_nums,
            write_queue_nums: self.write_queue_nums,
            perm: self.perm,
            topic_sys_flag: self.topic_sys_flag,
        }
    }
}

/// A version stamp of a broker's metadata (`DataVersion.java`): brokers bump `counter` and
/// `timestamp` whenever their topic table changes; equality compares all three fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DataVersion {
    /// Change counter.
    pub counter: i64,
    /// 5.x state version (controller mode); 0 otherwise.
    pub state_version: i64,
    /// Wall-clock time of the last change, ms since the Unix epoch.
    pub timestamp: i64,
}

impl DataVersion {
    /// A fresh version: counter 0, the given timestamp (ms).
    pub fn new(timestamp_ms: i64) -> Self {
        DataVersion {
            counter: 0,
            state_version: 0,
            timestamp: timestamp_ms,
        }
    }

    /// Java's `nextVersion`: counter + 1, timestamp = `now_ms`.
    pub fn next_version(&mut self, now_ms: i64) {
        self.counter = self.counter.wrapping_add(1);
        self.timestamp = now_ms;
    }
}

/// A broker's topic table with its version (`TopicConfigSerializeWrapper.java`), the core of
/// a REGISTER_BROKER body. 5.x mapping fields in the input are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicConfigSerializeWrapper {
    /// The broker's data version.
    pub data_version: DataVersion,
    /// Topic name → config.
    pub topic_config_table: BTreeMap<String, TopicConfig>,
}

/// The body of REGISTER_BROKER (`RegisterBrokerBody.java`, uncompressed JSON form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct RegisterBrokerBody {
    /// Filter server addresses (legacy; normally empty).
    pub filter_server_list: Vec<String>,
    /// The broker's topics and data version.
    pub topic_config_serialize_wrapper: TopicConfigSerializeWrapper,
}

/// One queue of one topic on one broker group (`MessageQueue.java`).
///
/// Ordering is Java's `compareTo`: topic, then broker name, then queue id. Fields are declared
/// alphabetically so JSON matches fastjson (`{"brokerName":..,"queueId":..,"topic":..}`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct MessageQueue {
    /// Broker group name.
    #[serde(default)]
    pub broker_name: String,
    /// Queue id within the topic on that broker group.
    #[serde(default)]
    pub queue_id: i32,
    /// Topic name.
    #[serde(default)]
    pub topic: String,
}

impl MessageQueue {
    /// A message queue.
    pub fn new(topic: impl Into<String>, broker_name: impl Into<String>, queue_id: i32) -> Self {
        MessageQueue {
            topic: topic.into(),
            broker_name: broker_name.into(),
            queue_id,
        }
    }
}

impl Ord for MessageQueue {
    fn cmp(&self, other: &Self) -> Ordering {
        self.topic
            .cmp(&other.topic)
            .then_with(|| self.broker_name.cmp(&other.broker_name))
            .then_with(|| self.queue_id.cmp(&other.queue_id))
    }
}

impl PartialOrd for MessageQueue {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Display for MessageQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MessageQueue [topic={}, brokerName={}, queueId={}]",
            self.topic, self.broker_name, self.queue_id
        )
    }
}

/// Parses JSON strictly, and on failure retries after [`quote_nonstandard_keys`] turns
/// fastjson's non-string object keys into strings.
pub(crate) fn from_json_lenient<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
) -> Result<T, serde_json::Error> {
    match serde_json::from_slice(bytes) {
        Ok(v) => Ok(v),
        Err(strict_err) => {
            let Ok(text) = std::str::from_utf8(bytes) else {
                return Err(strict_err);
            };
            match quote_nonstandard_keys(text) {
                Cow::Owned(fixed) => serde_json::from_str(&fixed),
                Cow::Borrowed(_) => Err(strict_err),
            }
        }
    }
}

/// Rewrites fastjson's non-standard object keys into JSON strings so a strict parser accepts
/// them (PROTOCOL.md §9.6.1–2):
///
/// - a bare integer key `{0:"a"}` becomes `{"0":"a"}`;
/// - an object key `{{"brokerName":"b","queueId":0,"topic":"T"}:5}` becomes the JSON string
///   of the object's source text, `{"{\"brokerName\":\"b\",\"queueId\":0,\"topic\":\"T\"}":5}`,
///   which the `Map<MessageQueue, _>` bodies of [`crate::protocol::body`] parse back.
///
/// Strings are skipped intact, so keys or values containing braces are untouched. Input that is
/// not well-formed is passed through as far as it goes; the JSON parser then reports the error.
/// Returns the input unchanged (borrowed) when no key needed rewriting. The work and the output
/// size are linear in the input.
pub fn quote_nonstandard_keys(input: &str) -> Cow<'_, str> {
    let bytes = input.as_bytes();
    // Whether each open container is an object (true) or an array (false).
    let mut stack: Vec<bool> = Vec::new();
    let mut expect_key = false;
    let mut out: Option<String> = None;
    let mut copied_to = 0usize;
    let mut i = 0usize;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'"' => {
                i = skip_string(bytes, i);
                expect_key = false;
                continue;
            }
            b'{' if expect_key => {
                // An object used as a key: quote its whole source text.
                let end = skip_value_object(bytes, i);
                let o = out.get_or_insert_with(String::new);
                o.push_str(&input[copied_to..i]);
                let raw = &input[i..end];
                // Serialising a &str to JSON cannot fail.
                o.push_str(&serde_json::to_string(raw).unwrap_or_default());
                copied_to = end;
                i = end;
                expect_key = false;
                continue;
            }
            b'-' | b'0'..=b'9' if expect_key => {
                let start = i;
                let mut end = i + 1;
                while end < bytes.len() && bytes[end].is_ascii_digit() {
                    end += 1;
                }
                let o = out.get_or_insert_with(String::new);
                o.push_str(&input[copied_to..start]);
                o.push('"');
                o.push_str(&input[start..end]);
                o.push('"');
                copied_to = end;
                i = end;
                expect_key = false;
                continue;
            }
            b'{' => {
                stack.push(true);
                expect_key = true;
            }
            b'[' => {
                stack.push(false);
                expect_key = false;
            }
            b'}' | b']' => {
                stack.pop();
                expect_key = false;
            }
            b',' => {
                expect_key = stack.last().copied().unwrap_or(false);
            }
            b' ' | b'\t' | b'\n' | b'\r' => {}
            _ => {
                expect_key = false;
            }
        }
        i += 1;
    }
    match out {
        None => Cow::Borrowed(input),
        Some(mut o) => {
            o.push_str(&input[copied_to..]);
            Cow::Owned(o)
        }
    }
}

/// Index just past the JSON string starting at `start` (which holds `"`), or the end of input.
fn skip_string(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Index just past the balanced `{...}` starting at `start`, skipping strings; the end of
/// input if it never closes.
fn skip_value_object(bytes: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i = skip_string(bytes, i);
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route_example() -> TopicRouteData {
        let mut addrs = BTreeMap::new();
        addrs.insert(0, "10.0.0.5:10911".to_string());
        addrs.insert(1, "10.0.0.6:10911".to_string());
        TopicRouteData {
            broker_datas: vec![BrokerData {
                broker_addrs: addrs,
                broker_name: "broker-a".into(),
                cluster: "DefaultCluster".into(),
                enable_acting_master: false,
                zone_name: None,
            }],
            filter_server_table: HashMap::new(),
            order_topic_conf: None,
            queue_datas: vec![QueueData {
                broker_name: "broker-a".into(),
                read_queue_nums: 8,
                write_queue_nums: 8,
                perm: 6,
                topic_sys_flag: 0,
            }],
        }
    }

    const ROUTE_GOLDEN: &str = concat!(
        r#"{"brokerDatas":[{"brokerAddrs":{"0":"10.0.0.5:10911","1":"10.0.0.6:10911"},"#,
        r#""brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}],"#,
        r#""filterServerTable":{},"#,
        r#""queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":8,"#,
        r#""topicSysFlag":0,"writeQueueNums":8}]}"#
    );

    #[test]
    fn route_json_matches_protocol_example_byte_for_byte() {
        let json = serde_json::to_string(&route_example()).unwrap();
        assert!(!json.contains(' '), "compact: {json}");
        assert!(json.contains(r#""brokerAddrs":{"0":"10.0.0.5:10911","1":"10.0.0.6:10911"}"#));
        assert_eq!(json, ROUTE_GOLDEN);
        assert!(!json.contains("orderTopicConf"));
        assert!(!json.contains("zoneName"));
    }

    #[test]
    fn route_parses_golden_and_legacy_bare_integer_keys() {
        assert_eq!(
            TopicRouteData::from_json(ROUTE_GOLDEN.as_bytes()).unwrap(),
            route_example()
        );
        let legacy = ROUTE_GOLDEN
            .replace(r#""0":"#, "0:")
            .replace(r#""1":"#, "1:");
        assert!(serde_json::from_str::<TopicRouteData>(&legacy).is_err());
        assert_eq!(
            TopicRouteData::from_json(legacy.as_bytes()).unwrap(),
            route_example()
        );
    }

    #[test]
    fn optional_fields_appear_only_when_set() {
        let mut r = route_example();
        r.order_topic_conf = Some("broker-a:4".into());
        r.broker_datas[0].zone_name = Some("z1".into());
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains(r#""orderTopicConf":"broker-a:4""#));
        assert!(json.contains(r#""zoneName":"z1""#));
        let back: TopicRouteData = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn route_round_trips_through_messagepack() {
        let r = route_example();
        let bytes = rmp_serde::to_vec_named(&r).unwrap();
        let back: TopicRouteData = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn quoting_leaves_strings_and_arrays_alone() {
        let s = r#"{"a":[1,2,{"b":"{0:1}"}],"c":"x,3:"}"#;
        assert!(matches!(quote_nonstandard_keys(s), Cow::Borrowed(_)));
        let s = r#"{ 12 : "x", -3:"y"}"#;
        assert_eq!(quote_nonstandard_keys(s), r#"{ "12" : "x", "-3":"y"}"#);
    }

    #[test]
    fn quoting_turns_object_keys_into_strings() {
        let s = r#"{"t":{{"brokerName":"b","queueId":0,"topic":"T}"}:123}}"#;
        let fixed = quote_nonstandard_keys(s);
        let v: serde_json::Value = serde_json::from_str(&fixed).unwrap();
        let key = v["t"].as_object().unwrap().keys().next().unwrap().clone();
        assert_eq!(key, r#"{"brokerName":"b","queueId":0,"topic":"T}"}"#);
    }

    #[test]
    fn quoting_survives_truncated_input() {
        for s in ["{{", "{{\"a", "{1", "{\"a\":{", "\"", "{{\"a\":[1,"] {
            let _ = quote_nonstandard_keys(s);
        }
    }

    fn two_broker_route() -> TopicRouteData {
        let mut r = route_example();
        let mut b = BrokerData::new("DefaultCluster", "broker-0");
        b.broker_addrs.insert(1, "10.0.0.7:10911".into());
        r.broker_datas.push(b);
        r.queue_datas.push(QueueData {
            broker_name: "broker-0".into(),
            read_queue_nums: 2,
            write_queue_nums: 2,
            perm: 6,
            topic_sys_flag: 0,
        });
        r
    }

    #[test]
    fn publish_queues_need_a_master_and_write_perm() {
        let r = two_broker_route();
        // broker-0 has only a slave: not publishable, but readable.
        let pubq = r.publish_queues("T");
        assert_eq!(pubq.len(), 8);
        assert!(pubq
            .iter()
            .all(|q| q.broker_name == "broker-a" && q.topic == "T"));
        assert_eq!(pubq[3].queue_id, 3);
        let subq = r.subscribe_queues("T");
        assert_eq!(subq.len(), 10);
        assert_eq!(subq[0], MessageQueue::new("T", "broker-0", 0));

        let mut ro = route_example();
        ro.queue_datas[0].perm = perm::PERM_READ;
        assert!(ro.publish_queues("T").is_empty());
        assert_eq!(ro.subscribe_queues("T").len(), 8);
    }

    #[test]
    fn publish_queues_sorted_by_broker_name() {
        let mut r = two_broker_route();
        r.broker_datas[1]
            .broker_addrs
            .insert(0, "10.0.0.8:10911".into());
        let pubq = r.publish_queues("T");
        assert_eq!(pubq.len(), 10);
        assert_eq!(pubq[0].broker_name, "broker-0");
        assert_eq!(pubq[2].broker_name, "broker-a");
    }

    #[test]
    fn order_topic_conf_overrides_queue_datas() {
        let mut r = route_example();
        r.order_topic_conf = Some("broker-b:2;bad;broker-a:1".into());
        let q = r.publish_queues("T");
        assert_eq!(
            q,
            vec![
                MessageQueue::new("T", "broker-b", 0),
                MessageQueue::new("T", "broker-b", 1),
                MessageQueue::new("T", "broker-a", 0)
            ]
        );
    }

    #[test]
    fn huge_queue_counts_are_clamped() {
        let mut r = route_example();
        r.queue_datas[0].write_queue_nums = i32::MAX;
        r.queue_datas[0].read_queue_nums = -5;
        assert_eq!(r.publish_queues("T").len(), MAX_QUEUES_PER_BROKER as usize);
        assert!(r.subscribe_queues("T").is_empty());
    }

    #[test]
    fn message_queue_orders_like_java_and_serializes_alphabetically() {
        let a = MessageQueue::new("A", "z", 5);
        let b = MessageQueue::new("B", "a", 0);
        assert!(a < b);
        assert!(MessageQueue::new("A", "a", 9) < MessageQueue::new("A", "b", 0));
        assert_eq!(
            serde_json::to_string(&MessageQueue::new("T", "b", 0)).unwrap(),
            r#"{"brokerName":"b","queueId":0,"topic":"T"}"#
        );
    }

    #[test]
    fn register_body_parses_java_example_with_5x_fields() {
        let body = concat!(
            r#"{"filterServerList":[],"topicConfigSerializeWrapper":{"dataVersion":"#,
            r#"{"counter":12,"stateVersion":0,"timestamp":1700000000000},"#,
            r#""mappingDataVersion":{"counter":0,"stateVersion":0,"timestamp":1},"#,
            r#""topicConfigTable":{"TopicA":{"attributes":{},"order":false,"perm":6,"#,
            r#""readQueueNums":8,"topicFilterType":"SINGLE_TAG","topicName":"TopicA","#,
            r#""topicSysFlag":0,"writeQueueNums":8}},"#,
            r#""topicQueueMappingDetailMap":{},"topicQueueMappingInfoMap":{}}}"#
        );
        let b: RegisterBrokerBody = serde_json::from_str(body).unwrap();
        let w = &b.topic_config_serialize_wrapper;
        assert_eq!(w.data_version.counter, 12);
        assert_eq!(w.data_version.timestamp, 1_700_000_000_000);
        let t = &w.topic_config_table["TopicA"];
        assert_eq!(t.read_queue_nums, 8);
        assert_eq!(t.perm, 6);
        assert_eq!(t.topic_filter_type, TopicFilterType::SingleTag);
    }

    #[test]
    fn topic_config_json_has_every_field() {
        let json = serde_json::to_string(&TopicConfig::new("TopicA", 8)).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"{"attributes":{},"order":false,"perm":6,"readQueueNums":8,"#,
                r#""topicFilterType":"SINGLE_TAG","topicName":"TopicA","topicSysFlag":0,"#,
                r#""writeQueueNums":8}"#
            )
        );
    }

    #[test]
    fn perm_helpers() {
        assert!(perm::is_readable(6) && perm::is_writeable(6) && !perm::is_inherited(6));
        assert!(perm::is_inherited(7));
        assert!(perm::is_priority(8));
        assert_eq!(perm::to_perm_string(6), "RW-");
        assert_eq!(perm::to_perm_string(7), "RWX");
        assert_eq!(perm::to_perm_string(4), "R--");
    }

    #[test]
    fn data_version_next_bumps_counter_and_time() {
        let mut v = DataVersion::new(5);
        let old = v;
        v.next_version(9);
        assert_eq!(v.counter, 1);
        assert_eq!(v.timestamp, 9);
        assert_ne!(v, old);
    }

    #[test]
    fn cluster_info_and_topic_list_match_protocol_examples() {
        let mut ci = ClusterInfo::default();
        let mut bd = BrokerData::new("DefaultCluster", "broker-a");
        bd.broker_addrs.insert(0, "10.0.0.5:10911".into());
        ci.broker_addr_table.insert("broker-a".into(), bd);
        ci.cluster_addr_table
            .entry("DefaultCluster".into())
            .or_default()
            .insert("broker-a".into());
        assert_eq!(
            serde_json::to_string(&ci).unwrap(),
            concat!(
                r#"{"brokerAddrTable":{"broker-a":{"brokerAddrs":{"0":"10.0.0.5:10911"},"#,
                r#""brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}},"#,
                r#""clusterAddrTable":{"DefaultCluster":["broker-a"]}}"#
            )
        );
        let tl = TopicList {
            topic_list: ["TopicA".to_string(), "TBW102".to_string()]
                .into_iter()
                .collect(),
            broker_addr: None,
        };
        assert_eq!(
            serde_json::to_string(&tl).unwrap(),
            r#"{"topicList":["TBW102","TopicA"]}"#
        );
    }

    proptest::proptest! {
        #[test]
        fn quoting_never_panics_and_keeps_standard_json(
            junk in ".{0,64}",
            map in proptest::collection::btree_map(".{0,8}", proptest::collection::vec(-5i64..5, 0..3), 0..4),
        ) {
            let _ = quote_nonstandard_keys(&junk);
            let json = serde_json::to_string(&map).unwrap();
            proptest::prop_assert!(matches!(quote_nonstandard_keys(&json), Cow::Borrowed(_)));
        }

        #[test]
        fn bare_integer_keys_parse_like_quoted_ones(
            addrs in proptest::collection::btree_map(-3i64..100, "[a-z0-9.:]{1,12}", 0..5),
        ) {
            let bd = BrokerData { broker_addrs: addrs, ..BrokerData::new("c", "b") };
            let json = serde_json::to_string(&bd).unwrap();
            let mut legacy = json.clone();
            for id in bd.broker_addrs.keys() {
                legacy = legacy.replace(&format!("\"{id}\":"), &format!("{id}:"));
            }
            let back: BrokerData = from_json_lenient(legacy.as_bytes()).unwrap();
            proptest::prop_assert_eq!(back, bd);
        }
    }

    #[test]
    fn cluster_info_parses_legacy_java_output() {
        let legacy = concat!(
            r#"{"brokerAddrTable":{"broker-a":{"brokerAddrs":{0:"10.0.0.5:10911"},"#,
            r#""brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}},"#,
            r#""clusterAddrTable":{"DefaultCluster":["broker-a"]}}"#
        );
        let ci: ClusterInfo = from_json_lenient(legacy.as_bytes()).unwrap();
        assert_eq!(
            ci.broker_addr_table["broker-a"].master_addr(),
            Some("10.0.0.5:10911")
        );
        assert!(ci.cluster_addr_table["DefaultCluster"].contains("broker-a"));
    }
}
