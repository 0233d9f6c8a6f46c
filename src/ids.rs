//! The broker's smallest shared words: what a message body is, where a
//! message sits in its topic, the numbers the broker gives connections
//! and topics, how a dead-letter topic is named, and the random ids that
//! name a store's incarnation. Every other file may use these; this one uses none of them,
//! so it sits at the bottom of the reading order's dependencies.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::io::Read;
use std::sync::Arc;
use std::time::SystemTime;

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

/// `bytes` random bytes as lowercase hex: a store's incarnation
/// (`store/`), the bridge's reply inboxes (`bridge/nats.rs`). They come
/// from `/dev/urandom`; where it cannot be read, from std's randomly
/// seeded hasher over the clock and the process id, which is still
/// unguessable enough to tell two starts apart.
pub fn random_hex(bytes: usize) -> String {
    let mut random = vec![0u8; bytes];
    let read = File::open("/dev/urandom").and_then(|mut file| file.read_exact(&mut random));
    if read.is_err() {
        for (i, chunk) in random.chunks_mut(8).enumerate() {
            let mut hasher = RandomState::new().build_hasher();
            hasher.write_u128(
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |since| since.as_nanos()),
            );
            hasher.write_u32(std::process::id());
            hasher.write_usize(i);
            chunk.copy_from_slice(&hasher.finish().to_le_bytes()[..chunk.len()]);
        }
    }
    random.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_hex_is_hex_of_the_length_asked_and_differs_each_time() {
        let (a, b) = (random_hex(8), random_hex(8));
        assert_eq!(a.len(), 16);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
        assert_eq!(random_hex(3).len(), 6);
    }
}
