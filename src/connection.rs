//! The reader thread: one per socket, the only code that reads from it.
//!
//! It loops: `read()` whatever the kernel has into a buffer, let the
//! [`Decoder`] take every complete frame out of it, and send the lot to the
//! dispatcher as one [`Command::Requests`]. Bytes of a frame that is not
//! complete yet stay in the buffer for the next `read()`. So a publisher that
//! writes a thousand frames at once costs one read and one channel send, and a
//! client that dribbles one byte at a time works just the same.
//!
//! A connection that is only ever a publisher never gets a writer thread: the
//! broker has nothing to say to it. The first time a client needs an answer
//! (a subscribe, an ack, or an error), the reader starts the writer thread and
//! hands it to the dispatcher ([`Command::Attach`]) ahead of that request.
//!
//! When the client closes the socket, a read fails, or the stream cannot be
//! parsed any more, the reader tells the dispatcher ([`Command::Detach`]) and
//! ends. The dispatcher drops the writer, which writes anything still queued
//! (such as the error that explains a close) and shuts the socket down.

use std::io::{self, Read};
use std::net::TcpStream;
use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::dispatcher::{Command, ConnId};
use crate::protocol::{Decoder, Limits, ProtocolError, Request};
use crate::writer;

/// What every reader thread shares.
#[derive(Debug)]
pub struct ReaderContext {
    pub commands: Sender<Command>,
    pub limits: Limits,
    pub thread_stack_bytes: usize,
}

/// Reads a buffer's worth at a time. Small, so that thousands of idle
/// connections cost little; it grows while a client sends faster than that,
/// or to hold one large frame, and shrinks back once it is empty.
const INITIAL_BUFFER: usize = 4 << 10;
const BUSY_BUFFER: usize = 256 << 10;

/// Serves one connection until it closes. Runs on its own thread.
pub fn run(id: ConnId, stream: Arc<TcpStream>, context: Arc<ReaderContext>) {
    let mut reader = Reader {
        id,
        stream,
        decoder: Decoder::new(context.limits),
        buffer: ReadBuffer::new(),
        attached: false,
        context,
    };
    match reader.serve() {
        Ok(()) => log::debug!("conn {id}: closed"),
        Err(error) => log::debug!("conn {id}: ended: {error}"),
    }
    if reader.attached {
        let _ = reader.context.commands.send(Command::Detach { conn: id });
    }
}

struct Reader {
    id: ConnId,
    /// Shared with the writer thread: one socket, one file descriptor.
    stream: Arc<TcpStream>,
    decoder: Decoder,
    buffer: ReadBuffer,
    /// Whether the dispatcher has this connection's writer.
    attached: bool,
    context: Arc<ReaderContext>,
}

/// Why a reader stops: the socket failed, the dispatcher has gone, or the
/// client sent something the stream cannot recover from.
#[derive(Debug)]
enum Stop {
    Io(io::Error),
    DispatcherGone,
    Fatal(ProtocolError),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Io(error) => write!(f, "{error}"),
            Stop::DispatcherGone => write!(f, "broker shutting down"),
            Stop::Fatal(error) => write!(f, "closed after {error}"),
        }
    }
}

impl Reader {
    /// Reads and forwards until the client closes (`Ok`) or something stops
    /// the connection (`Err`).
    fn serve(&mut self) -> Result<(), Stop> {
        loop {
            if self
                .buffer
                .fill_from(&mut &*self.stream)
                .map_err(Stop::Io)?
                == 0
            {
                return Ok(());
            }
            let (requests, fatal) = self.decode_buffered();
            if !requests.is_empty() {
                self.forward(requests)?;
            }
            if let Some(error) = fatal {
                return Err(Stop::Fatal(error));
            }
        }
    }

    /// Takes every complete request out of the buffer. Stops after a fatal
    /// error, which is returned apart as well as in the list.
    fn decode_buffered(&mut self) -> (Vec<Result<Request, ProtocolError>>, Option<ProtocolError>) {
        let mut requests = Vec::new();
        loop {
            let (used, decoded) = self.decoder.decode(self.buffer.unread());
            self.buffer.consume(used);
            match decoded {
                None => return (requests, None),
                Some(Err(error)) if error.is_fatal() => {
                    requests.push(Err(error.clone()));
                    return (requests, Some(error));
                }
                Some(request) => requests.push(request),
            }
        }
    }

    /// Sends requests to the dispatcher, attaching a writer first if any of
    /// them will be answered.
    fn forward(&mut self, requests: Vec<Result<Request, ProtocolError>>) -> Result<(), Stop> {
        let needs_writer = requests
            .iter()
            .any(|r| !matches!(r, Ok(Request::Publish { .. })));
        if needs_writer && !self.attached {
            self.attach()?;
        }
        let command = Command::Requests {
            conn: self.id,
            requests,
        };
        self.context
            .commands
            .send(command)
            .map_err(|_| Stop::DispatcherGone)
    }

    fn attach(&mut self) -> Result<(), Stop> {
        let stream = self.stream.clone();
        let writer =
            writer::spawn(self.id, stream, self.context.thread_stack_bytes).map_err(Stop::Io)?;
        self.attached = true;
        self.context
            .commands
            .send(Command::Attach {
                conn: self.id,
                writer,
            })
            .map_err(|_| Stop::DispatcherGone)
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
