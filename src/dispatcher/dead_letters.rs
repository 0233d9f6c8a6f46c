//! Dead letters: a message given up after `--max-deliveries` goes (unless
//! `--dead-letter=off`) to the dead-letter topic of its topic: for topic
//! `t`, the topic `t.dlq`, created as it is needed. Each dead letter is one
//! line that says where the message came from, then its payload as it was
//! ([`dead_letter`]).
//!
//! In a round: the answers step (`answers.rs`) sends what each answering
//! session gave up, and `consumer_groups.rs` what a group gave up; a closing
//! connection's are sent before its session is forgotten (`closing.rs`).
//! A dead letter is appended like a publish with no publisher
//! (`publish.rs`), so it is written and made durable with the round.
//!
//! Calls: `topic_table.rs` (`topic_id`), `publish.rs` (`append`).

use std::time::Instant;

use super::Dispatcher;
use crate::dispatcher::session::in_flight::GivenUp;
use crate::ids::{ConnId, Payload, DEAD_LETTER_SUFFIX};
use crate::store::StoreError;
use crate::wire::line;

impl Dispatcher {
    /// Appends what `conn`'s session gave up to the dead-letter topics: for
    /// topic `t`, the topic `t.dlq`, created as it is needed. Each message
    /// there is one line that says where it came from, then the payload as
    /// it was (see [`dead_letter`]).
    pub(super) fn dead_letter_given_up(
        &mut self,
        conn: ConnId,
        now: Instant,
    ) -> Result<(), StoreError> {
        let Some(session) = self.sessions.get_mut(&conn) else {
            return Ok(());
        };
        for given_up in session.take_given_up() {
            self.send_to_dead_letters(&given_up, now)?;
        }
        Ok(())
    }

    /// Appends one given-up message to its dead-letter topic. One that
    /// cannot be stored there (the topic cannot be created, or the disk is
    /// full) is logged and dropped; only another failure of the store
    /// fails.
    pub(super) fn send_to_dead_letters(
        &mut self,
        given_up: &GivenUp,
        now: Instant,
    ) -> Result<(), StoreError> {
        let origin = self.topics[given_up.topic].name.clone();
        let name = format!("{origin}{DEAD_LETTER_SUFFIX}");
        let id = match self.topic_id(&name) {
            Ok(id) => id,
            Err(error) => {
                log::error!(
                    "{origin:?}@{}: given up, and its dead-letter topic {name:?} \
                     cannot be created: {error}",
                    given_up.offset
                );
                return Ok(());
            }
        };
        let offset = match self.append(id, dead_letter(&origin, given_up), None, now) {
            Ok(offset) => offset,
            Err(StoreError::Full(cause)) => {
                log::error!(
                    "{origin:?}@{}: given up, and its dead letter cannot be stored: {cause}",
                    given_up.offset
                );
                return Ok(());
            }
            Err(error) => return Err(error),
        };
        log::info!(
            "{origin:?}@{} went to {name:?}@{offset} after {} deliveries",
            given_up.offset,
            given_up.deliveries
        );
        Ok(())
    }
}

/// A dead letter: one line that names the original topic (as the line
/// protocol writes a topic, quoted if need be), offset and number of
/// deliveries, then the original payload, byte for byte.
///
/// ```text
/// dead-letter topic=orders offset=42 deliveries=5
/// <the payload>
/// ```
pub fn dead_letter(origin: &str, given_up: &GivenUp) -> Payload {
    let mut letter = b"dead-letter topic=".to_vec();
    line::encode_topic(&mut letter, origin);
    let fields = format!(
        " offset={} deliveries={}\n",
        given_up.offset, given_up.deliveries
    );
    letter.extend_from_slice(fields.as_bytes());
    letter.extend_from_slice(&given_up.payload);
    Payload::from(letter)
}
