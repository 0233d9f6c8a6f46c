//! The relay: a null broker, the yardstick every brook figure is divided by.
//!
//! It accepts the same connections as brook and answers a subscribe with
//! Subscribed, but stores nothing, tracks no acks and decodes no messages:
//! what a publisher writes is copied straight to the subscribers of its
//! topic, still in publish-frame format (the bench's subscribers parse both
//! formats). What it reaches is roughly what loopback TCP and the system calls
//! allow on this machine, so "brook at 20 % of relay" says how much of that
//! budget the broker's own work takes.
//!
//! How it routes: a subscriber names its topics in its subscribe request; a
//! publisher's topic is read from its first frame (every bench publisher
//! sends to one topic). Each publisher connection has a thread that reads up
//! to 64 KiB at a time and writes whatever complete frames it holds to each
//! subscriber of that topic in turn. Cutting at frame boundaries (by walking
//! the length prefixes, without looking inside) is what lets several
//! publishers share one subscriber socket, as in fan-in. Each subscriber
//! connection has a thread that reads and discards its acks.
//!
//! The relay runs where brook runs: in the bench's process, or, when brook
//! is a child process (`--broker-bin`), in a child process of its own, this
//! binary started with [`SERVE_FLAG`]. The connections scenario needs that:
//! 10,000 subscribers' sockets and the broker's would not fit one process's
//! file-descriptor limit.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use brook::wire::binary::{action, start_at, status, TOPIC_PREFIX};
use parking_lot::Mutex;

use crate::load::Framing;

/// Thread names start with this, so the sampler can count the relay's threads.
pub const THREAD_PREFIX: &str = "relay";
const READ_CHUNK: usize = 64 << 10;
/// The stack of a connection's thread, as small as brook's (its
/// `thread_stack_bytes`), so that thousands of idle subscribers cost the
/// relay no more address space than they cost brook.
const THREAD_STACK_BYTES: usize = 128 << 10;
const MAX_TOPIC_LIST_BYTES: usize = 1 << 20;

/// One subscriber's socket, locked while a publisher thread writes a chunk.
/// Every handle on a connection shares its one file descriptor (`&TcpStream`
/// reads and writes): 10,000 subscribers must fit the descriptor limit.
type SubscriberSocket = Arc<Mutex<Arc<TcpStream>>>;

pub struct Relay {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

/// What the acceptor and every connection thread share.
#[derive(Default)]
struct Shared {
    stopping: AtomicBool,
    /// Subscribers by topic.
    routes: Mutex<HashMap<String, Vec<SubscriberSocket>>>,
    /// A handle on every accepted socket, to close them at shutdown.
    sockets: Mutex<Vec<Arc<TcpStream>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// The flag that makes the bench binary a relay and nothing else.
pub const SERVE_FLAG: &str = "--serve-relay";

/// Runs a relay until this process's stdin closes, which it does when the
/// bench that started it stops it, or dies. Says where it listens the way
/// brook does, `listening on HOST:PORT` on stderr, which is how the bench
/// learns the address of either kind of child.
pub fn serve_until_stdin_closes() -> io::Result<()> {
    let relay = Relay::start()?;
    eprintln!("relay listening on {}", relay.addr());
    io::copy(&mut io::stdin(), &mut io::sink())?;
    relay.shutdown();
    Ok(())
}

impl Relay {
    pub fn start() -> io::Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let acceptor = {
            let shared = shared.clone();
            thread::Builder::new()
                .name(format!("{THREAD_PREFIX}-accept"))
                .spawn(move || accept_loop(listener, shared))?
        };
        Ok(Relay {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, closes every connection and waits for every thread.
    pub fn shutdown(mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the acceptor
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for socket in self.shared.sockets.lock().iter() {
            let _ = socket.shutdown(Shutdown::Both);
        }
        let threads = std::mem::take(&mut *self.shared.threads.lock());
        for thread in threads {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let stream = Arc::new(stream);
        shared.sockets.lock().push(stream.clone());
        let connection_shared = shared.clone();
        let spawned = thread::Builder::new()
            .name(format!("{THREAD_PREFIX}-conn"))
            .stack_size(THREAD_STACK_BYTES)
            .spawn(move || {
                // An error just ends the connection, as a peer closing does.
                let _ = serve(stream, &connection_shared);
            });
        if let Ok(thread) = spawned {
            shared.threads.lock().push(thread);
        }
    }
}

/// Serves one connection: its first action says whether it publishes or
/// subscribes.
fn serve(stream: Arc<TcpStream>, shared: &Shared) -> io::Result<()> {
    stream.set_nodelay(true)?;
    match read_u16(&mut stream.as_ref())? {
        action::SUBSCRIBE => serve_subscriber(stream, shared),
        action::PUBLISH => serve_publisher(stream, shared),
        other => Err(io::Error::new(
            ErrorKind::InvalidData,
            format!("action {other}"),
        )),
    }
}

// ---- Subscribers ----

fn serve_subscriber(stream: Arc<TcpStream>, shared: &Shared) -> io::Result<()> {
    let topics = read_subscribe_request(&mut stream.as_ref())?;
    let socket = Arc::new(Mutex::new(stream.clone()));
    // Registered before the status goes out: a publisher that starts after
    // the subscriber has its status is sure to find it.
    let mut routes = shared.routes.lock();
    for topic in topics {
        routes.entry(topic).or_default().push(socket.clone());
    }
    drop(routes);
    socket
        .lock()
        .as_ref()
        .write_all(&status::SUBSCRIBED.to_be_bytes())?;
    discard_until_closed(&mut stream.as_ref())
}

/// Reads the rest of a subscribe request (its action already read): `u32`
/// length, JSON topic list, `u16` start-at and the offset some start-ats
/// carry. The start-at is ignored: the relay keeps nothing to replay.
fn read_subscribe_request(stream: &mut impl Read) -> io::Result<Vec<String>> {
    let mut length = [0; 4];
    stream.read_exact(&mut length)?;
    let length = u32::from_be_bytes(length) as usize;
    if length > MAX_TOPIC_LIST_BYTES {
        return Err(io::Error::new(
            ErrorKind::InvalidData,
            "topic list too long",
        ));
    }
    let mut list = vec![0; length];
    stream.read_exact(&mut list)?;
    let topics = brook::wire::json::parse_string_array(&list)
        .map_err(|e| io::Error::new(ErrorKind::InvalidData, format!("{e:?}")))?;
    let offset_bytes = match read_u16(stream)? {
        start_at::FROM => 2,
        start_at::FROM_U64 => 8,
        _ => 0,
    };
    stream.read_exact(&mut [0; 8][..offset_bytes])?;
    Ok(topics)
}

/// Reads acks, or whatever else a subscriber sends, and drops them.
fn discard_until_closed(stream: &mut impl Read) -> io::Result<()> {
    let mut sink = [0; 4096];
    while stream.read(&mut sink)? > 0 {}
    Ok(())
}

// ---- Publishers ----

fn serve_publisher(stream: Arc<TcpStream>, shared: &Shared) -> io::Result<()> {
    let mut buffer = vec![0; READ_CHUNK];
    let mut filled = 0;
    let mut subscribers: Option<Vec<SubscriberSocket>> = None;
    loop {
        if filled == buffer.len() {
            // One frame larger than the buffer: make room for it.
            buffer.resize(buffer.len() * 2, 0);
        }
        let read = stream.as_ref().read(&mut buffer[filled..])?;
        if read == 0 {
            return Ok(());
        }
        filled += read;
        let whole = complete_frames(&buffer[..filled])?;
        if whole == 0 {
            continue;
        }
        let subscribers = subscribers.get_or_insert_with(|| {
            let topic = first_topic(&buffer).unwrap_or_default();
            shared
                .routes
                .lock()
                .get(&topic)
                .cloned()
                .unwrap_or_default()
        });
        for subscriber in subscribers.iter() {
            // A subscriber that has left just misses the rest.
            let _ = subscriber.lock().as_ref().write_all(&buffer[..whole]);
        }
        buffer.copy_within(whole..filled, 0);
        filled -= whole;
    }
}

/// How many bytes at the start of `bytes` are complete publish frames.
fn complete_frames(bytes: &[u8]) -> io::Result<usize> {
    let mut whole = 0;
    while let Some(frame) = Framing::Publish
        .frame_at(&bytes[whole..])
        .map_err(|e| io::Error::new(ErrorKind::InvalidData, e))?
    {
        whole += frame.end;
    }
    Ok(whole)
}

/// The topic named by the publish frame at the start of `bytes`.
fn first_topic(bytes: &[u8]) -> Option<String> {
    let length = u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]) as usize;
    let name = bytes.get(2..2 + length)?.strip_prefix(TOPIC_PREFIX)?;
    String::from_utf8(name.to_vec()).ok()
}

fn read_u16(stream: &mut impl Read) -> io::Result<u16> {
    let mut word = [0; 2];
    stream.read_exact(&mut word)?;
    Ok(u16::from_be_bytes(word))
}
