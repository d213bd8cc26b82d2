//! Unit tests of `decoder`.

use super::*;
use crate::proto::close::encode_close_payload;
use crate::proto::frame::OpCode;
use crate::proto::frame::{encode_client_frame, encode_server_frame};
use proptest::prelude::*;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const LIMIT: usize = 1 << 20;

/// An owned copy of an [`Event`] for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owned {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
    CompressedText(Vec<u8>),
    CompressedBinary(Vec<u8>),
}

fn own(event: Event<'_>) -> Owned {
    match event {
        Event::Text(p) => Owned::Text(p.to_vec()),
        Event::Binary(p) => Owned::Binary(p.to_vec()),
        Event::Ping(p) => Owned::Ping(p.to_vec()),
        Event::Pong(p) => Owned::Pong(p.to_vec()),
        Event::Close(c) => Owned::Close(c.map(|c| (c.code, c.reason.to_owned()))),
        Event::CompressedText(p) => Owned::CompressedText(p.to_vec()),
        Event::CompressedBinary(p) => Owned::CompressedBinary(p.to_vec()),
    }
}

/// Feeds `pieces` in order; returns all events and the first error.
fn decode_pieces(
    role: Role,
    limit: usize,
    pieces: &[&[u8]],
) -> (Vec<Owned>, Option<ProtocolError>) {
    let mut decoder = Decoder::new(
        role,
        DecoderLimits {
            message_bytes_max: limit,
        },
    );
    let mut events = Vec::new();
    for piece in pieces {
        let mut piece = piece.to_vec();
        let result = decoder.feed(&mut piece, |event| {
            events.push(own(event));
            ControlFlow::Continue(())
        });
        if let Err(error) = result {
            return (events, Some(error));
        }
    }
    (events, None)
}

fn decode(role: Role, bytes: &[u8]) -> (Vec<Owned>, Option<ProtocolError>) {
    decode_pieces(role, LIMIT, &[bytes])
}

/// Encodes a frame as the peer of `role` would send it.
fn frame(role: Role, fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match role {
        Role::Server => encode_client_frame(&mut out, fin, opcode, payload, KEY),
        Role::Client => encode_server_frame(&mut out, fin, opcode, payload),
    }
    out
}

fn text(s: &str) -> Owned {
    Owned::Text(s.as_bytes().to_vec())
}

/// Issue 12 (≤ 256 bytes per idle connection): a pointer to the partial state, the `usize`
/// message limit (public `DecoderLimits`), and the role, compression and poison bytes.
#[test]
fn idle_decoder_is_two_words() {
    let size = std::mem::size_of::<Decoder>();
    assert!(size <= 2 * std::mem::size_of::<usize>(), "{size}");
}

fn server_decoder() -> Decoder {
    Decoder::new(
        Role::Server,
        DecoderLimits {
            message_bytes_max: LIMIT,
        },
    )
}

/// Feeds one piece; returns the events.
fn feed_piece(decoder: &mut Decoder, piece: &[u8]) -> Vec<Owned> {
    let mut events = Vec::new();
    let mut piece = piece.to_vec();
    let result = decoder.feed(&mut piece, |event| {
        events.push(own(event));
        ControlFlow::Continue(())
    });
    assert_eq!(result, Ok(Feed::Drained));
    events
}

#[test]
fn a_split_frame_allocates_and_release_frees_everything_between_messages() {
    let mut decoder = server_decoder();
    let wire = frame(Role::Server, true, OpCode::Text, b"hello");
    let (head, tail) = wire.split_at(8);
    assert_eq!(feed_piece(&mut decoder, head), vec![]);
    assert!(decoder.buffered_bytes() > 0);
    decoder.release_idle_buffer();
    assert!(decoder.buffered_bytes() > 0, "released mid-frame");
    assert_eq!(feed_piece(&mut decoder, tail), vec![text("hello")]);
    assert!(
        decoder.buffered_bytes() > 0,
        "small buffer retained between messages"
    );
    decoder.release_idle_buffer();
    assert_eq!(decoder.buffered_bytes(), 0);
    assert_eq!(feed_piece(&mut decoder, &wire), vec![text("hello")]);
    assert_eq!(decoder.buffered_bytes(), 0);
}

#[test]
fn release_keeps_a_partial_header_and_a_fragmented_message() {
    let mut decoder = server_decoder();
    let mut wire = frame(Role::Server, false, OpCode::Text, b"");
    wire.extend(frame(Role::Server, true, OpCode::Continuation, b"ab"));
    let (first, rest) = wire.split_at(6);
    assert_eq!(feed_piece(&mut decoder, first), vec![]);
    decoder.release_idle_buffer();
    let (header_start, rest) = rest.split_at(3);
    assert_eq!(feed_piece(&mut decoder, header_start), vec![]);
    decoder.release_idle_buffer();
    assert_eq!(feed_piece(&mut decoder, rest), vec![text("ab")]);
}

#[test]
fn rfc_5_7_masked_hello_server_role() {
    let wire = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(decode(Role::Server, &wire), (vec![text("Hello")], None));
}

#[test]
fn rfc_5_7_unmasked_hello_client_role() {
    let wire = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    assert_eq!(decode(Role::Client, &wire), (vec![text("Hello")], None));
}

#[test]
fn rfc_5_7_fragmented_hello_both_roles() {
    let client_wire = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
    assert_eq!(
        decode(Role::Client, &client_wire),
        (vec![text("Hello")], None)
    );
    let mut server_wire = frame(Role::Server, false, OpCode::Text, b"Hel");
    server_wire.extend(frame(Role::Server, true, OpCode::Continuation, b"lo"));
    assert_eq!(
        decode(Role::Server, &server_wire),
        (vec![text("Hello")], None)
    );
}

#[test]
fn rfc_5_7_ping_and_masked_pong() {
    let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    assert_eq!(
        decode(Role::Client, &ping),
        (vec![Owned::Ping(b"Hello".to_vec())], None)
    );
    let pong = [
        0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(
        decode(Role::Server, &pong),
        (vec![Owned::Pong(b"Hello".to_vec())], None)
    );
}

#[test]
fn rfc_5_7_256_and_64k_binary_both_roles() {
    for (len, header) in [
        (256usize, vec![0x82, 0x7E, 0x01, 0x00]),
        (65536, vec![0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]),
    ] {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let mut wire = header.clone();
        wire.extend_from_slice(&payload);
        assert_eq!(
            decode(Role::Client, &wire),
            (vec![Owned::Binary(payload.clone())], None)
        );
        let masked = frame(Role::Server, true, OpCode::Binary, &payload);
        assert_eq!(masked[1], header[1] | 0x80);
        assert_eq!(
            decode(Role::Server, &masked),
            (vec![Owned::Binary(payload)], None)
        );
    }
}

#[test]
fn role_mask_rules() {
    let unmasked = frame(Role::Client, true, OpCode::Text, b"hi");
    assert_eq!(
        decode(Role::Server, &unmasked).1,
        Some(ProtocolError::UnmaskedClientFrame)
    );
    let masked = frame(Role::Server, true, OpCode::Text, b"hi");
    assert_eq!(
        decode(Role::Client, &masked).1,
        Some(ProtocolError::MaskedServerFrame)
    );
}

#[test]
fn header_violations() {
    let cases: [(&[u8], ProtocolError); 8] = [
        (&[0xC1, 0x80], ProtocolError::ReservedBitsSet),
        (&[0x91, 0x80], ProtocolError::ReservedBitsSet),
        (&[0x83, 0x80], ProtocolError::UnknownOpcode),
        (&[0x8B, 0x80], ProtocolError::UnknownOpcode),
        (&[0x09, 0x80], ProtocolError::ControlFrameFragmented),
        (
            &[0x89, 0xFE, 0x00, 0x7E],
            ProtocolError::ControlFrameTooLong,
        ),
        (&[0x80, 0x80], ProtocolError::ContinuationWithoutStart),
        (&[0x82, 0xFF, 0x80], ProtocolError::PayloadLengthMsbSet),
    ];
    for (wire, error) in cases {
        assert_eq!(
            decode(Role::Server, wire),
            (vec![], Some(error)),
            "{wire:02x?}"
        );
    }
}

#[test]
fn violations_fail_fast_on_the_first_offending_byte() {
    // Only the first header byte has arrived.
    assert_eq!(
        decode(Role::Server, &[0xC1]).1,
        Some(ProtocolError::ReservedBitsSet)
    );
    // Length announced beyond the limit: rejected before any payload arrives.
    let header = [0x82, 0xFE, 0x01, 0x00];
    assert_eq!(
        decode_pieces(Role::Server, 255, &[&header]).1,
        Some(ProtocolError::MessageTooBig)
    );
    // Invalid UTF-8 in the first half of a frame whose second half never arrives.
    let wire = frame(Role::Server, true, OpCode::Text, b"ab\xed\xa0\x80cdefgh");
    // Header (6 bytes) + "ab" + ED is still a valid prefix; ED A0 can never become valid.
    assert_eq!(decode(Role::Server, &wire[..9]), (vec![], None));
    assert_eq!(
        decode(Role::Server, &wire[..10]).1,
        Some(ProtocolError::InvalidUtf8)
    );
}

#[test]
fn data_frame_inside_fragmented_message() {
    let mut wire = frame(Role::Server, false, OpCode::Text, b"a");
    wire.extend(frame(Role::Server, true, OpCode::Binary, b"b"));
    assert_eq!(
        decode(Role::Server, &wire),
        (
            vec![],
            Some(ProtocolError::DataFrameInsideFragmentedMessage)
        )
    );
}

#[test]
fn invalid_utf8_single_and_fragmented() {
    let wire = frame(Role::Server, true, OpCode::Text, b"\xce\xba\xc0\xaf");
    assert_eq!(
        decode(Role::Server, &wire).1,
        Some(ProtocolError::InvalidUtf8)
    );
    // A sequence split across fragments is fine; a truncated one at the end is not.
    let mut ok = frame(Role::Server, false, OpCode::Text, b"\xce");
    ok.extend(frame(Role::Server, true, OpCode::Continuation, b"\xba"));
    assert_eq!(
        decode(Role::Server, &ok),
        (vec![Owned::Text(b"\xce\xba".to_vec())], None)
    );
    let mut truncated = frame(Role::Server, false, OpCode::Text, b"a");
    truncated.extend(frame(Role::Server, true, OpCode::Continuation, b"\xce"));
    assert_eq!(
        decode(Role::Server, &truncated).1,
        Some(ProtocolError::InvalidUtf8)
    );
}

#[test]
fn close_frames() {
    let mut payload = Vec::new();
    encode_close_payload(&mut payload, 1000, "bye");
    let wire = frame(Role::Server, true, OpCode::Close, &payload);
    assert_eq!(
        decode(Role::Server, &wire),
        (vec![Owned::Close(Some((1000, "bye".into())))], None)
    );
    let empty = frame(Role::Server, true, OpCode::Close, b"");
    assert_eq!(
        decode(Role::Server, &empty),
        (vec![Owned::Close(None)], None)
    );
    let cases: [(&[u8], ProtocolError); 3] = [
        (&[0x03], ProtocolError::ClosePayloadOneByte),
        (&[0x03, 0xED], ProtocolError::InvalidCloseCode),
        (&[0x03, 0xE8, 0xFF], ProtocolError::InvalidCloseReason),
    ];
    for (payload, error) in cases {
        assert_eq!(
            decode(
                Role::Server,
                &frame(Role::Server, true, OpCode::Close, payload)
            )
            .1,
            Some(error)
        );
    }
}

#[test]
fn fragmented_message_with_interleaved_ping() {
    let mut wire = frame(Role::Server, false, OpCode::Text, b"Hel");
    wire.extend(frame(Role::Server, true, OpCode::Ping, b"p"));
    wire.extend(frame(Role::Server, false, OpCode::Continuation, b"l"));
    wire.extend(frame(Role::Server, true, OpCode::Pong, b""));
    wire.extend(frame(Role::Server, true, OpCode::Continuation, b"o"));
    let expected = vec![
        Owned::Ping(b"p".to_vec()),
        Owned::Pong(vec![]),
        text("Hello"),
    ];
    assert_eq!(decode(Role::Server, &wire), (expected.clone(), None));
    // Byte by byte, the control frames go through the buffer after the message data.
    let pieces: Vec<&[u8]> = wire.chunks(1).collect();
    assert_eq!(
        decode_pieces(Role::Server, LIMIT, &pieces),
        (expected, None)
    );
}

#[test]
fn limit_single_frame() {
    let at_limit = frame(Role::Server, true, OpCode::Binary, &[7; 300]);
    assert_eq!(
        decode_pieces(Role::Server, 300, &[&at_limit]).0,
        vec![Owned::Binary(vec![7; 300])]
    );
    let over = frame(Role::Server, true, OpCode::Binary, &[7; 301]);
    assert_eq!(
        decode_pieces(Role::Server, 300, &[&over]),
        (vec![], Some(ProtocolError::MessageTooBig))
    );
}

#[test]
fn limit_fragmented_message() {
    let mut at_limit = frame(Role::Server, false, OpCode::Binary, &[1; 200]);
    at_limit.extend(frame(Role::Server, true, OpCode::Continuation, &[2; 100]));
    let (events, error) = decode_pieces(Role::Server, 300, &[&at_limit]);
    assert_eq!(error, None);
    assert_eq!(events.len(), 1);
    let mut over = frame(Role::Server, false, OpCode::Binary, &[1; 200]);
    over.extend(frame(Role::Server, true, OpCode::Continuation, &[2; 101]));
    assert_eq!(
        decode_pieces(Role::Server, 300, &[&over]),
        (vec![], Some(ProtocolError::MessageTooBig))
    );
}

#[test]
fn events_before_a_violation_are_delivered_then_decoder_is_poisoned() {
    let mut wire = frame(Role::Server, true, OpCode::Text, b"one");
    wire.extend(frame(Role::Server, true, OpCode::Binary, b"two"));
    wire.extend([0xC1, 0x80]);
    let mut decoder = Decoder::new(
        Role::Server,
        DecoderLimits {
            message_bytes_max: LIMIT,
        },
    );
    let mut events = Vec::new();
    let result = decoder.feed(&mut wire, |event| {
        events.push(own(event));
        ControlFlow::Continue(())
    });
    assert_eq!(result, Err(ProtocolError::ReservedBitsSet));
    assert_eq!(events, vec![text("one"), Owned::Binary(b"two".to_vec())]);
    let mut valid = frame(Role::Server, true, OpCode::Text, b"later");
    let later = decoder.feed(&mut valid, |_| {
        panic!("poisoned decoder delivered an event")
    });
    assert_eq!(later, Err(ProtocolError::ReservedBitsSet));
    assert_eq!(decoder.buffered_bytes(), 0);
}

#[test]
fn break_stops_decoding() {
    let mut wire = frame(Role::Server, true, OpCode::Close, &[0x03, 0xE8]);
    let close_len = wire.len();
    wire.extend(frame(Role::Server, true, OpCode::Text, b"ignored"));
    let mut decoder = Decoder::new(
        Role::Server,
        DecoderLimits {
            message_bytes_max: LIMIT,
        },
    );
    let mut count = 0;
    let result = decoder.feed(&mut wire, |_| {
        count += 1;
        ControlFlow::Break(())
    });
    assert_eq!(
        result,
        Ok(Feed::Stopped {
            consumed_bytes: close_len
        })
    );
    assert_eq!(count, 1);
}

#[test]
fn dyn_callback_works() {
    let mut decoder = Decoder::new(
        Role::Client,
        DecoderLimits {
            message_bytes_max: LIMIT,
        },
    );
    let mut seen = 0;
    let mut callback = |_: Event<'_>| {
        seen += 1;
        ControlFlow::Continue(())
    };
    let on_event: &mut dyn FnMut(Event<'_>) -> ControlFlow<()> = &mut callback;
    let mut wire = [0x89, 0x00, 0x8A, 0x00];
    assert_eq!(decoder.feed(&mut wire, on_event), Ok(Feed::Drained));
    assert_eq!(seen, 2);
}

#[test]
fn zero_copy_for_complete_frames() {
    let mut wire = frame(Role::Server, true, OpCode::Binary, b"payload");
    let range = wire.as_ptr_range();
    let mut decoder = Decoder::new(
        Role::Server,
        DecoderLimits {
            message_bytes_max: LIMIT,
        },
    );
    let mut inside = false;
    let result = decoder.feed(&mut wire, |event| {
        if let Event::Binary(p) = event {
            inside = range.contains(&p.as_ptr());
        }
        ControlFlow::Continue(())
    });
    assert_eq!(result, Ok(Feed::Drained));
    assert!(inside);
    assert_eq!(decoder.buffered_bytes(), 0);
}

#[test]
fn large_buffer_released_after_message() {
    let wire = frame(Role::Server, true, OpCode::Binary, &[9; 10_000]);
    let mut decoder = Decoder::new(
        Role::Server,
        DecoderLimits {
            message_bytes_max: LIMIT,
        },
    );
    let (head, tail) = wire.split_at(5000);
    let mut head = head.to_vec();
    assert_eq!(
        decoder.feed(&mut head, |_| ControlFlow::Continue(())),
        Ok(Feed::Drained)
    );
    assert!(decoder.buffered_bytes() >= 4990);
    let mut tail = tail.to_vec();
    assert_eq!(
        decoder.feed(&mut tail, |_| ControlFlow::Continue(())),
        Ok(Feed::Drained)
    );
    assert_eq!(decoder.buffered_bytes(), 0);
}

#[test]
fn exhaustive_two_and_three_way_splits() {
    let mut wire = frame(Role::Server, false, OpCode::Text, "κό".as_bytes());
    wire.extend(frame(Role::Server, true, OpCode::Ping, b"pi"));
    wire.extend(frame(
        Role::Server,
        true,
        OpCode::Continuation,
        "σμε".as_bytes(),
    ));
    wire.extend(frame(Role::Server, true, OpCode::Binary, &[1, 2, 3]));
    wire.extend(frame(
        Role::Server,
        true,
        OpCode::Close,
        &[0x03, 0xE8, b'x'],
    ));
    let whole = decode(Role::Server, &wire);
    assert_eq!(whole.1, None);
    assert_eq!(whole.0.len(), 4);
    for a in 0..=wire.len() {
        for b in a..=wire.len() {
            let pieces = [&wire[..a], &wire[a..b], &wire[b..]];
            assert_eq!(
                decode_pieces(Role::Server, LIMIT, &pieces),
                whole,
                "split {a}/{b}"
            );
        }
    }
}

/// One frame of a generated valid stream.
#[derive(Debug, Clone)]
struct GenFrame {
    fin: bool,
    opcode: OpCode,
    payload: Vec<u8>,
}

/// One data fragment's text and the control frames (kind, payload) sent after it.
type Fragment = (String, Vec<(u8, Vec<u8>)>);

/// A valid message: data fragments with control frames interleaved.
fn message_strategy() -> impl Strategy<Value = (Vec<GenFrame>, Vec<Owned>)> {
    let control = (0..3u8, proptest::collection::vec(any::<u8>(), 0..20));
    let fragment = (".{0,12}", proptest::collection::vec(control, 0..2));
    (any::<bool>(), proptest::collection::vec(fragment, 1..4))
        .prop_map(|(is_text, fragments)| build_message(is_text, fragments))
}

fn build_message(is_text: bool, fragments: Vec<Fragment>) -> (Vec<GenFrame>, Vec<Owned>) {
    let (mut frames, mut events, mut whole) = (Vec::new(), Vec::new(), Vec::new());
    let count = fragments.len();
    for (i, (chunk, controls)) in fragments.into_iter().enumerate() {
        let opcode = match (i, is_text) {
            (0, true) => OpCode::Text,
            (0, false) => OpCode::Binary,
            _ => OpCode::Continuation,
        };
        whole.extend_from_slice(chunk.as_bytes());
        frames.push(GenFrame {
            fin: i + 1 == count,
            opcode,
            payload: chunk.into_bytes(),
        });
        for (which, payload) in controls.into_iter().filter(|_| i + 1 < count) {
            let (opcode, event) = match which {
                0 => (OpCode::Ping, Owned::Ping(payload.clone())),
                _ => (OpCode::Pong, Owned::Pong(payload.clone())),
            };
            frames.push(GenFrame {
                fin: true,
                opcode,
                payload,
            });
            events.push(event);
        }
    }
    events.push(if is_text {
        Owned::Text(whole)
    } else {
        Owned::Binary(whole)
    });
    (frames, events)
}

fn encode_stream(
    role: Role,
    messages: &[(Vec<GenFrame>, Vec<Owned>)],
    keys: &[[u8; 4]],
) -> Vec<u8> {
    let mut wire = Vec::new();
    let frames = messages.iter().flat_map(|(frames, _)| frames);
    for (i, f) in frames.enumerate() {
        match role {
            Role::Server => {
                encode_client_frame(&mut wire, f.fin, f.opcode, &f.payload, keys[i % keys.len()])
            }
            Role::Client => encode_server_frame(&mut wire, f.fin, f.opcode, &f.payload),
        }
    }
    wire
}

fn split_at_cuts<'w>(wire: &'w [u8], cuts: &[prop::sample::Index]) -> Vec<&'w [u8]> {
    let mut positions: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
    positions.sort_unstable();
    let mut pieces = Vec::new();
    let mut start = 0;
    for end in positions.into_iter().chain([wire.len()]) {
        pieces.push(&wire[start..end]);
        start = end;
    }
    pieces
}

proptest! {
    #[test]
    fn round_trip_whole_and_split(
        messages in proptest::collection::vec(message_strategy(), 1..6),
        keys in proptest::collection::vec(any::<[u8; 4]>(), 1..4),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        server in any::<bool>(),
    ) {
        let role = if server { Role::Server } else { Role::Client };
        let wire = encode_stream(role, &messages, &keys);
        let expected: Vec<Owned> = messages.iter().flat_map(|(_, events)| events.clone()).collect();
        prop_assert_eq!(decode(role, &wire), (expected.clone(), None));
        let pieces = split_at_cuts(&wire, &cuts);
        prop_assert_eq!(decode_pieces(role, LIMIT, &pieces), (expected, None));
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
        server in any::<bool>(),
        limit in 0usize..64,
    ) {
        let role = if server { Role::Server } else { Role::Client };
        let whole = decode_pieces(role, limit, &[&bytes]);
        let pieces = split_at_cuts(&bytes, &cuts);
        let split = decode_pieces(role, limit, &pieces);
        // Splitting never changes the outcome, valid or not.
        prop_assert_eq!(split, whole);
    }
}

/// Feeds `bytes` to a server decoder with permessage-deflate negotiated, in pieces of `piece`.
fn decode_compressed(bytes: &[u8], piece: usize) -> (Vec<Owned>, Option<ProtocolError>) {
    let mut decoder = Decoder::new(
        Role::Server,
        DecoderLimits {
            message_bytes_max: LIMIT,
        },
    );
    decoder.allow_compressed();
    let mut events = Vec::new();
    for chunk in bytes.chunks(piece) {
        let mut chunk = chunk.to_vec();
        if let Err(e) = decoder.feed(&mut chunk, |event| {
            events.push(own(event));
            ControlFlow::Continue(())
        }) {
            return (events, Some(e));
        }
    }
    (events, None)
}

/// `frame` with the RSV1 bit set.
fn rsv1(mut frame: Vec<u8>) -> Vec<u8> {
    frame[0] |= 0x40;
    frame
}

#[test]
fn rfc_7692_rsv1_marks_a_compressed_message() {
    // §7.2.3.1 "Hello" compressed; the bytes are not UTF-8 and are not checked here.
    let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    let whole = rsv1(frame(Role::Server, true, OpCode::Text, &hello));
    for piece in [1, 3, whole.len()] {
        assert_eq!(
            decode_compressed(&whole, piece),
            (vec![Owned::CompressedText(hello.to_vec())], None)
        );
    }
    // §7.2.3.2: fragmented, RSV1 on the first frame only, a ping in between.
    let mut bytes = rsv1(frame(Role::Server, false, OpCode::Binary, &hello[..3]));
    bytes.extend(frame(Role::Server, true, OpCode::Ping, b"p"));
    bytes.extend(frame(Role::Server, true, OpCode::Continuation, &hello[3..]));
    bytes.extend(frame(Role::Server, true, OpCode::Text, b"plain"));
    assert_eq!(
        decode_compressed(&bytes, bytes.len()),
        (
            vec![
                Owned::Ping(b"p".to_vec()),
                Owned::CompressedBinary(hello.to_vec()),
                text("plain")
            ],
            None
        )
    );
}

#[test]
fn rfc_7692_rsv1_where_not_allowed_is_a_protocol_error() {
    let bad = [
        // On a continuation frame (§6.1).
        [
            frame(Role::Server, false, OpCode::Text, b"a"),
            rsv1(frame(Role::Server, true, OpCode::Continuation, b"b")),
        ]
        .concat(),
        // On a control frame (§6: control frames are never compressed).
        rsv1(frame(Role::Server, true, OpCode::Ping, b"p")),
        rsv1(frame(Role::Server, true, OpCode::Close, &[0x03, 0xe8])),
        // RSV2 / RSV3 are not defined by permessage-deflate.
        {
            let mut f = frame(Role::Server, true, OpCode::Text, b"a");
            f[0] |= 0x20;
            f
        },
    ];
    for bytes in bad {
        assert_eq!(
            decode_compressed(&bytes, bytes.len()).1,
            Some(ProtocolError::ReservedBitsSet)
        );
        assert_eq!(ProtocolError::ReservedBitsSet.close_code(), 1002);
    }
    // Without the negotiation, RSV1 stays an error.
    let f = rsv1(frame(Role::Server, true, OpCode::Text, b"a"));
    assert_eq!(
        decode(Role::Server, &f).1,
        Some(ProtocolError::ReservedBitsSet)
    );
}
