//! # wsrelay
//!
//! A WebSocket pub/sub relay: publishers send messages to channels, and every other subscriber
//! of the channel receives them, in order, numbered, with microseconds of overhead.
//!
//! ## Bird's-eye view
//!
//! N event loops, one thread each (thread-per-core, shared-nothing). Each loop owns a `mio`
//! poll, its own SO_REUSEPORT listener, its connections (a slab), its subscription index, the
//! channels it owns (a stable hash of the name picks the owner), its timer wheel and its
//! metrics. Loops talk only through bounded crossbeam queues plus a `mio::Waker`. A publish is
//! numbered and encoded once by the channel's owner; the same bytes (`bytes::Bytes`) reach
//! every subscriber's outbox and leave with one `sendmsg` per connection per turn.
//!
//! ## Code map
//!
//! - `proto`: RFC 6455, sans-IO: handshake, frame decoder and encoder, masking, UTF-8, close.
//! - `command`: the JSON and binary application protocol (simd-json), sans-IO.
//! - `pubsub`: channel ownership, seq numbering, history and the local subscriber index.
//! - `outbox`: the bounded per-connection queue with its control lane.
//! - `timer`: the hashed timer wheel.
//! - `auth`: JWT verification and channel permissions, sans-IO.
//! - `metrics`: per-loop counters and histograms, export to Prometheus text and JSON.
//! - `runtime`: threads, sockets, the event loop phases of the relay.
//! - `web`: embedded static assets: the browser client (`/client.js`) and the status page.
//! - `client`: a client-role connection and a reconnecting session (load tests, apps).
//! - `tls`: the relay's TLS settings (certificate, key, client CA) read into rustls.
//! - `cluster`, `cluster_config`: cluster mode's vocabulary (`--nats`); `nats_bridge` (the
//!   `cluster` feature): the thread between the loops and NATS JetStream.
//! - `config`, `cidr`, `clock`, `close_code`, `conn_id`, `hash`: small shared vocabulary.
//!
//! ## Cargo features
//!
//! `proto`, `command` and `close_code` (the codec) are always built. `client` adds `client`;
//! `server` adds every other module (the relay); `cli` adds the binary's dependencies;
//! `cluster` adds `nats_bridge` (async-nats, tokio). Default: all four. Modules are gated here only, never inside a module.
//!
//! ## Invariants
//!
//! - Only `runtime` (the relay) and `client::driver` (the client's thin mio layer) perform
//!   I/O or read the clock; every protocol module is sans-IO and is passed `now`.
//! - Every buffer and queue has a limit and a named policy (see `Config`).
//! - A loop never blocks on another loop (`try_send` only).
//! - A published frame is encoded once; fan-out clones a `Bytes` handle.
//! - A channel's `seq` is assigned only by its owner loop.

#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations)]
// Functions stay at most 60 lines (clippy.toml; issue 12).
#![warn(clippy::too_many_lines)]

// The codec: always built, shared by the relay and the client.
pub mod close_code;
pub mod command;
pub mod proto;

#[cfg(feature = "client")]
pub mod client;

#[cfg(feature = "server")]
pub mod auth;
#[cfg(feature = "server")]
pub mod cidr;
#[cfg(feature = "server")]
pub mod clock;
#[cfg(feature = "server")]
pub mod cluster_config;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
pub mod conn_id;
#[cfg(feature = "server")]
pub mod hash;
#[cfg(feature = "server")]
pub mod log_limit;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod outbox;
#[cfg(feature = "server")]
pub mod pubsub;
#[cfg(feature = "server")]
pub mod rate;
#[cfg(feature = "server")]
pub mod runtime;
#[cfg(feature = "server")]
pub mod session;
#[cfg(feature = "server")]
pub mod timer;
#[cfg(feature = "server")]
pub mod tls;
#[cfg(feature = "server")]
pub mod web;

#[cfg(feature = "server")]
pub mod cluster;
#[cfg(feature = "cluster")]
pub mod nats_bridge;

#[cfg(feature = "server")]
pub use config::Config;

/// The relay's version (`Cargo.toml`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git revision it was built from (`git rev-parse --short HEAD` at build time, `unknown`
/// when built outside a git checkout; see `build.rs`).
pub const GIT_REVISION: &str = env!("WSRELAY_GIT_REVISION");
/// `VERSION (GIT_REVISION)`, as `wsrelay --version` prints it.
pub const VERSION_WITH_REVISION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("WSRELAY_GIT_REVISION"),
    ")"
);

#[cfg(feature = "server")]
pub use runtime::{Server, ServerHandle, ServerSummary};
