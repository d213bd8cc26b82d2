//! The embedded web assets over plain HTTP: the browser client at `/client.js` and
//! `/client.d.ts` (exact bytes of `clients/js/dist`, JavaScript content type, CORS for module
//! imports from other origins, always on the relay port) and the status page at `/status`
//! (where the metrics are: it moves with `metrics_addr`).

mod common;

use std::net::SocketAddr;

use common::Raw;

const CLIENT_JS: &str = include_str!("../clients/js/dist/client.js");
const CLIENT_DTS: &str = include_str!("../clients/js/dist/client.d.ts");

/// `GET path`; returns (status line, header lines, body).
fn get(addr: SocketAddr, method: &str, path: &str) -> (String, Vec<String>, String) {
    let mut raw = Raw::connect(addr);
    raw.send(format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes());
    let all = raw.read_to_end();
    let (head, body) = all.split_once("\r\n\r\n").expect("head and body");
    let mut lines = head.lines().map(str::to_owned);
    let status = lines.next().unwrap_or_default();
    (status, lines.collect(), body.to_owned())
}

fn has(headers: &[String], line: &str) -> bool {
    headers.iter().any(|h| h == line)
}

#[test]
fn client_module_and_types_are_served_with_their_content_types_and_cors() {
    let server = common::relay(2);
    let (status, headers, body) = get(server.local_addr(), "GET", "/client.js");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        has(&headers, "Content-Type: text/javascript; charset=utf-8"),
        "{headers:?}"
    );
    assert!(
        has(&headers, "Access-Control-Allow-Origin: *"),
        "{headers:?}"
    );
    assert!(has(
        &headers,
        &format!("Content-Length: {}", CLIENT_JS.len())
    ));
    assert_eq!(body, CLIENT_JS);

    let (status, headers, body) = get(server.local_addr(), "GET", "/client.d.ts?v=1");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        has(&headers, "Content-Type: text/plain; charset=utf-8"),
        "{headers:?}"
    );
    assert_eq!(body, CLIENT_DTS);

    let (status, headers, _) = get(server.local_addr(), "POST", "/client.js");
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    assert!(has(&headers, "Allow: GET"));
}

#[test]
fn status_page_is_self_contained_html() {
    let server = common::relay(2);
    let (status, headers, body) = get(server.local_addr(), "GET", "/status");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        has(&headers, "Content-Type: text/html; charset=utf-8"),
        "{headers:?}"
    );
    assert!(body.starts_with("<!doctype html>"));
    assert!(
        body.contains("fetch('stats'"),
        "polls /stats relative to itself"
    );
    // No /favicon.ico request (a counted 404 on every page load).
    assert!(body.contains("<link rel=\"icon\" href=\"data:,\">"));
    let (_, _, stats) = get(server.local_addr(), "GET", "/stats");
    let stats: serde_json::Value = serde_json::from_str(&stats).expect("stats JSON");
    assert_eq!(
        stats["counters"]["wsrelay_handshakes_rejected_total"]
            .as_object()
            .map(|o| o
                .values()
                .filter_map(serde_json::Value::as_u64)
                .sum::<u64>()),
        Some(0)
    );
    // Without --nats there is no cluster member (the page hides its section).
    assert!(stats.get("cluster").is_none());
}

#[test]
fn status_moves_with_the_metrics_address_and_the_client_stays_on_the_relay_port() {
    let config = wsrelay::Config {
        metrics_addr: Some("127.0.0.1:0".parse().expect("address")),
        ..wsrelay::Config::loopback_for_tests(2)
    };
    let server = common::start(config);
    let metrics = server.metrics_addr().expect("metrics address");
    let relay = server.local_addr();
    assert_eq!(get(metrics, "GET", "/status").0, "HTTP/1.1 200 OK");
    assert_eq!(get(relay, "GET", "/status").0, "HTTP/1.1 404 Not Found");
    assert_eq!(get(relay, "GET", "/client.js").0, "HTTP/1.1 200 OK");
    assert_eq!(
        get(metrics, "GET", "/client.js").0,
        "HTTP/1.1 404 Not Found"
    );
}

#[test]
fn stats_reports_version_uptime_and_busiest_channels() {
    // A channel is listed for the one interval that saw its publishes: make it a long one.
    let server = common::start(wsrelay::Config {
        metrics_interval: std::time::Duration::from_secs(1),
        ..wsrelay::Config::loopback_for_tests(2)
    });
    let addr = server.local_addr();
    let mut sub = common::Client::connect(addr);
    sub.subscribe("md.busy");
    let mut publisher = common::Client::connect(addr);
    for n in 0..5 {
        publisher.publish("md.busy", serde_json::json!(n));
    }
    for _ in 0..5 {
        assert_eq!(sub.recv()["type"], "message");
    }
    // Poll until the interval that saw the fifth publish is exported (at most ~5 s).
    let mut last = serde_json::Value::Null;
    for _ in 0..500 {
        let (_, _, body) = get(addr, "GET", "/stats");
        last = serde_json::from_str(&body).expect("stats JSON");
        if last["channels"]["top"][0]["seq"] == 5 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(last["relay"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(last["relay"]["revision"], wsrelay::GIT_REVISION);
    assert!(last["relay"]["uptime_ms"].is_u64());
    // The windowed relay latency (last 5 minutes) next to the cumulative one: the 5
    // deliveries were absorbed moments ago, so both hold them.
    let window = &last["latency"]["relay_window"];
    assert_eq!(window["window_s"], 300, "{window}");
    assert_eq!(
        window["count"], last["latency"]["relay"]["count"],
        "{window}"
    );
    assert!(window["count"].as_u64().is_some_and(|n| n >= 5), "{window}");
    for key in ["p50_ns", "p99_ns", "p999_ns", "max_ns"] {
        assert!(
            window[key].as_u64().is_some_and(|ns| ns > 0),
            "{key}: {window}"
        );
    }
    let top = &last["channels"]["top"][0];
    assert_eq!(
        (&top["channel"], &top["seq"]),
        (&"md.busy".into(), &5.into())
    );
}
