//! A segment: one file of a topic's log on disk, holding the records of a
//! run of offsets. This file knows the bytes; `disk.rs` knows which
//! segments a topic has and what to do with them.
//!
//! A record is a 24-byte header and the payload, all integers big-endian:
//!
//! ```text
//! u64 offset | u64 timestamp (ms since 1970) | u32 payload length | u32 CRC-32C | payload
//! ```
//!
//! The checksum covers the 20 header bytes before it and the payload, so
//! recovery can tell a whole record from one that a crash cut short.
//!
//! Every record read, at start-up or for a reader, is checked: its length
//! against `--max-message-bytes` before anything is allocated for it, its
//! checksum, and its offset, which must be the one after the record
//! before. A record that fails is damage. Since a damaged length says
//! nothing about where the next record starts, the next sound record is
//! found by trying every byte position after the damage
//! (`find_next_record`); the offsets between are the damage's cost
//! ([`Damage`]), and nothing else is lost.
//!
//! In memory a segment keeps a sparse index, the position of the first
//! record in every 4 KiB, so that reading an old offset costs one read of a
//! run of records. The index is built by scanning the file when the broker
//! starts, checking every record on the way ([`scan_segment`]); a closed
//! segment's is saved beside it (`<base>.index`), so that the next start
//! reads only its last run.
//!
//! A segment holds no open file: a broker with thousands of closed
//! segments would otherwise hold thousands of file descriptors, and run out
//! of them. Its file is opened while it is scanned, and by the fetcher
//! thread, which keeps a few of them open while it reads (`fetcher.rs`).

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use byteorder::{BigEndian, ByteOrder};

use super::crc32c::Crc32c;
use super::error::StoreError;
use super::settings::{Fsync, LogSettings, OnDamage};
use crate::ids::{Offset, Payload};

/// The bytes of a record before its payload.
pub const HEADER_BYTES: usize = 24;

/// The sparse index has an entry for the first record in every run of this
/// many bytes, so finding an old offset reads at most this much of headers.
const INDEX_EVERY_BYTES: u64 = 4 << 10;

/// How much of a segment one read takes when a subscriber reads messages
/// older than the cache.
const READ_AHEAD_BYTES: usize = 256 << 10;

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

/// The reason given for a record whose length field is above
/// `--max-message-bytes`: a damaged length, or a limit lowered since.
const TOO_LONG: &str = "a length above --max-message-bytes (if messages that large were \
                        stored, restart with a larger limit)";

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
    fn scan_rest(
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
    fn skip_damage(&mut self, damage: Damage, resume_at: u64) {
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
    /// checks it). Returns what the index says, or `None` (the segment is
    /// left untouched) if there is no such index.
    fn take_saved_index(&mut self, file_len: u64) -> Option<SavedIndex> {
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
        Some(saved)
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

/// What the bytes at the start of a chunk of a segment hold, for the
/// record expected at an offset.
enum Examined {
    /// That record, whole and sound, `len` bytes long with its header.
    Sound(usize),
    /// Not all of a record that needs this many bytes: the chunk ends
    /// first.
    Short(usize),
    /// Damage: not the record expected, or not a sound one.
    Damaged(&'static str),
}

/// Examines the record at the start of `bytes`, which should be the
/// record of offset `expected`. Its length is checked against
/// `max_payload` before anything else.
fn examine(bytes: &[u8], expected: Offset, max_payload: u64) -> Examined {
    let Some(header) = Header::parse_from(bytes) else {
        return Examined::Short(HEADER_BYTES);
    };
    if u64::from(header.len) > max_payload {
        return Examined::Damaged(TOO_LONG);
    }
    let len = HEADER_BYTES + header.len as usize;
    let Some(payload) = bytes.get(HEADER_BYTES..len) else {
        return Examined::Short(len);
    };
    match header.check(payload, expected) {
        Ok(()) => Examined::Sound(len),
        Err(reason) => Examined::Damaged(reason),
    }
}

/// Where the first sound record after damage at byte `damaged_at` starts,
/// and its offset: the first position after the damage that holds a whole
/// record with a good checksum, an offset after `after` (the one the
/// damage cost) and before `until`, and a length within `max_payload`.
/// It tries every byte position, since a damaged length field says
/// nothing reliable about where the next record starts, reading
/// `READ_AHEAD_BYTES` at a time (more, to hold a larger record whole).
/// It runs only where damage was found.
fn find_next_record(
    file: &File,
    damaged_at: u64,
    after: Offset,
    until: Offset,
    max_payload: u64,
) -> io::Result<Option<(u64, Offset)>> {
    let mut window = vec![0u8; READ_AHEAD_BYTES];
    let mut start = damaged_at + 1;
    'windows: loop {
        let filled = read_up_to(file, &mut window, start)?;
        let bytes = &window[..filled];
        let mut at = 0;
        while let Some(header) = Header::parse_from(&bytes[at..]) {
            let plausible = header.offset > after
                && header.offset < until
                && u64::from(header.len) <= max_payload;
            let len = HEADER_BYTES + header.len as usize;
            match bytes.get(at + HEADER_BYTES..at + len) {
                Some(payload) if plausible && header.checksum(payload) == header.crc => {
                    return Ok(Some((start + at as u64, header.offset)));
                }
                // Perhaps a record the window cuts short: read the window
                // again from it, larger if the record is larger.
                None if plausible && filled == window.len() => {
                    if at == 0 {
                        window.resize(len, 0);
                        continue 'windows;
                    }
                    break;
                }
                _ => at += 1,
            }
        }
        if at == 0 && filled < window.len() {
            return Ok(None); // the file ends
        }
        start += at as u64;
    }
}

/// Reads from `position` until `buffer` is full or the file ends; returns
/// how many bytes it read.
fn read_up_to(file: &File, buffer: &mut [u8], position: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read_at(&mut buffer[filled..], position + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// A record header.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    offset: Offset,
    timestamp: u64,
    len: u32,
    crc: u32,
}

impl Header {
    /// The header at the start of `bytes`, if they are that long.
    fn parse_from(bytes: &[u8]) -> Option<Header> {
        Some(Header::parse(bytes.get(..HEADER_BYTES)?.try_into().ok()?))
    }

    fn parse(bytes: &[u8; HEADER_BYTES]) -> Header {
        Header {
            offset: BigEndian::read_u64(&bytes[0..8]),
            timestamp: BigEndian::read_u64(&bytes[8..16]),
            len: BigEndian::read_u32(&bytes[16..20]),
            crc: BigEndian::read_u32(&bytes[20..24]),
        }
    }

    /// The first 20 bytes: everything the checksum covers besides the
    /// payload.
    fn fields(&self) -> [u8; 20] {
        let mut bytes = [0u8; 20];
        BigEndian::write_u64(&mut bytes[0..8], self.offset);
        BigEndian::write_u64(&mut bytes[8..16], self.timestamp);
        BigEndian::write_u32(&mut bytes[16..20], self.len);
        bytes
    }

    /// What is wrong with this record, with this `payload`, where the
    /// record of offset `expected` should be, if anything.
    fn check(&self, payload: &[u8], expected: Offset) -> Result<(), &'static str> {
        if self.checksum(payload) != self.crc {
            return Err("a bad checksum");
        }
        if self.offset != expected {
            return Err("a record out of order");
        }
        Ok(())
    }

    fn checksum(&self, payload: &[u8]) -> u32 {
        Crc32c::new()
            .update(&self.fields())
            .update(payload)
            .finish()
    }

    /// Appends the record, header and payload, to `out`.
    pub fn encode_record(offset: Offset, timestamp: u64, payload: &[u8], out: &mut Vec<u8>) {
        let mut header = Header {
            offset,
            timestamp,
            len: payload.len() as u32,
            crc: 0,
        };
        header.crc = header.checksum(payload);
        out.extend_from_slice(&header.fields());
        out.extend_from_slice(&header.crc.to_be_bytes());
        out.extend_from_slice(payload);
    }
}

/// Opens a segment file at start-up, checking it, and returns it with its
/// index built. It starts at offset `base`, and `next_base` is where the
/// next segment starts; `None` for the last one. With `--fsync batch`,
/// nothing from byte `unconfirmed_from` of the last segment on was
/// confirmed. A closed segment whose index file matches it is taken
/// from the index, and only the records of its last run are read: they
/// must end exactly where the file ends. Any other segment is read record
/// by record, checking each one, and, if closed and sound, gets its index
/// file for the next start.
///
/// Damage that nothing sound follows at the end of the last segment is a
/// torn end, which a crash leaves: it is cut off. Other damage is skipped
/// with `--on-damage skip` (the segment's `damaged` lists it, and the
/// scan goes on at the next sound record), and stops the start with
/// `--on-damage stop`, except a torn end of a closed segment under
/// `--fsync never`, which a power loss can leave: it is always skipped.
/// Damage in the last segment from `unconfirmed_from` on is a torn end,
/// whatever follows it.
pub fn scan_segment(
    topic: &str,
    path: PathBuf,
    (base, next_base): (Offset, Option<Offset>),
    unconfirmed_from: Option<u64>,
    settings: &LogSettings,
) -> Result<Segment, StoreError> {
    let max_payload = settings.max_message_bytes;
    let file = File::open(&path).map_err(StoreError::io(&path))?;
    let file_len = file.metadata().map_err(StoreError::io(&path))?.len();
    let mut segment = Segment::new(path, base);
    if next_base.is_some() {
        if let Some(indexed) = segment.take_saved_index(file_len) {
            let end = indexed.end;
            let damage = segment.scan_rest(file_len, max_payload)?;
            if damage.is_none() && segment.end == end {
                return Ok(segment);
            }
            log::warn!(
                "{}: does not match its index file; reading all of it",
                segment.path.display()
            );
            segment = Segment::new(segment.path, base);
        }
    }
    while let Some(reason) = segment.scan_rest(file_len, max_payload)? {
        let position = segment.len;
        let until = next_base.unwrap_or(Offset::MAX);
        let next = find_next_record(&file, position, segment.end, until, max_payload)
            .map_err(StoreError::io(&segment.path))?;
        // Damage to the end of a closed segment costs the offsets up to
        // the next one.
        let to_the_end = next_base.map(|next_base| (file_len, next_base));
        let Some((resume_at, resume_offset)) = next.or(to_the_end) else {
            return cut_torn_end(topic, segment, file_len, reason);
        };
        // Past what could have been confirmed, the rest is a torn end,
        // whatever follows the damage (see `disk.rs`, `Horizon`).
        if unconfirmed_from.is_some_and(|from| position >= from) {
            return cut_torn_end(topic, segment, file_len, reason);
        }
        // With --fsync never a segment is not forced when the log moves
        // on, so a power loss can tear the end of a closed one too.
        let torn_closed = next.is_none() && settings.fsync == Fsync::Never;
        if settings.on_damage == OnDamage::Stop && !torn_closed {
            return Err(StoreError::Corrupt {
                topic: topic.to_owned(),
                path: segment.path,
                position,
                reason,
            });
        }
        let damage = Damage {
            offsets: segment.end..resume_offset,
            path: segment.path.clone(),
            position,
            reason,
        };
        segment.skip_damage(damage, resume_at);
    }
    // A closed segment whose records end whole but before the next segment
    // starts lost its last records: with --fsync never, a power loss can
    // leave that. Their offsets are skipped like damage.
    if let Some(next_base) = next_base.filter(|&next_base| segment.end < next_base) {
        let reason = "the file ends before the next segment starts";
        if settings.on_damage == OnDamage::Stop && settings.fsync != Fsync::Never {
            return Err(StoreError::Corrupt {
                topic: topic.to_owned(),
                path: segment.path,
                position: file_len,
                reason,
            });
        }
        let damage = Damage {
            offsets: segment.end..next_base,
            path: segment.path.clone(),
            position: file_len,
            reason,
        };
        segment.skip_damage(damage, file_len);
    }
    if next_base.is_some() && segment.damaged.is_empty() {
        segment.save_index();
    }
    Ok(segment)
}

/// Cuts the torn end off the last segment at `segment.len`, where `reason`
/// was found, and says so.
fn cut_torn_end(
    topic: &str,
    segment: Segment,
    file_len: u64,
    reason: &str,
) -> Result<Segment, StoreError> {
    let position = segment.len;
    log::warn!(
        "topic {topic:?}: cut {} bytes of a torn end off {} ({reason} at byte {position}); \
         the log ends at offset {}",
        file_len - position,
        segment.path.display(),
        segment.end
    );
    let file = OpenOptions::new()
        .write(true)
        .open(&segment.path)
        .and_then(|file| file.set_len(position).and_then(|()| file.sync_all()));
    file.map_err(StoreError::io(&segment.path))?;
    Ok(segment)
}

/// Reads one record into `payload` and checks it: the record of offset
/// `expected`. `left` is how many bytes the file has from here; a length
/// above that, or above `max_payload`, is damage, and nothing is
/// allocated for it.
fn read_record(
    reader: &mut impl Read,
    left: u64,
    max_payload: u64,
    expected: Offset,
    payload: &mut Vec<u8>,
) -> Result<Header, &'static str> {
    let mut bytes = [0u8; HEADER_BYTES];
    if left < HEADER_BYTES as u64 || reader.read_exact(&mut bytes).is_err() {
        return Err("a header cut short");
    }
    let header = Header::parse(&bytes);
    if u64::from(header.len) > max_payload {
        return Err(TOO_LONG);
    }
    if u64::from(header.len) > left - HEADER_BYTES as u64 {
        return Err("a record longer than the file");
    }
    payload.resize(header.len as usize, 0);
    if reader.read_exact(payload).is_err() {
        return Err("a payload cut short");
    }
    header.check(payload, expected)?;
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record larger than one read window, after damage, is found: the
    /// window grows to hold it, rather than taking it for the end of the
    /// file (which would cut off every record after the damage).
    #[test]
    fn a_large_record_after_damage_is_found() {
        let path = std::env::temp_dir().join(format!("brook-segment-{}", std::process::id()));
        let mut bytes = vec![0xA5u8; 100];
        let payload = vec![7u8; READ_AHEAD_BYTES + (44 << 10)];
        Header::encode_record(5, 0, &payload, &mut bytes);
        fs::write(&path, &bytes).unwrap();
        let file = File::open(&path).unwrap();
        let found = find_next_record(&file, 0, 4, Offset::MAX, 1 << 20).unwrap();
        fs::remove_file(&path).unwrap();
        assert_eq!(found, Some((100, 5)));
    }
}
