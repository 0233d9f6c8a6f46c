//! The acceptor thread: it takes each new connection off the listening
//! socket, turns away one over `--max-connections` or the file
//! descriptors (`descriptors.rs`) with an Error status, and starts a reader
//! thread (`reader.rs`), named `conn-<id>-read`, for every other. It
//! remembers every open socket ([`OpenConnections`]), so that a stop
//! (`server.rs`) can close them all, and counts them for `STATS`.
//!
//! A failed accept (EMFILE from something else, say) is retried after a
//! wait that doubles while failures go on (`backoff.rs`), so the acceptor
//! never spins, and its log lines are throttled to one a second.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use parking_lot::Mutex;

use crate::backoff::{AcceptFailures, Throttled};
use crate::descriptors::{self, FileBudget, FILES_RESERVED};
use crate::ids::ConnId;
use crate::reader::{self, ReaderContext};
use crate::wire::binary::{self, status};

/// Open sockets by connection, so shutdown can close them all, and how
/// many there are, for the dispatcher's `STATS` (a number it can read
/// without taking the lock).
#[derive(Debug, Clone, Default)]
pub(crate) struct OpenConnections {
    sockets: Arc<Mutex<HashMap<ConnId, Arc<TcpStream>>>>,
    count: Arc<AtomicUsize>,
}

impl OpenConnections {
    fn insert(&self, id: ConnId, stream: Arc<TcpStream>) {
        self.sockets.lock().insert(id, stream);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn remove(&self, id: ConnId) {
        if self.sockets.lock().remove(&id).is_some() {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The count of open connections, shared: the file budget and the
    /// dispatcher's `STATS` read it as it changes.
    pub(crate) fn counter(&self) -> Arc<AtomicUsize> {
        self.count.clone()
    }

    pub(crate) fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub(crate) fn shutdown_all(&self, how: Shutdown) {
        for stream in self.sockets.lock().values() {
            let _ = stream.shutdown(how);
        }
    }
}

/// The acceptor thread's state.
pub(crate) struct Acceptor {
    pub(crate) listener: TcpListener,
    pub(crate) context: Arc<ReaderContext>,
    pub(crate) connections: OpenConnections,
    /// The file descriptors connections share with the disk store's topics.
    pub(crate) files: Arc<FileBudget>,
    pub(crate) stopping: Arc<AtomicBool>,
    pub(crate) max_connections: usize,
}

impl Acceptor {
    pub(crate) fn run(self) {
        let mut next_id: ConnId = 0;
        let mut failures = AcceptFailures::default();
        let mut refusals = Throttled::default();
        for stream in self.listener.incoming() {
            if self.stopping.load(Ordering::SeqCst) {
                break;
            }
            let stream = match stream {
                Ok(stream) => {
                    failures.ended();
                    stream
                }
                Err(error) => {
                    // Such as running out of file descriptors: keep serving
                    // the connections we have, and wait for one to close.
                    thread::sleep(failures.failed(&error));
                    continue;
                }
            };
            next_id += 1;
            if let Ok(peer) = stream.peer_addr() {
                log::debug!("conn {next_id}: accepted from {peer}");
            }
            if let Some(reason) = self.over_limit() {
                refusals.log(|suppressed| {
                    log::warn!("conn {next_id}: refused, {reason}{suppressed}");
                });
                refuse(stream);
            } else if let Err(error) =
                start_reader(next_id, stream, &self.context, &self.connections)
            {
                log::warn!("conn {next_id}: could not start its reader: {error}");
            }
        }
    }

    /// Why one more connection is refused, if it is.
    fn over_limit(&self) -> Option<TurnedAway> {
        let open = self.connections.len();
        if open >= self.max_connections {
            return Some(TurnedAway::MaxConnections {
                open,
                limit: self.max_connections,
            });
        }
        if !self.files.has_room() {
            return Some(TurnedAway::NoFiles {
                open,
                topics: self.files.logs(),
                limit: self.files.limit(),
            });
        }
        None
    }
}

/// Why the acceptor turned a connection away, for the log.
#[derive(Debug)]
enum TurnedAway {
    /// `--max-connections` (or the machine's limits) are reached.
    MaxConnections { open: usize, limit: usize },
    /// Connections and topics on disk hold every file descriptor the
    /// open-files limit leaves them (`descriptors.rs`).
    NoFiles {
        open: usize,
        topics: usize,
        limit: Option<usize>,
    },
}

impl std::fmt::Display for TurnedAway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TurnedAway::MaxConnections { open, limit } => {
                write!(f, "already {open} connections (--max-connections {limit})")
            }
            TurnedAway::NoFiles {
                open,
                topics,
                limit,
            } => write!(
                f,
                "no file descriptor left for it: {open} connections and {topics} topics \
                 on disk hold what the open-files limit ({}, ulimit -n) leaves; raise that \
                 limit, or lower --max-topics",
                limit.unwrap_or_default()
            ),
        }
    }
}

/// Turns away a connection over the limit with an Error status. This is the
/// one write not made by a writer thread: the point is to spend no thread on
/// the connection. The frame is a few bytes on a fresh socket, so a
/// non-blocking write always fits in its buffer.
fn refuse(stream: TcpStream) {
    let mut frame = Vec::new();
    binary::encode_status(&mut frame, status::ERROR, Some(TOO_MANY_CONNECTIONS));
    let _ = stream.set_nonblocking(true);
    let _ = (&stream).write(&frame);
}

/// The reason sent to a connection over `--max-connections`.
pub(crate) const TOO_MANY_CONNECTIONS: &str = "too many connections";

/// How many connections this process can hold, if the system says: at
/// most, with no topic on disk (each such topic takes one of these
/// connections' file descriptors; see `descriptors.rs`).
///
/// Each connection takes a file descriptor and up to two threads, and each
/// thread takes four memory mappings (its stack and guard page, its signal
/// stack and guard page). A thread that cannot map its signal stack aborts
/// the whole process, so the broker must stay clear of `vm.max_map_count`
/// rather than find it. Some room is left for everything else.
pub(crate) fn connection_capacity() -> Option<usize> {
    let by_mappings = descriptors::read_number("/proc/sys/vm/max_map_count", "")
        .map(|maps| maps.saturating_sub(2048) / 8);
    let by_files =
        descriptors::open_files_limit().map(|files| files.saturating_sub(FILES_RESERVED));
    match (by_mappings, by_files) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn start_reader(
    id: ConnId,
    stream: TcpStream,
    context: &Arc<ReaderContext>,
    connections: &OpenConnections,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let stream = Arc::new(stream);
    connections.insert(id, stream.clone());
    let context = context.clone();
    let registry = connections.clone();
    let spawned = thread::Builder::new()
        .name(format!("conn-{id}-read"))
        .stack_size(context.thread_stack_bytes)
        .spawn(move || {
            reader::run(id, stream, context);
            registry.remove(id);
        });
    if let Err(error) = spawned {
        connections.remove(id);
        return Err(error);
    }
    Ok(())
}
