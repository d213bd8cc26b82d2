//! The market and game primitives in cluster mode (`--nats`), against real `nats-server`
//! processes (docs/CLUSTER.md, "Presence across relays", "Room ticks across relays"): presence
//! spanning two relays (the list, joins, leaves on disconnect, counts exact after churn, a
//! killed relay's members leaving within the node timeout, a stopped relay's at once, across
//! NATS routes with the authenticated subject, convergence when the bridge-to-loop queue
//! overflows), and
//! room ticks on both relays (batch frames only, JSON and binary, contiguous seqs, the same
//! frames for every member on one relay, acks, the subscribe seam). Like `tests/cluster.rs`, they
//! fail when `nats-server` is missing unless `WSRELAY_SKIP_NATS=1`. Presence across relays is
//! eventually consistent: a watcher's view (its list, then joins and leaves) is followed until
//! it matches; deadlines only stop a hung test.

mod common;
#[path = "cluster/harness.rs"]
mod harness;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::Client;
use harness::{nats_bin, r1_pair, NatsNode, RelayProc, TempDir};
use serde_json::{json, Value};
use tungstenite::Message;

/// How long a view may take to settle before the test fails (the node timeout is 3 s).
const SETTLE_DEADLINE: Duration = Duration::from_secs(20);

fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

const PRESENCE: [&str; 2] = ["--presence-for", "room.*"];

/// One NATS server and two relays with presence on `room.*`.
fn pair(tag: &str) -> Option<(TempDir, NatsNode, RelayProc, RelayProc)> {
    r1_pair(tag, &PRESENCE)
}

fn connect(addr: SocketAddr) -> Client {
    let c = Client::connect(addr);
    c.ws.get_ref()
        .set_read_timeout(Some(SETTLE_DEADLINE))
        .expect("read timeout");
    c
}

/// A member (plain subscribe).
fn member(addr: SocketAddr, channel: &str) -> Client {
    let mut c = connect(addr);
    c.subscribe(channel);
    c
}

/// A watcher: subscribes with `"presence":true`; returns it and its view from the list.
fn watcher(addr: SocketAddr, channel: &str) -> (Client, BTreeSet<String>) {
    let mut c = connect(addr);
    c.send(json!({"type":"subscribe","channel":channel,"presence":true}));
    assert_eq!(c.recv()["type"], "subscribed");
    let list = c.recv();
    let view = list_ids(&list, channel);
    (c, view)
}

/// The ids of a `presence` list, checking that its count is exact (no cap in these tests).
fn list_ids(list: &Value, channel: &str) -> BTreeSet<String> {
    assert_eq!(
        (&list["type"], &list["channel"]),
        (&json!("presence"), &json!(channel)),
        "{list}"
    );
    let ids: BTreeSet<String> = list["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(list["count"].as_u64(), Some(ids.len() as u64), "{list}");
    ids
}

/// Follows a watcher's joins and leaves until its view is `want`.
fn settle(c: &mut Client, channel: &str, view: &mut BTreeSet<String>, want: &BTreeSet<String>) {
    let until = Instant::now() + SETTLE_DEADLINE;
    while view != want {
        assert!(Instant::now() < until, "view {view:?}, want {want:?}");
        let v = c.recv();
        if v["channel"] != channel {
            continue;
        }
        let id = v["member"]["id"].as_str().unwrap_or_default().to_string();
        match v["type"].as_str() {
            Some("join") => assert!(view.insert(id), "joined twice: {v}"),
            Some("leave") => assert!(view.remove(&id), "left without a join: {v}"),
            Some("presence") => *view = list_ids(&v, channel),
            _ => {}
        }
    }
}

/// `{"type":"presence"}` from `c`, asked until its list is `want` (a relay that does not
/// follow the channel yet syncs first; the members' joins may still be on their way).
fn query_until(c: &mut Client, channel: &str, want: &BTreeSet<String>) {
    let until = Instant::now() + SETTLE_DEADLINE;
    loop {
        c.send(json!({"type":"presence","channel":channel}));
        let ids = loop {
            let v = c.recv();
            if v["type"] == "presence" && v["channel"] == channel {
                break list_ids(&v, channel);
            }
        };
        if &ids == want {
            return;
        }
        assert!(Instant::now() < until, "list {ids:?}, want {want:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[test]
fn presence_spans_relays_list_joins_and_leaves_on_disconnect() {
    let _serial = serial();
    let Some((_dir, _nats, a, b)) = pair("presence") else {
        return;
    };
    let m1 = member(a.addr, "room.1");
    assert!(
        m1.id.starts_with("a.") && m1.id.contains('/'),
        "cluster-wide id: {}",
        m1.id
    );
    let (mut w, mut view) = watcher(b.addr, "room.1");
    let want = set(&[&m1.id, &w.id]);
    settle(&mut w, "room.1", &mut view, &want);
    // Relay b follows the channel now: a new watcher's list is complete at once.
    let (w2, list) = watcher(b.addr, "room.1");
    assert_eq!(list, set(&[&m1.id, &w.id, &w2.id]));
    settle(&mut w, "room.1", &mut view, &list);
    // A join on a reaches b's watchers; a disconnect on a is a leave there.
    let joined = Instant::now();
    let m2 = member(a.addr, "room.1");
    let want = set(&[&m1.id, &m2.id, &w.id, &w2.id]);
    settle(&mut w, "room.1", &mut view, &want);
    eprintln!(
        "presence: subscribe on a to join seen on b: {:?} (connect included)",
        joined.elapsed()
    );
    drop(m1);
    let want = set(&[&m2.id, &w.id, &w2.id]);
    settle(&mut w, "room.1", &mut view, &want);
    // The other way: a watcher on a sees b's members.
    let (mut wa, mut view_a) = watcher(a.addr, "room.1");
    let all = set(&[&m2.id, &w.id, &w2.id, &wa.id]);
    settle(&mut wa, "room.1", &mut view_a, &all);
    settle(&mut w, "room.1", &mut view, &all);
    // Unsubscribing leaves too.
    let mut w2 = w2;
    w2.send(json!({"type":"unsubscribe","channel":"room.1"}));
    let rest = set(&[&m2.id, &w.id, &wa.id]);
    settle(&mut w, "room.1", &mut view, &rest);
    settle(&mut wa, "room.1", &mut view_a, &rest);
    // A relay that does not follow a channel syncs before answering a query.
    let m3 = member(a.addr, "room.2");
    let mut probe = connect(b.addr);
    query_until(&mut probe, "room.2", &set(&[&m3.id]));
    query_until(&mut probe, "room.1", &rest);
}

#[test]
fn presence_counts_are_exact_on_both_relays_after_churn() {
    let _serial = serial();
    let Some((_dir, _nats, a, b)) = pair("presencechurn") else {
        return;
    };
    let channel = "room.churn";
    let (mut wa, mut view_a) = watcher(a.addr, channel);
    let (mut wb, mut view_b) = watcher(b.addr, channel);
    let mut on_a: Vec<Client> = (0..12).map(|_| member(a.addr, channel)).collect();
    let mut on_b: Vec<Client> = (0..12).map(|_| member(b.addr, channel)).collect();
    // Churn: disconnects, unsubscribes and new joins on both relays, interleaved.
    for round in 0..4 {
        drop(on_a.remove(round));
        drop(on_b.remove(round + 1));
        on_a[round].send(json!({"type":"unsubscribe","channel":channel}));
        let gone = on_a.remove(round);
        on_b.push(member(b.addr, channel));
        on_a.push(member(a.addr, channel));
        drop(gone);
    }
    let mut want: BTreeSet<String> = on_a.iter().chain(&on_b).map(|c| c.id.clone()).collect();
    want.insert(wa.id.clone());
    want.insert(wb.id.clone());
    settle(&mut wa, channel, &mut view_a, &want);
    settle(&mut wb, channel, &mut view_b, &want);
    // The lists agree with the views, with exact counts, on both relays.
    let mut pa = connect(a.addr);
    let mut pb = connect(b.addr);
    query_until(&mut pa, channel, &want);
    query_until(&mut pb, channel, &want);
    assert_eq!(want.len(), 2 + (12 - 4) + 12);
}

#[test]
fn a_killed_relays_members_leave_after_the_node_timeout() {
    let _serial = serial();
    // A shorter node timeout than the default 3 s (heartbeats every 500 ms).
    let flags = [
        "--presence-for",
        "room.*",
        "--nats-presence-timeout",
        "1500",
    ];
    let Some((_dir, _nats, mut a, b)) = r1_pair("presencekill", &flags) else {
        return;
    };
    let channel = "room.k";
    let m1 = member(a.addr, channel);
    let m2 = member(a.addr, channel);
    let (mut w, mut view) = watcher(b.addr, channel);
    let want = set(&[&m1.id, &m2.id, &w.id]);
    settle(&mut w, channel, &mut view, &want);
    let killed = Instant::now();
    a.kill();
    let want = set(&[&w.id]);
    settle(&mut w, channel, &mut view, &want);
    let took = killed.elapsed();
    eprintln!("presence: a killed relay's members left after {took:?}");
    let mut probe = connect(b.addr);
    query_until(&mut probe, channel, &set(&[&w.id]));
    assert_eq!(
        b.metric("wsrelay_cluster_presence_nodes_expired_total"),
        1.0
    );
    assert_eq!(b.metric("wsrelay_cluster_presence_nodes "), 0.0);
}

#[test]
fn a_stopped_relays_members_leave_at_once() {
    let _serial = serial();
    let Some((_dir, _nats, mut a, b)) = pair("presencebye") else {
        return;
    };
    let channel = "room.bye";
    let m1 = member(a.addr, channel);
    let (mut w, mut view) = watcher(b.addr, channel);
    let want = set(&[&m1.id, &w.id]);
    settle(&mut w, channel, &mut view, &want);
    let stopped = Instant::now();
    a.terminate();
    let want = set(&[&w.id]);
    settle(&mut w, channel, &mut view, &want);
    eprintln!(
        "presence: a stopped relay's members left after {:?}",
        stopped.elapsed()
    );
    drop(m1);
    assert_eq!(
        b.metric("wsrelay_cluster_presence_nodes_expired_total"),
        0.0
    );
}

/// One message of a batch as a subscriber saw it: (seq, from, content).
type Seen = (u64, String, String);

/// Reads batch frames (JSON or binary) until `last` seq; returns the frames' raw bytes and
/// every entry. Any other data frame is a failure (a room delivers batches only).
fn read_batches(c: &mut Client, channel: &str, last: u64) -> (Vec<Vec<u8>>, Vec<Seen>) {
    let (mut frames, mut seen) = (Vec::new(), Vec::<Seen>::new());
    while seen.last().is_none_or(|e| e.0 < last) {
        match c.ws.read().expect("a batch") {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).expect("JSON");
                if v["type"] == "subscribed" {
                    // The epoch the first writer minted (docs/CLUSTER.md): not a delivery.
                    assert_eq!(
                        (&v["seq"], &v["channel"]),
                        (&json!(0), &json!(channel)),
                        "{v}"
                    );
                    continue;
                }
                assert_eq!(
                    (&v["type"], &v["channel"]),
                    (&json!("batch"), &json!(channel)),
                    "{v}"
                );
                for m in v["messages"].as_array().expect("messages") {
                    let from = m["from"].as_str().expect("from").to_string();
                    seen.push((
                        m["seq"].as_u64().expect("seq"),
                        from,
                        m["content"].to_string(),
                    ));
                }
                frames.push(t.as_bytes().to_vec());
            }
            Message::Binary(b) => {
                let (ch, entries) = parse_binary_batch(&b);
                assert_eq!(ch, channel);
                for (seq, from, payload) in entries {
                    seen.push((seq, from, format!("bin:{payload:?}")));
                }
                frames.push(b.to_vec());
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    (frames, seen)
}

/// `[0x03][L][channel]` + `[seq u64][F u16][from][N u32][payload]`*.
fn parse_binary_batch(b: &[u8]) -> (String, Vec<(u64, String, Vec<u8>)>) {
    assert_eq!(b[0], 0x03, "op");
    let l = usize::from(b[1]);
    let channel = String::from_utf8(b[2..2 + l].to_vec()).expect("channel");
    let mut rest = &b[2 + l..];
    let mut entries = Vec::new();
    while !rest.is_empty() {
        let seq = u64::from_be_bytes(rest[..8].try_into().expect("seq"));
        let f = usize::from(u16::from_be_bytes(rest[8..10].try_into().expect("F")));
        let from = String::from_utf8(rest[10..10 + f].to_vec()).expect("from");
        let at = 10 + f;
        let n = u32::from_be_bytes(rest[at..at + 4].try_into().expect("N")) as usize;
        entries.push((seq, from, rest[at + 4..at + 4 + n].to_vec()));
        rest = &rest[at + 4 + n..];
    }
    (channel, entries)
}

/// The publishes of the tick test: `n` JSON ones with ids, then two binary ones.
fn publish_room(p: &mut Client, channel: &str, n: u64) {
    for i in 1..=n {
        let id = format!("p{i}");
        p.send(json!({"type":"message","channel":channel,"content":{"i":i},"id":id}));
    }
    for payload in [&b"\x00\x01"[..], b""] {
        let mut msg = vec![0x01, channel.len() as u8];
        msg.extend_from_slice(channel.as_bytes());
        msg.extend_from_slice(payload);
        p.ws.send(Message::binary(msg)).expect("binary publish");
    }
}

fn expected_room(from: &str, n: u64) -> Vec<Seen> {
    let mut want: Vec<Seen> = (1..=n)
        .map(|i| (i, from.to_string(), json!({"i": i}).to_string()))
        .collect();
    want.push((n + 1, from.to_string(), "bin:[0, 1]".into()));
    want.push((n + 2, from.to_string(), "bin:[]".into()));
    want
}

#[test]
fn room_ticks_batch_on_every_relay_with_acks_and_the_subscribe_seam() {
    let _serial = serial();
    let flags = ["--tick-for", "room.*=50", "--history-size", "1000"];
    let Some((_dir, _nats, a, b)) = r1_pair("ticks", &flags) else {
        return;
    };
    let channel = "room.t";
    let mut on_a: Vec<Client> = (0..2).map(|_| member(a.addr, channel)).collect();
    let mut on_b = member(b.addr, channel);
    let mut p = connect(a.addr);
    let n = 40;
    publish_room(&mut p, channel, n);
    // Acks as cluster publishes: once stored, with the seq the batches show.
    for i in 1..=n {
        let ack = loop {
            let v = p.recv();
            if v["type"] == "ack" {
                break v;
            }
        };
        assert_eq!(
            ack,
            json!({"type":"ack","id":format!("p{i}"),"channel":channel,"seq":i})
        );
    }
    let want = expected_room(&p.id, n);
    let (frames_a0, seen_a0) = read_batches(&mut on_a[0], channel, n + 2);
    let (frames_a1, seen_a1) = read_batches(&mut on_a[1], channel, n + 2);
    let (_, seen_b) = read_batches(&mut on_b, channel, n + 2);
    assert_eq!(seen_a0, want);
    assert_eq!(seen_a1, want);
    assert_eq!(seen_b, want, "the other relay batches the same messages");
    assert_eq!(
        frames_a0, frames_a1,
        "every member of a relay gets the same frames"
    );
    assert!(
        frames_a0.len() < want.len(),
        "{} frames for {} messages",
        frames_a0.len(),
        want.len()
    );
    // The seam: a subscriber joining now gets what follows its subscribed seq, in batches.
    let mut late = connect(b.addr);
    let at = late.subscribe(channel)["seq"].as_u64().expect("seq");
    assert_eq!(at, n + 2);
    publish_room(&mut p, channel, 3);
    let (_, seen_late) = read_batches(&mut late, channel, at + 5);
    assert_eq!(seen_late.first().map(|e| e.0), Some(at + 1));
    assert_eq!(seen_late.len(), 5);
    // Counted like single-node ticks (metrics are exported once per interval: waited for).
    for relay in [&a, &b] {
        let until = Instant::now() + SETTLE_DEADLINE;
        while relay.metric("wsrelay_ticks_total{event=\"batch\"}") < 1.0 {
            assert!(Instant::now() < until, "no tick batch counted");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Authenticates `c` as `sub` with an HS256 token (`SECRET`).
fn authenticate(c: &mut Client, sub: &str) {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let exp = wsrelay::clock::Clock::unix_now_s() + 600;
    let claims = json!({"sub": sub, "exp": exp, "channels": {"subscribe": ["room.*"]}});
    let key = EncodingKey::from_secret(SECRET.as_bytes()).expect("key");
    let token = encode(&Header::new(Algorithm::HS256), &claims, &key).expect("token");
    c.send(json!({"type":"auth","token":token}));
    assert_eq!(c.recv()["type"], "authenticated");
}

const SECRET: &str = "cluster-test-secret-0123456789abcdef";

#[test]
fn presence_crosses_nats_routes_with_the_authenticated_subject() {
    let _serial = serial();
    let Some(bin) = nats_bin() else {
        return;
    };
    let dir = TempDir::new("presenceroutes");
    let cluster = harness::NatsCluster::start(&bin, &dir.0);
    let flags = [
        "--presence-for",
        "room.*",
        "--auth-hs256-secret",
        SECRET,
        "--nats-replicas",
        "3",
    ];
    // Relay a on n1 only, relay b on n3 only: every presence message crosses a route.
    let a = RelayProc::start(&dir.0, "a", &[cluster.nodes[0].url()], &flags);
    let b = RelayProc::start(&dir.0, "b", &[cluster.nodes[2].url()], &flags);
    let channel = "room.r";
    let mut alice = connect(a.addr);
    authenticate(&mut alice, "alice");
    alice.subscribe(channel);
    let mut bob = connect(b.addr);
    authenticate(&mut bob, "bob");
    bob.send(json!({"type":"subscribe","channel":channel,"presence":true}));
    assert_eq!(bob.recv()["type"], "subscribed");
    let mut view = list_ids(&bob.recv(), channel);
    let want = set(&[&alice.id, &bob.id]);
    settle(&mut bob, channel, &mut view, &want);
    bob.send(json!({"type":"presence","channel":channel}));
    let list = loop {
        let v = bob.recv();
        if v["type"] == "presence" {
            break v;
        }
    };
    let mut members: Vec<Value> = list["members"].as_array().expect("members").clone();
    members.sort_by_key(|m| m["sub"].to_string());
    assert_eq!(
        members,
        [
            json!({"id": alice.id, "sub": "alice"}),
            json!({"id": bob.id, "sub": "bob"})
        ]
    );
    drop(alice);
    let want = set(&[&bob.id]);
    settle(&mut bob, channel, &mut view, &want);
}

#[test]
fn presence_converges_when_the_bridge_to_loop_queue_overflows() {
    let _serial = serial();
    // A 1-message bridge → loop queue: remote changes may be dropped and replaced by the full
    // set (`presence_owner_resets_total`); the views must end exact either way.
    let flags = ["--presence-for", "room.*", "--nats-loop-queue", "1"];
    let Some((_dir, _nats, a, b)) = r1_pair("presencequeue", &flags) else {
        return;
    };
    let channels = [
        "room.q1", "room.q2", "room.q3", "room.q4", "room.q5", "room.q6",
    ];
    let mut watchers: Vec<(Client, BTreeSet<String>)> =
        channels.iter().map(|ch| watcher(b.addr, ch)).collect();
    // A burst: 60 connections subscribe at once, over the six channels.
    let mut members: Vec<Client> = (0..60).map(|_| connect(a.addr)).collect();
    for (i, c) in members.iter_mut().enumerate() {
        c.send(json!({"type":"subscribe","channel":channels[i % channels.len()]}));
    }
    for c in &mut members {
        assert_eq!(c.recv()["type"], "subscribed");
    }
    settle_all(&mut watchers, &members, &channels);
    members.truncate(12); // 48 disconnects at once
    settle_all(&mut watchers, &members, &channels);
    eprintln!(
        "presence: owner resets with a 1-message loop queue: {}",
        b.metric("wsrelay_cluster_presence_owner_resets_total")
    );
}

/// Every watcher (one per channel, member `k` of the burst on channel `k mod n`) settles on
/// exactly its channel's members plus itself.
fn settle_all(watchers: &mut [(Client, BTreeSet<String>)], members: &[Client], channels: &[&str]) {
    for (k, (w, view)) in watchers.iter_mut().enumerate() {
        let mut want: BTreeSet<String> = members
            .iter()
            .skip(k)
            .step_by(channels.len())
            .map(|c| c.id.clone())
            .collect();
        want.insert(w.id.clone());
        settle(w, channels[k], view, &want);
    }
}
