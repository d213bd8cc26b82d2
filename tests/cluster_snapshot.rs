//! Keyed snapshots (`--snapshot-for`) in cluster mode (`--nats`), against a real
//! `nats-server` (docs/CLUSTER.md, "Keyed snapshots"): a snapshot written through one relay
//! served exactly by another (entries, seq, epoch) and live from N+1; the seam under
//! concurrent publishing through both relays (contiguous seqs, no duplicate, the final
//! state equal to the stream's); keys that outlive the history ring; deletes across relays;
//! the same snapshot after both relays were SIGKILLed and restarted. Like `tests/cluster.rs`,
//! they fail when `nats-server` is missing unless `WSRELAY_SKIP_NATS=1`. The `#[ignore]`d
//! `measure_keyed_snapshot_costs` prints the figures of docs/BENCHMARKS.md (`WSRELAY_BIN`:
//! the relay binary to run, e.g. a release build; `WSRELAY_BENCH_FLAGS`: more relay flags).

mod common;
#[path = "cluster/harness.rs"]
mod harness;

use std::net::SocketAddr;
use std::time::Duration;

use common::Client;
use harness::{nats_bin, NatsNode, RelayProc, TempDir};
use serde_json::{json, Value};
use wsrelay::command::decode_binary_snapshot;

/// Deadline for one read (stops a hung test; nothing is timed).
const READ_DEADLINE: Duration = Duration::from_secs(20);

fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One NATS server and two relays keeping snapshots of `board.*`, plus `extra` flags.
fn pair(tag: &str, extra: &[&str]) -> Option<(TempDir, NatsNode, RelayProc, RelayProc)> {
    let mut flags = vec!["--snapshot-for", "board.*"];
    flags.extend_from_slice(extra);
    harness::r1_pair(tag, &flags)
}

fn connect(addr: SocketAddr) -> Client {
    let c = Client::connect(addr);
    c.ws.get_ref()
        .set_read_timeout(Some(READ_DEADLINE))
        .expect("read timeout");
    c
}

/// Publishes `content` under `key` (or deletes it) with an ack id; returns the acked seq.
fn put(c: &mut Client, channel: &str, key: &str, content: Value, delete: bool) -> u64 {
    let mut msg = json!({"type":"message","channel":channel,"content":content,"key":key,"id":"w"});
    if delete {
        msg["delete"] = json!(true);
    }
    c.send(msg);
    let ack = c.recv();
    assert_eq!(
        (&ack["type"], &ack["id"]),
        (&json!("ack"), &json!("w")),
        "{ack}"
    );
    ack["seq"].as_u64().expect("acked seq")
}

/// Subscribes; returns the `subscribed` reply and the snapshot that follows it.
fn subscribe_snapshot(c: &mut Client, channel: &str) -> (Value, Value) {
    let reply = c.subscribe(channel);
    let snapshot = c.recv();
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    assert_eq!(
        (&snapshot["seq"], &snapshot["epoch"]),
        (&reply["seq"], &reply["epoch"])
    );
    (reply, snapshot)
}

/// key → (content, seq): what a client keeps from a snapshot and the live messages.
use common::board::{apply, board_of, Board};

/// Reads messages of `channel` until seq `last`: checks they follow `after` with no gap and
/// no duplicate and applies them.
fn follow(c: &mut Client, channel: &str, after: u64, last: u64, board: &mut Board) {
    let mut seq = after;
    while seq < last {
        let m = c.recv();
        if m["type"] == "subscribed" && m["seq"] == seq {
            continue; // The epoch minted by the first writer of an empty channel.
        }
        assert_eq!(
            (&m["type"], &m["channel"]),
            (&json!("message"), &json!(channel)),
            "{m}"
        );
        let s = m["seq"].as_u64().expect("seq");
        assert_eq!(s, seq + 1, "contiguous from the snapshot's seq + 1: {m}");
        seq = s;
        apply(board, &m);
    }
}

/// A cluster counter of a relay's `/metrics`.
fn counter(addr: SocketAddr, name: &str) -> u64 {
    let (_, body) = common::http_get(addr, "/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

#[test]
fn a_snapshot_written_through_one_relay_is_served_exactly_by_another() {
    let _g = serial();
    let Some((_dir, _nats, a, b)) = pair("snap-ab", &[]) else {
        return;
    };
    let mut w = connect(a.addr);
    for i in 0..10 {
        assert_eq!(
            put(&mut w, "board.1", &format!("k{i}"), json!(i), false),
            i + 1
        );
    }
    assert_eq!(
        put(&mut w, "board.1", "k3", json!({"v":"three"}), false),
        11
    );
    assert_eq!(put(&mut w, "board.1", "k5", Value::Null, true), 12);
    let mut s = connect(b.addr);
    let (reply, snapshot) = subscribe_snapshot(&mut s, "board.1");
    let epoch = reply["epoch"].as_str().expect("epoch").to_string();
    assert!(!epoch.is_empty());
    let mut entries: Vec<Value> = [0, 1, 2, 4, 6, 7, 8, 9]
        .iter()
        .map(|i| json!({"key": format!("k{i}"), "content": i, "seq": i + 1}))
        .collect();
    entries.push(json!({"key":"k3","content":{"v":"three"},"seq":11}));
    let want =
        json!({"type":"snapshot","channel":"board.1","seq":12,"epoch":epoch,"entries":entries});
    assert_eq!(snapshot, want);
    assert_eq!(put(&mut w, "board.1", "k0", json!("again"), false), 13);
    let live = s.recv();
    assert_eq!(
        (&live["type"], &live["seq"], &live["key"], &live["content"]),
        (&json!("message"), &json!(13), &json!("k0"), &json!("again")),
        "{live}"
    );
    // A second subscriber on B is answered from B's cache, which followed the live stream.
    let mut s2 = connect(b.addr);
    let (_, snapshot2) = subscribe_snapshot(&mut s2, "board.1");
    assert_eq!(snapshot2["seq"], 13);
    let mut board = board_of(&snapshot);
    apply(&mut board, &live);
    assert_eq!(board_of(&snapshot2), board);
}

#[test]
fn the_seam_holds_while_both_relays_publish() {
    let _g = serial();
    let Some((_dir, _nats, a, b)) = pair("snap-conc", &[]) else {
        return;
    };
    const PER_WRITER: u64 = 300;
    const KEYS: u64 = 17;
    // Watches the whole stream from seq 0 (an empty channel: an empty snapshot).
    let mut observer = connect(a.addr);
    let (reply, empty) = subscribe_snapshot(&mut observer, "board.c");
    assert_eq!(
        (
            reply["seq"].as_u64(),
            empty["entries"].as_array().map(Vec::len)
        ),
        (Some(0), Some(0))
    );
    let writers = spawn_writers([a.addr, b.addr], PER_WRITER, KEYS);
    // Subscribers on both relays arrive while both write.
    let mut subs = Vec::new();
    for addr in [b.addr, a.addr, b.addr] {
        std::thread::sleep(Duration::from_millis(150));
        let mut c = connect(addr);
        let (reply, snapshot) = subscribe_snapshot(&mut c, "board.c");
        let n = reply["seq"].as_u64().expect("seq");
        subs.push((c, n, board_of(&snapshot)));
    }
    for t in writers {
        t.join().expect("writer");
    }
    let last = 2 * PER_WRITER;
    // The stream's state after every seq, from the observer's messages 1..=last.
    let mut truth = Board::new();
    let mut states = vec![truth.clone()];
    for seq in 1..=last {
        follow(&mut observer, "board.c", seq - 1, seq, &mut truth);
        states.push(truth.clone());
    }
    let seqs: Vec<u64> = subs.iter().map(|s| s.1).collect();
    eprintln!("snapshots taken at seqs {seqs:?} of {last}");
    for (c, n, board) in &mut subs {
        let at = usize::try_from(*n).expect("seq");
        assert_eq!(
            *board, states[at],
            "the snapshot is the stream's state at its seq {n}"
        );
        follow(c, "board.c", *n, last, board);
        assert_eq!(
            *board, truth,
            "snapshot at {n} plus live = the stream's state"
        );
    }
    for addr in [a.addr, b.addr] {
        let mut c = connect(addr);
        let (reply, snapshot) = subscribe_snapshot(&mut c, "board.c");
        assert_eq!(reply["seq"].as_u64(), Some(last));
        assert_eq!(board_of(&snapshot), truth);
    }
    for addr in [a.addr, b.addr] {
        assert_counters_clean(addr);
    }
}

/// One writer per relay: `per_writer` keyed publishes each (every 11th a delete), acked.
fn spawn_writers(
    addrs: [SocketAddr; 2],
    per_writer: u64,
    keys: u64,
) -> Vec<std::thread::JoinHandle<()>> {
    addrs
        .into_iter()
        .enumerate()
        .map(|(wi, addr)| {
            std::thread::spawn(move || {
                let mut w = connect(addr);
                for i in 0..per_writer {
                    let key = format!("k{}", (i * 7 + wi as u64) % keys);
                    let delete = i % 11 == 10;
                    put(&mut w, "board.c", &key, json!({"w": wi, "i": i}), delete);
                }
            })
        })
        .collect()
}

/// Nothing lost or given up by the key store; at least one snapshot read.
fn assert_counters_clean(addr: SocketAddr) {
    assert_eq!(counter(addr, "wsrelay_cluster_snapshot_lost_total"), 0);
    assert_eq!(
        counter(addr, "wsrelay_cluster_snapshot_apply_failures_total"),
        0
    );
    assert!(counter(addr, "wsrelay_cluster_snapshot_loads_total") >= 1);
}

#[test]
fn keys_outlive_the_history_ring_and_deletes_cross_relays() {
    let _g = serial();
    let Some((_dir, _nats, a, b)) = pair("snap-ring", &["--history-size", "4"]) else {
        return;
    };
    let mut w = connect(a.addr);
    // 100 messages: past the stream's per-channel ring (64 with --snapshot-for).
    for i in 0..100u64 {
        assert_eq!(
            put(&mut w, "board.r", &format!("k{i:02}"), json!(i), false),
            i + 1
        );
    }
    let mut s = connect(b.addr);
    let (_, snapshot) = subscribe_snapshot(&mut s, "board.r");
    let board = board_of(&snapshot);
    assert_eq!(board.len(), 100);
    assert_eq!(
        board.get("k00"),
        Some(&(json!(0), 1)),
        "the oldest key, 36 messages past the ring"
    );
    // A delete through B reaches A's subscriber live, and every later snapshot drops it.
    let mut on_a = connect(a.addr);
    let (_, snap_a) = subscribe_snapshot(&mut on_a, "board.r");
    assert_eq!(board_of(&snap_a), board);
    let mut wb = connect(b.addr);
    assert_eq!(put(&mut wb, "board.r", "k00", Value::Null, true), 101);
    let m = on_a.recv();
    assert_eq!(
        (&m["seq"], &m["key"], &m["delete"]),
        (&json!(101), &json!("k00"), &json!(true)),
        "{m}"
    );
    let m = s.recv();
    assert_eq!(m["seq"], 101, "{m}");
    for addr in [a.addr, b.addr] {
        let mut c = connect(addr);
        let (reply, snapshot) = subscribe_snapshot(&mut c, "board.r");
        assert_eq!(reply["seq"], 101);
        let board = board_of(&snapshot);
        assert_eq!((board.len(), board.contains_key("k00")), (99, false));
    }
    // Relays with no subscriber left read it from the key store again.
    drop((s, on_a));
    std::thread::sleep(Duration::from_millis(300));
    let mut c = connect(b.addr);
    let (_, snapshot) = subscribe_snapshot(&mut c, "board.r");
    assert_eq!(
        (snapshot["seq"].as_u64(), board_of(&snapshot).len()),
        (Some(101), 99)
    );
}

#[test]
fn restarted_relays_serve_the_same_snapshot() {
    let _g = serial();
    let Some((_dir, _nats, mut a, mut b)) = pair("snap-restart", &[]) else {
        return;
    };
    let mut w = connect(a.addr);
    for i in 0..30u64 {
        put(
            &mut w,
            "board.k",
            &format!("k{}", i % 12),
            json!({"i": i}),
            i % 9 == 8,
        );
    }
    let mut s = connect(b.addr);
    let (_, before) = subscribe_snapshot(&mut s, "board.k");
    assert_eq!(before["seq"], 30);
    drop((w, s));
    a.kill();
    b.kill();
    a.restart();
    b.restart();
    for addr in [a.addr, b.addr] {
        let mut c = connect(addr);
        let (_, after) = subscribe_snapshot(&mut c, "board.k");
        assert_eq!(after, before);
    }
}

/// Publishes `n` keyed messages (keys `k0..k{keys-1}` in turn) without waiting, then reads
/// the `n` acks; returns publishes per second.
fn publish_rate(c: &mut Client, channel: &str, n: usize, keys: usize) -> f64 {
    let t = std::time::Instant::now();
    for i in 0..n {
        let key = format!("k{}", i % keys);
        c.send(json!({"type":"message","channel":channel,"content":i,"key":key,"id":"m"}));
    }
    for _ in 0..n {
        let ack = c.recv();
        assert_eq!(ack["type"], "ack", "{ack}");
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// docs/BENCHMARKS.md, "Keyed snapshots in cluster mode": not a test (no assertion on
/// time); run with `cargo test --test cluster_snapshot -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_keyed_snapshot_costs() {
    let _g = serial();
    // `WSRELAY_BENCH_FLAGS`: more relay flags (e.g. "--nats-storage memory").
    let extra = std::env::var("WSRELAY_BENCH_FLAGS").unwrap_or_default();
    let extra: Vec<&str> = extra.split_whitespace().collect();
    let Some((_dir, _nats, a, b)) = pair("snap-bench", &extra) else {
        return;
    };
    const KEYS: usize = 1000;
    const N: usize = 3000;
    let mut w = connect(a.addr);
    for round in 0..3 {
        let keyed = publish_rate(&mut w, &format!("board.m{round}"), N, KEYS);
        let plain = publish_rate(&mut w, &format!("plain.m{round}"), N, KEYS);
        eprintln!("round {round}: {N} publishes over {KEYS} keys, pipelined: keyed {keyed:.0}/s, plain {plain:.0}/s");
    }
    let mut times = Vec::new();
    for round in 0..5 {
        let mut s = connect(b.addr);
        let t = std::time::Instant::now();
        let (_, snapshot) = subscribe_snapshot(&mut s, "board.m0");
        let ms = t.elapsed().as_secs_f64() * 1e3;
        assert_eq!(snapshot["entries"].as_array().map(Vec::len), Some(KEYS));
        eprintln!("round {round}: first subscriber on relay b: {KEYS}-key snapshot in {ms:.1} ms");
        times.push(ms);
        drop(s);
        std::thread::sleep(Duration::from_millis(500)); // The state is dropped: read again.
    }
    let mut s = connect(b.addr);
    let _keep = subscribe_snapshot(&mut s, "board.m0");
    let mut s2 = connect(b.addr);
    let t = std::time::Instant::now();
    let _ = subscribe_snapshot(&mut s2, "board.m0");
    let ms = t.elapsed().as_secs_f64() * 1e3;
    eprintln!("a second subscriber on relay b (its cache): {KEYS}-key snapshot in {ms:.2} ms");
    eprintln!("first-subscriber times (ms): {times:?}");
}

#[test]
fn a_binary_subscriber_on_another_relay_gets_the_binary_snapshot() {
    let _g = serial();
    let Some((_dir, _nats, a, b)) = pair("snap-bin", &[]) else {
        return;
    };
    let mut w = connect(a.addr);
    assert_eq!(put(&mut w, "board.bin", "a", json!({"x": 1}), false), 1);
    let mut frame = vec![0x01, 9];
    frame.extend_from_slice(b"board.bin");
    frame.extend_from_slice(b"\x00\xffraw");
    w.ws.send(tungstenite::Message::binary(frame))
        .expect("send");
    // Acked after the binary publish (one connection, one channel: stored in order).
    assert_eq!(put(&mut w, "board.bin", "b", json!(2), false), 3);
    let mut c = connect(b.addr);
    c.send(json!({"type": "subscribe", "channel": "board.bin", "binary": true}));
    let reply = c.recv();
    assert_eq!(
        (&reply["type"], &reply["seq"]),
        (&json!("subscribed"), &json!(3))
    );
    let bytes = match c.ws.read().expect("read") {
        tungstenite::Message::Binary(b) => b,
        other => panic!("expected the binary snapshot, got {other:?}"),
    };
    let (head, entries) = decode_binary_snapshot(&bytes).expect("a binary snapshot");
    assert_eq!((head.channel, head.seq), ("board.bin", 3));
    assert_eq!(head.epoch, reply["epoch"].as_str().expect("epoch"));
    let got: Vec<_> = entries
        .iter()
        .map(|e| (e.key, e.content, e.seq, e.binary))
        .collect();
    let want = vec![
        (Some("a"), &br#"{"x":1}"#[..], 1, false),
        (None, &b"\x00\xffraw"[..], 2, true),
        (Some("b"), &b"2"[..], 3, false),
    ];
    assert_eq!(got, want);
    // A JSON subscriber there (B's cache) sees the JSON entries only.
    let mut j = connect(b.addr);
    let (_, snapshot) = subscribe_snapshot(&mut j, "board.bin");
    let want = json!([{"key":"a","content":{"x":1},"seq":1},{"key":"b","content":2,"seq":3}]);
    assert_eq!(snapshot["entries"], want);
}

#[test]
fn three_servers_r3_one_writer_serve_the_exact_snapshot_on_another_server() {
    let _g = serial();
    let Some(bin) = nats_bin() else {
        return;
    };
    let dir = TempDir::new("snap-r3");
    let cluster = harness::NatsCluster::start(&bin, &dir.0);
    let flags = ["--nats-replicas", "3", "--snapshot-for", "board.*"];
    let a = RelayProc::start(&dir.0, "a", &[cluster.nodes[0].url()], &flags);
    let b = RelayProc::start(&dir.0, "b", &[cluster.nodes[2].url()], &flags);
    cluster.wait_streams_led(8);
    let mut w = connect(a.addr);
    for i in 0..80u64 {
        let delete = i % 10 == 9;
        assert_eq!(
            put(
                &mut w,
                "board.r3",
                &format!("k{}", i % 30),
                json!(i),
                delete
            ),
            i + 1
        );
    }
    // The expected board: the last write per key, deletes applied.
    let mut want = Board::new();
    for i in 0..80u64 {
        let key = format!("k{}", i % 30);
        match i % 10 == 9 {
            true => want.remove(&key),
            false => want.insert(key, (json!(i), i + 1)),
        };
    }
    let mut s = connect(b.addr);
    let (reply, snapshot) = subscribe_snapshot(&mut s, "board.r3");
    assert_eq!(reply["seq"], 80);
    assert_eq!(board_of(&snapshot), want);
    assert_eq!(put(&mut w, "board.r3", "k0", json!("live"), false), 81);
    let m = s.recv();
    assert_eq!(
        (&m["seq"], &m["content"]),
        (&json!(81), &json!("live")),
        "{m}"
    );
    assert_counters_clean(b.addr);
}

#[test]
fn a_writer_killed_mid_stream_leaves_no_hole_in_the_key_store() {
    let _g = serial();
    let Some((dir, nats, mut a, b)) = pair("snap-kill", &[]) else {
        return;
    };
    let mut observer = connect(b.addr);
    let _ = subscribe_snapshot(&mut observer, "board.x");
    // Pipelined keyed publishes through a, killed after 100 acks: batches stored but not yet
    // applied by a (if any) are applied by the next writer.
    let mut w = connect(a.addr);
    for i in 0..600u64 {
        let key = format!("k{}", i % 23);
        w.send(json!({"type":"message","channel":"board.x","content":i,"key":key,"id":"p"}));
    }
    for _ in 0..100 {
        assert_eq!(w.recv()["type"], "ack");
    }
    a.kill();
    let mut w2 = connect(b.addr);
    let last = put(&mut w2, "board.x", "k0", json!("after"), false);
    eprintln!("the stream held {} messages of the killed writer", last - 1);
    let mut truth = Board::new();
    follow(&mut observer, "board.x", 0, last, &mut truth);
    // A relay that never saw the channel reads it from the key store.
    let c = RelayProc::start(&dir.0, "c", &[nats.url()], &["--snapshot-for", "board.*"]);
    let mut s = connect(c.addr);
    let (reply, snapshot) = subscribe_snapshot(&mut s, "board.x");
    assert_eq!(reply["seq"].as_u64(), Some(last));
    assert_eq!(board_of(&snapshot), truth);
    assert_counters_clean(c.addr);
    assert_eq!(counter(b.addr, "wsrelay_cluster_snapshot_lost_total"), 0);
}
