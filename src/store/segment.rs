//! A segment: one file of a topic's log on disk, holding the records of a
//! run of offsets (`record.rs` has a record's bytes). This file knows
//! where the records lie in one file, and how to read a run of them back;
//! `disk/` knows which segments a topic has and what to do with them.
//!
//! In memory a segment keeps a sparse index, the position of the first
//! record in every 4 KiB, so that reading an old offset costs one read of a
//! run of records ([`RunStart`], which the fetcher thread reads into a
//! [`Run`]). The index is built by scanning the file when the broker
//! starts, checking every record on the way (`disk/recovery.rs`); a closed
//! segment's is saved beside it (`<base>.index`, a `SavedIndex`), so that
//! the next start reads only its last run.
//!
//! Damage found in a segment, at start-up or by a read, is a [`Damage`]:
//! the bytes that hold no sound record, and the offsets they cost. Nothing
//! else is lost: the scan and the reads go on at the next sound record.
//!
//! A segment holds no open file: a broker with thousands of closed
//! segments would otherwise hold thousands of file descriptors, and run out
//! of them. Its file is opened while it is scanned, and by the fetcher
//! thread, which keeps a few of them open while it reads (`fetcher.rs`).

use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufReader, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use byteorder::{BigEndian, ByteOrder};

use super::crc32c::Crc32c;
use super::error::StoreError;
use super::record::{
    examine, find_next_record, now_ms, read_record, read_up_to, Examined, HEADER_BYTES,
    READ_AHEAD_BYTES,
};
use crate::ids::{Offset, Payload};

/// The sparse index has an entry for the first record in every run of this
/// many bytes, so finding an old offset reads at most this much of headers.
const INDEX_EVERY_BYTES: u64 = 4 << 10;

/// The file name of the segment whose first offset is `base`.
pub fn segment_file_name(base: Offset) -> String {
    format!("{base:020}.log")
}

/// One segment file.
#[derive(Debug)]
pub struct Segment {
    /// The offset of its first record.
    pub base: Offset,
    /// One past the offset of its last record.
    pub end: Offset,
    pub path: PathBuf,
    /// Its length in bytes, counting records not yet written to it.
    pub len: u64,
    /// The timestamp of its newest record, ms since 1970: age retention
    /// deletes the segment once this is old enough.
    pub newest: u64,
    /// `(offset, position)` of the first record in every run of
    /// [`INDEX_EVERY_BYTES`], in order, and of the first sound record
    /// after each damaged stretch.
    index: Vec<(Offset, u64)>,
    /// The damage the start-up scan found and stepped over
    /// (`--on-damage skip`), for the log to take.
    pub damaged: Vec<Damage>,
}

/// Damaged bytes in a segment file, and the offsets whose records they
/// held: a stretch of the file that holds no sound record, from the byte
/// where the record expected at `offsets.start` should have been to the
/// next sound record (offset `offsets.end`), or to the end of the segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub offsets: Range<Offset>,
    pub path: PathBuf,
    pub position: u64,
    pub reason: &'static str,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Range { start, end } = self.offsets;
        match end - start {
            1 => write!(f, "offset {start}")?,
            _ => write!(f, "offsets {start} to {}", end - 1)?,
        }
        write!(
            f,
            " cannot be read: {} at byte {} of {}",
            self.reason,
            self.position,
            self.path.display()
        )
    }
}

impl Segment {
    /// The segment in the file at `path`, which starts at offset `base`,
    /// with no record known yet.
    pub fn new(path: PathBuf, base: Offset) -> Segment {
        Segment {
            base,
            end: base,
            path,
            len: 0,
            newest: 0,
            index: Vec::new(),
            damaged: Vec::new(),
        }
    }

    /// Notes a record of `record_len` bytes, written at `timestamp`, at the
    /// end of the segment.
    pub fn add(&mut self, offset: Offset, record_len: u64, timestamp: u64) {
        self.newest = self.newest.max(timestamp);
        let starts_a_run = self
            .index
            .last()
            .is_none_or(|&(_, at)| self.len - at >= INDEX_EVERY_BYTES);
        if starts_a_run {
            self.index.push((offset, self.len));
        }
        self.len += record_len;
        self.end = offset + 1;
    }

    /// Forgets the records from offset `end` on, which start at byte
    /// `len`: records taken back after a write that did not fit on the
    /// disk. (`newest` keeps their timestamp: it only ever makes age
    /// retention wait a little longer for this segment.)
    pub fn truncate(&mut self, end: Offset, len: u64) {
        let kept = self.index.partition_point(|&(offset, _)| offset < end);
        self.index.truncate(kept);
        self.end = end;
        self.len = len;
    }

    /// Reads the records from where the segment's known records end
    /// (`len`) to `file_len`, checking each one and adding it. Stops at the
    /// first damaged record and says what is wrong with it.
    pub fn scan_rest(
        &mut self,
        file_len: u64,
        max_payload: u64,
    ) -> Result<Option<&'static str>, StoreError> {
        let mut file = File::open(&self.path).map_err(StoreError::io(&self.path))?;
        file.seek(SeekFrom::Start(self.len))
            .map_err(StoreError::io(&self.path))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut payload = Vec::new();
        while self.len < file_len {
            let left = file_len - self.len;
            match read_record(&mut reader, left, max_payload, self.end, &mut payload) {
                Ok(header) => {
                    let record_len = (HEADER_BYTES + payload.len()) as u64;
                    self.add(header.offset, record_len, header.timestamp);
                }
                Err(reason) => return Ok(Some(reason)),
            }
        }
        Ok(None)
    }

    /// Steps over damage the start-up scan found: its offsets are not in
    /// the segment, and the scan goes on at `resume_at`, the next sound
    /// record (offset `damage.offsets.end`), which starts an index run so
    /// that reads never start before the damage to reach it.
    pub fn skip_damage(&mut self, damage: Damage, resume_at: u64) {
        self.end = damage.offsets.end;
        self.len = resume_at;
        self.index.push((self.end, resume_at));
        self.damaged.push(damage);
    }

    /// Writes the index of this segment, now closed for good, to its index
    /// file, so that the next start need not read every record. Written
    /// to a scratch file and renamed, and never forced to disk: an index
    /// that a crash lost or garbled does not match, and the segment is
    /// read instead. So a failure here is only logged.
    pub fn save_index(&self) {
        let path = self.path.with_extension(INDEX_EXTENSION);
        let scratch = self.path.with_extension(INDEX_SCRATCH_EXTENSION);
        let mut bytes = Vec::with_capacity(48 + self.index.len() * 16);
        for field in [self.base, self.end, self.len, self.newest] {
            bytes.extend_from_slice(&field.to_be_bytes());
        }
        bytes.extend_from_slice(&(self.index.len() as u64).to_be_bytes());
        for &(offset, position) in &self.index {
            bytes.extend_from_slice(&offset.to_be_bytes());
            bytes.extend_from_slice(&position.to_be_bytes());
        }
        let crc = Crc32c::new().update(&bytes).finish();
        bytes.extend_from_slice(&crc.to_be_bytes());
        let saved = fs::write(&scratch, &bytes).and_then(|()| fs::rename(&scratch, &path));
        if let Err(error) = saved {
            // A full disk, say: the segment is read at the next start.
            let _ = fs::remove_file(&scratch);
            log::warn!("cannot save the index {}: {error}", path.display());
        }
    }

    /// Takes the segment's shape from its index file, if it has one that
    /// is whole and matches a file of `file_len` bytes: every index entry
    /// but the last, so that a scan of the last run rebuilds the rest (and
    /// checks it). Returns the end offset the index says the segment has,
    /// which that scan must reach, or `None` (the segment is left
    /// untouched) if there is no such index.
    pub fn take_saved_index(&mut self, file_len: u64) -> Option<Offset> {
        let bytes = fs::read(self.path.with_extension(INDEX_EXTENSION)).ok()?;
        let saved = SavedIndex::parse(&bytes)?;
        let &(last_run, last_position) = saved.entries.last()?;
        let shape_matches = saved.base == self.base
            && saved.len == file_len
            && saved.entries[0] == (self.base, 0)
            && saved
                .entries
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1)
            && last_run < saved.end
            && last_position < file_len;
        if !shape_matches {
            return None;
        }
        self.index = saved.entries[..saved.entries.len() - 1].to_vec();
        self.end = last_run;
        self.len = last_position;
        self.newest = saved.newest;
        Some(saved.end)
    }

    /// Whether every record in the segment is older than `age`, by its
    /// newest record's timestamp: age retention may delete it.
    pub fn older_than(&self, age: Duration) -> bool {
        self.newest.saturating_add(age.as_millis() as u64) < now_ms()
    }

    /// Deletes the segment file, and its index file first: a crash in
    /// between leaves a segment that is read in full at the next start,
    /// never an index without its segment.
    pub fn delete(&self) -> io::Result<()> {
        match fs::remove_file(self.path.with_extension(INDEX_EXTENSION)) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        fs::remove_file(&self.path)
    }

    /// Where the run of records that starts at `offset` begins, for a
    /// fetcher to read. Records from `until` on may still be on their way
    /// into the file, and are left out. A record with a payload above
    /// `max_payload` bytes is damage.
    pub fn run_start(&self, offset: Offset, until: Offset, max_payload: u64) -> RunStart {
        let entry = self.index.partition_point(|&(o, _)| o <= offset);
        let from = match entry {
            0 => (self.base, 0),
            n => self.index[n - 1],
        };
        RunStart {
            path: self.path.clone(),
            from,
            offset,
            until: until.min(self.end),
            max_payload,
        }
    }
}

/// Where to read a run of records in a segment file, and which: all that
/// the fetcher thread needs to read it (see `fetcher.rs`).
#[derive(Debug)]
pub struct RunStart {
    path: PathBuf,
    /// Where in the file to start, `(offset, position)`: the record there
    /// and every one after it is checked, up to the record at `offset`.
    from: (Offset, u64),
    offset: Offset,
    /// Where the run must end: the segment's end, or the first record
    /// that may still be on its way into the file (the log's cache has
    /// those).
    until: Offset,
    max_payload: u64,
}

/// What a read of a run found: the sound records from the offset asked
/// for, in order, and the damage that cut the run short, if any. The
/// damage's offsets follow the last payload (or hold the offset asked for,
/// if there is none).
#[derive(Debug)]
pub struct Run {
    pub payloads: Vec<Payload>,
    pub damage: Option<Damage>,
}

impl RunStart {
    /// The first offset of the run.
    pub fn offset(&self) -> Offset {
        self.offset
    }

    /// The segment file the run is in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the record at `offset` and those after it from `file`, the
    /// segment's file, as many as one read of `READ_AHEAD_BYTES` holds
    /// (a larger record is read whole), up to `until`. A subscriber reading an old part of the
    /// log then costs one read per run of records, not one per record.
    ///
    /// Every record from the start of the index run on is checked, those
    /// before `offset` too: its checksum, its length against
    /// `--max-message-bytes` before anything is allocated for it, and its
    /// offset, which must follow the one before. Damage before `offset`
    /// is stepped over to the next sound record; damage after it ends the
    /// run, which returns the sound records before it and the damage.
    pub fn read(&self, file: &File) -> io::Result<Run> {
        let (mut expected, mut position) = self.from;
        let mut chunk = vec![0u8; READ_AHEAD_BYTES];
        let mut payloads = Vec::new();
        'chunks: loop {
            let filled = read_up_to(file, &mut chunk, position)?;
            let mut at = 0;
            while expected < self.until {
                let len = match examine(&chunk[at..filled], expected, self.max_payload) {
                    Examined::Sound(len) => len,
                    Examined::Short(len) if at == 0 && filled == chunk.len() => {
                        chunk.resize(len, 0); // a record larger than the chunk
                        continue 'chunks;
                    }
                    Examined::Short(_) if at == 0 => {
                        let reason = "the file ends before it";
                        let damage = self.damage(expected..self.until, position, reason);
                        return Ok(Run { payloads, damage });
                    }
                    Examined::Short(_) => break,
                    Examined::Damaged(reason) => {
                        let damaged_at = position + at as u64;
                        let next = find_next_record(
                            file,
                            damaged_at,
                            expected,
                            self.until,
                            self.max_payload,
                        )?;
                        match next {
                            Some((resume_at, next)) if next <= self.offset => {
                                // Only offsets before the one asked for.
                                (expected, position) = (next, resume_at);
                                continue 'chunks;
                            }
                            next => {
                                let end = next.map_or(self.until, |(_, offset)| offset);
                                let damage = self.damage(expected..end, damaged_at, reason);
                                return Ok(Run { payloads, damage });
                            }
                        }
                    }
                };
                if expected >= self.offset {
                    payloads.push(Payload::from(&chunk[at + HEADER_BYTES..at + len]));
                }
                at += len;
                expected += 1;
            }
            if !payloads.is_empty() || expected >= self.until {
                return Ok(Run {
                    payloads,
                    damage: None,
                });
            }
            position += at as u64;
        }
    }

    fn damage(
        &self,
        offsets: Range<Offset>,
        position: u64,
        reason: &'static str,
    ) -> Option<Damage> {
        Some(Damage {
            offsets,
            path: self.path.clone(),
            position,
            reason,
        })
    }
}

/// A closed segment's index file, `<base>.index` next to it: its base and
/// end offsets, its length in bytes and the timestamp of its newest record,
/// the number of index entries, the entries (`offset`, `position`), all
/// `u64` big-endian, then a CRC-32C of all of that.
#[derive(Debug)]
struct SavedIndex {
    base: Offset,
    end: Offset,
    len: u64,
    newest: u64,
    entries: Vec<(Offset, u64)>,
}

/// The extension of index files, and of the scratch files they are
/// written to before they are renamed into place.
const INDEX_EXTENSION: &str = "index";
const INDEX_SCRATCH_EXTENSION: &str = "index.new";

impl SavedIndex {
    /// The index in `bytes`, if they hold a whole one.
    fn parse(bytes: &[u8]) -> Option<SavedIndex> {
        let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
        if Crc32c::new().update(body).finish() != BigEndian::read_u32(crc) {
            return None;
        }
        let mut words = body.chunks_exact(8).map(BigEndian::read_u64);
        let [base, end, len, newest, count] = std::array::from_fn(|_| words.next());
        let count = usize::try_from(count?).ok()?;
        if body.len() != 8 * (5 + 2 * count) {
            return None;
        }
        let mut entries = Vec::with_capacity(count);
        while let (Some(offset), Some(position)) = (words.next(), words.next()) {
            entries.push((offset, position));
        }
        Some(SavedIndex {
            base: base?,
            end: end?,
            len: len?,
            newest: newest?,
            entries,
        })
    }
}
