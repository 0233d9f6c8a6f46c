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
//! empty token) cannot be mirrored: it is logged as an error and acked.
//! One whose payload is over the server's `max_payload` is logged and
//! answered NACK, so that brook gives it up to `<topic>.dlq` after
//! `--max-deliveries` (unless it is a dead letter already).
//!
//! Order. In a cluster whose stream leader dies, a publish can be lost
//! while the next one, sent after a new leader is elected, is stored. So
//! each new message also carries `Nats-Expected-Last-Msg-Id`, the id of the
//! message sent before it: JetStream refuses it unless that one is the
//! stream's last. A refusal, a lost connection or a PubAck that does not
//! come ends the NATS session. The brook connection and the window stay
//! (brook would count each delivery handed back towards its
//! `--max-deliveries`): the next session publishes again, oldest first and
//! under their same ids, the window's messages without a PubAck, then
//! takes new deliveries. Its first message carries no expectation: the
//! stream's last message is not known then. Only a failure on brook's side
//! drops its connection, and brook then delivers again everything not
//! acked.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::select;

use super::brook_line::{Answer, BrookError, Delivery, GroupFeed};
use super::config::{is_subject, Settings, ToNats};
use super::figures::MirrorFigures;
use super::jetstream::{self, PubAck, StreamSettings};
use super::nats::{self, Connection, NatsError, Servers};
use super::sessions::{self, SessionError};
use crate::ids::DEAD_LETTER_SUFFIX;

/// How long the oldest publish may wait for its PubAck before the session
/// is started again: longer than a cluster takes to elect a new leader.
const PUBACK_PATIENCE: Duration = Duration::from_secs(10);

/// Runs the mirror, starting a new session after each failure, until one
/// that no new session can mend, which it returns. brook's side outlives
/// the NATS sessions: only a failure of brook's connection drops it.
pub fn run(mirror: &ToNats, settings: &Settings, figures: &Arc<MirrorFigures>) -> SessionError {
    let mut servers = settings.servers();
    let mut kept = None;
    sessions::retry_forever(&mirror.name(), figures, || {
        let result = session(mirror, settings, &mut servers, &mut kept, figures);
        if let Err(SessionError::BrookFeed(_)) = result {
            kept = None;
        }
        result
    })
}

/// brook's side of the mirror: the group member, and its deliveries not
/// yet answered. Kept from one NATS session to the next, so that a NATS
/// failover hands nothing back to brook's group, where each delivery
/// handed back would count towards brook's `--max-deliveries`.
struct Feed {
    brook: GroupFeed,
    window: Window,
}

impl Feed {
    fn join(
        mirror: &ToNats,
        settings: &Settings,
        figures: &Arc<MirrorFigures>,
    ) -> Result<Feed, BrookError> {
        let brook = GroupFeed::join(
            &settings.brook,
            settings.brook_login.as_ref(),
            &mirror.pattern,
            &mirror.group(),
            settings.batch,
        )?;
        figures.brook_connected();
        let window = Window::new(brook.incarnation(), figures.clone());
        Ok(Feed { brook, window })
    }
}

/// A publish waiting for its PubAck.
#[derive(Debug)]
struct InFlight {
    /// What brook delivered, kept to publish it again in the next session
    /// if this one ends before its PubAck.
    delivery: Delivery,
    /// The message's `Nats-Msg-Id`.
    id: String,
    inbox: String,
    sent: Instant,
    acked: bool,
    /// Done, but answered NACK: too large for NATS (see [`unmirrorable`]).
    refused: bool,
}

/// One connection to NATS, until it or brook's fails; brook's is joined
/// if `kept` has none.
fn session(
    mirror: &ToNats,
    settings: &Settings,
    servers: &mut Servers,
    kept: &mut Option<Feed>,
    figures: &Arc<MirrorFigures>,
) -> Result<Infallible, SessionError> {
    let mut nats = servers.connect()?;
    figures.nats_connected();
    jetstream::ensure_stream(
        &mut nats,
        &StreamSettings {
            name: mirror.stream.clone(),
            subjects: vec![mirror.pattern.clone()],
            replicas: settings.replicas,
            duplicate_window: settings.duplicate_window,
        },
    )?;
    let Feed { brook, window } = match kept {
        Some(feed) => feed,
        None => kept.insert(Feed::join(mirror, settings, figures)?),
    };
    window.resend(&mut nats)?;
    nats.flush()?;
    figures.session_ready();
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
                window.publish(&mut nats, delivery)?;
                while window.in_flight.len() < settings.batch {
                    match brook.deliveries().try_recv() {
                        Ok(delivery) => window.publish(&mut nats, delivery?)?,
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
        if !done.is_empty() {
            for &answer in &done {
                brook.answer(answer)?;
            }
            brook.flush()?;
        }
    }
}

/// Why a delivery cannot go to NATS.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Unmirrorable {
    /// Its topic is no NATS subject: a name with a space, or an empty
    /// token. Logged and acked: no NATS subject will ever name it.
    NotASubject,
    /// With its headers, it is larger than the server's `max_payload`
    /// (publishing it would close the connection): answered NACK, so that
    /// brook gives it up to `<topic>.dlq`, where it can be found.
    TooLarge { size: usize, max_payload: usize },
}

impl Unmirrorable {
    /// Whether brook should get it back with a NACK (and dead-letter it):
    /// a message too large, unless it is already a dead letter, which
    /// would only go round again into `<topic>.dlq.dlq`.
    fn dead_letter(&self, topic: &str) -> bool {
        matches!(self, Unmirrorable::TooLarge { .. }) && !topic.ends_with(DEAD_LETTER_SUFFIX)
    }
}

impl std::fmt::Display for Unmirrorable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unmirrorable::NotASubject => write!(f, "the topic is not a NATS subject"),
            Unmirrorable::TooLarge { size, max_payload } => write!(
                f,
                "{size} bytes with its headers, more than the NATS server's max_payload of {max_payload}"
            ),
        }
    }
}

/// Why `delivery` cannot go to NATS, if it cannot.
fn unmirrorable(
    max_payload: usize,
    delivery: &Delivery,
    headers: &[(&str, &str)],
) -> Option<Unmirrorable> {
    if !is_subject(&delivery.topic) {
        return Some(Unmirrorable::NotASubject);
    }
    let size = nats::message_size(headers, &delivery.payload);
    (size > max_payload).then_some(Unmirrorable::TooLarge { size, max_payload })
}

/// The `Nats-Msg-Id` of a brook message: unique across brook's restarts,
/// and the same each time brook delivers the message.
pub fn message_id(topic: &str, incarnation: &str, offset: u64) -> String {
    format!("{topic}:{incarnation}:{offset}")
}

/// Where the [`Window`] publishes: the NATS connection, or a test's
/// recorder, so that the window's bookkeeping is tested on its own.
trait Sink {
    fn max_payload(&self) -> usize;
    fn new_inbox(&mut self) -> String;
    fn publish(
        &mut self,
        subject: &str,
        inbox: &str,
        headers: &[(&str, &str)],
        payload: &[u8],
    ) -> Result<(), NatsError>;
}

impl Sink for Connection {
    fn max_payload(&self) -> usize {
        Connection::max_payload(self)
    }

    fn new_inbox(&mut self) -> String {
        Connection::new_inbox(self)
    }

    fn publish(
        &mut self,
        subject: &str,
        inbox: &str,
        headers: &[(&str, &str)],
        payload: &[u8],
    ) -> Result<(), NatsError> {
        self.publish_with_headers(subject, Some(inbox), headers, payload)
    }
}

/// The publishes of a session waiting for their PubAck, oldest first (one
/// entry per brook delivery, since brook's acks answer its deliveries in
/// order), and what the next publish must carry. It counts what it sees
/// in the mirror's figures.
#[derive(Debug)]
struct Window {
    /// The brook store's incarnation, in every message id.
    incarnation: String,
    in_flight: VecDeque<InFlight>,
    /// The id of the last new message published: the next one expects it.
    last_id: Option<String>,
    /// Per topic, the highest offset published this session: a delivery at
    /// or below it is brook sending a message again.
    highest: HashMap<String, u64>,
    /// Whether brook was seen sending a message again while its publish
    /// waited for its PubAck (warned once a session).
    warned_early_redelivery: bool,
    figures: Arc<MirrorFigures>,
}

impl Window {
    fn new(incarnation: &str, figures: Arc<MirrorFigures>) -> Window {
        figures.set_in_flight(0);
        Window {
            incarnation: incarnation.to_owned(),
            in_flight: VecDeque::new(),
            last_id: None,
            highest: HashMap::new(),
            warned_early_redelivery: false,
            figures,
        }
    }

    /// Publishes `delivery`, or, if brook sends again a message whose
    /// publish is still in flight, adds an entry that completes with that
    /// publish's PubAck: publishing it again, after a publish that may be
    /// lost, could store it out of order.
    ///
    /// A publish that fails is kept in flight all the same, to be sent
    /// again by [`Window::resend`] in the next session.
    fn publish(&mut self, sink: &mut impl Sink, delivery: Delivery) -> Result<(), NatsError> {
        let id = message_id(&delivery.topic, &self.incarnation, delivery.offset);
        let is_new = self
            .highest
            .get(&delivery.topic)
            .is_none_or(|&highest| delivery.offset > highest);
        if !is_new {
            if let Some(original) = self.in_flight.iter().find(|f| f.id == id) {
                let follower = InFlight {
                    delivery,
                    id: original.id.clone(),
                    inbox: original.inbox.clone(),
                    sent: original.sent,
                    acked: original.acked,
                    refused: original.refused,
                };
                self.warn_early_redelivery(&follower.delivery);
                self.in_flight.push_back(follower);
                return Ok(());
            }
        }
        let mut headers = vec![("Nats-Msg-Id", id.as_str())];
        if let (true, Some(last)) = (is_new, &self.last_id) {
            headers.push(("Nats-Expected-Last-Msg-Id", last.as_str()));
        }
        if let Some(unmirrorable) = unmirrorable(sink.max_payload(), &delivery, &headers) {
            let refused = unmirrorable.dead_letter(&delivery.topic);
            log::error!(
                "brook topic {} offset {}: {unmirrorable}: not mirrored{}",
                delivery.topic,
                delivery.offset,
                match refused {
                    true => "; answered NACK, so that brook gives it up to its .dlq topic",
                    false => "",
                }
            );
            self.figures.unmirrorable();
            self.in_flight.push_back(InFlight {
                delivery,
                id,
                inbox: String::new(),
                sent: Instant::now(),
                acked: true,
                refused,
            });
            return Ok(());
        }
        let inbox = sink.new_inbox();
        let published = sink.publish(&delivery.topic, &inbox, &headers, &delivery.payload);
        if is_new && published.is_ok() {
            self.highest.insert(delivery.topic.clone(), delivery.offset);
            self.last_id = Some(id.clone());
        }
        self.in_flight.push_back(InFlight {
            delivery,
            id,
            inbox,
            sent: Instant::now(),
            acked: false,
            refused: false,
        });
        published
    }

    /// Starts a new session: publishes again, oldest first, every entry
    /// the last session left without its PubAck, under its same
    /// `Nats-Msg-Id`, so that JetStream stores once what it had stored.
    /// The stream's last message is not known: the first sent again
    /// expects none, each next one the one before.
    fn resend(&mut self, sink: &mut impl Sink) -> Result<(), NatsError> {
        let mut carried = std::mem::take(&mut self.in_flight);
        self.last_id = None;
        self.highest.clear();
        self.warned_early_redelivery = false;
        while let Some(entry) = carried.pop_front() {
            if entry.acked {
                self.in_flight.push_back(entry);
            } else if let Err(error) = self.publish(sink, entry.delivery) {
                self.in_flight.append(&mut carried);
                return Err(error);
            }
        }
        Ok(())
    }

    /// brook's `--ack-timeout` ran out before JetStream's PubAck came:
    /// said once a session, because brook also counts the delivery
    /// towards `--max-deliveries`.
    fn warn_early_redelivery(&mut self, delivery: &Delivery) {
        if !self.warned_early_redelivery {
            self.warned_early_redelivery = true;
            log::warn!(
                "brook delivered {} offset {} again while its publish waited for JetStream's \
                 PubAck: brook's --ack-timeout is shorter than a PubAck may take (up to {:?}); \
                 start brook with --ack-timeout 30s, or it may give messages up to <topic>.dlq \
                 after --max-deliveries",
                delivery.topic,
                delivery.offset,
                PUBACK_PATIENCE
            );
        }
    }

    /// Marks the publish whose reply went to `inbox` as stored, with the
    /// entries of brook's deliveries of it again, and counts it forwarded.
    ///
    /// A duplicate was stored before (by an earlier session, which brook
    /// delivers again from its oldest unacked message), so it is not the
    /// stream's last message, and a next message that expected it would
    /// be refused: if it was the last one published, the next goes
    /// without an expectation.
    fn answered(&mut self, inbox: &str, ack: PubAck) {
        let mut found = None;
        for in_flight in self.in_flight.iter_mut().filter(|f| f.inbox == inbox) {
            in_flight.acked = true;
            found = Some(in_flight.id.clone());
        }
        let Some(id) = found else {
            log::debug!("a PubAck for no publish of this session: {ack:?}");
            return;
        };
        self.figures.forwarded(ack.duplicate);
        if ack.duplicate && self.last_id == Some(id) {
            self.last_id = None;
        }
    }

    /// Removes the done deliveries at the front; brook's answer to each.
    /// What is left is the figure of messages in flight.
    fn take_done(&mut self) -> Vec<Answer> {
        let mut done = Vec::new();
        while self.in_flight.front().is_some_and(|f| f.acked) {
            let answer = match self.in_flight.pop_front().is_some_and(|f| f.refused) {
                true => Answer::Nack,
                false => Answer::Ack,
            };
            done.push(answer);
        }
        self.figures.set_in_flight(self.in_flight.len());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::figures::Direction;

    /// What a [`Recorder`] keeps of a publish: subject, inbox, headers.
    type Published = (String, String, Vec<(String, String)>);

    /// A [`Sink`] that keeps what was published.
    #[derive(Default)]
    struct Recorder {
        published: Vec<Published>,
        inboxes: u64,
    }

    impl Sink for Recorder {
        fn max_payload(&self) -> usize {
            1 << 20
        }

        fn new_inbox(&mut self) -> String {
            self.inboxes += 1;
            format!("_INBOX.test.{}", self.inboxes)
        }

        fn publish(
            &mut self,
            subject: &str,
            inbox: &str,
            headers: &[(&str, &str)],
            _payload: &[u8],
        ) -> Result<(), NatsError> {
            let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string()));
            self.published
                .push((subject.into(), inbox.into(), headers.collect()));
            Ok(())
        }
    }

    fn delivery(topic: &str, offset: u64) -> Delivery {
        Delivery {
            topic: topic.into(),
            offset,
            payload: b"x".to_vec(),
        }
    }

    fn figures() -> Arc<MirrorFigures> {
        Arc::new(MirrorFigures::new(Direction::ToNats, "S", "a"))
    }

    fn pub_ack(duplicate: bool) -> PubAck {
        PubAck { seq: 1, duplicate }
    }

    fn header<'a>(published: &'a Published, name: &str) -> Option<&'a str> {
        published
            .2
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn each_new_message_expects_the_one_before_and_done_follows_delivery_order() {
        let (mut window, mut sink) = (Window::new("ab", figures()), Recorder::default());
        for (topic, offset) in [("a", 0), ("b", 5), ("a", 1)] {
            window.publish(&mut sink, delivery(topic, offset)).unwrap();
        }
        let ids: Vec<_> = sink
            .published
            .iter()
            .map(|p| header(p, "Nats-Msg-Id"))
            .collect();
        assert_eq!(ids, [Some("a:ab:0"), Some("b:ab:5"), Some("a:ab:1")]);
        let expected: Vec<_> = sink
            .published
            .iter()
            .map(|p| header(p, "Nats-Expected-Last-Msg-Id"))
            .collect();
        assert_eq!(expected, [None, Some("a:ab:0"), Some("b:ab:5")]);
        // PubAcks out of order: done only as far as every earlier one.
        window.answered("_INBOX.test.2", pub_ack(false));
        assert_eq!(window.take_done().len(), 0);
        window.answered("_INBOX.test.1", pub_ack(false));
        assert_eq!(window.take_done().len(), 2);
        window.answered("_INBOX.test.3", pub_ack(false));
        assert_eq!(window.take_done().len(), 1);
    }

    /// brook's ack timeout ran out while the publish waited: publishing it
    /// again could store it after newer ones (review finding 2).
    #[test]
    fn a_message_delivered_again_while_in_flight_is_not_published_again() {
        let (mut window, mut sink) = (Window::new("ab", figures()), Recorder::default());
        window.publish(&mut sink, delivery("a", 0)).unwrap();
        window.publish(&mut sink, delivery("a", 1)).unwrap();
        window.publish(&mut sink, delivery("a", 0)).unwrap();
        assert_eq!(sink.published.len(), 2, "no second publish of a:0");
        assert_eq!(window.in_flight.len(), 3, "one entry per brook delivery");
        window.answered("_INBOX.test.1", pub_ack(false));
        assert_eq!(window.take_done().len(), 1);
        window.answered("_INBOX.test.2", pub_ack(false));
        assert_eq!(
            window.take_done().len(),
            2,
            "the delivery again completes with a:0"
        );
        // Once its PubAck came, a delivery again is done at once.
        window.publish(&mut sink, delivery("a", 2)).unwrap();
        window.answered("_INBOX.test.3", pub_ack(false));
        window.publish(&mut sink, delivery("a", 2)).unwrap();
        assert_eq!(sink.published.len(), 3);
        assert_eq!(window.take_done().len(), 2);
    }

    /// What the window counts for `--metrics-addr`: a message forwarded
    /// per PubAck (not per brook delivery of it), the duplicates among
    /// them, what NATS cannot take, and what waits.
    #[test]
    fn the_figures_count_each_pub_ack_once_and_what_waits() {
        let figures = figures();
        let mut window = Window::new("ab", figures.clone());
        let mut sink = Recorder::default();
        for (topic, offset) in [("a", 0), ("a", 1), ("a", 0), ("two words", 0)] {
            window.publish(&mut sink, delivery(topic, offset)).unwrap();
        }
        window.take_done();
        assert_eq!(figures.read().in_flight, 4);
        window.answered("_INBOX.test.1", pub_ack(true));
        window.answered("_INBOX.test.9", pub_ack(false)); // no publish of ours
        window.take_done();
        let now = figures.read();
        assert_eq!((now.forwarded, now.duplicates, now.unmirrorable), (1, 1, 1));
        assert_eq!(now.in_flight, 3, "a:1, then a:0 again, then two words");
        window.answered("_INBOX.test.2", pub_ack(false));
        window.take_done();
        let now = figures.read();
        assert_eq!((now.forwarded, now.duplicates, now.in_flight), (2, 1, 0));
    }

    /// After a failover, brook sends again what the last session sent;
    /// JetStream answers duplicate to those it had stored, which are not
    /// its last message: the next new message must not expect one (review
    /// finding 6).
    #[test]
    fn after_a_duplicate_the_next_message_expects_nothing() {
        let (mut window, mut sink) = (Window::new("ab", figures()), Recorder::default());
        window.publish(&mut sink, delivery("a", 0)).unwrap();
        window.answered("_INBOX.test.1", pub_ack(true));
        window.publish(&mut sink, delivery("b", 0)).unwrap();
        assert_eq!(
            header(&sink.published[1], "Nats-Expected-Last-Msg-Id"),
            None
        );
        window.answered("_INBOX.test.2", pub_ack(false));
        window.publish(&mut sink, delivery("b", 1)).unwrap();
        assert_eq!(
            header(&sink.published[2], "Nats-Expected-Last-Msg-Id"),
            Some("b:ab:0")
        );
    }

    /// A NATS session ends with publishes in flight: the next publishes
    /// again those without their PubAck, oldest first, under their same
    /// ids, the first expecting nothing, before new deliveries; brook
    /// gets its answers in delivery order, none handed back.
    #[test]
    fn a_new_session_publishes_again_what_the_last_left_without_a_pub_ack() {
        let (mut window, mut sink) = (Window::new("ab", figures()), Recorder::default());
        for offset in 0..4 {
            window.publish(&mut sink, delivery("a", offset)).unwrap();
        }
        window.answered("_INBOX.test.1", pub_ack(false));
        window.answered("_INBOX.test.3", pub_ack(false));
        assert_eq!(window.take_done(), [Answer::Ack]);

        let mut next = Recorder::default();
        window.resend(&mut next).unwrap();
        window.publish(&mut next, delivery("a", 4)).unwrap();
        let sent: Vec<_> = next
            .published
            .iter()
            .map(|p| {
                let id = header(p, "Nats-Msg-Id").unwrap();
                (id, header(p, "Nats-Expected-Last-Msg-Id"))
            })
            .collect();
        assert_eq!(
            sent,
            [
                ("a:ab:1", None),
                ("a:ab:3", Some("a:ab:1")),
                ("a:ab:4", Some("a:ab:3")),
            ],
            "a:2 was stored: not sent again"
        );
        window.answered("_INBOX.test.1", pub_ack(true));
        assert_eq!(window.take_done(), [Answer::Ack, Answer::Ack], "a:1, a:2");
        window.answered("_INBOX.test.2", pub_ack(false));
        window.answered("_INBOX.test.3", pub_ack(false));
        assert_eq!(window.take_done(), [Answer::Ack, Answer::Ack], "a:3, a:4");
    }

    #[test]
    fn what_nats_cannot_name_is_done_without_a_publish() {
        let (mut window, mut sink) = (Window::new("ab", figures()), Recorder::default());
        window.publish(&mut sink, delivery("two words", 0)).unwrap();
        assert!(sink.published.is_empty());
        assert_eq!(window.take_done(), [Answer::Ack]);
    }

    /// A message too large for NATS goes back to brook, to its dead
    /// letters, rather than being acked away (review finding 8); a dead
    /// letter too large is acked, or it would go round for ever.
    #[test]
    fn what_is_too_large_for_nats_is_answered_nack_unless_a_dead_letter() {
        let (mut window, mut sink) = (Window::new("ab", figures()), Recorder::default());
        let mut large = delivery("a", 0);
        large.payload = vec![b'x'; sink.max_payload()];
        window.publish(&mut sink, large.clone()).unwrap();
        window.publish(&mut sink, delivery("a", 1)).unwrap();
        large.topic = "a.dlq".into();
        window.publish(&mut sink, large).unwrap();
        assert_eq!(sink.published.len(), 1, "only a:1");
        assert_eq!(window.take_done(), [Answer::Nack]);
        window.answered("_INBOX.test.1", pub_ack(false));
        assert_eq!(window.take_done(), [Answer::Ack, Answer::Ack]);
    }
}
