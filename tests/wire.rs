//! The binary protocol byte for byte, over raw sockets: every row of the
//! protocol table, the exact byte sequences the Go reference client writes,
//! frames dribbled one byte per write or packed many to a write, and topic
//! names in the JSON string syntax Go's `encoding/json` produces, and
//! brook's extension for publishers that want each message confirmed.

mod common;

use brook::client::{ClientError, Publisher};
use brook::wire::binary;
use brook::wire::request::StartAt;
use common::broker::{config, start_broker};
use common::client::{expect_next_ack, publish_all, publish_numbered, subscriber};
use common::frames::{
    delivery_frame, from_u16, from_u64, publish_frame, subscribe_request, unsubscribe_request, ACK,
    BEGINNING, CURRENT, NACK, PUBLISH, SUBSCRIBED, UNSUBSCRIBED,
};
use common::raw::Raw;
use common::QUIET;

#[test]
fn subscribe_publish_deliver_and_ack_byte_for_byte() {
    let broker = start_broker(&config());
    let mut subscriber = Raw::connect(broker.local_addr());
    subscriber.send(&[0, 1, 0, 0, 0, 5, b'[', b'"', b'a', b'"', b']', 0, 0]);
    subscriber.expect(&[0, 1]);
    subscriber.expect_silence(QUIET); // a bare u16, nothing after it

    let mut publisher = Raw::connect(broker.local_addr());
    publisher.send(&[
        0, 3, 0, 7, b't', b'o', b'p', b'i', b'c', b':', b'a', 0, 0, 0, 2, b'h', b'i',
    ]);
    subscriber.expect(&[0, 1, b'a', 0, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']);
    subscriber.send(&ACK);
    subscriber.expect_silence(QUIET);
    publisher.expect_silence(QUIET); // a publisher gets no reply on success
}

#[test]
fn unsubscribe_is_answered_with_a_bare_unsubscribed_status() {
    let broker = start_broker(&config());
    let mut subscriber = Raw::connect(broker.local_addr());
    subscriber.send(&subscribe_request(r#"["a","b"]"#, &BEGINNING));
    subscriber.expect(&SUBSCRIBED);
    subscriber.send(&unsubscribe_request(r#"["a"]"#));
    subscriber.expect(&UNSUBSCRIBED);

    let mut publisher = Raw::connect(broker.local_addr());
    publisher.send(
        &[
            &PUBLISH[..],
            &publish_frame("a", b"gone"),
            &publish_frame("b", b"kept"),
        ]
        .concat(),
    );
    subscriber.expect_delivery("b", b"kept");
    subscriber.send(&ACK);
    subscriber.expect_silence(QUIET);
}

#[test]
fn unsubscribe_as_the_first_action_is_answered() {
    let broker = start_broker(&config());
    let mut client = Raw::connect(broker.local_addr());
    client.send(&unsubscribe_request(r#"["never-subscribed"]"#));
    client.expect(&UNSUBSCRIBED);
    // The connection stays usable as a subscriber.
    client.send(&subscribe_request(r#"["t"]"#, &BEGINNING));
    client.expect(&SUBSCRIBED);
}

#[test]
fn go_publisher_writing_each_field_separately_is_delivered() {
    let broker = start_broker(&config());
    let mut subscriber = subscriber(broker.local_addr(), &["orders"], StartAt::Beginning);
    let mut publisher = Raw::connect(broker.local_addr());
    publisher.send(&PUBLISH);
    for payload in [&b"first order"[..], b"second order"] {
        // As the Go client does: four writes per message.
        publisher.send(&12u16.to_be_bytes());
        publisher.send(b"topic:orders");
        publisher.send(&(payload.len() as u32).to_be_bytes());
        publisher.send(payload);
    }
    expect_next_ack(&mut subscriber, "orders", b"first order");
    expect_next_ack(&mut subscriber, "orders", b"second order");
}

#[test]
fn go_subscribe_with_u16_from_offset_in_one_write() {
    let broker = start_broker(&config());
    publish_numbered(broker.local_addr(), "t", 0..3);
    let mut subscriber = Raw::connect(broker.local_addr());
    subscriber.send(&[0, 1, 0, 0, 0, 5, b'[', b'"', b't', b'"', b']', 0, 2, 0, 1]);
    subscriber.expect(&SUBSCRIBED);
    subscriber.expect_delivery("t", b"m1");
    subscriber.expect_delivery("t", b"m2");
}

#[test]
fn start_at_type_3_carries_a_u64_offset() {
    let broker = start_broker(&config());
    publish_numbered(broker.local_addr(), "t", 0..5);

    let mut subscriber = Raw::connect(broker.local_addr());
    subscriber.send(&[
        0, 1, 0, 0, 0, 5, b'[', b'"', b't', b'"', b']', 0, 3, 0, 0, 0, 0, 0, 0, 0, 3,
    ]);
    subscriber.expect(&SUBSCRIBED);
    subscriber.expect_delivery("t", b"m3");
    subscriber.expect_delivery("t", b"m4");
    subscriber.send(&[ACK, ACK].concat());
    subscriber.expect_silence(QUIET);
}

#[test]
fn publisher_frames_written_one_byte_at_a_time() {
    let broker = start_broker(&config());
    let mut subscriber = subscriber(broker.local_addr(), &["drip"], StartAt::Beginning);
    let mut publisher = Raw::connect(broker.local_addr());
    let bytes = [
        &PUBLISH[..],
        &publish_frame("drip", b"one byte at a time"),
        &publish_frame("drip", b"and again"),
    ]
    .concat();
    publisher.send_bytewise(&bytes);
    expect_next_ack(&mut subscriber, "drip", b"one byte at a time");
    expect_next_ack(&mut subscriber, "drip", b"and again");
}

#[test]
fn subscriber_frames_written_one_byte_at_a_time() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    publish_all(addr, &[("a", b"a0"), ("b", b"b0")]);

    let mut subscriber = Raw::connect(addr);
    subscriber.send_bytewise(&subscribe_request(r#"["a"]"#, &from_u16(0)));
    subscriber.expect(&SUBSCRIBED);
    subscriber.expect_delivery("a", b"a0");
    subscriber.send_bytewise(&NACK);
    subscriber.expect_delivery("a", b"a0"); // after the ack delay
    subscriber.send_bytewise(&ACK);

    subscriber.send_bytewise(&subscribe_request(r#"["b"]"#, &from_u64(0)));
    subscriber.expect(&SUBSCRIBED);
    subscriber.expect_delivery("b", b"b0");
    subscriber.send_bytewise(&ACK);
    subscriber.send_bytewise(&unsubscribe_request(r#"["a","b"]"#));
    subscriber.expect(&UNSUBSCRIBED);

    publish_all(addr, &[("a", b"a1"), ("b", b"b1")]);
    subscriber.expect_silence(QUIET);
}

#[test]
fn many_publish_frames_in_one_write() {
    let broker = start_broker(&config());
    let mut subscriber = subscriber(broker.local_addr(), &["bulk"], StartAt::Beginning);
    let mut bytes = PUBLISH.to_vec();
    for i in 0..500 {
        bytes.extend(publish_frame("bulk", format!("message {i}").as_bytes()));
    }
    Raw::connect(broker.local_addr()).send(&bytes);
    for i in 0..500 {
        expect_next_ack(&mut subscriber, "bulk", format!("message {i}").as_bytes());
    }
}

#[test]
fn many_subscriber_requests_in_one_write() {
    let broker = start_broker(&config());
    publish_all(
        broker.local_addr(),
        &[("a", b"a0"), ("a", b"a1"), ("a", b"a2")],
    );
    let mut subscriber = Raw::connect(broker.local_addr());
    subscriber.send(
        &[
            subscribe_request(r#"["x"]"#, &BEGINNING),
            subscribe_request(r#"["y"]"#, &CURRENT),
            unsubscribe_request(r#"["x","y"]"#),
        ]
        .concat(),
    );
    subscriber.expect(&[SUBSCRIBED, SUBSCRIBED, UNSUBSCRIBED].concat());

    subscriber.send(&subscribe_request(r#"["a"]"#, &BEGINNING));
    subscriber.expect(&SUBSCRIBED);
    for payload in [b"a0", b"a1", b"a2"] {
        subscriber.expect_delivery("a", payload);
    }
    // Three answers in one write: ack, nack, ack. Only a1 comes back.
    subscriber.send(&[ACK, NACK, ACK].concat());
    subscriber.expect_delivery("a", b"a1");
    subscriber.send(&ACK);
    subscriber.expect_silence(QUIET);
}

/// A topic name with every character Go's `encoding/json` treats specially,
/// plus non-ASCII letters and an emoji.
const AWKWARD_NAME: &str = "<tag> & \"quoted\" back\\slash ñandú Grüße 東京 😀 \t\n\u{2028}";

/// `json.Marshal([]string{AWKWARD_NAME})` in Go: `<`, `>`, `&` and U+2028 as
/// `\uXXXX` escapes, `"`, `\`, tab and newline backslash-escaped, other
/// non-ASCII left as raw UTF-8.
const AWKWARD_NAME_GO_JSON: &str =
    r#"["\u003ctag\u003e \u0026 \"quoted\" back\\slash ñandú Grüße 東京 😀 \t\n\u2028"]"#;

#[test]
fn go_escaped_topic_name_is_published_and_delivered_as_exact_utf8() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut go_subscriber = Raw::connect(addr);
    go_subscriber.send(&subscribe_request(AWKWARD_NAME_GO_JSON, &BEGINNING));
    go_subscriber.expect(&SUBSCRIBED);
    // The Rust client names the same topic with its own encoding.
    let mut rust_subscriber = subscriber(addr, &[AWKWARD_NAME], StartAt::Beginning);

    let mut publisher = Raw::connect(addr);
    publisher.send(&[&PUBLISH[..], &publish_frame(AWKWARD_NAME, b"payload")].concat());

    let (topic, payload) = go_subscriber.read_delivery();
    assert_eq!(topic, AWKWARD_NAME.as_bytes());
    assert_eq!(payload, b"payload");
    go_subscriber.send(&ACK);
    expect_next_ack(&mut rust_subscriber, AWKWARD_NAME, b"payload");

    go_subscriber.send(&unsubscribe_request(AWKWARD_NAME_GO_JSON));
    go_subscriber.expect(&UNSUBSCRIBED);
    publisher.send(&publish_frame(AWKWARD_NAME, b"after"));
    expect_next_ack(&mut rust_subscriber, AWKWARD_NAME, b"after");
    go_subscriber.expect_silence(QUIET);
}

#[test]
fn topic_list_with_whitespace_and_surrogate_pair_escapes() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let json = " \r\n[\n\t\"smile-\\uD83D\\ude00\" ,\r\n  \"caf\\u00e9\"\t,\"plain\\/slash\"\n]\n ";
    let mut subscriber = Raw::connect(addr);
    subscriber.send(&subscribe_request(json, &BEGINNING));
    subscriber.expect(&SUBSCRIBED);

    publish_all(
        addr,
        &[("smile-😀", b"1"), ("café", b"2"), ("plain/slash", b"3")],
    );
    subscriber.expect_delivery("smile-😀", b"1");
    subscriber.expect_delivery("café", b"2");
    subscriber.expect_delivery("plain/slash", b"3");
}

#[test]
fn library_encoders_produce_the_go_client_bytes() {
    let mut bytes = Vec::new();
    binary::encode_subscribe(&mut bytes, &["a"], StartAt::From(7));
    assert_eq!(bytes, subscribe_request(r#"["a"]"#, &from_u16(7)));

    bytes.clear();
    binary::encode_subscribe(&mut bytes, &["a"], StartAt::From(70_000));
    assert_eq!(bytes, subscribe_request(r#"["a"]"#, &from_u64(70_000)));

    bytes.clear();
    binary::encode_unsubscribe(&mut bytes, &["a", "b"]);
    assert_eq!(bytes, unsubscribe_request(r#"["a","b"]"#));

    bytes.clear();
    binary::encode_publish(&mut bytes, "t", b"xyz");
    assert_eq!(bytes, publish_frame("t", b"xyz"));

    bytes.clear();
    binary::encode_delivery_header(&mut bytes, "t", 3);
    bytes.extend_from_slice(b"xyz");
    assert_eq!(bytes, delivery_frame("t", b"xyz"));
}

#[test]
fn rust_publisher_and_go_style_subscriber_interoperate() {
    let broker = start_broker(&config());
    let mut subscriber = Raw::connect(broker.local_addr());
    subscriber.send(&subscribe_request(r#"["mixed"]"#, &CURRENT));
    subscriber.expect(&SUBSCRIBED);
    let mut publisher = Publisher::connect(broker.local_addr()).unwrap();
    publisher.publish("mixed", b"from rust").unwrap();
    publisher.flush().unwrap();
    subscriber.expect_delivery("mixed", b"from rust");
    subscriber.send(&ACK);
    subscriber.expect_silence(QUIET);
}

/// Go's `json.Marshal` writes a nil `[]string` as `null`; the reference
/// accepts it as an empty list.
#[test]
fn a_null_topic_list_subscribes_to_nothing() {
    let broker = start_broker(&config());
    let mut client = Raw::connect(broker.local_addr());
    client.send(&subscribe_request("null", &BEGINNING));
    client.expect(&SUBSCRIBED);
    client.send(&unsubscribe_request("null"));
    client.expect(&UNSUBSCRIBED);
    publish_all(broker.local_addr(), &[("t", b"m0")]);
    client.expect_silence(QUIET);
}

/// How a binary subscriber can tell that the broker is still there (see
/// docs/PROTOCOL.md, "Idle connections"): a Subscribe to no topics is
/// answered with the Subscribed status and changes nothing.
#[test]
fn an_empty_subscribe_is_a_ping_that_changes_nothing() {
    let broker = start_broker(&config());
    let mut client = Raw::connect(broker.local_addr());
    client.send(&subscribe_request(r#"["t"]"#, &CURRENT));
    client.expect(&SUBSCRIBED);
    client.send(&subscribe_request("[]", &CURRENT));
    client.expect(&SUBSCRIBED);
    publish_all(broker.local_addr(), &[("t", b"still subscribed")]);
    client.expect_delivery("t", b"still subscribed");
}

/// brook's extension: a publisher whose first action is 6 gets, for every
/// message in order, status 4 and the message's `u64` offset once it is
/// stored, or an Error status; a refused message does not stop the next.
#[test]
fn a_confirmed_publisher_gets_each_offset_or_an_error() {
    let broker = start_broker(&config());
    let mut publisher = Raw::connect(broker.local_addr());
    let missing_prefix = [&3u16.to_be_bytes()[..], b"abc", &2u32.to_be_bytes(), b"hi"].concat();
    publisher.send(
        &[
            &[0, 6][..],
            &publish_frame("t", b"first"),
            &publish_frame("t", b"second"),
            &missing_prefix,
            &publish_frame("t", b""),
            &publish_frame("t", b"third"),
        ]
        .concat(),
    );
    let published = |offset: u64| [&[0, 4][..], &offset.to_be_bytes()].concat();
    publisher.expect(&published(0));
    publisher.expect(&published(1));
    publisher.expect_error("topic data does not contain 'topic:' prefix");
    publisher.expect_error("empty message");
    publisher.expect(&published(2));
    publisher.expect_silence(QUIET);

    let mut subscriber = subscriber(broker.local_addr(), &["t"], StartAt::Beginning);
    for payload in [&b"first"[..], b"second", b"third"] {
        expect_next_ack(&mut subscriber, "t", payload);
    }
}

#[test]
fn the_rust_client_reads_confirmations_in_order() {
    let broker = start_broker(&config());
    let mut publisher = Publisher::connect_confirmed(broker.local_addr()).unwrap();
    for i in 0..100 {
        publisher
            .publish("confirmed", format!("m{i}").as_bytes())
            .unwrap();
    }
    publisher.publish("confirmed", b"").unwrap();
    for offset in 0..100 {
        assert_eq!(publisher.confirmation().unwrap(), offset);
    }
    match publisher.confirmation() {
        Err(ClientError::Refused(reason)) => assert_eq!(reason, "empty message"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}
