//! The dispatcher's agenda: what a round has put off, to its end or to a
//! later time.
//!
//! While it carries out commands, the dispatcher only notes what follows
//! from them here: a session with frames to post ([`Agenda::register`]), a
//! topic to write or trim, a connection whose answers must reach its
//! groups. The steps at the end of the round (`mod.rs`, `run_rounds`) then
//! each take their list and do the work once, however many commands asked
//! for it. The sessions' wake-ups, the lingering writers' deadlines, the
//! groups' messages held back because their dead letters could not be
//! stored (`dead_letters.rs`) and the pattern subscriptions still being
//! made (`pattern_rounds.rs`) stay here across rounds, and tell the
//! dispatcher how long it may wait for the next command.
//!
//! Of this folder it uses only `topic.rs` and `session/` (whose
//! [`Session`] it asks for frames to post and a time to be woken), none of the
//! `impl Dispatcher` files, so `mod.rs` can hold one.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use super::topic::Topic;
use crate::dispatcher::session::in_flight::{GivenUp, GroupAnswer};
use crate::dispatcher::session::pulls::PullSource;
use crate::dispatcher::session::Session;
use crate::ids::{ConnId, IdMap, IdSet, Offset, TopicId};
use crate::pattern::Pattern;
use crate::queue::Hangup;
use crate::reader::MAX_UNREAD_REPLIES;
use crate::store::SyncJob;
use crate::wire::reply::Reply;
use crate::wire::request::{AckMode, Decoded, Request, StartAt};
use crate::writer::{Link, Parcel};

/// What the dispatcher has put off: work for the end of this round (the
/// outboxes to pack, the logs to trim and write, the answers to settle,
/// the publishes to refuse if their write fails, the frames to post), and
/// work for a later time (the sessions' wake-ups, the lingering writers'
/// deadlines).
///
/// Why it is a struct of its own, not more fields of
/// [`Dispatcher`](super::Dispatcher): a method that holds one session
/// (`&mut` into `Dispatcher::sessions`) or one topic must still note what
/// that session or topic needs next, and Rust lets two fields of `self` be
/// borrowed at once, but not a field and all of `self`. So
/// `self.agenda.register(conn, session)` works where a method of
/// `Dispatcher` would not. It also reads as the list of what a round
/// leaves to its end: each step of the round takes its part of it.
#[derive(Default)]
pub(super) struct Agenda {
    /// When each session asked to be woken (an ack timeout, a redelivery
    /// after a Nack, a pull's deadline), earliest first.
    pub(super) wakeups: BinaryHeap<Reverse<(Instant, ConnId)>>,
    /// The wake-up each session is in `wakeups` for: an entry of the heap
    /// that does not match is one an earlier wake-up superseded.
    registered_wakeups: IdMap<ConnId, Instant>,
    /// Sessions with frames in their outboxes, to pack and post, each
    /// once: `listed_to_pack` says which are listed already (a fan-out
    /// registers every subscriber again with each message).
    to_pack: Vec<ConnId>,
    listed_to_pack: IdSet<ConnId>,
    /// Topics that grew past their retention this round.
    pub(super) to_trim: Vec<TopicId>,
    /// Topics appended to or pulled from this round.
    pub(super) to_write: Vec<TopicId>,
    /// This round's publishes that are not readable yet (on disk: not
    /// written to their files yet), by run.
    pub(super) unwritten: Vec<UnwrittenRun>,
    /// This round's dead letters that are not readable yet: if the disk
    /// has no room for them, their messages go back to whoever gave them
    /// up (`dead_letters.rs`).
    pub(super) dead_letters_unwritten: Vec<UnwrittenDeadLetter>,
    /// Messages of consumer groups held back because the disk had no room
    /// for their dead letters, until they go out again (or their dead
    /// letters are tried again).
    pub(super) held_back: HeldBackQueues,
    /// Messages held back by groups with no members whose dead letters
    /// wait for their payloads to come back from the fetcher, by topic,
    /// in offset order (offset, then group): tried again as soon as the
    /// topic's run comes back, before the round's memory budget can drop
    /// it (`dead_letters.rs`).
    pub(super) waiting_for_fetch: IdMap<TopicId, BTreeSet<(Offset, usize)>>,
    /// Connections that answered deliveries (or let them time out) this
    /// round: their windows still have to be refilled, and their answers
    /// have to reach groups and dead letters.
    pub(super) answered: Vec<ConnId>,
    /// The refusals by which groups gave messages up this round, held back
    /// until every answer of the round is settled: an Ack of an earlier
    /// delivery among them, from whichever connection, settles the message
    /// instead (`consumer_groups.rs`, `settle_groups_given_up`).
    pub(super) groups_given_up: Vec<GroupAnswer>,
    /// What makes this round's writes durable, and the frames that must
    /// wait for it.
    pub(super) sync_jobs: Vec<SyncJob>,
    /// Topics written this round, whose groups' places are saved once, at
    /// the end of the round's writes (see
    /// [`TopicLog::save_groups`](crate::store::TopicLog::save_groups)).
    pub(super) groups_to_save: Vec<TopicId>,
    pub(super) parcels: Vec<Parcel>,
    /// Writers of closed connections that still had frames to write, with
    /// the time by which they must be done. Nearly in deadline order, since
    /// every writer gets the same linger: one put back because its frames
    /// reached it late may wait behind a later deadline, and is then cut
    /// off a little late, never early.
    pub(super) lingering: VecDeque<(Instant, Link)>,
    /// Subscribes and pulls naming patterns whose topics are still being
    /// looked for, a slice a round (`pattern_rounds.rs`).
    pub(super) pattern_jobs: PatternJobs,
}

impl Agenda {
    /// Notes the publish of `offset` to `topic`, not readable yet, so that
    /// its publisher can be told if the write fails.
    pub(super) fn note_unwritten(&mut self, topic: TopicId, offset: Offset, publisher: &Publisher) {
        if let Some(run) = self.unwritten.last_mut() {
            if run.topic == topic && run.conn == publisher.conn {
                run.last = offset;
                return;
            }
        }
        self.unwritten.push(UnwrittenRun {
            topic,
            conn: publisher.conn,
            first: offset,
            last: offset,
            hangup: publisher.hangup.cloned(),
        });
    }

    /// Notes that `topic` (whose id is `id`) changed this round.
    pub(super) fn write_later(&mut self, id: TopicId, topic: &mut Topic) {
        if !topic.needs_write {
            topic.needs_write = true;
            self.to_write.push(id);
        }
    }

    /// Notes that topic `topic` grew past its retention, to be trimmed at
    /// the end of the round.
    pub(super) fn trim_later(&mut self, topic: TopicId) {
        if !self.to_trim.contains(&topic) {
            self.to_trim.push(topic);
        }
    }

    /// Registers what `session` needs after it changed: packing, if it has
    /// frames queued, and a wake-up if it needs one earlier than it has.
    pub(super) fn register(&mut self, conn: ConnId, session: &Session) {
        if session.has_frames_queued() && self.listed_to_pack.insert(conn) {
            self.to_pack.push(conn);
        }
        if let Some(when) = session.next_wake() {
            let registered = self.registered_wakeups.get(&conn);
            if registered.is_none_or(|&registered| when < registered) {
                self.registered_wakeups.insert(conn, when);
                self.wakeups.push(Reverse((when, conn)));
            }
        }
    }

    /// The sessions to pack at the round's end, each once; the list starts
    /// again empty.
    pub(super) fn take_to_pack(&mut self) -> Vec<ConnId> {
        self.listed_to_pack.clear();
        std::mem::take(&mut self.to_pack)
    }

    /// Forgets the wake-up registered for `conn`, whose session is gone.
    /// (A listing to pack it goes at the round's end, finding no session.)
    pub(super) fn forget(&mut self, conn: ConnId) {
        self.registered_wakeups.remove(&conn);
    }

    /// Whether `when` is the wake-up registered for `conn`, which is then
    /// taken off the register: `false` for one an earlier wake-up replaced.
    pub(super) fn take_wakeup(&mut self, conn: ConnId, when: Instant) -> bool {
        if self.registered_wakeups.get(&conn) != Some(&when) {
            return false;
        }
        self.registered_wakeups.remove(&conn);
        true
    }
}

/// How many requests (and replies) may wait behind an unfinished pattern
/// subscription before the connection is closed: a client that pipelines
/// more than this without waiting for the `+OK` costs no more memory than
/// one that does not read its replies (see `reader.rs`). Acks and Nacks
/// do not wait (see [`Deferred`]), so a consumer that answers its
/// deliveries meanwhile never reaches it.
const MAX_DEFERRED_REQUESTS: usize = MAX_UNREAD_REPLIES;

/// What a request naming patterns does with each matching topic.
#[derive(Debug)]
pub(super) enum JobKind {
    /// A cursor in it (`group: None`), or a place in the group of that
    /// name, starting at `start` where the cursor or the group is new.
    Subscribe {
        start: StartAt,
        ack: AckMode,
        group: Option<Arc<str>>,
    },
    /// A `PULL` of up to `max` messages, from `group` of each topic:
    /// `sources` collects them.
    Pull {
        group: Arc<str>,
        max: Option<u64>,
        sources: Vec<PullSource>,
    },
}

/// A subscribe, group join or pull whose patterns are still being matched
/// against the topics, a slice at a time (`pattern_rounds.rs`).
#[derive(Debug)]
pub(super) struct PatternJob {
    pub(super) conn: ConnId,
    pub(super) patterns: Vec<Pattern>,
    /// The patterns of a subscription that the connection did not follow
    /// before it: those it forgets if the subscription fails midway.
    pub(super) added: Vec<Pattern>,
    pub(super) kind: JobKind,
    /// The next topic to look at.
    pub(super) next: TopicId,
    /// The number of topics when the job started: later ones are the
    /// pattern record's (`patterns.rs`).
    pub(super) end: TopicId,
    /// What the connection sent after this request, to carry out (or
    /// send) once the job is done, in order.
    pub(super) deferred: Vec<Deferred>,
    /// The bytes of names and payloads the requests in `deferred` hold:
    /// the reader's queue stopped counting them once the dispatcher took
    /// them.
    pub(super) deferred_bytes: usize,
    /// Set once the connection sent too much behind the job: the job is
    /// then answered with this error instead, and the connection closed.
    pub(super) too_much: Option<TooMuchDeferred>,
}

/// What waits behind a connection's unfinished pattern job.
///
/// An Ack or Nack does not wait: its session is held, so every delivery
/// it can answer was written before the job started, and carrying it out
/// at once keeps the promise that an acked message is never sent again,
/// whatever happens to the job (a close drops what waits), and keeps the
/// answer within the ack timeout. Only its refusal, if it answers
/// nothing, must come after the `+OK`, so that waits here in its turn.
#[derive(Debug)]
pub(super) enum Deferred {
    /// A request, with its reader's hang-up.
    Request(Decoded, Option<Arc<Hangup>>),
    /// A reply to a request carried out at once.
    Reply(Reply),
}

/// The unfinished pattern jobs, the oldest first; at most one per
/// connection, since a connection's later requests wait behind its job.
#[derive(Debug, Default)]
pub(super) struct PatternJobs {
    jobs: VecDeque<PatternJob>,
    /// Connections that sent too much behind their job, being closed:
    /// what their readers still hand in is dropped, until they detach.
    hung_up: IdSet<ConnId>,
}

impl PatternJobs {
    /// Whether any job is unfinished: the round loop must not wait.
    pub(super) fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Whether `conn` has an unfinished job.
    pub(super) fn has_job(&self, conn: ConnId) -> bool {
        self.jobs.iter().any(|job| job.conn == conn)
    }

    /// Where what `conn` sends must wait rather than be carried out now,
    /// if it must: behind its unfinished job, or nowhere (it is dropped)
    /// once the connection is being closed for sending too much behind
    /// one. `None`, the common case, costs a look at an empty list.
    pub(super) fn line_of(&mut self, conn: ConnId) -> Option<Line<'_>> {
        if !self.hung_up.is_empty() && self.hung_up.contains(&conn) {
            return Some(Line::Dropped);
        }
        let job = self.jobs.iter_mut().find(|job| job.conn == conn)?;
        Some(Line::Behind(job))
    }

    /// Notes that `conn`, whose job was answered that it sent too much,
    /// is being closed: what its reader still hands in is dropped, until
    /// it detaches ([`PatternJobs::cancel`]).
    pub(super) fn hang_up(&mut self, conn: ConnId) {
        self.hung_up.insert(conn);
    }

    /// Takes the oldest job, for its next slice.
    pub(super) fn take_oldest(&mut self) -> Option<PatternJob> {
        self.jobs.pop_front()
    }

    /// Puts back a job with work left, behind the others.
    pub(super) fn put_back(&mut self, job: PatternJob) {
        self.jobs.push_back(job);
    }

    /// Drops the job of a connection that closed, but a pull goes on,
    /// since a client may close right after asking for one and still read
    /// it (see `session/pulls.rs`). A client that half-closed still reads
    /// its replies, in the order it sent the requests, so every request
    /// that waited behind the job is still answered, in order (see
    /// [`after_a_close`]). They stay behind a pull's job; those behind a
    /// subscription's are returned, to be carried out now, after the
    /// subscription's own status: that it was not made.
    pub(super) fn cancel(&mut self, conn: ConnId) -> Vec<Deferred> {
        self.hung_up.remove(&conn);
        let mut now = Vec::new();
        self.jobs.retain_mut(|job| {
            if job.conn != conn {
                return true;
            }
            let waiting = after_a_close(std::mem::take(&mut job.deferred));
            if matches!(job.kind, JobKind::Pull { .. }) {
                job.deferred = waiting;
                return true;
            }
            now.push(ClosedBefore::Subscribed.reply());
            now.extend(waiting);
            false
        });
        now
    }
}

/// Where what a connection sends waits ([`PatternJobs::line_of`]).
pub(super) enum Line<'a> {
    /// Behind its unfinished job.
    Behind(&'a mut PatternJob),
    /// Nowhere: the connection is being closed, and what it sends dropped.
    Dropped,
}

impl Line<'_> {
    /// Keeps `what` for after the job, to be carried out (or sent) in its
    /// turn. Returns `Err`, once, when the connection sent too much while
    /// it waited (more than [`MAX_DEFERRED_REQUESTS`], or requests
    /// holding more than `max_bytes` of names and payloads): what waited
    /// is dropped, the job is marked to be answered with the error
    /// (`pattern_rounds.rs`), and everything the connection still sends
    /// is dropped without a word.
    pub(super) fn push(self, what: Deferred, max_bytes: usize) -> Result<(), TooMuchDeferred> {
        let Line::Behind(job) = self else {
            return Ok(());
        };
        if job.too_much.is_some() {
            return Ok(());
        }
        if let Some(too_much) = too_much_with(job, &what, max_bytes) {
            job.deferred = Vec::new();
            job.too_much = Some(too_much);
            return Err(too_much);
        }
        job.deferred.push(what);
        Ok(())
    }
}

/// Whether `job` would hold too much with `what` waiting behind it too;
/// counts the bytes `what` holds.
fn too_much_with(
    job: &mut PatternJob,
    what: &Deferred,
    max_bytes: usize,
) -> Option<TooMuchDeferred> {
    if job.deferred.len() >= MAX_DEFERRED_REQUESTS {
        return Some(TooMuchDeferred::Requests);
    }
    job.deferred_bytes += bytes_held(what);
    (job.deferred_bytes > max_bytes).then_some(TooMuchDeferred::Bytes(max_bytes))
}

/// The bytes of names and payload a waiting request holds: a binary
/// Subscribe's list of names may be a mebibyte long, a `PUB`'s payload
/// `--max-message-bytes`.
fn bytes_held(what: &Deferred) -> usize {
    let Deferred::Request(Ok(request), _) = what else {
        return 0;
    };
    let names = |names: &[String]| names.iter().map(String::len).sum::<usize>();
    match request {
        Request::Publish { topic, payload, .. } => topic.len() + payload.len(),
        Request::Subscribe { topics, group, .. } => {
            names(topics) + group.as_ref().map_or(0, String::len)
        }
        Request::Unsubscribe { topics } => names(topics),
        Request::Pull { topic, group, .. } => topic.len() + group.as_ref().map_or(0, String::len),
        _ => 0,
    }
}

/// What becomes of the requests that waited behind a pattern job once
/// their connection has closed: each is carried out, in order, except
/// what a closed connection cannot take, which gets an error in its turn
/// instead. A subscribe or unsubscribe would change subscriptions that
/// have ended; a pull after the first would make the session hold every
/// topic of its pattern for a client that may never read them, so only
/// the first is kept, as for the pull a client sends just before it
/// closes.
fn after_a_close(deferred: Vec<Deferred>) -> Vec<Deferred> {
    let mut pulls = 0;
    let answer = move |what: Deferred| match what {
        Deferred::Request(Ok(Request::Subscribe { .. } | Request::Unsubscribe { .. }), _) => {
            ClosedBefore::Subscribed.reply()
        }
        Deferred::Request(Ok(Request::Pull { .. }), _) if pulls > 0 => ClosedBefore::Pulled.reply(),
        what @ Deferred::Request(Ok(Request::Pull { .. }), _) => {
            pulls += 1;
            what
        }
        what => what,
    };
    deferred.into_iter().map(answer).collect()
}

/// Why a request that waited behind a pattern job was not carried out:
/// its connection closed first (see [`after_a_close`]).
#[derive(Debug, Clone, Copy)]
pub(super) enum ClosedBefore {
    /// A subscribe or unsubscribe, or the pattern subscription itself.
    Subscribed,
    /// A `PULL` after the one a closed connection still gets.
    Pulled,
}

impl ClosedBefore {
    /// The error it is answered with, in its turn.
    fn reply(self) -> Deferred {
        Deferred::Reply(Reply::Error(self.to_string().into()))
    }
}

impl std::fmt::Display for ClosedBefore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClosedBefore::Subscribed => {
                write!(f, "connection closed before the subscription was made")
            }
            ClosedBefore::Pulled => write!(
                f,
                "connection closed before this PULL was taken: after a close, only the \
                 first PULL waiting behind a pattern is served; send the rest on an open \
                 connection"
            ),
        }
    }
}

/// A connection sent too much behind an unfinished pattern job, without
/// waiting for its status: what waits costs memory the reader's limits no
/// longer count, so the connection is closed.
#[derive(Debug, Clone, Copy)]
pub(super) enum TooMuchDeferred {
    /// More than [`MAX_DEFERRED_REQUESTS`] requests.
    Requests,
    /// Requests holding more than this many bytes of names and payloads.
    Bytes(usize),
}

impl std::fmt::Display for TooMuchDeferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TooMuchDeferred::Requests => write!(
                f,
                "sent more than {MAX_DEFERRED_REQUESTS} requests behind a pattern \
                 subscription without waiting for its +OK"
            ),
            TooMuchDeferred::Bytes(limit) => write!(
                f,
                "sent more than {limit} bytes of names and payloads behind a pattern \
                 subscription without waiting for its +OK"
            ),
        }
    }
}

/// A run of messages one connection published to one topic this round,
/// offsets `first..=last`, that are not written to the log's file yet. If
/// the disk has no room for them, their publisher must hear of it.
#[derive(Debug)]
pub(super) struct UnwrittenRun {
    pub(super) topic: TopicId,
    pub(super) conn: ConnId,
    pub(super) first: Offset,
    pub(super) last: Offset,
    /// Set for a publisher that is never answered.
    pub(super) hangup: Option<Arc<Hangup>>,
}

/// A dead letter appended this round at `offset` of the dead-letter topic
/// `topic`, and not written to its file yet. If the disk has no room for
/// it, `given_up` goes back to whoever gave it up.
#[derive(Debug)]
pub(super) struct UnwrittenDeadLetter {
    pub(super) topic: TopicId,
    pub(super) offset: Offset,
    pub(super) given_up: GivenUp,
}

/// A message at `offset` of topic `topic` that its consumer group `group`
/// gave up and holds back, since the disk had no room for its dead letter:
/// it goes out again at `due` (or, if the group has no members then, its
/// dead letter is tried again).
#[derive(Debug)]
pub(super) struct HeldBack {
    pub(super) due: Instant,
    pub(super) topic: TopicId,
    pub(super) group: usize,
    pub(super) offset: Offset,
}

/// The messages held back, in two queues by how long they wait: those of
/// groups with members wait the ack delay, those of groups with none wait
/// longer (`dead_letters.rs`, `held_back_delay`). Each wait is the same
/// for every message of its queue, and each is held from the round's
/// time, which only grows: so a message held back goes last in its queue,
/// and each queue stays in the order due with no sorting (a single sorted
/// queue would have to insert each member's message ahead of every
/// member-less one, moving them all).
#[derive(Debug, Default)]
pub(super) struct HeldBackQueues {
    members: VecDeque<HeldBack>,
    memberless: VecDeque<HeldBack>,
}

impl HeldBackQueues {
    /// Holds `held` back, in the queue of groups with members or not.
    pub(super) fn push(&mut self, held: HeldBack, memberless: bool) {
        match memberless {
            true => self.memberless.push_back(held),
            false => self.members.push_back(held),
        }
    }

    /// When the next message held back is due.
    pub(super) fn next_due(&self) -> Option<Instant> {
        let fronts = [self.members.front(), self.memberless.front()];
        fronts.into_iter().flatten().map(|held| held.due).min()
    }

    /// Takes the messages due at `now`.
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<HeldBack> {
        let mut due = Vec::new();
        for queue in [&mut self.members, &mut self.memberless] {
            let count = queue.partition_point(|held| held.due <= now);
            due.extend(queue.drain(..count));
        }
        due
    }
}

/// Who sent a publish: the connection, whether it is answered, and if it
/// is not, how to close it when its message cannot be stored.
pub(super) struct Publisher<'a> {
    pub(super) conn: ConnId,
    pub(super) confirm: bool,
    pub(super) hangup: Option<&'a Arc<Hangup>>,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::dispatcher::session::in_flight::DeliveryPolicy;
    use crate::writer::Writer;

    fn session(conn: ConnId, now: Instant) -> Session {
        let policy = DeliveryPolicy::for_test();
        Session::new(conn, Writer::for_test(), policy, now)
    }

    /// A fan-out registers every subscriber again with each message, in
    /// turn: each must still be packed once a round, however many came.
    #[test]
    fn sessions_registered_in_turn_are_listed_to_pack_once_a_round() {
        let now = Instant::now();
        let mut agenda = Agenda::default();
        let mut sessions = [session(1, now), session(2, now)];
        for _ in 0..100 {
            for (conn, session) in (1..).zip(sessions.iter_mut()) {
                session.reply(Reply::Pong);
                agenda.register(conn, session);
            }
        }
        assert_eq!(agenda.take_to_pack(), [1, 2]);
        assert!(agenda.take_to_pack().is_empty());
        sessions[1].reply(Reply::Pong);
        agenda.register(2, &sessions[1]);
        assert_eq!(agenda.take_to_pack(), [2], "listed again the next round");
    }

    /// A member's message, held back after a member-less one but due
    /// sooner, is due first, and each pass takes only what is due.
    #[test]
    fn held_back_messages_are_due_by_the_earlier_front_of_the_two_queues() {
        let now = Instant::now();
        let held = |due: Instant, offset: Offset| HeldBack {
            due,
            topic: 0,
            group: 0,
            offset,
        };
        let mut queues = HeldBackQueues::default();
        queues.push(held(now + Duration::from_secs(1), 0), true);
        queues.push(held(now + Duration::from_millis(100), 1), false);
        queues.push(held(now + Duration::from_millis(1100), 2), true);
        assert_eq!(queues.next_due(), Some(now + Duration::from_millis(100)));
        let offsets = |due: Vec<HeldBack>| due.iter().map(|h| h.offset).collect::<Vec<_>>();
        assert_eq!(
            offsets(queues.take_due(now + Duration::from_millis(500))),
            [1]
        );
        assert_eq!(queues.next_due(), Some(now + Duration::from_secs(1)));
        assert_eq!(
            offsets(queues.take_due(now + Duration::from_secs(2))),
            [0, 2]
        );
        assert_eq!(queues.next_due(), None);
    }
}
