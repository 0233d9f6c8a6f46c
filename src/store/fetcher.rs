//! The fetcher thread: reads old records from segment files, so that the
//! dispatcher never waits for the disk.
//!
//! A subscriber that keeps up reads from the disk store's cache of the
//! newest messages. One that replays a topic from the beginning, or has
//! fallen far behind, needs records that are only in the segment files,
//! and a read from a cold disk takes milliseconds. Done on the dispatcher
//! thread, that would hold up every other topic and subscriber meanwhile.
//! So the disk log only asks for the run of records it lacks and answers
//! "later" ([`Lookup::Later`](super::Lookup::Later)); the fetcher reads the run and
//! checks its checksums on its own thread, and hands it back as a
//! [`Fetched`] to whoever started the thread. In the broker
//! that is the dispatcher's queue (`server.rs` says so), where it joins the
//! other commands; this file knows nothing of them:
//!
//! ```text
//!   dispatcher: log.read(offset) misses the cache ──▶ FetchRequest ──▶ fetcher
//!                                                                         │
//!     pread a run (256 KiB) of the segment, check every record's CRC,     │
//!     length and offset; stop at damage, and say which offsets it cost    │
//!                                                                         ▼
//!   dispatcher ◀── Command::Fetched ◀── the dispatcher's queue ◀──── Fetched
//!                                        (the callback the fetcher was given)
//!     the log keeps the run; the topic is offered again to its
//!     subscribers and pullers, which now read it from memory
//! ```
//!
//! Each log has at most one fetch under way, so the fetcher's work is
//! bounded by the number of topics being replayed. The memory it fills is
//! bounded whatever that number: a fetched run's payloads count in the
//! dispatcher's queue as a publish's do, so the fetcher waits for room
//! there (`queue.rs`) like a reader, and once the log has the run it counts
//! against the store's cache budget (`budget.rs`).
//!
//! Segment files are opened here, and only here, to be read: the fetcher
//! keeps the [`READ_HANDLES`] it used last open (`ReadHandles`), so a
//! replay reads on without opening its segment again for every run, while
//! a topic's closed segments hold no file descriptor. That is what lets the
//! broker count its descriptors (`descriptors.rs`): one per topic (its active
//! segment, which the dispatcher appends to) and these few.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::segment::RunStart;
use super::Fetched;
use crate::budget::cost;

/// A run of records a log wants read.
#[derive(Debug)]
pub struct FetchRequest {
    pub topic: Arc<str>,
    pub run: RunStart,
}

/// The logs' end of the fetcher thread. The thread ends once every handle
/// has been dropped, or nobody takes what it reads any more.
#[derive(Debug, Clone)]
pub struct Fetcher {
    requests: Sender<FetchRequest>,
}

impl Fetcher {
    /// Starts the `fetcher` thread, which hands each run it reads to
    /// `hand_back`. That answers `false` once nobody takes runs any more
    /// (the dispatcher has stopped), and the thread then ends.
    pub fn spawn(hand_back: impl FnMut(Fetched) -> bool + Send + 'static) -> io::Result<Fetcher> {
        let (requests, queue) = crossbeam_channel::unbounded();
        thread::Builder::new()
            .name("fetcher".to_owned())
            .spawn(move || run(&queue, hand_back))?;
        Ok(Fetcher { requests })
    }

    /// Asks for a run to be read. If the thread has gone, the broker is
    /// shutting down, and nobody waits for the answer.
    pub fn fetch(&self, request: FetchRequest) {
        let _ = self.requests.send(request);
    }
}

impl FetchRequest {
    /// Reads the run (on the fetcher thread), from a file in `handles`.
    fn read(self, handles: &mut ReadHandles) -> Fetched {
        let run = handles
            .open(self.run.path())
            .and_then(|file| self.run.read(file));
        let bytes = run
            .as_ref()
            .map_or(0, |run| run.payloads.iter().map(cost).sum());
        Fetched {
            topic: self.topic,
            first: self.run.offset(),
            run,
            bytes,
        }
    }
}

/// How many segment files the fetcher keeps open: enough for a few
/// replays at once, and few enough to count as a fixed part of the
/// broker's file descriptors ([`FILES_RESERVED`](crate::descriptors::FILES_RESERVED)).
pub const READ_HANDLES: usize = 4;

/// How long the fetcher keeps its files open with nothing to read. Closing
/// them lets the disk have back a segment that retention deleted meanwhile
/// (an open file keeps its blocks).
const IDLE_CLOSE: Duration = Duration::from_secs(1);

/// The segment files the fetcher read last, open, the most recent last:
/// at most [`READ_HANDLES`].
#[derive(Debug, Default)]
struct ReadHandles {
    open: Vec<(PathBuf, File)>,
}

impl ReadHandles {
    /// The file at `path`, opened if it is not open yet, which closes the
    /// one used longest ago if all are taken.
    fn open(&mut self, path: &Path) -> io::Result<&File> {
        match self.open.iter().position(|(open, _)| open == path) {
            Some(index) => {
                let used = self.open.remove(index);
                self.open.push(used);
            }
            None => {
                if self.open.len() >= READ_HANDLES {
                    self.open.remove(0);
                }
                self.open.push((path.to_owned(), File::open(path)?));
            }
        }
        Ok(&self.open[self.open.len() - 1].1)
    }

    fn close_all(&mut self) {
        self.open.clear();
    }
}

fn run(queue: &Receiver<FetchRequest>, mut hand_back: impl FnMut(Fetched) -> bool) {
    let mut handles = ReadHandles::default();
    loop {
        let request = match queue.recv_timeout(IDLE_CLOSE) {
            Ok(request) => request,
            Err(RecvTimeoutError::Timeout) => {
                handles.close_all();
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        if !hand_back(request.read(&mut handles)) {
            return; // the dispatcher has stopped
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_handles_keep_the_files_used_last_and_no_more() {
        let dir = std::env::temp_dir().join(format!("brook-handles-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let paths: Vec<PathBuf> = (0..READ_HANDLES + 2)
            .map(|i| dir.join(format!("{i}.log")))
            .collect();
        for path in &paths {
            std::fs::write(path, b"x").unwrap();
        }
        let mut handles = ReadHandles::default();
        for path in &paths {
            handles.open(path).unwrap();
            handles.open(&paths[0]).unwrap(); // kept open: used last
        }
        let open: Vec<&PathBuf> = handles.open.iter().map(|(path, _)| path).collect();
        assert_eq!(open.len(), READ_HANDLES);
        assert_eq!(open[READ_HANDLES - 1], &paths[0]);
        assert!(open.contains(&&paths[paths.len() - 1]));
        assert!(
            !open.contains(&&paths[1]),
            "the one used longest ago is closed"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
