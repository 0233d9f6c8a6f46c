//! The Prometheus text exposition format (version 0.0.4): the page the
//! metrics thread serves, rendered from the dispatcher's report and the
//! fsync times. Each family gets one `# HELP` and one `# TYPE` line, then
//! a sample per topic or group, label values escaped; the fsync times are
//! a histogram of cumulative buckets, with their sum and count.
//!
//! The format itself ([`Exposition`], [`Metric`], [`Kind`]) is also what
//! `brook-bridge` writes its own page with (`bridge/metrics.rs`).

use std::fmt::{self, Display, Write as _};
use std::sync::atomic::Ordering;

use crate::stats::{FsyncTimes, FSYNC_BUCKETS};
use crate::wire::reply::{BrokerReport, GroupReport, TopicReport};

/// What one scrape shows: the dispatcher's report, and the queue's length
/// read beside it.
pub(super) struct Scrape {
    pub(super) report: BrokerReport,
    pub(super) queued_commands: usize,
}

/// A metric's type, as its `# TYPE` line says it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        })
    }
}

/// One metric: its name, its type, its help line, and where its value is
/// in `R` (the scrape, a topic's report or a group's).
pub(crate) struct Metric<R> {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    pub(crate) help: &'static str,
    pub(crate) value: fn(&R) -> u64,
}

const BROKER_METRICS: &[Metric<Scrape>] = &[
    Metric {
        name: "brook_uptime_seconds",
        kind: Kind::Gauge,
        help: "Seconds since the broker started.",
        value: |s| s.report.uptime.as_secs(),
    },
    Metric {
        name: "brook_connections",
        kind: Kind::Gauge,
        help: "Client connections open.",
        value: |s| s.report.connections as u64,
    },
    Metric {
        name: "brook_topics",
        kind: Kind::Gauge,
        help: "Topics the broker holds (--max-topics).",
        value: |s| s.report.topics.len() as u64,
    },
    Metric {
        name: "brook_pattern_subscriptions",
        kind: Kind::Gauge,
        help: "Patterns the connections follow (SUB orders.*), alone or in a group.",
        value: |s| s.report.pattern_subscriptions as u64,
    },
    Metric {
        name: "brook_dispatcher_queue_commands",
        kind: Kind::Gauge,
        help: "Commands from the connections waiting for the dispatcher thread.",
        value: |s| s.queued_commands as u64,
    },
    Metric {
        name: "brook_memory_used_bytes",
        kind: Kind::Gauge,
        help: "Bytes the store holds in memory (the disk store's cache, or the in-memory topics).",
        value: |s| s.report.memory_used as u64,
    },
    Metric {
        name: "brook_memory_budget_bytes",
        kind: Kind::Gauge,
        help: "The store's memory budget (--cache-bytes, or --memory-bytes with --in-memory).",
        value: |s| s.report.memory_budget as u64,
    },
    Metric {
        name: "brook_publishers_waiting",
        kind: Kind::Gauge,
        help: "Publishing connections held back because the in-memory store is full.",
        value: |s| s.report.publishers_waiting as u64,
    },
    Metric {
        name: "brook_store_disk_bytes",
        kind: Kind::Gauge,
        help: "Bytes of every topic's segment files (0 with --in-memory).",
        value: |s| s.report.topics.iter().map(|t| t.disk_bytes).sum(),
    },
    Metric {
        name: "brook_publishes_refused_disk_full_total",
        kind: Kind::Counter,
        help: "Publishes refused because the disk was full.",
        value: |s| s.report.refused_disk_full,
    },
    Metric {
        name: "brook_publishes_refused_memory_full_total",
        kind: Kind::Counter,
        help:
            "Publishes refused for a full in-memory store, from connections that subscribe or pull.",
        value: |s| s.report.refused_memory_full,
    },
    Metric {
        name: "brook_dead_letters_not_stored_total",
        kind: Kind::Counter,
        help: "Tries to store a dead letter that failed: on a full disk each one's message is offered again (or, for a group with no members, its dead letter tried again), and counts at each try; past --max-topics, or when a held-back message cannot be read back, it is given up for good, and stays in its topic.",
        value: |s| s.report.dead_letters_not_stored,
    },
];

const TOPIC_METRICS: &[Metric<TopicReport>] = &[
    Metric {
        name: "brook_topic_messages_in_total",
        kind: Kind::Counter,
        help: "Messages appended to the topic.",
        value: |t| t.messages_in,
    },
    Metric {
        name: "brook_topic_bytes_in_total",
        kind: Kind::Counter,
        help: "Payload bytes appended to the topic.",
        value: |t| t.bytes_in,
    },
    Metric {
        name: "brook_topic_messages_out_total",
        kind: Kind::Counter,
        help: "Deliveries of the topic's messages (subscribers, groups and pulls), redeliveries included.",
        value: |t| t.messages_out,
    },
    Metric {
        name: "brook_topic_bytes_out_total",
        kind: Kind::Counter,
        help: "Payload bytes of those deliveries.",
        value: |t| t.bytes_out,
    },
    Metric {
        name: "brook_topic_redeliveries_total",
        kind: Kind::Counter,
        help: "Deliveries of a message delivered before (after a nack or an ack timeout).",
        value: |t| t.redeliveries,
    },
    Metric {
        name: "brook_topic_given_up_total",
        kind: Kind::Counter,
        help: "Messages given up after --max-deliveries; each goes to the topic's .dlq topic unless --dead-letter off.",
        value: |t| t.given_up,
    },
    Metric {
        name: "brook_topic_unreadable_records_total",
        kind: Kind::Counter,
        help: "Offsets found damaged on disk and skipped.",
        value: |t| t.unreadable,
    },
    Metric {
        name: "brook_topic_subscribers",
        kind: Kind::Gauge,
        help: "Connections subscribed to the topic (not counting group members).",
        value: |t| t.subscribers as u64,
    },
    Metric {
        name: "brook_topic_first_offset",
        kind: Kind::Gauge,
        help: "The oldest offset the topic's log holds.",
        value: |t| t.first,
    },
    Metric {
        name: "brook_topic_next_offset",
        kind: Kind::Gauge,
        help: "The offset the topic's next message gets.",
        value: |t| t.next,
    },
    Metric {
        name: "brook_topic_disk_bytes",
        kind: Kind::Gauge,
        help: "Bytes of the topic's segment files (0 with --in-memory).",
        value: |t| t.disk_bytes,
    },
];

const GROUP_METRICS: &[Metric<GroupReport>] = &[
    Metric {
        name: "brook_group_members",
        kind: Kind::Gauge,
        help: "Connections in the consumer group.",
        value: |g| g.members as u64,
    },
    Metric {
        name: "brook_group_lag_messages",
        kind: Kind::Gauge,
        help: "Messages of the topic the group has yet to finish: not given out, or not acked.",
        value: |g| g.lag,
    },
    Metric {
        name: "brook_group_position_offset",
        kind: Kind::Gauge,
        help: "The oldest offset the group has not finished with.",
        value: |g| g.position,
    },
    Metric {
        name: "brook_group_messages_out_total",
        kind: Kind::Counter,
        help: "Deliveries the group gave its members, redeliveries included.",
        value: |g| g.messages_out,
    },
    Metric {
        name: "brook_group_bytes_out_total",
        kind: Kind::Counter,
        help: "Payload bytes of those deliveries.",
        value: |g| g.bytes_out,
    },
    Metric {
        name: "brook_group_redeliveries_total",
        kind: Kind::Counter,
        help: "Deliveries of a message the group had given out before.",
        value: |g| g.redeliveries,
    },
    Metric {
        name: "brook_group_given_up_total",
        kind: Kind::Counter,
        help: "Messages the group gave up after --max-deliveries.",
        value: |g| g.given_up,
    },
];

/// The histogram of fsync times.
const FSYNC_SECONDS: &str = "brook_fsync_seconds";

/// The page `GET /metrics` returns.
pub(super) fn render(scrape: &Scrape, fsync_times: &FsyncTimes) -> String {
    let mut out = Exposition::default();
    for metric in BROKER_METRICS {
        out.family(metric.name, metric.kind, metric.help);
        out.sample(metric.name, &[], (metric.value)(scrape));
    }
    let topics = &scrape.report.topics;
    for metric in TOPIC_METRICS {
        out.family(metric.name, metric.kind, metric.help);
        for topic in topics {
            out.sample(
                metric.name,
                &[("topic", &topic.name)],
                (metric.value)(topic),
            );
        }
    }
    for metric in GROUP_METRICS {
        out.family(metric.name, metric.kind, metric.help);
        for topic in topics {
            for group in &topic.groups {
                let labels = [("topic", &*topic.name), ("group", &*group.name)];
                out.sample(metric.name, &labels, (metric.value)(group));
            }
        }
    }
    out.histogram(fsync_times);
    out.text
}

/// Text in the exposition format, written family by family.
#[derive(Default)]
pub(crate) struct Exposition {
    pub(crate) text: String,
}

impl Exposition {
    /// Starts a family: its `# HELP` and `# TYPE` lines.
    pub(crate) fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    /// `name{label="value",...} value`.
    pub(crate) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape_label_value(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    /// The fsync times: a bucket per bound, each counting the fsyncs that
    /// took at most that long, then `+Inf`, the sum and the count.
    fn histogram(&mut self, times: &FsyncTimes) {
        self.family(
            FSYNC_SECONDS,
            Kind::Histogram,
            "Time taken to force one log's writes to disk (each batch, each closed segment, or each append with --fsync always).",
        );
        let bucket = format!("{FSYNC_SECONDS}_bucket");
        let mut cumulative = 0;
        for (i, count) in times.buckets.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let bound = FSYNC_BUCKETS
                .get(i)
                .map_or("+Inf".to_owned(), f64::to_string);
            self.sample(&bucket, &[("le", &bound)], cumulative);
        }
        let seconds = times.nanos.load(Ordering::Relaxed) as f64 / 1e9;
        self.sample(&format!("{FSYNC_SECONDS}_sum"), &[], seconds);
        self.sample(&format!("{FSYNC_SECONDS}_count"), &[], cumulative);
    }
}

/// A label value as the format writes it: `\`, `"` and a newline escaped.
fn escape_label_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_label_value_escapes_backslash_quote_and_newline() {
        assert_eq!(escape_label_value("a\\b\"c\nd é"), "a\\\\b\\\"c\\nd é");
    }

    #[test]
    fn fsync_times_land_in_cumulative_buckets() {
        let times = FsyncTimes::default();
        times.record(Duration::from_micros(300));
        times.record(Duration::from_millis(3));
        times.record(Duration::from_secs(10));
        let mut out = Exposition::default();
        out.histogram(&times);
        let text = out.text;
        assert!(
            text.contains("brook_fsync_seconds_bucket{le=\"0.0005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("brook_fsync_seconds_bucket{le=\"0.005\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("brook_fsync_seconds_bucket{le=\"2.5\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("brook_fsync_seconds_bucket{le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("brook_fsync_seconds_sum 10.0033\n"), "{text}");
        assert!(text.contains("brook_fsync_seconds_count 3\n"), "{text}");
    }
}
