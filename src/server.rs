//! Starting and stopping a broker: the listener, the acceptor thread, and the
//! dispatcher thread.
//!
//! [`start`] binds the listening socket, opens the store the configuration
//! asks for (the disk store recovers every topic it holds, and a damaged
//! log stops the start here, and starts the fetcher thread), starts the
//! syncer and dispatcher threads with those topics, and starts the acceptor
//! thread (`acceptor.rs`). The acceptor gives every accepted socket its own
//! reader thread (`reader.rs`), named `conn-<id>-read`, and remembers the
//! socket so that [`Broker::shutdown`] can close it. Those are all the threads there are:
//!
//! - one acceptor (`acceptor`, `acceptor.rs`);
//! - one reader per connection (`conn-<id>-read`, `reader.rs`);
//! - one dispatcher (`dispatcher`, `dispatcher/`), which owns every
//!   topic and session;
//! - one syncer (`syncer`, `syncer.rs`), which forces each round's writes
//!   to disk and then posts the round's frames to the writers;
//! - one fetcher with the disk store (`fetcher`, `store/fetcher.rs`), which
//!   reads old records back off the dispatcher thread;
//! - one writer per connection that is written to (`conn-<id>-write`,
//!   `writer.rs`);
//! - with `--metrics-addr`, one more (`metrics`, `metrics/`), serving
//!   the broker's figures over HTTP.
//!
//! The helper threads never name the dispatcher's `Command`: what the
//! writer and the fetcher hand back goes through a callback this file and
//! `reader.rs` give them, which puts it on the dispatcher's queue.
//!
//! A stop ([`Broker::shutdown`], or a [`Stopper`] from another thread, as
//! the binary's signal thread does) loses nothing the broker accepted. In
//! order: the acceptor stops accepting; the readers' `Gate` closes, so
//! no request reaches the dispatcher after those already queued; the
//! dispatcher carries those out in a last round, forces every log to disk,
//! and lets each writer send what it holds, for up to the linger; then every
//! client is sent the end of the stream, the readers still reading what
//! their clients sent get up to the linger again to see them close, and
//! every socket is shut.
//!
//! ```text
//!  client ──► conn-N-read ──Command──► dispatcher ──Batch──► conn-N-write ──► client
//!             (reader.rs)  (queue.rs)  (dispatcher/,          (writer.rs)
//!                                       store/)                   ▲
//!                                       │  ▲          │           │ the round's frames,
//!                          FetchRequest │  │ Fetched  │ SyncJob   │ once they are durable
//!                                       ▼  │          ▼           │ (--fsync batch)
//!                                      fetcher       syncer ──────┘
//!                             (store/fetcher.rs)    (syncer.rs)
//! ```

use std::fmt;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::acceptor::{connection_capacity, Acceptor, OpenConnections};
use crate::auth::{Access, AuthFileError, Logins, Permissions};
use crate::config::{Config, Storage};
use crate::descriptors::{self, FileBudget};
use crate::dispatcher::{Dispatcher, Stopped};
use crate::metrics;
use crate::queue::{self, Command, CommandSender};
use crate::reader::{self, Gate, ReaderContext};
use crate::stats::FsyncTimes;
use crate::store::disk::DiskStore;
use crate::store::fetcher::Fetcher;
use crate::store::memory::MemoryStore;
use crate::store::{LogSettings, Store, StoreError};
use crate::syncer::Syncer;

/// How many commands may wait for the dispatcher before readers block.
const COMMAND_QUEUE: usize = 4096;

/// A running broker. Dropping it shuts it down.
#[derive(Debug)]
pub struct Broker {
    local_addr: SocketAddr,
    max_connections: usize,
    /// How long the stop waits for clients that are still sending.
    linger: Duration,
    stopper: Stopper,
    connections: OpenConnections,
    acceptor: Option<JoinHandle<()>>,
    dispatcher: Option<JoinHandle<Result<Stopped, StoreError>>>,
    /// Where `--metrics-addr` is served, and the thread serving it.
    metrics_addr: Option<SocketAddr>,
    metrics: Option<JoinHandle<()>>,
    /// The users of `--auth-file`, which [`Broker::auth`] hands out for a
    /// reload.
    access: Option<Arc<Access>>,
}

/// How long a stop tries to connect to the acceptor (or the metrics
/// thread) to wake it. A listener that is running answers at once, from its
/// backlog; one whose backlog is full is accepting, and sees the stop at its
/// next connection.
const WAKE_PATIENCE: Duration = Duration::from_secs(1);

/// Starts a broker's clean stop from any thread; [`Broker::wait`] returns
/// once it is done.
#[derive(Debug, Clone)]
pub struct Stopper {
    /// Tells the acceptor (and the metrics thread) to stop.
    stopping: Arc<AtomicBool>,
    /// Where the acceptor listens, to wake it; and the metrics thread.
    wake_addr: SocketAddr,
    metrics_wake_addr: Option<SocketAddr>,
    context: Arc<ReaderContext>,
}

impl Stopper {
    /// Stops accepting, closes the readers' gate (waiting for the readers
    /// handing requests over), and tells the dispatcher to finish. Returns
    /// without waiting for the dispatcher. Stopping twice does no harm.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        // `accept()` has no timeout: wake it with a connection of our own.
        // Bounded, as a listen backlog that is full is not answered.
        for addr in [Some(self.wake_addr), self.metrics_wake_addr]
            .into_iter()
            .flatten()
        {
            let _ = TcpStream::connect_timeout(&addr, WAKE_PATIENCE);
        }
        self.context.commands.stop_holding_publishers();
        self.context.gate.close();
        let _ = self.context.commands.send(Command::Shutdown);
    }
}

/// Why a broker could not start. Each says what was wrong and which flag
/// changes it, since whoever reads it has just typed the command line.
#[derive(Debug)]
pub enum StartError {
    /// `--addr` could not be listened on: the port is taken (by another
    /// brook, most likely), or the address is not this machine's.
    Listen { addr: String, error: io::Error },
    /// The store could not be opened: the data directory (absolute, if it
    /// is one) cannot be made or read, is another broker's, or holds
    /// damage `--on-damage stop` refuses.
    Store {
        data_dir: Option<PathBuf>,
        error: StoreError,
    },
    /// `--metrics-addr` could not be listened on (the error names it).
    Metrics(io::Error),
    /// One of the broker's threads could not be started.
    Thread(io::Error),
    /// `--addr` is reachable from other machines, and no `--auth-file`
    /// says who may use it (protected mode).
    Unprotected(SocketAddr),
    /// The `--auth-file` cannot be read or has a mistake (the error names
    /// the line).
    AuthFile(AuthFileError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Listen { addr, error } if error.kind() == io::ErrorKind::AddrInUse => {
                let next_port = addr
                    .rsplit_once(':')
                    .and_then(|(_, port)| port.parse::<u16>().ok()?.checked_add(1))
                    .unwrap_or(3001);
                write!(
                    f,
                    "cannot listen on {addr}: {error}. Is another brook running? Start this \
                     one on another port with --port {next_port} (after -- with cargo run), \
                     or --addr HOST:PORT"
                )
            }
            StartError::Listen { addr, error } => write!(
                f,
                "cannot listen on {addr}: {error}; choose an address of this machine with \
                 --addr HOST:PORT"
            ),
            StartError::Store {
                data_dir: Some(dir),
                error: error @ StoreError::Corrupt { .. },
            } => write!(f, "data directory {}: {error}", dir.display()),
            StartError::Store {
                data_dir: Some(dir),
                error,
            } => write!(
                f,
                "cannot use the data directory {}: {error}. Start with --data-dir PATH to \
                 keep topics elsewhere, or --in-memory to keep them in memory only",
                dir.display()
            ),
            StartError::Store {
                data_dir: None,
                error,
            } => write!(f, "cannot start the in-memory store: {error}"),
            StartError::Metrics(error) => write!(f, "{error}"),
            StartError::Thread(error) => write!(f, "cannot start a thread: {error}"),
            StartError::Unprotected(addr) => write!(
                f,
                "refusing to listen on {addr} without --auth-file: anyone who can reach it \
                 could publish and read every topic. Add --auth-file PATH to let only your \
                 users in, or --addr 127.0.0.1:{port} to listen on this machine only, or \
                 --insecure-allow-anyone if the network is trusted",
                port = addr.port()
            ),
            StartError::AuthFile(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for StartError {}

impl From<io::Error> for StartError {
    fn from(error: io::Error) -> StartError {
        StartError::Thread(error)
    }
}

/// Binds `config.addr` and starts serving on background threads.
pub fn start(config: &Config) -> Result<Broker, StartError> {
    let listening = TcpListener::bind(&config.addr).and_then(|listener| {
        let local_addr = listener.local_addr()?;
        Ok((listener, local_addr))
    });
    let (listener, local_addr) = listening.map_err(|error| StartError::Listen {
        addr: config.addr.clone(),
        error,
    })?;
    let logins = Arc::new(Logins::default());
    let access = access(config, local_addr, &logins)?;
    let metrics_listener = config
        .metrics_addr
        .as_deref()
        .map(metrics::bind)
        .transpose()
        .map_err(StartError::Metrics)?;
    let metrics_addr = match &metrics_listener {
        Some(listener) => Some(listener.local_addr().map_err(StartError::Metrics)?),
        None => None,
    };

    let (commands, queue) = queue::bounded(COMMAND_QUEUE, queue::MAX_QUEUED_BYTES);
    let connections = OpenConnections::default();
    let files = Arc::new(FileBudget::new(
        descriptors::open_files_limit(),
        connections.counter(),
    ));
    let syncer = Syncer::spawn(config.fsync_interval)?;
    let fsync_times = syncer.fsync_times();
    // Recovers every stored topic first: a damaged log stops the start.
    let dispatcher = Dispatcher::new(
        config.delivery_policy(),
        config.topic_limits(),
        store(config, &commands, &files, &fsync_times)?,
        syncer,
        connections.counter(),
        logins,
    )
    .map_err(|error| StartError::Store {
        data_dir: config.data_dir(),
        error,
    })?;
    let dispatcher = thread::Builder::new()
        .name("dispatcher".to_owned())
        .spawn(move || dispatcher.run(queue))?;

    let context = Arc::new(ReaderContext {
        commands,
        limits: config.limits(),
        thread_stack_bytes: config.thread_stack_bytes,
        max_pending_frames: config.max_inflight + reader::MAX_UNREAD_REPLIES,
        handshake_timeout: config.handshake_timeout,
        gate: Gate::default(),
        access: access.clone(),
    });
    let stopping = Arc::new(AtomicBool::new(false));
    let max_connections = max_connections(config);
    let stopper = Stopper {
        stopping: stopping.clone(),
        wake_addr: wake_addr(local_addr),
        metrics_wake_addr: metrics_addr.map(wake_addr),
        context: context.clone(),
    };
    // From here a failed start drops `broker`, which stops the threads
    // already running: the dispatcher, and the syncer and fetcher with it.
    let mut broker = Broker {
        local_addr,
        max_connections,
        linger: config.linger,
        stopper,
        connections: connections.clone(),
        acceptor: None,
        dispatcher: Some(dispatcher),
        metrics_addr,
        metrics: None,
        access,
    };
    if let Some(listener) = metrics_listener {
        let commands = context.commands.clone();
        let thread = metrics::spawn(listener, commands, fsync_times, stopping.clone())?;
        broker.metrics = Some(thread);
    }
    let acceptor = Acceptor {
        listener,
        context,
        connections,
        files,
        stopping,
        max_connections,
    };
    let acceptor = thread::Builder::new()
        .name("acceptor".to_owned())
        .spawn(move || acceptor.run())?;
    broker.acceptor = Some(acceptor);
    Ok(broker)
}

/// The users of `--auth-file`, loaded; or none, if the broker listens
/// on loopback only or was told `--insecure-allow-anyone` (protected
/// mode, as Redis has it).
fn access(
    config: &Config,
    local_addr: SocketAddr,
    logins: &Arc<Logins>,
) -> Result<Option<Arc<Access>>, StartError> {
    if config.auth_file.is_none() && config.anonymous_binary != Permissions::default() {
        log::warn!("--allow-anonymous-binary applies with --auth-file only; ignored");
    }
    match config.auth_settings() {
        Some(settings) => {
            let access = Access::load(settings, logins.clone()).map_err(StartError::AuthFile)?;
            Ok(Some(Arc::new(access)))
        }
        None if local_addr.ip().is_loopback() || config.insecure_allow_anyone => Ok(None),
        None => Err(StartError::Unprotected(local_addr)),
    }
}

/// The store `config` asks for, with its memory budget. The disk store
/// gets its data directory as an absolute path, which its errors name. Its
/// fetcher thread sends what it reads to the dispatcher through
/// `commands`, its topics' files are counted in `files`, and the fsyncs
/// its logs make themselves (`--fsync always`) in `fsync_times`.
fn store(
    config: &Config,
    commands: &CommandSender,
    files: &Arc<FileBudget>,
    fsync_times: &Arc<FsyncTimes>,
) -> io::Result<Box<dyn Store>> {
    let (_, memory_budget) = config.memory_budget();
    if config.memory_bytes.is_some() && config.storage != Storage::Memory {
        log::warn!("--memory-bytes applies to --in-memory only; ignored (see --cache-bytes)");
    }
    Ok(match config.data_dir() {
        None => {
            if config.retention_age.is_some() {
                log::warn!("--retention-age applies to the disk store only; ignored");
            }
            Box::new(MemoryStore::new(config.retention_bytes, memory_budget))
        }
        Some(data_dir) => {
            if !data_dir.exists() {
                // Said, because a relative --data-dir lands wherever brook
                // was started: in scripts/, say.
                log::info!("creating the data directory {}", data_dir.display());
            }
            Box::new(
                DiskStore::new(
                    &data_dir,
                    LogSettings {
                        segment_bytes: config.segment_bytes,
                        retention_bytes: config.retention_bytes.map(|bytes| bytes as u64),
                        retention_age: config.retention_age,
                        fsync: config.fsync,
                        max_message_bytes: config.max_message_bytes as u64,
                        on_damage: config.on_damage,
                    },
                    memory_budget,
                    spawn_fetcher(commands.clone())?,
                )
                .counting_files(files.clone())
                .counting_fsyncs(fsync_times.clone()),
            )
        }
    })
}

/// Starts the fetcher thread, which hands the runs it reads back to the
/// dispatcher on its queue, where they wait for room like a publisher's
/// messages.
fn spawn_fetcher(commands: CommandSender) -> io::Result<Fetcher> {
    Fetcher::spawn(move |fetched| commands.send(Command::Fetched(fetched)).is_ok())
}

/// `--max-connections`, or what this process can hold if that is less (or
/// if the flag was not given).
fn max_connections(config: &Config) -> usize {
    let capacity = connection_capacity().unwrap_or(usize::MAX);
    match config.max_connections {
        Some(wanted) if wanted > capacity => {
            log::warn!(
                "--max-connections {wanted} is more than this process can hold; using {capacity} \
                 (raise vm.max_map_count or the open-files limit to allow more)"
            );
            capacity
        }
        Some(wanted) => wanted,
        None => capacity,
    }
}

impl Broker {
    /// The address the broker listens on (with the real port if the
    /// configuration asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where `--metrics-addr` is served (with the real port if it asked
    /// for port 0), if it was given.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// How many connections the broker serves at once.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// The users of `--auth-file`, to reload them (on SIGHUP); `None`
    /// without one.
    pub fn auth(&self) -> Option<Arc<Access>> {
        self.access.clone()
    }

    /// What stops this broker from another thread.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Blocks for as long as the broker runs: until a [`Stopper`] stops
    /// it, and it has stopped cleanly (then it says what it flushed), or
    /// until the store fails (then the broker closes every connection and
    /// the error is returned).
    pub fn wait(mut self) -> io::Result<Stopped> {
        let result = self.join_dispatcher();
        self.stop();
        result
    }

    /// Stops cleanly (see the module docs) and waits until it has.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.stopper.stop();
        for thread in [self.acceptor.take(), self.metrics.take()]
            .into_iter()
            .flatten()
        {
            let _ = thread.join();
        }
        let _ = self.join_dispatcher();
        self.close_connections();
    }

    /// Ends every connection, once the dispatcher has. Each client is sent
    /// the end of the stream (each writer has sent its own; a binary
    /// publisher has none). Readers still throwing away what their clients
    /// send get up to the linger to see them close: a socket shut with
    /// bytes unread in it is answered with a reset, and the client can
    /// lose its last replies with it. Then every socket is shut, which ends
    /// the readers waiting for their clients to speak.
    fn close_connections(&self) {
        self.connections.shutdown_all(Shutdown::Write);
        let deadline = Instant::now() + self.linger;
        if !self.stopper.context.gate.wait_until_idle(deadline) {
            log::warn!(
                "clients still sending a linger ({:?}) after the stop are cut off",
                self.linger
            );
        }
        self.connections.shutdown_all(Shutdown::Both);
    }

    fn join_dispatcher(&mut self) -> io::Result<Stopped> {
        match self.dispatcher.take().map(JoinHandle::join) {
            Some(Ok(result)) => result.map_err(io::Error::other),
            Some(Err(_)) => Err(io::Error::other("the dispatcher thread panicked")),
            None => Ok(Stopped::default()),
        }
    }
}

/// An address that reaches the listener at `addr` even if it is bound to
/// 0.0.0.0.
fn wake_addr(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}
