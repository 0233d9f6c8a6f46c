//! The pattern subscriptions (`SUB orders.*`): which connection subscribed
//! to which pattern, and how its deliveries are answered.
//!
//! A pattern subscription is not a cursor of its own. When it is made, the
//! dispatcher gives the connection a cursor in each topic the pattern
//! matches (`subscribe.rs`); what is kept here is what is needed for the
//! topics that do not exist yet: when a topic is created
//! (`topic_table.rs`), it is matched against the patterns once
//! ([`PatternSubscriptions::matching`]), and each connection with a match
//! gets a cursor at the topic's start. From then on the topic's messages
//! reach those connections as any subscriber's do: nothing is matched per
//! message, and a broker with no pattern subscription pays nothing.
//!
//! A dead-letter topic (`orders.eu.dlq`) is a topic like any other, so
//! `orders.>` covers it, as NATS would.
//!
//! Uses `pattern.rs` and nothing of the dispatcher's, so it is a layer at
//! the bottom, like `group.rs`.

use crate::ids::{ConnId, IdMap};
use crate::pattern::Pattern;
use crate::wire::request::AckMode;

/// Every connection's pattern subscriptions.
#[derive(Debug, Default)]
pub struct PatternSubscriptions {
    /// Per connection, its patterns in the order they were made. A
    /// connection has few, so a list is searched.
    by_conn: IdMap<ConnId, Vec<(Pattern, AckMode)>>,
}

impl PatternSubscriptions {
    /// Records that `conn` subscribes to `pattern`. A pattern it already
    /// had takes the new `ack` mode.
    pub fn add(&mut self, conn: ConnId, pattern: Pattern, ack: AckMode) {
        let patterns = self.by_conn.entry(conn).or_default();
        match patterns.iter_mut().find(|(known, _)| *known == pattern) {
            Some(known) => known.1 = ack,
            None => patterns.push((pattern, ack)),
        }
    }

    /// Forgets `conn`'s subscription to the pattern written `pattern`.
    /// Returns whether it had one.
    pub fn remove(&mut self, conn: ConnId, pattern: &str) -> bool {
        let Some(patterns) = self.by_conn.get_mut(&conn) else {
            return false;
        };
        let before = patterns.len();
        patterns.retain(|(known, _)| known.as_str() != pattern);
        let removed = patterns.len() < before;
        if patterns.is_empty() {
            self.by_conn.remove(&conn);
        }
        removed
    }

    /// Forgets every pattern of a connection that closed.
    pub fn forget(&mut self, conn: ConnId) {
        self.by_conn.remove(&conn);
    }

    /// Whether one of `conn`'s patterns matches the topic called `topic`.
    pub fn covers(&self, conn: ConnId, topic: &str) -> bool {
        self.by_conn
            .get(&conn)
            .is_some_and(|patterns| patterns.iter().any(|(p, _)| p.matches(topic)))
    }

    /// The connections with a pattern that matches the topic called
    /// `topic`, each once, with the ack mode of its first such pattern.
    pub fn matching(&self, topic: &str) -> Vec<(ConnId, AckMode)> {
        let mut found: Vec<_> = self
            .by_conn
            .iter()
            .filter_map(|(&conn, patterns)| {
                let (_, ack) = patterns.iter().find(|(p, _)| p.matches(topic))?;
                Some((conn, *ack))
            })
            .collect();
        // The map's order is random; deliveries should not be.
        found.sort_unstable_by_key(|&(conn, _)| conn);
        found
    }

    /// Whether no connection has a pattern subscription: then a new topic
    /// needs no matching at all.
    pub fn is_empty(&self) -> bool {
        self.by_conn.is_empty()
    }

    /// How many of `patterns` `conn` does not hold yet.
    pub fn new_to(&self, conn: ConnId, patterns: &[Pattern]) -> usize {
        let held = self.by_conn.get(&conn).map_or(&[][..], Vec::as_slice);
        let is_new = |pattern: &&Pattern| !held.iter().any(|(known, _)| known == *pattern);
        patterns.iter().filter(is_new).count()
    }

    /// How many patterns `conn` holds.
    pub fn held_by(&self, conn: ConnId) -> usize {
        self.by_conn.get(&conn).map_or(0, Vec::len)
    }

    /// How many pattern subscriptions there are, over every connection.
    pub fn count(&self) -> usize {
        self.by_conn.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern::Subject;

    fn pattern(text: &str) -> Pattern {
        match Subject::parse(text) {
            Ok(Subject::Pattern(pattern)) => pattern,
            other => panic!("{text:?} is not a pattern: {other:?}"),
        }
    }

    #[test]
    fn a_topic_matches_each_connection_once_with_its_first_patterns_mode() {
        let mut patterns = PatternSubscriptions::default();
        patterns.add(2, pattern("orders.*"), AckMode::Manual);
        patterns.add(2, pattern("orders.>"), AckMode::OnWrite);
        patterns.add(1, pattern("*.eu"), AckMode::OnWrite);
        assert_eq!(
            patterns.matching("orders.eu"),
            vec![(1, AckMode::OnWrite), (2, AckMode::Manual)]
        );
        assert_eq!(
            patterns.matching("orders.eu.dlq"),
            vec![(2, AckMode::OnWrite)]
        );
        assert_eq!(patterns.matching("refunds.us"), vec![]);
        assert_eq!(patterns.count(), 3);
    }

    #[test]
    fn adding_a_pattern_again_changes_its_mode_and_adds_nothing() {
        let mut patterns = PatternSubscriptions::default();
        patterns.add(1, pattern("orders.*"), AckMode::OnWrite);
        patterns.add(1, pattern("orders.*"), AckMode::Manual);
        assert_eq!(patterns.count(), 1);
        assert_eq!(patterns.matching("orders.eu"), vec![(1, AckMode::Manual)]);
    }

    #[test]
    fn removing_and_forgetting_leave_the_other_patterns() {
        let mut patterns = PatternSubscriptions::default();
        patterns.add(1, pattern("orders.*"), AckMode::Manual);
        patterns.add(1, pattern("orders.>"), AckMode::Manual);
        patterns.add(2, pattern("orders.*"), AckMode::Manual);
        assert!(!patterns.remove(1, "refunds.*"));
        assert!(patterns.remove(1, "orders.*"));
        assert!(patterns.covers(1, "orders.eu.paid"));
        assert!(patterns.covers(1, "orders.eu"));
        assert!(patterns.remove(1, "orders.>"));
        assert!(!patterns.covers(1, "orders.eu"));
        patterns.forget(2);
        assert!(patterns.is_empty());
    }
}
