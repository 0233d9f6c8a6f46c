//! A stop on SIGTERM loses nothing the broker accepted: every request it
//! took is carried out and answered, deliveries already handed to a writer
//! reach the client, the logs are on disk (even with `--fsync never`), the
//! connections end cleanly, and the process exits 0. A second signal exits
//! at once.
//!
//! These run the real `brook` binary as a child process, since they are
//! about what it does with a signal.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::thread;

use common::line::Line;
use common::process::BrookProcess;
use common::temp::TempDir;
use common::WAIT;

/// How many `PUB`s the publisher pipelines: far more than the broker takes
/// before it is stopped.
const MESSAGES: u64 = 100_000;

/// How many replies the publisher reads before the broker is stopped.
const REPLIES_BEFORE_STOP: u64 = 1_000;

/// Messages for the subscriber, and their size: 16 MiB, several times what
/// the socket buffers of a client that does not read hold, so most of it
/// waits in the broker's writer when the stop comes.
const DELIVERIES: u64 = 256;
const DELIVERY_BYTES: usize = 64 << 10;

/// `brook` on `data`, on a port of its own, with `args`.
fn brook(data: &Path, args: &[&str]) -> BrookProcess {
    let mut command = Command::new(env!("CARGO_BIN_EXE_brook"));
    command
        .args(["--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(args);
    BrookProcess::start(command, WAIT).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_stop_mid_stream_answers_every_stored_publish_and_keeps_it_with_fsync_never() {
    stop_a_pipelining_publisher("never");
}

#[test]
fn a_stop_mid_stream_answers_every_stored_publish_and_keeps_it_with_fsync_batch() {
    stop_a_pipelining_publisher("batch");
}

/// A line publisher pipelines [`MESSAGES`] `PUB`s; the broker gets SIGTERM
/// once [`REPLIES_BEFORE_STOP`] replies are back. The publisher reads a
/// reply for each message the broker stored, then a clean end of stream,
/// and the broker exits 0. Restarted on the same data, it has exactly the
/// messages that were confirmed.
fn stop_a_pipelining_publisher(fsync: &str) {
    let data = TempDir::new("stop-publisher");
    let mut broker = brook(data.path(), &["--fsync", fsync]);
    let stream = TcpStream::connect(broker.addr).unwrap();
    let sending = stream.try_clone().unwrap();
    let (signalled, go_on) = mpsc::channel();
    let writer = thread::spawn(move || send_publishes(sending, &go_on));
    let (midway, reached) = mpsc::channel();
    let reader = thread::spawn(move || read_confirmations(stream, midway));

    reached.recv_timeout(WAIT).expect("the first replies come");
    broker.signal("TERM");
    signalled.send(()).unwrap();
    let confirmed = reader.join().unwrap();
    let status = broker.wait_for_exit(WAIT);
    writer.join().unwrap();
    let log = broker.stderr();
    assert_eq!(status.code(), Some(0), "exit status; stderr:\n{log}");
    assert!(log.contains("brook stopped cleanly"), "stderr:\n{log}");
    assert!(confirmed < MESSAGES, "the stop came mid-stream");
    drop(broker);

    let broker = brook(data.path(), &["--fsync", fsync]);
    let mut reader = Line::connect(broker.addr);
    reader.send("PULL t\n");
    let (msgs, count) = reader.read_pull();
    assert_eq!(
        count, confirmed,
        "the log holds exactly the messages confirmed"
    );
    for (offset, msg) in (0..).zip(msgs) {
        assert_eq!(msg.offset, offset);
        assert_eq!(msg.payload, format!("m{offset}").as_bytes());
    }
}

/// Writes `PUB t m<i>` for every message, the second half once `go_on`
/// says the broker has been signalled (so some always come after the
/// stop), then closes the sending side. What the broker no longer takes
/// it reads and throws away, and once it has gone the writes fail, which
/// is fine.
fn send_publishes(mut stream: TcpStream, go_on: &mpsc::Receiver<()>) {
    let publishes = |range: std::ops::Range<u64>| {
        let mut lines = Vec::new();
        for i in range {
            writeln!(lines, "PUB t m{i}").unwrap();
        }
        lines
    };
    let _ = stream.write_all(&publishes(0..MESSAGES / 2));
    go_on.recv_timeout(WAIT).expect("the broker is signalled");
    let _ = stream.write_all(&publishes(MESSAGES / 2..MESSAGES));
    let _ = stream.shutdown(Shutdown::Write);
}

/// Reads `+OK <offset>` replies, which must count up from 0, telling
/// `midway` once [`REPLIES_BEFORE_STOP`] have come, until the end of the
/// stream, which must be a clean one (a FIN, not a reset). Returns how many
/// came.
fn read_confirmations(stream: TcpStream, midway: mpsc::Sender<()>) -> u64 {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut replies = BufReader::new(stream);
    let mut confirmed = 0;
    let mut line = String::new();
    loop {
        line.clear();
        match replies.read_line(&mut line) {
            Ok(0) => return confirmed,
            Ok(_) => {}
            Err(error) => panic!("after {confirmed} replies, not a clean end: {error}"),
        }
        assert_eq!(line, format!("+OK {confirmed}\n"));
        confirmed += 1;
        if confirmed == REPLIES_BEFORE_STOP {
            midway.send(()).unwrap();
        }
    }
}

/// A broker with a line subscriber to `t` that has not read any of the
/// [`DELIVERIES`] published to it since: the broker's writer holds most of
/// them. The subscriber's window (`--subscriber-buffer`) takes them all.
fn broker_with_unread_deliveries(data: &Path) -> (BrookProcess, Line) {
    let broker = brook(data, &["--subscriber-buffer", "64MiB"]);
    let mut subscriber = Line::connect(broker.addr);
    assert_eq!(subscriber.ask("SUB t current"), "+OK");
    let mut publisher = Line::connect(broker.addr);
    for i in 0..DELIVERIES {
        publisher.send(format!("PUB t {}\n", payload(i)));
    }
    for i in 0..DELIVERIES {
        publisher.expect_line(&format!("+OK {i}"));
    }
    (broker, subscriber)
}

/// The payload of message `i`: its number, then filler.
fn payload(i: u64) -> String {
    let mut payload = format!("{i:06}-");
    payload.extend(std::iter::repeat_n('x', DELIVERY_BYTES - payload.len()));
    payload
}

#[test]
fn a_subscriber_gets_every_delivery_handed_over_before_its_connection_closes() {
    let data = TempDir::new("stop-subscriber");
    let (mut broker, mut subscriber) = broker_with_unread_deliveries(data.path());

    broker.signal("TERM");
    broker.wait_for_log("stopping cleanly", WAIT);
    for i in 0..DELIVERIES {
        subscriber.expect_msg("t", i, payload(i).as_bytes());
    }
    subscriber.expect_eof();
    let status = broker.wait_for_exit(WAIT);
    assert_eq!(status.code(), Some(0), "stderr:\n{}", broker.stderr());
}

#[test]
fn a_second_signal_exits_at_once() {
    let data = TempDir::new("stop-twice");
    // The subscriber never reads: the stop waits for its writer.
    let (mut broker, _subscriber) = broker_with_unread_deliveries(data.path());

    broker.signal("TERM");
    broker.wait_for_log("stopping cleanly", WAIT);
    broker.signal("TERM");
    let status = broker.wait_for_exit(WAIT);
    let log = broker.stderr();
    assert_eq!(status.code(), Some(128 + 15), "stderr:\n{log}");
    assert!(log.contains("SIGTERM: exiting at once"), "stderr:\n{log}");
}
