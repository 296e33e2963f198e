//! [`ConsumerOffsetTable`]: committed consumer offsets (RocketMQ `ConsumerOffsetManager`).
//!
//! Keyed like Java, `topic@group` → queue id → next offset to consume. Commits only touch
//! memory; a background task snapshots the table to `<store>/config/consumerOffsets` every
//! `offset_persist_interval` (5 s) and once more on a clean stop, so a crash loses at most one
//! interval of commits (clients re-deliver from the older offset: at-least-once).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{Mutex, RwLock};

use crate::config::BrokerConfig;
use crate::snapshot;

/// File name of the offset snapshot under `<store>/config/`.
pub const CONSUMER_OFFSETS_FILE: &str = "consumerOffsets";

type Table = HashMap<String, BTreeMap<i32, i64>>;

/// The consumer offset table of one broker.
#[derive(Debug)]
pub struct ConsumerOffsetTable {
    offsets: RwLock<Table>,
    dirty: AtomicBool,
    path: PathBuf,
    persist_lock: Mutex<()>,
}

fn key(group: &str, topic: &str) -> String {
    format!("{topic}@{group}")
}

impl ConsumerOffsetTable {
    /// Loads the snapshot (or starts empty).
    ///
    /// # Errors
    /// I/O errors reading the snapshot.
    pub fn load(config: &BrokerConfig) -> io::Result<Self> {
        let path = config.config_dir().join(CONSUMER_OFFSETS_FILE);
        let stored: BTreeMap<String, BTreeMap<i32, i64>> =
            snapshot::load(&path)?.unwrap_or_default();
        Ok(ConsumerOffsetTable {
            offsets: RwLock::new(stored.into_iter().collect()),
            dirty: AtomicBool::new(false),
            path,
            persist_lock: Mutex::new(()),
        })
    }

    /// Stores `offset` as the group's next offset for (topic, queue). A negative queue id or
    /// offset is never stored (callers validate and answer the client; this is the last
    /// line of defence so the table and its snapshot hold no garbage).
    pub fn commit(&self, group: &str, topic: &str, queue_id: i32, offset: i64) {
        if queue_id < 0 || offset < 0 {
            tracing::debug!(
                group,
                topic,
                queue_id,
                offset,
                "negative consumer offset ignored"
            );
            return;
        }
        self.offsets
            .write()
            .entry(key(group, topic))
            .or_default()
            .insert(queue_id, offset);
        self.dirty.store(true, Ordering::Release);
    }

    /// The committed offset, if any.
    pub fn query(&self, group: &str, topic: &str, queue_id: i32) -> Option<i64> {
        self.offsets
            .read()
            .get(&key(group, topic))
            .and_then(|q| q.get(&queue_id).copied())
    }

    /// All committed offsets of (group, topic): queue id → offset.
    pub fn offsets_of(&self, group: &str, topic: &str) -> BTreeMap<i32, i64> {
        self.offsets
            .read()
            .get(&key(group, topic))
            .cloned()
            .unwrap_or_default()
    }

    /// Topics for which `group` has committed offsets.
    pub fn topics_of_group(&self, group: &str) -> Vec<String> {
        let suffix = format!("@{group}");
        self.offsets
            .read()
            .keys()
            .filter_map(|k| k.strip_suffix(&suffix).map(str::to_string))
            .collect()
    }

    /// Drops every offset of `topic` (DELETE_TOPIC_IN_BROKER).
    pub fn remove_topic(&self, topic: &str) {
        let prefix = format!("{topic}@");
        self.offsets.write().retain(|k, _| !k.starts_with(&prefix));
        self.dirty.store(true, Ordering::Release);
    }

    /// Writes the snapshot if anything changed since the last write.
    ///
    /// # Errors
    /// I/O errors from the write (the table stays dirty and is retried next time).
    pub fn persist(&self) -> io::Result<()> {
        let _guard = self.persist_lock.lock();
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let copy: BTreeMap<String, BTreeMap<i32, i64>> = self
            .offsets
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        snapshot::save(&self.path, &copy).inspect_err(|_| self.dirty.store(true, Ordering::Release))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawBrokerConfig;

    #[test]
    fn commits_survive_persist_and_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let raw = RawBrokerConfig {
            store_path_root_dir: dir.path().display().to_string(),
            listen: "127.0.0.1:0".into(),
            ..Default::default()
        };
        let config = BrokerConfig::try_from(raw).expect("config");
        let table = ConsumerOffsetTable::load(&config).expect("load");
        assert_eq!(table.query("g", "T", 0), None);
        table.commit("g", "T", 0, 42);
        table.commit("g", "T", 3, 7);
        table.commit("g2", "U", 1, 1);
        assert_eq!(table.query("g", "T", 0), Some(42));
        assert_eq!(table.topics_of_group("g"), vec!["T".to_string()]);
        table.persist().expect("persist");
        let again = ConsumerOffsetTable::load(&config).expect("reload");
        assert_eq!(
            again.offsets_of("g", "T"),
            BTreeMap::from([(0, 42), (3, 7)])
        );
        again.remove_topic("T");
        assert_eq!(again.query("g", "T", 0), None);
        assert_eq!(again.query("g2", "U", 1), Some(1));
    }

    #[test]
    fn negative_queue_ids_and_offsets_are_never_stored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let raw = RawBrokerConfig {
            store_path_root_dir: dir.path().display().to_string(),
            listen: "127.0.0.1:0".into(),
            ..Default::default()
        };
        let config = BrokerConfig::try_from(raw).expect("config");
        let table = ConsumerOffsetTable::load(&config).expect("load");
        table.commit("g", "T", 0, 5);
        table.commit("g", "T", 0, -1);
        table.commit("g", "T", -1, 3);
        assert_eq!(table.offsets_of("g", "T"), BTreeMap::from([(0, 5)]));
    }
}
