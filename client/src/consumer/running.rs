//! Bodies of the consumer's answers to broker→client admin requests (PROTOCOL.md §2.6):
//! GET_CONSUMER_RUNNING_INFO (307) → [`ConsumerRunningInfo`], CONSUME_MESSAGE_DIRECTLY (309)
//! → [`ConsumeMessageDirectlyResult`], GET_CONSUMER_STATUS_FROM_CLIENT (221) →
//! [`GetConsumerStatusBody`]. Field names follow the Java classes of the same names, so
//! `mqadmin consumerStatus` / `consumeMessage` read them; they are public so tools and tests
//! can decode the answers with [`decode_body`](tern_common::protocol::body::decode_body).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tern_common::protocol::body::{MqMap, SubscriptionData};

/// Property key: the consume type, `CONSUME_PASSIVELY` (push) or `CONSUME_ACTIVELY` (pull)
/// (`ConsumerRunningInfo.PROP_CONSUME_TYPE`).
pub const PROP_CONSUME_TYPE: &str = "PROP_CONSUME_TYPE";
/// Property key: `true` for an orderly push consumer (`PROP_CONSUMEORDERLY`).
pub const PROP_CONSUME_ORDERLY: &str = "PROP_CONSUMEORDERLY";
/// Property key: maximum concurrent handler calls (`PROP_THREADPOOL_CORE_SIZE`).
pub const PROP_THREADPOOL_CORE_SIZE: &str = "PROP_THREADPOOL_CORE_SIZE";
/// Property key: the consumer's start time, ms since the epoch
/// (`PROP_CONSUMER_START_TIMESTAMP`).
pub const PROP_CONSUMER_START_TIMESTAMP: &str = "PROP_CONSUMER_START_TIMESTAMP";
/// Property key: the NameServer addresses, `;`-separated (`PROP_NAMESERVER_ADDR`).
pub const PROP_NAMESERVER_ADDR: &str = "PROP_NAMESERVER_ADDR";
/// Property key: the client's version (`PROP_CLIENT_VERSION`); Tern writes
/// `tern-client <crate version>`.
pub const PROP_CLIENT_VERSION: &str = "PROP_CLIENT_VERSION";

/// The body of a GET_CONSUMER_RUNNING_INFO answer (`ConsumerRunningInfo.java`).
///
/// `properties` holds the consumer's settings under Java's names (`consumerGroup`,
/// `messageModel`, `consumeFromWhere`, `pullBatchSize`, ... plus the `PROP_*` keys of this
/// module); `mq_table` one [`ProcessQueueInfo`] per owned queue; `status_table` per-topic
/// rates (Tern keeps no rates and sends it empty); `jstack` is never filled (there is no
/// thread dump of a Rust process).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerRunningInfo {
    /// Settings and `PROP_*` values, all as strings.
    pub properties: BTreeMap<String, String>,
    /// The subscriptions, as in the heartbeat.
    pub subscription_set: Vec<SubscriptionData>,
    /// Owned queue → its process-queue snapshot.
    pub mq_table: MqMap<ProcessQueueInfo>,
    /// Topic → consume rates (`ConsumeStatus.java`); empty in Tern.
    pub status_table: BTreeMap<String, serde_json::Value>,
    /// Thread dump (Java `jstackEnable`); always `None` in Tern.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jstack: Option<String>,
}

/// One owned queue in a [`ConsumerRunningInfo`] (`ProcessQueueInfo.java`). Offsets are queue
/// offsets; timestamps ms since the epoch (0 = never).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProcessQueueInfo {
    /// The offset the consumer would commit now (-1 if none yet).
    pub commit_offset: i64,
    /// Smallest cached (not yet acknowledged) offset, 0 if the cache is empty.
    pub cached_msg_min_offset: i64,
    /// Largest cached offset, 0 if the cache is empty.
    pub cached_msg_max_offset: i64,
    /// Cached messages (including those being consumed).
    pub cached_msg_count: i32,
    /// Cached body bytes, MiB (rounded down).
    pub cached_msg_size_in_mi_b: i32,
    /// Orderly: smallest offset being consumed (Java's transaction-consume window).
    pub transaction_msg_min_offset: i64,
    /// Orderly: largest offset being consumed.
    pub transaction_msg_max_offset: i64,
    /// Orderly: messages being consumed.
    pub transaction_msg_count: i32,
    /// Orderly clustering: whether the broker lock is held.
    pub locked: bool,
    /// Unlock attempts (Tern does not delay unlocks: always 0).
    pub try_unlock_times: i64,
    /// When the lock was last granted or renewed.
    pub last_lock_timestamp: i64,
    /// Whether the queue was dropped (a snapshot never shows dropped queues: false).
    pub droped: bool,
    /// When the last pull of the queue answered.
    pub last_pull_timestamp: i64,
    /// When a handler last finished a batch of the queue.
    pub last_consume_timestamp: i64,
}

/// The outcome of a CONSUME_MESSAGE_DIRECTLY (`CMResult.java`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CmResult {
    /// The handler returned success.
    CrSuccess,
    /// The handler asked for a later retry (ReconsumeLater / SuspendCurrentQueueAMoment).
    CrLater,
    /// Orderly rollback (not produced by Tern's handlers).
    CrRollback,
    /// Orderly commit (not produced by Tern's handlers).
    CrCommit,
    /// The handler failed (returned an error or panicked); the remark says why.
    CrThrowException,
    /// The handler returned nothing (not produced by Tern's handlers).
    CrReturnNull,
}

/// The body of a CONSUME_MESSAGE_DIRECTLY answer (`ConsumeMessageDirectlyResult.java`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumeMessageDirectlyResult {
    /// True for an orderly handler.
    pub order: bool,
    /// Always true (Tern's orderly handlers commit automatically).
    pub auto_commit: bool,
    /// What the handler did.
    pub consume_result: CmResult,
    /// The handler's error, if any.
    #[serde(default)]
    pub remark: Option<String>,
    /// Handler time, ms (Java's spelling).
    pub spent_time_mills: i64,
}

/// The body of a GET_CONSUMER_STATUS_FROM_CLIENT answer (`GetConsumerStatusBody.java`):
/// the consumer's offsets of the asked topic's queues.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GetConsumerStatusBody {
    /// Queue → the offset the consumer holds for it.
    pub message_queue_table: MqMap<i64>,
    /// Client id → its table (filled by the broker when it merges answers; empty here).
    pub consumer_table: BTreeMap<String, MqMap<i64>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_common::protocol::body::{decode_body, encode_body};
    use tern_common::protocol::SerializeType;
    use tern_common::route::MessageQueue;

    #[test]
    fn directly_result_uses_java_names() {
        let r = ConsumeMessageDirectlyResult {
            order: false,
            auto_commit: true,
            consume_result: CmResult::CrLater,
            remark: None,
            spent_time_mills: 3,
        };
        let json = encode_body(&r, SerializeType::Json).expect("encode");
        let v: serde_json::Value = serde_json::from_slice(&json).expect("json");
        assert_eq!(v["consumeResult"], "CR_LATER");
        assert_eq!(v["autoCommit"], true);
        assert_eq!(v["spentTimeMills"], 3);
    }

    #[test]
    fn running_info_round_trips_in_both_encodings() {
        let mq = MessageQueue::new("T", "b", 1);
        let mut info = ConsumerRunningInfo::default();
        info.properties
            .insert(PROP_CONSUME_TYPE.into(), "CONSUME_PASSIVELY".into());
        info.mq_table.insert(
            mq.clone(),
            ProcessQueueInfo {
                commit_offset: 7,
                cached_msg_count: 2,
                ..Default::default()
            },
        );
        for st in [SerializeType::Json, SerializeType::MsgPack] {
            let bytes = encode_body(&info, st).expect("encode");
            let back: ConsumerRunningInfo = decode_body(&bytes, st).expect("decode");
            assert_eq!(back, info);
        }
        let json = encode_body(&info, SerializeType::Json).expect("encode");
        let text = String::from_utf8(json.to_vec()).expect("utf8");
        assert!(text.contains("\"cachedMsgCount\":2"), "{text}");
        assert!(text.contains("\"mqTable\""), "{text}");
    }
}
