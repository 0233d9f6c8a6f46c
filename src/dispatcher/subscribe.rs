//! Subscribing and unsubscribing: `Request::Subscribe`, which gives the
//! connection its own cursor in each topic (`subscribe`) or, with a group
//! name, a place in that group (`join_groups`), and `Request::Unsubscribe`,
//! which ends both.
//!
//! A plain subscribe or unsubscribe may name patterns (`orders.*`, see
//! `pattern.rs`): the connection gets a cursor in each existing topic the
//! pattern matches, and the pattern is kept in `patterns.rs`, so that
//! each matching topic created later gets one too, from its start
//! (`subscribe_patterns`, which `topic_table.rs` calls). A topic the
//! connection already has a cursor in keeps it, so a message is sent
//! once however many of its subscriptions cover the topic. A group or a
//! pull takes exact names only, for now (`names_topics_only`, which
//! `pull.rs` uses too).
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
//! `group_index`, `pump_group`, `settle_groups`), `logs.rs` (`write_now`),
//! `delivery.rs` (`reply`).

use std::fmt;
use std::time::Instant;

use super::topic::Topic;
use super::topic_table::Unavailable;
use super::Dispatcher;
use crate::ids::{ConnId, TopicId};
use crate::pattern::{Pattern, PatternError, Subject};
use crate::store::StoreError;
use crate::wire::reply::Reply;
use crate::wire::request::{AckMode, StartAt};

impl Dispatcher {
    /// Points `conn`'s cursor in each topic named at `start` (creating the
    /// topics that are new), and in each existing topic a pattern among
    /// `names` matches, whose pattern is kept for the topics created later
    /// (see `patterns.rs`); replies Subscribed, then sends what the window
    /// takes: the status comes before any replay.
    pub(super) fn subscribe(
        &mut self,
        conn: ConnId,
        names: &[String],
        start: StartAt,
        ack: AckMode,
        now: Instant,
    ) -> Result<(), StoreError> {
        let Some((exact, patterns)) = self.exact_names_and_patterns(conn, names, start) else {
            return Ok(());
        };
        let limit = self.limits.max_patterns_per_connection;
        if self.patterns.held_by(conn) + self.patterns.new_to(conn, &patterns) > limit {
            self.refuse(conn, &NotATopic::TooManyPatterns(limit));
            return Ok(());
        }
        let Some(ids) = self.topics_to_subscribe(conn, &exact, now)? else {
            return Ok(());
        };
        let matched = self.topics_matching(&patterns);
        for &id in &matched {
            self.write_now(id, now)?;
        }
        let Some(session) = self.sessions.get_mut(&conn) else {
            return Ok(());
        };
        for id in ids {
            if session.subscribe(id, &self.topics[id], start, ack) {
                self.topics[id].subscribers.push(conn);
            }
        }
        for id in matched {
            if session.subscribe_by_pattern(id, &self.topics[id], start, ack) {
                self.topics[id].subscribers.push(conn);
            }
        }
        for pattern in patterns {
            self.patterns.add(conn, pattern, ack);
        }
        log::debug!("conn {conn}: subscribed to {names:?} from {start:?}, {ack:?}");
        session.reply(Reply::Subscribed);
        session.pump(&self.topics, now);
        self.agenda.register(conn, session);
        Ok(())
    }

    /// Subscribes the connections whose patterns match the topic `id`, just
    /// created, from its start, so that they miss none of its messages.
    /// Called once per topic, when it is created: no message is ever
    /// matched against a pattern.
    pub(super) fn subscribe_patterns(&mut self, id: TopicId) {
        if self.patterns.is_empty() {
            return;
        }
        for (conn, ack) in self.patterns.matching(&self.topics[id].name) {
            let Some(session) = self.sessions.get_mut(&conn) else {
                continue;
            };
            if session.subscribe_by_pattern(id, &self.topics[id], StartAt::Beginning, ack) {
                self.topics[id].subscribers.push(conn);
                self.agenda.register(conn, session);
            }
        }
    }

    /// Joins `conn` to the group `group` of each topic, creating the group
    /// where it is new, starting at `start` (see `group.rs`).
    pub(super) fn join_groups(
        &mut self,
        conn: ConnId,
        names: &[String],
        group: &str,
        start: StartAt,
        ack: AckMode,
        now: Instant,
    ) -> Result<(), StoreError> {
        if !self.names_topics_only(conn, names) {
            return Ok(());
        }
        let Some(ids) = self.topics_to_subscribe(conn, names, now)? else {
            return Ok(());
        };
        if !self.sessions.contains_key(&conn) {
            return Ok(());
        }
        if let Err(limit) = self.check_group_room(&ids, group) {
            self.reply(conn, Reply::OverLimit(limit));
            return Ok(());
        }
        let mut joined = Vec::new();
        for id in ids {
            let index = self.group_index(id, group, start, conn);
            self.topics[id].groups[index].join(conn);
            joined.push((id, index));
        }
        let Some(session) = self.sessions.get_mut(&conn) else {
            return Ok(());
        };
        for &(id, index) in &joined {
            session.join_group(id, index, ack);
        }
        log::debug!("conn {conn}: joined group {group:?} of {names:?}, {ack:?}");
        session.reply(Reply::Subscribed);
        self.agenda.register(conn, session);
        for (id, index) in joined {
            self.pump_group(id, index, now);
        }
        Ok(())
    }

    /// Ends the connection's subscriptions to the topics, and its place in
    /// their groups. A pattern is forgotten, and so are the cursors of the
    /// topics it matches that the client did not name itself and that no
    /// other pattern of its covers.
    pub(super) fn unsubscribe(
        &mut self,
        conn: ConnId,
        names: &[String],
        now: Instant,
    ) -> Result<(), StoreError> {
        let Some((exact, patterns)) = self.exact_names_and_patterns(conn, names, StartAt::Current)
        else {
            return Ok(());
        };
        for pattern in &patterns {
            self.patterns.remove(conn, pattern.as_str());
        }
        let Some(session) = self.sessions.get_mut(&conn) else {
            return Ok(());
        };
        let uncovered: Vec<TopicId> = session
            .topics()
            .filter(|&id| {
                let name = &self.topics[id].name;
                !session.subscribed_by_name(id)
                    && patterns.iter().any(|pattern| pattern.matches(name))
                    && !self.patterns.covers(conn, name)
            })
            .collect();
        for id in uncovered {
            session.unsubscribe(id);
            remove_subscriber(&mut self.topics[id], conn);
        }
        for name in exact {
            if let Some(&id) = self.topic_ids.get(name) {
                if session.unsubscribe(id) {
                    remove_subscriber(&mut self.topics[id], conn);
                }
                for index in session.leave_groups_of(id, &self.topics) {
                    self.topics[id].groups[index].leave(conn);
                }
            }
        }
        log::debug!("conn {conn}: unsubscribed from {names:?}");
        session.reply(Reply::Unsubscribed);
        self.agenda.register(conn, session);
        self.settle_groups(conn, now)
    }

    /// The exact names and the patterns among `names`. A name NATS would
    /// not take as a pattern (`orders.>.eu`), or a pattern with a start
    /// at an offset (offsets are per topic), is refused: `conn` is told
    /// why, and gets `None`.
    fn exact_names_and_patterns<'a>(
        &mut self,
        conn: ConnId,
        names: &'a [String],
        start: StartAt,
    ) -> Option<(Vec<&'a str>, Vec<Pattern>)> {
        let mut exact = Vec::new();
        let mut patterns = Vec::new();
        for name in names {
            let refusal = match Subject::parse(name) {
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

    /// The existing topics one of `patterns` matches, in the order they
    /// were created. Every topic is looked at, in this one request (see
    /// issue 18: handing the work out over rounds is left to do).
    fn topics_matching(&self, patterns: &[Pattern]) -> Vec<TopicId> {
        if patterns.is_empty() {
            return Vec::new();
        }
        let matches = |topic: &Topic| patterns.iter().any(|p| p.matches(&topic.name));
        (0..self.topics.len())
            .filter(|&id| matches(&self.topics[id]))
            .collect()
    }

    /// Whether every name in `names` is a topic's exact name, as a group or
    /// `PULL` needs. A pattern (`orders.*`) is refused, for groups and
    /// pulls do not take patterns yet, and so is a name NATS would not
    /// take as one (`orders.>.eu`): either way `conn` is told why, and
    /// nothing else is done, rather than making a topic called `orders.*`
    /// that no publish may name.
    pub(super) fn names_topics_only<S: AsRef<str>>(&mut self, conn: ConnId, names: &[S]) -> bool {
        let refusal = names
            .iter()
            .find_map(|name| match Subject::parse(name.as_ref()) {
                Ok(Subject::Exact(_)) => None,
                Ok(Subject::Pattern(pattern)) => Some(NotATopic::Pattern(pattern)),
                Err(invalid) => Some(NotATopic::Invalid(invalid)),
            });
        let Some(refusal) = refusal else {
            return true;
        };
        self.refuse(conn, &refusal);
        false
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
    /// A valid pattern, in a group or a pull, which do not take patterns
    /// yet.
    Pattern(Pattern),
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
            NotATopic::Pattern(pattern) => write!(
                f,
                "{:?} is a pattern, and a group or PULL does not take patterns yet: \
                 name each topic exactly, or SUB without a group",
                pattern.as_str()
            ),
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
