//! One connection as the dispatcher sees it: what it subscribes to, what it
//! has been sent but not yet answered, and what it is owed again.
//!
//! A subscription is nothing but a cursor into a topic's log: the offset of
//! the next message to send. Publishing to a topic appends to its log and
//! nudges every subscriber; each one then sends from its cursor for as long as
//! its in-flight window has room. Replaying from the beginning and following
//! the live stream are therefore the same code, a subscriber that falls behind
//! simply has a cursor further back, and a From offset beyond the end of the
//! log waits, delivering nothing, until the log reaches it.
//!
//! A session is made of parts, each in a file of its own:
//!
//! - this file: the subscriptions and their cursors, the round-robin among
//!   them ([`Session::pump`]), the consumer groups the session is a member
//!   of, and the connection's end;
//! - `in_flight.rs`: the deliveries awaiting an answer, the ack timeout,
//!   redeliveries and give-ups;
//! - `outbox.rs`: the frames waiting for the end of the round, and the
//!   window of deliveries that need no answer;
//! - `pulls.rs`: the `PULL`s, streaming one after the other.
//!
//! The window has two bounds: at most `max_inflight` deliveries, and at
//! most `subscriber_buffer` bytes of their payloads, may be unanswered at
//! once. A subscriber that stops reading fills its window and then gets
//! nothing more; nothing queues up for it beyond that, so it costs the
//! broker a bounded amount of memory and nobody else any time. Its cursor
//! waits in the log, and once it reads and answers again it catches up
//! from there at its own pace, in order, and is back on the live stream
//! when its cursor reaches the end of the log.
//!
//! A line-protocol subscription that is not `manual` ([`AckMode::OnWrite`])
//! skips all of that: its deliveries count as done once written, so they
//! never await an answer. Its window is the writer's instead: deliveries
//! are queued while few frames wait to be written, and when too many do,
//! the session asks the writer to report its next write (see `writer.rs`).
//! While a pull streams, the subscriptions wait: its `+END` comes first.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use crate::dispatcher::session::in_flight::{
    Delivery, DeliveryPolicy, GivenUp, GroupAnswer, InFlight, NothingToAnswer,
};
use crate::dispatcher::session::outbox::Outbox;
use crate::dispatcher::session::pulls::{PullSource, Pulls};
use crate::dispatcher::topic::Topic;
use crate::ids::{ConnId, IdMap, Offset, Payload, TopicId};
use crate::store::{DiskFull, Lookup};
use crate::wire::reply::Reply;
use crate::wire::request::{AckMode, StartAt};
use crate::writer::{Link, Parcel, Writer};

pub(crate) mod in_flight;
pub(crate) mod outbox;
pub(crate) mod pulls;

/// The offset a subscription (or a new group) starting at `start` of
/// `topic` starts at, for connection `conn`.
pub fn start_offset(start: StartAt, topic: &Topic, conn: ConnId) -> Offset {
    match start {
        StartAt::Beginning => topic.log.start(),
        StartAt::Current => topic.log.end(),
        StartAt::From(offset) if offset < topic.log.start() => {
            log::warn!(
                "conn {conn}: {}@{offset} was dropped by retention; starting at {}",
                topic.name,
                topic.log.start()
            );
            topic.log.start()
        }
        StartAt::From(offset) => offset,
    }
}

/// A cursor into one topic.
#[derive(Debug)]
struct Subscription {
    /// The offset of the next message to send.
    next: Offset,
    /// Whether the topic is in the session's `ready` queue.
    queued: bool,
    ack: AckMode,
    /// Whether the client named the topic itself, rather than only through
    /// a pattern: `UNSUB` of a pattern leaves such a subscription alone.
    by_name: bool,
}

/// The session's place in a consumer group of one of its topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    pub topic: TopicId,
    /// The group's index among the topic's groups.
    pub group: usize,
    ack: AckMode,
    /// Whether the client named the topic itself, rather than only through
    /// a pattern: `UNSUB` of a pattern leaves such a membership alone.
    pub by_name: bool,
}

/// One connection that is answered: its subscriptions, group memberships,
/// deliveries in flight, pulls, and the frames waiting for its writer. The
/// dispatcher owns every session and drives it with what the connection
/// asks and answers, with the topics' new messages, and with the clock
/// (every method that needs the time takes `now`, so a test can make it
/// up).
#[derive(Debug)]
pub struct Session {
    id: ConnId,
    policy: DeliveryPolicy,
    outbox: Outbox,
    subscriptions: IdMap<TopicId, Subscription>,
    /// Subscribed topics whose logs hold messages not yet sent, in the order
    /// they get a turn: round-robin, one message per turn.
    ready: VecDeque<TopicId>,
    in_flight: InFlight,
    /// The consumer groups the session is a member of, by topic and group
    /// index: a pattern may make thousands, each looked up by every
    /// message the group gives out.
    memberships: BTreeMap<(TopicId, usize), Membership>,
    /// The groups of its memberships that had a message to give out but
    /// found no member with room: they are given to again once this
    /// session has room (`Dispatcher::serve`, `settle_groups`), rather
    /// than every group it is a member of, which a pattern can make
    /// thousands.
    groups_waiting: BTreeSet<(TopicId, usize)>,
    pulls: Pulls,
    /// Set once the client has closed its side (or quit) while pulls were
    /// unfinished: they go on streaming, and the session ends when they
    /// are done, or when this deadline passes without progress.
    closing: Option<Instant>,
    /// Set while a pattern subscription is being made
    /// (`pattern_rounds.rs`): nothing is delivered until its status has
    /// been sent.
    held: bool,
    /// Set once the connection was closed for piling up requests behind
    /// a pull it does not read, so that it is logged once.
    not_reading: bool,
}

impl Session {
    pub fn new(id: ConnId, writer: Writer, policy: DeliveryPolicy, now: Instant) -> Session {
        Session {
            id,
            policy,
            outbox: Outbox::new(writer, policy.max_inflight, policy.subscriber_buffer),
            subscriptions: IdMap::default(),
            ready: VecDeque::new(),
            in_flight: InFlight::new(id, policy, now),
            memberships: BTreeMap::new(),
            groups_waiting: BTreeSet::new(),
            pulls: Pulls::default(),
            closing: None,
            held: false,
            not_reading: false,
        }
    }

    /// Queues a reply, behind the last pull if one is under way.
    pub fn reply(&mut self, reply: Reply) {
        self.pulls.queue_reply(reply, &mut self.outbox);
        self.close_if_not_reading();
    }

    /// Closes the connection if replies or pulls pile up behind a pull:
    /// the client keeps sending requests while it does not read the pull.
    /// Checked as they are queued, since a stalled pull leaves nothing in
    /// the outbox for the round's end to look at.
    fn close_if_not_reading(&mut self) {
        if !self.not_reading && self.pulls.hold_too_much() {
            self.close_for_not_reading();
        }
    }

    /// Closes the connection of a client that does not read its pull,
    /// once: it takes no more pulls.
    fn close_for_not_reading(&mut self) {
        log::warn!("conn {}: not reading its pull; closing it", self.id);
        self.not_reading = true;
        self.outbox.close_connection();
    }

    /// Whether the connection was closed for not reading its pull: a
    /// `PULL` it sent after that is not even looked at.
    pub fn is_closed_for_not_reading(&self) -> bool {
        self.not_reading
    }

    /// Turns the confirmations still queued for messages of `topic` from
    /// offset `from` on into refusals: the disk had no room for those
    /// messages after all (see `Dispatcher::refuse_unwritten`). Nothing
    /// has left the broker yet, so the client only ever sees the refusal.
    pub fn refuse_confirmations(&mut self, topic: TopicId, from: Offset, cause: &Arc<DiskFull>) {
        let held = self.pulls.held_replies_mut();
        for reply in self.outbox.replies_mut().chain(held) {
            reply.refuse_if_taken_back(topic, from, cause);
        }
    }

    /// Points this session's cursor for `topic` at `start`. Returns true if
    /// the session was not subscribed to it before (a repeated subscribe
    /// moves the cursor of the existing subscription).
    ///
    /// Nothing is sent yet: the caller replies Subscribed first and then
    /// calls [`Session::pump`], so the status comes before any replay.
    pub fn subscribe(&mut self, id: TopicId, topic: &Topic, start: StartAt, ack: AckMode) -> bool {
        let next = start_offset(start, topic, self.id);
        let is_new = match self.subscriptions.get_mut(&id) {
            Some(subscription) => {
                subscription.next = next;
                subscription.ack = ack;
                subscription.by_name = true;
                false
            }
            None => {
                self.add_cursor(id, next, ack, true);
                true
            }
        };
        self.mark_ready(id);
        is_new
    }

    /// Subscribes to `topic` at `start` for a pattern that matches it,
    /// unless the session already has a cursor there (by name or by
    /// another pattern): that one is left as it is, so each message is
    /// delivered once. Returns true if the subscription is new.
    pub fn subscribe_by_pattern(
        &mut self,
        id: TopicId,
        topic: &Topic,
        start: StartAt,
        ack: AckMode,
    ) -> bool {
        if self.subscriptions.contains_key(&id) {
            return false;
        }
        self.add_cursor(id, start_offset(start, topic, self.id), ack, false);
        self.mark_ready(id);
        true
    }

    fn add_cursor(&mut self, id: TopicId, next: Offset, ack: AckMode, by_name: bool) {
        let subscription = Subscription {
            next,
            queued: false,
            ack,
            by_name,
        };
        self.subscriptions.insert(id, subscription);
    }

    /// Whether the session subscribes to `topic` because the client named
    /// it, not only through a pattern.
    pub fn subscribed_by_name(&self, topic: TopicId) -> bool {
        self.subscriptions
            .get(&topic)
            .is_some_and(|subscription| subscription.by_name)
    }

    /// Forgets the subscriptions to `topics`. Deliveries already in flight
    /// must still be answered, but none of them is sent again. The topics
    /// leave the `ready` line too, or a client that unsubscribes and
    /// subscribes again while its window is full would add them once more
    /// each time; in one pass over it, however many they are (an
    /// unsubscribe of a pattern may end thousands). Returns how many the
    /// session had.
    pub fn unsubscribe_all(&mut self, topics: &[TopicId]) -> usize {
        let before = self.subscriptions.len();
        for topic in topics {
            self.subscriptions.remove(topic);
        }
        let removed = before - self.subscriptions.len();
        if removed > 0 {
            let subscriptions = &self.subscriptions;
            self.ready.retain(|id| subscriptions.contains_key(id));
        }
        removed
    }

    /// The offset of the next message this session will read from `topic`,
    /// if it subscribes to it: retention must keep the log from there on.
    pub fn cursor(&self, topic: TopicId) -> Option<Offset> {
        self.subscriptions
            .get(&topic)
            .map(|subscription| subscription.next)
    }

    /// The oldest offset of `topic` this session still needs as its
    /// subscriber: the oldest it was sent and has not acked, or else its
    /// [`cursor`](Session::cursor). `None` if it does not subscribe to it.
    pub fn oldest_needed(&self, topic: TopicId) -> Option<Offset> {
        let cursor = self.cursor(topic)?;
        let unacked = self.in_flight.oldest_unacked(topic);
        Some(unacked.map_or(cursor, |offset| offset.min(cursor)))
    }

    /// The topics this session subscribes to.
    pub fn topics(&self) -> impl Iterator<Item = TopicId> + '_ {
        self.subscriptions.keys().copied()
    }

    /// Called after `topic` received a message: queues it if the window has
    /// room and no other topic is waiting for its turn.
    pub fn offer(&mut self, topic: TopicId, topics: &[Topic], now: Instant) {
        self.mark_ready(topic);
        self.pump(topics, now);
    }

    fn mark_ready(&mut self, id: TopicId) {
        if let Some(subscription) = self.subscriptions.get_mut(&id) {
            if !subscription.queued {
                subscription.queued = true;
                self.ready.push_back(id);
            }
        }
    }

    /// Handles an Ack (`acked`) or Nack for the oldest unanswered delivery
    /// (see `in_flight.rs`). The room it frees is filled by the caller's
    /// next [`Session::pump`]: a consumer acks in batches, and one pump
    /// after the batch sends as much as one pump after each ack would, for
    /// far less work.
    pub fn answer(
        &mut self,
        acked: bool,
        topics: &[Topic],
        now: Instant,
    ) -> Result<(), NothingToAnswer> {
        let subscriptions = &self.subscriptions;
        let subscribed = |topic| subscriptions.contains_key(&topic);
        self.in_flight.answer(acked, topics, &subscribed, now)
    }

    /// Called by the dispatcher at (or after) [`Session::next_wake`]: times
    /// out the oldest delivery if its clock has run out, and queues whatever
    /// redeliveries have come due.
    pub fn wake(&mut self, topics: &[Topic], now: Instant) {
        let subscriptions = &self.subscriptions;
        let subscribed = |topic| subscriptions.contains_key(&topic);
        self.in_flight.time_out_if_due(topics, &subscribed, now);
        self.pump(topics, now);
    }

    /// When this session next needs [`Session::wake`]: when its deliveries
    /// need it (an ack deadline, a redelivery), or the deadline of a
    /// closing session.
    pub fn next_wake(&self) -> Option<Instant> {
        [self.in_flight.next_wake(), self.closing]
            .into_iter()
            .flatten()
            .min()
    }

    /// The client has closed its side of the connection, or quit. Its
    /// subscriptions end, and deliveries it has not answered are let go:
    /// they were owed to it alone, except what a group or a give-up keeps.
    /// Pulls it asked for still stream, as long as it keeps reading: a
    /// script may send `PULL` and close at once.
    pub fn close(&mut self, topics: &[Topic], now: Instant) {
        self.subscriptions.clear();
        self.ready.clear();
        self.in_flight.let_go_all(topics);
        self.memberships.clear();
        self.groups_waiting.clear();
        self.closing = Some(now + self.policy.linger);
    }

    /// Whether a closed session is done: its pulls have ended, or made no
    /// progress for the linger. Never while a pull of a pattern is still
    /// looking for its topics, which holds the session: that needs
    /// nothing of the client and ends within rounds, however long a round
    /// takes next to the linger.
    pub fn is_done(&self, now: Instant) -> bool {
        let stalled = |deadline| self.pulls.is_empty() || now >= deadline;
        !self.held && self.closing.is_some_and(stalled)
    }

    /// Joins the consumer group `group` of `topic` (see `group.rs`), as
    /// the client named it (`by_name`) or for a pattern that matches it.
    /// For a pattern, a place the session has already is left as it is,
    /// as [`Session::subscribe_by_pattern`] leaves a cursor.
    pub fn join_group(&mut self, topic: TopicId, group: usize, ack: AckMode, by_name: bool) {
        let membership = Membership {
            topic,
            group,
            ack,
            by_name,
        };
        match self.memberships.entry((topic, group)) {
            Entry::Occupied(_) if !by_name => {}
            Entry::Occupied(mut known) => _ = known.insert(membership),
            Entry::Vacant(place) => _ = place.insert(membership),
        }
    }

    /// Leaves the groups `places` (topic, group index), joined for a
    /// pattern. Messages of theirs that the session has yet to answer go
    /// back to them, in one pass however many they are.
    pub fn leave_groups(&mut self, places: &BTreeSet<(TopicId, usize)>, topics: &[Topic]) {
        let left = |topic, group| places.contains(&(topic, group));
        self.in_flight.give_back_to_groups(left, topics);
        for place in places {
            self.memberships.remove(place);
        }
    }

    /// The session's places in groups, in the order of their topics.
    pub fn memberships(&self) -> impl Iterator<Item = &Membership> + '_ {
        self.memberships.values()
    }

    /// Notes that the group `group` of `topic`, one of the session's,
    /// found no member with room for its next message.
    pub fn wait_for_room(&mut self, topic: TopicId, group: usize) {
        if self.memberships.contains_key(&(topic, group)) {
            self.groups_waiting.insert((topic, group));
        }
    }

    /// The groups noted by [`Session::wait_for_room`] since the last call.
    pub fn take_groups_waiting(&mut self) -> BTreeSet<(TopicId, usize)> {
        std::mem::take(&mut self.groups_waiting)
    }

    /// Whether the session has room for one more message of the group
    /// `group` of `topic`: the same windows as its own subscriptions, and,
    /// as for them, none while a pull streams, since its `+END` and the
    /// replies behind it (a group's `+OK` among them) come first.
    pub fn has_group_room(&self, topic: TopicId, group: usize) -> bool {
        if !self.pulls.is_empty() || self.held {
            return false;
        }
        match self.memberships.get(&(topic, group)).map(|m| m.ack) {
            Some(AckMode::Manual) => self.in_flight.has_room(),
            Some(AckMode::OnWrite) => self.outbox.has_write_room(),
            None => false,
        }
    }

    /// Queues a message that the group `group` of `topic` gave this session,
    /// its `deliveries`th delivery. Returns whether the group is done with it
    /// already: when the session joined without manual acks, writing it is
    /// all it takes.
    pub fn queue_for_group(
        &mut self,
        group: usize,
        offset: Offset,
        deliveries: u32,
        payload: Payload,
        topic: (TopicId, &Topic),
        now: Instant,
    ) -> bool {
        let (id, topic) = topic;
        let membership = self.memberships.get(&(id, group));
        let manual = membership.is_some_and(|m| m.ack == AckMode::Manual);
        if !manual {
            let group = Some(group);
            self.outbox
                .queue_delivery(topic, group, offset, deliveries, payload);
            return true;
        }
        let delivery = Delivery::new(id, offset, deliveries, payload, Some(group));
        self.queue_awaiting_answer(delivery, topic, now);
        false
    }

    /// The answers to group messages since the last call.
    pub fn take_group_answers(&mut self) -> Vec<GroupAnswer> {
        self.in_flight.take_group_answers()
    }

    /// The messages given up since the last call, for the dead-letter
    /// topics.
    pub fn take_given_up(&mut self) -> Vec<GivenUp> {
        self.in_flight.take_given_up()
    }

    /// Takes back a message the session gave up, whose dead letter could
    /// not be stored: it goes out again at `due` (see
    /// [`InFlight::take_back`]). Returns whether it was taken: not if the
    /// session no longer subscribes to its topic, or has closed.
    pub fn take_back(&mut self, given_up: GivenUp, due: Instant) -> bool {
        let subscriptions = &self.subscriptions;
        let subscribed = |topic| subscriptions.contains_key(&topic);
        self.in_flight.take_back(given_up, due, &subscribed)
    }

    /// Queues a pull of up to `max` messages from `sources`, in turn (see
    /// `pulls.rs`). One that would make the session hold too much behind
    /// a pull its client does not read is not queued: the connection is
    /// closed instead, and takes no more pulls.
    pub fn add_pull(&mut self, sources: Vec<PullSource>, max: Option<u64>) {
        if self.not_reading {
            return;
        }
        if !self.pulls.has_room_for(sources.len()) {
            return self.close_for_not_reading();
        }
        self.pulls.add(sources, max);
    }

    /// Streams the pulls, in order, while the writer has room (see
    /// `pulls.rs`). Returns the groups that moved: their logs must save
    /// where they are. A closing session that makes progress gets the
    /// linger again.
    pub fn stream_pulls(&mut self, topics: &mut [Topic], now: Instant) -> Vec<(TopicId, usize)> {
        let streamed = self.pulls.stream(&mut self.outbox, topics);
        if streamed.progressed {
            self.note_progress(now);
        }
        streamed.moved
    }

    /// A closing session's pull made progress (streamed, or had more of
    /// its pattern's topics looked at): it gets the linger again.
    pub fn note_progress(&mut self, now: Instant) {
        if self.closing.is_some() {
            self.closing = Some(now + self.policy.linger);
        }
    }

    /// Holds every delivery back (but not the replies) while a pattern
    /// subscription is made, until
    /// [`Session::release`]: its status must come before anything it
    /// sends.
    pub fn hold(&mut self) {
        self.held = true;
    }

    /// Closes the connection once what is queued now is written: its
    /// client sent too much without waiting for the answers it needs, and
    /// is told so by the error queued last.
    pub fn close_once_written(&mut self) {
        self.outbox.close_once_written();
    }

    /// Ends [`Session::hold`]; the caller pumps.
    pub fn release(&mut self) {
        self.held = false;
    }

    /// Whether a pull is still unfinished.
    pub fn is_pulling(&self) -> bool {
        !self.pulls.is_empty()
    }

    /// Whether the pull streaming now takes from `topic`.
    pub fn is_pulling_from(&self, topic: TopicId) -> bool {
        self.pulls.streams_from(topic)
    }

    /// Packs the queued frames for the writer thread, for the dispatcher to
    /// hand over at the end of its round.
    pub fn pack(&mut self) -> Option<Parcel> {
        self.outbox.pack()
    }

    /// What is left of a session once the dispatcher forgets it: the link
    /// to its writer, whose channel closes, which tells whether frames are
    /// still on their way to the socket.
    pub fn into_link(self) -> Link {
        self.outbox.into_link()
    }

    /// Whether frames wait in the outbox, to be packed at the round's end.
    pub fn has_frames_queued(&self) -> bool {
        !self.outbox.is_empty()
    }

    /// Queues due redeliveries, then new messages, round-robin across
    /// topics, until the window is full or nothing is left to queue. A subscription
    /// whose turn comes when its window is full holds up the ones behind it
    /// until there is room: the topics of one connection share its windows.
    pub fn pump(&mut self, topics: &[Topic], now: Instant) {
        if !self.pulls.is_empty() || self.held {
            return; // subscriptions wait until the pulls are done
        }
        loop {
            if self.in_flight.has_room() {
                if let Some(again) = self.in_flight.pop_due(now) {
                    self.queue_redelivery(again, topics, now);
                    continue;
                }
            }
            let Some(&id) = self.ready.front() else {
                break;
            };
            let Some(ack) = self.subscriptions.get(&id).map(|s| s.ack) else {
                self.ready.pop_front(); // not subscribed (cannot happen: see unsubscribe)
                continue;
            };
            let room = match ack {
                AckMode::Manual => self.in_flight.has_room(),
                AckMode::OnWrite => self.outbox.has_write_room(),
            };
            if !room {
                break;
            }
            self.ready.pop_front();
            self.queue_next(id, &topics[id], now);
        }
    }

    /// Queues the message at the cursor of the subscription to `topic`, and
    /// puts the topic back in line if it has more.
    fn queue_next(&mut self, id: TopicId, topic: &Topic, now: Instant) {
        let Some(subscription) = self.subscriptions.get_mut(&id) else {
            return;
        };
        let offset = subscription.next;
        let payload = match topic.log.read(offset) {
            Lookup::Message(payload) => Some(payload),
            // Damaged on disk (the log has said so): skipped, so that the
            // cursor neither stops there nor holds back retention.
            Lookup::Unreadable => None,
            // Caught up (or waiting for a From offset), or the message is
            // on its way from the disk: the topic is offered again once
            // there is something to send.
            Lookup::Nothing | Lookup::Later => {
                subscription.queued = false;
                return;
            }
        };
        subscription.next = offset + 1;
        if subscription.next < topic.log.end() {
            self.ready.push_back(id);
        } else {
            subscription.queued = false;
        }
        let Some(payload) = payload else {
            return;
        };
        match subscription.ack {
            AckMode::Manual => {
                let delivery = Delivery::new(id, offset, 1, payload, None);
                self.queue_awaiting_answer(delivery, topic, now);
            }
            AckMode::OnWrite => self.outbox.queue_delivery(topic, None, offset, 1, payload),
        }
    }

    /// Queues a delivery, and waits for its answer.
    fn queue_awaiting_answer(&mut self, delivery: Delivery, topic: &Topic, now: Instant) {
        let payload = delivery.payload.clone();
        let (group, offset, count) = (delivery.group, delivery.offset, delivery.count);
        self.outbox
            .queue_delivery(topic, group, offset, count, payload);
        self.in_flight.track(delivery, now);
    }

    /// Queues a redelivery that came due, unless its topic was unsubscribed
    /// since it was scheduled.
    fn queue_redelivery(&mut self, delivery: Delivery, topics: &[Topic], now: Instant) {
        if self.subscriptions.contains_key(&delivery.topic) {
            let topic = &topics[delivery.topic];
            self.queue_awaiting_answer(delivery, topic, now);
        }
    }
}

/// The session's rules driven by hand, the way the dispatcher drives them,
/// at made-up instants: no socket, no writer thread, no waiting. A test
/// reads what a session queued for its writer straight from its outbox.
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::dispatcher::group::test_log::DamagedLog;
    use crate::dispatcher::group::{Group, Next, Refused};
    use crate::store::memory::MemoryStore;
    use crate::store::Store;
    use crate::wire::reply::Outgoing;

    const MAX_DELIVERIES: u32 = 3;

    /// The one topic of every test.
    const TOPIC: TopicId = 0;
    /// Its consumer group, in the tests with one.
    const GROUP: usize = 0;

    fn policy(max_inflight: usize) -> DeliveryPolicy {
        DeliveryPolicy {
            max_deliveries: MAX_DELIVERIES,
            max_inflight,
            ..DeliveryPolicy::for_test()
        }
    }

    /// The offsets of the deliveries among `frames`.
    fn delivered(frames: &[Outgoing]) -> Vec<Offset> {
        let offsets = frames.iter().filter_map(|frame| match frame {
            Outgoing::Delivery { offset, .. } => Some(*offset),
            Outgoing::Reply(_) => None,
        });
        offsets.collect()
    }

    /// One topic in memory and a few sessions (connection `n` is
    /// `sessions[n]`), with a clock of their own.
    struct Broker {
        topics: Vec<Topic>,
        sessions: Vec<Session>,
        t0: Instant,
    }

    impl Broker {
        /// `connections` sessions, each with a window of `max_inflight`.
        fn new(connections: usize, max_inflight: usize) -> Broker {
            let log = MemoryStore::new(None, 1 << 30).open("t").unwrap();
            let t0 = Instant::now();
            let policy = policy(max_inflight);
            let sessions = (0..connections)
                .map(|conn| Session::new(conn as ConnId, Writer::for_test(), policy, t0))
                .collect();
            Broker {
                topics: vec![Topic::new(Arc::from("t"), log, Vec::new())],
                sessions,
                t0,
            }
        }

        /// Gives connection `conn` a policy of its own, before it does
        /// anything.
        fn change_policy(&mut self, conn: usize, change: impl FnOnce(&mut DeliveryPolicy)) {
            let mut policy = self.sessions[conn].policy;
            change(&mut policy);
            let session = Session::new(conn as ConnId, Writer::for_test(), policy, self.t0);
            self.sessions[conn] = session;
        }

        /// The instant `ms` milliseconds into the test.
        fn at(&self, ms: u64) -> Instant {
            self.t0 + Duration::from_millis(ms)
        }

        /// Subscribes connection `conn` to the topic, from the beginning,
        /// with manual acks.
        fn subscribe(&mut self, conn: usize) {
            let session = &mut self.sessions[conn];
            session.subscribe(
                TOPIC,
                &self.topics[TOPIC],
                StartAt::Beginning,
                AckMode::Manual,
            );
            session.pump(&self.topics, self.t0);
        }

        /// Appends `count` messages to the topic (`m<offset>`) and offers
        /// them to every session, as a publish does.
        fn publish(&mut self, count: usize, ms: u64) {
            for _ in 0..count {
                let end = self.topics[TOPIC].log.end();
                let payload = Payload::from(format!("m{end}").into_bytes());
                self.topics[TOPIC].log.append(payload, 0).unwrap();
            }
            self.offer(ms);
        }

        /// Offers the topic's new messages to its subscribers.
        fn offer(&mut self, ms: u64) {
            let now = self.at(ms);
            for session in &mut self.sessions {
                if session.subscriptions.contains_key(&TOPIC) {
                    session.offer(TOPIC, &self.topics, now);
                }
            }
        }

        /// Appends one message of `payload` and offers it.
        fn publish_payload(&mut self, payload: Vec<u8>, ms: u64) {
            self.topics[TOPIC]
                .log
                .append(Payload::from(payload), 0)
                .unwrap();
            self.offer(ms);
        }

        /// The offsets delivered to `conn` since the last call, as if its
        /// writer had written them at once.
        fn sent(&mut self, conn: usize) -> Vec<Offset> {
            delivered(&self.sessions[conn].outbox.take_frames())
        }

        /// An Ack (or Nack) from `conn`, then the refill the dispatcher
        /// does after the round's answers.
        fn answer(&mut self, conn: usize, acked: bool, ms: u64) {
            let now = self.at(ms);
            let session = &mut self.sessions[conn];
            session.answer(acked, &self.topics, now).unwrap();
            session.pump(&self.topics, now);
        }

        fn ack(&mut self, conn: usize, ms: u64) {
            self.answer(conn, true, ms);
        }

        fn nack(&mut self, conn: usize, ms: u64) {
            self.answer(conn, false, ms);
        }

        /// The dispatcher's wake-up of `conn`, at `ms`.
        fn wake(&mut self, conn: usize, ms: u64) {
            let now = self.at(ms);
            self.sessions[conn].wake(&self.topics, now);
        }

        /// The client of `conn` closed its side of the connection.
        fn close(&mut self, conn: usize, ms: u64) {
            let now = self.at(ms);
            self.sessions[conn].close(&self.topics, now);
        }

        /// The offsets `conn` gave up since the last call, with their
        /// delivery counts.
        fn given_up(&mut self, conn: usize) -> Vec<(Offset, u32)> {
            let given_up = self.sessions[conn].take_given_up();
            given_up.iter().map(|g| (g.offset, g.deliveries)).collect()
        }

        /// Makes connection `conn` a member of the topic's group, with
        /// manual acks.
        fn join_group(&mut self, conn: usize) {
            let topic = &mut self.topics[TOPIC];
            if topic.groups.is_empty() {
                topic.groups.push(Group::new(Arc::from("g"), 0));
            }
            topic.groups[GROUP].join(conn as ConnId);
            self.sessions[conn].join_group(TOPIC, GROUP, AckMode::Manual, true);
        }

        /// Gives out the group's messages as `Dispatcher::pump_group` does:
        /// to the members in turn, skipping those with no room.
        fn hand_out(&mut self, ms: u64) {
            let now = self.at(ms);
            loop {
                let sessions = &self.sessions;
                let topic = &mut self.topics[TOPIC];
                let has_room = |conn| sessions[conn as usize].has_group_room(TOPIC, GROUP);
                let pick = |group: &mut Group| group.next_member(has_room);
                let Next::Message {
                    to,
                    offset,
                    deliveries,
                    payload,
                } = topic.groups[GROUP].next(&*topic.log, topic.log.end(), pick)
                else {
                    return;
                };
                let session = &mut self.sessions[to as usize];
                let topic = (TOPIC, &self.topics[TOPIC]);
                if session.queue_for_group(GROUP, offset, deliveries, payload, topic, now) {
                    self.topics[TOPIC].groups[GROUP].done(offset);
                }
            }
        }

        /// Tells the group what `conn` did with its messages, as
        /// `Dispatcher::settle_groups` does, then gives out what is owed.
        /// Returns the offsets the group gave up.
        fn settle_group(&mut self, conn: usize, ms: u64) -> Vec<Offset> {
            let mut given_up = Vec::new();
            for answer in self.sessions[conn].take_group_answers() {
                let group = &mut self.topics[answer.topic].groups[answer.group];
                if answer.acked {
                    group.done(answer.offset);
                } else if group.refused(answer.offset, answer.deliveries, MAX_DELIVERIES)
                    == Refused::GivenUp
                {
                    given_up.push(answer.offset);
                }
            }
            self.hand_out(ms);
            given_up
        }
    }

    #[test]
    fn a_full_window_sends_nothing_more_until_an_answer_frees_room() {
        let mut broker = Broker::new(1, 2);
        broker.subscribe(0);
        broker.publish(5, 0);
        assert_eq!(broker.sent(0), [0, 1]);
        broker.publish(1, 10);
        assert_eq!(broker.sent(0), [], "the window holds two");
        broker.ack(0, 20);
        assert_eq!(broker.sent(0), [2], "one answer, one more message");
        broker.ack(0, 30);
        broker.ack(0, 30);
        assert_eq!(broker.sent(0), [3, 4]);
    }

    /// The window also bounds the payload bytes in flight; one message
    /// larger than all of it still goes, alone.
    #[test]
    fn the_byte_window_holds_back_what_the_buffer_cannot_take() {
        let mut broker = Broker::new(1, 100);
        broker.change_policy(0, |p| p.subscriber_buffer = 5); // "m0" is 2 bytes
        broker.subscribe(0);
        broker.publish(4, 0);
        assert_eq!(
            broker.sent(0),
            [0, 1, 2],
            "2 + 2 + 2 bytes: the third fills it"
        );
        broker.ack(0, 10);
        assert_eq!(broker.sent(0), [3]);
        broker.ack(0, 20);
        broker.ack(0, 20);
        broker.ack(0, 20);
        broker.publish_payload(vec![0; 64], 30);
        assert_eq!(broker.sent(0), [4], "a message larger than the buffer goes");
    }

    #[test]
    fn an_unanswered_delivery_is_sent_again_after_the_ack_timeout() {
        let mut broker = Broker::new(1, 16);
        broker.subscribe(0);
        broker.publish(1, 0);
        assert_eq!(broker.sent(0), [0]);
        assert_eq!(broker.sessions[0].next_wake(), Some(broker.at(2000)));
        broker.wake(0, 1999);
        assert_eq!(broker.sent(0), [], "not yet");
        broker.wake(0, 2000);
        assert_eq!(broker.sent(0), [0], "sent again at once");
        assert_eq!(broker.given_up(0), []);
    }

    /// A consumer working through its window is not punished for messages
    /// it has not reached: each delivery's clock starts when it becomes
    /// the oldest unanswered one.
    #[test]
    fn the_ack_clock_starts_when_a_delivery_becomes_the_oldest() {
        let mut broker = Broker::new(1, 16);
        broker.subscribe(0);
        broker.publish(2, 0);
        assert_eq!(broker.sent(0), [0, 1]);
        broker.ack(0, 1500);
        assert_eq!(broker.sessions[0].next_wake(), Some(broker.at(3500)));
        broker.wake(0, 3000);
        assert_eq!(
            broker.sent(0),
            [],
            "1 was written at 0, but oldest only at 1500"
        );
        broker.wake(0, 3500);
        assert_eq!(broker.sent(0), [1]);
    }

    /// A delivery that timed out still expects its answer, so it keeps its
    /// place in the window; a late Ack then takes the redelivery it caused,
    /// not yet sent for want of room, off the schedule.
    #[test]
    fn a_late_ack_takes_an_unsent_redelivery_off_the_schedule() {
        let mut broker = Broker::new(1, 1);
        broker.subscribe(0);
        broker.publish(2, 0);
        assert_eq!(broker.sent(0), [0]);
        broker.wake(0, 2000);
        assert_eq!(
            broker.sent(0),
            [],
            "the timed-out delivery fills the window"
        );
        broker.ack(0, 2500);
        assert_eq!(broker.sent(0), [1], "0 is done: not sent again");
        broker.ack(0, 2600);
        broker.wake(0, 60_000);
        assert_eq!(broker.sent(0), []);
        assert_eq!(broker.given_up(0), []);
    }

    #[test]
    fn a_nacked_message_is_sent_again_after_the_ack_delay() {
        let mut broker = Broker::new(1, 2);
        broker.subscribe(0);
        broker.publish(1, 0);
        assert_eq!(broker.sent(0), [0]);
        broker.nack(0, 500);
        assert_eq!(broker.sessions[0].next_wake(), Some(broker.at(1500)));
        broker.wake(0, 1499);
        assert_eq!(broker.sent(0), [], "not before the ack delay");
        broker.publish(1, 1499);
        assert_eq!(broker.sent(0), [1], "new messages need not wait");
        broker.wake(0, 1500);
        assert_eq!(broker.sent(0), [0]);
    }

    #[test]
    fn a_due_redelivery_goes_before_new_messages() {
        let mut broker = Broker::new(1, 1);
        broker.subscribe(0);
        broker.publish(2, 0);
        assert_eq!(broker.sent(0), [0]);
        broker.nack(0, 500);
        assert_eq!(broker.sent(0), [1]);
        broker.publish(1, 1000);
        broker.wake(0, 1500);
        assert_eq!(broker.sent(0), [], "0 is due, but the window is full");
        broker.ack(0, 1600);
        assert_eq!(broker.sent(0), [0], "0 before 2");
        broker.ack(0, 1700);
        assert_eq!(broker.sent(0), [2]);
    }

    /// Answers carry no delivery id: each one is credited to the oldest
    /// delivery still awaiting one, timed out or not.
    #[test]
    fn answers_are_credited_in_write_order_timed_out_deliveries_included() {
        let mut broker = Broker::new(1, 16);
        broker.subscribe(0);
        broker.publish(2, 0);
        assert_eq!(broker.sent(0), [0, 1]);
        broker.wake(0, 2000); // 0 timed out: in flight 0 (late), 1, 0 again
        assert_eq!(broker.sent(0), [0]);
        broker.ack(0, 2100); // credited to the first 0
        broker.nack(0, 2200); // credited to 1
        broker.ack(0, 2300); // credited to the second 0: changes nothing
        broker.wake(0, 3200);
        assert_eq!(broker.sent(0), [1], "the Nack was 1's");
        broker.ack(0, 3300);
        broker.wake(0, 60_000);
        assert_eq!(broker.sent(0), [], "everything answered, nothing owed");
        assert_eq!(broker.sessions[0].in_flight.counts(), (0, 0));
    }

    /// willdot's scenario: the first delivery goes unanswered, the
    /// redelivery is acked. The Ack is credited to the first delivery and
    /// settles the message; the answer to the redelivery changes nothing.
    #[test]
    fn a_late_ack_settles_the_message_whatever_its_redelivery_gets() {
        let mut broker = Broker::new(1, 16);
        broker.subscribe(0);
        broker.publish(1, 0);
        assert_eq!(broker.sent(0), [0]);
        broker.wake(0, 2000);
        assert_eq!(broker.sent(0), [0]);
        broker.ack(0, 2100);
        broker.nack(0, 2200);
        for ms in [3200, 4200, 60_000] {
            broker.wake(0, ms);
        }
        assert_eq!(broker.sent(0), [], "exactly two deliveries");
        assert_eq!(broker.given_up(0), []);
        assert_eq!(broker.sessions[0].next_wake(), None);
    }

    /// The timeout already sent the message again: one refusal, one
    /// redelivery.
    #[test]
    fn a_late_nack_does_not_send_the_message_twice() {
        let mut broker = Broker::new(1, 16);
        broker.subscribe(0);
        broker.publish(1, 0);
        assert_eq!(broker.sent(0), [0]);
        broker.wake(0, 2000);
        assert_eq!(broker.sent(0), [0]);
        broker.nack(0, 2500);
        assert_eq!(broker.sessions[0].in_flight.counts().1, 0, "none scheduled");
        broker.wake(0, 3500);
        assert_eq!(
            broker.sent(0),
            [],
            "no second redelivery after the ack delay"
        );
        assert_eq!(broker.given_up(0), []);
    }

    /// Nacked, or timed out, until the third delivery of three: when that
    /// one is nacked, the message is given up and sent no more.
    #[test]
    fn the_last_delivery_allowed_nacked_gives_the_message_up() {
        let mut broker = Broker::new(1, 16);
        broker.subscribe(0);
        broker.publish(1, 0);
        assert_eq!(broker.sent(0), [0]);
        broker.nack(0, 100);
        broker.wake(0, 1100);
        assert_eq!(broker.sent(0), [0], "second delivery");
        broker.wake(0, 3100); // its timeout: the third, at once
        assert_eq!(broker.sent(0), [0], "third delivery");
        broker.ack(0, 3200); // late, for the second: settles it
        assert_eq!(broker.given_up(0), []);
        broker.nack(0, 3300); // the third's answer: changes nothing
        broker.wake(0, 60_000);
        assert_eq!(broker.sent(0), []);
        assert_eq!(broker.given_up(0), [], "acked once means never given up");

        broker.publish(1, 60_000);
        assert_eq!(broker.sent(0), [1]);
        broker.nack(0, 60_100);
        broker.wake(0, 61_100);
        broker.nack(0, 61_200);
        broker.wake(0, 62_200);
        assert_eq!(broker.sent(0), [1, 1]);
        assert_eq!(broker.given_up(0), []);
        broker.nack(0, 62_300);
        assert_eq!(broker.given_up(0), [(1, MAX_DELIVERIES)]);
        broker.wake(0, 120_000);
        assert_eq!(broker.sent(0), []);
    }

    /// A message given up whose dead letter could not be stored is taken
    /// back: sent again when due, and given up again, one delivery later,
    /// if refused once more. One of a topic the session left is not taken.
    #[test]
    fn a_message_taken_back_goes_out_again_and_is_given_up_again() {
        let mut broker = Broker::new(1, 16);
        broker.change_policy(0, |policy| policy.max_deliveries = 1);
        broker.subscribe(0);
        broker.publish(1, 0);
        assert_eq!(broker.sent(0), [0]);
        broker.nack(0, 100);
        let given_up = broker.sessions[0].take_given_up().pop().unwrap();
        assert_eq!((given_up.offset, given_up.deliveries), (0, 1));
        let due = broker.at(1100);
        assert!(broker.sessions[0].take_back(given_up, due));
        assert_eq!(broker.sessions[0].next_wake(), Some(due));
        broker.wake(0, 1000);
        assert_eq!(broker.sent(0), [], "not due yet");
        broker.wake(0, 1100);
        assert_eq!(broker.sent(0), [0], "out again");
        broker.nack(0, 1200);
        assert_eq!(broker.given_up(0), [(0, 2)], "given up again");

        broker.publish(1, 2000);
        assert_eq!(broker.sent(0), [1]);
        broker.nack(0, 2100);
        let given_up = broker.sessions[0].take_given_up().pop().unwrap();
        broker.sessions[0].unsubscribe_all(&[TOPIC]);
        let due = broker.at(3100);
        assert!(
            !broker.sessions[0].take_back(given_up, due),
            "left the topic"
        );
    }

    /// Drives message 0 to its last delivery allowed, and lets that one
    /// time out.
    fn last_delivery_timed_out() -> Broker {
        let mut broker = Broker::new(1, 16);
        broker.subscribe(0);
        broker.publish(1, 0);
        broker.nack(0, 100);
        broker.wake(0, 1100);
        broker.nack(0, 1200);
        broker.wake(0, 2200);
        assert_eq!(broker.sent(0), [0, 0, 0]);
        broker.wake(0, 4200);
        assert_eq!(broker.sent(0), [], "no fourth delivery");
        assert_eq!(broker.given_up(0), [], "not given up while an Ack may come");
        broker
    }

    #[test]
    fn the_last_delivery_timed_out_then_acked_is_never_given_up() {
        let mut broker = last_delivery_timed_out();
        broker.ack(0, 10_000);
        broker.close(0, 10_000);
        assert_eq!(broker.given_up(0), []);
    }

    #[test]
    fn the_last_delivery_timed_out_then_nacked_is_given_up() {
        let mut broker = last_delivery_timed_out();
        broker.nack(0, 10_000);
        assert_eq!(broker.given_up(0), [(0, MAX_DELIVERIES)]);
        broker.wake(0, 60_000);
        assert_eq!(broker.sent(0), []);
    }

    #[test]
    fn the_last_delivery_timed_out_is_given_up_when_the_connection_ends() {
        let mut broker = last_delivery_timed_out();
        broker.close(0, 10_000);
        assert_eq!(broker.given_up(0), [(0, MAX_DELIVERIES)]);
    }

    /// A client that unsubscribes and subscribes again while its window is
    /// full must not add the topic to the `ready` line once more each time.
    #[test]
    fn resubscribing_with_a_full_window_keeps_the_topic_in_line_once() {
        let mut broker = Broker::new(1, 1);
        broker.subscribe(0);
        broker.publish(3, 0);
        assert_eq!(broker.sent(0), [0]);
        for _ in 0..3 {
            assert_eq!(broker.sessions[0].unsubscribe_all(&[TOPIC]), 1);
            assert!(broker.sessions[0].ready.is_empty(), "out of line");
            broker.subscribe(0);
        }
        assert_eq!(broker.sessions[0].ready, [TOPIC]);
        broker.ack(0, 100);
        broker.ack(0, 100);
        broker.ack(0, 100);
        assert_eq!(broker.sent(0), [0, 1, 2], "from the beginning, each once");
    }

    /// After an unsubscribe, what is in flight must still be answered, but
    /// nothing of the topic is sent again.
    #[test]
    fn an_unsubscribed_topics_nacked_message_is_not_sent_again() {
        let mut broker = Broker::new(1, 16);
        broker.subscribe(0);
        broker.publish(1, 0);
        assert_eq!(broker.sent(0), [0]);
        broker.sessions[0].unsubscribe_all(&[TOPIC]);
        broker.nack(0, 100);
        broker.wake(0, 60_000);
        assert_eq!(broker.sent(0), []);
        assert_eq!(broker.given_up(0), []);
    }

    #[test]
    fn a_groups_messages_go_to_its_members_in_turn() {
        let mut broker = Broker::new(2, 1);
        broker.join_group(0);
        broker.join_group(1);
        broker.publish(3, 0);
        broker.hand_out(0);
        assert_eq!((broker.sent(0), broker.sent(1)), (vec![0], vec![1]));
        broker.ack(0, 100);
        assert_eq!(broker.settle_group(0, 100), []);
        assert_eq!(broker.sent(0), [2], "0 acked, and its turn");
        broker.ack(1, 200);
        broker.settle_group(1, 200);
        assert_eq!(broker.sent(1), [], "nothing left");
        assert_eq!(broker.topics[TOPIC].groups[GROUP].position(), 2);
    }

    #[test]
    fn a_members_nack_gives_the_message_to_the_next_member_in_turn() {
        let mut broker = Broker::new(2, 2);
        broker.join_group(0);
        broker.join_group(1);
        broker.publish(1, 0);
        broker.hand_out(0);
        assert_eq!((broker.sent(0), broker.sent(1)), (vec![0], vec![]));
        broker.nack(0, 100);
        broker.settle_group(0, 100);
        assert_eq!(broker.sent(1), [0], "at once, to the other member");
        broker.wake(0, 60_000);
        assert_eq!(broker.sent(0), [], "the member that nacked owes nothing");
    }

    #[test]
    fn a_member_that_leaves_gives_its_unanswered_messages_back() {
        let mut broker = Broker::new(2, 1);
        broker.join_group(0);
        broker.join_group(1);
        broker.publish(2, 0);
        broker.hand_out(0);
        assert_eq!((broker.sent(0), broker.sent(1)), (vec![0], vec![1]));
        let place = BTreeSet::from([(TOPIC, GROUP)]);
        broker.sessions[0].leave_groups(&place, &broker.topics);
        broker.topics[TOPIC].groups[GROUP].leave(0);
        broker.ack(1, 100);
        broker.settle_group(0, 100);
        broker.settle_group(1, 100);
        assert_eq!(broker.sent(1), [0], "what 0 held goes to 1");
    }

    /// Member 0's delivery times out and goes to member 1, its last
    /// delivery allowed; 0's late Ack settles it for the group, so 1's Nack
    /// neither sends it again nor gives it up.
    #[test]
    fn a_late_ack_in_a_group_outweighs_the_next_members_nack() {
        let mut broker = Broker::new(2, 1);
        broker.change_policy(1, |p| p.max_deliveries = 2);
        broker.join_group(0);
        broker.join_group(1);
        broker.publish(1, 0);
        broker.hand_out(0);
        assert_eq!(broker.sent(0), [0]);
        broker.wake(0, 2000);
        broker.settle_group(0, 2000);
        assert_eq!(
            broker.sent(1),
            [0],
            "the timeout gave it to the next member"
        );
        broker.ack(0, 2100);
        broker.settle_group(0, 2100);
        broker.nack(1, 2200);
        assert_eq!(broker.settle_group(1, 2200), [], "not given up");
        broker.wake(1, 60_000);
        assert_eq!((broker.sent(0), broker.sent(1)), (vec![], vec![]));
        assert_eq!(broker.topics[TOPIC].groups[GROUP].position(), 1);
    }

    #[test]
    fn a_group_message_refused_by_its_last_delivery_allowed_is_given_up() {
        let mut broker = Broker::new(1, 1);
        broker.join_group(0);
        broker.publish(1, 0);
        broker.hand_out(0);
        let mut deliveries = broker.sent(0);
        for ms in [100, 200] {
            broker.nack(0, ms);
            assert_eq!(broker.settle_group(0, ms), []);
            deliveries.extend(broker.sent(0));
        }
        assert_eq!(deliveries, [0, 0, 0]);
        broker.nack(0, 300);
        assert_eq!(broker.settle_group(0, 300), [0]);
        assert_eq!(broker.sent(0), []);
        assert_eq!(broker.topics[TOPIC].groups[GROUP].position(), 1);
    }

    /// A pull takes from the same group as the members: what a member
    /// holds is not pulled, and what is pulled is not given to a member.
    #[test]
    fn a_pull_and_a_member_share_the_groups_messages() {
        let mut broker = Broker::new(2, 16);
        broker.change_policy(0, |p| p.max_inflight = 1);
        broker.join_group(0);
        broker.publish(3, 0);
        broker.hand_out(0);
        assert_eq!(broker.sent(0), [0]);
        let until = broker.topics[TOPIC].log.end();
        let source = PullSource {
            topic: TOPIC,
            group: GROUP,
            until,
        };
        broker.sessions[1].add_pull(vec![source], None);
        let now = broker.at(10);
        let moved = broker.sessions[1].stream_pulls(&mut broker.topics, now);
        assert_eq!(moved, [(TOPIC, GROUP)]);
        let mut frames = broker.sessions[1].outbox.take_frames();
        let end = frames.pop();
        assert!(matches!(
            end,
            Some(Outgoing::Reply(Reply::PullDone { count: 2 }))
        ));
        assert_eq!(delivered(&frames), [1, 2], "what the member does not hold");
        broker.ack(0, 100);
        broker.settle_group(0, 100);
        assert_eq!(broker.sent(0), [], "the pull took the rest");
        assert_eq!(broker.topics[TOPIC].groups[GROUP].position(), 3);
    }

    /// A pull that skips a message it cannot read moves its group past
    /// it, and says so, so that the group's new place is saved.
    #[test]
    fn a_pull_that_skips_an_unreadable_message_moves_its_group() {
        let mut broker = Broker::new(1, 16);
        broker.topics[TOPIC].log = Box::new(DamagedLog::new(0));
        broker.topics[TOPIC]
            .groups
            .push(Group::new(Arc::from("g"), 0));
        broker.publish(1, 0);
        let source = PullSource {
            topic: TOPIC,
            group: GROUP,
            until: 1,
        };
        broker.sessions[0].add_pull(vec![source], None);
        let now = broker.at(10);
        let moved = broker.sessions[0].stream_pulls(&mut broker.topics, now);
        assert_eq!(moved, [(TOPIC, GROUP)], "the group is past 0");
        assert_eq!(broker.topics[TOPIC].groups[GROUP].position(), 1);
        let frames = broker.sessions[0].outbox.take_frames();
        assert!(matches!(
            frames.as_slice(),
            [Outgoing::Reply(Reply::PullDone { count: 0 })]
        ));
    }

    /// A client that pipelines pulls of a pattern over many topics and
    /// reads none: the pull that would take the queued ones past the
    /// bound is not queued, and neither is any after it, so what the
    /// session holds stays bounded however many it sends.
    #[test]
    fn pulls_past_the_bound_are_not_queued() {
        const TOPICS: usize = 100_000;
        let mut broker = Broker::new(1, 16);
        let source = PullSource {
            topic: TOPIC,
            group: GROUP,
            until: 1,
        };
        for _ in 0..100 {
            broker.sessions[0].add_pull(vec![source; TOPICS], None);
        }
        let session = &broker.sessions[0];
        assert!(session.pulls.queued_sources() <= pulls::MAX_QUEUED_PULL_SOURCES);
        assert!(session.is_closed_for_not_reading());
    }

    /// A closed connection's pull of a pattern whose topics are still
    /// being looked for holds its session: however long the rounds take,
    /// the session is not done, and the pull is served once they are.
    #[test]
    fn a_closed_session_held_by_a_pattern_pull_is_not_done_past_the_linger() {
        let mut broker = Broker::new(1, 16);
        let session = &mut broker.sessions[0];
        session.hold();
        session.close(&broker.topics, broker.t0);
        assert!(!session.is_done(broker.t0 + Duration::from_secs(3600)));
        session.release();
        assert!(session.is_done(broker.t0 + Duration::from_secs(3600)));
    }
}
