//! Unit tests of `handshake`.

use super::*;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A request head: `request_line`, then `headers`, then the empty line.
fn request<S: AsRef<str>>(request_line: &str, headers: &[S]) -> String {
    let mut head = format!("{request_line}\r\n");
    for header in headers {
        head.push_str(header.as_ref());
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head
}

const VALID: [&str; 5] = [
    "Host: server.example.com",
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
];

/// The valid headers without the `name` field, plus `by` if given.
fn with(name: &str, by: Option<&str>) -> Vec<String> {
    let prefix = format!("{name}:");
    let kept = VALID.iter().filter(|h| !h.starts_with(&prefix));
    kept.map(|h| h.to_string())
        .chain(by.map(str::to_owned))
        .collect()
}

fn validate(text: &str) -> Result<Upgrade<'_>, HandshakeError> {
    match parse_request_head(text.as_bytes())? {
        Decode::Complete(head, len) => {
            assert_eq!(len, text.len());
            validate_upgrade(&head)
        }
        Decode::Partial => panic!("complete head reported partial"),
    }
}

#[test]
fn rfc_1_3_accept_key() {
    assert_eq!(accept_key(KEY), ACCEPT);
}

#[test]
fn accepts_rfc_example_request() {
    let text = request("GET /chat?room=1&x HTTP/1.1", &VALID);
    let upgrade = validate(&text);
    let expected = Upgrade {
        path: "/chat",
        query: Some("room=1&x"),
        key: KEY,
        protocols: None,
        origin: None,
    };
    assert_eq!(upgrade, Ok(expected));
}

#[test]
fn accepts_case_insensitive_names_and_comma_lists() {
    let headers = [
        "HOST: a",
        "upgrade: WebSocket",
        "connection: keep-alive, Upgrade",
        "SEC-WEBSOCKET-KEY:   dGhlIHNhbXBsZSBub25jZQ==  ",
        "sec-websocket-version: 13",
        "Sec-WebSocket-Protocol: chat, superchat",
        "Origin: http://example.com",
    ];
    let text = request("GET / HTTP/1.1", &headers);
    let upgrade = validate(&text).map(|u| (u.key, u.protocols, u.origin));
    assert_eq!(
        upgrade,
        Ok((KEY, Some("chat, superchat"), Some("http://example.com")))
    );
    // Connection split over two fields (RFC 7230 §3.2.2).
    let mut split = with("Connection", Some("Connection: keep-alive"));
    split.push("Connection: upgrade".to_owned());
    assert!(validate(&request("GET / HTTP/1.1", &split)).is_ok());
    let split_text = request("GET / HTTP/1.1", &split);
    let parsed = parse_request_head(split_text.as_bytes());
    assert!(
        matches!(parsed, Ok(Decode::Complete(head, _)) if head.connection == Some("keep-alive"))
    );
}

/// Checks that each request head of `cases` is refused with its error.
fn assert_rejections(cases: Vec<(String, HandshakeError)>) {
    for (text, error) in cases {
        assert_eq!(validate(&text), Err(error), "{text:?}");
    }
}

/// The valid request with the field `name` replaced by `by` (or removed).
fn request_with(name: &str, by: Option<&str>) -> String {
    request("GET / HTTP/1.1", &with(name, by))
}

#[test]
fn rejections_of_the_request_line() {
    assert_rejections(vec![
        (
            request("POST / HTTP/1.1", &VALID),
            HandshakeError::MethodNotGet,
        ),
        (request("GET / HTTP/1.0", &VALID), HandshakeError::NotHttp11),
        (
            "GET / HTTP/1.1\r\nBad Header\r\n\r\n".to_owned(),
            HandshakeError::Malformed,
        ),
        ("GET /\r\n\r\n".to_owned(), HandshakeError::Malformed),
    ]);
}

#[test]
fn rejections_of_the_upgrade_headers() {
    assert_rejections(vec![
        (request_with("Host", None), HandshakeError::MissingHost),
        (
            request_with("Upgrade", None),
            HandshakeError::MissingUpgrade,
        ),
        (
            request_with("Upgrade", Some("Upgrade: h2c")),
            HandshakeError::MissingUpgrade,
        ),
        (
            request_with("Connection", None),
            HandshakeError::MissingConnectionUpgrade,
        ),
        (
            request_with("Connection", Some("Connection: keep-alive")),
            HandshakeError::MissingConnectionUpgrade,
        ),
        (
            request_with("Host", Some("Host: a\r\nHost: b")),
            HandshakeError::DuplicateHeader,
        ),
    ]);
}

#[test]
fn rejections_of_the_key_and_version() {
    assert_rejections(vec![
        (
            request_with("Sec-WebSocket-Key", None),
            HandshakeError::MissingKey,
        ),
        (
            request_with(
                "Sec-WebSocket-Key",
                Some("Sec-WebSocket-Key: dGhlIHNhbXBsZQ=="),
            ),
            HandshakeError::InvalidKey,
        ),
        (
            request_with(
                "Sec-WebSocket-Key",
                Some("Sec-WebSocket-Key: !GhlIHNhbXBsZSBub25jZQ=="),
            ),
            HandshakeError::InvalidKey,
        ),
        (
            request_with("Sec-WebSocket-Version", None),
            HandshakeError::UnsupportedVersion,
        ),
        (
            request_with("Sec-WebSocket-Version", Some("Sec-WebSocket-Version: 8")),
            HandshakeError::UnsupportedVersion,
        ),
    ]);
}

#[test]
fn too_many_headers() {
    let fillers: Vec<String> = (0..HEADERS_MAX)
        .map(|i| format!("X-Filler-{i}: v"))
        .collect();
    let mut headers: Vec<&str> = VALID.to_vec();
    headers.extend(fillers.iter().map(String::as_str));
    let text = request("GET / HTTP/1.1", &headers);
    assert_eq!(
        parse_request_head(text.as_bytes()),
        Err(HandshakeError::TooManyHeaders)
    );
}

#[test]
fn splits_at_every_byte_give_partial_then_the_same_result() {
    let text = request("GET /chat HTTP/1.1", &VALID);
    let whole = parse_request_head(text.as_bytes());
    assert!(matches!(whole, Ok(Decode::Complete(_, len)) if len == text.len()));
    for cut in 0..text.len() {
        assert_eq!(
            parse_request_head(&text.as_bytes()[..cut]),
            Ok(Decode::Partial),
            "cut {cut}"
        );
    }
    let mut with_frames = text.clone().into_bytes();
    with_frames.extend_from_slice(&[0x81, 0x80, 1, 2, 3, 4]);
    assert_eq!(parse_request_head(&with_frames), whole);
}

#[test]
fn head_size_boundary() {
    let base = request("GET / HTTP/1.1", &[&VALID[..], &["X-Pad: "]].concat());
    let pad = REQUEST_HEAD_BYTES_MAX - base.len();
    let exact = request(
        "GET / HTTP/1.1",
        &[
            &VALID[..],
            &[format!("X-Pad: {}", "a".repeat(pad)).as_str()],
        ]
        .concat(),
    );
    assert_eq!(exact.len(), REQUEST_HEAD_BYTES_MAX);
    assert!(matches!(
        parse_request_head(exact.as_bytes()),
        Ok(Decode::Complete(_, REQUEST_HEAD_BYTES_MAX))
    ));
    let over = request(
        "GET / HTTP/1.1",
        &[
            &VALID[..],
            &[format!("X-Pad: {}", "a".repeat(pad + 1)).as_str()],
        ]
        .concat(),
    );
    assert_eq!(over.len(), REQUEST_HEAD_BYTES_MAX + 1);
    assert_eq!(
        parse_request_head(over.as_bytes()),
        Err(HandshakeError::HeadTooLarge)
    );
    assert_eq!(
        parse_request_head(&over.as_bytes()[..REQUEST_HEAD_BYTES_MAX]),
        Err(HandshakeError::HeadTooLarge)
    );
    assert_eq!(
        parse_request_head(&over.as_bytes()[..REQUEST_HEAD_BYTES_MAX - 1]),
        Ok(Decode::Partial)
    );
}

#[test]
fn wants_websocket_routes_plain_gets_elsewhere() {
    let metrics = "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n";
    let parsed = parse_request_head(metrics.as_bytes());
    assert!(
        matches!(parsed, Ok(Decode::Complete(head, _)) if !wants_websocket(&head) && head.path == "/metrics")
    );
    let upgrade = request("GET / HTTP/1.1", &VALID);
    let parsed = parse_request_head(upgrade.as_bytes());
    assert!(matches!(parsed, Ok(Decode::Complete(head, _)) if wants_websocket(&head)));
}

#[test]
fn protocol_selection_follows_client_order() {
    let supported = vec!["v2".to_owned(), "v1".to_owned()];
    assert_eq!(select_protocol(Some("v1, v2"), &supported), Some("v1"));
    assert_eq!(select_protocol(Some("x,  v2 "), &supported), Some("v2"));
    assert_eq!(select_protocol(Some("V1"), &supported), None);
    assert_eq!(select_protocol(None, &supported), None);
}

#[test]
fn switching_protocols_exact_bytes() {
    let mut out = Vec::new();
    encode_switching_protocols(&mut out, ACCEPT, Some("chat"), None);
    let expected = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                    Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n";
    assert_eq!(String::from_utf8_lossy(&out), expected);
}

#[test]
fn http_response_and_handshake_errors_exact_bytes() {
    let mut out = Vec::new();
    encode_http_response(
        &mut out,
        200,
        "OK",
        "text/plain",
        &[("Cache-Control", "no-store")],
        b"up\n",
    );
    let expected =
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\
                    Cache-Control: no-store\r\n\r\nup\n";
    assert_eq!(String::from_utf8_lossy(&out), expected);
    out.clear();
    encode_handshake_error(&mut out, HandshakeError::UnsupportedVersion);
    let expected = "HTTP/1.1 426 Upgrade Required\r\nContent-Type: text/plain; charset=utf-8\r\n\
                    Content-Length: 43\r\nConnection: close\r\nSec-WebSocket-Version: 13\r\n\r\n\
                    only Sec-WebSocket-Version 13 is supported\n";
    assert_eq!(String::from_utf8_lossy(&out), expected);
    out.clear();
    encode_handshake_error(&mut out, HandshakeError::HeadTooLarge);
    assert!(out.starts_with(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"));
    assert!(out.ends_with(b"\r\n\r\nrequest head too large\n"));
}

#[test]
fn client_request_round_trips_through_server_parser() {
    let key = generate_key(*b"the sample nonce");
    assert_eq!(key, KEY);
    let mut out = Vec::new();
    encode_client_request(
        &mut out,
        "relay:8080",
        "/ws?t=1",
        &key,
        Some("v1"),
        &[("Authorization", "Bearer x")],
    );
    let Ok(Decode::Complete(head, len)) = parse_request_head(&out) else {
        panic!("client request did not parse");
    };
    assert_eq!(len, out.len());
    assert_eq!(head.authorization, Some("Bearer x"));
    let upgrade = validate_upgrade(&head);
    let expected = Upgrade {
        path: "/ws",
        query: Some("t=1"),
        key: KEY,
        protocols: Some("v1"),
        origin: None,
    };
    assert_eq!(upgrade, Ok(expected));
}

#[test]
fn client_parses_server_101() {
    let mut out = Vec::new();
    encode_switching_protocols(&mut out, ACCEPT, Some("v1"), None);
    out.extend_from_slice(&[0x81, 0x00]);
    let head_len = out.len() - 2;
    let parsed = parse_response_head(&out, ACCEPT);
    assert_eq!(
        parsed,
        Ok(Decode::Complete(
            ResponseHead {
                status: 101,
                protocol: Some("v1"),
                extensions: Default::default(),
            },
            head_len
        ))
    );
    for cut in 0..head_len {
        assert_eq!(
            parse_response_head(&out[..cut], ACCEPT),
            Ok(Decode::Partial),
            "cut {cut}"
        );
    }
}

#[test]
fn client_rejections_table() {
    let ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
    let accept = format!("Sec-WebSocket-Accept: {ACCEPT}\r\n");
    let cases: Vec<(String, ClientHandshakeError)> = vec![
        (
            "HTTP/1.1 403 Forbidden\r\n\r\n".to_owned(),
            ClientHandshakeError::UnexpectedStatus(403),
        ),
        (
            format!("HTTP/1.1 101 S\r\nConnection: Upgrade\r\n{accept}\r\n"),
            ClientHandshakeError::MissingUpgrade,
        ),
        (
            format!("HTTP/1.1 101 S\r\nUpgrade: websocket\r\n{accept}\r\n"),
            ClientHandshakeError::MissingConnectionUpgrade,
        ),
        (format!("{ok}\r\n"), ClientHandshakeError::MissingAccept),
        (
            format!("{ok}Sec-WebSocket-Accept: x\r\n\r\n"),
            ClientHandshakeError::AcceptMismatch,
        ),
        (
            format!("{ok}{accept}Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"),
            ClientHandshakeError::UnexpectedExtension,
        ),
        (
            "HTTP/1.1 abc\r\n\r\n".to_owned(),
            ClientHandshakeError::Malformed,
        ),
    ];
    for (text, error) in cases {
        assert_eq!(
            parse_response_head(text.as_bytes(), ACCEPT),
            Err(error),
            "{text:?}"
        );
    }
    let long = format!("{ok}X: {}\r\n", "a".repeat(RESPONSE_HEAD_BYTES_MAX));
    assert_eq!(
        parse_response_head(long.as_bytes(), ACCEPT),
        Err(ClientHandshakeError::HeadTooLarge)
    );
}

#[test]
fn push_decimal_values() {
    for value in [0u64, 7, 10, 404, u64::MAX] {
        let mut out = Vec::new();
        push_decimal(&mut out, value);
        assert_eq!(out, value.to_string().into_bytes());
    }
}

#[test]
fn cookie_values_are_found_by_exact_name() {
    let header = "theme=dark; wsr_token=\"a.b.c\";lang=en ; wsr=short";
    assert_eq!(cookie_value(header, "wsr_token"), Some("a.b.c"));
    assert_eq!(cookie_value(header, "lang"), Some("en"));
    assert_eq!(cookie_value(header, "wsr"), Some("short"));
    assert_eq!(cookie_value(header, "token"), None);
    assert_eq!(cookie_value("noequals; x=1", "noequals"), None);
    assert!(is_cookie_name("wsr_token"));
    for bad in ["", "a;b", "a b", "a=b", "é", "a\"b"] {
        assert!(!is_cookie_name(bad), "{bad:?}");
    }
}

#[test]
fn forwarding_headers_are_kept_in_order_and_never_refuse_a_request() {
    let mut text = b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.1.1.1, 203.0.113.7\r\n\
        Forwarded: for=198.51.100.1\r\nx-forwarded-for: 10.0.0.2\r\nX-Forwarded-For: "
        .to_vec();
    text.extend_from_slice(&[0xff, 0xfe]); // obs-text: not UTF-8
    text.extend_from_slice(b"\r\n\r\n");
    let Ok(Decode::Complete(head, _)) = parse_request_head(&text) else {
        panic!("a request with odd forwarding headers still parses");
    };
    assert_eq!(
        head.x_forwarded_for.as_slice(),
        &["1.1.1.1, 203.0.113.7", "10.0.0.2", "unknown"]
    );
    assert_eq!(head.forwarded.as_slice(), &["for=198.51.100.1"]);
}
