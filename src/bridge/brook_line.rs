//! The bridge's consuming connection to brook, over brook's line protocol.
//!
//! Why the line protocol and not [`crate::client::Subscriber`]: a JetStream
//! message id must name the brook message (`<topic>:<incarnation>:<offset>`),
//! and only the line protocol's deliveries carry the offset (`MSG <topic>
//! <offset> <nbytes>`) and only its `STATS` the incarnation (the store's
//! random id: a brook in memory, or on a new data directory, gives offsets
//! from 0 again, under a new one); the binary protocol's deliveries are the
//! Go broker's, topic and payload only.
//!
//! ```text
//!  connect ── AUTH (if a login) ── STATS ── +STAT incarnation <id> ... +END
//!          ── SUB <pattern> beginning manual group <group> ── +OK
//!  reader thread: MSG lines and payloads ──► Delivery channel (bounded) ──► to_nats
//!  to_nats ── answer() ── "ACK\n" or "NACK\n" ──► brook   (one per delivery, in delivery order)
//! ```

use std::fmt;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::client::Login;
use crate::wire::line::{self, encode_topic, MsgLine};

/// The largest payload the bridge takes from brook; brook's own default
/// `--max-message-bytes` is well below it.
const MAX_PAYLOAD: usize = 64 << 20;

/// The longest `MSG` line: a topic name of brook's longest plus the numbers.
const MAX_LINE: usize = 64 << 10;

/// How long a write to brook may block.
const WRITE_PATIENCE: Duration = Duration::from_secs(10);

/// The bridge's answer to a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Done with: mirrored.
    Ack,
    /// Cannot be mirrored: brook sends it again after its ack delay, and
    /// after `--max-deliveries` gives it up to `<topic>.dlq`.
    Nack,
}

/// One message delivered by brook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub topic: String,
    pub offset: u64,
    pub payload: Vec<u8>,
}

/// What can go wrong on the brook side.
#[derive(Debug)]
pub enum BrookError {
    Io(io::Error),
    Closed,
    /// brook answered `-ERR` with this reason.
    Refused(String),
    /// A line the bridge did not expect here.
    Unexpected(String),
    /// `STATS` showed no incarnation: a brook older than the bridge.
    NoIncarnation,
}

impl fmt::Display for BrookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrookError::Io(error) => write!(f, "brook connection: {error}"),
            BrookError::Closed => write!(f, "brook closed the connection"),
            BrookError::Refused(reason) => write!(f, "brook refused: {reason}"),
            BrookError::Unexpected(line) => write!(f, "unexpected line from brook: {line:?}"),
            BrookError::NoIncarnation => write!(
                f,
                "brook's STATS shows no incarnation: upgrade brook to the bridge's version"
            ),
        }
    }
}

impl std::error::Error for BrookError {}

impl From<io::Error> for BrookError {
    fn from(error: io::Error) -> BrookError {
        match error.kind() {
            io::ErrorKind::UnexpectedEof => BrookError::Closed,
            _ => BrookError::Io(error),
        }
    }
}

/// A group member's connection: deliveries come on a channel, answers
/// (an ack or a nack each) go out through [`GroupFeed::answer`].
/// Dropping it closes the socket.
#[derive(Debug)]
pub struct GroupFeed {
    socket: TcpStream,
    writer: BufWriter<TcpStream>,
    deliveries: Receiver<Result<Delivery, BrookError>>,
    incarnation: String,
}

impl GroupFeed {
    /// Connects to brook at `addr`, logs in, and joins `group` of `pattern`
    /// from the beginning with manual acks. At most `window` deliveries
    /// wait in the channel.
    pub fn join(
        addr: &str,
        login: Option<&Login>,
        pattern: &str,
        group: &str,
        window: usize,
    ) -> Result<GroupFeed, BrookError> {
        let socket = TcpStream::connect(addr)?;
        socket.set_nodelay(true)?;
        // Acks are small: a write that blocks this long is a brook that
        // stopped reading, and the session starts again.
        socket.set_write_timeout(Some(WRITE_PATIENCE))?;
        let mut writer = BufWriter::new(socket.try_clone()?);
        let mut reader = BufReader::with_capacity(64 << 10, socket.try_clone()?);
        if let Some(login) = login {
            writer.write_all(&auth_line(login))?;
            expect_ok(&mut writer, &mut reader)?;
        }
        let incarnation = read_incarnation(&mut writer, &mut reader)?;
        writeln!(writer, "SUB {pattern} beginning manual group {group}")?;
        expect_ok(&mut writer, &mut reader)?;
        log::info!("joined brook group {group} of {pattern} at {addr}");
        let (sender, deliveries) = crossbeam_channel::bounded(window);
        thread::Builder::new()
            .name("brook-feed".into())
            .spawn(move || read_deliveries(reader, sender))?;
        Ok(GroupFeed {
            socket,
            writer,
            deliveries,
            incarnation,
        })
    }

    /// The brook store's incarnation, which `<topic>:<offset>` is unique
    /// within.
    pub fn incarnation(&self) -> &str {
        &self.incarnation
    }

    pub fn deliveries(&self) -> &Receiver<Result<Delivery, BrookError>> {
        &self.deliveries
    }

    /// Answers the oldest unanswered delivery; goes out on
    /// [`GroupFeed::flush`].
    pub fn answer(&mut self, answer: Answer) -> Result<(), BrookError> {
        self.writer.write_all(match answer {
            Answer::Ack => b"ACK\n",
            Answer::Nack => b"NACK\n",
        })?;
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), BrookError> {
        self.writer.flush()?;
        Ok(())
    }
}

impl Drop for GroupFeed {
    fn drop(&mut self) {
        let _ = self.writer.flush();
        let _ = self.socket.shutdown(Shutdown::Both);
    }
}

/// `AUTH <user> <password>`, each word written as the line protocol reads
/// it back (quoted if it has a space or a quote), and a newline.
fn auth_line(login: &Login) -> Vec<u8> {
    let mut line = b"AUTH ".to_vec();
    encode_topic(&mut line, login.user());
    line.push(b' ');
    encode_topic(&mut line, login.password());
    line.push(b'\n');
    line
}

fn expect_ok(
    writer: &mut BufWriter<TcpStream>,
    reader: &mut BufReader<TcpStream>,
) -> Result<(), BrookError> {
    writer.flush()?;
    let line = read_line(reader)?;
    match line.strip_prefix("-ERR ") {
        Some(reason) => Err(BrookError::Refused(reason.to_owned())),
        None if line.starts_with("+OK") => Ok(()),
        None => Err(BrookError::Unexpected(line)),
    }
}

/// Asks `STATS` and reads its `+STAT incarnation <id>` line.
fn read_incarnation(
    writer: &mut BufWriter<TcpStream>,
    reader: &mut BufReader<TcpStream>,
) -> Result<String, BrookError> {
    writeln!(writer, "STATS")?;
    writer.flush()?;
    let mut incarnation = None;
    loop {
        let line = read_line(reader)?;
        if line == "+END" {
            return incarnation.ok_or(BrookError::NoIncarnation);
        }
        if let Some(reason) = line.strip_prefix("-ERR ") {
            return Err(BrookError::Refused(reason.to_owned()));
        }
        if let Some(id) = line.strip_prefix("+STAT incarnation ") {
            incarnation = Some(id.to_owned());
        }
    }
}

fn read_line(reader: &mut BufReader<TcpStream>) -> Result<String, BrookError> {
    let mut line = Vec::new();
    reader
        .by_ref()
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut line)?;
    match line.pop() {
        Some(b'\n') => {}
        None => return Err(BrookError::Closed),
        Some(_) => return Err(BrookError::Unexpected("a line without its end".into())),
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// The reader thread: every delivery to the channel, then the error that
/// ended the connection.
fn read_deliveries(
    mut reader: BufReader<TcpStream>,
    deliveries: Sender<Result<Delivery, BrookError>>,
) {
    loop {
        let delivery = read_delivery(&mut reader);
        let failed = delivery.is_err();
        if deliveries.send(delivery).is_err() || failed {
            return;
        }
    }
}

/// `MSG <topic> <offset> <nbytes>`, the payload, a newline.
fn read_delivery(reader: &mut BufReader<TcpStream>) -> Result<Delivery, BrookError> {
    let line = read_line(reader)?;
    if let Some(reason) = line.strip_prefix("-ERR ") {
        return Err(BrookError::Refused(reason.to_owned()));
    }
    let (topic, offset, len) = parse_msg_line(&line).ok_or(BrookError::Unexpected(line))?;
    let mut payload = vec![0u8; len + 1];
    reader.read_exact(&mut payload)?;
    if payload.pop() != Some(b'\n') {
        return Err(BrookError::Unexpected(
            "a payload not followed by a newline".into(),
        ));
    }
    Ok(Delivery {
        topic,
        offset,
        payload,
    })
}

/// The topic, offset and byte count of a `MSG` line, the payload's at
/// most [`MAX_PAYLOAD`]. A topic that brook writes quoted (a name with a
/// space, a quote or a control character) comes decoded: no NATS subject
/// has those, and `to_nats.rs` skips it.
fn parse_msg_line(line: &str) -> Option<(String, u64, usize)> {
    let MsgLine { topic, offset, len } = line::parse_msg_line(line)?;
    let len = usize::try_from(len).ok().filter(|&n| n <= MAX_PAYLOAD)?;
    Some((topic.into_owned(), offset, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msg_lines_give_topic_offset_and_a_length_within_the_limit() {
        assert_eq!(
            parse_msg_line("MSG orders.eu 41 5"),
            Some(("orders.eu".into(), 41, 5))
        );
        let over = format!("MSG a 1 {}", MAX_PAYLOAD + 1);
        assert_eq!(parse_msg_line(&over), None);
    }

    #[test]
    fn login_words_are_quoted_where_they_must_be() {
        let login = Login::new("alice", "my \"secret\"\\");
        let expected = br#"AUTH alice "my \"secret\"\\""#;
        assert_eq!(auth_line(&login), [&expected[..], b"\n"].concat());
    }
}
