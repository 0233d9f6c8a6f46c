//! The offsets of a topic's log whose records are damaged on disk: found
//! by the start-up scan (`recovery.rs`), or by the fetcher as it reads a
//! run (`fetcher.rs`). The log answers a read of one with
//! [`Lookup::Unreadable`](crate::store::Lookup::Unreadable) rather than
//! ask the disk again and again, and every reader (subscribers, groups,
//! pulls) skips it: one damaged record never stalls a reader, nor holds
//! back retention through a cursor stuck before it.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use crate::ids::Offset;

/// The damaged offsets of one log, and how many there have been.
#[derive(Debug, Default)]
pub struct Unreadable {
    /// Ranges `start => end`, each `start..end`.
    ranges: BTreeMap<Offset, Offset>,
    /// How many offsets `ranges` has held, for `STATS`.
    count: u64,
}

impl Unreadable {
    /// Notes damaged records of `topic`, whose offsets readers will skip,
    /// and logs them: once, however often a read runs into them again.
    pub fn note(&mut self, topic: &str, offsets: Range<Offset>, why: impl fmt::Display) {
        if offsets.is_empty() || self.contains(offsets.start) {
            return;
        }
        log::error!("topic {topic:?}: {why}; readers skip it");
        self.count += offsets.end - offsets.start;
        self.ranges.insert(offsets.start, offsets.end);
    }

    /// Whether the record of `offset` is known to be damaged.
    pub fn contains(&self, offset: Offset) -> bool {
        let before = self.ranges.range(..=offset).next_back();
        before.is_some_and(|(_, &end)| offset < end)
    }

    /// How many offsets were found damaged since the broker started.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Forgets the ranges that end before `start`, the log's first offset
    /// since retention dropped the segments that held them.
    pub fn forget_before(&mut self, start: Offset) {
        self.ranges.retain(|_, end| *end > start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damage_is_counted_once_and_forgotten_with_its_segment() {
        let mut unreadable = Unreadable::default();
        unreadable.note("t", 10..13, "damage");
        unreadable.note("t", 11..12, "the same damage, read again");
        unreadable.note("t", 20..20, "no offsets");
        assert_eq!(unreadable.count(), 3);
        assert!(!unreadable.contains(9));
        assert!(unreadable.contains(10) && unreadable.contains(12));
        assert!(!unreadable.contains(13));
        unreadable.forget_before(13);
        assert!(!unreadable.contains(12));
        assert_eq!(unreadable.count(), 3, "the count is since the start");
    }
}
