//! What the example programs share: hand-written flag parsing (the design
//! allows no argument-parsing crate), `--help`, error reporting, printing
//! that ends quietly when standard output is closed, the line-protocol
//! subscription that prints each message with its offset, and a temporary
//! directory (`temp.rs`, which the tests use too).
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
//!
//! Each program is a crate of its own and uses a part of this file, so
//! the items that some program leaves unused carry `#[allow(dead_code)]`,
//! and only those: a helper that no program uses still warns.

use std::collections::HashMap;
use std::error::Error;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{self, ExitCode};
use std::str::FromStr;

use brook::client::{ClientError, Login};
use brook::wire::line::{encode_topic, parse_msg_line, MsgLine};
use brook::wire::request::StartAt;

#[allow(dead_code)]
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
    #[allow(dead_code)]
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

#[allow(dead_code)]
pub const HOST: Flag = Flag {
    name: "--host",
    value: "HOST",
    help: "broker host",
    default: Some("127.0.0.1"),
};

#[allow(dead_code)]
pub const PORT: Flag = Flag {
    name: "--port",
    value: "PORT",
    help: "broker port",
    default: Some("3000"),
};

#[allow(dead_code)]
pub const USER: Flag = Flag {
    name: "--user",
    value: "NAME",
    help: "log in as NAME, to a broker with --auth-file [default: $BROOK_USER]",
    default: None,
};

#[allow(dead_code)]
pub const PASSWORD: Flag = Flag {
    name: "--password",
    value: "TEXT",
    help: "the user's password; BROOK_PASSWORD keeps it out of the process list",
    default: None,
};

#[allow(dead_code)]
pub const COUNT: Flag = Flag {
    name: "--count",
    value: "N",
    help: "stop after N messages [default: run forever]",
    default: None,
};

/// The command line of one example, parsed.
#[allow(dead_code)]
pub struct Args {
    program: &'static str,
    values: HashMap<&'static str, String>,
}

#[allow(dead_code)]
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

    /// The login `--user` and `--password` (or `BROOK_USER` and
    /// `BROOK_PASSWORD`) ask for; `None` to connect without one.
    pub fn login(&self) -> Option<Login> {
        let given = |flag: &Flag| self.get(flag.name).map(str::to_owned);
        Login::from_args_or_env(given(&USER), given(&PASSWORD))
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
#[allow(dead_code)]
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

/// Subscribes to `topic` from `start` and prints each message as
/// `[topic@offset] payload` (invalid UTF-8 shown as `�`), acking each once
/// it is printed, until `--count` messages have arrived, or forever.
///
/// It subscribes with the line protocol (`SUB <topic> <start> manual`),
/// whose deliveries carry their offsets: the binary protocol's do not, so
/// a binary subscriber cannot say where in the log a message was. Each
/// delivery is `MSG <topic> <offset> <nbytes>`, the payload and a newline,
/// and is answered with `ACK`.
#[allow(dead_code)]
pub fn print_and_ack(args: &Args, topic: &str, start: StartAt) -> Result<(), Box<dyn Error>> {
    let broker = args.broker();
    let count = args.count();
    let stream = TcpStream::connect(&broker).map_err(|error| cannot_connect(&broker, error))?;
    let mut replies = BufReader::new(stream.try_clone()?);
    let mut requests = stream;
    if let Some(login) = args.login() {
        let auth = format!("AUTH {} {}\n", word(login.user()), word(login.password()));
        requests.write_all(auth.as_bytes())?;
        expect_ok(&mut replies)?;
    }
    requests.write_all(&subscribe_line(topic, start))?;
    expect_ok(&mut replies)?;
    let mut received = 0;
    while count.is_none_or(|count| received < count) {
        let (offset, payload) = read_message(&mut replies)?;
        let payload = String::from_utf8_lossy(&payload);
        print(format_args!("[{topic}@{offset}] {payload}"))?;
        requests.write_all(b"ACK\n")?;
        received += 1;
    }
    Ok(())
}

/// Reads a `+OK`, or the refusal in its place.
#[allow(dead_code)]
fn expect_ok(replies: &mut impl BufRead) -> Result<(), Box<dyn Error>> {
    match read_line(replies)?.as_str() {
        "+OK" => Ok(()),
        other => Err(refusal(other)),
    }
}

/// `SUB <topic> <start> manual\n`.
#[allow(dead_code)]
fn subscribe_line(topic: &str, start: StartAt) -> Vec<u8> {
    let start = match start {
        StartAt::Beginning => "beginning".to_owned(),
        StartAt::Current => "current".to_owned(),
        StartAt::From(offset) => format!("from {offset}"),
    };
    format!("SUB {} {start} manual\n", word(topic)).into_bytes()
}

/// `text` as one word of the line protocol, bare or quoted, the way the
/// broker writes topic names (`encode_topic`): any topic name, user or
/// password reads back as it is.
#[allow(dead_code)]
fn word(text: &str) -> String {
    let mut word = Vec::new();
    encode_topic(&mut word, text);
    String::from_utf8_lossy(&word).into_owned()
}

/// The longest reply line read: a `MSG` header with the longest topic
/// name, quoted and escaped, and its numbers.
#[allow(dead_code)]
const MAX_LINE_BYTES: u64 = 2 * 65_535 + 64;

/// Reads one reply line, without its newline.
#[allow(dead_code)]
fn read_line(replies: &mut impl BufRead) -> Result<String, Box<dyn Error>> {
    let mut line = Vec::new();
    replies.take(MAX_LINE_BYTES).read_until(b'\n', &mut line)?;
    match line.pop() {
        Some(b'\n') => Ok(String::from_utf8(line)?),
        _ => Err("the broker closed the connection".into()),
    }
}

/// Reads one delivery, `MSG <topic> <offset> <nbytes>`, its payload and
/// its newline, and returns the offset and the payload (the topic is the
/// one subscribed to).
#[allow(dead_code)]
fn read_message(replies: &mut impl BufRead) -> Result<(u64, Vec<u8>), Box<dyn Error>> {
    let header = read_line(replies)?;
    let Some(MsgLine {
        offset, len: bytes, ..
    }) = parse_msg_line(&header)
    else {
        return Err(refusal(&header));
    };
    let mut payload = Vec::new();
    replies.take(bytes + 1).read_to_end(&mut payload)?;
    match payload.pop() {
        Some(b'\n') if payload.len() as u64 == bytes => Ok((offset, payload)),
        _ => Err("the broker closed the connection".into()),
    }
}

/// A reply that is not what was asked for: `-ERR <reason>`, most likely.
#[allow(dead_code)]
fn refusal(reply: &str) -> Box<dyn Error> {
    match reply.strip_prefix("-ERR ") {
        Some(reason) => format!("refused by the broker: {reason}").into(),
        None => format!("the broker sent {reply:?}").into(),
    }
}

/// The error of a connection to `broker` that failed, with a hint when
/// nothing listens there.
#[allow(dead_code)]
pub fn cannot_connect(broker: &str, error: impl Into<ClientError>) -> Box<dyn Error> {
    let error = error.into();
    let hint = match (&error, broker.rsplit_once(':')) {
        (ClientError::Io(io), Some((_, port))) if io.kind() == io::ErrorKind::ConnectionRefused => {
            let port = match port {
                "3000" => String::new(),
                other => format!(" -- --port {other}"),
            };
            format!(" (is brook running? Start it with cargo run --release{port})")
        }
        _ => String::new(),
    };
    format!("cannot connect to {broker}: {error}{hint}").into()
}

/// Standard output has been closed by its reader, as `subscriber | head -3`
/// does after three lines: the example ends quietly, and successfully.
#[derive(Debug)]
#[allow(dead_code)]
pub struct StdoutClosed;

impl fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("standard output closed")
    }
}

impl Error for StdoutClosed {}

/// Prints one line. Unlike `println!`, which panics when standard output
/// has gone, this returns [`StdoutClosed`] then.
#[allow(dead_code)]
pub fn print(line: fmt::Arguments<'_>) -> Result<(), Box<dyn Error>> {
    let mut out = io::stdout().lock();
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Err(Box::new(StdoutClosed)),
        written => Ok(written?),
    }
}

/// Turns the outcome of an example's work into its exit status, printing
/// the error, if any, as one line. A closed standard output is no error:
/// whoever read it has what they wanted.
#[allow(dead_code)]
pub fn exit_status(program: &str, outcome: Result<(), Box<dyn Error>>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.is::<StdoutClosed>() => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{program}: {error}");
            ExitCode::FAILURE
        }
    }
}
