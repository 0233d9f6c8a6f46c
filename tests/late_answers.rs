//! An Ack means done, however late it comes: answers are matched to
//! deliveries in the order they were written, timed-out deliveries
//! included, and an Ack credited to any delivery of a message settles that
//! message. It is never sent again on that subscription, never counted
//! toward `--max-deliveries`, and never dead-lettered. A late Nack changes
//! nothing, since the timeout already sent the message again. Checked in
//! both protocols and for consumer-group members.
//!
//! These tests use short timers (`timer_config`); to assert that nothing
//! more arrives they wait three ack timeouts.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use brook::config::Config;
use common::broker::{start_broker, timer_config};
use common::client::publish_all;
use common::frames::{subscribe_request, ACK, BEGINNING, NACK, SUBSCRIBED};
use common::line::Line;
use common::raw::{raw_subscriber, Raw};
use common::{QUIET, WAIT};

/// Long enough for any redelivery a bug would cause to show up.
fn quiet_window(config: &Config) -> Duration {
    3 * config.ack_timeout.max(config.ack_delay)
}

/// Asserts that no dead-letter topic was ever created for `topic`.
#[track_caller]
fn assert_no_dead_letters(addr: SocketAddr, topic: &str) {
    let mut line = Line::connect(addr);
    line.send("TOPICS\n");
    let topics = line.read_until_end();
    let prefix = format!("+TOPIC {topic}.dlq ");
    assert!(
        !topics.iter().any(|line| line.starts_with(&prefix)),
        "{topic}.dlq exists: {topics:?}"
    );
}

/// A binary subscriber to `t` that was sent `payload` twice: its first
/// delivery went unanswered for the ack timeout.
fn timed_out_once(addr: SocketAddr, payload: &[u8]) -> Raw {
    let mut subscriber = raw_subscriber(addr, r#"["t"]"#);
    publish_all(addr, &[("t", payload)]);
    subscriber.expect_delivery("t", payload);
    subscriber.expect_delivery("t", payload); // the ack timeout passed
    subscriber
}

/// willdot's `TestSendsDataToTopicSubscriberDoesntAckMessage`: the first
/// delivery goes unanswered, the redelivery is acked, then silence. The
/// one Ack is credited to the first delivery (answers go in write order),
/// and settles the message: exactly two deliveries, no dead letter.
#[test]
fn an_acked_redelivery_after_a_timeout_is_the_last_one() {
    let config = timer_config();
    let broker = start_broker(&config);
    let mut subscriber = timed_out_once(broker.local_addr(), b"once acked");
    subscriber.send(&ACK);
    subscriber.expect_silence(quiet_window(&config));
    assert_no_dead_letters(broker.local_addr(), "t");
}

/// The late Ack settles the message; the Nack that answers the
/// redelivery then changes nothing, and gets no error.
#[test]
fn a_late_ack_settles_the_message_whatever_the_redelivery_gets() {
    let config = timer_config();
    let broker = start_broker(&config);
    let mut subscriber = timed_out_once(broker.local_addr(), b"slow");
    subscriber.send(&[ACK, NACK].concat());
    subscriber.expect_silence(quiet_window(&config));
}

/// A Nack credited to a delivery that already timed out does not send the
/// message again: the timeout did. So one refusal, one redelivery.
#[test]
fn a_late_nack_does_not_send_the_message_twice() {
    let config = timer_config();
    let broker = start_broker(&config);
    let mut subscriber = timed_out_once(broker.local_addr(), b"slow");
    subscriber.send(&NACK); // late: answers the first delivery
    subscriber.send(&ACK); // answers the second
    subscriber.expect_silence(quiet_window(&config));
}

/// The same in the line protocol's manual mode.
#[test]
fn a_manual_line_subscriber_acking_the_redelivery_is_done() {
    let config = timer_config();
    let broker = start_broker(&config);
    let addr = broker.local_addr();
    let mut client = Line::connect(addr);
    assert_eq!(client.ask("SUB t beginning manual"), "+OK");
    assert_eq!(Line::connect(addr).ask("PUB t hello"), "+OK 0");

    client.expect_msg("t", 0, b"hello");
    client.expect_msg("t", 0, b"hello"); // the ack timeout passed
    client.send("ACK\n");
    client.expect_silence(quiet_window(&config));
    assert_no_dead_letters(addr, "t");
}

/// The last delivery allowed timed out: the message is not given up while
/// its answer may still come, and a late Ack settles it.
#[test]
fn a_late_ack_of_the_last_delivery_keeps_it_out_of_the_dead_letters() {
    let config = Config {
        max_deliveries: 2,
        ..timer_config()
    };
    let broker = start_broker(&config);
    let addr = broker.local_addr();
    let mut subscriber = timed_out_once(addr, b"late");
    // The second, the last allowed, times out too; no third comes.
    subscriber.expect_silence(quiet_window(&config));
    subscriber.send(&[ACK, ACK].concat());
    subscriber.expect_silence(quiet_window(&config));
    assert_no_dead_letters(addr, "t");
}

/// Where the protocol is ambiguous: answers carry no delivery id, so a
/// client that skips an answer has its later answers credited to the
/// deliveries before the ones it meant. brook credits strictly in write
/// order (docs/PROTOCOL.md §4): here the two Acks meant for b and c settle
/// a and b, and c, left unanswered, comes again after the ack timeout.
#[test]
fn a_skipped_answer_shifts_later_answers_onto_earlier_deliveries() {
    let config = timer_config();
    let broker = start_broker(&config);
    let addr = broker.local_addr();
    let mut subscriber = raw_subscriber(addr, r#"["t"]"#);
    publish_all(addr, &[("t", b"a"), ("t", b"b"), ("t", b"c")]);
    for payload in [b"a", b"b", b"c"] {
        subscriber.expect_delivery("t", payload);
    }
    subscriber.send(&[ACK, ACK].concat()); // meant for b and c
    subscriber.expect_delivery("t", b"c");
    subscriber.send(&ACK);
    subscriber.expect_silence(quiet_window(&config));
}

/// In a group: member a's delivery times out and the message goes to
/// member b, its last delivery allowed. a's late Ack settles it for the
/// group, so b's Nack that follows neither sends it again nor gives it up.
#[test]
fn a_late_ack_in_a_group_outweighs_the_next_members_nack() {
    let config = Config {
        max_deliveries: 2,
        ..timer_config()
    };
    let broker = start_broker(&config);
    let addr = broker.local_addr();
    let mut a = Line::connect(addr);
    assert_eq!(a.ask("SUB t beginning manual group g"), "+OK");
    let mut b = Line::connect(addr);
    assert_eq!(b.ask("SUB t beginning manual group g"), "+OK");
    assert_eq!(Line::connect(addr).ask("PUB t job"), "+OK 0");

    a.expect_msg("t", 0, b"job");
    b.expect_msg("t", 0, b"job"); // a's ack timeout passed
    a.send("ACK\n");
    assert_eq!(a.ask("PING"), "+PONG"); // the late ack is taken before b's nack
    b.send("NACK\n");
    b.expect_silence(quiet_window(&config));
    a.expect_silence(QUIET);
    assert_no_dead_letters(addr, "t");
}

// ---- A consumer that answers every delivery, in order, but late. ----

/// How a late consumer speaks to the broker.
#[derive(Debug, Clone, Copy)]
enum Wire {
    /// A binary subscriber, as willdot's Go client.
    Binary,
    /// A line-protocol `manual` subscriber.
    Line,
    /// The only member of a consumer group, over the line protocol.
    GroupMember,
}

/// A consumer that answers each delivery it reads, in the order it read
/// them, one at a time, each `lateness` after it starts on it (a slow
/// handler, longer than the ack timeout): Ack for a message with an odd
/// number, Nack for an even one. Its reader thread reports the number of
/// every delivery to the test.
struct LateConsumer {
    stream: TcpStream,
    deliveries: mpsc::Receiver<u64>,
    /// Dropped with the consumer: the handler stops at once.
    _stop: mpsc::Sender<()>,
}

impl LateConsumer {
    fn start(addr: SocketAddr, wire: Wire, lateness: Duration) -> LateConsumer {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        match wire {
            Wire::Binary => {
                stream
                    .write_all(&subscribe_request(r#"["t"]"#, &BEGINNING))
                    .unwrap();
                let mut status = [0; 2];
                reader.read_exact(&mut status).unwrap();
                assert_eq!(status, SUBSCRIBED);
            }
            Wire::Line | Wire::GroupMember => {
                let group = if matches!(wire, Wire::GroupMember) {
                    " group g"
                } else {
                    ""
                };
                let command = format!("SUB t beginning manual{group}\n");
                stream.write_all(command.as_bytes()).unwrap();
                let mut reply = String::new();
                reader.read_line(&mut reply).unwrap();
                assert_eq!(reply, "+OK\n");
            }
        }
        let (seen, deliveries) = mpsc::channel();
        let (to_answer, answers) = mpsc::channel::<u64>();
        thread::spawn(move || {
            // Ends when the test shuts the socket (or the broker closes it).
            while let Some(number) = read_delivery(&mut reader, wire) {
                let _ = seen.send(number);
                if to_answer.send(number).is_err() {
                    break;
                }
            }
        });
        let mut answerer = stream.try_clone().unwrap();
        let (stop, stopped) = mpsc::channel::<()>();
        thread::spawn(move || {
            for number in answers {
                // The handler's slowness is what is under test: it works
                // on each delivery for `lateness`, unless the test ends.
                if stopped.recv_timeout(lateness) != Err(RecvTimeoutError::Timeout) {
                    break;
                }
                let answer: &[u8] = match (wire, number % 2 == 1) {
                    (Wire::Binary, true) => &ACK,
                    (Wire::Binary, false) => &NACK,
                    (_, true) => b"ACK\n",
                    (_, false) => b"NACK\n",
                };
                if answerer.write_all(answer).is_err() {
                    break;
                }
            }
        });
        LateConsumer {
            stream,
            deliveries,
            _stop: stop,
        }
    }
}

impl Drop for LateConsumer {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// Reads one delivery of a message published as `m<number>`, and returns
/// the number; `None` once the connection is shut or quiet for [`WAIT`].
fn read_delivery(reader: &mut BufReader<TcpStream>, wire: Wire) -> Option<u64> {
    let payload = match wire {
        Wire::Binary => {
            let mut topic_len = [0; 2];
            reader.read_exact(&mut topic_len).ok()?;
            let mut topic = vec![0; u16::from_be_bytes(topic_len) as usize];
            reader.read_exact(&mut topic).ok()?;
            let mut payload_len = [0; 8];
            reader.read_exact(&mut payload_len).ok()?;
            let mut payload = vec![0; u64::from_be_bytes(payload_len) as usize];
            reader.read_exact(&mut payload).ok()?;
            payload
        }
        Wire::Line | Wire::GroupMember => {
            let mut header = String::new();
            reader.read_line(&mut header).ok()?;
            let length = header
                .trim_end()
                .rsplit(' ')
                .next()?
                .parse::<usize>()
                .ok()?;
            let mut payload = vec![0; length + 1];
            reader.read_exact(&mut payload).ok()?;
            payload.pop(); // the line feed after every payload
            payload
        }
    };
    let text = String::from_utf8(payload).ok()?;
    text.strip_prefix('m')?.parse().ok()
}

/// Messages `m0` to `m3` to a late consumer: the odd ones are acked, every
/// time late, and must never be given up; the even ones, nacked every time,
/// must come exactly `--max-deliveries` times and then be given up. An
/// answer credited to the wrong message would break one or the other.
fn late_consumer_keeps_answers_matched(wire: Wire) {
    let config = Config {
        ack_delay: Duration::from_millis(50),
        ack_timeout: Duration::from_millis(100),
        max_deliveries: 3,
        ..timer_config()
    };
    let broker = start_broker(&config);
    let addr = broker.local_addr();
    let consumer = LateConsumer::start(addr, wire, config.ack_timeout * 3 / 2);
    let mut operator = Line::connect_with_patience(addr, 4 * WAIT);
    assert_eq!(operator.ask("SUB t.dlq beginning"), "+OK");
    let mut publisher = Line::connect(addr);
    for number in 0..4 {
        assert_eq!(
            publisher.ask(&format!("PUB t m{number}")),
            format!("+OK {number}")
        );
    }

    // The evens are given up, one dead letter each.
    let mut given_up: Vec<u64> = (0..2)
        .map(|_| {
            let letter = String::from_utf8(operator.read_msg().payload).unwrap();
            let offset = letter.split(' ').find_map(|f| f.strip_prefix("offset="));
            offset
                .expect("a dead letter names its offset")
                .parse()
                .unwrap()
        })
        .collect();
    given_up.sort_unstable();
    assert_eq!(given_up, [0, 2], "{wire:?}: the dead letters");

    // Then the deliveries stop; count them.
    let mut deliveries: BTreeMap<u64, u32> = BTreeMap::new();
    let give_up_at = Instant::now() + 4 * WAIT;
    while let Ok(number) = consumer.deliveries.recv_timeout(quiet_window(&config)) {
        *deliveries.entry(number).or_default() += 1;
        assert!(
            Instant::now() < give_up_at,
            "deliveries never stop: {deliveries:?}"
        );
    }
    for number in 0..4 {
        let count = deliveries.get(&number).copied().unwrap_or(0);
        if number % 2 == 0 {
            assert_eq!(
                count, config.max_deliveries,
                "{wire:?}: m{number} was nacked every time: {deliveries:?}"
            );
        } else {
            assert!(count >= 1, "{wire:?}: m{number} never came: {deliveries:?}");
        }
    }
    operator.expect_silence(quiet_window(&config));
}

#[test]
fn a_late_binary_consumer_keeps_its_answers_matched() {
    late_consumer_keeps_answers_matched(Wire::Binary);
}

#[test]
fn a_late_line_consumer_keeps_its_answers_matched() {
    late_consumer_keeps_answers_matched(Wire::Line);
}

#[test]
fn a_late_group_member_keeps_its_answers_matched() {
    late_consumer_keeps_answers_matched(Wire::GroupMember);
}
