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
//! Every delivery joins the `in_flight` queue. The client answers deliveries
//! in the order they were written, so an Ack or Nack always answers the front
//! of the queue. A Nack schedules the message again after the ack delay.
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
//!   in_flight:  [ 7 (timed out) | 9 | 10 | 7 again ]      redeliveries: —
//!   late Ack ──▶ settles 7:      9 | 10 | 7 again (settled: answer ignored)
//! ```
//!
//! A message is delivered at most `max_deliveries` times; after that it is
//! given up, logged with its topic and offset, and (unless `--dead-letter
//! off`) handed to the dispatcher, which appends it to the topic's
//! dead-letter topic ([`GivenUp`]). When the last allowed delivery times
//! out, the message is not given up yet: the client may still Ack it. Its
//! answer decides, however late: an Ack settles it, a Nack gives it up, and
//! so does the connection's end if no answer ever came.
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
//! never join `in_flight`. Its window is the writer's instead: deliveries
//! are sent while few frames wait to be written, and when too many do, the
//! session asks the writer to report its next write (see `writer.rs`).
//!
//! A `PULL` streams through the same writer window. Its messages come from
//! a consumer group of the topic (`group.rs`; the group `default` unless
//! the pull names one), each done once written, so pulls and the group's
//! subscribed members share the work. The session queues the pulls and
//! keeps their replies in order: while a pull is
//! streaming, the replies to later requests wait behind it, and so do the
//! session's subscriptions, so that its `+END` comes before anything asked
//! for after it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dispatcher::topic::Topic;
use crate::ids::{ConnId, IdMap, Offset, Payload, TopicId};
use crate::store::{DiskFull, Read};
use crate::wire::reply::{Outgoing, Reply};
use crate::wire::request::{AckMode, StartAt};
use crate::writer::{self, Batch, Link, Parcel, Writer};

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

/// How many replies may wait behind a pull before the broker decides the
/// client is not reading. (Replies that are not held back are bounded by
/// the reader, which stops reading while the client has too many unread.)
const MAX_HELD_REPLIES: usize = 4096;

/// A message a session gave up after `max_deliveries`, for the dead-letter
/// topic.
#[derive(Debug)]
pub struct GivenUp {
    pub topic: TopicId,
    pub offset: Offset,
    pub deliveries: u32,
    pub payload: Payload,
}

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

fn group_answer(delivery: &Delivery, acked: bool) -> GroupAnswer {
    GroupAnswer {
        topic: delivery.topic,
        group: delivery.group.unwrap_or_default(),
        offset: delivery.offset,
        payload: delivery.payload.clone(),
        deliveries: delivery.count,
        acked,
    }
}

/// The client answered a delivery that was never sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NothingToAnswer;

/// A cursor into one topic.
#[derive(Debug)]
struct Subscription {
    /// The offset of the next message to send.
    next: Offset,
    /// Whether the topic is in the session's `ready` queue.
    queued: bool,
    ack: AckMode,
}

/// A message sent and not yet answered, or owed again. It holds its
/// payload, so a message that retention drops from the log while a delivery
/// of it is unanswered is still there to send again.
#[derive(Debug, Clone)]
struct Delivery {
    topic: TopicId,
    offset: Offset,
    /// How many times it has been sent, counting the time it is about to be.
    count: u32,
    payload: Payload,
    /// The consumer group of the topic it was sent for, by index, if any:
    /// its answer goes back to the group, which decides what comes next.
    group: Option<usize>,
    /// Whether its answer no longer matters: the message was acked through
    /// another of its deliveries, or given back to its group when the
    /// session left it. Its answer is still expected (it keeps later answers
    /// matched), but neither the answer nor a timeout does anything.
    settled: bool,
}

/// The session's place in a consumer group of one of its topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    pub topic: TopicId,
    /// The group's index among the topic's groups.
    pub group: usize,
    ack: AckMode,
}

/// What became of a message a group gave this session: for the dispatcher
/// to tell the group ([`Session::take_group_answers`]).
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

/// A `PULL` that is waiting for its turn or streaming.
#[derive(Debug)]
struct Pull {
    /// The topic and the index of the consumer group it takes from; `None`
    /// for a topic that does not exist: the pull ends empty.
    topic: Option<(TopicId, usize)>,
    /// The end of the topic's log when the pull was asked for: it takes
    /// nothing published after it.
    until: Offset,
    /// How many more messages it may take.
    left: u64,
    /// How many it has sent.
    sent: u64,
    /// Replies to requests that came after this pull, sent after its end.
    replies_after: Vec<Reply>,
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

#[derive(Debug)]
pub struct Session {
    id: ConnId,
    policy: DeliveryPolicy,
    writer: Writer,
    /// Frames for the writer, sent as one batch at the end of the
    /// dispatcher's current round, and the payload bytes among them.
    outbox: Batch,
    outbox_payload_bytes: usize,
    subscriptions: IdMap<TopicId, Subscription>,
    /// Subscribed topics whose logs hold messages not yet sent, in the order
    /// they get a turn: round-robin, one message per turn.
    ready: VecDeque<TopicId>,
    in_flight: VecDeque<Delivery>,
    /// The payload bytes of the deliveries in `in_flight`.
    in_flight_bytes: usize,
    /// How many entries at the front of `in_flight` already timed out.
    timed_out: usize,
    /// When the ack clock of the oldest live entry started.
    clock_start: Instant,
    redeliveries: BinaryHeap<Reverse<Redelivery>>,
    sequence: u64,
    /// Messages given up since the dispatcher last took them.
    given_up: Vec<GivenUp>,
    /// The consumer groups the session is a member of, and the answers to
    /// their messages that the dispatcher has yet to take.
    memberships: Vec<Membership>,
    group_answers: Vec<GroupAnswer>,
    /// Pulls in the order they were asked for; the first one streams.
    pulls: VecDeque<Pull>,
    /// Set once the client has closed its side (or quit) while pulls were
    /// unfinished: they go on streaming, and the session ends when they
    /// are done, or when this deadline passes without progress.
    closing: Option<Instant>,
    /// Bookkeeping for the dispatcher: the wake-up it has registered for this
    /// session, and whether the outbox is already on its list to flush.
    pub(crate) wake_registered: Option<Instant>,
    pub(crate) flush_registered: bool,
}

impl Session {
    pub fn new(id: ConnId, writer: Writer, policy: DeliveryPolicy, now: Instant) -> Session {
        Session {
            id,
            policy,
            writer,
            outbox: Vec::new(),
            outbox_payload_bytes: 0,
            subscriptions: IdMap::default(),
            ready: VecDeque::new(),
            in_flight: VecDeque::new(),
            in_flight_bytes: 0,
            timed_out: 0,
            clock_start: now,
            redeliveries: BinaryHeap::new(),
            sequence: 0,
            given_up: Vec::new(),
            memberships: Vec::new(),
            group_answers: Vec::new(),
            pulls: VecDeque::new(),
            closing: None,
            wake_registered: None,
            flush_registered: false,
        }
    }

    /// Queues a reply, behind the last pull if one is under way.
    pub fn reply(&mut self, reply: Reply) {
        match self.pulls.back_mut() {
            Some(pull) => pull.replies_after.push(reply),
            None => self.outbox.push(Outgoing::Reply(reply)),
        }
    }

    /// Turns the confirmations still queued for messages of `topic` from
    /// offset `from` on into refusals: the disk had no room for those
    /// messages after all (see `Dispatcher::refuse_unwritten`). Nothing
    /// has left the broker yet, so the client only ever sees the refusal.
    pub fn refuse_confirmations(&mut self, topic: TopicId, from: Offset, cause: &Arc<DiskFull>) {
        let held = self
            .pulls
            .iter_mut()
            .flat_map(|p| p.replies_after.iter_mut());
        for reply in writer::replies_mut(&mut self.outbox).chain(held) {
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
        let is_new = !self.subscriptions.contains_key(&id);
        let subscription = self.subscriptions.entry(id).or_insert(Subscription {
            next,
            queued: false,
            ack,
        });
        subscription.next = next;
        subscription.ack = ack;
        self.mark_ready(id);
        is_new
    }

    /// Forgets the subscription to `topic`. Deliveries already in flight must
    /// still be answered, but none of them is sent again. The topic leaves
    /// the `ready` line too, or a client that unsubscribes and subscribes
    /// again while its window is full would add it once more each time.
    pub fn unsubscribe(&mut self, topic: TopicId) -> bool {
        let subscribed = self.subscriptions.remove(&topic).is_some();
        if subscribed {
            self.ready.retain(|&id| id != topic);
        }
        subscribed
    }

    /// The offset of the next message this session will read from `topic`,
    /// if it subscribes to it: retention must keep the log from there on.
    pub fn cursor(&self, topic: TopicId) -> Option<Offset> {
        self.subscriptions
            .get(&topic)
            .map(|subscription| subscription.next)
    }

    /// The topics this session subscribes to.
    pub fn topics(&self) -> impl Iterator<Item = TopicId> + '_ {
        self.subscriptions.keys().copied()
    }

    /// Called after `topic` received a message: sends it if the window has
    /// room and no other topic is waiting for its turn.
    pub fn offer(&mut self, topic: TopicId, topics: &[Topic], now: Instant) {
        self.mark_ready(topic);
        self.pump(topics, now);
    }

    /// Handles an Ack (`acked`) or Nack for the oldest unanswered delivery,
    /// timed out or not: answers match deliveries in the order they were
    /// written. The room it frees is filled by the caller's next
    /// [`Session::pump`]: a consumer acks in batches, and one pump after the
    /// batch sends as much as one pump after each ack would, for far less
    /// work.
    pub fn answer(
        &mut self,
        acked: bool,
        topics: &[Topic],
        now: Instant,
    ) -> Result<(), NothingToAnswer> {
        let delivery = self.in_flight.pop_front().ok_or(NothingToAnswer)?;
        self.in_flight_bytes -= delivery.payload.len();
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
            (true, _) => self.settle(&delivery, late),
            (false, false) => self.retry(delivery, now + self.policy.ack_delay, topics),
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
    fn settle(&mut self, delivery: &Delivery, late: bool) {
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
        for delivery in self.in_flight.iter_mut().filter(|d| same(d)) {
            delivery.settled = true;
        }
        self.redeliveries.retain(|again| !same(&again.0.delivery));
    }

    /// `delivery` was nacked, or went unanswered for the ack timeout: its
    /// message goes out again at `due` (or is given up). A group's message
    /// goes back to the group, which decides.
    fn retry(&mut self, delivery: Delivery, due: Instant, topics: &[Topic]) {
        match delivery.group {
            Some(_) => self.answer_group(&delivery, false),
            None => self.schedule_again(delivery, due, topics),
        }
    }

    /// Called by the dispatcher at (or after) [`Session::next_wake`]: times
    /// out the oldest delivery if its clock has run out, and sends whatever
    /// redeliveries have come due.
    pub fn wake(&mut self, topics: &[Topic], now: Instant) {
        if let Some(deadline) = self.ack_deadline() {
            if now >= deadline {
                self.time_out_oldest(topics, now);
            }
        }
        self.pump(topics, now);
    }

    /// The oldest live delivery went unanswered for the ack timeout: its
    /// message is sent again at once, unless it is settled already, or this
    /// was its last delivery allowed (then its answer, however late, will
    /// say whether it is done or given up).
    fn time_out_oldest(&mut self, topics: &[Topic], now: Instant) {
        let delivery = self.in_flight[self.timed_out].clone();
        self.timed_out += 1;
        self.clock_start = now;
        log::debug!(
            "conn {}: no answer for {}@{} within the ack timeout",
            self.id,
            topics[delivery.topic].name,
            delivery.offset
        );
        if !delivery.settled && delivery.count < self.policy.max_deliveries {
            self.retry(delivery, now, topics);
        }
    }

    /// When this session next needs [`Session::wake`]: the ack deadline of
    /// its oldest live delivery, the next redelivery if there is room to
    /// send it (without room, an answer will make room and pump anyway), or
    /// the deadline of a closing session.
    pub fn next_wake(&self) -> Option<Instant> {
        let redelivery = match self.has_room() {
            true => self.redeliveries.peek().map(|r| r.0.due),
            false => None,
        };
        let deadlines = [self.ack_deadline(), redelivery, self.closing];
        deadlines.into_iter().flatten().min()
    }

    /// The client has closed its side of the connection, or quit. Its
    /// subscriptions end, and deliveries it has not answered are dropped:
    /// they were owed to it alone, except what `let_go` keeps.
    /// Pulls it asked for still stream, as long as it keeps reading: a
    /// script may send `PULL` and close at once.
    pub fn close(&mut self, topics: &[Topic], now: Instant) {
        self.subscriptions.clear();
        self.ready.clear();
        let unanswered: Vec<Delivery> = self.in_flight.drain(..).collect();
        for (i, delivery) in unanswered.iter().enumerate() {
            self.let_go(delivery, i < self.timed_out, topics);
        }
        self.memberships.clear();
        self.in_flight_bytes = 0;
        self.timed_out = 0;
        self.redeliveries.clear();
        self.closing = Some(now + self.policy.linger);
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

    /// Whether a closed session is done: its pulls have ended, or made no
    /// progress for the linger.
    pub fn is_finished(&self, now: Instant) -> bool {
        self.closing
            .is_some_and(|deadline| self.pulls.is_empty() || now >= deadline)
    }

    /// Joins the consumer group `group` of `topic` (see `group.rs`).
    pub fn join_group(&mut self, topic: TopicId, group: usize, ack: AckMode) {
        self.memberships
            .retain(|m| !(m.topic == topic && m.group == group));
        self.memberships.push(Membership { topic, group, ack });
    }

    /// Leaves every group of `topic`; returns the groups left. Messages
    /// of theirs that the session has yet to answer go back to them.
    pub fn leave_groups_of(&mut self, topic: TopicId, topics: &[Topic]) -> Vec<usize> {
        let timed_out = self.timed_out;
        let mut letting_go = Vec::new();
        for (i, delivery) in self.in_flight.iter_mut().enumerate() {
            if delivery.topic == topic && delivery.group.is_some() && !delivery.settled {
                letting_go.push((delivery.clone(), i < timed_out));
                delivery.settled = true; // its answer no longer matters
            }
        }
        for (delivery, late) in letting_go {
            self.let_go(&delivery, late, topics);
        }
        let left = self.memberships.iter().filter(|m| m.topic == topic);
        let left: Vec<usize> = left.map(|m| m.group).collect();
        self.memberships.retain(|m| m.topic != topic);
        left
    }

    pub fn memberships(&self) -> &[Membership] {
        &self.memberships
    }

    /// Whether the session has room for one more message of the group
    /// `group` of `topic`: the same windows as its own subscriptions, and,
    /// as for them, none while a pull streams, since its `+END` and the
    /// replies behind it (a group's `+OK` among them) come first.
    pub fn has_group_room(&self, topic: TopicId, group: usize) -> bool {
        if !self.pulls.is_empty() {
            return false;
        }
        let membership = self
            .memberships
            .iter()
            .find(|m| m.topic == topic && m.group == group);
        match membership.map(|m| m.ack) {
            Some(AckMode::Manual) => self.has_room(),
            Some(AckMode::OnWrite) => self.make_write_room(),
            None => false,
        }
    }

    /// Sends a message that the group `group` of `topic` gave this session,
    /// its `deliveries`th delivery. Returns whether the group is done with it
    /// already: when the session joined without manual acks, writing it is
    /// all it takes.
    pub fn deliver_for_group(
        &mut self,
        group: usize,
        offset: Offset,
        deliveries: u32,
        payload: Payload,
        topic: (TopicId, &Topic),
        now: Instant,
    ) -> bool {
        let (id, topic) = topic;
        let manual = self
            .memberships
            .iter()
            .any(|m| m.topic == id && m.group == group && m.ack == AckMode::Manual);
        if !manual {
            self.deliver(topic, Some(group), offset, deliveries, payload);
            return true;
        }
        let delivery = Delivery {
            topic: id,
            offset,
            count: deliveries,
            payload,
            group: Some(group),
            settled: false,
        };
        self.send(delivery, topic, now);
        false
    }

    /// The answers to group messages since the last call.
    pub fn take_group_answers(&mut self) -> Vec<GroupAnswer> {
        std::mem::take(&mut self.group_answers)
    }

    fn answer_group(&mut self, delivery: &Delivery, acked: bool) {
        self.group_answers.push(group_answer(delivery, acked));
    }

    /// The messages given up since the last call, for the dead-letter
    /// topics.
    pub fn take_given_up(&mut self) -> Vec<GivenUp> {
        std::mem::take(&mut self.given_up)
    }

    /// Whether a pull is still unfinished.
    pub fn is_pulling(&self) -> bool {
        !self.pulls.is_empty()
    }

    /// Whether the pull streaming now takes from `topic`.
    pub fn is_pulling_from(&self, topic: TopicId) -> bool {
        let pull = self.pulls.front().and_then(|pull| pull.topic);
        pull.is_some_and(|(id, _)| id == topic)
    }

    /// Packs the queued frames for the writer thread, for the dispatcher to
    /// post at the end of its round. Closes the connection if replies pile
    /// up behind a pull: the client keeps sending requests while it does
    /// not read the pull.
    pub fn pack(&mut self) -> Option<Parcel> {
        let held: usize = self.pulls.iter().map(|p| p.replies_after.len()).sum();
        if held > MAX_HELD_REPLIES {
            log::warn!("conn {}: not reading its replies; closing it", self.id);
            self.writer.link().close();
        }
        self.outbox_payload_bytes = 0;
        let has_frames = !self.outbox.is_empty();
        has_frames.then(|| self.writer.pack(std::mem::take(&mut self.outbox)))
    }

    /// Gives up the session: the connection has closed. Its writer's
    /// channel closes, and the link that is returned tells whether frames are
    /// still on their way to the socket.
    pub fn finish(self) -> Link {
        self.writer.finish()
    }

    pub fn has_output(&self) -> bool {
        !self.outbox.is_empty()
    }

    /// Sends due redeliveries, then new messages, round-robin across topics,
    /// until the window is full or nothing is left to send. A subscription
    /// whose turn comes when its window is full holds up the ones behind it
    /// until there is room: the topics of one connection share its windows.
    pub fn pump(&mut self, topics: &[Topic], now: Instant) {
        if !self.pulls.is_empty() {
            return; // subscriptions wait until the pulls are done
        }
        loop {
            if self.has_room() {
                if let Some(again) = self.pop_due_redelivery(now) {
                    self.send_again(again, topics, now);
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
                AckMode::Manual => self.has_room(),
                AckMode::OnWrite => self.make_write_room(),
            };
            if !room {
                break;
            }
            self.ready.pop_front();
            self.send_next(id, &topics[id], now);
        }
    }

    /// Sends the message at the cursor of the subscription to `topic`, and
    /// puts the topic back in line if it has more.
    fn send_next(&mut self, id: TopicId, topic: &Topic, now: Instant) {
        let Some(subscription) = self.subscriptions.get_mut(&id) else {
            return;
        };
        let offset = subscription.next;
        let payload = match topic.log.read(offset) {
            Read::Message(payload) => Some(payload),
            // Damaged on disk (the log has said so): skipped, so that the
            // cursor neither stops there nor holds back retention.
            Read::Unreadable => None,
            // Caught up (or waiting for a From offset), or the message is
            // on its way from the disk: the topic is offered again once
            // there is something to send.
            Read::Nothing | Read::Later => {
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
                let delivery = Delivery {
                    topic: id,
                    offset,
                    count: 1,
                    payload,
                    group: None,
                    settled: false,
                };
                self.send(delivery, topic, now);
            }
            AckMode::OnWrite => self.deliver(topic, None, offset, 1, payload),
        }
    }

    /// Whether a delivery that awaits an answer may be sent: fewer than the
    /// window's deliveries, and of its bytes, are unanswered. (One message
    /// larger than the whole buffer still goes, alone.)
    fn has_room(&self) -> bool {
        self.in_flight.len() < self.policy.max_inflight
            && self.in_flight_bytes < self.policy.subscriber_buffer
    }

    /// Whether deliveries that need no ack may be sent: fewer frames than
    /// the window, and fewer payload bytes than the buffer, wait to be
    /// written. If not, asks the writer for a notice after its next write,
    /// and looks once more, since the writer may have written just before
    /// it was asked.
    fn make_write_room(&self) -> bool {
        let link = self.writer.link();
        let has_room = || {
            self.outbox.len() + link.unwritten() < self.policy.max_inflight
                && self.outbox_payload_bytes + link.unwritten_payload_bytes()
                    < self.policy.subscriber_buffer
        };
        if has_room() {
            return true;
        }
        link.notify_when_written();
        has_room()
    }

    /// Queues a pull of up to `max` messages from a group of a topic,
    /// taking nothing published from `until` on.
    pub fn add_pull(&mut self, topic: Option<(TopicId, usize)>, until: Offset, max: Option<u64>) {
        self.pulls.push_back(Pull {
            topic,
            until,
            left: max.unwrap_or(u64::MAX),
            sent: 0,
            replies_after: Vec::new(),
        });
    }

    /// Streams the pulls, in order, while the writer has room. Each message
    /// is taken from its group as it is sent, and is done once written, so
    /// two connections pulling one group never get the same message, and a
    /// puller that disconnects takes nothing it was not sent. Returns the
    /// groups that moved: their logs must save where they are.
    pub fn serve_pulls(&mut self, topics: &mut [Topic], now: Instant) -> Vec<(TopicId, usize)> {
        let mut moved = Vec::new();
        while let Some(pull) = self.pulls.front() {
            let Some((id, index)) = pull.topic else {
                self.finish_pull();
                continue;
            };
            let topic = &mut topics[id];
            topic.groups[index].forget_before(topic.log.start());
            if pull.left == 0 || !topic.groups[index].has_work(pull.until) {
                self.finish_pull();
                continue;
            }
            if !self.make_write_room() {
                return moved; // the writer will say when it has written
            }
            let Some((offset, deliveries)) = topic.groups[index].take(pull.until) else {
                self.finish_pull();
                continue;
            };
            let payload = match topic.log.read(offset) {
                Read::Message(payload) => payload,
                Read::Unreadable | Read::Nothing => {
                    topic.groups[index].done(offset); // damaged, or gone: skipped
                    continue;
                }
                Read::Later => {
                    topic.groups[index].put_back(offset, deliveries);
                    return moved; // served again once fetched
                }
            };
            topic.groups[index].done(offset);
            if moved.last() != Some(&(id, index)) {
                moved.push((id, index));
            }
            if let Some(pull) = self.pulls.front_mut() {
                pull.left -= 1;
                pull.sent += 1;
            }
            if self.closing.is_some() {
                self.closing = Some(now + self.policy.linger);
            }
            self.deliver(topic, Some(index), offset, deliveries, payload);
        }
        moved
    }

    /// Ends the current pull: its `+END`, then the replies that waited
    /// behind it (those behind the next pull wait in that one).
    fn finish_pull(&mut self) {
        if let Some(pull) = self.pulls.pop_front() {
            let count = pull.sent;
            self.outbox.push(Outgoing::Reply(Reply::PullDone { count }));
            let replies = pull.replies_after.into_iter().map(Outgoing::Reply);
            self.outbox.extend(replies);
        }
    }

    fn ack_deadline(&self) -> Option<Instant> {
        let has_live = self.in_flight.len() > self.timed_out;
        has_live.then(|| self.clock_start + self.policy.ack_timeout)
    }

    fn mark_ready(&mut self, id: TopicId) {
        if let Some(subscription) = self.subscriptions.get_mut(&id) {
            if !subscription.queued {
                subscription.queued = true;
                self.ready.push_back(id);
            }
        }
    }

    /// Sends a delivery that awaits an answer.
    fn send(&mut self, delivery: Delivery, topic: &Topic, now: Instant) {
        if self.in_flight.len() == self.timed_out {
            self.clock_start = now; // it is the oldest live delivery
        }
        let payload = delivery.payload.clone();
        self.deliver(
            topic,
            delivery.group,
            delivery.offset,
            delivery.count,
            payload,
        );
        self.in_flight_bytes += delivery.payload.len();
        self.in_flight.push_back(delivery);
    }

    /// Queues a message for the writer, and counts it, its `deliveries`th
    /// delivery: for its topic, and for the group that gave it out, if one
    /// did.
    fn deliver(
        &mut self,
        topic: &Topic,
        group: Option<usize>,
        offset: Offset,
        deliveries: u32,
        payload: Payload,
    ) {
        topic.traffic.sent(payload.len(), deliveries);
        if let Some(group) = group.and_then(|index| topic.groups.get(index)) {
            group.traffic.sent(payload.len(), deliveries);
        }
        self.outbox_payload_bytes += payload.len();
        self.outbox.push(Outgoing::Delivery {
            topic: topic.name.clone(),
            offset,
            payload,
        });
    }

    fn pop_due_redelivery(&mut self, now: Instant) -> Option<Redelivery> {
        match self.redeliveries.peek() {
            Some(Reverse(next)) if next.due <= now => self.redeliveries.pop().map(|r| r.0),
            _ => None,
        }
    }

    fn send_again(&mut self, again: Redelivery, topics: &[Topic], now: Instant) {
        let delivery = again.delivery;
        if self.subscriptions.contains_key(&delivery.topic) {
            let topic = &topics[delivery.topic];
            self.send(delivery, topic, now);
        }
    }

    /// Schedules `delivery` to be sent again at `due`, unless it has been
    /// delivered the maximum number of times (then it is given up) or its
    /// topic was unsubscribed.
    fn schedule_again(&mut self, delivery: Delivery, due: Instant, topics: &[Topic]) {
        if delivery.count >= self.policy.max_deliveries {
            self.give_up(&delivery, topics);
            return;
        }
        if !self.subscriptions.contains_key(&delivery.topic) {
            return;
        }
        self.sequence += 1;
        self.redeliveries.push(Reverse(Redelivery {
            due,
            sequence: self.sequence,
            delivery: Delivery {
                count: delivery.count + 1,
                ..delivery
            },
        }));
    }

    /// Gives up a message of a fan-out subscription after its last delivery
    /// allowed: logged, and handed to the dispatcher for the dead-letter
    /// topic. (A group gives up its messages itself.)
    fn give_up(&mut self, delivery: &Delivery, topics: &[Topic]) {
        topics[delivery.topic].traffic.given_up.add(1);
        log::warn!(
            "conn {}: giving up on message {}@{} after {} deliveries",
            self.id,
            topics[delivery.topic].name,
            delivery.offset,
            delivery.count
        );
        if self.policy.dead_letters {
            self.given_up.push(GivenUp {
                topic: delivery.topic,
                offset: delivery.offset,
                deliveries: delivery.count,
                payload: delivery.payload.clone(),
            });
        }
    }
}

/// The session's rules driven by hand, the way the dispatcher drives them,
/// at made-up instants: no socket, no writer thread, no waiting. A test
/// reads what a session queued for its writer straight from its outbox.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::{Group, Refused};
    use crate::store::memory::MemoryStore;
    use crate::store::Store;

    const ACK_DELAY: Duration = Duration::from_secs(1);
    const ACK_TIMEOUT: Duration = Duration::from_secs(2);
    const MAX_DELIVERIES: u32 = 3;

    /// The one topic of every test.
    const TOPIC: TopicId = 0;
    /// Its consumer group, in the tests with one.
    const GROUP: usize = 0;

    fn policy(max_inflight: usize) -> DeliveryPolicy {
        DeliveryPolicy {
            ack_delay: ACK_DELAY,
            ack_timeout: ACK_TIMEOUT,
            max_deliveries: MAX_DELIVERIES,
            dead_letters: true,
            max_inflight,
            subscriber_buffer: 1 << 20,
            linger: Duration::from_secs(5),
        }
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
                self.topics[TOPIC].log.append(payload).unwrap();
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
                .append(Payload::from(payload))
                .unwrap();
            self.offer(ms);
        }

        /// The offsets delivered to `conn` since the last call, as if its
        /// writer had written them at once.
        fn sent(&mut self, conn: usize) -> Vec<Offset> {
            let session = &mut self.sessions[conn];
            session.outbox_payload_bytes = 0;
            let frames = std::mem::take(&mut session.outbox);
            let delivered = frames.into_iter().filter_map(|frame| match frame {
                Outgoing::Delivery { offset, .. } => Some(offset),
                Outgoing::Reply(_) => None,
            });
            delivered.collect()
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
            self.sessions[conn].join_group(TOPIC, GROUP, AckMode::Manual);
        }

        /// Gives out the group's messages as `Dispatcher::pump_group` does:
        /// to the members in turn, skipping those with no room.
        fn hand_out(&mut self, ms: u64) {
            let now = self.at(ms);
            loop {
                let sessions = &self.sessions;
                let topic = &mut self.topics[TOPIC];
                let end = topic.log.end();
                let group = &mut topic.groups[GROUP];
                if !group.has_work(end) {
                    return;
                }
                let has_room = |conn| sessions[conn as usize].has_group_room(TOPIC, GROUP);
                let Some(conn) = group.next_member(has_room) else {
                    return;
                };
                let (offset, deliveries) = group.take(end).unwrap();
                let Read::Message(payload) = topic.log.read(offset) else {
                    panic!("{offset} is in the log");
                };
                let session = &mut self.sessions[conn as usize];
                let topic = (TOPIC, &self.topics[TOPIC]);
                if session.deliver_for_group(GROUP, offset, deliveries, payload, topic, now) {
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
        broker.sessions[0].policy.subscriber_buffer = 5; // "m0" is 2 bytes
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
        assert!(broker.sessions[0].in_flight.is_empty());
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
        assert!(broker.sessions[0].redeliveries.is_empty());
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
            assert!(broker.sessions[0].unsubscribe(TOPIC));
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
        broker.sessions[0].unsubscribe(TOPIC);
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
        let left = broker.sessions[0].leave_groups_of(TOPIC, &broker.topics);
        assert_eq!(left, [GROUP]);
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
        broker.sessions[1].policy.max_deliveries = 2;
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
        broker.sessions[0].policy.max_inflight = 1;
        broker.join_group(0);
        broker.publish(3, 0);
        broker.hand_out(0);
        assert_eq!(broker.sent(0), [0]);
        let until = broker.topics[TOPIC].log.end();
        broker.sessions[1].add_pull(Some((TOPIC, GROUP)), until, None);
        let now = broker.at(10);
        let moved = broker.sessions[1].serve_pulls(&mut broker.topics, now);
        assert_eq!(moved, [(TOPIC, GROUP)]);
        let end = broker.sessions[1].outbox.last();
        assert!(matches!(
            end,
            Some(Outgoing::Reply(Reply::PullDone { count: 2 }))
        ));
        assert_eq!(broker.sent(1), [1, 2], "what the member does not hold");
        broker.ack(0, 100);
        broker.settle_group(0, 100);
        assert_eq!(broker.sent(0), [], "the pull took the rest");
        assert_eq!(broker.topics[TOPIC].groups[GROUP].position(), 3);
    }
}
