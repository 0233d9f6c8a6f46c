//! The example programs, run as a user runs them: as separate processes, with
//! their flags, against a broker started in this test on an ephemeral port of
//! 127.0.0.1. What they print is checked byte for byte.
//!
//! Every child process is waited for with a deadline and killed if it runs
//! past it, so a hung example fails its test instead of hanging the suite.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use common::broker::{config, start_broker};

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
    assert_eq!(stdout(&produced), "published to orders: first order\n");

    // The consumer starts at the beginning, so it shows the message whether
    // the broker stored it before or after the consumer subscribed.
    let consumed = run_example(
        "consumer",
        &["--topic", "orders", "--count", "1", "--port", &port],
    );
    assert_success(&consumed);
    assert_eq!(stdout(&consumed), "[orders] first order\n");
}

#[test]
fn publisher_then_subscriber_replays_from_an_offset() {
    let broker = start_broker(&config());
    let port = broker.local_addr().port().to_string();

    let published = run_example("publisher", &["--count", "2", "--port", &port]);
    assert_success(&published);
    assert_eq!(
        stdout(&published),
        "published to topic-a: message 0\npublished to topic-a: message 1\n"
    );

    // From offset 1: if the broker has not stored it yet, the subscriber
    // waits for it, and never sees offset 0.
    let from_one = run_example(
        "subscriber",
        &["--consume-from", "1", "--count", "1", "--port", &port],
    );
    assert_success(&from_one);
    assert_eq!(stdout(&from_one), "[topic-a] message 1\n");

    // Without --consume-from: from the beginning, in order.
    let from_start = run_example("subscriber", &["--count", "2", "--port", &port]);
    assert_success(&from_start);
    assert_eq!(
        stdout(&from_start),
        "[topic-a] message 0\n[topic-a] message 1\n"
    );
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
    let mut command = Command::new(example_path(name));
    command.args(args);
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
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));

    // One thread per pipe reads it to the end, which comes when the child
    // exits (or is killed), and reports on the channel.
    let (done, pipes) = mpsc::channel();
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    for (index, mut pipe) in [
        (0, Box::new(stdout) as Box<dyn Read + Send>),
        (1, Box::new(stderr)),
    ] {
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
    let mut open = 2;
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
