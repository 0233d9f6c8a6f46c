//! Subscribes to the topic `topic-a` and prints every message with its
//! offset, `[topic-a@3] message 3`, acking each: the example subscriber of
//! the Go broker willdot/messagebroker, against brook.
//!
//! ```sh
//! cargo run --example subscriber                        # from the oldest message
//! cargo run --example subscriber -- --consume-from 3    # from offset 3
//! ```
//!
//! Without `--consume-from` it starts at the beginning of the topic, so it
//! shows everything `publisher` has sent so far and then follows new
//! messages. An offset the topic has not reached yet waits for it. It
//! subscribes with the line protocol, as the Go broker's binary deliveries
//! carry no offset (see `common::print_and_ack`).

mod common;

use std::error::Error;
use std::process::ExitCode;

use brook::wire::request::StartAt;
use common::{Args, Flag, COUNT, HOST, PASSWORD, PORT, USER};

const PROGRAM: &str = "subscriber";
const TOPIC: &str = "topic-a";

const CONSUME_FROM: Flag = Flag {
    name: "--consume-from",
    value: "OFFSET",
    help: "start at this offset [default: the oldest message]",
    default: None,
};

fn main() -> ExitCode {
    let args = Args::parse(
        PROGRAM,
        "prints every message of topic-a, from the oldest or --consume-from, and acks it",
        "[FLAGS]",
        &[HOST, PORT, USER, PASSWORD, CONSUME_FROM, COUNT],
    );
    common::exit_status(PROGRAM, run(&args))
}

fn run(args: &Args) -> Result<(), Box<dyn Error>> {
    let start = match args.number(CONSUME_FROM.name, "an offset, a whole number") {
        Some(offset) => StartAt::From(offset),
        None => StartAt::Beginning,
    };
    common::print_and_ack(args, TOPIC, start)
}
