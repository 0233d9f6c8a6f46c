//! The broker's smallest shared words: what a message body is, where a
//! message sits in its topic, the numbers the broker gives connections
//! and topics, and how a dead-letter topic is named. Every other file may use these; this one uses none of them,
//! so it sits at the bottom of the reading order's dependencies.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// A message body, shared by reference count between the topic log and every
/// delivery of it: fanning a message out to ten subscribers clones a pointer
/// ten times, never the bytes.
pub type Payload = Arc<[u8]>;

/// The position of a message in its topic's log.
pub type Offset = u64;

/// What a dead-letter topic's name adds to the name of the topic whose
/// messages it takes (`dispatcher/dead_letters.rs`); whoever may read the
/// topic may read it (`auth/permissions.rs`).
pub const DEAD_LETTER_SUFFIX: &str = ".dlq";

/// Identifies a connection for the lifetime of the broker.
pub type ConnId = u64;

/// Index of a topic in the dispatcher's table. Topics are never removed, so an
/// index stays valid, and sessions can refer to topics without hashing names.
pub type TopicId = usize;

/// A map keyed by a [`ConnId`] or [`TopicId`].
///
/// The standard `HashMap` hashes with SipHash, which resists keys chosen by
/// an attacker to collide. These keys are numbers the broker assigns itself,
/// never chosen by a client, so a multiply (Fibonacci hashing) is enough, and
/// the dispatcher looks sessions and subscriptions up several times per
/// message.
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// A set of ids, with [`IdMap`]'s hasher.
pub type IdSet<K> = HashSet<K, BuildHasherDefault<IdHasher>>;

/// The hasher of [`IdMap`]: one multiplication by 2^64 / φ.
#[derive(Debug, Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}
