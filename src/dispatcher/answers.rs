//! Answers: a subscriber's Ack or Nack (`Request::Ack`, `Request::Nack`),
//! and the round's answers step.
//!
//! `answer` runs as the round takes each answer: the session matches it
//! to the delivery it answers (`session/` draws the in-flight queue),
//! and the connection is noted in the agenda. What the answers mean
//! beyond the session (the room they freed in its window, the group
//! messages they settle, the messages given up) is settled once per
//! connection in the round's answers step, `settle_answers`, which runs
//! after the timers (`timers.rs`), since an ack timeout counts as an
//! answer too. A consumer acks in batches, and its window is then
//! refilled in one go.
//!
//! Calls: `consumer_groups.rs` (`settle_groups`, `settle_groups_given_up`),
//! `dead_letters.rs` (`dead_letter_given_up`).

use std::time::Instant;

use super::Dispatcher;
use crate::ids::ConnId;
use crate::store::StoreError;
use crate::wire::reply::Reply;

impl Dispatcher {
    /// An Ack or Nack. What it means for a group, or for the dead-letter
    /// topic, is settled once for all of the round's answers
    /// ([`Dispatcher::settle_answers`]).
    ///
    /// It is carried out as it is taken, even behind an unfinished pattern
    /// job (see `agenda.rs`'s `Deferred`); only its refusal waits for its
    /// turn.
    pub(super) fn answer(&mut self, conn: ConnId, acked: bool, now: Instant) {
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        let answered = session.answer(acked, &self.topics, now);
        // Answers come in batches, one connection's after another's.
        if self.agenda.answered.last() != Some(&conn) {
            self.agenda.answered.push(conn);
        }
        if answered.is_err() {
            log::debug!("conn {conn}: answered a delivery that was never sent");
            self.reply_in_turn(conn, Reply::Error("no delivery to acknowledge".into()));
        }
    }

    /// Settles what the round's answers and timeouts did: fills the room
    /// they freed in each window, gives the groups their answers (and out
    /// what is owed), and sends what was given up to the dead-letter
    /// topics. Once per round and connection, not per answer: a consumer
    /// acks in batches, and its window is then refilled in one go. What
    /// the groups gave up (here, or as connections closed or left them
    /// earlier in the round) goes last, once every Ack of the round has
    /// reached its group (`Dispatcher::settle_groups_given_up`).
    pub(super) fn settle_answers(&mut self, now: Instant) -> Result<(), StoreError> {
        let mut answered = std::mem::take(&mut self.agenda.answered);
        answered.sort_unstable();
        answered.dedup();
        for conn in answered {
            self.refill(conn, now);
            self.dead_letter_given_up(conn, now)?;
            self.settle_groups(conn, now);
        }
        // Last: an Ack settled above may have settled what a group gave up.
        self.settle_groups_given_up(now)
    }

    /// Sends a connection what fits the room its answers freed.
    fn refill(&mut self, conn: ConnId, now: Instant) {
        if let Some(session) = self.sessions.get_mut(&conn) {
            session.pump(&self.topics, now);
            self.agenda.register(conn, session);
        }
    }
}
