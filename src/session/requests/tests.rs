//! The command gate: what passes before authentication, and what a grant allows.

use bytes::Bytes;

use super::*;
use crate::auth::{ChannelPattern, Grant, Permissions};
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
