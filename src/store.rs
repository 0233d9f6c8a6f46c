//! Topic storage: every topic is an append-only log of messages, numbered by
//! offset from 0.
//!
//! The dispatcher owns one [`TopicLog`] per topic and is the only thread that
//! touches it, so the interface is plain `&mut self` with no locking. It needs
//! very little: append a message and learn its offset, read the message at an
//! offset, and know the range of offsets the log holds. Subscribers are just
//! cursors into this log (see `session.rs`), so replay from the beginning and
//! live delivery are the same operation.
//!
//! [`MemoryStore`] keeps every message in RAM. A disk store slots in behind
//! the same two traits without the protocol or dispatcher code changing.

use crate::protocol::Payload;

/// The position of a message in its topic's log.
pub type Offset = u64;

/// Creates the log of each topic the broker meets.
pub trait Store: Send {
    /// Opens (or creates) the log of the topic called `name`.
    fn open(&mut self, name: &str) -> Box<dyn TopicLog>;
}

/// One topic's log.
pub trait TopicLog: Send {
    /// Appends a message and returns its offset.
    fn append(&mut self, payload: Payload) -> Offset;

    /// The message at `offset`, if the log still holds it.
    fn read(&self, offset: Offset) -> Option<Payload>;

    /// The offset of the oldest message still held (equal to
    /// [`TopicLog::end`] when the log is empty).
    fn start(&self) -> Offset;

    /// The offset the next appended message will get.
    fn end(&self) -> Offset;
}

/// Keeps every topic in memory, for as long as the broker runs.
#[derive(Debug, Default)]
pub struct MemoryStore;

impl Store for MemoryStore {
    fn open(&mut self, _name: &str) -> Box<dyn TopicLog> {
        Box::new(MemoryLog::default())
    }
}

/// A topic log in a `Vec`: offset `n` is element `n`.
#[derive(Debug, Default)]
pub struct MemoryLog {
    messages: Vec<Payload>,
}

impl TopicLog for MemoryLog {
    fn append(&mut self, payload: Payload) -> Offset {
        self.messages.push(payload);
        self.messages.len() as Offset - 1
    }

    fn read(&self, offset: Offset) -> Option<Payload> {
        let index = usize::try_from(offset).ok()?;
        self.messages.get(index).cloned()
    }

    fn start(&self) -> Offset {
        0
    }

    fn end(&self) -> Offset {
        self.messages.len() as Offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_count_from_zero() {
        let mut log = MemoryStore.open("t");
        assert_eq!((log.start(), log.end()), (0, 0));
        assert_eq!(log.append(Payload::from(&b"a"[..])), 0);
        assert_eq!(log.append(Payload::from(&b"b"[..])), 1);
        assert_eq!(log.read(1).as_deref(), Some(&b"b"[..]));
        assert_eq!(log.read(2), None);
        assert_eq!(log.end(), 2);
    }
}
