//! Atomic MessagePack snapshots of broker metadata (topic configs, subscription groups,
//! consumer offsets, delay progress), stored under `<store root>/config/`.
//!
//! Write protocol: serialize with `rmp-serde` (named fields), write `<name>.tmp`, `fsync` it,
//! move the current file to `<name>.bak`, rename the temp file over `<name>`, `fsync` the
//! directory. A reader that finds the main file missing or undecodable falls back to `.bak`.
//! At every instant at least one of the two holds a complete snapshot.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

/// Path of the backup copy of a snapshot (`<path>.bak`).
pub fn backup_path(path: &Path) -> PathBuf {
    with_suffix(path, ".bak")
}

/// Atomically replaces the snapshot at `path` with `value`, keeping the previous one as
/// `<path>.bak`.
///
/// # Errors
/// Serialization errors (as `InvalidData`) and I/O errors of writing, syncing or renaming.
pub fn save_snapshot<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let bytes = rmp_serde::to_vec_named(value)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = with_suffix(path, ".tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    if path.exists() {
        fs::rename(path, backup_path(path))?;
    }
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Loads the snapshot at `path`, falling back to `<path>.bak` when the main file is missing or
/// cannot be decoded. `Ok(None)` when neither exists.
///
/// # Errors
/// I/O errors other than "not found", or `InvalidData` when no copy decodes.
pub fn load_snapshot<T: DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    let mut last_err = None;
    for candidate in [path.to_path_buf(), backup_path(path)] {
        match fs::read(&candidate) {
            Ok(bytes) => match rmp_serde::from_slice(&bytes) {
                Ok(v) => {
                    if candidate != path {
                        tracing::warn!(file = %path.display(), "snapshot unreadable, loaded the backup");
                    }
                    return Ok(Some(v));
                }
                Err(e) => last_err = Some(io::Error::new(io::ErrorKind::InvalidData, e)),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => last_err = Some(e),
        }
    }
    match last_err {
        Some(e) => Err(e),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn snapshot_round_trips_and_falls_back_to_backup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config").join("consumerOffset");
        assert_eq!(load_snapshot::<BTreeMap<String, i64>>(&path).unwrap(), None);
        let mut v = BTreeMap::new();
        v.insert("g@T@0".to_string(), 5i64);
        save_snapshot(&path, &v).unwrap();
        v.insert("g@T@1".to_string(), 7i64);
        save_snapshot(&path, &v).unwrap();
        assert_eq!(
            load_snapshot::<BTreeMap<String, i64>>(&path)
                .unwrap()
                .unwrap()
                .len(),
            2
        );
        // A torn main file: the previous snapshot survives in .bak.
        fs::write(&path, [0xc1, 0xff, 0x00]).unwrap();
        assert_eq!(
            load_snapshot::<BTreeMap<String, i64>>(&path)
                .unwrap()
                .unwrap()
                .len(),
            1
        );
        fs::write(backup_path(&path), b"junk").unwrap();
        assert!(load_snapshot::<BTreeMap<String, i64>>(&path).is_err());
    }
}
