//! What the broker counts for the line protocol's `TOPICS` and `STATS`
//! commands and `--metrics-addr` (the reports they give are in
//! `wire/reply.rs`).
//!
//! Every topic carries its own [`Traffic`]: messages and bytes in (appended
//! by the dispatcher) and out (written for subscribers and pulls), and of
//! those, the redeliveries and the messages given up; each consumer group
//! counts its own share of them the same way. Broker-wide
//! figures are sums over the topics, made when someone asks, so nothing on
//! the path of a message does more than bump two numbers; beside them,
//! `STATS` reads the store's memory budget (`budget.rs`) as it is.
//!
//! One figure is not the dispatcher's alone: how long the fsyncs take.
//! The syncer thread (`syncer.rs`) times each batch's, and the disk log
//! (`store/disk/log.rs`) each fsync it makes on the dispatcher thread
//! (every append with `--fsync always`, a segment that rolls over), into
//! [`FsyncTimes`], a histogram whose bucket bounds are [`FSYNC_BUCKETS`],
//! in atomics rather than cells, since two threads bump it and a third,
//! the metrics thread (`metrics/`), reads it to serve at `--metrics-addr`.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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

/// The upper bounds of the fsync histogram's buckets, in seconds: from a
/// fast SSD's fraction of a millisecond to a disk that stalls for seconds.
pub(crate) const FSYNC_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// How many fsyncs the broker ran and how long they took, kept in atomics
/// so that the syncer counts without a lock and the metrics thread reads
/// without asking. Each job the syncer runs forces one log's writes to
/// disk (see `syncer.rs`), so a job is an fsync here; with `--fsync
/// always` the disk logs count each append's fsync here too
/// (`store/disk/log.rs`).
#[derive(Debug, Default)]
pub struct FsyncTimes {
    /// How many took at most `FSYNC_BUCKETS[i]` and more than the bound
    /// before it; the last, more than every bound. Cumulated as they are
    /// written out, so that the count, their sum, always matches them.
    pub(crate) buckets: [AtomicU64; FSYNC_BUCKETS.len() + 1],
    pub(crate) nanos: AtomicU64,
}

impl FsyncTimes {
    /// Counts one fsync that took `took`.
    pub fn record(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = FSYNC_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(FSYNC_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}
