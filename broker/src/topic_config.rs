//! [`TopicConfigTable`]: the broker's topics (RocketMQ `TopicConfigManager`).
//!
//! Contract: every change bumps the [`DataVersion`] and is persisted before the call returns
//! (a MessagePack snapshot `<store>/config/topics`), so a topic acknowledged to a client
//! survives a restart; the caller then triggers a NameServer re-registration. The table is
//! behind one narrow `RwLock`; no lock is held while persisting to disk except the short
//! snapshot copy.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

use parking_lot::{Mutex, RwLock};
use tern_common::message::{
    AUTO_CREATE_TOPIC_KEY_TOPIC, RMQ_SYS_TRANS_HALF_TOPIC, RMQ_SYS_TRANS_OP_HALF_TOPIC,
    SCHEDULE_TOPIC_XXXX, SELF_TEST_TOPIC, TRANS_CHECK_MAX_TIME_TOPIC,
};
use tern_common::route::{perm, DataVersion, TopicConfig, TopicConfigSerializeWrapper};

use crate::config::BrokerConfig;
use crate::snapshot;

/// File name of the topic snapshot under `<store>/config/`.
pub const TOPICS_FILE: &str = "topics";

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[derive(Debug)]
struct Inner {
    topics: BTreeMap<String, TopicConfig>,
    data_version: DataVersion,
}

/// The topic table of one broker.
#[derive(Debug)]
pub struct TopicConfigTable {
    inner: RwLock<Inner>,
    path: PathBuf,
    /// Serializes snapshot writes so an older table never overwrites a newer one.
    persist_lock: Mutex<()>,
}

impl TopicConfigTable {
    /// Loads the snapshot from `<store>/config/topics` (or starts empty) and creates the
    /// system topics of PROTOCOL.md §2.3/§5.1/§6.1: `TBW102` (perm 7, `default_topic_queue_nums`
    /// queues) when auto-creation is on, `SCHEDULE_TOPIC_XXXX` (one queue per delay level),
    /// the three transaction topics, `SELF_TEST_TOPIC`, and topics named after the broker and
    /// the cluster. Persists the result.
    ///
    /// # Errors
    /// I/O errors reading or writing the snapshot.
    pub fn load(config: &BrokerConfig) -> io::Result<Self> {
        let path = config.config_dir().join(TOPICS_FILE);
        let wrapper: TopicConfigSerializeWrapper = snapshot::load(&path)?.unwrap_or_default();
        let data_version = if wrapper.data_version.timestamp == 0 {
            DataVersion::new(now_ms())
        } else {
            wrapper.data_version
        };
        let table = TopicConfigTable {
            inner: RwLock::new(Inner {
                topics: wrapper.topic_config_table,
                data_version,
            }),
            path,
            persist_lock: Mutex::new(()),
        };
        let mut system = vec![
            TopicConfig::new(SELF_TEST_TOPIC, 1),
            TopicConfig::new(
                SCHEDULE_TOPIC_XXXX,
                i32::try_from(config.message_delay_level.len()).unwrap_or(18),
            ),
            TopicConfig::new(RMQ_SYS_TRANS_HALF_TOPIC, 1),
            TopicConfig::new(RMQ_SYS_TRANS_OP_HALF_TOPIC, 1),
            TopicConfig::new(TRANS_CHECK_MAX_TIME_TOPIC, 1),
        ];
        if config.auto_create_topic_enable {
            let mut tbw =
                TopicConfig::new(AUTO_CREATE_TOPIC_KEY_TOPIC, config.default_topic_queue_nums);
            tbw.perm = perm::PERM_INHERIT | perm::PERM_READ | perm::PERM_WRITE;
            system.push(tbw);
        }
        let mut cluster = TopicConfig::new(config.broker_cluster_name.clone(), 16);
        cluster.perm = perm::PERM_INHERIT;
        system.push(cluster);
        let mut broker = TopicConfig::new(config.broker_name.clone(), 1);
        broker.perm = perm::PERM_INHERIT | perm::PERM_READ | perm::PERM_WRITE;
        system.push(broker);
        {
            let mut inner = table.inner.write();
            for topic in system {
                // Keep an existing entry (an operator may have changed it), except that the
                // schedule topic must always have one queue per delay level.
                let keep = inner.topics.get(&topic.topic_name).is_some_and(|old| {
                    old.topic_name != SCHEDULE_TOPIC_XXXX
                        || old.write_queue_nums == topic.write_queue_nums
                });
                if !keep {
                    inner.topics.insert(topic.topic_name.clone(), topic);
                }
            }
            inner.data_version.next_version(now_ms());
        }
        table.persist()?;
        Ok(table)
    }

    /// Writes the snapshot atomically.
    ///
    /// # Errors
    /// I/O errors from the snapshot write.
    pub fn persist(&self) -> io::Result<()> {
        let _guard = self.persist_lock.lock();
        let wrapper = self.wrapper();
        snapshot::save(&self.path, &wrapper)
    }

    /// The config of `topic`, if it exists.
    pub fn get(&self, topic: &str) -> Option<TopicConfig> {
        self.inner.read().topics.get(topic).cloned()
    }

    /// True if `topic` exists.
    pub fn contains(&self, topic: &str) -> bool {
        self.inner.read().topics.contains_key(topic)
    }

    /// Names of every topic.
    pub fn topic_names(&self) -> Vec<String> {
        self.inner.read().topics.keys().cloned().collect()
    }

    /// The whole table with its version (REGISTER_BROKER / GET_ALL_TOPIC_CONFIG body).
    pub fn wrapper(&self) -> TopicConfigSerializeWrapper {
        let inner = self.inner.read();
        TopicConfigSerializeWrapper {
            data_version: inner.data_version,
            topic_config_table: inner.topics.clone(),
        }
    }

    /// The current data version.
    pub fn data_version(&self) -> DataVersion {
        self.inner.read().data_version
    }

    /// Inserts or replaces `config`, bumps the version and persists.
    ///
    /// # Errors
    /// I/O errors from the snapshot write (the in-memory change stays).
    pub fn put(&self, config: TopicConfig) -> io::Result<()> {
        {
            let mut inner = self.inner.write();
            inner.topics.insert(config.topic_name.clone(), config);
            inner.data_version.next_version(now_ms());
        }
        self.persist()
    }

    /// Removes `topic`; returns its old config. Bumps the version and persists when it existed.
    ///
    /// # Errors
    /// I/O errors from the snapshot write.
    pub fn remove(&self, topic: &str) -> io::Result<Option<TopicConfig>> {
        let old = {
            let mut inner = self.inner.write();
            let old = inner.topics.remove(topic);
            if old.is_some() {
                inner.data_version.next_version(now_ms());
            }
            old
        };
        if old.is_some() {
            self.persist()?;
        }
        Ok(old)
    }

    /// Auto-creates `topic` on send from template `default_topic` (PROTOCOL.md §2.3 step 3):
    /// only if the template exists and has PERM_INHERIT; queue count = min(requested,
    /// template write queues); perm = template perm minus INHERIT. Returns `(config, created)`
    /// or `None` when the topic is unknown and cannot be created.
    ///
    /// # Errors
    /// I/O errors from the snapshot write.
    pub fn create_topic_in_send(
        &self,
        topic: &str,
        default_topic: &str,
        requested_queue_nums: i32,
        topic_sys_flag: i32,
    ) -> io::Result<Option<(TopicConfig, bool)>> {
        let created = {
            let mut inner = self.inner.write();
            if let Some(existing) = inner.topics.get(topic) {
                return Ok(Some((existing.clone(), false)));
            }
            let Some(template) = inner.topics.get(default_topic) else {
                return Ok(None);
            };
            if !perm::is_inherited(template.perm) {
                return Ok(None);
            }
            let queue_nums = requested_queue_nums.clamp(1, template.write_queue_nums.max(1));
            let mut config = TopicConfig::new(topic, queue_nums);
            config.perm = template.perm & !perm::PERM_INHERIT;
            config.topic_filter_type = template.topic_filter_type;
            config.topic_sys_flag = topic_sys_flag;
            inner.topics.insert(topic.to_string(), config.clone());
            inner.data_version.next_version(now_ms());
            config
        };
        self.persist()?;
        Ok(Some((created, true)))
    }

    /// Returns `topic`, creating it with `queue_nums` queues and `perm` when absent (retry and
    /// DLQ topics: 1 queue, read + write). Returns `(config, created)`.
    ///
    /// # Errors
    /// I/O errors from the snapshot write.
    pub fn get_or_create(
        &self,
        topic: &str,
        queue_nums: i32,
        perm_bits: i32,
    ) -> io::Result<(TopicConfig, bool)> {
        let created = {
            let mut inner = self.inner.write();
            if let Some(existing) = inner.topics.get(topic) {
                return Ok((existing.clone(), false));
            }
            let mut config = TopicConfig::new(topic, queue_nums.max(1));
            config.perm = perm_bits;
            inner.topics.insert(topic.to_string(), config.clone());
            inner.data_version.next_version(now_ms());
            config
        };
        self.persist()?;
        Ok((created, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawBrokerConfig;

    fn config(dir: &std::path::Path, auto_create: bool) -> BrokerConfig {
        let raw = RawBrokerConfig {
            store_path_root_dir: dir.display().to_string(),
            listen: "127.0.0.1:0".into(),
            auto_create_topic_enable: auto_create,
            ..Default::default()
        };
        BrokerConfig::try_from(raw).expect("valid config")
    }

    #[test]
    fn system_topics_exist_after_load_and_reload_keeps_topics() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(dir.path(), true);
        let table = TopicConfigTable::load(&cfg).expect("load");
        let tbw = table.get(AUTO_CREATE_TOPIC_KEY_TOPIC).expect("TBW102");
        assert_eq!(tbw.perm, 7);
        assert_eq!(tbw.write_queue_nums, 8);
        assert_eq!(
            table
                .get(SCHEDULE_TOPIC_XXXX)
                .expect("schedule")
                .write_queue_nums,
            18
        );
        assert!(table.contains(RMQ_SYS_TRANS_HALF_TOPIC));
        let v1 = table.data_version();
        table.put(TopicConfig::new("T1", 4)).expect("put");
        assert!(table.data_version().counter > v1.counter);
        drop(table);
        let again = TopicConfigTable::load(&cfg).expect("reload");
        assert_eq!(again.get("T1").expect("T1 persisted").read_queue_nums, 4);
    }

    #[test]
    fn auto_create_follows_template_rules() {
        let dir = tempfile::tempdir().expect("tempdir");
        let table = TopicConfigTable::load(&config(dir.path(), true)).expect("load");
        let (created, new) = table
            .create_topic_in_send("T2", AUTO_CREATE_TOPIC_KEY_TOPIC, 64, 0)
            .expect("io")
            .expect("created");
        assert!(new);
        assert_eq!(created.write_queue_nums, 8);
        assert_eq!(created.perm, 6);
        assert!(table
            .create_topic_in_send("T3", "NoSuchTemplate", 4, 0)
            .expect("io")
            .is_none());

        let dir2 = tempfile::tempdir().expect("tempdir");
        let off = TopicConfigTable::load(&config(dir2.path(), false)).expect("load");
        assert!(off
            .create_topic_in_send("T2", AUTO_CREATE_TOPIC_KEY_TOPIC, 4, 0)
            .expect("io")
            .is_none());
    }
}
