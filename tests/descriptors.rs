//! Descriptor exhaustion, against the real binary under a low `RLIMIT_NOFILE` (set by the
//! shell's `ulimit` before `exec`): a flood past the limit gets answers (101 while descriptors
//! last, then 503 with `Retry-After`), never silence; established clients keep receiving; once
//! the flood is gone (the open-connection gauge is back to what it was before), the first new
//! client is upgraded: nobody has to knock first.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Client, Raw};
use serde_json::json;

/// Descriptors the relay may open: enough for its own (~10) and a few dozen clients.
const NOFILE: u32 = 64;
/// Connections of the flood: well past the limit.
const FLOOD: usize = 200;

/// The relay process; killed (by its own PID) when the test ends, also on failure.
struct Relay(Child);

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_limited_relay() -> (Relay, SocketAddr) {
    let script = format!("ulimit -n {NOFILE} && exec \"$0\" \"$@\"");
    let mut child = Command::new("bash")
        .args(["-c", &script, env!("CARGO_BIN_EXE_wsrelay")])
        .args([
            "serve",
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--threads",
            "1",
        ])
        .args(["--connect-rate-per-ip", "0", "--connect-rate", "0"])
        .args(["--metrics-interval", "20"])
        .env("RUST_LOG", "warn,wsrelay=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash runs the relay");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let relay = Relay(child);
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).expect("read stderr") > 0,
            "relay exited before listening"
        );
        if let Some(rest) = line.split("listening on ws://").nth(1) {
            let addr = rest.split_whitespace().next().expect("address");
            break addr.parse().expect("socket address");
        }
    };
    // Keep draining its log so that it never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = stderr.read_to_end(&mut sink);
    });
    (relay, addr)
}

/// The status line a flood connection got, or what happened instead.
fn status_of(raw: &mut Raw) -> String {
    let mut byte = [0u8; 1];
    let mut line = Vec::new();
    loop {
        match raw.stream.read(&mut byte) {
            Ok(0) => return "EOF".into(),
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(e) => return format!("error: {e}"),
        }
    }
    String::from_utf8_lossy(&line).trim_end().to_string()
}

#[test]
fn a_flood_past_the_descriptor_limit_is_answered_and_accepting_resumes_by_itself() {
    let (_relay, addr) = spawn_limited_relay();
    let mut subscriber = Client::connect(addr);
    subscriber.subscribe("t");
    let mut publisher = Client::connect(addr);
    // The baseline: the subscriber and the publisher.
    let baseline = 2;
    wait_for_open_connections(addr, baseline);

    let (flood, refused) = flood_past_the_limit(addr);

    // At the limit, established clients are still served.
    publisher.publish("t", json!({"at": "limit"}));
    let got = subscriber.recv();
    assert_eq!(
        (got["seq"].as_u64(), &got["content"]),
        (Some(1), &json!({"at": "limit"}))
    );

    // The flood leaves. Once the relay has closed its connections (the open-connection gauge
    // is back to its baseline: polled, bounded, no sleep threshold), the FIRST new client is
    // upgraded: accepting resumed by itself, nobody had to knock first.
    drop(flood);
    wait_for_open_connections(addr, baseline);
    let mut newcomer = Raw::connect(addr);
    newcomer.send(common::upgrade_request("/").as_bytes());
    let head = newcomer.read_head();
    assert!(
        head.starts_with("HTTP/1.1 101"),
        "first client after the flood: {head}"
    );
    assert_eq!(newcomer.read_json()["type"], "connected");
    assert_refusals_counted(addr, refused);
}

/// The `wsrelay_connections_open` gauge, or `None` when the scrape was refused (a 503 or a
/// reset while the relay is at its descriptor limit).
fn open_connections(addr: SocketAddr) -> Option<u64> {
    use std::io::Write;
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(common::READ_TIMEOUT)).ok()?;
    let request = "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).ok()?;
    let mut all = String::new();
    stream.read_to_string(&mut all).ok()?;
    if !all.starts_with("HTTP/1.1 200") {
        return None;
    }
    all.lines()
        .find_map(|l| l.strip_prefix("wsrelay_connections_open ")?.parse().ok())
}

/// Scrapes until the gauge reads `want` (at most 500 scrapes, 20 ms apart: the exporter's
/// view lags by one snapshot).
fn wait_for_open_connections(addr: SocketAddr, want: u64) {
    let mut last = None;
    for _ in 0..500 {
        last = open_connections(addr);
        if last == Some(want) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("open connections never back to {want}: last scrape {last:?}");
}

/// The flood: every connection sends its upgrade request and waits for an answer, which is a
/// 101 for some and a 503 for the others. Returns the connections (still open) and how many
/// were refused.
fn flood_past_the_limit(addr: SocketAddr) -> (Vec<Raw>, usize) {
    let mut flood: Vec<Raw> = (0..FLOOD)
        .map(|_| {
            let mut raw = Raw::connect(addr);
            raw.send(common::upgrade_request("/").as_bytes());
            raw
        })
        .collect();
    let (mut upgraded, mut refused) = (0, 0);
    for (i, raw) in flood.iter_mut().enumerate() {
        let status = status_of(raw);
        match status.get(..12) {
            Some("HTTP/1.1 101") => upgraded += 1,
            Some("HTTP/1.1 503") => refused += 1,
            _ => panic!("flood connection {i} got no answer: {status}"),
        }
    }
    assert!(
        upgraded > 0 && refused > 0,
        "{upgraded} upgraded, {refused} refused"
    );
    (flood, refused)
}

/// What happened is counted: `refused` sheds and at least one EMFILE (the exporter's view
/// lags by one snapshot: look until seen, bounded).
fn assert_refusals_counted(addr: SocketAddr, refused: usize) {
    let counted = |metrics: &str, series: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let shed = "wsrelay_connections_closed_total{reason=\"descriptor_limit\"}";
    let emfile = "wsrelay_accept_errors_total{reason=\"emfile\"}";
    for attempt in 0.. {
        let (status, metrics) = common::http_get(addr, "/metrics");
        assert!(status.contains("200"), "{status}");
        if counted(&metrics, shed) >= refused as u64 && counted(&metrics, emfile) > 0 {
            break;
        }
        assert!(attempt < 250, "refusals not counted:\n{metrics}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
