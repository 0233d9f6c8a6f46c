//! `PULL <topic> [max] [group <name>]`: take up to `max` messages the
//! group (`default` unless the pull names one) has not given out yet, the
//! way the DEV series' consumer drains a topic, then `+END <count>`.
//!
//! Not to be confused with `session/pulls.rs`: this file takes the
//! request (finds the topic and the group, and queues the pull on the
//! session); that one streams a session's queued pulls to its client.
//!
//! `pull` runs as the round takes the request: the pull is queued on the
//! session and served at once (`serve`, in `delivery.rs`); what does not
//! fit is served as the writer makes room (`Command::Written`), or as the
//! fetcher brings old records back. A topic nobody has published to is
//! not created for a pull, and a pattern is refused, as a subscribe
//! refuses it.
//!
//! Calls: `subscribe.rs` (`names_topics_only`), `consumer_groups.rs`
//! (`check_group_room`, `group_index`), `logs.rs` (`write_now`),
//! `delivery.rs` (`reply`, `serve`).

use std::time::Instant;

use super::Dispatcher;
use crate::ids::ConnId;
use crate::store::StoreError;
use crate::wire::reply::Reply;
use crate::wire::request::StartAt;

impl Dispatcher {
    /// Queues a `PULL` on the session and serves it. A topic nobody has
    /// published to is not created for it: the pull just ends empty. What
    /// the topic was sent this round is made readable first, so that the
    /// pull takes what its client published before it.
    pub(super) fn pull(
        &mut self,
        conn: ConnId,
        name: &str,
        max: Option<u64>,
        group: &str,
        now: Instant,
    ) -> Result<(), StoreError> {
        if !self.names_topics_only(conn, &[name]) {
            return Ok(());
        }
        let id = self.topic_ids.get(name).copied();
        if let Some(id) = id {
            if let Err(limit) = self.check_group_room(&[id], group) {
                self.reply(conn, Reply::OverLimit(limit));
                return Ok(());
            }
            self.write_now(id, now)?;
        }
        let from = id.map(|id| (id, self.group_index(id, group, StartAt::Beginning, conn)));
        let until = from.map_or(0, |(id, _)| self.topics[id].log.end());
        if let Some(session) = self.sessions.get_mut(&conn) {
            session.add_pull(from, until, max);
            self.serve(conn, now);
        }
        Ok(())
    }
}
