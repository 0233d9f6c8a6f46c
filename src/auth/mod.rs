//! Who may connect, and what they may touch (`--auth-file`).
//!
//! Without an auth file brook lets anyone in, as before, and the guard
//! each reader holds lets every request through. With one, each
//! connection logs in (`AUTH` in the line protocol, action 8 in the
//! binary one) and every publish, subscription, group join and `PULL` is
//! checked against its user's permissions in the reader thread, before it
//! reaches the dispatcher. Read bottom-up:
//!
//! - `sha256.rs`: SHA-256 (FIPS 180-4).
//! - `pbkdf2.rs`: HMAC-SHA-256 and PBKDF2-HMAC-SHA-256 on it, which hash
//!   the passwords.
//! - `permissions.rs`: a user's topic rules, and whether a rule covers a
//!   topic or a whole pattern.
//! - `users.rs`: the auth file, its format and its errors.
//! - `delays.rs`: the growing wait after failed logins, per address.
//! - `hashing.rs`: how many password checks run at once.
//! - `logins.rs`: which connection is logged in as whom, for `STATS`
//!   and to close those a reload takes rights from.
//! - `access.rs`: what all readers share: the users (reloaded on SIGHUP),
//!   the anonymous binary permissions, the delays.
//! - `guard.rs`: one connection's checks, called by `reader.rs`.
//!
//! brook has no TLS (the design card's crates cannot give it): passwords
//! cross the network as they are typed. `docs/OPERATIONS.md` ("Security")
//! says to put stunnel or an SSH tunnel in front on a network that is not
//! trusted.

mod access;
mod delays;
pub(crate) mod guard;
mod hashing;
mod logins;
mod pbkdf2;
mod permissions;
mod sha256;
mod users;

pub use access::{Access, AuthSettings, Reloaded};
pub use logins::Logins;
pub use permissions::{Permissions, Rule};
pub use users::{AuthFileError, PasswordHash, DEFAULT_ITERATIONS};
