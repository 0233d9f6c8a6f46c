//! Subscribing and unsubscribing: `Request::Subscribe`, which gives the
//! connection its own cursor in each topic or, with a group name, a place
//! in that group of each topic (`subscribe`), and `Request::Unsubscribe`,
//! which ends both.
//!
//! Any of them may name patterns (`orders.*`, see `pattern.rs`): the
//! pattern is kept in `patterns.rs`, and the connection gets a cursor (or
//! a place in the group) in each existing topic the pattern matches,
//! handed out over as many rounds as that takes (`pattern_rounds.rs`,
//! which calls `follow_topic` for each), and in each matching topic
//! created later, from its start (`subscribe_patterns`, which
//! `topic_table.rs` calls). A topic the connection already has a cursor
//! in keeps it, so a message is sent once however many of its
//! subscriptions cover the topic; the same goes for a place in a group.
//! An unsubscribe of a pattern leaves what the pattern alone gave
//! (`leave_uncovered`). `PULL` (`pull.rs`) reads its names here too.
//!
//! Each runs as the round takes its request. A subscription is a cursor
//! in the connection's session (`session/`) and the connection's id in
//! the topic's subscribers; a group member is given the group's messages
//! by `consumer_groups.rs`. The topics are written first (`topics_to_subscribe`),
//! so that a subscription that starts at the end starts after what its
//! client published just before.
//!
//! Calls: `topic_table.rs` (`topic_id`, `topic_unavailable`), `publish.rs`
//! (`disk_is_full`), `consumer_groups.rs` (`check_group_room`,
//! `group_index`, `settle_groups`), `pattern_rounds.rs`
//! (`match_patterns_and_answer`), `logs.rs` (`write_now`), `delivery.rs`
//! (`reply`).

use std::collections::BTreeSet;
use std::fmt;
use std::time::Instant;

use super::agenda::JobKind;
use super::session::pulls::PullSource;
use super::topic::Topic;
use super::topic_table::Unavailable;
use super::Dispatcher;
use crate::ids::{ConnId, IdSet, TopicId};
use crate::pattern::{Pattern, PatternError, Subject};
use crate::store::StoreError;
use crate::wire::reply::{OverLimit, Reply};
use crate::wire::request::{AckMode, StartAt};

impl Dispatcher {
    /// Points `conn`'s cursor in each topic named at `start`, or with a
    /// `group`, joins that group of each (creating the topics and groups
    /// that are new); then does the same for each topic a pattern among
    /// `names` matches (see `pattern_rounds.rs`), and replies Subscribed
    /// once that is done, then sends what the window takes: the status
    /// comes before any replay.
    pub(super) fn subscribe(
        &mut self,
        conn: ConnId,
        names: &[String],
        start: StartAt,
        ack: AckMode,
        group: Option<&str>,
        now: Instant,
    ) -> Result<(), StoreError> {
        let Some((exact, patterns)) = self.exact_names_and_patterns(conn, names, start) else {
            return Ok(());
        };
        let limit = self.limits.max_patterns_per_connection;
        if self.patterns.held_by(conn) + self.patterns.new_to(conn, &patterns, group) > limit {
            self.refuse(conn, &NotATopic::TooManyPatterns(limit));
            return Ok(());
        }
        let Some(ids) = self.topics_to_subscribe(conn, &exact, now)? else {
            return Ok(());
        };
        if !self.sessions.contains_key(&conn) {
            return Ok(());
        }
        match group {
            None => self.subscribe_by_name(conn, &ids, start, ack),
            Some(group) => {
                if let Err(limit) = self.check_group_room(&ids, group) {
                    self.reply(conn, Reply::OverLimit(limit));
                    return Ok(());
                }
                for id in ids {
                    self.join_group_of(conn, id, group, start, ack, true);
                }
            }
        }
        log::debug!(
            "conn {conn}: subscribing to {names:?} from {start:?}, {ack:?}, group {group:?}"
        );
        let group = group.map(Into::into);
        let kind = JobKind::Subscribe { start, ack, group };
        self.match_patterns_and_answer(conn, patterns, kind, now)
    }

    /// Points `conn`'s cursor in each of the topics `ids`, named by the
    /// client, at `start`.
    fn subscribe_by_name(&mut self, conn: ConnId, ids: &[TopicId], start: StartAt, ack: AckMode) {
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        for &id in ids {
            if session.subscribe(id, &self.topics[id], start, ack) {
                self.topics[id].subscribers.push(conn);
            }
        }
    }

    /// Joins `conn` to the group `group` of the topic `id`, creating the
    /// group (at `start`) where it is new, as the client named the topic
    /// (`by_name`) or for a pattern. A place the connection has already is
    /// kept. A group with messages to give out waits for the session's
    /// room ([`Session::wait_for_room`](super::session::Session::wait_for_room)),
    /// given once the subscription is answered: so a pattern that joins
    /// thousands of groups gives to those with messages, not to all.
    fn join_group_of(
        &mut self,
        conn: ConnId,
        id: TopicId,
        group: &str,
        start: StartAt,
        ack: AckMode,
        by_name: bool,
    ) {
        let index = self.group_index(id, group, start, conn);
        if let Some(session) = self.sessions.get_mut(&conn) {
            let topic = &mut self.topics[id];
            session.join_group(id, index, ack, by_name);
            topic.groups[index].join(conn);
            if topic.groups[index].has_work(topic.log.end()) {
                session.wait_for_room(id, index);
            }
        }
    }

    /// What a subscription or pull naming a pattern does with one topic
    /// the pattern matches (`kind`, see `pattern_rounds.rs`): a cursor, a
    /// place in a group, or a group to pull from. Refused when the topic
    /// has no room for one more group. The topic must be written already.
    pub(super) fn follow_topic(
        &mut self,
        conn: ConnId,
        id: TopicId,
        kind: &mut JobKind,
    ) -> Result<(), OverLimit> {
        match kind {
            JobKind::Subscribe {
                start,
                ack,
                group: None,
            } => {
                let Some(session) = self.sessions.get_mut(&conn) else {
                    return Ok(());
                };
                let topic = &mut self.topics[id];
                if session.subscribe_by_pattern(id, topic, *start, *ack) {
                    topic.subscribers.push(conn);
                    self.agenda.register(conn, session);
                }
            }
            JobKind::Subscribe {
                start,
                ack,
                group: Some(group),
            } => {
                self.check_group_room(&[id], group)?;
                self.join_group_of(conn, id, group, *start, *ack, false);
            }
            JobKind::Pull { group, sources, .. } => {
                self.check_group_room(&[id], group)?;
                let group = self.group_index(id, group, StartAt::Beginning, conn);
                let until = self.topics[id].log.end();
                sources.push(PullSource {
                    topic: id,
                    group,
                    until,
                });
            }
        }
        Ok(())
    }

    /// Gives the connections whose patterns match the topic `id`, just
    /// created, a cursor or group place at its start, so that they miss
    /// none of its messages. Called once per topic, when it is created:
    /// no message is ever matched against a pattern.
    pub(super) fn subscribe_patterns(&mut self, id: TopicId) {
        if self.patterns.is_empty() {
            return;
        }
        for (conn, group, ack) in self.patterns.matching(&self.topics[id].name) {
            let start = StartAt::Beginning;
            let mut kind = JobKind::Subscribe {
                start,
                ack,
                group: group.clone(),
            };
            if let Err(limit) = self.follow_topic(conn, id, &mut kind) {
                log::warn!(
                    "conn {conn}: new topic {:?} left out of group {group:?} on a pattern: {limit}",
                    self.topics[id].name
                );
            }
        }
    }

    /// Ends the connection's subscriptions to the topics, and its place in
    /// their groups. A pattern is forgotten, alone and in every group, and
    /// so is what it alone gave (`leave_uncovered`).
    pub(super) fn unsubscribe(&mut self, conn: ConnId, names: &[String], now: Instant) {
        let Some((exact, patterns)) = self.exact_names_and_patterns(conn, names, StartAt::Current)
        else {
            return;
        };
        for pattern in &patterns {
            self.patterns.remove(conn, pattern.as_str());
        }
        self.leave_uncovered(conn, &patterns);
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        // In one pass each, however many names, as `leave_uncovered` does.
        let named: IdSet<TopicId> = exact
            .iter()
            .filter_map(|name| self.topic_ids.get(*name).copied())
            .collect();
        let cursors: Vec<TopicId> = named
            .iter()
            .copied()
            .filter(|&id| session.cursor(id).is_some())
            .collect();
        let places: BTreeSet<(TopicId, usize)> = session
            .memberships()
            .filter(|m| named.contains(&m.topic))
            .map(|m| (m.topic, m.group))
            .collect();
        self.leave(conn, cursors, places);
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        log::debug!("conn {conn}: unsubscribed from {names:?}");
        session.reply(Reply::Unsubscribed);
        self.agenda.register(conn, session);
        self.settle_groups(conn, now);
    }

    /// Ends what `conn` had only through `patterns`, which it no longer
    /// follows: its cursor in each topic they match that the client did
    /// not name itself and that no pattern it still follows alone covers,
    /// and its place in each group of such a topic that no pattern it
    /// still follows in that group covers. What it owed those groups goes
    /// back to them once the caller settles them.
    pub(super) fn leave_uncovered(&mut self, conn: ConnId, patterns: &[Pattern]) {
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        let topics = &self.topics;
        let followed = self.patterns.covering(conn, patterns);
        let matched = |id: TopicId| patterns.iter().any(|p| p.matches(&topics[id].name));
        let cursors: Vec<TopicId> = session
            .topics()
            .filter(|&id| {
                !session.subscribed_by_name(id)
                    && matched(id)
                    && !followed.covers(&topics[id].name, None)
            })
            .collect();
        let places: BTreeSet<(TopicId, usize)> = session
            .memberships()
            .filter(|m| {
                let group = &*topics[m.topic].groups[m.group].name;
                !m.by_name
                    && matched(m.topic)
                    && !followed.covers(&topics[m.topic].name, Some(group))
            })
            .map(|m| (m.topic, m.group))
            .collect();
        self.leave(conn, cursors, places);
    }

    /// Ends `conn`'s subscriptions to `cursors` and its `places` in
    /// groups, on both sides: the session's, and the topics' and groups'.
    /// What it owed those groups goes back to them once the caller
    /// settles them.
    fn leave(&mut self, conn: ConnId, cursors: Vec<TopicId>, places: BTreeSet<(TopicId, usize)>) {
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        session.unsubscribe_all(&cursors);
        for id in cursors {
            remove_subscriber(&mut self.topics[id], conn);
        }
        session.leave_groups(&places, &self.topics);
        for (id, index) in places {
            self.topics[id].groups[index].leave(conn);
        }
    }

    /// The exact names and the patterns among `names`. A name NATS would
    /// not take as a pattern (`orders.>.eu`), or a pattern with a start
    /// at an offset (offsets are per topic), is refused: `conn` is told
    /// why, and gets `None`.
    pub(super) fn exact_names_and_patterns<'a, S: AsRef<str>>(
        &mut self,
        conn: ConnId,
        names: &'a [S],
        start: StartAt,
    ) -> Option<(Vec<&'a str>, Vec<Pattern>)> {
        let mut exact = Vec::new();
        let mut patterns = Vec::new();
        for name in names {
            let refusal = match Subject::parse(name.as_ref()) {
                Ok(Subject::Exact(name)) => {
                    exact.push(name);
                    continue;
                }
                Ok(Subject::Pattern(pattern)) if matches!(start, StartAt::From(_)) => {
                    NotATopic::PatternFromOffset(pattern)
                }
                Ok(Subject::Pattern(pattern)) => {
                    patterns.push(pattern);
                    continue;
                }
                Err(invalid) => NotATopic::Invalid(invalid),
            };
            self.refuse(conn, &refusal);
            return None;
        }
        Some((exact, patterns))
    }

    fn refuse(&mut self, conn: ConnId, refusal: &NotATopic) {
        log::debug!("conn {conn}: refused: {refusal}");
        self.reply(conn, Reply::Error(refusal.to_string().into()));
    }

    /// The ids of the topics a subscribe names, creating those that are
    /// new; if one cannot be created, `conn` is told so and gets `None`.
    /// What the topics were sent this round is made readable first, so
    /// that a subscription that starts at the end starts after it.
    fn topics_to_subscribe<S: AsRef<str>>(
        &mut self,
        conn: ConnId,
        names: &[S],
        now: Instant,
    ) -> Result<Option<Vec<TopicId>>, StoreError> {
        let mut ids = Vec::with_capacity(names.len());
        for name in names {
            let name = name.as_ref();
            match self.topic_id(name) {
                Ok(id) => ids.push(id),
                Err(Unavailable::Store(StoreError::Full(cause))) => {
                    self.disk_is_full(None, &cause, now);
                    self.reply(conn, Reply::DiskFull(cause));
                    return Ok(None);
                }
                Err(unavailable) => {
                    self.topic_unavailable(conn, name, unavailable);
                    return Ok(None);
                }
            }
        }
        for &id in &ids {
            self.write_now(id, now)?;
        }
        Ok(Some(ids))
    }
}

/// Takes `conn` off the topic's subscribers, whose order does not matter.
pub(super) fn remove_subscriber(topic: &mut Topic, conn: ConnId) {
    if let Some(index) = topic.subscribers.iter().position(|&c| c == conn) {
        topic.subscribers.swap_remove(index);
    }
}

/// Why a name in a subscribe, unsubscribe or pull is refused.
#[derive(Debug)]
enum NotATopic {
    /// A pattern in a subscription that starts at an offset: offsets are
    /// per topic, so one offset means nothing across the topics.
    PatternFromOffset(Pattern),
    /// A name with a wildcard token that is not a valid pattern.
    Invalid(PatternError),
    /// More patterns than one connection may follow.
    TooManyPatterns(usize),
}

impl fmt::Display for NotATopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotATopic::PatternFromOffset(pattern) => write!(
                f,
                "{:?} is a pattern, and offsets are per topic: subscribe to a pattern \
                 from the beginning or current, or to one topic from an offset",
                pattern.as_str()
            ),
            NotATopic::Invalid(invalid) => write!(f, "{invalid}"),
            NotATopic::TooManyPatterns(limit) => write!(
                f,
                "a connection may follow at most {limit} patterns (--max-subscribe-topics): \
                 UNSUB one first"
            ),
        }
    }
}
