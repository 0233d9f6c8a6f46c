//! What the broker sends back, in words both protocols share: the
//! dispatcher makes [`Outgoing`] frames (a delivery, or a [`Reply`] to a
//! request), each writer thread encodes them for its own client
//! (`binary.rs` or `line_replies.rs`), and the reports `TOPICS` and `STATS` print.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use crate::budget::describe;
use crate::ids::{ConnId, Offset, Payload, TopicId};
use crate::store::DiskFull;

/// One frame for the client.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// A message for a subscriber (or a puller).
    Delivery {
        topic: Arc<str>,
        offset: Offset,
        payload: Payload,
    },
    Reply(Reply),
}

impl Outgoing {
    /// The bytes of message payload the frame carries.
    pub fn payload_len(&self) -> usize {
        match self {
            Outgoing::Delivery { payload, .. } => payload.len(),
            Outgoing::Reply(_) => 0,
        }
    }
}

/// An answer to a request. The binary protocol has the first three; the
/// rest answer requests only the line protocol can make.
#[derive(Debug, Clone)]
pub enum Reply {
    Subscribed,
    Unsubscribed,
    /// A refused request, with the reason.
    Error(Cow<'static, str>),
    /// A publish refused because the disk is full, with what to do.
    DiskFull(Arc<DiskFull>),
    /// A publish refused because the in-memory store is full, from a
    /// connection that subscribes or pulls (others wait instead).
    MemoryFull(MemoryFull),
    /// A request refused because it would create a topic or a group past
    /// the broker's limit.
    OverLimit(OverLimit),
    /// A confirmed publish. The topic is the dispatcher's, not sent: a
    /// confirmation the disk turns out to have no room for becomes a
    /// [`Reply::DiskFull`] before it goes out, and which ones is known by
    /// topic and offset.
    Published {
        topic: TopicId,
        offset: Offset,
    },
    /// The end of a pull, with how many messages it sent.
    PullDone {
        count: u64,
    },
    Pong,
    Bye,
    Help,
    /// Every topic, then every pattern followed.
    Topics(Vec<TopicReport>, Vec<PatternReport>),
    Stats(Box<BrokerReport>),
}

impl Reply {
    /// Turns a confirmation of a message of `topic` at or after `from`
    /// into a refusal: the disk had no room for those messages after all
    /// (see `Dispatcher::refuse_unwritten`).
    pub fn refuse_if_taken_back(&mut self, topic: TopicId, from: Offset, cause: &Arc<DiskFull>) {
        if matches!(self, Reply::Published { topic: t, offset } if *t == topic && *offset >= from) {
            *self = Reply::DiskFull(cause.clone());
        }
    }
}

/// A request refused because it would create a topic or a group past the
/// broker's limits (`--max-topics`, `--max-groups-per-topic`). Its text is
/// the error the client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverLimit {
    Topics(usize),
    GroupsPerTopic(usize),
}

impl std::fmt::Display for OverLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OverLimit::Topics(limit) => {
                write!(f, "too many topics: the broker holds --max-topics {limit}")
            }
            OverLimit::GroupsPerTopic(limit) => write!(
                f,
                "too many groups: a topic holds --max-groups-per-topic {limit}"
            ),
        }
    }
}

/// A publish refused because the in-memory store holds its limit and
/// subscribers still need all of it. Its text is the error the client
/// gets: the flag and its value, and what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryFull {
    /// The flag that set the limit, `--memory-bytes`.
    pub flag: &'static str,
    /// The flag's value, in bytes: what all topics together may hold.
    pub limit: usize,
}

impl std::fmt::Display for MemoryFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the in-memory store is full ({} {}) and subscribers still need all of it: \
             ack what you hold and publish again, or raise {}",
            self.flag,
            describe(self.limit),
            self.flag
        )
    }
}

/// A snapshot of one topic, for `TOPICS` and `STATS`.
#[derive(Debug, Clone)]
pub struct TopicReport {
    pub name: Arc<str>,
    /// The oldest offset the log holds.
    pub first: Offset,
    /// The offset the next message will get.
    pub next: Offset,
    pub subscribers: usize,
    pub messages_in: u64,
    pub bytes_in: u64,
    pub messages_out: u64,
    pub bytes_out: u64,
    pub redeliveries: u64,
    pub given_up: u64,
    /// How many of its offsets were found damaged on disk, and skipped.
    pub unreadable: u64,
    /// The bytes of its segment files (0 in memory).
    pub disk_bytes: u64,
    pub groups: Vec<GroupReport>,
}

/// A pattern that connections follow (`SUB orders.*`), for `TOPICS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternReport {
    pub pattern: Arc<str>,
    /// How many connections follow it with cursors of their own.
    pub subscribers: usize,
    /// In how many consumer groups it is followed.
    pub groups: usize,
}

/// A snapshot of one consumer group of a topic, for `STATS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupReport {
    pub name: Arc<str>,
    pub members: usize,
    /// The oldest offset the group is not done with.
    pub position: Offset,
    /// How many of the topic's messages the group has yet to finish with:
    /// not given out yet, or given out and not acked.
    pub lag: u64,
    /// The group's share of its topic's traffic out (`stats.rs`).
    pub messages_out: u64,
    pub bytes_out: u64,
    pub redeliveries: u64,
    pub given_up: u64,
}

impl TopicReport {
    /// How many messages the log holds.
    pub fn messages(&self) -> u64 {
        self.next - self.first
    }
}

/// A snapshot of the whole broker, for `STATS`.
#[derive(Debug, Clone)]
pub struct BrokerReport {
    /// The store's random id (`Store::incarnation`): a broker whose
    /// offsets started again from 0 has a new one.
    pub incarnation: String,
    pub uptime: Duration,
    pub connections: usize,
    /// What the store holds in memory against its budget, `--cache-bytes`
    /// or `--memory-bytes` (see `budget.rs`), and how many publishers wait
    /// because it is full.
    pub memory_used: usize,
    pub memory_budget: usize,
    pub publishers_waiting: usize,
    pub topics: Vec<TopicReport>,
    /// How many pattern subscriptions (`SUB orders.*`) the connections
    /// hold; the topics they cover count among `subscriptions` too.
    pub pattern_subscriptions: usize,
    /// Publishes refused because the disk was full.
    pub refused_disk_full: u64,
    /// Publishes refused because the in-memory store was full (from
    /// connections that subscribe or pull; the others wait).
    pub refused_memory_full: u64,
    /// Tries to store a dead letter that failed: on a full disk, each
    /// one's message was offered again instead (or its dead letter tried
    /// again), counted at each try; past `--max-topics`, or for a held-back
    /// message that cannot be read back, given up for good.
    pub dead_letters_not_stored: u64,
    /// Each connection logged in (`--auth-file`), and its user.
    pub logins: Vec<(ConnId, Arc<str>)>,
}

impl BrokerReport {
    /// The broker-wide figures, as `(name, value)` pairs in the order
    /// `STATS` prints them.
    pub fn totals(&self) -> [(&'static str, u64); 16] {
        let sum = |field: fn(&TopicReport) -> u64| self.topics.iter().map(field).sum::<u64>();
        [
            ("uptime_seconds", self.uptime.as_secs()),
            ("connections", self.connections as u64),
            ("topics", self.topics.len() as u64),
            ("subscriptions", sum(|t| t.subscribers as u64)),
            ("pattern_subscriptions", self.pattern_subscriptions as u64),
            ("messages_in", sum(|t| t.messages_in)),
            ("messages_out", sum(|t| t.messages_out)),
            ("bytes_in", sum(|t| t.bytes_in)),
            ("bytes_out", sum(|t| t.bytes_out)),
            ("publishes_refused_disk_full", self.refused_disk_full),
            ("publishes_refused_memory_full", self.refused_memory_full),
            ("dead_letters_not_stored", self.dead_letters_not_stored),
            ("memory_used", self.memory_used as u64),
            ("memory_budget", self.memory_budget as u64),
            ("publishers_waiting", self.publishers_waiting as u64),
            ("records_unreadable", sum(|t| t.unreadable)),
        ]
    }
}
