//! The line protocol: the broker for people with `nc` and for shell scripts.
//!
//! A client that starts with any byte but `0x00` speaks this protocol (a
//! binary client always starts with `0x00`, the high byte of its first
//! action). It can do everything a binary client can, over the same topics.
//! The commands are listed once, in the text `HELP` prints (the `HELP`
//! constant in `line_replies.rs`, which a client gets by sending `HELP`);
//! `docs/PROTOCOL.md` §8 gives each its replies and errors.
//!
//! A delivery is `MSG <topic> <offset> <nbytes>`, a newline, the payload, and
//! a newline. A refused line gets `-ERR <reason>`. Lines end with `\n`, and a
//! `\r` before it is dropped. Commands and keywords are case-insensitive. A
//! topic is a bare word, or a double-quoted string with `\"`, `\\`, `\n`,
//! `\r`, `\t` and `\0` escapes, so that every name a binary client can use
//! can be written here too; the broker writes names back the same way.
//!
//! # The decoder
//!
//! Like the `BinaryDecoder` (`binary.rs`), this file's `LineDecoder`
//! is a state machine over whatever bytes have arrived: it never assumes one
//! `read()` holds one line. While it waits for the end of a line it remembers
//! how far it has already looked, so a long line arriving in pieces is
//! scanned once. A line longer than `Limits::max_line_bytes` is refused as
//! soon as the limit is passed, and the rest of it is dropped as it arrives,
//! never buffered. `PUBN` switches to counting bytes, like the binary
//! protocol's payload frames, so a payload may hold newlines or any byte.
//!
//! Both decoders produce the same `Request`s, so from here on the
//! dispatcher does not know or care which protocol a client speaks; only the
//! writer thread encodes its replies with `line_replies.rs` instead of the
//! binary encoders.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use super::request::{
    is_valid_group_name, AckMode, Credentials, Decoded, LastTopic, Limits, PublishToPattern,
    Refusal, Request, StartAt,
};
use crate::ids::Payload;

/// What a malformed `AUTH` line is told. The reader's guard
/// (`auth/guard.rs`) lets it through before a login, when every other
/// refusal becomes `authentication required`: it is the one a person
/// typing a password with a space in it needs to see.
pub(crate) const AUTH_USAGE: &str =
    "usage: AUTH <user> <password>, quoted if it has a space: AUTH alice \"my secret\"";

/// What a line client that has not logged in is told, when the broker has
/// an `--auth-file` (`auth/guard.rs`).
pub(crate) const AUTH_REQUIRED: &str = "authentication required: send AUTH <user> <password> first";

/// A line the broker refuses. Each has the short reason sent after `-ERR `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LineError {
    /// The first word is not a command; it is echoed back (its start, if
    /// it is long), with a pointer to `HELP`.
    UnknownCommand(Box<str>),
    MissingTopic,
    MissingMessage,
    MissingByteCount,
    MissingOffset,
    MissingGroup,
    /// `AUTH` without a user and a password, with more words, or with a
    /// quoted word that is not closed or not valid.
    AuthUsage,
    /// A `PUBN` before the login an `--auth-file` asks for: its payload
    /// is skipped, never buffered.
    LoginFirst,
    /// A group name that is empty or longer than `--max-topic-name-bytes`.
    InvalidGroup,
    BadOffset,
    BadByteCount,
    BadCount,
    /// `SUB`'s optional word is not a start position or `manual`.
    BadStart,
    /// A word after the last one the command takes.
    UnexpectedArgument,
    UnterminatedQuote,
    /// A closing quote followed by more than a space or the end of the line.
    TextAfterQuote,
    /// A backslash in a quoted topic followed by a character with no escape.
    BadEscape,
    TopicNameTooLong,
    /// A publish to a name with a `*` or `>` token.
    PublishToPattern,
    /// A line longer than `--max-line-bytes`.
    LineTooLong,
    /// A `PUBN` byte count above `--max-message-bytes`.
    MessageTooLarge,
    EmptyMessage,
    /// The byte after a `PUBN` payload is not a newline: the count was wrong.
    PayloadNotTerminated,
    /// A NUL byte or invalid UTF-8: this is not a person or a script typing
    /// lines, and nothing after it can be trusted. The connection closes.
    BinaryData,
}

impl LineError {
    /// The reason sent to the client after `-ERR `.
    pub fn reason(&self) -> &'static str {
        match self {
            LineError::UnknownCommand(_) => "unknown command",
            LineError::MissingTopic => "missing topic",
            LineError::MissingMessage => "missing message",
            LineError::MissingByteCount => "missing byte count",
            LineError::MissingOffset => "missing offset",
            LineError::MissingGroup => "missing group name",
            LineError::AuthUsage => AUTH_USAGE,
            LineError::LoginFirst => AUTH_REQUIRED,
            LineError::InvalidGroup => "invalid group name",
            LineError::BadOffset => "bad offset",
            LineError::BadByteCount => "bad byte count",
            LineError::BadCount => "bad count",
            LineError::BadStart => "bad start position",
            LineError::UnexpectedArgument => "unexpected argument",
            LineError::UnterminatedQuote => "unterminated quote",
            LineError::TextAfterQuote => "text after a closing quote",
            LineError::BadEscape => "bad escape",
            LineError::TopicNameTooLong => "topic name too long",
            LineError::PublishToPattern => PublishToPattern::REASON,
            LineError::LineTooLong => "line too long",
            LineError::MessageTooLarge => "message too large",
            LineError::EmptyMessage => "empty message",
            LineError::PayloadNotTerminated => "payload not followed by a newline",
            LineError::BinaryData => "binary data on a text connection",
        }
    }
}

impl LineError {
    /// The longest part of an unknown command echoed back, in characters:
    /// a line can be a megabyte long.
    const ECHOED_CHARS: usize = 32;

    fn unknown_command(word: &str) -> LineError {
        let mut echoed: String = word.chars().take(Self::ECHOED_CHARS).collect();
        if echoed.len() < word.len() {
            echoed.push_str("...");
        }
        LineError::UnknownCommand(echoed.into())
    }

    /// The whole text sent after `-ERR `: the reason, and for an unknown
    /// command the command and where to look.
    pub fn reply(&self) -> Cow<'static, str> {
        match self {
            LineError::UnknownCommand(word) => {
                format!("unknown command '{}' (try HELP)", word.escape_debug()).into()
            }
            other => other.reason().into(),
        }
    }
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reply())
    }
}

impl From<PublishToPattern> for LineError {
    fn from(_: PublishToPattern) -> LineError {
        LineError::PublishToPattern
    }
}

impl From<LineError> for Refusal {
    /// Only binary data ends a line connection: a bad line ends at its
    /// newline, and the next one is read.
    fn from(error: LineError) -> Refusal {
        let fatal = error == LineError::BinaryData;
        let reply = error.reply();
        Refusal::new(reply.clone(), fatal, reply)
    }
}

/// What the decoder expects next.
#[derive(Debug)]
enum State {
    /// A line. The first `scanned` bytes of the input are known to hold no
    /// newline: they were looked at before more bytes arrived.
    Line { scanned: usize },
    /// The rest of a line that was too long: dropped up to its newline.
    SkippingLine,
    /// A `PUBN` payload and the newline after it.
    Payload { topic: Arc<str>, len: usize },
    /// The payload of a refused `PUBN`: dropped, so the stream stays
    /// aligned. Its newline then reads as an empty line, which is ignored.
    SkippingPayload { left: u64 },
    /// After binary data: nothing more is parsed.
    Closed,
}

/// Turns the bytes of a line-protocol connection into requests.
#[derive(Debug)]
pub(crate) struct LineDecoder {
    state: State,
    limits: Limits,
    last_topic: LastTopic,
    /// Whether the connection must log in before it may publish: then a
    /// `PUBN`'s payload is skipped as it comes, not buffered for a guard
    /// that would refuse it.
    login_awaited: bool,
}

/// What one step of the decoder produced.
enum Step {
    NeedMore,
    Continue,
    Emit(Decoded),
}

impl LineDecoder {
    pub fn new(limits: Limits) -> LineDecoder {
        LineDecoder {
            state: State::Line { scanned: 0 },
            limits,
            last_topic: LastTopic::default(),
            login_awaited: false,
        }
    }

    /// Tells the decoder whether the connection has yet to log in (the
    /// reader asks its guard before each request).
    pub fn await_login(&mut self, awaited: bool) {
        self.login_awaited = awaited;
    }

    /// Decodes the next request from `input`, exactly like
    /// [`binary::BinaryDecoder::decode`](super::binary::BinaryDecoder::decode):
    /// returns the bytes consumed and the request, if one was completed.
    pub fn decode(&mut self, input: &[u8]) -> (usize, Option<Decoded>) {
        let mut consumed = 0;
        loop {
            let (used, step) = self.step(&input[consumed..]);
            consumed += used;
            match step {
                Step::NeedMore => return (consumed, None),
                Step::Continue => continue,
                Step::Emit(result) => return (consumed, Some(result)),
            }
        }
    }

    /// Takes what the current state can from `input`: returns the bytes
    /// consumed and what happened.
    fn step(&mut self, input: &[u8]) -> (usize, Step) {
        let state = std::mem::replace(&mut self.state, State::Line { scanned: 0 });
        match state {
            State::Line { scanned } => self.line(input, scanned),
            State::SkippingLine => match find_newline(input) {
                Some(end) => (end + 1, Step::Continue),
                None => {
                    self.state = State::SkippingLine;
                    (input.len(), Step::NeedMore)
                }
            },
            State::Payload { topic, len } => self.payload(input, topic, len),
            State::SkippingPayload { left } => {
                let take = left.min(input.len() as u64);
                if take < left {
                    self.state = State::SkippingPayload { left: left - take };
                    return (take as usize, Step::NeedMore);
                }
                (take as usize, Step::Continue)
            }
            State::Closed => {
                self.state = State::Closed;
                (0, Step::NeedMore)
            }
        }
    }

    /// Looks for the end of the line that starts `input`.
    fn line(&mut self, input: &[u8], scanned: usize) -> (usize, Step) {
        let max = self.limits.max_line_bytes;
        let scanned = scanned.min(input.len());
        match find_newline(&input[scanned..]) {
            Some(at) if scanned + at > max => (scanned + at + 1, refuse(LineError::LineTooLong)),
            Some(at) => {
                let end = scanned + at;
                (end + 1, self.parse_line(&input[..end]))
            }
            None if input.len() > max => {
                self.state = State::SkippingLine;
                (input.len(), refuse(LineError::LineTooLong))
            }
            None => {
                self.state = State::Line {
                    scanned: input.len(),
                };
                (0, Step::NeedMore)
            }
        }
    }

    /// A `PUBN` payload of `len` bytes, then `\n` or `\r\n`.
    fn payload(&mut self, input: &[u8], topic: Arc<str>, len: usize) -> (usize, Step) {
        let newline = match input.get(len..) {
            Some([b'\n', ..]) => 1,
            Some([b'\r', b'\n', ..]) => 2,
            Some([]) | Some([b'\r']) | None => {
                self.state = State::Payload { topic, len };
                return (0, Step::NeedMore);
            }
            // The count was wrong. Drop what it covered and read on from
            // the byte after it, as the start of a line.
            Some(_) => return (len, refuse(LineError::PayloadNotTerminated)),
        };
        let request = Request::Publish {
            topic,
            payload: Payload::from(&input[..len]),
            confirm: true,
        };
        (len + newline, Step::Emit(Ok(request)))
    }

    /// One complete line, without its `\n`.
    fn parse_line(&mut self, line: &[u8]) -> Step {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let text = match std::str::from_utf8(line) {
            Ok(text) if !text.contains('\0') => text,
            _ => {
                self.state = State::Closed;
                return refuse(LineError::BinaryData);
            }
        };
        let mut words = Words {
            rest: text,
            max_topic_bytes: self.limits.max_topic_name_bytes,
        };
        match self.parse_command(&mut words) {
            Ok(Some(request)) => Step::Emit(Ok(request)),
            Ok(None) => Step::Continue,
            Err(error) => refuse(error),
        }
    }

    /// The request a line asks for; `None` for an empty line, or for a
    /// `PUBN` whose payload is still to come.
    fn parse_command(&mut self, words: &mut Words<'_>) -> Result<Option<Request>, LineError> {
        let Some(command) = words.next()? else {
            return Ok(None);
        };
        let is = |name: &str| command.eq_ignore_ascii_case(name);
        let request = if is("PUB") {
            let topic = self.last_topic.shared(&words.topic()?)?;
            let text = words.rest_of_line();
            if text.is_empty() {
                return Err(LineError::MissingMessage);
            }
            if text.len() > self.limits.max_message_bytes {
                return Err(LineError::MessageTooLarge);
            }
            let payload = Payload::from(text.as_bytes());
            Request::Publish {
                topic,
                payload,
                confirm: true,
            }
        } else if is("PUBN") {
            self.start_payload(words)?;
            return Ok(None);
        } else if is("SUB") {
            let topic = words.topic()?;
            let (start, ack, group) = subscription_options(words)?;
            Request::Subscribe {
                topics: vec![topic.into_owned()],
                start,
                ack,
                group,
            }
        } else if is("UNSUB") {
            let topic = words.topic()?;
            words.end()?;
            Request::Unsubscribe {
                topics: vec![topic.into_owned()],
            }
        } else if is("PULL") {
            let topic = words.topic()?.into_owned();
            let mut word = words.next()?;
            let mut max = None;
            if let Some(count) = word.as_ref().filter(|w| !w.eq_ignore_ascii_case("group")) {
                max = Some(count.parse().map_err(|_| LineError::BadCount)?);
                word = words.next()?;
            }
            let group = match word {
                Some(word) if word.eq_ignore_ascii_case("group") => Some(words.group()?),
                Some(_) => return Err(LineError::UnexpectedArgument),
                None => None,
            };
            words.end()?;
            Request::Pull { topic, max, group }
        } else if is("AUTH") {
            // Any mistake in AUTH, a bad quote among them, gets its usage.
            let mut word = || words.next().ok().flatten().ok_or(LineError::AuthUsage);
            let (user, password) = (word()?, word()?);
            words.end().map_err(|_| LineError::AuthUsage)?;
            Request::Auth(Credentials::new(user.into_owned(), password.into_owned()))
        } else {
            let request = match command.to_ascii_uppercase().as_str() {
                "ACK" => Request::Ack,
                "NACK" => Request::Nack,
                "TOPICS" => Request::Topics,
                "STATS" => Request::Stats,
                "PING" => Request::Ping,
                "HELP" => Request::Help,
                "QUIT" => Request::Quit,
                _ => return Err(LineError::unknown_command(&command)),
            };
            words.end()?;
            request
        };
        Ok(Some(request))
    }

    /// Reads `PUBN <topic> <nbytes>` and gets ready for the payload. Once
    /// the byte count is known, a refused `PUBN` skips its payload, which
    /// the client sends anyway; before that there is no telling how long
    /// the payload is, and its bytes are read as lines.
    fn start_payload(&mut self, words: &mut Words<'_>) -> Result<(), LineError> {
        let topic = words.next()?.ok_or(LineError::MissingTopic)?;
        let count = words.next()?.ok_or(LineError::MissingByteCount)?;
        let len: u64 = count.parse().map_err(|_| LineError::BadByteCount)?;
        let checked = match self.login_awaited {
            true => Err(LineError::LoginFirst),
            false => self.check_payload_header(&topic, len, words),
        };
        match checked.and_then(|()| Ok(self.last_topic.shared(&topic)?)) {
            Ok(topic) => {
                let len = len as usize;
                self.state = State::Payload { topic, len };
                Ok(())
            }
            Err(error) => {
                self.state = State::SkippingPayload { left: len };
                Err(error)
            }
        }
    }

    /// The rest of a `PUBN` line, once its byte count is known.
    fn check_payload_header(
        &self,
        topic: &str,
        len: u64,
        words: &mut Words<'_>,
    ) -> Result<(), LineError> {
        words.end()?;
        if topic.len() > self.limits.max_topic_name_bytes {
            return Err(LineError::TopicNameTooLong);
        }
        if len > self.limits.max_message_bytes as u64 {
            return Err(LineError::MessageTooLarge);
        }
        if len == 0 {
            return Err(LineError::EmptyMessage);
        }
        Ok(())
    }
}

/// `SUB`'s optional words after the topic: a start position, then `manual`.
/// What follows `SUB <topic>`: `[beginning | current | from N] [manual]
/// [group NAME]`, each optional, in that order.
fn subscription_options(
    words: &mut Words<'_>,
) -> Result<(StartAt, AckMode, Option<String>), LineError> {
    let mut start = StartAt::Current;
    let mut word = words.next()?;
    if let Some(keyword) = &word {
        let position = match keyword.to_ascii_lowercase().as_str() {
            "beginning" => Some(StartAt::Beginning),
            "current" => Some(StartAt::Current),
            "from" => {
                let offset = words.next()?.ok_or(LineError::MissingOffset)?;
                Some(StartAt::From(
                    offset.parse().map_err(|_| LineError::BadOffset)?,
                ))
            }
            _ => None,
        };
        if let Some(position) = position {
            start = position;
            word = words.next()?;
        }
    }
    let is = |word: &Option<Cow<'_, str>>, name: &str| {
        word.as_ref().is_some_and(|w| w.eq_ignore_ascii_case(name))
    };
    let mut ack = AckMode::OnWrite;
    if is(&word, "manual") {
        ack = AckMode::Manual;
        word = words.next()?;
    } else if word.is_some() && !is(&word, "group") {
        return Err(LineError::BadStart);
    }
    let mut group = None;
    if is(&word, "group") {
        group = Some(words.group()?);
    } else if word.is_some() {
        return Err(LineError::UnexpectedArgument);
    }
    words.end()?;
    Ok((start, ack, group))
}

fn refuse(error: LineError) -> Step {
    Step::Emit(Err(error.into()))
}

fn find_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

/// The words of one line, taken from the front.
struct Words<'a> {
    rest: &'a str,
    /// The longest topic name [`Words::topic`] accepts.
    max_topic_bytes: usize,
}

impl<'a> Words<'a> {
    /// The next word, bare or quoted; `None` at the end of the line.
    fn next(&mut self) -> Result<Option<Cow<'a, str>>, LineError> {
        self.rest = self.rest.trim_start_matches(is_separator);
        if self.rest.is_empty() {
            return Ok(None);
        }
        if let Some(quoted) = self.rest.strip_prefix('"') {
            return self.quoted(quoted).map(|word| Some(Cow::Owned(word)));
        }
        let end = self.rest.find(is_separator).unwrap_or(self.rest.len());
        let (word, rest) = self.rest.split_at(end);
        self.rest = rest;
        Ok(Some(Cow::Borrowed(word)))
    }

    /// The body of a quoted word, up to its closing quote.
    fn quoted(&mut self, body: &'a str) -> Result<String, LineError> {
        let mut word = String::new();
        let mut chars = body.char_indices();
        while let Some((at, c)) = chars.next() {
            match c {
                '"' => {
                    self.rest = &body[at + 1..];
                    if self.rest.starts_with(|c| !is_separator(c)) {
                        return Err(LineError::TextAfterQuote);
                    }
                    return Ok(word);
                }
                '\\' => word.push(match chars.next() {
                    Some((_, '"')) => '"',
                    Some((_, '\\')) => '\\',
                    Some((_, 'n')) => '\n',
                    Some((_, 'r')) => '\r',
                    Some((_, 't')) => '\t',
                    Some((_, '0')) => '\0',
                    Some(_) => return Err(LineError::BadEscape),
                    None => return Err(LineError::UnterminatedQuote),
                }),
                c => word.push(c),
            }
        }
        Err(LineError::UnterminatedQuote)
    }

    /// The next word as a topic name.
    fn topic(&mut self) -> Result<Cow<'a, str>, LineError> {
        let topic = self.next()?.ok_or(LineError::MissingTopic)?;
        if topic.len() > self.max_topic_bytes {
            return Err(LineError::TopicNameTooLong);
        }
        Ok(topic)
    }

    /// The next word as a consumer group's name, under the rule both
    /// protocols share ([`is_valid_group_name`]).
    fn group(&mut self) -> Result<String, LineError> {
        let name = self.next()?.ok_or(LineError::MissingGroup)?;
        if !is_valid_group_name(&name, self.max_topic_bytes) {
            return Err(LineError::InvalidGroup);
        }
        Ok(name.into_owned())
    }

    /// Everything after the next run of separators, as it is.
    fn rest_of_line(&mut self) -> &'a str {
        std::mem::take(&mut self.rest).trim_start_matches(is_separator)
    }

    /// Checks that no word is left.
    fn end(&mut self) -> Result<(), LineError> {
        match self.next()? {
            Some(_) => Err(LineError::UnexpectedArgument),
            None => Ok(()),
        }
    }
}

fn is_separator(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// What the first line of a delivery, `MSG <topic> <offset> <nbytes>`,
/// says: the topic (a quoted one decoded, as `Words` reads it), the
/// message's offset, and its payload's byte count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsgLine<'a> {
    pub topic: Cow<'a, str>,
    pub offset: u64,
    pub len: u64,
}

/// Reads a delivery's first line, as clients need it (brook-bridge's
/// `bridge/brook_line.rs`, the examples); `None` if it is not one.
pub fn parse_msg_line(line: &str) -> Option<MsgLine<'_>> {
    let rest = line.strip_prefix("MSG ")?;
    let mut words = Words {
        rest,
        max_topic_bytes: usize::MAX,
    };
    let topic = words.next().ok()??;
    let offset = words.next().ok()??.parse().ok()?;
    let len = words.next().ok()??.parse().ok()?;
    words.end().ok()?;
    Some(MsgLine { topic, offset, len })
}

/// Appends a topic name as `Words` reads it back: a bare word if it can be
/// one, else quoted with escapes. The replies use it, and so do clients
/// that write requests (the bench, a dead letter's origin).
pub fn encode_topic(out: &mut Vec<u8>, name: &str) {
    let bare = !name.is_empty()
        && !name
            .chars()
            .any(|c| c == '"' || c.is_ascii_whitespace() || c.is_control());
    if bare {
        out.extend_from_slice(name.as_bytes());
        return;
    }
    out.push(b'"');
    for c in name.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\0' => out.extend_from_slice(b"\\0"),
            c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_lines_give_topic_offset_and_length() {
        let line = parse_msg_line("MSG orders.eu 41 5").unwrap();
        assert_eq!(
            (line.topic.as_ref(), line.offset, line.len),
            ("orders.eu", 41, 5)
        );
        let quoted = parse_msg_line("MSG \"a b\\\"c\" 1 5").unwrap();
        assert_eq!(quoted.topic, "a b\"c");
        for bad in [
            "MSG orders 1",
            "MSG orders x 5",
            "MSG orders 1 -5",
            "+OK",
            "MSG a 1 5 6",
        ] {
            assert_eq!(parse_msg_line(bad), None, "{bad}");
        }
    }
    use crate::wire::request::testing;

    const LIMITS: Limits = Limits {
        max_message_bytes: 64,
        max_topic_list_bytes: 64,
        max_topic_name_bytes: 16,
        max_topics_per_request: 4,
        max_line_bytes: 32,
    };

    fn decode_all(bytes: &[u8], chunk: usize) -> Vec<Decoded> {
        let mut decoder = LineDecoder::new(LIMITS);
        testing::decode_in_chunks(bytes, chunk, |input| decoder.decode(input))
    }

    fn publish(topic: &str, payload: &[u8]) -> Decoded {
        Ok(Request::Publish {
            topic: topic.into(),
            payload: Payload::from(payload),
            confirm: true,
        })
    }

    fn refused(error: LineError) -> Decoded {
        Err(error.into())
    }

    #[test]
    fn sub_takes_a_group_after_its_start_and_ack_mode() {
        let subscribe = |start, ack, group: Option<&str>| {
            Ok(Request::Subscribe {
                topics: vec!["t".into()],
                start,
                ack,
                group: group.map(str::to_owned),
            })
        };
        let input = b"SUB t from 3 manual group g\nSUB t group \"a b\"\nSUB t manual\n\
                      SUB t group\nSUB t manual x\nSUB t x\n\
                      SUB t group \"\"\nSUB t group seventeen-bytes-x\nPULL t group \"\"\n";
        assert_eq!(
            decode_all(input, usize::MAX),
            vec![
                subscribe(StartAt::From(3), AckMode::Manual, Some("g")),
                subscribe(StartAt::Current, AckMode::OnWrite, Some("a b")),
                subscribe(StartAt::Current, AckMode::Manual, None),
                refused(LineError::MissingGroup),
                refused(LineError::UnexpectedArgument),
                refused(LineError::BadStart),
                // The group name rule of binary action 7 (16 bytes here).
                refused(LineError::InvalidGroup),
                refused(LineError::InvalidGroup),
                refused(LineError::InvalidGroup),
            ]
        );
    }

    #[test]
    fn a_publish_to_a_wildcard_name_is_refused_and_its_payload_skipped() {
        let input = b"PUB a.* x\nPUBN > 5\nPUB y\nPUB a* x\nPUB a\n";
        assert_eq!(
            decode_all(input, usize::MAX),
            vec![
                refused(LineError::PublishToPattern),
                refused(LineError::PublishToPattern),
                publish("a*", b"x"),
                refused(LineError::MissingMessage),
            ]
        );
        let reason = LineError::PublishToPattern.reason();
        assert!(reason.contains("'*' or '>'"), "{reason}");
    }

    #[test]
    fn commands_decode_in_any_chunking() {
        let input =
            b"pub a hello there\r\n\nPUBN b 3\nx\ny\nSUB \"my \\\"topic\\\"\" from 7 manual\n\
                      ack\nPULL a 10\nquit\n";
        let whole = decode_all(input, usize::MAX);
        for chunk in 1..9 {
            assert_eq!(decode_all(input, chunk), whole);
        }
        assert_eq!(
            whole,
            vec![
                publish("a", b"hello there"),
                publish("b", b"x\ny"),
                Ok(Request::Subscribe {
                    topics: vec!["my \"topic\"".into()],
                    start: StartAt::From(7),
                    ack: AckMode::Manual,
                    group: None,
                }),
                Ok(Request::Ack),
                Ok(Request::Pull {
                    topic: "a".into(),
                    max: Some(10),
                    group: None,
                }),
                Ok(Request::Quit),
            ]
        );
    }

    #[test]
    fn mistakes_are_refused_and_the_stream_goes_on() {
        let input =
            b"FLY\nPUB\nPUB t\nSUB t from x\nSUB t later\nPING now\nSUB \"t\nPUB \"t\"x y\n\
                      PUBN t 65\n0123456789012345678901234567890123456789012345678901234567890123\n\
                      PUBN t 0\n\nPUBN t 3 x\nFLY\nPUBN t 2\nabc\nPING\n";
        let events = decode_all(input, 5);
        assert_eq!(
            events,
            vec![
                refused(LineError::UnknownCommand("FLY".into())),
                refused(LineError::MissingTopic),
                refused(LineError::MissingMessage),
                refused(LineError::BadOffset),
                refused(LineError::BadStart),
                refused(LineError::UnexpectedArgument),
                refused(LineError::UnterminatedQuote),
                refused(LineError::TextAfterQuote),
                refused(LineError::MessageTooLarge),
                refused(LineError::EmptyMessage),
                refused(LineError::UnexpectedArgument), // and FLY is skipped
                refused(LineError::PayloadNotTerminated),
                refused(LineError::UnknownCommand("c".into())), // the byte the count missed
                Ok(Request::Ping),
            ]
        );
    }

    #[test]
    fn a_long_line_is_refused_before_it_ends() {
        let mut decoder = LineDecoder::new(LIMITS);
        let long = [b'x'; 40];
        let (used, event) = decoder.decode(&long);
        assert_eq!(used, long.len());
        assert_eq!(event, Some(refused(LineError::LineTooLong)));
        // The rest of the line is dropped; the next line is read.
        assert_eq!(decoder.decode(&long), (long.len(), None));
        assert_eq!(decoder.decode(b"xx\nPING\n"), (8, Some(Ok(Request::Ping))));
    }

    #[test]
    fn binary_data_closes_the_decoder() {
        let events = decode_all(b"PING\nPU\0B\nPING\n", usize::MAX);
        assert_eq!(
            events,
            vec![Ok(Request::Ping), refused(LineError::BinaryData)]
        );
        assert!(Refusal::from(LineError::BinaryData).is_fatal());
    }

    #[test]
    fn every_topic_name_survives_encoding_and_decoding() {
        for name in [
            "plain",
            "with space",
            "q\"uo\\te",
            "",
            "tab\tnew\nline\r\0",
            "ünï",
        ] {
            let mut line = b"SUB ".to_vec();
            encode_topic(&mut line, name);
            line.push(b'\n');
            let events = decode_all(&line, usize::MAX);
            assert_eq!(
                events,
                vec![Ok(Request::Subscribe {
                    topics: vec![name.to_owned()],
                    start: StartAt::Current,
                    ack: AckMode::OnWrite,
                    group: None,
                })],
                "{name:?}"
            );
        }
    }

    /// Random bytes from the alphabet of commands, fed in random chunks:
    /// no panic, and the same requests however the bytes are split.
    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut next = testing::xorshift(0x2545_F491_4F6C_DD1D);
        let alphabet = b"PUBNSULHAQIT \"\\\n\r0123456789xyz";
        for _ in 0..20_000 {
            let len = (next() % 60) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| match next() % 16 {
                    0 => next() as u8,
                    _ => alphabet[(next() % alphabet.len() as u64) as usize],
                })
                .collect();
            assert_split_makes_no_difference(&bytes, 1 + (next() % 8) as usize);
        }
    }

    /// Asserts that `bytes` decode to the same requests in chunks of
    /// `chunk` bytes as in one piece.
    fn assert_split_makes_no_difference(bytes: &[u8], chunk: usize) {
        assert_eq!(
            decode_all(bytes, chunk),
            decode_all(bytes, usize::MAX),
            "{:?} in chunks of {chunk}",
            String::from_utf8_lossy(bytes)
        );
    }

    /// Lines of every command, right and wrong, and `PUBN` byte counts that
    /// are right, short, long, zero, over the limit or over `u64::MAX`.
    const COMMANDS: &[&[u8]] = &[
        b"PUB a hello there\n",
        b"pub \"q \\\"t\\\"\" \t text \r\n",
        b"PUBN b 3\nx\ny\n",
        b"PUBN b 3\nxy\n",
        b"PUBN b 3\nxyzw\n",
        b"PUBN b 0\n\n",
        b"PUBN b 65\n",
        b"PUBN b 18446744073709551615\n",
        b"PUBN b 18446744073709551616\nabc\n",
        b"SUB a\n",
        b"sub \"a b\" from 7 manual\n",
        b"SUB a beginning manual x\n",
        b"SUB a manual group \"g h\"\n",
        b"SUB a group\n",
        b"PULL a 2 group g\n",
        b"UNSUB a\n",
        b"ACK\n",
        b"nack\n",
        b"PULL a 2\n",
        b"PULL a -1\n",
        b"TOPICS\nSTATS\nPING\nHELP\n",
        b"\n   \t\r\n",
        b"0123456789012345678901234567890123456789\n",
        b"QUIT\n",
    ];

    /// Scripts of random commands, with a few bytes overwritten, inserted or
    /// cut, fed in random chunks: no panic, and the same requests however
    /// the bytes are split.
    #[test]
    fn mutated_commands_never_panic() {
        let mut next = testing::xorshift(0x9FB2_1C65_1E98_DF25);
        for _ in 0..20_000 {
            let mut bytes: Vec<u8> = (0..1 + next() % 6)
                .flat_map(|_| COMMANDS[(next() % COMMANDS.len() as u64) as usize].to_vec())
                .collect();
            for _ in 0..next() % 4 {
                let at = (next() % bytes.len() as u64) as usize;
                match next() % 3 {
                    0 => bytes[at] = next() as u8,
                    1 => bytes.insert(at, b"\n\r \"\\09"[(next() % 7) as usize]),
                    _ => bytes.truncate(at.max(1)),
                }
            }
            assert_split_makes_no_difference(&bytes, 1 + (next() % 8) as usize);
        }
    }

    /// A line over the limit is refused as soon as the limit is passed and
    /// its bytes are dropped as they come, and a `PUBN` count over the
    /// limit is refused before a byte of the payload: neither is buffered.
    #[test]
    fn oversized_lines_and_counts_are_refused_before_their_bytes() {
        let mut next = testing::xorshift(0x4F1B_BCDC_BFA5_3E0B);
        for _ in 0..2_000 {
            let long = vec![b'x'; LIMITS.max_line_bytes + 1 + (next() % 4096) as usize];
            let mut decoder = LineDecoder::new(LIMITS);
            let (used, event) = decoder.decode(&long);
            assert_eq!(used, long.len());
            assert_eq!(event, Some(refused(LineError::LineTooLong)));
            assert_eq!(decoder.decode(&long), (long.len(), None));

            let count = LIMITS.max_message_bytes as u64 + 1 + next() % (u64::MAX - 64);
            let header = format!("PUBN t {count}\n");
            let mut decoder = LineDecoder::new(LIMITS);
            let (used, event) = decoder.decode(header.as_bytes());
            assert_eq!(used, header.len());
            assert_eq!(event, Some(refused(LineError::MessageTooLarge)));
            // The payload the client sends anyway is skipped as it comes.
            assert_eq!(decoder.decode(&long), (long.len(), None));
        }
    }
}
