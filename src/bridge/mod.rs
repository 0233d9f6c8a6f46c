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
//! (the flags, and the mirrors they name), `sessions.rs` (starting a
//! mirror's session again after a failure, and counting what moved), and
//! the two directions, `to_nats.rs` and `from_nats.rs`. Each mirror runs on its own thread; each of its sessions holds
//! one connection to each side, and any failure ends the session, after
//! which a new one starts where the acked messages end: at least once end
//! to end, with JetStream's de-duplication (and brook's group position)
//! removing what was sent twice.

pub mod brook_line;
pub mod config;
pub mod from_nats;
pub mod jetstream;
pub mod nats;
pub mod sessions;
pub mod to_nats;

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

pub use config::Settings;
use sessions::Meter;

/// Runs every mirror of `settings`, each on its own thread, until the
/// process ends.
pub fn run(settings: Settings) {
    let settings = Arc::new(settings);
    let meter = Arc::new(Meter::default());
    let mut threads = Vec::new();
    for mirror in settings.to_nats.clone() {
        let (settings, meter) = (settings.clone(), meter.clone());
        threads.push(spawn(&format!("to-nats {}", mirror.stream), move || {
            to_nats::run(&mirror, &settings, &meter)
        }));
    }
    for mirror in settings.from_nats.clone() {
        let (settings, meter) = (settings.clone(), meter.clone());
        threads.push(spawn(&format!("from-nats {}", mirror.stream), move || {
            from_nats::run(&mirror, &settings, &meter)
        }));
    }
    if let Some(every) = settings.report_every {
        report_throughput(&meter, every);
    }
    for thread in threads {
        let _ = thread.join();
    }
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> thread::JoinHandle<()> {
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(body)
        .unwrap_or_else(|error| panic!("cannot start the thread {name}: {error}"))
}

/// Logs the messages moved per second, every `every`, forever.
fn report_throughput(meter: &Meter, every: Duration) {
    let (mut last_count, mut last_time) = (meter.moved(), Instant::now());
    loop {
        thread::sleep(every);
        let (count, now) = (meter.moved(), Instant::now());
        let rate = (count - last_count) as f64 / (now - last_time).as_secs_f64();
        log::info!(
            "throughput: {rate:.0} msgs/s ({count} moved in all, {} refused for good)",
            meter.given_up()
        );
        (last_count, last_time) = (count, now);
    }
}
