//! How the disk store treats every log: the flags it is started with
//! (`--segment-bytes`, `--retention-*`, `--fsync`, `--max-message-bytes`,
//! `--on-damage`), gathered by `config.rs` and handed down to each segment.

use std::fmt;
use std::time::Duration;

/// How a disk store treats every log.
#[derive(Debug, Clone, Copy)]
pub struct LogSettings {
    pub segment_bytes: u64,
    pub retention_bytes: Option<u64>,
    /// Segments whose newest record is older than this are deleted.
    pub retention_age: Option<Duration>,
    pub fsync: Fsync,
    /// `--max-message-bytes`: a record with a longer payload is damage,
    /// and nothing is allocated for it.
    pub max_message_bytes: u64,
    /// `--on-damage`: whether a start skips damage inside a log or stops.
    pub on_damage: OnDamage,
}

impl LogSettings {
    /// Whether each log keeps a horizon file (`disk/horizon.rs`): only
    /// with `--fsync batch` and `--on-damage stop`. It is what lets a start
    /// that stops at damage tell a power loss's torn end from damage, and
    /// it costs a second fdatasync per batch (p50 latency about doubled),
    /// so the default `--on-damage skip`, which starts either way and
    /// loses nothing confirmed, does without it.
    pub(crate) fn keeps_horizon(&self) -> bool {
        self.fsync == Fsync::Batch && self.on_damage == OnDamage::Stop
    }
}

/// When the disk store forces appended messages to disk (`--fsync`). A
/// message is confirmed to its publisher only once its policy is met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// After every message: nothing confirmed is ever lost, and every
    /// message waits for the disk.
    Always,
    /// Once per round of the dispatcher, for every message of the round (a
    /// group commit): nothing confirmed is lost, and many publishers share
    /// one wait for the disk.
    Batch,
    /// Never: the operating system writes when it chooses. A crash of the
    /// broker loses nothing, a crash of the machine may.
    Never,
}

impl fmt::Display for Fsync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fsync::Always => "always",
            Fsync::Batch => "batch",
            Fsync::Never => "never",
        })
    }
}

/// What a start on a data directory does about a record that is damaged
/// with whole records after it: not a torn end that a crash left, but a
/// disk's decay, or a person's mistake (`--on-damage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDamage {
    /// Start, and serve every whole record; the damaged offsets are logged,
    /// counted in `STATS`, and skipped by every reader.
    Skip,
    /// Refuse to start, naming the file and the byte, so that a person
    /// can look at the damage before anything else happens to it.
    Stop,
}

impl OnDamage {
    /// The setting `--on-damage` names, if it names one.
    pub fn parse(value: &str) -> Option<OnDamage> {
        match value {
            "skip" => Some(OnDamage::Skip),
            "stop" => Some(OnDamage::Stop),
            _ => None,
        }
    }
}
