//! Observability against a live relay: after a known workload, `/metrics` parses strictly as
//! Prometheus text and its counters equal what was sent; `/stats` has the same figures; the
//! relay-latency histogram counted one sample per delivery.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::{http_get, unmasked_frame, Client, Raw};
use serde_json::{json, Value};

/// Series name with labels (as written) → value.
type Samples = BTreeMap<String, f64>;

/// A strict parser of the Prometheus text exposition format 0.0.4 (the subset we emit):
/// every family has `# HELP` then `# TYPE` before its samples, names and labels are valid,
/// values parse, counters end in `_total`, no series twice.
fn parse_prometheus(text: &str) -> Samples {
    let mut exposition = Exposition::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            exposition.help(line, rest);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            exposition.type_line(line, rest);
        } else {
            exposition.sample(line);
        }
    }
    exposition.samples
}

/// What `parse_prometheus` has read so far.
#[derive(Default)]
struct Exposition {
    samples: Samples,
    /// Family name → type.
    typed: BTreeMap<String, String>,
    last_help: Option<String>,
}

impl Exposition {
    fn help(&mut self, line: &str, rest: &str) {
        let name = rest.split(' ').next().unwrap();
        assert!(valid_name(name), "bad name in HELP: {line}");
        self.last_help = Some(name.to_string());
    }

    fn type_line(&mut self, line: &str, rest: &str) {
        let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
        assert_eq!(
            self.last_help.as_deref(),
            Some(name),
            "TYPE must follow its HELP: {line}"
        );
        assert!(
            ["counter", "gauge", "summary", "histogram"].contains(&kind),
            "{line}"
        );
        if kind == "counter" {
            assert!(name.ends_with("_total"), "counter without _total: {name}");
        }
        assert!(
            self.typed
                .insert(name.to_string(), kind.to_string())
                .is_none(),
            "{name} twice"
        );
    }

    fn sample(&mut self, line: &str) {
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "unexpected line: {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').expect("series value");
        let name = series.split('{').next().unwrap();
        assert!(valid_name(name), "bad sample name: {line}");
        let family = self
            .typed
            .keys()
            .find(|f| {
                name == f.as_str()
                    || name
                        .strip_prefix(f.as_str())
                        .is_some_and(|s| ["_sum", "_count"].contains(&s))
            })
            .unwrap_or_else(|| panic!("sample before its TYPE: {line}"));
        assert!(!family.is_empty());
        if let Some(labels) = series.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "{line}"
            );
        }
        let v: f64 = match value {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        assert!(
            self.samples.insert(series.to_string(), v).is_none(),
            "series twice: {series}"
        );
    }
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn metrics(addr: SocketAddr) -> Samples {
    let (status, body) = http_get(addr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    parse_prometheus(&body)
}

/// Snapshots reach the exporter every `metrics_interval` (50 ms in tests): wait, bounded by a
/// count, until the figure settles at `want`.
fn wait_for(addr: SocketAddr, series: &str, want: f64) -> Samples {
    for _ in 0..200 {
        let m = metrics(addr);
        if m.get(series) == Some(&want) {
            return m;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!(
        "{series} never reached {want}: {:?}",
        metrics(addr).get(series)
    );
}

/// The known workload: 6 subscribers of `m` over both loops, one publisher of 10 messages,
/// every delivery received. Returns the clients (they stay connected) and the publisher.
fn subscribe_and_publish_ten(addr: SocketAddr) -> (Vec<Client>, Client) {
    let mut subs = common::clients_on_every_loop(addr, 2, 6);
    for s in subs.iter_mut() {
        s.subscribe("m");
    }
    let mut publisher = Client::connect(addr);
    for i in 0..10 {
        publisher.publish("m", json!(i));
    }
    for s in subs.iter_mut() {
        for i in 0..10 {
            assert_eq!(s.recv()["content"], i);
        }
    }
    (subs, publisher)
}

#[test]
fn counters_equal_the_workload_and_stats_agree() {
    let server = common::relay(2);
    let addr = server.local_addr();
    let (subs, _publisher) = subscribe_and_publish_ten(addr);
    let n = subs.len() as f64;
    let m = wait_for(addr, "wsrelay_messages_delivered_total", 10.0 * n);
    assert_eq!(
        m["wsrelay_messages_published_total{encoding=\"json\"}"],
        10.0
    );
    assert_eq!(
        m["wsrelay_messages_published_total{encoding=\"binary\"}"],
        0.0
    );
    // Accepted TCP connections also count these /metrics requests; upgrades do not.
    assert_eq!(m["wsrelay_handshakes_completed_total"], n + 1.0);
    assert_eq!(m["wsrelay_connections_open"], n + 1.0);
    assert_eq!(m["wsrelay_subscriptions"], n);
    let m = wait_for(addr, "wsrelay_relay_latency_seconds_count", 10.0 * n);
    assert!(m["wsrelay_relay_latency_seconds_sum"] > 0.0);
    assert!(m["wsrelay_relay_latency_seconds{quantile=\"0.99\"}"] > 0.0);
    // Text frames received: one subscribe per subscriber + 10 publishes.
    assert_eq!(
        m["wsrelay_frames_received_total{opcode=\"text\"}"],
        n + 10.0
    );
    assert_syscalls_bounded_by_frames(&m, n);
    assert_stats_agree(addr, subs.len() as u64);
}

/// Socket syscalls: every upgrade (`n` + 1) needs at least one read and one write (the 101);
/// no syscall moves less than a frame or a request here, so none can outnumber them.
fn assert_syscalls_bounded_by_frames(m: &Samples, n: f64) {
    let family_sum = |prefix: &str| -> f64 {
        m.iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| *v)
            .sum()
    };
    let requests = family_sum("wsrelay_http_requests_total") + n + 1.0;
    let reads = m["wsrelay_socket_syscalls_total{direction=\"read\"}"];
    let writes = m["wsrelay_socket_syscalls_total{direction=\"write\"}"];
    assert!(reads >= n + 1.0, "reads {reads}");
    assert!(
        reads <= family_sum("wsrelay_frames_received_total") + requests,
        "reads {reads}"
    );
    assert!(writes >= n + 1.0, "writes {writes}");
    assert!(
        writes <= family_sum("wsrelay_frames_sent_total") + requests,
        "writes {writes}"
    );
}

/// `/stats` has the figures of the workload of `n` subscribers (plus the publisher).
fn assert_stats_agree(addr: SocketAddr, n: u64) {
    let (status, body) = http_get(addr, "/stats");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let stats: Value = serde_json::from_str(&body).expect("stats is JSON");
    assert_eq!(
        stats["counters"]["wsrelay_messages_delivered_total"],
        10 * n
    );
    assert_eq!(
        stats["counters"]["wsrelay_messages_published_total"]["json"],
        10
    );
    assert_eq!(stats["latency"]["relay"]["count"], 10 * n);
    assert_eq!(stats["gauges"]["wsrelay_connections_open"], n + 1);
}

#[test]
fn refusals_and_errors_are_counted_by_kind() {
    let server = common::relay(1);
    let addr = server.local_addr();
    let (status, _) = http_get(addr, "/nope");
    assert!(status.starts_with("HTTP/1.1 404"));
    let mut bad = Raw::upgraded(addr, "/");
    bad.send(&unmasked_frame(0x81, b"x"));
    assert_eq!(bad.read_close_code(), Some(1002));
    let mut c = Client::connect(addr);
    c.send_text("{oops");
    assert_eq!(c.recv()["message"], "Invalid JSON");
    let m = wait_for(
        addr,
        "wsrelay_command_errors_total{kind=\"invalid_json\"}",
        1.0,
    );
    assert_eq!(m["wsrelay_handshakes_rejected_total{status=\"404\"}"], 1.0);
    assert_eq!(
        m["wsrelay_protocol_errors_total{kind=\"unmasked_client_frame\"}"],
        1.0
    );
    assert_eq!(m["wsrelay_close_codes_sent_total{code=\"1002\"}"], 1.0);
    let m = wait_for(
        addr,
        "wsrelay_connections_closed_total{reason=\"protocol_error\"}",
        1.0,
    );
    assert_eq!(m["wsrelay_http_requests_total{path=\"not_found\"}"], 1.0);
}

#[test]
fn healthz_answers_while_the_loops_run() {
    let server = common::relay(2);
    let (status, body) = http_get(server.local_addr(), "/healthz");
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("HTTP/1.1 200 OK", "ok\n")
    );
}

#[test]
fn metrics_can_live_on_a_separate_address() {
    let config = wsrelay::Config {
        metrics_addr: Some("127.0.0.1:0".parse().unwrap()),
        ..wsrelay::Config::loopback_for_tests(2)
    };
    let server = common::start(config);
    let maddr = server.metrics_addr().expect("metrics address");
    let (status, _) = http_get(maddr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    // The relay port no longer serves metrics.
    let (status, _) = http_get(server.local_addr(), "/metrics");
    assert!(status.starts_with("HTTP/1.1 404"), "{status}");
}
