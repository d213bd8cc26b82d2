//! The trading/gaming data plane against a live relay: history and recovery with `since`,
//! last value, and the slow-consumer policies (a subscriber that stops reading) with the other
//! subscribers unaffected and memory bounded.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{masked_frame, Client, Raw};
use serde_json::{json, Value};
use wsrelay::config::SlowConsumerPolicy;
use wsrelay::pubsub::owner_of;
use wsrelay::Config;

fn with_history(size: usize) -> Config {
    Config {
        history_size: size,
        ..Config::loopback_for_tests(2)
    }
}

#[test]
fn recovery_after_a_disconnect_returns_exactly_the_missed_messages() {
    let server = common::start(with_history(100));
    let addr = server.local_addr();
    let mut publisher = Client::connect(addr);
    let mut sub = Client::connect(addr);
    let first = sub.subscribe("md.X");
    let epoch = first["epoch"].as_str().unwrap().to_string();
    for i in 1..=3 {
        publisher.publish("md.X", json!(i));
    }
    for i in 1..=3 {
        assert_eq!(sub.recv()["seq"], i);
    }
    drop(sub);
    for i in 4..=8 {
        publisher.publish("md.X", json!(i));
    }
    publisher.ping();
    // Reconnect (possibly on the other loop) and recover from seq 3.
    let mut again = common::clients_on_every_loop(addr, 2, 8);
    for c in again.iter_mut() {
        c.send(json!({"type": "subscribe", "channel": "md.X", "since": 3, "epoch": epoch}));
        let reply = c.recv();
        assert_eq!(
            reply,
            json!({"type": "subscribed", "channel": "md.X", "seq": 8, "epoch": epoch, "recovered": true})
        );
        for i in 4..=8 {
            let m = c.recv();
            assert_eq!(
                (m["seq"].as_u64(), m["content"].as_u64()),
                (Some(i), Some(i))
            );
        }
    }
    // Live messages follow the replay with no gap and no duplicate at the seam.
    publisher.publish("md.X", json!(9));
    for c in again.iter_mut() {
        assert_eq!(c.recv()["seq"], 9);
    }
}

#[test]
fn recovery_beyond_retention_answers_recovered_false_with_the_current_seq() {
    let server = common::start(with_history(3));
    let addr = server.local_addr();
    let mut publisher = Client::connect(addr);
    let mut sub = Client::connect(addr);
    let epoch = sub.subscribe("r")["epoch"].as_str().unwrap().to_string();
    for i in 1..=10 {
        publisher.publish("r", json!(i));
    }
    for _ in 1..=10 {
        sub.recv();
    }
    let mut late = Client::connect(addr);
    late.send(json!({"type": "subscribe", "channel": "r", "since": 2, "epoch": epoch}));
    let reply = late.recv();
    assert_eq!(
        (reply["recovered"].as_bool(), reply["seq"].as_u64()),
        (Some(false), Some(10))
    );
    // Nothing is replayed: the next message is live.
    publisher.publish("r", json!(11));
    assert_eq!(late.recv()["seq"], 11);
}

const BUDGET_MESSAGES: u64 = 150;

/// The process-wide history byte budget (`--history-max-bytes`, here its 1 MiB minimum): two
/// channels retain 2.4 MB of 8 KB messages, far below their length limit (1,000 each), so the
/// budget evicts the oldest messages of either channel. A client recovering from the start
/// of a channel gets `recovered:false`; one recovering the last message gets it replayed; the
/// evictions are counted on /metrics.
#[test]
fn the_history_byte_budget_evicts_the_oldest_and_recent_history_still_replays() {
    let config = Config {
        history_size: 1000,
        history_bytes_max: 1 << 20,
        ..Config::loopback_for_tests(1)
    };
    let server = common::start(config);
    let addr = server.local_addr();
    let mut watcher = Client::connect(addr);
    let epochs: Vec<String> = ["h.a", "h.b"]
        .iter()
        .map(|c| watcher.subscribe(c)["epoch"].as_str().unwrap().to_string())
        .collect();
    let mut publisher = Client::connect(addr);
    let pad = "x".repeat(8000);
    for i in 1..=BUDGET_MESSAGES {
        for channel in ["h.a", "h.b"] {
            publisher.publish(channel, json!({"i": i, "pad": pad}));
        }
        for _ in 0..2 {
            assert_eq!(watcher.recv()["seq"], i);
        }
    }
    let mut early = Client::connect(addr);
    early.send(json!({"type": "subscribe", "channel": "h.a", "since": 0, "epoch": epochs[0]}));
    let reply = early.recv();
    assert_eq!(
        (reply["recovered"].as_bool(), reply["seq"].as_u64()),
        (Some(false), Some(BUDGET_MESSAGES)),
        "the oldest messages were evicted: {reply}"
    );
    let mut recent = Client::connect(addr);
    let since = BUDGET_MESSAGES - 1;
    recent.send(json!({"type": "subscribe", "channel": "h.b", "since": since, "epoch": epochs[1]}));
    let reply = recent.recv();
    assert_eq!(reply["recovered"], true, "{reply}");
    let m = recent.recv();
    assert_eq!(
        (m["seq"].as_u64(), m["content"]["i"].as_u64()),
        (Some(BUDGET_MESSAGES), Some(BUDGET_MESSAGES))
    );
    // The counters reach /metrics at the next aggregation: poll (bounded), no sleep threshold.
    let evicted = (0..200)
        .map(|_| {
            let (_, body) = common::http_get(addr, "/metrics");
            let n = body.lines().find_map(|l| {
                l.strip_prefix("wsrelay_history_evicted_total ")?
                    .parse::<f64>()
                    .ok()
            });
            if n.unwrap_or(0.0) == 0.0 {
                std::thread::sleep(Duration::from_millis(25));
            }
            n.unwrap_or(0.0)
        })
        .find(|&n| n > 0.0);
    assert!(evicted.is_some(), "wsrelay_history_evicted_total > 0");
}

#[test]
fn recovery_with_a_stale_epoch_is_refused() {
    let server = common::start(with_history(100));
    let addr = server.local_addr();
    let mut publisher = Client::connect(addr);
    let mut sub = Client::connect(addr);
    sub.subscribe("e");
    publisher.publish("e", json!(1));
    sub.recv();
    let mut other = Client::connect(addr);
    other.send(json!({"type": "subscribe", "channel": "e", "since": 0, "epoch": "not-this-one"}));
    assert_eq!(other.recv()["recovered"], false);
}

#[test]
fn last_value_is_sent_to_new_subscribers() {
    let config = Config {
        last_value: true,
        ..Config::loopback_for_tests(2)
    };
    let server = common::start(config);
    let addr = server.local_addr();
    let mut publisher = Client::connect(addr);
    for px in [100, 101, 102] {
        publisher.publish("ticker", json!({"px": px}));
    }
    publisher.ping();
    for mut c in common::clients_on_every_loop(addr, 2, 6) {
        let reply = c.subscribe("ticker");
        assert_eq!(reply["seq"], 3);
        let snapshot = c.recv();
        assert_eq!(
            (snapshot["seq"].as_u64(), &snapshot["content"]),
            (Some(3), &json!({"px": 102}))
        );
    }
}

/// A subscriber that stops reading: a raw socket with a small receive buffer, never read.
fn stalled_subscriber(addr: SocketAddr, channel: &str) -> Raw {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let stream: std::net::TcpStream = socket.into();
    stream.set_read_timeout(Some(common::READ_TIMEOUT)).unwrap();
    let mut raw = Raw::from_stream(stream);
    raw.send(common::upgrade_request("/").as_bytes());
    assert!(raw.read_head().starts_with("HTTP/1.1 101"));
    assert_eq!(raw.read_json()["type"], "connected");
    let cmd = json!({"type": "subscribe", "channel": channel}).to_string();
    raw.send(&masked_frame(0x81, cmd.as_bytes()));
    assert_eq!(raw.read_json()["type"], "subscribed");
    raw
}

fn policy_config(policy: SlowConsumerPolicy) -> Config {
    Config {
        slow_consumer: policy,
        outbox_bytes_max: 64 * 1024,
        // The outbox must hold one delivery of the largest message (config validation).
        message_bytes_max: 16 * 1024,
        // The stalled subscriber reads only after the flood: keep its close frame waiting.
        close_timeout: Duration::from_secs(60),
        ..Config::loopback_for_tests(2)
    }
}

const FLOOD_MESSAGES: u64 = 30_000;
const PADDING: usize = 1000;

/// Publishes `FLOOD_MESSAGES` 1 KB messages; `fast` must get every one, in order.
fn flood(addr: SocketAddr, channel: &str, fast: &mut Client) {
    let mut publisher = Client::connect(addr);
    let pad = "x".repeat(PADDING);
    for i in 1..=FLOOD_MESSAGES {
        publisher.publish(channel, json!({"i": i, "pad": pad}));
        if i % 20 == 0 {
            // A fast subscriber reads as it goes (20 KB in flight at most, far below its budget).
            for j in i - 19..=i {
                assert_eq!(
                    fast.recv()["seq"],
                    j,
                    "fast subscriber in order, nothing lost"
                );
            }
        }
    }
}

/// The flood tests measure this process's RSS: they must not run at the same time as each
/// other (the test harness runs tests in parallel threads of one process).
static FLOOD_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn flood_guard() -> std::sync::MutexGuard<'static, ()> {
    FLOOD_TESTS.lock().unwrap_or_else(|p| p.into_inner())
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn close_policy_closes_the_slow_subscriber_with_4100_and_spares_the_others() {
    let _serial = flood_guard();
    let server = common::start(policy_config(SlowConsumerPolicy::Close));
    let addr = server.local_addr();
    let mut slow = stalled_subscriber(addr, "flood");
    let mut fast = Client::connect(addr);
    fast.subscribe("flood");
    flood(addr, "flood", &mut fast);
    // The slow one gets a prefix of the stream, in order, then 4100.
    let mut next = 1;
    loop {
        let f = slow.read_frame();
        match f.opcode {
            1 => {
                let m: Value = serde_json::from_slice(&f.payload).unwrap();
                assert_eq!(m["seq"], next);
                next += 1;
            }
            8 => {
                assert_eq!(f.close_code(), Some(4100));
                break;
            }
            op => panic!("unexpected opcode {op}"),
        }
    }
    assert!(next <= FLOOD_MESSAGES, "the slow subscriber was cut off");
}

#[test]
fn drop_policy_tells_the_gap_before_the_next_delivery_and_bounds_memory() {
    let _serial = flood_guard();
    let server = common::start(policy_config(SlowConsumerPolicy::Drop));
    let addr = server.local_addr();
    let mut slow = stalled_subscriber(addr, "flood");
    let mut fast = Client::connect(addr);
    fast.subscribe("flood");
    let before_kib = rss_kib();
    flood(addr, "flood", &mut fast);
    let growth_kib = rss_kib().saturating_sub(before_kib);
    // 30 MB were published to a subscriber that read nothing; its outbox holds at most 64 KiB.
    assert!(growth_kib < 16 * 1024, "RSS grew by {growth_kib} KiB");
    // The slow subscriber reads what was kept for it, until the relay has nothing more queued;
    // then one more publish makes a gap at the tail visible (it is told before a delivery).
    let mut tracker = GapTracker::default();
    while let Some(f) = slow.read_frame_within(Duration::from_millis(300)) {
        tracker.see(&serde_json::from_slice(&f.payload).unwrap());
    }
    let mut marker = Client::connect(addr);
    marker.publish("flood", json!("end"));
    loop {
        let m = slow.read_json();
        tracker.see(&m);
        if m["content"] == "end" {
            break;
        }
    }
    assert_eq!(
        tracker.expected,
        FLOOD_MESSAGES + 2,
        "every seq delivered or reported"
    );
    assert!(
        tracker.gaps > 0 && tracker.delivered < FLOOD_MESSAGES + 1,
        "drops happened"
    );
}

#[test]
fn drop_policy_tells_a_drained_subscriber_of_its_gap_without_more_traffic() {
    let _serial = flood_guard();
    let server = common::start(policy_config(SlowConsumerPolicy::Drop));
    let addr = server.local_addr();
    let mut slow = stalled_subscriber(addr, "quiet");
    let mut fast = Client::connect(addr);
    fast.subscribe("quiet");
    flood(addr, "quiet", &mut fast);
    // Nothing is published any more: the channel is quiet. The stalled subscriber now reads,
    // and must learn of the dropped tail once it has drained its queue, not when (if ever)
    // the next message comes. Every read waits at most READ_TIMEOUT: a missing notice fails.
    let mut tracker = GapTracker::default();
    while tracker.expected <= FLOOD_MESSAGES {
        tracker.see(&slow.read_json());
    }
    assert_eq!(
        tracker.expected,
        FLOOD_MESSAGES + 1,
        "every seq delivered or reported"
    );
    assert!(tracker.gaps > 0, "the tail was dropped and reported");
    assert!(
        slow.read_frame_within(Duration::from_millis(300)).is_none(),
        "nothing after the last notice"
    );
}

/// A raw client upgraded on `/`, with the loop that holds it (ids are `<loop>-<slot>-<gen>`).
fn raw_client_with_loop(addr: SocketAddr) -> (Raw, usize) {
    let mut raw = Raw::upgraded(addr, "/");
    let hello = raw.read_json();
    assert_eq!(hello["type"], "connected");
    let id = hello["id"].as_str().unwrap().to_string();
    let loop_id = id.split('-').next().unwrap().parse().unwrap();
    (raw, loop_id)
}

/// Clients land on loops by the kernel's hashing: a publisher on loop 0 and 32 subscribers of
/// `channel` on loop 1 (the first one observes, the others are a ballast never read).
fn publisher_on_0_subscribers_on_1(addr: SocketAddr, channel: &str) -> (Raw, Vec<Raw>) {
    let mut publisher = None;
    let mut on_loop_1: Vec<Raw> = Vec::new();
    for _ in 0..400 {
        if publisher.is_some() && on_loop_1.len() >= 32 {
            break;
        }
        match raw_client_with_loop(addr) {
            (raw, 0) if publisher.is_none() => publisher = Some(raw),
            (raw, 1) if on_loop_1.len() < 32 => on_loop_1.push(raw),
            _ => {}
        }
    }
    let publisher = publisher.expect("a client on loop 0");
    assert_eq!(on_loop_1.len(), 32, "clients on loop 1");
    let subscribe = json!({"type": "subscribe", "channel": channel}).to_string();
    for raw in &mut on_loop_1 {
        raw.send(&masked_frame(0x81, subscribe.as_bytes()));
        assert_eq!(raw.read_json()["type"], "subscribed");
    }
    (publisher, on_loop_1)
}

const MESH_BURST: u64 = 2000;
const MESH_ROUNDS_MAX: u64 = 5;

/// Mesh overflow: 2 loops and the smallest mesh inbox (16, and 16 parked). Each publish is
/// numbered on its own (one mesh message each) and the other loop takes one message per turn
/// and delivers it to many subscribers, so a burst published on the owner loop overflows the
/// mesh and deliveries for the other loop are dropped. The subscriber there must learn of
/// exactly the seqs it missed, also when the dropped tail of a burst is followed by silence:
/// before the fix it was told only with the channel's next message (the read times out).
#[test]
fn mesh_overflow_drops_are_reported_to_the_other_loop_without_more_traffic() {
    let _serial = flood_guard();
    let config = Config {
        mesh_inbox_len_max: 16,
        publish_queue_len_max: 1,
        inbox_msgs_per_turn_max: 1,
        ..Config::loopback_for_tests(2)
    };
    let server = common::start(config);
    let addr = server.local_addr();
    let channel = (0..)
        .map(|i| format!("mesh.{i}"))
        .find(|c| owner_of(c, 2) == 0)
        .unwrap();
    let (mut publisher, mut on_loop_1) = publisher_on_0_subscribers_on_1(addr, &channel);
    let observer = &mut on_loop_1[0];
    let mut tracker = GapTracker::default();
    let mut tail_dropped = false;
    for round in 0..MESH_ROUNDS_MAX {
        // The whole burst in one write, then silence on the channel.
        let mut burst = Vec::new();
        for i in 1..=MESH_BURST {
            let publish = json!({"type": "message", "channel": channel, "content": i});
            burst.extend(masked_frame(0x81, publish.to_string().as_bytes()));
        }
        publisher.send(&burst);
        let last = (round + 1) * MESH_BURST;
        // Every read waits at most READ_TIMEOUT: an unreported dropped tail fails here.
        let mut last_was_gap = false;
        while tracker.expected <= last {
            let m = observer.read_json();
            tracker.see(&m);
            last_was_gap = m["type"] == "gap";
        }
        assert_eq!(
            tracker.expected,
            last + 1,
            "every seq delivered or reported"
        );
        if last_was_gap {
            tail_dropped = true;
            break;
        }
    }
    assert!(
        tracker.gaps > 0 && tail_dropped,
        "a dropped tail was reported"
    );
    assert!(
        observer
            .read_frame_within(Duration::from_millis(300))
            .is_none(),
        "nothing after the last notice"
    );
    // Counted once, in messages: what the subscribers on loop 1 were told they missed.
    let missed = tracker.expected - 1 - tracker.delivered;
    let mesh_full = r#"wsrelay_queue_drops_total{reason="mesh_full"} "#;
    assert_eq!(
        counter_reaching(addr, mesh_full, missed as f64),
        missed as f64
    );
}

/// The value of the counter line starting with `prefix` once it reaches `want` (counters
/// reach /metrics at the next aggregation: polled, bounded, no sleep threshold), else the
/// last value seen.
fn counter_reaching(addr: std::net::SocketAddr, prefix: &str, want: f64) -> f64 {
    let mut last = 0.0;
    for _ in 0..200 {
        let (_, body) = common::http_get(addr, "/metrics");
        last = body
            .lines()
            .find_map(|l| l.strip_prefix(prefix)?.parse::<f64>().ok())
            .unwrap_or(0.0);
        if last == want {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    last
}

/// Checks that deliveries and gap notices together cover every seq exactly once, in order.
#[derive(Default)]
struct GapTracker {
    expected: u64,
    delivered: u64,
    gaps: u64,
}

impl GapTracker {
    fn see(&mut self, m: &Value) {
        self.expected = self.expected.max(1);
        match m["type"].as_str() {
            Some("gap") => {
                assert_eq!(
                    m["from"], self.expected,
                    "gap starts where deliveries stopped"
                );
                self.expected = m["to"].as_u64().unwrap() + 1;
                self.gaps += 1;
            }
            Some("message") => {
                assert_eq!(m["seq"], self.expected, "no silent skip: {m}");
                self.expected += 1;
                self.delivered += 1;
            }
            _ => panic!("unexpected {m}"),
        }
    }
}

#[test]
fn conflate_policy_keeps_the_latest_value_per_key_says_what_it_skipped_and_bounds_memory() {
    let _serial = flood_guard();
    // Conflation chosen for this channel by a per-channel rule; the default stays `close`.
    let pattern = wsrelay::auth::ChannelPattern::parse("px").unwrap();
    let server = common::start(Config {
        slow_consumer_rules: vec![(pattern, SlowConsumerPolicy::Conflate)],
        ..policy_config(SlowConsumerPolicy::Close)
    });
    let addr = server.local_addr();
    let mut slow = stalled_subscriber(addr, "px");
    let mut fast = Client::connect(addr);
    fast.subscribe("px");
    let keys = ["BTC", "ETH", "SOL"];
    let mut publisher = Client::connect(addr);
    let pad = "x".repeat(PADDING);
    let before_kib = rss_kib();
    publish_keyed_flood(&mut publisher, &mut fast, &keys, &pad);
    let growth_kib = rss_kib().saturating_sub(before_kib);
    assert!(growth_kib < 16 * 1024, "RSS grew by {growth_kib} KiB");
    let ConflatedReception {
        covered,
        gaps,
        latest,
    } = read_conflated(&mut slow);
    assert!(gaps > 0, "conflation happened and was told");
    assert!(
        covered[1..].iter().all(|c| *c),
        "every seq delivered or reported"
    );
    // The freshest value of every key arrived.
    let last_of = |k: usize| {
        (1..=FLOOD_MESSAGES)
            .rev()
            .find(|i| (i % 3) as usize == k)
            .unwrap()
    };
    for (k, name) in keys.iter().enumerate() {
        assert_eq!(latest.get(*name), Some(&last_of(k)), "latest {name}");
    }
}

/// Publishes `FLOOD_MESSAGES` on `px`, keyed by turns with `keys`; `fast` must receive every
/// one, in order (checked every 20 messages).
fn publish_keyed_flood(publisher: &mut Client, fast: &mut Client, keys: &[&str; 3], pad: &str) {
    for i in 1..=FLOOD_MESSAGES {
        let key = keys[(i % 3) as usize];
        let content = json!({"i": i, "k": key, "pad": pad});
        publisher.send(json!({"type": "message", "channel": "px", "content": content, "key": key}));
        if i % 20 == 0 {
            for j in i - 19..=i {
                assert_eq!(fast.recv()["seq"], j, "a fast subscriber loses nothing");
            }
        }
    }
}

/// What the stalled subscriber of the conflate test received once it reads again.
struct ConflatedReception {
    /// By seq: delivered or reported in a gap.
    covered: Vec<bool>,
    /// Gap notices received.
    gaps: u32,
    /// Key → the `i` of the last delivery of that key.
    latest: std::collections::BTreeMap<String, u64>,
}

/// Reads deliveries and gap notices until 300 ms of silence; seqs must increase and nothing
/// else may arrive.
fn read_conflated(slow: &mut Raw) -> ConflatedReception {
    let mut covered = vec![false; FLOOD_MESSAGES as usize + 1];
    let (mut last_seq, mut gaps) = (0u64, 0);
    let mut latest = std::collections::BTreeMap::new();
    while let Some(f) = slow.read_frame_within(Duration::from_millis(300)) {
        let m: Value = serde_json::from_slice(&f.payload).unwrap();
        match m["type"].as_str() {
            Some("message") => {
                let seq = m["seq"].as_u64().unwrap();
                assert!(seq > last_seq, "seq order kept: {seq} after {last_seq}");
                last_seq = seq;
                covered[seq as usize] = true;
                latest.insert(
                    m["content"]["k"].as_str().unwrap().to_string(),
                    m["content"]["i"].as_u64().unwrap(),
                );
            }
            Some("gap") => {
                gaps += 1;
                for s in m["from"].as_u64().unwrap()..=m["to"].as_u64().unwrap() {
                    covered[s as usize] = true;
                }
            }
            _ => panic!("unexpected {m}"),
        }
    }
    ConflatedReception {
        covered,
        gaps,
        latest,
    }
}

/// Parses a binary delivery or gap notice: `(op, seq_or_from, to)`.
fn binary_frame(payload: &[u8]) -> (u8, u64, u64) {
    let l = payload[1] as usize;
    let num = |at: usize| u64::from_be_bytes(payload[at..at + 8].try_into().unwrap());
    match payload[0] {
        0x01 => (0x01, num(2 + l), 0),
        0x02 => (0x02, num(2 + l), num(2 + l + 8)),
        op => panic!("unknown op {op}"),
    }
}

#[test]
fn drop_policy_tells_binary_subscribers_with_a_binary_gap_notice() {
    let _serial = flood_guard();
    let server = common::start(policy_config(SlowConsumerPolicy::Drop));
    let addr = server.local_addr();
    let mut slow = stalled_subscriber(addr, "bin");
    let mut fast = Client::connect(addr);
    fast.subscribe("bin");
    let mut publisher = Client::connect(addr);
    let mut seen = Vec::new();
    let mut frame = vec![0x01, 3];
    frame.extend_from_slice(b"bin");
    frame.extend_from_slice(&[7u8; PADDING]);
    for i in 1..=FLOOD_MESSAGES + 1 {
        if i == FLOOD_MESSAGES + 1 {
            // The relay has nothing more queued for the slow one once it went quiet.
            while let Some(f) = slow.read_frame_within(Duration::from_millis(300)) {
                check_binary(&f, &mut seen);
            }
        }
        publisher
            .ws
            .send(tungstenite::Message::binary(frame.clone()))
            .unwrap();
        if i % 20 == 0 {
            for _ in 0..20 {
                let tungstenite::Message::Binary(b) = fast.ws.read().unwrap() else {
                    panic!()
                };
                assert_eq!(binary_frame(&b).0, 0x01);
            }
        }
    }
    while let Some(f) = slow.read_frame_within(Duration::from_millis(500)) {
        check_binary(&f, &mut seen);
    }
    // Deliveries and binary gap notices cover every seq once, in order, up to the last one.
    let mut expected = 1;
    for &(op, a, b) in &seen {
        assert_eq!(a, expected, "op {op:#x} starts at the next seq");
        expected = if op == 0x02 { b + 1 } else { a + 1 };
    }
    assert_eq!(expected, FLOOD_MESSAGES + 2);
    assert!(
        seen.iter().any(|(op, _, _)| *op == 0x02),
        "a binary gap notice was sent"
    );
}

/// Records a slow subscriber's binary frame; every frame must be binary (op 0x01 or 0x02).
fn check_binary(f: &common::Frame, seen: &mut Vec<(u8, u64, u64)>) {
    assert_eq!(f.opcode, 2, "binary subscribers get binary gap notices");
    seen.push(binary_frame(&f.payload));
}
