//! Timers: when the dispatcher must act although no command came, and the
//! round's first step, which wakes the sessions whose time has come.
//!
//! Ack timeouts, redeliveries after a Nack and the deadline of a closed
//! connection's unfinished pull live in one min-heap of `(when,
//! connection)` wake-ups in the agenda. Each session keeps at most one
//! wake-up it cares about (`Agenda::take_wakeup`); a stale entry is
//! recognised and skipped when it pops. `next_deadline` also counts the
//! lingering writers' deadlines (`closing.rs`), the next retention age
//! check (`logs.rs`) and the next group message held back to go out again
//! (`dead_letters.rs`), and does not wait at all while a pattern's work is
//! unfinished (`pattern_rounds.rs`): the round loop waits for a command
//! until then.
//!
//! Calls: `closing.rs` (`register_or_forget`).

use std::cmp::Reverse;
use std::time::Instant;

use super::Dispatcher;

impl Dispatcher {
    /// When the dispatcher must act even if no command comes: at once
    /// while a pattern's work is unfinished (`pattern_rounds.rs`).
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let wakeup = self.agenda.wakeups.peek().map(|Reverse((when, _))| *when);
        let linger = self.agenda.lingering.front().map(|(deadline, _)| *deadline);
        let pattern_work = (!self.agenda.pattern_jobs.is_empty()).then(Instant::now);
        let let_out = self.next_let_out();
        [wakeup, linger, self.next_age_check, pattern_work, let_out]
            .into_iter()
            .flatten()
            .min()
    }

    /// Wakes every session whose wake-up is due. The due ones are taken
    /// off the heap first, so a session that asks to be woken again at once
    /// waits for the next round instead of keeping this loop going. Ack
    /// timeouts are settled with the round's answers.
    pub(super) fn fire_wakeups(&mut self, now: Instant) {
        let mut due = Vec::new();
        while let Some(&Reverse((when, conn))) = self.agenda.wakeups.peek() {
            if when > now {
                break;
            }
            self.agenda.wakeups.pop();
            due.push((when, conn));
        }
        for (when, conn) in due {
            if !self.agenda.take_wakeup(conn, when) {
                continue; // superseded by an earlier wake-up
            }
            let Some(session) = self.sessions.get_mut(&conn) else {
                continue;
            };
            session.wake(&self.topics, now);
            self.register_or_forget(conn, now);
            self.agenda.answered.push(conn);
        }
    }
}
