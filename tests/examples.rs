//! The example programs, run as a user runs them: as separate processes, with
//! their flags, against a broker started in this test on an ephemeral port of
//! 127.0.0.1. What they print is checked byte for byte.
//!
//! Every child process is waited for with a deadline and killed if it runs
//! past it, so a hung example fails its test instead of hanging the suite.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use common::auth::{auth_config, password_line, AuthFile};
use common::broker::{config, start_broker};
use common::client::publish_all;

/// How long one run of an example may take.
const EXAMPLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long building the examples may take (it may wait for another cargo).
const BUILD_TIMEOUT: Duration = Duration::from_secs(600);

const EXAMPLES: [&str; 4] = ["publisher", "subscriber", "producer", "consumer"];

#[test]
fn producer_then_consumer_shows_the_message() {
    let broker = start_broker(&config());
    let port = broker.local_addr().port().to_string();

    let produced = run_example(
        "producer",
        &[
            "--topic",
            "orders",
            "--message",
            "first order",
            "--port",
            &port,
        ],
    );
    assert_success(&produced);
    assert_eq!(stdout(&produced), "published [orders@0] first order\n");

    // The consumer starts at the beginning, so it shows the message whether
    // the broker stored it before or after the consumer subscribed.
    let consumed = run_example(
        "consumer",
        &["--topic", "orders", "--count", "1", "--port", &port],
    );
    assert_success(&consumed);
    assert_eq!(stdout(&consumed), "[orders@0] first order\n");
}

#[test]
fn publisher_then_subscriber_replays_from_an_offset() {
    let broker = start_broker(&config());
    let port = broker.local_addr().port().to_string();

    let published = run_example("publisher", &["--count", "2", "--port", &port]);
    assert_success(&published);
    assert_eq!(
        stdout(&published),
        "published [topic-a@0] message 0\npublished [topic-a@1] message 1\n"
    );
    // A second run counts from 0 again; the offsets go on.
    let again = run_example("publisher", &["--count", "1", "--port", &port]);
    assert_success(&again);
    assert_eq!(stdout(&again), "published [topic-a@2] message 0\n");

    // From offset 1, printed with its offset: the publisher confirmed each
    // message stored, so the broker has it.
    let from_one = run_example(
        "subscriber",
        &["--consume-from", "1", "--count", "1", "--port", &port],
    );
    assert_success(&from_one);
    assert_eq!(stdout(&from_one), "[topic-a@1] message 1\n");

    // Without --consume-from: from the beginning, in order.
    let from_start = run_example("subscriber", &["--count", "3", "--port", &port]);
    assert_success(&from_start);
    assert_eq!(
        stdout(&from_start),
        "[topic-a@0] message 0\n[topic-a@1] message 1\n[topic-a@2] message 0\n"
    );
}

#[test]
fn the_examples_log_in_with_flags_or_the_environment() {
    let ann = format!(
        "user ann\n{}  publish orders\n  subscribe orders\n",
        password_line("s3cret")
    );
    let auth = AuthFile::new(&ann);
    let broker = start_broker(&auth_config(&auth));
    let port = broker.local_addr().port().to_string();
    let produce = ["--topic", "orders", "--message", "hello", "--port", &port];

    let refused = run_example("producer", &produce);
    assert_failure_says(&refused, "permission denied: publish orders");
    let wrong = run_example(
        "producer",
        &[&produce[..], &["--user", "ann", "--password", "x"]].concat(),
    );
    assert_failure_says(&wrong, "invalid credentials");

    let produced = run_example(
        "producer",
        &[&produce[..], &["--user", "ann", "--password", "s3cret"]].concat(),
    );
    assert_success(&produced);
    assert_eq!(stdout(&produced), "published [orders@0] hello\n");

    let env = [("BROOK_USER", "ann"), ("BROOK_PASSWORD", "s3cret")];
    let consume = ["--topic", "orders", "--count", "1", "--port", &port];
    let consumed = run_example_with_env("consumer", &consume, &env);
    assert_success(&consumed);
    assert_eq!(stdout(&consumed), "[orders@0] hello\n");
    let anonymous = run_example("consumer", &consume);
    assert_failure_says(&anonymous, "authentication required");
}

/// Asserts that an example failed, and said `words` on its stderr.
fn assert_failure_says(output: &Output, words: &str) {
    assert!(!output.status.success(), "{}", stdout(output));
    assert!(stderr(output).contains(words), "{}", stderr(output));
}

#[test]
fn a_subscriber_whose_output_is_closed_exits_quietly() {
    let broker = start_broker(&config());
    let port = broker.local_addr().port().to_string();
    publish_all(broker.local_addr(), &[("topic-a", b"message 0")]);

    // `subscriber | head -1`: the reader takes one line and goes.
    let mut child = Command::new(example_path("subscriber"))
        .args(["--port", &port])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start subscriber");
    let (line_read, first_line) = mpsc::channel();
    let stdout = child.stdout.take().expect("piped stdout");
    thread::spawn(move || {
        let mut first = String::new();
        let _ = BufReader::new(stdout).read_line(&mut first);
        // The pipe's read end is closed (dropped) before the test goes on.
        let _ = line_read.send(first);
    });
    assert_eq!(
        first_line.recv_timeout(EXAMPLE_TIMEOUT).unwrap(),
        "[topic-a@0] message 0\n"
    );
    // The next message finds its standard output closed.
    publish_all(broker.local_addr(), &[("topic-a", b"message 1")]);
    let output = wait_with_deadline(child, EXAMPLE_TIMEOUT, "subscriber");
    assert_success(&output);
    assert_eq!(stderr(&output), "", "no panic, no error");
}

#[test]
fn a_broker_that_is_not_there_is_named_with_a_hint() {
    // A port nothing listens on: this test's, closed again.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap()
        .port()
        .to_string();
    for (name, args) in [
        ("subscriber", &["--port", &port][..]),
        (
            "producer",
            &["--topic", "t", "--message", "m", "--port", &port],
        ),
    ] {
        let output = run_example(name, args);
        assert_eq!(output.status.code(), Some(1), "{name}");
        let expected = format!(
            "{name}: cannot connect to 127.0.0.1:{port}: Connection refused (os error 111) \
             (is brook running? Start it with cargo run --release -- --port {port})\n"
        );
        assert_eq!(stderr(&output), expected);
    }
}

#[test]
fn every_example_has_help_and_names_its_mistakes() {
    for name in EXAMPLES {
        let help = run_example(name, &["--help"]);
        assert_success(&help);
        let text = stdout(&help);
        for expected in [&format!("Usage: {name}") as &str, "--host", "--port"] {
            assert!(text.contains(expected), "{name} --help:\n{text}");
        }

        assert_usage_error(name, &["--bogus"], "unknown flag '--bogus'");
    }
    assert_usage_error("consumer", &["--port", "1"], "--topic is required");
    assert_usage_error(
        "producer",
        &["--topic", "orders", "--message", ""],
        "--message '': expected at least one byte",
    );
    assert_usage_error(
        "subscriber",
        &["--port", "70000"],
        "--port '70000': expected a port number from 1 to 65535",
    );
    assert_usage_error("publisher", &["--count"], "--count needs a value");
}

/// Runs an example with a mistake on its command line: it must exit with
/// status 2 and say what was wrong, and nothing else, on stderr.
fn assert_usage_error(name: &str, args: &[&str], message: &str) {
    let output = run_example(name, args);
    assert_eq!(output.status.code(), Some(2), "{name} {args:?}");
    assert_eq!(
        stderr(&output),
        format!("{name}: {message}\nTry '{name} --help'.\n"),
        "{name} {args:?}"
    );
    assert_eq!(stdout(&output), "", "{name} {args:?}");
}

fn run_example(name: &str, args: &[&str]) -> Output {
    run_example_with_env(name, args, &[])
}

/// Runs example `name` with `args` and the environment variables `env`.
fn run_example_with_env(name: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(example_path(name));
    command.args(args);
    command
        .env_remove("BROOK_USER")
        .env_remove("BROOK_PASSWORD");
    command.envs(env.iter().copied());
    run(command, EXAMPLE_TIMEOUT, name)
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "{}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        stdout(output),
        stderr(output)
    );
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Where the compiled example `name` is.
fn example_path(name: &str) -> PathBuf {
    static EXAMPLES_DIR: OnceLock<PathBuf> = OnceLock::new();
    EXAMPLES_DIR
        .get_or_init(build_examples)
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// Builds the examples and returns the directory they are in.
///
/// A plain `cargo test` builds them before running any test, but
/// `cargo test --test examples` does not, and a binary left over from an
/// earlier build may be stale. So this asks cargo to build them, with the
/// profile this test was built with, into the same target directory; when
/// nothing has changed that takes a fraction of a second.
fn build_examples() -> PathBuf {
    // This test runs as target/<profile>/deps/examples-<hash>, and cargo puts
    // examples in target/<profile>/examples.
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps");
    let target_dir = profile_dir.parent().expect("a target directory");
    let profile = match profile_dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") => "dev",
        Some(other) => other,
        None => panic!("no profile directory in {}", exe.display()),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let mut command = Command::new(cargo);
    command
        .args(["build", "--quiet", "--examples", "--profile", profile])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    let output = run(command, BUILD_TIMEOUT, "cargo build --examples");
    assert_success(&output);
    let dir = profile_dir.join("examples");
    for name in EXAMPLES {
        let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
        assert!(path.exists(), "{} was not built", path.display());
    }
    dir
}

/// Runs `command` to the end and returns what it printed. If it has not
/// finished within `timeout`, kills it and fails the test.
fn run(mut command: Command, timeout: Duration, what: &str) -> Output {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    wait_with_deadline(child, timeout, what)
}

/// Waits for `child` to exit and returns what it printed on the pipes it
/// still has (a pipe the test took reads as empty). If it has not
/// finished within `timeout`, kills it and fails the test.
fn wait_with_deadline(mut child: Child, timeout: Duration, what: &str) -> Output {
    // One thread per pipe reads it to the end, which comes when the child
    // exits (or is killed), and reports on the channel.
    let (done, pipes) = mpsc::channel();
    let pipes_left: Vec<(usize, Box<dyn Read + Send>)> = [
        child
            .stdout
            .take()
            .map(|pipe| (0, Box::new(pipe) as Box<dyn Read + Send>)),
        child
            .stderr
            .take()
            .map(|pipe| (1, Box::new(pipe) as Box<dyn Read + Send>)),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut open = pipes_left.len();
    for (index, mut pipe) in pipes_left {
        let done = done.clone();
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            let _ = done.send((index, bytes));
        });
    }
    drop(done);

    let deadline = Instant::now() + timeout;
    let mut captured = [Vec::new(), Vec::new()];
    while open > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        match pipes.recv_timeout(left) {
            Ok((index, bytes)) => {
                captured[index] = bytes;
                open -= 1;
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                // Killed, its pipes close: collect what it printed.
                while let Ok((index, bytes)) = pipes.recv_timeout(Duration::from_secs(5)) {
                    captured[index] = bytes;
                }
                panic!(
                    "{what} did not finish within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                    String::from_utf8_lossy(&captured[0]),
                    String::from_utf8_lossy(&captured[1])
                );
            }
        }
    }
    let status = child.wait().expect("wait for the child");
    let [stdout, stderr] = captured;
    Output {
        status,
        stdout,
        stderr,
    }
}
