//! One memory budget for all the messages a store holds in memory, however
//! many topics share it.
//!
//! Each log counts the payloads it keeps in memory against its store's
//! `MemoryBudget`: the disk store its cache of recent payloads and the
//! last run it read back from a segment, the memory store every message it
//! holds. At the end of each round the dispatcher looks at the total, and
//! if it is over the limit asks the logs to let go, the least recently used
//! topic first:
//!
//! ```text
//!   append / read ──▶ log ──counts──▶ MemoryBudget { used, limit }
//!                                             │ over the limit?
//!   end of round: dispatcher ◀────────────────┘
//!     sorts the topics by last use, and asks each, oldest first,
//!     to release memory, until `used` is a sixteenth under the limit
//!       disk log:   drops cached payloads (they are in the segment files;
//!                   the fetcher reads them back if anyone needs them)
//!       memory log: drops its oldest messages that no connected subscriber
//!                   or group still needs, as retention does
//!     still over? readers stop taking publishes (`queue.rs`) until a later
//!     round finds room: TCP holds the publishers back (but a connection
//!     that subscribes or pulls, whose acks would be held too, has its
//!     publishes refused instead)
//! ```
//!
//! The granularity is the topic: every log notes when it was last appended
//! to or read from, and within a topic its oldest payloads go first. The
//! clock is not time but the bytes ever counted against the budget: an
//! order is all least-recently-used needs, and this one moves exactly when
//! memory is added.
//!
//! A pass frees a sixteenth of the limit more than it must, so that a
//! broker at its limit sorts its topics once per sixteenth of the budget
//! appended, not once per round.
//!
//! Only the dispatcher thread touches logs, but a log must be `Send`, so
//! the shared counts are atomics, read and written with relaxed ordering:
//! nothing else is synchronised through them. And since one thread alone
//! changes them, a change is a load and a store, not a read-modify-write:
//! on x86 two plain moves rather than a locked instruction per message.

use std::fs;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::ids::Payload;

/// What a message costs beyond its payload, by estimate: the reference
/// counts in front of the payload (16 bytes), the allocator's header and
/// rounding (about 16), and its slot in its log's queue (16, and as much
/// again while the queue has grown and not filled). With 128-byte payloads
/// this is a third of what the messages take, so leaving it out would put
/// the budget a third short.
pub(crate) const MESSAGE_OVERHEAD_BYTES: usize = 64;

/// How much of the budget `payload` takes while a log holds it.
pub(crate) fn cost(payload: &Payload) -> usize {
    payload.len() + MESSAGE_OVERHEAD_BYTES
}

/// `--memory-bytes` when this process cannot learn the machine's memory.
pub(crate) const FALLBACK_MEMORY_BYTES: usize = 1 << 30;

/// The memory budget of a store's logs: how much they hold now, against
/// the limit a flag set.
#[derive(Debug)]
pub(crate) struct MemoryBudget {
    /// The flag that set the limit, for messages: `--cache-bytes` or
    /// `--memory-bytes`.
    flag: &'static str,
    limit: usize,
    used: AtomicUsize,
    /// Every byte ever counted: the logs' clock for least-recently-used.
    clock: AtomicU64,
    /// Whether a memory log has had to drop messages, said once in the log.
    dropped: AtomicBool,
}

impl MemoryBudget {
    pub fn new(flag: &'static str, limit: usize) -> MemoryBudget {
        MemoryBudget {
            flag,
            limit,
            used: AtomicUsize::new(0),
            clock: AtomicU64::new(0),
            dropped: AtomicBool::new(false),
        }
    }

    pub fn flag(&self) -> &'static str {
        self.flag
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub fn is_over(&self) -> bool {
        self.used() > self.limit
    }

    /// What a pass of the dispatcher brings `used` down to, if it can.
    pub fn target(&self) -> usize {
        self.limit - self.limit / 16
    }

    /// Counts `bytes` a log now holds, and returns the time on the clock
    /// after them, which the log takes as its last use.
    pub fn take(&self, bytes: usize) -> u64 {
        self.used.store(self.used() + bytes, Ordering::Relaxed);
        let now = self.now() + bytes as u64;
        self.clock.store(now, Ordering::Relaxed);
        now
    }

    /// Counts `bytes` a log no longer holds.
    pub fn give_back(&self, bytes: usize) {
        self.used.store(self.used() - bytes, Ordering::Relaxed);
    }

    /// The time on the clock, for a log that was just read from.
    pub fn now(&self) -> u64 {
        self.clock.load(Ordering::Relaxed)
    }

    /// Says in the log, the first time only, that messages are being
    /// dropped to stay within the budget: a subscriber that comes later
    /// will not find them.
    pub fn note_dropped(&self) {
        if !self.dropped.swap(true, Ordering::Relaxed) {
            log::warn!(
                "topics reached {} ({} bytes): dropping their oldest messages that no \
                 connected subscriber or group still needs",
                self.flag,
                self.limit
            );
        }
    }
}

/// The default `--memory-bytes`: a quarter of the machine's memory, or
/// [`FALLBACK_MEMORY_BYTES`] if `/proc/meminfo` cannot say how much that is.
pub(crate) fn default_memory_bytes() -> usize {
    physical_memory().map_or(FALLBACK_MEMORY_BYTES, |bytes| bytes / 4)
}

/// `bytes` as a size to read: `256MiB`, `5.9GiB`, `1000B`.
pub fn describe(bytes: usize) -> String {
    const UNITS: [(&str, usize); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    match UNITS.iter().find(|(_, size)| bytes >= *size) {
        Some((unit, size)) if bytes.is_multiple_of(*size) => format!("{}{unit}", bytes / size),
        Some((unit, size)) => format!("{:.1}{unit}", bytes as f64 / *size as f64),
        None => format!("{bytes}B"),
    }
}

/// The machine's memory, from the `MemTotal` line of `/proc/meminfo`.
fn physical_memory() -> Option<usize> {
    let meminfo = fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_total(&meminfo)
}

/// Parses `MemTotal:  24684544 kB` into bytes.
fn parse_mem_total(meminfo: &str) -> Option<usize> {
    let line = meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
    let kib: usize = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_counts_and_its_clock_only_moves_forward() {
        let budget = MemoryBudget::new("--cache-bytes", 1600);
        assert_eq!(budget.take(1000), 1000);
        assert_eq!(budget.take(700), 1700);
        assert!(budget.is_over());
        budget.give_back(1000);
        assert_eq!((budget.used(), budget.now()), (700, 1700));
        assert!(!budget.is_over());
        assert_eq!(budget.target(), 1500);
    }

    #[test]
    fn mem_total_is_read_in_bytes() {
        let meminfo = "MemTotal:       24684544 kB\nMemFree:  1 kB\n";
        assert_eq!(parse_mem_total(meminfo), Some(24_684_544 * 1024));
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(parse_mem_total("MemTotal: lots\n"), None);
        assert!(default_memory_bytes() > 0);
    }

    #[test]
    fn sizes_are_described_in_their_largest_unit() {
        assert_eq!(describe(256 << 20), "256MiB");
        assert_eq!(describe(6_338_567_168), "5.9GiB");
        assert_eq!(describe(1000), "1000B");
    }
}
