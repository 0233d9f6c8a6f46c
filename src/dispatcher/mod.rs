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
//! A round ([`Dispatcher::run_rounds`]) is: wait for one command (or the
//! next timer), then take every command already queued, up to
//! [`MAX_COMMANDS_PER_ROUND`] or 5 ms of work, then give one slice of
//! work to the oldest pattern subscription that matches more topics than
//! one request may look at (`pattern_rounds.rs`), then fire the timers that
//! are due (`timers.rs`) and give out again the groups' messages held
//! back for a dead letter not stored (`dead_letters.rs`), then settle the
//! round's answers with the consumer groups and dead-letter topics
//! (`answers.rs`), then shut the
//! lingering writers that are past their time (`closing.rs`), then trim
//! the topics that grew past their retention, then write the round's
//! messages out of the logs that changed, then bring the logs back within
//! their memory budget (`logs.rs`; see `budget.rs`: an in-memory store
//! with nothing it may drop holds publishers back, and refuses the
//! publishes of connections that subscribe or pull), then pack the
//! outboxes and post them (`delivery.rs`), once what they tell of is
//! durable: at once in memory, after the syncer thread's fsync with
//! `--fsync batch` (see `syncer.rs`). Under load a round carries many
//! messages, so channel sends and wake-ups are paid per batch, not per
//! message. What a command asks for that can wait for the round's end is
//! noted in the [`Agenda`] (`agenda.rs`), and done there once.
//!
//! A message is offered to subscribers and groups once its log says it is
//! readable ([`TopicLog::end`](crate::store::TopicLog::end)): in memory as
//! it is appended, on disk once the round's write put it in its file (the
//! end of the round, or sooner when a buffer fills). So when a write finds
//! the disk full, the messages it takes back were never delivered, and
//! their confirmations are still in the outboxes: they are turned into
//! refusals ([`Reply::DiskFull`]) before anything goes out, and a
//! publisher that gets no replies is hung up on. That is how Kafka's high
//! watermark works, and it is simpler than the other way, taking
//! deliveries back out of outboxes, windows and groups. A `PULL` or
//! subscribe writes its topic first, so that it sees what its client
//! published just before it.
//!
//! The channel is bounded, so a dispatcher that falls behind makes readers
//! wait, which stops them reading, which lets TCP push back on publishers:
//! memory stays bounded without any explicit flow-control message.
//!
//! A stop ([`Command::Shutdown`], sent once no reader hands in requests any
//! more) finishes the round it arrives in, then ends every session: every
//! log is written and forced to disk, whatever `--fsync` says, the last
//! frames are posted after that, and each writer gets the linger to write
//! them and close its connection (see [`Dispatcher::run`]).
//!
//! Requests arrive already decoded, the same whichever protocol the client
//! speaks; the dispatcher answers with [`Reply`] values, and each writer
//! encodes them for its own client. Writers send one command of their own,
//! [`Command::Written`], when a session waits for room to send deliveries
//! that need no ack, and the fetcher thread one, [`Command::Fetched`]; both
//! through callbacks (see `queue.rs`, which holds [`Command`]), so neither
//! names this file.
//!
//! # Where each request is handled
//!
//! This file keeps the [`Dispatcher`], the round loop and the switch that
//! hands each command and request ([`Dispatcher::handle`],
//! [`Dispatcher::request`]) to a method in the file for its kind, as
//! mini-redis keeps one file per command:
//!
//! | request or command | file |
//! | --- | --- |
//! | publish | `publish.rs` |
//! | subscribe, unsubscribe; subscribe with a group | `subscribe.rs` |
//! | Ack, Nack | `answers.rs` |
//! | `PULL` | `pull.rs` |
//! | `TOPICS`, `STATS`, `Command::Report` | `reports.rs` |
//! | `QUIT`, `Command::Detach` | `closing.rs` |
//! | `Command::Written`, `Command::Fetched` | `delivery.rs` |
//! | `PING`, `HELP`, `Command::Attach`, `Command::Shutdown` | here |
//!
//! The files of this folder come in two kinds. The first five are layers,
//! read from the bottom up: each uses only the ones before it (and
//! `tests/layering.rs` checks that no file uses one that uses it):
//!
//! - `group.rs`: a consumer group, whose members share a topic's messages.
//! - `patterns.rs`: the pattern subscriptions (`orders.*`), matched against
//!   each topic once, when it is created.
//! - `topic.rs`: one topic as the dispatcher holds it, with its groups;
//!   `session/` reads it too.
//! - `session/`: one connection's side: its subscriptions, the deliveries
//!   awaiting its answers (`in_flight.rs`), its pulls (`pulls.rs`) and the
//!   frames waiting for its writer (`outbox.rs`).
//! - `agenda.rs`: the [`Agenda`], what a round has put off.
//!
//! This file and the rest are not layers: they are one `impl Dispatcher`,
//! split into files by kind of request, and they call one another's
//! methods through `self`, in circles too (`serve`, in `delivery.rs`,
//! calls `register_or_forget`, in `closing.rs`, whose `detach` calls
//! `serve`). `tests/layering.rs` sees only the paths a file
//! names, not `self.method()` calls, so it cannot check them; instead each
//! one's module doc ends with a "Calls:" line naming the files whose
//! methods it calls. This file's `handle` and `request` call the files of
//! the table above, and `run_rounds` the round's steps, each in its file
//! (the list at the top).
//!
//! - this file: the [`Dispatcher`], the round loop, the command switch.
//! - `topic_table.rs`: finding and creating topics, within `--max-topics`.
//! - `publish.rs`: appending, confirming, refusing for a full disk or a
//!   full in-memory store.
//! - `subscribe.rs`: subscribing, joining groups, unsubscribing.
//! - `consumer_groups.rs`: creating groups, giving out their messages, settling
//!   their members' answers.
//! - `dead_letters.rs`: what was given up goes to the `.dlq` topic.
//! - `answers.rs`: acks and nacks, and the round's answers step.
//! - `pull.rs`: `PULL`.
//! - `pattern_rounds.rs`: a subscribe or pull naming a pattern, matched
//!   against the existing topics a slice a round.
//! - `delivery.rs`: what fills the outboxes, and the round's last step,
//!   which posts them.
//! - `timers.rs`: when the round loop must wake, and the wake-ups it fires.
//! - `logs.rs`: the round's steps for the logs: retention, writing, the
//!   memory budget.
//! - `reports.rs`: what `TOPICS`, `STATS` and the metrics report.
//! - `closing.rs`: a closed connection, lingering writers, the broker's
//!   stop.

mod agenda;
mod answers;
mod closing;
mod consumer_groups;
mod dead_letters;
mod delivery;
pub(crate) mod group;
mod logs;
mod pattern_rounds;
mod patterns;
mod publish;
mod pull;
mod reports;
pub(crate) mod session;
mod subscribe;
mod timers;
pub(crate) mod topic;
mod topic_table;

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use crate::auth::Logins;
use crate::backoff::Throttled;
use crate::dispatcher::session::in_flight::DeliveryPolicy;
use crate::dispatcher::session::Session;
use crate::ids::{ConnId, IdMap, Offset, TopicId};
use crate::queue::{Command, CommandReceiver, Hangup, WhenFull};
use crate::store::record::now_ms;
use crate::store::{Store, StoreError};
use crate::syncer::Syncer;
use crate::wire::reply::Reply;
use crate::wire::request::{Decoded, Request};
use agenda::{Agenda, Deferred, Publisher, TooMuchDeferred};
use patterns::PatternSubscriptions;
use topic::Topic;

/// How many commands one round takes before it ends.
pub const MAX_COMMANDS_PER_ROUND: usize = 1024;

/// How long one round goes on taking commands before it ends. Nothing
/// the round produced (a delivery, a confirmation) goes out before the
/// round ends, so a round must stay short even when every command is slow,
/// as with `--fsync always`, where each message waits for the disk.
const MAX_ROUND_TIME: Duration = Duration::from_millis(5);

/// How many topics the broker holds, and how many consumer groups each
/// topic (`--max-topics`, `--max-groups-per-topic`): any client can create
/// both, by naming them, and neither is ever removed, so without a limit a
/// client could make the broker hold as many as it likes.
#[derive(Debug, Clone, Copy)]
pub struct TopicLimits {
    pub max_topics: usize,
    pub max_groups_per_topic: usize,
    /// How many patterns one connection may follow (`--max-subscribe-topics`):
    /// any client can add them, and each is kept until it goes.
    pub max_patterns_per_connection: usize,
    /// How many bytes of names and payloads the requests waiting behind
    /// one connection's unfinished pattern job may hold
    /// (`pattern_rounds.rs`): the reader's queue stops counting them once
    /// the dispatcher takes them.
    pub max_deferred_bytes: usize,
}

/// The dispatcher: the topic table, every answered connection's session,
/// the store the logs live in, and the [`Agenda`] of what the round has
/// put off.
///
/// Why one thread owns all of it: a publish, the deliveries it causes and
/// the acks that answer them all touch the same topics and sessions. With
/// one owner none of that state needs a lock, and things happen in the
/// order the commands were taken, which is what makes offsets, the ack
/// order and redelivery simple to reason about. The thread never waits on
/// a socket or (for a read) on the disk: writers, the syncer and the
/// fetcher do that, so one thread keeps up.
///
/// Its methods are split across this folder's files by the kind of
/// request or duty they carry out (listed in the module doc); this file
/// keeps the round loop and the switch that hands each command to them.
pub struct Dispatcher {
    policy: DeliveryPolicy,
    limits: TopicLimits,
    store: Box<dyn Store>,
    topics: Vec<Topic>,
    topic_ids: HashMap<Arc<str>, TopicId>,
    /// The topic of the last publish. A reader hands consecutive messages for
    /// one topic the same `Arc`, so comparing pointers finds the topic
    /// without hashing its name once per message.
    last_published: Option<(Arc<str>, TopicId)>,
    sessions: IdMap<ConnId, Session>,
    /// The connections' pattern subscriptions, matched against each new
    /// topic.
    patterns: PatternSubscriptions,
    agenda: Agenda,
    /// Forces each round's writes to disk and then posts its frames.
    syncer: Syncer,
    /// When to look next for topics that aged past their retention, if the
    /// store's logs can (see [`Store::ages_out`]).
    next_age_check: Option<Instant>,
    /// The wall clock when the round began, in ms since 1970: the time
    /// stamped on every message the round appends (see `TopicLog::append`).
    clock_ms: u64,
    /// For `STATS`: when the broker started, and how many connections are
    /// open (kept by the acceptor and the readers).
    started: Instant,
    connections: Arc<AtomicUsize>,
    /// For `STATS`: which connection is logged in as whom (`auth/`).
    logins: Arc<Logins>,
    full_disk: FullDisk,
    /// Publishers held because the in-memory store is full.
    full_memory: FullStore,
    dead_letters_not_stored: DeadLettersNotStored,
}

/// What the dispatcher knows of a full disk: how many publishes it refused
/// for one (for `STATS`), and the episode under way, if one is. One log
/// line starts an episode and one ends it, however many messages it
/// refuses.
#[derive(Debug, Default)]
struct FullDisk {
    refused: u64,
    /// When the episode under way started.
    since: Option<Instant>,
    /// How many topics refused a publish and have not stored one since:
    /// the episode ends when none is left.
    topics: usize,
}

/// The dead letters that could not be stored: how many tries failed since
/// the broker started (for `STATS`; a dead letter tried again on a full
/// disk counts at each try), how many for want of room since one was last
/// stored (the episode under way), and their log lines, which
/// `dead_letters.rs` keeps few.
/// (It is here, not there, only because [`Dispatcher`] holds it.)
#[derive(Debug, Default)]
struct DeadLettersNotStored {
    count: u64,
    since_stored: u64,
    log: Throttled,
}

/// Whether publishers are held because the store is full (see
/// [`Dispatcher::keep_within_budget`]), how many were waiting at the end of
/// the last round and how many publishes were refused for it (for
/// `STATS`), and when the log last said so.
#[derive(Debug, Default)]
struct FullStore {
    /// Since when publishers are held, if they are.
    held_since: Option<Instant>,
    publishers_waiting: usize,
    refused: u64,
    /// When the last warning that publishers are held was logged.
    warned: Option<Instant>,
}

/// What a clean stop did, for the line the broker logs as it exits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stopped {
    /// Logs written and forced to disk at the stop (none in memory).
    pub logs_forced: usize,
    /// Connections that were open, each closed after its last frame.
    pub connections: usize,
    /// Frames still on their way to the clients when the stop began.
    pub frames: usize,
    /// Writers that did not finish within the linger, because their
    /// clients stopped reading: their sockets were shut with frames unsent.
    pub cut_off: usize,
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "logs forced to disk: {}, connections closed: {}, frames still to write at the \
             stop: {}, clients cut off for not reading them: {}",
            self.logs_forced, self.connections, self.frames, self.cut_off
        )
    }
}

impl Dispatcher {
    /// A dispatcher with the topics `store` already holds, whose rounds go
    /// out through `syncer`.
    pub fn new(
        policy: DeliveryPolicy,
        limits: TopicLimits,
        mut store: Box<dyn Store>,
        syncer: Syncer,
        connections: Arc<AtomicUsize>,
        logins: Arc<Logins>,
    ) -> Result<Dispatcher, StoreError> {
        let recovered = store.recover()?;
        let next_age_check = store.ages_out().then(Instant::now);
        let mut dispatcher = Dispatcher {
            policy,
            limits,
            store,
            topics: Vec::new(),
            topic_ids: HashMap::new(),
            last_published: None,
            sessions: IdMap::default(),
            patterns: PatternSubscriptions::default(),
            agenda: Agenda::default(),
            syncer,
            next_age_check,
            clock_ms: now_ms(),
            started: Instant::now(),
            connections,
            logins,
            full_disk: FullDisk::default(),
            full_memory: FullStore::default(),
            dead_letters_not_stored: DeadLettersNotStored::default(),
        };
        for (name, log) in recovered {
            log::info!("topic {name:?}: {}", describe_log(log.start(), log.end()));
            dispatcher.add_topic(name, log);
        }
        Ok(dispatcher)
    }

    /// Runs rounds until told to shut down or every sender has gone, then
    /// stops cleanly: every session ends, every log is forced to disk, and
    /// every writer gets the linger to write what it holds.
    ///
    /// A disk with no room refuses publishes and nothing more (see
    /// `Dispatcher::refuse_unwritten`). Any other failure of the store,
    /// such as a failed fsync, stops the dispatcher at once, before the
    /// round's frames go out: nothing that was not stored is confirmed or
    /// delivered, and the log on disk is left as a crash would leave it,
    /// which recovery knows how to read. Carrying on instead would mean
    /// guessing what of the log the disk really holds.
    pub fn run(mut self, commands: CommandReceiver) -> Result<Stopped, StoreError> {
        let ending = self
            .run_rounds(&commands)
            .and_then(|()| self.end_sessions());
        // Nothing is taken from the queue any more: whoever sends now is
        // told so at once, rather than waiting for room.
        drop(commands);
        // Rounds already handed to the syncer still go out, once durable.
        let synced = self.syncer.stop();
        let result = ending.and_then(|ending| synced.map(|()| ending.wait_for_writers()));
        if let Err(error) = &result {
            log::error!(
                "cannot store messages ({error}); stopping. Nothing unstored was \
                 confirmed or delivered; restart to recover the stored log"
            );
        }
        result
    }

    /// Runs rounds until one takes [`Command::Shutdown`] (or every sender
    /// has gone). That last round is finished like any other.
    fn run_rounds(&mut self, commands: &CommandReceiver) -> Result<(), StoreError> {
        let mut stopping = false;
        while !stopping {
            let first = commands.recv_until(self.next_deadline());
            let now = Instant::now();
            self.clock_ms = now_ms();
            match first {
                Ok(command) => {
                    stopping = !self.handle(command, now)?;
                    let deadline = now + MAX_ROUND_TIME;
                    let mut queued = commands.try_iter().take(MAX_COMMANDS_PER_ROUND - 1);
                    while !stopping && Instant::now() < deadline {
                        let Some(command) = queued.next() else { break };
                        stopping = !self.handle(command, now)?;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => stopping = true,
            }
            self.continue_pattern_jobs(stopping, now)?;
            self.fire_wakeups(now);
            self.let_out_held_back(now)?;
            self.settle_answers(now)?;
            self.close_lingering(now);
            self.check_ages(now);
            self.apply_retention();
            self.write_logs(now)?;
            self.keep_within_budget(commands, now);
            self.hand_over_round()?;
        }
        Ok(())
    }

    /// Applies one command. Returns false when the dispatcher should stop,
    /// and an error when the store failed.
    fn handle(&mut self, command: Command, now: Instant) -> Result<bool, StoreError> {
        match command {
            Command::Attach { conn, writer } => {
                let session = Session::new(conn, writer, self.policy, now);
                self.sessions.insert(conn, session);
            }
            Command::Requests {
                conn,
                requests,
                hangup,
                when_full,
                ..
            } => self.handle_requests(conn, requests, hangup, when_full, now)?,
            Command::Written { conn } => self.serve(conn, now),
            Command::Fetched(fetched) => self.fetched(fetched, now)?,
            Command::Report { reply } => {
                let _ = reply.try_send(self.broker_report(now));
            }
            Command::Detach { conn } => self.detach(conn, now)?,
            Command::Shutdown => return Ok(false),
        }
        Ok(true)
    }

    /// Carries out the requests of one command, in order, until the
    /// connection is hung up on. The publishes of a command that did not
    /// wait for a full store ([`WhenFull::Refuse`]) are refused while it
    /// is full. Fails only if the store failed.
    fn handle_requests(
        &mut self,
        conn: ConnId,
        requests: Vec<Decoded>,
        hangup: Option<Arc<Hangup>>,
        when_full: WhenFull,
        now: Instant,
    ) -> Result<(), StoreError> {
        let full = self.full_memory.held_since.is_some();
        let refuse_publishes = when_full == WhenFull::Refuse && full;
        for request in requests {
            if hangup.as_ref().is_some_and(|hangup| hangup.is_done()) {
                break; // hung up on: the rest is dropped
            }
            if refuse_publishes && matches!(request, Ok(Request::Publish { .. })) {
                self.refuse_for_full_memory(conn);
                continue;
            }
            self.carry_out(conn, request, hangup.as_ref(), now)?;
        }
        Ok(())
    }

    /// Carries out one request, or keeps it for later if the connection's
    /// pattern subscription is still being made (`pattern_rounds.rs`), so
    /// that its replies stay in order. An Ack or Nack is carried out at
    /// once all the same (see [`agenda::Deferred`]). Fails only if the
    /// store failed.
    fn carry_out(
        &mut self,
        conn: ConnId,
        request: Decoded,
        hangup: Option<&Arc<Hangup>>,
        now: Instant,
    ) -> Result<(), StoreError> {
        // The common case, a connection with no pattern job, wraps nothing.
        let answers = matches!(request, Ok(Request::Ack | Request::Nack));
        let max_bytes = self.limits.max_deferred_bytes;
        if let (false, Some(line)) = (answers, self.agenda.pattern_jobs.line_of(conn)) {
            let pushed = line.push(Deferred::Request(request, hangup.cloned()), max_bytes);
            warn_if_too_much(conn, pushed);
            return Ok(());
        }
        self.request(conn, request, hangup, now)
    }

    /// Sends `reply` to `conn` in its turn: behind the status of its
    /// unfinished pattern job, if it has one.
    fn reply_in_turn(&mut self, conn: ConnId, reply: Reply) {
        let max_bytes = self.limits.max_deferred_bytes;
        match self.agenda.pattern_jobs.line_of(conn) {
            Some(line) => warn_if_too_much(conn, line.push(Deferred::Reply(reply), max_bytes)),
            None => self.reply(conn, reply),
        }
    }

    /// Carries out one request. Fails only if the store failed.
    fn request(
        &mut self,
        conn: ConnId,
        request: Decoded,
        hangup: Option<&Arc<Hangup>>,
        now: Instant,
    ) -> Result<(), StoreError> {
        match request {
            Ok(Request::Publish {
                topic,
                payload,
                confirm,
            }) => {
                let publisher = Publisher {
                    conn,
                    confirm,
                    hangup,
                };
                self.publish(&publisher, topic, payload, now)?;
            }
            Ok(Request::Subscribe {
                topics,
                start,
                ack,
                group,
            }) => self.subscribe(conn, &topics, start, ack, group.as_deref(), now)?,
            Ok(Request::Unsubscribe { topics }) => self.unsubscribe(conn, &topics, now),
            Ok(Request::Ack) => self.answer(conn, true, now),
            Ok(Request::Nack) => self.answer(conn, false, now),
            Ok(Request::Pull { topic, max, group }) => {
                let group = group.as_deref().unwrap_or(DEFAULT_PULL_GROUP);
                self.pull(conn, &topic, max, group, now)?
            }
            Ok(Request::Topics) => {
                let patterns = self.patterns.reports();
                self.reply(conn, Reply::Topics(self.topic_reports(), patterns));
            }
            Ok(Request::Stats) => {
                let report = self.broker_report(now);
                self.reply(conn, Reply::Stats(Box::new(report)));
            }
            Ok(Request::Ping) => self.reply(conn, Reply::Pong),
            // A good login, checked by the reader (`auth/guard.rs`): the
            // binary protocol's status 1, `+OK` in the line protocol.
            Ok(Request::Authenticated) => self.reply(conn, Reply::Subscribed),
            Ok(Request::Auth(_)) => {
                let reason = "AUTH reached the dispatcher unchecked";
                log::error!("conn {conn}: {reason}");
                self.reply(conn, Reply::Error(reason.into()));
            }
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
                self.reply(conn, Reply::Error(error.reason().to_owned().into()));
            }
        }
        Ok(())
    }
}

/// Logs that `conn` sent too much behind its pattern job, once (see
/// [`agenda::Line::push`]): it is told so in the job's place, then
/// closed (`pattern_rounds.rs`).
fn warn_if_too_much(conn: ConnId, pushed: Result<(), TooMuchDeferred>) {
    if let Err(too_much) = pushed {
        log::warn!("conn {conn}: {too_much}; closing it");
    }
}

#[cfg(test)]
impl Dispatcher {
    /// A dispatcher for a unit test that drives its rounds' steps itself:
    /// `policy`, roomy limits, an in-memory store of 1 MiB. The test stops
    /// its syncer (`dispatcher.syncer.stop()`) at the end.
    fn for_test(policy: DeliveryPolicy) -> Dispatcher {
        let limits = TopicLimits {
            max_topics: 10_000,
            max_groups_per_topic: 64,
            max_patterns_per_connection: 64,
            max_deferred_bytes: 1 << 20,
        };
        Dispatcher::new(
            policy,
            limits,
            Box::new(crate::store::memory::MemoryStore::new(None, 1 << 20)),
            Syncer::spawn(Duration::ZERO).unwrap(),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(Logins::default()),
        )
        .unwrap()
    }
}

/// The group a `PULL` that names none takes from. A subscriber that joins
/// it shares the work with such pulls.
pub const DEFAULT_PULL_GROUP: &str = "default";

/// What a recovered log holds, for the start-up line: `3 messages, next
/// offset 3`, or `2 messages (from offset 5), next offset 7` once
/// retention has dropped the oldest.
fn describe_log(start: Offset, end: Offset) -> String {
    let count = end - start;
    let messages = if count == 1 { "message" } else { "messages" };
    match start {
        0 => format!("{count} {messages}, next offset {end}"),
        _ => format!("{count} {messages} (from offset {start}), next offset {end}"),
    }
}
