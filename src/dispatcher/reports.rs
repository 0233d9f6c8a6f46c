//! Reports: the figures `TOPICS` and `STATS` print (`Request::Topics`,
//! `Request::Stats`), and that the metrics thread asks for with
//! `Command::Report` to serve at `--metrics-addr` (`metrics/`).
//!
//! They run as the round takes the request or command, and change
//! nothing: a report is made from what the dispatcher already holds and
//! counts (each topic's counters are in `stats.rs`, the report types in
//! `wire/reply.rs`).
//!
//! Calls: no other file's methods.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::Dispatcher;
use crate::wire::reply::{BrokerReport, TopicReport};

impl Dispatcher {
    /// The figures `STATS` prints and `--metrics-addr` serves.
    pub(super) fn broker_report(&self, now: Instant) -> BrokerReport {
        let budget = self.store.budget();
        BrokerReport {
            incarnation: self.store.incarnation().to_owned(),
            uptime: now.duration_since(self.started),
            connections: self.connections.load(Ordering::Relaxed),
            memory_used: budget.used(),
            memory_budget: budget.limit(),
            publishers_waiting: self.full_memory.publishers_waiting,
            topics: self.topic_reports(),
            pattern_subscriptions: self.patterns.count(),
            logins: self.logins.list(),
            refused_disk_full: self.full_disk.refused,
            refused_memory_full: self.full_memory.refused,
            dead_letters_not_stored: self.dead_letters_not_stored.count,
        }
    }

    /// One report per topic, in the order the topics were created.
    pub(super) fn topic_reports(&self) -> Vec<TopicReport> {
        self.topics
            .iter()
            .map(|topic| TopicReport {
                name: topic.name.clone(),
                first: topic.log.start(),
                next: topic.log.end(),
                subscribers: topic.subscribers.len(),
                messages_in: topic.traffic.messages_in.get(),
                bytes_in: topic.traffic.bytes_in.get(),
                messages_out: topic.traffic.messages_out.get(),
                bytes_out: topic.traffic.bytes_out.get(),
                redeliveries: topic.traffic.redeliveries.get(),
                given_up: topic.traffic.given_up.get(),
                unreadable: topic.log.unreadable_records(),
                disk_bytes: topic.log.disk_bytes(),
                groups: topic
                    .groups
                    .iter()
                    .map(|group| group.report(topic.log.end()))
                    .collect(),
            })
            .collect()
    }
}
