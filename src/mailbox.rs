//! The channel that carries the dispatcher's queue (`queue.rs`): many
//! senders, one receiver, which, when there is nothing to take, goes to
//! sleep at once.
//!
//! It does what a crossbeam channel does, with crossbeam's error types, but
//! waits differently. A crossbeam receiver that finds its channel empty
//! first spins, then calls `sched_yield` a dozen times, and only then
//! sleeps, betting that a message is about to come. On a machine with more
//! busy threads than cores (two cores, a broker of four busy threads and the
//! clients beside it) that bet loses: each yield is a system call that hands
//! the core to another thread and takes it back, and when brook's
//! dispatcher waited that way the yields were a sixth of its time (`perf`,
//! one frame per `write()`, docs/PERFORMANCE.md). Here a receiver that finds
//! nothing waits on a condition variable straight away, and a sender pays
//! for waking it only when it waits.
//!
//! The other threads' channels stay crossbeam's. A writer thread has time
//! to spare, and its brief spin often catches the next round's frames
//! without sleeping; with this channel instead, the writers slept and were
//! woken once a round, and the broker spent more time, not less.
//!
//! ```text
//!   sender ──send──▶ [ item | item | … ] ──recv──▶ receiver
//!   (waits while full,                   (sleeps while empty,
//!    woken by the next take)              woken by the next send)
//! ```
//!
//! Dropping the receiver drops what is queued and makes every send fail;
//! dropping the last sender lets the receiver take what is queued, then
//! tells it the channel is disconnected.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

pub use crossbeam_channel::{RecvTimeoutError, SendError, TrySendError};
use parking_lot::{Condvar, Mutex};

/// A channel holding at most `capacity` items: a sender waits for room.
pub fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        capacity,
        state: Mutex::new(State {
            items: VecDeque::new(),
            senders: 1,
            receiver_waits: false,
            senders_waiting: 0,
            closed: false,
        }),
        arrived: Condvar::new(),
        freed: Condvar::new(),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

/// The sending end; clone it for each thread that sends.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// The receiving end, owned by the one thread that takes.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

struct Shared<T> {
    capacity: usize,
    state: Mutex<State<T>>,
    /// Signalled when an item arrives while the receiver waits, or the
    /// last sender goes.
    arrived: Condvar,
    /// Signalled when an item is taken while a sender waits for room, or
    /// the receiver goes.
    freed: Condvar,
}

struct State<T> {
    items: VecDeque<T>,
    /// Senders alive: at zero, the receiver is told once the queue is empty.
    senders: usize,
    /// Whether the receiver sleeps: only then does a send wake it.
    receiver_waits: bool,
    /// Senders sleeping for room: only then does a take wake them.
    senders_waiting: usize,
    /// The receiver is gone.
    closed: bool,
}

impl<T> Sender<T> {
    /// Queues `item`, waiting while the channel is full. Fails, handing
    /// `item` back, once the receiver is gone.
    pub fn send(&self, item: T) -> Result<(), SendError<T>> {
        let shared = &*self.shared;
        let mut state = shared.state.lock();
        while !state.closed && state.items.len() >= shared.capacity {
            state.senders_waiting += 1;
            shared.freed.wait(&mut state);
            state.senders_waiting -= 1;
        }
        if state.closed {
            return Err(SendError(item));
        }
        shared.push(&mut state, item);
        Ok(())
    }

    /// Queues `item` if there is room now.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        let shared = &*self.shared;
        let mut state = shared.state.lock();
        if state.closed {
            return Err(TrySendError::Disconnected(item));
        }
        if state.items.len() >= shared.capacity {
            return Err(TrySendError::Full(item));
        }
        shared.push(&mut state, item);
        Ok(())
    }

    /// How many items are queued now.
    pub fn len(&self) -> usize {
        self.shared.state.lock().items.len()
    }
}

impl<T> Shared<T> {
    fn push(&self, state: &mut State<T>, item: T) {
        state.items.push_back(item);
        if state.receiver_waits {
            state.receiver_waits = false;
            self.arrived.notify_one();
        }
    }

    /// Takes the oldest item. It frees one place, so it wakes one sender
    /// that waits for room, not all of them.
    fn pop(&self, state: &mut State<T>) -> Option<T> {
        let item = state.items.pop_front()?;
        if state.senders_waiting > 0 {
            self.freed.notify_one();
        }
        Some(item)
    }
}

impl<T> Receiver<T> {
    /// Takes the next item, sleeping until there is one or `deadline` (if
    /// any) passes. `Disconnected` once every sender is gone and nothing is
    /// left.
    pub fn recv_until(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        let shared = &*self.shared;
        let mut state = shared.state.lock();
        loop {
            if let Some(item) = shared.pop(&mut state) {
                return Ok(item);
            }
            if state.senders == 0 {
                return Err(RecvTimeoutError::Disconnected);
            }
            state.receiver_waits = true;
            let timed_out = match deadline {
                Some(deadline) => shared.arrived.wait_until(&mut state, deadline).timed_out(),
                None => {
                    shared.arrived.wait(&mut state);
                    false
                }
            };
            state.receiver_waits = false;
            if timed_out && state.items.is_empty() {
                return Err(RecvTimeoutError::Timeout);
            }
        }
    }

    /// Takes the next item if there is one now.
    pub fn try_recv(&self) -> Option<T> {
        self.shared.pop(&mut self.shared.state.lock())
    }

    /// The items queued now, one at a time, without waiting: what the
    /// caller leaves untaken stays queued, in order.
    pub fn try_iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(|| self.try_recv())
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Sender<T> {
        self.shared.state.lock().senders += 1;
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut state = self.shared.state.lock();
        state.senders -= 1;
        if state.senders == 0 {
            self.shared.arrived.notify_one();
        }
    }
}

impl<T> Drop for Receiver<T> {
    /// Fails every send from now on, waking the senders that wait for
    /// room, and drops what is queued, outside the lock (an item may own a
    /// thread's handle, whose drop takes time).
    fn drop(&mut self) {
        let mut state = self.shared.state.lock();
        state.closed = true;
        let unread = std::mem::take(&mut state.items);
        drop(state);
        self.shared.freed.notify_all();
        drop(unread);
    }
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("mailbox::Sender").finish_non_exhaustive()
    }
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("mailbox::Receiver").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;
    use std::time::Duration;

    const PATIENCE: Duration = Duration::from_secs(10);

    #[test]
    fn items_arrive_in_order_and_a_sleeping_receiver_is_woken() {
        let (sender, receiver) = bounded(usize::MAX);
        let taker = thread::spawn(move || {
            let deadline = Instant::now() + PATIENCE;
            (0..1000)
                .map(|_| receiver.recv_until(Some(deadline)).unwrap())
                .collect::<Vec<u32>>()
        });
        for i in 0..1000 {
            sender.send(i).unwrap();
        }
        assert_eq!(taker.join().unwrap(), (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn a_full_channel_makes_its_sender_wait_until_an_item_is_taken() {
        let (sender, receiver) = bounded(1);
        sender.send(1).unwrap();
        assert!(matches!(sender.try_send(2), Err(TrySendError::Full(2))));
        let (sent, done) = crossbeam_channel::bounded(1);
        let waiting = sender.clone();
        thread::spawn(move || {
            waiting.send(2).unwrap();
            sent.send(()).unwrap();
        });
        assert!(done.recv_timeout(Duration::from_millis(50)).is_err());
        assert_eq!(receiver.recv_until(None), Ok(1));
        done.recv_timeout(PATIENCE).expect("room was made");
        assert_eq!(receiver.try_iter().collect::<Vec<_>>(), [2]);
    }

    /// Each item taken wakes one waiting sender, and every one gets in.
    #[test]
    fn many_senders_waiting_for_room_all_get_in() {
        let (sender, receiver) = bounded(1);
        let senders: Vec<_> = (0..8)
            .map(|i| {
                let sender = sender.clone();
                thread::spawn(move || sender.send(i))
            })
            .collect();
        let deadline = Some(Instant::now() + PATIENCE);
        let mut taken: Vec<u32> = (0..8)
            .map(|_| receiver.recv_until(deadline).unwrap())
            .collect();
        for handle in senders {
            assert_eq!(handle.join().unwrap(), Ok(()));
        }
        taken.sort_unstable();
        assert_eq!(taken, (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn the_receiver_takes_what_is_left_after_the_last_sender_goes() {
        let (sender, receiver) = bounded(usize::MAX);
        let other = sender.clone();
        sender.send(1).unwrap();
        drop(sender);
        other.send(2).unwrap();
        drop(other);
        assert_eq!(receiver.try_recv(), Some(1));
        assert_eq!(receiver.recv_until(None), Ok(2));
        let deadline = Instant::now() + PATIENCE;
        assert_eq!(
            receiver.recv_until(Some(deadline)),
            Err(RecvTimeoutError::Disconnected)
        );
    }

    #[test]
    fn a_receiver_sleeping_without_items_is_woken_by_the_last_sender_going() {
        let (sender, receiver) = bounded::<u32>(usize::MAX);
        let taker = thread::spawn(move || receiver.recv_until(Some(Instant::now() + PATIENCE)));
        drop(sender);
        assert_eq!(taker.join().unwrap(), Err(RecvTimeoutError::Disconnected));
    }

    #[test]
    fn a_deadline_passes_when_nothing_comes() {
        let (_sender, receiver) = bounded::<u32>(usize::MAX);
        let deadline = Instant::now() + Duration::from_millis(20);
        assert_eq!(
            receiver.recv_until(Some(deadline)),
            Err(RecvTimeoutError::Timeout)
        );
        assert!(Instant::now() >= deadline);
    }

    #[test]
    fn a_dropped_receiver_fails_every_send_and_wakes_a_waiting_one() {
        let (sender, receiver) = bounded(1);
        sender.send(1).unwrap();
        let waiting = sender.clone();
        let blocked = thread::spawn(move || waiting.send(2));
        drop(receiver);
        assert_eq!(blocked.join().unwrap(), Err(SendError(2)));
        assert_eq!(sender.send(3), Err(SendError(3)));
        assert!(matches!(
            sender.try_send(4),
            Err(TrySendError::Disconnected(4))
        ));
    }
}
