//! `read_frame` with exact bytes: one frame per step, in order, zero-copy where the frame is
//! whole, control frames answered by the session.

use super::super::tests::{timeouts, written};
use super::super::Session;
use super::*;
use crate::session::tests::upgraded;

const MS: u64 = 1_000_000;
const KEY: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

fn open_session() -> Session {
    upgraded(1 << 16, 1 << 12)
}

/// A masked client frame (payload under 126 bytes). `b0`: FIN, RSV and opcode bits.
fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![b0, 0x80 | payload.len() as u8];
    out.extend_from_slice(&KEY);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
    out
}

#[test]
fn a_whole_frame_is_returned_in_place_then_the_ping_after_it_is_answered() {
    let (t, mut s, mut assembled) = (timeouts(), open_session(), Vec::new());
    written(&mut s);
    let mut input = client_frame(0x81, b"hello");
    input.extend(client_frame(0x89, b"p1"));
    let first_len = 2 + 4 + 5;

    let step = s.read_frame(1, &mut input, &mut assembled, &t);
    let message = Received::Message {
        opcode: OpCode::Text,
        compressed: false,
        span: Span::Input(6..11),
    };
    assert_eq!(
        step,
        ReadStep::Frame {
            consumed: first_len,
            received: message
        }
    );
    assert_eq!(&input[6..11], b"hello", "unmasked in place");
    assert!(
        written(&mut s).is_empty(),
        "the message is the loop's to answer"
    );

    let step = s.read_frame(2, &mut input[first_len..], &mut assembled, &t);
    let ping = Received::Ping(PongQueued::Queued);
    assert_eq!(
        step,
        ReadStep::Frame {
            consumed: 2 + 4 + 2,
            received: ping
        }
    );
    assert_eq!(
        written(&mut s),
        [0x8a, 0x02, b'p', b'1'],
        "one pong, same payload"
    );
    assert_eq!(
        s.read_frame(3, &mut [], &mut assembled, &t),
        ReadStep::Drained
    );
}

#[test]
fn a_fragmented_message_is_returned_whole_from_the_assembled_buffer() {
    let (t, mut s, mut assembled) = (timeouts(), open_session(), Vec::new());
    let mut input = client_frame(0x02, b"ab"); // binary, not FIN
    input.extend(client_frame(0x89, b"")); // a ping between the fragments
    input.extend(client_frame(0x80, b"cd")); // continuation, FIN
    let (ping_end, end) = (8 + 6, input.len());

    let step = s.read_frame(1, &mut input, &mut assembled, &t);
    let ping = Received::Ping(PongQueued::Queued);
    assert_eq!(
        step,
        ReadStep::Frame {
            consumed: ping_end,
            received: ping
        }
    );
    let step = s.read_frame(1, &mut input[ping_end..end], &mut assembled, &t);
    let message = Received::Message {
        opcode: OpCode::Binary,
        compressed: false,
        span: Span::Assembled,
    };
    assert_eq!(
        step,
        ReadStep::Frame {
            consumed: end - ping_end,
            received: message
        }
    );
    assert_eq!(assembled, b"abcd");
}

#[test]
fn a_bad_frame_after_a_good_one_is_reported_after_it_and_fails_nothing_by_itself() {
    let (t, mut s, mut assembled) = (timeouts(), open_session(), Vec::new());
    written(&mut s);
    let mut input = client_frame(0x81, b"ok");
    input.extend(client_frame(0xC1, b"x")); // RSV1 without permessage-deflate
    let step = s.read_frame(1, &mut input, &mut assembled, &t);
    assert!(
        matches!(step, ReadStep::Frame { consumed: 8, .. }),
        "{step:?}"
    );
    let step = s.read_frame(1, &mut input[8..], &mut assembled, &t);
    assert_eq!(step, ReadStep::Failed(ProtocolError::ReservedBitsSet));
    assert!(
        s.is_open(),
        "the loop fails it once the message before is acted on"
    );
    assert!(written(&mut s).is_empty());
}

#[test]
fn the_peers_close_is_answered_and_data_after_our_close_is_ignored() {
    let (t, mut s, mut assembled) = (timeouts(), open_session(), Vec::new());
    written(&mut s);
    let mut close = client_frame(0x88, &[0x03, 0xe8]);
    let step = s.read_frame(5, &mut close, &mut assembled, &t);
    let ReadStep::Frame {
        consumed: 8,
        received:
            Received::Close {
                code: Some(1000),
                started: Some(started),
            },
    } = step
    else {
        panic!("{step:?}");
    };
    assert_eq!(started.code, Some(1000));
    assert_eq!(written(&mut s), [0x88, 0x02, 0x03, 0xe8], "the code echoed");

    let mut late = client_frame(0x81, b"late");
    let step = s.read_frame(6, &mut late, &mut assembled, &t);
    let ignored = ReadStep::Frame {
        consumed: 10,
        received: Received::Ignored,
    };
    assert_eq!(step, ignored, "§5.5.1: no data after the close");
}

#[test]
fn a_pong_reports_the_round_trip_of_our_ping() {
    let (t, mut s, mut assembled) = (timeouts(), open_session(), Vec::new());
    let at = 30_000 * MS;
    assert!(matches!(
        s.handle_timeout(at, &t, (4200, "")),
        super::super::Timeout::PingQueued
    ));
    let mut pong = client_frame(0x8a, b"");
    let step = s.read_frame(at + 7 * MS, &mut pong, &mut assembled, &t);
    let received = Received::Pong {
        rtt_ns: Some(7 * MS),
    };
    assert_eq!(
        step,
        ReadStep::Frame {
            consumed: 6,
            received
        }
    );
    let mut again = client_frame(0x8a, b"");
    let step = s.read_frame(at + 8 * MS, &mut again, &mut assembled, &t);
    let unsolicited = Received::Pong { rtt_ns: None };
    assert_eq!(
        step,
        ReadStep::Frame {
            consumed: 6,
            received: unsolicited
        }
    );
}
