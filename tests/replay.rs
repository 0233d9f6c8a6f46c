//! Per-topic logs and start positions: messages published before anyone
//! subscribed are kept, offsets count from 0 per topic, and a subscription
//! starts at Beginning, Current, From a `u16` offset, or From brook's `u64`
//! offset, including one beyond the end of the log, which waits for it.

mod common;

use brook::client::Publisher;
use brook::wire::request::StartAt;
use common::broker::{config, start_broker};
use common::client::{
    expect_next_ack, expect_nothing, next, publish_all, publish_numbered, subscriber, Fence,
};
use common::frames::{
    from_u16, from_u64, publish_frame, subscribe_request, ACK, PUBLISH, SUBSCRIBED,
};
use common::raw::Raw;
use common::QUIET;

#[test]
fn replay_from_beginning_gets_messages_published_before_anyone_subscribed() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    publish_numbered(addr, "t", 0..5);
    let mut subscriber = subscriber(addr, &["t"], StartAt::Beginning);
    for i in 0..5 {
        expect_next_ack(&mut subscriber, "t", format!("m{i}").as_bytes());
    }
    expect_nothing(&mut subscriber, QUIET);
}

#[test]
fn replay_from_offset_zero_gets_everything() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    publish_numbered(addr, "t", 0..3);
    let mut subscriber = subscriber(addr, &["t"], StartAt::From(0));
    for i in 0..3 {
        expect_next_ack(&mut subscriber, "t", format!("m{i}").as_bytes());
    }
    expect_nothing(&mut subscriber, QUIET);
}

#[test]
fn replay_from_offset_three_then_a_live_message() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    publish_numbered(addr, "t", 0..5);
    let mut subscriber = subscriber(addr, &["t"], StartAt::From(3));
    expect_next_ack(&mut subscriber, "t", b"m3");
    expect_next_ack(&mut subscriber, "t", b"m4");
    publish_numbered(addr, "t", 5..6);
    expect_next_ack(&mut subscriber, "t", b"m5");
    expect_nothing(&mut subscriber, QUIET);
}

#[test]
fn current_gets_only_new_messages() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    publish_numbered(addr, "t", 0..3);
    let mut subscriber = subscriber(addr, &["t"], StartAt::Current);
    publish_numbered(addr, "t", 3..5);
    expect_next_ack(&mut subscriber, "t", b"m3");
    expect_next_ack(&mut subscriber, "t", b"m4");
    expect_nothing(&mut subscriber, QUIET);
}

#[test]
fn from_beyond_the_end_waits_for_the_log_to_reach_it() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    publish_numbered(addr, "t", 0..3);
    let mut subscriber = subscriber(addr, &["t"], StartAt::From(5));
    expect_nothing(&mut subscriber, QUIET);
    publish_numbered(addr, "t", 3..5); // offsets 3 and 4: still below 5
    expect_nothing(&mut subscriber, QUIET);
    publish_numbered(addr, "t", 5..7);
    // m3 and m4 would come first if anything below 5 were delivered.
    expect_next_ack(&mut subscriber, "t", b"m5");
    expect_next_ack(&mut subscriber, "t", b"m6");
    expect_nothing(&mut subscriber, QUIET);
}

#[test]
fn from_an_empty_topic_waits_for_its_first_messages() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut subscriber = subscriber(addr, &["fresh"], StartAt::From(1));
    publish_numbered(addr, "fresh", 0..2);
    expect_next_ack(&mut subscriber, "fresh", b"m1");
    expect_nothing(&mut subscriber, QUIET);
}

#[test]
fn offsets_count_from_zero_in_each_topic() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    publish_all(
        addr,
        &[("a", b"a0"), ("b", b"b0"), ("a", b"a1"), ("b", b"b1")],
    );
    let mut subscriber = subscriber(addr, &["a", "b"], StartAt::From(1));
    let mut got: Vec<(String, Vec<u8>)> = (0..2)
        .map(|_| {
            let delivery = next(&mut subscriber);
            subscriber.ack().unwrap();
            (delivery.topic, delivery.payload)
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![("a".into(), b"a1".to_vec()), ("b".into(), b"b1".to_vec())]
    );
    expect_nothing(&mut subscriber, QUIET);
}

/// Offsets above 65,535 need brook's `u64` start-at (type 3): the raw bytes
/// and the Rust client (which picks the extension itself) both reach them,
/// and neither is cut to 16 bits.
#[test]
fn u64_from_offset_beyond_the_u16_range() {
    const COUNT: u64 = 65_540;
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut fence = Fence::new(addr);
    let mut bytes = PUBLISH.to_vec();
    for i in 0..COUNT {
        bytes.extend(publish_frame("long", &i.to_be_bytes()));
    }
    bytes.extend(fence.marker_frame());
    Raw::connect(addr).send(&bytes);
    fence.wait();

    let mut raw = Raw::connect(addr);
    raw.send(&subscribe_request(r#"["long"]"#, &from_u64(65_538)));
    raw.expect(&SUBSCRIBED);
    raw.expect_delivery("long", &65_538u64.to_be_bytes());
    raw.expect_delivery("long", &65_539u64.to_be_bytes());
    raw.send(&[ACK, ACK].concat());
    raw.expect_silence(QUIET);

    let mut client = subscriber(addr, &["long"], StartAt::From(65_539));
    expect_next_ack(&mut client, "long", &65_539u64.to_be_bytes());
    let mut publisher = Publisher::connect(addr).unwrap();
    publisher.publish("long", &COUNT.to_be_bytes()).unwrap();
    publisher.flush().unwrap();
    expect_next_ack(&mut client, "long", &COUNT.to_be_bytes());
}

#[test]
fn a_huge_u64_offset_waits_quietly() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    publish_numbered(addr, "t", 0..2);
    let mut raw = Raw::connect(addr);
    raw.send(&subscribe_request(r#"["t"]"#, &from_u64(u64::MAX)));
    raw.expect(&SUBSCRIBED);
    publish_numbered(addr, "t", 2..3);
    raw.expect_silence(QUIET);
    // The connection still works: move the cursor back.
    raw.send(&subscribe_request(r#"["t"]"#, &from_u16(2)));
    raw.expect(&SUBSCRIBED);
    raw.expect_delivery("t", b"m2");
}
