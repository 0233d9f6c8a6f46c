//! Consumer groups: the members of a group share a topic's messages, each
//! message going to one member at a time; what a member nacks, lets time
//! out or leaves behind when it goes goes to the others; two groups each
//! get everything; fan-out subscribers of the topic are not affected; a
//! message a group gives up goes to the dead-letter topic; and `STATS`
//! shows each group's members, position and lag.
//!
//! Members speak the line protocol (`SUB <topic> beginning manual group
//! <name>`), each on a thread of its own that reports every delivery on a
//! channel and answers it as the test says; one test adds a binary member
//! (action 7, brook's extension). Nothing sleeps: the test waits on that
//! channel, with a deadline.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use brook::config::Config;
use brook::wire::request::StartAt;
use common::broker::{config, start_broker};
use common::client::{expect_next_ack, publish_all, subscriber};
use common::line::Line;
use common::{QUIET, WAIT};

/// What a member does with a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Ack,
    /// Nack the message whose payload is this; ack the others.
    NackPayload(&'static [u8]),
    /// Answer nothing.
    Nothing,
}

/// A delivery a member received: the member, the offset, the payload.
type Received = (usize, u64, Vec<u8>);

/// A group member on its own thread.
struct Member {
    /// For shutting the member's socket down from the test.
    socket: TcpStream,
    thread: JoinHandle<()>,
}

impl Member {
    /// Joins `group` of `topic` from the beginning, with manual acks, and
    /// reports every delivery on `received`, tagged `id`.
    fn join(
        addr: SocketAddr,
        topic: &str,
        group: &str,
        id: usize,
        answer: Answer,
        received: Sender<Received>,
    ) -> Member {
        let mut socket = TcpStream::connect(addr).unwrap();
        socket.set_read_timeout(Some(WAIT)).unwrap();
        let command = format!("SUB {topic} beginning manual group \"{group}\"\n");
        socket.write_all(command.as_bytes()).unwrap();
        let mut reader = BufReader::new(socket.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, "+OK\n");
        socket.set_read_timeout(None).unwrap();
        let writer = socket.try_clone().unwrap();
        let thread = thread::spawn(move || serve(reader, writer, id, answer, &received));
        Member { socket, thread }
    }

    /// Closes the member's connection and waits for its thread.
    fn leave(self) {
        let _ = self.socket.shutdown(Shutdown::Both);
        self.thread.join().unwrap();
    }
}

/// Reads `MSG <topic> <offset> <n>` blocks until the connection ends,
/// reporting and answering each.
fn serve(
    mut reader: BufReader<TcpStream>,
    mut writer: TcpStream,
    id: usize,
    answer: Answer,
    received: &Sender<Received>,
) {
    let mut header = String::new();
    while matches!(reader.read_line(&mut header), Ok(n) if n > 0) {
        let fields: Vec<&str> = header.split_whitespace().collect();
        let [_, _, offset, len] = fields[..] else {
            panic!("not a delivery: {header:?}");
        };
        let mut payload = vec![0; len.parse::<usize>().unwrap() + 1];
        if reader.read_exact(&mut payload).is_err() {
            return;
        }
        payload.pop(); // the `\n` after the payload
        let reply: &[u8] = match answer {
            Answer::Ack => b"ACK\n",
            Answer::NackPayload(nacked) if payload == nacked => b"NACK\n",
            Answer::NackPayload(_) => b"ACK\n",
            Answer::Nothing => b"",
        };
        if writer.write_all(reply).is_err() {
            return;
        }
        let _ = received.send((id, offset.parse().unwrap(), payload));
        header.clear();
    }
}

/// Publishes `m0`, `m1`, ... `m{count - 1}` to `topic`.
fn publish_many(addr: SocketAddr, topic: &str, count: u64) {
    publish_many_from(addr, topic, 0..count);
}

/// Publishes `m{i}` to `topic` for each `i` in `range`, and returns once
/// the broker has stored them all.
fn publish_many_from(addr: SocketAddr, topic: &str, range: std::ops::Range<u64>) {
    let payloads: Vec<String> = range.map(|i| format!("m{i}")).collect();
    let messages: Vec<(&str, &[u8])> = payloads.iter().map(|p| (topic, p.as_bytes())).collect();
    publish_all(addr, &messages);
}

/// Receives deliveries until every offset in `0..count` has arrived at
/// least once; returns each member's offsets, in arrival order, and how
/// many deliveries there were.
fn collect(received: &Receiver<Received>, count: u64) -> (BTreeMap<usize, Vec<u64>>, usize) {
    collect_from(received, 0..count)
}

/// [`collect`] for the offsets in `range`.
fn collect_from(
    received: &Receiver<Received>,
    range: std::ops::Range<u64>,
) -> (BTreeMap<usize, Vec<u64>>, usize) {
    let count = range.end - range.start;
    let mut by_member: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let mut deliveries = 0;
    while (seen.len() as u64) < count {
        let (member, offset, payload) = received
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("only {} of {count} offsets arrived", seen.len()));
        assert_eq!(payload, format!("m{offset}").into_bytes());
        assert!(
            range.contains(&offset),
            "offset {offset} is not in {range:?}"
        );
        by_member.entry(member).or_default().push(offset);
        seen.insert(offset);
        deliveries += 1;
    }
    (by_member, deliveries)
}

#[test]
fn three_members_split_thirty_thousand_messages_once_each() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let (sender, received) = mpsc::channel();
    let members: Vec<Member> = (0..3)
        .map(|id| Member::join(addr, "jobs", "workers", id, Answer::Ack, sender.clone()))
        .collect();
    publish_many(addr, "jobs", 30_000);

    let (by_member, deliveries) = collect(&received, 30_000);
    assert_eq!(deliveries, 30_000, "a message was delivered twice");
    for (member, offsets) in &by_member {
        assert!(
            offsets.len() >= 5_000,
            "member {member} got only {} of 30,000",
            offsets.len()
        );
        assert!(offsets.windows(2).all(|w| w[0] < w[1]), "in order");
    }
    assert_eq!(by_member.len(), 3);
    members.into_iter().for_each(Member::leave);
    assert!(received.try_recv().is_err(), "nothing more");
}

/// A member that takes messages and then goes away without answering:
/// everything it had goes to the other member.
#[test]
fn what_a_member_leaves_unanswered_goes_to_the_others() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let (sender, received) = mpsc::channel();
    let silent = Member::join(addr, "jobs", "workers", 0, Answer::Nothing, sender.clone());
    let worker = Member::join(addr, "jobs", "workers", 1, Answer::Ack, sender);
    publish_many(addr, "jobs", 200);

    let (by_member, _) = collect(&received, 200);
    let taken = by_member[&0].len();
    assert!(taken > 0, "the silent member got nothing");
    silent.leave();
    // Each of the silent member's messages now reaches the worker.
    let mut redelivered = BTreeSet::new();
    while redelivered.len() < taken {
        let (member, offset, _) = received.recv_timeout(WAIT).expect("a redelivery");
        assert_eq!(member, 1);
        assert!(by_member[&0].contains(&offset), "offset {offset} again");
        redelivered.insert(offset);
    }
    worker.leave();
}

#[test]
fn two_groups_each_get_everything_and_fan_out_is_unaffected() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let (first_sender, first) = mpsc::channel();
    let (second_sender, second) = mpsc::channel();
    let members = [
        Member::join(addr, "jobs", "billing", 0, Answer::Ack, first_sender),
        Member::join(addr, "jobs", "audit", 1, Answer::Ack, second_sender.clone()),
        Member::join(addr, "jobs", "audit", 2, Answer::Ack, second_sender),
    ];
    let mut watcher = subscriber(addr, &["jobs"], StartAt::Beginning);
    publish_many(addr, "jobs", 2_000);

    let (billing, deliveries) = collect(&first, 2_000);
    assert_eq!((billing.len(), deliveries), (1, 2_000));
    let (audit, deliveries) = collect(&second, 2_000);
    assert_eq!((audit.len(), deliveries), (2, 2_000));
    for i in 0..2_000 {
        expect_next_ack(&mut watcher, "jobs", format!("m{i}").as_bytes());
    }
    members.into_iter().for_each(Member::leave);
}

/// A message nacked by whichever member gets it is delivered at most
/// `--max-deliveries` times by the group as a whole, then lands in the
/// dead-letter topic.
#[test]
fn a_message_the_group_nacks_five_times_lands_in_the_dead_letter_topic() {
    let config = Config {
        ack_timeout: Duration::from_secs(30),
        ..config()
    };
    assert_eq!(config.max_deliveries, 5, "the default");
    let broker = start_broker(&config);
    let addr = broker.local_addr();
    let mut operator = subscriber(addr, &["jobs.dlq"], StartAt::Beginning);
    let (sender, received) = mpsc::channel();
    let members = [
        Member::join(
            addr,
            "jobs",
            "workers",
            0,
            Answer::NackPayload(b"m1"),
            sender.clone(),
        ),
        Member::join(
            addr,
            "jobs",
            "workers",
            1,
            Answer::NackPayload(b"m1"),
            sender,
        ),
    ];
    publish_many(addr, "jobs", 3);

    let letter = b"dead-letter topic=jobs offset=1 deliveries=5\nm1";
    expect_next_ack(&mut operator, "jobs.dlq", letter);
    members.into_iter().for_each(Member::leave);
    let deliveries: Vec<u64> = received.try_iter().map(|(_, offset, _)| offset).collect();
    assert_eq!(deliveries.iter().filter(|&&o| o == 1).count(), 5);
    assert_eq!(deliveries.iter().filter(|&&o| o != 1).count(), 2);
}

/// `+STAT group <topic> <group> members=<n> position=<offset> lag=<n>`:
/// a group whose one member answers nothing holds its position at the
/// first message, and lags by everything.
#[test]
fn stats_show_each_group_with_its_members_position_and_lag() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let (silent_sender, silent_received) = mpsc::channel();
    let (worker_sender, worker_received) = mpsc::channel();
    let silent = Member::join(addr, "jobs", "slow team", 0, Answer::Nothing, silent_sender);
    let worker = Member::join(addr, "jobs", "fast", 1, Answer::Ack, worker_sender);
    publish_many(addr, "jobs", 10);
    collect(&silent_received, 10);
    collect(&worker_received, 10);
    let mut line = Line::connect(addr);
    line.send("STATS\n");
    let stats = line.read_until_end();
    let groups: Vec<&String> = stats
        .iter()
        .filter(|l| l.starts_with("+STAT group"))
        .collect();
    assert!(
        groups.contains(&&"+STAT group jobs \"slow team\" members=1 position=0 lag=10".to_owned()),
        "{stats:#?}"
    );
    // Its acks may or may not have been applied yet: only its members.
    assert!(
        groups
            .iter()
            .any(|l| l.starts_with("+STAT group jobs fast members=1 ")),
        "{stats:#?}"
    );
    silent.leave();
    worker.leave();
}

/// A binary client joins a group with action 7, and shares the group's
/// messages with a line-protocol member.
#[test]
fn binary_and_line_members_share_one_group() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    let (sender, received) = mpsc::channel();
    let mut binary = brook::client::Subscriber::connect(addr).unwrap();
    binary
        .subscribe_group(&["jobs"], "mixed", StartAt::Beginning)
        .unwrap();
    let line = Member::join(addr, "jobs", "mixed", 0, Answer::Ack, sender.clone());
    let done = Arc::new(AtomicBool::new(false));
    let stop = done.clone();
    let binary = thread::spawn(move || {
        // Polls with a short timeout only to notice the end of the test.
        while !stop.load(Ordering::SeqCst) {
            let Some(delivery) = binary.recv_timeout(Duration::from_millis(50)).unwrap() else {
                continue;
            };
            let offset = String::from_utf8(delivery.payload.clone()).unwrap()[1..].parse();
            binary.ack().unwrap();
            let _ = sender.send((1, offset.unwrap(), delivery.payload));
        }
    });
    publish_many(addr, "jobs", 1_000);

    let (by_member, deliveries) = collect(&received, 1_000);
    assert_eq!(deliveries, 1_000, "a message was delivered twice");
    assert_eq!(by_member.len(), 2, "both members got messages");
    done.store(true, Ordering::SeqCst);
    binary.join().unwrap();
    line.leave();
}

/// A `PULL` takes from a group too: the group `default` unless it names
/// one. Pulled messages are done once written, so a pull and a member of
/// the same group never get the same message.
#[test]
fn pulls_take_from_a_group_shared_with_its_members() {
    let broker = start_broker(&config());
    let addr = broker.local_addr();
    publish_many(addr, "jobs", 10);
    let mut puller = Line::connect(addr);
    puller.send("PULL jobs 4\n");
    let (pulled, count) = puller.read_pull();
    let offsets: Vec<u64> = pulled.iter().map(|m| m.offset).collect();
    assert_eq!((offsets, count), (vec![0, 1, 2, 3], 4));

    let (sender, received) = mpsc::channel();
    let member = Member::join(addr, "jobs", "default", 0, Answer::Ack, sender);
    let (by_member, deliveries) = collect_from(&received, 4..10);
    assert_eq!((by_member[&0].len(), deliveries), (6, 6));
    publish_many_from(addr, "jobs", 10..11);
    assert_eq!(
        received.recv_timeout(WAIT).expect("the member gets it").1,
        10
    );
    puller.send("PULL jobs\n");
    assert_eq!(puller.read_pull().1, 0, "the member took everything");

    puller.send("PULL jobs 3 group other\n");
    let (pulled, _) = puller.read_pull();
    let offsets: Vec<u64> = pulled.iter().map(|m| m.offset).collect();
    assert_eq!(offsets, [0, 1, 2], "a new group starts at the beginning");
    member.leave();
}

/// A group that only pulls has no members, and does not hold retention
/// back: what retention dropped is skipped, and the next pull starts at
/// the oldest message kept.
#[test]
fn a_group_without_members_does_not_hold_retention_back() {
    let config = Config {
        retention_bytes: Some(40),
        ..config()
    };
    let broker = start_broker(&config);
    let addr = broker.local_addr();
    publish_many(addr, "jobs", 10);
    let mut puller = Line::connect(addr);
    puller.send("PULL jobs 1\n");
    assert_eq!(puller.read_pull().0[0].offset, 0);
    publish_many_from(addr, "jobs", 10..100);
    puller.send("PULL jobs 1\n");
    let (pulled, _) = puller.read_pull();
    let first_kept = 100 - 40 / 3; // "m10".."m99" are 3 bytes each
    assert!(
        pulled[0].offset >= first_kept,
        "pulled offset {}",
        pulled[0].offset
    );
}

/// A group's deliveries keep the order a connection's replies promise:
/// they wait behind a pull that is still streaming (its `+END` first), and
/// behind the `+OK` of the `SUB` that joined the group. A small window
/// makes the pull stream in several rounds.
#[test]
fn group_deliveries_wait_behind_a_streaming_pull_and_their_own_ok() {
    let config = Config {
        max_inflight: 4,
        ..config()
    };
    let broker = start_broker(&config);
    let addr = broker.local_addr();
    publish_many(addr, "p", 10);
    publish_many(addr, "g", 3);
    let mut client = Line::connect(addr);
    client.send("PULL p\nSUB g beginning manual group x\n");
    let (pulled, count) = client.read_pull();
    let offsets: Vec<u64> = pulled.iter().map(|msg| msg.offset).collect();
    assert_eq!(
        (offsets.as_slice(), count),
        (&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9][..], 10)
    );
    assert!(pulled.iter().all(|msg| msg.topic == "p"), "{pulled:?}");
    client.expect_line("+OK");
    for offset in 0..3 {
        let msg = client.read_msg();
        assert_eq!((msg.topic.as_str(), msg.offset), ("g", offset));
        client.send("ACK\n");
    }
    client.expect_silence(QUIET);
}
