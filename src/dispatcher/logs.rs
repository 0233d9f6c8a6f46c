//! The round's steps for the topics' logs, after the commands, the timers
//! and the answers: trim what outgrew its retention, write what the round
//! appended, then keep all the logs within their memory budget.
//!
//! Retention (`--retention-bytes`, `--retention-age`) never takes a
//! message a connected subscriber or group has yet to read, nor one a
//! group holds back for its dead letter (`keep_from`). Writing is the group commit: every log that changed
//! this round is written once, and the jobs that make the writes durable
//! are left in the agenda for the syncer (`syncer.rs`), so with `--fsync
//! batch` each topic is fsynced at most once per round. A message becomes
//! readable on disk only here, and is offered to its subscribers then
//! (`Dispatcher::became_readable`, in `publish.rs`). The memory budget
//! (`budget.rs`) is kept last, once every cached record is in its file
//! and may go; an in-memory store with nothing it may drop holds the
//! publishers back instead, has the next rounds refuse the publishes of
//! connections that subscribe or pull, and says in the log, once a
//! minute while it lasts, which subscribers and groups hold it.
//!
//! Calls: `publish.rs` (`became_readable`, `refuse_unwritten`).

use std::time::{Duration, Instant};

use super::Dispatcher;
use crate::budget::describe;
use crate::dispatcher::group::Group;
use crate::ids::{Offset, TopicId};
use crate::queue::CommandReceiver;
use crate::store::StoreError;

/// How often the dispatcher looks for topics that aged past their
/// retention (`--retention-age`).
const AGE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// How often, at most, the log says that publishers wait for memory. A
/// consumer that reads just slower than its publisher fills the store
/// again after every few acks; once a minute tells the story.
const FULL_STORE_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// How many topics the warning names, and how many subscribers or groups
/// of each: enough to find a stuck consumer, few enough for one line.
const HOLDERS_NAMED: usize = 3;

impl Dispatcher {
    /// Once a second, when logs can age out, marks those that did for the
    /// round's retention step: an idle topic ages without any publish to
    /// notice it.
    pub(super) fn check_ages(&mut self, now: Instant) {
        let Some(when) = self.next_age_check else {
            return;
        };
        if now < when {
            return;
        }
        for (id, topic) in self.topics.iter().enumerate() {
            if topic.log.over_retention() {
                self.agenda.trim_later(id);
            }
        }
        self.next_age_check = Some(now + AGE_CHECK_INTERVAL);
    }

    /// Trims the topics that grew past their retention, keeping every
    /// message a subscriber has yet to read: retention never takes a message
    /// from under a connected subscriber, however slow. (A message already
    /// delivered and not yet answered is safe too: its session holds it.)
    pub(super) fn apply_retention(&mut self) {
        for id in std::mem::take(&mut self.agenda.to_trim) {
            let keep_from = self.keep_from(id);
            self.topics[id].log.apply_retention(keep_from);
        }
    }

    /// The oldest offset of the topic `id` that a connected subscriber or
    /// group still needs (see [`Group::keeps_from`]): its log's end if
    /// none does.
    fn keep_from(&self, id: TopicId) -> Offset {
        let topic = &self.topics[id];
        let cursors = topic
            .subscribers
            .iter()
            .filter_map(|conn| self.sessions.get(conn)?.cursor(id));
        let groups = topic.groups.iter().filter_map(Group::keeps_from);
        cursors.chain(groups).fold(topic.log.end(), Offset::min)
    }

    /// Writes this round's messages (and groups' positions) out of each log
    /// that changed, and collects the jobs that make them durable. With
    /// `--fsync batch` this is the group commit: one fsync per topic per
    /// round at most, however many publishers the round carried, and it
    /// runs on the syncer thread.
    ///
    /// The messages written are offered to the subscribers and groups now
    /// (the disk store's become readable only here); a group that moves
    /// for that is written in a second pass, so its place is saved with
    /// the round.
    ///
    /// The groups' places are saved last, after every record of the round
    /// (see [`TopicLog::save_groups`]): a message a group gave up is done
    /// only once its dead letter, written to another topic, is in its
    /// file, and it is durable before the place saved passes it. Its group
    /// held it back until then (`dead_letters.rs`): a dead letter the disk
    /// had no room for was taken back, and the group's place never moved.
    /// One written makes its group move, and the loop writes the group's
    /// topic again.
    ///
    /// [`TopicLog::save_groups`]: crate::store::TopicLog::save_groups
    pub(super) fn write_logs(&mut self, now: Instant) -> Result<(), StoreError> {
        while !self.agenda.to_write.is_empty() {
            for id in std::mem::take(&mut self.agenda.to_write) {
                self.topics[id].needs_write = false;
                self.write_log(id, now)?;
            }
            self.dead_letters_written();
        }
        self.agenda.unwritten.clear();
        let mut written = std::mem::take(&mut self.agenda.groups_to_save);
        written.sort_unstable();
        written.dedup();
        for id in written {
            let saves = self.topics[id].log.save_groups();
            self.agenda.sync_jobs.extend(saves);
        }
        Ok(())
    }

    /// Writes the log of topic `id` if it holds messages that are not
    /// readable yet.
    pub(super) fn write_now(&mut self, id: TopicId, now: Instant) -> Result<(), StoreError> {
        match self.topics[id].log.has_unwritten() {
            true => self.write_log(id, now),
            false => Ok(()),
        }
    }

    /// Writes one log, and offers what became readable. If the disk has no
    /// room, the log took back what it could not write, whose publishers
    /// are refused, and a second write makes durable what the round wrote
    /// before.
    fn write_log(&mut self, id: TopicId, now: Instant) -> Result<(), StoreError> {
        let topic = &mut self.topics[id];
        if std::mem::take(&mut topic.groups_moved) && topic.log.saves_groups() {
            for group in &topic.groups {
                topic.log.set_group_position(&group.name, group.saved());
            }
        }
        let readable = topic.log.end();
        let job = match topic.log.write() {
            Err(StoreError::Full(cause)) => {
                self.refuse_unwritten(id, &cause, now);
                self.topics[id].log.write()?
            }
            written => written?,
        };
        self.agenda.sync_jobs.extend(job);
        self.agenda.groups_to_save.push(id);
        if self.topics[id].log.end() > readable {
            self.became_readable(id, now);
        }
        Ok(())
    }

    /// If the logs hold more than their memory budget (`budget.rs`), has
    /// them let go of memory, the least recently used topics first, with
    /// the same care for subscribers as retention. If that is not enough
    /// (an in-memory store whose oldest messages are all still needed),
    /// publishers are held (`queue.rs`) until a later round finds room:
    /// subscribers go on being served meanwhile, and their acks are what
    /// frees it. The connections that subscribe or pull are not held, lest
    /// their acks be: the next rounds refuse their publishes instead
    /// (`refuse_for_full_memory`, in `publish.rs`). Runs after the round's
    /// writes, when every cached record is in its file and can go.
    ///
    /// While publishers are held, a warning says so once a minute, naming
    /// what holds the store ([`Dispatcher::memory_holders`]): a consumer
    /// that publishes and waits for that publish before it acks never
    /// catches up, and the operator has to find it.
    ///
    /// The budget can be passed by what one round appends before this
    /// runs; and once publishers are held, by what the dispatcher's queue
    /// already holds (at most its 1 MiB of payloads, or one larger command).
    pub(super) fn keep_within_budget(&mut self, commands: &CommandReceiver, now: Instant) {
        let budget = self.store.budget();
        if budget.is_over() {
            let mut least_recent: Vec<(u64, TopicId)> = (self.topics.iter().enumerate())
                .filter(|(_, topic)| topic.log.held_bytes() > 0)
                .map(|(id, topic)| (topic.log.last_used(), id))
                .collect();
            least_recent.sort_unstable();
            for (_, id) in least_recent {
                let excess = budget.used().saturating_sub(budget.target());
                if excess == 0 {
                    break;
                }
                let keep_from = self.keep_from(id);
                self.topics[id].log.release_memory(excess, keep_from);
            }
        }
        let full = budget.is_over();
        if full != self.full_memory.held_since.is_some() {
            self.full_memory.held_since = full.then_some(now);
            commands.hold_publishers(full);
        }
        let warned_lately = (self.full_memory.warned)
            .is_some_and(|when| now.duration_since(when) < FULL_STORE_WARNING_INTERVAL);
        if let (Some(since), false) = (self.full_memory.held_since, warned_lately) {
            self.full_memory.warned = Some(now);
            let held = now.saturating_duration_since(since);
            let held = match held.is_zero() {
                true => String::new(),
                false => format!(" for {held:.0?}"),
            };
            log::warn!(
                "topics hold {} bytes, over {} ({} bytes), and subscribers still need \
                 all of it: publishers wait until they catch up, and what connections publish \
                 after a SUB or PULL is refused (said at most once a minute). Held{held} by {}",
                budget.used(),
                budget.flag(),
                budget.limit(),
                self.memory_holders()
            );
        }
        self.full_memory.publishers_waiting = match full {
            true => commands.publishers_waiting(),
            false => 0,
        };
    }

    /// What holds a full in-memory store, for its warning: the topics that
    /// hold the most, and for each the subscribers and groups that still
    /// need its oldest messages, oldest first (at most [`HOLDERS_NAMED`]
    /// of each). A consumer whose acks have stopped shows as the first of
    /// its topic, from the offset it has not acked.
    fn memory_holders(&self) -> String {
        let mut topics: Vec<(usize, TopicId)> = (self.topics.iter().enumerate())
            .map(|(id, topic)| (topic.log.held_bytes(), id))
            .filter(|&(bytes, _)| bytes > 0)
            .collect();
        topics.sort_unstable_by(|a, b| b.cmp(a));
        let named = topics.iter().take(HOLDERS_NAMED);
        let named: Vec<String> = named
            .map(|&(bytes, id)| self.topic_holders(id, bytes))
            .collect();
        named.join("; ")
    }

    /// Topic `id`, which holds `bytes`, and who still needs what it holds:
    /// `"jobs" (1MiB from offset 16): conn 7 from offset 0, group "workers"
    /// from offset 12`.
    fn topic_holders(&self, id: TopicId, bytes: usize) -> String {
        let topic = &self.topics[id];
        let subscribers = topic.subscribers.iter().filter_map(|conn| {
            let offset = self.sessions.get(conn)?.oldest_needed(id)?;
            Some((offset, format!("conn {conn}")))
        });
        let groups = topic.groups.iter().filter(|g| !g.members().is_empty());
        let groups = groups.map(|group| (group.position(), format!("group {:?}", group.name)));
        let mut holders: Vec<(Offset, String)> = subscribers.chain(groups).collect();
        holders.sort_unstable();
        let mut named: Vec<String> = (holders.iter().take(HOLDERS_NAMED))
            .map(|(offset, holder)| format!("{holder} from offset {offset}"))
            .collect();
        if holders.len() > HOLDERS_NAMED {
            named.push(format!("{} more", holders.len() - HOLDERS_NAMED));
        }
        if named.is_empty() {
            named.push("no connected subscriber".to_owned());
        }
        let start = topic.log.start();
        let held = describe(bytes);
        format!(
            "{:?} ({held} from offset {start}): {}",
            topic.name,
            named.join(", ")
        )
    }
}
