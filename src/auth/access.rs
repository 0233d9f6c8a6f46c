//! What every reader thread shares about authentication: the users of the
//! auth file (reloaded on SIGHUP), the permissions of a binary client that
//! never logs in, the failed logins per address (`delays.rs`), and the
//! turns of the password checks (`hashing.rs`).
//!
//! A reload swaps in a whole new [`Users`] and bumps a generation number.
//! Each connection's guard (`guard.rs`) keeps the `Users` it logged in
//! with and the decisions it has made; before using them it compares the
//! generation, one atomic load, and looks its user up again if it moved.
//! So a reload applies to connections already open, and costs them
//! nothing until it happens.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

    /// Reads the auth file again. A bad file leaves the users as they were,
    /// and the error says why.
    pub fn reload(&self) -> Result<usize, AuthFileError> {
        let users = Users::load(&self.settings.file)?;
        let count = users.count();
        *self.users.write() = Arc::new(users);
        self.generation.fetch_add(1, Ordering::Release);
        Ok(count)
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

    /// The user of `users` called `name`, if `password` is theirs, once
    /// it is this check's turn (`hashing.rs`).
    pub(super) fn login<'a>(
        &self,
        users: &'a Users,
        name: &str,
        password: &str,
    ) -> Option<&'a User> {
        self.hashing.run(|| users.login(name, password))
    }

    /// Counts a failed login from `address` and waits the delay it earns,
    /// on the calling reader thread only.
    pub(super) fn fail(&self, address: IpAddr) {
        std::thread::sleep(self.delays.failed(address, Instant::now()));
    }

    pub(super) fn succeed(&self, address: IpAddr) {
        self.delays.succeeded(address);
    }
}
