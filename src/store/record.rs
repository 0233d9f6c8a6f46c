//! A record: one message as a segment file holds it, its bytes, and the
//! checks every record read from disk goes through. `segment.rs` knows
//! where records lie in a file; this file knows what one is.
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
//! The disk log encodes a record as it appends ([`Header::encode_record`]).
//! Every record read, at start-up ([`read_record`]) or for a reader
//! ([`examine`]), is checked: its length against `--max-message-bytes`
//! before anything is allocated for it, its checksum, and its offset,
//! which must be the one after the record before. A record that fails is
//! damage. Since a damaged length says nothing about where the next record
//! starts, the next sound record is found by trying every byte position
//! after the damage ([`find_next_record`]).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::time::{SystemTime, UNIX_EPOCH};

use byteorder::{BigEndian, ByteOrder};

use super::crc32c::Crc32c;
use crate::ids::Offset;

/// The bytes of a record before its payload.
pub const HEADER_BYTES: usize = 24;

/// How much of a segment one read takes when a subscriber reads messages
/// older than the cache, and the window the search for a sound record
/// after damage reads at a time.
pub const READ_AHEAD_BYTES: usize = 256 << 10;

/// The reason given for a record whose length field is above
/// `--max-message-bytes`: a damaged length, or a limit lowered since.
const TOO_LONG: &str = "a length above --max-message-bytes (if messages that large were \
                        stored, restart with a larger limit)";

/// A record header.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub offset: Offset,
    /// When the record was appended, ms since 1970 ([`now_ms`]).
    pub timestamp: u64,
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

/// What the bytes at the start of a chunk of a segment hold, for the
/// record expected at an offset.
pub enum Examined {
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
pub fn examine(bytes: &[u8], expected: Offset, max_payload: u64) -> Examined {
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
pub fn find_next_record(
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
pub fn read_up_to(file: &File, buffer: &mut [u8], position: u64) -> io::Result<usize> {
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

/// Reads one record into `payload` and checks it: the record of offset
/// `expected`. `left` is how many bytes the file has from here; a length
/// above that, or above `max_payload`, is damage, and nothing is
/// allocated for it.
pub fn read_record(
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

/// The time, in ms since 1970, as records carry it.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use std::fs;

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
