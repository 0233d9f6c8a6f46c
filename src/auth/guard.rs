//! One connection's guard: it sits in the reader thread, between the
//! decoder and the dispatcher, and lets a request through, answers a
//! login, or turns the request into a refusal. The dispatcher and the
//! path a message takes after the reader pay nothing for it.
//!
//! Without `--auth-file` the guard is [`Guard::Open`]: every request
//! passes. With one, a line client must send `AUTH <user> <password>`
//! first: anything else is refused with `authentication required`, and
//! the third such refusal closes the connection. A binary client that
//! sends no AUTH gets the permissions of `--allow-anonymous-binary`
//! (none by default). Once logged in, each publish topic, subscription,
//! group join and `PULL` is checked against the user's permissions
//! (`permissions.rs`), once per action and topic: the decision is kept in
//! a small map, and a publisher sending to the same topic again is
//! recognised by its shared name (`LastTopic` in `wire/request.rs`), one
//! pointer comparison per message. A reload of the auth file
//! (`access.rs`) empties the map, and ends the connection if its user was
//! removed or changed.
//!
//! A refused request becomes a [`Refusal`], which the dispatcher answers
//! like any other (`-ERR permission denied: publish orders`, or an Error
//! status), and the connection stays usable.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::access::Access;
use super::permissions::{Action, Permissions};
use super::users::Users;
use crate::ids::ConnId;
use crate::queue::Hangup;
use crate::wire::line::{encode_topic, AUTH_REQUIRED, AUTH_USAGE};
use crate::wire::request::{Credentials, Decoded, Refusal, Request};

/// How many line-protocol requests before a login are refused before the
/// connection is closed.
const REFUSALS_BEFORE_LOGIN: u32 = 3;
/// How many decisions one connection keeps per action, and how many
/// bytes of topic names they may hold in all; past either they are
/// forgotten and made again. A name can be 64 KiB long, so the byte bound
/// is the one that keeps a connection's cache small.
const MAX_DECISIONS: usize = 256;
const MAX_DECISION_BYTES: usize = 16 << 10;

/// What a connection may do. See the module docs.
#[derive(Debug)]
pub(crate) enum Guard {
    /// No auth file: everything passes.
    Open,
    Checking(Box<Checks>),
}

/// Which protocol the connection speaks, which decides what it may do
/// before it logs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Speaks {
    Line,
    Binary,
}

impl Guard {
    /// The guard of connection `conn` from `address`, which speaks
    /// `speaks` and is closed by `hangup`; open if `access` is `None` (no
    /// `--auth-file`).
    pub fn new(
        access: Option<&Arc<Access>>,
        conn: ConnId,
        address: IpAddr,
        speaks: Speaks,
        hangup: &Arc<Hangup>,
    ) -> Guard {
        let Some(access) = access else {
            return Guard::Open;
        };
        let (users, generation) = access.users();
        Guard::Checking(Box::new(Checks {
            access: access.clone(),
            conn,
            address,
            speaks,
            hangup: hangup.clone(),
            user: None,
            users,
            generation,
            refused_before_login: 0,
            decisions: Default::default(),
            decision_bytes: 0,
            last_publish: None,
        }))
    }

    /// The request as the dispatcher should see it: itself, a login's
    /// answer, or a refusal.
    pub fn admit(&mut self, request: Decoded) -> Decoded {
        match (self, request) {
            (Guard::Open, Ok(Request::Auth(_))) => Err(Refusal::new(
                NO_AUTH_FILE.into(),
                false,
                NO_AUTH_FILE.into(),
            )),
            (Guard::Open, request) => request,
            (Guard::Checking(checks), request) => checks.admit(request),
        }
    }

    /// Whether the connection must log in before it may do anything: a
    /// line client with an auth file, until its first good `AUTH`. Asked
    /// before each request is decoded, so it looks up nothing.
    pub fn awaits_login(&self) -> bool {
        match self {
            Guard::Open => false,
            Guard::Checking(checks) => checks.speaks == Speaks::Line && checks.user.is_none(),
        }
    }
}

const NO_AUTH_FILE: &str =
    "authentication is not enabled: this broker was started without --auth-file";
const INVALID_CREDENTIALS: &str = "invalid credentials";
const RIGHTS_CHANGED: &str =
    "logged out: the auth file no longer gives this user the same rights; connect and log in again";

/// A guard with an auth file to check against.
#[derive(Debug)]
pub(crate) struct Checks {
    access: Arc<Access>,
    conn: ConnId,
    /// Where the client connects from: failed logins are slowed down per
    /// address.
    address: IpAddr,
    speaks: Speaks,
    /// Kept with the login, for a reload to close the connection
    /// (`logins.rs`).
    hangup: Arc<Hangup>,
    /// The user logged in, if any.
    user: Option<Arc<str>>,
    /// The users as of `generation`.
    users: Arc<Users>,
    generation: u64,
    refused_before_login: u32,
    /// Per action (indexed by [`Action::index`]), whether each topic
    /// asked for was allowed.
    decisions: [HashMap<Box<str>, bool>; 3],
    /// The bytes of the names in `decisions`.
    decision_bytes: usize,
    /// The last topic published to, as the decoder shares it, and whether
    /// it was allowed.
    last_publish: Option<(Arc<str>, bool)>,
}

impl Checks {
    fn admit(&mut self, request: Decoded) -> Decoded {
        self.reloaded()?;
        match request {
            Ok(Request::Auth(credentials)) => self.login(&credentials),
            Ok(Request::Quit) => Ok(Request::Quit),
            request if self.permissions().is_none() => self.refuse_before_login(request),
            Ok(request) => self.check(request),
            Err(refusal) => Err(refusal),
        }
    }

    /// Takes the users as they are now, and forgets every decision made
    /// with the old ones.
    fn forget_decisions(&mut self) {
        (self.users, self.generation) = self.access.users();
        self.clear_decisions();
        self.last_publish = None;
    }

    /// If the auth file was reloaded since the guard last looked: the
    /// decisions are made again, and a connection whose user the file
    /// removed or changed ends, as the reload ends those it finds in
    /// `Logins` (`access.rs`). This catches one that logged in against
    /// the old users while the reload ran.
    fn reloaded(&mut self) -> Result<(), Refusal> {
        if self.access.is_current(self.generation) {
            return Ok(());
        }
        let before = Arc::clone(&self.users);
        self.forget_decisions();
        let revoked = self
            .user
            .as_ref()
            .filter(|name| !self.users.keeps(&before, name));
        if let Some(name) = revoked {
            let log = format!("the auth file changed user {name:?}'s rights");
            self.access.logins().ended(self.conn);
            self.user = None;
            return Err(Refusal::new(RIGHTS_CHANGED.into(), true, log.into()));
        }
        Ok(())
    }

    fn clear_decisions(&mut self) {
        self.decisions.iter_mut().for_each(HashMap::clear);
        self.decision_bytes = 0;
    }

    fn login(&mut self, credentials: &Credentials) -> Decoded {
        self.forget_decisions();
        let user = credentials.user.as_str();
        let password = credentials.password();
        match self.access.login(&self.users, self.address, user, password) {
            Some(user) => {
                let name: Arc<str> = user.name.as_str().into();
                let hangup = self.hangup.clone();
                self.access
                    .logins()
                    .logged_in(self.conn, name.clone(), hangup);
                self.user = Some(name);
                log::debug!("conn {}: logged in as {:?}", self.conn, credentials.user);
                Ok(Request::Authenticated)
            }
            None => Err(Refusal::new(
                INVALID_CREDENTIALS.into(),
                false,
                format!("failed login as {:?}", credentials.user).into(),
            )),
        }
    }

    /// What the connection may do: its user's permissions, the anonymous
    /// ones for a binary client that has not logged in, or `None` for a
    /// line client that has not.
    fn permissions(&self) -> Option<&Permissions> {
        match (&self.user, self.speaks) {
            (Some(name), _) => self.users.get(name).map(|user| &user.permissions),
            (None, Speaks::Binary) => Some(self.access.anonymous_binary()),
            (None, Speaks::Line) => None,
        }
    }

    /// A line client's request before its login. A refusal that ends the
    /// stream anyway stays as it is, and a malformed AUTH keeps its usage.
    fn refuse_before_login(&mut self, request: Decoded) -> Decoded {
        let reason = match &request {
            Err(refusal) if refusal.is_fatal() => return request,
            Err(refusal) if refusal.reason() == AUTH_USAGE => AUTH_USAGE,
            _ => AUTH_REQUIRED,
        };
        self.refused_before_login += 1;
        let last = self.refused_before_login >= REFUSALS_BEFORE_LOGIN;
        Err(Refusal::new(
            reason.into(),
            last,
            "a request before AUTH".into(),
        ))
    }

    /// Lets `request` through if the user may do it.
    fn check(&mut self, request: Request) -> Decoded {
        let denied = match &request {
            Request::Publish { topic, .. } => self.may_publish(topic),
            Request::Subscribe { topics, group, .. } => {
                let action = match group {
                    Some(_) => Action::Group,
                    None => Action::Subscribe,
                };
                let denied = topics.iter().find(|topic| !self.decide(action, topic));
                denied.map(|topic| (action, topic.as_str())).map(denial)
            }
            Request::Pull { topic, group, .. } => self.may_pull(topic, group.is_some()),
            // Every other request by name, so that one added later does
            // not pass unchecked: it fails to compile here until someone
            // says what it needs. These touch no topic a user could not
            // already reach (an unsubscribe or an answer concerns what
            // the connection was allowed to take), or only report.
            Request::Unsubscribe { .. }
            | Request::Ack
            | Request::Nack
            | Request::Topics
            | Request::Stats
            | Request::Ping
            | Request::Help
            | Request::Quit
            | Request::Auth(_)
            | Request::Authenticated => None,
        };
        match denied {
            Some(refusal) => Err(refusal),
            None => Ok(request),
        }
    }

    /// Why a `PULL` of `topic` is refused, if it is. It reads, so it needs
    /// subscribe; one that names a group takes from the same group as
    /// `SUB ... group` (`dispatcher/pull.rs`), so it needs group as well,
    /// or a user refused the group could drain it by pulling. A plain
    /// `PULL` takes from the group `default`, which every user's plain
    /// pulls share.
    fn may_pull(&mut self, topic: &str, names_group: bool) -> Option<Refusal> {
        let needed: &[Action] = match names_group {
            true => &[Action::Subscribe, Action::Group],
            false => &[Action::Subscribe],
        };
        let refused = needed.iter().find(|&&action| !self.decide(action, topic));
        refused.map(|&action| denial((action, topic)))
    }

    /// Why a publish to `topic` is refused, if it is: for a publisher
    /// sending to one topic, a pointer comparison.
    fn may_publish(&mut self, topic: &Arc<str>) -> Option<Refusal> {
        let allowed = match &self.last_publish {
            Some((last, allowed)) if Arc::ptr_eq(last, topic) => *allowed,
            _ => {
                let allowed = self.decide(Action::Publish, topic);
                self.last_publish = Some((topic.clone(), allowed));
                allowed
            }
        };
        (!allowed).then(|| denial((Action::Publish, topic)))
    }

    /// Whether the user may do `action` to `topic`, from the map if it was
    /// decided before.
    fn decide(&mut self, action: Action, topic: &str) -> bool {
        if let Some(&allowed) = self.decisions[action.index()].get(topic) {
            return allowed;
        }
        let allowed = self
            .permissions()
            .is_some_and(|permissions| permissions.allows(action, topic));
        if self.decisions[action.index()].len() >= MAX_DECISIONS
            || self.decision_bytes + topic.len() > MAX_DECISION_BYTES
        {
            self.clear_decisions();
        }
        if topic.len() <= MAX_DECISION_BYTES {
            self.decision_bytes += topic.len();
            self.decisions[action.index()].insert(topic.into(), allowed);
        }
        allowed
    }
}

impl Drop for Checks {
    /// A connection that ends is logged in no more.
    fn drop(&mut self) {
        if self.user.is_some() {
            self.access.logins().ended(self.conn);
        }
    }
}

/// `permission denied: <action> <topic>`, the topic written as the line
/// protocol writes names, so that the reason stays one line.
fn denial((action, topic): (Action, &str)) -> Refusal {
    let mut reason = format!("permission denied: {action} ").into_bytes();
    encode_topic(&mut reason, topic);
    let reason = String::from_utf8_lossy(&reason).into_owned();
    Refusal::new(reason.clone().into(), false, reason.into())
}
