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
//!                              └── fsync times   (syncer.rs)
//! ```
//!
//! The HTTP is the least that serves a scraper and `curl`: one request per
//! connection (`Connection: close`), no body. `HEAD` is answered as `GET`
//! is, without the page. A request that is not HTTP gets 400, another path
//! 404, another method 405. A client has [`REQUEST_TIMEOUT`] in all to
//! send its request's head (at most [`MAX_HEAD_BYTES`]), and as long again
//! to take the answer: one deadline for each, not a timeout for each read,
//! so a client sending a byte now and then cannot hold the thread either.
//! A stop ([`Stopper`](crate::server::Stopper)) wakes the thread as it
//! wakes the acceptor, with a connection of its own; a client being served
//! delays the stop by those deadlines at most.

use std::fmt::{self, Display, Write as _};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use crate::backoff::AcceptFailures;
use crate::queue::{Command, CommandSender, NotQueued};
use crate::stats::{FsyncTimes, FSYNC_BUCKETS};
use crate::wire::reply::{BrokerReport, GroupReport, TopicReport};

/// How long a client may take to send its request's head, all of it, and
/// then to take the answer: a client that connects and says nothing, or
/// trickles its request, holds the thread, and every scrape behind it, for
/// this long (and [`REPORT_PATIENCE`], and this long again) at most.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a scrape waits for the dispatcher's report before it answers
/// 503.
pub const REPORT_PATIENCE: Duration = Duration::from_secs(2);

/// The longest request head read: a scraper's is a few hundred bytes.
pub const MAX_HEAD_BYTES: usize = 8 << 10;

/// The path served.
pub const METRICS_PATH: &str = "/metrics";

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

// ---- HTTP ----

/// A connection with one deadline, [`REQUEST_TIMEOUT`] from when it is
/// made, for every read and write on it: each is given the time left, and
/// fails with `TimedOut` once none is.
struct Deadline<'a> {
    stream: &'a TcpStream,
    at: Instant,
}

impl<'a> Deadline<'a> {
    fn new(stream: &'a TcpStream) -> Deadline<'a> {
        Deadline {
            stream,
            at: Instant::now() + REQUEST_TIMEOUT,
        }
    }

    /// The time left, if any.
    fn left(&self) -> io::Result<Duration> {
        match self.at.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Ok(left),
            _ => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took longer than the request timeout",
            )),
        }
    }
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(self.left()?))?;
        (&mut &*self.stream).read(buf)
    }
}

impl Write for Deadline<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.set_write_timeout(Some(self.left()?))?;
        (&mut &*self.stream).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A request's first line: `GET /metrics HTTP/1.1`.
#[derive(Debug, PartialEq, Eq)]
struct RequestLine {
    method: String,
    target: String,
}

impl RequestLine {
    /// The target without its query string.
    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }
}

/// Why a request gets no metrics.
#[derive(Debug, PartialEq, Eq)]
enum HttpError {
    /// Not an HTTP/1 request; says what is wrong with it.
    BadRequest(&'static str),
    NotFound,
    MethodNotAllowed,
    /// The dispatcher's queue is full.
    Busy,
    /// The dispatcher did not answer within [`REPORT_PATIENCE`].
    Late,
    /// The broker is stopping.
    Stopping,
}

impl HttpError {
    fn status(&self) -> &'static str {
        match self {
            HttpError::BadRequest(_) => "400 Bad Request",
            HttpError::NotFound => "404 Not Found",
            HttpError::MethodNotAllowed => "405 Method Not Allowed",
            HttpError::Busy | HttpError::Late | HttpError::Stopping => "503 Service Unavailable",
        }
    }
}

impl Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::BadRequest(why) => write!(f, "bad request: {why}"),
            HttpError::NotFound => write!(f, "not found: brook serves GET {METRICS_PATH} only"),
            HttpError::MethodNotAllowed => write!(f, "{METRICS_PATH} answers GET and HEAD only"),
            HttpError::Busy => write!(
                f,
                "the dispatcher's queue is full: it is behind; try again later"
            ),
            HttpError::Late => write!(
                f,
                "the dispatcher did not report within {REPORT_PATIENCE:?}: it is behind; \
                 try again later"
            ),
            HttpError::Stopping => write!(f, "the broker is stopping"),
        }
    }
}

/// Reads the request's head, up to the blank line that ends it (or until
/// the client stops sending), and returns its request line; `None` if the
/// client sent nothing at all.
fn read_request(stream: &mut impl Read) -> Result<Option<RequestLine>, HttpError> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !ends_head(&head) {
        let room = (MAX_HEAD_BYTES - head.len()).min(chunk.len());
        if room == 0 {
            return Err(HttpError::BadRequest("request head over 8 KiB"));
        }
        match stream.read(&mut chunk[..room]) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            // Out of time, or the client gone: answer what came.
            Err(_) => break,
        }
    }
    if head.is_empty() {
        return Ok(None);
    }
    let line = head.split(|&byte| byte == b'\n').next().unwrap_or_default();
    parse_request_line(line.strip_suffix(b"\r").unwrap_or(line)).map(Some)
}

/// Whether `head` holds the blank line that ends a request head.
fn ends_head(head: &[u8]) -> bool {
    head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n")
}

/// Parses `METHOD TARGET HTTP/1.x`.
fn parse_request_line(line: &[u8]) -> Result<RequestLine, HttpError> {
    const NOT_HTTP: HttpError =
        HttpError::BadRequest("expected a request line such as GET /metrics HTTP/1.1");
    let line = std::str::from_utf8(line).map_err(|_| NOT_HTTP)?;
    let mut words = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(NOT_HTTP);
    };
    let is_token = !method.is_empty()
        && method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !is_token || !target.starts_with('/') || !matches!(version, "HTTP/1.0" | "HTTP/1.1") {
        return Err(NOT_HTTP);
    }
    Ok(RequestLine {
        method: method.to_owned(),
        target: target.to_owned(),
    })
}

/// An answer, written whole, then the connection closes.
struct Response {
    status: &'static str,
    content_type: &'static str,
    /// `Allow`, for a 405.
    allow: Option<&'static str>,
    body: String,
}

impl Response {
    fn metrics(body: String) -> Response {
        Response {
            status: "200 OK",
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            allow: None,
            body,
        }
    }

    fn error(error: &HttpError) -> Response {
        Response {
            status: error.status(),
            content_type: "text/plain; charset=utf-8",
            allow: (*error == HttpError::MethodNotAllowed).then_some("GET, HEAD"),
            body: format!("{error}\n"),
        }
    }

    /// Writes the response; its head only if `with_body` is false (the
    /// answer to `HEAD`, whose `Content-Length` is still the body's).
    fn write_to(&self, out: &mut impl Write, with_body: bool) -> io::Result<()> {
        let mut head = format!(
            "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        if let Some(methods) = self.allow {
            head.push_str(&format!("Allow: {methods}\r\n"));
        }
        head.push_str("\r\n");
        out.write_all(head.as_bytes())?;
        if with_body {
            out.write_all(self.body.as_bytes())?;
        }
        out.flush()
    }
}

// ---- The exposition format ----

/// What one scrape shows: the dispatcher's report, and the queue's length
/// read beside it.
struct Scrape {
    report: BrokerReport,
    queued_commands: usize,
}

/// A metric's type, as its `# TYPE` line says it.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        })
    }
}

/// One metric: its name, its type, its help line, and where its value is
/// in `R` (the scrape, a topic's report or a group's).
struct Metric<R> {
    name: &'static str,
    kind: Kind,
    help: &'static str,
    value: fn(&R) -> u64,
}

const BROKER_METRICS: &[Metric<Scrape>] = &[
    Metric {
        name: "brook_uptime_seconds",
        kind: Kind::Gauge,
        help: "Seconds since the broker started.",
        value: |s| s.report.uptime.as_secs(),
    },
    Metric {
        name: "brook_connections",
        kind: Kind::Gauge,
        help: "Client connections open.",
        value: |s| s.report.connections as u64,
    },
    Metric {
        name: "brook_topics",
        kind: Kind::Gauge,
        help: "Topics the broker holds (--max-topics).",
        value: |s| s.report.topics.len() as u64,
    },
    Metric {
        name: "brook_dispatcher_queue_commands",
        kind: Kind::Gauge,
        help: "Commands from the connections waiting for the dispatcher thread.",
        value: |s| s.queued_commands as u64,
    },
    Metric {
        name: "brook_memory_used_bytes",
        kind: Kind::Gauge,
        help: "Bytes the store holds in memory (the disk store's cache, or the in-memory topics).",
        value: |s| s.report.memory_used as u64,
    },
    Metric {
        name: "brook_memory_budget_bytes",
        kind: Kind::Gauge,
        help: "The store's memory budget (--cache-bytes, or --memory-bytes with --in-memory).",
        value: |s| s.report.memory_budget as u64,
    },
    Metric {
        name: "brook_publishers_waiting",
        kind: Kind::Gauge,
        help: "Publishing connections held back because the in-memory store is full.",
        value: |s| s.report.publishers_waiting as u64,
    },
    Metric {
        name: "brook_store_disk_bytes",
        kind: Kind::Gauge,
        help: "Bytes of every topic's segment files (0 with --in-memory).",
        value: |s| s.report.topics.iter().map(|t| t.disk_bytes).sum(),
    },
    Metric {
        name: "brook_publishes_refused_disk_full_total",
        kind: Kind::Counter,
        help: "Publishes refused because the disk was full.",
        value: |s| s.report.refused_disk_full,
    },
];

const TOPIC_METRICS: &[Metric<TopicReport>] = &[
    Metric {
        name: "brook_topic_messages_in_total",
        kind: Kind::Counter,
        help: "Messages appended to the topic.",
        value: |t| t.messages_in,
    },
    Metric {
        name: "brook_topic_bytes_in_total",
        kind: Kind::Counter,
        help: "Payload bytes appended to the topic.",
        value: |t| t.bytes_in,
    },
    Metric {
        name: "brook_topic_messages_out_total",
        kind: Kind::Counter,
        help: "Deliveries of the topic's messages (subscribers, groups and pulls), redeliveries included.",
        value: |t| t.messages_out,
    },
    Metric {
        name: "brook_topic_bytes_out_total",
        kind: Kind::Counter,
        help: "Payload bytes of those deliveries.",
        value: |t| t.bytes_out,
    },
    Metric {
        name: "brook_topic_redeliveries_total",
        kind: Kind::Counter,
        help: "Deliveries of a message delivered before (after a nack or an ack timeout).",
        value: |t| t.redeliveries,
    },
    Metric {
        name: "brook_topic_given_up_total",
        kind: Kind::Counter,
        help: "Messages given up after --max-deliveries; each goes to the topic's .dlq topic unless --dead-letter off.",
        value: |t| t.given_up,
    },
    Metric {
        name: "brook_topic_unreadable_records_total",
        kind: Kind::Counter,
        help: "Offsets found damaged on disk and skipped.",
        value: |t| t.unreadable,
    },
    Metric {
        name: "brook_topic_subscribers",
        kind: Kind::Gauge,
        help: "Connections subscribed to the topic (not counting group members).",
        value: |t| t.subscribers as u64,
    },
    Metric {
        name: "brook_topic_first_offset",
        kind: Kind::Gauge,
        help: "The oldest offset the topic's log holds.",
        value: |t| t.first,
    },
    Metric {
        name: "brook_topic_next_offset",
        kind: Kind::Gauge,
        help: "The offset the topic's next message gets.",
        value: |t| t.next,
    },
    Metric {
        name: "brook_topic_disk_bytes",
        kind: Kind::Gauge,
        help: "Bytes of the topic's segment files (0 with --in-memory).",
        value: |t| t.disk_bytes,
    },
];

const GROUP_METRICS: &[Metric<GroupReport>] = &[
    Metric {
        name: "brook_group_members",
        kind: Kind::Gauge,
        help: "Connections in the consumer group.",
        value: |g| g.members as u64,
    },
    Metric {
        name: "brook_group_lag_messages",
        kind: Kind::Gauge,
        help: "Messages of the topic the group has yet to finish: not given out, or not acked.",
        value: |g| g.lag,
    },
    Metric {
        name: "brook_group_position_offset",
        kind: Kind::Gauge,
        help: "The oldest offset the group has not finished with.",
        value: |g| g.position,
    },
    Metric {
        name: "brook_group_messages_out_total",
        kind: Kind::Counter,
        help: "Deliveries the group gave its members, redeliveries included.",
        value: |g| g.messages_out,
    },
    Metric {
        name: "brook_group_bytes_out_total",
        kind: Kind::Counter,
        help: "Payload bytes of those deliveries.",
        value: |g| g.bytes_out,
    },
    Metric {
        name: "brook_group_redeliveries_total",
        kind: Kind::Counter,
        help: "Deliveries of a message the group had given out before.",
        value: |g| g.redeliveries,
    },
    Metric {
        name: "brook_group_given_up_total",
        kind: Kind::Counter,
        help: "Messages the group gave up after --max-deliveries.",
        value: |g| g.given_up,
    },
];

/// The histogram of fsync times.
const FSYNC_SECONDS: &str = "brook_fsync_seconds";

/// The page `GET /metrics` returns.
fn render(scrape: &Scrape, fsync_times: &FsyncTimes) -> String {
    let mut out = Exposition::default();
    for metric in BROKER_METRICS {
        out.family(metric.name, metric.kind, metric.help);
        out.sample(metric.name, &[], (metric.value)(scrape));
    }
    let topics = &scrape.report.topics;
    for metric in TOPIC_METRICS {
        out.family(metric.name, metric.kind, metric.help);
        for topic in topics {
            out.sample(
                metric.name,
                &[("topic", &topic.name)],
                (metric.value)(topic),
            );
        }
    }
    for metric in GROUP_METRICS {
        out.family(metric.name, metric.kind, metric.help);
        for topic in topics {
            for group in &topic.groups {
                let labels = [("topic", &*topic.name), ("group", &*group.name)];
                out.sample(metric.name, &labels, (metric.value)(group));
            }
        }
    }
    out.histogram(fsync_times);
    out.text
}

/// Text in the exposition format, written family by family.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    /// Starts a family: its `# HELP` and `# TYPE` lines.
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    /// `name{label="value",...} value`.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape_label_value(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    /// The fsync times: a bucket per bound, each counting the fsyncs that
    /// took at most that long, then `+Inf`, the sum and the count.
    fn histogram(&mut self, times: &FsyncTimes) {
        self.family(
            FSYNC_SECONDS,
            Kind::Histogram,
            "Time taken to force one log's writes to disk (each batch, or each append with --fsync always).",
        );
        let bucket = format!("{FSYNC_SECONDS}_bucket");
        let mut cumulative = 0;
        for (i, count) in times.buckets.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let bound = FSYNC_BUCKETS
                .get(i)
                .map_or("+Inf".to_owned(), f64::to_string);
            self.sample(&bucket, &[("le", &bound)], cumulative);
        }
        let seconds = times.nanos.load(Ordering::Relaxed) as f64 / 1e9;
        self.sample(&format!("{FSYNC_SECONDS}_sum"), &[], seconds);
        self.sample(&format!("{FSYNC_SECONDS}_count"), &[], cumulative);
    }
}

/// A label value as the format writes it: `\`, `"` and a newline escaped.
fn escape_label_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_value_escapes_backslash_quote_and_newline() {
        assert_eq!(escape_label_value("a\\b\"c\nd é"), "a\\\\b\\\"c\\nd é");
    }

    #[test]
    fn request_lines_parse_or_are_refused() {
        let get = parse_request_line(b"GET /metrics?x=1 HTTP/1.1").unwrap();
        assert_eq!((get.method.as_str(), get.path()), ("GET", "/metrics"));
        for bad in [
            &b"garbage"[..],
            b"GET /metrics",
            b"GET metrics HTTP/1.1",
            b"GET /metrics HTTP/2",
            b"GET  /metrics HTTP/1.1",
            b"G(T /metrics HTTP/1.1",
            b"GET /m\xff HTTP/1.1",
        ] {
            assert!(parse_request_line(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_head_too_long_is_refused_and_an_empty_one_is_nothing() {
        let long = vec![b'a'; MAX_HEAD_BYTES + 10];
        assert!(matches!(
            read_request(&mut &long[..]),
            Err(HttpError::BadRequest(_))
        ));
        assert_eq!(read_request(&mut &b""[..]), Ok(None));
    }

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

    #[test]
    fn fsync_times_land_in_cumulative_buckets() {
        let times = FsyncTimes::default();
        times.record(Duration::from_micros(300));
        times.record(Duration::from_millis(3));
        times.record(Duration::from_secs(10));
        let mut out = Exposition::default();
        out.histogram(&times);
        let text = out.text;
        assert!(
            text.contains("brook_fsync_seconds_bucket{le=\"0.0005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("brook_fsync_seconds_bucket{le=\"0.005\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("brook_fsync_seconds_bucket{le=\"2.5\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("brook_fsync_seconds_bucket{le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("brook_fsync_seconds_sum 10.0033\n"), "{text}");
        assert!(text.contains("brook_fsync_seconds_count 3\n"), "{text}");
    }
}
