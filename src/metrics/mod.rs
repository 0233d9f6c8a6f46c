//! `--metrics-addr`: the broker's figures over HTTP, in the Prometheus text
//! exposition format (version 0.0.4), for a monitoring system to scrape.
//!
//! One thread of its own, `metrics`, listens on its own port and answers
//! one connection at a time: a scrape every few seconds needs no more. For
//! `GET /metrics` it asks the dispatcher for the report `STATS` prints
//! ([`Command::Report`]), as a reader asks for anything: through the
//! command queue, with a channel for the answer. It never makes the
//! dispatcher wait: the command goes in only if the queue has room now,
//! and the answer has a slot of its own. If no answer comes within
//! [`REPORT_PATIENCE`] (the dispatcher is stuck behind a slow disk, say),
//! the scrape gets 503 and the thread goes back to listening. Two figures
//! it reads itself, as they are: the length of the queue, and the fsync
//! times ([`FsyncTimes`], atomics that the syncer thread bumps, and the
//! dispatcher with `--fsync always`).
//!
//! ```text
//!   scraper ──GET /metrics──▶ metrics ──Command::Report──▶ dispatcher
//!                              │   ◀───────BrokerReport─────────┘
//!                              ├── queue length  (queue.rs)
//!                              └── fsync times   (stats.rs)
//! ```
//!
//! The HTTP is the least that serves a scraper and `curl`: one request per
//! connection (`Connection: close`), no body. `HEAD` is answered as `GET`
//! is, without the page. A request that is not HTTP gets 400, another path
//! 404, another method 405. A client has
//! [`REQUEST_TIMEOUT`](http::REQUEST_TIMEOUT) in all to send its request's
//! head (at most [`MAX_HEAD_BYTES`](http::MAX_HEAD_BYTES)), and as long
//! again to take the answer: one deadline for each, not a timeout for each read,
//! so a client sending a byte now and then cannot hold the thread either.
//! A stop ([`Stopper`](crate::server::Stopper)) wakes the thread as it
//! wakes the acceptor, with a connection of its own; a client being served
//! delays the stop by those deadlines at most.
//!
//! This file is what brook's page holds and how the thread gets it (the
//! dispatcher's report, within [`REPORT_PATIENCE`]); `http.rs` starts the
//! thread ([`http::spawn`]), runs its loop (one connection at a time, the
//! deadlines, the stop) and speaks its HTTP, and `exposition.rs` is the
//! page's format. `brook-bridge` serves its own figures with those two
//! (`bridge/metrics.rs`).

use std::io;
use std::net::TcpListener;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::RecvTimeoutError;

pub(crate) mod exposition;
pub(crate) mod http;

use crate::queue::{Command, CommandSender, NotQueued};
use crate::stats::FsyncTimes;
use crate::wire::reply::BrokerReport;
use exposition::{render, Scrape};
use http::{HttpError, RequestLine, Response};

/// How long a scrape waits for the dispatcher's report before it answers
/// 503.
const REPORT_PATIENCE: Duration = Duration::from_secs(2);

/// Binds `--metrics-addr` (before the broker starts, so that an address
/// in use stops the start with nothing to undo).
pub fn bind(addr: &str) -> io::Result<TcpListener> {
    TcpListener::bind(addr).map_err(|error| {
        io::Error::new(
            error.kind(),
            format!("cannot serve metrics on {addr} (--metrics-addr): {error}"),
        )
    })
}

/// Starts the `metrics` thread on `listener`. It asks for reports through
/// `commands`, and ends when `stopping` is set and a connection wakes it.
pub fn spawn(
    listener: TcpListener,
    commands: CommandSender,
    fsync_times: Arc<FsyncTimes>,
    stopping: Arc<AtomicBool>,
) -> io::Result<JoinHandle<()>> {
    let server = MetricsServer {
        commands,
        fsync_times,
    };
    http::spawn(listener, stopping, move |request| server.respond(request))
}

/// What the metrics thread makes the page from.
struct MetricsServer {
    commands: CommandSender,
    fsync_times: Arc<FsyncTimes>,
}

impl MetricsServer {
    fn respond(&self, request: &RequestLine) -> Response {
        http::respond(request, || self.page())
    }

    /// The page: the dispatcher's report, and the figures read beside it.
    fn page(&self) -> Result<String, HttpError> {
        // Read before the report is asked for, so our own command is not
        // counted.
        let queued_commands = self.commands.queued_commands();
        let report = self.ask_report()?;
        let scrape = Scrape {
            report,
            queued_commands,
        };
        Ok(render(&scrape, &self.fsync_times))
    }

    /// The dispatcher's report, if it gives one within [`REPORT_PATIENCE`].
    fn ask_report(&self) -> Result<BrokerReport, HttpError> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        match self.commands.try_send(Command::Report { reply }) {
            Ok(()) => {}
            Err(NotQueued::Full) => return Err(HttpError::Busy),
            Err(NotQueued::Disconnected) => return Err(HttpError::Stopping),
        }
        answer
            .recv_timeout(REPORT_PATIENCE)
            .map_err(|error| match error {
                RecvTimeoutError::Timeout => HttpError::Late(REPORT_PATIENCE),
                RecvTimeoutError::Disconnected => HttpError::Stopping,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::METRICS_PATH;

    /// A metrics server whose commands go to `commands`.
    fn server(commands: CommandSender) -> MetricsServer {
        MetricsServer {
            commands,
            fsync_times: Arc::default(),
        }
    }

    fn get_metrics() -> RequestLine {
        RequestLine {
            method: "GET".to_owned(),
            target: METRICS_PATH.to_owned(),
        }
    }

    #[test]
    fn a_scrape_while_the_dispatcher_is_stuck_gets_503() {
        // A queue nobody reads: a dispatcher stuck behind a slow disk.
        let (commands, _stuck) = crate::queue::bounded(16, 1 << 20);
        let response = server(commands).respond(&get_metrics());
        assert_eq!(response.status, "503 Service Unavailable");
        assert_eq!(
            response.body,
            format!("{}\n", HttpError::Late(REPORT_PATIENCE))
        );
    }

    #[test]
    fn a_scrape_while_the_broker_stops_gets_503() {
        let (commands, stopped) = crate::queue::bounded(16, 1 << 20);
        drop(stopped);
        let response = server(commands).respond(&get_metrics());
        assert_eq!(response.status, "503 Service Unavailable");
        assert_eq!(response.body, "the broker is stopping\n");
    }
}
