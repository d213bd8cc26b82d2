//! The command gate: what passes before authentication, and what a grant allows; messages
//! read as requests, and the exact bytes of each refusal.

use bytes::Bytes;

use super::*;
use crate::auth::{ChannelPattern, Grant, Permissions};
use crate::session::tests::written;
use crate::session::{Endpoint, SessionLimits, Timeouts};

fn session() -> Session {
    let limits = SessionLimits {
        message_bytes_max: 1 << 16,
        outbox_bytes_max: 1 << 16,
        control_bytes_max: 1 << 12,
    };
    let t = Timeouts {
        handshake_ns: 1,
        heartbeat_interval_ns: 0,
        heartbeat_timeout_ns: 0,
        idle_ns: 0,
        close_ns: 1,
    };
    let mut s = Session::new(0, Endpoint::Relay, limits, &t);
    s.upgrade(Endpoint::Relay, Bytes::from_static(b"HTTP/1.1 101\r\n\r\n"));
    s
}

fn permissions(patterns: &[&str]) -> Permissions {
    let parse = |p: &&str| match ChannelPattern::parse(p) {
        Ok(p) => p,
        Err(e) => panic!("{p}: {e:?}"),
    };
    Permissions::from_patterns(patterns.iter().map(parse).collect())
}

fn subscribe(channel: &str) -> Request<'_> {
    Request::Subscribe {
        channel,
        since: None,
        epoch: None,
        options: SubscribeOptions::default(),
    }
}

fn publish<'a>(channel: &'a str, ack: Option<&'a [u8]>) -> Request<'a> {
    Request::Publish {
        channel,
        message: Published::Json {
            content: b"1",
            delete: false,
        },
        key: None,
        ack,
    }
}

#[test]
fn without_auth_configured_everything_passes() {
    let s = session();
    assert_eq!(s.authorize(&subscribe("any.channel")), Ok(()));
    assert_eq!(s.authorize(&publish("any.channel", None)), Ok(()));
    assert!(
        s.name().is_none(),
        "no name until it publishes or a token names it"
    );
}

#[test]
fn while_auth_is_pending_only_auth_and_ping_pass() {
    let mut s = session();
    s.await_auth(5_000);
    assert_eq!(s.auth_deadline_ns(), 5_000);
    assert_eq!(s.authorize(&Request::Ping), Ok(()));
    assert_eq!(s.authorize(&Request::Auth { token: "t" }), Ok(()));
    let refused = Err(Refusal::Unauthenticated);
    assert_eq!(s.authorize(&subscribe("a")), refused);
    assert_eq!(s.authorize(&Request::Unsubscribe { channel: "a" }), refused);
    assert_eq!(s.authorize(&Request::Presence { channel: "a" }), refused);
    assert_eq!(s.authorize(&publish("a", Some(b"7"))), refused);
}

#[test]
fn a_grant_names_the_connection_sets_its_expiry_and_decides_per_channel() {
    let mut s = session();
    s.await_auth(5_000);
    let grant = Grant {
        sub: "alice".into(),
        subscribe: permissions(&["md.*"]),
        publish: permissions(&["room.7"]),
        expires_at_unix_s: None,
    };
    s.grant(grant, 9_000);
    assert_eq!(s.name().map(|n| &**n), Some("alice"));
    assert_eq!(s.auth_deadline_ns(), 9_000, "closed when the token expires");
    assert_eq!(s.authorize(&subscribe("md.eurusd")), Ok(()));
    assert_eq!(
        s.authorize(&subscribe("room.7")),
        Err(Refusal::SubscribeForbidden("room.7"))
    );
    assert_eq!(
        s.authorize(&Request::Presence { channel: "room.7" }),
        Err(Refusal::SubscribeForbidden("room.7"))
    );
    assert_eq!(s.authorize(&publish("room.7", None)), Ok(()));
    assert_eq!(
        s.authorize(&publish("md.eurusd", Some(b"42"))),
        Err(Refusal::PublishForbidden("md.eurusd", Some(&b"42"[..]))),
        "the publish's id comes back with the refusal"
    );
    assert_eq!(s.authorize(&Request::Unsubscribe { channel: "x" }), Ok(()));
}

#[test]
fn binary_and_json_publishes_become_the_same_request() {
    let binary = crate::command::BinaryPublish {
        channel: "c",
        payload: b"\x01\x02",
        id: Some(b"9"),
    };
    assert_eq!(
        Request::from(binary),
        Request::Publish {
            channel: "c",
            message: Published::Binary(b"\x01\x02"),
            key: None,
            ack: Some(b"9"),
        }
    );
}

/// A text frame as the server sends it (payloads under 126 bytes).
fn text_frame(body: &str) -> Vec<u8> {
    assert!(body.len() < 126);
    let mut frame = vec![0x81, body.len() as u8];
    frame.extend_from_slice(body.as_bytes());
    frame
}

fn read<'a>(
    s: &mut Session,
    opcode: OpCode,
    message: &'a [u8],
    decoder: &'a mut CommandDecoder,
) -> Result<Request<'a>, Refused> {
    s.read_request(opcode, message, decoder, 128)
}

#[test]
fn a_json_command_and_a_binary_publish_are_read_as_requests_with_nothing_written() {
    let mut s = session();
    written(&mut s);
    let mut decoder = CommandDecoder::new();
    let text = br#"{"type":"subscribe","channel":"md.eurusd","since":4,"epoch":"e1"}"#;
    assert_eq!(
        read(&mut s, OpCode::Text, text, &mut decoder),
        Ok(Request::Subscribe {
            channel: "md.eurusd",
            since: Some(4),
            epoch: Some("e1"),
            options: SubscribeOptions::default(),
        })
    );
    let binary = b"\x04\x01c\x02idxyz";
    assert_eq!(
        read(&mut s, OpCode::Binary, binary, &mut decoder),
        Ok(Request::Publish {
            channel: "c",
            message: Published::Binary(b"xyz"),
            key: None,
            ack: Some(b"id"),
        })
    );
    assert!(written(&mut s).is_empty());
}

#[test]
fn a_message_that_is_not_a_command_is_answered_with_its_error_and_counted_by_kind() {
    let mut s = session();
    written(&mut s);
    let mut decoder = CommandDecoder::new();
    let refused = read(&mut s, OpCode::Text, b"{nope", &mut decoder);
    assert_eq!(
        refused,
        Err(Refused {
            kind: "invalid_json",
            warning: "Invalid JSON",
            status: SendStatus::Queued,
        })
    );
    assert_eq!(
        written(&mut s),
        text_frame(r#"{"type":"error","message":"Invalid JSON"}"#)
    );
    let refused = read(&mut s, OpCode::Binary, b"\x09", &mut decoder);
    assert_eq!(refused.map_err(|r| r.kind), Err("unknown_binary_op"));
    assert_eq!(
        written(&mut s),
        text_frame(r#"{"type":"error","message":"Unknown binary op"}"#),
        "errors are JSON text, also for binary messages"
    );
}

#[test]
fn the_gate_refuses_before_auth_with_the_exact_error() {
    let mut s = session();
    written(&mut s);
    s.await_auth(5_000);
    let mut decoder = CommandDecoder::new();
    let sub = br#"{"type":"subscribe","channel":"a"}"#;
    assert_eq!(
        read(&mut s, OpCode::Text, sub, &mut decoder),
        Err(Refused {
            kind: "unauthenticated",
            warning: "command before auth",
            status: SendStatus::Queued,
        })
    );
    assert_eq!(
        written(&mut s),
        text_frame(
            r#"{"type":"error","message":"Unauthorized: send {\"type\":\"auth\",\"token\":...} first"}"#
        )
    );
    let ping = br#"{"type":"ping"}"#;
    assert_eq!(
        read(&mut s, OpCode::Text, ping, &mut decoder),
        Ok(Request::Ping)
    );
}

#[test]
fn a_forbidden_channel_is_answered_with_the_publish_id_when_it_is_text() {
    let mut s = session();
    written(&mut s);
    let grant = Grant {
        sub: "alice".into(),
        subscribe: permissions(&["md.*"]),
        publish: permissions(&["room.7"]),
        expires_at_unix_s: None,
    };
    s.grant(grant, 0);
    let mut decoder = CommandDecoder::new();
    let forbidden = Refused {
        kind: "forbidden",
        warning: "channel not permitted by the token",
        status: SendStatus::Queued,
    };
    let sub = br#"{"type":"subscribe","channel":"room.7"}"#;
    assert_eq!(
        read(&mut s, OpCode::Text, sub, &mut decoder),
        Err(forbidden)
    );
    assert_eq!(
        written(&mut s),
        text_frame(r#"{"type":"error","message":"forbidden: room.7"}"#)
    );
    let publish = br#"{"type":"message","channel":"md.x","content":1,"id":"42"}"#;
    assert_eq!(
        read(&mut s, OpCode::Text, publish, &mut decoder),
        Err(forbidden)
    );
    assert_eq!(
        written(&mut s),
        text_frame(r#"{"type":"error","message":"forbidden: md.x","id":"42"}"#)
    );
    // A binary id that is not UTF-8 cannot go into the JSON error.
    let binary = b"\x04\x04md.x\x01\xffpayload";
    assert_eq!(
        read(&mut s, OpCode::Binary, binary, &mut decoder),
        Err(forbidden)
    );
    assert_eq!(
        written(&mut s),
        text_frame(r#"{"type":"error","message":"forbidden: md.x"}"#)
    );
}

#[test]
fn a_refusal_the_control_budget_cannot_hold_is_full_for_the_loop_to_close() {
    let limits = SessionLimits {
        message_bytes_max: 1 << 16,
        outbox_bytes_max: 1 << 16,
        control_bytes_max: 48,
    };
    let t = crate::session::tests::timeouts();
    let mut s = Session::new(0, Endpoint::Relay, limits, &t);
    s.upgrade(Endpoint::Relay, Bytes::from_static(b"HTTP/1.1 101\r\n\r\n"));
    let mut decoder = CommandDecoder::new();
    let status = |r: Result<Request<'_>, Refused>| r.err().map(|r| r.status);
    // 2 + 41 bytes: fits once, not twice.
    let first = read(&mut s, OpCode::Text, b"[", &mut decoder);
    assert_eq!(status(first), Some(SendStatus::Queued));
    let second = read(&mut s, OpCode::Text, b"[", &mut decoder);
    assert_eq!(status(second), Some(SendStatus::Full));
}
