//! Cluster mode against real `nats-server` processes (docs/CLUSTER.md, "Guarantees"): the
//! guarantee tests of the design (shared/design/scale-out.md §12), each on its own servers
//! with a fresh store. They fail when `nats-server` is missing unless `WSRELAY_SKIP_NATS=1`
//! (see `cluster/harness.rs`). Tests assert order and completeness, never speed; deadlines
//! only stop a hung test.

mod common;
#[path = "cluster/harness.rs"]
mod harness;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::Client;
use harness::{nats_bin, NatsNode, RelayProc, TempDir};
use serde_json::{json, Value};

/// A subscriber's view: seq → content, in arrival order, plus the epoch it was told.
#[derive(Debug, Default, Clone, PartialEq)]
struct Seen {
    epoch: String,
    messages: Vec<(u64, Value)>,
}

/// Subscribes (optionally with `since`/`epoch`) and returns the `subscribed` answer.
fn subscribe(c: &mut Client, channel: &str, since: Option<(u64, &str)>) -> Value {
    let mut cmd = json!({"type": "subscribe", "channel": channel});
    if let Some((s, e)) = since {
        cmd["since"] = json!(s);
        cmd["epoch"] = json!(e);
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
fn read_until(c: &mut Client, channel: &str, last: u64) -> Vec<(u64, Value)> {
    let mut out = Vec::new();
    loop {
        let v = c.recv();
        match v["type"].as_str() {
            Some("message") if v["channel"] == channel => {
                let seq = v["seq"].as_u64().expect("seq");
                out.push((seq, v["content"].clone()));
                if seq >= last {
                    return out;
                }
            }
            Some("gap") => panic!("unexpected gap notice: {v}"),
            _ => {}
        }
    }
}

fn assert_contiguous(seen: &[(u64, Value)], from: u64, to: u64) {
    let seqs: Vec<u64> = seen.iter().map(|(s, _)| *s).collect();
    let want: Vec<u64> = (from..=to).collect();
    assert_eq!(seqs, want, "not exactly {from}..={to} in order");
}

/// Publishes `n` messages `{"n": i}` with acks; returns seq per i after all acks.
fn publish_acked(c: &mut Client, channel: &str, range: std::ops::Range<u64>) -> BTreeMap<u64, u64> {
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

fn connect(addr: SocketAddr) -> Client {
    Client::connect(addr)
}

#[test]
fn cross_node_fan_out_is_identical_on_both_relays() {
    let Some(bin) = nats_bin() else {
        return;
    };
    let dir = TempDir::new("fanout");
    let nats = NatsNode::single(&bin, &dir.0);
    let urls = [nats.url()];
    let a = RelayProc::start(&dir.0, "a", &urls, &["--history-size", "100"]);
    let b = RelayProc::start(&dir.0, "b", &urls, &["--history-size", "100"]);
    let channel = "room:1.x_y";
    let mut subs: Vec<Client> = (0..4)
        .map(|i| connect(if i % 2 == 0 { a.addr } else { b.addr }))
        .collect();
    let mut epochs = Vec::new();
    for s in subs.iter_mut() {
        let v = subscribe(s, channel, None);
        assert_eq!(v["seq"], 0, "{v}");
        epochs.push(v["epoch"].as_str().unwrap_or_default().to_string());
    }
    let n = 300;
    let mut publisher = connect(a.addr);
    let acks = publish_acked(&mut publisher, channel, 0..n);
    let acked: Vec<u64> = acks.values().copied().collect();
    assert_eq!(
        acked,
        (1..=n).collect::<Vec<_>>(),
        "acks are 1..=n in order"
    );
    let views: Vec<Vec<(u64, Value)>> =
        subs.iter_mut().map(|s| read_until(s, channel, n)).collect();
    for v in &views {
        assert_contiguous(v, 1, n);
        for (seq, content) in v {
            assert_eq!(content["n"], json!(seq - 1));
        }
        assert_eq!(v, &views[0], "identical on every subscriber of both relays");
    }
    // A late subscriber on B learns the epoch the writer minted; both relays agree.
    let mut late_a = connect(a.addr);
    let mut late_b = connect(b.addr);
    let va = subscribe(&mut late_a, channel, None);
    let vb = subscribe(&mut late_b, channel, None);
    assert_eq!(va["seq"], n);
    assert_eq!(
        (va["seq"].clone(), va["epoch"].clone()),
        (vb["seq"].clone(), vb["epoch"].clone())
    );
    assert_eq!(va["epoch"].as_str().map(str::len), Some(8), "{va}");
    drop((a, b));
}
