//! brook-bridge against real `nats-server -js` processes: its NATS client
//! (failover, headers, JetStream requests, logins, a bound on what waits,
//! a server that stops answering or reading), `--to-nats` (of a topic, of
//! a pattern, as a brook user, from a brook started again in memory) into
//! one server and into a three-node cluster whose stream leader is killed
//! with messages in flight, a bridge killed and restarted mid-stream, and
//! `--from-nats`, also past a message brook refuses, at a consumer of its
//! name that it cannot use, and with brook killed while the stream is
//! idle.
//!
//! Each test skips (saying so) where `nats-server` is not on PATH, unless
//! `BROOK_REQUIRE_NATS=1`. What lands in a stream is read back through a
//! durable pull consumer of the test's own, which follows the servers
//! through a failover and drops what JetStream delivers to it twice (by
//! stream sequence), so what it returns is exactly the stream's content.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use brook::bridge::jetstream::{self, ConsumerSettings, StreamSettings};
use brook::bridge::nats::{Auth, Connection, Limits, Message, NatsError, Servers};
use brook::client::{Login, Publisher, Subscriber};
use brook::config::Config;
use brook::server::Broker;
use brook::wire::request::StartAt;
use common::auth::{auth_config, password_line, AuthFile};
use common::broker::{config, start_broker};
use common::http::{http, samples, scrape};
use common::line::Line;
use common::nats::{free_port, nats_server_available, LoggedChild, NatsCluster, NatsServer};
use common::process::BrookProcess;

/// How long a test waits for the whole of a stream to arrive (or a
/// cluster to elect a leader, a figure to reach the metrics). A bound,
/// not a measure: it only decides how long a stall takes to fail. The
/// longest wait is the failover test's read of its 100,000 messages after
/// the leader dies: 14–23 s with four or more busy loops at the tests'
/// niceness on the VM's two cores (the whole test: 11–17 s unloaded,
/// 32–46 s so loaded). The run that once took it past 60 s did so because each NATS
/// session handed the bridge's window back to brook, to be delivered
/// again; the window now outlives the sessions.
const PATIENCE: Duration = Duration::from_secs(60);

/// A brook set up as docs/SCALING.md says for a bridge to a cluster: its
/// deliveries are not sent again while a NATS cluster elects a new
/// leader. Its `--max-deliveries` is the default: the bridge keeps its
/// brook connection, and its unanswered deliveries, across NATS sessions.
fn patient_brook() -> Broker {
    start_broker(&Config {
        ack_timeout: Duration::from_secs(60),
        ..config()
    })
}

/// Asserts that brook delivered each of its `count` messages once (the
/// bridge handed none back to the group) and gave none up to a `.dlq`
/// topic.
#[track_caller]
fn assert_each_delivered_once(brook: &Broker, count: u64) {
    let mut line = Line::connect(brook.local_addr());
    assert_eq!(line.stat("messages_out"), count, "deliveries by brook");
    line.send("TOPICS\n");
    let dead: Vec<String> = line
        .read_until_end()
        .into_iter()
        .filter(|l| l.starts_with("+TOPIC ") && l.contains(".dlq ") && !l.contains(" messages=0 "))
        .collect();
    assert!(dead.is_empty(), "dead letters: {dead:?}");
}

/// Publishes messages `0`, `1`, ... `count - 1` to `topic` with
/// confirmed publishes, and waits for every confirmation.
fn publish_confirmed(addr: SocketAddr, topic: &str, count: u64) {
    publish_range(addr, topic, 0..count);
}

/// Publishes the messages numbered `range` (the offsets they get) to a
/// `topic` that holds `range.start` messages.
fn publish_range(addr: SocketAddr, topic: &str, range: std::ops::Range<u64>) {
    let mut publisher = Publisher::connect_confirmed(addr).unwrap();
    let (mut sent, count) = (range.start, range.end);
    while sent < count {
        let chunk = (count - sent).min(1000);
        for i in sent..sent + chunk {
            publisher.publish(topic, i.to_string().as_bytes()).unwrap();
        }
        for i in sent..sent + chunk {
            assert_eq!(
                publisher.confirmation().unwrap(),
                i,
                "offset of message {i}"
            );
        }
        sent += chunk;
    }
}

/// `brook-bridge --brook <brook> --nats <nats>` with `args`, once it has
/// logged `ready` (each mirror logs once it is connected on both sides).
fn start_bridge(brook: &Broker, nats: &str, args: &[&str], ready: &str) -> LoggedChild {
    run_bridge(bridge_command(brook.local_addr(), nats, args), ready)
}

fn bridge_command(brook: SocketAddr, nats: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_brook-bridge"));
    command
        .args(["--brook", &brook.to_string(), "--nats", nats])
        .args(args)
        .env("RUST_LOG", "info");
    command
}

fn run_bridge(command: Command, ready: &str) -> LoggedChild {
    let bridge = LoggedChild::spawn("brook-bridge", command);
    bridge.wait_for_log(ready, 1, Duration::from_secs(20));
    bridge
}

/// What a `--to-nats ...=ORDERS` bridge logs once it is ready.
const ORDERS_READY: &str = "joined brook group bridge-ORDERS";

/// The flag that has a bridge serve its metrics on a port of its own.
const METRICS_ON_ANY_PORT: [&str; 2] = ["--metrics-addr", "127.0.0.1:0"];

/// Where a bridge started with [`METRICS_ON_ANY_PORT`] serves them, as
/// it logs it.
fn metrics_addr(bridge: &LoggedChild) -> SocketAddr {
    let url = bridge.logged_address("metrics served at http://");
    let addr = url.strip_suffix("/metrics").unwrap_or(&url);
    addr.parse()
        .unwrap_or_else(|_| panic!("an address in {url:?}"))
}

/// One mirror's figures on a bridge's metrics page.
struct MirrorFigures {
    samples: HashMap<String, String>,
    /// The mirror's labels, `{direction="...",stream="...",pattern="..."}`.
    labels: String,
}

impl MirrorFigures {
    /// The value of the mirror's sample of `name`; panics if it has none.
    fn get(&self, name: &str) -> u64 {
        let series = format!("{name}{}", self.labels);
        let value = self.samples.get(&series);
        let value = value.unwrap_or_else(|| panic!("no {series} in {:?}", self.samples));
        value.parse().expect("a whole number")
    }
}

/// Scrapes the bridge's metrics at `addr` until `done` holds of the
/// figures of the mirror labelled `labels`, within [`PATIENCE`]; returns
/// them. The figures move as the bridge works, and a scrape is answered
/// at once: each scrape shows what the bridge did since the last. Each
/// poll is a round trip to the bridge's metrics thread, not a sleep, and
/// yields the core before the next, as the other tests' polls do.
fn scrape_until(
    addr: SocketAddr,
    labels: &str,
    done: impl Fn(&MirrorFigures) -> bool,
) -> MirrorFigures {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let page = scrape(addr);
        let figures = MirrorFigures {
            samples: samples(&page),
            labels: labels.to_owned(),
        };
        if done(&figures) {
            return figures;
        }
        assert!(
            Instant::now() < deadline,
            "the figures of {labels} not there within {PATIENCE:?}:\n{page}"
        );
        std::thread::yield_now();
    }
}

/// The test's own reader of a stream.
struct StreamReader {
    servers: Servers,
    connection: Option<Connection>,
    consumer: ConsumerSettings,
    /// The stream sequence of the last message returned.
    last_seq: u64,
}

impl StreamReader {
    fn new(addrs: &str, stream: &str) -> StreamReader {
        let addrs = addrs.split(',').map(str::to_owned).collect();
        StreamReader {
            servers: Servers::new(addrs, Auth::None),
            connection: None,
            consumer: ConsumerSettings {
                stream: stream.to_owned(),
                durable: "test-reader".to_owned(),
                filter: ">".to_owned(),
                ack_wait: Duration::from_secs(5),
                max_ack_pending: 10_000,
                max_deliver: None,
            },
            last_seq: 0,
        }
    }

    /// A connection with the consumer in place: a new one after a failure.
    fn connection(&mut self) -> &mut Connection {
        if self.connection.is_none() {
            let deadline = Instant::now() + PATIENCE;
            let connection = loop {
                let attempt = self.servers.connect().map_err(|e| e.to_string());
                let attempt = attempt.and_then(|mut connection| {
                    jetstream::ensure_consumer(&mut connection, &self.consumer)
                        .map(|_| connection)
                        .map_err(|e| e.to_string())
                });
                match attempt {
                    Ok(connection) => break connection,
                    Err(error) if Instant::now() < deadline => {
                        eprintln!("test reader: {error}; again")
                    }
                    Err(error) => panic!("test reader: {error}"),
                }
            };
            self.connection = Some(connection);
        }
        self.connection.as_mut().unwrap()
    }

    /// The next `count` messages of the stream, in stream order.
    fn read(&mut self, count: usize) -> Vec<Message> {
        let deadline = Instant::now() + PATIENCE;
        let mut messages = Vec::with_capacity(count);
        while messages.len() < count {
            assert!(
                Instant::now() < deadline,
                "only {} of {count} messages within {PATIENCE:?}",
                messages.len()
            );
            if let Err(error) = self.pull(count - messages.len(), &mut messages) {
                eprintln!("test reader: {error}; reconnecting");
                self.connection = None;
            }
        }
        messages
    }

    /// One pull request: its messages, each acked, added to `out`.
    fn pull(&mut self, want: usize, out: &mut Vec<Message>) -> Result<(), String> {
        let consumer = self.consumer.clone();
        let mut last_seq = self.last_seq;
        let pulled = pull_into(self.connection(), &consumer, want, &mut last_seq, out);
        self.last_seq = last_seq;
        pulled
    }

    fn stream_info(&mut self) -> jetstream::StreamInfo {
        let name = self.consumer.stream.clone();
        loop {
            match jetstream::stream_info(self.connection(), &name) {
                Ok(info) => return info,
                Err(error) => {
                    eprintln!("test reader: {error}; again");
                    self.connection = None;
                }
            }
        }
    }
}

/// Pulls up to `want` messages of `consumer` and acks them; those after
/// stream sequence `last_seq` go to `out`, and `last_seq` follows them.
fn pull_into(
    connection: &mut Connection,
    consumer: &ConsumerSettings,
    want: usize,
    last_seq: &mut u64,
    out: &mut Vec<Message>,
) -> Result<(), String> {
    let inbox = connection.new_inbox();
    let batch = want.min(1000);
    let expires = Duration::from_secs(1);
    jetstream::request_next(connection, consumer, &inbox, batch, expires)
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + expires + Duration::from_secs(2);
    let mut got = 0;
    while got < batch {
        let message = match connection.next_event(deadline) {
            Ok(Some(message)) => message,
            Ok(None) => return Err("no end to a pull request".into()),
            Err(error) => return Err(error.to_string()),
        };
        if message.status.is_some() {
            break;
        }
        got += 1;
        jetstream::ack(connection, &message).map_err(|e| e.to_string())?;
        let seq = jetstream::stream_sequence(&message).expect("an ack subject");
        if seq > *last_seq {
            assert_eq!(seq, *last_seq + 1, "stream sequence after {last_seq}");
            *last_seq = seq;
            out.push(message);
        }
    }
    connection.flush().map_err(|e| e.to_string())
}

/// Checks that `messages` are `topic`'s messages `first`, `first + 1`,
/// ..., each under its brook id, `<topic>:<incarnation>:<offset>`, all of
/// one incarnation.
fn assert_in_order(messages: &[Message], topic: &str, first: u64) {
    let incarnation = messages.first().map(message_incarnation);
    for (i, message) in messages.iter().enumerate() {
        let offset = first + i as u64;
        assert_eq!(message.subject, topic);
        assert_eq!(
            String::from_utf8_lossy(&message.payload),
            offset.to_string(),
            "message {i} of the stream"
        );
        assert_eq!(
            message.header("Nats-Msg-Id"),
            Some(format!("{topic}:{}:{offset}", incarnation.as_ref().unwrap()).as_str())
        );
    }
}

/// The incarnation in a mirrored message's `Nats-Msg-Id`.
fn message_incarnation(message: &Message) -> String {
    let id = message.header("Nats-Msg-Id").expect("a Nats-Msg-Id");
    let mut words = id.rsplitn(3, ':');
    let (_offset, incarnation) = (words.next(), words.next());
    let incarnation = incarnation.unwrap_or_else(|| panic!("no incarnation in {id:?}"));
    assert!(incarnation.bytes().all(|c| c.is_ascii_hexdigit()), "{id:?}");
    incarnation.to_owned()
}

#[test]
fn the_nats_client_fails_over_publishes_with_headers_and_asks_jetstream() {
    if !nats_server_available("the_nats_client_fails_over") {
        return;
    }
    let server = NatsServer::single();
    let nobody = format!("127.0.0.1:{}", free_port());
    let mut servers = Servers::new(vec![nobody, server.addr.clone()], Auth::None);
    let mut connection = servers.connect().expect("the second address answers");
    assert_eq!(connection.address(), server.addr);

    let sid = connection.subscribe("greetings.*").unwrap();
    let headers = [("Nats-Msg-Id", "greetings.eu:0")];
    connection
        .publish_with_headers("greetings.eu", None, &headers, b"hello\r\nworld")
        .unwrap();
    connection.flush().unwrap();
    let message = connection
        .next_event(Instant::now() + common::WAIT)
        .unwrap()
        .expect("our own message comes back");
    assert_eq!(
        (message.subject.as_str(), message.sid),
        ("greetings.eu", sid)
    );
    assert_eq!(message.payload, b"hello\r\nworld");
    assert_eq!(message.header("nats-msg-id"), Some("greetings.eu:0"));

    let settings = StreamSettings {
        name: "GREETINGS".into(),
        subjects: vec!["greetings.*".into()],
        replicas: 1,
        duplicate_window: Duration::from_secs(60),
    };
    let created = jetstream::ensure_stream(&mut connection, &settings).unwrap();
    assert_eq!((created.messages, created.last_seq), (0, 0));
    let again = jetstream::ensure_stream(&mut connection, &settings).unwrap();
    assert_eq!(again, created, "an existing stream is used as it is");
    match jetstream::stream_info(&mut connection, "NOSUCH") {
        Err(jetstream::JetStreamError::Api(error)) => assert_eq!(error.code, 404),
        other => panic!("expected a 404, got {other:?}"),
    }

    let wrong = Auth::Token("not-the-token".into());
    drop(server);
    assert!(
        Servers::new(vec![format!("127.0.0.1:{}", free_port())], wrong)
            .connect()
            .is_err(),
        "no server, no connection"
    );
}

/// A flood of messages the caller does not take ends the connection
/// instead of filling memory (review finding 5).
#[test]
fn the_nats_client_holds_a_bounded_number_of_messages() {
    if !nats_server_available("the_nats_client_is_bounded") {
        return;
    }
    let server = NatsServer::single();
    let bound = 8;
    let limits = Limits {
        events: bound,
        ..Limits::default()
    };
    let mut connection = Connection::connect_with(&server.addr, &Auth::None, &limits).unwrap();
    connection.subscribe("flood").unwrap();
    for _ in 0..1000 {
        connection.publish("flood", None, b"x").unwrap();
    }
    connection.flush().unwrap();
    // Nothing is taken until the bound is reached: the flood then
    // outruns the one-by-one taking below by far.
    let deadline = Instant::now() + common::WAIT;
    while !connection.events().is_full() {
        assert!(Instant::now() < deadline, "the flood never came");
        std::thread::yield_now();
    }
    let mut taken = 0;
    let error = loop {
        match connection.next_event(deadline) {
            Ok(Some(_)) => taken += 1,
            Ok(None) => panic!("neither the flood nor an error after {taken} messages"),
            Err(error) => break error,
        }
    };
    assert!(matches!(error, NatsError::Overrun(8)), "{error}");
    assert!(taken <= bound, "{taken} messages");
}

/// A stand-in for a NATS server that answers the handshake of each of
/// `connections` clients, then neither reads nor writes again; it hands
/// back the sockets, held open.
fn silent_server(connections: usize) -> (String, std::thread::JoinHandle<Vec<TcpStream>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        let mut sockets = Vec::new();
        for _ in 0..connections {
            let (mut socket, _) = listener.accept().unwrap();
            socket
                .write_all(b"INFO {\"max_payload\":1048576}\r\n")
                .unwrap();
            let mut seen = Vec::new();
            let mut chunk = [0u8; 4096];
            while !seen.ends_with(b"PING\r\n") {
                let n = socket.read(&mut chunk).unwrap();
                assert!(n > 0, "the client left during its handshake");
                seen.extend_from_slice(&chunk[..n]);
            }
            socket.write_all(b"PONG\r\n").unwrap();
            sockets.push(socket);
        }
        sockets
    });
    (addr, server)
}

/// A half-open connection or a server that stops reading ends the
/// connection instead of hanging the bridge (review finding 4).
#[test]
fn the_nats_client_gives_up_on_a_server_that_stops_answering_or_reading() {
    let (addr, server) = silent_server(2);
    let pings = Limits {
        ping_every: Duration::from_millis(100),
        ..Limits::default()
    };
    let quiet = Connection::connect_with(&addr, &Auth::None, &pings).unwrap();
    match quiet.next_event(Instant::now() + common::WAIT) {
        Err(NatsError::Timeout(what)) => assert!(what.contains("PONG"), "{what}"),
        other => panic!("expected no PONG to end the connection, got {other:?}"),
    }
    let writes = Limits {
        write_patience: Duration::from_millis(200),
        ..Limits::default()
    };
    let stuck = Connection::connect_with(&addr, &Auth::None, &writes).unwrap();
    let _sockets = server.join().unwrap();
    let payload = vec![b'x'; 1 << 20];
    let failed = (0..256).find_map(|_| {
        let sent = stuck.publish("nobody.reads", None, &payload);
        sent.and_then(|()| stuck.flush()).err()
    });
    assert!(
        failed.is_some(),
        "256 MiB written to a server that reads nothing"
    );
}

#[test]
fn the_nats_client_logs_in_with_a_user_and_password_or_a_token() {
    if !nats_server_available("the_nats_client_logs_in") {
        return;
    }
    let user = NatsServer::with_args(&["--user", "alice", "--pass", "se cret"]);
    let alice = |password: &str| Auth::UserPassword {
        user: "alice".into(),
        password: password.into(),
    };
    assert!(Connection::connect(&user.addr, &alice("se cret")).is_ok());
    for wrong in [alice("guess"), Auth::None] {
        match Connection::connect(&user.addr, &wrong) {
            Err(NatsError::Server(text)) => assert!(text.contains("Authorization"), "{text}"),
            other => panic!("{wrong:?}: expected a refusal, got {other:?}"),
        }
    }
    let token = NatsServer::with_args(&["--auth", "s3cret"]);
    assert!(Connection::connect(&token.addr, &Auth::Token("s3cret".into())).is_ok());
    assert!(Connection::connect(&token.addr, &Auth::Token("guess".into())).is_err());
}

#[test]
fn to_nats_puts_each_message_once_in_order_into_one_server() {
    if !nats_server_available("to_nats_into_one_server") {
        return;
    }
    let server = NatsServer::single();
    // brook's defaults: an ack timeout (2 s) below the bridge's PubAck
    // patience, which SCALING.md advises against, still mirrors in order.
    let brook = start_broker(&config());
    let count = 5_000;
    publish_confirmed(brook.local_addr(), "orders.eu", count);
    let _bridge = start_bridge(
        &brook,
        &server.addr,
        &["--to-nats", "orders.eu=ORDERS"],
        ORDERS_READY,
    );
    let mut reader = StreamReader::new(&server.addr, "ORDERS");
    let messages = reader.read(count as usize);
    assert_in_order(&messages, "orders.eu", 0);
    assert_eq!(reader.stream_info().messages, count, "no message twice");
}

/// `--metrics-addr`: a mirror's figures, scraped over real HTTP once its
/// messages are in the stream, say what it did; another path is not
/// found.
#[test]
fn the_metrics_endpoint_counts_what_a_to_nats_mirror_forwarded() {
    if !nats_server_available("to_nats_metrics") {
        return;
    }
    let server = NatsServer::single();
    let brook = patient_brook();
    let count = 1_000;
    publish_confirmed(brook.local_addr(), "orders.eu", count);
    let args = [&["--to-nats", "orders.eu=ORDERS"][..], &METRICS_ON_ANY_PORT].concat();
    let bridge = start_bridge(&brook, &server.addr, &args, ORDERS_READY);
    let metrics = metrics_addr(&bridge);
    let mut reader = StreamReader::new(&server.addr, "ORDERS");
    assert_in_order(&reader.read(count as usize), "orders.eu", 0);

    let labels = r#"{direction="to-nats",stream="ORDERS",pattern="orders.eu"}"#;
    let figures = scrape_until(metrics, labels, |f| {
        f.get("brook_bridge_in_flight_messages") == 0
            && f.get("brook_bridge_connected") == 1
            && f.get("brook_bridge_forwarded_total") >= count
    });
    let forwarded = figures.get("brook_bridge_forwarded_total");
    let duplicates = figures.get("brook_bridge_duplicates_total");
    let failures = figures.get("brook_bridge_session_failures_total");
    if failures == 0 {
        // A session that fails (a PubAck over 10 s late, on a busy
        // machine) sends its window again, and JetStream answers
        // duplicate to what it had.
        assert_eq!((forwarded, duplicates), (count, 0), "one PubAck each");
    }
    assert!(
        forwarded - duplicates <= count,
        "{forwarded} - {duplicates}"
    );
    assert_eq!(
        figures.get("brook_bridge_nats_connections_total"),
        failures + 1
    );
    assert_eq!(figures.get("brook_bridge_brook_connections_total"), 1);
    assert_eq!(figures.get("brook_bridge_unmirrorable_total"), 0);

    let elsewhere = http(metrics, b"GET /stats HTTP/1.1\r\n\r\n");
    assert_eq!(elsewhere.status, "HTTP/1.1 404 Not Found");
}

/// A `--metrics-addr` in use stops the bridge at its start, saying
/// which flag: no NATS server is needed to see it.
#[test]
fn a_metrics_address_in_use_stops_the_bridge_at_its_start() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut command = Command::new(env!("CARGO_BIN_EXE_brook-bridge"));
    command.args(["--to-nats", "orders.*=ORDERS", "--metrics-addr", &addr]);
    let mut bridge = LoggedChild::spawn("brook-bridge", command);
    bridge.wait_for_log(
        &format!("cannot serve metrics on {addr} (--metrics-addr)"),
        1,
        common::WAIT,
    );
    assert!(!bridge.wait_for_exit(common::WAIT).success());
}

/// A stream made elsewhere with NATS's default window (2 minutes) would
/// store twice what a bridge down longer sends again: the bridge says so
/// (review finding 7).
#[test]
fn to_nats_warns_of_an_existing_stream_with_a_short_duplicate_window() {
    if !nats_server_available("to_nats_short_window") {
        return;
    }
    let server = NatsServer::single();
    make_stream(
        &server.addr,
        "ORDERS",
        "orders.eu",
        Duration::from_secs(120),
    );
    let brook = patient_brook();
    let bridge = start_bridge(
        &brook,
        &server.addr,
        &["--to-nats", "orders.eu=ORDERS"],
        ORDERS_READY,
    );
    bridge.wait_for_log("remembers message ids for 120s", 1, common::WAIT);
}

#[test]
fn to_nats_logs_in_to_a_brook_with_an_auth_file() {
    if !nats_server_available("to_nats_logs_in") {
        return;
    }
    let server = NatsServer::single();
    let users = format!(
        "user mirror\n{}  publish orders.>\n  subscribe orders.>\n  group orders.>\n",
        password_line("a \"quoted\" secret")
    );
    let file = AuthFile::new(&users);
    let brook = start_broker(&Config {
        ack_timeout: Duration::from_secs(60),
        ..auth_config(&file)
    });
    let login = Login::new("mirror", "a \"quoted\" secret");
    let mut publisher = Publisher::connect_confirmed_as(brook.local_addr(), Some(&login)).unwrap();
    let count = 500;
    for i in 0..count {
        publisher
            .publish("orders.eu", i.to_string().as_bytes())
            .unwrap();
    }
    for i in 0..count {
        assert_eq!(publisher.confirmation().unwrap(), i);
    }
    // The user from the flag, the password from the environment.
    let args = ["--to-nats", "orders.eu=ORDERS", "--brook-user", "mirror"];
    let mut command = bridge_command(brook.local_addr(), &server.addr, &args);
    command.env("BROOK_PASSWORD", login.password());
    let _bridge = run_bridge(command, ORDERS_READY);
    let mut reader = StreamReader::new(&server.addr, "ORDERS");
    assert_in_order(&reader.read(count as usize), "orders.eu", 0);
}

#[test]
fn to_nats_on_a_pattern_keeps_each_topics_order_and_skips_what_nats_cannot_name() {
    if !nats_server_available("to_nats_on_a_pattern") {
        return;
    }
    let server = NatsServer::single();
    let brook = patient_brook();
    let count = 2_000;
    // A name with a space matches orders.* but is no NATS subject: the
    // bridge logs it and goes on.
    for topic in ["orders.eu", "orders.two words", "orders.us"] {
        publish_confirmed(brook.local_addr(), topic, count);
    }
    publish_confirmed(brook.local_addr(), "payments.eu", 10);
    let bridge = start_bridge(
        &brook,
        &server.addr,
        &["--to-nats", "orders.*=ORDERS"],
        ORDERS_READY,
    );
    let mut reader = StreamReader::new(&server.addr, "ORDERS");
    let messages = reader.read(2 * count as usize);
    for topic in ["orders.eu", "orders.us"] {
        let of_topic: Vec<Message> = messages
            .iter()
            .filter(|m| m.subject == topic)
            .cloned()
            .collect();
        assert_eq!(of_topic.len(), count as usize, "{topic}");
        assert_in_order(&of_topic, topic, 0);
    }
    assert_eq!(
        reader.stream_info().messages,
        2 * count,
        "nothing else, nothing twice"
    );
    bridge.wait_for_log("is not a NATS subject", count as usize, common::WAIT);
}

/// Makes the one-replica stream `name` of `subjects` on the server at
/// `addr`, remembering message ids for `window`; the connection it used.
fn make_stream(addr: &str, name: &str, subjects: &str, window: Duration) -> Connection {
    let mut nats = Connection::connect(addr, &Auth::None).unwrap();
    let settings = StreamSettings {
        name: name.into(),
        subjects: vec![subjects.into()],
        replicas: 1,
        duplicate_window: window,
    };
    jetstream::ensure_stream(&mut nats, &settings).unwrap();
    nats
}

/// The stream PAY of `pay.*`, holding `payloads` on `pay.eu`, in order.
fn pay_stream(addr: &str, payloads: impl Iterator<Item = Vec<u8>>) {
    let mut nats = make_stream(addr, "PAY", "pay.*", Duration::from_secs(60));
    for (i, payload) in payloads.enumerate() {
        let reply = nats.request("pay.eu", &payload, common::WAIT);
        let ack = jetstream::PubAck::parse(&reply.unwrap()).unwrap();
        assert_eq!(ack.seq, i as u64 + 1);
    }
}

/// The bridge's `--to-nats` stream, made by the test before the bridge
/// starts (as the bridge would make it), so that its leader is known.
fn orders_stream(nats: &str, subjects: &str, replicas: u32) -> String {
    let addrs = nats.split(',').map(str::to_owned).collect();
    let mut connection = Servers::new(addrs, Auth::None).connect().unwrap();
    let settings = StreamSettings {
        name: "ORDERS".into(),
        subjects: vec![subjects.into()],
        replicas,
        duplicate_window: Duration::from_secs(600),
    };
    let deadline = Instant::now() + PATIENCE;
    loop {
        match jetstream::ensure_stream(&mut connection, &settings) {
            Ok(info) if info.leader.is_some() => return info.leader.unwrap(),
            Ok(_) => eprintln!("the stream has no leader yet"),
            Err(error) => eprintln!("creating the stream: {error}"),
        }
        assert!(Instant::now() < deadline, "no stream leader");
    }
}

/// Waits until the stream holds at least `count` messages, and returns
/// how many it holds.
fn wait_for_stream(reader: &mut StreamReader, count: u64) -> u64 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let held = reader.stream_info().messages;
        if held >= count {
            return held;
        }
        assert!(Instant::now() < deadline, "{held} of {count} messages");
    }
}

/// 100,000 messages of two topics, all in brook before the bridge
/// starts, go through a three-node cluster whose stream leader (the
/// server the bridge is connected to) is killed once half are stored,
/// with the rest in flight: each topic's messages are in the stream
/// once each, in order, and the bridge started a new session.
#[test]
fn to_nats_survives_the_death_of_the_stream_leader_of_a_three_node_cluster() {
    if !nats_server_available("to_nats_cluster_failover") {
        return;
    }
    let mut cluster = NatsCluster::start();
    let brook = patient_brook();
    let count: u64 = 100_000;
    let topics = ["orders.eu", "orders.us"];
    for topic in topics {
        publish_confirmed(brook.local_addr(), topic, count / 2);
    }
    let leader = orders_stream(&cluster.addrs(), "orders.*", 3);
    let leader_addr = cluster.server_mut(&leader).addr.clone();
    let others = cluster.servers.iter().filter(|s| s.name != leader);
    let leader_first: Vec<String> = std::iter::once(leader_addr)
        .chain(others.map(|s| s.addr.clone()))
        .collect();
    let nats_addrs = leader_first.join(",");
    let bridge = start_bridge(
        &brook,
        &nats_addrs,
        &["--to-nats", "orders.*=ORDERS", "--batch", "512"],
        ORDERS_READY,
    );
    let mut reader = StreamReader::new(&cluster.addrs(), "ORDERS");
    let held = wait_for_stream(&mut reader, count / 2);
    eprintln!("killing the stream leader {leader} with {held} messages stored");
    assert!(held < count, "the bridge was done before the leader died");
    cluster.server_mut(&leader).process.kill();
    bridge.wait_for_log("starting again", 1, PATIENCE);

    let messages = reader.read(count as usize);
    for topic in topics {
        let of_topic: Vec<Message> = messages
            .iter()
            .filter(|m| m.subject == topic)
            .cloned()
            .collect();
        assert_eq!(of_topic.len() as u64, count / 2, "{topic}");
        assert_in_order(&of_topic, topic, 0);
    }
    let info = reader.stream_info();
    assert_eq!(info.messages, count, "no message twice");
    assert_ne!(
        info.leader.as_deref(),
        Some(leader.as_str()),
        "a new leader"
    );
    assert_each_delivered_once(&brook, count);
}

#[test]
fn a_bridge_killed_and_started_again_resumes_where_it_was() {
    if !nats_server_available("bridge_restart") {
        return;
    }
    let server = NatsServer::single();
    let brook = patient_brook();
    let count = 20_000;
    publish_confirmed(brook.local_addr(), "orders.eu", count);
    let args = ["--to-nats", "orders.eu=ORDERS", "--batch", "512"];
    let mut bridge = start_bridge(&brook, &server.addr, &args, ORDERS_READY);
    let mut reader = StreamReader::new(&server.addr, "ORDERS");
    wait_for_stream(&mut reader, count / 4);
    bridge.kill();
    let held = reader.stream_info().messages;
    assert!(held < count, "the bridge was done before it was killed");
    let _bridge = start_bridge(&brook, &server.addr, &args, ORDERS_READY);
    let messages = reader.read(count as usize);
    assert_in_order(&messages, "orders.eu", 0);
    assert_eq!(reader.stream_info().messages, count, "no message twice");
}

/// A brook in memory started again gives its offsets again: its new
/// messages must not be taken for the old ones by JetStream's
/// de-duplication (review of the bridge, finding 1).
#[test]
fn a_brook_started_again_in_memory_is_mirrored_under_a_new_incarnation() {
    if !nats_server_available("brook_restart_in_memory") {
        return;
    }
    let server = NatsServer::single();
    let count = 100;
    let args = ["--to-nats", "orders.eu=ORDERS"];
    let mut reader = StreamReader::new(&server.addr, "ORDERS");
    let mut incarnations = Vec::new();
    for _ in 0..2 {
        let brook = patient_brook();
        publish_confirmed(brook.local_addr(), "orders.eu", count);
        let mut bridge = start_bridge(&brook, &server.addr, &args, ORDERS_READY);
        let messages = reader.read(count as usize);
        assert_in_order(&messages, "orders.eu", 0);
        incarnations.push(message_incarnation(&messages[0]));
        bridge.kill();
    }
    assert_ne!(incarnations[0], incarnations[1]);
    assert_eq!(
        reader.stream_info().messages,
        2 * count,
        "both brooks' messages"
    );
}

#[test]
fn from_nats_publishes_a_stream_into_brook_in_order() {
    if !nats_server_available("from_nats") {
        return;
    }
    let server = NatsServer::single();
    let brook = patient_brook();
    let count = 2_000;
    pay_stream(&server.addr, (0..count).map(|i| i.to_string().into_bytes()));
    let mut subscriber = Subscriber::connect(brook.local_addr()).unwrap();
    subscriber
        .subscribe(&["pay.eu"], StartAt::Beginning)
        .unwrap();
    let _bridge = start_bridge(
        &brook,
        &server.addr,
        &["--from-nats", "PAY=pay.eu"],
        "consuming JetStream PAY",
    );
    for i in 0..count {
        let delivery = subscriber
            .recv_timeout(PATIENCE)
            .unwrap()
            .expect("a delivery");
        assert_eq!(delivery.topic, "pay.eu");
        assert_eq!(String::from_utf8_lossy(&delivery.payload), i.to_string());
        subscriber.ack().unwrap();
    }
    common::client::expect_nothing(&mut subscriber, common::QUIET);
}

/// A `--from-nats` mirror of an idle stream notices that brook is gone
/// (killed, with no message to publish): its session ends, and the
/// metrics say it is not connected (review of the bridge's last items,
/// finding 1).
#[test]
fn from_nats_notices_brook_gone_while_the_stream_is_idle() {
    if !nats_server_available("from_nats_brook_gone") {
        return;
    }
    let server = NatsServer::single();
    pay_stream(&server.addr, std::iter::empty());
    let mut command = Command::new(env!("CARGO_BIN_EXE_brook"));
    command.args(["--addr", "127.0.0.1:0", "--in-memory"]);
    let mut brook = BrookProcess::start(command, common::WAIT).unwrap_or_else(|e| panic!("{e}"));
    let args = [&["--from-nats", "PAY=pay.eu"][..], &METRICS_ON_ANY_PORT].concat();
    let command = bridge_command(brook.addr, &server.addr, &args);
    let bridge = run_bridge(command, "consuming JetStream PAY");
    let metrics = metrics_addr(&bridge);
    let labels = r#"{direction="from-nats",stream="PAY",pattern="pay.eu"}"#;
    scrape_until(metrics, labels, |f| f.get("brook_bridge_connected") == 1);

    let mut child = brook.take_child();
    child.kill().unwrap();
    child.wait().unwrap();
    let figures = scrape_until(metrics, labels, |f| {
        f.get("brook_bridge_connected") == 0 && f.get("brook_bridge_session_failures_total") > 0
    });
    assert_eq!(figures.get("brook_bridge_forwarded_total"), 0);
    bridge.wait_for_log("brook: the broker closed the connection", 1, common::WAIT);
}

/// The durable consumer a `--from-nats` mirror makes has the flags'
/// `--ack-wait`, `--batch` (its `max_ack_pending`) and `--max-deliver`;
/// a bridge started again with other flags finds it otherwise, and says
/// so as it changes it.
#[test]
fn from_nats_makes_its_consumer_as_the_flags_ask_and_warns_when_it_was_not() {
    if !nats_server_available("from_nats_consumer") {
        return;
    }
    let server = NatsServer::single();
    let brook = patient_brook();
    pay_stream(&server.addr, std::iter::empty());
    let mut args = vec!["--from-nats=PAY=pay.eu", "--ack-wait=7s", "--batch=32"];
    let ready = "consuming JetStream PAY";
    let mut first = start_bridge(
        &brook,
        &server.addr,
        &[&args[..], &["--max-deliver=3"]].concat(),
        ready,
    );
    first.wait_for_log(
        "created the JetStream consumer PAY/brook-bridge-pay_eu",
        1,
        common::WAIT,
    );
    let config = pay_consumer_config(&server.addr);
    assert_eq!(config.u64_at("ack_wait"), Some(7_000_000_000));
    assert_eq!(config.u64_at("max_ack_pending"), Some(32));
    assert_eq!(config.u64_at("max_deliver"), Some(3));
    first.kill();

    args.push("--max-deliver=-1");
    let second = start_bridge(&brook, &server.addr, &args, ready);
    second.wait_for_log("--max-deliver asks -1, the consumer has 3", 1, common::WAIT);
    second.wait_for_log("JetStream changed it to the flags' values", 1, common::WAIT);
    assert_eq!(
        pay_consumer_config(&server.addr).i64_at("max_deliver"),
        Some(-1)
    );
}

/// The config of the consumer of `--from-nats PAY=<pattern>`, named
/// `durable`.
fn consumer_config(addr: &str, durable: &str) -> jetstream::Json {
    let mut nats = Connection::connect(addr, &Auth::None).unwrap();
    let info = format!("$JS.API.CONSUMER.INFO.PAY.{durable}");
    let info = jetstream::api(&mut nats, &info, "").unwrap();
    info.get("config").expect("a config").clone()
}

/// The config of the consumer of `--from-nats PAY=pay.eu`.
fn pay_consumer_config(addr: &str) -> jetstream::Json {
    consumer_config(addr, "brook-bridge-pay_eu")
}

/// A consumer made by hand under the name a `--from-nats` mirror would
/// use, but on other subjects, or pushing its messages, is not used, not
/// changed, and not tried again and again: the mirror ends, and the
/// bridge exits saying what to do (review of the bridge's last items,
/// findings 2 and 3).
#[test]
fn from_nats_ends_at_a_consumer_of_its_name_that_it_cannot_use() {
    if !nats_server_available("from_nats_unfit_consumer") {
        return;
    }
    let server = NatsServer::single();
    let brook = patient_brook();
    let mut nats = make_stream(&server.addr, "PAY", "pay.*", Duration::from_secs(60));
    for subject in ["pay.us", "pay.eu", "pay.de"] {
        let reply = nats.request(subject, b"x", common::WAIT).unwrap();
        jetstream::PubAck::parse(&reply).unwrap();
    }
    // brook-bridge-pay_eu, a pull consumer with explicit acks and the
    // bridge's default tunables, but of pay.us.
    let other_subjects = ConsumerSettings {
        stream: "PAY".into(),
        durable: "brook-bridge-pay_eu".into(),
        filter: "pay.us".into(),
        ack_wait: Duration::from_secs(30),
        max_ack_pending: 256,
        max_deliver: None,
    };
    jetstream::ensure_consumer(&mut nats, &other_subjects).unwrap();
    // brook-bridge-pay_de, of pay.de, but a push consumer.
    let push = r#"{"stream_name":"PAY","config":{"durable_name":"brook-bridge-pay_de",
        "deliver_subject":"push.here","ack_policy":"explicit","filter_subject":"pay.de"}}"#;
    jetstream::api(
        &mut nats,
        "$JS.API.CONSUMER.DURABLE.CREATE.PAY.brook-bridge-pay_de",
        push,
    )
    .unwrap();

    for (pattern, durable, why) in [
        (
            "pay.eu",
            "brook-bridge-pay_eu",
            "it takes the subjects pay.us",
        ),
        ("pay.de", "brook-bridge-pay_de", "it is a push consumer"),
    ] {
        let mirror = format!("PAY={pattern}");
        let command = bridge_command(brook.local_addr(), &server.addr, &["--from-nats", &mirror]);
        let mut bridge = LoggedChild::spawn("brook-bridge", command);
        assert!(!bridge.wait_for_exit(PATIENCE).success());
        let log = bridge.stderr();
        for needle in [why, &format!("nats consumer rm PAY {durable}")] {
            assert_eq!(log.matches(needle).count(), 1, "{needle:?} once in:\n{log}");
        }
        assert!(!log.contains("starting again"), "tried again:\n{log}");
    }
    let kept = pay_consumer_config(&server.addr);
    assert_eq!(kept.str_at("filter_subject"), Some("pay.us"), "not changed");
    let pushing = consumer_config(&server.addr, "brook-bridge-pay_de");
    assert_eq!(pushing.str_at("deliver_subject"), Some("push.here"));
    let mut line = Line::connect(brook.local_addr());
    assert_eq!(line.stat("messages_in"), 0, "nothing reached brook");
}

/// A message brook refuses for good (here, over its
/// `--max-message-bytes`, which also closes the publishing connection)
/// neither blocks the mirror nor lets the messages after it overtake
/// each other: it is answered +TERM, and those after it -NAK, so they
/// come back at once, in order (review finding 3).
#[test]
fn from_nats_skips_what_brook_refuses_for_good_and_keeps_the_rest_in_order() {
    if !nats_server_available("from_nats_refusal") {
        return;
    }
    let server = NatsServer::single();
    let brook = start_broker(&Config {
        ack_timeout: Duration::from_secs(60),
        max_message_bytes: 1000,
        ..config()
    });
    let (count, too_large) = (300u64, 100u64);
    pay_stream(
        &server.addr,
        (0..count).map(|i| match i == too_large {
            true => vec![b'x'; 2000],
            false => i.to_string().into_bytes(),
        }),
    );
    let mut subscriber = Subscriber::connect(brook.local_addr()).unwrap();
    subscriber
        .subscribe(&["pay.eu"], StartAt::Beginning)
        .unwrap();
    let args = [
        &["--from-nats", "PAY=pay.eu", "--batch", "64"][..],
        &METRICS_ON_ANY_PORT,
    ]
    .concat();
    let bridge = start_bridge(&brook, &server.addr, &args, "consuming JetStream PAY");
    for i in (0..count).filter(|&i| i != too_large) {
        let delivery = subscriber
            .recv_timeout(common::WAIT * 2)
            .unwrap()
            .unwrap_or_else(|| panic!("no message {i} (--ack-wait is 30 s)"));
        assert_eq!(String::from_utf8_lossy(&delivery.payload), i.to_string());
        subscriber.ack().unwrap();
    }
    common::client::expect_nothing(&mut subscriber, common::QUIET);
    bridge.wait_for_log("for good: message too large", 1, common::WAIT);

    let labels = r#"{direction="from-nats",stream="PAY",pattern="pay.eu"}"#;
    let figures = scrape_until(metrics_addr(&bridge), labels, |f| {
        f.get("brook_bridge_terms_total") == 1 && f.get("brook_bridge_in_flight_messages") == 0
    });
    assert_eq!(figures.get("brook_bridge_forwarded_total"), count - 1);
    assert!(
        figures.get("brook_bridge_naks_total") > 0,
        "those after the refusal in its batch"
    );
    assert!(figures.get("brook_bridge_brook_connections_total") >= 2);
}
