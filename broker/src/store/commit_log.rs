//! The CommitLog: the single append-only log of every message of every topic.
//!
//! Contract: an append returns once its records are in the map and published; durability is
//! the flusher's job; readers never see bytes past the published position. Records are encoded
//! outside the append lock; the short critical section (a `std::sync::Mutex`) only assigns
//! queue offsets from the per-(topic, queue) table, patches QUEUEOFFSET / PHYSICALOFFSET /
//! STORETIMESTAMP and copies the bytes into the map. A record never spans two files: when
//! `len + 8 > remaining`, an 8-byte end-of-file BLANK marker fills the file and the record goes
//! to the next one (PROTOCOL.md §3.8). PREPARED and ROLLBACK transaction records get queue
//! offset 0 and do not advance it (§3.3).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use tern_common::message::record::{
    self, blank_marker, encode_record, encoded_len, patch_record, sys_flag, RecordError,
    RecordInput, BLANK_MARKER_SIZE,
};

use super::mapped_file::{FileOps, MappedFileError, MappedFileQueue};

/// Why an append was refused. Nothing was written in any case.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// A record (or the batch) is larger than the maximum message size, cannot fit in one
    /// file, or cannot be encoded.
    #[error("message illegal: {reason}")]
    MessageIllegal {
        /// What is wrong.
        reason: &'static str,
    },
    /// The property string exceeds 32767 bytes.
    #[error("properties longer than 32767 bytes")]
    PropertiesSizeExceeded,
    /// The next CommitLog file could not be created.
    #[error("cannot create commit log file: {0}")]
    CreateMappedFileFailed(#[source] MappedFileError),
    /// Writing into the map failed (an injected fault; the store must go read-only).
    #[error("commit log write failed: {0}")]
    WriteFailed(#[source] std::io::Error),
}

/// Where an append landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendOutcome {
    /// CommitLog offset of the first record.
    pub phy_offset: i64,
    /// Bytes written (all records, not counting a blank marker).
    pub wrote_bytes: usize,
    /// Queue offset of the first record (0 for PREPARED/ROLLBACK).
    pub queue_offset: i64,
    /// Number of records.
    pub msg_count: usize,
    /// Store timestamp given to every record (ms since the epoch).
    pub store_timestamp: i64,
    /// CommitLog offset of each record after the first (records are contiguous; empty for a
    /// single record, so the common append allocates nothing here).
    pub(super) later_phy_offsets: Vec<i64>,
}

impl AppendOutcome {
    /// CommitLog offset just past the last record.
    pub fn end_phy_offset(&self) -> i64 {
        self.phy_offset + self.wrote_bytes as i64
    }

    /// CommitLog offset of record `index` of the append (`None` past the last record).
    pub fn record_phy_offset(&self, index: usize) -> Option<i64> {
        match index {
            0 => Some(self.phy_offset),
            i => self.later_phy_offsets.get(i - 1).copied(),
        }
    }

    /// The CommitLog offsets of every record, in order (allocates; for callers that want ids).
    pub fn record_phy_offsets(&self) -> Vec<i64> {
        let mut out = Vec::with_capacity(self.msg_count);
        out.push(self.phy_offset);
        out.extend_from_slice(&self.later_phy_offsets);
        out
    }
}

/// Next queue offset per topic and queue id.
type QueueOffsetTable = HashMap<String, HashMap<i32, i64>>;

/// The CommitLog.
#[derive(Debug)]
pub struct CommitLog {
    files: MappedFileQueue,
    queue_offsets: Mutex<QueueOffsetTable>,
    max_message_size: usize,
    /// Store timestamp of the newest appended record (ms).
    last_store_timestamp: AtomicI64,
}

impl CommitLog {
    /// Loads the files of `dir` (positions at full size until recovery sets them).
    ///
    /// # Errors
    /// Mapped-file errors.
    pub fn load(
        dir: &std::path::Path,
        file_size: usize,
        max_message_size: usize,
        ops: Arc<dyn FileOps>,
    ) -> Result<Self, MappedFileError> {
        Ok(Self {
            files: MappedFileQueue::load(dir, file_size, ops)?,
            queue_offsets: Mutex::new(HashMap::new()),
            max_message_size,
            last_store_timestamp: AtomicI64::new(0),
        })
    }

    /// The underlying files.
    pub fn files(&self) -> &MappedFileQueue {
        &self.files
    }

    /// Offset just past the last published byte.
    pub fn max_offset(&self) -> i64 {
        self.files.max_offset()
    }

    /// First offset still stored.
    pub fn min_offset(&self) -> i64 {
        self.files.min_offset()
    }

    /// Store timestamp of the newest appended record (ms; 0 before any).
    pub fn last_store_timestamp(&self) -> i64 {
        self.last_store_timestamp.load(Ordering::Acquire)
    }

    /// Start of the file after the one containing `phy_offset` (RocketMQ `rollNextFile`).
    pub fn roll_next_file(&self, phy_offset: i64) -> i64 {
        let size = self.files.file_size() as i64;
        phy_offset + size - phy_offset.rem_euclid(size)
    }

    /// Replaces the queue-offset table (recovery rebuilds it from the ConsumeQueues).
    pub fn set_queue_offsets(&self, table: QueueOffsetTable) {
        *self.lock_table() = table;
    }

    /// Forgets the queue offsets of `topic`.
    pub fn remove_topic(&self, topic: &str) {
        self.lock_table().remove(topic);
    }

    /// Next queue offset the append path would assign to (topic, queue id).
    pub fn next_queue_offset(&self, topic: &str, queue_id: i32) -> i64 {
        self.lock_table()
            .get(topic)
            .and_then(|q| q.get(&queue_id))
            .copied()
            .unwrap_or(0)
    }

    fn lock_table(&self) -> std::sync::MutexGuard<'_, QueueOffsetTable> {
        // A panic while holding the lock cannot leave the table half-updated (updates are
        // single inserts), so a poisoned lock is still usable.
        self.queue_offsets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends one record or a batch (all records to the same topic and queue, consecutive
    /// queue offsets, contiguous in one file).
    ///
    /// Records are encoded (with their body CRC) into a per-thread reusable buffer before the
    /// append lock is taken; under the lock only the queue offset is looked up (no allocation
    /// unless the queue is new), the three store-assigned fields are patched and the bytes are
    /// copied into the map. Store timestamps never go backwards.
    ///
    /// # Errors
    /// See [`AppendError`]; nothing is written on error.
    pub fn append(&self, inputs: &[RecordInput]) -> Result<AppendOutcome, AppendError> {
        ENCODE_BUF.with(|cell| match cell.try_borrow_mut() {
            Ok(mut buf) => {
                let result = self.append_with(inputs, &mut buf);
                buf.clear();
                if buf.capacity() > MAX_RETAINED_ENCODE_BUF {
                    *buf = BytesMut::new();
                }
                result
            }
            // Only reachable if an append re-entered on this thread (it never does): use a
            // fresh buffer rather than fail.
            Err(_) => self.append_with(inputs, &mut BytesMut::new()),
        })
    }

    fn append_with(
        &self,
        inputs: &[RecordInput],
        buf: &mut BytesMut,
    ) -> Result<AppendOutcome, AppendError> {
        let Some(first) = inputs.first() else {
            return Err(AppendError::MessageIllegal {
                reason: "empty batch",
            });
        };
        let mut total = 0usize;
        for input in inputs {
            let len = encoded_len(input);
            if len > self.max_message_size {
                return Err(AppendError::MessageIllegal {
                    reason: "message larger than max size",
                });
            }
            total += len;
        }
        if total + BLANK_MARKER_SIZE > self.files.file_size() {
            return Err(AppendError::MessageIllegal {
                reason: "batch larger than a commit log file",
            });
        }
        buf.clear();
        buf.reserve(total);
        for input in inputs {
            encode_record(input, 0, 0, 0, buf).map_err(|e| match e {
                RecordError::PropertiesTooLong => AppendError::PropertiesSizeExceeded,
                RecordError::TopicTooLong => AppendError::MessageIllegal {
                    reason: "topic too long",
                },
                _ => AppendError::MessageIllegal {
                    reason: "record cannot be encoded",
                },
            })?;
        }
        assert_eq!(buf.len(), total, "encode_record writes encoded_len bytes");
        let clock = now_ms();
        let mut later_phy_offsets = Vec::with_capacity(inputs.len() - 1);

        let mut table = self.lock_table();
        let mut file = self
            .files
            .last_file_or_create(0)
            .map_err(AppendError::CreateMappedFileFailed)?;
        if total + BLANK_MARKER_SIZE > file.remaining() {
            let remaining = i32::try_from(file.remaining()).unwrap_or(i32::MAX);
            file.append_end_marker(&blank_marker(remaining))
                .map_err(AppendError::WriteFailed)?;
            file = self
                .files
                .last_file_or_create(0)
                .map_err(AppendError::CreateMappedFileFailed)?;
        }
        let base_phy = file.file_from_offset() + file.wrote_position() as i64;
        let now = clock.max(self.last_store_timestamp.load(Ordering::Acquire));
        // One lookup by `&str` (no key allocation); the slot is updated in place below.
        let slot = table
            .get_mut(first.topic.as_str())
            .and_then(|q| q.get_mut(&first.queue_id));
        let next = slot.as_deref().copied().unwrap_or(0);
        let mut queue_offset = next;
        let mut first_queue_offset = None;
        let mut start = 0usize;
        for input in inputs {
            let end = start + encoded_len(input);
            let assigned = if advances_queue_offset(input) {
                queue_offset += 1;
                queue_offset - 1
            } else {
                0
            };
            first_queue_offset.get_or_insert(assigned);
            let phy = base_phy + start as i64;
            if start > 0 {
                later_phy_offsets.push(phy);
            }
            patch_record(&mut buf[start..end], assigned, phy, now)
                .expect("invariant: a record just encoded can be patched");
            start = end;
        }
        match file.append(buf) {
            Ok(Some(pos)) => debug_assert_eq!(file.file_from_offset() + pos as i64, base_phy),
            Ok(None) => {
                return Err(AppendError::WriteFailed(std::io::Error::other(
                    "commit log file has no room after roll",
                )))
            }
            Err(e) => return Err(AppendError::WriteFailed(e)),
        }
        if queue_offset != next {
            match slot {
                Some(stored) => *stored = queue_offset,
                // Only the first append to a (topic, queue) inserts (and allocates) a key.
                None => {
                    table
                        .entry(first.topic.clone())
                        .or_default()
                        .insert(first.queue_id, queue_offset);
                }
            }
        }
        self.last_store_timestamp.store(now, Ordering::Release);
        drop(table);
        Ok(AppendOutcome {
            phy_offset: base_phy,
            wrote_bytes: total,
            queue_offset: first_queue_offset.unwrap_or(0),
            msg_count: inputs.len(),
            store_timestamp: now,
            later_phy_offsets,
        })
    }

    /// Calls `f` with the published bytes of the record at `phy_offset` (`None` if there is
    /// no complete record there).
    pub fn with_record<R>(&self, phy_offset: i64, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let file = self.files.find_file(phy_offset)?;
        let pos = usize::try_from(phy_offset - file.file_from_offset()).ok()?;
        let size = file
            .with_slice(pos, 8, |b| record::record_size(b).ok())
            .flatten()?;
        file.with_slice(pos, size, f)
    }

    /// A copy of the whole record at `phy_offset`.
    pub fn read_record(&self, phy_offset: i64) -> Option<Bytes> {
        self.with_record(phy_offset, Bytes::copy_from_slice)
    }

    /// A copy of `size` published bytes at `phy_offset` (within one file).
    pub fn read_bytes(&self, phy_offset: i64, size: usize) -> Option<Bytes> {
        let file = self.files.find_file(phy_offset)?;
        let pos = usize::try_from(phy_offset - file.file_from_offset()).ok()?;
        file.read(pos, size)
    }

    /// Flushes published bytes; returns the flushed offset.
    ///
    /// # Errors
    /// `msync` errors.
    pub fn flush(&self) -> std::io::Result<i64> {
        self.files.flush()
    }
}

/// Encode buffers above this capacity (bytes) are not kept for the next append of the thread,
/// so one 4 MiB message does not pin 4 MiB per thread.
const MAX_RETAINED_ENCODE_BUF: usize = 256 * 1024;

thread_local! {
    /// Per-thread reusable encode buffer of [`CommitLog::append`].
    static ENCODE_BUF: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// Whether a record takes a queue offset: PREPARED and ROLLBACK transaction records do not
/// (they get 0 and are not dispatched, PROTOCOL.md §3.3).
fn advances_queue_offset(input: &RecordInput) -> bool {
    !matches!(
        sys_flag::transaction_value(input.sys_flag),
        sys_flag::TRANSACTION_PREPARED_TYPE | sys_flag::TRANSACTION_ROLLBACK_TYPE
    )
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::super::mapped_file::RealFileOps;
    use super::*;
    use tern_common::message::record::decode_record;

    pub(crate) fn input(topic: &str, queue_id: i32, body_len: usize) -> RecordInput {
        RecordInput {
            topic: topic.to_string(),
            queue_id,
            flag: 0,
            body: Bytes::from(vec![7u8; body_len]),
            properties: String::new(),
            sys_flag: 0,
            born_timestamp: 1,
            born_host: "127.0.0.1:1000".parse().unwrap(),
            store_host: "127.0.0.1:10911".parse().unwrap(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
        }
    }

    #[test]
    fn appends_roll_with_blank_marker_and_assign_queue_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let log = CommitLog::load(dir.path(), 1024, 1024, Arc::new(RealFileOps)).unwrap();
        let mut ends = Vec::new();
        for i in 0..10 {
            let out = log.append(&[input("T", 0, 200)]).unwrap();
            assert_eq!(out.queue_offset, i);
            ends.push(out.phy_offset);
            let rec = log.read_record(out.phy_offset).unwrap();
            let r = decode_record(&rec, true).unwrap();
            assert_eq!(r.phy_offset, out.phy_offset);
            assert_eq!(r.queue_offset, i);
        }
        // 200-byte bodies give 300-byte records: 3 per 1024-byte file.
        assert_eq!(ends[3], 1024);
        assert_eq!(log.files().file_count(), 4);
        let mut prepared = input("T", 0, 10);
        prepared.sys_flag = sys_flag::TRANSACTION_PREPARED_TYPE;
        assert_eq!(log.append(&[prepared]).unwrap().queue_offset, 0);
        assert_eq!(log.append(&[input("T", 0, 10)]).unwrap().queue_offset, 10);
        let batch = log.append(&[input("U", 1, 10), input("U", 1, 10)]).unwrap();
        assert_eq!((batch.queue_offset, batch.msg_count), (0, 2));
        assert!(matches!(
            log.append(&[input("T", 0, 2000)]),
            Err(AppendError::MessageIllegal { .. })
        ));
    }
}
