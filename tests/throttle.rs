//! Throttled subscriptions (`"throttle_ms":T`) over real sockets: the latest value per key
//! arrives, fewer messages than were published and never more often than the interval (checked
//! on what is received and in which order, not on how fast), no gap notices, validation,
//! snapshots first, and interest released on unsubscribe.

mod common;

use std::collections::BTreeMap;
use std::time::Instant;

use common::Client;
use serde_json::{json, Value};
use tungstenite::Message;
use wsrelay::auth::ChannelPattern;
use wsrelay::Config;

/// Publishes `n` messages in one write (they reach the relay as one burst).
fn burst(c: &mut Client, messages: impl Iterator<Item = Value>) {
    for m in messages {
        c.ws.write(Message::text(m.to_string())).expect("write");
    }
    c.ws.flush().expect("flush");
}

fn subscribe_throttled(c: &mut Client, channel: &str, ms: u64) -> Value {
    c.send(json!({"type": "subscribe", "channel": channel, "throttle_ms": ms}));
    let reply = c.recv();
    assert_eq!(reply["type"], "subscribed", "{reply}");
    assert_eq!(reply["throttle_ms"], ms, "the interval is confirmed");
    reply
}

#[test]
fn one_delivery_per_interval_the_rest_is_held_not_lost() {
    // One loop: the publisher's messages are numbered and offered to the subscriber before
    // the pong, and the unsubscribe keeps its place among deliveries.
    let server = common::relay(1);
    let addr = server.local_addr();
    let mut sub = Client::connect(addr);
    subscribe_throttled(&mut sub, "t", 60_000);
    let mut p = Client::connect(addr);
    p.publish("t", json!(1));
    p.ping(); // served at once: the subscriber was idle
    burst(
        &mut p,
        (2..=100).map(|n| json!({"type": "message", "channel": "t", "content": n})),
    );
    p.ping();
    sub.send(json!({"type": "unsubscribe", "channel": "t"}));
    let first = sub.recv();
    assert_eq!(
        (first["seq"].as_u64(), &first["content"]),
        (Some(1), &json!(1))
    );
    // Within the 60 s interval nothing else was sent: the next message is the unsubscribe.
    assert_eq!(sub.recv(), json!({"type": "unsubscribed", "channel": "t"}));
}

#[test]
fn the_latest_value_of_every_key_arrives_with_fewer_messages_and_no_gap_notice() {
    const T_MS: u64 = 100;
    const N: u64 = 600;
    const KEYS: u64 = 3;
    let server = common::relay(2);
    let addr = server.local_addr();
    let mut subs = common::clients_on_every_loop(addr, 2, 4);
    for s in &mut subs {
        subscribe_throttled(s, "hot", T_MS);
    }
    let mut p = Client::connect(addr);
    let started = Instant::now();
    burst(
        &mut p,
        (1..=N).map(|n| json!({"type": "message", "channel": "hot", "key": format!("k{}", n % KEYS), "content": n})),
    );
    let last: BTreeMap<String, u64> = (N - KEYS + 1..=N)
        .map(|n| (format!("k{}", n % KEYS), n))
        .collect();
    for s in &mut subs {
        let mut seen: BTreeMap<String, u64> = BTreeMap::new();
        let mut per_key: BTreeMap<String, u64> = BTreeMap::new();
        let mut prev_seq = 0;
        let mut received = 0;
        while seen != last {
            let m = s.recv();
            assert_eq!(m["type"], "message", "only messages, no gap notice: {m}");
            let seq = m["seq"].as_u64().unwrap();
            assert!(seq > prev_seq, "in seq order: {seq} after {prev_seq}");
            prev_seq = seq;
            let key = m["key"].as_str().unwrap().to_string();
            let n = m["content"].as_u64().unwrap();
            assert_eq!(n, seq, "each delivery carries its own seq");
            assert!(
                seen.get(&key).is_none_or(|&old| n > old),
                "never an older value"
            );
            seen.insert(key.clone(), n);
            *per_key.entry(key).or_default() += 1;
            received += 1;
        }
        // A delivery per key at most every T: over the time this subscriber took, at most
        // elapsed / T + 1 per key (a bound that only loosens on a slower machine).
        let per_key_max = started.elapsed().as_millis() as u64 / T_MS + 1;
        assert!(
            per_key.values().all(|&c| c <= per_key_max),
            "{per_key:?} > {per_key_max}"
        );
        assert!(received < N, "{received} deliveries for {N} publishes");
    }
}

#[test]
fn throttle_ms_out_of_range_is_refused_and_the_bounds_are_accepted() {
    let server = common::relay(1);
    let mut c = Client::connect(server.local_addr());
    let error = json!({"type": "error",
        "message": "Invalid field: throttle_ms (expected an integer from 10 to 60000)"});
    for bad in [
        json!(9),
        json!(60_001),
        json!(-1),
        json!("100"),
        json!(1.5),
        json!(0),
    ] {
        c.send(json!({"type": "subscribe", "channel": "v", "throttle_ms": bad}));
        assert_eq!(c.recv(), error, "throttle_ms {bad}");
    }
    subscribe_throttled(&mut c, "v", 10);
    subscribe_throttled(&mut c, "w", 60_000);
    c.send(json!({"type": "subscribe", "channel": "x", "throttle_ms": null}));
    assert!(c.recv().get("throttle_ms").is_none(), "null is no throttle");
}

#[test]
fn a_throttled_subscriber_of_a_snapshot_channel_gets_the_snapshot_first() {
    let server = common::start(Config {
        snapshot_patterns: vec![ChannelPattern::parse("board.*").unwrap()],
        ..Config::loopback_for_tests(2)
    });
    let addr = server.local_addr();
    let mut p = Client::connect(addr);
    burst(&mut p, (1..=3).map(|n| json!({"type": "message", "channel": "board.t", "key": format!("k{n}"), "content": n})));
    p.ping();
    let mut c = Client::connect(addr);
    let reply = subscribe_throttled(&mut c, "board.t", 10);
    let snapshot = c.recv();
    assert_eq!(
        (snapshot["type"].as_str(), snapshot["seq"].as_u64()),
        (Some("snapshot"), reply["seq"].as_u64())
    );
    assert_eq!(snapshot["entries"].as_array().map(Vec::len), Some(3));
    p.send(json!({"type": "message", "channel": "board.t", "key": "k1", "content": 4}));
    let live = c.recv();
    assert_eq!(
        (live["seq"].as_u64(), &live["key"]),
        (Some(4), &json!("k1"))
    );
}

#[test]
fn unsubscribing_or_closing_a_throttled_subscriber_releases_the_channel() {
    let server = common::relay(2);
    let addr = server.local_addr();
    let mut p = Client::connect(addr);
    let ack = |p: &mut Client, id: &str| {
        p.send(json!({"type": "message", "channel": "r", "content": 1, "id": id}));
        loop {
            let m = p.recv();
            if m["type"] == "ack" {
                return m["seq"].clone();
            }
        }
    };
    for mut c in common::clients_on_every_loop(addr, 2, 4) {
        subscribe_throttled(&mut c, "r", 10);
        assert!(ack(&mut p, "a").is_u64(), "numbered while subscribed");
        if c.loop_id() == 0 {
            c.send(json!({"type": "unsubscribe", "channel": "r"}));
            while c.recv()["type"] != "unsubscribed" {}
        } else {
            c.ws.close(None).expect("close");
            while c.ws.read().is_ok() {}
        }
        // Nobody subscribes any more: the channel has no numbering, the ack says so.
        let mut seq = ack(&mut p, "b");
        for _ in 0..100 {
            if seq.is_null() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10)); // the reap, on its loop
            seq = ack(&mut p, "b");
        }
        assert_eq!(seq, Value::Null);
    }
}

#[test]
fn under_sustained_publishing_every_subscriber_ends_with_the_last_value() {
    const SUBSCRIBERS: usize = 100;
    let server = common::relay(1);
    let addr = server.local_addr();
    let mut subs: Vec<Client> = (0..SUBSCRIBERS).map(|_| Client::connect(addr)).collect();
    for s in &mut subs {
        subscribe_throttled(s, "sustained", 20);
    }
    let mut p = Client::connect(addr);
    let mut n = 0u64;
    for _ in 0..40 {
        // Bursts of 50 about every 5 ms: publishing outlasts many intervals.
        burst(
            &mut p,
            (0..50).map(|_| {
                n += 1;
                json!({"type": "message", "channel": "sustained", "content": n})
            }),
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    for (i, s) in subs.iter_mut().enumerate() {
        let mut received = 0u64;
        loop {
            let m = s.recv(); // a subscriber left without the last value times out here
            received += 1;
            if m["content"] == n {
                break;
            }
        }
        assert!(
            received < n,
            "subscriber {i}: {received} deliveries for {n} publishes"
        );
    }
}
