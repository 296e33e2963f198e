//! Consumer offset stores: where a group's progress per queue lives.
//!
//! - Clustering: the broker keeps the offsets ([`OffsetStore::Remote`], Java's
//!   `RemoteBrokerOffsetStore`). The client caches the offset it may commit per queue and
//!   persists it with UPDATE_CONSUMER_OFFSET (periodically, on queue removal and at shutdown);
//!   the pull request also piggy-backs it.
//! - Broadcasting: every consumer keeps its own offsets in a local JSON file
//!   ([`OffsetStore::Local`], Java's `LocalFileOffsetStore`), written atomically (temporary
//!   file, fsync, rename).
//!
//! The in-memory value only moves forward through [`OffsetStore::update`] with
//! `increase_only` (acknowledgements arriving late never move it back); resets use
//! `increase_only = false`.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tern_common::route::MessageQueue;

use crate::error::{ClientError, Result};

/// One entry of the local offset file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
struct OffsetEntry {
    topic: String,
    broker_name: String,
    queue_id: i32,
    offset: i64,
}

/// The local offset file: `{"offsetTable":[{"topic":..,"brokerName":..,"queueId":..,"offset":..}]}`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct OffsetFile {
    offset_table: Vec<OffsetEntry>,
}

/// Where a consumer's offsets are kept; see the module doc.
#[derive(Debug)]
pub(crate) enum OffsetStore {
    /// Broker-side offsets (clustering).
    Remote {
        /// Offsets to commit, by queue.
        table: Mutex<HashMap<MessageQueue, i64>>,
    },
    /// A local JSON file (broadcasting).
    Local {
        /// Offsets, by queue.
        table: Mutex<HashMap<MessageQueue, i64>>,
        /// The file.
        path: PathBuf,
    },
}

impl OffsetStore {
    /// A broker-side store.
    pub(crate) fn remote() -> Self {
        OffsetStore::Remote {
            table: Mutex::new(HashMap::new()),
        }
    }

    /// A local-file store at `path`, loading the file if it exists.
    ///
    /// # Errors
    /// [`ClientError::Io`] if the file exists but cannot be read; [`ClientError::Body`] if it
    /// is not an offset file.
    pub(crate) fn local(path: PathBuf) -> Result<Self> {
        let mut table = HashMap::new();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let file: OffsetFile = serde_json::from_slice(&bytes).map_err(|e| {
                    ClientError::Body(format!("offset file {}: {e}", path.display()))
                })?;
                for e in file.offset_table {
                    table.insert(
                        MessageQueue::new(e.topic, e.broker_name, e.queue_id),
                        e.offset,
                    );
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(ClientError::Io {
                    path: path.display().to_string(),
                    source,
                })
            }
        }
        Ok(OffsetStore::Local {
            table: Mutex::new(table),
            path,
        })
    }

    fn table(&self) -> &Mutex<HashMap<MessageQueue, i64>> {
        match self {
            OffsetStore::Remote { table } | OffsetStore::Local { table, .. } => table,
        }
    }

    /// True for the local-file store.
    pub(crate) fn is_local(&self) -> bool {
        matches!(self, OffsetStore::Local { .. })
    }

    /// Sets the offset of `mq`; with `increase_only` a smaller value is ignored.
    pub(crate) fn update(&self, mq: &MessageQueue, offset: i64, increase_only: bool) {
        let mut table = self.table().lock();
        let entry = table.entry(mq.clone()).or_insert(offset);
        if !increase_only || offset > *entry {
            *entry = offset;
        }
    }

    /// The cached offset of `mq`.
    pub(crate) fn read(&self, mq: &MessageQueue) -> Option<i64> {
        self.table().lock().get(mq).copied()
    }

    /// A copy of the offsets of `topic`'s queues (Java `cloneOffsetTable`), for
    /// GET_CONSUMER_STATUS_FROM_CLIENT.
    pub(crate) fn topic_offsets(&self, topic: &str) -> tern_common::protocol::body::MqMap<i64> {
        self.table()
            .lock()
            .iter()
            .filter(|(mq, _)| mq.topic == topic)
            .map(|(mq, offset)| (mq.clone(), *offset))
            .collect()
    }

    /// Forgets `mq` (queue no longer assigned).
    pub(crate) fn remove(&self, mq: &MessageQueue) {
        if !self.is_local() {
            self.table().lock().remove(mq);
        }
    }

    /// Writes the local file (no-op for the remote store, whose persistence needs the
    /// network and is done by the consumer).
    ///
    /// # Errors
    /// [`ClientError::Io`] when the file cannot be written.
    pub(crate) fn persist_local(&self) -> Result<()> {
        let OffsetStore::Local { table, path } = self else {
            return Ok(());
        };
        let mut entries: Vec<OffsetEntry> = table
            .lock()
            .iter()
            .map(|(mq, offset)| OffsetEntry {
                topic: mq.topic.clone(),
                broker_name: mq.broker_name.clone(),
                queue_id: mq.queue_id,
                offset: *offset,
            })
            .collect();
        entries.sort_by(|a, b| {
            (&a.topic, &a.broker_name, a.queue_id).cmp(&(&b.topic, &b.broker_name, b.queue_id))
        });
        let json = serde_json::to_vec_pretty(&OffsetFile {
            offset_table: entries,
        })
        .map_err(|e| ClientError::Body(e.to_string()))?;
        write_atomically(path, &json)
    }
}

/// Writes `bytes` to `path` through a temporary file, fsync and rename, so a crash leaves
/// either the old or the new file.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let io = |source| ClientError::Io {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_increase_only_never_moves_back() {
        let store = OffsetStore::remote();
        let mq = MessageQueue::new("T", "b", 0);
        store.update(&mq, 10, true);
        store.update(&mq, 5, true);
        assert_eq!(store.read(&mq), Some(10));
        store.update(&mq, 5, false);
        assert_eq!(store.read(&mq), Some(5));
        store.remove(&mq);
        assert_eq!(store.read(&mq), None);
    }

    #[test]
    fn local_store_round_trips_through_its_file() {
        let dir = std::env::temp_dir().join(format!("tern-offsets-{}", std::process::id()));
        let path = dir.join("g1").join("offsets.json");
        let _ = std::fs::remove_file(&path);
        let store = OffsetStore::local(path.clone()).expect("no file yet");
        let a = MessageQueue::new("T", "b", 0);
        let b = MessageQueue::new("T", "b", 1);
        store.update(&a, 3, true);
        store.update(&b, 7, true);
        store.persist_local().expect("write");
        // Removing a queue from a local store keeps its offset (broadcasting consumers
        // resume from it after a restart).
        store.remove(&a);
        let loaded = OffsetStore::local(path.clone()).expect("read back");
        assert_eq!(loaded.read(&a), Some(3));
        assert_eq!(loaded.read(&b), Some(7));
        std::fs::write(&path, b"not json").expect("corrupt");
        assert!(OffsetStore::local(path).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
