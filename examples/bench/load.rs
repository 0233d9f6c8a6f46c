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

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use brook::protocol::{self, action, status, StartAt, TOPIC_PREFIX};

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
}

#[derive(Debug)]
pub struct PublisherReport {
    /// When the first frame was stamped, in nanoseconds since the epoch.
    pub first_send_ns: Option<u64>,
}

/// Encodes publish frames into one buffer that is reused for the whole run.
struct FrameEncoder {
    buffer: Vec<u8>,
    /// `u16` length + `topic:` + name, the same for every frame.
    topic_frame: Vec<u8>,
    payload_len: [u8; 4],
    padding: Vec<u8>,
}

impl FrameEncoder {
    fn new(topic: &str, payload_bytes: usize) -> FrameEncoder {
        let mut topic_frame = Vec::new();
        protocol::push_u16(&mut topic_frame, (TOPIC_PREFIX.len() + topic.len()) as u16);
        topic_frame.extend_from_slice(TOPIC_PREFIX);
        topic_frame.extend_from_slice(topic.as_bytes());
        let frame_bytes = topic_frame.len() + 4 + payload_bytes;
        FrameEncoder {
            buffer: Vec::with_capacity(PUBLISH_BUFFER.max(frame_bytes)),
            topic_frame,
            payload_len: (payload_bytes as u32).to_be_bytes(),
            padding: vec![b'.'; payload_bytes - HEADER_BYTES],
        }
    }

    fn frame_bytes(&self) -> usize {
        self.topic_frame.len() + 4 + HEADER_BYTES + self.padding.len()
    }

    fn has_room(&self) -> bool {
        self.buffer.len() + self.frame_bytes() <= self.buffer.capacity()
    }

    fn push(&mut self, header: PayloadHeader) {
        self.buffer.extend_from_slice(&self.topic_frame);
        self.buffer.extend_from_slice(&self.payload_len);
        header.append_to(&mut self.buffer);
        self.buffer.extend_from_slice(&self.padding);
    }

    fn write_to(&mut self, stream: &mut TcpStream) -> io::Result<()> {
        stream.write_all(&self.buffer)?;
        self.buffer.clear();
        Ok(())
    }
}

/// Connects, announces itself as a publisher and sends `plan.count` messages.
pub fn publish(
    addr: SocketAddr,
    plan: &PublisherPlan,
    epoch: Epoch,
) -> io::Result<PublisherReport> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.write_all(&action::PUBLISH.to_be_bytes())?;

    let mut encoder = FrameEncoder::new(&plan.topic, plan.payload_bytes);
    let started = Instant::now();
    let paced = matches!(plan.pacing, Pacing::Rate(_));
    let (mut now_ns, mut batch_started_ns) = (0, 0);
    let mut first_send_ns = None;
    for sequence in 0..plan.count {
        if let Pacing::Rate(rate) = plan.pacing {
            sleep_until(started + Duration::from_secs_f64(sequence as f64 / rate as f64));
        }
        if !encoder.has_room() {
            encoder.write_to(&mut stream)?;
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
            encoder.write_to(&mut stream)?;
        }
    }
    encoder.write_to(&mut stream)?;
    Ok(PublisherReport { first_send_ns })
}

fn sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now {
        thread::sleep(deadline - now);
    }
}

// ---- Subscribing ----

/// Connects and subscribes to `topic` from Current, waiting for the
/// Subscribed status. Nothing can be published to the topic before it
/// returns, so the status is the only thing read.
pub fn subscribe(addr: SocketAddr, topic: &str) -> Result<TcpStream, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("cannot connect: {e}"))?;
    let subscribed = (|| {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.write_all(&subscribe_request(topic))?;
        read_status(&mut stream)
    })();
    match subscribed {
        Ok(Ok(())) => Ok(stream),
        Ok(Err(refusal)) => Err(format!("subscribe refused: {refusal}")),
        Err(error) => Err(format!("subscribe failed: {error}")),
    }
}

pub fn subscribe_request(topic: &str) -> Vec<u8> {
    let mut request = Vec::new();
    protocol::encode_subscribe(&mut request, &[topic], StartAt::Current);
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

// ---- Frame parsing ----

/// The two shapes a message reaches a subscriber in: a broker's delivery, or
/// (from the relay, which forwards publishers' bytes untouched) the
/// publisher's own frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `u16` topic length, topic, `u64` payload length, payload.
    Delivery,
    /// `u16` length, `topic:` + name, `u32` payload length, payload.
    Publish,
}

/// The largest frame a subscriber accepts before calling the stream garbage.
const MAX_FRAME_BYTES: u64 = 1 << 30;

/// Where one complete frame lies at the start of a buffer.
#[derive(Debug, Clone, Copy)]
pub struct FrameSpan {
    pub payload_start: usize,
    pub end: usize,
}

impl Framing {
    fn payload_length_bytes(self) -> usize {
        match self {
            Framing::Delivery => 8,
            Framing::Publish => 4,
        }
    }

    /// The frame at the start of `bytes`: `Ok(None)` if it is not complete
    /// yet, an error if its length is absurd.
    pub fn frame_at(self, bytes: &[u8]) -> Result<Option<FrameSpan>, String> {
        let Some(topic_len) = bytes.get(..2) else {
            return Ok(None);
        };
        let payload_len_at = 2 + u16::from_be_bytes([topic_len[0], topic_len[1]]) as usize;
        let payload_start = payload_len_at + self.payload_length_bytes();
        let Some(length) = bytes.get(payload_len_at..payload_start) else {
            return Ok(None);
        };
        let payload_len = length.iter().fold(0u64, |n, &b| n << 8 | b as u64);
        if payload_len > MAX_FRAME_BYTES {
            return Err(format!("a frame announces {payload_len} bytes"));
        }
        let end = payload_start + payload_len as usize;
        Ok((end <= bytes.len()).then_some(FrameSpan { payload_start, end }))
    }
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
}

// ---- Subscriber ----

const READ_BUFFER: usize = 256 << 10;
const ACK: [u8; 2] = action::ACK.to_be_bytes();

#[derive(Debug, Clone)]
pub struct SubscriberPlan {
    pub topic: String,
    /// Messages expected from each publisher id.
    pub expected: Vec<u64>,
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
        epoch,
        progress,
        buffer: vec![0; READ_BUFFER],
        filled: 0,
        acks: Vec::with_capacity(READ_BUFFER / 16),
        report: SubscriberReport::nothing_received(plan),
    };
    while !receiver.report.check.is_complete() {
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
    epoch: Epoch,
    progress: &'a AtomicU64,
    buffer: Vec<u8>,
    /// `buffer[..filled]` holds bytes read and not yet parsed.
    filled: usize,
    acks: Vec<u8>,
    report: SubscriberReport,
}

impl Receiver<'_> {
    /// One `read()`: parse every complete frame it completes, in place, then
    /// ack them all in one write.
    fn read_and_ack(&mut self) -> Result<(), String> {
        if self.filled == self.buffer.len() {
            // One frame larger than the buffer: make room for it.
            self.buffer.resize(self.buffer.len() * 2, 0);
        }
        let read = match self.stream.read(&mut self.buffer[self.filled..]) {
            Ok(0) => return Err("the broker closed the connection".to_owned()),
            Ok(read) => read,
            Err(e) if e.kind() == ErrorKind::Interrupted => return Ok(()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(format!("no byte arrived for {} s", IO_TIMEOUT.as_secs()))
            }
            Err(e) => return Err(format!("read failed: {e}")),
        };
        let arrival_ns = self.epoch.nanos_at(Instant::now());
        self.filled += read;

        let report = &mut self.report;
        let (consumed, messages) = take_frames(
            &self.buffer[..self.filled],
            self.framing,
            &mut self.acks,
            |header| {
                report
                    .latency
                    .record(arrival_ns.saturating_sub(header.sent_ns));
                report.check.record(header.publisher, header.sequence);
            },
        )?;
        self.buffer.copy_within(consumed..self.filled, 0);
        self.filled -= consumed;
        if messages > 0 {
            report.last_arrival_ns = Some(arrival_ns);
            self.progress.fetch_add(messages, Ordering::Relaxed);
            self.stream
                .write_all(&self.acks)
                .map_err(|e| format!("ack failed: {e}"))?;
            self.acks.clear();
        }
        Ok(())
    }
}

/// Hands the header of every complete frame in `bytes` to `on_message` and
/// queues an ack for each. Returns the bytes consumed and the frame count.
pub fn take_frames(
    bytes: &[u8],
    framing: Framing,
    acks: &mut Vec<u8>,
    mut on_message: impl FnMut(PayloadHeader),
) -> Result<(usize, u64), String> {
    let (mut consumed, mut messages) = (0, 0);
    while let Some(frame) = framing.frame_at(&bytes[consumed..])? {
        let payload = &bytes[consumed + frame.payload_start..consumed + frame.end];
        let header = PayloadHeader::parse(payload)
            .ok_or_else(|| format!("a payload of {} bytes has no bench header", payload.len()))?;
        on_message(header);
        acks.extend_from_slice(&ACK);
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
        let mut encoder = FrameEncoder::new("t", 32);
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
}
