//! The `brook` binary as the person who runs it sees it: a start that
//! fails says why and which flag to change, naming the absolute path; the
//! start-up lines say where the topics are and what each holds; and the log
//! says why a silent connection was closed, and, at debug, which protocol a
//! connection speaks and what it published.
//!
//! Each test runs the real binary as a child process on port 0 (or on a
//! port this test holds, to be refused), and waits for its log lines with
//! a deadline.

mod common;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::line::Line;
use common::process::BrookProcess;
use common::temp::TempDir;
use common::WAIT;

/// How long a refused start may take: the data directory's lock is waited
/// for up to two seconds before it is refused.
const REFUSAL: Duration = Duration::from_secs(15);

/// `brook` with `args`, run in `dir`.
fn brook(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_brook"));
    command.current_dir(dir).args(args);
    command
}

/// Runs a `brook` that must not start, and returns what it wrote.
#[track_caller]
fn refused_start(command: Command) -> String {
    match BrookProcess::start(command, REFUSAL) {
        Ok(process) => panic!("brook started:\n{}", process.stderr()),
        Err(stderr) => stderr,
    }
}

#[track_caller]
fn assert_contains(text: &str, expected: &[&str]) {
    for part in expected {
        assert!(text.contains(part), "no {part:?} in:\n{text}");
    }
}

#[test]
fn a_port_in_use_suggests_another_brook_and_the_flags_for_another_port() {
    let dir = TempDir::new("port-in-use");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let stderr = refused_start(brook(
        dir.path(),
        &["--in-memory", "--port", &port.to_string()],
    ));
    assert_contains(
        &stderr,
        &[
            &format!("cannot listen on 127.0.0.1:{port}: Address already in use"),
            &format!(
                "Is another brook running? Start this one on another port with --port {} \
                 (after -- with cargo run), or --addr HOST:PORT",
                port + 1
            ),
        ],
    );
}

#[test]
fn a_data_directory_in_use_names_its_lock_and_the_flags_for_another() {
    let dir = TempDir::new("locked");
    let first = BrookProcess::start(brook(dir.path(), &["--port", "0"]), WAIT).unwrap();
    let stderr = refused_start(brook(dir.path(), &["--port", "0"]));
    let data = dir.path().join("data");
    assert_contains(
        &stderr,
        &[&format!(
            "cannot use the data directory {}: another broker is using this data directory \
             (it holds {}). Start with --data-dir PATH to keep topics elsewhere, or \
             --in-memory to keep them in memory only",
            data.display(),
            data.join("lock").display()
        )],
    );
    drop(first);
}

#[test]
fn a_data_directory_that_is_a_file_is_named_not_the_address() {
    let dir = TempDir::new("file-as-data");
    std::fs::write(dir.path().join("afile"), "not a directory").unwrap();
    let stderr = refused_start(brook(dir.path(), &["--port", "0", "--data-dir", "afile"]));
    let afile = dir.path().join("afile");
    assert_contains(
        &stderr,
        &[
            &format!(
                "cannot use the data directory {}: {}: Not a directory",
                afile.display(),
                afile.join("topics").display()
            ),
            "Start with --data-dir PATH",
        ],
    );
    assert!(!stderr.contains("cannot listen"), "{stderr}");
}

#[test]
fn the_start_up_lines_name_the_absolute_data_dir_and_what_each_topic_holds() {
    let dir = TempDir::new("start-up");
    let data = dir.path().join("data");
    let mut brook_process = BrookProcess::start(brook(dir.path(), &["--port", "0"]), WAIT).unwrap();
    brook_process.wait_for_log(
        &format!("creating the data directory {}", data.display()),
        WAIT,
    );
    brook_process.wait_for_log(
        &format!("(topics in {}, --fsync batch", data.display()),
        WAIT,
    );
    assert!(
        brook_process.addr.ip().is_loopback(),
        "--port keeps the default host: {}",
        brook_process.addr
    );
    let mut client = Line::connect(brook_process.addr);
    for (offset, text) in ["one", "two", "three"].iter().enumerate() {
        assert_eq!(
            client.ask(&format!("PUB notes {text}")),
            format!("+OK {offset}")
        );
    }
    assert_eq!(client.ask("PUB single one"), "+OK 0");
    drop(client);
    brook_process.signal("TERM");
    assert!(brook_process.wait_for_exit(WAIT).success());

    let restarted = BrookProcess::start(brook(dir.path(), &["--port", "0"]), WAIT).unwrap();
    restarted.wait_for_log("topic \"notes\": 3 messages, next offset 3", WAIT);
    restarted.wait_for_log("topic \"single\": 1 message, next offset 1", WAIT);
    assert!(
        !restarted.stderr().contains("creating the data directory"),
        "it exists now:\n{}",
        restarted.stderr()
    );
}

#[test]
fn a_flag_mistake_names_the_flag_and_how_to_get_help_with_cargo() {
    let dir = TempDir::new("bad-flag");
    let stderr = refused_start(brook(dir.path(), &["--port", "0", "--bogus"]));
    assert_contains(
        &stderr,
        &["brook: unknown flag '--bogus'\n\
           Try 'brook --help' (with cargo: cargo run --release -- --help).\n"],
    );
}

#[test]
fn a_silent_connection_is_closed_and_the_log_says_why() {
    let dir = TempDir::new("silent");
    let args = ["--in-memory", "--port", "0", "--handshake-timeout", "1s"];
    let brook_process = BrookProcess::start(brook(dir.path(), &args), WAIT).unwrap();
    let mut silent = TcpStream::connect(brook_process.addr).unwrap();
    silent.set_read_timeout(Some(WAIT)).unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(silent.read(&mut byte).unwrap(), 0, "the broker closes it");
    brook_process.wait_for_log(
        "closed: it sent nothing within --handshake-timeout (1s) of connecting",
        WAIT,
    );
}

#[test]
fn debug_logs_name_the_protocol_and_each_publish() {
    let dir = TempDir::new("debug");
    let mut command = brook(dir.path(), &["--in-memory", "--port", "0"]);
    command.env("RUST_LOG", "debug");
    let brook_process = BrookProcess::start(command, WAIT).unwrap();
    let mut client = Line::connect(brook_process.addr);
    assert_eq!(client.ask("PUB notes hello"), "+OK 0");
    brook_process.wait_for_log("speaks the line protocol", WAIT);
    brook_process.wait_for_log("published 5 bytes to \"notes\" at offset 0", WAIT);
}
