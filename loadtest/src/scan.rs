//! The delivery scanner: the swarm's hot path. Finds the publisher's stamp (scheduled send
//! time, publisher index, per-publisher counter) in a delivery without a full JSON parse.
//!
//! Owns: byte-level recognition of the servers' messages. May not touch: sockets, clocks,
//! statistics (callers record what this returns).
//!
//! Robustness: the three servers we measure frame a delivery as
//! `{"type":"message","channel":C,"content":V,"from":F[,"seq":N]}` but differ inside `V`:
//! wsrelay forwards the publisher's bytes verbatim (our key order and padding spaces), Node
//! re-serialises them (key order kept, spaces gone), and serde_json's `Value` sorts keys
//! alphabetically. So the scanner locates `"content":{` and reads its single-letter keys in
//! any order, skipping whitespace and unknown keys, and never assumes a position.

use memchr::memmem;

/// What a publisher embeds in every message it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Scheduled send time, ns since the swarm's process-local epoch.
    pub sent_at_ns: u64,
    /// Index of the publisher in the run's plan.
    pub publisher: u32,
    /// The publisher's message counter (from 0).
    pub index: u32,
}

/// A server text message, classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextMessage {
    /// A delivery carrying a stamp.
    Delivery(Stamp),
    /// `{"type":"connected",...}`
    Connected,
    /// `{"type":"subscribed",...}`
    Subscribed,
    /// `{"type":"gap",...}`: the relay says it skipped messages.
    Gap,
    /// `{"type":"error",...}`
    Error,
    /// `{"type":"pong"}`, `unsubscribed` and other replies the swarm does not act on.
    OtherReply,
    /// `{"type":"batch",...}`: a room tick's messages (wsrelay `--tick-for`); read them with
    /// [`for_each_batch_stamp`].
    Batch,
    /// A `message` whose content lacks a stamp, or not a JSON object with a `type`.
    Malformed,
}

/// How a wsrelay room tick's batch begins.
const BATCH_PREFIX: &[u8] = b"{\"type\":\"batch\"";
/// How every delivery of all three servers begins.
const DELIVERY_PREFIX: &[u8] = b"{\"type\":\"message\"";
/// What precedes a message's type in every server's replies.
const TYPE_PREFIX: &[u8] = b"{\"type\":\"";
/// The channel field after the type of a delivery.
const CHANNEL_KEY: &[u8] = b",\"channel\":\"";
/// The content field of a delivery.
const CONTENT_KEY: &[u8] = b"\"content\":";
/// Keys read from the content object before giving up (ours has four).
const CONTENT_KEYS_MAX: usize = 8;

/// Classifies one text message from the server.
pub fn scan_text(message: &[u8]) -> TextMessage {
    if message.starts_with(DELIVERY_PREFIX) {
        return scan_delivery(message).map_or(TextMessage::Malformed, TextMessage::Delivery);
    }
    if message.starts_with(BATCH_PREFIX) {
        return TextMessage::Batch;
    }
    classify_reply(message)
}

/// Calls `visit` with the stamp of every entry of a JSON batch
/// (`{"type":"batch",...,"messages":[{"content":{stamp},"seq":N,"from":F},...]}`), `None` for
/// an entry whose content has no stamp. Returns the number of entries.
pub fn for_each_batch_stamp(message: &[u8], mut visit: impl FnMut(Option<Stamp>)) -> usize {
    let mut at = 0;
    let mut entries = 0;
    while let Some(found) = message
        .get(at..)
        .and_then(|rest| content_finder().find(rest))
    {
        let start = at + found + CONTENT_KEY.len();
        let rest = &message[start..];
        let open = skip_whitespace(rest, 0);
        let stamp = match rest.get(open) {
            Some(b'{') => scan_content_object(rest, open + 1),
            _ => None,
        };
        visit(stamp);
        entries += 1;
        at = start;
    }
    entries
}

/// Op byte of a wsrelay binary batch (room ticks).
pub const BINARY_OP_BATCH: u8 = 0x03;

/// Calls `visit` with the stamp of every entry of a binary batch
/// (`[0x03][L][channel]` + `[seq u64][F u16][from][N u32][payload]`*); `None` for a payload
/// too short for a stamp. Returns the entries read, or `None` when the frame is malformed.
pub fn for_each_binary_batch_stamp(
    message: &[u8],
    mut visit: impl FnMut(Option<Stamp>),
) -> Option<usize> {
    let (&op, rest) = message.split_first()?;
    let (&channel_len, rest) = rest.split_first()?;
    if op != BINARY_OP_BATCH {
        return None;
    }
    let mut rest = rest.get(usize::from(channel_len)..)?;
    let mut entries = 0;
    while !rest.is_empty() {
        let from_len = usize::from(u16::from_be_bytes(rest.get(8..10)?.try_into().ok()?));
        let at = 10 + from_len;
        let len = u32::from_be_bytes(rest.get(at..at + 4)?.try_into().ok()?) as usize;
        let payload = rest.get(at + 4..at + 4 + len)?;
        visit(payload.get(..BINARY_STAMP_BYTES).map(decode_binary_stamp));
        entries += 1;
        rest = &rest[at + 4 + len..];
    }
    Some(entries)
}

/// Reads the stamp of a JSON delivery (`{"type":"message",...,"content":{...},...}`).
pub fn scan_delivery(message: &[u8]) -> Option<Stamp> {
    let content_at = content_value_at(message)?;
    let rest = message.get(content_at..)?;
    let open = skip_whitespace(rest, 0);
    if rest.get(open) != Some(&b'{') {
        return None;
    }
    scan_content_object(rest, open + 1)
}

/// Where the content value starts. Fast path: every server writes `,"channel":"NAME",
/// "content":` right after the type, and channel names have no escapes; otherwise search.
#[inline]
fn content_value_at(message: &[u8]) -> Option<usize> {
    let name_at = DELIVERY_PREFIX.len() + CHANNEL_KEY.len();
    if message.get(DELIVERY_PREFIX.len()..name_at) == Some(CHANNEL_KEY) {
        let name_end = name_at + memchr::memchr(b'"', message.get(name_at..)?)?;
        let after = message.get(name_end + 1..)?;
        if after.first() == Some(&b',') && after.get(1..=CONTENT_KEY.len()) == Some(CONTENT_KEY) {
            return Some(name_end + 2 + CONTENT_KEY.len());
        }
    }
    content_finder()
        .find(message)
        .map(|found| found + CONTENT_KEY.len())
}

/// A searcher for `"content":`, built once (building one per message costs more than the
/// search itself).
fn content_finder() -> &'static memmem::Finder<'static> {
    static FINDER: std::sync::OnceLock<memmem::Finder<'static>> = std::sync::OnceLock::new();
    FINDER.get_or_init(|| memmem::Finder::new(CONTENT_KEY))
}

/// Reads the stamp of a message that IS a stamp object (`{"t":..,"p":..,"i":..,...}`), as the
/// `echo` scenario sends it and an echo server returns it.
pub fn scan_stamp_object(message: &[u8]) -> Option<Stamp> {
    let open = skip_whitespace(message, 0);
    if message.get(open) != Some(&b'{') {
        return None;
    }
    scan_content_object(message, open + 1)
}

/// Reads a binary stamp from the first [`BINARY_STAMP_BYTES`] of `message` (the `echo`
/// scenario's binary payload).
pub fn scan_binary_stamp_prefix(message: &[u8]) -> Option<Stamp> {
    message.get(..BINARY_STAMP_BYTES).map(decode_binary_stamp)
}

/// Reads `"t"`, `"p"` and `"i"` from the object whose body starts at `at`.
fn scan_content_object(bytes: &[u8], mut at: usize) -> Option<Stamp> {
    let (mut sent_at_ns, mut publisher, mut index) = (None, None, None);
    for _ in 0..CONTENT_KEYS_MAX {
        at = skip_whitespace(bytes, at);
        let (key, after_key) = read_key(bytes, at)?;
        at = skip_whitespace(bytes, after_key);
        match key {
            b"t" => sent_at_ns = Some(read_u64(bytes, &mut at)?),
            b"p" => publisher = Some(u32::try_from(read_u64(bytes, &mut at)?).ok()?),
            b"i" => index = Some(u32::try_from(read_u64(bytes, &mut at)?).ok()?),
            _ => at = skip_scalar(bytes, at)?,
        }
        if let (Some(sent_at_ns), Some(publisher), Some(index)) = (sent_at_ns, publisher, index) {
            return Some(Stamp {
                sent_at_ns,
                publisher,
                index,
            });
        }
        at = skip_whitespace(bytes, at);
        match bytes.get(at)? {
            b',' => at += 1,
            _ => return None,
        }
    }
    None
}

/// Reads `"key":` at `at`; returns the key and the index after the colon.
#[inline]
fn read_key(bytes: &[u8], at: usize) -> Option<(&[u8], usize)> {
    if bytes.get(at) != Some(&b'"') {
        return None;
    }
    // Fast path: a one-letter key immediately followed by its colon.
    if let (Some(b'"'), Some(b':')) = (bytes.get(at + 2), bytes.get(at + 3)) {
        return Some((&bytes[at + 1..at + 2], at + 4));
    }
    let len = memchr::memchr(b'"', bytes.get(at + 1..)?)?;
    let key = bytes.get(at + 1..at + 1 + len)?;
    let colon = skip_whitespace(bytes, at + 2 + len);
    (bytes.get(colon) == Some(&b':')).then_some((key, colon + 1))
}

/// Parses the decimal digits at `*at` (at least one), advancing past them.
#[inline]
fn read_u64(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let start = *at;
    let mut value: u64 = 0;
    while let Some(&b) = bytes.get(*at) {
        if !b.is_ascii_digit() {
            break;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        *at += 1;
    }
    (*at > start).then_some(value)
}

/// Skips a string or a number/literal (no nested values: our content has none).
fn skip_scalar(bytes: &[u8], at: usize) -> Option<usize> {
    if bytes.get(at) == Some(&b'"') {
        return skip_string(bytes, at + 1);
    }
    let len = bytes
        .get(at..)?
        .iter()
        .position(|&b| matches!(b, b',' | b'}' | b' ' | b'\t' | b'\n' | b'\r'))?;
    Some(at + len)
}

/// Returns the index after the closing quote of the string whose body starts at `at`.
fn skip_string(bytes: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let found = memchr::memchr2(b'"', b'\\', bytes.get(at..)?)?;
        at += found;
        if bytes[at] == b'"' {
            return Some(at + 1);
        }
        at += 2; // A backslash escapes the next byte.
    }
}

#[inline]
fn skip_whitespace(bytes: &[u8], mut at: usize) -> usize {
    while matches!(bytes.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// Classifies a non-delivery by its `type` (the first key in every server's replies; other
/// shapes are searched for `"type":"`).
fn classify_reply(message: &[u8]) -> TextMessage {
    let type_at = if message.starts_with(TYPE_PREFIX) {
        TYPE_PREFIX.len()
    } else {
        match memmem::find(message, b"\"type\":\"") {
            Some(found) => found + b"\"type\":\"".len(),
            None => return TextMessage::Malformed,
        }
    };
    let rest = &message[type_at..];
    let Some(len) = memchr::memchr(b'"', rest) else {
        return TextMessage::Malformed;
    };
    match &rest[..len] {
        b"connected" => TextMessage::Connected,
        b"subscribed" => TextMessage::Subscribed,
        b"gap" => TextMessage::Gap,
        b"error" => TextMessage::Error,
        b"message" => scan_delivery(message).map_or(TextMessage::Malformed, TextMessage::Delivery),
        _ => TextMessage::OtherReply,
    }
}

/// Bytes of the binary stamp: `[t u64][p u32][i u32]`, big-endian.
pub const BINARY_STAMP_BYTES: usize = 16;
/// Op byte of a binary delivery (and publish).
pub const BINARY_OP_MESSAGE: u8 = 0x01;
/// Op byte of a binary gap notice.
pub const BINARY_OP_GAP: u8 = 0x02;
/// Bytes of the relay's seq in a binary delivery.
const BINARY_SEQ_BYTES: usize = 8;

/// A server binary message, classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryMessage {
    /// `[0x01][L][channel][seq u64][stamp][padding]`
    Delivery(Stamp),
    /// `[0x02][L][channel][from u64][to u64]`
    Gap,
    /// `[0x03][L][channel][entries]`: a room tick's batch (read with
    /// [`for_each_binary_batch_stamp`]).
    Batch,
    /// Anything else.
    Malformed,
}

/// Reads the stamp of a binary delivery.
pub fn scan_binary(message: &[u8]) -> BinaryMessage {
    match message.first() {
        Some(&BINARY_OP_MESSAGE) => {}
        Some(&BINARY_OP_GAP) => return BinaryMessage::Gap,
        Some(&BINARY_OP_BATCH) => return BinaryMessage::Batch,
        _ => return BinaryMessage::Malformed,
    }
    let Some(&channel_len) = message.get(1) else {
        return BinaryMessage::Malformed;
    };
    let stamp_at = 2 + usize::from(channel_len) + BINARY_SEQ_BYTES;
    match message.get(stamp_at..stamp_at + BINARY_STAMP_BYTES) {
        Some(stamp) => BinaryMessage::Delivery(decode_binary_stamp(stamp)),
        None => BinaryMessage::Malformed,
    }
}

/// Decodes `[t u64][p u32][i u32]` (big-endian) from exactly 16 bytes.
fn decode_binary_stamp(stamp: &[u8]) -> Stamp {
    let mut t = [0u8; 8];
    let mut p = [0u8; 4];
    let mut i = [0u8; 4];
    t.copy_from_slice(&stamp[0..8]);
    p.copy_from_slice(&stamp[8..12]);
    i.copy_from_slice(&stamp[12..16]);
    Stamp {
        sent_at_ns: u64::from_be_bytes(t),
        publisher: u32::from_be_bytes(p),
        index: u32::from_be_bytes(i),
    }
}

/// Encodes a binary stamp into `out` (16 bytes).
pub fn encode_binary_stamp(out: &mut [u8; BINARY_STAMP_BYTES], stamp: Stamp) {
    out[0..8].copy_from_slice(&stamp.sent_at_ns.to_be_bytes());
    out[8..12].copy_from_slice(&stamp.publisher.to_be_bytes());
    out[12..16].copy_from_slice(&stamp.index.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAMP: Stamp = Stamp {
        sent_at_ns: 123_456_789,
        publisher: 3,
        index: 42,
    };

    #[test]
    fn reads_wsrelay_delivery_with_padding_spaces_and_seq() {
        let m = br#"{"type":"message","channel":"ch.0","content":{"t":123456789           ,"p":3         ,"i":42        ,"x":"xxxx"},"from":"0-1-2","seq":7}"#;
        assert_eq!(scan_text(m), TextMessage::Delivery(STAMP));
    }

    #[test]
    fn reads_node_delivery_in_publisher_order_without_spaces() {
        let m = br#"{"type":"message","channel":"ch.0","content":{"t":123456789,"p":3,"i":42,"x":"xxxx"},"from":"17"}"#;
        assert_eq!(scan_text(m), TextMessage::Delivery(STAMP));
    }

    #[test]
    fn reads_serde_json_delivery_with_sorted_keys() {
        let m = br#"{"type":"message","channel":"ch.0","content":{"i":42,"p":3,"t":123456789,"x":"xxxx"},"from":"17"}"#;
        assert_eq!(scan_text(m), TextMessage::Delivery(STAMP));
    }

    #[test]
    fn skips_unknown_keys_and_escaped_strings() {
        let m = br#"{"type":"message","channel":"c","content":{"a":"q\"\\","b":true,"i":42,"p":3,"t":123456789}}"#;
        assert_eq!(scan_text(m), TextMessage::Delivery(STAMP));
    }

    #[test]
    fn delivery_without_stamp_is_malformed() {
        let m = br#"{"type":"message","channel":"c","content":{"px":101.5},"from":"1","seq":1}"#;
        assert_eq!(scan_text(m), TextMessage::Malformed);
        let m = br#"{"type":"message","channel":"c","content":"text","from":"1"}"#;
        assert_eq!(scan_text(m), TextMessage::Malformed);
        let m = br#"{"type":"message","channel":"c","content":{"t":1,"p":99999999999,"i":1}}"#;
        assert_eq!(scan_text(m), TextMessage::Malformed);
    }

    #[test]
    fn classifies_replies_of_all_servers() {
        let cases: [(&[u8], TextMessage); 7] = [
            (
                br#"{"type":"connected","id":"0-17-42"}"#,
                TextMessage::Connected,
            ),
            (
                br#"{"type":"subscribed","channel":"c","seq":0,"epoch":"e"}"#,
                TextMessage::Subscribed,
            ),
            (
                br#"{"type":"subscribed","channel":"c"}"#,
                TextMessage::Subscribed,
            ),
            (
                br#"{"type":"gap","channel":"c","from":8,"to":12}"#,
                TextMessage::Gap,
            ),
            (
                br#"{"type":"error","message":"Invalid JSON"}"#,
                TextMessage::Error,
            ),
            (br#"{"type":"pong"}"#, TextMessage::OtherReply),
            (b"not json", TextMessage::Malformed),
        ];
        for (message, expected) in cases {
            assert_eq!(
                scan_text(message),
                expected,
                "{}",
                String::from_utf8_lossy(message)
            );
        }
    }

    #[test]
    fn finds_content_when_not_after_channel() {
        let m = br#"{"type":"message","from":"1","content":{"t":123456789,"p":3,"i":42}}"#;
        assert_eq!(scan_text(m), TextMessage::Delivery(STAMP));
        let m = br#"{"type":"message","channel":"c","content" : {"t":123456789,"p":3,"i":42}}"#;
        assert_eq!(scan_text(m), TextMessage::Malformed);
    }

    #[test]
    fn finds_type_when_not_first() {
        let m = br#"{"channel":"c","type":"subscribed"}"#;
        assert_eq!(scan_text(m), TextMessage::Subscribed);
    }

    #[test]
    fn reads_binary_delivery() {
        let mut stamp = [0u8; BINARY_STAMP_BYTES];
        encode_binary_stamp(&mut stamp, STAMP);
        let mut m = vec![0x01, 4];
        m.extend_from_slice(b"ch.0");
        m.extend_from_slice(&7u64.to_be_bytes());
        m.extend_from_slice(&stamp);
        m.extend_from_slice(b"pad");
        assert_eq!(scan_binary(&m), BinaryMessage::Delivery(STAMP));
        assert_eq!(scan_binary(&m[..m.len() - 4]), BinaryMessage::Malformed);
        assert_eq!(scan_binary(&[0x02, 1, b'c']), BinaryMessage::Gap);
        assert_eq!(scan_binary(&[]), BinaryMessage::Malformed);
    }

    #[test]
    fn batch_entries_are_read_one_by_one() {
        let m = br#"{"type":"batch","channel":"room.1","messages":[{"content":{"t":123456789,"p":3,"i":42,"x":"  "},"seq":1,"from":"0-1-1"},{"content":7,"seq":2,"from":"0-1-1"}]}"#;
        assert_eq!(scan_text(m), TextMessage::Batch);
        let mut seen = Vec::new();
        assert_eq!(for_each_batch_stamp(m, |s| seen.push(s)), 2);
        assert_eq!(seen, [Some(STAMP), None]);
        let mut b = vec![BINARY_OP_BATCH, 1, b'r'];
        let mut stamp = [0u8; BINARY_STAMP_BYTES];
        encode_binary_stamp(&mut stamp, STAMP);
        b.extend_from_slice(&5u64.to_be_bytes());
        b.extend_from_slice(&[0, 1, b'f', 0, 0, 0, 16]);
        b.extend_from_slice(&stamp);
        assert_eq!(scan_binary(&b), BinaryMessage::Batch);
        let mut seen = Vec::new();
        assert_eq!(for_each_binary_batch_stamp(&b, |s| seen.push(s)), Some(1));
        assert_eq!(seen, [Some(STAMP)]);
        assert_eq!(for_each_binary_batch_stamp(&b[..b.len() - 1], |_| {}), None);
    }
}
