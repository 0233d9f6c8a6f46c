//! The disk store: every topic is a directory of append-only segment files,
//! so a broker that is stopped, or killed, starts again with every message
//! it confirmed, at the same offsets.
//!
//! ```text
//! data/topics/orders-1c8f3e0e5a1b2c3d/      one directory per topic
//!     name                                   the topic's real name
//!     groups                                 where each consumer group is (PULL's too)
//!     horizon                                how far it confirmed (batch, on-damage stop)
//!     00000000000000000000.log               a segment: records 0 .. 52,427
//!     00000000000000000000.index             its index, saved when it was closed
//!     00000000000000052428.log               the next one, named by its first offset
//! ```
//!
//! Each segment file holds records (offset, timestamp, length, CRC-32C,
//! payload): their bytes, and the scan that checks them, are in
//! `segment.rs`.
//!
//! Topic names are arbitrary UTF-8 (slashes, `..`, NUL, 65,535 bytes), so a
//! name is never used as a path: a topic's directory is a short readable
//! part of the name plus a hash of all of it, and the real name is kept in
//! the `name` file inside, which is what a restart reads. Two names that
//! share a directory name (a hash collision) get `-1`, `-2`, ... suffixes.
//!
//! # Writing and reading
//!
//! The dispatcher thread owns every log, as it does in memory. An append
//! encodes the record into a buffer and keeps the payload in a cache of the
//! newest messages; [`TopicLog::write`], at the end of the dispatcher's
//! round (or sooner: once 1 MiB waits, when a segment fills, or when a
//! `PULL` or `SUB` must see what was just published), writes the buffer
//! to the segment file and, with `--fsync batch`,
//! returns the job that forces it to disk, which the syncer thread runs
//! (`syncer.rs`). With `--fsync always` each append forces its record at
//! once. Subscribers that keep up read from the cache of the newest
//! payloads. Every topic's cache, and the last run each read back from its
//! segments, and its write buffer, count against one budget,
//! `--cache-bytes` (`budget.rs`): when
//! the topics together hold more, the least recently used topics' oldest
//! payloads leave the cache (never one still waiting in the buffer to be
//! written). Messages no longer cached are read from their segment by the
//! fetcher thread (`fetcher.rs`), a run of 256 KiB at a time, found through
//! a sparse in-memory index (one entry per 4 KiB of records): the
//! dispatcher never waits for the disk to read.
//!
//! A message becomes readable (by subscribers, groups and pulls: see
//! [`TopicLog::end`]) once its record is written to the file, not when it
//! is appended: so a write that fails can still take it back, before
//! anything about it has left the broker.
//!
//! # A full disk
//!
//! A write the disk has no room for (ENOSPC, EDQUOT, EFBIG) takes back the
//! records it could not write: the file is cut back to the last record
//! written whole, and the records leave the buffer, the segment's index
//! and the cache; their offsets go to the next messages. The dispatcher
//! refuses their publishers (`dispatcher.rs`). The log then refuses
//! appends for a second (`FULL_RETRY_AFTER`) without touching the disk,
//! and lets the first one after that try it again. A new segment file, a
//! groups file or an index that does not fit is logged and tried again
//! later, and the broker goes on. A failed fsync is different: the
//! operating system may have dropped the pages it could not write, and a
//! later fsync would not say so. The broker stops ([`StoreError::Sync`]),
//! as PostgreSQL does; recovery then keeps every whole record the disk
//! holds.
//!
//! # File descriptors
//!
//! A log holds one open file, its active segment. Closed segments hold
//! none: the fetcher opens the few it reads (`fetcher.rs`). So the broker
//! can count its descriptors (`files.rs`), and [`DiskStore`] refuses a new
//! topic when none is left for it. An open that fails all the same for
//! want of a descriptor (EMFILE, ENFILE), such as a new segment's, is
//! treated as a full disk: the log refuses appends for a second, with an
//! error that says to raise the open-files limit, and tries again.
//!
//! # Recovery
//!
//! At start-up the last segment of every topic is read and every record's
//! checksum, length and offset checked. A damaged end (a record cut short
//! by a crash, or bytes that never reached the disk) is cut back to the
//! last whole record, with a warning that says how much was dropped.
//! Damage followed by whole records is not a torn end. With `--on-damage
//! skip` (the default) the scan steps over it to the next sound record,
//! and the offsets it cost are remembered as unreadable (logged once each,
//! with the file and the byte, and counted in `STATS`); with `--on-damage
//! stop` the broker refuses to start.
//!
//! A segment that was closed (the log moved on to a new one) had its
//! sparse index saved next to it, `<base>.index`. A start takes such a
//! segment's shape from its index and reads only the records of its last
//! run, which must end exactly where the file ends, so a start reads a few
//! kilobytes per closed segment rather than all of it. A closed segment
//! with no matching index is read in full, like the last one, and treated
//! in the same way, except that damage at its end costs the offsets up to
//! the next segment. Damage that appears later inside a closed segment
//! (the disk's own decay) is found when the record is read: the run stops
//! at it and names the offsets it cost (`segment.rs`), which are then
//! unreadable too.
//!
//! With `--fsync batch`, the writes of rounds whose fsync had not run yet
//! may reach the disk out of order when the power fails: one round's
//! records lost, the next round's whole. None of that was confirmed, but
//! it looks like damage with whole records after it. `--on-damage skip`
//! (the default) treats it so: the lost offsets are skipped and the whole
//! records after them kept, which loses nothing confirmed. For
//! `--on-damage stop`, which would refuse to start, each sync job also
//! forces the point it forced the segment to into a `horizon` file (a
//! `Horizon`), before anything up to there is confirmed; damage in the
//! last segment past the horizon is then a torn end, cut off with
//! whatever follows it.
//!
//! A power loss under `--fsync never` can leave more than a torn end of
//! the last segment, since nothing is forced: a torn end of a closed
//! segment (skipped, whatever `--on-damage` says), a groups file that is
//! empty or cut short (logged; its groups start again where their members
//! ask, giving out again what they had finished), and group positions
//! past the recovered end of the log (brought back to it, so that the
//! groups do not skip the offsets the next messages get).
//!
//! An unreadable offset answers [`Lookup::Unreadable`], and every reader
//! (subscribers, groups, pulls) skips it: one damaged record never stalls
//! a reader, nor holds back retention through a cursor stuck before it.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use byteorder::{BigEndian, ByteOrder};
use parking_lot::Mutex;

use super::crc32c::Crc32c;
use super::fetcher::{FetchRequest, Fetcher};
use super::segment::{scan_segment, segment_file_name, Damage, Header, Segment, HEADER_BYTES};
use super::{
    DiskFull, Fetched, Fsync, GroupPosition, Lack, LogSettings, Lookup, NamedLog, Store,
    StoreError, SyncJob, TopicLog,
};
use crate::budget::{cost, MemoryBudget};
use crate::files::FileBudget;
use crate::ids::{Offset, Payload};

/// Encoded records are written to the file once this many are waiting,
/// even before the end of the round.
const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// How long a log that found the disk full refuses appends before it tries
/// the disk again: often enough to notice soon that room was made, seldom
/// enough that a full disk costs no more than one failed write a second.
const FULL_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The file in a topic's directory that holds its name.
const NAME_FILE: &str = "name";

/// Where the name is written before it is renamed to [`NAME_FILE`].
const NAME_SCRATCH_FILE: &str = "name.new";

/// The file in a topic's directory that holds the positions of its
/// consumer groups (see [`encode_groups`]).
const GROUPS_FILE: &str = "groups";

/// The file in a topic's directory that holds its [`Horizon`], with
/// `--fsync batch`.
const HORIZON_FILE: &str = "horizon";

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
    /// Where each log's file descriptor (its active segment) is counted,
    /// and a new topic refused when none is left (`files.rs`).
    files: Arc<FileBudget>,
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
            files: Arc::default(),
        }
    }

    /// Opens the log of `topic` in `dir`.
    fn open_log(&self, topic: &str, dir: PathBuf) -> Result<DiskLog, StoreError> {
        let (fetcher, budget) = (self.fetcher.clone(), self.budget.clone());
        DiskLog::recover(topic, dir, self.settings, fetcher, budget)
    }

    /// Counts the file each log keeps open in `files`, and refuses a new
    /// topic when the budget has no room for it.
    pub fn counting_files(self, files: Arc<FileBudget>) -> DiskStore {
        DiskStore { files, ..self }
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
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(StoreError::Unrecognised {
                        path,
                        reason: "another broker is using this data directory",
                    })
                }
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

    fn budget(&self) -> &MemoryBudget {
        &self.budget
    }
}

/// A directory without a name file can only be a topic whose creation a
/// crash interrupted, before any message: it is removed. One with segments
/// is not brook's doing, and is left for a person to look at.
fn remove_unnamed(dir: &Path) -> Result<(), StoreError> {
    if !segment_paths(dir)?.is_empty() {
        return Err(StoreError::Unrecognised {
            path: dir.to_owned(),
            reason: "segments without a name file",
        });
    }
    log::warn!("{}: removing a topic directory with no name", dir.display());
    fs::remove_dir_all(dir).map_err(StoreError::io(dir))
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

/// The entries of `dir`, sorted by name.
fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
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
fn segment_paths(dir: &Path) -> Result<Vec<(Offset, PathBuf)>, StoreError> {
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
fn force_file(path: &Path) -> Result<(), StoreError> {
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
fn sync_directory(dir: &Path) -> Result<(), StoreError> {
    let dir_file = File::open(dir).map_err(StoreError::io(dir))?;
    dir_file.sync_all().map_err(StoreError::sync(dir))
}

/// One topic's log on disk. See the module docs.
#[derive(Debug)]
pub struct DiskLog {
    topic: Arc<str>,
    dir: PathBuf,
    settings: LogSettings,
    /// Oldest first; the last one is the active segment, appended to.
    segments: Vec<Segment>,
    /// The active segment, opened for appending. Shared with the syncer
    /// thread's jobs, which force it to disk.
    writer: Arc<File>,
    /// Encoded records not yet written to `writer`. It keeps its capacity
    /// once written, so that a busy topic does not grow it again every
    /// round; `buffer_counted` is the capacity counted in `held`.
    buffer: Vec<u8>,
    buffer_counted: usize,
    /// Whether `writer` has been written to since it was last forced to
    /// disk.
    unsynced: bool,
    /// With `--fsync never`: the files written to and never forced to disk
    /// (segments, the groups file), which a clean stop forces.
    unforced: Vec<PathBuf>,
    /// The offset the next message gets.
    next: Offset,
    /// Records below this offset are in the file; the others are still in
    /// `buffer`.
    written: Offset,
    /// The newest payloads: offsets `cache_first..next`. It always holds
    /// every record still in `buffer`, which the file does not have yet.
    cache: VecDeque<Payload>,
    cache_first: Offset,
    /// `--cache-bytes`, and how much of it the cache, `read_ahead` and
    /// `buffer` hold.
    budget: Arc<MemoryBudget>,
    held: usize,
    /// See [`TopicLog::last_used`]. A `Cell`, since reads take `&self`.
    last_used: Cell<u64>,
    /// Where each consumer group of the topic is, and whether that changed
    /// since it was last saved.
    groups: BTreeMap<String, GroupPosition>,
    groups_moved: bool,
    /// The last run of older records the fetcher read from a segment, for
    /// the reads that follow it.
    read_ahead: RefCell<ReadAhead>,
    /// Reads older records (`fetcher.rs`); `fetching` is set while it reads
    /// a run for this log. `read` takes `&self` (the dispatcher lends logs
    /// out shared), and only the dispatcher thread touches a log, so a
    /// `Cell` is enough.
    fetcher: Fetcher,
    fetching: Cell<bool>,
    /// The offsets whose records are damaged, as ranges `start => end`:
    /// found at start-up, or by the fetcher. Reads of them answer
    /// [`Lookup::Unreadable`], rather than ask the disk again and again.
    unreadable: BTreeMap<Offset, Offset>,
    /// How many offsets `unreadable` has held, for `STATS`.
    unreadable_count: u64,
    /// Set while the disk is full: appends are refused until `retry_at`.
    refusing: Option<Refusing>,
    /// Set by a sync job that could not save the groups file for lack of
    /// room: the next write saves it again.
    groups_unsaved: Arc<AtomicBool>,
    /// With `--fsync batch`, the horizon the horizon file holds, which the
    /// sync jobs move on; `None` if there is no such file.
    horizon: Arc<Mutex<Option<Horizon>>>,
}

/// With `--fsync batch`: a point of the log, byte `position` of the
/// segment whose first offset is `base`, from which on nothing was
/// confirmed. Each sync job forces the point it forced the segment to
/// into the horizon file, before anything past the old one is confirmed. The writes of rounds not yet
/// confirmed may reach the disk out of order when the power fails, which
/// leaves damage with whole records after it; past the horizon, that is
/// a torn end, and recovery cuts it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Horizon {
    base: Offset,
    position: u64,
}

impl Horizon {
    /// `base`, `position` (`u64`s) and a CRC-32C of them, big-endian.
    fn encode(&self) -> Vec<u8> {
        let mut bytes = [self.base, self.position].map(u64::to_be_bytes).concat();
        let crc = Crc32c::new().update(&bytes).finish();
        bytes.extend_from_slice(&crc.to_be_bytes());
        bytes
    }

    /// The horizon saved in `dir`, if there is a whole one.
    fn read(dir: &Path) -> Option<Horizon> {
        let bytes = fs::read(dir.join(HORIZON_FILE)).ok()?;
        let (fields, crc) = bytes.split_at_checked(16)?;
        let sound =
            crc.len() == 4 && Crc32c::new().update(fields).finish() == BigEndian::read_u32(crc);
        sound.then(|| Horizon {
            base: BigEndian::read_u64(&fields[..8]),
            position: BigEndian::read_u64(&fields[8..]),
        })
    }

    /// Where, in the segment whose first offset is `base`, nothing could
    /// have been confirmed from, by this horizon.
    fn unconfirmed_from(&self, base: Offset) -> u64 {
        match self.base.cmp(&base) {
            std::cmp::Ordering::Less => 0,
            std::cmp::Ordering::Equal => self.position,
            std::cmp::Ordering::Greater => u64::MAX,
        }
    }

    /// Makes sure the saved horizon lies at or past byte `written` of
    /// segment `base`, which is about to be confirmed: if not, forces that
    /// point to disk as the new horizon. The file is overwritten in place
    /// (one fdatasync; a write torn by a crash fails its checksum, and is
    /// no horizon). A disk with no room for it gets no horizon file at
    /// all, which recovery reads as "anything may have been confirmed",
    /// as it did before horizons.
    fn cover(
        saved: &Mutex<Option<Horizon>>,
        dir: &Path,
        base: Offset,
        written: u64,
    ) -> Result<(), StoreError> {
        let mut saved = saved.lock();
        let needed = Horizon {
            base,
            position: written,
        };
        if saved.is_some_and(|horizon| horizon >= needed) {
            return Ok(());
        }
        let path = dir.join(HORIZON_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .and_then(|file| file.write_all_at(&needed.encode(), 0).map(|()| file))
            .map_err(StoreError::io(&path));
        match file {
            Err(StoreError::Full(_)) => {
                *saved = None;
                Horizon::forget(dir)
            }
            file => {
                file?.sync_data().map_err(StoreError::sync(&path))?;
                *saved = Some(needed);
                Ok(())
            }
        }
    }

    /// Removes the horizon file from `dir`, if there is one, for good: a
    /// log that is not forced in batches does not keep it up to date.
    fn forget(dir: &Path) -> Result<(), StoreError> {
        let path = dir.join(HORIZON_FILE);
        match fs::remove_file(&path) {
            Ok(()) => sync_directory(dir),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(StoreError::Io { path, error }),
        }
    }
}

/// A log that found the disk full: why, and when it may try again.
#[derive(Debug)]
struct Refusing {
    cause: Arc<DiskFull>,
    retry_at: Instant,
}

/// Records read from a segment ahead of need: offsets `first..`.
#[derive(Debug, Default)]
struct ReadAhead {
    first: Offset,
    payloads: Vec<Payload>,
}

impl ReadAhead {
    /// What its payloads cost the budget.
    fn cost(&self) -> usize {
        self.payloads.iter().map(cost).sum()
    }

    fn get(&self, offset: Offset) -> Option<Payload> {
        let index = usize::try_from(offset.checked_sub(self.first)?).ok()?;
        self.payloads.get(index).cloned()
    }
}

impl DiskLog {
    /// Opens the log in `dir`, checking it, and cutting a torn end off the
    /// last segment. An empty directory is a new, empty log.
    fn recover(
        topic: &str,
        dir: PathBuf,
        settings: LogSettings,
        fetcher: Fetcher,
        budget: Arc<MemoryBudget>,
    ) -> Result<DiskLog, StoreError> {
        let mut segments = Vec::new();
        let paths = segment_paths(&dir)?;
        let horizon = if settings.keeps_horizon() {
            Horizon::read(&dir)
        } else {
            Horizon::forget(&dir)?;
            None
        };
        let next_bases: Vec<Option<Offset>> = paths.iter().skip(1).map(|p| Some(p.0)).collect();
        let next_bases = next_bases.into_iter().chain([None]);
        for ((base, path), next_base) in paths.into_iter().zip(next_bases) {
            let unconfirmed_from = horizon
                .filter(|_| next_base.is_none())
                .map(|horizon| horizon.unconfirmed_from(base));
            let segment =
                scan_segment(topic, path, (base, next_base), unconfirmed_from, &settings)?;
            if let Some(previous) = segments.last().map(|s: &Segment| s.end) {
                if segment.base != previous {
                    return Err(StoreError::Unrecognised {
                        path: segment.path,
                        reason: "a segment that does not start where the one before it ends",
                    });
                }
            }
            segments.push(segment);
        }
        if segments.is_empty() {
            let path = dir.join(segment_file_name(0));
            create_segment_file(&path, &dir, settings.fsync)?;
            segments.push(Segment::new(path, 0));
        }
        let active = segments.last().map_or(0, |s| s.end);
        let writer = Arc::new(open_for_append(&segments[segments.len() - 1].path)?);
        let mut groups = read_groups(topic, &dir)?;
        bring_groups_within(topic, &mut groups, active);
        let damaged: Vec<Damage> = segments
            .iter_mut()
            .flat_map(|s| std::mem::take(&mut s.damaged))
            .collect();
        let mut log = DiskLog {
            topic: Arc::from(topic),
            dir,
            settings,
            segments,
            writer,
            buffer: Vec::new(),
            buffer_counted: 0,
            unsynced: false,
            unforced: Vec::new(),
            next: active,
            written: active,
            cache: VecDeque::new(),
            cache_first: active,
            budget,
            held: 0,
            last_used: Cell::new(0),
            groups,
            groups_moved: false,
            read_ahead: RefCell::default(),
            fetcher,
            fetching: Cell::new(false),
            unreadable: BTreeMap::new(),
            unreadable_count: 0,
            refusing: None,
            groups_unsaved: Arc::default(),
            horizon: Arc::new(Mutex::new(horizon)),
        };
        for damage in damaged {
            log.note_unreadable(damage.offsets.clone(), &damage);
        }
        Ok(log)
    }

    /// Notes damaged records, whose offsets readers will skip, and logs
    /// them: once, however often a read runs into them again.
    fn note_unreadable(&mut self, offsets: Range<Offset>, why: impl fmt::Display) {
        if offsets.is_empty() || self.unreadable_at(offsets.start) {
            return;
        }
        log::error!("topic {:?}: {why}; readers skip it", self.topic);
        self.unreadable_count += offsets.end - offsets.start;
        self.unreadable.insert(offsets.start, offsets.end);
    }

    /// Whether the record of `offset` is known to be damaged.
    fn unreadable_at(&self, offset: Offset) -> bool {
        let before = self.unreadable.range(..=offset).next_back();
        before.is_some_and(|(_, &end)| offset < end)
    }

    fn active(&mut self) -> &mut Segment {
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }

    /// Writes the buffered records to the active segment file. If the
    /// disk has no room for them, they are taken back, and the log refuses
    /// appends for [`FULL_RETRY_AFTER`].
    fn write_buffer(&mut self) -> Result<(), StoreError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let path = &self.segments[self.segments.len() - 1].path;
        let written = (&*self.writer)
            .write_all(&self.buffer)
            .map_err(StoreError::io(path));
        if let Err(StoreError::Full(cause)) = &written {
            let cause = cause.clone();
            self.take_back_unwritten()?;
            self.refuse_for_a_while(cause);
        }
        written?;
        self.buffer.clear();
        self.written = self.next;
        self.unsynced = true;
        Ok(())
    }

    /// Forgets the records not written yet (`written..next`), which the
    /// disk had no room for: cuts the file back to the last record written
    /// whole (a write that failed may have left part of one), and drops
    /// them from the segment's index and the cache. Their offsets will be
    /// given to the next messages.
    fn take_back_unwritten(&mut self) -> Result<(), StoreError> {
        let written = self.written;
        let unwritten_bytes = self.buffer.len() as u64;
        let active = self.active();
        let kept_len = active.len - unwritten_bytes;
        let path = active.path.clone();
        active.truncate(written, kept_len);
        self.writer
            .set_len(kept_len)
            .map_err(StoreError::io(path))?;
        self.buffer.clear();
        while self.cache_first + self.cache.len() as Offset > written {
            let Some(payload) = self.cache.pop_back() else {
                break;
            };
            self.let_go(cost(&payload));
        }
        self.next = written;
        Ok(())
    }

    /// Enters (or stays in) the state of a log that found the disk full.
    fn refuse_for_a_while(&mut self, cause: Arc<DiskFull>) {
        let retry_at = Instant::now() + FULL_RETRY_AFTER;
        self.refusing = Some(Refusing { cause, retry_at });
    }

    /// Whether an append may go ahead: refused while the disk is full,
    /// until the next try is due. The next try starts the segment that a
    /// full disk kept the log from starting, if it owes one, and is refused
    /// if that fails again.
    fn check_room(&mut self) -> Result<(), StoreError> {
        let Some(refusing) = &self.refusing else {
            return Ok(());
        };
        if Instant::now() >= refusing.retry_at {
            self.refusing = None;
            self.roll_if_full()?;
        }
        match &self.refusing {
            Some(refusing) => Err(StoreError::Full(refusing.cause.clone())),
            None => Ok(()),
        }
    }

    /// Starts a new segment if the active one has reached its size. A disk
    /// with no room for the new file leaves the records where they are,
    /// whole, and the log refuses appends until its next try.
    fn roll_if_full(&mut self) -> Result<(), StoreError> {
        if self.active().len < self.settings.segment_bytes {
            return Ok(());
        }
        self.write_buffer()?;
        self.force()?;
        match self.start_segment() {
            Err(StoreError::Full(cause)) => {
                // The dispatcher logs the episode, whose cause names the
                // new segment's file.
                log::debug!(
                    "topic {:?}: cannot start a new segment: {cause}",
                    self.topic
                );
                self.refuse_for_a_while(cause);
                Ok(())
            }
            started => started,
        }
    }

    /// Forces the active segment to disk; with `--fsync never`, only notes
    /// it for a clean stop to force.
    fn force(&mut self) -> Result<(), StoreError> {
        if self.unsynced {
            let path = self.segments[self.segments.len() - 1].path.clone();
            match self.settings.fsync {
                Fsync::Never => self.note_unforced(path),
                _ => self.writer.sync_data().map_err(StoreError::sync(path))?,
            }
        }
        self.unsynced = false;
        Ok(())
    }

    fn note_unforced(&mut self, path: PathBuf) {
        if !self.unforced.contains(&path) {
            self.unforced.push(path);
        }
    }

    /// Starts a new segment at `next`, and closes the active one, whose
    /// records are all written, saving its index for the next start. (The
    /// index waits for the new file: a disk with no room for that tries
    /// again later, and would fail to save the index each time.)
    fn start_segment(&mut self) -> Result<(), StoreError> {
        let path = self.dir.join(segment_file_name(self.next));
        create_segment_file(&path, &self.dir, self.settings.fsync)?;
        self.active().save_index();
        self.writer = Arc::new(open_for_append(&path)?);
        self.segments.push(Segment::new(path, self.next));
        Ok(())
    }

    /// Counts `bytes` more held against the budget, and notes the use.
    fn hold(&mut self, bytes: usize) {
        self.held += bytes;
        self.last_used.set(self.budget.take(bytes));
    }

    /// Counts `bytes` no longer held.
    fn let_go(&mut self, bytes: usize) {
        self.held -= bytes;
        self.budget.give_back(bytes);
    }

    /// Counts a change in the buffer's capacity.
    fn count_buffer(&mut self) {
        let capacity = self.buffer.capacity();
        match capacity.cmp(&self.buffer_counted) {
            std::cmp::Ordering::Greater => self.hold(capacity - self.buffer_counted),
            std::cmp::Ordering::Less => self.let_go(self.buffer_counted - capacity),
            std::cmp::Ordering::Equal => {}
        }
        self.buffer_counted = capacity;
    }

    /// Drops the oldest cached payload, if there is one.
    fn uncache_oldest(&mut self) -> Option<()> {
        let oldest = self.cache.pop_front()?;
        self.let_go(cost(&oldest));
        self.cache_first += 1;
        Some(())
    }

    /// Keeps `run` for the reads that follow, instead of the last one.
    fn keep_read_ahead(&mut self, run: ReadAhead) {
        self.drop_read_ahead();
        self.hold(run.cost());
        *self.read_ahead.get_mut() = run;
    }

    fn drop_read_ahead(&mut self) {
        let run = std::mem::take(self.read_ahead.get_mut());
        self.let_go(run.cost());
    }

    fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// Whether the oldest segment (never the active one) holds only
    /// records older than `--retention-age`.
    fn oldest_expired(&self) -> bool {
        match (self.settings.retention_age, self.segments.first()) {
            (Some(age), Some(oldest)) if self.segments.len() > 1 => {
                oldest.newest.saturating_add(age.as_millis() as u64) < now_ms()
            }
            _ => false,
        }
    }
}

impl TopicLog for DiskLog {
    fn append(&mut self, payload: Payload) -> Result<Offset, StoreError> {
        self.check_room()?;
        let offset = self.next;
        let timestamp = now_ms();
        Header::encode_record(offset, timestamp, &payload, &mut self.buffer);
        self.count_buffer();
        let record_len = (HEADER_BYTES + payload.len()) as u64;
        self.active().add(offset, record_len, timestamp);
        self.next += 1;
        self.hold(cost(&payload));
        self.cache.push_back(payload);
        if self.settings.fsync == Fsync::Always {
            self.write_buffer()?;
            self.force()?;
        } else if self.buffer.len() >= WRITE_BUFFER_BYTES {
            self.write_buffer()?;
        }
        self.roll_if_full()?;
        Ok(offset)
    }

    fn read(&self, offset: Offset) -> Lookup {
        if offset >= self.written || offset < self.start() {
            return Lookup::Nothing;
        }
        if self.unreadable_at(offset) {
            return Lookup::Unreadable;
        }
        if offset >= self.cache_first {
            return match self.cache.get((offset - self.cache_first) as usize) {
                Some(payload) => {
                    self.last_used.set(self.budget.now());
                    Lookup::Message(payload.clone())
                }
                None => Lookup::Nothing,
            };
        }
        if let Some(payload) = self.read_ahead.borrow().get(offset) {
            self.last_used.set(self.budget.now());
            return Lookup::Message(payload);
        }
        if !self.fetching.replace(true) {
            let index = self.segments.partition_point(|s| s.end <= offset);
            let max_payload = self.settings.max_message_bytes;
            let run = self.segments[index].run_start(offset, self.written, max_payload);
            self.fetcher.fetch(FetchRequest {
                topic: self.topic.clone(),
                run,
            });
        }
        Lookup::Later
    }

    fn take_fetched(&mut self, fetched: Fetched) {
        self.fetching.set(false);
        match fetched.run {
            Ok(run) => {
                self.keep_read_ahead(ReadAhead {
                    first: fetched.first,
                    payloads: run.payloads,
                });
                if let Some(damage) = run.damage {
                    self.note_unreadable(damage.offsets.clone(), &damage);
                }
            }
            // Retention deleted the segment while it was being read: the
            // offset is gone anyway, and nothing is damaged.
            Err(_) if fetched.first < self.start() => {}
            Err(error) => {
                // A failed read (EIO, say) costs the offset asked for, so
                // that readers go on; the next offset is read anew.
                let offset = fetched.first;
                let why = format_args!("offset {offset} cannot be read from its segment: {error}");
                self.note_unreadable(offset..offset + 1, why);
            }
        }
    }

    fn unreadable_records(&self) -> u64 {
        self.unreadable_count
    }

    fn disk_bytes(&self) -> u64 {
        self.segments.iter().map(|segment| segment.len).sum()
    }

    fn start(&self) -> Offset {
        self.segments.first().map_or(self.written, |s| s.base)
    }

    fn end(&self) -> Offset {
        self.written
    }

    fn has_unwritten(&self) -> bool {
        self.next > self.written
    }

    fn over_retention(&self) -> bool {
        let over_size = self
            .settings
            .retention_bytes
            .is_some_and(|limit| self.bytes() > limit);
        over_size || self.oldest_expired()
    }

    /// Deletes whole segments, oldest first, never the active one, and
    /// none that holds an offset at or after `keep_from`.
    fn apply_retention(&mut self, keep_from: Offset) {
        while self.over_retention() && self.segments.len() > 1 && self.segments[0].end <= keep_from
        {
            let oldest = self.segments.remove(0);
            self.unforced.retain(|path| *path != oldest.path);
            if let Err(error) = oldest.delete() {
                log::error!("cannot delete {}: {error}", oldest.path.display());
            }
            while self.cache_first < oldest.end && self.uncache_oldest().is_some() {}
        }
        self.cache_first = self.cache_first.max(self.start());
        let start = self.start();
        self.unreadable.retain(|_, end| *end > start);
    }

    fn held_bytes(&self) -> usize {
        self.held
    }

    fn last_used(&self) -> u64 {
        self.last_used.get()
    }

    /// Every payload held is in a segment file, or will be once the
    /// buffer is written, so none is needed in memory: the empty buffer's
    /// capacity goes first, then the read-ahead run (its records are older
    /// than the cache's), then the cache's oldest payloads, but none still
    /// only in the buffer.
    fn release_memory(&mut self, bytes: usize, _keep_from: Offset) {
        let goal = self.held.saturating_sub(bytes);
        if self.held > goal && self.buffer.is_empty() {
            self.buffer = Vec::new();
            self.count_buffer();
        }
        if self.held > goal {
            self.drop_read_ahead();
        }
        while self.held > goal && self.cache_first < self.written {
            if self.uncache_oldest().is_none() {
                break;
            }
        }
    }

    /// Writes the buffered records. With `--fsync batch` the job forces
    /// them to disk (`always` did as it appended, `never` leaves it to the
    /// operating system), on the syncer thread, so that it costs the
    /// dispatcher no wait for the disk.
    fn write(&mut self) -> Result<Option<SyncJob>, StoreError> {
        self.write_buffer()?;
        let force = (self.unsynced && self.settings.fsync == Fsync::Batch).then(|| {
            let active = &self.segments[self.segments.len() - 1];
            let written = (active.base, active.len);
            (self.writer.clone(), active.path.clone(), written)
        });
        if self.settings.fsync == Fsync::Never {
            self.force()?;
        }
        self.unsynced = false;
        let horizon =
            (self.settings.keeps_horizon()).then(|| (self.horizon.clone(), self.dir.clone()));
        Ok(force.map(|(file, path, (base, written))| {
            Box::new(move || {
                file.sync_data().map_err(StoreError::sync(path))?;
                match horizon {
                    Some((saved, dir)) => Horizon::cover(&saved, &dir, base, written),
                    None => Ok(()),
                }
            }) as SyncJob
        }))
    }

    /// Saves the consumer groups' positions, if they moved (or a full disk
    /// kept the last ones from being saved). A groups file the disk has no
    /// room for is logged and saved again next time: the broker goes on,
    /// and a restart before that gives out again what the groups finished
    /// since they were last saved.
    fn save_groups(&mut self) -> Option<SyncJob> {
        let unsaved = self.groups_unsaved.load(Ordering::Relaxed);
        if !std::mem::take(&mut self.groups_moved) && !unsaved {
            return None;
        }
        let bytes = encode_groups(&self.groups);
        if self.settings.fsync == Fsync::Never {
            self.note_unforced(self.dir.join(GROUPS_FILE));
        }
        let (dir, fsync) = (self.dir.clone(), self.settings.fsync);
        let (topic, unsaved) = (self.topic.clone(), self.groups_unsaved.clone());
        Some(Box::new(move || {
            match replace_file(&dir, GROUPS_FILE, &bytes, fsync) {
                Err(StoreError::Full(cause)) => {
                    // Logged once, not at every try while the disk is full.
                    if !unsaved.swap(true, Ordering::Relaxed) {
                        log::warn!("topic {topic:?}: cannot save its consumer groups: {cause}");
                    }
                }
                saved => {
                    saved?;
                    unsaved.store(false, Ordering::Relaxed);
                }
            }
            Ok(())
        }))
    }

    /// With `--fsync never`, writes and saves as usual, then forces every
    /// file the log wrote without forcing, and their directory.
    fn write_and_force(&mut self) -> Result<Option<SyncJob>, StoreError> {
        let written = self.write()?;
        let saved = self.save_groups();
        let unforced = std::mem::take(&mut self.unforced);
        if written.is_none() && saved.is_none() && unforced.is_empty() {
            return Ok(None);
        }
        let dir = self.dir.clone();
        Ok(Some(Box::new(move || {
            for job in [written, saved].into_iter().flatten() {
                job()?;
            }
            if unforced.is_empty() {
                return Ok(());
            }
            for path in unforced {
                force_file(&path)?;
            }
            sync_directory(&dir)
        })))
    }

    fn saves_groups(&self) -> bool {
        true
    }

    fn saved_groups(&self) -> Vec<(String, GroupPosition)> {
        self.groups.clone().into_iter().collect()
    }

    fn set_group_position(&mut self, name: &str, position: GroupPosition) {
        self.groups.insert(name.to_owned(), position);
        self.groups_moved = true;
    }
}

/// Replaces the file `name` in `dir` with `bytes`: written to a scratch
/// file (`name.new`) and renamed into place, so a crash leaves the old
/// contents or the new, whole. Forced to disk unless `--fsync never`.
fn replace_file(dir: &Path, name: &str, bytes: &[u8], fsync: Fsync) -> Result<(), StoreError> {
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

/// The groups file: a `u32` count of groups, then for each its name (`u32`
/// length and UTF-8 bytes), its next offset (`u64`), and the ranges of
/// offsets below it that it has not finished with (a `u32` count, then each
/// range's start and end, `u64`s); all big-endian.
fn encode_groups(groups: &BTreeMap<String, GroupPosition>) -> Vec<u8> {
    let mut bytes = (groups.len() as u32).to_be_bytes().to_vec();
    for (name, position) in groups {
        bytes.extend_from_slice(&(name.len() as u32).to_be_bytes());
        bytes.extend_from_slice(name.as_bytes());
        bytes.extend_from_slice(&position.next.to_be_bytes());
        bytes.extend_from_slice(&(position.unfinished.len() as u32).to_be_bytes());
        for (start, end) in &position.unfinished {
            bytes.extend_from_slice(&start.to_be_bytes());
            bytes.extend_from_slice(&end.to_be_bytes());
        }
    }
    bytes
}

/// The groups file of [`encode_groups`], if `bytes` hold a whole one.
fn decode_groups(mut bytes: &[u8]) -> Option<BTreeMap<String, GroupPosition>> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = bytes.split_at_checked(n)?;
        *bytes = rest;
        Some(head)
    }
    let u32_at = |bytes: &mut &[u8]| Some(BigEndian::read_u32(take(bytes, 4)?) as usize);
    let u64_at = |bytes: &mut &[u8]| Some(BigEndian::read_u64(take(bytes, 8)?));
    let mut groups = BTreeMap::new();
    for _ in 0..u32_at(&mut bytes)? {
        let len = u32_at(&mut bytes)?;
        let name = String::from_utf8(take(&mut bytes, len)?.to_vec()).ok()?;
        let next = u64_at(&mut bytes)?;
        let count = u32_at(&mut bytes)?;
        let unfinished = (0..count)
            .map(|_| Some((u64_at(&mut bytes)?, u64_at(&mut bytes)?)))
            .collect::<Option<_>>()?;
        groups.insert(name, GroupPosition { next, unfinished });
    }
    bytes.is_empty().then_some(groups)
}

/// The groups saved in `dir`, or none if no group was ever saved. A
/// groups file that cannot be read (empty, or cut short: with `--fsync
/// never` a power loss can leave it so) is logged, and its groups start
/// again: each from where its next member asks, giving out again what it
/// had finished, which is better than losing what it had not.
fn read_groups(topic: &str, dir: &Path) -> Result<BTreeMap<String, GroupPosition>, StoreError> {
    let path = dir.join(GROUPS_FILE);
    match fs::read(&path) {
        Ok(bytes) => Ok(decode_groups(&bytes).unwrap_or_else(|| {
            log::error!(
                "topic {topic:?}: cannot read its consumer groups from {} ({} bytes); \
                 they start again where their members ask",
                path.display(),
                bytes.len()
            );
            BTreeMap::new()
        })),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(error) => Err(StoreError::Io { path, error }),
    }
}

/// Brings saved group positions back within a log that ends at `end`.
/// With `--fsync never` a power loss can keep a groups file newer than
/// the records it speaks of; the offsets from `end` on go to new
/// messages, which the groups must not skip.
fn bring_groups_within(topic: &str, groups: &mut BTreeMap<String, GroupPosition>, end: Offset) {
    for (name, position) in groups.iter_mut() {
        if position.next <= end {
            continue;
        }
        log::warn!(
            "topic {topic:?}: group {name:?} was at offset {}, past the log's end, {end} \
             (records lost in a crash); it goes on from {end}",
            position.next
        );
        position.next = end;
        position.unfinished.retain_mut(|(start, stop)| {
            *stop = (*stop).min(end);
            start < stop
        });
    }
}

/// The time, in ms since 1970, as records carry it.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

fn open_for_append(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(StoreError::io(path))
}

/// Creates an empty segment file, and makes its directory entry durable
/// unless `--fsync never`.
fn create_segment_file(path: &Path, dir: &Path, fsync: Fsync) -> Result<(), StoreError> {
    File::create(path).map_err(StoreError::io(path))?;
    if fsync != Fsync::Never {
        sync_directory(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::OnDamage;
    use crossbeam_channel::Receiver;

    /// A directory under the system's temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(label: &str) -> TempDir {
            let path = std::env::temp_dir().join(format!(
                "brook-disk-{label}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = fs::remove_dir_all(&path);
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn settings(segment_bytes: u64, retention_bytes: Option<u64>) -> LogSettings {
        LogSettings {
            segment_bytes,
            retention_bytes,
            retention_age: None,
            fsync: Fsync::Never,
            max_message_bytes: 1 << 20,
            on_damage: OnDamage::Skip,
        }
    }

    /// A disk store on `temp`, with a fetcher thread whose runs arrive on
    /// the returned queue, as they would at the dispatcher.
    fn open_store(temp: &TempDir, settings: LogSettings) -> (DiskStore, Receiver<Fetched>) {
        let (runs, fetched) = crossbeam_channel::unbounded();
        let fetcher = Fetcher::spawn(move |run| runs.send(run).is_ok()).unwrap();
        (
            DiskStore::new(&temp.0, settings, 64 << 20, fetcher),
            fetched,
        )
    }

    /// Reads `offset` as the dispatcher does: a read that must wait for the
    /// fetcher gets the fetched run and asks again.
    fn read_now(log: &mut dyn TopicLog, fetched: &Receiver<Fetched>, offset: Offset) -> Lookup {
        for _ in 0..2 {
            match log.read(offset) {
                Lookup::Later => {}
                read => return read,
            }
            match fetched.recv_timeout(Duration::from_secs(10)) {
                Ok(run) => log.take_fetched(run),
                other => panic!("expected a fetched run, got {other:?}"),
            }
        }
        panic!("offset {offset} is still not there after its fetch");
    }

    /// What the dispatcher and the syncer do at the end of a round.
    fn write_durably(log: &mut dyn TopicLog) {
        if let Some(job) = log.write().unwrap() {
            job().unwrap();
        }
    }

    fn message(i: u64) -> Payload {
        Payload::from(format!("message {i:04}").repeat(5).into_bytes())
    }

    #[test]
    fn with_fsync_never_a_clean_stop_still_forces_what_was_written() {
        let temp = TempDir::new("force-at-stop");
        let (mut store, _fetched) = open_store(&temp, settings(64, None));
        store.recover().unwrap();
        let mut log = store.open("t").unwrap();
        assert!(log.write_and_force().unwrap().is_none(), "nothing written");
        for i in 0..4u8 {
            log.append(Payload::from(vec![i; 40])).unwrap(); // a segment each
        }
        log.set_group_position("g", GroupPosition::default());
        assert!(log.save_groups().is_some(), "the groups file is saved");
        let force = log.write_and_force().unwrap();
        force.expect("a job that forces the segments")().unwrap();
        assert!(
            log.write_and_force().unwrap().is_none(),
            "forced once, nothing is left to force"
        );
    }

    /// A round's records and its groups' places are made durable by
    /// separate jobs, so that the dispatcher can save every place after
    /// every record: the groups file is not touched by the records' job.
    #[test]
    fn records_are_made_durable_apart_from_the_groups_places() {
        let temp = TempDir::new("groups-last");
        let batch = LogSettings {
            fsync: Fsync::Batch,
            ..settings(1 << 20, None)
        };
        let (mut store, _fetched) = open_store(&temp, batch);
        store.recover().unwrap();
        let mut log = store.open("t").unwrap();
        log.append(message(0)).unwrap();
        let position = GroupPosition {
            next: 1,
            unfinished: Vec::new(),
        };
        log.set_group_position("g", position.clone());
        let fsync = log.write().unwrap().expect("an fsync of the record");
        fsync().unwrap();
        let dir = store.directory_for("t").unwrap();
        assert!(!dir.join(GROUPS_FILE).exists(), "saved with the records");
        log.save_groups().expect("a save of the groups")().unwrap();
        assert_eq!(read_groups("t", &dir).unwrap().get("g"), Some(&position));
        assert!(log.save_groups().is_none(), "nothing moved since");
    }

    #[test]
    fn directory_names_are_safe_and_distinct() {
        let names = [
            "..",
            ".",
            "",
            "a/b",
            "../../etc/passwd",
            "\0",
            "CON",
            "Ab",
            "aB",
        ];
        let mut seen = std::collections::HashSet::new();
        for name in names {
            let dir = directory_name(name);
            assert!(!dir.contains('/') && dir != "." && dir != "..", "{dir:?}");
            assert!(seen.insert(dir), "{name:?} shares a directory name");
        }
        assert!(directory_name(&"x".repeat(65_535)).len() <= 48 + 17);
    }

    #[test]
    fn messages_survive_a_reopen_across_segments_and_index_runs() {
        let temp = TempDir::new("reopen");
        let (mut store, _) = open_store(&temp, settings(16 << 10, None));
        let mut log = store.open("t").unwrap();
        for i in 0..1000 {
            assert_eq!(log.append(message(i)).unwrap(), i);
        }
        write_durably(log.as_mut());
        drop(log);

        let (mut store, fetched) = open_store(&temp, settings(16 << 10, None));
        let mut topics = store.recover().unwrap();
        assert_eq!(topics.len(), 1);
        let (name, mut log) = topics.pop().unwrap();
        assert_eq!(&*name, "t");
        assert_eq!((log.start(), log.end()), (0, 1000));
        // Nothing is cached after a reopen: every read goes to a segment.
        for i in (0..1000).rev() {
            let read = read_now(log.as_mut(), &fetched, i);
            assert_eq!(read, Lookup::Message(message(i)), "offset {i}");
        }
        let segments = segment_paths(&store.directory_for("t").unwrap()).unwrap();
        assert!(segments.len() > 4, "{} segments", segments.len());
    }

    /// Fills topic "t" with 1,000 messages in segments of 16 KiB, and
    /// returns the topic's directory and its segment files.
    fn fill_segments(temp: &TempDir) -> (PathBuf, Vec<(Offset, PathBuf)>) {
        let (mut store, _) = open_store(temp, settings(16 << 10, None));
        let mut log = store.open("t").unwrap();
        for i in 0..1000 {
            log.append(message(i)).unwrap();
        }
        write_durably(log.as_mut());
        let dir = store.directory_for("t").unwrap();
        let segments = segment_paths(&dir).unwrap();
        (dir, segments)
    }

    /// Reopens the data dir in `temp` with `--on-damage` set to
    /// `on_damage`, and reads topic "t" in order: every offset must hold
    /// its message, or be unreadable. Returns the unreadable offsets.
    fn reopen_and_read(
        temp: &TempDir,
        on_damage: OnDamage,
        fsync: Fsync,
    ) -> Result<Vec<Offset>, StoreError> {
        let settings = LogSettings {
            on_damage,
            fsync,
            ..settings(16 << 10, None)
        };
        let (mut store, fetched) = open_store(temp, settings);
        let (_, mut log) = store.recover()?.pop().unwrap();
        assert_eq!((log.start(), log.end()), (0, 1000));
        let mut unreadable = Vec::new();
        for i in 0..1000 {
            match read_now(log.as_mut(), &fetched, i) {
                Lookup::Message(payload) => assert_eq!(payload, message(i), "offset {i}"),
                Lookup::Unreadable => unreadable.push(i),
                other => panic!("offset {i}: {other:?}"),
            }
        }
        assert_eq!(log.unreadable_records(), unreadable.len() as u64);
        Ok(unreadable)
    }

    /// Reopens the data dir in `temp` and checks that topic "t" holds its
    /// 1,000 messages.
    fn reopen_and_check(temp: &TempDir) -> Result<(), StoreError> {
        assert_eq!(reopen_and_read(temp, OnDamage::Skip, Fsync::Batch)?, []);
        Ok(())
    }

    #[test]
    fn closed_segments_are_reopened_through_their_index_files() {
        let temp = TempDir::new("indexed");
        let (_, segments) = fill_segments(&temp);
        let (closed, _active) = segments.split_at(segments.len() - 1);
        assert!(closed.len() > 4, "{} closed segments", closed.len());
        let index_of = |path: &PathBuf| fs::read(path.with_extension("index"));
        let saved: Vec<Vec<u8>> = closed.iter().map(|(_, p)| index_of(p).unwrap()).collect();
        assert!(
            index_of(&segments[segments.len() - 1].1).is_err(),
            "the active one has none"
        );
        reopen_and_check(&temp).unwrap();

        // A garbled index and a missing one: those segments are read in
        // full, and get their index files back.
        let mut garbled = saved[1].clone();
        garbled[20] ^= 0x40;
        fs::write(closed[1].1.with_extension("index"), garbled).unwrap();
        fs::remove_file(closed[2].1.with_extension("index")).unwrap();
        reopen_and_check(&temp).unwrap();
        for ((_, path), saved) in closed.iter().zip(&saved) {
            assert_eq!(&index_of(path).unwrap(), saved, "{}", path.display());
        }
    }

    /// The price of a fast start: a start reads only the last run of a
    /// closed segment with a matching index, so damage inside the segment is
    /// found when the damaged record is read, which then fails.
    #[test]
    fn damage_inside_an_indexed_segment_is_found_when_it_is_read() {
        let temp = TempDir::new("indexed-flip");
        let (_, segments) = fill_segments(&temp);
        let (base, path) = &segments[1];
        let mut bytes = fs::read(path).unwrap();
        bytes[HEADER_BYTES + 3] ^= 0x01; // the first record's payload
        fs::write(path, bytes).unwrap();
        let (mut store, fetched) = open_store(&temp, settings(16 << 10, None));
        let (_, mut log) = store.recover().unwrap().pop().unwrap();
        assert_eq!((log.start(), log.end()), (0, 1000));
        assert_eq!(read_now(log.as_mut(), &fetched, *base), Lookup::Unreadable);
        let before = *base - 1;
        assert_eq!(
            read_now(log.as_mut(), &fetched, before),
            Lookup::Message(message(before))
        );
    }

    #[test]
    fn a_closed_segment_cut_short_costs_only_its_last_record() {
        let temp = TempDir::new("indexed-cut");
        let (_, segments) = fill_segments(&temp);
        // Cut the last record of a closed segment short: the index says the
        // file is longer, so the segment is read, and it is damaged.
        let path = &segments[1].1;
        let len = fs::metadata(path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(len - 5)
            .unwrap();
        match reopen_and_read(&temp, OnDamage::Stop, Fsync::Batch) {
            Err(StoreError::Corrupt { path: damaged, .. }) => assert_eq!(&damaged, path),
            other => panic!("expected a damaged segment, got {other:?}"),
        }
        let last_of_segment = segments[2].0 - 1;
        assert_eq!(
            reopen_and_read(&temp, OnDamage::Skip, Fsync::Batch).unwrap(),
            [last_of_segment]
        );
        // With --fsync never, a power loss can leave that: it is skipped
        // even by a broker that stops on damage.
        assert_eq!(
            reopen_and_read(&temp, OnDamage::Stop, Fsync::Never).unwrap(),
            [last_of_segment]
        );
    }

    /// A closed segment that ends whole but short (empty here: a power loss
    /// under --fsync never) costs its offsets, and the start goes on.
    #[test]
    fn a_closed_segment_that_ends_whole_but_short_costs_its_offsets() {
        let temp = TempDir::new("short-closed");
        let (_, segments) = fill_segments(&temp);
        let (base, path) = &segments[1];
        fs::write(path, b"").unwrap();
        let _ = fs::remove_file(path.with_extension("index"));
        let lost: Vec<Offset> = (*base..segments[2].0).collect();
        assert_eq!(
            reopen_and_read(&temp, OnDamage::Stop, Fsync::Never).unwrap(),
            lost
        );
        assert!(matches!(
            reopen_and_read(&temp, OnDamage::Stop, Fsync::Batch),
            Err(StoreError::Corrupt { .. })
        ));
    }

    /// Opens topic "t" of the data dir in `temp` anew, with `fsync never`.
    fn reopen(temp: &TempDir) -> Box<dyn TopicLog> {
        let (mut store, _) = open_store(temp, settings(16 << 10, None));
        store.recover().unwrap().pop().unwrap().1
    }

    /// Writes records 0 to 99 durably and 100 to 109 without the fsync
    /// that would have confirmed them, then does to the segment file what
    /// a power loss can: the disk kept records 101 to 109 and not 100
    /// (84 bytes a record). Returns the segment file's path.
    fn lose_power_between_batches(temp: &TempDir, settings: LogSettings) -> PathBuf {
        let (mut store, _) = open_store(temp, settings);
        let mut log = store.open("t").unwrap();
        for i in 0..100 {
            log.append(message(i)).unwrap();
        }
        write_durably(log.as_mut()); // 0 to 99 may be confirmed
        for i in 100..110 {
            log.append(message(i)).unwrap();
        }
        let _never_run = log.write().unwrap();
        let path = store.directory_for("t").unwrap().join(segment_file_name(0));
        drop((log, store));
        let mut bytes = fs::read(&path).unwrap();
        bytes[100 * 84..101 * 84].fill(0);
        fs::write(&path, bytes).unwrap();
        path
    }

    /// Starts a store on `temp` and returns topic "t"'s first and next
    /// offsets, and how many of its records are unreadable.
    fn start_again(
        temp: &TempDir,
        settings: LogSettings,
    ) -> Result<(Offset, Offset, u64), StoreError> {
        let (mut store, _) = open_store(temp, settings);
        let (_, log) = store.recover()?.pop().unwrap();
        Ok((log.start(), log.end(), log.unreadable_records()))
    }

    #[test]
    fn with_on_damage_stop_damage_past_what_was_confirmed_is_a_torn_end() {
        let temp = TempDir::new("horizon");
        let batch = LogSettings {
            fsync: Fsync::Batch,
            on_damage: OnDamage::Stop,
            ..settings(1 << 20, None)
        };
        let path = lose_power_between_batches(&temp, batch);
        assert_eq!(
            start_again(&temp, batch).unwrap(),
            (0, 100, 0),
            "a torn end, cut off"
        );
        assert_eq!(fs::metadata(&path).unwrap().len(), 100 * 84);
        // Damage before that point may hide a confirmed record: damage in
        // the middle, which --on-damage stop refuses.
        let mut bytes = fs::read(&path).unwrap();
        bytes[50 * 84 + HEADER_BYTES] ^= 0x01;
        fs::write(&path, bytes).unwrap();
        match start_again(&temp, batch) {
            Err(StoreError::Corrupt { position, .. }) => assert_eq!(position, 50 * 84),
            other => panic!("expected damage in the middle, got {other:?}"),
        }
    }

    #[test]
    fn with_on_damage_skip_a_power_loss_between_batches_costs_only_the_lost_offsets() {
        let temp = TempDir::new("no-horizon");
        let batch = LogSettings {
            fsync: Fsync::Batch,
            on_damage: OnDamage::Skip,
            ..settings(1 << 20, None)
        };
        lose_power_between_batches(&temp, batch);
        let dir = temp.0.join("topics");
        let horizons = fs::read_dir(&dir)
            .unwrap()
            .filter(|topic| topic.as_ref().unwrap().path().join(HORIZON_FILE).exists())
            .count();
        assert_eq!(
            horizons, 0,
            "skip keeps no horizon, and pays no second fsync"
        );
        assert_eq!(
            start_again(&temp, batch).unwrap(),
            (0, 110, 1),
            "offset 100 skipped"
        );
    }

    #[test]
    fn an_empty_groups_file_starts_the_groups_again() {
        let temp = TempDir::new("groups-empty");
        let (dir, _) = fill_segments(&temp);
        fs::write(dir.join(GROUPS_FILE), b"").unwrap();
        assert_eq!(reopen(&temp).saved_groups(), []);
    }

    #[test]
    fn a_group_saved_past_the_recovered_end_goes_on_from_the_end() {
        let temp = TempDir::new("groups-past");
        let (dir, _) = fill_segments(&temp);
        let saved = |next, unfinished| GroupPosition { next, unfinished };
        let groups = BTreeMap::from([
            (
                "ahead".to_owned(),
                saved(1500, vec![(980, 990), (995, 1200)]),
            ),
            ("behind".to_owned(), saved(700, vec![(600, 610)])),
        ]);
        fs::write(dir.join(GROUPS_FILE), encode_groups(&groups)).unwrap();
        let expected = [
            (
                "ahead".to_owned(),
                saved(1000, vec![(980, 990), (995, 1000)]),
            ),
            ("behind".to_owned(), saved(700, vec![(600, 610)])),
        ];
        assert_eq!(reopen(&temp).saved_groups(), expected);
    }

    /// The ways one record can be damaged, as byte changes at the start
    /// of the record: (where, xor mask).
    const DAMAGE: [(&str, usize, u8); 6] = [
        ("offset field", 7, 0x20),
        ("timestamp", 12, 0x01),
        ("length field, to 4 GiB", 16, 0xFF),
        ("length field, one byte shorter", 19, 0x01),
        ("checksum", 21, 0x10),
        ("payload", HEADER_BYTES + 3, 0x01),
    ];

    /// Damages the record of `offset` in the segment at `path`, whose
    /// first offset is `base` (every record of `fill_segments` has 84
    /// bytes), by xoring `mask` into its byte `at`.
    fn damage_record(path: &Path, base: Offset, offset: Offset, (at, mask): (usize, u8)) {
        let mut bytes = fs::read(path).unwrap();
        bytes[(offset - base) as usize * 84 + at] ^= mask;
        fs::write(path, bytes).unwrap();
    }

    #[test]
    fn one_damaged_record_costs_that_record_only() {
        for (field, at, mask) in DAMAGE {
            // A closed segment, with its index (the damage is found when it
            // is read), and the last one (found at start-up).
            for which in ["closed", "last"] {
                let temp = TempDir::new("one-damaged");
                let (_, segments) = fill_segments(&temp);
                let (base, path) = match which {
                    "closed" => &segments[1],
                    _ => &segments[segments.len() - 1],
                };
                let damaged = base + 5;
                damage_record(path, *base, damaged, (at, mask));
                let unreadable = reopen_and_read(&temp, OnDamage::Skip, Fsync::Batch)
                    .unwrap_or_else(|e| panic!("{field} in the {which} segment: {e}"));
                assert_eq!(unreadable, [damaged], "{field} in the {which} segment");
            }
        }
    }

    #[test]
    fn damage_inside_the_last_segment_stops_the_start_only_if_asked() {
        let temp = TempDir::new("stop");
        let (_, segments) = fill_segments(&temp);
        let (base, path) = &segments[segments.len() - 1];
        damage_record(path, *base, base + 1, (HEADER_BYTES, 0x01));
        match reopen_and_read(&temp, OnDamage::Stop, Fsync::Batch) {
            Err(StoreError::Corrupt { path: damaged, .. }) => assert_eq!(&damaged, path),
            other => panic!("expected a damaged segment, got {other:?}"),
        }
        assert_eq!(
            reopen_and_read(&temp, OnDamage::Skip, Fsync::Batch).unwrap(),
            [base + 1]
        );
    }

    #[test]
    fn segments_older_than_the_retention_age_are_deleted() {
        let temp = TempDir::new("age");
        let dir = open_store(&temp, settings(1 << 20, None))
            .0
            .directory_for("t")
            .unwrap();
        // Two segments written by hand: offsets 0..3 two hours old, 3..5 new.
        let hour = 3_600_000;
        for (base, offsets, written) in [(0, 0..3, now_ms() - 2 * hour), (3, 3..5, now_ms())] {
            let mut records = Vec::new();
            for offset in offsets {
                Header::encode_record(offset, written, &message(offset), &mut records);
            }
            fs::write(dir.join(segment_file_name(base)), records).unwrap();
        }
        let aged = LogSettings {
            retention_age: Some(Duration::from_secs(3600)),
            ..settings(1 << 20, None)
        };
        let (mut store, fetched) = open_store(&temp, aged);
        assert!(store.ages_out());
        let (_, mut log) = store.recover().unwrap().pop().unwrap();
        assert!(log.over_retention());
        log.apply_retention(1); // a reader at offset 1 keeps the old segment
        assert_eq!(log.start(), 0);
        log.apply_retention(log.end());
        assert_eq!((log.start(), log.end()), (3, 5));
        assert!(!log.over_retention()); // the active segment never goes
        assert_eq!(
            read_now(log.as_mut(), &fetched, 3),
            Lookup::Message(message(3))
        );
    }

    #[test]
    fn released_payloads_are_read_back_and_unwritten_ones_stay() {
        let temp = TempDir::new("release");
        let (mut store, fetched) = open_store(&temp, settings(1 << 20, None));
        let mut log = store.open("t").unwrap();
        for i in 0..100 {
            log.append(message(i)).unwrap();
        }
        let all = (0..100).map(|i| cost(&message(i))).sum::<usize>();
        // The payloads, and the write buffer that holds their records.
        let held = log.held_bytes();
        assert!(held > all && held == store.budget().used(), "{held}");
        // Still in the write buffer: nothing can go.
        log.release_memory(usize::MAX, 0);
        assert_eq!(log.held_bytes(), held);
        write_durably(log.as_mut());
        // The written buffer goes first, then the oldest payloads.
        log.release_memory(1, 0);
        assert_eq!(log.held_bytes(), all);
        log.release_memory(cost(&message(0)) * 10, 0);
        assert_eq!(log.held_bytes(), all - cost(&message(0)) * 10);
        log.release_memory(usize::MAX, 0);
        assert_eq!((log.held_bytes(), store.budget().used()), (0, 0));
        // Every message is read back from the segment, and the run read
        // counts against the budget until it is released too.
        for i in 0..100 {
            assert_eq!(
                read_now(log.as_mut(), &fetched, i),
                Lookup::Message(message(i))
            );
        }
        assert!(store.budget().used() > 0);
        assert_eq!(log.held_bytes(), store.budget().used());
        log.release_memory(usize::MAX, 0);
        assert_eq!(store.budget().used(), 0);
        assert_eq!(
            read_now(log.as_mut(), &fetched, 99),
            Lookup::Message(message(99))
        );
    }

    #[test]
    fn one_data_directory_serves_one_store_at_a_time() {
        let temp = TempDir::new("lock");
        let (mut first, _) = open_store(&temp, settings(1 << 20, None));
        first.recover().unwrap();
        let (mut second, _) = open_store(&temp, settings(1 << 20, None));
        let refused = second.recover().map(|_| ()).unwrap_err().to_string();
        assert!(refused.contains("another broker"), "{refused}");
        drop(first);
        second.recover().unwrap();
    }

    #[test]
    fn retention_deletes_whole_segments_no_reader_needs() {
        let temp = TempDir::new("retention");
        let (mut store, fetched) = open_store(&temp, settings(4 << 10, Some(16 << 10)));
        let mut log = store.open("t").unwrap();
        for i in 0..1000 {
            log.append(message(i)).unwrap();
        }
        write_durably(log.as_mut());
        assert!(log.over_retention());
        log.apply_retention(100); // a reader is at offset 100
        assert!(log.start() <= 100 && log.start() > 0);
        assert_eq!(
            read_now(log.as_mut(), &fetched, 100),
            Lookup::Message(message(100))
        );
        log.apply_retention(log.end());
        assert!(!log.over_retention());
        // 84-byte records: 16 KiB keeps about 195, less what is left of
        // the oldest kept segment.
        let kept = log.end() - log.start();
        assert!((140..=195).contains(&kept), "{kept} kept");
        let dropped = log.start() - 1;
        assert_eq!(read_now(log.as_mut(), &fetched, dropped), Lookup::Nothing);
        assert_eq!(
            read_now(log.as_mut(), &fetched, 999),
            Lookup::Message(message(999))
        );
        assert_eq!(log.append(message(1000)).unwrap(), 1000);
    }
}
