//! RFC 6455 §5 framing rules against a live relay's `/echo` endpoint: each violation gets its
//! close code, valid traffic (fragments, control frames, limits) is echoed exactly.

mod common;

use common::{masked_frame, unmasked_frame, Raw};
use wsrelay::{Config, ServerHandle};

const LIMIT: usize = 4096;

fn echo_relay() -> ServerHandle {
    common::start(Config {
        echo_enabled: true,
        message_bytes_max: LIMIT,
        ..Config::loopback_for_tests(1)
    })
}

fn echo_client(server: &ServerHandle) -> Raw {
    Raw::upgraded(server.local_addr(), "/echo")
}

/// Sends `bytes` and asserts the server answers with a close frame carrying `code`, then EOF.
fn assert_closes_with(bytes: &[u8], code: u16, what: &str) {
    let server = echo_relay();
    let mut c = echo_client(&server);
    c.send(bytes);
    assert_eq!(c.read_close_code(), Some(code), "{what}");
    assert!(
        c.reads_eof(),
        "{what}: TCP must close after the close frame"
    );
}

#[test]
fn unmasked_client_frame_closes_1002() {
    assert_closes_with(&unmasked_frame(0x81, b"hi"), 1002, "unmasked");
}

#[test]
fn reserved_bits_close_1002() {
    for rsv in [0x40, 0x20, 0x10] {
        assert_closes_with(&masked_frame(0x81 | rsv, b"hi"), 1002, "rsv");
    }
}

#[test]
fn unknown_opcodes_close_1002() {
    for op in [3u8, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
        assert_closes_with(&masked_frame(0x80 | op, b""), 1002, &format!("opcode {op}"));
    }
}

#[test]
fn fragmented_control_frame_closes_1002() {
    assert_closes_with(&masked_frame(0x09, b"ping"), 1002, "ping without FIN");
}

#[test]
fn control_frame_over_125_bytes_closes_1002() {
    assert_closes_with(&masked_frame(0x89, &[b'a'; 126]), 1002, "126-byte ping");
}

#[test]
fn continuation_without_start_closes_1002() {
    assert_closes_with(&masked_frame(0x80, b"x"), 1002, "lone continuation");
}

#[test]
fn new_data_frame_inside_fragmented_message_closes_1002() {
    let mut bytes = masked_frame(0x01, b"part");
    bytes.extend(masked_frame(0x81, b"new"));
    assert_closes_with(&bytes, 1002, "text inside fragments");
}

#[test]
fn invalid_utf8_closes_1007() {
    assert_closes_with(&masked_frame(0x81, &[0xce, 0xba, 0xff]), 1007, "bad byte");
    assert_closes_with(&masked_frame(0x81, &[0xed, 0xa0, 0x80]), 1007, "surrogate");
}

#[test]
fn invalid_utf8_fails_fast_inside_a_fragmented_message() {
    let server = echo_relay();
    let mut c = echo_client(&server);
    // The first fragment is already invalid; the message never completes.
    c.send(&masked_frame(0x01, &[b'a', 0xc0, 0xaf]));
    assert_eq!(c.read_close_code(), Some(1007));
}

#[test]
fn invalid_utf8_split_across_fragments_closes_1007() {
    let mut bytes = masked_frame(0x01, &[0xf0, 0x90]);
    bytes.extend(masked_frame(0x80, &[0x28]));
    assert_closes_with(&bytes, 1007, "split sequence");
}

#[test]
fn close_payload_rules_close_1002() {
    assert_closes_with(&masked_frame(0x88, &[0x03]), 1002, "1-byte close");
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 2000, 2999, 5000] {
        let p = code.to_be_bytes();
        assert_closes_with(&masked_frame(0x88, &p), 1002, &format!("code {code}"));
    }
    let mut bad_reason = 1000u16.to_be_bytes().to_vec();
    bad_reason.extend_from_slice(&[0xff, 0xfe]);
    assert_closes_with(&masked_frame(0x88, &bad_reason), 1002, "non-UTF-8 reason");
}

#[test]
fn valid_close_is_echoed_and_tcp_closes() {
    for code in [1000u16, 1001, 1003, 1007, 1011, 3000, 4999] {
        let mut p = code.to_be_bytes().to_vec();
        p.extend_from_slice(b"bye");
        assert_closes_with(&masked_frame(0x88, &p), code, &format!("echo {code}"));
    }
}

#[test]
fn empty_close_is_answered_with_an_empty_close() {
    let server = echo_relay();
    let mut c = echo_client(&server);
    c.send(&masked_frame(0x88, b""));
    let f = c.read_frame();
    assert_eq!((f.opcode, f.payload.len()), (8, 0));
    assert!(c.reads_eof());
}

#[test]
fn ping_gets_pong_with_the_same_payload() {
    let server = echo_relay();
    let mut c = echo_client(&server);
    c.send(&masked_frame(0x89, b"are you there"));
    let f = c.read_frame();
    assert_eq!(
        (f.fin, f.opcode, f.payload.as_slice()),
        (true, 0xa, &b"are you there"[..])
    );
}

#[test]
fn text_and_binary_are_echoed_exactly() {
    let server = echo_relay();
    let mut c = echo_client(&server);
    c.send(&masked_frame(0x81, "κόσμε".as_bytes()));
    let f = c.read_frame();
    assert_eq!((f.opcode, f.payload), (1, "κόσμε".as_bytes().to_vec()));
    c.send(&masked_frame(0x82, &[0, 1, 2, 255]));
    let f = c.read_frame();
    assert_eq!((f.opcode, f.payload), (2, vec![0, 1, 2, 255]));
}

#[test]
fn fragmented_message_with_interleaved_ping_is_reassembled() {
    let server = echo_relay();
    let mut c = echo_client(&server);
    let mut bytes = masked_frame(0x01, b"Hel");
    bytes.extend(masked_frame(0x89, b"p"));
    bytes.extend(masked_frame(0x00, b"l"));
    bytes.extend(masked_frame(0x80, b"o"));
    c.send(&bytes);
    let pong = c.read_frame();
    assert_eq!((pong.opcode, pong.payload), (0xa, b"p".to_vec()));
    let msg = c.read_frame();
    assert_eq!(
        (msg.fin, msg.opcode, msg.payload),
        (true, 1, b"Hello".to_vec())
    );
}

#[test]
fn message_at_the_limit_is_echoed_and_one_byte_more_closes_1009() {
    let server = echo_relay();
    let mut c = echo_client(&server);
    c.send(&masked_frame(0x82, &vec![7u8; LIMIT]));
    assert_eq!(c.read_frame().payload.len(), LIMIT);
    assert_closes_with(
        &masked_frame(0x82, &vec![7u8; LIMIT + 1]),
        1009,
        "over limit",
    );
}

#[test]
fn fragmented_message_over_the_limit_closes_1009() {
    let half = vec![b'a'; LIMIT / 2 + 1];
    let mut bytes = masked_frame(0x01, &half);
    bytes.extend(masked_frame(0x80, &half));
    assert_closes_with(&bytes, 1009, "fragments over limit");
}

#[test]
fn frames_split_into_single_bytes_are_decoded() {
    let server = echo_relay();
    let mut c = echo_client(&server);
    for b in masked_frame(0x81, b"slow and steady") {
        c.send(&[b]);
    }
    assert_eq!(c.read_frame().payload, b"slow and steady".to_vec());
}

#[test]
fn a_violation_on_one_connection_leaves_others_working() {
    let server = echo_relay();
    let mut good = echo_client(&server);
    let mut bad = echo_client(&server);
    bad.send(&unmasked_frame(0x81, b"x"));
    assert_eq!(bad.read_close_code(), Some(1002));
    good.send(&masked_frame(0x81, b"still here"));
    assert_eq!(good.read_frame().payload, b"still here".to_vec());
}
