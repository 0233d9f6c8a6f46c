//! The file operations the rest of `disk/` shares: listing a topic
//! directory's segments, creating and opening a segment file, replacing a
//! small file whole, and forcing files and directories to disk.
//!
//! Each failure comes back as the [`StoreError`] that says what it was
//! (`error.rs`): a full disk or a lack of file descriptors, which the
//! broker lives through, a failed fsync, which stops it, or any other
//! failed read or write, naming the path.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::ids::Offset;
use crate::store::{Fsync, StoreError};

/// The entries of `dir`, sorted by name.
pub fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let mut paths = fs::read_dir(dir)
        .and_then(|entries| {
            entries
                .map(|entry| entry.map(|e| e.path()))
                .collect::<io::Result<Vec<_>>>()
        })
        .map_err(StoreError::io(dir))?;
    paths.sort();
    Ok(paths)
}

/// The segment files of a topic directory with their first offsets, in
/// order.
pub fn segment_paths(dir: &Path) -> Result<Vec<(Offset, PathBuf)>, StoreError> {
    let mut segments = Vec::new();
    for path in sorted_entries(dir)? {
        let Some(stem) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(base) = stem.strip_suffix(".log") {
            let base = base.parse().map_err(|_| StoreError::Unrecognised {
                path: path.clone(),
                reason: "a segment file not named by its first offset",
            })?;
            segments.push((base, path));
        }
    }
    Ok(segments)
}

/// Forces the file at `path` to disk, if it is still there (retention may
/// have deleted it).
pub fn force_file(path: &Path) -> Result<(), StoreError> {
    match File::open(path) {
        Ok(file) => file.sync_all().map_err(StoreError::sync(path)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(StoreError::Io {
            path: path.to_owned(),
            error,
        }),
    }
}

/// Forces the entries of `dir` (a file just created, or removed) to disk.
pub fn sync_directory(dir: &Path) -> Result<(), StoreError> {
    let dir_file = File::open(dir).map_err(StoreError::io(dir))?;
    dir_file.sync_all().map_err(StoreError::sync(dir))
}

/// Replaces the file `name` in `dir` with `bytes`: written to a scratch
/// file (`name.new`) and renamed into place, so a crash leaves the old
/// contents or the new, whole. Forced to disk unless `--fsync never`.
pub fn replace_file(dir: &Path, name: &str, bytes: &[u8], fsync: Fsync) -> Result<(), StoreError> {
    let scratch = dir.join(format!("{name}.new"));
    let written = File::create(&scratch)
        .and_then(|mut file| file.write_all(bytes).map(|()| file))
        .map_err(StoreError::io(&scratch));
    let file = written.inspect_err(|_| {
        // A full disk, say: the scratch file would only take up room.
        let _ = fs::remove_file(&scratch);
    })?;
    if fsync != Fsync::Never {
        file.sync_all().map_err(StoreError::sync(&scratch))?;
    }
    let path = dir.join(name);
    fs::rename(&scratch, &path).map_err(StoreError::io(&path))?;
    if fsync != Fsync::Never {
        sync_directory(dir)?;
    }
    Ok(())
}

/// Opens the segment file at `path` to append records to it.
pub fn open_for_append(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(StoreError::io(path))
}

/// Creates an empty segment file, and makes its directory entry durable
/// unless `--fsync never`.
pub fn create_segment_file(path: &Path, dir: &Path, fsync: Fsync) -> Result<(), StoreError> {
    File::create(path).map_err(StoreError::io(path))?;
    if fsync != Fsync::Never {
        sync_directory(dir)?;
    }
    Ok(())
}
