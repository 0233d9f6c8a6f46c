//! The line protocol: a client whose first byte is not `0x00` speaks text on
//! the same port. Every command and its replies byte for byte, quoting of
//! topic names, binary-safe `PUBN`, pulls shared between connections,
//! interop with binary clients in both directions, and bad input of every
//! kind (with a binary [`Bystander`] proving the broker still serves others).
//!
//! Nothing here sleeps: every wait is a blocking read under a deadline.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Instant;

use brook::client::Publisher;
use brook::config::Config;
use brook::wire::request::StartAt;
use common::broker::{config, start_broker, timer_config};
use common::client::{
    expect_next_ack, expect_nothing, publish_all, publish_numbered, subscriber, Bystander,
};
use common::line::{Line, Msg};
use common::{QUIET, WAIT};

/// Sends `PUB <topic> <text>` and expects `+OK <offset>`.
fn pub_ok(client: &mut Line, topic: &str, text: &str, offset: u64) {
    assert_eq!(
        client.ask(&format!("PUB {topic} {text}")),
        format!("+OK {offset}")
    );
}

/// A connection that has subscribed with `SUB <args>`.
fn text_subscriber(addr: std::net::SocketAddr, args: &str) -> Line {
    let mut client = Line::connect(addr);
    assert_eq!(client.ask(&format!("SUB {args}")), "+OK");
    client
}

// ---- PUB, PUBN, SUB, UNSUB ----

#[test]
fn pub_replies_with_offsets_from_zero_per_topic_and_publishes_the_rest_of_the_line() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut client = Line::connect(addr);
    pub_ok(&mut client, "t", "zero", 0);
    pub_ok(&mut client, "t", "one", 1);
    pub_ok(&mut client, "u", "other topic", 0);
    // The text starts after the spaces that follow the topic; spaces inside
    // and at the end are kept.
    pub_ok(&mut client, "t", "  two  words  ", 2);
    client.send("PUB\tt\ttab separated\n");
    client.expect_line("+OK 3");

    let mut subscriber = text_subscriber(addr, "t beginning");
    subscriber.expect_msg("t", 0, b"zero");
    subscriber.expect_msg("t", 1, b"one");
    subscriber.expect_msg("t", 2, b"two  words  ");
    subscriber.expect_msg("t", 3, b"tab separated");
    subscriber.expect_silence(QUIET);
}

#[test]
fn pubn_payload_of_every_byte_value_arrives_byte_exact_over_text_and_binary() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let every_byte: Vec<u8> = (0..=255u8).collect();
    let payload = [&every_byte[..], b"\n\nPING\n\r\n\0", &every_byte[..]].concat();

    let mut client = Line::connect(addr);
    client.send(
        [
            format!("PUBN bin {}\n", payload.len()).as_bytes(),
            &payload,
            b"\n",
        ]
        .concat(),
    );
    client.expect_line("+OK 0");
    // `\r\n` after the payload, and the payload split across writes.
    let (head, tail) = payload.split_at(300);
    client.send([format!("PUBN bin {}\n", payload.len()).as_bytes(), head].concat());
    client.send([tail, b"\r\n"].concat());
    client.expect_line("+OK 1");
    assert_eq!(client.ask("PING"), "+PONG");

    let mut text = text_subscriber(addr, "bin beginning");
    text.expect_msg("bin", 0, &payload);
    text.expect_msg("bin", 1, &payload);

    let mut binary = subscriber(addr, &["bin"], StartAt::Beginning);
    expect_next_ack(&mut binary, "bin", &payload);
    expect_next_ack(&mut binary, "bin", &payload);
    expect_nothing(&mut binary, QUIET);
    assert_eq!(text.ask("PING"), "+PONG");
}

#[test]
fn sub_starts_at_current_by_default_or_at_beginning_or_from_an_offset() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut publisher = Line::connect(addr);
    for (offset, text) in ["m0", "m1", "m2"].into_iter().enumerate() {
        pub_ok(&mut publisher, "t", text, offset as u64);
    }
    let mut default = text_subscriber(addr, "t");
    let mut current = text_subscriber(addr, "t current");
    let mut beginning = text_subscriber(addr, "t beginning");
    let mut from = text_subscriber(addr, "t from 1");
    let mut ahead = text_subscriber(addr, "t from 4");
    beginning.expect_msg("t", 0, b"m0");
    beginning.expect_msg("t", 1, b"m1");
    beginning.expect_msg("t", 2, b"m2");
    from.expect_msg("t", 1, b"m1");
    from.expect_msg("t", 2, b"m2");

    pub_ok(&mut publisher, "t", "m3", 3);
    pub_ok(&mut publisher, "t", "m4", 4);
    for client in [&mut default, &mut current, &mut beginning, &mut from] {
        client.expect_msg("t", 3, b"m3");
        client.expect_msg("t", 4, b"m4");
    }
    // From an offset beyond the log waits for the log to reach it.
    ahead.expect_msg("t", 4, b"m4");
    assert_eq!(ahead.ask("PING"), "+PONG");
}

#[test]
fn unsub_replies_ok_and_stops_deliveries() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut publisher = Line::connect(addr);
    let mut client = text_subscriber(addr, "t");
    pub_ok(&mut publisher, "t", "before", 0);
    client.expect_msg("t", 0, b"before");
    assert_eq!(client.ask("UNSUB t"), "+OK");
    pub_ok(&mut publisher, "t", "after", 1);
    assert_eq!(client.ask("PING"), "+PONG");
    client.expect_silence(QUIET);
    // Naming a topic that is not subscribed is not an error.
    assert_eq!(client.ask("UNSUB never-subscribed"), "+OK");
}

// ---- Manual subscriptions: ACK, NACK, redelivery ----

/// The subscriptions of one connection take turns, one message each, however
/// often one of them was dropped and taken again while the window was full.
#[test]
fn unsub_and_sub_again_while_the_window_is_full_keep_the_turns_fair() {
    let config = Config {
        max_inflight: 1,
        ..config()
    };
    let broker = start_broker(&config);
    let addr = broker.local_addr();
    let mut publisher = Line::connect(addr);
    for i in 0..4 {
        pub_ok(&mut publisher, "a", &format!("a{i}"), i);
        pub_ok(&mut publisher, "b", &format!("b{i}"), i);
    }
    let mut client = text_subscriber(addr, "a beginning manual");
    client.expect_msg("a", 0, b"a0"); // the window is full now
    assert_eq!(client.ask("SUB b beginning manual"), "+OK");
    for _ in 0..3 {
        assert_eq!(client.ask("UNSUB b"), "+OK");
        assert_eq!(client.ask("SUB b beginning manual"), "+OK");
    }
    for (topic, offset) in [("a", 1), ("b", 0), ("a", 2), ("b", 1), ("a", 3), ("b", 2)] {
        client.send("ACK\n");
        client.expect_msg(topic, offset, format!("{topic}{offset}").as_bytes());
    }
}

#[test]
fn manual_nack_brings_the_message_again_after_the_ack_delay() {
    let config = timer_config();
    let broker = start_broker(&config);
    let addr = broker.local_addr();
    let mut client = text_subscriber(addr, "t beginning manual");
    pub_ok(&mut Line::connect(addr), "t", "again", 0);

    client.expect_msg("t", 0, b"again");
    client.send("NACK\n");
    let nacked = Instant::now();
    client.expect_msg("t", 0, b"again");
    assert!(
        nacked.elapsed() >= config.ack_delay,
        "redelivered {:?} after the NACK, before the ack delay",
        nacked.elapsed()
    );
    // ACK has no reply: the next line is the PONG.
    client.send("ACK\nPING\n");
    client.expect_line("+PONG");
    client.expect_silence(2 * config.ack_timeout);
    assert_eq!(client.ask("ACK"), "-ERR no delivery to acknowledge");
}

#[test]
fn manual_delivery_left_unanswered_comes_again_after_the_ack_timeout() {
    let config = timer_config();
    let broker = start_broker(&config);
    let addr = broker.local_addr();
    let mut client = text_subscriber(addr, "t manual");
    let published = Instant::now();
    pub_ok(&mut Line::connect(addr), "t", "unanswered", 0);

    client.expect_msg("t", 0, b"unanswered");
    client.expect_msg("t", 0, b"unanswered");
    assert!(
        published.elapsed() >= config.ack_timeout,
        "redelivered {:?} after publishing, before the ack timeout",
        published.elapsed()
    );
    // One (late) answer for the first delivery, one for the second.
    client.send("ACK\nACK\nPING\n");
    client.expect_line("+PONG");
    client.expect_silence(2 * config.ack_timeout);
    assert_eq!(client.ask("NACK"), "-ERR no delivery to acknowledge");
}

#[test]
fn answers_match_only_manual_deliveries_and_auto_ones_are_never_redelivered() {
    let config = timer_config();
    let broker = start_broker(&config);
    let addr = broker.local_addr();
    let mut client = Line::connect(addr);
    assert_eq!(client.ask("SUB auto"), "+OK");
    assert_eq!(client.ask("SUB man manual"), "+OK");
    let mut publisher = Line::connect(addr);
    pub_ok(&mut publisher, "auto", "a", 0);
    client.expect_msg("auto", 0, b"a");
    pub_ok(&mut publisher, "man", "m", 0);
    client.expect_msg("man", 0, b"m");

    // The NACK answers the manual delivery, not the automatic one before it.
    client.send("NACK\n");
    client.expect_msg("man", 0, b"m");
    client.send("ACK\n");
    assert_eq!(client.ask("ACK"), "-ERR no delivery to acknowledge");
    // The automatic delivery never had an answer and never comes again.
    client.expect_silence(3 * config.ack_timeout);
}

#[test]
fn a_manual_delivery_is_given_up_after_max_deliveries() {
    let config = Config {
        max_deliveries: 2,
        ..timer_config()
    };
    let broker = start_broker(&config);
    let addr = broker.local_addr();
    let mut client = text_subscriber(addr, "t manual");
    pub_ok(&mut Line::connect(addr), "t", "refused", 0);
    client.expect_msg("t", 0, b"refused");
    client.send("NACK\n");
    client.expect_msg("t", 0, b"refused");
    client.send("NACK\n");
    client.expect_silence(2 * config.ack_timeout);
    assert_eq!(client.ask("ACK"), "-ERR no delivery to acknowledge");
}

// ---- PULL ----

#[test]
fn pull_takes_each_message_once_across_connections() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut first = Line::connect(addr);
    let mut second = Line::connect(addr);
    for offset in 0..5 {
        pub_ok(&mut first, "t", &format!("m{offset}"), offset);
    }

    first.send("PULL t 2\n");
    let (msgs, count) = first.read_pull();
    assert_eq!(count, 2);
    assert_eq!(offsets_checked(&msgs, "t"), [0, 1]);

    // Without a max: the rest, up to the end of the log; replies to later
    // requests come after the `+END`.
    second.send("PULL t\nPING\n");
    let (msgs, count) = second.read_pull();
    assert_eq!(count, 3);
    assert_eq!(offsets_checked(&msgs, "t"), [2, 3, 4]);
    second.expect_line("+PONG");

    first.send("PULL t\n");
    assert_eq!(first.read_pull(), (vec![], 0));
    second.send("PULL t 10\n");
    assert_eq!(second.read_pull(), (vec![], 0));

    pub_ok(&mut first, "t", "m5", 5);
    first.send("PULL t 10\n");
    let (msgs, count) = first.read_pull();
    assert_eq!((offsets_checked(&msgs, "t"), count), (vec![5], 1));

    first.send("PULL no-such-topic\n");
    assert_eq!(first.read_pull(), (vec![], 0));
    first.send("PULL no-such-topic 3\n");
    assert_eq!(first.read_pull(), (vec![], 0));
}

/// The offsets of pulled `msgs`, after checking each is `m<offset>` on `topic`.
fn offsets_checked(msgs: &[Msg], topic: &str) -> Vec<u64> {
    for msg in msgs {
        assert_eq!(msg.topic, topic);
        assert_eq!(
            msg.payload,
            format!("m{}", msg.offset).as_bytes(),
            "{msg:?}"
        );
    }
    msgs.iter().map(|msg| msg.offset).collect()
}

#[test]
fn two_concurrent_pullers_split_a_backlog_exactly() {
    const BACKLOG: u32 = 10_000;
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    publish_numbered(addr, "backlog", 0..BACKLOG);

    let pullers: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                let mut client = Line::connect(addr);
                let mut offsets = Vec::new();
                loop {
                    client.send("PULL backlog 100\n");
                    let (msgs, count) = client.read_pull();
                    assert_eq!(msgs.len() as u64, count);
                    assert!(count <= 100, "+END {count} for PULL backlog 100");
                    if count == 0 {
                        return offsets;
                    }
                    offsets.extend(offsets_checked(&msgs, "backlog"));
                }
            })
        })
        .collect();

    let mut seen = BTreeSet::new();
    for puller in pullers {
        for offset in puller.join().expect("puller") {
            assert!(seen.insert(offset), "offset {offset} pulled twice");
        }
    }
    assert_eq!(seen, (0..u64::from(BACKLOG)).collect());
}

/// What `cat file | nc` does: writes requests as fast as it can and reads
/// the answers meanwhile. The broker keeps up or slows the writer down, and
/// answers every one.
#[test]
fn a_pipelining_publisher_gets_every_confirmation_in_order() {
    const MESSAGES: usize = 100_000;
    let broker = start_broker(&config());
    let stream = TcpStream::connect(broker.local_addr()).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let publishing = std::thread::spawn(move || {
        let lines: String = (0..MESSAGES).map(|i| format!("PUB fast m{i}\n")).collect();
        writer.write_all(lines.as_bytes()).unwrap();
        writer.write_all(b"QUIT\n").unwrap();
    });
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut replies = BufReader::new(stream).lines();
    for offset in 0..MESSAGES {
        let reply = replies.next().expect("a reply").expect("read");
        assert_eq!(reply, format!("+OK {offset}"));
    }
    assert_eq!(replies.next().expect("+BYE").expect("read"), "+BYE");
    assert!(replies.next().is_none(), "the connection closes after +BYE");
    publishing.join().unwrap();
}

#[test]
fn a_pull_longer_than_the_window_arrives_whole_after_the_client_closes_or_quits() {
    // Far more than one window (1024 frames) of deliveries: the pull is
    // still streaming when the broker reads the end of the client's stream.
    const BACKLOG: u32 = 5_000;
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    publish_numbered(addr, "long", 0..BACKLOG);

    let mut closer = Line::connect(addr);
    closer.send("PULL long 3000\n");
    closer.close_write();
    let (msgs, count) = closer.read_pull();
    assert_eq!((msgs.len(), count), (3000, 3000));
    assert_eq!(
        offsets_checked(&msgs, "long"),
        (0..3000).collect::<Vec<_>>()
    );
    closer.expect_eof();

    let mut quitter = Line::connect(addr);
    quitter.send("PULL long\nPING\nQUIT\n");
    let (msgs, count) = quitter.read_pull();
    assert_eq!((msgs.len(), count), (2000, 2000));
    assert_eq!(
        offsets_checked(&msgs, "long"),
        (3000..5000).collect::<Vec<_>>()
    );
    quitter.expect_line("+PONG");
    quitter.expect_line("+BYE");
    quitter.expect_eof();
}

// ---- TOPICS, STATS, PING, HELP, QUIT ----

#[test]
fn topics_lists_each_topic_with_its_offsets_and_subscribers() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut client = Line::connect(addr);
    for offset in 0..3 {
        pub_ok(&mut client, "a", "x", offset);
    }
    pub_ok(&mut client, "\"b c\"", "y", 0);
    let _subscriber = text_subscriber(addr, "a");

    client.send("TOPICS\n");
    let topics: BTreeSet<String> = client.read_until_end().into_iter().collect();
    let expected: BTreeSet<String> = [
        "+TOPIC a messages=3 first=0 next=3 subscribers=1",
        "+TOPIC \"b c\" messages=1 first=0 next=1 subscribers=0",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(topics, expected);
}

#[derive(Debug, Default)]
struct Stats {
    /// Broker-wide `+STAT <name> <value>` lines.
    broker: HashMap<String, String>,
    /// `+STAT topic <topic> <name>=<value> ...`, by the topic as written.
    topics: HashMap<String, HashMap<String, u64>>,
}

impl Stats {
    fn get(&self, name: &str) -> u64 {
        let value = self
            .broker
            .get(name)
            .unwrap_or_else(|| panic!("no {name}: {self:?}"));
        value.parse().unwrap_or_else(|_| panic!("{name} {value:?}"))
    }

    fn topic(&self, topic: &str, name: &str) -> u64 {
        match self
            .topics
            .get(topic)
            .and_then(|counters| counters.get(name))
        {
            Some(value) => *value,
            None => panic!("no {name} for topic {topic}: {self:?}"),
        }
    }
}

fn stats(client: &mut Line) -> Stats {
    client.send("STATS\n");
    let mut stats = Stats::default();
    for line in client.read_until_end() {
        if let Some(rest) = line.strip_prefix("+STAT topic ") {
            let mut fields = rest.rsplitn(6, ' ');
            let counters: HashMap<String, u64> = (0..5)
                .map(|_| {
                    let field = fields.next().unwrap_or_else(|| panic!("{line:?}"));
                    let (name, value) = field.split_once('=').unwrap_or_else(|| panic!("{line:?}"));
                    (
                        name.to_owned(),
                        value.parse().unwrap_or_else(|_| panic!("{line:?}")),
                    )
                })
                .collect();
            let topic = fields.next().unwrap_or_else(|| panic!("{line:?}"));
            stats.topics.insert(topic.to_owned(), counters);
        } else if let Some((name, value)) =
            line.strip_prefix("+STAT ").and_then(|r| r.split_once(' '))
        {
            stats.broker.insert(name.to_owned(), value.to_owned());
        } else {
            panic!("unexpected STATS line {line:?}");
        }
    }
    stats
}

/// Asks for STATS until `done` holds (counters written by other threads may
/// lag the bytes a client has read), failing after [`WAIT`].
fn stats_until(client: &mut Line, done: impl Fn(&Stats) -> bool) -> Stats {
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = stats(client);
        if done(&stats) {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "STATS never got there: {stats:?}"
        );
    }
}

#[test]
fn stats_counts_connections_topics_messages_and_bytes() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut publisher = Line::connect(addr);
    let mut watcher = Line::connect(addr);
    let before = stats(&mut watcher);
    let names: BTreeSet<&str> = before.broker.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = [
        "incarnation",
        "uptime_seconds",
        "connections",
        "topics",
        "subscriptions",
        "pattern_subscriptions",
        "messages_in",
        "messages_out",
        "bytes_in",
        "bytes_out",
        "publishes_refused_disk_full",
        "publishes_refused_memory_full",
        "dead_letters_not_stored",
        "memory_used",
        "memory_budget",
        "publishers_waiting",
        "records_unreadable",
    ]
    .into();
    assert_eq!(names, expected);
    assert!(before.broker["uptime_seconds"].parse::<f64>().is_ok());
    assert!(before.get("connections") >= 1);
    assert_eq!((before.get("topics"), before.get("messages_in")), (0, 0));
    assert!(before.topics.is_empty(), "{before:?}");

    for offset in 0..3 {
        pub_ok(&mut publisher, "t", "abc", offset);
    }
    let mut subscriber = text_subscriber(addr, "t beginning");
    for offset in 0..3 {
        subscriber.expect_msg("t", offset, b"abc");
    }
    let after = stats_until(&mut watcher, |s| s.get("messages_out") >= 3);
    assert!(after.get("connections") >= 3);
    assert_eq!(after.get("topics"), 1);
    assert_eq!(after.get("subscriptions"), 1);
    assert_eq!(after.get("messages_in"), 3);
    assert_eq!(after.get("messages_out"), 3);
    assert!(after.get("bytes_in") >= 9 && after.get("bytes_out") >= 9);
    // The in-memory store holds the three messages within its budget, a
    // quarter of the machine's memory, and nobody waits for room.
    assert!(after.get("memory_used") >= 9);
    assert!(after.get("memory_budget") > after.get("memory_used"));
    assert_eq!(after.get("publishers_waiting"), 0);
    let t = |name| after.topic("t", name);
    assert_eq!(
        [
            t("messages_in"),
            t("messages_out"),
            t("bytes_in"),
            t("bytes_out"),
            t("subscribers")
        ],
        [3, 3, 9, 9, 1]
    );

    // Pulls count as deliveries too.
    watcher.send("PULL t\n");
    assert_eq!(watcher.read_pull().1, 3);
    let pulled = stats_until(&mut watcher, |s| s.topic("t", "messages_out") >= 6);
    assert_eq!(pulled.get("messages_out"), 6);
    assert_eq!(
        [
            pulled.topic("t", "messages_out"),
            pulled.topic("t", "bytes_out")
        ],
        [6, 18]
    );
    assert_eq!(pulled.topic("t", "messages_in"), 3);

    // A subscriber that leaves is forgotten.
    drop(subscriber);
    let gone = stats_until(&mut watcher, |s| s.get("subscriptions") == 0);
    assert_eq!(gone.topic("t", "subscribers"), 0);
}

#[test]
fn ping_help_and_quit() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut client = Line::connect(addr);
    assert_eq!(client.ask("PING"), "+PONG");

    client.send("HELP\n");
    let help = client.read_until_end();
    assert!(help.iter().all(|line| line.starts_with('+')), "{help:#?}");
    for command in [
        "AUTH", "PUB", "PUBN", "SUB", "UNSUB", "ACK", "NACK", "PULL", "TOPICS", "STATS", "PING",
        "HELP", "QUIT",
    ] {
        let mentioned = help.iter().any(|line| {
            line.split(|c: char| !c.is_ascii_alphanumeric())
                .any(|word| word.eq_ignore_ascii_case(command))
        });
        assert!(mentioned, "HELP does not mention {command}: {help:#?}");
    }
    assert_eq!(client.ask("PING"), "+PONG");

    client.send("QUIT\n");
    client.expect_line("+BYE");
    client.expect_eof();

    // Nothing after QUIT is answered.
    let mut client = Line::connect(addr);
    client.send("QUIT\nPING\n");
    client.expect_line("+BYE");
    client.expect_eof();
}

#[test]
fn commands_and_keywords_are_case_insensitive() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut client = Line::connect(addr);
    assert_eq!(client.ask("pub t hello"), "+OK 0");
    assert_eq!(client.ask("Sub t Beginning"), "+OK");
    client.expect_msg("t", 0, b"hello");
    assert_eq!(client.ask("uNsUb t"), "+OK");
    client.send("pubn t 2\nhi\n");
    client.expect_line("+OK 1");
    assert_eq!(client.ask("PiNg"), "+PONG");
    client.send("pull t 1\n");
    let (msgs, count) = client.read_pull();
    assert_eq!(
        (offsets_and_texts(&msgs), count),
        (vec![(0, "hello".into())], 1)
    );
    client.send("topics\n");
    assert_eq!(
        client.read_until_end(),
        ["+TOPIC t messages=2 first=0 next=2 subscribers=0"]
    );
    client.send("stats\n");
    assert!(!client.read_until_end().is_empty());
    client.send("help\n");
    assert!(!client.read_until_end().is_empty());

    assert_eq!(client.ask("sub u FROM 0 MANUAL"), "+OK");
    pub_ok(&mut Line::connect(addr), "u", "x", 0);
    client.expect_msg("u", 0, b"x");
    client.send("nack\n");
    client.expect_msg("u", 0, b"x");
    client.send("ack\nping\n");
    client.expect_line("+PONG");

    client.send("Quit\n");
    client.expect_line("+BYE");
    client.expect_eof();
}

fn offsets_and_texts(msgs: &[Msg]) -> Vec<(u64, String)> {
    msgs.iter()
        .map(|msg| {
            (
                msg.offset,
                String::from_utf8_lossy(&msg.payload).into_owned(),
            )
        })
        .collect()
}

#[test]
fn crlf_line_endings_work_and_empty_lines_are_ignored() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut client = Line::connect(addr);
    client.send("\r\n\n   \n\t \t\r\n \r\nPING\r\n");
    client.expect_line("+PONG");
    client.send("PUB t crlf\r\n");
    client.expect_line("+OK 0");
    client.send("PUB t  two  words \r\n\r\n");
    client.expect_line("+OK 1");
    client.send("PUBN t 3\r\nraw\r\n");
    client.expect_line("+OK 2");
    client.send("SUB t beginning\r\n");
    client.expect_line("+OK");
    client.expect_msg("t", 0, b"crlf");
    client.expect_msg("t", 1, b"two  words ");
    client.expect_msg("t", 2, b"raw");
    client.send("\n\r\n");
    client.expect_silence(QUIET);
}

#[test]
fn commands_and_payloads_sent_one_byte_at_a_time_work() {
    let broker = start_broker(&config());
    let mut client = Line::connect(broker.local_addr());
    let bytes = b"PUBN t 3\na\nb\r\nPUB t x\r\nPING\nSUB t beginning\n";
    for byte in bytes {
        client.send([*byte]);
    }
    client.expect_line("+OK 0");
    client.expect_line("+OK 1");
    client.expect_line("+PONG");
    client.expect_line("+OK");
    client.expect_msg("t", 0, b"a\nb");
    client.expect_msg("t", 1, b"x");
}

// ---- Interop with binary clients, and quoted topic names ----

#[test]
fn a_text_publisher_reaches_binary_subscribers() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut binary = subscriber(addr, &["t", "my topic"], StartAt::Current);
    let mut client = Line::connect(addr);
    pub_ok(&mut client, "t", "hello binary", 0);
    expect_next_ack(&mut binary, "t", b"hello binary");
    pub_ok(&mut client, "\"my topic\"", "spaced out", 0);
    expect_next_ack(&mut binary, "my topic", b"spaced out");
    expect_nothing(&mut binary, QUIET);
}

#[test]
fn a_binary_publisher_reaches_text_subscribers_with_topics_written_quoted() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut client = Line::connect(addr);
    assert_eq!(client.ask("SUB t"), "+OK");
    assert_eq!(client.ask("SUB \"my topic\""), "+OK");
    assert_eq!(client.ask(r#"SUB "tab\there\nand \"quote\" \\""#), "+OK");

    let mut publisher = Publisher::connect(addr).unwrap();
    publisher.publish("t", b"from binary").unwrap();
    publisher.publish("my topic", b"with a space").unwrap();
    publisher
        .publish("tab\there\nand \"quote\" \\", b"escaped")
        .unwrap();
    publisher.flush().unwrap();

    // Topics may interleave: compare as a set.
    let got: BTreeSet<(String, u64, Vec<u8>)> = (0..3)
        .map(|_| client.read_msg())
        .map(|msg| (msg.topic, msg.offset, msg.payload))
        .collect();
    let expected: BTreeSet<(String, u64, Vec<u8>)> = [
        ("t", &b"from binary"[..]),
        ("\"my topic\"", b"with a space"),
        (r#""tab\there\nand \"quote\" \\""#, b"escaped"),
    ]
    .into_iter()
    .map(|(topic, payload)| (topic.to_owned(), 0, payload.to_vec()))
    .collect();
    assert_eq!(got, expected);
}

#[test]
fn quoted_topics_round_trip_and_are_written_back_canonically() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut publisher = Line::connect(addr);
    let mut client = Line::connect(addr);
    // (topic as sent, topic as the broker writes it, the name itself)
    let cases = [
        ("\"my topic\"", "\"my topic\"", "my topic"),
        (
            r#""say \"hi\" \\ now""#,
            r#""say \"hi\" \\ now""#,
            "say \"hi\" \\ now",
        ),
        // A bare word may hold a quote after its first character.
        ("a\"b", "\"a\\\"b\"", "a\"b"),
        // Quotes that were not needed are not written.
        ("\"plain\"", "plain", "plain"),
        ("\"\"", "\"\"", ""),
        ("café", "café", "café"),
        (r#""c\tl\nr\r\0z""#, r#""c\tl\nr\r\0z""#, "c\tl\nr\r\0z"),
    ];
    for (sent, written, name) in cases {
        pub_ok(&mut publisher, sent, "hi", 0);
        assert_eq!(
            client.ask(&format!("SUB {sent} beginning")),
            "+OK",
            "{sent}"
        );
        client.expect_msg(written, 0, b"hi");
        assert_eq!(client.ask(&format!("UNSUB {sent}")), "+OK");
        let mut binary = subscriber(addr, &[name], StartAt::Beginning);
        expect_next_ack(&mut binary, name, b"hi");
    }
    // The same name, bare and quoted, is one topic.
    pub_ok(&mut publisher, "plain", "again", 1);
    assert_eq!(client.ask("PING"), "+PONG");
}

// ---- Bad input ----

#[test]
fn bad_commands_get_an_error_and_the_connection_keeps_working() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut bystander = Bystander::new(addr);
    let mut client = Line::connect(addr);
    let long_topic = "a".repeat(65_536);
    let cases: Vec<(String, &str)> = [
        ("FROB t", "unknown command 'FROB' (try HELP)"),
        ("PUBLISH t x", "unknown command 'PUBLISH' (try HELP)"),
        ("PUB", "missing topic"),
        ("PUB t", "missing message"),
        ("PUBN", "missing topic"),
        ("PUBN t", "missing byte count"),
        ("PUBN t x", "bad byte count"),
        ("PUBN t -1", "bad byte count"),
        ("SUB", "missing topic"),
        ("SUB t from", "missing offset"),
        ("SUB t from x", "bad offset"),
        ("SUB t from -1", "bad offset"),
        ("SUB t from 18446744073709551616", "bad offset"),
        ("SUB t sideways", "bad start position"),
        ("SUB t current manual x", "unexpected argument"),
        ("SUB t group", "missing group name"),
        ("SUB t manual group \"\"", "invalid group name"),
        ("PULL t 5 group \"\"", "invalid group name"),
        ("UNSUB", "missing topic"),
        ("UNSUB t x", "unexpected argument"),
        ("PULL", "missing topic"),
        ("PULL t x", "bad count"),
        ("PULL t -1", "bad count"),
        ("PULL t 1 2", "unexpected argument"),
        ("PING x", "unexpected argument"),
        ("TOPICS x", "unexpected argument"),
        ("ACK x", "unexpected argument"),
        ("ACK", "no delivery to acknowledge"),
        ("NACK", "no delivery to acknowledge"),
        ("SUB \"t", "unterminated quote"),
        ("PUB \"my topic hi", "unterminated quote"),
        ("PUB \"q\"x y", "text after a closing quote"),
    ]
    .into_iter()
    .map(|(line, error)| (line.to_owned(), error))
    .chain([
        // A long unknown command is echoed by its first 32 characters.
        (
            format!("{long_topic} x"),
            "unknown command 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...' (try HELP)",
        ),
        (format!("SUB {long_topic}"), "topic name too long"),
        (format!("PUB {long_topic} x"), "topic name too long"),
        (format!("SUB t group {long_topic}"), "invalid group name"),
    ])
    .collect();
    for (line, error) in &cases {
        let shown = &line[..line.len().min(40)];
        assert_eq!(client.ask(line), format!("-ERR {error}"), "for {shown:?}");
        assert_eq!(client.ask("PING"), "+PONG", "after {shown:?}");
    }
    // None of the refused commands stored or subscribed anything.
    pub_ok(&mut Line::connect(addr), "t", "first", 0);
    client.expect_silence(QUIET);
    bystander.check();
}

#[test]
fn pubn_errors_skip_what_they_must_and_keep_the_stream_aligned() {
    let config = Config {
        max_message_bytes: 64,
        ..config()
    };
    let broker = start_broker(&config);
    let addr = broker.local_addr();
    let mut bystander = Bystander::new(addr);
    let mut client = Line::connect(addr);

    // Above the limit: refused, and the payload (which looks like commands)
    // and its newline are skipped.
    let payload = "PUB t x\n".repeat(9);
    client.send(format!("PUBN t {}\n{payload}\n", payload.len()));
    client.expect_line("-ERR message too large");
    assert_eq!(client.ask("PING"), "+PONG");
    // A PUB line over the limit is refused too.
    assert_eq!(
        client.ask(&format!("PUB t {}", "x".repeat(65))),
        "-ERR message too large"
    );
    assert_eq!(client.ask("PING"), "+PONG");

    // Zero bytes: refused, and the newline that follows is consumed.
    client.send("PUBN t 0\n\n");
    client.expect_line("-ERR empty message");
    client.send("PUBN t 0\r\n\r\nPING\n");
    client.expect_line("-ERR empty message");
    client.expect_line("+PONG");

    // Any refusal once the byte count is known skips the payload too.
    let payload = "PUB t x\n";
    client.send(format!("PUBN t {} extra\n{payload}\n", payload.len()));
    client.expect_line("-ERR unexpected argument");
    assert_eq!(client.ask("PING"), "+PONG");

    // A payload not followed by a newline: not stored, and parsing resumes
    // at the byte after the payload.
    client.send("PUBN t 3\nabcPING\n");
    client.expect_line("-ERR payload not followed by a newline");
    client.expect_line("+PONG");

    // Nothing was stored so far: the limit itself is accepted, at offset 0.
    client.send(format!("PUBN t 64\n{}\n", "y".repeat(64)));
    client.expect_line("+OK 0");
    let mut subscriber = text_subscriber(addr, "t beginning");
    subscriber.expect_msg("t", 0, "y".repeat(64).as_bytes());
    subscriber.expect_silence(QUIET);
    bystander.check();
}

#[test]
fn a_line_too_long_is_refused_before_its_newline_and_the_rest_dropped() {
    let config = Config {
        max_line_bytes: 1024,
        ..config()
    };
    let broker = start_broker(&config);
    let addr = broker.local_addr();
    let mut bystander = Bystander::new(addr);
    let mut client = Line::connect(addr);

    client.send(format!("PUB t {}", "a".repeat(2000)));
    client.expect_line("-ERR line too long");
    // The rest of the line, however long, is dropped; parsing resumes after
    // its newline, with no second error.
    client.send("a".repeat(300_000));
    client.send("a\nPING\n");
    client.expect_line("+PONG");

    // Passing the limit a little at a time.
    for _ in 0..11 {
        client.send("b".repeat(100));
    }
    client.expect_line("-ERR line too long");
    client.send("\n");
    assert_eq!(client.ask("PING"), "+PONG");

    // Nothing was stored; a line under the limit works, and a PUBN payload
    // is not a line, so it may be longer.
    pub_ok(&mut client, "t", &"c".repeat(900), 0);
    let payload = "d".repeat(4096);
    client.send(format!("PUBN t {}\n{payload}\n", payload.len()));
    client.expect_line("+OK 1");
    client.send("PULL t\n");
    let (msgs, count) = client.read_pull();
    assert_eq!(count, 2);
    assert_eq!(msgs[0].payload, "c".repeat(900).as_bytes());
    assert_eq!(msgs[1].payload, payload.as_bytes());
    bystander.check();
}

#[test]
fn binary_data_on_a_text_connection_gets_an_error_and_the_connection_closes() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut bystander = Bystander::new(addr);
    let garbage: [&[u8]; 4] = [
        b"PU\0B t x\n",
        b"PUB t caf\xe9 au lait\n",
        b"\xff\xfe\xfd\n",
        b"PUB t \xc3\x28\n",
    ];
    for bytes in garbage {
        let mut client = Line::connect(addr);
        // Text first, so the connection is a text one whatever follows.
        client.send([&b"PING\n"[..], bytes, b"PING\n"].concat());
        client.expect_line("+PONG");
        client.expect_line("-ERR binary data on a text connection");
        client.expect_eof();
    }
    // A first byte other than 0x00 makes a text connection, even a byte that
    // is not text.
    let mut client = Line::connect(addr);
    client.send(b"\x01\0\xff\n");
    client.expect_line("-ERR binary data on a text connection");
    client.expect_eof();
    // None of it was stored.
    pub_ok(&mut Line::connect(addr), "t", "clean", 0);
    bystander.check();
}

// ---- Flow ----

#[test]
fn a_text_subscriber_reads_a_backlog_of_5000_in_order() {
    const BACKLOG: usize = 5_000;
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let payloads: Vec<String> = (0..BACKLOG).map(|i| format!("{i:0>200}")).collect();
    let messages: Vec<(&str, &[u8])> = payloads.iter().map(|p| ("big", p.as_bytes())).collect();
    publish_all(addr, &messages);

    let mut client = text_subscriber(addr, "big beginning");
    for (offset, payload) in payloads.iter().enumerate() {
        client.expect_msg("big", offset as u64, payload.as_bytes());
    }
    assert_eq!(client.ask("PING"), "+PONG");
}
