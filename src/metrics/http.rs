//! The HTTP a metrics thread speaks: the least that serves a scraper and
//! `curl`. One request per connection (`Connection: close`), no body;
//! the request head read within one deadline ([`Deadline`]), however the
//! client trickles it; the request line parsed ([`RequestLine`]) or
//! refused with the status that says why ([`HttpError`]); the answer
//! written as a [`Response`]. What the page holds is `exposition.rs`.
//!
//! [`spawn`] starts the thread, whose loop takes one connection at a time,
//! and [`respond`] is the answer to a request, given how to make the page:
//! brook (`metrics/mod.rs`) makes it from the dispatcher's report, and
//! `brook-bridge` (`bridge/metrics.rs`) from its mirrors' counters.

use std::fmt::{self, Display};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::backoff::AcceptFailures;

/// How long a client may take to send its request's head, all of it, and
/// then to take the answer: a client that connects and says nothing, or
/// trickles its request, holds the thread, and every scrape behind it, for
/// this long (and as long as brook waits for the dispatcher's report,
/// and this long again) at most.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest request head read: a scraper's is a few hundred bytes.
pub const MAX_HEAD_BYTES: usize = 8 << 10;

/// The path served.
pub const METRICS_PATH: &str = "/metrics";

/// Starts the `metrics` thread on `listener`, which answers each request
/// with `respond`, and ends when `stopping` is set and a connection wakes
/// it.
pub(crate) fn spawn(
    listener: TcpListener,
    stopping: Arc<AtomicBool>,
    respond: impl Fn(&RequestLine) -> Response + Send + 'static,
) -> io::Result<JoinHandle<()>> {
    if let Ok(addr) = listener.local_addr() {
        log::info!("metrics served at http://{addr}{METRICS_PATH}");
    }
    thread::Builder::new()
        .name("metrics".to_owned())
        .spawn(move || serve_forever(&listener, &stopping, respond))
}

/// Accepts connections on `listener` one at a time, and answers each one's
/// request with `respond`, until `stopping` is set and a connection wakes
/// the loop (a stop connects, as it does to wake the acceptor). A client
/// being served holds the loop for [`REQUEST_TIMEOUT`] twice at most.
fn serve_forever(
    listener: &TcpListener,
    stopping: &AtomicBool,
    respond: impl Fn(&RequestLine) -> Response,
) {
    let mut failures = AcceptFailures::default();
    for stream in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            break;
        }
        match stream {
            Ok(stream) => {
                failures.ended();
                serve(stream, &respond);
            }
            Err(error) => thread::sleep(failures.failed(&error)),
        }
    }
}

/// Reads one request from `stream`, answers it, and closes.
fn serve(stream: TcpStream, respond: impl Fn(&RequestLine) -> Response) {
    let (response, with_body) = match read_request(&mut Deadline::new(&stream)) {
        Ok(None) => return, // said nothing: a stop's wake-up, or a silent client
        Ok(Some(request)) => (respond(&request), request.method != "HEAD"),
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

/// The answer to `request`: 404 for another path than [`METRICS_PATH`],
/// 405 for another method than `GET` or `HEAD`, else the page `page`
/// makes, or the error it gives (503: the figures are not to be had now).
pub(crate) fn respond(
    request: &RequestLine,
    page: impl FnOnce() -> Result<String, HttpError>,
) -> Response {
    if request.path() != METRICS_PATH {
        return Response::error(&HttpError::NotFound);
    }
    if !matches!(request.method.as_str(), "GET" | "HEAD") {
        return Response::error(&HttpError::MethodNotAllowed);
    }
    match page() {
        Ok(page) => Response::metrics(page),
        Err(error) => Response::error(&error),
    }
}

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
pub(crate) struct RequestLine {
    pub(crate) method: String,
    pub(crate) target: String,
}

impl RequestLine {
    /// The target without its query string.
    pub(crate) fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }
}

/// Why a request gets no metrics.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HttpError {
    /// Not an HTTP/1 request; says what is wrong with it.
    BadRequest(&'static str),
    NotFound,
    MethodNotAllowed,
    /// The dispatcher's queue is full.
    Busy,
    /// The dispatcher did not answer within this (brook's
    /// `REPORT_PATIENCE`).
    Late(Duration),
    /// The broker is stopping.
    Stopping,
}

impl HttpError {
    fn status(&self) -> &'static str {
        match self {
            HttpError::BadRequest(_) => "400 Bad Request",
            HttpError::NotFound => "404 Not Found",
            HttpError::MethodNotAllowed => "405 Method Not Allowed",
            HttpError::Busy | HttpError::Late(_) | HttpError::Stopping => "503 Service Unavailable",
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
            HttpError::Late(waited) => write!(
                f,
                "the dispatcher did not report within {waited:?}: it is behind; \
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
pub(crate) struct Response {
    pub(crate) status: &'static str,
    content_type: &'static str,
    /// `Allow`, for a 405.
    allow: Option<&'static str>,
    pub(crate) body: String,
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

    pub(crate) fn error(error: &HttpError) -> Response {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
