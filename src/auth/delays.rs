//! The delay before `-ERR invalid credentials`, which grows with each
//! failed login from the same address, so that guessing passwords is
//! slow while one typo costs a person next to nothing.
//!
//! The delay is slept on the reader thread of the connection that failed:
//! that connection waits, every other one goes on. The failures are
//! counted per IP address (a guesser can open many connections, but
//! rarely many addresses) in a map of bounded size, so that guessers from
//! many addresses cannot make it grow without end; a success from an
//! address forgets its failures, and so does a quiet spell.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// The most addresses remembered; past it the one whose last failure is
/// oldest is forgotten.
const MAX_ADDRESSES: usize = 4096;
/// The delay doubles with each failure up to this many times the base
/// delay: 100 ms grows to 3.2 s.
const MAX_FACTOR: u32 = 32;
/// An address that has not failed for this long starts again from the
/// base delay.
const FORGET_AFTER: Duration = Duration::from_secs(600);

/// Failed logins per address.
#[derive(Debug)]
pub struct Delays {
    /// The delay after a first failure (`--auth-failure-delay`).
    base: Duration,
    /// Per address: failures in a row, and when the last was.
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Delays {
    pub fn new(base: Duration) -> Delays {
        Delays {
            base,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a failure from `address`, and returns how long to wait
    /// before answering it.
    pub fn failed(&self, address: IpAddr, now: Instant) -> Duration {
        let mut failures = self.failures.lock();
        if failures.len() >= MAX_ADDRESSES && !failures.contains_key(&address) {
            failures.retain(|_, (_, last)| now.duration_since(*last) < FORGET_AFTER);
            if failures.len() >= MAX_ADDRESSES {
                let oldest = failures.iter().min_by_key(|(_, (_, last))| *last);
                if let Some(&oldest) = oldest.map(|(address, _)| address) {
                    failures.remove(&oldest);
                }
            }
        }
        let entry = failures.entry(address).or_insert((0, now));
        if now.duration_since(entry.1) >= FORGET_AFTER {
            entry.0 = 0;
        }
        *entry = (entry.0.saturating_add(1), now);
        let factor = 1u32 << (entry.0 - 1).min(MAX_FACTOR.trailing_zeros());
        self.base * factor
    }

    /// Forgets the failures of `address`: someone there knows a password.
    pub fn succeeded(&self, address: IpAddr) {
        self.failures.lock().remove(&address);
    }

    /// How many addresses are remembered.
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.failures.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn the_delay_doubles_per_address_up_to_a_cap_and_a_success_resets_it() {
        let delays = Delays::new(Duration::from_millis(10));
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let now = Instant::now();
        let waits: Vec<u64> = (0..8)
            .map(|_| delays.failed(a, now).as_millis() as u64)
            .collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 320, 320]);
        assert_eq!(delays.failed(b, now), Duration::from_millis(10));
        delays.succeeded(a);
        assert_eq!(delays.failed(a, now), Duration::from_millis(10));
        let later = now + FORGET_AFTER;
        assert_eq!(delays.failed(b, later), Duration::from_millis(10));
    }

    #[test]
    fn the_map_stays_bounded() {
        let delays = Delays::new(Duration::ZERO);
        let now = Instant::now();
        for n in 0..(MAX_ADDRESSES as u32 + 100) {
            delays.failed(IpAddr::V4(Ipv4Addr::from(n)), now);
        }
        assert_eq!(delays.remembered(), MAX_ADDRESSES);
    }
}
