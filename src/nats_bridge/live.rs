//! The live path (docs/CLUSTER.md, "Live path"): one core subscription to `wsr.l.<k>.<tok>`
//! per channel that has a local subscriber (interest-based), its head read right after the
//! SUB (the server round trip that orders them), and the continuity check on every message:
//! `Nats-Last-Sequence` must be the last delivered stream sequence and `Wsr-Seq` the next seq.
//! A gap holds later messages, fetches the missing ones from the stream (`DIRECT.GET
//! next_by_subj`) and delivers in order; what the stream no longer holds reaches the owner
//! loop as a seq jump, which every subscriber is told about as a `gap` notice. A full loop
//! queue is a gap too (never a wait). After a reconnect or a slow-consumer event every live
//! channel re-reads its head; a new subscription re-reads it once after a second (the quiet
//! tail: a message stored before the SUB reached the stream's server, then silence).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::message::StreamMessage;
use bytes::Bytes;
use futures_util::StreamExt;

use super::central::{Bridge, Done, HeadRead, LiveEvent, LiveKind};
use super::direct::Store;
use super::publish::{head_of, header, header_u64, Head};
use crate::clock::Clock;
use crate::cluster::envelope::{self as env, BatchMeta};
use crate::cluster::stats::Stat;
use crate::cluster::{subject, ClusterMsg};
use crate::conn_id::LoopId;

/// Messages held while a gap is repaired; beyond, they are dropped and the channel re-reads
/// its head (the repair then fetches them from the stream).
const HOLD_MAX: usize = 4096;
/// Messages one repair fetches at most (then it goes on from where it stopped).
const REPAIR_STEPS_MAX: usize = 1024;
/// A direct get answered 404 although the message must exist (a lagging follower) is asked
/// again this many times.
const NOT_FOUND_RETRIES: u32 = 5;
/// When a new subscription re-reads its head once (the quiet tail).
const QUIET_TAIL_RECHECK: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// SUB sent, head not read yet.
    Syncing,
    /// Delivering.
    Ready,
    /// A repair (or a wait for room in the loop queue) is under way.
    Repairing,
}

/// One live message, from the live subject or fetched from the stream.
pub(super) struct LiveMsg {
    sseq: u64,
    /// Stream sequence of the channel's previous message.
    last: u64,
    /// On a live copy: the CAS value its writer expected (`Wsr-Prev`); it differs from
    /// `last` only when the server stored it without enforcing that CAS.
    cas: Option<u64>,
    epoch: Arc<str>,
    seq: u64,
    count: u64,
    payload: Bytes,
    binary: bool,
    key: Option<String>,
    from: Option<String>,
    name: Option<Arc<str>>,
    ts_ns: u64,
}

impl LiveMsg {
    /// A stored message of `bodies` (tests).
    #[cfg(test)]
    pub(super) fn for_test(
        (epoch, seq, sseq): (&str, u64, u64),
        key: &str,
        bodies: &[Vec<u8>],
    ) -> Self {
        LiveMsg {
            sseq,
            last: 0,
            cas: None,
            epoch: Arc::from(epoch),
            seq,
            count: bodies.len() as u64,
            payload: env::encode_records(bodies),
            binary: false,
            key: Some(key.to_string()),
            from: None,
            name: None,
            ts_ns: 0,
        }
    }

    fn from_live(m: &async_nats::Message) -> Option<Self> {
        let h = m.headers.as_ref()?;
        Some(LiveMsg {
            sseq: header_u64(h, "Nats-Sequence")?,
            last: header_u64(h, "Nats-Last-Sequence").unwrap_or(0),
            cas: header_u64(h, env::PREV),
            epoch: Arc::from(header(h, env::EPOCH)?),
            seq: header_u64(h, env::SEQ)?,
            count: header_u64(h, env::COUNT)?.max(1),
            payload: m.payload.clone(),
            binary: header(h, env::BINARY).is_some(),
            key: header(h, env::KEY).map(str::to_string),
            from: header(h, env::FROM).map(str::to_string),
            name: header(h, env::NAME).map(Arc::from),
            ts_ns: header_u64(h, env::TS).unwrap_or(0),
        })
    }

    pub(super) fn from_stream(m: &StreamMessage) -> Option<Self> {
        let h = &m.headers;
        Some(LiveMsg {
            sseq: m.sequence,
            last: header_u64(h, env::PREV).unwrap_or(0),
            cas: None,
            epoch: Arc::from(header(h, env::EPOCH)?),
            seq: header_u64(h, env::SEQ)?,
            count: header_u64(h, env::COUNT)?.max(1),
            payload: m.payload.clone(),
            binary: header(h, env::BINARY).is_some(),
            key: header(h, env::KEY).map(str::to_string),
            from: header(h, env::FROM).map(str::to_string),
            name: header(h, env::NAME).map(Arc::from),
            ts_ns: 0,
        })
    }

    pub(super) fn last_seq(&self) -> u64 {
        // Headers come from the network: never overflow on a malformed one.
        self.seq.saturating_add(self.count - 1)
    }

    /// The frame bodies (`None`: malformed records).
    pub(super) fn bodies(&self) -> Option<Vec<Bytes>> {
        env::split_records(&self.payload, self.count)
    }

    pub(super) fn seq(&self) -> u64 {
        self.seq
    }

    pub(super) fn prev(&self) -> u64 {
        self.last
    }

    pub(super) fn epoch(&self) -> &str {
        &self.epoch
    }

    pub(super) fn binary(&self) -> bool {
        self.binary
    }

    pub(super) fn sseq(&self) -> u64 {
        self.sseq
    }

    /// The conflation key every record of the message shares (`Wsr-Key`).
    pub(super) fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }
}

/// One live channel.
pub(super) struct Live {
    pub(super) gen: u64,
    pub(super) owner: LoopId,
    task: tokio::task::AbortHandle,
    phase: Phase,
    pub(super) delivered: Head,
    /// A `--snapshot-for` channel: its live messages carry their key to the owner, and its
    /// snapshot is read after the head (`keyed.rs`).
    pub(super) snapshot: bool,
    /// A snapshot read is under way (one at a time).
    pub(super) loading: bool,
    hold: VecDeque<LiveMsg>,
    /// The last repair could not close the gap: the next message is delivered with its
    /// jump (announced to clients).
    force_jump: bool,
    /// The hold overflowed: re-read the head once the current repair ends.
    resync: bool,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.task.abort(); // Drops the subscription: UNSUB.
    }
}

impl Bridge {
    pub(super) fn on_watch(&mut self, channel: Arc<str>, owner: LoopId) {
        if let Some(live) = self.lives.get_mut(&channel) {
            // The owner lost its state (it sends Watch only then): tell it the head again,
            // unless the head read after the SUB is still under way (it will answer).
            live.owner = owner;
            if live.phase == Phase::Syncing {
                return;
            }
            if live.snapshot {
                // The owner lost its cache with its state: read the snapshot again.
                self.spawn_load(&channel, Duration::ZERO);
            }
            let Some(live) = self.lives.get_mut(&channel) else {
                return;
            };
            let frames = Vec::new();
            let d = live.delivered.clone();
            let msg = ClusterMsg::Head {
                channel,
                epoch: d.epoch,
                seq: d.seq,
                frames,
            };
            return self.out.control(owner, msg);
        }
        self.next_gen += 1;
        let gen = self.next_gen;
        let task = self.spawn_subscription(&channel, gen);
        let snapshot = self.snapshot_channel(&channel);
        let live = Live {
            gen,
            owner,
            task,
            phase: Phase::Syncing,
            delivered: Head::empty(),
            snapshot,
            loading: false,
            hold: VecDeque::new(),
            force_jump: false,
            resync: false,
        };
        self.lives.insert(channel, live);
        self.stats.set_live_channels(self.lives.len() as u64);
    }

    pub(super) fn on_unwatch(&mut self, channel: &Arc<str>) {
        self.lives.remove(channel);
        self.stats.set_live_channels(self.lives.len() as u64);
    }

    /// SUB the live subject, read the head (the round trip after the SUB), then forward every
    /// live message, in order, through one queue.
    fn spawn_subscription(&self, channel: &Arc<str>, gen: u64) -> tokio::task::AbortHandle {
        let client = self.io.client.clone();
        let stream = self.io.stream(channel);
        let live_subject = subject::live(channel, self.io.shards);
        let ingest = subject::ingest(channel, self.io.shards);
        let tx = self.io.live.clone();
        let channel = channel.clone();
        let handle = tokio::spawn(async move {
            let event = |kind| LiveEvent {
                channel: channel.clone(),
                gen,
                kind,
            };
            let mut sub = match client.subscribe(live_subject).await {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(event(LiveKind::Head(Err(e.to_string())))).await;
                    return;
                }
            };
            let head = match stream {
                Some(s) => read_head(&s, &ingest).await,
                None => Err("no stream".into()),
            };
            if tx.send(event(LiveKind::Head(head))).await.is_err() {
                return;
            }
            while let Some(m) = sub.next().await {
                if tx.send(event(LiveKind::Msg(m))).await.is_err() {
                    return;
                }
            }
        });
        handle.abort_handle()
    }

    pub(super) fn on_live_event(&mut self, ev: LiveEvent) {
        if self.lives.get(&ev.channel).is_none_or(|l| l.gen != ev.gen) {
            return; // Unwatched (or watched again) meanwhile.
        }
        match ev.kind {
            LiveKind::Head(result) => self.on_sub_head(&ev.channel, result),
            LiveKind::Msg(m) => {
                let Some(msg) = LiveMsg::from_live(&m) else {
                    return; // Not a wsrelay message.
                };
                if msg.ts_ns > 0 {
                    let now = wall_ns();
                    self.stats.record_fanin_ns(now.saturating_sub(msg.ts_ns));
                }
                if let Some(live) = self.lives.get_mut(&ev.channel) {
                    if live.phase != Phase::Ready {
                        return hold_back(live, msg, &self.stats);
                    }
                }
                self.process(&ev.channel, msg);
            }
        }
    }

    /// The head read right after the SUB: the owner adopts it and answers its subscribers.
    fn on_sub_head(&mut self, channel: &Arc<str>, result: HeadRead) {
        let Some(live) = self.lives.get_mut(channel) else {
            return;
        };
        let msg = match result {
            Ok(Some(m)) => LiveMsg::from_stream(&m),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(%channel, "cluster: head read failed: {e}; retrying");
                let gen = live.gen;
                return self.spawn_resync(channel, gen, Duration::from_millis(100));
            }
        };
        let (head, frames) = match &msg {
            Some(m) => {
                let head = Head {
                    epoch: m.epoch.clone(),
                    seq: m.last_seq(),
                    sseq: m.sseq,
                };
                let frames = m.bodies().unwrap_or_default();
                let frames = frames.iter().map(|b| env::frame(b, m.binary)).collect();
                (head, frames)
            }
            None => (Head::empty(), Vec::new()),
        };
        let was_syncing = live.phase == Phase::Syncing;
        live.delivered = head.clone();
        live.phase = Phase::Ready;
        let (owner, gen) = (live.owner, live.gen);
        let msg = ClusterMsg::Head {
            channel: channel.clone(),
            epoch: head.epoch,
            seq: head.seq,
            frames,
        };
        self.out.control(owner, msg);
        if was_syncing {
            self.spawn_resync(channel, gen, QUIET_TAIL_RECHECK);
            if self.lives.get(channel).is_some_and(|l| l.snapshot) {
                self.spawn_load(channel, Duration::ZERO);
            }
        }
        self.release(channel);
    }

    /// Checks one message against the last delivered and delivers, drops or repairs.
    fn process(&mut self, channel: &Arc<str>, msg: LiveMsg) {
        let Some(live) = self.lives.get_mut(channel) else {
            return;
        };
        let d = &live.delivered;
        tracing::debug!(
            %channel, sseq = msg.sseq, last = msg.last, seq = msg.seq, count = msg.count,
            d_sseq = d.sseq, d_seq = d.seq, force = live.force_jump, "cluster: live message"
        );
        if msg.sseq <= d.sseq {
            return; // A late duplicate (a repair fetched it first).
        }
        let cas_broken = msg.cas.is_some_and(|p| p != msg.last);
        let repeats = !d.is_empty() && *msg.epoch == *d.epoch && msg.seq <= d.seq;
        if cas_broken || repeats {
            // Stored although its writer's CAS value was not the channel's last message, or
            // numbered over seqs already delivered: two writers passed the per-subject CAS
            // at once (seen on nats-server 2.9.10 with R3 streams: docs/CLUSTER.md). Never
            // deliver a seq twice: skip it (its stream position is taken as seen).
            self.stats.inc(Stat::NumberingConflicts);
            tracing::warn!(
                %channel, sseq = msg.sseq, seq = msg.seq, delivered = d.seq,
                "cluster: a stored message repeats seqs already delivered; skipped"
            );
            live.delivered.sseq = msg.sseq;
            return;
        }
        let contiguous = msg.last == d.sseq && msg.seq == d.seq.saturating_add(1);
        let first_ever = d.is_empty() && msg.last == 0 && msg.seq == 1;
        let new_epoch = !d.is_empty() && *msg.epoch != *d.epoch;
        if contiguous || first_ever || new_epoch || std::mem::take(&mut live.force_jump) {
            if new_epoch {
                self.stats.inc(Stat::EpochResets);
            } else if !contiguous && !first_ever {
                self.stats.inc(Stat::GapsAnnounced);
            }
            return self.deliver(channel, msg);
        }
        self.stats.inc(Stat::GapsDetected);
        let (gen, after, until) = (live.gen, d.sseq, msg.sseq);
        live.phase = Phase::Repairing;
        live.hold.push_front(msg);
        self.spawn_repair(channel, gen, after, until, Duration::ZERO);
    }

    /// Hands a message to the channel's owner loop; a full queue makes it a gap (repaired).
    fn deliver(&mut self, channel: &Arc<str>, msg: LiveMsg) {
        let node = &self.cfg.node;
        let Some(live) = self.lives.get_mut(channel) else {
            return;
        };
        let Some(bodies) = msg.bodies() else {
            tracing::warn!(%channel, sseq = msg.sseq, "cluster: malformed stored message skipped");
            live.force_jump = true;
            return;
        };
        let origin = msg.from.as_deref().and_then(|f| env::origin_of(f, node));
        let meta = BatchMeta {
            channel,
            first_seq: msg.seq,
            binary: msg.binary,
            origin,
            key: msg.key.as_deref(),
            read_at_ns: Clock::now_ns(),
        };
        let batch = Arc::new(env::batch(&meta, &bodies));
        let key = match live.snapshot {
            true => Some(Arc::from(msg.key.as_deref().unwrap_or_default())),
            false => None,
        };
        let out = ClusterMsg::Live {
            batch,
            epoch: msg.epoch.clone(),
            from: msg.name.clone(),
            key,
        };
        if self.out.live(live.owner, out).is_err() {
            // The loop is behind: never wait for it. Retry from the stream shortly.
            self.stats.inc(Stat::BridgeDrops);
            self.stats.inc(Stat::GapsDetected);
            let (gen, after, until) = (live.gen, live.delivered.sseq, msg.sseq);
            live.phase = Phase::Repairing;
            live.hold.push_front(msg);
            return self.spawn_repair(channel, gen, after, until, Duration::from_millis(2));
        }
        live.delivered = Head {
            epoch: msg.epoch.clone(),
            seq: msg.last_seq(),
            sseq: msg.sseq,
        };
    }

    /// Delivers held messages in order while the channel stays ready.
    fn release(&mut self, channel: &Arc<str>) {
        loop {
            let Some(live) = self.lives.get_mut(channel) else {
                return;
            };
            if live.phase != Phase::Ready {
                return;
            }
            let Some(msg) = live.hold.pop_front() else {
                if std::mem::take(&mut live.resync) {
                    let gen = live.gen;
                    self.spawn_resync(channel, gen, Duration::ZERO);
                }
                return;
            };
            self.process(channel, msg);
        }
    }

    /// Fetches the channel's messages with `after < sseq < until`, in stream order.
    fn spawn_repair(&self, channel: &Arc<str>, gen: u64, after: u64, until: u64, delay: Duration) {
        let Some(stream) = self.io.stream(channel) else {
            return;
        };
        let subject = subject::ingest(channel, self.io.shards);
        let channel = channel.clone();
        self.io.spawn(async move {
            if !delay.is_zero() {
                // A zero sleep would still wait for the timer wheel's next millisecond.
                tokio::time::sleep(delay).await;
            }
            let mut msgs = Vec::new();
            let mut cur = after;
            let mut misses = 0;
            let mut complete = true;
            while cur + 1 < until && msgs.len() < REPAIR_STEPS_MAX {
                match stream.next(&subject, cur + 1).await {
                    Ok(Some(m)) if m.sequence < until => {
                        cur = m.sequence;
                        msgs.push(m);
                    }
                    Ok(Some(_)) => break,
                    Ok(None) | Err(_) => {
                        misses += 1;
                        if misses > NOT_FOUND_RETRIES {
                            complete = false;
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(5 << misses)).await;
                    }
                }
            }
            Done::Repaired {
                channel,
                gen,
                msgs,
                complete,
            }
        });
    }

    pub(super) fn on_repaired(
        &mut self,
        channel: &Arc<str>,
        gen: u64,
        msgs: Vec<StreamMessage>,
        complete: bool,
    ) {
        let Some(live) = self.lives.get_mut(channel) else {
            return;
        };
        if live.gen != gen {
            return;
        }
        live.phase = Phase::Ready;
        let fetched: Vec<LiveMsg> = msgs.iter().filter_map(LiveMsg::from_stream).collect();
        let repaired = !fetched.is_empty();
        // Fetched messages come first, before anything held; each is the stream's truth, so
        // a jump among them is past retention: delivered and announced. If the loop queue
        // fills meanwhile, the rest wait in the hold, in order, behind the one refused.
        let mut parked: Option<usize> = None;
        for msg in fetched {
            let Some(live) = self.lives.get_mut(channel) else {
                return;
            };
            if let Some(at) = parked.as_mut() {
                live.hold.insert((*at).min(live.hold.len()), msg);
                *at += 1;
                continue;
            }
            live.force_jump = true;
            self.process(channel, msg);
            if self
                .lives
                .get(channel)
                .is_some_and(|l| l.phase != Phase::Ready)
            {
                parked = Some(1);
            }
        }
        if let Some(live) = self.lives.get_mut(channel) {
            // Nothing more can be fetched before the first held message: it is next, with
            // its jump if the stream no longer holds what came before it.
            live.force_jump = !live.hold.is_empty();
            if repaired && complete {
                self.stats.inc(Stat::GapsRepaired);
            }
        }
        self.release(channel);
    }

    /// Re-reads the head of every live channel (after a reconnect or a slow consumer).
    pub(super) fn resync_all(&mut self) {
        let all: Vec<(Arc<str>, u64)> =
            self.lives.iter().map(|(c, l)| (c.clone(), l.gen)).collect();
        for (channel, gen) in all {
            self.spawn_resync(&channel, gen, Duration::ZERO);
        }
    }

    fn spawn_resync(&self, channel: &Arc<str>, gen: u64, delay: Duration) {
        let Some(stream) = self.io.stream(channel) else {
            return;
        };
        let subject = subject::ingest(channel, self.io.shards);
        let channel = channel.clone();
        self.io.spawn(async move {
            if !delay.is_zero() {
                // A zero sleep would still wait for the timer wheel's next millisecond.
                tokio::time::sleep(delay).await;
            }
            let result = read_head(&stream, &subject).await;
            Done::ResyncHead {
                channel,
                gen,
                result,
            }
        });
    }

    /// A head re-read: anything stored past what was delivered is fetched (a message lost
    /// just before a quiet period shows no seq jump otherwise).
    pub(super) fn on_resync_head(&mut self, channel: &Arc<str>, gen: u64, result: HeadRead) {
        let Some(live) = self.lives.get_mut(channel) else {
            return;
        };
        if live.gen != gen {
            return;
        }
        if live.phase == Phase::Syncing {
            return self.on_sub_head(channel, result);
        }
        let head = match result {
            Ok(Some(m)) => head_of(&m),
            Ok(None) => None,
            Err(_) => {
                return self.spawn_resync(channel, gen, Duration::from_millis(200));
            }
        };
        let Some(head) = head else {
            return;
        };
        if head.sseq > live.delivered.sseq && live.phase == Phase::Ready {
            self.stats.inc(Stat::GapsDetected);
            live.phase = Phase::Repairing;
            let after = live.delivered.sseq;
            self.spawn_repair(channel, gen, after, head.sseq + 1, Duration::ZERO);
        }
    }
}

/// Holds a message that arrived during a sync or a repair (bounded).
fn hold_back(live: &mut Live, msg: LiveMsg, stats: &crate::cluster::ClusterStats) {
    if live.hold.len() >= HOLD_MAX {
        // Too far behind: drop what is held; the head re-read fetches it from the stream.
        live.hold.clear();
        live.resync = true;
        stats.inc(Stat::GapsDetected);
        return;
    }
    live.hold.push_back(msg);
}

/// The channel's last message (`None`: empty), asked again a few times if unanswered.
async fn read_head(stream: &Store, subject: &str) -> HeadRead {
    let mut last = Err(String::new());
    for attempt in 0..3u64 {
        last = stream.last(subject).await;
        if last.is_ok() {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(20 << attempt)).await;
    }
    last
}

fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
