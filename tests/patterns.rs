//! Topic names that look like patterns (NATS's `orders.*`, `orders.>`),
//! over real TCP, in both protocols: a publish to a name with a `*` or `>`
//! token is refused and nothing is stored; a subscribe, unsubscribe or
//! pull naming a pattern is refused, since patterns are not served yet, and
//! an invalid pattern gets its own error; names where `*` or `>` is only
//! part of a token are exact names and work as any other. After every
//! refusal the connection goes on. Nothing sleeps: each wait is a read
//! with a deadline.

mod common;

use std::net::SocketAddr;

use common::broker::{config, start_broker};
use common::frames::{
    error_reply, publish_frame, subscribe_request, unsubscribe_request, BEGINNING, PUBLISH,
    SUBSCRIBED,
};
use common::line::Line;
use common::raw::{raw_subscriber, Raw};

/// What a publish to a wildcard name is refused with, in both protocols.
const PUBLISH_REFUSED: &str = "cannot publish to a name with a '*' or '>' token: \
     those are wildcards in a subscription; publish to an exact topic name";

/// What a subscribe, unsubscribe or pull naming `pattern` is refused with.
fn not_served(pattern: &str) -> String {
    format!(
        "{pattern:?} is a pattern, and pattern subscriptions are not served yet: \
         subscribe to each topic by its exact name"
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

/// A binary action 7 (subscribe in a consumer group): the group's name,
/// then a Subscribe's fields.
fn group_subscribe_request(group: &str, json: &str) -> Vec<u8> {
    let subscribe = subscribe_request(json, &BEGINNING);
    let group_len = u16::try_from(group.len()).unwrap();
    [
        &[0, 7][..],
        &group_len.to_be_bytes(),
        group.as_bytes(),
        &subscribe[2..],
    ]
    .concat()
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
fn a_line_subscription_naming_a_pattern_is_refused_until_patterns_are_served() {
    let broker = start_broker(&config());
    let mut line = Line::connect(broker.local_addr());
    let refused = [
        ("SUB orders.*", "orders.*"),
        ("SUB orders.> beginning manual", "orders.>"),
        ("SUB * group workers", "*"),
        ("UNSUB orders.*", "orders.*"),
        ("PULL orders.> 10", "orders.>"),
    ];
    for (command, pattern) in refused {
        assert_eq!(
            line.ask(command),
            format!("-ERR {}", not_served(pattern)),
            "{command}"
        );
    }
    assert_eq!(
        line.ask("SUB orders.>.eu"),
        "-ERR invalid pattern \"orders.>.eu\": '>' may only be the last token (orders.> is valid)"
    );
    assert_eq!(
        line.ask("PULL orders..*"),
        "-ERR invalid pattern \"orders..*\": a pattern may not have an empty token \
         (two dots in a row, or a dot first or last)"
    );
    assert_eq!(line.ask("PING"), "+PONG");
    assert_eq!(topics(broker.local_addr()), Vec::<String>::new());
}

#[test]
fn a_binary_subscription_naming_a_pattern_is_refused_and_subscribes_nothing() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut subscriber = Raw::connect(addr);
    subscriber.send(&subscribe_request(
        r#"["orders.eu","orders.*"]"#,
        &BEGINNING,
    ));
    subscriber.expect_error(&not_served("orders.*"));
    subscriber.send(&group_subscribe_request("g", r#"["orders.>"]"#));
    subscriber.expect_error(&not_served("orders.>"));
    subscriber.send(&unsubscribe_request(r#"["a.>.b"]"#));
    subscriber.expect(&error_reply(
        "invalid pattern \"a.>.b\": '>' may only be the last token (orders.> is valid)",
    ));
    // Not even the exact name in the refused list was subscribed to.
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
