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
//! In memory a segment keeps a sparse index, the position of the first
//! record in every 4 KiB, so that reading an old offset costs one read of a
//! run of records. The index is built by scanning the file when the broker
//! starts, checking every record on the way ([`scan_segment`]).
//!
//! A segment holds no open file: a broker with thousands of closed
//! segments would otherwise hold thousands of file descriptors, and run out
//! of them. Its file is opened while it is scanned, and by the fetcher
//! thread, which keeps a few of them open while it reads (`fetcher.rs`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use byteorder::{BigEndian, ByteOrder};

use crate::crc32c::Crc32c;
use crate::protocol::Payload;
use crate::store::{Offset, StoreError};

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
    /// [`INDEX_EVERY_BYTES`], in order.
    index: Vec<(Offset, u64)>,
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
    fn scan_rest(&mut self, file_len: u64) -> Result<Option<&'static str>, StoreError> {
        let mut file = File::open(&self.path).map_err(StoreError::io(&self.path))?;
        file.seek(SeekFrom::Start(self.len))
            .map_err(StoreError::io(&self.path))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut payload = Vec::new();
        while self.len < file_len {
            match read_record(&mut reader, file_len - self.len, &mut payload) {
                Ok(header) if header.offset == self.end => {
                    let record_len = (HEADER_BYTES + payload.len()) as u64;
                    self.add(header.offset, record_len, header.timestamp);
                }
                Ok(_) => return Ok(Some("a record out of order")),
                Err(reason) => return Ok(Some(reason)),
            }
        }
        Ok(None)
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
    /// into the file, and are left out.
    pub fn run_start(&self, offset: Offset, until: Offset) -> RunStart {
        let entry = self.index.partition_point(|&(o, _)| o <= offset);
        let position = match entry {
            0 => 0,
            n => self.index[n - 1].1,
        };
        RunStart {
            path: self.path.clone(),
            position,
            offset,
            until,
        }
    }
}

/// Where to read a run of records in a segment file, and which: all that
/// the fetcher thread needs to read it (see `fetcher.rs`).
#[derive(Debug)]
pub struct RunStart {
    path: PathBuf,
    /// Where in the file to start: at or before the record at `offset`.
    position: u64,
    offset: Offset,
    /// Records from this offset on may still be on their way into the
    /// file: they are not read (the log's cache has them).
    until: Offset,
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
    /// segment's file, as many as one read of [`READ_AHEAD_BYTES`] holds
    /// (a larger record is read whole), up to `until`, checking every
    /// checksum. A subscriber reading an old part of the log then costs one
    /// read per run of records, not one per record.
    pub fn read(&self, file: &File) -> io::Result<Vec<Payload>> {
        let mut position = self.position;
        let mut chunk = vec![0u8; READ_AHEAD_BYTES];
        loop {
            let filled = read_up_to(file, &mut chunk, position)?;
            let mut run = Vec::new();
            let mut at = 0;
            while let Some(header) = whole_record(&chunk[at..filled]) {
                if header.offset >= self.until {
                    break;
                }
                let payload = &chunk[at + HEADER_BYTES..at + HEADER_BYTES + header.len as usize];
                if header.offset >= self.offset {
                    if header.checksum(payload) != header.crc {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, "bad checksum"));
                    }
                    run.push(Payload::from(payload));
                }
                at += HEADER_BYTES + header.len as usize;
            }
            if !run.is_empty() {
                return Ok(run);
            }
            if at == 0 {
                // Not one whole record: either the next one is larger than
                // the chunk, which then grows to hold it, or the file ends.
                match record_len(&chunk[..filled]) {
                    Some(len) if filled == chunk.len() && len > filled => chunk.resize(len, 0),
                    _ => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "offset missing",
                        ))
                    }
                }
            }
            position += at as u64;
        }
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

/// The length, header included, of the record at the start of `bytes`, if
/// its header is there.
fn record_len(bytes: &[u8]) -> Option<usize> {
    let header = Header::parse(bytes.get(..HEADER_BYTES)?.try_into().ok()?);
    Some(HEADER_BYTES + header.len as usize)
}

/// The header of the record at the start of `bytes`, if all of the record
/// is there.
fn whole_record(bytes: &[u8]) -> Option<Header> {
    let header = Header::parse(bytes.get(..HEADER_BYTES)?.try_into().ok()?);
    (bytes.len() >= HEADER_BYTES + header.len as usize).then_some(header)
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
/// index built. A closed segment (any but the `last`) whose index file
/// matches it is taken from the index, and only the records of its last
/// run are read: they must end exactly where the file ends. Any other
/// segment is read record by record, checking each one, and, if closed,
/// gets its index file for the next start. A damaged end of the `last`
/// segment is cut off; any other damage is an error.
pub fn scan_segment(
    topic: &str,
    path: PathBuf,
    base: Offset,
    last: bool,
) -> Result<Segment, StoreError> {
    let file = File::open(&path).map_err(StoreError::io(&path))?;
    let file_len = file.metadata().map_err(StoreError::io(&path))?.len();
    let mut segment = Segment::new(path, base);
    if !last {
        if let Some(indexed) = segment.take_saved_index(file_len) {
            let end = indexed.end;
            let damage = segment.scan_rest(file_len)?;
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
    let Some(reason) = segment.scan_rest(file_len)? else {
        if !last {
            segment.save_index();
        }
        return Ok(segment);
    };
    let position = segment.len;
    if !last || whole_record_follows(&file, position, segment.end, file_len) {
        return Err(StoreError::Corrupt {
            topic: topic.to_owned(),
            path: segment.path,
            position,
            reason,
        });
    }
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

/// Reads one record into `payload` and checks it. `left` is how many bytes
/// the file has from here, so a damaged length can never make us allocate
/// more than the file holds.
fn read_record(
    reader: &mut impl Read,
    left: u64,
    payload: &mut Vec<u8>,
) -> Result<Header, &'static str> {
    let mut bytes = [0u8; HEADER_BYTES];
    if left < HEADER_BYTES as u64 || reader.read_exact(&mut bytes).is_err() {
        return Err("a header cut short");
    }
    let header = Header::parse(&bytes);
    if u64::from(header.len) > left - HEADER_BYTES as u64 {
        return Err("a record longer than the file");
    }
    payload.resize(header.len as usize, 0);
    if reader.read_exact(payload).is_err() {
        return Err("a payload cut short");
    }
    if header.checksum(payload) != header.crc {
        return Err("a bad checksum");
    }
    Ok(header)
}

/// Whether any whole record with a later offset than `offset` (the one
/// expected at the damage) lies beyond the damage at `position`: then the
/// damage is in the middle of the log, not at a torn end, whichever field
/// it hit. A crash tears only the end, so nothing whole can follow it. The
/// search tries every byte position, since a damaged length field says
/// nothing reliable about where the next record starts; it runs only when
/// recovery has found damage.
fn whole_record_follows(file: &File, position: u64, offset: Offset, file_len: u64) -> bool {
    let mut rest = vec![0u8; (file_len - position) as usize];
    if file.read_exact_at(&mut rest, position).is_err() {
        return false;
    }
    (1..rest.len()).any(|at| match whole_record(&rest[at..]) {
        Some(header) if header.offset > offset => {
            let payload = &rest[at + HEADER_BYTES..at + HEADER_BYTES + header.len as usize];
            header.checksum(payload) == header.crc
        }
        _ => false,
    })
}
