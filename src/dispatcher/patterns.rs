//! The pattern subscriptions (`SUB orders.*`, `SUB orders.* group
//! workers`): which connection follows which pattern, alone or in which
//! group, and how its deliveries are answered.
//!
//! A pattern subscription is not a cursor of its own. When it is made, the
//! dispatcher gives the connection a cursor (or, in a group, a place in
//! that group) in each topic the pattern matches (`subscribe.rs`, over as
//! many rounds as that takes); what is kept here is what is needed for the
//! topics that do not exist yet: when a topic is created
//! (`topic_table.rs`), it is matched against the patterns once
//! ([`PatternSubscriptions::matching`]), and each connection with a match
//! gets a cursor at the topic's start, or joins the group there, which
//! reads the topic from its start. From then on the topic's messages reach
//! those connections as any subscriber's or member's do: nothing is
//! matched per message, and a broker with no pattern subscription pays
//! nothing.
//!
//! A dead-letter topic (`orders.eu.dlq`) is a topic like any other, so
//! `orders.>` covers it, as NATS would.
//!
//! Uses `pattern.rs` and nothing of the dispatcher's, so it is a layer at
//! the bottom, like `group.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::ids::{ConnId, IdMap};
use crate::pattern::Pattern;
use crate::wire::reply::PatternReport;
use crate::wire::request::AckMode;

/// One pattern a connection follows: with a cursor of its own in each
/// matching topic (`group: None`), or as a member of the group of that
/// name in each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Followed {
    pub pattern: Pattern,
    pub group: Option<Arc<str>>,
    pub ack: AckMode,
}

/// Every connection's pattern subscriptions.
#[derive(Debug, Default)]
pub struct PatternSubscriptions {
    /// Per connection, what it follows, in the order it was asked for. A
    /// connection has few, so a list is searched.
    by_conn: IdMap<ConnId, Vec<Followed>>,
}

impl PatternSubscriptions {
    /// Records that `conn` follows `pattern`, alone or in `group`. A
    /// pattern it already followed that way takes the new `ack` mode.
    pub fn add(&mut self, conn: ConnId, followed: Followed) {
        let held = self.by_conn.entry(conn).or_default();
        let same = |known: &&mut Followed| {
            known.pattern == followed.pattern && known.group == followed.group
        };
        match held.iter_mut().find(same) {
            Some(known) => known.ack = followed.ack,
            None => held.push(followed),
        }
    }

    /// Forgets `conn`'s subscriptions to the pattern written `pattern`,
    /// alone and in any group, as an `UNSUB` of the pattern asks. Returns
    /// whether it had one.
    pub fn remove(&mut self, conn: ConnId, pattern: &str) -> bool {
        self.remove_where(conn, |known| known.pattern.as_str() == pattern)
    }

    /// Forgets that `conn` follows `pattern` alone (`group: None`) or in
    /// `group`, and only that.
    pub fn remove_in(&mut self, conn: ConnId, pattern: &Pattern, group: Option<&str>) {
        self.remove_where(conn, |known| {
            known.pattern == *pattern && known.group.as_deref() == group
        });
    }

    fn remove_where(&mut self, conn: ConnId, unwanted: impl Fn(&Followed) -> bool) -> bool {
        let Some(held) = self.by_conn.get_mut(&conn) else {
            return false;
        };
        let before = held.len();
        held.retain(|known| !unwanted(known));
        let removed = held.len() < before;
        if held.is_empty() {
            self.by_conn.remove(&conn);
        }
        removed
    }

    /// Forgets every pattern of a connection that closed.
    pub fn forget(&mut self, conn: ConnId) {
        self.by_conn.remove(&conn);
    }

    /// `conn`'s patterns that can match a topic one of `removed` matches:
    /// the only ones that can still cover the topics an unsubscribe of
    /// `removed` looks at. Narrowed once, not for each of those topics: a
    /// connection may follow a thousand patterns, and `removed` match a
    /// hundred thousand topics.
    pub fn covering(&self, conn: ConnId, removed: &[Pattern]) -> Covering<'_> {
        let held = self.by_conn.get(&conn).map_or(&[][..], Vec::as_slice);
        let overlaps = |f: &&Followed| removed.iter().any(|p| p.overlaps(&f.pattern));
        Covering(held.iter().filter(overlaps).collect())
    }

    /// What follows the topic called `topic`: each connection once alone
    /// and once per group, with the ack mode of its first pattern that
    /// matches that way.
    pub fn matching(&self, topic: &str) -> Vec<(ConnId, Option<Arc<str>>, AckMode)> {
        let mut found = Vec::new();
        for (&conn, held) in &self.by_conn {
            // Only this connection's finds can repeat one: looking
            // further back would make a topic's creation quadratic in the
            // connections that follow patterns.
            let from = found.len();
            for followed in held.iter().filter(|f| f.pattern.matches(topic)) {
                let known = |(_, g, _): &(ConnId, Option<Arc<str>>, AckMode)| *g == followed.group;
                if !found[from..].iter().any(known) {
                    found.push((conn, followed.group.clone(), followed.ack));
                }
            }
        }
        // The map's order is random; deliveries should not be.
        found.sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        found
    }

    /// Whether no connection has a pattern subscription: then a new topic
    /// needs no matching at all.
    pub fn is_empty(&self) -> bool {
        self.by_conn.is_empty()
    }

    /// Whether `conn` follows `pattern`, alone (`group: None`) or in
    /// `group`.
    pub fn follows(&self, conn: ConnId, pattern: &Pattern, group: Option<&str>) -> bool {
        self.by_conn.get(&conn).is_some_and(|held| {
            held.iter()
                .any(|f| f.pattern == *pattern && f.group.as_deref() == group)
        })
    }

    /// How many of `patterns`, alone or in `group`, `conn` does not follow
    /// yet.
    pub fn new_to(&self, conn: ConnId, patterns: &[Pattern], group: Option<&str>) -> usize {
        let is_new = |pattern: &&Pattern| !self.follows(conn, pattern, group);
        patterns.iter().filter(is_new).count()
    }

    /// How many patterns `conn` follows, alone or in groups.
    pub fn held_by(&self, conn: ConnId) -> usize {
        self.by_conn.get(&conn).map_or(0, Vec::len)
    }

    /// How many pattern subscriptions there are, over every connection.
    pub fn count(&self) -> usize {
        self.by_conn.values().map(Vec::len).sum()
    }

    /// What `TOPICS` shows of each pattern followed, in the patterns'
    /// order: how many connections follow it alone, and in how many
    /// groups it is followed.
    pub fn reports(&self) -> Vec<PatternReport> {
        let mut by_pattern: BTreeMap<&str, (usize, Vec<&str>)> = BTreeMap::new();
        for followed in self.by_conn.values().flatten() {
            let (subscribers, groups) = by_pattern.entry(followed.pattern.as_str()).or_default();
            match followed.group.as_deref() {
                None => *subscribers += 1,
                Some(group) if !groups.contains(&group) => groups.push(group),
                Some(_) => {}
            }
        }
        let report = |(pattern, (subscribers, groups)): (&str, (usize, Vec<&str>))| PatternReport {
            pattern: pattern.into(),
            subscribers,
            groups: groups.len(),
        };
        by_pattern.into_iter().map(report).collect()
    }
}

/// Some of a connection's patterns ([`PatternSubscriptions::covering`]).
pub struct Covering<'a>(Vec<&'a Followed>);

impl Covering<'_> {
    /// Whether one of the patterns, alone (`group: None`) or in `group`,
    /// matches the topic called `topic`.
    pub fn covers(&self, topic: &str, group: Option<&str>) -> bool {
        self.0
            .iter()
            .any(|f| f.group.as_deref() == group && f.pattern.matches(topic))
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

    fn alone(text: &str, ack: AckMode) -> Followed {
        Followed {
            pattern: pattern(text),
            group: None,
            ack,
        }
    }

    fn in_group(text: &str, group: &str) -> Followed {
        Followed {
            pattern: pattern(text),
            group: Some(group.into()),
            ack: AckMode::Manual,
        }
    }

    #[test]
    fn a_topic_matches_each_connection_once_with_its_first_patterns_mode() {
        let mut patterns = PatternSubscriptions::default();
        patterns.add(2, alone("orders.*", AckMode::Manual));
        patterns.add(2, alone("orders.>", AckMode::OnWrite));
        patterns.add(1, alone("*.eu", AckMode::OnWrite));
        assert_eq!(
            patterns.matching("orders.eu"),
            vec![(1, None, AckMode::OnWrite), (2, None, AckMode::Manual)]
        );
        assert_eq!(
            patterns.matching("orders.eu.dlq"),
            vec![(2, None, AckMode::OnWrite)]
        );
        assert_eq!(patterns.matching("refunds.us"), vec![]);
        assert_eq!(patterns.count(), 3);
    }

    #[test]
    fn a_connection_matches_once_alone_and_once_per_group() {
        let mut patterns = PatternSubscriptions::default();
        patterns.add(1, in_group("orders.*", "b"));
        patterns.add(1, in_group("orders.>", "b"));
        patterns.add(1, in_group("orders.*", "a"));
        patterns.add(1, alone("orders.*", AckMode::OnWrite));
        let group = |name: &str| Some(Arc::from(name));
        assert_eq!(
            patterns.matching("orders.eu"),
            vec![
                (1, None, AckMode::OnWrite),
                (1, group("a"), AckMode::Manual),
                (1, group("b"), AckMode::Manual),
            ]
        );
        let all = patterns.covering(1, &[pattern(">")]);
        assert!(all.covers("orders.eu.paid", Some("b")));
        assert!(!all.covers("orders.eu.paid", Some("a")));
        assert!(patterns.remove(1, "orders.*"));
        assert_eq!(patterns.count(), 1, "orders.> in b is left");
    }

    /// Only the patterns that can match what the removed ones matched are
    /// looked at: `u.1.>` never covers a topic of `u.*`.
    #[test]
    fn covering_keeps_only_the_patterns_that_overlap_the_removed_ones() {
        let mut patterns = PatternSubscriptions::default();
        patterns.add(1, alone("u.1.>", AckMode::Manual));
        patterns.add(1, alone("*.2", AckMode::Manual));
        let covering = patterns.covering(1, &[pattern("u.*")]);
        assert_eq!(covering.0.len(), 1, "*.2 only");
        assert!(covering.covers("u.2", None));
        assert!(!covering.covers("u.1.x", None), "u.1.> was left out");
    }

    #[test]
    fn adding_a_pattern_again_changes_its_mode_and_adds_nothing() {
        let mut patterns = PatternSubscriptions::default();
        patterns.add(1, alone("orders.*", AckMode::OnWrite));
        patterns.add(1, alone("orders.*", AckMode::Manual));
        assert_eq!(patterns.count(), 1);
        assert_eq!(
            patterns.matching("orders.eu"),
            vec![(1, None, AckMode::Manual)]
        );
    }

    #[test]
    fn removing_and_forgetting_leave_the_other_patterns() {
        let mut patterns = PatternSubscriptions::default();
        patterns.add(1, alone("orders.*", AckMode::Manual));
        patterns.add(1, alone("orders.>", AckMode::Manual));
        patterns.add(2, alone("orders.*", AckMode::Manual));
        assert!(!patterns.remove(1, "refunds.*"));
        assert!(patterns.remove(1, "orders.*"));
        let all = |patterns: &PatternSubscriptions, topic| {
            patterns.covering(1, &[pattern(">")]).covers(topic, None)
        };
        assert!(all(&patterns, "orders.eu.paid"));
        assert!(all(&patterns, "orders.eu"));
        assert!(patterns.remove(1, "orders.>"));
        assert!(!all(&patterns, "orders.eu"));
        patterns.forget(2);
        assert!(patterns.is_empty());
    }

    #[test]
    fn a_report_counts_subscribers_and_distinct_groups_per_pattern() {
        let mut patterns = PatternSubscriptions::default();
        patterns.add(1, alone("orders.*", AckMode::Manual));
        patterns.add(2, alone("orders.*", AckMode::Manual));
        patterns.add(2, in_group("orders.*", "workers"));
        patterns.add(3, in_group("orders.*", "workers"));
        patterns.add(3, in_group("orders.>", "audit"));
        let shown: Vec<_> = patterns
            .reports()
            .into_iter()
            .map(|r| (r.pattern.to_string(), r.subscribers, r.groups))
            .collect();
        assert_eq!(
            shown,
            [("orders.*".into(), 2, 1), ("orders.>".into(), 0, 1)]
        );
    }
}
