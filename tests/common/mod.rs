//! Shared helpers for the integration tests, one module per concern. Each
//! test file declares `mod common;` and imports what it uses by name:
//!
//! - `broker`: the configurations tests use, and an in-process broker on
//!   an ephemeral port.
//! - `auth`: an auth file and the configuration that uses it.
//! - `process`: the real `brook` binary as a child process.
//! - `frames`: the binary protocol's frames, written out byte for byte.
//! - `raw`: a bare socket that reads exact byte counts.
//! - `client`: wrappers around the Rust client; `Fence` and `Bystander`.
//! - `http`: a scrape of `--metrics-addr` over a bare socket.
//! - `line`: a line-protocol client.
//! - `memory`: a child broker's resident memory.
//! - `nats`: `nats-server` processes, one or a cluster of three, and the
//!   `brook-bridge` binary, as child processes.
//! - `rng`: a deterministic random generator.
//! - `temp`: a temporary directory, the one the bench uses too
//!   (`examples/common/temp.rs`).
//!
//! Nothing here sleeps: every wait is a blocking read with a deadline.

use std::time::Duration;

// Each test file is a crate of its own and uses a few of these modules,
// and a part of each, so each module (and constant) may go unused in one
// of them. The allowance is on each, not on this whole file, so that
// anything added here outside them still warns when unused.
#[allow(dead_code)]
pub mod auth;
#[allow(dead_code)]
pub mod broker;
#[allow(dead_code)]
pub mod client;
#[allow(dead_code)]
pub mod frames;
#[allow(dead_code)]
pub mod http;
#[allow(dead_code)]
pub mod line;
#[allow(dead_code)]
pub mod memory;
#[allow(dead_code)]
pub mod nats;
#[allow(dead_code)]
pub mod process;
#[allow(dead_code)]
pub mod raw;
#[allow(dead_code)]
pub mod rng;
#[allow(dead_code)]
#[path = "../../examples/common/temp.rs"]
pub mod temp;

/// The longest a test waits for something that should arrive.
#[allow(dead_code)]
pub const WAIT: Duration = Duration::from_secs(5);

/// How long a test watches for something that should not arrive when a bug
/// would make it arrive at once (no timer involved).
#[allow(dead_code)]
pub const QUIET: Duration = Duration::from_millis(300);

/// `read`, again if a signal interrupted it: a read with a timeout is not
/// restarted by the kernel, and a test of signals may send one to this
/// process while other tests read.
pub fn read_uninterrupted(
    stream: &mut impl std::io::Read,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            result => return result,
        }
    }
}
