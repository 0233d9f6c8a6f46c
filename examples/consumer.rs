//! Prints every message of one topic as `[topic@offset] message`, acking
//! each: the consumer CLI of the DEV series on building a message broker,
//! against brook.
//!
//! ```sh
//! cargo run --example consumer -- --topic orders
//! # [orders@0] first order
//! ```
//!
//! It starts at the beginning of the topic, so it shows what was published
//! before it started, then follows new messages until stopped (or until
//! `--count` messages have arrived). Payloads are printed as UTF-8, with any
//! invalid bytes replaced by `�`. It reads with the line protocol, whose
//! deliveries carry their offsets (see `common::print_and_ack`).

mod common;

use std::error::Error;
use std::process::ExitCode;

use brook::wire::request::StartAt;
use common::{Args, Flag, COUNT, HOST, PASSWORD, PORT, USER};

const PROGRAM: &str = "consumer";

const TOPIC: Flag = Flag {
    name: "--topic",
    value: "TOPIC",
    help: "topic to read, from its oldest message (required)",
    default: None,
};

fn main() -> ExitCode {
    let args = Args::parse(
        PROGRAM,
        "prints every message of a topic and acks it",
        "--topic TOPIC [FLAGS]",
        &[TOPIC, HOST, PORT, USER, PASSWORD, COUNT],
    );
    common::exit_status(PROGRAM, run(&args))
}

fn run(args: &Args) -> Result<(), Box<dyn Error>> {
    common::print_and_ack(args, args.required(TOPIC.name), StartAt::Beginning)
}
