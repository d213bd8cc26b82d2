//! Every reply's exact bytes, and its lane.

use bytes::Bytes;

use super::*;
use crate::session::tests::upgraded;
use crate::session::tests::{timeouts, written};

fn open(control_bytes_max: usize) -> Session {
    let mut s = upgraded(1 << 16, control_bytes_max);
    written(&mut s);
    s
}

/// The frame a reply becomes on the wire.
fn bytes_of(reply: Reply<'_>) -> Vec<u8> {
    let mut s = open(1 << 12);
    assert_eq!(s.reply(reply), SendStatus::Queued);
    written(&mut s)
}

fn text(body: &str) -> Vec<u8> {
    assert!(body.len() < 126);
    let mut frame = vec![0x81, body.len() as u8];
    frame.extend_from_slice(body.as_bytes());
    frame
}

/// Every reply but errors and binary acks, with its JSON text.
const PROTOCOL_REPLIES: [(Reply<'static>, &str); 9] = [
    (
        Reply::Connected {
            id: "0-1-7",
            addr: "10.0.0.1",
        },
        r#"{"type":"connected","id":"0-1-7","addr":"10.0.0.1"}"#,
    ),
    (
        Reply::Subscribed {
            channel: "md.x",
            seq: 12,
            epoch: "e.1",
            recovered: Some(true),
            throttle_ms: None,
        },
        r#"{"type":"subscribed","channel":"md.x","seq":12,"epoch":"e.1","recovered":true}"#,
    ),
    (
        Reply::Subscribed {
            channel: "md.x",
            seq: 0,
            epoch: "e",
            recovered: None,
            throttle_ms: Some(100),
        },
        r#"{"type":"subscribed","channel":"md.x","seq":0,"epoch":"e","throttle_ms":100}"#,
    ),
    (
        Reply::EpochReset {
            channel: "c",
            seq: 9,
            epoch: "e2",
        },
        r#"{"type":"subscribed","channel":"c","seq":9,"epoch":"e2","recovered":false}"#,
    ),
    (
        Reply::Unsubscribed { channel: "c" },
        r#"{"type":"unsubscribed","channel":"c"}"#,
    ),
    (Reply::Pong, r#"{"type":"pong"}"#),
    (
        Reply::Ack {
            channel: "c",
            id: b"a1",
            seq: Some(5),
            binary: false,
        },
        r#"{"type":"ack","id":"a1","channel":"c","seq":5}"#,
    ),
    (
        Reply::Ack {
            channel: "c",
            id: b"a1",
            seq: None,
            binary: false,
        },
        r#"{"type":"ack","id":"a1","channel":"c","seq":null}"#,
    ),
    (
        Reply::Authenticated { sub: "alice" },
        r#"{"type":"authenticated","sub":"alice"}"#,
    ),
];

#[test]
fn protocol_replies_have_their_exact_bytes() {
    for (reply, body) in PROTOCOL_REPLIES {
        assert_eq!(bytes_of(reply), text(body), "{reply:?}");
    }
}

#[test]
fn a_binary_publish_is_acknowledged_in_binary() {
    let ack = Reply::Ack {
        channel: "c",
        id: b"\xff\x01",
        seq: Some(258),
        binary: true,
    };
    let mut expected = vec![0x82, 14, 0x04, 1, b'c', 2, 0xff, 0x01];
    expected.extend_from_slice(&258u64.to_be_bytes());
    assert_eq!(bytes_of(ack), expected);
    let not_numbered = Reply::Ack {
        channel: "c",
        id: b"i",
        seq: None,
        binary: true,
    };
    let mut expected = vec![0x82, 13, 0x04, 1, b'c', 1, b'i'];
    expected.extend_from_slice(&[0; 8]);
    assert_eq!(bytes_of(not_numbered), expected, "seq 0: not numbered");
}

/// Every error reply but `Unsequenced` (longer than a one-byte length), with its JSON text.
const ERRORS: [(Reply<'static>, &str); 13] = [
    (
        Reply::Invalid(CommandError::UnknownType),
        r#"{"type":"error","message":"Unknown type"}"#,
    ),
    (
        Reply::Unauthenticated,
        r#"{"type":"error","message":"Unauthorized: send {\"type\":\"auth\",\"token\":...} first"}"#,
    ),
    (
        Reply::Forbidden {
            channel: "room.7",
            ack: None,
        },
        r#"{"type":"error","message":"forbidden: room.7"}"#,
    ),
    (
        Reply::Forbidden {
            channel: "room.7",
            ack: Some(b"p1"),
        },
        r#"{"type":"error","message":"forbidden: room.7","id":"p1"}"#,
    ),
    (
        Reply::Forbidden {
            channel: "room.7",
            ack: Some(b"\xff"),
        },
        r#"{"type":"error","message":"forbidden: room.7"}"#,
    ),
    (
        Reply::Busy,
        r#"{"type":"error","message":"Relay busy: too many subscriptions in progress, retry"}"#,
    ),
    (
        Reply::TooManySubscriptions,
        r#"{"type":"error","message":"Too many subscriptions on this connection"}"#,
    ),
    (
        Reply::PresenceOff { channel: "c" },
        r#"{"type":"error","message":"Presence is not enabled on channel: c"}"#,
    ),
    (
        Reply::AuthNotConfigured,
        r#"{"type":"error","message":"Authentication is not configured on this server"}"#,
    ),
    (
        Reply::AlreadyAuthenticated,
        r#"{"type":"error","message":"Already authenticated"}"#,
    ),
    (
        Reply::RateLimited,
        r#"{"type":"error","message":"Rate limited: slow down"}"#,
    ),
    (
        Reply::Unavailable {
            reason: "the relay is overloaded",
            ack: Some(b"x"),
        },
        r#"{"type":"error","code":"unavailable","message":"unavailable: the relay is overloaded; retry","id":"x"}"#,
    ),
    (
        Reply::Unavailable {
            reason: "r",
            ack: None,
        },
        r#"{"type":"error","code":"unavailable","message":"unavailable: r; retry"}"#,
    ),
];

#[test]
fn errors_have_their_exact_bytes() {
    for (reply, body) in ERRORS {
        assert_eq!(bytes_of(reply), text(body), "{reply:?}");
    }
}

#[test]
fn an_unsequenced_publish_is_told_with_its_id_when_it_is_text() {
    let msg = "unavailable: the relay is overloaded, the message was not sequenced; retry";
    let mut with_id = format!(r#"{{"type":"error","message":"{msg}","id":"7"}}"#).into_bytes();
    with_id.splice(0..0, [0x81, with_id.len() as u8]);
    assert_eq!(bytes_of(Reply::Unsequenced { id: b"7" }), with_id);
    let mut without = format!(r#"{{"type":"error","message":"{msg}"}}"#).into_bytes();
    without.splice(0..0, [0x81, without.len() as u8]);
    assert_eq!(bytes_of(Reply::Unsequenced { id: b"\xfe" }), without);
}

#[test]
fn replies_overtake_deliveries_but_unsubscribed_and_an_epoch_reset_keep_their_place() {
    let mut s = open(1 << 12);
    let delivery = Bytes::from_static(b"\x81\x01D");
    assert_eq!(s.handle_delivery(delivery, 0), SendStatus::Queued);
    assert_eq!(
        s.reply(Reply::Unsubscribed { channel: "c" }),
        SendStatus::Queued
    );
    assert_eq!(s.reply(Reply::Pong), SendStatus::Queued);
    let reset = Reply::EpochReset {
        channel: "c",
        seq: 1,
        epoch: "e",
    };
    assert_eq!(s.reply(reset), SendStatus::Queued);
    let mut expected = text(r#"{"type":"pong"}"#);
    expected.extend_from_slice(b"\x81\x01D");
    expected.extend(text(r#"{"type":"unsubscribed","channel":"c"}"#));
    expected.extend(text(
        r#"{"type":"subscribed","channel":"c","seq":1,"epoch":"e","recovered":false}"#,
    ));
    assert_eq!(written(&mut s), expected);
}

#[test]
fn a_reply_beyond_the_control_budget_is_full_and_none_after_the_close() {
    let mut s = open(20);
    assert_eq!(s.reply(Reply::Pong), SendStatus::Queued, "17 bytes");
    assert_eq!(s.reply(Reply::Pong), SendStatus::Full);
    written(&mut s);
    let t = timeouts();
    s.start_close(
        0,
        (Some(1000), ""),
        crate::session::CloseHow::AfterQueued,
        crate::session::PeerClose::Awaited,
        &t,
    );
    assert_eq!(s.reply(Reply::Pong), SendStatus::Closed);
}
