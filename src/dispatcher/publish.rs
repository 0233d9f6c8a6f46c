//! A publish: appending the message to its topic's log, offering it to
//! the subscribers once it is readable, confirming it, and refusing what
//! a full disk, or a full in-memory store, cannot take.
//!
//! `publish` runs as the round takes each `Request::Publish`. On disk a
//! message becomes readable only once a write put it in its file (the
//! round's write, `logs.rs`, or sooner when a buffer fills), so until then
//! its publisher is noted in the agenda; if that write finds the disk
//! full, `refuse_unwritten` turns the confirmations of what the log took
//! back into refusals before anything about them has gone out (the module
//! doc of `mod.rs` says why). One log line starts a full-disk episode and
//! one ends it (`disk_is_full`, `stored_again`).
//!
//! A full in-memory store holds its publishers back rather than refuse
//! them (`logs.rs`), except those that subscribe or pull, whose acks would
//! be held back with them: the round refuses their publishes as it takes
//! them (`refuse_for_full_memory`; `queue.rs` says why).
//!
//! Calls: `topic_table.rs` (`topic_id`, `topic_unavailable`), `delivery.rs`
//! (`offer`, `reply`), `mod.rs` (`reply_in_turn`).

use std::sync::Arc;
use std::time::Instant;

use super::agenda::Publisher;
use super::topic_table::Unavailable;
use super::Dispatcher;
use crate::ids::{ConnId, Offset, Payload, TopicId};
use crate::queue::Hangup;
use crate::store::{DiskFull, StoreError};
use crate::wire::reply::{MemoryFull, Reply};
use crate::writer::Parcel;

impl Dispatcher {
    /// Appends a message to its topic and offers it to the subscribers,
    /// and confirms it if its publisher asked for that. A message that
    /// cannot be stored is refused: the topic could not be created (past
    /// `--max-topics`, or the store failed), or the disk is full. The
    /// publisher is told so, or hung up on if it is never answered. Fails
    /// if the store failed otherwise.
    pub(super) fn publish(
        &mut self,
        publisher: &Publisher,
        name: Arc<str>,
        payload: Payload,
        now: Instant,
    ) -> Result<(), StoreError> {
        let conn = publisher.conn;
        let id = match &self.last_published {
            Some((last, id)) if Arc::ptr_eq(last, &name) => *id,
            _ => match self.topic_id(&name) {
                Ok(id) => {
                    self.last_published = Some((name, id));
                    id
                }
                Err(Unavailable::Store(StoreError::Full(cause))) => {
                    self.refuse_publish(publisher, None, &cause, now);
                    return Ok(());
                }
                Err(unavailable) => {
                    match publisher.hangup.filter(|_| !publisher.confirm) {
                        Some(hangup) => hang_up(conn, hangup, &unavailable),
                        None => self.topic_unavailable(conn, &name, unavailable),
                    }
                    return Ok(());
                }
            },
        };
        let bytes = payload.len();
        match self.append(id, payload, Some(publisher), now) {
            Ok(offset) => {
                let topic = &self.topics[id].name;
                log::debug!("conn {conn}: published {bytes} bytes to {topic:?} at offset {offset}");
                if publisher.confirm {
                    self.reply(conn, Reply::Published { topic: id, offset });
                }
                Ok(())
            }
            Err(StoreError::Full(cause)) => {
                self.refuse_publish(publisher, Some(id), &cause, now);
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// Appends a message to the topic `id`, and offers it to the
    /// subscribers once it is readable: at once in memory, once written on
    /// disk (see [`TopicLog::end`]); until then its publisher, if it has
    /// one, is noted, to be refused if the write fails. A disk with no room
    /// refuses it, and takes back what the topic was sent this round and
    /// has not written.
    ///
    /// [`TopicLog::end`]: crate::store::TopicLog::end
    pub(super) fn append(
        &mut self,
        id: TopicId,
        payload: Payload,
        publisher: Option<&Publisher>,
        now: Instant,
    ) -> Result<Offset, StoreError> {
        let topic = &mut self.topics[id];
        let bytes = payload.len();
        let offset = match topic.log.append(payload, self.clock_ms) {
            Ok(offset) => offset,
            Err(StoreError::Full(cause)) => {
                self.refuse_unwritten(id, &cause, now);
                return Err(StoreError::Full(cause));
            }
            Err(error) => return Err(error),
        };
        topic.traffic.received(bytes);
        self.agenda.write_later(id, topic);
        if topic.log.over_retention() {
            self.agenda.trim_later(id);
        }
        if topic.log.end() > offset {
            self.became_readable(id, now);
        } else if let Some(publisher) = publisher {
            self.agenda.note_unwritten(id, offset, publisher);
        }
        Ok(offset)
    }

    /// Offers the topic's messages that just became readable, and ends the
    /// full-disk episode if the topic was one that refused a publish.
    pub(super) fn became_readable(&mut self, id: TopicId, now: Instant) {
        if self.full_disk.since.is_some() {
            self.stored_again(id, now);
        }
        self.offer(id, now);
    }

    /// Refuses a message the disk had no room for: a publisher that is
    /// answered gets `-ERR disk full: ...` (or an Error status), one that
    /// is not is hung up on.
    fn refuse_publish(
        &mut self,
        publisher: &Publisher,
        topic: Option<TopicId>,
        cause: &Arc<DiskFull>,
        now: Instant,
    ) {
        self.full_disk.refused += 1;
        self.disk_is_full(topic, cause, now);
        if publisher.confirm {
            self.reply(publisher.conn, Reply::DiskFull(cause.clone()));
        } else if let Some(hangup) = publisher.hangup {
            hang_up(publisher.conn, hangup, cause);
        }
    }

    /// Refuses a publish of `conn`, a connection that has subscribed or
    /// pulled, taken while the in-memory store is full: holding it back
    /// would hold back its acks too (`queue.rs`). Nothing is stored, and
    /// the client is told, in its turn, which flag set the limit and what
    /// to do. (Such a connection is answered: only a binary publisher is
    /// not, and it never subscribes.)
    pub(super) fn refuse_for_full_memory(&mut self, conn: ConnId) {
        self.full_memory.refused += 1;
        let budget = self.store.budget();
        let full = MemoryFull {
            flag: budget.flag(),
            limit: budget.limit(),
        };
        self.reply_in_turn(conn, Reply::MemoryFull(full));
    }

    /// Refuses the messages of topic `id` that its log took back because
    /// the disk had no room for them: those from its end on, all published
    /// this round and none readable yet, so none was delivered. Their
    /// confirmations, still in the outboxes (or packed by a session that
    /// ended this round), become errors, and their publishers that are
    /// never answered are hung up on. Dead letters among them have no
    /// publisher: their messages go back to whoever gave them up
    /// (`dead_letters.rs`).
    pub(super) fn refuse_unwritten(&mut self, id: TopicId, cause: &Arc<DiskFull>, now: Instant) {
        let from = self.topics[id].log.end();
        let packed = self.agenda.parcels.iter_mut().flat_map(Parcel::replies_mut);
        packed.for_each(|reply| reply.refuse_if_taken_back(id, from, cause));
        let sessions = &mut self.sessions;
        let mut refused = 0;
        self.agenda.unwritten.retain_mut(|run| {
            if run.topic != id || run.last < from {
                return true;
            }
            refused += run.last + 1 - run.first.max(from);
            match &run.hangup {
                Some(hangup) => hang_up(run.conn, hangup, cause),
                None => {
                    if let Some(session) = sessions.get_mut(&run.conn) {
                        session.refuse_confirmations(id, from, cause);
                    }
                }
            }
            run.last = from.saturating_sub(1);
            run.first < from
        });
        self.full_disk.refused += refused;
        self.disk_is_full(Some(id), cause, now);
        self.dead_letters_taken_back(id, from, cause, now);
    }

    /// Notes that topic `id` (if the refusal was for a topic) found the
    /// disk full, and starts the episode with a log line if it is the
    /// first.
    pub(super) fn disk_is_full(&mut self, topic: Option<TopicId>, cause: &DiskFull, now: Instant) {
        if let Some(topic) = topic.map(|id| &mut self.topics[id]) {
            if !std::mem::replace(&mut topic.refusing, true) {
                self.full_disk.topics += 1;
            }
        }
        if self.full_disk.since.is_none() {
            self.full_disk.since = Some(now);
            log::warn!("{cause}; refusing publishes until a write fits");
        }
    }

    /// Topic `id` stored a message during a full-disk episode: the episode
    /// ends once every topic that refused one has.
    fn stored_again(&mut self, id: TopicId, now: Instant) {
        if std::mem::take(&mut self.topics[id].refusing) {
            self.full_disk.topics -= 1;
        }
        if self.full_disk.topics > 0 {
            return;
        }
        if let Some(since) = self.full_disk.since.take() {
            log::info!(
                "disk has room again after {:.1?}: accepting publishes \
                 ({} refused for a full disk since the broker started)",
                now.saturating_duration_since(since),
                self.full_disk.refused
            );
        }
    }
}

/// Closes the connection of a publisher that is never answered, whose
/// message cannot be stored: the disk had no room for it, or its topic
/// could not be created.
fn hang_up(conn: ConnId, hangup: &Hangup, cause: &dyn std::fmt::Display) {
    if !hangup.is_done() {
        log::warn!(
            "conn {conn}: closing a binary publisher, whose messages cannot be stored: {cause}"
        );
        hangup.hang_up();
    }
}
