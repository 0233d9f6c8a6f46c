//! What the tests of `disk/` share: a temporary data directory, a store on
//! it with a fetcher thread, and the dispatcher's ways of reading and
//! writing a log, done in place.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use crossbeam_channel::Receiver;

use super::files::segment_paths;
use super::DiskStore;
use crate::ids::{Offset, Payload};
use crate::store::fetcher::Fetcher;
use crate::store::{Fetched, Fsync, LogSettings, Lookup, OnDamage, Store, TopicLog};

/// A directory under the system's temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "brook-disk-{label}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&path);
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub fn settings(segment_bytes: u64, retention_bytes: Option<u64>) -> LogSettings {
    LogSettings {
        segment_bytes,
        retention_bytes,
        retention_age: None,
        fsync: Fsync::Never,
        max_message_bytes: 1 << 20,
        on_damage: OnDamage::Skip,
    }
}

/// A disk store on `temp`, with a fetcher thread whose runs arrive on
/// the returned queue, as they would at the dispatcher.
pub fn open_store(temp: &TempDir, settings: LogSettings) -> (DiskStore, Receiver<Fetched>) {
    let (runs, fetched) = crossbeam_channel::unbounded();
    let fetcher = Fetcher::spawn(move |run| runs.send(run).is_ok()).unwrap();
    (
        DiskStore::new(&temp.0, settings, 64 << 20, fetcher),
        fetched,
    )
}

/// Reads `offset` as the dispatcher does: a read that must wait for the
/// fetcher gets the fetched run and asks again.
pub fn read_now(log: &mut dyn TopicLog, fetched: &Receiver<Fetched>, offset: Offset) -> Lookup {
    for _ in 0..2 {
        match log.read(offset) {
            Lookup::Later => {}
            read => return read,
        }
        match fetched.recv_timeout(Duration::from_secs(10)) {
            Ok(run) => log.take_fetched(run),
            other => panic!("expected a fetched run, got {other:?}"),
        }
    }
    panic!("offset {offset} is still not there after its fetch");
}

/// What the dispatcher and the syncer do at the end of a round.
pub fn write_durably(log: &mut dyn TopicLog) {
    if let Some(job) = log.write().unwrap() {
        job().unwrap();
    }
}

pub fn message(i: u64) -> Payload {
    Payload::from(format!("message {i:04}").repeat(5).into_bytes())
}

/// Fills topic "t" with 1,000 messages in segments of 16 KiB, and
/// returns the topic's directory and its segment files.
pub fn fill_segments(temp: &TempDir) -> (PathBuf, Vec<(Offset, PathBuf)>) {
    let (mut store, _) = open_store(temp, settings(16 << 10, None));
    let mut log = store.open("t").unwrap();
    for i in 0..1000 {
        log.append(message(i), crate::store::record::now_ms())
            .unwrap();
    }
    write_durably(log.as_mut());
    let dir = store.directory_for("t").unwrap();
    let segments = segment_paths(&dir).unwrap();
    (dir, segments)
}

/// Opens topic "t" of the data dir in `temp` anew, with `fsync never`.
pub fn reopen(temp: &TempDir) -> Box<dyn TopicLog> {
    let (mut store, _) = open_store(temp, settings(16 << 10, None));
    store.recover().unwrap().pop().unwrap().1
}
