//! The payload of presence messages: length-prefixed UTF-8 fields (the channel, then each
//! member's id and subject), every field from the network length-checked.

use std::sync::Arc;

use super::FIELD_BYTES_MAX;
use crate::cluster::subject;
use crate::pubsub::presence::Member;

/// The channel subject of `channel`.
pub(super) fn channel_subject(channel: &str, shards: u32) -> String {
    format!(
        "wsr.p.{}.{}",
        subject::shard_of(channel, shards),
        subject::escape(channel)
    )
}

pub(super) fn put(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u32).to_be_bytes());
    out.extend_from_slice(field);
}

/// A member: its id, then its subject (`0`: none; `1` and the subject).
pub(super) fn put_member(out: &mut Vec<u8>, m: &Member) {
    put(out, m.id.as_bytes());
    match &m.sub {
        None => put(out, b"0"),
        Some(s) => {
            let mut field = Vec::with_capacity(1 + s.len());
            field.push(b'1');
            field.extend_from_slice(s.as_bytes());
            put(out, &field);
        }
    }
}

/// The fields of a payload (`None`: malformed or a field too long).
pub(super) fn fields(payload: &[u8]) -> Option<Vec<&str>> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < payload.len() {
        let len_bytes: [u8; 4] = payload.get(at..at + 4)?.try_into().ok()?;
        let len = u32::from_be_bytes(len_bytes) as usize;
        if len > FIELD_BYTES_MAX + 1 {
            return None;
        }
        let field = payload.get(at + 4..at + 4 + len)?;
        out.push(std::str::from_utf8(field).ok()?);
        at += 4 + len;
    }
    Some(out)
}

/// The channel and members of a payload.
pub(super) fn decode(payload: &[u8]) -> Option<(&str, Vec<Member>)> {
    let f = fields(payload)?;
    let (channel, rest) = f.split_first()?;
    if rest.len() % 2 != 0 {
        return None;
    }
    let members = rest
        .chunks(2)
        .map(|pair| {
            let sub = match pair[1].strip_prefix('1') {
                Some(s) => Some(Arc::from(s)),
                None if pair[1] == "0" => None,
                None => return None,
            };
            Some(Member {
                id: Arc::from(pair[0]),
                sub,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some((channel, members))
}
