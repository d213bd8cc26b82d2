//! Relay metrics: per-loop recording on the hot path, merging on an exporter thread, and
//! rendering for `GET /metrics` (Prometheus text format 0.0.4) and `GET /stats` (JSON).
//!
//! Data flow:
//! 1. Each event loop owns a [`LoopMetrics`] (plain integers and HdrHistograms: no atomics, no
//!    locks) and only increments/records on the hot path.
//! 2. At a fixed interval the loop calls [`LoopMetrics::set_gauges`] then
//!    [`LoopMetrics::snapshot`] and `try_send`s the [`LoopSnapshot`] on a bounded crossbeam
//!    channel; on `Full` it hands the snapshot back with [`LoopMetrics::reclaim_unsent`].
//! 3. The thread from [`spawn_exporter`] merges snapshots into the [`Exporter`] behind a
//!    [`SharedExport`] (`Arc<RwLock<_>>`, cold path only). With
//!    [`spawn_exporter_recycling`] it also sends each emptied histogram set back to its loop,
//!    which passes it to [`LoopMetrics::recycle`] before its next snapshot (no allocation or
//!    zeroing on the loop thread).
//! 4. HTTP handlers on any loop take [`read_export`] and call
//!    [`Exporter::render_prometheus`] / [`Exporter::render_stats_json`].
//!
//! Owns: metric names, help texts, label sets and both export formats.
//! May not touch: sockets, the event loops' state, timers; callers pass plain numbers.
//!
//! Invariants: see each submodule; in short, every label set is bounded, counters are
//! cumulative, interval histograms are merged exactly once, recording never panics.

pub mod channels;
pub mod counters;
pub mod exporter;
pub mod latency;
pub mod prometheus;
pub mod snapshot;
pub mod stats_json;
pub mod window;

#[cfg(test)]
mod text_format_check;

pub use channels::{ChannelRate, TopChannels, TOP_CHANNELS};
pub use counters::{Counter, Family, MetricKind, OVERFLOW_LABEL};
pub use exporter::{
    new_shared_export, read_export, spawn_exporter, spawn_exporter_recycling, write_export,
    ExportView, Exporter, SharedExport,
};
pub use latency::{Latency, LatencySet, LatencySummary};
pub use prometheus::PROMETHEUS_CONTENT_TYPE;
pub use snapshot::{Gauge, Gauges, LoopMetrics, LoopSnapshot};
pub use stats_json::STATS_JSON_CONTENT_TYPE;
pub use window::LatencyWindow;
