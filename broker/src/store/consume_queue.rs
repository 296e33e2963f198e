//! The ConsumeQueue of one (topic, queue id): fixed 20-byte units pointing into the CommitLog.
//!
//! Unit layout (big-endian, RocketMQ `ConsumeQueue.CQ_STORE_UNIT_SIZE`):
//! `phy_offset: i64 | size: i32 | tags_code: i64`. Queue offset `n` lives at byte `n * 20` of the
//! queue, across files of `units_per_file * 20` bytes named by their first byte offset, under
//! `consumequeue/<topic>/<queue_id>/`.
//!
//! Contract: one writer (the reput thread, or recovery before it starts) appends units in queue
//! offset order; readers see only published units. A queue whose first unit is not queue offset
//! 0 is padded with filler units `(0, i32::MAX, 0)` from the start of its first file.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use bytes::{Buf, BufMut};

use super::mapped_file::{FileOps, MappedFileError, MappedFileQueue};

/// Size of one unit in bytes.
pub const CQ_STORE_UNIT_SIZE: usize = 20;

/// Size field of a filler unit (RocketMQ pads recreated queues with these).
pub const FILLER_UNIT_SIZE: i32 = i32::MAX;

/// One decoded ConsumeQueue unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CqUnit {
    /// CommitLog offset of the record.
    pub phy_offset: i64,
    /// Record size in bytes.
    pub size: i32,
    /// Tags hash code, or the delivery timestamp (ms) for `SCHEDULE_TOPIC_XXXX`.
    pub tags_code: i64,
}

impl CqUnit {
    /// Encodes the unit into its 20 bytes.
    pub fn encode(&self) -> [u8; CQ_STORE_UNIT_SIZE] {
        let mut out = [0u8; CQ_STORE_UNIT_SIZE];
        let mut w = &mut out[..];
        w.put_i64(self.phy_offset);
        w.put_i32(self.size);
        w.put_i64(self.tags_code);
        out
    }

    /// Decodes a unit from exactly 20 bytes (`None` for another length).
    pub fn decode(mut buf: &[u8]) -> Option<Self> {
        if buf.len() != CQ_STORE_UNIT_SIZE {
            return None;
        }
        Some(Self {
            phy_offset: buf.get_i64(),
            size: buf.get_i32(),
            tags_code: buf.get_i64(),
        })
    }

    /// A unit that was really written (RocketMQ: offset >= 0 and size > 0).
    pub fn is_valid(&self) -> bool {
        self.phy_offset >= 0 && self.size > 0
    }

    /// A padding unit.
    pub fn is_filler(&self) -> bool {
        self.size == FILLER_UNIT_SIZE
    }

    /// CommitLog offset just past the record.
    pub fn phy_end(&self) -> i64 {
        self.phy_offset + i64::from(self.size)
    }
}

/// Outcome of reading units at a queue offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitsRead {
    /// Units starting at the requested offset (possibly empty if at the max offset).
    Units(Vec<CqUnit>),
    /// The file that should hold the offset is missing; the next readable offset is given.
    FileMissing {
        /// First queue offset of the next file.
        next_queue_offset: i64,
    },
}

/// The ConsumeQueue of one (topic, queue id).
#[derive(Debug)]
pub struct ConsumeQueue {
    topic: String,
    queue_id: i32,
    units_per_file: usize,
    files: MappedFileQueue,
    /// CommitLog offset just past the last unit's record (0 when empty).
    max_phy_offset: AtomicI64,
    /// Smallest queue offset still readable (raised when CommitLog files are deleted).
    min_logic_offset: AtomicI64,
}

impl ConsumeQueue {
    /// Opens (or creates lazily) the queue under `consumequeue_dir/<topic>/<queue_id>/`, and
    /// finds its last valid unit.
    ///
    /// # Errors
    /// Mapped-file errors from loading.
    pub fn open(
        consumequeue_dir: &Path,
        topic: &str,
        queue_id: i32,
        units_per_file: usize,
        ops: Arc<dyn FileOps>,
    ) -> Result<Self, MappedFileError> {
        let dir = consumequeue_dir.join(topic).join(queue_id.to_string());
        let files = MappedFileQueue::load(&dir, units_per_file * CQ_STORE_UNIT_SIZE, ops)?;
        let cq = Self {
            topic: topic.to_string(),
            queue_id,
            units_per_file,
            files,
            max_phy_offset: AtomicI64::new(0),
            min_logic_offset: AtomicI64::new(0),
        };
        cq.recover();
        Ok(cq)
    }

    /// Sets the write position after the last valid unit (RocketMQ `ConsumeQueue.recover`):
    /// the last file is scanned from its start; files after the last non-empty one keep
    /// position 0.
    fn recover(&self) {
        let files = self.files.files();
        let mut max_phy = 0;
        for (i, file) in files.iter().enumerate().rev() {
            let mut valid = 0usize;
            let units = file.size() / CQ_STORE_UNIT_SIZE;
            // Bounded by the number of units in the file.
            while valid < units {
                let unit = file
                    .with_slice(
                        valid * CQ_STORE_UNIT_SIZE,
                        CQ_STORE_UNIT_SIZE,
                        CqUnit::decode,
                    )
                    .flatten();
                match unit {
                    Some(u) if u.is_valid() => {
                        if !u.is_filler() {
                            max_phy = u.phy_end();
                        }
                        valid += 1;
                    }
                    _ => break,
                }
            }
            file.truncate_to(valid * CQ_STORE_UNIT_SIZE);
            if valid > 0 || i == 0 {
                break;
            }
        }
        self.max_phy_offset.store(max_phy, Ordering::Release);
        let first = self.files.min_offset() / CQ_STORE_UNIT_SIZE as i64;
        self.min_logic_offset.store(first, Ordering::Release);
        self.skip_leading_fillers();
    }

    fn skip_leading_fillers(&self) {
        let min = self.min_offset();
        let max = self.max_offset();
        // Fillers only precede the first real unit; find it by binary search.
        let first_real = self.partition_point(min, max, |u| u.is_filler() || !u.is_valid());
        self.min_logic_offset
            .fetch_max(first_real, Ordering::AcqRel);
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The queue id.
    pub fn queue_id(&self) -> i32 {
        self.queue_id
    }

    /// Next queue offset to be written (the number of units ever written).
    pub fn max_offset(&self) -> i64 {
        self.files.max_offset() / CQ_STORE_UNIT_SIZE as i64
    }

    /// Smallest readable queue offset.
    pub fn min_offset(&self) -> i64 {
        let first = self.files.min_offset() / CQ_STORE_UNIT_SIZE as i64;
        self.min_logic_offset
            .load(Ordering::Acquire)
            .max(first)
            .min(self.max_offset())
    }

    /// CommitLog offset just past the last unit's record (0 when empty).
    pub fn max_phy_offset(&self) -> i64 {
        self.max_phy_offset.load(Ordering::Acquire)
    }

    /// Appends the unit for `queue_offset`. Units at offsets already written, or pointing
    /// at or before the last unit's record, are skipped (re-dispatch after recovery); a gap is
    /// padded with filler units. Returns whether a unit was written.
    ///
    /// # Errors
    /// File creation or write errors.
    pub fn put_unit(&self, queue_offset: i64, unit: CqUnit) -> Result<bool, MappedFileError> {
        let expected = self.max_offset();
        if queue_offset < expected || (expected > 0 && unit.phy_end() <= self.max_phy_offset()) {
            return Ok(false);
        }
        if self.files.file_count() == 0 {
            let start_bytes = queue_offset * CQ_STORE_UNIT_SIZE as i64;
            let file = self.files.last_file_or_create(start_bytes)?;
            let first = file.file_from_offset() / CQ_STORE_UNIT_SIZE as i64;
            self.min_logic_offset.store(queue_offset, Ordering::Release);
            for _ in first..queue_offset {
                self.write_unit(CqUnit {
                    phy_offset: 0,
                    size: FILLER_UNIT_SIZE,
                    tags_code: 0,
                })?;
            }
        } else if queue_offset > expected {
            tracing::warn!(
                topic = %self.topic,
                queue_id = self.queue_id,
                expected,
                queue_offset,
                "padding consume queue gap with filler units"
            );
            for _ in expected..queue_offset {
                self.write_unit(CqUnit {
                    phy_offset: 0,
                    size: FILLER_UNIT_SIZE,
                    tags_code: 0,
                })?;
            }
        }
        self.write_unit(unit)?;
        self.max_phy_offset.store(unit.phy_end(), Ordering::Release);
        Ok(true)
    }

    fn write_unit(&self, unit: CqUnit) -> Result<(), MappedFileError> {
        let file = self.files.last_file_or_create(0)?;
        let bytes = unit.encode();
        match file.append(&bytes) {
            Ok(Some(_)) => Ok(()),
            Ok(None) => {
                // Units divide the file size, so a non-full file always has room.
                Err(MappedFileError::Io {
                    op: "append unit",
                    path: file.path().to_path_buf(),
                    source: std::io::Error::other("consume queue file has no room"),
                })
            }
            Err(e) => Err(MappedFileError::Io {
                op: "append unit",
                path: file.path().to_path_buf(),
                source: e,
            }),
        }
    }

    /// The unit at `queue_offset`, if it is readable.
    pub fn get_unit(&self, queue_offset: i64) -> Option<CqUnit> {
        if queue_offset < self.min_offset() || queue_offset >= self.max_offset() {
            return None;
        }
        self.read_unit_raw(queue_offset)
    }

    fn read_unit_raw(&self, queue_offset: i64) -> Option<CqUnit> {
        let byte_offset = queue_offset.checked_mul(CQ_STORE_UNIT_SIZE as i64)?;
        let file = self.files.find_file(byte_offset)?;
        let pos = usize::try_from(byte_offset - file.file_from_offset()).ok()?;
        file.with_slice(pos, CQ_STORE_UNIT_SIZE, CqUnit::decode)
            .flatten()
    }

    /// Up to `max_count` units from `queue_offset`, stopping at the end of its file.
    pub fn read_units(&self, queue_offset: i64, max_count: usize) -> UnitsRead {
        let byte_offset = queue_offset.saturating_mul(CQ_STORE_UNIT_SIZE as i64);
        let Some(file) = self.files.find_file(byte_offset) else {
            let file_bytes = (self.units_per_file * CQ_STORE_UNIT_SIZE) as i64;
            let next_file = (byte_offset / file_bytes + 1) * file_bytes;
            return UnitsRead::FileMissing {
                next_queue_offset: next_file / CQ_STORE_UNIT_SIZE as i64,
            };
        };
        let pos = (byte_offset - file.file_from_offset()) as usize;
        let available = file.wrote_position().saturating_sub(pos) / CQ_STORE_UNIT_SIZE;
        let count = available.min(max_count);
        let units = file
            .with_slice(pos, count * CQ_STORE_UNIT_SIZE, |bytes| {
                bytes
                    .chunks_exact(CQ_STORE_UNIT_SIZE)
                    .filter_map(CqUnit::decode)
                    .collect()
            })
            .unwrap_or_default();
        UnitsRead::Units(units)
    }

    /// First queue offset in `[lo, hi)` for which `pred` is false (units must be partitioned:
    /// `pred` true then false). Unreadable units count as false.
    fn partition_point(&self, mut lo: i64, mut hi: i64, pred: impl Fn(&CqUnit) -> bool) -> i64 {
        // Binary search: at most 64 iterations.
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.read_unit_raw(mid) {
                Some(u) if pred(&u) => lo = mid + 1,
                _ => hi = mid,
            }
        }
        lo
    }

    /// Queue offset for a store timestamp (RocketMQ `getOffsetInQueueByTime`), given a
    /// function that returns the store time of the record a unit points to (`None` if the
    /// record is gone, treated as older than everything).
    ///
    /// `upper == false`: the first offset whose store time is `>= timestamp_ms`, or the max
    /// offset if none. `upper == true`: the last offset whose store time is `<= timestamp_ms`,
    /// or the min offset if none.
    pub fn offset_by_time(
        &self,
        timestamp_ms: i64,
        upper: bool,
        store_time: impl Fn(&CqUnit) -> Option<i64>,
    ) -> i64 {
        let min = self.min_offset();
        let max = self.max_offset();
        let time = |u: &CqUnit| store_time(u).unwrap_or(i64::MIN);
        if upper {
            let first_after = self.partition_point(min, max, |u| time(u) <= timestamp_ms);
            (first_after - 1).max(min)
        } else {
            self.partition_point(min, max, |u| time(u) < timestamp_ms)
        }
    }

    /// Drops units whose record ends after `phy_end` (recovery: the CommitLog was truncated).
    /// Returns the number of dropped units.
    ///
    /// # Errors
    /// File deletion errors.
    pub fn truncate_dirty(&self, phy_end: i64) -> Result<i64, MappedFileError> {
        let min = self.files.min_offset() / CQ_STORE_UNIT_SIZE as i64;
        let max = self.max_offset();
        let keep = self.partition_point(min, max, |u| u.is_filler() || u.phy_end() <= phy_end);
        if keep < max {
            self.files
                .truncate_after(keep * CQ_STORE_UNIT_SIZE as i64)?;
            let last_phy = if keep > min {
                self.read_unit_raw(keep - 1)
                    .filter(|u| !u.is_filler())
                    .map_or(0, |u| u.phy_end())
            } else {
                0
            };
            self.max_phy_offset.store(last_phy, Ordering::Release);
            if self.min_logic_offset.load(Ordering::Acquire) > keep {
                self.min_logic_offset.store(keep, Ordering::Release);
            }
        }
        Ok(max - keep)
    }

    /// Raises the min offset past units whose records are before `commit_log_min_phy`.
    pub fn correct_min_offset(&self, commit_log_min_phy: i64) {
        let min = self.min_offset();
        let max = self.max_offset();
        let first = self.partition_point(min, max, |u| {
            u.is_filler() || u.phy_offset < commit_log_min_phy
        });
        self.min_logic_offset.fetch_max(first, Ordering::AcqRel);
    }

    /// Deletes leading files whose every unit points before `commit_log_min_phy` (never the
    /// last file) and corrects the min offset. Returns the number of deleted files.
    pub fn delete_expired(&self, commit_log_min_phy: i64) -> usize {
        let deleted = self.files.delete_leading_files(usize::MAX, |file, _| {
            let last = file.size() / CQ_STORE_UNIT_SIZE;
            if last == 0 || file.wrote_position() < file.size() {
                return false;
            }
            file.with_slice(
                (last - 1) * CQ_STORE_UNIT_SIZE,
                CQ_STORE_UNIT_SIZE,
                CqUnit::decode,
            )
            .flatten()
            .is_some_and(|u| u.is_filler() || u.phy_end() <= commit_log_min_phy)
        });
        self.correct_min_offset(commit_log_min_phy);
        deleted
    }

    /// Flushes written units.
    ///
    /// # Errors
    /// `msync` errors.
    pub fn flush(&self) -> std::io::Result<()> {
        self.files.flush().map(|_| ())
    }

    /// Deletes every file of the queue and its directory.
    pub fn destroy(&self) {
        self.files.destroy();
        if let Some(topic_dir) = self.files.dir().parent() {
            // Removes the topic directory once its last queue is gone; fails harmlessly otherwise.
            let _ = std::fs::remove_dir(topic_dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::mapped_file::RealFileOps;
    use super::*;

    fn open(dir: &Path) -> ConsumeQueue {
        ConsumeQueue::open(dir, "T", 0, 4, Arc::new(RealFileOps)).unwrap()
    }

    fn unit(i: i64) -> CqUnit {
        CqUnit {
            phy_offset: i * 100,
            size: 100,
            tags_code: i,
        }
    }

    #[test]
    fn units_round_trip_across_files_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let cq = open(dir.path());
        for i in 0..10 {
            assert!(cq.put_unit(i, unit(i)).unwrap());
        }
        assert!(!cq.put_unit(3, unit(3)).unwrap());
        assert_eq!(cq.max_offset(), 10);
        assert_eq!(cq.get_unit(7), Some(unit(7)));
        assert_eq!(
            cq.read_units(2, 10),
            UnitsRead::Units(vec![unit(2), unit(3)])
        );
        drop(cq);
        let cq = open(dir.path());
        assert_eq!(cq.max_offset(), 10);
        assert_eq!(cq.max_phy_offset(), 1000);
        assert_eq!(cq.get_unit(9), Some(unit(9)));
    }

    #[test]
    fn late_first_unit_is_padded_and_min_skips_fillers() {
        let dir = tempfile::tempdir().unwrap();
        let cq = open(dir.path());
        assert!(cq.put_unit(6, unit(6)).unwrap());
        assert_eq!(cq.min_offset(), 6);
        assert_eq!(cq.max_offset(), 7);
        drop(cq);
        let cq = open(dir.path());
        assert_eq!(cq.min_offset(), 6);
    }

    #[test]
    fn truncate_dirty_and_offset_by_time() {
        let dir = tempfile::tempdir().unwrap();
        let cq = open(dir.path());
        for i in 0..10 {
            cq.put_unit(i, unit(i)).unwrap();
        }
        let t = |u: &CqUnit| Some(u.tags_code * 10);
        assert_eq!(cq.offset_by_time(35, false, t), 4);
        assert_eq!(cq.offset_by_time(35, true, t), 3);
        assert_eq!(cq.offset_by_time(40, true, t), 4);
        assert_eq!(cq.offset_by_time(1000, false, t), 10);
        assert_eq!(cq.offset_by_time(-5, true, t), 0);
        assert_eq!(cq.truncate_dirty(650).unwrap(), 4);
        assert_eq!(cq.max_offset(), 6);
        assert_eq!(cq.max_phy_offset(), 600);
        cq.correct_min_offset(250);
        assert_eq!(cq.min_offset(), 3);
        assert_eq!(cq.delete_expired(450), 1);
        assert_eq!(cq.min_offset(), 5);
    }
}
