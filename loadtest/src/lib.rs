//! # wsrelay-swarm
//!
//! A bounded client swarm for WebSocket pub/sub relays that speak wsrelay's protocol (and the
//! reference peers that imitate it), and for any WebSocket server (`any`: echo and scripted
//! scenarios; `agent`: several machines). It uses wsrelay's own sans-IO codec in the client role,
//! so one codec serves both sides, and runs a few mio loops (`--threads`), never a thread per
//! connection.
//!
//! ## Code map
//!
//! - `cli`: scenarios and flags → `RunOptions`.
//! - `plan`: who connects, subscribes and publishes what.
//! - `run`: the coordinator (target or in-process relay, setup, window, drain, stop).
//! - `driver`: one mio loop per thread, owning its connections.
//! - `conn`: one connection's handshake, setup and data path.
//! - `payload`: precomputed masked frames; `scan`: the delivery scanner (hot path).
//! - `schedule`: open-loop publish schedule; `stats`, `report`: measurements and output.
//! - `target`, `sys`: addresses and operating-system facts.
//! - `series`, `sampler`, `html`: per-second series, the coordinator's once-a-second samples,
//!   and the self-contained HTML report.
//! - `agent`: several load machines coordinated through NATS (agents and a controller).
//! - `any`: the `echo` and `script` scenarios for any WebSocket server, on their own engine.
//!
//! ## Measurement rules
//!
//! - Latency = receipt − SCHEDULED send time (constant rate), so a stalled server cannot hide
//!   behind a stalled publisher (coordinated omission). At `--rate max` the schedule is the
//!   send itself, bounded by a window of deliveries in flight.
//! - Publishers and subscribers share one process-local clock.
//! - Only publishes stamped inside the window count; loss = expected − received.
//! - The swarm reports its own CPU next to the server's, so it is never the silent bottleneck.
//! - Every run is bounded in count and time and stops by itself.

#![deny(missing_docs, missing_debug_implementations)]
// Functions stay at most 60 lines (clippy.toml; issue 12).
#![warn(clippy::too_many_lines)]

pub mod agent;
pub mod any;
pub mod cli;
pub mod conn;
pub mod driver;
pub mod html;
pub mod market;
pub mod payload;
pub mod plan;
pub mod recv_bench;
pub mod report;
pub mod run;
pub mod sampler;
pub mod scan;
pub mod schedule;
pub mod series;
pub mod server_stats;
pub mod stats;
pub mod sys;
pub mod target;
pub mod targets;
pub mod tls;
