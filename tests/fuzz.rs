//! Fuzzing a live broker: hundreds of thousands of random, truncated,
//! oversized and mutated frames of both protocols, thrown at one broker from
//! several connections at once, while well-behaved clients of both protocols
//! exchange messages through it and check that every one arrives, once and
//! in order.
//!
//! The decoders are fuzzed on their own by the unit tests of
//! `src/wire/binary.rs`, `src/wire/line.rs` and `src/wire/json.rs`. This test checks what
//! those cannot: that the broker as a whole (reader threads, dispatcher,
//! sessions, writers) takes such input without a crash, a hang, or a lost
//! message for anyone else; that it answers or closes every hostile
//! connection; and that it still serves new clients afterwards.
//!
//! Every hostile thread draws from a xorshift generator of its own (no
//! crates) with a fixed seed, and makes each connection's bytes before it
//! connects, so every run sends exactly the same bytes; only how the kernel
//! splits them into reads varies, and the decoders must not care. The broker
//! runs with small limits so that the traffic reaches them cheaply.
//!
//! The same traffic, with logins in it (the binary Auth action, `AUTH`
//! lines, right and wrong), runs twice: against a broker without an auth
//! file, and against one with `--auth-file`, where the well-behaved pairs
//! log in and each hostile request also passes the reader's guard
//! (`src/auth/guard.rs`): refused before a login, refused by permission,
//! or let through.
//!
//! Nothing here sleeps: every wait is a blocking read or write under a
//! timeout.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::panic;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use brook::client::{Login, Publisher, Subscriber};
use brook::config::Config;
use brook::wire::request::StartAt;
use common::auth::{config_with_flags, password_line, AuthFile};
use common::broker::{config, start_broker};
use common::client::{expect_next_ack, expect_nothing, Bystander};
use common::frames::{
    from_u16, from_u64, publish_frame, subscribe_request, unsubscribe_request, ACK, BEGINNING,
    CURRENT, NACK, PUBLISH, SUBSCRIBE, UNSUBSCRIBE,
};
use common::line::Line;
use common::rng::Random;
use common::QUIET;

/// One seed per hostile thread: the threads run side by side, each opening
/// connection after connection.
const SEEDS: [u64; 4] = [
    0x243F_6A88_85A3_08D3,
    0x1319_8A2E_0370_7344,
    0xA409_3822_299F_31D0,
    0x082E_FA98_EC4E_6C89,
];

/// Connections each hostile thread opens, one after another.
const CONNECTIONS_PER_THREAD: usize = 1000;

/// The most bytes of frames a hostile connection sends (its last frame may
/// go over).
const MAX_SCRIPT_BYTES: usize = 16 << 10;

/// About one frame in this many ends its connection early, with a frame the
/// broker closes the connection for or a frame cut short.
const LAST_FRAME_ONE_IN: usize = 250;

/// The frames the hostile threads must have sent between them.
const MIN_FRAMES: usize = 250_000;

/// The least number of messages each well-behaved pair exchanges; they go
/// on exchanging until the hostile threads are done.
const MIN_GOOD_MESSAGES: u64 = 20_000;

/// Messages a well-behaved publisher sends before its subscriber must have
/// received them all.
const ROUND: u64 = 100;

/// How long a hostile connection may wait for the broker to read what it
/// sends, or to answer or close the connection, before the test calls it a
/// hang. Far longer than anything takes when the broker works.
const HANG: Duration = Duration::from_secs(20);

// ---- The broker. ----

const MESSAGE_LIMIT: usize = 64 << 10;
const TOPIC_LIST_LIMIT: usize = 4 << 10;
const LINE_LIMIT: usize = 4 << 10;

/// [`config()`] with small limits, so hostile frames reach every one of
/// them without sending megabytes; a small window, so a hostile subscriber
/// that does not ack gets few deliveries; a small retention, so that
/// subscribing from the beginning replays little of the hostile topics; and
/// an ack timeout longer than the test runs on the slowest machine, so that
/// a well-behaved subscriber slowed down by the load never gets a message
/// again that it did not ask for.
fn fuzz_config() -> Config {
    with_small_limits(config())
}

/// `base` with the fuzz test's limits and timers (see [`fuzz_config()`]).
fn with_small_limits(base: Config) -> Config {
    Config {
        ack_timeout: Duration::from_secs(120),
        max_message_bytes: MESSAGE_LIMIT,
        max_topic_list_bytes: TOPIC_LIST_LIMIT,
        max_line_bytes: LINE_LIMIT,
        max_inflight: 256,
        retention_bytes: Some(8 << 10),
        ..base
    }
}

/// brook's extension: a publisher that wants every message confirmed.
const PUBLISH_CONFIRMED: [u8; 2] = [0, 6];

/// brook's extension: log in.
const AUTH: [u8; 2] = [0, 8];

// ---- Users. ----

/// The user hostile connections log in as, when they get it right: it may
/// publish to and read two of the hostile topics, and join groups on one.
const FUZZ_USER: &str = "fuzzer";
const FUZZ_PASSWORD: &str = "fuzz-pass";

/// The well-behaved pairs' user, which may do anything. Its name holds
/// [`GOOD_MARK`], so no hostile connection ever sends it.
const GOOD_USER: &str = "well-behaved-user";
const GOOD_PASSWORD: &str = "good-pass";

/// The auth file of those two users.
fn users() -> AuthFile {
    AuthFile::new(&format!(
        "user {FUZZ_USER}\n{}  publish a fuzz\n  subscribe a fuzz\n  group a\n\
         user {GOOD_USER}\n{}  publish *\n  subscribe *\n  group *\n",
        password_line(FUZZ_PASSWORD),
        password_line(GOOD_PASSWORD)
    ))
}

/// [`fuzz_config()`] with `users` as its auth file; a binary client that
/// does not log in may use topic `a` (and the bystander's); failed logins
/// wait a few microseconds, doubling to a fraction of a millisecond.
fn fuzz_auth_config(users: &AuthFile) -> Config {
    let file = users.path();
    with_small_limits(config_with_flags(&[
        "--auth-file",
        file.to_str().unwrap(),
        "--allow-anonymous-binary",
        "a,bystander",
        "--auth-failure-delay",
        "10us",
    ]))
}

// ---- Topics. ----

/// A topic of the hostile traffic, spelled for each place it goes.
struct HostileTopic {
    /// As a binary publisher's topic frame carries it, after `topic:`.
    name: &'static str,
    /// As a string of a JSON topic list.
    json: &'static str,
    /// As a word of the line protocol.
    word: &'static str,
}

/// The only topics hostile traffic names, apart from what its mutations
/// make of them.
const HOSTILE_TOPICS: &[HostileTopic] = &[
    HostileTopic {
        name: "a",
        json: r#""a""#,
        word: "a",
    },
    HostileTopic {
        name: "fuzz",
        json: r#""f\u0075zz""#,
        word: "fuzz",
    },
    HostileTopic {
        name: "",
        json: r#""""#,
        word: r#""""#,
    },
    HostileTopic {
        name: "q \"t\" \\",
        json: r#""q \"t\" \\""#,
        word: r#""q \"t\" \\""#,
    },
    HostileTopic {
        name: "ünï 😀",
        json: r#""\u00fcn\u00EF \ud83d\ude00""#,
        word: r#""ünï 😀""#,
    },
];

/// What the names of the well-behaved topics start with, and what no
/// hostile connection ever sends (checked for each one). Spelling it with
/// JSON escapes would take far more changed bytes than a mutation makes.
const GOOD_MARK: &str = "well-behaved";
const GOOD_BINARY_TOPIC: &str = "well-behaved-binary-2b7e15";
const GOOD_LINE_TOPIC: &str = "well-behaved-line-9f4c31";

/// A topic the fuzzer's connections use, drawn at random.
fn hostile_topic(random: &mut Random) -> &'static HostileTopic {
    random.pick_ref(HOSTILE_TOPICS)
}

/// A length prefix above `limit`: just above, the largest, or between.
fn oversized(random: &mut Random, limit: usize) -> u32 {
    let limit = limit as u32;
    match random.below(4) {
        0 => limit + 1,
        1 => u32::MAX,
        _ => limit + 1 + random.below((u32::MAX - limit - 1) as usize) as u32,
    }
}

/// Bytes that mean something to one decoder or the other: small actions
/// and lengths, separators, quotes, escapes, digits, brackets.
const INTERESTING: &[u8] = b"\x00\x01\x02\x03\x04\x05\x06\xff\n\r \t\"\\09[],:";

/// A byte for a mutation: any byte, or one that the decoders look at.
fn mutation_byte(random: &mut Random) -> u8 {
    match random.below(2) {
        0 => random.next() as u8,
        _ => random.pick(INTERESTING),
    }
}

/// Changes one to three bytes of `frame`: overwrites, inserts or removes
/// one, or cuts the frame short.
fn mutate(random: &mut Random, frame: &mut Vec<u8>) {
    for _ in 0..1 + random.below(3) {
        let at = random.below(frame.len() + 1);
        match random.below(4) {
            0 if at < frame.len() => frame[at] = mutation_byte(random),
            1 => {
                let byte = mutation_byte(random);
                frame.insert(at, byte);
            }
            2 if at < frame.len() => {
                frame.remove(at);
            }
            _ => frame.truncate(at),
        }
    }
}

/// `frame` cut short, as a client that disconnects mid-frame leaves it.
fn cut(random: &mut Random, mut frame: Vec<u8>) -> Vec<u8> {
    frame.truncate(random.below(frame.len()));
    frame
}

// ---- Hostile connections: what they send. ----

/// The bytes of one hostile connection, made before it connects.
struct Script {
    bytes: Vec<u8>,
    /// Where each frame ends in `bytes`.
    frame_ends: Vec<usize>,
    /// One frame in this many is mutated: some connections are nearly
    /// well-formed and go on for long, others are garbled from the start
    /// and short.
    mutate_one_in: usize,
    /// No frame is added once `bytes` holds this many.
    budget: usize,
}

impl Script {
    fn new(random: &mut Random) -> Script {
        let mutate_one_in = random.pick(&[5, 50, 500, 5000]);
        // The broker soon closes a connection garbled often, for a frame it
        // cannot recover from: more bytes would be sent for nothing.
        let budget = (1 + random.below(MAX_SCRIPT_BYTES)).min(mutate_one_in * 200);
        Script {
            bytes: Vec::new(),
            frame_ends: Vec::new(),
            mutate_one_in,
            budget,
        }
    }

    /// Adds a frame, mutated now and then.
    fn push(&mut self, random: &mut Random, mut frame: Vec<u8>) {
        if random.one_in(self.mutate_one_in) {
            mutate(random, &mut frame);
        }
        self.bytes.extend_from_slice(&frame);
        self.frame_ends.push(self.bytes.len());
    }

    /// Adds frames made by `next_frame` until the budget is spent. Now and
    /// then one from `last_frame` ends the connection early.
    fn fill(&mut self, random: &mut Random, next_frame: MakeFrame, last_frame: MakeFrame) {
        while self.bytes.len() < self.budget {
            if random.one_in(LAST_FRAME_ONE_IN) {
                let frame = last_frame(random);
                self.push(random, frame);
                return;
            }
            let frame = next_frame(random);
            self.push(random, frame);
        }
    }

    /// How many whole frames the first `written` bytes hold.
    fn frames_within(&self, written: usize) -> usize {
        self.frame_ends.partition_point(|&end| end <= written)
    }
}

type MakeFrame = fn(&mut Random) -> Vec<u8>;

/// One hostile connection's bytes: a binary publisher, a binary subscriber,
/// a line-protocol client, or noise.
fn hostile_script(random: &mut Random) -> Script {
    let mut script = Script::new(random);
    match random.below(7) {
        0 | 1 => {
            if random.one_in(2) {
                let login = auth(random);
                script.push(random, login);
            }
            // The action that makes a publisher connection: not a frame.
            let first = random.pick(&[PUBLISH, PUBLISH_CONFIRMED]);
            script.bytes.extend_from_slice(&first);
            script.fill(random, publish, publisher_last_frame);
        }
        2 | 3 => {
            if random.one_in(2) {
                let login = auth(random);
                script.push(random, login);
            }
            let first = subscribe_or_unsubscribe(random);
            script.push(random, first);
            script.fill(random, subscriber_frame, subscriber_last_frame);
        }
        4 | 5 => {
            if random.one_in(2) {
                let login = auth_line(random);
                script.push(random, login);
            }
            script.fill(random, line, line_last_frame);
        }
        _ => {
            // A decoder gives up on noise within a few bytes: more would
            // be bytes sent for nothing.
            script.budget /= 16;
            script.fill(random, noise, noise);
        }
    }
    let good_mark = GOOD_MARK.as_bytes();
    assert!(
        !script
            .bytes
            .windows(good_mark.len())
            .any(|w| w == good_mark),
        "hostile traffic names a well-behaved topic"
    );
    script
}

/// A password a hostile connection tries: the right one most often.
fn password(random: &mut Random) -> String {
    match random.below(4) {
        0 => String::new(),
        1 => "wrong".to_owned(),
        2 => {
            let len = 1 + random.below(300);
            String::from_utf8(random.text(TEXT, len)).unwrap()
        }
        _ => FUZZ_PASSWORD.to_owned(),
    }
}

/// The binary Auth action: the fuzzer's user or another, any password,
/// now and then a name that is not UTF-8.
fn auth(random: &mut Random) -> Vec<u8> {
    let user = match random.below(5) {
        0 => b"\xff\xfe".to_vec(),
        1 => b"nobody".to_vec(),
        2 => Vec::new(),
        _ => FUZZ_USER.as_bytes().to_vec(),
    };
    let password = password(random).into_bytes();
    let field = |bytes: &[u8]| [&(bytes.len() as u16).to_be_bytes()[..], bytes].concat();
    [&AUTH[..], &field(&user), &field(&password)].concat()
}

/// `AUTH <user> <password>`, right or wrong, or with a word missing.
fn auth_line(random: &mut Random) -> Vec<u8> {
    let user = random.pick(&[FUZZ_USER, FUZZ_USER, "nobody", "\"\""]);
    let line = match random.below(8) {
        0 => format!("AUTH {user}"),
        1 => format!("{} {user} a b", spelled(random, "AUTH")),
        _ => format!("{} {user} {:?}", spelled(random, "AUTH"), password(random)),
    };
    (line + "\n").into_bytes()
}

/// A publish frame pair with any topic frame: `u16` length, the frame,
/// `u32` payload length, the payload.
fn raw_publish(topic_frame: &[u8], payload: &[u8]) -> Vec<u8> {
    let topic_len = (topic_frame.len() as u16).to_be_bytes();
    let payload_len = (payload.len() as u32).to_be_bytes();
    [&topic_len[..], topic_frame, &payload_len, payload].concat()
}

/// A publish, mostly a good one, sometimes one of those the broker skips,
/// drops or refuses without closing the connection.
fn publish(random: &mut Random) -> Vec<u8> {
    let name = hostile_topic(random).name;
    let len = 1 + random.below(100);
    let payload = random.bytes(len);
    match random.below(20) {
        0 => vec![0, 0], // an empty topic frame, skipped
        1 => publish_frame(name, b""),
        2 => raw_publish(format!("t0pic:{name}").as_bytes(), &payload),
        3 => raw_publish(b"topic:\xff\xfe", &payload),
        4 if random.one_in(250) => publish_frame(name, &random.bytes(MESSAGE_LIMIT)),
        _ => publish_frame(name, &payload),
    }
}

/// A payload length over the limit (the broker refuses it and closes the
/// connection without reading the payload), or a publish cut short.
fn publisher_last_frame(random: &mut Random) -> Vec<u8> {
    let frame = publish(random);
    if random.one_in(2) {
        return cut(random, frame);
    }
    let topic_frame = format!("topic:{}", hostile_topic(random).name);
    let mut frame = raw_publish(topic_frame.as_bytes(), b"");
    frame.truncate(frame.len() - 4);
    frame.extend_from_slice(&oversized(random, MESSAGE_LIMIT).to_be_bytes());
    frame
}

/// A JSON list of hostile topics, with whitespace here and there; now and
/// then `null`, or a list padded to exactly the limit.
fn topic_list(random: &mut Random) -> Vec<u8> {
    if random.one_in(20) {
        return b" null ".to_vec();
    }
    let names: Vec<&str> = (0..random.below(4))
        .map(|_| hostile_topic(random).json)
        .collect();
    let mut list = format!("[{}]", names.join(random.pick(&[",", " , ", ",\n\t"]))).into_bytes();
    if random.one_in(50) {
        list.resize(TOPIC_LIST_LIMIT, b' ');
    }
    list
}

/// A start-at: each kind, with any offset, or a type that does not exist.
fn start_at(random: &mut Random) -> Vec<u8> {
    match random.below(5) {
        0 => BEGINNING.to_vec(),
        1 => CURRENT.to_vec(),
        2 => from_u16(random.next() as u16),
        3 => from_u64(random.next() >> random.below(64)),
        _ => (4 + random.below(0xFFFC) as u16).to_be_bytes().to_vec(),
    }
}

fn subscribe_or_unsubscribe(random: &mut Random) -> Vec<u8> {
    match random.below(4) {
        0 => unsubscribe_request(topic_list(random)),
        _ => subscribe_request(topic_list(random), &start_at(random)),
    }
}

/// A subscriber's request: acks and nacks (for deliveries or not),
/// (un)subscribes, and the refusals that keep the connection open.
fn subscriber_frame(random: &mut Random) -> Vec<u8> {
    match random.below(10) {
        0..=2 => ACK.to_vec(),
        3 => NACK.to_vec(),
        4..=6 => subscribe_or_unsubscribe(random),
        7 => [&random.pick(&[SUBSCRIBE, UNSUBSCRIBE])[..], &[0, 0, 0, 0]].concat(),
        _ => {
            let len = 1 + random.below(20);
            let json = random.text(b"[]{}\",:\\u0 null", len);
            subscribe_request(json, &start_at(random))
        }
    }
}

/// A topic list length over the limit or an action a subscriber cannot
/// take (the broker closes the connection for both), or a request cut short.
fn subscriber_last_frame(random: &mut Random) -> Vec<u8> {
    match random.below(3) {
        0 => {
            let action = random.pick(&[SUBSCRIBE, UNSUBSCRIBE]);
            [
                &action[..],
                &oversized(random, TOPIC_LIST_LIMIT).to_be_bytes(),
            ]
            .concat()
        }
        1 => random
            .pick(&[[0, 0], PUBLISH, PUBLISH_CONFIRMED, [0, 7], [0xff, 0xff]])
            .to_vec(),
        _ => {
            let frame = subscribe_or_unsubscribe(random);
            cut(random, frame)
        }
    }
}

/// Printable text for `PUB` lines and long lines.
const TEXT: &[u8] = b"abcxyz ABC 0123456789 \t.,;:!?\"\\-_/";

/// `name` in random case: commands are case-insensitive.
fn spelled(random: &mut Random, name: &str) -> String {
    match random.below(3) {
        0 => name.to_ascii_lowercase(),
        _ => name.to_owned(),
    }
}

/// Lines the broker refuses without closing the connection.
const BAD_LINES: &[&str] = &[
    "FROB x",
    "PUB",
    "PUB a",
    "PUBN a",
    "PUBN a x",
    "SUB",
    "SUB a sideways",
    "SUB a from",
    "SUB a from -1",
    "SUB a current manual x",
    "UNSUB a b",
    "PULL a x",
    "PING x",
    "PUB \"a\\q\" x",
    "PUB \"a b x",
    "PUB \"a\"b x",
];

/// A line-protocol request: every command, right and wrong, long lines,
/// and `PUBN` with right and wrong byte counts.
fn line(random: &mut Random) -> Vec<u8> {
    let topic = hostile_topic(random).word;
    let text = match random.below(100) {
        0..=19 => {
            let len = 1 + random.below(60);
            let words = random.text(TEXT, len);
            let pub_ = spelled(random, "PUB");
            format!("{pub_} {topic} {}", String::from_utf8(words).unwrap())
        }
        20..=31 => return pubn(random, topic),
        32..=43 => format!("{} {topic}{}", spelled(random, "SUB"), sub_options(random)),
        44..=48 => format!("UNSUB {topic}"),
        49..=58 => {
            let command = random.pick(&["ACK", "NACK"]);
            spelled(random, command)
        }
        59..=66 => match random.below(2) {
            0 => format!("PULL {topic}"),
            _ => format!("PULL {topic} {}", random.below(10)),
        },
        67..=74 => random
            .pick(&["TOPICS", "STATS", "PING", "PING", "PING", "HELP"])
            .to_owned(),
        75..=84 => random.pick(BAD_LINES).to_owned(),
        85..=87 => random.pick(&["", " ", "\t \t"]).to_owned(),
        88 | 89 => return auth_line(random),
        90 if random.one_in(5) => {
            let head = format!("PUB {topic} ");
            let fill = random.text(TEXT, LINE_LIMIT - head.len());
            head + &String::from_utf8(fill).unwrap()
        }
        91 if random.one_in(5) => {
            let len = LINE_LIMIT + 1 + random.below(LINE_LIMIT);
            let long = random.text(TEXT, len);
            String::from_utf8(long).unwrap()
        }
        _ => "PING".to_owned(),
    };
    let end = random.pick(&["\n", "\n", "\n", "\r\n"]);
    (text + end).into_bytes()
}

/// `SUB`'s options after the topic: a start, `manual`, both or neither.
fn sub_options(random: &mut Random) -> String {
    let start = match random.below(4) {
        0 => String::new(),
        1 => " beginning".to_owned(),
        2 => " current".to_owned(),
        _ => format!(" from {}", random.next() >> random.below(64)),
    };
    let manual = random.pick(&["", " manual"]);
    start + manual
}

/// Text with line breaks, the payload of most `PUBN`s: when the count is
/// wrong, what the broker then reads as lines is text, as it would be from
/// a person miscounting, and the connection goes on.
const PAYLOAD_TEXT: &[u8] = b"abc xyz PUB PING\n\n\r\n\"\\0";

/// `PUBN`, its payload (text or any bytes; rarely one of the largest size)
/// and a newline, with a byte count that is right, a little short (zero for
/// a payload of one byte), or a little long.
fn pubn(random: &mut Random, topic: &str) -> Vec<u8> {
    let len = match random.one_in(500) {
        true => MESSAGE_LIMIT,
        false => 1 + random.below(100),
    };
    let payload = match random.below(4) {
        0 => random.bytes(len),
        _ => random.text(PAYLOAD_TEXT, len),
    };
    let count = match random.below(16) {
        0 => len - 1,
        1 => len + 1 + random.below(3),
        _ => len,
    };
    let header = format!("{} {topic} {count}\n", spelled(random, "PUBN"));
    [header.as_bytes(), &payload, b"\n"].concat()
}

/// `QUIT`; binary data, for which the broker closes the connection; a
/// `PUBN` count over the limit, whose payload the broker skips to the end
/// of the connection; or a request cut short.
fn line_last_frame(random: &mut Random) -> Vec<u8> {
    let topic = hostile_topic(random).word;
    match random.below(6) {
        0 => b"QUIT\n".to_vec(),
        1 => b"PING\0\n".to_vec(),
        2 => [format!("PUB {topic} caf").as_bytes(), b"\xe9\n"].concat(),
        3 => {
            let count = (random.next() >> random.below(64)).max(MESSAGE_LIMIT as u64 + 1);
            format!("PUBN {topic} {count}\n").into_bytes()
        }
        _ => {
            let frame = line(random);
            cut(random, frame)
        }
    }
}

/// Random bytes, or a jumble of both protocols' bytes.
fn noise(random: &mut Random) -> Vec<u8> {
    let len = 1 + random.below(64);
    match random.below(2) {
        0 => random.bytes(len),
        _ => random.text(b"\0\0\x01\x03\x04\x06PUBNSUBACKPULL \n\r\"\\[]topic:", len),
    }
}

// ---- Hostile connections: sending and draining. ----

/// What the hostile connections did, added up.
#[derive(Debug, Default)]
struct Tally {
    connections: usize,
    /// Connections the broker closed before all their bytes were written:
    /// it does so after a frame it cannot recover from.
    cut_short: usize,
    /// Whole frames written.
    frames: usize,
    bytes_sent: usize,
    bytes_received: usize,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.connections += other.connections;
        self.cut_short += other.cut_short;
        self.frames += other.frames;
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
    }
}

/// Opens connection after connection, each with its own script.
fn hostile_thread(addr: SocketAddr, seed: u64) -> Tally {
    let mut random = Random::new(seed);
    let mut tally = Tally::default();
    for _ in 0..CONNECTIONS_PER_THREAD {
        let script = hostile_script(&mut random);
        tally.add(run_connection(addr, &script));
    }
    tally
}

/// Sends `script` on a new connection while a second thread reads all the
/// broker sends back (the broker stops reading a client that leaves its
/// answers unread), then closes the sending side and waits for the broker
/// to close the connection.
fn run_connection(addr: SocketAddr, script: &Script) -> Tally {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_write_timeout(Some(HANG)).unwrap();
    let reader = stream.try_clone().unwrap();
    thread::scope(|s| {
        let drained = s.spawn(|| drain(reader));
        let written = write_until_closed(&stream, &script.bytes);
        // The broker may have reset the connection already.
        let _ = stream.shutdown(Shutdown::Write);
        let received = drained.join().unwrap_or_else(|e| panic::resume_unwind(e));
        Tally {
            connections: 1,
            cut_short: usize::from(written < script.bytes.len()),
            frames: script.frames_within(written),
            bytes_sent: written,
            bytes_received: received,
        }
    })
}

/// Writes `bytes` until done, or until the broker closes the connection.
/// Returns how many were written.
fn write_until_closed(mut stream: &TcpStream, bytes: &[u8]) -> usize {
    let mut written = 0;
    while written < bytes.len() {
        match stream.write(&bytes[written..]) {
            Ok(n) => written += n,
            Err(e) if matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) => {
                break
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("the broker stopped reading an open connection: {e}"),
        }
    }
    written
}

/// Reads until the broker closes the connection; returns the bytes read.
fn drain(mut stream: TcpStream) -> usize {
    stream.set_read_timeout(Some(HANG)).unwrap();
    let mut buffer = vec![0u8; 64 << 10];
    let mut received = 0;
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return received,
            Ok(n) => received += n,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return received,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("the broker neither answered nor closed a connection: {e}"),
        }
    }
}

// ---- The well-behaved clients. ----

/// The payload of the well-behaved pairs' message number `i`.
fn numbered(i: u64) -> String {
    format!("message {i}")
}

/// A binary publisher and subscriber: the publisher sends a round of
/// numbered messages, the subscriber must receive and ack every one, in
/// order, before the next round. Returns how many were exchanged.
fn binary_pair(addr: SocketAddr, login: Option<&Login>, hostile_done: &AtomicBool) -> u64 {
    let mut subscriber = Subscriber::connect(addr).unwrap();
    if let Some(login) = login {
        subscriber.login(login).unwrap();
    }
    let beginning = StartAt::Beginning;
    subscriber
        .subscribe(&[GOOD_BINARY_TOPIC], beginning)
        .unwrap();
    let mut publisher = Publisher::connect_as(addr, login).unwrap();
    let mut sent = 0;
    while sent < MIN_GOOD_MESSAGES || !hostile_done.load(Ordering::SeqCst) {
        let round = sent..sent + ROUND;
        for i in round.clone() {
            let payload = numbered(i);
            publisher
                .publish(GOOD_BINARY_TOPIC, payload.as_bytes())
                .unwrap();
        }
        publisher.flush().unwrap();
        for i in round {
            expect_next_ack(&mut subscriber, GOOD_BINARY_TOPIC, numbered(i).as_bytes());
        }
        sent += ROUND;
    }
    expect_nothing(&mut subscriber, QUIET);
    sent
}

/// The same over the line protocol: `PUB` lines, each confirmed with its
/// offset, and a subscriber that must get each as a `MSG` at that offset.
fn line_pair(addr: SocketAddr, login: Option<&Login>, hostile_done: &AtomicBool) -> u64 {
    let mut subscriber = line_client(addr, login);
    let subscribe = format!("SUB {GOOD_LINE_TOPIC} beginning");
    assert_eq!(subscriber.ask(&subscribe), "+OK");
    let mut publisher = line_client(addr, login);
    let mut sent = 0;
    while sent < MIN_GOOD_MESSAGES || !hostile_done.load(Ordering::SeqCst) {
        let round = sent..sent + ROUND;
        let lines: String = round
            .clone()
            .map(|i| format!("PUB {GOOD_LINE_TOPIC} {}\n", numbered(i)))
            .collect();
        publisher.send(lines);
        for i in round.clone() {
            publisher.expect_line(&format!("+OK {i}"));
        }
        for i in round {
            subscriber.expect_msg(GOOD_LINE_TOPIC, i, numbered(i).as_bytes());
        }
        sent += ROUND;
    }
    subscriber.expect_silence(QUIET);
    sent
}

/// A line-protocol connection, logged in as `login` if given.
fn line_client(addr: SocketAddr, login: Option<&Login>) -> Line {
    let mut client = Line::connect(addr);
    if let Some(login) = login {
        let auth = format!("AUTH {} {}", login.user(), login.password());
        assert_eq!(client.ask(&auth), "+OK");
    }
    client
}

// ---- The test. ----

/// Panics anywhere in this process while the test runs. A broker thread
/// that panics may go unnoticed otherwise: a reader that panics only drops
/// its connection, which looks to a hostile client like any other close.
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    let report = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        report(info);
    }));
}

/// Runs the hostile threads and both well-behaved pairs side by side, the
/// pairs until the hostile threads are done.
fn run_side_by_side(addr: SocketAddr, login: Option<&Login>) -> (Tally, u64, u64) {
    let hostile_done = AtomicBool::new(false);
    thread::scope(|s| {
        let binary = s.spawn(|| binary_pair(addr, login, &hostile_done));
        let line = s.spawn(|| line_pair(addr, login, &hostile_done));
        let hostile: Vec<_> = SEEDS
            .iter()
            .map(|&seed| s.spawn(move || hostile_thread(addr, seed)))
            .collect();
        // All joined before any is unwrapped, so that the pairs are told to
        // stop even if a hostile thread panicked.
        let results: Vec<_> = hostile.into_iter().map(|h| h.join()).collect();
        hostile_done.store(true, Ordering::SeqCst);
        let mut tally = Tally::default();
        for result in results {
            tally.add(result.unwrap_or_else(|e| panic::resume_unwind(e)));
        }
        let binary = binary.join().unwrap_or_else(|e| panic::resume_unwind(e));
        let line = line.join().unwrap_or_else(|e| panic::resume_unwind(e));
        (tally, binary, line)
    })
}

#[test]
fn hostile_frames_of_both_protocols_leave_the_broker_serving_everyone_else() {
    fuzz(&fuzz_config(), None);
}

#[test]
fn hostile_frames_and_logins_leave_a_broker_with_an_auth_file_serving_everyone_else() {
    let users = users();
    let login = Login::new(GOOD_USER, GOOD_PASSWORD);
    fuzz(&fuzz_auth_config(&users), Some(login));
}

/// Runs the hostile threads against a broker started with `config`, side
/// by side with the well-behaved pairs, logged in as `login` if given, and
/// a bystander (an anonymous binary pair), and checks that everyone else
/// was served throughout and after.
fn fuzz(config: &Config, login: Option<Login>) {
    count_panics();
    let broker = start_broker(config);
    let addr = broker.local_addr();
    let mut bystander = Bystander::new(addr);

    let (tally, binary_messages, line_messages) = run_side_by_side(addr, login.as_ref());
    println!("hostile traffic: {tally:?}");
    println!("well-behaved pairs: {binary_messages} binary and {line_messages} line messages");
    assert_eq!(tally.connections, SEEDS.len() * CONNECTIONS_PER_THREAD);
    assert!(
        tally.frames >= MIN_FRAMES,
        "only {} hostile frames sent",
        tally.frames
    );

    // Clients old and new are served.
    bystander.check();
    Bystander::new(addr).check();
    assert_eq!(line_client(addr, login.as_ref()).ask("PING"), "+PONG");
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a thread panicked");
}
