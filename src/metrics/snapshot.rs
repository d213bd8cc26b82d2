//! Per-event-loop recording ([`LoopMetrics`]) and the value it ships to the exporter
//! ([`LoopSnapshot`]).
//!
//! Owns: the hot-path counters, histograms and gauges of one loop.
//! May not touch: anything shared between threads. `LoopMetrics` is owned by exactly one event
//! loop; it uses plain integers, no atomics, no locks.
//!
//! Invariants:
//! - Counters in a snapshot are cumulative since the loop started (a lost snapshot loses no
//!   counts: the next one carries them).
//! - Histograms in a snapshot cover only the interval since the previous snapshot (the exporter
//!   accumulates them); a snapshot that could not be sent must be handed back with
//!   [`LoopMetrics::reclaim_unsent`] so its samples are not lost.

use super::channels::TopChannels;
use super::counters::{CloseCodeCounts, Counter, Family, LabeledCounts, MetricKind};
use super::latency::{Latency, LatencySet};

/// One gauge, set by the loop at snapshot time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gauge {
    /// Open client connections (any state).
    ConnectionsOpen,
    /// Channels with at least one local subscriber.
    Channels,
    /// (connection, channel) subscriptions.
    Subscriptions,
    /// Bytes queued in outboxes, not yet written.
    OutboxBytes,
    /// Messages waiting in the loop's cross-loop mesh inbox.
    MeshInboxDepth,
}

const fn gauge(name: &'static str, help: &'static str, key: Option<&'static str>) -> Family {
    Family {
        name,
        help,
        kind: MetricKind::Gauge,
        label_key: key,
    }
}

/// Families of the summed gauges, index-aligned with [`Gauge::ALL`].
const TOTAL_FAMILIES: [Family; Gauge::COUNT] = [
    gauge("wsrelay_connections_open", "Open client connections.", None),
    gauge(
        "wsrelay_channels",
        "Channels with local subscribers, summed over loops.",
        None,
    ),
    gauge("wsrelay_subscriptions", "Channel subscriptions.", None),
    gauge(
        "wsrelay_outbox_bytes",
        "Bytes queued for clients, not yet written.",
        None,
    ),
    gauge(
        "wsrelay_mesh_inbox_depth",
        "Messages waiting in cross-loop inboxes.",
        None,
    ),
];

/// Families of the per-loop gauges (label `loop`), index-aligned with [`Gauge::ALL`]. Kept
/// separate from the totals so that `sum()` over either family is meaningful.
const PER_LOOP_FAMILIES: [Family; Gauge::COUNT] = [
    gauge(
        "wsrelay_loop_connections_open",
        "Open client connections, per event loop.",
        LOOP,
    ),
    gauge(
        "wsrelay_loop_channels",
        "Channels with local subscribers, per event loop.",
        LOOP,
    ),
    gauge(
        "wsrelay_loop_subscriptions",
        "Channel subscriptions, per event loop.",
        LOOP,
    ),
    gauge(
        "wsrelay_loop_outbox_bytes",
        "Bytes queued for clients, per event loop.",
        LOOP,
    ),
    gauge(
        "wsrelay_loop_mesh_inbox_depth",
        "Messages waiting in the loop's inbox.",
        LOOP,
    ),
];

const LOOP: Option<&str> = Some("loop");

impl Gauge {
    /// Every gauge, in export order.
    pub const ALL: [Gauge; 5] = [
        Gauge::ConnectionsOpen,
        Gauge::Channels,
        Gauge::Subscriptions,
        Gauge::OutboxBytes,
        Gauge::MeshInboxDepth,
    ];
    /// Number of gauges.
    pub const COUNT: usize = Self::ALL.len();

    /// Family of the value summed over loops (no label).
    pub fn total_family(self) -> &'static Family {
        &TOTAL_FAMILIES[self as usize]
    }

    /// Family of the per-loop values (label `loop`).
    pub fn per_loop_family(self) -> &'static Family {
        &PER_LOOP_FAMILIES[self as usize]
    }
}

/// Gauge values of one loop (or their sum over loops).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Gauges {
    /// See [`Gauge::ConnectionsOpen`].
    pub connections_open: u64,
    /// See [`Gauge::Channels`].
    pub channels: u64,
    /// See [`Gauge::Subscriptions`].
    pub subscriptions: u64,
    /// See [`Gauge::OutboxBytes`].
    pub outbox_bytes: u64,
    /// See [`Gauge::MeshInboxDepth`].
    pub mesh_inbox_depth: u64,
}

impl Gauges {
    /// The value of `gauge`.
    pub fn get(&self, gauge: Gauge) -> u64 {
        match gauge {
            Gauge::ConnectionsOpen => self.connections_open,
            Gauge::Channels => self.channels,
            Gauge::Subscriptions => self.subscriptions,
            Gauge::OutboxBytes => self.outbox_bytes,
            Gauge::MeshInboxDepth => self.mesh_inbox_depth,
        }
    }

    /// Field-wise saturating sum (aggregation over loops).
    pub fn saturating_add(self, other: Gauges) -> Gauges {
        Gauges {
            connections_open: self.connections_open.saturating_add(other.connections_open),
            channels: self.channels.saturating_add(other.channels),
            subscriptions: self.subscriptions.saturating_add(other.subscriptions),
            outbox_bytes: self.outbox_bytes.saturating_add(other.outbox_bytes),
            mesh_inbox_depth: self.mesh_inbox_depth.saturating_add(other.mesh_inbox_depth),
        }
    }
}

/// Cumulative counters of one loop: the part of a snapshot that is copied, not swapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopCounters {
    /// Indexed by [`Counter::index`].
    pub counters: [u64; Counter::COUNT],
    /// Close codes sent by this loop.
    pub close_sent: CloseCodeCounts,
    /// Close codes received by this loop.
    pub close_received: CloseCodeCounts,
    /// Codec protocol errors by kind.
    pub protocol_errors: LabeledCounts,
    /// Command errors by kind.
    pub command_errors: LabeledCounts,
}

impl Default for LoopCounters {
    fn default() -> Self {
        LoopCounters {
            counters: [0; Counter::COUNT],
            close_sent: CloseCodeCounts::default(),
            close_received: CloseCodeCounts::default(),
            protocol_errors: LabeledCounts::default(),
            command_errors: LabeledCounts::default(),
        }
    }
}

impl LoopCounters {
    /// Value of one counter series.
    pub fn get(&self, c: Counter) -> u64 {
        self.counters[c.index()]
    }
}

/// What a loop sends to the exporter at each interval.
#[derive(Debug, Clone)]
pub struct LoopSnapshot {
    /// The loop that took it (`0..loops`).
    pub loop_id: usize,
    /// Snapshots taken by this loop before this one (lets the exporter ignore stale ones).
    pub seq: u64,
    /// Cumulative counters since the loop started.
    pub counters: LoopCounters,
    /// Gauges as last set by the loop.
    pub gauges: Gauges,
    /// Latency samples recorded since the previous snapshot only.
    pub interval_latency: LatencySet,
    /// The loop's busiest channels over the interval before this snapshot.
    pub top_channels: TopChannels,
}

/// Metrics recorded by one event loop. Not `Sync`-shared: one owner, plain integers.
#[derive(Debug, Clone)]
pub struct LoopMetrics {
    loop_id: usize,
    seq: u64,
    counters: LoopCounters,
    gauges: Gauges,
    latency: LatencySet,
    /// At most one emptied set handed back by the exporter, installed by the next snapshot.
    spare_latency: Option<LatencySet>,
    /// Busiest channels of the current interval, moved into the next snapshot.
    top_channels: TopChannels,
    /// Sets the exporter emptied and sent back (`exporter::spawn_exporter_recycling`), taken
    /// by the next snapshot when there is no spare.
    recycled: Option<crossbeam_channel::Receiver<LatencySet>>,
}

impl LoopMetrics {
    /// Empty metrics for loop `loop_id`.
    pub fn new(loop_id: usize) -> Self {
        LoopMetrics {
            loop_id,
            seq: 0,
            counters: LoopCounters::default(),
            gauges: Gauges::default(),
            latency: LatencySet::new(),
            spare_latency: None,
            top_channels: TopChannels::default(),
            recycled: None,
        }
    }

    /// Takes the exporter's emptied sets from `recycled` (the other end of one of the senders
    /// given to `spawn_exporter_recycling`), so that snapshots swap the same few sets
    /// forever. Why it matters beyond the copy: each set is about 650 KiB, allocated with
    /// `mmap`; freeing one on the exporter thread every interval made glibc raise its mmap
    /// and trim thresholds, after which freed heap memory stayed resident (about 45 bytes
    /// per idle connection at 15,000; docs/BENCHMARKS.md "Idle memory").
    pub fn with_recycling(mut self, recycled: crossbeam_channel::Receiver<LatencySet>) -> Self {
        self.recycled = Some(recycled);
        self
    }

    /// Increments `c` if there is one (for the `Counter::frame_sent`-style lookups).
    #[inline]
    pub fn inc_opt(&mut self, c: Option<Counter>) {
        if let Some(c) = c {
            self.inc(c);
        }
    }

    /// Adds one to `c`.
    #[inline]
    pub fn inc(&mut self, c: Counter) {
        self.add(c, 1);
    }

    /// Adds `n` to `c`.
    #[inline]
    pub fn add(&mut self, c: Counter, n: u64) {
        let slot = &mut self.counters.counters[c.index()];
        // Plain add on the hot path: 2^64 events or bytes cannot accrue within a process
        // lifetime, and were it to wrap, Prometheus `rate()` reads it as a counter reset.
        *slot = slot.wrapping_add(n);
    }

    /// Cumulative value of `c` on this loop.
    pub fn get(&self, c: Counter) -> u64 {
        self.counters.get(c)
    }

    /// Counts a Close frame sent with `code` (unknown codes count as "other").
    pub fn close_sent(&mut self, code: u16) {
        self.counters.close_sent.record(code);
    }

    /// Counts a Close frame received with `code` (unknown codes count as "other").
    pub fn close_received(&mut self, code: u16) {
        self.counters.close_received.record(code);
    }

    /// Counts a codec protocol violation of `kind` (open, bounded label set).
    pub fn protocol_error(&mut self, kind: &'static str) {
        self.counters.protocol_errors.add(kind, 1);
    }

    /// Counts a rejected client command of `kind` (open, bounded label set).
    pub fn command_error(&mut self, kind: &'static str) {
        self.counters.command_errors.add(kind, 1);
    }

    /// Records one relay latency sample; clamped to 60 s, never panics.
    #[inline]
    pub fn record_relay_latency_ns(&mut self, ns: u64) {
        self.latency.get_mut(Latency::Relay).record(ns);
    }

    /// Records `count` relay-latency samples of one value (deliveries written as one batch).
    #[inline]
    pub fn record_relay_latency_ns_n(&mut self, ns: u64, count: u64) {
        self.latency.get_mut(Latency::Relay).record_n(ns, count);
    }

    /// Records one cross-loop latency sample; clamped to 60 s, never panics.
    #[inline]
    pub fn record_cross_loop_latency_ns(&mut self, ns: u64) {
        self.latency.get_mut(Latency::CrossLoop).record(ns);
    }

    /// Records one heartbeat round-trip sample; clamped to 60 s, never panics.
    pub fn record_heartbeat_rtt_ns(&mut self, ns: u64) {
        self.latency.get_mut(Latency::HeartbeatRtt).record(ns);
    }

    /// Replaces the gauges reported by the next snapshot.
    pub fn set_gauges(&mut self, g: Gauges) {
        self.gauges = g;
    }

    /// Takes a snapshot for export: copies the counters (cumulative) and swaps the interval
    /// histograms out for empty ones: the spare from [`LoopMetrics::recycle`] when there is
    /// one, else a fresh allocation (~650 KiB zeroed for the three histograms).
    pub fn snapshot(&mut self) -> LoopSnapshot {
        let seq = self.seq;
        self.seq += 1;
        let empty = self.take_spare().unwrap_or_default();
        LoopSnapshot {
            loop_id: self.loop_id,
            seq,
            counters: self.counters.clone(),
            gauges: self.gauges,
            interval_latency: std::mem::replace(&mut self.latency, empty),
            top_channels: std::mem::take(&mut self.top_channels),
        }
    }

    /// The spare set, else one the exporter sent back (emptied there; reset here if not).
    fn take_spare(&mut self) -> Option<LatencySet> {
        if let Some(spare) = self.spare_latency.take() {
            return Some(spare);
        }
        let mut set = self.recycled.as_ref()?.try_recv().ok()?;
        if !set.is_empty() {
            set.reset();
        }
        Some(set)
    }

    /// Sets the busiest channels of the interval ending with the next snapshot.
    pub fn set_top_channels(&mut self, top: TopChannels) {
        self.top_channels = top;
    }

    /// Offers an interval set emptied by the exporter thread (see
    /// `exporter::spawn_exporter_recycling`) for the next snapshot, so the loop thread neither
    /// allocates nor zeroes histograms. Keeps at most one spare; a set that still holds samples
    /// is reset here first so a misuse cannot leak samples into the next interval.
    pub fn recycle(&mut self, mut emptied: LatencySet) {
        if self.spare_latency.is_some() {
            return;
        }
        if !emptied.is_empty() {
            emptied.reset();
        }
        self.spare_latency = Some(emptied);
    }

    /// Takes back a snapshot that could not be sent (e.g. `try_send` found the channel full):
    /// its interval samples are merged into the current interval so the next snapshot carries
    /// them. Its counters are dropped: the live ones are newer and cumulative.
    pub fn reclaim_unsent(&mut self, unsent: LoopSnapshot) {
        self.latency.merge(&unsent.interval_latency);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inc_and_add_accumulate_per_series() {
        let mut m = LoopMetrics::new(0);
        m.inc(Counter::ConnectionsAccepted);
        m.inc(Counter::ConnectionsAccepted);
        m.add(Counter::SentBytes, 1500);
        m.add(Counter::SentBytes, 20);
        assert_eq!(m.get(Counter::ConnectionsAccepted), 2);
        assert_eq!(m.get(Counter::SentBytes), 1520);
        assert_eq!(m.get(Counter::ReceivedBytes), 0);
    }

    #[test]
    fn labeled_rare_paths_are_recorded() {
        let mut m = LoopMetrics::new(0);
        m.close_sent(1000);
        m.close_received(4999);
        m.protocol_error("unmasked_client_frame");
        m.command_error("invalid_json");
        m.command_error("invalid_json");
        let snap = m.snapshot();
        assert_eq!(snap.counters.close_sent.get("1000"), 1);
        assert_eq!(snap.counters.close_received.get("other"), 1);
        assert_eq!(
            snap.counters.protocol_errors.get("unmasked_client_frame"),
            1
        );
        assert_eq!(snap.counters.command_errors.get("invalid_json"), 2);
    }

    #[test]
    fn snapshot_keeps_counters_cumulative_and_resets_histograms() {
        let mut m = LoopMetrics::new(3);
        m.inc(Counter::MessagesDelivered);
        m.record_relay_latency_ns(100);
        m.record_heartbeat_rtt_ns(5);
        let first = m.snapshot();
        m.inc(Counter::MessagesDelivered);
        m.record_relay_latency_ns(200);
        let second = m.snapshot();

        assert_eq!((first.loop_id, first.seq, second.seq), (3, 0, 1));
        assert_eq!(first.counters.get(Counter::MessagesDelivered), 1);
        assert_eq!(second.counters.get(Counter::MessagesDelivered), 2);
        let relay = second.interval_latency.get(Latency::Relay);
        assert_eq!((relay.count(), relay.sum_ns()), (1, 200));
        assert_eq!(
            second.interval_latency.get(Latency::HeartbeatRtt).count(),
            0
        );
        assert_eq!(first.interval_latency.get(Latency::Relay).sum_ns(), 100);
    }

    #[test]
    fn gauges_are_carried_as_last_set() {
        let mut m = LoopMetrics::new(0);
        m.set_gauges(Gauges {
            connections_open: 9,
            ..Gauges::default()
        });
        m.set_gauges(Gauges {
            connections_open: 4,
            outbox_bytes: 77,
            ..Gauges::default()
        });
        let snap = m.snapshot();
        assert_eq!(snap.gauges.get(Gauge::ConnectionsOpen), 4);
        assert_eq!(snap.gauges.get(Gauge::OutboxBytes), 77);
    }

    #[test]
    fn reclaimed_snapshot_samples_reappear_in_next_snapshot() {
        let mut m = LoopMetrics::new(0);
        m.record_cross_loop_latency_ns(40);
        let unsent = m.snapshot();
        m.record_cross_loop_latency_ns(60);
        m.reclaim_unsent(unsent);
        let next = m.snapshot();
        let cross = next.interval_latency.get(Latency::CrossLoop);
        assert_eq!((cross.count(), cross.sum_ns()), (2, 100));
    }

    #[test]
    fn recycled_set_is_reused_and_never_leaks_samples() {
        let mut m = LoopMetrics::new(0);
        m.record_relay_latency_ns(10);
        let mut dirty = m.snapshot().interval_latency;
        dirty.get_mut(Latency::CrossLoop).record(99);
        m.recycle(dirty);
        m.record_relay_latency_ns(20);
        // This snapshot installs the recycled set as the live one...
        let next = m.snapshot().interval_latency;
        let relay = next.get(Latency::Relay);
        assert_eq!((relay.count(), relay.sum_ns()), (1, 20));
        // ...which, having recorded nothing since, must come back without the old samples.
        assert!(m.snapshot().interval_latency.is_empty());
    }

    #[test]
    fn sets_sent_back_through_the_channel_are_taken_and_emptied() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let mut m = LoopMetrics::new(0).with_recycling(rx);
        m.record_relay_latency_ns(10);
        let mut returned = m.snapshot().interval_latency;
        // A set the exporter failed to reset still comes back empty.
        returned.get_mut(Latency::CrossLoop).record(99);
        tx.try_send(returned).expect("room for one");
        m.record_relay_latency_ns(20);
        let next = m.snapshot().interval_latency;
        assert_eq!(next.get(Latency::Relay).sum_ns(), 20);
        // The snapshot took the returned set: the channel has room again.
        tx.try_send(next).expect("the loop took the first set");
        assert!(m.snapshot().interval_latency.is_empty());
        assert!(m.snapshot().interval_latency.is_empty());
    }

    #[test]
    fn gauge_families_are_distinct_and_aligned() {
        for gauge in Gauge::ALL {
            let total = gauge.total_family();
            let per_loop = gauge.per_loop_family();
            assert_eq!(
                per_loop.name,
                total.name.replacen("wsrelay_", "wsrelay_loop_", 1)
            );
            assert_eq!((total.label_key, per_loop.label_key), (None, Some("loop")));
        }
    }
}
