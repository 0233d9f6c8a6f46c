//! Why a store could not do what was asked: the errors every log and both
//! stores share. [`DiskFull`] is the one the broker lives through (the log
//! takes back what it could not write, and refuses appends for a while);
//! the others stop a start, or the broker.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Why a store could not do what was asked.
#[derive(Debug)]
pub enum StoreError {
    /// Reading or writing `path` failed.
    Io { path: PathBuf, error: io::Error },
    /// The disk had no room for a write, or the process no file descriptor
    /// for a new file. The broker goes on: the log took back what it could
    /// not write, and refuses appends for a while.
    Full(Arc<DiskFull>),
    /// Forcing `path` to disk failed. What was written may be lost without
    /// a trace (after a failed fsync the operating system may drop the
    /// pages it could not write, and a later fsync succeeds), so the broker
    /// stops rather than confirm anything more.
    Sync { path: PathBuf, error: io::Error },
    /// A record of `topic` that is not at the end of its log is damaged,
    /// and `--on-damage stop` asked the broker not to start then.
    Corrupt {
        topic: String,
        path: PathBuf,
        position: u64,
        reason: &'static str,
    },
    /// The data directory holds something brook did not write.
    Unrecognised { path: PathBuf, reason: &'static str },
    /// Another broker holds the data directory's lock, `path`: two brokers
    /// appending to one log would interleave their records.
    Locked { path: PathBuf },
}

impl StoreError {
    /// The error of a failed read or write of `path`: [`StoreError::Full`]
    /// if the disk had no room, or the process no file descriptor left,
    /// [`StoreError::Io`] otherwise.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> StoreError {
        let path = path.into();
        move |error| {
            let lack = if is_out_of_space(&error) {
                Lack::Space
            } else if is_out_of_files(&error) {
                Lack::Files {
                    limit: crate::descriptors::open_files_limit(),
                }
            } else {
                return StoreError::Io { path, error };
            };
            StoreError::Full(Arc::new(DiskFull { path, error, lack }))
        }
    }

    /// The error of a failed fsync of `path`, whatever its cause.
    pub fn sync(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> StoreError {
        let path = path.into();
        move |error| StoreError::Sync { path, error }
    }
}

/// Whether `error` says the disk has no room: ENOSPC (no space left),
/// EDQUOT (over the user's quota) or EFBIG (over the largest file size).
fn is_out_of_space(error: &io::Error) -> bool {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    const EFBIG: i32 = 27;
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::FileTooLarge
    ) || matches!(error.raw_os_error(), Some(ENOSPC | EDQUOT | EFBIG))
}

/// Whether `error` says the process may open no more files: EMFILE (its
/// open-files limit) or ENFILE (the system's).
fn is_out_of_files(error: &io::Error) -> bool {
    const EMFILE: i32 = 24;
    const ENFILE: i32 = 23;
    matches!(error.raw_os_error(), Some(EMFILE | ENFILE))
}

/// A write the disk had no room for, or a file that could not be opened
/// for want of a file descriptor: which file, the error, and what was
/// lacking. Publishes refused for it are answered with its text
/// (`-ERR disk full: ...`, `-ERR out of file descriptors: ...`), so it says
/// what to do.
#[derive(Debug)]
pub struct DiskFull {
    pub path: PathBuf,
    pub error: io::Error,
    pub lack: Lack,
}

/// What a [`DiskFull`] lacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lack {
    /// Room on the disk.
    Space,
    /// A file descriptor: the process holds as many as its open-files
    /// limit (`limit`, if the system says) allows, or as many as it leaves
    /// for connections and topics (`descriptors.rs`).
    Files { limit: Option<usize> },
}

impl fmt::Display for DiskFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        let error = &self.error;
        match self.lack {
            Lack::Space => write!(
                f,
                "disk full: cannot write {path} ({error}); free space on that disk \
                 (brook tries it again a second after a failed write)"
            ),
            Lack::Files { limit } => {
                write!(f, "out of file descriptors: cannot open {path} ({error}); ")?;
                if let Some(limit) = limit {
                    write!(f, "brook may open {limit} files, ")?;
                }
                write!(
                    f,
                    "one per connection and one per topic on disk: raise the open-files \
                     limit (ulimit -n), or lower --max-connections or --max-topics"
                )
            }
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            StoreError::Full(full) => write!(f, "{full}"),
            StoreError::Sync { path, error } => write!(
                f,
                "cannot force {} to disk: {error}. What was written may be lost \
                 (the operating system may drop what it could not write), so \
                 brook stops rather than confirm more; check the disk, then \
                 restart: recovery keeps every whole record that reached it",
                path.display()
            ),
            StoreError::Corrupt {
                topic,
                path,
                position,
                reason,
            } => write!(
                f,
                "topic {topic:?}: {} is damaged at byte {position} ({reason}), \
                 and whole records follow, so it is not a torn end; start with \
                 --on-damage skip to serve every record but the damaged ones",
                path.display()
            ),
            StoreError::Unrecognised { path, reason } => {
                write!(f, "{}: {reason}", path.display())
            }
            StoreError::Locked { path } => write!(
                f,
                "another broker is using this data directory (it holds {})",
                path.display()
            ),
        }
    }
}

impl std::error::Error for StoreError {}
