//! The disjoint parts an `EventLoop` is made of (issue 12): borrowing one part (say the
//! connection table) leaves the others free (the pub/sub index, the metrics, the worklists),
//! so a phase can hold a connection and record into another part without `take()`/`replace`.
//!
//! Owns: nothing of its own; each part's contents are documented on its fields.
//! May not touch: protocol state (`session/`), which lives in the connections.

use std::sync::Arc;

use crate::command::CommandDecoder;
use crate::config::Config;
use crate::conn_id::ConnId;
use crate::hash::FxHashMap;
use crate::pubsub::local::SeqGap;
use crate::pubsub::snapshot::SnapshotLimits;
use crate::pubsub::{ChannelRegistry, LocalIndex, RetentionConfig, SnapshotConfig};
use crate::rate::TokenBucket;
use crate::runtime::Shared;
use crate::session::Timeouts;

/// Sockets the loop listens on and the admission state of new connections.
#[derive(Debug)]
pub(super) struct Net {
    pub(super) poll: mio::Poll,
    /// This loop's SO_REUSEPORT relay listener (`None` once shutdown began).
    pub(super) listener: Option<mio::net::TcpListener>,
    /// The `--metrics-bind` listener (loop 0 only).
    pub(super) metrics_listener: Option<mio::net::TcpListener>,
    /// Recovery at the descriptor limit (`accept_guard.rs`).
    pub(super) accept_guard: super::accept_guard::AcceptGuard,
    /// This loop's share of `--connect-rate-per-s`.
    pub(super) connect_bucket: TokenBucket,
    /// `--connect-rate-per-ip` buckets by client address.
    pub(super) ip_buckets: FxHashMap<std::net::IpAddr, TokenBucket>,
}

/// The pub/sub state of this loop: what its connections subscribed to, the channels it owns
/// and what is held or throttled on their way out.
#[derive(Debug)]
pub(super) struct Channels {
    /// Channel → this loop's subscribers.
    pub(super) local: LocalIndex,
    /// Channels this loop owns: seq, epoch, history, last value, snapshots.
    pub(super) owned: ChannelRegistry,
    /// Publishes read this turn, numbered and fanned out as runs (`publish.rs`).
    pub(super) publishes: super::publish::PublishQueue,
    /// Throttled subscriptions and their timer wheel (`throttle.rs`).
    pub(super) throttles: super::throttle::Throttles,
    /// Rooms with held publishes and their next ticks (`tick.rs`; empty without `--tick-for`).
    pub(super) ticks: super::tick::Ticks,
    /// Members of owned channels, watchers on this loop (`presence.rs`).
    pub(super) presence: super::presence::Presence,
}

/// The turn's worklists: connections to act on before the next `poll`.
#[derive(Debug, Default)]
pub(super) struct Work {
    /// Connections with output to flush this turn (each at most once: `Conn::dirty`).
    pub(super) dirty: Vec<ConnId>,
    /// Connections that reached `Closed`, reaped at the end of the turn.
    pub(super) closed: Vec<ConnId>,
    /// Connections whose read budget ran out; read next turn without sleeping.
    pub(super) pending_reads: Vec<ConnId>,
    /// Subscribers whose outbox refused a delivery, settled after the fan-out.
    pub(super) overflowed: Vec<(ConnId, SeqGap, super::deliver::Overflow)>,
    /// Timer wheel entries that fired this turn.
    pub(super) fired: Vec<ConnId>,
    /// The mesh inbox was not drained within its budget: poll without sleeping.
    pub(super) mesh_backlog: bool,
    /// The cluster inbox was not drained within its budget: poll without sleeping.
    pub(super) inbox_backlog: bool,
}

/// Buffers reused across turns (never per connection).
#[derive(Debug)]
pub(super) struct Scratch {
    /// The receive buffer shared by all connections (uSockets' idea).
    pub(super) recv_buf: Vec<u8>,
    /// A fragmented message, copied out of the session's decoder for the loop to act on
    /// (single-frame messages are read in place from `recv_buf`).
    pub(super) assembled: Vec<u8>,
    /// This loop's publishers in the run being delivered.
    pub(super) local_origins: Vec<ConnId>,
    /// The permessage-deflate subscribers of the run being delivered.
    pub(super) compressed_subs: Vec<ConnId>,
    /// Compressed bytes of one message for a connection's own context.
    pub(super) own_scratch: Vec<u8>,
    /// The JSON command decoder and its tape, lent to a session to read one request (taken
    /// while the request runs).
    pub(super) commands: Option<CommandDecoder>,
    /// The loop's permessage-deflate compressor (made on first use).
    pub(super) deflate: super::compression::LoopDeflate,
    /// The shared inflater and buffer lent to sessions to inflate compressed messages.
    pub(super) inflate: crate::session::LoopInflate,
}

/// What the loop runs under: the process-wide state, its view of the configuration, and
/// where it stands in its own life (metrics export, shutdown).
#[derive(Debug)]
pub(super) struct LoopEnv {
    pub(super) shared: Arc<Shared>,
    /// This loop's view of the configuration: refreshed from `Shared::live` at the start of a
    /// turn when a reload published a new one (one atomic load per turn otherwise).
    pub(super) config: Arc<Config>,
    pub(super) config_generation: u64,
    /// The sessions' timeouts, from `config`.
    pub(super) timeouts: Timeouts,
    /// At most one warning line per kind of refused input per interval.
    pub(super) warnings: crate::log_limit::LogLimiter,
    /// When the next metrics snapshot is due.
    pub(super) next_snapshot_ns: u64,
    /// The graceful shutdown, once begun.
    pub(super) shutdown: Option<super::shutdown::Drain>,
}

impl Net {
    pub(super) fn new(
        poll: mio::Poll,
        listeners: (mio::net::TcpListener, Option<mio::net::TcpListener>),
        config: &Config,
        now_ns: u64,
    ) -> Self {
        Net {
            poll,
            listener: Some(listeners.0),
            metrics_listener: listeners.1,
            accept_guard: super::accept_guard::AcceptGuard::new(),
            connect_bucket: connect_bucket(config, now_ns),
            ip_buckets: FxHashMap::default(),
        }
    }
}

/// This loop's share of the process-wide connection rate.
pub(super) fn connect_bucket(config: &Config, now_ns: u64) -> TokenBucket {
    let share = match config.connect_rate_per_s {
        0 => 0,
        r => (r / config.loops.max(1) as u64).max(1),
    };
    TokenBucket::new(share, share, now_ns)
}

impl Channels {
    /// The pub/sub state of loop `id` (its epochs are prefixed with `epoch_prefix.id`);
    /// `cluster`: presence also follows the other relays (`--nats`).
    pub(super) fn new(cfg: &Config, epoch_prefix: String, cluster: bool) -> Self {
        let retention = RetentionConfig {
            history_size: cfg.history_size,
            history_ttl_ns: cfg.history_ttl.as_nanos() as u64,
            last_value: cfg.last_value,
            idle_channels_max: cfg.idle_channels_max,
            history_bytes_max: cfg.history_bytes_max / cfg.loops.max(1),
        };
        let snapshots = SnapshotConfig {
            patterns: cfg.snapshot_patterns.clone(),
            limits: SnapshotLimits {
                keys_max: cfg.snapshot_keys_max,
                bytes_max: cfg.snapshot_bytes_max,
            },
        };
        Channels {
            local: LocalIndex::default(),
            owned: ChannelRegistry::new(retention, epoch_prefix).with_snapshots(snapshots),
            publishes: super::publish::PublishQueue::new(
                cfg.publish_queue_len_max,
                cfg.publish_queue_bytes_max,
            ),
            throttles: super::throttle::Throttles::new(cfg.throttle_keys_max),
            ticks: super::tick::Ticks::default(),
            presence: super::presence::Presence::new(cluster),
        }
    }
}

impl Scratch {
    pub(super) fn new(recv_buf_bytes: usize) -> Self {
        Scratch {
            recv_buf: vec![0; recv_buf_bytes],
            assembled: Vec::new(),
            local_origins: Vec::new(),
            compressed_subs: Vec::new(),
            own_scratch: Vec::new(),
            commands: Some(CommandDecoder::new()),
            deflate: Default::default(),
            inflate: Default::default(),
        }
    }
}

impl LoopEnv {
    pub(super) fn new(shared: Arc<Shared>, warn_interval_ns: u64, now_ns: u64) -> Self {
        LoopEnv {
            config: Arc::new(shared.config.clone()),
            config_generation: 0,
            timeouts: super::liveness::timeouts(&shared.config),
            warnings: crate::log_limit::LogLimiter::new(warn_interval_ns),
            next_snapshot_ns: now_ns,
            shutdown: None,
            shared,
        }
    }
}
