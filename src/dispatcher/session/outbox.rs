//! What waits to be written to one connection: the frames its session
//! queued during the dispatcher's round, and how they reach the writer.
//!
//! A session queues replies and deliveries here as the round goes
//! ([`Outbox::queue_reply`], [`Outbox::queue_delivery`]). At the end of
//! the round the dispatcher packs the outbox into one [`Parcel`] for the
//! connection's writer ([`Outbox::pack`]) and hands it, with the round's
//! other parcels, to the syncer, which posts it once the round's writes are
//! durable (`syncer.rs`); the writer then writes it (`writer.rs`):
//!
//! ```text
//!   queue (this file) ─▶ pack (this file) ─▶ hand over (syncer) ─▶ post ─▶ write (writer)
//! ```
//!
//! Deliveries that need no ack count as done once written, so the outbox
//! also keeps their window: how many frames, and payload bytes, may be
//! queued here and on the writer's link at once ([`Outbox::has_write_room`]).

use crate::dispatcher::topic::Topic;
use crate::ids::{Offset, Payload};
use crate::wire::reply::{Outgoing, Reply};
use crate::writer::{self, Batch, Link, Parcel, Writer};

/// One connection's frames for its writer, sent as one batch at the end
/// of the dispatcher's current round.
#[derive(Debug)]
pub struct Outbox {
    writer: Writer,
    frames: Batch,
    /// The payload bytes among `frames`.
    payload_bytes: usize,
    /// The write window: how many frames, and payload bytes, deliveries
    /// that need no ack may keep waiting to be written.
    max_frames: usize,
    max_payload_bytes: usize,
    /// Set once the connection is to be closed after what is queued now
    /// ([`Outbox::close_once_written`]).
    closing_once_written: bool,
}

impl Outbox {
    /// An empty outbox for `writer`, with a write window of `max_frames`
    /// frames and `max_payload_bytes` bytes of payload.
    pub fn new(writer: Writer, max_frames: usize, max_payload_bytes: usize) -> Outbox {
        Outbox {
            writer,
            frames: Vec::new(),
            payload_bytes: 0,
            max_frames,
            max_payload_bytes,
            closing_once_written: false,
        }
    }

    pub fn queue_reply(&mut self, reply: Reply) {
        self.frames.push(Outgoing::Reply(reply));
    }

    /// Queues a message, and counts it, its `deliveries`th delivery: for
    /// its topic, and for the group that gave it out, if one did.
    pub fn queue_delivery(
        &mut self,
        topic: &Topic,
        group: Option<usize>,
        offset: Offset,
        deliveries: u32,
        payload: Payload,
    ) {
        topic.traffic.sent(payload.len(), deliveries);
        if let Some(group) = group.and_then(|index| topic.groups.get(index)) {
            group.traffic.sent(payload.len(), deliveries);
        }
        self.payload_bytes += payload.len();
        self.frames.push(Outgoing::Delivery {
            topic: topic.name.clone(),
            offset,
            payload,
        });
    }

    /// Whether deliveries that need no ack may be queued: fewer frames than
    /// the window, and fewer payload bytes than the buffer, wait to be
    /// written. If not, asks the writer for a notice after its next write,
    /// and looks once more, since the writer may have written just before
    /// it was asked.
    pub fn has_write_room(&self) -> bool {
        let link = self.writer.link();
        let has_room = || {
            self.frames.len() + link.pending_frames() < self.max_frames
                && self.payload_bytes + link.pending_payload_bytes() < self.max_payload_bytes
        };
        if has_room() {
            return true;
        }
        link.notify_when_written();
        has_room()
    }

    /// The replies queued, for a confirmation that must become a refusal.
    pub fn replies_mut(&mut self) -> impl Iterator<Item = &mut Reply> {
        writer::replies_mut(&mut self.frames)
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Packs the queued frames for the writer thread, if there are any,
    /// for the dispatcher to hand over at the end of its round.
    pub fn pack(&mut self) -> Option<Parcel> {
        self.payload_bytes = 0;
        let has_frames = !self.frames.is_empty();
        let parcel = has_frames.then(|| self.writer.pack(std::mem::take(&mut self.frames)));
        if parcel.is_some() && self.closing_once_written {
            // Only now: the frames count as pending from the packing on,
            // so the writer cannot find none left before they reach it.
            self.writer.link().close_when_written();
        }
        parcel
    }

    /// Closes the connection once the frames queued now (an error that
    /// says why, say) are written: the client reads them, then the end.
    pub fn close_once_written(&mut self) {
        self.closing_once_written = true;
    }

    /// Shuts the connection's socket: its client does not read.
    pub fn close_connection(&self) {
        self.writer.link().close();
    }

    /// Closes the writer's channel, so the thread ends once it has written
    /// what it has, and returns the link that tells when it has.
    pub fn into_link(self) -> Link {
        self.writer.into_link()
    }

    /// Takes the queued frames as if the writer had written them at once,
    /// for a test to look at.
    #[cfg(test)]
    pub(crate) fn take_frames(&mut self) -> Batch {
        self.payload_bytes = 0;
        std::mem::take(&mut self.frames)
    }
}
