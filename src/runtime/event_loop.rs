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
use crate::conn_id::{ConnId, LoopId};
use crate::metrics::{Gauges, LoopMetrics, LoopSnapshot, TopChannels};
use crate::runtime::conn::Conn;
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
/// Connection slots (and timer entries) each loop reserves at start-up, capped by
/// `--max-connections`: about 11.5 MiB of address space for the slab and 2 MiB for the wheel,
/// resident only as connections arrive (see `Conns::with_capacity`). Past it the tables grow
/// by doubling; at that size glibc moves them with `mremap` instead of copying.
const CONNS_RESERVED_MAX: usize = 65_536;

/// Everything one loop owns, in disjoint parts (`parts.rs`): at most 12 fields (issue 12).
/// (Debug is implemented by hand: the command decoder's scratch buffers are not worth printing.)
pub struct EventLoop {
    pub(super) id: LoopId,
    /// The loop's clock for this turn: one `now` per turn, read after `poll` returns.
    pub(super) now_ns: u64,
    pub(super) metrics: LoopMetrics,
    /// The connection table (generation-checked).
    pub(super) conns: super::conns::Conns,
    /// The connections' deadlines (one entry per connection, at its session's next deadline).
    pub(super) timers: TimerWheel<ConnId>,
    pub(super) net: super::parts::Net,
    pub(super) channels: super::parts::Channels,
    /// Queues to and from the other loops.
    pub(super) mesh: Mesh,
    /// Cluster mode's ends of the NATS bridge (`cluster.rs`); `None` without `--nats`.
    pub(super) cluster: Option<Box<super::cluster::LoopCluster>>,
    pub(super) work: super::parts::Work,
    pub(super) scratch: super::parts::Scratch,
    pub(super) env: super::parts::LoopEnv,
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
    /// Latency sets the metrics exporter emptied and sends back for reuse.
    pub metrics_recycle: Option<crossbeam_channel::Receiver<crate::metrics::LatencySet>>,
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
            metrics_recycle,
        } = parts;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        if let Some(l) = metrics_listener.as_mut() {
            poll.registry()
                .register(l, METRICS_LISTENER, Interest::READABLE)?;
        }
        let now_ns = Clock::now_ns();
        let cfg = &shared.config;
        let tick_ns = cfg.timer_tick.as_nanos().max(1) as u64;
        let epoch_prefix = format!("{}.{id}", shared.epoch_prefix);
        let conns_reserved = cfg.connections_max.min(CONNS_RESERVED_MAX);
        Ok(EventLoop {
            id,
            now_ns,
            metrics: match metrics_recycle {
                Some(rx) => LoopMetrics::new(id).with_recycling(rx),
                None => LoopMetrics::new(id),
            },
            conns: super::conns::Conns::with_capacity(conns_reserved),
            timers: TimerWheel::new(tick_ns, TIMER_SLOTS, now_ns).with_capacity(conns_reserved),
            net: super::parts::Net::new(poll, (listener, metrics_listener), cfg, now_ns),
            channels: super::parts::Channels::new(cfg, epoch_prefix, cluster.is_some()),
            mesh,
            cluster: cluster.map(super::cluster::LoopCluster::new),
            work: super::parts::Work::default(),
            scratch: super::parts::Scratch::new(RECV_BUF_BYTES),
            env: super::parts::LoopEnv::new(shared.clone(), WARN_INTERVAL_NS, now_ns),
        })
    }

    /// Runs turns until shutdown completes. Returns the loop's summary.
    pub fn run(mut self) -> LoopSummary {
        let mut events = Events::with_capacity(EVENTS_MAX);
        loop {
            if let Err(e) = self.net.poll.poll(&mut events, self.poll_timeout()) {
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
        let Some((config, generation)) =
            self.env.shared.live.newer_than(self.env.config_generation)
        else {
            return;
        };
        if config.connect_rate_per_s != self.env.config.connect_rate_per_s {
            self.net.connect_bucket = super::parts::connect_bucket(&config, self.now_ns);
        }
        if config.connect_rate_per_ip_per_s != self.env.config.connect_rate_per_ip_per_s {
            self.net.ip_buckets.clear();
        }
        self.env.timeouts = super::liveness::timeouts(&config);
        self.env.config = config;
        self.env.config_generation = generation;
    }

    /// The phases after readiness was taken from `poll`.
    fn turn_phases(&mut self) {
        self.retry_accept_if_due();
        self.read_pending();
        self.drain_inbox();
        if self
            .channels
            .ticks
            .next_due_ns()
            .is_some_and(|due| due <= self.now_ns)
        {
            self.fire_ticks();
        }
        if self
            .channels
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
        if !self.work.dirty.is_empty() {
            // Reaping told watchers of the leaves (presence): flushed before the next poll.
            self.flush_dirty();
        }
        self.work.mesh_backlog = self.mesh.retry_overflow();
        self.wake_bridge();
        let woken = self.mesh.wake_peers();
        self.metrics
            .add(crate::metrics::Counter::MeshWakeups, u64::from(woken));
        if self.now_ns >= self.env.next_snapshot_ns {
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
        if !self.work.pending_reads.is_empty() || self.work.inbox_backlog {
            return Some(Duration::ZERO);
        }
        let mut deadline = self.env.next_snapshot_ns;
        if let Some(t) = self.timers.next_deadline_ns() {
            deadline = deadline.min(t);
        }
        for due in [
            self.channels.ticks.next_due_ns(),
            self.channels.presence.next_due_ns(),
        ] {
            deadline = deadline.min(due.unwrap_or(u64::MAX));
        }
        if let Some(t) = self.channels.throttles.next_deadline_ns() {
            deadline = deadline.min(t);
        }
        if self.work.mesh_backlog {
            deadline = deadline.min(self.now_ns + 1_000_000);
        }
        if let Some(t) = self.net.accept_guard.retry_at_ns() {
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
        if let Some(suppressed) = self.env.warnings.allow(kind, self.now_ns) {
            tracing::warn!(loop_id = self.id, kind, suppressed, "refused input: {what}");
        }
    }

    /// Notes that `id` has output to flush this turn.
    pub(super) fn mark_dirty(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.get_mut(id) {
            conn.mark_dirty(&mut self.work.dirty);
        }
    }

    /// Notes that `id` reached `Phase::Closed`; it is reaped at the end of the turn.
    pub(super) fn mark_closed(&mut self, id: ConnId) {
        if let Some(conn) = self.conn_mut(id) {
            if conn.session.mark_closed() {
                self.work.closed.push(id);
            }
        }
    }

    /// Sends the loop's metrics to the exporter (non-blocking; a full channel skips a beat).
    pub(super) fn export_snapshot(&mut self) {
        let interval_ns = self.env.config.metrics_interval.as_nanos() as u64;
        // The previous snapshot was taken at the previous deadline minus one interval.
        let window_ms =
            (self.now_ns + interval_ns).saturating_sub(self.env.next_snapshot_ns) / 1_000_000;
        self.env.next_snapshot_ns = self.now_ns + interval_ns;
        let mut top = TopChannels::default();
        self.channels
            .owned
            .sample_publishes(|channel, messages, seq| {
                top.offer(channel, messages, seq, window_ms)
            });
        self.metrics.set_top_channels(top);
        let gauges = Gauges {
            connections_open: self.conns.websockets_open(),
            channels: self.channels.local.channels() as u64,
            subscriptions: self.channels.local.subscriptions() as u64,
            outbox_bytes: self
                .conns
                .iter()
                .map(|c| c.session.outbox.queued_bytes() as u64)
                .sum(),
            mesh_inbox_depth: self.mesh.inbox_depth() as u64,
        };
        self.metrics.set_gauges(gauges);
        let snap: LoopSnapshot = self.metrics.snapshot();
        // A full channel means the exporter is behind: keep the interval's latency samples for
        // the next snapshot (counters are cumulative, nothing is lost).
        if let Err(crossbeam_channel::TrySendError::Full(snap)) =
            self.env.shared.metrics_tx.try_send(snap)
        {
            self.metrics.reclaim_unsent(snap);
        }
    }

    fn summary(&self) -> LoopSummary {
        use crate::metrics::Counter;
        LoopSummary {
            connections_closed: self.env.shutdown.as_ref().map_or(0, |d| d.closed_total),
            messages_delivered: self.metrics.get(Counter::MessagesDelivered),
            messages_published: self.metrics.get(Counter::PublishedJson)
                + self.metrics.get(Counter::PublishedBinary),
        }
    }
}
