//! The shell scripts in `scripts/`, run as a user runs them (`sh
//! scripts/publish.sh ...`, with `BROOK_HOST` and `BROOK_PORT`) against a
//! broker started in this test on an ephemeral port of 127.0.0.1. What they
//! print is checked byte for byte. The scripts need `nc` from
//! netcat-openbsd; without it these tests say so and pass, unless
//! `BROOK_REQUIRE_NC` is set (see [`nc_ready`]).
//!
//! Nothing here sleeps. A script that runs to the end is waited for under a
//! deadline, and killed if it runs past it; a subscriber's output is read
//! line by line, each line under a deadline. Every script runs in a process
//! group of its own, so that a failed test can kill the script and all its
//! children at once.

mod common;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use brook::server::Broker;

use common::auth::{auth_config, password_line, AuthFile};
use common::broker::{config, start_broker};

/// How long one run of a script may take.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long smoke.sh may take: it starts a broker and runs every script.
const SMOKE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a background script may take to print its next line.
const LINE_TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn publish_sh_prints_an_offset_per_message() {
    let Some(broker) = broker_for_scripts() else {
        return;
    };
    let addr = broker.local_addr();

    let published = run(
        addr,
        "publish.sh",
        &["orders", "first order", "second order"],
    );
    assert_output(&published, Some(0), "+OK 0\n+OK 1\n", "");

    let again = run(addr, "publish.sh", &["orders", "third order"]);
    assert_output(&again, Some(0), "+OK 2\n", "");
}

#[test]
fn publish_sh_passes_on_an_error_and_exits_1() {
    let Some(broker) = broker_for_scripts() else {
        return;
    };
    let addr = broker.local_addr();

    // The broker answers each PUB in order; the empty one is refused.
    let published = run(addr, "publish.sh", &["t", "one", "", "two"]);
    assert_output(
        &published,
        Some(1),
        "+OK 0\n+OK 1\n",
        "-ERR missing message\n",
    );
}

#[test]
fn binary_publish_sh_then_pull_sh_shows_the_message() {
    let Some(broker) = broker_for_scripts() else {
        return;
    };
    let addr = broker.local_addr();

    // Non-ASCII topic and payload: the length prefixes must count bytes.
    let published = run(addr, "binary-publish.sh", &["café", "héllo, wörld"]);
    assert_output(&published, Some(0), "", "");
    let pulled = run(addr, "pull.sh", &["café"]);
    assert_output(&pulled, Some(0), "[café@0] héllo, wörld\n", "pulled 1\n");

    // 70,000 bytes: a payload length with a non-zero third byte.
    let big = "z".repeat(70_000);
    let published = run(addr, "binary-publish.sh", &["big", &big]);
    assert_output(&published, Some(0), "", "");
    let pulled = run(addr, "pull.sh", &["big"]);
    assert_output(&pulled, Some(0), &format!("[big@0] {big}\n"), "pulled 1\n");
}

#[test]
fn binary_publish_sh_shows_the_brokers_error() {
    let Some(broker) = broker_for_scripts() else {
        return;
    };
    let addr = broker.local_addr();

    // A topic name that is not UTF-8 gets an Error status back.
    let mut command = script(addr, "binary-publish.sh", &[]);
    command.arg(OsStr::from_bytes(b"bad\xff"));
    command.arg("message");
    let refused = finish(command, "binary-publish.sh", SCRIPT_TIMEOUT);
    assert_output(
        &refused,
        Some(1),
        "",
        "binary-publish.sh: the broker refused the message: topic name is not valid UTF-8\n",
    );
}

#[test]
fn the_scripts_log_in_with_brook_user_and_brook_password() {
    if !nc_ready() {
        return;
    }
    let ann = format!(
        "user ann\n{}  publish notes\n  subscribe notes\n",
        password_line("pass word")
    );
    let auth = AuthFile::new(&ann);
    let broker = start_broker(&auth_config(&auth));
    let addr = broker.local_addr();
    let ann_command = |name: &str, args: &[&str], password: &str| {
        let mut command = script(addr, name, args);
        command
            .env("BROOK_USER", "ann")
            .env("BROOK_PASSWORD", password);
        command
    };
    let as_ann = |name: &str, args: &[&str], password: &str| {
        finish(ann_command(name, args, password), name, SCRIPT_TIMEOUT)
    };

    let published = as_ann("publish.sh", &["notes", "hello"], "pass word");
    assert_output(&published, Some(0), "+OK 0\n", "");
    let published = as_ann("binary-publish.sh", &["notes", "binary"], "pass word");
    assert_output(&published, Some(0), "", "");
    let pulled = as_ann("pull.sh", &["notes"], "pass word");
    assert_output(
        &pulled,
        Some(0),
        "[notes@0] hello\n[notes@1] binary\n",
        "pulled 2\n",
    );
    let subscribe = ann_command("subscribe.sh", &["notes", "beginning"], "pass word");
    let subscriber = Background::run(subscribe, "subscribe.sh");
    subscriber.expect_stderr("subscribed to notes");
    subscriber.expect_stdout("[notes@0] hello");
    subscriber.expect_stdout("[notes@1] binary");
    subscriber.terminate();

    let wrong = as_ann("publish.sh", &["notes", "hello"], "guess");
    assert_output(
        &wrong,
        Some(1),
        "",
        "publish.sh: cannot log in as ann: invalid credentials\n",
    );
    let anonymous = run(addr, "pull.sh", &["notes"]);
    assert_output(
        &anonymous,
        Some(1),
        "",
        "-ERR authentication required: send AUTH <user> <password> first\n",
    );
}

#[test]
fn pull_sh_takes_at_most_max_and_each_message_once() {
    let Some(broker) = broker_for_scripts() else {
        return;
    };
    let addr = broker.local_addr();
    let published = run(addr, "publish.sh", &["jobs", "m0", "m1", "m2"]);
    assert_output(&published, Some(0), "+OK 0\n+OK 1\n+OK 2\n", "");

    let first = run(addr, "pull.sh", &["jobs", "2"]);
    assert_output(&first, Some(0), "[jobs@0] m0\n[jobs@1] m1\n", "pulled 2\n");
    let rest = run(addr, "pull.sh", &["jobs"]);
    assert_output(&rest, Some(0), "[jobs@2] m2\n", "pulled 1\n");
    let none = run(addr, "pull.sh", &["jobs"]);
    assert_output(&none, Some(0), "", "pulled 0\n");
}

#[test]
fn quoted_topics_and_multi_line_messages_round_trip() {
    let Some(broker) = broker_for_scripts() else {
        return;
    };
    let addr = broker.local_addr();

    // A topic with a space is sent quoted, and so is one with `"` and `\`.
    // A message with a newline, or a leading space, goes as PUBN.
    let published = run(
        addr,
        "publish.sh",
        &["two words", "line one\nline two", " leading space"],
    );
    assert_output(&published, Some(0), "+OK 0\n+OK 1\n", "");
    let pulled = run(addr, "pull.sh", &["two words"]);
    assert_output(
        &pulled,
        Some(0),
        "[\"two words\"@0] line one\nline two\n[\"two words\"@1]  leading space\n",
        "pulled 2\n",
    );

    let published = run(addr, "publish.sh", &["say \"hi\"\\now", "quoted"]);
    assert_output(&published, Some(0), "+OK 0\n", "");
    let pulled = run(addr, "pull.sh", &["say \"hi\"\\now"]);
    assert_output(
        &pulled,
        Some(0),
        "[\"say \\\"hi\\\"\\\\now\"@0] quoted\n",
        "pulled 1\n",
    );
}

#[test]
fn subscribe_sh_beginning_shows_earlier_messages_then_new_ones() {
    let Some(broker) = broker_for_scripts() else {
        return;
    };
    let addr = broker.local_addr();
    let published = run(addr, "publish.sh", &["feed", "early 0", "early 1"]);
    assert_output(&published, Some(0), "+OK 0\n+OK 1\n", "");

    let subscriber = Background::start(addr, "subscribe.sh", &["feed", "beginning"]);
    subscriber.expect_stderr("subscribed to feed");
    subscriber.expect_stdout("[feed@0] early 0");
    subscriber.expect_stdout("[feed@1] early 1");

    let published = run(addr, "publish.sh", &["feed", "late"]);
    assert_output(&published, Some(0), "+OK 2\n", "");
    subscriber.expect_stdout("[feed@2] late");
    let published = run(addr, "binary-publish.sh", &["feed", "binary late"]);
    assert_output(&published, Some(0), "", "");
    subscriber.expect_stdout("[feed@3] binary late");

    // Its trap passes SIGTERM on: it exits 130, and nc with it (nc holds
    // the script's stderr, so stderr closing shows that nc is gone).
    let status = subscriber.terminate();
    assert_eq!(status.code(), Some(130), "{status}");
}

#[test]
fn subscribe_sh_current_and_from_start_where_they_are_told() {
    let Some(broker) = broker_for_scripts() else {
        return;
    };
    let addr = broker.local_addr();
    let published = run(addr, "publish.sh", &["feed", "m0", "m1"]);
    assert_output(&published, Some(0), "+OK 0\n+OK 1\n", "");

    // Current is the default: only messages published after the +OK.
    let current = Background::start(addr, "subscribe.sh", &["feed"]);
    current.expect_stderr("subscribed to feed");
    let from = Background::start(addr, "subscribe.sh", &["feed", "from", "1"]);
    from.expect_stderr("subscribed to feed");
    from.expect_stdout("[feed@1] m1");

    let published = run(addr, "publish.sh", &["feed", "m2"]);
    assert_output(&published, Some(0), "+OK 2\n", "");
    current.expect_stdout("[feed@2] m2");
    from.expect_stdout("[feed@2] m2");

    // When the broker goes, the subscribers end by themselves.
    drop(broker);
    for subscriber in [current, from] {
        subscriber.expect_stderr("subscribe.sh: the broker closed the connection");
        let status = subscriber.finish();
        assert_eq!(status.code(), Some(0), "{status}");
    }
}

#[test]
fn subscribe_sh_follows_a_pattern_bare_or_quoted() {
    let Some(broker) = broker_for_scripts() else {
        return;
    };
    let addr = broker.local_addr();
    let published = run(addr, "publish.sh", &["orders.eu", "early eu"]);
    assert_output(&published, Some(0), "+OK 0\n", "");

    // `orders.*` goes on the line bare: `SUB orders.* beginning`. It covers
    // the topic that exists, and one created after it, from its first
    // message.
    let bare = Background::start(addr, "subscribe.sh", &["orders.*", "beginning"]);
    bare.expect_stderr("subscribed to orders.*");
    bare.expect_stdout("[orders.eu@0] early eu");
    let published = run(addr, "publish.sh", &["orders.us", "new us"]);
    assert_output(&published, Some(0), "+OK 0\n", "");
    bare.expect_stdout("[orders.us@0] new us");

    // With a space in it, the script quotes the pattern (`SUB "my
    // orders.*" current`), and the broker reads a quoted pattern as the
    // same pattern: both topics, created after it, reach it.
    let quoted = Background::start(addr, "subscribe.sh", &["my orders.*"]);
    quoted.expect_stderr("subscribed to my orders.*");
    for (topic, message) in [("my orders.eu", "eu"), ("my orders.us", "us")] {
        let published = run(addr, "publish.sh", &[topic, message]);
        assert_output(&published, Some(0), "+OK 0\n", "");
        quoted.expect_stdout(&format!("[\"{topic}\"@0] {message}"));
    }

    for subscriber in [bare, quoted] {
        let status = subscriber.terminate();
        assert_eq!(status.code(), Some(130), "{status}");
    }
}

#[test]
fn subscribe_sh_passes_on_a_refused_subscription_and_exits_1() {
    let Some(broker) = broker_for_scripts() else {
        return;
    };
    let addr = broker.local_addr();

    // An offset beyond u64: the broker says `-ERR bad offset`, and the
    // script exits (stopping its nc, which would otherwise stay connected).
    let refused = run(
        addr,
        "subscribe.sh",
        &["feed", "from", "99999999999999999999999"],
    );
    assert_output(&refused, Some(1), "", "-ERR bad offset\n");
}

#[test]
fn scripts_say_when_nothing_listens() {
    if !nc_ready() {
        return;
    }
    // A port that was free a moment ago: nothing listens there now.
    let addr = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port");
    let absent = format!(
        "is brook running there? Start it with cargo run --release -- --port {}",
        addr.port()
    );
    let no_reply = format!("no reply from 127.0.0.1:{}: {absent}\n", addr.port());

    for (name, args) in [
        ("publish.sh", &["t", "m"][..]),
        ("pull.sh", &["t"]),
        ("subscribe.sh", &["t"]),
    ] {
        let output = run(addr, name, args);
        assert_output(&output, Some(1), "", &format!("{name}: {no_reply}"));
    }
    let output = run(addr, "binary-publish.sh", &["t", "m"]);
    assert_output(
        &output,
        Some(1),
        "",
        &format!(
            "binary-publish.sh: cannot connect to 127.0.0.1:{}: {absent}\n",
            addr.port()
        ),
    );
}

#[test]
fn scripts_show_their_usage_when_called_wrongly() {
    if !nc_ready() {
        return;
    }
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    for (name, args, usage) in [
        ("publish.sh", &["t"][..], "TOPIC MESSAGE..."),
        ("binary-publish.sh", &["t"], "TOPIC MESSAGE"),
        ("pull.sh", &["t", "many"], "TOPIC [MAX]"),
        (
            "subscribe.sh",
            &["t", "from", "x"],
            "TOPIC [beginning | current | from N]",
        ),
        (
            "subscribe.sh",
            &["t", "later"],
            "TOPIC [beginning | current | from N]",
        ),
    ] {
        let output = run(addr, name, args);
        assert_output(&output, Some(2), "", &format!("usage: {name} {usage}\n"));
    }
}

#[test]
fn smoke_sh_passes() {
    if !nc_ready() {
        return;
    }
    let mut command = Command::new("sh");
    command
        .arg(script_path("smoke.sh"))
        .env("BROOK_BIN", env!("CARGO_BIN_EXE_brook"));
    let output = finish(command, "smoke.sh", SMOKE_TIMEOUT);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && !stdout.contains("FAIL"),
        "smoke.sh: {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.ends_with(" passed, 0 failed\n"),
        "smoke.sh's last line:\n{stdout}"
    );
}

// ---- Helpers. ----

/// A broker for the scripts to talk to, or `None` (the test then passes
/// without running) if this machine has no suitable `nc`: see
/// [`nc_ready`].
fn broker_for_scripts() -> Option<Broker> {
    nc_ready().then(|| start_broker(&config()))
}

fn script_path(name: &str) -> PathBuf {
    [env!("CARGO_MANIFEST_DIR"), "scripts", name]
        .iter()
        .collect()
}

/// `sh scripts/<name> <args>`, pointed at the broker at `addr`.
fn script(addr: SocketAddr, name: &str, args: &[&str]) -> Command {
    let mut command = Command::new("sh");
    command
        .arg(script_path(name))
        .args(args)
        .env("BROOK_HOST", addr.ip().to_string())
        .env("BROOK_PORT", addr.port().to_string())
        .env_remove("BROOK_USER")
        .env_remove("BROOK_PASSWORD");
    command
}

/// Runs a script to the end and returns what it printed.
fn run(addr: SocketAddr, name: &str, args: &[&str]) -> Output {
    finish(script(addr, name, args), name, SCRIPT_TIMEOUT)
}

/// Whether `nc` is netcat-openbsd's, which the scripts need (for its `-N`).
///
/// Without it these tests cannot run: on a machine that lacks it they say
/// so and pass, so that `cargo test` works on a fresh machine; where
/// `BROOK_REQUIRE_NC` is set, as `.ci/run` sets it after installing
/// netcat-openbsd, they fail instead.
fn nc_ready() -> bool {
    let problem = match Command::new("nc").arg("-h").output() {
        Err(error) => format!("nc is not installed ({error})"),
        Ok(help) => {
            let text = String::from_utf8_lossy(&[help.stdout, help.stderr].concat()).into_owned();
            if text.contains("-N") {
                return true;
            }
            format!("this nc is not netcat-openbsd's (no -N):\n{text}")
        }
    };
    let advice = "the script tests need netcat-openbsd (apt-get install netcat-openbsd)";
    assert!(
        std::env::var_os("BROOK_REQUIRE_NC").is_none(),
        "{advice}: {problem}"
    );
    // Straight to stderr, past the test harness's capture, and once: a
    // skipped test passes, and its output would otherwise never be seen.
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        let _ = writeln!(std::io::stderr(), "scripts: skipped: {advice}: {problem}");
    });
    false
}

/// Starts `command` in a process group of its own, with piped output.
fn spawn(mut command: Command, what: &str) -> Child {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {what}: {error}"))
}

/// Sends `signal` to every process of the group of `child` (which leads
/// it). Through the shell's `kill`: the standard library only has SIGKILL,
/// and only for the child itself.
fn signal_group(child: &Child, signal: &str) {
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -{signal} -{} 2>/dev/null", child.id()))
        .status();
}

/// Reads `pipe` to its end on a thread of its own, and sends the bytes.
fn read_to_end(mut pipe: impl Read + Send + 'static) -> Receiver<Vec<u8>> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        let _ = sender.send(bytes);
    });
    receiver
}

/// Runs `command` to the end and returns what it printed. If it is not done
/// within `timeout`, kills it and all its children and fails the test.
fn finish(command: Command, what: &str, timeout: Duration) -> Output {
    let mut child = spawn(command, what);
    let stdout = read_to_end(child.stdout.take().expect("piped stdout"));
    let stderr = read_to_end(child.stderr.take().expect("piped stderr"));

    // The pipes end when the script and everything it started have exited.
    let deadline = Instant::now() + timeout;
    let wait = |pipe: &Receiver<Vec<u8>>| {
        pipe.recv_timeout(deadline.saturating_duration_since(Instant::now()))
    };
    match (wait(&stdout), wait(&stderr)) {
        (Ok(stdout), Ok(stderr)) => {
            let status = child.wait().expect("wait for the script");
            Output {
                status,
                stdout,
                stderr,
            }
        }
        _ => {
            signal_group(&child, "KILL");
            let _ = child.wait();
            let printed = |pipe: Receiver<Vec<u8>>| {
                let bytes = pipe.recv_timeout(LINE_TIMEOUT).unwrap_or_default();
                String::from_utf8_lossy(&bytes).into_owned()
            };
            panic!(
                "{what} did not finish within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                printed(stdout),
                printed(stderr)
            );
        }
    }
}

fn assert_output(output: &Output, code: Option<i32>, stdout: &str, stderr: &str) {
    let got = (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert_eq!(
        got,
        (code, stdout.into(), stderr.into()),
        "(exit code, stdout, stderr)"
    );
}

/// A script running in the background, whose output is read line by line.
/// Dropping it kills the script and everything it started.
struct Background {
    child: Child,
    name: String,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
}

impl Background {
    fn start(addr: SocketAddr, name: &str, args: &[&str]) -> Background {
        Background::run(script(addr, name, args), name)
    }

    /// Runs `command`, the script `name`, in the background.
    fn run(command: Command, name: &str) -> Background {
        let mut child = spawn(command, name);
        let stdout = lines(child.stdout.take().expect("piped stdout"));
        let stderr = lines(child.stderr.take().expect("piped stderr"));
        Background {
            child,
            name: name.to_owned(),
            stdout,
            stderr,
        }
    }

    fn expect_stdout(&self, expected: &str) {
        self.expect_line(&self.stdout, "stdout", expected);
    }

    fn expect_stderr(&self, expected: &str) {
        self.expect_line(&self.stderr, "stderr", expected);
    }

    fn expect_line(&self, pipe: &Receiver<String>, which: &str, expected: &str) {
        match pipe.recv_timeout(LINE_TIMEOUT) {
            Ok(line) => assert_eq!(line, expected, "{} {which}", self.name),
            Err(RecvTimeoutError::Timeout) => panic!(
                "{} printed no line on {which} within {LINE_TIMEOUT:?}; expected {expected:?}",
                self.name
            ),
            Err(RecvTimeoutError::Disconnected) => {
                panic!("{} closed its {which}; expected {expected:?}", self.name)
            }
        }
    }

    /// Sends SIGTERM to the script's shell alone, and waits for it to end.
    fn terminate(self) -> ExitStatus {
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -TERM {}", self.child.id()))
            .status();
        self.finish()
    }

    /// Waits for the script, and every process it started, to end (both its
    /// pipes closed, with nothing more printed) and returns its status.
    fn finish(mut self) -> ExitStatus {
        for (pipe, which) in [(&self.stdout, "stdout"), (&self.stderr, "stderr")] {
            match pipe.recv_timeout(LINE_TIMEOUT) {
                Err(RecvTimeoutError::Disconnected) => {}
                Ok(line) => panic!("{} printed {line:?} on {which}", self.name),
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{}'s {which} is still open after {LINE_TIMEOUT:?}",
                    self.name
                ),
            }
        }
        self.child.wait().expect("wait for the script")
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            signal_group(&self.child, "KILL");
            let _ = self.child.wait();
        }
    }
}

/// Reads `pipe` line by line on a thread of its own, and sends each line
/// (without its `\n`); the channel closes at the end of the pipe.
fn lines(pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}
