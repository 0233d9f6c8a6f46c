//! The dispatcher's queue: the [`Command`]s it carries, how they travel
//! from the reader threads (and, through callbacks the broker gives them,
//! the writer and fetcher threads) to the dispatcher, and how publishers
//! are held back when the dispatcher falls behind. The helper threads never
//! name a `Command` themselves: the writer calls back "written", the
//! fetcher hands back what it read, and the callback (`reader.rs`,
//! `server.rs`) wraps it.
//!
//! A command is a batch: one `read()`'s worth of requests, which for a busy
//! publisher is a thousand messages or more. A channel bounded only by its
//! number of commands would let a fast publisher queue millions of messages
//! in front of the dispatcher. That costs memory, and it costs time: an ack
//! queued behind them waits its turn, long enough for its delivery to time
//! out, and a subscriber falls so far behind that it reads from disk instead
//! of the store's cache.
//!
//! So the queue has two bounds. The channel holds at most so many commands,
//! and the messages in it hold at most [`MAX_QUEUED_BYTES`] of memory:
//! each counts as its payload, its topic's name and what holds them
//! ([`queued_bytes`]), so a flood of one-byte messages fills the queue as
//! soon as a few large ones do. A reader with messages to send waits until
//! they fit; meanwhile it reads nothing from its socket, so TCP slows its
//! publisher down. (The fetcher thread's runs of records read back from
//! disk count too, so however many topics are replayed, what waits for
//! the dispatcher stays within the bound.) Commands without messages
//! (subscribes, acks, a writer's notice) never wait for room, so consumers
//! keep being heard however hard publishers push.
//!
//! The same wait holds publishers back when the store is full: an
//! in-memory store that reached `--memory-bytes` with nothing it may drop
//! (`budget.rs`). Then the dispatcher
//! [holds publishers](CommandReceiver::hold_publishers), and every reader
//! with messages to send waits, however much room the queue has, until a
//! later round finds memory again (the fetcher does not: the disk store,
//! whose cache can always let go, never holds publishers). What a reader waits
//! to send stays in order behind it, and what the dispatcher already took
//! (at most the queue's bytes) it stores.
//!
//! Except the commands of a connection from its first subscribe or pull
//! on ([`WhenFull::Refuse`]): its acks are what frees the store, and they
//! come on the same socket, behind its publishes. Held, it would read none
//! of them, and no publisher of the broker would ever be read again. Its
//! commands never wait for the store, and the dispatcher refuses their
//! publishes while it is full (`Dispatcher::refuse_for_full_memory`). The
//! reader says which of the two its command is, since only it knows, in
//! the order of its stream, what its client asked for before; the
//! dispatcher, which knows whether the store is full when it takes the
//! command, decides the refusal.
//!
//! ```text
//!   reader ──send──▶ [ command | command | … ] ──recv──▶ dispatcher
//!      │                 bytes ≤ the limit                    │
//!      └── waits for room ◀──────── gives room back ──────────┘
//! ```

use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Sender;
use parking_lot::{Condvar, Mutex};

use crate::ids::ConnId;
use crate::mailbox::{self, RecvTimeoutError, TrySendError};
use crate::store::Fetched;
use crate::wire::reply::BrokerReport;
use crate::wire::request::{Decoded, Request};
use crate::writer::Writer;

/// What the dispatcher is asked to do: by a reader thread, or (wrapped by
/// the callbacks they were given) by a writer or the fetcher.
#[derive(Debug)]
pub enum Command {
    /// The connection will be written to: here is its writer. Sent before
    /// the first request that needs a reply.
    Attach { conn: ConnId, writer: Writer },
    /// Requests (and refusals) decoded from the connection, in order, and
    /// the memory their messages hold ([`queued_bytes`]; see the module
    /// doc). Made by [`Command::requests`].
    Requests {
        conn: ConnId,
        requests: Vec<Decoded>,
        bytes: usize,
        /// How to close the connection, if the requests hold publishes
        /// that are never answered (see [`Hangup`]).
        hangup: Option<Arc<Hangup>>,
        /// What becomes of the publishes among them while the store is full.
        when_full: WhenFull,
    },
    /// The connection's writer has written, as the session asked: sent by
    /// the writer thread, for deliveries that wait for room to be written.
    Written { conn: ConnId },
    /// The connection has closed: forget its subscriptions and deliveries.
    Detach { conn: ConnId },
    /// Old records the fetcher thread read from a segment, which a log
    /// answered [`Lookup::Later`](crate::store::Lookup) for (see `store/fetcher.rs`).
    Fetched(Fetched),
    /// The metrics thread asks for the figures `STATS` prints, to be sent
    /// on `reply` (which has room for them: the dispatcher never waits).
    Report { reply: Sender<BrokerReport> },
    /// Stop the dispatcher: the broker is shutting down, and no reader
    /// sends requests any more. The round it arrives in is finished, then
    /// the dispatcher stops cleanly (`Dispatcher::run`).
    Shutdown,
}

impl Command {
    /// The command that carries `requests` from connection `conn`, with
    /// `hangup` if they hold a publish that is never answered.
    pub fn requests(
        conn: ConnId,
        requests: Vec<Decoded>,
        hangup: Option<&Arc<Hangup>>,
        when_full: WhenFull,
    ) -> Command {
        let mut bytes = 0;
        let mut unanswered = false;
        for request in &requests {
            if let Ok(Request::Publish {
                topic,
                payload,
                confirm,
            }) = request
            {
                bytes += queued_bytes(topic, payload);
                unanswered |= !confirm;
            }
        }
        Command::Requests {
            conn,
            requests,
            bytes,
            hangup: hangup.filter(|_| unanswered).cloned(),
            when_full,
        }
    }

    /// Whether the messages the command carries wait while publishers are
    /// held: its reader let them.
    fn may_be_held(&self) -> bool {
        matches!(
            self,
            Command::Requests {
                when_full: WhenFull::Wait,
                ..
            }
        )
    }

    /// How much memory the messages the command carries hold, as the
    /// queue counts it: 0 for a command without messages.
    pub fn bytes(&self) -> usize {
        match self {
            Command::Requests { bytes, .. } => *bytes,
            Command::Fetched(fetched) => fetched.bytes,
            _ => 0,
        }
    }
}

/// What a message in the queue holds, beyond its payload and its topic's
/// name: its place in its command's list of requests, and the header of
/// the payload's shared buffer with the allocator's rounding.
pub const QUEUED_MESSAGE_OVERHEAD_BYTES: usize = std::mem::size_of::<Decoded>() + 32;

/// The bytes a message published to `topic` counts in the queue. The name
/// counts each time, though a publisher that sends to one topic shares
/// one copy of it: one that alternates between names has a copy each.
pub fn queued_bytes(topic: &str, payload: &[u8]) -> usize {
    payload.len() + topic.len() + QUEUED_MESSAGE_OVERHEAD_BYTES
}

/// What becomes of a command's publishes while the in-memory store is full
/// (see the module doc): its reader's choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// The command waits, and its reader with it, until the store has
    /// room: a connection that only publishes, which TCP then holds back.
    Wait,
    /// The command goes in, and the dispatcher refuses its publishes while
    /// the store is full: the connection has subscribed or pulled, and
    /// holding it back would leave its acks unread.
    Refuse,
}

/// What the dispatcher can do to a connection that has no writer thread (a
/// binary publisher, which is never answered) when it refuses one of its
/// messages: hang up. Shutting the socket down ends the reader; the
/// connection's requests still on their way to the dispatcher are dropped.
#[derive(Debug)]
pub struct Hangup {
    stream: Arc<TcpStream>,
    done: AtomicBool,
}

impl Hangup {
    pub fn new(stream: Arc<TcpStream>) -> Hangup {
        Hangup {
            stream,
            done: AtomicBool::new(false),
        }
    }

    /// Closes the connection, once.
    pub fn hang_up(&self) {
        if !self.done.swap(true, Ordering::SeqCst) {
            let _ = self.stream.shutdown(Shutdown::Both);
        }
    }

    /// Whether the connection was hung up on: its requests are ignored.
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }
}

/// How many bytes of messages may wait in the queue before readers wait
/// ([`queued_bytes`]): a few full reads of a busy publisher, a few milliseconds of work
/// for the dispatcher. Enough to keep it busy while a reader wakes up and
/// decodes more, and short, because every ack waits its turn behind it:
/// the time an ack takes to come back is what a subscriber's in-flight
/// window must cover to run at full speed.
pub const MAX_QUEUED_BYTES: usize = 1 << 20;

/// The queue's dispatcher is gone: it stopped, or the broker is shutting
/// down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnected;

/// Why [`CommandSender::try_send`] did not queue its command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotQueued {
    /// The queue is full: the dispatcher is behind.
    Full,
    /// The dispatcher is gone.
    Disconnected,
}

/// A queue holding at most `max_commands` commands and messages of
/// `max_bytes` bytes ([`queued_bytes`]; but always one command, however
/// large, when it is empty).
pub fn bounded(max_commands: usize, max_bytes: usize) -> (CommandSender, CommandReceiver) {
    let (commands, queue) = mailbox::bounded(max_commands);
    let room = Arc::new(Room {
        limit: max_bytes,
        state: Mutex::new(RoomState::default()),
        freed: Condvar::new(),
    });
    let sender = CommandSender {
        commands,
        room: room.clone(),
    };
    let receiver = CommandReceiver { queue, room };
    (sender, receiver)
}

/// The sending end, cloned into every reader and writer thread.
#[derive(Debug, Clone)]
pub struct CommandSender {
    commands: mailbox::Sender<Command>,
    room: Arc<Room>,
}

impl CommandSender {
    /// Queues `command`, first waiting for room for its messages, if it
    /// carries any.
    pub fn send(&self, command: Command) -> Result<(), Disconnected> {
        let bytes = command.bytes();
        if bytes > 0 {
            self.room.take(bytes, command.may_be_held())?;
        }
        self.commands.send(command).map_err(|_| Disconnected)
    }

    /// Queues `command`, which carries no messages, if the queue has room
    /// for it now, for a thread that must not wait: the metrics thread.
    pub fn try_send(&self, command: Command) -> Result<(), NotQueued> {
        debug_assert_eq!(command.bytes(), 0, "only a command without messages");
        self.commands
            .try_send(command)
            .map_err(|error| match error {
                TrySendError::Full(_) => NotQueued::Full,
                TrySendError::Disconnected(_) => NotQueued::Disconnected,
            })
    }

    /// How many commands wait for the dispatcher now.
    pub fn queued_commands(&self) -> usize {
        self.commands.len()
    }

    /// The broker is stopping: publishers are never held again. A reader
    /// waiting for memory then hands its requests over, which the stop
    /// waits for (see `reader.rs`'s `Gate`); otherwise it would wait
    /// for acks that the stop keeps from coming. What it carries may take
    /// the store past its budget by the queue's room at most.
    pub fn stop_holding_publishers(&self) {
        self.room.state.lock().stopping = true;
        self.room.freed.notify_all();
    }
}

/// The dispatcher's end. Dropping it (the dispatcher stopped) wakes every
/// reader waiting for room, which then stops too.
#[derive(Debug)]
pub struct CommandReceiver {
    queue: mailbox::Receiver<Command>,
    room: Arc<Room>,
}

impl CommandReceiver {
    /// Waits for the next command, until `deadline` if there is one.
    pub fn recv_until(&self, deadline: Option<Instant>) -> Result<Command, RecvTimeoutError> {
        self.queue
            .recv_until(deadline)
            .inspect(|command| self.room.give_back(command.bytes()))
    }

    /// Makes every reader with messages to send wait (`true`), until called
    /// with `false`.
    pub fn hold_publishers(&self, hold: bool) {
        let mut state = self.room.state.lock();
        state.publishers_held = hold;
        if !hold && state.waiting > 0 {
            self.room.freed.notify_all();
        }
    }

    /// How many readers wait because publishers are held.
    pub fn publishers_waiting(&self) -> usize {
        self.room.state.lock().held_waiting
    }

    /// The commands queued now, without waiting.
    pub fn try_iter(&self) -> impl Iterator<Item = Command> + '_ {
        self.queue
            .try_iter()
            .inspect(|command| self.room.give_back(command.bytes()))
    }
}

impl Drop for CommandReceiver {
    fn drop(&mut self) {
        self.room.close();
    }
}

/// The room for messages, shared by both ends.
#[derive(Debug)]
struct Room {
    limit: usize,
    state: Mutex<RoomState>,
    /// Signalled when room is given back, or the queue closes.
    freed: Condvar,
}

#[derive(Debug, Default)]
struct RoomState {
    /// The bytes of the commands in the queue ([`Command::bytes`]).
    queued: usize,
    /// Readers waiting in [`Room::take`]: the dispatcher only pays
    /// for a wake-up when someone waits.
    waiting: usize,
    /// Whether publishers are held ([`CommandReceiver::hold_publishers`]),
    /// and how many of the waiting readers wait for that.
    publishers_held: bool,
    held_waiting: usize,
    /// Set once the broker is stopping: publishers are held no more.
    stopping: bool,
    closed: bool,
}

impl Room {
    /// Waits until `bytes` fit under the limit, or the queue is empty (so
    /// one command larger than the limit still goes through), and, if they
    /// are messages published that `may_be_held`, until publishers are not
    /// held; then counts them as queued.
    fn take(&self, bytes: usize, may_be_held: bool) -> Result<(), Disconnected> {
        let mut state = self.state.lock();
        loop {
            let held = may_be_held && state.publishers_held && !state.stopping;
            let full = state.queued > 0 && state.queued + bytes > self.limit;
            if state.closed || !(held || full) {
                break;
            }
            state.waiting += 1;
            state.held_waiting += usize::from(held);
            self.freed.wait(&mut state);
            state.held_waiting -= usize::from(held);
            state.waiting -= 1;
        }
        if state.closed {
            return Err(Disconnected);
        }
        state.queued += bytes;
        Ok(())
    }

    fn give_back(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let mut state = self.state.lock();
        state.queued -= bytes;
        if state.waiting > 0 {
            self.freed.notify_all();
        }
    }

    fn close(&self) {
        self.state.lock().closed = true;
        self.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::request::Request;
    use std::thread;
    use std::time::Duration;

    /// A publisher's command, from a connection that only publishes, of
    /// one message that counts `bytes` in the queue (at least
    /// [`QUEUED_MESSAGE_OVERHEAD_BYTES`] and the topic's name).
    fn publish(bytes: usize) -> Command {
        publish_then(bytes, WhenFull::Wait)
    }

    /// Like [`publish`], a command that, while the store is full, does
    /// `when_full`.
    fn publish_then(bytes: usize, when_full: WhenFull) -> Command {
        let request = Request::Publish {
            topic: Arc::from("t"),
            payload: vec![0; bytes - queued_bytes("t", &[])].into(),
            confirm: false,
        };
        Command::requests(1, vec![Ok(request)], None, when_full)
    }

    /// An ack's command: no payload.
    fn ack() -> Command {
        Command::requests(2, vec![Ok(Request::Ack)], None, WhenFull::Wait)
    }

    /// A command of `count` one-byte messages.
    fn one_byte_messages(count: usize) -> Command {
        let publish = |_| {
            Ok(Request::Publish {
                topic: Arc::from("orders"),
                payload: vec![7].into(),
                confirm: false,
            })
        };
        let requests = (0..count).map(publish).collect();
        Command::requests(1, requests, None, WhenFull::Wait)
    }

    /// Sends `command` on another thread, and reports when it is queued.
    fn send_elsewhere(sender: &CommandSender, command: Command) -> crossbeam_channel::Receiver<()> {
        let (sent, done) = crossbeam_channel::bounded(1);
        let sender = sender.clone();
        thread::spawn(move || {
            if sender.send(command).is_ok() {
                let _ = sent.send(());
            }
        });
        done
    }

    #[test]
    fn a_sender_waits_for_payload_room_but_not_a_command_without_payload() {
        let (sender, receiver) = bounded(16, 1000);
        sender.send(publish(600)).unwrap();
        let second = send_elsewhere(&sender, publish(600));
        // An ack carries no payload: it goes straight in, past the full room.
        sender.send(ack()).unwrap();
        assert!(second.recv_timeout(Duration::from_millis(50)).is_err());
        assert_eq!(receiver.recv_until(None).unwrap().bytes(), 600);
        second
            .recv_timeout(Duration::from_secs(10))
            .expect("the second publish goes in once the first is taken");
        let rest: Vec<usize> = receiver.try_iter().map(|c| c.bytes()).collect();
        assert_eq!(rest, [0, 600]);
    }

    #[test]
    fn held_publishers_wait_until_let_go_but_a_command_without_payload_does_not() {
        let (sender, receiver) = bounded(16, 1000);
        receiver.hold_publishers(true);
        let held = send_elsewhere(&sender, publish(200));
        sender.send(ack()).unwrap();
        assert_eq!(receiver.recv_until(None).unwrap().bytes(), 0);
        let deadline = Instant::now() + Duration::from_secs(10);
        while receiver.publishers_waiting() == 0 {
            assert!(Instant::now() < deadline, "the publisher never waited");
            thread::yield_now();
        }
        assert!(held.try_recv().is_err());
        receiver.hold_publishers(false);
        held.recv_timeout(Duration::from_secs(10))
            .expect("the publish goes in once publishers are let go");
        assert_eq!(receiver.recv_until(None).unwrap().bytes(), 200);
        assert_eq!(receiver.publishers_waiting(), 0);
    }

    /// A connection that has subscribed is never held: its acks come on
    /// the same socket, behind its publishes.
    #[test]
    fn publishes_refused_when_the_store_is_full_are_never_held() {
        let (sender, receiver) = bounded(16, 1000);
        receiver.hold_publishers(true);
        sender.send(publish_then(200, WhenFull::Refuse)).unwrap();
        assert_eq!(receiver.recv_until(None).unwrap().bytes(), 200);
        assert_eq!(receiver.publishers_waiting(), 0);
    }

    /// A stop lets held publishers go, and holds none again: the stop
    /// waits for every reader to hand its requests over.
    #[test]
    fn a_stop_lets_held_publishers_go_for_good() {
        let (sender, receiver) = bounded(16, 1000);
        receiver.hold_publishers(true);
        let held = send_elsewhere(&sender, publish(200));
        let deadline = Instant::now() + Duration::from_secs(10);
        while receiver.publishers_waiting() == 0 {
            assert!(Instant::now() < deadline, "the publisher never waited");
            thread::yield_now();
        }
        sender.stop_holding_publishers();
        held.recv_timeout(Duration::from_secs(10))
            .expect("the publish goes in once the broker stops");
        receiver.hold_publishers(true);
        sender.send(publish(200)).unwrap();
        let sizes: Vec<usize> = receiver.try_iter().map(|c| c.bytes()).collect();
        assert_eq!(sizes, [200, 200]);
    }

    /// A thousand one-byte messages hold far more than a thousand bytes:
    /// their requests and buffers. Counted by payload alone, a queue of
    /// 1 MiB could hold a million of them and a hundred times its bound.
    #[test]
    fn small_messages_count_what_holds_them_not_only_their_payload() {
        let each = 1 + "orders".len() + QUEUED_MESSAGE_OVERHEAD_BYTES;
        assert_eq!(one_byte_messages(1000).bytes(), 1000 * each);
        let (sender, receiver) = bounded(16, 64 << 10);
        sender.send(one_byte_messages(1000)).unwrap();
        let second = send_elsewhere(&sender, one_byte_messages(1000));
        assert!(second.recv_timeout(Duration::from_millis(50)).is_err());
        receiver.recv_until(None).unwrap();
        second
            .recv_timeout(Duration::from_secs(10))
            .expect("the second batch goes in once the first is taken");
    }

    #[test]
    fn a_command_larger_than_the_limit_goes_through_an_empty_queue() {
        let (sender, receiver) = bounded(16, 1000);
        sender.send(publish(10_000)).unwrap();
        assert_eq!(receiver.recv_until(None).unwrap().bytes(), 10_000);
    }

    #[test]
    fn a_waiting_sender_stops_when_the_dispatcher_is_gone() {
        let (sender, receiver) = bounded(16, 1000);
        sender.send(publish(1000)).unwrap();
        let (result, outcome) = crossbeam_channel::bounded(1);
        let waiting = sender.clone();
        thread::spawn(move || {
            let _ = result.send(waiting.send(publish(1000)));
        });
        drop(receiver);
        let outcome = outcome.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(outcome, Err(Disconnected));
    }
}
