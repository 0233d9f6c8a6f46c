//! The delay before `-ERR invalid credentials`, which grows with each
//! failed login from the same address, so that guessing passwords is
//! slow while one typo costs a person next to nothing.
//!
//! Failures are counted per address: an IPv4 address, or an IPv6 /64 (one
//! host is usually given a whole /64, and could rotate through it). Each
//! address has a "not before" time, which a failure pushes into the
//! future, and takes turns: a login from an address waits, on its own
//! reader thread and before it takes a turn to hash (`hashing.rs`), until
//! every login from there that came before it is done and the not-before
//! time has passed. So however many connections a guesser opens from one
//! address, it has one password check running at a time, at the rate the
//! delay allows; it cannot fill the hashing turns that other addresses'
//! logins need, and logins from its own address are served in the order
//! they came, each waiting at most for the ones before it.
//!
//! The map is bounded. An address whose failures are long forgotten, and
//! which nobody is logging in from, may be dropped to make room; when
//! none can be, a new address shares one overflow entry with every other
//! address that did not fit, rather than resetting a guesser's count.
//! A success from an address forgets its failures, and so does a quiet
//! spell.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// The most addresses remembered, one entry each (the overflow entry
/// besides).
const MAX_ADDRESSES: usize = 4096;
/// The delay doubles with each failure up to this many times the base
/// delay: 100 ms grows to 3.2 s.
const MAX_FACTOR: u32 = 32;
/// An address that has not failed for this long starts again from the
/// base delay.
const FORGET_AFTER: Duration = Duration::from_secs(600);

/// Which entry of the map an address counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    /// An IPv4 address, or an IPv6 address with its last 64 bits zeroed.
    Address(IpAddr),
    /// Every address that came while the map was full.
    Overflow,
}

impl Source {
    /// The address an IPv4 client connecting to an IPv6 socket shows as
    /// `::ffff:a.b.c.d` counts as `a.b.c.d`; an IPv6 one by its /64.
    fn network_of(address: IpAddr) -> IpAddr {
        match address.to_canonical() {
            IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
            v4 => v4,
        }
    }
}

/// One address's failures and turns.
#[derive(Debug)]
struct Entry {
    /// Failures in a row, and when the last was.
    failures: u32,
    last_failure: Instant,
    /// No check from this address starts before this.
    not_before: Instant,
    /// Turns handed out, and the one being served: equal when nobody from
    /// the address is checking or waiting.
    next_ticket: u64,
    serving: u64,
}

impl Entry {
    fn new(now: Instant) -> Entry {
        Entry {
            failures: 0,
            last_failure: now,
            not_before: now,
            next_ticket: 0,
            serving: 0,
        }
    }

    /// Whether dropping it loses nothing: nobody is in line, and its
    /// failures, if any, are forgotten.
    fn is_idle(&self, now: Instant) -> bool {
        self.next_ticket == self.serving
            && (self.failures == 0 || now.duration_since(self.last_failure) >= FORGET_AFTER)
    }
}

/// Failed logins and turns, per address.
#[derive(Debug)]
pub struct Delays {
    /// The delay after a first failure (`--auth-failure-delay`).
    base: Duration,
    entries: Mutex<HashMap<Source, Entry>>,
    /// Notified when a turn ends.
    turn_ended: Condvar,
}

/// A login's turn for its address: the next login from there waits until
/// it is dropped.
#[must_use]
pub struct Turn<'a> {
    delays: &'a Delays,
    source: Source,
}

impl Delays {
    pub fn new(base: Duration) -> Delays {
        Delays {
            base,
            entries: Mutex::new(HashMap::new()),
            turn_ended: Condvar::new(),
        }
    }

    /// Waits until it is this login's turn for `address`: the logins from
    /// there before it are done, and its not-before time has passed.
    pub fn turn(&self, address: IpAddr) -> Turn<'_> {
        let mut entries = self.entries.lock();
        let source = Self::make_room(&mut entries, address, Instant::now());
        let entry = entries
            .entry(source)
            .or_insert_with(|| Entry::new(Instant::now()));
        let ticket = entry.next_ticket;
        entry.next_ticket += 1;
        loop {
            let entry = &entries[&source];
            let now = Instant::now();
            if entry.serving != ticket {
                self.turn_ended.wait(&mut entries);
            } else if entry.not_before > now {
                let not_before = entry.not_before;
                self.turn_ended.wait_until(&mut entries, not_before);
            } else {
                return Turn {
                    delays: self,
                    source,
                };
            }
        }
    }

    /// The entry `address` counts against, dropping an idle one if the map
    /// is full and `address` has none; the overflow entry if none is idle.
    fn make_room(entries: &mut HashMap<Source, Entry>, address: IpAddr, now: Instant) -> Source {
        let source = Source::Address(Source::network_of(address));
        let listed = entries.len() - usize::from(entries.contains_key(&Source::Overflow));
        if listed < MAX_ADDRESSES || entries.contains_key(&source) {
            return source;
        }
        let idle = entries
            .iter()
            .find(|(key, entry)| **key != Source::Overflow && entry.is_idle(now))
            .map(|(key, _)| *key);
        match idle {
            Some(idle) => {
                entries.remove(&idle);
                source
            }
            None => Source::Overflow,
        }
    }
}

impl Turn<'_> {
    /// Counts a failure, and returns how long the client waits for its
    /// answer: the time before the next login from its address may start.
    pub fn failed(&self) -> Duration {
        let now = Instant::now();
        let mut entries = self.delays.entries.lock();
        let entry = entries.get_mut(&self.source).expect("a turn's entry stays");
        if now.duration_since(entry.last_failure) >= FORGET_AFTER {
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = now;
        let factor = 1u32 << (entry.failures - 1).min(MAX_FACTOR.trailing_zeros());
        let delay = self.delays.base.saturating_mul(factor);
        entry.not_before = now.checked_add(delay).unwrap_or(entry.not_before);
        delay
    }

    /// Forgets the failures of the address: someone there knows a
    /// password.
    pub fn succeeded(&self) {
        let mut entries = self.delays.entries.lock();
        if let Some(entry) = entries.get_mut(&self.source) {
            entry.failures = 0;
        }
    }
}

impl Drop for Turn<'_> {
    /// The next login from the address may go.
    fn drop(&mut self) {
        let mut entries = self.delays.entries.lock();
        if let Some(entry) = entries.get_mut(&self.source) {
            entry.serving += 1;
        }
        self.delays.turn_ended.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// The delays `failures` failed logins in a row from `address` earn.
    fn fail(delays: &Delays, address: IpAddr, failures: usize) -> Vec<u128> {
        (0..failures)
            .map(|_| delays.turn(address).failed().as_micros())
            .collect()
    }

    #[test]
    fn the_delay_doubles_per_address_up_to_a_cap_and_a_success_resets_it() {
        let delays = Delays::new(Duration::from_micros(10));
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        assert_eq!(fail(&delays, a, 8), [10, 20, 40, 80, 160, 320, 320, 320]);
        assert_eq!(fail(&delays, b, 1), [10]);
        delays.turn(a).succeeded();
        assert_eq!(fail(&delays, a, 1), [10]);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let delays = Delays::new(Duration::from_micros(10));
        let host = |last: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 7, 0, 0, 0, last));
        assert_eq!(fail(&delays, host(1), 2), [10, 20]);
        assert_eq!(fail(&delays, host(2), 1), [40]);
        let other_64 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 8, 0, 0, 0, 1));
        assert_eq!(fail(&delays, other_64, 1), [10]);
        let v4 = Ipv4Addr::new(192, 0, 2, 1);
        assert_eq!(fail(&delays, IpAddr::V4(v4), 1), [10]);
        assert_eq!(fail(&delays, IpAddr::V6(v4.to_ipv6_mapped()), 1), [20]);
    }

    #[test]
    fn a_huge_base_delay_saturates_instead_of_overflowing() {
        let delays = Delays::new(Duration::MAX);
        let address = IpAddr::from([10, 0, 0, 1]);
        assert_eq!(delays.turn(address).failed(), Duration::MAX);
    }

    #[test]
    fn a_full_map_keeps_the_counts_of_guessers_and_shares_an_overflow_entry() {
        let delays = Delays::new(Duration::ZERO);
        for n in 0..MAX_ADDRESSES as u32 {
            let _ = fail(&delays, IpAddr::V4(Ipv4Addr::from(n)), 1);
        }
        let late = |n: u32| Source::network_of(IpAddr::V4(Ipv4Addr::from(n)));
        assert_eq!(
            Delays::make_room(&mut delays.entries.lock(), late(1 << 20), Instant::now()),
            Source::Overflow
        );
        let entries = delays.entries.lock();
        assert_eq!(entries.len(), MAX_ADDRESSES);
        assert!(entries.values().all(|entry| entry.failures == 1));
    }

    #[test]
    fn one_check_at_a_time_per_address() {
        let delays = Delays::new(Duration::ZERO);
        let address = IpAddr::from([10, 0, 0, 1]);
        let (running, most) = (Mutex::new(0), Mutex::new(0));
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..50 {
                        let _turn = delays.turn(address);
                        let now = {
                            let mut running = running.lock();
                            *running += 1;
                            *running
                        };
                        let mut most = most.lock();
                        *most = (*most).max(now);
                        drop(most);
                        std::thread::yield_now();
                        *running.lock() -= 1;
                    }
                });
            }
        });
        assert_eq!(*most.lock(), 1);
    }
}
