//! What the driver threads of a run against any server share with each other and with the
//! coordinator: knobs, the shard of clients this process runs, live counters, and what a
//! driver returns.
//!
//! Owns: these types. May not touch: sockets, clients.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};

use crate::any::conn::AnyCounters;
use crate::any::scenario::Scenario;
use crate::series::Series;
use crate::stats::ThreadStats;

/// Knobs shared by every driver.
#[derive(Debug, Clone)]
pub struct AnySettings {
    /// Driver threads.
    pub threads: usize,
    /// New connections per second while setting up (all threads together).
    pub ramp_per_s: f64,
    /// Connections per thread between connect and ready at once.
    pub setups_inflight_max: usize,
    /// This process's share of the clients: `(index, count)`; client `c` is run here when
    /// `c % count == index` (agent mode splits a run this way; alone: `(0, 1)`).
    pub shard: (u32, u32),
}

impl AnySettings {
    /// Whether client `c` (index in the run) is run by driver `thread` of this process.
    pub fn owns(&self, c: u64, thread: usize) -> bool {
        let (index, count) = (u64::from(self.shard.0), u64::from(self.shard.1.max(1)));
        c % count == index && (c / count) % self.threads.max(1) as u64 == thread as u64
    }

    /// Whether client `c` is run by this process.
    pub fn in_shard(&self, c: u64) -> bool {
        c % u64::from(self.shard.1.max(1)) == u64::from(self.shard.0)
    }
}

/// Coordination between the coordinator and the drivers (live counters for the progress
/// line and the per-second samples).
#[derive(Debug, Default)]
pub struct AnyControl {
    /// When the run started, ns (0: setting up).
    pub start_ns: AtomicU64,
    /// Drivers close their clients and return.
    pub stop: AtomicBool,
    /// Drivers whose setup clients are all ready (or failed).
    pub threads_settled: AtomicUsize,
    /// Messages sent.
    pub sent_total: AtomicU64,
    /// Replies due.
    pub due_total: AtomicU64,
    /// Replies received.
    pub received_total: AtomicU64,
    /// Clients ready and not closed, all threads.
    pub conns_open: AtomicU64,
}

/// What every driver shares.
#[derive(Debug)]
pub struct AnyShared {
    /// The scenario.
    pub scenario: Scenario,
    /// Knobs.
    pub settings: AnySettings,
    /// Coordination.
    pub control: AnyControl,
    /// TLS of each `wss://` target (by group, then URL; `None`: plain).
    pub tls: crate::tls::TlsClients,
}

/// What a driver returns.
#[derive(Debug)]
pub struct DriverResult {
    /// Measurements.
    pub stats: ThreadStats,
    /// Per-second measurements.
    pub series: Series,
    /// Engine counters.
    pub counters: AnyCounters,
}
