//! The reader thread: one per socket, the only code that reads from it.
//!
//! It loops: `read()` whatever the kernel has into a buffer, let the decoder
//! take every complete request out of it, and send the lot to the dispatcher
//! as one [`Command::Requests`]. Bytes of a request that is not complete yet
//! stay in the buffer for the next `read()`. So a publisher that writes a
//! thousand frames at once costs one read and one channel send, and a client
//! that dribbles one byte at a time works just the same.
//!
//! The first byte a client sends picks the decoder: `0x00` (the high byte of
//! every binary action) starts the binary protocol (`wire/binary.rs`),
//! anything else the line protocol (`wire/line.rs`). Both decode into the
//! same requests (`wire/request.rs`).
//!
//! With `--auth-file`, every request the decoder makes passes the
//! connection's guard (`auth/guard.rs`) before it is forwarded: a login
//! is answered there, and what the user may not do becomes a refusal.
//! Without one the guard lets everything through.
//!
//! A connection that is only ever a binary publisher never gets a writer
//! thread: the broker has nothing to say to it. The first time a client needs
//! an answer (a subscribe, an ack, an error, any line-protocol command), the
//! reader starts the writer thread and hands it to the dispatcher
//! ([`Command::Attach`]) ahead of that request.
//!
//! The reader is also where a client that does not read its answers is held
//! back: before taking more requests it waits while too many frames wait to
//! be written to the client, so TCP slows the client down rather than the
//! broker buffering answers for it without bound.
//!
//! A client must say something within `--handshake-timeout` of connecting,
//! or its reader stops: a connection that never speaks would hold a thread
//! for ever. With `--auth-file`, a line client must also have logged in by
//! then, or it is told so and closed; until it has, a `PUBN` payload is
//! skipped as it comes rather than buffered. After that a client may be
//! idle as long as it likes.
//!
//! When the client closes the socket or says `QUIT`, a read fails, or the
//! stream cannot be parsed any more, the reader tells the dispatcher
//! ([`Command::Detach`]) and ends. The dispatcher drops the writer, which
//! writes anything still queued (such as the error that explains a close)
//! and shuts the socket down.
//!
//! When the broker stops, it closes the [`Gate`] every reader passes to
//! hand requests to the dispatcher. What a reader handed in before is
//! carried out and answered in the dispatcher's last round; what it reads
//! after is thrown away, until the client closes its side or the broker
//! shuts the socket. Reading on keeps a client that is busy writing able
//! to finish and read its last replies, and leaves no unread bytes behind,
//! which would make the kernel answer the close with a reset. The gate
//! also counts the readers that are busy (holding bytes their client sent,
//! or throwing them away), and the stop waits for them before it shuts the
//! sockets and the process exits.
//!
//! A binary publisher that is never answered has no writer to carry an
//! error, so the commands that carry its messages carry a [`Hangup`] too:
//! the dispatcher's way to close the connection when it cannot store them
//! (the disk is full, or a limit such as `--max-topics` refuses them).
//!
//! A reader whose client publishes waits, when the in-memory store is
//! full, until it has room (`queue.rs`), unless its client has subscribed
//! or pulled: such a client's acks come behind its publishes, and are what
//! frees the store. After its first `SUB` or `PULL` the reader's commands
//! say so ([`WhenFull::Refuse`]), never wait for the store, and have their
//! publishes refused while it is full. The line is drawn at that request,
//! not at the read that carried it: a batch is cut in two there, so a
//! publish sent before it waits like any other, however TCP split the
//! stream (until the first `SUB` or `PULL` is forwarded, the client
//! holds no delivery, and its waiting pins nothing). (A binary connection
//! is a publisher or a subscriber from its first action, so only a line
//! client can be both.)

use std::io::{self, Read};
use std::net::{IpAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock, RwLockReadGuard};

use crate::auth::guard::{Guard, Speaks};
use crate::auth::Access;
use crate::ids::ConnId;
use crate::queue::{Command, CommandSender, Hangup, WhenFull};
use crate::wire::request::{Decoded, Limits, Refusal, Request};
use crate::wire::{binary, line};
use crate::writer::{self, Link, Listeners, Wire};

/// What every reader thread shares.
#[derive(Debug)]
pub struct ReaderContext {
    pub commands: CommandSender,
    pub limits: Limits,
    pub thread_stack_bytes: usize,
    /// How many frames may wait to be written to a client before its reader
    /// stops reading its requests (see [`MAX_UNREAD_REPLIES`]).
    pub max_pending_frames: usize,
    /// How long a new connection may take to send its first bytes.
    pub handshake_timeout: Duration,
    /// Closed when the broker stops: no request passes it after that.
    pub gate: Gate,
    /// The users and permissions of `--auth-file`, if it was given
    /// (`auth/`).
    pub access: Option<Arc<Access>>,
}

/// What stands between the readers and the dispatcher's queue: open while
/// the broker runs, closed once for good when it stops.
///
/// A reader holds it open while it hands requests over ([`Gate::pass`]),
/// and [`Gate::close`] waits for those readers. So every request is either
/// queued before the close returns, and the broker stops only after the
/// dispatcher has carried it out, or never queued at all: none is left
/// half-way, in the queue behind the dispatcher's last round.
///
/// It also counts the readers that are busy: from a read that brought
/// bytes until the reader waits in `read()` again, and all the while one
/// turned away throws away what its client still sends. A reader that is
/// not busy has nothing unread in its socket. The stop waits until none
/// is busy ([`Gate::wait_until_idle`]) before it shuts the sockets: a
/// socket closed with bytes unread in it is answered with a reset, which
/// can throw away the last replies the client has not read yet.
#[derive(Debug, Default)]
pub struct Gate {
    closed: RwLock<bool>,
    busy: AtomicUsize,
    /// Held to notify `went_idle`, so no wake-up is lost between a waiter
    /// looking at `busy` and starting to wait.
    idle: Mutex<()>,
    went_idle: Condvar,
}

impl Gate {
    /// Keeps the gate open for as long as the guard lives, or `None` if it
    /// is closed.
    pub fn pass(&self) -> Option<RwLockReadGuard<'_, bool>> {
        let closed = self.closed.read();
        (!*closed).then_some(closed)
    }

    /// Closes the gate, once every reader passing it has queued its
    /// requests (the dispatcher keeps taking them meanwhile).
    pub fn close(&self) {
        *self.closed.write() = true;
    }

    /// Waits until no reader is busy, or until `deadline`. Returns whether
    /// none is.
    pub fn wait_until_idle(&self, deadline: Instant) -> bool {
        let mut idle = self.idle.lock();
        while self.busy.load(Ordering::SeqCst) > 0 {
            if self.went_idle.wait_until(&mut idle, deadline).timed_out() {
                return self.busy.load(Ordering::SeqCst) == 0;
            }
        }
        true
    }

    fn count_busy(&self, busy: bool) {
        if busy {
            self.busy.fetch_add(1, Ordering::SeqCst);
        } else if self.busy.fetch_sub(1, Ordering::SeqCst) == 1 {
            let _idle = self.idle.lock();
            self.went_idle.notify_all();
        }
    }
}

/// How many answers a client may leave unread, on top of a full window of
/// deliveries, before its reader stops reading its requests until it
/// catches up. A client that pipelines requests is slowed down by TCP, and
/// one that never reads costs a bounded amount of memory.
pub const MAX_UNREAD_REPLIES: usize = 4096;

/// How many answered requests one [`Command::Requests`] carries at most, so
/// the reader checks between them that the client is reading.
const ANSWERED_PER_COMMAND: usize = 256;

/// How long a reader that has ended waits for its writer to end. The
/// dispatcher ends every writer, a linger after its last frames at most;
/// this bound only makes sure a reader thread is never kept for ever.
const WRITER_END_PATIENCE: Duration = Duration::from_secs(3600);

/// Reads a buffer's worth at a time. Small, so that thousands of idle
/// connections cost little; it grows while a client sends faster than that,
/// or to hold one large frame, and shrinks back once it is empty.
const INITIAL_BUFFER: usize = 4 << 10;
const BUSY_BUFFER: usize = 256 << 10;

/// Serves one connection until it closes. Runs on its own thread.
pub fn run(id: ConnId, stream: Arc<TcpStream>, context: Arc<ReaderContext>) {
    let hangup = Arc::new(Hangup::new(stream.clone()));
    let mut reader = Reader {
        id,
        deadline: Instant::now() + context.handshake_timeout,
        timed: false,
        hangup,
        stream,
        decoder: None,
        guard: Guard::Open,
        buffer: ReadBuffer::new(),
        writer: None,
        busy: false,
        when_full: WhenFull::Wait,
        context,
    };
    match reader.serve() {
        Ok(()) => log::debug!("conn {id}: closed"),
        // Info, not debug: a person at `nc` who has not typed yet sees the
        // connection end, and the log says why.
        Err(error @ (Stop::Silent(_) | Stop::NotLoggedIn(_))) => {
            log::info!("conn {id}: closed: {error}")
        }
        Err(Stop::BrokerStopping) => {
            // The dispatcher ends every session itself as it stops.
            reader.drain();
            return;
        }
        Err(error) => log::debug!("conn {id}: ended: {error}"),
    }
    if let Some(writer) = reader.writer.take() {
        let _ = reader.context.commands.send(Command::Detach { conn: id });
        // The socket stays open while the writer writes what it still
        // holds: the connection is counted until then (`descriptors.rs`), so
        // clients that close without reading cannot make the broker hold
        // more sockets than it counts.
        writer.wait_until_ended(Instant::now() + WRITER_END_PATIENCE);
    }
}

struct Reader {
    id: ConnId,
    /// When the client must have spoken, and with an auth file logged in,
    /// by (`--handshake-timeout` after it connected).
    deadline: Instant,
    /// Whether the socket's reads have a timeout now: until the deadline
    /// no longer applies.
    timed: bool,
    /// Handed to the dispatcher with the client's unanswered publishes.
    hangup: Arc<Hangup>,
    /// Shared with the writer thread: one socket, one file descriptor.
    stream: Arc<TcpStream>,
    /// Chosen by the first byte the client sends.
    decoder: Option<WireDecoder>,
    /// What the client may do, set up with the decoder (`auth/guard.rs`).
    guard: Guard,
    buffer: ReadBuffer,
    /// The link to this connection's writer, once the dispatcher has it.
    writer: Option<Link>,
    /// Whether the gate counts this reader as busy.
    busy: bool,
    /// What becomes of the client's publishes while the store is full:
    /// they wait, until it has forwarded a subscribe or a pull; from then
    /// on they are refused, never held.
    when_full: WhenFull,
    context: Arc<ReaderContext>,
}

/// Why a reader stops: the client said nothing in time, the socket failed,
/// the broker is stopping, the dispatcher has gone, or the client sent
/// something the stream cannot recover from.
#[derive(Debug)]
enum Stop {
    /// Nothing came within the handshake timeout, this long.
    Silent(Duration),
    /// A line client did not log in within the handshake timeout.
    NotLoggedIn(Duration),
    Io(io::Error),
    BrokerStopping,
    DispatcherGone,
    Fatal(Refusal),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Silent(timeout) => write!(
                f,
                "it sent nothing within --handshake-timeout ({timeout:?}) of connecting"
            ),
            Stop::NotLoggedIn(timeout) => write!(
                f,
                "it did not log in within --handshake-timeout ({timeout:?}) of connecting"
            ),
            Stop::Io(error) => write!(f, "{error}"),
            Stop::BrokerStopping => write!(f, "the broker is stopping"),
            Stop::DispatcherGone => write!(f, "broker shutting down"),
            Stop::Fatal(error) => write!(f, "closed after {error}"),
        }
    }
}

/// Requests taken out of the read buffer in one go.
#[derive(Default)]
struct Taken {
    requests: Vec<Decoded>,
    /// The request that ends the connection, if one came (it is the last
    /// of `requests` too).
    ending: Option<Decoded>,
    /// Whether the buffer holds no complete request any more.
    drained: bool,
}

impl Reader {
    /// Reads and forwards until the client closes or quits (`Ok`) or
    /// something stops the connection (`Err`).
    fn serve(&mut self) -> Result<(), Stop> {
        loop {
            if let Some(writer) = &self.writer {
                writer.wait_until_pending_at_most(self.context.max_pending_frames);
            }
            let taken = self.take_requests();
            if !taken.requests.is_empty() {
                self.forward(taken.requests)?;
            }
            match taken.ending {
                None => {}
                Some(Ok(_)) => return Ok(()),
                Some(Err(error)) => return Err(Stop::Fatal(error)),
            }
            if !taken.drained {
                self.check_deadline()
                    .or_else(|stop| self.close_with(stop))?;
            } else if self.read().or_else(|stop| self.close_with(stop))? == 0 {
                return Ok(());
            }
        }
    }

    /// Reads what the client has sent. Until the client has spoken (and,
    /// with an auth file, a line client has logged in) the read times out
    /// at the deadline. After that the client may be idle for ever (a
    /// subscriber waiting for messages is).
    fn read(&mut self) -> Result<usize, Stop> {
        let timeout = self.check_deadline()?;
        if timeout.is_some() || self.timed {
            self.stream.set_read_timeout(timeout).map_err(Stop::Io)?;
            self.timed = timeout.is_some();
        }
        self.set_busy(false);
        let read = match self.buffer.fill_from(&mut &*self.stream) {
            Err(error) if timeout.is_some() && is_timeout(&error) => return Err(self.too_late()),
            read => read.map_err(Stop::Io)?,
        };
        self.set_busy(read > 0);
        Ok(read)
    }

    /// The time left before the deadline, if it applies still; an error
    /// once it has passed.
    fn check_deadline(&self) -> Result<Option<Duration>, Stop> {
        if self.decoder.is_some() && !self.guard.awaits_login() {
            return Ok(None);
        }
        let left = self.deadline.saturating_duration_since(Instant::now());
        match left.is_zero() {
            true => Err(self.too_late()),
            false => Ok(Some(left)),
        }
    }

    /// Why the deadline passed: the client said nothing, or did not log in.
    fn too_late(&self) -> Stop {
        let timeout = self.context.handshake_timeout;
        match self.decoder {
            None => Stop::Silent(timeout),
            Some(_) => Stop::NotLoggedIn(timeout),
        }
    }

    /// A client that did not log in in time is told so before it is
    /// closed; any other stop ends the connection as it is.
    fn close_with<T>(&mut self, stop: Stop) -> Result<T, Stop> {
        let Stop::NotLoggedIn(_) = stop else {
            return Err(stop);
        };
        let reason = format!("authentication required: {stop}, closing");
        let refusal = Refusal::new(reason.into(), true, stop.to_string().into());
        self.forward(vec![Err(refusal)])?;
        Err(stop)
    }

    /// Takes complete requests out of the buffer, up to
    /// [`ANSWERED_PER_COMMAND`] that will be answered, stopping after one
    /// that ends the connection (a `QUIT`, or an error the stream cannot
    /// recover from).
    fn take_requests(&mut self) -> Taken {
        let mut taken = Taken::default();
        let decoder = match (&mut self.decoder, self.buffer.unread().first()) {
            (Some(decoder), _) => decoder,
            (None, Some(&first)) => {
                let decoder = WireDecoder::for_first_byte(first, self.context.limits);
                log::debug!("conn {}: speaks the {} protocol", self.id, decoder.name());
                self.guard = self.guard_for(&decoder);
                self.decoder.insert(decoder)
            }
            (None, None) => {
                taken.drained = true;
                return taken;
            }
        };
        let mut answered = 0;
        while answered < ANSWERED_PER_COMMAND {
            let awaits_login = self.guard.awaits_login();
            if awaits_login && Instant::now() >= self.deadline {
                // Past the deadline: stop here, and `serve` closes the
                // connection, however many failed AUTHs it has queued.
                break;
            }
            decoder.await_login(awaits_login);
            let (used, decoded) = decoder.decode(self.buffer.unread());
            self.buffer.consume(used);
            let Some(request) = decoded else {
                taken.drained = true;
                break;
            };
            let request = self.guard.admit(request);
            if is_answered(&request) {
                answered += 1;
            }
            if ends_connection(&request) {
                taken.ending = Some(request.clone());
                taken.requests.push(request);
                break;
            }
            taken.requests.push(request);
        }
        taken
    }

    /// The guard for a client that speaks `decoder`'s protocol. Failed
    /// logins are counted per peer address; one that cannot be told
    /// counts as `0.0.0.0`.
    fn guard_for(&self, decoder: &WireDecoder) -> Guard {
        let speaks = match decoder {
            WireDecoder::Binary(_) => Speaks::Binary,
            WireDecoder::Line(_) => Speaks::Line,
        };
        let address = self
            .stream
            .peer_addr()
            .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
        let access = self.context.access.as_ref();
        Guard::new(access, self.id, address, speaks, &self.hangup)
    }

    /// Sends requests to the dispatcher, attaching a writer first if any of
    /// them will be answered, unless the broker is stopping. The client's
    /// first subscribe or pull starts a second command, and every command
    /// after it has its publishes refused while the store is full.
    fn forward(&mut self, mut requests: Vec<Decoded>) -> Result<(), Stop> {
        let context = Arc::clone(&self.context);
        let _open = context.gate.pass().ok_or(Stop::BrokerStopping)?;
        if self.writer.is_none() && requests.iter().any(is_answered) {
            self.attach()?;
        }
        if self.when_full == WhenFull::Wait {
            if let Some(first) = requests.iter().position(asks_for_deliveries) {
                let from_first = requests.split_off(first);
                if !requests.is_empty() {
                    self.send(requests)?;
                }
                requests = from_first;
                self.when_full = WhenFull::Refuse;
            }
        }
        self.send(requests)
    }

    /// Sends one command of requests to the dispatcher. One that may wait
    /// waits here while the store is full (`queue.rs`).
    fn send(&self, requests: Vec<Decoded>) -> Result<(), Stop> {
        let command = Command::requests(self.id, requests, Some(&self.hangup), self.when_full);
        self.context
            .commands
            .send(command)
            .map_err(|_| Stop::DispatcherGone)
    }

    /// Reads and throws away what the client sends, until it closes its
    /// side or the socket is shut: the broker is stopping, and takes no
    /// more requests.
    fn drain(&mut self) {
        loop {
            let unread = self.buffer.unread().len();
            self.buffer.consume(unread);
            if !matches!(self.buffer.fill_from(&mut &*self.stream), Ok(read) if read > 0) {
                return;
            }
        }
    }

    /// Tells the gate whether this reader is busy (see [`Gate`]).
    fn set_busy(&mut self, busy: bool) {
        if busy != self.busy {
            self.busy = busy;
            self.context.gate.count_busy(busy);
        }
    }

    fn attach(&mut self) -> Result<(), Stop> {
        let wire = match self.decoder {
            Some(WireDecoder::Line(_)) => Wire::Line,
            _ => Wire::Binary,
        };
        let (commands, conn) = (self.context.commands.clone(), self.id);
        let listeners = Listeners {
            dispatcher: Box::new(move || {
                let _ = commands.send(Command::Written { conn });
            }),
            reader: thread::current(),
        };
        let stack = self.context.thread_stack_bytes;
        let writer = writer::spawn(self.id, self.stream.clone(), wire, listeners, stack)
            .map_err(Stop::Io)?;
        self.writer = Some(writer.link().clone());
        self.context
            .commands
            .send(Command::Attach {
                conn: self.id,
                writer,
            })
            .map_err(|_| Stop::DispatcherGone)
    }
}

impl Drop for Reader {
    /// A reader that has ended, however it ended, is not busy.
    fn drop(&mut self) {
        self.set_busy(false);
    }
}

/// Whether a read failed because its timeout passed (which Linux reports
/// as `WouldBlock`).
fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Whether the broker answers `request` (every refusal is answered).
fn is_answered(request: &Decoded) -> bool {
    request.as_ref().map_or(true, Request::needs_reply)
}

/// Whether `request` subscribes or pulls: the client consumes, and its
/// acks may be what frees a full store (its pulls would wait behind a held
/// publish too). The reader remembers it, whatever comes after: an
/// unsubscribe leaves deliveries to answer, and the rule is one a client
/// can tell from what it sent.
fn asks_for_deliveries(request: &Decoded) -> bool {
    matches!(
        request,
        Ok(Request::Subscribe { .. } | Request::Pull { .. })
    )
}

/// Whether the connection ends after `request`.
fn ends_connection(request: &Decoded) -> bool {
    match request {
        Ok(request) => *request == Request::Quit,
        Err(error) => error.is_fatal(),
    }
}

/// The decoder of whichever protocol the client speaks.
#[derive(Debug)]
enum WireDecoder {
    Binary(binary::BinaryDecoder),
    Line(line::LineDecoder),
}

impl WireDecoder {
    /// A binary client always starts with `0x00`, the high byte of its
    /// first action; anything else is taken for the line protocol.
    fn for_first_byte(first: u8, limits: Limits) -> WireDecoder {
        match first {
            0 => WireDecoder::Binary(binary::BinaryDecoder::new(limits)),
            _ => WireDecoder::Line(line::LineDecoder::new(limits)),
        }
    }

    /// Tells a line decoder whether a login is awaited (the binary
    /// protocol has no payload to skip: an anonymous binary client has
    /// `--allow-anonymous-binary`'s rights).
    fn await_login(&mut self, awaited: bool) {
        if let WireDecoder::Line(decoder) = self {
            decoder.await_login(awaited);
        }
    }

    /// The protocol's name, for the log.
    fn name(&self) -> &'static str {
        match self {
            WireDecoder::Binary(_) => "binary",
            WireDecoder::Line(_) => "line",
        }
    }

    fn decode(&mut self, input: &[u8]) -> (usize, Option<Decoded>) {
        match self {
            WireDecoder::Binary(decoder) => decoder.decode(input),
            WireDecoder::Line(decoder) => decoder.decode(input),
        }
    }
}

/// A byte buffer with a read end (`start`) and a write end (`end`): bytes in
/// `start..end` have been received but not yet decoded.
struct ReadBuffer {
    bytes: Vec<u8>,
    start: usize,
    end: usize,
}

impl ReadBuffer {
    fn new() -> ReadBuffer {
        ReadBuffer {
            bytes: vec![0; INITIAL_BUFFER],
            start: 0,
            end: 0,
        }
    }

    fn unread(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.bytes.len() > BUSY_BUFFER {
                // A frame larger than a busy buffer has gone. Shrink to the
                // busy size, not the initial one: a client sending large
                // frames would otherwise pay to regrow it for every frame.
                self.bytes.truncate(BUSY_BUFFER);
                self.bytes.shrink_to_fit();
            }
        }
    }

    /// One `read()` into the free space, making room first. Returns the
    /// number of bytes read; 0 means the client closed its side.
    fn fill_from(&mut self, source: &mut impl Read) -> io::Result<usize> {
        if self.end == self.bytes.len() {
            self.make_room();
        }
        loop {
            match source.read(&mut self.bytes[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Moves unread bytes to the front; if that frees nothing, or the client
    /// is keeping a small buffer full, doubles the buffer. The decoder has
    /// checked every length it waits for, so growth is bounded by the limits.
    fn make_room(&mut self) {
        if self.start > 0 {
            self.bytes.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.bytes.len() || self.bytes.len() < BUSY_BUFFER {
            let grown = self.bytes.len() * 2;
            self.bytes.resize(grown, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_is_idle_only_once_every_busy_reader_has_left() {
        let gate = Arc::new(Gate::default());
        gate.count_busy(true);
        gate.count_busy(true);
        gate.count_busy(false);
        assert!(!gate.wait_until_idle(Instant::now()), "one reader is busy");

        let reader = Arc::clone(&gate);
        let leaving = thread::spawn(move || reader.count_busy(false));
        let patience = Instant::now() + Duration::from_secs(10);
        assert!(gate.wait_until_idle(patience), "the last reader left");
        leaving.join().unwrap();
    }
}
