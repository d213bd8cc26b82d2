//! The owner side of channels: the one place that numbers a channel's messages.
//!
//! Owns, for each channel this loop owns: the current `seq`, the epoch of that numbering,
//! which loops have subscribers (`interest`), the history ring and the last value.
//! May not touch: connections, sockets, the clock (callers pass `now_ns`).
//!
//! Lifetime of a channel's state: created by the first subscribe (or by a publish when
//! retention is on, so that late subscribers can recover); dropped when no loop is interested
//! and nothing is retained. Channels that retain history with no subscriber are kept up to
//! `idle_channels_max`, oldest-idle evicted first; a new state gets a new epoch, so a client
//! recovering across an eviction is told `recovered:false` instead of being given wrong data.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::auth::ChannelPattern;
use crate::command::SnapshotHead;
use crate::conn_id::LoopId;
use crate::hash::FxHashMap;
use crate::proto::frame::PreparedFrame;
use crate::pubsub::budget::HistoryBudget;
use crate::pubsub::history::History;
use crate::pubsub::snapshot::{Evicted, Snapshot, SnapshotLimits, Update};

/// What each owned channel retains.
#[derive(Debug, Clone, Copy)]
pub struct RetentionConfig {
    /// Messages kept per channel (0: none).
    pub history_size: usize,
    /// Age limit of kept messages in ns (0: none).
    pub history_ttl_ns: u64,
    /// Keep the latest message for new subscribers.
    pub last_value: bool,
    /// Channels kept for their retention while nobody subscribes.
    pub idle_channels_max: usize,
    /// Bytes of history this loop retains over all its channels (oldest evicted first).
    pub history_bytes_max: usize,
}

impl RetentionConfig {
    fn retains(&self) -> bool {
        self.history_size > 0 || self.last_value
    }
}

/// The client's position for recovery: the last seq it saw, and in which epoch.
#[derive(Debug, Clone, Copy)]
pub struct Since<'a> {
    /// Last seq the client received.
    pub seq: u64,
    /// Epoch of that seq, if the client knows it.
    pub epoch: Option<&'a str>,
}

/// The owner's answer to a subscribe.
#[derive(Debug, Clone)]
pub struct SubscribeOutcome {
    /// The channel's current seq (the last one assigned; 0 before the first publish).
    pub seq: u64,
    /// The epoch of the numbering.
    pub epoch: Arc<str>,
    /// With `since`: whether every missed message is in `replay`.
    pub recovered: Option<bool>,
    /// Frames to send after `subscribed` and before live deliveries, oldest first.
    pub replay: Vec<PreparedFrame>,
}

/// A run of publishes numbered by the owner.
#[derive(Debug, Clone, Copy)]
pub struct Reserved {
    /// The seq of the run's first message (the others follow, gap-free).
    pub first_seq: u64,
    /// Loops with subscribers (bit i = loop i).
    pub interest: u64,
    /// The channel keeps a keyed snapshot: fold the run in with [`ChannelRegistry::snapshot`].
    pub snapshot: bool,
}

#[derive(Debug)]
struct ChannelState {
    seq: u64,
    /// `seq` at the last [`ChannelRegistry::sample_publishes`] walk.
    sampled_seq: u64,
    epoch: Arc<str>,
    interest: u64,
    history: History,
    last: Option<PreparedFrame>,
    /// The keyed snapshot, on `--snapshot-for` channels (decided when the state is created).
    snapshot: Option<Box<Snapshot>>,
}

impl ChannelState {
    /// Kept while nobody subscribes (history, last value or a snapshot).
    fn retains(&self, retention: &RetentionConfig) -> bool {
        retention.retains() || self.snapshot.is_some()
    }
}

/// Which channels keep a keyed snapshot, and its bounds.
#[derive(Debug, Clone)]
pub struct SnapshotConfig {
    /// `--snapshot-for` patterns.
    pub patterns: Vec<ChannelPattern>,
    /// Per-channel bounds.
    pub limits: SnapshotLimits,
}

/// Every channel owned by one loop.
#[derive(Debug)]
pub struct ChannelRegistry {
    channels: FxHashMap<Arc<str>, ChannelState>,
    idle: VecDeque<Arc<str>>,
    retention: RetentionConfig,
    budget: HistoryBudget,
    epoch_prefix: String,
    epochs_made_total: u64,
    snapshots: Option<SnapshotConfig>,
}

impl ChannelRegistry {
    /// An empty registry. `epoch_prefix` must differ between process runs (start time, pid)
    /// and between loops, so that every new numbering has a fresh epoch.
    pub fn new(retention: RetentionConfig, epoch_prefix: String) -> Self {
        ChannelRegistry {
            channels: FxHashMap::default(),
            idle: VecDeque::new(),
            retention,
            budget: HistoryBudget::new(retention.history_bytes_max),
            epoch_prefix,
            epochs_made_total: 0,
            snapshots: None,
        }
    }

    /// Keeps keyed snapshots of the channels `config` names (none when its patterns are empty).
    pub fn with_snapshots(mut self, config: SnapshotConfig) -> Self {
        self.snapshots = (!config.patterns.is_empty()).then_some(config);
        self
    }

    fn snapshot_for(&self, channel: &str) -> bool {
        self.snapshots
            .as_ref()
            .is_some_and(|c| c.patterns.iter().any(|p| p.matches(channel)))
    }

    /// Records that `from_loop` has a (possibly pending) subscriber and answers with the current
    /// seq, epoch and the frames to replay.
    /// On a snapshot channel the replay is the snapshot (binary with `binary_snapshot`),
    /// unless `since` was served from history.
    pub fn subscribe(
        &mut self,
        channel: &str,
        from_loop: LoopId,
        since: Option<Since<'_>>,
        now_ns: u64,
        binary_snapshot: bool,
    ) -> SubscribeOutcome {
        let retention = self.retention;
        let state = self.state_mut(channel);
        state.interest |= 1u64 << from_loop;
        let freed = state.history.prune(now_ns, retention.history_ttl_ns);
        self.budget.released(freed);
        let state = self.state_mut(channel);
        let (recovered, mut replay) = match since {
            Some(s) => recover(state, s),
            None => (None, state.last.iter().cloned().collect()),
        };
        if let Some(snapshot) = state.snapshot.as_mut().filter(|_| recovered != Some(true)) {
            let head = SnapshotHead {
                channel,
                seq: state.seq,
                epoch: &state.epoch,
            };
            replay = vec![snapshot.frame(head, binary_snapshot)];
        }
        SubscribeOutcome {
            seq: state.seq,
            epoch: state.epoch.clone(),
            recovered,
            replay,
        }
    }

    /// `from_loop` has no subscriber of `channel` any more.
    pub fn uninterest(&mut self, channel: &str, from_loop: LoopId) {
        let Some(state) = self.channels.get_mut(channel) else {
            return;
        };
        state.interest &= !(1u64 << from_loop);
        if state.interest != 0 {
            return;
        }
        let keep = state.retains(&self.retention);
        if keep {
            self.park_idle(channel);
        } else {
            self.remove(channel);
        }
    }

    /// Numbers `count` consecutive publishes: returns the first seq and the interested loops,
    /// or `None` when the channel has no state (nobody subscribed and nothing is retained: the
    /// messages reach no one). The caller encodes the frames, then calls `retain`.
    pub fn reserve(&mut self, channel: &str, count: u64, now_ns: u64) -> Option<Reserved> {
        let retention = self.retention;
        if !self.channels.contains_key(channel) {
            if !retention.retains() && !self.snapshot_for(channel) {
                return None;
            }
            self.state_mut(channel);
            self.park_idle(channel);
        }
        let state = self.channels.get_mut(channel)?;
        let freed = state.history.prune(now_ns, retention.history_ttl_ns);
        self.budget.released(freed);
        let state = self.channels.get_mut(channel)?;
        let first_seq = state.seq + 1;
        state.seq += count;
        Some(Reserved {
            first_seq,
            interest: state.interest,
            snapshot: state.snapshot.is_some(),
        })
    }

    /// Folds a reserved run's messages (oldest first) into the channel's snapshot; returns
    /// the keys that evicted. Called only for runs whose `Reserved::snapshot` is set.
    pub fn snapshot<'a>(
        &mut self,
        channel: &str,
        run: impl Iterator<Item = Update<'a>>,
    ) -> Evicted {
        let mut evicted = Evicted::default();
        let Some(limits) = self.snapshots.as_ref().map(|c| c.limits) else {
            return evicted;
        };
        let Some(snapshot) = self
            .channels
            .get_mut(channel)
            .and_then(|s| s.snapshot.as_mut())
        else {
            return evicted;
        };
        for update in run {
            let e = snapshot.update(update, limits);
            evicted.by_keys += e.by_keys;
            evicted.by_bytes += e.by_bytes;
        }
        evicted
    }

    /// True when published frames must be handed to `retain` (history or last value on).
    pub fn retains(&self) -> bool {
        self.retention.retains()
    }

    /// Keeps the encoded frames of a reserved run (oldest first, seqs from `first_seq`) in the
    /// history ring and as the last value, then evicts the oldest history of any channel while
    /// the loop's history is over its byte budget. Returns how many messages that evicted.
    pub fn retain(
        &mut self,
        channel: &str,
        first_seq: u64,
        frames: impl Iterator<Item = PreparedFrame>,
        now_ns: u64,
    ) -> u64 {
        let retention = self.retention;
        let Some(key) = self.channels.get_key_value(channel).map(|(k, _)| k.clone()) else {
            return 0;
        };
        let Some(state) = self.channels.get_mut(channel) else {
            return 0;
        };
        for (i, frame) in frames.enumerate() {
            if retention.history_size > 0 {
                let seq = first_seq + i as u64;
                let len = frame.bytes().len();
                let freed = state
                    .history
                    .push(seq, now_ns, frame.clone(), retention.history_size);
                self.budget.released(freed);
                self.budget.retained(key.clone(), seq, len);
            }
            if retention.last_value {
                state.last = Some(frame);
            }
        }
        self.enforce_budget()
    }

    /// Evicts the oldest retained messages, whatever their channel, until the history is
    /// within its byte budget. Returns how many it evicted.
    fn enforce_budget(&mut self) -> u64 {
        let before = self.budget.evicted_total();
        while self.budget.over() {
            let Some((channel, seq)) = self.budget.pop_oldest() else {
                break;
            };
            let Some(state) = self.channels.get_mut(&channel) else {
                continue; // Stale: the channel was dropped (its bytes were released then).
            };
            if state.history.oldest_seq() != Some(seq) {
                continue; // Stale: already removed by the channel's size or TTL limit.
            }
            if let Some(len) = state.history.pop_oldest() {
                self.budget.evicted(len);
            }
        }
        let channels = &self.channels;
        self.budget.compact(|channel, seq| {
            channels
                .get(channel)
                .and_then(|s| s.history.oldest_seq())
                .is_some_and(|oldest| seq >= oldest)
        });
        self.budget.evicted_total() - before
    }

    /// Messages evicted so far to keep the history within its byte budget.
    pub fn history_evicted_total(&self) -> u64 {
        self.budget.evicted_total()
    }

    /// Bytes of history retained now.
    pub fn history_bytes(&self) -> usize {
        self.budget.bytes()
    }

    /// Drops a channel's state, releasing its history from the budget.
    fn remove(&mut self, channel: &str) {
        if let Some(state) = self.channels.remove(channel) {
            self.budget.released(state.history.held());
        }
    }

    /// Walks every owned channel once, passing its name, its publishes since the previous
    /// walk and its seq, then makes now the new sampling point. O(channels owned): called
    /// once per metrics interval, never per message (the publish path is unchanged).
    pub fn sample_publishes(&mut self, mut visit: impl FnMut(&str, u64, u64)) {
        for (name, state) in self.channels.iter_mut() {
            visit(name, state.seq.saturating_sub(state.sampled_seq), state.seq);
            state.sampled_seq = state.seq;
        }
    }

    /// Cluster mode: whether `channel` has state here (it is watched and its head was read).
    pub fn has(&self, channel: &str) -> bool {
        self.channels.contains_key(channel)
    }

    /// Cluster mode: the loops interested in `channel` (0 without state).
    pub fn cluster_interest(&self, channel: &str) -> u64 {
        self.channels.get(channel).map_or(0, |s| s.interest)
    }

    /// Cluster mode: the channel's epoch, last seq and oldest retained seq.
    pub fn cluster_view(&self, channel: &str) -> Option<(Arc<str>, u64, Option<u64>)> {
        let s = self.channels.get(channel)?;
        Some((s.epoch.clone(), s.seq, s.history.oldest_seq()))
    }

    /// Cluster mode: takes the stream's numbering for `count` messages from `first_seq` in
    /// `epoch` (the stream is the sequencer; this state is its cache). A new epoch or a jump
    /// drops the retained history (the ring never holds a hole). Returns the interested loops
    /// whether the epoch changed (also from none: the channel was empty and its first writer
    /// minted it), and whether that was a reset of an existing numbering; `None` when the
    /// channel has no state (not watched).
    pub fn cluster_accept(
        &mut self,
        channel: &str,
        epoch: &Arc<str>,
        first_seq: u64,
        count: u64,
    ) -> Option<(u64, bool, bool)> {
        let state = self.channels.get_mut(channel)?;
        let empty = state.seq == 0 && state.history.is_empty() && state.last.is_none();
        let changed = *state.epoch != **epoch;
        let reset = changed && !empty;
        if changed {
            state.epoch = epoch.clone();
        }
        let mut freed = None;
        let jump = first_seq != state.seq.saturating_add(1);
        if reset || jump {
            // A keyed snapshot cache is exact only while every message is folded in.
            state.snapshot = None;
        }
        if reset || jump {
            freed = Some(std::mem::take(&mut state.history).held());
            if reset {
                state.last = None;
            }
        }
        state.seq = first_seq.saturating_add(count.saturating_sub(1));
        let interest = state.interest;
        if let Some(freed) = freed {
            self.budget.released(freed);
        }
        Some((interest, changed, reset))
    }

    /// Cluster mode: creates (or resets) the state of a watched channel from the stream's
    /// head: `epoch`, last `seq`, and the head message's frames (retained as history and last
    /// value). Returns whether an existing state changed epoch.
    pub fn cluster_adopt(
        &mut self,
        channel: &str,
        epoch: &Arc<str>,
        seq: u64,
        frames: Vec<PreparedFrame>,
        now_ns: u64,
    ) -> bool {
        let changed = match self.channels.get_mut(channel) {
            Some(state) if *state.epoch == **epoch => return false,
            Some(state) => {
                // A new numbering: the old ring and last value are of another epoch.
                let held = std::mem::take(&mut state.history).held();
                state.epoch = epoch.clone();
                state.seq = seq;
                state.last = None;
                state.snapshot = None;
                self.budget.released(held);
                true
            }
            None => {
                let state = ChannelState {
                    seq,
                    sampled_seq: seq,
                    epoch: epoch.clone(),
                    interest: 0,
                    history: History::default(),
                    last: None,
                    // Keyed snapshots: installed once read from the key store
                    // (`cluster_set_snapshot`).
                    snapshot: None,
                };
                self.channels.insert(Arc::from(channel), state);
                false
            }
        };
        let first = seq - (frames.len() as u64).min(seq) + 1;
        if seq > 0 && self.retention.retains() {
            self.retain(channel, first, frames.into_iter(), now_ns);
        }
        changed
    }

    /// Cluster mode: whether `channel` has a keyed snapshot cache installed (exact at its
    /// current seq).
    pub fn cluster_has_snapshot(&self, channel: &str) -> bool {
        self.channels
            .get(channel)
            .is_some_and(|s| s.snapshot.is_some())
    }

    /// Cluster mode: installs `channel`'s keyed snapshot, read from the key store at the
    /// state's current seq; the caller folds later messages in with [`Self::snapshot`].
    pub fn cluster_set_snapshot(&mut self, channel: &str, snapshot: Box<Snapshot>) {
        if let Some(state) = self.channels.get_mut(channel) {
            state.snapshot = Some(snapshot);
        }
    }

    /// Cluster mode: drops the state of `channel` if no loop is interested (the live
    /// subscription ends, so the ring would go stale). True when dropped.
    pub fn cluster_drop_if_unwatched(&mut self, channel: &str) -> bool {
        if self.channels.get(channel).is_some_and(|s| s.interest == 0) {
            self.remove(channel);
            return true;
        }
        false
    }

    /// Number of channels with state on this loop.
    pub fn len(&self) -> usize {
        self.channels.len()
    }

    /// True when this loop owns no channel state.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    fn state_mut(&mut self, channel: &str) -> &mut ChannelState {
        if !self.channels.contains_key(channel) {
            let epoch = self.next_epoch();
            let snapshot = self.snapshot_for(channel).then(Box::default);
            let state = ChannelState {
                snapshot,
                seq: 0,
                sampled_seq: 0,
                epoch,
                interest: 0,
                history: History::default(),
                last: None,
            };
            self.channels.insert(Arc::from(channel), state);
        }
        // The entry was just ensured; `entry` would need an owned key on every lookup.
        self.channels
            .get_mut(channel)
            .expect("channel state inserted above")
    }

    fn next_epoch(&mut self) -> Arc<str> {
        self.epochs_made_total += 1;
        Arc::from(format!("{}-{}", self.epoch_prefix, self.epochs_made_total))
    }

    /// Remembers an uninterested, retaining channel; evicts the oldest beyond the cap.
    fn park_idle(&mut self, channel: &str) {
        self.idle.push_back(Arc::from(channel));
        while self.idle.len() > self.retention.idle_channels_max {
            let Some(old) = self.idle.pop_front() else {
                break;
            };
            if self.channels.get(&old).is_some_and(|s| s.interest == 0) {
                self.remove(&old);
            }
        }
    }
}

/// Recovery rule: same epoch and every message after `since` retained → replay them;
/// otherwise `recovered:false` and no replay (the client must fetch a snapshot).
fn recover(state: &ChannelState, since: Since<'_>) -> (Option<bool>, Vec<PreparedFrame>) {
    let same_epoch = since.epoch.is_none_or(|e| *e == *state.epoch);
    if !same_epoch || since.seq > state.seq {
        return (Some(false), Vec::new());
    }
    match state.history.since(since.seq, state.seq) {
        Some(replay) => (Some(true), replay),
        None => (Some(false), Vec::new()),
    }
}

#[cfg(test)]
mod tests;
