//! Consumer groups, from the dispatcher's side: creating a group within
//! `--max-groups-per-topic` (`check_group_room`, `group_index`), giving
//! its messages to its members in turn (`pump_group`), and settling what
//! the members answered (`settle_groups`): done, back for another member,
//! or given up (`group_gave_up`) and, once the round's answers are all
//! settled, sent to the dead-letter topic (`settle_groups_given_up`). What
//! one group holds, and how it picks the next member and message, is
//! `group.rs`.
//!
//! Not to be confused with `group.rs`, the [`Group`] type this file
//! drives, nor with `store/disk/groups.rs`, the file in which the disk
//! store saves where each group is.
//!
//! In a round: `pump_group` runs wherever a group may have work (a
//! message became readable, a member joined or has room again, an answer
//! came back); `settle_groups` runs in the round's answers step
//! (`answers.rs`) for each connection that answered, and when a connection
//! closes or leaves a group; `settle_groups_given_up` runs once, at the end
//! of the answers step, for all the round's give-ups, whichever of those
//! made them. A group that moved has its place saved with the round's
//! writes (`groups_moved`, then `logs.rs`).
//!
//! Calls: `dead_letters.rs` (`send_to_dead_letters`).

use std::sync::Arc;
use std::time::Instant;

use super::Dispatcher;
use crate::dispatcher::group::{Group, Next, Refused};
use crate::dispatcher::session::in_flight::{count_give_up, GivenUp, GivenUpBy, GroupAnswer};
use crate::dispatcher::session::start_offset;
use crate::ids::{ConnId, Offset, TopicId};
use crate::store::StoreError;
use crate::wire::reply::OverLimit;
use crate::wire::request::StartAt;

impl Dispatcher {
    /// Whether each topic of `ids` has the group `name`, or room for it
    /// under `--max-groups-per-topic`.
    pub(super) fn check_group_room(&self, ids: &[TopicId], name: &str) -> Result<(), OverLimit> {
        let limit = self.limits.max_groups_per_topic;
        let fits = |id: &TopicId| {
            let groups = &self.topics[*id].groups;
            groups.len() < limit || groups.iter().any(|g| *g.name == *name)
        };
        match ids.iter().all(fits) {
            true => Ok(()),
            false => Err(OverLimit::GroupsPerTopic(limit)),
        }
    }

    /// The index of the group `name` of the topic `id`, created (starting
    /// at `start`) if it is new. (Its caller checked that it fits:
    /// [`Dispatcher::check_group_room`].)
    pub(super) fn group_index(
        &mut self,
        id: TopicId,
        name: &str,
        start: StartAt,
        conn: ConnId,
    ) -> usize {
        let topic = &mut self.topics[id];
        if let Some(index) = topic.groups.iter().position(|g| *g.name == *name) {
            return index;
        }
        let next = start_offset(start, topic, conn);
        topic.groups.push(Group::new(Arc::from(name), next));
        topic.groups_moved = true;
        self.agenda.write_later(id, topic);
        topic.groups.len() - 1
    }

    /// Gives the group's messages to its members, one at a time, taking the
    /// members in turn and skipping those with no room, until the group or
    /// the room runs out.
    pub(super) fn pump_group(&mut self, id: TopicId, index: usize, now: Instant) {
        loop {
            let sessions = &self.sessions;
            let topic = &mut self.topics[id];
            let has_room = |conn| {
                sessions
                    .get(&conn)
                    .is_some_and(|s| s.has_group_room(id, index))
            };
            let pick = |group: &mut Group| group.next_member(has_room);
            let (conn, offset, deliveries, payload) =
                match topic.groups[index].next(&*topic.log, topic.log.end(), pick) {
                    Next::Message {
                        to,
                        offset,
                        deliveries,
                        payload,
                    } => (to, offset, deliveries, payload),
                    Next::Skipped => {
                        self.groups_moved(id);
                        continue;
                    }
                    // Offered again once there is room: each member
                    // notes the group, to give to once it has some.
                    Next::NoRoom => {
                        for &member in topic.groups[index].members() {
                            if let Some(session) = self.sessions.get_mut(&member) {
                                session.wait_for_room(id, index);
                            }
                        }
                        return;
                    }
                    // Offered again once fetched, or once there is more.
                    Next::Later | Next::Empty => return,
                };
            let Some(session) = self.sessions.get_mut(&conn) else {
                return;
            };
            let topic = (id, &self.topics[id]);
            let done = session.queue_for_group(index, offset, deliveries, payload, topic, now);
            self.agenda.register(conn, session);
            if done {
                self.group_done(id, index, offset);
            }
        }
    }

    /// A group has finished with a message: acked, written, or given up
    /// and its dead letter stored. Its position is saved with the round.
    pub(super) fn group_done(&mut self, id: TopicId, index: usize, offset: Offset) {
        self.topics[id].groups[index].done(offset);
        self.groups_moved(id);
    }

    /// A group of topic `id` changed what it is done with: its place is
    /// saved with the round.
    pub(super) fn groups_moved(&mut self, id: TopicId) {
        let topic = &mut self.topics[id];
        topic.groups_moved = true;
        self.agenda.write_later(id, topic);
    }

    /// Tells the groups what became of the messages they gave `conn`, and
    /// gives out what is owed: what came back, and what the room the
    /// answers freed allows, to the groups that were waiting for room
    /// ([`Session::wait_for_room`](super::session::Session::wait_for_room)).
    /// A message delivered `--max-deliveries` times is given up
    /// ([`Dispatcher::group_gave_up`]).
    pub(super) fn settle_groups(&mut self, conn: ConnId, now: Instant) {
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        let answers = session.take_group_answers();
        let mut to_pump = session.take_groups_waiting();
        for answer in answers {
            to_pump.insert((answer.topic, answer.group));
            let group = &mut self.topics[answer.topic].groups[answer.group];
            let max = self.policy.max_deliveries;
            if answer.acked {
                self.group_done(answer.topic, answer.group, answer.offset);
            } else if group.refused(answer.offset, answer.deliveries, max) == Refused::GivenUp {
                self.group_gave_up(answer);
            }
        }
        for (id, index) in to_pump {
            self.pump_group(id, index, now);
        }
    }

    /// A group gave up the message `answer` refused, its last delivery
    /// allowed. The group holds it back from now until its dead letter is
    /// stored (`dead_letters.rs`; with dead letters off, until the end of
    /// the round's answers step), so that its place, its saved place and
    /// retention stay on it, and an Ack of an earlier delivery that comes
    /// meanwhile settles it. The rest waits for the end of the answers step
    /// ([`Dispatcher::settle_groups_given_up`]).
    fn group_gave_up(&mut self, answer: GroupAnswer) {
        let group = &mut self.topics[answer.topic].groups[answer.group];
        group.hold_back(answer.offset, answer.deliveries);
        self.agenda.groups_given_up.push(answer);
    }

    /// Settles what the groups gave up this round, once every answer of
    /// the round is settled. The answers of a round are settled one
    /// connection after another, in an order no client chose, so a member's
    /// last Nack may come before another member's Ack of an earlier
    /// delivery of the same message, taken in the same round: the Ack
    /// wins, and the message, done, is neither counted as given up nor
    /// dead-lettered. The rest are counted and logged, then sent to the
    /// dead-letter topic; with dead letters off, the group is done with
    /// them. Fails only if the store failed otherwise than for room.
    pub(super) fn settle_groups_given_up(&mut self, now: Instant) -> Result<(), StoreError> {
        for answer in std::mem::take(&mut self.agenda.groups_given_up) {
            let (id, index, offset) = (answer.topic, answer.group, answer.offset);
            let topic = &self.topics[id];
            let group = &topic.groups[index];
            if !group.is_held_back(offset) {
                continue; // acked meanwhile
            }
            let giver = format_args!("group {:?}", group.name);
            let max = self.policy.max_deliveries;
            count_give_up(
                giver,
                topic,
                Some(&group.traffic),
                offset,
                answer.deliveries,
                max,
            );
            if !self.policy.dead_letters {
                self.group_done(id, index, offset);
                continue;
            }
            let given_up = GivenUp {
                topic: id,
                offset,
                deliveries: answer.deliveries,
                payload: answer.payload,
                by: GivenUpBy::Group(index),
            };
            self.send_to_dead_letters(given_up, now)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::dispatcher::session::in_flight::DeliveryPolicy;
    use crate::ids::Payload;
    use crate::queue::Command;
    use crate::wire::reply::GroupReport;
    use crate::wire::request::{AckMode, Request};
    use crate::writer::Writer;

    /// The bug these guard against: a member's last refusal gave the
    /// message up and appended its dead letter at once, before another
    /// member's Ack of an earlier delivery, taken in the same round, was
    /// settled: answers are settled one connection after another, the
    /// older first, and after the requests that close a connection or
    /// leave a group. That Ack then found nothing to settle: the message
    /// was acked, yet counted as given up and dead-lettered.
    #[test]
    fn an_ack_in_the_round_of_another_members_last_nack_wins() {
        ack_in_the_round_of_the_last_refusal(Request::Nack);
    }

    #[test]
    fn an_ack_in_the_round_in_which_the_member_with_the_last_delivery_leaves_wins() {
        ack_in_the_round_of_the_last_refusal(Request::Quit);
    }

    /// With dead letters off, a message a group gives up (no Ack coming)
    /// is counted, and the group is done with it at the end of the round's
    /// answers step.
    #[test]
    fn with_dead_letters_off_a_group_moves_past_what_it_gave_up() {
        let policy = DeliveryPolicy {
            dead_letters: false,
            ..two_deliveries()
        };
        let (mut dispatcher, now) = last_delivery_out(policy);
        dispatcher
            .carry_out(REFUSER, Ok(Request::Nack), None, now)
            .unwrap();
        dispatcher.settle_answers(now).unwrap();
        let report = group_report(&dispatcher);
        assert_eq!((report.position, report.lag), (1, 0), "done with it");
        assert_eq!(report.given_up, 1);
        assert_eq!(dead_letters(&dispatcher), None);
        dispatcher.syncer.stop().unwrap();
    }

    /// Both answers in one round, whatever the machine does, since the
    /// rounds are driven by hand: `ACKER` acks its timed-out delivery late,
    /// and `REFUSER` (the older connection, so settled first) sends
    /// `refusal` with the last delivery allowed (a Nack, or a close with the
    /// delivery unanswered).
    fn ack_in_the_round_of_the_last_refusal(refusal: Request) {
        let (mut dispatcher, now) = last_delivery_out(two_deliveries());
        dispatcher
            .carry_out(ACKER, Ok(Request::Ack), None, now)
            .unwrap();
        dispatcher
            .carry_out(REFUSER, Ok(refusal), None, now)
            .unwrap();
        dispatcher.settle_answers(now).unwrap();

        let letters = dead_letters(&dispatcher).unwrap_or(0);
        assert_eq!(letters, 0, "no dead letter for an acked message");
        let report = group_report(&dispatcher);
        assert_eq!((report.position, report.lag), (1, 0), "the Ack settled it");
        assert_eq!(report.given_up, 0, "the group did not give it up");
        let t = dispatcher.topic_ids["t"];
        let given_up = dispatcher.topics[t].traffic.given_up.get();
        assert_eq!(given_up, 0, "nor did the topic");
        dispatcher.syncer.stop().unwrap();
    }

    /// The members of group `g` of topic `t`: `ACKER` joined first.
    const REFUSER: ConnId = 1;
    const ACKER: ConnId = 2;

    /// The test policy, but a message is delivered twice at most.
    fn two_deliveries() -> DeliveryPolicy {
        DeliveryPolicy {
            max_deliveries: 2,
            ..DeliveryPolicy::for_test()
        }
    }

    /// A dispatcher with `policy` in which group `g` of topic `t` gave its
    /// one message to `ACKER`, who let it time out, then to `REFUSER`: the
    /// last delivery allowed, out. Returns the time it went out.
    fn last_delivery_out(policy: DeliveryPolicy) -> (Dispatcher, Instant) {
        let mut dispatcher = Dispatcher::for_test(policy);
        let publisher = 3;
        let start = Instant::now();
        for conn in [REFUSER, ACKER, publisher] {
            let attach = Command::Attach {
                conn,
                writer: Writer::for_test(),
            };
            dispatcher.handle(attach, start).unwrap();
        }
        for member in [ACKER, REFUSER] {
            let subscribe = Request::Subscribe {
                topics: vec!["t".into()],
                start: StartAt::Beginning,
                ack: AckMode::Manual,
                group: Some("g".into()),
            };
            dispatcher
                .carry_out(member, Ok(subscribe), None, start)
                .unwrap();
        }
        let publish = Request::Publish {
            topic: "t".into(),
            payload: Payload::from(b"poison".to_vec()),
            confirm: false,
        };
        dispatcher
            .carry_out(publisher, Ok(publish), None, start)
            .unwrap();
        let timed_out = start + policy.ack_timeout + Duration::from_millis(1);
        dispatcher.fire_wakeups(timed_out);
        dispatcher.settle_answers(timed_out).unwrap();
        assert_eq!(group_report(&dispatcher).lag, 1, "still out");
        (dispatcher, timed_out)
    }

    /// What `STATS` says of group `g` of topic `t`.
    fn group_report(dispatcher: &Dispatcher) -> GroupReport {
        let topic = &dispatcher.topics[dispatcher.topic_ids["t"]];
        topic.groups[0].report(topic.log.end())
    }

    /// How many dead letters `t.dlq` holds, if it exists.
    fn dead_letters(dispatcher: &Dispatcher) -> Option<Offset> {
        let id = dispatcher.topic_ids.get("t.dlq")?;
        Some(dispatcher.topics[*id].log.end())
    }
}
