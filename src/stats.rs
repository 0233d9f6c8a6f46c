//! What the broker counts for the line protocol's `TOPICS` and `STATS`
//! commands (the reports they print are in `wire/reply.rs`).
//!
//! Every topic carries its own [`Traffic`]: messages and bytes in (appended
//! by the dispatcher) and out (written for subscribers and pulls). Broker-wide
//! figures are sums over the topics, made when someone asks, so nothing on
//! the path of a message does more than bump two numbers; beside them,
//! `STATS` reads the store's memory budget (`budget.rs`) as it is.

use std::cell::Cell;

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

/// What went through one topic.
#[derive(Debug, Default)]
pub struct Traffic {
    pub messages_in: Counter,
    pub bytes_in: Counter,
    /// Deliveries, counting every redelivery.
    pub messages_out: Counter,
    pub bytes_out: Counter,
}

impl Traffic {
    /// Counts a message appended to the topic.
    pub fn received(&self, bytes: usize) {
        self.messages_in.add(1);
        self.bytes_in.add(bytes as u64);
    }

    /// Counts a delivery of one of the topic's messages.
    pub fn sent(&self, bytes: usize) {
        self.messages_out.add(1);
        self.bytes_out.add(bytes as u64);
    }
}
