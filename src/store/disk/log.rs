//! One topic's log on disk ([`DiskLog`]): appends, writes, reads, and
//! retention.
//!
//! # Writing and reading
//!
//! The dispatcher thread owns every log, as it does in memory. An append
//! encodes the record (`record.rs`) into a buffer and keeps the payload in
//! the cache of the newest messages (`cache.rs`); [`TopicLog::write`], at
//! the end of the dispatcher's round (or sooner: once 1 MiB waits, when a
//! segment fills, or when a `PULL` or `SUB` must see what was just
//! published), writes the buffer to the active segment file and, with
//! `--fsync batch`, returns the job that forces it to disk, which the
//! syncer thread runs (`syncer.rs`). With `--fsync always` each append
//! forces its record at once, and counts the time it took in the fsync
//! times the syncer counts its jobs in ([`FsyncTimes`]).
//!
//! ```text
//!   append ──▶ buffer (encoded records) ──write──▶ active segment file ──job──▶ fsync
//!          └─▶ cache (newest payloads) ──▶ read ◀── read-ahead run ◀── fetcher ◀── older segments
//! ```
//!
//! Subscribers that keep up read from the cache of the newest payloads.
//! Messages no longer cached are read from their segment by the fetcher
//! thread (`fetcher.rs`), a run of 256 KiB at a time, found through the
//! segment's sparse index (`segment.rs`): the dispatcher never waits for
//! the disk to read. The cache, the last run read back and the write
//! buffer count against one budget, `--cache-bytes`, shared by every topic
//! (`cache.rs`).
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
//! refuses their publishers (`dispatcher/publish.rs`). The log then refuses
//! appends for a second ([`FULL_RETRY_AFTER`]) without touching the disk,
//! and lets the first one after that try it again. A new segment file, a
//! groups file or an index that does not fit is logged and tried again
//! later, and the broker goes on. A failed fsync is different: the
//! operating system may have dropped the pages it could not write, and a
//! later fsync would not say so. The broker stops ([`StoreError::Sync`]),
//! as PostgreSQL does; recovery then keeps every whole record the disk
//! holds.
//!
//! # Retention
//!
//! Retention deletes whole segments, oldest first, never the active one,
//! once the log holds more bytes than `--retention-bytes` or its oldest
//! segment's newest record is older than `--retention-age`; but none that
//! holds an offset a connected reader has yet to read.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::cache::Cache;
use super::files::{create_segment_file, force_file, open_for_append, sync_directory};
use super::groups::{Groups, GROUPS_FILE};
use super::horizon::Horizon;
use super::recovery::recover_segments;
use super::unreadable::Unreadable;
use crate::budget::MemoryBudget;
use crate::ids::{Offset, Payload};
use crate::stats::FsyncTimes;
use crate::store::fetcher::{FetchRequest, Fetcher};
use crate::store::record::{Header, HEADER_BYTES};
use crate::store::segment::{segment_file_name, Segment};
use crate::store::{
    DiskFull, Fetched, Fsync, GroupPosition, LogSettings, Lookup, StoreError, SyncJob, TopicLog,
};

/// Encoded records are written to the file once this many are waiting,
/// even before the end of the round.
const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// How long a log that found the disk full refuses appends before it tries
/// the disk again: often enough to notice soon that room was made, seldom
/// enough that a full disk costs no more than one failed write a second.
pub(crate) const FULL_RETRY_AFTER: Duration = Duration::from_secs(1);

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
    /// round; the cache counts that capacity against the budget.
    buffer: Vec<u8>,
    /// Whether `writer` has been written to since it was last forced to
    /// disk.
    unsynced: bool,
    /// With `--fsync never`: the files written to and never forced to disk
    /// (segments, the groups file), which a clean stop forces.
    unforced: BTreeSet<PathBuf>,
    /// The offset the next message gets.
    next: Offset,
    /// Records below this offset are in the file; the others are still in
    /// `buffer`.
    written: Offset,
    /// The newest payloads, the last run read back, and their count
    /// against `--cache-bytes`.
    cache: Cache,
    /// Where each consumer group of the topic is.
    groups: Groups,
    /// Reads older records (`fetcher.rs`); `fetching` is set while it reads
    /// a run for this log. `read` takes `&self` (the dispatcher lends logs
    /// out shared), and only the dispatcher thread touches a log, so a
    /// `Cell` is enough.
    fetcher: Fetcher,
    fetching: Cell<bool>,
    /// Where the fsyncs this log makes itself (`--fsync always`) are
    /// counted, with the syncer's, for the metrics.
    fsync_times: Arc<FsyncTimes>,
    /// The offsets whose records are damaged: found at start-up, or by the
    /// fetcher.
    unreadable: Unreadable,
    /// Set while the disk is full: appends are refused until `retry_at`.
    refusing: Option<Refusing>,
    /// With `--fsync batch` and `--on-damage stop`, the horizon the
    /// horizon file holds, which the sync jobs move on; `None` if there is
    /// no such file.
    horizon: Arc<Mutex<Option<Horizon>>>,
}

/// A log that found the disk full: why, and when it may try again.
#[derive(Debug)]
struct Refusing {
    cause: Arc<DiskFull>,
    retry_at: Instant,
}

impl Refusing {
    /// The state of a log that just found the disk full, for `cause`.
    fn for_a_while(cause: Arc<DiskFull>) -> Refusing {
        let retry_at = Instant::now() + FULL_RETRY_AFTER;
        Refusing { cause, retry_at }
    }
}

impl DiskLog {
    /// Opens the log of `topic` in `dir`, checking its files and cutting a
    /// torn end off the last segment (`recovery.rs`). An empty directory
    /// is a new, empty log.
    pub fn open(
        topic: &str,
        dir: PathBuf,
        settings: LogSettings,
        fetcher: Fetcher,
        budget: Arc<MemoryBudget>,
        fsync_times: Arc<FsyncTimes>,
    ) -> Result<DiskLog, StoreError> {
        let recovered = recover_segments(topic, &dir, &settings)?;
        let segments = recovered.segments;
        let active = segments.last().map_or(0, |s| s.end);
        let writer = Arc::new(open_for_append(&segments[segments.len() - 1].path)?);
        let groups = Groups::recover(topic, &dir, active)?;
        let mut log = DiskLog {
            topic: Arc::from(topic),
            dir,
            settings,
            segments,
            writer,
            buffer: Vec::new(),
            unsynced: false,
            unforced: BTreeSet::new(),
            next: active,
            written: active,
            cache: Cache::new(budget),
            groups,
            fetcher,
            fetching: Cell::new(false),
            fsync_times,
            unreadable: Unreadable::default(),
            refusing: None,
            horizon: Arc::new(Mutex::new(recovered.horizon)),
        };
        for damage in recovered.damaged {
            log.unreadable
                .note(&log.topic, damage.offsets.clone(), &damage);
        }
        Ok(log)
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
            self.refusing = Some(Refusing::for_a_while(cause));
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
        for _ in written..self.next {
            self.cache.drop_newest();
        }
        self.next = written;
        Ok(())
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
                self.refusing = Some(Refusing::for_a_while(cause));
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
                Fsync::Never => {
                    self.unforced.insert(path);
                }
                _ => {
                    let started = Instant::now();
                    self.writer.sync_data().map_err(StoreError::sync(path))?;
                    self.fsync_times.record(started.elapsed());
                }
            }
        }
        self.unsynced = false;
        Ok(())
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
}

impl TopicLog for DiskLog {
    fn append(&mut self, payload: Payload, timestamp: u64) -> Result<Offset, StoreError> {
        self.check_room()?;
        let offset = self.next;
        Header::encode_record(offset, timestamp, &payload, &mut self.buffer);
        self.cache.count_buffer(self.buffer.capacity());
        let record_len = (HEADER_BYTES + payload.len()) as u64;
        self.active().add(offset, record_len, timestamp);
        self.next += 1;
        self.cache.push(payload);
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
        if self.unreadable.contains(offset) {
            return Lookup::Unreadable;
        }
        if offset >= self.cache.first(self.next) {
            return match self.cache.newest(offset, self.next) {
                Some(payload) => Lookup::Message(payload),
                None => Lookup::Nothing,
            };
        }
        if let Some(payload) = self.cache.read_ahead(offset) {
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
                self.cache.keep_read_ahead(fetched.first, run.payloads);
                if let Some(damage) = run.damage {
                    self.unreadable
                        .note(&self.topic, damage.offsets.clone(), &damage);
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
                self.unreadable.note(&self.topic, offset..offset + 1, why);
            }
        }
    }

    fn unreadable_records(&self) -> u64 {
        self.unreadable.count()
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
            .is_some_and(|limit| self.disk_bytes() > limit);
        // The oldest segment, never the active one, ages out whole.
        let oldest_expired = match (self.settings.retention_age, self.segments.first()) {
            (Some(age), Some(oldest)) if self.segments.len() > 1 => oldest.older_than(age),
            _ => false,
        };
        over_size || oldest_expired
    }

    /// Deletes whole segments, oldest first, never the active one, and
    /// none that holds an offset at or after `keep_from`.
    fn apply_retention(&mut self, keep_from: Offset) {
        while self.over_retention() && self.segments.len() > 1 && self.segments[0].end <= keep_from
        {
            let oldest = self.segments.remove(0);
            self.unforced.remove(&oldest.path);
            if let Err(error) = oldest.delete() {
                log::error!("cannot delete {}: {error}", oldest.path.display());
            }
            while self.cache.first(self.next) < oldest.end && self.cache.drop_oldest().is_some() {}
        }
        self.unreadable.forget_before(self.start());
    }

    fn held_bytes(&self) -> usize {
        self.cache.held()
    }

    fn last_used(&self) -> u64 {
        self.cache.last_used()
    }

    /// Every payload held is in a segment file, or will be once the
    /// buffer is written, so none is needed in memory: the empty buffer's
    /// capacity goes first, then the read-ahead run (its records are older
    /// than the cache's), then the cache's oldest payloads, but none still
    /// only in the buffer.
    fn release_memory(&mut self, bytes: usize, _keep_from: Offset) {
        let goal = self.cache.held().saturating_sub(bytes);
        if self.cache.held() > goal && self.buffer.is_empty() {
            self.buffer = Vec::new();
            self.cache.count_buffer(0);
        }
        if self.cache.held() > goal {
            self.cache.drop_read_ahead();
        }
        while self.cache.held() > goal && self.cache.first(self.next) < self.written {
            if self.cache.drop_oldest().is_none() {
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

    /// Saves the consumer groups' positions, if they moved (`groups.rs`).
    fn save_groups(&mut self) -> Option<SyncJob> {
        let fsync = self.settings.fsync;
        let job = self.groups.save(&self.topic, &self.dir, fsync)?;
        if fsync == Fsync::Never {
            self.unforced.insert(self.dir.join(GROUPS_FILE));
        }
        Some(job)
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
        self.groups.positions()
    }

    fn set_group_position(&mut self, name: &str, position: GroupPosition) {
        self.groups.set(name, position);
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::budget::cost;
    use crate::store::disk::test_support::{
        message, open_store, read_now, settings, write_durably, TempDir,
    };
    use crate::store::record::now_ms;
    use crate::store::Store;

    #[test]
    fn with_fsync_never_a_clean_stop_still_forces_what_was_written() {
        let temp = TempDir::new("force-at-stop");
        let (mut store, _fetched) = open_store(&temp, settings(64, None));
        store.recover().unwrap();
        let mut log = store.open("t").unwrap();
        assert!(log.write_and_force().unwrap().is_none(), "nothing written");
        for i in 0..4u8 {
            log.append(Payload::from(vec![i; 40]), now_ms()).unwrap(); // a segment each
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
            log.append(message(i), now_ms()).unwrap();
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
    fn retention_deletes_whole_segments_no_reader_needs() {
        let temp = TempDir::new("retention");
        let (mut store, fetched) = open_store(&temp, settings(4 << 10, Some(16 << 10)));
        let mut log = store.open("t").unwrap();
        for i in 0..1000 {
            log.append(message(i), now_ms()).unwrap();
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
        assert_eq!(log.append(message(1000), now_ms()).unwrap(), 1000);
    }
}
