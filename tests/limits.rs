//! Limits: a connection over `--max-connections` is refused with an Error
//! status and closed while the connections already served carry on, and a
//! place freed by a disconnect can be taken again; a connection that says
//! nothing for `--handshake-timeout` is closed, and one that has spoken may
//! idle for ever; `--retention-bytes` keeps a topic's newest messages at
//! their offsets; `--max-topics` and `--max-groups-per-topic` refuse a
//! topic or group more, in both protocols, and the connection goes on.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use brook::client::Publisher;
use brook::config::Config;
use brook::wire::request::StartAt;
use common::broker::{config, start_broker};
use common::client::{expect_next_ack, expect_nothing, publish_all, subscriber, Fence};
use common::frames::{publish_frame, subscribe_request, BEGINNING, CURRENT, PUBLISH, SUBSCRIBED};
use common::line::Line;
use common::raw::Raw;
use common::{QUIET, WAIT};

#[test]
fn a_connection_over_the_limit_is_refused_and_others_carry_on() {
    let config = Config {
        max_connections: Some(4),
        ..config()
    };
    let broker = start_broker(&config);
    let addr = broker.local_addr();
    let mut first = subscriber(addr, &["t"], StartAt::Current);
    let mut second = Raw::connect(addr);
    second.send(&subscribe_request(r#"["t"]"#, &CURRENT));
    second.expect(&SUBSCRIBED);
    // A fence is a subscriber of its own: it tells when the publisher, the
    // fourth connection, is being served.
    let mut fence = Fence::new(addr);
    let mut publisher = Publisher::connect(addr).unwrap();
    fence.publish_marker(&mut publisher);

    let mut fifth = Raw::connect(addr);
    fifth.expect_error("too many connections");
    fifth.expect_eof();

    publisher.publish("t", b"still here").unwrap();
    publisher.flush().unwrap();
    expect_next_ack(&mut first, "t", b"still here");
    second.expect_delivery("t", b"still here");

    drop(second);
    let mut newcomer = connect_when_a_place_is_free(addr);
    publisher.publish("t", b"for the newcomer").unwrap();
    publisher.flush().unwrap();
    newcomer.expect_delivery("t", b"for the newcomer");
}

/// Subscribes a new raw connection to `t`, retrying while the broker still
/// refuses (it frees a place once it has seen the old connection close),
/// within [`WAIT`].
fn connect_when_a_place_is_free(addr: SocketAddr) -> Raw {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut raw = Raw::connect(addr);
        raw.send(&subscribe_request(r#"["t"]"#, &CURRENT));
        if raw.read_n(2) == SUBSCRIBED {
            return raw;
        }
        assert!(Instant::now() < deadline, "no place freed within {WAIT:?}");
    }
}

/// With `--retention-bytes`, a topic keeps only its newest messages; offsets
/// go on counting, and a subscriber asking for a dropped offset starts at the
/// oldest one kept.
/// A client that connects and says nothing is closed once the handshake
/// timeout passes; hundreds of others that connected with it and spoke
/// (subscribers, then idle) are left alone, and still get what is published
/// after it.
#[test]
fn a_silent_connection_is_closed_after_the_handshake_timeout_and_others_stay() {
    let config = Config {
        handshake_timeout: Duration::from_millis(300),
        ..config()
    };
    let broker = start_broker(&config);
    let addr = broker.local_addr();
    let mut first_silent = Raw::connect(addr);
    let mut idle: Vec<Raw> = (0..200)
        .map(|_| {
            let mut raw = Raw::connect(addr);
            raw.send(&subscribe_request(r#"["t"]"#, &CURRENT));
            raw.expect(&SUBSCRIBED);
            raw
        })
        .collect();
    // A line client that has typed half a command has spoken too.
    let mut typing = Line::connect(addr);
    typing.send("PI");
    // Connected after all the others: once it is closed, the timeout has
    // passed for every one of them.
    let mut last_silent = Raw::connect(addr);

    first_silent.expect_eof();
    last_silent.expect_eof();
    publish_all(addr, &[("t", b"after the timeout")]);
    for raw in &mut idle {
        raw.expect_delivery("t", b"after the timeout");
    }
    typing.send("NG\n");
    typing.expect_line("+PONG");
}

#[test]
fn retention_keeps_the_newest_messages_and_their_offsets() {
    let config = Config {
        retention_bytes: Some(4 * 3), // three 4-byte messages
        ..config()
    };
    let broker = start_broker(&config);
    let addr = broker.local_addr();
    let messages: Vec<Vec<u8>> = (0..10u32)
        .map(|i| format!("m{i:03}").into_bytes())
        .collect();
    let mut publisher = Publisher::connect(addr).unwrap();
    for message in &messages {
        publisher.publish("t", message).unwrap();
    }
    let mut fence = Fence::new(addr);
    fence.publish_marker(&mut publisher);

    let mut from_zero = subscriber(addr, &["t"], StartAt::From(0));
    for kept in &messages[7..] {
        expect_next_ack(&mut from_zero, "t", kept);
    }
    expect_nothing(&mut from_zero, QUIET);

    let mut from_eight = subscriber(addr, &["t"], StartAt::From(8));
    for kept in &messages[8..] {
        expect_next_ack(&mut from_eight, "t", kept);
    }
    publisher.publish("t", b"m010").unwrap();
    publisher.flush().unwrap();
    expect_next_ack(&mut from_eight, "t", b"m010");
}

/// Retention never takes a message from under a connected subscriber: with
/// a window of one, all but one of its messages wait in the log, and every
/// one of them still arrives.
#[test]
fn retention_keeps_what_a_connected_subscriber_has_not_read() {
    let config = Config {
        retention_bytes: Some(4 * 3),
        max_inflight: 1,
        ..config()
    };
    let broker = start_broker(&config);
    let addr = broker.local_addr();
    let mut slow = subscriber(addr, &["t"], StartAt::Current);
    let messages: Vec<Vec<u8>> = (0..20u32)
        .map(|i| format!("m{i:03}").into_bytes())
        .collect();
    let mut publisher = Publisher::connect(addr).unwrap();
    for message in &messages {
        publisher.publish("t", message).unwrap();
    }
    publisher.flush().unwrap();
    for message in &messages {
        expect_next_ack(&mut slow, "t", message);
    }
    expect_nothing(&mut slow, QUIET);
}

#[test]
fn a_topic_past_max_topics_is_refused_in_both_protocols_and_the_connection_goes_on() {
    let config = Config {
        max_topics: 2,
        ..config()
    };
    let broker = start_broker(&config);
    let addr = broker.local_addr();
    let refusal = "too many topics: the broker holds --max-topics 2";
    let mut line = Line::connect(addr);
    assert_eq!(line.ask("SUB a"), "+OK");
    assert_eq!(line.ask("PUB b x"), "+OK 0");
    assert_eq!(line.ask("SUB c"), format!("-ERR {refusal}"));
    assert_eq!(line.ask("PUB c x"), format!("-ERR {refusal}"));
    assert_eq!(line.ask("PUB b y"), "+OK 1");

    let mut subscriber = Raw::connect(addr);
    subscriber.send(&subscribe_request(r#"["c"]"#, &BEGINNING));
    subscriber.expect_error(refusal);
    subscriber.send(&subscribe_request(r#"["b"]"#, &BEGINNING));
    subscriber.expect(&SUBSCRIBED);
    subscriber.expect_delivery("b", b"x");
    subscriber.expect_delivery("b", b"y");

    // A confirmed publisher is told; one that is never answered has its
    // connection closed, as for a full disk: it would not know otherwise.
    let mut confirmed = Raw::connect(addr);
    confirmed.send(&[&[0, 6][..], &publish_frame("c", b"z")].concat());
    confirmed.expect_error(refusal);
    confirmed.send(&publish_frame("b", b"z"));
    confirmed.expect(&[&[0, 4][..], &2u64.to_be_bytes()].concat());
    subscriber.expect_delivery("b", b"z");
    let mut unanswered = Raw::connect(addr);
    unanswered.send(&[&PUBLISH[..], &publish_frame("c", b"z")].concat());
    unanswered.expect_eof();
}

#[test]
fn a_group_past_max_groups_per_topic_is_refused_in_both_protocols_and_the_connection_goes_on() {
    let config = Config {
        max_groups_per_topic: 2,
        ..config()
    };
    let broker = start_broker(&config);
    let addr = broker.local_addr();
    let refusal = "too many groups: a topic holds --max-groups-per-topic 2";
    let mut line = Line::connect(addr);
    assert_eq!(line.ask("PUB t x"), "+OK 0");
    line.send("PULL t group g1\n");
    assert_eq!(line.read_pull().1, 1);
    assert_eq!(line.ask("SUB t current group g2"), "+OK");
    assert_eq!(line.ask("PULL t group g3"), format!("-ERR {refusal}"));
    assert_eq!(
        line.ask("PULL t"),
        format!("-ERR {refusal}"),
        "the default group"
    );
    assert_eq!(line.ask("SUB t group g3"), format!("-ERR {refusal}"));
    assert_eq!(line.ask("PULL t group g1"), "+END 0");

    let mut binary = Raw::connect(addr);
    let mut join = Vec::new();
    brook::wire::binary::encode_subscribe_group(&mut join, &["t"], "g3", StartAt::Beginning);
    binary.send(&join);
    binary.expect_error(refusal);
    join.clear();
    brook::wire::binary::encode_subscribe_group(&mut join, &["t"], "g1", StartAt::Beginning);
    binary.send(&join);
    binary.expect(&SUBSCRIBED);
    publish_all(addr, &[("t", b"y")]);
    binary.expect_delivery("t", b"y");
}
