//! Authentication and permissions against a live relay: each auth path and each denial, seen
//! from the client (replies and close codes), with other clients unaffected.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{masked_frame, upgrade_request, Client, Raw};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use wsrelay::auth::{AuthConfig, Verifier};
use wsrelay::Config;

const SECRET: &[u8] = b"test-secret-0123456789abcdef-0123456789";

fn now_s() -> u64 {
    wsrelay::clock::Clock::unix_now_s()
}

fn token(claims: Value, secret: &[u8]) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret).unwrap(),
    )
    .unwrap()
}

fn alice(exp: u64) -> String {
    token(
        json!({"sub": "alice", "exp": exp,
               "channels": {"subscribe": ["md.*", "room.42"], "publish": ["room.42"]}}),
        SECRET,
    )
}

fn auth_config(query_token: bool) -> Config {
    let cfg = AuthConfig {
        hs256_secret: Some(SECRET.to_vec()),
        ..AuthConfig::default()
    };
    let verifier = Verifier::new(&cfg).unwrap().expect("auth on");
    Config {
        auth: Some(Arc::new(verifier)),
        auth_timeout: Duration::from_millis(300),
        auth_query_token: query_token,
        timer_tick: Duration::from_millis(5),
        ..Config::loopback_for_tests(2)
    }
}

/// A raw client past `connected`, for close-code assertions.
fn raw(addr: std::net::SocketAddr) -> Raw {
    let mut r = Raw::upgraded(addr, "/");
    assert_eq!(r.read_json()["type"], "connected");
    r
}

fn send_json(r: &mut Raw, v: Value) {
    r.send(&masked_frame(0x81, v.to_string().as_bytes()));
}

#[test]
fn valid_token_authenticates_and_from_is_the_subject() {
    let server = common::start(auth_config(false));
    let addr = server.local_addr();
    let mut a = Client::connect(addr);
    a.send(json!({"type": "auth", "token": alice(now_s() + 60)}));
    assert_eq!(a.recv(), json!({"type": "authenticated", "sub": "alice"}));
    let mut b = Client::connect(addr);
    b.send(json!({"type": "auth", "token": alice(now_s() + 60)}));
    b.recv();
    b.subscribe("room.42");
    a.publish("room.42", json!("hi"));
    let m = b.recv();
    assert_eq!(
        (m["from"].as_str(), m["content"].as_str()),
        (Some("alice"), Some("hi"))
    );
}

#[test]
fn nothing_but_auth_and_ping_before_authentication() {
    let server = common::start(auth_config(false));
    let mut a = Client::connect(server.local_addr());
    a.ping();
    a.send(json!({"type": "subscribe", "channel": "md.x"}));
    let e = a.recv();
    assert_eq!(e["type"], "error");
    assert!(
        e["message"].as_str().unwrap().starts_with("Unauthorized"),
        "{e}"
    );
    a.ws.send(tungstenite::Message::binary(vec![1, 1, b'x', 0]))
        .unwrap();
    assert_eq!(a.recv()["type"], "error");
}

#[test]
fn expired_token_closes_4001() {
    let server = common::start(auth_config(false));
    let mut r = raw(server.local_addr());
    send_json(
        &mut r,
        json!({"type": "auth", "token": alice(now_s() - 10)}),
    );
    assert_eq!(r.read_close_code(), Some(4001));
}

#[test]
fn bad_signature_closes_4001_and_others_keep_working() {
    let server = common::start(auth_config(false));
    let addr = server.local_addr();
    let mut good = Client::connect(addr);
    good.send(json!({"type": "auth", "token": alice(now_s() + 60)}));
    good.recv();
    let forged = token(
        json!({"sub": "mallory", "exp": now_s() + 60}),
        b"another-secret-0123456789abcdef-0123",
    );
    let mut r = raw(addr);
    send_json(&mut r, json!({"type": "auth", "token": forged}));
    assert_eq!(r.read_close_code(), Some(4001));
    let mut garbage = raw(addr);
    send_json(&mut garbage, json!({"type": "auth", "token": "not.a.jwt"}));
    assert_eq!(garbage.read_close_code(), Some(4001));
    good.ping();
}

#[test]
fn no_auth_within_the_timeout_closes_4008() {
    let server = common::start(auth_config(false));
    let mut r = raw(server.local_addr());
    assert_eq!(r.read_close_code(), Some(4008));
}

#[test]
fn token_that_expires_while_connected_closes_4001() {
    let server = common::start(auth_config(false));
    let mut r = raw(server.local_addr());
    send_json(&mut r, json!({"type": "auth", "token": alice(now_s() + 2)}));
    assert_eq!(r.read_json()["type"], "authenticated");
    assert_eq!(r.read_close_code(), Some(4001));
}

#[test]
fn denied_subscribe_and_publish_get_forbidden_and_deliver_nothing() {
    let server = common::start(auth_config(false));
    let addr = server.local_addr();
    let mut a = Client::connect(addr);
    a.send(json!({"type": "auth", "token": alice(now_s() + 60)}));
    a.recv();
    a.send(json!({"type": "subscribe", "channel": "secret.x"}));
    assert_eq!(
        a.recv(),
        json!({"type": "error", "message": "forbidden: secret.x"})
    );
    a.subscribe("md.btc");
    let mut admin = Client::connect(addr);
    let everything = token(
        json!({"sub": "admin", "exp": now_s() + 60, "channels": {"subscribe": ["*"], "publish": ["*"]}}),
        SECRET,
    );
    admin.send(json!({"type": "auth", "token": everything}));
    admin.recv();
    admin.subscribe("md.btc");
    a.publish("md.btc", json!("not allowed"));
    assert_eq!(
        a.recv(),
        json!({"type": "error", "message": "forbidden: md.btc"})
    );
    admin.publish("md.btc", json!("ok"));
    assert_eq!(
        a.recv()["content"],
        "ok",
        "the forbidden publish was not delivered first"
    );
}

#[test]
fn query_token_is_accepted_only_when_enabled() {
    let server = common::start(auth_config(true));
    let addr = server.local_addr();
    let path = format!("/?token={}", alice(now_s() + 60));
    let mut c = Client::connect_path(addr, &path);
    c.subscribe("md.eth");
    let mut bad = Raw::connect(addr);
    bad.send(upgrade_request("/?token=bad.token.here").as_bytes());
    assert!(bad.read_head().starts_with("HTTP/1.1 401"));

    let strict = common::start(auth_config(false));
    let mut c = Client::connect_path(strict.local_addr(), &path);
    c.send(json!({"type": "subscribe", "channel": "md.eth"}));
    assert_eq!(
        c.recv()["type"],
        "error",
        "query token ignored when disabled"
    );
}

/// A relay taking tokens from the `wsr_token` cookie, for pages of `https://app.example`.
fn cookie_config() -> Config {
    Config {
        auth_cookie: Some("wsr_token".into()),
        origins_allowed: vec!["https://app.example".into()],
        ..auth_config(false)
    }
}

/// Upgrades with `Origin` and `Cookie` headers; returns the status line and the client.
fn upgrade_with(addr: std::net::SocketAddr, origin: &str, cookie: &str) -> (String, Raw) {
    let mut r = Raw::connect(addr);
    let request = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\
         Cookie: {cookie}\r\n\r\n",
        common::KEY
    );
    r.send(request.as_bytes());
    let head = r.read_head();
    let status = head.lines().next().unwrap_or_default().to_string();
    (status, r)
}

#[test]
fn a_cookie_token_authenticates_from_an_allowed_origin() {
    let server = common::start(cookie_config());
    let cookie = format!("theme=dark; wsr_token={}; lang=en", alice(now_s() + 60));
    let (status, mut r) = upgrade_with(server.local_addr(), "https://app.example", &cookie);
    assert_eq!(status, "HTTP/1.1 101 Switching Protocols");
    assert_eq!(r.read_json()["type"], "connected");
    // Authenticated at upgrade: no `auth` message needed to subscribe.
    send_json(&mut r, json!({"type": "subscribe", "channel": "md.X"}));
    let reply = r.read_json();
    assert_eq!(
        (reply["type"].as_str(), reply["channel"].as_str()),
        (Some("subscribed"), Some("md.X"))
    );
    // Without the cookie the same request is only pending authentication.
    let (status, mut r) = upgrade_with(server.local_addr(), "https://app.example", "theme=dark");
    assert_eq!(status, "HTTP/1.1 101 Switching Protocols");
    assert_eq!(r.read_json()["type"], "connected");
    send_json(&mut r, json!({"type": "subscribe", "channel": "md.X"}));
    let e = r.read_json();
    assert_eq!(e["type"], "error");
    assert!(
        e["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Unauthorized"),
        "{e}"
    );
}

#[test]
fn a_cookie_token_is_refused_from_another_origin_and_a_bad_one_gets_401() {
    let server = common::start(cookie_config());
    let good = format!("wsr_token={}", alice(now_s() + 60));
    let (status, _) = upgrade_with(server.local_addr(), "https://evil.example", &good);
    assert_eq!(
        status, "HTTP/1.1 403 Forbidden",
        "cross-site hijacking refused"
    );
    let forged = format!(
        "wsr_token={}",
        token(
            json!({"sub": "mallory", "exp": now_s() + 60}),
            b"another-secret-0123456789abcdef-0123"
        )
    );
    let (status, _) = upgrade_with(server.local_addr(), "https://app.example", &forged);
    assert_eq!(status, "HTTP/1.1 401 Unauthorized");
    let expired = format!("wsr_token={}", alice(now_s() - 10));
    let (status, _) = upgrade_with(server.local_addr(), "https://app.example", &expired);
    assert_eq!(status, "HTTP/1.1 401 Unauthorized");
}

#[test]
fn cookie_authentication_without_an_origin_allow_list_is_refused_at_start() {
    let config = Config {
        origins_allowed: Vec::new(),
        ..cookie_config()
    };
    let err = config
        .validate()
        .map_err(|e| e.to_string())
        .err()
        .unwrap_or_default();
    assert!(err.contains("auth-cookie needs --allowed-origin"), "{err}");
    assert!(wsrelay::Server::start(config).is_err());
    let no_verifier = Config {
        auth: None,
        ..cookie_config()
    };
    assert!(
        no_verifier.validate().is_err(),
        "a cookie without a verifier"
    );
    let bad_name = Config {
        auth_cookie: Some("a;b".into()),
        ..cookie_config()
    };
    assert!(bad_name.validate().is_err(), "not a cookie name");
}
