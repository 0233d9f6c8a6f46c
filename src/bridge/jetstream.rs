//! The JetStream calls the bridge makes, over a [`Connection`]: JetStream
//! has no protocol of its own, only JSON requests to `$JS.API.*` subjects
//! and JSON replies.
//!
//! ```text
//!  ensure_stream    ── $JS.API.STREAM.INFO.<name>, else STREAM.CREATE.<name> ──► StreamInfo
//!  ensure_consumer  ── $JS.API.CONSUMER.INFO.<stream>.<durable>: one the mirror cannot use
//!                      is an error; if absent, or its tunables other than the flags ask,
//!                      CONSUMER.DURABLE.CREATE.<stream>.<durable>
//!  request_next     ── $JS.API.CONSUMER.MSG.NEXT.<stream>.<durable>  (messages come to a reply inbox)
//!  answer           ── +ACK, -NAK or +TERM to the delivered message's reply subject
//!  PubAck::parse    ◄── the reply to a publish into a stream: {"stream":..,"seq":..,"duplicate":..}
//! ```
//!
//! The replies are read by a small strict JSON reader ([`Json::parse`]):
//! the design card allows no serde, and the bridge needs a few fields of a
//! few documents. It builds a tree (depth-limited, so no input can
//! exhaust the stack), reads strings with `wire/json.rs`'s parser, and
//! keeps numbers as their text until a caller asks for one.

use std::fmt;
use std::time::Duration;

use super::nats::{Connection, Message, NatsError};
use crate::wire::json::{encode_string, encode_string_array, parse_string_at, JsonError};

/// How long a JetStream API call may take: long enough for a cluster to
/// elect a leader.
pub const API_PATIENCE: Duration = Duration::from_secs(5);

/// The deepest nesting the JSON reader accepts.
const MAX_DEPTH: usize = 32;

/// A JSON document, as JetStream's replies need it.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// The number's text, parsed when asked for.
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// Why a reply could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonReadError {
    Syntax { at: usize },
    String(JsonError),
    TooDeep,
}

impl fmt::Display for JsonReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonReadError::Syntax { at } => write!(f, "invalid JSON at byte {at}"),
            JsonReadError::String(error) => write!(f, "invalid JSON string: {error}"),
            JsonReadError::TooDeep => write!(f, "JSON nested deeper than {MAX_DEPTH}"),
        }
    }
}

impl Json {
    pub fn parse(input: &[u8]) -> Result<Json, JsonReadError> {
        let mut reader = Reader { input, pos: 0 };
        let value = reader.value(0)?;
        reader.skip_whitespace();
        match reader.pos == input.len() {
            true => Ok(value),
            false => Err(JsonReadError::Syntax { at: reader.pos }),
        }
    }

    /// The value at a dotted path of object keys, such as `state.last_seq`.
    pub fn get(&self, path: &str) -> Option<&Json> {
        path.split('.').try_fold(self, |value, key| match value {
            Json::Object(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        })
    }

    pub fn u64_at(&self, path: &str) -> Option<u64> {
        self.number_at(path)
    }

    /// A number that may be negative, such as `max_deliver`'s `-1`.
    pub fn i64_at(&self, path: &str) -> Option<i64> {
        self.number_at(path)
    }

    fn number_at<N: std::str::FromStr>(&self, path: &str) -> Option<N> {
        match self.get(path)? {
            Json::Number(text) => text.parse().ok(),
            _ => None,
        }
    }

    pub fn str_at(&self, path: &str) -> Option<&str> {
        match self.get(path)? {
            Json::String(text) => Some(text),
            _ => None,
        }
    }

    pub fn bool_at(&self, path: &str) -> Option<bool> {
        match self.get(path)? {
            Json::Bool(value) => Some(*value),
            _ => None,
        }
    }
}

/// A cursor over the input; each method reads one grammar element.
struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn skip_whitespace(&mut self) {
        while matches!(self.input.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn syntax(&self) -> JsonReadError {
        JsonReadError::Syntax { at: self.pos }
    }

    fn value(&mut self, depth: usize) -> Result<Json, JsonReadError> {
        if depth > MAX_DEPTH {
            return Err(JsonReadError::TooDeep);
        }
        self.skip_whitespace();
        match self.input.get(self.pos) {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(Json::String),
            Some(b'-' | b'0'..=b'9') => Ok(self.number()),
            Some(_) => self.literal(),
            None => Err(self.syntax()),
        }
    }

    fn string(&mut self) -> Result<String, JsonReadError> {
        let (string, end) = parse_string_at(self.input, self.pos).map_err(JsonReadError::String)?;
        self.pos = end;
        Ok(string)
    }

    fn number(&mut self) -> Json {
        let start = self.pos;
        while matches!(
            self.input.get(self.pos),
            Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
        ) {
            self.pos += 1;
        }
        Json::Number(String::from_utf8_lossy(&self.input[start..self.pos]).into_owned())
    }

    fn literal(&mut self) -> Result<Json, JsonReadError> {
        for (word, value) in [
            (&b"true"[..], Json::Bool(true)),
            (b"false", Json::Bool(false)),
            (b"null", Json::Null),
        ] {
            if self.input[self.pos..].starts_with(word) {
                self.pos += word.len();
                return Ok(value);
            }
        }
        Err(self.syntax())
    }

    /// Reads `,`-separated items up to `close`, each with `item`.
    fn items(
        &mut self,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Result<(), JsonReadError>,
    ) -> Result<(), JsonReadError> {
        self.pos += 1;
        self.skip_whitespace();
        if self.input.get(self.pos) == Some(&close) {
            self.pos += 1;
            return Ok(());
        }
        loop {
            item(self)?;
            self.skip_whitespace();
            match self.input.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(&byte) if byte == close => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.syntax()),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Json, JsonReadError> {
        let mut values = Vec::new();
        self.items(b']', |reader| {
            values.push(reader.value(depth + 1)?);
            Ok(())
        })?;
        Ok(Json::Array(values))
    }

    fn object(&mut self, depth: usize) -> Result<Json, JsonReadError> {
        let mut fields = Vec::new();
        self.items(b'}', |reader| {
            reader.skip_whitespace();
            if reader.input.get(reader.pos) != Some(&b'"') {
                return Err(reader.syntax());
            }
            let key = reader.string()?;
            reader.skip_whitespace();
            if reader.input.get(reader.pos) != Some(&b':') {
                return Err(reader.syntax());
            }
            reader.pos += 1;
            fields.push((key, reader.value(depth + 1)?));
            Ok(())
        })?;
        Ok(Json::Object(fields))
    }
}

/// JetStream's `error` object: what it refused and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP-like: 404 not found, 503 unavailable (no leader yet).
    pub code: u64,
    /// JetStream's own code, such as 10059 (stream not found).
    pub err_code: u64,
    pub description: String,
}

/// The `err_code` of "stream not found".
const STREAM_NOT_FOUND: u64 = 10059;

/// The `err_code` of "consumer not found".
const CONSUMER_NOT_FOUND: u64 = 10014;

/// What can go wrong in a JetStream call.
#[derive(Debug)]
pub enum JetStreamError {
    Nats(NatsError),
    Json(JsonReadError),
    /// JetStream refused the request.
    Api(ApiError),
    /// A reply without a field the bridge needs.
    MissingField(&'static str),
    /// A publish answered "no responders": no stream takes its subject.
    NoStream,
    /// The consumer of the bridge's durable name is one it cannot use.
    Unfit(UnfitConsumer),
}

impl fmt::Display for JetStreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JetStreamError::Nats(error) => write!(f, "{error}"),
            JetStreamError::Json(error) => write!(f, "JetStream reply: {error}"),
            JetStreamError::Api(error) => write!(
                f,
                "JetStream refused ({} {}): {}",
                error.code, error.err_code, error.description
            ),
            JetStreamError::MissingField(field) => {
                write!(f, "JetStream reply without the field {field}")
            }
            JetStreamError::NoStream => write!(
                f,
                "no JetStream responder for this subject: in a cluster, most likely the stream \
                 is electing a new leader (tried again); else no stream takes the subject, or \
                 JetStream is off (nats-server -js)"
            ),
            JetStreamError::Unfit(unfit) => write!(f, "{unfit}"),
        }
    }
}

impl std::error::Error for JetStreamError {}

impl From<NatsError> for JetStreamError {
    fn from(error: NatsError) -> JetStreamError {
        JetStreamError::Nats(error)
    }
}

/// Reads a reply: its JSON, or the API error it carries.
pub fn read_reply(message: &Message) -> Result<Json, JetStreamError> {
    if message.status == Some(503) {
        return Err(JetStreamError::NoStream);
    }
    let json = Json::parse(&message.payload).map_err(JetStreamError::Json)?;
    if json.get("error").is_some() {
        return Err(JetStreamError::Api(ApiError {
            code: json.u64_at("error.code").unwrap_or(0),
            err_code: json.u64_at("error.err_code").unwrap_or(0),
            description: json.str_at("error.description").unwrap_or("").to_owned(),
        }));
    }
    Ok(json)
}

/// JetStream's answer to a publish into a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubAck {
    pub seq: u64,
    /// The message's `Nats-Msg-Id` was seen within the duplicate window:
    /// it was not stored again.
    pub duplicate: bool,
}

impl PubAck {
    pub fn parse(message: &Message) -> Result<PubAck, JetStreamError> {
        let json = read_reply(message)?;
        Ok(PubAck {
            seq: json
                .u64_at("seq")
                .ok_or(JetStreamError::MissingField("seq"))?,
            duplicate: json.bool_at("duplicate").unwrap_or(false),
        })
    }
}

/// A stream the bridge writes into.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub name: String,
    pub subjects: Vec<String>,
    pub replicas: u32,
    /// How long JetStream remembers a `Nats-Msg-Id`: longer than a bridge
    /// takes to restart, so a message sent again is dropped.
    pub duplicate_window: Duration,
}

/// What the bridge (and its tests) read of a stream's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    pub messages: u64,
    pub last_seq: u64,
    /// The name of the server leading the stream, in a cluster.
    pub leader: Option<String>,
    /// How long the stream remembers a `Nats-Msg-Id`.
    pub duplicate_window: Option<Duration>,
}

impl StreamInfo {
    fn read(json: &Json) -> Result<StreamInfo, JetStreamError> {
        Ok(StreamInfo {
            messages: json
                .u64_at("state.messages")
                .ok_or(JetStreamError::MissingField("state.messages"))?,
            last_seq: json
                .u64_at("state.last_seq")
                .ok_or(JetStreamError::MissingField("state.last_seq"))?,
            leader: json.str_at("cluster.leader").map(str::to_owned),
            duplicate_window: json
                .u64_at("config.duplicate_window")
                .map(Duration::from_nanos),
        })
    }
}

/// Makes a JetStream API request and reads its reply.
pub fn api(connection: &mut Connection, subject: &str, body: &str) -> Result<Json, JetStreamError> {
    let reply = connection.request(subject, body.as_bytes(), API_PATIENCE)?;
    read_reply(&reply)
}

pub fn stream_info(connection: &mut Connection, name: &str) -> Result<StreamInfo, JetStreamError> {
    let json = api(connection, &format!("$JS.API.STREAM.INFO.{name}"), "")?;
    StreamInfo::read(&json)
}

/// The stream `settings.name`, created with `settings` if it does not
/// exist. An existing stream is used as it is; one that forgets message
/// ids sooner than `settings.duplicate_window` gets a warning, since a
/// message the bridge sends again after that is stored twice.
pub fn ensure_stream(
    connection: &mut Connection,
    settings: &StreamSettings,
) -> Result<StreamInfo, JetStreamError> {
    match stream_info(connection, &settings.name) {
        Err(JetStreamError::Api(error)) if error.err_code == STREAM_NOT_FOUND => {}
        Ok(info) => {
            warn_of_a_short_window(&settings.name, &info, settings.duplicate_window);
            return Ok(info);
        }
        other => return other,
    }
    let body = format!(
        "{{\"name\":{},\"subjects\":{},\"storage\":\"file\",\"num_replicas\":{},\"duplicate_window\":{}}}",
        encode_string(&settings.name),
        encode_string_array(&settings.subjects),
        settings.replicas,
        settings.duplicate_window.as_nanos()
    );
    let subject = format!("$JS.API.STREAM.CREATE.{}", settings.name);
    let json = api(connection, &subject, &body)?;
    log::info!(
        "created JetStream stream {} for {:?}, {} replicas",
        settings.name,
        settings.subjects,
        settings.replicas
    );
    StreamInfo::read(&json)
}

fn warn_of_a_short_window(stream: &str, info: &StreamInfo, wanted: Duration) {
    match info.duplicate_window {
        Some(window) if window < wanted => log::warn!(
            "the existing stream {stream} remembers message ids for {window:?}, less than the \
             {wanted:?} the bridge creates streams with: a message sent again after that \
             (a bridge down longer) is stored twice; raise its duplicate_window \
             (nats stream edit {stream} --dupe-window 10m)"
        ),
        _ => {}
    }
}

/// A durable pull consumer of `stream`, with explicit acks.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    pub stream: String,
    pub durable: String,
    /// Only the stream's messages on these subjects (a NATS pattern).
    pub filter: String,
    /// How long JetStream waits for an ack before sending a message again.
    pub ack_wait: Duration,
    /// The most messages out without an ack.
    pub max_ack_pending: usize,
    /// How many times JetStream delivers a message before it gives up on
    /// it; `None`, never (JetStream's `-1`).
    pub max_deliver: Option<u32>,
}

impl ConsumerSettings {
    /// The body of the request that creates the consumer.
    fn create_request(&self) -> String {
        format!(
            "{{\"stream_name\":{},\"config\":{{\"durable_name\":{},\"deliver_policy\":\"all\",\
             \"ack_policy\":\"explicit\",\"ack_wait\":{},\"max_ack_pending\":{},\"max_deliver\":{},\
             \"filter_subject\":{}}}}}",
            encode_string(&self.stream),
            encode_string(&self.durable),
            self.ack_wait.as_nanos(),
            self.max_ack_pending,
            self.max_deliver.map_or(-1, i64::from),
            encode_string(&self.filter)
        )
    }
}

/// A setting of an existing consumer other than the flags ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The flag that sets it.
    pub flag: &'static str,
    /// The flag's value and the consumer's, each as the flag would be
    /// given it.
    pub asked: String,
    pub held: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} asks {}, the consumer has {}",
            self.flag, self.asked, self.held
        )
    }
}

impl ConsumerSettings {
    /// Where the consumer config `held` (the `config` of JetStream's reply
    /// about a consumer) is not what these settings ask. A field the reply
    /// lacks is not compared.
    pub fn differences(&self, held: &Json) -> Vec<Difference> {
        let ack_wait = |nanos| format!("{:?}", Duration::from_nanos(nanos));
        let max_deliver = self.max_deliver.map_or(-1, i64::from);
        [
            (
                "--ack-wait",
                format!("{:?}", self.ack_wait),
                held.u64_at("ack_wait").map(ack_wait),
            ),
            (
                "--batch",
                self.max_ack_pending.to_string(),
                held.u64_at("max_ack_pending").map(|n| n.to_string()),
            ),
            (
                "--max-deliver",
                max_deliver.to_string(),
                held.i64_at("max_deliver").map(|n| n.to_string()),
            ),
        ]
        .into_iter()
        .filter_map(|(flag, asked, held)| {
            let held = held.filter(|held| *held != asked)?;
            Some(Difference { flag, asked, held })
        })
        .collect()
    }

    /// Why the consumer config `held` cannot serve these settings'
    /// mirror, if it cannot: the bridge pulls (no `deliver_subject`),
    /// acks each message (`ack_policy` `explicit`), and wants the
    /// pattern's subjects only (`filter_subject`).
    pub fn unfit(&self, held: &Json) -> Option<Unfit> {
        if let Some(subject) = held.str_at("deliver_subject").filter(|s| !s.is_empty()) {
            return Some(Unfit::Push {
                deliver_subject: subject.to_owned(),
            });
        }
        if let Some(policy) = held.str_at("ack_policy").filter(|p| *p != "explicit") {
            return Some(Unfit::AckPolicy(policy.to_owned()));
        }
        let filter = held.str_at("filter_subject").unwrap_or("");
        (filter != self.filter).then(|| Unfit::Filter(filter.to_owned()))
    }

    fn name(&self) -> String {
        format!("{}/{}", self.stream, self.durable)
    }
}

/// Why an existing consumer of the bridge's durable name cannot serve its
/// mirror, whatever the flags: only a person can mend it. The bridge does
/// not change it in place: JetStream cannot make a push consumer a pull
/// one, and a consumer given another filter keeps its position, so the
/// new subjects' messages below it would be skipped without a word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unfit {
    /// It pushes its messages to this subject: it cannot be pulled.
    Push { deliver_subject: String },
    /// Its acks are not explicit (`none` or `all`): an ack of one message
    /// would stand for others, or none would be needed.
    AckPolicy(String),
    /// It takes the stream's messages on this filter (empty: all of
    /// them), not on the mirror's pattern.
    Filter(String),
}

impl fmt::Display for Unfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unfit::Push { deliver_subject } => write!(
                f,
                "it is a push consumer (it delivers to {deliver_subject}), and the bridge pulls"
            ),
            Unfit::AckPolicy(policy) => {
                write!(
                    f,
                    "its ack policy is {policy}, and the bridge acks each message (explicit)"
                )
            }
            Unfit::Filter(held) if held.is_empty() => {
                write!(
                    f,
                    "it takes every subject of the stream, not only the pattern's"
                )
            }
            Unfit::Filter(held) => write!(f, "it takes the subjects {held}, not the pattern's"),
        }
    }
}

/// An existing consumer the bridge cannot use ([`Unfit`]), named, with
/// what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnfitConsumer {
    pub stream: String,
    pub durable: String,
    /// The mirror's pattern, the filter the bridge asks for.
    pub filter: String,
    pub why: Unfit,
}

impl fmt::Display for UnfitConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let UnfitConsumer {
            stream,
            durable,
            filter,
            why,
        } = self;
        write!(
            f,
            "the JetStream consumer {stream}/{durable} is not one --from-nats {stream}={filter} can \
             use: {why}. The bridge neither changes it nor tries again: if nothing else uses it, \
             delete it (nats consumer rm {stream} {durable}) and start the bridge again, which \
             makes its own, starting at the stream's first message; if something else uses it, \
             give that consumer another name"
        )
    }
}

/// Creates the durable consumer, unless it is there already. One that
/// cannot serve the mirror ([`Unfit`]: a push consumer, acks that are not
/// explicit, another filter) is an error, and is left as it is. One whose
/// tunables (`ack_wait`, `max_ack_pending`, `max_deliver`) are other than
/// the flags ask is asked for again, which makes JetStream change them in
/// place, and the bridge warns that it did; those JetStream keeps (an
/// older server refuses the change) are returned as [`Tunables::Kept`],
/// for the caller to warn of: the mirror works with the consumer's values.
pub fn ensure_consumer(
    connection: &mut Connection,
    settings: &ConsumerSettings,
) -> Result<Tunables, JetStreamError> {
    let Some(held) = consumer_config(connection, settings)? else {
        create_consumer(connection, settings)?;
        log::info!("created the JetStream consumer {}", settings.name());
        return Ok(Tunables::AsAsked);
    };
    if let Some(why) = settings.unfit(&held) {
        return Err(JetStreamError::Unfit(UnfitConsumer {
            stream: settings.stream.clone(),
            durable: settings.durable.clone(),
            filter: settings.filter.clone(),
            why,
        }));
    }
    let found = settings.differences(&held);
    if found.is_empty() {
        return Ok(Tunables::AsAsked);
    }
    let because = match create_consumer(connection, settings) {
        Ok(reply) => match reply
            .get("config")
            .map(|config| settings.differences(config))
        {
            Some(now) if now.is_empty() => {
                log::warn!(
                    "the JetStream consumer {} was not as the flags ask ({}): JetStream changed \
                     it to the flags' values",
                    settings.name(),
                    list(&found)
                );
                return Ok(Tunables::AsAsked);
            }
            Some(now) => KeptBecause::Kept(now),
            None => KeptBecause::Unsaid,
        },
        Err(JetStreamError::Api(refusal)) => KeptBecause::Refused(refusal),
        Err(error) => return Err(error),
    };
    Ok(Tunables::Kept(Kept {
        stream: settings.stream.clone(),
        durable: settings.durable.clone(),
        found,
        because,
    }))
}

/// Asks for the consumer `settings` describe: JetStream creates it, or
/// changes an existing one in place.
fn create_consumer(
    connection: &mut Connection,
    settings: &ConsumerSettings,
) -> Result<Json, JetStreamError> {
    let subject = format!(
        "$JS.API.CONSUMER.DURABLE.CREATE.{}.{}",
        settings.stream, settings.durable
    );
    api(connection, &subject, &settings.create_request())
}

/// The config of the consumer `settings` names, `None` if there is none.
fn consumer_config(
    connection: &mut Connection,
    settings: &ConsumerSettings,
) -> Result<Option<Json>, JetStreamError> {
    let subject = format!(
        "$JS.API.CONSUMER.INFO.{}.{}",
        settings.stream, settings.durable
    );
    match api(connection, &subject, "") {
        Ok(info) => match info.get("config") {
            Some(config) => Ok(Some(config.clone())),
            None => Err(JetStreamError::MissingField("config")),
        },
        Err(JetStreamError::Api(error)) if error.err_code == CONSUMER_NOT_FOUND => Ok(None),
        Err(error) => Err(error),
    }
}

/// The consumer's tunables, as [`ensure_consumer`] leaves them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tunables {
    /// As the flags ask: found so, created so, or changed so.
    AsAsked,
    /// Other than the flags ask, and kept so by JetStream.
    Kept(Kept),
}

/// An existing consumer's tunables that JetStream did not change to the
/// flags' values; shown, it is the warning, with what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub stream: String,
    pub durable: String,
    /// What was found other than the flags ask.
    pub found: Vec<Difference>,
    pub because: KeptBecause,
}

/// Why JetStream kept a consumer's tunables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeptBecause {
    /// It refused to change them (an older server).
    Refused(ApiError),
    /// It answered the change with these still other.
    Kept(Vec<Difference>),
    /// It answered the change without saying what it holds now.
    Unsaid,
}

impl fmt::Display for Kept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Kept {
            stream, durable, ..
        } = self;
        let kept = match &self.because {
            KeptBecause::Refused(refusal) => {
                format!("JetStream refused to change it ({})", refusal.description)
            }
            KeptBecause::Kept(now) => format!("JetStream kept them ({})", list(now)),
            KeptBecause::Unsaid => "JetStream did not say what it holds now".to_owned(),
        };
        write!(
            f,
            "the JetStream consumer {stream}/{durable} is not as the flags ask ({}): {kept}; the \
             bridge uses it as it is. To have the flags' values, delete it (nats consumer rm \
             {stream} {durable}: the new one starts at the stream's first message, so brook gets \
             again what the old one had acked), or give the flags the consumer's values",
            list(&self.found)
        )
    }
}

/// `differences`, as a warning lists them.
fn list(differences: &[Difference]) -> String {
    let texts: Vec<String> = differences.iter().map(Difference::to_string).collect();
    texts.join("; ")
}

/// Asks the consumer for up to `batch` messages, delivered to `inbox`
/// within `expires` (then a status 408 message ends the request).
pub fn request_next(
    connection: &Connection,
    settings: &ConsumerSettings,
    inbox: &str,
    batch: usize,
    expires: Duration,
) -> Result<(), NatsError> {
    let subject = format!(
        "$JS.API.CONSUMER.MSG.NEXT.{}.{}",
        settings.stream, settings.durable
    );
    let body = format!("{{\"batch\":{batch},\"expires\":{}}}", expires.as_nanos());
    connection.publish(&subject, Some(inbox), body.as_bytes())?;
    connection.flush()
}

/// How the bridge answers a message from a pull consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Done with: JetStream does not send it again.
    Ack,
    /// Not done: JetStream sends it again now, before newer messages.
    Nak,
    /// Never to be done (brook refuses it for good): JetStream does not
    /// send it again, and does not count it as acked either.
    Term,
}

impl Answer {
    fn body(self) -> &'static [u8] {
        match self {
            Answer::Ack => b"+ACK",
            Answer::Nak => b"-NAK",
            Answer::Term => b"+TERM",
        }
    }
}

/// Answers a message from a pull consumer: a message to its reply subject.
/// Queued; it goes out on the connection's next flush.
pub fn answer(connection: &Connection, message: &Message, answer: Answer) -> Result<(), NatsError> {
    match &message.reply {
        Some(reply) => connection.publish(reply, None, answer.body()),
        None => Ok(()),
    }
}

/// Acknowledges a message from a pull consumer ([`Answer::Ack`]).
pub fn ack(connection: &Connection, message: &Message) -> Result<(), NatsError> {
    answer(connection, message, Answer::Ack)
}

/// The stream sequence number in a delivered message's ack subject,
/// `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>`
/// (or the newer form with a domain and an account hash after `ACK`).
pub fn stream_sequence(message: &Message) -> Option<u64> {
    let tokens: Vec<&str> = message.reply.as_deref()?.split('.').collect();
    let at = match tokens.len() {
        9 => 5,
        n if n >= 11 => 7,
        _ => return None,
    };
    tokens.get(at)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(json: &str) -> Message {
        Message {
            payload: json.as_bytes().to_vec(),
            ..Message::default()
        }
    }

    #[test]
    fn reads_the_fields_of_a_stream_info() {
        let json = Json::parse(
            br#" {"type":"io.nats.jetstream.api.v1.stream_info_response","config":{"name":"ORDERS",
            "subjects":["orders.*"],"num_replicas":3,"duplicate_window":120000000000,
            "x":[1.5e3,-2,true,null,{}]},
            "state":{"messages":42,"bytes":1000,"first_seq":1,"last_seq":42},
            "cluster":{"name":"C","leader":"n2","replicas":[{"name":"n1","current":true}]}} "#,
        )
        .unwrap();
        assert_eq!(
            StreamInfo::read(&json).unwrap(),
            StreamInfo {
                messages: 42,
                last_seq: 42,
                leader: Some("n2".into()),
                duplicate_window: Some(Duration::from_secs(120)),
            }
        );
        assert_eq!(json.str_at("config.name"), Some("ORDERS"));
        assert_eq!(json.u64_at("config.name"), None);
        assert_eq!(json.get("config.nothing.here"), None);
    }

    #[test]
    fn a_pub_ack_or_the_error_it_carries() {
        assert_eq!(
            PubAck::parse(&reply(r#"{"stream":"S","seq":7}"#)).unwrap(),
            PubAck {
                seq: 7,
                duplicate: false
            }
        );
        assert!(
            PubAck::parse(&reply(r#"{"stream":"S","seq":7,"duplicate":true}"#))
                .unwrap()
                .duplicate
        );
        let refused =
            r#"{"error":{"code":400,"err_code":10071,"description":"wrong last msg ID: x"}}"#;
        match PubAck::parse(&reply(refused)) {
            Err(JetStreamError::Api(error)) => {
                assert_eq!((error.code, error.err_code), (400, 10071));
                assert_eq!(error.description, "wrong last msg ID: x");
            }
            other => panic!("expected an API error, got {other:?}"),
        }
        let no_responders = Message {
            status: Some(503),
            ..Message::default()
        };
        assert!(matches!(
            PubAck::parse(&no_responders),
            Err(JetStreamError::NoStream)
        ));
    }

    #[test]
    fn bad_json_is_an_error_value() {
        for bad in [
            "", "{", "{\"a\"}", "{\"a\":}", "[1,]", "[1 2]", "tru", "{} x", "\"\\q\"", "{1:2}",
        ] {
            assert!(Json::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        let deep = "[".repeat(10_000);
        assert_eq!(Json::parse(deep.as_bytes()), Err(JsonReadError::TooDeep));
    }

    #[test]
    fn a_consumer_is_asked_for_with_every_setting_and_unlimited_is_minus_one() {
        let mut settings = pay_consumer();
        let request = Json::parse(settings.create_request().as_bytes()).unwrap();
        assert_eq!(request.str_at("stream_name"), Some("PAY"));
        let config = request.get("config").unwrap();
        assert_eq!(config.str_at("durable_name"), Some("brook-bridge-pay_star"));
        assert_eq!(config.str_at("ack_policy"), Some("explicit"));
        assert_eq!(config.str_at("deliver_policy"), Some("all"));
        assert_eq!(config.str_at("filter_subject"), Some("pay.*"));
        assert_eq!(config.u64_at("ack_wait"), Some(30_000_000_000));
        assert_eq!(config.u64_at("max_ack_pending"), Some(256));
        assert_eq!(config.get("max_deliver"), Some(&Json::Number("-1".into())));
        settings.max_deliver = Some(5);
        let request = Json::parse(settings.create_request().as_bytes()).unwrap();
        assert_eq!(request.u64_at("config.max_deliver"), Some(5));
    }

    /// The bridge's consumer settings, as `--from-nats PAY=pay.*` with
    /// the default flags makes them.
    fn pay_consumer() -> ConsumerSettings {
        ConsumerSettings {
            stream: "PAY".into(),
            durable: "brook-bridge-pay_star".into(),
            filter: "pay.*".into(),
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 256,
            max_deliver: None,
        }
    }

    #[test]
    fn an_existing_consumer_differs_where_a_flag_asks_otherwise() {
        let asked = pay_consumer();
        let same = Json::parse(
            br#"{"durable_name":"brook-bridge-pay_star","ack_wait":30000000000,
            "max_ack_pending":256,"max_deliver":-1,"filter_subject":"pay.*"}"#,
        )
        .unwrap();
        assert_eq!(asked.differences(&same), []);
        let other = Json::parse(br#"{"ack_wait":5500000000,"max_ack_pending":64,"max_deliver":5}"#)
            .unwrap();
        let difference = |flag, asked: &str, held: &str| Difference {
            flag,
            asked: asked.into(),
            held: held.into(),
        };
        assert_eq!(
            asked.differences(&other),
            [
                difference("--ack-wait", "30s", "5.5s"),
                difference("--batch", "256", "64"),
                difference("--max-deliver", "-1", "5"),
            ]
        );
        let limited = ConsumerSettings {
            max_deliver: Some(5),
            ..pay_consumer()
        };
        assert_eq!(
            limited.differences(&same),
            [difference("--max-deliver", "5", "-1")]
        );
        let unknown = Json::parse(br#"{"ack_wait":30000000000}"#).unwrap();
        assert_eq!(
            asked.differences(&unknown),
            [],
            "what a reply lacks is not compared"
        );
    }

    #[test]
    fn the_warning_names_the_flag_both_values_and_what_to_do() {
        let found = vec![Difference {
            flag: "--ack-wait",
            asked: "5s".into(),
            held: "30s".into(),
        }];
        let kept = |because| {
            Kept {
                stream: "PAY".into(),
                durable: "brook-bridge-pay_star".into(),
                found: found.clone(),
                because,
            }
            .to_string()
        };
        let refused = kept(KeptBecause::Refused(ApiError {
            code: 400,
            err_code: 10013,
            description: "consumer already exists".into(),
        }));
        for needle in [
            "PAY/brook-bridge-pay_star",
            "--ack-wait asks 5s, the consumer has 30s",
            "refused to change it (consumer already exists)",
            "nats consumer rm PAY brook-bridge-pay_star",
            "give the flags the consumer's values",
        ] {
            assert!(refused.contains(needle), "{needle} in {refused}");
        }
        let still = kept(KeptBecause::Kept(found.clone()));
        assert!(still.contains("JetStream kept them (--ack-wait"), "{still}");
    }

    /// A consumer the bridge cannot pull from, or whose acks or subjects
    /// are not the mirror's, is unfit whatever its tunables (review of
    /// the bridge's last items, findings 2 and 3).
    #[test]
    fn a_push_consumer_other_acks_or_another_filter_are_unfit() {
        let asked = pay_consumer();
        let config = |json: &str| Json::parse(json.as_bytes()).unwrap();
        let fit = r#"{"ack_policy":"explicit","filter_subject":"pay.*","ack_wait":1}"#;
        assert_eq!(asked.unfit(&config(fit)), None);
        let cases = [
            (
                r#"{"deliver_subject":"push.here","ack_policy":"explicit","filter_subject":"pay.*"}"#,
                Unfit::Push {
                    deliver_subject: "push.here".into(),
                },
            ),
            (
                r#"{"ack_policy":"all","filter_subject":"pay.*"}"#,
                Unfit::AckPolicy("all".into()),
            ),
            (
                r#"{"ack_policy":"explicit","filter_subject":"pay.us"}"#,
                Unfit::Filter("pay.us".into()),
            ),
            (r#"{"ack_policy":"explicit"}"#, Unfit::Filter("".into())),
        ];
        for (json, why) in cases {
            assert_eq!(asked.unfit(&config(json)).as_ref(), Some(&why), "{json}");
        }
        let error = UnfitConsumer {
            stream: "PAY".into(),
            durable: "brook-bridge-pay_star".into(),
            filter: "pay.*".into(),
            why: Unfit::Filter("pay.us".into()),
        }
        .to_string();
        for needle in [
            "PAY/brook-bridge-pay_star",
            "--from-nats PAY=pay.*",
            "it takes the subjects pay.us",
            "nats consumer rm PAY brook-bridge-pay_star",
        ] {
            assert!(error.contains(needle), "{needle} in {error}");
        }
    }

    #[test]
    fn ack_subjects_name_the_stream_sequence() {
        let delivered = |reply: &str| Message {
            reply: Some(reply.into()),
            ..Message::default()
        };
        assert_eq!(
            stream_sequence(&delivered("$JS.ACK.ORDERS.bridge.1.42.40.1700000000.3")),
            Some(42)
        );
        assert_eq!(
            stream_sequence(&delivered(
                "$JS.ACK.hub.ACC.ORDERS.bridge.1.42.40.1700000000.3.x"
            )),
            Some(42)
        );
        assert_eq!(stream_sequence(&delivered("_INBOX.x")), None);
    }
}
