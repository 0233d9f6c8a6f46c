//! What every mirror's thread shares: a session (one connection to each
//! side) runs until something fails, with a [`SessionError`], then
//! [`retry_forever`] counts the failure in the mirror's figures and starts
//! the next session after a short wait, unless no new session can mend
//! it (an existing JetStream consumer the mirror cannot use): that ends
//! the mirror, and with it the process, saying what to do.

use std::convert::Infallible;
use std::fmt;
use std::thread;
use std::time::{Duration, Instant};

use super::brook_line::BrookError;
use super::figures::MirrorFigures;
use super::jetstream::JetStreamError;
use super::nats::NatsError;
use crate::client::ClientError;

/// Why a mirror's session ended.
#[derive(Debug)]
pub enum SessionError {
    /// The consuming connection to brook (`--to-nats`).
    BrookFeed(BrookError),
    /// The publishing connection to brook (`--from-nats`).
    BrookPublisher(ClientError),
    Nats(NatsError),
    JetStream(JetStreamError),
    /// The oldest publish had no PubAck for this long (`--to-nats`).
    PubAckOverdue(Duration),
    /// JetStream refused a pull request (409), saying this (`--from-nats`).
    PullRefused(String),
    /// A pull request that should have ended within this brought neither
    /// a message nor its end (`--from-nats`).
    PullUnanswered(Duration),
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::BrookFeed(error) => write!(f, "{error}"),
            SessionError::BrookPublisher(error) => write!(f, "brook: {error}"),
            SessionError::Nats(error) => write!(f, "{error}"),
            SessionError::JetStream(error) => write!(f, "{error}"),
            SessionError::PubAckOverdue(waited) => {
                write!(f, "no PubAck from JetStream within {waited:?}")
            }
            SessionError::PullRefused(why) => write!(f, "JetStream refused a pull: {why}"),
            SessionError::PullUnanswered(expires) => write!(
                f,
                "a pull request that expires in {expires:?} got no answer at all"
            ),
        }
    }
}

impl From<BrookError> for SessionError {
    fn from(error: BrookError) -> SessionError {
        SessionError::BrookFeed(error)
    }
}

impl From<ClientError> for SessionError {
    fn from(error: ClientError) -> SessionError {
        SessionError::BrookPublisher(error)
    }
}

impl From<NatsError> for SessionError {
    fn from(error: NatsError) -> SessionError {
        SessionError::Nats(error)
    }
}

impl From<JetStreamError> for SessionError {
    fn from(error: JetStreamError) -> SessionError {
        SessionError::JetStream(error)
    }
}

impl SessionError {
    /// Whether no new session can mend it, so that the mirror ends: an
    /// existing consumer the mirror cannot use stays so until a person
    /// deletes it, and a session every 2 s would only say so again.
    fn ends_the_mirror(&self) -> bool {
        matches!(self, SessionError::JetStream(JetStreamError::Unfit(_)))
    }
}

/// The wait before a new session, at first and at most.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MOST: Duration = Duration::from_secs(2);

/// Runs `session` again and again: after a failure (logged, naming
/// `mirror`, and counted in `figures`), a new session starts after a wait
/// that doubles while the failures go on quickly, up to `RETRY_MOST` (2 s).
/// Returns the failure that ends the mirror, one no new session can mend.
pub fn retry_forever(
    mirror: &str,
    figures: &MirrorFigures,
    mut session: impl FnMut() -> Result<Infallible, SessionError>,
) -> SessionError {
    let mut wait = RETRY_FIRST;
    loop {
        let started = Instant::now();
        let Err(error) = session();
        figures.session_failed();
        if error.ends_the_mirror() {
            return error;
        }
        if started.elapsed() > RETRY_MOST * 4 {
            wait = RETRY_FIRST;
        }
        log::warn!("{mirror}: {error}; starting again in {wait:?}");
        thread::sleep(wait);
        wait = (wait * 2).min(RETRY_MOST);
    }
}
