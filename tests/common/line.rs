//! A line-protocol client that reads the broker's replies one line or one
//! `MSG` block at a time, each read under a deadline.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::{read_uninterrupted, WAIT};

/// A connection speaking the line protocol (its first byte is not `0x00`).
/// It sends text or raw bytes, and reads the broker's replies one line or
/// one `MSG` block at a time. Each read waits at most [`WAIT`] in all
/// (or the patience it was connected with); a timeout, a close or a
/// malformed reply fails the test.
pub struct Line {
    stream: TcpStream,
    /// Bytes received and not consumed yet.
    buffer: Vec<u8>,
    /// The longest one read waits.
    patience: Duration,
}

/// One `MSG` block: the topic as the broker wrote it (quoted if it had to
/// be), the offset, and the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub topic: String,
    pub offset: u64,
    pub payload: Vec<u8>,
}

impl Line {
    pub fn connect(addr: SocketAddr) -> Line {
        Line::connect_with_patience(addr, WAIT)
    }

    /// A connection whose reads wait up to `patience`, for tests that make
    /// the broker work hard enough for one reply to take longer than
    /// [`WAIT`].
    pub fn connect_with_patience(addr: SocketAddr, patience: Duration) -> Line {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).unwrap();
        Line {
            stream,
            buffer: Vec::new(),
            patience,
        }
    }

    /// Writes `bytes` as they are, in one write call (add the `\n` yourself).
    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream.write_all(bytes.as_ref()).expect("write");
    }

    /// A second handle on the socket, for a thread that pipelines requests
    /// while this one reads the replies.
    pub fn try_clone_stream(&self) -> TcpStream {
        self.stream.try_clone().expect("clone the socket")
    }

    /// Closes the sending side, as `nc -N` does at the end of its input.
    pub fn close_write(&mut self) {
        self.stream.shutdown(std::net::Shutdown::Write).unwrap();
    }

    /// Reads one line and returns it without its `\n`.
    #[track_caller]
    pub fn read_line(&mut self) -> String {
        let deadline = std::time::Instant::now() + self.patience;
        loop {
            if let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).take(end).collect();
                return String::from_utf8(line)
                    .unwrap_or_else(|e| panic!("reply is not UTF-8: {:?}", e.as_bytes()));
            }
            self.fill(deadline);
        }
    }

    /// Reads one line and asserts it is `expected` (without the `\n`).
    #[track_caller]
    pub fn expect_line(&mut self, expected: &str) {
        assert_eq!(self.read_line(), expected);
    }

    /// Sends `command` and its `\n`, and returns the one-line reply.
    #[track_caller]
    pub fn ask(&mut self, command: &str) -> String {
        self.send(format!("{command}\n"));
        self.read_line()
    }

    /// Reads lines up to `+END` and returns those before it.
    #[track_caller]
    pub fn read_until_end(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            match self.read_line() {
                end if end == "+END" => return lines,
                line => lines.push(line),
            }
        }
    }

    /// Reads one `MSG <topic> <offset> <n>` line, `n` bytes and a `\n`.
    #[track_caller]
    pub fn read_msg(&mut self) -> Msg {
        let header = self.read_line();
        self.msg_after(&header)
    }

    #[track_caller]
    pub fn expect_msg(&mut self, topic: &str, offset: u64, payload: &[u8]) {
        let msg = self.read_msg();
        assert_eq!(
            (
                msg.topic.as_str(),
                msg.offset,
                String::from_utf8_lossy(&msg.payload)
            ),
            (topic, offset, String::from_utf8_lossy(payload))
        );
        assert_eq!(msg.payload, payload);
    }

    /// The figure `name` of a `STATS` reply.
    #[track_caller]
    pub fn stat(&mut self, name: &str) -> u64 {
        self.send("STATS\n");
        let lines = self.read_until_end();
        let prefix = format!("+STAT {name} ");
        let line = lines.iter().find_map(|line| line.strip_prefix(&prefix));
        line.unwrap_or_else(|| panic!("no {name} in {lines:?}"))
            .parse()
            .expect("a number")
    }

    /// Reads the reply to a `PULL`: its `MSG` blocks and the `+END` count.
    #[track_caller]
    pub fn read_pull(&mut self) -> (Vec<Msg>, u64) {
        let mut msgs = Vec::new();
        loop {
            let line = self.read_line();
            match line.strip_prefix("+END ") {
                Some(count) => return (msgs, count.parse().expect("+END count")),
                None => msgs.push(self.msg_after(&line)),
            }
        }
    }

    /// Reads the rest of the `MSG` whose header line `header` was read.
    #[track_caller]
    pub fn msg_after(&mut self, header: &str) -> Msg {
        let fields = header.strip_prefix("MSG ").map(|rest| {
            let mut fields = rest.rsplitn(3, ' ');
            let n = fields.next().and_then(|n| n.parse::<usize>().ok());
            let offset = fields.next().and_then(|o| o.parse::<u64>().ok());
            (fields.next(), offset, n)
        });
        let Some((Some(topic), Some(offset), Some(n))) = fields else {
            panic!("expected a MSG line, got {header:?}");
        };
        assert!(n <= 16 << 20, "MSG of {n} bytes");
        let deadline = std::time::Instant::now() + self.patience;
        while self.buffer.len() < n + 1 {
            self.fill(deadline);
        }
        let mut block: Vec<u8> = self.buffer.drain(..=n).collect();
        assert_eq!(block.pop(), Some(b'\n'), "no newline after the payload");
        Msg {
            topic: topic.to_owned(),
            offset,
            payload: block,
        }
    }

    #[track_caller]
    fn fill(&mut self, deadline: std::time::Instant) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let pending = String::from_utf8_lossy(&self.buffer).into_owned();
        if left.is_zero() {
            panic!(
                "nothing more within {:?}; pending {pending:?}",
                self.patience
            );
        }
        self.stream.set_read_timeout(Some(left)).unwrap();
        let mut chunk = [0u8; 64 << 10];
        match self.stream.read(&mut chunk) {
            Ok(0) => panic!("the broker closed the connection; pending {pending:?}"),
            Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
            // A signal reached this thread (a test of signals, say): a read
            // with a timeout is not restarted, so the caller reads again.
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!(
                    "nothing more within {:?}; pending {pending:?}",
                    self.patience
                )
            }
            Err(e) => panic!("read failed: {e}; pending {pending:?}"),
        }
    }

    /// Asserts that nothing arrives (or is left unread) for `window`.
    #[track_caller]
    pub fn expect_silence(&mut self, window: Duration) {
        self.assert_drained();
        self.stream.set_read_timeout(Some(window)).unwrap();
        self.expect_nothing_read();
    }

    /// Asserts that nothing has arrived yet, without waiting: for a reply
    /// that must come after something else has happened.
    #[track_caller]
    pub fn expect_nothing_yet(&mut self) {
        self.assert_drained();
        self.stream.set_nonblocking(true).unwrap();
        self.expect_nothing_read();
        self.stream.set_nonblocking(false).unwrap();
    }

    /// Asserts that a read finds nothing, as its timeout or non-blocking
    /// mode lets it.
    #[track_caller]
    fn expect_nothing_read(&mut self) {
        let mut chunk = [0u8; 4096];
        match read_uninterrupted(&mut self.stream, &mut chunk) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Ok(0) => panic!("the broker closed the connection"),
            Ok(n) => panic!("unexpected {:?}", String::from_utf8_lossy(&chunk[..n])),
            Err(e) => panic!("read failed: {e}"),
        }
    }

    /// Asserts that the broker closes the connection, with nothing more
    /// sent, within [`WAIT`].
    #[track_caller]
    pub fn expect_eof(&mut self) {
        self.assert_drained();
        self.stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut chunk = [0u8; 4096];
        match read_uninterrupted(&mut self.stream, &mut chunk) {
            Ok(0) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Ok(n) => panic!(
                "expected the connection to close, got {:?}",
                String::from_utf8_lossy(&chunk[..n])
            ),
            Err(e) => panic!("expected the connection to close: {e}"),
        }
    }

    #[track_caller]
    fn assert_drained(&self) {
        let pending = String::from_utf8_lossy(&self.buffer);
        assert!(self.buffer.is_empty(), "unexpected {pending:?}");
    }
}
