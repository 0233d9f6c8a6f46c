//! Consumer groups: members that share a topic's messages, each message
//! going to one member at a time.
//!
//! Not to be confused with its two namesakes: `consumer_groups.rs` is the
//! dispatcher's side (creating groups, handing their messages to the
//! members' sessions, settling answers), and `store/disk/groups.rs` the
//! file in which the disk store saves where each group is. This file is
//! the group itself, which knows nothing of sessions or of files.
//!
//! A fan-out subscriber is a cursor of its own into the topic's log (see
//! `session/`). The members of a group share one cursor instead, and the
//! group keeps what its members owe it:
//!
//! ```text
//!   log:      … 40 41 42 43 44 45 46 47 48 …
//!                   │  ╰──┬──╯     │
//!                   │   out: given to a member, not yet answered
//!             again: 41, nacked (or timed out, or left by a member that
//!                    went away), to give out before anything new
//!                                  next: the first offset never given out
//! ```
//!
//! The dispatcher hands the group's messages out one at a time, taking the
//! members in turn and skipping those whose window is full, so work is
//! spread fairly across members with room. A `PULL` takes from a group too
//! (`pulls.rs`), through the same [`Group::next`], so pulls and members
//! share the work. An ack takes a message off
//! `out`; a nack, an ack timeout or a member's disconnect puts it on
//! `again`, and the next member in turn (usually another one) gets it. The
//! group counts a message's deliveries across members, so
//! `--max-deliveries` holds for the group as a whole, and a message given
//! up goes to the dead-letter topic as for any subscriber.
//!
//! A message given up is not done until its dead letter is stored: the
//! group holds it back ([`Group::hold_back`]) from the give-up on, and the
//! dispatcher tells it once the dead letter is stored ([`Group::done`]).
//! One the disk had no room for is given out again an ack delay later
//! ([`Group::let_out`]). Meanwhile it counts as unfinished, so the group's
//! place (and its saved place, and retention) does not move past it, and
//! an Ack of an earlier delivery still settles it.
//!
//! The group's position, the oldest offset it has not finished with, is
//! what retention must keep for it while it has members
//! ([`Group::keeps_from`]). A group without members does not hold
//! retention back, but for what it holds back: it skips what was dropped.
//! With the disk store, the group is saved with its topic's log whenever
//! it finishes a message ([`Group::saved`]), so a group that comes back
//! after a restart gives out again what it had not finished, and goes on
//! where it was.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::ids::{ConnId, Offset, Payload};
use crate::stats::Traffic;
use crate::store::{GroupPosition, Lookup, TopicLog};
use crate::wire::reply::GroupReport;

/// What became of a message a member refused ([`Group::refused`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// It goes out again, to the next member in turn.
    Again,
    /// It was delivered `--max-deliveries` times: it goes to the
    /// dead-letter topic, held back until its dead letter is stored
    /// ([`Group::hold_back`]), or, with dead letters off, the group is
    /// done with it.
    GivenUp,
    /// The group was done with it already (a late ack): nothing changes.
    Settled,
}

/// What a group gives out next ([`Group::next`]), to `T`: a member, or a
/// pull.
#[derive(Debug, PartialEq, Eq)]
pub enum Next<T> {
    /// The message at `offset`, its `deliveries`th delivery, is out with
    /// `to` now: send it, and tell the group its answer.
    Message {
        to: T,
        offset: Offset,
        deliveries: u32,
        payload: Payload,
    },
    /// The message it was to give out cannot be read (damaged on disk, as
    /// the log has said, or dropped): the group is done with it, and its
    /// position moved. Ask again.
    Skipped,
    /// The message is on its way from the disk: the group is offered it
    /// again once it is fetched.
    Later,
    /// Nobody has room for it: ask again when someone has.
    NoRoom,
    /// Nothing to give out before `until`.
    Empty,
}

/// A group of one topic, known by its name.
#[derive(Debug)]
pub struct Group {
    pub name: Arc<str>,
    /// The first offset never given to a member.
    next: Offset,
    /// Offsets to give out again, in order, with how many times each has
    /// been delivered.
    again: VecDeque<(Offset, u32)>,
    /// Offsets given to a member and not yet answered, with how many times
    /// each has been delivered.
    out: BTreeMap<Offset, u32>,
    /// Offsets given up whose dead letters are not stored yet, with how
    /// many times each has been delivered: done once they are, or, not
    /// stored, held back until they go out again ([`Group::let_out`]) or,
    /// while the group has no members, until their dead letters are tried
    /// again.
    held_back: BTreeMap<Offset, u32>,
    members: Vec<ConnId>,
    /// Where the next turn starts in `members`.
    turn: usize,
    /// The log's start when the group last forgot what retention dropped.
    forgotten_before: Offset,
    /// What the group gave out and gave up (it has no messages in).
    pub traffic: Traffic,
}

impl Group {
    /// A group as the store saved it: what it had not finished goes out
    /// again first (its delivery counts start over), then it goes on.
    pub fn restored(name: Arc<str>, saved: &GroupPosition) -> Group {
        let mut group = Group::new(name, saved.next);
        let offsets = saved.unfinished.iter().flat_map(|&(start, end)| start..end);
        group.again = offsets.map(|offset| (offset, 0)).collect();
        group
    }

    /// Where the group is, for the store to save: its unfinished offsets
    /// (those out, in order already, and those to go out again or held
    /// back, sorted here: as many as the group gave up while a disk stays
    /// full) as ranges.
    pub fn saved(&self) -> GroupPosition {
        let again = self.again.iter().map(|&(offset, _)| offset);
        let mut again: Vec<Offset> = again.chain(self.held_back.keys().copied()).collect();
        again.sort_unstable();
        let mut unfinished: Vec<(Offset, Offset)> = Vec::new();
        for offset in merge_sorted(self.out.keys().copied(), again) {
            match unfinished.last_mut() {
                Some((_, end)) if *end == offset => *end += 1,
                _ => unfinished.push((offset, offset + 1)),
            }
        }
        GroupPosition {
            next: self.next,
            unfinished,
        }
    }

    /// A new group that starts reading the log at `next`.
    pub fn new(name: Arc<str>, next: Offset) -> Group {
        Group {
            name,
            next,
            again: VecDeque::new(),
            out: BTreeMap::new(),
            held_back: BTreeMap::new(),
            members: Vec::new(),
            turn: 0,
            forgotten_before: 0,
            traffic: Traffic::default(),
        }
    }

    pub fn join(&mut self, conn: ConnId) {
        if !self.members.contains(&conn) {
            self.members.push(conn);
        }
    }

    pub fn leave(&mut self, conn: ConnId) {
        self.members.retain(|&member| member != conn);
    }

    pub fn members(&self) -> &[ConnId] {
        &self.members
    }

    /// The next member, in turn, for which `has_room` holds.
    pub fn next_member(&mut self, has_room: impl Fn(ConnId) -> bool) -> Option<ConnId> {
        let count = self.members.len();
        let found = (0..count)
            .map(|i| (self.turn + i) % count)
            .find(|&i| has_room(self.members[i]))?;
        self.turn = (found + 1) % count;
        Some(self.members[found])
    }

    /// The one way a group's messages go out, to its members and to pulls
    /// alike: the next message of `log` before `until` (redeliveries
    /// first), to whoever `pick` chooses. `pick` is asked only when there
    /// is a message to give, and before the message is read, so a message
    /// nobody has room for is not fetched from the disk. When the message
    /// then cannot be given ([`Next::Skipped`], [`Next::Later`]), the turn
    /// `pick` took is given back, so a member's turn is not spent for
    /// nothing.
    pub fn next<T>(
        &mut self,
        log: &dyn TopicLog,
        until: Offset,
        pick: impl FnOnce(&mut Group) -> Option<T>,
    ) -> Next<T> {
        self.forget_before(log.start());
        if !self.has_work(until) {
            return Next::Empty;
        }
        let turn = self.turn;
        let Some(to) = pick(self) else {
            return Next::NoRoom;
        };
        let Some((offset, deliveries)) = self.take(until) else {
            self.turn = turn; // has_work said there was one: not reached
            return Next::Empty;
        };
        match log.read(offset) {
            Lookup::Message(payload) => Next::Message {
                to,
                offset,
                deliveries,
                payload,
            },
            Lookup::Unreadable | Lookup::Nothing => {
                self.done(offset);
                self.turn = turn;
                Next::Skipped
            }
            Lookup::Later => {
                self.put_back(offset, deliveries);
                self.turn = turn;
                Next::Later
            }
        }
    }

    /// Forgets the offsets below `start`, which retention dropped from the
    /// log while the group had no member to keep them for. Called before
    /// every message given out, so it costs nothing unless the log's start
    /// moved.
    fn forget_before(&mut self, start: Offset) {
        if start <= self.forgotten_before {
            return;
        }
        self.forgotten_before = start;
        self.next = self.next.max(start);
        self.again.retain(|&(offset, _)| offset >= start);
        self.out.retain(|&offset, _| offset >= start);
        self.held_back.retain(|&offset, _| offset >= start);
    }

    /// Whether the group has a message to give out, of a log that ends at
    /// `end`.
    pub fn has_work(&self, end: Offset) -> bool {
        !self.again.is_empty() || self.next < end
    }

    /// The next message to give out, redeliveries first, if the log (which
    /// ends at `end`) has one: its offset and how many times it will have
    /// been delivered.
    fn take(&mut self, end: Offset) -> Option<(Offset, u32)> {
        let (offset, delivered) = match self.again.pop_front() {
            Some(again) => again,
            None if self.next < end => {
                self.next += 1;
                (self.next - 1, 0)
            }
            None => return None,
        };
        self.out.insert(offset, delivered + 1);
        Some((offset, delivered + 1))
    }

    /// Undoes [`Group::take`]: the message could not be read yet.
    fn put_back(&mut self, offset: Offset, deliveries: u32) {
        self.out.remove(&offset);
        self.again.push_front((offset, deliveries - 1));
    }

    /// The group is done with `offset`: acked, or given up and its dead
    /// letter stored (or given up for good, its dead letter not to be
    /// had). A late ack can
    /// come for a message that is already waiting to go out again, held
    /// back, or out with another member: it is done all the same, and the
    /// other member's answer to it will find nothing left to do.
    pub fn done(&mut self, offset: Offset) {
        if self.out.remove(&offset).is_none() && self.held_back.remove(&offset).is_none() {
            self.again.retain(|&(again, _)| again != offset);
        }
    }

    /// Holds back `offset`, which the group gave up after `deliveries`
    /// ([`Refused::GivenUp`]): it is not done until its dead letter is
    /// stored, or with dead letters off until the round's answers are all
    /// settled ([`Group::done`]), and an Ack of an earlier delivery
    /// meanwhile settles it. If it is not stored, [`Group::let_out`]
    /// gives it out again, to be given up again if it is refused once more.
    pub fn hold_back(&mut self, offset: Offset, deliveries: u32) {
        self.held_back.insert(offset, deliveries);
    }

    /// Whether `offset` is held back: given up and not done since (an Ack
    /// of an earlier delivery may have settled it).
    pub fn is_held_back(&self, offset: Offset) -> bool {
        self.held_back.contains_key(&offset)
    }

    /// After how many deliveries the group gave up `offset`, if it still
    /// holds it back.
    pub fn held_back_after(&self, offset: Offset) -> Option<u32> {
        self.held_back.get(&offset).copied()
    }

    /// Gives `offset` out again, next, if it is still held back (an ack
    /// of an earlier delivery may have finished it meanwhile). Returns
    /// whether it was.
    pub fn let_out(&mut self, offset: Offset) -> bool {
        let Some(deliveries) = self.held_back.remove(&offset) else {
            return false;
        };
        self.again.push_front((offset, deliveries));
        true
    }

    /// A member refused `offset`, its `deliveries`th delivery: nacked it,
    /// let it time out, or left with it. It goes out again, or, after
    /// `max_deliveries`, the group gives it up (the caller dead-letters
    /// it). A message the group is done with already, because a late ack
    /// of an earlier delivery settled it, stays done: it is never given
    /// up.
    pub fn refused(&mut self, offset: Offset, deliveries: u32, max_deliveries: u32) -> Refused {
        if self.out.remove(&offset).is_none() {
            return Refused::Settled;
        }
        if deliveries >= max_deliveries {
            return Refused::GivenUp;
        }
        self.again.push_back((offset, deliveries));
        Refused::Again
    }

    /// What `STATS` shows of the group, on a log that ends at `end`.
    pub fn report(&self, end: Offset) -> GroupReport {
        let unfinished = self.out.len() + self.again.len() + self.held_back.len();
        GroupReport {
            name: self.name.clone(),
            members: self.members.len(),
            position: self.position(),
            lag: end.saturating_sub(self.next) + unfinished as u64,
            messages_out: self.traffic.messages_out.get(),
            bytes_out: self.traffic.bytes_out.get(),
            redeliveries: self.traffic.redeliveries.get(),
            given_up: self.traffic.given_up.get(),
        }
    }

    /// The oldest offset retention must keep for the group, if any: its
    /// position while it has members. Without members, only what it holds
    /// back: a message given up whose dead letter is not stored has no
    /// other copy than its topic's, and dropping it would lose it without
    /// a trace, whereas the rest is what retention may drop for a consumer
    /// that is away.
    pub fn keeps_from(&self) -> Option<Offset> {
        match self.members.is_empty() {
            false => Some(self.position()),
            true => self.held_back.keys().next().copied(),
        }
    }

    /// The oldest offset the group is not done with.
    pub fn position(&self) -> Offset {
        let out = self.out.keys().next().copied();
        let again = self.again.iter().map(|&(offset, _)| offset).min();
        let held_back = self.held_back.keys().next().copied();
        [out, again, held_back]
            .into_iter()
            .flatten()
            .fold(self.next, Offset::min)
    }
}

/// The offsets of two sorted sequences, in order.
fn merge_sorted(
    first: impl Iterator<Item = Offset>,
    second: Vec<Offset>,
) -> impl Iterator<Item = Offset> {
    let mut first = first.peekable();
    let mut second = second.into_iter().peekable();
    std::iter::from_fn(move || match (first.peek(), second.peek()) {
        (Some(a), Some(b)) if b < a => second.next(),
        (Some(_), _) => first.next(),
        (None, _) => second.next(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::store::Store;

    /// `--max-deliveries`, where a test does not reach it.
    const MAX: u32 = 5;

    #[test]
    fn messages_go_out_once_and_come_back_when_returned() {
        let mut group = Group::new(Arc::from("g"), 5);
        assert_eq!(group.take(7), Some((5, 1)));
        assert_eq!(group.take(7), Some((6, 1)));
        assert_eq!(group.take(7), None, "the log ends at 7");
        assert_eq!(group.refused(5, 1, MAX), Refused::Again);
        assert_eq!(group.position(), 5);
        group.done(6);
        assert_eq!(group.take(8), Some((5, 2)), "again before new");
        assert_eq!(group.take(8), Some((7, 1)));
        group.put_back(7, 1);
        assert_eq!(group.take(8), Some((7, 1)));
        group.done(5);
        assert_eq!(group.position(), 7);
        group.done(7);
        assert_eq!(group.position(), 8);
    }

    /// A late ack settles a message wherever it is: waiting to go out
    /// again, or out with another member, whose answer then changes nothing.
    #[test]
    fn a_late_ack_finishes_a_message_wherever_it_is() {
        let mut group = Group::new(Arc::from("g"), 0);
        assert_eq!(group.take(2), Some((0, 1)));
        assert_eq!(group.take(2), Some((1, 1)));
        group.refused(0, 1, MAX); // timed out
        group.done(0); // ... and then acked, late
        assert_eq!(group.take(2), None, "0 is not given out again");
        group.refused(1, 1, 2); // timed out
        assert_eq!(group.take(2), Some((1, 2)), "given to another member");
        group.done(1); // the late ack of the first delivery
        assert_eq!(
            group.refused(1, 2, 2), // the other member's last nack
            Refused::Settled,
            "the other member's answer changes nothing: not given up"
        );
        assert_eq!(group.take(2), None);
        assert_eq!(group.position(), 2);
    }

    #[test]
    fn a_restored_group_gives_out_what_it_had_not_finished_first() {
        let mut group = Group::new(Arc::from("g"), 0);
        for _ in 0..4 {
            group.take(10);
        }
        group.done(0);
        group.done(2);
        group.refused(3, 1, MAX);
        let saved = group.saved();
        assert_eq!(
            (saved.next, saved.unfinished.as_slice()),
            (4, &[(1, 2), (3, 4)][..])
        );
        let mut restored = Group::restored(Arc::from("g"), &saved);
        assert_eq!(restored.position(), 1);
        let taken: Vec<_> = (0..3).filter_map(|_| restored.take(10)).collect();
        assert_eq!(taken, [(1, 1), (3, 1), (4, 1)]);
    }

    /// What is out and what goes out again merge into runs.
    #[test]
    fn a_saved_group_is_a_few_ranges() {
        let mut group = Group::new(Arc::from("g"), 0);
        for _ in 0..10 {
            group.take(10);
        }
        group.done(2);
        group.refused(5, 1, MAX);
        let saved = group.saved();
        assert_eq!(saved.unfinished, [(0, 2), (3, 10)]);
        let restored = Group::restored(Arc::from("g"), &saved);
        assert_eq!(restored.saved(), saved);
    }

    #[test]
    fn members_take_turns_and_those_without_room_are_skipped() {
        let mut group = Group::new(Arc::from("g"), 0);
        for conn in [1, 2, 3] {
            group.join(conn);
        }
        let turns: Vec<_> = (0..4).filter_map(|_| group.next_member(|_| true)).collect();
        assert_eq!(turns, [1, 2, 3, 1]);
        assert_eq!(group.next_member(|conn| conn == 3), Some(3));
        group.leave(3);
        assert_eq!(group.next_member(|conn| conn == 3), None);
        assert_eq!(group.next_member(|_| true), Some(1));
    }

    #[test]
    fn a_message_refused_by_its_last_delivery_allowed_is_given_up_once() {
        let mut group = Group::new(Arc::from("g"), 0);
        assert_eq!(group.take(1), Some((0, 1)));
        assert_eq!(group.refused(0, 1, 2), Refused::Again);
        assert_eq!(group.take(1), Some((0, 2)));
        assert_eq!(group.refused(0, 2, 2), Refused::GivenUp);
        assert_eq!(group.take(1), None, "given up: never out again");
        assert_eq!(group.position(), 1, "the group is done with it");
        assert_eq!(group.refused(0, 2, 2), Refused::Settled, "a second answer");
    }

    /// A message given up whose dead letter could not be stored is held
    /// back: unfinished, so the group's place stays on it, and out again,
    /// first, once let out; then given up again if refused once more.
    #[test]
    fn a_message_held_back_stays_unfinished_until_let_out_again() {
        let mut group = Group::new(Arc::from("g"), 0);
        assert_eq!(group.take(2), Some((0, 1)));
        assert_eq!(group.refused(0, 1, 1), Refused::GivenUp);
        group.hold_back(0, 1);
        assert_eq!(group.position(), 0, "not done");
        assert_eq!(group.saved().unfinished, [(0, 1)]);
        assert_eq!(group.report(2).lag, 2);
        assert_eq!(group.take(2), Some((1, 1)), "held back: not out yet");
        assert!(group.let_out(0));
        assert!(!group.let_out(0), "out once");
        assert_eq!(group.take(2), Some((0, 2)));
        assert_eq!(group.refused(0, 2, 1), Refused::GivenUp);
        group.hold_back(0, 2);
        group.done(0); // a late ack of an earlier delivery
        assert!(!group.let_out(0), "acked: done, not out again");
        group.done(1);
        assert_eq!(group.position(), 2);
    }

    /// A message given up is held back, unfinished, until its dead
    /// letter is stored; an Ack of an earlier delivery meanwhile settles
    /// it, and a dead letter then not stored has nothing to take back.
    #[test]
    fn a_message_given_up_is_unfinished_until_its_dead_letter_is_stored() {
        let mut group = Group::new(Arc::from("g"), 0);
        assert_eq!(group.take(2), Some((0, 1)));
        assert_eq!(group.refused(0, 1, 2), Refused::Again); // timed out
        assert_eq!(group.take(2), Some((0, 2)), "to another member");
        assert_eq!(group.refused(0, 2, 2), Refused::GivenUp);
        group.hold_back(0, 2);
        assert_eq!(group.position(), 0);
        assert_eq!(group.saved().unfinished, [(0, 1)]);
        assert_eq!(group.keeps_from(), Some(0), "retention keeps it");
        group.done(0); // the late Ack of the first delivery
        assert!(!group.is_held_back(0), "nothing to take back");
        assert!(!group.let_out(0));
        assert_eq!(group.position(), 1);
    }

    /// A group without members holds retention back for what it holds
    /// back, and for nothing else.
    #[test]
    fn a_group_without_members_keeps_only_what_it_holds_back() {
        let mut group = Group::new(Arc::from("g"), 0);
        for _ in 0..3 {
            group.take(3);
        }
        group.refused(0, 1, MAX);
        assert_eq!(group.refused(1, 1, 1), Refused::GivenUp);
        group.hold_back(1, 1);
        assert_eq!(group.keeps_from(), Some(1));
        group.done(1); // its dead letter stored
        assert_eq!(group.keeps_from(), None, "0 and 2 are retention's");
    }

    /// Retention may drop messages while a group has no member to keep
    /// them for: the group skips them, whether they were new, out, or
    /// waiting to go out again.
    #[test]
    fn a_group_forgets_what_retention_dropped() {
        let mut group = Group::new(Arc::from("g"), 0);
        assert_eq!(group.take(10), Some((0, 1)));
        assert_eq!(group.take(10), Some((1, 1)));
        group.refused(1, 1, MAX);
        group.forget_before(5);
        assert_eq!(group.position(), 5);
        assert!(group.has_work(10));
        assert_eq!(group.take(10), Some((5, 1)));
        assert_eq!(group.report(10).lag, 5, "5 out, 6 to 9 new");
    }

    /// `Group::next` asks who gets a message only when there is one, and
    /// takes nothing when nobody has room: the message stays first in line.
    #[test]
    fn next_gives_out_a_message_only_to_someone_with_room() {
        let mut log = MemoryStore::new(None, 1 << 20).open("t").unwrap();
        let mut group = Group::new(Arc::from("g"), 0);
        let never_asked = |_: &mut Group| -> Option<()> { panic!("nothing to give") };
        assert_eq!(group.next(&*log, log.end(), never_asked), Next::Empty);
        log.append(Payload::from(&b"m0"[..]), 0).unwrap();
        log.append(Payload::from(&b"m1"[..]), 0).unwrap();
        assert_eq!(group.next(&*log, 2, |_| None::<()>), Next::NoRoom);
        assert_eq!(group.position(), 0, "nothing taken");
        let first = group.next(&*log, 1, |_| Some("member"));
        let expected = Next::Message {
            to: "member",
            offset: 0,
            deliveries: 1,
            payload: Payload::from(&b"m0"[..]),
        };
        assert_eq!(first, expected);
        assert_eq!(group.next(&*log, 1, |_| Some(())), Next::Empty, "until 1");
    }

    /// A message that cannot be read is skipped without spending the turn
    /// of the member it was to go to: that member gets the next one.
    #[test]
    fn a_skipped_message_does_not_spend_a_members_turn() {
        let mut log = test_log::DamagedLog::new(1);
        for payload in [&b"m0"[..], b"m1", b"m2"] {
            log.append(Payload::from(payload), 0).unwrap();
        }
        let mut group = Group::new(Arc::from("g"), 0);
        group.join(1);
        group.join(2);
        let next = |group: &mut Group| match group.next(&log, 3, |g| g.next_member(|_| true)) {
            Next::Message { to, offset, .. } => Some((to, offset)),
            Next::Skipped => None,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(next(&mut group), Some((1, 0)));
        assert_eq!(next(&mut group), None, "1 is damaged");
        assert_eq!(next(&mut group), Some((2, 2)), "still 2's turn");
        group.done(0);
        assert_eq!(group.position(), 2, "the group is done with 1 too");
    }
}

/// A log for the tests of `dispatcher/`: one that cannot read one of its
/// messages, as the disk store cannot read a damaged record.
#[cfg(test)]
pub(crate) mod test_log {
    use crate::ids::{Offset, Payload};
    use crate::store::memory::MemoryStore;
    use crate::store::{Lookup, Store, StoreError, SyncJob, TopicLog};

    /// A log in memory whose message at `unreadable` reads as
    /// [`Lookup::Unreadable`].
    pub struct DamagedLog {
        log: Box<dyn TopicLog>,
        unreadable: Offset,
    }

    impl DamagedLog {
        pub fn new(unreadable: Offset) -> DamagedLog {
            let log = MemoryStore::new(None, 1 << 20).open("t").unwrap();
            DamagedLog { log, unreadable }
        }
    }

    impl TopicLog for DamagedLog {
        fn append(&mut self, payload: Payload, timestamp: u64) -> Result<Offset, StoreError> {
            self.log.append(payload, timestamp)
        }

        fn read(&self, offset: Offset) -> Lookup {
            match offset == self.unreadable {
                true => Lookup::Unreadable,
                false => self.log.read(offset),
            }
        }

        fn write(&mut self) -> Result<Option<SyncJob>, StoreError> {
            self.log.write()
        }

        fn start(&self) -> Offset {
            self.log.start()
        }

        fn end(&self) -> Offset {
            self.log.end()
        }

        fn over_retention(&self) -> bool {
            self.log.over_retention()
        }

        fn apply_retention(&mut self, keep_from: Offset) {
            self.log.apply_retention(keep_from)
        }

        fn held_bytes(&self) -> usize {
            self.log.held_bytes()
        }

        fn last_used(&self) -> u64 {
            self.log.last_used()
        }

        fn release_memory(&mut self, bytes: usize, keep_from: Offset) {
            self.log.release_memory(bytes, keep_from)
        }
    }
}
