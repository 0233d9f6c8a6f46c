//! A temporary directory that removes itself: the bench's data dirs and the
//! tests' (`tests/common` includes this file too).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A fresh, empty directory under the system's temp dir, removed with
/// everything in it when dropped. Its name, `brook-<tag>-<pid>-<n>`, holds
/// the process id and a counter, so no two share one; a process killed
/// midway leaves its directories behind.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates the next directory for `tag`, or says why it cannot.
    pub fn create(tag: &str) -> Result<TempDir, String> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let name = format!("brook-{tag}-{}-{n}", std::process::id());
            let path = std::env::temp_dir().join(name);
            match fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir { path }),
                // Left by an earlier process that had the same id.
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(error) => return Err(format!("cannot create {}: {error}", path.display())),
            }
        }
    }

    /// [`TempDir::create`] for a test, which fails if it cannot.
    pub fn new(tag: &str) -> TempDir {
        TempDir::create(tag).unwrap_or_else(|error| panic!("{error}"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(error) = fs::remove_dir_all(&self.path) {
            eprintln!("cannot remove {}: {error}", self.path.display());
        }
    }
}
