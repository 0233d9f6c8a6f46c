//! Prints every message of one topic as `[topic] message`, acking each: the
//! consumer CLI of the DEV series on building a message broker, against
//! brook.
//!
//! ```sh
//! cargo run --example consumer -- --topic orders
//! # [orders] first order
//! ```
//!
//! It starts at the beginning of the topic, so it shows what was published
//! before it started, then follows new messages until stopped (or until
//! `--count` messages have arrived). Payloads are printed as UTF-8, with any
//! invalid bytes replaced by `�`.

mod common;

use std::error::Error;
use std::process::ExitCode;

use brook::client::Subscriber;
use brook::protocol::StartAt;
use common::{Args, Flag, HOST, PORT};

const PROGRAM: &str = "consumer";

const TOPIC: Flag = Flag {
    name: "--topic",
    value: "TOPIC",
    help: "topic to read, from its oldest message (required)",
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
        "prints every message of a topic and acks it",
        "--topic TOPIC [FLAGS]",
        &[TOPIC, HOST, PORT, COUNT],
    );
    common::exit_status(PROGRAM, run(&args))
}

fn run(args: &Args) -> Result<(), Box<dyn Error>> {
    let topic = args.required(TOPIC.name);
    let broker = args.broker();
    let count = args.count();
    let mut subscriber =
        Subscriber::connect(&broker).map_err(|e| format!("cannot connect to {broker}: {e}"))?;
    subscriber.subscribe(&[topic], StartAt::Beginning)?;
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
