//! `brook-bridge`'s flags, and `--help`, in the style of brook's own
//! `src/config.rs`: a table of flags, each with its help line and how it
//! sets the [`Settings`], so a flag cannot be listed and not parsed.
//!
//! `--to-nats` and `--from-nats` may be given several times, one mirror
//! each; every other flag once (the last one wins).

use std::fmt;
use std::time::Duration;

use super::nats::{Auth, Limits, Servers};
use crate::client::Login;
use crate::config::{flag_lines, parse_duration, parse_flags, ConfigError, Flag, COUNT, DURATION};
use crate::pattern::Subject;

/// Everything `brook-bridge` is told on its command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The brook to read from and publish to, `HOST:PORT`.
    pub brook: String,
    /// The NATS servers, tried in turn.
    pub nats: Vec<String>,
    pub to_nats: Vec<ToNats>,
    pub from_nats: Vec<FromNats>,
    /// The replicas of each stream the bridge creates.
    pub replicas: u32,
    pub nats_user: Option<String>,
    pub nats_password: Option<String>,
    pub nats_token: Option<String>,
    /// `--brook-user` and `--brook-password`, as given.
    pub brook_user: Option<String>,
    pub brook_password: Option<String>,
    /// brook's login, from those or `BROOK_USER`/`BROOK_PASSWORD`: set by
    /// [`parse_args`] once every flag is read.
    pub brook_login: Option<Login>,
    /// How long JetStream waits for the bridge's ack before it sends a
    /// message of a `--from-nats` mirror again.
    pub ack_wait: Duration,
    /// The most messages in flight per mirror.
    pub batch: usize,
    /// How many times JetStream delivers a message of a `--from-nats`
    /// mirror before it gives up on it; `None`, never.
    pub max_deliver: Option<u32>,
    /// How long a created stream remembers message ids: longer than a
    /// bridge takes to restart.
    pub duplicate_window: Duration,
    /// Log the messages moved per second this often.
    pub report_every: Option<Duration>,
    /// Serve the mirrors' figures at `http://<this>/metrics`.
    pub metrics_addr: Option<String>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            brook: "127.0.0.1:3000".into(),
            nats: vec!["127.0.0.1:4222".into()],
            to_nats: Vec::new(),
            from_nats: Vec::new(),
            replicas: 1,
            nats_user: None,
            nats_password: None,
            nats_token: None,
            brook_user: None,
            brook_password: None,
            brook_login: None,
            ack_wait: Duration::from_secs(30),
            batch: 256,
            max_deliver: None,
            duplicate_window: Duration::from_secs(10 * 60),
            report_every: None,
            metrics_addr: None,
        }
    }
}

impl Settings {
    /// The `--nats` servers with the credentials given.
    pub fn servers(&self) -> Servers {
        let auth = match (&self.nats_token, &self.nats_user) {
            (Some(token), _) => Auth::Token(token.clone()),
            (None, Some(user)) => Auth::UserPassword {
                user: user.clone(),
                password: self.nats_password.clone().unwrap_or_default(),
            },
            (None, None) => Auth::None,
        };
        // A session waits for at most --batch replies or pulled messages
        // at once; the rest is room for a pull's status messages.
        Servers::new(self.nats.clone(), auth).with_limits(Limits {
            events: 2 * self.batch + 64,
            ..Limits::default()
        })
    }
}

/// One mirror: brook topics matching `pattern` into stream `stream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToNats {
    pub pattern: String,
    pub stream: String,
}

impl ToNats {
    /// The brook consumer group the bridge reads as.
    pub fn group(&self) -> String {
        format!("bridge-{}", self.stream)
    }

    /// The mirror as its flag gives it, its name in logs and exit
    /// messages: `--to-nats PATTERN=STREAM`.
    pub fn name(&self) -> String {
        format!("--to-nats {}={}", self.pattern, self.stream)
    }
}

/// One mirror: stream `stream`'s messages on `pattern` into brook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromNats {
    pub stream: String,
    pub pattern: String,
}

impl FromNats {
    /// The mirror as its flag gives it, its name in logs and exit
    /// messages: `--from-nats STREAM=PATTERN` (one stream may have
    /// several mirrors, of other patterns).
    pub fn name(&self) -> String {
        format!("--from-nats {}={}", self.stream, self.pattern)
    }

    /// The durable consumer's name. JetStream names allow no dots or
    /// wildcards, so those are spelled out: `brook-bridge-<pattern>` with
    /// `.`, `*` and `>` as `_`, `star` and `rest`, the names the bridge
    /// has always used. That spelling makes two patterns one name when a
    /// pattern has a `_` (`orders.eu` and `orders_eu`), a token with `star`
    /// or `rest` in it, or a `*` or `>` inside a longer token (`re*` and
    /// `>ar`); such a pattern gets `brook-bridge2-<pattern>` instead,
    /// escaped so that no two patterns share a name: `_` as `_u`, `.` as
    /// `_d`, `*` as `_s`, `>` as `_r`.
    pub fn durable(&self) -> String {
        let pattern = &self.pattern;
        let ambiguous = pattern.contains('_')
            || pattern.split('.').any(|token| {
                let inside = |wildcard: char| token.contains(wildcard) && token.len() > 1;
                token.contains("star") || token.contains("rest") || inside('*') || inside('>')
            });
        if !ambiguous {
            let spelled = pattern
                .replace('.', "_")
                .replace('*', "star")
                .replace('>', "rest");
            return format!("brook-bridge-{spelled}");
        }
        let mut escaped = String::with_capacity(pattern.len() * 2);
        for c in pattern.chars() {
            match c {
                '_' => escaped.push_str("_u"),
                '.' => escaped.push_str("_d"),
                '*' => escaped.push_str("_s"),
                '>' => escaped.push_str("_r"),
                c => escaped.push(c),
            }
        }
        format!("brook-bridge2-{escaped}")
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    Run(Box<Settings>),
    Help,
}

/// A command line that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BridgeConfigError {
    /// A flag brook-bridge does not know, without its value, or with a
    /// value it cannot take: the same words as brook's own.
    Flag(ConfigError),
    /// Neither `--to-nats` nor `--from-nats`: nothing to do.
    NoMirror,
    /// `--nats-token` with `--nats-user`: NATS takes one or the other.
    TokenAndUser,
    /// Two `--to-nats` into this stream: they would share a brook group
    /// and break each other's order.
    StreamTwice(String),
    /// The same `--from-nats STREAM=PATTERN` twice: one consumer, and
    /// one name in the metrics, for two mirrors.
    FromNatsTwice(String),
}

impl fmt::Display for BridgeConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BridgeConfigError::Flag(error) => write!(f, "{error}"),
            BridgeConfigError::NoMirror => write!(
                f,
                "nothing to do: give --to-nats PATTERN=STREAM or --from-nats STREAM=PATTERN"
            ),
            BridgeConfigError::TokenAndUser => {
                write!(f, "give --nats-token or --nats-user, not both")
            }
            BridgeConfigError::StreamTwice(stream) => write!(
                f,
                "two --to-nats into the stream {stream}: give each its own stream"
            ),
            BridgeConfigError::FromNatsTwice(mirror) => {
                write!(f, "--from-nats {mirror} is given twice: give it once")
            }
        }
    }
}

impl std::error::Error for BridgeConfigError {}

impl From<ConfigError> for BridgeConfigError {
    fn from(error: ConfigError) -> BridgeConfigError {
        BridgeConfigError::Flag(error)
    }
}

const FLAGS: &[Flag<Settings>] = &[
    Flag {
        name: "--brook",
        value: "HOST:PORT",
        help: "the brook to mirror [default: 127.0.0.1:3000]",
        expected: "HOST:PORT, such as 127.0.0.1:3000",
        set: |s, value| value.contains(':').then(|| s.brook = value.to_owned()),
    },
    Flag {
        name: "--nats",
        value: "HOST:PORT,...",
        help: "NATS servers, tried in turn when one fails [default: 127.0.0.1:4222]",
        expected: "HOST:PORT addresses separated by commas",
        set: |s, value| {
            let list: Vec<String> = value.split(',').map(str::to_owned).collect();
            list.iter()
                .all(|addr| addr.contains(':'))
                .then(|| s.nats = list)
        },
    },
    Flag {
        name: "--to-nats",
        value: "PATTERN=STREAM",
        help: "brook topics matching PATTERN into JetStream stream STREAM (repeatable)",
        expected: "PATTERN=STREAM, such as 'orders.*=ORDERS'",
        set: |s, value| {
            let (pattern, stream) = value.split_once('=')?;
            (is_subject(pattern) && is_stream_name(stream)).then(|| {
                s.to_nats.push(ToNats {
                    pattern: pattern.to_owned(),
                    stream: stream.to_owned(),
                })
            })
        },
    },
    Flag {
        name: "--from-nats",
        value: "STREAM=PATTERN",
        help: "STREAM's messages on subjects matching PATTERN into brook (repeatable)",
        expected: "STREAM=PATTERN, such as 'ORDERS=orders.*'",
        set: |s, value| {
            let (stream, pattern) = value.split_once('=')?;
            (is_subject(pattern) && is_stream_name(stream)).then(|| {
                s.from_nats.push(FromNats {
                    stream: stream.to_owned(),
                    pattern: pattern.to_owned(),
                })
            })
        },
    },
    Flag {
        name: "--replicas",
        value: "N",
        help: "replicas of each stream the bridge creates, 1 to 5 [default: 1]",
        expected: "a number from 1 to 5",
        set: |s, value| {
            let n: u32 = value.parse().ok().filter(|n| (1..=5).contains(n))?;
            s.replicas = n;
            Some(())
        },
    },
    Flag {
        name: "--nats-user",
        value: "USER",
        help: "user name for NATS servers that want one",
        expected: "a user name",
        set: |s, value| {
            s.nats_user = Some(value.to_owned());
            Some(())
        },
    },
    Flag {
        name: "--nats-password",
        value: "PASSWORD",
        help: "its password",
        expected: "a password",
        set: |s, value| {
            s.nats_password = Some(value.to_owned());
            Some(())
        },
    },
    Flag {
        name: "--nats-token",
        value: "TOKEN",
        help: "token for NATS servers that want one",
        expected: "a token",
        set: |s, value| {
            s.nats_token = Some(value.to_owned());
            Some(())
        },
    },
    Flag {
        name: "--brook-user",
        value: "USER",
        help: "brook login (brooks with --auth-file) [default: $BROOK_USER]",
        expected: "a user name",
        set: |s, value| {
            s.brook_user = Some(value.to_owned());
            Some(())
        },
    },
    Flag {
        name: "--brook-password",
        value: "PASSWORD",
        help: "its password [default: $BROOK_PASSWORD]",
        expected: "a password",
        set: |s, value| {
            s.brook_password = Some(value.to_owned());
            Some(())
        },
    },
    Flag {
        name: "--ack-wait",
        value: "DURATION",
        help: "how long JetStream waits for the bridge's ack (--from-nats) [default: 30s]",
        expected: DURATION,
        set: |s, value| {
            s.ack_wait = parse_duration(value).filter(|d| !d.is_zero())?;
            Some(())
        },
    },
    Flag {
        name: "--batch",
        value: "N",
        help: "messages in flight per mirror [default: 256]",
        expected: COUNT,
        set: |s, value| {
            s.batch = value.parse().ok().filter(|&n| n > 0)?;
            Some(())
        },
    },
    Flag {
        name: "--max-deliver",
        value: "N",
        help: "deliveries before JetStream gives up on a message (--from-nats); one given up \
               never reaches brook [default: -1, no limit]",
        expected: "a whole number of at least 1, or -1 for no limit",
        set: |s, value| {
            s.max_deliver = match value {
                "-1" => None,
                n => Some(n.parse().ok().filter(|&n| n > 0)?),
            };
            Some(())
        },
    },
    Flag {
        name: "--metrics-addr",
        value: "HOST:PORT",
        help: "serve the mirrors' Prometheus metrics at http://HOST:PORT/metrics [default: off]",
        expected: "HOST:PORT, such as 127.0.0.1:9101",
        set: |s, value| {
            let addr = value.contains(':').then(|| value.to_owned())?;
            s.metrics_addr = Some(addr);
            Some(())
        },
    },
    Flag {
        name: "--report-every",
        value: "DURATION",
        help: "log this often the messages per second the far side confirmed (--to-nats: JetStream's duplicates too) and those given up for good [default: off]",
        expected: DURATION,
        set: |s, value| {
            s.report_every = Some(parse_duration(value).filter(|d| !d.is_zero())?);
            Some(())
        },
    },
];

/// A JetStream stream name: no spaces, dots or wildcards.
fn is_stream_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A NATS subject or pattern. Its wildcards follow brook's own rules for
/// patterns, which are NATS's (`pattern.rs`: `>` last only); NATS also
/// takes no empty token, no whitespace and (for the bridge's part) no
/// control character in an exact subject, which brook's topic names may
/// have.
pub(crate) fn is_subject(subject: &str) -> bool {
    Subject::parse(subject).is_ok()
        && subject.split('.').all(|token| {
            !token.is_empty() && !token.contains(|c: char| c.is_whitespace() || c.is_control())
        })
}

/// What `--help` prints.
pub fn help() -> String {
    let mut text = String::from(
        "brook-bridge: mirrors between brook and a NATS JetStream cluster\n\n\
         Usage: brook-bridge [FLAGS] (--to-nats PATTERN=STREAM | --from-nats STREAM=PATTERN)...\n\n\
         Flags:\n",
    );
    text.push_str(&flag_lines(FLAGS));
    text.push_str(
        "\nExample: brook-bridge --brook 127.0.0.1:3000 --nats 127.0.0.1:4222,127.0.0.1:4223 \\\n\
         \x20          --to-nats 'orders.*=ORDERS' --replicas 3\n\
         Start brook with an --ack-timeout longer than a NATS failover (say 30s).\n\
         Logging follows RUST_LOG (default: info). See docs/SCALING.md.\n",
    );
    text
}

/// An item that `items` holds twice, if any.
fn given_twice<T: Ord + Copy>(items: impl Iterator<Item = T>) -> Option<T> {
    let mut items: Vec<T> = items.collect();
    items.sort_unstable();
    items
        .windows(2)
        .find(|pair| pair[0] == pair[1])
        .map(|pair| pair[0])
}

/// Parses the arguments after the program name.
pub fn parse_args<I>(args: I) -> Result<Invocation, BridgeConfigError>
where
    I: IntoIterator<Item = String>,
{
    let mut settings = Settings::default();
    if !parse_flags(FLAGS, &mut settings, args)? {
        return Ok(Invocation::Help);
    }
    if settings.to_nats.is_empty() && settings.from_nats.is_empty() {
        return Err(BridgeConfigError::NoMirror);
    }
    if settings.nats_token.is_some() && settings.nats_user.is_some() {
        return Err(BridgeConfigError::TokenAndUser);
    }
    let streams = settings.to_nats.iter().map(|m| m.stream.as_str());
    if let Some(stream) = given_twice(streams) {
        return Err(BridgeConfigError::StreamTwice(stream.to_owned()));
    }
    let from_nats = settings.from_nats.iter().map(|m| (&m.stream, &m.pattern));
    if let Some((stream, pattern)) = given_twice(from_nats) {
        let mirror = format!("{stream}={pattern}");
        return Err(BridgeConfigError::FromNatsTwice(mirror));
    }
    settings.brook_login =
        Login::from_args_or_env(settings.brook_user.clone(), settings.brook_password.clone());
    Ok(Invocation::Run(Box::new(settings)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Invocation, BridgeConfigError> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    fn settings(args: &[&str]) -> Settings {
        match parse(args) {
            Ok(Invocation::Run(settings)) => *settings,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn the_issue_example_parses() {
        let s = settings(&[
            "--brook",
            "127.0.0.1:3000",
            "--nats",
            "127.0.0.1:4222,127.0.0.1:4223",
            "--to-nats",
            "orders.*=ORDERS",
            "--from-nats=PAY=pay.>",
            "--replicas=3",
            "--batch",
            "64",
            "--ack-wait",
            "5s",
            "--metrics-addr=127.0.0.1:9101",
            "--max-deliver=10",
        ]);
        assert_eq!(s.nats, ["127.0.0.1:4222", "127.0.0.1:4223"]);
        assert_eq!(
            s.to_nats,
            [ToNats {
                pattern: "orders.*".into(),
                stream: "ORDERS".into()
            }]
        );
        assert_eq!(
            s.from_nats,
            [FromNats {
                stream: "PAY".into(),
                pattern: "pay.>".into()
            }]
        );
        assert_eq!((s.replicas, s.batch), (3, 64));
        assert_eq!(s.ack_wait, Duration::from_secs(5));
        assert_eq!(s.metrics_addr.as_deref(), Some("127.0.0.1:9101"));
        assert_eq!(s.max_deliver, Some(10));
        assert_eq!(settings(&["--to-nats=a=A"]).max_deliver, None, "no limit");
        assert_eq!(
            settings(&["--to-nats=a=A", "--max-deliver=-1"]).max_deliver,
            None
        );
    }

    #[test]
    fn mistakes_name_the_flag() {
        let invalid = |args: &[&str], flag: &str| match parse(args) {
            Err(BridgeConfigError::Flag(ConfigError::InvalidValue { flag: f, .. })) => {
                assert_eq!(f, flag)
            }
            other => panic!("{args:?}: {other:?}"),
        };
        invalid(&["--to-nats", "orders.*"], "--to-nats");
        invalid(&["--to-nats", "orders.*=ORD.ERS"], "--to-nats");
        invalid(&["--from-nats", "ORDERS=orders..x"], "--from-nats");
        invalid(&["--to-nats", "orders.>.eu=ORDERS"], "--to-nats");
        invalid(&["--replicas", "7"], "--replicas");
        invalid(&["--batch", "0"], "--batch");
        invalid(&["--nats", "localhost"], "--nats");
        assert_eq!(parse(&[]).unwrap_err(), BridgeConfigError::NoMirror);
        assert_eq!(
            parse(&["--to-nats=a=A", "--nats-token=t", "--nats-user=u"]).unwrap_err(),
            BridgeConfigError::TokenAndUser
        );
        assert_eq!(
            parse(&["--to-nats=a=A", "--to-nats=b=B", "--to-nats=c.*=A"]).unwrap_err(),
            BridgeConfigError::StreamTwice("A".into())
        );
        assert_eq!(
            parse(&[
                "--from-nats=A=a.*",
                "--from-nats=B=a.*",
                "--from-nats=A=a.*"
            ])
            .unwrap_err(),
            BridgeConfigError::FromNatsTwice("A=a.*".into())
        );
        invalid(&["--metrics-addr", "9101"], "--metrics-addr");
        for bad in ["0", "-2", "many"] {
            invalid(&["--max-deliver", bad], "--max-deliver");
        }
        assert_eq!(
            parse(&["--batch"]).unwrap_err(),
            BridgeConfigError::Flag(ConfigError::MissingValue("--batch"))
        );
        assert!(matches!(
            parse(&["--nope"]),
            Err(BridgeConfigError::Flag(ConfigError::UnknownFlag(_)))
        ));
    }

    /// Two mirrors of one stream, of other patterns, have other names in
    /// the logs (review of the bridge's last items, finding 7).
    #[test]
    fn each_mirror_is_named_as_its_flag_gives_it() {
        let s = settings(&[
            "--from-nats=PAY=pay.*",
            "--from-nats=PAY=pay.eu",
            "--to-nats=orders.*=ORDERS",
        ]);
        let names: Vec<String> = s.from_nats.iter().map(FromNats::name).collect();
        assert_eq!(names, ["--from-nats PAY=pay.*", "--from-nats PAY=pay.eu"]);
        assert_eq!(s.to_nats[0].name(), "--to-nats orders.*=ORDERS");
    }

    #[test]
    fn durable_names_keep_their_old_spelling_and_never_collide() {
        let durable = |pattern: &str| {
            FromNats {
                stream: "S".into(),
                pattern: pattern.into(),
            }
            .durable()
        };
        assert_eq!(durable("orders.*"), "brook-bridge-orders_star");
        assert_eq!(durable("pay.>"), "brook-bridge-pay_rest");
        let patterns = [
            "orders.eu",
            "orders_eu",
            "orders.*",
            "orders.star",
            "orders_star",
            "a._b",
            "a_.b",
            "a.rest",
            "a.>",
            "a_d",
            "a.d",
            "re*",
            ">ar",
        ];
        let names: std::collections::HashSet<String> =
            patterns.iter().map(|p| durable(p)).collect();
        assert_eq!(names.len(), patterns.len(), "{names:?}");
    }

    #[test]
    fn help_lists_every_flag() {
        let text = help();
        for flag in FLAGS {
            assert!(text.contains(flag.name), "{}", flag.name);
        }
        assert!(matches!(parse(&["--help"]), Ok(Invocation::Help)));
    }
}
