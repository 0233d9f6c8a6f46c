//! Dead letters: a message given up after `--max-deliveries` goes (unless
//! `--dead-letter=off`) to the dead-letter topic of its topic: for topic
//! `t`, the topic `t.dlq`, created as it is needed. Each dead letter is one
//! line that says where the message came from, then its payload as it was
//! ([`dead_letter`]).
//!
//! In a round: the answers step (`answers.rs`) sends what each answering
//! session gave up, and `consumer_groups.rs` what a group gave up; a closing
//! connection's are sent before its session is forgotten (`closing.rs`).
//! A dead letter is appended like a publish with no publisher
//! (`publish.rs`), so it is written and made durable with the round.
//!
//! # A dead letter that cannot be stored
//!
//! A dead letter may not get stored: its topic cannot be created (past
//! `--max-topics`, or the store failed), its log refuses it at once (the
//! disk was found full less than a second ago), or, on disk, the round's
//! write finds no room and the log takes it back, as it takes back
//! publishes (`refuse_unwritten`, in `publish.rs`, hands those to
//! [`Dispatcher::dead_letters_taken_back`]).
//!
//! Dropping it would lose the message: its subscriber or group is done
//! with it, and nothing anywhere says what became of it. Keeping it aside
//! in the dispatcher until the disk has room would hold payloads that no
//! flag bounds. So the message is not done: it goes back to whoever gave
//! it up, as if nacked once more, and is offered again an ack delay later.
//! A subscriber's session schedules it again (`InFlight::take_back`); a
//! group holds it back (`Group::hold_back`), its place staying on it so
//! that a restart gives it out again too, until
//! [`Dispatcher::let_out_held_back`] gives it out. Refused once more, it
//! is given up again and its dead letter tried again: stored once the
//! disk has room. An Ack meanwhile settles it, as always. Each dead letter
//! not stored is counted (`dead_letters_not_stored` in `STATS` and the
//! metrics) and logged as an error, at most once a minute, since a
//! consumer that refuses the message at once brings it back every ack
//! delay.
//!
//! A subscriber that has left the topic (unsubscribed, or closed) has no
//! subscription to take its message back into: that one is counted and
//! logged the same way, and stays only in its topic, at its offset, which
//! the log line names. (A fan-out subscriber that leaves gives up its
//! place in the topic anyway.)
//!
//! Calls: `topic_table.rs` (`topic_id`), `publish.rs` (`append`),
//! `consumer_groups.rs` (`groups_moved`, `pump_group`).

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use super::agenda::{HeldBack, UnwrittenDeadLetter};
use super::topic_table::Unavailable;
use super::{Dispatcher, NOT_STORED_LOG_INTERVAL};
use crate::dispatcher::session::in_flight::{GivenUp, GivenUpBy};
use crate::ids::{ConnId, Offset, Payload, TopicId, DEAD_LETTER_SUFFIX};
use crate::store::{DiskFull, StoreError};
use crate::wire::line;

/// Why a dead letter could not be stored.
#[derive(Debug)]
enum NotStored {
    /// Its dead-letter topic could not be created.
    NoTopic(Unavailable),
    /// The disk had no room for it.
    Full(Arc<DiskFull>),
}

impl fmt::Display for NotStored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotStored::NoTopic(unavailable) => {
                write!(f, "the topic cannot be created: {unavailable}")
            }
            NotStored::Full(cause) => write!(f, "{cause}"),
        }
    }
}

impl Dispatcher {
    /// Appends what `conn`'s session gave up to the dead-letter topics: for
    /// topic `t`, the topic `t.dlq`, created as it is needed. Each message
    /// there is one line that says where it came from, then the payload as
    /// it was (see [`dead_letter`]).
    pub(super) fn dead_letter_given_up(
        &mut self,
        conn: ConnId,
        now: Instant,
    ) -> Result<(), StoreError> {
        let Some(session) = self.sessions.get_mut(&conn) else {
            return Ok(());
        };
        for given_up in session.take_given_up() {
            self.send_to_dead_letters(given_up, now)?;
        }
        Ok(())
    }

    /// Appends one given-up message to its dead-letter topic. One that
    /// cannot be stored there goes back to whoever gave it up (see the
    /// module doc); on disk, one that is not written yet is noted, for
    /// that to happen if the round's write finds no room. Fails only if
    /// the store failed otherwise.
    pub(super) fn send_to_dead_letters(
        &mut self,
        given_up: GivenUp,
        now: Instant,
    ) -> Result<(), StoreError> {
        let origin = self.topics[given_up.topic].name.clone();
        let name = format!("{origin}{DEAD_LETTER_SUFFIX}");
        let id = match self.topic_id(&name) {
            Ok(id) => id,
            Err(unavailable) => {
                let why = NotStored::NoTopic(unavailable);
                self.dead_letter_not_stored(given_up, &name, &why, now);
                return Ok(());
            }
        };
        match self.append(id, dead_letter(&origin, &given_up), None, now) {
            Ok(offset) if self.topics[id].log.end() > offset => {
                self.log_stored(&given_up, id, offset);
            }
            Ok(offset) => {
                let letter = UnwrittenDeadLetter {
                    topic: id,
                    offset,
                    given_up,
                };
                self.agenda.dead_letters_unwritten.push(letter);
            }
            Err(StoreError::Full(cause)) => {
                self.dead_letter_not_stored(given_up, &name, &NotStored::Full(cause), now);
            }
            Err(error) => return Err(error),
        }
        Ok(())
    }

    /// The log of topic `id` took back its records from offset `from` on,
    /// for want of room (`cause`): the dead letters among them were not
    /// stored, and their messages go back to whoever gave them up.
    pub(super) fn dead_letters_taken_back(
        &mut self,
        id: TopicId,
        from: Offset,
        cause: &Arc<DiskFull>,
        now: Instant,
    ) {
        if self.agenda.dead_letters_unwritten.is_empty() {
            return;
        }
        let unwritten = std::mem::take(&mut self.agenda.dead_letters_unwritten);
        let (taken_back, still_unwritten): (Vec<_>, Vec<_>) = unwritten
            .into_iter()
            .partition(|letter| letter.topic == id && letter.offset >= from);
        self.agenda.dead_letters_unwritten = still_unwritten;
        let name = self.topics[id].name.clone();
        for letter in taken_back {
            let why = NotStored::Full(cause.clone());
            self.dead_letter_not_stored(letter.given_up, &name, &why, now);
        }
    }

    /// The round's writes are done: the dead letters still noted as
    /// unwritten are in their files now (`logs.rs`).
    pub(super) fn dead_letters_written(&mut self) {
        for letter in std::mem::take(&mut self.agenda.dead_letters_unwritten) {
            self.log_stored(&letter.given_up, letter.topic, letter.offset);
        }
    }

    /// Gives out again the groups' messages held back whose ack delay has
    /// passed (see the module doc).
    pub(super) fn let_out_held_back(&mut self, now: Instant) {
        while let Some(held) = self.agenda.held_back.front() {
            if held.due > now {
                break;
            }
            let HeldBack {
                topic,
                group,
                offset,
                ..
            } = *held;
            self.agenda.held_back.pop_front();
            if self.topics[topic].groups[group].let_out(offset) {
                self.pump_group(topic, group, now);
            }
        }
    }

    /// When the next message held back goes out again.
    pub(super) fn next_let_out(&self) -> Option<Instant> {
        self.agenda.held_back.front().map(|held| held.due)
    }

    /// A dead letter for `given_up` could not be stored in the topic
    /// `name`, for `why`: the message goes back to whoever gave it up, to
    /// be offered again an ack delay from `now`; counted, and logged.
    fn dead_letter_not_stored(
        &mut self,
        given_up: GivenUp,
        name: &str,
        why: &NotStored,
        now: Instant,
    ) {
        let origin = self.topics[given_up.topic].name.clone();
        let (offset, deliveries) = (given_up.offset, given_up.deliveries);
        let kept = self.take_back(given_up, now + self.policy.ack_delay);
        let not_stored = &mut self.dead_letters_not_stored;
        not_stored.count += 1;
        let logged_lately = (not_stored.logged)
            .is_some_and(|when| now.duration_since(when) < NOT_STORED_LOG_INTERVAL);
        if logged_lately {
            not_stored.unlogged += 1;
            return;
        }
        let unlogged = std::mem::take(&mut not_stored.unlogged);
        not_stored.logged = Some(now);
        let what_now = match kept {
            true => format!(
                "the message is not done: it is offered again after the ack delay \
                 ({:?}) until its dead letter is stored",
                self.policy.ack_delay
            ),
            false => format!(
                "its subscriber has left, so it stays only in {origin:?} at offset {offset}"
            ),
        };
        log::error!(
            "{origin:?}@{offset}: given up after {deliveries} deliveries, and its dead letter \
             cannot be stored in {name:?}: {why}; {what_now}. Dead letters not stored since \
             the broker started: {} ({unlogged} since the last such line, which is said at \
             most once a minute)",
            not_stored.count
        );
    }

    /// Gives a message back to whoever gave it up, to go out again at
    /// `due`. Returns whether it was taken: not by a subscriber that has
    /// left.
    fn take_back(&mut self, given_up: GivenUp, due: Instant) -> bool {
        let (topic, offset) = (given_up.topic, given_up.offset);
        match given_up.by {
            GivenUpBy::Group(group) => {
                let deliveries = given_up.deliveries;
                self.topics[topic].groups[group].hold_back(offset, deliveries);
                self.groups_moved(topic);
                let held = HeldBack {
                    due,
                    topic,
                    group,
                    offset,
                };
                self.agenda.held_back.push_back(held);
                true
            }
            GivenUpBy::Subscriber(conn) => {
                let Some(session) = self.sessions.get_mut(&conn) else {
                    return false;
                };
                let taken = session.take_back(given_up, due).is_ok();
                self.agenda.register(conn, session);
                taken
            }
        }
    }

    /// Logs that the dead letter of `given_up` is at `offset` of topic
    /// `id`.
    fn log_stored(&self, given_up: &GivenUp, id: TopicId, offset: Offset) {
        log::info!(
            "{:?}@{} went to {:?}@{offset} after {} deliveries",
            self.topics[given_up.topic].name,
            given_up.offset,
            self.topics[id].name,
            given_up.deliveries
        );
    }
}

/// A dead letter: one line that names the original topic (as the line
/// protocol writes a topic, quoted if need be), offset and number of
/// deliveries, then the original payload, byte for byte.
///
/// ```text
/// dead-letter topic=orders offset=42 deliveries=5
/// <the payload>
/// ```
pub fn dead_letter(origin: &str, given_up: &GivenUp) -> Payload {
    let mut letter = b"dead-letter topic=".to_vec();
    line::encode_topic(&mut letter, origin);
    let fields = format!(
        " offset={} deliveries={}\n",
        given_up.offset, given_up.deliveries
    );
    letter.extend_from_slice(fields.as_bytes());
    letter.extend_from_slice(&given_up.payload);
    Payload::from(letter)
}
