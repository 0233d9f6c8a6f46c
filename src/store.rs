//! Topic storage: every topic is an append-only log of messages, numbered by
//! offset from 0.
//!
//! The dispatcher owns one [`TopicLog`] per topic and is the only thread that
//! touches it, so the interface is plain `&mut self` with no locking. It needs
//! very little: append a message and learn its offset, read the message at an
//! offset, know the range of offsets the log holds, and drop its oldest
//! messages when it outgrows its retention, sparing those a subscriber has
//! yet to read (the dispatcher says which), and let go of memory when the
//! store's logs together outgrow their memory budget (`budget.rs`).
//! Subscribers are just cursors into this log (see `session.rs`), so
//! replay from the beginning and live delivery are the same operation.
//!
//! [`MemoryStore`] keeps messages in RAM. [`DiskStore`](crate::disk::DiskStore)
//! keeps them in segment files (`disk.rs`), behind the same two traits,
//! without the protocol or dispatcher code changing.

use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::budget::{cost, MemoryBudget, MESSAGE_OVERHEAD_BYTES};
use crate::fetcher::Fetched;
use crate::ids::{Offset, Payload};

/// A topic's name and its log.
pub type NamedLog = (Arc<str>, Box<dyn TopicLog>);

/// Creates the log of each topic the broker meets.
pub trait Store: Send {
    /// The topics the store already holds, opened: for the disk store, every
    /// topic found in its directory, each checked and repaired as needed.
    fn recover(&mut self) -> Result<Vec<NamedLog>, StoreError>;

    /// Opens (or creates) the log of the topic called `name`.
    fn open(&mut self, name: &str) -> Result<Box<dyn TopicLog>, StoreError>;

    /// Whether its logs can outgrow their retention by time alone (an age
    /// limit), so the dispatcher must look at them now and then, not only
    /// when they grow.
    fn ages_out(&self) -> bool {
        false
    }

    /// The memory budget its logs share (see `budget.rs`).
    fn budget(&self) -> &MemoryBudget;
}

/// One topic's log.
pub trait TopicLog: Send {
    /// Appends a message and returns its offset. A log that finds the disk
    /// full ([`StoreError::Full`]) refuses the message, and takes back
    /// every message appended since its last successful write: their
    /// offsets, from [`TopicLog::end`] on, will be given again.
    fn append(&mut self, payload: Payload) -> Result<Offset, StoreError>;

    /// The message at `offset`, if the log holds it and has it at hand.
    fn read(&self, offset: Offset) -> Read;

    /// Takes a run of old records the fetcher thread read for a
    /// [`Read::Later`], so that reads of them find them.
    fn take_fetched(&mut self, _fetched: Fetched) {}

    /// The positions of the topic's consumer groups that the log was
    /// opened with: none in memory, those saved on disk.
    fn saved_groups(&self) -> Vec<(String, GroupPosition)> {
        Vec::new()
    }

    /// Whether the store keeps where consumer groups are (the disk store
    /// does). If not, the dispatcher spares itself working it out.
    fn saves_groups(&self) -> bool {
        false
    }

    /// Records where a consumer group is; the next
    /// [`TopicLog::save_groups`] saves it.
    fn set_group_position(&mut self, _name: &str, _position: GroupPosition) {}

    /// The offset of the oldest message still held (equal to
    /// [`TopicLog::end`] when the log is empty).
    fn start(&self) -> Offset;

    /// The end of what can be read: one past the newest message that is
    /// stored. In memory a message is stored as it is appended; on disk,
    /// once it is written to its file, so subscribers, groups and pulls
    /// never see a message that a full disk may yet take back. It never
    /// goes back.
    fn end(&self) -> Offset;

    /// How many of the log's offsets were found damaged on disk, and are
    /// skipped ([`Read::Unreadable`]), since the broker started.
    fn unreadable_records(&self) -> u64 {
        0
    }

    /// Whether messages were appended that are not readable yet (see
    /// [`TopicLog::end`]): [`TopicLog::write`] makes them so.
    fn has_unwritten(&self) -> bool {
        false
    }

    /// Whether the log holds more than its retention allows.
    fn over_retention(&self) -> bool;

    /// Drops the oldest messages while the log is over its retention, but
    /// none at or after `keep_from`: those a connected subscriber has yet to
    /// read. Offsets are never reused.
    fn apply_retention(&mut self, keep_from: Offset);

    /// How much of the store's memory budget the log holds.
    fn held_bytes(&self) -> usize;

    /// When the log was last appended to or read from, on its budget's
    /// clock ([`MemoryBudget::take`]): the least recently used let go of
    /// memory first.
    fn last_used(&self) -> u64;

    /// Lets go of about `bytes` of the memory it holds (whole messages, so
    /// a little more, or less if it has no more to give), oldest first.
    /// `keep_from` is as for [`TopicLog::apply_retention`]: a log that
    /// can read its messages back (from disk) lets go of any it holds, one
    /// that cannot drops only those before it.
    fn release_memory(&mut self, bytes: usize, keep_from: Offset);

    /// Hands every message appended so far to the operating system, and
    /// returns what must still be done to make them as durable as the
    /// store promises, if anything: for the disk store
    /// with `--fsync batch`, an fsync. The dispatcher calls it at the end of
    /// each round in which the log grew or was pulled from, has the job run
    /// on the syncer thread (`syncer.rs`), and sends nothing about those
    /// messages (a confirmation, a delivery, a pulled message) before the
    /// job is done. A write that finds the disk full takes back what it
    /// could not write, as [`TopicLog::append`] does.
    fn write(&mut self) -> Result<Option<SyncJob>, StoreError>;

    /// Saves the positions [`TopicLog::set_group_position`] recorded, if
    /// any moved, and returns the job that does it (on the syncer thread,
    /// like the job of [`TopicLog::write`]). The dispatcher runs every
    /// round's saves after every record the round wrote is durable: a
    /// group marks a message done (acked, or given up to a dead-letter
    /// topic) only once what it depends on, such as the dead letter, is on
    /// disk.
    fn save_groups(&mut self) -> Option<SyncJob> {
        None
    }

    /// Like [`TopicLog::write`], but the job forces everything this log
    /// ever wrote to disk, whatever `--fsync` says: the broker is stopping
    /// cleanly, and what it leaves behind must survive the machine going
    /// down next. A log that keeps nothing on disk just writes.
    fn write_and_force(&mut self) -> Result<Option<SyncJob>, StoreError> {
        self.write()
    }
}

/// Where a consumer group is in its topic's log (`group.rs`): the first
/// offset it never gave out, and the offsets below it that it has not
/// finished with, as ranges `start..end` in order. Everything else below
/// `next` is done: acked, or given up. So a group that comes back after a
/// restart gives out `unfinished` again, then goes on from `next`.
///
/// Ranges, because a group's unfinished offsets are mostly runs (its
/// members' windows): saved every round that a group finishes a message,
/// they stay a few numbers however many messages the members hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupPosition {
    pub next: Offset,
    pub unfinished: Vec<(Offset, Offset)>,
}

/// What [`TopicLog::read`] found at an offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    Message(Payload),
    /// No message: the offset is past the end of the log, or before its
    /// start.
    Nothing,
    /// The offset is in the log, but its record is damaged on disk (the
    /// store has logged it, once). Readers skip it: a subscriber, a pull
    /// or a group that stopped there would stop for good, and pin the log
    /// against retention.
    Unreadable,
    /// The message is on disk only, and the fetcher thread is reading it
    /// (`fetcher.rs`). The dispatcher hears when it has
    /// ([`Command::Fetched`](crate::dispatcher::Command)), and offers the
    /// topic again to whoever was reading it.
    Later,
}

/// Work that makes a log's writes durable, such as an fsync. It runs on the
/// syncer thread, so the dispatcher goes on with its next round meanwhile.
pub type SyncJob = Box<dyn FnOnce() -> Result<(), StoreError> + Send>;

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
                    limit: crate::files::open_files_limit(),
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
    /// for connections and topics (`files.rs`).
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

/// Keeps every topic in memory, for as long as the broker runs, up to an
/// optional size per topic beyond which the oldest messages nobody still
/// needs are dropped, and within one budget for all topics together.
#[derive(Debug)]
pub struct MemoryStore {
    /// `--retention-bytes`: when a topic's payloads exceed this, its oldest
    /// messages are dropped. `None` keeps everything.
    retention_bytes: Option<usize>,
    /// `--memory-bytes`, shared by every log.
    budget: Arc<MemoryBudget>,
}

impl MemoryStore {
    pub fn new(retention_bytes: Option<usize>, memory_bytes: usize) -> MemoryStore {
        MemoryStore {
            retention_bytes,
            budget: Arc::new(MemoryBudget::new("--memory-bytes", memory_bytes)),
        }
    }
}

impl Store for MemoryStore {
    fn recover(&mut self) -> Result<Vec<NamedLog>, StoreError> {
        Ok(Vec::new())
    }

    fn open(&mut self, _name: &str) -> Result<Box<dyn TopicLog>, StoreError> {
        Ok(Box::new(MemoryLog {
            messages: VecDeque::new(),
            first: 0,
            bytes: 0,
            retention_bytes: self.retention_bytes,
            budget: self.budget.clone(),
            last_used: Cell::new(0),
        }))
    }

    fn budget(&self) -> &MemoryBudget {
        &self.budget
    }
}

/// A topic log in a `VecDeque`: offset `first + n` is element `n`.
///
/// Retention matters for speed as well as for memory: a log that only grows
/// puts every new payload in memory the process has never touched, and on a
/// virtual machine each first touch of a page is a costly fault. A log that
/// drops its oldest messages hands their memory back to the allocator, which
/// gives it to the next payloads.
#[derive(Debug)]
pub struct MemoryLog {
    messages: VecDeque<Payload>,
    /// The offset of `messages[0]`.
    first: Offset,
    /// The payload bytes held.
    bytes: usize,
    retention_bytes: Option<usize>,
    budget: Arc<MemoryBudget>,
    /// See [`TopicLog::last_used`]. A `Cell`, since reads take `&self`.
    last_used: Cell<u64>,
}

impl MemoryLog {
    /// Drops the oldest message, if there is one.
    fn drop_oldest(&mut self) -> Option<()> {
        let oldest = self.messages.pop_front()?;
        self.bytes -= oldest.len();
        self.budget.give_back(cost(&oldest));
        self.first += 1;
        Some(())
    }
}

impl TopicLog for MemoryLog {
    fn append(&mut self, payload: Payload) -> Result<Offset, StoreError> {
        self.bytes += payload.len();
        self.last_used.set(self.budget.take(cost(&payload)));
        self.messages.push_back(payload);
        Ok(self.end() - 1)
    }

    fn read(&self, offset: Offset) -> Read {
        let index = offset
            .checked_sub(self.first)
            .and_then(|i| usize::try_from(i).ok());
        match index.and_then(|i| self.messages.get(i)) {
            Some(payload) => {
                self.last_used.set(self.budget.now());
                Read::Message(payload.clone())
            }
            None => Read::Nothing,
        }
    }

    fn start(&self) -> Offset {
        self.first
    }

    fn end(&self) -> Offset {
        self.first + self.messages.len() as Offset
    }

    fn over_retention(&self) -> bool {
        self.retention_bytes.is_some_and(|limit| self.bytes > limit)
    }

    fn write(&mut self) -> Result<Option<SyncJob>, StoreError> {
        Ok(None)
    }

    fn apply_retention(&mut self, keep_from: Offset) {
        while self.over_retention() && self.first < keep_from && self.drop_oldest().is_some() {}
    }

    fn held_bytes(&self) -> usize {
        self.bytes + self.messages.len() * MESSAGE_OVERHEAD_BYTES
    }

    fn last_used(&self) -> u64 {
        self.last_used.get()
    }

    fn release_memory(&mut self, bytes: usize, keep_from: Offset) {
        let goal = self.held_bytes().saturating_sub(bytes);
        let before = self.first;
        while self.held_bytes() > goal && self.first < keep_from && self.drop_oldest().is_some() {}
        if self.first > before {
            self.budget.note_dropped();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_count_from_zero() {
        let mut log = MemoryStore::new(None, 1 << 20).open("t").unwrap();
        assert_eq!((log.start(), log.end()), (0, 0));
        assert_eq!(log.append(Payload::from(&b"a"[..])).unwrap(), 0);
        assert_eq!(log.append(Payload::from(&b"b"[..])).unwrap(), 1);
        assert_eq!(log.read(1), Read::Message(Payload::from(&b"b"[..])));
        assert_eq!(log.read(2), Read::Nothing);
        assert_eq!(log.end(), 2);
    }

    #[test]
    fn retention_drops_the_oldest_and_keeps_offsets() {
        let mut store = MemoryStore::new(Some(10), 1 << 20);
        let mut log = store.open("t").unwrap();
        for i in 0..5u8 {
            log.append(Payload::from(vec![i; 4])).unwrap();
        }
        assert!(log.over_retention());
        // A reader at offset 2 protects it and everything after.
        log.apply_retention(2);
        assert_eq!((log.start(), log.end()), (2, 5));
        // Without readers: 20 bytes appended, 10 kept, the two newest.
        log.apply_retention(log.end());
        assert_eq!((log.start(), log.end()), (3, 5));
        assert!(!log.over_retention());
        assert_eq!(log.read(2), Read::Nothing);
        assert_eq!(log.read(3), Read::Message(Payload::from(vec![3u8; 4])));
        // A message larger than the limit goes too once nobody needs it.
        assert_eq!(log.append(Payload::from(vec![9; 50])).unwrap(), 5);
        log.apply_retention(log.end());
        assert_eq!((log.start(), log.end()), (6, 6));
    }

    #[test]
    fn the_budget_counts_every_log_and_release_spares_what_readers_need() {
        let mut store = MemoryStore::new(None, 1 << 20);
        let (mut a, mut b) = (store.open("a").unwrap(), store.open("b").unwrap());
        for i in 0..10u8 {
            a.append(Payload::from(vec![i; 100])).unwrap();
        }
        b.append(Payload::from(vec![0; 100])).unwrap();
        let each = 100 + MESSAGE_OVERHEAD_BYTES;
        assert_eq!(store.budget().used(), 11 * each);
        assert_eq!(a.held_bytes(), 10 * each);
        // `b` was used last; reading `a` makes it the more recent.
        assert!(a.last_used() < b.last_used());
        assert!(matches!(a.read(3), Read::Message(_)));
        assert!(a.last_used() >= b.last_used());

        // Asked for 3 messages' worth, but a reader needs offset 2 on.
        a.release_memory(3 * each, 2);
        assert_eq!((a.start(), store.budget().used()), (2, 9 * each));
        a.release_memory(3 * each, a.end());
        assert_eq!((a.start(), a.end()), (5, 10));
        assert_eq!(store.budget().used(), 6 * each);
    }
}
