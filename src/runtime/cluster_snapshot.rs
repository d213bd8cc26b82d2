//! Keyed snapshots in cluster mode on the owner loop (`--snapshot-for` with `--nats`;
//! docs/CLUSTER.md, "Keyed snapshots"). The owner keeps the single-node cache
//! (`pubsub/snapshot.rs`, in the channel's registry state), filled from the key store
//! (`ClusterMsg::Snapshot`, read by the bridge at the channel's position) and then folded
//! forward from the live stream in stream order, so that later subscribers on this relay are
//! answered locally, exactly as on one node.
//!
//! Owns: snapshots read but not yet at the registry's position (`pending`: installed when the
//! registry reaches their seq, dropped and read again if it went past), the channels whose
//! read was asked (`requested`: one at a time), and the subscribers parked until a snapshot
//! is installed (in `LoopCluster::waiting`). A seq jump or an epoch change drops the cache
//! (the registry does); the next subscriber asks for a new read.

use std::sync::Arc;

use crate::cluster::envelope::{frame_body, keyed_parts};
use crate::cluster::{BridgeCmd, SnapshotEntry};
use crate::hash::{FxBuild, FxHashMap};
use crate::metrics::Counter;
use crate::pubsub::snapshot::{Evicted, Snapshot, SnapshotLimits, Update};
use crate::runtime::cluster::{LoopCluster, Waiter};
use crate::runtime::event_loop::EventLoop;
use crate::runtime::Batch;

/// A snapshot read at (`epoch`, `seq`), waiting for the registry to get there.
#[derive(Debug)]
struct Pending {
    epoch: Arc<str>,
    seq: u64,
    snapshot: Box<Snapshot>,
    /// The registry's epoch when it arrived: while the registry is still in it, the
    /// snapshot's (newer) epoch may come; any other epoch means it was passed.
    seen_epoch: Arc<str>,
}

/// One loop's keyed-snapshot reads.
#[derive(Debug, Default)]
pub(super) struct ClusterSnapshots {
    pending: FxHashMap<Arc<str>, Pending>,
    requested: std::collections::HashSet<Arc<str>, FxBuild>,
    /// Reads that did not fit the command queue: asked again next turn.
    retry: Vec<Arc<str>>,
}

impl EventLoop {
    /// True when `channel` keeps a keyed snapshot in cluster mode.
    fn cluster_keyed(&self, channel: &str) -> bool {
        self.cluster.is_some() && self.env.config.keyed_in_cluster(channel)
    }

    /// A `Watch` is on its way for `channel`: its bridge reads the snapshot after the head.
    pub(super) fn snapshot_watch_sent(&mut self, channel: &Arc<str>) {
        if !self.cluster_keyed(channel) {
            return;
        }
        if let Some(c) = self.cluster.as_deref_mut() {
            c.snapshots.requested.insert(channel.clone());
        }
    }

    /// Parks a subscriber of a keyed channel whose cache is not installed (and asks for a
    /// read unless one is on its way); gives it back otherwise.
    pub(super) fn wait_for_snapshot(
        &mut self,
        channel: &Arc<str>,
        waiter: Waiter,
    ) -> Option<Waiter> {
        if !self.cluster_keyed(channel) || self.channels.owned.cluster_has_snapshot(channel) {
            return Some(waiter);
        }
        let c = self.cluster.as_deref_mut()?;
        c.waiting.entry(channel.clone()).or_default().push(waiter);
        if !c.snapshots.pending.contains_key(channel) {
            request_load(c, channel);
        }
        None
    }

    /// A snapshot read by the bridge: kept until the registry is at its position.
    pub(super) fn on_cluster_snapshot(
        &mut self,
        channel: Arc<str>,
        epoch: Arc<str>,
        seq: u64,
        entries: Vec<SnapshotEntry>,
    ) {
        let limits = SnapshotLimits {
            keys_max: self.env.config.snapshot_keys_max,
            bytes_max: self.env.config.snapshot_bytes_max,
        };
        let Some(c) = self.cluster.as_deref_mut() else {
            return;
        };
        c.snapshots.requested.remove(&channel);
        let Some((seen_epoch, _, _)) = self.channels.owned.cluster_view(&channel) else {
            return; // Dropped meanwhile.
        };
        let mut snapshot = Box::<Snapshot>::default();
        let mut evicted = Evicted::default();
        for e in &entries {
            let u = Update {
                key: Some(&e.key),
                seq: e.seq,
                content: &e.content,
                binary: e.binary,
                delete: false,
            };
            let ev = snapshot.update(u, limits);
            evicted.by_keys += ev.by_keys;
            evicted.by_bytes += ev.by_bytes;
        }
        self.count_evicted(evicted);
        let pending = Pending {
            epoch,
            seq,
            snapshot,
            seen_epoch,
        };
        if let Some(c) = self.cluster.as_deref_mut() {
            c.snapshots.pending.insert(channel.clone(), pending);
        }
        self.try_install_snapshot(&channel);
    }

    /// Installs the pending snapshot of `channel` when the registry is at its position and
    /// answers the parked subscribers; reads again when the registry went past it.
    pub(super) fn try_install_snapshot(&mut self, channel: &Arc<str>) {
        let Some(c) = self.cluster.as_deref_mut() else {
            return;
        };
        let Some(p) = c.snapshots.pending.get(channel) else {
            return;
        };
        let Some((epoch, top, _)) = self.channels.owned.cluster_view(channel) else {
            c.snapshots.pending.remove(channel);
            return;
        };
        let passed = *epoch != *p.epoch && *epoch != *p.seen_epoch;
        if !passed && (*epoch != *p.epoch || top < p.seq) {
            return; // Live messages up to its seq are still on their way.
        }
        let Some(p) = c.snapshots.pending.remove(channel) else {
            return;
        };
        if passed || top > p.seq {
            // Read before messages this loop already took: read again.
            request_load(c, channel);
            return;
        }
        self.channels
            .owned
            .cluster_set_snapshot(channel, p.snapshot);
        let waiters = c.waiting.remove(channel).unwrap_or_default();
        for waiter in waiters {
            self.cluster_answer(channel, waiter);
        }
    }

    /// Live messages of a keyed channel (after the registry took them): folded into the
    /// installed cache, or bringing a pending snapshot to its position.
    pub(super) fn snapshot_live(&mut self, batch: &Batch, key: &str) {
        if self.channels.owned.cluster_has_snapshot(&batch.channel) {
            let bodies: Vec<bytes::Bytes> = (0..batch.frames.len())
                .map(|i| batch.frame_bytes(i))
                .collect();
            let updates = bodies.iter().enumerate().filter_map(|(i, frame)| {
                let binary = frame.first().is_some_and(|b| b & 0x0f == 2);
                let (content, delete) = keyed_parts(frame_body(frame)?, binary)?;
                Some(Update {
                    key: Some(key),
                    seq: batch.first_seq + i as u64,
                    content,
                    binary,
                    delete,
                })
            });
            let evicted = self.channels.owned.snapshot(&batch.channel, updates);
            self.count_evicted(evicted);
            return;
        }
        self.try_install_snapshot(&batch.channel);
    }

    /// The channel's state was dropped (no subscriber left): forget its reads; subscribers
    /// still parked start over (a new watch, head and read).
    pub(super) fn snapshot_state_dropped(&mut self, channel: &Arc<str>) {
        let Some(c) = self.cluster.as_deref_mut() else {
            return;
        };
        c.snapshots.pending.remove(channel);
        c.snapshots.requested.remove(channel);
        let waiters = c.waiting.remove(channel).unwrap_or_default();
        for w in waiters {
            self.cluster_subscribe(channel.clone(), w.origin, w.since, w.binary);
        }
    }

    /// Sends the snapshot reads that did not fit the command queue last turn.
    pub(super) fn retry_snapshot_loads(&mut self) {
        let Some(c) = self.cluster.as_deref_mut() else {
            return;
        };
        for channel in std::mem::take(&mut c.snapshots.retry) {
            c.snapshots.requested.remove(&channel);
            if self.channels.owned.has(&channel) {
                request_load(c, &channel);
            }
        }
    }

    fn count_evicted(&mut self, evicted: Evicted) {
        self.metrics
            .add(Counter::SnapshotEvictedKeys, evicted.by_keys);
        self.metrics
            .add(Counter::SnapshotEvictedBytes, evicted.by_bytes);
    }
}

/// Asks the bridge for a snapshot read of `channel` unless one is on its way; a full command
/// queue retries next turn.
fn request_load(c: &mut LoopCluster, channel: &Arc<str>) {
    if !c.snapshots.requested.insert(channel.clone()) {
        return;
    }
    let cmd = BridgeCmd::SnapshotLoad {
        channel: channel.clone(),
    };
    if !c.send(cmd) {
        c.snapshots.retry.push(channel.clone());
    }
}
