//! Request and response codes with RocketMQ's numbers (PROTOCOL.md §1.8, §2.1).
//!
//! Both enums are `#[repr(i32)]` with the Java constant's number as discriminant. A
//! [`RemotingCommand`](super::RemotingCommand) keeps its code as a raw `i32` so unknown codes
//! survive decoding; convert with [`RequestCode::try_from`] / [`ResponseCode::try_from`]
//! (an unknown number is an error carrying that number) and back with `i32::from`.
//! `Display` prints RocketMQ's SCREAMING_CASE constant name (`SEND_MESSAGE_V2`), and
//! `FromStr` parses it back.
//!
//! The controller (1001–1013, 2000–2016) and auth (3001–3010 requests) ranges are left out:
//! Tern serves neither. The POP family (200050…) is named so that it can be refused
//! explicitly; it cannot travel in the ROCKETMQ binary header (codes there are `i16`).

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// A request code number that Tern does not name (PROTOCOL.md §2.1).
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq, Hash)]
#[error("unknown request code {0}")]
pub struct UnknownRequestCode(pub i32);

/// A response code number that Tern does not name (PROTOCOL.md §1.8).
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq, Hash)]
#[error("unknown response code {0}")]
pub struct UnknownResponseCode(pub i32);

/// A code name (`FromStr` input) that matches no constant.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("unknown code name `{0}`")]
pub struct UnknownCodeName(pub String);

/// Declares a wire-code enum with its Java names and the conversions around it.
macro_rules! wire_codes {
    (
        $(#[$meta:meta])*
        $name:ident, $unknown:ident {
            $( $variant:ident = $num:literal => $java:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(i32)]
        #[non_exhaustive]
        pub enum $name {
            $(
                #[doc = concat!("`", $java, "` (", stringify!($num), ").")]
                $variant = $num,
            )*
        }

        impl $name {
            /// Every variant, in ascending code order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The wire number.
            pub fn code(self) -> i32 {
                self as i32
            }

            /// RocketMQ's constant name, e.g. `SEND_MESSAGE_V2`.
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $java,)*
                }
            }
        }

        impl TryFrom<i32> for $name {
            type Error = $unknown;

            fn try_from(code: i32) -> Result<Self, $unknown> {
                match code {
                    $($num => Ok($name::$variant),)*
                    _ => Err($unknown(code)),
                }
            }
        }

        impl From<$name> for i32 {
            fn from(code: $name) -> i32 {
                code as i32
            }
        }

        impl PartialEq<$name> for i32 {
            fn eq(&self, other: &$name) -> bool {
                *self == *other as i32
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $name {
            type Err = UnknownCodeName;

            fn from_str(s: &str) -> Result<Self, UnknownCodeName> {
                match s {
                    $($java => Ok($name::$variant),)*
                    _ => Err(UnknownCodeName(s.to_owned())),
                }
            }
        }
    };
}

wire_codes! {
    /// A request code (`RequestCode.java`, PROTOCOL.md §2.1).
    RequestCode, UnknownRequestCode {
        SendMessage = 10 => "SEND_MESSAGE",
        PullMessage = 11 => "PULL_MESSAGE",
        QueryMessage = 12 => "QUERY_MESSAGE",
        QueryBrokerOffset = 13 => "QUERY_BROKER_OFFSET",
        QueryConsumerOffset = 14 => "QUERY_CONSUMER_OFFSET",
        UpdateConsumerOffset = 15 => "UPDATE_CONSUMER_OFFSET",
        UpdateAndCreateTopic = 17 => "UPDATE_AND_CREATE_TOPIC",
        UpdateAndCreateTopicList = 18 => "UPDATE_AND_CREATE_TOPIC_LIST",
        GetAllTopicConfig = 21 => "GET_ALL_TOPIC_CONFIG",
        GetTopicConfigList = 22 => "GET_TOPIC_CONFIG_LIST",
        GetTopicNameList = 23 => "GET_TOPIC_NAME_LIST",
        UpdateBrokerConfig = 25 => "UPDATE_BROKER_CONFIG",
        GetBrokerConfig = 26 => "GET_BROKER_CONFIG",
        TriggerDeleteFiles = 27 => "TRIGGER_DELETE_FILES",
        GetBrokerRuntimeInfo = 28 => "GET_BROKER_RUNTIME_INFO",
        SearchOffsetByTimestamp = 29 => "SEARCH_OFFSET_BY_TIMESTAMP",
        GetMaxOffset = 30 => "GET_MAX_OFFSET",
        GetMinOffset = 31 => "GET_MIN_OFFSET",
        GetEarliestMsgStoretime = 32 => "GET_EARLIEST_MSG_STORETIME",
        ViewMessageById = 33 => "VIEW_MESSAGE_BY_ID",
        HeartBeat = 34 => "HEART_BEAT",
        UnregisterClient = 35 => "UNREGISTER_CLIENT",
        ConsumerSendMsgBack = 36 => "CONSUMER_SEND_MSG_BACK",
        EndTransaction = 37 => "END_TRANSACTION",
        GetConsumerListByGroup = 38 => "GET_CONSUMER_LIST_BY_GROUP",
        CheckTransactionState = 39 => "CHECK_TRANSACTION_STATE",
        NotifyConsumerIdsChanged = 40 => "NOTIFY_CONSUMER_IDS_CHANGED",
        LockBatchMq = 41 => "LOCK_BATCH_MQ",
        UnlockBatchMq = 42 => "UNLOCK_BATCH_MQ",
        GetAllConsumerOffset = 43 => "GET_ALL_CONSUMER_OFFSET",
        GetAllDelayOffset = 45 => "GET_ALL_DELAY_OFFSET",
        CheckClientConfig = 46 => "CHECK_CLIENT_CONFIG",
        GetClientConfig = 47 => "GET_CLIENT_CONFIG",
        GetTimerCheckPoint = 60 => "GET_TIMER_CHECK_POINT",
        GetTimerMetrics = 61 => "GET_TIMER_METRICS",
        PutKvConfig = 100 => "PUT_KV_CONFIG",
        GetKvConfig = 101 => "GET_KV_CONFIG",
        DeleteKvConfig = 102 => "DELETE_KV_CONFIG",
        RegisterBroker = 103 => "REGISTER_BROKER",
        UnregisterBroker = 104 => "UNREGISTER_BROKER",
        GetRouteinfoByTopic = 105 => "GET_ROUTEINFO_BY_TOPIC",
        GetBrokerClusterInfo = 106 => "GET_BROKER_CLUSTER_INFO",
        UpdateAndCreateSubscriptiongroup = 200 => "UPDATE_AND_CREATE_SUBSCRIPTIONGROUP",
        GetAllSubscriptiongroupConfig = 201 => "GET_ALL_SUBSCRIPTIONGROUP_CONFIG",
        GetTopicStatsInfo = 202 => "GET_TOPIC_STATS_INFO",
        GetConsumerConnectionList = 203 => "GET_CONSUMER_CONNECTION_LIST",
        GetProducerConnectionList = 204 => "GET_PRODUCER_CONNECTION_LIST",
        WipeWritePermOfBroker = 205 => "WIPE_WRITE_PERM_OF_BROKER",
        GetAllTopicListFromNameserver = 206 => "GET_ALL_TOPIC_LIST_FROM_NAMESERVER",
        DeleteSubscriptiongroup = 207 => "DELETE_SUBSCRIPTIONGROUP",
        GetConsumeStats = 208 => "GET_CONSUME_STATS",
        SuspendConsumer = 209 => "SUSPEND_CONSUMER",
        ResumeConsumer = 210 => "RESUME_CONSUMER",
        ResetConsumerOffsetInConsumer = 211 => "RESET_CONSUMER_OFFSET_IN_CONSUMER",
        ResetConsumerOffsetInBroker = 212 => "RESET_CONSUMER_OFFSET_IN_BROKER",
        AdjustConsumerThreadPool = 213 => "ADJUST_CONSUMER_THREAD_POOL",
        WhoConsumeTheMessage = 214 => "WHO_CONSUME_THE_MESSAGE",
        DeleteTopicInBroker = 215 => "DELETE_TOPIC_IN_BROKER",
        DeleteTopicInNamesrv = 216 => "DELETE_TOPIC_IN_NAMESRV",
        RegisterTopicInNamesrv = 217 => "REGISTER_TOPIC_IN_NAMESRV",
        GetKvlistByNamespace = 219 => "GET_KVLIST_BY_NAMESPACE",
        ResetConsumerClientOffset = 220 => "RESET_CONSUMER_CLIENT_OFFSET",
        GetConsumerStatusFromClient = 221 => "GET_CONSUMER_STATUS_FROM_CLIENT",
        InvokeBrokerToResetOffset = 222 => "INVOKE_BROKER_TO_RESET_OFFSET",
        InvokeBrokerToGetConsumerStatus = 223 => "INVOKE_BROKER_TO_GET_CONSUMER_STATUS",
        GetTopicsByCluster = 224 => "GET_TOPICS_BY_CLUSTER",
        UpdateAndCreateSubscriptiongroupList = 225 => "UPDATE_AND_CREATE_SUBSCRIPTIONGROUP_LIST",
        QueryTopicConsumeByWho = 300 => "QUERY_TOPIC_CONSUME_BY_WHO",
        RegisterFilterServer = 301 => "REGISTER_FILTER_SERVER",
        RegisterMessageFilterClass = 302 => "REGISTER_MESSAGE_FILTER_CLASS",
        QueryConsumeTimeSpan = 303 => "QUERY_CONSUME_TIME_SPAN",
        GetSystemTopicListFromNs = 304 => "GET_SYSTEM_TOPIC_LIST_FROM_NS",
        GetSystemTopicListFromBroker = 305 => "GET_SYSTEM_TOPIC_LIST_FROM_BROKER",
        CleanExpiredConsumequeue = 306 => "CLEAN_EXPIRED_CONSUMEQUEUE",
        GetConsumerRunningInfo = 307 => "GET_CONSUMER_RUNNING_INFO",
        QueryCorrectionOffset = 308 => "QUERY_CORRECTION_OFFSET",
        ConsumeMessageDirectly = 309 => "CONSUME_MESSAGE_DIRECTLY",
        SendMessageV2 = 310 => "SEND_MESSAGE_V2",
        GetUnitTopicList = 311 => "GET_UNIT_TOPIC_LIST",
        GetHasUnitSubTopicList = 312 => "GET_HAS_UNIT_SUB_TOPIC_LIST",
        GetHasUnitSubUnunitTopicList = 313 => "GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST",
        CloneGroupOffset = 314 => "CLONE_GROUP_OFFSET",
        ViewBrokerStatsData = 315 => "VIEW_BROKER_STATS_DATA",
        CleanUnusedTopic = 316 => "CLEAN_UNUSED_TOPIC",
        GetBrokerConsumeStats = 317 => "GET_BROKER_CONSUME_STATS",
        UpdateNamesrvConfig = 318 => "UPDATE_NAMESRV_CONFIG",
        GetNamesrvConfig = 319 => "GET_NAMESRV_CONFIG",
        SendBatchMessage = 320 => "SEND_BATCH_MESSAGE",
        QueryConsumeQueue = 321 => "QUERY_CONSUME_QUEUE",
        QueryDataVersion = 322 => "QUERY_DATA_VERSION",
        ResumeCheckHalfMessage = 323 => "RESUME_CHECK_HALF_MESSAGE",
        SendReplyMessage = 324 => "SEND_REPLY_MESSAGE",
        SendReplyMessageV2 = 325 => "SEND_REPLY_MESSAGE_V2",
        PushReplyMessageToClient = 326 => "PUSH_REPLY_MESSAGE_TO_CLIENT",
        AddWritePermOfBroker = 327 => "ADD_WRITE_PERM_OF_BROKER",
        GetAllProducerInfo = 328 => "GET_ALL_PRODUCER_INFO",
        DeleteExpiredCommitlog = 329 => "DELETE_EXPIRED_COMMITLOG",
        QueryTopicsByConsumer = 343 => "QUERY_TOPICS_BY_CONSUMER",
        QuerySubscriptionByConsumer = 345 => "QUERY_SUBSCRIPTION_BY_CONSUMER",
        GetTopicConfig = 351 => "GET_TOPIC_CONFIG",
        GetSubscriptiongroupConfig = 352 => "GET_SUBSCRIPTIONGROUP_CONFIG",
        UpdateAndGetGroupForbidden = 353 => "UPDATE_AND_GET_GROUP_FORBIDDEN",
        CheckRocksdbCqWriteProgress = 354 => "CHECK_ROCKSDB_CQ_WRITE_PROGRESS",
        ExportRocksdbConfigToJson = 355 => "EXPORT_ROCKSDB_CONFIG_TO_JSON",
        LitePullMessage = 361 => "LITE_PULL_MESSAGE",
        RecallMessage = 370 => "RECALL_MESSAGE",
        QueryAssignment = 400 => "QUERY_ASSIGNMENT",
        SetMessageRequestMode = 401 => "SET_MESSAGE_REQUEST_MODE",
        GetAllMessageRequestMode = 402 => "GET_ALL_MESSAGE_REQUEST_MODE",
        UpdateAndCreateStaticTopic = 513 => "UPDATE_AND_CREATE_STATIC_TOPIC",
        GetBrokerMemberGroup = 901 => "GET_BROKER_MEMBER_GROUP",
        AddBroker = 902 => "ADD_BROKER",
        RemoveBroker = 903 => "REMOVE_BROKER",
        BrokerHeartbeat = 904 => "BROKER_HEARTBEAT",
        NotifyMinBrokerIdChange = 905 => "NOTIFY_MIN_BROKER_ID_CHANGE",
        ExchangeBrokerHaInfo = 906 => "EXCHANGE_BROKER_HA_INFO",
        GetBrokerHaStatus = 907 => "GET_BROKER_HA_STATUS",
        ResetMasterFlushOffset = 908 => "RESET_MASTER_FLUSH_OFFSET",
        PopMessage = 200050 => "POP_MESSAGE",
        AckMessage = 200051 => "ACK_MESSAGE",
        PeekMessage = 200052 => "PEEK_MESSAGE",
        ChangeMessageInvisibletime = 200053 => "CHANGE_MESSAGE_INVISIBLETIME",
        Notification = 200054 => "NOTIFICATION",
        PollingInfo = 200055 => "POLLING_INFO",
        PopRollback = 200056 => "POP_ROLLBACK",
        BatchAckMessage = 200151 => "BATCH_ACK_MESSAGE",
    }
}

wire_codes! {
    /// A response code (`RemotingSysResponseCode.java` + `ResponseCode.java`, PROTOCOL.md §1.8).
    ResponseCode, UnknownResponseCode {
        Success = 0 => "SUCCESS",
        SystemError = 1 => "SYSTEM_ERROR",
        SystemBusy = 2 => "SYSTEM_BUSY",
        RequestCodeNotSupported = 3 => "REQUEST_CODE_NOT_SUPPORTED",
        TransactionFailed = 4 => "TRANSACTION_FAILED",
        FlushDiskTimeout = 10 => "FLUSH_DISK_TIMEOUT",
        SlaveNotAvailable = 11 => "SLAVE_NOT_AVAILABLE",
        FlushSlaveTimeout = 12 => "FLUSH_SLAVE_TIMEOUT",
        MessageIllegal = 13 => "MESSAGE_ILLEGAL",
        ServiceNotAvailable = 14 => "SERVICE_NOT_AVAILABLE",
        VersionNotSupported = 15 => "VERSION_NOT_SUPPORTED",
        NoPermission = 16 => "NO_PERMISSION",
        TopicNotExist = 17 => "TOPIC_NOT_EXIST",
        TopicExistAlready = 18 => "TOPIC_EXIST_ALREADY",
        PullNotFound = 19 => "PULL_NOT_FOUND",
        PullRetryImmediately = 20 => "PULL_RETRY_IMMEDIATELY",
        PullOffsetMoved = 21 => "PULL_OFFSET_MOVED",
        QueryNotFound = 22 => "QUERY_NOT_FOUND",
        SubscriptionParseFailed = 23 => "SUBSCRIPTION_PARSE_FAILED",
        SubscriptionNotExist = 24 => "SUBSCRIPTION_NOT_EXIST",
        SubscriptionNotLatest = 25 => "SUBSCRIPTION_NOT_LATEST",
        SubscriptionGroupNotExist = 26 => "SUBSCRIPTION_GROUP_NOT_EXIST",
        FilterDataNotExist = 27 => "FILTER_DATA_NOT_EXIST",
        FilterDataNotLatest = 28 => "FILTER_DATA_NOT_LATEST",
        InvalidParameter = 29 => "INVALID_PARAMETER",
        TransactionShouldCommit = 200 => "TRANSACTION_SHOULD_COMMIT",
        TransactionShouldRollback = 201 => "TRANSACTION_SHOULD_ROLLBACK",
        TransactionStateUnknow = 202 => "TRANSACTION_STATE_UNKNOW",
        TransactionStateGroupWrong = 203 => "TRANSACTION_STATE_GROUP_WRONG",
        NoBuyerId = 204 => "NO_BUYER_ID",
        NotInCurrentUnit = 205 => "NOT_IN_CURRENT_UNIT",
        ConsumerNotOnline = 206 => "CONSUMER_NOT_ONLINE",
        ConsumeMsgTimeout = 207 => "CONSUME_MSG_TIMEOUT",
        NoMessage = 208 => "NO_MESSAGE",
        PollingFull = 209 => "POLLING_FULL",
        PollingTimeout = 210 => "POLLING_TIMEOUT",
        BrokerNotExist = 211 => "BROKER_NOT_EXIST",
        BrokerDispatchNotComplete = 212 => "BROKER_DISPATCH_NOT_COMPLETE",
        BroadcastConsumption = 213 => "BROADCAST_CONSUMPTION",
        FlowControl = 215 => "FLOW_CONTROL",
        NotLeaderForQueue = 501 => "NOT_LEADER_FOR_QUEUE",
        IllegalOperation = 604 => "ILLEGAL_OPERATION",
        GoAway = 1500 => "GO_AWAY",
        UserNotExist = 3001 => "USER_NOT_EXIST",
        PolicyNotExist = 3002 => "POLICY_NOT_EXIST",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_code_round_trips_number_and_name() {
        for &code in RequestCode::ALL {
            assert_eq!(RequestCode::try_from(i32::from(code)), Ok(code));
            assert_eq!(code.to_string().parse::<RequestCode>(), Ok(code));
        }
        assert!(RequestCode::ALL
            .windows(2)
            .all(|w| w[0].code() < w[1].code()));
    }

    #[test]
    fn every_response_code_round_trips_number_and_name() {
        for &code in ResponseCode::ALL {
            assert_eq!(ResponseCode::try_from(i32::from(code)), Ok(code));
            assert_eq!(code.to_string().parse::<ResponseCode>(), Ok(code));
        }
        assert!(ResponseCode::ALL
            .windows(2)
            .all(|w| w[0].code() < w[1].code()));
    }

    #[test]
    fn well_known_numbers_match_rocketmq() {
        assert_eq!(i32::from(RequestCode::SendMessageV2), 310);
        assert_eq!(i32::from(RequestCode::GetRouteinfoByTopic), 105);
        assert_eq!(i32::from(RequestCode::LitePullMessage), 361);
        assert_eq!(i32::from(ResponseCode::QueryNotFound), 22);
        assert_eq!(i32::from(ResponseCode::PullOffsetMoved), 21);
        assert_eq!(
            ResponseCode::RequestCodeNotSupported.to_string(),
            "REQUEST_CODE_NOT_SUPPORTED"
        );
        assert_eq!(
            RequestCode::GetKvlistByNamespace.to_string(),
            "GET_KVLIST_BY_NAMESPACE"
        );
    }

    #[test]
    fn unknown_numbers_are_errors_carrying_the_number() {
        assert_eq!(RequestCode::try_from(16), Err(UnknownRequestCode(16)));
        assert_eq!(
            ResponseCode::try_from(-1000),
            Err(UnknownResponseCode(-1000))
        );
        assert!("NOPE".parse::<RequestCode>().is_err());
        assert!(0 == ResponseCode::Success);
    }
}
