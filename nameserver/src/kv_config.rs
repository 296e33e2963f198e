//! The NameServer's key/value store: namespace → key → value (RocketMQ's `KVConfigManager`),
//! served by PUT/GET/DELETE_KV_CONFIG and GET_KVLIST_BY_NAMESPACE.
//!
//! Namespace [`NAMESPACE_ORDER_TOPIC_CONFIG`] maps a topic to its order configuration
//! (`brokerName:queueNums;...`); it feeds `orderTopicConf` of routes when order messages are
//! enabled, and its whole table is returned to brokers on REGISTER_BROKER.
//!
//! # Persistence
//!
//! With a file ([`KvConfig::open`] with `Some(path)`, config key `kv_config_path`) the store
//! is loaded at start and rewritten after every change, in Java's `kvConfig.json` format
//! (`KVConfigSerializeWrapper`: `{"configTable":{"<namespace>":{"<key>":"<value>"}}}`), so a
//! file written by a Java NameServer loads here and the reverse. Each write is atomic: the
//! whole table goes to `<path>.tmp`, which is fsynced and renamed over `<path>`, and the
//! directory is fsynced. A change becomes visible to readers only after its file write
//! succeeded, so the file never lags behind what clients were told (a failed write answers
//! an error and changes nothing). Without a file the store lives in memory only.
//!
//! # Contract
//!
//! Writers (put, delete) are serialized by one mutex, held across the file write; readers
//! take a short `RwLock` read and are never blocked by disk I/O. No lock is held across an
//! `.await` (everything here is synchronous).

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tern_common::protocol::body::KVTable;
use tracing::info;

/// RocketMQ's `NamesrvUtil.NAMESPACE_ORDER_TOPIC_CONFIG`.
pub const NAMESPACE_ORDER_TOPIC_CONFIG: &str = "ORDER_TOPIC_CONFIG";

/// Upper bound on the number of namespaces and on the keys per namespace, so that a client
/// looping over PUT_KV_CONFIG cannot grow the store without bound.
pub const MAX_KV_ENTRIES: usize = 100_000;

/// Largest `kvConfig.json` accepted at load, bytes (64 MiB); a larger file is refused rather
/// than read into memory.
pub const MAX_KV_FILE_LEN: u64 = 64 * 1024 * 1024;

/// Why a KV operation or the load of the KV file failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KvConfigError {
    /// The store already holds [`MAX_KV_ENTRIES`] namespaces, or the namespace that many keys.
    #[error("kv config is full ({max} entries)")]
    Full {
        /// The limit that was hit.
        max: usize,
    },
    /// A put named an empty (or all-blank) namespace or key.
    #[error("kv config {field} must not be empty")]
    EmptyName {
        /// `namespace` or `key`.
        field: &'static str,
    },
    /// Reading or writing the KV file failed; on a write the change was not applied.
    #[error("kv config file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The KV file exists but is not a `kvConfig.json` document within the limits.
    #[error("kv config file {path} is invalid: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

type Table = HashMap<String, BTreeMap<String, String>>;

/// The on-disk form (Java `KVConfigSerializeWrapper`).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct KvConfigFile {
    config_table: BTreeMap<String, BTreeMap<String, String>>,
}

/// The KV store.
#[derive(Debug, Default)]
pub struct KvConfig {
    table: RwLock<Table>,
    /// The file every change is written to; `None`: memory only.
    path: Option<PathBuf>,
    /// Serializes writers, held across the file write so writes land in change order.
    writer: Mutex<()>,
}

impl KvConfig {
    /// An empty store that lives in memory only.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store persisted to `path` (loaded from it when the file exists), or memory only when
    /// `path` is `None`. A missing file is an empty store; its parent directory is created on
    /// the first write.
    ///
    /// # Errors
    /// [`KvConfigError::Io`] if the file exists but cannot be read,
    /// [`KvConfigError::Corrupt`] if it is larger than [`MAX_KV_FILE_LEN`], is not a
    /// `kvConfig.json` document, or holds more than [`MAX_KV_ENTRIES`] namespaces or keys
    /// per namespace.
    pub fn open(path: Option<PathBuf>) -> Result<Self, KvConfigError> {
        let Some(path) = path else {
            return Ok(Self::new());
        };
        let table = load(&path)?;
        if !table.is_empty() {
            info!(
                path = %path.display(),
                namespaces = table.len(),
                "kv config loaded"
            );
        }
        Ok(KvConfig {
            table: RwLock::new(table),
            path: Some(path),
            writer: Mutex::new(()),
        })
    }

    /// The file this store persists to, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Sets `namespace`/`key` to `value` (and writes the file, when there is one).
    ///
    /// # Errors
    /// [`KvConfigError::EmptyName`] for an empty or blank namespace or key;
    /// [`KvConfigError::Full`] when the store or the namespace is at [`MAX_KV_ENTRIES`] and the
    /// entry is new; [`KvConfigError::Io`] when the file write failed (nothing changed).
    pub fn put(&self, namespace: &str, key: &str, value: &str) -> Result<(), KvConfigError> {
        if namespace.trim().is_empty() {
            return Err(KvConfigError::EmptyName { field: "namespace" });
        }
        if key.trim().is_empty() {
            return Err(KvConfigError::EmptyName { field: "key" });
        }
        let _writer = self.writer.lock();
        {
            let table = self.table.read();
            if !table.contains_key(namespace) && table.len() >= MAX_KV_ENTRIES {
                return Err(KvConfigError::Full {
                    max: MAX_KV_ENTRIES,
                });
            }
            if let Some(ns) = table.get(namespace) {
                if ns.get(key).map(String::as_str) == Some(value) {
                    return Ok(());
                }
                if !ns.contains_key(key) && ns.len() >= MAX_KV_ENTRIES {
                    return Err(KvConfigError::Full {
                        max: MAX_KV_ENTRIES,
                    });
                }
            }
        }
        self.change(|table| {
            table
                .entry(namespace.to_string())
                .or_default()
                .insert(key.to_string(), value.to_string());
        })
    }

    /// The value of `namespace`/`key`.
    pub fn get(&self, namespace: &str, key: &str) -> Option<String> {
        self.table.read().get(namespace)?.get(key).cloned()
    }

    /// Removes `namespace`/`key` (and the namespace when it becomes empty), writing the file
    /// when there is one. Returns whether the entry existed.
    ///
    /// # Errors
    /// [`KvConfigError::Io`] when the file write failed (nothing changed).
    pub fn delete(&self, namespace: &str, key: &str) -> Result<bool, KvConfigError> {
        let _writer = self.writer.lock();
        let exists = self
            .table
            .read()
            .get(namespace)
            .is_some_and(|ns| ns.contains_key(key));
        if !exists {
            return Ok(false);
        }
        self.change(|table| {
            if let Some(ns) = table.get_mut(namespace) {
                ns.remove(key);
                if ns.is_empty() {
                    table.remove(namespace);
                }
            }
        })?;
        Ok(true)
    }

    /// Every entry of `namespace`, or `None` when it has none.
    pub fn list(&self, namespace: &str) -> Option<KVTable> {
        let table = self.table.read();
        let ns = table.get(namespace).filter(|ns| !ns.is_empty())?;
        Some(KVTable { table: ns.clone() })
    }

    /// Applies `edit`: in memory only, or — with a file — to a copy that is written to the
    /// file first and published only once the write succeeded. The caller holds `writer`.
    fn change(&self, edit: impl FnOnce(&mut Table)) -> Result<(), KvConfigError> {
        let Some(path) = &self.path else {
            edit(&mut self.table.write());
            return Ok(());
        };
        let mut next = self.table.read().clone();
        edit(&mut next);
        store(path, &next)?;
        *self.table.write() = next;
        Ok(())
    }
}

/// Reads `path` into a table (empty when the file does not exist).
fn load(path: &Path) -> Result<Table, KvConfigError> {
    let io = |source| KvConfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    let corrupt = |reason: String| KvConfigError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Table::new()),
        Err(err) => return Err(io(err)),
    };
    let mut text = Vec::new();
    file.take(MAX_KV_FILE_LEN + 1)
        .read_to_end(&mut text)
        .map_err(io)?;
    if text.len() as u64 > MAX_KV_FILE_LEN {
        return Err(corrupt(format!("larger than {MAX_KV_FILE_LEN} bytes")));
    }
    if text.iter().all(u8::is_ascii_whitespace) {
        return Ok(Table::new());
    }
    let parsed: KvConfigFile =
        serde_json::from_slice(&text).map_err(|err| corrupt(err.to_string()))?;
    if parsed.config_table.len() > MAX_KV_ENTRIES
        || parsed
            .config_table
            .values()
            .any(|ns| ns.len() > MAX_KV_ENTRIES)
    {
        return Err(corrupt(format!("more than {MAX_KV_ENTRIES} entries")));
    }
    Ok(parsed
        .config_table
        .into_iter()
        .filter(|(_, ns)| !ns.is_empty())
        .collect())
}

/// Writes `table` to `path` atomically: `<path>.tmp`, fsync, rename, fsync the directory.
fn store(path: &Path, table: &Table) -> Result<(), KvConfigError> {
    let io = |source| KvConfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    let wrapper = KvConfigFile {
        config_table: table
            .iter()
            .map(|(ns, entries)| (ns.clone(), entries.clone()))
            .collect(),
    };
    let bytes = serde_json::to_vec_pretty(&wrapper).map_err(|err| io(err.into()))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(io)?;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io)?;
        file.write_all(&bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    fs::rename(&tmp, path).map_err(io)?;
    // Make the rename itself durable.
    File::open(&dir).and_then(|d| d.sync_all()).map_err(io)?;
    Ok(())
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
        assert!(kv.delete("ns", "k").unwrap());
        assert!(!kv.delete("ns", "k").unwrap());
        assert!(kv.delete("ns", "j").unwrap());
        assert!(kv.list("ns").is_none());
        assert!(!kv.delete("other", "k").unwrap());
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

    #[test]
    fn empty_namespace_or_key_is_refused() {
        let kv = KvConfig::new();
        for (ns, key, field) in [
            ("", "k", "namespace"),
            (" ", "k", "namespace"),
            ("ns", "", "key"),
        ] {
            match kv.put(ns, key, "v") {
                Err(KvConfigError::EmptyName { field: f }) => assert_eq!(f, field),
                other => panic!("{ns:?}/{key:?}: {other:?}"),
            }
        }
        assert!(kv.list("").is_none());
        // An empty value is allowed, as in Java.
        kv.put("ns", "k", "").unwrap();
        assert_eq!(kv.get("ns", "k").as_deref(), Some(""));
    }

    #[test]
    fn changes_survive_a_reopen_in_java_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("namesrv").join("kvConfig.json");
        let kv = KvConfig::open(Some(path.clone())).unwrap();
        kv.put(NAMESPACE_ORDER_TOPIC_CONFIG, "T", "broker-a:4")
            .unwrap();
        kv.put("ns", "k", "v").unwrap();
        kv.put("ns", "gone", "x").unwrap();
        assert!(kv.delete("ns", "gone").unwrap());
        drop(kv);
        let text = std::fs::read_to_string(&path).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["configTable"]["ns"]["k"], "v");
        assert_eq!(
            json["configTable"][NAMESPACE_ORDER_TOPIC_CONFIG]["T"],
            "broker-a:4"
        );
        assert!(json["configTable"]["ns"].get("gone").is_none());
        assert!(!path.with_extension("json.tmp").exists());

        let kv = KvConfig::open(Some(path)).unwrap();
        assert_eq!(kv.get("ns", "k").as_deref(), Some("v"));
        assert_eq!(kv.get("ns", "gone"), None);
        assert_eq!(
            kv.get(NAMESPACE_ORDER_TOPIC_CONFIG, "T").as_deref(),
            Some("broker-a:4")
        );
    }

    #[test]
    fn a_java_written_file_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kvConfig.json");
        std::fs::write(
            &path,
            "{\n\t\"configTable\":{\n\t\t\"ORDER_TOPIC_CONFIG\":{\n\t\t\t\"T\":\"broker-a:8\"\n\t\t},\"empty\":{}\n\t}\n}",
        )
        .unwrap();
        let kv = KvConfig::open(Some(path)).unwrap();
        assert_eq!(
            kv.get(NAMESPACE_ORDER_TOPIC_CONFIG, "T").as_deref(),
            Some("broker-a:8")
        );
        assert!(kv.list("empty").is_none());
    }

    #[test]
    fn missing_or_blank_file_is_empty_and_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kvConfig.json");
        assert!(KvConfig::open(Some(path.clone()))
            .unwrap()
            .list("ns")
            .is_none());
        std::fs::write(&path, "  \n").unwrap();
        assert!(KvConfig::open(Some(path.clone())).is_ok());
        std::fs::write(&path, "{\"configTable\": [1, 2]").unwrap();
        assert!(matches!(
            KvConfig::open(Some(path)),
            Err(KvConfigError::Corrupt { .. })
        ));
    }

    #[test]
    fn a_failed_write_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("blocker");
        let kv = KvConfig::open(Some(blocker.join("kvConfig.json"))).unwrap();
        // The file's directory becomes a regular file, so every write fails.
        std::fs::write(&blocker, "x").unwrap();
        assert!(matches!(
            kv.put("ns", "k", "v"),
            Err(KvConfigError::Io { .. })
        ));
        assert_eq!(kv.get("ns", "k"), None);
    }

    #[test]
    fn memory_only_store_has_no_path() {
        let kv = KvConfig::open(None).unwrap();
        assert!(kv.path().is_none());
        kv.put("ns", "k", "v").unwrap();
        assert_eq!(kv.get("ns", "k").as_deref(), Some("v"));
    }
}
