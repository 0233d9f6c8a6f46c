//! Shared helpers for the integration tests: starting a broker on an
//! ephemeral port, a raw-socket client that reads exact byte counts under a
//! timeout, builders for the wire frames (written out by hand, independently
//! of `brook::protocol`, the way the Go reference client lays them out), and
//! small wrappers around the Rust client, and the `brook` binary run as a
//! child process.
//!
//! Nothing here sleeps: every wait is a blocking read with a deadline.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use brook::client::{Delivery, Publisher, Subscriber};
use brook::config::{Config, Storage};
use brook::protocol::StartAt;
use brook::server::Broker;

/// The longest a test waits for something that should arrive.
pub const WAIT: Duration = Duration::from_secs(5);

/// How long a test watches for something that should not arrive when a bug
/// would make it arrive at once (no timer involved).
pub const QUIET: Duration = Duration::from_millis(300);

/// A configuration for tests that are not about timers: a short ack delay,
/// and an ack timeout long enough that a busy machine never causes a
/// redelivery the test did not ask for.
pub fn config() -> Config {
    Config {
        addr: "127.0.0.1:0".into(),
        ack_delay: Duration::from_millis(100),
        ack_timeout: Duration::from_secs(10),
        storage: Storage::Memory,
        ..Config::default()
    }
}

/// A configuration for tests about redelivery: short delays keep them fast.
pub fn timer_config() -> Config {
    Config {
        ack_delay: Duration::from_millis(100),
        ack_timeout: Duration::from_millis(300),
        ..config()
    }
}

/// Starts a broker on `127.0.0.1`, port 0. Dropping it shuts it down.
pub fn start_broker(config: &Config) -> Broker {
    brook::server::start(config).expect("broker starts")
}

// ---- Frames, byte for byte (all integers big-endian). ----

pub const SUBSCRIBE: [u8; 2] = [0, 1];
pub const UNSUBSCRIBE: [u8; 2] = [0, 2];
pub const PUBLISH: [u8; 2] = [0, 3];
pub const ACK: [u8; 2] = [0, 4];
pub const NACK: [u8; 2] = [0, 5];

pub const SUBSCRIBED: [u8; 2] = [0, 1];
pub const UNSUBSCRIBED: [u8; 2] = [0, 2];

/// Start-at Beginning and Current.
pub const BEGINNING: [u8; 2] = [0, 0];
pub const CURRENT: [u8; 2] = [0, 1];

/// Start-at From with the reference's `u16` offset.
pub fn from_u16(offset: u16) -> Vec<u8> {
    [&[0, 2][..], &offset.to_be_bytes()].concat()
}

/// Start-at From with brook's `u64` offset extension (type 3).
pub fn from_u64(offset: u64) -> Vec<u8> {
    [&[0, 3][..], &offset.to_be_bytes()].concat()
}

/// A subscribe as the Go client writes it: action, `u32` length, the raw JSON
/// bytes, and the start-at bytes, all in one buffer.
pub fn subscribe_request(json: impl AsRef<[u8]>, start_at: &[u8]) -> Vec<u8> {
    [&topic_list(SUBSCRIBE, json.as_ref())[..], start_at].concat()
}

/// An unsubscribe: action, `u32` length, the raw JSON bytes.
pub fn unsubscribe_request(json: impl AsRef<[u8]>) -> Vec<u8> {
    topic_list(UNSUBSCRIBE, json.as_ref())
}

fn topic_list(action: [u8; 2], json: &[u8]) -> Vec<u8> {
    let len = u32::try_from(json.len()).unwrap();
    [&action[..], &len.to_be_bytes(), json].concat()
}

/// One publish frame pair, after the connection's Publish action:
/// `u16` length of `topic:` + name, those bytes, `u32` payload length, payload.
pub fn publish_frame(topic: &str, payload: &[u8]) -> Vec<u8> {
    let topic = format!("topic:{topic}");
    let topic_len = u16::try_from(topic.len()).unwrap();
    let payload_len = u32::try_from(payload.len()).unwrap();
    [
        &topic_len.to_be_bytes()[..],
        topic.as_bytes(),
        &payload_len.to_be_bytes(),
        payload,
    ]
    .concat()
}

/// A delivery as the broker must write it: `u16` topic length, topic,
/// `u64` payload length, payload.
pub fn delivery_frame(topic: &str, payload: &[u8]) -> Vec<u8> {
    let topic_len = u16::try_from(topic.len()).unwrap();
    [
        &topic_len.to_be_bytes()[..],
        topic.as_bytes(),
        &(payload.len() as u64).to_be_bytes(),
        payload,
    ]
    .concat()
}

/// An Error status: `u16` 3, `u16` reason length, reason.
pub fn error_reply(reason: &str) -> Vec<u8> {
    let len = u16::try_from(reason.len()).unwrap();
    [&[0, 3][..], &len.to_be_bytes(), reason.as_bytes()].concat()
}

// ---- A raw TCP client. ----

/// A bare socket to the broker, for tests about the bytes on the wire.
pub struct Raw {
    stream: TcpStream,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        Raw { stream }
    }

    /// Writes `bytes` in one write call.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Writes `bytes` one byte per write call (Nagle is off, so each byte
    /// leaves at once).
    pub fn send_bytewise(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.stream.write_all(&[*byte]).expect("write");
        }
    }

    /// Closes the sending side: the broker sees the end of the stream.
    pub fn close_write(&mut self) {
        self.stream.shutdown(std::net::Shutdown::Write).unwrap();
    }

    /// Reads exactly `n` bytes, failing the test if they do not come in time.
    pub fn read_n(&mut self, n: usize) -> Vec<u8> {
        let mut bytes = vec![0; n];
        if let Err(error) = self.stream.read_exact(&mut bytes) {
            panic!("reading {n} bytes: {error}");
        }
        bytes
    }

    /// Reads `expected.len()` bytes and asserts they are `expected`.
    pub fn expect(&mut self, expected: &[u8]) {
        let got = self.read_n(expected.len());
        assert_eq!(
            got,
            expected,
            "expected {:?}, got {:?}",
            String::from_utf8_lossy(expected),
            String::from_utf8_lossy(&got)
        );
    }

    pub fn expect_error(&mut self, reason: &str) {
        self.expect(&error_reply(reason));
    }

    /// Reads one delivery: (topic bytes, payload).
    pub fn read_delivery(&mut self) -> (Vec<u8>, Vec<u8>) {
        let topic_len = u16::from_be_bytes(self.read_n(2).try_into().unwrap());
        let topic = self.read_n(topic_len as usize);
        let payload_len = u64::from_be_bytes(self.read_n(8).try_into().unwrap());
        assert!(payload_len <= 16 << 20, "delivery of {payload_len} bytes");
        let payload = self.read_n(payload_len as usize);
        (topic, payload)
    }

    pub fn expect_delivery(&mut self, topic: &str, payload: &[u8]) {
        self.expect(&delivery_frame(topic, payload));
    }

    /// Asserts that nothing arrives for `window`.
    pub fn expect_silence(&mut self, window: Duration) {
        self.stream.set_read_timeout(Some(window)).unwrap();
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Ok(0) => panic!("the broker closed the connection"),
            Ok(_) => panic!("unexpected byte {:#04x}", byte[0]),
            Err(e) => panic!("read failed: {e}"),
        }
        self.stream.set_read_timeout(Some(WAIT)).unwrap();
    }

    /// Asserts that the broker closes the connection (after anything already
    /// read), within [`WAIT`].
    pub fn expect_eof(&mut self) {
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Ok(0) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Ok(_) => panic!("expected the connection to close, got {:#04x}", byte[0]),
            Err(e) => panic!("expected the connection to close: {e}"),
        }
    }
}

/// A raw connection subscribed to the topics of `json` (a JSON list) from
/// Current, its Subscribed status read.
pub fn raw_subscriber(addr: SocketAddr, json: &str) -> Raw {
    let mut subscriber = Raw::connect(addr);
    subscriber.send(&subscribe_request(json, &CURRENT));
    subscriber.expect(&SUBSCRIBED);
    subscriber
}

// ---- The Rust client. ----

/// A subscriber to `topics`, confirmed by the broker.
pub fn subscriber(addr: SocketAddr, topics: &[&str], start: StartAt) -> Subscriber {
    let mut subscriber = Subscriber::connect(addr).expect("connect");
    subscriber.subscribe(topics, start).expect("subscribe");
    subscriber
}

/// The next delivery, which must come within [`WAIT`].
pub fn next(subscriber: &mut Subscriber) -> Delivery {
    match subscriber.recv_timeout(WAIT) {
        Ok(Some(delivery)) => delivery,
        Ok(None) => panic!("no delivery within {WAIT:?}"),
        Err(error) => panic!("receiving: {error}"),
    }
}

/// Asserts the next delivery is `payload` on `topic`.
pub fn expect_next(subscriber: &mut Subscriber, topic: &str, payload: &[u8]) {
    let delivery = next(subscriber);
    assert_eq!(
        (
            delivery.topic.as_str(),
            String::from_utf8_lossy(&delivery.payload)
        ),
        (topic, String::from_utf8_lossy(payload))
    );
}

/// Receives the next delivery, asserts it, and acks it at once (the
/// client would otherwise send the ack with its next read, which a test
/// that then waits elsewhere may leave for longer than the ack timeout).
pub fn expect_next_ack(subscriber: &mut Subscriber, topic: &str, payload: &[u8]) {
    expect_next(subscriber, topic, payload);
    subscriber.ack().unwrap();
    subscriber.flush().unwrap();
}

/// Asserts that no delivery arrives for `window` (queued acks are sent first).
pub fn expect_nothing(subscriber: &mut Subscriber, window: Duration) {
    if let Some(delivery) = subscriber.recv_timeout(window).expect("receiving") {
        panic!("unexpected delivery {delivery:?}");
    }
}

/// Publishes every `(topic, payload)` on a new connection and returns once
/// the broker has stored them all (see [`Fence`]).
pub fn publish_all(addr: SocketAddr, messages: &[(&str, &[u8])]) {
    let mut fence = Fence::new(addr);
    let mut publisher = Publisher::connect(addr).unwrap();
    for (topic, payload) in messages {
        publisher.publish(topic, payload).unwrap();
    }
    fence.publish_marker(&mut publisher);
}

/// Publishes `m{i}` to `topic` for each `i` in `range`, and waits until the
/// broker has stored them all.
pub fn publish_numbered(addr: SocketAddr, topic: &str, range: std::ops::Range<u32>) {
    let payloads: Vec<String> = range.map(|i| format!("m{i}")).collect();
    let messages: Vec<(&str, &[u8])> = payloads.iter().map(|p| (topic, p.as_bytes())).collect();
    publish_all(addr, &messages);
}

/// Proof that the broker has applied everything a publisher sent so far.
///
/// A publisher gets no reply, but one connection's frames are applied in
/// order: so the publisher sends a marker to a topic of its own after its
/// messages, and once the fence's subscriber has the marker, every earlier
/// message is in its topic's log.
pub struct Fence {
    subscriber: Subscriber,
    markers: u32,
}

pub const FENCE_TOPIC: &str = "test-fence";

impl Fence {
    pub fn new(addr: SocketAddr) -> Fence {
        Fence {
            subscriber: subscriber(addr, &[FENCE_TOPIC], StartAt::Current),
            markers: 0,
        }
    }

    /// The next marker, as a raw publish frame.
    pub fn marker_frame(&mut self) -> Vec<u8> {
        self.markers += 1;
        publish_frame(FENCE_TOPIC, self.markers.to_string().as_bytes())
    }

    /// Publishes the next marker through `publisher` and waits for it.
    pub fn publish_marker(&mut self, publisher: &mut Publisher) {
        self.markers += 1;
        let marker = self.markers.to_string();
        publisher.publish(FENCE_TOPIC, marker.as_bytes()).unwrap();
        publisher.flush().unwrap();
        self.wait();
    }

    /// Waits for the latest marker.
    pub fn wait(&mut self) {
        expect_next_ack(
            &mut self.subscriber,
            FENCE_TOPIC,
            self.markers.to_string().as_bytes(),
        );
    }
}

/// A well-behaved pair of clients, connected before a test misbehaves, that
/// proves afterwards that the broker still serves them undisturbed.
pub struct Bystander {
    publisher: Publisher,
    subscriber: Subscriber,
    round: u32,
}

pub const BYSTANDER_TOPIC: &str = "bystander";

impl Bystander {
    pub fn new(addr: SocketAddr) -> Bystander {
        let mut bystander = Bystander {
            subscriber: subscriber(addr, &[BYSTANDER_TOPIC], StartAt::Current),
            publisher: Publisher::connect(addr).unwrap(),
            round: 0,
        };
        bystander.check();
        bystander
    }

    /// Publishes one message on the bystander's connection and receives it.
    pub fn check(&mut self) {
        self.round += 1;
        let payload = format!("still served {}", self.round);
        self.publisher
            .publish(BYSTANDER_TOPIC, payload.as_bytes())
            .unwrap();
        self.publisher.flush().unwrap();
        expect_next_ack(&mut self.subscriber, BYSTANDER_TOPIC, payload.as_bytes());
    }
}

// ---- A line-protocol client. ----

/// A connection speaking the line protocol (its first byte is not `0x00`).
/// It sends text or raw bytes, and reads the broker's replies one line or
/// one `MSG` block at a time. Each read waits at most [`WAIT`] in all
/// (or the patience it was connected with); a timeout, a close or a
/// malformed reply fails the test.
pub struct Line {
    stream: TcpStream,
    /// Bytes received and not consumed yet.
    buffer: Vec<u8>,
    /// The longest one read waits.
    patience: Duration,
}

/// One `MSG` block: the topic as the broker wrote it (quoted if it had to
/// be), the offset, and the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub topic: String,
    pub offset: u64,
    pub payload: Vec<u8>,
}

impl Line {
    pub fn connect(addr: SocketAddr) -> Line {
        Line::connect_with_patience(addr, WAIT)
    }

    /// A connection whose reads wait up to `patience`, for tests that make
    /// the broker work hard enough for one reply to take longer than
    /// [`WAIT`].
    pub fn connect_with_patience(addr: SocketAddr, patience: Duration) -> Line {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).unwrap();
        Line {
            stream,
            buffer: Vec::new(),
            patience,
        }
    }

    /// Writes `bytes` as they are, in one write call (add the `\n` yourself).
    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream.write_all(bytes.as_ref()).expect("write");
    }

    /// Closes the sending side, as `nc -N` does at the end of its input.
    pub fn close_write(&mut self) {
        self.stream.shutdown(std::net::Shutdown::Write).unwrap();
    }

    /// Reads one line and returns it without its `\n`.
    #[track_caller]
    pub fn read_line(&mut self) -> String {
        let deadline = std::time::Instant::now() + self.patience;
        loop {
            if let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).take(end).collect();
                return String::from_utf8(line)
                    .unwrap_or_else(|e| panic!("reply is not UTF-8: {:?}", e.as_bytes()));
            }
            self.fill(deadline);
        }
    }

    /// Reads one line and asserts it is `expected` (without the `\n`).
    #[track_caller]
    pub fn expect_line(&mut self, expected: &str) {
        assert_eq!(self.read_line(), expected);
    }

    /// Sends `command` and its `\n`, and returns the one-line reply.
    #[track_caller]
    pub fn ask(&mut self, command: &str) -> String {
        self.send(format!("{command}\n"));
        self.read_line()
    }

    /// Reads lines up to `+END` and returns those before it.
    #[track_caller]
    pub fn read_until_end(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            match self.read_line() {
                end if end == "+END" => return lines,
                line => lines.push(line),
            }
        }
    }

    /// Reads one `MSG <topic> <offset> <n>` line, `n` bytes and a `\n`.
    #[track_caller]
    pub fn read_msg(&mut self) -> Msg {
        let header = self.read_line();
        self.msg_after(&header)
    }

    #[track_caller]
    pub fn expect_msg(&mut self, topic: &str, offset: u64, payload: &[u8]) {
        let msg = self.read_msg();
        assert_eq!(
            (
                msg.topic.as_str(),
                msg.offset,
                String::from_utf8_lossy(&msg.payload)
            ),
            (topic, offset, String::from_utf8_lossy(payload))
        );
        assert_eq!(msg.payload, payload);
    }

    /// The figure `name` of a `STATS` reply.
    #[track_caller]
    pub fn stat(&mut self, name: &str) -> u64 {
        self.send("STATS\n");
        let lines = self.read_until_end();
        let prefix = format!("+STAT {name} ");
        let line = lines.iter().find_map(|line| line.strip_prefix(&prefix));
        line.unwrap_or_else(|| panic!("no {name} in {lines:?}"))
            .parse()
            .expect("a number")
    }

    /// Reads the reply to a `PULL`: its `MSG` blocks and the `+END` count.
    #[track_caller]
    pub fn read_pull(&mut self) -> (Vec<Msg>, u64) {
        let mut msgs = Vec::new();
        loop {
            let line = self.read_line();
            match line.strip_prefix("+END ") {
                Some(count) => return (msgs, count.parse().expect("+END count")),
                None => msgs.push(self.msg_after(&line)),
            }
        }
    }

    /// Reads the rest of the `MSG` whose header line `header` was read.
    #[track_caller]
    pub fn msg_after(&mut self, header: &str) -> Msg {
        let fields = header.strip_prefix("MSG ").map(|rest| {
            let mut fields = rest.rsplitn(3, ' ');
            let n = fields.next().and_then(|n| n.parse::<usize>().ok());
            let offset = fields.next().and_then(|o| o.parse::<u64>().ok());
            (fields.next(), offset, n)
        });
        let Some((Some(topic), Some(offset), Some(n))) = fields else {
            panic!("expected a MSG line, got {header:?}");
        };
        assert!(n <= 16 << 20, "MSG of {n} bytes");
        let deadline = std::time::Instant::now() + self.patience;
        while self.buffer.len() < n + 1 {
            self.fill(deadline);
        }
        let mut block: Vec<u8> = self.buffer.drain(..=n).collect();
        assert_eq!(block.pop(), Some(b'\n'), "no newline after the payload");
        Msg {
            topic: topic.to_owned(),
            offset,
            payload: block,
        }
    }

    #[track_caller]
    fn fill(&mut self, deadline: std::time::Instant) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let pending = String::from_utf8_lossy(&self.buffer).into_owned();
        if left.is_zero() {
            panic!(
                "nothing more within {:?}; pending {pending:?}",
                self.patience
            );
        }
        self.stream.set_read_timeout(Some(left)).unwrap();
        let mut chunk = [0u8; 64 << 10];
        match self.stream.read(&mut chunk) {
            Ok(0) => panic!("the broker closed the connection; pending {pending:?}"),
            Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!(
                    "nothing more within {:?}; pending {pending:?}",
                    self.patience
                )
            }
            Err(e) => panic!("read failed: {e}; pending {pending:?}"),
        }
    }

    /// Asserts that nothing arrives (or is left unread) for `window`.
    #[track_caller]
    pub fn expect_silence(&mut self, window: Duration) {
        self.assert_drained();
        self.stream.set_read_timeout(Some(window)).unwrap();
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Ok(0) => panic!("the broker closed the connection"),
            Ok(n) => panic!("unexpected {:?}", String::from_utf8_lossy(&chunk[..n])),
            Err(e) => panic!("read failed: {e}"),
        }
    }

    /// Asserts that the broker closes the connection, with nothing more
    /// sent, within [`WAIT`].
    #[track_caller]
    pub fn expect_eof(&mut self) {
        self.assert_drained();
        self.stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk) {
            Ok(0) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Ok(n) => panic!(
                "expected the connection to close, got {:?}",
                String::from_utf8_lossy(&chunk[..n])
            ),
            Err(e) => panic!("expected the connection to close: {e}"),
        }
    }

    #[track_caller]
    fn assert_drained(&self) {
        let pending = String::from_utf8_lossy(&self.buffer);
        assert!(self.buffer.is_empty(), "unexpected {pending:?}");
    }
}

// ---- A temporary directory. ----

/// A directory of its own under the system's temporary directory, named
/// from the process id, a counter and `tag`, and removed (with everything
/// in it) when dropped.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("brook-test-{}-{n}-{tag}", std::process::id());
        let path = std::env::temp_dir().join(name);
        // A leftover of an earlier run whose process had the same id.
        let _ = fs::remove_dir_all(&path);
        fs::create_dir(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// The `brook` binary as a child process, for the tests that need the real
/// process: to kill it, to limit its files, or to read its memory. Its
/// stderr is read to the end (so logging never blocks it) and kept for the
/// test's messages. Dropping it kills the process.
pub struct BrookProcess {
    /// `None` once a test has taken the child to kill it itself.
    child: Option<Child>,
    pub addr: SocketAddr,
    /// Everything it wrote to stderr so far.
    log: Arc<Mutex<String>>,
    /// Notified each time `log` grows.
    log_grew: Arc<Condvar>,
}

impl BrookProcess {
    /// Runs `command`, which must start brook with `--addr 127.0.0.1:0`,
    /// with `RUST_LOG=info` unless `command` sets it, and waits up to
    /// `patience` for its "listening on" line. A broker that does not start
    /// is an error with its stderr.
    pub fn start(mut command: Command, patience: Duration) -> Result<BrookProcess, String> {
        if !command.get_envs().any(|(name, _)| name == "RUST_LOG") {
            command.env("RUST_LOG", "info");
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start brook: {e}"))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(String::new()));
        let log_grew = Arc::new(Condvar::new());
        let (found, listening) = mpsc::channel();
        let (kept, grew) = (log.clone(), log_grew.clone());
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                {
                    let mut log = kept.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
                grew.notify_all();
                if let Some((_, rest)) = line.split_once("listening on ") {
                    let addr = rest.split_whitespace().next().unwrap_or("");
                    let _ = found.send(addr.parse::<SocketAddr>());
                }
            }
        });
        let mut process = BrookProcess {
            child: Some(child),
            addr: "0.0.0.0:0".parse().unwrap(),
            log,
            log_grew,
        };
        match listening.recv_timeout(patience) {
            Ok(Ok(addr)) => process.addr = addr,
            other => {
                return Err(format!(
                    "brook did not start: no 'listening on' line ({other:?}); stderr:\n{}",
                    process.stderr()
                ))
            }
        }
        Ok(process)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the child was taken").id()
    }

    pub fn stderr(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Hands the process to the test, which then kills it when it chooses.
    pub fn take_child(&mut self) -> Child {
        self.child.take().expect("the child was taken")
    }

    /// Sends the process `signal` (a name `kill -s` knows, such as `TERM`).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {signal} failed: {status}");
    }

    /// Waits up to `patience` for a line of stderr containing `needle`;
    /// fails the test with the stderr if none comes.
    #[track_caller]
    pub fn wait_for_log(&self, needle: &str, patience: Duration) {
        let deadline = Instant::now() + patience;
        let mut log = self.log.lock().unwrap();
        while !log.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {needle:?} in brook's stderr within {patience:?}:\n{log}"
            );
            log = self.log_grew.wait_timeout(log, left).unwrap().0;
        }
    }

    /// Waits up to `patience` for the process to exit and returns its
    /// status. One that is still running then is killed, and the test fails.
    #[track_caller]
    pub fn wait_for_exit(&mut self, patience: Duration) -> ExitStatus {
        let mut child = self.take_child();
        let pid = child.id();
        let (exited, exit) = mpsc::channel();
        let waiter = thread::spawn(move || exited.send(child.wait().expect("wait for brook")));
        let status = exit.recv_timeout(patience);
        if status.is_err() {
            let _ = Command::new("kill")
                .args(["-s", "KILL", &pid.to_string()])
                .status();
        }
        let _ = waiter.join();
        status.unwrap_or_else(|_| {
            panic!(
                "brook did not exit within {patience:?}; stderr:\n{}",
                self.stderr()
            )
        })
    }
}

impl Drop for BrookProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A process's resident memory, from `/proc/<pid>/status`, in KiB: for
/// the tests that hold a child broker to a memory bound.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub now: u64,
    /// `VmHWM`: the most it has ever had resident.
    pub peak: u64,
}

impl Memory {
    pub fn of(pid: u32) -> Memory {
        let path = format!("/proc/{pid}/status");
        let status = fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
        // A line such as "VmHWM:\t   96312 kB".
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name)?.strip_suffix(" kB"))
                .and_then(|kib| kib.trim().parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {path}:\n{status}"))
        };
        Memory {
            now: field("VmRSS:"),
            peak: field("VmHWM:"),
        }
    }
}

/// A child broker's memory, sampled as a test goes, which fails the test
/// as soon as a sample shows the broker has held `bound_mib` MiB. The peak
/// is the kernel's, so nothing between two samples escapes it. It prints
/// as the samples, one a line.
pub struct MemoryLog {
    pid: u32,
    bound_mib: u64,
    samples: Vec<(String, Memory)>,
}

impl MemoryLog {
    pub fn new(pid: u32, bound_mib: u64) -> MemoryLog {
        MemoryLog {
            pid,
            bound_mib,
            samples: Vec::new(),
        }
    }

    /// Samples the broker's memory, noting `when`, and fails the test if
    /// its peak has reached the bound.
    #[track_caller]
    pub fn sample(&mut self, when: impl Into<String>) {
        let memory = Memory::of(self.pid);
        self.samples.push((when.into(), memory));
        assert!(
            memory.peak < self.bound_mib << 10,
            "the broker's memory reached {} MiB:\n{self}",
            self.bound_mib
        );
    }
}

impl std::fmt::Display for MemoryLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (when, memory) in &self.samples {
            let (now, peak) = (memory.now >> 10, memory.peak >> 10);
            writeln!(f, "  {when}: VmRSS {now} MiB, VmHWM {peak} MiB")?;
        }
        Ok(())
    }
}
