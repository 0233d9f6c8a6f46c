//! A blocking NATS client over the text protocol: just what the bridge
//! needs, written here because the design card allows no NATS crate.
//!
//! ```text
//!  Connection::connect ──► INFO ◄─, CONNECT ─►, PING ─►, PONG ◄─   (handshake)
//!
//!  caller ── publish / hpublish / subscribe ──► writer (shared, locked) ──► socket
//!  socket ──► reader thread: Decoder ──► PING: answers PONG itself
//!                                    └─► MSG, HMSG ──► Event channel (bounded) ──► caller
//!                                    └─► -ERR, or the socket's end: Event::Lost, the last event
//! ```
//!
//! The [`Decoder`] is a state machine over whatever bytes have arrived, in
//! the style of brook's own `wire/line.rs`: it never assumes one `read()` is
//! one frame. It is in one of two states: reading a control line (up to
//! `\r\n`, remembering how far it has looked), or counting the bytes of a
//! `MSG` or `HMSG` body announced by the line. Every length is checked
//! against a limit before anything is allocated for it.
//!
//! Failover: [`Servers`] is the list of addresses given to `--nats`; each
//! [`Servers::connect`] starts with the address after the one used last,
//! so when a server dies the next connection goes to another one.

use std::fmt;
use std::io::{self, BufWriter, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use parking_lot::Mutex;

use crate::ids::random_hex;

/// The longest control line accepted (`MSG` lines with long subjects, or
/// an `INFO` with many cluster URLs).
const MAX_CONTROL_LINE: usize = 64 << 10;

/// The largest message body accepted, whatever the server announces: a
/// guard against a broken peer. NATS's own default `max_payload` is 1 MiB.
const MAX_BODY: usize = 64 << 20;

/// How long connecting to one server, or its handshake, may take.
const CONNECT_PATIENCE: Duration = Duration::from_secs(2);

/// What can go wrong talking to NATS.
#[derive(Debug)]
pub enum NatsError {
    Io(io::Error),
    /// The server closed the connection.
    Closed,
    /// The server sent `-ERR` with this text.
    Server(String),
    /// The server sent bytes that are not the NATS protocol.
    Protocol(ProtocolError),
    /// No server of the list could be reached; the last one's error.
    NoServer {
        tried: usize,
        last: Box<NatsError>,
    },
    /// No answer came in time.
    Timeout(&'static str),
    /// An address of `--nats` that names no host.
    BadAddress(String),
    /// More messages arrived than the caller took in time: the bound of
    /// the event channel, so that a flood cannot exhaust memory.
    Overrun(usize),
}

impl fmt::Display for NatsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NatsError::Io(error) => write!(f, "{error}"),
            NatsError::Closed => write!(f, "the NATS server closed the connection"),
            NatsError::Server(text) => write!(f, "the NATS server said: -ERR {text}"),
            NatsError::Protocol(error) => write!(f, "NATS protocol error: {error}"),
            NatsError::NoServer { tried, last } => write!(
                f,
                "none of the {tried} servers of --nats answered (last: {last}); check the addresses"
            ),
            NatsError::Timeout(what) => write!(f, "no answer from NATS in time: {what}"),
            NatsError::BadAddress(address) => {
                write!(f, "--nats address {address} names no host")
            }
            NatsError::Overrun(bound) => write!(
                f,
                "more than {bound} messages from NATS waited to be handled: the connection was dropped"
            ),
        }
    }
}

impl std::error::Error for NatsError {}

impl From<io::Error> for NatsError {
    fn from(error: io::Error) -> NatsError {
        NatsError::Io(error)
    }
}

impl From<ProtocolError> for NatsError {
    fn from(error: ProtocolError) -> NatsError {
        NatsError::Protocol(error)
    }
}

/// Bytes the [`Decoder`] cannot make sense of. Nothing after them can be
/// trusted, so the connection is dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    UnknownOperation(String),
    /// A `MSG` or `HMSG` line with the wrong number of words, or a count
    /// that is not a number.
    BadMessageLine(String),
    /// A control line longer than the limit, before its end arrived.
    LineTooLong,
    /// A body larger than the limit.
    BodyTooLarge(usize),
    /// The body did not end with `\r\n`: the count was wrong.
    BodyNotTerminated,
    /// An `HMSG` header block that does not start `NATS/1.0`.
    BadHeaders,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::UnknownOperation(op) => write!(f, "unknown operation {op:?}"),
            ProtocolError::BadMessageLine(line) => write!(f, "bad message line {line:?}"),
            ProtocolError::LineTooLong => write!(f, "control line over {MAX_CONTROL_LINE} bytes"),
            ProtocolError::BodyTooLarge(n) => write!(f, "message of {n} bytes"),
            ProtocolError::BodyNotTerminated => write!(f, "message body not followed by CRLF"),
            ProtocolError::BadHeaders => write!(f, "header block without NATS/1.0"),
        }
    }
}

/// One message from the server (`MSG` or `HMSG`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub subject: String,
    pub sid: u64,
    pub reply: Option<String>,
    /// The status of a header block such as `NATS/1.0 408 Request Timeout`
    /// (JetStream's way to end a pull), if it had one.
    pub status: Option<u16>,
    pub headers: Headers,
    pub payload: Vec<u8>,
}

impl Message {
    /// The first value of header `name` (case-insensitive, as NATS does).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// One frame from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// `INFO` and its JSON.
    Info(String),
    Message(Message),
    Ping,
    Pong,
    Ok,
    /// `-ERR` and its text, without the quotes.
    Err(String),
}

/// What a message line announced, while its body is counted.
#[derive(Debug)]
struct Announced {
    message: Message,
    header_len: usize,
    total_len: usize,
}

#[derive(Debug)]
enum State {
    /// Reading a control line; `scanned` bytes of it hold no `\n`.
    Line { scanned: usize },
    /// Waiting for `total_len + 2` bytes of body.
    Body(Announced),
    /// A protocol error was returned: nothing more is decoded.
    Broken,
}

/// Turns the bytes the server sends, in any chunking, into [`Frame`]s.
#[derive(Debug)]
pub struct Decoder {
    buffer: Vec<u8>,
    /// Where the bytes not decoded yet start in `buffer`: frames move it
    /// on, and [`Decoder::push`] drops what is before it, once per read
    /// rather than once per frame (a 64 KiB read of small PubAcks would
    /// otherwise move the rest of the buffer for each).
    start: usize,
    state: State,
}

impl Default for Decoder {
    fn default() -> Decoder {
        Decoder {
            buffer: Vec::new(),
            start: 0,
            state: State::Line { scanned: 0 },
        }
    }
}

impl Decoder {
    /// Adds bytes read from the socket.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.drain(..self.start);
        self.start = 0;
        self.buffer.extend_from_slice(bytes);
    }

    /// The bytes not decoded yet.
    fn unread(&self) -> &[u8] {
        &self.buffer[self.start..]
    }

    /// The next whole frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ProtocolError> {
        let outcome = match std::mem::replace(&mut self.state, State::Broken) {
            State::Line { scanned } => self.line(scanned),
            State::Body(announced) => self.body(announced),
            State::Broken => return Ok(None),
        };
        if outcome.is_err() {
            self.state = State::Broken;
        }
        outcome
    }

    fn line(&mut self, scanned: usize) -> Result<Option<Frame>, ProtocolError> {
        let Some(at) = self.unread()[scanned..].iter().position(|&b| b == b'\n') else {
            if self.unread().len() > MAX_CONTROL_LINE {
                return Err(ProtocolError::LineTooLong);
            }
            self.state = State::Line {
                scanned: self.unread().len(),
            };
            return Ok(None);
        };
        let end = scanned + at;
        let line = String::from_utf8_lossy(&self.unread()[..end])
            .trim_end_matches('\r')
            .to_owned();
        self.start += end + 1;
        self.state = State::Line { scanned: 0 };
        let (op, rest) = line.split_once(' ').unwrap_or((&line, ""));
        match op.to_ascii_uppercase().as_str() {
            "MSG" => self.announce(rest, false),
            "HMSG" => self.announce(rest, true),
            "PING" => Ok(Some(Frame::Ping)),
            "PONG" => Ok(Some(Frame::Pong)),
            "+OK" => Ok(Some(Frame::Ok)),
            "-ERR" => Ok(Some(Frame::Err(rest.trim().trim_matches('\'').to_owned()))),
            "INFO" => Ok(Some(Frame::Info(rest.trim().to_owned()))),
            _ => Err(ProtocolError::UnknownOperation(
                op.chars().take(16).collect(),
            )),
        }
    }

    /// `MSG subject sid [reply] size` or
    /// `HMSG subject sid [reply] header_size total_size`.
    fn announce(&mut self, rest: &str, headers: bool) -> Result<Option<Frame>, ProtocolError> {
        let bad = || ProtocolError::BadMessageLine(rest.chars().take(64).collect());
        let words: Vec<&str> = rest.split_ascii_whitespace().collect();
        let counts = if headers { 2 } else { 1 };
        let (named, sizes) = match words.len().checked_sub(counts) {
            Some(split @ (2 | 3)) => words.split_at(split),
            _ => return Err(bad()),
        };
        let number = |word: &str| word.parse::<usize>().map_err(|_| bad());
        let total_len = number(sizes[counts - 1])?;
        let header_len = if headers { number(sizes[0])? } else { 0 };
        if header_len > total_len {
            return Err(bad());
        }
        if total_len > MAX_BODY {
            return Err(ProtocolError::BodyTooLarge(total_len));
        }
        let message = Message {
            subject: named[0].to_owned(),
            sid: named[1].parse().map_err(|_| bad())?,
            reply: named.get(2).map(|reply| reply.to_string()),
            ..Message::default()
        };
        self.body(Announced {
            message,
            header_len,
            total_len,
        })
    }

    fn body(&mut self, mut announced: Announced) -> Result<Option<Frame>, ProtocolError> {
        let total = announced.total_len;
        let body = self.unread();
        if body.len() < total + 2 {
            self.state = State::Body(announced);
            return Ok(None);
        }
        if &body[total..total + 2] != b"\r\n" {
            return Err(ProtocolError::BodyNotTerminated);
        }
        if announced.header_len > 0 {
            let (status, headers) = parse_headers(&body[..announced.header_len])?;
            announced.message.status = status;
            announced.message.headers = headers;
        }
        announced.message.payload = body[announced.header_len..total].to_vec();
        self.start += total + 2;
        self.state = State::Line { scanned: 0 };
        Ok(Some(Frame::Message(announced.message)))
    }
}

/// A message's headers, in the order sent.
pub type Headers = Vec<(String, String)>;

/// `NATS/1.0[ status[ text]]\r\n` then `Key: Value\r\n` lines, then `\r\n`.
fn parse_headers(block: &[u8]) -> Result<(Option<u16>, Headers), ProtocolError> {
    let text = String::from_utf8_lossy(block);
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or("");
    let Some(after_version) = first.strip_prefix("NATS/1.0") else {
        return Err(ProtocolError::BadHeaders);
    };
    let status = after_version
        .split_ascii_whitespace()
        .next()
        .and_then(|code| code.parse().ok());
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect();
    Ok((status, headers))
}

/// Credentials for servers that want them.
#[derive(Clone, Default)]
pub enum Auth {
    #[default]
    None,
    UserPassword {
        user: String,
        password: String,
    },
    Token(String),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => write!(f, "no credentials"),
            Auth::UserPassword { user, .. } => write!(f, "user {user:?}, password hidden"),
            Auth::Token(_) => write!(f, "token hidden"),
        }
    }
}

impl Auth {
    /// The credential fields of the `CONNECT` JSON, each with a leading
    /// comma.
    fn connect_fields(&self) -> String {
        let quote = |s: &str| crate::wire::json::encode_string(s);
        match self {
            Auth::None => String::new(),
            Auth::UserPassword { user, password } => {
                format!(",\"user\":{},\"pass\":{}", quote(user), quote(password))
            }
            Auth::Token(token) => format!(",\"auth_token\":{}", quote(token)),
        }
    }
}

/// The `--nats` addresses, and which to try next.
#[derive(Debug, Clone)]
pub struct Servers {
    addresses: Vec<String>,
    next: usize,
    auth: Auth,
    limits: Limits,
}

impl Servers {
    pub fn new(addresses: Vec<String>, auth: Auth) -> Servers {
        Servers {
            addresses,
            next: 0,
            auth,
            limits: Limits::default(),
        }
    }

    /// Connections made from now on have these [`Limits`].
    pub fn with_limits(self, limits: Limits) -> Servers {
        Servers { limits, ..self }
    }

    /// Connects to the first server that answers, starting after the one
    /// connected to last.
    pub fn connect(&mut self) -> Result<Connection, NatsError> {
        let mut last = NatsError::Closed;
        for _ in 0..self.addresses.len() {
            let address = &self.addresses[self.next % self.addresses.len()];
            self.next = (self.next + 1) % self.addresses.len();
            match Connection::connect_with(address, &self.auth, &self.limits) {
                Ok(connection) => return Ok(connection),
                Err(error) => {
                    log::warn!("NATS server {address}: {error}");
                    last = error;
                }
            }
        }
        Err(NatsError::NoServer {
            tried: self.addresses.len(),
            last: Box::new(last),
        })
    }
}

/// What the reader thread hands the caller.
#[derive(Debug)]
pub enum Event {
    Message(Message),
    /// The connection is gone, and why. Nothing follows it.
    Lost(NatsError),
}

/// What a connection tolerates before it gives up: how many messages may
/// wait for the caller, and how long the server may go without reading
/// or answering. Without these, a server that stops reading would block a
/// write for ever, and a half-open connection would look like a quiet one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The most messages the caller has not taken; one more ends the
    /// connection with [`NatsError::Overrun`].
    pub events: usize,
    /// How long a write may block before it fails.
    pub write_patience: Duration,
    /// After this long without a byte from the server, the client sends a
    /// `PING`; with [`MAX_PONGS_OWED`] unanswered, it ends the connection.
    pub ping_every: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            events: 4096,
            write_patience: Duration::from_secs(10),
            ping_every: Duration::from_secs(20),
        }
    }
}

/// The `PING`s that may go unanswered before the connection counts as
/// dead (so it is found dead within three [`Limits::ping_every`]).
pub const MAX_PONGS_OWED: u32 = 2;

/// The random bytes of a connection's inbox prefix: a reply to the bridge
/// (a PubAck that says a message is stored) must not be forgeable by
/// another NATS user who guesses where it goes.
const INBOX_RANDOM_BYTES: usize = 16;

/// The subscription id of every connection's inbox, `<inbox>.*`.
const INBOX_SID: u64 = 1;

/// One connection to a NATS server. Dropping it closes the socket, which
/// ends its reader thread.
#[derive(Debug)]
pub struct Connection {
    address: String,
    socket: TcpStream,
    writer: Arc<Mutex<BufWriter<TcpStream>>>,
    events: Receiver<Event>,
    inbox: String,
    next_request: u64,
    next_sid: u64,
    max_payload: usize,
}

impl Connection {
    /// Connects to `address`, sends `CONNECT` with `auth`, and waits for the
    /// `PONG` that says the server accepted it.
    pub fn connect(address: &str, auth: &Auth) -> Result<Connection, NatsError> {
        Connection::connect_with(address, auth, &Limits::default())
    }

    /// [`Connection::connect`], with `limits`.
    pub fn connect_with(
        address: &str,
        auth: &Auth,
        limits: &Limits,
    ) -> Result<Connection, NatsError> {
        let addr = address
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| NatsError::BadAddress(address.to_owned()))?;
        let mut socket = TcpStream::connect_timeout(&addr, CONNECT_PATIENCE)?;
        socket.set_nodelay(true)?;
        socket.set_read_timeout(Some(CONNECT_PATIENCE))?;
        socket.set_write_timeout(Some(limits.write_patience))?;
        let mut decoder = Decoder::default();
        let max_payload = match read_frame(&mut socket, &mut decoder)? {
            Frame::Info(info) => max_payload(&info),
            other => return Err(unexpected(other)),
        };
        let connect = format!(
            "CONNECT {{\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true,\
             \"lang\":\"rust\",\"name\":\"brook-bridge\",\"version\":\"{}\",\"protocol\":1{}}}\r\nPING\r\n",
            env!("CARGO_PKG_VERSION"),
            auth.connect_fields()
        );
        socket.write_all(connect.as_bytes())?;
        loop {
            match read_frame(&mut socket, &mut decoder)? {
                Frame::Pong => break,
                Frame::Err(text) => return Err(NatsError::Server(text)),
                Frame::Ok | Frame::Info(_) => {}
                other => return Err(unexpected(other)),
            }
        }
        // From now on a read that times out is the reader's cue to PING.
        socket.set_read_timeout(Some(limits.ping_every))?;
        let inbox = inbox_prefix();
        let writer = Arc::new(Mutex::new(BufWriter::with_capacity(
            64 << 10,
            socket.try_clone()?,
        )));
        let (sender, events) = crossbeam_channel::bounded(limits.events.max(1));
        let reading = (socket.try_clone()?, writer.clone());
        thread::Builder::new()
            .name("nats-reader".into())
            .spawn(move || read_events(reading.0, decoder, reading.1, sender))?;
        let connection = Connection {
            address: address.to_owned(),
            socket,
            writer,
            events,
            inbox,
            next_request: 0,
            next_sid: INBOX_SID + 1,
            max_payload,
        };
        let inbox_subjects = format!("{}.*", connection.inbox);
        connection.send(format!("SUB {inbox_subjects} {INBOX_SID}\r\n").as_bytes())?;
        log::info!("connected to NATS at {address}");
        Ok(connection)
    }

    /// The address this connection went to.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The largest message (headers and payload) the server takes, as its
    /// `INFO` said; a larger one would make it close the connection.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Messages and the loss of the connection, in arrival order.
    pub fn events(&self) -> &Receiver<Event> {
        &self.events
    }

    /// A new subject of this connection's inbox, to which replies come.
    pub fn new_inbox(&mut self) -> String {
        self.next_request += 1;
        format!("{}.{}", self.inbox, self.next_request)
    }

    /// Subscribes to `subject`; returns the sid its messages carry.
    pub fn subscribe(&mut self, subject: &str) -> Result<u64, NatsError> {
        let sid = self.next_sid;
        self.next_sid += 1;
        self.send(format!("SUB {subject} {sid}\r\n").as_bytes())?;
        Ok(sid)
    }

    /// Queues a `PUB`; it goes out on [`Connection::flush`].
    pub fn publish(
        &self,
        subject: &str,
        reply: Option<&str>,
        payload: &[u8],
    ) -> Result<(), NatsError> {
        let reply = reply.map(|r| format!(" {r}")).unwrap_or_default();
        let mut writer = self.writer.lock();
        write!(writer, "PUB {subject}{reply} {}\r\n", payload.len())?;
        writer.write_all(payload)?;
        writer.write_all(b"\r\n")?;
        Ok(())
    }

    /// Queues an `HPUB` with `headers`; it goes out on
    /// [`Connection::flush`].
    pub fn publish_with_headers(
        &self,
        subject: &str,
        reply: Option<&str>,
        headers: &[(&str, &str)],
        payload: &[u8],
    ) -> Result<(), NatsError> {
        let block = header_block(headers);
        let reply = reply.map(|r| format!(" {r}")).unwrap_or_default();
        let total = block.len() + payload.len();
        let mut writer = self.writer.lock();
        write!(writer, "HPUB {subject}{reply} {} {total}\r\n", block.len())?;
        writer.write_all(block.as_bytes())?;
        writer.write_all(payload)?;
        writer.write_all(b"\r\n")?;
        Ok(())
    }

    /// Sends everything queued.
    pub fn flush(&self) -> Result<(), NatsError> {
        self.writer.lock().flush()?;
        Ok(())
    }

    /// Publishes `payload` to `subject` with a reply inbox and waits up to
    /// `patience` for the one reply. Other messages that arrive meanwhile
    /// are dropped (logged): use it before streaming starts.
    pub fn request(
        &mut self,
        subject: &str,
        payload: &[u8],
        patience: Duration,
    ) -> Result<Message, NatsError> {
        let inbox = self.new_inbox();
        self.publish(subject, Some(&inbox), payload)?;
        self.flush()?;
        let deadline = Instant::now() + patience;
        loop {
            match self.next_event(deadline)? {
                Some(message) if message.subject == inbox => return Ok(message),
                Some(message) => log::debug!("dropped a stale message on {}", message.subject),
                None => return Err(NatsError::Timeout("a request's reply")),
            }
        }
    }

    /// The next message before `deadline` (`None` if none came), or the
    /// error that ended the connection.
    pub fn next_event(&self, deadline: Instant) -> Result<Option<Message>, NatsError> {
        match self.events.recv_deadline(deadline) {
            Ok(Event::Message(message)) => Ok(Some(message)),
            Ok(Event::Lost(error)) => Err(error),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(NatsError::Closed),
        }
    }

    fn send(&self, bytes: &[u8]) -> Result<(), NatsError> {
        send_now(&self.writer, bytes)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let _ = self.writer.lock().flush();
        let _ = self.socket.shutdown(Shutdown::Both);
    }
}

/// A new connection's inbox prefix, `_INBOX.<32 random hex digits>`.
fn inbox_prefix() -> String {
    format!("_INBOX.{}", random_hex(INBOX_RANDOM_BYTES))
}

/// `NATS/1.0`, a `Key: Value` line per header, and an empty line.
fn header_block(headers: &[(&str, &str)]) -> String {
    let mut block = String::from("NATS/1.0\r\n");
    for (key, value) in headers {
        block.push_str(&format!("{key}: {value}\r\n"));
    }
    block.push_str("\r\n");
    block
}

/// What a message with `headers` and `payload` counts against the
/// server's [`Connection::max_payload`]: the length of its header block
/// (`NATS/1.0`, a `Key: Value` line per header, an empty line), counted
/// without writing it, and the payload's.
pub fn message_size(headers: &[(&str, &str)], payload: &[u8]) -> usize {
    let lines: usize = headers.iter().map(|(k, v)| k.len() + 2 + v.len() + 2).sum();
    "NATS/1.0\r\n".len() + lines + 2 + payload.len()
}

/// The `max_payload` of an `INFO`'s JSON (NATS's default, 1 MiB, if it
/// has none). One number is all the bridge needs of it, so it is found by
/// its key rather than by a JSON reader (`jetstream.rs` has one, but sits
/// above this file).
fn max_payload(info: &str) -> usize {
    const KEY: &str = "\"max_payload\":";
    info.find(KEY)
        .map(|at| info[at + KEY.len()..].trim_start())
        .and_then(|rest| {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            rest[..digits].parse().ok()
        })
        .unwrap_or(1 << 20)
}

fn unexpected(frame: Frame) -> NatsError {
    NatsError::Protocol(ProtocolError::UnknownOperation(format!("{frame:?}")))
}

/// Reads until the decoder has a whole frame (the handshake's reads).
fn read_frame(socket: &mut TcpStream, decoder: &mut Decoder) -> Result<Frame, NatsError> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(frame) = decoder.next_frame()? {
            return Ok(frame);
        }
        match read_chunk(socket, &mut chunk)? {
            Some(0) => return Err(NatsError::Closed),
            Some(n) => decoder.push(&chunk[..n]),
            None => return Err(NatsError::Timeout("the server's handshake")),
        }
    }
}

/// The reader thread: decodes frames, answers `PING`s, forwards the rest,
/// sends a `PING` of its own after a read timeout (a quiet server), and
/// ends with [`Event::Lost`].
fn read_events(
    mut socket: TcpStream,
    mut decoder: Decoder,
    writer: Arc<Mutex<BufWriter<TcpStream>>>,
    events: Sender<Event>,
) {
    let mut pongs_owed = 0;
    let error = loop {
        match forward_frames(&mut decoder, &writer, &events, &mut pongs_owed) {
            Ok(true) => {}
            Ok(false) => return,
            Err(error) => break error,
        }
        let mut chunk = [0u8; 64 << 10];
        match read_chunk(&mut socket, &mut chunk) {
            Ok(Some(0)) => break NatsError::Closed,
            Ok(Some(n)) => decoder.push(&chunk[..n]),
            Ok(None) => {
                if pongs_owed >= MAX_PONGS_OWED {
                    break NatsError::Timeout("PONGs to the client's PINGs");
                }
                if let Err(error) = send_now(&writer, b"PING\r\n") {
                    break error;
                }
                pongs_owed += 1;
            }
            Err(e) => break e.into(),
        }
    };
    let _ = events.send(Event::Lost(error));
}

/// One read into `chunk`: `Some(n)` bytes (`Some(0)` when the server
/// closed), or `None` when the socket's read timeout passed first. A read
/// a signal interrupted is made again.
fn read_chunk(socket: &mut TcpStream, chunk: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        match socket.read(chunk) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        }
    }
}

/// Writes `bytes` and flushes everything queued before them.
fn send_now(writer: &Mutex<BufWriter<TcpStream>>, bytes: &[u8]) -> Result<(), NatsError> {
    let mut writer = writer.lock();
    writer.write_all(bytes)?;
    writer.flush()?;
    Ok(())
}

/// Forwards every whole frame decoded so far. `Ok(false)` when nobody
/// listens any more.
fn forward_frames(
    decoder: &mut Decoder,
    writer: &Mutex<BufWriter<TcpStream>>,
    events: &Sender<Event>,
    pongs_owed: &mut u32,
) -> Result<bool, NatsError> {
    while let Some(frame) = decoder.next_frame()? {
        let event = match frame {
            Frame::Message(message) => Event::Message(message),
            Frame::Ping => {
                send_now(writer, b"PONG\r\n")?;
                continue;
            }
            Frame::Pong => {
                *pongs_owed = 0;
                continue;
            }
            // The server closes the connection after most errors; after
            // the others (a permissions violation) the session cannot go
            // on either. The text is what the logs need.
            Frame::Err(text) => return Err(NatsError::Server(text)),
            Frame::Ok | Frame::Info(_) => continue,
        };
        match events.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(NatsError::Overrun(events.capacity().unwrap_or(0)))
            }
            Err(TrySendError::Disconnected(_)) => return Ok(false),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `bytes` fed `chunk` bytes at a time.
    fn decode(bytes: &[u8], chunk: usize) -> Result<Vec<Frame>, ProtocolError> {
        let mut decoder = Decoder::default();
        let mut frames = Vec::new();
        for piece in bytes.chunks(chunk.max(1)) {
            decoder.push(piece);
            while let Some(frame) = decoder.next_frame()? {
                frames.push(frame);
            }
        }
        Ok(frames)
    }

    const STREAM: &[u8] = b"INFO {\"server_id\":\"x\"}\r\nPING\r\n+OK\r\n\
        MSG orders.eu 7 12\r\nhello\r\nworld\r\n\
        MSG a 1 _INBOX.x.1 0\r\n\r\n\
        HMSG orders.us 2 $JS.ACK.S.C.1.2.3 38 43\r\nNATS/1.0\r\nNats-Msg-Id: orders.us:0\r\n\r\nhello\r\n\
        HMSG _INBOX.x.2 3 32 32\r\nNATS/1.0 408 Request Timeout\r\n\r\n\r\n\
        -ERR 'Authorization Violation'\r\nPONG\r\n";

    fn expected() -> Vec<Frame> {
        vec![
            Frame::Info("{\"server_id\":\"x\"}".into()),
            Frame::Ping,
            Frame::Ok,
            Frame::Message(Message {
                subject: "orders.eu".into(),
                sid: 7,
                payload: b"hello\r\nworld".to_vec(),
                ..Message::default()
            }),
            Frame::Message(Message {
                subject: "a".into(),
                sid: 1,
                reply: Some("_INBOX.x.1".into()),
                ..Message::default()
            }),
            Frame::Message(Message {
                subject: "orders.us".into(),
                sid: 2,
                reply: Some("$JS.ACK.S.C.1.2.3".into()),
                headers: vec![("Nats-Msg-Id".into(), "orders.us:0".into())],
                payload: b"hello".to_vec(),
                ..Message::default()
            }),
            Frame::Message(Message {
                subject: "_INBOX.x.2".into(),
                sid: 3,
                status: Some(408),
                ..Message::default()
            }),
            Frame::Err("Authorization Violation".into()),
            Frame::Pong,
        ]
    }

    #[test]
    fn frames_decode_the_same_in_any_chunking() {
        for chunk in [1, 2, 3, 5, 7, 16, 64, STREAM.len()] {
            assert_eq!(decode(STREAM, chunk).unwrap(), expected(), "chunk {chunk}");
        }
    }

    #[test]
    fn headers_are_found_by_any_case() {
        let frames = decode(STREAM, STREAM.len()).unwrap();
        let Frame::Message(message) = &frames[5] else {
            panic!("not a message: {:?}", frames[5]);
        };
        assert_eq!(message.header("nats-msg-id"), Some("orders.us:0"));
        assert_eq!(message.header("Nats-Expected-Stream"), None);
    }

    #[test]
    fn nonsense_is_an_error_and_nothing_follows_it() {
        let mut decoder = Decoder::default();
        decoder.push(b"HELLO there\r\nPING\r\n");
        assert_eq!(
            decoder.next_frame(),
            Err(ProtocolError::UnknownOperation("HELLO".into()))
        );
        assert_eq!(decoder.next_frame(), Ok(None));
    }

    #[test]
    fn bad_message_lines_and_bodies_are_errors() {
        let cases: &[&[u8]] = &[
            b"MSG a\r\n",
            b"MSG a b 3\r\nabc\r\n",
            b"MSG a 1 x y 3\r\n",
            b"HMSG a 1 9 3\r\n",
            b"MSG a 1 3\r\nabcd\r\n",
            b"HMSG a 1 5 5\r\nHTTP/\r\n",
        ];
        for case in cases {
            assert!(
                decode(case, 1).is_err(),
                "{:?}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn lengths_are_checked_before_allocating() {
        let huge = format!("MSG a 1 {}\r\n", MAX_BODY + 1);
        assert_eq!(
            decode(huge.as_bytes(), 4),
            Err(ProtocolError::BodyTooLarge(MAX_BODY + 1))
        );
        let endless = vec![b'x'; MAX_CONTROL_LINE + 2];
        assert_eq!(decode(&endless, 4096), Err(ProtocolError::LineTooLong));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let mut bytes = STREAM.to_vec();
            for _ in 0..4 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed as usize) % bytes.len();
                bytes[at] = (seed >> 32) as u8;
            }
            let _ = decode(&bytes, (seed % 13) as usize + 1);
        }
    }

    #[test]
    fn message_size_counts_the_header_block_as_sent() {
        let headers = [("Nats-Msg-Id", "orders.eu:7"), ("A", "")];
        let size = message_size(&headers, b"hello");
        assert_eq!(size, header_block(&headers).len() + 5);
    }

    #[test]
    fn inbox_prefixes_cannot_be_guessed() {
        let (a, b) = (inbox_prefix(), inbox_prefix());
        assert_ne!(a, b);
        let random = a.strip_prefix("_INBOX.").unwrap();
        assert_eq!(random.len(), 2 * INBOX_RANDOM_BYTES);
        assert!(random.bytes().all(|c| c.is_ascii_hexdigit()), "{a}");
    }

    #[test]
    fn max_payload_is_read_from_info() {
        let info = r#"{"server_id":"x","max_payload": 8388608,"headers":true}"#;
        assert_eq!(max_payload(info), 8 << 20);
        assert_eq!(max_payload(r#"{"max_payload":"x"}"#), 1 << 20);
        assert_eq!(max_payload("{}"), 1 << 20);
    }

    #[test]
    fn credentials_are_json_quoted_and_hidden_from_debug() {
        let auth = Auth::UserPassword {
            user: "al\"ice".into(),
            password: "se cret".into(),
        };
        assert_eq!(
            auth.connect_fields(),
            ",\"user\":\"al\\\"ice\",\"pass\":\"se cret\""
        );
        assert!(!format!("{auth:?}").contains("se cret"));
    }
}
