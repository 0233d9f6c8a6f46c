//! Turning results into the table, the CSV rows and the verdict lines.

use std::time::Duration;

use crate::histogram::Histogram;
use crate::load::Tally;
use crate::target::{Resources, StoreKind, TargetKind};

/// One scenario run against one target: one line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// Such as `fanout`, as given to `--scenario`.
    pub scenario: &'static str,
    /// Such as `fanout 1→10`, for people.
    pub label: String,
    pub target: TargetKind,
    /// What brook kept its topics in; `None` for the relay and a broker
    /// the bench did not start.
    pub store: Option<StoreKind>,
    pub publishers: usize,
    pub subscribers: usize,
    pub payload_bytes: usize,
    /// `None` where messages per second mean nothing (connections).
    pub throughput: Option<Throughput>,
    pub latency: Histogram,
    pub resources: Resources,
    /// The CPU time the broker's process used during the scenario, where it
    /// is a process of its own.
    pub broker_cpu: Option<Duration>,
    /// The CPU time the bench's process used during the load, where the
    /// broker is not in it: the clients'.
    pub clients_cpu: Option<Duration>,
    /// brook's messages per second as a fraction of the relay's.
    pub of_relay: Option<f64>,
    /// brook's messages per second over nats-server's (`--peer nats`).
    pub of_nats: Option<f64>,
    /// A disk store's messages per second as a fraction of the memory
    /// store's in the same scenario.
    pub of_memory: Option<f64>,
    /// How long brook took to start (see `Target::start_time`).
    pub start_time: Option<Duration>,
    /// What the tally counts.
    pub check: Check,
    pub tally: Tally,
    /// Why the run, or a part of it, stopped early.
    pub errors: Vec<String>,
    /// Facts worth a line under the table, such as a capped count.
    pub notes: Vec<String>,
}

/// What a row's tally counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Messages that reached subscribers: once each and in order?
    Deliveries,
    /// Messages a consumer group's members shared: each once, at one of
    /// them, and each member's share in order?
    Group,
    /// Messages a restarted broker recovered, by its topic's offsets.
    Recovered,
    /// Messages a broker stored, by its topics' offsets.
    Stored,
}

#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    /// Mean over subscribers of the messages each received per second.
    pub per_subscriber: f64,
    /// The sum over subscribers.
    pub total: f64,
}

impl Row {
    /// A row with nothing measured yet, expecting `expected` messages.
    pub fn new(scenario: &'static str, label: String, target: TargetKind, expected: u64) -> Row {
        Row {
            scenario,
            label,
            target,
            store: None,
            publishers: 0,
            subscribers: 0,
            payload_bytes: 0,
            throughput: None,
            latency: Histogram::default(),
            resources: Resources::default(),
            broker_cpu: None,
            clients_cpu: None,
            of_relay: None,
            of_nats: None,
            of_memory: None,
            start_time: None,
            check: Check::Deliveries,
            tally: Tally {
                expected,
                ..Tally::default()
            },
            errors: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Whether every message arrived once and in order, without errors.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty() && self.tally.is_clean()
    }

    fn megabytes_per_second(&self) -> Option<f64> {
        self.throughput
            .map(|t| t.total * self.payload_bytes as f64 / 1e6)
    }

    /// Microseconds of `cpu` per message delivered to a subscriber (in
    /// fan-out, per delivery).
    fn per_message_micros(&self, cpu: Option<Duration>) -> Option<f64> {
        let deliveries = self.tally.distinct;
        (deliveries > 0).then_some(cpu?.as_secs_f64() * 1e6 / deliveries as f64)
    }

    fn quantile(&self, quantile: f64) -> Option<u64> {
        (!self.latency.is_empty()).then(|| self.latency.quantile(quantile))
    }
}

const QUANTILES: [f64; 4] = [0.5, 0.99, 0.999, 1.0];

// ---- The table ----

const COLUMNS: [&str; 16] = [
    "scenario",
    "target",
    "msgs/s/sub",
    "msgs/s total",
    "MB/s",
    "p50",
    "p99",
    "p99.9",
    "max",
    "peak RSS",
    "threads",
    "broker µs/msg",
    "clients µs/msg",
    "of relay",
    "÷ nats",
    "of memory",
];

/// The table, without the columns that no row has a figure in.
pub fn table(rows: &[Row]) -> String {
    let all_cells: Vec<Vec<String>> = rows.iter().map(table_cells).collect();
    let shown: Vec<usize> = (0..COLUMNS.len())
        .filter(|&column| column < 2 || all_cells.iter().any(|row| row[column] != "-"))
        .collect();
    let pick = |row: &[String]| -> Vec<String> {
        shown.iter().map(|&column| row[column].clone()).collect()
    };
    let cells: Vec<Vec<String>> = all_cells.iter().map(|row| pick(row)).collect();
    let names: Vec<&str> = shown.iter().map(|&column| COLUMNS[column]).collect();
    let width = |column: usize| {
        cells
            .iter()
            .map(|row| row[column].chars().count())
            .chain([names[column].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..names.len()).map(width).collect();
    let line = |row: &[String]| {
        let fields: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(column, cell)| match column {
                0 | 1 => format!("{cell:<w$}", w = widths[column]),
                _ => format!("{cell:>w$}", w = widths[column]),
            })
            .collect();
        fields.join("  ").trim_end().to_owned() + "\n"
    };
    let header: Vec<String> = names.iter().map(|c| c.to_string()).collect();
    let mut text = line(&header);
    for row in &cells {
        text.push_str(&line(row));
    }
    text
}

fn table_cells(row: &Row) -> Vec<String> {
    let dash = || "-".to_owned();
    let mut cells = vec![row.label.clone(), row.target.name().to_owned()];
    match row.throughput {
        Some(throughput) => cells.extend([
            rate(throughput.per_subscriber),
            rate(throughput.total),
            significant(row.megabytes_per_second().unwrap_or_default()),
        ]),
        None => cells.extend([dash(), dash(), dash()]),
    }
    for quantile in QUANTILES {
        cells.push(row.quantile(quantile).map_or_else(dash, nanoseconds));
    }
    cells.push(row.resources.peak_rss_bytes.map_or_else(dash, bytes));
    cells.push(row.resources.threads.map_or_else(dash, |t| t.to_string()));
    for cpu in [row.broker_cpu, row.clients_cpu] {
        cells.push(
            row.per_message_micros(cpu)
                .map_or_else(dash, two_significant),
        );
    }
    cells.push(row.of_relay.map_or_else(dash, percent));
    cells.push(
        row.of_nats
            .map_or_else(dash, |ratio| format!("{ratio:.2}×")),
    );
    cells.push(row.of_memory.map_or_else(dash, percent));
    cells
}

/// One line per row: did every message arrive once and in order?
pub fn verdicts(rows: &[Row]) -> String {
    let mut text = String::new();
    for row in rows {
        let name = format!("{} ({})", row.label, row.target.name());
        let tally = row.tally;
        if row.is_ok() {
            let expected = thousands(tally.expected);
            let outcome = match (row.check, row.subscribers as u64) {
                (Check::Deliveries, 0 | 1) => "arrived once and in order".to_owned(),
                (Check::Deliveries, n) => {
                    let share = thousands(tally.expected / n);
                    let each = counted(n, "subscriber");
                    format!("arrived once and in order ({share} to each of {each})")
                }
                (Check::Group, n) => {
                    let across = counted(n, "member");
                    format!("arrived once across {across}, each in order")
                }
                (Check::Recovered, _) => {
                    "recovered: the topic's offsets are as published".to_owned()
                }
                (Check::Stored, _) => "stored: the topics' offsets are as published".to_owned(),
            };
            text.push_str(&format!("{name}: all {expected} messages {outcome}\n"));
            continue;
        }
        text.push_str(&format!(
            "{name}: FAILED: {} of {} missing, {} duplicated, {} out of order, {} unexpected\n",
            thousands(tally.missing()),
            thousands(tally.expected),
            thousands(tally.duplicates),
            thousands(tally.out_of_order),
            thousands(tally.unexpected),
        ));
        for error in &row.errors {
            text.push_str(&format!("    {error}\n"));
        }
    }
    text
}

pub fn notes(rows: &[Row]) -> String {
    let mut text = String::new();
    for row in rows {
        for note in &row.notes {
            text.push_str(&format!("{} ({}): {note}\n", row.label, row.target.name()));
        }
    }
    text
}

/// What a legend entry explains, and so when it is printed.
enum Topic {
    /// A column or a kind of row: printed if some row has a figure in that
    /// column, or is of that kind.
    Rows(fn(&Row) -> bool),
    /// A scenario: printed if it ran.
    Scenario(&'static [&'static str]),
}

/// The legend's entries, in order. Each is printed only if what it
/// explains is in the table: a run of two scenarios gets a few lines, not
/// the whole book.
const LEGEND: &[(Topic, &str)] = &[
    (
        Topic::Rows(|row| row.throughput.is_some()),
        "msgs/s/sub: messages one subscriber received per second, from the first publish to its last
  message (mean over subscribers); msgs/s total: the sum over subscribers; MB/s: payload bytes
  per second in total (1 MB = 10^6 bytes).
",
    ),
    (
        Topic::Rows(|row| !row.latency.is_empty()),
        "p50 .. max: latency from the publisher stamping a message to a subscriber reading it.
",
    ),
    (
        Topic::Rows(|row| row.resources.peak_rss_bytes.is_some() || row.resources.threads.is_some()),
        "peak RSS, threads: the broker's peak resident memory and thread count during the scenario.
  In-process (the default), RSS is the whole bench process, its own buffers included: the
  relay row shows that baseline. Threads count brook's conn-*, dispatcher and acceptor
  threads (relay rows: the relay's; nats rows: the nats-server process's). With --addr they
  show '-' unless --broker-pid is given.
",
    ),
    (
        Topic::Rows(|row| row.broker_cpu.is_some() || row.clients_cpu.is_some()),
        "broker µs/msg, clients µs/msg: CPU time (user + system, from /proc/PID/stat) per message
  delivered to a subscriber (in fan-out, per delivery). broker: the broker's process, from
  its start to its stop, where it is a process of its own (--broker-bin, whose relay is a
  child too; nats-server; --addr with --broker-pid). clients: the bench's own process (its
  publishers and subscribers) during the load, unless the broker runs in it. brook's and the
  relay's subscribers answer every delivery with an ack (in -frame rows, a write() each), and
  NATS core's answer nothing, so the same load costs the clients more against brook. The
  kernel counts CPU time in 10 ms ticks: under a second of it, the figure is coarse.
",
    ),
    (
        Topic::Rows(|row| row.of_relay.is_some()),
        "of relay: brook's msgs/s total divided by the relay's in the same scenario (the same ratio
  holds for MB/s); the relay is a null broker in the bench that forwards bytes untouched.
",
    ),
    (
        Topic::Rows(|row| row.of_nats.is_some()),
        "÷ nats: brook's msgs/s total divided by nats-server's in the same scenario, with the same
  load in NATS's protocol (--peer nats). NATS core takes no acks and keeps nothing; brook's
  subscribers ack every message.
",
    ),
    (
        Topic::Rows(|row| row.of_memory.is_some()),
        "of memory: a disk store's msgs/s total divided by the memory store's in the same scenario.
  A row's store follows its scenario: memory, or disk-never, disk-batch, disk-always (a temp
  data dir with that --fsync policy); no store is named when every row is in memory.
",
    ),
    (
        Topic::Rows(|row| row.scenario.ends_with("-frame") || row.label.contains("frame-writes")),
        "-frame, frame-writes: the clients write one frame per write(): each publish, and each ack,
  as willdot's Go client does; the other rows' clients batch them (--client-writes). The
  relay forwards what each read brings at once, so it too then writes one frame per write(),
  and can be slower than brook, whose writer gathers the deliveries waiting for it.
",
    ),
    (
        Topic::Scenario(&["line"]),
        "line: no relay run: the relay speaks only the binary protocol, and forwarding PUB lines
  untouched is not a line broker's work (finding line ends, a +OK per PUB, MSG deliveries);
  compare line with 1to1, the same messages over the binary protocol.
",
    ),
    (
        Topic::Scenario(&["1to1-pattern"]),
        "1to1-pattern: 1to1 with the subscriber on the pattern bench-1to1-pattern.*, which covers the
  publisher's topic bench-1to1-pattern.eu. No relay run: the relay routes by exact name;
  compare it with 1to1.
",
    ),
    (
        Topic::Scenario(&["group"]),
        "group: the subscribers are the members of one consumer group, which share its messages, each
  going to one member: msgs/s/sub is per member, msgs/s total the group's. The check is
  across the members (each message once, at one of them), and a member's share must arrive
  in ascending order; the notes say how evenly the members shared. No relay run: the relay
  has no consumer groups; compare group's total with 1to1's, each message delivered once.
",
    ),
    (
        Topic::Scenario(&["connections"]),
        "connections: latency is from the one publish to each subscriber's arrival (max = all have
  it); of relay is the relay's time to reach every subscriber divided by brook's.
",
    ),
    (
        Topic::Scenario(&["recovery"]),
        "recovery: the fill row publishes the data dir's messages; in the restart row, msgs/s and MB/s
  are how fast the restarted broker read the log back (messages and payload bytes over its
  start-up time), and the notes give the start-up time and the directory's size.
",
    ),
    (
        Topic::Scenario(&["replay"]),
        "replay: the fill row as in recovery; the replay row is one subscriber reading the whole topic
  from Beginning on the restarted broker (msgs/s and MB/s from subscribing to its last message,
  no latency: the messages are as old as the fill); the pair rows are latency's paced 1 -> 1 on
  another topic of that broker, alone and while the replay ran.
",
    ),
    (
        Topic::Scenario(&["topics"]),
        "topics: the publish row's msgs/s are messages stored per second, from the first publish until
  STATS counts them all (msgs/s/sub: per topic); its peak RSS is the broker's until then, and
  the notes give STATS' memory_used against memory_budget (--cache-bytes on disk,
  --memory-bytes in memory). In-process that RSS is the whole bench, with what an earlier
  row's broker freed and the allocator kept: use --broker-bin for the broker's own. The
  replay row is one subscriber per topic reading it from Beginning; its peak RSS is of the
  whole run.
",
    ),
];

/// The legend entries for what `rows` show: the columns with figures, and
/// the scenarios that ran.
pub fn legend(rows: &[Row]) -> String {
    LEGEND
        .iter()
        .filter(|(topic, _)| match topic {
            Topic::Rows(has_figure) => rows.iter().any(has_figure),
            Topic::Scenario(names) => rows.iter().any(|row| names.contains(&row.scenario)),
        })
        .map(|(_, text)| *text)
        .collect()
}

// ---- CSV ----

pub fn csv(rows: &[Row]) -> String {
    let mut text = String::from(
        "scenario,target,store,publishers,subscribers,payload_bytes,expected_messages,\
         msgs_per_s_per_sub,msgs_per_s_total,mb_per_s,p50_ns,p99_ns,p999_ns,max_ns,\
         peak_rss_bytes,threads,broker_us_per_msg,clients_us_per_msg,of_relay,of_nats,\
         of_memory,startup_ns,missing,duplicates,out_of_order,unexpected,ok\n",
    );
    let optional = |value: Option<String>| value.unwrap_or_default();
    for row in rows {
        let mut fields = vec![
            row.scenario.to_owned(),
            row.target.name().to_owned(),
            optional(row.store.map(|store| store.name().to_owned())),
            row.publishers.to_string(),
            row.subscribers.to_string(),
            row.payload_bytes.to_string(),
            row.tally.expected.to_string(),
            optional(row.throughput.map(|t| format!("{:.0}", t.per_subscriber))),
            optional(row.throughput.map(|t| format!("{:.0}", t.total))),
            optional(row.megabytes_per_second().map(|mb| format!("{mb:.3}"))),
        ];
        for quantile in QUANTILES {
            fields.push(optional(row.quantile(quantile).map(|ns| ns.to_string())));
        }
        fields.extend([
            optional(row.resources.peak_rss_bytes.map(|b| b.to_string())),
            optional(row.resources.threads.map(|t| t.to_string())),
            optional(
                row.per_message_micros(row.broker_cpu)
                    .map(|us| format!("{us:.4}")),
            ),
            optional(
                row.per_message_micros(row.clients_cpu)
                    .map(|us| format!("{us:.4}")),
            ),
            optional(row.of_relay.map(|f| format!("{f:.4}"))),
            optional(row.of_nats.map(|f| format!("{f:.4}"))),
            optional(row.of_memory.map(|f| format!("{f:.4}"))),
            optional(row.start_time.map(|t| t.as_nanos().to_string())),
            row.tally.missing().to_string(),
            row.tally.duplicates.to_string(),
            row.tally.out_of_order.to_string(),
            row.tally.unexpected.to_string(),
            row.is_ok().to_string(),
        ]);
        text.push_str(&fields.join(","));
        text.push('\n');
    }
    text
}

// ---- Units ----

/// Three significant digits, no unit: `2.14`, `41.2`, `412`, `4120`.
fn significant(value: f64) -> String {
    match value {
        v if v >= 100.0 => format!("{v:.0}"),
        v if v >= 10.0 => format!("{v:.1}"),
        v => format!("{v:.2}"),
    }
}

/// Two significant digits: `0.062`, `0.62`, `1.2`, `12`; `120` and more
/// as whole numbers.
fn two_significant(value: f64) -> String {
    let magnitude = value.abs().log10().floor();
    let decimals = match magnitude.is_finite() {
        true => (1.0 - magnitude).max(0.0) as usize,
        false => 0,
    };
    format!("{value:.decimals$}")
}

/// A rate: `2.14M`, `412k`, `950`.
pub fn rate(per_second: f64) -> String {
    match per_second {
        r if r >= 1e6 => format!("{}M", significant(r / 1e6)),
        r if r >= 1e3 => format!("{}k", significant(r / 1e3)),
        r => format!("{r:.0}"),
    }
}

/// A duration: `850ns`, `85.2µs`, `1.20ms`, `2.50s`.
pub fn nanoseconds(ns: u64) -> String {
    let ns = ns as f64;
    match ns {
        n if n >= 1e9 => format!("{}s", significant(n / 1e9)),
        n if n >= 1e6 => format!("{}ms", significant(n / 1e6)),
        n if n >= 1e3 => format!("{}µs", significant(n / 1e3)),
        n => format!("{n:.0}ns"),
    }
}

/// A size: `312MiB`, `1.20GiB`, `900KiB`.
pub fn bytes(count: u64) -> String {
    let count = count as f64;
    const KIB: f64 = 1024.0;
    match count {
        b if b >= KIB * KIB * KIB => format!("{}GiB", significant(b / (KIB * KIB * KIB))),
        b if b >= KIB * KIB => format!("{}MiB", significant(b / (KIB * KIB))),
        b if b >= KIB => format!("{}KiB", significant(b / KIB)),
        b => format!("{b:.0}B"),
    }
}

fn percent(fraction: f64) -> String {
    format!("{:.1}%", fraction * 100.0)
}

/// `count` of `noun`: `1 member`, `1,000 members`.
pub fn counted(count: u64, noun: &str) -> String {
    match count {
        1 => format!("1 {noun}"),
        count => format!("{} {noun}s", thousands(count)),
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut text = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            text.push(',');
        }
        text.push(digit);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(rate(2_143_000.0), "2.14M");
        assert_eq!(rate(412_300.0), "412k");
        assert_eq!(nanoseconds(85_200), "85.2µs");
        assert_eq!(nanoseconds(1_200_000), "1.20ms");
        assert_eq!(bytes(312 << 20), "312MiB");
        assert_eq!(two_significant(0.0617), "0.062");
        assert_eq!(two_significant(0.624), "0.62");
        assert_eq!(two_significant(1.18), "1.2");
        assert_eq!(two_significant(12.4), "12");
        assert_eq!(two_significant(0.0), "0");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(counted(1, "member"), "1 member");
        assert_eq!(counted(1000, "member"), "1,000 members");
    }
}
