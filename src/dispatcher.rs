//! The dispatcher thread: the one owner of the topic table.
//!
//! Every reader thread sends what its client asked for over one bounded
//! crossbeam channel as a [`Command`]; the dispatcher applies the commands one
//! at a time, so no topic, log or subscription is ever shared between threads
//! and nothing here takes a lock. A publish appends to the topic's log and
//! nudges the topic's subscribers ([`Session::offer`]); each subscriber's
//! frames collect in its session's outbox, and at the end of every round the
//! dispatcher hands each outbox to that connection's writer thread in a single
//! channel send.
//!
//! A round is: wait for one command (or the next timer), then take every
//! command already queued, up to [`MAX_COMMANDS_PER_ROUND`] or 5 ms of work,
//! then fire the timers that are due, then settle the round's answers with
//! the consumer groups and dead-letter topics, then trim the topics that
//! grew past their retention, then write the round's messages out of the logs that
//! changed, then bring the logs back within their memory budget (see
//! `budget.rs`; an in-memory store with nothing it may drop holds
//! publishers back), then pack the outboxes and post them, once what they
//! tell of is durable: at once in memory, after the syncer thread's fsync with
//! `--fsync batch` (see `syncer.rs`). Under load a round carries
//! many messages, so channel sends and wake-ups are paid per batch, not per
//! message.
//!
//! Timers (ack timeouts, redeliveries after a Nack, the deadline of a
//! closed connection's unfinished pull) live in one min-heap of
//! `(when, connection)` wake-ups. Each session keeps at most one wake-up that
//! it cares about; a stale entry is recognised and skipped when it pops.
//!
//! The channel is bounded, so a dispatcher that falls behind makes readers
//! wait, which stops them reading, which lets TCP push back on publishers:
//! memory stays bounded without any explicit flow-control message.
//!
//! Requests arrive already decoded, the same whichever protocol the client
//! speaks; the dispatcher answers with [`Reply`] values, and each writer
//! encodes them for its own client. Writers send one command of their own,
//! [`Command::Written`], when a session waits for room to send deliveries
//! that need no ack.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use crate::fetcher::Fetched;
use crate::group::Group;
use crate::line;
use crate::protocol::{AckMode, Decoded, Payload, Request, StartAt};
use crate::queue::CommandReceiver;
use crate::session::{start_offset, DeliveryPolicy, GivenUp, Session};
use crate::stats::{BrokerReport, TopicReport, Traffic};
use crate::store::Read;
use crate::store::{Offset, Store, StoreError, SyncJob, TopicLog};
use crate::syncer::Syncer;
use crate::writer::{Link, Parcel, Reply, Writer};

/// Identifies a connection for the lifetime of the broker.
pub type ConnId = u64;

/// Index of a topic in the dispatcher's table. Topics are never removed, so an
/// index stays valid, and sessions can refer to topics without hashing names.
pub type TopicId = usize;

/// A map keyed by a [`ConnId`] or [`TopicId`].
///
/// The standard `HashMap` hashes with SipHash, which resists keys chosen by
/// an attacker to collide. These keys are numbers the broker assigns itself,
/// never chosen by a client, so a multiply (Fibonacci hashing) is enough, and
/// the dispatcher looks sessions and subscriptions up several times per
/// message.
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// The hasher of [`IdMap`]: one multiplication by 2^64 / φ.
#[derive(Debug, Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// How often the dispatcher looks for topics that aged past their
/// retention (`--retention-age`).
const AGE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// How many commands one round takes before it flushes.
pub const MAX_COMMANDS_PER_ROUND: usize = 1024;

/// How long one round goes on taking commands before it flushes. Nothing
/// the round produced (a delivery, a confirmation) goes out before the
/// round ends, so a round must stay short even when every command is slow,
/// as with `--fsync always`, where each message waits for the disk.
const MAX_ROUND_TIME: Duration = Duration::from_millis(5);

/// What a reader thread asks of the dispatcher.
#[derive(Debug)]
pub enum Command {
    /// The connection will be written to: here is its writer. Sent before
    /// the first request that needs a reply.
    Attach { conn: ConnId, writer: Writer },
    /// Requests (and refusals) decoded from the connection, in order, and
    /// the bytes of message payload among them (see [`queue`](crate::queue)).
    /// Made by [`Command::requests`].
    Requests {
        conn: ConnId,
        requests: Vec<Decoded>,
        payload_bytes: usize,
    },
    /// The connection's writer has written, as the session asked: sent by
    /// the writer thread, for deliveries that wait for room to be written.
    Written { conn: ConnId },
    /// The connection has closed: forget its subscriptions and deliveries.
    Detach { conn: ConnId },
    /// Old records the fetcher thread read from a segment, which a log
    /// answered [`Read::Later`] for (see `fetcher.rs`).
    Fetched(Fetched),
    /// Stop the dispatcher (used when the broker shuts down).
    Shutdown,
}

impl Command {
    /// The command that carries `requests` from connection `conn`.
    pub fn requests(conn: ConnId, requests: Vec<Decoded>) -> Command {
        let payload_bytes = requests
            .iter()
            .map(|request| match request {
                Ok(Request::Publish { payload, .. }) => payload.len(),
                _ => 0,
            })
            .sum();
        Command::Requests {
            conn,
            requests,
            payload_bytes,
        }
    }

    /// How many bytes of message payload the command carries.
    pub fn payload_bytes(&self) -> usize {
        match self {
            Command::Requests { payload_bytes, .. } => *payload_bytes,
            Command::Fetched(fetched) => fetched.payload_bytes,
            _ => 0,
        }
    }
}

/// A topic: its log, the connections subscribed to it, and its counters.
pub struct Topic {
    pub name: Arc<str>,
    pub log: Box<dyn TopicLog>,
    subscribers: Vec<ConnId>,
    /// Its consumer groups (`group.rs`); a group's index never changes.
    pub groups: Vec<Group>,
    /// Whether a group finished a message (or was created) this round, so
    /// the log must save where the groups are.
    groups_moved: bool,
    pub traffic: Traffic,
    /// Whether the log was appended to or pulled from this round, so it
    /// must be written (and made durable) before the round's frames go out.
    unwritten: bool,
}

impl std::fmt::Debug for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topic")
            .field("name", &self.name)
            .field("end", &self.log.end())
            .field("subscribers", &self.subscribers.len())
            .finish()
    }
}

pub struct Dispatcher {
    policy: DeliveryPolicy,
    store: Box<dyn Store>,
    topics: Vec<Topic>,
    topic_ids: HashMap<Arc<str>, TopicId>,
    /// The topic of the last publish. A reader hands consecutive messages for
    /// one topic the same `Arc`, so comparing pointers finds the topic
    /// without hashing its name once per message.
    last_published: Option<(Arc<str>, TopicId)>,
    sessions: IdMap<ConnId, Session>,
    chores: Chores,
    /// Forces each round's writes to disk and then posts its frames.
    syncer: Syncer,
    /// When to look next for topics that aged past their retention, if the
    /// store's logs can (see [`Store::ages_out`]).
    next_age_check: Option<Instant>,
    /// For `STATS`: when the broker started, and how many connections are
    /// open (kept by the acceptor and the readers).
    started: Instant,
    connections: Arc<AtomicUsize>,
    /// Publishers held because the store is full.
    full: FullStore,
}

/// Whether publishers are held because the store is full (see
/// [`Dispatcher::keep_within_budget`]), how many were waiting at the end of
/// the last round (for `STATS`), and when the log last said so.
#[derive(Debug, Default)]
struct FullStore {
    publishers_held: bool,
    publishers_waiting: usize,
    warned: Option<Instant>,
}

/// How often, at most, the log says that publishers wait for memory. A
/// consumer that reads just slower than its publisher fills the store
/// again after every few acks; once a minute tells the story.
const FULL_STORE_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// What must happen to sessions after this round's commands: the wake-ups to
/// fire later, and the outboxes to flush at the end of the round. Kept apart
/// from `sessions` so both can be borrowed at once.
#[derive(Default)]
struct Chores {
    wakeups: BinaryHeap<Reverse<(Instant, ConnId)>>,
    to_flush: Vec<ConnId>,
    /// Topics that grew past their retention this round.
    to_trim: Vec<TopicId>,
    /// Topics appended to or pulled from this round.
    to_write: Vec<TopicId>,
    /// Connections that answered deliveries (or let them time out) this
    /// round: their windows still have to be refilled, and their answers
    /// have to reach groups and dead letters.
    answered: Vec<ConnId>,
    /// What makes this round's writes durable, and the frames that must
    /// wait for it.
    sync_jobs: Vec<SyncJob>,
    parcels: Vec<Parcel>,
    /// Writers of closed connections that still had frames to write, with
    /// the time by which they must be done. In deadline order, since every
    /// writer gets the same linger.
    lingering: VecDeque<(Instant, Link)>,
}

impl Chores {
    /// Notes that `topic` (whose id is `id`) changed this round.
    fn write_later(&mut self, id: TopicId, topic: &mut Topic) {
        if !topic.unwritten {
            topic.unwritten = true;
            self.to_write.push(id);
        }
    }

    fn trim_later(&mut self, topic: TopicId) {
        if !self.to_trim.contains(&topic) {
            self.to_trim.push(topic);
        }
    }

    /// Registers what `session` needs after it changed: a flush if it has
    /// frames queued, and a wake-up if it needs one earlier than it has.
    fn settle(&mut self, conn: ConnId, session: &mut Session) {
        if session.has_output() && !session.flush_registered {
            session.flush_registered = true;
            self.to_flush.push(conn);
        }
        if let Some(when) = session.next_wake() {
            if session
                .wake_registered
                .is_none_or(|registered| when < registered)
            {
                session.wake_registered = Some(when);
                self.wakeups.push(Reverse((when, conn)));
            }
        }
    }
}

impl Dispatcher {
    /// A dispatcher with the topics `store` already holds, whose rounds go
    /// out through `syncer`.
    pub fn new(
        policy: DeliveryPolicy,
        mut store: Box<dyn Store>,
        syncer: Syncer,
        connections: Arc<AtomicUsize>,
    ) -> Result<Dispatcher, StoreError> {
        let recovered = store.recover()?;
        let next_age_check = store.ages_out().then(Instant::now);
        let mut dispatcher = Dispatcher {
            policy,
            store,
            topics: Vec::new(),
            topic_ids: HashMap::new(),
            last_published: None,
            sessions: IdMap::default(),
            chores: Chores::default(),
            syncer,
            next_age_check,
            started: Instant::now(),
            connections,
            full: FullStore::default(),
        };
        for (name, log) in recovered {
            log::info!("topic {name:?}: offsets {} to {}", log.start(), log.end());
            dispatcher.add_topic(name, log);
        }
        Ok(dispatcher)
    }

    /// Runs rounds until told to shut down or every sender has gone.
    ///
    /// A store that fails to write stops the dispatcher at once, before the
    /// round's frames go out: nothing that was not stored is confirmed or
    /// delivered, and the log on disk is left as a crash would leave it,
    /// which recovery knows how to read. Carrying on instead would mean
    /// guessing what of the log the disk really holds.
    pub fn run(mut self, commands: CommandReceiver) -> Result<(), StoreError> {
        let rounds = self.run_rounds(&commands);
        // Rounds already handed to the syncer still go out, once durable.
        let result = rounds.and(self.syncer.stop());
        if let Err(error) = &result {
            log::error!(
                "cannot store messages ({error}); stopping. Nothing unstored was \
                 confirmed or delivered; restart to recover the stored log"
            );
        }
        result
    }

    fn run_rounds(&mut self, commands: &CommandReceiver) -> Result<(), StoreError> {
        loop {
            let first = commands.recv_until(self.next_deadline());
            let now = Instant::now();
            match first {
                Ok(command) => {
                    if !self.handle(command, now)? {
                        return Ok(());
                    }
                    let deadline = now + MAX_ROUND_TIME;
                    for command in commands.try_iter().take(MAX_COMMANDS_PER_ROUND - 1) {
                        if !self.handle(command, now)? {
                            return Ok(());
                        }
                        if Instant::now() >= deadline {
                            break;
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
            self.fire_wakeups(now);
            self.settle_answers(now)?;
            self.close_lingering(now);
            self.check_ages(now);
            self.apply_retention();
            self.write_logs()?;
            self.keep_within_budget(commands, now);
            self.flush()?;
        }
    }

    /// Applies one command. Returns false when the dispatcher should stop,
    /// and an error when the store failed.
    fn handle(&mut self, command: Command, now: Instant) -> Result<bool, StoreError> {
        match command {
            Command::Attach { conn, writer } => {
                let session = Session::new(conn, writer, self.policy, now);
                self.sessions.insert(conn, session);
            }
            Command::Requests { conn, requests, .. } => {
                for request in requests {
                    self.request(conn, request, now)?;
                }
            }
            Command::Written { conn } => self.serve(conn, now),
            Command::Fetched(fetched) => self.fetched(fetched, now),
            Command::Detach { conn } => self.detach(conn, now)?,
            Command::Shutdown => return Ok(false),
        }
        Ok(true)
    }

    /// Carries out one request. Fails only if the store failed.
    fn request(&mut self, conn: ConnId, request: Decoded, now: Instant) -> Result<(), StoreError> {
        match request {
            Ok(Request::Publish {
                topic,
                payload,
                confirm,
            }) => {
                let offset = self.publish(conn, topic, payload, now)?;
                if let (Some(offset), true) = (offset, confirm) {
                    self.reply(conn, Reply::Published { offset });
                }
            }
            Ok(Request::Subscribe {
                topics,
                start,
                ack,
                group: None,
            }) => self.subscribe(conn, &topics, start, ack, now),
            Ok(Request::Subscribe {
                topics,
                start,
                ack,
                group: Some(group),
            }) => self.join_groups(conn, &topics, &group, start, ack, now),
            Ok(Request::Unsubscribe { topics }) => self.unsubscribe(conn, &topics, now)?,
            Ok(Request::Ack) => self.answer(conn, true, now),
            Ok(Request::Nack) => self.answer(conn, false, now),
            Ok(Request::Pull { topic, max, group }) => {
                let group = group.as_deref().unwrap_or(DEFAULT_PULL_GROUP);
                self.pull(conn, &topic, max, group, now)
            }
            Ok(Request::Topics) => self.reply(conn, Reply::Topics(self.topic_reports())),
            Ok(Request::Stats) => {
                let budget = self.store.budget();
                let report = BrokerReport {
                    uptime: now.duration_since(self.started),
                    connections: self.connections.load(Ordering::Relaxed),
                    memory_used: budget.used(),
                    memory_budget: budget.limit(),
                    publishers_waiting: self.full.publishers_waiting,
                    topics: self.topic_reports(),
                };
                self.reply(conn, Reply::Stats(Box::new(report)));
            }
            Ok(Request::Ping) => self.reply(conn, Reply::Pong),
            Ok(Request::Help) => self.reply(conn, Reply::Help),
            Ok(Request::Quit) => {
                // Closed at once, so that nothing published from now on is
                // delivered after the goodbye.
                self.reply(conn, Reply::Bye);
                self.detach(conn, now)?;
            }
            Err(error) => {
                // Debug, not info: a client could otherwise flood the log.
                log::debug!("conn {conn}: refused: {error}");
                self.reply(conn, Reply::Error(error.reason()));
            }
        }
        Ok(())
    }

    /// Appends a message to its topic and offers it to the subscribers.
    /// Returns its offset, or `None` if the topic could not be created (the
    /// publisher is told so). Fails if the store failed to append.
    fn publish(
        &mut self,
        conn: ConnId,
        name: Arc<str>,
        payload: Payload,
        now: Instant,
    ) -> Result<Option<Offset>, StoreError> {
        let id = match &self.last_published {
            Some((last, id)) if Arc::ptr_eq(last, &name) => *id,
            _ => match self.topic_id(&name) {
                Ok(id) => {
                    self.last_published = Some((name, id));
                    id
                }
                Err(error) => {
                    log::error!("conn {conn}: cannot create topic {name:?}: {error}");
                    self.reply(conn, Reply::Error("topic not available"));
                    return Ok(None);
                }
            },
        };
        self.append(id, payload, now).map(Some)
    }

    /// Appends a message to the topic `id` and offers it to the subscribers.
    fn append(
        &mut self,
        id: TopicId,
        payload: Payload,
        now: Instant,
    ) -> Result<Offset, StoreError> {
        let topic = &mut self.topics[id];
        let bytes = payload.len();
        let offset = topic.log.append(payload)?;
        topic.traffic.received(bytes);
        self.chores.write_later(id, topic);
        if topic.log.over_retention() {
            self.chores.trim_later(id);
        }
        self.offer(id, now);
        Ok(offset)
    }

    /// Appends what `conn`'s session gave up to the dead-letter topics: for
    /// topic `t`, the topic `t.dlq`, created as it is needed. Each message
    /// there is one line that says where it came from, then the payload as
    /// it was (see [`dead_letter`]).
    fn dead_letter_given_up(&mut self, conn: ConnId, now: Instant) -> Result<(), StoreError> {
        let Some(session) = self.sessions.get_mut(&conn) else {
            return Ok(());
        };
        for given_up in session.take_given_up() {
            self.send_to_dead_letters(&given_up, now)?;
        }
        Ok(())
    }

    fn send_to_dead_letters(&mut self, given_up: &GivenUp, now: Instant) -> Result<(), StoreError> {
        let origin = self.topics[given_up.topic].name.clone();
        let name = format!("{origin}{DEAD_LETTER_SUFFIX}");
        let id = match self.topic_id(&name) {
            Ok(id) => id,
            Err(error) => {
                log::error!("cannot create dead-letter topic {name:?}: {error}");
                return Ok(());
            }
        };
        let offset = self.append(id, dead_letter(&origin, given_up), now)?;
        log::info!(
            "{origin:?}@{} went to {name:?}@{offset} after {} deliveries",
            given_up.offset,
            given_up.deliveries
        );
        Ok(())
    }

    /// The ids of the topics a subscribe names, creating those that are
    /// new; if one cannot be created, `conn` is told so and gets `None`.
    fn topics_to_subscribe(&mut self, conn: ConnId, names: &[String]) -> Option<Vec<TopicId>> {
        let ids: Result<Vec<TopicId>, StoreError> =
            names.iter().map(|name| self.topic_id(name)).collect();
        match ids {
            Ok(ids) => Some(ids),
            Err(error) => {
                log::error!("conn {conn}: cannot subscribe: {error}");
                self.reply(conn, Reply::Error("topic not available"));
                None
            }
        }
    }

    /// Joins `conn` to the group `group` of each topic, creating the group
    /// where it is new, starting at `start` (see `group.rs`).
    fn join_groups(
        &mut self,
        conn: ConnId,
        names: &[String],
        group: &str,
        start: StartAt,
        ack: AckMode,
        now: Instant,
    ) {
        let Some(ids) = self.topics_to_subscribe(conn, names) else {
            return;
        };
        if !self.sessions.contains_key(&conn) {
            return;
        }
        let mut joined = Vec::new();
        for id in ids {
            let index = self.group_index(id, group, start, conn);
            self.topics[id].groups[index].join(conn);
            joined.push((id, index));
        }
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        for &(id, index) in &joined {
            session.join_group(id, index, ack);
        }
        log::debug!("conn {conn}: joined group {group:?} of {names:?}, {ack:?}");
        session.reply(Reply::Subscribed);
        self.chores.settle(conn, session);
        for (id, index) in joined {
            self.pump_group(id, index, now);
        }
    }

    /// Gives the group's messages to its members, one at a time, taking the
    /// members in turn and skipping those with no room, until the group or
    /// the room runs out.
    fn pump_group(&mut self, id: TopicId, index: usize, now: Instant) {
        loop {
            let sessions = &self.sessions;
            let topic = &mut self.topics[id];
            let end = topic.log.end();
            let group = &mut topic.groups[index];
            group.forget_before(topic.log.start());
            if !group.has_work(end) {
                return;
            }
            let has_room = |conn| {
                sessions
                    .get(&conn)
                    .is_some_and(|s| s.has_group_room(id, index))
            };
            let Some(conn) = group.next_member(has_room) else {
                return;
            };
            let Some((offset, deliveries)) = group.take(end) else {
                return;
            };
            let payload = match topic.log.read(offset) {
                Read::Message(payload) => payload,
                // Unreadable: nothing to deliver, and nothing to wait for.
                Read::Nothing => {
                    self.group_done(id, index, offset);
                    continue;
                }
                // Offered again once it is fetched.
                Read::Later => return topic.groups[index].put_back(offset, deliveries),
            };
            let Some(session) = self.sessions.get_mut(&conn) else {
                return;
            };
            let topic = (id, &self.topics[id]);
            let done = session.deliver_for_group(index, offset, deliveries, payload, topic, now);
            self.chores.settle(conn, session);
            if done {
                self.group_done(id, index, offset);
            }
        }
    }

    /// A group has finished with a message: acked, written, or given up. Its
    /// position is saved with the round.
    fn group_done(&mut self, id: TopicId, index: usize, offset: Offset) {
        let topic = &mut self.topics[id];
        topic.groups[index].done(offset);
        topic.groups_moved = true;
        self.chores.write_later(id, topic);
    }

    /// Tells the groups what became of the messages they gave `conn`, and
    /// gives out what is owed: what came back, and what the room the
    /// answers freed allows. A message delivered `--max-deliveries` times
    /// goes to the dead-letter topic.
    fn settle_groups(&mut self, conn: ConnId, now: Instant) -> Result<(), StoreError> {
        let Some(session) = self.sessions.get_mut(&conn) else {
            return Ok(());
        };
        let answers = session.take_group_answers();
        let mut to_pump: Vec<(TopicId, usize)> = session
            .memberships()
            .iter()
            .map(|m| (m.topic, m.group))
            .collect();
        for answer in answers {
            let group = &mut self.topics[answer.topic].groups[answer.group];
            if answer.acked {
                self.group_done(answer.topic, answer.group, answer.offset);
            } else if answer.deliveries < self.policy.max_deliveries {
                group.again(answer.offset, answer.deliveries);
            } else {
                self.group_done(answer.topic, answer.group, answer.offset);
                let given_up = GivenUp {
                    topic: answer.topic,
                    offset: answer.offset,
                    deliveries: answer.deliveries,
                    payload: answer.payload,
                };
                let topic = &self.topics[answer.topic];
                log::warn!(
                    "group {:?}: giving up on message {}@{} after {} deliveries",
                    topic.groups[answer.group].name,
                    topic.name,
                    answer.offset,
                    answer.deliveries
                );
                if self.policy.dead_letters {
                    self.send_to_dead_letters(&given_up, now)?;
                }
            }
            if !to_pump.contains(&(answer.topic, answer.group)) {
                to_pump.push((answer.topic, answer.group));
            }
        }
        for (id, index) in to_pump {
            self.pump_group(id, index, now);
        }
        Ok(())
    }

    /// Offers the topic's new messages (or those just fetched) to its
    /// subscribers and its groups.
    fn offer(&mut self, id: TopicId, now: Instant) {
        for &conn in &self.topics[id].subscribers {
            if let Some(session) = self.sessions.get_mut(&conn) {
                session.offer(id, &self.topics, now);
                self.chores.settle(conn, session);
            }
        }
        for index in 0..self.topics[id].groups.len() {
            self.pump_group(id, index, now);
        }
    }

    /// Hands a fetched run to its log, and lets the subscribers and pullers
    /// that were waiting for it read on.
    fn fetched(&mut self, fetched: Fetched, now: Instant) {
        let Some(&id) = self.topic_ids.get(&fetched.topic) else {
            return;
        };
        self.topics[id].log.take_fetched(fetched);
        self.offer(id, now);
        let pullers: Vec<ConnId> = self
            .sessions
            .iter()
            .filter(|(_, session)| session.is_pulling_from(id))
            .map(|(&conn, _)| conn)
            .collect();
        for conn in pullers {
            self.serve(conn, now);
        }
    }

    fn subscribe(
        &mut self,
        conn: ConnId,
        names: &[String],
        start: StartAt,
        ack: AckMode,
        now: Instant,
    ) {
        let Some(ids) = self.topics_to_subscribe(conn, names) else {
            return;
        };
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        for id in ids {
            if session.subscribe(id, &self.topics[id], start, ack) {
                self.topics[id].subscribers.push(conn);
            }
        }
        log::debug!("conn {conn}: subscribed to {names:?} from {start:?}, {ack:?}");
        session.reply(Reply::Subscribed);
        session.pump(&self.topics, now);
        self.chores.settle(conn, session);
    }

    /// Ends the connection's subscriptions to the topics, and its place in
    /// their groups.
    fn unsubscribe(
        &mut self,
        conn: ConnId,
        names: &[String],
        now: Instant,
    ) -> Result<(), StoreError> {
        let Some(session) = self.sessions.get_mut(&conn) else {
            return Ok(());
        };
        for name in names {
            if let Some(&id) = self.topic_ids.get(name.as_str()) {
                if session.unsubscribe(id) {
                    remove_subscriber(&mut self.topics[id], conn);
                }
                for index in session.leave_groups_of(id) {
                    self.topics[id].groups[index].leave(conn);
                }
            }
        }
        log::debug!("conn {conn}: unsubscribed from {names:?}");
        session.reply(Reply::Unsubscribed);
        self.chores.settle(conn, session);
        self.settle_groups(conn, now)
    }

    /// An Ack or Nack. What it means for a group, or for the dead-letter
    /// topic, is settled once for all of the round's answers
    /// ([`Dispatcher::settle_answers`]).
    fn answer(&mut self, conn: ConnId, acked: bool, now: Instant) {
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        if session.answer(acked, &self.topics, now).is_err() {
            log::debug!("conn {conn}: answered a delivery that was never sent");
            session.reply(Reply::Error("no delivery to acknowledge"));
        }
        // Answers come in batches, one connection's after another's.
        if self.chores.answered.last() != Some(&conn) {
            self.chores.answered.push(conn);
        }
    }

    /// Settles what the round's answers and timeouts did: fills the room
    /// they freed in each window, gives the groups their answers (and out
    /// what is owed), and sends what was given up to the dead-letter
    /// topics. Once per round and connection, not per answer: a consumer
    /// acks in batches, and its window is then refilled in one go.
    fn settle_answers(&mut self, now: Instant) -> Result<(), StoreError> {
        let mut answered = std::mem::take(&mut self.chores.answered);
        answered.sort_unstable();
        answered.dedup();
        for conn in answered {
            self.refill(conn, now);
            self.dead_letter_given_up(conn, now)?;
            self.settle_groups(conn, now)?;
        }
        Ok(())
    }

    /// Sends a connection what fits the room its answers freed.
    fn refill(&mut self, conn: ConnId, now: Instant) {
        if let Some(session) = self.sessions.get_mut(&conn) {
            session.pump(&self.topics, now);
            self.chores.settle(conn, session);
        }
    }

    fn reply(&mut self, conn: ConnId, reply: Reply) {
        if let Some(session) = self.sessions.get_mut(&conn) {
            session.reply(reply);
            self.chores.settle(conn, session);
        }
    }

    /// Queues a `PULL` on the session and serves it. A topic nobody has
    /// published to is not created for it: the pull just ends empty.
    fn pull(&mut self, conn: ConnId, name: &str, max: Option<u64>, group: &str, now: Instant) {
        let from = self.topic_ids.get(name).copied().map(|id| {
            let index = self.group_index(id, group, StartAt::Beginning, conn);
            (id, index)
        });
        let until = from.map_or(0, |(id, _)| self.topics[id].log.end());
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        session.add_pull(from, until, max);
        self.serve(conn, now);
    }

    /// The index of the group `name` of the topic `id`, created (starting
    /// at `start`) if it is new.
    fn group_index(&mut self, id: TopicId, name: &str, start: StartAt, conn: ConnId) -> usize {
        let topic = &mut self.topics[id];
        if let Some(index) = topic.groups.iter().position(|g| *g.name == *name) {
            return index;
        }
        let next = start_offset(start, topic, conn);
        topic.groups.push(Group::new(Arc::from(name), next));
        topic.groups_moved = true;
        self.chores.write_later(id, topic);
        topic.groups.len() - 1
    }

    /// Sends what a session can send now: its pulls, then its
    /// subscriptions. Called after a pull is asked for, and when the writer
    /// reports it has written (which makes room for both).
    fn serve(&mut self, conn: ConnId, now: Instant) {
        if let Some(session) = self.sessions.get_mut(&conn) {
            for (id, _) in session.serve_pulls(&mut self.topics, now) {
                let topic = &mut self.topics[id];
                topic.groups_moved = true;
                self.chores.write_later(id, topic);
            }
            session.pump(&self.topics, now);
            let groups: Vec<(TopicId, usize)> = session
                .memberships()
                .iter()
                .map(|m| (m.topic, m.group))
                .collect();
            self.settle_or_finish(conn, now);
            for (id, index) in groups {
                self.pump_group(id, index, now);
            }
        }
    }

    /// After a session changed: registers what it needs next, or forgets
    /// it if it was closing and is done.
    fn settle_or_finish(&mut self, conn: ConnId, now: Instant) {
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        if session.is_finished(now) {
            self.finish(conn, now);
        } else {
            self.chores.settle(conn, session);
        }
    }

    fn topic_reports(&self) -> Vec<TopicReport> {
        self.topics
            .iter()
            .map(|topic| TopicReport {
                name: topic.name.clone(),
                first: topic.log.start(),
                next: topic.log.end(),
                subscribers: topic.subscribers.len(),
                messages_in: topic.traffic.messages_in.get(),
                bytes_in: topic.traffic.bytes_in.get(),
                messages_out: topic.traffic.messages_out.get(),
                bytes_out: topic.traffic.bytes_out.get(),
                groups: topic
                    .groups
                    .iter()
                    .map(|group| group.report(topic.log.end()))
                    .collect(),
            })
            .collect()
    }

    /// The connection has closed: its subscriptions end at once. The
    /// session itself ends now, or once the pulls it asked for are done.
    fn detach(&mut self, conn: ConnId, now: Instant) -> Result<(), StoreError> {
        if let Some(session) = self.sessions.get_mut(&conn) {
            for id in session.topics() {
                remove_subscriber(&mut self.topics[id], conn);
            }
            for membership in session.memberships() {
                self.topics[membership.topic].groups[membership.group].leave(conn);
            }
            session.close(now);
            // What it had of its groups' messages goes to the others.
            self.settle_groups(conn, now)?;
            self.serve(conn, now);
        }
        Ok(())
    }

    /// Forgets a closed session. Whatever is still queued (such as an
    /// error before a close) goes out, and the writer's channel closes with
    /// the session. A writer with frames left gets until the linger
    /// deadline; one whose pull stalled is cut off at once, since its
    /// client has already stopped reading for that long.
    fn finish(&mut self, conn: ConnId, now: Instant) {
        let Some(mut session) = self.sessions.remove(&conn) else {
            return;
        };
        if let Some(parcel) = session.pack() {
            self.chores.parcels.push(parcel);
        }
        let stalled = session.is_pulling();
        let link = session.finish();
        if stalled {
            log::debug!("conn {conn}: closed while its pull was not being read");
            link.close();
        } else if link.unwritten() > 0 {
            let deadline = now + self.policy.linger;
            self.chores.lingering.push_back((deadline, link));
        }
    }

    /// Shuts the socket of every lingering writer whose deadline has passed
    /// and that is still not done: its client has stopped reading, and the
    /// thread would otherwise wait in `write` for ever.
    fn close_lingering(&mut self, now: Instant) {
        while let Some((deadline, _)) = self.chores.lingering.front() {
            if *deadline > now {
                break;
            }
            if let Some((_, link)) = self.chores.lingering.pop_front() {
                if link.unwritten() > 0 {
                    link.close();
                }
            }
        }
    }

    /// When the dispatcher must act even if no command comes.
    fn next_deadline(&self) -> Option<Instant> {
        let wakeup = self.chores.wakeups.peek().map(|Reverse((when, _))| *when);
        let linger = self.chores.lingering.front().map(|(deadline, _)| *deadline);
        [wakeup, linger, self.next_age_check]
            .into_iter()
            .flatten()
            .min()
    }

    /// Once a second, when logs can age out, marks those that did for the
    /// round's retention step: an idle topic ages without any publish to
    /// notice it.
    fn check_ages(&mut self, now: Instant) {
        let Some(when) = self.next_age_check else {
            return;
        };
        if now < when {
            return;
        }
        for (id, topic) in self.topics.iter().enumerate() {
            if topic.log.over_retention() {
                self.chores.trim_later(id);
            }
        }
        self.next_age_check = Some(now + AGE_CHECK_INTERVAL);
    }

    /// Wakes every session whose wake-up is due. The due ones are taken
    /// off the heap first, so a session that asks to be woken again at once
    /// waits for the next round instead of keeping this loop going. Ack
    /// timeouts are settled with the round's answers.
    fn fire_wakeups(&mut self, now: Instant) {
        let mut due = Vec::new();
        while let Some(&Reverse((when, conn))) = self.chores.wakeups.peek() {
            if when > now {
                break;
            }
            self.chores.wakeups.pop();
            due.push((when, conn));
        }
        for (when, conn) in due {
            let Some(session) = self.sessions.get_mut(&conn) else {
                continue;
            };
            if session.wake_registered != Some(when) {
                continue; // superseded by an earlier wake-up
            }
            session.wake_registered = None;
            session.wake(&self.topics, now);
            self.settle_or_finish(conn, now);
            self.chores.answered.push(conn);
        }
    }

    /// Trims the topics that grew past their retention, keeping every
    /// message a subscriber has yet to read: retention never takes a message
    /// from under a connected subscriber, however slow. (A message already
    /// delivered and not yet answered is safe too: its session holds it.)
    fn apply_retention(&mut self) {
        for id in std::mem::take(&mut self.chores.to_trim) {
            let keep_from = self.keep_from(id);
            self.topics[id].log.apply_retention(keep_from);
        }
    }

    /// The oldest offset of the topic `id` that a connected subscriber or
    /// group still needs: its log's end if none does.
    fn keep_from(&self, id: TopicId) -> Offset {
        let topic = &self.topics[id];
        let cursors = topic
            .subscribers
            .iter()
            .filter_map(|conn| self.sessions.get(conn)?.cursor(id));
        let groups = topic.groups.iter().filter(|g| !g.members().is_empty());
        let groups = groups.map(Group::position);
        cursors.chain(groups).fold(topic.log.end(), Offset::min)
    }

    /// If the logs hold more than their memory budget (`budget.rs`), has
    /// them let go of memory, the least recently used topics first, with
    /// the same care for subscribers as retention. If that is not enough
    /// (an in-memory store whose oldest messages are all still needed),
    /// publishers are held (`queue.rs`) until a later round finds room:
    /// subscribers go on being served meanwhile, and their acks are what
    /// frees it. Runs after the round's writes, when every cached record is
    /// in its file and can go.
    ///
    /// The budget can be passed by what one round appends before this
    /// runs; and once publishers are held, by what the dispatcher's queue
    /// already holds (at most its 1 MiB of payloads, or one larger command).
    fn keep_within_budget(&mut self, commands: &CommandReceiver, now: Instant) {
        let budget = self.store.budget();
        if budget.is_over() {
            let mut least_recent: Vec<(u64, TopicId)> = (self.topics.iter().enumerate())
                .filter(|(_, topic)| topic.log.held_bytes() > 0)
                .map(|(id, topic)| (topic.log.last_used(), id))
                .collect();
            least_recent.sort_unstable();
            for (_, id) in least_recent {
                let excess = budget.used().saturating_sub(budget.target());
                if excess == 0 {
                    break;
                }
                let keep_from = self.keep_from(id);
                self.topics[id].log.release_memory(excess, keep_from);
            }
        }
        let full = budget.is_over();
        if full != self.full.publishers_held {
            self.full.publishers_held = full;
            commands.hold_publishers(full);
            let warned_lately = (self.full.warned)
                .is_some_and(|when| now.duration_since(when) < FULL_STORE_WARNING_INTERVAL);
            if full && !warned_lately {
                self.full.warned = Some(now);
                log::warn!(
                    "topics hold {} bytes, over {} ({} bytes), and subscribers still need \
                     all of it: publishers wait until they catch up (said at most once a minute)",
                    budget.used(),
                    budget.flag(),
                    budget.limit()
                );
            }
        }
        self.full.publishers_waiting = match full {
            true => commands.publishers_waiting(),
            false => 0,
        };
    }

    /// Packs every outbox filled this round and posts them, after the
    /// round's writes are durable (see `syncer.rs`).
    fn flush(&mut self) -> Result<(), StoreError> {
        for conn in self.chores.to_flush.drain(..) {
            if let Some(session) = self.sessions.get_mut(&conn) {
                session.flush_registered = false;
                self.chores.parcels.extend(session.pack());
            }
        }
        let jobs = std::mem::take(&mut self.chores.sync_jobs);
        let parcels = std::mem::take(&mut self.chores.parcels);
        self.syncer.post_after(jobs, parcels)
    }

    /// The id of the topic called `name`, creating the topic if it is new.
    fn topic_id(&mut self, name: &str) -> Result<TopicId, StoreError> {
        if let Some(&id) = self.topic_ids.get(name) {
            return Ok(id);
        }
        let log = self.store.open(name)?;
        Ok(self.add_topic(Arc::from(name), log))
    }

    fn add_topic(&mut self, name: Arc<str>, log: Box<dyn TopicLog>) -> TopicId {
        let id = self.topics.len();
        let saved = log.saved_groups().into_iter();
        let groups = saved
            .map(|(name, at)| Group::restored(Arc::from(name), &at))
            .collect();
        self.topics.push(Topic {
            name: name.clone(),
            log,
            subscribers: Vec::new(),
            groups,
            groups_moved: false,
            traffic: Traffic::default(),
            unwritten: false,
        });
        self.topic_ids.insert(name, id);
        id
    }

    /// Writes this round's messages (and groups' positions) out of each log
    /// that changed, and collects the jobs that make them durable. With
    /// `--fsync batch` this is the group commit: one fsync per topic per
    /// round at most, however many publishers the round carried, and it
    /// runs on the syncer thread.
    fn write_logs(&mut self) -> Result<(), StoreError> {
        for id in self.chores.to_write.drain(..) {
            let topic = &mut self.topics[id];
            topic.unwritten = false;
            if std::mem::take(&mut topic.groups_moved) && topic.log.saves_groups() {
                for group in &topic.groups {
                    topic.log.set_group_position(&group.name, group.saved());
                }
            }
            self.chores.sync_jobs.extend(topic.log.write()?);
        }
        Ok(())
    }
}

/// The group a `PULL` that names none takes from. A subscriber that joins
/// it shares the work with such pulls.
pub const DEFAULT_PULL_GROUP: &str = "default";

/// What a dead-letter topic's name adds to the name of the topic whose
/// messages it takes.
pub const DEAD_LETTER_SUFFIX: &str = ".dlq";

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

fn remove_subscriber(topic: &mut Topic, conn: ConnId) {
    if let Some(index) = topic.subscribers.iter().position(|&c| c == conn) {
        topic.subscribers.swap_remove(index);
    }
}
