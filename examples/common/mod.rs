//! What the example programs share: hand-written flag parsing (the design
//! allows no argument-parsing crate), `--help`, error reporting, and a
//! temporary directory (`temp.rs`, which the tests use too).
//!
//! Each program lists its flags as [`Flag`]s and reads its command line
//! with [`read_flags`]; the four small examples do so through
//! [`Args::parse`], the bench with rules of its own. Flags are written
//! `--flag value` or `--flag=value`, a switch alone. A mistake prints one
//! line naming the flag, and a hint to try `--help`, then exits with
//! status 2.
//!
//! This directory is not an example of its own: cargo only discovers
//! `examples/*.rs` and `examples/*/main.rs`. Each example includes it with
//! `mod common;`.

// Not every program uses every helper.
#![allow(dead_code)]

use std::collections::HashMap;
use std::error::Error;
use std::process::{self, ExitCode};
use std::str::FromStr;

use brook::client::Subscriber;
use brook::wire::request::StartAt;

pub mod temp;

/// One flag a program accepts.
pub struct Flag {
    /// Such as `--port`.
    pub name: &'static str,
    /// What the value is called in `--help`, such as `PORT`; empty for a
    /// switch, which takes none.
    pub value: &'static str,
    pub help: &'static str,
    /// The value used when the flag is not given, shown in `--help`.
    pub default: Option<&'static str>,
}

impl Flag {
    /// A flag as one row of a table: `default` is empty for none.
    pub const fn new(
        name: &'static str,
        value: &'static str,
        help: &'static str,
        default: &'static str,
    ) -> Flag {
        let default = match default.is_empty() {
            true => None,
            false => Some(default),
        };
        Flag {
            name,
            value,
            help,
            default,
        }
    }

    pub fn is_switch(&self) -> bool {
        self.value.is_empty()
    }
}

/// Reads the words of a command line against `flags`: each flag `--flag
/// value` or `--flag=value`, a switch alone. Returns the flags given, in
/// order, with their values (empty for a switch); `None` for `-h` or
/// `--help`; or the mistake, in one line that names the flag.
pub fn read_flags(
    words: impl IntoIterator<Item = String>,
    flags: &[Flag],
) -> Result<Option<Vec<(&Flag, String)>>, String> {
    let mut given = Vec::new();
    let mut words = words.into_iter();
    while let Some(word) = words.next() {
        if word == "-h" || word == "--help" {
            return Ok(None);
        }
        let (name, inline) = match word.split_once('=') {
            Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
            None => (word, None),
        };
        let Some(flag) = flags.iter().find(|flag| flag.name == name) else {
            return Err(format!("unknown flag '{name}'"));
        };
        let value = match (inline, flag.is_switch()) {
            (None, true) => String::new(),
            (Some(value), false) => value,
            (None, false) => words
                .next()
                .ok_or_else(|| format!("{} needs a value", flag.name))?,
            (Some(_), true) => return Err(format!("{} takes no value", flag.name)),
        };
        given.push((flag, value));
    }
    Ok(Some(given))
}

pub const HOST: Flag = Flag {
    name: "--host",
    value: "HOST",
    help: "broker host",
    default: Some("127.0.0.1"),
};

pub const PORT: Flag = Flag {
    name: "--port",
    value: "PORT",
    help: "broker port",
    default: Some("3000"),
};

pub const COUNT: Flag = Flag {
    name: "--count",
    value: "N",
    help: "stop after N messages [default: run forever]",
    default: None,
};

/// The command line of one example, parsed.
pub struct Args {
    program: &'static str,
    values: HashMap<&'static str, String>,
}

impl Args {
    /// Parses the process's arguments against `flags`. Prints the help and
    /// exits on `-h`/`--help`; prints the mistake and exits on anything else
    /// it does not understand.
    pub fn parse(program: &'static str, about: &str, usage: &str, flags: &[Flag]) -> Args {
        let mut args = Args {
            program,
            values: HashMap::new(),
        };
        let given = match read_flags(std::env::args().skip(1), flags) {
            Ok(Some(given)) => given,
            Ok(None) => {
                print!("{}", help(program, about, usage, flags));
                process::exit(0);
            }
            Err(mistake) => args.fail(&mistake),
        };
        for (flag, value) in given {
            args.values.insert(flag.name, value);
        }
        for flag in flags {
            if let Some(default) = flag.default {
                args.values
                    .entry(flag.name)
                    .or_insert_with(|| default.to_owned());
            }
        }
        args
    }

    /// The value of `flag`, or its default; `None` if neither was given.
    pub fn get(&self, flag: &str) -> Option<&str> {
        self.values.get(flag).map(String::as_str)
    }

    /// The value of a flag the example cannot run without.
    pub fn required(&self, flag: &str) -> &str {
        match self.get(flag) {
            Some(value) => value,
            None => self.fail(&format!("{flag} is required")),
        }
    }

    /// The value of `flag` as a number, if given. `expected` describes a
    /// valid value for the error message.
    pub fn number<T: FromStr>(&self, flag: &str, expected: &str) -> Option<T> {
        let value = self.get(flag)?;
        match value.parse() {
            Ok(number) => Some(number),
            Err(_) => self.fail(&format!("{flag} '{value}': expected {expected}")),
        }
    }

    /// `--count N`: a whole number of at least 1, or `None` to run forever.
    pub fn count(&self) -> Option<u64> {
        let count = self.number("--count", "a whole number of at least 1")?;
        if count == 0 {
            self.fail("--count '0': expected a whole number of at least 1");
        }
        Some(count)
    }

    /// The broker's address, `HOST:PORT`, from `--host` and `--port`.
    pub fn broker(&self) -> String {
        let host = self.required(HOST.name);
        let port: u16 = self
            .number(PORT.name, "a port number from 1 to 65535")
            .unwrap_or(3000);
        if port == 0 {
            self.fail("--port '0': expected a port number from 1 to 65535");
        }
        match host.contains(':') && !host.starts_with('[') {
            true => format!("[{host}]:{port}"), // an IPv6 address
            false => format!("{host}:{port}"),
        }
    }

    /// Prints a mistake on the command line and exits with status 2.
    pub fn fail(&self, message: &str) -> ! {
        eprintln!(
            "{}: {message}\nTry '{} --help'.",
            self.program, self.program
        );
        process::exit(2)
    }
}

/// The text `--help` prints.
fn help(program: &str, about: &str, usage: &str, flags: &[Flag]) -> String {
    let text = format!("{program}: {about}\n\nUsage: {program} {usage}\n\nFlags:\n");
    text + &flags_help(flags)
}

/// One line of `--help` per flag, with its default, then `-h, --help`.
pub fn flags_help(flags: &[Flag]) -> String {
    let mut text = String::new();
    for flag in flags {
        let default = match flag.default {
            Some(default) => format!(" [default: {default}]"),
            None => String::new(),
        };
        let name = format!("{} {}", flag.name, flag.value);
        text.push_str(&format!("  {name:<24}{}{default}\n", flag.help));
    }
    text.push_str(&format!("  {:<24}print this help\n", "-h, --help"));
    text
}

/// Subscribes to `topic` from `start`, then prints each message as
/// `[topic] payload` (invalid UTF-8 shown as `�`) and acks it, until
/// `--count` messages have arrived, or forever.
pub fn print_and_ack(args: &Args, topic: &str, start: StartAt) -> Result<(), Box<dyn Error>> {
    let broker = args.broker();
    let count = args.count();
    let mut subscriber =
        Subscriber::connect(&broker).map_err(|e| format!("cannot connect to {broker}: {e}"))?;
    subscriber.subscribe(&[topic], start)?;
    let mut received = 0;
    while count.is_none_or(|count| received < count) {
        let delivery = subscriber.recv()?;
        let payload = String::from_utf8_lossy(&delivery.payload);
        println!("[{}] {payload}", delivery.topic);
        subscriber.ack()?;
        received += 1;
    }
    // Acks go out when the subscriber next waits; it will not wait again.
    subscriber.flush()?;
    Ok(())
}

/// Turns the outcome of an example's work into its exit status, printing
/// the error, if any, as one line.
pub fn exit_status(program: &str, outcome: Result<(), Box<dyn Error>>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{program}: {error}");
            ExitCode::FAILURE
        }
    }
}
