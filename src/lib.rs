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
//! - [`ids`]: the words every other file shares: a message's [`Payload`](ids::Payload)
//!   and [`Offset`](ids::Offset), and the numbers of connections and topics.
//! - [`config`]: the flags `brook` is started with.
//! - [`server`]: the listener and acceptor; one reader thread per socket.
//! - [`connection`]: the reader thread, which reads bytes and forwards
//!   requests; the first byte picks the protocol.
//! - [`protocol`] (with [`json`]): the binary byte layouts, and the decoder
//!   that turns a byte stream into requests.
//! - [`line`](mod@line): the line protocol's decoder and encoders, producing the same
//!   requests.
//! - [`queue`]: the bounded queue of commands from the readers to the
//!   dispatcher, which holds publishers back when the dispatcher is behind.
//! - [`dispatcher`]: the one thread that owns the topic table.
//! - [`store`]: each topic's append-only log of messages, in memory or, with
//!   [`disk`], in segment files that survive a restart: [`segment`] (with
//!   [`crc32c`]) holds the bytes of their checksummed records, and
//!   [`fetcher`] is the thread that reads old records back. [`budget`]
//!   keeps what all the logs hold in memory within one limit.
//! - [`session`]: one connection's subscriptions, in-flight deliveries,
//!   redeliveries and pulls.
//! - [`group`]: consumer groups, whose members share a topic's messages.
//! - [`stats`]: the counters behind `TOPICS` and `STATS`.
//! - [`syncer`]: the thread that forces each round's writes to disk, then
//!   posts the round's frames to the writers.
//! - [`writer`]: the writer thread, the only code that writes to a socket.
//! - [`client`]: a blocking Rust client, used by the examples and tests.
//!
//! And three modules off the message's path: [`signals`], which lets the
//! `brook` binary hear SIGTERM and Ctrl-C and stop cleanly, [`files`],
//! which shares the process's file descriptors between connections and
//! topics, and [`metrics`], which serves the broker's figures to a
//! monitoring system (`--metrics-addr`).

pub mod budget;
pub mod client;
pub mod config;
pub mod connection;
pub mod crc32c;
pub mod disk;
pub mod dispatcher;
pub mod fetcher;
pub mod files;
pub mod group;
pub mod ids;
pub mod json;
pub mod line;
pub mod metrics;
pub mod protocol;
pub mod queue;
pub mod segment;
pub mod server;
pub mod session;
pub mod signals;
pub mod stats;
pub mod store;
pub mod syncer;
pub mod writer;
