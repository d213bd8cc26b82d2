//! The runtime: threads, `mio` event loops and sockets. The only part of the crate that imports
//! `mio` or performs I/O; everything it calls into (`session`, `proto`, `command`, `pubsub`,
//! `outbox`, `timer`, `metrics`) is sans-IO.
//!
//! The loop owns sockets, the slab, the timer wheel and routing; each connection's protocol is
//! its `session::Session` ("the session decides, the loop routes"): it reads data messages as
//! requests (JSON and binary decoding, the auth gate, refusals answered), encodes every reply
//! to its connection (`session::Reply`), takes deliveries (`handle_delivery`) and inflates
//! compressed messages. `runtime/` encodes no per-connection JSON; the frames it encodes are
//! shared by many subscribers (runs, tick batches: encode once).
//!
//! `Server::start` binds one SO_REUSEPORT listener per loop, wires the mesh (every loop's inbox
//! and waker, created before any loop runs: a loop never creates a channel at run time), starts
//! the metrics exporter and the loop threads, and returns a `ServerHandle`.

mod accept;
mod accept_guard;
pub mod ack;
mod admission;
mod authn;
mod client_addr;
mod cluster;
mod cluster_presence;
mod cluster_snapshot;
mod cluster_tick;
pub mod compression;
pub mod conn;
mod conns;
mod deliver;
pub use deliver::{Batch, FrameMeta};
mod dispatch;
pub mod event_loop;
mod flush;
mod handshake;
pub mod listener;
mod liveness;
pub mod mesh;
mod parts;
mod reload;

use reload::merge_reload;
pub use reload::{LiveConfig, Reloaded};
mod presence;
mod publish;
mod read;
mod shutdown;
mod subscribe;
mod throttle;
pub mod tick;
pub mod tls;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use mio::{Poll, Waker};

use crate::config::{Config, ConfigError};
use crate::metrics::{Exporter, LoopSnapshot, SharedExport};
use event_loop::{EventLoop, LoopParts, LoopSummary, WAKER};
use mesh::{Mesh, PeerHandle};

/// Process-wide shutdown request, read by each loop once per turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownState {
    /// Serving.
    Running,
    /// Close every connection with 1001 (or drain), wait for replies, then exit.
    Graceful,
    /// Exit now.
    Immediate,
}

/// Read-only state shared by every loop (plus the three atomics that are touched once per
/// connection or once per turn, never per message).
#[derive(Debug)]
pub struct Shared {
    /// The validated start-up configuration. Loops read their current view of the live one
    /// (`live`), which differs from this only in what a reload may change.
    pub config: Config,
    /// The configuration in force, replaced by `ServerHandle::reload`.
    pub live: LiveConfig,
    /// Where loops send metrics snapshots.
    pub metrics_tx: Sender<LoopSnapshot>,
    /// The merged metrics, read by `/metrics` and `/stats`.
    pub export: SharedExport,
    /// Open connections in the process (for `connections_max`).
    pub conns_open: AtomicUsize,
    /// Unique per process run: epochs of channel numberings start with it.
    pub epoch_prefix: String,
    /// Open connections per source IP (touched once per accept and close).
    pub ip_conns: std::sync::Mutex<crate::hash::FxHashMap<std::net::IpAddr, u32>>,
    /// Connections holding their own compression contexts (`--deflate-max-contexts`;
    /// touched once per such handshake and close).
    pub deflate_contexts: Arc<AtomicUsize>,
    /// Cluster mode's metrics and NATS state (`/metrics`, `/healthz`); `None` without `--nats`.
    pub cluster: Option<Arc<crate::cluster::ClusterStats>>,
    shutdown: AtomicU8,
}

impl Shared {
    /// The current shutdown request.
    pub fn shutdown_state(&self) -> ShutdownState {
        match self.shutdown.load(Ordering::Acquire) {
            0 => ShutdownState::Running,
            1 => ShutdownState::Graceful,
            _ => ShutdownState::Immediate,
        }
    }

    /// Runs `f` on the merged metrics (cold path: a lock shared with the exporter thread).
    pub fn with_export(&self, f: impl FnOnce(&Exporter)) {
        f(&crate::metrics::read_export(&self.export));
    }
}

/// A running relay.
#[derive(Debug)]
pub struct ServerHandle {
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    wakers: Vec<Arc<Waker>>,
    loops: Vec<JoinHandle<LoopSummary>>,
    exporter: Option<JoinHandle<()>>,
    /// The NATS bridge thread (cluster mode), stopped when the handle drops, after the loops.
    bridge: Option<Box<dyn std::fmt::Debug + Send>>,
}

/// What the relay did, printed at exit.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerSummary {
    /// Connections closed by the shutdown.
    pub connections_closed: u64,
    /// Deliveries over the process's life.
    pub messages_delivered: u64,
    /// Publishes over the process's life.
    pub messages_published: u64,
}

/// Entry point of the relay.
#[derive(Debug)]
pub struct Server;

impl Server {
    /// Validates `config`, binds, and starts the loops. Returns once every loop is listening.
    pub fn start(config: Config) -> io::Result<ServerHandle> {
        config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let listeners = listener::bind_all(config.listen_addr, config.loops, config.backlog)?;
        let local_addr = listeners
            .first()
            .ok_or_else(|| io::Error::other("no listener"))?
            .local_addr()?;
        let mut metrics_listener = match config.metrics_addr {
            Some(addr) => Some(listener::bind_reuseport(addr, config.backlog)?),
            None => None,
        };
        let metrics_addr = match &metrics_listener {
            Some(l) => Some(l.local_addr()?),
            None => None,
        };
        let (mut parts, wakers) = wire_loops(&config, listeners, metrics_listener.take())?;
        let (bridge, ports, cluster) = cluster::start_bridge(&config, &wakers)?;
        for (part, port) in parts.iter_mut().zip(ports) {
            part.cluster = Some(port);
        }
        let (metrics_tx, export, exporter) = start_exporter(&config, &mut parts)?;
        let shared = Arc::new(Shared {
            metrics_tx,
            export,
            conns_open: AtomicUsize::new(0),
            ip_conns: std::sync::Mutex::new(crate::hash::FxHashMap::default()),
            deflate_contexts: Arc::new(AtomicUsize::new(0)),
            epoch_prefix: epoch_prefix(),
            shutdown: AtomicU8::new(0),
            cluster,
            live: LiveConfig::new(&config),
            config,
        });
        let mut loops = Vec::with_capacity(parts.len());
        for part in parts {
            let lp = EventLoop::new(part, shared.clone())?;
            let name = format!("wsrelay-loop-{}", loops.len());
            loops.push(
                std::thread::Builder::new()
                    .name(name)
                    .spawn(move || lp.run())?,
            );
        }
        Ok(ServerHandle {
            local_addr,
            metrics_addr,
            shared,
            wakers,
            loops,
            exporter: Some(exporter),
            bridge,
        })
    }
}

/// Starts the metrics exporter thread and gives each loop its end of the channel that
/// returns emptied latency sets to it.
fn start_exporter(
    config: &Config,
    parts: &mut [LoopParts],
) -> io::Result<(Sender<LoopSnapshot>, SharedExport, JoinHandle<()>)> {
    let (metrics_tx, metrics_rx) = crossbeam_channel::bounded(config.loops * 4);
    let export: SharedExport = crate::metrics::new_shared_export(config.loops);
    // One emptied latency set in flight back to each loop is enough: a loop takes it at its
    // next snapshot, before the exporter can return the set that snapshot carries.
    let mut recycle = Vec::with_capacity(parts.len());
    for part in parts.iter_mut() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        recycle.push(tx);
        part.metrics_recycle = Some(rx);
    }
    let exporter = crate::metrics::spawn_exporter_recycling(metrics_rx, export.clone(), recycle)?;
    Ok((metrics_tx, export, exporter))
}

/// Creates every loop's poll, waker and inbox before any loop runs.
fn wire_loops(
    config: &Config,
    listeners: Vec<mio::net::TcpListener>,
    mut metrics_listener: Option<mio::net::TcpListener>,
) -> io::Result<(Vec<LoopParts>, Vec<Arc<Waker>>)> {
    let mut polls = Vec::new();
    let mut peers = Vec::new();
    let mut inboxes = Vec::new();
    for _ in 0..config.loops {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, rx) = crossbeam_channel::bounded(config.mesh_inbox_len_max);
        polls.push(poll);
        peers.push(PeerHandle { tx, waker });
        inboxes.push(rx);
    }
    let wakers = peers.iter().map(|p| p.waker.clone()).collect();
    let parts = polls
        .into_iter()
        .zip(inboxes)
        .zip(listeners)
        .enumerate()
        .map(|(id, ((poll, inbox), listener))| LoopParts {
            id,
            poll,
            listener,
            metrics_listener: if id == 0 {
                metrics_listener.take()
            } else {
                None
            },
            mesh: Mesh::new(id, peers.clone(), inbox, config.mesh_inbox_len_max),
            cluster: None,
            metrics_recycle: None,
        })
        .collect();
    Ok((parts, wakers))
}

/// A prefix that differs between runs of the process: start time and pid.
fn epoch_prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!("{:x}{:x}", nanos, std::process::id())
}

impl ServerHandle {
    /// The relay's address (with the actual port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The separate metrics address, if configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The shared state (metrics export, configuration).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Asks every loop to shut down gracefully (idempotent); `shutdown_immediately` skips the
    /// grace period.
    pub fn shutdown(&self) {
        self.request(1);
    }

    /// Applies a new configuration without dropping connections: the settings that may change
    /// at run time take effect at each loop's next turn (the loops are woken), the others keep
    /// their start-up value and are listed as needing a restart. A configuration that does not
    /// validate changes nothing. Counted in `wsrelay_config_reloads_total{result}`.
    pub fn reload(&self, new: Config) -> Result<Reloaded, ConfigError> {
        let merged = new.validate().and_then(|()| {
            let (applied, report) = merge_reload(&self.shared.live.current(), new);
            applied.validate().map(|()| (applied, report))
        });
        let record =
            |ok| crate::metrics::write_export(&self.shared.export).record_config_reload(ok);
        let (applied, report) = match merged {
            Ok(m) => m,
            Err(e) => {
                record(false);
                return Err(e);
            }
        };
        self.shared.live.publish(applied);
        record(true);
        for waker in &self.wakers {
            // A loop whose poll is gone is shutting down: nothing to apply.
            let _ = waker.wake();
        }
        Ok(report)
    }

    /// Counts a reload that failed before a configuration could be built (an unreadable or
    /// invalid file): `wsrelay_config_reloads_total{result="error"}`.
    pub fn reload_failed(&self) {
        crate::metrics::write_export(&self.shared.export).record_config_reload(false);
    }

    /// The configuration in force (the start-up one, or the last reloaded).
    pub fn config(&self) -> Arc<Config> {
        self.shared.live.current()
    }

    /// Asks every loop to stop now: each connection gets one best-effort 1001 close frame in
    /// the same turn, no close reply is awaited, and the loops end.
    pub fn shutdown_immediately(&self) {
        self.request(2);
    }

    fn request(&self, state: u8) {
        self.shared.shutdown.fetch_max(state, Ordering::AcqRel);
        for w in &self.wakers {
            let _ = w.wake();
        }
    }

    /// Waits for every loop to end and returns the totals.
    pub fn join(mut self) -> ServerSummary {
        let mut total = ServerSummary::default();
        for handle in self.loops.drain(..) {
            if let Ok(s) = handle.join() {
                total.connections_closed += s.connections_closed;
                total.messages_delivered += s.messages_delivered;
                total.messages_published += s.messages_published;
            }
        }
        total
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if !self.loops.is_empty() {
            self.shutdown_immediately();
            for handle in self.loops.drain(..) {
                let _ = handle.join();
            }
        }
        // The exporter ends when every loop (every sender) is gone.
        let _ = self.exporter.take();
        // The bridge stops (and joins its thread) when dropped, after the loops.
        let _ = self.bridge.take();
    }
}
