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
//! Subscribers are just cursors into this log (see `session/`), so
//! replay from the beginning and live delivery are the same operation.
//!
//! [`MemoryStore`](memory::MemoryStore) keeps messages in RAM (`memory.rs`).
//! [`DiskStore`](disk::DiskStore) keeps them in segment files (`disk/`),
//! behind the same two traits, without the protocol or dispatcher code
//! changing.
//!
//! The files of this folder, from the bottom up (each uses only the ones
//! before it):
//!
//! - `error.rs`: [`StoreError`], and [`DiskFull`], the one the broker
//!   lives through.
//! - `settings.rs`: how the disk store treats every log ([`LogSettings`],
//!   [`Fsync`], [`OnDamage`]).
//! - `crc32c.rs`: the checksum of every record on disk.
//! - `record.rs`: the bytes of one record, and the checks every record
//!   read from disk goes through.
//! - `segment.rs`: one segment file: where its records lie (its sparse
//!   index, saved when it closes), and the reading of a run of them.
//! - this file: the two traits, what a read finds ([`Lookup`]), and what
//!   the fetcher hands back ([`Fetched`]).
//! - `fetcher.rs`: the thread that reads old records back.
//! - `memory.rs` and `disk/`: the two stores; `disk/mod.rs` lists its
//!   own files.

pub mod crc32c;
pub(crate) mod disk;
mod error;
pub(crate) mod fetcher;
pub(crate) mod memory;
pub(crate) mod record;
pub(crate) mod segment;
mod settings;

use std::io;
use std::sync::Arc;

use crate::budget::MemoryBudget;
use crate::ids::{Offset, Payload};
use segment::Run;

pub use error::{DiskFull, Lack, StoreError};
pub use settings::{Fsync, LogSettings, OnDamage};

/// The random bytes of a store's incarnation ([`Store::incarnation`]).
pub(crate) const INCARNATION_BYTES: usize = 8;

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

    /// The store's incarnation: a random id made when the store was
    /// created, and kept as long as its offsets are. The disk store keeps
    /// it in its data directory; the memory store makes a new one at each
    /// start, since its offsets start again from 0. `<topic>:<offset>`
    /// names a message only within one incarnation: `STATS` shows it, so
    /// that a copier such as brook-bridge can tell a message from an older
    /// one that had the same offset (docs/SCALING.md). Known once
    /// [`Store::recover`] has run.
    fn incarnation(&self) -> &str;
}

/// One topic's log.
pub trait TopicLog: Send {
    /// Appends a message and returns its offset. A log that finds the disk
    /// full ([`StoreError::Full`]) refuses the message, and takes back
    /// every message appended since its last successful write: their
    /// offsets, from [`TopicLog::end`] on, will be given again.
    ///
    /// `timestamp` is when it was appended, in ms since 1970
    /// ([`record::now_ms`]), which the disk store writes in its record.
    /// The dispatcher reads the clock once a round for every message the
    /// round appends: read once a message, it took a tenth of the
    /// broker's time in a 1 → 1 run on disk.
    fn append(&mut self, payload: Payload, timestamp: u64) -> Result<Offset, StoreError>;

    /// The message at `offset`, if the log holds it and has it at hand.
    fn read(&self, offset: Offset) -> Lookup;

    /// Takes a run of old records the fetcher thread read for a
    /// [`Lookup::Later`], so that reads of them find them.
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
    /// skipped ([`Lookup::Unreadable`]), since the broker started.
    fn unreadable_records(&self) -> u64 {
        0
    }

    /// How many bytes its segment files hold (counting records about to
    /// be written to them); 0 for a log kept in memory only.
    fn disk_bytes(&self) -> u64 {
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

/// What [`TopicLog::read`] found at an offset. (Not `Read`, which would
/// shadow `std::io::Read` in every file that reads a socket too.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
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
    /// ([`Command::Fetched`](crate::queue::Command)), and offers the
    /// topic again to whoever was reading it.
    Later,
}

/// A run of records read for a log: the sound records from offset `first`
/// on and the damage that cut them short, if any, or why the file could
/// not be read; and how much memory the payloads hold, as the budget
/// counts a message (`budget::cost`), for the dispatcher's queue to count
/// too.
#[derive(Debug)]
pub struct Fetched {
    pub topic: Arc<str>,
    pub first: Offset,
    pub run: io::Result<Run>,
    pub bytes: usize,
}

/// Work that makes a log's writes durable, such as an fsync. It runs on the
/// syncer thread, so the dispatcher goes on with its next round meanwhile.
pub type SyncJob = Box<dyn FnOnce() -> Result<(), StoreError> + Send>;
