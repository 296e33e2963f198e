//! Broker request and response headers: producer (PROTOCOL.md §2.3), consumer (§2.4), admin
//! (§2.5), server → client (§2.6) and transactions (§5.3); Java
//! `remoting/protocol/header/*.java`.

use super::{CommandHeader, HeaderError, HeaderField};
use crate::command_header;
use crate::protocol::code::RequestCode;
use crate::protocol::command::ExtFields;

/// Value of `MSG_REGION` that Java brokers write on every send response.
pub const DEFAULT_MSG_REGION: &str = "DefaultRegion";

/// SEND_MESSAGE (10) / SEND_MESSAGE_V2 (310) / SEND_BATCH_MESSAGE (320) /
/// SEND_REPLY_MESSAGE (324, 325) request header (`SendMessageRequestHeader` and its
/// single-letter twin `SendMessageRequestHeaderV2`): one struct, two key styles.
///
/// [`CommandHeader`] uses the V1 keys (`producerGroup`, `topic`, …); [`Self::decode_v2`] /
/// [`Self::encode_v2`] use `a`..`n`; [`Self::decode_for_code`] picks the style a request
/// code implies and falls back to the other one, as lenient as clients require.
///
/// The string fields are `S`: `String` for a decoded header, `&str` for one a producer
/// encodes from values it already holds (no copy of its group, topic or broker name per send).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SendMessageRequestHeader<S = String> {
    /// Producer group (`producerGroup` / `a`).
    pub producer_group: S,
    /// Target topic (`topic` / `b`).
    pub topic: S,
    /// Template topic for auto-creation, normally `TBW102` (`defaultTopic` / `c`).
    pub default_topic: S,
    /// Queue count for auto-creation (`defaultTopicQueueNums` / `d`).
    pub default_topic_queue_nums: i32,
    /// Target queue; negative → the broker picks one (`queueId` / `e`).
    pub queue_id: i32,
    /// Message sysFlag as sent by the client (`sysFlag` / `f`).
    pub sys_flag: i32,
    /// Client wall clock in ms (`bornTimestamp` / `g`).
    pub born_timestamp: i64,
    /// User flag (`flag` / `h`).
    pub flag: i32,
    /// Property string, PROTOCOL.md §3.5 (`properties` / `i`).
    pub properties: Option<S>,
    /// Retry count when sending to a `%RETRY%` topic (`reconsumeTimes` / `j`).
    pub reconsume_times: Option<i32>,
    /// Unit mode, ignored (`unitMode` / `k`).
    pub unit_mode: Option<bool>,
    /// Max retries when sending to a `%RETRY%` topic (`maxReconsumeTimes` / `l`).
    pub max_reconsume_times: Option<i32>,
    /// Batch message (`batch` / `m`).
    pub batch: Option<bool>,
    /// Target broker name, 5.x (`bname` / `n`).
    pub broker_name: Option<S>,
}

/// Wire keys of [`SendMessageRequestHeader`] in field order: (V1, V2).
const SEND_KEYS: [(&str, &str); 14] = [
    ("producerGroup", "a"),
    ("topic", "b"),
    ("defaultTopic", "c"),
    ("defaultTopicQueueNums", "d"),
    ("queueId", "e"),
    ("sysFlag", "f"),
    ("bornTimestamp", "g"),
    ("flag", "h"),
    ("properties", "i"),
    ("reconsumeTimes", "j"),
    ("unitMode", "k"),
    ("maxReconsumeTimes", "l"),
    ("batch", "m"),
    ("bname", "n"),
];

impl<S: AsRef<str>> SendMessageRequestHeader<S> {
    fn encode_with(&self, ext: &mut ExtFields, v2: bool) {
        let k = |i: usize| if v2 { SEND_KEYS[i].1 } else { SEND_KEYS[i].0 };
        ext.put(k(0), self.producer_group.as_ref());
        ext.put(k(1), self.topic.as_ref());
        ext.put(k(2), self.default_topic.as_ref());
        self.default_topic_queue_nums.put(k(3), ext);
        self.queue_id.put(k(4), ext);
        self.sys_flag.put(k(5), ext);
        self.born_timestamp.put(k(6), ext);
        self.flag.put(k(7), ext);
        if let Some(properties) = &self.properties {
            ext.put(k(8), properties.as_ref());
        }
        self.reconsume_times.put(k(9), ext);
        self.unit_mode.put(k(10), ext);
        self.max_reconsume_times.put(k(11), ext);
        self.batch.put(k(12), ext);
        if let Some(broker_name) = &self.broker_name {
            ext.put(k(13), broker_name.as_ref());
        }
    }

    /// Writes the header with the single-letter V2 keys `a`..`n` (SEND_MESSAGE_V2 310,
    /// SEND_BATCH_MESSAGE 320, SEND_REPLY_MESSAGE_V2 325).
    pub fn encode_v2(&self, ext: &mut ExtFields) {
        self.encode_with(ext, true);
    }

    /// True if this send is a batch (`batch=true`), whatever the code.
    pub fn is_batch(&self) -> bool {
        self.batch.unwrap_or(false)
    }
}

impl SendMessageRequestHeader {
    /// Reads the header in one pass over `ext` (the V2 keys `a`..`n` are told apart by their
    /// one letter), rather than one lookup per field.
    fn decode_with(ext: &ExtFields, v2: bool) -> Result<Self, HeaderError> {
        let mut found: [Option<&str>; SEND_KEYS.len()] = [None; SEND_KEYS.len()];
        for (key, value) in ext {
            let slot = if v2 {
                match key.as_bytes() {
                    &[letter] => usize::from(letter.wrapping_sub(b'a')),
                    _ => continue,
                }
            } else {
                match SEND_KEYS.iter().position(|&(v1_key, _)| v1_key == key) {
                    Some(slot) => slot,
                    None => continue,
                }
            };
            if let Some(found) = found.get_mut(slot) {
                *found = Some(value);
            }
        }
        let k = |i: usize| if v2 { SEND_KEYS[i].1 } else { SEND_KEYS[i].0 };
        macro_rules! field {
            ($i:expr) => {
                HeaderField::from_text(k($i), found[$i])?
            };
        }
        Ok(SendMessageRequestHeader {
            producer_group: field!(0),
            topic: field!(1),
            default_topic: field!(2),
            default_topic_queue_nums: field!(3),
            queue_id: field!(4),
            sys_flag: field!(5),
            born_timestamp: field!(6),
            flag: field!(7),
            properties: field!(8),
            reconsume_times: field!(9),
            unit_mode: field!(10),
            max_reconsume_times: field!(11),
            batch: field!(12),
            broker_name: field!(13),
        })
    }

    /// Reads the header from the single-letter V2 keys `a`..`n`.
    ///
    /// # Errors
    /// [`HeaderError::Missing`] (naming the V2 key) or [`HeaderError::Invalid`].
    pub fn decode_v2(ext: &ExtFields) -> Result<Self, HeaderError> {
        Self::decode_with(ext, true)
    }

    /// True if `code` is one whose Java sender uses the V2 keys (310, 320, 325).
    pub fn code_uses_v2(code: i32) -> bool {
        code == RequestCode::SendMessageV2
            || code == RequestCode::SendBatchMessage
            || code == RequestCode::SendReplyMessageV2
    }

    /// Reads the header in the key style `code` implies (V2 for 310/320/325, V1 otherwise);
    /// if required fields are missing in that style, tries the other one (the Go client
    /// sends 320 with V2 keys, other clients mix).
    ///
    /// # Errors
    /// The error of the style `code` implies when neither style decodes.
    pub fn decode_for_code(code: i32, ext: &ExtFields) -> Result<Self, HeaderError> {
        let v2 = Self::code_uses_v2(code);
        match Self::decode_with(ext, v2) {
            Ok(header) => Ok(header),
            Err(first @ HeaderError::Missing { .. }) => {
                Self::decode_with(ext, !v2).map_err(|_| first)
            }
            Err(e) => Err(e),
        }
    }
}

impl CommandHeader for SendMessageRequestHeader {
    /// Writes the V1 keys.
    fn encode_ext(&self, ext: &mut ExtFields) {
        self.encode_with(ext, false);
    }

    /// Reads the V1 keys.
    fn decode_ext(ext: &ExtFields) -> Result<Self, HeaderError> {
        Self::decode_with(ext, false)
    }
}

command_header! {
    /// Response header of every send (codes 0/10/11/12 must carry it in full). Build it with
    /// [`SendMessageResponseHeader::new`], which adds `MSG_REGION` and `TRACE_ON` like Java
    /// brokers (the Java client dereferences `extFields` on every send response).
    pub struct SendMessageResponseHeader {
        /// Offset message id (comma-separated list for a batch), PROTOCOL.md §3.6.
        pub msg_id: String = "msgId",
        /// The queue actually used.
        pub queue_id: i32 = "queueId",
        /// Logical offset in that queue (first message's for a batch).
        pub queue_offset: i64 = "queueOffset",
        /// The message's UNIQ_KEY, for transactional sends.
        pub transaction_id: Option<String> = "transactionId",
        /// 5.x, inner-batch topics only.
        pub batch_uniq_id: Option<String> = "batchUniqId",
        /// 5.x, timer messages only.
        pub recall_handle: Option<String> = "recallHandle",
        /// Region id; Java brokers always write `DefaultRegion`.
        pub msg_region: Option<String> = "MSG_REGION",
        /// Trace switch; Java brokers always write `true`.
        pub trace_on: Option<bool> = "TRACE_ON",
    }
}

impl SendMessageResponseHeader {
    /// A complete response header with `MSG_REGION=DefaultRegion` and `TRACE_ON=true`.
    pub fn new(msg_id: impl Into<String>, queue_id: i32, queue_offset: i64) -> Self {
        SendMessageResponseHeader {
            msg_id: msg_id.into(),
            queue_id,
            queue_offset,
            msg_region: Some(DEFAULT_MSG_REGION.to_owned()),
            trace_on: Some(true),
            ..Default::default()
        }
    }

    /// Writes into `ext` exactly the fields that [`SendMessageResponseHeader::new`] with
    /// `transaction_id` set would, but straight from the values: the broker's per-send
    /// response, built without a `String` per field. `msg_id` is the `Display` of the id(s)
    /// (see [`crate::message::id::OffsetMsgIds`]).
    pub fn encode_stored(
        ext: &mut ExtFields,
        msg_id: impl std::fmt::Display,
        queue_id: i32,
        queue_offset: i64,
        transaction_id: Option<&str>,
    ) {
        ext.put_display("msgId", msg_id);
        ext.put_int("queueId", queue_id);
        ext.put_int("queueOffset", queue_offset);
        if let Some(transaction_id) = transaction_id {
            ext.put("transactionId", transaction_id);
        }
        ext.put("MSG_REGION", DEFAULT_MSG_REGION);
        ext.put("TRACE_ON", "true");
    }
}

command_header! {
    /// PULL_MESSAGE (11) / LITE_PULL_MESSAGE (361) request header.
    pub struct PullMessageRequestHeader {
        /// Consumer group.
        pub consumer_group: String = "consumerGroup",
        /// Topic (may be `%RETRY%<group>`).
        pub topic: String = "topic",
        /// Queue id.
        pub queue_id: i32 = "queueId",
        /// Logical offset to start from.
        pub queue_offset: i64 = "queueOffset",
        /// Max messages.
        pub max_msg_nums: i32 = "maxMsgNums",
        /// 0x1 COMMIT_OFFSET, 0x2 SUSPEND, 0x4 SUBSCRIPTION, 0x8 CLASS_FILTER, 0x10 LITE_PULL.
        pub sys_flag: i32 = "sysFlag",
        /// Consumer offset to store (valid with 0x1).
        pub commit_offset: i64 = "commitOffset",
        /// Long-poll hold time in ms.
        pub suspend_timeout_millis: i64 = "suspendTimeoutMillis",
        /// Subscription expression (with 0x4).
        pub subscription: Option<String> = "subscription",
        /// SubscriptionData.subVersion.
        pub sub_version: i64 = "subVersion",
        /// `TAG` (default) or `SQL92`.
        pub expression_type: Option<String> = "expressionType",
        /// 5.x byte limit.
        pub max_msg_bytes: Option<i32> = "maxMsgBytes",
        /// Proxy only.
        pub request_source: Option<i32> = "requestSource",
        /// Proxy only (Java's spelling).
        pub proxy_froward_client_id: Option<String> = "proxyFrowardClientId",
    }
}

command_header! {
    /// PULL_MESSAGE response header; the four required fields go on every code 0/19/20/21.
    pub struct PullMessageResponseHeader {
        /// 0 unless slave reads are enabled.
        pub suggest_which_broker_id: i64 = "suggestWhichBrokerId",
        /// Next offset to pull from.
        pub next_begin_offset: i64 = "nextBeginOffset",
        /// Queue min offset.
        pub min_offset: i64 = "minOffset",
        /// Queue max offset.
        pub max_offset: i64 = "maxOffset",
        /// Static topics only.
        pub offset_delta: Option<i64> = "offsetDelta",
        /// Topic sysFlag.
        pub topic_sys_flag: Option<i32> = "topicSysFlag",
        /// Group sysFlag.
        pub group_sys_flag: Option<i32> = "groupSysFlag",
        /// Forbidden type.
        pub forbidden_type: Option<i32> = "forbiddenType",
    }
}

command_header! {
    /// QUERY_CONSUMER_OFFSET (14) request header.
    pub struct QueryConsumerOffsetRequestHeader {
        /// Consumer group.
        pub consumer_group: String = "consumerGroup",
        /// Topic.
        pub topic: String = "topic",
        /// Queue id.
        pub queue_id: i32 = "queueId",
        /// 5.x: answer 0 instead of QUERY_NOT_FOUND when allowed.
        pub set_zero_if_not_found: Option<bool> = "setZeroIfNotFound",
    }
}

command_header! {
    /// QUERY_CONSUMER_OFFSET (14) response header.
    pub struct QueryConsumerOffsetResponseHeader {
        /// The stored offset.
        pub offset: i64 = "offset",
    }
}

command_header! {
    /// UPDATE_CONSUMER_OFFSET (15) request header (usually oneway).
    pub struct UpdateConsumerOffsetRequestHeader {
        /// Consumer group.
        pub consumer_group: String = "consumerGroup",
        /// Topic.
        pub topic: String = "topic",
        /// Queue id.
        pub queue_id: i32 = "queueId",
        /// Offset to store.
        pub commit_offset: i64 = "commitOffset",
    }
}

command_header! {
    /// GET_CONSUMER_LIST_BY_GROUP (38) request header.
    pub struct GetConsumerListByGroupRequestHeader {
        /// Consumer group.
        pub consumer_group: String = "consumerGroup",
    }
}

command_header! {
    /// UNREGISTER_CLIENT (35) request header.
    pub struct UnregisterClientRequestHeader {
        /// Client id (`clientIP@instanceName`).
        pub client_id: String = "clientID",
        /// Producer group to drop.
        pub producer_group: Option<String> = "producerGroup",
        /// Consumer group to drop.
        pub consumer_group: Option<String> = "consumerGroup",
    }
}

command_header! {
    /// CONSUMER_SEND_MSG_BACK (36) request header.
    pub struct ConsumerSendMsgBackRequestHeader {
        /// Commit-log offset of the consumed message.
        pub offset: i64 = "offset",
        /// Consumer group.
        pub group: String = "group",
        /// 0 = broker decides, -1 = DLQ now.
        pub delay_level: i32 = "delayLevel",
        /// Message id of the original message.
        pub origin_msg_id: Option<String> = "originMsgId",
        /// Original topic.
        pub origin_topic: Option<String> = "originTopic",
        /// Unit mode.
        pub unit_mode: Option<bool> = "unitMode",
        /// Max retries.
        pub max_reconsume_times: Option<i32> = "maxReconsumeTimes",
    }
}

command_header! {
    /// END_TRANSACTION (37) request header (oneway), PROTOCOL.md §5.3.
    pub struct EndTransactionRequestHeader {
        /// Must equal the half message's PGROUP.
        pub producer_group: String = "producerGroup",
        /// Half record's queue offset.
        pub tran_state_table_offset: i64 = "tranStateTableOffset",
        /// Half record's commit-log offset.
        pub commit_log_offset: i64 = "commitLogOffset",
        /// 0 = unknown, 8 = commit, 12 = rollback.
        pub commit_or_rollback: i32 = "commitOrRollback",
        /// True when answering a check-back.
        pub from_transaction_check: Option<bool> = "fromTransactionCheck",
        /// The UNIQ_KEY.
        pub msg_id: String = "msgId",
        /// Transaction id.
        pub transaction_id: Option<String> = "transactionId",
        /// Topic (5.x).
        pub topic: Option<String> = "topic",
        /// Broker name (5.x).
        pub broker_name: Option<String> = "bname",
    }
}

command_header! {
    /// CHECK_TRANSACTION_STATE (39) request header, broker → producer (oneway).
    pub struct CheckTransactionStateRequestHeader {
        /// Half topic name as stored.
        pub topic: Option<String> = "topic",
        /// Queue offset of the half copy.
        pub tran_state_table_offset: i64 = "tranStateTableOffset",
        /// Commit-log offset of the half copy.
        pub commit_log_offset: i64 = "commitLogOffset",
        /// UNIQ_KEY.
        pub msg_id: Option<String> = "msgId",
        /// Transaction id (= UNIQ_KEY).
        pub transaction_id: Option<String> = "transactionId",
        /// Offset message id of the copy.
        pub offset_msg_id: Option<String> = "offsetMsgId",
        /// Broker name.
        pub broker_name: Option<String> = "bname",
    }
}

command_header! {
    /// NOTIFY_CONSUMER_IDS_CHANGED (40) request header, broker → consumer (oneway).
    pub struct NotifyConsumerIdsChangedRequestHeader {
        /// Consumer group.
        pub consumer_group: String = "consumerGroup",
    }
}

command_header! {
    /// GET_MAX_OFFSET (30) request header.
    pub struct GetMaxOffsetRequestHeader {
        /// Topic.
        pub topic: String = "topic",
        /// Queue id.
        pub queue_id: i32 = "queueId",
        /// 5.x, default true.
        pub committed: Option<bool> = "committed",
    }
}

command_header! {
    /// GET_MAX_OFFSET (30) response header.
    pub struct GetMaxOffsetResponseHeader {
        /// Max offset (next offset to be written).
        pub offset: i64 = "offset",
    }
}

command_header! {
    /// GET_MIN_OFFSET (31) request header.
    pub struct GetMinOffsetRequestHeader {
        /// Topic.
        pub topic: String = "topic",
        /// Queue id.
        pub queue_id: i32 = "queueId",
    }
}

command_header! {
    /// GET_MIN_OFFSET (31) response header.
    pub struct GetMinOffsetResponseHeader {
        /// Min offset.
        pub offset: i64 = "offset",
    }
}

command_header! {
    /// SEARCH_OFFSET_BY_TIMESTAMP (29) request header.
    pub struct SearchOffsetRequestHeader {
        /// Topic.
        pub topic: String = "topic",
        /// Queue id.
        pub queue_id: i32 = "queueId",
        /// Store time in ms.
        pub timestamp: i64 = "timestamp",
        /// `LOWER` (default) or `UPPER`, case-insensitive.
        pub boundary_type: Option<String> = "boundaryType",
    }
}

command_header! {
    /// SEARCH_OFFSET_BY_TIMESTAMP (29) response header.
    pub struct SearchOffsetResponseHeader {
        /// The found offset.
        pub offset: i64 = "offset",
    }
}

command_header! {
    /// GET_EARLIEST_MSG_STORETIME (32) request header.
    pub struct GetEarliestMsgStoretimeRequestHeader {
        /// Topic.
        pub topic: String = "topic",
        /// Queue id.
        pub queue_id: i32 = "queueId",
    }
}

command_header! {
    /// GET_EARLIEST_MSG_STORETIME (32) response header.
    pub struct GetEarliestMsgStoretimeResponseHeader {
        /// Store time of the first message, ms.
        pub timestamp: i64 = "timestamp",
    }
}

command_header! {
    /// QUERY_MESSAGE (12) request header.
    pub struct QueryMessageRequestHeader {
        /// Topic.
        pub topic: String = "topic",
        /// Key (a UNIQ_KEY when `_UNIQUE_KEY_QUERY=true`).
        pub key: String = "key",
        /// Max results.
        pub max_num: i32 = "maxNum",
        /// Start of the store-time window, ms.
        pub begin_timestamp: i64 = "beginTimestamp",
        /// End of the store-time window, ms.
        pub end_timestamp: i64 = "endTimestamp",
        /// Extra extField: the key is a UNIQ_KEY (maxNum capped at 32, else 64).
        pub unique_key_query: Option<bool> = "_UNIQUE_KEY_QUERY",
    }
}

command_header! {
    /// QUERY_MESSAGE (12) response header.
    pub struct QueryMessageResponseHeader {
        /// Index last update time, ms.
        pub index_last_update_timestamp: i64 = "indexLastUpdateTimestamp",
        /// Index last update commit-log offset.
        pub index_last_update_phyoffset: i64 = "indexLastUpdatePhyoffset",
    }
}

command_header! {
    /// VIEW_MESSAGE_BY_ID (33) request header.
    pub struct ViewMessageByIdRequestHeader {
        /// Commit-log offset decoded from an offset msgId.
        pub offset: i64 = "offset",
        /// Topic.
        pub topic: Option<String> = "topic",
    }
}

command_header! {
    /// UPDATE_AND_CREATE_TOPIC (17) request header.
    pub struct CreateTopicRequestHeader {
        /// Topic.
        pub topic: String = "topic",
        /// Template topic.
        pub default_topic: String = "defaultTopic",
        /// Read queue count.
        pub read_queue_nums: i32 = "readQueueNums",
        /// Write queue count.
        pub write_queue_nums: i32 = "writeQueueNums",
        /// Permission bits.
        pub perm: i32 = "perm",
        /// `SINGLE_TAG` / `MULTI_TAG`.
        pub topic_filter_type: String = "topicFilterType",
        /// Topic sysFlag.
        pub topic_sys_flag: Option<i32> = "topicSysFlag",
        /// Ordered topic (normally `false`).
        pub order: bool = "order",
        /// 5.x attributes, e.g. `+message.type=NORMAL`.
        pub attributes: Option<String> = "attributes",
        /// Force.
        pub force: Option<bool> = "force",
    }
}

command_header! {
    /// DELETE_TOPIC_IN_BROKER (215) request header.
    pub struct DeleteTopicRequestHeader {
        /// Topic.
        pub topic: String = "topic",
    }
}

command_header! {
    /// GET_TOPIC_CONFIG (351, 5.x) request header.
    pub struct GetTopicConfigRequestHeader {
        /// Topic.
        pub topic: String = "topic",
    }
}

command_header! {
    /// GET_ALL_TOPIC_CONFIG (21) request header (all optional, 5.x paging).
    pub struct GetAllTopicConfigRequestHeader {
        /// Paging sequence.
        pub topic_seq: Option<i32> = "topicSeq",
        /// DataVersion JSON text.
        pub data_version: Option<String> = "dataVersion",
        /// Page size.
        pub max_topic_num: Option<i32> = "maxTopicNum",
    }
}

command_header! {
    /// GET_ALL_TOPIC_CONFIG (21) response header.
    pub struct GetAllTopicConfigResponseHeader {
        /// 5.x total topic count.
        pub total_topic_num: Option<i32> = "totalTopicNum",
    }
}

command_header! {
    /// GET_BROKER_CONFIG (26) response header.
    pub struct GetBrokerConfigResponseHeader {
        /// DataVersion JSON text.
        pub version: String = "version",
    }
}

command_header! {
    /// GET_CONSUME_STATS (208) request header.
    pub struct GetConsumeStatsRequestHeader {
        /// Consumer group.
        pub consumer_group: String = "consumerGroup",
        /// Topic filter.
        pub topic: Option<String> = "topic",
        /// 5.x topic list, as sent.
        pub topic_list: Option<String> = "topicList",
    }
}

command_header! {
    /// GET_TOPIC_STATS_INFO (202) request header.
    pub struct GetTopicStatsInfoRequestHeader {
        /// Topic.
        pub topic: String = "topic",
    }
}

command_header! {
    /// GET_CONSUMER_CONNECTION_LIST (203) request header.
    pub struct GetConsumerConnectionListRequestHeader {
        /// Consumer group.
        pub consumer_group: String = "consumerGroup",
    }
}

command_header! {
    /// GET_PRODUCER_CONNECTION_LIST (204) request header.
    pub struct GetProducerConnectionListRequestHeader {
        /// Producer group.
        pub producer_group: String = "producerGroup",
    }
}

command_header! {
    /// DELETE_SUBSCRIPTIONGROUP (207) request header.
    pub struct DeleteSubscriptionGroupRequestHeader {
        /// Group name.
        pub group_name: String = "groupName",
        /// Also drop the group's offsets.
        pub clean_offset: Option<bool> = "cleanOffset",
    }
}

command_header! {
    /// INVOKE_BROKER_TO_RESET_OFFSET (222) request header (admin → broker).
    pub struct ResetOffsetRequestHeader {
        /// Consumer group.
        pub group: String = "group",
        /// Topic.
        pub topic: String = "topic",
        /// Queue id; absent or -1 = all queues.
        pub queue_id: Option<i32> = "queueId",
        /// Target offset; absent or -1 = by timestamp.
        pub offset: Option<i64> = "offset",
        /// Target store time, ms.
        pub timestamp: i64 = "timestamp",
        /// Reset even if the target is ahead of the current offset.
        pub is_force: bool = "isForce",
    }
}

command_header! {
    /// RESET_CONSUMER_CLIENT_OFFSET (220) request header (broker → consumer, oneway); body
    /// ResetOffsetBody.
    pub struct ResetConsumerClientOffsetRequestHeader {
        /// Topic.
        pub topic: String = "topic",
        /// Consumer group.
        pub group: String = "group",
        /// Target store time, ms.
        pub timestamp: i64 = "timestamp",
        /// Force.
        pub is_force: bool = "isForce",
    }
}

command_header! {
    /// GET_CONSUMER_STATUS_FROM_CLIENT (221) request header (broker → consumer).
    pub struct GetConsumerStatusRequestHeader {
        /// Topic.
        pub topic: String = "topic",
        /// Consumer group.
        pub group: String = "group",
        /// Client address.
        pub client_addr: Option<String> = "clientAddr",
    }
}

command_header! {
    /// GET_CONSUMER_RUNNING_INFO (307) request header (admin → broker → consumer).
    pub struct GetConsumerRunningInfoRequestHeader {
        /// Consumer group.
        pub consumer_group: String = "consumerGroup",
        /// Client id.
        pub client_id: String = "clientId",
        /// Include a thread dump.
        pub jstack_enable: Option<bool> = "jstackEnable",
    }
}

command_header! {
    /// CONSUME_MESSAGE_DIRECTLY (309) request header (admin → broker → consumer).
    pub struct ConsumeMessageDirectlyResultRequestHeader {
        /// Consumer group.
        pub consumer_group: String = "consumerGroup",
        /// Client id.
        pub client_id: Option<String> = "clientId",
        /// Message id.
        pub msg_id: Option<String> = "msgId",
        /// Broker name.
        pub broker_name: Option<String> = "brokerName",
        /// Topic.
        pub topic: Option<String> = "topic",
        /// Topic sysFlag.
        pub topic_sys_flag: Option<i32> = "topicSysFlag",
        /// Group sysFlag.
        pub group_sys_flag: Option<i32> = "groupSysFlag",
    }
}

command_header! {
    /// PUSH_REPLY_MESSAGE_TO_CLIENT (326) request header (broker → requesting producer).
    pub struct ReplyMessageRequestHeader {
        /// Producer group.
        pub producer_group: String = "producerGroup",
        /// Topic.
        pub topic: String = "topic",
        /// Template topic.
        pub default_topic: String = "defaultTopic",
        /// Queue count for auto-creation.
        pub default_topic_queue_nums: i32 = "defaultTopicQueueNums",
        /// Queue id.
        pub queue_id: i32 = "queueId",
        /// Message sysFlag.
        pub sys_flag: i32 = "sysFlag",
        /// Born time, ms.
        pub born_timestamp: i64 = "bornTimestamp",
        /// User flag.
        pub flag: i32 = "flag",
        /// Property string.
        pub properties: Option<String> = "properties",
        /// Retry count.
        pub reconsume_times: Option<i32> = "reconsumeTimes",
        /// Unit mode.
        pub unit_mode: Option<bool> = "unitMode",
        /// Born host `ip:port`.
        pub born_host: String = "bornHost",
        /// Store host `ip:port`.
        pub store_host: String = "storeHost",
        /// Store time, ms.
        pub store_timestamp: i64 = "storeTimestamp",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_send_keys_are_the_letters_in_order() {
        for (i, &(_, v2)) in SEND_KEYS.iter().enumerate() {
            assert_eq!(v2.as_bytes(), [b'a' + u8::try_from(i).unwrap()]);
        }
    }

    #[test]
    fn one_pass_send_decode_ignores_other_keys_and_names_bad_ones() {
        let mut ext = ExtFields::from([
            ("a", "pg"),
            ("b", "T"),
            ("c", "TBW102"),
            ("d", "4"),
            ("e", "-1"),
            ("f", "0"),
            ("g", "1763800000000"),
            ("h", "0"),
            ("o", "ignored"),
            ("zz", "ignored"),
            ("topic", "V1 key, ignored in V2"),
            ("", "empty key"),
        ]);
        let header = SendMessageRequestHeader::decode_v2(&ext).expect("decodes");
        assert_eq!(header.topic, "T");
        assert_eq!(header.properties, None);
        assert_eq!(header.batch, None);
        ext.put("l", " 16 ");
        assert_eq!(
            SendMessageRequestHeader::decode_v2(&ext).map(|h| h.max_reconsume_times),
            Ok(Some(16))
        );
        ext.put("d", "four");
        assert_eq!(
            SendMessageRequestHeader::decode_v2(&ext),
            Err(HeaderError::Invalid {
                field: "d",
                value: "four".into()
            })
        );
        ext.remove("d");
        assert_eq!(
            SendMessageRequestHeader::decode_v2(&ext),
            Err(HeaderError::Missing { field: "d" })
        );
    }
}
