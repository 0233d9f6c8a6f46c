//! brook's benchmark: how many messages a second, how fast, at what cost, and
//! how that compares with the most a broker could do on this machine.
//!
//! ```sh
//! cargo run --release --example bench                      # every scenario
//! cargo run --release --example bench -- --scenario 1to1,latency --csv
//! cargo build --release && cargo run --release --example bench -- \
//!     --scenario connections --connections 10000 --broker-bin target/release/brook
//! ```
//!
//! # What it measures
//!
//! Each scenario connects raw-socket publishers and subscribers (see
//! `bench/load.rs`; `brook::client` allocates per message, which a load
//! generator cannot afford) to a fresh broker and moves `--count` messages per
//! publisher, every one acked by every subscriber:
//!
//! | scenario | shape |
//! | --- | --- |
//! | `1to1` | 1 publisher → 1 subscriber, one topic |
//! | `line` | 1 → 1 over the line protocol: `PUB` lines, `MSG` deliveries |
//! | `1to1-64k` | the same as `1to1` with 64 KiB payloads |
//! | `fanout` | 1 publisher → N subscribers of one topic |
//! | `fanin` | N publishers → 1 subscriber, one topic |
//! | `nton` | N pairs: publisher i → subscriber i on topic i |
//! | `latency` | 1 → 1 at a fixed rate, each message written on its own |
//! | `connections` | C idle subscribers, then one message: how long until all have it |
//!
//! Every payload carries its publisher, a sequence number and its send time
//! (as text in `line`, whose payloads must be text). Subscribers check that
//! each publisher's messages arrive exactly once and in order, and record the
//! latency of each in a histogram.
//!
//! Each binary throughput scenario, and the latency run, also runs against
//! the *relay* (`bench/relay.rs`): a null broker that copies publishers' bytes
//! straight to subscribers. It is the ceiling set by loopback TCP and system
//! calls on this machine, and brook's rows say what fraction of it they reach.
//! `line` has no relay run: the relay speaks only the binary protocol, and
//! one that forwarded `PUB` lines untouched would still have to find their
//! ends and answer each with `+OK <offset>`, the line protocol's work, while
//! its subscriber parsed `PUB` lines, not `MSG` deliveries. The `1to1` row is
//! its yardstick: the same messages over the binary protocol.
//!
//! # Retention
//!
//! brook keeps every message unless told otherwise, and a log that only
//! grows puts each payload in memory the process has never touched: on a
//! virtual machine every first touch of a page is a costly fault, and a
//! gigabyte of 64 KiB messages spends more time faulting than moving bytes.
//! A broker that has run for a while reuses the memory of the messages its
//! retention dropped, so the bench starts brook with `--retention-bytes
//! 256MiB` (change it with `--retention`) to measure that steady state. The
//! header line says what was used.
//!
//! # Reading the output
//!
//! A table with one row per scenario and target, then one line per row saying
//! whether every message arrived once and in order, then a legend of the
//! columns. The exit status is 1 if any message was lost, duplicated or
//! reordered, or a run failed; 2 for a bad command line.

#[path = "bench/connections.rs"]
mod connections;
#[path = "bench/histogram.rs"]
mod histogram;
#[path = "bench/load.rs"]
mod load;
#[path = "bench/relay.rs"]
mod relay;
#[path = "bench/report.rs"]
mod report;
#[path = "bench/svg.rs"]
mod svg;
#[path = "bench/target.rs"]
mod target;

use std::io::Write;
use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use connections::{ConnectionsPlan, Counters};
use load::{
    Epoch, Framing, Pacing, Protocol, PublisherPlan, SubscriberPlan, SubscriberReport, Tally,
};
use report::{Row, Throughput};
use target::{BrokerChoice, BrokerSettings, Target, TargetKind};

fn main() -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            print!("{}", help());
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("bench: {error}\nTry 'bench --help'.");
            return ExitCode::from(2);
        }
    };
    let epoch = Epoch(Instant::now());
    let mut rows = Vec::new();
    for &scenario in &options.scenarios {
        rows.extend(run_scenario(scenario, &options, epoch));
    }
    if let Some(path) = &options.svg {
        let title = format!("brook bench on {}", setting(&options));
        match std::fs::write(path, svg::chart(&rows, &title)) {
            Ok(()) => eprintln!("wrote {}", path.display()),
            Err(error) => eprintln!("bench: cannot write {}: {error}", path.display()),
        }
    }
    print_results(&options, &rows);
    match rows.iter().all(Row::is_ok) {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    }
}

// ---- Scenarios ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    OneToOne,
    Line,
    OneToOneLarge,
    FanOut,
    FanIn,
    Pairs,
    Latency,
    Connections,
}

const ALL_SCENARIOS: [Scenario; 8] = [
    Scenario::OneToOne,
    Scenario::Line,
    Scenario::OneToOneLarge,
    Scenario::FanOut,
    Scenario::FanIn,
    Scenario::Pairs,
    Scenario::Latency,
    Scenario::Connections,
];

/// The payload size of `1to1-64k`.
const LARGE_PAYLOAD: usize = 64 << 10;
/// The most one scenario publishes: the in-memory broker keeps every message.
const MAX_SCENARIO_BYTES: u64 = 1 << 30;
const LATENCY_PAYLOAD: usize = 128;

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::OneToOne => "1to1",
            Scenario::Line => "line",
            Scenario::OneToOneLarge => "1to1-64k",
            Scenario::FanOut => "fanout",
            Scenario::FanIn => "fanin",
            Scenario::Pairs => "nton",
            Scenario::Latency => "latency",
            Scenario::Connections => "connections",
        }
    }

    fn from_name(name: &str) -> Result<Scenario, String> {
        if name == "group" {
            return Err("scenario 'group' is not available yet: it needs consumer groups".into());
        }
        ALL_SCENARIOS
            .into_iter()
            .find(|scenario| scenario.name() == name)
            .ok_or_else(|| format!("unknown scenario '{name}'"))
    }

    /// The name with its shape, for the table.
    fn label(self, options: &Options) -> String {
        let name = self.name();
        match self {
            Scenario::OneToOne | Scenario::Line | Scenario::OneToOneLarge => name.to_owned(),
            Scenario::FanOut => format!("{name} 1→{}", options.subscribers),
            Scenario::FanIn => format!("{name} {}→1", options.publishers),
            Scenario::Pairs => format!("{name} {}×1→1", options.pairs),
            Scenario::Latency => format!("{name} {}/s", report::thousands(options.rate)),
            Scenario::Connections => {
                format!("{name} {}", report::thousands(options.connections as u64))
            }
        }
    }
}

/// Who publishes what to whom in a throughput or latency scenario.
struct Topology {
    scenario: Scenario,
    label: String,
    payload_bytes: usize,
    protocol: Protocol,
    publishers: Vec<PublisherPlan>,
    subscribers: Vec<SubscriberPlan>,
    notes: Vec<String>,
}

impl Topology {
    fn of(scenario: Scenario, options: &Options) -> Topology {
        let (publishers, subscribers, paired) = match scenario {
            Scenario::FanOut => (1, options.subscribers, false),
            Scenario::FanIn => (options.publishers, 1, false),
            Scenario::Pairs => (options.pairs, options.pairs, true),
            _ => (1, 1, false),
        };
        let (payload_bytes, pacing) = match scenario {
            Scenario::OneToOneLarge => (LARGE_PAYLOAD, Pacing::FlatOut),
            Scenario::Latency => (LATENCY_PAYLOAD, Pacing::Rate(options.rate)),
            _ => (options.size, Pacing::FlatOut),
        };
        let protocol = match scenario {
            Scenario::Line => Protocol::Line,
            _ => Protocol::Binary,
        };
        let mut notes = Vec::new();
        let count = match scenario {
            Scenario::Latency => options.rate * options.seconds,
            _ => {
                let per_publisher_cap = MAX_SCENARIO_BYTES / (payload_bytes * publishers) as u64;
                if options.count > per_publisher_cap {
                    notes.push(format!(
                        "--count capped at {} messages per publisher (1 GiB per scenario)",
                        report::thousands(per_publisher_cap)
                    ));
                }
                options.count.min(per_publisher_cap).max(1)
            }
        };
        let topic = |index: usize| match paired {
            true => format!("bench-{}-{index}", scenario.name()),
            false => format!("bench-{}", scenario.name()),
        };
        let publisher_plans = (0..publishers)
            .map(|id| PublisherPlan {
                id: id as u32,
                topic: topic(id),
                count,
                payload_bytes,
                pacing,
                protocol,
            })
            .collect();
        let subscriber_plans = (0..subscribers)
            .map(|index| SubscriberPlan {
                topic: topic(index),
                expected: (0..publishers)
                    .map(|id| if paired && id != index { 0 } else { count })
                    .collect(),
            })
            .collect();
        Topology {
            scenario,
            label: scenario.label(options),
            payload_bytes,
            protocol,
            publishers: publisher_plans,
            subscribers: subscriber_plans,
            notes,
        }
    }

    fn expected_messages(&self) -> u64 {
        self.subscribers.iter().flat_map(|s| &s.expected).sum()
    }

    /// An empty row for this topology, to be filled in by a run.
    fn row(&self, target: TargetKind) -> Row {
        Row {
            publishers: self.publishers.len(),
            subscribers: self.subscribers.len(),
            payload_bytes: self.payload_bytes,
            notes: self.notes.clone(),
            ..Row::new(
                self.scenario.name(),
                self.label.clone(),
                target,
                self.expected_messages(),
            )
        }
    }
}

/// Runs one scenario against brook and, where it applies, the relay: not
/// over the line protocol, which the relay does not speak (see the module
/// docs).
fn run_scenario(scenario: Scenario, options: &Options, epoch: Epoch) -> Vec<Row> {
    if scenario == Scenario::Connections {
        return vec![run_connections(options, epoch)];
    }
    let topology = Topology::of(scenario, options);
    let mut brook = run_flow(&topology, TargetKind::Brook, options, epoch);
    if !options.relay || topology.protocol == Protocol::Line {
        return vec![brook];
    }
    let mut relay = run_flow(&topology, TargetKind::Relay, options, epoch);
    if let (Some(ours), Some(theirs)) = (brook.throughput, relay.throughput) {
        brook.of_relay = Some(ours.total / theirs.total);
        relay.of_relay = Some(1.0);
    }
    vec![brook, relay]
}

// ---- Running a throughput or latency scenario ----

/// Runs `topology` against a fresh target of `kind`. The brook and relay runs
/// of a scenario differ only here, in the target and the framing its
/// subscribers receive.
fn run_flow(topology: &Topology, kind: TargetKind, options: &Options, epoch: Epoch) -> Row {
    let mut row = topology.row(kind);
    let target = match Target::start(kind, &options.broker, options.settings()) {
        Ok(target) => target,
        Err(error) => {
            row.errors.push(error);
            return row;
        }
    };
    let framing = match (kind, topology.protocol) {
        (TargetKind::Brook, Protocol::Binary) => Framing::Delivery,
        (TargetKind::Relay, Protocol::Binary) => Framing::Publish,
        (TargetKind::Brook, Protocol::Line) => Framing::Line,
        (TargetKind::Relay, Protocol::Line) => unreachable!("the relay has no line protocol"),
    };
    let progress = Progress::new(&topology.label, kind);
    let outcome = drive(topology, &target, framing, epoch, &progress);
    let stopped = target.stop();
    progress.clear();
    row.resources = stopped.resources;
    row.errors.extend(stopped.crash);

    for subscriber in &outcome.subscribers {
        row.latency.merge(&subscriber.latency);
    }
    row.tally = outcome.tally();
    row.throughput = outcome.throughput();
    row.errors.extend(outcome.errors);
    row
}

/// What the publishers and subscribers of one run report.
struct FlowOutcome {
    first_send_ns: Option<u64>,
    subscribers: Vec<SubscriberReport>,
    errors: Vec<String>,
}

impl FlowOutcome {
    fn tally(&self) -> Tally {
        let mut tally = Tally::default();
        for subscriber in &self.subscribers {
            tally.add(&subscriber.check.tally);
        }
        tally
    }

    /// Each subscriber's messages over the time from the first publish to
    /// its last message.
    fn throughput(&self) -> Option<Throughput> {
        let first_send_ns = self.first_send_ns?;
        if self.subscribers.iter().all(|s| s.last_arrival_ns.is_none()) {
            return None;
        }
        let rates: Vec<f64> = self
            .subscribers
            .iter()
            .map(|subscriber| {
                let last_ns = subscriber.last_arrival_ns.unwrap_or(first_send_ns);
                match last_ns.saturating_sub(first_send_ns) {
                    0 => 0.0,
                    elapsed_ns => subscriber.check.tally.distinct as f64 * 1e9 / elapsed_ns as f64,
                }
            })
            .collect();
        let total: f64 = rates.iter().sum();
        Some(Throughput {
            per_subscriber: total / rates.len().max(1) as f64,
            total,
        })
    }
}

/// Subscribes every subscriber, then starts the publishers, then waits for
/// every subscriber to have all its messages (or to give up).
fn drive(
    topology: &Topology,
    target: &Target,
    framing: Framing,
    epoch: Epoch,
    progress: &Progress,
) -> FlowOutcome {
    let addr = target.addr;
    let received = Arc::new(AtomicU64::new(0));
    let (ready_tx, ready_rx) = mpsc::channel();
    let subscribers: Vec<_> = topology
        .subscribers
        .iter()
        .enumerate()
        .map(|(index, plan)| {
            let (plan, ready, received) = (plan.clone(), ready_tx.clone(), received.clone());
            spawn(format!("bench-sub-{index}"), move || {
                match load::subscribe(addr, &plan.topic, framing.protocol()) {
                    Ok(stream) => {
                        let _ = ready.send(Ok(()));
                        load::receive(stream, &plan, framing, epoch, &received)
                    }
                    Err(error) => {
                        // Reported through `ready`, so not in the report too.
                        let _ = ready.send(Err(format!("subscriber {index}: {error}")));
                        SubscriberReport::nothing_received(&plan)
                    }
                }
            })
        })
        .collect();

    let mut errors: Vec<String> = (0..subscribers.len())
        .filter_map(|_| match ready_rx.recv() {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error),
            Err(_) => Some("a subscriber thread died".to_owned()),
        })
        .collect();
    let publishers: Vec<_> = match errors.is_empty() {
        true => topology
            .publishers
            .iter()
            .map(|plan| {
                let plan = plan.clone();
                spawn(format!("bench-pub-{}", plan.id), move || {
                    load::publish(addr, &plan, epoch)
                        .map_err(|e| format!("publisher {}: {e}", plan.id))
                })
            })
            .collect(),
        false => Vec::new(),
    };

    let finished = || subscribers.iter().all(|s| s.is_finished());
    // The first message means every connection is open: measure then, as a
    // fast run can be over before the sampler's next look.
    while received.load(Ordering::Relaxed) == 0 && !finished() {
        thread::sleep(Duration::from_millis(1));
    }
    target.sample_now();
    let expected = topology.expected_messages();
    while !finished() {
        progress.show(&format!(
            "{} / {} messages",
            report::thousands(received.load(Ordering::Relaxed)),
            report::thousands(expected)
        ));
        thread::sleep(Duration::from_millis(100));
    }
    let subscribers: Vec<SubscriberReport> = subscribers
        .into_iter()
        .map(|s| s.join().expect("a subscriber thread panicked"))
        .collect();
    let mut first_send_ns: Option<u64> = None;
    for publisher in publishers {
        match publisher.join().expect("a publisher thread panicked") {
            Ok(report) => {
                first_send_ns = first_send_ns.into_iter().chain(report.first_send_ns).min()
            }
            Err(error) => errors.push(error),
        }
    }
    for (index, subscriber) in subscribers.iter().enumerate() {
        if let Some(error) = &subscriber.error {
            errors.push(format!("subscriber {index}: {error}"));
        }
    }
    errors.dedup();
    FlowOutcome {
        first_send_ns,
        subscribers,
        errors,
    }
}

fn spawn<T: Send + 'static>(
    name: String,
    work: impl FnOnce() -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    thread::Builder::new()
        .name(name)
        .spawn(work)
        .expect("cannot start a bench thread")
}

// ---- Running the connections scenario ----

fn run_connections(options: &Options, epoch: Epoch) -> Row {
    let scenario = Scenario::Connections;
    let plan = ConnectionsPlan {
        connections: options.connections,
        topic: "bench-connections".to_owned(),
        payload_bytes: options.size,
    };
    let expected = plan.connections as u64;
    let mut row = Row {
        publishers: 1,
        subscribers: plan.connections,
        payload_bytes: plan.payload_bytes,
        ..Row::new(
            scenario.name(),
            scenario.label(options),
            TargetKind::Brook,
            expected,
        )
    };
    let target = match Target::start(TargetKind::Brook, &options.broker, options.settings()) {
        Ok(target) => target,
        Err(error) => {
            row.errors.push(error);
            return row;
        }
    };
    let progress = Progress::new(&row.label, TargetKind::Brook);
    let counters = Arc::new(Counters::default());
    let show_progress = || {
        progress.show(&format!(
            "{} subscribed, {} received, of {}",
            report::thousands(counters.subscribed.load(Ordering::Relaxed)),
            report::thousands(counters.arrived.load(Ordering::Relaxed)),
            report::thousands(plan.connections as u64)
        ))
    };
    // Every subscriber connected is the peak of threads and sockets; then
    // nothing may compete with the delivery being timed.
    let all_subscribed = || {
        target.sample_now();
        target.pause_sampling();
    };
    let report = connections::run(
        target.addr,
        &plan,
        epoch,
        &counters,
        show_progress,
        all_subscribed,
    );
    let stopped = target.stop();
    progress.clear();
    row.resources = stopped.resources;
    row.errors.extend(stopped.crash);

    if let Some(took) = report.subscribe_time {
        row.notes.push(format!(
            "{} subscribers connected and subscribed in {}",
            report::thousands(plan.connections as u64),
            report::nanoseconds(took.as_nanos() as u64)
        ));
    }
    row.latency = report.latency;
    row.tally = report.tally;
    row.errors.extend(report.errors);
    row
}

// ---- Progress ----

/// The one line on stderr that says what is running, redrawn in place.
struct Progress {
    prefix: String,
    started: Instant,
}

impl Progress {
    fn new(label: &str, target: TargetKind) -> Progress {
        Progress {
            prefix: format!("{label} · {}", target.name()),
            started: Instant::now(),
        }
    }

    fn show(&self, detail: &str) {
        let elapsed = self.started.elapsed().as_secs_f64();
        eprint!("\r{} · {detail} · {elapsed:.1} s   ", self.prefix);
        let _ = std::io::stderr().flush();
    }

    fn clear(&self) {
        eprint!("\r{:100}\r", "");
    }
}

// ---- Output ----

/// The machine and what the bench was pointed at, in one line.
fn setting(options: &Options) -> String {
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    let broker = match &options.broker {
        BrokerChoice::InProcess => "brook in-process".to_owned(),
        BrokerChoice::External { addr, .. } => format!("brook at {addr}"),
        BrokerChoice::Binary(path) => path.display().to_string(),
    };
    format!(
        "{cores} cores ({}): {broker}, window {}, retention {} per topic, payload {} B",
        std::env::consts::OS,
        options.window,
        report::bytes(options.retention as u64),
        options.size
    )
}

fn print_results(options: &Options, rows: &[Row]) {
    if options.csv {
        print!("{}", report::csv(rows));
        eprint!("{}", report::verdicts(rows));
        return;
    }
    let command: Vec<String> = std::env::args().collect();
    println!("brook bench on {}", setting(options));
    println!("command: {}", command.join(" "));
    println!();
    print!("{}", report::table(rows));
    println!();
    print!("{}", report::verdicts(rows));
    print!("{}", report::notes(rows));
    println!();
    print!("{}", report::LEGEND);
}

// ---- Flags ----

impl Options {
    fn settings(&self) -> BrokerSettings {
        BrokerSettings {
            window: self.window,
            retention_bytes: self.retention,
        }
    }
}

struct Options {
    scenarios: Vec<Scenario>,
    size: usize,
    count: u64,
    window: usize,
    retention: usize,
    subscribers: usize,
    publishers: usize,
    pairs: usize,
    rate: u64,
    seconds: u64,
    connections: usize,
    broker: BrokerChoice,
    relay: bool,
    csv: bool,
    svg: Option<PathBuf>,
}

/// Each flag: its name, the name of its value (empty for a switch), what it
/// does, and its default (empty for none).
#[rustfmt::skip]
const FLAGS: &[(&str, &str, &str, &str)] = &[
    ("--scenario", "LIST", "comma-separated scenarios, from the list below", "all"),
    ("--size", "BYTES", "payload of the throughput scenarios, at least 24", "128"),
    ("--count", "N", "messages per publisher (at most 1 GiB per scenario)", "1000000"),
    ("--window", "N", "in-flight window: brook's --max-inflight", "1024"),
    ("--retention", "BYTES", "brook's --retention-bytes (see the module docs)", "256MiB"),
    ("--subscribers", "N", "subscribers in fanout", "10"),
    ("--publishers", "N", "publishers in fanin", "4"),
    ("--pairs", "N", "publisher/subscriber pairs in nton", "4"),
    ("--rate", "N", "messages per second in latency (128 B payloads)", "10000"),
    ("--seconds", "N", "length of the latency run", "5"),
    ("--connections", "C", "idle subscribers in connections", "1000"),
    ("--addr", "HOST:PORT", "use a running broker instead of starting one", ""),
    ("--broker-pid", "PID", "with --addr: measure that process", ""),
    ("--broker-bin", "PATH", "start this brook binary for each scenario", ""),
    ("--no-relay", "", "skip the relay runs", ""),
    ("--csv", "", "print CSV rows instead of the table", ""),
    ("--svg", "FILE", "also draw latency and throughput in an SVG file", ""),
];

fn help() -> String {
    let mut text = String::from(
        "bench: brook's benchmark, with a relay (a null broker) as the yardstick\n\n\
         Usage: cargo run --release --example bench -- [FLAGS]\n\nFlags:\n",
    );
    for (flag, value, about, default) in FLAGS {
        let default = match *default {
            "" => String::new(),
            default => format!(" [default: {default}]"),
        };
        text.push_str(&format!(
            "  {:<24}{about}{default}\n",
            format!("{flag} {value}")
        ));
    }
    text.push_str(&format!("  {:<24}print this help\n", "-h, --help"));
    text.push_str(
        "\nScenarios:\n\
         \x20 1to1         1 publisher -> 1 subscriber, one topic\n\
         \x20 line         1 -> 1 over the line protocol: PUB lines, +OK replies read\n\
         \x20              as they come, MSG deliveries acked once written; no relay run\n\
         \x20 1to1-64k     1to1 with 65,536-byte payloads\n\
         \x20 fanout       1 publisher -> --subscribers subscribers, one topic\n\
         \x20 fanin        --publishers publishers -> 1 subscriber, one topic\n\
         \x20 nton         --pairs pairs, publisher i -> subscriber i on topic i\n\
         \x20 latency      1 -> 1 at --rate messages/s for --seconds\n\
         \x20 connections  --connections idle subscribers, then one message to all\n\
         \x20 group        not yet: needs consumer groups\n\
         \nWith 10,000 connections, use --broker-bin: in one process the broker's\n\
         sockets and the bench's would not fit the file-descriptor limit.\n",
    );
    text
}

impl Options {
    /// `Ok(None)` means `--help`.
    fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
        let mut options = Options {
            scenarios: ALL_SCENARIOS.to_vec(),
            size: 128,
            count: 1_000_000,
            window: 1024,
            retention: 256 << 20,
            subscribers: 10,
            publishers: 4,
            pairs: 4,
            rate: 10_000,
            seconds: 5,
            connections: 1000,
            broker: BrokerChoice::InProcess,
            relay: true,
            csv: false,
            svg: None,
        };
        let (mut addr, mut pid, mut binary) = (None, None, None);
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "-h" || arg == "--help" {
                return Ok(None);
            }
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
                None => (arg, None),
            };
            let Some(&(flag, value_name, _, _)) = FLAGS.iter().find(|f| f.0 == name) else {
                return Err(format!("unknown flag '{name}'"));
            };
            if value_name.is_empty() {
                if inline.is_some() {
                    return Err(format!("{flag} takes no value"));
                }
                match flag {
                    "--no-relay" => options.relay = false,
                    _ => options.csv = true,
                }
                continue;
            }
            let value = inline
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value ({value_name})"))?;
            let invalid = |expected: &str| format!("{flag} '{value}': expected {expected}");
            match flag {
                "--scenario" => options.scenarios = parse_scenarios(&value)?,
                "--size" => {
                    options.size = brook::config::parse_size(&value)
                        .filter(|size| (24..=8 << 20).contains(size))
                        .ok_or_else(|| invalid("a size from 24 bytes to 8MiB, such as 4KiB"))?
                }
                "--count" => options.count = whole(flag, &value)?,
                "--window" => options.window = whole(flag, &value)?,
                "--retention" => {
                    options.retention =
                        brook::config::parse_size(&value)
                            .filter(|&size| size > 0)
                            .ok_or_else(|| invalid("a size above zero, such as 256MiB"))?
                }
                "--subscribers" => options.subscribers = whole(flag, &value)?,
                "--publishers" => options.publishers = whole(flag, &value)?,
                "--pairs" => options.pairs = whole(flag, &value)?,
                "--rate" => options.rate = whole(flag, &value)?,
                "--seconds" => options.seconds = whole(flag, &value)?,
                "--connections" => options.connections = whole(flag, &value)?,
                "--broker-pid" => pid = Some(whole::<u32>(flag, &value)?),
                "--addr" => {
                    let resolved = value.to_socket_addrs().ok().and_then(|mut a| a.next());
                    addr =
                        Some(resolved.ok_or_else(|| invalid("HOST:PORT of a listening broker"))?);
                }
                "--broker-bin" => binary = Some(PathBuf::from(value)),
                "--svg" => options.svg = Some(PathBuf::from(value)),
                _ => unreachable!("every flag in FLAGS is handled"),
            }
        }
        options.broker = match (addr, pid, binary) {
            (Some(_), _, Some(_)) => {
                return Err("--addr and --broker-bin exclude each other".into())
            }
            (None, Some(_), _) => return Err("--broker-pid needs --addr".into()),
            (Some(addr), pid, None) => BrokerChoice::External { addr, pid },
            (None, None, Some(path)) => BrokerChoice::Binary(path),
            (None, None, None) => BrokerChoice::InProcess,
        };
        Ok(Some(options))
    }
}

/// A whole number above zero for `flag`; `1_000_000` is accepted.
fn whole<N: std::str::FromStr + Default + PartialOrd>(flag: &str, text: &str) -> Result<N, String> {
    text.replace('_', "")
        .parse()
        .ok()
        .filter(|n| *n > N::default())
        .ok_or_else(|| format!("{flag} '{text}': expected a whole number of at least 1"))
}

fn parse_scenarios(list: &str) -> Result<Vec<Scenario>, String> {
    let mut scenarios = Vec::new();
    for name in list
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
    {
        let scenario = Scenario::from_name(name)?;
        if !scenarios.contains(&scenario) {
            scenarios.push(scenario);
        }
    }
    match scenarios.is_empty() {
        true => Err("--scenario needs at least one scenario".into()),
        false => Ok(scenarios),
    }
}
