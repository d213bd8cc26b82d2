//! Server → client JSON text messages.
//!
//! Every writer appends the payload of exactly one message to `out` (the caller adds the
//! RFC 6455 frame header) as compact JSON with keys in a fixed order. Every string field goes
//! through [`write_json_string`], even channel names that cannot need escaping, so a caller
//! passing an unvalidated string still gets valid JSON; on the escape-free common case the
//! cost is one table lookup per byte.

/// Escape class of each byte inside a JSON string (RFC 8259 section 7): `0` = copy as is,
/// `b'"'` / `b'\\'` = two-byte escape, `b'u'` = `\u00XX`.
const ESCAPE: [u8; 256] = escape_table();

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Upper bound of the decimal digits of a `u64` (`18446744073709551615`).
const U64_DIGITS_MAX: usize = 20;

const MESSAGE_HEAD: &[u8] = br#"{"type":"message","channel":"#;
const MESSAGE_CONTENT: &[u8] = br#","content":"#;
const MESSAGE_FROM: &[u8] = br#","from":"#;
const MESSAGE_SEQ: &[u8] = br#","seq":"#;

const fn escape_table() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 0x20 {
        // RFC 8259 section 7: control characters U+0000..U+001F MUST be escaped.
        table[byte] = b'u';
        byte += 1;
    }
    // RFC 8259 section 7: quotation mark and reverse solidus MUST be escaped.
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
}

/// Appends `s` as a quoted JSON string: `"` and `\` as `\"` and `\\`, control characters
/// as `\u00XX`, everything else (including non-ASCII UTF-8) verbatim.
pub fn write_json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let mut rest = s.as_bytes();
    while let Some(run_bytes) = rest.iter().position(|&b| ESCAPE[usize::from(b)] != 0) {
        let (run, tail) = rest.split_at(run_bytes);
        out.extend_from_slice(run);
        let Some((&special, tail)) = tail.split_first() else {
            break;
        };
        write_escape(out, special);
        rest = tail;
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

fn write_escape(out: &mut Vec<u8>, b: u8) {
    match ESCAPE[usize::from(b)] {
        b'u' => out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX_DIGITS[usize::from(b >> 4)],
            HEX_DIGITS[usize::from(b & 0x0f)],
        ]),
        short => out.extend_from_slice(&[b'\\', short]),
    }
}

/// Exact number of bytes [`write_json_string`] appends for `s`, quotes included.
pub fn json_string_len(s: &str) -> usize {
    let escape_extra: usize = s
        .bytes()
        .map(|b| match ESCAPE[usize::from(b)] {
            0 => 0,
            b'u' => 5,
            _ => 1,
        })
        .sum();
    s.len() + escape_extra + 2
}

fn write_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `{"type":"connected","id":"<id>"}`
pub fn encode_connected(out: &mut Vec<u8>, id: &str, addr: &str) {
    out.extend_from_slice(br#"{"type":"connected","id":"#);
    write_json_string(out, id);
    out.extend_from_slice(br#","addr":"#);
    write_json_string(out, addr);
    out.push(b'}');
}

/// `{"type":"subscribed","channel":"C","seq":N,"epoch":"E"}`, with `,"recovered":B` before
/// the closing brace when `recovered` is `Some(B)`.
pub fn encode_subscribed(
    out: &mut Vec<u8>,
    channel: &str,
    seq: u64,
    epoch: &str,
    recovered: Option<bool>,
) {
    encode_subscribed_throttled(out, channel, seq, epoch, recovered, None);
}

/// [`encode_subscribed`], with `,"throttle_ms":T` last when the subscription is throttled.
pub fn encode_subscribed_throttled(
    out: &mut Vec<u8>,
    channel: &str,
    seq: u64,
    epoch: &str,
    recovered: Option<bool>,
    throttle_ms: Option<u32>,
) {
    out.extend_from_slice(br#"{"type":"subscribed","channel":"#);
    write_json_string(out, channel);
    out.extend_from_slice(br#","seq":"#);
    write_u64(out, seq);
    out.extend_from_slice(br#","epoch":"#);
    write_json_string(out, epoch);
    match recovered {
        Some(true) => out.extend_from_slice(br#","recovered":true"#),
        Some(false) => out.extend_from_slice(br#","recovered":false"#),
        None => {}
    }
    if let Some(t) = throttle_ms {
        out.extend_from_slice(br#","throttle_ms":"#);
        write_u64(out, u64::from(t));
    }
    out.push(b'}');
}

/// `{"type":"unsubscribed","channel":"C"}`
pub fn encode_unsubscribed(out: &mut Vec<u8>, channel: &str) {
    out.extend_from_slice(br#"{"type":"unsubscribed","channel":"#);
    write_json_string(out, channel);
    out.push(b'}');
}

/// `{"type":"pong"}`
pub fn encode_pong(out: &mut Vec<u8>) {
    out.extend_from_slice(br#"{"type":"pong"}"#);
}

/// `{"type":"ack","id":I,"channel":C,"seq":N}`, or `"seq":null` for a message accepted but
/// not numbered (no subscriber and nothing retained: it reached no one).
pub fn encode_ack(out: &mut Vec<u8>, id: &str, channel: &str, seq: Option<u64>) {
    out.extend_from_slice(br#"{"type":"ack","id":"#);
    write_json_string(out, id);
    out.extend_from_slice(br#","channel":"#);
    write_json_string(out, channel);
    out.extend_from_slice(br#","seq":"#);
    match seq {
        Some(seq) => out.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
}

/// `{"type":"error","message":M,"id":I}`: the error of a publish that asked for an
/// acknowledgement, so the client can match it to the publish.
pub fn encode_error_with_id(out: &mut Vec<u8>, message: &str, id: &str) {
    out.extend_from_slice(br#"{"type":"error","message":"#);
    write_json_string(out, message);
    out.extend_from_slice(br#","id":"#);
    write_json_string(out, id);
    out.push(b'}');
}

/// `{"type":"error","code":C,"message":M}` plus `"id":I` when given: a refusal with a
/// machine-readable code (cluster mode's `unavailable`: not sequenced or outcome unknown).
pub fn encode_error_with_code(out: &mut Vec<u8>, code: &str, message: &str, id: Option<&str>) {
    out.extend_from_slice(br#"{"type":"error","code":"#);
    write_json_string(out, code);
    out.extend_from_slice(br#","message":"#);
    write_json_string(out, message);
    if let Some(id) = id {
        out.extend_from_slice(br#","id":"#);
        write_json_string(out, id);
    }
    out.push(b'}');
}

/// `{"type":"error","message":"..."}`
pub fn encode_error(out: &mut Vec<u8>, message: &str) {
    out.extend_from_slice(br#"{"type":"error","message":"#);
    write_json_string(out, message);
    out.push(b'}');
}

/// `{"type":"gap","channel":"C","from":S1,"to":S2}`
pub fn encode_gap(out: &mut Vec<u8>, channel: &str, from: u64, to: u64) {
    out.extend_from_slice(br#"{"type":"gap","channel":"#);
    write_json_string(out, channel);
    out.extend_from_slice(br#","from":"#);
    write_u64(out, from);
    out.extend_from_slice(br#","to":"#);
    write_u64(out, to);
    out.push(b'}');
}

/// `{"type":"authenticated","sub":"..."}`
pub fn encode_authenticated(out: &mut Vec<u8>, sub: &str) {
    out.extend_from_slice(br#"{"type":"authenticated","sub":"#);
    write_json_string(out, sub);
    out.push(b'}');
}

/// Upper bound of the bytes [`encode_message`] appends: exact except that `seq` is counted
/// as 20 digits. Reserve it once to encode a fanout message without reallocating.
pub fn message_len_hint(channel: &str, content_raw: &[u8], from: &str) -> usize {
    MESSAGE_HEAD.len()
        + json_string_len(channel)
        + MESSAGE_CONTENT.len()
        + content_raw.len()
        + MESSAGE_FROM.len()
        + json_string_len(from)
        + MESSAGE_SEQ.len()
        + U64_DIGITS_MAX
        + 1
}

/// `{"type":"message","channel":"C","content":<raw>,"from":"<from>","seq":N}`.
///
/// `content_raw` is copied verbatim: it must be one complete JSON value, as produced by
/// [`crate::command::CommandDecoder`] for a publish.
pub fn encode_message(out: &mut Vec<u8>, channel: &str, content_raw: &[u8], from: &str, seq: u64) {
    out.reserve(message_len_hint(channel, content_raw, from));
    out.extend_from_slice(MESSAGE_HEAD);
    write_json_string(out, channel);
    out.extend_from_slice(MESSAGE_CONTENT);
    out.extend_from_slice(content_raw);
    out.extend_from_slice(MESSAGE_FROM);
    write_json_string(out, from);
    out.extend_from_slice(MESSAGE_SEQ);
    write_u64(out, seq);
    out.push(b'}');
}

/// [`encode_message`] with the publish's `key` (and `"delete":true`) after `seq`:
/// `{"type":"message",...,"seq":N,"key":"K"[,"delete":true]}`. Used for every publish that
/// carries a key, so that a subscriber can keep the latest value per key.
pub fn encode_keyed_message(
    out: &mut Vec<u8>,
    message: (&str, &[u8], &str, u64),
    key: Option<&str>,
    delete: bool,
) {
    let (channel, content_raw, from, seq) = message;
    encode_message(out, channel, content_raw, from, seq);
    out.pop(); // the closing brace
    if let Some(key) = key {
        out.extend_from_slice(br#","key":"#);
        write_json_string(out, key);
    }
    if delete {
        out.extend_from_slice(br#","delete":true"#);
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encoded(write: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        write(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn connected_exact() {
        let out = encoded(|o| encode_connected(o, "c-1f", "2001:db8::1"));
        assert_eq!(
            out,
            r#"{"type":"connected","id":"c-1f","addr":"2001:db8::1"}"#
        );
    }

    #[test]
    fn subscribed_exact_with_and_without_recovered() {
        let plain = encoded(|o| encode_subscribed(o, "md.abc", 42, "e1", None));
        assert_eq!(
            plain,
            r#"{"type":"subscribed","channel":"md.abc","seq":42,"epoch":"e1"}"#
        );
        let yes = encoded(|o| encode_subscribed(o, "c", 0, "e", Some(true)));
        assert_eq!(
            yes,
            r#"{"type":"subscribed","channel":"c","seq":0,"epoch":"e","recovered":true}"#
        );
        let no = encoded(|o| encode_subscribed(o, "c", u64::MAX, "e", Some(false)));
        let expected = r#"{"type":"subscribed","channel":"c","seq":18446744073709551615,"epoch":"e","recovered":false}"#;
        assert_eq!(no, expected);
    }

    #[test]
    fn unsubscribed_pong_error_exact() {
        let unsub = encoded(|o| encode_unsubscribed(o, "a:b"));
        assert_eq!(unsub, r#"{"type":"unsubscribed","channel":"a:b"}"#);
        assert_eq!(encoded(encode_pong), r#"{"type":"pong"}"#);
        let error = encoded(|o| encode_error(o, "Unknown type"));
        assert_eq!(error, r#"{"type":"error","message":"Unknown type"}"#);
    }

    #[test]
    fn gap_and_authenticated_exact() {
        let gap = encoded(|o| encode_gap(o, "c", 7, 19));
        assert_eq!(gap, r#"{"type":"gap","channel":"c","from":7,"to":19}"#);
        let auth = encoded(|o| encode_authenticated(o, "user-1"));
        assert_eq!(auth, r#"{"type":"authenticated","sub":"user-1"}"#);
    }

    #[test]
    fn message_exact_and_hint_bound() {
        let content = br#"{"a":[1, "x"]}"#;
        let out = encoded(|o| encode_message(o, "md.abc", content, "u\"1", 9));
        let expected = r#"{"type":"message","channel":"md.abc","content":{"a":[1, "x"]},"from":"u\"1","seq":9}"#;
        assert_eq!(out, expected);
        let hint = message_len_hint("md.abc", content, "u\"1");
        assert_eq!(hint, out.len() + 19, "exact but for 19 spare seq digits");
    }

    #[test]
    fn keyed_message_and_throttled_subscribed_exact() {
        let out = encoded(|o| encode_keyed_message(o, ("b", b"1", "f", 2), Some("K"), true));
        let want = r#"{"type":"message","channel":"b","content":1,"from":"f","seq":2,"key":"K","delete":true}"#;
        assert_eq!(out, want);
        let out = encoded(|o| encode_subscribed_throttled(o, "c", 1, "e", None, Some(100)));
        let want = r#"{"type":"subscribed","channel":"c","seq":1,"epoch":"e","throttle_ms":100}"#;
        assert_eq!(out, want);
    }

    #[test]
    fn escapes_quote_backslash_and_controls() {
        let out = encoded(|o| write_json_string(o, "a\"b\\c\u{0}\n\u{1f}\u{7f}é/"));
        assert_eq!(out, "\"a\\\"b\\\\c\\u0000\\u000a\\u001f\u{7f}é/\"");
        assert_eq!(json_string_len("a\"b\\c\u{0}\n\u{1f}\u{7f}é/"), out.len());
    }

    #[test]
    fn escapes_only_special_and_empty() {
        assert_eq!(encoded(|o| write_json_string(o, "")), "\"\"");
        assert_eq!(encoded(|o| write_json_string(o, "\"")), r#""\"""#);
        assert_eq!(
            encoded(|o| write_json_string(o, "\t\r")),
            r#""\u0009\u000d""#
        );
    }

    proptest! {
        #[test]
        fn escaped_string_parses_back(s in any::<String>()) {
            let mut out = Vec::new();
            write_json_string(&mut out, &s);
            prop_assert_eq!(out.len(), json_string_len(&s));
            let parsed: String = serde_json::from_slice(&out).unwrap();
            prop_assert_eq!(parsed, s);
        }
    }
}
