//! The bridge's side of keyed snapshots (`--snapshot-for`; the store itself: `keys.rs`):
//! the applier run after each PubAck of a snapshot channel's batch (the channel's next batch
//! waits for it, which bounds how far the key store trails the stream), and the snapshot
//! loads of watched channels, brought up to the live path's position and handed to the
//! owner loop in order with the live messages (`ClusterMsg::Snapshot`).
//!
//! Owns: each snapshot channel's [`Applier`] (in its `Publisher`) and the flags of `Live`
//! (`snapshot`, `loading`). Never blocks: every round trip is a spawned task reporting a
//! `Done`.

use std::sync::Arc;
use std::time::Duration;

use super::central::{Bridge, Done};
use super::keys::{self, ApplyJob, Folded, KeyCache, KeyIo};
use crate::clock::Clock;
use crate::cluster::stats::Stat;
use crate::cluster::{subject, ClusterMsg};

/// A snapshot channel's key-store updates from this relay: one at a time, at most one
/// more waiting (the channel's next batch is held while one waits).
#[derive(Debug, Default)]
pub(super) struct Applier {
    /// An apply task is under way (it holds the cache).
    pub running: bool,
    /// The batch acked meanwhile, applied next.
    pub next: Option<ApplyJob>,
    /// The CAS values written last.
    pub cache: KeyCache,
}

impl Applier {
    /// True when the channel's next batch must wait.
    pub(super) fn holds(&self) -> bool {
        self.next.is_some()
    }
}

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

    /// Applies a batch of this relay's to the key store (after `delay`); `Done::Applied`
    /// follows with the cache handed back.
    pub(super) fn spawn_apply(
        &self,
        job: ApplyJob,
        mut cache: KeyCache,
        channel: &Arc<str>,
        delay: Duration,
    ) {
        let Some(k) = self.key_io(channel) else {
            return;
        };
        self.io.spawn(async move {
            if !delay.is_zero() {
                // (A zero sleep still waits for the timer wheel's next millisecond.)
                tokio::time::sleep(delay).await;
            }
            let result = keys::apply(&k, &job, &mut cache).await;
            Done::Applied {
                channel: k.channel,
                job: Box::new(job),
                cache: Box::new(cache),
                result,
            }
        });
    }

    /// A batch was stored (PubAck): applied now, or after the one being applied (then the
    /// channel's next batch waits: at most two of this relay's batches are unapplied).
    pub(super) fn apply_after_ack(&mut self, channel: &Arc<str>, job: ApplyJob) {
        let Some(a) = self.pubs.get_mut(channel).and_then(|p| p.keyed.as_mut()) else {
            return;
        };
        if a.running {
            a.next = Some(job);
            return;
        }
        a.running = true;
        let cache = std::mem::take(&mut a.cache);
        self.spawn_apply(job, cache, channel, Duration::ZERO);
    }

    /// An apply ended: the next one starts, the channel's next batch may go (after errors:
    /// retried within `--nats-publish-retry`, then given up and counted; the next batch's
    /// apply covers it, or counts it lost).
    pub(super) fn on_applied(
        &mut self,
        channel: &Arc<str>,
        job: ApplyJob,
        cache: KeyCache,
        result: Result<u64, String>,
    ) {
        match result {
            Ok(lost) => {
                if lost > 0 {
                    self.stats.add(Stat::SnapshotLost, lost);
                    tracing::warn!(%channel, lost, "cluster: keyed snapshot lost messages past the stream's history");
                }
            }
            Err(e) if Clock::now_ns().saturating_sub(job.since_ns) < self.cfg.retry_max_ns => {
                tracing::debug!(%channel, "cluster: key store update failed: {e}; retrying");
                // Forget the CAS values: read everything again.
                return self.spawn_apply(job, KeyCache::default(), channel, RETRY_DELAY);
            }
            Err(e) => {
                self.stats.inc(Stat::SnapshotApplyFailures);
                tracing::warn!(%channel, "cluster: key store update given up: {e}");
            }
        }
        let Some(a) = self.pubs.get_mut(channel).and_then(|p| p.keyed.as_mut()) else {
            return;
        };
        a.cache = cache;
        match a.next.take() {
            Some(next) => {
                let cache = std::mem::take(&mut a.cache);
                self.spawn_apply(next, cache, channel, Duration::ZERO);
            }
            None => a.running = false,
        }
        self.pump(channel);
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
            if !delay.is_zero() {
                // (A zero sleep still waits for the timer wheel's next millisecond.)
                tokio::time::sleep(delay).await;
            }
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
