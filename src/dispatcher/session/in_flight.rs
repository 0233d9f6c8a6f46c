//! One connection's deliveries that await an answer, and the messages it is
//! owed again: the ack rules of a session (`session/`).
//!
//! Every delivery that needs an answer joins the queue of deliveries in
//! flight. The client answers deliveries in the order they were written,
//! so an Ack or Nack always answers the front of the queue. A Nack
//! schedules the message again after the ack delay.
//!
//! The ack timeout runs only for the oldest delivery that can still be
//! answered in time, and its clock starts when that delivery becomes the
//! oldest: a consumer working through a full window is not punished for
//! messages it has not reached yet. When the clock runs out the message is
//! scheduled again at once, but its entry stays in the queue, marked timed
//! out, because the client may still answer it late; that late answer must be
//! matched to it and not to the next delivery. Timed-out entries are always a
//! prefix of the queue, so a count (`timed_out`) marks them.
//!
//! An Ack means done, whichever delivery of a message it answers. A late
//! Ack therefore settles the message: its redelivery is taken off the
//! schedule, or, if it was already sent, marked `settled`, so
//! that its own answer and its own timeout change nothing. A late Nack
//! changes nothing: the timeout already sent the message again, and one
//! refusal must not send it twice.
//!
//! ```text
//!   in flight:  [ 7 (timed out) | 9 | 10 | 7 again ]      redeliveries: —
//!   late Ack ──▶ settles 7:      9 | 10 | 7 again (settled: answer ignored)
//! ```
//!
//! A message is delivered at most `max_deliveries` times; after that it is
//! given up, logged with its topic and offset, and (unless `--dead-letter
//! off`) handed to the dispatcher, which appends it to the topic's
//! dead-letter topic ([`GivenUp`]); if the disk has no room for its dead
//! letter, the dispatcher gives the message back ([`InFlight::take_back`]),
//! to go out again after the ack delay. When the last allowed delivery times
//! out, the message is not given up yet: the client may still Ack it. Its
//! answer decides, however late: an Ack settles it, a Nack gives it up, and
//! so does the connection's end if no answer ever came.
//!
//! A message a consumer group gave the session (`group.rs`) follows the
//! same rules, except that its answer goes back to the group
//! ([`GroupAnswer`]), which decides what comes next: the group counts
//! deliveries across its members, and gives its messages up itself.
//!
//! The window has two bounds: at most `max_inflight` deliveries, and at
//! most `subscriber_buffer` bytes of their payloads, may be unanswered at
//! once ([`InFlight::has_room`]).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use crate::dispatcher::topic::Topic;
use crate::ids::{ConnId, Offset, Payload, TopicId};
use crate::stats::Traffic;

/// The delivery rules every session follows, from the broker's flags.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryPolicy {
    /// How long a nacked message waits before it is delivered again.
    pub ack_delay: Duration,
    /// How long the oldest unanswered delivery may go without an answer.
    pub ack_timeout: Duration,
    /// How many times one message is delivered before it is given up.
    pub max_deliveries: u32,
    /// Whether a message given up goes to its topic's dead-letter topic.
    pub dead_letters: bool,
    /// How many deliveries may await an answer at once (or, for those that
    /// need none, wait to be written).
    pub max_inflight: usize,
    /// How many bytes of payload those deliveries may add up to.
    pub subscriber_buffer: usize,
    /// How long the writer of a closed connection may take to write the
    /// frames still queued for it before its socket is shut down, and how
    /// long its unfinished pulls may go without progress.
    pub linger: Duration,
}

#[cfg(test)]
impl DeliveryPolicy {
    /// The rules the dispatcher's unit tests start from: an ack delay of
    /// 1 s, an ack timeout of 2 s, 5 deliveries, dead letters on, a window
    /// of 16 deliveries and 1 MiB, a linger of 5 s.
    pub(crate) fn for_test() -> DeliveryPolicy {
        DeliveryPolicy {
            ack_delay: Duration::from_secs(1),
            ack_timeout: Duration::from_secs(2),
            max_deliveries: 5,
            dead_letters: true,
            max_inflight: 16,
            subscriber_buffer: 1 << 20,
            linger: Duration::from_secs(5),
        }
    }
}

/// A message a session or a group gave up after `max_deliveries`, for the
/// dead-letter topic.
#[derive(Debug)]
pub struct GivenUp {
    pub topic: TopicId,
    pub offset: Offset,
    pub deliveries: u32,
    pub payload: Payload,
    /// Who gave it up: who takes it back if its dead letter cannot be
    /// stored.
    pub by: GivenUpBy,
}

/// Counts and logs that `giver` (`conn 7`, `group "g"`) gives up the
/// message at `offset` of `topic` after `deliveries`: the first time, as
/// a warning, counted in the topic's `given_up` and in `group`'s (a
/// group's [`Traffic`], if a group gave it up); a later time, only for
/// debugging, and not counted again ([`first_give_up`]). The one place
/// both a session and a group say it.
pub fn count_give_up(
    giver: fmt::Arguments,
    topic: &Topic,
    group: Option<&Traffic>,
    offset: Offset,
    deliveries: u32,
    max_deliveries: u32,
) {
    let first = first_give_up(deliveries, max_deliveries);
    if first {
        topic.traffic.given_up.add(1);
        if let Some(group) = group {
            group.given_up.add(1);
        }
    }
    let level = if first {
        log::Level::Warn
    } else {
        log::Level::Debug
    };
    log::log!(
        level,
        "{giver}: giving up on message {}@{offset} after {deliveries} deliveries",
        topic.name
    );
}

/// Whether a message given up after `deliveries` is given up for the
/// first time. A later time is one after more than `max_deliveries`: the
/// message came back because its dead letter could not be stored
/// (`dead_letters.rs`), and comes back every ack delay while the disk is
/// full.
fn first_give_up(deliveries: u32, max_deliveries: u32) -> bool {
    deliveries <= max_deliveries
}

/// Who gave a message up ([`GivenUp`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GivenUpBy {
    /// A fan-out subscriber, the session of this connection.
    Subscriber(ConnId),
    /// The consumer group of the topic, by index.
    Group(usize),
}

/// What became of a message a group gave this session: for the dispatcher
/// to tell the group ([`InFlight::take_group_answers`]).
#[derive(Debug, Clone)]
pub struct GroupAnswer {
    pub topic: TopicId,
    pub group: usize,
    pub offset: Offset,
    pub payload: Payload,
    /// How many times the group has delivered it, this time included.
    pub deliveries: u32,
    /// Acked (or written, for a group joined without manual acks), or else
    /// to be given out again: nacked, timed out, or its member gone.
    pub acked: bool,
}

/// The client answered a delivery that was never sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NothingToAnswer;

/// A message sent and not yet answered, or owed again. It holds its
/// payload, so a message that retention drops from the log while a delivery
/// of it is unanswered is still there to send again.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub topic: TopicId,
    pub offset: Offset,
    /// How many times it has been sent, counting the time it is about to be.
    pub count: u32,
    pub payload: Payload,
    /// The consumer group of the topic it was sent for, by index, if any:
    /// its answer goes back to the group, which decides what comes next.
    pub group: Option<usize>,
    /// Whether its answer no longer matters: the message was acked through
    /// another of its deliveries, or given back to its group when the
    /// session left it. Its answer is still expected (it keeps later answers
    /// matched), but neither the answer nor a timeout does anything.
    settled: bool,
}

impl Delivery {
    /// The `count`th delivery of the message at `offset` of `topic`, for
    /// `group` if a group gave it out.
    pub fn new(
        topic: TopicId,
        offset: Offset,
        count: u32,
        payload: Payload,
        group: Option<usize>,
    ) -> Delivery {
        Delivery {
            topic,
            offset,
            count,
            payload,
            group,
            settled: false,
        }
    }

    fn group_answer(&self, acked: bool) -> GroupAnswer {
        GroupAnswer {
            topic: self.topic,
            group: self.group.unwrap_or_default(),
            offset: self.offset,
            payload: self.payload.clone(),
            deliveries: self.count,
            acked,
        }
    }
}

/// A delivery to make again once `due` has passed.
#[derive(Debug)]
struct Redelivery {
    due: Instant,
    sequence: u64,
    delivery: Delivery,
}

/// Redeliveries are ordered by `due`, then by the order they were scheduled
/// in (`sequence` is unique, so no two are equal).
impl Ord for Redelivery {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.sequence).cmp(&(other.due, other.sequence))
    }
}

impl PartialOrd for Redelivery {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Redelivery {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Redelivery {}

/// Whether the session still subscribes to a topic: a message of a topic
/// it left is not scheduled again.
pub type Subscribed<'a> = &'a dyn Fn(TopicId) -> bool;

/// One connection's deliveries awaiting an answer, its redeliveries, and
/// what its answers left for the dispatcher: messages given up, and
/// answers for the groups.
#[derive(Debug)]
pub struct InFlight {
    id: ConnId,
    policy: DeliveryPolicy,
    /// In the order they were written, which is the order of the answers.
    deliveries: VecDeque<Delivery>,
    /// The payload bytes of `deliveries`.
    bytes: usize,
    /// How many entries at the front of `deliveries` already timed out.
    timed_out: usize,
    /// When the ack clock of the oldest live entry started.
    clock_start: Instant,
    redeliveries: BinaryHeap<Reverse<Redelivery>>,
    sequence: u64,
    /// Messages given up since the dispatcher last took them.
    given_up: Vec<GivenUp>,
    /// Answers to group messages that the dispatcher has yet to take.
    group_answers: Vec<GroupAnswer>,
}

impl InFlight {
    pub fn new(id: ConnId, policy: DeliveryPolicy, now: Instant) -> InFlight {
        InFlight {
            id,
            policy,
            deliveries: VecDeque::new(),
            bytes: 0,
            timed_out: 0,
            clock_start: now,
            redeliveries: BinaryHeap::new(),
            sequence: 0,
            given_up: Vec::new(),
            group_answers: Vec::new(),
        }
    }

    /// Whether a delivery that awaits an answer may be sent: fewer than the
    /// window's deliveries, and of its bytes, are unanswered. (One message
    /// larger than the whole buffer still goes, alone.)
    pub fn has_room(&self) -> bool {
        self.deliveries.len() < self.policy.max_inflight
            && self.bytes < self.policy.subscriber_buffer
    }

    /// Starts waiting for the answer to `delivery`, just queued for the
    /// writer.
    pub fn track(&mut self, delivery: Delivery, now: Instant) {
        if self.deliveries.len() == self.timed_out {
            self.clock_start = now; // it is the oldest live delivery
        }
        self.bytes += delivery.payload.len();
        self.deliveries.push_back(delivery);
    }

    /// Handles an Ack (`acked`) or Nack for the oldest unanswered delivery,
    /// timed out or not: answers match deliveries in the order they were
    /// written.
    pub fn answer(
        &mut self,
        acked: bool,
        topics: &[Topic],
        subscribed: Subscribed,
        now: Instant,
    ) -> Result<(), NothingToAnswer> {
        let delivery = self.deliveries.pop_front().ok_or(NothingToAnswer)?;
        self.bytes -= delivery.payload.len();
        let late = self.timed_out > 0;
        if late {
            self.timed_out -= 1;
        } else {
            self.clock_start = now; // the next delivery is now the oldest
        }
        if delivery.settled {
            return Ok(());
        }
        match (acked, late) {
            (true, _) => self.acked(&delivery, late),
            (false, false) => {
                let due = now + self.policy.ack_delay;
                self.retry(delivery, due, topics, subscribed);
            }
            // A late Nack does what its timeout left undone: nothing, as
            // the timeout sent the message again, unless this was the last
            // delivery allowed, whose give-up waited for this answer.
            (false, true) => self.let_go(&delivery, true, topics),
        }
        Ok(())
    }

    /// The client acked `delivery`: its message is done. A group hears so,
    /// whoever holds the message now. A late ack also settles the
    /// redelivery its timeout caused.
    fn acked(&mut self, delivery: &Delivery, late: bool) {
        if delivery.group.is_some() {
            self.answer_group(delivery, true);
        } else if late {
            self.settle_other_deliveries(delivery.topic, delivery.offset);
        }
    }

    /// Takes the redelivery of a message off the schedule, and marks its
    /// deliveries still awaiting answers settled. Only a late ack calls
    /// this, and at most one delivery times out per ack timeout, so the
    /// scans are rare.
    fn settle_other_deliveries(&mut self, topic: TopicId, offset: Offset) {
        let same = |d: &Delivery| d.group.is_none() && d.topic == topic && d.offset == offset;
        for delivery in self.deliveries.iter_mut().filter(|d| same(d)) {
            delivery.settled = true;
        }
        self.redeliveries.retain(|again| !same(&again.0.delivery));
    }

    /// `delivery` was nacked, or went unanswered for the ack timeout: its
    /// message goes out again at `due` (or is given up). A group's message
    /// goes back to the group, which decides.
    fn retry(
        &mut self,
        delivery: Delivery,
        due: Instant,
        topics: &[Topic],
        subscribed: Subscribed,
    ) {
        match delivery.group {
            Some(_) => self.answer_group(&delivery, false),
            None => self.schedule_again(delivery, due, topics, subscribed),
        }
    }

    /// Times out the oldest delivery if its clock has run out by `now`.
    pub fn time_out_if_due(&mut self, topics: &[Topic], subscribed: Subscribed, now: Instant) {
        if self.ack_deadline().is_some_and(|deadline| now >= deadline) {
            self.time_out_oldest(topics, subscribed, now);
        }
    }

    /// The oldest live delivery went unanswered for the ack timeout: its
    /// message is sent again at once, unless it is settled already, or this
    /// was its last delivery allowed (then its answer, however late, will
    /// say whether it is done or given up).
    fn time_out_oldest(&mut self, topics: &[Topic], subscribed: Subscribed, now: Instant) {
        let delivery = self.deliveries[self.timed_out].clone();
        self.timed_out += 1;
        self.clock_start = now;
        log::debug!(
            "conn {}: no answer for {}@{} within the ack timeout",
            self.id,
            topics[delivery.topic].name,
            delivery.offset
        );
        if !delivery.settled && delivery.count < self.policy.max_deliveries {
            self.retry(delivery, now, topics, subscribed);
        }
    }

    fn ack_deadline(&self) -> Option<Instant> {
        let has_live = self.deliveries.len() > self.timed_out;
        has_live.then(|| self.clock_start + self.policy.ack_timeout)
    }

    /// When the deliveries next need the session woken: the ack deadline
    /// of the oldest live delivery, or the next redelivery if there is room
    /// to send it (without room, an answer will make room and pump anyway).
    pub fn next_wake(&self) -> Option<Instant> {
        let redelivery = match self.has_room() {
            true => self.redeliveries.peek().map(|r| r.0.due),
            false => None,
        };
        [self.ack_deadline(), redelivery]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next redelivery, if it is due by `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Delivery> {
        match self.redeliveries.peek() {
            Some(Reverse(next)) if next.due <= now => {
                self.redeliveries.pop().map(|again| again.0.delivery)
            }
            _ => None,
        }
    }

    /// Schedules `delivery` to be sent again at `due`, unless it has been
    /// delivered the maximum number of times (then it is given up) or its
    /// topic was unsubscribed.
    fn schedule_again(
        &mut self,
        delivery: Delivery,
        due: Instant,
        topics: &[Topic],
        subscribed: Subscribed,
    ) {
        if delivery.count >= self.policy.max_deliveries {
            self.give_up(&delivery, topics);
            return;
        }
        if !subscribed(delivery.topic) {
            return;
        }
        let again = Delivery {
            count: delivery.count + 1,
            ..delivery
        };
        self.schedule(again, due);
    }

    /// Puts `delivery` on the schedule, to be sent at `due`.
    fn schedule(&mut self, delivery: Delivery, due: Instant) {
        self.sequence += 1;
        self.redeliveries.push(Reverse(Redelivery {
            due,
            sequence: self.sequence,
            delivery,
        }));
    }

    /// Gives up a message of a fan-out subscription after its last delivery
    /// allowed: logged, and handed to the dispatcher for the dead-letter
    /// topic. (A group gives up its messages itself.)
    fn give_up(&mut self, delivery: &Delivery, topics: &[Topic]) {
        count_give_up(
            format_args!("conn {}", self.id),
            &topics[delivery.topic],
            None,
            delivery.offset,
            delivery.count,
            self.policy.max_deliveries,
        );
        if self.policy.dead_letters {
            self.given_up.push(GivenUp {
                topic: delivery.topic,
                offset: delivery.offset,
                deliveries: delivery.count,
                payload: delivery.payload.clone(),
                by: GivenUpBy::Subscriber(self.id),
            });
        }
    }

    /// Takes back a message this session gave up, whose dead letter could
    /// not be stored: it is not done, and goes out again at `due`, as after
    /// a Nack, to be given up again if it is refused once more. Returns
    /// whether it was taken: a message of a topic the session no longer
    /// subscribes to is not.
    pub fn take_back(&mut self, given_up: GivenUp, due: Instant, subscribed: Subscribed) -> bool {
        if !subscribed(given_up.topic) {
            return false;
        }
        let count = given_up.deliveries + 1;
        let delivery = Delivery::new(
            given_up.topic,
            given_up.offset,
            count,
            given_up.payload,
            None,
        );
        self.schedule(delivery, due);
        true
    }

    /// What an unanswered delivery (`late` if it timed out) leaves behind
    /// when the session stops waiting for its answer, or gets a late Nack
    /// (the same thing, as far as the message goes): a group gets its
    /// message back, and the last delivery allowed of a message, timed out,
    /// gives the message up. A settled delivery, or one whose timeout has
    /// already sent the message again, leaves nothing.
    fn let_go(&mut self, delivery: &Delivery, late: bool, topics: &[Topic]) {
        let last = delivery.count >= self.policy.max_deliveries;
        if delivery.settled || (late && !last) {
            return;
        }
        match delivery.group {
            Some(_) => self.answer_group(delivery, false),
            None if late => self.give_up(delivery, topics),
            None => {}
        }
    }

    /// The connection has closed: no answer will come. Every delivery is let
    /// go, and nothing is owed again.
    pub fn let_go_all(&mut self, topics: &[Topic]) {
        let unanswered: Vec<Delivery> = self.deliveries.drain(..).collect();
        for (i, delivery) in unanswered.iter().enumerate() {
            self.let_go(delivery, i < self.timed_out, topics);
        }
        self.bytes = 0;
        self.timed_out = 0;
        self.redeliveries.clear();
    }

    /// The session left the groups for which `left(topic, group)` holds:
    /// their messages it has yet to answer go back to them, and their
    /// answers, when they come, no longer matter. One pass however many
    /// groups it left: an unsubscribe of a pattern may leave thousands.
    pub fn give_back_to_groups(&mut self, left: impl Fn(TopicId, usize) -> bool, topics: &[Topic]) {
        let timed_out = self.timed_out;
        let mut letting_go = Vec::new();
        for (i, delivery) in self.deliveries.iter_mut().enumerate() {
            let of_left = delivery
                .group
                .is_some_and(|group| left(delivery.topic, group));
            if of_left && !delivery.settled {
                letting_go.push((delivery.clone(), i < timed_out));
                delivery.settled = true; // its answer no longer matters
            }
        }
        for (delivery, late) in letting_go {
            self.let_go(&delivery, late, topics);
        }
    }

    fn answer_group(&mut self, delivery: &Delivery, acked: bool) {
        self.group_answers.push(delivery.group_answer(acked));
    }

    /// The answers to group messages since the last call.
    pub fn take_group_answers(&mut self) -> Vec<GroupAnswer> {
        std::mem::take(&mut self.group_answers)
    }

    /// The messages given up since the last call, for the dead-letter
    /// topics.
    pub fn take_given_up(&mut self) -> Vec<GivenUp> {
        std::mem::take(&mut self.given_up)
    }

    /// The oldest offset of `topic` sent to this connection as a
    /// subscriber (not for a group) that it has not acked: unanswered, or
    /// owed again. For the warning that names what holds a full store.
    pub fn oldest_unacked(&self, topic: TopicId) -> Option<Offset> {
        let owed = self.redeliveries.iter().map(|Reverse(owed)| &owed.delivery);
        let unanswered = self.deliveries.iter().filter(|delivery| !delivery.settled);
        unanswered
            .chain(owed)
            .filter(|delivery| delivery.topic == topic && delivery.group.is_none())
            .map(|delivery| delivery.offset)
            .min()
    }

    /// How many deliveries await an answer, and how many are owed again,
    /// for a test to look at.
    #[cfg(test)]
    pub(crate) fn counts(&self) -> (usize, usize) {
        (self.deliveries.len(), self.redeliveries.len())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::store::Store;

    /// A message given up again, after its dead letter could not be
    /// stored, counts once among its topic's and its group's given up.
    #[test]
    fn a_message_given_up_again_is_counted_once() {
        let log = MemoryStore::new(None, 1 << 20).open("t").unwrap();
        let topic = Topic::new(Arc::from("t"), log, Vec::new());
        let group = Traffic::default();
        for deliveries in [2, 3, 4] {
            count_give_up(
                format_args!("group \"g\""),
                &topic,
                Some(&group),
                0,
                deliveries,
                2,
            );
        }
        let counted = (topic.traffic.given_up.get(), group.given_up.get());
        assert_eq!(counted, (1, 1));
    }
}
