//! The coordinator's once-a-second samples of a run: connections open, swarm and server CPU
//! over the second, and the deltas of the drivers' live counters (messages sent and received).
//! For the relay scenarios these deltas are the per-second series (their drivers keep no
//! per-second histograms, so the hot path is unchanged); `echo` and `script` drivers record
//! their own series, with latency, and use only the samples.
//!
//! Owns: the sampling instants. May not touch: connections, driver state (it reads counters).

use crate::run::ServerProbe;
use crate::series::{Sample, Second, Series, SeriesReport, SERIES_SECONDS_MAX};
use crate::sys;

/// The drivers' live counters at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Messages sent so far.
    pub sent_total: u64,
    /// Messages (replies, deliveries) received so far.
    pub received_total: u64,
    /// Errors (failed and lost connections) so far.
    pub errors_total: u64,
    /// Connections open now.
    pub conns_open: u64,
}

/// Takes one sample at the end of every second after `start_ns`.
#[derive(Debug)]
pub struct Sampler {
    start_ns: u64,
    probe: ServerProbe,
    samples: Vec<Sample>,
    seconds: Vec<Second>,
    last: Counters,
    last_swarm_cpu_s: f64,
    last_server_cpu_s: Option<f64>,
}

impl Sampler {
    /// Sampling from `start_ns` (the run's start on the swarm's clock).
    pub fn new(start_ns: u64, probe: ServerProbe, counters: Counters) -> Self {
        Self {
            start_ns,
            probe,
            samples: Vec::new(),
            seconds: Vec::new(),
            last: counters,
            last_swarm_cpu_s: swarm_cpu_s(),
            last_server_cpu_s: probe.cpu_s(),
        }
    }

    /// When the next sample is due, ns.
    pub fn next_due_ns(&self) -> u64 {
        self.start_ns + (self.samples.len() as u64 + 1) * 1_000_000_000
    }

    /// Takes every sample due by now (`counters`: read only when one is due).
    pub fn sample_due(&mut self, counters: impl Fn() -> Counters) {
        while self.samples.len() < SERIES_SECONDS_MAX && sys::now_ns() >= self.next_due_ns() {
            let now = counters();
            let swarm = swarm_cpu_s();
            let server = self.probe.cpu_s();
            self.samples.push(Sample {
                conns_open: now.conns_open,
                swarm_cpu_pct: (swarm - self.last_swarm_cpu_s) * 100.0,
                server_cpu_pct: server
                    .zip(self.last_server_cpu_s)
                    .map(|(now, before)| (now - before) * 100.0),
            });
            self.seconds.push(Second {
                sent_total: now.sent_total.saturating_sub(self.last.sent_total),
                received_total: now.received_total.saturating_sub(self.last.received_total),
                errors_total: now.errors_total.saturating_sub(self.last.errors_total),
                ..Second::default()
            });
            self.last = now;
            self.last_swarm_cpu_s = swarm;
            self.last_server_cpu_s = server;
        }
    }

    /// The series: the drivers' own (`echo`, `script`), or the counters' deltas.
    pub fn into_report(self, drivers: Option<Series>) -> SeriesReport {
        let series = drivers.unwrap_or(Series {
            origin_ns: self.start_ns,
            seconds: self.seconds,
        });
        SeriesReport {
            series,
            samples: self.samples,
        }
    }
}

/// CPU-seconds of the swarm's driver threads so far.
fn swarm_cpu_s() -> f64 {
    sys::own_threads_cpu_s("swarm-")
}
