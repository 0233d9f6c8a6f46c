//! `PULL <topic> [max] [group <name>]`: take up to `max` messages the
//! group (`default` unless the pull names one) has not given out yet, the
//! way the DEV series' consumer drains a topic, then `+END <count>`.
//! `PULL <pattern>` (`orders.*`) takes them from that group of each
//! matching topic, in turn (see `session/pulls.rs`).
//!
//! Not to be confused with `session/pulls.rs`: this file takes the
//! request (finds the topics and their groups, and queues the pull on
//! the session); that one streams a session's queued pulls to its client.
//!
//! `pull` runs as the round takes the request: the pull is queued on the
//! session and served at once (`serve`, in `delivery.rs`); what does not
//! fit is served as the writer makes room (`Command::Written`), or as the
//! fetcher brings old records back. The topics a pattern matches are
//! looked for over as many rounds as that takes (`pattern_rounds.rs`),
//! and the pull is queued once they have been. A topic nobody has
//! published to is not created for a pull, and a pattern from an offset
//! is refused, as a subscribe refuses it.
//!
//! Calls: `subscribe.rs` (`exact_names_and_patterns`, `follow_topic`),
//! `pattern_rounds.rs` (`match_patterns_and_answer`), `logs.rs` (`write_now`),
//! `delivery.rs` (`reply`).

use std::time::Instant;

use super::agenda::JobKind;
use super::Dispatcher;
use crate::ids::ConnId;
use crate::store::StoreError;
use crate::wire::reply::Reply;
use crate::wire::request::StartAt;

impl Dispatcher {
    /// Queues a `PULL` on the session and serves it, once the topics a
    /// pattern matches have been found. A topic nobody has published to
    /// is not created for it: the pull just ends empty. What the topics
    /// were sent this round is made readable first, so that the pull
    /// takes what its client published before it. A connection closed for
    /// not reading its pulls gets none more, not even the job that looks
    /// for a pattern's topics.
    pub(super) fn pull(
        &mut self,
        conn: ConnId,
        name: &str,
        max: Option<u64>,
        group: &str,
        now: Instant,
    ) -> Result<(), StoreError> {
        let session = self.sessions.get(&conn);
        if session.is_some_and(|session| session.is_closed_for_not_reading()) {
            return Ok(()); // it would only be held, never streamed
        }
        let names = [name];
        let start = StartAt::Beginning;
        let Some((exact, patterns)) = self.exact_names_and_patterns(conn, &names, start) else {
            return Ok(());
        };
        let mut kind = JobKind::Pull {
            group: group.into(),
            max,
            sources: Vec::new(),
        };
        for name in exact {
            let Some(&id) = self.topic_ids.get(name) else {
                continue;
            };
            self.write_now(id, now)?;
            if let Err(limit) = self.follow_topic(conn, id, &mut kind) {
                self.reply(conn, Reply::OverLimit(limit));
                return Ok(());
            }
        }
        self.match_patterns_and_answer(conn, patterns, kind, now)
    }
}
