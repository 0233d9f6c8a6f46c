//! The writer thread: the only code that writes to a connection's socket.
//!
//! The dispatcher never touches a socket. It hands each connection's writer a
//! [`Batch`] of [`Outgoing`] frames over a channel and moves on, so a slow
//! client can only ever stall its own writer thread, never the dispatcher or
//! anyone else. The writer turns frames into bytes and writes them.
//!
//! Two things make this fast:
//!
//! - Coalescing. After taking one batch off its channel the writer takes every
//!   other batch already waiting, encodes them all, and hands the lot to the
//!   kernel in one `writev` call. Under load one system call carries hundreds
//!   of deliveries; when idle, a lone delivery goes out at once.
//! - No payload copies. Headers are encoded into one scratch buffer, but a
//!   payload is written straight from its shared [`Payload`] buffer through an
//!   `IoSlice`, so ten subscribers of a 1 MiB message cost ten pointers, not
//!   ten megabytes. Small payloads are copied into the scratch buffer instead,
//!   since for a few dozen bytes a copy is cheaper than an extra `iovec`.
//!
//! The writer exits when its channel closes (the dispatcher dropped the
//! connection) or a write fails. After its last frame it shuts down the
//! sending side of the socket, so the client sees the end of the stream
//! (a FIN, not a reset) once it has read everything; after a failed write
//! it shuts both sides, which also ends the connection's reader.
//!
//! The [`Link`] between the writer and the others counts the frames handed
//! over and not yet written, and that count is how the broker keeps a
//! client from making it buffer without bound:
//!
//! - Replies: a client may pipeline requests faster than it reads the
//!   answers. Its reader thread stops reading while too many answers wait
//!   (and the writer wakes it once it has written), so TCP slows the client
//!   down instead of the broker buffering for it.
//! - Deliveries that need no ack (a line-protocol subscriber that is not
//!   `manual`, or a `PULL`) count as done once written, so the dispatcher
//!   queues more only while few frames are pending. When it stops for that
//!   reason it asks to be told when the writer next writes, and the writer
//!   tells it (a `Command::Written` on its queue, see `queue.rs`).

use std::io::{self, IoSlice, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::{self, Thread};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex};

use crate::ids::{ConnId, Payload};
use crate::wire::reply::{Outgoing, Reply};
use crate::wire::{binary, line_replies};

/// Which protocol a connection speaks, and so how its frames are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Binary,
    Line,
}

/// Frames handed over in one channel send.
pub type Batch = Vec<Outgoing>;

/// The replies among `frames`.
pub fn replies_mut(frames: &mut [Outgoing]) -> impl Iterator<Item = &mut Reply> {
    frames.iter_mut().filter_map(|frame| match frame {
        Outgoing::Reply(reply) => Some(reply),
        Outgoing::Delivery { .. } => None,
    })
}

/// The dispatcher's end of a writer thread.
#[derive(Debug)]
pub struct Writer {
    frames: Sender<Batch>,
    link: Link,
}

/// What the dispatcher and the reader can know and do about a writer
/// besides sending it frames: how far behind it is, asking to hear when it
/// has written, and cutting it short.
#[derive(Debug, Clone)]
pub struct Link {
    state: Arc<LinkState>,
    /// Only to shut the socket: a link kept after the writer ended (by a
    /// lingering dispatcher, say) must not keep its file descriptor open.
    stream: Weak<TcpStream>,
}

#[derive(Debug, Default)]
struct LinkState {
    /// Frames packed for the thread and not yet written to the socket,
    /// and the bytes of message payload among them.
    pending_frames: AtomicUsize,
    pending_payload_bytes: AtomicUsize,
    /// Set by the dispatcher to be told (`Command::Written`) after the next
    /// write; cleared by the writer when it tells.
    dispatcher_waits: AtomicBool,
    /// Set by the reader before it parks until the writer has written.
    reader_waits: AtomicBool,
    /// Parcels packed and not yet posted (the syncer may hold them until
    /// the disk has what they tell of), and when the last one was posted:
    /// a closing connection's linger only starts once its frames have
    /// reached the writer.
    unposted: AtomicUsize,
    last_posted: Mutex<Option<Instant>>,
    /// Set by the dispatcher for a connection it closes with an error:
    /// once every frame packed for it is written, the writer shuts the
    /// socket ([`Link::close_when_written`]).
    close_when_written: AtomicBool,
    /// Set when the writer thread has ended: nothing will be written again.
    ended: Mutex<bool>,
    /// Wakes whoever waits for `ended` ([`Link::wait_until_ended`]).
    ended_signal: Condvar,
}

/// Frames packed for a writer thread and not yet on its channel. The
/// dispatcher packs a session's frames at the end of a round; they are
/// posted once everything they tell of is durable, which with the disk
/// store is after the syncer thread has forced the round's writes to disk
/// (see `syncer.rs`). They count as pending from the moment they are
/// packed, so the windows the dispatcher keeps include them.
#[derive(Debug)]
pub struct Parcel {
    frames: Sender<Batch>,
    batch: Batch,
    state: Arc<LinkState>,
}

impl Parcel {
    /// A parcel for a channel of the test's own, with no writer thread.
    #[cfg(test)]
    pub(crate) fn for_test(frames: Sender<Batch>, batch: Batch) -> Parcel {
        let state = Arc::new(LinkState::default());
        state.unposted.fetch_add(1, Ordering::SeqCst);
        Parcel {
            frames,
            batch,
            state,
        }
    }

    /// The replies in the parcel, for a confirmation that must become a
    /// refusal before it is posted.
    pub fn replies_mut(&mut self) -> impl Iterator<Item = &mut Reply> {
        replies_mut(&mut self.batch)
    }

    /// Puts the frames on the writer's channel. If the writer has gone (the
    /// socket failed), they are dropped: the connection's reader notices
    /// the failure too and reports the disconnect.
    pub fn post(mut self) {
        let _ = self.frames.send(std::mem::take(&mut self.batch));
    }
}

/// A parcel posted, or dropped unposted (a broker stopping on a failed
/// store), is on its way no more: a closing connection's linger may start.
impl Drop for Parcel {
    fn drop(&mut self) {
        *self.state.last_posted.lock() = Some(Instant::now());
        self.state.unposted.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Writer {
    /// A writer with no thread and no socket behind it, for a test that
    /// reads what a session queues for it: frames packed for it go nowhere.
    #[cfg(test)]
    pub(crate) fn for_test() -> Writer {
        let (frames, _) = crossbeam_channel::unbounded();
        let link = Link {
            state: Arc::default(),
            stream: Weak::new(),
        };
        Writer { frames, link }
    }

    /// Packs `batch` for the socket, to be posted when it may go out.
    pub fn pack(&self, batch: Batch) -> Parcel {
        let state = &self.link.state;
        let payload_bytes = batch.iter().map(Outgoing::payload_len).sum();
        state
            .pending_payload_bytes
            .fetch_add(payload_bytes, Ordering::SeqCst);
        state
            .pending_frames
            .fetch_add(batch.len(), Ordering::SeqCst);
        state.unposted.fetch_add(1, Ordering::SeqCst);
        Parcel {
            frames: self.frames.clone(),
            batch,
            state: self.link.state.clone(),
        }
    }

    pub fn link(&self) -> &Link {
        &self.link
    }

    /// Closes the channel, so the thread ends once it has written what it
    /// has (parcels still to be posted included), and keeps the link to
    /// watch it do so.
    pub fn into_link(self) -> Link {
        self.link
    }
}

impl Link {
    /// How many frames are waiting to be written.
    pub fn pending_frames(&self) -> usize {
        self.state.pending_frames.load(Ordering::SeqCst)
    }

    /// How many bytes of message payload are waiting to be written.
    pub fn pending_payload_bytes(&self) -> usize {
        self.state.pending_payload_bytes.load(Ordering::SeqCst)
    }

    /// Asks the writer to tell the dispatcher (`Command::Written`) after
    /// its next write.
    /// The caller must look at [`Link::pending_frames`] again afterwards: the
    /// writer may have written just before the request, and then no notice
    /// comes for that write.
    pub fn notify_when_written(&self) {
        self.state.dispatcher_waits.store(true, Ordering::SeqCst);
    }

    /// Blocks the calling thread (the connection's reader) until at most
    /// `limit` frames wait to be written, or the writer has ended.
    pub fn wait_until_pending_at_most(&self, limit: usize) {
        while self.pending_frames() > limit && !self.has_ended() {
            self.state.reader_waits.store(true, Ordering::SeqCst);
            // Look again: the writer may have written (or ended) just
            // before the flag was set, and would not unpark us for it.
            if self.pending_frames() > limit && !self.has_ended() {
                thread::park();
            }
        }
    }

    /// When the last of the frames packed for the writer reached its
    /// channel; `None` while some are still on their way (held by the
    /// syncer until the disk has what they tell of).
    pub fn all_posted_at(&self) -> Option<Instant> {
        let last_posted = *self.state.last_posted.lock();
        match self.state.unposted.load(Ordering::SeqCst) {
            0 => last_posted,
            _ => None,
        }
    }

    fn has_ended(&self) -> bool {
        *self.state.ended.lock()
    }

    /// Blocks until the writer thread has ended (it has written everything
    /// and shut the socket, or a write failed), or until `deadline`.
    /// Returns whether it has ended.
    pub fn wait_until_ended(&self, deadline: Instant) -> bool {
        let mut ended = self.state.ended.lock();
        while !*ended {
            if self
                .state
                .ended_signal
                .wait_until(&mut ended, deadline)
                .timed_out()
            {
                break;
            }
        }
        *ended
    }

    /// Shuts the socket down in both directions once the writer has
    /// written every frame packed for it so far (at least one must be):
    /// the reader's next read then ends, and the connection is detached.
    /// For a connection closed with an error the client must still read.
    pub fn close_when_written(&self) {
        self.state.close_when_written.store(true, Ordering::SeqCst);
    }

    /// Shuts the socket down in both directions: the writer's next write
    /// fails, the reader's next read ends, and the connection is detached.
    /// For a client that does not read what it is sent.
    pub fn close(&self) {
        if let Some(stream) = self.stream.upgrade() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// Payloads up to this size are copied next to their header rather than
/// written from their own buffer.
const COPY_PAYLOADS_UP_TO: usize = 512;

/// Stop taking more batches once this much is encoded, so that one write
/// never grows without bound while frames keep coming.
const MAX_BYTES_PER_WRITE: usize = 1 << 20;

/// Who a writer thread tells when it has written: the dispatcher, if it
/// asked ([`Link::notify_when_written`]), and the connection's reader, if it
/// is waiting ([`Link::wait_until_pending_at_most`]).
pub struct Listeners {
    /// Tells the dispatcher: in the broker, a `Command::Written` on its
    /// queue (`reader.rs` makes it), so this file needs no word of the
    /// dispatcher's.
    pub dispatcher: Box<dyn Fn() + Send>,
    pub reader: Thread,
}

/// Starts the writer thread `conn-<id>-write` for `stream`, which it shares
/// with the connection's reader (one socket, one file descriptor). It
/// encodes frames for `wire`.
pub fn spawn(
    id: ConnId,
    stream: Arc<TcpStream>,
    wire: Wire,
    listeners: Listeners,
    stack_size: usize,
) -> io::Result<Writer> {
    let (frames, queue) = crossbeam_channel::unbounded();
    let link = Link {
        state: Arc::default(),
        stream: Arc::downgrade(&stream),
    };
    let thread = WriterThread {
        id,
        stream,
        queue,
        listeners,
        link: link.clone(),
        encoder: Encoder::new(wire),
    };
    thread::Builder::new()
        .name(format!("conn-{id}-write"))
        .stack_size(stack_size)
        .spawn(move || thread.run())?;
    Ok(Writer { frames, link })
}

/// The writer thread's state.
struct WriterThread {
    id: ConnId,
    stream: Arc<TcpStream>,
    queue: Receiver<Batch>,
    listeners: Listeners,
    link: Link,
    encoder: Encoder,
}

impl WriterThread {
    fn run(mut self) {
        let mut last_write = Ok(());
        while let Ok(batch) = self.queue.recv() {
            self.encoder.push_batch(batch);
            while self.encoder.len() < MAX_BYTES_PER_WRITE {
                match self.queue.try_recv() {
                    Ok(batch) => self.encoder.push_batch(batch),
                    Err(_) => break,
                }
            }
            let (frames, payload_bytes) = (self.encoder.frames, self.encoder.payload_bytes);
            last_write = self.encoder.write_to(&mut &*self.stream);
            if let Err(error) = &last_write {
                log::debug!("conn {}: write failed: {error}", self.id);
                break;
            }
            let state = &self.link.state;
            state
                .pending_payload_bytes
                .fetch_sub(payload_bytes, Ordering::SeqCst);
            state.pending_frames.fetch_sub(frames, Ordering::SeqCst);
            if state.dispatcher_waits.swap(false, Ordering::SeqCst) {
                (self.listeners.dispatcher)();
            }
            if state.reader_waits.swap(false, Ordering::SeqCst) {
                self.listeners.reader.unpark();
            }
            let written = state.pending_frames.load(Ordering::SeqCst) == 0;
            if written && state.close_when_written.load(Ordering::SeqCst) {
                break;
            }
        }
        let close_both = self.link.state.close_when_written.load(Ordering::SeqCst);
        let _ = match last_write {
            Ok(()) if !close_both => self.stream.shutdown(Shutdown::Write),
            _ => self.stream.shutdown(Shutdown::Both),
        };
        *self.link.state.ended.lock() = true;
        self.link.state.ended_signal.notify_all();
        self.listeners.reader.unpark();
    }
}

/// A piece of the next write: a range of the scratch buffer, or a payload.
enum Part {
    Scratch(std::ops::Range<usize>),
    Payload(Payload),
}

/// Encodes frames into a scratch buffer plus a list of large payloads, ready
/// for one vectored write.
struct Encoder {
    wire: Wire,
    scratch: Vec<u8>,
    parts: Vec<Part>,
    /// Where the scratch bytes not yet covered by a [`Part`] begin.
    open_from: usize,
    len: usize,
    /// Frames encoded and not yet written, and the payload bytes among them.
    frames: usize,
    payload_bytes: usize,
}

impl Encoder {
    fn new(wire: Wire) -> Encoder {
        Encoder {
            wire,
            scratch: Vec::new(),
            parts: Vec::new(),
            open_from: 0,
            len: 0,
            frames: 0,
            payload_bytes: 0,
        }
    }

    /// Bytes encoded and not yet written.
    fn len(&self) -> usize {
        self.len
    }

    fn push_batch(&mut self, batch: Batch) {
        for frame in batch {
            self.push(frame);
        }
    }

    fn push(&mut self, frame: Outgoing) {
        self.frames += 1;
        self.payload_bytes += frame.payload_len();
        let before = self.scratch.len();
        match (frame, self.wire) {
            (Outgoing::Reply(reply), Wire::Binary) => {
                binary::encode_reply(&mut self.scratch, &reply)
            }
            (Outgoing::Reply(reply), Wire::Line) => {
                line_replies::encode_reply(&mut self.scratch, &reply)
            }
            (Outgoing::Delivery { topic, payload, .. }, Wire::Binary) => {
                binary::encode_delivery_header(&mut self.scratch, &topic, payload.len());
                self.push_payload(payload);
            }
            (
                Outgoing::Delivery {
                    topic,
                    offset,
                    payload,
                },
                Wire::Line,
            ) => {
                line_replies::encode_delivery_header(
                    &mut self.scratch,
                    &topic,
                    offset,
                    payload.len(),
                );
                self.push_payload(payload);
                self.scratch.push(b'\n');
            }
        }
        self.len += self.scratch.len() - before;
    }

    /// Adds a payload after the header just encoded: copied if it is small,
    /// else as a part of its own, written from its shared buffer. (Its bytes
    /// are counted in `len` here; scratch bytes are counted by the caller.)
    fn push_payload(&mut self, payload: Payload) {
        if payload.len() <= COPY_PAYLOADS_UP_TO {
            self.scratch.extend_from_slice(&payload);
        } else {
            self.close_scratch_part();
            self.len += payload.len();
            self.parts.push(Part::Payload(payload));
        }
    }

    /// Ends the current run of scratch bytes, so a payload part can follow.
    fn close_scratch_part(&mut self) {
        if self.open_from < self.scratch.len() {
            self.parts
                .push(Part::Scratch(self.open_from..self.scratch.len()));
            self.open_from = self.scratch.len();
        }
    }

    /// Writes everything encoded so far and empties the encoder.
    fn write_to(&mut self, stream: &mut impl Write) -> io::Result<()> {
        self.close_scratch_part();
        let mut slices: Vec<IoSlice<'_>> = self
            .parts
            .iter()
            .map(|part| match part {
                Part::Scratch(range) => IoSlice::new(&self.scratch[range.clone()]),
                Part::Payload(payload) => IoSlice::new(payload),
            })
            .collect();
        let result = write_all_vectored(stream, &mut slices);
        self.scratch.clear();
        self.parts.clear();
        self.open_from = 0;
        self.len = 0;
        self.frames = 0;
        self.payload_bytes = 0;
        result
    }
}

/// `write_all` for vectored writes: the kernel may take only part of what it
/// is offered, so keep offering the rest.
fn write_all_vectored(stream: &mut impl Write, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !slices.is_empty() {
        match stream.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that accepts at most 7 bytes per call, like a busy socket.
    struct Trickle(Vec<u8>);

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(7);
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn frames(big: &Payload) -> Batch {
        vec![
            Outgoing::Reply(Reply::Subscribed),
            Outgoing::Delivery {
                topic: "t".into(),
                offset: 4,
                payload: Payload::from(&b"hi"[..]),
            },
            Outgoing::Delivery {
                topic: "t".into(),
                offset: 5,
                payload: big.clone(),
            },
            Outgoing::Reply(Reply::Error("unknown action".into())),
        ]
    }

    fn assert_written(wire: Wire, batch: Batch, expected: &[u8]) {
        let mut encoder = Encoder::new(wire);
        encoder.push_batch(batch);
        assert_eq!(encoder.len(), expected.len());
        let mut sink = Trickle(Vec::new());
        encoder.write_to(&mut sink).unwrap();
        assert_eq!(sink.0, expected);
        assert_eq!(encoder.len(), 0);
    }

    #[test]
    fn binary_frames_are_written_whole_and_in_order_despite_short_writes() {
        let big = Payload::from(vec![7u8; 2000]);
        let mut expected = Vec::new();
        binary::encode_status(&mut expected, binary::status::SUBSCRIBED, None);
        binary::encode_delivery_header(&mut expected, "t", 2);
        expected.extend_from_slice(b"hi");
        binary::encode_delivery_header(&mut expected, "t", 2000);
        expected.extend_from_slice(&big);
        binary::encode_status(&mut expected, binary::status::ERROR, Some("unknown action"));
        assert_written(Wire::Binary, frames(&big), &expected);
    }

    #[test]
    fn line_frames_are_written_whole_and_in_order_despite_short_writes() {
        let big = Payload::from(vec![7u8; 2000]);
        let mut expected = b"+OK\nMSG t 4 2\nhi\nMSG t 5 2000\n".to_vec();
        expected.extend_from_slice(&big);
        expected.extend_from_slice(b"\n-ERR unknown action\n");
        assert_written(Wire::Line, frames(&big), &expected);
    }
}
