//! `--metrics-addr`: the mirrors' figures over HTTP, in the Prometheus text
//! format, for a monitoring system to scrape, as brook serves its own.
//!
//! ```text
//!  scraper ──GET /metrics──► metrics thread ──reads──► MirrorFigures of each mirror (figures.rs)
//! ```
//!
//! The thread, its HTTP and the page's format are brook's own
//! (`metrics/http.rs`, `metrics/exposition.rs`); this file says which
//! figures the page holds. Each sample names its mirror with three labels,
//! `direction` (`to-nats` or `from-nats`), `stream` and `pattern`, rather
//! than one label with the flag's text: a query can then pick or add up
//! the mirrors of one stream or one direction without taking a label
//! apart (the two flags write stream and pattern in opposite orders).
//! Reading the figures takes no lock and waits for no mirror, so a scrape
//! is answered at once, whatever the mirrors are doing.

use std::io;
use std::net::TcpListener;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;

use super::figures::{Direction, FiguresNow, MirrorFigures};
use crate::metrics::exposition::{Exposition, Kind, Metric};
use crate::metrics::http;

pub use crate::metrics::bind;

/// Starts the `metrics` thread on `listener`, serving the figures of
/// `mirrors` until the process ends.
pub fn spawn(
    listener: TcpListener,
    mirrors: Vec<Arc<MirrorFigures>>,
) -> io::Result<JoinHandle<()>> {
    // The bridge runs until it exits: nothing stops the thread before.
    let never = Arc::new(AtomicBool::new(false));
    http::spawn(listener, never, move |request| {
        http::respond(request, || Ok(render(&mirrors)))
    })
}

/// The figures of every mirror.
const EVERY_MIRROR: &[Metric<FiguresNow>] = &[
    Metric {
        name: "brook_bridge_forwarded_total",
        kind: Kind::Counter,
        help: "Messages the far side confirmed: JetStream's PubAck (--to-nats, duplicates included), or brook's publish confirmation (--from-nats).",
        value: |f| f.forwarded,
    },
    Metric {
        name: "brook_bridge_in_flight_messages",
        kind: Kind::Gauge,
        help: "Messages not answered yet: brook deliveries the mirror has not answered (--to-nats, at most --batch: publishes waiting for their PubAck, and deliveries waiting behind one), or the pulled batch brook has yet to confirm (--from-nats).",
        value: |f| f.in_flight,
    },
    Metric {
        name: "brook_bridge_connected",
        kind: Kind::Gauge,
        help: "1 while a session runs, connected to NATS and to brook; 0 from a failure until the next session is ready (an idle --from-nats mirror looks at its brook connection every 2 s).",
        value: |f| f.connected as u64,
    },
    Metric {
        name: "brook_bridge_nats_connections_total",
        kind: Kind::Counter,
        help: "Connections made to a NATS server, one per session attempt that reached NATS: each after the first follows a failure on either side (while brook is down, every attempt connects to NATS before it fails at brook).",
        value: |f| f.nats_connections,
    },
    Metric {
        name: "brook_bridge_brook_connections_total",
        kind: Kind::Counter,
        help: "Connections made to brook: --to-nats keeps one across NATS sessions, --from-nats makes one per session.",
        value: |f| f.brook_connections,
    },
    Metric {
        name: "brook_bridge_session_failures_total",
        kind: Kind::Counter,
        help: "Session attempts that failed: a session that ended, or one that could not start (each logged as a warning). While a side is down the bridge tries again every 2 s at most, so an outage adds about 30 a minute.",
        value: |f| f.session_failures,
    },
    Metric {
        name: "brook_bridge_last_failure_timestamp_seconds",
        kind: Kind::Gauge,
        help: "When the last session failed, in seconds since 1970 (0: none has).",
        value: |f| f.last_failure,
    },
];

/// The figures of `--to-nats` mirrors only.
const TO_NATS: &[Metric<FiguresNow>] = &[
    Metric {
        name: "brook_bridge_duplicates_total",
        kind: Kind::Counter,
        help: "PubAcks that said JetStream had the message already (sent again after a restart or a failover): not stored twice.",
        value: |f| f.duplicates,
    },
    Metric {
        name: "brook_bridge_unmirrorable_total",
        kind: Kind::Counter,
        help: "brook messages NATS cannot take: a topic that is no NATS subject (acked), or a message over max_payload (answered NACK, towards brook's .dlq topic).",
        value: |f| f.unmirrorable,
    },
];

/// The figures of `--from-nats` mirrors only.
const FROM_NATS: &[Metric<FiguresNow>] = &[
    Metric {
        name: "brook_bridge_naks_total",
        kind: Kind::Counter,
        help: "Messages answered -NAK because brook failed partway through a batch: JetStream sends them again at once.",
        value: |f| f.naks,
    },
    Metric {
        name: "brook_bridge_terms_total",
        kind: Kind::Counter,
        help: "Messages answered +TERM because brook refused them for good: JetStream does not send them again.",
        value: |f| f.terms,
    },
];

/// The page `GET /metrics` returns: one reading of each mirror's figures.
pub fn render(mirrors: &[Arc<MirrorFigures>]) -> String {
    let now: Vec<(&MirrorFigures, FiguresNow)> = mirrors
        .iter()
        .map(|mirror| (&**mirror, mirror.read()))
        .collect();
    let mut out = Exposition::default();
    for (metrics, only) in [
        (EVERY_MIRROR, None),
        (TO_NATS, Some(Direction::ToNats)),
        (FROM_NATS, Some(Direction::FromNats)),
    ] {
        let shown: Vec<_> = now
            .iter()
            .filter(|(mirror, _)| only.is_none_or(|only| mirror.direction == only))
            .collect();
        if shown.is_empty() {
            continue; // no mirror of that direction: its figures mean nothing
        }
        for metric in metrics {
            out.family(metric.name, metric.kind, metric.help);
            for (mirror, figures) in &shown {
                let labels = [
                    ("direction", mirror.direction.label()),
                    ("stream", &mirror.stream),
                    ("pattern", &mirror.pattern),
                ];
                out.sample(metric.name, &labels, (metric.value)(figures));
            }
        }
    }
    out.text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mirror_has_its_labels_and_only_its_directions_figures() {
        let to = Arc::new(MirrorFigures::new(Direction::ToNats, "ORDERS", "orders.*"));
        let from = Arc::new(MirrorFigures::new(Direction::FromNats, "PAY", "pay.\"x\""));
        to.forwarded(true);
        to.session_ready();
        from.term();
        let page = render(&[to, from]);
        let to_labels = r#"{direction="to-nats",stream="ORDERS",pattern="orders.*"}"#;
        let from_labels = r#"{direction="from-nats",stream="PAY",pattern="pay.\"x\""}"#;
        for sample in [
            format!("brook_bridge_forwarded_total{to_labels} 1\n"),
            format!("brook_bridge_duplicates_total{to_labels} 1\n"),
            format!("brook_bridge_connected{to_labels} 1\n"),
            format!("brook_bridge_connected{from_labels} 0\n"),
            format!("brook_bridge_terms_total{from_labels} 1\n"),
            "# TYPE brook_bridge_forwarded_total counter\n".to_owned(),
        ] {
            assert!(page.contains(&sample), "{sample} in:\n{page}");
        }
        assert!(!page.contains(&format!("brook_bridge_duplicates_total{from_labels}")));
        assert!(!page.contains(&format!("brook_bridge_naks_total{to_labels}")));
        let to_only = render(&[Arc::new(MirrorFigures::new(Direction::ToNats, "S", "s"))]);
        assert!(!to_only.contains("brook_bridge_naks_total"), "{to_only}");
    }
}
