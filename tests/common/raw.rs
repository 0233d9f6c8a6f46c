//! A bare socket to the broker, for tests about the bytes on the wire: it
//! reads exact byte counts under a timeout.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::frames::{delivery_frame, error_reply, subscribe_request, CURRENT, SUBSCRIBED};
use super::{read_uninterrupted, WAIT};

/// A bare socket to the broker, for tests about the bytes on the wire.
pub struct Raw {
    stream: TcpStream,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        Raw { stream }
    }

    /// Writes `bytes` in one write call.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Writes `bytes` one byte per write call (Nagle is off, so each byte
    /// leaves at once).
    pub fn send_bytewise(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.stream.write_all(&[*byte]).expect("write");
        }
    }

    /// Closes the sending side: the broker sees the end of the stream.
    pub fn close_write(&mut self) {
        self.stream.shutdown(std::net::Shutdown::Write).unwrap();
    }

    /// Reads exactly `n` bytes, failing the test if they do not come in time.
    pub fn read_n(&mut self, n: usize) -> Vec<u8> {
        let mut bytes = vec![0; n];
        if let Err(error) = self.stream.read_exact(&mut bytes) {
            panic!("reading {n} bytes: {error}");
        }
        bytes
    }

    /// Reads `expected.len()` bytes and asserts they are `expected`.
    pub fn expect(&mut self, expected: &[u8]) {
        let got = self.read_n(expected.len());
        assert_eq!(
            got,
            expected,
            "expected {:?}, got {:?}",
            String::from_utf8_lossy(expected),
            String::from_utf8_lossy(&got)
        );
    }

    pub fn expect_error(&mut self, reason: &str) {
        self.expect(&error_reply(reason));
    }

    /// Reads one delivery: (topic bytes, payload).
    pub fn read_delivery(&mut self) -> (Vec<u8>, Vec<u8>) {
        let topic_len = u16::from_be_bytes(self.read_n(2).try_into().unwrap());
        let topic = self.read_n(topic_len as usize);
        let payload_len = u64::from_be_bytes(self.read_n(8).try_into().unwrap());
        assert!(payload_len <= 16 << 20, "delivery of {payload_len} bytes");
        let payload = self.read_n(payload_len as usize);
        (topic, payload)
    }

    pub fn expect_delivery(&mut self, topic: &str, payload: &[u8]) {
        self.expect(&delivery_frame(topic, payload));
    }

    /// Asserts that nothing arrives for `window`.
    pub fn expect_silence(&mut self, window: Duration) {
        self.stream.set_read_timeout(Some(window)).unwrap();
        let mut byte = [0u8; 1];
        match read_uninterrupted(&mut self.stream, &mut byte) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Ok(0) => panic!("the broker closed the connection"),
            Ok(_) => panic!("unexpected byte {:#04x}", byte[0]),
            Err(e) => panic!("read failed: {e}"),
        }
        self.stream.set_read_timeout(Some(WAIT)).unwrap();
    }

    /// Asserts that the broker closes the connection (after anything already
    /// read), within [`WAIT`].
    pub fn expect_eof(&mut self) {
        let mut byte = [0u8; 1];
        match read_uninterrupted(&mut self.stream, &mut byte) {
            Ok(0) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Ok(_) => panic!("expected the connection to close, got {:#04x}", byte[0]),
            Err(e) => panic!("expected the connection to close: {e}"),
        }
    }
}

/// A raw connection subscribed to the topics of `json` (a JSON list) from
/// Current, its Subscribed status read.
pub fn raw_subscriber(addr: SocketAddr, json: &str) -> Raw {
    let mut subscriber = Raw::connect(addr);
    subscriber.send(&subscribe_request(json, &CURRENT));
    subscriber.expect(&SUBSCRIBED);
    subscriber
}
