//! Shared helpers for the integration tests, one module per concern. Each
//! test file declares `mod common;` and imports what it uses by name:
//!
//! - `broker`: the configurations tests use, and an in-process broker on
//!   an ephemeral port.
//! - `process`: the real `brook` binary as a child process.
//! - `frames`: the binary protocol's frames, written out byte for byte.
//! - `raw`: a bare socket that reads exact byte counts.
//! - `client`: wrappers around the Rust client; `Fence` and `Bystander`.
//! - `line`: a line-protocol client.
//! - `memory`: a child broker's resident memory.
//! - `rng`: a deterministic random generator.
//! - `temp`: a temporary directory, the one the bench uses too
//!   (`examples/common/temp.rs`).
//!
//! Nothing here sleeps: every wait is a blocking read with a deadline.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::time::Duration;

pub mod broker;
pub mod client;
pub mod frames;
pub mod line;
pub mod memory;
pub mod process;
pub mod raw;
pub mod rng;
#[path = "../../examples/common/temp.rs"]
pub mod temp;

/// The longest a test waits for something that should arrive.
pub const WAIT: Duration = Duration::from_secs(5);

/// How long a test watches for something that should not arrive when a bug
/// would make it arrive at once (no timer involved).
pub const QUIET: Duration = Duration::from_millis(300);
