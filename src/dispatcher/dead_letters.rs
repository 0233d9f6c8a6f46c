//! Dead letters: a message given up after `--max-deliveries` goes (unless
//! `--dead-letter=off`) to the dead-letter topic of its topic: for topic
//! `t`, the topic `t.dlq`, created as it is needed. Each dead letter is one
//! line that says where the message came from, then its payload as it was
//! ([`dead_letter`]).
//!
//! In a round: the answers step (`answers.rs`) sends what each answering
//! session gave up, connection after connection; a closing connection's
//! are sent before its session is forgotten (`closing.rs`). What the
//! groups gave up in the round, in that step or earlier, goes after every
//! connection's answers are settled (`consumer_groups.rs`,
//! `settle_groups_given_up`): the answers of one round are settled in
//! connection order, not in the order they came, so a member's last Nack
//! may be settled before another member's Ack of an earlier delivery read
//! in the same round, and the Ack must win. A dead letter is appended like
//! a publish with no publisher (`publish.rs`), so it is written and made
//! durable with the round.
//!
//! A message given up is done only once its dead letter is stored. A
//! group holds it back from the give-up on (`consumer_groups.rs`), so its
//! place, its saved place and retention stay on it until then, and an Ack
//! of an earlier delivery that comes meanwhile (in the same round, or
//! while the dead letter waits for room) settles it as usual: not
//! dead-lettered yet, it never is; the dead letter stored, the group is
//! done with it (`dead_letter_stored`).
//! On disk that is at the end of the round's writes
//! ([`Dispatcher::dead_letters_written`]). A fan-out subscriber's session
//! has nothing to hold: it answers its deliveries in order, so no Ack can
//! come after its give-up, and the [`GivenUp`] carries the payload.
//!
//! # A dead letter that cannot be stored
//!
//! Split by cause, since one passes and the other does not:
//!
//! - **The disk is full**: the log refuses the dead letter at once (the
//!   disk was found full less than a second ago), or the round's write
//!   finds no room and the log takes it back, as it takes back publishes
//!   (`refuse_unwritten`, in `publish.rs`, hands those to
//!   [`Dispatcher::dead_letters_taken_back`]); or the dead-letter topic
//!   cannot be created for want of room or of a file descriptor. That
//!   passes: dropping the message would lose it, and keeping it aside
//!   here until the disk has room would hold payloads no flag bounds. So
//!   the message goes back to whoever gave it up, as if nacked once more,
//!   to be offered again an ack delay later ([`Dispatcher::take_back`]):
//!   a session schedules it again (`InFlight::take_back`); a group goes on
//!   holding it back until [`Dispatcher::let_out_held_back`] gives it
//!   out. Refused once more, it is given up again and its dead letter
//!   tried again: stored once the disk has room. Meanwhile a group's place,
//!   and so the retention of its topic, stays on it. A group that settled
//!   it meanwhile (an Ack of an earlier delivery) has nothing to take
//!   back: the Ack wins. A group with no members when the let-out comes
//!   (one whose members left, or one only pulls read) has nobody to give
//!   it to, so it tries the dead letter again itself, with the payload
//!   read from the topic, which its hold keeps from retention
//!   ([`Group::keeps_from`](super::group::Group::keeps_from)), at most
//!   once every [`MEMBERLESS_RETRY_FLOOR`]. A payload no longer cached
//!   comes back from the fetcher: the message waits for its topic's run
//!   (`Agenda::waiting_for_fetch`) and is tried as soon as the run comes
//!   back ([`Dispatcher::retry_waiting_for_fetch`], from `delivery.rs`'s
//!   `fetched`), in offset order, one run serving all it holds, before
//!   the round's memory budget can drop it. So the hold lasts only while
//!   the disk is full. A message whose record cannot be read back
//!   (damaged on disk, or a failed read: the store logs which) is given
//!   up for good, as below: no dead letter can be had of it.
//!
//!   The messages held back wait in two queues (`HeldBackQueues`, in
//!   `agenda.rs`), those of groups with members the ack delay, the others
//!   no less than the floor: each wait is the same for its whole queue,
//!   so each queue stays in the order due as it is filled.
//! - **The dead-letter topic cannot be created** otherwise: past
//!   `--max-topics`, or its directory cannot be made. That does not pass
//!   without an operator, and holding the message back would pin its
//!   topic's retention until then. So the message is given up for good,
//!   as with `--dead-letter off`: its group moves on; the log line says
//!   where it stays, in its topic at its offset until retention drops it,
//!   and how to read it there (`SUB <topic> from <offset>`).
//!
//! A subscriber that has left the topic (unsubscribed, or closed) has no
//! subscription to take its message back into: the line says where that
//! one stays too. (A fan-out subscriber that leaves gives up its place in
//! the topic anyway.)
//!
//! Each try to store a dead letter that fails is counted
//! (`dead_letters_not_stored` in `STATS` and the metrics): a message
//! whose dead letter is tried again on a full disk counts at each try.
//! Counting tries, not messages, is what a group with members did
//! already (its message comes back every ack delay), and it needs no
//! memory of which messages were counted; an alert on the counter still
//! fires, and its rate says how busy the retries are. Each is logged as an
//! error, at most once every [`NOT_STORED_LOG_INTERVAL`] (a consumer that
//! refuses the message at once brings it back every ack delay), each line
//! saying how many were left out since the last, except a message given
//! up for good: its line is the only word of where it stays, and it comes
//! once a message. The first dead letter stored after some were not for
//! want of room ends the episode with a line of its own (those given up
//! for good are no part of it).
//!
//! Calls: `topic_table.rs` (`topic_id`), `publish.rs` (`append`),
//! `consumer_groups.rs` (`group_done`, `pump_group`), the topic's log
//! (`read`, for a group with no members).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::agenda::{HeldBack, UnwrittenDeadLetter};
use super::topic_table::Unavailable;
use super::Dispatcher;
use crate::dispatcher::session::in_flight::{GivenUp, GivenUpBy};
use crate::ids::{ConnId, Offset, Payload, TopicId, DEAD_LETTER_SUFFIX};
use crate::store::disk::FULL_RETRY_AFTER;
use crate::store::{DiskFull, Lookup, StoreError};
use crate::wire::line;

/// How often, at most, the log says that a dead letter could not be
/// stored.
const NOT_STORED_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// How soon, at the earliest, a group with no members tries again the
/// dead letter of a message it holds back, whatever the ack delay. No
/// member waits for the message, and a log that found the disk full
/// refuses appends for [`FULL_RETRY_AFTER`] without trying the disk, so a
/// sooner try could only be refused again; with `--ack-delay 0ms` it
/// would have the dispatcher try at once, every round, for as long as the
/// disk is full. A little more than that second: the log counts it from
/// its failed write, at the end of the round, and the message is held
/// back from the round's start; a floor of exactly the second would come
/// just before the log tries the disk again, be refused unseen, and try
/// the disk only every other second.
const MEMBERLESS_RETRY_FLOOR: Duration =
    FULL_RETRY_AFTER.saturating_add(Duration::from_millis(100));

/// Why a dead letter could not be stored.
#[derive(Debug)]
enum NotStored {
    /// Its dead-letter topic could not be created, for want of nothing
    /// the disk can give back.
    NoTopic(Unavailable),
    /// The disk (or the file descriptors left for topics) had no room
    /// for it.
    Full(Arc<DiskFull>),
    /// Its message, held back by a group with no members, could not be
    /// read back from its topic for it.
    Unreadable,
}

impl NotStored {
    /// Why the dead-letter topic could not be had: for want of room that
    /// may come back (disk space, a file descriptor), or of what only an
    /// operator can give.
    fn no_topic(unavailable: Unavailable) -> NotStored {
        match unavailable {
            Unavailable::Store(StoreError::Full(cause)) => NotStored::Full(cause),
            unavailable => NotStored::NoTopic(unavailable),
        }
    }
}

impl fmt::Display for NotStored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotStored::NoTopic(unavailable) => {
                write!(f, "the topic cannot be created: {unavailable}")
            }
            NotStored::Full(cause) => write!(f, "{cause}"),
            NotStored::Unreadable => write!(
                f,
                "its message cannot be read back from its topic (the log says why, above)"
            ),
        }
    }
}

/// What became of a message whose dead letter was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Back with whoever gave it up, offered again after this ack delay.
    OfferedAgain(Duration),
    /// Held back by a group with no members, which tries its dead letter
    /// again after this delay.
    TriedAgain(Duration),
    /// Its group settled it meanwhile (an Ack of an earlier delivery).
    Settled,
    /// Its subscriber has left: it is only in its topic.
    SubscriberLeft,
    /// Given up for good: its dead-letter topic cannot be created.
    GivenUpForGood,
}

impl Fate {
    /// What the log line says of the message at `offset` of `topic`.
    fn describe(self, topic: &str, offset: Offset) -> String {
        let stays = || {
            let mut name = Vec::new();
            line::encode_topic(&mut name, topic);
            format!(
                "it stays in {topic:?} at offset {offset}, until retention drops it: read it \
                 there with `SUB {} from {offset}`",
                String::from_utf8_lossy(&name)
            )
        };
        match self {
            Fate::OfferedAgain(ack_delay) => format!(
                "the message is not done: it is offered again after the ack delay \
                 ({ack_delay:?}) until its dead letter is stored; a group's place (so the \
                 topic's retention) stays on it meanwhile"
            ),
            Fate::TriedAgain(delay) => format!(
                "the message is not done: its group has no members, so its dead letter is \
                 tried again every {delay:?} (or the message given to a member, if one has \
                 joined) until it is stored; the group's place (so the topic's retention) \
                 stays on it meanwhile"
            ),
            Fate::Settled => "the message was acked meanwhile, so it is done".to_owned(),
            Fate::SubscriberLeft => format!("its subscriber has left, so {}", stays()),
            Fate::GivenUpForGood => format!("the message is given up for good: {}", stays()),
        }
    }
}

/// Where a message given up came from, and after how many deliveries:
/// what the log says of it once its dead letter is gone with it.
#[derive(Debug, Clone, Copy)]
struct Origin {
    topic: TopicId,
    offset: Offset,
    deliveries: u32,
}

impl Origin {
    fn of(given_up: &GivenUp) -> Origin {
        Origin {
            topic: given_up.topic,
            offset: given_up.offset,
            deliveries: given_up.deliveries,
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

    /// Appends one given-up message to its dead-letter topic. Stored, the
    /// message is done; on disk, one not written yet is noted, to be done
    /// once the round's write put it in its file, or taken back if that
    /// write finds no room. One that cannot be stored goes back to whoever
    /// gave it up, or is given up for good (see the module doc). Fails
    /// only if the store failed otherwise.
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
                self.dead_letter_not_stored(given_up, &name, NotStored::no_topic(unavailable), now);
                return Ok(());
            }
        };
        match self.append(id, dead_letter(&origin, &given_up), None, now) {
            Ok(offset) if self.topics[id].log.end() > offset => {
                self.dead_letter_stored(&given_up, id, offset);
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
                self.dead_letter_not_stored(given_up, &name, NotStored::Full(cause), now);
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
            self.dead_letter_not_stored(letter.given_up, &name, why, now);
        }
    }

    /// The round's writes are done: the dead letters still noted as
    /// unwritten are in their files now (`logs.rs`), and their messages
    /// done.
    pub(super) fn dead_letters_written(&mut self) {
        for letter in std::mem::take(&mut self.agenda.dead_letters_unwritten) {
            self.dead_letter_stored(&letter.given_up, letter.topic, letter.offset);
        }
    }

    /// Gives out again the groups' messages held back whose time has
    /// come (see the module doc); a group with no members tries their dead
    /// letters again instead. Only those due when the pass starts: one
    /// held back again meanwhile waits for a later round, so no delay,
    /// however short, can keep the pass going. Fails only if the store
    /// failed otherwise than for room.
    pub(super) fn let_out_held_back(&mut self, now: Instant) -> Result<(), StoreError> {
        for held in self.agenda.held_back.take_due(now) {
            self.let_out(held.topic, held.group, held.offset, now)?;
        }
        Ok(())
    }

    /// A run of topic `topic` came back from the fetcher: tries again,
    /// at once and in offset order, the dead letters that waited for it
    /// (see [`Dispatcher::retry_dead_letter`]). One run serves every
    /// offset it holds; the first it does not hold asks for the next run,
    /// and waits for it with the rest.
    pub(super) fn retry_waiting_for_fetch(
        &mut self,
        topic: TopicId,
        now: Instant,
    ) -> Result<(), StoreError> {
        let Some(mut waiting) = self.agenda.waiting_for_fetch.remove(&topic) else {
            return Ok(());
        };
        while let Some((offset, group)) = waiting.pop_first() {
            self.let_out(topic, group, offset, now)?;
            if let Some(again) = self.agenda.waiting_for_fetch.remove(&topic) {
                // Not in this run: it asked for the next, and the rest,
                // further on, wait for it too, untried, so that a run
                // costs what it serves, not every message still waiting.
                waiting.extend(again);
                break;
            }
        }
        if !waiting.is_empty() {
            self.agenda.waiting_for_fetch.insert(topic, waiting);
        }
        Ok(())
    }

    /// Gives the message at `offset` of `topic`, which the group `group`
    /// holds back, to the group's members again, or, if it has none, tries
    /// its dead letter again. Nothing, if the group has settled it since.
    fn let_out(
        &mut self,
        topic: TopicId,
        group: usize,
        offset: Offset,
        now: Instant,
    ) -> Result<(), StoreError> {
        let held_by = &mut self.topics[topic].groups[group];
        if !held_by.members().is_empty() {
            if held_by.let_out(offset) {
                self.pump_group(topic, group, now);
            }
        } else if let Some(deliveries) = held_by.held_back_after(offset) {
            self.retry_dead_letter(topic, group, offset, deliveries, now)?;
        }
        Ok(())
    }

    /// Tries again the dead letter of the message at `offset` of `topic`,
    /// which the group `group`, with no members to give it to, gave up
    /// after `deliveries` and holds back. Its payload is still in the
    /// topic's log: the group's hold keeps retention off it. Stored, or
    /// not, it goes as a give-up's does ([`Dispatcher::send_to_dead_letters`]).
    ///
    /// A payload no longer cached is read back by the fetcher: the
    /// message waits for its topic's run, and is tried again as soon as
    /// the run comes back ([`Dispatcher::retry_waiting_for_fetch`]), not
    /// after a delay: by then the round's memory budget, or another read
    /// of the topic, would have dropped the run, and the message would
    /// ask for it again, for ever. One whose record cannot be read is
    /// given up for good, counted and logged as a dead letter not stored.
    fn retry_dead_letter(
        &mut self,
        topic: TopicId,
        group: usize,
        offset: Offset,
        deliveries: u32,
        now: Instant,
    ) -> Result<(), StoreError> {
        let payload = match self.topics[topic].log.read(offset) {
            Lookup::Message(payload) => payload,
            Lookup::Later => {
                let waiting = self.agenda.waiting_for_fetch.entry(topic).or_default();
                waiting.insert((offset, group));
                return Ok(());
            }
            // Damaged on disk, or a read of it failed (the store logged
            // which): no dead letter can be had, as for a group that
            // reads past it. (`Nothing` cannot be: the hold keeps the
            // offset from retention.)
            Lookup::Unreadable | Lookup::Nothing => {
                self.group_done(topic, group, offset);
                let origin = Origin {
                    topic,
                    offset,
                    deliveries,
                };
                let name = format!("{}{DEAD_LETTER_SUFFIX}", self.topics[topic].name);
                let why = NotStored::Unreadable;
                self.count_not_stored(&why);
                self.log_not_stored(origin, &name, &why, Fate::GivenUpForGood, now);
                return Ok(());
            }
        };
        let given_up = GivenUp {
            topic,
            offset,
            deliveries,
            payload,
            by: GivenUpBy::Group(group),
        };
        self.send_to_dead_letters(given_up, now)
    }

    /// How long the group `group` of topic `topic` holds back a message
    /// whose dead letter was not stored before it tries again: the ack
    /// delay, after which a member gets the message again; with no
    /// members, no less than [`MEMBERLESS_RETRY_FLOOR`].
    fn held_back_delay(&self, topic: TopicId, group: usize) -> Duration {
        let ack_delay = self.policy.ack_delay;
        match self.topics[topic].groups[group].members().is_empty() {
            true => ack_delay.max(MEMBERLESS_RETRY_FLOOR),
            false => ack_delay,
        }
    }

    /// When the next message held back goes out again.
    pub(super) fn next_let_out(&self) -> Option<Instant> {
        self.agenda.held_back.next_due()
    }

    /// The dead letter of `given_up` is at `offset` of topic `id`: the
    /// message is done with. Logged, and so is the end of an episode of
    /// dead letters not stored.
    fn dead_letter_stored(&mut self, given_up: &GivenUp, id: TopicId, offset: Offset) {
        if let GivenUpBy::Group(group) = given_up.by {
            self.group_done(given_up.topic, group, given_up.offset);
        }
        let (origin, name) = (&self.topics[given_up.topic].name, &self.topics[id].name);
        log::info!(
            "{origin:?}@{} went to {name:?}@{offset} after {} deliveries",
            given_up.offset,
            given_up.deliveries
        );
        let not_stored = std::mem::take(&mut self.dead_letters_not_stored.since_stored);
        if not_stored > 0 {
            log::info!("dead letters are stored again: {not_stored} could not be before this one");
        }
    }

    /// The dead letter of `given_up` could not be stored in the topic
    /// `name`, for `why`: the message goes back to whoever gave it up, or
    /// is given up for good. Counted and logged.
    fn dead_letter_not_stored(
        &mut self,
        given_up: GivenUp,
        name: &str,
        why: NotStored,
        now: Instant,
    ) {
        let origin = Origin::of(&given_up);
        let fate = match why {
            NotStored::Full(_) => self.take_back(given_up, now),
            NotStored::NoTopic(_) | NotStored::Unreadable => self.give_up_for_good(&given_up),
        };
        self.count_not_stored(&why);
        self.log_not_stored(origin, name, &why, fate, now);
    }

    /// Counts a dead letter not stored, for `why`.
    fn count_not_stored(&mut self, why: &NotStored) {
        let counted = &mut self.dead_letters_not_stored;
        counted.count += 1;
        // The episode the first dead letter stored ends is one of a
        // full disk: those given up for good are no part of it.
        if let NotStored::Full(_) = why {
            counted.since_stored += 1;
        }
    }

    /// Logs that the dead letter of the message from `origin` could not be
    /// stored in the topic `name`, for `why`, and what became of the
    /// message (`fate`): at most once every [`NOT_STORED_LOG_INTERVAL`],
    /// unless the message is given up for good. That line is the only
    /// word of where it stays, and each message is given up for good once.
    fn log_not_stored(
        &mut self,
        origin: Origin,
        name: &str,
        why: &NotStored,
        fate: Fate,
        now: Instant,
    ) {
        let Origin {
            topic,
            offset,
            deliveries,
        } = origin;
        let topic = &self.topics[topic].name;
        let counted = &mut self.dead_letters_not_stored;
        let total = counted.count;
        let log_line = |note: &str| {
            log::error!(
                "{topic:?}@{offset}: given up after {deliveries} deliveries, and its dead \
                 letter cannot be stored in {name:?}: {why}; {}. Dead letters not stored \
                 since the broker started: {total}{note}",
                fate.describe(topic, offset)
            )
        };
        match fate {
            Fate::GivenUpForGood => log_line(""),
            _ => (counted.log).log_at(now, NOT_STORED_LOG_INTERVAL, |note| {
                log_line(&format!(" (said at most once a minute){note}"))
            }),
        }
    }

    /// Gives a message back to whoever gave it up, to go out again an ack
    /// delay after `now`, and says what became of it: a group holds it
    /// back still, unless an Ack settled it meanwhile (one with no
    /// members, to try its dead letter again); a subscriber that has left
    /// cannot take it.
    fn take_back(&mut self, given_up: GivenUp, now: Instant) -> Fate {
        let ack_delay = self.policy.ack_delay;
        match given_up.by {
            GivenUpBy::Group(group) => {
                let (topic, offset) = (given_up.topic, given_up.offset);
                if !self.topics[topic].groups[group].is_held_back(offset) {
                    return Fate::Settled;
                }
                self.hold_back(topic, group, offset, now)
            }
            GivenUpBy::Subscriber(conn) => {
                let Some(session) = self.sessions.get_mut(&conn) else {
                    return Fate::SubscriberLeft;
                };
                let taken = session.take_back(given_up, now + ack_delay);
                self.agenda.register(conn, session);
                match taken {
                    true => Fate::OfferedAgain(ack_delay),
                    false => Fate::SubscriberLeft,
                }
            }
        }
    }

    /// Gives a message up for good, its dead letter not stored: a group is
    /// done with it.
    fn give_up_for_good(&mut self, given_up: &GivenUp) -> Fate {
        if let GivenUpBy::Group(group) = given_up.by {
            self.group_done(given_up.topic, group, given_up.offset);
        }
        Fate::GivenUpForGood
    }

    /// Has the group `group` of topic `topic`, which holds back `offset`,
    /// give it out again (or try its dead letter again) after
    /// [`Dispatcher::held_back_delay`] from `now`, and says how long that
    /// is and whether the group has members.
    fn hold_back(&mut self, topic: TopicId, group: usize, offset: Offset, now: Instant) -> Fate {
        let delay = self.held_back_delay(topic, group);
        let held = HeldBack {
            due: now + delay,
            topic,
            group,
            offset,
        };
        let memberless = self.topics[topic].groups[group].members().is_empty();
        self.agenda.held_back.push(held, memberless);
        match memberless {
            true => Fate::TriedAgain(delay),
            false => Fate::OfferedAgain(delay),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A group with no members tries its dead letter again only once the
    /// log that found the disk full tries the disk again: the floor is
    /// counted from the round's start, the log's second from its failed
    /// write, later in the round.
    #[test]
    fn a_memberless_retry_comes_after_the_log_tries_the_disk_again() {
        assert!(MEMBERLESS_RETRY_FLOOR > FULL_RETRY_AFTER);
    }
}
