//! Room ticks (`--tick-for`) over real sockets: every member of a room gets the same batch
//! frames, in seq order with no gap or duplicate (also across two event loops and at the
//! subscribe seam), an empty tick sends nothing, an oversize batch is split at
//! `--max-message-size`, binary messages come as binary batches (op 0x03), publishers'
//! acknowledgements carry the seq the batch shows, and the counters say what happened.
//! No assertion depends on timing: a tick boundary may fall anywhere, so tests compare what
//! members received with each other and with the counters.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{clients_on_every_loop, http_get, Client};
use serde_json::{json, Value};
use tungstenite::protocol::Message;
use wsrelay::auth::ChannelPattern;
use wsrelay::{Config, ServerHandle};

fn relay_with_ticks(loops: usize, period_ms: u64, tweak: impl FnOnce(&mut Config)) -> ServerHandle {
    let mut config = Config::loopback_for_tests(loops);
    let pattern = ChannelPattern::parse("room.*").expect("pattern");
    config.tick_rules = vec![(pattern, Duration::from_millis(period_ms))];
    tweak(&mut config);
    common::start(config)
}

/// Reads the next data message (text or binary), skipping pings and pongs.
fn next_message(c: &mut Client) -> Message {
    loop {
        match c.ws.read().expect("read a message") {
            Message::Ping(_) | Message::Pong(_) => continue,
            m => return m,
        }
    }
}

/// Reads batches until `count` messages arrived; returns the batch frames as received.
fn read_batches(c: &mut Client, count: usize) -> Vec<Value> {
    let mut batches = Vec::new();
    let mut got = 0;
    while got < count {
        let Message::Text(t) = next_message(c) else {
            panic!("expected a JSON batch");
        };
        let v: Value = serde_json::from_str(t.as_str()).expect("JSON");
        assert_eq!(v["type"], "batch", "{v}");
        got += v["messages"].as_array().expect("messages").len();
        batches.push(v);
    }
    assert_eq!(got, count, "no more messages than published");
    batches
}

/// Every message's seq, in the order received.
fn seqs(batches: &[Value]) -> Vec<u64> {
    batches
        .iter()
        .flat_map(|b| b["messages"].as_array().cloned().unwrap_or_default())
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect()
}

/// A counter from `/metrics` (0 when absent).
fn metric(addr: SocketAddr, series: &str) -> f64 {
    let (_, body) = http_get(addr, "/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Waits (bounded by a count) until the exported counter reaches `want`.
fn wait_metric(addr: SocketAddr, series: &str, want: f64) {
    for _ in 0..200 {
        if metric(addr, series) == want {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{series} never reached {want}: {}", metric(addr, series));
}

#[test]
fn every_member_of_a_room_gets_the_same_batches_across_loops() {
    let server = relay_with_ticks(2, 20, |_| {});
    let addr = server.local_addr();
    let mut members = clients_on_every_loop(addr, 2, 6);
    for m in members.iter_mut() {
        m.subscribe("room.7");
    }
    let mut publisher = Client::connect(addr);
    for n in 0..40 {
        publisher.publish("room.7", json!({"n": n}));
    }
    let first = read_batches(&mut members[0], 40);
    assert_eq!(seqs(&first), (1..=40).collect::<Vec<u64>>());
    for (i, m) in first[0]["messages"].as_array().unwrap().iter().enumerate() {
        assert_eq!(m["content"], json!({"n": i}));
        assert_eq!(m["from"], publisher.id.as_str());
    }
    for other in members.iter_mut().skip(1) {
        assert_eq!(read_batches(other, 40), first, "the same batch frames");
    }
    // One batch per tick that had messages, every member got each one as one frame.
    let batches = first.len() as f64;
    wait_metric(addr, "wsrelay_ticks_total{event=\"batch\"}", batches);
    assert_eq!(metric(addr, "wsrelay_ticks_total{event=\"split\"}"), 0.0);
    let deliveries = 40.0 * members.len() as f64;
    wait_metric(addr, "wsrelay_messages_delivered_total", deliveries);
}

#[test]
fn an_empty_tick_sends_nothing_and_a_publisher_gets_its_own_messages() {
    let server = relay_with_ticks(1, 10, |_| {});
    let mut member = Client::connect(server.local_addr());
    member.subscribe("room.1");
    member.publish("room.1", json!("mine"));
    let batch = read_batches(&mut member, 1);
    assert_eq!(
        batch[0],
        json!({"type":"batch","channel":"room.1",
               "messages":[{"content":"mine","seq":1,"from":member.id}]})
    );
    // Many ticks pass with nothing held: the next frame is the next batch, nothing before.
    std::thread::sleep(Duration::from_millis(100));
    member.publish("room.1", json!("again"));
    let next = read_batches(&mut member, 1);
    assert_eq!(next[0]["messages"][0]["seq"], 2);
    assert_eq!(next[0]["messages"][0]["content"], "again");
}

#[test]
fn an_oversize_batch_is_split_at_the_message_size_limit() {
    let limit = 1024;
    let server = relay_with_ticks(1, 200, |c| c.message_bytes_max = limit);
    let addr = server.local_addr();
    let mut member = Client::connect(addr);
    member.subscribe("room.big");
    let mut publisher = Client::connect(addr);
    let filler = "x".repeat(300);
    for n in 0..10 {
        publisher.publish("room.big", json!({"n": n, "pad": filler}));
    }
    let mut frames = 0u32;
    let mut got = Vec::new();
    while got.len() < 10 {
        let Message::Text(t) = next_message(&mut member) else {
            panic!("expected JSON");
        };
        assert!(t.len() <= limit, "a batch frame of {} bytes", t.len());
        let v: Value = serde_json::from_str(t.as_str()).unwrap();
        assert_eq!(v["type"], "batch");
        for m in v["messages"].as_array().unwrap() {
            got.push(m["content"]["n"].as_u64().unwrap());
        }
        frames += 1;
    }
    assert_eq!(got, (0..10).collect::<Vec<u64>>());
    // About 340 bytes per entry: at most two entries per 1 KiB frame, whatever the ticks.
    assert!(frames >= 5, "{frames} frames");
    // Every frame is a tick's first (a batch) or one more of it (a split).
    let counted = || {
        metric(addr, "wsrelay_ticks_total{event=\"batch\"}")
            + metric(addr, "wsrelay_ticks_total{event=\"split\"}")
    };
    for _ in 0..200 {
        if counted() == f64::from(frames) {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(counted(), f64::from(frames));
    assert!(metric(addr, "wsrelay_ticks_total{event=\"split\"}") >= 1.0);
}

/// Parses a binary batch: `[0x03][L][channel]` + `[seq u64][F u16][from][N u32][payload]`*.
fn parse_binary_batch(b: &[u8]) -> (String, Vec<(u64, String, Vec<u8>)>) {
    assert_eq!(b[0], 0x03, "op");
    let l = usize::from(b[1]);
    let channel = String::from_utf8(b[2..2 + l].to_vec()).unwrap();
    let mut rest = &b[2 + l..];
    let mut entries = Vec::new();
    while !rest.is_empty() {
        let seq = u64::from_be_bytes(rest[..8].try_into().unwrap());
        let f = usize::from(u16::from_be_bytes(rest[8..10].try_into().unwrap()));
        let from = String::from_utf8(rest[10..10 + f].to_vec()).unwrap();
        let at = 10 + f;
        let n = u32::from_be_bytes(rest[at..at + 4].try_into().unwrap()) as usize;
        entries.push((seq, from, rest[at + 4..at + 4 + n].to_vec()));
        rest = &rest[at + 4 + n..];
    }
    (channel, entries)
}

#[test]
fn binary_messages_come_as_binary_batches_and_json_keeps_its_own_frames() {
    let server = relay_with_ticks(1, 20, |_| {});
    let addr = server.local_addr();
    let mut member = Client::connect(addr);
    member.subscribe("room.b");
    let mut publisher = Client::connect(addr);
    let binary_publish = |p: &[u8]| {
        let mut msg = vec![0x01, 6];
        msg.extend_from_slice(b"room.b");
        msg.extend_from_slice(p);
        Message::binary(msg)
    };
    publisher.ws.send(binary_publish(b"\x00\x01")).unwrap();
    publisher.ws.send(binary_publish(b"")).unwrap();
    publisher.publish("room.b", json!(3));
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match next_message(&mut member) {
            Message::Binary(b) => {
                let (channel, entries) = parse_binary_batch(&b);
                assert_eq!(channel, "room.b");
                for (seq, from, payload) in entries {
                    assert_eq!(from, publisher.id);
                    seen.push((seq, format!("bin:{payload:?}")));
                }
            }
            Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                for m in v["messages"].as_array().unwrap() {
                    seen.push((m["seq"].as_u64().unwrap(), format!("json:{}", m["content"])));
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        seen,
        [
            (1, "bin:[0, 1]".to_string()),
            (2, "bin:[]".to_string()),
            (3, "json:3".to_string())
        ]
    );
}

#[test]
fn acks_carry_the_seq_of_the_batch() {
    let server = relay_with_ticks(2, 20, |_| {});
    let addr = server.local_addr();
    let mut member = Client::connect(addr);
    member.subscribe("room.ack");
    let mut publisher = Client::connect(addr);
    for id in ["a", "b"] {
        publisher.send(json!({"type":"message","channel":"room.ack","content":id,"id":id}));
    }
    for (seq, id) in [(1, "a"), (2, "b")] {
        assert_eq!(
            publisher.recv(),
            json!({"type":"ack","id":id,"channel":"room.ack","seq":seq})
        );
    }
    let batches = read_batches(&mut member, 2);
    assert_eq!(seqs(&batches), [1, 2]);
}

#[test]
fn a_member_joining_mid_stream_gets_everything_after_its_subscribed_seq() {
    let server = relay_with_ticks(2, 5, |_| {});
    let addr = server.local_addr();
    let mut early = Client::connect(addr);
    early.subscribe("room.seam");
    let mut publisher = Client::connect(addr);
    let total = 300u64;
    let writer = std::thread::spawn(move || {
        for n in 0..total {
            publisher.publish("room.seam", json!(n));
        }
        publisher.ping();
        publisher
    });
    let mut late = Client::connect(addr);
    let at = late.subscribe("room.seam")["seq"].as_u64().unwrap();
    let _publisher = writer.join().unwrap();
    let late_seqs = seqs(&read_batches(&mut late, (total - at) as usize));
    assert_eq!(late_seqs, (at + 1..=total).collect::<Vec<u64>>());
    assert_eq!(
        seqs(&read_batches(&mut early, total as usize)),
        (1..=total).collect::<Vec<u64>>()
    );
}

#[test]
fn channels_without_a_tick_rule_are_unchanged() {
    let server = relay_with_ticks(1, 20, |_| {});
    let mut sub = Client::connect(server.local_addr());
    sub.subscribe("md.x");
    let mut publisher = Client::connect(server.local_addr());
    publisher.publish("md.x", json!(1));
    let m = sub.recv();
    assert_eq!(
        (m["type"].as_str(), m["seq"].as_u64()),
        (Some("message"), Some(1))
    );
    assert_eq!(
        metric(server.local_addr(), "wsrelay_ticks_total{event=\"batch\"}"),
        0.0
    );
}

#[test]
fn a_full_room_ticks_at_once_and_is_counted() {
    // A 60 s tick that never comes during the test: only the hold bound (4 messages, the
    // loop's publish-queue length) sends the batches. The relay runs in this process, so its
    // tick grid is this clock's: start away from a boundary.
    let period = Duration::from_secs(60);
    let since_boundary = wsrelay::clock::Clock::now_ns() % period.as_nanos() as u64;
    if since_boundary > 40_000_000_000 {
        std::thread::sleep(Duration::from_nanos(60_000_000_000 - since_boundary));
    }
    let server = relay_with_ticks(1, 60_000, |c| c.publish_queue_len_max = 4);
    let addr = server.local_addr();
    let mut member = Client::connect(addr);
    member.subscribe("room.full");
    let mut publisher = Client::connect(addr);
    // All eight in one write: the relay reads them together and takes them four at a time
    // (its publish queue), so the hold bound is met exactly twice. Sent one by one, they
    // could arrive split 3 + 4 + 1 and leave one held until the 60 s tick.
    for n in 0..8 {
        let publish = json!({"type": "message", "channel": "room.full", "content": n});
        publisher
            .ws
            .write(Message::text(publish.to_string()))
            .expect("queue a publish");
    }
    publisher.ws.flush().expect("send the publishes");
    let batches = read_batches(&mut member, 8);
    assert_eq!(seqs(&batches), (1..=8).collect::<Vec<u64>>());
    assert!(batches
        .iter()
        .all(|b| b["messages"].as_array().unwrap().len() == 4));
    wait_metric(addr, "wsrelay_ticks_total{event=\"forced\"}", 2.0);
}
