//! RFC 6455 §4 handshake against a live relay: the accepted upgrade and every refusal with its
//! status, over raw sockets so the exact bytes are checked.

mod common;

use common::{relay, upgrade_request, Raw, ACCEPT, KEY};
use wsrelay::Config;

fn status_of(addr: std::net::SocketAddr, request: &str) -> String {
    let mut raw = Raw::connect(addr);
    raw.send(request.as_bytes());
    let head = raw.read_head();
    head.lines().next().unwrap_or_default().to_string()
}

#[test]
fn upgrade_is_answered_with_101_and_the_rfc_accept_key() {
    let server = relay(1);
    let mut raw = Raw::connect(server.local_addr());
    raw.send(upgrade_request("/").as_bytes());
    let head = raw.read_head();
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert!(
        head.contains(&format!("Sec-WebSocket-Accept: {ACCEPT}\r\n")),
        "{head}"
    );
    let hello = raw.read_json();
    assert_eq!(hello["type"], "connected");
}

#[test]
fn request_split_into_one_byte_pieces_is_accepted() {
    let server = relay(1);
    let mut raw = Raw::connect(server.local_addr());
    for b in upgrade_request("/ws").bytes() {
        raw.send(&[b]);
    }
    assert!(raw.read_head().starts_with("HTTP/1.1 101"));
}

#[test]
fn header_names_and_tokens_are_case_insensitive_and_comma_listed() {
    let server = relay(1);
    let req = format!(
        "GET / HTTP/1.1\r\nhost: x\r\nupgrade: WebSocket\r\nconnection: keep-alive, Upgrade\r\n\
         sec-websocket-key: {KEY}\r\nsec-websocket-version: 13\r\n\r\n"
    );
    assert_eq!(
        status_of(server.local_addr(), &req),
        "HTTP/1.1 101 Switching Protocols"
    );
}

#[test]
fn wrong_version_gets_426_with_the_supported_version() {
    let server = relay(1);
    let req = upgrade_request("/").replace("Version: 13", "Version: 8");
    let mut raw = Raw::connect(server.local_addr());
    raw.send(req.as_bytes());
    let head = raw.read_head();
    assert!(head.starts_with("HTTP/1.1 426"), "{head}");
    assert!(head.contains("Sec-WebSocket-Version: 13\r\n"), "{head}");
}

#[test]
fn each_malformed_upgrade_gets_400() {
    let server = relay(1);
    let good = upgrade_request("/");
    let cases = [
        (
            "missing key",
            good.replace(&format!("Sec-WebSocket-Key: {KEY}\r\n"), ""),
        ),
        ("short key", good.replace(KEY, "c2hvcnQ=")),
        ("not base64", good.replace(KEY, "!!!!!!!!!!!!!!!!!!!!!!!!")),
        ("missing host", good.replace("Host: localhost\r\n", "")),
        (
            "no upgrade token",
            good.replace("Connection: Upgrade", "Connection: keep-alive"),
        ),
        ("not GET", good.replace("GET /", "POST /")),
        ("HTTP/1.0", good.replace("HTTP/1.1", "HTTP/1.0")),
        ("garbage", "\x01\x02 nonsense\r\n\r\n".to_string()),
    ];
    for (what, req) in cases {
        let status = status_of(server.local_addr(), &req);
        assert!(status.starts_with("HTTP/1.1 400"), "{what}: {status}");
    }
}

#[test]
fn refusals_carry_a_one_line_reason_and_close_the_connection() {
    let server = relay(1);
    let mut raw = Raw::connect(server.local_addr());
    raw.send(
        upgrade_request("/")
            .replace("Version: 13", "Version: 7")
            .as_bytes(),
    );
    let all = raw.read_to_end();
    let body = all
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    assert_eq!(body.lines().count(), 1, "{all}");
    assert!(!body.trim().is_empty());
}

#[test]
fn head_over_8_kib_gets_431() {
    let server = relay(1);
    let filler = format!("X-Filler: {}\r\n", "a".repeat(9000));
    let req = upgrade_request("/").replace("Host: localhost\r\n", &format!("Host: x\r\n{filler}"));
    assert!(status_of(server.local_addr(), &req).starts_with("HTTP/1.1 431"));
}

#[test]
fn head_that_never_ends_gets_431_after_8_kib() {
    let server = relay(1);
    let mut raw = Raw::connect(server.local_addr());
    raw.send(b"GET / HTTP/1.1\r\nX: ");
    raw.send(&vec![b'a'; 9000]);
    assert!(raw.read_head().starts_with("HTTP/1.1 431"));
}

#[test]
fn unknown_path_gets_404() {
    let server = relay(1);
    assert!(status_of(server.local_addr(), &upgrade_request("/nope")).starts_with("HTTP/1.1 404"));
    let plain = "GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n";
    assert!(status_of(server.local_addr(), plain).starts_with("HTTP/1.1 404"));
}

#[test]
fn echo_path_is_404_unless_enabled() {
    let server = relay(1);
    assert!(status_of(server.local_addr(), &upgrade_request("/echo")).starts_with("HTTP/1.1 404"));
}

#[test]
fn subprotocol_is_negotiated_when_configured() {
    let config = Config {
        subprotocols: vec!["wsrelay.v1".into()],
        ..Config::loopback_for_tests(1)
    };
    let server = common::start(config);
    let req = upgrade_request("/").replace(
        "Sec-WebSocket-Version: 13\r\n",
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, wsrelay.v1\r\n",
    );
    let mut raw = Raw::connect(server.local_addr());
    raw.send(req.as_bytes());
    let head = raw.read_head();
    assert!(
        head.contains("Sec-WebSocket-Protocol: wsrelay.v1\r\n"),
        "{head}"
    );
    // Not offered: no protocol header in the answer.
    let mut raw = Raw::connect(server.local_addr());
    raw.send(upgrade_request("/").as_bytes());
    assert!(!raw.read_head().contains("Sec-WebSocket-Protocol"));
}

#[test]
fn frames_sent_right_after_the_request_are_processed() {
    let server = relay(1);
    let mut raw = Raw::connect(server.local_addr());
    let mut bytes = upgrade_request("/").into_bytes();
    bytes.extend(common::masked_frame(0x81, br#"{"type":"ping"}"#));
    raw.send(&bytes);
    assert!(raw.read_head().starts_with("HTTP/1.1 101"));
    assert_eq!(raw.read_json()["type"], "connected");
    assert_eq!(raw.read_json(), serde_json::json!({"type": "pong"}));
}
