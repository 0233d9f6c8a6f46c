//! The in-memory store (`--in-memory`): every topic's log is a `VecDeque`
//! of shared payloads, gone when the broker stops. It implements the same
//! two traits as the disk store (`disk/`), so the dispatcher cannot tell
//! them apart; both share one memory budget per store (`budget.rs`).

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::Arc;

use super::{Lookup, NamedLog, Store, StoreError, SyncJob, TopicLog, INCARNATION_BYTES};
use crate::budget::{cost, MemoryBudget, MESSAGE_OVERHEAD_BYTES};
use crate::ids::{random_hex, Offset, Payload};

/// Keeps every topic in memory, for as long as the broker runs, up to an
/// optional size per topic beyond which the oldest messages nobody still
/// needs are dropped, and within one budget for all topics together.
#[derive(Debug)]
pub struct MemoryStore {
    /// `--retention-bytes`: when a topic's payloads exceed this, its oldest
    /// messages are dropped. `None` keeps everything.
    retention_bytes: Option<usize>,
    /// `--memory-bytes`, shared by every log.
    budget: Arc<MemoryBudget>,
    /// New at each start: the offsets start again from 0 too.
    incarnation: String,
}

impl MemoryStore {
    pub fn new(retention_bytes: Option<usize>, memory_bytes: usize) -> MemoryStore {
        MemoryStore {
            retention_bytes,
            budget: Arc::new(MemoryBudget::new("--memory-bytes", memory_bytes)),
            incarnation: random_hex(INCARNATION_BYTES),
        }
    }
}

impl Store for MemoryStore {
    fn recover(&mut self) -> Result<Vec<NamedLog>, StoreError> {
        Ok(Vec::new())
    }

    fn open(&mut self, _name: &str) -> Result<Box<dyn TopicLog>, StoreError> {
        Ok(Box::new(MemoryLog {
            messages: VecDeque::new(),
            first: 0,
            bytes: 0,
            retention_bytes: self.retention_bytes,
            budget: self.budget.clone(),
            last_used: Cell::new(0),
        }))
    }

    fn budget(&self) -> &MemoryBudget {
        &self.budget
    }

    fn incarnation(&self) -> &str {
        &self.incarnation
    }
}

/// A topic log in a `VecDeque`: offset `first + n` is element `n`.
///
/// Retention matters for speed as well as for memory: a log that only grows
/// puts every new payload in memory the process has never touched, and on a
/// virtual machine each first touch of a page is a costly fault. A log that
/// drops its oldest messages hands their memory back to the allocator, which
/// gives it to the next payloads.
#[derive(Debug)]
pub struct MemoryLog {
    messages: VecDeque<Payload>,
    /// The offset of `messages[0]`.
    first: Offset,
    /// The payload bytes held.
    bytes: usize,
    retention_bytes: Option<usize>,
    budget: Arc<MemoryBudget>,
    /// See [`TopicLog::last_used`]. A `Cell`, since reads take `&self`.
    last_used: Cell<u64>,
}

impl MemoryLog {
    /// Drops the oldest message, if there is one.
    fn drop_oldest(&mut self) -> Option<()> {
        let oldest = self.messages.pop_front()?;
        self.bytes -= oldest.len();
        self.budget.give_back(cost(&oldest));
        self.first += 1;
        Some(())
    }
}

impl TopicLog for MemoryLog {
    fn append(&mut self, payload: Payload, _timestamp: u64) -> Result<Offset, StoreError> {
        self.bytes += payload.len();
        self.last_used.set(self.budget.take(cost(&payload)));
        self.messages.push_back(payload);
        Ok(self.end() - 1)
    }

    fn read(&self, offset: Offset) -> Lookup {
        let index = offset
            .checked_sub(self.first)
            .and_then(|i| usize::try_from(i).ok());
        match index.and_then(|i| self.messages.get(i)) {
            Some(payload) => {
                self.last_used.set(self.budget.now());
                Lookup::Message(payload.clone())
            }
            None => Lookup::Nothing,
        }
    }

    fn start(&self) -> Offset {
        self.first
    }

    fn end(&self) -> Offset {
        self.first + self.messages.len() as Offset
    }

    fn over_retention(&self) -> bool {
        self.retention_bytes.is_some_and(|limit| self.bytes > limit)
    }

    fn write(&mut self) -> Result<Option<SyncJob>, StoreError> {
        Ok(None)
    }

    fn apply_retention(&mut self, keep_from: Offset) {
        while self.over_retention() && self.first < keep_from && self.drop_oldest().is_some() {}
    }

    fn held_bytes(&self) -> usize {
        self.bytes + self.messages.len() * MESSAGE_OVERHEAD_BYTES
    }

    fn last_used(&self) -> u64 {
        self.last_used.get()
    }

    fn release_memory(&mut self, bytes: usize, keep_from: Offset) {
        let goal = self.held_bytes().saturating_sub(bytes);
        let before = self.first;
        while self.held_bytes() > goal && self.first < keep_from && self.drop_oldest().is_some() {}
        if self.first > before {
            self.budget.note_dropped();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_count_from_zero() {
        let mut log = MemoryStore::new(None, 1 << 20).open("t").unwrap();
        assert_eq!((log.start(), log.end()), (0, 0));
        assert_eq!(log.append(Payload::from(&b"a"[..]), 0).unwrap(), 0);
        assert_eq!(log.append(Payload::from(&b"b"[..]), 0).unwrap(), 1);
        assert_eq!(log.read(1), Lookup::Message(Payload::from(&b"b"[..])));
        assert_eq!(log.read(2), Lookup::Nothing);
        assert_eq!(log.end(), 2);
    }

    #[test]
    fn retention_drops_the_oldest_and_keeps_offsets() {
        let mut store = MemoryStore::new(Some(10), 1 << 20);
        let mut log = store.open("t").unwrap();
        for i in 0..5u8 {
            log.append(Payload::from(vec![i; 4]), 0).unwrap();
        }
        assert!(log.over_retention());
        // A reader at offset 2 protects it and everything after.
        log.apply_retention(2);
        assert_eq!((log.start(), log.end()), (2, 5));
        // Without readers: 20 bytes appended, 10 kept, the two newest.
        log.apply_retention(log.end());
        assert_eq!((log.start(), log.end()), (3, 5));
        assert!(!log.over_retention());
        assert_eq!(log.read(2), Lookup::Nothing);
        assert_eq!(log.read(3), Lookup::Message(Payload::from(vec![3u8; 4])));
        // A message larger than the limit goes too once nobody needs it.
        assert_eq!(log.append(Payload::from(vec![9; 50]), 0).unwrap(), 5);
        log.apply_retention(log.end());
        assert_eq!((log.start(), log.end()), (6, 6));
    }

    #[test]
    fn the_budget_counts_every_log_and_release_spares_what_readers_need() {
        let mut store = MemoryStore::new(None, 1 << 20);
        let (mut a, mut b) = (store.open("a").unwrap(), store.open("b").unwrap());
        for i in 0..10u8 {
            a.append(Payload::from(vec![i; 100]), 0).unwrap();
        }
        b.append(Payload::from(vec![0; 100]), 0).unwrap();
        let each = 100 + MESSAGE_OVERHEAD_BYTES;
        assert_eq!(store.budget().used(), 11 * each);
        assert_eq!(a.held_bytes(), 10 * each);
        // `b` was used last; reading `a` makes it the more recent.
        assert!(a.last_used() < b.last_used());
        assert!(matches!(a.read(3), Lookup::Message(_)));
        assert!(a.last_used() >= b.last_used());

        // Asked for 3 messages' worth, but a reader needs offset 2 on.
        a.release_memory(3 * each, 2);
        assert_eq!((a.start(), store.budget().used()), (2, 9 * each));
        a.release_memory(3 * each, a.end());
        assert_eq!((a.start(), a.end()), (5, 10));
        assert_eq!(store.budget().used(), 6 * each);
    }
}
