//! What the broker counts, and the reports the line protocol's `TOPICS` and
//! `STATS` commands print, and `--metrics-addr` serves (`metrics.rs`).
//!
//! Every topic carries its own [`Traffic`]: messages and bytes in (appended
//! by the dispatcher) and out (written for subscribers and pulls), and of
//! those, the redeliveries and the messages given up; each consumer group
//! counts its own share of them the same way. Broker-wide
//! figures are sums over the topics, made when someone asks, so nothing on
//! the path of a message does more than bump two numbers; beside them,
//! `STATS` reads the store's memory budget (`budget.rs`) as it is.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use crate::ids::Offset;

/// A count that can be bumped through a shared reference.
///
/// Sessions see topics as `&Topic` while they deliver (the dispatcher lends
/// them the whole table), yet delivering must count. Only the dispatcher
/// thread ever touches a topic, so a `Cell` is all it takes: no atomics.
#[derive(Debug, Default)]
pub struct Counter(Cell<u64>);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.set(self.0.get() + n);
    }

    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// What went through one topic, or one consumer group (which has no
/// messages in of its own).
#[derive(Debug, Default)]
pub struct Traffic {
    pub messages_in: Counter,
    pub bytes_in: Counter,
    /// Deliveries, counting every redelivery.
    pub messages_out: Counter,
    pub bytes_out: Counter,
    /// Deliveries of a message that had been delivered before.
    pub redeliveries: Counter,
    /// Messages given up after `--max-deliveries` (sent to the topic's
    /// dead-letter topic, unless `--dead-letter off`).
    pub given_up: Counter,
}

impl Traffic {
    /// Counts a message appended to the topic.
    pub fn received(&self, bytes: usize) {
        self.messages_in.add(1);
        self.bytes_in.add(bytes as u64);
    }

    /// Counts a delivery of one of the topic's messages, its
    /// `deliveries`th.
    pub fn sent(&self, bytes: usize, deliveries: u32) {
        self.messages_out.add(1);
        self.bytes_out.add(bytes as u64);
        if deliveries > 1 {
            self.redeliveries.add(1);
        }
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
    /// The group's share of its topic's [`Traffic`] out.
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
    pub uptime: Duration,
    pub connections: usize,
    /// What the store holds in memory against its budget, `--cache-bytes`
    /// or `--memory-bytes` (see `budget.rs`), and how many publishers wait
    /// because it is full.
    pub memory_used: usize,
    pub memory_budget: usize,
    pub publishers_waiting: usize,
    pub topics: Vec<TopicReport>,
    /// Publishes refused because the disk was full.
    pub refused_disk_full: u64,
}

impl BrokerReport {
    /// The broker-wide figures, as `(name, value)` pairs in the order
    /// `STATS` prints them.
    pub fn totals(&self) -> [(&'static str, u64); 13] {
        let sum = |field: fn(&TopicReport) -> u64| self.topics.iter().map(field).sum::<u64>();
        [
            ("uptime_seconds", self.uptime.as_secs()),
            ("connections", self.connections as u64),
            ("topics", self.topics.len() as u64),
            ("subscriptions", sum(|t| t.subscribers as u64)),
            ("messages_in", sum(|t| t.messages_in)),
            ("messages_out", sum(|t| t.messages_out)),
            ("bytes_in", sum(|t| t.bytes_in)),
            ("bytes_out", sum(|t| t.bytes_out)),
            ("publishes_refused_disk_full", self.refused_disk_full),
            ("memory_used", self.memory_used as u64),
            ("memory_budget", self.memory_budget as u64),
            ("publishers_waiting", self.publishers_waiting as u64),
            ("records_unreadable", sum(|t| t.unreadable)),
        ]
    }
}
