//! The bridge's side of keyed snapshots (`--snapshot-for`; the store itself: `keys.rs`):
//! the applier run after each PubAck of a snapshot channel's batch (the channel's next batch
//! waits for it, which bounds how far the key store trails the stream), and the snapshot
//! loads of watched channels, brought up to the live path's position and handed to the
//! owner loop in order with the live messages (`ClusterMsg::Snapshot`).
//!
//! Owns: nothing beyond the flags in `Publisher` (`applying`) and `Live` (`snapshot`,
//! `loading`). Never blocks: every round trip is a spawned task reporting a `Done`.

use std::sync::Arc;
use std::time::Duration;

use super::central::{Bridge, Done};
use super::keys::{self, Folded, KeyIo};
use crate::clock::Clock;
use crate::cluster::stats::Stat;
use crate::cluster::{subject, ClusterMsg};

/// Backoff between failed applies or loads.
const RETRY_DELAY: Duration = Duration::from_millis(100);

impl Bridge {
    /// True when `channel` keeps a keyed snapshot (asked once per publisher and per watch).
    pub(super) fn snapshot_channel(&self, channel: &str) -> bool {
        !self.io.key_streams.is_empty() && self.cfg.config.keyed_in_cluster(channel)
    }

    fn key_io(&self, channel: &Arc<str>) -> Option<KeyIo> {
        let main = self.io.stream(channel)?;
        let key_stream = self.io.key_stream(channel)?;
        let keys = super::direct::Store::new(key_stream.clone(), self.stats.clone());
        Some(KeyIo {
            main,
            keys,
            key_stream,
            js: self.io.js.clone(),
            client: self.io.client.clone(),
            channel: channel.clone(),
            ingest: subject::ingest(channel, self.io.shards),
            watermark: subject::key_watermark(channel, self.io.shards),
            shards: self.io.shards,
        })
    }

    /// Applies the channel's stored messages up to stream sequence `upto` to the key store
    /// (after `delay`); `Done::Applied` follows.
    pub(super) fn spawn_apply(
        &self,
        channel: &Arc<str>,
        upto: u64,
        since_ns: u64,
        delay: Duration,
    ) {
        let Some(k) = self.key_io(channel) else {
            return;
        };
        self.io.spawn(async move {
            tokio::time::sleep(delay).await;
            let result = keys::apply(&k, upto).await;
            Done::Applied {
                channel: k.channel,
                upto,
                since_ns,
                result,
            }
        });
    }

    /// An apply ended: the channel's next batch may go (after errors: retried within
    /// `--nats-publish-retry`, then given up and counted; a later apply covers it).
    pub(super) fn on_applied(
        &mut self,
        channel: &Arc<str>,
        upto: u64,
        since_ns: u64,
        result: Result<u64, String>,
    ) {
        match result {
            Ok(lost) => {
                if lost > 0 {
                    self.stats.add(Stat::SnapshotLost, lost);
                    tracing::warn!(%channel, lost, "cluster: keyed snapshot lost messages past the history (raise --history-size)");
                }
            }
            Err(e) if Clock::now_ns().saturating_sub(since_ns) < self.cfg.retry_max_ns => {
                tracing::debug!(%channel, "cluster: key store update failed: {e}; retrying");
                return self.spawn_apply(channel, upto, since_ns, RETRY_DELAY);
            }
            Err(e) => {
                self.stats.inc(Stat::SnapshotApplyFailures);
                tracing::warn!(%channel, "cluster: key store update given up: {e}");
            }
        }
        self.publisher_applied(channel);
    }

    /// Reads the channel's snapshot for its owner loop (one load at a time per channel).
    pub(super) fn spawn_load(&mut self, channel: &Arc<str>, delay: Duration) {
        let Some(k) = self.key_io(channel) else {
            return;
        };
        let Some(live) = self.lives.get_mut(channel) else {
            return;
        };
        if std::mem::replace(&mut live.loading, true) {
            return;
        }
        let gen = live.gen;
        self.stats.inc(Stat::SnapshotLoads);
        self.io.spawn(async move {
            tokio::time::sleep(delay).await;
            let result = keys::load(&k).await;
            Done::SnapshotRead {
                channel: k.channel,
                gen,
                result,
            }
        });
    }

    /// A snapshot read: sent to the owner once it is at least at what the live path
    /// delivered (the owner then waits for the live messages up to it, already on their
    /// way); else the stream between is folded in first.
    pub(super) fn on_snapshot_read(
        &mut self,
        channel: &Arc<str>,
        gen: u64,
        result: Result<Folded, String>,
    ) {
        let k = self.key_io(channel);
        let Some(live) = self.lives.get_mut(channel).filter(|l| l.gen == gen) else {
            return;
        };
        let mut f = match result {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(%channel, "cluster: keyed snapshot read failed: {e}; retrying");
                live.loading = false;
                return self.spawn_load(channel, RETRY_DELAY);
            }
        };
        let d = live.delivered.clone();
        let same = *d.epoch == *f.epoch;
        if f.lost > 0 {
            self.stats
                .add(Stat::SnapshotLost, std::mem::take(&mut f.lost));
        }
        if d.sseq > f.sseq && !d.is_empty() {
            let Some(k) = k else {
                return;
            };
            if !same && f.seq > 0 {
                // The live path moved to another numbering meanwhile: read again.
                live.loading = false;
                return self.spawn_load(channel, Duration::ZERO);
            }
            let upto = d.sseq;
            self.io.spawn(async move {
                let result = keys::extend(&k, f, upto).await;
                Done::SnapshotRead {
                    channel: k.channel,
                    gen,
                    result,
                }
            });
            return;
        }
        live.loading = false;
        let owner = live.owner;
        let msg = ClusterMsg::Snapshot {
            channel: channel.clone(),
            epoch: f.epoch.clone(),
            seq: f.seq,
            entries: f.entries(),
        };
        self.out.control(owner, msg);
    }
}
