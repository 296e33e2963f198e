//! Structured request and response bodies (PROTOCOL.md §2.3–§2.5, §9.6) and their encodings.
//!
//! A body travels in the serialize type of its command: compact JSON for types 0 (JSON) and
//! 1 (ROCKETMQ binary header — RocketMQ bodies are JSON either way), MessagePack with named
//! fields for Tern's type 2. Use [`encode_body`] and [`decode_body`] rather than `serde_json`
//! directly, because two fastjson quirks are handled there:
//!
//! - **Object map keys.** `Map<MessageQueue, X>` bodies ([`ConsumeStats`], [`TopicStatsTable`],
//!   [`ResetOffsetBody`]) are written by fastjson with a JSON *object* as key
//!   (`{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:123}}`, §9.6.2). Their
//!   tables are [`MqMap`]s: [`encode_body`] writes exactly that shape, [`decode_body`] parses
//!   it (and also string keys holding the object's JSON). In MessagePack an [`MqMap`] is a
//!   plain list of `[MessageQueue, X]` pairs.
//! - **Bare integer keys** (`{0:"addr"}`, §9.6.1) are accepted on input.
//!
//! Bodies sent by clients (heartbeats, lock requests) are parsed leniently: every field has a
//! default, `null` reads as the default, unknown keys are ignored and enum-like strings keep
//! unknown values ([`ConsumeType::Other`] …), because ali-ons sends plain `JSON.stringify`
//! output and Java sends fastjson output.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::marker::PhantomData;

use bytes::Bytes;
use serde::de::{DeserializeOwned, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use super::command::SerializeType;
use crate::route::{from_json_lenient, DataVersion, MessageQueue, TopicConfig};

/// Error encoding or decoding a structured body.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The JSON text is not the expected body.
    #[error("invalid JSON body: {0}")]
    Json(#[from] serde_json::Error),
    /// The value could not be written as MessagePack.
    #[error("cannot encode MessagePack body: {0}")]
    MsgPackEncode(#[from] rmp_serde::encode::Error),
    /// The MessagePack bytes are not the expected body.
    #[error("invalid MessagePack body: {0}")]
    MsgPackDecode(#[from] rmp_serde::decode::Error),
}

/// Marks a string-encoded [`MessageQueue`] map key during JSON encoding; [`encode_body`]
/// replaces every such key by the raw object. U+0000 cannot occur in topic or broker names.
const MQ_KEY_SENTINEL: &str = "\u{0}tern-mq-key:";
/// The sentinel as `serde_json` escapes it inside a string literal.
const MQ_KEY_SENTINEL_ESCAPED: &str = "\\u0000tern-mq-key:";

/// Encodes `value` as a body in serialize type `ser`: compact JSON for
/// [`SerializeType::Json`] and [`SerializeType::RocketMq`], MessagePack with named fields
/// (`rmp_serde::to_vec_named`) for [`SerializeType::MsgPack`]. [`MqMap`] fields come out in
/// fastjson's object-key shape in JSON.
///
/// # Errors
/// [`BodyError`] if the value cannot be serialized (e.g. a map with non-string keys in JSON).
pub fn encode_body<T: Serialize>(value: &T, ser: SerializeType) -> Result<Bytes, BodyError> {
    match ser {
        SerializeType::Json | SerializeType::RocketMq => {
            let json = serde_json::to_string(value)?;
            if !json.contains(MQ_KEY_SENTINEL_ESCAPED) {
                return Ok(Bytes::from(json));
            }
            Ok(Bytes::from(unquote_mq_keys(&json)?))
        }
        SerializeType::MsgPack => Ok(Bytes::from(rmp_serde::to_vec_named(value)?)),
    }
}

/// Decodes a body of serialize type `ser` (see [`encode_body`]). JSON input may use
/// fastjson's bare-integer and object map keys.
///
/// # Errors
/// [`BodyError::Json`] or [`BodyError::MsgPackDecode`] when the bytes are not a `T`.
pub fn decode_body<T: DeserializeOwned>(bytes: &[u8], ser: SerializeType) -> Result<T, BodyError> {
    match ser {
        SerializeType::Json | SerializeType::RocketMq => Ok(from_json_lenient(bytes)?),
        SerializeType::MsgPack => Ok(super::codec::msgpack_from_slice(bytes)?),
    }
}

/// Replaces every `"\u0000tern-mq-key:{...}"` string key in `json` by its raw object text.
fn unquote_mq_keys(json: &str) -> Result<String, serde_json::Error> {
    let prefix = format!("\"{MQ_KEY_SENTINEL_ESCAPED}");
    let mut out = String::with_capacity(json.len());
    let mut rest = json;
    while let Some(pos) = rest.find(&prefix) {
        out.push_str(&rest[..pos]);
        let lit = &rest[pos..];
        // Find the end of the string literal (an unescaped quote after the opening one).
        let bytes = lit.as_bytes();
        let mut i = 1;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 2,
                b'"' => break,
                _ => i += 1,
            }
        }
        let end = (i + 1).min(lit.len());
        let key: String = serde_json::from_str(&lit[..end])?;
        out.push_str(key.strip_prefix(MQ_KEY_SENTINEL).unwrap_or(&key));
        rest = &lit[end..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Deserializes `null` as `T::default()` (clients such as ali-ons may send explicit nulls).
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A `Map<MessageQueue, V>` body table: sorted by queue, written in fastjson's object-key
/// shape in JSON (through [`encode_body`]) and as a list of `[queue, value]` pairs in
/// MessagePack.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MqMap<V>(pub BTreeMap<MessageQueue, V>);

impl<V> MqMap<V> {
    /// An empty table.
    pub fn new() -> Self {
        MqMap(BTreeMap::new())
    }
}

impl<V> std::ops::Deref for MqMap<V> {
    type Target = BTreeMap<MessageQueue, V>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<V> std::ops::DerefMut for MqMap<V> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl<V> FromIterator<(MessageQueue, V)> for MqMap<V> {
    fn from_iter<I: IntoIterator<Item = (MessageQueue, V)>>(iter: I) -> Self {
        MqMap(iter.into_iter().collect())
    }
}

impl<V: Serialize> Serialize for MqMap<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeMap, SerializeSeq};
        if s.is_human_readable() {
            let mut map = s.serialize_map(Some(self.0.len()))?;
            for (mq, v) in &self.0 {
                let raw = serde_json::to_string(mq).map_err(S::Error::custom)?;
                map.serialize_entry(&format!("{MQ_KEY_SENTINEL}{raw}"), v)?;
            }
            map.end()
        } else {
            let mut seq = s.serialize_seq(Some(self.0.len()))?;
            for entry in &self.0 {
                seq.serialize_element(&entry)?;
            }
            seq.end()
        }
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for MqMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MqMapVisitor<V>(PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for MqMapVisitor<V> {
            type Value = MqMap<V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map keyed by MessageQueue objects or a list of pairs")
            }

            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(MqMap::new())
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                use serde::de::Error;
                let mut out = BTreeMap::new();
                while let Some((key, value)) = access.next_entry::<String, V>()? {
                    let raw = key.strip_prefix(MQ_KEY_SENTINEL).unwrap_or(&key);
                    let mq: MessageQueue = serde_json::from_str(raw).map_err(|e| {
                        A::Error::custom(format_args!("map key is not a MessageQueue: {e}"))
                    })?;
                    out.insert(mq, value);
                }
                Ok(MqMap(out))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((mq, value)) = access.next_element::<(MessageQueue, V)>()? {
                    out.insert(mq, value);
                }
                Ok(MqMap(out))
            }
        }

        d.deserialize_any(MqMapVisitor(PhantomData))
    }
}

/// Declares a string-valued enum that keeps unknown names (`Other(String)`), serialized as
/// its RocketMQ name.
macro_rules! lenient_string_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $wire:literal ),+ $(,)? }
        default $default:ident
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[allow(missing_docs)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A name this version does not know, kept verbatim.
            Other(String),
        }

        impl $name {
            /// RocketMQ's name for this value.
            pub fn as_str(&self) -> &str {
                match self {
                    $( $name::$variant => $wire, )+
                    $name::Other(s) => s.as_str(),
                }
            }
        }

        impl Default for $name {
            fn default() -> Self {
                $name::$default
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s {
                    $( $wire => $name::$variant, )+
                    other => $name::Other(other.to_string()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = Option::<String>::deserialize(d)?;
                Ok(s.map(|s| $name::from(s.as_str())).unwrap_or_default())
            }
        }
    };
}

lenient_string_enum! {
    /// How a consumer group consumes (`ConsumeType.java`).
    pub enum ConsumeType {
        /// Pull and lite pull consumers.
        Actively => "CONSUME_ACTIVELY",
        /// Push consumers.
        Passively => "CONSUME_PASSIVELY",
        /// 5.x pop consumers.
        Pop => "CONSUME_POP",
    }
    default Passively
}

lenient_string_enum! {
    /// Whether every consumer of a group gets every message (`MessageModel.java`).
    pub enum MessageModel {
        /// Each consumer of the group gets every message.
        Broadcasting => "BROADCASTING",
        /// Queues are shared out among the group (the default).
        Clustering => "CLUSTERING",
    }
    default Clustering
}

lenient_string_enum! {
    /// Where a new consumer group starts (`ConsumeFromWhere.java`), including the deprecated
    /// names; unknown names are kept.
    pub enum ConsumeFromWhere {
        LastOffset => "CONSUME_FROM_LAST_OFFSET",
        FirstOffset => "CONSUME_FROM_FIRST_OFFSET",
        Timestamp => "CONSUME_FROM_TIMESTAMP",
        LastOffsetAndFromMinWhenBootFirst => "CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST",
        MinOffset => "CONSUME_FROM_MIN_OFFSET",
        MaxOffset => "CONSUME_FROM_MAX_OFFSET",
    }
    default LastOffset
}

/// A string → string table (`KVTable.java`): KV namespaces, broker runtime info.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct KVTable {
    /// The entries, sorted by key.
    #[serde(deserialize_with = "null_default")]
    pub table: BTreeMap<String, String>,
}

/// One producer group of a heartbeat (`ProducerData.java`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProducerData {
    /// Producer group name.
    #[serde(deserialize_with = "null_default")]
    pub group_name: String,
}

/// One topic subscription of a consumer group (`SubscriptionData.java`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionData {
    /// Legacy class-filter mode; always false.
    #[serde(deserialize_with = "null_default")]
    pub class_filter_mode: bool,
    /// Java `String.hashCode` of each tag.
    #[serde(deserialize_with = "null_default")]
    pub code_set: BTreeSet<i32>,
    /// `TAG` (default) or `SQL92`.
    #[serde(deserialize_with = "null_default")]
    pub expression_type: String,
    /// The subscription expression (`*`, `a || b`, or SQL92).
    #[serde(deserialize_with = "null_default")]
    pub sub_string: String,
    /// When the subscription was built, ms; newer wins at the broker.
    #[serde(deserialize_with = "null_default")]
    pub sub_version: i64,
    /// The tags of a TAG expression.
    #[serde(deserialize_with = "null_default")]
    pub tags_set: BTreeSet<String>,
    /// Subscribed topic.
    #[serde(deserialize_with = "null_default")]
    pub topic: String,
}

/// One consumer group of a heartbeat (`ConsumerData.java`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerData {
    /// Where the group starts.
    pub consume_from_where: ConsumeFromWhere,
    /// Push, pull or pop.
    pub consume_type: ConsumeType,
    /// Consumer group name.
    #[serde(deserialize_with = "null_default")]
    pub group_name: String,
    /// Clustering or broadcasting.
    pub message_model: MessageModel,
    /// The group's subscriptions.
    #[serde(deserialize_with = "null_default")]
    pub subscription_data_set: Vec<SubscriptionData>,
    /// Unit mode (ignored).
    #[serde(deserialize_with = "null_default")]
    pub unit_mode: bool,
}

/// The body of HEART_BEAT (`HeartbeatData.java`, PROTOCOL.md §2.3).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HeartbeatData {
    /// `clientIP@instanceName[@unitName]`, an opaque id.
    #[serde(rename = "clientID", deserialize_with = "null_default")]
    pub client_id: String,
    /// Consumer groups of this client.
    #[serde(deserialize_with = "null_default")]
    pub consumer_data_set: Vec<ConsumerData>,
    /// 5.x heartbeat-V2 fingerprint (0 = V1).
    #[serde(deserialize_with = "null_default")]
    pub heartbeat_fingerprint: i32,
    /// Producer groups of this client.
    #[serde(deserialize_with = "null_default")]
    pub producer_data_set: Vec<ProducerData>,
    /// 5.x heartbeat-V2: subscriptions left out because unchanged.
    #[serde(deserialize_with = "null_default")]
    pub without_sub: bool,
}

/// The body of a GET_CONSUMER_LIST_BY_GROUP response (`GetConsumerListByGroupResponseBody`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerListBody {
    /// Client ids of the group's live consumers.
    #[serde(deserialize_with = "null_default")]
    pub consumer_id_list: Vec<String>,
}

/// The body of LOCK_BATCH_MQ (`LockBatchRequestBody.java`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LockBatchRequestBody {
    /// Client asking for the locks.
    #[serde(deserialize_with = "null_default")]
    pub client_id: String,
    /// Consumer group.
    #[serde(deserialize_with = "null_default")]
    pub consumer_group: String,
    /// The queues to lock.
    #[serde(deserialize_with = "null_default")]
    pub mq_set: BTreeSet<MessageQueue>,
    /// Lock only on this broker (no forwarding).
    #[serde(deserialize_with = "null_default")]
    pub only_this_broker: bool,
}

/// The body of a LOCK_BATCH_MQ response (`LockBatchResponseBody.java`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LockBatchResponseBody {
    /// The queues now locked by the requesting client.
    #[serde(rename = "lockOKMQSet", deserialize_with = "null_default")]
    pub lock_ok_mq_set: BTreeSet<MessageQueue>,
}

/// The body of UNLOCK_BATCH_MQ (`UnlockBatchRequestBody.java`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UnlockBatchRequestBody {
    /// Client releasing the locks.
    #[serde(deserialize_with = "null_default")]
    pub client_id: String,
    /// Consumer group.
    #[serde(deserialize_with = "null_default")]
    pub consumer_group: String,
    /// The queues to unlock.
    #[serde(deserialize_with = "null_default")]
    pub mq_set: BTreeSet<MessageQueue>,
    /// Unlock only on this broker.
    #[serde(deserialize_with = "null_default")]
    pub only_this_broker: bool,
}

/// One client connection as admin tools see it (`Connection.java` in `RP/body`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Connection {
    /// Remote `ip:port`.
    #[serde(deserialize_with = "null_default")]
    pub client_addr: String,
    /// The client id from its heartbeat.
    #[serde(deserialize_with = "null_default")]
    pub client_id: String,
    /// Language name (`JAVA`, `GO`, …).
    #[serde(deserialize_with = "null_default")]
    pub language: String,
    /// The client's `MQVersion` ordinal.
    #[serde(deserialize_with = "null_default")]
    pub version: i32,
}

/// The body of GET_CONSUMER_CONNECTION_LIST (`ConsumerConnection.java`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerConnection {
    /// The group's live connections.
    #[serde(deserialize_with = "null_default")]
    pub connection_set: Vec<Connection>,
    /// Where the group starts.
    pub consume_from_where: ConsumeFromWhere,
    /// Push, pull or pop.
    pub consume_type: ConsumeType,
    /// Clustering or broadcasting.
    pub message_model: MessageModel,
    /// Topic → subscription.
    #[serde(deserialize_with = "null_default")]
    pub subscription_table: BTreeMap<String, SubscriptionData>,
}

/// The body of GET_PRODUCER_CONNECTION_LIST (`ProducerConnection.java`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProducerConnection {
    /// The group's live connections.
    #[serde(deserialize_with = "null_default")]
    pub connection_set: Vec<Connection>,
}

/// Offsets of one queue for one consumer group (`OffsetWrapper.java`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OffsetWrapper {
    /// The queue's max offset on the broker.
    pub broker_offset: i64,
    /// The group's committed offset.
    pub consumer_offset: i64,
    /// Store time of the last consumed message, ms.
    pub last_timestamp: i64,
    /// 5.x: the offset of the group's latest pull.
    pub pull_offset: i64,
}

/// The body of GET_CONSUME_STATS (`ConsumeStats.java`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumeStats {
    /// Consume rate, messages per second.
    pub consume_tps: f64,
    /// Queue → offsets.
    pub offset_table: MqMap<OffsetWrapper>,
}

/// Min/max offsets of one queue (`TopicOffset.java`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicOffset {
    /// Store time of the last message, ms (0 if none).
    pub last_update_timestamp: i64,
    /// Next offset to be written.
    pub max_offset: i64,
    /// Smallest offset still stored.
    pub min_offset: i64,
}

/// The body of GET_TOPIC_STATS_INFO (`TopicStatsTable.java`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicStatsTable {
    /// Queue → offsets.
    pub offset_table: MqMap<TopicOffset>,
    /// 5.x: put rate, messages per second.
    pub topic_put_tps: f64,
}

/// The body of INVOKE_BROKER_TO_RESET_OFFSET responses and RESET_CONSUMER_CLIENT_OFFSET
/// requests (`ResetOffsetBody.java`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ResetOffsetBody {
    /// Queue → new consumer offset.
    pub offset_table: MqMap<i64>,
}

/// The body of GET_ALL_TOPIC_CONFIG (`TopicConfigAndMappingSerializeWrapper.java`). The 5.x
/// static-topic mapping tables are carried opaquely and emitted as `{}` when empty.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicConfigAndMappingSerializeWrapper {
    /// The broker's data version.
    pub data_version: DataVersion,
    /// 5.x mapping data version.
    pub mapping_data_version: DataVersion,
    /// Topic name → config.
    pub topic_config_table: BTreeMap<String, TopicConfig>,
    /// 5.x static-topic mapping details (opaque).
    pub topic_queue_mapping_detail_map: BTreeMap<String, serde_json::Value>,
    /// 5.x static-topic mapping info (opaque).
    pub topic_queue_mapping_info_map: BTreeMap<String, serde_json::Value>,
}

/// A consumer group's configuration (`SubscriptionGroupConfig.java`); defaults are RocketMQ's
/// (PROTOCOL.md §2.5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionGroupConfig {
    /// 5.x attributes.
    pub attributes: BTreeMap<String, String>,
    /// Broker id to consume from (0 = master).
    pub broker_id: i64,
    /// Broadcasting consumption allowed (default true).
    pub consume_broadcast_enable: bool,
    /// Consumption allowed at all (default true).
    pub consume_enable: bool,
    /// Start from the min offset for a new group (default true).
    pub consume_from_min_enable: bool,
    /// Orderly consumption (default false).
    pub consume_message_orderly: bool,
    /// Consume timeout, minutes (default 15).
    pub consume_timeout_minute: i32,
    /// Group name.
    pub group_name: String,
    /// Group sys flag bits (default 0).
    pub group_sys_flag: i32,
    /// Notify consumers on membership change (default true).
    pub notify_consumer_ids_changed_enable: bool,
    /// Max redeliveries before the dead-letter queue (default 16).
    pub retry_max_times: i32,
    /// Queues of the `%RETRY%` topic (default 1).
    pub retry_queue_nums: i32,
    /// Slave to read from when consumption is slow (default 1).
    pub which_broker_when_consume_slowly: i64,
}

impl Default for SubscriptionGroupConfig {
    fn default() -> Self {
        SubscriptionGroupConfig {
            attributes: BTreeMap::new(),
            broker_id: 0,
            consume_broadcast_enable: true,
            consume_enable: true,
            consume_from_min_enable: true,
            consume_message_orderly: false,
            consume_timeout_minute: 15,
            group_name: String::new(),
            group_sys_flag: 0,
            notify_consumer_ids_changed_enable: true,
            retry_max_times: 16,
            retry_queue_nums: 1,
            which_broker_when_consume_slowly: 1,
        }
    }
}

impl SubscriptionGroupConfig {
    /// A group with RocketMQ's defaults.
    pub fn new(group_name: impl Into<String>) -> Self {
        SubscriptionGroupConfig {
            group_name: group_name.into(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEARTBEAT_GOLDEN: &str = concat!(
        r#"{"clientID":"10.0.0.9@12345#987654321","#,
        r#""consumerDataSet":[{"consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","#,
        r#""consumeType":"CONSUME_PASSIVELY","groupName":"cg1","messageModel":"CLUSTERING","#,
        r#""subscriptionDataSet":[{"classFilterMode":false,"codeSet":[],"expressionType":"TAG","#,
        r#""subString":"*","subVersion":1700000000123,"tagsSet":[],"topic":"TopicA"},"#,
        r#"{"classFilterMode":false,"codeSet":[],"expressionType":"TAG","subString":"*","#,
        r#""subVersion":1700000000124,"tagsSet":[],"topic":"%RETRY%cg1"}],"unitMode":false}],"#,
        r#""heartbeatFingerprint":0,"#,
        r#""producerDataSet":[{"groupName":"CLIENT_INNER_PRODUCER"},{"groupName":"pg1"}],"#,
        r#""withoutSub":false}"#
    );

    #[test]
    fn heartbeat_golden_parses_and_reencodes_identically() {
        let hb: HeartbeatData =
            decode_body(HEARTBEAT_GOLDEN.as_bytes(), SerializeType::Json).unwrap();
        assert_eq!(hb.client_id, "10.0.0.9@12345#987654321");
        assert_eq!(hb.producer_data_set.len(), 2);
        let c = &hb.consumer_data_set[0];
        assert_eq!(c.consume_type, ConsumeType::Passively);
        assert_eq!(c.message_model, MessageModel::Clustering);
        assert_eq!(c.consume_from_where, ConsumeFromWhere::LastOffset);
        assert_eq!(c.subscription_data_set[1].topic, "%RETRY%cg1");
        assert_eq!(c.subscription_data_set[0].sub_version, 1_700_000_000_123);
        let out = encode_body(&hb, SerializeType::Json).unwrap();
        assert_eq!(std::str::from_utf8(&out).unwrap(), HEARTBEAT_GOLDEN);
    }

    #[test]
    fn heartbeat_is_lenient_about_nulls_missing_fields_and_unknown_names() {
        let ali = concat!(
            r#"{"clientID":"c1","producerDataSet":null,"consumerDataSet":[{"groupName":"g","#,
            r#""consumeType":"CONSUME_SOMEHOW","messageModel":null,"consumeFromWhere":"FROM_MARS","#,
            r#""subscriptionDataSet":[{"topic":"T","subString":"a||b","tagsSet":["a","b"],"#,
            r#""codeSet":[97,98],"extra":1}],"futureField":{"x":[1]}}]}"#
        );
        let hb: HeartbeatData = decode_body(ali.as_bytes(), SerializeType::Json).unwrap();
        assert!(hb.producer_data_set.is_empty());
        let c = &hb.consumer_data_set[0];
        assert_eq!(c.consume_type, ConsumeType::Other("CONSUME_SOMEHOW".into()));
        assert_eq!(c.message_model, MessageModel::Clustering);
        assert_eq!(c.consume_from_where.as_str(), "FROM_MARS");
        assert_eq!(c.subscription_data_set[0].code_set.len(), 2);
        assert_eq!(c.subscription_data_set[0].expression_type, "");
    }

    #[test]
    fn heartbeat_round_trips_through_messagepack() {
        let hb: HeartbeatData =
            decode_body(HEARTBEAT_GOLDEN.as_bytes(), SerializeType::Json).unwrap();
        let bytes = encode_body(&hb, SerializeType::MsgPack).unwrap();
        let back: HeartbeatData = decode_body(&bytes, SerializeType::MsgPack).unwrap();
        assert_eq!(back, hb);
    }

    fn mq(topic: &str, broker: &str, id: i32) -> MessageQueue {
        MessageQueue::new(topic, broker, id)
    }

    #[test]
    fn reset_offset_body_uses_fastjson_object_keys() {
        let body = ResetOffsetBody {
            offset_table: [(mq("T", "b", 0), 123), (mq("T", "b", 1), 7)]
                .into_iter()
                .collect(),
        };
        let json = encode_body(&body, SerializeType::Json).unwrap();
        assert_eq!(
            std::str::from_utf8(&json).unwrap(),
            concat!(
                r#"{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:123,"#,
                r#"{"brokerName":"b","queueId":1,"topic":"T"}:7}}"#
            )
        );
        let back: ResetOffsetBody = decode_body(&json, SerializeType::Json).unwrap();
        assert_eq!(back, body);
    }

    #[test]
    fn mq_map_parses_protocol_example_and_string_keys() {
        let golden = r#"{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:123}}"#;
        let body: ResetOffsetBody = decode_body(golden.as_bytes(), SerializeType::Json).unwrap();
        assert_eq!(body.offset_table.get(&mq("T", "b", 0)), Some(&123));
        let stringy =
            r#"{"offsetTable":{"{\"brokerName\":\"b\",\"queueId\":2,\"topic\":\"T\"}":5}}"#;
        let body: ResetOffsetBody = decode_body(stringy.as_bytes(), SerializeType::Json).unwrap();
        assert_eq!(body.offset_table.get(&mq("T", "b", 2)), Some(&5));
        let bad = r#"{"offsetTable":{"notamq":5}}"#;
        assert!(decode_body::<ResetOffsetBody>(bad.as_bytes(), SerializeType::Json).is_err());
    }

    #[test]
    fn consume_stats_json_and_messagepack_round_trip() {
        let mut stats = ConsumeStats {
            consume_tps: 1.5,
            ..Default::default()
        };
        stats.offset_table.insert(
            mq("Top\"ic{", "broker-a", 3),
            OffsetWrapper {
                broker_offset: 10,
                consumer_offset: 8,
                last_timestamp: 99,
                pull_offset: 9,
            },
        );
        let json = encode_body(&stats, SerializeType::Json).unwrap();
        let text = std::str::from_utf8(&json).unwrap();
        assert!(text.starts_with(r#"{"consumeTps":1.5,"offsetTable":{{"brokerName":"broker-a""#));
        assert!(text.contains(r#""topic":"Top\"ic{"}:{"brokerOffset":10"#));
        assert_eq!(
            decode_body::<ConsumeStats>(&json, SerializeType::Json).unwrap(),
            stats
        );
        let mp = encode_body(&stats, SerializeType::MsgPack).unwrap();
        assert_eq!(
            decode_body::<ConsumeStats>(&mp, SerializeType::MsgPack).unwrap(),
            stats
        );
    }

    #[test]
    fn topic_stats_table_parses_java_shape() {
        let java = concat!(
            r#"{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:"#,
            r#"{"lastUpdateTimestamp":5,"maxOffset":10,"minOffset":0}},"topicPutTps":0.0}"#
        );
        let t: TopicStatsTable = decode_body(java.as_bytes(), SerializeType::Json).unwrap();
        assert_eq!(t.offset_table[&mq("T", "b", 0)].max_offset, 10);
        let again = encode_body(&t, SerializeType::Json).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&crate::route::quote_nonstandard_keys(
                std::str::from_utf8(&again).unwrap()
            ))
            .unwrap(),
            serde_json::from_str::<serde_json::Value>(&crate::route::quote_nonstandard_keys(java))
                .unwrap()
        );
    }

    #[test]
    fn lock_bodies_match_protocol_example() {
        let golden = concat!(
            r#"{"clientId":"10.0.0.9@12345#987654321","consumerGroup":"cg1","#,
            r#""mqSet":[{"brokerName":"broker-a","queueId":0,"topic":"T"}],"onlyThisBroker":false}"#
        );
        let req: LockBatchRequestBody =
            decode_body(golden.as_bytes(), SerializeType::Json).unwrap();
        assert_eq!(req.mq_set.len(), 1);
        assert_eq!(
            encode_body(&req, SerializeType::Json).unwrap(),
            golden.as_bytes()
        );
        let resp = LockBatchResponseBody {
            lock_ok_mq_set: req.mq_set.clone(),
        };
        let json = encode_body(&resp, SerializeType::Json).unwrap();
        assert!(std::str::from_utf8(&json)
            .unwrap()
            .starts_with(r#"{"lockOKMQSet":[{"#));
        let unlock: UnlockBatchRequestBody =
            decode_body(golden.as_bytes(), SerializeType::Json).unwrap();
        assert_eq!(unlock.consumer_group, "cg1");
    }

    #[test]
    fn simple_bodies_have_java_names() {
        let list = ConsumerListBody {
            consumer_id_list: vec!["a".into()],
        };
        assert_eq!(
            encode_body(&list, SerializeType::Json).unwrap(),
            &br#"{"consumerIdList":["a"]}"#[..]
        );
        let mut kv = KVTable::default();
        kv.table.insert("k".into(), "v".into());
        assert_eq!(
            encode_body(&kv, SerializeType::Json).unwrap(),
            &br#"{"table":{"k":"v"}}"#[..]
        );
        let cc = ConsumerConnection {
            connection_set: vec![Connection {
                client_addr: "1.2.3.4:5".into(),
                client_id: "c".into(),
                language: "JAVA".into(),
                version: 479,
            }],
            ..Default::default()
        };
        let text =
            String::from_utf8(encode_body(&cc, SerializeType::Json).unwrap().to_vec()).unwrap();
        assert!(text.contains(r#""connectionSet":[{"clientAddr":"1.2.3.4:5","clientId":"c","language":"JAVA","version":479}]"#));
        assert!(text.contains(r#""consumeType":"CONSUME_PASSIVELY""#));
        assert!(text.contains(r#""messageModel":"CLUSTERING""#));
    }

    #[test]
    fn subscription_group_config_defaults_match_rocketmq() {
        let c: SubscriptionGroupConfig =
            decode_body(br#"{"groupName":"g"}"#, SerializeType::Json).unwrap();
        assert_eq!(c, SubscriptionGroupConfig::new("g"));
        assert!(c.consume_enable && c.consume_from_min_enable && c.consume_broadcast_enable);
        assert!(!c.consume_message_orderly);
        assert_eq!((c.retry_queue_nums, c.retry_max_times), (1, 16));
        assert_eq!((c.broker_id, c.which_broker_when_consume_slowly), (0, 1));
        assert!(c.notify_consumer_ids_changed_enable);
        assert_eq!((c.group_sys_flag, c.consume_timeout_minute), (0, 15));
    }

    #[test]
    fn all_topic_config_wrapper_round_trips() {
        let mut w = TopicConfigAndMappingSerializeWrapper::default();
        w.topic_config_table
            .insert("T".into(), TopicConfig::new("T", 4));
        w.data_version = DataVersion {
            counter: 3,
            state_version: 0,
            timestamp: 42,
        };
        let json = encode_body(&w, SerializeType::Json).unwrap();
        let text = std::str::from_utf8(&json).unwrap();
        assert!(text.contains(r#""topicQueueMappingInfoMap":{}"#));
        assert_eq!(
            decode_body::<TopicConfigAndMappingSerializeWrapper>(&json, SerializeType::Json)
                .unwrap(),
            w
        );
        let mp = encode_body(&w, SerializeType::MsgPack).unwrap();
        assert_eq!(
            decode_body::<TopicConfigAndMappingSerializeWrapper>(&mp, SerializeType::MsgPack)
                .unwrap(),
            w
        );
    }

    #[test]
    fn garbage_bodies_are_errors_not_panics() {
        for bytes in [
            &b""[..],
            b"{",
            b"\xff\xfe",
            b"[1,2",
            b"{{{{",
            b"{\"offsetTable\":{{",
        ] {
            assert!(decode_body::<ResetOffsetBody>(bytes, SerializeType::Json).is_err());
            assert!(decode_body::<HeartbeatData>(bytes, SerializeType::MsgPack).is_err());
        }
    }
}
