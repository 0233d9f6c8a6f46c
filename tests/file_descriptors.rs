//! File descriptors: under a low open-files limit (`ulimit -n 128`) the
//! broker keeps serving. A topic with hundreds of segments holds one file,
//! not one per segment, and is read back after a restart; topics past what
//! the limit leaves are refused with an error that names the limit and what
//! to raise, logged once; connections past it are refused, and however hard
//! clients hammer, the refusals are logged at most once a second.
//!
//! These run the real `brook` binary as a child process whose open-files
//! limit the shell lowers before it starts brook (no libc needed).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use brook::descriptors::FILES_RESERVED;
use common::line::Line;
use common::process::BrookProcess;
use common::raw::Raw;
use common::temp::TempDir;
use common::WAIT;

/// The open-files limit the broker runs under.
const OPEN_FILES: usize = 128;

/// `brook` on `data` with `args`, under `ulimit -n` [`OPEN_FILES`].
fn brook(data: &Path, args: &[&str]) -> BrookProcess {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit -n {OPEN_FILES} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_brook"))
        .args(["--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(args);
    BrookProcess::start(command, WAIT).unwrap_or_else(|e| panic!("{e}"))
}

/// How many lines of `log` contain `needle`.
fn count_lines(log: &str, needle: &str) -> usize {
    log.lines().filter(|line| line.contains(needle)).count()
}

/// Messages for the segments test: 12,000 records of 99 bytes, about 290
/// segments of 4 KiB, more than twice the open-files limit.
const MESSAGES: u64 = 12_000;

fn payload(i: u64) -> String {
    format!("message {i:06} ").repeat(5)
}

#[test]
fn hundreds_of_segments_hold_no_file_each_and_are_read_back_after_a_restart() {
    let data = TempDir::new("fd-segments");
    let args = ["--segment-bytes", "4KiB", "--fsync", "never"];
    let mut broker = brook(data.path(), &args);
    let mut publisher = Line::connect(broker.addr);
    for batch in (0..MESSAGES).collect::<Vec<_>>().chunks(500) {
        let lines: String = batch
            .iter()
            .map(|&i| format!("PUB t {}\n", payload(i)))
            .collect();
        publisher.send(lines);
        for &i in batch {
            publisher.expect_line(&format!("+OK {i}"));
        }
    }
    let segments = std::fs::read_dir(data.path().join("topics"))
        .unwrap()
        .flat_map(|dir| std::fs::read_dir(dir.unwrap().path()).unwrap())
        .filter(|file| file.as_ref().unwrap().path().extension() == Some("log".as_ref()))
        .count();
    assert!(segments > 2 * OPEN_FILES, "only {segments} segments");
    drop(publisher);
    broker.signal("TERM");
    assert!(broker.wait_for_exit(WAIT).success(), "{}", broker.stderr());

    // Nothing is cached after a restart: every run comes from a segment.
    let broker = brook(data.path(), &args);
    let mut puller = Line::connect(broker.addr);
    puller.send("PULL t\n");
    let (pulled, count) = puller.read_pull();
    assert_eq!(count, MESSAGES, "{}", broker.stderr());
    for (i, msg) in (0..).zip(&pulled) {
        assert_eq!((msg.offset, &msg.payload), (i, &payload(i).into_bytes()));
    }
    assert_eq!(puller.ask("PUB t one more"), format!("+OK {MESSAGES}"));
}

#[test]
fn topics_past_the_open_files_limit_are_refused_with_the_limit_and_logged_once() {
    let data = TempDir::new("fd-topics");
    let broker = brook(data.path(), &[]);
    let mut client = Line::connect(broker.addr);
    let mut created = 0;
    let refusal = loop {
        match client.ask(&format!("SUB topic-{created}")) {
            ok if ok == "+OK" => created += 1,
            refusal => break refusal,
        }
        assert!(created < OPEN_FILES, "every topic was created");
    };
    // One connection and a file per topic take what the reserve leaves.
    assert_eq!(created, OPEN_FILES - FILES_RESERVED - 1, "{refusal}");
    assert!(
        refusal.starts_with("-ERR out of file descriptors: ")
            && refusal.contains(&format!("brook may open {OPEN_FILES} files"))
            && refusal.contains("ulimit -n")
            && refusal.contains("--max-topics"),
        "{refusal}"
    );
    for _ in 0..10 {
        assert_eq!(client.ask("SUB yet-another"), refusal);
    }
    assert_eq!(client.ask("PING"), "+PONG");

    // The broker has no file left for a connection either: it refuses one,
    // and logs it, after the refusals above.
    let mut refused = Raw::connect(broker.addr);
    refused.expect_error("too many connections");
    broker.wait_for_log("no file descriptor left for it", WAIT);
    let log = broker.stderr();
    assert_eq!(count_lines(&log, "out of file descriptors"), 1, "{log}");

    // The topics it has are served as before.
    assert_eq!(client.ask("UNSUB topic-0"), "+OK");
    assert_eq!(client.ask("PUB topic-0 still here"), "+OK 0");
}

#[test]
fn connections_past_the_limit_are_refused_and_logged_at_most_once_a_second() {
    let data = TempDir::new("fd-connections");
    let broker = brook(data.path(), &[]);
    // What the reserve leaves is served, and no more.
    let mut served: Vec<Raw> = (0..OPEN_FILES - FILES_RESERVED)
        .map(|_| {
            let mut raw = Raw::connect(broker.addr);
            raw.send(b"PING\n");
            raw.expect(b"+PONG\n");
            raw
        })
        .collect();

    // Hammer: a few thousand connections, each refused.
    let started = Instant::now();
    for _ in 0..3_000 {
        let mut refused = Raw::connect(broker.addr);
        refused.expect_error("too many connections");
        refused.expect_eof();
    }
    let seconds = started.elapsed().as_secs() as usize;
    broker.wait_for_log("refused", WAIT);
    let log = broker.stderr();
    let refusals = count_lines(&log, "refused");
    let accept_failures = count_lines(&log, "accept failed");
    assert!(refusals <= seconds + 2, "{refusals} lines in {seconds} s");
    assert!(accept_failures <= seconds + 2, "{accept_failures} lines");

    // Those served carry on, and a place freed is taken again.
    let mut first = served.remove(0);
    first.send(b"PING\n");
    first.expect(b"+PONG\n");
    drop(first);
    let deadline = Instant::now() + WAIT;
    while !pongs(broker.addr) {
        assert!(Instant::now() < deadline, "the freed place was not taken");
    }
}

/// Whether a new connection that sends `PING` gets `+PONG`: not if the
/// broker refuses it (it may then reset the connection, since the `PING`
/// is left unread).
fn pongs(addr: SocketAddr) -> bool {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut reply = [0u8; 6];
    let answered = stream
        .write_all(b"PING\n")
        .and_then(|()| stream.read_exact(&mut reply));
    answered.is_ok() && &reply == b"+PONG\n"
}
