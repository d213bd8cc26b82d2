//! Windowed latency for `/stats` ("relay latency over the last minutes"): a bounded ring of
//! per-slot histograms that the exporter thread fills with the interval samples of every
//! snapshot it absorbs, merged at render time over the slots still inside the window.
//!
//! Owns: [`LatencyWindow`] (the ring) and its constants.
//! May not touch: the loops' histograms (it only reads the interval sets the exporter absorbs:
//! no lock and no work on a loop's hot path), export formats.
//!
//! Invariants:
//! - Bounded: at most `slots` histograms are held; a new slot first evicts the slots that left
//!   the window (their allocation is reused), so memory is `slots` coarse histograms at most
//!   ([`WINDOW_SLOTS`] × about 30 KiB with the defaults) and nothing while no sample arrives.
//! - A slot covers `[i·slot_ns, (i+1)·slot_ns)` of the exporter's clock; the window at `now` is
//!   the slots `i` with `i + slots > now / slot_ns`: between `(slots-1)·slot_ns` and
//!   `slots·slot_ns` of samples, or every sample when the process is younger.
//! - Samples are kept at [`WINDOW_SIGFIGS`] significant digits (quantiles within 1 %); the sum
//!   stays exact, so the mean is exact.

use super::latency::{LatencyHistogram, LatencySummary};
use std::collections::VecDeque;

/// Length of one slot: 5 s.
pub const WINDOW_SLOT_NS: u64 = 5_000_000_000;
/// Slots in the window: 60 × 5 s = the last 5 minutes.
pub const WINDOW_SLOTS: usize = 60;
/// Significant digits of the slots' histograms (2: ~30 KiB each instead of ~200 KiB).
pub const WINDOW_SIGFIGS: u8 = 2;

/// A ring of per-slot latency histograms over a sliding window.
#[derive(Debug, Clone)]
pub struct LatencyWindow {
    slot_ns: u64,
    slots_max: usize,
    /// (slot index, samples of that slot), oldest first; indices strictly increase.
    slots: VecDeque<(u64, LatencyHistogram)>,
}

impl Default for LatencyWindow {
    fn default() -> Self {
        Self::new(WINDOW_SLOT_NS, WINDOW_SLOTS)
    }
}

impl LatencyWindow {
    /// A window of `slots` slots of `slot_ns` each (both at least 1).
    pub fn new(slot_ns: u64, slots: usize) -> Self {
        LatencyWindow {
            slot_ns: slot_ns.max(1),
            slots_max: slots.max(1),
            slots: VecDeque::with_capacity(slots.max(1)),
        }
    }

    /// The window's length in seconds (what `/stats` reports as `window_s`).
    pub fn window_s(&self) -> u64 {
        self.slot_ns.saturating_mul(self.slots_max as u64) / 1_000_000_000
    }

    /// Slots currently held (at most `slots`).
    pub fn slots_held(&self) -> usize {
        self.slots.len()
    }

    /// Adds `samples` (one interval of one loop) to the slot of `now_ns`.
    pub fn record(&mut self, now_ns: u64, samples: &LatencyHistogram) {
        if samples.count() == 0 {
            return;
        }
        let slot = now_ns / self.slot_ns;
        match self.slots.back_mut() {
            // The exporter's clock is monotonic; a sample for an older slot (impossible with
            // one clock) joins the newest rather than breaking the order.
            Some((newest, h)) if *newest >= slot => h.merge(samples),
            _ => {
                let mut h = self.evict(slot).unwrap_or_else(LatencyHistogram::coarse);
                h.merge(samples);
                self.slots.push_back((slot, h));
            }
        }
    }

    /// Drops the slots outside the window ending at `slot` (and the oldest one if the ring
    /// is full); returns one emptied histogram to reuse.
    fn evict(&mut self, slot: u64) -> Option<LatencyHistogram> {
        let mut spare = None;
        while let Some((oldest, _)) = self.slots.front() {
            let expired = oldest.saturating_add(self.slots_max as u64) <= slot;
            if !expired && self.slots.len() < self.slots_max {
                break;
            }
            spare = self.slots.pop_front().map(|(_, h)| h);
        }
        spare.map(|mut h| {
            h.reset();
            h
        })
    }

    /// Count, sum and quantiles of the samples inside the window ending at `now_ns`.
    pub fn summary(&self, now_ns: u64) -> LatencySummary {
        let slot = now_ns / self.slot_ns;
        let mut total = LatencyHistogram::coarse();
        let inside = self
            .slots
            .iter()
            .filter(|(i, _)| i.saturating_add(self.slots_max as u64) > slot);
        for (_, h) in inside {
            total.merge(h);
        }
        total.summary()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn samples(values: &[u64]) -> LatencyHistogram {
        let mut h = LatencyHistogram::new();
        values.iter().for_each(|&v| h.record(v));
        h
    }

    #[test]
    fn samples_leave_the_window_slot_by_slot() {
        let mut w = LatencyWindow::new(S, 3);
        assert_eq!(w.window_s(), 3);
        // Values below 256 ns are exact at 2 significant digits.
        w.record(0, &samples(&[10]));
        w.record(S / 2, &samples(&[20]));
        w.record(S, &samples(&[30]));
        w.record(2 * S + 1, &samples(&[40, 40]));
        let s = w.summary(2 * S + 5);
        assert_eq!((s.count, s.sum_ns), (5, 140));
        assert_eq!(s.quantiles_ns.map(|q| q[0]), Some(30));
        assert_eq!(w.slots_held(), 3);
        // At 3 s the slot of [0 s, 1 s) has left: its two samples are gone.
        let s = w.summary(3 * S);
        assert_eq!((s.count, s.sum_ns), (3, 110));
        assert_eq!(s.quantiles_ns.map(|q| q[0]), Some(40));
        // Quiet for the whole window: nothing left to report, nothing recorded.
        assert_eq!(w.summary(5 * S).quantiles_ns, None);
        assert_eq!(w.summary(5 * S).count, 0);
    }

    #[test]
    fn the_ring_is_bounded_and_reuses_evicted_slots() {
        let mut w = LatencyWindow::new(S, 4);
        for second in 0..100 {
            w.record(second * S, &samples(&[second + 1]));
            assert!(w.slots_held() <= 4);
        }
        let s = w.summary(99 * S);
        // Seconds 96..=99 recorded 97..=100.
        assert_eq!((s.count, s.sum_ns), (4, 97 + 98 + 99 + 100));
        assert_eq!(s.quantiles_ns.map(|q| q[4]), Some(100));
        // A jump past the window evicts every slot.
        w.record(1_000 * S, &samples(&[7]));
        assert_eq!((w.slots_held(), w.summary(1_000 * S).count), (1, 1));
        // Empty intervals take no slot.
        w.record(2_000 * S, &LatencyHistogram::new());
        assert_eq!(w.slots_held(), 1);
    }

    #[test]
    fn windowed_quantiles_are_within_one_percent_and_the_sum_exact() {
        let mut w = LatencyWindow::default();
        assert_eq!(w.window_s(), 300);
        let values: Vec<u64> = (1..=10_000).map(|i| i * 1_000).collect();
        w.record(7 * S, &samples(&values));
        let s = w.summary(7 * S);
        assert_eq!(s.count, 10_000);
        assert_eq!(s.sum_ns, values.iter().sum::<u64>());
        let q = s.quantiles_ns.unwrap_or_default();
        for (got, want) in q
            .iter()
            .zip([5_000_000u64, 9_000_000, 9_900_000, 9_990_000])
        {
            let err = got.abs_diff(want) as f64 / want as f64;
            assert!(err <= 0.01, "{got} vs {want}");
        }
        // The memory bound the module header states.
        let counts = LatencyHistogram::coarse().histogram().distinct_values();
        assert!(counts * 8 <= 32 * 1024, "{counts} counts per slot");
    }
}
