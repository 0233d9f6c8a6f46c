//! Waiting out failures, and keeping their log lines few: for the threads
//! that accept connections (the acceptor in `server.rs`, and `metrics/`),
//! and for the dispatcher's lines about a full store or dead letters not
//! stored.
//!
//! An accept that fails (EMFILE, the open-files limit reached, say) fails
//! again until a connection closes: retrying at once would spin a core and
//! fill the log. So the thread waits before the next try, a wait that
//! doubles while failures go on ([`AcceptFailures`]), and its log lines,
//! like the acceptor's about refused connections, are [`Throttled`] to one
//! a second. The dispatcher's are throttled the same way, to one a minute.

use std::io;
use std::time::{Duration, Instant};

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

/// A log line that may be written at most once an interval (a second,
/// unless its caller says otherwise), however often its event happens: the
/// lines left out are counted, and the next line says how many there were.
#[derive(Debug, Default)]
pub(crate) struct Throttled {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttled {
    /// Calls `log` with the note to append (empty, or "(and N more like it
    /// since the last such line)") if a second has passed since the last
    /// line; otherwise counts the event.
    pub(crate) fn log(&mut self, log: impl FnOnce(&str)) {
        self.log_at(Instant::now(), Duration::from_secs(1), log);
    }

    /// [`Throttled::log`] at `now`, at most once every `interval`.
    pub(crate) fn log_at(&mut self, now: Instant, interval: Duration, log: impl FnOnce(&str)) {
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < interval)
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
}
