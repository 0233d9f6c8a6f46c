//! brook-bridge: mirrors between brook and a NATS JetStream cluster, for a
//! team that outgrows one brook and moves to a distributed engine a step at
//! a time (docs/SCALING.md).
//!
//! ```text
//!            --to-nats 'orders.*=ORDERS'                        (to_nats.rs)
//!  brook ── group bridge-ORDERS, manual ACK ──► bridge ── HPUB orders.eu, Nats-Msg-Id ──► JetStream
//!        ◄─ ACK once JetStream's PubAck came ──        ◄── PubAck {"seq":..} ───────────
//!
//!            --from-nats 'ORDERS=orders.*'                      (from_nats.rs)
//!  JetStream ── pull consumer, MSG.NEXT batch ──► bridge ── confirmed publish ──► brook
//!            ◄─ +ACK once brook confirmed ─────        ◄── Published <offset> ──
//! ```
//!
//! The files, bottom-up: `nats.rs` (a blocking NATS client over the text
//! protocol, with failover along the `--nats` list), `jetstream.rs` (the
//! `$JS.API` requests and a small JSON reader for their replies),
//! `brook_line.rs` (the bridge's consuming connection to brook), [`config`]
//! (the flags, and the mirrors they name), `figures.rs` (what each mirror
//! counts), `sessions.rs` (starting a mirror's session again after a
//! failure), the two directions, `to_nats.rs` and `from_nats.rs`, and
//! `metrics.rs`, which serves the figures to a monitoring system
//! (`--metrics-addr`). Each mirror runs on its own thread (one that
//! stops, at a panic or at a JetStream consumer it cannot use, ends the
//! process); each of its sessions holds one connection to each side (a
//! `--to-nats` mirror keeps its brook connection across NATS failures),
//! and any failure ends the session, after which a new one starts where
//! the acked messages end: at least once end to end, with JetStream's
//! de-duplication (and brook's group position) removing what was sent
//! twice.

pub mod brook_line;
pub mod config;
pub mod figures;
pub mod from_nats;
pub mod jetstream;
pub mod metrics;
pub mod nats;
pub mod sessions;
pub mod to_nats;

use std::net::TcpListener;
use std::panic;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

pub use config::Settings;
use figures::{Direction, MirrorFigures};

/// A mirror's thread ended: it runs for ever unless it panicked, or met
/// a failure no new session can mend (an existing JetStream consumer it
/// cannot use), and a bridge that goes on with its other mirrors would
/// leave this one's messages unmoved, unnoticed.
#[derive(Debug)]
pub struct MirrorStopped {
    pub mirror: String,
    /// The failure, or the panic's message.
    pub why: String,
}

impl std::fmt::Display for MirrorStopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the mirror {} stopped: {}. brook-bridge exits with a failure, for whatever runs it \
             to see",
            self.mirror, self.why
        )
    }
}

/// Runs every mirror of `settings`, each on its own thread, until one of
/// them stops; serves their figures on `metrics` (`--metrics-addr`, bound
/// by the caller, so that an address in use stops the start) if given.
pub fn run(settings: Settings, metrics: Option<TcpListener>) -> MirrorStopped {
    let settings = Arc::new(settings);
    let mut mirrors = Vec::new();
    let (stopped, first_stopped) = crossbeam_channel::unbounded();
    for mirror in settings.to_nats.clone() {
        let settings = settings.clone();
        let figures = MirrorFigures::new(Direction::ToNats, &mirror.stream, &mirror.pattern);
        mirrors.push(start_mirror(
            mirror.name(),
            figures,
            &stopped,
            move |figures| to_nats::run(&mirror, &settings, figures).to_string(),
        ));
    }
    for mirror in settings.from_nats.clone() {
        let settings = settings.clone();
        let figures = MirrorFigures::new(Direction::FromNats, &mirror.stream, &mirror.pattern);
        mirrors.push(start_mirror(
            mirror.name(),
            figures,
            &stopped,
            move |figures| from_nats::run(&mirror, &settings, figures).to_string(),
        ));
    }
    if let Some(every) = settings.report_every {
        let mirrors = mirrors.clone();
        spawn("--report-every".into(), stopped.clone(), move || {
            report_throughput(&mirrors, every)
        });
    }
    if let Some(listener) = metrics {
        if let Err(error) = metrics::spawn(listener, mirrors) {
            return MirrorStopped {
                mirror: "--metrics-addr".into(),
                why: format!("cannot start its thread: {error}"),
            };
        }
    }
    drop(stopped);
    first_stopped.recv().unwrap_or_else(|_| MirrorStopped {
        mirror: "every mirror".into(),
        why: "none was started".into(),
    })
}

/// Starts a mirror on a thread named `name`: `run` with its `figures`,
/// which it returns, to be read; `run` returns why the mirror ended.
fn start_mirror(
    name: String,
    figures: MirrorFigures,
    stopped: &Sender<MirrorStopped>,
    run: impl FnOnce(&Arc<MirrorFigures>) -> String + Send + 'static,
) -> Arc<MirrorFigures> {
    let figures = Arc::new(figures);
    let counted = figures.clone();
    spawn(name, stopped.clone(), move || run(&counted));
    figures
}

/// Starts `body` on a thread named `name`, which says on `stopped` when
/// it ends, and why: what `body` returns, or its panic.
fn spawn(
    name: String,
    stopped: Sender<MirrorStopped>,
    body: impl FnOnce() -> String + Send + 'static,
) {
    let thread_name = name.clone();
    thread::Builder::new()
        .name(thread_name)
        .spawn(move || {
            let why = match panic::catch_unwind(panic::AssertUnwindSafe(body)) {
                Ok(why) => why,
                Err(payload) => panic_message(payload.as_ref()),
            };
            let _ = stopped.send(MirrorStopped { mirror: name, why });
        })
        .unwrap_or_else(|error| panic!("cannot start a thread: {error}"));
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    match (
        payload.downcast_ref::<&str>(),
        payload.downcast_ref::<String>(),
    ) {
        (Some(text), _) => format!("panicked: {text}"),
        (_, Some(text)) => format!("panicked: {text}"),
        _ => "panicked".to_owned(),
    }
}

/// Logs, every `every`, forever, the messages per second the far side
/// confirmed to all `mirrors` (their `forwarded`, so a message JetStream
/// answered duplicate counts again), and how many they gave up for good.
fn report_throughput(mirrors: &[Arc<MirrorFigures>], every: Duration) -> ! {
    let moved = || -> (u64, u64) {
        let now = mirrors.iter().map(|mirror| mirror.read());
        now.fold((0, 0), |(forwarded, given_up), figures| {
            (forwarded + figures.forwarded, given_up + figures.given_up())
        })
    };
    let (mut last_count, mut last_time) = (moved().0, Instant::now());
    loop {
        thread::sleep(every);
        let ((count, given_up), now) = (moved(), Instant::now());
        let rate = (count - last_count) as f64 / (now - last_time).as_secs_f64();
        log::info!(
            "throughput: {rate:.0} msgs/s confirmed ({count} in all, duplicates included; \
             {given_up} given up for good)"
        );
        (last_count, last_time) = (count, now);
    }
}
