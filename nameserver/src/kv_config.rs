//! The NameServer's key/value store: namespace → key → value (RocketMQ's `KVConfigManager`),
//! served by PUT/GET/DELETE_KV_CONFIG and GET_KVLIST_BY_NAMESPACE.
//!
//! Namespace [`NAMESPACE_ORDER_TOPIC_CONFIG`] maps a topic to its order configuration
//! (`brokerName:queueNums;...`); it feeds `orderTopicConf` of routes when order messages are
//! enabled, and its whole table is returned to brokers on REGISTER_BROKER.
//!
//! The store lives in memory only: like the route table it is rebuilt by operators and
//! brokers after a restart (RocketMQ persists it to `kvConfig.json`; Tern does not yet).
//! One short `RwLock`, never held across an `.await`.

use std::collections::{BTreeMap, HashMap};

use parking_lot::RwLock;
use tern_common::protocol::body::KVTable;

/// RocketMQ's `NamesrvUtil.NAMESPACE_ORDER_TOPIC_CONFIG`.
pub const NAMESPACE_ORDER_TOPIC_CONFIG: &str = "ORDER_TOPIC_CONFIG";

/// Upper bound on the number of namespaces and on the keys per namespace, so that a client
/// looping over PUT_KV_CONFIG cannot grow the store without bound.
pub const MAX_KV_ENTRIES: usize = 100_000;

/// Why a put was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KvConfigError {
    /// The store already holds [`MAX_KV_ENTRIES`] namespaces, or the namespace that many keys.
    #[error("kv config is full ({max} entries)")]
    Full {
        /// The limit that was hit.
        max: usize,
    },
}

/// The KV store.
#[derive(Debug, Default)]
pub struct KvConfig {
    table: RwLock<HashMap<String, BTreeMap<String, String>>>,
}

impl KvConfig {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `namespace`/`key` to `value`.
    ///
    /// # Errors
    /// [`KvConfigError::Full`] when the store or the namespace is at [`MAX_KV_ENTRIES`] and the
    /// entry is new.
    pub fn put(&self, namespace: &str, key: &str, value: &str) -> Result<(), KvConfigError> {
        let mut table = self.table.write();
        if !table.contains_key(namespace) && table.len() >= MAX_KV_ENTRIES {
            return Err(KvConfigError::Full {
                max: MAX_KV_ENTRIES,
            });
        }
        let ns = table.entry(namespace.to_string()).or_default();
        if !ns.contains_key(key) && ns.len() >= MAX_KV_ENTRIES {
            return Err(KvConfigError::Full {
                max: MAX_KV_ENTRIES,
            });
        }
        ns.insert(key.to_string(), value.to_string());
        Ok(())
    }

    /// The value of `namespace`/`key`.
    pub fn get(&self, namespace: &str, key: &str) -> Option<String> {
        self.table.read().get(namespace)?.get(key).cloned()
    }

    /// Removes `namespace`/`key` (and the namespace when it becomes empty). Returns whether
    /// the entry existed.
    pub fn delete(&self, namespace: &str, key: &str) -> bool {
        let mut table = self.table.write();
        let Some(ns) = table.get_mut(namespace) else {
            return false;
        };
        let existed = ns.remove(key).is_some();
        if ns.is_empty() {
            table.remove(namespace);
        }
        existed
    }

    /// Every entry of `namespace`, or `None` when it has none.
    pub fn list(&self, namespace: &str) -> Option<KVTable> {
        let table = self.table.read();
        let ns = table.get(namespace).filter(|ns| !ns.is_empty())?;
        Some(KVTable { table: ns.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_delete_list() {
        let kv = KvConfig::new();
        assert_eq!(kv.get("ns", "k"), None);
        assert!(kv.list("ns").is_none());
        kv.put("ns", "k", "v1").unwrap();
        kv.put("ns", "k", "v2").unwrap();
        kv.put("ns", "j", "w").unwrap();
        assert_eq!(kv.get("ns", "k").as_deref(), Some("v2"));
        assert_eq!(kv.list("ns").unwrap().table.len(), 2);
        assert!(kv.delete("ns", "k"));
        assert!(!kv.delete("ns", "k"));
        assert!(kv.delete("ns", "j"));
        assert!(kv.list("ns").is_none());
        assert!(!kv.delete("other", "k"));
    }

    #[test]
    fn order_topic_namespace_is_an_ordinary_namespace() {
        let kv = KvConfig::new();
        kv.put(NAMESPACE_ORDER_TOPIC_CONFIG, "T", "broker-a:4;broker-b:4")
            .unwrap();
        assert_eq!(
            kv.get(NAMESPACE_ORDER_TOPIC_CONFIG, "T").as_deref(),
            Some("broker-a:4;broker-b:4")
        );
    }
}
