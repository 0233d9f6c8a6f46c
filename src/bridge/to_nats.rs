//! `--to-nats PATTERN=STREAM`: brook's messages into a JetStream stream.
//!
//! ```text
//!  brook ── group bridge-<STREAM>, manual acks ──► GroupFeed ──► Delivery
//!    ▲                                                               │
//!    │ ACK, in delivery order, once its PubAck came                  ▼ HPUB <topic>
//!    └────────────── window of at most --batch in flight ◄── PubAck ── JetStream
//! ```
//!
//! Each message goes to JetStream under its brook topic as the subject,
//! with `Nats-Msg-Id: <topic>:<incarnation>:<offset>`, so a message sent
//! twice (after a restart of the bridge, or a redelivery by brook) is
//! stored once, while a new message that has an old one's offset (brook
//! started again in memory, or on a new data directory, under a new
//! incarnation) is not taken for it. Up to
//! `--batch` publishes wait for their PubAck at once; brook's acks answer
//! its deliveries in order, so a delivery is acked once it and every one
//! before it are acknowledged by JetStream.
//!
//! A brook message whose topic is no NATS subject (it has a space, or an
//! empty token), or whose payload is over the server's `max_payload`,
//! cannot be mirrored: it is logged as an error and acked.
//!
//! Order. In a cluster whose stream leader dies, a publish can be lost
//! while the next one, sent after a new leader is elected, is stored. So
//! each new message also carries `Nats-Expected-Last-Msg-Id`, the id of the
//! message sent before it: JetStream refuses it unless that one is the
//! stream's last. A refusal, a lost connection or a PubAck that does not
//! come ends the session: the bridge reconnects both sides and brook
//! delivers again everything not acked, oldest first. The first message of
//! a session carries no expectation: everything before it was acked.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crossbeam_channel::select;

use super::brook_line::{BrookError, Delivery, GroupFeed};
use super::config::{is_subject, Settings, ToNats};
use super::jetstream::{self, PubAck, StreamSettings};
use super::nats::{self, Connection, NatsError, Servers};
use super::sessions::{self, Meter, SessionError};

/// How long the oldest publish may wait for its PubAck before the session
/// is started again: longer than a cluster takes to elect a new leader.
const PUBACK_PATIENCE: Duration = Duration::from_secs(10);

/// Runs the mirror until the process ends, starting a new session after
/// each failure.
pub fn run(mirror: &ToNats, settings: &Settings, meter: &Meter) {
    let mut servers = settings.servers();
    sessions::retry_forever(&format!("--to-nats {}", mirror.pattern), || {
        session(mirror, settings, &mut servers, meter)
    });
}

/// A publish waiting for its PubAck.
#[derive(Debug)]
struct InFlight {
    inbox: String,
    sent: Instant,
    acked: bool,
}

/// One connection to each side, until either fails.
fn session(
    mirror: &ToNats,
    settings: &Settings,
    servers: &mut Servers,
    meter: &Meter,
) -> Result<(), SessionError> {
    let mut nats = servers.connect()?;
    jetstream::ensure_stream(
        &mut nats,
        &StreamSettings {
            name: mirror.stream.clone(),
            subjects: vec![mirror.pattern.clone()],
            replicas: settings.replicas,
            duplicate_window: settings.duplicate_window,
        },
    )?;
    let mut brook = GroupFeed::join(
        &settings.brook,
        settings.brook_login.as_ref(),
        &mirror.pattern,
        &mirror.group(),
        settings.batch,
    )?;
    let mut window = Window::new(brook.incarnation());
    loop {
        let has_room = window.in_flight.len() < settings.batch;
        let deliveries = if has_room {
            brook.deliveries().clone()
        } else {
            crossbeam_channel::never()
        };
        let patience = window.patience_left();
        select! {
            recv(deliveries) -> delivery => {
                let delivery = delivery.map_err(|_| BrookError::Closed)??;
                window.publish(&mut nats, &delivery)?;
                while window.in_flight.len() < settings.batch {
                    match brook.deliveries().try_recv() {
                        Ok(delivery) => window.publish(&mut nats, &delivery?)?,
                        Err(_) => break,
                    }
                }
                nats.flush()?;
            }
            recv(nats.events()) -> event => {
                let message = match event.map_err(|_| NatsError::Closed)? {
                    super::nats::Event::Message(message) => message,
                    super::nats::Event::Lost(error) => return Err(error.into()),
                };
                window.answered(&message.subject, PubAck::parse(&message)?);
            }
            default(patience) => {
                if !window.in_flight.is_empty() {
                    return Err(SessionError::PubAckOverdue(PUBACK_PATIENCE));
                }
            }
        }
        let done = window.take_done();
        if done > 0 {
            for _ in 0..done {
                brook.ack()?;
            }
            brook.flush()?;
            meter.add(done as u64);
        }
    }
}

/// Why `delivery` cannot go to NATS, if it cannot: a topic no NATS subject
/// can name, or a payload larger than the server takes (publishing it
/// would close the connection, and brook would deliver it again, for
/// ever).
fn unmirrorable(
    nats: &Connection,
    delivery: &Delivery,
    headers: &[(&str, &str)],
) -> Option<String> {
    if !is_subject(&delivery.topic) || delivery.topic.starts_with('"') {
        return Some("the topic is not a NATS subject".into());
    }
    let size = nats::message_size(headers, &delivery.payload);
    if size > nats.max_payload() {
        return Some(format!(
            "{size} bytes with its headers, more than the NATS server's max_payload of {}",
            nats.max_payload()
        ));
    }
    None
}

/// The `Nats-Msg-Id` of a brook message: unique across brook's restarts,
/// and the same each time brook delivers the message.
pub fn message_id(topic: &str, incarnation: &str, offset: u64) -> String {
    format!("{topic}:{incarnation}:{offset}")
}

/// The publishes of a session waiting for their PubAck, oldest first, and
/// what the next publish must carry.
#[derive(Debug, Default)]
struct Window {
    /// The brook store's incarnation, in every message id.
    incarnation: String,
    in_flight: VecDeque<InFlight>,
    /// The id of the last new message published: the next one expects it.
    last_id: Option<String>,
    /// Per topic, the highest offset published this session: a delivery at
    /// or below it is brook sending a message again.
    highest: HashMap<String, u64>,
}

impl Window {
    fn new(incarnation: &str) -> Window {
        Window {
            incarnation: incarnation.to_owned(),
            ..Window::default()
        }
    }

    fn publish(&mut self, nats: &mut Connection, delivery: &Delivery) -> Result<(), NatsError> {
        let id = message_id(&delivery.topic, &self.incarnation, delivery.offset);
        let is_new = self
            .highest
            .get(&delivery.topic)
            .is_none_or(|&highest| delivery.offset > highest);
        let mut headers = vec![("Nats-Msg-Id", id.as_str())];
        if let (true, Some(last)) = (is_new, &self.last_id) {
            headers.push(("Nats-Expected-Last-Msg-Id", last.as_str()));
        }
        if let Some(reason) = unmirrorable(nats, delivery, &headers) {
            log::error!(
                "brook topic {} offset {}: {reason}: not mirrored",
                delivery.topic,
                delivery.offset
            );
            self.in_flight.push_back(InFlight {
                inbox: String::new(),
                sent: Instant::now(),
                acked: true,
            });
            return Ok(());
        }
        let inbox = nats.new_inbox();
        nats.publish_with_headers(&delivery.topic, Some(&inbox), &headers, &delivery.payload)?;
        if is_new {
            self.highest.insert(delivery.topic.clone(), delivery.offset);
            self.last_id = Some(id);
        }
        self.in_flight.push_back(InFlight {
            inbox,
            sent: Instant::now(),
            acked: false,
        });
        Ok(())
    }

    /// Marks the publish whose reply went to `inbox` as stored.
    fn answered(&mut self, inbox: &str, ack: PubAck) {
        match self.in_flight.iter_mut().find(|f| f.inbox == inbox) {
            Some(in_flight) => in_flight.acked = true,
            None => log::debug!("a PubAck for no publish of this session: {ack:?}"),
        }
    }

    /// Removes the acked publishes at the front; how many.
    fn take_done(&mut self) -> usize {
        let mut done = 0;
        while self.in_flight.front().is_some_and(|f| f.acked) {
            self.in_flight.pop_front();
            done += 1;
        }
        done
    }

    /// How much longer the oldest publish may wait for its PubAck (with
    /// none in flight, a full [`PUBACK_PATIENCE`]: then the wait is only a
    /// heartbeat of the loop).
    fn patience_left(&self) -> Duration {
        match self.in_flight.front() {
            Some(oldest) => PUBACK_PATIENCE.saturating_sub(oldest.sent.elapsed()),
            None => PUBACK_PATIENCE,
        }
    }
}
