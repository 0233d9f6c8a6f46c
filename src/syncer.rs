//! The syncer thread: forces a round's writes to disk, then lets the round's
//! frames go out, while the dispatcher goes on with its next round.
//!
//! With `--fsync batch` nothing about a message (its confirmation, its
//! delivery) may leave the broker before the message is on disk, or a
//! crash could take back what a client was told. Waiting for the disk on
//! the dispatcher thread would stop every topic for each fsync, so the
//! dispatcher only writes a round's records to the operating system and
//! hands the syncer the round: the jobs that force them to disk
//! ([`SyncJob`]) and the frames packed for the writers ([`Parcel`]s).
//!
//! ```text
//!   dispatcher ── round N: jobs + parcels ──▶ syncer ── fsync ──▶ disk
//!        │ (goes on with round N+1)             │
//!        │                                      └── post parcels ──▶ writers
//!        └── a round with no jobs, when the syncer is idle ─────────▶ writers
//! ```
//!
//! Rounds are posted in the order they were made, so a connection's frames
//! never overtake each other. When the disk is slower than the dispatcher,
//! rounds queue up, and the syncer takes all of them at once: the first
//! fsync covers every record the dispatcher has written by then, and the
//! others find nothing left to force. That is the group commit, across
//! publishers and across rounds. `--fsync-interval` makes it wait that long
//! after a round with jobs arrives, gathering the rounds that follow, so
//! that one fsync covers more writes at the price of that much latency.
//! The queue is short, so a disk that falls further behind makes the
//! dispatcher wait, and that in turn holds the publishers back.
//!
//! Each job's time is counted in [`FsyncTimes`], which the metrics thread
//! (`metrics/`) reads as it is, without asking anyone.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::stats::FsyncTimes;
use crate::store::{StoreError, SyncJob};
use crate::writer::Parcel;

/// How many rounds may wait for the syncer before the dispatcher waits.
const MAX_WAITING_ROUNDS: usize = 8;

/// What one dispatcher round leaves for the syncer.
struct Round {
    jobs: Vec<SyncJob>,
    parcels: Vec<Parcel>,
}

/// The dispatcher's end of the syncer thread.
#[derive(Debug)]
pub struct Syncer {
    rounds: Sender<Round>,
    /// Rounds handed over and not yet posted.
    unposted: Arc<AtomicUsize>,
    /// How many jobs ran, and how long they took.
    fsync_times: Arc<FsyncTimes>,
    thread: Option<JoinHandle<Result<(), StoreError>>>,
}

impl Syncer {
    /// Starts the `syncer` thread, which gathers rounds for `interval`
    /// before it forces their writes to disk.
    pub fn spawn(interval: Duration) -> io::Result<Syncer> {
        let (rounds, queue) = crossbeam_channel::bounded(MAX_WAITING_ROUNDS);
        let unposted = Arc::new(AtomicUsize::new(0));
        let counter = unposted.clone();
        let fsync_times = Arc::new(FsyncTimes::default());
        let times = fsync_times.clone();
        let thread = thread::Builder::new()
            .name("syncer".to_owned())
            .spawn(move || run(&queue, &counter, &times, interval))?;
        Ok(Syncer {
            rounds,
            unposted,
            fsync_times,
            thread: Some(thread),
        })
    }

    /// Posts `parcels` once `jobs` and every earlier round are done: at once
    /// if there is nothing to wait for, otherwise from the syncer thread.
    /// Fails with the error of an earlier job that failed, which stopped
    /// the syncer: those frames, and these, are never posted.
    pub fn hand_over(
        &mut self,
        jobs: Vec<SyncJob>,
        parcels: Vec<Parcel>,
    ) -> Result<(), StoreError> {
        if jobs.is_empty() && self.unposted.load(Ordering::SeqCst) == 0 {
            parcels.into_iter().for_each(Parcel::post);
            return Ok(());
        }
        self.unposted.fetch_add(1, Ordering::SeqCst);
        match self.rounds.send(Round { jobs, parcels }) {
            Ok(()) => Ok(()),
            // The thread ends early only when a job fails.
            Err(_) => join(&mut self.thread),
        }
    }

    /// The fsync times this syncer's jobs are counted in (the disk log
    /// counts the fsyncs it makes itself there too), as they go.
    pub fn fsync_times(&self) -> Arc<FsyncTimes> {
        self.fsync_times.clone()
    }

    /// Lets the syncer finish the rounds it has, waits for it, and returns
    /// the error that stopped it early, if one did.
    pub fn stop(self) -> Result<(), StoreError> {
        let Syncer {
            rounds, mut thread, ..
        } = self;
        drop(rounds);
        join(&mut thread)
    }
}

/// Waits for the syncer thread, unless that was done already.
fn join(thread: &mut Option<JoinHandle<Result<(), StoreError>>>) -> Result<(), StoreError> {
    match thread.take().map(JoinHandle::join) {
        Some(Ok(result)) => result,
        // A panic is a bug: let it reach the dispatcher's thread too.
        Some(Err(panic)) => std::panic::resume_unwind(panic),
        None => Ok(()),
    }
}

/// The syncer thread: takes every round waiting (and, if the first has jobs,
/// those that arrive within `interval`), runs their jobs, then posts their
/// parcels, oldest round first. A job that fails stops the thread with its
/// error, and the frames that waited for it are never posted.
fn run(
    queue: &Receiver<Round>,
    unposted: &AtomicUsize,
    times: &FsyncTimes,
    interval: Duration,
) -> Result<(), StoreError> {
    while let Ok(first) = queue.recv() {
        let gather_until = match first.jobs.is_empty() {
            true => Instant::now(),
            false => Instant::now() + interval,
        };
        let mut rounds = vec![first];
        while let Ok(round) = queue.recv_deadline(gather_until) {
            rounds.push(round);
        }
        rounds.extend(queue.try_iter());
        for round in &mut rounds {
            for job in round.jobs.drain(..) {
                let started = Instant::now();
                job()?;
                times.record(started.elapsed());
            }
        }
        for round in rounds {
            round.parcels.into_iter().for_each(Parcel::post);
            unposted.fetch_sub(1, Ordering::SeqCst);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::reply::{Outgoing, Reply};
    use crate::writer::Batch;

    const PATIENCE: Duration = Duration::from_secs(10);

    /// A job that notes in `ran` that it ran.
    fn noting_job(ran: &Arc<AtomicUsize>) -> SyncJob {
        let ran = ran.clone();
        Box::new(move || {
            ran.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    }

    fn parcel(frames: &Sender<Batch>, offset: u64) -> Parcel {
        let batch = vec![Outgoing::Reply(Reply::Published { topic: 0, offset })];
        Parcel::for_test(frames.clone(), batch)
    }

    fn offset_in(batch: Batch) -> u64 {
        match batch.as_slice() {
            [Outgoing::Reply(Reply::Published { offset, .. })] => *offset,
            other => panic!("unexpected frames {other:?}"),
        }
    }

    /// A job that waits for the test to let it finish.
    fn held_job() -> (SyncJob, Sender<()>) {
        let (release, released) = crossbeam_channel::bounded::<()>(1);
        let job: SyncJob = Box::new(move || {
            let _ = released.recv();
            Ok(())
        });
        (job, release)
    }

    #[test]
    fn frames_wait_for_their_rounds_jobs_and_never_overtake_an_earlier_round() {
        let mut syncer = Syncer::spawn(Duration::ZERO).unwrap();
        let (frames, written) = crossbeam_channel::unbounded();
        let (job, release) = held_job();
        syncer
            .hand_over(vec![job], vec![parcel(&frames, 1)])
            .unwrap();
        // No job of its own, but the round before it is still on its way.
        syncer
            .hand_over(Vec::new(), vec![parcel(&frames, 2)])
            .unwrap();
        assert!(written.recv_timeout(Duration::from_millis(50)).is_err());
        release.send(()).unwrap();
        assert_eq!(offset_in(written.recv_timeout(PATIENCE).unwrap()), 1);
        assert_eq!(offset_in(written.recv_timeout(PATIENCE).unwrap()), 2);
        syncer.stop().unwrap();
    }

    #[test]
    fn a_round_with_no_jobs_behind_nothing_is_posted_at_once() {
        let mut syncer = Syncer::spawn(Duration::ZERO).unwrap();
        let (frames, written) = crossbeam_channel::unbounded();
        syncer
            .hand_over(Vec::new(), vec![parcel(&frames, 1)])
            .unwrap();
        assert_eq!(offset_in(written.try_recv().unwrap()), 1);
        syncer.stop().unwrap();
    }

    #[test]
    fn a_failed_job_stops_the_syncer_and_its_frames_never_go_out() {
        let mut syncer = Syncer::spawn(Duration::ZERO).unwrap();
        let (frames, written) = crossbeam_channel::unbounded();
        let failing: SyncJob = Box::new(|| {
            Err(StoreError::Io {
                path: "segment.log".into(),
                error: io::Error::other("disk on fire"),
            })
        });
        syncer
            .hand_over(vec![failing], vec![parcel(&frames, 1)])
            .unwrap();
        drop(frames);
        let error = syncer.stop().unwrap_err();
        assert!(error.to_string().contains("disk on fire"), "{error}");
        assert!(
            written.recv_timeout(PATIENCE).is_err(),
            "nothing was posted"
        );
    }

    #[test]
    fn with_an_interval_the_rounds_that_follow_share_the_wait() {
        let mut syncer = Syncer::spawn(Duration::from_secs(2)).unwrap();
        let (frames, written) = crossbeam_channel::unbounded();
        let ran = Arc::new(AtomicUsize::new(0));
        syncer
            .hand_over(vec![noting_job(&ran)], vec![parcel(&frames, 1)])
            .unwrap();
        assert!(written.recv_timeout(Duration::from_millis(100)).is_err());
        syncer
            .hand_over(vec![noting_job(&ran)], vec![parcel(&frames, 2)])
            .unwrap();
        assert_eq!(offset_in(written.recv_timeout(PATIENCE).unwrap()), 1);
        assert_eq!(ran.load(Ordering::SeqCst), 2, "both jobs ran first");
        assert_eq!(offset_in(written.recv_timeout(PATIENCE).unwrap()), 2);
        syncer.stop().unwrap();
    }
}
