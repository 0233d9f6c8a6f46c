//! An in-process broker for a test: its configuration, and starting it on
//! an ephemeral port of `127.0.0.1`. (The real binary as a child process
//! is in `process.rs`.)

use std::time::Duration;

use brook::config::{Config, Storage};
use brook::server::Broker;

/// A configuration for tests that are not about timers: a short ack delay,
/// and an ack timeout long enough that a busy machine never causes a
/// redelivery the test did not ask for.
pub fn config() -> Config {
    Config {
        addr: "127.0.0.1:0".into(),
        ack_delay: Duration::from_millis(100),
        ack_timeout: Duration::from_secs(10),
        storage: Storage::Memory,
        ..Config::default()
    }
}

/// A configuration for tests about redelivery: short delays keep them fast.
pub fn timer_config() -> Config {
    Config {
        ack_delay: Duration::from_millis(100),
        ack_timeout: Duration::from_millis(300),
        ..config()
    }
}

/// Starts a broker on `127.0.0.1`, port 0. Dropping it shuts it down.
pub fn start_broker(config: &Config) -> Broker {
    brook::server::start(config).expect("broker starts")
}
