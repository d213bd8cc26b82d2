//! Keyed snapshots (`--snapshot-for`) over real sockets: the seam between the snapshot and the
//! live stream under concurrent publishing on every loop, `"delete":true`, the key and byte
//! limits with their counters, recovery with `since`, and the binary snapshot.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::Client;
use serde_json::{json, Value};
use wsrelay::auth::ChannelPattern;
use wsrelay::command::decode_binary_snapshot;
use wsrelay::Config;

fn config(loops: usize) -> Config {
    Config {
        snapshot_patterns: vec![ChannelPattern::parse("board.*").expect("pattern")],
        ..Config::loopback_for_tests(loops)
    }
}

/// key → (content, seq): the state a client keeps from a snapshot and live messages.
use common::board::{apply, board_of};

/// Subscribes and returns (the `subscribed` seq, the snapshot).
fn subscribe_snapshot(c: &mut Client, channel: &str) -> (u64, Value) {
    let reply = c.subscribe(channel);
    let snapshot = c.recv();
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    assert_eq!(snapshot["seq"], reply["seq"]);
    assert_eq!(snapshot["epoch"], reply["epoch"]);
    (reply["seq"].as_u64().unwrap(), snapshot)
}

const PUBLISHERS: usize = 3;
const PER_PUBLISHER: usize = 600;
const KEYS: usize = 40;

/// One publisher's workload: keyed updates, every 7th a delete of its key. Halfway it waits
/// for the owner's ack of its last first-half message (all of them are numbered then), then
/// at `halfway` twice.
fn publish_all(addr: SocketAddr, p: usize, halfway: &Barrier) {
    let mut c = Client::connect(addr);
    for n in 0..PER_PUBLISHER {
        let key = format!("k{}", (n * 7 + p) % KEYS);
        let mut msg = json!({"type": "message", "channel": "board.1", "key": key,
                             "content": {"p": p, "n": n}});
        if n % 7 == 6 {
            msg["delete"] = json!(true);
        }
        let last_of_half = n == PER_PUBLISHER / 2 - 1;
        if last_of_half {
            msg["id"] = json!("half");
        }
        c.send(msg);
        if last_of_half {
            while c.recv()["type"] != "ack" {}
            halfway.wait();
            halfway.wait();
        } else if n % 50 == 0 {
            c.ping(); // pace the publishers so subscribes land between their messages
        }
    }
    c.ping();
}

#[test]
fn snapshot_then_live_meet_with_no_gap_and_no_duplicate_under_concurrent_publishing() {
    let server = common::start(config(2));
    let addr = server.local_addr();
    let total = (PUBLISHERS * PER_PUBLISHER) as u64;
    // Subscribers on every loop, so the owner's answer crosses the mesh for some of them.
    let mut subscribers = common::clients_on_every_loop(addr, 2, 7);
    let halfway = Arc::new(Barrier::new(PUBLISHERS + 1));
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let halfway = halfway.clone();
            std::thread::spawn(move || publish_all(addr, p, &halfway))
        })
        .collect();
    let mut boards = Vec::new();
    let mut seams = Vec::new();
    let third = subscribers.len() / 3;
    for (i, c) in subscribers.iter_mut().enumerate() {
        if i == third {
            // Publishers paused halfway: this subscribe's seam is exactly mid-stream.
            halfway.wait();
            let (seq, snapshot) = subscribe_snapshot(c, "board.1");
            assert_eq!(seq, total / 2);
            boards.push(board_of(&snapshot));
            seams.push(seq);
            halfway.wait();
            continue;
        }
        // The others subscribe while the publishers run (each waits for its answer).
        let (seq, snapshot) = subscribe_snapshot(c, "board.1");
        boards.push(board_of(&snapshot));
        seams.push(seq);
    }
    for p in publishers {
        p.join().expect("publisher");
    }
    for ((c, board), seam) in subscribers.iter_mut().zip(&mut boards).zip(&seams) {
        let mut expect = seam + 1;
        while expect <= total {
            let msg = c.recv();
            assert_eq!(msg["type"], "message", "{msg}");
            assert_eq!(
                msg["seq"].as_u64(),
                Some(expect),
                "no gap, no duplicate at {seam}"
            );
            apply(board, &msg);
            expect += 1;
        }
    }
    // The state every subscriber built equals a snapshot taken after the last publish.
    let mut late = Client::connect(addr);
    let (seq, snapshot) = subscribe_snapshot(&mut late, "board.1");
    assert_eq!(seq, total);
    let last = board_of(&snapshot);
    assert!(!last.is_empty() && last.len() <= KEYS);
    for board in &boards {
        assert_eq!(board, &last);
    }
}

#[test]
fn delete_removes_the_key_and_live_subscribers_see_it() {
    let server = common::start(config(1));
    let addr = server.local_addr();
    let mut live = Client::connect(addr);
    let (seq, snapshot) = subscribe_snapshot(&mut live, "board.x");
    assert_eq!(seq, 0);
    assert_eq!(snapshot["entries"], json!([]));
    let mut p = Client::connect(addr);
    for (key, px) in [("a", 1), ("b", 2), ("a", 3)] {
        p.send(json!({"type": "message", "channel": "board.x", "key": key, "content": px}));
    }
    p.send(
        json!({"type": "message", "channel": "board.x", "key": "a", "content": null,
                  "delete": true}),
    );
    p.publish("board.x", json!("no key"));
    p.ping();
    let got: Vec<Value> = (0..5).map(|_| live.recv()).collect();
    assert_eq!(got[2]["key"], "a");
    assert_eq!(got[3]["delete"], true);
    assert_eq!(got[3]["key"], "a");
    assert!(
        got[4].get("key").is_none(),
        "an unkeyed delivery is unchanged: {}",
        got[4]
    );
    let mut late = Client::connect(addr);
    let (seq, snapshot) = subscribe_snapshot(&mut late, "board.x");
    assert_eq!(seq, 5);
    assert_eq!(
        snapshot["entries"],
        json!([{"key": "b", "content": 2, "seq": 2}, {"key": null, "content": "no key", "seq": 5}])
    );
}

/// Waits (bounded) until `/metrics` shows `series` at `want`.
fn wait_for_counter(addr: SocketAddr, series: &str, want: u64) {
    let mut seen = None;
    for _ in 0..200 {
        let (_, body) = common::http_get(addr, "/metrics");
        seen = body
            .lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok());
        if seen == Some(want) {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{series}: {seen:?}, want {want}");
}

#[test]
fn max_keys_evicts_the_least_recently_updated_and_counts() {
    let server = common::start(Config {
        snapshot_keys_max: 3,
        ..config(2)
    });
    let addr = server.local_addr();
    let mut p = Client::connect(addr);
    for key in ["k1", "k2", "k3", "k1", "k4", "k5"] {
        p.send(json!({"type": "message", "channel": "board.m", "key": key, "content": key}));
    }
    p.ping();
    let mut c = Client::connect(addr);
    let (_, snapshot) = subscribe_snapshot(&mut c, "board.m");
    let keys: Vec<&str> = snapshot["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["k1", "k4", "k5"],
        "k2 and k3 were the least recently updated"
    );
    wait_for_counter(
        addr,
        "wsrelay_snapshot_evicted_total{limit=\"max_keys\"}",
        2,
    );
}

#[test]
fn the_byte_budget_evicts_and_counts() {
    let server = common::start(Config {
        snapshot_bytes_max: 1024,
        ..config(1)
    });
    let addr = server.local_addr();
    let mut p = Client::connect(addr);
    // "k0" + "\"xxx…\"" + 50 of envelope = 254 bytes per entry: four fit in 1024.
    let pad = "x".repeat(200);
    for k in 0..8 {
        p.send(
            json!({"type": "message", "channel": "board.b", "key": format!("k{k}"),
                      "content": pad}),
        );
    }
    p.ping();
    let mut c = Client::connect(addr);
    let (_, snapshot) = subscribe_snapshot(&mut c, "board.b");
    let entries = snapshot["entries"].as_array().unwrap();
    let keys: Vec<&str> = entries.iter().map(|e| e["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["k4", "k5", "k6", "k7"]);
    wait_for_counter(
        addr,
        "wsrelay_snapshot_evicted_total{limit=\"max_bytes\"}",
        4,
    );
}

#[test]
fn since_is_served_from_history_and_the_snapshot_comes_only_when_it_cannot_be() {
    let server = common::start(Config {
        history_size: 3,
        ..config(2)
    });
    let addr = server.local_addr();
    let mut p = Client::connect(addr);
    for n in 1..=6 {
        p.send(
            json!({"type": "message", "channel": "board.r", "key": format!("k{}", n % 2),
                      "content": n}),
        );
    }
    p.ping();
    let mut first = Client::connect(addr);
    let (_, snapshot) = subscribe_snapshot(&mut first, "board.r");
    let epoch = snapshot["epoch"].clone();
    // Recoverable: history replays 5 and 6, no snapshot.
    let mut back = Client::connect(addr);
    back.send(json!({"type": "subscribe", "channel": "board.r", "since": 4, "epoch": epoch}));
    assert_eq!(back.recv()["recovered"], true);
    assert_eq!(back.recv()["seq"], 5);
    assert_eq!(back.recv()["seq"], 6);
    p.send(json!({"type": "message", "channel": "board.r", "key": "k1", "content": 7}));
    let live = back.recv();
    assert_eq!(
        (live["type"].as_str(), live["seq"].as_u64()),
        (Some("message"), Some(7))
    );
    // Too old for the history: recovered:false, then the snapshot.
    let mut old = Client::connect(addr);
    old.send(json!({"type": "subscribe", "channel": "board.r", "since": 1, "epoch": epoch}));
    let reply = old.recv();
    assert_eq!(
        (reply["recovered"].as_bool(), reply["seq"].as_u64()),
        (Some(false), Some(7))
    );
    let snapshot = old.recv();
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(
        snapshot["entries"],
        json!([{"key": "k0", "content": 6, "seq": 6}, {"key": "k1", "content": 7, "seq": 7}])
    );
}

#[test]
fn binary_subscribers_get_a_binary_snapshot() {
    let server = common::start(config(2));
    let addr = server.local_addr();
    let mut p = Client::connect(addr);
    p.send(json!({"type": "message", "channel": "board.bin", "key": "a", "content": {"x": 1}}));
    let mut frame = vec![0x01, 9];
    frame.extend_from_slice(b"board.bin");
    frame.extend_from_slice(b"\x00\xffraw");
    p.ws.send(tungstenite::Message::binary(frame))
        .expect("send");
    p.ping();
    let mut c = Client::connect(addr);
    c.send(json!({"type": "subscribe", "channel": "board.bin", "binary": true}));
    let reply = c.recv();
    assert_eq!(reply["seq"], 2);
    let bytes = match c.ws.read().expect("read") {
        tungstenite::Message::Binary(b) => b,
        other => panic!("expected the binary snapshot, got {other:?}"),
    };
    let (head, entries) = decode_binary_snapshot(&bytes).expect("a binary snapshot");
    assert_eq!((head.channel, head.seq), ("board.bin", 2));
    assert_eq!(head.epoch, reply["epoch"].as_str().unwrap());
    assert_eq!(entries.len(), 2);
    assert_eq!(
        (entries[0].key, entries[0].content),
        (Some("a"), &br#"{"x":1}"#[..])
    );
    assert!(!entries[0].binary);
    assert_eq!(
        (entries[1].key, entries[1].content),
        (None, &b"\x00\xffraw"[..])
    );
    assert!(entries[1].binary);
}

#[test]
fn invalid_fields_are_refused_with_their_error() {
    let server = common::start(config(1));
    let mut c = Client::connect(server.local_addr());
    let cases = [
        (
            json!({"type": "subscribe", "channel": "board.1", "binary": 1}),
            "Invalid field: binary (expected true or false)",
        ),
        (
            json!({"type": "message", "channel": "board.1", "content": 1, "delete": "yes"}),
            "Invalid field: delete (expected true or false)",
        ),
    ];
    for (cmd, message) in cases {
        c.send(cmd);
        assert_eq!(c.recv(), json!({"type": "error", "message": message}));
    }
}
