//! The connections scenario: hold C idle subscribers, publish one message,
//! and time how long it takes to reach every one of them.
//!
//! Two phases. To subscribe, a few poller threads each own a share of the
//! sockets in non-blocking mode and sweep them, reading until `WouldBlock`
//! (std has no epoll), opening subscriptions a few dozen at a time (see
//! [`MAX_AWAITING_STATUS`]) so that the connect phase measures the broker
//! rather than TCP's retry timer. To receive the message, every socket gets
//! a thread of its own, blocked in `read`: a sleeping thread costs no CPU,
//! whereas sweeping thousands of sockets would compete with the broker for
//! the machine's two cores and measure the bench instead. The message is
//! published once every waiting thread has started.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use brook::wire::binary::status;
use brook::wire::request::StartAt;

use crate::histogram::Histogram;
use crate::load::{
    self, ClientWrites, Epoch, Framing, Pacing, Protocol, PublisherPlan, SequenceCheck, Tally,
};
use crate::report::thousands;

const POLLER_THREADS: usize = 2;
/// How long subscribing all C, and then delivering to all C, may each take.
const PHASE_TIMEOUT: Duration = Duration::from_secs(30);
const IDLE_SWEEP_PAUSE: Duration = Duration::from_micros(100);

#[derive(Debug, Clone)]
pub struct ConnectionsPlan {
    pub connections: usize,
    pub topic: String,
    pub payload_bytes: usize,
    /// How the message arrives: a delivery from brook, the publisher's own
    /// frame from the relay.
    pub framing: Framing,
}

#[derive(Debug, Default)]
pub struct ConnectionsReport {
    /// From the first connect until every socket had its Subscribed status.
    pub subscribe_time: Option<Duration>,
    /// From the publish to each subscriber's arrival; max is "all of them".
    pub latency: Histogram,
    pub tally: Tally,
    pub errors: Vec<String>,
}

/// Counters the pollers share with the thread that runs the scenario.
#[derive(Default)]
pub struct Counters {
    pub subscribed: AtomicU64,
    /// Subscribers whose thread is blocked waiting for the message.
    pub waiting: AtomicU64,
    pub arrived: AtomicU64,
    abort: AtomicBool,
}

/// Runs the scenario. `show_progress` is called about every 100 ms, and
/// `all_subscribed` once every subscriber has its status, before the publish.
pub fn run(
    addr: SocketAddr,
    plan: &ConnectionsPlan,
    epoch: Epoch,
    counters: &Arc<Counters>,
    mut show_progress: impl FnMut(),
    all_subscribed: impl FnOnce(),
) -> ConnectionsReport {
    let started = Instant::now();
    let pollers: Vec<_> = shares(plan.connections, POLLER_THREADS)
        .enumerate()
        .map(|(index, share)| {
            let (counters, topic, framing) = (counters.clone(), plan.topic.clone(), plan.framing);
            thread::Builder::new()
                .name(format!("bench-poll-{index}"))
                .spawn(move || poll_subscribers(addr, &topic, share, framing, epoch, &counters))
                .expect("cannot start a poller thread")
        })
        .collect();

    let mut report = ConnectionsReport::default();
    let all = plan.connections as u64;
    let everyone_subscribed = || counters.subscribed.load(Ordering::Relaxed) == all;
    let everyone_waiting = || counters.waiting.load(Ordering::Relaxed) == all;
    let pollers_stopped = || pollers.iter().all(|poller| poller.is_finished());
    let in_time = wait_until(
        || everyone_waiting() || pollers_stopped(),
        &mut show_progress,
    );
    let outcome = if !everyone_subscribed() {
        let subscribed = thousands(counters.subscribed.load(Ordering::Relaxed));
        let only = format!("only {subscribed} of {} subscribed", thousands(all));
        Err(match in_time {
            true => only,
            false => format!("{only} after {} s", PHASE_TIMEOUT.as_secs()),
        })
    } else {
        report.subscribe_time = Some(started.elapsed());
        all_subscribed();
        publish_one(addr, plan, epoch).and_then(|()| {
            match wait_until(pollers_stopped, &mut show_progress) {
                true => Ok(()),
                false => Err(format!("gave up after {} s", PHASE_TIMEOUT.as_secs())),
            }
        })
    };
    counters.abort.store(true, Ordering::Relaxed);
    let mut errors: Vec<String> = outcome.err().into_iter().collect();
    for poller in pollers {
        let share = poller.join().expect("a poller thread panicked");
        report.latency.merge(&share.latency);
        report.tally.add(&share.tally);
        errors.extend(share.error);
    }
    report.errors = errors;
    report
}

fn publish_one(addr: SocketAddr, plan: &ConnectionsPlan, epoch: Epoch) -> Result<(), String> {
    let publisher = PublisherPlan {
        id: 0,
        topic: plan.topic.clone(),
        count: 1,
        payload_bytes: plan.payload_bytes,
        pacing: Pacing::FlatOut,
        protocol: Protocol::Binary,
        writes: ClientWrites::Batched,
        finish: None,
    };
    load::publish(addr, &publisher, epoch)
        .map(drop)
        .map_err(|e| format!("publish failed: {e}"))
}

/// Splits `total` into `parts` near-equal shares.
fn shares(total: usize, parts: usize) -> impl Iterator<Item = usize> {
    (0..parts).map(move |part| total / parts + usize::from(part < total % parts))
}

/// Calls `show_progress` every 100 ms until `done` (true) or the phase
/// timeout (false).
fn wait_until(done: impl Fn() -> bool, show_progress: &mut impl FnMut()) -> bool {
    let deadline = Instant::now() + PHASE_TIMEOUT;
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        show_progress();
        thread::sleep(Duration::from_millis(100));
    }
    true
}

// ---- One poller thread ----

struct Subscription {
    stream: TcpStream,
    /// Bytes read and not yet understood.
    bytes: Vec<u8>,
    state: State,
    framing: Framing,
    check: SequenceCheck,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitingStatus,
    AwaitingMessage,
    /// Has its message, or failed.
    Finished,
}

struct PollerReport {
    latency: Histogram,
    tally: Tally,
    error: Option<String>,
}

/// Opens `count` subscriptions, then sweeps them until each has its message.
fn poll_subscribers(
    addr: SocketAddr,
    topic: &str,
    count: usize,
    framing: Framing,
    epoch: Epoch,
    counters: &Counters,
) -> PollerReport {
    let mut poller = Poller {
        subscriptions: Vec::with_capacity(count),
        scratch: vec![0; 64 << 10],
        latency: Histogram::default(),
        error: None,
        epoch,
        counters,
    };
    poller.open_and_subscribe(
        addr,
        &load::subscribe_request(topic, StartAt::Current, None, Protocol::Binary),
        framing,
        count,
    );
    poller.await_messages();

    let mut tally = Tally::default();
    for subscription in &poller.subscriptions {
        tally.add(&subscription.check.tally);
    }
    // Every socket the scenario asked for counts, opened or not.
    tally.expected = count as u64;
    PollerReport {
        latency: poller.latency,
        tally,
        error: poller.error,
    }
}

/// A connect completes before the broker accepts it; a connect that finds the
/// listen backlog (128 with std) full is dropped and retried by TCP a second
/// later. So each poller keeps at most this many subscriptions waiting for
/// their status, which measures how fast the broker takes on subscribers
/// rather than TCP's retry timer.
const MAX_AWAITING_STATUS: usize = 32;

struct Poller<'a> {
    subscriptions: Vec<Subscription>,
    scratch: Vec<u8>,
    latency: Histogram,
    error: Option<String>,
    epoch: Epoch,
    counters: &'a Counters,
}

impl Poller<'_> {
    fn aborted(&self) -> bool {
        self.counters.abort.load(Ordering::Relaxed)
    }

    /// Opens `count` subscriptions, a few at a time, until each has its
    /// Subscribed status. Only those still waiting are swept.
    fn open_and_subscribe(
        &mut self,
        addr: SocketAddr,
        request: &[u8],
        framing: Framing,
        count: usize,
    ) {
        let mut awaiting_status: Vec<usize> = Vec::with_capacity(MAX_AWAITING_STATUS);
        while (self.subscriptions.len() < count || !awaiting_status.is_empty()) && !self.aborted() {
            while self.subscriptions.len() < count && awaiting_status.len() < MAX_AWAITING_STATUS {
                match open_subscription(addr, request, framing) {
                    Ok(subscription) => {
                        awaiting_status.push(self.subscriptions.len());
                        self.subscriptions.push(subscription);
                    }
                    Err(error) => {
                        let number = self.subscriptions.len() + 1;
                        let name = thread::current().name().unwrap_or_default().to_owned();
                        self.error =
                            Some(format!("{name}: connection {number} of {count}: {error}"));
                        self.counters.abort.store(true, Ordering::Relaxed);
                        return;
                    }
                }
            }
            let before = awaiting_status.len();
            awaiting_status.retain(|&index| {
                self.poll(index);
                self.subscriptions[index].state == State::AwaitingStatus
            });
            if awaiting_status.len() == before {
                thread::sleep(IDLE_SWEEP_PAUSE);
            }
        }
    }

    /// Waits for every subscription's message, one blocked thread per socket
    /// (see the module docs).
    fn await_messages(&mut self) {
        let (epoch, counters) = (self.epoch, self.counters);
        let outcomes: Vec<(Histogram, Option<String>)> = thread::scope(|scope| {
            let waiters: Vec<_> = self
                .subscriptions
                .iter_mut()
                .map(|subscription| {
                    thread::Builder::new()
                        .stack_size(64 << 10)
                        .spawn_scoped(scope, move || {
                            let mut latency = Histogram::default();
                            let outcome = subscription.wait(epoch, &mut latency, counters);
                            (latency, outcome.err())
                        })
                        .expect("cannot start a waiter thread")
                })
                .collect();
            waiters
                .into_iter()
                .map(|waiter| waiter.join().expect("a waiter panicked"))
                .collect()
        });
        for (latency, error) in outcomes {
            self.latency.merge(&latency);
            if let Some(error) = error {
                self.error.get_or_insert(error);
            }
        }
    }

    /// Polls one subscription; returns whether any byte came. A failure
    /// finishes it and is kept (the first one) for the report.
    fn poll(&mut self, index: usize) -> bool {
        let subscription = &mut self.subscriptions[index];
        let outcome = subscription.poll(
            &mut self.scratch,
            self.epoch,
            &mut self.latency,
            self.counters,
        );
        outcome.unwrap_or_else(|error| {
            subscription.state = State::Finished;
            self.error.get_or_insert(error);
            true
        })
    }
}

fn open_subscription(
    addr: SocketAddr,
    request: &[u8],
    framing: Framing,
) -> io::Result<Subscription> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.write_all(request)?;
    stream.set_nonblocking(true)?;
    Ok(Subscription {
        stream,
        bytes: Vec::with_capacity(256),
        state: State::AwaitingStatus,
        framing,
        check: SequenceCheck::new(&[1]),
    })
}

impl Subscription {
    /// Reads what has arrived and acts on it. Returns whether any byte came.
    fn poll(
        &mut self,
        scratch: &mut [u8],
        epoch: Epoch,
        latency: &mut Histogram,
        counters: &Counters,
    ) -> Result<bool, String> {
        let mut read_something = false;
        loop {
            match self.stream.read(scratch) {
                Ok(0) => return Err("the broker closed a subscriber's connection".into()),
                Ok(read) => {
                    self.bytes.extend_from_slice(&scratch[..read]);
                    read_something = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("read failed: {e}")),
            }
        }
        if !read_something {
            return Ok(false);
        }
        self.understand(epoch.nanos_at(Instant::now()), latency, counters)?;
        Ok(true)
    }

    /// Blocks until the message has arrived and been acked.
    fn wait(
        &mut self,
        epoch: Epoch,
        latency: &mut Histogram,
        counters: &Counters,
    ) -> Result<(), String> {
        let setup = |stream: &TcpStream| {
            stream.set_nonblocking(false)?;
            stream.set_read_timeout(Some(PHASE_TIMEOUT))
        };
        setup(&self.stream).map_err(|e| format!("cannot block on a socket: {e}"))?;
        counters.waiting.fetch_add(1, Ordering::Relaxed);
        let mut scratch = [0u8; 512];
        while self.state != State::Finished {
            match self.stream.read(&mut scratch) {
                Ok(0) => return Err("the broker closed a subscriber's connection".into()),
                Ok(read) => self.bytes.extend_from_slice(&scratch[..read]),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("no message: {e}")),
            }
            self.understand(epoch.nanos_at(Instant::now()), latency, counters)?;
        }
        Ok(())
    }

    /// Acts on the bytes read so far: the Subscribed status, then the
    /// message, which is acked.
    fn understand(
        &mut self,
        arrival_ns: u64,
        latency: &mut Histogram,
        counters: &Counters,
    ) -> Result<(), String> {
        if self.state == State::AwaitingStatus && self.bytes.len() >= 2 {
            let status = u16::from_be_bytes([self.bytes[0], self.bytes[1]]);
            if status != status::SUBSCRIBED {
                return Err(format!("subscribe answered with status {status}"));
            }
            self.bytes.drain(..2);
            self.state = State::AwaitingMessage;
            counters.subscribed.fetch_add(1, Ordering::Relaxed);
        }
        if self.state == State::AwaitingMessage {
            let mut ack = Vec::new();
            let check = &mut self.check;
            let (consumed, messages) =
                load::take_frames(&self.bytes, self.framing, &mut ack, |header| {
                    latency.record(arrival_ns.saturating_sub(header.sent_ns));
                    check.record(header.publisher, header.sequence);
                })?;
            if messages > 0 {
                self.bytes.drain(..consumed);
                // Two bytes into an idle socket's empty send buffer.
                self.stream
                    .write_all(&ack)
                    .map_err(|e| format!("ack failed: {e}"))?;
                self.state = State::Finished;
                counters.arrived.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}
