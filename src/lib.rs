//! brook: a message broker built from blocking sockets, threads and channels.
//!
//! Publishers send messages to named topics over TCP; brook appends each one
//! to its topic's log, where it gets an offset, and pushes it to every
//! subscriber of the topic. Subscribers answer each delivery with an ack or a
//! nack (or, on the line protocol, let it count as answered once written);
//! what is nacked, or not answered in time, is delivered again. One port
//! speaks two protocols: the binary protocol of the Go broker
//! willdot/messagebroker, and a line protocol for `nc` and people.
//!
//! The modules are listed in the order one message travels through them, and
//! reading them in that order is the intended way to learn the code:
//!
//! - `ids.rs`: the words every other file shares: a message's `Payload`
//!   and `Offset`, and the numbers of connections and topics.
//! - `pattern.rs`: what a topic name means in a subscription, an exact
//!   name or a NATS-style pattern (`orders.*`, `orders.>`), and which
//!   names no publish may use.
//! - [`config`]: the flags `brook` is started with.
//! - [`server`]: starting and stopping the broker; `acceptor.rs` is the
//!   acceptor thread, which starts one reader thread per socket.
//! - `reader.rs`: the reader thread, which reads bytes and forwards
//!   requests; the first byte picks the protocol.
//! - [`auth`]: with `--auth-file`, who may connect and what they may
//!   touch: the users, their password hashes and topic permissions, and
//!   the guard each reader passes every request through before the
//!   dispatcher sees it.
//! - [`wire`]: the two protocols. `request.rs` holds what a client can ask
//!   (`Request`, or a `Refusal`) and `reply.rs` what the broker sends
//!   back, in words both protocols share; [`binary`](wire::binary) (with
//!   [`json`](wire::json)) has the byte layouts of the Go broker and the
//!   decoder that turns a byte stream into requests, and
//!   [`line`](wire::line) the line protocol's decoder and encoders.
//! - `mailbox.rs`: the channel under the dispatcher's queue, whose
//!   receiver sleeps at once when it is empty.
//! - `queue.rs`: the `Command`s the readers (and the writer and fetcher
//!   threads, through callbacks the broker gives them) send the
//!   dispatcher, and the bounded queue that carries them, which holds
//!   publishers back when the dispatcher is behind.
//! - `dispatcher/`: the one thread that owns the topic table. Its
//!   `mod.rs` runs the rounds and hands each request to the file for its
//!   kind (`publish.rs`, `subscribe.rs`, `answers.rs`, `pull.rs`...), and
//!   lists them all; `topic.rs` is what it holds of each topic.
//! - `store/`: each topic's append-only log of messages, in memory
//!   (`memory.rs`) or in segment files that survive a restart (`disk/`,
//!   `segment.rs`, `record.rs`, checksummed by [`crc32c`]), and the
//!   fetcher thread that reads old records back (`fetcher.rs`);
//!   `store/mod.rs` lists its files bottom-up. [`budget`] keeps what all
//!   the logs hold in memory within one limit.
//! - `dispatcher/session/`: one connection's subscriptions and group
//!   memberships, made of `outbox.rs` (the frames waiting for its writer),
//!   `in_flight.rs` (deliveries awaiting an answer, redeliveries,
//!   give-ups) and `pulls.rs` (its `PULL`s); and `dispatcher/group.rs`,
//!   consumer groups, whose members share a topic's messages.
//! - `stats.rs`: the counters behind `TOPICS` and `STATS`.
//! - `syncer.rs`: the thread that forces each round's writes to disk, then
//!   posts the round's frames to the writers.
//! - `writer.rs`: the writer thread, the only code that writes to a socket.
//! - [`client`]: a blocking Rust client, used by the examples and tests.
//! - [`bridge`]: `brook-bridge`, which mirrors topics to and from a NATS
//!   JetStream cluster, over a NATS client of its own; it uses brook only
//!   as a client does.
//!
//! And four modules off the message's path: [`signals`], which lets the
//! `brook` binary hear SIGTERM and Ctrl-C and stop cleanly (and SIGHUP,
//! which reloads the auth file),
//! [`descriptors`], which shares the process's file descriptors between
//! connections and topics, `backoff.rs`, which waits out failed accepts
//! and keeps their log lines few, and `metrics/`, which serves the
//! broker's figures to a monitoring system (`--metrics-addr`).
//!
//! No file uses a file that uses it (`tests/layering.rs` checks), so each
//! can be read knowing only the ones it names; but the files of
//! `dispatcher/` from `topic_table.rs` on (and its `mod.rs`) are one
//! `impl Dispatcher` split by kind of request, and call one another's
//! methods, which that check cannot see: each names the files it calls
//! in a "Calls:" line of its module doc. What the client, the
//! examples, the tests and `main.rs` use is public; the rest is
//! `pub(crate)`, and its docs are read with
//! `cargo doc --document-private-items`.

pub(crate) mod acceptor;
pub mod auth;
pub(crate) mod backoff;
pub mod bridge;
pub mod budget;
pub mod client;
pub mod config;
pub mod descriptors;
pub(crate) mod dispatcher;
pub(crate) mod ids;
pub(crate) mod mailbox;
pub(crate) mod metrics;
pub(crate) mod pattern;
pub(crate) mod queue;
pub(crate) mod reader;
pub mod server;
pub mod signals;
pub(crate) mod stats;
pub(crate) mod store;
pub(crate) mod syncer;
pub mod wire;
pub(crate) mod writer;

pub use store::crc32c;
