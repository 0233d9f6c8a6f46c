//! Dead letters: a message given up after `--max-deliveries` (nacked every
//! time, or never answered by a consumer that went away) is appended to its topic's dead-letter topic,
//! `<topic>.dlq`, as one line that says where it came from and how often it
//! was delivered, then the payload as it was. Other subscribers of the topic
//! are not affected, and `--dead-letter off` drops the message as before.
//! A dead letter that cannot be stored leaves its message where it was, to
//! be offered again (the full disk's case is in `disk_full.rs`).

mod common;

use std::process::Command;
use std::time::Duration;

use brook::config::Config;
use brook::wire::request::StartAt;
use common::broker::{start_broker, timer_config};
use common::client::{expect_next, expect_next_ack, expect_nothing, next, publish_all, subscriber};
use common::line::Line;
use common::process::BrookProcess;
use common::{QUIET, WAIT};

/// The dead letter brook writes for `payload`, given up at `offset` of
/// `topic` (as the line protocol spells the name) after `deliveries`.
fn letter(topic: &str, offset: u64, deliveries: u32, payload: &[u8]) -> Vec<u8> {
    let line = format!("dead-letter topic={topic} offset={offset} deliveries={deliveries}\n");
    [line.as_bytes(), payload].concat()
}

#[test]
fn a_message_nacked_max_deliveries_times_lands_in_the_dead_letter_topic() {
    let config = timer_config();
    assert_eq!(config.max_deliveries, 5, "the default");
    let broker = start_broker(&config);
    let addr = broker.local_addr();
    let mut nacker = subscriber(addr, &["orders"], StartAt::Current);
    let mut fan_out = subscriber(addr, &["orders"], StartAt::Current);
    let mut operator = subscriber(addr, &["orders.dlq"], StartAt::Beginning);
    publish_all(addr, &[("orders", b"first"), ("orders", b"poison")]);
    // The other subscriber of the topic acks each message once, and is
    // done with it whatever the first one does.
    expect_next_ack(&mut fan_out, "orders", b"first");
    expect_next_ack(&mut fan_out, "orders", b"poison");

    expect_next_ack(&mut nacker, "orders", b"first");
    for _ in 0..5 {
        expect_next(&mut nacker, "orders", b"poison");
        nacker.nack().unwrap();
    }
    nacker.flush().unwrap(); // the last nack goes with no read after it
    let expected = letter("orders", 1, 5, b"poison");
    expect_next_ack(&mut operator, "orders.dlq", &expected);
    expect_nothing(&mut fan_out, QUIET);
    expect_nothing(&mut nacker, QUIET);
    expect_nothing(&mut operator, QUIET);
}

/// A consumer that never answers: its last delivery times out, and the
/// message is given up when the consumer goes away without answering (its
/// answer, however late, could still have been an Ack). A topic name with
/// a space is quoted in the letter, and an operator can re-publish the
/// payload after the first line.
#[test]
fn a_message_never_answered_lands_there_too_with_its_topic_quoted() {
    let config = Config {
        ack_timeout: Duration::from_millis(200),
        max_deliveries: 2,
        ..timer_config()
    };
    let broker = start_broker(&config);
    let addr = broker.local_addr();
    let mut silent = subscriber(addr, &["new orders"], StartAt::Current);
    let mut operator = subscriber(addr, &["new orders.dlq"], StartAt::Beginning);
    publish_all(addr, &[("new orders", b"never answered")]);
    for _ in 0..2 {
        expect_next(&mut silent, "new orders", b"never answered");
    }
    expect_nothing(&mut silent, 2 * config.ack_timeout); // the last one times out
    expect_nothing(&mut operator, QUIET);
    drop(silent);
    let expected = letter("\"new orders\"", 0, 2, b"never answered");
    let delivery = next(&mut operator);
    assert_eq!(delivery.payload, expected);
    operator.ack().unwrap();

    let payload = delivery.payload.splitn(2, |&b| b == b'\n').nth(1).unwrap();
    publish_all(addr, &[("new orders", payload)]);
    let mut again = subscriber(addr, &["new orders"], StartAt::From(1));
    expect_next_ack(&mut again, "new orders", b"never answered");
}

/// The last Nack and the end of the connection in one write: the session
/// is gone before the round settles its answers, and the dead letter must
/// not go with it.
#[test]
fn a_give_up_reaches_the_dead_letters_when_the_client_leaves_at_once() {
    let config = Config {
        max_deliveries: 1,
        ..timer_config()
    };
    let broker = start_broker(&config);
    let addr = broker.local_addr();
    let mut operator = subscriber(addr, &["t.dlq"], StartAt::Beginning);
    for (i, goodbye) in ["NACK\nQUIT\n", "NACK\n"].into_iter().enumerate() {
        let mut client = Line::connect(addr);
        assert_eq!(client.ask("SUB t current manual"), "+OK");
        let payload = format!("goodbye {i}");
        assert_eq!(
            Line::connect(addr).ask(&format!("PUB t {payload}")),
            format!("+OK {i}")
        );
        client.expect_msg("t", i as u64, payload.as_bytes());
        client.send(goodbye);
        drop(client); // with QUIT, or closed at once
        let expected = letter("t", i as u64, 1, payload.as_bytes());
        expect_next_ack(&mut operator, "t.dlq", &expected);
    }
}

#[test]
fn with_dead_letters_off_a_message_given_up_is_only_logged() {
    let config = Config {
        max_deliveries: 1,
        dead_letters: false,
        ..timer_config()
    };
    let broker = start_broker(&config);
    let addr = broker.local_addr();
    let mut nacker = subscriber(addr, &["t"], StartAt::Current);
    publish_all(addr, &[("t", b"dropped")]);
    expect_next(&mut nacker, "t", b"dropped");
    nacker.nack().unwrap();
    // The nack is applied before anything this later subscriber asks.
    let mut operator = subscriber(addr, &["t.dlq"], StartAt::Beginning);
    expect_nothing(&mut operator, QUIET);
    let mut line = Line::connect(addr);
    line.send("TOPICS\n");
    let topics = line.read_until_end();
    assert!(
        topics
            .iter()
            .any(|line| line.starts_with("+TOPIC t.dlq messages=0 ")),
        "{topics:?}"
    );
}

/// Past `--max-topics` the dead-letter topic cannot be created, which
/// only an operator can change: the message is given up for good, as if
/// dead letters were off, and counted, and a group moves on past it. (It
/// stays in its topic; the log line says so.)
#[test]
fn a_dead_letter_whose_topic_cannot_be_created_gives_its_message_up_for_good() {
    let config = Config {
        max_deliveries: 1,
        max_topics: 1,
        ..timer_config()
    };
    for subscribe in ["SUB t current manual", "SUB t current manual group g"] {
        let broker = start_broker(&config);
        let addr = broker.local_addr();
        let mut consumer = Line::connect(addr);
        assert_eq!(consumer.ask(subscribe), "+OK");
        let mut watcher = Line::connect(addr);
        assert_eq!(watcher.ask("PUB t poison"), "+OK 0");
        consumer.expect_msg("t", 0, b"poison");
        consumer.send("NACK\n"); // the last delivery allowed
        assert_eq!(
            consumer.ask("PING"),
            "+PONG",
            "{subscribe}: not offered again"
        );
        assert_eq!(watcher.stat("dead_letters_not_stored"), 1, "{subscribe}");
        assert_eq!(watcher.ask("PUB t next"), "+OK 1");
        consumer.expect_msg("t", 1, b"next");
        consumer.send("ACK\n");
        consumer.expect_silence(QUIET);
        assert_eq!(watcher.stat("topics"), 1, "{subscribe}: no t.dlq");
        if subscribe.contains("group") {
            watcher.send("STATS\n");
            let stats = watcher.read_until_end();
            let group = stats.iter().find(|l| l.starts_with("+STAT group t g "));
            let group = group.unwrap_or_else(|| panic!("{stats:?}"));
            assert!(group.contains(" position=2 "), "{group}");
        }
    }
}

/// The error line of a message given up for good says where it stays,
/// and how to read it there, in the line protocol's own spelling.
#[test]
fn a_message_given_up_for_good_is_logged_with_where_it_stays() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_brook"));
    command.args(["--addr", "127.0.0.1:0", "--in-memory"]);
    command.args(["--max-topics", "1", "--max-deliveries", "1"]);
    let brook = BrookProcess::start(command, WAIT).unwrap_or_else(|e| panic!("{e}"));
    let mut consumer = Line::connect(brook.addr);
    assert_eq!(consumer.ask("SUB \"a b\" manual group g"), "+OK");
    let mut publisher = Line::connect(brook.addr);
    assert_eq!(publisher.ask("PUB \"a b\" poison"), "+OK 0");
    consumer.expect_msg("\"a b\"", 0, b"poison");
    consumer.send("NACK\n");
    brook.wait_for_log(
        "\"a b\"@0: given up after 1 deliveries, and its dead letter cannot be stored in \
         \"a b.dlq\": the topic cannot be created: ",
        WAIT,
    );
    brook.wait_for_log(
        "the message is given up for good: it stays in \"a b\" at offset 0, until retention \
         drops it: read it there with `SUB \"a b\" from 0`",
        WAIT,
    );
}

/// A dead letter given up for good (its topic past `--max-topics`) is no
/// part of an episode of a full disk: the next dead letter stored, of
/// another topic, does not say that dead letters are stored again.
#[test]
fn a_dead_letter_given_up_for_good_is_no_part_of_a_full_disk_episode() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_brook"));
    command.args(["--addr", "127.0.0.1:0", "--in-memory"]);
    command.args(["--max-topics", "3", "--max-deliveries", "1"]);
    let brook = BrookProcess::start(command, WAIT).unwrap_or_else(|e| panic!("{e}"));
    let mut operator = Line::connect(brook.addr);
    assert_eq!(operator.ask("SUB b.dlq beginning"), "+OK");
    let mut consumer = Line::connect(brook.addr);
    assert_eq!(consumer.ask("SUB a manual"), "+OK");
    assert_eq!(consumer.ask("SUB b manual"), "+OK"); // the third topic
    let mut publisher = Line::connect(brook.addr);
    assert_eq!(publisher.ask("PUB a poison"), "+OK 0");
    consumer.expect_msg("a", 0, b"poison");
    consumer.send("NACK\n"); // a.dlq would be a fourth topic
    brook.wait_for_log("the message is given up for good", WAIT);

    for offset in 0..2 {
        assert_eq!(publisher.ask("PUB b poison"), format!("+OK {offset}"));
        consumer.expect_msg("b", offset, b"poison");
        consumer.send("NACK\n");
        operator.expect_msg("b.dlq", offset, &letter("b", offset, 1, b"poison"));
    }
    // Logged after whatever the first one stored would have said.
    brook.wait_for_log("\"b\"@1 went to \"b.dlq\"@1", WAIT);
    let log = brook.stderr();
    assert!(!log.contains("dead letters are stored again"), "{log}");
}
