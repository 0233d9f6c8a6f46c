//! A closed connection's writer does not outlive it: a client that closes its
//! sending side while never reading what it was sent gets `linger` for its
//! last frames, then its socket is shut and its writer thread ends.
//!
//! In a file of its own because it counts the broker's threads by name, and
//! other tests' brokers in the same process would have the same names.

mod common;

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use brook::client::Publisher;
use brook::config::Config;
use common::*;

#[test]
fn a_writer_blocked_on_a_closed_client_is_ended_after_the_linger() {
    let config = Config {
        linger: Duration::from_millis(300),
        ..config()
    };
    let broker = start_broker(&config);
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
    let deadline = Instant::now() + WAIT;
    while writer_thread_exists("conn-1-write") {
        assert!(
            Instant::now() < deadline,
            "the writer of a closed, unread connection is still there after {WAIT:?}"
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
