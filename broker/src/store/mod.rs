//! The message store: a synchronous API over memory-mapped files, with background threads for
//! dispatch (reput), flushing and retention. It knows nothing about requests or networking.
//!
//! Contract: `put_message` returns once the record is in the CommitLog map (and, under
//! SYNC_FLUSH with `WAIT` not `false`, once a group-commit flush covers it or
//! `sync_flush_timeout` passed — then `FlushDiskTimeout`, the message still stored). Reads
//! never see bytes past the published position. ConsumeQueues and the index are built
//! asynchronously by the reput thread; `wait_dispatched` waits for it. After a failed write or
//! flush the store refuses appends (`ServiceNotAvailable`) and keeps serving reads.
//! Byte layouts and the recovery contract are in `docs/design/store.md`.
//!
//! # Layout
//! - [`mapped_file`]: `MappedFile`, `MappedFileQueue`, the `lock` file, the file-ops fault seam
//!   (the only `unsafe` of the store, with its soundness argument).
//! - [`commit_log`]: appends (single and batch), queue-offset assignment, reads by offset.
//! - [`consume_queue`]: 20-byte units per (topic, queue), lookups, offset by time.
//! - [`index_file`]: the key index (`IndexFile`, `IndexService`), Java string hashes.
//! - [`reput`]: the dispatcher thread and `DispatchRequest`.
//! - [`flush`]: CommitLog flush (async interval or group commit) and the 1 s logics flush.
//! - [`recovery`]: checkpoint, abort file, startup recovery.
//! - [`retention`]: expired-file deletion and the cron/disk-usage driver.
//! - [`metadata`]: atomic MessagePack snapshots for broker tables.

pub mod commit_log;
pub mod consume_queue;
pub mod flush;
pub mod index_file;
pub mod mapped_file;
pub mod metadata;
pub mod recovery;
pub mod reput;
pub mod retention;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};
use tern_common::message::id::offset_msg_id;
use tern_common::message::property::{find_property, property_key};
use tern_common::message::record::{decode_record, RecordInput};
use tern_common::message::topic::validate_topic;

pub use commit_log::{AppendError, CommitLog};
pub use consume_queue::{ConsumeQueue, CqUnit, CQ_STORE_UNIT_SIZE};
pub use mapped_file::{FileOps, MappedFileError, RealFileOps};
pub use metadata::{load_snapshot, save_snapshot};
pub use recovery::{
    RecoveryError, RecoveryReport, StoreCheckpoint, ABORT_FILE_NAME, STORE_FORMAT_VERSION,
};
pub use reput::DispatchRequest;
pub use retention::run_retention;

use consume_queue::UnitsRead;
use flush::GroupCommitRequest;
use index_file::IndexService;
use mapped_file::StoreLock;

/// Name of the lock file in the store root.
pub const LOCK_FILE_NAME: &str = "lock";

/// RocketMQ's default `messageDelayLevel`.
pub const DEFAULT_DELAY_LEVELS: &str = "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h";

/// When a producer's acknowledgement waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FlushDiskType {
    /// Acknowledge after the append; flush every `flush_interval_commit_log`.
    #[default]
    AsyncFlush,
    /// Acknowledge after a group-commit flush covering the message.
    SyncFlush,
}

/// Validated store configuration. Field names follow RocketMQ's `MessageStoreConfig`.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Store root (`commitlog/`, `consumequeue/`, `index/`, `config/`, `checkpoint`, `abort`, `lock`).
    pub store_path_root_dir: PathBuf,
    /// CommitLog file size in bytes (default 1 GiB).
    pub mapped_file_size_commit_log: usize,
    /// ConsumeQueue units per file (default 300 000, i.e. 6 000 000-byte files).
    pub consume_queue_units_per_file: usize,
    /// Index hash slots per file (default 5 000 000).
    pub max_hash_slot_num: usize,
    /// Index entries per file (default 20 000 000).
    pub max_index_num: usize,
    /// Flush mode (default ASYNC_FLUSH).
    pub flush_disk_type: FlushDiskType,
    /// ASYNC_FLUSH interval (default 500 ms).
    pub flush_interval_commit_log: Duration,
    /// ConsumeQueue/index/checkpoint flush interval (default 1 s).
    pub flush_interval_consume_queue: Duration,
    /// How long a SYNC_FLUSH producer waits before FLUSH_DISK_TIMEOUT (default 5 s).
    pub sync_flush_timeout: Duration,
    /// Largest encoded record in bytes (default 4 MiB).
    pub max_message_size: usize,
    /// Hours a CommitLog file is kept after its last message (default 72).
    pub file_reserved_hours: u64,
    /// Cron expression (with seconds) of the daily deletion pass (default `0 0 4 * * *`).
    pub delete_when: String,
    /// Disk usage ratio above which files are deleted at once (default 0.75).
    pub disk_max_used_space_ratio: f64,
    /// Disk usage ratio above which appends are refused (default 0.95).
    pub disk_full_ratio: f64,
    /// Check body CRCs during a clean-stop recovery too (crash recovery always checks).
    pub check_crc_on_recover: bool,
    /// Delay per level (level N is entry N-1), default [`DEFAULT_DELAY_LEVELS`].
    pub delay_level_table: Vec<Duration>,
    /// File operation hooks (fault injection seam); [`RealFileOps`] in production.
    pub file_ops: Arc<dyn FileOps>,
}

impl StoreConfig {
    /// Defaults with the given root.
    pub fn new(store_path_root_dir: impl Into<PathBuf>) -> Self {
        Self {
            store_path_root_dir: store_path_root_dir.into(),
            mapped_file_size_commit_log: 1024 * 1024 * 1024,
            consume_queue_units_per_file: 300_000,
            max_hash_slot_num: 5_000_000,
            max_index_num: 20_000_000,
            flush_disk_type: FlushDiskType::AsyncFlush,
            flush_interval_commit_log: Duration::from_millis(500),
            flush_interval_consume_queue: Duration::from_secs(1),
            sync_flush_timeout: Duration::from_secs(5),
            max_message_size: 4 * 1024 * 1024,
            file_reserved_hours: 72,
            delete_when: "0 0 4 * * *".to_string(),
            disk_max_used_space_ratio: 0.75,
            disk_full_ratio: 0.95,
            check_crc_on_recover: true,
            delay_level_table: parse_delay_level_table(DEFAULT_DELAY_LEVELS)
                .expect("invariant: the default delay table parses"),
            file_ops: Arc::new(RealFileOps),
        }
    }

    /// Small files for tests: 64 KiB CommitLog files, 100-unit ConsumeQueue files, 64 index
    /// slots and 256 index entries per file, 100 ms flush intervals.
    pub fn with_small_files(mut self) -> Self {
        self.mapped_file_size_commit_log = 64 * 1024;
        self.consume_queue_units_per_file = 100;
        self.max_hash_slot_num = 64;
        self.max_index_num = 256;
        self.max_message_size = 16 * 1024;
        self.flush_interval_commit_log = Duration::from_millis(100);
        self.flush_interval_consume_queue = Duration::from_millis(100);
        self
    }

    fn validate(&self) -> Result<(), StoreError> {
        let bad = |reason| Err(StoreError::InvalidConfig { reason });
        if self.mapped_file_size_commit_log < 4096 {
            return bad("mapped_file_size_commit_log below 4096 bytes");
        }
        if self.consume_queue_units_per_file == 0
            || self.max_hash_slot_num == 0
            || self.max_index_num < 2
        {
            return bad("consume queue or index sizes are zero");
        }
        if self.max_message_size == 0 {
            return bad("max_message_size is zero");
        }
        Ok(())
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self::new("store")
    }
}

/// Parses a delay table such as `"1s 5s 1m 2h 1d"` (units s, m, h, d; also `ms`).
///
/// # Errors
/// `InvalidConfig` for an empty table or a bad token.
pub fn parse_delay_level_table(s: &str) -> Result<Vec<Duration>, StoreError> {
    let bad = StoreError::InvalidConfig {
        reason: "bad delay level token",
    };
    let mut out = Vec::new();
    for token in s.split_whitespace() {
        let (num, unit_ms) = if let Some(n) = token.strip_suffix("ms") {
            (n, 1)
        } else if let Some(n) = token.strip_suffix('s') {
            (n, 1000)
        } else if let Some(n) = token.strip_suffix('m') {
            (n, 60_000)
        } else if let Some(n) = token.strip_suffix('h') {
            (n, 3_600_000)
        } else if let Some(n) = token.strip_suffix('d') {
            (n, 86_400_000)
        } else {
            return Err(bad);
        };
        let n: u64 = num.parse().map_err(|_| StoreError::InvalidConfig {
            reason: "bad delay level token",
        })?;
        out.push(Duration::from_millis(n.checked_mul(unit_ms).ok_or(
            StoreError::InvalidConfig {
                reason: "delay overflows",
            },
        )?));
    }
    if out.is_empty() {
        return Err(StoreError::InvalidConfig {
            reason: "empty delay level table",
        });
    }
    Ok(out)
}

/// Errors of opening and running the store (expected outcomes are statuses, not errors).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another store holds the lock file of this root.
    #[error("store {root} is locked by another running store")]
    Locked {
        /// The store root.
        root: PathBuf,
        /// The lock error.
        #[source]
        source: std::io::Error,
    },
    /// An I/O error outside the mapped files.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A mapped-file error.
    #[error(transparent)]
    MappedFile(#[from] MappedFileError),
    /// Recovery failed.
    #[error("recovery failed: {0}")]
    Recovery(#[source] RecoveryError),
    /// The configuration is invalid.
    #[error("invalid store config: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: &'static str,
    },
    /// A topic name cannot be a directory name.
    #[error("invalid topic name")]
    InvalidTopic,
    /// The retention scheduler failed.
    #[error("retention scheduler: {0}")]
    Scheduler(#[source] tokio_cron_scheduler::JobSchedulerError),
}

/// Outcome of an append (RocketMQ `PutMessageStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PutMessageStatus {
    /// Stored (and flushed, if waited for).
    PutOk,
    /// Stored, but the flush did not complete within `sync_flush_timeout` (or failed).
    FlushDiskTimeout,
    /// A new CommitLog file could not be created; the store is read-only.
    CreateMappedFileFailed,
    /// Too large, bad topic name, mixed batch, or not encodable.
    MessageIllegal,
    /// Property string above 32767 bytes.
    PropertiesSizeExceeded,
    /// The store refuses writes (after an I/O error, disk full, or shut down).
    ServiceNotAvailable,
    /// Too many producers waiting for a flush.
    OsPageCacheBusy,
    /// Anything else.
    UnknownError,
}

/// Where a successful append landed.
///
/// Offset message ids are not formatted at append time (that would allocate a string per
/// record on the hot path); [`AppendResult::msg_id`] / [`AppendResult::msg_ids`] format them
/// when asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendResult {
    /// CommitLog offset of the first record.
    pub phy_offset: i64,
    /// Bytes written.
    pub wrote_bytes: usize,
    /// Queue offset of the first record (0 for PREPARED/ROLLBACK).
    pub queue_offset: i64,
    /// Number of records.
    pub msg_count: usize,
    /// Store timestamp (ms).
    pub store_timestamp: i64,
    /// STOREHOST of the first record (a batch comes from one broker).
    store_host: SocketAddr,
    /// CommitLog offsets of the records after the first (empty for a single record).
    later_phy_offsets: Vec<i64>,
}

impl AppendResult {
    /// The STOREHOST written in the records (that of the first record of a batch).
    pub fn store_host(&self) -> SocketAddr {
        self.store_host
    }

    /// CommitLog offset of record `index` (`None` past the last record).
    pub fn record_phy_offset(&self, index: usize) -> Option<i64> {
        match index {
            0 => Some(self.phy_offset),
            i => self.later_phy_offsets.get(i - 1).copied(),
        }
    }

    /// Offset message id of record `index` (PROTOCOL.md §3.6), `None` past the last record.
    pub fn msg_id(&self, index: usize) -> Option<String> {
        self.record_phy_offset(index)
            .map(|phy| offset_msg_id(self.store_host, phy))
    }

    /// Offset message id of every record, in order (PROTOCOL.md §3.6).
    pub fn msg_ids(&self) -> Vec<String> {
        (0..self.msg_count).filter_map(|i| self.msg_id(i)).collect()
    }
}

/// Result of `put_message` / `put_messages`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutMessageResult {
    /// Status.
    pub status: PutMessageStatus,
    /// Present when the records were stored (`PutOk` and `FlushDiskTimeout`).
    pub append: Option<AppendResult>,
}

impl PutMessageResult {
    fn status(status: PutMessageStatus) -> Self {
        Self {
            status,
            append: None,
        }
    }
}

/// Outcome of `get_message` (RocketMQ `GetMessageStatus`, table of PROTOCOL.md §2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GetMessageStatus {
    /// Messages selected.
    Found,
    /// The queue is empty (max offset 0).
    NoMessageInQueue,
    /// Requested offset below the min offset.
    OffsetTooSmall,
    /// Requested offset equals the max offset (nothing new yet).
    OffsetOverflowOne,
    /// Requested offset beyond the max offset.
    OffsetOverflowBadly,
    /// Units scanned, none matched the filter.
    NoMatchedMessage,
    /// The queue does not exist.
    NoMatchedLogicQueue,
    /// The CommitLog data was already deleted.
    MessageWasRemoving,
    /// The ConsumeQueue file for the offset is missing.
    OffsetFoundNull,
}

/// Result of `get_message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetMessageResult {
    /// Status.
    pub status: GetMessageStatus,
    /// Where the consumer should pull next.
    pub next_begin_offset: i64,
    /// Queue min offset.
    pub min_offset: i64,
    /// Queue max offset (next offset to be written).
    pub max_offset: i64,
    /// Stored record bytes, byte-identical to the CommitLog.
    pub messages: Vec<Bytes>,
    /// Queue offset of each message.
    pub message_queue_offsets: Vec<i64>,
}

/// Result of `query_message`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryMessageResult {
    /// Stored records whose key hash matched (the caller compares keys exactly), newest first.
    pub messages: Vec<Bytes>,
    /// End timestamp of the newest index file.
    pub index_last_update_timestamp: i64,
    /// End physical offset of the newest index file.
    pub index_last_update_phy_offset: i64,
}

/// A new message reached a ConsumeQueue (for long polling).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArrivalEvent<'a> {
    /// Topic (borrowed from the dispatched record: a listener that keeps it copies it).
    pub topic: &'a str,
    /// Queue id.
    pub queue_id: i32,
    /// New max offset of the queue (the unit's queue offset + 1).
    pub queue_offset: i64,
    /// Tags code of the message.
    pub tags_code: i64,
    /// Store timestamp (ms).
    pub store_timestamp: i64,
}

/// A callback run by the reput thread for each dispatched message; must be quick, and must not
/// register listeners (it runs under the read lock of the listener list).
pub type ArrivalListener = Arc<dyn Fn(&ArrivalEvent<'_>) + Send + Sync>;

/// A callback run by the flush thread after each successful CommitLog flush (`msync` /
/// `fdatasync`) with how long it took; must be quick (metrics use it for a histogram).
pub type FlushObserver = Arc<dyn Fn(std::time::Duration) + Send + Sync>;

/// Runtime counters and positions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreStats {
    /// Successful put calls.
    pub put_message_count: u64,
    /// Records stored.
    pub put_record_count: u64,
    /// Bytes stored.
    pub put_bytes: u64,
    /// Refused or failed put calls.
    pub put_failure_count: u64,
    /// Puts that got FLUSH_DISK_TIMEOUT.
    pub flush_timeout_count: u64,
    /// `get_message` calls.
    pub get_message_count: u64,
    /// `get_message` calls that returned messages.
    pub get_message_found_count: u64,
    /// CommitLog min offset.
    pub commit_log_min_offset: i64,
    /// CommitLog max offset.
    pub commit_log_max_offset: i64,
    /// CommitLog flushed offset.
    pub commit_log_flushed_offset: i64,
    /// Dispatched offset.
    pub dispatched_phy_offset: i64,
    /// Bytes not yet dispatched.
    pub dispatch_behind_bytes: i64,
    /// Number of ConsumeQueues.
    pub consume_queue_count: usize,
    /// Appends accepted.
    pub writable: bool,
}

#[derive(Debug, Default)]
struct Counters {
    put_message_count: AtomicU64,
    put_record_count: AtomicU64,
    put_bytes: AtomicU64,
    put_failure_count: AtomicU64,
    flush_timeout_count: AtomicU64,
    get_message_count: AtomicU64,
    get_message_found_count: AtomicU64,
}

/// RocketMQ's `RunningFlags`: why the store refuses writes.
#[derive(Debug, Default)]
struct RunningFlags(AtomicU32);

impl RunningFlags {
    const WRITE_ERROR: u32 = 1;
    const DISK_FULL: u32 = 2;
    const SHUTDOWN: u32 = 4;

    fn is_writable(&self) -> bool {
        self.0.load(Ordering::Acquire) == 0
    }
    fn set_write_error(&self) {
        if self.0.fetch_or(Self::WRITE_ERROR, Ordering::AcqRel) & Self::WRITE_ERROR == 0 {
            tracing::error!("store write failed; refusing appends, reads continue");
        }
    }
    fn set_disk_full(&self, full: bool) {
        if full {
            if self.0.fetch_or(Self::DISK_FULL, Ordering::AcqRel) & Self::DISK_FULL == 0 {
                tracing::error!("disk nearly full; refusing appends");
            }
        } else {
            self.0.fetch_and(!Self::DISK_FULL, Ordering::AcqRel);
        }
    }
    fn set_shutdown(&self) {
        self.0.fetch_or(Self::SHUTDOWN, Ordering::AcqRel);
    }
}

type QueueTable = HashMap<String, HashMap<i32, Arc<ConsumeQueue>>>;

/// State shared by the facade and the background threads.
struct Inner {
    config: StoreConfig,
    commit_log: CommitLog,
    queues: RwLock<QueueTable>,
    index: IndexService,
    checkpoint: StoreCheckpoint,
    flags: RunningFlags,
    listeners: RwLock<Arc<Vec<ArrivalListener>>>,
    flush_observer: RwLock<Option<FlushObserver>>,
    dispatched: AtomicI64,
    dispatched_store_timestamp: AtomicI64,
    dispatch_lock: Mutex<()>,
    dispatch_cv: Condvar,
    reput_corrupt_logged: AtomicBool,
    reput_thread: OnceLock<std::thread::Thread>,
    /// Set by the reput thread just before it parks (idle); an appender that swaps it back to
    /// `false` unparks it. Busy periods therefore cost appenders no futex wake.
    reput_parked: AtomicBool,
    prefault_thread: OnceLock<std::thread::Thread>,
    /// Appends crossing a multiple of this many CommitLog bytes wake the prefault thread.
    prefault_step: i64,
    stop: AtomicBool,
    stop_lock: Mutex<()>,
    stop_cv: Condvar,
    flush_requests: Mutex<Vec<GroupCommitRequest>>,
    flush_cv: Condvar,
    /// While the SYNC_FLUSH thread gathers a round: how many pending requests end the wait
    /// (0 otherwise); written and read under `flush_requests`.
    flush_gather_target: AtomicUsize,
    counters: Counters,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("root", &self.config.store_path_root_dir)
            .field("max_phy_offset", &self.commit_log.max_offset())
            .field("dispatched", &self.dispatched.load(Ordering::Relaxed))
            .field("listeners", &self.listeners.read().len())
            .finish_non_exhaustive()
    }
}

/// Whether the store accepts (topic, queue id): `queue_id >= 0` and the topic passes
/// [`validate_topic`] (RocketMQ `TopicValidator.validateTopic`: `^[%|a-zA-Z0-9_-]+$`, at most
/// 127 bytes, 255 for `%RETRY%` / `%DLQ%` topics). That rule is also what keeps a topic safe as
/// a `consumequeue/` directory name: no `/`, no `.` (so never `.` or `..`), and never longer
/// than `NAME_MAX` (255 bytes), so the store needs no extra rule of its own.
fn is_valid_queue(topic: &str, queue_id: i32) -> bool {
    queue_id >= 0 && validate_topic(topic).is_ok()
}

impl Inner {
    fn consumequeue_dir(&self) -> PathBuf {
        self.config.store_path_root_dir.join("consumequeue")
    }

    fn all_queues(&self) -> Vec<Arc<ConsumeQueue>> {
        self.queues
            .read()
            .values()
            .flat_map(|q| q.values().cloned())
            .collect()
    }

    fn find_queue(&self, topic: &str, queue_id: i32) -> Option<Arc<ConsumeQueue>> {
        self.queues
            .read()
            .get(topic)
            .and_then(|q| q.get(&queue_id))
            .cloned()
    }

    fn find_or_create_queue(
        &self,
        topic: &str,
        queue_id: i32,
    ) -> Result<Arc<ConsumeQueue>, StoreError> {
        if let Some(q) = self.find_queue(topic, queue_id) {
            return Ok(q);
        }
        if !is_valid_queue(topic, queue_id) {
            return Err(StoreError::InvalidTopic);
        }
        let mut queues = self.queues.write();
        if let Some(q) = queues.get(topic).and_then(|q| q.get(&queue_id)) {
            return Ok(q.clone());
        }
        let cq = Arc::new(ConsumeQueue::open(
            &self.consumequeue_dir(),
            topic,
            queue_id,
            self.config.consume_queue_units_per_file,
            self.config.file_ops.clone(),
        )?);
        queues
            .entry(topic.to_string())
            .or_default()
            .insert(queue_id, cq.clone());
        Ok(cq)
    }

    fn load_queues(&self) -> Result<(), StoreError> {
        let dir = self.consumequeue_dir();
        let io = |e| StoreError::Io {
            op: "read dir",
            path: dir.clone(),
            source: e,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        for topic_entry in std::fs::read_dir(&dir).map_err(io)? {
            let topic_entry = topic_entry.map_err(io)?;
            let topic = topic_entry.file_name().to_string_lossy().into_owned();
            if !topic_entry.path().is_dir() || validate_topic(&topic).is_err() {
                continue;
            }
            for q in std::fs::read_dir(topic_entry.path()).map_err(io)? {
                let q = q.map_err(io)?;
                let Ok(queue_id) = q.file_name().to_string_lossy().parse::<i32>() else {
                    continue;
                };
                if queue_id >= 0 && q.path().is_dir() {
                    self.find_or_create_queue(&topic, queue_id)?;
                }
            }
        }
        Ok(())
    }

    fn store_time_of(&self, phy_offset: i64) -> Option<i64> {
        self.commit_log
            .with_record(phy_offset, |b| {
                decode_record(b, false).ok().map(|r| r.store_timestamp)
            })
            .flatten()
    }

    fn stop_threads_signal(&self) {
        self.stop.store(true, Ordering::Release);
        {
            let _g = self.stop_lock.lock();
            self.stop_cv.notify_all();
        }
        {
            let _g = self.flush_requests.lock();
            self.flush_cv.notify_all();
        }
        for t in [self.reput_thread.get(), self.prefault_thread.get()]
            .into_iter()
            .flatten()
        {
            t.unpark();
        }
    }

    /// After an append of `[phy_offset, end_phy_offset)`: wakes the reput thread if it is
    /// parked (it publishes `reput_parked` before parking and re-checks the log after, see
    /// [`reput::run`]), so dispatch starts at once when the dispatcher was idle while a busy
    /// writer, whose appends the dispatcher is still working through, makes no syscall; and
    /// wakes the prefault thread when the append crossed a prefault step or starts a file.
    fn after_append(&self, phy_offset: i64, end_phy_offset: i64) {
        // Pairs with the fence in `reput::run` (Dekker): the append's bytes were published
        // before this fence, so either the reput thread's re-check after setting the flag sees
        // them, or this load sees the flag.
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.reput_parked.load(Ordering::Relaxed)
            && self.reput_parked.swap(false, Ordering::AcqRel)
        {
            if let Some(t) = self.reput_thread.get() {
                t.unpark();
            }
        }
        let step = self.prefault_step;
        let file_size = self.config.mapped_file_size_commit_log as i64;
        if phy_offset / step != end_phy_offset / step || phy_offset % file_size == 0 {
            if let Some(t) = self.prefault_thread.get() {
                t.unpark();
            }
        }
    }
}

/// The store facade the broker calls. Open it with [`MessageStore::open`]; it shuts down
/// cleanly on [`MessageStore::shutdown`] or drop.
#[derive(Debug)]
pub struct MessageStore {
    inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    recovery: RecoveryReport,
    shut_down: AtomicBool,
    _lock: StoreLock,
}

impl MessageStore {
    /// Opens the store at `config.store_path_root_dir`: takes the lock file, loads and
    /// recovers the files, writes the abort file and starts the reput and flush threads.
    ///
    /// # Errors
    /// `Locked` if another store holds the root; I/O, mapped-file, config and recovery errors.
    pub fn open(config: StoreConfig) -> Result<Arc<MessageStore>, StoreError> {
        config.validate()?;
        let root = config.store_path_root_dir.clone();
        std::fs::create_dir_all(&root).map_err(|e| StoreError::Io {
            op: "create dir",
            path: root.clone(),
            source: e,
        })?;
        let lock =
            StoreLock::acquire(&root.join(LOCK_FILE_NAME)).map_err(|e| StoreError::Locked {
                root: root.clone(),
                source: e,
            })?;
        let abnormal = root.join(ABORT_FILE_NAME).exists();
        let cp_path = root.join(recovery::CHECKPOINT_FILE_NAME);
        let checkpoint = StoreCheckpoint::open(&cp_path).map_err(|e| StoreError::Io {
            op: "open checkpoint",
            path: cp_path.clone(),
            source: e,
        })?;
        let ops = config.file_ops.clone();
        let commit_log = CommitLog::load(
            &root.join("commitlog"),
            config.mapped_file_size_commit_log,
            config.max_message_size,
            ops.clone(),
        )?;
        let index = IndexService::load(
            &root.join("index"),
            config.max_hash_slot_num,
            config.max_index_num,
            ops,
        )?;
        let prefault_step = flush::prefault_step(config.mapped_file_size_commit_log);
        let inner = Arc::new(Inner {
            config,
            commit_log,
            queues: RwLock::new(HashMap::new()),
            index,
            checkpoint,
            flags: RunningFlags::default(),
            listeners: RwLock::new(Arc::new(Vec::new())),
            flush_observer: RwLock::new(None),
            dispatched: AtomicI64::new(0),
            dispatched_store_timestamp: AtomicI64::new(0),
            dispatch_lock: Mutex::new(()),
            dispatch_cv: Condvar::new(),
            reput_corrupt_logged: AtomicBool::new(false),
            reput_thread: OnceLock::new(),
            reput_parked: AtomicBool::new(false),
            prefault_thread: OnceLock::new(),
            prefault_step,
            stop: AtomicBool::new(false),
            stop_lock: Mutex::new(()),
            stop_cv: Condvar::new(),
            flush_requests: Mutex::new(Vec::new()),
            flush_cv: Condvar::new(),
            flush_gather_target: AtomicUsize::new(0),
            counters: Counters::default(),
        });
        inner.load_queues()?;
        let report = recovery::recover(&inner, abnormal)?;
        recovery::create_abort_file(&root).map_err(|e| StoreError::Io {
            op: "create abort file",
            path: root.clone(),
            source: e,
        })?;

        let mut threads = Vec::new();
        let spawn = |name: &str, f: fn(Arc<Inner>), inner: Arc<Inner>| {
            std::thread::Builder::new()
                .name(name.to_string())
                .spawn(move || f(inner))
                .map_err(|e| StoreError::Io {
                    op: "spawn thread",
                    path: PathBuf::from(name),
                    source: e,
                })
        };
        let reput = spawn("tern-reput", reput::run, inner.clone())?;
        let _ = inner.reput_thread.set(reput.thread().clone());
        threads.push(reput);
        threads.push(spawn(
            "tern-flush-commitlog",
            flush::run_commit_log,
            inner.clone(),
        )?);
        let prefault = spawn("tern-prefault", flush::run_prefault, inner.clone())?;
        let _ = inner.prefault_thread.set(prefault.thread().clone());
        threads.push(prefault);
        threads.push(spawn(
            "tern-flush-logics",
            flush::run_logics,
            inner.clone(),
        )?);
        Ok(Arc::new(MessageStore {
            inner,
            threads: Mutex::new(threads),
            recovery: report,
            shut_down: AtomicBool::new(false),
            _lock: lock,
        }))
    }

    /// The store configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// What recovery did at open.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// Appends one message (see the module contract for when it returns).
    pub async fn put_message(&self, input: RecordInput) -> PutMessageResult {
        self.settle_put(self.append(std::slice::from_ref(&input)))
            .await
    }

    /// Appends a batch: all records to the same topic and queue, consecutive queue offsets.
    /// A mixed batch is `MessageIllegal`.
    pub async fn put_messages(&self, inputs: Vec<RecordInput>) -> PutMessageResult {
        self.settle_put(self.append_batch(&inputs)).await
    }

    /// [`MessageStore::append`] for a batch, which must be all for one topic and queue (else
    /// `MessageIllegal`, and nothing is appended). Wait on the receiver with
    /// [`MessageStore::wait_flushed`].
    pub fn append_batch(
        &self,
        inputs: &[RecordInput],
    ) -> (
        PutMessageResult,
        Option<tokio::sync::oneshot::Receiver<bool>>,
    ) {
        let same = inputs.first().is_some_and(|f| {
            inputs
                .iter()
                .all(|i| i.topic == f.topic && i.queue_id == f.queue_id)
        });
        if !same {
            self.inner
                .counters
                .put_failure_count
                .fetch_add(1, Ordering::Relaxed);
            return (
                PutMessageResult::status(PutMessageStatus::MessageIllegal),
                None,
            );
        }
        self.append(inputs)
    }

    /// The append part of a put, without waiting for a flush: returns the result and, under
    /// SYNC_FLUSH with `WAIT` not false, a receiver completed by the group commit.
    pub fn append(
        &self,
        inputs: &[RecordInput],
    ) -> (
        PutMessageResult,
        Option<tokio::sync::oneshot::Receiver<bool>>,
    ) {
        let inner = &self.inner;
        let fail = |status| {
            inner
                .counters
                .put_failure_count
                .fetch_add(1, Ordering::Relaxed);
            (PutMessageResult::status(status), None)
        };
        if !inner.flags.is_writable() {
            return fail(PutMessageStatus::ServiceNotAvailable);
        }
        let Some(first) = inputs.first() else {
            return fail(PutMessageStatus::MessageIllegal);
        };
        if !is_valid_queue(&first.topic, first.queue_id) {
            return fail(PutMessageStatus::MessageIllegal);
        }
        let outcome = match inner.commit_log.append(inputs) {
            Ok(o) => o,
            Err(AppendError::MessageIllegal { .. }) => {
                return fail(PutMessageStatus::MessageIllegal)
            }
            Err(AppendError::PropertiesSizeExceeded) => {
                return fail(PutMessageStatus::PropertiesSizeExceeded)
            }
            Err(AppendError::CreateMappedFileFailed(e)) => {
                tracing::error!(cause = %e, "cannot create commit log file");
                inner.flags.set_write_error();
                return fail(PutMessageStatus::CreateMappedFileFailed);
            }
            Err(e) => {
                tracing::error!(cause = %e, "commit log append failed");
                inner.flags.set_write_error();
                return fail(PutMessageStatus::ServiceNotAvailable);
            }
        };
        let end_phy_offset = outcome.end_phy_offset();
        inner.after_append(outcome.phy_offset, end_phy_offset);
        inner
            .counters
            .put_message_count
            .fetch_add(1, Ordering::Relaxed);
        inner
            .counters
            .put_record_count
            .fetch_add(outcome.msg_count as u64, Ordering::Relaxed);
        inner
            .counters
            .put_bytes
            .fetch_add(outcome.wrote_bytes as u64, Ordering::Relaxed);
        let result = PutMessageResult {
            status: PutMessageStatus::PutOk,
            append: Some(AppendResult {
                phy_offset: outcome.phy_offset,
                wrote_bytes: outcome.wrote_bytes,
                queue_offset: outcome.queue_offset,
                msg_count: outcome.msg_count,
                store_timestamp: outcome.store_timestamp,
                store_host: first.store_host,
                later_phy_offsets: outcome.later_phy_offsets,
            }),
        };
        let wait = inner.config.flush_disk_type == FlushDiskType::SyncFlush
            && find_property(&first.properties, property_key::WAIT) != Some("false");
        if !wait {
            return (result, None);
        }
        match inner.request_flush(end_phy_offset) {
            Some(rx) => (result, Some(rx)),
            None => (
                PutMessageResult {
                    status: PutMessageStatus::OsPageCacheBusy,
                    ..result
                },
                None,
            ),
        }
    }

    /// The result of an append, after its group commit when it has one to wait for.
    async fn settle_put(
        &self,
        (result, rx): (
            PutMessageResult,
            Option<tokio::sync::oneshot::Receiver<bool>>,
        ),
    ) -> PutMessageResult {
        match rx {
            None => result,
            // Boxed: the timer of the wait would otherwise be part of every caller's future,
            // which is moved whole at each level of a request's future (a third of its size
            // for what only SYNC_FLUSH puts use).
            Some(rx) => Box::pin(self.wait_flushed(result, rx)).await,
        }
    }

    /// Waits for the group commit of a SYNC_FLUSH append (the receiver [`MessageStore::append`]
    /// returned with `result`); `FlushDiskTimeout` if it failed or took longer than
    /// `sync_flush_timeout`.
    pub async fn wait_flushed(
        &self,
        mut result: PutMessageResult,
        rx: tokio::sync::oneshot::Receiver<bool>,
    ) -> PutMessageResult {
        let flushed = matches!(
            tokio::time::timeout(self.inner.config.sync_flush_timeout, rx).await,
            Ok(Ok(true))
        );
        if !flushed {
            self.inner
                .counters
                .flush_timeout_count
                .fetch_add(1, Ordering::Relaxed);
            result.status = PutMessageStatus::FlushDiskTimeout;
        }
        result
    }

    /// Reads up to `max_count` messages (and about `max_bytes`, but always at least one) from
    /// (topic, queue) starting at `queue_offset`, keeping those whose tags code passes `filter`.
    /// Statuses and `next_begin_offset` follow PROTOCOL.md §2.4.
    pub fn get_message(
        &self,
        topic: &str,
        queue_id: i32,
        queue_offset: i64,
        max_count: i32,
        max_bytes: usize,
        filter: &dyn Fn(i64) -> bool,
    ) -> GetMessageResult {
        let inner = &self.inner;
        inner
            .counters
            .get_message_count
            .fetch_add(1, Ordering::Relaxed);
        let mut result = GetMessageResult {
            status: GetMessageStatus::NoMatchedLogicQueue,
            next_begin_offset: 0,
            min_offset: 0,
            max_offset: 0,
            messages: Vec::new(),
            message_queue_offsets: Vec::new(),
        };
        let Some(cq) = inner.find_queue(topic, queue_id) else {
            return result;
        };
        let min = cq.min_offset();
        let max = cq.max_offset();
        result.min_offset = min;
        result.max_offset = max;
        if max == 0 {
            result.status = GetMessageStatus::NoMessageInQueue;
            return result;
        }
        if queue_offset < min {
            result.status = GetMessageStatus::OffsetTooSmall;
            result.next_begin_offset = min;
            return result;
        }
        if queue_offset == max {
            result.status = GetMessageStatus::OffsetOverflowOne;
            result.next_begin_offset = queue_offset;
            return result;
        }
        if queue_offset > max {
            result.status = GetMessageStatus::OffsetOverflowBadly;
            result.next_begin_offset = max;
            return result;
        }
        let max_count = usize::try_from(max_count.max(1)).unwrap_or(1);
        // RocketMQ scans max(16000 bytes, maxMsgNums × 20) of units per request.
        let window = (16_000 / CQ_STORE_UNIT_SIZE).max(max_count);
        let units = match cq.read_units(queue_offset, window) {
            UnitsRead::Units(u) => u,
            UnitsRead::FileMissing { next_queue_offset } => {
                result.status = GetMessageStatus::OffsetFoundNull;
                result.next_begin_offset = next_queue_offset.min(max);
                return result;
            }
        };
        let mut scanned = 0i64;
        let mut bytes = 0usize;
        let mut removed = false;
        let cl_min = inner.commit_log.min_offset();
        let mut skip_until_phy = i64::MIN;
        for unit in &units {
            if result.messages.len() >= max_count {
                break;
            }
            if !result.messages.is_empty() && bytes + unit.size.max(0) as usize > max_bytes {
                break;
            }
            let current = queue_offset + scanned;
            scanned += 1;
            if unit.is_filler() || unit.phy_offset < skip_until_phy {
                continue;
            }
            if !filter(unit.tags_code) {
                continue;
            }
            let record = if unit.phy_offset < cl_min {
                None
            } else {
                inner
                    .commit_log
                    .read_bytes(unit.phy_offset, unit.size.max(0) as usize)
            };
            match record {
                Some(r) => {
                    bytes += r.len();
                    result.messages.push(r);
                    result.message_queue_offsets.push(current);
                }
                None => {
                    removed = true;
                    skip_until_phy = inner.commit_log.roll_next_file(unit.phy_offset);
                }
            }
        }
        result.next_begin_offset = queue_offset + scanned;
        result.status = if !result.messages.is_empty() {
            inner
                .counters
                .get_message_found_count
                .fetch_add(1, Ordering::Relaxed);
            GetMessageStatus::Found
        } else if removed {
            GetMessageStatus::MessageWasRemoving
        } else {
            GetMessageStatus::NoMatchedMessage
        };
        result
    }

    /// Next queue offset to be written in (topic, queue) (0 if the queue does not exist).
    pub fn max_offset_in_queue(&self, topic: &str, queue_id: i32) -> i64 {
        self.inner
            .find_queue(topic, queue_id)
            .map_or(0, |q| q.max_offset())
    }

    /// Smallest readable queue offset of (topic, queue) (0 if the queue does not exist).
    pub fn min_offset_in_queue(&self, topic: &str, queue_id: i32) -> i64 {
        self.inner
            .find_queue(topic, queue_id)
            .map_or(0, |q| q.min_offset())
    }

    /// Queue offset by store time: `upper == false` gives the first offset stored at or after
    /// `timestamp_ms` (max offset if none); `upper == true` the last stored at or before it
    /// (min offset if none). 0 if the queue does not exist.
    pub fn offset_by_time(
        &self,
        topic: &str,
        queue_id: i32,
        timestamp_ms: i64,
        upper: bool,
    ) -> i64 {
        let inner = &self.inner;
        inner.find_queue(topic, queue_id).map_or(0, |q| {
            q.offset_by_time(timestamp_ms, upper, |u| inner.store_time_of(u.phy_offset))
        })
    }

    /// Store time of the first readable message of the queue.
    pub fn earliest_message_time(&self, topic: &str, queue_id: i32) -> Option<i64> {
        let min = self.min_offset_in_queue(topic, queue_id);
        self.message_store_time(topic, queue_id, min)
    }

    /// Store time of the message at `queue_offset`.
    pub fn message_store_time(&self, topic: &str, queue_id: i32, queue_offset: i64) -> Option<i64> {
        let unit = self
            .inner
            .find_queue(topic, queue_id)?
            .get_unit(queue_offset)?;
        self.inner.store_time_of(unit.phy_offset)
    }

    /// One whole stored record at `phy_offset`.
    pub fn read_record(&self, phy_offset: i64) -> Option<Bytes> {
        self.inner.commit_log.read_record(phy_offset)
    }

    /// Records indexed under `<topic>#<key>` (a `KEYS` token or a `UNIQ_KEY`) stored in
    /// `[begin_ms, end_ms]`, newest first, at most `max_num`. Hash collisions are possible; the
    /// caller compares keys exactly.
    pub fn query_message(
        &self,
        topic: &str,
        key: &str,
        max_num: usize,
        begin_ms: i64,
        end_ms: i64,
    ) -> QueryMessageResult {
        let q = self
            .inner
            .index
            .query(topic, key, max_num, begin_ms, end_ms);
        let messages = q
            .phy_offsets
            .iter()
            .filter_map(|phy| self.inner.commit_log.read_record(*phy))
            .collect();
        QueryMessageResult {
            messages,
            index_last_update_timestamp: q.last_update_timestamp,
            index_last_update_phy_offset: q.last_update_phy_offset,
        }
    }

    /// Populates the page tables of the next `bytes` of the CommitLog after the write position
    /// (within the current file and the next one), as fast as the kernel goes, so the appends
    /// that follow write into resident pages (RocketMQ's `warmMappedFile`). The prefault thread
    /// does the same continuously but paced; benchmarks call this to measure the append path
    /// alone. Returns the bytes populated.
    ///
    /// # Errors
    /// Creating the next file or `madvise` failed.
    pub fn warm_commit_log(&self, bytes: usize) -> Result<usize, StoreError> {
        Ok(self.inner.commit_log.files().prefault_ahead(bytes, false)?)
    }

    /// CommitLog offset just past the last published byte.
    pub fn max_phy_offset(&self) -> i64 {
        self.inner.commit_log.max_offset()
    }

    /// First CommitLog offset still stored.
    pub fn min_phy_offset(&self) -> i64 {
        self.inner.commit_log.min_offset()
    }

    /// CommitLog offset below which every record is dispatched.
    pub fn dispatched_phy_offset(&self) -> i64 {
        self.inner.dispatched.load(Ordering::Acquire)
    }

    /// Blocks until everything below `phy_offset` is dispatched (ConsumeQueues, index,
    /// listeners) or `timeout` passes; returns whether it caught up. Call from a blocking
    /// context.
    pub fn wait_dispatched(&self, phy_offset: i64, timeout: Duration) -> bool {
        self.inner.wait_dispatched(phy_offset, timeout)
    }

    /// Deletes the ConsumeQueues of `topic` and forgets its queue offsets. CommitLog records
    /// stay until retention deletes their files.
    pub fn delete_topic(&self, topic: &str) {
        let removed = self.inner.queues.write().remove(topic);
        for cq in removed.into_iter().flat_map(|q| q.into_values()) {
            cq.destroy();
        }
        self.inner.commit_log.remove_topic(topic);
    }

    /// Every (topic, queue id) that has a ConsumeQueue.
    pub fn topics_and_queues(&self) -> Vec<(String, i32)> {
        let queues = self.inner.queues.read();
        let mut out: Vec<(String, i32)> = queues
            .iter()
            .flat_map(|(t, q)| q.keys().map(move |id| (t.clone(), *id)))
            .collect();
        out.sort();
        out
    }

    /// Registers a listener called for every message dispatched to a ConsumeQueue.
    pub fn add_arrival_listener(&self, f: ArrivalListener) {
        let mut listeners = self.inner.listeners.write();
        let mut next: Vec<ArrivalListener> = listeners.iter().cloned().collect();
        next.push(f);
        *listeners = Arc::new(next);
    }

    /// Sets the callback told the duration of every successful CommitLog flush (replacing
    /// any earlier one).
    pub fn set_flush_observer(&self, f: FlushObserver) {
        *self.inner.flush_observer.write() = Some(f);
    }

    /// Whether appends are accepted.
    pub fn is_writable(&self) -> bool {
        self.inner.flags.is_writable()
    }

    /// Counters and positions.
    pub fn runtime_stats(&self) -> StoreStats {
        let inner = &self.inner;
        let c = &inner.counters;
        let max = inner.commit_log.max_offset();
        let dispatched = inner.dispatched.load(Ordering::Acquire);
        StoreStats {
            put_message_count: c.put_message_count.load(Ordering::Relaxed),
            put_record_count: c.put_record_count.load(Ordering::Relaxed),
            put_bytes: c.put_bytes.load(Ordering::Relaxed),
            put_failure_count: c.put_failure_count.load(Ordering::Relaxed),
            flush_timeout_count: c.flush_timeout_count.load(Ordering::Relaxed),
            get_message_count: c.get_message_count.load(Ordering::Relaxed),
            get_message_found_count: c.get_message_found_count.load(Ordering::Relaxed),
            commit_log_min_offset: inner.commit_log.min_offset(),
            commit_log_max_offset: max,
            commit_log_flushed_offset: inner.commit_log.files().flushed_offset(),
            dispatched_phy_offset: dispatched,
            dispatch_behind_bytes: (max - dispatched).max(0),
            consume_queue_count: inner.queues.read().values().map(HashMap::len).sum(),
            writable: inner.flags.is_writable(),
        }
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        &self.inner.config.store_path_root_dir
    }

    /// Stops the threads, flushes everything, writes the checkpoint and removes the abort
    /// file. Idempotent; `Drop` calls it too. Blocks until the threads end.
    pub fn shutdown(&self) {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = &self.inner;
        inner.flags.set_shutdown();
        inner.stop_threads_signal();
        for t in self.threads.lock().drain(..) {
            if t.join().is_err() {
                tracing::error!("store thread panicked");
            }
        }
        let flushed = inner.commit_log.flush();
        let cl_ok = match flushed {
            Ok(_) => {
                let ts = inner.commit_log.last_store_timestamp();
                if ts > 0 {
                    inner.checkpoint.set_physic_msg_timestamp(ts);
                }
                true
            }
            Err(e) => {
                tracing::error!(cause = %e, "final commit log flush failed");
                false
            }
        };
        let logics_ok = inner.flush_logics();
        let clean = cl_ok
            && logics_ok
            && inner.flags.0.load(Ordering::Acquire) & RunningFlags::WRITE_ERROR == 0;
        if clean {
            if let Err(e) = recovery::remove_abort_file(&inner.config.store_path_root_dir) {
                tracing::error!(cause = %e, "cannot remove abort file");
            }
        } else {
            tracing::warn!(
                "store stopped after a write error; next start recovers as after a crash"
            );
        }
        tracing::info!(
            max_phy_offset = inner.commit_log.max_offset(),
            "store shut down"
        );
    }

    pub(crate) fn inner_flags_disk_full(&self, full: bool) {
        self.inner.flags.set_disk_full(full);
    }
}

impl Drop for MessageStore {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_table_parses_default_and_rejects_junk() {
        let t = parse_delay_level_table(DEFAULT_DELAY_LEVELS).unwrap();
        assert_eq!(t.len(), 18);
        assert_eq!(t[4], Duration::from_secs(60));
        assert_eq!(t[17], Duration::from_secs(7200));
        assert!(parse_delay_level_table("1x").is_err());
        assert!(parse_delay_level_table("").is_err());
    }

    #[test]
    fn topic_names_are_checked() {
        assert!(is_valid_queue("%RETRY%group_1", 0));
        assert!(is_valid_queue(&format!("%RETRY%{}", "g".repeat(248)), 3));
        assert!(!is_valid_queue("T", -1));
        for bad in ["../etc", ".", "..", "a/b", "", " ", "t\0"] {
            assert!(!is_valid_queue(bad, 0), "{bad:?}");
        }
        assert!(!is_valid_queue(&"a".repeat(128), 0));
        assert!(!is_valid_queue(&format!("%DLQ%{}", "g".repeat(252)), 0));
    }
}
