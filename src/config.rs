//! The broker's settings, and the hand-written parser for its command-line
//! flags (the design card allows no argument-parsing crate).
//!
//! A flag takes a value, written `--flag value` or `--flag=value`, except a
//! switch such as `--in-memory`, which stands alone.
//! Durations are a number and a unit (`250ms`, `2s`, `1m`); sizes are bytes,
//! optionally with a unit (`512`, `64KiB`, `8MiB`, `1GB`). Every mistake is
//! a [`ConfigError`] that names the flag and what was wrong with it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::{AuthSettings, Permissions, Rule};
use crate::budget::default_memory_bytes;
use crate::dispatcher::session::in_flight::DeliveryPolicy;
use crate::dispatcher::TopicLimits;
use crate::wire::request::{Limits, MAX_TOPIC_NAME_BYTES};

pub use crate::store::{Fsync, OnDamage};

/// Everything `brook` can be told on its command line.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen, `HOST:PORT`. Port 0 picks a free port.
    pub addr: String,
    /// Where to serve Prometheus metrics over HTTP (`metrics/`), if
    /// anywhere.
    pub metrics_addr: Option<String>,
    pub ack_delay: Duration,
    pub ack_timeout: Duration,
    pub max_deliveries: u32,
    /// Whether a message given up after `max_deliveries` goes to its
    /// topic's dead-letter topic (`<topic>.dlq`).
    pub dead_letters: bool,
    /// How many deliveries a subscriber connection may have unanswered (or,
    /// if they need no answer, unwritten) at once.
    pub max_inflight: usize,
    /// How many bytes of payload those deliveries may add up to.
    pub subscriber_buffer: usize,
    pub max_message_bytes: usize,
    /// The most connections served at once; more are refused. `None`: as
    /// many as the machine's limits allow (see `acceptor::connection_capacity`).
    pub max_connections: Option<usize>,
    /// Per topic, the most payload bytes kept; older messages are dropped.
    /// `None` keeps every message.
    pub retention_bytes: Option<usize>,
    /// With the disk store, segments whose newest message is older than
    /// this are deleted. `None` keeps every message.
    pub retention_age: Option<Duration>,
    /// The longest JSON topic list a subscribe or unsubscribe may carry.
    pub max_topic_list_bytes: usize,
    /// The longest topic name, in bytes.
    pub max_topic_name_bytes: usize,
    /// The most topics one subscribe or unsubscribe may name.
    pub max_subscribe_topics: usize,
    /// The most topics the broker holds; a request that would create one
    /// more is refused.
    pub max_topics: usize,
    /// The most consumer groups one topic holds (`PULL`'s count too).
    pub max_groups_per_topic: usize,
    /// The longest line the line protocol reads; a longer one is refused
    /// without being buffered.
    pub max_line_bytes: usize,
    /// Where topics are kept.
    pub storage: Storage,
    /// With the disk store, the size at which a topic's segment file is
    /// closed and a new one started.
    pub segment_bytes: u64,
    /// With the disk store, when appended messages are forced to disk.
    pub fsync: Fsync,
    /// With the disk store, the most payload bytes all topics together
    /// keep in memory (see `budget.rs`).
    pub cache_bytes: usize,
    /// In memory, the most bytes all topics together may hold. `None`: a
    /// quarter of the machine's memory.
    pub memory_bytes: Option<usize>,
    /// With `--fsync batch`, how long the syncer gathers rounds' writes
    /// before one fsync covers them all. Zero: as soon as the disk is free.
    pub fsync_interval: Duration,
    /// With the disk store, what start-up does about a damaged record in
    /// the middle of a log.
    pub on_damage: OnDamage,
    /// How long a new connection may stay silent before it is closed: a
    /// client that connects and says nothing holds a thread for nothing.
    /// Once it has spoken, it may be idle as long as it likes.
    pub handshake_timeout: Duration,
    /// How long a closed connection's writer may take to write its last
    /// frames (such as the error that explains a close) before its socket is
    /// shut down, and how long the unfinished `PULL` of a closed connection
    /// may go without progress. It bounds how long a client that closes its
    /// sending side and never reads can keep a writer thread. At a stop,
    /// it is also how long clients still sending have to close their side.
    pub linger: Duration,
    /// Stack size of every reader and writer thread. They do little and
    /// recurse nowhere, so a small stack lets one machine hold thousands.
    pub thread_stack_bytes: usize,
    /// The users who may connect, and what they may touch (`auth/`).
    /// `None`: anyone may do anything.
    pub auth_file: Option<PathBuf>,
    /// With an auth file, what a binary client that never logs in may do.
    pub anonymous_binary: Permissions,
    /// The wait after a first failed login (`auth/delays.rs`).
    pub auth_failure_delay: Duration,
    /// Whether to listen on an address other machines can reach without an
    /// auth file (protected mode refuses to, as Redis does).
    pub insecure_allow_anyone: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            addr: "127.0.0.1:3000".to_owned(),
            metrics_addr: None,
            ack_delay: Duration::from_secs(1),
            ack_timeout: Duration::from_secs(2),
            max_deliveries: 5,
            dead_letters: true,
            max_inflight: 16384,
            subscriber_buffer: 16 << 20,
            max_message_bytes: 8 << 20,
            max_connections: None,
            retention_bytes: None,
            retention_age: None,
            max_topic_list_bytes: 1 << 20,
            max_topic_name_bytes: MAX_TOPIC_NAME_BYTES,
            max_subscribe_topics: 1024,
            max_topics: 10_000,
            max_groups_per_topic: 64,
            max_line_bytes: 1 << 20,
            storage: Storage::Disk(PathBuf::from("data")),
            segment_bytes: 64 << 20,
            fsync: Fsync::Batch,
            cache_bytes: 256 << 20,
            memory_bytes: None,
            fsync_interval: Duration::ZERO,
            on_damage: OnDamage::Skip,
            handshake_timeout: Duration::from_secs(30),
            linger: Duration::from_secs(5),
            thread_stack_bytes: 128 << 10,
            auth_file: None,
            anonymous_binary: Permissions::default(),
            auth_failure_delay: Duration::from_millis(100),
            insecure_allow_anyone: false,
        }
    }
}

impl Config {
    pub(crate) fn delivery_policy(&self) -> DeliveryPolicy {
        DeliveryPolicy {
            ack_delay: self.ack_delay,
            ack_timeout: self.ack_timeout,
            max_deliveries: self.max_deliveries,
            dead_letters: self.dead_letters,
            max_inflight: self.max_inflight,
            subscriber_buffer: self.subscriber_buffer,
            linger: self.linger,
        }
    }

    /// With the disk store, its data directory as an absolute path, so
    /// that the log and errors say where it is whatever the directory
    /// brook was started in; `None` in memory.
    pub fn data_dir(&self) -> Option<PathBuf> {
        match &self.storage {
            Storage::Disk(dir) => Some(std::path::absolute(dir).unwrap_or_else(|_| dir.clone())),
            Storage::Memory => None,
        }
    }

    /// The flag that sets the store's memory budget, and the budget in
    /// bytes (see `budget.rs`).
    pub fn memory_budget(&self) -> (&'static str, usize) {
        match self.storage {
            Storage::Memory => (
                "--memory-bytes",
                self.memory_bytes.unwrap_or_else(default_memory_bytes),
            ),
            Storage::Disk(_) => ("--cache-bytes", self.cache_bytes),
        }
    }

    /// The limits on topics and groups (see `dispatcher/mod.rs`).
    pub(crate) fn topic_limits(&self) -> TopicLimits {
        TopicLimits {
            max_topics: self.max_topics,
            max_groups_per_topic: self.max_groups_per_topic,
            max_patterns_per_connection: self.max_subscribe_topics,
            // A few of the largest messages: a client that pipelines
            // more behind a pattern's +OK is closed.
            max_deferred_bytes: 4 * self.max_message_bytes,
        }
    }

    /// The settings of `auth/`, if an auth file was given.
    pub fn auth_settings(&self) -> Option<AuthSettings> {
        Some(AuthSettings {
            file: self.auth_file.clone()?,
            anonymous_binary: self.anonymous_binary.clone(),
            failure_delay: self.auth_failure_delay,
        })
    }

    pub(crate) fn limits(&self) -> Limits {
        Limits {
            max_message_bytes: self.max_message_bytes,
            max_topic_list_bytes: self.max_topic_list_bytes,
            max_topic_name_bytes: self.max_topic_name_bytes,
            max_topics_per_request: self.max_subscribe_topics,
            max_line_bytes: self.max_line_bytes,
        }
    }
}

/// Where the broker keeps its topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// In memory only: gone when the broker stops (`--in-memory`).
    Memory,
    /// In segment files under this directory (`--data-dir`).
    Disk(PathBuf),
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Invocation {
    Run(Box<Config>),
    Help,
    /// `brook hash-password`: read a password on stdin, print its hash
    /// for the auth file.
    HashPassword,
}

/// A command line that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    UnknownFlag(String),
    MissingValue(&'static str),
    InvalidValue {
        flag: &'static str,
        value: String,
        expected: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::UnknownFlag(flag) => write!(f, "unknown flag '{flag}'"),
            ConfigError::MissingValue(flag) => write!(f, "{flag} needs a value"),
            ConfigError::InvalidValue {
                flag,
                value,
                expected,
            } => write!(f, "{flag} '{value}': expected {expected}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// One flag of a program whose settings are an `S` (brook's [`Config`],
/// brook-bridge's settings): its name, what its value looks like (empty
/// for a switch, which takes none), its help line, what a valid value is
/// (for the error message), and how it sets the settings (`None` for a
/// value it cannot take). Everything about a flag is in one place, so a
/// flag cannot be listed in `--help` and not parsed, or the other way
/// round.
pub struct Flag<S> {
    pub name: &'static str,
    pub value: &'static str,
    pub help: &'static str,
    pub expected: &'static str,
    pub set: fn(&mut S, &str) -> Option<()>,
}

impl<S> Flag<S> {
    fn is_switch(&self) -> bool {
        self.value.is_empty()
    }
}

/// How wide `--help` is, in columns: a flag's help that does not fit goes
/// on under itself, on as many lines as it needs.
const HELP_COLUMNS: usize = 100;

/// The `--help` lines of `flags`, then `-h, --help`'s: each flag's usage
/// in a column as wide as the widest, then its help, wrapped.
pub fn flag_lines<S>(flags: &[Flag<S>]) -> String {
    let usages = flags.iter().map(|flag| {
        let usage = format!("{} {}", flag.name, flag.value);
        (usage.trim_end().to_owned(), flag.help)
    });
    let rows: Vec<(String, &str)> = usages
        .chain([("-h, --help".to_owned(), "print this help")])
        .collect();
    let width = rows.iter().map(|(usage, _)| usage.len()).max().unwrap_or(0) + 2;
    let mut text = String::new();
    for (usage, help) in &rows {
        text.push_str(&wrap(&format!("  {usage:<width$}"), help));
    }
    text
}

/// `help` after `start`, wrapped at [`HELP_COLUMNS`] under its first
/// word, each line ending with a newline. A `[default: ...]` is never cut.
fn wrap(start: &str, help: &str) -> String {
    let indent = start.chars().count();
    let (words, default) = help.split_at(help.find(" [default:").unwrap_or(help.len()));
    let words = words
        .split(' ')
        .chain(Some(default.trim_start()).filter(|d| !d.is_empty()));
    let (mut text, mut line) = (String::new(), start.to_owned());
    let mut columns = indent;
    for word in words {
        let length = word.chars().count();
        if columns > indent && columns + 1 + length > HELP_COLUMNS {
            text.push_str(&line);
            text.push('\n');
            (line, columns) = (" ".repeat(indent), indent);
        }
        if columns > indent {
            line.push(' ');
            columns += 1;
        }
        line.push_str(word);
        columns += length;
    }
    text + &line + "\n"
}

/// Sets `settings` from `args` (`--flag value` or `--flag=value`, a switch
/// alone) by `flags`. `Ok(false)` if `-h` or `--help` came, which ends
/// the reading.
pub fn parse_flags<S>(
    flags: &[Flag<S>],
    settings: &mut S,
    args: impl IntoIterator<Item = String>,
) -> Result<bool, ConfigError> {
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(false);
        }
        let (name, inline_value) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => {
                (name.to_owned(), Some(value.to_owned()))
            }
            _ => (arg, None),
        };
        let flag = flags
            .iter()
            .find(|flag| flag.name == name)
            .ok_or(ConfigError::UnknownFlag(name))?;
        let value = match (inline_value, flag.is_switch()) {
            (None, true) => String::new(),
            (Some(value), false) => value,
            (None, false) => args.next().ok_or(ConfigError::MissingValue(flag.name))?,
            (Some(value), true) => {
                return Err(ConfigError::InvalidValue {
                    flag: flag.name,
                    value,
                    expected: flag.expected,
                })
            }
        };
        if (flag.set)(settings, &value).is_none() {
            return Err(ConfigError::InvalidValue {
                flag: flag.name,
                value,
                expected: flag.expected,
            });
        }
    }
    Ok(true)
}

/// What a flag's value must be, in its error ([`ConfigError`]): shared
/// with `brook-bridge`'s flags (`bridge/config.rs`), so both say it alike.
pub(crate) const DURATION: &str = "a duration such as 250ms, 2s or 1m";
pub(crate) const COUNT: &str = "a whole number of at least 1";
const LIMIT: &str = "a size from 1 byte to 4GiB, such as 8MiB";

/// The longest `--auth-failure-delay`: doubled up to 32 times, a guesser
/// then waits half an hour per guess, and a typo costs a minute.
const MAX_AUTH_FAILURE_DELAY: Duration = Duration::from_secs(60);

/// The flags, in `--help` order: where to listen, where and how topics
/// are kept, delivery, then limits. README's table of the most used
/// follows the same order.
const FLAGS: &[Flag<Config>] = &[
    Flag {
        name: "--addr",
        value: "HOST:PORT",
        help: "address to listen on [default: 127.0.0.1:3000]",
        expected: "HOST:PORT, such as 127.0.0.1:3000",
        set: |config, value| value.contains(':').then(|| config.addr = value.to_owned()),
    },
    Flag {
        name: "--port",
        value: "PORT",
        help: "port to listen on, at --addr's host: --port 3001 is --addr 127.0.0.1:3001",
        expected: "a port number from 0 to 65535 (0: any free port)",
        set: |config, value| {
            let port: u16 = value.parse().ok()?;
            let (host, _) = config.addr.rsplit_once(':')?;
            config.addr = format!("{host}:{port}");
            Some(())
        },
    },
    Flag {
        name: "--metrics-addr",
        value: "HOST:PORT",
        help: "serve Prometheus metrics at http://HOST:PORT/metrics [default: off]",
        expected: "HOST:PORT, such as 127.0.0.1:9100",
        set: |config, value| {
            value
                .contains(':')
                .then(|| config.metrics_addr = Some(value.to_owned()))
        },
    },
    Flag {
        name: "--auth-file",
        value: "PATH",
        help: "users, password hashes and topic permissions; clients must log in [default: none]",
        expected: "a file path",
        set: |config, value| {
            (!value.is_empty()).then(|| config.auth_file = Some(PathBuf::from(value)))
        },
    },
    Flag {
        name: "--allow-anonymous-binary",
        value: "PATTERNS",
        help: "with --auth-file, what a binary client that sends no AUTH may use [default: nothing]",
        expected: "topic names or patterns separated by commas, such as metrics.>,public",
        set: |config, value| {
            // An empty name between two commas is a typo more likely
            // than the topic called "".
            let rule = |word: &str| Rule::parse(word).ok().filter(|_| !word.is_empty());
            let rules: Option<Vec<Rule>> = value.split(',').map(|w| rule(w.trim())).collect();
            config.anonymous_binary = Permissions::on_every_action(rules?);
            Some(())
        },
    },
    Flag {
        name: "--auth-failure-delay",
        value: "DURATION",
        help: "wait after a failed login, doubled per failure from one address, at most 1m \
               [default: 100ms]",
        expected: "a duration of at most 1m, such as 100ms",
        set: |config, value| {
            let delay = parse_duration(value).filter(|&d| d <= MAX_AUTH_FAILURE_DELAY)?;
            config.auth_failure_delay = delay;
            Some(())
        },
    },
    Flag {
        name: "--insecure-allow-anyone",
        value: "",
        help: "listen beyond loopback without --auth-file: anyone who reaches the port may do anything",
        expected: "no value",
        set: |config, _| {
            config.insecure_allow_anyone = true;
            Some(())
        },
    },
    Flag {
        name: "--data-dir",
        value: "PATH",
        help: "keep topics on disk under PATH [default: data]",
        expected: "a directory path",
        set: |config, value| {
            (!value.is_empty()).then(|| config.storage = Storage::Disk(PathBuf::from(value)))
        },
    },
    Flag {
        name: "--in-memory",
        value: "",
        help: "keep topics in memory only, lost when the broker stops",
        expected: "no value",
        set: |config, _| {
            config.storage = Storage::Memory;
            Some(())
        },
    },
    Flag {
        name: "--fsync",
        value: "POLICY",
        help: "always | batch (group commit, see --fsync-interval) | never [default: batch]",
        expected: "always, batch or never",
        set: |config, value| {
            config.fsync = match value {
                "always" => Fsync::Always,
                "batch" => Fsync::Batch,
                "never" => Fsync::Never,
                _ => return None,
            };
            Some(())
        },
    },
    Flag {
        name: "--fsync-interval",
        value: "DURATION",
        help: "with batch, gather writes this long into one fsync [default: 0s, when the disk is free]",
        expected: DURATION,
        set: |config, value| parse_duration(value).map(|v| config.fsync_interval = v),
    },
    Flag {
        name: "--cache-bytes",
        value: "BYTES",
        help: "on disk, payloads all topics together keep in memory [default: 256MiB]",
        expected: "a size above zero, such as 256MiB",
        set: |config, value| parse_positive_size(value).map(|v| config.cache_bytes = v),
    },
    Flag {
        name: "--memory-bytes",
        value: "BYTES",
        help: "in memory, what all topics may hold; then publishers wait, or are refused if they \
               also subscribe or pull [default: RAM / 4]",
        expected: "a size above zero, such as 4GiB",
        set: |config, value| {
            config.memory_bytes = Some(parse_positive_size(value)?);
            Some(())
        },
    },
    Flag {
        name: "--retention-bytes",
        value: "BYTES",
        help: "per topic, drop the oldest messages beyond this [default: keep all]",
        expected: "a size above zero, such as 1GiB",
        set: |config, value| {
            config.retention_bytes = Some(parse_positive_size(value)?);
            Some(())
        },
    },
    Flag {
        name: "--retention-age",
        value: "DURATION",
        help: "on disk, delete segments whose newest message is older [default: keep all]",
        expected: "a duration above zero, such as 7d or 12h",
        set: |config, value| {
            let age = parse_duration(value).filter(|d| !d.is_zero())?;
            config.retention_age = Some(age);
            Some(())
        },
    },
    Flag {
        name: "--segment-bytes",
        value: "BYTES",
        help: "start a new segment file at this size [default: 64MiB]",
        expected: LIMIT,
        set: |config, value| parse_length_limit(value).map(|v| config.segment_bytes = v as u64),
    },
    Flag {
        name: "--on-damage",
        value: "ACTION",
        help: "a damaged record inside a log at start-up: skip (start, log and skip it) | stop (refuse to start) [default: skip]",
        expected: "skip or stop",
        set: |config, value| OnDamage::parse(value).map(|v| config.on_damage = v),
    },
    Flag {
        name: "--ack-delay",
        value: "DURATION",
        help: "wait before redelivering a nacked message [default: 1s]",
        expected: DURATION,
        set: |config, value| parse_duration(value).map(|v| config.ack_delay = v),
    },
    Flag {
        name: "--ack-timeout",
        value: "DURATION",
        help: "redeliver a delivery with no answer after this [default: 2s]",
        expected: "a duration above zero, such as 2s",
        set: |config, value| parse_positive_duration(value).map(|v| config.ack_timeout = v),
    },
    Flag {
        name: "--max-deliveries",
        value: "N",
        help: "give a message up after this many deliveries [default: 5]",
        expected: COUNT,
        set: |config, value| parse_count(value).map(|v| config.max_deliveries = v),
    },
    Flag {
        name: "--dead-letter",
        value: "on|off",
        help: "append messages given up to <topic>.dlq [default: on]",
        expected: "on or off",
        set: |config, value| {
            config.dead_letters = match value {
                "on" => true,
                "off" => false,
                _ => return None,
            };
            Some(())
        },
    },
    Flag {
        name: "--max-inflight",
        value: "N",
        help: "deliveries a subscriber may leave unanswered [default: 16384]",
        expected: COUNT,
        set: |config, value| parse_count(value).map(|v| config.max_inflight = v),
    },
    Flag {
        name: "--subscriber-buffer",
        value: "BYTES",
        help: "payload bytes those deliveries may add up to [default: 16MiB]",
        expected: LIMIT,
        set: |config, value| parse_length_limit(value).map(|v| config.subscriber_buffer = v),
    },
    Flag {
        name: "--max-connections",
        value: "N",
        help: "connections served at once; more are refused [default: what the system allows]",
        expected: COUNT,
        set: |config, value| parse_count(value).map(|n| config.max_connections = Some(n)),
    },
    Flag {
        name: "--handshake-timeout",
        value: "DURATION",
        help: "close a new connection that sends nothing (or, with --auth-file, a line client \
               that has not logged in) for this long [default: 30s]",
        expected: "a duration above zero, such as 30s",
        set: |config, value| parse_positive_duration(value).map(|v| config.handshake_timeout = v),
    },
    Flag {
        name: "--max-message-bytes",
        value: "BYTES",
        help: "largest payload accepted [default: 8MiB]",
        expected: LIMIT,
        set: |config, value| parse_length_limit(value).map(|v| config.max_message_bytes = v),
    },
    Flag {
        name: "--max-line-bytes",
        value: "BYTES",
        help: "longest line of the line protocol [default: 1MiB]",
        expected: LIMIT,
        set: |config, value| parse_length_limit(value).map(|v| config.max_line_bytes = v),
    },
    Flag {
        name: "--max-topic-name-bytes",
        value: "BYTES",
        help: "longest topic name [default: 64KiB - 1, the most the protocols can carry]",
        expected: "a size from 1 byte to 65535 bytes",
        set: |config, value| {
            let bytes = parse_size(value).filter(|&n| (1..=MAX_TOPIC_NAME_BYTES).contains(&n))?;
            config.max_topic_name_bytes = bytes;
            Some(())
        },
    },
    Flag {
        name: "--max-topic-list-bytes",
        value: "BYTES",
        help: "largest JSON topic list in a (un)subscribe [default: 1MiB]",
        expected: LIMIT,
        set: |config, value| parse_length_limit(value).map(|v| config.max_topic_list_bytes = v),
    },
    Flag {
        name: "--max-subscribe-topics",
        value: "N",
        help: "most topics one subscribe may name, and patterns one connection follows [default: 1024]",
        expected: COUNT,
        set: |config, value| parse_count(value).map(|v| config.max_subscribe_topics = v),
    },
    Flag {
        name: "--max-topics",
        value: "N",
        help: "most topics the broker holds; more are refused [default: 10000]",
        expected: COUNT,
        set: |config, value| parse_count(value).map(|v| config.max_topics = v),
    },
    Flag {
        name: "--max-groups-per-topic",
        value: "N",
        help: "most consumer groups one topic holds; more are refused [default: 64]",
        expected: COUNT,
        set: |config, value| parse_count(value).map(|v| config.max_groups_per_topic = v),
    },
];

/// The text `brook --help` prints.
pub fn help() -> String {
    let mut text = String::from(
        "brook: a message broker with per-topic logs, acks and redelivery\n\n\
         Usage: brook [FLAGS]\n       brook hash-password < file-holding-the-password\n\nFlags:\n",
    );
    text.push_str(&flag_lines(FLAGS));
    text.push_str(
        "\nDurations: 250us, 250ms, 2s, 1m, 1h, 7d. Sizes: bytes, or with a unit: KiB, MiB, GiB\n\
         (1024, 1024², 1024³) or KB, MB, GB (1000, 1000², 1000³), as in 512, 64KiB, 8MiB, 1GB.\n\
         Logging follows RUST_LOG (default: info).\n\
         SIGTERM or Ctrl-C stops cleanly (exit 0); a second one exits at once (128 + signal).\n\
         SIGHUP reads the --auth-file again. brook hash-password prints a password line for it.\n",
    );
    text
}

/// Parses the arguments after the program name.
pub fn parse_args<I>(args: I) -> Result<Invocation, ConfigError>
where
    I: IntoIterator<Item = String>,
{
    let mut config = Config::default();
    let mut args = args.into_iter().peekable();
    if args.next_if(|arg| arg == "hash-password").is_some() {
        return match args.next() {
            None => Ok(Invocation::HashPassword),
            Some(arg) => Err(ConfigError::UnknownFlag(arg)),
        };
    }
    match parse_flags(FLAGS, &mut config, args)? {
        true => Ok(Invocation::Run(Box::new(config))),
        false => Ok(Invocation::Help),
    }
}

/// Parses a limit for a `u32` length prefix: 1 byte to 4 GiB.
fn parse_length_limit(text: &str) -> Option<usize> {
    parse_size(text).filter(|&n| n > 0 && n <= u32::MAX as usize)
}

/// Parses a whole number of at least 1.
fn parse_count<N: std::str::FromStr + Default + PartialOrd>(text: &str) -> Option<N> {
    text.parse().ok().filter(|n| *n > N::default())
}

/// A size above zero: a budget of nothing could hold nothing.
fn parse_positive_size(text: &str) -> Option<usize> {
    parse_size(text).filter(|&n| n > 0)
}

/// A duration above zero: a timeout of zero would fire at once.
fn parse_positive_duration(text: &str) -> Option<Duration> {
    parse_duration(text).filter(|d| !d.is_zero())
}

/// Parses `250ms`, `2s`, `1m`, `1h` (also `us`).
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    match unit {
        "us" => Some(Duration::from_micros(n)),
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        "d" => n.checked_mul(86_400).map(Duration::from_secs),
        _ => None,
    }
}

/// Parses a byte count: `512`, `64KiB`, `8MiB`, `1GiB`, `10KB`, `1MB`, `1GB`.
pub fn parse_size(text: &str) -> Option<usize> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: usize = number.parse().ok()?;
    let multiplier: usize = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(multiplier)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Invocation, ConfigError> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn defaults_and_overrides() {
        let Invocation::Run(config) = parse(&[]).unwrap() else {
            panic!("expected a config")
        };
        assert_eq!(config.addr, "127.0.0.1:3000");
        assert_eq!(config.metrics_addr, None);
        assert_eq!(config.max_message_bytes, 8 << 20);
        assert_eq!(config.on_damage, OnDamage::Skip);

        let Invocation::Run(config) = parse(&[
            "--addr=0.0.0.0:4000",
            "--ack-delay",
            "250ms",
            "--ack-timeout=1m",
            "--max-deliveries",
            "3",
            "--max-connections=7",
            "--max-inflight=8",
            "--max-topic-list-bytes=2KiB",
            "--retention-bytes",
            "1GiB",
            "--max-message-bytes",
            "64KiB",
            "--data-dir",
            "/var/lib/brook",
            "--fsync=always",
            "--segment-bytes=1MiB",
            "--retention-age=7d",
            "--fsync-interval=5ms",
            "--subscriber-buffer=1MiB",
            "--handshake-timeout=3s",
            "--max-topic-name-bytes=200",
            "--max-subscribe-topics=5",
            "--max-topics=9",
            "--max-groups-per-topic",
            "3",
            "--dead-letter=off",
            "--cache-bytes=16MiB",
            "--memory-bytes",
            "2GiB",
            "--on-damage=stop",
            "--metrics-addr=127.0.0.1:9100",
        ])
        .unwrap() else {
            panic!("expected a config")
        };
        assert_eq!(config.addr, "0.0.0.0:4000");
        assert_eq!(config.ack_delay, Duration::from_millis(250));
        assert_eq!(config.ack_timeout, Duration::from_secs(60));
        assert_eq!(config.max_deliveries, 3);
        assert_eq!(config.max_connections, Some(7));
        assert_eq!(config.max_inflight, 8);
        assert_eq!(config.max_topic_list_bytes, 2048);
        assert_eq!(config.retention_bytes, Some(1 << 30));
        assert_eq!(config.max_message_bytes, 65536);
        assert_eq!(config.storage, Storage::Disk("/var/lib/brook".into()));
        assert_eq!(config.fsync, Fsync::Always);
        assert_eq!(config.segment_bytes, 1 << 20);
        assert_eq!(config.retention_age, Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(config.fsync_interval, Duration::from_millis(5));
        assert_eq!(config.subscriber_buffer, 1 << 20);
        assert_eq!(config.handshake_timeout, Duration::from_secs(3));
        assert_eq!(config.max_topic_name_bytes, 200);
        assert_eq!(config.max_subscribe_topics, 5);
        assert_eq!(config.max_topics, 9);
        assert_eq!(config.max_groups_per_topic, 3);
        assert!(!config.dead_letters);
        assert_eq!(config.cache_bytes, 16 << 20);
        assert_eq!(config.memory_bytes, Some(2 << 30));
        assert_eq!(config.memory_budget(), ("--cache-bytes", 16 << 20));
        assert_eq!(config.on_damage, OnDamage::Stop);
        assert_eq!(config.metrics_addr.as_deref(), Some("127.0.0.1:9100"));
        assert!(parse(&["--metrics-addr=9100"]).is_err());
        assert!(parse(&["--max-topic-name-bytes=64KiB"]).is_err());
        assert!(parse(&["--on-damage=ignore"]).is_err());

        let Invocation::Run(config) = parse(&["--in-memory", "--fsync", "never"]).unwrap() else {
            panic!("expected a config")
        };
        assert_eq!(config.storage, Storage::Memory);
        assert_eq!(config.fsync, Fsync::Never);
        assert!(parse(&["--in-memory=yes"]).is_err());
    }

    #[test]
    fn auth_flags_and_hash_password() {
        let Invocation::Run(config) = parse(&[
            "--auth-file=/etc/brook/users",
            "--allow-anonymous-binary",
            "metrics.>, public",
            "--auth-failure-delay=5ms",
            "--insecure-allow-anyone",
        ])
        .unwrap() else {
            panic!("expected a config")
        };
        let settings = config.auth_settings().expect("an auth file");
        assert_eq!(settings.file, PathBuf::from("/etc/brook/users"));
        assert_eq!(settings.failure_delay, Duration::from_millis(5));
        let rules = vec![
            Rule::parse("metrics.>").unwrap(),
            Rule::parse("public").unwrap(),
        ];
        assert_eq!(
            settings.anonymous_binary,
            Permissions::on_every_action(rules)
        );
        assert!(config.insecure_allow_anyone);
        assert!(Config::default().auth_settings().is_none());

        for bad in ["orders.>.eu", "a,,b", ""] {
            let error = parse(&["--allow-anonymous-binary", bad]).unwrap_err();
            assert!(error.to_string().starts_with("--allow-anonymous-binary"));
        }
        assert!(parse(&["--auth-failure-delay", "1m"]).is_ok());
        for bad in ["61s", "18446744073709551615s"] {
            let error = parse(&["--auth-failure-delay", bad]).unwrap_err();
            assert!(error.to_string().contains("at most 1m"), "{error}");
        }
        assert!(matches!(
            parse(&["hash-password"]),
            Ok(Invocation::HashPassword)
        ));
        assert!(parse(&["hash-password", "--addr=x:1"]).is_err());
        assert!(parse(&["--in-memory", "hash-password"]).is_err());
    }

    #[test]
    fn port_changes_only_the_port_of_addr() {
        let addr = |args: &[&str]| match parse(args).unwrap() {
            Invocation::Run(config) => config.addr,
            other => panic!("expected a config, got {other:?}"),
        };
        assert_eq!(addr(&["--port", "3001"]), "127.0.0.1:3001");
        assert_eq!(addr(&["--addr=0.0.0.0:4000", "--port=0"]), "0.0.0.0:0");
        assert_eq!(addr(&["--addr", "[::1]:4000", "--port", "5"]), "[::1]:5");
        // The last of the two wins, as for any flag given twice.
        assert_eq!(addr(&["--port", "5", "--addr", "[::1]:4000"]), "[::1]:4000");
        for bad in ["70000", "-1", "x", ""] {
            let error = parse(&["--port", bad]).unwrap_err();
            assert!(error.to_string().starts_with("--port"), "{error}");
        }
    }

    #[test]
    fn mistakes_are_named() {
        assert_eq!(
            parse(&["--bogus"]).unwrap_err(),
            ConfigError::UnknownFlag("--bogus".into())
        );
        assert_eq!(
            parse(&["--ack-delay"]).unwrap_err(),
            ConfigError::MissingValue("--ack-delay")
        );
        for bad in [
            &["--ack-delay", "2"][..],
            &["--ack-timeout", "0s"],
            &["--max-deliveries", "0"],
            &["--max-message-bytes", "8XB"],
            &["--addr", "nowhere"],
            &["--cache-bytes", "0"],
            &["--memory-bytes", "lots"],
        ] {
            let error = parse(bad).unwrap_err();
            assert!(matches!(error, ConfigError::InvalidValue { .. }), "{bad:?}");
            assert!(error.to_string().starts_with(bad[0]));
        }
        assert!(matches!(parse(&["--help"]).unwrap(), Invocation::Help));
    }

    #[test]
    fn help_lists_every_flag() {
        let text = help();
        for flag in FLAGS {
            assert!(text.contains(flag.name));
        }
    }

    #[test]
    fn help_fits_in_its_columns_and_sets_every_usage_apart() {
        let text = help();
        for line in text.lines() {
            assert!(line.chars().count() <= HELP_COLUMNS, "too wide: {line}");
        }
        for flag in FLAGS {
            let usage = format!("  {} {}", flag.name, flag.value);
            let row = text
                .lines()
                .find(|line| line.starts_with(usage.trim_end()))
                .unwrap();
            let after = &row[usage.trim_end().len()..];
            assert!(after.starts_with("  "), "no space after the usage: {row}");
        }
        assert!(
            text.contains("[default: RAM / 4]"),
            "a default was cut:\n{text}"
        );
    }

    /// The flags named in the first column of a Markdown table's rows.
    fn flags_in_tables(markdown: &str) -> Vec<&str> {
        markdown
            .lines()
            .filter_map(|line| line.strip_prefix("| "))
            .filter_map(|row| row.split(" | ").next())
            .flat_map(|cell| cell.split('`').skip(1).step_by(2))
            .filter_map(|code| code.split_whitespace().next())
            .filter(|word| word.starts_with("--"))
            .collect()
    }

    #[test]
    fn the_docs_list_the_flags_in_help_order() {
        let position = |name: &str| FLAGS.iter().position(|flag| flag.name == name);
        for (doc, text) in [
            ("README.md", include_str!("../README.md")),
            ("docs/OPERATIONS.md", include_str!("../docs/OPERATIONS.md")),
        ] {
            let listed = flags_in_tables(text);
            let positions: Vec<usize> = listed
                .iter()
                .map(|name| position(name).unwrap_or_else(|| panic!("{doc}: no flag {name}")))
                .collect();
            assert!(
                positions.windows(2).all(|pair| pair[0] < pair[1]),
                "{doc} lists {listed:?}, not in --help order"
            );
            if doc == "docs/OPERATIONS.md" {
                assert_eq!(listed.len(), FLAGS.len(), "{doc} lists every flag");
            }
        }
    }

    #[test]
    fn units() {
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("ms"), None);
        assert_eq!(parse_size("1GB"), Some(1_000_000_000));
        assert_eq!(parse_size("MiB"), None);
    }
}
