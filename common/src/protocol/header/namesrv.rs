//! NameServer request and response headers (PROTOCOL.md §2.2; Java
//! `remoting/protocol/header/namesrv/*.java`).

use crate::command_header;

command_header! {
    /// REGISTER_BROKER (103) request header: broker → every NameServer.
    pub struct RegisterBrokerRequestHeader {
        /// Broker name, e.g. `broker-a`.
        pub broker_name: String = "brokerName",
        /// `brokerIP1:listenPort`.
        pub broker_addr: String = "brokerAddr",
        /// Cluster name, e.g. `DefaultCluster`.
        pub cluster_name: String = "clusterName",
        /// `brokerIP2:haListenPort`.
        pub ha_server_addr: String = "haServerAddr",
        /// 0 = master, > 0 = slave.
        pub broker_id: i64 = "brokerId",
        /// Expiry of this broker in ms (5.x); absent → 120 000 ms.
        pub heartbeat_timeout_millis: Option<i64> = "heartbeatTimeoutMillis",
        /// 5.x; absent ⇒ the broker is treated as an "old version".
        pub enable_acting_master: Option<bool> = "enableActingMaster",
        /// Body is zlib-compressed (deprecated).
        pub compressed: Option<bool> = "compressed",
        /// CRC32 of the body masked with `0x7FFFFFFF`; verified only if non-zero.
        pub body_crc32: Option<i32> = "bodyCrc32",
        /// Zone name (extFields only).
        pub zone_name: Option<String> = "__ZONE_NAME",
    }
}

command_header! {
    /// REGISTER_BROKER (103) response header; both filled for a slave whose master is alive.
    pub struct RegisterBrokerResponseHeader {
        /// The master's HA address.
        pub ha_server_addr: Option<String> = "haServerAddr",
        /// The master's address.
        pub master_addr: Option<String> = "masterAddr",
    }
}

command_header! {
    /// UNREGISTER_BROKER (104) request header.
    pub struct UnregisterBrokerRequestHeader {
        /// Broker name.
        pub broker_name: String = "brokerName",
        /// Broker address.
        pub broker_addr: String = "brokerAddr",
        /// Cluster name.
        pub cluster_name: String = "clusterName",
        /// Broker id.
        pub broker_id: i64 = "brokerId",
    }
}

command_header! {
    /// GET_ROUTEINFO_BY_TOPIC (105) request header.
    pub struct GetRouteInfoRequestHeader {
        /// The topic.
        pub topic: String = "topic",
        /// 5.x: the client accepts only standard JSON.
        pub accept_standard_json_only: Option<bool> = "acceptStandardJsonOnly",
    }
}

command_header! {
    /// DELETE_TOPIC_IN_NAMESRV (216) request header.
    pub struct DeleteTopicFromNamesrvRequestHeader {
        /// The topic.
        pub topic: String = "topic",
        /// 5.x: delete only the queue data of this cluster's brokers.
        pub cluster_name: Option<String> = "clusterName",
    }
}

command_header! {
    /// REGISTER_TOPIC_IN_NAMESRV (217, 5.x) request header.
    pub struct RegisterTopicRequestHeader {
        /// The topic.
        pub topic: String = "topic",
    }
}

command_header! {
    /// GET_TOPICS_BY_CLUSTER (224) request header.
    pub struct GetTopicsByClusterRequestHeader {
        /// The cluster name.
        pub cluster: String = "cluster",
    }
}

command_header! {
    /// PUT_KV_CONFIG (100) request header.
    pub struct PutKVConfigRequestHeader {
        /// KV namespace.
        pub namespace: String = "namespace",
        /// Key.
        pub key: String = "key",
        /// Value.
        pub value: String = "value",
    }
}

command_header! {
    /// GET_KV_CONFIG (101) request header.
    pub struct GetKVConfigRequestHeader {
        /// KV namespace.
        pub namespace: String = "namespace",
        /// Key.
        pub key: String = "key",
    }
}

command_header! {
    /// GET_KV_CONFIG (101) response header (QUERY_NOT_FOUND when absent).
    pub struct GetKVConfigResponseHeader {
        /// The value.
        pub value: Option<String> = "value",
    }
}

command_header! {
    /// DELETE_KV_CONFIG (102) request header.
    pub struct DeleteKVConfigRequestHeader {
        /// KV namespace.
        pub namespace: String = "namespace",
        /// Key.
        pub key: String = "key",
    }
}

command_header! {
    /// GET_KVLIST_BY_NAMESPACE (219) request header.
    pub struct GetKVListByNamespaceRequestHeader {
        /// KV namespace.
        pub namespace: String = "namespace",
    }
}

command_header! {
    /// QUERY_DATA_VERSION (322) request header; body is the broker's DataVersion JSON.
    pub struct QueryDataVersionRequestHeader {
        /// Broker name.
        pub broker_name: String = "brokerName",
        /// Broker address.
        pub broker_addr: String = "brokerAddr",
        /// Cluster name.
        pub cluster_name: String = "clusterName",
        /// Broker id.
        pub broker_id: i64 = "brokerId",
    }
}

command_header! {
    /// QUERY_DATA_VERSION (322) response header.
    pub struct QueryDataVersionResponseHeader {
        /// True if the NameServer's stored DataVersion differs from the broker's.
        pub changed: bool = "changed",
    }
}

command_header! {
    /// BROKER_HEARTBEAT (904, 5.x) request header; only refreshes liveness.
    pub struct BrokerHeartbeatRequestHeader {
        /// Cluster name.
        pub cluster_name: String = "clusterName",
        /// Broker address.
        pub broker_addr: String = "brokerAddr",
        /// Broker name.
        pub broker_name: String = "brokerName",
        /// Broker id.
        pub broker_id: Option<i64> = "brokerId",
        /// Controller epoch.
        pub epoch: Option<i32> = "epoch",
        /// Max commit-log offset.
        pub max_offset: Option<i64> = "maxOffset",
        /// Confirmed commit-log offset.
        pub confirm_offset: Option<i64> = "confirmOffset",
        /// Expiry in ms (Java's spelling).
        pub heartbeat_timeout_mills: Option<i64> = "heartbeatTimeoutMills",
        /// Election priority.
        pub election_priority: Option<i32> = "electionPriority",
    }
}

command_header! {
    /// WIPE_WRITE_PERM_OF_BROKER (205) request header.
    pub struct WipeWritePermOfBrokerRequestHeader {
        /// Broker name.
        pub broker_name: String = "brokerName",
    }
}

command_header! {
    /// WIPE_WRITE_PERM_OF_BROKER (205) response header.
    pub struct WipeWritePermOfBrokerResponseHeader {
        /// Number of topics whose write permission was removed.
        pub wipe_topic_count: i32 = "wipeTopicCount",
    }
}

command_header! {
    /// ADD_WRITE_PERM_OF_BROKER (327) request header.
    pub struct AddWritePermOfBrokerRequestHeader {
        /// Broker name.
        pub broker_name: String = "brokerName",
    }
}

command_header! {
    /// ADD_WRITE_PERM_OF_BROKER (327) response header.
    pub struct AddWritePermOfBrokerResponseHeader {
        /// Number of topics whose write permission was restored.
        pub add_topic_count: i32 = "addTopicCount",
    }
}

command_header! {
    /// GET_BROKER_MEMBER_GROUP (901) request header.
    pub struct GetBrokerMemberGroupRequestHeader {
        /// Cluster name.
        pub cluster_name: String = "clusterName",
        /// Broker name.
        pub broker_name: String = "brokerName",
    }
}
