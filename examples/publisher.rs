//! Publishes `message 0`, `message 1`, ... to the topic `topic-a`, one every
//! 500 ms, printing each with the offset the broker stored it at: the
//! example publisher of the Go broker willdot/messagebroker, against brook.
//!
//! ```sh
//! cargo run --release                        # the broker, in one terminal
//! cargo run --example publisher              # in another
//! cargo run --example publisher -- --count 5 # stop after five messages
//! ```
//!
//! Each run counts its messages from 0, and the topic's offsets go on from
//! where the last run left them, so a second run prints
//! `published [topic-a@5] message 0`: the offset, not the number, is what
//! `subscriber --consume-from` takes. It publishes with confirmations
//! (brook's extension to the binary protocol, action 6), which is how it
//! knows the offsets. Run `subscriber` alongside it to see the messages
//! arrive.

mod common;

use std::error::Error;
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use brook::client::Publisher;
use common::{Args, COUNT, HOST, PASSWORD, PORT, USER};

const PROGRAM: &str = "publisher";
const TOPIC: &str = "topic-a";
const INTERVAL: Duration = Duration::from_millis(500);

fn main() -> ExitCode {
    let args = Args::parse(
        PROGRAM,
        "publishes 'message N' to topic-a every 500 ms",
        "[FLAGS]",
        &[HOST, PORT, USER, PASSWORD, COUNT],
    );
    common::exit_status(PROGRAM, run(&args))
}

fn run(args: &Args) -> Result<(), Box<dyn Error>> {
    let broker = args.broker();
    let count = args.count();
    let mut publisher = Publisher::connect_confirmed_as(&broker, args.login().as_ref())
        .map_err(|error| common::cannot_connect(&broker, error))?;
    for n in 0.. {
        if count.is_some_and(|count| n >= count) {
            break;
        }
        if n > 0 {
            thread::sleep(INTERVAL);
        }
        let message = format!("message {n}");
        publisher.publish(TOPIC, message.as_bytes())?;
        // Sends it, and waits for the broker to say where it stored it.
        let offset = publisher.confirmation()?;
        common::print(format_args!("published [{TOPIC}@{offset}] {message}"))?;
    }
    Ok(())
}
