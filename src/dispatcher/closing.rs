//! Closing: a connection that closed (`Command::Detach`, or `QUIT`), the
//! writers still writing what a closed connection was sent, and the
//! broker's own stop.
//!
//! A closed connection's subscriptions and group places end at once
//! (`detach`), but its session lives on until the pulls it asked for are
//! done (`register_or_forget`, `forget_session`). Its writer then gets the linger
//! (5 s) to write what it holds: each round's lingering step
//! (`close_lingering`) shuts the socket of a writer still at it after
//! that. When the broker stops, after its last round, `end_sessions` ends
//! every session at once and forces every log to disk, and
//! `Dispatcher::run` waits for the writers ([`Ending`]).
//!
//! Calls: `subscribe.rs` (`remove_subscriber`), `consumer_groups.rs`
//! (`settle_groups`), `dead_letters.rs` (`dead_letter_given_up`),
//! `pattern_rounds.rs` (`carry_out_deferred`), `delivery.rs` (`serve`);
//! and the agenda's `PatternJobs::cancel`.

use std::time::{Duration, Instant};

use super::subscribe::remove_subscriber;
use super::{Dispatcher, Stopped};
use crate::ids::ConnId;
use crate::store::StoreError;
use crate::writer::Link;

impl Dispatcher {
    /// The connection has closed: its subscriptions end at once. The
    /// session itself ends now, or once the pulls it asked for are done.
    /// An unfinished pattern subscription is answered that it was not
    /// made, and the requests sent behind it are answered in their turn
    /// (see `PatternJobs::cancel`): a client that half-closed still reads.
    pub(super) fn detach(&mut self, conn: ConnId, now: Instant) -> Result<(), StoreError> {
        self.patterns.forget(conn);
        let left_behind = self.agenda.pattern_jobs.cancel(conn);
        let pull_goes_on = self.agenda.pattern_jobs.has_job(conn);
        if let Some(session) = self.sessions.get_mut(&conn) {
            if !pull_goes_on {
                session.release(); // or its cancelled job keeps it
            }
            for id in session.topics() {
                remove_subscriber(&mut self.topics[id], conn);
            }
            for membership in session.memberships() {
                self.topics[membership.topic].groups[membership.group].leave(conn);
            }
            session.close(&self.topics, now);
            // What it had of its groups' messages goes to the others, and
            // what it gave up to the dead-letter topics, before the session
            // is forgotten.
            self.settle_groups(conn, now);
            self.dead_letter_given_up(conn, now)?;
        }
        // Before `serve`, which ends a session with no pull left.
        self.carry_out_deferred(conn, left_behind, now)?;
        self.serve(conn, now);
        Ok(())
    }

    /// After a session changed: registers what it needs next, or forgets
    /// it if it was closing and is done.
    pub(super) fn register_or_forget(&mut self, conn: ConnId, now: Instant) {
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        if session.is_done(now) {
            self.forget_session(conn, now);
        } else {
            self.agenda.register(conn, session);
        }
    }

    /// Forgets a closed session. Whatever is still queued (such as an
    /// error before a close) goes out, and the writer's channel closes with
    /// the session. A writer with frames left gets until the linger
    /// deadline; one whose pull stalled is cut off at once, since its
    /// client has already stopped reading for that long.
    fn forget_session(&mut self, conn: ConnId, now: Instant) {
        let Some(mut session) = self.sessions.remove(&conn) else {
            return;
        };
        self.agenda.forget(conn);
        if let Some(parcel) = session.pack() {
            self.agenda.parcels.push(parcel);
        }
        let stalled = session.is_pulling();
        let link = session.into_link();
        if stalled {
            log::debug!("conn {conn}: closed while its pull was not being read");
            link.close();
        } else if link.pending_frames() > 0 {
            let deadline = now + self.policy.linger;
            self.agenda.lingering.push_back((deadline, link));
        }
    }

    /// Shuts the socket of every lingering writer that is still not done a
    /// linger after its last frames reached it: its client has stopped
    /// reading, and the thread would otherwise wait in `write` for ever.
    /// The linger runs from when the frames reached the writer, not from
    /// the close: a confirmation the syncer holds until its fsync (slow
    /// disk, `--fsync-interval`) must not be cut off before it is sent.
    pub(super) fn close_lingering(&mut self, now: Instant) {
        while let Some((deadline, _)) = self.agenda.lingering.front() {
            if *deadline > now {
                break;
            }
            let Some((_, link)) = self.agenda.lingering.pop_front() else {
                break;
            };
            if link.pending_frames() == 0 {
                continue;
            }
            let linger = self.policy.linger;
            match link.all_posted_at() {
                None => self.agenda.lingering.push_back((now + linger, link)),
                Some(posted) if posted + linger > now => {
                    self.agenda.lingering.push_back((posted + linger, link));
                }
                Some(_) => link.close(),
            }
        }
    }

    /// The broker is stopping, and the last round is done: every session
    /// ends, every log is written and forced to disk whatever `--fsync`
    /// says, and what the sessions still had to send is handed to the
    /// syncer, to go out once that is done. Writers of connections that
    /// closed earlier and are still writing are waited for too.
    pub(super) fn end_sessions(&mut self) -> Result<Ending, StoreError> {
        let mut jobs = Vec::new();
        for topic in &mut self.topics {
            jobs.extend(topic.log.write_and_force()?);
        }
        let mut parcels = Vec::new();
        let mut links = Vec::new();
        for (_, mut session) in self.sessions.drain() {
            parcels.extend(session.pack());
            links.push(session.into_link());
        }
        let connections = links.len();
        links.extend(self.agenda.lingering.drain(..).map(|(_, link)| link));
        let ending = Ending {
            stopped: Stopped {
                logs_forced: jobs.len(),
                connections,
                frames: links.iter().map(Link::pending_frames).sum(),
                cut_off: 0,
            },
            links,
            linger: self.policy.linger,
        };
        self.syncer.hand_over(jobs, parcels)?;
        Ok(ending)
    }
}

/// The writers a stopping dispatcher waits for, once their last frames
/// are posted.
pub(super) struct Ending {
    stopped: Stopped,
    links: Vec<Link>,
    linger: Duration,
}

impl Ending {
    /// Gives every writer until the linger has passed to write what it holds
    /// and shut its socket; a writer still going then is cut off.
    pub(super) fn wait_for_writers(mut self) -> Stopped {
        let deadline = Instant::now() + self.linger;
        for link in &self.links {
            if !link.wait_until_ended(deadline) {
                link.close();
                self.stopped.cut_off += 1;
            }
        }
        self.stopped
    }
}
