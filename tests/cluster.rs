//! Cluster mode against real `nats-server` processes (docs/CLUSTER.md, "Guarantees"): the
//! guarantee tests of the design (shared/design/scale-out.md §12), each on its own servers
//! with a fresh store. They fail when `nats-server` is missing unless `WSRELAY_SKIP_NATS=1`
//! (see `cluster/harness.rs`). Tests assert order and completeness, never speed; deadlines
//! only stop a hung test.

mod common;
#[path = "cluster/harness.rs"]
mod harness;
#[path = "cluster/helpers.rs"]
mod helpers;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::Client;
use harness::{nats_bin, r1_pair, NatsNode, RelayProc, TempDir};
use helpers::*;
use serde_json::{json, Value};

#[test]
fn cross_node_fan_out_is_identical_on_both_relays() {
    let _serial = serial();
    let Some((_dir, _cluster, a, b)) = r3_pair("fanout", "100") else {
        return;
    };
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

#[test]
fn two_writers_on_two_relays_share_one_order_and_lose_no_acked_publish() {
    let _serial = serial();
    // One server (R1): nats-server 2.9.10 does not enforce the per-subject CAS between
    // concurrent publishes on a replicated (R3) stream (docs/CLUSTER.md, "Not guaranteed").
    let Some((_dir, _nats, a, b)) = r1_pair("writers", &["--history-size", "1000"]) else {
        return;
    };
    let channel = "two.writers";
    let mut sub_a = connect(a.addr);
    let mut sub_b = connect(b.addr);
    subscribe(&mut sub_a, channel, None);
    subscribe(&mut sub_b, channel, None);
    let n = 200u64;
    // Rounds in lockstep (a barrier between them): each relay's cached head is stale after
    // the other wrote, so conflicts are certain, not a matter of timing.
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let writer = |addr: SocketAddr, base: u64, barrier: std::sync::Arc<std::sync::Barrier>| {
        std::thread::spawn(move || {
            let mut c = connect(addr);
            let mut acks = BTreeMap::new();
            for round in 0..n / 10 {
                let from = base + round * 10;
                acks.extend(publish_acked(&mut c, channel, from..from + 10));
                barrier.wait();
            }
            acks
        })
    };
    let wa = writer(a.addr, 0, barrier.clone());
    let wb = writer(b.addr, n, barrier);
    let acks_a = wa.join().expect("writer a");
    let acks_b = wb.join().expect("writer b");
    let total = 2 * n;
    let view_a = read_until_on(&mut sub_a, channel, total, &a);
    let view_b = read_until_on(&mut sub_b, channel, total, &b);
    assert_contiguous(&view_a, 1, total);
    assert_eq!(view_a, view_b, "both relays deliver one order");
    // Every acked publish appears exactly once, at the seq it was acknowledged with.
    let mut by_seq: BTreeMap<u64, u64> = BTreeMap::new();
    for (seq, content) in &view_a {
        let i = content["n"].as_u64().expect("n");
        assert!(by_seq.insert(*seq, i).is_none());
    }
    for (i, seq) in acks_a.iter().chain(acks_b.iter()) {
        assert_eq!(
            by_seq.get(seq),
            Some(i),
            "ack of publish {i} names seq {seq}"
        );
    }
    // Each writer's own publishes keep their order.
    for acks in [&acks_a, &acks_b] {
        let seqs: Vec<u64> = acks.values().copied().collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "per-writer FIFO");
    }
    let conflicts = a.metric("wsrelay_cluster_cas_conflicts_total")
        + b.metric("wsrelay_cluster_cas_conflicts_total");
    assert!(
        conflicts > 0.0,
        "two writers on one channel meet CAS conflicts"
    );
}

#[test]
fn recovery_on_another_relay_hot_and_cold() {
    let _serial = serial();
    let Some((_dir, _cluster, a, b)) = r3_pair("recovery", "1000") else {
        return;
    };
    for (channel, hot) in [("rec.cold", false), ("rec.hot", true)] {
        // Hot: B is live on the channel (a subscriber there) and its ring holds what follows.
        let mut watcher = connect(b.addr);
        if hot {
            subscribe(&mut watcher, channel, None);
        }
        let mut client = connect(a.addr);
        let first = subscribe(&mut client, channel, None);
        let epoch = first["epoch"].as_str().unwrap_or_default().to_string();
        publish_range(a.addr, channel, 0..20);
        let seen = read_until(&mut client, channel, 20);
        assert_contiguous(&seen, 1, 20);
        drop(client); // Disconnects after seq 20.
        publish_range(a.addr, channel, 20..50);
        if hot {
            // B has delivered (and retained) up to 50: an ack on A does not mean B has it
            // yet (no read-your-writes across relays), and this test is about B's ring.
            assert_contiguous(&read_n(&mut watcher, channel, 50), 1, 50);
        }
        let mut again = connect(b.addr);
        // The epoch was minted by the first publish: the one the client saw with seq 1.
        let epoch = match epoch.is_empty() {
            true => {
                let mut probe = connect(b.addr);
                subscribe(&mut probe, channel, None)["epoch"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            }
            false => epoch,
        };
        let v = subscribe(&mut again, channel, Some((20, &epoch)));
        assert_eq!(v["recovered"], true, "{channel}: {v}");
        // Cold, the head may come from a lagging follower (no read-after-write before
        // nats-server 2.12): then the rest comes from the quiet-tail re-check, in order.
        assert!(
            v["seq"].as_u64().is_some_and(|s| (20..=50).contains(&s)),
            "{v}"
        );
        let replay = read_until(&mut again, channel, 50);
        assert_contiguous(&replay, 21, 50);
        for (seq, content) in &replay {
            assert_eq!(content["n"], json!(seq - 1));
        }
        // Then live, with no gap and no duplicate at the seam.
        publish_range(a.addr, channel, 50..55);
        assert_contiguous(&read_n(&mut again, channel, 5), 51, 55);
        if hot {
            assert_contiguous(&read_n(&mut watcher, channel, 5), 51, 55);
        }
    }
    assert!(b.metric("wsrelay_cluster_recoveries_stream_total") >= 1.0);
    assert!(b.metric("wsrelay_cluster_recoveries_ring_total") >= 1.0);
}

#[test]
fn unrecoverable_since_or_epoch_is_recovered_false_with_the_head_and_last_value() {
    let _serial = serial();
    let Some(bin) = nats_bin() else {
        return;
    };
    let dir = TempDir::new("unrecoverable");
    let nats = NatsNode::single(&bin, &dir.0);
    let urls = [nats.url()];
    let flags = [
        "--history-size",
        "10",
        "--last-value",
        "--history-ttl",
        "1500",
    ];
    let a = RelayProc::start(&dir.0, "a", &urls, &flags);
    let b = RelayProc::start(&dir.0, "b", &urls, &flags);
    let channel = "gone";
    publish_range(a.addr, channel, 0..50);
    // Connected across the expiry below: told of the new numbering.
    let mut live = connect(b.addr);
    subscribe(&mut live, channel, None);
    assert_eq!(read_n(&mut live, channel, 1)[0].0, 50, "the last value");
    let mut probe = connect(b.addr);
    let head = subscribe(&mut probe, channel, None);
    assert_eq!(head["seq"], 50);
    let epoch = head["epoch"].as_str().unwrap_or_default().to_string();
    assert_eq!(read_n(&mut probe, channel, 1)[0].0, 50, "the last value");
    drop(probe);
    // Older than the 10 retained: not recovered, the head and the last value, nothing else.
    let mut c = connect(b.addr);
    let v = subscribe(&mut c, channel, Some((5, &epoch)));
    assert_eq!(
        (v["recovered"].clone(), v["seq"].clone()),
        (json!(false), json!(50)),
        "{v}"
    );
    assert_eq!(read_n(&mut c, channel, 1), vec![(50, json!({"n": 49}))]);
    c.ping();
    // Another epoch: not recovered.
    let mut d = connect(a.addr);
    let v = subscribe(&mut d, channel, Some((45, "otherepo")));
    assert_eq!(v["recovered"], false, "{v}");
    drop((c, d));
    // Expiry (history TTL 1.5 s): the next publish mints a new epoch; the old one is gone.
    std::thread::sleep(Duration::from_millis(2500));
    publish_range(a.addr, channel, 100..101);
    // The connected subscriber: a new `subscribed` (new epoch, not recovered), then seq 1.
    let notice = live.recv();
    assert_eq!(notice["type"], "subscribed", "{notice}");
    assert_eq!(
        (notice["recovered"].clone(), notice["seq"].clone()),
        (json!(false), json!(0))
    );
    assert_eq!(read_n(&mut live, channel, 1), vec![(1, json!({"n": 100}))]);
    let mut e = connect(b.addr);
    let v = subscribe(&mut e, channel, Some((50, &epoch)));
    assert_eq!(v["recovered"], false, "{v}");
    assert_eq!(v["seq"], 1, "a new numbering: {v}");
    assert_ne!(v["epoch"], json!(epoch));
    assert_eq!(notice["epoch"], v["epoch"]);
}

#[test]
fn a_slow_loop_queue_is_repaired_from_the_stream_without_dropping_the_connection() {
    let _serial = serial();
    let Some(bin) = nats_bin() else {
        return;
    };
    let dir = TempDir::new("slowbridge");
    let nats = NatsNode::single(&bin, &dir.0);
    let urls = [nats.url()];
    let flags = ["--history-size", "2000", "--nats-loop-queue", "4"];
    let a = RelayProc::start(&dir.0, "a", &urls, &["--history-size", "2000"]);
    let b = RelayProc::start(&dir.0, "b", &urls, &flags);
    // Twenty channels published at once: their live messages reach B's loops in bursts.
    let channels: Vec<String> = (0..20).map(|i| format!("burst.{i}")).collect();
    let mut sub = connect(b.addr);
    for ch in &channels {
        subscribe(&mut sub, ch, None);
    }
    let per_channel = 50u64;
    let mut p = connect(a.addr);
    for i in 0..per_channel {
        for ch in &channels {
            p.send(json!({"type": "message", "channel": ch, "content": {"n": i}}));
        }
    }
    let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let total = per_channel as usize * channels.len();
    let mut got = 0;
    while got < total {
        let v = sub.recv();
        match v["type"].as_str() {
            Some("message") => {
                let ch = v["channel"].as_str().unwrap_or_default().to_string();
                seen.entry(ch)
                    .or_default()
                    .push(v["seq"].as_u64().expect("seq"));
                got += 1;
            }
            Some("gap") => panic!("unexpected gap notice: {v}"),
            _ => {}
        }
    }
    for ch in &channels {
        assert_eq!(seen[ch], (1..=per_channel).collect::<Vec<_>>(), "{ch}");
    }
    assert!(
        b.metric("wsrelay_cluster_bridge_drops_total") > 0.0,
        "the burst overflowed the 4-message loop queue"
    );
    assert!(b.metric("wsrelay_cluster_gaps_detected_total") > 0.0);
    assert_eq!(b.metric("wsrelay_cluster_nats_reconnects_total"), 0.0);
    assert_eq!(b.metric("wsrelay_cluster_nats_connected"), 1.0);
    assert!(!b.log_text().contains("disconnected from NATS"));
}

const R3: [&str; 4] = ["--nats-replicas", "3", "--history-size", "5000"];

#[test]
fn stream_leader_sigkill_stalls_then_resumes_with_no_silent_hole() {
    let _serial = serial();
    let Some((dir, mut cluster)) = three_nodes("leaderkill") else {
        return;
    };
    let urls = cluster.urls();
    let a = RelayProc::start(&dir.0, "a", &urls, &R3);
    let b = RelayProc::start(&dir.0, "b", &urls, &R3);
    cluster.wait_streams_led(8);
    let channel = "failover";
    let stream = format!("WSR_{}", wsrelay::cluster::subject::shard_of(channel, 8));
    let mut sub_a = connect(a.addr);
    let mut sub_b = connect(b.addr);
    subscribe(&mut sub_a, channel, None);
    subscribe(&mut sub_b, channel, None);
    let n = 400;
    let addr = a.addr;
    let writer =
        std::thread::spawn(move || publish_steady(addr, channel, n, Duration::from_millis(5)));
    std::thread::sleep(Duration::from_millis(500));
    let killed = cluster.kill_leader(&stream);
    eprintln!("killed n{} (leader of {stream})", killed + 1);
    let acks = writer.join().expect("writer");
    assert_eq!(
        acks.len() as u64,
        n,
        "every publish acknowledged within the retry time"
    );
    let last = acks.values().copied().max().unwrap_or(0);
    assert_eq!(last, n);
    for s in [&mut sub_a, &mut sub_b] {
        let (seqs, gaps) = read_accounted(s, channel, last);
        eprintln!("delivered {}, gap notices {gaps:?}", seqs.len());
    }
    // The stream holds every seq exactly once, in order: recover all of it.
    let mut r = connect(b.addr);
    let v = subscribe(&mut r, channel, Some((0, "")));
    assert_eq!(
        (v["recovered"].clone(), v["seq"].clone()),
        (json!(true), json!(n)),
        "{v}"
    );
    let all = read_n(&mut r, channel, n as usize);
    assert_contiguous(&all, 1, n);
    for (seq, content) in &all {
        assert_eq!(content["n"], json!(seq - 1), "each publish once, in order");
    }
    let stall_ms = a.metric("wsrelay_cluster_publish_stall_max_ms");
    eprintln!("publish stall on the leader kill: {stall_ms} ms (recorded, not asserted)");
}

#[test]
fn killing_the_relays_nats_server_reconnects_resubscribes_and_repairs() {
    let _serial = serial();
    let Some((dir, mut cluster)) = three_nodes("serverkill") else {
        return;
    };
    let urls = cluster.urls();
    let a = RelayProc::start(&dir.0, "a", &urls, &R3);
    let b = RelayProc::start(&dir.0, "b", &urls, &R3);
    cluster.wait_streams_led(8);
    let channel = "reconnect";
    let mut sub_a = connect(a.addr);
    subscribe(&mut sub_a, channel, None);
    let n = 400;
    let addr = b.addr;
    let writer =
        std::thread::spawn(move || publish_steady(addr, channel, n, Duration::from_millis(5)));
    std::thread::sleep(Duration::from_millis(500));
    let server = cluster
        .server_of("a")
        .expect("relay a is connected somewhere");
    cluster.nodes[server].kill();
    eprintln!("killed n{} (relay a's server)", server + 1);
    let acks = writer.join().expect("writer");
    let last = acks.values().copied().max().unwrap_or(0);
    assert_eq!(acks.len() as u64, n);
    let (seqs, gaps) = read_accounted(&mut sub_a, channel, last);
    assert!(gaps.is_empty(), "repaired, not announced: {gaps:?}");
    assert_eq!(seqs.len() as u64, n);
    let until = Instant::now() + harness::ELECTION_DEADLINE;
    while a.metric("wsrelay_cluster_nats_reconnects_total") < 1.0 {
        assert!(Instant::now() < until, "relay a reconnected");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_stats_moved_away(&a, &cluster.nodes[server].url());
    // Still live after the reconnect.
    publish_range(b.addr, channel, n..n + 5);
    assert_contiguous(&read_n(&mut sub_a, channel, 5), n + 1, n + 5);
}

#[test]
fn a_lame_duck_server_is_left_before_it_closes_with_no_gap_and_no_lost_publish() {
    let _serial = serial();
    let Some((dir, cluster)) = three_nodes("lameduck") else {
        return;
    };
    let urls = cluster.urls();
    let a = RelayProc::start(&dir.0, "a", &urls, &R3);
    let b = RelayProc::start(&dir.0, "b", &urls, &R3);
    cluster.wait_streams_led(8);
    let channel = "lameduck";
    let (mut sub_a, mut sub_b) = (connect(a.addr), connect(b.addr));
    subscribe(&mut sub_a, channel, None);
    subscribe(&mut sub_b, channel, None);
    let n = 400;
    // Read while the publisher writes: the widest wait between deliveries is the move's cost.
    let readers = [sub_a, sub_b].map(|mut s| {
        std::thread::spawn(move || {
            let widest = read_timed(&mut s, channel, n);
            (s, widest)
        })
    });
    let addr = a.addr;
    // The publisher is on relay a, the relay that has to move.
    let writer =
        std::thread::spawn(move || publish_steady(addr, channel, n, Duration::from_millis(5)));
    std::thread::sleep(Duration::from_millis(500));
    let server = cluster.server_of("a").expect("relay a is connected");
    cluster.lame_duck(server);
    eprintln!("n{} (relay a's server) in lame-duck mode", server + 1);
    let acks = writer.join().expect("writer");
    assert_eq!(acks.len() as u64, n, "every publish acked");
    let seqs: std::collections::BTreeSet<u64> = acks.values().copied().collect();
    assert_eq!(seqs, (1..=n).collect(), "acked seqs are 1..=n, once each");
    let [ra, rb] = readers.map(|r| r.join().expect("reader"));
    let ((mut sub_a, widest_a), (mut sub_b, widest_b)) = (ra, rb);
    // The server closes its clients only after its 60 s grace period (harness): relay a
    // left it on its own, on the lame-duck notice.
    let until = Instant::now() + harness::ELECTION_DEADLINE;
    while cluster.server_of("a") == Some(server) {
        assert!(
            Instant::now() < until,
            "relay a still on the lame-duck server"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let event = "wsrelay_cluster_nats_events_total{event=\"lame_duck\"}";
    assert!(a.metric(event) >= 1.0, "lame-duck event counted");
    assert!(a.metric("wsrelay_cluster_nats_reconnects_total") >= 1.0);
    assert_eq!(a.metric("wsrelay_cluster_gaps_announced_total"), 0.0);
    eprintln!(
        "lame duck: widest delivery wait on a {widest_a:?}, on b {widest_b:?}; a: stall max {} ms, \
         retries {}, gaps detected {} repaired {}",
        a.metric("wsrelay_cluster_publish_stall_max_ms"),
        a.metric("wsrelay_cluster_publish_retries_total"),
        a.metric("wsrelay_cluster_gaps_detected_total"),
        a.metric("wsrelay_cluster_gaps_repaired_total"),
    );
    // Still live after the move.
    publish_range(a.addr, channel, n..n + 5);
    assert_contiguous(&read_n(&mut sub_a, channel, 5), n + 1, n + 5);
    assert_contiguous(&read_n(&mut sub_b, channel, 5), n + 1, n + 5);
}

#[test]
fn a_lame_duck_server_with_nowhere_else_to_go_keeps_its_relay() {
    let _serial = serial();
    let Some(bin) = nats_bin() else {
        return;
    };
    let dir = TempDir::new("lameduck1");
    let port = harness::free_port();
    let nats = NatsNode::single_with(&bin, &dir.0, port, "lame_duck_grace_period: 60s");
    let a = RelayProc::start(&dir.0, "a", &[nats.url()], &["--history-size", "100"]);
    let channel = "alone";
    let mut sub = connect(a.addr);
    subscribe(&mut sub, channel, None);
    publish_range(a.addr, channel, 0..5);
    nats.lame_duck(&bin);
    let event = "wsrelay_cluster_nats_events_total{event=\"lame_duck\"}";
    let until = Instant::now() + harness::ELECTION_DEADLINE;
    while a.metric(event) < 1.0 {
        assert!(Instant::now() < until, "lame-duck event counted");
        std::thread::sleep(Duration::from_millis(50));
    }
    publish_range(a.addr, channel, 5..10);
    assert_contiguous(&read_n(&mut sub, channel, 10), 1, 10);
    // The only server known: the relay kept its connection (no disconnect, no reconnect).
    let disconnected = "wsrelay_cluster_nats_events_total{event=\"disconnected\"}";
    assert_eq!(a.metric(disconnected), 0.0);
    assert_eq!(a.metric("wsrelay_cluster_nats_reconnects_total"), 0.0);
}

#[test]
fn a_subscribe_racing_a_publisher_on_another_server_starts_at_head_plus_one() {
    let _serial = serial();
    let Some((dir, cluster)) = three_nodes("race") else {
        return;
    };
    // B speaks only to n2, the publisher's relay C only to n3: interest crosses routes.
    let b = RelayProc::start(&dir.0, "b", &[cluster.nodes[1].url()], &R3);
    let c = RelayProc::start(&dir.0, "c", &[cluster.nodes[2].url()], &R3);
    cluster.wait_streams_led(8);
    let channel = "race";
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let caddr = c.addr;
    let hammer = std::thread::spawn(move || {
        let mut p = connect(caddr);
        let mut i = 0u64;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            p.publish(channel, json!({"n": i}));
            i += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    for round in 0..100 {
        let mut s = connect(b.addr);
        let v = subscribe(&mut s, channel, None);
        let head = v["seq"].as_u64().expect("seq");
        // The head's last value is not replayed (no --last-value): the next is head + 1.
        let seen = read_n(&mut s, channel, 3);
        assert_contiguous(&seen, head + 1, head + 3);
        assert!(round < 100);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = hammer.join();
}

#[test]
fn a_nats_node_restarted_on_its_store_rejoins() {
    let _serial = serial();
    let Some((dir, mut cluster)) = three_nodes("restart") else {
        return;
    };
    let urls = cluster.urls();
    let a = RelayProc::start(&dir.0, "a", &urls, &R3);
    cluster.wait_streams_led(8);
    let channel = "rejoin";
    let mut sub = connect(a.addr);
    subscribe(&mut sub, channel, None);
    publish_range(a.addr, channel, 0..50);
    cluster.nodes[2].kill();
    publish_range(a.addr, channel, 50..100);
    cluster.restart(2);
    cluster.wait_streams_led(8);
    assert!(
        !cluster.nodes[2].log().contains("panic"),
        "{}",
        cluster.nodes[2].log()
    );
    publish_range(a.addr, channel, 100..150);
    let (seqs, gaps) = read_accounted(&mut sub, channel, 150);
    assert!(gaps.is_empty(), "{gaps:?}");
    assert_eq!(seqs.len(), 150);
}

#[test]
fn a_killed_relays_clients_recover_on_another_relay() {
    let _serial = serial();
    let Some((_dir, _nats, mut a, b)) = r1_pair("relaykill", &["--history-size", "1000"]) else {
        return;
    };
    let (x, y) = ("on.a", "on.b");
    let mut client_a = connect(a.addr);
    let epoch_probe = subscribe(&mut client_a, x, None);
    let mut client_b = connect(b.addr);
    subscribe(&mut client_b, y, None);
    publish_range(b.addr, x, 0..10);
    publish_range(b.addr, y, 0..10);
    assert_contiguous(&read_n(&mut client_a, x, 10), 1, 10);
    assert_contiguous(&read_n(&mut client_b, y, 10), 1, 10);
    let _ = epoch_probe;
    let mut probe = connect(b.addr);
    let epoch = subscribe(&mut probe, x, None)["epoch"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    a.kill();
    publish_range(b.addr, x, 10..20);
    publish_range(b.addr, y, 10..20);
    // A's client reconnects to B and recovers from seq 10.
    let mut again = connect(b.addr);
    let v = subscribe(&mut again, x, Some((10, &epoch)));
    assert_eq!(
        (v["recovered"].clone(), v["seq"].clone()),
        (json!(true), json!(20)),
        "{v}"
    );
    assert_contiguous(&read_n(&mut again, x, 10), 11, 20);
    // B's own channel was unaffected.
    assert_contiguous(&read_n(&mut client_b, y, 10), 11, 20);
}

#[test]
fn direct_get_latency_is_exported_after_a_recovery_from_the_stream() {
    let _serial = serial();
    let Some((_dir, _nats, a, b)) = r1_pair("directget", &["--history-size", "1000"]) else {
        return;
    };
    let channel = "dget";
    let mut client = connect(a.addr);
    subscribe(&mut client, channel, None);
    // One publish per round trip: 20 stored messages (no coalescing).
    for i in 0..20 {
        publish_range(a.addr, channel, i..i + 1);
    }
    assert_contiguous(&read_n(&mut client, channel, 20), 1, 20);
    let epoch = subscribe(&mut connect(a.addr), channel, None)["epoch"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let before = b.metric("wsrelay_cluster_direct_get_seconds_count");
    // B never had the channel: the recovery walks the stream back from seq 20 to 11.
    let mut again = connect(b.addr);
    let v = subscribe(&mut again, channel, Some((10, &epoch)));
    assert_eq!(
        (v["recovered"].clone(), v["seq"].clone()),
        (json!(true), json!(20)),
        "{v}"
    );
    assert_contiguous(&read_n(&mut again, channel, 10), 11, 20);
    assert_eq!(b.metric("wsrelay_cluster_recoveries_stream_total"), 1.0);
    let text = b.metrics();
    for line in [
        "# TYPE wsrelay_cluster_direct_get_seconds summary",
        "wsrelay_cluster_direct_get_seconds{quantile=\"0.99\"} ",
    ] {
        assert!(text.contains(line), "{line} in /metrics");
    }
    // The walk: the head, then one get per stored message down to seq 11.
    let count = b.metric("wsrelay_cluster_direct_get_seconds_count");
    assert!(count >= before + 10.0, "{before} then {count} direct gets");
    assert!(b.metric("wsrelay_cluster_direct_get_seconds_sum") > 0.0);
    assert!(b.metric("wsrelay_cluster_direct_get_seconds{quantile=\"0.5\"}") > 0.0);
}

#[test]
fn nats_unreachable_at_start_up_exits_or_with_nats_wait_is_not_ready_until_it_comes() {
    let _serial = serial();
    let Some(bin) = nats_bin() else {
        return;
    };
    let dir = TempDir::new("natswait");
    let port = harness::free_port();
    let url = format!("nats://127.0.0.1:{port}");
    // Without --nats-wait: a clear error and a failing exit status.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wsrelay"))
        .args(["--bind", "127.0.0.1", "--port", "0", "--nats", &url])
        .env_remove("WS_NATS_URL")
        .output()
        .expect("wsrelay runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("cannot connect to NATS"), "{stderr}");
    // With it: listening, /healthz 503, then ready once NATS is there.
    let relay = RelayProc::start(&dir.0, "w", &[url], &["--nats-wait"]);
    let health =
        |r: &RelayProc| harness::http_get_body(r.addr.port(), "/healthz").unwrap_or_default();
    assert!(health(&relay).contains("not ready"), "{}", health(&relay));
    let _nats = NatsNode::single_on(&bin, &dir.0, port);
    let until = Instant::now() + harness::ELECTION_DEADLINE;
    while health(&relay) != "ok\n" {
        assert!(
            Instant::now() < until,
            "ready once NATS is up:\n{}",
            relay.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut s = connect(relay.addr);
    subscribe(&mut s, "waited", None);
    publish_range(relay.addr, "waited", 0..3);
    assert_contiguous(&read_n(&mut s, "waited", 3), 1, 3);
}

#[test]
fn binary_publishes_are_acked_once_stored_and_reach_the_other_relay() {
    let _serial = serial();
    let Some((_dir, _nats, a, b)) = r1_pair("binary", &[]) else {
        return;
    };
    let channel = b"bin.room";
    let mut sub = connect(b.addr);
    subscribe(&mut sub, "bin.room", None);
    let mut p = connect(a.addr);
    for (i, payload) in [&[1u8, 2, 3][..], &[0xff; 40][..]].iter().enumerate() {
        // [0x04][L][channel][I][id][payload]: a binary publish asking for an ack.
        let id = format!("b{i}");
        let mut frame = vec![0x04, channel.len() as u8];
        frame.extend_from_slice(channel);
        frame.push(id.len() as u8);
        frame.extend_from_slice(id.as_bytes());
        frame.extend_from_slice(payload);
        p.ws.send(tungstenite::Message::binary(frame))
            .expect("send");
        // The ack: [0x04][L][channel][I][id][seq u64 BE].
        let ack = read_binary(&mut p);
        let mut want = vec![0x04, channel.len() as u8];
        want.extend_from_slice(channel);
        want.push(id.len() as u8);
        want.extend_from_slice(id.as_bytes());
        want.extend_from_slice(&(i as u64 + 1).to_be_bytes());
        assert_eq!(ack, want);
        // The delivery on B: [0x01][L][channel][seq u64][payload].
        let got = read_binary(&mut sub);
        let mut want = vec![0x01, channel.len() as u8];
        want.extend_from_slice(channel);
        want.extend_from_slice(&(i as u64 + 1).to_be_bytes());
        want.extend_from_slice(payload);
        assert_eq!(got, want);
    }
}

#[test]
fn an_authenticated_nats_needs_the_token() {
    let _serial = serial();
    let Some(bin) = nats_bin() else {
        return;
    };
    let dir = TempDir::new("token");
    let nats = NatsNode::single_with(
        &bin,
        &dir.0,
        harness::free_port(),
        "authorization { token: \"s3cret-token\" }",
    );
    let url = nats.url();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wsrelay"))
        .args(["--bind", "127.0.0.1", "--port", "0", "--nats", &url])
        .env_remove("WS_NATS_URL")
        .env_remove("WS_NATS_TOKEN")
        .output()
        .expect("wsrelay runs");
    assert!(!out.status.success(), "refused without the token");
    let a = RelayProc::start(&dir.0, "a", &[url], &["--nats-token", "s3cret-token"]);
    let mut s = connect(a.addr);
    subscribe(&mut s, "auth.ok", None);
    publish_range(a.addr, "auth.ok", 0..2);
    assert_contiguous(&read_n(&mut s, "auth.ok", 2), 1, 2);
}

#[test]
fn keyed_publishes_carry_key_and_delete_to_other_relays_as_on_one_node() {
    let _serial = serial();
    let Some((_dir, _nats, a, b)) = r1_pair("keyed", &[]) else {
        return;
    };
    let channel = "book.k";
    let mut on_b = connect(b.addr);
    subscribe(&mut on_b, channel, None);
    let mut publisher = connect(a.addr);
    let publishes = [
        json!({"type": "message", "channel": channel, "content": {"px": 1}, "key": "BTC"}),
        json!({"type": "message", "channel": channel, "content": null, "key": "BTC", "delete": true}),
        json!({"type": "message", "channel": channel, "content": {"px": 2}}),
    ];
    for p in publishes {
        publisher.send(p);
    }
    let mut got = Vec::new();
    while got.len() < 3 {
        let v = on_b.recv();
        if v["type"] == "message" {
            got.push((v["seq"].clone(), v["key"].clone(), v["delete"].clone()));
        }
    }
    assert_eq!(
        got,
        vec![
            (json!(1), json!("BTC"), Value::Null),
            (json!(2), json!("BTC"), json!(true)),
            (json!(3), Value::Null, Value::Null),
        ],
        "key and delete as single-node deliveries carry them (docs/PROTOCOL.md)"
    );
}

#[test]
fn stats_has_the_nodes_nats_state_and_its_figures_move() {
    let _serial = serial();
    let Some((_dir, nats, a, _b)) = r1_pair("statsnode", &[]) else {
        return;
    };
    let before = a.stats();
    let cluster = &before["cluster"];
    assert_connected_identity(cluster, "a.", &nats);
    let published =
        |v: &Value| v["cluster"]["counters"]["wsrelay_cluster_published_total"].as_u64();
    let acks = |v: &Value| v["cluster"]["latency"]["publish_ack"]["count"].as_u64();
    // Every figure the status page shows exists (a misspelt path would render "–").
    let paths = status_page_cluster_paths();
    assert!(paths.len() >= 10, "{paths:?}");
    for path in &paths {
        assert!(
            at(&before, path).is_some(),
            "{path} missing from /stats: {cluster}"
        );
    }

    let mut publisher = connect(a.addr);
    let acked = publish_acked(&mut publisher, "statsnode", 0..3);
    assert_eq!(acked.len(), 3);
    let after = a.stats();
    assert_eq!(
        published(&after),
        published(&before).map(|n| n + 3),
        "{}",
        after["cluster"]
    );
    assert!(
        acks(&after) >= acks(&before).map(|n| n + 1),
        "{}",
        after["cluster"]
    );
    let p99 = &after["cluster"]["latency"]["publish_ack"]["p99_ns"];
    assert!(p99.as_u64().is_some_and(|ns| ns > 0), "{p99}");
    // After a publish every figure of the page has a value.
    for path in &paths {
        assert!(
            at(&after, path).is_some_and(|v| !v.is_null()),
            "{path}: {}",
            after["cluster"]
        );
    }
    // The same figures as /metrics.
    let metric = a.metric("wsrelay_cluster_published_total");
    assert_eq!(published(&after).map(|n| n as f64), Some(metric));
}
