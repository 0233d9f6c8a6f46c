//! The load generator: lean publishers and subscribers on raw sockets.
//!
//! `brook::client` allocates for every delivery, which is right for a client
//! and wrong for a load generator that has to outrun a broker doing millions
//! of messages a second on the same two cores. Here nothing is allocated per
//! message: publishers encode into one reusable buffer, subscribers parse
//! deliveries in place in one large read buffer and answer them in bulk.
//!
//! Every payload starts with a [`PayloadHeader`]: the publisher's id, its
//! sequence number, and the time the frame was encoded. The subscriber turns
//! the time into a latency and the sequence into a [`SequenceCheck`].
//!
//! Both of brook's protocols can carry the load ([`Protocol`]). Over the line
//! protocol a publisher sends `PUB` lines, whose text cannot hold a line feed,
//! so the header is written as text; a second thread reads the `+OK <offset>`
//! replies while the lines go out. Its subscriber parses `MSG` deliveries and
//! sends no acks, since the broker counts a delivery as acked once written.
//!
//! The same clients also speak NATS core ([`Protocol::Nats`]), for the
//! `--peer nats` rows: `CONNECT`, `SUB`, `PUB`, `PING`/`PONG`, and `MSG`
//! deliveries parsed as they arrive in whatever pieces the reads return.
//! NATS core has no acks, so its subscribers answer nothing but `PING`.
//!
//! How clients hand their bytes to the kernel is [`ClientWrites`]: batched,
//! or one frame per `write()` the way willdot's Go client publishes and
//! acks.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use brook::wire::binary::{self, action, status, TOPIC_PREFIX};
use brook::wire::line;
use brook::wire::request::StartAt;

use crate::histogram::Histogram;

// ---- The payload header ----

/// `u32` publisher id, `u64` sequence number, `u64` send time in nanoseconds
/// since the bench's epoch; the rest of the payload is padding.
pub const HEADER_BYTES: usize = 4 + 8 + 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadHeader {
    pub publisher: u32,
    pub sequence: u64,
    pub sent_ns: u64,
}

impl PayloadHeader {
    fn append_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.publisher.to_be_bytes());
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.sent_ns.to_be_bytes());
    }

    pub fn parse(payload: &[u8]) -> Option<PayloadHeader> {
        let header = payload.get(..HEADER_BYTES)?;
        Some(PayloadHeader {
            publisher: u32::from_be_bytes(header[0..4].try_into().ok()?),
            sequence: u64::from_be_bytes(header[4..12].try_into().ok()?),
            sent_ns: u64::from_be_bytes(header[12..20].try_into().ok()?),
        })
    }

    /// The header as text, for the line protocol: the three numbers in
    /// hexadecimal without leading zeros, separated by spaces, such as
    /// `0 f423f 2e8a1c3b0`. That is at most [`MAX_TEXT_HEADER_BYTES`], and
    /// some 20 in a run of a million messages, so it fits the smallest
    /// `--size`.
    fn append_text_to(&self, out: &mut Vec<u8>) {
        push_hex(out, self.publisher.into());
        out.push(b' ');
        push_hex(out, self.sequence);
        out.push(b' ');
        push_hex(out, self.sent_ns);
    }

    /// Reads a header written by [`append_text_to`](Self::append_text_to),
    /// which a space or the end of the payload ends.
    pub fn parse_text(payload: &[u8]) -> Option<PayloadHeader> {
        let mut words = payload.split(|&byte| byte == b' ');
        let mut number = || words.next().and_then(parse_hex);
        Some(PayloadHeader {
            publisher: number()?.try_into().ok()?,
            sequence: number()?,
            sent_ns: number()?,
        })
    }
}

/// The longest text header: an 8-digit and two 16-digit numbers, 2 spaces.
const MAX_TEXT_HEADER_BYTES: usize = 8 + 16 + 16 + 2;

fn push_hex(out: &mut Vec<u8>, value: u64) {
    let digits = (16 - value.leading_zeros() as usize / 4).max(1);
    for digit in (0..digits).rev() {
        out.push(b"0123456789abcdef"[(value >> (4 * digit)) as usize & 0xf]);
    }
}

fn parse_hex(word: &[u8]) -> Option<u64> {
    if word.is_empty() || word.len() > 16 {
        return None;
    }
    word.iter().try_fold(0, |value, &byte| {
        Some(value << 4 | (byte as char).to_digit(16)? as u64)
    })
}

fn parse_decimal(word: &[u8]) -> Option<u64> {
    std::str::from_utf8(word).ok()?.parse().ok()
}

/// The two protocols brook speaks on one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Publish frames; deliveries answered by acks (docs/PROTOCOL.md 1 to 7).
    Binary,
    /// `PUB` lines answered by `+OK <offset>`; `MSG` deliveries, acked once
    /// written (docs/PROTOCOL.md 8).
    Line,
    /// NATS core's text protocol: `PUB <subject> <bytes>` and the payload;
    /// `MSG` deliveries, which take no acks. Spoken only to nats-server.
    Nats,
}

/// How publishers and subscribers write (`--client-writes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientWrites {
    /// Publishers coalesce frames into writes of up to 64 KiB; subscribers
    /// answer all the deliveries one read brought in one write.
    Batched,
    /// One frame per `write()`, and one `write()` per ack: how willdot's Go
    /// client does it, and most clients written in a hurry.
    Frame,
}

impl ClientWrites {
    pub fn name(self) -> &'static str {
        match self {
            ClientWrites::Batched => "batched",
            ClientWrites::Frame => "frame",
        }
    }

    pub fn from_name(name: &str) -> Option<ClientWrites> {
        [ClientWrites::Batched, ClientWrites::Frame]
            .into_iter()
            .find(|writes| writes.name() == name)
    }
}

/// The instant all send and arrival times are measured from, shared by every
/// thread of the bench so one thread's stamp means the same to another.
#[derive(Debug, Clone, Copy)]
pub struct Epoch(pub Instant);

impl Epoch {
    pub fn nanos_at(&self, instant: Instant) -> u64 {
        instant.duration_since(self.0).as_nanos() as u64
    }
}

// ---- Publisher ----

/// A publisher writes its buffer when it is full, or when the oldest frame in
/// it has waited this long, so batching never hides more than this much
/// latency.
const MAX_BATCH_AGE_NS: u64 = 50_000;
/// Flat out, frames are encoded some 30 ns apart, and reading the clock costs
/// more than encoding a frame (in this VM, a quarter of the publisher's
/// time). So it is read for every 8th frame, and a stamp is at most a few
/// hundred nanoseconds early. Paced publishers read it for every frame.
const FRAMES_PER_CLOCK_READ: u64 = 8;
const PUBLISH_BUFFER: usize = 64 << 10;
/// How long a write may block before the broker is declared stuck.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the reply to a `TOPICS` or `STATS` may take. It comes after
/// the broker has handled what it had read before it: a minute's work of
/// publishes with `--fsync always`, which fsyncs each one, is still a
/// broker at work.
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
pub enum Pacing {
    /// As fast as the broker takes them, in batches of up to 64 KiB.
    FlatOut,
    /// This many messages a second, each written on its own, sleeping
    /// (never spinning) until the next one is due.
    Rate(u64),
}

#[derive(Debug, Clone)]
pub struct PublisherPlan {
    pub id: u32,
    pub topic: String,
    pub count: u64,
    pub payload_bytes: usize,
    pub pacing: Pacing,
    pub protocol: Protocol,
    pub writes: ClientWrites,
    /// `Some` for an open-ended publisher: it sends until asked to finish,
    /// or until it has sent `count`.
    pub finish: Option<Arc<Finish>>,
}

/// Ends an open-ended run, one that lasts as long as something else does:
/// its publisher sends until [`ask`](Finish::ask)ed to stop, and its
/// subscribers then expect as many messages as it sent.
#[derive(Debug, Default)]
pub struct Finish {
    asked: AtomicBool,
    /// How many messages the publisher sent, once it has finished; 0 until
    /// then (it sends at least one).
    sent: AtomicU64,
}

impl Finish {
    pub fn ask(&self) {
        self.asked.store(true, Ordering::SeqCst);
    }

    /// Whether message `sequence`, about to be sent, is the publisher's
    /// last. If it is, the count is stored before the message is written,
    /// so a subscriber that has the message also knows the count.
    fn is_last(&self, sequence: u64) -> bool {
        let last = self.asked.load(Ordering::SeqCst);
        if last {
            self.sent.store(sequence + 1, Ordering::SeqCst);
        }
        last
    }

    /// How many the publisher sent, once it has finished.
    pub fn sent(&self) -> Option<u64> {
        match self.sent.load(Ordering::SeqCst) {
            0 => None,
            sent => Some(sent),
        }
    }
}

#[derive(Debug)]
pub struct PublisherReport {
    /// When the first frame was stamped, in nanoseconds since the epoch.
    pub first_send_ns: Option<u64>,
}

/// Encodes publish requests into one buffer that is reused for the whole run:
/// binary publish frames, `PUB <topic> <text>` lines, or NATS `PUB`s.
struct FrameEncoder {
    protocol: Protocol,
    buffer: Vec<u8>,
    /// What comes before every payload: `u16` length + `topic:` + name +
    /// `u32` payload length, or `PUB <topic> `.
    prefix: Vec<u8>,
    /// What comes after every payload: nothing, or the line's line feed.
    suffix: &'static [u8],
    payload_bytes: usize,
    /// Fills a payload up to `payload_bytes` after its header: dots, led by
    /// a space in a line so that the header's last number ends.
    padding: Vec<u8>,
}

impl FrameEncoder {
    fn new(protocol: Protocol, topic: &str, payload_bytes: usize) -> FrameEncoder {
        let mut prefix = Vec::new();
        let mut padding = vec![b'.'; payload_bytes];
        let suffix: &[u8] = match protocol {
            Protocol::Binary => {
                binary::push_u16(&mut prefix, (TOPIC_PREFIX.len() + topic.len()) as u16);
                prefix.extend_from_slice(TOPIC_PREFIX);
                prefix.extend_from_slice(topic.as_bytes());
                prefix.extend_from_slice(&(payload_bytes as u32).to_be_bytes());
                b""
            }
            Protocol::Line => {
                prefix.extend_from_slice(b"PUB ");
                line::encode_topic(&mut prefix, topic);
                prefix.push(b' ');
                padding[0] = b' ';
                b"\n"
            }
            Protocol::Nats => {
                let operation = format!("PUB {topic} {}\r\n", payload_bytes.max(HEADER_BYTES));
                prefix.extend_from_slice(operation.as_bytes());
                b"\r\n"
            }
        };
        let mut encoder = FrameEncoder {
            protocol,
            buffer: Vec::new(),
            prefix,
            suffix,
            payload_bytes,
            padding,
        };
        encoder
            .buffer
            .reserve(PUBLISH_BUFFER.max(encoder.frame_bytes()));
        encoder
    }

    /// The most one frame takes: the payload is `payload_bytes` long unless
    /// its header alone is longer.
    fn frame_bytes(&self) -> usize {
        let header_bytes = match self.protocol {
            Protocol::Binary | Protocol::Nats => HEADER_BYTES,
            Protocol::Line => MAX_TEXT_HEADER_BYTES,
        };
        self.prefix.len() + self.payload_bytes.max(header_bytes) + self.suffix.len()
    }

    fn has_room(&self) -> bool {
        self.buffer.len() + self.frame_bytes() <= self.buffer.capacity()
    }

    fn push(&mut self, header: PayloadHeader) {
        self.buffer.extend_from_slice(&self.prefix);
        let payload_start = self.buffer.len();
        match self.protocol {
            Protocol::Binary | Protocol::Nats => header.append_to(&mut self.buffer),
            Protocol::Line => header.append_text_to(&mut self.buffer),
        }
        let header_bytes = self.buffer.len() - payload_start;
        let padding = self.payload_bytes.saturating_sub(header_bytes);
        self.buffer.extend_from_slice(&self.padding[..padding]);
        self.buffer.extend_from_slice(self.suffix);
    }

    fn write_to(&mut self, mut stream: &TcpStream) -> io::Result<()> {
        stream.write_all(&self.buffer)?;
        self.buffer.clear();
        Ok(())
    }
}

/// Connects and sends `plan.count` messages.
pub fn publish(
    addr: SocketAddr,
    plan: &PublisherPlan,
    epoch: Epoch,
) -> io::Result<PublisherReport> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    match plan.protocol {
        Protocol::Binary => {
            (&stream).write_all(&action::PUBLISH.to_be_bytes())?;
            send(&stream, plan, epoch)
        }
        Protocol::Line => publish_lines(&stream, plan, epoch),
        Protocol::Nats => {
            stream.set_read_timeout(Some(IO_TIMEOUT))?;
            (&stream).write_all(NATS_CONNECT)?;
            let report = send(&stream, plan, epoch)?;
            // NATS answers a publish with nothing: its PONG to a PING sent
            // after the last one says every one before it was taken.
            (&stream).write_all(b"PING\r\n")?;
            read_nats_until_pong(&stream)?.map_err(io::Error::other)?;
            Ok(report)
        }
    }
}

/// A NATS client's first words: no `+OK` after every command (`verbose`),
/// no extra checks of subjects (`pedantic`).
const NATS_CONNECT: &[u8] = b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n";

/// Sends `PUB` lines while a second thread reads their replies: the broker
/// stops reading from a client that lets its replies pile up.
fn publish_lines(
    stream: &TcpStream,
    plan: &PublisherPlan,
    epoch: Epoch,
) -> io::Result<PublisherReport> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    // A side that fails shuts the connection down, which ends the other
    // side's wait: for replies, or for room to write.
    let shut_down_on_error = |error| {
        let _ = stream.shutdown(Shutdown::Both);
        error
    };
    let (sent, replied) = thread::scope(|scope| {
        let replies = scope.spawn(|| read_replies(stream, plan.count).map_err(shut_down_on_error));
        let sent = send(stream, plan, epoch).map_err(|e| shut_down_on_error(e.to_string()));
        (sent, replies.join().expect("a reply reader panicked"))
    });
    match (sent, replied) {
        (Ok(report), Ok(())) => Ok(report),
        (Err(error), Ok(())) | (Ok(_), Err(error)) => Err(io::Error::other(error)),
        (Err(sending), Err(replies)) => Err(io::Error::other(format!(
            "{sending}; reading replies: {replies}"
        ))),
    }
}

/// Sends `plan.count` messages on a connection ready for them.
fn send(stream: &TcpStream, plan: &PublisherPlan, epoch: Epoch) -> io::Result<PublisherReport> {
    let mut encoder = FrameEncoder::new(plan.protocol, &plan.topic, plan.payload_bytes);
    let started = Instant::now();
    // A paced publisher, or one that writes each frame on its own, reads
    // the clock for every frame and writes it at once.
    let paced = matches!(plan.pacing, Pacing::Rate(_)) || plan.writes == ClientWrites::Frame;
    let (mut now_ns, mut batch_started_ns) = (0, 0);
    let mut first_send_ns = None;
    for sequence in 0..plan.count {
        if let Pacing::Rate(rate) = plan.pacing {
            sleep_until(started + Duration::from_secs_f64(sequence as f64 / rate as f64));
        }
        let last = plan.finish.as_ref().is_some_and(|f| f.is_last(sequence));
        if !encoder.has_room() {
            encoder.write_to(stream)?;
        }
        if paced || sequence.is_multiple_of(FRAMES_PER_CLOCK_READ) {
            now_ns = epoch.nanos_at(Instant::now());
        }
        if encoder.buffer.is_empty() {
            batch_started_ns = now_ns;
        }
        first_send_ns.get_or_insert(now_ns);
        encoder.push(PayloadHeader {
            publisher: plan.id,
            sequence,
            sent_ns: now_ns,
        });
        if paced || now_ns - batch_started_ns >= MAX_BATCH_AGE_NS {
            encoder.write_to(stream)?;
        }
        if last {
            break;
        }
    }
    encoder.write_to(stream)?;
    Ok(PublisherReport { first_send_ns })
}

/// Reads the `+OK <offset>` replies to `count` `PUB` lines, each offset one
/// past the one before. The first may be any: a running broker's topic may
/// hold messages already.
fn read_replies(stream: &TcpStream, count: u64) -> Result<(), String> {
    let mut buffer = ReadBuffer::new(REPLY_BUFFER);
    let (mut replies, mut last_offset) = (0, None);
    while replies < count {
        buffer
            .read_from(stream)
            .map_err(|e| format!("{e}, after {replies} of {count} replies"))?;
        buffer.take_lines(|line| {
            let offset = line.strip_prefix(b"+OK ").and_then(parse_decimal);
            match (offset, last_offset) {
                (None, _) => return Err(format!("reply {replies} is '{}'", lossy(line))),
                (Some(offset), Some(last)) if offset != last + 1 => {
                    return Err(format!("reply {replies} is offset {offset}, after {last}"))
                }
                _ => last_offset = offset,
            }
            replies += 1;
            Ok(())
        })?;
    }
    Ok(())
}

/// A topic's offsets, from a `+TOPIC` line of the line protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicOffsets {
    /// The oldest offset the log holds.
    pub first: u64,
    /// The offset the next message will get: how many were ever published.
    pub next: u64,
}

/// Asks the broker at `addr` for its topics with the line protocol's
/// `TOPICS` (docs/PROTOCOL.md, section 8), and returns the offsets of each
/// of `topics`, in order: `None` for a topic the broker does not have.
pub fn topic_offsets(
    addr: SocketAddr,
    topics: &[String],
) -> Result<Vec<Option<TopicOffsets>>, String> {
    // `+TOPIC <topic> messages=<n> first=<offset> next=<offset> subscribers=<k>`,
    // with the name as the broker writes it.
    let prefixes: Vec<Vec<u8>> = topics
        .iter()
        .map(|topic| {
            let mut prefix = b"+TOPIC ".to_vec();
            line::encode_topic(&mut prefix, topic);
            prefix.push(b' ');
            prefix
        })
        .collect();
    let field = |fields: &[u8], name: &str| {
        fields
            .split(|&byte| byte == b' ')
            .find_map(|word| word.strip_prefix(name.as_bytes()))
            .and_then(parse_decimal)
    };
    let mut offsets = vec![None; topics.len()];
    query(addr, "TOPICS", |line| {
        let found = prefixes
            .iter()
            .enumerate()
            .find_map(|(index, prefix)| Some((index, line.strip_prefix(prefix.as_slice())?)));
        let Some((index, fields)) = found else {
            return Ok(());
        };
        let (Some(first), Some(next)) = (field(fields, "first="), field(fields, "next=")) else {
            return Err(format!("cannot read '{}'", lossy(line)));
        };
        offsets[index] = Some(TopicOffsets { first, next });
        Ok(())
    })?;
    Ok(offsets)
}

/// The broker-wide figures of the line protocol's `STATS`, by name: the
/// `+STAT <name> <value>` lines (docs/PROTOCOL.md, section 8). A broker
/// older than a figure does not report it.
pub fn broker_stats(addr: SocketAddr) -> Result<HashMap<String, u64>, String> {
    let mut stats = HashMap::new();
    query(addr, "STATS", |line| {
        let words: Vec<&[u8]> = line.split(|&byte| byte == b' ').collect();
        // A topic's or a group's line has more words, and no single value.
        if let [b"+STAT", name, value] = words.as_slice() {
            if let Some(value) = parse_decimal(value) {
                stats.insert(lossy(name), value);
            }
        }
        Ok(())
    })?;
    Ok(stats)
}

/// Sends the line protocol's `command`, whose reply is lines that start
/// with `+` and end with `+END`, on a connection of its own, and hands
/// each line before the `+END` to `on_line`.
fn query(
    addr: SocketAddr,
    command: &str,
    mut on_line: impl FnMut(&[u8]) -> Result<(), String>,
) -> Result<(), String> {
    let stream = TcpStream::connect(addr).map_err(|e| format!("cannot connect: {e}"))?;
    stream
        .set_read_timeout(Some(QUERY_TIMEOUT))
        .and_then(|()| (&stream).write_all(format!("{command}\n").as_bytes()))
        .map_err(|e| format!("{command} failed: {e}"))?;
    let (mut buffer, mut ended) = (ReadBuffer::new(REPLY_BUFFER), false);
    while !ended {
        buffer.read_from(&stream)?;
        buffer.take_lines(|line| {
            if ended || !line.starts_with(b"+") {
                return Err(format!("unexpected reply to {command}: '{}'", lossy(line)));
            }
            ended = line == b"+END";
            match ended {
                true => Ok(()),
                false => on_line(line),
            }
        })?;
    }
    Ok(())
}

/// At most the first 100 characters of `bytes`, for an error message.
fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).chars().take(100).collect()
}

fn sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now {
        thread::sleep(deadline - now);
    }
}

// ---- Subscribing ----

/// Connects and subscribes as `plan` says, on its own or in its consumer
/// group, waiting for the Subscribed status (`+OK` in the line protocol).
/// The status is the only thing read: deliveries, of stored messages or new
/// ones, are left for [`receive`].
pub fn subscribe(
    addr: SocketAddr,
    plan: &SubscriberPlan,
    protocol: Protocol,
) -> Result<TcpStream, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("cannot connect: {e}"))?;
    let group = plan.group.as_ref().map(|group| group.name.as_str());
    let request = subscribe_request(&plan.topic, plan.start, group, protocol);
    let subscribed = (|| {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.write_all(&request)?;
        match protocol {
            Protocol::Binary => read_status(&mut stream),
            Protocol::Line => read_subscribe_reply(&mut stream),
            Protocol::Nats => read_nats_until_pong(&stream),
        }
    })();
    match subscribed {
        Ok(Ok(())) => Ok(stream),
        Ok(Err(refusal)) => Err(format!("subscribe refused: {refusal}")),
        Err(error) => Err(format!("subscribe failed: {error}")),
    }
}

/// A subscribe to `topic` from `start`, or, with a `group`, a join of that
/// consumer group of the topic (binary action 7, `SUB … group <name>`),
/// where `start` applies only if the join creates the group. A NATS
/// subscribe is `CONNECT`, `SUB` and a `PING`, whose `PONG` says the
/// subscription is in place; it has neither a start nor groups.
pub fn subscribe_request(
    topic: &str,
    start: StartAt,
    group: Option<&str>,
    protocol: Protocol,
) -> Vec<u8> {
    let mut request = Vec::new();
    match (protocol, group) {
        (Protocol::Binary, None) => binary::encode_subscribe(&mut request, &[topic], start),
        (Protocol::Binary, Some(group)) => {
            binary::encode_subscribe_group(&mut request, &[topic], group, start)
        }
        (Protocol::Line, _) => {
            request.extend_from_slice(b"SUB ");
            line::encode_topic(&mut request, topic);
            let start = match start {
                StartAt::Beginning => " beginning".to_owned(),
                StartAt::Current => " current".to_owned(),
                StartAt::From(offset) => format!(" from {offset}"),
            };
            request.extend_from_slice(start.as_bytes());
            if let Some(group) = group {
                request.extend_from_slice(b" group ");
                line::encode_topic(&mut request, group);
            }
            request.push(b'\n');
        }
        (Protocol::Nats, _) => {
            request.extend_from_slice(NATS_CONNECT);
            request.extend_from_slice(format!("SUB {topic} 1\r\nPING\r\n").as_bytes());
        }
    }
    request
}

/// Reads one status: `Ok(Ok(()))` for Subscribed, `Ok(Err(reason))` for
/// anything else.
fn read_status(stream: &mut TcpStream) -> io::Result<Result<(), String>> {
    let mut word = [0; 2];
    stream.read_exact(&mut word)?;
    match u16::from_be_bytes(word) {
        status::SUBSCRIBED => Ok(Ok(())),
        status::ERROR => {
            stream.read_exact(&mut word)?;
            let mut reason = vec![0; u16::from_be_bytes(word) as usize];
            stream.read_exact(&mut reason)?;
            Ok(Err(String::from_utf8_lossy(&reason).into_owned()))
        }
        other => Ok(Err(format!("unexpected status {other}"))),
    }
}

/// Reads the line protocol's reply to `SUB`, a byte at a time so as to take
/// nothing after it: `Ok(Ok(()))` for `+OK`, `Ok(Err(line))` for anything
/// else.
fn read_subscribe_reply(stream: &mut TcpStream) -> io::Result<Result<(), String>> {
    Ok(match read_line_bytewise(stream)?.as_slice() {
        b"+OK" => Ok(()),
        other => Err(lossy(other)),
    })
}

/// Reads a line, a byte at a time so as to take nothing after it, without
/// its line feed (at most [`REPLY_BUFFER`] bytes of it).
fn read_line_bytewise(stream: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let mut byte = [0];
    while line.len() < REPLY_BUFFER {
        stream.read_exact(&mut byte)?;
        match byte[0] {
            b'\n' => break,
            other => line.push(other),
        }
    }
    Ok(line)
}

/// Reads NATS control lines, a byte at a time so as to take nothing after
/// them, up to the `PONG` that answers the client's `PING`: `Ok(Ok(()))`,
/// or `Ok(Err(line))` for a `-ERR` or anything unexpected. The server's
/// `INFO` and `+OK`s are passed over, and its `PING`s answered: it sends
/// one a second or two after a client connects, to time the round trip.
fn read_nats_until_pong(mut stream: &TcpStream) -> io::Result<Result<(), String>> {
    loop {
        let line = read_line_bytewise(&mut stream)?;
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        match nats_operation(line).as_str() {
            "PONG" => return Ok(Ok(())),
            "PING" => stream.write_all(b"PONG\r\n")?,
            "INFO" | "+OK" => {}
            _ => return Ok(Err(lossy(line))),
        }
    }
}

/// The first word of a NATS control line, in capitals (NATS accepts any
/// case).
fn nats_operation(line: &[u8]) -> String {
    let word = line.split(|&byte| byte == b' ' || byte == b'\t').next();
    String::from_utf8_lossy(word.unwrap_or_default()).to_ascii_uppercase()
}

// ---- Frame parsing ----

/// The shapes a message reaches a subscriber in: a broker's delivery in
/// either protocol, or (from the relay, which forwards publishers' bytes
/// untouched) the publisher's own binary frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `u16` topic length, topic, `u64` payload length, payload.
    Delivery,
    /// `u16` length, `topic:` + name, `u32` payload length, payload.
    Publish,
    /// `MSG <topic> <offset> <nbytes>`, a line feed, the payload (with a text
    /// header), a line feed.
    Line,
    /// NATS: `MSG <subject> <sid> [reply-to] <nbytes>`, CR LF, the payload,
    /// CR LF; and control lines (`PING`, `PONG`, `INFO`, `+OK`, `-ERR`).
    Nats,
}

/// The largest frame a subscriber accepts before calling the stream garbage.
const MAX_FRAME_BYTES: u64 = 1 << 30;
/// The longest `MSG` line: `MSG `, a topic of 65,535 bytes quoted with each
/// escaped in two, and two numbers of up to 20 digits after a space each.
const MAX_DELIVERY_LINE_BYTES: usize = 4 + (2 + 2 * 65_535) + 2 * (1 + 20);

/// Where one complete frame lies at the start of a buffer.
#[derive(Debug, Clone, Copy)]
pub struct FrameSpan {
    pub payload_start: usize,
    pub payload_end: usize,
    pub end: usize,
    pub kind: FrameKind,
}

/// What a complete frame is: a message, or one of NATS's control lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    Message,
    /// The server asks whether the client is alive: answer `PONG`, or be
    /// disconnected.
    Ping,
    /// A line that needs nothing: `PONG`, `INFO`, `+OK`.
    Control,
}

impl Framing {
    /// The protocol a subscriber that receives this framing subscribes in.
    pub fn protocol(self) -> Protocol {
        match self {
            Framing::Delivery | Framing::Publish => Protocol::Binary,
            Framing::Line => Protocol::Line,
            Framing::Nats => Protocol::Nats,
        }
    }

    /// The frame at the start of `bytes`: `Ok(None)` if it is not complete
    /// yet, an error if its length is absurd or it is not a message.
    pub fn frame_at(self, bytes: &[u8]) -> Result<Option<FrameSpan>, String> {
        match self {
            Framing::Delivery => binary_frame_at(bytes, 8),
            Framing::Publish => binary_frame_at(bytes, 4),
            Framing::Line => line_frame_at(bytes),
            Framing::Nats => nats_frame_at(bytes),
        }
    }

    fn header_of(self, payload: &[u8]) -> Option<PayloadHeader> {
        match self {
            Framing::Delivery | Framing::Publish | Framing::Nats => PayloadHeader::parse(payload),
            Framing::Line => PayloadHeader::parse_text(payload),
        }
    }

    /// What a subscriber answers each message with: an ack, or nothing where
    /// the broker counts a delivery as acked once written.
    fn ack(self) -> &'static [u8] {
        match self {
            Framing::Delivery | Framing::Publish => &ACK,
            Framing::Line | Framing::Nats => b"",
        }
    }
}

/// A binary frame whose payload length takes `length_bytes`.
fn binary_frame_at(bytes: &[u8], length_bytes: usize) -> Result<Option<FrameSpan>, String> {
    let Some(topic_len) = bytes.get(..2) else {
        return Ok(None);
    };
    let payload_len_at = 2 + u16::from_be_bytes([topic_len[0], topic_len[1]]) as usize;
    let payload_start = payload_len_at + length_bytes;
    let Some(length) = bytes.get(payload_len_at..payload_start) else {
        return Ok(None);
    };
    let payload_len = length.iter().fold(0u64, |n, &b| n << 8 | b as u64);
    if payload_len > MAX_FRAME_BYTES {
        return Err(format!("a frame announces {payload_len} bytes"));
    }
    let end = payload_start + payload_len as usize;
    Ok((end <= bytes.len()).then_some(FrameSpan {
        payload_start,
        payload_end: end,
        end,
        kind: FrameKind::Message,
    }))
}

/// A `MSG` delivery: its byte count is the last word of its first line.
fn line_frame_at(bytes: &[u8]) -> Result<Option<FrameSpan>, String> {
    let Some(line_end) = line_end(bytes, MAX_DELIVERY_LINE_BYTES)? else {
        return Ok(None);
    };
    let line = &bytes[..line_end];
    let payload_len = line
        .strip_prefix(b"MSG ")
        .and_then(|rest| rest.rsplit(|&byte| byte == b' ').next())
        .and_then(parse_decimal)
        .ok_or_else(|| format!("expected a delivery, got '{}'", lossy(line)))?;
    if payload_len > MAX_FRAME_BYTES {
        return Err(format!("a delivery announces {payload_len} bytes"));
    }
    payload_after_line(bytes, line_end, payload_len, b"\n")
}

/// Where the first line of `bytes` ends (its line feed), if it is all
/// there; an error if there is no line feed in more than `most` bytes.
fn line_end(bytes: &[u8], most: usize) -> Result<Option<usize>, String> {
    match bytes.iter().position(|&byte| byte == b'\n') {
        None if bytes.len() > most => Err(format!("no line feed in {} bytes", bytes.len())),
        end => Ok(end),
    }
}

/// The message whose line ends at `line_end` and announces `payload_len`
/// bytes of payload, which `terminator` must follow: `Ok(None)` until all
/// of it is in `bytes`.
fn payload_after_line(
    bytes: &[u8],
    line_end: usize,
    payload_len: u64,
    terminator: &[u8],
) -> Result<Option<FrameSpan>, String> {
    let payload_start = line_end + 1;
    let payload_end = payload_start + payload_len as usize;
    let end = payload_end + terminator.len();
    match bytes.get(payload_end..end) {
        None => Ok(None),
        Some(found) if found == terminator => Ok(Some(FrameSpan {
            payload_start,
            payload_end,
            end,
            kind: FrameKind::Message,
        })),
        Some(_) => Err(format!(
            "no '{}' after the {payload_len} bytes of '{}'",
            String::from_utf8_lossy(terminator).escape_debug(),
            lossy(&bytes[..line_end])
        )),
    }
}

/// The longest NATS control line taken: a `MSG` line with a subject, a
/// reply subject and two numbers, or the server's `INFO`.
const MAX_NATS_LINE_BYTES: usize = 64 << 10;

/// The NATS frame at the start of `bytes`, in two steps: its control line
/// must be whole (up to CR LF), and for a `MSG`, so must the byte count the
/// line announces and the CR LF after it. Until then it is `Ok(None)`, and
/// the subscriber reads more: a read may end anywhere in a frame.
fn nats_frame_at(bytes: &[u8]) -> Result<Option<FrameSpan>, String> {
    let Some(line_end) = line_end(bytes, MAX_NATS_LINE_BYTES)? else {
        return Ok(None);
    };
    let line = &bytes[..line_end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let control = |kind| {
        Ok(Some(FrameSpan {
            payload_start: line_end + 1,
            payload_end: line_end + 1,
            end: line_end + 1,
            kind,
        }))
    };
    match nats_operation(line).as_str() {
        "MSG" => {}
        "PING" => return control(FrameKind::Ping),
        "PONG" | "INFO" | "+OK" => return control(FrameKind::Control),
        _ => return Err(format!("nats-server says '{}'", lossy(line))),
    }
    let payload_len = line
        .rsplit(|&byte| byte == b' ')
        .next()
        .and_then(parse_decimal)
        .filter(|&length| length <= MAX_FRAME_BYTES)
        .ok_or_else(|| format!("cannot read the size in '{}'", lossy(line)))?;
    payload_after_line(bytes, line_end, payload_len, b"\r\n")
}

// ---- Checking sequence numbers ----

/// Checks that each publisher's messages arrive exactly once and in order,
/// with one bit per expected message.
#[derive(Debug, Clone)]
pub struct SequenceCheck {
    /// Indexed by publisher id; publishers this subscriber should not hear
    /// from expect nothing.
    publishers: Vec<PublisherTrack>,
    pub tally: Tally,
}

#[derive(Debug, Clone, Default)]
struct PublisherTrack {
    seen: Vec<u64>,
    expected: u64,
    next: u64,
}

/// What arrived, compared with what should have.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub expected: u64,
    /// Messages that arrived at least once.
    pub distinct: u64,
    pub duplicates: u64,
    /// First arrivals of a message after a later one from its publisher.
    pub out_of_order: u64,
    /// Messages from an unknown publisher or with an impossible sequence.
    pub unexpected: u64,
}

impl Tally {
    pub fn missing(&self) -> u64 {
        self.expected - self.distinct
    }

    pub fn is_clean(&self) -> bool {
        self.missing() == 0
            && self.duplicates == 0
            && self.out_of_order == 0
            && self.unexpected == 0
    }

    pub fn add(&mut self, other: &Tally) {
        self.expected += other.expected;
        self.distinct += other.distinct;
        self.duplicates += other.duplicates;
        self.out_of_order += other.out_of_order;
        self.unexpected += other.unexpected;
    }
}

impl SequenceCheck {
    /// `expected[i]` is how many messages publisher `i` sends to this
    /// subscriber.
    pub fn new(expected: &[u64]) -> SequenceCheck {
        let publishers = expected
            .iter()
            .map(|&count| PublisherTrack {
                seen: vec![0; count.div_ceil(64) as usize],
                expected: count,
                next: 0,
            })
            .collect();
        let tally = Tally {
            expected: expected.iter().sum(),
            ..Tally::default()
        };
        SequenceCheck { publishers, tally }
    }

    pub fn is_complete(&self) -> bool {
        self.tally.distinct == self.tally.expected
    }

    /// Expects at most `count` messages from each publisher: the number an
    /// open-ended publisher turned out to send.
    pub fn cap(&mut self, count: u64) {
        for track in &mut self.publishers {
            track.expected = track.expected.min(count);
        }
        self.tally.expected = self.publishers.iter().map(|track| track.expected).sum();
    }

    pub fn record(&mut self, publisher: u32, sequence: u64) {
        let Some(track) = self.publishers.get_mut(publisher as usize) else {
            self.tally.unexpected += 1;
            return;
        };
        if sequence >= track.expected {
            self.tally.unexpected += 1;
            return;
        }
        let (word, bit) = ((sequence / 64) as usize, 1u64 << (sequence % 64));
        if track.seen[word] & bit != 0 {
            self.tally.duplicates += 1;
            return;
        }
        track.seen[word] |= bit;
        self.tally.distinct += 1;
        if sequence < track.next {
            self.tally.out_of_order += 1;
        }
        track.next = track.next.max(sequence + 1);
    }

    /// Adds what another member of the same consumer group received, whose
    /// check expected the same: the two then count as one subscriber that
    /// should have had each message once. A message both had is a
    /// duplicate; each one's order stays its own.
    pub fn absorb(&mut self, member: &SequenceCheck) {
        let mut both = 0;
        for (track, theirs) in self.publishers.iter_mut().zip(&member.publishers) {
            for (word, their_word) in track.seen.iter_mut().zip(&theirs.seen) {
                both += u64::from((*word & their_word).count_ones());
                *word |= their_word;
            }
        }
        let tally = &mut self.tally;
        tally.distinct += member.tally.distinct - both;
        tally.duplicates += member.tally.duplicates + both;
        tally.out_of_order += member.tally.out_of_order;
        tally.unexpected += member.tally.unexpected;
    }
}

// ---- Subscriber ----

const READ_BUFFER: usize = 256 << 10;
const REPLY_BUFFER: usize = 64 << 10;
const ACK: [u8; 2] = action::ACK.to_be_bytes();

/// Bytes read from a socket and not yet parsed, in one buffer reused for the
/// whole run.
struct ReadBuffer {
    bytes: Vec<u8>,
    /// `bytes[..filled]` holds bytes read and not yet parsed.
    filled: usize,
}

impl ReadBuffer {
    fn new(capacity: usize) -> ReadBuffer {
        ReadBuffer {
            bytes: vec![0; capacity],
            filled: 0,
        }
    }

    /// One `read()`, appended to what is held; an interrupted read adds
    /// nothing. Nothing for the stream's read timeout is an error.
    fn read_from(&mut self, stream: &TcpStream) -> Result<(), String> {
        match self.read_or_time_out(stream)? {
            true => Ok(()),
            false => {
                let waited = stream.read_timeout().ok().flatten();
                Err(silence(waited.unwrap_or_default()))
            }
        }
    }

    /// One `read()`, appended to what is held: `Ok(false)` if the stream's
    /// read timeout passed first. An interrupted read adds nothing.
    fn read_or_time_out(&mut self, mut stream: &TcpStream) -> Result<bool, String> {
        if self.filled == self.bytes.len() {
            // One frame larger than the buffer: make room for it.
            self.bytes.resize(self.bytes.len() * 2, 0);
        }
        match stream.read(&mut self.bytes[self.filled..]) {
            Ok(0) => Err("the broker closed the connection".to_owned()),
            Ok(read) => {
                self.filled += read;
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(true),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(false),
            Err(e) => Err(format!("read failed: {e}")),
        }
    }

    fn unparsed(&self) -> &[u8] {
        &self.bytes[..self.filled]
    }

    /// Drops the first `count` bytes, which have been parsed.
    fn consume(&mut self, count: usize) {
        self.bytes.copy_within(count..self.filled, 0);
        self.filled -= count;
    }

    /// Hands every complete line held, without its line feed, to
    /// `on_line`, and drops it; stops at the first error.
    fn take_lines(
        &mut self,
        mut on_line: impl FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut consumed = 0;
        while let Some(length) = self.unparsed()[consumed..]
            .iter()
            .position(|&byte| byte == b'\n')
        {
            on_line(&self.unparsed()[consumed..consumed + length])?;
            consumed += length + 1;
        }
        self.consume(consumed);
        Ok(())
    }
}

/// Why a subscriber that has heard nothing for `waited` gives up.
fn silence(waited: Duration) -> String {
    format!("no byte arrived for {} s", waited.as_secs())
}

#[derive(Debug, Clone)]
pub struct SubscriberPlan {
    pub topic: String,
    /// Where in the topic it starts: Current, or Beginning to replay what
    /// the topic holds. A group member's start applies only if its join
    /// creates the group.
    pub start: StartAt,
    /// Messages expected from each publisher id; with `finish`, or in a
    /// group, the most.
    pub expected: Vec<u64>,
    /// `Some` if its one publisher is open-ended (see [`Finish`]): it then
    /// expects as many as that publisher sent.
    pub finish: Option<Arc<Finish>>,
    /// `Some` for a member of a consumer group, which gets whichever of the
    /// topic's messages the broker gives it and stops when the group as a
    /// whole has all of them.
    pub group: Option<Arc<ConsumerGroup>>,
    /// One write per ack, or one for all a read brought.
    pub writes: ClientWrites,
}

/// How long a group member's `read()` waits before it looks again whether
/// the group has every message: the one that completes it may go to
/// another member, and nothing more will come to this one.
const GROUP_POLL: Duration = Duration::from_millis(20);

/// A consumer group whose members are subscribers of one run: its name, and
/// how many of its messages they have had between them. No member can know
/// its own share in advance, so each one counts what it gets here, and they
/// all stop when the count reaches the group's expected total.
#[derive(Debug)]
pub struct ConsumerGroup {
    pub name: String,
    /// Messages the group should receive, each by one member.
    pub expected: u64,
    /// Messages its members have received, each counted once by each
    /// member that had it. A message two members had makes it reach
    /// `expected` early: the members may then stop before the last
    /// message came, and the check counts that one missing besides the
    /// duplicate (the run has failed either way).
    received: AtomicU64,
}

impl ConsumerGroup {
    pub fn new(name: String, expected: u64) -> ConsumerGroup {
        ConsumerGroup {
            name,
            expected,
            received: AtomicU64::new(0),
        }
    }

    fn has_all(&self) -> bool {
        self.received.load(Ordering::Relaxed) >= self.expected
    }
}

#[derive(Debug)]
pub struct SubscriberReport {
    pub check: SequenceCheck,
    pub latency: Histogram,
    /// When the last message arrived, in nanoseconds since the epoch.
    pub last_arrival_ns: Option<u64>,
    /// Why it stopped before it had every message, if it did.
    pub error: Option<String>,
}

impl SubscriberReport {
    /// The report of a subscriber that has received nothing yet.
    pub fn nothing_received(plan: &SubscriberPlan) -> SubscriberReport {
        SubscriberReport {
            check: SequenceCheck::new(&plan.expected),
            latency: Histogram::default(),
            last_arrival_ns: None,
            error: None,
        }
    }
}

/// Reads deliveries from a subscribed `stream` until every expected message
/// has arrived, the stream ends, or nothing arrives for [`IO_TIMEOUT`].
/// `progress` counts messages as they arrive.
pub fn receive(
    stream: TcpStream,
    plan: &SubscriberPlan,
    framing: Framing,
    epoch: Epoch,
    progress: &AtomicU64,
) -> SubscriberReport {
    let mut receiver = Receiver {
        stream,
        framing,
        writes: plan.writes,
        epoch,
        progress,
        group: plan.group.as_deref(),
        buffer: ReadBuffer::new(READ_BUFFER),
        acks: Vec::with_capacity(READ_BUFFER / 16),
        last_read: Instant::now(),
        report: SubscriberReport::nothing_received(plan),
    };
    if receiver.group.is_some() {
        if let Err(error) = receiver.stream.set_read_timeout(Some(GROUP_POLL)) {
            receiver.report.error = Some(format!("cannot set a read timeout: {error}"));
            return receiver.report;
        }
    }
    loop {
        if let Some(sent) = plan.finish.as_ref().and_then(|f| f.sent()) {
            receiver.report.check.cap(sent);
        }
        if receiver.has_all() {
            break;
        }
        if let Err(error) = receiver.read_and_ack() {
            let received = receiver.report.check.tally.distinct;
            receiver.report.error = Some(format!("{error}, after {received} messages"));
            break;
        }
    }
    receiver.report
}

/// A subscriber's state between reads.
struct Receiver<'a> {
    stream: TcpStream,
    framing: Framing,
    writes: ClientWrites,
    epoch: Epoch,
    progress: &'a AtomicU64,
    group: Option<&'a ConsumerGroup>,
    buffer: ReadBuffer,
    acks: Vec<u8>,
    /// When the last `read()` that did not time out returned.
    last_read: Instant,
    report: SubscriberReport,
}

impl Receiver<'_> {
    /// Whether every message it waits for has arrived: its own, or its
    /// group's.
    fn has_all(&self) -> bool {
        match self.group {
            Some(group) => group.has_all(),
            None => self.report.check.is_complete(),
        }
    }

    /// One `read()`: parse every complete frame it completes, in place, then
    /// ack them (if the framing takes acks): all in one write, or each in
    /// its own with [`ClientWrites::Frame`]. A read that times out is an
    /// error once nothing has come for [`IO_TIMEOUT`].
    fn read_and_ack(&mut self) -> Result<(), String> {
        if !self.buffer.read_or_time_out(&self.stream)? {
            return match self.last_read.elapsed() < IO_TIMEOUT {
                true => Ok(()),
                false => Err(silence(self.last_read.elapsed())),
            };
        }
        self.last_read = Instant::now();
        let arrival_ns = self.epoch.nanos_at(self.last_read);

        let report = &mut self.report;
        let distinct_before = report.check.tally.distinct;
        let (consumed, messages) = take_frames(
            self.buffer.unparsed(),
            self.framing,
            &mut self.acks,
            |header| {
                report
                    .latency
                    .record(arrival_ns.saturating_sub(header.sent_ns));
                report.check.record(header.publisher, header.sequence);
            },
        )?;
        self.buffer.consume(consumed);
        if messages > 0 {
            report.last_arrival_ns = Some(arrival_ns);
            self.progress.fetch_add(messages, Ordering::Relaxed);
            if let Some(group) = self.group {
                let new = report.check.tally.distinct - distinct_before;
                group.received.fetch_add(new, Ordering::Relaxed);
            }
        }
        if !self.acks.is_empty() {
            let ack_bytes = self.framing.ack().len();
            let piece = match self.writes {
                ClientWrites::Frame if ack_bytes > 0 => ack_bytes,
                _ => self.acks.len(),
            };
            for answer in self.acks.chunks(piece) {
                self.stream
                    .write_all(answer)
                    .map_err(|e| format!("ack failed: {e}"))?;
            }
            self.acks.clear();
        }
        Ok(())
    }
}

/// Hands the header of every complete frame in `bytes` to `on_message` and
/// queues an ack for each, if the framing takes acks. Returns the bytes
/// consumed and the frame count.
pub fn take_frames(
    bytes: &[u8],
    framing: Framing,
    acks: &mut Vec<u8>,
    mut on_message: impl FnMut(PayloadHeader),
) -> Result<(usize, u64), String> {
    let (mut consumed, mut messages) = (0, 0);
    while let Some(frame) = framing.frame_at(&bytes[consumed..])? {
        if frame.kind != FrameKind::Message {
            if frame.kind == FrameKind::Ping {
                acks.extend_from_slice(b"PONG\r\n");
            }
            consumed += frame.end;
            continue;
        }
        let payload = &bytes[consumed + frame.payload_start..consumed + frame.payload_end];
        let header = framing
            .header_of(payload)
            .ok_or_else(|| format!("a payload of {} bytes has no bench header", payload.len()))?;
        on_message(header);
        acks.extend_from_slice(framing.ack());
        consumed += frame.end;
        messages += 1;
    }
    Ok((consumed, messages))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_frames_parse_as_publish_framing() {
        let mut encoder = FrameEncoder::new(Protocol::Binary, "t", 32);
        for sequence in 0..3 {
            encoder.push(PayloadHeader {
                publisher: 7,
                sequence,
                sent_ns: 99,
            });
        }
        let mut acks = Vec::new();
        let mut seen = Vec::new();
        let (consumed, messages) = take_frames(
            &encoder.buffer[..encoder.buffer.len() - 1],
            Framing::Publish,
            &mut acks,
            |h| seen.push(h.sequence),
        )
        .unwrap();
        assert_eq!((messages, seen, acks.len()), (2, vec![0, 1], 4));
        assert_eq!(consumed, 2 * encoder.frame_bytes());
    }

    #[test]
    fn line_deliveries_of_pub_texts_parse_as_line_framing() {
        let mut encoder = FrameEncoder::new(Protocol::Line, "t", 24);
        let headers = [
            (0, 0, 0),
            (0, 0xabc, u64::MAX),
            (u32::MAX, u64::MAX, u64::MAX),
        ]
        .map(|(publisher, sequence, sent_ns)| PayloadHeader {
            publisher,
            sequence,
            sent_ns,
        });
        for header in headers {
            encoder.push(header);
        }
        // Padded to 24 bytes, or the header alone where it is longer.
        let text = String::from_utf8(encoder.buffer.clone()).unwrap();
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        assert_eq!(lines[0], format!("PUB t 0 0 0 {}\n", ".".repeat(18)));
        assert_eq!(lines[1], "PUB t 0 abc ffffffffffffffff .\n");
        assert_eq!(lines[2].len(), "PUB t \n".len() + MAX_TEXT_HEADER_BYTES);

        // What the broker delivers: each text behind a `MSG` line, then a
        // line feed.
        let mut deliveries = Vec::new();
        for (offset, line) in text.lines().enumerate() {
            let payload = line.strip_prefix("PUB t ").unwrap();
            let delivery = format!("MSG t {offset} {}\n{payload}\n", payload.len());
            deliveries.extend_from_slice(delivery.as_bytes());
        }
        let mut acks = Vec::new();
        let mut seen = Vec::new();
        let mut take =
            |bytes: &[u8]| take_frames(bytes, Framing::Line, &mut acks, |h| seen.push(h));
        let (consumed, messages) = take(&deliveries[..deliveries.len() - 1]).unwrap();
        assert_eq!(messages, 2);
        assert_eq!(take(&deliveries[consumed..]).unwrap().1, 1);
        assert!(take(b"+OK 7\n").is_err());
        assert_eq!((seen.as_slice(), acks.len()), (&headers[..], 0));
    }

    #[test]
    fn nats_frames_parse_wherever_a_read_ends() {
        let mut encoder = FrameEncoder::new(Protocol::Nats, "t", 32);
        let header = |sequence| PayloadHeader {
            publisher: 0,
            sequence,
            sent_ns: 5,
        };
        encoder.push(header(0));
        assert!(encoder.buffer.starts_with(b"PUB t 32\r\n"));
        // What nats-server sends: its INFO, the message (whose payload may
        // hold a CR LF), a PING, the next with a reply subject.
        let payload = |sequence| {
            let mut payload = Vec::new();
            header(sequence).append_to(&mut payload);
            payload.extend_from_slice(b"..\r\n..");
            payload
        };
        let mut stream = b"INFO {\"server_id\":\"x\"}\r\n".to_vec();
        stream.extend_from_slice(b"MSG t 1 26\r\n");
        stream.extend_from_slice(&payload(0));
        stream.extend_from_slice(b"\r\nPING\r\nmsg t 1 inbox.7 26\r\n");
        stream.extend_from_slice(&payload(1));
        stream.extend_from_slice(b"\r\n");
        for cut in 0..=stream.len() {
            let (mut acks, mut seen) = (Vec::new(), Vec::new());
            let mut take = |bytes: &[u8]| {
                take_frames(bytes, Framing::Nats, &mut acks, |h| seen.push(h.sequence)).unwrap()
            };
            let (consumed, _) = take(&stream[..cut]);
            let (rest, _) = take(&stream[consumed..]);
            assert_eq!(consumed + rest, stream.len(), "cut at {cut}");
            assert_eq!((seen, acks), (vec![0, 1], b"PONG\r\n".to_vec()));
        }
        let refused = b"-ERR 'Maximum Payload Violation'\r\n";
        assert!(take_frames(refused, Framing::Nats, &mut Vec::new(), |_| {}).is_err());
    }

    #[test]
    fn sequence_check_counts_each_fault() {
        let mut check = SequenceCheck::new(&[4, 0]);
        for (publisher, sequence) in [(0, 0), (0, 2), (0, 1), (0, 1), (1, 0), (0, 9)] {
            check.record(publisher, sequence);
        }
        let tally = check.tally;
        assert_eq!((tally.distinct, tally.missing()), (3, 1));
        assert_eq!(
            (tally.duplicates, tally.out_of_order, tally.unexpected),
            (1, 1, 2)
        );
    }

    #[test]
    fn group_members_absorbed_count_shared_messages_as_duplicates() {
        let member = |sequences: &[u64]| {
            let mut check = SequenceCheck::new(&[5]);
            for &sequence in sequences {
                check.record(0, sequence);
            }
            check
        };
        // Interleaved shares, each in order but one: 3 went to both, and
        // the first member had 2 after 4. Nobody had 1.
        let mut group = member(&[0, 4, 2]);
        group.absorb(&member(&[3]));
        group.absorb(&member(&[3]));
        let tally = group.tally;
        assert_eq!((tally.expected, tally.distinct, tally.missing()), (5, 4, 1));
        assert_eq!((tally.duplicates, tally.out_of_order), (1, 1));
    }
}
