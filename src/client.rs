//! A blocking client for brook's binary protocol (and so for the Go
//! reference broker too): a [`Publisher`] and a [`Subscriber`].
//!
//! ```no_run
//! use brook::client::{Publisher, Subscriber};
//! use brook::wire::request::StartAt;
//!
//! let mut subscriber = Subscriber::connect("127.0.0.1:3000")?;
//! subscriber.subscribe(&["orders"], StartAt::Beginning)?;
//!
//! let mut publisher = Publisher::connect("127.0.0.1:3000")?;
//! publisher.publish("orders", b"first order")?;
//! publisher.flush()?;
//!
//! let delivery = subscriber.recv()?;
//! assert_eq!(delivery.payload, b"first order");
//! subscriber.ack()?;
//! # Ok::<(), brook::client::ClientError>(())
//! ```
//!
//! A broker started with `--auth-file` wants a login first: connect with
//! [`Publisher::connect_as`] or [`Publisher::connect_confirmed_as`], or
//! call [`Subscriber::login`] before subscribing, with a [`Login`] (made
//! from `BROOK_USER` and `BROOK_PASSWORD` by [`Login::from_args_or_env`]).
//!
//! Both sides buffer their writes: published frames go out on
//! [`Publisher::flush`] (or when the buffer fills, or on drop), and acks go
//! out the next time the subscriber waits for the broker. So a loop of
//! `recv`, `ack` costs one system call per batch of deliveries, not two per
//! message.
//!
//! One limit comes from the protocol itself: a status and a delivery cannot
//! be told apart on the wire, so [`Subscriber::subscribe`] and
//! [`Subscriber::unsubscribe`] assume no delivery arrives before their reply.
//! Subscribe to everything before consuming, or change subscriptions only
//! once every delivery so far has been answered and nothing new is published
//! to the topics already subscribed.

use std::fmt;
use std::io::{self, BufWriter, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use byteorder::{BigEndian, ByteOrder};

use crate::wire::binary::{self, action, status, TOPIC_PREFIX};
use crate::wire::request::{StartAt, MAX_TOPIC_NAME_BYTES};

/// Deliveries larger than any publish frame can carry are refused by the
/// client rather than allocated: a guard against a broken or hostile peer.
const MAX_DELIVERY_BYTES: u64 = u32::MAX as u64;

/// What can go wrong talking to the broker.
#[derive(Debug)]
pub enum ClientError {
    /// The socket failed.
    Io(io::Error),
    /// The broker closed the connection.
    Closed,
    /// The broker answered with an Error status and this reason.
    Refused(String),
    /// The broker sent bytes that make no sense here.
    Protocol(String),
    /// A topic name or payload too long for the protocol's length fields.
    TooLong(&'static str),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(error) => write!(f, "{error}"),
            ClientError::Closed => write!(f, "the broker closed the connection"),
            ClientError::Refused(reason) => write!(f, "refused by the broker: {reason}"),
            ClientError::Protocol(what) => write!(f, "protocol error: {what}"),
            ClientError::TooLong(what) => write!(f, "{what} too long for the protocol"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(error: io::Error) -> ClientError {
        ClientError::Io(error)
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// A user's name and password, for a broker started with `--auth-file`.
/// Its `Debug` leaves the password out.
#[derive(Clone)]
pub struct Login {
    user: String,
    password: String,
}

impl Login {
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Login {
        Login {
            user: user.into(),
            password: password.into(),
        }
    }

    /// The login `user` and `password` ask for, else the one in
    /// `BROOK_USER` and `BROOK_PASSWORD`; `None` if no user is given
    /// either way (then the client does not log in).
    pub fn from_args_or_env(user: Option<String>, password: Option<String>) -> Option<Login> {
        let user = user.or_else(|| std::env::var("BROOK_USER").ok())?;
        let password = password
            .or_else(|| std::env::var("BROOK_PASSWORD").ok())
            .unwrap_or_default();
        Some(Login::new(user, password))
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    /// The AUTH request (action 8) that carries it.
    fn request(&self) -> Result<Vec<u8>> {
        let mut request = Vec::new();
        binary::encode_auth(&mut request, &self.user, &self.password)
            .map_err(|_| ClientError::TooLong("user name or password"))?;
        Ok(request)
    }
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Login({:?}, password hidden)", self.user)
    }
}

/// A connection that publishes messages.
#[derive(Debug)]
pub struct Publisher {
    stream: BufWriter<TcpStream>,
}

impl Publisher {
    /// Connects and announces itself as a publisher.
    pub fn connect(addr: impl ToSocketAddrs) -> Result<Publisher> {
        Publisher::start(addr, None, action::PUBLISH)
    }

    /// Connects, logs in as `login` if given, and announces itself as a
    /// publisher.
    pub fn connect_as(addr: impl ToSocketAddrs, login: Option<&Login>) -> Result<Publisher> {
        Publisher::start(addr, login, action::PUBLISH)
    }

    /// Connects as a publisher that wants every message confirmed once the
    /// broker has stored it (brook's extension: action 6). Read each
    /// confirmation, in publishing order, with
    /// [`Publisher::confirmation`].
    pub fn connect_confirmed(addr: impl ToSocketAddrs) -> Result<Publisher> {
        Publisher::start(addr, None, action::PUBLISH_CONFIRMED)
    }

    /// [`Publisher::connect_confirmed`], logged in as `login` if given.
    pub fn connect_confirmed_as(
        addr: impl ToSocketAddrs,
        login: Option<&Login>,
    ) -> Result<Publisher> {
        Publisher::start(addr, login, action::PUBLISH_CONFIRMED)
    }

    fn start(
        addr: impl ToSocketAddrs,
        login: Option<&Login>,
        first_action: u16,
    ) -> Result<Publisher> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        if let Some(login) = login {
            stream.write_all(&login.request()?)?;
            match u16::from_be_bytes(read_be::<2>(&mut stream)?) {
                status::SUBSCRIBED => {}
                status::ERROR => return Err(read_refusal(&mut stream)?),
                other => return Err(ClientError::Protocol(format!("unexpected status {other}"))),
            }
        }
        let mut stream = BufWriter::with_capacity(64 << 10, stream);
        stream.write_all(&first_action.to_be_bytes())?;
        Ok(Publisher { stream })
    }

    /// Makes a write, or a wait for a confirmation, that takes longer than
    /// `patience` fail (with [`ClientError::Io`]) rather than block for
    /// ever on a broker that stopped reading or answering. The connection
    /// cannot be used after such a failure.
    pub fn set_patience(&self, patience: Duration) -> Result<()> {
        let socket = self.stream.get_ref();
        socket.set_read_timeout(Some(patience))?;
        socket.set_write_timeout(Some(patience))?;
        Ok(())
    }

    /// Waits for the broker's answer to the oldest unconfirmed message of a
    /// [`Publisher::connect_confirmed`] publisher: its offset once stored,
    /// or why it was refused. Sends anything queued first.
    pub fn confirmation(&mut self) -> Result<u64> {
        self.flush()?;
        let mut socket = self.stream.get_ref();
        let code = read_be::<2>(&mut socket)?;
        match u16::from_be_bytes(code) {
            status::PUBLISHED => Ok(u64::from_be_bytes(read_be::<8>(&mut socket)?)),
            status::ERROR => Err(read_refusal(&mut socket)?),
            other => Err(ClientError::Protocol(format!("unexpected status {other}"))),
        }
    }

    /// Checks, without waiting, that the broker has not closed the
    /// connection, for a [`Publisher::connect_confirmed`] publisher that
    /// owes no confirmation: a broker gone shows nowhere else until the
    /// next publish, since nothing reads the socket in between. Closed:
    /// [`ClientError::Closed`]. Anything the broker sent (nothing is owed,
    /// so it can only be a refusal) is read and returned as the error.
    pub fn check_open(&mut self) -> Result<()> {
        let socket = self.stream.get_ref();
        socket.set_nonblocking(true)?;
        let peeked = socket.peek(&mut [0u8; 1]);
        socket.set_nonblocking(false)?;
        match peeked {
            Ok(0) => Err(ClientError::Closed),
            Ok(_) => match self.confirmation() {
                Ok(offset) => Err(ClientError::Protocol(format!(
                    "a confirmation (offset {offset}) of no publish"
                ))),
                Err(error) => Err(error),
            },
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Queues one message for `topic`. It is sent on [`Publisher::flush`],
    /// when the buffer fills, or when the publisher is dropped.
    pub fn publish(&mut self, topic: &str, payload: &[u8]) -> Result<()> {
        if TOPIC_PREFIX.len() + topic.len() > u16::MAX as usize {
            return Err(ClientError::TooLong("topic name"));
        }
        if payload.len() > u32::MAX as usize {
            return Err(ClientError::TooLong("payload"));
        }
        let mut frame = Vec::with_capacity(12 + topic.len() + payload.len());
        binary::encode_publish(&mut frame, topic, payload);
        self.stream.write_all(&frame)?;
        Ok(())
    }

    /// Sends everything queued.
    pub fn flush(&mut self) -> Result<()> {
        self.stream.flush()?;
        Ok(())
    }
}

/// One message received by a [`Subscriber`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// A connection that subscribes to topics and receives their messages.
///
/// Every delivery must be answered with [`Subscriber::ack`] or
/// [`Subscriber::nack`], in the order received; an unanswered delivery is
/// sent again after the broker's ack timeout.
#[derive(Debug)]
pub struct Subscriber {
    stream: TcpStream,
    outgoing: BufWriter<TcpStream>,
    /// Received bytes; those before `decoded` have been decoded already.
    buffer: Vec<u8>,
    decoded: usize,
}

impl Subscriber {
    pub fn connect(addr: impl ToSocketAddrs) -> Result<Subscriber> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        let outgoing = BufWriter::with_capacity(8 << 10, stream.try_clone()?);
        Ok(Subscriber {
            stream,
            outgoing,
            buffer: Vec::new(),
            decoded: 0,
        })
    }

    /// Logs in as `login` (to a broker started with `--auth-file`), and
    /// waits for the broker to accept it. Call it before anything else.
    pub fn login(&mut self, login: &Login) -> Result<()> {
        self.request(&login.request()?, status::SUBSCRIBED)
    }

    /// Subscribes to `topics`, starting at `start`, and waits for the broker
    /// to confirm. A From offset above 65,535 uses brook's `u64` extension.
    pub fn subscribe<S: AsRef<str>>(&mut self, topics: &[S], start: StartAt) -> Result<()> {
        check_topic_names(topics)?;
        let mut request = Vec::new();
        binary::encode_subscribe(&mut request, topics, start);
        self.request(&request, status::SUBSCRIBED)
    }

    /// Joins the consumer group `group` of each of `topics` (brook's
    /// extension; a new group starts at `start`) and waits for the broker to
    /// confirm. The group's members share the topics' messages.
    pub fn subscribe_group<S: AsRef<str>>(
        &mut self,
        topics: &[S],
        group: &str,
        start: StartAt,
    ) -> Result<()> {
        check_topic_names(topics)?;
        if group.len() > MAX_TOPIC_NAME_BYTES {
            return Err(ClientError::TooLong("group name"));
        }
        let mut request = Vec::new();
        binary::encode_subscribe_group(&mut request, topics, group, start);
        self.request(&request, status::SUBSCRIBED)
    }

    /// Unsubscribes from `topics` and waits for the broker to confirm.
    pub fn unsubscribe<S: AsRef<str>>(&mut self, topics: &[S]) -> Result<()> {
        check_topic_names(topics)?;
        let mut request = Vec::new();
        binary::encode_unsubscribe(&mut request, topics);
        self.request(&request, status::UNSUBSCRIBED)
    }

    /// Waits for the next delivery.
    pub fn recv(&mut self) -> Result<Delivery> {
        loop {
            if let Some(delivery) = self.take_delivery()? {
                return Ok(delivery);
            }
            self.fill(None)?;
        }
    }

    /// Waits up to `timeout` for the next delivery; `Ok(None)` if none came.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Delivery>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(delivery) = self.take_delivery()? {
                return Ok(Some(delivery));
            }
            if !self.fill(Some(deadline))? {
                return Ok(None);
            }
        }
    }

    /// Acknowledges the oldest unanswered delivery.
    pub fn ack(&mut self) -> Result<()> {
        self.outgoing.write_all(&action::ACK.to_be_bytes())?;
        Ok(())
    }

    /// Refuses the oldest unanswered delivery: the broker sends it again
    /// after its ack delay.
    pub fn nack(&mut self) -> Result<()> {
        self.outgoing.write_all(&action::NACK.to_be_bytes())?;
        Ok(())
    }

    /// Sends answers queued by [`Subscriber::ack`] and
    /// [`Subscriber::nack`] now rather than at the next wait.
    pub fn flush(&mut self) -> Result<()> {
        self.outgoing.flush()?;
        Ok(())
    }

    fn request(&mut self, request: &[u8], success: u16) -> Result<()> {
        self.outgoing.write_all(request)?;
        loop {
            if let Some(outcome) = self.take_status(success)? {
                return outcome;
            }
            self.fill(None)?;
        }
    }

    /// Reads more bytes into the buffer, first sending any queued answers.
    /// Returns false if `deadline` passed first.
    fn fill(&mut self, deadline: Option<Instant>) -> Result<bool> {
        self.outgoing.flush()?;
        let timeout = match deadline {
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Ok(false),
            },
            None => None,
        };
        self.stream.set_read_timeout(timeout)?;
        let mut chunk = [0u8; 64 << 10];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(ClientError::Closed),
            Ok(n) => {
                self.buffer.drain(..self.decoded);
                self.decoded = 0;
                self.buffer.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(false)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(e) => Err(e.into()),
        }
    }

    /// Decodes one delivery from the buffer, if a whole one is there.
    fn take_delivery(&mut self) -> Result<Option<Delivery>> {
        let unread = &self.buffer[self.decoded..];
        let Some(topic_len) = read_u16(unread, 0) else {
            return Ok(None);
        };
        let topic_end = 2 + topic_len as usize;
        let Some(payload_len) = unread
            .get(topic_end..topic_end + 8)
            .map(BigEndian::read_u64)
        else {
            return Ok(None);
        };
        if payload_len > MAX_DELIVERY_BYTES {
            return Err(ClientError::Protocol(format!(
                "delivery of {payload_len} bytes"
            )));
        }
        let end = topic_end + 8 + payload_len as usize;
        if unread.len() < end {
            return Ok(None);
        }
        let topic = String::from_utf8(unread[2..topic_end].to_vec())
            .map_err(|_| ClientError::Protocol("topic name is not UTF-8".into()))?;
        let payload = unread[topic_end + 8..end].to_vec();
        self.decoded += end;
        Ok(Some(Delivery { topic, payload }))
    }

    /// Decodes one status from the buffer, if a whole one is there.
    fn take_status(&mut self, success: u16) -> Result<Option<Result<()>>> {
        let unread = &self.buffer[self.decoded..];
        let Some(code) = read_u16(unread, 0) else {
            return Ok(None);
        };
        if code == success {
            self.decoded += 2;
            return Ok(Some(Ok(())));
        }
        if code != status::ERROR {
            return Err(ClientError::Protocol(format!("unexpected status {code}")));
        }
        let Some(len) = read_u16(unread, 2) else {
            return Ok(None);
        };
        let end = 4 + len as usize;
        if unread.len() < end {
            return Ok(None);
        }
        let reason = String::from_utf8_lossy(&unread[4..end]).into_owned();
        self.decoded += end;
        Ok(Some(Err(ClientError::Refused(reason))))
    }
}

/// Reads the `u16` length and reason after an Error status.
fn read_refusal(socket: &mut impl Read) -> Result<ClientError> {
    let len = u16::from_be_bytes(read_be::<2>(socket)?);
    let mut reason = vec![0u8; usize::from(len)];
    read_exact(socket, &mut reason)?;
    Ok(ClientError::Refused(
        String::from_utf8_lossy(&reason).into(),
    ))
}

/// Reads exactly `N` bytes.
fn read_be<const N: usize>(socket: &mut impl Read) -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    read_exact(socket, &mut bytes)?;
    Ok(bytes)
}

/// `read_exact`, with the end of the stream reported as [`ClientError::Closed`].
fn read_exact(socket: &mut impl Read, bytes: &mut [u8]) -> Result<()> {
    socket
        .read_exact(bytes)
        .map_err(|error| match error.kind() {
            io::ErrorKind::UnexpectedEof => ClientError::Closed,
            _ => ClientError::Io(error),
        })
}

fn read_u16(buffer: &[u8], at: usize) -> Option<u16> {
    buffer.get(at..at + 2).map(BigEndian::read_u16)
}

fn check_topic_names<S: AsRef<str>>(topics: &[S]) -> Result<()> {
    match topics
        .iter()
        .any(|t| t.as_ref().len() > MAX_TOPIC_NAME_BYTES)
    {
        true => Err(ClientError::TooLong("topic name")),
        false => Ok(()),
    }
}
