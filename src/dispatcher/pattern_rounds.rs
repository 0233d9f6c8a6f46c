//! Pattern work in rounds: a subscribe, group join or `PULL` naming a
//! pattern (`orders.*`) must look at every topic that exists, and a
//! pattern may match 100,000 of them. Done in one go, that would stall
//! the dispatcher, and every other client with it, for as long as it
//! takes; so it is handed out in slices of [`TOPICS_PER_SLICE`] topics, one
//! slice as the request is taken and one per round after that, until
//! every topic has been looked at ([`PatternJob`]).
//!
//! ```text
//!   topics:  0 ……… next ……… end ……… (created later)
//!            ╰ done ╯╰ to do ╯╰ the pattern's record (patterns.rs) ╯
//! ```
//!
//! A subscription's patterns are recorded first, before the first slice:
//! a topic created while the rounds run (from `end` on) is matched once,
//! as it is created (`subscribe_patterns`), and the slices only look at
//! the topics before `end`, so none is missed and none is covered twice.
//! A pull is not recorded: it takes from the topics that existed when it
//! was asked for.
//!
//! The jobs wait in the [`Agenda`](super::agenda::Agenda), with the rest
//! of what a round puts off. From before the first slice to after the
//! last, the connection's session holds back every delivery
//! ([`Session::hold`](super::session::Session::hold)), and the requests
//! the connection sends after the pattern's wait in the job
//! ([`Line::push`](super::agenda::Line::push)): the
//! status (`+OK`, Subscribed) is sent when the last slice is done, and
//! then, as after any subscribe, the deliveries and the answers to those
//! later requests, each in its order. An `UNSUB` sent in the middle is
//! one of them, so it undoes the whole subscription once it is made.
//! Acks and Nacks are the exception: they answer deliveries written
//! before the job, so they are carried out as they come, and only a
//! refusal of one waits ([`Deferred`]). A connection that closes in the
//! middle has its subscription's job dropped (`closing.rs`), and what the
//! slices made, cursors and group places, ends with its session; it is
//! answered that the subscription was not made, and what waited is still
//! answered in order (a half-closed client reads on): carried out, but
//! for subscribes, unsubscribes and pulls past the first, which get an
//! error (`PatternJobs::cancel`). A pull's job goes on, and the session
//! with it, as for any pull its client closed right after asking for.
//!
//! A slice runs as the request is taken (so a pattern that matches few
//! topics is answered at once, as an exact name is) and in the round's
//! pattern step (`continue_pattern_jobs`), one job per round, the oldest
//! first; the round loop does not wait for a command while a job is left
//! (`timers.rs`). The last round before a stop finishes every job.
//!
//! Calls: `subscribe.rs` (`follow_topic`, `leave_uncovered`),
//! `consumer_groups.rs` (`settle_groups`), `logs.rs` (`write_now`),
//! `delivery.rs` (`reply`, `serve`), `mod.rs` (`carry_out`).

use std::time::Instant;

use super::agenda::{Deferred, JobKind, PatternJob, TooMuchDeferred};
use super::patterns::Followed;
use super::Dispatcher;
use crate::ids::ConnId;
use crate::pattern::Pattern;
use crate::store::StoreError;
use crate::wire::reply::Reply;

/// How many topics one slice of a pattern's work looks at. Matching a
/// name and making a cursor or a group place take well under a
/// microsecond each, so a slice adds at most a millisecond or so to a
/// round; 100,000 topics take 100 rounds.
pub(super) const TOPICS_PER_SLICE: usize = 1024;

impl Dispatcher {
    /// Finishes a subscribe or pull whose exact names are done already
    /// (every one goes through here, with patterns or without): records a
    /// subscription's patterns, then matches them against the topics, and
    /// answers the request, at once if one slice covers them (or there
    /// are none), otherwise after the last of the next rounds. The
    /// session is held from before the first slice: writing a matching
    /// topic offers its new messages to the session, which would
    /// otherwise send from the cursors the slice made before their `+OK`.
    pub(super) fn match_patterns_and_answer(
        &mut self,
        conn: ConnId,
        patterns: Vec<Pattern>,
        kind: JobKind,
        now: Instant,
    ) -> Result<(), StoreError> {
        let mut added = Vec::new();
        if let JobKind::Subscribe { ack, group, .. } = &kind {
            for pattern in &patterns {
                if !self.patterns.follows(conn, pattern, group.as_deref()) {
                    added.push(pattern.clone());
                }
                let group = group.clone();
                let followed = Followed {
                    pattern: pattern.clone(),
                    group,
                    ack: *ack,
                };
                self.patterns.add(conn, followed);
            }
        }
        // Without patterns (a request of exact names only) there is no
        // topic to look at: the request is answered at once.
        let end = if patterns.is_empty() {
            0
        } else {
            self.topics.len()
        };
        let job = PatternJob {
            conn,
            patterns,
            added,
            kind,
            next: 0,
            end,
            deferred: Vec::new(),
            deferred_bytes: 0,
            too_much: None,
        };
        if let Some(session) = self.sessions.get_mut(&conn) {
            session.hold();
        }
        self.run_slice(job, now)
    }

    /// The round's pattern step: the oldest unfinished job does one slice.
    /// In the last round before a stop, every job is finished instead, so
    /// that every request taken is carried out, as the stop promises (see
    /// `reader.rs`'s `Gate`).
    pub(super) fn continue_pattern_jobs(
        &mut self,
        stopping: bool,
        now: Instant,
    ) -> Result<(), StoreError> {
        while let Some(job) = self.agenda.pattern_jobs.take_oldest() {
            self.run_slice(job, now)?;
            if !stopping {
                break;
            }
        }
        Ok(())
    }

    /// Looks at the next [`TOPICS_PER_SLICE`] topics of `job`, then
    /// finishes it, or puts it back for a later round.
    fn run_slice(&mut self, mut job: PatternJob, now: Instant) -> Result<(), StoreError> {
        if let Some(too_much) = job.too_much {
            return self.answer_too_much(job, too_much, now);
        }
        let stop = job.end.min(job.next + TOPICS_PER_SLICE);
        for id in job.next..stop {
            let name = &self.topics[id].name;
            if !job.patterns.iter().any(|pattern| pattern.matches(name)) {
                continue;
            }
            self.write_now(id, now)?;
            if let Err(limit) = self.follow_topic(job.conn, id, &mut job.kind) {
                return self.abandon(job, Reply::OverLimit(limit), now);
            }
        }
        job.next = stop;
        if job.next < job.end {
            // A closed connection's pull is making progress: its session
            // must not reach the end of its linger before the pull starts.
            if let Some(session) = self.sessions.get_mut(&job.conn) {
                session.note_progress(now);
            }
            self.agenda.pattern_jobs.put_back(job);
            return Ok(());
        }
        self.finish(job, now)
    }

    /// Every topic has been looked at: the status goes out, then what the
    /// subscription or pull sends, then the answers to the requests that
    /// waited. Those are carried out even if the session has gone (a pull
    /// of a closed connection that outlasted its linger): they are the
    /// publishes a close keeps. A pull is served only after them, since
    /// a closed connection's session ends with its last pull, and a pull
    /// that waited must be queued before that.
    fn finish(&mut self, job: PatternJob, now: Instant) -> Result<(), StoreError> {
        let conn = job.conn;
        let Some(session) = self.sessions.get_mut(&conn) else {
            return self.carry_out_deferred(conn, job.deferred, now);
        };
        session.release();
        match job.kind {
            JobKind::Subscribe { .. } => {
                session.reply(Reply::Subscribed);
                session.pump(&self.topics, now);
                self.agenda.register(conn, session);
                // The groups it joined, and any of its groups that found it
                // held, give to it now.
                self.settle_groups(conn, now);
                self.carry_out_deferred(conn, job.deferred, now)
            }
            JobKind::Pull { max, sources, .. } => {
                session.add_pull(sources, max);
                self.carry_out_deferred(conn, job.deferred, now)?;
                self.serve(conn, now);
                Ok(())
            }
        }
    }

    /// The connection sent too much behind the job without waiting for
    /// its status (see `agenda::Line::push`): the job is refused with
    /// that error, and the connection closed once it is written, so that
    /// the client learns why. What it sent is dropped already.
    fn answer_too_much(
        &mut self,
        job: PatternJob,
        too_much: TooMuchDeferred,
        now: Instant,
    ) -> Result<(), StoreError> {
        let conn = job.conn;
        self.agenda.pattern_jobs.hang_up(conn);
        self.abandon(job, Reply::Error(too_much.to_string().into()), now)?;
        if let Some(session) = self.sessions.get_mut(&conn) {
            session.close_once_written();
        }
        Ok(())
    }

    /// The request is refused with `refusal`: a topic's group had no room
    /// under `--max-groups-per-topic`, or the connection sent too much
    /// behind it. A subscription forgets the patterns it added
    /// and leaves what they alone gave the connection, but keeps what the
    /// names it gave exactly were given before the patterns were looked
    /// at (docs/PROTOCOL.md says so); a pull takes nothing.
    fn abandon(&mut self, job: PatternJob, refusal: Reply, now: Instant) -> Result<(), StoreError> {
        let conn = job.conn;
        if let JobKind::Subscribe { group, .. } = &job.kind {
            for pattern in &job.added {
                self.patterns.remove_in(conn, pattern, group.as_deref());
            }
            self.leave_uncovered(conn, &job.added);
        }
        if let Some(session) = self.sessions.get_mut(&conn) {
            session.reply(refusal);
            session.release();
            session.pump(&self.topics, now);
            self.agenda.register(conn, session);
        }
        self.settle_groups(conn, now);
        self.carry_out_deferred(conn, job.deferred, now)
    }

    /// Carries out, in order, the requests that waited behind a job, and
    /// sends the replies that did; one of them may start another job,
    /// behind which the rest wait again.
    pub(super) fn carry_out_deferred(
        &mut self,
        conn: ConnId,
        deferred: Vec<Deferred>,
        now: Instant,
    ) -> Result<(), StoreError> {
        for what in deferred {
            match what {
                Deferred::Request(_, Some(hangup)) if hangup.is_done() => {
                    break; // hung up on: the rest is dropped
                }
                Deferred::Request(request, hangup) => {
                    self.carry_out(conn, request, hangup.as_ref(), now)?;
                }
                Deferred::Reply(reply) => self.reply_in_turn(conn, reply),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatcher::session::in_flight::DeliveryPolicy;
    use crate::queue::Command;
    use crate::wire::request::{AckMode, Request, StartAt};
    use crate::writer::Writer;

    fn answered(dispatcher: &Dispatcher, conn: ConnId) -> bool {
        dispatcher.sessions[&conn].has_frames_queued()
    }

    /// The rounds are what keep a big pattern from holding others up:
    /// after its first slice the job waits for the next round, and a
    /// request from another connection taken meanwhile is answered first.
    #[test]
    fn a_pattern_over_more_topics_than_a_slice_lets_others_be_answered_before_it() {
        let now = Instant::now();
        let mut dispatcher = Dispatcher::for_test(DeliveryPolicy::for_test());
        for i in 0..=2 * TOPICS_PER_SLICE {
            dispatcher.topic_id(&format!("t.{i}")).unwrap();
        }
        for conn in [1, 2] {
            let writer = Writer::for_test();
            dispatcher
                .handle(Command::Attach { conn, writer }, now)
                .unwrap();
        }
        let subscribe = Request::Subscribe {
            topics: vec!["t.*".into()],
            start: StartAt::Beginning,
            ack: AckMode::OnWrite,
            group: None,
        };
        dispatcher.carry_out(1, Ok(subscribe), None, now).unwrap();
        dispatcher
            .carry_out(2, Ok(Request::Ping), None, now)
            .unwrap();
        assert!(dispatcher.agenda.pattern_jobs.has_job(1));
        assert!(!answered(&dispatcher, 1), "no +OK after one slice");
        assert!(
            answered(&dispatcher, 2),
            "the other connection waits for nothing"
        );
        dispatcher.continue_pattern_jobs(false, now).unwrap();
        assert!(!answered(&dispatcher, 1), "a slice a round");
        dispatcher.continue_pattern_jobs(false, now).unwrap();
        assert!(!dispatcher.agenda.pattern_jobs.has_job(1));
        assert!(answered(&dispatcher, 1), "the +OK after the last slice");
        dispatcher.syncer.stop().unwrap();
    }
}
