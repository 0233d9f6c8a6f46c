//! What one user may touch: the topic patterns they may publish to,
//! subscribe to (which covers replay and `PULL`) and join consumer groups
//! on. The auth file (`users.rs`) lists them; the reader's guard
//! (`guard.rs`) asks [`Permissions::allows`] once per action and topic,
//! and remembers the answer.
//!
//! A rule is `*` alone (every topic), an exact name, or a pattern in
//! `pattern.rs`'s syntax. A request for an exact topic is allowed if a
//! rule matches it; a subscription to a pattern only if one rule covers
//! the whole pattern, every topic it could ever match: `orders.>` covers
//! `orders.*` and `orders.eu.>`, but `orders.*` does not cover
//! `orders.>`. So a pattern can never reach a topic its subscriber could
//! not name one by one.
//!
//! A dead-letter topic, `<topic>.dlq`, may be read by whoever may read
//! `<topic>`: the messages in it came from there.

use std::fmt;

use crate::ids::DEAD_LETTER_SUFFIX;
use crate::pattern::{PatternError, Subject};

/// The three things a client can do to a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Publish,
    /// Subscribe, replay from an offset, or `PULL` (one naming a group
    /// needs [`Action::Group`] as well).
    Subscribe,
    /// Join a consumer group on the topic.
    Group,
}

impl Action {
    /// A number from 0 for each action, to keep something per action in
    /// an array.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Publish => "publish",
            Action::Subscribe => "subscribe",
            Action::Group => "group",
        })
    }
}

/// One allowed name or pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// `*` alone: every topic.
    Everything,
    /// An exact name or a valid pattern, as written.
    Subject(String),
}

impl Rule {
    /// Reads one word of the auth file (or of
    /// `--allow-anonymous-binary`): `*`, an exact name, or a pattern
    /// NATS would take.
    pub(crate) fn parse(word: &str) -> Result<Rule, PatternError> {
        if word == "*" {
            return Ok(Rule::Everything);
        }
        Subject::parse(word)?;
        Ok(Rule::Subject(word.to_owned()))
    }

    /// Whether every topic `requested` names (one, if it is exact) is
    /// one this rule allows.
    pub fn covers(&self, requested: &str) -> bool {
        match self {
            Rule::Everything => true,
            Rule::Subject(allowed) => covers(allowed, requested),
        }
    }
}

/// Whether every name `requested` matches is one `allowed` matches, token
/// by token: a literal token covers only itself, `*` any one non-empty
/// token but `>`, and a last `>` one or more non-empty tokens of any kind.
fn covers(allowed: &str, requested: &str) -> bool {
    let mut wanted = requested.split('.');
    for token in allowed.split('.') {
        match (token, wanted.next()) {
            (">", Some(first)) => {
                return !first.is_empty() && wanted.all(|rest| !rest.is_empty());
            }
            ("*", Some(next)) if !next.is_empty() && next != ">" => {}
            (literal, Some(next)) if literal != "*" && literal != ">" && literal == next => {}
            _ => return false,
        }
    }
    wanted.next().is_none()
}

/// What one user may do: a list of rules per action. Empty lists allow
/// nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    pub publish: Vec<Rule>,
    pub subscribe: Vec<Rule>,
    pub group: Vec<Rule>,
}

impl Permissions {
    /// The same rules for every action (`--allow-anonymous-binary`).
    pub fn on_every_action(rules: Vec<Rule>) -> Permissions {
        Permissions {
            publish: rules.clone(),
            subscribe: rules.clone(),
            group: rules,
        }
    }

    /// Whether `action` on `topic` (an exact name, or a pattern for a
    /// subscription) is allowed.
    pub fn allows(&self, action: Action, topic: &str) -> bool {
        let rules = match action {
            Action::Publish => &self.publish,
            Action::Subscribe => &self.subscribe,
            Action::Group => &self.group,
        };
        let covered = |name: &str| rules.iter().any(|rule| rule.covers(name));
        covered(topic)
            || (action != Action::Publish
                && topic.strip_suffix(DEAD_LETTER_SUFFIX).is_some_and(covered))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_token_by_token() {
        // (allowed, requested, covered)
        let table = [
            ("orders", "orders", true),
            ("orders", "orders.eu", false),
            ("orders", "*", false),
            ("orders.*", "orders.eu", true),
            ("orders.*", "orders.*", true),
            ("orders.*", "orders.>", false),
            ("orders.*", "orders.eu.paid", false),
            ("orders.*", "orders", false),
            ("orders.*", "orders.", false),
            ("orders.>", "orders.eu", true),
            ("orders.>", "orders.eu.paid", true),
            ("orders.>", "orders.*", true),
            ("orders.>", "orders.>", true),
            ("orders.>", "orders.*.>", true),
            ("orders.>", "orders", false),
            ("orders.>", "orders.eu.", false),
            ("orders.>", "refunds.>", false),
            ("orders.>", ">", false),
            ("*.paid", "orders.paid", true),
            ("*.paid", "*.paid", true),
            ("*.paid", ">", false),
            ("*.paid", "orders.*", false),
            ("a.*.c", "a.*.c", true),
            ("a.*.c", "a.>", false),
            (">", ">", true),
            (">", "a.*.>", true),
            (">", "anything.at.all", true),
            (">", "a..b", false),
            ("a.b", "a.*", false),
        ];
        for (allowed, requested, expected) in table {
            assert_eq!(
                covers(allowed, requested),
                expected,
                "{allowed:?} covers {requested:?}"
            );
        }
    }

    #[test]
    fn star_alone_is_everything_and_bad_patterns_are_refused() {
        assert_eq!(Rule::parse("*"), Ok(Rule::Everything));
        assert!(Rule::Everything.covers("a..b"));
        assert!(Rule::parse("orders.>.eu").is_err());
        assert!(Rule::parse("orders..*").is_err());
    }

    #[test]
    fn dead_letters_inherit_the_read_permission() {
        let rules = |words: &[&str]| words.iter().map(|w| Rule::parse(w).unwrap()).collect();
        let user = Permissions {
            publish: rules(&["orders"]),
            subscribe: rules(&["orders", "metrics.*"]),
            group: rules(&["jobs"]),
        };
        assert!(user.allows(Action::Subscribe, "orders.dlq"));
        assert!(user.allows(Action::Subscribe, "metrics.cpu.dlq"));
        assert!(user.allows(Action::Group, "jobs.dlq"));
        assert!(!user.allows(Action::Publish, "orders.dlq"));
        assert!(!user.allows(Action::Subscribe, "refunds.dlq"));
        assert!(!user.allows(Action::Subscribe, "jobs"));
        assert!(!user.allows(Action::Publish, "metrics.cpu"));
    }
}
