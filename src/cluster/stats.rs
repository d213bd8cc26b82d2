//! Cluster-mode metrics (docs/CLUSTER.md, "Metrics"): counters and gauges the bridge thread
//! updates (atomics), three HDR histograms it records into (a mutex taken by the bridge per
//! record and by `/metrics` per scrape: never by a loop), and the NATS connection state
//! `/healthz` reports, and the node's identity (its name, the NATS server it is connected to)
//! that `/stats` shows in its `cluster` member. No per-channel label (unbounded cardinality).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hdrhistogram::Histogram;

use crate::metrics::stats_json::write_json_string;

/// The counters, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Stat {
    /// Gaps seen (node-level: stream order; loop-level: a full loop queue).
    GapsDetected,
    /// Gaps closed from the stream.
    GapsRepaired,
    /// Gaps announced to clients (past retention).
    GapsAnnounced,
    /// Epoch changes seen on live channels.
    EpochResets,
    /// `WrongLastSequence` replies.
    CasConflicts,
    /// Publish attempts retried (timeout, no leader, disconnected).
    PublishRetries,
    /// Publishes refused: loop → bridge queue full.
    FailQueueFull,
    /// Publishes refused: the channel's publish queue full.
    FailChannelQueueFull,
    /// Publishes given up after the retry time (outcome unknown).
    FailOutcomeUnknown,
    /// Publishes refused by the server for good (too large, conflicts without end).
    FailRejected,
    /// Bridge → loop messages dropped (queue full; repaired from the stream).
    BridgeDrops,
    /// async-nats `SlowConsumer` events.
    SlowConsumer,
    /// Reconnections to NATS.
    Reconnects,
    /// Recoveries served from the owner's ring.
    RecoveriesRing,
    /// Recoveries served from the stream.
    RecoveriesStream,
    /// Recoveries that could not be served (`recovered:false`).
    RecoveriesFailed,
    /// Publishes stored and acknowledged by JetStream (frames).
    Published,
    /// Publish stall events: a publish that waited for a stream leader (timeouts in a row).
    PublishStalls,
    /// Stored messages whose seqs repeat delivered ones (a CAS the server did not enforce).
    NumberingConflicts,
    /// Presence: relays not heard for the node timeout (their members left).
    PresenceNodesExpired,
    /// Presence: lost changes detected (a relay's counter jumped): its list asked again.
    PresenceResyncs,
    /// Presence: first syncs ended by their timeout (a relay heard alive did not answer).
    PresenceSyncTimeouts,
    /// Presence: changes for an owner loop dropped on its full queue (the full set follows).
    PresenceOwnerResets,
    /// Presence: outgoing messages dropped on the full publishing queue (re-sent in full).
    PresenceSendDrops,
    /// Keyed snapshots: stored messages the key store never applied because the stream's
    /// history no longer held them (a seq jump after the watermark).
    SnapshotLost,
    /// Keyed snapshots: batches whose key-store update was given up (errors past the retry
    /// time; a later batch's update applies them, or they are counted lost).
    SnapshotApplyFailures,
    /// Keyed snapshots: snapshots read from the key store (a relay's first subscriber, or a
    /// reload after a gap).
    SnapshotLoads,
    /// async-nats `LameDuckMode` events (the server asked its clients to move).
    EventLameDuck,
    /// async-nats `Disconnected` events (lost, or left for a lame-duck move).
    EventDisconnected,
    /// async-nats `ServerError` events.
    EventServerError,
    /// async-nats `ClientError` events (a failed connection attempt, among others).
    EventClientError,
}

const STATS: usize = Stat::EventClientError as usize + 1;

/// Shared by the bridge (writer), the loops and `/metrics` (readers).
#[derive(Debug)]
pub struct ClusterStats {
    counters: [AtomicU64; STATS],
    /// 1 while the NATS connection is up.
    connected: AtomicU64,
    /// 1 once the streams are checked and the bridge serves.
    ready: AtomicU64,
    /// Core subscriptions held (live channels).
    live_channels: AtomicU64,
    /// Commands waiting in the loop → bridge queue (sampled by the bridge).
    queue_depth: AtomicU64,
    /// Longest publish stall seen, ms.
    stall_max_ms: AtomicU64,
    /// Presence: other relays heard alive.
    presence_nodes: AtomicU64,
    /// Presence: channels followed across relays.
    presence_channels: AtomicU64,
    ack_ns: Mutex<Histogram<u64>>,
    fanin_ns: Mutex<Histogram<u64>>,
    direct_get_ns: Mutex<Histogram<u64>>,
    /// Node name and NATS server (set at start and on every (re)connection; read by `/stats`).
    identity: Mutex<Identity>,
}

/// Who this relay is in the cluster, and whom it talks to.
#[derive(Debug, Default, Clone)]
struct Identity {
    /// `<name>.<boot nonce>`.
    node: String,
    /// The NATS server of the current (or last) connection.
    server: Option<NatsServer>,
}

/// The NATS server a relay is connected to, as that server describes itself (INFO).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NatsServer {
    /// `server_name`.
    pub name: String,
    /// `version`.
    pub version: String,
    /// `host` (the address it listens on, as configured on the server).
    pub host: String,
    /// `port`.
    pub port: u16,
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 60 s, 3 significant digits: constant bounds that hdrhistogram accepts.
    Histogram::new_with_bounds(1_000, 60_000_000_000, 3).expect("valid constant bounds")
}

impl Default for ClusterStats {
    fn default() -> Self {
        ClusterStats {
            counters: std::array::from_fn(|_| AtomicU64::new(0)),
            connected: AtomicU64::new(0),
            ready: AtomicU64::new(0),
            live_channels: AtomicU64::new(0),
            queue_depth: AtomicU64::new(0),
            stall_max_ms: AtomicU64::new(0),
            presence_nodes: AtomicU64::new(0),
            presence_channels: AtomicU64::new(0),
            ack_ns: Mutex::new(histogram()),
            fanin_ns: Mutex::new(histogram()),
            direct_get_ns: Mutex::new(histogram()),
            identity: Mutex::new(Identity::default()),
        }
    }
}

impl ClusterStats {
    /// Adds `n` to a counter.
    pub fn add(&self, stat: Stat, n: u64) {
        self.counters[stat as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Adds 1 to a counter.
    pub fn inc(&self, stat: Stat) {
        self.add(stat, 1);
    }

    /// A counter's value.
    pub fn get(&self, stat: Stat) -> u64 {
        self.counters[stat as usize].load(Ordering::Relaxed)
    }

    /// The NATS connection went up or down.
    pub fn set_connected(&self, up: bool) {
        self.connected.store(u64::from(up), Ordering::Relaxed);
    }

    /// The bridge serves (streams checked) or not.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(u64::from(ready), Ordering::Relaxed);
    }

    /// Connected and serving (`/healthz`).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) == 1 && self.connected.load(Ordering::Relaxed) == 1
    }

    /// This relay's node name (`<name>.<nonce>`), shown by `/stats`.
    pub fn set_node(&self, node: &str) {
        if let Ok(mut id) = self.identity.lock() {
            id.node = node.to_string();
        }
    }

    /// The NATS server of the current connection, shown by `/stats`.
    pub fn set_server(&self, server: NatsServer) {
        if let Ok(mut id) = self.identity.lock() {
            id.server = Some(server);
        }
    }

    /// Live subscriptions held.
    pub fn set_live_channels(&self, n: u64) {
        self.live_channels.store(n, Ordering::Relaxed);
    }

    /// Commands queued to the bridge.
    pub fn set_queue_depth(&self, n: u64) {
        self.queue_depth.store(n, Ordering::Relaxed);
    }

    /// Presence: relays heard alive and channels followed.
    pub fn set_presence(&self, nodes: u64, channels: u64) {
        self.presence_nodes.store(nodes, Ordering::Relaxed);
        self.presence_channels.store(channels, Ordering::Relaxed);
    }

    /// A publish waited `ms` for a leader (keeps the longest).
    pub fn record_stall_ms(&self, ms: u64) {
        self.stall_max_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// Relay send → PubAck, per attempt.
    pub fn record_ack_ns(&self, ns: u64) {
        if let Ok(mut h) = self.ack_ns.lock() {
            h.saturating_record(ns.max(1_000));
        }
    }

    /// `Wsr-Ts` → bridge receive.
    pub fn record_fanin_ns(&self, ns: u64) {
        if let Ok(mut h) = self.fanin_ns.lock() {
            h.saturating_record(ns.max(1_000));
        }
    }

    /// One direct get's round trip (head reads, repairs, successor checks, recovery).
    pub fn record_direct_get_ns(&self, ns: u64) {
        if let Ok(mut h) = self.direct_get_ns.lock() {
            h.saturating_record(ns.max(1_000));
        }
    }

    /// The 50th, 90th and 99th percentile of publish → ack in ns, and the count.
    pub fn ack_quantiles_ns(&self) -> (u64, u64, u64, u64) {
        self.ack_ns.lock().map_or((0, 0, 0, 0), |h| {
            (
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.9),
                h.value_at_quantile(0.99),
                h.len(),
            )
        })
    }

    /// Appends the cluster families in Prometheus text format.
    pub fn render_prometheus(&self, out: &mut String) {
        self.render_counters(out);
        self.render_gauges(out);
        for (_, name, help, h) in self.summaries() {
            render_summary(out, name, help, h);
        }
    }

    fn render_counters(&self, out: &mut String) {
        for (name, help, stat) in COUNTERS {
            let _ = writeln!(out, "# HELP wsrelay_cluster_{name} {help}");
            let _ = writeln!(out, "# TYPE wsrelay_cluster_{name} counter");
            let _ = writeln!(out, "wsrelay_cluster_{name} {}", self.get(*stat));
        }
        let name = "wsrelay_cluster_publish_failures_total";
        let _ = writeln!(out, "# HELP {name} publishes answered unavailable");
        let _ = writeln!(out, "# TYPE {name} counter");
        for (reason, stat) in FAILURES {
            let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {}", self.get(*stat));
        }
        let name = "wsrelay_cluster_nats_events_total";
        let _ = writeln!(out, "# HELP {name} async-nats connection events");
        let _ = writeln!(out, "# TYPE {name} counter");
        for (event, stat) in EVENTS {
            let _ = writeln!(out, "{name}{{event=\"{event}\"}} {}", self.get(*stat));
        }
    }

    /// The gauges: name (after `wsrelay_cluster_`), help, value.
    fn gauges(&self) -> [(&'static str, &'static str, &AtomicU64); 7] {
        [
            (
                "nats_connected",
                "1 while the NATS connection is up",
                &self.connected,
            ),
            ("ready", "1 once the streams are checked", &self.ready),
            (
                "live_channels",
                "live subscriptions held",
                &self.live_channels,
            ),
            (
                "bridge_queue_depth",
                "commands waiting for the bridge",
                &self.queue_depth,
            ),
            (
                "publish_stall_max_ms",
                "longest wait for a stream leader, ms",
                &self.stall_max_ms,
            ),
            (
                "presence_nodes",
                "other relays heard alive (presence)",
                &self.presence_nodes,
            ),
            (
                "presence_channels",
                "presence channels followed across relays",
                &self.presence_channels,
            ),
        ]
    }

    fn render_gauges(&self, out: &mut String) {
        for (name, help, value) in self.gauges() {
            let _ = writeln!(out, "# HELP wsrelay_cluster_{name} {help}");
            let _ = writeln!(out, "# TYPE wsrelay_cluster_{name} gauge");
            let _ = writeln!(
                out,
                "wsrelay_cluster_{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
    }

    /// The histograms: `/stats` key, family name (after `wsrelay_cluster_`), help, histogram.
    fn summaries(
        &self,
    ) -> [(
        &'static str,
        &'static str,
        &'static str,
        &Mutex<Histogram<u64>>,
    ); 3] {
        [
            (
                "publish_ack",
                "publish_ack_seconds",
                "relay send to PubAck, per attempt",
                &self.ack_ns,
            ),
            (
                "fanin_lag",
                "fanin_lag_seconds",
                "Wsr-Ts to bridge receive",
                &self.fanin_ns,
            ),
            (
                "direct_get",
                "direct_get_seconds",
                "direct get round trip (head reads, repairs, recovery reads)",
                &self.direct_get_ns,
            ),
        ]
    }

    /// Writes the `cluster` member of `/stats` (a JSON object; layout in docs/CLUSTER.md,
    /// "Metrics"): the node's identity and NATS state, then the `/metrics` figures under the
    /// same names. Quantiles and the mean are `null` while a histogram is empty.
    pub fn write_stats_json(&self, out: &mut String) {
        let identity = self
            .identity
            .lock()
            .map(|id| id.clone())
            .unwrap_or_default();
        out.push_str("{\"node\":");
        write_json_string(&identity.node, out);
        let connected = self.connected.load(Ordering::Relaxed) == 1;
        let _ = write!(out, ",\"nats_connected\":{connected}");
        let _ = write!(out, ",\"ready\":{}", self.is_ready());
        out.push_str(",\"nats_server\":");
        match &identity.server {
            Some(server) => write_server(server, out),
            None => out.push_str("null"),
        }
        out.push_str(",\"counters\":{");
        let mut first = true;
        for (name, _, stat) in COUNTERS {
            write_key(&mut first, &format!("wsrelay_cluster_{name}"), out);
            let _ = write!(out, "{}", self.get(*stat));
        }
        for (family, labeled) in [
            ("publish_failures_total", FAILURES),
            ("nats_events_total", EVENTS),
        ] {
            write_key(&mut first, &format!("wsrelay_cluster_{family}"), out);
            let mut inner = true;
            out.push('{');
            for (label, stat) in labeled {
                write_key(&mut inner, label, out);
                let _ = write!(out, "{}", self.get(*stat));
            }
            out.push('}');
        }
        out.push_str("},\"gauges\":{");
        let mut first = true;
        for (name, _, value) in self.gauges() {
            write_key(&mut first, &format!("wsrelay_cluster_{name}"), out);
            let _ = write!(out, "{}", value.load(Ordering::Relaxed));
        }
        out.push_str("},\"latency\":{");
        let mut first = true;
        for (key, _, _, h) in self.summaries() {
            write_key(&mut first, key, out);
            write_summary_json(h, out);
        }
        out.push_str("}}");
    }
}

/// `,"key":` (no comma before the first key of an object).
fn write_key(first: &mut bool, key: &str, out: &mut String) {
    if !std::mem::take(first) {
        out.push(',');
    }
    write_json_string(key, out);
    out.push(':');
}

fn write_server(server: &NatsServer, out: &mut String) {
    out.push_str("{\"name\":");
    write_json_string(&server.name, out);
    out.push_str(",\"version\":");
    write_json_string(&server.version, out);
    out.push_str(",\"host\":");
    write_json_string(&server.host, out);
    let _ = write!(out, ",\"port\":{}}}", server.port);
}

/// `{"count":..,"sum_ns":..,"p50_ns":..,"p90_ns":..,"p99_ns":..,"p999_ns":..,"mean_ns":..}`.
fn write_summary_json(h: &Mutex<Histogram<u64>>, out: &mut String) {
    let Ok(h) = h.lock() else {
        out.push_str("null");
        return;
    };
    let count = h.len();
    let sum = (h.mean() * count as f64).round() as u64;
    let _ = write!(out, "{{\"count\":{count},\"sum_ns\":{sum}");
    for (key, q) in [
        ("p50_ns", 0.5),
        ("p90_ns", 0.9),
        ("p99_ns", 0.99),
        ("p999_ns", 0.999),
    ] {
        match count {
            0 => {
                let _ = write!(out, ",\"{key}\":null");
            }
            _ => {
                let _ = write!(out, ",\"{key}\":{}", h.value_at_quantile(q));
            }
        }
    }
    match count {
        0 => out.push_str(",\"mean_ns\":null}"),
        _ => {
            let _ = write!(out, ",\"mean_ns\":{:.1}}}", h.mean());
        }
    }
}

/// Counter families: name (after `wsrelay_cluster_`), help, counter.
const COUNTERS: &[(&str, &str, Stat)] = &[
    (
        "gaps_detected_total",
        "gaps seen (node and loop level)",
        Stat::GapsDetected,
    ),
    (
        "gaps_repaired_total",
        "gaps closed from the stream",
        Stat::GapsRepaired,
    ),
    (
        "gaps_announced_total",
        "gaps announced to clients",
        Stat::GapsAnnounced,
    ),
    (
        "epoch_resets_total",
        "epoch changes seen",
        Stat::EpochResets,
    ),
    (
        "cas_conflicts_total",
        "WrongLastSequence replies",
        Stat::CasConflicts,
    ),
    (
        "publish_retries_total",
        "publish attempts retried",
        Stat::PublishRetries,
    ),
    (
        "bridge_drops_total",
        "bridge to loop messages dropped",
        Stat::BridgeDrops,
    ),
    (
        "slow_consumer_total",
        "async-nats SlowConsumer events",
        Stat::SlowConsumer,
    ),
    (
        "nats_reconnects_total",
        "reconnections to NATS",
        Stat::Reconnects,
    ),
    (
        "published_total",
        "publishes acknowledged by JetStream",
        Stat::Published,
    ),
    (
        "publish_stalls_total",
        "publishes that waited for a stream leader",
        Stat::PublishStalls,
    ),
    (
        "recoveries_ring_total",
        "recoveries served from the ring",
        Stat::RecoveriesRing,
    ),
    (
        "recoveries_stream_total",
        "recoveries served from the stream",
        Stat::RecoveriesStream,
    ),
    (
        "recoveries_failed_total",
        "recoveries answered recovered:false",
        Stat::RecoveriesFailed,
    ),
    (
        "numbering_conflicts_total",
        "stored messages repeating delivered seqs, skipped",
        Stat::NumberingConflicts,
    ),
    (
        "presence_nodes_expired_total",
        "relays not heard for the node timeout; their members left",
        Stat::PresenceNodesExpired,
    ),
    (
        "presence_resyncs_total",
        "lost presence changes detected; the relay's list asked again",
        Stat::PresenceResyncs,
    ),
    (
        "presence_sync_timeouts_total",
        "first presence syncs ended by their timeout",
        Stat::PresenceSyncTimeouts,
    ),
    (
        "presence_owner_resets_total",
        "presence changes dropped on a full loop queue; the full set sent instead",
        Stat::PresenceOwnerResets,
    ),
    (
        "presence_send_drops_total",
        "presence messages dropped on the full publishing queue; lists re-sent",
        Stat::PresenceSendDrops,
    ),
    (
        "snapshot_lost_total",
        "stored messages of keyed-snapshot channels lost before the key store applied them",
        Stat::SnapshotLost,
    ),
    (
        "snapshot_apply_failures_total",
        "key-store updates given up after the retry time",
        Stat::SnapshotApplyFailures,
    ),
    (
        "snapshot_loads_total",
        "keyed snapshots read from the key store",
        Stat::SnapshotLoads,
    ),
];

/// `publish_failures_total{reason}` values.
const FAILURES: &[(&str, Stat)] = &[
    ("queue_full", Stat::FailQueueFull),
    ("channel_queue_full", Stat::FailChannelQueueFull),
    ("outcome_unknown", Stat::FailOutcomeUnknown),
    ("rejected", Stat::FailRejected),
];

/// `nats_events_total{event}` values.
const EVENTS: &[(&str, Stat)] = &[
    ("lame_duck", Stat::EventLameDuck),
    ("disconnected", Stat::EventDisconnected),
    ("server_error", Stat::EventServerError),
    ("client_error", Stat::EventClientError),
];

/// A histogram as a Prometheus summary (quantiles, sum, count).
fn render_summary(out: &mut String, name: &str, help: &str, h: &Mutex<Histogram<u64>>) {
    let Ok(h) = h.lock() else {
        return;
    };
    let _ = writeln!(out, "# HELP wsrelay_cluster_{name} {help}");
    let _ = writeln!(out, "# TYPE wsrelay_cluster_{name} summary");
    for q in [0.5, 0.9, 0.99, 0.999] {
        let v = h.value_at_quantile(q) as f64 / 1e9;
        let _ = writeln!(out, "wsrelay_cluster_{name}{{quantile=\"{q}\"}} {v}");
    }
    let sum = h.mean() * h.len() as f64 / 1e9;
    let _ = writeln!(out, "wsrelay_cluster_{name}_sum {sum}");
    let _ = writeln!(out, "wsrelay_cluster_{name}_count {}", h.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_gets_and_connection_events_are_rendered() {
        let stats = ClusterStats::default();
        stats.record_direct_get_ns(250_000);
        stats.record_direct_get_ns(750_000);
        stats.inc(Stat::EventLameDuck);
        let mut out = String::new();
        stats.render_prometheus(&mut out);
        assert!(out.contains("# TYPE wsrelay_cluster_direct_get_seconds summary\n"));
        assert!(out.contains("\nwsrelay_cluster_direct_get_seconds_count 2\n"));
        assert!(out.contains("\nwsrelay_cluster_nats_events_total{event=\"lame_duck\"} 1\n"));
        assert!(out.contains("\nwsrelay_cluster_nats_events_total{event=\"disconnected\"} 0\n"));
        let sum = out
            .lines()
            .find_map(|l| l.strip_prefix("wsrelay_cluster_direct_get_seconds_sum "))
            .and_then(|v| v.parse::<f64>().ok())
            .expect("sum");
        assert!((sum - 0.001).abs() < 1e-5, "{sum}");
    }

    #[test]
    fn stats_json_has_identity_state_and_the_metrics_figures() {
        let stats = ClusterStats::default();
        let mut out = String::new();
        stats.write_stats_json(&mut out);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        assert_eq!(v["nats_server"], serde_json::Value::Null, "{out}");
        assert_eq!(
            v["latency"]["publish_ack"]["p99_ns"],
            serde_json::Value::Null
        );
        stats.set_node("a\".x1");
        stats.set_server(NatsServer {
            name: "n1".into(),
            version: "2.10.0".into(),
            host: "127.0.0.1".into(),
            port: 4222,
        });
        stats.set_connected(true);
        stats.set_ready(true);
        stats.set_presence(2, 5);
        stats.add(Stat::Published, 3);
        stats.inc(Stat::FailRejected);
        stats.inc(Stat::EventDisconnected);
        stats.record_ack_ns(2_000_000);
        let mut out = String::new();
        stats.write_stats_json(&mut out);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        assert_eq!(v["node"], "a\".x1", "{out}");
        assert_eq!(
            (v["nats_connected"].clone(), v["ready"].clone()),
            (true.into(), true.into())
        );
        let server = serde_json::json!({"name": "n1", "version": "2.10.0", "host": "127.0.0.1", "port": 4222});
        assert_eq!(v["nats_server"], server);
        let counters = &v["counters"];
        assert_eq!(counters["wsrelay_cluster_published_total"], 3);
        assert_eq!(
            counters["wsrelay_cluster_publish_failures_total"]["rejected"],
            1
        );
        assert_eq!(
            counters["wsrelay_cluster_nats_events_total"]["disconnected"],
            1
        );
        assert_eq!(v["gauges"]["wsrelay_cluster_presence_nodes"], 2);
        assert_eq!(v["gauges"]["wsrelay_cluster_nats_connected"], 1);
        let ack = &v["latency"]["publish_ack"];
        assert_eq!(ack["count"], 1);
        let p99 = ack["p99_ns"].as_u64().unwrap_or_default();
        assert!((2_000_000..=2_002_000).contains(&p99), "{ack}");
        assert_same_as_prometheus(&stats, &v);
    }

    /// Every unlabeled `/metrics` sample has the same value in the JSON.
    fn assert_same_as_prometheus(stats: &ClusterStats, v: &serde_json::Value) {
        let counters = &v["counters"];
        let mut text = String::new();
        stats.render_prometheus(&mut text);
        let mut compared = 0;
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.contains('{'))
        {
            let (name, value) = line.split_once(' ').unwrap_or_default();
            let json = counters[name].as_u64().or(v["gauges"][name].as_u64());
            if name.ends_with("_sum") || name.ends_with("_count") {
                continue;
            }
            assert_eq!(
                json.map(|n| n.to_string()).as_deref(),
                Some(value),
                "{name}"
            );
            compared += 1;
        }
        assert_eq!(compared, COUNTERS.len() + 7);
    }
}
