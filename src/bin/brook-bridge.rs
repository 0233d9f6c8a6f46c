//! The `brook-bridge` binary: parse the flags and run the mirrors they ask
//! for (`brook::bridge`), until killed, or until a mirror stops (it found
//! a JetStream consumer it cannot use, or a bug made it panic), which
//! ends the process with a failure. See `brook-bridge --help` and
//! docs/SCALING.md.

use std::process::ExitCode;

use brook::bridge::{self, config::Invocation};

fn main() -> ExitCode {
    let settings = match bridge::config::parse_args(std::env::args().skip(1)) {
        Ok(Invocation::Run(settings)) => *settings,
        Ok(Invocation::Help) => {
            print!("{}", bridge::config::help());
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("brook-bridge: {error}\nTry 'brook-bridge --help'.");
            return ExitCode::from(2);
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let metrics = match settings.metrics_addr.as_deref().map(bridge::metrics::bind) {
        None => None,
        Some(Ok(listener)) => Some(listener),
        Some(Err(error)) => {
            log::error!("{error}");
            return ExitCode::FAILURE;
        }
    };
    log::info!(
        "brook-bridge: brook at {}, NATS at {}",
        settings.brook,
        settings.nats.join(",")
    );
    let stopped = bridge::run(settings, metrics);
    log::error!("{stopped}");
    ExitCode::FAILURE
}
