//! Who is logged in on which connection: for `STATS`, and to close the
//! connections a reload of the auth file takes rights from.
//!
//! Each reader's guard (`guard.rs`) writes its connection's user here when
//! a login succeeds, with the connection's [`Hangup`], and takes it out
//! when the connection ends; the dispatcher reads the list when it makes a
//! report (`dispatcher/reports.rs`), and a reload (`access.rs`) walks it.
//! One short lock per login, logout, report and reload: nothing on a
//! message's path takes it. It holds one entry per open connection at
//! most, so `--max-connections` bounds it.
//!
//! Why a reload shuts the socket from here rather than asking the
//! dispatcher to drop the connection: a connection whose user is gone
//! may be idle, a subscriber that only receives, so its guard would never
//! run again to notice; and the dispatcher does not know users. Shutting
//! the socket ends the reader's `read()`, and the reader then detaches as
//! for any client that closes: the dispatcher forgets its subscriptions
//! and group memberships on its usual closing path, and nothing new is
//! needed in it.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::ids::ConnId;
use crate::queue::Hangup;

/// The user logged in on each connection that has logged in.
#[derive(Debug, Default)]
pub struct Logins {
    by_conn: Mutex<BTreeMap<ConnId, Login>>,
}

/// One logged-in connection.
#[derive(Debug)]
struct Login {
    user: Arc<str>,
    /// Shuts the connection's socket, if a reload revokes its rights.
    hangup: Arc<Hangup>,
}

impl Logins {
    pub(crate) fn logged_in(&self, conn: ConnId, user: Arc<str>, hangup: Arc<Hangup>) {
        self.by_conn.lock().insert(conn, Login { user, hangup });
    }

    pub(crate) fn ended(&self, conn: ConnId) {
        self.by_conn.lock().remove(&conn);
    }

    /// Closes every connection whose user `keeps` says no to, and forgets
    /// it. Returns how many were closed.
    pub(crate) fn revoke(&self, keeps: impl Fn(&str) -> bool) -> usize {
        let mut closed = 0;
        self.by_conn.lock().retain(|conn, login| {
            let kept = keeps(&login.user);
            if !kept {
                log::info!(
                    "conn {conn}: closed: the auth file changed user {:?}'s rights",
                    login.user
                );
                login.hangup.hang_up();
                closed += 1;
            }
            kept
        });
        closed
    }

    /// Each logged-in connection and its user, oldest connection first.
    pub(crate) fn list(&self) -> Vec<(ConnId, Arc<str>)> {
        let by_conn = self.by_conn.lock();
        by_conn
            .iter()
            .map(|(&conn, login)| (conn, login.user.clone()))
            .collect()
    }
}
