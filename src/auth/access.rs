//! What every reader thread shares about authentication: the users of the
//! auth file (reloaded on SIGHUP), the permissions of a binary client that
//! never logs in, the failed logins per address (`delays.rs`), and the
//! turns of the password checks (`hashing.rs`).
//!
//! A reload swaps in a whole new [`Users`] and bumps a generation number.
//! Then it closes every connection logged in as a user the new file no
//! longer lists, or lists with another password or other permissions
//! (`logins.rs`): what such a connection subscribed to or joined under
//! the old rights must not go on delivering. Each connection's guard
//! (`guard.rs`) keeps the `Users` it logged in with and the decisions it
//! has made; before using them it compares the generation, one atomic
//! load, and does the same check itself if it moved, for a login that
//! was being checked against the old users while the reload ran. So a
//! reload applies to connections already open, and costs them nothing
//! until it happens.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;

use super::delays::Delays;
use super::hashing::Hashing;
use super::logins::Logins;
use super::permissions::Permissions;
use super::users::{AuthFileError, User, Users};

/// The authentication settings the broker starts with (`config.rs`).
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// `--auth-file`.
    pub file: PathBuf,
    /// `--allow-anonymous-binary`: what a binary client that sends no
    /// AUTH may do.
    pub anonymous_binary: Permissions,
    /// `--auth-failure-delay`: the wait after a first failed login.
    pub failure_delay: Duration,
}

/// What a reload did, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reloaded {
    /// How many users the file lists now.
    pub users: usize,
    /// How many connections it closed, their user removed or changed.
    pub closed: usize,
}

impl fmt::Display for Reloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} users; closed {} connections whose user was removed or changed",
            self.users, self.closed
        )
    }
}

/// The state every reader shares. See the module docs.
#[derive(Debug)]
pub struct Access {
    settings: AuthSettings,
    users: RwLock<Arc<Users>>,
    generation: AtomicU64,
    delays: Delays,
    hashing: Hashing,
    /// Shared with the dispatcher, which lists them in `STATS`.
    logins: Arc<Logins>,
}

impl Access {
    /// Loads the auth file: a bad one stops the start. Logins are written
    /// to `logins`.
    pub fn load(settings: AuthSettings, logins: Arc<Logins>) -> Result<Access, AuthFileError> {
        let users = Users::load(&settings.file)?;
        log::info!(
            "{} users from the auth file {}",
            users.count(),
            settings.file.display()
        );
        Ok(Access {
            delays: Delays::new(settings.failure_delay),
            hashing: Hashing::for_this_machine(),
            settings,
            users: RwLock::new(Arc::new(users)),
            generation: AtomicU64::new(0),
            logins,
        })
    }

    /// Reads the auth file again, and closes the connections of users it
    /// removed or changed. A bad file leaves the users as they were, and
    /// the error says why.
    pub fn reload(&self) -> Result<Reloaded, AuthFileError> {
        let users = Arc::new(Users::load(&self.settings.file)?);
        let before = std::mem::replace(&mut *self.users.write(), users.clone());
        self.generation.fetch_add(1, Ordering::Release);
        let closed = self.logins.revoke(|name| users.keeps(&before, name));
        Ok(Reloaded {
            users: users.count(),
            closed,
        })
    }

    /// The users now, and their generation.
    pub(super) fn users(&self) -> (Arc<Users>, u64) {
        let users = self.users.read();
        (users.clone(), self.generation.load(Ordering::Acquire))
    }

    /// Whether a reload has happened since `generation`.
    pub(super) fn is_current(&self, generation: u64) -> bool {
        self.generation.load(Ordering::Acquire) == generation
    }

    pub(super) fn logins(&self) -> &Logins {
        &self.logins
    }

    pub(super) fn anonymous_binary(&self) -> &Permissions {
        &self.settings.anonymous_binary
    }

    /// The user of `users` called `name`, if `password` is theirs. The
    /// check waits for its turn among the logins from `address`
    /// (`delays.rs`), then for a turn to hash (`hashing.rs`); a failure
    /// waits out the delay it earns before it returns, on the calling
    /// reader thread only, having given both turns back.
    pub(super) fn login<'a>(
        &self,
        users: &'a Users,
        address: IpAddr,
        name: &str,
        password: &str,
    ) -> Option<&'a User> {
        let turn = self.delays.turn(address);
        let user = self.hashing.run(|| users.login(name, password));
        if user.is_some() {
            turn.succeeded();
            return user;
        }
        let delay = turn.failed();
        drop(turn);
        std::thread::sleep(delay);
        None
    }
}
