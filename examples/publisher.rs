//! Publishes `message 0`, `message 1`, ... to the topic `topic-a`, one every
//! 500 ms, printing each: the example publisher of the Go broker
//! willdot/messagebroker, against brook.
//!
//! ```sh
//! cargo run --release                        # the broker, in one terminal
//! cargo run --example publisher              # in another
//! cargo run --example publisher -- --count 5 # stop after five messages
//! ```
//!
//! Run `subscriber` alongside it to see the messages arrive.

mod common;

use std::error::Error;
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use brook::client::Publisher;
use common::{Args, COUNT, HOST, PORT};

const PROGRAM: &str = "publisher";
const TOPIC: &str = "topic-a";
const INTERVAL: Duration = Duration::from_millis(500);

fn main() -> ExitCode {
    let args = Args::parse(
        PROGRAM,
        "publishes 'message N' to topic-a every 500 ms",
        "[FLAGS]",
        &[HOST, PORT, COUNT],
    );
    common::exit_status(PROGRAM, run(&args))
}

fn run(args: &Args) -> Result<(), Box<dyn Error>> {
    let broker = args.broker();
    let count = args.count();
    let mut publisher =
        Publisher::connect(&broker).map_err(|e| format!("cannot connect to {broker}: {e}"))?;
    for n in 0.. {
        if count.is_some_and(|count| n >= count) {
            break;
        }
        if n > 0 {
            thread::sleep(INTERVAL);
        }
        let message = format!("message {n}");
        publisher.publish(TOPIC, message.as_bytes())?;
        // Send it now rather than when the buffer fills.
        publisher.flush()?;
        println!("published to {TOPIC}: {message}");
    }
    Ok(())
}
