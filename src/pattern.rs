//! Topic patterns, in NATS's subject syntax: what a name a client gives
//! means, a topic's exact name or a pattern of names, and which topics a
//! pattern matches.
//!
//! A name splits into tokens at each `.`: `orders.eu.paid` is the three
//! tokens `orders`, `eu` and `paid`. In a name a client subscribes to, a
//! token that is exactly `*` matches any one token, and a last token that
//! is exactly `>` matches one or more tokens:
//!
//! | pattern | matches | does not match |
//! | --- | --- | --- |
//! | `orders.*` | `orders.eu`, `orders.us` | `orders`, `orders.eu.paid` |
//! | `orders.>` | `orders.eu`, `orders.eu.paid` | `orders` |
//! | `*.paid` | `orders.paid`, `refunds.paid` | `paid`, `a.b.paid` |
//! | `a.*.c` | `a.b.c`, `a.€.c` | `a.c`, `a.b.b.c` |
//! | `>` | every name of one token or more | a name with an empty token |
//!
//! Only a whole token is a wildcard: `a*`, `*a` and `orders.>x` are exact
//! names, as in NATS. A pattern must be one NATS would take: no empty token
//! anywhere (`orders..*`, `.*`, `*.` are refused), and `>` only as the last
//! token (`orders.>.eu` is refused). An exact name may have empty tokens
//! (`a..b`, `a.`), as brook's names always could (and a dead-letter topic
//! adds `.dlq` to any name), but no pattern matches such a name: NATS
//! would not take it as a subject at all.
//!
//! A publish names one exact topic, so a name with a `*` or `>` token
//! cannot be published to ([`has_wildcard_token`]): no topic can ever be
//! confused with a pattern.
//!
//! The decoders and the dispatcher use this file; it uses none of the
//! broker's, so it sits at the bottom of the reading order, like `ids.rs`.

use std::fmt;

/// The separator between the tokens of a name.
const SEPARATOR: char = '.';
/// The token that matches any one token.
const ONE_TOKEN: &str = "*";
/// The last token that matches one or more tokens.
const REST: &str = ">";

/// What a name in a subscription means: one topic, or a pattern of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Subject<'a> {
    /// A topic's exact name: no token of it is a wildcard.
    Exact(&'a str),
    Pattern(Pattern),
}

impl Subject<'_> {
    /// Reads `name` as a subscription names it: an exact name if no token
    /// is a wildcard, else a pattern, if NATS would take it.
    pub fn parse(name: &str) -> Result<Subject<'_>, PatternError> {
        if !has_wildcard_token(name) {
            return Ok(Subject::Exact(name));
        }
        let mut tokens = name.split(SEPARATOR).peekable();
        while let Some(token) = tokens.next() {
            if token.is_empty() {
                return Err(PatternError::EmptyToken(name.to_owned()));
            }
            if token == REST && tokens.peek().is_some() {
                return Err(PatternError::RestNotLast(name.to_owned()));
            }
        }
        let (fixed, rest) = match name.strip_suffix(REST) {
            Some(fixed) => (fixed.strip_suffix(SEPARATOR).unwrap_or(fixed), true),
            None => (name, false),
        };
        Ok(Subject::Pattern(Pattern {
            text: name.into(),
            fixed_len: fixed.len(),
            rest,
        }))
    }
}

/// Whether a token of `name` is exactly `*` or `>`: a name a publish may
/// not name, since a subscription would read it as a pattern.
pub(crate) fn has_wildcard_token(name: &str) -> bool {
    name.split(SEPARATOR)
        .any(|token| token == ONE_TOKEN || token == REST)
}

/// A valid pattern: at least one token is a wildcard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    /// The pattern as the client wrote it.
    text: Box<str>,
    /// How many bytes of `text` the tokens before a last `>` take, without
    /// the separator before it: the tokens matched one for one.
    fixed_len: usize,
    /// Whether the last token is `>`, which matches one or more tokens.
    rest: bool,
}

impl Pattern {
    /// The pattern as the client wrote it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the topic called `topic` is one of this pattern's. Walks
    /// both names token by token, allocating nothing.
    pub fn matches(&self, topic: &str) -> bool {
        let mut topic_tokens = topic.split(SEPARATOR);
        for wanted in self.fixed_tokens() {
            match topic_tokens.next() {
                Some(token) if !token.is_empty() && (wanted == ONE_TOKEN || wanted == token) => {}
                _ => return false,
            }
        }
        if !self.rest {
            return topic_tokens.next().is_none();
        }
        let mut rest = topic_tokens.peekable();
        rest.peek().is_some() && rest.all(|token| !token.is_empty())
    }

    /// Whether some topic name is matched both by this pattern and by
    /// `other`, found token by token from the two patterns alone: where
    /// both have a token, a `*` in either or the same word; then a
    /// pattern without `>` has exactly its tokens, one with `>` at least
    /// one more. An unsubscribe uses it to look only at the patterns that
    /// can cover what the ones it removes matched.
    pub fn overlaps(&self, other: &Pattern) -> bool {
        let (mine, theirs) = (self.fixed_tokens(), other.fixed_tokens());
        let compatible = |(a, b): (&str, &str)| a == ONE_TOKEN || b == ONE_TOKEN || a == b;
        if !mine.clone().zip(theirs.clone()).all(compatible) {
            return false;
        }
        let (mine, theirs) = (mine.count(), theirs.count());
        match (self.rest, other.rest) {
            (false, false) => mine == theirs,
            (true, false) => theirs > mine,
            (false, true) => mine > theirs,
            (true, true) => true,
        }
    }

    /// The tokens before a last `>` (all of them without one).
    fn fixed_tokens(&self) -> impl Iterator<Item = &str> + Clone {
        let fixed = &self.text[..self.fixed_len];
        // `>` alone has no token before it; `"".split` would give one.
        fixed.split(SEPARATOR).filter(move |_| !fixed.is_empty())
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Why a name with a wildcard token is not a pattern NATS would take.
/// Each carries the name, which its message quotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PatternError {
    /// A pattern with an empty token: two dots in a row, or a dot first or
    /// last.
    EmptyToken(String),
    /// A `>` token that is not the last one.
    RestNotLast(String),
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatternError::EmptyToken(name) => write!(
                f,
                "invalid pattern {name:?}: a pattern may not have an empty token \
                 (two dots in a row, or a dot first or last)"
            ),
            PatternError::RestNotLast(name) => write!(
                f,
                "invalid pattern {name:?}: '>' may only be the last token (orders.> is valid)"
            ),
        }
    }
}

impl std::error::Error for PatternError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> Pattern {
        match Subject::parse(text) {
            Ok(Subject::Pattern(pattern)) => pattern,
            other => panic!("{text:?} should be a pattern, is {other:?}"),
        }
    }

    /// Two patterns overlap exactly when some topic matches both: checked
    /// against every topic of a few tokens made of the words they use.
    #[test]
    fn patterns_overlap_exactly_when_a_topic_matches_both() {
        let texts = [
            ">", "*", "*.*", "*.>", "a.*", "a.>", "a.b.>", "b.*", "a.*.c", "*.b", "a.b.*", "*.*.>",
        ];
        let words = ["a", "b", "c"];
        let mut topics: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        for _ in 0..3 {
            let longer: Vec<String> = topics
                .iter()
                .flat_map(|t| words.iter().map(move |w| format!("{t}.{w}")))
                .collect();
            topics.extend(longer);
        }
        for one in texts.map(pattern) {
            for other in texts.map(pattern) {
                let both = topics.iter().any(|t| one.matches(t) && other.matches(t));
                assert_eq!(one.overlaps(&other), both, "{one} and {other}");
            }
        }
        assert!(!pattern("u.*").overlaps(&pattern("u.1.>")));
    }

    #[test]
    fn names_without_a_wildcard_token_are_exact() {
        for name in [
            "orders",
            "orders.eu",
            "a*",
            "*a",
            "**",
            ">>",
            "orders.>x",
            "orders.x>",
            "a..b",
            ".a",
            "a.",
            ".",
            "",
            "a b.*c",
            "commandes.été",
            "orders.eu.dlq",
        ] {
            assert_eq!(Subject::parse(name), Ok(Subject::Exact(name)), "{name:?}");
            assert!(!has_wildcard_token(name), "{name:?}");
        }
    }

    #[test]
    fn valid_patterns_parse() {
        for name in [
            "*", ">", "*.*", "*.>", "orders.*", "orders.>", "a.*.c", "*.paid", "a.*.>", "€.*",
            "a b.*",
        ] {
            assert_eq!(pattern(name).as_str(), name);
            assert!(has_wildcard_token(name), "{name:?}");
        }
    }

    #[test]
    fn invalid_patterns_are_refused_with_their_reason() {
        let empty = |name: &str| Err(PatternError::EmptyToken(name.to_owned()));
        let rest = |name: &str| Err(PatternError::RestNotLast(name.to_owned()));
        let cases = [
            ("orders..*", empty("orders..*")),
            (".*", empty(".*")),
            ("*.", empty("*.")),
            ("..>", empty("..>")),
            ("a..>", empty("a..>")),
            (">.", rest(">.")),
            ("orders.>.eu", rest("orders.>.eu")),
            (">.>", rest(">.>")),
            (">.*", rest(">.*")),
        ];
        for (name, expected) in cases {
            assert_eq!(Subject::parse(name), expected, "{name:?}");
            assert!(has_wildcard_token(name), "{name:?}");
        }
    }

    #[test]
    fn errors_name_the_pattern_and_the_rule() {
        let error = Subject::parse("orders.>.eu").unwrap_err().to_string();
        assert!(error.contains("\"orders.>.eu\""), "{error}");
        assert!(error.contains("last token"), "{error}");
        let error = Subject::parse("a..*").unwrap_err().to_string();
        assert!(error.contains("empty token"), "{error}");
    }

    #[test]
    fn patterns_match_and_do_not_match() {
        let cases: &[(&str, &[&str], &[&str])] = &[
            (
                "orders.*",
                &["orders.eu", "orders.us", "orders.*", "orders.€"],
                &[
                    "orders",
                    "orders.eu.paid",
                    "refunds.eu",
                    "orders.",
                    "orders..x",
                ],
            ),
            (
                "orders.>",
                &["orders.eu", "orders.eu.paid", "orders.a.b.c.d"],
                &[
                    "orders",
                    "orders.",
                    "orders.eu.",
                    "orders..eu",
                    "refunds.eu",
                ],
            ),
            ("*", &["a", "orders", "€"], &["a.b", "", "."]),
            (">", &["a", "a.b", "a.b.c"], &["", ".", "a.", ".a", "a..b"]),
            (
                "a.*.c",
                &["a.b.c", "a.€.c"],
                &["a.c", "a.b.b.c", "a..c", "x.b.c"],
            ),
            (
                "*.paid",
                &["orders.paid", "x.paid"],
                &["paid", "a.b.paid", ".paid"],
            ),
            ("a.*.>", &["a.b.c", "a.b.c.d"], &["a.b", "a", "a..c"]),
            ("*.*", &["a.b"], &["a", "a.b.c", "a."]),
            ("commandes.*", &["commandes.été"], &["commandes"]),
        ];
        for (text, matching, not_matching) in cases {
            let pattern = pattern(text);
            for topic in *matching {
                assert!(pattern.matches(topic), "{text:?} should match {topic:?}");
            }
            for topic in *not_matching {
                assert!(
                    !pattern.matches(topic),
                    "{text:?} should not match {topic:?}"
                );
            }
        }
    }

    #[test]
    fn a_token_with_a_star_in_a_pattern_is_matched_literally() {
        let pattern = pattern("a*.*");
        assert!(pattern.matches("a*.b"));
        assert!(!pattern.matches("ab.b"));
    }
}
