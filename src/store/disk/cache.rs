//! What a disk log holds in memory, and its count against the budget all
//! the logs share, `--cache-bytes` (`budget.rs`).
//!
//! A log holds three things: the newest payloads (every append pushes
//! one, so subscribers that keep up read from here), the last run of
//! older records the fetcher read back from a segment (for the reads that
//! follow it), and its write buffer, of which only the capacity is
//! counted here (`log.rs` owns the bytes). When the logs together hold
//! more than the budget, the least recently used ones let go of memory
//! first ([`Cache::last_used`]): the read-ahead run, then the oldest
//! payloads, which can be read back from their segment.
//!
//! The cache knows payloads, not offsets: the newest end at the log's
//! next offset, which the log passes in, so the first cached offset is
//! derived, never stored ([`Cache::first`]).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::Arc;

use crate::budget::{cost, MemoryBudget};
use crate::ids::{Offset, Payload};

/// The memory one disk log holds, counted against its budget.
#[derive(Debug)]
pub struct Cache {
    /// The newest payloads, oldest first, up to the log's next offset. It
    /// always holds every record still in the write buffer, which the
    /// segment file does not have yet.
    newest: VecDeque<Payload>,
    /// The last run of older records the fetcher read from a segment. A
    /// `RefCell`, like `last_used` a `Cell`: reads take `&self` (the
    /// dispatcher lends logs out shared), and only the dispatcher thread
    /// touches a log.
    read_ahead: RefCell<ReadAhead>,
    /// The write buffer's capacity, as last counted.
    buffer_counted: usize,
    budget: Arc<MemoryBudget>,
    /// How much of `budget` the three hold.
    held: usize,
    /// See [`TopicLog::last_used`](crate::store::TopicLog::last_used).
    last_used: Cell<u64>,
}

/// Records read from a segment ahead of need: offsets `first..`.
#[derive(Debug, Default)]
struct ReadAhead {
    first: Offset,
    payloads: Vec<Payload>,
}

impl ReadAhead {
    /// What its payloads cost the budget.
    fn cost(&self) -> usize {
        self.payloads.iter().map(cost).sum()
    }

    fn get(&self, offset: Offset) -> Option<Payload> {
        let index = usize::try_from(offset.checked_sub(self.first)?).ok()?;
        self.payloads.get(index).cloned()
    }
}

impl Cache {
    /// An empty cache, counted against `budget`.
    pub fn new(budget: Arc<MemoryBudget>) -> Cache {
        Cache {
            newest: VecDeque::new(),
            read_ahead: RefCell::default(),
            buffer_counted: 0,
            budget,
            held: 0,
            last_used: Cell::new(0),
        }
    }

    /// The offset of the oldest payload cached, in a log whose next offset
    /// is `next` (equal to `next` when none is).
    pub fn first(&self, next: Offset) -> Offset {
        next - self.newest.len() as Offset
    }

    /// Caches `payload`, just appended, as the newest.
    pub fn push(&mut self, payload: Payload) {
        self.hold(cost(&payload));
        self.newest.push_back(payload);
    }

    /// The cached payload of `offset`, in a log whose next offset is
    /// `next`.
    pub fn newest(&self, offset: Offset, next: Offset) -> Option<Payload> {
        let index = offset.checked_sub(self.first(next))?;
        let payload = self.newest.get(usize::try_from(index).ok()?).cloned();
        self.note_use(payload.is_some());
        payload
    }

    /// The payload of `offset` from the last run read back, if it has it.
    pub fn read_ahead(&self, offset: Offset) -> Option<Payload> {
        let payload = self.read_ahead.borrow().get(offset);
        self.note_use(payload.is_some());
        payload
    }

    /// Drops the newest payload: one the disk had no room for.
    pub fn drop_newest(&mut self) {
        if let Some(payload) = self.newest.pop_back() {
            self.let_go(cost(&payload));
        }
    }

    /// Drops the oldest cached payload, if there is one.
    pub fn drop_oldest(&mut self) -> Option<()> {
        let oldest = self.newest.pop_front()?;
        self.let_go(cost(&oldest));
        Some(())
    }

    /// Keeps `payloads`, read back from offset `first` on, for the reads
    /// that follow, instead of the last run.
    pub fn keep_read_ahead(&mut self, first: Offset, payloads: Vec<Payload>) {
        self.drop_read_ahead();
        let run = ReadAhead { first, payloads };
        self.hold(run.cost());
        *self.read_ahead.get_mut() = run;
    }

    pub fn drop_read_ahead(&mut self) {
        let run = std::mem::take(self.read_ahead.get_mut());
        self.let_go(run.cost());
    }

    /// Counts the write buffer's `capacity`, if it changed.
    pub fn count_buffer(&mut self, capacity: usize) {
        match capacity.cmp(&self.buffer_counted) {
            std::cmp::Ordering::Greater => self.hold(capacity - self.buffer_counted),
            std::cmp::Ordering::Less => self.let_go(self.buffer_counted - capacity),
            std::cmp::Ordering::Equal => {}
        }
        self.buffer_counted = capacity;
    }

    /// How much of the budget the log holds.
    pub fn held(&self) -> usize {
        self.held
    }

    /// When the log last took memory or was read from its memory, on the
    /// budget's clock.
    pub fn last_used(&self) -> u64 {
        self.last_used.get()
    }

    /// Counts `bytes` more held against the budget, and notes the use.
    fn hold(&mut self, bytes: usize) {
        self.held += bytes;
        self.last_used.set(self.budget.take(bytes));
    }

    /// Counts `bytes` no longer held.
    fn let_go(&mut self, bytes: usize) {
        self.held -= bytes;
        self.budget.give_back(bytes);
    }

    /// Notes a read that found its payload in memory.
    fn note_use(&self, found: bool) {
        if found {
            self.last_used.set(self.budget.now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(byte: u8) -> Payload {
        Payload::from(vec![byte; 10])
    }

    #[test]
    fn the_first_cached_offset_follows_the_log_s_next_one() {
        let budget = Arc::new(MemoryBudget::new("--cache-bytes", 1 << 20));
        let mut cache = Cache::new(budget.clone());
        assert_eq!(cache.first(7), 7, "nothing cached");
        for byte in 7..10 {
            cache.push(payload(byte));
        }
        // Offsets 7, 8 and 9 are cached: the log's next offset is 10.
        assert_eq!(cache.first(10), 7);
        assert_eq!(cache.newest(8, 10), Some(payload(8)));
        assert_eq!(cache.newest(6, 10), None);
        cache.drop_oldest();
        cache.drop_newest(); // offset 9, taken back: the next is 9 again
        assert_eq!(cache.first(9), 8);
        assert_eq!(cache.newest(8, 9), Some(payload(8)));
        assert_eq!(cache.held(), cost(&payload(8)));
        assert_eq!(budget.used(), cache.held());
    }

    #[test]
    fn the_read_ahead_run_and_the_buffer_count_against_the_budget() {
        let budget = Arc::new(MemoryBudget::new("--cache-bytes", 1 << 20));
        let mut cache = Cache::new(budget.clone());
        cache.keep_read_ahead(3, vec![payload(3), payload(4)]);
        assert_eq!(cache.read_ahead(4), Some(payload(4)));
        assert_eq!(cache.read_ahead(5), None);
        cache.count_buffer(100);
        assert_eq!(budget.used(), 2 * cost(&payload(3)) + 100);
        cache.keep_read_ahead(5, vec![payload(5)]); // replaces the last run
        cache.count_buffer(0);
        assert_eq!(budget.used(), cost(&payload(5)));
        cache.drop_read_ahead();
        assert_eq!((cache.held(), budget.used()), (0, 0));
    }
}
