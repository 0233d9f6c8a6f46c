//! What a client can ask, in words both protocols share: the decoders
//! (`binary.rs`, `line.rs`) turn bytes into a `Request`, or a
//! `Refusal` that says why not, and everything after the reader thread
//! works with these alone. `Limits` are the sizes a decoder checks
//! before it waits for a frame's bytes.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use crate::ids::Payload;
use crate::pattern::has_wildcard_token;

/// Topic names travel in deliveries behind a `u16` length, so no name can be
/// longer than this.
pub const MAX_TOPIC_NAME_BYTES: usize = u16::MAX as usize;

/// Where a new subscription starts reading its topic's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest message the topic still holds.
    Beginning,
    /// Only messages published from now on.
    Current,
    /// The message with this offset, or the first one published at or after
    /// it if the log has not reached it yet.
    From(u64),
}

/// How the deliveries of a subscription are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckMode {
    /// The client answers each delivery with an Ack or a Nack, and what it
    /// does not acknowledge is delivered again. Always so in the binary
    /// protocol.
    Manual,
    /// A delivery counts as acknowledged once it is written to the socket:
    /// a line-protocol subscriber that did not ask for `manual`.
    OnWrite,
}

/// One complete request from a client, in either protocol. The binary
/// protocol (`binary.rs`) makes the first five; the line protocol
/// (`line.rs`) can make every one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    /// `group`: join the consumer group of that name on each topic, which
    /// shares the topic's messages among its members (`group.rs`); `start`
    /// then only says where a new group starts.
    Subscribe {
        topics: Vec<String>,
        start: StartAt,
        ack: AckMode,
        group: Option<String>,
    },
    Unsubscribe {
        topics: Vec<String>,
    },
    /// The topic name is shared: consecutive frames naming the same topic
    /// get the same `Arc`, so the dispatcher can recognise it by pointer.
    /// `confirm` asks for a reply carrying the message's offset.
    Publish {
        topic: Arc<str>,
        payload: Payload,
        confirm: bool,
    },
    /// Answers the oldest delivery not yet answered on this connection.
    Ack,
    /// Like [`Request::Ack`], but asks for that message to be delivered again.
    Nack,
    /// Takes up to `max` messages of `topic` that the consumer group
    /// `group` (the default group if `None`) has not given out, each done
    /// once written.
    Pull {
        topic: String,
        max: Option<u64>,
        group: Option<String>,
    },
    /// Lists the topics.
    Topics,
    /// Reports the broker's counters.
    Stats,
    Ping,
    Help,
    /// Says goodbye and closes the connection.
    Quit,
    /// Logs in. The reader's guard (`auth/guard.rs`) answers it and never
    /// passes it on: the password goes no further than the reader.
    Auth(Credentials),
    /// What the guard passes on for a good login, for the dispatcher to
    /// answer `+OK` (or status 1 in the binary protocol).
    Authenticated,
}

/// A user name and a password, from `AUTH` (or the binary action 8). Its
/// `Debug` leaves the password out, so that no log line can show it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub user: String,
    password: String,
}

impl Credentials {
    pub fn new(user: String, password: String) -> Credentials {
        Credentials { user, password }
    }

    pub fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({:?}, password hidden)", self.user)
    }
}

/// What a decoder makes of the next request: the request, or why the
/// broker refuses it.
pub(crate) type Decoded = Result<Request, Refusal>;

/// Whether `name` may name a consumer group: not empty, and no longer than
/// a topic name may be (`--max-topic-name-bytes`). One rule for both
/// protocols, so that a line client cannot make a group that a binary
/// client cannot join.
pub(crate) fn is_valid_group_name(name: &str, max_bytes: usize) -> bool {
    !name.is_empty() && name.len() <= max_bytes
}

impl Request {
    /// Whether the broker answers this request. A connection that never
    /// sends one (a binary publisher) never needs a writer thread.
    pub fn needs_reply(&self) -> bool {
        !matches!(self, Request::Publish { confirm: false, .. })
    }
}

/// Why the broker refuses a request, whichever protocol it came in: the
/// reason the client is sent, whether the connection can go on after it,
/// and the details for the log. Each decoder has an error type of its own
/// that says more (`BinaryError` in `binary.rs`, `LineError` in `line.rs`)
/// and turns it into this one, so the reader and the dispatcher never need
/// to know which protocol a client speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    reason: Cow<'static, str>,
    fatal: bool,
    detail: Cow<'static, str>,
}

impl Refusal {
    /// A refusal the client hears as `reason`, logged as `detail`; `fatal`
    /// if the decoder cannot find where the next request starts.
    pub fn new(reason: Cow<'static, str>, fatal: bool, detail: Cow<'static, str>) -> Refusal {
        Refusal {
            reason,
            fatal,
            detail,
        }
    }

    /// The reason sent to the client (an Error status, or `-ERR`).
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Whether the stream can no longer be parsed after this refusal: we do
    /// not know how long the bad request is, or refuse to read it. The
    /// broker then replies and closes the connection.
    pub fn is_fatal(&self) -> bool {
        self.fatal
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

/// The size limits a decoder enforces before it waits for a frame's bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_message_bytes: usize,
    pub max_topic_list_bytes: usize,
    /// The longest topic name, in bytes (at most [`MAX_TOPIC_NAME_BYTES`]).
    pub max_topic_name_bytes: usize,
    /// The most topics one subscribe or unsubscribe may name.
    pub max_topics_per_request: usize,
    /// The longest line the line protocol accepts.
    pub max_line_bytes: usize,
}

/// The topic a connection last published to.
///
/// Publishers tend to send many messages to one topic, so a frame naming it
/// again costs a comparison instead of an allocation, and every message to
/// it carries the same `Arc`, which the dispatcher recognises by pointer.
///
/// It is also where both decoders refuse a publish to a name with a `*` or
/// `>` token ([`has_wildcard_token`]), which a subscription would read as
/// a pattern: a name is checked once, when it is new, and a refused name is
/// never kept, so a steady publisher pays nothing for the rule.
#[derive(Debug, Default)]
pub(crate) struct LastTopic(Option<Arc<str>>);

impl LastTopic {
    /// `name` as a shared string: the last one if it is the same again.
    pub fn shared(&mut self, name: &str) -> Result<Arc<str>, PublishToPattern> {
        match &self.0 {
            Some(last) if **last == *name => Ok(last.clone()),
            _ if has_wildcard_token(name) => Err(PublishToPattern),
            _ => Ok(self.0.insert(Arc::from(name)).clone()),
        }
    }

    /// Like [`LastTopic::shared`] for a name still in bytes. A repeated
    /// name is recognised before it is checked for UTF-8, which saves the
    /// check on every message of a steady publisher.
    pub fn shared_utf8(&mut self, name: &[u8]) -> Result<Arc<str>, BadPublishTopic> {
        match &self.0 {
            Some(last) if last.as_bytes() == name => Ok(last.clone()),
            _ => {
                let name = std::str::from_utf8(name).map_err(|_| BadPublishTopic::NotUtf8)?;
                Ok(self.shared(name)?)
            }
        }
    }
}

/// A publish to a name with a `*` or `>` token, which only a subscription
/// may name, as a pattern. Its text is the reason the client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PublishToPattern;

impl PublishToPattern {
    pub const REASON: &'static str = "cannot publish to a name with a '*' or '>' token: \
         those are wildcards in a subscription; publish to an exact topic name";
}

impl fmt::Display for PublishToPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::REASON)
    }
}

/// Why a binary publisher's topic frame names no topic it may publish to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadPublishTopic {
    NotUtf8,
    Pattern,
}

impl From<PublishToPattern> for BadPublishTopic {
    fn from(_: PublishToPattern) -> BadPublishTopic {
        BadPublishTopic::Pattern
    }
}

/// What the tests of both decoders share.
#[cfg(test)]
pub(crate) mod testing {
    use super::Decoded;

    /// Feeds `bytes` to `decode` `chunk` bytes at a time, the way a reader
    /// thread does (unconsumed bytes are kept and extended), and returns
    /// every request and refusal.
    pub fn decode_in_chunks(
        bytes: &[u8],
        chunk: usize,
        mut decode: impl FnMut(&[u8]) -> (usize, Option<Decoded>),
    ) -> Vec<Decoded> {
        let mut pending = Vec::new();
        let mut out = Vec::new();
        for piece in bytes.chunks(chunk) {
            pending.extend_from_slice(piece);
            loop {
                let (used, event) = decode(&pending);
                pending.drain(..used);
                match event {
                    Some(event) => out.push(event),
                    None => break,
                }
            }
        }
        out
    }

    /// A small deterministic random generator (xorshift): no crates, and
    /// the same inputs on every run, so a failure can be replayed.
    pub fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        }
    }
}
