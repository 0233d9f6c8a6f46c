//! Delivering: what fills the sessions' outboxes, and the round's last
//! step, which posts them.
//!
//! A session is given more to send when a message became readable
//! (`offer`, to the topic's subscribers and groups), when old records
//! came back from the fetcher (`fetched`, for `Command::Fetched`), when
//! its writer made room for deliveries that need no ack and for pulls
//! (`serve`, for `Command::Written`), and when its answers freed room in
//! its window (`refill`, in `answers.rs`); `reply` queues the answer to a
//! request. What a session does with each is `session/`'s part. At the
//! round's end `hand_over_round` packs each outbox the round filled into one parcel
//! for its connection's writer, and hands them all to the syncer with
//! the round's sync jobs: the syncer posts them once what they tell of
//! is durable (`syncer.rs`).
//!
//! Calls: `consumer_groups.rs` (`pump_group`), `closing.rs`
//! (`register_or_forget`), `dead_letters.rs` (`retry_waiting_for_fetch`).

use std::time::Instant;

use super::Dispatcher;
use crate::ids::{ConnId, TopicId};
use crate::store::{Fetched, StoreError};
use crate::wire::reply::Reply;

impl Dispatcher {
    /// Offers the topic's new messages (or those just fetched) to its
    /// subscribers and its groups.
    pub(super) fn offer(&mut self, id: TopicId, now: Instant) {
        for &conn in &self.topics[id].subscribers {
            if let Some(session) = self.sessions.get_mut(&conn) {
                session.offer(id, &self.topics, now);
                self.agenda.register(conn, session);
            }
        }
        for index in 0..self.topics[id].groups.len() {
            self.pump_group(id, index, now);
        }
    }

    /// Hands a fetched run to its log, and lets the dead letters, the
    /// subscribers and the pullers that were waiting for it read on: at
    /// once, since the round's memory budget may drop the run at its end
    /// (`logs.rs`, `keep_within_budget`), and another fetch of the topic
    /// replaces it. Fails only if the store failed otherwise than for room
    /// (appending a dead letter).
    pub(super) fn fetched(&mut self, fetched: Fetched, now: Instant) -> Result<(), StoreError> {
        let Some(&id) = self.topic_ids.get(&fetched.topic) else {
            return Ok(());
        };
        self.topics[id].log.take_fetched(fetched);
        self.retry_waiting_for_fetch(id, now)?;
        self.offer(id, now);
        let pullers: Vec<ConnId> = self
            .sessions
            .iter()
            .filter(|(_, session)| session.is_pulling_from(id))
            .map(|(&conn, _)| conn)
            .collect();
        for conn in pullers {
            self.serve(conn, now);
        }
        Ok(())
    }

    /// Sends what a session can send now: its pulls, then its
    /// subscriptions, then what its groups that waited for room have. Called after a pull is asked for, and when the writer
    /// reports it has written (which makes room for both).
    pub(super) fn serve(&mut self, conn: ConnId, now: Instant) {
        if let Some(session) = self.sessions.get_mut(&conn) {
            for (id, _) in session.stream_pulls(&mut self.topics, now) {
                let topic = &mut self.topics[id];
                topic.groups_moved = true;
                self.agenda.write_later(id, topic);
            }
            session.pump(&self.topics, now);
            let groups = session.take_groups_waiting();
            self.register_or_forget(conn, now);
            for (id, index) in groups {
                self.pump_group(id, index, now);
            }
        }
    }

    /// Queues `reply` on `conn`'s outbox; a connection that is gone, or
    /// never had a session (a binary publisher), gets nothing.
    pub(super) fn reply(&mut self, conn: ConnId, reply: Reply) {
        if let Some(session) = self.sessions.get_mut(&conn) {
            session.reply(reply);
            self.agenda.register(conn, session);
        }
    }

    /// Packs every outbox filled this round and posts them, after the
    /// round's writes are durable (see `syncer.rs`).
    pub(super) fn hand_over_round(&mut self) -> Result<(), StoreError> {
        for conn in self.agenda.take_to_pack() {
            if let Some(session) = self.sessions.get_mut(&conn) {
                self.agenda.parcels.extend(session.pack());
            }
        }
        let jobs = std::mem::take(&mut self.agenda.sync_jobs);
        let parcels = std::mem::take(&mut self.agenda.parcels);
        self.syncer.hand_over(jobs, parcels)
    }
}
