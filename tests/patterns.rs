//! Topic patterns (NATS's `orders.*`, `orders.>`), over real TCP, in both
//! protocols: a publish to a name with a `*` or `>` token is refused and
//! nothing is stored; a plain subscribe to a pattern covers the matching
//! topics that exist and those created later, each message once, and an
//! unsubscribe of the pattern ends that; a pattern from an offset is
//! refused, in a group too; an invalid pattern gets its own error, in a
//! group or a pull too; names where `*` or
//! `>` is only part of a token are exact names and work as any other.
//! After every refusal the connection goes on. On disk, a new pattern
//! subscription's `+OK` comes before anything it sends, even when a topic
//! the connection subscribed to before is written as the pattern's
//! topics are matched. Nothing sleeps: each wait
//! is a read with a deadline, and what must not arrive is shown missing by
//! a later message that arrives in its place.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Instant;

use brook::config::{Config, Storage};
use common::broker::{config, start_broker};
use common::frames::{
    error_reply, from_u16, group_subscribe_request, publish_frame, subscribe_request,
    unsubscribe_request, ACK, BEGINNING, CURRENT, PUBLISH, SUBSCRIBED, UNSUBSCRIBED,
};
use common::line::Line;
use common::raw::{raw_subscriber, Raw};
use common::temp::TempDir;
use common::WAIT;

/// What a publish to a wildcard name is refused with, in both protocols.
const PUBLISH_REFUSED: &str = "cannot publish to a name with a '*' or '>' token: \
     those are wildcards in a subscription; publish to an exact topic name";

/// What a subscription to `pattern` from an offset is refused with.
fn from_offset_refused(pattern: &str) -> String {
    format!(
        "{pattern:?} is a pattern, and offsets are per topic: subscribe to a pattern \
         from the beginning or current, or to one topic from an offset"
    )
}

/// The confirmed publish action, brook's extension.
const PUBLISH_CONFIRMED: [u8; 2] = [0, 6];
/// The Published status, followed by the message's `u64` offset.
const PUBLISHED: [u8; 2] = [0, 4];

/// The `+TOPIC` lines of a `TOPICS` reply.
fn topics(addr: SocketAddr) -> Vec<String> {
    let mut client = Line::connect(addr);
    client.send("TOPICS\n");
    client.read_until_end()
}

#[test]
fn a_line_publish_to_a_wildcard_name_is_refused_and_nothing_is_stored() {
    let broker = start_broker(&config());
    let mut line = Line::connect(broker.local_addr());
    for command in [
        "PUB orders.* lost",
        "PUB orders.> lost",
        "PUB * lost",
        "PUB a.>.b lost",
    ] {
        assert_eq!(
            line.ask(command),
            format!("-ERR {PUBLISH_REFUSED}"),
            "{command}"
        );
    }
    // A refused PUBN's payload is skipped, not read as a command.
    line.send("PUBN >.x 4\nPING\n");
    line.expect_line(&format!("-ERR {PUBLISH_REFUSED}"));
    assert_eq!(line.ask("PING"), "+PONG");
    assert_eq!(topics(broker.local_addr()), Vec::<String>::new());
    assert_eq!(line.ask("PUB orders.eu kept"), "+OK 0");
}

#[test]
fn a_binary_publish_to_a_wildcard_name_gets_an_error_and_the_publisher_goes_on() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut subscriber = Line::connect(addr);
    assert_eq!(subscriber.ask("SUB orders.eu"), "+OK");

    let mut publisher = Raw::connect(addr);
    publisher.send(&PUBLISH);
    publisher.send(&publish_frame("orders.*", b"lost"));
    publisher.expect_error(PUBLISH_REFUSED);
    publisher.send(&publish_frame("orders.eu", b"kept"));
    subscriber.expect_msg("orders.eu", 0, b"kept");

    let mut confirmed = Raw::connect(addr);
    confirmed.send(&PUBLISH_CONFIRMED);
    confirmed.send(&publish_frame("orders.>", b"lost"));
    confirmed.expect_error(PUBLISH_REFUSED);
    confirmed.send(&publish_frame("orders.eu", b"also kept"));
    confirmed.expect(&[&PUBLISHED[..], &1u64.to_be_bytes()].concat());
    subscriber.expect_msg("orders.eu", 1, b"also kept");

    let listed = topics(addr);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(listed[0].starts_with("+TOPIC orders.eu "), "{listed:?}");
}

#[test]
fn a_line_pattern_from_an_offset_is_refused_and_so_is_an_invalid_pattern() {
    let broker = start_broker(&config());
    let mut line = Line::connect(broker.local_addr());
    let refused = [
        ("SUB * from 2 group workers", from_offset_refused("*")),
        ("SUB orders.* from 3", from_offset_refused("orders.*")),
        (
            "SUB orders.> from 0 manual",
            from_offset_refused("orders.>"),
        ),
    ];
    for (command, reason) in refused {
        assert_eq!(line.ask(command), format!("-ERR {reason}"), "{command}");
    }
    assert_eq!(
        line.ask("SUB orders.>.eu"),
        "-ERR invalid pattern \"orders.>.eu\": '>' may only be the last token (orders.> is valid)"
    );
    assert_eq!(
        line.ask("PULL orders.>.eu 10 group workers"),
        "-ERR invalid pattern \"orders.>.eu\": '>' may only be the last token (orders.> is valid)"
    );
    assert_eq!(
        line.ask("UNSUB orders..*"),
        "-ERR invalid pattern \"orders..*\": a pattern may not have an empty token \
         (two dots in a row, or a dot first or last)"
    );
    assert_eq!(line.ask("PING"), "+PONG");
    assert_eq!(topics(broker.local_addr()), Vec::<String>::new());
    assert_eq!(line.stat("pattern_subscriptions"), 0);
}

#[test]
fn a_refused_binary_subscription_subscribes_nothing_and_the_connection_goes_on() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut subscriber = Raw::connect(addr);
    subscriber.send(&group_subscribe_request(
        "g",
        r#"["orders.eu","orders.>.eu"]"#,
    ));
    subscriber.expect_error(
        "invalid pattern \"orders.>.eu\": '>' may only be the last token (orders.> is valid)",
    );
    subscriber.send(&subscribe_request(
        r#"["orders.eu","orders.*"]"#,
        &from_u16(1),
    ));
    subscriber.expect_error(&from_offset_refused("orders.*"));
    subscriber.send(&unsubscribe_request(r#"["a.>.b"]"#));
    subscriber.expect(&error_reply(
        "invalid pattern \"a.>.b\": '>' may only be the last token (orders.> is valid)",
    ));
    // Not even the exact name in the refused lists was subscribed to.
    assert_eq!(topics(addr), Vec::<String>::new());

    // The connection goes on, and subscribes by name.
    subscriber.send(&subscribe_request(r#"["orders.eu"]"#, &BEGINNING));
    subscriber.expect(&SUBSCRIBED);
    let mut publisher = Line::connect(addr);
    assert_eq!(publisher.ask("PUB orders.eu hello"), "+OK 0");
    subscriber.expect_delivery("orders.eu", b"hello");
}

#[test]
fn names_where_a_wildcard_is_only_part_of_a_token_are_exact_names() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let names = ["a*", "orders.>x", "*a.b", "a..b", "commandes.été*"];
    let json = format!("[{}]", names.map(|name| format!("{name:?}")).join(","));
    let mut binary = raw_subscriber(addr, &json);
    let mut line = Line::connect(addr);
    for name in names {
        assert_eq!(line.ask(&format!("SUB {name} manual")), "+OK", "{name}");
    }
    let mut publisher = Raw::connect(addr);
    publisher.send(&PUBLISH);
    for name in names {
        publisher.send(&publish_frame(name, name.as_bytes()));
        binary.expect_delivery(name, name.as_bytes());
        line.expect_msg(name, 0, name.as_bytes());
        line.send("ACK\n");
    }
    let mut line_publisher = Line::connect(addr);
    assert_eq!(line_publisher.ask("PUB a* again"), "+OK 1");
    line.expect_msg("a*", 1, b"again");
    assert_eq!(topics(addr).len(), names.len());
}

// ---- Pattern subscriptions. ----

/// The next `count` messages of `line`, as `(topic, offset, payload)`: a
/// set, since no order is promised across topics.
fn read_msgs(line: &mut Line, count: usize) -> BTreeSet<(String, u64, String)> {
    (0..count)
        .map(|_| {
            let msg = line.read_msg();
            let payload = String::from_utf8(msg.payload).unwrap();
            (msg.topic, msg.offset, payload)
        })
        .collect()
}

/// The set `read_msgs` returns for these messages.
fn msgs(expected: &[(&str, u64, &str)]) -> BTreeSet<(String, u64, String)> {
    expected
        .iter()
        .map(|&(topic, offset, payload)| (topic.to_owned(), offset, payload.to_owned()))
        .collect()
}

#[test]
fn a_pattern_covers_the_matching_topics_that_exist_and_those_created_later() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut publisher = Line::connect(addr);
    assert_eq!(publisher.ask("PUB orders.eu a"), "+OK 0");
    assert_eq!(publisher.ask("PUB orders.us b"), "+OK 0");
    assert_eq!(publisher.ask("PUB refunds.eu c"), "+OK 0");

    let mut subscriber = Line::connect(addr);
    assert_eq!(subscriber.ask("SUB orders.* beginning"), "+OK");
    assert_eq!(
        read_msgs(&mut subscriber, 2),
        msgs(&[("orders.eu", 0, "a"), ("orders.us", 0, "b")])
    );
    // A topic created later is covered from its first message, whoever
    // creates it: a publish, or another client's subscribe.
    assert_eq!(publisher.ask("PUB orders.asia d"), "+OK 0");
    subscriber.expect_msg("orders.asia", 0, b"d");
    let mut other = Line::connect(addr);
    assert_eq!(other.ask("SUB orders.africa current"), "+OK");
    assert_eq!(publisher.ask("PUB orders.africa e"), "+OK 0");
    subscriber.expect_msg("orders.africa", 0, b"e");
    // What the pattern does not match never arrives: the next message is
    // the one published after it.
    assert_eq!(publisher.ask("PUB refunds.eu c2"), "+OK 1");
    assert_eq!(publisher.ask("PUB orders.eu f"), "+OK 1");
    subscriber.expect_msg("orders.eu", 1, b"f");
    assert_eq!(publisher.stat("pattern_subscriptions"), 1);
}

#[test]
fn current_skips_what_the_matching_topics_hold_but_not_the_start_of_a_new_topic() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut publisher = Line::connect(addr);
    assert_eq!(publisher.ask("PUB orders.eu old"), "+OK 0");

    let mut subscriber = Line::connect(addr);
    assert_eq!(subscriber.ask("SUB orders.* current"), "+OK");
    assert_eq!(publisher.ask("PUB orders.eu new"), "+OK 1");
    subscriber.expect_msg("orders.eu", 1, b"new");
    assert_eq!(publisher.ask("PUB orders.us first"), "+OK 0");
    subscriber.expect_msg("orders.us", 0, b"first");
}

#[test]
fn a_topic_covered_twice_on_one_connection_is_delivered_once() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    // By name then by pattern, by pattern then by name, by two patterns.
    let orders = [
        ["SUB orders.eu", "SUB orders.*"],
        ["SUB orders.* beginning", "SUB orders.eu beginning"],
        ["SUB orders.>", "SUB orders.*"],
    ];
    let mut subscribers: Vec<Line> = orders
        .iter()
        .map(|commands| {
            let mut subscriber = Line::connect(addr);
            for command in commands {
                assert_eq!(subscriber.ask(command), "+OK", "{command}");
            }
            subscriber
        })
        .collect();
    let mut publisher = Line::connect(addr);
    assert_eq!(publisher.ask("PUB orders.eu x"), "+OK 0");
    assert_eq!(publisher.ask("PUB orders.eu y"), "+OK 1");
    for subscriber in &mut subscribers {
        subscriber.expect_msg("orders.eu", 0, b"x");
        subscriber.expect_msg("orders.eu", 1, b"y");
    }
}

#[test]
fn a_star_matches_one_token_and_a_last_chevron_matches_the_rest() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut one = Line::connect(addr);
    assert_eq!(one.ask("SUB orders.*"), "+OK");
    let mut rest = Line::connect(addr);
    assert_eq!(rest.ask("SUB orders.>"), "+OK");
    let mut publisher = Line::connect(addr);
    assert_eq!(publisher.ask("PUB orders.eu.paid deep"), "+OK 0");
    assert_eq!(publisher.ask("PUB orders shallowest"), "+OK 0");
    assert_eq!(publisher.ask("PUB orders.eu shallow"), "+OK 0");
    one.expect_msg("orders.eu", 0, b"shallow");
    assert_eq!(
        read_msgs(&mut rest, 2),
        msgs(&[("orders.eu.paid", 0, "deep"), ("orders.eu", 0, "shallow")])
    );
}

#[test]
fn a_binary_subscription_takes_patterns_and_an_unsubscribe_ends_them() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut publisher = Line::connect(addr);
    assert_eq!(publisher.ask("PUB orders.eu a"), "+OK 0");

    let mut subscriber = Raw::connect(addr);
    subscriber.send(&subscribe_request(r#"["orders.*","fence"]"#, &BEGINNING));
    subscriber.expect(&SUBSCRIBED);
    subscriber.expect_delivery("orders.eu", b"a");
    subscriber.send(&ACK);
    assert_eq!(publisher.ask("PUB orders.us b"), "+OK 0");
    subscriber.expect_delivery("orders.us", b"b");
    subscriber.send(&ACK);

    subscriber.send(&unsubscribe_request(r#"["orders.*"]"#));
    subscriber.expect(&UNSUBSCRIBED);
    assert_eq!(publisher.ask("PUB orders.eu gone"), "+OK 1");
    assert_eq!(publisher.ask("PUB orders.new gone"), "+OK 0");
    assert_eq!(publisher.ask("PUB fence f"), "+OK 0");
    subscriber.expect_delivery("fence", b"f");
    subscriber.send(&ACK);

    // A Current subscription to a pattern, with a binary client.
    let mut late = Raw::connect(addr);
    late.send(&subscribe_request(r#"["orders.>"]"#, &CURRENT));
    late.expect(&SUBSCRIBED);
    assert_eq!(publisher.ask("PUB orders.eu.paid c"), "+OK 0");
    late.expect_delivery("orders.eu.paid", b"c");
}

#[test]
fn unsubscribing_a_pattern_keeps_the_topics_named_or_covered_by_another_pattern() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut subscriber = Line::connect(addr);
    for command in ["SUB orders.*", "SUB *.eu", "SUB orders.kept", "SUB fence"] {
        assert_eq!(subscriber.ask(command), "+OK", "{command}");
    }
    let mut publisher = Line::connect(addr);
    assert_eq!(publisher.ask("PUB orders.us a"), "+OK 0");
    subscriber.expect_msg("orders.us", 0, b"a");
    assert_eq!(subscriber.stat("pattern_subscriptions"), 2);

    assert_eq!(subscriber.ask("UNSUB orders.*"), "+OK");
    assert_eq!(subscriber.stat("pattern_subscriptions"), 1);
    let published = [
        ("orders.us", "gone", 1),
        ("orders.new", "gone", 0),
        ("orders.eu", "still, by *.eu", 0),
        ("orders.kept", "still, by name", 0),
        ("fence", "f", 0),
    ];
    for (topic, payload, offset) in published {
        assert_eq!(
            publisher.ask(&format!("PUB {topic} {payload}")),
            format!("+OK {offset}")
        );
    }
    assert_eq!(
        read_msgs(&mut subscriber, 3),
        msgs(&[
            ("orders.eu", 0, "still, by *.eu"),
            ("orders.kept", 0, "still, by name"),
            ("fence", 0, "f"),
        ])
    );
    // A connection that closes forgets its patterns.
    drop(subscriber);
    // The close reaches the dispatcher after the reader sees it: each
    // STATS is a round trip, not a sleep, until a deadline.
    let mut watcher = Line::connect(addr);
    let deadline = Instant::now() + WAIT;
    while watcher.stat("pattern_subscriptions") != 0 {
        assert!(
            Instant::now() < deadline,
            "the closed connection's pattern stays"
        );
    }
}

#[test]
fn after_a_restart_on_disk_a_pattern_replays_every_matching_topic() {
    let root = TempDir::new("patterns-restart");
    let config = Config {
        storage: Storage::Disk(root.path().join("data")),
        ..config()
    };
    let broker = start_broker(&config);
    let mut publisher = Line::connect(broker.local_addr());
    for (command, reply) in [
        ("PUB orders.eu a", "+OK 0"),
        ("PUB orders.eu b", "+OK 1"),
        ("PUB orders.us c", "+OK 0"),
        ("PUB orders.us.paid d", "+OK 0"),
        ("PUB refunds.eu e", "+OK 0"),
    ] {
        assert_eq!(publisher.ask(command), reply, "{command}");
    }
    drop(publisher);
    broker.shutdown();

    let broker = start_broker(&config);
    let mut subscriber = Line::connect(broker.local_addr());
    assert_eq!(subscriber.ask("SUB orders.* beginning"), "+OK");
    assert_eq!(
        read_msgs(&mut subscriber, 3),
        msgs(&[
            ("orders.eu", 0, "a"),
            ("orders.eu", 1, "b"),
            ("orders.us", 0, "c"),
        ])
    );
    let mut publisher = Line::connect(broker.local_addr());
    assert_eq!(publisher.ask("PUB orders.us.paid skipped"), "+OK 1");
    assert_eq!(publisher.ask("PUB orders.eu after"), "+OK 2");
    subscriber.expect_msg("orders.eu", 2, b"after");
    broker.shutdown();
}

#[test]
fn max_subscribe_topics_counts_a_pattern_as_one_name_however_many_topics_it_covers() {
    let broker = start_broker(&Config {
        max_subscribe_topics: 1,
        ..config()
    });
    let addr = broker.local_addr();
    let mut publisher = Line::connect(addr);
    for region in ["eu", "us", "asia"] {
        assert_eq!(publisher.ask(&format!("PUB orders.{region} x")), "+OK 0");
    }
    let mut subscriber = Raw::connect(addr);
    subscriber.send(&subscribe_request(r#"["orders.*","fence"]"#, &BEGINNING));
    subscriber.expect_error("too many topics");
    subscriber.send(&subscribe_request(r#"["orders.*"]"#, &BEGINNING));
    subscriber.expect(&SUBSCRIBED);
    let delivered: BTreeSet<Vec<u8>> = (0..3)
        .map(|_| {
            let (topic, _) = subscriber.read_delivery();
            subscriber.send(&ACK);
            topic
        })
        .collect();
    let expected = ["orders.eu", "orders.us", "orders.asia"].map(|t| t.as_bytes().to_vec());
    assert_eq!(delivered, expected.into());
}

/// Any client can add patterns, and each is kept until it goes: one
/// connection may follow at most `--max-subscribe-topics` of them, and
/// one more is refused until it lets one go.
#[test]
fn a_connection_follows_at_most_max_subscribe_topics_patterns() {
    let broker = start_broker(&Config {
        max_subscribe_topics: 2,
        ..config()
    });
    let mut line = Line::connect(broker.local_addr());
    assert_eq!(line.ask("SUB a.* beginning"), "+OK");
    assert_eq!(line.ask("SUB b.* beginning"), "+OK");
    assert_eq!(line.ask("SUB a.* current"), "+OK", "a pattern it holds");
    let refused = "-ERR a connection may follow at most 2 patterns \
                   (--max-subscribe-topics): UNSUB one first";
    assert_eq!(line.ask("SUB c.* beginning"), refused);
    assert_eq!(
        line.ask("UNSUB d.*"),
        "+OK",
        "an unsubscribe is never refused for it"
    );
    assert_eq!(line.ask("UNSUB a.*"), "+OK");
    assert_eq!(line.ask("SUB c.* beginning"), "+OK");
    assert_eq!(line.ask("PING"), "+PONG");
}

#[test]
fn on_disk_a_new_pattern_subscription_is_answered_before_anything_it_sends() {
    let root = TempDir::new("patterns-status-first");
    let broker = start_broker(&Config {
        storage: Storage::Disk(root.path().join("data")),
        ..config()
    });
    let mut publisher = Line::connect(broker.local_addr());
    assert_eq!(publisher.ask("PUB orders.aa a"), "+OK 0");
    let mut subscriber = Line::connect(broker.local_addr());
    assert_eq!(subscriber.ask("SUB orders.eu"), "+OK");
    // orders.eu's message is not in its file yet when the pattern's
    // topics are matched: writing it must not send what the new
    // subscription's cursors hold before its +OK.
    subscriber.send("PUB orders.eu x\nSUB orders.* beginning\n");
    subscriber.expect_line("+OK 0");
    subscriber.expect_line("+OK");
    assert_eq!(
        read_msgs(&mut subscriber, 2),
        msgs(&[("orders.aa", 0, "a"), ("orders.eu", 0, "x")])
    );
}
