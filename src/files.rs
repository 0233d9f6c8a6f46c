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
//! `--max-topics` bounds how much of it topics can take.
//!
//! An accept that fails anyway (EMFILE from something else, say) is retried
//! after a wait that doubles while failures go on ([`AcceptFailures`]), so
//! the acceptor and the metrics thread never spin, and their log lines are
//! [`Throttled`] to one a second.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// How long the acceptor waits after an accept fails, at first and at
/// most: a failure such as EMFILE lasts until a connection closes, and
/// retrying at once would spin a core and fill the log.
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MOST: Duration = Duration::from_secs(1);

/// Failed accepts in a row: the wait before the next try, which doubles
/// while they go on, and their log lines.
#[derive(Debug, Default)]
pub(crate) struct AcceptFailures {
    backoff: Option<Duration>,
    log: Throttled,
}

impl AcceptFailures {
    /// Logs a failed accept (at most once a second), and returns how long
    /// to wait before the next try.
    pub(crate) fn failed(&mut self, error: &io::Error) -> Duration {
        self.log
            .log(|suppressed| log::warn!("accept failed: {error}{suppressed}"));
        let backoff = self.backoff.map_or(ACCEPT_BACKOFF_FIRST, |last| {
            (last * 2).min(ACCEPT_BACKOFF_MOST)
        });
        self.backoff = Some(backoff);
        backoff
    }

    /// An accept succeeded: the next failure waits the shortest time again.
    pub(crate) fn ended(&mut self) {
        self.backoff = None;
    }
}

/// A log line that may be written at most once a second, however often
/// its event happens: the lines left out are counted, and the next line
/// says how many there were.
#[derive(Debug, Default)]
pub(crate) struct Throttled {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttled {
    /// Calls `log` with the note to append (empty, or "(and N more like it
    /// since the last such line)") if a second has passed since the last line;
    /// otherwise counts the event.
    pub(crate) fn log(&mut self, log: impl FnOnce(&str)) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < Duration::from_secs(1))
        {
            self.suppressed += 1;
            return;
        }
        let note = match std::mem::take(&mut self.suppressed) {
            0 => String::new(),
            n => format!(" (and {n} more like it since the last such line)"),
        };
        log(&note);
        self.last = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_accepts_wait_longer_and_longer_up_to_a_second() {
        let mut failures = AcceptFailures::default();
        let error = io::Error::from_raw_os_error(24); // EMFILE
        let waits: Vec<u128> = (0..9)
            .map(|_| failures.failed(&error).as_millis())
            .collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        failures.ended();
        assert_eq!(failures.failed(&error), ACCEPT_BACKOFF_FIRST);
    }

    #[test]
    fn a_throttled_line_is_written_once_a_second_at_most() {
        let mut throttled = Throttled::default();
        let mut lines = Vec::new();
        for _ in 0..1000 {
            throttled.log(|note| lines.push(note.to_owned()));
        }
        assert_eq!(lines, [""]);
        assert_eq!(throttled.suppressed, 999);
        // A second later, the next line says how many were left out.
        throttled.last = throttled.last.map(|last| last - Duration::from_secs(1));
        throttled.log(|note| lines.push(note.to_owned()));
        assert_eq!(lines[1], " (and 999 more like it since the last such line)");
        assert_eq!(throttled.suppressed, 0);
    }

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
