//! Behind load balancers, against a live relay on 127.0.0.1: the PROXY protocol header (v1 and
//! v2) and a trusted proxy's `X-Forwarded-For` set the client address that the per-IP limits
//! count; malformed or missing headers are dropped and counted; forwarding headers from
//! untrusted peers are ignored.

mod common;

use std::net::{Ipv6Addr, SocketAddr};
use std::time::Duration;

use common::{http_get, upgrade_request, Raw};
use wsrelay::cidr::Cidr;
use wsrelay::config::ForwardedHeader;
use wsrelay::{Config, ServerHandle};

/// A relay with at most one open connection per client address, metrics on their own port (the
/// relay port requires the PROXY header when `proxy_protocol` is on).
fn relay(proxy_protocol: bool, trusted: &[&str]) -> ServerHandle {
    let config = Config {
        connections_per_ip_max: 1,
        proxy_protocol,
        trusted_proxies: trusted.iter().map(|c| c.parse::<Cidr>().unwrap()).collect(),
        metrics_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..Config::loopback_for_tests(2)
    };
    common::start(config)
}

fn v1(source: &str) -> Vec<u8> {
    format!("PROXY TCP4 {source} 10.0.0.5 40000 443\r\n").into_bytes()
}

fn v1_tcp6(source: &str) -> Vec<u8> {
    format!("PROXY TCP6 {source} 2001:db8::1 40000 443\r\n").into_bytes()
}

/// A v2 header: signature, version 2 + `command`, `fam`, length, `payload`.
fn v2(command: u8, fam: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.extend_from_slice(&[0x20 | command, fam]);
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn v2_tcp4(source: [u8; 4]) -> Vec<u8> {
    let mut payload = source.to_vec();
    payload.extend_from_slice(&[10, 0, 0, 5, 0x9c, 0x40, 0x01, 0xbb]);
    v2(0x1, 0x11, &payload)
}

fn v2_tcp6(source: &str) -> Vec<u8> {
    let mut payload = source.parse::<Ipv6Addr>().unwrap().octets().to_vec();
    payload.extend_from_slice(&"2001:db8::ffff".parse::<Ipv6Addr>().unwrap().octets());
    payload.extend_from_slice(&[0x9c, 0x40, 0x01, 0xbb]);
    v2(0x1, 0x21, &payload)
}

/// Sends `prefix` and the upgrade request in one write (one segment); returns the client and
/// the status line of the answer.
fn upgrade_after(addr: SocketAddr, prefix: &[u8], extra_headers: &str) -> (Raw, String) {
    let mut raw = Raw::connect(addr);
    let mut bytes = prefix.to_vec();
    let request = upgrade_request("/").replace(
        "Host: localhost\r\n",
        &format!("Host: localhost\r\n{extra_headers}"),
    );
    bytes.extend_from_slice(request.as_bytes());
    raw.send(&bytes);
    let status = raw
        .read_head()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    (raw, status)
}

const OK: &str = "HTTP/1.1 101 Switching Protocols";
const FULL: &str = "HTTP/1.1 503 Service Unavailable";

/// The value of `series` (exactly as exported, labels included) on the metrics port.
fn sample(server: &ServerHandle, series: &str) -> Option<f64> {
    let addr = server.metrics_addr().expect("metrics address");
    let (status, body) = http_get(addr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Metrics are exported every 50 ms in tests: polls, a bounded number of times, until `series`
/// equals `want`.
fn wait_for(server: &ServerHandle, series: &str, want: f64) {
    for _ in 0..200 {
        if sample(server, series) == Some(want) {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!(
        "{series} never reached {want}: {:?}",
        sample(server, series)
    );
}

#[test]
fn proxy_v1_addresses_are_what_the_per_ip_limit_counts() {
    let server = relay(true, &[]);
    let addr = server.local_addr();
    let (mut a, status) = upgrade_after(addr, &v1("192.0.2.1"), "");
    assert_eq!(status, OK);
    let connected = a.read_json();
    assert_eq!(
        connected["addr"], "192.0.2.1",
        "the client is told its address: {connected}"
    );
    let (_b, status) = upgrade_after(addr, &v1("192.0.2.2"), "");
    assert_eq!(
        status, OK,
        "another client behind the same proxy is admitted"
    );
    let (_c, status) = upgrade_after(addr, &v1("192.0.2.1"), "");
    assert_eq!(status, FULL, "the same client is over its limit of 1");
    let (mut d, status) = upgrade_after(addr, &v1_tcp6("2001:db8::7"), "");
    assert_eq!(status, OK, "a TCP6 client is a new address");
    assert_eq!(d.read_json()["addr"], "2001:db8::7");
    let (_e, status) = upgrade_after(addr, &v1_tcp6("2001:db8::7"), "");
    assert_eq!(status, FULL, "the same TCP6 client is over its limit of 1");
    wait_for(&server, "wsrelay_proxy_headers_total{result=\"v1\"}", 5.0);
    wait_for(
        &server,
        "wsrelay_handshakes_rejected_total{status=\"503\"}",
        2.0,
    );
}

#[test]
fn proxy_v2_tcp4_and_tcp6_addresses_are_what_the_per_ip_limit_counts() {
    let server = relay(true, &[]);
    let addr = server.local_addr();
    let (_a, status) = upgrade_after(addr, &v2_tcp4([198, 51, 100, 1]), "");
    assert_eq!(status, OK);
    let (_b, status) = upgrade_after(addr, &v2_tcp4([198, 51, 100, 2]), "");
    assert_eq!(status, OK);
    let (_c, status) = upgrade_after(addr, &v2_tcp6("2001:db8::1"), "");
    assert_eq!(status, OK);
    let (_d, status) = upgrade_after(addr, &v2_tcp4([198, 51, 100, 1]), "");
    assert_eq!(status, FULL);
    let (_e, status) = upgrade_after(addr, &v2_tcp6("2001:db8::1"), "");
    assert_eq!(status, FULL);
    wait_for(&server, "wsrelay_proxy_headers_total{result=\"v2\"}", 5.0);
}

#[test]
fn proxy_v2_local_uses_the_tcp_peer() {
    let server = relay(true, &[]);
    let addr = server.local_addr();
    // LOCAL: the proxy's own connection (a health check), from 127.0.0.1.
    let (_a, status) = upgrade_after(addr, &v2(0x0, 0x00, &[]), "");
    assert_eq!(status, OK);
    // A relayed client is someone else...
    let (_b, status) = upgrade_after(addr, &v2_tcp4([127, 0, 0, 2]), "");
    assert_eq!(status, OK);
    // ...but another LOCAL connection is the same peer, 127.0.0.1.
    let (_c, status) = upgrade_after(addr, &v2(0x0, 0x00, &[]), "");
    assert_eq!(status, FULL);
    wait_for(
        &server,
        "wsrelay_proxy_headers_total{result=\"local\"}",
        2.0,
    );
}

#[test]
fn a_header_split_over_several_writes_is_reassembled() {
    let server = relay(true, &[]);
    let mut raw = Raw::connect(server.local_addr());
    let header = v2_tcp4([203, 0, 113, 5]);
    raw.send(&header[..7]);
    std::thread::sleep(Duration::from_millis(20));
    raw.send(&header[7..]);
    std::thread::sleep(Duration::from_millis(20));
    raw.send(upgrade_request("/").as_bytes());
    assert!(raw.read_head().starts_with(OK));
    assert_eq!(raw.read_json()["type"], "connected");
}

#[test]
fn malformed_and_missing_headers_are_dropped_without_an_answer_and_counted() {
    let server = relay(true, &[]);
    let addr = server.local_addr();
    let malformed: [&[u8]; 3] = [
        b"PROXY TCP4 192.0.2.1 10.0.0.5 40000 443\n",
        b"PROXY TCP4 192.0.2.999 10.0.0.5 40000 443\r\n",
        &[
            13, 10, 13, 10, 0, 13, 10, 81, 85, 73, 84, 10, 0x31, 0x11, 0, 12,
        ],
    ];
    for header in malformed {
        let mut raw = Raw::connect(addr);
        let mut bytes = header.to_vec();
        bytes.extend_from_slice(upgrade_request("/").as_bytes());
        raw.send(&bytes);
        assert_eq!(raw.read_to_end(), "", "dropped without a byte");
    }
    // No header at all: a plain upgrade request is refused the same way.
    let mut raw = Raw::connect(addr);
    raw.send(upgrade_request("/").as_bytes());
    assert_eq!(raw.read_to_end(), "");
    wait_for(
        &server,
        "wsrelay_proxy_headers_total{result=\"malformed\"}",
        3.0,
    );
    wait_for(
        &server,
        "wsrelay_proxy_headers_total{result=\"missing\"}",
        1.0,
    );
    wait_for(
        &server,
        "wsrelay_connections_closed_total{reason=\"proxy_header\"}",
        4.0,
    );
    assert_eq!(
        sample(&server, "wsrelay_handshakes_completed_total"),
        Some(0.0)
    );
}

#[test]
fn a_released_address_can_connect_again() {
    let server = relay(true, &[]);
    let addr = server.local_addr();
    let (a, status) = upgrade_after(addr, &v1("192.0.2.1"), "");
    assert_eq!(status, OK);
    drop(a);
    // The slot is released when the relay reaps the connection: retry a bounded number of
    // times. The refusals in between must not release anything (the count stays exact).
    let held = (0..200).find_map(|_| {
        let (raw, status) = upgrade_after(addr, &v1("192.0.2.1"), "");
        if status != OK {
            std::thread::sleep(Duration::from_millis(10));
        }
        (status == OK).then_some(raw)
    });
    assert!(held.is_some(), "the address was never released");
    let (_d, status) = upgrade_after(addr, &v1("192.0.2.1"), "");
    assert_eq!(status, FULL, "counted again while held");
}

#[test]
fn x_forwarded_for_is_honoured_from_a_trusted_proxy() {
    // The test's own connections come from 127.0.0.1: the trusted proxy.
    let server = relay(false, &["127.0.0.0/8"]);
    let addr = server.local_addr();
    let (mut a, status) = upgrade_after(addr, &[], "X-Forwarded-For: 203.0.113.1\r\n");
    assert_eq!(status, OK);
    assert_eq!(a.read_json()["addr"], "203.0.113.1");
    // The rightmost untrusted hop: the client's own claim (1.1.1.1) is skipped.
    let xff = "X-Forwarded-For: 1.1.1.1, 203.0.113.2, 127.0.0.9\r\n";
    let (_b, status) = upgrade_after(addr, &[], xff);
    assert_eq!(status, OK, "a different client behind the proxy");
    let (_c, status) = upgrade_after(addr, &[], "X-Forwarded-For: 9.9.9.9, 203.0.113.2\r\n");
    assert_eq!(status, FULL, "203.0.113.2 already holds its one connection");
    wait_for(
        &server,
        "wsrelay_forwarded_headers_total{result=\"used\"}",
        3.0,
    );
}

#[test]
fn x_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let server = relay(false, &["10.0.0.0/8"]);
    let addr = server.local_addr();
    let (_a, status) = upgrade_after(addr, &[], "X-Forwarded-For: 203.0.113.1\r\n");
    assert_eq!(status, OK);
    // Claiming another address changes nothing: both are 127.0.0.1.
    let (_b, status) = upgrade_after(addr, &[], "X-Forwarded-For: 203.0.113.2\r\n");
    assert_eq!(status, FULL);
    // Only the admitted connection's head was read (the other was refused at accept).
    wait_for(
        &server,
        "wsrelay_forwarded_headers_total{result=\"ignored\"}",
        1.0,
    );
    assert_eq!(
        sample(&server, "wsrelay_forwarded_headers_total{result=\"used\"}"),
        Some(0.0)
    );
}

#[test]
fn a_trusted_address_from_the_proxy_header_makes_the_forwarding_header_count() {
    // An L4 balancer (PROXY header) in front of a trusted L7 proxy (10.1.1.1) that writes
    // `Forwarded`.
    let config = Config {
        connections_per_ip_max: 1,
        proxy_protocol: true,
        trusted_proxies: vec!["10.1.1.0/24".parse().unwrap()],
        forwarded_header: ForwardedHeader::Forwarded,
        metrics_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..Config::loopback_for_tests(1)
    };
    let server = common::start(config);
    let addr = server.local_addr();
    let from_l7 = v1("10.1.1.1");
    let (_a, status) = upgrade_after(addr, &from_l7, "Forwarded: for=203.0.113.1\r\n");
    assert_eq!(status, OK);
    let (_b, status) = upgrade_after(addr, &from_l7, "Forwarded: for=\"[2001:db8::1]:9\"\r\n");
    assert_eq!(status, OK);
    // X-Forwarded-For is not the configured header: 10.1.1.1 itself is the client here.
    let (_c, status) = upgrade_after(addr, &from_l7, "X-Forwarded-For: 203.0.113.9\r\n");
    assert_eq!(status, OK);
    let (_d, status) = upgrade_after(addr, &from_l7, "");
    assert_eq!(status, FULL, "10.1.1.1 already holds its one connection");
    let (_e, status) = upgrade_after(addr, &from_l7, "Forwarded: for=203.0.113.1\r\n");
    assert_eq!(status, FULL);
}

/// A relay with one loop (connections are accepted in the order they were made) that requires
/// the PROXY header, with the process-wide limits `connections_max` and `connect_rate_per_s`.
fn process_limited_relay(connections_max: usize, connect_rate_per_s: u64) -> ServerHandle {
    common::start(Config {
        proxy_protocol: true,
        connections_max,
        connect_rate_per_s,
        metrics_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..Config::loopback_for_tests(1)
    })
}

/// The status line a connection that sends nothing is answered with.
fn silent_answer(addr: SocketAddr) -> String {
    let mut raw = Raw::connect(addr);
    raw.read_head()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn with_proxy_protocol_the_process_wide_limits_apply_at_accept() {
    // Connections that never send their header no longer escape --max-connections: the third
    // is answered 503 before it sends a byte.
    let server = process_limited_relay(2, 0);
    let addr = server.local_addr();
    let _silent = [Raw::connect(addr), Raw::connect(addr)];
    assert_eq!(silent_answer(addr), FULL);
    wait_for(
        &server,
        "wsrelay_connections_closed_total{reason=\"server_full\"}",
        1.0,
    );
    // Nor --connect-rate: 1 per second, the second within that second is refused at once.
    let server = process_limited_relay(100, 1);
    let addr = server.local_addr();
    let _first = Raw::connect(addr);
    assert_eq!(silent_answer(addr), "HTTP/1.1 503 Service Unavailable");
    wait_for(
        &server,
        "wsrelay_connections_closed_total{reason=\"rate_limited\"}",
        1.0,
    );
    // A connection within the limits still waits for its header, and its address is counted.
    let server = process_limited_relay(2, 0);
    let (mut a, status) = upgrade_after(server.local_addr(), &v1("192.0.2.1"), "");
    assert_eq!(status, OK);
    assert_eq!(a.read_json()["addr"], "192.0.2.1");
    assert_eq!(
        sample(&server, "wsrelay_proxy_headers_total{result=\"missing\"}"),
        Some(0.0)
    );
}
