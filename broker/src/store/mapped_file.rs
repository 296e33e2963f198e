//! Fixed-size memory-mapped files (`MappedFile`) and the ordered list of them behind one log
//! (`MappedFileQueue`), plus the store's exclusive `lock` file and disk-usage probe.
//!
//! This is the only module of the store that contains `unsafe`.
//!
//! # Contract
//!
//! * A `MappedFile` has a fixed size, is named by the 20-digit zero-padded decimal of its first
//!   offset (`file_from_offset`), and tracks a *published write position* and a *flushed
//!   position*. An append copies bytes at the write position and then publishes the new
//!   position with `Release` ordering; readers load it with `Acquire` and never see bytes past
//!   it. Durability is the flusher's job (`flush`).
//! * Files opened for random access (`MappedFile::create_random_access`, used by the index and
//!   nothing else) publish their whole length and are written in place only under the exclusive
//!   region lock.
//!
//! # Soundness of the memory maps
//!
//! A Rust reference into a memory map is only sound while nobody else writes the bytes behind
//! it and the mapping stays valid. The argument, in the order the risks arise:
//!
//! 1. **Other processes.** The store root holds a `lock` file on which [`StoreLock`] keeps an
//!    exclusive `flock` for the life of the store; a second `MessageStore::open` of the same root
//!    (in this or another process) fails. Nothing else writes the files of a running store
//!    (an operator who edits them by hand is outside the contract, as with any database).
//! 2. **Truncation.** A file is created at its full size with `posix_fallocate` before it is
//!    mapped, and its length is never changed while it is mapped. Deleting a file only unlinks
//!    it; the mapping (owned by the `MappedFile`, which `Arc`s keep alive) stays valid.
//! 3. **Concurrent writers in this process.** Every write to a map happens under the file's
//!    `writer` mutex. Appends write only at or beyond the published position, which readers
//!    never read. Writes below the published position (in-place writes of random-access files,
//!    and `truncate_to` zeroing a tail) additionally hold the `region` lock exclusively.
//! 4. **Readers.** Every borrowed slice lives only inside [`MappedFile::with_slice`], which
//!    holds the `region` lock shared and bounds the range by the published position.
//!
//! 5. **Prefaulting and releasing.** [`MappedFileQueue::prefault_ahead`] asks the kernel to
//!    populate page tables (`MADV_POPULATE_WRITE`) ahead of the writer, and
//!    [`MappedFile::flush`] drops the page-table entries of written pages before writing them
//!    back (`MADV_DONTNEED`, which on a shared file map keeps the page-cache pages and their
//!    contents) and maps them again read-only after (`MADV_POPULATE_READ`). None of these reads
//!    or writes the bytes of the map, so none is an access in the sense of points 3 and 4, and
//!    none needs a lock.
//!
//! Writes through the map cannot fail with an error code; disk exhaustion would raise
//! `SIGBUS` on a sparse file, which is why files are preallocated with `posix_fallocate`, so
//! that a full disk is reported when a file is created instead.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use memmap2::MmapRaw;
use parking_lot::{Mutex, RwLock};

/// Chunk of zeros that [`MappedFile::truncate_to`] compares a tail with (`memcmp`, fast
/// even in debug builds) and rewrites when it differs.
static ZERO_CHUNK: [u8; 64 * 1024] = [0; 64 * 1024];

/// Bytes populated per `madvise(MADV_POPULATE_WRITE)` call by
/// [`MappedFileQueue::prefault_ahead`] (16 pages: under 0.1 ms even at VM first-touch costs of
/// ~5 µs a page), so no call holds the process's mmap lock long and the thread can be paced.
const PREFAULT_CHUNK: usize = 64 * 1024;

/// While the populated range leads the writer by at least this much,
/// [`MappedFileQueue::prefault_ahead`] sleeps [`PREFAULT_PACE`] between chunks.
const PREFAULT_RELAXED_LEAD: i64 = 8 * 1024 * 1024;

/// Pause between chunks when the writer is far behind (see [`PREFAULT_RELAXED_LEAD`]): the
/// prefault thread then takes at most about half a core, and its core goes idle often
/// enough for the scheduler to move waiting threads onto it. Unpaced, populating 4 MiB ran
/// as one 20 ms slice on one of the two cores while request threads queued on the other
/// (docs/BENCHMARKS.md, "End-to-end latency").
const PREFAULT_PACE: std::time::Duration = std::time::Duration::from_micros(100);

/// Fewest whole written pages [`MappedFile::flush`] unmaps before writing them back: below
/// this, one `madvise` call costs about what the per-page write protection it saves does.
const RELEASE_MIN_PAGES: usize = 4;

/// The system's page size in bytes (`sysconf(_SC_PAGESIZE)`, 4096 if that fails).
fn page_size() -> usize {
    static PAGE_SIZE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PAGE_SIZE.get_or_init(|| {
        // SAFETY: `sysconf` only reads its integer argument.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(size)
            .ok()
            .filter(|s| *s > 0)
            .unwrap_or(4096)
    })
}

/// [`MappedFile::access`]: the kernel's default advice (files opened at start-up).
const ACCESS_DEFAULT: u8 = 0;
/// [`MappedFile::access`]: `MADV_RANDOM`, the file is being appended to.
const ACCESS_APPEND: u8 = 1;
/// [`MappedFile::access`]: back to `MADV_NORMAL` after the file filled up.
const ACCESS_READ: u8 = 2;

/// Most data ranges [`MappedFile::data_ranges`] collects before it treats the rest as data
/// (bounds its allocation on a heavily fragmented file).
pub const MAX_DATA_RANGES: usize = 4096;

/// Width of a file name: the zero-padded decimal of the file's first offset
/// (RocketMQ `UtilAll.offset2FileName`).
pub const FILE_NAME_DIGITS: usize = 20;

/// Formats an offset as a 20-digit file name (`00000000001073741824`).
pub fn offset_to_file_name(offset: i64) -> String {
    format!("{offset:0width$}", width = FILE_NAME_DIGITS)
}

/// Hooks called before the file operations that can fail, so tests can inject faults
/// (the seam of STYLE.md §5 "error injection"). The production implementation is
/// [`RealFileOps`], whose hooks do nothing.
pub trait FileOps: Send + Sync + std::fmt::Debug {
    /// Called before a data file is created and preallocated.
    ///
    /// # Errors
    /// An error aborts the creation and is reported as the creation's error.
    fn before_create(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }
    /// Called before bytes are copied into a map by an append.
    ///
    /// # Errors
    /// An error aborts the append (nothing is written).
    fn before_append(&self, _path: &Path, _len: usize) -> io::Result<()> {
        Ok(())
    }
    /// Called before a range of a map is flushed (`msync`).
    ///
    /// # Errors
    /// An error is reported as a failed flush.
    fn before_flush(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }
}

/// The production [`FileOps`]: every hook succeeds.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFileOps;

impl FileOps for RealFileOps {}

/// Errors of mapped-file operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MappedFileError {
    /// An I/O call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (`create`, `open`, `map`, `flush`, ...).
        op: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// An existing file does not have the configured size (RocketMQ aborts startup then).
    #[error("file {path} has length {actual_bytes}, expected {expected_bytes}")]
    WrongSize {
        /// The file.
        path: PathBuf,
        /// Its length on disk.
        actual_bytes: u64,
        /// The configured size.
        expected_bytes: u64,
    },
    /// A file name in a log directory is not a 20-digit offset.
    #[error("unexpected file name {path}")]
    BadFileName {
        /// The file.
        path: PathBuf,
    },
    /// The files of a log directory are not contiguous.
    #[error("gap between mapped files before {path}")]
    Gap {
        /// The first file after the gap.
        path: PathBuf,
    },
}

impl MappedFileError {
    fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// One fixed-size memory-mapped file, named by its first offset.
///
/// See the module documentation for the concurrency contract.
#[derive(Debug)]
pub struct MappedFile {
    path: PathBuf,
    file_from_offset: i64,
    size: usize,
    map: MmapRaw,
    _file: File,
    /// Published write position (bytes from the start of the file).
    wrote_position: AtomicUsize,
    /// Everything before this position is durable.
    flushed_position: AtomicUsize,
    /// Serializes every write to the map.
    writer: Mutex<()>,
    /// Shared by readers, exclusive for writes below the published position.
    region: RwLock<()>,
    /// Which `madvise` access pattern the map has: `ACCESS_DEFAULT`, `ACCESS_APPEND` or
    /// `ACCESS_READ` (see [`MappedFile::prepare_for_appends`]).
    access: AtomicU8,
    ops: Arc<dyn FileOps>,
}

impl MappedFile {
    /// Creates (or reopens, if it exists with the right size) the file `dir/<offset name>`,
    /// preallocated to `size` bytes, with write position 0.
    ///
    /// # Errors
    /// I/O errors from the hook, create, `posix_fallocate` or `mmap`; `WrongSize` if an
    /// existing file has another length.
    pub fn create(
        dir: &Path,
        file_from_offset: i64,
        size: usize,
        ops: Arc<dyn FileOps>,
    ) -> Result<Self, MappedFileError> {
        let path = dir.join(offset_to_file_name(file_from_offset));
        ops.before_create(&path)
            .map_err(|e| MappedFileError::io("create", &path, e))?;
        fs::create_dir_all(dir).map_err(|e| MappedFileError::io("create dir", dir, e))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| MappedFileError::io("create", &path, e))?;
        preallocate(&file, size).map_err(|e| MappedFileError::io("preallocate", &path, e))?;
        let mapped = Self::map(path, file, file_from_offset, size, 0, ops)?;
        mapped.prepare_for_appends();
        Ok(mapped)
    }

    /// Creates a file meant for in-place writes (the index): the whole file is published.
    ///
    /// # Errors
    /// As [`MappedFile::create`].
    pub fn create_random_access(
        path: &Path,
        size: usize,
        ops: Arc<dyn FileOps>,
    ) -> Result<Self, MappedFileError> {
        ops.before_create(path)
            .map_err(|e| MappedFileError::io("create", path, e))?;
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| MappedFileError::io("create dir", dir, e))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| MappedFileError::io("create", path, e))?;
        preallocate(&file, size).map_err(|e| MappedFileError::io("preallocate", path, e))?;
        let mapped = Self::map(path.to_path_buf(), file, 0, size, size, ops)?;
        // Written and read at scattered slots: readahead would only zero pages nobody uses.
        mapped.prepare_for_appends();
        Ok(mapped)
    }

    /// Opens an existing file of exactly `size` bytes with its write position at `size`
    /// (recovery moves it back to the real end with [`MappedFile::truncate_to`]).
    ///
    /// # Errors
    /// I/O errors, or `WrongSize`.
    pub fn open_existing(
        path: &Path,
        file_from_offset: i64,
        size: usize,
        ops: Arc<dyn FileOps>,
    ) -> Result<Self, MappedFileError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| MappedFileError::io("open", path, e))?;
        Self::map(path.to_path_buf(), file, file_from_offset, size, size, ops)
    }

    fn map(
        path: PathBuf,
        file: File,
        file_from_offset: i64,
        size: usize,
        position: usize,
        ops: Arc<dyn FileOps>,
    ) -> Result<Self, MappedFileError> {
        let actual = file
            .metadata()
            .map_err(|e| MappedFileError::io("stat", &path, e))?
            .len();
        if actual != size as u64 {
            return Err(MappedFileError::WrongSize {
                path,
                actual_bytes: actual,
                expected_bytes: size as u64,
            });
        }
        let map = MmapRaw::map_raw(&file).map_err(|e| MappedFileError::io("mmap", &path, e))?;
        assert_eq!(map.len(), size, "a map covers its whole file");
        Ok(Self {
            path,
            file_from_offset,
            size,
            map,
            _file: file,
            wrote_position: AtomicUsize::new(position),
            flushed_position: AtomicUsize::new(position),
            writer: Mutex::new(()),
            region: RwLock::new(()),
            access: AtomicU8::new(ACCESS_DEFAULT),
            ops,
        })
    }

    /// Advises the kernel that the map is being appended to (`MADV_RANDOM`: no readahead), once.
    ///
    /// Appends fault in pages that are not yet in the page cache. With the default advice each
    /// such fault reads ahead: on Linux 6.x that allocates and zeroes a large folio (up to 2 MiB
    /// of unwritten extent) in one non-preemptible step, which took ~20 ms in this VM and
    /// stalled every thread waiting for that core (or for the append lock) once per 2 MiB
    /// written; the end-to-end p999 fell from ~30 ms to ~4 ms without it (docs/BENCHMARKS.md,
    /// "End-to-end latency"). Without readahead each fault populates one page.
    pub fn prepare_for_appends(&self) {
        if self.access.load(Ordering::Relaxed) != ACCESS_APPEND
            && self.access.swap(ACCESS_APPEND, Ordering::Relaxed) != ACCESS_APPEND
        {
            if let Err(e) = self.map.advise(memmap2::Advice::Random) {
                tracing::debug!(file = %self.path.display(), cause = %e, "madvise(MADV_RANDOM) failed");
            }
        }
    }

    /// Restores normal readahead once the file is full (reads of older files from disk, by
    /// consumers catching up, then read ahead as usual). Does nothing unless
    /// [`MappedFile::prepare_for_appends`] ran.
    pub fn prepare_for_reads(&self) {
        if self.access.load(Ordering::Relaxed) == ACCESS_APPEND
            && self.access.swap(ACCESS_READ, Ordering::Relaxed) == ACCESS_APPEND
        {
            if let Err(e) = self.map.advise(memmap2::Advice::Normal) {
                tracing::debug!(file = %self.path.display(), cause = %e, "madvise(MADV_NORMAL) failed");
            }
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// First offset stored in this file (its name).
    pub fn file_from_offset(&self) -> i64 {
        self.file_from_offset
    }

    /// File size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Published write position in bytes.
    pub fn wrote_position(&self) -> usize {
        self.wrote_position.load(Ordering::Acquire)
    }

    /// Flushed position in bytes.
    pub fn flushed_position(&self) -> usize {
        self.flushed_position.load(Ordering::Acquire)
    }

    /// Bytes left after the write position.
    pub fn remaining(&self) -> usize {
        self.size - self.wrote_position()
    }

    /// True when the write position is at the end of the file.
    pub fn is_full(&self) -> bool {
        self.wrote_position() == self.size
    }

    /// Appends `data` at the write position and publishes it. Returns the position the data
    /// starts at, or `Ok(None)` when it does not fit (nothing written).
    ///
    /// # Errors
    /// The `before_append` hook's error (nothing written).
    pub fn append(&self, data: &[u8]) -> io::Result<Option<usize>> {
        let _writer = self.writer.lock();
        let start = self.wrote_position.load(Ordering::Acquire);
        if data.len() > self.size - start {
            return Ok(None);
        }
        self.ops.before_append(&self.path, data.len())?;
        // SAFETY: `start + data.len() <= self.size == map.len()`, so the destination is inside
        // the mapping, which lives as long as `self`. The range is at or beyond the published
        // position, which no reader reads (module doc, point 4), and the `writer` mutex
        // excludes every other writer (point 3). Source and destination cannot overlap because
        // `data` is not borrowed from this map (maps are never handed out as slices that
        // outlive `with_slice`, which holds the region lock this call does not need).
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.map.as_mut_ptr().add(start),
                data.len(),
            );
        }
        self.wrote_position
            .store(start + data.len(), Ordering::Release);
        Ok(Some(start))
    }

    /// Appends the end-of-file marker `marker` at the write position and publishes the whole
    /// file (the bytes after the marker are zero), so the file is full.
    ///
    /// # Errors
    /// The `before_append` hook's error, or `InvalidInput` if the marker does not fit.
    pub fn append_end_marker(&self, marker: &[u8]) -> io::Result<()> {
        let _writer = self.writer.lock();
        let start = self.wrote_position.load(Ordering::Acquire);
        if marker.len() > self.size - start {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "end marker does not fit",
            ));
        }
        self.ops.before_append(&self.path, marker.len())?;
        // SAFETY: as in `append`: the range `[start, start + marker.len())` is inside the map,
        // at or beyond the published position, and the writer mutex is held.
        unsafe {
            std::ptr::copy_nonoverlapping(
                marker.as_ptr(),
                self.map.as_mut_ptr().add(start),
                marker.len(),
            );
        }
        self.wrote_position.store(self.size, Ordering::Release);
        Ok(())
    }

    /// Writes `data` at `pos`, anywhere in the file, and extends the published position if the
    /// write ends beyond it. Used by random-access files (the index).
    ///
    /// # Panics
    /// If `pos + data.len()` exceeds the file size (a caller bug, never peer input).
    pub fn write_at(&self, pos: usize, data: &[u8]) {
        assert!(pos + data.len() <= self.size, "write_at inside the file");
        let _writer = self.writer.lock();
        let _region = self.region.write();
        // SAFETY: the range is inside the mapping (asserted above). The exclusive region lock
        // guarantees no reader holds a slice into the map, and the writer mutex excludes
        // other writers (module doc, point 3).
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.map.as_mut_ptr().add(pos),
                data.len(),
            );
        }
        let end = pos + data.len();
        if end > self.wrote_position.load(Ordering::Acquire) {
            self.wrote_position.store(end, Ordering::Release);
        }
    }

    /// Calls `f` with the published bytes `[pos, pos + len)`, or returns `None` if that range
    /// is not entirely published.
    pub fn with_slice<R>(&self, pos: usize, len: usize, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let _region = self.region.read();
        let published = self.wrote_position.load(Ordering::Acquire);
        let end = pos.checked_add(len)?;
        if end > published {
            return None;
        }
        // SAFETY: `pos + len <= published <= size`, so the range is inside the mapping, which
        // lives as long as `self`. The shared region lock excludes in-place writers and
        // truncation, and appends only write at or beyond `published` (module doc, points 3
        // and 4). The slice does not escape this call.
        let slice = unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(pos), len) };
        Some(f(slice))
    }

    /// Copies the published bytes `[pos, pos + len)` out, or `None` if not all published.
    pub fn read(&self, pos: usize, len: usize) -> Option<Bytes> {
        self.with_slice(pos, len, Bytes::copy_from_slice)
    }

    /// Moves the write position back to `pos` and zeroes every non-zero byte between `pos` and
    /// the old write position. Returns the number of bytes that were not zero there (rounded
    /// up to the 64 KiB chunks that had to be rewritten; 0 when the tail was clean).
    ///
    /// The cost is proportional to the data in that range, not to its length: only the ranges
    /// the file system reports as data (`lseek` `SEEK_DATA`/`SEEK_HOLE`, see
    /// [`MappedFile::data_ranges`]) are read, since a hole reads as zeros; of those, only the
    /// chunks that are not already zero are written. A file reopened after a crash has its
    /// write position at its full size, so this matters: a 1 GiB CommitLog holding a few
    /// records costs a few page reads here, not two passes over 1 GiB (docs/design/store.md,
    /// "Truncating a tail").
    ///
    /// # Panics
    /// If `pos` exceeds the file size.
    pub fn truncate_to(&self, pos: usize) -> usize {
        assert!(pos <= self.size, "truncate inside the file");
        let _writer = self.writer.lock();
        let _region = self.region.write();
        let old = self.wrote_position.load(Ordering::Acquire);
        let mut dirty_bytes = 0usize;
        for (from, to) in self.data_ranges(pos, old) {
            let mut at = from;
            // Bounded: every iteration advances `at` by at least one byte towards `to`.
            while at < to {
                let len = ZERO_CHUNK.len().min(to - at);
                // SAFETY: `[at, at + len)` is inside `[pos, old)` (`data_ranges` only returns
                // sub-ranges of its arguments) and `old <= size`; the exclusive region lock and
                // the writer mutex exclude every reader and writer (module doc, point 3).
                let chunk = unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(at), len) };
                if chunk != &ZERO_CHUNK[..len] {
                    // SAFETY: same range and locks as above; the shared slice `chunk` is not
                    // used after this point.
                    unsafe { std::ptr::write_bytes(self.map.as_mut_ptr().add(at), 0, len) };
                    dirty_bytes += len;
                }
                at += len;
            }
        }
        self.wrote_position.store(pos, Ordering::Release);
        if self.flushed_position.load(Ordering::Acquire) > pos {
            self.flushed_position.store(pos, Ordering::Release);
        }
        dirty_bytes
    }

    /// The sub-ranges of `[from, to)` that may hold non-zero bytes, in order: the data ranges
    /// the file system reports with `lseek(SEEK_DATA)` / `lseek(SEEK_HOLE)`. Everything
    /// outside them is a hole, which reads as zeros (POSIX; a file system may report a hole
    /// as data, never data as a hole). Pages written through the map but not yet written
    /// back are page-cache pages, which Linux reports as data even inside unwritten
    /// (`posix_fallocate`d) extents.
    ///
    /// When the file system does not support the query (`EINVAL`) or another error occurs,
    /// or after [`MAX_DATA_RANGES`] ranges, the rest of the range is returned as data, so the
    /// answer is always safe; only its cost changes.
    pub fn data_ranges(&self, from: usize, to: usize) -> Vec<(usize, usize)> {
        let to = to.min(self.size);
        let mut ranges = Vec::new();
        let mut at = from;
        // Bounded: every round moves `at` strictly forward or ends the loop.
        while at < to {
            if ranges.len() >= MAX_DATA_RANGES {
                ranges.push((at, to));
                break;
            }
            let Some(data) = self.seek(at, libc::SEEK_DATA) else {
                ranges.push((at, to));
                break;
            };
            // `None` here means ENXIO: no data at or after `at`.
            let Some(data) = data else { break };
            if data >= to {
                break;
            }
            let hole = match self.seek(data, libc::SEEK_HOLE) {
                Some(Some(hole)) if hole > data => hole.min(to),
                _ => to,
            };
            ranges.push((data.max(at), hole));
            at = hole;
        }
        ranges
    }

    /// `lseek(fd, at, whence)`: `Some(Some(offset))` on success, `Some(None)` for `ENXIO`
    /// (no data at or after `at`), `None` for any other error (the caller assumes data).
    fn seek(&self, at: usize, whence: libc::c_int) -> Option<Option<usize>> {
        let offset = libc::off_t::try_from(at).ok()?;
        // SAFETY: `lseek` only takes integers; the descriptor is owned by `self._file` and open
        // for the call. It moves the descriptor's file position, which nothing else uses (the
        // file is accessed through the map, `msync` and `posix_fallocate` only).
        let rc = unsafe { libc::lseek(self._file.as_raw_fd(), offset, whence) };
        if rc >= 0 {
            return usize::try_from(rc).ok().map(Some);
        }
        if io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) {
            Some(None)
        } else {
            None
        }
    }

    /// Flushes the published but not yet flushed range (`msync`). Returns the new flushed
    /// position.
    ///
    /// # Errors
    /// The hook's or `msync`'s error; the flushed position is unchanged then.
    pub fn flush(&self) -> io::Result<usize> {
        let wrote = self.wrote_position();
        let flushed = self.flushed_position();
        if wrote <= flushed {
            return Ok(flushed);
        }
        self.ops.before_flush(&self.path)?;
        let released = self.release_written_pages(flushed, wrote);
        self.map.flush_range(flushed, wrote - flushed)?;
        self.flushed_position.fetch_max(wrote, Ordering::AcqRel);
        if let Some((start, len)) = released {
            // Map the now clean pages again, read-only (a shared map's read fault never maps
            // writable), so that the consumers reading them next take no fault: one fault per
            // 16 pages cost the consume benchmark a third of its throughput. Best effort.
            if let Err(e) = self
                .map
                .advise_range(memmap2::Advice::PopulateRead, start, len)
            {
                tracing::debug!(file = %self.path.display(), cause = %e, "madvise(MADV_POPULATE_READ) failed");
            }
        }
        Ok(wrote)
    }

    /// Drops this process's page-table entries for the whole pages of `[from, to)`
    /// (`madvise(MADV_DONTNEED)`) before they are written back, when there are at least
    /// [`RELEASE_MIN_PAGES`] of them; returns the released range `(start, len)`. Appends never
    /// write below the published position again, so these pages are done with.
    ///
    /// Why: writeback must write-protect every writable entry that maps a dirty page
    /// (`folio_mkclean`), and Linux does that one page at a time with a TLB-shootdown IPI to
    /// every other CPU running the broker. In a VM each IPI is a VM exit; at 140k msgs/s that
    /// was 6–12 % of both cores (docs/BENCHMARKS.md, "fourth session"). Zapping the range
    /// first costs one flush for all of it; the dirty bits move to the pages themselves, so
    /// nothing is lost, and `flush` maps the pages back read-only after the write-back
    /// (writeback skips read-only entries). Best effort: an error only costs the IPIs.
    fn release_written_pages(&self, from: usize, to: usize) -> Option<(usize, usize)> {
        let page = page_size();
        let start = from / page * page;
        let end = (to / page * page).min(self.size);
        if end <= start || (end - start) / page < RELEASE_MIN_PAGES {
            return None;
        }
        // SAFETY: the map is a `MAP_SHARED` map of a regular file whose length never changes
        // while it is mapped (point 2 of the module docs), and `[start, end)` is inside it.
        // `MADV_DONTNEED` on such a map only removes page-table entries: the page-cache pages
        // and their contents stay (a dirty entry marks its page dirty first), and any later
        // access maps the same pages again. No byte that a reader borrowed under
        // `with_slice` changes, so, as with `prefault`, this is no access in the sense of
        // points 3 and 4 and needs no lock.
        let released = unsafe {
            self.map
                .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
        };
        match released {
            Ok(()) => Some((start, end - start)),
            Err(e) => {
                tracing::debug!(file = %self.path.display(), cause = %e, "madvise(MADV_DONTNEED) failed");
                None
            }
        }
    }

    /// Populates the page tables of `[pos, pos + len)` (clamped to the file) for writing with
    /// `madvise(MADV_POPULATE_WRITE)`, without reading or writing the bytes (see
    /// [`MappedFileQueue::prefault_ahead`]).
    ///
    /// # Errors
    /// `madvise` errors; `EINVAL` on kernels before 5.14.
    pub fn prefault(&self, pos: usize, len: usize) -> io::Result<()> {
        let pos = pos.min(self.size);
        let len = len.min(self.size - pos);
        if len == 0 {
            return Ok(());
        }
        self.map
            .advise_range(memmap2::Advice::PopulateWrite, pos, len)
    }

    /// Flushes the whole file regardless of positions (used by random-access files, whose
    /// in-place writes are not tracked by position).
    ///
    /// # Errors
    /// The hook's or `msync`'s error.
    pub fn flush_all(&self) -> io::Result<()> {
        self.ops.before_flush(&self.path)?;
        self.map.flush()
    }
}

/// Moves the calling thread to Linux's `SCHED_IDLE` scheduling policy: it then runs only on a
/// core nothing else wants, and any other thread that wakes preempts it at once. For the
/// prefault thread, whose page population costs up to ~5 µs of kernel time per 4 KiB page in a
/// VM and ran 20 ms slices on one of two cores, delaying every request on that core
/// (docs/BENCHMARKS.md, "End-to-end latency"). When the machine is saturated the thread
/// starves and the appender faults the pages in itself, which is the same work done later.
/// A no-op returning `Ok` off Linux.
///
/// # Errors
/// `sched_setscheduler` refused (not expected: lowering one's own priority needs no
/// privilege).
pub fn set_current_thread_sched_idle() -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `sched_setscheduler` reads `param` (a valid, live `sched_param` on the stack)
        // during the call only; pid 0 names the calling thread, whose policy is all it changes.
        let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Preallocates `size` bytes so writes through the map never hit a full disk (`SIGBUS`).
fn preallocate(file: &File, size: usize) -> io::Result<()> {
    let len = libc::off_t::try_from(size)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file size overflows off_t"))?;
    // SAFETY: `posix_fallocate` only reads its integer arguments; the descriptor is owned by
    // `file`, which outlives the call.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    if rc == 0 {
        return Ok(());
    }
    if rc == libc::EOPNOTSUPP || rc == libc::EINVAL {
        // Some file systems (tmpfs on old kernels) do not support it; fall back to set_len,
        // which the soundness argument allows because the file is not mapped yet.
        return file.set_len(size as u64);
    }
    Err(io::Error::from_raw_os_error(rc))
}

/// The ordered, contiguous list of `MappedFile`s of one log directory.
#[derive(Debug)]
pub struct MappedFileQueue {
    dir: PathBuf,
    file_size: usize,
    files: RwLock<Vec<Arc<MappedFile>>>,
    /// A preallocated file for the next roll (not yet part of the log). Only ever holds the
    /// file that starts where the last file ends (see [`MappedFileQueue::spare_file`]).
    spare: Mutex<Option<Arc<MappedFile>>>,
    /// Log offset up to which pages ahead of the writer have been populated.
    prefaulted_to: AtomicI64,
    /// `MADV_POPULATE_WRITE` is not supported by the kernel (before Linux 5.14).
    prefault_unsupported: AtomicBool,
    ops: Arc<dyn FileOps>,
}

impl MappedFileQueue {
    /// Opens `dir` (creating it), mapping every existing file at full write position. Files
    /// must be named by their offsets, have size `file_size` and be contiguous.
    ///
    /// # Errors
    /// I/O errors, a wrong size, a bad name or a gap.
    pub fn load(
        dir: &Path,
        file_size: usize,
        ops: Arc<dyn FileOps>,
    ) -> Result<Self, MappedFileError> {
        fs::create_dir_all(dir).map_err(|e| MappedFileError::io("create dir", dir, e))?;
        let mut named = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| MappedFileError::io("read dir", dir, e))? {
            let entry = entry.map_err(|e| MappedFileError::io("read dir", dir, e))?;
            let path = entry.path();
            if !path.is_file() {
                continue;
            }
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".tmp") {
                continue;
            }
            let offset = match name.parse::<i64>() {
                Ok(o) if name.len() == FILE_NAME_DIGITS && o >= 0 => o,
                _ => return Err(MappedFileError::BadFileName { path }),
            };
            named.push((offset, path));
        }
        named.sort_by_key(|(o, _)| *o);
        let mut files = Vec::with_capacity(named.len());
        let mut expected: Option<i64> = None;
        let count = named.len();
        for (i, (offset, path)) in named.into_iter().enumerate() {
            if let Some(e) = expected {
                if e != offset {
                    return Err(MappedFileError::Gap { path });
                }
            }
            let len = fs::metadata(&path)
                .map_err(|e| MappedFileError::io("stat", &path, e))?
                .len();
            if len == 0 && i + 1 == count {
                // An empty last file is the trace of a crash during creation (RocketMQ deletes it).
                tracing::warn!(file = %path.display(), "deleting empty last mapped file");
                fs::remove_file(&path).map_err(|e| MappedFileError::io("delete", &path, e))?;
                continue;
            }
            files.push(Arc::new(MappedFile::open_existing(
                &path,
                offset,
                file_size,
                ops.clone(),
            )?));
            expected = Some(offset + file_size as i64);
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            file_size,
            files: RwLock::new(files),
            spare: Mutex::new(None),
            prefaulted_to: AtomicI64::new(0),
            prefault_unsupported: AtomicBool::new(false),
            ops,
        })
    }

    /// The directory of this log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Configured file size in bytes.
    pub fn file_size(&self) -> usize {
        self.file_size
    }

    /// A snapshot of the files, oldest first.
    pub fn files(&self) -> Vec<Arc<MappedFile>> {
        self.files.read().clone()
    }

    /// Number of files.
    pub fn file_count(&self) -> usize {
        self.files.read().len()
    }

    /// The first file.
    pub fn first_file(&self) -> Option<Arc<MappedFile>> {
        self.files.read().first().cloned()
    }

    /// The last file.
    pub fn last_file(&self) -> Option<Arc<MappedFile>> {
        self.files.read().last().cloned()
    }

    /// The file whose range contains `offset` (or, if `offset` is exactly the end of the last
    /// file, `None`).
    pub fn find_file(&self, offset: i64) -> Option<Arc<MappedFile>> {
        let files = self.files.read();
        let first = files.first()?.file_from_offset();
        if offset < first {
            return None;
        }
        let index = usize::try_from((offset - first) / self.file_size as i64).ok()?;
        let file = files.get(index)?;
        debug_assert!(
            offset >= file.file_from_offset()
                && offset < file.file_from_offset() + self.file_size as i64
        );
        Some(file.clone())
    }

    /// Creates the file starting at `file_from_offset` and appends it. The new file must be
    /// contiguous with the last one (or the queue must be empty).
    ///
    /// # Errors
    /// Creation errors, or `Gap` if not contiguous.
    pub fn create_file(&self, file_from_offset: i64) -> Result<Arc<MappedFile>, MappedFileError> {
        let mut files = self.files.write();
        if let Some(last) = files.last() {
            if last.file_from_offset() + self.file_size as i64 != file_from_offset {
                return Err(MappedFileError::Gap {
                    path: self.dir.join(offset_to_file_name(file_from_offset)),
                });
            }
        }
        let spare = self
            .spare
            .lock()
            .take()
            .filter(|s| s.file_from_offset() == file_from_offset);
        let file = match spare {
            Some(s) => s,
            None => Arc::new(MappedFile::create(
                &self.dir,
                file_from_offset,
                self.file_size,
                self.ops.clone(),
            )?),
        };
        files.push(file.clone());
        Ok(file)
    }

    /// Creates the file after the last one ahead of time (kept aside until a roll needs it)
    /// once the last file is half full, so appends rarely wait for file creation.
    ///
    /// # Errors
    /// Creation errors.
    pub fn preallocate_next(&self) -> Result<(), MappedFileError> {
        let Some(last) = self.last_file() else {
            return Ok(());
        };
        if last.wrote_position() < last.size() / 2 {
            return Ok(());
        }
        self.spare_file(last.file_from_offset() + self.file_size as i64)
            .map(drop)
    }

    /// The spare file starting at `next`, created if missing. Returns `None` when `next` is no
    /// longer where the last file ends (a roll got there first; the file just created is then
    /// dropped, never deleted, because the log may own the same path now).
    ///
    /// The file is created with no lock held, and stored under the files lock then the spare
    /// lock, the order [`MappedFileQueue::create_file`] takes them, so a roll never waits for a
    /// creation and a stale spare never exists.
    fn spare_file(&self, next: i64) -> Result<Option<Arc<MappedFile>>, MappedFileError> {
        if let Some(s) = self
            .spare
            .lock()
            .as_ref()
            .filter(|s| s.file_from_offset() == next)
        {
            return Ok(Some(s.clone()));
        }
        let created = Arc::new(MappedFile::create(
            &self.dir,
            next,
            self.file_size,
            self.ops.clone(),
        )?);
        let files = self.files.read();
        let still_next = files
            .last()
            .is_some_and(|l| l.file_from_offset() + self.file_size as i64 == next);
        if !still_next {
            return Ok(None);
        }
        let mut spare = self.spare.lock();
        match spare.as_ref().filter(|s| s.file_from_offset() == next) {
            Some(existing) => Ok(Some(existing.clone())),
            None => {
                *spare = Some(created.clone());
                Ok(Some(created))
            }
        }
    }

    /// Populates the page tables of the `ahead` bytes after the write position
    /// (`MADV_POPULATE_WRITE`), in the last file and, when the range crosses its end, in the
    /// spare file (created here if missing), so the appender copies into pages that are
    /// already mapped writable instead of taking a page fault every 4 KiB. Ranges already
    /// populated are skipped. Returns the bytes populated by this call.
    ///
    /// Populating does not read or write the bytes of the map (the kernel faults the pages in
    /// without touching their contents), so it needs no writer or region lock. The pages
    /// become dirty zero pages of the preallocated file; the appender overwrites them soon
    /// after. On kernels without `MADV_POPULATE_WRITE` (before 5.14) it does nothing.
    ///
    /// With `paced`, the range is populated in [`PREFAULT_CHUNK`] steps with a
    /// [`PREFAULT_PACE`] pause after each while it leads the writer by
    /// [`PREFAULT_RELAXED_LEAD`] (the background thread); without, as fast as the kernel goes.
    ///
    /// # Errors
    /// Creation errors of the spare file, or `madvise` errors other than "unsupported".
    pub fn prefault_ahead(&self, ahead: usize, paced: bool) -> Result<usize, MappedFileError> {
        if self.prefault_unsupported.load(Ordering::Relaxed) {
            return Ok(0);
        }
        let Some(last) = self.last_file() else {
            return Ok(0);
        };
        let size = self.file_size as i64;
        let last_start = last.file_from_offset();
        let last_end = last_start + size;
        let write_at = last_start + last.wrote_position() as i64;
        let target = write_at.saturating_add(i64::try_from(ahead).unwrap_or(i64::MAX));
        let mut from = self.prefaulted_to.load(Ordering::Acquire).max(write_at);
        let mut done = 0usize;
        let mut populate = |file: &MappedFile, from: i64, to: i64| -> Result<(), MappedFileError> {
            let start = file.file_from_offset();
            // In range by construction: start <= from < to <= start + size.
            let pos = usize::try_from(from - start).unwrap_or(0);
            let len = usize::try_from(to - from).unwrap_or(0);
            let mut at = pos;
            let mut result = Ok(());
            while at < pos + len {
                let n = PREFAULT_CHUNK.min(pos + len - at);
                result = file.prefault(at, n);
                if result.is_err() {
                    break;
                }
                at += n;
                done += n;
                let lead = start + at as i64 - (last_start + last.wrote_position() as i64);
                if paced && lead >= PREFAULT_RELAXED_LEAD {
                    std::thread::sleep(PREFAULT_PACE);
                }
            }
            match result {
                Ok(()) => Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    tracing::info!("MADV_POPULATE_WRITE unsupported; appends will page-fault");
                    self.prefault_unsupported.store(true, Ordering::Relaxed);
                    Ok(())
                }
                Err(e) => Err(MappedFileError::io("prefault", file.path(), e)),
            }
        };
        let in_last = target.min(last_end);
        if from < in_last {
            populate(&last, from, in_last)?;
            from = in_last;
        }
        if target > last_end {
            if let Some(spare) = self.spare_file(last_end)? {
                from = from.max(last_end);
                let in_spare = target.min(last_end + size);
                if from < in_spare {
                    populate(&spare, from, in_spare)?;
                    from = in_spare;
                }
            }
        }
        self.prefaulted_to.fetch_max(from, Ordering::AcqRel);
        Ok(done)
    }

    /// The last file if it has room, else a new file after it (or at `start_if_empty` when the
    /// queue is empty; it is rounded down to a file boundary).
    ///
    /// # Errors
    /// Creation errors.
    pub fn last_file_or_create(
        &self,
        start_if_empty: i64,
    ) -> Result<Arc<MappedFile>, MappedFileError> {
        match self.last_file() {
            Some(last) if !last.is_full() => {
                last.prepare_for_appends();
                Ok(last)
            }
            Some(last) => {
                last.prepare_for_reads();
                self.create_file(last.file_from_offset() + self.file_size as i64)
            }
            None => {
                let start = start_if_empty - start_if_empty.rem_euclid(self.file_size as i64);
                self.create_file(start)
            }
        }
    }

    /// First offset of the first file (0 when empty).
    pub fn min_offset(&self) -> i64 {
        self.first_file().map_or(0, |f| f.file_from_offset())
    }

    /// Offset just past the last published byte (0 when empty).
    pub fn max_offset(&self) -> i64 {
        self.last_file()
            .map_or(0, |f| f.file_from_offset() + f.wrote_position() as i64)
    }

    /// Offset up to which everything is flushed.
    pub fn flushed_offset(&self) -> i64 {
        let files = self.files.read();
        for f in files.iter() {
            if f.flushed_position() < f.wrote_position() || f.wrote_position() < f.size() {
                return f.file_from_offset() + f.flushed_position() as i64;
            }
        }
        files
            .last()
            .map_or(0, |f| f.file_from_offset() + f.flushed_position() as i64)
    }

    /// Flushes every file with unflushed bytes. Returns the flushed offset.
    ///
    /// # Errors
    /// The first flush error.
    pub fn flush(&self) -> io::Result<i64> {
        for f in self.files() {
            if f.flushed_position() < f.wrote_position() {
                f.flush()?;
            }
        }
        Ok(self.flushed_offset())
    }

    /// Drops everything at or after `offset`: files starting at or after it are deleted, the
    /// file containing it is truncated (its tail zeroed, see [`MappedFile::truncate_to`]).
    /// Returns the bytes that were not zero in that tail (0 for a clean tail).
    ///
    /// # Errors
    /// Deletion errors.
    pub fn truncate_after(&self, offset: i64) -> Result<usize, MappedFileError> {
        if let Some(spare) = self.spare.lock().take() {
            let _ = fs::remove_file(spare.path());
        }
        self.prefaulted_to.store(0, Ordering::Release);
        let mut files = self.files.write();
        while let Some(last) = files.last() {
            if last.file_from_offset() >= offset {
                let path = last.path().to_path_buf();
                files.pop();
                fs::remove_file(&path).map_err(|e| MappedFileError::io("delete", &path, e))?;
                tracing::warn!(file = %path.display(), "deleted mapped file past the truncation point");
            } else {
                break;
            }
        }
        if let Some(last) = files.last() {
            let pos = offset - last.file_from_offset();
            let pos = usize::try_from(pos).unwrap_or(0).min(last.size());
            if pos < last.wrote_position() {
                return Ok(last.truncate_to(pos));
            }
        }
        Ok(0)
    }

    /// Deletes the first file if `predicate` accepts it and it is not the last file; repeats
    /// up to `max_count` times. Returns the number of deleted files.
    pub fn delete_leading_files(
        &self,
        max_count: usize,
        mut predicate: impl FnMut(&MappedFile, Option<&MappedFile>) -> bool,
    ) -> usize {
        let mut deleted = 0;
        while deleted < max_count {
            let mut files = self.files.write();
            if files.len() < 2 {
                break;
            }
            if !predicate(&files[0], files.get(1).map(|f| &**f)) {
                break;
            }
            let file = files.remove(0);
            drop(files);
            if let Err(e) = fs::remove_file(file.path()) {
                tracing::error!(file = %file.path().display(), cause = %e, "cannot delete expired file");
            }
            deleted += 1;
        }
        deleted
    }

    /// Deletes every file and the directory.
    pub fn destroy(&self) {
        let mut files = self.files.write();
        files.clear();
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::error!(dir = %self.dir.display(), cause = %e, "cannot delete directory");
            }
        }
    }
}

/// An exclusive `flock` on `<store root>/lock`, held for the life of the store.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
    path: PathBuf,
}

impl StoreLock {
    /// Takes the lock without waiting.
    ///
    /// # Errors
    /// `WouldBlock` (with a message naming the file) when another store holds it, or the I/O
    /// error of opening the file.
    pub fn acquire(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        // SAFETY: `flock` only takes the descriptor, owned by `file` and open for the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "store lock {} is held by another running store",
                        path.display()
                    ),
                ));
            }
            return Err(err);
        }
        Ok(Self {
            _file: file,
            path: path.to_path_buf(),
        })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Fraction of the file system holding `path` that is used, in `[0, 1]`: `used / (used +
/// available)`, the `Use%` that `df` shows. Blocks that are neither used nor available to
/// unprivileged users (root reserve, quotas of overlay file systems) do not count, so a volume
/// with a large reserve is not mistaken for a full one.
///
/// # Errors
/// `statvfs` errors, or a path with an interior NUL.
pub fn disk_used_ratio(path: &Path) -> io::Result<f64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` points to writable memory of
    // the right type; both outlive the call.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `statvfs` returned 0, so it initialized the struct.
    let stat = unsafe { stat.assume_init() };
    let used = stat.f_blocks.saturating_sub(stat.f_bfree) as f64;
    let avail = stat.f_bavail as f64;
    if used + avail <= 0.0 {
        return Ok(0.0);
    }
    Ok((used / (used + avail)).clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops() -> Arc<dyn FileOps> {
        Arc::new(RealFileOps)
    }

    #[test]
    fn append_publishes_and_reads_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let f = MappedFile::create(dir.path(), 0, 64, ops()).unwrap();
        assert_eq!(f.append(b"hello").unwrap(), Some(0));
        assert_eq!(f.append(b"world").unwrap(), Some(5));
        assert_eq!(&f.read(0, 10).unwrap()[..], b"helloworld");
        assert!(f.read(5, 6).is_none());
        assert_eq!(f.append(&[1u8; 60]).unwrap(), None);
        f.truncate_to(5);
        assert!(f.read(0, 6).is_none());
        assert_eq!(f.append(b"!").unwrap(), Some(5));
        assert_eq!(&f.read(0, 6).unwrap()[..], b"hello!");
        f.flush().unwrap();
        assert_eq!(f.flushed_position(), 6);
    }

    /// Resident bytes of the mapping of `path` in this process (`Rss` in `/proc/self/smaps`).
    #[cfg(target_os = "linux")]
    fn mapped_rss(path: &Path) -> usize {
        let smaps = fs::read_to_string("/proc/self/smaps").unwrap();
        let name = path.to_str().unwrap();
        let mut in_map = false;
        for line in smaps.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            if first.contains('-') && !first.ends_with(':') {
                in_map = line.ends_with(name);
            } else if in_map && first == "Rss:" {
                let kib: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
                return kib * 1024;
            }
        }
        panic!("no mapping of {name}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn flush_unmaps_the_written_pages_and_keeps_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let page = page_size();
        let f = MappedFile::create(dir.path(), 0, 64 * page, ops()).unwrap();
        let data: Vec<u8> = (0..40 * page + 100).map(|i| (i % 251) as u8).collect();
        assert_eq!(f.append(&data).unwrap(), Some(0));
        assert!(mapped_rss(f.path()) >= 40 * page);
        // What `flush` does first: only the page the writer is still in stays mapped.
        assert_eq!(f.release_written_pages(0, data.len()), Some((0, 40 * page)));
        assert!(mapped_rss(f.path()) <= page, "rss {}", mapped_rss(f.path()));
        assert_eq!(f.release_written_pages(0, 3 * page), None, "too few pages");
        f.flush().unwrap();
        // The written-back pages are mapped again (read-only) for the readers that follow.
        assert!(mapped_rss(f.path()) >= 40 * page);
        assert_eq!(&f.read(0, data.len()).unwrap()[..], &data[..]);
        assert_eq!(&fs::read(f.path()).unwrap()[..data.len()], &data[..]);
        // Appends go on in the partly written page; a short range is flushed as before.
        assert_eq!(f.append(b"tail").unwrap(), Some(data.len()));
        assert_eq!(f.flush().unwrap(), data.len() + 4);
        assert_eq!(
            &f.read(data.len() - 2, 6).unwrap()[..],
            &[
                data[data.len() - 2],
                data[data.len() - 1],
                b't',
                b'a',
                b'i',
                b'l'
            ]
        );
        drop(f);
        let reopened = fs::read(dir.path().join(offset_to_file_name(0))).unwrap();
        assert_eq!(&reopened[..data.len()], &data[..]);
        assert_eq!(&reopened[data.len()..data.len() + 4], b"tail");
    }

    #[test]
    fn appended_files_have_no_readahead_until_they_are_full() {
        let dir = tempfile::tempdir().unwrap();
        let q = MappedFileQueue::load(dir.path(), 32, ops()).unwrap();
        let first = q.last_file_or_create(0).unwrap();
        assert_eq!(first.access.load(Ordering::Relaxed), ACCESS_APPEND);
        first.append(&[1; 32]).unwrap().unwrap();
        // The roll hands the full file back to readers, with normal readahead.
        let second = q.last_file_or_create(0).unwrap();
        assert_eq!(first.access.load(Ordering::Relaxed), ACCESS_READ);
        assert_eq!(second.access.load(Ordering::Relaxed), ACCESS_APPEND);
        // Reopened files keep the default until the append path picks the last one again.
        second.append(&[2; 8]).unwrap().unwrap();
        drop((first, second, q));
        let q = MappedFileQueue::load(dir.path(), 32, ops()).unwrap();
        let files = q.files();
        assert!(files
            .iter()
            .all(|f| f.access.load(Ordering::Relaxed) == ACCESS_DEFAULT));
        files[1].truncate_to(8);
        let last = q.last_file_or_create(0).unwrap();
        assert_eq!(last.file_from_offset(), 32);
        assert_eq!(last.access.load(Ordering::Relaxed), ACCESS_APPEND);
        // The index (random access) never reads ahead.
        let index =
            MappedFile::create_random_access(&dir.path().join("index"), 4096, ops()).unwrap();
        assert_eq!(index.access.load(Ordering::Relaxed), ACCESS_APPEND);
    }

    #[test]
    fn queue_rolls_finds_truncates_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let q = MappedFileQueue::load(dir.path(), 32, ops()).unwrap();
        for i in 0..5u8 {
            let f = q.last_file_or_create(0).unwrap();
            f.append(&[i + 1; 16]).unwrap().unwrap();
        }
        assert_eq!(q.file_count(), 3);
        assert_eq!(q.max_offset(), 80);
        assert_eq!(q.find_file(70).unwrap().file_from_offset(), 64);
        assert!(q.find_file(96).is_none());
        q.truncate_after(40).unwrap();
        assert_eq!(q.file_count(), 2);
        assert_eq!(q.max_offset(), 40);
        q.flush().unwrap();
        drop(q);
        let q = MappedFileQueue::load(dir.path(), 32, ops()).unwrap();
        assert_eq!(q.file_count(), 2);
        let second = q.find_file(32).unwrap();
        assert_eq!(&second.read(0, 10).unwrap()[..8], &[3u8; 8]);
        assert_eq!(&second.read(8, 8).unwrap()[..], &[0u8; 8]);
        assert_eq!(q.delete_leading_files(10, |_, _| true), 1);
        assert_eq!(q.min_offset(), 32);
    }

    #[test]
    fn data_ranges_cover_every_non_zero_byte_and_truncation_zeroes_them() {
        const SIZE: usize = 8 * 1024 * 1024;
        let dir = tempfile::tempdir().unwrap();
        let f = MappedFile::create(dir.path(), 0, SIZE, ops()).unwrap();
        f.append(&[7u8; 100]).unwrap().unwrap();
        drop(f);
        // Bytes written behind the map's back, far apart, as a crash image would hold them.
        let path = dir.path().join(offset_to_file_name(0));
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        let dirty = [(3 * 1024 * 1024 + 5, 10usize), (SIZE - 1, 1)];
        for (pos, len) in dirty {
            std::os::unix::fs::FileExt::write_all_at(&file, &vec![9u8; len], pos as u64).unwrap();
        }
        drop(file);
        let f = MappedFile::open_existing(&path, 0, SIZE, ops()).unwrap();
        let ranges = f.data_ranges(50, SIZE);
        assert!(ranges.windows(2).all(|w| w[0].1 <= w[1].0), "{ranges:?}");
        for (pos, len) in [(50, 50)].into_iter().chain(dirty) {
            let covered = ranges.iter().any(|(a, b)| *a <= pos && pos + len <= *b);
            assert!(covered, "{pos}+{len} outside {ranges:?}");
        }
        assert!(ranges.iter().all(|(a, b)| 50 <= *a && a < b && *b <= SIZE));
        let zeroed = f.truncate_to(50);
        assert!(zeroed > 0 && zeroed <= 3 * 64 * 1024, "{zeroed}");
        assert_eq!(f.wrote_position(), 50);
        drop(f);
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes[..50].iter().all(|b| *b == 7));
        assert!(bytes[50..].iter().all(|b| *b == 0));
        let f = MappedFile::open_existing(&path, 0, SIZE, ops()).unwrap();
        assert_eq!(f.truncate_to(50), 0, "a clean tail rewrites nothing");
    }

    #[test]
    fn second_lock_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let _first = StoreLock::acquire(&path).unwrap();
        let err = StoreLock::acquire(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn wrong_size_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(offset_to_file_name(0)), [0u8; 10]).unwrap();
        std::fs::write(dir.path().join(offset_to_file_name(32)), [0u8; 32]).unwrap();
        let err = MappedFileQueue::load(dir.path(), 32, ops()).unwrap_err();
        assert!(matches!(err, MappedFileError::WrongSize { .. }));
    }

    #[test]
    fn disk_ratio_is_a_fraction() {
        let dir = tempfile::tempdir().unwrap();
        let r = disk_used_ratio(dir.path()).unwrap();
        assert!((0.0..=1.0).contains(&r));
    }
}
