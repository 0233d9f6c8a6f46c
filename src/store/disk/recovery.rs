//! Opening a topic's segment files when the broker starts: every record
//! checked, a torn end cut off, damage stepped over or refused.
//!
//! At start-up the last segment of every topic is read and every record's
//! checksum, length and offset checked (`record.rs`). A damaged end (a
//! record cut short by a crash, or bytes that never reached the disk) is
//! cut back to the last whole record, with a warning that says how much
//! was dropped. Damage followed by whole records is not a torn end. With
//! `--on-damage skip` (the default) the scan steps over it to the next
//! sound record, and the offsets it cost are remembered as unreadable
//! (`unreadable.rs`: logged once each, with the file and the byte, and
//! counted in `STATS`); with `--on-damage stop` the broker refuses to
//! start. With `--fsync batch` and `--on-damage stop`, damage past the
//! horizon (`horizon.rs`) is a torn end, whatever follows it.
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
//! A power loss under `--fsync never` can leave more than a torn end of
//! the last segment, since nothing is forced: a torn end of a closed
//! segment, which is skipped, whatever `--on-damage` says. (What it does
//! to the groups file is `groups.rs`'s to mend.)
//!
//! ```text
//!   topic directory ──▶ recover_segments ──▶ scan_segment, for each .log file
//!                                                 │ its index file, or every record
//!                                                 ▼
//!   DiskLog::open (log.rs) ◀── Recovered: the segments, their damage, the horizon
//! ```

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use super::files::{create_segment_file, segment_paths};
use super::horizon::Horizon;
use crate::ids::Offset;
use crate::store::record::find_next_record;
use crate::store::segment::{segment_file_name, Damage, Segment};
use crate::store::{Fsync, LogSettings, OnDamage, StoreError};

/// A topic's segments as a start found them.
#[derive(Debug)]
pub struct Recovered {
    /// Oldest first, at least one: the last is the active segment.
    pub segments: Vec<Segment>,
    /// The damage the scan stepped over (`--on-damage skip`), whose
    /// offsets readers skip.
    pub damaged: Vec<Damage>,
    /// With `--fsync batch` and `--on-damage stop`, the saved horizon.
    pub horizon: Option<Horizon>,
}

/// Opens the segments of `topic` in `dir`, checking them, and cutting a
/// torn end off the last one. An empty directory gets its first segment,
/// empty. A log that keeps no horizon removes a horizon file left by a
/// start with other settings: it would no longer be kept up to date.
pub fn recover_segments(
    topic: &str,
    dir: &Path,
    settings: &LogSettings,
) -> Result<Recovered, StoreError> {
    let mut segments: Vec<Segment> = Vec::new();
    let paths = segment_paths(dir)?;
    let horizon = if settings.keeps_horizon() {
        Horizon::read(dir)
    } else {
        Horizon::forget(dir)?;
        None
    };
    let next_bases: Vec<Option<Offset>> = paths.iter().skip(1).map(|p| Some(p.0)).collect();
    let next_bases = next_bases.into_iter().chain([None]);
    for ((base, path), next_base) in paths.into_iter().zip(next_bases) {
        let unconfirmed_from = horizon
            .filter(|_| next_base.is_none())
            .map(|horizon| horizon.unconfirmed_from(base));
        let segment = scan_segment(topic, path, (base, next_base), unconfirmed_from, settings)?;
        if let Some(previous) = segments.last().map(|s| s.end) {
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
        create_segment_file(&path, dir, settings.fsync)?;
        segments.push(Segment::new(path, 0));
    }
    let damaged = segments
        .iter_mut()
        .flat_map(|s| std::mem::take(&mut s.damaged))
        .collect();
    Ok(Recovered {
        segments,
        damaged,
        horizon,
    })
}

/// A directory without a name file can only be a topic whose creation a
/// crash interrupted, before any message: it is removed. One with segments
/// is not brook's doing, and is left for a person to look at.
pub fn remove_unnamed(dir: &Path) -> Result<(), StoreError> {
    if !segment_paths(dir)?.is_empty() {
        return Err(StoreError::Unrecognised {
            path: dir.to_owned(),
            reason: "segments without a name file",
        });
    }
    log::warn!("{}: removing a topic directory with no name", dir.display());
    fs::remove_dir_all(dir).map_err(StoreError::io(dir))
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
fn scan_segment(
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
        if let Some(end) = segment.take_saved_index(file_len) {
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
        // whatever follows the damage (see `horizon.rs`).
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

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;

    use super::*;
    use crate::store::disk::horizon::HORIZON_FILE;
    use crate::store::disk::test_support::{
        fill_segments, message, open_store, read_now, settings, write_durably, TempDir,
    };
    use crate::store::record::HEADER_BYTES;
    use crate::store::{Lookup, Store};

    #[test]
    fn messages_survive_a_reopen_across_segments_and_index_runs() {
        let temp = TempDir::new("reopen");
        let (mut store, _) = open_store(&temp, settings(16 << 10, None));
        let mut log = store.open("t").unwrap();
        for i in 0..1000 {
            assert_eq!(
                log.append(message(i), crate::store::record::now_ms())
                    .unwrap(),
                i
            );
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

    /// Writes records 0 to 99 durably and 100 to 109 without the fsync
    /// that would have confirmed them, then does to the segment file what
    /// a power loss can: the disk kept records 101 to 109 and not 100
    /// (84 bytes a record). Returns the segment file's path.
    fn lose_power_between_batches(temp: &TempDir, settings: LogSettings) -> PathBuf {
        let (mut store, _) = open_store(temp, settings);
        let mut log = store.open("t").unwrap();
        for i in 0..100 {
            log.append(message(i), crate::store::record::now_ms())
                .unwrap();
        }
        write_durably(log.as_mut()); // 0 to 99 may be confirmed
        for i in 100..110 {
            log.append(message(i), crate::store::record::now_ms())
                .unwrap();
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
}
