//! The message key index (RocketMQ `IndexFile` / `IndexService`, PROTOCOL.md §4.2).
//!
//! File layout (big-endian):
//!
//! ```text
//! header (40 bytes): begin_timestamp i64 | end_timestamp i64 | begin_phy_offset i64 |
//!                    end_phy_offset i64 | hash_slot_count i32 | index_count i32 (starts at 1)
//! slot table:        slot_count × i32 — number of the newest entry in that slot (0 = empty)
//! entries:           index_count_max × 20 bytes, entry i at 40 + slot_count×4 + i×20:
//!                    key_hash i32 | phy_offset i64 | time_diff_secs i32 | prev_entry i32
//! ```
//!
//! Keys are `<topic>#<key>`, hashed with Java's `String.hashCode` made non-negative
//! ([`tern_common::message::tag::key_hash`]). Entry
//! numbers start at 1, so a file holds `index_count_max - 1` entries. Files live in `index/`,
//! named by their creation time `yyyyMMddHHmmssSSS` (UTC). Contract: one writer (reput); queries
//! take a shared lock of the file list and read through `MappedFile::with_slice`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Buf, BufMut};
use parking_lot::RwLock;

use tern_common::message::tag::key_hash;

use super::mapped_file::{FileOps, MappedFile, MappedFileError};

/// Size of the index file header in bytes.
pub const INDEX_HEADER_SIZE: usize = 40;
/// Size of one hash slot in bytes.
pub const HASH_SLOT_SIZE: usize = 4;
/// Size of one index entry in bytes.
pub const INDEX_ENTRY_SIZE: usize = 20;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct IndexHeader {
    begin_timestamp: i64,
    end_timestamp: i64,
    begin_phy_offset: i64,
    end_phy_offset: i64,
    hash_slot_count: i32,
    index_count: i32,
}

impl IndexHeader {
    fn encode(&self) -> [u8; INDEX_HEADER_SIZE] {
        let mut out = [0u8; INDEX_HEADER_SIZE];
        let mut w = &mut out[..];
        w.put_i64(self.begin_timestamp);
        w.put_i64(self.end_timestamp);
        w.put_i64(self.begin_phy_offset);
        w.put_i64(self.end_phy_offset);
        w.put_i32(self.hash_slot_count);
        w.put_i32(self.index_count);
        out
    }

    fn decode(mut b: &[u8]) -> Self {
        Self {
            begin_timestamp: b.get_i64(),
            end_timestamp: b.get_i64(),
            begin_phy_offset: b.get_i64(),
            end_phy_offset: b.get_i64(),
            hash_slot_count: b.get_i32(),
            index_count: b.get_i32(),
        }
    }
}

/// One index file.
#[derive(Debug)]
pub struct IndexFile {
    file: MappedFile,
    slot_count: usize,
    index_count_max: usize,
    header: parking_lot::Mutex<IndexHeader>,
}

impl IndexFile {
    fn file_size(slot_count: usize, index_count_max: usize) -> usize {
        INDEX_HEADER_SIZE + slot_count * HASH_SLOT_SIZE + index_count_max * INDEX_ENTRY_SIZE
    }

    /// Creates or opens the file at `path`.
    ///
    /// # Errors
    /// Mapped-file errors (including a size that does not match the configuration).
    pub fn open(
        path: &Path,
        slot_count: usize,
        index_count_max: usize,
        ops: Arc<dyn FileOps>,
    ) -> Result<Self, MappedFileError> {
        let file = MappedFile::create_random_access(
            path,
            Self::file_size(slot_count, index_count_max),
            ops,
        )?;
        let mut header = file
            .with_slice(0, INDEX_HEADER_SIZE, IndexHeader::decode)
            .unwrap_or_default();
        if header.index_count <= 0 || header.index_count as usize > index_count_max {
            header = IndexHeader {
                index_count: 1,
                ..IndexHeader::default()
            };
            file.write_at(0, &header.encode());
        }
        Ok(Self {
            file,
            slot_count,
            index_count_max,
            header: parking_lot::Mutex::new(header),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// True when no more entries fit.
    pub fn is_full(&self) -> bool {
        self.header.lock().index_count as usize >= self.index_count_max
    }

    /// Store timestamp (ms) of the newest entry (0 when empty).
    pub fn end_timestamp(&self) -> i64 {
        self.header.lock().end_timestamp
    }

    /// Store timestamp (ms) of the oldest entry (0 when empty).
    pub fn begin_timestamp(&self) -> i64 {
        self.header.lock().begin_timestamp
    }

    /// CommitLog offset of the newest indexed record (0 when empty).
    pub fn end_phy_offset(&self) -> i64 {
        self.header.lock().end_phy_offset
    }

    /// Number of entries.
    pub fn entry_count(&self) -> usize {
        (self.header.lock().index_count.max(1) - 1) as usize
    }

    fn read_i32(&self, pos: usize) -> i32 {
        self.file
            .with_slice(pos, 4, |mut b| b.get_i32())
            .unwrap_or(0)
    }

    /// Adds an entry for `key_hash`; returns false when the file is full.
    pub fn put_key(&self, key_hash: i32, phy_offset: i64, store_timestamp: i64) -> bool {
        let mut header = self.header.lock();
        let index_count = header.index_count;
        if index_count as usize >= self.index_count_max {
            return false;
        }
        let slot = key_hash.unsigned_abs() as usize % self.slot_count;
        let slot_pos = INDEX_HEADER_SIZE + slot * HASH_SLOT_SIZE;
        let mut prev = self.read_i32(slot_pos);
        if prev <= 0 || prev >= index_count {
            prev = 0;
        }
        if header.begin_timestamp <= 0 {
            header.begin_timestamp = store_timestamp;
            header.begin_phy_offset = phy_offset;
        }
        let diff_secs = ((store_timestamp - header.begin_timestamp) / 1000)
            .clamp(0, i64::from(i32::MAX)) as i32;
        let mut entry = [0u8; INDEX_ENTRY_SIZE];
        let mut w = &mut entry[..];
        w.put_i32(key_hash);
        w.put_i64(phy_offset);
        w.put_i32(diff_secs);
        w.put_i32(prev);
        let entry_pos = INDEX_HEADER_SIZE
            + self.slot_count * HASH_SLOT_SIZE
            + index_count as usize * INDEX_ENTRY_SIZE;
        self.file.write_at(entry_pos, &entry);
        self.file.write_at(slot_pos, &index_count.to_be_bytes());
        if prev == 0 {
            header.hash_slot_count += 1;
        }
        header.index_count += 1;
        header.end_phy_offset = phy_offset;
        header.end_timestamp = store_timestamp;
        self.file.write_at(0, &header.encode());
        true
    }

    /// CommitLog offsets of entries with `key_hash` stored in `[begin_ms, end_ms]`, newest
    /// first, at most `max_num` (appended to `out`).
    pub fn select(
        &self,
        key_hash: i32,
        max_num: usize,
        begin_ms: i64,
        end_ms: i64,
        out: &mut Vec<i64>,
    ) {
        let header = *self.header.lock();
        let slot = key_hash.unsigned_abs() as usize % self.slot_count;
        let mut current = self.read_i32(INDEX_HEADER_SIZE + slot * HASH_SLOT_SIZE);
        // Every step follows a strictly smaller entry number, so at most index_count steps.
        let mut steps = 0;
        while current > 0
            && current < header.index_count
            && out.len() < max_num
            && steps < self.index_count_max
        {
            steps += 1;
            let pos = INDEX_HEADER_SIZE
                + self.slot_count * HASH_SLOT_SIZE
                + current as usize * INDEX_ENTRY_SIZE;
            let Some((hash, phy, diff, prev)) =
                self.file.with_slice(pos, INDEX_ENTRY_SIZE, |mut b| {
                    (b.get_i32(), b.get_i64(), b.get_i32(), b.get_i32())
                })
            else {
                break;
            };
            let time = header.begin_timestamp + i64::from(diff) * 1000;
            if hash == key_hash && time >= begin_ms && time <= end_ms {
                out.push(phy);
            }
            if time < begin_ms || prev >= current {
                break;
            }
            current = prev;
        }
    }

    /// Flushes the whole file.
    ///
    /// # Errors
    /// `msync` errors.
    pub fn flush(&self) -> std::io::Result<()> {
        self.file.flush_all()
    }
}

/// Result of an index query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexQuery {
    /// Matching CommitLog offsets, newest first.
    pub phy_offsets: Vec<i64>,
    /// End timestamp of the newest index file.
    pub last_update_timestamp: i64,
    /// End physical offset of the newest index file.
    pub last_update_phy_offset: i64,
}

/// All index files, oldest first.
#[derive(Debug)]
pub struct IndexService {
    dir: PathBuf,
    slot_count: usize,
    index_count_max: usize,
    ops: Arc<dyn FileOps>,
    files: RwLock<Vec<Arc<IndexFile>>>,
}

impl IndexService {
    /// Opens every file in `dir` (sorted by name = creation time).
    ///
    /// # Errors
    /// Directory or mapped-file errors.
    pub fn load(
        dir: &Path,
        slot_count: usize,
        index_count_max: usize,
        ops: Arc<dyn FileOps>,
    ) -> Result<Self, MappedFileError> {
        let io_err = |op, e| MappedFileError::Io {
            op,
            path: dir.to_path_buf(),
            source: e,
        };
        std::fs::create_dir_all(dir).map_err(|e| io_err("create dir", e))?;
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| io_err("read dir", e))? {
            let entry = entry.map_err(|e| io_err("read dir", e))?;
            if entry.path().is_file() {
                paths.push(entry.path());
            }
        }
        paths.sort();
        let mut files = Vec::with_capacity(paths.len());
        for p in paths {
            files.push(Arc::new(IndexFile::open(
                &p,
                slot_count.max(1),
                index_count_max.max(2),
                ops.clone(),
            )?));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            slot_count: slot_count.max(1),
            index_count_max: index_count_max.max(2),
            ops,
            files: RwLock::new(files),
        })
    }

    /// CommitLog offset of the newest indexed record (0 when nothing is indexed).
    pub fn max_phy_offset(&self) -> i64 {
        self.files.read().last().map_or(0, |f| f.end_phy_offset())
    }

    /// True when nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.files.read().iter().all(|f| f.entry_count() == 0)
    }

    /// Number of index files.
    pub fn file_count(&self) -> usize {
        self.files.read().len()
    }

    fn writable_file(&self, now_ms: i64) -> Result<Arc<IndexFile>, MappedFileError> {
        if let Some(last) = self.files.read().last() {
            if !last.is_full() {
                return Ok(last.clone());
            }
        }
        let mut files = self.files.write();
        let mut ts = now_ms;
        let mut path = self.dir.join(format_index_file_name(ts));
        // Names are unique: at most one more try per existing file.
        let mut tries = 0;
        while (path.exists() || files.iter().any(|f| f.path() >= path.as_path()))
            && tries <= files.len() + 1
        {
            ts = files
                .last()
                .map_or(ts, |f| parse_index_file_name(f.path()).unwrap_or(ts))
                .max(ts)
                + 1;
            path = self.dir.join(format_index_file_name(ts));
            tries += 1;
        }
        let file = Arc::new(IndexFile::open(
            &path,
            self.slot_count,
            self.index_count_max,
            self.ops.clone(),
        )?);
        files.push(file.clone());
        Ok(file)
    }

    /// Indexes `keys` (each a business key or a UNIQ_KEY) of the record at `phy_offset`. Records
    /// at or before the newest indexed offset are skipped (re-dispatch after recovery).
    ///
    /// # Errors
    /// Index file creation errors.
    pub fn put<'a>(
        &self,
        topic: &str,
        keys: impl Iterator<Item = &'a str>,
        phy_offset: i64,
        store_timestamp: i64,
    ) -> Result<(), MappedFileError> {
        // One read of the file list for the record (it changes only when a file rolls).
        let mut last = {
            let files = self.files.read();
            let indexed = files.iter().any(|f| f.entry_count() > 0);
            let last = files.last().cloned();
            if indexed && phy_offset <= last.as_ref().map_or(0, |f| f.end_phy_offset()) {
                return Ok(());
            }
            last
        };
        for key in keys {
            if key.is_empty() {
                continue;
            }
            let hash = key_hash(topic, key);
            // A full file makes room by rolling once; a fresh file always has room.
            for _ in 0..2 {
                let file = match &last {
                    Some(file) if !file.is_full() => file.clone(),
                    _ => {
                        let file = self.writable_file(store_timestamp)?;
                        last = Some(file.clone());
                        file
                    }
                };
                if file.put_key(hash, phy_offset, store_timestamp) {
                    break;
                }
                last = None;
            }
        }
        Ok(())
    }

    /// CommitLog offsets of records whose `<topic>#<key>` hash matches, stored within
    /// `[begin_ms, end_ms]`, newest first, at most `max_num`. The caller compares keys exactly.
    pub fn query(
        &self,
        topic: &str,
        key: &str,
        max_num: usize,
        begin_ms: i64,
        end_ms: i64,
    ) -> IndexQuery {
        let files = self.files.read().clone();
        let hash = key_hash(topic, key);
        let mut out = IndexQuery::default();
        if let Some(last) = files.last() {
            out.last_update_timestamp = last.end_timestamp();
            out.last_update_phy_offset = last.end_phy_offset();
        }
        for file in files.iter().rev() {
            if out.phy_offsets.len() >= max_num {
                break;
            }
            let (begin, end) = (file.begin_timestamp(), file.end_timestamp());
            if file.entry_count() == 0 || end < begin_ms || begin > end_ms {
                continue;
            }
            file.select(hash, max_num, begin_ms, end_ms, &mut out.phy_offsets);
        }
        out
    }

    /// Flushes every file.
    ///
    /// # Errors
    /// The first `msync` error.
    pub fn flush(&self) -> std::io::Result<()> {
        for f in self.files.read().iter() {
            f.flush()?;
        }
        Ok(())
    }

    /// Deletes files (never the newest) whose newest entry is before `commit_log_min_phy`.
    pub fn delete_before(&self, commit_log_min_phy: i64) -> usize {
        let mut files = self.files.write();
        let mut deleted = 0;
        while files.len() > 1 && files[0].end_phy_offset() < commit_log_min_phy {
            let f = files.remove(0);
            if let Err(e) = std::fs::remove_file(f.path()) {
                tracing::error!(file = %f.path().display(), cause = %e, "cannot delete index file");
            }
            deleted += 1;
        }
        deleted
    }

    /// Deletes files whose newest entry points at or after `phy_end` (recovery: the CommitLog
    /// was truncated; the entries are rebuilt by re-dispatch). Returns the number deleted.
    pub fn drop_after(&self, phy_end: i64) -> usize {
        let mut files = self.files.write();
        let mut deleted = 0;
        while files
            .last()
            .is_some_and(|f| f.entry_count() > 0 && f.end_phy_offset() >= phy_end)
        {
            if let Some(f) = files.pop() {
                if let Err(e) = std::fs::remove_file(f.path()) {
                    tracing::error!(file = %f.path().display(), cause = %e, "cannot delete index file");
                }
                deleted += 1;
            }
        }
        deleted
    }
}

/// `yyyyMMddHHmmssSSS` (UTC) of a millisecond timestamp.
pub fn format_index_file_name(ms: i64) -> String {
    let ms = ms.max(0);
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}{:03}",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

fn parse_index_file_name(path: &Path) -> Option<i64> {
    let name = path.file_name()?.to_str()?;
    if name.len() != 17 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| name[r].parse::<i64>().ok();
    let days = days_from_civil(n(0..4)?, n(4..6)?, n(6..8)?);
    Some(
        days * 86_400_000
            + n(8..10)? * 3_600_000
            + n(10..12)? * 60_000
            + n(12..14)? * 1000
            + n(14..17)?,
    )
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (year, month, day).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Inverse of [`civil_from_days`].
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::super::mapped_file::RealFileOps;
    use super::*;

    #[test]
    fn file_names_round_trip() {
        assert_eq!(format_index_file_name(0), "19700101000000000");
        let ts = 1_700_000_123_456;
        let name = format_index_file_name(ts);
        assert_eq!(name, "20231114221523456");
        assert_eq!(parse_index_file_name(Path::new(&name)), Some(ts));
    }

    #[test]
    fn one_record_with_more_keys_than_a_file_holds_rolls_mid_record() {
        let dir = tempfile::tempdir().unwrap();
        let svc = IndexService::load(dir.path(), 4, 5, Arc::new(RealFileOps)).unwrap();
        let keys: Vec<String> = (0..12).map(|i| format!("k{i}")).collect();
        svc.put("T", keys.iter().map(String::as_str), 100, 1_000_000)
            .unwrap();
        assert!(svc.file_count() >= 3, "{}", svc.file_count());
        for key in &keys {
            assert_eq!(
                svc.query("T", key, 10, 0, i64::MAX).phy_offsets,
                vec![100],
                "{key}"
            );
        }
        // The next record goes on after the last file, and a re-dispatch is skipped.
        svc.put("T", ["k0"].into_iter(), 200, 1_001_000).unwrap();
        svc.put("T", ["k0"].into_iter(), 200, 1_001_000).unwrap();
        assert_eq!(
            svc.query("T", "k0", 10, 0, i64::MAX).phy_offsets,
            vec![200, 100]
        );
    }

    #[test]
    fn query_finds_keys_newest_first_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let svc = IndexService::load(dir.path(), 4, 5, Arc::new(RealFileOps)).unwrap();
        for i in 0..10i64 {
            let key = if i % 2 == 0 { "even" } else { "odd" };
            svc.put("T", [key].into_iter(), i * 100, 1_000_000 + i * 1000)
                .unwrap();
        }
        assert!(svc.file_count() >= 3);
        let q = svc.query("T", "even", 10, 0, i64::MAX);
        assert_eq!(q.phy_offsets, vec![800, 600, 400, 200, 0]);
        let q = svc.query("T", "odd", 2, 0, i64::MAX);
        assert_eq!(q.phy_offsets, vec![900, 700]);
        let q = svc.query("T", "odd", 10, 1_003_000, 1_005_000);
        assert_eq!(q.phy_offsets, vec![500, 300]);
        assert_eq!(q.last_update_phy_offset, 900);
        // Duplicates from re-dispatch are skipped.
        svc.put("T", ["odd"].into_iter(), 900, 1_009_000).unwrap();
        assert_eq!(svc.query("T", "odd", 10, 0, i64::MAX).phy_offsets.len(), 5);
        drop(svc);
        let svc = IndexService::load(dir.path(), 4, 5, Arc::new(RealFileOps)).unwrap();
        assert_eq!(svc.query("T", "even", 10, 0, i64::MAX).phy_offsets.len(), 5);
        assert_eq!(svc.drop_after(800), 1);
        assert_eq!(svc.max_phy_offset(), 700);
    }
}
