//! Server → client messages of the game primitives: room tick batches (JSON and binary) and
//! presence (the member list, joins and leaves). Sans-IO, like the rest of the codec: each
//! writer appends one message's payload (or one piece of it) to `out`; the caller frames it.
//!
//! Layouts (docs/PROTOCOL.md, "Room ticks" and "Presence"):
//! - JSON batch: `{"type":"batch","channel":C,"messages":[{"content":V,"seq":N,"from":F},…]}`
//!   written as [`batch_open`], one [`batch_entry`] per message, [`batch_close`];
//! - binary batch (op [`BINARY_OP_BATCH`]): `[0x03][L][channel]` then, per message,
//!   `[seq u64][F u16][from: F bytes][N u32][payload: N bytes]` (integers big-endian);
//! - `{"type":"presence","channel":C,"count":n,"members":[{"id":I,"sub":S|null},…]}`;
//! - `{"type":"join"|"leave","channel":C,"member":{"id":I,"sub":S|null}}`.

use crate::command::binary::EncodeError;
use crate::command::encode::{json_string_len, write_json_string};

/// Server → client op byte: a room tick's batch of messages.
pub const BINARY_OP_BATCH: u8 = 0x03;
/// Bytes a JSON batch adds around its entries besides the channel name (head and tail).
pub const BATCH_JSON_FIXED: usize = 48;
/// Bytes one JSON batch entry adds besides its content and `from` (keys, seq, separators).
pub const BATCH_ENTRY_JSON_FIXED: usize = 48;
/// Bytes one binary batch entry adds besides its `from` and payload: seq, `F`, `N`.
pub const BATCH_ENTRY_BINARY_FIXED: usize = 8 + 2 + 4;

/// `{"type":"batch","channel":C,"messages":[`
pub fn batch_open(out: &mut Vec<u8>, channel: &str) {
    out.extend_from_slice(br#"{"type":"batch","channel":"#);
    write_json_string(out, channel);
    out.extend_from_slice(br#","messages":["#);
}

/// One entry `{"content":V,"seq":N,"from":F}`, preceded by a comma unless `first`. `content`
/// is the publisher's verbatim JSON value.
pub fn batch_entry(out: &mut Vec<u8>, first: bool, content: &[u8], seq: u64, from: &str) {
    if !first {
        out.push(b',');
    }
    out.extend_from_slice(br#"{"content":"#);
    out.extend_from_slice(content);
    out.extend_from_slice(br#","seq":"#);
    out.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
    out.extend_from_slice(br#","from":"#);
    write_json_string(out, from);
    out.push(b'}');
}

/// Upper bound of the bytes [`batch_entry`] appends.
pub fn batch_entry_len(content: &[u8], from: &str) -> usize {
    BATCH_ENTRY_JSON_FIXED + content.len() + json_string_len(from)
}

/// `]}`: closes a JSON batch.
pub fn batch_close(out: &mut Vec<u8>) {
    out.extend_from_slice(b"]}");
}

/// `[0x03][L][channel]`: the head of a binary batch.
pub fn binary_batch_open(out: &mut Vec<u8>, channel: &str) -> Result<(), EncodeError> {
    let len = u8::try_from(channel.len()).map_err(|_| EncodeError::ChannelTooLong {
        channel_bytes: channel.len(),
    })?;
    out.extend_from_slice(&[BINARY_OP_BATCH, len]);
    out.extend_from_slice(channel.as_bytes());
    Ok(())
}

/// One binary entry `[seq u64][F u16][from][N u32][payload]`. A `from` longer than 65,535
/// bytes is cut at that length (names are token subjects: far shorter in practice); a payload
/// is at most `--max-message-size` (≤ 1 GiB), so `N` always fits.
pub fn binary_batch_entry(out: &mut Vec<u8>, seq: u64, from: &str, payload: &[u8]) {
    let from = &from.as_bytes()[..from.len().min(usize::from(u16::MAX))];
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&(from.len() as u16).to_be_bytes());
    out.extend_from_slice(from);
    out.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(payload);
}

/// Exact length of [`binary_batch_entry`].
pub fn binary_batch_entry_len(from: &str, payload: &[u8]) -> usize {
    BATCH_ENTRY_BINARY_FIXED + from.len().min(usize::from(u16::MAX)) + payload.len()
}

/// The parts of a JSON message frame's body `{"type":"message","channel":C,"content":V,
/// "from":F,"seq":N}` (as `encode_message` writes it, without `key`) that a batch entry
/// repeats: the verbatim content and the raw (still escaped) `from` string. `None` when the
/// body is not of that shape. A JSON string cannot hold `,"content":` or `,"from":"` with bare
/// quotes, so the first of the one and the last of the other are the separators.
pub fn message_parts(body: &[u8]) -> Option<(&[u8], &[u8])> {
    const CONTENT: &[u8] = br#","content":"#;
    const FROM: &[u8] = br#","from":""#;
    const SEQ: &[u8] = br#"","seq":"#;
    let rest = body.strip_prefix(br#"{"type":"message","channel":""#.as_slice())?;
    let content_at = find(rest, CONTENT)? + CONTENT.len();
    let rest = &rest[content_at..];
    let from_at = rfind(rest, FROM)?;
    let content = &rest[..from_at];
    let tail = &rest[from_at + FROM.len()..];
    let seq_at = rfind(tail, SEQ)?;
    Some((content, &tail[..seq_at]))
}

/// The payload of a binary message frame's body `[0x01][L][channel][seq u64][payload]`.
pub fn binary_message_payload(body: &[u8]) -> Option<&[u8]> {
    let len = usize::from(*body.get(1)?);
    body.get(2 + len + 8..)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

/// A presence member as written in every presence message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberRef<'a> {
    /// The member's connection id (`from` of its publishes when auth is off).
    pub id: &'a str,
    /// Its authenticated subject, when authentication is on.
    pub sub: Option<&'a str>,
}

/// `{"id":I,"sub":S|null}`
pub fn write_member(out: &mut Vec<u8>, member: MemberRef<'_>) {
    out.extend_from_slice(br#"{"id":"#);
    write_json_string(out, member.id);
    out.extend_from_slice(br#","sub":"#);
    match member.sub {
        Some(sub) => write_json_string(out, sub),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
}

/// `{"type":"presence","channel":C,"count":n,"members":[…]}`: `count` is the exact number of
/// members, `members` the first ones (the caller caps the list).
pub fn encode_presence<'m>(
    out: &mut Vec<u8>,
    channel: &str,
    count: u64,
    members: impl Iterator<Item = MemberRef<'m>>,
) {
    out.extend_from_slice(br#"{"type":"presence","channel":"#);
    write_json_string(out, channel);
    out.extend_from_slice(br#","count":"#);
    out.extend_from_slice(itoa::Buffer::new().format(count).as_bytes());
    out.extend_from_slice(br#","members":["#);
    for (i, member) in members.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_member(out, member);
    }
    out.extend_from_slice(b"]}");
}

/// `{"type":"join","channel":C,"member":{…}}` (`joined`) or the same with `"leave"`.
pub fn encode_presence_change(
    out: &mut Vec<u8>,
    joined: bool,
    channel: &str,
    member: MemberRef<'_>,
) {
    out.extend_from_slice(match joined {
        true => br#"{"type":"join","channel":"#,
        false => br#"{"type":"leave","channel":"#,
    });
    write_json_string(out, channel);
    out.extend_from_slice(br#","member":"#);
    write_member(out, member);
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_parts_find_the_verbatim_content_and_from() {
        let mut body = Vec::new();
        let content = br#"{"s":"\",\"from\":\"x","n":[1,2]}"#;
        crate::command::encode_message(&mut body, "room:1\"", content, "a.x/0-1-1", 42);
        let (c, from) = message_parts(&body).expect("parts");
        assert_eq!((c, from), (content.as_slice(), b"a.x/0-1-1".as_slice()));
        assert!(message_parts(b"{\"type\":\"gap\"}").is_none());
        let mut bin = Vec::new();
        crate::command::encode_binary_message(&mut bin, "room.1", 7, b"\x00\x01").expect("bin");
        assert_eq!(binary_message_payload(&bin), Some(b"\x00\x01".as_slice()));
        assert_eq!(binary_message_payload(&[1, 200]), None);
    }

    #[test]
    fn json_batch_exact_bytes() {
        let mut out = Vec::new();
        batch_open(&mut out, "room.1");
        batch_entry(&mut out, true, br#"{"x":1}"#, 7, "0-1-1");
        batch_entry(&mut out, false, b"2", 8, "a\"b");
        batch_close(&mut out);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"type":"batch","channel":"room.1","messages":[{"content":{"x":1},"seq":7,"from":"0-1-1"},{"content":2,"seq":8,"from":"a\"b"}]}"#
        );
        let entry = batch_entry_len(b"2", "a\"b");
        assert!(entry >= r#",{"content":2,"seq":8,"from":"a\"b"}"#.len());
        assert!(BATCH_JSON_FIXED >= r#"{"type":"batch","channel":,"messages":[]}"#.len());
    }

    #[test]
    fn binary_batch_exact_bytes() {
        let mut out = Vec::new();
        binary_batch_open(&mut out, "r").unwrap();
        binary_batch_entry(&mut out, 0x0102, "ab", b"\x00\xff");
        let mut want = vec![0x03, 1, b'r'];
        want.extend_from_slice(&[
            0, 0, 0, 0, 0, 0, 1, 2, 0, 2, b'a', b'b', 0, 0, 0, 2, 0, 0xff,
        ]);
        assert_eq!(out, want);
        assert_eq!(binary_batch_entry_len("ab", b"\x00\xff"), want.len() - 3);
        let long = "a".repeat(256);
        assert!(binary_batch_open(&mut out, &long).is_err());
    }

    #[test]
    fn presence_messages_exact_bytes() {
        let mut out = Vec::new();
        let members = [
            MemberRef {
                id: "0-1-1",
                sub: Some("alice"),
            },
            MemberRef {
                id: "1-2-1",
                sub: None,
            },
        ];
        encode_presence(&mut out, "room", 5, members.into_iter());
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"type":"presence","channel":"room","count":5,"members":[{"id":"0-1-1","sub":"alice"},{"id":"1-2-1","sub":null}]}"#
        );
        out.clear();
        encode_presence_change(&mut out, false, "room", members[1]);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"type":"leave","channel":"room","member":{"id":"1-2-1","sub":null}}"#
        );
    }
}
