//! The horizon file: how far a topic's log has confirmed, kept with
//! `--fsync batch` and `--on-damage stop` only
//! ([`LogSettings::keeps_horizon`](crate::store::LogSettings::keeps_horizon)).
//!
//! With `--fsync batch`, the writes of rounds whose fsync had not run yet
//! may reach the disk out of order when the power fails: one round's
//! records lost, the next round's whole. None of that was confirmed, but
//! it looks like damage with whole records after it. `--on-damage skip`
//! (the default) treats it so: the lost offsets are skipped and the whole
//! records after them kept, which loses nothing confirmed. For
//! `--on-damage stop`, which would refuse to start, each sync job also
//! forces the point it forced the segment to into the `horizon` file
//! ([`Horizon::cover`], from the job `log.rs` builds), before anything up
//! to there is confirmed; at the next start, damage in the last segment
//! past the horizon is a torn end (`recovery.rs`), cut off with whatever
//! follows it.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use byteorder::{BigEndian, ByteOrder};
use parking_lot::Mutex;

use super::files::sync_directory;
use crate::ids::Offset;
use crate::store::crc32c::Crc32c;
use crate::store::StoreError;

/// The file in a topic's directory that holds its [`Horizon`].
pub const HORIZON_FILE: &str = "horizon";

/// With `--fsync batch`: a point of the log, byte `position` of the
/// segment whose first offset is `base`, from which on nothing was
/// confirmed. Each sync job forces the point it forced the segment to
/// into the horizon file, before anything past the old one is confirmed.
/// The writes of rounds not yet confirmed may reach the disk out of order
/// when the power fails, which leaves damage with whole records after it;
/// past the horizon, that is a torn end, and recovery cuts it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Horizon {
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
    pub fn read(dir: &Path) -> Option<Horizon> {
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
    pub fn unconfirmed_from(&self, base: Offset) -> u64 {
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
    pub fn cover(
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
    pub fn forget(dir: &Path) -> Result<(), StoreError> {
        let path = dir.join(HORIZON_FILE);
        match fs::remove_file(&path) {
            Ok(()) => sync_directory(dir),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(StoreError::Io { path, error }),
        }
    }
}
