//! The two protocols one port speaks, and the words they share.
//!
//! A reader thread (`reader.rs`) picks a decoder by the first byte a client
//! sends: the binary protocol of the Go broker willdot/messagebroker
//! (`binary.rs`, with `json.rs` for its topic lists), or the line protocol
//! for `nc` and people (`line.rs`). Both decoders make the same
//! `Request`s (`request.rs`), so nothing after the
//! reader knows which protocol a client speaks; the dispatcher answers with
//! the same `Reply` values (`reply.rs`), which a session's outbox
//! (`dispatcher/session/outbox.rs`) wraps, with the deliveries, as
//! `Outgoing` frames, and each writer thread encodes them with its
//! client's protocol: `binary.rs`'s encoders, or `line_replies.rs`.
//!
//! Read `request.rs` and `reply.rs` first: the two decoders and encoders
//! use them, and apart from them only `json.rs`, which `binary.rs` uses
//! for its topic lists.

pub mod binary;
pub mod json;
pub mod line;
pub mod line_replies;
pub(crate) mod reply;
pub mod request;
