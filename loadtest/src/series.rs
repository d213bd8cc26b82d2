//! Per-second series of a run: messages sent and received, errors and latency percentiles by
//! second of the run (driver threads record them), and what the coordinator samples once a
//! second (connections open, swarm and server CPU). They feed `--json`'s `series` and the HTML
//! report.
//!
//! Owns: the time-bucketed measurements. May not touch: sockets, clocks (times are passed
//! in). Bounded: at most [`SERIES_SECONDS_MAX`] seconds are kept; later events fall into the
//! last second.

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// Seconds kept (an hour); a longer run folds its tail into the last second.
pub const SERIES_SECONDS_MAX: usize = 3600;
/// Highest latency of a per-second histogram, ns.
const SECOND_LATENCY_NS_MAX: u64 = 60_000_000_000;

/// One second of one thread.
#[derive(Debug, Clone)]
pub struct Second {
    /// Messages sent whose send happened in this second.
    pub sent_total: u64,
    /// Replies or deliveries received in this second.
    pub received_total: u64,
    /// Errors in this second.
    pub errors_total: u64,
    /// Latencies of what was received in this second, ns (two significant digits: 1%).
    pub latency_ns: Histogram<u64>,
}

impl Default for Second {
    fn default() -> Self {
        Self {
            sent_total: 0,
            received_total: 0,
            errors_total: 0,
            latency_ns: Histogram::new_with_bounds(1, SECOND_LATENCY_NS_MAX, 2)
                .expect("static histogram bounds are valid"),
        }
    }
}

/// A thread's (or the merged) per-second measurements, second 0 starting at `origin_ns`.
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// Start of second 0 on the swarm's clock, ns.
    pub origin_ns: u64,
    /// Seconds so far.
    pub seconds: Vec<Second>,
}

impl Series {
    /// An empty series whose second 0 starts at `origin_ns`.
    pub fn new(origin_ns: u64) -> Self {
        Self {
            origin_ns,
            seconds: Vec::new(),
        }
    }

    fn at(&mut self, at_ns: u64) -> &mut Second {
        let index = (at_ns.saturating_sub(self.origin_ns) / 1_000_000_000) as usize;
        let index = index.min(SERIES_SECONDS_MAX - 1);
        if self.seconds.len() <= index {
            self.seconds.resize_with(index + 1, Second::default);
        }
        &mut self.seconds[index]
    }

    /// Counts a message sent at `at_ns`.
    #[inline]
    pub fn sent(&mut self, at_ns: u64) {
        self.at(at_ns).sent_total += 1;
    }

    /// Counts a reply received at `at_ns` with its latency.
    #[inline]
    pub fn received(&mut self, at_ns: u64, latency_ns: u64) {
        let second = self.at(at_ns);
        second.received_total += 1;
        let _ = second
            .latency_ns
            .record(latency_ns.clamp(1, SECOND_LATENCY_NS_MAX));
    }

    /// Counts an error at `at_ns`.
    pub fn error(&mut self, at_ns: u64) {
        self.at(at_ns).errors_total += 1;
    }

    /// Adds `other` (same origin) into `self`.
    pub fn merge(&mut self, other: &Series) {
        if self.seconds.len() < other.seconds.len() {
            self.seconds
                .resize_with(other.seconds.len(), Second::default);
        }
        for (mine, theirs) in self.seconds.iter_mut().zip(&other.seconds) {
            mine.sent_total += theirs.sent_total;
            mine.received_total += theirs.received_total;
            mine.errors_total += theirs.errors_total;
            let _ = mine.latency_ns.add(&theirs.latency_ns);
        }
    }
}

/// What the coordinator samples at the end of each second.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// Connections open (ready) at the sample.
    pub conns_open: u64,
    /// Swarm CPU over the second, % of one core.
    pub swarm_cpu_pct: f64,
    /// Server CPU over the second, % of one core (`None`: unknown).
    pub server_cpu_pct: Option<f64>,
}

/// The run's series as reported: driver measurements plus the coordinator's samples.
#[derive(Debug, Clone, Default)]
pub struct SeriesReport {
    /// Merged per-second measurements.
    pub series: Series,
    /// One sample per second, index = second of the run.
    pub samples: Vec<Sample>,
}

impl SeriesReport {
    /// Seconds covered (the longer of measurements and samples).
    pub fn len(&self) -> usize {
        self.series.seconds.len().max(self.samples.len())
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Latency quantile of second `i`, µs (`None`: nothing received that second).
    pub fn latency_us(&self, i: usize, quantile: f64) -> Option<f64> {
        let h = &self.series.seconds.get(i)?.latency_ns;
        (!h.is_empty()).then(|| h.value_at_quantile(quantile) as f64 / 1e3)
    }

    /// The `series` object of `--json`: one array per measure, index = second of the run.
    pub fn to_json(&self) -> Value {
        let n = self.len();
        let second = |i: usize| self.series.seconds.get(i);
        // A second without a sample (before the first, after the sampler stopped) is null,
        // as the HTML report draws a gap there: it was not measured, it was not 0.
        let sample = |i: usize| self.samples.get(i).copied();
        let round = |v: f64| (v * 10.0).round() / 10.0;
        let quantiles = |q: f64| -> Vec<Value> {
            (0..n)
                .map(|i| {
                    self.latency_us(i, q)
                        .map_or(Value::Null, |v| json!(round(v)))
                })
                .collect()
        };
        json!({
            "t_s": (0..n).collect::<Vec<_>>(),
            "sent": (0..n).map(|i| second(i).map_or(0, |s| s.sent_total)).collect::<Vec<_>>(),
            "received": (0..n).map(|i| second(i).map_or(0, |s| s.received_total)).collect::<Vec<_>>(),
            "errors": (0..n).map(|i| second(i).map_or(0, |s| s.errors_total)).collect::<Vec<_>>(),
            "latency_p50_us": quantiles(0.5),
            "latency_p99_us": quantiles(0.99),
            "latency_p999_us": quantiles(0.999),
            "conns_open": (0..n).map(|i| sample(i).map(|s| s.conns_open)).collect::<Vec<_>>(),
            "swarm_cpu_pct": (0..n).map(|i| sample(i).map(|s| round(s.swarm_cpu_pct))).collect::<Vec<_>>(),
            "server_cpu_pct": (0..n).map(|i| sample(i).and_then(|s| s.server_cpu_pct).map(round)).collect::<Vec<_>>(),
        })
    }
}

/// Points of an HDR percentile plot of `h` (ns): `(percentile, latency µs)`, from 0 up to
/// 99.999 % in quarter-decades of 1/(1−q), then the max.
pub fn percentile_points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut points: Vec<(f64, f64)> = (0..=20)
        .map(|k| {
            let q = 1.0 - 10f64.powf(-f64::from(k) / 4.0);
            (q * 100.0, h.value_at_quantile(q) as f64 / 1e3)
        })
        .collect();
    points.push((100.0, h.max() as f64 / 1e3));
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_by_second_and_merges() {
        let mut a = Series::new(1_000);
        a.sent(1_000);
        a.received(2_500_000_000, 5_000);
        let mut b = Series::new(1_000);
        b.error(1_000_001_500);
        b.received(1_000_001_500, 7_000);
        a.merge(&b);
        assert_eq!(a.seconds.len(), 3);
        assert_eq!(a.seconds[0].sent_total, 1);
        assert_eq!(a.seconds[1].errors_total, 1);
        assert_eq!(a.seconds[1].received_total, 1);
        assert_eq!(a.seconds[2].received_total, 1);
        let report = SeriesReport {
            series: a,
            samples: vec![Sample::default(); 2],
        };
        let v = report.to_json();
        assert_eq!(v["received"], json!([0, 1, 1]));
        assert_eq!(v["latency_p50_us"][0], Value::Null);
        assert_eq!(v["latency_p50_us"][2], json!(5.0));
        // Two samples for three seconds: the third second was not sampled, so it is null.
        assert_eq!(v["conns_open"], json!([0, 0, null]));
        assert_eq!(v["swarm_cpu_pct"], json!([0.0, 0.0, null]));
        assert_eq!(v["server_cpu_pct"], json!([null, null, null]));
    }

    #[test]
    fn late_events_fold_into_the_last_second() {
        let mut s = Series::new(0);
        s.sent(u64::MAX / 2);
        assert_eq!(s.seconds.len(), SERIES_SECONDS_MAX);
    }
}
