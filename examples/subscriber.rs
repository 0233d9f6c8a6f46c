//! Subscribes to the topic `topic-a` and prints every message, acking each:
//! the example subscriber of the Go broker willdot/messagebroker, against
//! brook.
//!
//! ```sh
//! cargo run --example subscriber                        # from the oldest message
//! cargo run --example subscriber -- --consume-from 3    # from offset 3
//! ```
//!
//! Without `--consume-from` it starts at the beginning of the topic, so it
//! shows everything `publisher` has sent so far and then follows new
//! messages. An offset the topic has not reached yet waits for it.

mod common;

use std::error::Error;
use std::process::ExitCode;

use brook::client::Subscriber;
use brook::protocol::StartAt;
use common::{Args, Flag, HOST, PORT};

const PROGRAM: &str = "subscriber";
const TOPIC: &str = "topic-a";

const CONSUME_FROM: Flag = Flag {
    name: "--consume-from",
    value: "OFFSET",
    help: "start at this offset [default: the oldest message]",
    default: None,
};

const COUNT: Flag = Flag {
    name: "--count",
    value: "N",
    help: "exit after N messages [default: run forever]",
    default: None,
};

fn main() -> ExitCode {
    let args = Args::parse(
        PROGRAM,
        "prints every message of topic-a, from the oldest or --consume-from, and acks it",
        "[FLAGS]",
        &[HOST, PORT, CONSUME_FROM, COUNT],
    );
    common::exit_status(PROGRAM, run(&args))
}

fn run(args: &Args) -> Result<(), Box<dyn Error>> {
    let broker = args.broker();
    let start = match args.number(CONSUME_FROM.name, "an offset, a whole number") {
        Some(offset) => StartAt::From(offset),
        None => StartAt::Beginning,
    };
    let count = args.count();
    let mut subscriber =
        Subscriber::connect(&broker).map_err(|e| format!("cannot connect to {broker}: {e}"))?;
    subscriber.subscribe(&[TOPIC], start)?;
    let mut received = 0;
    while count.is_none_or(|count| received < count) {
        let delivery = subscriber.recv()?;
        println!(
            "[{}] {}",
            delivery.topic,
            String::from_utf8_lossy(&delivery.payload)
        );
        subscriber.ack()?;
        received += 1;
    }
    // Acks go out when the subscriber next waits; it will not wait again.
    subscriber.flush()?;
    Ok(())
}
