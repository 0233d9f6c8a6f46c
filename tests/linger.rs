//! A closed connection's writer does not outlive it: a client that closes its
//! sending side while never reading what it was sent gets `linger` for its
//! last frames (or, for an unfinished pull, `linger` without progress), then
//! its socket is shut and its writer thread ends.
//!
//! In a file of its own because it counts the broker's threads by name, and
//! other tests' brokers in the same process would have the same names. For
//! the same reason the tests here take turns.

mod common;

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use brook::client::Publisher;
use brook::config::{Config, Fsync, Storage};
use common::broker::{config, start_broker};
use common::client::Fence;
use common::frames::{subscribe_request, CURRENT};
use common::line::Line;
use common::temp::TempDir;
use common::WAIT;

/// Held by each test, so that no two count threads at once.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn a_writer_blocked_on_a_closed_client_is_ended_after_the_linger() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let broker = start_broker(&Config {
        linger: Duration::from_millis(300),
        ..config()
    });
    let addr = broker.local_addr();

    // Connection 1: subscribes, then never reads.
    let mut stuck = TcpStream::connect(addr).unwrap();
    stuck
        .write_all(&subscribe_request(r#"["t"]"#, &CURRENT))
        .unwrap();
    let mut fence = Fence::new(addr);
    let mut publisher = Publisher::connect(addr).unwrap();
    fence.publish_marker(&mut publisher); // the subscription is in place

    // 32 MiB in flight: far more than the socket buffers hold, so the
    // writer blocks in `write`.
    let payload = vec![7u8; 32 << 10];
    for _ in 0..1024 {
        publisher.publish("t", &payload).unwrap();
    }
    fence.publish_marker(&mut publisher);
    assert!(writer_thread_exists("conn-1-write"));

    stuck.shutdown(Shutdown::Write).unwrap();
    wait_until_gone("conn-1-write");
}

#[test]
fn an_unread_pull_of_a_closed_client_is_cut_off_after_the_linger() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let broker = start_broker(&Config {
        linger: Duration::from_millis(300),
        ..config()
    });
    let addr = broker.local_addr();

    // 64 MiB in the topic: a pull of it fills the socket buffers long
    // before it ends, however the kernel sizes them.
    let mut fence = Fence::new(addr); // connection 1
    let mut publisher = Publisher::connect(addr).unwrap(); // connection 2
    let payload = vec![7u8; 32 << 10];
    for _ in 0..2048 {
        publisher.publish("t", &payload).unwrap();
    }
    fence.publish_marker(&mut publisher); // the messages are stored

    // Connection 3 asks for all of it, closes its side, and never reads.
    let mut puller = TcpStream::connect(addr).unwrap();
    puller.write_all(b"PULL t\n").unwrap();
    puller.shutdown(Shutdown::Write).unwrap();
    let deadline = Instant::now() + WAIT;
    while !writer_thread_exists("conn-3-write") {
        assert!(Instant::now() < deadline, "the puller got no writer");
        std::thread::yield_now();
    }
    wait_until_gone("conn-3-write");
}

/// Waits, at most [`WAIT`], until the thread called `name` has ended.
fn wait_until_gone(name: &str) {
    let deadline = Instant::now() + WAIT;
    while writer_thread_exists(name) {
        assert!(
            Instant::now() < deadline,
            "{name} of a closed, unread connection is still there after {WAIT:?}"
        );
        std::thread::yield_now();
    }
}

/// Whether this process has a thread called `name`.
fn writer_thread_exists(name: &str) -> bool {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .any(|comm| comm.trim_end() == name)
}

/// The linger runs from when a closed connection's last frames reach its
/// writer, not from the close: a confirmation that waits for its fsync
/// (here `--fsync-interval`, longer than the linger) is still sent, and the
/// client does not publish again a message that was stored.
#[test]
fn a_confirmation_waiting_for_its_fsync_outlasts_the_linger() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let data = TempDir::new("linger-fsync");
    let config = Config {
        storage: Storage::Disk(data.path().to_owned()),
        fsync: Fsync::Batch,
        fsync_interval: Duration::from_millis(600),
        linger: Duration::from_millis(100),
        ..config()
    };
    let broker = start_broker(&config);
    let mut client = Line::connect(broker.local_addr());
    client.send("PUB t stored\n");
    client.close_write();
    client.expect_line("+OK 0");
    client.expect_eof();
}
