//! The exporter: merges [`LoopSnapshot`]s from every loop and serves the merged view to the
//! `/metrics` and `/stats` handlers.
//!
//! Owns: the latest cumulative counters and gauges of each loop, the cumulative latency
//! histograms of all loops, the windowed relay latency (the last minutes, [`LatencyWindow`]),
//! the exporter thread.
//! May not touch: the loops' [`LoopMetrics`](super::LoopMetrics); it only receives snapshots.
//!
//! Invariants:
//! - Per-loop counters are replaced, never added (snapshots are cumulative); totals are summed
//!   at read time, so a dropped snapshot delays counts but never loses or double-counts them.
//! - Interval histograms are added exactly once into the cumulative ones (and the relay
//!   latency's once into the window's slot of the moment they are absorbed).
//! - Bounded: at most [`LOOPS_MAX`] loops are tracked; snapshots from other ids are counted as
//!   rejected and discarded.
//! - Locking happens only here and in HTTP handlers (cold paths), never on a loop's hot path.

use super::channels::TopChannels;
use super::counters::{CloseCodeCounts, Counter, LabeledCounts};
use super::latency::{Latency, LatencySet, LatencySummary};
use super::snapshot::{Gauges, LoopCounters, LoopSnapshot};
use super::window::LatencyWindow;
use crossbeam_channel::{Receiver, Sender};
use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::Instant;

/// Upper bound on loop ids the exporter tracks (policy: reject, count in `snapshots_rejected`).
pub const LOOPS_MAX: usize = 1024;

/// Snapshots absorbed under one write lock before releasing it so readers are not starved.
pub const DRAIN_BATCH_MAX: usize = 64;

/// Latest figures received from one loop.
#[derive(Debug, Clone)]
struct LoopState {
    seq: u64,
    snapshots_absorbed: u64,
    counters: LoopCounters,
    gauges: Gauges,
    top_channels: TopChannels,
}

impl LoopState {
    /// Counts the snapshot; keeps its figures unless they are older than those held.
    fn update(&mut self, snap: LoopSnapshot) -> LatencySet {
        self.snapshots_absorbed += 1;
        if snap.seq >= self.seq {
            self.seq = snap.seq;
            self.counters = snap.counters;
            self.gauges = snap.gauges;
            self.top_channels = snap.top_channels;
        }
        snap.interval_latency
    }
}

/// Merges loop snapshots; renders Prometheus text and stats JSON from the merged view.
#[derive(Debug, Clone)]
pub struct Exporter {
    loops: Vec<Option<LoopState>>,
    latency: LatencySet,
    /// Relay latency of the last minutes, by time of absorption.
    relay_window: LatencyWindow,
    /// The window's clock: when the exporter was made.
    started: Instant,
    snapshots_absorbed: u64,
    snapshots_rejected: u64,
    config_reloads: ConfigReloads,
}

/// Configuration reloads of the process (counted here, not per loop: a reload is one event).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConfigReloads {
    /// Reloads applied.
    pub ok: u64,
    /// Reloads refused (the previous configuration stayed).
    pub error: u64,
}

/// The merged figures both renderers print (computed once per render).
#[derive(Debug, Clone, PartialEq)]
pub struct ExportView {
    /// Counters summed over loops, indexed by [`Counter::index`].
    pub counters: [u64; Counter::COUNT],
    /// Close codes sent, summed over loops.
    pub close_sent: CloseCodeCounts,
    /// Close codes received, summed over loops.
    pub close_received: CloseCodeCounts,
    /// Protocol errors summed over loops, sorted by label.
    pub protocol_errors: Vec<(&'static str, u64)>,
    /// Command errors summed over loops, sorted by label.
    pub command_errors: Vec<(&'static str, u64)>,
    /// Gauges summed over loops.
    pub gauges_total: Gauges,
    /// Loops that reported at least once, by ascending id.
    pub loops: Vec<LoopView>,
    /// Cumulative latency summaries, indexed by [`Latency::index`].
    pub latency: [LatencySummary; Latency::COUNT],
    /// Relay latency over the last `window_s` seconds (the ring's slots still inside).
    pub relay_window: LatencySummary,
    /// Length of the relay latency window, seconds.
    pub window_s: u64,
    /// Snapshots merged since start.
    pub snapshots_absorbed: u64,
    /// Snapshots discarded (loop id out of range).
    pub snapshots_rejected: u64,
    /// The busiest channels of the latest interval of every loop, merged.
    pub top_channels: TopChannels,
    /// Configuration reloads by result.
    pub config_reloads: ConfigReloads,
}

/// Per-loop part of an [`ExportView`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopView {
    /// Loop id.
    pub loop_id: usize,
    /// Snapshots merged from this loop.
    pub snapshots_absorbed: u64,
    /// The loop's latest gauges.
    pub gauges: Gauges,
}

impl Exporter {
    /// An exporter expecting loop ids `0..loops` (capped at [`LOOPS_MAX`]).
    pub fn new(loops: usize) -> Self {
        Exporter {
            loops: vec![None; loops.min(LOOPS_MAX)],
            latency: LatencySet::new(),
            relay_window: LatencyWindow::default(),
            started: Instant::now(),
            snapshots_absorbed: 0,
            snapshots_rejected: 0,
            config_reloads: ConfigReloads::default(),
        }
    }

    /// Counts one configuration reload, applied (`ok`) or refused.
    pub fn record_config_reload(&mut self, ok: bool) {
        match ok {
            true => self.config_reloads.ok += 1,
            false => self.config_reloads.error += 1,
        }
    }

    /// Merges one snapshot: replaces the loop's cumulative figures (unless older than what is
    /// held) and adds its interval histograms into the cumulative ones.
    pub fn absorb(&mut self, snap: LoopSnapshot) {
        drop(self.absorb_returning(snap));
    }

    /// [`Exporter::absorb`], handing back the snapshot's interval histograms (merged, not yet
    /// reset) so the caller can reset them off-lock and return them to their loop.
    pub fn absorb_returning(&mut self, snap: LoopSnapshot) -> LatencySet {
        let Some(slot) = self.loop_slot(snap.loop_id) else {
            self.snapshots_rejected += 1;
            return snap.interval_latency;
        };
        let interval_latency = match slot {
            Some(state) => state.update(snap),
            None => {
                let state = slot.insert(LoopState {
                    seq: snap.seq,
                    snapshots_absorbed: 0,
                    counters: LoopCounters::default(),
                    gauges: snap.gauges,
                    top_channels: TopChannels::default(),
                });
                state.update(snap)
            }
        };
        self.latency.merge(&interval_latency);
        let now_ns = self.clock_ns();
        self.relay_window
            .record(now_ns, interval_latency.get(Latency::Relay));
        self.snapshots_absorbed += 1;
        interval_latency
    }

    /// Nanoseconds since the exporter was made (the window's clock).
    fn clock_ns(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Relay latency over the window ending now.
    pub fn relay_window_summary(&self) -> LatencySummary {
        self.relay_window.summary(self.clock_ns())
    }

    /// The slot of `loop_id`, growing the table up to [`LOOPS_MAX`].
    fn loop_slot(&mut self, loop_id: usize) -> Option<&mut Option<LoopState>> {
        if loop_id >= LOOPS_MAX {
            return None;
        }
        if loop_id >= self.loops.len() {
            self.loops.resize(loop_id + 1, None);
        }
        self.loops.get_mut(loop_id)
    }

    fn reported(&self) -> impl Iterator<Item = &LoopState> {
        self.loops.iter().flatten()
    }

    /// Sum of `c` over all loops' latest snapshots.
    pub fn counter_total(&self, c: Counter) -> u64 {
        self.reported()
            .fold(0u64, |sum, s| sum.saturating_add(s.counters.get(c)))
    }

    /// Cumulative latency figures of `kind` over all loops.
    pub fn latency_summary(&self, kind: Latency) -> LatencySummary {
        self.latency.get(kind).summary()
    }

    /// Snapshots discarded because their loop id was out of range.
    pub fn snapshots_rejected(&self) -> u64 {
        self.snapshots_rejected
    }

    /// The merged figures, as both renderers print them.
    pub fn view(&self) -> ExportView {
        let mut counters = [0u64; Counter::COUNT];
        let mut close_sent = CloseCodeCounts::default();
        let mut close_received = CloseCodeCounts::default();
        let mut gauges_total = Gauges::default();
        for state in self.reported() {
            for (sum, value) in counters.iter_mut().zip(state.counters.counters) {
                *sum = sum.saturating_add(value);
            }
            close_sent.merge(&state.counters.close_sent);
            close_received.merge(&state.counters.close_received);
            gauges_total = gauges_total.saturating_add(state.gauges);
        }
        ExportView {
            counters,
            close_sent,
            close_received,
            protocol_errors: self.merge_labeled(|c| &c.protocol_errors),
            command_errors: self.merge_labeled(|c| &c.command_errors),
            gauges_total,
            loops: self.loop_views(),
            latency: self.latency.summaries(),
            relay_window: self.relay_window_summary(),
            window_s: self.relay_window.window_s(),
            snapshots_absorbed: self.snapshots_absorbed,
            snapshots_rejected: self.snapshots_rejected,
            top_channels: TopChannels::merge(self.reported().map(|s| &s.top_channels)),
            config_reloads: self.config_reloads,
        }
    }

    fn merge_labeled(
        &self,
        pick: impl Fn(&LoopCounters) -> &LabeledCounts,
    ) -> Vec<(&'static str, u64)> {
        let mut merged: BTreeMap<&'static str, u64> = BTreeMap::new();
        for (label, count) in self.reported().flat_map(|s| pick(&s.counters).iter()) {
            let sum = merged.entry(label).or_insert(0);
            *sum = sum.saturating_add(count);
        }
        merged.into_iter().collect()
    }

    fn loop_views(&self) -> Vec<LoopView> {
        let with_ids = self.loops.iter().enumerate();
        with_ids
            .filter_map(|(loop_id, state)| {
                state.as_ref().map(|s| LoopView {
                    loop_id,
                    snapshots_absorbed: s.snapshots_absorbed,
                    gauges: s.gauges,
                })
            })
            .collect()
    }
}

impl ExportView {
    /// Summed value of counter `c`.
    pub fn counter(&self, c: Counter) -> u64 {
        self.counters[c.index()]
    }
}

/// Handle shared by the exporter thread (writer) and HTTP handlers on any loop (readers).
/// An `RwLock` lets concurrent scrapes render in parallel; writes are one merge per interval.
pub type SharedExport = Arc<RwLock<Exporter>>;

/// A new shared exporter for `loops` loops.
pub fn new_shared_export(loops: usize) -> SharedExport {
    Arc::new(RwLock::new(Exporter::new(loops)))
}

/// Read access for HTTP handlers. A poisoned lock (a panic during a merge) still yields the
/// data: counters are replaced wholesale, so at worst one interval's histogram is partial,
/// which beats failing every scrape afterwards.
pub fn read_export(shared: &SharedExport) -> RwLockReadGuard<'_, Exporter> {
    shared.read().unwrap_or_else(PoisonError::into_inner)
}

/// Write access: the exporter thread merging snapshots, and process-level events (reloads).
pub fn write_export(shared: &SharedExport) -> RwLockWriteGuard<'_, Exporter> {
    shared.write().unwrap_or_else(PoisonError::into_inner)
}

/// Spawns the `wsrelay-metrics` thread: absorbs snapshots from `rx` into `shared` until every
/// sender is dropped. Fails only if the OS cannot create the thread.
pub fn spawn_exporter(
    rx: Receiver<LoopSnapshot>,
    shared: SharedExport,
) -> std::io::Result<JoinHandle<()>> {
    spawn_exporter_recycling(rx, shared, Vec::new())
}

/// [`spawn_exporter`] that also resets each absorbed interval set (off-lock, on the exporter
/// thread) and `try_send`s it to `recycle[loop_id]`, for the loop to pass to
/// [`LoopMetrics::recycle`](super::LoopMetrics::recycle). Policy when that bounded channel is
/// full or closed, or the loop has no entry: the set is freed here.
pub fn spawn_exporter_recycling(
    rx: Receiver<LoopSnapshot>,
    shared: SharedExport,
    recycle: Vec<Sender<LatencySet>>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("wsrelay-metrics".to_owned())
        .spawn(move || run_exporter(&rx, &shared, &recycle))
}

fn run_exporter(
    rx: &Receiver<LoopSnapshot>,
    shared: &SharedExport,
    recycle: &[Sender<LatencySet>],
) {
    let mut absorbed: Vec<(usize, LatencySet)> = Vec::with_capacity(DRAIN_BATCH_MAX);
    while let Ok(first) = rx.recv() {
        absorb_batch(first, rx, shared, &mut absorbed);
        for (loop_id, set) in absorbed.drain(..) {
            return_to_loop(recycle, loop_id, set);
        }
    }
}

/// Absorbs `first` and up to `DRAIN_BATCH_MAX - 1` queued snapshots under one write lock.
fn absorb_batch(
    first: LoopSnapshot,
    rx: &Receiver<LoopSnapshot>,
    shared: &SharedExport,
    absorbed: &mut Vec<(usize, LatencySet)>,
) {
    let mut exporter = write_export(shared);
    let queued = rx.try_iter().take(DRAIN_BATCH_MAX - 1);
    for snap in std::iter::once(first).chain(queued) {
        let loop_id = snap.loop_id;
        absorbed.push((loop_id, exporter.absorb_returning(snap)));
    }
}

fn return_to_loop(recycle: &[Sender<LatencySet>], loop_id: usize, mut set: LatencySet) {
    let Some(tx) = recycle.get(loop_id) else {
        return;
    };
    set.reset();
    // Full: the loop already has spares queued; Disconnected: the loop is gone. Either way
    // dropping the set here is the policy.
    drop(tx.try_send(set));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::LoopMetrics;

    fn two_loops() -> (LoopMetrics, LoopMetrics) {
        let mut a = LoopMetrics::new(0);
        let mut b = LoopMetrics::new(1);
        a.add(Counter::MessagesDelivered, 3);
        b.add(Counter::MessagesDelivered, 4);
        a.close_sent(1000);
        b.close_sent(1000);
        b.close_sent(3999);
        a.protocol_error("reserved_bits_set");
        b.protocol_error("reserved_bits_set");
        b.protocol_error("invalid_utf8");
        for ns in 1..=100 {
            a.record_relay_latency_ns(ns);
        }
        for ns in 101..=200 {
            b.record_relay_latency_ns(ns);
        }
        (a, b)
    }

    #[test]
    fn merges_two_loops() {
        let (mut a, mut b) = two_loops();
        let mut exporter = Exporter::new(2);
        exporter.absorb(a.snapshot());
        exporter.absorb(b.snapshot());
        let view = exporter.view();
        assert_eq!(exporter.counter_total(Counter::MessagesDelivered), 7);
        assert_eq!(view.counter(Counter::MessagesDelivered), 7);
        assert_eq!(view.close_sent.get("1000"), 2);
        assert_eq!(view.close_sent.get("other"), 1);
        let expected = vec![("invalid_utf8", 1), ("reserved_bits_set", 2)];
        assert_eq!(view.protocol_errors, expected);
        let relay = view.latency[Latency::Relay.index()];
        assert_eq!((relay.count, relay.sum_ns), (200, 20_100));
        // Quantiles come from the merged data, not from either loop alone.
        assert_eq!(relay.quantiles_ns, Some([100, 180, 198, 200, 200]));
    }

    #[test]
    fn the_relay_window_holds_the_absorbed_relay_samples_only() {
        let (mut a, mut b) = two_loops();
        a.record_heartbeat_rtt_ns(9);
        let mut exporter = Exporter::new(2);
        exporter.absorb(a.snapshot());
        exporter.absorb(b.snapshot());
        let view = exporter.view();
        // Both intervals were absorbed within the window: all 200 relay samples.
        assert_eq!(
            (view.relay_window.count, view.relay_window.sum_ns),
            (200, 20_100)
        );
        assert_eq!(view.window_s, 300);
        let q = view.relay_window.quantiles_ns.unwrap_or_default();
        assert_eq!((q[0], q[4]), (100, 200));
        // An empty interval adds nothing; the window is not the cumulative set.
        exporter.absorb(a.snapshot());
        assert_eq!(exporter.relay_window_summary().count, 200);
    }

    #[test]
    fn counters_are_replaced_and_histograms_accumulated() {
        let (mut a, _) = two_loops();
        let mut exporter = Exporter::new(1);
        exporter.absorb(a.snapshot());
        a.inc(Counter::MessagesDelivered);
        a.record_relay_latency_ns(5);
        exporter.absorb(a.snapshot());
        assert_eq!(exporter.counter_total(Counter::MessagesDelivered), 4);
        let relay = exporter.latency_summary(Latency::Relay);
        assert_eq!((relay.count, relay.sum_ns), (101, 5_055));
        assert_eq!(exporter.view().loops[0].snapshots_absorbed, 2);
    }

    #[test]
    fn stale_snapshot_adds_samples_but_not_older_counters() {
        let mut a = LoopMetrics::new(0);
        a.inc(Counter::LoopTurns);
        a.record_heartbeat_rtt_ns(9);
        let old = a.snapshot();
        a.inc(Counter::LoopTurns);
        let new = a.snapshot();
        let mut exporter = Exporter::new(1);
        exporter.absorb(new);
        exporter.absorb(old);
        assert_eq!(exporter.counter_total(Counter::LoopTurns), 2);
        assert_eq!(exporter.latency_summary(Latency::HeartbeatRtt).count, 1);
    }

    #[test]
    fn out_of_range_loop_ids_grow_then_reject() {
        let mut exporter = Exporter::new(1);
        let mut late = LoopMetrics::new(5);
        late.inc(Counter::LoopTurns);
        exporter.absorb(late.snapshot());
        exporter.absorb(LoopMetrics::new(LOOPS_MAX).snapshot());
        assert_eq!(exporter.counter_total(Counter::LoopTurns), 1);
        assert_eq!(exporter.snapshots_rejected(), 1);
        let ids: Vec<usize> = exporter.view().loops.iter().map(|l| l.loop_id).collect();
        assert_eq!(ids, vec![5]);
    }

    #[test]
    fn recycling_thread_returns_emptied_sets_to_their_loop() {
        let shared = new_shared_export(2);
        let (tx, rx) = crossbeam_channel::bounded(4);
        let (back0_tx, back0_rx) = crossbeam_channel::bounded(1);
        let (back1_tx, back1_rx) = crossbeam_channel::bounded(1);
        let recycle = vec![back0_tx, back1_tx];
        let handle = spawn_exporter_recycling(rx, Arc::clone(&shared), recycle);
        let (mut a, mut b) = two_loops();
        for snap in [a.snapshot(), b.snapshot(), b.snapshot()] {
            assert!(tx.send(snap).is_ok());
        }
        drop(tx);
        assert!(handle
            .map(JoinHandle::join)
            .is_ok_and(|joined| joined.is_ok()));
        let returned0: Vec<LatencySet> = back0_rx.try_iter().collect();
        let returned1: Vec<LatencySet> = back1_rx.try_iter().collect();
        // Loop 1's return channel holds one set: the second was freed per policy.
        assert_eq!((returned0.len(), returned1.len()), (1, 1));
        assert!(returned0.iter().chain(&returned1).all(LatencySet::is_empty));
        let relay = read_export(&shared).latency_summary(Latency::Relay);
        assert_eq!(relay.count, 200);
    }

    #[test]
    fn exporter_thread_absorbs_until_disconnect() {
        let shared = new_shared_export(2);
        let (tx, rx) = crossbeam_channel::bounded(4);
        let handle = spawn_exporter(rx, Arc::clone(&shared));
        let (mut a, mut b) = two_loops();
        for snap in [a.snapshot(), b.snapshot()] {
            assert!(tx.send(snap).is_ok());
        }
        drop(tx);
        assert!(handle
            .map(JoinHandle::join)
            .is_ok_and(|joined| joined.is_ok()));
        let exporter = read_export(&shared);
        assert_eq!(exporter.counter_total(Counter::MessagesDelivered), 7);
        assert_eq!(exporter.view().snapshots_absorbed, 2);
    }
}
