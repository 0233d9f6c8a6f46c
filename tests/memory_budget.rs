//! One memory budget for the whole broker, measured on the real `brook`
//! binary: the disk store's cache of payloads (`--cache-bytes`) is shared
//! by every topic, however many there are, and an in-memory broker that
//! reaches `--memory-bytes` with nothing it may drop holds its publishers
//! back instead of growing.
//!
//! Each test starts the binary as a child process and reads its `VmHWM`,
//! the most memory it ever held, from `/proc/<pid>/status`. The bounds are
//! the broker's own memory at start (the program, its threads, measured in
//! each run before any message) plus what the flags let it hold, plus
//! slack for what grows with none of the tests' numbers (connection
//! buffers, the allocator's spare memory). Every payload carries its
//! message's number, so subscribers check that they get each message
//! exactly once, in order. Nothing here sleeps: waits are blocking reads
//! under a deadline, and the one check that something does *not* happen
//! (a held publisher stays held) watches for [`QUIET`].
//! `cargo test --test memory_budget -- --nocapture` shows the samples.

mod common;

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use brook::client::Publisher;
use brook::wire::request::StartAt;
use common::client::{subscriber, Fence};
use common::line::Line;
use common::memory::{Memory, MemoryLog};
use common::process::BrookProcess;
use common::temp::TempDir;
use common::QUIET;

const MIB: u64 = 1 << 20;

/// The longest a test waits for one thing it expects. Long: a debug build
/// on a busy machine moves these hundreds of megabytes slowly. A passing
/// run never waits that long.
const PATIENCE: Duration = Duration::from_secs(30);

/// What the broker may hold on top of its memory at start and what its
/// flags allow: the readers' and writers' buffers (256 KiB each while
/// busy), a decoded batch waiting for room in the dispatcher's queue, the
/// segments' sparse index, the allocator's headers and rounding beyond
/// what the budget counts per message. These tests measured 2 to 6 MiB of
/// it.
const SLACK_MIB: u64 = 12;

/// Starts `brook` with `flags` on a free port of 127.0.0.1.
fn start_brook(flags: &[&str]) -> BrookProcess {
    let mut command = Command::new(env!("CARGO_BIN_EXE_brook"));
    command.args(["--addr", "127.0.0.1:0"]).args(flags);
    BrookProcess::start(command, PATIENCE).unwrap_or_else(|e| panic!("{e}"))
}

/// A log of `brook`'s memory, bounded by its memory at start (its peak so
/// far, in MiB) plus `allowed` MiB.
fn memory_log(brook: &BrookProcess, allowed: u64) -> MemoryLog {
    let at_start = Memory::of(brook.pid()).peak >> 10;
    let mut memory = MemoryLog::new(brook.pid(), at_start + allowed);
    memory.sample("started");
    memory
}

/// The payload of message `i` of `size` bytes: its number in ten digits,
/// then dots.
fn payload(i: u64, size: usize) -> Vec<u8> {
    let mut payload = vec![b'.'; size];
    payload[..10].copy_from_slice(format!("{i:010}").as_bytes());
    payload
}

// ---- The disk store's cache. ----

const TOPICS: usize = 64;
const DISK_MESSAGE_BYTES: usize = 4 << 10;
/// 2 MiB per topic, 128 MiB in all: eight times `--cache-bytes`.
const MESSAGES_PER_TOPIC: u64 = 512;
const CACHE_MIB: u64 = 16;

/// 64 topics of 2 MiB each on disk, with `--cache-bytes 16MiB`: while the
/// topics are published, and while all of them are replayed from the
/// beginning at once (each replay holds a run read back from its segments,
/// which counts against the cache's budget too), the broker holds no more
/// than
///
/// - its memory at start (3 MiB),
/// - 16 MiB of cache, twice: the allocator keeps memory for the thread
///   that allocated it, so the cached payloads the publisher's reader
///   thread allocated, once dropped from the cache, stay with that
///   thread, while the payloads read back are allocated afresh by the
///   fetcher thread (measured: 37 MiB after the replay; 26 MiB with
///   `MALLOC_ARENA_MAX=1`),
/// - 1 MiB of payloads in the dispatcher's queue,
/// - 1 MiB of deliveries sent to the subscriber and not yet acked
///   (`--subscriber-buffer 1MiB`),
/// - and [`SLACK_MIB`]:
///
/// 49 MiB. With a cache and a write buffer per topic, it held 64 MiB once
/// published (1 MiB of write buffer per topic), and would have held all
/// 128 MiB in its caches. Every message of every topic still replays, once
/// and in order.
#[test]
fn many_topics_on_disk_share_one_cache_and_every_message_replays() {
    let data = TempDir::new("cache");
    let data_dir = data.path().to_str().unwrap();
    let brook = start_brook(&[
        "--data-dir",
        data_dir,
        "--fsync",
        "never",
        "--cache-bytes",
        "16MiB",
        "--subscriber-buffer",
        "1MiB",
    ]);
    let mut memory = memory_log(&brook, 2 * CACHE_MIB + 1 + 1 + SLACK_MIB);
    let topics: Vec<String> = (0..TOPICS).map(|t| format!("topic-{t}")).collect();

    let mut fence = Fence::new(brook.addr);
    let mut publisher = Publisher::connect(brook.addr).unwrap();
    for topic in &topics {
        for i in 0..MESSAGES_PER_TOPIC {
            publisher
                .publish(topic, &payload(i, DISK_MESSAGE_BYTES))
                .unwrap();
        }
    }
    fence.publish_marker(&mut publisher);
    memory.sample("all published");
    let mut watcher = Line::connect(brook.addr);
    let cached = stat(&mut watcher, "memory_used");
    assert!(cached <= CACHE_MIB * MIB, "{cached} bytes cached");

    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let mut replay = subscriber(brook.addr, &names, StartAt::Beginning);
    let mut next = vec![0u64; TOPICS];
    for _ in 0..TOPICS as u64 * MESSAGES_PER_TOPIC {
        let delivery = match replay.recv_timeout(PATIENCE) {
            Ok(Some(delivery)) => delivery,
            other => panic!("no delivery within {PATIENCE:?}: {other:?}; got {next:?}"),
        };
        let t: usize = delivery.topic["topic-".len()..].parse().unwrap();
        let expected = payload(next[t], DISK_MESSAGE_BYTES);
        assert!(
            delivery.payload == expected,
            "{}: expected message {}, got {:?}",
            delivery.topic,
            next[t],
            String::from_utf8_lossy(&delivery.payload[..delivery.payload.len().min(10)])
        );
        next[t] += 1;
        replay.ack().unwrap();
    }
    assert!(next.iter().all(|&n| n == MESSAGES_PER_TOPIC), "{next:?}");
    memory.sample("all replayed");
    eprintln!("{memory}");
}

// ---- The in-memory store's budget. ----

const MEMORY_MESSAGE_BYTES: usize = 1 << 10;
const BUDGET_MIB: u64 = 8;
/// 64 MiB: eight times `--memory-bytes`.
const PUBLISHED: u64 = 64 * 1024;

/// A line-protocol publisher whose `PUB`s a writer thread pipelines, and
/// whose `+OK`s (each a confirmed message) a reader thread counts.
struct PipelinedPublisher {
    /// The number of messages confirmed so far, after each `+OK`.
    confirmations: mpsc::Receiver<u64>,
    confirmed: u64,
    writer: thread::JoinHandle<()>,
    reader: thread::JoinHandle<()>,
}

impl PipelinedPublisher {
    fn start(addr: SocketAddr, topic: &'static str, count: u64) -> PipelinedPublisher {
        let stream = TcpStream::connect(addr).unwrap();
        let replies = BufReader::new(stream.try_clone().unwrap());
        let writer = thread::spawn(move || {
            let mut out = BufWriter::new(stream);
            for i in 0..count {
                let text = String::from_utf8(payload(i, MEMORY_MESSAGE_BYTES)).unwrap();
                writeln!(out, "PUB {topic} {text}").unwrap();
            }
            out.flush().unwrap();
        });
        let (confirm, confirmations) = mpsc::channel();
        let reader = thread::spawn(move || {
            for (i, line) in replies.lines().take(count as usize).enumerate() {
                assert_eq!(line.unwrap(), format!("+OK {i}"));
                let _ = confirm.send(i as u64 + 1);
            }
        });
        PipelinedPublisher {
            confirmations,
            confirmed: 0,
            writer,
            reader,
        }
    }

    /// Waits until `n` messages are confirmed.
    #[track_caller]
    fn wait_confirmed(&mut self, n: u64) {
        while self.confirmed < n {
            match self.confirmations.recv_timeout(PATIENCE) {
                Ok(confirmed) => self.confirmed = confirmed,
                Err(e) => panic!("{} of {n} confirmed: {e}", self.confirmed),
            }
        }
    }

    /// Asserts that no message is confirmed for `window`.
    #[track_caller]
    fn expect_no_confirmation(&mut self, window: Duration) {
        if let Ok(confirmed) = self.confirmations.recv_timeout(window) {
            panic!("the publisher went on: {confirmed} confirmed");
        }
    }
}

/// `+STAT <name> <value>` from `STATS`.
fn stat(watcher: &mut Line, name: &str) -> u64 {
    watcher.send("STATS\n");
    let prefix = format!("+STAT {name} ");
    let lines = watcher.read_until_end();
    let value = lines.iter().find_map(|line| line.strip_prefix(&prefix));
    value
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {lines:?}"))
}

/// An in-memory broker with `--memory-bytes 8MiB` and a subscriber from
/// the beginning, with manual acks, that stops reading: its publisher,
/// which sends 64 MiB, is held back (`STATS` says so, and its confirmed
/// count stops) instead of the broker growing. The broker holds no more
/// than its memory at start + 8 MiB of messages + 1 MiB of payloads in the
/// dispatcher's queue + 1 MiB of deliveries to the subscriber + what one
/// round appends past the budget (under 1 MiB here) + [`SLACK_MIB`]: 26
/// MiB (measured: 16 MiB), where 64 MiB are published. Once the subscriber
/// reads and acks, the publisher goes on, and the subscriber gets every
/// message exactly once, in order.
#[test]
fn a_full_in_memory_broker_holds_its_publisher_until_the_subscriber_reads() {
    const TOPIC: &str = "held";
    let brook = start_brook(&[
        "--in-memory",
        "--memory-bytes",
        "8MiB",
        "--subscriber-buffer",
        "1MiB",
        "--ack-timeout",
        "1h",
    ]);
    let mut memory = memory_log(&brook, BUDGET_MIB + 1 + 1 + 1 + SLACK_MIB);
    let mut subscriber = Line::connect_with_patience(brook.addr, PATIENCE);
    subscriber.send(format!("SUB {TOPIC} beginning manual\n"));
    subscriber.expect_line("+OK");
    let mut watcher = Line::connect_with_patience(brook.addr, PATIENCE);

    let mut publisher = PipelinedPublisher::start(brook.addr, TOPIC, PUBLISHED);
    let deadline = Instant::now() + PATIENCE;
    while stat(&mut watcher, "publishers_waiting") == 0 {
        assert!(Instant::now() < deadline, "the publisher was never held");
    }
    // STATS comes after every command queued before it: what the broker
    // took before it held the publisher is stored by now, and confirmed.
    let stored = stat(&mut watcher, "messages_in");
    publisher.wait_confirmed(stored);
    let budget = BUDGET_MIB * MIB;
    let used = stat(&mut watcher, "memory_used");
    assert!(used <= budget + 2 * MIB, "memory_used {used} bytes");
    assert!(
        stored * MEMORY_MESSAGE_BYTES as u64 <= budget + 2 * MIB,
        "{stored} messages stored"
    );
    publisher.expect_no_confirmation(QUIET);
    assert_eq!(stat(&mut watcher, "messages_in"), stored);
    assert!(
        !publisher.writer.is_finished(),
        "the publisher was not held"
    );
    memory.sample("publisher held");
    assert!(
        brook
            .stderr()
            .contains("publishers wait until they catch up"),
        "no warning:\n{}",
        brook.stderr()
    );

    for i in 0..PUBLISHED {
        let msg = subscriber.read_msg();
        assert_eq!((msg.topic.as_str(), msg.offset), (TOPIC, i));
        assert!(
            msg.payload == payload(i, MEMORY_MESSAGE_BYTES),
            "message {i}"
        );
        subscriber.send("ACK\n");
    }
    publisher.wait_confirmed(PUBLISHED);
    publisher
        .writer
        .join()
        .expect("the publisher wrote everything");
    publisher.reader.join().expect("every +OK was in order");
    subscriber.expect_silence(QUIET);
    assert_eq!(stat(&mut watcher, "publishers_waiting"), 0);
    memory.sample("all delivered");
    eprintln!("{memory}");
}
