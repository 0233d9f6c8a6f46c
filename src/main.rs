//! The `brook` binary: parse the flags, start the broker, and serve until
//! killed, or until the store fails (then exit non-zero; a restart recovers).

use std::process::ExitCode;

use brook::budget;
use brook::config::{self, Invocation, Storage};

fn main() -> ExitCode {
    let config = match config::parse_args(std::env::args().skip(1)) {
        Ok(Invocation::Run(config)) => *config,
        Ok(Invocation::Help) => {
            print!("{}", config::help());
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("brook: {error}\nTry 'brook --help'.");
            return ExitCode::from(2);
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();

    let broker = match brook::server::start(&config) {
        Ok(broker) => broker,
        Err(error) => {
            log::error!("cannot start on {}: {error}", config.addr);
            return ExitCode::FAILURE;
        }
    };
    let (budget_flag, budget) = config.memory_budget();
    let storage = match &config.storage {
        Storage::Memory => "in-memory topics".to_owned(),
        Storage::Disk(dir) => format!("topics in {}, --fsync {}", dir.display(), config.fsync),
    };
    let storage = format!("{storage}, {budget_flag} {}", budget::describe(budget));
    log::info!(
        "brook listening on {} ({storage}; up to {} connections; ack delay {:?}, \
         ack timeout {:?}, max deliveries {})",
        broker.local_addr(),
        broker.max_connections(),
        config.ack_delay,
        config.ack_timeout,
        config.max_deliveries
    );
    match broker.wait() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            log::error!("brook stopped: {error}");
            ExitCode::FAILURE
        }
    }
}
