//! Latency histograms: HdrHistogram (1 ns .. 60 s, 3 significant digits) plus an exact sum,
//! recorded in nanoseconds and summarized as quantiles for export.
//!
//! Owns: [`LatencyHistogram`], the set of the relay's latencies ([`Latency`], [`LatencySet`]) and
//! their summaries ([`LatencySummary`]).
//! May not touch: counters, gauges, export formats.
//!
//! Invariants:
//! - Recording never panics and never fails: values are clamped to [`LATENCY_HIGHEST_NS`]
//!   (so a clock jump cannot poison a histogram), and the exact sum uses the clamped value so
//!   `_sum` and the quantiles describe the same samples.
//! - All histograms share one range (the windowed ring's are coarser: fewer significant
//!   digits), so merging (`Histogram::add`) cannot fail in practice; a fallback path still
//!   handles it without panicking.

use super::counters::{Family, MetricKind};
use hdrhistogram::Histogram;

/// Lowest discernible value (values below it still count, in the first bucket).
pub const LATENCY_LOWEST_NS: u64 = 1;
/// Highest trackable value: 60 s. Larger samples are clamped to it.
pub const LATENCY_HIGHEST_NS: u64 = 60_000_000_000;
/// Significant decimal digits kept per value (relative error <= 0.1%).
pub const LATENCY_SIGFIGS: u8 = 3;

/// Exported quantiles, ascending; the last one (1.0) is the maximum.
pub const QUANTILES: [f64; 5] = [0.5, 0.9, 0.99, 0.999, 1.0];
/// Prometheus `quantile` label values, index-aligned with [`QUANTILES`].
pub const QUANTILE_LABELS: [&str; 5] = ["0.5", "0.9", "0.99", "0.999", "1"];

/// One latency measured by the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Latency {
    /// Publish frame read off the socket -> its bytes handed to a subscriber's socket
    /// (one sample per delivery).
    Relay,
    /// Publish read on loop A -> handled on loop B.
    CrossLoop,
    /// Heartbeat Ping sent -> Pong received.
    HeartbeatRtt,
}

impl Latency {
    /// Every latency, in export order.
    pub const ALL: [Latency; 3] = [Latency::Relay, Latency::CrossLoop, Latency::HeartbeatRtt];
    /// Number of latencies.
    pub const COUNT: usize = Self::ALL.len();

    /// Position in a `[_; Latency::COUNT]` array.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Exported summary family (seconds, Prometheus base unit).
    pub fn family(self) -> &'static Family {
        match self {
            Latency::Relay => &RELAY_LATENCY,
            Latency::CrossLoop => &CROSS_LOOP_LATENCY,
            Latency::HeartbeatRtt => &HEARTBEAT_RTT,
        }
    }

    /// Key under `"latency"` in the stats JSON.
    pub fn json_key(self) -> &'static str {
        match self {
            Latency::Relay => "relay",
            Latency::CrossLoop => "cross_loop",
            Latency::HeartbeatRtt => "heartbeat_rtt",
        }
    }
}

const fn summary(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        help,
        kind: MetricKind::Summary,
        label_key: Some("quantile"),
    }
}

const RELAY_LATENCY: Family = summary(
    "wsrelay_relay_latency_seconds",
    "Publish frame read to bytes handed to a subscriber socket, per delivery, since start.",
);
const CROSS_LOOP_LATENCY: Family = summary(
    "wsrelay_cross_loop_latency_seconds",
    "Publish read on one event loop to handled on another, since start.",
);
const HEARTBEAT_RTT: Family = summary(
    "wsrelay_heartbeat_rtt_seconds",
    "Heartbeat Ping sent to Pong received, since start.",
);

/// An HdrHistogram of nanosecond samples plus their exact (clamped) sum.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    histogram: Histogram<u64>,
    sum_ns: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram covering 1 ns .. 60 s at 3 significant digits (~200 KiB of counts).
    pub fn new() -> Self {
        let histogram =
            Histogram::new_with_bounds(LATENCY_LOWEST_NS, LATENCY_HIGHEST_NS, LATENCY_SIGFIGS)
                // Constant, valid bounds (high >= 2 * low, sigfig <= 5); a unit test builds it.
                .expect("constant histogram bounds are valid");
        LatencyHistogram {
            histogram,
            sum_ns: 0,
        }
    }

    /// An empty histogram of the same range at
    /// [`WINDOW_SIGFIGS`](super::window::WINDOW_SIGFIGS) significant digits (~30 KiB), for
    /// the windowed ring; merging a full-precision one into it re-records each bucket.
    pub fn coarse() -> Self {
        let sigfigs = super::window::WINDOW_SIGFIGS;
        let histogram = Histogram::new_with_bounds(LATENCY_LOWEST_NS, LATENCY_HIGHEST_NS, sigfigs)
            // Constant, valid bounds; a unit test of the window builds it.
            .expect("constant histogram bounds are valid");
        LatencyHistogram {
            histogram,
            sum_ns: 0,
        }
    }

    /// Records one sample, clamped to [`LATENCY_HIGHEST_NS`]. Never panics.
    #[inline]
    pub fn record(&mut self, ns: u64) {
        self.record_n(ns, 1);
    }

    /// Records `count` samples of the same value (a batch of deliveries written together).
    pub fn record_n(&mut self, ns: u64, count: u64) {
        let ns = ns.min(LATENCY_HIGHEST_NS);
        // Cannot fail: the value is clamped into the histogram's range.
        let _ = self.histogram.record_n(ns, count);
        self.sum_ns = self.sum_ns.saturating_add(ns.saturating_mul(count));
    }

    /// Adds every sample of `other` into `self`.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        if self.histogram.add(&other.histogram).is_err() {
            // Unreachable with a shared configuration; degrade to clamped re-recording
            // rather than losing the interval.
            for bucket in other.histogram.iter_recorded() {
                let count = bucket.count_at_value();
                self.histogram
                    .saturating_record_n(bucket.value_iterated_to(), count);
            }
        }
        self.sum_ns = self.sum_ns.saturating_add(other.sum_ns);
    }

    /// Empties the histogram, keeping its allocation.
    pub fn reset(&mut self) {
        self.histogram.reset();
        self.sum_ns = 0;
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// Exact sum of the (clamped) samples.
    pub fn sum_ns(&self) -> u64 {
        self.sum_ns
    }

    /// The underlying histogram, for callers needing other statistics.
    pub fn histogram(&self) -> &Histogram<u64> {
        &self.histogram
    }

    /// Count, sum and the [`QUANTILES`] (`None` when empty: no quantile exists).
    pub fn summary(&self) -> LatencySummary {
        let count = self.count();
        let mut quantiles_ns = [0; QUANTILES.len()];
        for (slot, value) in quantiles_ns
            .iter_mut()
            .zip(self.histogram.value_at_quantiles(QUANTILES))
        {
            *slot = value;
        }
        LatencySummary {
            count,
            sum_ns: self.sum_ns,
            quantiles_ns: (count > 0).then_some(quantiles_ns),
        }
    }
}

/// Exported figures of one latency histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: u64,
    /// Exact sum of samples.
    pub sum_ns: u64,
    /// Values at [`QUANTILES`] (upper bound of the HdrHistogram bucket), `None` when empty.
    pub quantiles_ns: Option<[u64; QUANTILES.len()]>,
}

impl LatencySummary {
    /// Arithmetic mean from the exact sum, `None` when empty.
    pub fn mean_ns(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_ns as f64 / self.count as f64)
    }
}

/// One [`LatencyHistogram`] per [`Latency`].
#[derive(Debug, Clone, Default)]
pub struct LatencySet {
    by_kind: [LatencyHistogram; Latency::COUNT],
}

impl LatencySet {
    /// Empty histograms for every latency.
    pub fn new() -> Self {
        Self::default()
    }

    /// The histogram of `kind`.
    #[inline]
    pub fn get(&self, kind: Latency) -> &LatencyHistogram {
        &self.by_kind[kind.index()]
    }

    /// The histogram of `kind`, mutably.
    #[inline]
    pub fn get_mut(&mut self, kind: Latency) -> &mut LatencyHistogram {
        &mut self.by_kind[kind.index()]
    }

    /// Adds every histogram of `other` into the matching one of `self`.
    pub fn merge(&mut self, other: &LatencySet) {
        for (mine, theirs) in self.by_kind.iter_mut().zip(&other.by_kind) {
            mine.merge(theirs);
        }
    }

    /// True when no histogram holds a sample.
    pub fn is_empty(&self) -> bool {
        self.by_kind.iter().all(|h| h.count() == 0)
    }

    /// Empties every histogram, keeping allocations.
    pub fn reset(&mut self) {
        self.by_kind.iter_mut().for_each(LatencyHistogram::reset);
    }

    /// Summaries of all latencies, indexed by [`Latency::index`].
    pub fn summaries(&self) -> [LatencySummary; Latency::COUNT] {
        Latency::ALL.map(|kind| self.get(kind).summary())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn exact_values_below_2048_ns_give_exact_quantiles() {
        let mut h = LatencyHistogram::new();
        for ns in 1..=1000 {
            h.record(ns);
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        assert_eq!(s.sum_ns, 500_500);
        assert_eq!(s.quantiles_ns, Some([500, 900, 990, 999, 1000]));
        assert_eq!(s.mean_ns(), Some(500.5));
    }

    #[test]
    fn large_values_report_bucket_upper_bound() {
        let mut h = LatencyHistogram::new();
        h.record(12_345_678);
        let upper = h.histogram().highest_equivalent(12_345_678);
        assert_eq!(h.summary().quantiles_ns, Some([upper; 5]));
        assert_eq!(h.sum_ns(), 12_345_678);
        assert!(upper - 12_345_678 <= 12_345_678 / 1000);
    }

    #[test]
    fn out_of_range_samples_are_clamped_not_rejected() {
        let mut h = LatencyHistogram::new();
        h.record(0);
        h.record(u64::MAX);
        assert_eq!(h.count(), 2);
        assert_eq!(h.sum_ns(), LATENCY_HIGHEST_NS);
        let max = h.summary().quantiles_ns.map(|q| q[4]);
        assert_eq!(
            max,
            Some(h.histogram().highest_equivalent(LATENCY_HIGHEST_NS))
        );
    }

    #[test]
    fn empty_summary_has_no_quantiles() {
        let s = LatencyHistogram::new().summary();
        assert_eq!((s.count, s.sum_ns, s.quantiles_ns), (0, 0, None));
        assert_eq!(s.mean_ns(), None);
    }

    #[test]
    fn merge_adds_counts_and_sums_and_reset_empties() {
        let mut a = LatencyHistogram::new();
        let mut b = LatencyHistogram::new();
        a.record(10);
        b.record(30);
        b.record(20);
        a.merge(&b);
        assert_eq!((a.count(), a.sum_ns()), (3, 60));
        assert_eq!(a.summary().quantiles_ns, Some([20, 30, 30, 30, 30]));
        a.reset();
        assert_eq!((a.count(), a.sum_ns()), (0, 0));
    }

    #[test]
    fn set_indexes_by_kind() {
        let mut set = LatencySet::new();
        set.get_mut(Latency::HeartbeatRtt).record(7);
        let summaries = set.summaries();
        assert_eq!(summaries[Latency::HeartbeatRtt.index()].count, 1);
        assert_eq!(summaries[Latency::Relay.index()].count, 0);
        assert_eq!(
            Latency::CrossLoop.family().name,
            "wsrelay_cross_loop_latency_seconds"
        );
    }

    proptest! {
        #[test]
        fn record_never_panics_and_counts_every_sample(
            samples in proptest::collection::vec(any::<u64>(), 0..50)
        ) {
            let mut h = LatencyHistogram::new();
            for &ns in &samples {
                h.record(ns);
            }
            prop_assert_eq!(h.count(), samples.len() as u64);
            let clamped: u64 = samples.iter().map(|&ns| ns.min(LATENCY_HIGHEST_NS)).sum();
            prop_assert_eq!(h.sum_ns(), clamped);
        }
    }
}
