//! What every mirror's thread shares: a session (one connection to each
//! side) runs until something fails, then [`retry_forever`] starts the
//! next after a short wait; and the [`Meter`] counts the messages moved,
//! for `--report-every`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// The wait before a new session, at first and at most.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MOST: Duration = Duration::from_secs(2);

/// Messages moved by all mirrors, for `--report-every`.
#[derive(Debug, Default)]
pub struct Meter {
    moved: AtomicU64,
}

impl Meter {
    pub fn add(&self, messages: u64) {
        self.moved.fetch_add(messages, Ordering::Relaxed);
    }

    pub fn moved(&self) -> u64 {
        self.moved.load(Ordering::Relaxed)
    }
}

/// Runs `session` again and again: after a failure (logged, naming
/// `mirror`), a new session starts after a wait that doubles while the
/// failures go on quickly, up to [`RETRY_MOST`].
pub fn retry_forever<E: std::fmt::Display>(
    mirror: &str,
    mut session: impl FnMut() -> Result<(), E>,
) {
    let mut wait = RETRY_FIRST;
    loop {
        let started = Instant::now();
        let Err(error) = session() else { return };
        if started.elapsed() > RETRY_MOST * 4 {
            wait = RETRY_FIRST;
        }
        log::warn!("{mirror}: {error}; starting again in {wait:?}");
        thread::sleep(wait);
        wait = (wait * 2).min(RETRY_MOST);
    }
}
