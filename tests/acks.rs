//! Acks, nacks and redelivery: a nack brings a message back after the ack
//! delay, silence brings it back after the ack timeout, a message is given up
//! after the maximum number of deliveries, and answers are matched to
//! deliveries strictly in the order they were written, late ones included
//! (`late_answers.rs` has more on those).
//!
//! These tests use short timers (`timer_config`); to assert that nothing more
//! arrives they wait three ack timeouts.

mod common;

use std::time::{Duration, Instant};

use brook::client::Publisher;
use brook::config::Config;
use brook::wire::request::StartAt;
use common::broker::{config, start_broker, timer_config};
use common::client::{expect_next, expect_next_ack, expect_nothing, publish_all, subscriber};
use common::frames::{subscribe_request, ACK, CURRENT, SUBSCRIBED};
use common::raw::Raw;

/// Long enough for any redelivery a bug would cause to show up.
fn quiet_window(config: &Config) -> Duration {
    3 * config.ack_timeout.max(config.ack_delay)
}

#[test]
fn nack_then_ack_gives_exactly_two_deliveries() {
    let config = timer_config();
    let broker = start_broker(&config);
    let mut subscriber = subscriber(broker.local_addr(), &["t"], StartAt::Current);
    publish_all(broker.local_addr(), &[("t", b"again")]);

    expect_next(&mut subscriber, "t", b"again");
    subscriber.nack().unwrap();
    let nacked = Instant::now();
    expect_next(&mut subscriber, "t", b"again");
    assert!(
        nacked.elapsed() >= config.ack_delay,
        "redelivered {:?} after the nack, before the ack delay",
        nacked.elapsed()
    );
    subscriber.ack().unwrap();
    expect_nothing(&mut subscriber, quiet_window(&config));
}

#[test]
fn silence_gives_a_redelivery_after_the_ack_timeout() {
    let config = timer_config();
    let broker = start_broker(&config);
    let mut subscriber = subscriber(broker.local_addr(), &["t"], StartAt::Current);
    let mut publisher = Publisher::connect(broker.local_addr()).unwrap();
    let published = Instant::now();
    publisher.publish("t", b"unanswered").unwrap();
    publisher.flush().unwrap();

    expect_next(&mut subscriber, "t", b"unanswered");
    expect_next(&mut subscriber, "t", b"unanswered");
    assert!(
        published.elapsed() >= config.ack_timeout,
        "redelivered {:?} after publishing, before the ack timeout",
        published.elapsed()
    );
    // One answer for the first delivery (late) and one for the second.
    subscriber.ack().unwrap();
    subscriber.ack().unwrap();
    expect_nothing(&mut subscriber, quiet_window(&config));
}

#[test]
fn never_acking_gives_exactly_max_deliveries() {
    let config = Config {
        ack_timeout: Duration::from_millis(200),
        ..timer_config()
    };
    assert_eq!(config.max_deliveries, 5, "the default");
    let broker = start_broker(&config);
    let mut subscriber = subscriber(broker.local_addr(), &["t"], StartAt::Current);
    publish_all(broker.local_addr(), &[("t", b"ignored")]);
    for _ in 0..5 {
        expect_next(&mut subscriber, "t", b"ignored");
    }
    expect_nothing(&mut subscriber, quiet_window(&config));
}

#[test]
fn nacking_every_time_gives_exactly_max_deliveries() {
    let config = Config {
        max_deliveries: 3,
        ..timer_config()
    };
    let broker = start_broker(&config);
    let mut subscriber = subscriber(broker.local_addr(), &["t"], StartAt::Current);
    publish_all(broker.local_addr(), &[("t", b"refused")]);
    for _ in 0..3 {
        expect_next(&mut subscriber, "t", b"refused");
        subscriber.nack().unwrap();
    }
    expect_nothing(&mut subscriber, quiet_window(&config));
}

#[test]
fn a_message_given_up_does_not_hold_up_the_next() {
    let config = Config {
        max_deliveries: 2,
        ..timer_config()
    };
    let broker = start_broker(&config);
    let addr = broker.local_addr();
    let mut subscriber = subscriber(addr, &["t"], StartAt::Current);
    publish_all(addr, &[("t", b"first")]);
    expect_next(&mut subscriber, "t", b"first");
    expect_next(&mut subscriber, "t", b"first");
    expect_nothing(&mut subscriber, quiet_window(&config)); // given up

    publish_all(addr, &[("t", b"second")]);
    expect_next(&mut subscriber, "t", b"second");
    // Answers still go in delivery order: two late ones, then this one.
    for _ in 0..3 {
        subscriber.ack().unwrap();
    }
    expect_nothing(&mut subscriber, quiet_window(&config));
}

#[test]
fn answers_match_deliveries_in_order_across_topics() {
    let config = timer_config();
    let broker = start_broker(&config);
    let addr = broker.local_addr();
    let mut subscriber = subscriber(addr, &["a", "b"], StartAt::Current);
    publish_all(addr, &[("a", b"a0"), ("b", b"b0"), ("a", b"a1")]);
    expect_next(&mut subscriber, "a", b"a0");
    expect_next(&mut subscriber, "b", b"b0");
    expect_next(&mut subscriber, "a", b"a1");
    subscriber.ack().unwrap();
    subscriber.nack().unwrap();
    subscriber.ack().unwrap();
    expect_next_ack(&mut subscriber, "b", b"b0");
    expect_nothing(&mut subscriber, quiet_window(&config));
}

#[test]
fn acks_interleaved_with_subscribe_requests_are_matched_in_order() {
    let config = timer_config();
    let broker = start_broker(&config);
    let addr = broker.local_addr();
    let mut subscriber = Raw::connect(addr);
    subscriber.send(&subscribe_request(r#"["a"]"#, &CURRENT));
    subscriber.expect(&SUBSCRIBED);
    publish_all(addr, &[("a", b"a0")]);
    subscriber.expect_delivery("a", b"a0");

    // Subscribe to more while a0 is unanswered, then answer it.
    subscriber.send(&subscribe_request(r#"["b"]"#, &CURRENT));
    subscriber.expect(&SUBSCRIBED);
    subscriber.send(&ACK);
    publish_all(addr, &[("b", b"b0")]);
    subscriber.expect_delivery("b", b"b0");
    subscriber.send(&ACK);
    subscriber.expect_silence(quiet_window(&config));
}

#[test]
fn unsubscribing_cancels_pending_redeliveries() {
    let config = timer_config();
    let broker = start_broker(&config);
    let addr = broker.local_addr();
    let mut subscriber = subscriber(addr, &["t"], StartAt::Current);
    publish_all(addr, &[("t", b"nacked")]);
    expect_next(&mut subscriber, "t", b"nacked");
    subscriber.nack().unwrap();
    subscriber.unsubscribe(&["t"]).unwrap(); // sent in the same write
    expect_nothing(&mut subscriber, quiet_window(&config));
}

#[test]
fn an_unanswered_delivery_holds_up_no_other_subscriber() {
    // A long ack timeout: the silent subscriber's stream stays predictable.
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut silent = subscriber(addr, &["t"], StartAt::Current);
    let mut busy = subscriber(addr, &["t"], StartAt::Current);
    let mut publisher = Publisher::connect(addr).unwrap();
    for i in 0..20 {
        let payload = format!("m{i}");
        publisher.publish("t", payload.as_bytes()).unwrap();
        publisher.flush().unwrap();
        expect_next_ack(&mut busy, "t", payload.as_bytes());
    }
    // The silent one got them all too, and never answered.
    for i in 0..20 {
        expect_next(&mut silent, "t", format!("m{i}").as_bytes());
    }
}
