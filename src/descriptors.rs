//! File descriptors: how many the broker may hold, and how it shares them
//! between connections and the disk store.
//!
//! A process may hold as many open files as its open-files limit
//! (`ulimit -n`, RLIMIT_NOFILE). Past it every open fails with EMFILE:
//! accepting a connection, creating a topic, starting a segment. So the
//! broker counts what it holds, and says no before the system does:
//!
//! ```text
//!   open-files limit
//!     - FILES_RESERVED   fixed: stdio, the listener, the data directory's lock,
//!                        the signal pipe, the fetcher's read handles, and files
//!                        opened for a moment (a new segment, a groups file,
//!                        a directory to sync, a connection being refused)
//!     - 1 per connection its socket, which its reader and writer threads
//!                        share (one `Arc<TcpStream>`)
//!     - 1 per disk topic its active segment, open for appending (closed
//!                        segments hold none: see `store/segment.rs`)
//! ```
//!
//! Connections and topics share what is left, first come first served: the
//! acceptor refuses a connection (`too many connections`) and the disk store
//! a new topic (`out of file descriptors: ...`) when it is all taken.
//! `--max-topics` bounds how much of it topics can take. An accept that
//! fails anyway (EMFILE from something else, say) is waited out
//! (`backoff.rs`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// File descriptors the broker keeps for itself, whatever the load. Its
/// fixed needs come to about 20 (see the module docs); the rest is slack,
/// for the moments when the acceptor and the dispatcher both take the last
/// one at once, and for whatever a library opens.
pub const FILES_RESERVED: usize = 64;

/// The descriptors left for connections and topics, and how many of them
/// each holds. Shared by the acceptor, the readers (which count
/// connections) and the disk store (which counts topics).
#[derive(Debug, Default)]
pub(crate) struct FileBudget {
    /// The open-files limit less [`FILES_RESERVED`]; `None` if the system
    /// does not say, and nothing is counted against it.
    available: Option<usize>,
    /// The open connections (kept by `server.rs`).
    connections: Arc<AtomicUsize>,
    /// The files the disk store holds open: one per topic.
    logs: AtomicUsize,
}

impl FileBudget {
    /// A budget for a process whose open-files limit is `limit`, where
    /// `connections` counts the open connections.
    pub fn new(limit: Option<usize>, connections: Arc<AtomicUsize>) -> FileBudget {
        FileBudget {
            available: limit.map(|limit| limit.saturating_sub(FILES_RESERVED)),
            connections,
            logs: AtomicUsize::new(0),
        }
    }

    /// The open-files limit this budget was made for, if the system said.
    pub fn limit(&self) -> Option<usize> {
        self.available.map(|available| available + FILES_RESERVED)
    }

    /// Whether one more descriptor (a connection's or a topic's) fits.
    pub fn has_room(&self) -> bool {
        self.available.is_none_or(|available| {
            let taken =
                self.connections.load(Ordering::Relaxed) + self.logs.load(Ordering::Relaxed);
            taken < available
        })
    }

    /// Counts a file the disk store opened and keeps open.
    pub fn log_opened(&self) {
        self.logs.fetch_add(1, Ordering::Relaxed);
    }

    /// How many files the disk store keeps open.
    pub fn logs(&self) -> usize {
        self.logs.load(Ordering::Relaxed)
    }
}

/// The process's open-files limit (its soft RLIMIT_NOFILE), if the system
/// says.
pub(crate) fn open_files_limit() -> Option<usize> {
    read_number("/proc/self/limits", "Max open files")
}

/// The first number in `path` on the line starting with `label`.
pub(crate) fn read_number(path: &str, label: &str) -> Option<usize> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|line| line.starts_with(label))?;
    line[label.len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_and_topics_share_what_the_reserve_leaves() {
        let connections = Arc::new(AtomicUsize::new(0));
        let budget = FileBudget::new(Some(FILES_RESERVED + 3), connections.clone());
        assert_eq!(budget.limit(), Some(FILES_RESERVED + 3));
        budget.log_opened();
        connections.store(1, Ordering::Relaxed);
        assert!(budget.has_room());
        budget.log_opened();
        assert!(!budget.has_room(), "two topics and a connection take all 3");
        connections.store(0, Ordering::Relaxed);
        assert!(budget.has_room());
        assert!(FileBudget::new(None, connections).has_room());
    }
}
