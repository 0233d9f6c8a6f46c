//! Who is logged in on which connection, for `STATS`.
//!
//! Each reader's guard (`guard.rs`) writes its connection's user here when
//! a login succeeds, and takes it out when the connection ends; the
//! dispatcher reads the list when it makes a report
//! (`dispatcher/reports.rs`). One short lock per login, logout and
//! report: nothing on a message's path takes it. It holds one entry per
//! open connection at most, so `--max-connections` bounds it.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::ids::ConnId;

/// The user logged in on each connection that has logged in.
#[derive(Debug, Default)]
pub struct Logins {
    by_conn: Mutex<BTreeMap<ConnId, Arc<str>>>,
}

impl Logins {
    pub(crate) fn logged_in(&self, conn: ConnId, user: Arc<str>) {
        self.by_conn.lock().insert(conn, user);
    }

    pub(crate) fn ended(&self, conn: ConnId) {
        self.by_conn.lock().remove(&conn);
    }

    /// Each logged-in connection and its user, oldest connection first.
    pub(crate) fn list(&self) -> Vec<(ConnId, Arc<str>)> {
        let by_conn = self.by_conn.lock();
        by_conn
            .iter()
            .map(|(&conn, user)| (conn, user.clone()))
            .collect()
    }
}
