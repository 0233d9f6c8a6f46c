//! Bad input: every refusal with its exact reason bytes, whether the
//! connection survives it (only when the stream can still be parsed), frames
//! cut off by a disconnect, and the reference's quirks (an empty topic frame
//! is skipped, an empty payload dropped). In every test a [`Bystander`],
//! connected before the bad input, proves the broker still serves others.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;

use brook::client::Publisher;
use brook::config::Config;
use brook::wire::request::StartAt;
use common::broker::{config, start_broker};
use common::client::{expect_next_ack, expect_nothing, publish_all, subscriber, Bystander};
use common::frames::{
    error_reply, from_u16, publish_frame, subscribe_request, unsubscribe_request, ACK, BEGINNING,
    CURRENT, NACK, PUBLISH, SUBSCRIBE, SUBSCRIBED, UNSUBSCRIBE, UNSUBSCRIBED,
};
use common::line::Line;
use common::raw::Raw;
use common::{QUIET, WAIT};

#[test]
fn unknown_first_action_gets_an_error_and_the_connection_closes() {
    let broker = start_broker(&config());
    let mut bystander = Bystander::new(broker.local_addr());
    // 4 and 5 (Ack, Nack) are only valid later on a subscriber connection;
    // 8 is AUTH (tests/auth.rs).
    for action in [0u16, 4, 5, 9, 0x00ff] {
        let mut client = Raw::connect(broker.local_addr());
        client.send(&action.to_be_bytes());
        client.expect_error("unknown action");
        client.expect_eof();
    }
    bystander.check();
}

#[test]
fn unknown_action_on_a_subscriber_connection_gets_an_error_and_the_connection_closes() {
    let broker = start_broker(&config());
    let mut bystander = Bystander::new(broker.local_addr());
    for action in [0u16, 3, 6, 8, 0x00ff] {
        let mut client = Raw::connect(broker.local_addr());
        client.send(&subscribe_request(r#"["t"]"#, &BEGINNING));
        client.expect(&SUBSCRIBED);
        client.send(&action.to_be_bytes());
        client.expect_error("unknown action");
        client.expect_eof();
    }
    bystander.check();
}

#[test]
fn missing_topic_prefix_is_refused_at_once_and_the_publisher_keeps_working() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut bystander = Bystander::new(addr);
    let mut subscriber = subscriber(addr, &["orders"], StartAt::Current);

    let mut publisher = Raw::connect(addr);
    publisher.send(&[&PUBLISH[..], &6u16.to_be_bytes(), b"orders"].concat());
    // Refused before any payload frame has been sent.
    publisher.expect_error("topic data does not contain 'topic:' prefix");
    // The payload that follows is read and dropped; the next frame counts.
    publisher.send(&[&5u32.to_be_bytes()[..], b"wrong"].concat());
    publisher.send(&publish_frame("orders", b"right"));
    expect_next_ack(&mut subscriber, "orders", b"right");
    expect_nothing(&mut subscriber, QUIET);
    publisher.expect_silence(QUIET);
    bystander.check();
}

#[test]
fn publish_topic_that_is_not_utf8_is_refused_and_the_publisher_keeps_working() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut bystander = Bystander::new(addr);
    let mut subscriber = subscriber(addr, &["ok"], StartAt::Current);
    let mut publisher = Raw::connect(addr);
    let bad_topic = b"topic:\xff\xfe";
    publisher.send(
        &[
            &PUBLISH[..],
            &(bad_topic.len() as u16).to_be_bytes(),
            bad_topic,
            &3u32.to_be_bytes(),
            b"bad",
        ]
        .concat(),
    );
    publisher.expect_error("topic name is not valid UTF-8");
    publisher.send(&publish_frame("ok", b"good"));
    expect_next_ack(&mut subscriber, "ok", b"good");
    bystander.check();
}

#[test]
fn invalid_topic_data_is_refused_and_the_connection_keeps_working() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut bystander = Bystander::new(addr);
    let mut client = Raw::connect(addr);
    let bad: [&[u8]; 12] = [
        br#"{"a":1}"#,
        br#""a""#,
        br#"["a""#,
        br#"["a",]"#,
        br#"[1]"#,
        br#"["a"] x"#,
        b"not json",
        b"[\"a\xff\"]",
        br#"["\x"]"#,
        br#"["\ud83d"]"#,
        b"[\"tab\there\"]",
        b" ",
    ];
    for json in bad {
        client.send(&subscribe_request(json, &BEGINNING));
        client.expect_error("invalid topic data provided");
        client.send(&unsubscribe_request(json));
        client.expect_error("invalid topic data provided");
    }
    // The start-at after a refused list was consumed: the stream is aligned.
    client.send(&subscribe_request(r#"["ok"]"#, &CURRENT));
    client.expect(&SUBSCRIBED);
    publish_all(addr, &[("a", b"not subscribed"), ("ok", b"subscribed")]);
    client.expect_delivery("ok", b"subscribed");
    client.send(&ACK);
    client.expect_silence(QUIET);
    bystander.check();
}

#[test]
fn invalid_topic_data_as_the_first_request_keeps_the_connection() {
    let broker = start_broker(&config());
    let mut bystander = Bystander::new(broker.local_addr());
    let mut client = Raw::connect(broker.local_addr());
    client.send(&subscribe_request(r#"{"topics":["a"]}"#, &from_u16(3)));
    client.expect_error("invalid topic data provided");
    client.send(&subscribe_request(r#"["a"]"#, &BEGINNING));
    client.expect(&SUBSCRIBED);
    bystander.check();
}

#[test]
fn zero_length_topic_list_is_refused_and_nothing_more_is_read_for_it() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut bystander = Bystander::new(addr);
    let mut client = Raw::connect(addr);
    // No start-at follows a zero-length list: the next bytes are an action.
    client.send(
        &[
            &SUBSCRIBE[..],
            &[0, 0, 0, 0],
            &subscribe_request(r#"["a"]"#, &CURRENT),
        ]
        .concat(),
    );
    client.expect_error("data length of topics is 0");
    client.expect(&SUBSCRIBED);
    client.send(
        &[
            &UNSUBSCRIBE[..],
            &[0, 0, 0, 0],
            &unsubscribe_request(r#"["b"]"#),
        ]
        .concat(),
    );
    client.expect_error("data length of topics is 0");
    client.expect(&UNSUBSCRIBED);
    publish_all(addr, &[("a", b"still subscribed")]);
    client.expect_delivery("a", b"still subscribed");
    bystander.check();
}

#[test]
fn unknown_start_at_type_is_refused_and_the_connection_keeps_working() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut bystander = Bystander::new(addr);
    let mut client = Raw::connect(addr);
    for start_at in [4u16, 7, 0xffff] {
        client.send(&subscribe_request(r#"["a"]"#, &start_at.to_be_bytes()));
        client.expect_error("invalid start up type provided");
    }
    client.send(&subscribe_request(r#"["b"]"#, &BEGINNING));
    client.expect(&SUBSCRIBED);
    publish_all(addr, &[("a", b"refused topic"), ("b", b"accepted topic")]);
    client.expect_delivery("b", b"accepted topic");
    client.send(&ACK);
    client.expect_silence(QUIET);
    bystander.check();
}

#[test]
fn ack_or_nack_with_nothing_in_flight_is_refused() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut bystander = Bystander::new(addr);
    let mut client = Raw::connect(addr);
    client.send(&subscribe_request(r#"["t"]"#, &CURRENT));
    client.expect(&SUBSCRIBED);
    client.send(&ACK);
    client.expect_error("no delivery to acknowledge");
    client.send(&NACK);
    client.expect_error("no delivery to acknowledge");

    publish_all(addr, &[("t", b"m0")]);
    client.expect_delivery("t", b"m0");
    client.send(&[ACK, ACK].concat()); // one too many
    client.expect_error("no delivery to acknowledge");
    client.expect_silence(QUIET);
    bystander.check();
}

/// A client that sends requests and does not read the replies is neither cut
/// off nor buffered for without bound: the broker stops reading its requests
/// until it reads, so TCP holds it back. Once it reads, every request has
/// its answer.
#[test]
fn a_client_that_does_not_read_its_replies_is_held_back_not_buffered() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut bystander = Bystander::new(addr);
    let mut client = TcpStream::connect(addr).unwrap();
    client
        .write_all(&subscribe_request(r#"["t"]"#, &CURRENT))
        .unwrap();

    // Acks with nothing to answer, each refused with a 30-byte reply, until
    // a write stalls: the broker has stopped reading. Unbounded buffering
    // would take all 256 MiB of them.
    client.set_write_timeout(Some(QUIET)).unwrap();
    let chunk = ACK.repeat(32 << 10);
    let mut sent = 0usize;
    while sent < 256 << 20 {
        match client.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("the broker closed the connection: {e}"),
        }
    }
    assert!(sent < 256 << 20, "the broker read all {sent} bytes of acks");
    bystander.check();

    let reply = error_reply("no delivery to acknowledge");
    let expected = SUBSCRIBED.len() + sent / ACK.len() * reply.len();
    client.set_read_timeout(Some(WAIT)).unwrap();
    let mut received = vec![0u8; expected];
    client
        .read_exact(&mut received)
        .expect("every ack answered");
    assert_eq!(&received[..SUBSCRIBED.len()], SUBSCRIBED);
    assert!(received[SUBSCRIBED.len()..]
        .chunks(reply.len())
        .all(|r| r == reply));
    bystander.check();
}

fn small_limits() -> Config {
    Config {
        max_message_bytes: 1024,
        max_topic_list_bytes: 64,
        ..config()
    }
}

#[test]
fn payload_length_above_the_limit_gets_an_error_and_close() {
    let broker = start_broker(&small_limits());
    let addr = broker.local_addr();
    let mut bystander = Bystander::new(addr);
    let mut subscriber = subscriber(addr, &["t"], StartAt::Current);
    for len in [u32::MAX, 1025] {
        let mut publisher = Raw::connect(addr);
        // Only the length is sent: the refusal must not wait for the bytes.
        let topic_frame = [&7u16.to_be_bytes()[..], b"topic:t"].concat();
        publisher.send(&[&PUBLISH[..], &topic_frame, &len.to_be_bytes()].concat());
        publisher.expect_error("message too large");
        publisher.expect_eof();
    }
    // Exactly the limit is accepted.
    let largest = vec![b'x'; 1024];
    Raw::connect(addr).send(&[&PUBLISH[..], &publish_frame("t", &largest)].concat());
    expect_next_ack(&mut subscriber, "t", &largest);
    bystander.check();
}

#[test]
fn topic_list_length_above_the_limit_gets_an_error_and_close() {
    let broker = start_broker(&small_limits());
    let addr = broker.local_addr();
    let mut bystander = Bystander::new(addr);
    for request in [
        [&SUBSCRIBE[..], &u32::MAX.to_be_bytes()].concat(),
        [&SUBSCRIBE[..], &65u32.to_be_bytes()].concat(),
        [&UNSUBSCRIBE[..], &u32::MAX.to_be_bytes()].concat(),
    ] {
        let mut client = Raw::connect(addr);
        client.send(&request);
        client.expect_error("topic data too large");
        client.expect_eof();
    }
    // Also on a connection that is already a subscriber.
    let mut client = Raw::connect(addr);
    client.send(&subscribe_request(r#"["t"]"#, &BEGINNING));
    client.expect(&SUBSCRIBED);
    client.send(&[&SUBSCRIBE[..], &u32::MAX.to_be_bytes()].concat());
    client.expect_error("topic data too large");
    client.expect_eof();
    bystander.check();
}

#[test]
fn topic_name_too_long_for_a_delivery_is_refused() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut bystander = Bystander::new(addr);
    let mut client = Raw::connect(addr);
    let json = format!("[\"{}\"]", "n".repeat(70_000));
    client.send(&subscribe_request(&json, &BEGINNING));
    client.expect_error("topic name too long");
    client.send(&subscribe_request(r#"["short"]"#, &BEGINNING));
    client.expect(&SUBSCRIBED);
    bystander.check();
}

/// `--max-topic-name-bytes` and `--max-subscribe-topics`, in both
/// protocols: the request is refused with its reason, the connection goes
/// on, and exactly the limit is accepted.
#[test]
fn topic_name_and_topic_count_limits_are_refused_and_the_connection_goes_on() {
    let config = Config {
        max_topic_name_bytes: 10, // "bystander" and "test-fence" fit
        max_subscribe_topics: 2,
        ..config()
    };
    let broker = start_broker(&config);
    let addr = broker.local_addr();
    let mut bystander = Bystander::new(addr);

    let mut client = Raw::connect(addr);
    client.send(&subscribe_request(r#"["a","b","c"]"#, &CURRENT));
    client.expect_error("too many topics");
    client.send(&subscribe_request(r#"["12345678901"]"#, &CURRENT));
    client.expect_error("topic name too long");
    client.send(&subscribe_request(r#"["1234567890","b"]"#, &CURRENT));
    client.expect(&SUBSCRIBED);

    let mut publisher = Raw::connect(addr);
    publisher.send(&[&PUBLISH[..], &publish_frame("12345678901", b"long")].concat());
    publisher.expect_error("topic name too long");
    publisher.send(&publish_frame("1234567890", b"fits"));
    client.expect_delivery("1234567890", b"fits");

    let mut line = Line::connect(addr);
    line.send("SUB 12345678901\nPUB 12345678901 x\nPUBN 12345678901 1\ny\n");
    for _ in 0..3 {
        line.expect_line("-ERR topic name too long");
    }
    line.send("PUB 1234567890 by line\n");
    line.expect_line("+OK 1");
    client.expect_delivery("1234567890", b"by line");
    bystander.check();
}

#[test]
fn frames_cut_off_by_a_disconnect_end_quietly() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut bystander = Bystander::new(addr);
    let mut subscriber = subscriber(addr, &["t"], StartAt::Current);
    let whole = publish_frame("t", b"a payload that never fully arrives");
    let cut_publishes: Vec<Vec<u8>> = [1, 2, 5, 9, 12, whole.len() - 1]
        .iter()
        .map(|&cut| [&PUBLISH[..], &whole[..cut]].concat())
        .collect();
    let subscribe = subscribe_request(r#"["t"]"#, &from_u16(0));
    let cut_subscribes: Vec<Vec<u8>> = [1, 3, 7, 10, subscribe.len() - 1]
        .iter()
        .map(|&cut| subscribe[..cut].to_vec())
        .collect();
    for bytes in cut_publishes.iter().chain(&cut_subscribes) {
        let mut client = Raw::connect(addr);
        client.send(&bytes[..]);
        drop(client);
    }
    // Complete frames before the cut still count.
    let mut client = Raw::connect(addr);
    client.send(&[&PUBLISH[..], &publish_frame("t", b"complete"), &whole[..20]].concat());
    drop(client);
    expect_next_ack(&mut subscriber, "t", b"complete");

    bystander.check();
    publish_all(addr, &[("t", b"after the cuts")]);
    expect_next_ack(&mut subscriber, "t", b"after the cuts");
    expect_nothing(&mut subscriber, QUIET);
}

#[test]
fn empty_topic_frame_is_skipped_and_empty_payload_dropped() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut bystander = Bystander::new(addr);
    let mut subscriber = subscriber(addr, &["t"], StartAt::Current);
    let mut publisher = Raw::connect(addr);
    publisher.send(
        &[
            &PUBLISH[..],
            &[0, 0],                  // an empty topic frame: skipped
            &publish_frame("t", b""), // an empty payload: dropped
            &[0, 0],
            &publish_frame("t", b"real"),
        ]
        .concat(),
    );
    expect_next_ack(&mut subscriber, "t", b"real");
    publisher.expect_silence(QUIET);

    // The same through the Rust client, and nothing empty was stored.
    let mut rust = Publisher::connect(addr).unwrap();
    rust.publish("t", b"").unwrap();
    rust.publish("t", b"next").unwrap();
    rust.flush().unwrap();
    expect_next_ack(&mut subscriber, "t", b"next");
    let mut replay = common::client::subscriber(addr, &["t"], StartAt::Beginning);
    expect_next_ack(&mut replay, "t", b"real");
    expect_next_ack(&mut replay, "t", b"next");
    expect_nothing(&mut replay, QUIET);
    bystander.check();
}
