//! Publishes one message to one topic and exits: the producer CLI of the DEV
//! series on building a message broker, against brook.
//!
//! ```sh
//! cargo run --example producer -- --topic orders --message "first order"
//! ```
//!
//! It publishes with confirmations (brook's extension to the binary
//! protocol, action 6), so it prints the message with the offset the broker
//! stored it at, `published [orders@0] first order`, and a successful exit
//! means the message is stored (on disk, by default). Run
//! `consumer --topic orders` to read it back.

mod common;

use std::error::Error;
use std::process::ExitCode;

use brook::client::Publisher;
use common::{Args, Flag, HOST, PASSWORD, PORT, USER};

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
        &[TOPIC, MESSAGE, HOST, PORT, USER, PASSWORD],
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
    let mut publisher = Publisher::connect_confirmed_as(&broker, args.login().as_ref())
        .map_err(|error| common::cannot_connect(&broker, error))?;
    publisher.publish(topic, message.as_bytes())?;
    // Sends it, and waits for the broker to say where it stored it.
    let offset = publisher.confirmation()?;
    common::print(format_args!("published [{topic}@{offset}] {message}"))
}
