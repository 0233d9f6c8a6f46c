//! Subscribing and unsubscribing: `Request::Subscribe`, which gives the
//! connection its own cursor in each topic (`subscribe`) or, with a group
//! name, a place in that group (`join_groups`), and `Request::Unsubscribe`,
//! which ends both.
//!
//! A name that is a pattern (`orders.*`, see `pattern.rs`) is refused
//! for now (`names_topics_only`, which `pull.rs` uses too): serving
//! patterns is the next step of issue 18.
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
    /// topics that are new), replies Subscribed, then sends what the
    /// window takes: the status comes before any replay.
    pub(super) fn subscribe(
        &mut self,
        conn: ConnId,
        names: &[String],
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
        let Some(session) = self.sessions.get_mut(&conn) else {
            return Ok(());
        };
        for id in ids {
            if session.subscribe(id, &self.topics[id], start, ack) {
                self.topics[id].subscribers.push(conn);
            }
        }
        log::debug!("conn {conn}: subscribed to {names:?} from {start:?}, {ack:?}");
        session.reply(Reply::Subscribed);
        session.pump(&self.topics, now);
        self.agenda.register(conn, session);
        Ok(())
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
    /// their groups.
    pub(super) fn unsubscribe(
        &mut self,
        conn: ConnId,
        names: &[String],
        now: Instant,
    ) -> Result<(), StoreError> {
        if !self.names_topics_only(conn, names) {
            return Ok(());
        }
        let Some(session) = self.sessions.get_mut(&conn) else {
            return Ok(());
        };
        for name in names {
            if let Some(&id) = self.topic_ids.get(name.as_str()) {
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

    /// Whether every name in `names` is a topic's exact name. A pattern
    /// (`orders.*`) is refused, for patterns are not served yet, and so is a
    /// name NATS would not take as one (`orders.>.eu`): either way `conn`
    /// is told why, and nothing else is done, rather than making a topic
    /// called `orders.*` that no publish may name.
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
        log::debug!("conn {conn}: refused: {refusal}");
        self.reply(conn, Reply::Error(refusal.to_string().into()));
        false
    }

    /// The ids of the topics a subscribe names, creating those that are
    /// new; if one cannot be created, `conn` is told so and gets `None`.
    /// What the topics were sent this round is made readable first, so
    /// that a subscription that starts at the end starts after it.
    fn topics_to_subscribe(
        &mut self,
        conn: ConnId,
        names: &[String],
        now: Instant,
    ) -> Result<Option<Vec<TopicId>>, StoreError> {
        let mut ids = Vec::with_capacity(names.len());
        for name in names {
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

/// Why a name in a subscribe, unsubscribe or pull names no topic.
#[derive(Debug)]
enum NotATopic {
    /// A valid pattern, which brook does not serve yet.
    Pattern(Pattern),
    /// A name with a wildcard token that is not a valid pattern.
    Invalid(PatternError),
}

impl fmt::Display for NotATopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotATopic::Pattern(pattern) => write!(
                f,
                "{:?} is a pattern, and pattern subscriptions are not served yet: \
                 subscribe to each topic by its exact name",
                pattern.as_str()
            ),
            NotATopic::Invalid(invalid) => write!(f, "{invalid}"),
        }
    }
}
