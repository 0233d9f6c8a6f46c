//! `--from-nats STREAM=PATTERN`: a JetStream stream's messages into brook,
//! for subscribers that stay on brook while producers move to NATS.
//!
//! ```text
//!  JetStream ── MSG.NEXT {"batch":N} ──► up to N messages to the bridge's inbox
//!      ▲                                          │ publish each to brook, topic = its subject
//!      │ ack each (an empty message to its        ▼
//!      └── reply subject) once brook confirmed ◄── Published <offset>, in order
//! ```
//!
//! The consumer is durable (`brook-bridge-<pattern>`), with explicit acks:
//! a message brook has not confirmed is not acked, and JetStream sends it
//! again after `--ack-wait`, to this bridge or to the next one started.
//! So brook gets every message at least once; one that came twice (the
//! bridge died between brook's confirmation and its ack) is stored twice.

use std::time::{Duration, Instant};

use super::config::{FromNats, Settings};
use super::jetstream::{self, ConsumerSettings};
use super::nats::{Message, Servers};
use super::sessions::{self, Meter, SessionError};
use crate::client::Publisher;

/// How long one pull request waits for messages before JetStream ends it.
const PULL_EXPIRES: Duration = Duration::from_secs(2);

/// Runs the mirror until the process ends, starting a new session after
/// each failure.
pub fn run(mirror: &FromNats, settings: &Settings, meter: &Meter) {
    let mut servers = settings.servers();
    sessions::retry_forever(&format!("--from-nats {}", mirror.stream), || {
        session(mirror, settings, &mut servers, meter)
    });
}

fn session(
    mirror: &FromNats,
    settings: &Settings,
    servers: &mut Servers,
    meter: &Meter,
) -> Result<(), SessionError> {
    let mut nats = servers.connect()?;
    let consumer = ConsumerSettings {
        stream: mirror.stream.clone(),
        durable: mirror.durable(),
        filter: mirror.pattern.clone(),
        ack_wait: settings.ack_wait,
        max_ack_pending: settings.batch,
    };
    jetstream::ensure_consumer(&mut nats, &consumer)?;
    let mut brook =
        Publisher::connect_confirmed_as(settings.brook.as_str(), settings.brook_login.as_ref())?;
    log::info!(
        "consuming JetStream {} as {} into brook at {}",
        mirror.stream,
        consumer.durable,
        settings.brook
    );
    loop {
        let inbox = nats.new_inbox();
        jetstream::request_next(&nats, &consumer, &inbox, settings.batch, PULL_EXPIRES)?;
        let messages = pulled(&nats, &inbox, settings.batch)?;
        for message in &messages {
            brook.publish(&message.subject, &message.payload)?;
        }
        for message in &messages {
            brook.confirmation()?;
            jetstream::ack(&nats, message)?;
        }
        nats.flush()?;
        meter.add(messages.len() as u64);
    }
}

/// The messages one pull request brings: up to `batch`, until JetStream
/// ends the request with a status: 408, it expired, or 404, nothing there
/// (both normal ends); 409, it refused the request (the consumer was
/// deleted, or has too many messages out): the session ends.
fn pulled(
    nats: &super::nats::Connection,
    inbox: &str,
    batch: usize,
) -> Result<Vec<Message>, SessionError> {
    // A little longer than the request's own expiry: its 408 ends it.
    let deadline = Instant::now() + PULL_EXPIRES + Duration::from_secs(1);
    let mut messages = Vec::new();
    while messages.len() < batch {
        match nats.next_event(deadline)? {
            None => break,
            Some(message) if message.status == Some(409) => {
                return Err(SessionError::PullRefused(
                    message.header("Description").unwrap_or("409").to_owned(),
                ))
            }
            Some(message) if message.status.is_some() => {
                if message.subject == inbox {
                    break;
                }
            }
            Some(message) => messages.push(message),
        }
    }
    Ok(messages)
}
