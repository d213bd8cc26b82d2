//! The hostile-case generator of `tests/hostile.rs`: a deterministic PRNG, the 15 kinds of
//! malformed handshakes and frame streams, and the close code the RFC predicts for each stream
//! (computed with the crate's own decoder).

use super::common::{masked_frame, unmasked_frame, upgrade_request};
use super::{MESSAGE_BYTES_MAX, SEED};
use std::ops::ControlFlow;
use wsrelay::proto::handshake::{parse_request_head, validate_upgrade};
use wsrelay::proto::{Decode, Decoder, DecoderLimits, Event, Role};

/// splitmix64: tiny, deterministic, good enough to generate test cases.
pub(crate) struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.byte()).collect()
    }

    /// Random bytes of a random length below `len_bound`.
    fn bytes_below(&mut self, len_bound: usize) -> Vec<u8> {
        let len = self.below(len_bound);
        self.bytes(len)
    }
}

/// The kinds of hostile input; each case index picks one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Case {
    HeadGarbage,
    HeadMutated,
    HeadTruncated,
    HeadOversized,
    HeadWrongVersion,
    HeadWrongMethodOrHttp10,
    FramesRandomBytes,
    FramesRandomHeaders,
    FramesUnmasked,
    FramesHugeLength,
    FramesEndlessFragments,
    FramesPingFlood,
    FramesInvalidUtf8,
    FramesInvalidClose,
    FramesBadCommands,
}

pub(crate) const CASES: [Case; 15] = [
    Case::HeadGarbage,
    Case::HeadMutated,
    Case::HeadTruncated,
    Case::HeadOversized,
    Case::HeadWrongVersion,
    Case::HeadWrongMethodOrHttp10,
    Case::FramesRandomBytes,
    Case::FramesRandomHeaders,
    Case::FramesUnmasked,
    Case::FramesHugeLength,
    Case::FramesEndlessFragments,
    Case::FramesPingFlood,
    Case::FramesInvalidUtf8,
    Case::FramesInvalidClose,
    Case::FramesBadCommands,
];

/// One generated hostile connection: what it sends, and for an upgrading case the close code
/// the relay must answer with.
pub(crate) struct Generated {
    pub(crate) case: Case,
    /// The request head (malformed, or a valid upgrade request).
    pub(crate) head: Vec<u8>,
    /// The frames sent after the 101 (upgrading cases only).
    pub(crate) stream: Vec<u8>,
    /// For connections that open (upgrading cases, and mutated heads that stayed valid): the
    /// close the relay must send (`Some(None)`: a close without a
    /// code, the echo of one without a code).
    pub(crate) close_expected: Option<Option<u16>>,
}

/// Case number `index` (deterministic in `SEED` and `index`).
pub(crate) fn generate(index: usize) -> Generated {
    let mut rng = Rng(SEED ^ (index as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let case = CASES[rng.below(CASES.len())];
    let head = match case {
        Case::HeadGarbage => rng.bytes_below(600),
        Case::HeadMutated => mutated_head(&mut rng),
        Case::HeadTruncated => {
            let head = upgrade_request("/");
            head.as_bytes()[..rng.below(head.len())].to_vec()
        }
        Case::HeadOversized => oversized_head(&mut rng),
        Case::HeadWrongVersion => head_with_version(&mut rng),
        Case::HeadWrongMethodOrHttp10 => head_wrong_method(&mut rng),
        _ => {
            let (stream, close_expected) = terminated(frames(case, &mut rng));
            return Generated {
                case,
                head: upgrade_request("/").into_bytes(),
                stream,
                close_expected: Some(close_expected),
            };
        }
    };
    if is_acceptable_upgrade(&head) {
        // A mutation that left the request valid: the connection opens, so close it cleanly
        // (our FIN alone would not end it, see `fin_right_after_a_valid_request_closes`).
        return Generated {
            case,
            head,
            stream: masked_frame(0x88, &1000u16.to_be_bytes()),
            close_expected: Some(Some(1000)),
        };
    }
    Generated {
        case,
        head,
        stream: Vec::new(),
        close_expected: None,
    }
}

/// Whether the relay upgrades `head`: one complete valid request, on a relay path.
pub(crate) fn is_acceptable_upgrade(head: &[u8]) -> bool {
    match parse_request_head(head) {
        Ok(Decode::Complete(request, head_len)) => {
            head_len == head.len()
                && matches!(request.path, "/" | "/ws")
                && validate_upgrade(&request).is_ok()
        }
        _ => false,
    }
}

/// Makes `stream` end the connection, and predicts the relay's close: the relay runs the same
/// decoder, so its first error (answered with `close_code()`) or the client's first close
/// frame (echoed, §5.5.1) is known in advance. A stream that ends neither way gets a masked
/// close 1000; a stream still inside a frame after that (random bytes announced a long
/// payload) gets `MESSAGE_BYTES_MAX + 14` bytes of 0xFF, which end any payload the limit
/// allows and then fail as a header (RSV bits, or a too-long length) or as UTF-8.
pub(crate) fn terminated(mut stream: Vec<u8>) -> (Vec<u8>, Option<u16>) {
    if let Some(close) = predict_close(&stream) {
        return (stream, close);
    }
    stream.extend(masked_frame(0x88, &1000u16.to_be_bytes()));
    if let Some(close) = predict_close(&stream) {
        return (stream, close);
    }
    stream.resize(stream.len() + MESSAGE_BYTES_MAX + 14, 0xff);
    let close = predict_close(&stream).expect("0xFF bytes end every stream with an error");
    (stream, close)
}

/// The close the relay sends for `stream`, if the stream ends the connection.
pub(crate) fn predict_close(stream: &[u8]) -> Option<Option<u16>> {
    let limits = DecoderLimits {
        message_bytes_max: MESSAGE_BYTES_MAX,
    };
    let mut decoder = Decoder::new(Role::Server, limits);
    let mut close = None;
    let result = decoder.feed(&mut stream.to_vec(), |event| match event {
        Event::Close(frame) => {
            close = Some(frame.map(|f| f.code));
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    });
    match result {
        Err(error) => Some(Some(error.close_code())),
        Ok(_) => close,
    }
}

/// A valid request with a few random bytes overwritten, inserted or deleted.
pub(crate) fn mutated_head(rng: &mut Rng) -> Vec<u8> {
    let mut head = upgrade_request("/").into_bytes();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(head.len());
        match rng.below(3) {
            0 => head[at] = rng.byte(),
            1 => head.insert(at, rng.byte()),
            _ => {
                head.remove(at);
            }
        }
    }
    head
}

/// A head that does not end within the 8 KiB limit: a long header, or too many headers.
pub(crate) fn oversized_head(rng: &mut Rng) -> Vec<u8> {
    let mut head = b"GET / HTTP/1.1\r\nHost: localhost\r\n".to_vec();
    match rng.below(2) {
        0 => {
            head.extend_from_slice(b"X-Padding: ");
            head.resize(head.len() + 8200 + rng.below(4000), b'a');
        }
        _ => {
            for i in 0..60 + rng.below(40) {
                head.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
            }
        }
    }
    head.extend_from_slice(b"\r\n\r\n");
    head
}

/// A valid upgrade request with a version other than 13.
pub(crate) fn head_with_version(rng: &mut Rng) -> Vec<u8> {
    let versions = ["0", "8", "12", "14", "13, 8", "", "thirteen", "99999999999"];
    upgrade_request("/")
        .replace(
            "Sec-WebSocket-Version: 13",
            &format!(
                "Sec-WebSocket-Version: {}",
                versions[rng.below(versions.len())]
            ),
        )
        .into_bytes()
}

/// A valid upgrade request with another method or HTTP/1.0.
pub(crate) fn head_wrong_method(rng: &mut Rng) -> Vec<u8> {
    let lines = [
        "POST / HTTP/1.1",
        "PUT / HTTP/1.1",
        "HEAD / HTTP/1.1",
        "GET / HTTP/1.0",
    ];
    upgrade_request("/")
        .replace("GET / HTTP/1.1", lines[rng.below(lines.len())])
        .into_bytes()
}

/// The hostile frame stream of an upgrading case.
pub(crate) fn frames(case: Case, rng: &mut Rng) -> Vec<u8> {
    match case {
        Case::FramesRandomBytes => rng.bytes_below(2000),
        Case::FramesRandomHeaders => random_header_frames(rng),
        Case::FramesUnmasked => unmasked_frame(0x81, &rng.bytes_below(200)),
        Case::FramesHugeLength => huge_length_frame(rng),
        Case::FramesEndlessFragments => endless_fragments(rng),
        Case::FramesPingFlood => ping_flood(rng),
        Case::FramesInvalidUtf8 => invalid_utf8(rng),
        Case::FramesInvalidClose => invalid_close(rng),
        _ => bad_commands(rng),
    }
}

/// Masked frames with a random first byte (FIN, RSV, opcode) and short random payloads.
pub(crate) fn random_header_frames(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..1 + rng.below(20) {
        let len = rng.below(140);
        out.extend(masked_frame(rng.byte(), &rng.bytes(len)));
    }
    out
}

/// A masked header announcing far more than the limit (or a 64-bit length with its MSB set),
/// followed by a few payload bytes.
pub(crate) fn huge_length_frame(rng: &mut Rng) -> Vec<u8> {
    let announced: u64 = match rng.below(3) {
        0 => (MESSAGE_BYTES_MAX as u64) + 1 + rng.below(1 << 20) as u64,
        1 => u64::MAX >> 1,
        _ => u64::MAX,
    };
    let mut out = vec![0x82, 0x80 | 127];
    out.extend_from_slice(&announced.to_be_bytes());
    out.extend_from_slice(&[0x37, 0xfa, 0x21, 0x3d]);
    out.extend(rng.bytes_below(64));
    out
}

/// A fragmented message whose fragments (with pings between) never end before the limit.
pub(crate) fn endless_fragments(rng: &mut Rng) -> Vec<u8> {
    let fragment_len = 256 + rng.below(1024);
    let fragments = MESSAGE_BYTES_MAX / fragment_len + 2;
    let mut out = masked_frame(0x02, &rng.bytes(fragment_len));
    for i in 0..fragments {
        out.extend(masked_frame(0x00, &rng.bytes(fragment_len)));
        if i % 8 == 0 {
            out.extend(masked_frame(0x89, b"keepalive"));
        }
    }
    out
}

/// Hundreds of pings with payloads up to the 125-byte maximum, none of the pongs read.
pub(crate) fn ping_flood(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..200 + rng.below(800) {
        let len = rng.below(126);
        out.extend(masked_frame(0x89, &rng.bytes(len)));
    }
    out
}

/// A text message that is not UTF-8: in one frame, or with the bad byte in a later fragment.
pub(crate) fn invalid_utf8(rng: &mut Rng) -> Vec<u8> {
    let bad: &[&[u8]] = &[
        b"\xff",
        b"\xc0\xaf",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"\xce",
    ];
    let mut text = b"caf\xc3\xa9 ".to_vec();
    text.extend_from_slice(bad[rng.below(bad.len())]);
    match rng.below(2) {
        0 => masked_frame(0x81, &text),
        _ => {
            let mut out = masked_frame(0x01, b"ok so far ");
            out.extend(masked_frame(0x80, &text));
            out
        }
    }
}

/// A close frame with a code no endpoint may send, a one-byte body, or a non-UTF-8 reason.
pub(crate) fn invalid_close(rng: &mut Rng) -> Vec<u8> {
    let codes = [
        0u16, 999, 1004, 1005, 1006, 1012, 1015, 2000, 2999, 5000, 65535,
    ];
    match rng.below(3) {
        0 => masked_frame(0x88, &codes[rng.below(codes.len())].to_be_bytes()),
        1 => masked_frame(0x88, &[0x03]),
        _ => masked_frame(0x88, b"\x03\xe8\xff\xfe"),
    }
}

/// Text frames of broken or abusive commands (bad JSON, wrong types, bad channel names,
/// subscriptions to many random channels).
pub(crate) fn bad_commands(rng: &mut Rng) -> Vec<u8> {
    let texts = [
        "{",
        "[]",
        "null",
        r#"{"type":1}"#,
        r#"{"type":"subscribe"}"#,
        r#"{"type":"subscribe","channel":"has space"}"#,
        r#"{"type":"message","channel":"c"}"#,
        r#"{"type":"ping","type":"ping"}"#,
        r#"{"type":"dance"}"#,
    ];
    let mut out = Vec::new();
    for _ in 0..1 + rng.below(30) {
        let text = match rng.below(3) {
            0 => format!(
                r#"{{"type":"subscribe","channel":"junk.{}"}}"#,
                rng.next_u64()
            ),
            _ => texts[rng.below(texts.len())].to_string(),
        };
        out.extend(masked_frame(0x81, text.as_bytes()));
    }
    out
}
