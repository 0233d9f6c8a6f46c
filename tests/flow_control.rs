//! Flow control, measured on the real `brook` binary: a subscriber that
//! stops reading costs the broker a bounded amount of memory, holds up
//! nobody, and loses nothing; and a publisher faster than everything
//! behind it is held back by TCP instead of being buffered.
//!
//! Each test starts the binary as a child process, so that its memory can
//! be read from `/proc/<pid>/status`: `VmRSS`, what it holds now, and
//! `VmHWM`, the most it ever held (its high-water mark). The tests publish
//! 200,000 or 300,000 messages of 1 KiB, 195 or 293 MiB, far more than the
//! bound they hold the broker to ([`MEMORY_BOUND_MIB`]), so a broker that
//! buffered for a slow reader, or for a fast writer, would pass it.
//! `cargo test --test flow_control -- --nocapture` shows the samples.
//!
//! What keeps memory bounded (docs/PROTOCOL.md, section 4, and README.md):
//! a subscription is a cursor into its topic's log, and the broker sends a
//! subscriber at most `--subscriber-buffer` bytes (16 MiB) of deliveries it
//! has not answered (or, without acks, not yet written). The disk store
//! keeps the newest payloads in memory, up to `--cache-bytes` (64 MiB
//! here) for all topics together, and reads older ones back from its
//! segment files. The dispatcher's queue holds at most
//! 1 MiB of payloads; a reader whose messages do not fit stops reading its
//! socket, and TCP slows its publisher down.
//!
//! Every payload carries its message's number, so a subscriber checks that
//! it gets every message exactly once, in order. Nothing here sleeps: every
//! wait is a blocking read under a deadline, memory is sampled at message
//! counts, and no timing is asserted.

mod common;

use std::fs;
use std::net::SocketAddr;
use std::ops::Range;
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use brook::client::{Delivery, Publisher, Subscriber};
use brook::wire::request::StartAt;
use common::client::subscriber;
use common::line::Line;
use common::memory::MemoryLog;
use common::process::BrookProcess;
use common::temp::TempDir;

/// The size of every message.
const MESSAGE_BYTES: usize = 1024;

const MIB: u64 = 1 << 20;

/// Memory is sampled after every this many published messages.
const SAMPLE_EVERY: u64 = 10_000;

/// The longest these tests wait for one thing they expect: the broker's
/// start, a delivery, a reply. Longer than the other tests' `WAIT`: here a
/// debug build of the broker stores and reads back hundreds of megabytes,
/// and on a busy machine one message can wait seconds behind the others. A
/// passing run never waits that long.
const PATIENCE: Duration = Duration::from_secs(30);

/// The most memory, in MiB, the broker may ever hold in these tests.
///
/// What it is built to hold, with one topic and one subscriber that is
/// behind, is 81 MiB:
///
/// - 64 MiB, the disk store's cache of the topic's newest payloads
///   (`--cache-bytes 64MiB`);
/// - 16 MiB, `--subscriber-buffer`: the deliveries sent to the subscriber
///   that is behind and not yet answered (or, without acks, not yet
///   written). Their payloads are older than the cache's, so they are not
///   shared with it;
/// - 1 MiB, the payloads in the dispatcher's queue.
///
/// On top of that comes what grows with none of the tests' numbers: the
/// program (3 MiB at start), the bookkeeping of the messages it holds (a
/// reference count and an allocator header on each payload, an entry in
/// the cache or the window), the connections' buffers and threads, the
/// segments' sparse index, and the memory the allocator keeps for the
/// thread that freed it. That last one can add up to another 16 MiB while
/// a subscriber catches up: its new deliveries are read back from the
/// segments in memory the fetcher thread allocates, while the memory of
/// those it has answered may stay with the allocator.
///
/// These tests measured peaks of 96 to 111 MiB (the most for the line
/// subscriber, as it caught up). 128 MiB leaves room for a noisy machine
/// and is well below the 195 and 293 MiB they publish: a broker that
/// buffered even half of the messages a stopped subscriber missed would
/// pass it, and so does one whose `--subscriber-buffer` is 64 MiB.
const MEMORY_BOUND_MIB: u64 = 128;

// ---- The broker as a child process. ----

/// The `brook` binary, storing its topics in a temporary directory of its
/// own. Dropping it kills the process, then removes the directory.
struct Brook {
    process: BrookProcess,
    addr: SocketAddr,
    _data: TempDir,
}

impl Brook {
    /// Starts `brook` on a free port of 127.0.0.1, on a new data directory.
    ///
    /// `--fsync never`: these tests are about memory, not crashes. An ack
    /// timeout of an hour: the subscribers here leave deliveries unanswered
    /// on purpose for as long as the publishing takes, and a timeout would
    /// rightly deliver the oldest of them again; that is tests/acks.rs's
    /// business, not flow control's.
    fn start(tag: &str) -> Brook {
        let data = TempDir::new(tag);
        let mut command = Command::new(env!("CARGO_BIN_EXE_brook"));
        command
            .args(["--addr", "127.0.0.1:0", "--fsync", "never"])
            .args(["--cache-bytes", "64MiB"])
            .args(["--ack-timeout", "1h", "--data-dir"])
            .arg(data.path());
        let process = BrookProcess::start(command, PATIENCE).unwrap_or_else(|e| panic!("{e}"));
        Brook {
            addr: process.addr,
            process,
            _data: data,
        }
    }

    /// A log of this broker's memory, which fails the test as soon as a
    /// sample shows it has held [`MEMORY_BOUND_MIB`].
    fn memory_log(&self) -> MemoryLog {
        MemoryLog::new(self.process.pid(), MEMORY_BOUND_MIB)
    }
}

// ---- Numbered messages. ----

/// The payload of message `i`: its number in ten digits, then dots up to
/// [`MESSAGE_BYTES`].
fn payload(i: u64) -> Vec<u8> {
    let mut payload = vec![b'.'; MESSAGE_BYTES];
    payload[..10].copy_from_slice(format!("{i:010}").as_bytes());
    payload
}

/// Asserts that `got` is message `i`, whole.
#[track_caller]
fn expect_message(i: u64, got: &[u8]) {
    if got != payload(i) {
        let number = String::from_utf8_lossy(&got[..got.len().min(10)]);
        panic!("expected message {i}, got {number:?} ({} bytes)", got.len());
    }
}

/// Publishes messages `range` to `topic` as fast as the broker takes them,
/// and after every [`SAMPLE_EVERY`] of them sends them on and calls
/// `checkpoint` with how many were published.
fn publish_with_checkpoints(
    publisher: &mut Publisher,
    topic: &str,
    range: Range<u64>,
    mut checkpoint: impl FnMut(u64),
) {
    for i in range {
        publisher.publish(topic, &payload(i)).unwrap();
        if (i + 1) % SAMPLE_EVERY == 0 {
            publisher.flush().unwrap();
            checkpoint(i + 1);
        }
    }
    publisher.flush().unwrap();
}

/// The next delivery, which must come within [`PATIENCE`].
#[track_caller]
fn next_delivery(subscriber: &mut Subscriber) -> Delivery {
    match subscriber.recv_timeout(PATIENCE) {
        Ok(Some(delivery)) => delivery,
        Ok(None) => panic!("no delivery within {PATIENCE:?}"),
        Err(error) => panic!("receiving: {error}"),
    }
}

/// Receives messages `range` of `topic`, each exactly once and in order,
/// and acks each.
#[track_caller]
fn receive_in_order(subscriber: &mut Subscriber, topic: &str, range: Range<u64>) {
    for i in range {
        let delivery = next_delivery(subscriber);
        assert_eq!(delivery.topic, topic);
        expect_message(i, &delivery.payload);
        subscriber.ack().unwrap();
    }
}

// ---- The line protocol. ----

/// Receives messages `range` of `topic` as `MSG` blocks, each exactly
/// once, in order, and at its offset.
#[track_caller]
fn receive_lines_in_order(subscriber: &mut Line, topic: &str, range: Range<u64>) {
    for i in range {
        let msg = subscriber.read_msg();
        assert_eq!((msg.topic.as_str(), msg.offset), (topic, i));
        expect_message(i, &msg.payload);
    }
}

/// How many messages `topic` holds, from `TOPICS`. The dispatcher answers
/// it after every request already in its queue.
#[track_caller]
fn stored(asker: &mut Line, topic: &str) -> u64 {
    asker.send("TOPICS\n");
    let prefix = format!("+TOPIC {topic} ");
    let lines = asker.read_until_end();
    let fields = lines.iter().find_map(|line| line.strip_prefix(&prefix));
    let next = fields.and_then(|fields| {
        fields
            .split(' ')
            .find_map(|field| field.strip_prefix("next=")?.parse().ok())
    });
    next.unwrap_or_else(|| panic!("TOPICS shows no next= for {topic:?}"))
}

// ---- Subscribers that stop reading. ----

/// How many messages the slow-subscriber tests publish: 195 MiB of
/// payloads, three times the disk store's cache.
const SLOW_TEST_MESSAGES: u64 = 200_000;

/// A subscriber that reads nothing while 200,000 messages of 1 KiB are
/// published costs the broker no more than [`MEMORY_BOUND_MIB`], and holds
/// up nobody: a second subscriber gets every message, in order, before the
/// slow one has read anything. Once the slow one reads, it gets every
/// message exactly once, in order, most of them read back from the segment
/// files, and then the next message live.
///
/// The slow one's unanswered deliveries stop at `--subscriber-buffer`
/// (16 MiB: 16,384 of 1 KiB, which `--max-inflight` allows too), and the
/// cache keeps the newest 64 MiB for the second one: the bound's 80 MiB.
#[test]
fn a_subscriber_that_stops_reading_costs_bounded_memory_and_loses_nothing() {
    const TOPIC: &str = "readings";
    let brook = Brook::start("slow-binary");
    let mut memory = brook.memory_log();
    memory.sample("started");
    let mut slow = subscriber(brook.addr, &[TOPIC], StartAt::Current);
    let mut fast = subscriber(brook.addr, &[TOPIC], StartAt::Current);
    let fast = thread::spawn(move || receive_in_order(&mut fast, TOPIC, 0..SLOW_TEST_MESSAGES));

    let mut publisher = Publisher::connect(brook.addr).unwrap();
    publish_with_checkpoints(&mut publisher, TOPIC, 0..SLOW_TEST_MESSAGES, |n| {
        memory.sample(format!("{n} published"));
    });
    fast.join().expect("the fast subscriber got every message");
    memory.sample("the fast subscriber has them all");

    receive_in_order(&mut slow, TOPIC, 0..SLOW_TEST_MESSAGES);
    memory.sample("the slow subscriber has them all");
    let live = SLOW_TEST_MESSAGES;
    publisher.publish(TOPIC, &payload(live)).unwrap();
    publisher.flush().unwrap();
    receive_in_order(&mut slow, TOPIC, live..live + 1);
    eprintln!("{memory}");
}

/// The same for a line-protocol subscriber without `manual`, whose
/// deliveries count as done once written: the broker writes to it while
/// fewer than 16,384 of them, and 16 MiB, wait to be written, so once it
/// stops reading and its socket's buffers are full, the broker sends it
/// nothing more. It costs no more than [`MEMORY_BOUND_MIB`] either, and
/// once it reads it gets every message, in order, at its offset, then the
/// next one live.
#[test]
fn a_line_subscriber_that_stops_reading_costs_bounded_memory_and_loses_nothing() {
    const TOPIC: &str = "lines";
    const FENCE: &str = "fence";
    let brook = Brook::start("slow-line");
    let mut memory = brook.memory_log();
    memory.sample("started");
    let mut slow = Line::connect_with_patience(brook.addr, PATIENCE);
    slow.send(format!("SUB {TOPIC} current\n"));
    slow.expect_line("+OK");
    let mut fence = subscriber(brook.addr, &[FENCE], StartAt::Current);

    let mut publisher = Publisher::connect(brook.addr).unwrap();
    publish_with_checkpoints(&mut publisher, TOPIC, 0..SLOW_TEST_MESSAGES, |n| {
        memory.sample(format!("{n} published"));
    });
    // The broker stores one connection's messages in order: once this one
    // arrives, every message before it is in the log.
    publisher.publish(FENCE, b"all published").unwrap();
    publisher.flush().unwrap();
    next_delivery(&mut fence);
    memory.sample("all stored");

    receive_lines_in_order(&mut slow, TOPIC, 0..SLOW_TEST_MESSAGES);
    memory.sample("the slow subscriber has them all");
    let live = SLOW_TEST_MESSAGES;
    publisher.publish(TOPIC, &payload(live)).unwrap();
    publisher.flush().unwrap();
    receive_lines_in_order(&mut slow, TOPIC, live..live + 1);
    eprintln!("{memory}");
}

// ---- A publisher faster than every consumer. ----

/// How many messages the flood test publishes: 293 MiB.
const FLOOD_MESSAGES: u64 = 300_000;

/// How far behind the publisher the flood test's subscriber stays: 98 MiB,
/// more than the cache holds, so that it reads from the segment files.
const FLOOD_LAG: u64 = 100_000;

/// How long the flood test's subscriber waits for the publisher to publish
/// its next [`SAMPLE_EVERY`] messages: thousands of messages, not one.
const PROGRESS_WAIT: Duration = Duration::from_secs(60);

/// One publisher writes 300,000 messages of 1 KiB as fast as it can, and
/// the only subscriber is slower still: it reads the next 10,000 only once
/// the publisher is [`FLOOD_LAG`] messages past them. The broker reads the
/// publisher's socket only as fast as it stores the messages, so TCP holds
/// the publisher back: it is never further ahead of the log than the
/// buffers between them hold. The broker's memory stays under
/// [`MEMORY_BOUND_MIB`] (the cache, and the subscriber's 16 MiB of
/// deliveries read back from the segments), and the subscriber gets every
/// message exactly once, in order.
#[test]
fn a_publisher_faster_than_every_consumer_is_held_back_and_memory_stays_bounded() {
    const TOPIC: &str = "flood";
    let brook = Brook::start("flood");
    let mut memory = brook.memory_log();
    memory.sample("started");
    let mut slow = subscriber(brook.addr, &[TOPIC], StartAt::Current);
    let (progress, published) = mpsc::channel();
    let slow = thread::spawn(move || {
        let mut known = 0;
        for start in (0..FLOOD_MESSAGES).step_by(SAMPLE_EVERY as usize) {
            let end = start + SAMPLE_EVERY;
            while known < (end + FLOOD_LAG).min(FLOOD_MESSAGES) {
                known = published
                    .recv_timeout(PROGRESS_WAIT)
                    .expect("the publisher goes on");
            }
            receive_in_order(&mut slow, TOPIC, start..end);
        }
    });

    let most_ahead = most_messages_in_between();
    let mut asker = Line::connect_with_patience(brook.addr, PATIENCE);
    let mut publisher = Publisher::connect(brook.addr).unwrap();
    publish_with_checkpoints(&mut publisher, TOPIC, 0..FLOOD_MESSAGES, |n| {
        let ahead = n - stored(&mut asker, TOPIC);
        memory.sample(format!("{n} published, {ahead} of them not stored yet"));
        assert!(
            ahead <= most_ahead,
            "the publisher got {ahead} messages ahead of the log, more than \
             the buffers between them hold ({most_ahead}):\n{memory}"
        );
        // A subscriber that failed has gone; its join says why.
        let _ = progress.send(n);
    });
    slow.join().expect("the subscriber got every message");
    memory.sample("the subscriber has them all");
    eprintln!("{memory}");
}

/// How many messages a publisher can have written that the broker has not
/// stored yet, if the broker reads its socket only as fast as it stores
/// them: what the kernel buffers for the connection (at most the largest
/// send buffer and the largest receive buffer TCP grows to, the last
/// numbers of `tcp_wmem` and `tcp_rmem`), and 2 MiB for the broker's own
/// buffers (its reader's, a decoded batch waiting for room in the queue,
/// the queue).
fn most_messages_in_between() -> u64 {
    let largest = |name: &str| -> u64 {
        let path = format!("/proc/sys/net/ipv4/{name}");
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
        let last = text.split_whitespace().last().and_then(|n| n.parse().ok());
        last.unwrap_or_else(|| panic!("no number in {path}: {text:?}"))
    };
    (largest("tcp_wmem") + largest("tcp_rmem") + 2 * MIB) / MESSAGE_BYTES as u64
}
