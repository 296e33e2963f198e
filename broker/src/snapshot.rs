//! Metadata snapshots of the broker's tables (topics, subscription groups, consumer offsets)
//! under `<store>/config/`, written with the store's atomic MessagePack snapshot functions
//! (temp file, fsync, rename, previous file kept as `.bak`).

use std::io;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Writes `value` to `path` atomically.
///
/// # Errors
/// I/O errors from the write, fsync or rename.
pub(crate) fn save<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    crate::store::metadata::save_snapshot(path, value)
}

/// Reads the snapshot at `path` (falling back to its `.bak`), `None` when neither exists.
///
/// # Errors
/// I/O errors, or both files corrupt.
pub(crate) fn load<T: DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    crate::store::metadata::load_snapshot(path)
}
