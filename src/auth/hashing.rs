//! How many password checks run at once.
//!
//! A login hashes the password it is given with PBKDF2 (`pbkdf2.rs`),
//! about 50 ms of a core with `brook hash-password`'s iterations. Each
//! address checks one password at a time (`delays.rs`), which a login
//! waits for first, but guessers from many addresses would still keep
//! every core busy hashing, and the clients already logged in would feel
//! it. So at most
//! half the cores (one at least) hash passwords at any moment; a login
//! beyond that waits its turn on its own reader thread. Under such an
//! attack a new login may wait; nothing else does.

use parking_lot::{Condvar, Mutex};

/// A counting semaphore for password checks.
#[derive(Debug)]
pub struct Hashing {
    /// How many checks run now.
    running: Mutex<usize>,
    finished: Condvar,
    limit: usize,
}

impl Hashing {
    /// At most half of this machine's cores, one at least.
    pub fn for_this_machine() -> Hashing {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Hashing::new((cores / 2).max(1))
    }

    fn new(limit: usize) -> Hashing {
        Hashing {
            running: Mutex::new(0),
            finished: Condvar::new(),
            limit,
        }
    }

    /// Runs `check` once fewer than the limit are running.
    pub fn run<T>(&self, check: impl FnOnce() -> T) -> T {
        {
            let mut running = self.running.lock();
            while *running >= self.limit {
                self.finished.wait(&mut running);
            }
            *running += 1;
        }
        let _turn = Turn(self);
        check()
    }
}

/// A check running: it gives its turn back when dropped, even if the
/// check panics.
struct Turn<'a>(&'a Hashing);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        *self.0.running.lock() -= 1;
        self.0.finished.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn no_more_than_the_limit_run_at_once() {
        let hashing = Hashing::new(2);
        let (running, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..50 {
                        hashing.run(|| {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            (0..100).for_each(|_| std::thread::yield_now());
                            running.fetch_sub(1, Ordering::SeqCst);
                        });
                    }
                });
            }
        });
        assert!(most.load(Ordering::SeqCst) <= 2);
        assert_eq!(*hashing.running.lock(), 0);
    }
}
