//! The topic table: finding a topic by its name, and creating it, within
//! `--max-topics`, the first time a publish, a subscribe or a dead letter
//! names it. A topic is never removed, so its id (its index in
//! `Dispatcher::topics`) never changes.
//!
//! Not a step of the round: the requests that name topics call it
//! (`publish.rs`, `subscribe.rs`, `dead_letters.rs`), and so does
//! `Dispatcher::new`, for the topics the store recovered.
//!
//! Calls: `delivery.rs` (`reply`), `subscribe.rs` (`subscribe_patterns`).

use std::sync::Arc;

use super::topic::Topic;
use super::Dispatcher;
use crate::dispatcher::group::Group;
use crate::ids::{ConnId, TopicId};
use crate::store::{StoreError, TopicLog};
use crate::wire::reply::{OverLimit, Reply};

impl Dispatcher {
    /// The id of the topic called `name`, creating the topic if it is new
    /// and `--max-topics` allows.
    pub(super) fn topic_id(&mut self, name: &str) -> Result<TopicId, Unavailable> {
        if let Some(&id) = self.topic_ids.get(name) {
            return Ok(id);
        }
        if self.topics.len() >= self.limits.max_topics {
            return Err(Unavailable::OverLimit(OverLimit::Topics(
                self.limits.max_topics,
            )));
        }
        let log = self.store.open(name)?;
        Ok(self.add_topic(Arc::from(name), log))
    }

    /// Adds the topic `name` with its `log`, and the groups the log saved,
    /// to the table, subscribes the connections whose patterns match it,
    /// and returns its id.
    pub(super) fn add_topic(&mut self, name: Arc<str>, log: Box<dyn TopicLog>) -> TopicId {
        let id = self.topics.len();
        let saved = log.saved_groups().into_iter();
        let groups = saved
            .map(|(name, at)| Group::restored(Arc::from(name), &at))
            .collect();
        self.topics.push(Topic::new(name.clone(), log, groups));
        self.topic_ids.insert(name, id);
        self.subscribe_patterns(id);
        id
    }

    /// Tells `conn` that the topic `name` could not be created: over
    /// `--max-topics` (a client's doing, so only a debug line), or the
    /// store failed.
    pub(super) fn topic_unavailable(&mut self, conn: ConnId, name: &str, unavailable: Unavailable) {
        match unavailable {
            Unavailable::OverLimit(limit) => {
                log::debug!("conn {conn}: cannot create topic {name:?}: {limit}");
                self.reply(conn, Reply::OverLimit(limit));
            }
            Unavailable::Store(error) => {
                log::error!("conn {conn}: cannot create topic {name:?}: {error}");
                self.reply(conn, Reply::Error("topic not available".into()));
            }
        }
    }
}

/// Why the dispatcher could not find or create a topic.
#[derive(Debug)]
pub(super) enum Unavailable {
    OverLimit(OverLimit),
    Store(StoreError),
}

impl From<StoreError> for Unavailable {
    fn from(error: StoreError) -> Unavailable {
        Unavailable::Store(error)
    }
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unavailable::OverLimit(limit) => write!(f, "{limit}"),
            Unavailable::Store(error) => write!(f, "{error}"),
        }
    }
}
