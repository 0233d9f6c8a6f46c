//! The `brook` binary: parse the flags, start the broker, and serve until
//! SIGTERM or Ctrl-C (then stop cleanly and exit 0; a second signal exits at
//! once), or until the store fails (then exit non-zero; a restart recovers).
//! SIGHUP reloads the `--auth-file`. `brook hash-password` makes a password
//! hash for that file instead.

use std::process::ExitCode;
use std::sync::Arc;
use std::thread;

use brook::auth::{Access, PasswordHash, DEFAULT_ITERATIONS};
use brook::budget;
use brook::config::{self, Invocation};
use brook::server::Stopper;
use brook::signals::{self, Signals};

fn main() -> ExitCode {
    let config = match config::parse_args(std::env::args().skip(1)) {
        Ok(Invocation::Run(config)) => *config,
        Ok(Invocation::Help) => {
            print!("{}", config::help());
            return ExitCode::SUCCESS;
        }
        Ok(Invocation::HashPassword) => return hash_password(),
        Err(error) => {
            eprintln!(
                "brook: {error}\nTry 'brook --help' (with cargo: cargo run --release -- --help)."
            );
            return ExitCode::from(2);
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();

    // Before the broker starts: a signal that comes during a long recovery
    // is kept, and stops the broker as soon as it is up.
    let signals = match Signals::install() {
        Ok(signals) => signals,
        Err(error) => {
            log::error!("cannot handle SIGTERM and SIGINT: {error}");
            return ExitCode::FAILURE;
        }
    };
    let broker = match brook::server::start(&config) {
        Ok(broker) => broker,
        Err(error) => {
            log::error!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let (budget_flag, budget) = config.memory_budget();
    let storage = match config.data_dir() {
        None => "in-memory topics".to_owned(),
        Some(dir) => format!("topics in {}, --fsync {}", dir.display(), config.fsync),
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
    let (stopper, auth) = (broker.stopper(), broker.auth());
    let spawned = thread::Builder::new()
        .name("signals".to_owned())
        .spawn(move || stop_on_signals(signals, stopper, auth));
    if let Err(error) = spawned {
        log::error!("cannot start the signal thread: {error}");
        return ExitCode::FAILURE;
    }
    match broker.wait() {
        Ok(stopped) => {
            log::info!("brook stopped cleanly: {stopped}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            log::error!("brook stopped: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The signal thread: a SIGHUP reloads the auth file; the first SIGTERM or
/// SIGINT starts a clean stop, on a thread of its own, so that a second
/// one is heard however long the stop takes; the second exits at once,
/// with the shell's status for death by that signal (128 + its number:
/// 143 for SIGTERM, 130 for Ctrl-C).
fn stop_on_signals(mut signals: Signals, stopper: Stopper, auth: Option<Arc<Access>>) {
    let Ok(first) = wait_reloading(&mut signals, auth.as_deref()) else {
        return;
    };
    log::info!(
        "{}: stopping cleanly (a second signal exits at once)",
        signals::name(first)
    );
    let stopping = stopper.clone();
    let spawned = thread::Builder::new()
        .name("stopper".to_owned())
        .spawn(move || stopping.stop());
    if spawned.is_err() {
        stopper.stop(); // then a second signal waits for it
    }
    let Ok(second) = wait_reloading(&mut signals, auth.as_deref()) else {
        return;
    };
    log::warn!("{}: exiting at once", signals::name(second));
    std::process::exit(128 + second);
}

/// Waits for a SIGTERM or SIGINT, reloading the auth file at each SIGHUP
/// on the way. A bad file keeps the users the broker has, and the log
/// says why.
fn wait_reloading(signals: &mut Signals, auth: Option<&Access>) -> std::io::Result<i32> {
    loop {
        let signum = signals.wait()?;
        if signum != signals::SIGHUP {
            return Ok(signum);
        }
        match auth.map(Access::reload) {
            None => log::info!("SIGHUP: no --auth-file to reload"),
            Some(Ok(reloaded)) => log::info!("SIGHUP: auth file reloaded, {reloaded}"),
            Some(Err(error)) => log::error!("SIGHUP: {error}; keeping the users loaded before"),
        }
    }
}

/// `brook hash-password`: reads a password (its first line) on stdin and
/// prints the `password` line of the auth file for it.
fn hash_password() -> ExitCode {
    let mut password = String::new();
    if let Err(error) = std::io::stdin().read_line(&mut password) {
        eprintln!("brook hash-password: cannot read the password on stdin: {error}");
        return ExitCode::FAILURE;
    }
    let password = password.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        eprintln!("brook hash-password: give the password on stdin, such as: brook hash-password < password.txt");
        return ExitCode::from(2);
    }
    match PasswordHash::new(password, DEFAULT_ITERATIONS) {
        Ok(hash) => {
            println!("password {hash}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("brook hash-password: cannot read /dev/urandom for a salt: {error}");
            ExitCode::FAILURE
        }
    }
}
