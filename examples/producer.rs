//! Publishes one message to one topic and exits: the producer CLI of the DEV
//! series on building a message broker, against brook.
//!
//! ```sh
//! cargo run --example producer -- --topic orders --message "first order"
//! ```
//!
//! The broker sends no reply to a publish, so a successful exit means the
//! message was handed to the broker's socket, not that anyone has read it.
//! Run `consumer --topic orders` to read it back.

mod common;

use std::error::Error;
use std::process::ExitCode;

use brook::client::Publisher;
use common::{Args, Flag, HOST, PORT};

const PROGRAM: &str = "producer";

const TOPIC: Flag = Flag {
    name: "--topic",
    value: "TOPIC",
    help: "topic to publish to (required)",
    default: None,
};

const MESSAGE: Flag = Flag {
    name: "--message",
    value: "TEXT",
    help: "the message (required)",
    default: None,
};

fn main() -> ExitCode {
    let args = Args::parse(
        PROGRAM,
        "publishes one message to a topic",
        "--topic TOPIC --message TEXT [FLAGS]",
        &[TOPIC, MESSAGE, HOST, PORT],
    );
    common::exit_status(PROGRAM, run(&args))
}

fn run(args: &Args) -> Result<(), Box<dyn Error>> {
    let topic = args.required(TOPIC.name);
    let message = args.required(MESSAGE.name);
    if message.is_empty() {
        // The protocol drops an empty payload without delivering it.
        args.fail("--message '': expected at least one byte");
    }
    let broker = args.broker();
    let mut publisher =
        Publisher::connect(&broker).map_err(|e| format!("cannot connect to {broker}: {e}"))?;
    publisher.publish(topic, message.as_bytes())?;
    // Published frames are buffered: send them before exiting.
    publisher.flush()?;
    println!("published to {topic}: {message}");
    Ok(())
}
