//! permessage-deflate (RFC 7692) through real sockets: the answer to each offer, compressed
//! and plain peers on one channel, the bounds (1009, 1007, 1002), the shared compressed copy
//! (one compression per run, counted) and the per-connection context bound.
//!
//! Frames are crafted by hand and compressed with flate2 here (tungstenite has no
//! permessage-deflate).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{http_get, masked_frame, Client, Raw, KEY};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use serde_json::{json, Value};
use wsrelay::Config;

const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// FIN + RSV1 + text / binary; FIN + RSV1 (compressed) without FIN; continuation.
const TEXT_RSV1: u8 = 0xC1;
const BINARY_RSV1: u8 = 0xC2;

fn config(loops: usize) -> Config {
    let mut c = Config::loopback_for_tests(loops);
    c.deflate_enabled = true;
    c.echo_enabled = true;
    c
}

/// Sends an upgrade to `path` offering `offer` (if any); returns the client after the head
/// and the head.
fn upgrade(addr: SocketAddr, path: &str, offer: Option<&str>) -> (Raw, String) {
    let mut raw = Raw::connect(addr);
    let ext = offer.map_or(String::new(), |o| {
        format!("Sec-WebSocket-Extensions: {o}\r\n")
    });
    raw.send(
        format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n"
        )
        .as_bytes(),
    );
    let head = raw.read_head();
    (raw, head)
}

/// The `Sec-WebSocket-Extensions` value of a response head.
fn answer(head: &str) -> Option<&str> {
    head.lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Extensions: "))
}

/// Raw DEFLATE of `message` with a sync flush, the tail removed (RFC 7692 §7.2.1).
fn compress(c: &mut Compress, message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() / 2 + 64);
    let start = c.total_in();
    loop {
        let used = (c.total_in() - start) as usize;
        c.compress_vec(&message[used..], &mut out, FlushCompress::Sync)
            .expect("compress");
        if (c.total_in() - start) as usize == message.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity().max(64));
    }
    assert!(out.ends_with(&TAIL));
    out.truncate(out.len() - 4);
    out
}

fn compress_once(message: &[u8]) -> Vec<u8> {
    compress(&mut Compress::new(Compression::default(), false), message)
}

/// Inflates one message with the tail appended (RFC 7692 §7.2.2).
fn inflate(d: &mut Decompress, payload: &[u8]) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&TAIL);
    let mut out = Vec::with_capacity(input.len() * 8 + 1024);
    let start = d.total_in();
    loop {
        let used = (d.total_in() - start) as usize;
        d.decompress_vec(&input[used..], &mut out, FlushDecompress::Sync)
            .expect("valid DEFLATE from the relay");
        if (d.total_in() - start) as usize == input.len() && out.len() < out.capacity() {
            return out;
        }
        out.reserve(out.capacity());
    }
}

fn inflate_once(payload: &[u8]) -> Vec<u8> {
    inflate(&mut Decompress::new(false), payload)
}

/// A market-data JSON content well above the 128-byte minimum.
fn quote(i: u64) -> Value {
    json!({"symbol": "BTC-USD", "bid": 64250.5 + i as f64, "ask": 64251.0, "bid_size": 1.25,
           "ask_size": 0.75, "venue": "example", "ts": 1_700_000_000_000u64 + i,
           "levels": [[64250.5, 1.25], [64250.0, 3.5], [64249.5, 8.0]]})
}

#[test]
fn every_offer_gets_the_rfc_7692_answer() {
    let server = common::start(config(1));
    let addr = server.local_addr();
    let shared = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
    let cases: &[(&str, Option<&str>)] = &[
        ("permessage-deflate", Some(shared)),
        ("permessage-deflate; client_max_window_bits", Some(shared)),
        ("permessage-deflate; client_max_window_bits=8", Some(shared)),
        ("permessage-deflate; server_no_context_takeover", Some(shared)),
        ("permessage-deflate; client_no_context_takeover", Some(shared)),
        (
            "permessage-deflate; server_max_window_bits=10",
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10"),
        ),
        (
            "permessage-deflate; server_max_window_bits=\"8\"; client_max_window_bits=15",
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=8"),
        ),
        // Declined (RFC 7692 §5): the handshake succeeds without the extension.
        ("permessage-deflate; server_max_window_bits", None),
        ("permessage-deflate; server_max_window_bits=16", None),
        ("permessage-deflate; client_max_window_bits=7", None),
        ("permessage-deflate; server_max_window_bits=09", None),
        ("permessage-deflate; server_no_context_takeover=yes", None),
        ("permessage-deflate; mystery", None),
        ("permessage-deflate; client_no_context_takeover; client_no_context_takeover", None),
        ("x-webkit-deflate-frame", None),
        // Several offers: the first acceptable one.
        (
            "permessage-deflate; server_max_window_bits=20, permessage-deflate; server_max_window_bits=12",
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12"),
        ),
    ];
    for (offer, expected) in cases {
        let (_raw, head) = upgrade(addr, "/echo", Some(offer));
        assert!(head.starts_with("HTTP/1.1 101 "), "{offer}: {head}");
        assert_eq!(answer(&head), *expected, "{offer}");
    }
    // Not offered: no answer.
    let (_raw, head) = upgrade(addr, "/echo", None);
    assert_eq!(answer(&head), None);
    // Malformed header (RFC 6455 §9.1 grammar): 400.
    for bad in [
        "permessage-deflate;",
        "permessage-deflate; server_max_window_bits=",
        "permessage-deflate; a=\"x y\"",
        "permessage-deflate x",
    ] {
        let (_raw, head) = upgrade(addr, "/echo", Some(bad));
        assert!(
            head.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{bad}: {head}"
        );
    }
    wait_for(
        addr,
        "wsrelay_deflate_negotiations_total{outcome=\"shared\"}",
        8.0,
    );
    wait_for(
        addr,
        "wsrelay_deflate_negotiations_total{outcome=\"declined\"}",
        8.0,
    );
}

#[test]
fn without_deflate_the_offer_is_ignored() {
    let mut c = config(1);
    c.deflate_enabled = false;
    let server = common::start(c);
    let (mut raw, head) = upgrade(server.local_addr(), "/echo", Some("permessage-deflate"));
    assert!(head.starts_with("HTTP/1.1 101 "));
    assert_eq!(answer(&head), None);
    // RSV1 without the negotiation is a protocol error (RFC 6455 §5.2).
    raw.send(&masked_frame(TEXT_RSV1, &compress_once(b"hello")));
    assert_eq!(raw.read_close_code(), Some(1002));
}

#[test]
fn compressed_publish_reaches_a_plain_subscriber_and_back() {
    let server = common::start(config(2));
    let addr = server.local_addr();
    let mut plain = Client::connect(addr);
    plain.subscribe("quotes");
    let (mut pmd, head) = upgrade(addr, "/", Some("permessage-deflate"));
    assert!(answer(&head).is_some());
    assert_eq!(pmd.read_json()["type"], "connected");
    pmd.send_frame(0x81, br#"{"type":"subscribe","channel":"quotes"}"#);
    assert_eq!(pmd.read_json()["type"], "subscribed");

    // Compressed publish (RSV1, one frame) → the plain subscriber gets it uncompressed.
    let publish = json!({"type": "message", "channel": "quotes", "content": quote(1)});
    pmd.send(&masked_frame(
        TEXT_RSV1,
        &compress_once(publish.to_string().as_bytes()),
    ));
    let got = plain.recv();
    assert_eq!(got["content"], quote(1));

    // Plain publish → the compressed subscriber gets RSV1 and a DEFLATE payload.
    plain.publish("quotes", quote(2));
    let (b0, frame) = pmd.read_frame_b0();
    assert_eq!(b0, TEXT_RSV1, "FIN + RSV1 + text");
    let text = inflate_once(&frame.payload);
    let v: Value = serde_json::from_slice(&text).expect("JSON");
    assert_eq!(v["content"], quote(2));
    assert!(frame.payload.len() < text.len());

    // Below --deflate-min-size (128): sent plain, RSV1 clear.
    plain.publish("quotes", json!(7));
    let (b0, frame) = pmd.read_frame_b0();
    assert_eq!(b0, 0x81);
    let v: Value = serde_json::from_slice(&frame.payload).expect("JSON");
    assert_eq!(v["content"], 7);
}

#[test]
fn fragmented_compressed_message_is_echoed_compressed() {
    let server = common::start(config(1));
    let (mut raw, head) = upgrade(server.local_addr(), "/echo", Some("permessage-deflate"));
    assert!(answer(&head).is_some());
    let message = quote(3).to_string().repeat(4);
    let compressed = compress_once(message.as_bytes());
    let (a, b) = compressed.split_at(compressed.len() / 2);
    // RFC 7692 §6.1: RSV1 on the first frame only; a ping may come in between.
    raw.send(&masked_frame(0x41, a));
    raw.send(&masked_frame(0x89, b"p"));
    raw.send(&masked_frame(0x80, b));
    let (b0, pong) = raw.read_frame_b0();
    assert_eq!((b0, pong.payload.as_slice()), (0x8A, &b"p"[..]));
    let (b0, echo) = raw.read_frame_b0();
    assert_eq!(b0, TEXT_RSV1);
    assert_eq!(inflate_once(&echo.payload), message.as_bytes());
    // Uncompressed messages are still accepted (RSV1 clear) and short ones echoed plain.
    raw.send(&masked_frame(0x82, b"\x00\x01"));
    let (b0, echo) = raw.read_frame_b0();
    assert_eq!((b0, echo.payload.as_slice()), (0x82, &b"\x00\x01"[..]));
}

#[test]
fn rsv1_on_a_continuation_or_a_control_frame_is_1002() {
    let server = common::start(config(1));
    let addr = server.local_addr();
    let (mut raw, _) = upgrade(addr, "/echo", Some("permessage-deflate"));
    raw.send(&masked_frame(0x01, b"ab"));
    raw.send(&masked_frame(0xC0, b"cd"));
    assert_eq!(raw.read_close_code(), Some(1002));
    let (mut raw, _) = upgrade(addr, "/echo", Some("permessage-deflate"));
    raw.send(&masked_frame(0xC9, b"ping"));
    assert_eq!(raw.read_close_code(), Some(1002));
    let (mut raw, _) = upgrade(addr, "/echo", Some("permessage-deflate"));
    raw.send(&masked_frame(0xA1, b"rsv2"));
    assert_eq!(raw.read_close_code(), Some(1002));
}

#[test]
fn decompression_bomb_is_1009_and_bad_data_1007() {
    let mut c = config(1);
    c.message_bytes_max = 64 * 1024;
    let server = common::start(c);
    let addr = server.local_addr();
    // 16 MiB of zeros compress to about 16 KiB: under the limit on the wire, far over inflated.
    let bomb = compress_once(&vec![0u8; 16 << 20]);
    assert!(bomb.len() < 64 * 1024);
    let (mut raw, _) = upgrade(addr, "/echo", Some("permessage-deflate"));
    raw.send(&masked_frame(BINARY_RSV1, &bomb));
    assert_eq!(raw.read_close_code(), Some(1009));
    // Exactly the limit inflates; one byte more does not.
    let (mut raw, _) = upgrade(addr, "/echo", Some("permessage-deflate"));
    raw.send(&masked_frame(
        BINARY_RSV1,
        &compress_once(&vec![7u8; 64 * 1024]),
    ));
    let (b0, echo) = raw.read_frame_b0();
    assert_eq!(b0, BINARY_RSV1);
    assert_eq!(inflate_once(&echo.payload), vec![7u8; 64 * 1024]);
    raw.send(&masked_frame(
        BINARY_RSV1,
        &compress_once(&vec![7u8; 64 * 1024 + 1]),
    ));
    assert_eq!(raw.read_close_code(), Some(1009));
    // BTYPE 11 is reserved (RFC 1951 §3.2.3): not DEFLATE.
    let (mut raw, _) = upgrade(addr, "/echo", Some("permessage-deflate"));
    raw.send(&masked_frame(TEXT_RSV1, &[0xff, 0xff, 0xff, 0xff]));
    assert_eq!(raw.read_close_code(), Some(1007));
    // Valid DEFLATE of invalid UTF-8 in a text message (RFC 6455 §8.1).
    let (mut raw, _) = upgrade(addr, "/echo", Some("permessage-deflate"));
    raw.send(&masked_frame(
        TEXT_RSV1,
        &compress_once(&[0x61, 0xff, 0x62]),
    ));
    assert_eq!(raw.read_close_code(), Some(1007));
    wait_for(
        addr,
        "wsrelay_deflate_inflations_total{outcome=\"too_big\"}",
        2.0,
    );
    wait_for(
        addr,
        "wsrelay_deflate_inflations_total{outcome=\"bad_data\"}",
        1.0,
    );
}

#[test]
fn shared_mode_compresses_a_run_once_for_every_subscriber() {
    // One loop: every subscriber is served from the same batch (with several loops, each
    // loop that has compressed subscribers may build the copy once).
    let server = common::start(config(1));
    let addr = server.local_addr();
    const N: usize = 6;
    let mut subs: Vec<Raw> = (0..N)
        .map(|_| {
            let (mut raw, head) = upgrade(addr, "/", Some("permessage-deflate"));
            assert!(answer(&head).is_some());
            assert_eq!(raw.read_json()["type"], "connected");
            raw.send_frame(0x81, br#"{"type":"subscribe","channel":"md"}"#);
            assert_eq!(raw.read_json()["type"], "subscribed");
            raw
        })
        .collect();
    let mut plain = Client::connect(addr);
    plain.subscribe("md");
    let mut publisher = Client::connect(addr);
    publisher.publish("md", quote(9));
    let mut copies = Vec::new();
    for sub in subs.iter_mut() {
        let (b0, frame) = sub.read_frame_b0();
        assert_eq!(b0, TEXT_RSV1);
        let v: Value = serde_json::from_slice(&inflate_once(&frame.payload)).expect("JSON");
        assert_eq!(v["content"], quote(9));
        copies.push(frame.payload);
    }
    assert!(
        copies.windows(2).all(|w| w[0] == w[1]),
        "one compressed copy"
    );
    assert_eq!(plain.recv()["content"], quote(9));
    wait_for(
        addr,
        "wsrelay_deflate_compressions_total{mode=\"shared\"}",
        1.0,
    );
    assert_eq!(
        metrics(addr)("wsrelay_deflate_compressions_total{mode=\"connection\"}"),
        0.0
    );
}

#[test]
fn context_takeover_is_bounded_and_keeps_the_dictionary() {
    let mut c = config(1);
    c.deflate_contexts_max = 1;
    let server = common::start(c);
    let addr = server.local_addr();
    let shared = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
    let (mut first, head) = upgrade(addr, "/", Some("permessage-deflate"));
    assert_eq!(answer(&head), Some("permessage-deflate"));
    // The bound is reached: answered without takeover.
    let (_second, head) = upgrade(addr, "/", Some("permessage-deflate"));
    assert_eq!(answer(&head), Some(shared));
    // A client that asks for no takeover takes no context either.
    let (_third, head) = upgrade(
        addr,
        "/",
        Some("permessage-deflate; server_no_context_takeover"),
    );
    assert_eq!(answer(&head), Some(shared));

    // The first one's messages share one dictionary (and it may keep its own, too).
    assert_eq!(first.read_json()["type"], "connected");
    first.send_frame(0x81, br#"{"type":"subscribe","channel":"md"}"#);
    assert_eq!(first.read_json()["type"], "subscribed");
    let mut client_ctx = Compress::new(Compression::default(), false);
    let mut server_ctx = Decompress::new(false);
    let mut sizes = Vec::new();
    for i in 0..3 {
        let mut other = Client::connect(addr);
        other.publish("md", quote(i));
        let (b0, frame) = first.read_frame_b0();
        assert_eq!(b0, TEXT_RSV1);
        let v: Value =
            serde_json::from_slice(&inflate(&mut server_ctx, &frame.payload)).expect("JSON");
        assert_eq!(v["content"], quote(i));
        sizes.push(frame.payload.len());
    }
    assert!(sizes[1] < sizes[0] / 2, "takeover: {sizes:?}");
    // Client to server with the client's context kept across messages.
    for i in 0..2 {
        let publish = json!({"type": "message", "channel": "other", "content": quote(i)});
        first.send(&masked_frame(
            TEXT_RSV1,
            &compress(&mut client_ctx, publish.to_string().as_bytes()),
        ));
    }
    first.send_frame(0x81, br#"{"type":"ping"}"#);
    let (b0, pong) = first.read_frame_b0();
    assert_eq!(b0, 0x81);
    assert_eq!(
        serde_json::from_slice::<Value>(&pong.payload).expect("JSON")["type"],
        "pong"
    );

    // Closing the first frees its context for the next connection.
    first.send_frame(0x88, &1000u16.to_be_bytes());
    assert_eq!(first.read_close_code(), Some(1000));
    let mut answered = None;
    for _ in 0..200 {
        let (_c, head) = upgrade(addr, "/", Some("permessage-deflate"));
        answered = answer(&head).map(str::to_owned);
        if answered.as_deref() == Some("permessage-deflate") {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(answered.as_deref(), Some("permessage-deflate"));
}

/// The relay's counters by series (the exporter is refreshed every 50 ms in tests).
fn metrics(addr: SocketAddr) -> impl Fn(&str) -> f64 {
    let (status, body) = http_get(addr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    move |series: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no series {series}"))
    }
}

/// Waits, bounded by a count, until `series` reaches `want`.
fn wait_for(addr: SocketAddr, series: &str, want: f64) {
    for _ in 0..200 {
        if metrics(addr)(series) == want {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{series} never reached {want}: {}", metrics(addr)(series));
}

#[test]
fn the_client_library_speaks_permessage_deflate() {
    use wsrelay::client::{Client as LibClient, Event, Options};
    let server = common::start(config(1));
    let addr = server.local_addr();
    let url = format!("ws://{addr}/");
    let options = || Options {
        deflate: true,
        ..Options::default()
    };
    let next = |c: &mut LibClient, want: &dyn Fn(&Event) -> bool| loop {
        match c.next_event(common::READ_TIMEOUT) {
            Some(e) if want(&e) => return e,
            Some(_) => {}
            None => panic!("no event"),
        }
    };
    let mut sub = LibClient::connect(&url, options()).expect("connect");
    next(&mut sub, &|e| matches!(e, Event::Connected { .. }));
    sub.subscribe("md").expect("subscribe");
    next(&mut sub, &|e| matches!(e, Event::Subscribed { .. }));
    let mut plain = Client::connect(addr);
    plain.subscribe("md");

    // Relay → library client: compressed on the wire (counted), inflated by the client.
    let mut publisher = Client::connect(addr);
    publisher.publish("md", quote(1));
    let Event::Message { content, .. } = next(&mut sub, &|e| matches!(e, Event::Message { .. }))
    else {
        unreachable!()
    };
    assert_eq!(
        serde_json::from_str::<Value>(&content).expect("JSON"),
        quote(1)
    );
    assert_eq!(plain.recv()["content"], quote(1));
    wait_for(
        addr,
        "wsrelay_deflate_compressions_total{mode=\"shared\"}",
        1.0,
    );

    // Library client → relay: compressed (inflated by the relay, counted), plain subscriber.
    let mut lib_pub = LibClient::connect(&url, options()).expect("connect");
    next(&mut lib_pub, &|e| matches!(e, Event::Connected { .. }));
    lib_pub
        .publish("md", &quote(2).to_string())
        .expect("publish");
    assert_eq!(plain.recv()["content"], quote(2));
    wait_for(
        addr,
        "wsrelay_deflate_inflations_total{outcome=\"ok\"}",
        1.0,
    );
    wait_for(
        addr,
        "wsrelay_deflate_negotiations_total{outcome=\"shared\"}",
        2.0,
    );

    // A relay without --deflate declines: the library client works uncompressed.
    let mut off = config(1);
    off.deflate_enabled = false;
    let plain_server = common::start(off);
    let mut c = LibClient::connect(&format!("ws://{}/", plain_server.local_addr()), options())
        .expect("connect");
    next(&mut c, &|e| matches!(e, Event::Connected { .. }));
}
