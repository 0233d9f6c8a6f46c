//! The binary wire format: the byte layouts of the Go broker
//! willdot/messagebroker, a decoder that turns a byte stream into requests, and
//! the encoders for what the broker sends back.
//!
//! All integers are big-endian. A connection starts with a `u16` action:
//!
//! ```text
//! Subscribe           0x0001  u32 len, JSON array of topic names, u16 start-at [offset]
//! Unsubscribe         0x0002  u32 len, JSON array of topic names
//! Publish             0x0003  then frames forever: u16 len, "topic:" + name, u32 len, payload
//! Ack / Nack          0x0004 / 0x0005, on a subscriber connection, one per delivery, in order
//! Publish, confirmed  0x0006  as Publish; each message answered once stored (brook's extension)
//! Subscribe, group    0x0007  u16 len, group name (UTF-8), then as Subscribe (brook's extension)
//! Auth                0x0008  u16 len, user, u16 len, password (UTF-8), then any first action (brook's extension)
//! ```
//!
//! Start-at is `0` Beginning, `1` Current, `2` From followed by a `u16` offset,
//! or brook's extension `3` From followed by a `u64` offset (an old client
//! never sends it). The broker answers (un)subscribe with a `u16` status:
//! `1` Subscribed, `2` Unsubscribed, or `3` Error followed by a `u16` length
//! and a UTF-8 reason; it answers each message of a confirmed publisher
//! with `4` Published followed by its `u64` offset, or with an Error. A
//! delivery is `u16` topic length, topic, `u64` payload length, payload. `docs/PROTOCOL.md` has the same tables with worked hex.
//!
//! # The decoder
//!
//! TCP is a byte stream: one `read()` may return half a frame, or ten frames
//! and a half. `BinaryDecoder` is therefore an explicit state machine, in the
//! manner of the NATS server's parser: its `State` says which field of which
//! frame comes next and how many bytes that field needs. `BinaryDecoder::decode`
//! takes whatever bytes the reader has, consumes every field it can, and stops
//! at the first field that is not complete yet, remembering where it was. The
//! reader keeps the unconsumed bytes and calls again after its next `read()`.
//! Nothing here does I/O, so the same code serves the broker, the tests and
//! the fuzzers.
//!
//! Every length prefix is checked against `Limits` before the bytes it
//! announces are waited for, so a hostile `0xFFFFFFFF` never makes the reader
//! allocate four gigabytes.

use std::num::TryFromIntError;
use std::sync::Arc;

use byteorder::{BigEndian, ByteOrder};

use super::json;
use super::reply::Reply;
use super::request::{
    is_valid_group_name, AckMode, BadPublishTopic, Credentials, Decoded, LastTopic, Limits,
    PublishToPattern, Refusal, Request, StartAt,
};
use crate::ids::Payload;

/// The `u16` a client sends to say what it wants.
pub mod action {
    pub const SUBSCRIBE: u16 = 1;
    pub const UNSUBSCRIBE: u16 = 2;
    pub const PUBLISH: u16 = 3;
    pub const ACK: u16 = 4;
    pub const NACK: u16 = 5;
    /// brook's extension: like `PUBLISH`, but every message is answered
    /// with `PUBLISHED` and its offset once it is stored (or with an
    /// Error). An old client never sends it.
    pub const PUBLISH_CONFIRMED: u16 = 6;
    /// brook's extension: a subscribe that joins a consumer group, its
    /// name (`u16` length and UTF-8) before the fields of a subscribe.
    pub const SUBSCRIBE_GROUP: u16 = 7;
    /// brook's extension: log in (`--auth-file`) with a `u16` length and
    /// a user name, then a `u16` length and a password, both UTF-8;
    /// answered with status 1 or an Error, after which the connection
    /// starts again with its first action.
    pub const AUTH: u16 = 8;
}

/// The `u16` the broker sends back to a (un)subscribe or a bad request.
pub mod status {
    pub const SUBSCRIBED: u16 = 1;
    pub const UNSUBSCRIBED: u16 = 2;
    pub const ERROR: u16 = 3;
    /// brook's extension, to a `PUBLISH_CONFIRMED` connection only:
    /// followed by the stored message's `u64` offset.
    pub const PUBLISHED: u16 = 4;
}

/// The `u16` that says where a new subscription starts reading its topic.
pub mod start_at {
    pub const BEGINNING: u16 = 0;
    pub const CURRENT: u16 = 1;
    /// Followed by a `u16` offset (the reference's layout).
    pub const FROM: u16 = 2;
    /// brook's extension: followed by a `u64` offset.
    pub const FROM_U64: u16 = 3;
}

/// The prefix every topic frame of a publisher carries, for compatibility.
pub const TOPIC_PREFIX: &[u8] = b"topic:";

/// A binary request the broker refuses. Each variant has the short reason
/// text sent back in the Error status; the texts copied from the Go
/// reference are kept byte for byte because clients may match on them. It
/// leaves the decoder as a [`Refusal`], which the rest of the broker reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BinaryError {
    /// The action is not one this connection can take.
    UnknownAction(u16),
    /// A publish topic frame that does not start with `topic:`.
    MissingTopicPrefix,
    /// A publish topic frame whose name is not UTF-8.
    TopicNotUtf8,
    /// A publish topic frame whose name has a `*` or `>` token.
    PublishToPattern,
    /// A subscribe or unsubscribe whose topic list is not a JSON array of
    /// strings.
    InvalidTopicData(json::JsonError),
    /// A subscribe or unsubscribe with a zero-length topic list.
    EmptyTopicData,
    /// A start-at type other than 0..=3.
    InvalidStartAt(u16),
    /// A subscribe naming a topic longer than a delivery frame can carry.
    TopicNameTooLong(usize),
    /// A subscribe or unsubscribe naming more topics than the limit.
    TooManyTopics(usize),
    /// A group name that is empty, not UTF-8, or too long.
    InvalidGroup,
    /// An AUTH whose user name or password is not UTF-8.
    CredentialsNotUtf8,
    /// A payload longer than `--max-message-bytes`.
    MessageTooLarge { len: u64, limit: usize },
    /// A topic list longer than its limit.
    TopicDataTooLarge { len: u64, limit: usize },
    /// An empty payload from a publisher that asked for confirmations (a
    /// plain publisher's is dropped without a word, as the reference does).
    EmptyMessage,
}

impl BinaryError {
    /// The reason sent to the client in the Error status.
    fn reason(&self) -> &'static str {
        match self {
            BinaryError::UnknownAction(_) => "unknown action",
            BinaryError::MissingTopicPrefix => "topic data does not contain 'topic:' prefix",
            BinaryError::TopicNotUtf8 => "topic name is not valid UTF-8",
            BinaryError::PublishToPattern => PublishToPattern::REASON,
            BinaryError::InvalidTopicData(_) => "invalid topic data provided",
            BinaryError::EmptyTopicData => "data length of topics is 0",
            BinaryError::InvalidStartAt(_) => "invalid start up type provided",
            BinaryError::TopicNameTooLong(_) => "topic name too long",
            BinaryError::TooManyTopics(_) => "too many topics",
            BinaryError::InvalidGroup => "invalid group name",
            BinaryError::CredentialsNotUtf8 => "invalid credentials",
            BinaryError::MessageTooLarge { .. } => "message too large",
            BinaryError::TopicDataTooLarge { .. } => "topic data too large",
            BinaryError::EmptyMessage => "empty message",
        }
    }

    /// Whether the stream can still be parsed after this error. When it
    /// cannot (we do not know how long the bad frame is, or refuse to read
    /// it), the broker replies and closes the connection.
    fn is_fatal(&self) -> bool {
        matches!(
            self,
            BinaryError::UnknownAction(_)
                | BinaryError::MessageTooLarge { .. }
                | BinaryError::TopicDataTooLarge { .. }
        )
    }
}

impl std::fmt::Display for BinaryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BinaryError::UnknownAction(a) => write!(f, "unknown action {a}"),
            BinaryError::InvalidTopicData(e) => write!(f, "invalid topic data: {e}"),
            BinaryError::InvalidStartAt(t) => write!(f, "invalid start-at type {t}"),
            BinaryError::TopicNameTooLong(n) => write!(f, "topic name of {n} bytes"),
            BinaryError::TooManyTopics(n) => write!(f, "{n} topics in one request"),
            BinaryError::InvalidGroup => write!(f, "invalid group name"),
            BinaryError::MessageTooLarge { len, limit } => {
                write!(f, "message of {len} bytes, limit {limit}")
            }
            BinaryError::TopicDataTooLarge { len, limit } => {
                write!(f, "topic list of {len} bytes, limit {limit}")
            }
            other => f.write_str(other.reason()),
        }
    }
}

impl std::error::Error for BinaryError {}

impl From<BinaryError> for Refusal {
    fn from(error: BinaryError) -> Refusal {
        Refusal::new(
            error.reason().into(),
            error.is_fatal(),
            error.to_string().into(),
        )
    }
}

/// What the decoder expects next: one field of one frame.
///
/// A publisher moves its `State` four times per message (topic length,
/// topic, payload length, payload), so the enum is kept to a few words:
/// what only a subscribe carries across its fields (a group name, a parsed
/// topic list) lives behind a `Box`, allocated per subscribe, never per
/// published message.
#[derive(Debug)]
enum State {
    /// The first `u16` of a connection: it decides the connection's role.
    FirstAction,
    /// The next `u16` action of a subscriber connection.
    SubscriberAction,
    /// The `u16` length of the group name of a `SUBSCRIBE_GROUP`.
    GroupLength,
    /// The group name.
    Group {
        len: usize,
    },
    /// The `u32` length of a topic list, after action `action` (and, for a
    /// subscribe that joins a group, the group's name, or why it was
    /// refused).
    TopicListLength {
        action: u16,
        group: GroupName,
    },
    /// The JSON topic list itself.
    TopicList {
        action: u16,
        len: usize,
        group: GroupName,
    },
    /// The `u16` length of an AUTH's user name.
    AuthUserLength,
    AuthUser {
        len: usize,
    },
    /// The `u16` length of its password, after the user name (`None` if
    /// it was not UTF-8).
    AuthPasswordLength {
        user: Option<Box<str>>,
    },
    AuthPassword {
        user: Option<Box<str>>,
        len: usize,
    },
    /// The `u16` start-at type that ends a subscribe.
    StartAtType(Box<PendingSubscribe>),
    /// The offset after a From start-at: 2 or 8 bytes.
    StartOffset {
        subscribe: Box<PendingSubscribe>,
        width: usize,
    },
    /// The `u16` length of a publisher's next topic frame.
    TopicLength,
    /// The topic frame, `topic:` + name.
    Topic {
        len: usize,
    },
    /// The `u32` payload length. `topic` is `None` when the topic frame was
    /// refused: the payload is then read and dropped, keeping the stream
    /// aligned, since the error has already been reported.
    PayloadLength {
        topic: Option<Arc<str>>,
    },
    /// The payload bytes.
    Payload {
        topic: Option<Arc<str>>,
        len: usize,
    },
    /// After a fatal error: nothing more is parsed.
    Closed,
}

/// The group a subscribe joins: none, a name, or why the name was refused.
/// Boxed to keep [`State`] small; only a subscribe that names a group
/// allocates it.
type GroupName = Option<Box<Result<String, BinaryError>>>;

/// A subscribe whose topic list has been read, waiting for its start-at.
/// Boxed in [`State`] for the same reason as [`GroupName`].
#[derive(Debug)]
struct PendingSubscribe {
    /// The parsed list, or why it (or the group name) could not be parsed;
    /// either way the start-at is consumed so the stream stays aligned.
    topics: Result<Vec<String>, BinaryError>,
    group: Option<String>,
}

/// Turns the bytes of one connection into requests. See the module docs.
#[derive(Debug)]
pub(crate) struct BinaryDecoder {
    state: State,
    limits: Limits,
    last_topic: LastTopic,
    /// Whether this publisher asked for a confirmation of every message
    /// (its first action was `PUBLISH_CONFIRMED`).
    confirm: bool,
}

/// What one step of the decoder produced.
enum Step {
    /// The next field is not complete; wait for more bytes.
    NeedMore,
    /// A field was consumed; the frame goes on.
    Continue,
    /// A field was consumed and completed a request (or a refusal).
    Emit(Decoded),
}

impl BinaryDecoder {
    pub fn new(limits: Limits) -> BinaryDecoder {
        BinaryDecoder {
            state: State::FirstAction,
            limits,
            last_topic: LastTopic::default(),
            confirm: false,
        }
    }

    /// Decodes the next request from `input`.
    ///
    /// Returns how many bytes were consumed and the request, if one was
    /// completed. `(n, None)` means everything decodable has been consumed:
    /// the caller keeps `input[n..]` and calls again once more bytes arrive.
    /// After a fatal error the decoder consumes nothing more.
    pub fn decode(&mut self, input: &[u8]) -> (usize, Option<Decoded>) {
        let mut consumed = 0;
        loop {
            match self.step(&input[consumed..], &mut consumed) {
                Step::NeedMore => return (consumed, None),
                Step::Continue => continue,
                // A fatal error's transition has already closed the decoder.
                Step::Emit(result) => return (consumed, Some(result)),
            }
        }
    }

    /// Consumes at most one field from `input`, advancing `consumed`.
    fn step(&mut self, input: &[u8], consumed: &mut usize) -> Step {
        let needed = self.field_width();
        if input.len() < needed {
            return Step::NeedMore;
        }
        let field = &input[..needed];
        *consumed += needed;
        let state = std::mem::replace(&mut self.state, State::Closed);
        let (next, step) = self.advance(state, field);
        self.state = next;
        step
    }

    /// How many bytes the current state's field needs.
    fn field_width(&self) -> usize {
        match &self.state {
            State::FirstAction | State::SubscriberAction | State::GroupLength => 2,
            State::AuthUserLength | State::AuthPasswordLength { .. } => 2,
            State::AuthUser { len } | State::AuthPassword { len, .. } => *len,
            State::Group { len } => *len,
            State::TopicListLength { .. } => 4,
            State::TopicList { len, .. } => *len,
            State::StartAtType(_) => 2,
            State::StartOffset { width, .. } => *width,
            State::TopicLength => 2,
            State::Topic { len } => *len,
            State::PayloadLength { .. } => 4,
            State::Payload { len, .. } => *len,
            // Never satisfied: a closed decoder waits forever.
            State::Closed => usize::MAX,
        }
    }

    /// The name in a publisher's topic frame, `topic:` + name.
    fn publish_topic(&mut self, frame: &[u8]) -> Result<Arc<str>, BinaryError> {
        let name = frame
            .strip_prefix(TOPIC_PREFIX)
            .ok_or(BinaryError::MissingTopicPrefix)?;
        if name.len() > self.limits.max_topic_name_bytes {
            return Err(BinaryError::TopicNameTooLong(name.len()));
        }
        self.last_topic.shared_utf8(name).map_err(|bad| match bad {
            BadPublishTopic::NotUtf8 => BinaryError::TopicNotUtf8,
            BadPublishTopic::Pattern => BinaryError::PublishToPattern,
        })
    }

    /// The transition function: given the state and its complete field,
    /// returns the next state and what happened.
    fn advance(&mut self, state: State, field: &[u8]) -> (State, Step) {
        match state {
            State::FirstAction => match BigEndian::read_u16(field) {
                action::PUBLISH => (State::TopicLength, Step::Continue),
                action::PUBLISH_CONFIRMED => {
                    self.confirm = true;
                    (State::TopicLength, Step::Continue)
                }
                a @ (action::SUBSCRIBE | action::UNSUBSCRIBE | action::SUBSCRIBE_GROUP) => {
                    (topic_list_or_group(a), Step::Continue)
                }
                action::AUTH => (State::AuthUserLength, Step::Continue),
                other => (State::Closed, emit_err(BinaryError::UnknownAction(other))),
            },
            State::AuthUserLength => {
                let len = BigEndian::read_u16(field) as usize;
                (State::AuthUser { len }, Step::Continue)
            }
            State::AuthUser { .. } => {
                let user = std::str::from_utf8(field).ok().map(Box::from);
                (State::AuthPasswordLength { user }, Step::Continue)
            }
            State::AuthPasswordLength { user } => {
                let len = BigEndian::read_u16(field) as usize;
                (State::AuthPassword { user, len }, Step::Continue)
            }
            State::AuthPassword { user, .. } => {
                let request = match (user, std::str::from_utf8(field)) {
                    (Some(user), Ok(password)) => Ok(Request::Auth(Credentials::new(
                        user.into(),
                        password.to_owned(),
                    ))),
                    _ => Err(BinaryError::CredentialsNotUtf8.into()),
                };
                (State::FirstAction, Step::Emit(request))
            }
            State::SubscriberAction => match BigEndian::read_u16(field) {
                action::ACK => (State::SubscriberAction, Step::Emit(Ok(Request::Ack))),
                action::NACK => (State::SubscriberAction, Step::Emit(Ok(Request::Nack))),
                a @ (action::SUBSCRIBE | action::UNSUBSCRIBE | action::SUBSCRIBE_GROUP) => {
                    (topic_list_or_group(a), Step::Continue)
                }
                other => (State::Closed, emit_err(BinaryError::UnknownAction(other))),
            },
            State::GroupLength => {
                let len = BigEndian::read_u16(field) as usize;
                (State::Group { len }, Step::Continue)
            }
            State::Group { .. } => {
                let group = match std::str::from_utf8(field) {
                    Ok(name) if is_valid_group_name(name, self.limits.max_topic_name_bytes) => {
                        Ok(name.to_owned())
                    }
                    _ => Err(BinaryError::InvalidGroup),
                };
                let action = action::SUBSCRIBE;
                let group = Some(Box::new(group));
                (State::TopicListLength { action, group }, Step::Continue)
            }
            State::TopicListLength { action, group } => {
                let len = BigEndian::read_u32(field) as usize;
                if len == 0 {
                    // As the reference does: answer at once, read nothing more.
                    (
                        State::SubscriberAction,
                        emit_err(BinaryError::EmptyTopicData),
                    )
                } else if len > self.limits.max_topic_list_bytes {
                    let limit = self.limits.max_topic_list_bytes;
                    let error = BinaryError::TopicDataTooLarge {
                        len: len as u64,
                        limit,
                    };
                    (State::Closed, emit_err(error))
                } else {
                    (State::TopicList { action, len, group }, Step::Continue)
                }
            }
            State::TopicList { action, group, .. } => {
                let topics = parse_topic_list(field, &self.limits);
                if action == action::SUBSCRIBE {
                    let (topics, group) = match group.map(|group| *group) {
                        Some(Err(refused)) => (topics.and(Err(refused)), None),
                        Some(Ok(name)) => (topics, Some(name)),
                        None => (topics, None),
                    };
                    let subscribe = Box::new(PendingSubscribe { topics, group });
                    (State::StartAtType(subscribe), Step::Continue)
                } else {
                    let request = topics.map(|topics| Request::Unsubscribe { topics });
                    (
                        State::SubscriberAction,
                        Step::Emit(request.map_err(Refusal::from)),
                    )
                }
            }
            State::StartAtType(subscribe) => match BigEndian::read_u16(field) {
                start_at::BEGINNING => (
                    State::SubscriberAction,
                    finish_subscribe(*subscribe, StartAt::Beginning),
                ),
                start_at::CURRENT => (
                    State::SubscriberAction,
                    finish_subscribe(*subscribe, StartAt::Current),
                ),
                start_at::FROM => {
                    let width = 2;
                    (State::StartOffset { subscribe, width }, Step::Continue)
                }
                start_at::FROM_U64 => {
                    let width = 8;
                    (State::StartOffset { subscribe, width }, Step::Continue)
                }
                other => {
                    // We cannot know whether an offset follows; like the
                    // reference, assume it does not and read on.
                    let error = subscribe
                        .topics
                        .err()
                        .unwrap_or(BinaryError::InvalidStartAt(other));
                    (State::SubscriberAction, emit_err(error))
                }
            },
            State::StartOffset { subscribe, .. } => {
                let offset = BigEndian::read_uint(field, field.len());
                (
                    State::SubscriberAction,
                    finish_subscribe(*subscribe, StartAt::From(offset)),
                )
            }
            State::TopicLength => match BigEndian::read_u16(field) as usize {
                // The reference skips an empty topic frame; so do we.
                0 => (State::TopicLength, Step::Continue),
                len => (State::Topic { len }, Step::Continue),
            },
            State::Topic { .. } => match self.publish_topic(field) {
                Ok(topic) => (State::PayloadLength { topic: Some(topic) }, Step::Continue),
                // Reported now, not after a payload that may never come.
                Err(error) => (State::PayloadLength { topic: None }, emit_err(error)),
            },
            State::PayloadLength { topic } => {
                let len = BigEndian::read_u32(field) as usize;
                if len > self.limits.max_message_bytes {
                    let limit = self.limits.max_message_bytes;
                    let error = BinaryError::MessageTooLarge {
                        len: len as u64,
                        limit,
                    };
                    (State::Closed, emit_err(error))
                } else if len == 0 && self.confirm && topic.is_some() {
                    // Every message of a confirmed publisher gets an answer.
                    (State::TopicLength, emit_err(BinaryError::EmptyMessage))
                } else if len == 0 {
                    // The reference drops an empty payload without delivery.
                    (State::TopicLength, Step::Continue)
                } else {
                    (State::Payload { topic, len }, Step::Continue)
                }
            }
            State::Payload { topic, .. } => match topic {
                Some(topic) => {
                    let payload = Payload::from(field);
                    (
                        State::TopicLength,
                        Step::Emit(Ok(Request::Publish {
                            topic,
                            payload,
                            confirm: self.confirm,
                        })),
                    )
                }
                None => (State::TopicLength, Step::Continue),
            },
            State::Closed => (State::Closed, Step::NeedMore),
        }
    }
}

fn emit_err(error: BinaryError) -> Step {
    Step::Emit(Err(error.into()))
}

/// The subscribe request a start-at completes, or why it was refused.
fn finish_subscribe(subscribe: PendingSubscribe, start: StartAt) -> Step {
    let PendingSubscribe { topics, group } = subscribe;
    let request = topics.map(|topics| Request::Subscribe {
        topics,
        start,
        ack: AckMode::Manual,
        group,
    });
    Step::Emit(request.map_err(Refusal::from))
}

/// What comes after a subscribe or unsubscribe action: the topic list, or
/// first the group name for `SUBSCRIBE_GROUP`.
fn topic_list_or_group(action: u16) -> State {
    match action {
        action::SUBSCRIBE_GROUP => State::GroupLength,
        action => State::TopicListLength {
            action,
            group: None,
        },
    }
}

fn parse_topic_list(json: &[u8], limits: &Limits) -> Result<Vec<String>, BinaryError> {
    let topics = json::parse_string_array(json).map_err(BinaryError::InvalidTopicData)?;
    if topics.len() > limits.max_topics_per_request {
        return Err(BinaryError::TooManyTopics(topics.len()));
    }
    match topics
        .iter()
        .find(|t| t.len() > limits.max_topic_name_bytes)
    {
        Some(long) => Err(BinaryError::TopicNameTooLong(long.len())),
        None => Ok(topics),
    }
}

// ---- Encoding: what the broker (and the client) write. ----

/// Appends a status frame: `u16` status, plus `u16` length and reason for an
/// error. A reason longer than a `u16` can count is cut at a UTF-8 boundary.
pub(crate) fn encode_status(out: &mut Vec<u8>, status: u16, reason: Option<&str>) {
    push_u16(out, status);
    if let Some(reason) = reason {
        let mut end = reason.len().min(u16::MAX as usize);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        push_u16(out, end as u16);
        out.extend_from_slice(&reason.as_bytes()[..end]);
    }
}

/// Appends a reply as the binary protocol has it: a status, with a reason
/// for an error.
pub(crate) fn encode_reply(out: &mut Vec<u8>, reply: &Reply) {
    match reply {
        Reply::Subscribed => encode_status(out, status::SUBSCRIBED, None),
        Reply::Unsubscribed => encode_status(out, status::UNSUBSCRIBED, None),
        Reply::Error(reason) => encode_status(out, status::ERROR, Some(reason)),
        Reply::DiskFull(full) => encode_status(out, status::ERROR, Some(&full.to_string())),
        // Never sent in fact: only a connection that subscribes or pulls
        // has its publishes refused, and a binary one never publishes too.
        // Should one ever be, it is an error like a full disk.
        Reply::MemoryFull(full) => encode_status(out, status::ERROR, Some(&full.to_string())),
        Reply::OverLimit(limit) => encode_status(out, status::ERROR, Some(&limit.to_string())),
        Reply::Published { offset, .. } => {
            push_u16(out, status::PUBLISHED);
            out.extend_from_slice(&offset.to_be_bytes());
        }
        // Answers to requests only the line protocol can make.
        Reply::PullDone { .. }
        | Reply::Pong
        | Reply::Bye
        | Reply::Help
        | Reply::Topics(..)
        | Reply::Stats(_) => {}
    }
}

/// Appends the header of a delivery: `u16` topic length, topic, `u64`
/// payload length. The payload follows it on the wire; the writer sends it
/// from the shared buffer rather than copying it here.
pub fn encode_delivery_header(out: &mut Vec<u8>, topic: &str, payload_len: usize) {
    push_u16(out, topic.len() as u16);
    out.extend_from_slice(topic.as_bytes());
    out.extend_from_slice(&(payload_len as u64).to_be_bytes());
}

/// Appends a subscribe request. `From` offsets that fit in a `u16` use the
/// reference's layout, larger ones brook's `u64` extension.
pub fn encode_subscribe<S: AsRef<str>>(out: &mut Vec<u8>, topics: &[S], start: StartAt) {
    push_u16(out, action::SUBSCRIBE);
    encode_subscription(out, topics, start);
}

/// Appends a subscribe that joins the consumer group `group` of each topic
/// (brook's extension, action 7): the group's name, then a subscribe's
/// fields. `start` says where the group starts if it is new.
pub fn encode_subscribe_group<S: AsRef<str>>(
    out: &mut Vec<u8>,
    topics: &[S],
    group: &str,
    start: StartAt,
) {
    push_u16(out, action::SUBSCRIBE_GROUP);
    push_u16(out, group.len() as u16);
    out.extend_from_slice(group.as_bytes());
    encode_subscription(out, topics, start);
}

/// Appends an AUTH (brook's extension, action 8): the user's name and
/// password, each after a `u16` length. Either one 64 KiB long or longer
/// is refused, with nothing appended, rather than cut.
pub fn encode_auth(out: &mut Vec<u8>, user: &str, password: &str) -> Result<(), TryFromIntError> {
    let lengths = [u16::try_from(user.len())?, u16::try_from(password.len())?];
    push_u16(out, action::AUTH);
    for (field, length) in [user, password].into_iter().zip(lengths) {
        push_u16(out, length);
        out.extend_from_slice(field.as_bytes());
    }
    Ok(())
}

/// A subscribe's fields after its action: the topic list, the start-at.
fn encode_subscription<S: AsRef<str>>(out: &mut Vec<u8>, topics: &[S], start: StartAt) {
    encode_topic_list(out, topics);
    match start {
        StartAt::Beginning => push_u16(out, start_at::BEGINNING),
        StartAt::Current => push_u16(out, start_at::CURRENT),
        StartAt::From(offset) => match u16::try_from(offset) {
            Ok(small) => {
                push_u16(out, start_at::FROM);
                push_u16(out, small);
            }
            Err(_) => {
                push_u16(out, start_at::FROM_U64);
                out.extend_from_slice(&offset.to_be_bytes());
            }
        },
    }
}

/// Appends an unsubscribe request.
pub fn encode_unsubscribe<S: AsRef<str>>(out: &mut Vec<u8>, topics: &[S]) {
    push_u16(out, action::UNSUBSCRIBE);
    encode_topic_list(out, topics);
}

fn encode_topic_list<S: AsRef<str>>(out: &mut Vec<u8>, topics: &[S]) {
    let json = json::encode_string_array(topics);
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(json.as_bytes());
}

/// Appends one publish frame pair (after the connection's Publish action).
pub fn encode_publish(out: &mut Vec<u8>, topic: &str, payload: &[u8]) {
    push_u16(out, (TOPIC_PREFIX.len() + topic.len()) as u16);
    out.extend_from_slice(TOPIC_PREFIX);
    out.extend_from_slice(topic.as_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

pub fn push_u16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::request::testing;

    const LIMITS: Limits = Limits {
        max_message_bytes: 1024,
        max_topic_list_bytes: 1024,
        max_topic_name_bytes: 64,
        max_topics_per_request: 8,
        max_line_bytes: 1024,
    };

    fn decode_all(bytes: &[u8], chunk: usize) -> Vec<Decoded> {
        let mut decoder = BinaryDecoder::new(LIMITS);
        testing::decode_in_chunks(bytes, chunk, |input| decoder.decode(input))
    }

    /// The reason `event` was refused for, if it was.
    fn refused_for(event: Option<&Decoded>) -> Option<&str> {
        event?.as_ref().err().map(Refusal::reason)
    }

    fn publish_stream() -> Vec<u8> {
        let mut bytes = Vec::new();
        push_u16(&mut bytes, action::PUBLISH);
        encode_publish(&mut bytes, "a", b"one");
        push_u16(&mut bytes, 0); // an empty topic frame is skipped
        encode_publish(&mut bytes, "b", b""); // an empty payload is dropped
        encode_publish(&mut bytes, "a", b"two");
        bytes
    }

    #[test]
    fn publish_frames_decode_in_any_chunking() {
        let whole = decode_all(&publish_stream(), usize::MAX);
        assert_eq!(whole.len(), 2);
        for chunk in 1..8 {
            assert_eq!(decode_all(&publish_stream(), chunk), whole);
        }
        assert_eq!(
            whole[1],
            Ok(Request::Publish {
                topic: "a".into(),
                payload: Payload::from(&b"two"[..]),
                confirm: false,
            })
        );
    }

    #[test]
    fn a_publish_to_a_wildcard_name_is_refused_and_the_frames_after_it_decode() {
        let mut bytes = Vec::new();
        push_u16(&mut bytes, action::PUBLISH);
        encode_publish(&mut bytes, "a", b"one");
        encode_publish(&mut bytes, "orders.*", b"lost");
        encode_publish(&mut bytes, "orders.>", b"lost");
        encode_publish(&mut bytes, "a*", b"two");
        let refusal = Refusal::from(BinaryError::PublishToPattern);
        assert!(!refusal.is_fatal());
        let publish = |topic: &str, payload: &[u8]| {
            Ok(Request::Publish {
                topic: topic.into(),
                payload: Payload::from(payload),
                confirm: false,
            })
        };
        for chunk in [1, 3, usize::MAX] {
            assert_eq!(
                decode_all(&bytes, chunk),
                vec![
                    publish("a", b"one"),
                    Err(refusal.clone()),
                    Err(refusal.clone()),
                    publish("a*", b"two"),
                ]
            );
        }
    }

    #[test]
    fn auth_comes_first_and_the_connection_starts_again_after_it() {
        let mut bytes = Vec::new();
        encode_auth(&mut bytes, "alice", "pass word").unwrap();
        encode_auth(&mut bytes, "bob", "").unwrap();
        let long = "x".repeat(1 << 16);
        assert!(encode_auth(&mut bytes, &long, "").is_err());
        assert!(encode_auth(&mut bytes, "carol", &long).is_err());
        push_u16(&mut bytes, action::AUTH);
        push_u16(&mut bytes, 1);
        bytes.push(0xff); // a user name that is not UTF-8
        push_u16(&mut bytes, 0);
        push_u16(&mut bytes, action::PUBLISH);
        encode_publish(&mut bytes, "a", b"one");
        let auth = |user: &str, password: &str| {
            Ok(Request::Auth(Credentials::new(
                user.into(),
                password.into(),
            )))
        };
        for chunk in [1, 3, usize::MAX] {
            assert_eq!(
                decode_all(&bytes, chunk),
                vec![
                    auth("alice", "pass word"),
                    auth("bob", ""),
                    Err(BinaryError::CredentialsNotUtf8.into()),
                    Ok(Request::Publish {
                        topic: "a".into(),
                        payload: Payload::from(&b"one"[..]),
                        confirm: false,
                    }),
                ]
            );
        }
    }

    #[test]
    fn subscribe_then_acks() {
        let mut bytes = Vec::new();
        encode_subscribe(&mut bytes, &["x", "y"], StartAt::From(70_000));
        push_u16(&mut bytes, action::ACK);
        push_u16(&mut bytes, action::NACK);
        encode_unsubscribe(&mut bytes, &["x"]);
        let events = decode_all(&bytes, 1);
        assert_eq!(
            events,
            vec![
                Ok(Request::Subscribe {
                    topics: vec!["x".into(), "y".into()],
                    start: StartAt::From(70_000),
                    ack: AckMode::Manual,
                    group: None,
                }),
                Ok(Request::Ack),
                Ok(Request::Nack),
                Ok(Request::Unsubscribe {
                    topics: vec!["x".into()]
                }),
            ]
        );
    }

    #[test]
    fn missing_prefix_is_reported_before_the_payload_arrives() {
        let mut bytes = Vec::new();
        push_u16(&mut bytes, action::PUBLISH);
        push_u16(&mut bytes, 3);
        bytes.extend_from_slice(b"abc");
        let events = decode_all(&bytes, usize::MAX);
        assert_eq!(events, vec![Err(BinaryError::MissingTopicPrefix.into())]);
    }

    #[test]
    fn oversized_lengths_close_without_waiting() {
        let mut bytes = Vec::new();
        push_u16(&mut bytes, action::PUBLISH);
        push_u16(&mut bytes, 7);
        bytes.extend_from_slice(b"topic:a");
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        let events = decode_all(&bytes, usize::MAX);
        let too_large = BinaryError::MessageTooLarge {
            len: u32::MAX.into(),
            limit: LIMITS.max_message_bytes,
        };
        assert_eq!(events, vec![Err(too_large.into())]);
    }

    #[test]
    fn bad_topic_list_keeps_the_stream_aligned() {
        let mut bytes = Vec::new();
        push_u16(&mut bytes, action::SUBSCRIBE);
        bytes.extend_from_slice(&5u32.to_be_bytes());
        bytes.extend_from_slice(b"{\"a\":");
        push_u16(&mut bytes, start_at::FROM);
        push_u16(&mut bytes, 9);
        push_u16(&mut bytes, action::ACK);
        let events = decode_all(&bytes, usize::MAX);
        assert_eq!(
            refused_for(events.first()),
            Some("invalid topic data provided")
        );
        assert_eq!(events[1], Ok(Request::Ack));
    }

    /// Action 7 names a group, then carries a subscribe's fields; a bad
    /// group name is refused once the frame is read, and the next frame
    /// decodes as usual.
    #[test]
    fn subscribe_group_names_its_group_before_a_subscribe() {
        let mut bytes = Vec::new();
        encode_subscribe_group(&mut bytes, &["jobs"], "workers", StartAt::From(70_000));
        encode_subscribe_group(&mut bytes, &["jobs"], "", StartAt::Current);
        bytes.extend_from_slice(&[0, 7, 0, 1, 0xFF]); // a group name that is not UTF-8
        encode_topic_list(&mut bytes, &["jobs"]);
        push_u16(&mut bytes, start_at::BEGINNING);
        encode_subscribe(&mut bytes, &["solo"], StartAt::Beginning);
        let subscribe = |topic: &str, start, group: Option<&str>| {
            Ok(Request::Subscribe {
                topics: vec![topic.to_owned()],
                start,
                ack: AckMode::Manual,
                group: group.map(str::to_owned),
            })
        };
        let expected = vec![
            subscribe("jobs", StartAt::From(70_000), Some("workers")),
            Err(BinaryError::InvalidGroup.into()),
            Err(BinaryError::InvalidGroup.into()),
            subscribe("solo", StartAt::Beginning, None),
        ];
        for chunk in [1, 3, usize::MAX] {
            assert_eq!(decode_all(&bytes, chunk), expected, "in chunks of {chunk}");
        }
    }

    #[test]
    fn unknown_first_action_is_fatal() {
        let events = decode_all(&[0, 9, 0, 1], usize::MAX);
        assert_eq!(events, vec![Err(BinaryError::UnknownAction(9).into())]);
    }

    /// Random and mutated byte streams, fed in random chunks: the decoder
    /// must never panic, never consume more than it was given, always make
    /// progress or ask for more, and decode the same requests however the
    /// bytes are split.
    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut random = testing::xorshift(0x9E37_79B9_7F4A_7C15);
        let mut valid = publish_stream();
        encode_subscribe(&mut valid, &["a\"b", "c"], StartAt::From(3));
        encode_subscribe(&mut valid, &["d"], StartAt::From(1 << 40));
        push_u16(&mut valid, action::ACK);
        encode_unsubscribe(&mut valid, &["c"]);
        for _ in 0..20_000 {
            let mut bytes = valid.clone();
            for _ in 0..random() % 6 {
                let at = random() as usize % bytes.len();
                match random() % 3 {
                    0 => bytes[at] = random() as u8,
                    1 => bytes.insert(at, random() as u8),
                    _ => bytes.truncate(at.max(1)),
                }
            }
            if random().is_multiple_of(3) {
                bytes = (0..random() % 64).map(|_| random() as u8).collect();
            }
            let first = [
                action::SUBSCRIBE,
                action::UNSUBSCRIBE,
                action::PUBLISH,
                action::PUBLISH_CONFIRMED,
            ][random() as usize % 4];
            let mut stream = first.to_be_bytes().to_vec();
            stream.extend_from_slice(&bytes);
            let chunk = 1 + random() as usize % 16;
            assert_eq!(
                decode_all(&stream, chunk),
                decode_all(&stream, usize::MAX),
                "{stream:?} in chunks of {chunk}"
            );
        }
    }

    /// A length above `limit`: just above, `u32::MAX`, or in between.
    fn oversized(random: &mut impl FnMut() -> u64, i: usize, limit: usize) -> u32 {
        let limit = limit as u32;
        match i {
            0 => limit + 1,
            1 => u32::MAX,
            _ => limit + 1 + (random() % u64::from(u32::MAX - limit)) as u32,
        }
    }

    /// Decodes `header` on a new decoder, which must take all of it at once.
    fn decode_header(header: &[u8]) -> Option<Decoded> {
        let (used, event) = BinaryDecoder::new(LIMITS).decode(header);
        assert_eq!(used, header.len(), "{header:?}");
        event
    }

    /// Every length prefix above its limit, up to `u32::MAX`, is refused as
    /// soon as the prefix itself has arrived, so nothing is ever allocated
    /// or waited for on its account; a length at the limit is accepted.
    #[test]
    fn oversized_length_prefixes_are_refused_before_their_bytes() {
        let mut random = testing::xorshift(0xD1B5_4A32_D192_ED03);
        let publish_header = |first: u16, len: u32| {
            let mut header = first.to_be_bytes().to_vec();
            encode_publish(&mut header, "t", b"");
            header.truncate(header.len() - 4);
            [header, len.to_be_bytes().to_vec()].concat()
        };
        let list_header =
            |first: u16, len: u32| [&first.to_be_bytes()[..], &len.to_be_bytes()].concat();
        for i in 0..2_000 {
            let len = oversized(&mut random, i, LIMITS.max_message_bytes);
            for first in [action::PUBLISH, action::PUBLISH_CONFIRMED] {
                let event = decode_header(&publish_header(first, len));
                assert_eq!(refused_for(event.as_ref()), Some("message too large"));
            }
            let len = oversized(&mut random, i, LIMITS.max_topic_list_bytes);
            for first in [action::SUBSCRIBE, action::UNSUBSCRIBE] {
                let event = decode_header(&list_header(first, len));
                assert_eq!(refused_for(event.as_ref()), Some("topic data too large"));
            }
        }
        let message_limit = LIMITS.max_message_bytes as u32;
        assert_eq!(
            decode_header(&publish_header(action::PUBLISH, message_limit)),
            None
        );
        let list_limit = LIMITS.max_topic_list_bytes as u32;
        assert_eq!(
            decode_header(&list_header(action::SUBSCRIBE, list_limit)),
            None
        );
    }

    /// `BinaryDecoder::step` moves the `State` out and a new one in for every
    /// field, four times per published message. Data a new variant needs
    /// only for a rare request belongs behind a `Box`, as `PendingSubscribe`
    /// is; this catches one carried inline, which would make every publish
    /// pay to move it.
    #[test]
    fn state_is_small_so_transitions_are_cheap() {
        assert!(std::mem::size_of::<State>() <= 4 * std::mem::size_of::<usize>());
    }

    #[test]
    fn status_reason_is_length_prefixed() {
        let mut out = Vec::new();
        encode_status(&mut out, status::ERROR, Some("unknown action"));
        assert_eq!(&out[..4], &[0, 3, 0, 14]);
        assert_eq!(&out[4..], b"unknown action");
    }
}
