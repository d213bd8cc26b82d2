//! Cluster mode on the loop (`--nats`; docs/CLUSTER.md): the hooks through which the loop
//! hands publishes to the NATS bridge and takes numbered messages, heads, recovery ranges and
//! publish outcomes back. Present only when cluster mode is on: every hook is one
//! `if let Some(..) = self.cluster` decided at start-up; without `--nats` none of this runs.
//!
//! In cluster mode the stream numbers the channel, not the owner loop: the owner's registry
//! becomes a cache of the stream (seq, epoch, ring, last value) fed in stream order by the
//! bridge, and everything downstream of it (interest, fan-out to loops, deliveries, gap
//! notices, the subscribe seam) is the single-node code unchanged.
//!
//! Owns: the subscribers waiting for a channel's head (`waiting`), the recoveries waiting
//! for a range from the stream (`fetches`), the wake of the bridge (once per turn).

use std::sync::Arc;

use bytes::Bytes;

use crate::cluster::stats::Stat;
use crate::cluster::{BridgeCmd, ClusterMsg, LoopPort, PublishCmd};
use crate::conn_id::{ConnId, ConnRef, LoopId};
use crate::hash::FxHashMap;
use crate::proto::frame::PreparedFrame;
use crate::pubsub::{Since, SubscribeOutcome};
use crate::runtime::event_loop::EventLoop;
use crate::runtime::mesh::LoopMsg;
use crate::session::Reply;

/// A subscribe the owner answers once the stream has spoken.
#[derive(Debug, Clone)]
pub(super) struct Waiter {
    pub(super) origin: ConnRef,
    pub(super) since: Option<(u64, Option<Arc<str>>)>,
    /// The subscriber wants a keyed snapshot as a binary frame.
    pub(super) binary: bool,
}

/// A recovery waiting for its range from the stream.
#[derive(Debug)]
struct Fetch {
    channel: Arc<str>,
    waiter: Waiter,
    upto: u64,
}

/// One loop's cluster state.
#[derive(Debug)]
pub(super) struct LoopCluster {
    pub(super) port: LoopPort,
    pub(super) waiting: FxHashMap<Arc<str>, Vec<Waiter>>,
    /// Channels whose `Watch` did not fit the command queue: sent again next turn.
    watch_retry: Vec<Arc<str>>,
    fetches: FxHashMap<u64, Fetch>,
    next_ticket: u64,
    wake: bool,
    /// Presence across relays (`cluster_presence.rs`).
    pub(super) presence: super::cluster_presence::ClusterPresence,
    /// Keyed snapshots read from the key store (`cluster_snapshot.rs`).
    pub(super) snapshots: super::cluster_snapshot::ClusterSnapshots,
}

impl LoopCluster {
    pub(super) fn new(port: LoopPort) -> Box<Self> {
        Box::new(LoopCluster {
            port,
            waiting: FxHashMap::default(),
            watch_retry: Vec::new(),
            fetches: FxHashMap::default(),
            next_ticket: 0,
            wake: false,
            presence: Default::default(),
            snapshots: Default::default(),
        })
    }

    /// Wakes the bridge at the end of the turn.
    pub(super) fn wake_bridge_later(&mut self) {
        self.wake = true;
    }

    pub(super) fn send(&mut self, cmd: BridgeCmd) -> bool {
        self.wake = true;
        self.port.send(cmd)
    }
}

impl EventLoop {
    /// This relay's node name (cluster mode): the prefix of connection ids.
    pub(super) fn cluster_node(&self) -> Option<Arc<str>> {
        self.cluster.as_deref().map(|c| c.port.node.clone())
    }

    /// Hands a run of publishes to the bridge, one command each (their order is kept: one
    /// queue per loop, FIFO). A full queue refuses the publish with `unavailable`.
    pub(super) fn cluster_publish(&mut self, items: Vec<PublishCmd>) {
        let Some(cluster) = self.cluster.as_deref_mut() else {
            return;
        };
        let mut refused = Vec::new();
        for cmd in items {
            let (conn, ack) = (cmd.origin.conn, cmd.ack.clone());
            if !cluster.send(BridgeCmd::Publish(cmd)) {
                cluster.port.stats.inc(Stat::FailQueueFull);
                refused.push((conn, ack));
            }
        }
        for (conn, ack) in refused {
            self.refuse_unavailable(conn, ack.as_deref(), "the relay is overloaded");
        }
    }

    /// `{"type":"error","code":"unavailable",...}` (with the publish's `id`): the publish
    /// was not sequenced, or its outcome is unknown; the client may retry.
    fn refuse_unavailable(&mut self, conn: ConnId, ack: Option<&[u8]>, reason: &str) {
        self.metrics.command_error("unavailable");
        self.reply(conn, Reply::Unavailable { reason, ack });
    }

    /// The owner's side of a subscribe in cluster mode: answered from the registry when the
    /// channel is live here, else once its head is read (the bridge subscribes first).
    pub(super) fn cluster_subscribe(
        &mut self,
        channel: Arc<str>,
        origin: ConnRef,
        since: Option<(u64, Option<Arc<str>>)>,
        binary: bool,
    ) {
        let waiter = Waiter {
            origin,
            since,
            binary,
        };
        if self.channels.owned.has(&channel) {
            return self.cluster_answer(&channel, waiter);
        }
        self.snapshot_watch_sent(&channel);
        let me = self.id;
        let Some(cluster) = self.cluster.as_deref_mut() else {
            return;
        };
        let waiters = cluster.waiting.entry(channel.clone()).or_default();
        waiters.push(waiter);
        if waiters.len() == 1 {
            let watch = BridgeCmd::Watch {
                channel: channel.clone(),
                owner: me,
            };
            if !cluster.send(watch) {
                cluster.watch_retry.push(channel);
            }
        }
    }

    /// Answers one subscribe of a live channel: from the ring, or after a fetch from the
    /// stream when the ring does not reach back to `since`.
    pub(super) fn cluster_answer(&mut self, channel: &Arc<str>, waiter: Waiter) {
        let Some((epoch, top, oldest)) = self.channels.owned.cluster_view(channel) else {
            let Waiter {
                origin,
                since,
                binary,
            } = waiter;
            return self.cluster_subscribe(channel.clone(), origin, since, binary);
        };
        let Some(waiter) = self.wait_for_snapshot(channel, waiter) else {
            return; // Answered once the keyed snapshot is read (`cluster_snapshot.rs`).
        };
        let Some((after, want_epoch)) = waiter.since.clone() else {
            return self.cluster_reply(channel, waiter, None, Vec::new());
        };
        let same_epoch = want_epoch.as_deref().is_none_or(|e| *e == *epoch);
        let ring_reaches = after >= top || oldest.is_some_and(|o| o <= after + 1);
        let limit = self.env.config.history_size.max(1) as u64;
        let stats = self.cluster.as_deref().map(|c| c.port.stats.clone());
        if !same_epoch || after > top || top - after > limit {
            stats.inspect(|s| s.inc(Stat::RecoveriesFailed));
            return self.cluster_reply(channel, waiter, Some(false), Vec::new());
        }
        if ring_reaches {
            stats.inspect(|s| s.inc(Stat::RecoveriesRing));
            return self.cluster_reply(channel, waiter, Some(true), Vec::new());
        }
        let upto = oldest.map_or(top, |o| o - 1);
        let owner = self.id;
        let Some(cluster) = self.cluster.as_deref_mut() else {
            return;
        };
        cluster.next_ticket += 1;
        let ticket = cluster.next_ticket;
        let cmd = BridgeCmd::Fetch {
            channel: channel.clone(),
            owner,
            ticket,
            after,
            upto,
            epoch,
        };
        if cluster.send(cmd) {
            let channel = channel.clone();
            cluster.fetches.insert(
                ticket,
                Fetch {
                    channel,
                    waiter,
                    upto,
                },
            );
        } else {
            cluster.port.stats.inc(Stat::RecoveriesFailed);
            self.cluster_reply(channel, waiter, Some(false), Vec::new());
        }
    }

    /// Registers the subscriber's loop with the registry and sends `subscribed` (plus the
    /// replay). `recovered`: `None` plain subscribe; `Some(true)`: `fetched` then the ring
    /// after it; `Some(false)`: not recovered (the last value, if kept, is replayed).
    fn cluster_reply(
        &mut self,
        channel: &Arc<str>,
        waiter: Waiter,
        recovered: Option<bool>,
        fetched: Vec<Bytes>,
    ) {
        let (origin, binary) = (waiter.origin, waiter.binary);
        let outcome = match (recovered, &waiter.since) {
            (Some(true), Some((after, epoch))) => {
                let from = *after + fetched.len() as u64;
                let since = Since {
                    seq: from,
                    epoch: epoch.as_deref(),
                };
                let mut o = self.channels.owned.subscribe(
                    channel,
                    origin.loop_id,
                    Some(since),
                    self.now_ns,
                    binary,
                );
                if o.recovered == Some(true) {
                    let mut replay: Vec<PreparedFrame> =
                        fetched.into_iter().map(PreparedFrame::from_wire).collect();
                    replay.append(&mut o.replay);
                    o.replay = replay;
                } else {
                    o = self.not_recovered(channel, origin.loop_id, binary);
                }
                o
            }
            (Some(false), _) => self.not_recovered(channel, origin.loop_id, binary),
            _ => self
                .channels
                .owned
                .subscribe(channel, origin.loop_id, None, self.now_ns, binary),
        };
        self.send_subscribed(channel, origin, outcome);
    }

    fn not_recovered(&mut self, channel: &str, from: LoopId, binary: bool) -> SubscribeOutcome {
        let mut o = self
            .channels
            .owned
            .subscribe(channel, from, None, self.now_ns, binary);
        o.recovered = Some(false);
        o
    }

    fn send_subscribed(&mut self, channel: &Arc<str>, origin: ConnRef, outcome: SubscribeOutcome) {
        if origin.loop_id == self.id {
            return self.on_subscribed(origin.conn, channel, outcome);
        }
        let reply = LoopMsg::Subscribed {
            channel: channel.clone(),
            conn: origin.conn,
            outcome,
        };
        self.mesh_send(origin.loop_id, reply);
    }

    /// After an uninterest at the owner: with no interested loop left, the channel's state
    /// is dropped and the bridge ends its live subscription.
    pub(super) fn cluster_uninterest(&mut self, channel: &str) {
        if self.cluster.is_none() || !self.channels.owned.cluster_drop_if_unwatched(channel) {
            return;
        }
        if let Some(cluster) = self.cluster.as_deref_mut() {
            let channel: Arc<str> = Arc::from(channel);
            // A full queue leaves the subscription until the next Watch/Unwatch: harmless
            // (messages for a channel with no state are ignored here).
            cluster.send(BridgeCmd::Unwatch {
                channel: channel.clone(),
            });
            self.snapshot_state_dropped(&channel);
        }
    }

    /// Handles what the bridge sent (bounded per turn). True when some is left for the next
    /// turn.
    pub(super) fn drain_cluster(&mut self) -> bool {
        let Some(cluster) = self.cluster.as_deref_mut() else {
            return false;
        };
        for channel in std::mem::take(&mut cluster.watch_retry) {
            let owner = self.id;
            let watch = BridgeCmd::Watch {
                channel: channel.clone(),
                owner,
            };
            if !cluster.send(watch) {
                cluster.watch_retry.push(channel);
            }
        }
        self.retry_presence_cmds();
        self.retry_snapshot_loads();
        // `--nats-loop-msgs-per-turn`: the rest next turn, without sleeping.
        let per_turn_max = self.env.config.cluster.loop_msgs_per_turn_max;
        let mut handled = 0;
        while handled < per_turn_max {
            let Some(msg) = self
                .cluster
                .as_deref()
                .and_then(|c| c.port.rx.try_recv().ok())
            else {
                break;
            };
            handled += 1;
            self.on_cluster_msg(msg);
        }
        handled == per_turn_max
    }

    /// Wakes the bridge once per turn if commands were queued.
    pub(super) fn wake_bridge(&mut self) {
        if let Some(cluster) = self.cluster.as_deref_mut() {
            if std::mem::take(&mut cluster.wake) {
                (cluster.port.wake)();
            }
        }
    }

    fn on_cluster_msg(&mut self, msg: ClusterMsg) {
        match msg {
            ClusterMsg::Head {
                channel,
                epoch,
                seq,
                frames,
            } => self.on_head(channel, epoch, seq, frames),
            ClusterMsg::Live {
                batch,
                epoch,
                from,
                key,
            } => self.on_live(batch, epoch, from, key),
            ClusterMsg::Snapshot {
                channel,
                epoch,
                seq,
                entries,
            } => self.on_cluster_snapshot(channel, epoch, seq, entries),
            ClusterMsg::Fetched {
                channel,
                ticket,
                frames,
            } => self.on_fetched(channel, ticket, frames),
            ClusterMsg::Acked { channel, acks } => {
                for ack in acks {
                    self.reply_ack(ack.conn, &channel, &ack.id, ack.seq, ack.binary);
                }
            }
            ClusterMsg::Failed { conn, ack, reason } => {
                self.refuse_unavailable(conn, ack.as_deref(), reason)
            }
            ClusterMsg::PresenceRemote {
                channel,
                gen,
                changes,
            } => self.on_presence_remote(channel, gen, changes),
            ClusterMsg::PresenceReset {
                channel,
                gen,
                members,
                synced,
            } => self.on_presence_reset(channel, gen, members, synced),
        }
    }

    fn on_head(&mut self, channel: Arc<str>, epoch: Arc<str>, seq: u64, frames: Vec<Bytes>) {
        // Held room messages are older than this head: delivered first.
        self.tick_live_room_if_held(&channel);
        let frames = frames.into_iter().map(PreparedFrame::from_wire).collect();
        let reset = self
            .channels
            .owned
            .cluster_adopt(&channel, &epoch, seq, frames, self.now_ns);
        if reset {
            let interest = self.channels.owned.cluster_interest(&channel);
            self.announce_epoch(&channel, &epoch, seq, interest, true);
        }
        let waiters = self
            .cluster
            .as_deref_mut()
            .and_then(|c| c.waiting.remove(&channel))
            .unwrap_or_default();
        for waiter in waiters {
            self.cluster_answer(&channel, waiter);
        }
        self.try_install_snapshot(&channel);
    }

    /// Numbered live messages: the registry takes the stream's numbering, retains them, and
    /// they are fanned out exactly as a run numbered on one node (`publish.rs`).
    fn on_live(
        &mut self,
        batch: Arc<crate::runtime::Batch>,
        epoch: Arc<str>,
        from: Option<Arc<str>>,
        key: Option<Arc<str>>,
    ) {
        if let Some(period) = self.env.config.tick_for(&batch.channel) {
            // A room (`--tick-for`): held until its tick (`cluster_tick.rs`).
            return self.hold_live_for_tick(batch, epoch, from, period);
        }
        let count = batch.frames.len() as u64;
        let Some((interest, changed, reset)) =
            self.channels
                .owned
                .cluster_accept(&batch.channel, &epoch, batch.first_seq, count)
        else {
            return; // Not watched here any more.
        };
        if changed {
            // Also the first epoch of a channel that was empty when its subscribers came:
            // they learn the epoch to recover in before its first message.
            let before = batch.first_seq.saturating_sub(1);
            self.announce_epoch(&batch.channel, &epoch, before, interest, reset);
        }
        if let Some(key) = key {
            // A `--snapshot-for` channel: its cache follows the stream (`cluster_snapshot.rs`).
            self.snapshot_live(&batch, &key);
        }
        if self.channels.owned.retains() {
            let frames = (0..batch.frames.len()).map(|i| batch.prepared(i));
            let evicted =
                self.channels
                    .owned
                    .retain(&batch.channel, batch.first_seq, frames, self.now_ns);
            self.metrics
                .add(crate::metrics::Counter::HistoryEvicted, evicted);
        }
        let me = 1u64 << self.id;
        let mut others = interest & !me;
        while others != 0 {
            let to = others.trailing_zeros() as LoopId;
            others &= others - 1;
            let batch = batch.clone();
            self.mesh_send(to, LoopMsg::Deliver { batch });
        }
        if interest & me != 0 {
            self.deliver_batch(&batch);
        }
    }

    /// An epoch change on a live channel (its retained history was lost: expiry, purge,
    /// stream re-created): every subscriber, on every interested loop, gets a new
    /// `subscribed` with the new epoch and `recovered:false` before the first message of the
    /// new numbering (the mesh is FIFO: the notice travels ahead of that message's batch).
    pub(super) fn announce_epoch(
        &mut self,
        channel: &Arc<str>,
        epoch: &Arc<str>,
        seq: u64,
        interest: u64,
        reset: bool,
    ) {
        if reset {
            if let Some(c) = self.cluster.as_deref() {
                c.port.stats.inc(Stat::EpochResets);
            }
            tracing::info!(%channel, %epoch, seq, "cluster: channel epoch changed");
        }
        let me = 1u64 << self.id;
        let mut others = interest & !me;
        while others != 0 {
            let to = others.trailing_zeros() as LoopId;
            others &= others - 1;
            let msg = LoopMsg::EpochReset {
                channel: channel.clone(),
                epoch: epoch.clone(),
                seq,
            };
            self.mesh_send(to, msg);
        }
        if interest & me != 0 {
            self.on_epoch_reset(channel, epoch, seq);
        }
    }

    /// This loop's part of an epoch change: the subscribers' position and the notice.
    pub(super) fn on_epoch_reset(&mut self, channel: &str, epoch: &Arc<str>, seq: u64) {
        self.channels.local.reset_seq(channel, seq);
        let ids: Vec<ConnId> = self
            .channels
            .local
            .subscribers(channel)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        for id in ids {
            let Some(sub) = self
                .conn_mut(id)
                .and_then(|c| c.session.subscriptions.get_mut(channel))
            else {
                continue;
            };
            sub.epoch = epoch.clone();
            sub.gap = None;
            let reset = Reply::EpochReset {
                channel,
                seq,
                epoch,
            };
            self.reply(id, reset);
        }
    }

    fn on_fetched(&mut self, channel: Arc<str>, ticket: u64, frames: Option<Vec<Bytes>>) {
        let Some(fetch) = self
            .cluster
            .as_deref_mut()
            .and_then(|c| c.fetches.remove(&ticket))
        else {
            return;
        };
        debug_assert_eq!(fetch.channel, channel);
        let stats = self.cluster.as_deref().map(|c| c.port.stats.clone());
        if !self.channels.owned.has(&channel) {
            // Dropped meanwhile: start over (watch, head, answer).
            let Waiter {
                origin,
                since,
                binary,
            } = fetch.waiter;
            return self.cluster_subscribe(channel, origin, since, binary);
        }
        let after = fetch.waiter.since.as_ref().map_or(0, |s| s.0);
        match frames {
            Some(frames) if frames.len() as u64 == fetch.upto - after => {
                stats.inspect(|s| s.inc(Stat::RecoveriesStream));
                self.cluster_reply(&channel, fetch.waiter, Some(true), frames)
            }
            _ => {
                stats.inspect(|s| s.inc(Stat::RecoveriesFailed));
                self.cluster_reply(&channel, fetch.waiter, Some(false), Vec::new())
            }
        }
    }
}

/// What `start_bridge` hands to `Server::start`: the bridge (stopped when dropped), one port
/// per loop, the shared metrics.
pub(super) type StartedBridge = (
    Option<Box<dyn std::fmt::Debug + Send>>,
    Vec<LoopPort>,
    Option<Arc<crate::cluster::ClusterStats>>,
);

/// Starts the NATS bridge when cluster mode is on (connects, creates or checks the streams;
/// an unreachable NATS is an error unless `--nats-wait`). Without `--nats`: nothing.
pub(super) fn start_bridge(
    config: &crate::config::Config,
    wakers: &[Arc<mio::Waker>],
) -> std::io::Result<StartedBridge> {
    if !config.cluster.enabled() {
        return Ok((None, Vec::new(), None));
    }
    #[cfg(feature = "cluster")]
    {
        let started = crate::nats_bridge::start(config, wakers)?;
        let handle: Box<dyn std::fmt::Debug + Send> = Box::new(started.handle);
        Ok((Some(handle), started.ports, Some(started.stats)))
    }
    #[cfg(not(feature = "cluster"))]
    {
        let _ = wakers;
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "--nats needs a build with the `cluster` feature",
        ))
    }
}
