//! `--metrics-addr`: the Prometheus endpoint, scraped over real TCP with
//! raw HTTP, as a monitoring system would.

mod common;

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use brook::config::{Config, Fsync};
use brook::server::Broker;
use common::broker::{config, start_broker};
use common::http::{http, samples, scrape};
use common::line::Line;
use common::process::BrookProcess;
use common::temp::TempDir;
use common::WAIT;

/// A broker serving metrics on a port of its own. Redeliveries come after
/// 100 ms, and a message is given up at its second nack.
fn broker() -> (Broker, SocketAddr) {
    let config = Config {
        metrics_addr: Some("127.0.0.1:0".into()),
        max_deliveries: 2,
        ..config()
    };
    let broker = start_broker(&config);
    let metrics = broker.metrics_addr().expect("metrics are served");
    (broker, metrics)
}

/// Asserts each `series value` pair of `expected` is on the page.
#[track_caller]
fn assert_samples(page: &str, expected: &[(&str, u64)]) {
    let samples = samples(page);
    for (series, value) in expected {
        assert_eq!(
            samples.get(*series),
            Some(&value.to_string()),
            "{series} on the page:\n{page}"
        );
    }
}

/// Waits until the broker has carried out everything `line` sent: its
/// replies come in order.
#[track_caller]
fn fence(line: &mut Line) {
    assert_eq!(line.ask("PING"), "+PONG");
}

#[test]
fn counters_and_group_lag_are_exact_after_publishing_and_consuming() {
    let (broker, metrics) = broker();
    let addr = broker.local_addr();
    let mut publisher = Line::connect(addr);
    for i in 0..10 {
        assert_eq!(
            publisher.ask(&format!("PUB orders order-{i}")),
            format!("+OK {i}")
        );
    }

    // A fan-out subscriber reads all ten.
    let mut fan_out = Line::connect(addr);
    assert_eq!(fan_out.ask("SUB orders beginning"), "+OK");
    for i in 0..10 {
        fan_out.expect_msg("orders", i, format!("order-{i}").as_bytes());
    }
    // It follows a pattern too, which matches no topic.
    assert_eq!(fan_out.ask("SUB refunds.*"), "+OK");

    // The group billing pulls four of them, and has six left.
    let mut puller = Line::connect(addr);
    puller.send("PULL orders 4 group billing\n");
    assert_eq!(puller.read_pull().1, 4);

    // The group workers gets all ten; its member nacks the first, which
    // comes again, then acks all eleven deliveries.
    let mut worker = Line::connect(addr);
    assert_eq!(
        worker.ask("SUB orders beginning manual group workers"),
        "+OK"
    );
    for i in 0..10 {
        worker.expect_msg("orders", i, format!("order-{i}").as_bytes());
    }
    worker.send("NACK\n");
    worker.expect_msg("orders", 0, b"order-0");
    worker.send("ACK\n".repeat(10));
    fence(&mut worker);

    // A fan-out subscriber of jobs nacks its one message twice: the second
    // delivery was the last allowed, so it goes to jobs.dlq.
    let mut jobs = Line::connect(addr);
    assert_eq!(jobs.ask("SUB jobs manual"), "+OK");
    assert_eq!(publisher.ask("PUB jobs job"), "+OK 0");
    jobs.expect_msg("jobs", 0, b"job");
    jobs.send("NACK\n");
    jobs.expect_msg("jobs", 0, b"job");
    jobs.send("NACK\n");
    fence(&mut jobs);

    let page = scrape(metrics);
    assert_samples(
        &page,
        &[
            ("brook_topics", 3),
            ("brook_connections", 5),
            ("brook_topic_messages_in_total{topic=\"orders\"}", 10),
            ("brook_topic_bytes_in_total{topic=\"orders\"}", 70),
            // 10 to the subscriber, 4 pulled, 11 to the worker.
            ("brook_topic_messages_out_total{topic=\"orders\"}", 25),
            ("brook_topic_bytes_out_total{topic=\"orders\"}", 175),
            ("brook_topic_redeliveries_total{topic=\"orders\"}", 1),
            ("brook_topic_given_up_total{topic=\"orders\"}", 0),
            ("brook_topic_subscribers{topic=\"orders\"}", 1),
            ("brook_topic_first_offset{topic=\"orders\"}", 0),
            ("brook_topic_next_offset{topic=\"orders\"}", 10),
            ("brook_topic_disk_bytes{topic=\"orders\"}", 0),
            ("brook_group_members{topic=\"orders\",group=\"billing\"}", 0),
            (
                "brook_group_lag_messages{topic=\"orders\",group=\"billing\"}",
                6,
            ),
            (
                "brook_group_position_offset{topic=\"orders\",group=\"billing\"}",
                4,
            ),
            (
                "brook_group_messages_out_total{topic=\"orders\",group=\"billing\"}",
                4,
            ),
            (
                "brook_group_bytes_out_total{topic=\"orders\",group=\"billing\"}",
                28,
            ),
            ("brook_group_members{topic=\"orders\",group=\"workers\"}", 1),
            (
                "brook_group_lag_messages{topic=\"orders\",group=\"workers\"}",
                0,
            ),
            (
                "brook_group_position_offset{topic=\"orders\",group=\"workers\"}",
                10,
            ),
            (
                "brook_group_messages_out_total{topic=\"orders\",group=\"workers\"}",
                11,
            ),
            (
                "brook_group_redeliveries_total{topic=\"orders\",group=\"workers\"}",
                1,
            ),
            (
                "brook_group_given_up_total{topic=\"orders\",group=\"workers\"}",
                0,
            ),
            ("brook_topic_messages_in_total{topic=\"jobs\"}", 1),
            ("brook_topic_messages_out_total{topic=\"jobs\"}", 2),
            ("brook_topic_redeliveries_total{topic=\"jobs\"}", 1),
            ("brook_topic_given_up_total{topic=\"jobs\"}", 1),
            ("brook_topic_messages_in_total{topic=\"jobs.dlq\"}", 1),
            ("brook_publishes_refused_disk_full_total", 0),
            ("brook_publishes_refused_memory_full_total", 0),
            ("brook_dead_letters_not_stored_total", 0),
            ("brook_publishers_waiting", 0),
            ("brook_pattern_subscriptions", 1),
            ("brook_store_disk_bytes", 0),
        ],
    );
}

/// A dead letter that cannot be stored (here its topic would pass
/// `--max-topics`) is counted, and its message, given up for good, counts
/// once among the topic's and the group's given up; the group moves on.
/// (One whose dead letter a full disk refused comes back, and is counted
/// once all the same: `disk_full.rs`.)
#[test]
fn dead_letters_not_stored_are_counted_and_their_messages_given_up_once() {
    let config = Config {
        metrics_addr: Some("127.0.0.1:0".into()),
        max_deliveries: 1,
        max_topics: 1,
        ..config()
    };
    let broker = start_broker(&config);
    let metrics = broker.metrics_addr().expect("metrics are served");
    let mut worker = Line::connect(broker.local_addr());
    assert_eq!(worker.ask("SUB jobs manual group workers"), "+OK");
    assert_eq!(
        Line::connect(broker.local_addr()).ask("PUB jobs job"),
        "+OK 0"
    );
    worker.expect_msg("jobs", 0, b"job");
    worker.send("NACK\n");
    assert_eq!(worker.ask("PING"), "+PONG", "not offered again");
    assert_samples(
        &scrape(metrics),
        &[
            ("brook_dead_letters_not_stored_total", 1),
            ("brook_topic_given_up_total{topic=\"jobs\"}", 1),
            (
                "brook_group_given_up_total{topic=\"jobs\",group=\"workers\"}",
                1,
            ),
            (
                "brook_group_position_offset{topic=\"jobs\",group=\"workers\"}",
                1,
            ),
            ("brook_topics", 1),
        ],
    );
}

/// A broker keeping its topics in `data`, forcing them to disk as
/// `fsync` says, and serving metrics.
fn disk_broker(data: &TempDir, fsync: Fsync) -> (Broker, SocketAddr) {
    let config = Config {
        metrics_addr: Some("127.0.0.1:0".into()),
        storage: brook::config::Storage::Disk(data.path().to_owned()),
        fsync,
        ..config()
    };
    let broker = start_broker(&config);
    let metrics = broker.metrics_addr().expect("metrics are served");
    (broker, metrics)
}

#[test]
fn the_disk_store_reports_its_segment_bytes_and_fsync_times() {
    let data = TempDir::new("metrics-disk");
    let (broker, metrics) = disk_broker(&data, Fsync::Batch);
    let mut publisher = Line::connect(broker.local_addr());
    // Confirmed only once forced to disk (--fsync batch): by the syncer.
    assert_eq!(publisher.ask("PUB orders first"), "+OK 0");

    let page = scrape(metrics);
    let samples = samples(&page);
    let number = |series: &str| -> f64 {
        let value = samples.get(series);
        value
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{series} in:\n{page}"))
    };
    let segment = number("brook_topic_disk_bytes{topic=\"orders\"}");
    assert!(segment > 5.0, "a record is its payload and more: {segment}");
    assert_eq!(number("brook_store_disk_bytes"), segment);
    assert!(number("brook_fsync_seconds_count") >= 1.0, "{page}");
    assert_eq!(
        number("brook_fsync_seconds_bucket{le=\"+Inf\"}"),
        number("brook_fsync_seconds_count")
    );
}

#[test]
fn fsync_always_counts_each_append_s_fsync() {
    let data = TempDir::new("metrics-fsync-always");
    let (broker, metrics) = disk_broker(&data, Fsync::Always);
    let mut publisher = Line::connect(broker.local_addr());
    for i in 0..3 {
        assert_eq!(
            publisher.ask(&format!("PUB orders m{i}")),
            format!("+OK {i}")
        );
    }
    let page = scrape(metrics);
    let count: u64 = samples(&page)["brook_fsync_seconds_count"].parse().unwrap();
    assert!(count >= 3, "one fsync per append at least: {count}\n{page}");
}

#[test]
fn the_page_parses_and_every_metric_has_one_help_and_one_type() {
    let (broker, metrics) = broker();
    let mut publisher = Line::connect(broker.local_addr());
    assert_eq!(publisher.ask("PUB orders one"), "+OK 0");
    publisher.send("PULL orders 1 group billing\n");
    assert_eq!(publisher.read_pull().1, 1);

    let page = scrape(metrics);
    let mut help: HashMap<&str, usize> = HashMap::new();
    let mut kinds: HashMap<&str, &str> = HashMap::new();
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').expect("# HELP name text");
            assert!(!text.is_empty(), "{line}");
            *help.entry(name).or_default() += 1;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(kinds.insert(name, kind).is_none(), "two TYPE lines: {line}");
            assert_eq!(help.get(name), Some(&1), "HELP before TYPE: {line}");
            continue;
        }
        let (name, value) = parse_sample(line);
        let family = family_of(name, &kinds);
        assert!(kinds.contains_key(family), "no TYPE before {line}");
        let kind = kinds[family];
        assert!(value.is_finite() || name.ends_with("_bucket"), "{line}");
        if kind == "counter" {
            assert!(
                name.ends_with("_total"),
                "a counter's name ends in _total: {line}"
            );
        }
        assert!(name.starts_with("brook_"), "{line}");
    }
    assert!(help.values().all(|&n| n == 1), "{help:?}");
    assert_eq!(help.len(), kinds.len());
    assert!(kinds.contains_key("brook_group_lag_messages"));
    assert_eq!(kinds.get("brook_fsync_seconds"), Some(&"histogram"));
}

/// Splits `name{label="value",...} number`, checking the syntax of every
/// part; returns the name and the number.
#[track_caller]
fn parse_sample(line: &str) -> (&str, f64) {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or_else(|| panic!("no value: {line:?}"));
    let (name, mut rest) = line.split_at(name_end);
    assert!(
        !name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit()),
        "{line:?}"
    );
    if let Some(labels) = rest.strip_prefix('{') {
        rest = parse_labels(labels, line);
    }
    let value = rest
        .strip_prefix(' ')
        .unwrap_or_else(|| panic!("no space: {line:?}"));
    let number = match value {
        "+Inf" => f64::INFINITY,
        _ => value
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {line:?}")),
    };
    (name, number)
}

/// Reads `label="value",...}` and returns what follows the `}`.
#[track_caller]
fn parse_labels<'a>(mut rest: &'a str, line: &str) -> &'a str {
    loop {
        let (label, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("{line:?}"));
        assert!(
            label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line:?}"
        );
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => {
                    let escaped = chars.next().map(|(_, c)| c);
                    assert!(matches!(escaped, Some('\\' | '"' | 'n')), "{line:?}");
                }
                Some((i, '"')) => break i,
                Some((_, '\n')) | None => panic!("an unterminated label value: {line:?}"),
                Some(_) => {}
            }
        };
        rest = &after[end + 1..];
        match rest.strip_prefix(',') {
            Some(more) => rest = more,
            None => return rest.strip_prefix('}').unwrap_or_else(|| panic!("{line:?}")),
        }
    }
}

/// The family a sample belongs to: a histogram's samples add a suffix.
fn family_of<'a>(name: &'a str, kinds: &HashMap<&str, &str>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(family) = name.strip_suffix(suffix) {
            if kinds.get(family) == Some(&"histogram") {
                return family;
            }
        }
    }
    name
}

#[test]
fn a_topic_name_with_a_quote_a_backslash_and_a_newline_is_escaped() {
    let (broker, metrics) = broker();
    let mut publisher = Line::connect(broker.local_addr());
    assert_eq!(publisher.ask(r#"PUB "say \"hi\\there\"\nnow" x"#), "+OK 0");

    let page = scrape(metrics);
    assert_samples(
        &page,
        &[(
            r#"brook_topic_messages_in_total{topic="say \"hi\\there\"\nnow"}"#,
            1,
        )],
    );
}

#[test]
fn bad_requests_unknown_paths_and_other_methods_are_refused() {
    let (_broker, metrics) = broker();

    let garbage = http(metrics, b"\x16\x03\x01 hello there\r\n\r\n");
    assert_eq!(garbage.status, "HTTP/1.1 400 Bad Request");
    assert!(
        garbage.body.starts_with("bad request: "),
        "{}",
        garbage.body
    );

    let unknown = http(metrics, b"GET /other HTTP/1.1\r\n\r\n");
    assert_eq!(unknown.status, "HTTP/1.1 404 Not Found");
    assert_eq!(unknown.body, "not found: brook serves GET /metrics only\n");

    let post = http(
        metrics,
        b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(post.status, "HTTP/1.1 405 Method Not Allowed");
    assert_eq!(
        post.headers.get("allow").map(String::as_str),
        Some("GET, HEAD")
    );

    // None of that disturbed the endpoint.
    assert!(scrape(metrics).contains("brook_topics 0\n"));
}

#[test]
fn a_silent_client_holds_the_endpoint_only_for_the_request_timeout() {
    let (_broker, metrics) = broker();
    let silent = TcpStream::connect(metrics).expect("connect");
    // Served once the silent client's time is up.
    assert!(scrape(metrics).contains("brook_topics 0\n"));
    drop(silent);
}

#[test]
fn head_is_answered_like_get_without_the_page() {
    let (_broker, metrics) = broker();
    let head = http(metrics, b"HEAD /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(head.status, "HTTP/1.1 200 OK");
    assert_eq!(head.body, "", "no page after the head");
    let length: usize = head.headers["content-length"].parse().unwrap();
    // The page GET returns now has the same figures, so the same length.
    assert_eq!(length, scrape(metrics).len());
}

/// How long the broker gives a client to send its request (`REQUEST_TIMEOUT`
/// in `metrics/http.rs`), and as long again to take the answer; and how long it
/// waits for the dispatcher's report (`REPORT_PATIENCE`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
const REPORT_PATIENCE: Duration = Duration::from_secs(2);

/// A connection to `addr` that has sent the start of a request.
fn start_request(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics port");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nX-Trickle: ")
        .expect("send the start of a request");
    stream
}

/// Sends one more byte of a header that never ends on `stream` each time
/// the broker has let 100 ms pass without answering, until the broker ends
/// the connection. Returns what the broker sent, or `None` if it had not
/// ended the connection `within` that time.
fn trickle(mut stream: TcpStream, within: Duration) -> Option<Vec<u8>> {
    let give_up = Instant::now() + within;
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < give_up {
        match stream.read(&mut buf) {
            Ok(0) => return Some(received),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if stream.write_all(b"a").is_err() {
                    return Some(received);
                }
            }
            Err(_) => return Some(received), // reset: ended too
        }
    }
    None
}

#[test]
fn a_client_trickling_its_request_is_cut_off_at_the_request_timeout() {
    let (_broker, metrics) = broker();
    let answer = trickle(start_request(metrics), REQUEST_TIMEOUT + WAIT)
        .expect("the broker ends a trickling client's connection at its deadline");
    // What came before the deadline is answered, as a client that stops
    // sending would be.
    assert!(
        answer.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    // And the endpoint serves the next scrape.
    assert!(scrape(metrics).contains("brook_topics 0\n"));
}

#[test]
fn a_stop_ends_while_a_client_trickles_its_request() {
    let (broker, metrics) = broker();
    // At most its request's time, the report's, and its answer's.
    let bound = REQUEST_TIMEOUT * 2 + REPORT_PATIENCE + WAIT;
    // Connected before the stop's own wake-up connection: served first.
    let request = start_request(metrics);
    let trickler = thread::spawn(move || trickle(request, bound));
    let (stopped, done) = mpsc::sync_channel(1);
    let stopping = thread::spawn(move || {
        broker.shutdown();
        let _ = stopped.send(());
    });
    assert!(
        done.recv_timeout(bound).is_ok(),
        "Broker::shutdown returns while a client trickles its request"
    );
    stopping.join().unwrap();
    trickler.join().unwrap();
}

#[test]
fn the_metrics_thread_ends_with_the_broker() {
    let (broker, metrics) = broker();
    broker.shutdown();
    assert!(
        TcpStream::connect(metrics).is_err(),
        "nothing listens on {metrics} after the stop"
    );
}

#[test]
fn brook_logs_where_it_serves_metrics() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_brook"));
    command.args([
        "--addr",
        "127.0.0.1:0",
        "--in-memory",
        "--metrics-addr",
        "127.0.0.1:0",
    ]);
    let brook = BrookProcess::start(command, WAIT).expect("brook starts");
    brook.wait_for_log("metrics served at http://", WAIT);
    let log = brook.stderr();
    let addr = log
        .split("metrics served at http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|addr| addr.parse::<SocketAddr>().ok())
        .unwrap_or_else(|| panic!("an address in:\n{log}"));
    assert!(scrape(addr).contains("# TYPE brook_connections gauge\n"));
}
