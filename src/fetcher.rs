//! The fetcher thread: reads old records from segment files, so that the
//! dispatcher never waits for the disk.
//!
//! A subscriber that keeps up reads from the disk store's cache of the
//! newest messages. One that replays a topic from the beginning, or has
//! fallen far behind, needs records that are only in the segment files,
//! and a read from a cold disk takes milliseconds. Done on the dispatcher
//! thread, that would hold up every other topic and subscriber meanwhile.
//! So the disk log only asks for the run of records it lacks and answers
//! "later" ([`Read::Later`](crate::store::Read)); the fetcher reads the run
//! and checks its checksums on its own thread, and sends it back through
//! the dispatcher's queue, where it joins the other commands:
//!
//! ```text
//!   dispatcher: log.read(offset) misses the cache ──▶ FetchRequest ──▶ fetcher
//!                                                                         │
//!     pread a run (256 KiB) of the segment, check every record's CRC,     │
//!     length and offset; stop at damage, and say which offsets it cost    │
//!                                                                         ▼
//!   dispatcher ◀── Command::Fetched ◀── the dispatcher's queue ◀──── Fetched
//!     the log keeps the run; the topic is offered again to its
//!     subscribers and pullers, which now read it from memory
//! ```
//!
//! Each log has at most one fetch under way, so the fetcher's work, and the
//! memory it fills, are bounded by the number of topics being replayed.

use std::io;
use std::sync::Arc;
use std::thread;

use crossbeam_channel::{Receiver, Sender};

use crate::dispatcher::Command;
use crate::queue::CommandSender;
use crate::segment::{Run, RunStart};
use crate::store::Offset;

/// A run of records a log wants read.
#[derive(Debug)]
pub struct FetchRequest {
    pub topic: Arc<str>,
    pub run: RunStart,
}

/// A run of records read for a log: the sound records from offset `first`
/// on and the damage that cut them short, if any, or why the file could
/// not be read.
#[derive(Debug)]
pub struct Fetched {
    pub topic: Arc<str>,
    pub first: Offset,
    pub run: io::Result<Run>,
}

/// The logs' end of the fetcher thread. The thread ends once every handle
/// has been dropped, or the dispatcher has gone.
#[derive(Debug, Clone)]
pub struct Fetcher {
    requests: Sender<FetchRequest>,
}

impl Fetcher {
    /// Starts the `fetcher` thread, which sends what it reads to
    /// `dispatcher`.
    pub fn spawn(dispatcher: CommandSender) -> io::Result<Fetcher> {
        let (requests, queue) = crossbeam_channel::unbounded();
        thread::Builder::new()
            .name("fetcher".to_owned())
            .spawn(move || run(&queue, &dispatcher))?;
        Ok(Fetcher { requests })
    }

    /// Asks for a run to be read. If the thread has gone, the broker is
    /// shutting down, and nobody waits for the answer.
    pub fn fetch(&self, request: FetchRequest) {
        let _ = self.requests.send(request);
    }
}

impl FetchRequest {
    /// Reads the run (on the fetcher thread).
    pub fn read(self) -> Fetched {
        Fetched {
            topic: self.topic,
            first: self.run.offset(),
            run: self.run.read(),
        }
    }
}

fn run(queue: &Receiver<FetchRequest>, dispatcher: &CommandSender) {
    while let Ok(request) = queue.recv() {
        if dispatcher.send(Command::Fetched(request.read())).is_err() {
            return; // the dispatcher has stopped
        }
    }
}
