//! Precomputed client frames: the publish template of each publisher (JSON or binary) and the
//! fixed control frames (subscribe, pong, close).
//!
//! Owns: the bytes the swarm sends. May not touch: sockets, clocks.
//!
//! A publish frame is built once per publisher, already masked; sending message `i` copies the
//! template and rewrites only the stamp's slots (fixed width, so the frame length never
//! changes), re-masking those bytes at their phase of the key. JSON numbers are right-padded
//! with spaces (legal JSON whitespace) instead of zeros (leading zeros are not JSON).

use wsrelay::proto::frame::{encode_client_frame, OpCode};
use wsrelay::proto::mask::apply_mask;

use crate::scan::{encode_binary_stamp, Stamp, BINARY_OP_MESSAGE, BINARY_STAMP_BYTES};

/// The masking key of every frame the swarm sends. RFC 6455 §5.3 requires a fresh,
/// unpredictable key per frame so that a client cannot steer the bytes an intermediary sees;
/// this is a load-test client talking to loopback servers, where a fixed key lets frames be
/// precomputed. Never copy this into a real client.
pub const FIXED_TEST_MASK: [u8; 4] = [0x5a, 0x3c, 0xa5, 0xc3];

/// `,"sym":"BTC-USD","bids":[[p,s],...],"asks":[[p,s],...]` at most `bytes` long: prices
/// around 64,250 in steps of 0.25 and sizes with 4 decimals from a small LCG (the shape of a
/// depth snapshot; about 4× compressible with DEFLATE, like real feeds).
fn order_book(bytes: usize, seed: u32) -> String {
    let mut state = u64::from(seed)
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as u32
    };
    let mut out = String::from(",\"sym\":\"BTC-USD\",\"bids\":[");
    let mut side = 0;
    let mut price = 6_425_000u32 + next() % 400;
    loop {
        let level = format!(
            "[{}.{:02},{}.{:04}]",
            price / 100,
            price % 100,
            next() % 20,
            next() % 10_000
        );
        let closing = if side == 0 { "],\"asks\":[]" } else { "]" };
        if out.len() + level.len() + 1 + closing.len() + 16 > bytes {
            break;
        }
        if !out.ends_with('[') {
            out.push(',');
        }
        out.push_str(&level);
        price = if side == 0 {
            price - 25 * (1 + next() % 3)
        } else {
            price + 25 * (1 + next() % 3)
        };
        if side == 0 && out.len() * 2 > bytes {
            out.push_str("],\"asks\":[");
            side = 1;
            price += 2_000;
        }
    }
    out.push_str(if side == 0 { "],\"asks\":[]" } else { "]" });
    out
}

/// Digits reserved for `t` (any u64).
const SENT_AT_DIGITS: usize = 20;
/// Digits reserved for `p` and `i` (any u32).
const U32_DIGITS: usize = 10;
/// Content bytes of a JSON stamp with an empty padding string.
pub const JSON_CONTENT_BYTES_MIN: usize = 63;

/// Where a variable field sits in the template frame.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Offset in the frame.
    at: usize,
    /// Bytes reserved.
    width: usize,
}

/// How the stamp is written into a frame.
#[derive(Debug, Clone, Copy)]
enum StampSlots {
    /// `t`, `p`, `i` as space-padded decimal numbers.
    Json([Slot; 3]),
    /// One 16-byte big-endian `[t][p][i]`.
    Binary(Slot),
}

/// A publisher's precomputed, masked frame.
#[derive(Debug, Clone)]
pub struct PublishTemplate {
    frame: Box<[u8]>,
    payload_at: usize,
    slots: StampSlots,
}

impl PublishTemplate {
    /// A JSON publish to `channel` whose `content` value is `content_bytes` long (at least
    /// [`JSON_CONTENT_BYTES_MIN`]).
    pub fn json(channel: &str, content_bytes: usize) -> Self {
        let prefix = format!("{{\"type\":\"message\",\"channel\":\"{channel}\",\"content\":");
        Self::stamp_object(&prefix, "}", content_bytes)
    }

    /// A JSON publish to `channel` whose `content` is the stamp followed by an order book
    /// (`"bids"`/`"asks"`: price and size pairs that vary like real quotes, seeded by `seed`),
    /// filled with spaces to `content_bytes` (at least the stamp and one level).
    pub fn market_data(channel: &str, content_bytes: usize, seed: u32) -> Self {
        let prefix = format!("{{\"type\":\"message\",\"channel\":\"{channel}\",\"content\":");
        let book = order_book(
            content_bytes.saturating_sub(JSON_CONTENT_BYTES_MIN + 40),
            seed,
        );
        Self::stamp_with(&prefix, "}", content_bytes, &book)
    }

    /// An `echo` text message that is itself the stamp object `{"t":..,"p":..,"i":..,"x":".."}`
    /// (valid JSON, so servers that parse what they echo keep it), `content_bytes` long (at
    /// least [`JSON_CONTENT_BYTES_MIN`]).
    pub fn echo_json(content_bytes: usize) -> Self {
        Self::stamp_object("", "", content_bytes)
    }

    /// An `echo` binary message: the 16-byte stamp, then padding to `payload_bytes` (at least
    /// 16).
    pub fn echo_binary(payload_bytes: usize) -> Self {
        let mut payload = vec![b'x'; payload_bytes.max(BINARY_STAMP_BYTES)];
        payload[..BINARY_STAMP_BYTES].fill(0);
        Self::build(OpCode::Binary, &payload, |payload_at| {
            StampSlots::Binary(Slot {
                at: payload_at,
                width: BINARY_STAMP_BYTES,
            })
        })
    }

    /// `prefix`, the stamp object padded to `content_bytes`, `suffix`, as one text frame.
    fn stamp_object(prefix: &str, suffix: &str, content_bytes: usize) -> Self {
        Self::stamp_with(prefix, suffix, content_bytes, "")
    }

    /// The stamp object with `fields` (`,"key":value...` or empty) before the padding string.
    fn stamp_with(prefix: &str, suffix: &str, content_bytes: usize, fields: &str) -> Self {
        let padding = content_bytes.saturating_sub(JSON_CONTENT_BYTES_MIN + fields.len());
        let mut payload = prefix.to_string();
        let mut slots = [Slot { at: 0, width: 0 }; 3];
        for (slot, (key, width)) in slots.iter_mut().zip([
            ("{\"t\":", SENT_AT_DIGITS),
            (",\"p\":", U32_DIGITS),
            (",\"i\":", U32_DIGITS),
        ]) {
            payload.push_str(key);
            *slot = Slot {
                at: payload.len(),
                width,
            };
            payload.extend(std::iter::repeat_n('0', width));
        }
        payload.push_str(fields);
        payload.push_str(",\"x\":\"");
        payload.extend(std::iter::repeat_n('x', padding));
        payload.push_str("\"}");
        payload.push_str(suffix);
        Self::build(OpCode::Text, payload.as_bytes(), |payload_at| {
            StampSlots::Json(slots.map(|s| Slot {
                at: s.at + payload_at,
                width: s.width,
            }))
        })
    }

    /// A binary publish `[0x01][L][channel][t][p][i][padding]` with `payload_bytes` after the
    /// channel (at least 16).
    pub fn binary(channel: &str, payload_bytes: usize) -> Self {
        let mut payload = vec![BINARY_OP_MESSAGE, channel.len() as u8];
        payload.extend_from_slice(channel.as_bytes());
        let stamp_at = payload.len();
        payload.resize(stamp_at + payload_bytes.max(BINARY_STAMP_BYTES), b'x');
        Self::build(OpCode::Binary, &payload, |payload_at| {
            StampSlots::Binary(Slot {
                at: stamp_at + payload_at,
                width: BINARY_STAMP_BYTES,
            })
        })
    }

    fn build(opcode: OpCode, payload: &[u8], slots: impl FnOnce(usize) -> StampSlots) -> Self {
        let mut frame = Vec::new();
        encode_client_frame(&mut frame, true, opcode, payload, FIXED_TEST_MASK);
        let payload_at = frame.len() - payload.len();
        Self {
            frame: frame.into_boxed_slice(),
            payload_at,
            slots: slots(payload_at),
        }
    }

    /// Bytes of one frame.
    pub fn frame_bytes(&self) -> usize {
        self.frame.len()
    }

    /// Appends the frame carrying `stamp` to `out`.
    pub fn append(&self, out: &mut Vec<u8>, stamp: Stamp) {
        let base = out.len();
        out.extend_from_slice(&self.frame);
        let frame = &mut out[base..];
        match self.slots {
            StampSlots::Json([t, p, i]) => {
                self.write_decimal(frame, t, stamp.sent_at_ns);
                self.write_decimal(frame, p, u64::from(stamp.publisher));
                self.write_decimal(frame, i, u64::from(stamp.index));
            }
            StampSlots::Binary(slot) => {
                let mut bytes = [0u8; BINARY_STAMP_BYTES];
                encode_binary_stamp(&mut bytes, stamp);
                self.write_masked(frame, slot, &bytes);
            }
        }
    }

    /// Writes `value` left-aligned and space-padded into `slot`, masked.
    fn write_decimal(&self, frame: &mut [u8], slot: Slot, value: u64) {
        let mut field = [b' '; SENT_AT_DIGITS];
        let digits = itoa_buf(value);
        let text = digits.format();
        field[..text.len()].copy_from_slice(text);
        self.write_masked(frame, slot, &field[..slot.width]);
    }

    fn write_masked(&self, frame: &mut [u8], slot: Slot, bytes: &[u8]) {
        let target = &mut frame[slot.at..slot.at + slot.width];
        target.copy_from_slice(bytes);
        apply_mask(target, FIXED_TEST_MASK, slot.at - self.payload_at);
    }
}

/// A tiny allocation-free u64 formatter.
struct DecimalDigits {
    buf: [u8; SENT_AT_DIGITS],
    start: usize,
}

fn itoa_buf(mut value: u64) -> DecimalDigits {
    let mut buf = [0u8; SENT_AT_DIGITS];
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    DecimalDigits { buf, start }
}

impl DecimalDigits {
    fn format(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

/// A masked client text frame (cold path: commands).
pub fn text_frame(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    encode_client_frame(
        &mut out,
        true,
        OpCode::Text,
        text.as_bytes(),
        FIXED_TEST_MASK,
    );
    out
}

/// The subscribe command for `channel`, framed.
pub fn subscribe_frame(channel: &str) -> Vec<u8> {
    text_frame(&format!(
        "{{\"type\":\"subscribe\",\"channel\":\"{channel}\"}}"
    ))
}

/// Appends a masked pong echoing `payload` (§5.5.3).
pub fn append_pong(out: &mut Vec<u8>, payload: &[u8]) {
    encode_client_frame(out, true, OpCode::Pong, payload, FIXED_TEST_MASK);
}

/// Appends a masked close frame with `code` (§5.5.1).
pub fn append_close(out: &mut Vec<u8>, code: u16) {
    encode_client_frame(
        out,
        true,
        OpCode::Close,
        &code.to_be_bytes(),
        FIXED_TEST_MASK,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::{scan_binary, scan_text, BinaryMessage, TextMessage};

    /// Unmasks a client frame produced here (7-bit or 16-bit length) and returns its payload.
    fn unmask(frame: &[u8]) -> Vec<u8> {
        let (len, at) = match frame[1] & 0x7f {
            126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
            n => (n as usize, 2),
        };
        let key = [frame[at], frame[at + 1], frame[at + 2], frame[at + 3]];
        let mut payload = frame[at + 4..].to_vec();
        assert_eq!(payload.len(), len);
        apply_mask(&mut payload, key, 0);
        payload
    }

    #[test]
    fn json_template_content_has_requested_size_and_round_trips() {
        let template = PublishTemplate::json("ch.0", 100);
        let stamp = Stamp {
            sent_at_ns: 987_654_321,
            publisher: 7,
            index: 4_000_000_000,
        };
        let mut out = Vec::new();
        template.append(&mut out, stamp);
        let payload = unmask(&out);
        let text = String::from_utf8(payload.clone()).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["content"]["t"], 987_654_321u64);
        assert_eq!(value["content"]["i"], 4_000_000_000u64);
        assert!(serde_json::to_string(&value["content"]).unwrap().len() <= 100);
        let content_at = text.find("\"content\":").unwrap() + 10;
        assert_eq!(text.len() - 1 - content_at, 100);
        assert_eq!(scan_text(&payload), TextMessage::Delivery(stamp));
    }

    #[test]
    fn template_rewrites_only_the_stamp() {
        let template = PublishTemplate::json("c", 80);
        let mut a = Vec::new();
        let mut b = Vec::new();
        template.append(
            &mut a,
            Stamp {
                sent_at_ns: 1,
                publisher: 0,
                index: 0,
            },
        );
        template.append(
            &mut b,
            Stamp {
                sent_at_ns: 99,
                publisher: 0,
                index: 5,
            },
        );
        assert_eq!(a.len(), b.len());
        assert_eq!(a.len(), template.frame_bytes());
        assert_ne!(a, b);
    }

    #[test]
    fn binary_template_round_trips_through_a_delivery() {
        let template = PublishTemplate::binary("room.3", 32);
        let stamp = Stamp {
            sent_at_ns: u64::MAX - 1,
            publisher: 9,
            index: 11,
        };
        let mut out = Vec::new();
        template.append(&mut out, stamp);
        let publish = unmask(&out);
        assert_eq!(&publish[..8], b"\x01\x06room.3");
        assert_eq!(publish.len(), 8 + 32);
        // The relay inserts its seq after the channel.
        let mut delivery = publish[..8].to_vec();
        delivery.extend_from_slice(&1u64.to_be_bytes());
        delivery.extend_from_slice(&publish[8..]);
        assert_eq!(scan_binary(&delivery), BinaryMessage::Delivery(stamp));
    }
}
