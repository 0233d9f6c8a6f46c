//! The disk store: every topic is a directory of append-only segment files,
//! so a broker that is stopped, or killed, starts again with every message
//! it confirmed, at the same offsets.
//!
//! ```text
//! data/lock                                  held by the one broker using the directory
//! data/incarnation                           the store's random id, made with the directory
//! data/topics/orders-1c8f3e0e5a1b2c3d/      one directory per topic
//!     name                                   the topic's real name
//!     groups                                 where each consumer group is (PULL's too)
//!     horizon                                how far it confirmed (batch, on-damage stop)
//!     00000000000000000000.log               a segment: records 0 .. 52,427
//!     00000000000000000000.index             its index, saved when it was closed
//!     00000000000000052428.log               the next one, named by its first offset
//! ```
//!
//! This file is the store ([`DiskStore`]): the data directory, its lock,
//! and the topic directories and their names. Each topic's log is a
//! [`DiskLog`], and the folder's files, from the bottom up
//! (each uses only the ones before it), are:
//!
//! - `files.rs`: the file operations the others share (list, create,
//!   replace, force to disk).
//! - `horizon.rs`: how far a log confirmed, for a start that stops at
//!   damage.
//! - `groups.rs`: the groups file, where each consumer group is.
//! - `unreadable.rs`: the offsets whose records are damaged.
//! - `cache.rs`: what a log holds in memory, against `--cache-bytes`.
//! - `recovery.rs`: opening a topic's segments at start-up: the scan,
//!   damage, torn ends.
//! - `log.rs`: the log: appends, writes, reads, a full disk, retention.
//!
//! A record's bytes are in `../record.rs`, and a segment file's index and
//! reads in `../segment.rs`.
//!
//! Topic names are arbitrary UTF-8 (slashes, `..`, NUL, 65,535 bytes), so a
//! name is never used as a path: a topic's directory is a short readable
//! part of the name plus a hash of all of it, and the real name is kept in
//! the `name` file inside, which is what a restart reads. Two names that
//! share a directory name (a hash collision) get `-1`, `-2`, ... suffixes.
//!
//! # File descriptors
//!
//! A log holds one open file, its active segment. Closed segments hold
//! none: the fetcher opens the few it reads (`fetcher.rs`). So the broker
//! can count its descriptors (`descriptors.rs`), and
//! [`DiskStore`] refuses a new topic when none is left for it. An open
//! that fails all the same for want of a descriptor (EMFILE, ENFILE),
//! such as a new segment's, is treated as a full disk: the log refuses
//! appends for a second, with an error that says to raise the open-files
//! limit, and tries again.

mod cache;
mod files;
mod groups;
mod horizon;
// In this file `log` names `log.rs`; the logging crate would be `::log`.
mod log;
mod recovery;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
mod unreadable;

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use self::files::{replace_file, sorted_entries, sync_directory};
use self::log::DiskLog;
pub(crate) use self::log::FULL_RETRY_AFTER;
use self::recovery::remove_unnamed;
use crate::budget::MemoryBudget;
use crate::descriptors::FileBudget;
use crate::ids::random_hex;
use crate::stats::FsyncTimes;
use crate::store::fetcher::Fetcher;
use crate::store::{
    DiskFull, Fsync, Lack, LogSettings, NamedLog, Store, StoreError, TopicLog, INCARNATION_BYTES,
};

/// The file in a topic's directory that holds its name.
const NAME_FILE: &str = "name";

/// Where the name is written before it is renamed to [`NAME_FILE`].
const NAME_SCRATCH_FILE: &str = "name.new";

/// The file in the data directory that holds the store's incarnation.
const INCARNATION_FILE: &str = "incarnation";

/// Whether `id` is what [`random_hex`] makes: the file was not damaged.
fn is_incarnation(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|c| c.is_ascii_hexdigit())
}

/// How long a broker starting on a data directory waits for its lock.
const LOCK_PATIENCE: Duration = Duration::from_secs(2);

/// How many topics may share one directory name (told apart by a suffix).
/// With a 64-bit hash in the name, two is already a coincidence.
const MAX_SHARED_DIRECTORY_NAMES: u32 = 1000;

/// Keeps every topic in segment files under `<data dir>/topics`.
#[derive(Debug)]
pub struct DiskStore {
    data_dir: PathBuf,
    topics_dir: PathBuf,
    settings: LogSettings,
    /// Reads old records for every log, off the dispatcher thread.
    fetcher: Fetcher,
    /// `--cache-bytes`, shared by every log.
    budget: Arc<MemoryBudget>,
    /// The locked `<data dir>/lock`, held for as long as the store lives:
    /// two brokers appending to one log would interleave their records.
    lock: Option<File>,
    /// The store's random id ([`Store::incarnation`]), read from
    /// `<data dir>/incarnation`, or made and written there by the first
    /// start on the directory.
    incarnation: String,
    /// Where each log's file descriptor (its active segment) is counted,
    /// and a new topic refused when none is left (`descriptors.rs`).
    files: Arc<FileBudget>,
    /// Where the logs count the fsyncs they make themselves (`--fsync
    /// always`), beside the syncer's.
    fsync_times: Arc<FsyncTimes>,
}

impl DiskStore {
    /// A store on `data_dir` whose logs cache at most `cache_bytes` of
    /// payloads between them.
    pub fn new(
        data_dir: &Path,
        settings: LogSettings,
        cache_bytes: usize,
        fetcher: Fetcher,
    ) -> DiskStore {
        DiskStore {
            data_dir: data_dir.to_owned(),
            topics_dir: data_dir.join("topics"),
            settings,
            fetcher,
            budget: Arc::new(MemoryBudget::new("--cache-bytes", cache_bytes)),
            lock: None,
            incarnation: String::new(),
            files: Arc::default(),
            fsync_times: Arc::default(),
        }
    }

    /// Opens the log of `topic` in `dir`.
    fn open_log(&self, topic: &str, dir: PathBuf) -> Result<DiskLog, StoreError> {
        let (fetcher, budget) = (self.fetcher.clone(), self.budget.clone());
        let fsync_times = self.fsync_times.clone();
        DiskLog::open(topic, dir, self.settings, fetcher, budget, fsync_times)
    }

    /// Counts the file each log keeps open in `files`, and refuses a new
    /// topic when the budget has no room for it.
    pub fn counting_files(self, files: Arc<FileBudget>) -> DiskStore {
        DiskStore { files, ..self }
    }

    /// Counts the fsyncs the logs make themselves (`--fsync always`) in
    /// `times`, the syncer's.
    pub fn counting_fsyncs(self, times: Arc<FsyncTimes>) -> DiskStore {
        DiskStore {
            fsync_times: times,
            ..self
        }
    }

    /// Refuses a new topic if its file would take a descriptor the
    /// budget has not got: [`StoreError::Full`], like an open that failed
    /// with EMFILE, before anything is created.
    fn check_files(&self) -> Result<(), StoreError> {
        if self.files.has_room() {
            return Ok(());
        }
        Err(StoreError::Full(Arc::new(DiskFull {
            path: self.topics_dir.clone(),
            error: io::Error::other("every file descriptor left for topics is taken"),
            lack: Lack::Files {
                limit: self.files.limit(),
            },
        })))
    }

    /// The id in `<data dir>/incarnation`, or a new one written there. A
    /// directory that brook versions without it left gets one too: its
    /// offsets go on from there. On a full disk the new one is this
    /// start's only.
    fn read_or_make_incarnation(&self) -> Result<String, StoreError> {
        let path = self.data_dir.join(INCARNATION_FILE);
        match fs::read_to_string(&path) {
            Ok(id) if is_incarnation(id.trim()) => Ok(id.trim().to_owned()),
            Ok(_) => Err(StoreError::Unrecognised {
                path,
                reason:
                    "not a hex id: delete the file only if the offsets of every topic start again",
            }),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                let id = random_hex(INCARNATION_BYTES);
                let written = replace_file(
                    &self.data_dir,
                    INCARNATION_FILE,
                    id.as_bytes(),
                    Fsync::Always,
                );
                match written {
                    Ok(()) => Ok(id),
                    // A full disk need not stop the broker: an id kept
                    // for this start only is a new incarnation at the
                    // next, which makes a copier send messages again
                    // (duplicates), never take new ones for old.
                    Err(StoreError::Full(full)) => {
                        ::log::warn!(
                            "cannot keep the store's incarnation in {}: {full}; this start's \
                             is {id}, and the next start makes another",
                            path.display()
                        );
                        Ok(id)
                    }
                    Err(error) => Err(error),
                }
            }
            Err(error) => Err(StoreError::Io { path, error }),
        }
    }

    /// Takes the data directory's lock, or fails if another broker keeps
    /// it for [`LOCK_PATIENCE`]. The wait is for a lock that is on its way
    /// out: one held by a broker that is stopping, or by a process forked
    /// by this one in the instant before it runs its program, which holds
    /// a copy of every open file until then.
    fn lock_data_dir(&mut self) -> Result<(), StoreError> {
        let path = self.data_dir.join("lock");
        let file = File::create(&path).map_err(StoreError::io(&path))?;
        let deadline = Instant::now() + LOCK_PATIENCE;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(fs::TryLockError::WouldBlock) => return Err(StoreError::Locked { path }),
                Err(fs::TryLockError::Error(error)) => return Err(StoreError::Io { path, error }),
            }
        }
        self.lock = Some(file);
        Ok(())
    }

    /// The directory for the topic `name`: the one that already holds it,
    /// or a new one.
    fn directory_for(&self, name: &str) -> Result<PathBuf, StoreError> {
        let base = directory_name(name);
        for attempt in 0..MAX_SHARED_DIRECTORY_NAMES {
            let dir = match attempt {
                0 => self.topics_dir.join(&base),
                n => self.topics_dir.join(format!("{base}-{n}")),
            };
            match fs::read(dir.join(NAME_FILE)) {
                Ok(stored) if stored == name.as_bytes() => return Ok(dir),
                Ok(_) => continue, // another name with the same hash
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    self.create_topic_directory(&dir, name)?;
                    return Ok(dir);
                }
                Err(error) => return Err(StoreError::Io { path: dir, error }),
            }
        }
        Err(StoreError::Unrecognised {
            path: self.topics_dir.join(base),
            reason: "too many topic names share this directory name",
        })
    }

    /// Creates `dir` with its name file, durably: a restart must find the
    /// name before it finds any segment. The name is written to a scratch
    /// file and renamed into place, so a crash or a full disk leaves either
    /// the whole name or none (a directory without a name and without
    /// segments, which recovery removes), never part of it.
    fn create_topic_directory(&self, dir: &Path, name: &str) -> Result<(), StoreError> {
        fs::create_dir_all(dir).map_err(StoreError::io(dir))?;
        let scratch = dir.join(NAME_SCRATCH_FILE);
        let mut file = File::create(&scratch).map_err(StoreError::io(&scratch))?;
        file.write_all(name.as_bytes())
            .map_err(StoreError::io(&scratch))?;
        file.sync_all().map_err(StoreError::sync(&scratch))?;
        let name_path = dir.join(NAME_FILE);
        fs::rename(&scratch, &name_path).map_err(StoreError::io(&name_path))?;
        sync_directory(dir)?;
        sync_directory(&self.topics_dir)
    }
}

impl Store for DiskStore {
    fn recover(&mut self) -> Result<Vec<NamedLog>, StoreError> {
        let dir = self.topics_dir.clone();
        fs::create_dir_all(&dir).map_err(StoreError::io(&dir))?;
        self.lock_data_dir()?;
        self.incarnation = self.read_or_make_incarnation()?;
        let mut topics = Vec::new();
        for topic_dir in sorted_entries(&dir)? {
            if !topic_dir.is_dir() {
                return Err(StoreError::Unrecognised {
                    path: topic_dir,
                    reason: "a file where only topic directories belong",
                });
            }
            let name_path = topic_dir.join(NAME_FILE);
            let name = match fs::read(&name_path) {
                Ok(bytes) => String::from_utf8(bytes).map_err(|_| StoreError::Unrecognised {
                    path: name_path.clone(),
                    reason: "a topic name that is not UTF-8",
                })?,
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    remove_unnamed(&topic_dir)?;
                    continue;
                }
                Err(error) => {
                    return Err(StoreError::Io {
                        path: name_path,
                        error,
                    })
                }
            };
            let log = self.open_log(&name, topic_dir)?;
            self.files.log_opened();
            topics.push((Arc::from(name), Box::new(log) as Box<dyn TopicLog>));
        }
        Ok(topics)
    }

    fn open(&mut self, name: &str) -> Result<Box<dyn TopicLog>, StoreError> {
        self.check_files()?;
        let dir = self.directory_for(name)?;
        let log = self.open_log(name, dir)?;
        self.files.log_opened();
        Ok(Box::new(log))
    }

    fn ages_out(&self) -> bool {
        self.settings.retention_age.is_some()
    }

    fn incarnation(&self) -> &str {
        &self.incarnation
    }

    fn budget(&self) -> &MemoryBudget {
        &self.budget
    }
}

/// A directory name for the topic `name`: up to 48 bytes of its letters,
/// digits, `-` and `_` (anything else becomes `_`), then `-` and a 64-bit
/// FNV-1a hash of the whole name in hex. It is never empty, `.` or `..`,
/// holds no `/`, and stays far below any file-name length limit.
fn directory_name(name: &str) -> String {
    let readable: String = name
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' => c,
            _ => '_',
        })
        .take(48)
        .collect();
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{readable}-{hash:016x}")
}
