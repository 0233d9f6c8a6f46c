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
//! A pull that brings nothing (every 2 s while the stream is idle) is
//! followed by a look at brook's socket, so that a brook gone ends the
//! session then too, not only at the next message.
//!
//! Order. When brook fails partway through a batch, the messages it did
//! not confirm are answered -NAK, oldest first, before the session ends:
//! JetStream sends them again at once, ahead of newer ones. A message
//! brook refuses for good (too large, a name too long, a permission
//! denied) is answered +TERM, logged and counted, so it does not hold up
//! the mirror. When the NATS connection fails instead, the unacked
//! messages come back only after `--ack-wait`, after newer ones: brook may
//! then get them out of order.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use super::config::{FromNats, Settings};
use super::figures::MirrorFigures;
use super::jetstream::{self, Answer, ConsumerSettings, Tunables};
use super::nats::{Connection, Message, Servers};
use super::sessions::{self, SessionError};
use crate::client::{ClientError, Publisher};

/// How long a write to brook, or its confirmation, may take before the
/// session starts again: longer than brook's fsync of a round.
const BROOK_PATIENCE: Duration = Duration::from_secs(30);

/// How long one pull request waits for messages before JetStream ends it.
const PULL_EXPIRES: Duration = Duration::from_secs(2);

/// Runs the mirror, starting a new session after each failure, until one
/// that no new session can mend, which it returns.
pub fn run(mirror: &FromNats, settings: &Settings, figures: &MirrorFigures) -> SessionError {
    let mut servers = settings.servers();
    let mut warned_of_kept_tunables = false;
    sessions::retry_forever(&mirror.name(), figures, || {
        let ended = session(
            mirror,
            settings,
            &mut servers,
            &mut warned_of_kept_tunables,
            figures,
        );
        // What the session had pulled is not its any more: JetStream
        // sends it again.
        figures.set_in_flight(0);
        ended
    })
}

/// One connection to each side, until one fails. A consumer whose
/// tunables JetStream keeps other than the flags ask is warned of once
/// (`warned_of_kept_tunables`), not at each session: it stays so.
fn session(
    mirror: &FromNats,
    settings: &Settings,
    servers: &mut Servers,
    warned_of_kept_tunables: &mut bool,
    figures: &MirrorFigures,
) -> Result<Infallible, SessionError> {
    let mut nats = servers.connect()?;
    figures.nats_connected();
    let consumer = ConsumerSettings {
        stream: mirror.stream.clone(),
        durable: mirror.durable(),
        filter: mirror.pattern.clone(),
        ack_wait: settings.ack_wait,
        max_ack_pending: settings.batch,
        max_deliver: settings.max_deliver,
    };
    let tunables = jetstream::ensure_consumer(&mut nats, &consumer)?;
    if let (Tunables::Kept(kept), false) = (tunables, *warned_of_kept_tunables) {
        log::warn!("{kept}");
        *warned_of_kept_tunables = true;
    }
    let mut brook =
        Publisher::connect_confirmed_as(settings.brook.as_str(), settings.brook_login.as_ref())?;
    brook.set_patience(BROOK_PATIENCE)?;
    figures.brook_connected();
    log::info!(
        "consuming JetStream {} as {} into brook at {}",
        mirror.stream,
        consumer.durable,
        settings.brook
    );
    figures.session_ready();
    loop {
        let inbox = nats.new_inbox();
        jetstream::request_next(&nats, &consumer, &inbox, settings.batch, PULL_EXPIRES)?;
        let messages = pulled(&nats, &inbox, settings.batch)?;
        if messages.is_empty() {
            // Nothing to publish, so brook's socket went untouched: a
            // brook gone would go unnoticed (and the mirror shown
            // connected) until the next message.
            brook.check_open()?;
            continue;
        }
        figures.set_in_flight(messages.len());
        let outcome = publish_batch(&mut brook, &messages)
            .map_err(|error| (0, SessionError::from(error)))
            .and_then(|()| confirm_batch(&nats, &mut brook, &messages, figures));
        if let Err((first_unanswered, error)) = outcome {
            // Sent again now, oldest first, before anything newer: brook
            // gets them in order when the next session starts.
            for message in &messages[first_unanswered..] {
                jetstream::answer(&nats, message, Answer::Nak)?;
                figures.nak();
            }
            nats.flush()?;
            return Err(error);
        }
        figures.set_in_flight(0);
        nats.flush()?;
    }
}

/// Publishes each of `messages` to brook, topic = its subject.
fn publish_batch(brook: &mut Publisher, messages: &[Message]) -> Result<(), ClientError> {
    for message in messages {
        brook.publish(&message.subject, &message.payload)?;
    }
    brook.flush()
}

/// Reads brook's answer to each of `messages`, in order, and answers
/// JetStream: +ACK once brook stored it, +TERM once brook refused it for
/// good (logged and counted: sent again, it would only be refused again,
/// and hold up every message after it). At any other failure, the index
/// of the first message not answered, and the error.
fn confirm_batch(
    nats: &Connection,
    brook: &mut Publisher,
    messages: &[Message],
    figures: &MirrorFigures,
) -> Result<(), (usize, SessionError)> {
    for (at, message) in messages.iter().enumerate() {
        let answer = match brook.confirmation() {
            Ok(_) => {
                figures.forwarded(false);
                Answer::Ack
            }
            Err(ClientError::Refused(reason)) if refused_for_good(&reason) => {
                log::error!(
                    "brook refused a message of {} (stream sequence {:?}) for good: {reason}; \
                     not mirrored, and JetStream will not send it again",
                    message.subject,
                    jetstream::stream_sequence(message)
                );
                figures.term();
                Answer::Term
            }
            Err(error) => return Err((at, error.into())),
        };
        jetstream::answer(nats, message, answer).map_err(|error| (at + 1, error.into()))?;
    }
    Ok(())
}

/// Whether brook's refusal of a publish would be the same however often
/// it is sent (a payload over `--max-message-bytes`, a name too long, a
/// permission denied), rather than one that lasts a while (a full disk,
/// no file descriptor or topic left, a topic that cannot be created now:
/// docs/PROTOCOL.md, section 5), after which the bridge tries again.
fn refused_for_good(reason: &str) -> bool {
    const FOR_A_WHILE: [&str; 4] = [
        "disk full",
        "out of file descriptors",
        "too many topics",
        "topic not available",
    ];
    !FOR_A_WHILE.iter().any(|prefix| reason.starts_with(prefix))
}

/// The messages one pull request brings: up to `batch`, until JetStream
/// ends the request with a status: 408, it expired, or 404, nothing there
/// (both normal ends); 409, it refused the request (the consumer was
/// deleted, or has too many messages out): the session ends. So does a
/// request that brings nothing and is not ended.
fn pulled(nats: &Connection, inbox: &str, batch: usize) -> Result<Vec<Message>, SessionError> {
    // A little longer than the request's own expiry: its 408 ends it.
    let deadline = Instant::now() + PULL_EXPIRES + Duration::from_secs(1);
    let mut messages = Vec::new();
    while messages.len() < batch {
        match nats.next_event(deadline)? {
            // A request JetStream neither filled nor ended: the
            // connection is half open, or the server lost the request.
            None if messages.is_empty() => return Err(SessionError::PullUnanswered(PULL_EXPIRES)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_that_last_are_told_from_those_that_pass() {
        for lasting in [
            "message too large",
            "topic name too long",
            "permission denied: publish pay.eu",
        ] {
            assert!(refused_for_good(lasting), "{lasting}");
        }
        for passing in [
            "disk full: cannot write x (No space left); free space on that disk",
            "out of file descriptors: cannot open x",
            "too many topics: the broker holds --max-topics 10",
            "topic not available",
        ] {
            assert!(!refused_for_good(passing), "{passing}");
        }
    }
}
