//! The helpers of `tests/cluster.rs`: serialising the tests, subscribing, reading a channel
//! until a seq with the checks every guarantee test makes (contiguous, no duplicate), acked and
//! steady publishing, and the relay/nats-server topologies the tests start.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::common::Client;
use super::harness;
use super::harness::{nats_bin, NatsNode, RelayProc, TempDir};
use serde_json::{json, Value};

/// The tests run one at a time (each starts up to 3 nats-servers and 3 relays on a 2-core
/// machine): every test holds this lock.
pub(super) fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Subscribes (optionally with `since`/`epoch`) and returns the `subscribed` answer.
pub(super) fn subscribe(c: &mut Client, channel: &str, since: Option<(u64, &str)>) -> Value {
    let mut cmd = json!({"type": "subscribe", "channel": channel});
    if let Some((s, e)) = since {
        cmd["since"] = json!(s);
        if !e.is_empty() {
            cmd["epoch"] = json!(e);
        }
    }
    c.send(cmd);
    loop {
        let v = c.recv();
        if v["type"] == "subscribed" {
            return v;
        }
    }
}

/// Reads messages of `channel` until `last` seq is seen (gap notices are failures).
pub(super) fn read_until(c: &mut Client, channel: &str, last: u64) -> Vec<(u64, Value)> {
    let mut out = Vec::new();
    loop {
        let v = c.recv();
        if take_message(&mut out, &v, channel, last) {
            return out;
        }
    }
}

/// Keeps `v` if it is a message of `channel`; true once seq `last` is reached. A gap notice
/// fails the test.
fn take_message(out: &mut Vec<(u64, Value)>, v: &Value, channel: &str, last: u64) -> bool {
    match v["type"].as_str() {
        Some("message") if v["channel"] == channel => {
            let seq = v["seq"].as_u64().expect("seq");
            out.push((seq, v["content"].clone()));
            seq >= last
        }
        Some("gap") => panic!("unexpected gap notice: {v}"),
        _ => false,
    }
}

/// `read_until`, reporting what arrived and the relay's cluster metrics if it times out.
pub(super) fn read_until_on(
    c: &mut Client,
    channel: &str,
    last: u64,
    relay: &RelayProc,
) -> Vec<(u64, Value)> {
    let mut out = Vec::new();
    loop {
        let v = match c.ws.read() {
            Ok(tungstenite::Message::Text(t)) => {
                serde_json::from_str::<Value>(t.as_str()).expect("json")
            }
            Ok(_) => continue,
            Err(e) => {
                let seqs: Vec<u64> = out.iter().map(|(s, _)| *s).collect();
                let metrics: Vec<String> = relay
                    .metrics()
                    .lines()
                    .filter(|l| l.starts_with("wsrelay_cluster"))
                    .map(str::to_string)
                    .collect();
                let odd: Vec<(usize, u64)> = seqs
                    .iter()
                    .enumerate()
                    .filter(|(i, s)| **s != *i as u64 + 1)
                    .map(|(i, s)| (i, *s))
                    .take(20)
                    .collect();
                panic!(
                    "{e}: got {} messages, last {:?}, out of place {odd:?}\n{}",
                    seqs.len(),
                    seqs.last(),
                    metrics.join("\n")
                );
            }
        };
        if take_message(&mut out, &v, channel, last) {
            return out;
        }
    }
}

pub(super) fn assert_contiguous(seen: &[(u64, Value)], from: u64, to: u64) {
    let seqs: Vec<u64> = seen.iter().map(|(s, _)| *s).collect();
    let want: Vec<u64> = (from..=to).collect();
    assert_eq!(seqs, want, "not exactly {from}..={to} in order");
}

/// Publishes `n` messages `{"n": i}` with acks; returns seq per i after all acks.
pub(super) fn publish_acked(
    c: &mut Client,
    channel: &str,
    range: std::ops::Range<u64>,
) -> BTreeMap<u64, u64> {
    // Acks may wait for an election (4-9 s on nats-server 2.9).
    c.ws.get_mut()
        .set_read_timeout(Some(harness::ELECTION_DEADLINE))
        .expect("timeout");
    for i in range.clone() {
        c.send(json!({"type": "message", "channel": channel, "content": {"n": i}, "id": format!("p{i}")}));
    }
    let mut acks = BTreeMap::new();
    while acks.len() < range.clone().count() {
        let v = c.recv();
        match v["type"].as_str() {
            Some("ack") => {
                let id = v["id"].as_str().expect("id");
                let i: u64 = id[1..].parse().expect("p<i>");
                acks.insert(i, v["seq"].as_u64().expect("seq"));
            }
            Some("error") => panic!("publish refused: {v}"),
            _ => {}
        }
    }
    acks
}

pub(super) fn connect(addr: SocketAddr) -> Client {
    Client::connect(addr)
}

/// A 3-server cluster (R3 streams) with relay `a` on n1 only and relay `b` on n3 only: every
/// message crosses routes, RePublish is done by whichever server leads the stream.
pub(super) fn r3_pair(
    tag: &str,
    history: &str,
) -> Option<(TempDir, harness::NatsCluster, RelayProc, RelayProc)> {
    let bin = nats_bin()?;
    let dir = TempDir::new(tag);
    let cluster = harness::NatsCluster::start(&bin, &dir.0);
    let flags = ["--nats-replicas", "3", "--history-size", history];
    let a = RelayProc::start(&dir.0, "a", &[cluster.nodes[0].url()], &flags);
    let b = RelayProc::start(&dir.0, "b", &[cluster.nodes[2].url()], &flags);
    cluster.wait_streams_led(8);
    Some((dir, cluster, a, b))
}

/// Reads `{"type":"message"}`s of `channel` (skipping anything else) until `count` arrived.
pub(super) fn read_n(c: &mut Client, channel: &str, count: usize) -> Vec<(u64, Value)> {
    let mut out = Vec::new();
    while out.len() < count {
        let v = c.recv();
        match v["type"].as_str() {
            Some("message") if v["channel"] == channel => {
                out.push((v["seq"].as_u64().expect("seq"), v["content"].clone()));
            }
            Some("gap") => panic!("unexpected gap notice: {v}"),
            _ => {}
        }
    }
    out
}

/// Publishes `range` from a fresh connection to `addr` and waits for every ack.
pub(super) fn publish_range(addr: SocketAddr, channel: &str, range: std::ops::Range<u64>) {
    let mut p = connect(addr);
    publish_acked(&mut p, channel, range);
}

/// Sends `n` acked publishes `{"n": i}` one every `every`, then collects the acks (seq per
/// i). An `unavailable` error is returned as a missing ack (the caller decides).
pub(super) fn publish_steady(
    addr: SocketAddr,
    channel: &str,
    n: u64,
    every: Duration,
) -> BTreeMap<u64, u64> {
    let mut c = connect(addr);
    for i in 0..n {
        c.send(json!({"type": "message", "channel": channel, "content": {"n": i}, "id": format!("p{i}")}));
        std::thread::sleep(every);
    }
    let mut acks = BTreeMap::new();
    let mut answered = 0;
    // Acks may wait for an election (4-9 s on 2.9): the read timeout is 5 s per message.
    c.ws.get_mut()
        .set_read_timeout(Some(harness::ELECTION_DEADLINE))
        .expect("timeout");
    while answered < n {
        let v = c.recv();
        match v["type"].as_str() {
            Some("ack") => {
                let i: u64 = v["id"].as_str().expect("id")[1..].parse().expect("p<i>");
                acks.insert(i, v["seq"].as_u64().expect("seq"));
                answered += 1;
            }
            Some("error") => {
                eprintln!("publish refused: {v}");
                answered += 1;
            }
            _ => {}
        }
    }
    acks
}

/// Reads `channel` up to seq `last` with a long read timeout; gap notices are allowed and
/// returned. Asserts there is no silent hole: every seq is delivered or inside a notice.
pub(super) fn read_accounted(
    c: &mut Client,
    channel: &str,
    last: u64,
) -> (Vec<u64>, Vec<(u64, u64)>) {
    c.ws.get_mut()
        .set_read_timeout(Some(harness::ELECTION_DEADLINE))
        .expect("timeout");
    let (mut seqs, mut gaps) = (Vec::new(), Vec::new());
    let mut next = 1;
    while next <= last {
        let v = c.recv();
        match v["type"].as_str() {
            Some("message") if v["channel"] == channel => {
                let seq = v["seq"].as_u64().expect("seq");
                assert_eq!(seq, next, "silent hole or reorder before {seq}");
                seqs.push(seq);
                next = seq + 1;
            }
            Some("gap") if v["channel"] == channel => {
                let (from, to) = (
                    v["from"].as_u64().unwrap_or(0),
                    v["to"].as_u64().unwrap_or(0),
                );
                assert_eq!(
                    from, next,
                    "gap notice starts at the first missing seq: {v}"
                );
                gaps.push((from, to));
                next = to + 1;
            }
            _ => {}
        }
    }
    (seqs, gaps)
}

/// A 3-server JetStream cluster (the test starts its relays on it).
pub(super) fn three_nodes(tag: &str) -> Option<(TempDir, harness::NatsCluster)> {
    let bin = nats_bin()?;
    let dir = TempDir::new(tag);
    let cluster = harness::NatsCluster::start(&bin, &dir.0);
    Some((dir, cluster))
}

/// `/stats` of a relay whose NATS server (`killed`) was lost: connected again, to another
/// server (its INFO is read just after the reconnection), one reconnection counted.
pub(super) fn assert_stats_moved_away(relay: &RelayProc, killed: &str) {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let node = relay.stats()["cluster"].clone();
        let port = node["nats_server"]["port"].to_string();
        let moved = node["nats_server"]["port"].is_u64() && !killed.ends_with(&format!(":{port}"));
        if moved || Instant::now() > until {
            assert!(moved, "{node} still names {killed}");
            assert_eq!(node["nats_connected"], true, "{node}");
            let reconnects = &node["counters"]["wsrelay_cluster_nats_reconnects_total"];
            assert!(reconnects.as_u64() >= Some(1), "{node}");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads `channel` up to seq `last` (gap notices fail); returns the longest wait between two
/// deliveries (recorded, never asserted).
pub(super) fn read_timed(c: &mut Client, channel: &str, last: u64) -> Duration {
    c.ws.get_mut()
        .set_read_timeout(Some(harness::ELECTION_DEADLINE))
        .expect("timeout");
    let (mut next, mut at, mut widest) = (1, Instant::now(), Duration::ZERO);
    while next <= last {
        let v = c.recv();
        match v["type"].as_str() {
            Some("message") if v["channel"] == channel => {
                let seq = v["seq"].as_u64().expect("seq");
                assert_eq!(seq, next, "silent hole or reorder before {seq}");
                widest = widest.max(at.elapsed());
                at = Instant::now();
                next = seq + 1;
            }
            Some("gap") => panic!("gap notice: {v}"),
            _ => {}
        }
    }
    widest
}

/// The next binary message (skipping text and control frames).
pub(super) fn read_binary(c: &mut Client) -> Vec<u8> {
    loop {
        match c.ws.read().expect("read") {
            tungstenite::Message::Binary(b) => return b.to_vec(),
            tungstenite::Message::Text(_)
            | tungstenite::Message::Ping(_)
            | tungstenite::Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// The `data-path`s of the status page's cluster section (`cluster.…`).
pub(super) fn status_page_cluster_paths() -> Vec<String> {
    let html = include_str!("../../src/web/status.html");
    html.split("data-path=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|p| p.starts_with("cluster."))
        .map(str::to_string)
        .collect()
}

/// The value at a dotted path; `None` when a key is missing (`null` is a value).
pub(super) fn at<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

/// `/stats`'s `cluster` member of a relay just connected to `nats`: its node, the connection,
/// the server, nothing reconnected yet.
pub(super) fn assert_connected_identity(cluster: &Value, node_prefix: &str, nats: &NatsNode) {
    assert!(
        cluster["node"]
            .as_str()
            .is_some_and(|n| n.starts_with(node_prefix)),
        "{cluster}"
    );
    assert_eq!(cluster["nats_connected"], true, "{cluster}");
    assert_eq!(cluster["ready"], true);
    let port = nats
        .url()
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        cluster["nats_server"]["port"].to_string(),
        port,
        "{cluster}"
    );
    assert!(cluster["nats_server"]["version"]
        .as_str()
        .is_some_and(|v| !v.is_empty()));
    assert_eq!(cluster["gauges"]["wsrelay_cluster_nats_connected"], 1);
    assert_eq!(
        cluster["counters"]["wsrelay_cluster_nats_reconnects_total"],
        0
    );
}
