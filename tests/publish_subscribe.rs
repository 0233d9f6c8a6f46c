//! Publishing and live delivery through the Rust client: fan-out to many
//! subscribers, per-topic order under load, a large payload, changing
//! subscriptions on a live connection, and subscribers that go away.

mod common;

use brook::client::{Publisher, Subscriber};
use brook::wire::request::StartAt;
use common::broker::{config, start_broker};
use common::client::{
    expect_next, expect_next_ack, expect_nothing, next, publish_all, publish_numbered, subscriber,
    Bystander,
};
use common::frames::{subscribe_request, BEGINNING, CURRENT, PUBLISH, SUBSCRIBED};
use common::raw::Raw;
use common::{QUIET, WAIT};

#[test]
fn ten_subscribers_of_one_topic_each_get_a_message_exactly_once() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut subscribers: Vec<Subscriber> = (0..10)
        .map(|_| subscriber(addr, &["news"], StartAt::Current))
        .collect();
    let mut publisher = Publisher::connect(addr).unwrap();
    publisher.publish("news", b"once").unwrap();
    publisher.publish("news", b"then this").unwrap();
    publisher.flush().unwrap();
    for subscriber in &mut subscribers {
        // A duplicate would arrive between the two.
        expect_next_ack(subscriber, "news", b"once");
        expect_next_ack(subscriber, "news", b"then this");
    }
    for subscriber in &mut subscribers {
        expect_nothing(subscriber, QUIET / 10);
    }
}

#[test]
fn order_is_kept_per_topic_over_thousands_of_messages() {
    const PER_TOPIC: usize = 5000;
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut subscriber = subscriber(addr, &["left", "right"], StartAt::Beginning);
    let publisher = std::thread::spawn(move || {
        let mut publisher = Publisher::connect(addr).unwrap();
        for i in 0..PER_TOPIC {
            publisher.publish("left", &i.to_be_bytes()).unwrap();
            publisher.publish("right", &i.to_be_bytes()).unwrap();
        }
        publisher.flush().unwrap();
    });
    let mut next_expected = [0usize; 2];
    for _ in 0..2 * PER_TOPIC {
        let delivery = next(&mut subscriber);
        subscriber.ack().unwrap();
        let side = match delivery.topic.as_str() {
            "left" => 0,
            "right" => 1,
            other => panic!("delivery on topic {other:?}"),
        };
        let n = usize::from_be_bytes(delivery.payload.try_into().unwrap());
        assert_eq!(n, next_expected[side], "out of order on {}", delivery.topic);
        next_expected[side] += 1;
    }
    publisher.join().unwrap();
    expect_nothing(&mut subscriber, QUIET);
}

#[test]
fn a_one_mebibyte_payload_arrives_intact() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut first = subscriber(addr, &["big"], StartAt::Beginning);
    let mut second = subscriber(addr, &["big"], StartAt::Beginning);
    let payload: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    let mut publisher = Publisher::connect(addr).unwrap();
    publisher.publish("big", &payload).unwrap();
    publisher.publish("big", b"small after big").unwrap();
    publisher.flush().unwrap();
    for subscriber in [&mut first, &mut second] {
        let delivery = next(subscriber);
        assert_eq!(delivery.topic, "big");
        assert_eq!(delivery.payload.len(), payload.len());
        assert!(delivery.payload == payload, "the payload was corrupted");
        subscriber.ack().unwrap();
        expect_next_ack(subscriber, "big", b"small after big");
    }
}

#[test]
fn one_subscribe_request_can_name_many_topics() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut subscriber = subscriber(addr, &["t1", "t2", "t3"], StartAt::Beginning);
    publish_all(
        addr,
        &[("t3", b"3"), ("other", b"x"), ("t1", b"1"), ("t2", b"2")],
    );
    expect_next_ack(&mut subscriber, "t3", b"3");
    expect_next_ack(&mut subscriber, "t1", b"1");
    expect_next_ack(&mut subscriber, "t2", b"2");
    expect_nothing(&mut subscriber, QUIET);
}

#[test]
fn subscribe_to_more_topics_on_a_live_connection() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut subscriber = subscriber(addr, &["a"], StartAt::Beginning);
    publish_all(addr, &[("a", b"a0"), ("b", b"b0")]);
    expect_next_ack(&mut subscriber, "a", b"a0");

    // Every delivery answered: now subscribe to more on the same connection.
    subscriber
        .subscribe(&["b", "c"], StartAt::Beginning)
        .unwrap();
    expect_next_ack(&mut subscriber, "b", b"b0");
    publish_all(addr, &[("c", b"c0"), ("a", b"a1")]);
    expect_next_ack(&mut subscriber, "c", b"c0");
    expect_next_ack(&mut subscriber, "a", b"a1");
    expect_nothing(&mut subscriber, QUIET);
}

#[test]
fn unsubscribe_stops_deliveries_of_that_topic_only() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut subscriber = subscriber(addr, &["stay", "leave"], StartAt::Current);
    publish_all(addr, &[("leave", b"before")]);
    expect_next_ack(&mut subscriber, "leave", b"before");

    subscriber.unsubscribe(&["leave"]).unwrap();
    publish_all(addr, &[("leave", b"after"), ("stay", b"kept")]);
    expect_next_ack(&mut subscriber, "stay", b"kept");
    expect_nothing(&mut subscriber, QUIET);

    // Subscribing again picks the topic back up.
    subscriber.subscribe(&["leave"], StartAt::From(1)).unwrap();
    expect_next_ack(&mut subscriber, "leave", b"after");
}

#[test]
fn subscribing_again_moves_the_cursor() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    publish_numbered(addr, "t", 0..3);
    let mut subscriber = subscriber(addr, &["t"], StartAt::Beginning);
    for payload in [b"m0", b"m1", b"m2"] {
        expect_next_ack(&mut subscriber, "t", payload);
    }
    subscriber.subscribe(&["t"], StartAt::From(1)).unwrap();
    expect_next_ack(&mut subscriber, "t", b"m1");
    expect_next_ack(&mut subscriber, "t", b"m2");
    expect_nothing(&mut subscriber, QUIET);
}

#[test]
fn a_subscriber_that_disconnects_without_unsubscribing_disturbs_nobody() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut leaver = subscriber(addr, &["shared", "other"], StartAt::Current);
    let mut stayer = subscriber(addr, &["shared"], StartAt::Current);
    let mut publisher = Publisher::connect(addr).unwrap();
    publisher.publish("shared", b"m0").unwrap();
    publisher.flush().unwrap();
    expect_next(&mut leaver, "shared", b"m0");
    expect_next_ack(&mut stayer, "shared", b"m0");
    drop(leaver); // m0 unanswered, still subscribed to two topics

    for payload in [&b"m1"[..], b"m2"] {
        publisher.publish("shared", payload).unwrap();
        publisher.publish("other", payload).unwrap();
    }
    publisher.flush().unwrap();
    expect_next_ack(&mut stayer, "shared", b"m1");
    expect_next_ack(&mut stayer, "shared", b"m2");

    // A new subscriber replays everything, m0 included.
    let mut late = subscriber(addr, &["shared"], StartAt::Beginning);
    for payload in [b"m0", b"m1", b"m2"] {
        expect_next_ack(&mut late, "shared", payload);
    }
    Bystander::new(addr).check();
}

#[test]
fn a_subscriber_that_disconnects_with_a_full_window_disturbs_nobody() {
    let config = brook::config::Config {
        max_inflight: 4,
        ..config()
    };
    let broker = start_broker(&config);
    let addr = broker.local_addr();
    let mut leaver = subscriber(addr, &["t"], StartAt::Current);
    let mut stayer = subscriber(addr, &["t"], StartAt::Current);
    publish_numbered(addr, "t", 0..10);
    for i in 0..4 {
        expect_next(&mut leaver, "t", format!("m{i}").as_bytes());
    }
    expect_nothing(&mut leaver, QUIET / 3); // the window is full
    drop(leaver);
    for i in 0..10 {
        expect_next_ack(&mut stayer, "t", format!("m{i}").as_bytes());
    }
    publish_all(addr, &[("t", b"live")]);
    expect_next_ack(&mut stayer, "t", b"live");
}

/// The window is bounded in bytes too: with room for 1,000 bytes of
/// payload, 300-byte messages go four at a time (the fourth starts below the
/// bound), and each answer makes room for one more.
#[test]
fn the_window_is_bounded_by_the_subscriber_buffer_in_bytes() {
    let config = brook::config::Config {
        subscriber_buffer: 1000,
        ..config()
    };
    let broker = start_broker(&config);
    let addr = broker.local_addr();
    let mut slow = subscriber(addr, &["t"], StartAt::Current);
    let payloads: Vec<Vec<u8>> = (0..10u8).map(|i| vec![b'a' + i; 300]).collect();
    let messages: Vec<(&str, &[u8])> = payloads.iter().map(|p| ("t", p.as_slice())).collect();
    publish_all(addr, &messages);
    for payload in &payloads[..4] {
        expect_next(&mut slow, "t", payload);
    }
    expect_nothing(&mut slow, QUIET / 3); // 1,200 bytes unanswered
    for (answered, payload) in payloads[4..].iter().enumerate() {
        slow.ack().unwrap();
        expect_next(&mut slow, "t", payload);
        if answered < 2 {
            expect_nothing(&mut slow, QUIET / 3);
        }
    }
}

/// A message larger than the whole subscriber buffer still goes, alone.
#[test]
fn a_message_larger_than_the_subscriber_buffer_goes_alone() {
    let config = brook::config::Config {
        subscriber_buffer: 100,
        ..config()
    };
    let broker = start_broker(&config);
    let addr = broker.local_addr();
    let mut slow = subscriber(addr, &["t"], StartAt::Current);
    let big = [vec![b'x'; 500], vec![b'y'; 500]];
    publish_all(addr, &[("t", &big[0]), ("t", &big[1])]);
    expect_next(&mut slow, "t", &big[0]);
    expect_nothing(&mut slow, QUIET / 3);
    slow.ack().unwrap();
    expect_next_ack(&mut slow, "t", &big[1]);
}

#[test]
fn shutting_the_broker_down_closes_every_connection() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut subscriber = Raw::connect(addr);
    subscriber.send(&subscribe_request(r#"["t"]"#, &BEGINNING));
    subscriber.expect(&SUBSCRIBED);
    let mut publisher = Raw::connect(addr);
    publisher.send(&PUBLISH);
    let mut idle = Raw::connect(addr);

    let (done, stopped) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        broker.shutdown();
        done.send(()).unwrap();
    });
    stopped.recv_timeout(WAIT).expect("shutdown finishes");
    for client in [&mut subscriber, &mut publisher, &mut idle] {
        client.expect_eof();
    }
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still listening"
    );
}

#[test]
fn concurrent_publishers_lose_nothing_and_keep_their_own_order() {
    const PUBLISHERS: u8 = 4;
    const EACH: u32 = 1000;
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut subscriber = subscriber(addr, &["t"], StartAt::Beginning);
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            std::thread::spawn(move || {
                let mut publisher = Publisher::connect(addr).unwrap();
                for i in 0..EACH {
                    let payload = [&[p][..], &i.to_be_bytes()].concat();
                    publisher.publish("t", &payload).unwrap();
                }
                publisher.flush().unwrap();
            })
        })
        .collect();
    let mut next_expected = [0u32; PUBLISHERS as usize];
    for _ in 0..u32::from(PUBLISHERS) * EACH {
        let delivery = next(&mut subscriber);
        subscriber.ack().unwrap();
        let p = usize::from(delivery.payload[0]);
        let i = u32::from_be_bytes(delivery.payload[1..].try_into().unwrap());
        assert_eq!(i, next_expected[p], "publisher {p} out of order");
        next_expected[p] += 1;
    }
    for publisher in publishers {
        publisher.join().unwrap();
    }
    expect_nothing(&mut subscriber, QUIET);
}

#[test]
fn a_topic_named_twice_is_delivered_once() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut subscriber = subscriber(addr, &["t", "t"], StartAt::Current);
    subscriber.subscribe(&["t"], StartAt::Current).unwrap();
    publish_all(addr, &[("t", b"m0"), ("t", b"m1")]);
    expect_next_ack(&mut subscriber, "t", b"m0");
    expect_next_ack(&mut subscriber, "t", b"m1");
    expect_nothing(&mut subscriber, QUIET);
}

#[test]
fn a_subscriber_that_closes_its_side_is_forgotten_and_closed() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut leaver = Raw::connect(addr);
    leaver.send(&subscribe_request(r#"["t"]"#, &CURRENT));
    leaver.expect(&SUBSCRIBED);
    publish_all(addr, &[("t", b"m0")]);
    leaver.expect_delivery("t", b"m0");
    // Its session and writer go away, and the broker closes its side too.
    leaver.close_write();
    leaver.expect_eof();

    let mut stayer = subscriber(addr, &["t"], StartAt::Beginning);
    publish_all(addr, &[("t", b"m1")]);
    expect_next_ack(&mut stayer, "t", b"m0");
    expect_next_ack(&mut stayer, "t", b"m1");
}
