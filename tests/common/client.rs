//! Small wrappers around brook's Rust client, and what tests build on it:
//! a [`Fence`] that proves the broker applied what was published, and a
//! [`Bystander`] that proves a misbehaving client disturbed nobody.

use std::net::SocketAddr;
use std::time::Duration;

use brook::client::{Delivery, Publisher, Subscriber};
use brook::wire::request::StartAt;

use super::frames::publish_frame;
use super::WAIT;

/// A subscriber to `topics`, confirmed by the broker.
pub fn subscriber(addr: SocketAddr, topics: &[&str], start: StartAt) -> Subscriber {
    let mut subscriber = Subscriber::connect(addr).expect("connect");
    subscriber.subscribe(topics, start).expect("subscribe");
    subscriber
}

/// The next delivery, which must come within [`WAIT`].
pub fn next(subscriber: &mut Subscriber) -> Delivery {
    match subscriber.recv_timeout(WAIT) {
        Ok(Some(delivery)) => delivery,
        Ok(None) => panic!("no delivery within {WAIT:?}"),
        Err(error) => panic!("receiving: {error}"),
    }
}

/// Asserts the next delivery is `payload` on `topic`.
pub fn expect_next(subscriber: &mut Subscriber, topic: &str, payload: &[u8]) {
    let delivery = next(subscriber);
    assert_eq!(
        (
            delivery.topic.as_str(),
            String::from_utf8_lossy(&delivery.payload)
        ),
        (topic, String::from_utf8_lossy(payload))
    );
}

/// Receives the next delivery, asserts it, and acks it at once (the
/// client would otherwise send the ack with its next read, which a test
/// that then waits elsewhere may leave for longer than the ack timeout).
pub fn expect_next_ack(subscriber: &mut Subscriber, topic: &str, payload: &[u8]) {
    expect_next(subscriber, topic, payload);
    subscriber.ack().unwrap();
    subscriber.flush().unwrap();
}

/// Asserts that no delivery arrives for `window` (queued acks are sent first).
pub fn expect_nothing(subscriber: &mut Subscriber, window: Duration) {
    if let Some(delivery) = subscriber.recv_timeout(window).expect("receiving") {
        panic!("unexpected delivery {delivery:?}");
    }
}

/// Publishes every `(topic, payload)` on a new connection and returns once
/// the broker has stored them all (see [`Fence`]).
pub fn publish_all(addr: SocketAddr, messages: &[(&str, &[u8])]) {
    let mut fence = Fence::new(addr);
    let mut publisher = Publisher::connect(addr).unwrap();
    for (topic, payload) in messages {
        publisher.publish(topic, payload).unwrap();
    }
    fence.publish_marker(&mut publisher);
}

/// Publishes `m{i}` to `topic` for each `i` in `range`, and waits until the
/// broker has stored them all.
pub fn publish_numbered(addr: SocketAddr, topic: &str, range: std::ops::Range<u32>) {
    let payloads: Vec<String> = range.map(|i| format!("m{i}")).collect();
    let messages: Vec<(&str, &[u8])> = payloads.iter().map(|p| (topic, p.as_bytes())).collect();
    publish_all(addr, &messages);
}

/// Proof that the broker has applied everything a publisher sent so far.
///
/// A publisher gets no reply, but one connection's frames are applied in
/// order: so the publisher sends a marker to a topic of its own after its
/// messages, and once the fence's subscriber has the marker, every earlier
/// message is in its topic's log.
pub struct Fence {
    subscriber: Subscriber,
    markers: u32,
}

const FENCE_TOPIC: &str = "test-fence";

impl Fence {
    pub fn new(addr: SocketAddr) -> Fence {
        Fence {
            subscriber: subscriber(addr, &[FENCE_TOPIC], StartAt::Current),
            markers: 0,
        }
    }

    /// The next marker, as a raw publish frame.
    pub fn marker_frame(&mut self) -> Vec<u8> {
        self.markers += 1;
        publish_frame(FENCE_TOPIC, self.markers.to_string().as_bytes())
    }

    /// Publishes the next marker through `publisher` and waits for it.
    pub fn publish_marker(&mut self, publisher: &mut Publisher) {
        self.markers += 1;
        let marker = self.markers.to_string();
        publisher.publish(FENCE_TOPIC, marker.as_bytes()).unwrap();
        publisher.flush().unwrap();
        self.wait();
    }

    /// Waits for the latest marker.
    pub fn wait(&mut self) {
        expect_next_ack(
            &mut self.subscriber,
            FENCE_TOPIC,
            self.markers.to_string().as_bytes(),
        );
    }
}

/// A well-behaved pair of clients, connected before a test misbehaves, that
/// proves afterwards that the broker still serves them undisturbed.
pub struct Bystander {
    publisher: Publisher,
    subscriber: Subscriber,
    round: u32,
}

const BYSTANDER_TOPIC: &str = "bystander";

impl Bystander {
    pub fn new(addr: SocketAddr) -> Bystander {
        let mut bystander = Bystander {
            subscriber: subscriber(addr, &[BYSTANDER_TOPIC], StartAt::Current),
            publisher: Publisher::connect(addr).unwrap(),
            round: 0,
        };
        bystander.check();
        bystander
    }

    /// Publishes one message on the bystander's connection and receives it.
    pub fn check(&mut self) {
        self.round += 1;
        let payload = format!("still served {}", self.round);
        self.publisher
            .publish(BYSTANDER_TOPIC, payload.as_bytes())
            .unwrap();
        self.publisher.flush().unwrap();
        expect_next_ack(&mut self.subscriber, BYSTANDER_TOPIC, payload.as_bytes());
    }
}
