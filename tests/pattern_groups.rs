//! Groups and pulls on patterns (`SUB orders.* group workers`, `PULL
//! orders.*`), a pattern that matches very many topics, and `TOPICS`'s
//! `+PATTERN` lines, over real TCP: members on a pattern share the
//! messages of every matching topic, each message once; a matching topic
//! created later joins the group from its start; an unsubscribe of the
//! pattern leaves the groups it alone joined, and gives back what it held
//! of those groups only; a pull takes from the
//! matching topics in turn, up to its max; a binary group subscribe takes
//! a pattern; after a restart on disk, a pattern group goes on where each
//! topic's group was; a pattern over 20,000 topics is answered, and a
//! bystander pair is served throughout; a connection that closes or
//! unsubscribes while its pattern's topics are still being matched leaves
//! nothing behind; a matching topic with no room for one more group
//! refuses the pattern, and what it had joined is left again; a group
//! message that found a member's window full goes out once its other
//! subscription frees room; a pull of a pattern over many topics reaches
//! a client that closed right after asking. Behind a pattern whose topics
//! take many rounds to match: an Ack counts at once, so a group message
//! acked there is not sent again when the connection closes, and
//! thousands of Acks neither close the connection nor go uncounted; a
//! publish and a pull are still carried out after a close; publishes past
//! four of the largest messages, or requests naming that many bytes,
//! close the connection, after an error that says why; so do pulls of a
//! pattern piling up behind one the client does not read. A connection
//! closed while its pattern's topics are matched is let go at once, not
//! after the linger, and a closed connection's pull whose topics take
//! longer than the linger to match is still served. A client that
//! half-closes while a pattern's topics are matched gets every answer,
//! in request order. Nothing sleeps: each wait is a read with a deadline.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use brook::config::{Config, Storage};
use common::broker::{config, start_broker};
use common::client::Bystander;
use common::frames::{
    error_reply, group_subscribe_request, publish_frame, ACK, PUBLISH, SUBSCRIBED,
};
use common::line::Line;
use common::raw::Raw;
use common::temp::TempDir;
use common::WAIT;

/// A message as a test compares it: topic, offset, payload.
type Seen = (String, u64, String);

/// The next `count` messages of `line`, each acked: a set, since no
/// order is promised across topics. Panics on a message seen twice.
fn read_acked(line: &mut Line, count: usize) -> BTreeSet<Seen> {
    let mut seen = BTreeSet::new();
    for _ in 0..count {
        let msg = line.read_msg();
        line.send("ACK\n");
        let payload = String::from_utf8(msg.payload).unwrap();
        let new = seen.insert((msg.topic, msg.offset, payload));
        assert!(new, "a message delivered twice: {seen:?}");
    }
    seen
}

/// The messages of both sets, which must not share one.
fn both(first: BTreeSet<Seen>, second: BTreeSet<Seen>) -> BTreeSet<Seen> {
    assert!(first.is_disjoint(&second), "{first:?} {second:?}");
    first.into_iter().chain(second).collect()
}

fn seen(expected: &[(&str, u64, &str)]) -> BTreeSet<Seen> {
    expected
        .iter()
        .map(|&(topic, offset, payload)| (topic.to_owned(), offset, payload.to_owned()))
        .collect()
}

/// Publishes each `(topic, payload)` on `line`, checking its offset.
fn publish(line: &mut Line, messages: &[(&str, u64, &str)]) {
    for &(topic, offset, payload) in messages {
        assert_eq!(
            line.ask(&format!("PUB {topic} {payload}")),
            format!("+OK {offset}")
        );
    }
}

/// The `+STAT group <topic> <group> …` line of a `STATS` reply.
fn group_stat(line: &mut Line, topic: &str, group: &str) -> String {
    line.send("STATS\n");
    let prefix = format!("+STAT group {topic} {group} ");
    let lines = line.read_until_end();
    let found = lines.iter().find(|line| line.starts_with(&prefix));
    found
        .unwrap_or_else(|| panic!("no {prefix:?} in {lines:?}"))
        .clone()
}

/// The `+PATTERN` lines of a `TOPICS` reply.
fn pattern_lines(addr: SocketAddr) -> Vec<String> {
    let mut client = Line::connect(addr);
    client.send("TOPICS\n");
    let lines = client.read_until_end();
    lines
        .into_iter()
        .filter(|line| line.starts_with("+PATTERN "))
        .collect()
}

#[test]
fn two_members_on_a_pattern_share_the_messages_of_two_topics_each_once() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut publisher = Line::connect(addr);
    publish(&mut publisher, &[("orders.eu", 0, "old")]);
    let mut first = Line::connect(addr);
    let mut second = Line::connect(addr);
    for member in [&mut first, &mut second] {
        let reply = member.ask("SUB orders.* current manual group workers");
        assert_eq!(reply, "+OK");
    }
    let sent = [
        ("orders.eu", 1, "eu1"),
        ("orders.us", 0, "us0"),
        ("orders.eu", 2, "eu2"),
        ("orders.us", 1, "us1"),
        ("refunds.eu", 0, "not matched"),
        ("orders.eu", 3, "eu3"),
        ("orders.us", 2, "us2"),
        ("orders.eu", 4, "eu4"),
        ("orders.us", 3, "us3"),
    ];
    publish(&mut publisher, &sent);
    // Each topic's group takes its members in turn: two messages each.
    let all = both(read_acked(&mut first, 4), read_acked(&mut second, 4));
    let mut expected = seen(&sent);
    expected.remove(&("refunds.eu".into(), 0, "not matched".into()));
    assert_eq!(all, expected, "each matching message once, from current on");
    // Nothing more: a marker published last is the next thing each gets.
    publish(
        &mut publisher,
        &[("orders.eu", 5, "m1"), ("orders.eu", 6, "m2")],
    );
    assert_eq!(
        both(read_acked(&mut first, 1), read_acked(&mut second, 1)),
        seen(&[("orders.eu", 5, "m1"), ("orders.eu", 6, "m2")])
    );
    assert!(group_stat(&mut publisher, "orders.us", "workers").contains("members=2"));
}

#[test]
fn a_matching_topic_created_later_joins_the_group_from_its_beginning() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut member = Line::connect(addr);
    assert_eq!(member.ask("SUB orders.> manual group workers"), "+OK");
    let mut publisher = Line::connect(addr);
    publish(
        &mut publisher,
        &[("orders.asia", 0, "first"), ("orders.asia", 1, "second")],
    );
    assert_eq!(
        read_acked(&mut member, 2),
        seen(&[("orders.asia", 0, "first"), ("orders.asia", 1, "second")])
    );
    // A second member of the group, joining by the topic's name, shares it.
    let mut named = Line::connect(addr);
    assert_eq!(named.ask("SUB orders.asia manual group workers"), "+OK");
    publish(
        &mut publisher,
        &[("orders.asia", 2, "third"), ("orders.asia", 3, "fourth")],
    );
    let shared = both(read_acked(&mut member, 1), read_acked(&mut named, 1));
    assert_eq!(
        shared,
        seen(&[("orders.asia", 2, "third"), ("orders.asia", 3, "fourth")])
    );
    let stat = group_stat(&mut publisher, "orders.asia", "workers");
    assert!(stat.contains("members=2"), "{stat}");
}

#[test]
fn unsubscribing_a_group_pattern_leaves_its_groups_but_not_a_topic_named_in_the_group() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut publisher = Line::connect(addr);
    publish(
        &mut publisher,
        &[("orders.eu", 0, "a"), ("orders.us", 0, "b")],
    );
    let mut leaving = Line::connect(addr);
    assert_eq!(leaving.ask("SUB orders.eu current manual group g"), "+OK");
    assert_eq!(leaving.ask("SUB orders.* current manual group g"), "+OK");
    let mut staying = Line::connect(addr);
    assert_eq!(staying.ask("SUB orders.* current manual group g"), "+OK");
    assert_eq!(leaving.ask("UNSUB orders.*"), "+OK");
    assert!(group_stat(&mut publisher, "orders.us", "g").contains("members=1"));
    assert!(group_stat(&mut publisher, "orders.eu", "g").contains("members=2"));
    // Were `leaving` still in orders.us's group, it would take one of these.
    publish(
        &mut publisher,
        &[("orders.us", 1, "c"), ("orders.us", 2, "d")],
    );
    assert_eq!(
        read_acked(&mut staying, 2),
        seen(&[("orders.us", 1, "c"), ("orders.us", 2, "d")])
    );
    // A topic created later is not the unsubscribed pattern's any more.
    publish(
        &mut publisher,
        &[("orders.asia", 0, "e"), ("orders.asia", 1, "f")],
    );
    assert_eq!(
        read_acked(&mut staying, 2),
        seen(&[("orders.asia", 0, "e"), ("orders.asia", 1, "f")])
    );
    assert_eq!(
        pattern_lines(addr),
        ["+PATTERN orders.* subscribers=0 groups=1"]
    );
    drop(staying);
    let deadline = Instant::now() + WAIT;
    while !pattern_lines(addr).is_empty() {
        assert!(Instant::now() < deadline, "a closed member's pattern stays");
    }
    // Anything sent it came before this answer.
    assert_eq!(leaving.ask("PING"), "+PONG");
}

#[test]
fn a_pull_of_a_pattern_takes_from_the_matching_topics_in_turn_up_to_its_max() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut line = Line::connect(addr);
    publish(
        &mut line,
        &[
            ("orders.eu", 0, "eu0"),
            ("orders.eu", 1, "eu1"),
            ("orders.eu", 2, "eu2"),
            ("orders.us", 0, "us0"),
            ("refunds.eu", 0, "not matched"),
        ],
    );
    let pulled = |line: &mut Line, command: &str| {
        line.send(format!("{command}\n"));
        let (msgs, count) = line.read_pull();
        assert_eq!(msgs.len() as u64, count, "{command}");
        let payload = |m: &common::line::Msg| String::from_utf8(m.payload.clone()).unwrap();
        let taken: BTreeSet<Seen> = msgs
            .iter()
            .map(|m| (m.topic.clone(), m.offset, payload(m)))
            .collect();
        assert_eq!(taken.len(), msgs.len(), "{command}: twice: {msgs:?}");
        taken
    };
    // In turn: one of orders.eu, one of orders.us, then orders.eu again.
    assert_eq!(
        pulled(&mut line, "PULL orders.* 3"),
        seen(&[
            ("orders.eu", 0, "eu0"),
            ("orders.us", 0, "us0"),
            ("orders.eu", 1, "eu1")
        ])
    );
    assert_eq!(
        pulled(&mut line, "PULL orders.* 10"),
        seen(&[("orders.eu", 2, "eu2")])
    );
    assert_eq!(pulled(&mut line, "PULL orders.*"), seen(&[]));
    // Another group has taken nothing yet; a pull of one topic shares the
    // default group with the pattern's pulls.
    assert_eq!(pulled(&mut line, "PULL orders.> 2 group audit").len(), 2);
    assert_eq!(pulled(&mut line, "PULL orders.eu"), seen(&[]));
    assert_eq!(pulled(&mut line, "PULL nothing.*"), seen(&[]));
    assert_eq!(line.ask("PING"), "+PONG");
}

#[test]
fn a_binary_group_subscribe_takes_a_pattern() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut publisher = Line::connect(addr);
    publish(&mut publisher, &[("orders.eu", 0, "before")]);
    let mut member = Raw::connect(addr);
    member.send(&group_subscribe_request("g", r#"["orders.*"]"#));
    member.expect(&SUBSCRIBED);
    member.expect_delivery("orders.eu", b"before");
    member.send(&ACK);
    let mut binary_publisher = Raw::connect(addr);
    binary_publisher.send(&PUBLISH);
    binary_publisher.send(&publish_frame("orders.us", b"later"));
    member.expect_delivery("orders.us", b"later");
    member.send(&ACK);
    let deadline = Instant::now() + WAIT;
    loop {
        let stat = group_stat(&mut publisher, "orders.us", "g");
        assert!(stat.contains("members=1"), "{stat}");
        if stat.contains("lag=0") {
            break; // the ack reached the group
        }
        assert!(Instant::now() < deadline, "the ack never counts: {stat}");
    }
}

#[test]
fn after_a_restart_on_disk_a_pattern_group_goes_on_where_each_topic_was() {
    let root = TempDir::new("pattern-groups-restart");
    let config = Config {
        storage: Storage::Disk(root.path().join("data")),
        ..config()
    };
    let broker = start_broker(&config);
    let mut publisher = Line::connect(broker.local_addr());
    let before = [
        ("orders.eu", 0, "a"),
        ("orders.eu", 1, "b"),
        ("orders.us", 0, "c"),
    ];
    publish(&mut publisher, &before);
    let mut member = Line::connect(broker.local_addr());
    assert_eq!(member.ask("SUB orders.* beginning manual group g"), "+OK");
    assert_eq!(read_acked(&mut member, 3), seen(&before));
    assert_eq!(member.ask("PING"), "+PONG", "the acks are taken");
    drop((member, publisher));
    broker.shutdown();

    let broker = start_broker(&config);
    let mut publisher = Line::connect(broker.local_addr());
    let after = [("orders.eu", 2, "d"), ("orders.us", 1, "e")];
    publish(&mut publisher, &after);
    let mut member = Line::connect(broker.local_addr());
    assert_eq!(member.ask("SUB orders.* beginning manual group g"), "+OK");
    assert_eq!(
        read_acked(&mut member, 2),
        seen(&after),
        "not a, b or c again"
    );
    // A new group on the pattern reads every topic from its beginning.
    let mut fresh = Line::connect(broker.local_addr());
    assert_eq!(fresh.ask("SUB orders.* beginning manual group h"), "+OK");
    assert_eq!(read_acked(&mut fresh, 5), both(seen(&before), seen(&after)));
    // Closed first: a client whose last ACK is still on its way when the
    // stop begins, and that does not close, holds the stop for the linger.
    drop((member, fresh, publisher));
    broker.shutdown();
}

// ---- A pattern over very many topics. ----

/// How many topics the tests below create: 20 slices of the dispatcher's
/// pattern work.
const MANY: usize = 20_000;

/// A broker with `MANY` topics, `t.0` to `t.<MANY-1>`, each holding one
/// message, created over four pipelined connections.
fn broker_with_many_topics() -> brook::server::Broker {
    many_topics_on(&config())
}

/// A broker with `config` and the topics of [`broker_with_many_topics`].
fn many_topics_on(config: &Config) -> brook::server::Broker {
    let broker = start_broker(&Config {
        max_topics: MANY + 100,
        ..config.clone()
    });
    let addr = broker.local_addr();
    let creators: Vec<_> = (0..4)
        .map(|part| {
            thread::spawn(move || {
                let names = (part..MANY).step_by(4);
                let commands: String = names.clone().map(|i| format!("PUB t.{i} m{i}\n")).collect();
                let mut socket = TcpStream::connect(addr).unwrap();
                socket.set_read_timeout(Some(WAIT)).unwrap();
                socket.write_all(commands.as_bytes()).unwrap();
                let mut replies = BufReader::new(socket);
                for _ in names {
                    let mut reply = String::new();
                    replies.read_line(&mut reply).unwrap();
                    assert_eq!(reply, "+OK 0\n");
                }
            })
        })
        .collect();
    for creator in creators {
        creator.join().unwrap();
    }
    broker
}

/// A bystander pair exchanging messages on its own thread until told to
/// stop. Each exchange waits, with a deadline, for its message to arrive:
/// joining the thread fails if one did not.
fn keep_exchanging(addr: SocketAddr) -> (Arc<AtomicBool>, thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = Arc::clone(&stop);
    let mut bystander = Bystander::new(addr);
    let thread = thread::spawn(move || {
        while !stopping.load(Ordering::Relaxed) {
            bystander.check();
        }
    });
    (stop, thread)
}

#[test]
fn a_pattern_over_many_topics_replays_each_once_while_a_bystander_is_served() {
    let broker = broker_with_many_topics();
    let addr = broker.local_addr();
    let (stop, bystander) = keep_exchanging(addr);
    let mut subscriber = Line::connect(addr);
    // The PING waits behind the SUB: its +PONG comes after the +OK, among
    // the messages the SUB replays, all of them, from both ends of the
    // range.
    subscriber.send("SUB t.* beginning\nPING\n");
    subscriber.expect_line("+OK");
    let mut replayed = BTreeSet::new();
    let mut ponged = false;
    while replayed.len() < MANY || !ponged {
        let line = subscriber.read_line();
        if line == "+PONG" && !ponged {
            ponged = true;
            continue;
        }
        let msg = subscriber.msg_after(&line);
        assert_eq!(msg.payload, format!("m{}", &msg.topic[2..]).as_bytes());
        assert!(replayed.insert(msg.topic), "a topic replayed twice");
    }
    assert!(replayed.contains("t.0") && replayed.contains(&format!("t.{}", MANY - 1)));
    // A topic created after the subscription is covered, once.
    let mut publisher = Line::connect(addr);
    assert_eq!(publisher.ask("PUB t.new late"), "+OK 0");
    subscriber.expect_msg("t.new", 0, b"late");
    stop.store(true, Ordering::Relaxed);
    bystander.join().expect("every bystander message arrives");
    assert_eq!(subscriber.stat("pattern_subscriptions"), 1);
}

#[test]
fn closing_or_unsubscribing_while_a_patterns_topics_are_matched_leaves_nothing() {
    let broker = broker_with_many_topics();
    let addr = broker.local_addr();
    let mut watcher = Line::connect(addr);

    let mut unsubscriber = Line::connect(addr);
    unsubscriber.send("SUB t.> current manual group g\nUNSUB t.>\nPING\n");
    for reply in ["+OK", "+OK", "+PONG"] {
        unsubscriber.expect_line(reply);
    }
    assert_eq!(watcher.stat("pattern_subscriptions"), 0);
    let stat = group_stat(&mut watcher, &format!("t.{}", MANY - 1), "g");
    assert!(stat.contains("members=0"), "{stat}");

    let mut closer = Line::connect(addr);
    closer.send("SUB t.* beginning\n");
    drop(closer);
    let deadline = Instant::now() + WAIT;
    while watcher.stat("pattern_subscriptions") != 0 || watcher.stat("subscriptions") != 0 {
        assert!(
            Instant::now() < deadline,
            "the closed connection's pattern stays"
        );
    }
    // Nothing of either reaches a topic created now.
    let mut publisher = Line::connect(addr);
    assert_eq!(publisher.ask("PUB t.new late"), "+OK 0");
    // Anything sent it came before this answer.
    assert_eq!(unsubscriber.ask("PING"), "+PONG");
    assert_eq!(watcher.stat("subscriptions"), 0);
}

#[test]
fn topics_lists_each_pattern_followed_with_its_subscribers_and_groups() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let mut one = Line::connect(addr);
    let mut two = Line::connect(addr);
    assert_eq!(one.ask("SUB orders.*"), "+OK");
    assert_eq!(two.ask("SUB orders.*"), "+OK");
    assert_eq!(two.ask("SUB orders.* group workers"), "+OK");
    assert_eq!(one.ask("SUB orders.> group audit"), "+OK");
    assert_eq!(two.ask("SUB orders.> group audit"), "+OK");
    let mut client = Line::connect(addr);
    assert_eq!(client.ask("PUB orders.eu x"), "+OK 0");
    client.send("TOPICS\n");
    assert_eq!(
        client.read_until_end(),
        [
            "+TOPIC orders.eu messages=1 first=0 next=1 subscribers=2",
            "+PATTERN orders.* subscribers=2 groups=1",
            "+PATTERN orders.> subscribers=0 groups=1",
        ]
    );
    assert_eq!(client.stat("pattern_subscriptions"), 5);
}

#[test]
fn a_matching_topic_with_no_room_for_the_group_refuses_the_pattern_and_undoes_it() {
    let broker = start_broker(&Config {
        max_groups_per_topic: 1,
        ..config()
    });
    let addr = broker.local_addr();
    let mut publisher = Line::connect(addr);
    publish(
        &mut publisher,
        &[("orders.aa", 0, "a"), ("orders.eu", 0, "e")],
    );
    let mut holder = Line::connect(addr);
    assert_eq!(holder.ask("SUB orders.eu group full"), "+OK");
    let refused = "-ERR too many groups: a topic holds --max-groups-per-topic 1";
    let mut member = Line::connect(addr);
    assert_eq!(member.ask("SUB orders.* manual group b"), refused);
    assert_eq!(member.ask("PULL orders.* group b"), refused);
    // orders.aa's group b, joined before orders.eu refused, is left again,
    // and the pattern is not followed: a new topic gets no group b.
    assert!(group_stat(&mut publisher, "orders.aa", "b").contains("members=0"));
    assert_eq!(member.stat("pattern_subscriptions"), 0);
    // A binary request that also names a topic exactly keeps that
    // topic's place: only the pattern's part is undone.
    let mut binary = Raw::connect(addr);
    binary.send(&group_subscribe_request("b", r#"["solo", "orders.*"]"#));
    binary.expect(&error_reply(refused.strip_prefix("-ERR ").unwrap()));
    assert!(group_stat(&mut publisher, "solo", "b").contains("members=1"));
    assert_eq!(member.stat("pattern_subscriptions"), 0);
    publish(&mut publisher, &[("orders.us", 0, "u")]);
    publisher.send("STATS\n");
    let stats = publisher.read_until_end();
    assert!(
        !stats
            .iter()
            .any(|line| line.starts_with("+STAT group orders.us")),
        "{stats:#?}"
    );
    // Anything sent it came before this answer.
    assert_eq!(member.ask("PING"), "+PONG");
}

#[test]
fn a_pattern_groups_message_waits_for_room_the_members_other_subscription_frees() {
    let broker = start_broker(&Config {
        max_inflight: 1,
        ..config()
    });
    let addr = broker.local_addr();
    let mut member = Line::connect(addr);
    assert_eq!(member.ask("SUB other manual"), "+OK");
    assert_eq!(member.ask("SUB orders.* manual group g"), "+OK");
    let mut publisher = Line::connect(addr);
    // The fan-out message fills the window of one; the group's waits.
    publish(&mut publisher, &[("other", 0, "x"), ("orders.eu", 0, "y")]);
    assert_eq!(read_acked(&mut member, 1), seen(&[("other", 0, "x")]));
    assert_eq!(read_acked(&mut member, 1), seen(&[("orders.eu", 0, "y")]));
}

#[test]
fn a_pull_of_a_pattern_over_many_topics_is_served_to_a_client_that_closed_after_asking() {
    let broker = broker_with_many_topics();
    let mut line = Line::connect(broker.local_addr());
    line.send("PULL t.> 5\n");
    line.close_write();
    let (msgs, count) = line.read_pull();
    assert_eq!((msgs.len(), count), (5, 5));
    let topics: BTreeSet<String> = msgs.into_iter().map(|msg| msg.topic).collect();
    assert_eq!(topics.len(), 5, "one message from each of five topics");
    line.expect_eof();
}

#[test]
fn a_group_message_acked_behind_a_pattern_subscribe_is_not_sent_again_after_a_close() {
    let broker = broker_with_many_topics();
    let addr = broker.local_addr();
    let mut acker = Line::connect(addr);
    assert_eq!(acker.ask("SUB q manual group g"), "+OK");
    let mut publisher = Line::connect(addr);
    publish(&mut publisher, &[("q", 0, "hello")]);
    acker.expect_msg("q", 0, b"hello");
    let mut other = Line::connect(addr);
    assert_eq!(other.ask("SUB q manual group g"), "+OK");
    // The Ack comes behind a pattern whose topics take many rounds to
    // match, and the connection closes before they are done.
    acker.send("SUB t.* current\nACK\n");
    acker.close_write();
    let deadline = Instant::now() + WAIT;
    while !group_stat(&mut publisher, "q", "g").contains("members=1") {
        assert!(Instant::now() < deadline, "the closed member stays");
    }
    // Had the Ack been lost, the message would have gone to the other
    // member as the first one left, before this PING's answer.
    assert_eq!(other.ask("PING"), "+PONG");
}

#[test]
fn thousands_of_acks_behind_a_pattern_subscribe_are_counted_and_the_connection_stays() {
    const HELD: usize = 5_000;
    let broker = many_topics_on(&Config {
        max_inflight: HELD,
        ..config()
    });
    let addr = broker.local_addr();
    let mut subscriber = Line::connect(addr);
    assert_eq!(subscriber.ask("SUB q manual"), "+OK");
    let mut publisher = Line::connect(addr);
    let messages: String = (0..HELD).map(|i| format!("PUB q m{i}\n")).collect();
    publisher.send(messages);
    for offset in 0..HELD {
        publisher.expect_line(&format!("+OK {offset}"));
        subscriber.expect_msg("q", offset as u64, format!("m{offset}").as_bytes());
    }
    let acks = "ACK\n".repeat(HELD);
    subscriber.send(format!("SUB t.* current\n{acks}PING\n"));
    subscriber.expect_line("+OK");
    subscriber.expect_line("+PONG");
    // The window is free again: the next message comes at once.
    publish(&mut publisher, &[("q", HELD as u64, "next")]);
    subscriber.expect_msg("q", HELD as u64, b"next");
}

#[test]
fn a_publish_and_a_pull_behind_a_pattern_job_are_carried_out_after_a_close() {
    let broker = broker_with_many_topics();
    let addr = broker.local_addr();
    let mut publisher = Line::connect(addr);
    publish(&mut publisher, &[("q", 0, "queued")]);
    // Behind a subscription, the connection closing before it is made.
    let mut subscriber = Line::connect(addr);
    subscriber.send("SUB t.* current\nPUB z kept\n");
    subscriber.close_write();
    let deadline = Instant::now() + WAIT;
    loop {
        publisher.send("PULL z\n");
        match publisher.read_pull() {
            (msgs, 1) => break assert_eq!(msgs[0].payload, b"kept"),
            (_, count) => assert_eq!(count, 0),
        }
        assert!(Instant::now() < deadline, "the publish was dropped");
    }
    // Behind a pull, which goes on after a close, and so does the next.
    let mut puller = Line::connect(addr);
    puller.send("PULL t.> 1\nPULL q\n");
    puller.close_write();
    assert_eq!(puller.read_pull().1, 1);
    let (msgs, count) = puller.read_pull();
    assert_eq!((msgs[0].payload.as_slice(), count), (&b"queued"[..], 1));
    puller.expect_eof();
}

#[test]
fn publishes_past_the_byte_cap_behind_a_pattern_subscribe_close_the_connection() {
    let payload = "p".repeat(1000);
    let publishes: String = (0..8).map(|_| format!("PUB z {payload}\n")).collect();
    closed_for_too_much_behind_a_pattern(&publishes);
}

#[test]
fn long_names_past_the_byte_cap_behind_a_pattern_subscribe_close_the_connection() {
    let name = "n".repeat(1000);
    let unsubscribes: String = (0..8).map(|_| format!("UNSUB {name}\n")).collect();
    closed_for_too_much_behind_a_pattern(&unsubscribes);
}

/// Sends `requests` behind a pattern subscription over many topics, on
/// a broker whose cap on what may wait behind it is 4,096 bytes (four
/// messages of 1,024), without waiting for its +OK: the connection is
/// told why in the subscription's place, then closed, and nobody else
/// notices.
fn closed_for_too_much_behind_a_pattern(requests: &str) {
    let broker = many_topics_on(&Config {
        max_message_bytes: 1024,
        ..config()
    });
    let addr = broker.local_addr();
    let mut greedy = Line::connect(addr);
    greedy.send(format!("SUB t.* current\n{requests}"));
    let error = greedy.read_line();
    assert!(
        error.starts_with("-ERR sent more than 4096 bytes"),
        "{error}"
    );
    greedy.expect_eof();
    let mut other = Line::connect(addr);
    assert_eq!(other.ask("PING"), "+PONG");
}

#[test]
fn pulls_of_a_pattern_piling_up_behind_one_not_read_close_the_connection() {
    const TOPICS: usize = 1000;
    let broker = start_broker(&Config {
        subscriber_buffer: 64 << 10,
        ..config()
    });
    let addr = broker.local_addr();
    // 16 MB in all: more than the writer and the sockets between broker
    // and client hold, so the first pull stalls while its client does
    // not read.
    let payload = "x".repeat(16 << 10);
    let mut publisher = Line::connect(addr);
    publisher.send(
        (0..TOPICS)
            .map(|i| format!("PUB p.{i} {payload}\n"))
            .collect::<String>(),
    );
    for _ in 0..TOPICS {
        publisher.expect_line("+OK 0");
    }
    // Each queued pull keeps the 1,000 topics it matches.
    let mut puller = TcpStream::connect(addr).unwrap();
    puller
        .write_all("PULL p.*\n".repeat(1000).as_bytes())
        .unwrap();
    puller.set_read_timeout(Some(WAIT)).unwrap();
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        match std::io::Read::read(&mut puller, &mut chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the connection was not closed: {e}"),
        }
    }
    assert_eq!(publisher.ask("PING"), "+PONG");
}

#[test]
fn unsubscribing_a_group_pattern_gives_back_what_it_held_of_those_groups_only() {
    let broker = start_broker(&Config {
        max_inflight: 2,
        ..config()
    });
    let addr = broker.local_addr();
    let mut leaving = Line::connect(addr);
    assert_eq!(leaving.ask("SUB orders.eu manual group g"), "+OK");
    assert_eq!(leaving.ask("SUB orders.* manual group g"), "+OK");
    let mut publisher = Line::connect(addr);
    publish(
        &mut publisher,
        &[("orders.eu", 0, "kept"), ("orders.us", 0, "given back")],
    );
    let held: BTreeSet<String> = (0..2).map(|_| leaving.read_msg().topic).collect();
    assert_eq!(held.len(), 2);
    let mut staying = Line::connect(addr);
    assert_eq!(staying.ask("SUB orders.* manual group g"), "+OK");
    // orders.us's place was the pattern's alone: its message goes to the
    // other member; orders.eu's, named, stays with `leaving`.
    assert_eq!(leaving.ask("UNSUB orders.*"), "+OK");
    assert_eq!(
        read_acked(&mut staying, 1),
        seen(&[("orders.us", 0, "given back")])
    );
    assert_eq!(staying.ask("PING"), "+PONG");
}

#[test]
fn a_connection_closed_while_its_patterns_topics_are_matched_is_let_go_at_once() {
    let broker = many_topics_on(&Config {
        linger: std::time::Duration::from_secs(600),
        ..config()
    });
    let mut closer = Line::connect(broker.local_addr());
    closer.send("SUB t.* beginning\n");
    closer.close_write();
    // Its session ends, and with it the writer, which closes the socket
    // after saying the subscription was not made; nothing waits for the
    // linger.
    closer.expect_line(CLOSED_BEFORE);
    closer.expect_eof();
}

/// The linger is shorter than matching 20,000 topics takes (about 22 ms
/// in a debug build, more under load), but long enough for the writer,
/// once the pull's frames reach it, to be given a core and write them: at
/// 1 ms, a busy machine cut off 2 writers in 90 before their first byte.
#[test]
fn a_pull_whose_topics_take_longer_to_match_than_the_linger_is_still_served() {
    let broker = many_topics_on(&Config {
        linger: std::time::Duration::from_millis(10),
        ..config()
    });
    let mut line = Line::connect(broker.local_addr());
    line.send("PULL t.> 5\n");
    line.close_write();
    let (msgs, count) = line.read_pull();
    assert_eq!((msgs.len(), count), (5, 5));
    line.expect_eof();
}

/// What a request waiting behind a pattern subscription is answered when
/// its connection closes before the subscription is made.
const CLOSED_BEFORE: &str = "-ERR connection closed before the subscription was made";

#[test]
fn a_client_that_half_closes_during_a_patterns_rounds_gets_every_answer_in_order() {
    let broker = broker_with_many_topics();
    let addr = broker.local_addr();
    let mut publisher = Line::connect(addr);
    publish(&mut publisher, &[("w", 0, "waiting")]);
    // Behind a subscription: the close, far sooner than 20,000 topics
    // are matched, leaves it unmade, and a SUB behind it too. (Were it
    // made first, both would be +OK: the order is what is checked.)
    let mut subscriber = Line::connect(addr);
    subscriber.send("SUB t.* current\nPUB z kept\nPING\nSUB y\nPULL z 1\n");
    subscriber.close_write();
    let status = subscriber.read_line();
    assert!(status == "+OK" || status == CLOSED_BEFORE, "{status}");
    subscriber.expect_line("+OK 0");
    subscriber.expect_line("+PONG");
    subscriber.expect_line(&status);
    let (msgs, count) = subscriber.read_pull();
    assert_eq!((msgs[0].payload.as_slice(), count), (&b"kept"[..], 1));
    subscriber.expect_eof();
    // Behind a pull, which goes on after the close.
    let mut puller = Line::connect(addr);
    puller.send("PULL t.> 1\nPING\nSUB y\nPULL w 1\n");
    puller.close_write();
    assert_eq!(puller.read_pull().1, 1);
    puller.expect_line("+PONG");
    let answer = puller.read_line();
    assert!(answer == "+OK" || answer == CLOSED_BEFORE, "{answer}");
    let (msgs, count) = puller.read_pull();
    assert_eq!((msgs[0].payload.as_slice(), count), (&b"waiting"[..], 1));
    puller.expect_eof();
}
