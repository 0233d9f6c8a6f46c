//! One memory budget for the whole broker, measured on the real `brook`
//! binary: the disk store's cache of payloads (`--cache-bytes`) is shared
//! by every topic, however many there are, and an in-memory broker that
//! reaches `--memory-bytes` with nothing it may drop holds its publishers
//! back instead of growing. A connection is not held after its first
//! subscribe, lest its acks be held too and the broker wedge: what it
//! publishes after that is refused while the store is full, and none of
//! it is stored. The warning of a full store names what holds it.
//!
//! Each test starts the binary as a child process; those that measure it
//! read its `VmHWM`, the most memory it ever held, from
//! `/proc/<pid>/status`. The bounds are
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

// ---- A connection that both subscribes and publishes. ----

/// `--memory-bytes` of the tests below: a megabyte, which 4 MiB published
/// fill four times over.
const SMALL_BUDGET: &str = "1MiB";
/// What a subscriber may leave unacked (`--max-inflight`).
const WINDOW: u64 = 16;
/// How many messages of [`MEMORY_MESSAGE_BYTES`] the connection that
/// subscribes publishes: 4 MiB.
const OVERFLOW: u64 = 4096;

/// The answer to a `PUB` refused because the in-memory store is full.
const FULL_STORE_REFUSAL: &str = "-ERR the in-memory store is full (--memory-bytes 1MiB) and \
    subscribers still need all of it: ack what you hold and publish again, or raise \
    --memory-bytes";

/// An in-memory broker with `--memory-bytes 1MiB` and a window of
/// [`WINDOW`] unacked deliveries per subscriber.
fn start_small_brook() -> BrookProcess {
    start_brook(&[
        "--in-memory",
        "--memory-bytes",
        SMALL_BUDGET,
        "--max-inflight",
        "16",
        "--ack-timeout",
        "1h",
    ])
}

/// `PUB <topic> <payload i>` for each `i` of `numbers`.
fn pub_lines(topic: &str, numbers: std::ops::Range<u64>) -> String {
    let lines = numbers.map(|i| {
        let text = String::from_utf8(payload(i, MEMORY_MESSAGE_BYTES)).unwrap();
        format!("PUB {topic} {text}\n")
    });
    lines.collect()
}

/// Writes `requests` to `connection`'s socket from another thread, the way
/// a client pipelines them, while this thread reads the replies. A write
/// that cannot go on for [`PATIENCE`] fails, so the thread always ends.
fn pipeline(connection: &Line, requests: String) -> thread::JoinHandle<std::io::Result<()>> {
    let mut stream = connection.try_clone_stream();
    stream.set_write_timeout(Some(PATIENCE)).unwrap();
    thread::spawn(move || stream.write_all(requests.as_bytes()))
}

/// The `PUB`s a connection sent, as their answers came back in order: the
/// numbers of the payloads stored (the `n`th stored is at offset `first +
/// n`), and how many were refused for a full store.
struct Answers {
    first: u64,
    stored: Vec<u64>,
    refused: u64,
}

impl Answers {
    fn new(first: u64) -> Answers {
        Answers {
            first,
            stored: Vec::new(),
            refused: 0,
        }
    }

    /// The offset after the last message stored.
    fn end(&self) -> u64 {
        self.first + self.stored.len() as u64
    }

    /// Takes the answer to `PUB` number `number`: `+OK` with the next
    /// offset, or the refusal.
    #[track_caller]
    fn take(&mut self, number: u64, answer: &str) {
        if answer == FULL_STORE_REFUSAL {
            self.refused += 1;
        } else {
            assert_eq!(answer, format!("+OK {}", self.end()), "PUB number {number}");
            self.stored.push(number);
        }
    }

    /// The payload stored at `offset`.
    fn payload_at(&self, offset: u64) -> Vec<u8> {
        let number = match offset.checked_sub(self.first) {
            Some(n) => self.stored[n as usize],
            None => offset,
        };
        payload(number, MEMORY_MESSAGE_BYTES)
    }
}

/// Reads `subscriber`'s messages in offset order from `from`, checking
/// each against what `answers` says was stored, until offset `end`
/// (excluded). With `ack`, acks each as it comes.
#[track_caller]
fn read_stored(subscriber: &mut Line, answers: &Answers, from: u64, end: u64, ack: bool) {
    for offset in from..end {
        let msg = subscriber.read_msg();
        assert_eq!(msg.offset, offset);
        assert!(msg.payload == answers.payload_at(offset), "offset {offset}");
        if ack {
            subscriber.send("ACK\n");
        }
    }
}

/// Reads what `connection` is sent until it has the answers to `count`
/// `PUB`s numbered from `first_number`, into `answers`; the messages
/// delivered to it meanwhile (a delivery of a message can come before its
/// `+OK`) are checked once the answers are in, and counted from
/// `*next_msg`.
#[track_caller]
fn read_answers(
    connection: &mut Line,
    answers: &mut Answers,
    first_number: u64,
    count: u64,
    next_msg: &mut u64,
) {
    let mut delivered = Vec::new();
    let mut answered = 0;
    while answered < count {
        let line = connection.read_line();
        if line.starts_with("MSG ") {
            delivered.push(connection.msg_after(&line));
        } else {
            answers.take(first_number + answered, &line);
            answered += 1;
        }
    }
    for msg in delivered {
        assert_eq!(msg.offset, *next_msg);
        assert!(
            msg.payload == answers.payload_at(msg.offset),
            "offset {}",
            msg.offset
        );
        *next_msg += 1;
    }
}

/// The wedge a line connection could cause: it subscribes with manual
/// acks (with `subscribe`, a `SUB` line), holds a full window, publishes 4
/// MiB into a 1 MiB store, then acks what it holds, all pipelined. Holding
/// it back on the `PUB` that found the store full would leave its acks
/// unread behind it, and since its window is what holds every message in
/// the store, no publisher of the broker would ever be read again.
/// Instead its publishes are refused while the store is full, its acks are
/// taken (the messages after its window come), and once it has acked what
/// was stored, an unrelated publisher is answered.
fn publish_then_ack_on_one_connection(subscribe: &str) {
    let brook = start_small_brook();
    let mut first = Line::connect_with_patience(brook.addr, PATIENCE);
    first.send(pub_lines(WORK, 0..WINDOW));
    for i in 0..WINDOW {
        first.expect_line(&format!("+OK {i}"));
    }
    let mut consumer = Line::connect_with_patience(brook.addr, PATIENCE);
    consumer.send(format!("{subscribe}\n"));
    consumer.expect_line("+OK");
    let mut answers = Answers::new(WINDOW);
    read_stored(&mut consumer, &answers, 0, WINDOW, false);

    let acks = "ACK\n".repeat(WINDOW as usize);
    let writer = pipeline(
        &consumer,
        pub_lines(WORK, WINDOW..WINDOW + OVERFLOW) + &acks,
    );
    let mut next_msg = WINDOW;
    read_answers(&mut consumer, &mut answers, WINDOW, OVERFLOW, &mut next_msg);
    writer
        .join()
        .unwrap()
        .expect("the broker read every request");
    assert!(answers.refused > 0, "the store never filled");

    let mut other = Line::connect_with_patience(brook.addr, PATIENCE);
    other.send("PUB elsewhere hello\n");
    // The acks were taken: the window moved on. Ack everything stored.
    for _ in WINDOW..next_msg {
        consumer.send("ACK\n");
    }
    read_stored(&mut consumer, &answers, next_msg, answers.end(), true);
    other.expect_line("+OK 0");

    let mut watcher = Line::connect_with_patience(brook.addr, PATIENCE);
    let refused = stat(&mut watcher, "publishes_refused_memory_full");
    assert_eq!(refused, answers.refused);
    assert_eq!(stat(&mut watcher, "publishers_waiting"), 0);
}

/// The topic [`publish_then_ack_on_one_connection`] works on.
const WORK: &str = "work";

#[test]
fn a_subscriber_that_publishes_and_acks_never_wedges_a_full_in_memory_broker() {
    publish_then_ack_on_one_connection("SUB work beginning manual");
}

#[test]
fn a_group_member_that_publishes_and_acks_never_wedges_a_full_in_memory_broker() {
    publish_then_ack_on_one_connection("SUB work beginning manual group workers");
}

/// Subscribes a line connection to `topic` from the beginning with manual
/// acks, and has it publish [`OVERFLOW`] messages there without acking
/// any: the store fills, and its publishes are refused from then on.
/// Returns the connection, which holds a full window, and its answers.
fn fill_from_a_subscriber(brook: &BrookProcess, topic: &str) -> (Line, Answers) {
    let mut consumer = Line::connect_with_patience(brook.addr, PATIENCE);
    consumer.send(format!("SUB {topic} beginning manual\n"));
    consumer.expect_line("+OK");
    let writer = pipeline(&consumer, pub_lines(topic, 0..OVERFLOW));
    let answers = answers_until_full(&mut consumer, writer, 0);
    (consumer, answers)
}

/// Reads the answers to the `PUB`s numbered `first..OVERFLOW` that
/// `writer` pipelines on `consumer`, which subscribes to their topic from
/// offset 0 with manual acks and acks nothing: the store fills, and the
/// rest are refused, while a window of deliveries comes.
#[track_caller]
fn answers_until_full(
    consumer: &mut Line,
    writer: thread::JoinHandle<std::io::Result<()>>,
    first: u64,
) -> Answers {
    let mut answers = Answers::new(first);
    let mut next_msg = 0;
    read_answers(
        consumer,
        &mut answers,
        first,
        OVERFLOW - first,
        &mut next_msg,
    );
    writer
        .join()
        .unwrap()
        .expect("the broker read every request");
    assert!(answers.refused > 0, "the store never filled");
    assert_eq!(next_msg, WINDOW, "deliveries beyond the window");
    answers
}

/// While the store is full, a connection that subscribes is told why its
/// publish is refused, with the flag to raise, and nothing refused is
/// stored: a later subscriber from the beginning gets exactly the messages
/// confirmed, and the next message stored takes the offset after them.
#[test]
fn a_subscriber_publishing_to_a_full_in_memory_broker_is_refused_and_nothing_refused_is_stored() {
    const TOPIC: &str = "loop";
    let brook = start_small_brook();
    let (mut consumer, answers) = fill_from_a_subscriber(&brook, TOPIC);
    let mut watcher = Line::connect_with_patience(brook.addr, PATIENCE);
    assert_eq!(stat(&mut watcher, "messages_in"), answers.end());
    let refused = stat(&mut watcher, "publishes_refused_memory_full");
    assert_eq!(refused, answers.refused);

    let mut later = Line::connect_with_patience(brook.addr, PATIENCE);
    later.send(format!("SUB {TOPIC} beginning\n"));
    later.expect_line("+OK");
    let oldest = later.read_msg();
    assert!(oldest.payload == answers.payload_at(oldest.offset));
    let after_oldest = oldest.offset + 1;
    read_stored(&mut later, &answers, after_oldest, answers.end(), false);
    // Once the consumer goes, nothing needs the old messages: the store has
    // room, and the next message follows the last one confirmed.
    consumer.send("QUIT\n");
    let mut publisher = Line::connect_with_patience(brook.addr, PATIENCE);
    publisher.send(format!("PUB {TOPIC} after\n"));
    publisher.expect_line(&format!("+OK {}", answers.end()));
    later.expect_msg(TOPIC, answers.end(), b"after");
}

/// A connection that pulls is not held either: while the store is full,
/// its publish is refused at once and its next request is read, where a
/// connection that only publishes waits.
#[test]
fn a_puller_publishing_to_a_full_in_memory_broker_is_refused_while_a_publisher_waits() {
    const TOPIC: &str = "drain";
    let brook = start_small_brook();
    let (_consumer, answers) = fill_from_a_subscriber(&brook, TOPIC);
    let mut puller = Line::connect_with_patience(brook.addr, PATIENCE);
    puller.send(format!("PULL {TOPIC} 1\n"));
    let (pulled, count) = puller.read_pull();
    assert_eq!(count, 1);
    assert!(pulled[0].payload == answers.payload_at(pulled[0].offset));
    puller.send(format!("PUB {TOPIC} more\nPING\n"));
    puller.expect_line(FULL_STORE_REFUSAL);
    puller.expect_line("+PONG");

    let mut publisher = Line::connect_with_patience(brook.addr, PATIENCE);
    publisher.send(format!("PUB {TOPIC} more\n"));
    let mut watcher = Line::connect_with_patience(brook.addr, PATIENCE);
    let deadline = Instant::now() + PATIENCE;
    while stat(&mut watcher, "publishers_waiting") == 0 {
        assert!(Instant::now() < deadline, "the publisher was never held");
    }
    publisher.expect_nothing_yet();
    let refused = stat(&mut watcher, "publishes_refused_memory_full");
    assert_eq!(refused, answers.refused + 1);
}

/// The next line `connection` is sent that is not a delivery (deliveries
/// are read and dropped).
fn next_answer(connection: &mut Line) -> String {
    loop {
        let line = connection.read_line();
        if !line.starts_with("MSG ") {
            return line;
        }
        connection.msg_after(&line);
    }
}

/// How many topics a pattern subscription takes several rounds to look
/// at: five slices of `pattern_rounds.rs`'s 1024 topics.
const MANY_TOPICS: usize = 5000;

/// A connection whose pattern subscription is still being made when its
/// publishes are refused gets every answer in the order it asked: the
/// pattern's `+OK` first, then each refusal before the next `PING`'s
/// `+PONG`. (The refusals wait behind the pattern job, as its other
/// answers do.)
#[test]
fn refusals_taken_while_a_pattern_subscription_is_made_come_after_its_ok() {
    const PINGS: usize = 20;
    let brook = start_small_brook();
    let mut setup = Line::connect_with_patience(brook.addr, PATIENCE);
    let topics: String = (0..MANY_TOPICS).map(|i| format!("PUB p.{i} x\n")).collect();
    let writer = pipeline(&setup, topics);
    for _ in 0..MANY_TOPICS {
        let answer = setup.read_line();
        assert!(answer.starts_with("+OK "), "{answer}");
    }
    writer.join().unwrap().expect("the broker read every PUB");
    let (mut consumer, _) = fill_from_a_subscriber(&brook, "loop");

    let publishes = (0..PINGS).map(|i| format!("PUB loop extra{i}\nPING\n"));
    consumer.send(format!("SUB p.* manual\n{}", publishes.collect::<String>()));
    assert_eq!(next_answer(&mut consumer), "+OK", "the pattern's status");
    for i in 0..PINGS {
        assert_eq!(next_answer(&mut consumer), FULL_STORE_REFUSAL, "PUB {i}");
        assert_eq!(next_answer(&mut consumer), "+PONG", "PING {i}");
    }
}

/// Which publishes wait for a full store and which are refused does not
/// depend on how TCP splits what a client sends: a `PUB` sent before the
/// connection's first `SUB` waits, as a pure publisher's does, even in
/// the read that carries the `SUB`, and is stored once there is room; the
/// `PUB`s after it are never held, and are refused once the store is full
/// again (the `SUB` is what keeps their messages).
#[test]
fn a_publish_sent_before_the_first_subscribe_waits_and_those_after_it_are_refused() {
    const TOPIC: &str = "late";
    let brook = start_small_brook();
    let (mut filler, _) = fill_from_a_subscriber(&brook, "loop");
    let mut client = Line::connect_with_patience(brook.addr, PATIENCE);
    let subscribe = format!("SUB {TOPIC} beginning manual\n");
    let requests = pub_lines(TOPIC, 0..1) + &subscribe + &pub_lines(TOPIC, 1..OVERFLOW);
    let writer = pipeline(&client, requests);

    let mut watcher = Line::connect_with_patience(brook.addr, PATIENCE);
    let deadline = Instant::now() + PATIENCE;
    while stat(&mut watcher, "publishers_waiting") == 0 {
        client.expect_nothing_yet();
        assert!(Instant::now() < deadline, "the first PUB was never held");
    }
    client.expect_nothing_yet();
    // Once the filler goes, nothing needs its messages: there is room.
    filler.send("QUIT\n");
    client.expect_line("+OK 0");
    client.expect_line("+OK");
    answers_until_full(&mut client, writer, 1);
    assert_eq!(stat(&mut watcher, "publishers_waiting"), 0);
}

/// The warning a full store logs names what holds it, so that an operator
/// can find a consumer that stopped acking: the topic, and each
/// subscriber and group that needs it, from the oldest offset it has not
/// acked.
#[test]
fn the_warning_of_a_full_in_memory_store_names_the_consumers_that_hold_it() {
    const TOPIC: &str = "loop";
    let brook = start_small_brook();
    let mut member = Line::connect_with_patience(brook.addr, PATIENCE);
    member.send(format!("SUB {TOPIC} beginning manual group workers\n"));
    member.expect_line("+OK");
    let _filled = fill_from_a_subscriber(&brook, TOPIC);
    let held_by = format!("by \"{TOPIC}\" (");
    brook.wait_for_log(&held_by, PATIENCE);
    let log = brook.stderr();
    let warning = log.lines().find(|line| line.contains(&held_by)).unwrap();
    let (_, holders) = warning.split_once("): ").unwrap();
    let holders: Vec<&str> = holders.split(", ").collect();
    assert!(
        holders.len() == 2
            && holders[0].starts_with("conn ")
            && holders[0].ends_with(" from offset 0")
            && holders[1] == "group \"workers\" from offset 0",
        "{warning}"
    );
}
