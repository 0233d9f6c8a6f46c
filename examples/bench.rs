//! brook's benchmark: how many messages a second, how fast, at what cost, and
//! how that compares with the most a broker could do on this machine.
//!
//! ```sh
//! cargo run --release --example bench                      # every scenario
//! cargo run --release --example bench -- --scenario 1to1,latency --csv
//! cargo run --release --example bench -- --scenario storage     # memory vs disk
//! cargo run --release --example bench -- --scenario recovery    # restart on 1 GiB
//! cargo run --release --example bench -- --scenario replay      # read 1 GiB back
//! cargo build --release && cargo run --release --example bench -- \
//!     --scenario topics --store disk-never --broker-bin target/release/brook
//! cargo run --release --example bench -- --scenario 1to1,fanin --store memory,disk-batch
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
//! | `1to1-pattern` | `1to1` through a pattern: the subscriber on `bench-1to1-pattern.*`, the publisher on `….eu` |
//! | `1to1-frame` | `1to1` with one frame per `write()`: each publish, and each ack |
//! | `line` | 1 → 1 over the line protocol: `PUB` lines, `MSG` deliveries |
//! | `1to1-64k` | the same as `1to1` with 64 KiB payloads |
//! | `fanout` | 1 publisher → N subscribers of one topic |
//! | `fanout-frame` | `fanout` with one frame per `write()` |
//! | `group` | 1 publisher → a consumer group of N members on one topic: each message to one member |
//! | `fanin` | N publishers → 1 subscriber, one topic |
//! | `nton` | N pairs: publisher i → subscriber i on topic i |
//! | `latency` | 1 → 1 at a fixed rate, each message written on its own |
//! | `connections` | C idle subscribers, then one message: how long until all have it |
//! | `storage` | `1to1` on each store: memory, disk-never, disk-batch, disk-always |
//! | `recovery` | fill a data dir with 1 GiB, restart on it: how long until it listens |
//! | `replay` | restart on 1 GiB, replay it from Beginning while a paced pair runs |
//! | `topics` | publish 80 MiB to each of 16 topics: the broker's memory; replay each |
//!
//! Every payload carries its publisher, a sequence number and its send time
//! (as text in `line`, whose payloads must be text). Subscribers check that
//! each publisher's messages arrive exactly once and in order, and record the
//! latency of each in a histogram. In `group` the members share the
//! messages, the broker giving each to one member in turn, so the check is
//! across them: every message arrived once, at one member, and each member's
//! share arrived in ascending order (a subset, not a run without gaps).
//!
//! Each binary throughput scenario, the latency run and the connections run
//! also run against the *relay* (`bench/relay.rs`): a null broker that copies
//! publishers' bytes straight to subscribers. It is the ceiling set by
//! loopback TCP and system calls on this machine, and brook's rows say what
//! fraction of it they reach. In connections the fraction is of times: the
//! relay's time to reach every subscriber divided by brook's.
//! `line` has no relay run: the relay speaks only the binary protocol, and
//! one that forwarded `PUB` lines untouched would still have to find their
//! ends and answer each with `+OK <offset>`, the line protocol's work, while
//! its subscriber parsed `PUB` lines, not `MSG` deliveries. The `1to1` row is
//! its yardstick: the same messages over the binary protocol. `group` has
//! no relay run either, as the relay has no consumer groups: to forward each
//! message to one subscriber in turn it would have to find where each
//! publish ends and count acks, a broker's work. Its yardstick is `1to1`,
//! the same messages each delivered once, to one subscriber. Nor has
//! `1to1-pattern`: the relay routes by exact name. Its yardstick is `1to1`
//! too, which it should reach within 10 % (issue 18): brook matches a topic
//! against the patterns once, when the topic is created, not per message.
//!
//! # Client writes
//!
//! The bench's clients batch: a publisher coalesces frames into writes of up
//! to 64 KiB, a subscriber answers all the deliveries one read brought with
//! one write of acks. Real clients often do not: willdot's Go client writes
//! each publish, and each ack, with a `write()` of its own, so the broker
//! reads one frame per `read()` and pays for every message's trip on its
//! own. `1to1-frame` and `fanout-frame` are `1to1` and `fanout` with clients
//! that write so, and `--client-writes frame` makes every other flat-out
//! scenario's clients write so too (`batched` is the default).
//!
//! # A peer: NATS
//!
//! With `--peer nats`, each scenario with a relay run (but `connections`),
//! and `1to1-pattern` (brook's patterns are NATS's), also runs against
//! `nats-server` (NATS core, from `PATH`; on Debian, `apt-get install
//! nats-server`), started fresh on a port of its choosing for each run,
//! with the same load spoken in NATS's protocol by the bench's own small
//! client (`CONNECT`, `SUB`, `PUB`, `PING`/`PONG`, `MSG` parsed as its
//! bytes arrive). NATS core keeps nothing and takes no acks,
//! so brook does more per message; the brook rows' `÷ nats` is brook's
//! messages a second over NATS's. Every message is counted as for brook.
//! Without `nats-server` on `PATH` the bench says how to install it, and
//! runs without those rows.
//!
//! # CPU per message
//!
//! A throughput or latency row says what each message cost in CPU time
//! (user + system, from `/proc/PID/stat`), per message delivered to a
//! subscriber: `broker µs/msg` for the broker's process, from the target's
//! start to its stop, and `clients µs/msg` for the bench's own process
//! during the load. Each needs the two apart: the broker's figure needs a
//! process of its own (`--broker-bin`, which also makes the relay a child,
//! or nats-server, or `--addr` with `--broker-pid`), and the clients'
//! figure one not in the bench. The clients' cost differs between targets
//! for the same load: brook's subscribers ack every delivery, NATS core's
//! do not.
//!
//! # Stores
//!
//! brook keeps its topics in memory or on disk, where `--fsync` says when
//! appended messages are forced to disk (`src/config.rs`, `src/store/disk/`).
//! `--store` names the stores every scenario runs on, one row each:
//! `memory` (the default), or `disk-never`, `disk-batch`, `disk-always`,
//! each a fresh data dir under the system's temp dir (`$TMPDIR`, or `/tmp`)
//! that is removed after the run. The header line names the temp dir's
//! file system: on `tmpfs` nothing reaches a disk and an fsync is free.
//! A disk row also says what fraction of the memory row's throughput it
//! reaches, if the scenario ran in memory too. `disk-always` fsyncs every
//! message, two to three and a half thousand a second on this machine, so
//! it runs at most [`ALWAYS_MAX_MESSAGES`] per scenario, and says so.
//!
//! `storage` is the one-run comparison: `1to1` on all four stores, whatever
//! `--store` says, with `disk-batch ÷ memory` in a note (its target is at
//! least one half). It has no relay run: the memory row is its yardstick.
//!
//! `recovery` fills a fresh data dir with `--recovery-size` of records
//! (1 GiB; messages of `--size` in one topic, each record 24 bytes of header
//! and its payload) through a brook with `--fsync never` and no retention,
//! checked by a subscriber, then stops it and starts a fresh brook on the
//! dir. The time until that broker listens, which is when
//! `brook::server::start` returns (or a `--broker-bin` child logs "listening
//! on"), is the recovery: every record's checksum is read and checked first.
//! Then a `TOPICS` query checks that the topic's offsets are as published.
//! The files were just written, so the restart reads them from the page
//! cache: it is a warm start. It takes 15 to 20 s (most of it the fill) and
//! needs the dir's size on disk, so it is not part of the default run.
//!
//! `replay` asks whether reading old messages holds up anyone else. It fills
//! a data dir as `recovery` does and restarts a brook (`--fsync batch`) on
//! it, which then holds none of the topic in memory (a broker keeps only the
//! newest part of each topic there; a restarted one, nothing), so every
//! message must be read back from the segment files. On that broker it runs
//! the `latency` pair (1 → 1, `--rate` messages a second of 128 B, on a
//! topic of its own) for `--seconds` on its own, then again while one
//! subscriber replays the whole filled topic from Beginning, acking every
//! message, to its end: that pair is open-ended, and its publisher stops
//! when the replay has its last message (the bench looks every 100 ms). Three
//! rows and the fill's: the replay (messages and bytes a second, and in a
//! note the time for the whole topic) and the pair's latency alone and
//! during the replay. The filled files are in the page cache, as in
//! `recovery`. It takes some 25 s and needs the dir's size on disk, so it
//! is not part of the default run either.
//!
//! `topics` asks how much memory many topics cost the broker. Every store
//! keeps the payloads of all topics within one budget, `--cache-bytes` on
//! disk and `--memory-bytes` in memory (`src/budget.rs`), which the bench
//! passes on when given, and only then: a brook from before the budget
//! refuses them. On a fresh broker it publishes `--topic-bytes` of `--size`
//! payloads to each of `--topics` topics, one flat-out publisher a topic
//! and no subscriber, and asks `STATS` every 10 ms until its `messages_in`
//! counts them all. That row's messages a second run from the first publish
//! to then; its peak RSS is the broker's until then, and a note gives
//! `memory_used` against `memory_budget` from `STATS` (a broker from before
//! the budget has neither). Its check is `TOPICS`: every topic's next
//! offset is the count published. Then one subscriber per topic replays it
//! from Beginning and checks every message arrived once and in order, the
//! disk store reading back from the segment files what its cache let go;
//! but not if the store let go of messages itself (the memory store over
//! its budget, or `--retention`): the note says how many. Run it with
//! `--broker-bin` to measure the broker alone: in this process the bench's
//! own memory counts too, and so does what an earlier row's broker freed
//! and the allocator kept. By default (16 × 80 MiB of 128 B, 10.5 M
//! messages) it takes some 10 s per store, and 2 GiB of memory or 1.5 GiB
//! of disk, so it is not part of the default run either.
//!
//! With `--addr`, the bench starts no broker: `--store` does not apply, and
//! `storage`, `recovery`, `replay` and `topics`, which need brokers of their
//! own, cannot run.
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
//! header line says what was used. A disk store deletes whole segment files
//! to stay under it (64 MiB each); the recovery fill keeps everything.
//!
//! # Reading the output
//!
//! A table with one row per scenario and target (without the columns no row
//! has a figure in), then one line per row saying whether every message
//! arrived once and in order, then a legend of what the table shows. The
//! chart (`bench/svg.rs`) goes to `target/bench.svg`, or where `--svg` says.
//! The progress line on stderr is drawn only on a terminal. The exit status is 1 if any message was lost, duplicated or
//! reordered, or a run failed; 2 for a bad command line.

mod common;
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

use std::io::{IsTerminal, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use brook::config::{Fsync, Storage};
use brook::wire::request::StartAt;

use common::temp::TempDir;
use common::{flags_help, read_flags, Flag};
use connections::{ConnectionsPlan, Counters};
use histogram::Histogram;
use load::{
    ClientWrites, ConsumerGroup, Epoch, Finish, Framing, Pacing, Protocol, PublisherPlan,
    SubscriberPlan, SubscriberReport, Tally, TopicOffsets,
};
use report::{Check, Row, Throughput};
use target::{BrokerChoice, BrokerSettings, CpuMeter, StoreKind, Target, TargetKind};

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some(relay::SERVE_FLAG) {
        return match relay::serve_until_stdin_closes() {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("relay: {error}");
                ExitCode::FAILURE
            }
        };
    }
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
    let path = &options.svg;
    match std::fs::write(path, svg::chart(&rows, "brook bench", &setting(&options))) {
        Ok(()) => eprintln!("wrote the chart to {}", path.display()),
        Err(error) => eprintln!("bench: cannot write {}: {error}", path.display()),
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
    OneToOnePattern,
    OneToOneFrame,
    Line,
    OneToOneLarge,
    FanOut,
    FanOutFrame,
    Group,
    FanIn,
    Pairs,
    Latency,
    Connections,
    Storage,
    Recovery,
    Replay,
    Topics,
}

const ALL_SCENARIOS: [Scenario; 16] = [
    Scenario::OneToOne,
    Scenario::OneToOnePattern,
    Scenario::OneToOneFrame,
    Scenario::Line,
    Scenario::OneToOneLarge,
    Scenario::FanOut,
    Scenario::FanOutFrame,
    Scenario::Group,
    Scenario::FanIn,
    Scenario::Pairs,
    Scenario::Latency,
    Scenario::Connections,
    Scenario::Storage,
    Scenario::Recovery,
    Scenario::Replay,
    Scenario::Topics,
];

/// What runs with no `--scenario`, or `--scenario all`: every scenario but
/// `recovery`, `replay` and `topics`, which take half a minute, or more than
/// a gigabyte of memory or disk (see the module docs).
fn default_scenarios() -> Vec<Scenario> {
    ALL_SCENARIOS
        .into_iter()
        .filter(|scenario| !LONG_SCENARIOS.contains(scenario))
        .collect()
}

/// The scenarios left out of the default run: each takes half a minute, or
/// holds more than a gigabyte.
const LONG_SCENARIOS: [Scenario; 3] = [Scenario::Recovery, Scenario::Replay, Scenario::Topics];

/// The payload size of `1to1-64k`.
const LARGE_PAYLOAD: usize = 64 << 10;
/// The most one scenario publishes: the in-memory broker keeps every message.
const MAX_SCENARIO_BYTES: u64 = 1 << 30;
const LATENCY_PAYLOAD: usize = 128;
/// The most messages a scenario publishes on `disk-always`, which fsyncs
/// each one: some 10 s on this machine.
const ALWAYS_MAX_MESSAGES: u64 = 20_000;
/// The bytes of a record in brook's segment files before its payload (see
/// `src/store/disk/log.rs`): the recovery fill counts them in the data dir's size.
const RECORD_HEADER_BYTES: u64 = 24;
/// The store the recovery scenario fills its data dir with, and the one it
/// restarts on (brook's default policy; recovery reads the same either way).
const RECOVERY_FILL_STORE: StoreKind = StoreKind::Disk(Fsync::Never);
const RECOVERY_RESTART_STORE: StoreKind = StoreKind::Disk(Fsync::Batch);
/// The issue's target for `disk-batch`: at least this fraction of the
/// memory store's throughput.
const BATCH_TARGET: f64 = 0.5;
/// The issue's target for recovering a 1 GiB data dir.
const RECOVERY_TARGET: Duration = Duration::from_secs(2);
/// The longest the open-ended pair of `replay` runs: it ends with the
/// replay, or after this long if the replay has not ended by then.
const REPLAY_PAIR_MAX_SECONDS: u64 = 600;
/// How often `topics` asks the broker how many messages it has stored.
const STORED_POLL: Duration = Duration::from_millis(10);

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::OneToOne => "1to1",
            Scenario::OneToOnePattern => "1to1-pattern",
            Scenario::OneToOneFrame => "1to1-frame",
            Scenario::Line => "line",
            Scenario::OneToOneLarge => "1to1-64k",
            Scenario::FanOut => "fanout",
            Scenario::FanOutFrame => "fanout-frame",
            Scenario::Group => "group",
            Scenario::FanIn => "fanin",
            Scenario::Pairs => "nton",
            Scenario::Latency => "latency",
            Scenario::Connections => "connections",
            Scenario::Storage => "storage",
            Scenario::Recovery => "recovery",
            Scenario::Replay => "replay",
            Scenario::Topics => "topics",
        }
    }

    fn from_name(name: &str) -> Result<Scenario, String> {
        ALL_SCENARIOS
            .into_iter()
            .find(|scenario| scenario.name() == name)
            .ok_or_else(|| format!("unknown scenario '{name}'"))
    }

    /// The name with its shape, for the table.
    fn label(self, options: &Options) -> String {
        let name = self.name();
        match self {
            Scenario::OneToOne
            | Scenario::OneToOnePattern
            | Scenario::OneToOneFrame
            | Scenario::Line
            | Scenario::OneToOneLarge
            | Scenario::Storage => name.to_owned(),
            Scenario::FanOut | Scenario::FanOutFrame => {
                format!("{name} 1→{}", options.subscribers)
            }
            Scenario::Group => format!("{name} 1→{}", options.members),
            Scenario::FanIn => format!("{name} {}→1", options.publishers),
            Scenario::Pairs => format!("{name} {}×1→1", options.pairs),
            Scenario::Latency => format!("{name} {}/s", report::thousands(options.rate)),
            Scenario::Connections => {
                format!("{name} {}", report::thousands(options.connections as u64))
            }
            Scenario::Recovery | Scenario::Replay => {
                format!("{name} {}", report::bytes(options.recovery_bytes))
            }
            Scenario::Topics => {
                format!(
                    "{name} {}×{}",
                    options.topics,
                    report::bytes(options.topic_bytes)
                )
            }
        }
    }

    /// The label of a row on `store`, which names the store unless every
    /// row of the scenario is in memory, and says `frame-writes` where
    /// `--client-writes frame` made a batched scenario's clients write one
    /// frame at a time.
    fn label_on(self, store: Option<StoreKind>, options: &Options) -> String {
        let mut label = self.label(options);
        if self.client_writes(options) != self.own_client_writes() {
            label.push_str(" frame-writes");
        }
        match store {
            Some(store) if options.stores(self) != [Some(StoreKind::Memory)] => {
                format!("{label} {}", store.name())
            }
            _ => label,
        }
    }

    /// How the scenario's clients write when `--client-writes` says nothing.
    fn own_client_writes(self) -> ClientWrites {
        match self {
            Scenario::OneToOneFrame | Scenario::FanOutFrame => ClientWrites::Frame,
            _ => ClientWrites::Batched,
        }
    }

    /// How the scenario's clients write: one frame at a time in the
    /// `-frame` scenarios, and in the others if `--client-writes` says so.
    fn client_writes(self, options: &Options) -> ClientWrites {
        match options.client_writes {
            ClientWrites::Frame => ClientWrites::Frame,
            ClientWrites::Batched => self.own_client_writes(),
        }
    }

    /// Whether the scenario also runs against the relay: not over the line
    /// protocol, which the relay does not speak, nor in a consumer group or
    /// through a pattern, which it does not have (see the module docs), and
    /// not `storage`, whose yardstick is the memory store.
    fn has_relay_run(self) -> bool {
        !matches!(
            self,
            Scenario::Line | Scenario::Group | Scenario::OneToOnePattern | Scenario::Storage
        )
    }

    /// Whether `--peer nats` runs the scenario against nats-server too:
    /// where the relay runs, and through a pattern, which NATS has (brook's
    /// are NATS's), but not `connections`, which has clients of its own
    /// that speak only brook's protocol.
    fn has_peer_run(self) -> bool {
        (self.has_relay_run() || self == Scenario::OneToOnePattern) && self != Scenario::Connections
    }
}

/// Who publishes what to whom in a throughput or latency scenario.
struct Topology {
    scenario: Scenario,
    /// What brook keeps its topics in; `None` for the relay, and a broker
    /// the bench does not start.
    store: Option<StoreKind>,
    label: String,
    payload_bytes: usize,
    protocol: Protocol,
    publishers: Vec<PublisherPlan>,
    subscribers: Vec<SubscriberPlan>,
    notes: Vec<String>,
}

impl Topology {
    fn of(scenario: Scenario, store: Option<StoreKind>, options: &Options) -> Topology {
        let (publishers, subscribers, paired) = match scenario {
            Scenario::FanOut | Scenario::FanOutFrame => (1, options.subscribers, false),
            Scenario::Group => (1, options.members, false),
            Scenario::FanIn => (options.publishers, 1, false),
            Scenario::Pairs => (options.pairs, options.pairs, true),
            Scenario::Topics => (options.topics, options.topics, true),
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
            Scenario::Recovery | Scenario::Replay => {
                let record_bytes = RECORD_HEADER_BYTES + payload_bytes as u64;
                let count = options.recovery_bytes.div_ceil(record_bytes);
                notes.push(format!(
                    "{} messages of {payload_bytes} B in one topic: {} of records, \
                     published with --fsync never and no retention",
                    report::thousands(count),
                    report::bytes(count * record_bytes)
                ));
                count
            }
            Scenario::Topics => {
                let count = (options.topic_bytes / payload_bytes as u64).max(1);
                notes.push(format!(
                    "{} of {payload_bytes} B to each of {}, one publisher each",
                    report::counted(count, "message"),
                    report::counted(publishers as u64, "topic")
                ));
                count
            }
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
        let always_cap = ALWAYS_MAX_MESSAGES / publishers as u64;
        let count = match store {
            Some(StoreKind::Disk(Fsync::Always)) if count > always_cap => {
                notes.push(format!(
                    "{} messages per publisher, not {}: disk-always fsyncs every message, \
                     so it runs at most {} per scenario",
                    report::thousands(always_cap.max(1)),
                    report::thousands(count),
                    report::thousands(ALWAYS_MAX_MESSAGES)
                ));
                always_cap.max(1)
            }
            _ => count,
        };
        let topic = |index: usize| match (scenario, paired) {
            (Scenario::OneToOnePattern, _) => format!("bench-{}.eu", scenario.name()),
            (_, true) => format!("bench-{}-{index}", scenario.name()),
            (_, false) => format!("bench-{}", scenario.name()),
        };
        // What a subscriber names: its topic, or in `1to1-pattern` the
        // pattern that covers it, which brook matches once, when the topic
        // is created after the subscription.
        let subscription = |index: usize| match scenario {
            Scenario::OneToOnePattern => format!("bench-{}.*", scenario.name()),
            _ => topic(index),
        };
        let writes = scenario.client_writes(options);
        let publisher_plans = (0..publishers)
            .map(|id| PublisherPlan {
                id: id as u32,
                topic: topic(id),
                count,
                payload_bytes,
                pacing,
                protocol,
                writes,
                finish: None,
            })
            .collect();
        let group = consumer_group(scenario, count * publishers as u64);
        let subscriber_plans = (0..subscribers)
            .map(|index| SubscriberPlan {
                topic: subscription(index),
                // Those of `topics` replay what was published before them.
                start: match scenario {
                    Scenario::Topics => StartAt::Beginning,
                    _ => StartAt::Current,
                },
                expected: (0..publishers)
                    .map(|id| if paired && id != index { 0 } else { count })
                    .collect(),
                finish: None,
                group: group.clone(),
                writes,
            })
            .collect();
        Topology {
            scenario,
            store,
            label: scenario.label_on(store, options),
            payload_bytes,
            protocol,
            publishers: publisher_plans,
            subscribers: subscriber_plans,
            notes,
        }
    }

    /// The same load in NATS's protocol, for nats-server.
    fn in_nats(mut self) -> Topology {
        self.protocol = Protocol::Nats;
        for publisher in &mut self.publishers {
            publisher.protocol = Protocol::Nats;
        }
        self
    }

    /// Makes the publishers open-ended: each sends until `finish` is asked,
    /// or `most` messages, and its subscribers expect as many as it sent.
    /// [`Finish`] counts for one publisher: for a topology of one pair.
    fn open_ended(mut self, finish: &Arc<Finish>, most: u64) -> Topology {
        for publisher in &mut self.publishers {
            publisher.count = most;
            publisher.finish = Some(finish.clone());
        }
        for subscriber in &mut self.subscribers {
            subscriber.expected = vec![most; self.publishers.len()];
            subscriber.finish = Some(finish.clone());
        }
        self
    }

    /// How many messages the subscribers should receive between them: the
    /// members of a consumer group share its messages, which count once.
    fn expected_messages(&self) -> u64 {
        match self.group() {
            Some(group) => group.expected,
            None => self.subscribers.iter().flat_map(|s| &s.expected).sum(),
        }
    }

    /// The consumer group the subscribers are the members of, if they are.
    fn group(&self) -> Option<&ConsumerGroup> {
        self.subscribers.first()?.group.as_deref()
    }

    /// An empty row for this topology, to be filled in by a run.
    fn row(&self, target: TargetKind) -> Row {
        Row {
            store: self.store,
            publishers: self.publishers.len(),
            subscribers: self.subscribers.len(),
            payload_bytes: self.payload_bytes,
            check: match self.group() {
                Some(_) => Check::Group,
                None => Check::Deliveries,
            },
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

/// The consumer group whose members are the subscribers of `scenario`, if
/// it has one, to receive `expected` messages between them. Its name is the
/// bench process's own, so that against a running broker (`--addr`) it
/// never joins a group an earlier run left with messages it never acked.
fn consumer_group(scenario: Scenario, expected: u64) -> Option<Arc<ConsumerGroup>> {
    let name = format!("bench-{}", std::process::id());
    (scenario == Scenario::Group).then(|| Arc::new(ConsumerGroup::new(name, expected)))
}

/// Runs one scenario against brook on each of its stores and, where it
/// applies, the relay.
fn run_scenario(scenario: Scenario, options: &Options, epoch: Epoch) -> Vec<Row> {
    let stores = options.stores(scenario);
    match scenario {
        Scenario::Connections => return run_connections_everywhere(stores, options, epoch),
        Scenario::Recovery => return run_recovery(options, epoch),
        Scenario::Replay => return run_replay(options, epoch),
        Scenario::Topics => {
            return stores
                .into_iter()
                .flat_map(|store| run_topics(store, options, epoch))
                .collect()
        }
        _ => {}
    }
    let mut rows: Vec<Row> = stores
        .into_iter()
        .map(|store| run_brook(&Topology::of(scenario, store, options), options, epoch))
        .collect();
    compare_with_memory(&mut rows, scenario);
    if options.relay && scenario.has_relay_run() {
        let topology = Topology::of(scenario, None, options);
        let mut relay = run_flow(
            &topology,
            TargetKind::Relay,
            &options.settings(),
            options,
            epoch,
        );
        for brook in &mut rows {
            if let Some(fraction) = rate_ratio(brook, &relay) {
                brook.of_relay = Some(fraction);
                relay.of_relay = Some(1.0);
            }
        }
        rows.push(relay);
    }
    if options.peer_nats && scenario.has_peer_run() {
        let topology = Topology::of(scenario, None, options).in_nats();
        let mut nats = run_flow(
            &topology,
            TargetKind::Nats,
            &options.settings(),
            options,
            epoch,
        );
        for brook in rows
            .iter_mut()
            .filter(|row| row.target == TargetKind::Brook)
        {
            if let Some(ratio) = rate_ratio(brook, &nats) {
                brook.of_nats = Some(ratio);
                nats.of_nats = Some(1.0);
            }
        }
        rows.push(nats);
    }
    rows
}

/// `ours`'s messages a second in total over `theirs`'s, if both ran.
fn rate_ratio(ours: &Row, theirs: &Row) -> Option<f64> {
    Some(ours.throughput?.total / theirs.throughput?.total)
}

/// Gives each disk row its throughput as a fraction of the memory row's,
/// and the `disk-batch` row of a flat-out scenario a note that says it, with
/// the target where the issue set one: 1 → 1.
fn compare_with_memory(rows: &mut [Row], scenario: Scenario) {
    let memory = rows
        .iter()
        .position(|row| row.store == Some(StoreKind::Memory));
    let Some(memory) = memory else { return };
    let Some(theirs) = rows[memory].throughput else {
        return;
    };
    for row in rows.iter_mut() {
        let (Some(StoreKind::Disk(fsync)), Some(ours)) = (row.store, row.throughput) else {
            continue;
        };
        let fraction = ours.total / theirs.total;
        row.of_memory = Some(fraction);
        if fsync != Fsync::Batch || scenario == Scenario::Latency {
            continue;
        }
        let target = match scenario {
            Scenario::OneToOne | Scenario::Storage => {
                format!(" (target: at least {:.0} %)", BATCH_TARGET * 100.0)
            }
            _ => String::new(),
        };
        row.notes.push(format!(
            "batch ÷ memory = {:.1} %{target}",
            fraction * 100.0
        ));
    }
    if rows.iter().any(|row| row.of_memory.is_some()) {
        rows[memory].of_memory = Some(1.0);
    }
}

/// Runs `topology` on a fresh brook with the topology's store: a disk
/// store on a fresh temp data dir, removed afterwards.
fn run_brook(topology: &Topology, options: &Options, epoch: Epoch) -> Row {
    match options.settings_on(topology.store) {
        Ok((settings, _data_dir)) => {
            run_flow(topology, TargetKind::Brook, &settings, options, epoch)
        }
        Err(error) => {
            let mut row = topology.row(TargetKind::Brook);
            row.errors.push(error);
            row
        }
    }
}

// ---- Running a throughput or latency scenario ----

/// Runs `topology` against a fresh target of `kind` with `settings`. The
/// brook and relay runs of a scenario differ only here, in the target and
/// the framing its subscribers receive.
fn run_flow(
    topology: &Topology,
    kind: TargetKind,
    settings: &BrokerSettings,
    options: &Options,
    epoch: Epoch,
) -> Row {
    let mut row = topology.row(kind);
    let target = match Target::start(kind, &options.broker, settings) {
        Ok(target) => target,
        Err(error) => {
            row.errors.push(error);
            return row;
        }
    };
    let progress = Progress::new(&topology.label, kind);
    let clients_cpu = CpuMeter::of_this_process();
    let outcome = drive(
        topology,
        &target,
        framing(kind, topology),
        epoch,
        Some(&progress),
    );
    if !target.shares_this_process() {
        row.clients_cpu = clients_cpu.used();
    }
    row.start_time = target.start_time;
    let stopped = target.stop();
    progress.clear();
    row.resources = stopped.resources;
    row.broker_cpu = stopped.broker_cpu;
    row.errors.extend(stopped.crash);
    outcome.record_in(&mut row);
    row
}

/// What the subscribers of `topology` receive from a target of `kind`.
fn framing(kind: TargetKind, topology: &Topology) -> Framing {
    match (kind, topology.protocol) {
        (TargetKind::Brook, Protocol::Binary) => Framing::Delivery,
        (TargetKind::Relay, Protocol::Binary) => Framing::Publish,
        (TargetKind::Brook, Protocol::Line) => Framing::Line,
        (_, Protocol::Nats) => Framing::Nats,
        (TargetKind::Relay | TargetKind::Nats, Protocol::Line) => {
            unreachable!("only brook has the line protocol")
        }
        (TargetKind::Nats, Protocol::Binary) => unreachable!("nats-server speaks only NATS"),
    }
}

/// What the publishers and subscribers of one run report.
struct FlowOutcome {
    /// When the first message was sent: the first publish, or, in a run
    /// without publishers (a replay of stored messages), when the
    /// subscribers began to subscribe: the first may have had all its
    /// messages before the last has subscribed.
    first_send_ns: Option<u64>,
    subscribers: Vec<SubscriberReport>,
    errors: Vec<String>,
}

impl FlowOutcome {
    /// Puts the run's latencies, tally, throughput and errors in `row`,
    /// and for a consumer group, how the members shared its messages.
    fn record_in(self, row: &mut Row) {
        for subscriber in &self.subscribers {
            row.latency.merge(&subscriber.latency);
        }
        row.tally = match row.check {
            Check::Deliveries | Check::Recovered | Check::Stored => self.tally(),
            Check::Group => {
                row.notes.push(self.shares_note());
                self.group_tally()
            }
        };
        row.throughput = self.throughput();
        row.errors.extend(self.errors);
    }

    /// From the first message sent to the last one `subscriber` received.
    fn elapsed_ns(&self, subscriber: &SubscriberReport) -> Option<u64> {
        let first_send_ns = self.first_send_ns?;
        let last_ns = subscriber.last_arrival_ns.unwrap_or(first_send_ns);
        Some(last_ns.saturating_sub(first_send_ns))
    }

    fn tally(&self) -> Tally {
        let mut tally = Tally::default();
        for subscriber in &self.subscribers {
            tally.add(&subscriber.check.tally);
        }
        tally
    }

    /// The tally of subscribers that are one consumer group's members: each
    /// message should have reached one of them, once.
    fn group_tally(&self) -> Tally {
        let Some((first, others)) = self.subscribers.split_first() else {
            return Tally::default();
        };
        let mut group = first.check.clone();
        for member in others {
            group.absorb(&member.check);
        }
        group.tally
    }

    /// How many messages each member of a consumer group had, at the least
    /// and the most, next to an even split.
    fn shares_note(&self) -> String {
        let shares = self.subscribers.iter().map(|s| s.check.tally.distinct);
        let least = shares.clone().min().unwrap_or_default();
        let most = shares.clone().max().unwrap_or_default();
        let members = self.subscribers.len().max(1) as u64;
        let even = shares.sum::<u64>() / members;
        let (members, least, most, even) = (
            report::counted(members, "member"),
            report::thousands(least),
            report::thousands(most),
            report::thousands(even),
        );
        match least == most {
            true => format!("{members} had {most} messages each: an even split"),
            false => {
                format!(
                    "{members} had from {least} to {most} messages each (an even split is {even})"
                )
            }
        }
    }

    /// Each subscriber's messages over the time from the first publish to
    /// its last message.
    fn throughput(&self) -> Option<Throughput> {
        self.first_send_ns?;
        if self.subscribers.iter().all(|s| s.last_arrival_ns.is_none()) {
            return None;
        }
        let rates: Vec<f64> = self
            .subscribers
            .iter()
            .map(|subscriber| match self.elapsed_ns(subscriber) {
                Some(0) | None => 0.0,
                Some(elapsed_ns) => {
                    subscriber.check.tally.distinct as f64 * 1e9 / elapsed_ns as f64
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
/// every subscriber to have all its messages (or to give up), showing how
/// many have arrived on `progress`, if given.
fn drive(
    topology: &Topology,
    target: &Target,
    framing: Framing,
    epoch: Epoch,
    progress: Option<&Progress>,
) -> FlowOutcome {
    let addr = target.addr;
    let subscribing_ns = epoch.nanos_at(Instant::now());
    let received = Arc::new(AtomicU64::new(0));
    let (ready_tx, ready_rx) = mpsc::channel();
    let subscribers: Vec<_> = topology
        .subscribers
        .iter()
        .enumerate()
        .map(|(index, plan)| {
            let (plan, ready, received) = (plan.clone(), ready_tx.clone(), received.clone());
            spawn(format!("bench-sub-{index}"), move || {
                match load::subscribe(addr, &plan, framing.protocol()) {
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
        if let Some(progress) = progress {
            progress.show(&format!(
                "{} / {} messages",
                report::thousands(received.load(Ordering::Relaxed)),
                report::thousands(expected)
            ));
        }
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
    if topology.publishers.is_empty() {
        first_send_ns = Some(subscribing_ns);
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

/// Runs the connections scenario on brook with each store, then on the
/// relay. A brook row's "of relay" compares the times to reach every
/// subscriber: the relay's divided by brook's, so that, as in the other
/// scenarios, 100 % would be as fast as the relay.
fn run_connections_everywhere(
    stores: Vec<Option<StoreKind>>,
    options: &Options,
    epoch: Epoch,
) -> Vec<Row> {
    let mut rows: Vec<Row> = stores
        .into_iter()
        .map(|store| run_connections(TargetKind::Brook, store, options, epoch))
        .collect();
    if !options.relay {
        return rows;
    }
    let mut relay = run_connections(TargetKind::Relay, None, options, epoch);
    let time_to_all =
        |row: &Row| (row.is_ok() && !row.latency.is_empty()).then(|| row.latency.max());
    if let Some(relays) = time_to_all(&relay) {
        for brook in &mut rows {
            if let Some(brooks) = time_to_all(brook) {
                brook.of_relay = Some(relays as f64 / brooks.max(1) as f64);
                relay.of_relay = Some(1.0);
            }
        }
    }
    rows.push(relay);
    rows
}

fn run_connections(
    kind: TargetKind,
    store: Option<StoreKind>,
    options: &Options,
    epoch: Epoch,
) -> Row {
    let scenario = Scenario::Connections;
    let plan = ConnectionsPlan {
        connections: options.connections,
        topic: "bench-connections".to_owned(),
        payload_bytes: options.size,
        framing: match kind {
            TargetKind::Brook => Framing::Delivery,
            TargetKind::Relay => Framing::Publish,
            TargetKind::Nats => unreachable!("connections has no NATS run"),
        },
    };
    let expected = plan.connections as u64;
    let mut row = Row {
        store,
        publishers: 1,
        subscribers: plan.connections,
        payload_bytes: plan.payload_bytes,
        ..Row::new(
            scenario.name(),
            scenario.label_on(store, options),
            kind,
            expected,
        )
    };
    let (target, _data_dir) = match start_on(kind, store, options) {
        Ok(started) => started,
        Err(error) => {
            row.errors.push(error);
            return row;
        }
    };
    row.start_time = target.start_time;
    let progress = Progress::new(&row.label, kind);
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

/// Starts a fresh target of `kind` with `store`, and the data dir it runs
/// on, to keep until it has stopped.
fn start_on(
    kind: TargetKind,
    store: Option<StoreKind>,
    options: &Options,
) -> Result<(Target, Option<TempDir>), String> {
    let (settings, data_dir) = options.settings_on(store)?;
    Target::start(kind, &options.broker, &settings).map(|target| (target, data_dir))
}

// ---- Running the recovery scenario ----

/// A data dir that `recovery` or `replay` filled, and what filled it.
struct Filled {
    /// The fill's one publisher and one subscriber, on one topic.
    topology: Topology,
    data_dir: TempDir,
    /// The flags of a brook restarted on the dir: no retention, and the
    /// restart's `--fsync`.
    restart_settings: BrokerSettings,
}

/// Fills a fresh data dir with `--recovery-size` through a brook with
/// `--fsync never` and no retention, and stops it. Returns the fill's row,
/// if it ran, and the dir, or why there is none to restart on.
fn fill_data_dir(
    scenario: Scenario,
    options: &Options,
    epoch: Epoch,
) -> (Option<Row>, Result<Filled, String>) {
    let mut topology = Topology::of(scenario, Some(RECOVERY_FILL_STORE), options);
    topology.label = format!(
        "{} fill {}",
        scenario.label(options),
        RECOVERY_FILL_STORE.name()
    );
    let data_dir = match target::data_dir() {
        Ok(data_dir) => data_dir,
        Err(error) => return (None, Err(error)),
    };
    let (StoreKind::Disk(fill_fsync), StoreKind::Disk(restart_fsync)) =
        (RECOVERY_FILL_STORE, RECOVERY_RESTART_STORE)
    else {
        unreachable!("the fill and the restart are on disk stores")
    };
    let settings = BrokerSettings {
        retention_bytes: None,
        storage: Storage::Disk(data_dir.path().to_owned()),
        fsync: fill_fsync,
        ..options.settings()
    };
    let row = run_flow(&topology, TargetKind::Brook, &settings, options, epoch);
    // Every message delivered at least once was stored: enough to restart
    // on, whatever else the fill row reports.
    if row.tally.missing() > 0 {
        let missing = report::thousands(row.tally.missing());
        let error = format!("not run: {missing} messages of the fill never arrived");
        return (Some(row), Err(error));
    }
    if options.cold {
        if let Err(error) = drop_page_cache() {
            return (Some(row), Err(error));
        }
    }
    let filled = Filled {
        topology,
        data_dir,
        restart_settings: BrokerSettings {
            fsync: restart_fsync,
            ..settings
        },
    };
    (Some(row), Ok(filled))
}

/// Counts in `row` the messages the broker at `addr` holds of each
/// publisher's topic, by the topic's offsets in `TOPICS`: as many as the
/// publisher sent, none missing and none more. Returns the offsets, `None`
/// for a topic the broker does not list.
fn tally_stored(
    row: &mut Row,
    addr: SocketAddr,
    publishers: &[PublisherPlan],
) -> Vec<Option<TopicOffsets>> {
    let topics: Vec<String> = publishers.iter().map(|p| p.topic.clone()).collect();
    let offsets = match load::topic_offsets(addr, &topics) {
        Ok(offsets) => offsets,
        Err(error) => {
            row.errors.push(format!("TOPICS: {error}"));
            return Vec::new();
        }
    };
    for (publisher, offsets) in publishers.iter().zip(&offsets) {
        let (topic, published) = (&publisher.topic, publisher.count);
        let Some(offsets) = offsets else {
            row.errors
                .push(format!("the broker lists no topic {topic}"));
            continue;
        };
        row.tally.distinct += offsets.next.min(published);
        row.tally.unexpected += offsets.next.saturating_sub(published);
        if offsets.next != published {
            row.errors.push(format!(
                "topic {topic}'s next offset is {}, after {published} published",
                offsets.next
            ));
        }
    }
    offsets
}

/// Writes everything out and drops the page cache, so that a restart reads
/// the data dir from the disk (`--cold`). Linux only, and only as root.
fn drop_page_cache() -> Result<(), String> {
    let synced = std::process::Command::new("sync")
        .status()
        .map_err(|e| format!("--cold: cannot run sync: {e}"))?;
    if !synced.success() {
        return Err(format!("--cold: sync failed: {synced}"));
    }
    std::fs::write("/proc/sys/vm/drop_caches", "1")
        .map_err(|e| format!("--cold: cannot drop the page cache ({e}); it takes root"))
}

/// What the restart found in the page cache, for the notes.
fn page_cache_note(options: &Options) -> &'static str {
    match options.cold {
        true => "the page cache was dropped before the restart (--cold): a cold start",
        false => "the files were just written, so the page cache held them: a warm start",
    }
}

/// Fills a fresh data dir through a brook with `--fsync never`, stops it,
/// and times a fresh brook's start on the dir, then checks the recovered
/// topic's offsets with `TOPICS`: a fill row and a restart row (see the
/// module docs).
fn run_recovery(options: &Options, epoch: Epoch) -> Vec<Row> {
    let scenario = Scenario::Recovery;
    let mut restart = Row {
        store: Some(RECOVERY_RESTART_STORE),
        check: Check::Recovered,
        ..Row::new(
            scenario.name(),
            format!(
                "{} restart {}",
                scenario.label(options),
                RECOVERY_RESTART_STORE.name()
            ),
            TargetKind::Brook,
            0,
        )
    };
    let (filled, fill) = fill_data_dir(scenario, options, epoch);
    let Filled {
        topology: fill,
        data_dir,
        restart_settings: settings,
    } = match fill {
        Ok(fill) => fill,
        Err(error) => {
            restart.errors.push(error);
            return filled.into_iter().chain([restart]).collect();
        }
    };
    let published = fill.expected_messages();
    restart.payload_bytes = fill.payload_bytes;
    restart.tally.expected = published;
    let (dir_bytes, files) = match target::usage(data_dir.path()) {
        Ok(usage) => usage,
        Err(error) => {
            let path = data_dir.path().display();
            restart
                .errors
                .push(format!("cannot measure {path}: {error}"));
            return filled.into_iter().chain([restart]).collect();
        }
    };

    let progress = Progress::new(&restart.label, TargetKind::Brook);
    progress.show(&format!("recovering {}", report::bytes(dir_bytes)));
    let started = Target::start(TargetKind::Brook, &options.broker, &settings);
    progress.clear();
    let target = match started {
        Ok(target) => target,
        Err(error) => {
            restart.errors.push(error);
            return filled.into_iter().chain([restart]).collect();
        }
    };
    let offsets = tally_stored(&mut restart, target.addr, &fill.publishers);
    restart.start_time = target.start_time;
    let stopped = target.stop();
    restart.resources = stopped.resources;
    restart.errors.extend(stopped.crash);
    if let Some(offsets) = offsets.iter().flatten().find(|offsets| offsets.first != 0) {
        restart.errors.push(format!(
            "the recovered topic starts at offset {}, not 0",
            offsets.first
        ));
    }
    let took = restart.start_time.unwrap_or_default();
    let seconds = took.as_secs_f64().max(1e-9);
    let rate = published as f64 / seconds;
    restart.throughput = Some(Throughput {
        per_subscriber: rate,
        total: rate,
    });
    restart.notes.push(format!(
        "started in {} on a data dir of {} in {files} files: {:.0} MB/s \
         (target for 1 GiB: under {} s)",
        report::nanoseconds(took.as_nanos() as u64),
        report::bytes(dir_bytes),
        dir_bytes as f64 / seconds / 1e6,
        RECOVERY_TARGET.as_secs()
    ));
    restart.notes.push(page_cache_note(options).to_owned());
    filled.into_iter().chain([restart]).collect()
}

// ---- Running the replay scenario ----

/// Fills a data dir as `recovery` does and restarts a brook on it, then runs
/// the `latency` pair on that broker on its own, and again while one
/// subscriber replays the filled topic from Beginning: the fill's row, the
/// replay's, and the pair's alone and during the replay (see the module
/// docs).
fn run_replay(options: &Options, epoch: Epoch) -> Vec<Row> {
    let scenario = Scenario::Replay;
    let store = Some(RECOVERY_RESTART_STORE);
    let label = format!("{} from beginning", scenario.label(options));
    let (fill_row, filled) = fill_data_dir(scenario, options, epoch);
    let filled = match filled {
        Ok(filled) => filled,
        Err(error) => {
            let mut replay = Row::new(scenario.name(), label, TargetKind::Brook, 0);
            replay.errors.push(error);
            return fill_row.into_iter().chain([replay]).collect();
        }
    };
    let replay = Topology {
        scenario,
        store,
        label,
        payload_bytes: filled.topology.payload_bytes,
        protocol: Protocol::Binary,
        publishers: Vec::new(),
        subscribers: vec![SubscriberPlan {
            start: StartAt::Beginning,
            ..filled.topology.subscribers[0].clone()
        }],
        notes: Vec::new(),
    };
    let alone = replay_pair(options, "alone");
    let finish = Arc::new(Finish::default());
    let most = options.rate * REPLAY_PAIR_MAX_SECONDS;
    let during = replay_pair(options, "during replay").open_ended(&finish, most);
    let mut rows = [
        replay.row(TargetKind::Brook),
        alone.row(TargetKind::Brook),
        during.row(TargetKind::Brook),
    ];

    let target = match Target::start(TargetKind::Brook, &options.broker, &filled.restart_settings) {
        Ok(target) => target,
        Err(error) => {
            let [mut replay_row, ..] = rows;
            replay_row.errors.push(error);
            return fill_row.into_iter().chain([replay_row]).collect();
        }
    };
    let progress = Progress::new(&alone.label, TargetKind::Brook);
    let paced_alone = drive(&alone, &target, Framing::Delivery, epoch, Some(&progress));
    progress.clear();
    let progress = Progress::new(&replay.label, TargetKind::Brook);
    let (replayed, paced_during) = thread::scope(|scope| {
        let paced = scope.spawn(|| drive(&during, &target, Framing::Delivery, epoch, None));
        let replayed = drive(&replay, &target, Framing::Delivery, epoch, Some(&progress));
        finish.ask();
        (
            replayed,
            paced.join().expect("the paced pair's thread panicked"),
        )
    });
    let restart_time = target.start_time;
    let stopped = target.stop();
    progress.clear();

    let [replay_row, alone_row, during_row] = &mut rows;
    replay_row.start_time = restart_time;
    replay_row.resources = stopped.resources;
    replay_row.errors.extend(stopped.crash);
    let took_ns = replayed.elapsed_ns(&replayed.subscribers[0]);
    replayed.record_in(replay_row);
    // Each message's time since the fill published it: no latency.
    replay_row.latency = Histogram::default();
    replay_row.notes.push(format!(
        "{} messages, {} of payload, replayed in {} by one subscriber from Beginning, \
         on a broker restarted in {} with none of the topic in its memory; {}",
        report::thousands(replay_row.tally.distinct),
        report::bytes(replay_row.tally.distinct * replay.payload_bytes as u64),
        report::nanoseconds(took_ns.unwrap_or_default()),
        report::nanoseconds(restart_time.unwrap_or_default().as_nanos() as u64),
        page_cache_note(options),
    ));
    paced_alone.record_in(alone_row);
    paced_during.record_in(during_row);
    during_row.notes.push(match finish.sent() {
        Some(sent) => format!(
            "{} messages, sent while the replay ran and up to 100 ms after",
            report::thousands(sent)
        ),
        None => format!(
            "the pair sent its most, {} messages, and ended before the replay",
            report::thousands(most)
        ),
    });
    fill_row.into_iter().chain(rows).collect()
}

/// The `latency` pair of `replay`, on a topic of its own.
fn replay_pair(options: &Options, when: &str) -> Topology {
    let mut pair = Topology::of(Scenario::Latency, Some(RECOVERY_RESTART_STORE), options);
    pair.scenario = Scenario::Replay;
    pair.label = format!(
        "{} pair {}/s {when}",
        Scenario::Replay.label(options),
        report::thousands(options.rate)
    );
    pair
}

// ---- Running the topics scenario ----

/// Publishes `--topic-bytes` to each of `--topics` topics of a fresh brook
/// on `store`, one publisher a topic and no subscriber, until the broker has
/// stored every message; then, if it still holds them all, replays each
/// topic from Beginning to a subscriber of its own. A publish row, with the
/// broker's peak memory and its budget, and a replay row (see the module
/// docs).
fn run_topics(store: Option<StoreKind>, options: &Options, epoch: Epoch) -> Vec<Row> {
    let Topology {
        scenario,
        label,
        payload_bytes,
        protocol,
        publishers,
        subscribers,
        notes,
        ..
    } = Topology::of(Scenario::Topics, store, options);
    let publish = Topology {
        scenario,
        store,
        label: format!("{label} publish"),
        payload_bytes,
        protocol,
        publishers,
        subscribers: Vec::new(),
        notes,
    };
    let replay = Topology {
        scenario,
        store,
        label: format!("{label} replay"),
        payload_bytes,
        protocol,
        publishers: Vec::new(),
        subscribers,
        notes: Vec::new(),
    };
    let published: u64 = publish.publishers.iter().map(|p| p.count).sum();
    let mut publish_row = Row {
        check: Check::Stored,
        ..publish.row(TargetKind::Brook)
    };
    publish_row.tally.expected = published;
    let (target, _data_dir) = match start_on(TargetKind::Brook, store, options) {
        Ok(started) => started,
        Err(error) => {
            publish_row.errors.push(error);
            return vec![publish_row];
        }
    };
    publish_row.start_time = target.start_time;

    let progress = Progress::new(&publish.label, TargetKind::Brook);
    progress.show("publishing");
    let sent = drive(&publish, &target, Framing::Delivery, epoch, None);
    let stored_ns = wait_until_stored(target.addr, published, epoch, &progress);
    progress.clear();
    publish_row.resources = target.peak_so_far();
    publish_row.errors.extend(sent.errors);
    let offsets = tally_stored(&mut publish_row, target.addr, &publish.publishers);
    match (sent.first_send_ns, stored_ns) {
        (Some(first_send_ns), Ok(stored_ns)) => {
            let seconds = (stored_ns.saturating_sub(first_send_ns) as f64 / 1e9).max(1e-9);
            let rate = publish_row.tally.distinct as f64 / seconds;
            publish_row.throughput = Some(Throughput {
                per_subscriber: rate / publish.publishers.len() as f64,
                total: rate,
            });
        }
        (_, Err(error)) => publish_row.errors.push(error),
        (None, Ok(_)) => {}
    }
    publish_row
        .notes
        .push(memory_note(target.addr, store, "once all was stored"));

    // A store over its budget or `--retention` lets go of its oldest
    // messages, and a replay from Beginning cannot have them all.
    let let_go: u64 = offsets.iter().flatten().map(|offsets| offsets.first).sum();
    if let_go > 0 || !publish_row.is_ok() {
        let stopped = target.stop();
        publish_row.errors.extend(stopped.crash);
        if let_go > 0 {
            publish_row.notes.push(format!(
                "no replay: the store let go of its oldest {} messages, to stay within its \
                 budget or --retention",
                report::thousands(let_go)
            ));
        }
        return vec![publish_row];
    }
    let mut replay_row = replay.row(TargetKind::Brook);
    let progress = Progress::new(&replay.label, TargetKind::Brook);
    let replayed = drive(&replay, &target, Framing::Delivery, epoch, Some(&progress));
    progress.clear();
    replay_row
        .notes
        .push(memory_note(target.addr, store, "after the replay"));
    let stopped = target.stop();
    replay_row.resources = stopped.resources;
    replay_row.errors.extend(stopped.crash);
    replayed.record_in(&mut replay_row);
    // Each message's time since it was published: no latency.
    replay_row.latency = Histogram::default();
    vec![publish_row, replay_row]
}

/// Asks the broker's `STATS` until its `messages_in` reaches `published`,
/// showing the count on `progress`, and returns when it did, in nanoseconds
/// since the epoch. Gives up if the count stays the same for as long as a
/// subscriber waits for a byte.
fn wait_until_stored(
    addr: SocketAddr,
    published: u64,
    epoch: Epoch,
    progress: &Progress,
) -> Result<u64, String> {
    let (mut stored, mut changed) = (0, Instant::now());
    loop {
        let counted = load::broker_stats(addr)
            .map_err(|e| format!("STATS: {e}"))?
            .get("messages_in")
            .copied()
            .ok_or("STATS has no messages_in")?;
        if counted >= published {
            return Ok(epoch.nanos_at(Instant::now()));
        }
        if counted != stored {
            (stored, changed) = (counted, Instant::now());
        } else if changed.elapsed() > load::IO_TIMEOUT {
            return Err(format!(
                "the broker stored {} of {} messages, then no more for {} s",
                report::thousands(stored),
                report::thousands(published),
                load::IO_TIMEOUT.as_secs()
            ));
        }
        progress.show(&format!(
            "{} / {} messages stored",
            report::thousands(counted),
            report::thousands(published)
        ));
        thread::sleep(STORED_POLL);
    }
}

/// What the broker's `STATS` says it holds in memory against its budget,
/// `when`, for the notes.
fn memory_note(addr: SocketAddr, store: Option<StoreKind>, when: &str) -> String {
    let stats = match load::broker_stats(addr) {
        Ok(stats) => stats,
        Err(error) => return format!("STATS {when}: {error}"),
    };
    let budget_flag = match store {
        Some(StoreKind::Disk(_)) => "--cache-bytes",
        _ => "--memory-bytes",
    };
    let figure = |name| stats.get(name).copied();
    match (figure("memory_used"), figure("memory_budget")) {
        (Some(used), Some(budget)) => format!(
            "memory_used {} of memory_budget {} ({budget_flag}) {when}",
            report::bytes(used),
            report::bytes(budget)
        ),
        _ => "STATS has no memory_used: this broker is older than the memory budget".to_owned(),
    }
}

// ---- Progress ----

/// The one line on stderr that says what is running, redrawn in place with
/// `\r`: only on a terminal, as in a file it would be hundreds of lines.
struct Progress {
    prefix: String,
    started: Instant,
    on_terminal: bool,
}

impl Progress {
    fn new(label: &str, target: TargetKind) -> Progress {
        Progress {
            prefix: format!("{label} · {}", target.name()),
            started: Instant::now(),
            on_terminal: std::io::stderr().is_terminal(),
        }
    }

    fn show(&self, detail: &str) {
        if !self.on_terminal {
            return;
        }
        let elapsed = self.started.elapsed().as_secs_f64();
        eprint!("\r{} · {detail} · {elapsed:.1} s   ", self.prefix);
        let _ = std::io::stderr().flush();
    }

    fn clear(&self) {
        if self.on_terminal {
            eprint!("\r{:100}\r", "");
        }
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
    let stores = match &options.broker {
        BrokerChoice::External { .. } => "its own store".to_owned(),
        _ => {
            let names: Vec<&str> = options.stores.iter().map(|s| s.name()).collect();
            format!("store {}", names.join(" + "))
        }
    };
    let disk_runs = options.scenarios.iter().any(|&scenario| {
        let stores = options.stores(scenario);
        stores
            .iter()
            .any(|store| matches!(store, Some(StoreKind::Disk(_))))
    });
    let data_dirs = match disk_runs {
        true => format!(
            " (data dirs in {}, {})",
            std::env::temp_dir().display(),
            target::temp_dir_file_system().unwrap_or_else(|| "file system unknown".into())
        ),
        false => String::new(),
    };
    let budgets: String = [
        ("--cache-bytes", options.cache_bytes),
        ("--memory-bytes", options.memory_bytes),
    ]
    .into_iter()
    .filter_map(|(flag, bytes)| Some(format!(", {flag} {}", report::bytes(bytes? as u64))))
    .collect();
    format!(
        "{cores} cores ({}): {broker}, {stores}{data_dirs}, window {}, retention {} per topic\
         {budgets}, payload {} B",
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
    print!("{}", report::legend(rows));
}

// ---- Flags ----

impl Options {
    /// The broker flags of every scenario, in memory.
    fn settings(&self) -> BrokerSettings {
        BrokerSettings {
            window: self.window,
            retention_bytes: Some(self.retention),
            storage: Storage::Memory,
            fsync: Fsync::Batch,
            cache_bytes: self.cache_bytes,
            memory_bytes: self.memory_bytes,
        }
    }

    /// The broker flags of a run on `store`. A disk store runs on a fresh
    /// temp data dir, returned with them: it is removed when dropped, so
    /// keep it until the broker has stopped.
    fn settings_on(
        &self,
        store: Option<StoreKind>,
    ) -> Result<(BrokerSettings, Option<TempDir>), String> {
        let Some(StoreKind::Disk(fsync)) = store else {
            return Ok((self.settings(), None));
        };
        let data_dir = target::data_dir()?;
        let settings = BrokerSettings {
            storage: Storage::Disk(data_dir.path().to_owned()),
            fsync,
            ..self.settings()
        };
        Ok((settings, Some(data_dir)))
    }

    /// The stores `scenario` runs brook on, one row each: `None` for a
    /// broker the bench does not start.
    fn stores(&self, scenario: Scenario) -> Vec<Option<StoreKind>> {
        match (scenario, &self.broker) {
            (_, BrokerChoice::External { .. }) => vec![None],
            (Scenario::Storage, _) => StoreKind::ALL.map(Some).to_vec(),
            (Scenario::Recovery | Scenario::Replay, _) => vec![Some(RECOVERY_FILL_STORE)],
            _ => self.stores.iter().copied().map(Some).collect(),
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
    members: usize,
    publishers: usize,
    pairs: usize,
    rate: u64,
    seconds: u64,
    connections: usize,
    stores: Vec<StoreKind>,
    recovery_bytes: u64,
    topics: usize,
    topic_bytes: u64,
    /// brook's `--cache-bytes` and `--memory-bytes`, if given.
    cache_bytes: Option<usize>,
    memory_bytes: Option<usize>,
    broker: BrokerChoice,
    relay: bool,
    client_writes: ClientWrites,
    /// `--peer nats`, and nats-server is on `PATH`.
    peer_nats: bool,
    /// Drop the page cache before recovery's and replay's restart.
    cold: bool,
    csv: bool,
    /// Where the chart goes: `--svg`, or [`default_svg_path`].
    svg: PathBuf,
}

/// Each flag: its name, the name of its value (empty for a switch), what it
/// does, and its default (empty for none).
#[rustfmt::skip]
const FLAGS: &[Flag] = &[
    Flag::new("--scenario", "LIST", "comma-separated scenarios, from the list below", "all"),
    Flag::new("--store", "LIST", "comma-separated stores each scenario runs on (below)", "memory"),
    Flag::new("--size", "BYTES", "payload of the throughput scenarios, at least 24", "128"),
    Flag::new("--count", "N", "messages per publisher (at most 1 GiB per scenario)", "1000000"),
    Flag::new("--recovery-size", "BYTES", "data dir recovery and replay fill, then restart on", "1GiB"),
    Flag::new("--topics", "N", "topics in the topics scenario, one publisher each", "16"),
    Flag::new("--topic-bytes", "BYTES", "payload bytes published to each of them", "80MiB"),
    Flag::new("--window", "N", "in-flight window: brook's --max-inflight", "16384"),
    Flag::new("--retention", "BYTES", "brook's --retention-bytes (see the module docs)", "256MiB"),
    Flag::new("--cache-bytes", "BYTES", "brook's --cache-bytes, the disk stores' memory budget", "brook's"),
    Flag::new("--memory-bytes", "BYTES", "brook's --memory-bytes, the memory store's budget", "brook's"),
    Flag::new("--subscribers", "N", "subscribers in fanout", "10"),
    Flag::new("--members", "N", "members of the consumer group in group", "4"),
    Flag::new("--publishers", "N", "publishers in fanin", "4"),
    Flag::new("--pairs", "N", "publisher/subscriber pairs in nton", "4"),
    Flag::new("--rate", "N", "messages per second in latency and replay's pair (128 B)", "10000"),
    Flag::new("--seconds", "N", "length of the latency run, and of replay's pair alone", "5"),
    Flag::new("--connections", "C", "idle subscribers in connections", "1000"),
    Flag::new("--addr", "HOST:PORT", "use a running broker instead of starting one", ""),
    Flag::new("--broker-pid", "PID", "with --addr: measure that process", ""),
    Flag::new("--broker-bin", "PATH", "start this brook binary for each scenario", ""),
    Flag::new("--no-relay", "", "skip the relay runs", ""),
    Flag::new("--client-writes", "HOW", "frame: one write() per frame and per ack; or batched", "batched"),
    Flag::new("--peer", "NAME", "also run against nats-server from PATH (NAME: nats)", ""),
    Flag::new("--cold", "", "recovery, replay: drop the page cache before the restart (root)", ""),
    Flag::new("--csv", "", "print CSV rows instead of the table", ""),
    Flag::new("--svg", "FILE", "where to draw latency and throughput as SVG", "target/bench.svg"),
];

fn help() -> String {
    let mut text = String::from(
        "bench: brook's benchmark, with a relay (a null broker) as the yardstick\n\n\
         Usage: cargo run --release --example bench -- [FLAGS]\n\nFlags:\n",
    );
    text.push_str(&flags_help(FLAGS));
    text.push_str(
        "\nScenarios:\n\
         \x20 1to1         1 publisher -> 1 subscriber, one topic\n\
         \x20 1to1-pattern 1to1 with the subscriber on the pattern bench-1to1-pattern.*,\n\
         \x20              the publisher on bench-1to1-pattern.eu; no relay run\n\
         \x20 1to1-frame   1to1 with one write() per publish and per ack, as\n\
         \x20              willdot's Go client writes\n\
         \x20 line         1 -> 1 over the line protocol: PUB lines, +OK replies read\n\
         \x20              as they come, MSG deliveries acked once written; no relay run\n\
         \x20 1to1-64k     1to1 with 65,536-byte payloads\n\
         \x20 fanout       1 publisher -> --subscribers subscribers, one topic\n\
         \x20 fanout-frame fanout with one write() per publish and per ack\n\
         \x20 group        1 publisher -> a consumer group of --members members, one\n\
         \x20              topic: each message to one member; no relay run\n\
         \x20 fanin        --publishers publishers -> 1 subscriber, one topic\n\
         \x20 nton         --pairs pairs, publisher i -> subscriber i on topic i\n\
         \x20 latency      1 -> 1 at --rate messages/s for --seconds\n\
         \x20 connections  --connections idle subscribers, then one message to all\n\
         \x20 storage      1to1 on each store, memory as the yardstick; no relay run\n\
         \x20 recovery     fill a data dir with --recovery-size through a broker with\n\
         \x20              --fsync never, then time a fresh broker's start on it\n\
         \x20 replay       fill a data dir as recovery does, restart on it, run the latency\n\
         \x20              pair for --seconds, then again while one subscriber replays the\n\
         \x20              whole topic from Beginning (some 25 s for 1 GiB)\n\
         \x20 topics       publish --topic-bytes to each of --topics topics, one publisher\n\
         \x20              each and no subscriber, then replay each topic from Beginning:\n\
         \x20              the broker's peak RSS, and STATS' memory_used (2 GiB of memory,\n\
         \x20              or 1.5 GiB of disk, by default); no relay run\n\
         \x20 all          every scenario but recovery, replay and topics (each over 15 s,\n\
         \x20              or over a gigabyte of memory or disk)\n\
         \nStores:\n\
         \x20 memory       --in-memory\n\
         \x20 disk-never   a fresh temp data dir, --fsync never\n\
         \x20 disk-batch   a fresh temp data dir, --fsync batch (one fsync per round)\n\
         \x20 disk-always  a fresh temp data dir, --fsync always (one fsync per message):\n\
         \x20              at most 20,000 messages per scenario\n\
         Data dirs are made under $TMPDIR (or /tmp) and removed after each run.\n\
         \nWith 10,000 connections, use --broker-bin: in one process the broker's\n\
         sockets and the bench's would not fit the file-descriptor limit. The\n\
         relay then runs as a child process too (this binary, --serve-relay).\n\
         With --addr, --store does not apply (the broker has its own store), and\n\
         storage, recovery, replay and topics, which need brokers of their own,\n\
         cannot run: 'all' leaves storage out.\n\
         --cache-bytes and --memory-bytes are passed to brook only when given, so\n\
         that --broker-bin can start a brook from before they existed.\n\
         --peer nats runs each scenario that has a relay run (but connections),\n\
         and 1to1-pattern, against a fresh nats-server too (Debian: apt-get\n\
         install nats-server).\n",
    );
    text
}

impl Options {
    /// `Ok(None)` means `--help`.
    fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
        let mut options = Options {
            scenarios: default_scenarios(),
            size: 128,
            count: 1_000_000,
            window: 16384,
            retention: 256 << 20,
            subscribers: 10,
            members: 4,
            publishers: 4,
            pairs: 4,
            rate: 10_000,
            seconds: 5,
            connections: 1000,
            stores: vec![StoreKind::Memory],
            recovery_bytes: 1 << 30,
            topics: 16,
            topic_bytes: 80 << 20,
            cache_bytes: None,
            memory_bytes: None,
            broker: BrokerChoice::InProcess,
            relay: true,
            client_writes: ClientWrites::Batched,
            peer_nats: false,
            cold: false,
            csv: false,
            svg: default_svg_path(),
        };
        let (mut addr, mut pid, mut binary) = (None, None, None);
        let (mut scenarios_named, mut stores_named) = (false, false);
        let Some(given) = read_flags(args, FLAGS)? else {
            return Ok(None);
        };
        for (flag, value) in given {
            if flag.is_switch() {
                match flag.name {
                    "--no-relay" => options.relay = false,
                    "--cold" => options.cold = true,
                    _ => options.csv = true,
                }
                continue;
            }
            let flag = flag.name;
            let invalid = |expected: &str| format!("{flag} '{value}': expected {expected}");
            let size_above_zero = |example: &str| {
                brook::config::parse_size(&value)
                    .filter(|&size| size > 0)
                    .ok_or_else(|| invalid(&format!("a size above zero, such as {example}")))
            };
            match flag {
                "--scenario" => {
                    options.scenarios = parse_scenarios(&value)?;
                    scenarios_named = !value.split(',').all(|name| name.trim() == "all");
                }
                "--store" => {
                    options.stores = parse_stores(&value)?;
                    stores_named = true;
                }
                "--size" => {
                    options.size = brook::config::parse_size(&value)
                        .filter(|size| (24..=8 << 20).contains(size))
                        .ok_or_else(|| invalid("a size from 24 bytes to 8MiB, such as 4KiB"))?
                }
                "--count" => options.count = whole(flag, &value)?,
                "--window" => options.window = whole(flag, &value)?,
                "--retention" => options.retention = size_above_zero("256MiB")?,
                "--subscribers" => options.subscribers = whole(flag, &value)?,
                "--members" => options.members = whole(flag, &value)?,
                "--publishers" => options.publishers = whole(flag, &value)?,
                "--pairs" => options.pairs = whole(flag, &value)?,
                "--rate" => options.rate = whole(flag, &value)?,
                "--seconds" => options.seconds = whole(flag, &value)?,
                "--connections" => options.connections = whole(flag, &value)?,
                "--recovery-size" => options.recovery_bytes = size_above_zero("1GiB")? as u64,
                "--topics" => options.topics = whole(flag, &value)?,
                "--topic-bytes" => options.topic_bytes = size_above_zero("80MiB")? as u64,
                "--cache-bytes" => options.cache_bytes = Some(size_above_zero("256MiB")?),
                "--memory-bytes" => options.memory_bytes = Some(size_above_zero("512MiB")?),
                "--broker-pid" => pid = Some(whole::<u32>(flag, &value)?),
                "--addr" => {
                    let resolved = value.to_socket_addrs().ok().and_then(|mut a| a.next());
                    addr =
                        Some(resolved.ok_or_else(|| invalid("HOST:PORT of a listening broker"))?);
                }
                "--broker-bin" => binary = Some(PathBuf::from(value)),
                "--svg" => options.svg = PathBuf::from(value),
                "--client-writes" => {
                    options.client_writes = ClientWrites::from_name(&value)
                        .ok_or_else(|| invalid("frame or batched"))?
                }
                "--peer" => match value.as_str() {
                    "nats" => options.peer_nats = nats_server_ready(),
                    _ => return Err(invalid("nats, the one peer the bench knows")),
                },
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
        if let BrokerChoice::External { .. } = options.broker {
            if stores_named {
                return Err("--store does not apply with --addr: the broker has its own".into());
            }
            let own_brokers = [
                Scenario::Storage,
                Scenario::Recovery,
                Scenario::Replay,
                Scenario::Topics,
            ];
            if let Some(scenario) = own_brokers
                .iter()
                .find(|scenario| options.scenarios.contains(scenario))
            {
                if scenarios_named {
                    return Err(format!(
                        "scenario '{}' starts brokers of its own: not with --addr",
                        scenario.name()
                    ));
                }
            }
            options
                .scenarios
                .retain(|scenario| !own_brokers.contains(scenario));
        }
        Ok(Some(options))
    }
}

/// Where the chart goes without `--svg`: `bench.svg` in the build's target
/// directory (this binary is `target/<profile>/examples/bench`), which git
/// ignores, so that a run leaves the tracked `docs/bench.svg` alone. The
/// temp dir if the binary is elsewhere.
fn default_svg_path() -> PathBuf {
    let target_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.ancestors().nth(3)?.to_owned()))
        .filter(|dir| dir.file_name().is_some_and(|name| name == "target"));
    target_dir
        .unwrap_or_else(std::env::temp_dir)
        .join("bench.svg")
}

/// Whether `nats-server` is there for `--peer nats`; if not, says how to
/// get it, and the bench runs without the NATS rows.
fn nats_server_ready() -> bool {
    let ready = target::nats_server_available();
    if !ready {
        eprintln!(
            "bench: --peer nats: '{}' is not on PATH, so the NATS rows are skipped. \
             Install it (Debian, Ubuntu: apt-get install nats-server; elsewhere: \
             https://github.com/nats-io/nats-server/releases) and run again.",
            target::NATS_SERVER
        );
    }
    ready
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
    parse_list("--scenario", list, |name| match name {
        "all" => Ok(default_scenarios()),
        name => Ok(vec![Scenario::from_name(name)?]),
    })
}

fn parse_stores(list: &str) -> Result<Vec<StoreKind>, String> {
    parse_list("--store", list, |name| {
        let store = StoreKind::from_name(name).ok_or_else(|| {
            format!(
                "unknown store '{name}': expected memory, disk-never, disk-batch or disk-always"
            )
        })?;
        Ok(vec![store])
    })
}

/// The comma-separated `list` of `flag`, each name read by `parse` (which
/// may stand for several items), in order and without repeats.
fn parse_list<T: PartialEq>(
    flag: &str,
    list: &str,
    parse: impl Fn(&str) -> Result<Vec<T>, String>,
) -> Result<Vec<T>, String> {
    let mut items = Vec::new();
    for name in list
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
    {
        for item in parse(name)? {
            if !items.contains(&item) {
                items.push(item);
            }
        }
    }
    match items.is_empty() {
        true => Err(format!("{flag} needs at least one name")),
        false => Ok(items),
    }
}
