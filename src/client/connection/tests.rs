//! Connection tests against a scripted server built from the relay's own server-side codec.

use super::*;
use crate::client::scripted_server::*;
use crate::proto::deflate::Inflater;
use crate::proto::handshake::{
    encode_http_response, encode_switching_protocols, parse_request_head, validate_upgrade,
};
use crate::proto::ClientHandshakeError;

fn url() -> WsUrl {
    WsUrl::parse("ws://relay.test:9000/ws?x=1").unwrap()
}

fn connection(message_bytes_max: usize, send_bytes_max: usize) -> Connection {
    let limits = ConnectionLimits {
        message_bytes_max,
        send_bytes_max,
        deflate: false,
    };
    Connection::start(&url(), Rng::from_seed(3), limits)
}

/// Takes the queued request, checks it with the relay's own validator, and answers 101.
fn accept(conn: &mut Connection) -> Vec<u8> {
    let request = conn.take_transmit();
    let Ok(Decode::Complete(head, len)) = parse_request_head(&request) else {
        panic!("incomplete request");
    };
    assert_eq!(len, request.len());
    assert_eq!(head.host, Some("relay.test:9000"));
    let upgrade = validate_upgrade(&head).unwrap();
    assert_eq!((upgrade.path, upgrade.query), ("/ws", Some("x=1")));
    let mut out = Vec::new();
    encode_switching_protocols(&mut out, &accept_key(upgrade.key), None, None);
    out
}

/// An owned copy of `Incoming`, to compare.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Open,
    Text(String),
    Binary(Vec<u8>),
    Ping,
    Pong,
    Ended(Disconnect),
}

fn seen(incoming: Incoming<'_>) -> Seen {
    match incoming {
        Incoming::Open => Seen::Open,
        Incoming::Text(t) => Seen::Text(t.to_owned()),
        Incoming::Binary(b) => Seen::Binary(b.to_vec()),
        Incoming::Ping => Seen::Ping,
        Incoming::Pong => Seen::Pong,
        Incoming::Ended(d) => Seen::Ended(d),
    }
}

fn feed(conn: &mut Connection, bytes: &[u8]) -> Vec<Seen> {
    let mut out = Vec::new();
    let mut input = bytes.to_vec();
    let used = conn.handle_bytes(&mut input, |i| {
        out.push(seen(i));
        ControlFlow::Continue(())
    });
    assert_eq!(used, bytes.len());
    out
}

/// What the client sent, decoded by a server-role decoder (which insists on masking, §5.1).
fn sent_by_client(conn: &mut Connection) -> Vec<(OpCode, Vec<u8>)> {
    let mut bytes = conn.take_transmit();
    let limits = DecoderLimits {
        message_bytes_max: 1 << 20,
    };
    let mut decoder = Decoder::new(Role::Server, limits);
    decoder.allow_compressed();
    let mut out = Vec::new();
    let inflate = |p: &[u8]| {
        let mut message = Vec::new();
        Inflater::new()
            .inflate(p, 1 << 20, &mut message)
            .expect("valid DEFLATE");
        message
    };
    decoder
        .feed(&mut bytes, |event| {
            out.push(match event {
                // Marked by an opcode the test never sends otherwise: continuation.
                Event::CompressedText(p) | Event::CompressedBinary(p) => {
                    (OpCode::Continuation, inflate(p))
                }
                Event::Text(p) => (OpCode::Text, p.to_vec()),
                Event::Binary(p) => (OpCode::Binary, p.to_vec()),
                Event::Ping(p) => (OpCode::Ping, p.to_vec()),
                Event::Pong(p) => (OpCode::Pong, p.to_vec()),
                Event::Close(f) => {
                    let mut payload = Vec::new();
                    if let Some(f) = f {
                        encode_close_payload(&mut payload, f.code, f.reason);
                    }
                    (OpCode::Close, payload)
                }
            });
            ControlFlow::Continue(())
        })
        .expect("client frames are valid for a server");
    out
}

#[test]
fn permessage_deflate_is_offered_checked_and_spoken() {
    let limits = ConnectionLimits {
        message_bytes_max: 1 << 16,
        send_bytes_max: 1 << 16,
        deflate: true,
    };
    let mut conn = Connection::start(&url(), Rng::from_seed(3), limits);
    let request = conn.take_transmit();
    let Ok(Decode::Complete(head, _)) = parse_request_head(&request) else {
        panic!("incomplete request");
    };
    assert_eq!(
        head.ws_extensions.as_slice(),
        ["permessage-deflate; client_max_window_bits"]
    );
    let upgrade = validate_upgrade(&head).unwrap();
    let mut answer = Vec::new();
    let agreed = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
    encode_switching_protocols(&mut answer, &accept_key(upgrade.key), None, Some(agreed));
    // A compressed server message (RFC 7692 §7.2.3.1 "Hello") in the same read as the head.
    answer.extend_from_slice(&[0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    assert_eq!(
        feed(&mut conn, &answer),
        [Seen::Open, Seen::Text("Hello".into())]
    );
    // Ours: compressed from 128 bytes on (RSV1), plain below.
    let long = "x".repeat(300);
    conn.send_text(long.as_bytes()).unwrap();
    conn.send_text(b"short").unwrap();
    assert_eq!(
        sent_by_client(&mut conn),
        [
            (OpCode::Continuation, long.into_bytes()),
            (OpCode::Text, b"short".to_vec())
        ]
    );
    // A bad stream fails the connection with 1007.
    let seen = feed(&mut conn, &[0xc1, 0x02, 0xff, 0xff]);
    assert_eq!(
        seen,
        [Seen::Ended(Disconnect::ProtocolViolation(
            ProtocolError::InvalidCompressedData
        ))]
    );
}

#[test]
fn an_extension_answer_that_was_not_offered_or_is_bad_is_refused() {
    for (offer, answer) in [
        (false, "permessage-deflate"),
        (true, "permessage-deflate; mystery"),
        (true, "permessage-deflate, permessage-deflate"),
    ] {
        let limits = ConnectionLimits {
            message_bytes_max: 1024,
            send_bytes_max: 1024,
            deflate: offer,
        };
        let mut conn = Connection::start(&url(), Rng::from_seed(3), limits);
        let request = conn.take_transmit();
        let Ok(Decode::Complete(head, _)) = parse_request_head(&request) else {
            panic!("incomplete request");
        };
        let upgrade = validate_upgrade(&head).unwrap();
        let mut out = Vec::new();
        encode_switching_protocols(&mut out, &accept_key(upgrade.key), None, Some(answer));
        assert_eq!(
            feed(&mut conn, &out),
            [Seen::Ended(Disconnect::HandshakeRejected(
                ClientHandshakeError::UnexpectedExtension
            ))],
            "{answer}"
        );
    }
}

fn open_connection() -> Connection {
    let mut conn = connection(1024, 4096);
    let answer = accept(&mut conn);
    assert_eq!(feed(&mut conn, &answer), [Seen::Open]);
    conn
}

#[test]
fn handshake_request_passes_the_relay_validator_and_opens() {
    let conn = open_connection();
    assert!(conn.is_open());
    assert!(conn.transmit().is_empty());
}

#[test]
fn head_and_first_frame_in_one_read_or_split_byte_by_byte() {
    let mut conn = connection(1024, 4096);
    let mut input = accept(&mut conn);
    input.extend(server_frame(OpCode::Text, b"hi"));
    assert_eq!(
        feed(&mut conn, &input),
        [Seen::Open, Seen::Text("hi".into())]
    );

    let mut conn = connection(1024, 4096);
    let mut input = accept(&mut conn);
    input.extend(server_frame(OpCode::Binary, b"\x00\x01"));
    let all: Vec<Seen> = input.iter().flat_map(|b| feed(&mut conn, &[*b])).collect();
    assert_eq!(all, [Seen::Open, Seen::Binary(vec![0, 1])]);
}

#[test]
fn every_frame_is_masked_with_a_fresh_key() {
    let mut conn = open_connection();
    for _ in 0..3 {
        conn.send_text(b"abc").unwrap();
    }
    let raw = conn.transmit().to_vec();
    let frames: Vec<&[u8]> = raw.chunks(2 + 4 + 3).collect();
    assert_eq!(frames.len(), 3);
    let keys: Vec<&[u8]> = frames.iter().map(|f| &f[2..6]).collect();
    assert!(frames.iter().all(|f| f[0] == 0x81 && f[1] == 0x80 | 3));
    assert!(keys[0] != keys[1] && keys[1] != keys[2] && keys[0] != keys[2]);
    let decoded = sent_by_client(&mut conn);
    assert!(decoded
        .iter()
        .all(|(op, p)| *op == OpCode::Text && p == b"abc"));
}

#[test]
fn ping_is_answered_with_a_pong_carrying_its_payload() {
    let mut conn = open_connection();
    assert_eq!(
        feed(&mut conn, &server_frame(OpCode::Ping, b"p1")),
        [Seen::Ping]
    );
    assert_eq!(sent_by_client(&mut conn), [(OpCode::Pong, b"p1".to_vec())]);
}

#[test]
fn server_close_is_echoed_with_its_code_and_ends_the_connection() {
    let mut conn = open_connection();
    let events = feed(&mut conn, &close_frame(4200, "drain"));
    let ended = Disconnect::ServerClosed {
        code: Some(4200),
        reason: "drain".into(),
    };
    assert_eq!(events, [Seen::Ended(ended)]);
    assert_eq!(
        sent_by_client(&mut conn),
        [(OpCode::Close, vec![0x10, 0x68])]
    );
    assert!(conn.is_closed());
    assert_eq!(feed(&mut conn, &server_frame(OpCode::Text, b"late")), []);
    assert_eq!(conn.send_text(b"x"), Err(SendError::NotOpen));
}

#[test]
fn our_close_completes_when_the_server_answers() {
    let mut conn = open_connection();
    assert!(conn.close(1000));
    assert_eq!(
        sent_by_client(&mut conn),
        [(OpCode::Close, vec![0x03, 0xe8])]
    );
    assert_eq!(conn.send_text(b"x"), Err(SendError::NotOpen));
    let events = feed(&mut conn, &close_frame(1000, ""));
    assert_eq!(
        events,
        [Seen::Ended(Disconnect::ClosedByUser { code: 1000 })]
    );
    assert!(conn.transmit().is_empty(), "a close is not answered twice");
}

#[test]
fn handshake_rejections_are_reported() {
    let mut conn = connection(1024, 4096);
    conn.take_transmit();
    let bad_accept = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    let rejected = Disconnect::HandshakeRejected(ClientHandshakeError::AcceptMismatch);
    assert_eq!(feed(&mut conn, bad_accept), [Seen::Ended(rejected)]);

    let mut conn = connection(1024, 4096);
    let mut full = Vec::new();
    encode_http_response(
        &mut full,
        503,
        "Service Unavailable",
        "text/plain",
        &[],
        b"full",
    );
    let rejected = Disconnect::HandshakeRejected(ClientHandshakeError::UnexpectedStatus(503));
    assert_eq!(feed(&mut conn, &full), [Seen::Ended(rejected)]);

    let mut conn = connection(1024, 4096);
    let endless = vec![b'a'; 3 * RESPONSE_HEAD_BYTES_MAX];
    let events: Vec<Seen> = endless
        .chunks(1000)
        .flat_map(|c| feed(&mut conn, c))
        .collect();
    let rejected = Disconnect::HandshakeRejected(ClientHandshakeError::Malformed);
    assert_eq!(events, [Seen::Ended(rejected)]);
}

#[test]
fn oversized_head_is_refused_at_the_limit() {
    let mut conn = connection(1024, 4096);
    let mut head = b"HTTP/1.1 101 OK\r\n".to_vec();
    head.extend_from_slice(b"X-Pad: ");
    head.resize(RESPONSE_HEAD_BYTES_MAX + 100, b'a');
    let events: Vec<Seen> = head.chunks(700).flat_map(|c| feed(&mut conn, c)).collect();
    let rejected = Disconnect::HandshakeRejected(ClientHandshakeError::HeadTooLarge);
    assert_eq!(events, [Seen::Ended(rejected)]);
}

#[test]
fn oversized_message_fails_with_1009() {
    let mut conn = open_connection();
    let events = feed(&mut conn, &server_frame(OpCode::Text, &[b'a'; 1025]));
    let violation = Disconnect::ProtocolViolation(ProtocolError::MessageTooBig);
    assert_eq!(events, [Seen::Ended(violation)]);
    assert_eq!(
        sent_by_client(&mut conn),
        [(OpCode::Close, vec![0x03, 0xf1])]
    );
}

#[test]
fn masked_server_frame_is_a_protocol_violation() {
    let mut conn = open_connection();
    let mut frame = Vec::new();
    encode_client_frame(&mut frame, true, OpCode::Text, b"x", [1, 2, 3, 4]);
    let violation = Disconnect::ProtocolViolation(ProtocolError::MaskedServerFrame);
    assert_eq!(feed(&mut conn, &frame), [Seen::Ended(violation)]);
}

#[test]
fn break_leaves_the_rest_for_the_next_call() {
    let mut conn = open_connection();
    let mut input = server_frame(OpCode::Text, b"one");
    let first_len = input.len();
    input.extend(server_frame(OpCode::Text, b"two"));
    let mut first = Vec::new();
    let used = conn.handle_bytes(&mut input, |i| {
        first.push(seen(i));
        ControlFlow::Break(())
    });
    assert_eq!((used, first), (first_len, vec![Seen::Text("one".into())]));
    assert_eq!(feed(&mut conn, &input[used..]), [Seen::Text("two".into())]);
}

#[test]
fn send_buffer_is_bounded_and_frees_as_it_drains() {
    let mut conn = connection(1024, 4096);
    let answer = accept(&mut conn);
    feed(&mut conn, &answer);
    conn.send_binary(&[0; 3000]).unwrap();
    assert_eq!(conn.send_binary(&[0; 2000]), Err(SendError::BufferFull));
    let pending = conn.transmit().len();
    conn.advance_transmit(pending);
    assert_eq!(conn.send_binary(&[0; 2000]), Ok(()));
}
