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
//! 404, another method 405. A client has [`REQUEST_TIMEOUT`](http::REQUEST_TIMEOUT) in all to
//! send its request's head (at most [`MAX_HEAD_BYTES`]), and as long again
//! to take the answer: one deadline for each, not a timeout for each read,
//! so a client sending a byte now and then cannot hold the thread either.
//! A stop ([`Stopper`](crate::server::Stopper)) wakes the thread as it
//! wakes the acceptor, with a connection of its own; a client being served
//! delays the stop by those deadlines at most.
//!
//! This file is the thread and its loop; `http.rs` is the HTTP it speaks,
//! and `exposition.rs` the page it serves.

use std::io::{self, Read};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crossbeam_channel::RecvTimeoutError;

mod exposition;
mod http;

use crate::backoff::AcceptFailures;
use crate::queue::{Command, CommandSender, NotQueued};
use crate::stats::FsyncTimes;
use crate::wire::reply::BrokerReport;
use exposition::{render, Scrape};
use http::{
    read_request, Deadline, HttpError, RequestLine, Response, MAX_HEAD_BYTES, METRICS_PATH,
    REPORT_PATIENCE,
};

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
    if let Ok(addr) = listener.local_addr() {
        log::info!("metrics served at http://{addr}{METRICS_PATH}");
    }
    let server = MetricsServer {
        listener,
        commands,
        fsync_times,
        stopping,
    };
    thread::Builder::new()
        .name("metrics".to_owned())
        .spawn(move || server.run())
}

/// The metrics thread's state.
struct MetricsServer {
    listener: TcpListener,
    commands: CommandSender,
    fsync_times: Arc<FsyncTimes>,
    stopping: Arc<AtomicBool>,
}

impl MetricsServer {
    fn run(self) {
        let mut failures = AcceptFailures::default();
        for stream in self.listener.incoming() {
            if self.stopping.load(Ordering::SeqCst) {
                break;
            }
            match stream {
                Ok(stream) => {
                    failures.ended();
                    self.serve(stream);
                }
                Err(error) => thread::sleep(failures.failed(&error)),
            }
        }
    }

    /// Reads one request from `stream`, answers it, and closes.
    fn serve(&self, stream: TcpStream) {
        let (response, with_body) = match read_request(&mut Deadline::new(&stream)) {
            Ok(None) => return, // said nothing: a stop's wake-up, or a silent client
            Ok(Some(request)) => (self.respond(&request), request.method != "HEAD"),
            Err(error) => (Response::error(&error), true),
        };
        // The client's time to take the answer starts once it is ready.
        let mut answering = Deadline::new(&stream);
        if let Err(error) = response.write_to(&mut answering, with_body) {
            log::debug!("metrics: cannot answer: {error}");
        }
        // What the client sent past the head is left unread: shut our side
        // first, so that closing sends the answer and not a reset.
        let _ = stream.shutdown(Shutdown::Write);
        let _ = io::copy(&mut answering.take(MAX_HEAD_BYTES as u64), &mut io::sink());
    }

    fn respond(&self, request: &RequestLine) -> Response {
        if request.path() != METRICS_PATH {
            return Response::error(&HttpError::NotFound);
        }
        if !matches!(request.method.as_str(), "GET" | "HEAD") {
            return Response::error(&HttpError::MethodNotAllowed);
        }
        // Read before the report is asked for, so our own command is not
        // counted.
        let queued_commands = self.commands.queued_commands();
        match self.ask_report() {
            Ok(report) => {
                let scrape = Scrape {
                    report,
                    queued_commands,
                };
                Response::metrics(render(&scrape, &self.fsync_times))
            }
            Err(error) => Response::error(&error),
        }
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
                RecvTimeoutError::Timeout => HttpError::Late,
                RecvTimeoutError::Disconnected => HttpError::Stopping,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A metrics server whose commands go to `commands`.
    fn server(commands: CommandSender) -> MetricsServer {
        MetricsServer {
            listener: TcpListener::bind("127.0.0.1:0").expect("bind a port"),
            commands,
            fsync_times: Arc::default(),
            stopping: Arc::default(),
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
        assert_eq!(response.body, format!("{}\n", HttpError::Late));
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
