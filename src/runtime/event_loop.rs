//! One event loop: one thread, one `mio::Poll`, and everything it owns.
//!
//! `run` is a list of phases (see ARCHITECTURE.md, "one turn"): poll, read what is readable,
//! drain the inbox from other loops, expire timers, flush every connection with output, reap
//! closed connections, wake peers, export metrics. Each phase lives in its own file as an
//! `impl EventLoop` block: `accept.rs` (+ `client_addr.rs`, the client address behind proxies,
//! and `admission.rs`, the connection limits), `read.rs`,
//! `handshake.rs` (+ `authn.rs`), `dispatch.rs` (commands, close handshake), `publish.rs`
//! (runs), `deliver.rs` (fan-out, inbox), `subscribe.rs`, `liveness.rs` (timers), `flush.rs`,
//! `shutdown.rs` (and reaping).
//!
//! Invariants:
//! - Only this thread touches these connections; the mesh queues and wakers are the only
//!   objects shared with other loops (plus the read-only `Shared`).
//! - One `now_ns` per turn (read after `poll` returns).
//! - Any code that queues output calls `mark_dirty`; every dirty connection is flushed before
//!   the next `poll` (sozu's writable invariant), so queued bytes never wait for an event that
//!   will not come.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use mio::{Events, Interest, Poll, Token};

use crate::clock::Clock;
use crate::command::CommandDecoder;
use crate::conn_id::{ConnId, LoopId};
use crate::metrics::{Gauges, LoopMetrics, LoopSnapshot, TopChannels};
use crate::pubsub::snapshot::SnapshotLimits;
use crate::pubsub::{ChannelRegistry, LocalIndex, RetentionConfig, SnapshotConfig};
use crate::runtime::conn::{Conn, Phase};
use crate::runtime::mesh::Mesh;
use crate::runtime::Shared;
use crate::timer::TimerWheel;

/// Token of this loop's relay listener.
pub(super) const LISTENER: Token = Token(usize::MAX - 1);
/// Token of this loop's waker (mesh messages, shutdown).
pub(super) const WAKER: Token = Token(usize::MAX - 2);
/// Token of the optional metrics listener (loop 0 only).
pub(super) const METRICS_LISTENER: Token = Token(usize::MAX - 3);

/// Bytes read from one connection per turn before others get their turn (fairness: a client
/// flooding its socket cannot starve the loop; the rest is read next turn).
pub(super) const READ_BYTES_PER_TURN_MAX: usize = 256 * 1024;
/// Size of the loop's receive buffer, shared by all its connections (uSockets' idea).
pub(super) const RECV_BUF_BYTES: usize = 64 * 1024;
/// At most one warning line per kind of refused input per loop in this interval.
const WARN_INTERVAL_NS: u64 = 10_000_000_000;
/// Readiness events taken per poll.
const EVENTS_MAX: usize = 1024;
/// Wheel size (slots); with the 10 ms default tick one revolution is 10 s.
const TIMER_SLOTS: usize = 1024;

/// Everything one loop owns.
/// (Debug is implemented by hand: the command decoder's scratch buffers are not worth printing.)
pub struct EventLoop {
    pub(super) id: LoopId,
    pub(super) poll: Poll,
    pub(super) listener: Option<mio::net::TcpListener>,
    pub(super) metrics_listener: Option<mio::net::TcpListener>,
    pub(super) accept_guard: super::accept_guard::AcceptGuard,
    pub(super) conns: super::conns::Conns,
    /// Upgraded (WebSocket) connections not yet reaped: the `connections_open` gauge.
    pub(super) websockets_open: u64,
    pub(super) local: LocalIndex,
    pub(super) owned: ChannelRegistry,
    pub(super) mesh: Mesh,
    pub(super) timers: TimerWheel<ConnId>,
    /// Throttled subscriptions and their timer wheel (`throttle.rs`).
    pub(super) throttles: super::throttle::Throttles,
    pub(super) fired: Vec<ConnId>,
    pub(super) dirty: Vec<ConnId>,
    pub(super) pending_reads: Vec<ConnId>,
    pub(super) closed: Vec<ConnId>,
    pub(super) overflowed: Vec<(
        ConnId,
        crate::pubsub::local::SeqGap,
        super::deliver::Overflow,
    )>,
    pub(super) publishes: super::publish::PublishQueue,
    /// Scratch: this loop's publishers in the run being delivered.
    pub(super) local_origins: Vec<ConnId>,
    pub(super) recv_buf: Vec<u8>,
    /// The loop's permessage-deflate contexts (made on first use).
    pub(super) deflate: super::compression::LoopDeflate,
    /// Scratch: the permessage-deflate subscribers of the run being delivered.
    pub(super) compressed_subs: Vec<ConnId>,
    /// Scratch: compressed bytes of one message for a connection's own context.
    pub(super) own_scratch: Vec<u8>,
    pub(super) commands: Option<CommandDecoder>,
    pub(super) metrics: LoopMetrics,
    pub(super) warnings: crate::log_limit::LogLimiter,
    pub(super) connect_bucket: crate::rate::TokenBucket,
    pub(super) ip_buckets: crate::hash::FxHashMap<std::net::IpAddr, crate::rate::TokenBucket>,
    pub(super) shared: Arc<Shared>,
    /// This loop's view of the configuration: refreshed from `Shared::live` at the start of a
    /// turn when a reload published a new one (one atomic load per turn otherwise).
    pub(super) config: Arc<crate::config::Config>,
    pub(super) config_generation: u64,
    pub(super) now_ns: u64,
    pub(super) next_snapshot_ns: u64,
    pub(super) shutdown: Option<super::shutdown::Drain>,
    pub(super) mesh_backlog: bool,
    pub(super) inbox_backlog: bool,
    /// Rooms with held publishes and their next ticks (`tick.rs`; empty without `--tick-for`).
    pub(super) ticks: super::tick::Ticks,
    /// Presence: members of owned channels, watchers on this loop (`presence.rs`).
    pub(super) presence: super::presence::Presence,
    /// Cluster mode's ends of the NATS bridge (`cluster.rs`); `None` without `--nats`.
    pub(super) cluster: Option<Box<super::cluster::LoopCluster>>,
}

/// This loop's share of the process-wide connection rate.
fn connect_bucket(config: &crate::config::Config, now_ns: u64) -> crate::rate::TokenBucket {
    let rate = config.connect_rate_per_s;
    let share = match rate {
        0 => 0,
        r => (r / config.loops.max(1) as u64).max(1),
    };
    crate::rate::TokenBucket::new(share, share, now_ns)
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop")
            .field("id", &self.id)
            .field("conns", &self.conns.len())
            .field("now_ns", &self.now_ns)
            .finish_non_exhaustive()
    }
}

/// What a loop hands back when it ends.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoopSummary {
    /// Connections closed during shutdown.
    pub connections_closed: u64,
    /// Deliveries made over the loop's life.
    pub messages_delivered: u64,
    /// Publishes read by this loop.
    pub messages_published: u64,
}

/// The parts a loop is built from (made by `Server::start` before any loop runs).
#[derive(Debug)]
pub struct LoopParts {
    /// Loop index.
    pub id: LoopId,
    /// Its poll (the waker is registered on it).
    pub poll: Poll,
    /// Its SO_REUSEPORT listener.
    pub listener: mio::net::TcpListener,
    /// Metrics listener (loop 0, when configured).
    pub metrics_listener: Option<mio::net::TcpListener>,
    /// Its side of the mesh.
    pub mesh: Mesh,
    /// Its ends of the NATS bridge (cluster mode).
    pub cluster: Option<crate::cluster::LoopPort>,
}

impl EventLoop {
    /// Builds a loop and registers its listeners.
    pub fn new(parts: LoopParts, shared: Arc<Shared>) -> io::Result<Self> {
        let LoopParts {
            id,
            poll,
            mut listener,
            mut metrics_listener,
            mesh,
            cluster,
        } = parts;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        if let Some(l) = metrics_listener.as_mut() {
            poll.registry()
                .register(l, METRICS_LISTENER, Interest::READABLE)?;
        }
        let now_ns = Clock::now_ns();
        let cfg = &shared.config;
        let retention = RetentionConfig {
            history_size: cfg.history_size,
            history_ttl_ns: cfg.history_ttl.as_nanos() as u64,
            last_value: cfg.last_value,
            idle_channels_max: cfg.idle_channels_max,
            history_bytes_max: cfg.history_bytes_max / cfg.loops.max(1),
        };
        let tick_ns = cfg.timer_tick.as_nanos().max(1) as u64;
        let epoch_prefix = format!("{}.{id}", shared.epoch_prefix);
        Ok(EventLoop {
            id,
            poll,
            listener: Some(listener),
            metrics_listener,
            accept_guard: super::accept_guard::AcceptGuard::new(),
            conns: super::conns::Conns::default(),
            websockets_open: 0,
            local: LocalIndex::default(),
            owned: ChannelRegistry::new(retention, epoch_prefix).with_snapshots(SnapshotConfig {
                patterns: cfg.snapshot_patterns.clone(),
                limits: SnapshotLimits {
                    keys_max: cfg.snapshot_keys_max,
                    bytes_max: cfg.snapshot_bytes_max,
                },
            }),
            mesh,
            timers: TimerWheel::new(tick_ns, TIMER_SLOTS, now_ns),
            throttles: super::throttle::Throttles::new(cfg.throttle_keys_max),
            fired: Vec::new(),
            dirty: Vec::new(),
            pending_reads: Vec::new(),
            closed: Vec::new(),
            overflowed: Vec::new(),
            publishes: super::publish::PublishQueue::new(
                cfg.publish_queue_len_max,
                cfg.publish_queue_bytes_max,
            ),
            local_origins: Vec::new(),
            recv_buf: vec![0; RECV_BUF_BYTES],
            deflate: Default::default(),
            compressed_subs: Vec::new(),
            own_scratch: Vec::new(),
            commands: Some(CommandDecoder::new()),
            metrics: LoopMetrics::new(id),
            warnings: crate::log_limit::LogLimiter::new(WARN_INTERVAL_NS),
            connect_bucket: connect_bucket(&shared.config, now_ns),
            ip_buckets: crate::hash::FxHashMap::default(),
            config: Arc::new(shared.config.clone()),
            config_generation: 0,
            shared,
            now_ns,
            next_snapshot_ns: now_ns,
            shutdown: None,
            mesh_backlog: false,
            inbox_backlog: false,
            ticks: super::tick::Ticks::default(),
            presence: super::presence::Presence::new(cluster.is_some()),
            cluster: cluster.map(super::cluster::LoopCluster::new),
        })
    }

    /// Runs turns until shutdown completes. Returns the loop's summary.
    pub fn run(mut self) -> LoopSummary {
        let mut events = Events::with_capacity(EVENTS_MAX);
        loop {
            if let Err(e) = self.poll.poll(&mut events, self.poll_timeout()) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(loop_id = self.id, error = %e, "poll failed; loop stops");
                    break;
                }
            }
            self.now_ns = Clock::now_ns();
            self.metrics.inc(crate::metrics::Counter::LoopTurns);
            self.refresh_config();
            self.handle_events(&events);
            self.turn_phases();
            if self.shutdown_complete() {
                break;
            }
        }
        self.export_snapshot();
        self.summary()
    }

    /// Takes the configuration a reload published, if any (`ServerHandle::reload`). Only the
    /// values that may change at run time differ from the start-up ones; what is derived from
    /// them here (the connect-rate bucket) is rebuilt.
    fn refresh_config(&mut self) {
        let Some((config, generation)) = self.shared.live.newer_than(self.config_generation) else {
            return;
        };
        if config.connect_rate_per_s != self.config.connect_rate_per_s {
            self.connect_bucket = connect_bucket(&config, self.now_ns);
        }
        if config.connect_rate_per_ip_per_s != self.config.connect_rate_per_ip_per_s {
            self.ip_buckets.clear();
        }
        self.config = config;
        self.config_generation = generation;
    }

    /// The phases after readiness was taken from `poll`.
    fn turn_phases(&mut self) {
        self.retry_accept_if_due();
        self.read_pending();
        self.drain_inbox();
        if self
            .ticks
            .next_due_ns()
            .is_some_and(|due| due <= self.now_ns)
        {
            self.fire_ticks();
        }
        if self
            .presence
            .next_due_ns()
            .is_some_and(|due| due <= self.now_ns)
        {
            self.flush_presence();
        }
        self.expire_timers();
        self.expire_throttles();
        self.check_shutdown();
        self.flush_dirty();
        self.reap_closed();
        if !self.dirty.is_empty() {
            // Reaping told watchers of the leaves (presence): flushed before the next poll.
            self.flush_dirty();
        }
        self.mesh_backlog = self.mesh.retry_overflow();
        self.wake_bridge();
        let woken = self.mesh.wake_peers();
        self.metrics
            .add(crate::metrics::Counter::MeshWakeups, u64::from(woken));
        if self.now_ns >= self.next_snapshot_ns {
            self.export_snapshot();
        }
    }

    fn handle_events(&mut self, events: &Events) {
        for event in events.iter() {
            match event.token() {
                LISTENER => self.accept_relay(),
                METRICS_LISTENER => self.accept_metrics(),
                WAKER => {}
                token => self.handle_conn_event(token, event),
            }
        }
    }

    fn handle_conn_event(&mut self, token: Token, event: &mio::event::Event) {
        let id = ConnId::from_token_value(token.0);
        if self.conn_mut(id).is_none() {
            return; // A late event for a connection already reaped (generation differs).
        }
        if event.is_writable() {
            self.mark_dirty(id);
        }
        if event.is_read_closed() || event.is_error() {
            // The FIN came with this event: read to the end, or it is never seen (a short read
            // would stop early, and edge-triggered epoll will not report it again).
            self.read_conn_to_end(id);
        } else if event.is_readable() {
            self.read_conn(id);
        }
    }

    /// How long `poll` may sleep: until the next timer, the next metrics snapshot, or not at
    /// all when work is left over from this turn.
    fn poll_timeout(&self) -> Option<Duration> {
        if !self.pending_reads.is_empty() || self.inbox_backlog {
            return Some(Duration::ZERO);
        }
        let mut deadline = self.next_snapshot_ns;
        if let Some(t) = self.timers.next_deadline_ns() {
            deadline = deadline.min(t);
        }
        for due in [self.ticks.next_due_ns(), self.presence.next_due_ns()] {
            deadline = deadline.min(due.unwrap_or(u64::MAX));
        }
        if let Some(t) = self.throttles.next_deadline_ns() {
            deadline = deadline.min(t);
        }
        if self.mesh_backlog {
            deadline = deadline.min(self.now_ns + 1_000_000);
        }
        if let Some(t) = self.accept_guard.retry_at_ns() {
            deadline = deadline.min(t);
        }
        let now = Clock::now_ns();
        Some(Duration::from_nanos(deadline.saturating_sub(now)))
    }

    /// The connection `id`, if it still exists (same slot and generation).
    pub(super) fn conn_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.conns.get_mut(id)
    }

    /// Logs a refused input of `kind`, rate-limited per kind (never a line per bad frame).
    pub(super) fn warn_refused(&mut self, kind: &'static str, what: &str) {
        if let Some(suppressed) = self.warnings.allow(kind, self.now_ns) {
            tracing::warn!(loop_id = self.id, kind, suppressed, "refused input: {what}");
        }
    }

    /// Notes that `id` has output to flush this turn.
    pub(super) fn mark_dirty(&mut self, id: ConnId) {
        if let Some(conn) = self.conn_mut(id) {
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(id);
            }
        }
    }

    /// Notes that `id` reached `Phase::Closed`; it is reaped at the end of the turn.
    pub(super) fn mark_closed(&mut self, id: ConnId) {
        if let Some(conn) = self.conn_mut(id) {
            if conn.phase != Phase::Closed {
                conn.phase = Phase::Closed;
                self.closed.push(id);
            }
        }
    }

    /// Sends the loop's metrics to the exporter (non-blocking; a full channel skips a beat).
    pub(super) fn export_snapshot(&mut self) {
        let interval_ns = self.config.metrics_interval.as_nanos() as u64;
        // The previous snapshot was taken at the previous deadline minus one interval.
        let window_ms =
            (self.now_ns + interval_ns).saturating_sub(self.next_snapshot_ns) / 1_000_000;
        self.next_snapshot_ns = self.now_ns + interval_ns;
        let mut top = TopChannels::default();
        self.owned.sample_publishes(|channel, messages, seq| {
            top.offer(channel, messages, seq, window_ms)
        });
        self.metrics.set_top_channels(top);
        let gauges = Gauges {
            connections_open: self.websockets_open,
            channels: self.local.channels() as u64,
            subscriptions: self.local.subscriptions() as u64,
            outbox_bytes: self
                .conns
                .iter()
                .map(|c| c.outbox.queued_bytes() as u64)
                .sum(),
            mesh_inbox_depth: self.mesh.inbox_depth() as u64,
        };
        self.metrics.set_gauges(gauges);
        let snap: LoopSnapshot = self.metrics.snapshot();
        // A full channel means the exporter is behind: keep the interval's latency samples for
        // the next snapshot (counters are cumulative, nothing is lost).
        if let Err(crossbeam_channel::TrySendError::Full(snap)) =
            self.shared.metrics_tx.try_send(snap)
        {
            self.metrics.reclaim_unsent(snap);
        }
    }

    fn summary(&self) -> LoopSummary {
        use crate::metrics::Counter;
        LoopSummary {
            connections_closed: self.shutdown.as_ref().map_or(0, |d| d.closed_total),
            messages_delivered: self.metrics.get(Counter::MessagesDelivered),
            messages_published: self.metrics.get(Counter::PublishedJson)
                + self.metrics.get(Counter::PublishedBinary),
        }
    }
}
