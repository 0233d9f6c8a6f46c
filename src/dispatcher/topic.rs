//! A topic as the dispatcher holds it: its log, the connections subscribed
//! to it, its consumer groups and its counters. The dispatcher owns the
//! table of topics (`mod.rs`, filled by `topic_table.rs`) and lends it to
//! the sessions (`session/`) as they deliver, so both read this file. It
//! uses no other file of this folder, so `session/` can use it without
//! using the dispatcher.

use std::sync::Arc;

use crate::dispatcher::group::Group;
use crate::ids::ConnId;
use crate::stats::Traffic;
use crate::store::TopicLog;

/// A topic: its log, the connections subscribed to it, and its counters.
pub struct Topic {
    pub name: Arc<str>,
    pub log: Box<dyn TopicLog>,
    pub subscribers: Vec<ConnId>,
    /// Its consumer groups (`group.rs`); a group's index never changes.
    pub groups: Vec<Group>,
    /// Whether a group finished a message (or was created) this round, so
    /// the log must save where the groups are.
    pub groups_moved: bool,
    pub traffic: Traffic,
    /// Whether the log was appended to or pulled from this round, so it
    /// must be written (and made durable) before the round's frames go out.
    pub needs_write: bool,
    /// Whether the topic refused a publish for a full disk, and has not
    /// stored one since.
    pub refusing: bool,
}

impl Topic {
    /// A topic with `log`, the groups its log saved, and no subscribers.
    pub fn new(name: Arc<str>, log: Box<dyn TopicLog>, groups: Vec<Group>) -> Topic {
        Topic {
            name,
            log,
            subscribers: Vec::new(),
            groups,
            groups_moved: false,
            traffic: Traffic::default(),
            needs_write: false,
            refusing: false,
        }
    }
}

impl std::fmt::Debug for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topic")
            .field("name", &self.name)
            .field("end", &self.log.end())
            .field("subscribers", &self.subscribers.len())
            .finish()
    }
}
