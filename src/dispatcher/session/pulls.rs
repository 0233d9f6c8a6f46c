//! `PULL`s: a connection asks for the messages of a topic, and they stream
//! to it until there are no more (or as many as it asked for), then a
//! `+END` with the count.
//!
//! Not to be confused with `dispatcher/pull.rs`, which takes the `PULL`
//! request and queues it here: this file streams a session's queued pulls
//! to its client.
//!
//! A pull takes its messages from a consumer group of the topic
//! (`group.rs`; the group `default` unless the pull names one), through the
//! same [`Group::next`](crate::dispatcher::group::Group::next) the group's members
//! get theirs from, so pulls and subscribed members share the work. Each
//! message is done once written, and goes through the connection's write
//! window ([`Outbox::has_write_room`]): it is taken from its group as it is
//! queued, so two connections pulling one group never get the same
//! message, and a puller that disconnects takes nothing it was not sent.
//!
//! A pull of a pattern (`PULL orders.*`) takes from the group of each
//! matching topic in turn: one message from the first topic, then one
//! from the next, round robin, so `max` is spread evenly over the topics
//! that have messages, and a topic that runs out leaves its turns to the
//! others. Per topic, the messages come in offset order; across topics,
//! in no order promised. A pull of one topic is the same with one topic.
//!
//! A connection's pulls stream one after the other, in the order they were
//! asked for, and keep its replies in order: while a pull is streaming,
//! the replies to later requests wait behind it, and so do the session's
//! subscriptions, so that its `+END` comes before anything asked for after
//! it.

use std::collections::VecDeque;

use crate::dispatcher::group::{Group, Next};
use crate::dispatcher::session::outbox::Outbox;
use crate::dispatcher::topic::Topic;
use crate::ids::{Offset, TopicId};
use crate::wire::reply::Reply;

/// How many replies may wait behind a pull before the broker decides the
/// client is not reading; each pull queued behind it counts as one, for
/// its `+END`. (Replies that are not held back are bounded by the reader,
/// which stops reading while the client has too many unread.)
const MAX_HELD_REPLIES: usize = 4096;

/// How many topics the pulls queued behind the streaming one may take
/// from, all together (24 bytes each, 6 MiB), before the broker decides
/// the client is not reading: a pull of a pattern keeps every topic it
/// matches, so 4,096 queued pulls of a pattern over 10,000 topics would
/// hold a gigabyte. The streaming pull is not counted, so one pull of a
/// pattern over any number of topics is always taken.
pub(super) const MAX_QUEUED_PULL_SOURCES: usize = 1 << 18;

/// A topic a pull takes from: the consumer group it takes from, and the
/// end of the topic's log when the pull was asked for: it takes nothing
/// published after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullSource {
    pub topic: TopicId,
    /// The group's index among the topic's groups.
    pub group: usize,
    pub until: Offset,
}

/// A `PULL` that is waiting for its turn or streaming.
#[derive(Debug)]
struct Pull {
    /// The topics it takes from, the one whose turn it is first; each
    /// leaves once it has nothing more to give. None left (or none to
    /// start with, for a topic that does not exist): the pull ends.
    sources: VecDeque<PullSource>,
    /// How many more messages it may take.
    left: u64,
    /// How many it has sent.
    sent: u64,
    /// Replies to requests that came after this pull, sent after its end.
    replies_after: Vec<Reply>,
}

/// One connection's pulls, in the order they were asked for; the first one
/// streams.
#[derive(Debug, Default)]
pub struct Pulls {
    queue: VecDeque<Pull>,
}

/// What [`Pulls::stream`] did.
#[derive(Debug, Default)]
pub struct Streamed {
    /// The groups that gave out or skipped messages: their logs must save
    /// where they are.
    pub moved: Vec<(TopicId, usize)>,
    /// Whether any message was queued.
    pub progressed: bool,
}

impl Streamed {
    /// Notes that group `index` of topic `id` finished with a message,
    /// once for each run of messages from the same group.
    fn note_moved(&mut self, id: TopicId, index: usize) {
        if self.moved.last() != Some(&(id, index)) {
            self.moved.push((id, index));
        }
    }
}

impl Pulls {
    /// Queues a pull of up to `max` messages from `sources`, in turn.
    pub fn add(&mut self, sources: Vec<PullSource>, max: Option<u64>) {
        self.queue.push_back(Pull {
            sources: sources.into(),
            left: max.unwrap_or(u64::MAX),
            sent: 0,
            replies_after: Vec::new(),
        });
    }

    /// Whether no pull is unfinished.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether the pull streaming now takes from `topic`.
    pub fn streams_from(&self, topic: TopicId) -> bool {
        let pull = self.queue.front().and_then(|pull| pull.sources.front());
        pull.is_some_and(|source| source.topic == topic)
    }

    /// Queues a reply in `outbox`, or behind the last pull if one is under
    /// way.
    pub fn queue_reply(&mut self, reply: Reply, outbox: &mut Outbox) {
        match self.queue.back_mut() {
            Some(pull) => pull.replies_after.push(reply),
            None => outbox.queue_reply(reply),
        }
    }

    /// The replies waiting behind pulls.
    pub fn held_replies_mut(&mut self) -> impl Iterator<Item = &mut Reply> {
        self.queue
            .iter_mut()
            .flat_map(|p| p.replies_after.iter_mut())
    }

    /// Whether so many replies, or pulls, wait behind the streaming pull
    /// that the client must be sending requests while it does not read it.
    pub fn hold_too_much(&self) -> bool {
        self.held_replies() > MAX_HELD_REPLIES || self.queued_sources() > MAX_QUEUED_PULL_SOURCES
    }

    /// Whether one more pull, taking from `sources` topics, can be queued
    /// without holding too much: checked before it is added, so that a
    /// client that does not read never makes the broker hold more than
    /// the bounds (a pull of a pattern may take from 100,000 topics).
    pub fn has_room_for(&self, sources: usize) -> bool {
        let queued = match self.queue.is_empty() {
            true => 0, // it streams at once: not counted
            false => self.queued_sources() + sources,
        };
        self.held_replies() < MAX_HELD_REPLIES && queued <= MAX_QUEUED_PULL_SOURCES
    }

    /// The replies held behind pulls, each queued pull counting as one
    /// for its `+END`.
    fn held_replies(&self) -> usize {
        let replies: usize = self.queue.iter().map(|p| p.replies_after.len()).sum();
        replies + self.queue.len()
    }

    /// The topics the pulls queued behind the streaming one take from.
    pub fn queued_sources(&self) -> usize {
        let queued = self.queue.iter().skip(1);
        queued.map(|pull| pull.sources.len()).sum()
    }

    /// Streams the pulls into `outbox`, in order, while the writer has
    /// room. Stops when the writer must write first (it will say when it
    /// has), or a message is on its way from the disk (the fetcher will
    /// say when it is here).
    pub fn stream(&mut self, outbox: &mut Outbox, topics: &mut [Topic]) -> Streamed {
        let mut streamed = Streamed::default();
        while let Some(pull) = self.queue.front_mut() {
            let (Some(&source), true) = (pull.sources.front(), pull.left > 0) else {
                self.end_pull(outbox);
                continue;
            };
            let (id, index) = (source.topic, source.group);
            let topic = &mut topics[id];
            let pick = |_: &mut Group| outbox.has_write_room().then_some(());
            let (offset, deliveries, payload) =
                match topic.groups[index].next(&*topic.log, source.until, pick) {
                    Next::Message {
                        offset,
                        deliveries,
                        payload,
                        ..
                    } => (offset, deliveries, payload),
                    Next::Skipped => {
                        streamed.note_moved(id, index);
                        continue;
                    }
                    Next::Empty => {
                        pull.sources.pop_front();
                        continue;
                    }
                    Next::NoRoom | Next::Later => return streamed,
                };
            topic.groups[index].done(offset);
            streamed.note_moved(id, index);
            pull.sources.rotate_left(1); // the next topic's turn
            pull.left -= 1;
            pull.sent += 1;
            streamed.progressed = true;
            outbox.queue_delivery(topic, Some(index), offset, deliveries, payload);
        }
        streamed
    }

    /// Ends the current pull: its `+END`, then the replies that waited
    /// behind it (those behind the next pull wait in that one).
    fn end_pull(&mut self, outbox: &mut Outbox) {
        if let Some(pull) = self.queue.pop_front() {
            outbox.queue_reply(Reply::PullDone { count: pull.sent });
            pull.replies_after
                .into_iter()
                .for_each(|reply| outbox.queue_reply(reply));
        }
    }
}
