//! The market scenarios: `board` (N channels × K keys kept as keyed snapshots, S subscribers
//! that each need the whole board) and `throttle` (one hot channel, many throttled
//! subscribers).
//!
//! Owns: their flags, the runs and their reports. May not touch: the relay scenarios' drivers.
//!
//! The clients are `wsrelay::client` connections (the relay's own client library: it parses
//! snapshots, keys and throttled replies), driven round-robin by a few threads (each polls its
//! connections in turn; no thread per connection). What they measure is counts, bytes, values
//! and the server's CPU time, not latency in microseconds: a round over 500 connections takes
//! a few ms, which bounds the time resolution of `board` (said in its report).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::Args;
use wsrelay::client::{Client, Event, Options, SubscribeOptions};
use wsrelay::command::{encode_snapshot, SnapshotEntry, SnapshotHead};

use crate::cli::parse_duration;

/// Longest wait for connections, subscriptions and the board fill.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Flags both scenarios share.
#[derive(Debug, Clone, Args)]
pub struct MarketCommon {
    /// Target `ws://HOST:PORT/`; without it an in-process relay is started (its CPU is then
    /// not told apart from the swarm's).
    #[arg(long)]
    pub url: Option<String>,
    /// The server's pid: its CPU time over the run is reported.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Subscriber threads (each drives its share of the connections round-robin).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Event loops of the in-process relay (without --url).
    #[arg(long, default_value_t = 1)]
    pub relay_loops: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `throttle` flags.
#[derive(Debug, Clone, Args)]
pub struct ThrottleArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: MarketCommon,
    /// Throttled subscribers.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Publishes per second on the hot channel.
    #[arg(long, default_value_t = 10_000.0)]
    pub rate: f64,
    /// The subscribers' `throttle_ms`.
    #[arg(long, default_value_t = 100)]
    pub throttle_ms: u32,
    /// Keys the publishes cycle through (0: no key, one value per channel).
    #[arg(long, default_value_t = 0)]
    pub keys: u32,
    /// Content bytes per publish (padding after the counter).
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Warm-up before the measured window.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Measured window.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Wait after the last publish before the last values are checked (at least three
    /// intervals).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub drain: Duration,
}

/// `board` flags.
#[derive(Debug, Clone, Args)]
pub struct BoardArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: MarketCommon,
    /// Boards (channels `board.0` ..).
    #[arg(long, default_value_t = 1)]
    pub channels: u32,
    /// Keys per board.
    #[arg(long, default_value_t = 1000)]
    pub keys: u32,
    /// Subscribers (subscriber s takes board s % channels).
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Content bytes per key.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Updates per second published while the subscribers subscribe (0: a quiet board).
    #[arg(long, default_value_t = 0.0)]
    pub update_rate: f64,
}

/// Options of every swarm client: no heartbeat (runs are short), large messages allowed.
fn client_options() -> Options {
    Options {
        heartbeat_interval: Duration::ZERO,
        message_bytes_max: 64 << 20,
        retries_max: 0,
        ..Options::default()
    }
}

/// The relay under test: the given URL, or an in-process relay started with `config`.
fn target(
    common: &MarketCommon,
    config: wsrelay::Config,
) -> Result<(String, Option<wsrelay::ServerHandle>), String> {
    if let Some(url) = &common.url {
        return Ok((url.clone(), None));
    }
    let server = wsrelay::Server::start(config).map_err(|e| format!("in-process relay: {e}"))?;
    Ok((format!("ws://{}/", server.local_addr()), Some(server)))
}

fn in_process_config(loops: usize) -> wsrelay::Config {
    wsrelay::Config {
        snapshot_patterns: vec![wsrelay::auth::ChannelPattern::parse("board.*").expect("pattern")],
        connections_per_ip_max: 0,
        ..wsrelay::Config::loopback_for_tests(loops)
    }
}

/// Opens `n` clients and waits until every one has its `connected`.
fn connect(url: &str, n: usize) -> Result<Vec<Client>, String> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(Client::connect(url, client_options()).map_err(|e| e.to_string())?);
    }
    let mut connected = vec![false; n];
    let started = Instant::now();
    while connected.iter().any(|c| !c) {
        for (i, c) in clients.iter_mut().enumerate() {
            while let Some(event) = c.try_next_event() {
                match event {
                    Event::Connected { .. } => connected[i] = true,
                    Event::Stopped(reason) => return Err(format!("connection {i}: {reason:?}")),
                    _ => {}
                }
            }
        }
        if started.elapsed() > SETUP_TIMEOUT {
            return Err("connections not all open within 60 s".into());
        }
    }
    Ok(clients)
}

/// Splits `total` as evenly as possible over `parts`.
fn share(total: usize, parts: usize, index: usize) -> usize {
    total / parts + usize::from(index < total % parts)
}

fn cpu_of(pid: Option<u32>) -> Option<f64> {
    crate::sys::pid_cpu_s(pid?)
}

/// JSON content of publish `n`, padded to about `size` bytes.
fn content(n: u64, size: usize) -> String {
    let head = format!("{{\"n\":{n},\"x\":\"");
    let pad = size.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "x".repeat(pad))
}

/// The counter of a content written by [`content`].
fn counter_of(content: &str) -> Option<u64> {
    let rest = content.strip_prefix("{\"n\":")?;
    rest[..rest.find(',')?].parse().ok()
}

pub mod board;
pub mod throttle;
