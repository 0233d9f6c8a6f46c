//! The binary protocol's frames, byte for byte (all integers big-endian),
//! written out by hand, independently of `brook::wire::binary`, the way the Go
//! reference client lays them out.

pub const SUBSCRIBE: [u8; 2] = [0, 1];
pub const UNSUBSCRIBE: [u8; 2] = [0, 2];
pub const PUBLISH: [u8; 2] = [0, 3];
pub const ACK: [u8; 2] = [0, 4];
pub const NACK: [u8; 2] = [0, 5];

pub const SUBSCRIBED: [u8; 2] = [0, 1];
pub const UNSUBSCRIBED: [u8; 2] = [0, 2];

/// Start-at Beginning and Current.
pub const BEGINNING: [u8; 2] = [0, 0];
pub const CURRENT: [u8; 2] = [0, 1];

/// Start-at From with the reference's `u16` offset.
pub fn from_u16(offset: u16) -> Vec<u8> {
    [&[0, 2][..], &offset.to_be_bytes()].concat()
}

/// Start-at From with brook's `u64` offset extension (type 3).
pub fn from_u64(offset: u64) -> Vec<u8> {
    [&[0, 3][..], &offset.to_be_bytes()].concat()
}

/// A subscribe as the Go client writes it: action, `u32` length, the raw JSON
/// bytes, and the start-at bytes, all in one buffer.
pub fn subscribe_request(json: impl AsRef<[u8]>, start_at: &[u8]) -> Vec<u8> {
    [&topic_list(SUBSCRIBE, json.as_ref())[..], start_at].concat()
}

/// An unsubscribe: action, `u32` length, the raw JSON bytes.
pub fn unsubscribe_request(json: impl AsRef<[u8]>) -> Vec<u8> {
    topic_list(UNSUBSCRIBE, json.as_ref())
}

fn topic_list(action: [u8; 2], json: &[u8]) -> Vec<u8> {
    let len = u32::try_from(json.len()).unwrap();
    [&action[..], &len.to_be_bytes(), json].concat()
}

/// One publish frame pair, after the connection's Publish action:
/// `u16` length of `topic:` + name, those bytes, `u32` payload length, payload.
pub fn publish_frame(topic: &str, payload: &[u8]) -> Vec<u8> {
    let topic = format!("topic:{topic}");
    let topic_len = u16::try_from(topic.len()).unwrap();
    let payload_len = u32::try_from(payload.len()).unwrap();
    [
        &topic_len.to_be_bytes()[..],
        topic.as_bytes(),
        &payload_len.to_be_bytes(),
        payload,
    ]
    .concat()
}

/// A delivery as the broker must write it: `u16` topic length, topic,
/// `u64` payload length, payload.
pub fn delivery_frame(topic: &str, payload: &[u8]) -> Vec<u8> {
    let topic_len = u16::try_from(topic.len()).unwrap();
    [
        &topic_len.to_be_bytes()[..],
        topic.as_bytes(),
        &(payload.len() as u64).to_be_bytes(),
        payload,
    ]
    .concat()
}

/// An Error status: `u16` 3, `u16` reason length, reason.
pub fn error_reply(reason: &str) -> Vec<u8> {
    let len = u16::try_from(reason.len()).unwrap();
    [&[0, 3][..], &len.to_be_bytes(), reason.as_bytes()].concat()
}

/// A binary action 7 (subscribe in a consumer group): the group's name,
/// then a Subscribe's fields, from the beginning.
pub fn group_subscribe_request(group: &str, json: &str) -> Vec<u8> {
    let subscribe = subscribe_request(json, &BEGINNING);
    let group_len = u16::try_from(group.len()).unwrap();
    [
        &[0, 7][..],
        &group_len.to_be_bytes(),
        group.as_bytes(),
        &subscribe[2..],
    ]
    .concat()
}
