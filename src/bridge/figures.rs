//! What each mirror counts as it runs: the messages the far side
//! confirmed, those still waiting for an answer, the answers that refused
//! one, its connections and failures. The mirror's thread bumps them; the
//! `--metrics-addr` thread (`metrics.rs`) and `--report-every` only read
//! them.
//!
//! ```text
//!  to_nats / from_nats ──bump──► MirrorFigures (atomics, one per mirror) ◄──read── metrics, --report-every
//!  sessions::retry_forever ──a session failed──┘
//! ```
//!
//! Each figure is an atomic on its own, read with `Relaxed` ordering: a
//! scrape may see one figure a message ahead of another, which a monitoring
//! system, scraping every few seconds, never notices.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Which way a mirror moves messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `--to-nats`: brook's topics into a JetStream stream.
    ToNats,
    /// `--from-nats`: a JetStream stream into brook's topics.
    FromNats,
}

impl Direction {
    /// As the metrics' `direction` label says it: the flag, without `--`.
    pub fn label(self) -> &'static str {
        match self {
            Direction::ToNats => "to-nats",
            Direction::FromNats => "from-nats",
        }
    }
}

/// One mirror's figures: its name (direction, stream, pattern), and
/// counters its thread bumps.
#[derive(Debug)]
pub struct MirrorFigures {
    pub direction: Direction,
    pub stream: String,
    pub pattern: String,
    /// Messages the far side confirmed: JetStream's PubAck (`--to-nats`,
    /// duplicates included), brook's confirmation (`--from-nats`).
    forwarded: AtomicU64,
    /// Messages not answered yet: brook deliveries the mirror has not
    /// answered (`--to-nats`: publishes awaiting their PubAck, and
    /// deliveries waiting behind one, such as brook sending a message
    /// again), or the pulled batch brook has yet to confirm
    /// (`--from-nats`).
    in_flight: AtomicU64,
    /// PubAcks that said JetStream had the message already (`--to-nats`).
    duplicates: AtomicU64,
    /// brook messages NATS cannot take: a topic that is no NATS subject,
    /// or a message over `max_payload` (`--to-nats`).
    unmirrorable: AtomicU64,
    /// Messages answered `-NAK`, to come again (`--from-nats`).
    naks: AtomicU64,
    /// Messages answered `+TERM`: brook refused them for good
    /// (`--from-nats`).
    terms: AtomicU64,
    /// Connections made to NATS: one per session attempt that got so far.
    nats_connections: AtomicU64,
    brook_connections: AtomicU64,
    /// Session attempts that failed, whether the session had started or
    /// not: an outage adds one per retry.
    session_failures: AtomicU64,
    /// Whether a session is running, connected on both sides.
    connected: AtomicBool,
    /// When the last session failed, in seconds since 1970; 0 if none has.
    last_failure: AtomicU64,
}

impl MirrorFigures {
    pub fn new(direction: Direction, stream: &str, pattern: &str) -> MirrorFigures {
        MirrorFigures {
            direction,
            stream: stream.to_owned(),
            pattern: pattern.to_owned(),
            forwarded: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            unmirrorable: AtomicU64::new(0),
            naks: AtomicU64::new(0),
            terms: AtomicU64::new(0),
            nats_connections: AtomicU64::new(0),
            brook_connections: AtomicU64::new(0),
            session_failures: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            last_failure: AtomicU64::new(0),
        }
    }

    /// The far side confirmed a message; JetStream said it had it already
    /// if `duplicate`.
    pub fn forwarded(&self, duplicate: bool) {
        bump(&self.forwarded);
        if duplicate {
            bump(&self.duplicates);
        }
    }

    pub fn set_in_flight(&self, messages: usize) {
        self.in_flight.store(messages as u64, Ordering::Relaxed);
    }

    pub fn unmirrorable(&self) {
        bump(&self.unmirrorable);
    }

    pub fn nak(&self) {
        bump(&self.naks);
    }

    pub fn term(&self) {
        bump(&self.terms);
    }

    pub fn nats_connected(&self) {
        bump(&self.nats_connections);
    }

    pub fn brook_connected(&self) {
        bump(&self.brook_connections);
    }

    /// A session is running: connected on both sides, ready to move
    /// messages.
    pub fn session_ready(&self) {
        self.connected.store(true, Ordering::Relaxed);
    }

    /// A session ended with a failure, now.
    pub fn session_failed(&self) {
        self.connected.store(false, Ordering::Relaxed);
        bump(&self.session_failures);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        self.last_failure.store(now, Ordering::Relaxed);
    }

    /// The figures as they are now.
    pub fn read(&self) -> FiguresNow {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        FiguresNow {
            forwarded: read(&self.forwarded),
            in_flight: read(&self.in_flight),
            duplicates: read(&self.duplicates),
            unmirrorable: read(&self.unmirrorable),
            naks: read(&self.naks),
            terms: read(&self.terms),
            nats_connections: read(&self.nats_connections),
            brook_connections: read(&self.brook_connections),
            session_failures: read(&self.session_failures),
            connected: self.connected.load(Ordering::Relaxed),
            last_failure: read(&self.last_failure),
        }
    }
}

/// One reading of a mirror's figures (see [`MirrorFigures`] for each).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FiguresNow {
    pub forwarded: u64,
    pub in_flight: u64,
    pub duplicates: u64,
    pub unmirrorable: u64,
    pub naks: u64,
    pub terms: u64,
    pub nats_connections: u64,
    pub brook_connections: u64,
    pub session_failures: u64,
    pub connected: bool,
    pub last_failure: u64,
}

impl FiguresNow {
    /// Messages not mirrored, for good: what NATS cannot take
    /// (`--to-nats`), what brook refused (`--from-nats`).
    pub fn given_up(&self) -> u64 {
        self.unmirrorable + self.terms
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_disconnects_and_is_dated() {
        let figures = MirrorFigures::new(Direction::ToNats, "ORDERS", "orders.*");
        figures.session_ready();
        figures.forwarded(false);
        figures.forwarded(true);
        assert!(figures.read().connected);
        figures.session_failed();
        let now = figures.read();
        assert!(!now.connected);
        assert_eq!((now.forwarded, now.duplicates), (2, 1));
        assert_eq!(now.session_failures, 1);
        assert!(now.last_failure > 1_600_000_000, "{}", now.last_failure);
    }
}
