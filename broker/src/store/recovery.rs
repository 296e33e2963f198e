//! Startup recovery: the checkpoint file, the abort file, and the CommitLog/ConsumeQueue/index
//! reconciliation (PROTOCOL.md §4.3–4.4).
//!
//! Contract after [`recover`] returns:
//! * the CommitLog ends after its last valid record (magic, sizes, own physical offset, and CRC
//!   when checked); a torn or corrupt tail is zeroed and later files are deleted;
//! * no ConsumeQueue unit or index file points past that end;
//! * every record from the re-dispatch point to the end is dispatched again (duplicates are
//!   skipped by the ConsumeQueue and index), so missing units are rebuilt;
//! * the queue-offset table of the append path equals the ConsumeQueues' max offsets.
//!
//! Clean stop (no `abort` file): the checkpoint is trusted and only the last three CommitLog
//! files are validated. Crash: validation starts at the newest file whose first record is
//! older than the checkpoint's `min(physic, logics) - 3 s`, checking CRCs.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut};
use tern_common::message::record::{decode_record, RecordError};

use super::{Inner, StoreError};

/// Name of the abort file in the store root.
pub const ABORT_FILE_NAME: &str = "abort";
/// Name of the checkpoint file in the store root.
pub const CHECKPOINT_FILE_NAME: &str = "checkpoint";
/// Size of the checkpoint file in bytes.
pub const CHECKPOINT_FILE_SIZE: usize = 4096;
/// Version of the on-disk format, stored at byte 40 of the checkpoint (docs/design/store.md).
pub const STORE_FORMAT_VERSION: i32 = 1;

/// Errors of recovery.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecoveryError {
    /// The checkpoint was written by another format version.
    #[error(
        "checkpoint format version {found} is not supported (expected {STORE_FORMAT_VERSION})"
    )]
    UnsupportedFormat {
        /// The version found.
        found: i32,
    },
    /// Truncating the CommitLog or a ConsumeQueue failed.
    #[error("truncation failed: {0}")]
    Truncate(#[source] super::mapped_file::MappedFileError),
}

/// The persisted timestamps and offsets (`StoreCheckpoint`, 4 KiB, big-endian):
/// 0 physic_msg_timestamp | 8 logics_msg_timestamp | 16 index_msg_timestamp |
/// 24 master_flushed_offset | 32 confirm_phy_offset | 40 format version (i32).
#[derive(Debug)]
pub struct StoreCheckpoint {
    path: PathBuf,
    file: parking_lot::Mutex<File>,
    physic_msg_timestamp: AtomicI64,
    logics_msg_timestamp: AtomicI64,
    index_msg_timestamp: AtomicI64,
    master_flushed_offset: AtomicI64,
    confirm_phy_offset: AtomicI64,
}

impl StoreCheckpoint {
    /// Opens (creating) the checkpoint file and reads it.
    ///
    /// # Errors
    /// I/O errors, or an unsupported format version (as `InvalidData`).
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut buf = vec![0u8; CHECKPOINT_FILE_SIZE];
        let len = file.metadata()?.len() as usize;
        if len > 0 {
            let n = len.min(CHECKPOINT_FILE_SIZE);
            file.read_exact_at(&mut buf[..n], 0)?;
        }
        let mut b = &buf[..];
        let cp = Self {
            path: path.to_path_buf(),
            physic_msg_timestamp: AtomicI64::new(b.get_i64()),
            logics_msg_timestamp: AtomicI64::new(b.get_i64()),
            index_msg_timestamp: AtomicI64::new(b.get_i64()),
            master_flushed_offset: AtomicI64::new(b.get_i64()),
            confirm_phy_offset: AtomicI64::new(b.get_i64()),
            file: parking_lot::Mutex::new(file),
        };
        let version = b.get_i32();
        if len > 0 && version != 0 && version != STORE_FORMAT_VERSION {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                RecoveryError::UnsupportedFormat { found: version },
            ));
        }
        Ok(cp)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Store time (ms) of the last flushed CommitLog record.
    pub fn physic_msg_timestamp(&self) -> i64 {
        self.physic_msg_timestamp.load(Ordering::Acquire)
    }
    /// Store time (ms) of the last record whose ConsumeQueue unit was flushed.
    pub fn logics_msg_timestamp(&self) -> i64 {
        self.logics_msg_timestamp.load(Ordering::Acquire)
    }
    /// Store time (ms) of the last record whose index entries were flushed.
    pub fn index_msg_timestamp(&self) -> i64 {
        self.index_msg_timestamp.load(Ordering::Acquire)
    }
    /// Sets [`Self::physic_msg_timestamp`].
    pub fn set_physic_msg_timestamp(&self, v: i64) {
        self.physic_msg_timestamp.store(v, Ordering::Release);
    }
    /// Sets [`Self::logics_msg_timestamp`].
    pub fn set_logics_msg_timestamp(&self, v: i64) {
        self.logics_msg_timestamp.store(v, Ordering::Release);
    }
    /// Sets [`Self::index_msg_timestamp`].
    pub fn set_index_msg_timestamp(&self, v: i64) {
        self.index_msg_timestamp.store(v, Ordering::Release);
    }

    /// The recovery safe point: `min(physic, logics) - 3 s` (0 when unknown).
    pub fn min_timestamp(&self) -> i64 {
        (self.physic_msg_timestamp().min(self.logics_msg_timestamp()) - 3000).max(0)
    }

    /// Encodes the 4 KiB image.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(CHECKPOINT_FILE_SIZE);
        buf.put_i64(self.physic_msg_timestamp());
        buf.put_i64(self.logics_msg_timestamp());
        buf.put_i64(self.index_msg_timestamp());
        buf.put_i64(self.master_flushed_offset.load(Ordering::Acquire));
        buf.put_i64(self.confirm_phy_offset.load(Ordering::Acquire));
        buf.put_i32(STORE_FORMAT_VERSION);
        buf.resize(CHECKPOINT_FILE_SIZE, 0);
        buf
    }

    /// Writes and `fdatasync`s the file.
    ///
    /// # Errors
    /// I/O errors.
    pub fn flush(&self) -> io::Result<()> {
        let image = self.encode();
        let file = self.file.lock();
        file.write_all_at(&image, 0)?;
        file.sync_data()
    }
}

/// What recovery did (logged at info as one line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The abort file was present (the previous run crashed).
    pub abnormal: bool,
    /// CommitLog offset after the last valid record.
    pub commit_log_end: i64,
    /// Offset where validation started.
    pub validated_from: i64,
    /// Records validated.
    pub records_validated: u64,
    /// CommitLog files deleted past the end.
    pub commit_log_files_deleted: usize,
    /// Bytes after the end that were not zero and were zeroed (a torn or corrupt tail),
    /// counted in the 64 KiB chunks rewritten.
    pub tail_bytes_zeroed: usize,
    /// ConsumeQueue units dropped for pointing past the end.
    pub cq_units_dropped: i64,
    /// Index files dropped for pointing past the end.
    pub index_files_dropped: usize,
    /// Offset the re-dispatch started from.
    pub redispatch_from: i64,
    /// Records re-dispatched.
    pub records_redispatched: u64,
    /// Wall time of recovery.
    pub duration: Duration,
}

/// First record's store timestamp of a file, if it holds a valid record.
fn first_store_timestamp(file: &super::mapped_file::MappedFile) -> Option<i64> {
    let wrote = file.wrote_position();
    file.with_slice(0, wrote, |b| {
        decode_record(b, false).ok().map(|r| r.store_timestamp)
    })
    .flatten()
}

/// Validates records from `from` (a file start) and returns (end offset, records validated).
fn validate_forward(inner: &Inner, from_index: usize, check_crc: bool) -> (i64, u64) {
    let files = inner.commit_log.files().files();
    let mut count = 0u64;
    let mut end = files
        .get(from_index)
        .map_or(inner.commit_log.min_offset(), |f| f.file_from_offset());
    for file in files.iter().skip(from_index) {
        let start = file.file_from_offset();
        let wrote = file.wrote_position();
        let (pos, complete) = file
            .with_slice(0, wrote, |buf| {
                let mut pos = 0usize;
                // Bounded: every iteration advances by at least MIN_RECORD_SIZE bytes.
                loop {
                    if pos >= buf.len() {
                        return (pos, true);
                    }
                    match decode_record(&buf[pos..], check_crc) {
                        Ok(r) if r.phy_offset == start + pos as i64 => {
                            pos += r.len();
                            count += 1;
                        }
                        Ok(_) => return (pos, false),
                        Err(RecordError::Blank { total_size })
                            if usize::try_from(total_size).ok() == Some(buf.len() - pos) =>
                        {
                            return (buf.len(), true);
                        }
                        Err(_) => return (pos, false),
                    }
                }
            })
            .unwrap_or((0, false));
        end = start + pos as i64;
        if !complete || pos < file.size() {
            break;
        }
    }
    (end, count)
}

/// Runs recovery on a freshly loaded store (before its threads start).
///
/// # Errors
/// Truncation failures.
pub(super) fn recover(inner: &Inner, abnormal: bool) -> Result<RecoveryReport, StoreError> {
    let started = Instant::now();
    let mut report = RecoveryReport {
        abnormal,
        ..RecoveryReport::default()
    };
    let files = inner.commit_log.files().files();
    let from_index = if abnormal {
        let safe = inner.checkpoint.min_timestamp();
        files
            .iter()
            .enumerate()
            .rev()
            .find(|(_, f)| first_store_timestamp(f).is_some_and(|ts| ts <= safe))
            .map_or(0, |(i, _)| i)
    } else {
        files.len().saturating_sub(3)
    };
    let check_crc = abnormal || inner.config.check_crc_on_recover;
    let (end, validated) = validate_forward(inner, from_index, check_crc);
    report.validated_from = files.get(from_index).map_or(0, |f| f.file_from_offset());
    report.records_validated = validated;
    report.commit_log_end = end;
    let before = inner.commit_log.files().file_count();
    // After a reopen the last file's write position is its full size; truncation zeroes only
    // the non-zero bytes after `end`, found through the file system's data ranges, so its
    // cost follows the data written, not the file size (docs/design/store.md).
    let dirty_bytes = inner
        .commit_log
        .files()
        .truncate_after(end)
        .map_err(|e| StoreError::Recovery(RecoveryError::Truncate(e)))?;
    report.commit_log_files_deleted = before - inner.commit_log.files().file_count();
    report.tail_bytes_zeroed = dirty_bytes;
    if dirty_bytes > 0 || report.commit_log_files_deleted > 0 {
        tracing::warn!(
            phy_offset = end,
            dirty_bytes,
            files_deleted = report.commit_log_files_deleted,
            "truncated commit log after the last valid record"
        );
    }

    let cl_min = inner.commit_log.min_offset();
    for cq in inner.all_queues() {
        let dropped = cq
            .truncate_dirty(end)
            .map_err(|e| StoreError::Recovery(RecoveryError::Truncate(e)))?;
        if dropped > 0 {
            tracing::warn!(
                topic = cq.topic(),
                queue_id = cq.queue_id(),
                dropped,
                "dropped consume queue units past the commit log end"
            );
        }
        report.cq_units_dropped += dropped;
        cq.correct_min_offset(cl_min);
    }
    report.index_files_dropped = inner.index.drop_after(end);

    // Re-dispatch from the least advanced ConsumeQueue (and the index, if it has entries).
    let mut from = inner
        .all_queues()
        .iter()
        .filter(|q| q.max_offset() > 0 && q.max_phy_offset() > 0)
        .map(|q| q.max_phy_offset())
        .min()
        .unwrap_or(cl_min);
    if !inner.index.is_empty() {
        from = from.min(inner.index.max_phy_offset());
    }
    let from = from.clamp(cl_min, end.max(cl_min));
    report.redispatch_from = from;
    inner.dispatched.store(from, Ordering::Release);
    let mut redispatched = 0u64;
    // Bounded: each round either moves the dispatched offset forward or ends the loop.
    loop {
        let before = inner.dispatched.load(Ordering::Acquire);
        redispatched += inner.reput_until(end, 1024) as u64;
        let now = inner.dispatched.load(Ordering::Acquire);
        if now >= end || now == before {
            break;
        }
    }
    report.records_redispatched = redispatched;

    let mut table: std::collections::HashMap<String, std::collections::HashMap<i32, i64>> =
        Default::default();
    for cq in inner.all_queues() {
        table
            .entry(cq.topic().to_string())
            .or_default()
            .insert(cq.queue_id(), cq.max_offset());
    }
    inner.commit_log.set_queue_offsets(table);
    report.duration = started.elapsed();
    tracing::info!(
        abnormal,
        commit_log_end = end,
        validated_from = report.validated_from,
        records_validated = validated,
        commit_log_files_deleted = report.commit_log_files_deleted,
        tail_bytes_zeroed = report.tail_bytes_zeroed,
        cq_units_dropped = report.cq_units_dropped,
        index_files_dropped = report.index_files_dropped,
        redispatch_from = from,
        records_redispatched = redispatched,
        duration_ms = report.duration.as_millis() as u64,
        "store recovered"
    );
    Ok(report)
}

/// Creates the abort file (the store is running).
///
/// # Errors
/// I/O errors.
pub(super) fn create_abort_file(root: &Path) -> io::Result<()> {
    File::create(root.join(ABORT_FILE_NAME))?.sync_all()?;
    File::open(root)?.sync_all()
}

/// Removes the abort file (clean stop).
///
/// # Errors
/// I/O errors other than "not found".
pub(super) fn remove_abort_file(root: &Path) -> io::Result<()> {
    match std::fs::remove_file(root.join(ABORT_FILE_NAME)) {
        Ok(()) => File::open(root)?.sync_all(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CHECKPOINT_FILE_NAME);
        let cp = StoreCheckpoint::open(&path).unwrap();
        assert_eq!(cp.min_timestamp(), 0);
        cp.set_physic_msg_timestamp(10_000);
        cp.set_logics_msg_timestamp(8_000);
        cp.flush().unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            CHECKPOINT_FILE_SIZE as u64
        );
        let cp = StoreCheckpoint::open(&path).unwrap();
        assert_eq!(cp.physic_msg_timestamp(), 10_000);
        assert_eq!(cp.min_timestamp(), 5_000);
        let mut image = cp.encode();
        image[40..44].copy_from_slice(&99i32.to_be_bytes());
        std::fs::write(&path, image).unwrap();
        assert!(StoreCheckpoint::open(&path).is_err());
    }
}
