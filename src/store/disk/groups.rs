//! The groups file: where each consumer group of a topic is (`PULL`'s
//! too), so that a group that comes back after a restart goes on where it
//! was ([`GroupPosition`]).
//!
//! Not to be confused with `dispatcher/group.rs`, a consumer group itself,
//! nor with `dispatcher/consumer_groups.rs`, which hands its messages out:
//! this file only saves and reads back where each group is.
//!
//! The dispatcher records each position as it moves
//! ([`Groups::set`]); at the end of a round in which one moved,
//! [`Groups::save`] hands the syncer thread a job that writes the whole
//! file anew (a scratch file renamed into place, so a crash leaves the old
//! file or the new one, whole). A start reads it back ([`Groups::recover`]).
//!
//! A power loss under `--fsync never` can leave a groups file that is
//! empty or cut short (logged; its groups start again where their members
//! ask, giving out again what they had finished), or group positions past
//! the recovered end of the log (brought back to it, so that the groups do
//! not skip the offsets the next messages get).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use byteorder::{BigEndian, ByteOrder};

use super::files::replace_file;
use crate::ids::Offset;
use crate::store::{Fsync, GroupPosition, StoreError, SyncJob};

/// The file in a topic's directory that holds the positions of its
/// consumer groups (see [`encode_groups`]).
pub const GROUPS_FILE: &str = "groups";

/// Where each consumer group of one topic is, and whether that changed
/// since it was last saved.
#[derive(Debug)]
pub struct Groups {
    positions: BTreeMap<String, GroupPosition>,
    moved: bool,
    /// Set by a save job that could not write the file for lack of room:
    /// the next save writes it again.
    unsaved: Arc<AtomicBool>,
}

impl Groups {
    /// The groups saved in `dir` for `topic`, brought back within a log
    /// that ends at `end`.
    pub fn recover(topic: &str, dir: &Path, end: Offset) -> Result<Groups, StoreError> {
        let mut positions = read_groups(topic, dir)?;
        bring_groups_within(topic, &mut positions, end);
        Ok(Groups {
            positions,
            moved: false,
            unsaved: Arc::default(),
        })
    }

    /// Every group's position, by name.
    pub fn positions(&self) -> Vec<(String, GroupPosition)> {
        self.positions.clone().into_iter().collect()
    }

    /// Records where the group `name` is; the next [`Groups::save`] saves it.
    pub fn set(&mut self, name: &str, position: GroupPosition) {
        self.positions.insert(name.to_owned(), position);
        self.moved = true;
    }

    /// The job that saves the positions to the groups file in `dir`, if
    /// they moved (or a full disk kept the last ones from being saved). A
    /// groups file the disk has no room for is logged and saved again next
    /// time: the broker goes on, and a restart before that gives out again
    /// what the groups finished since they were last saved.
    pub fn save(&mut self, topic: &Arc<str>, dir: &Path, fsync: Fsync) -> Option<SyncJob> {
        let unsaved = self.unsaved.load(Ordering::Relaxed);
        if !std::mem::take(&mut self.moved) && !unsaved {
            return None;
        }
        let bytes = encode_groups(&self.positions);
        let (dir, topic, unsaved) = (dir.to_owned(), topic.clone(), self.unsaved.clone());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::disk::test_support::{
        fill_segments, message, open_store, reopen, settings, TempDir,
    };
    use crate::store::{LogSettings, Store};

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
        log.append(message(0), crate::store::record::now_ms())
            .unwrap();
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
}
