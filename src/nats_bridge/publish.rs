//! The per-channel publisher (docs/CLUSTER.md, "Publish path"): a FIFO of publishes, at most
//! one batch in flight, numbered from the channel's head under per-subject compare-and-set
//! (`Nats-Expected-Last-Subject-Sequence`), with a per-writer `Nats-Msg-Id` kept across
//! retries and renumbering. While a batch is in flight, new publishes wait and are coalesced
//! into the next one (up to `--nats-publish-batch`, one origin and one key per batch).
//!
//! Outcomes: PubAck → acks to the publishers that asked, next batch. `WrongLastSequence` →
//! (after an ambiguous attempt: the successor check) re-read the head, renumber, resend.
//! Timeouts and no-responders → resend the same bytes with backoff until
//! `--nats-publish-retry`, then "outcome unknown" to every publisher of the batch.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use async_nats::HeaderMap;
use bytes::Bytes;

use super::central::{Bridge, Done, HeadRead};
use crate::clock::Clock;
use crate::cluster::envelope::{self as env, mint_epoch};
use crate::cluster::stats::Stat;
use crate::cluster::{subject, ClusterMsg, PublishCmd};
use crate::runtime::ack::Ack;

/// CAS conflicts one batch may meet before it is refused (a channel fought over by writers
/// at a rate its round trip cannot serve).
const CONFLICTS_MAX: u32 = 1000;

/// A channel's numbering as the stream has it: the epoch, the last seq, and the stream
/// sequence of its last message (0 and 0: the channel is empty).
#[derive(Debug, Clone)]
pub(super) struct Head {
    pub epoch: Arc<str>,
    pub seq: u64,
    pub sseq: u64,
}

impl Head {
    pub(super) fn empty() -> Self {
        Head {
            epoch: Arc::from(""),
            seq: 0,
            sseq: 0,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.seq == 0 && self.sseq == 0
    }
}

/// A header's value.
pub(super) fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).map(|v| v.as_str())
}

/// A header's value as a number.
pub(super) fn header_u64(h: &HeaderMap, name: &str) -> Option<u64> {
    header(h, name).and_then(|v| v.trim().parse().ok())
}

/// The head a stored message stands for (`None`: not a wsrelay message).
pub(super) fn head_of(msg: &async_nats::jetstream::message::StreamMessage) -> Option<Head> {
    let h = &msg.headers;
    let seq = header_u64(h, env::SEQ)?;
    let count = header_u64(h, env::COUNT)?.max(1);
    Some(Head {
        epoch: Arc::from(header(h, env::EPOCH)?),
        seq: seq.saturating_add(count - 1),
        sseq: msg.sequence,
    })
}

struct Queued {
    cmd: PublishCmd,
    at_ns: u64,
}

/// One batch on its way to the stream.
struct InFlight {
    items: Vec<PublishCmd>,
    msg_id: String,
    started_ns: u64,
    /// An attempt timed out: it may have been stored.
    ambiguous: bool,
    conflicts: u32,
    attempts: u32,
    epoch: Arc<str>,
    first_seq: u64,
    prev: u64,
    payload: Bytes,
}

/// One channel's publisher.
#[derive(Default)]
pub(super) struct Publisher {
    head: Option<Head>,
    fifo: VecDeque<Queued>,
    inflight: Option<InFlight>,
    reading_head: bool,
    /// Keyed snapshots (`--snapshot-for` channels only, decided when the publisher is
    /// made): this relay's key-store updates (`keyed.rs`).
    pub(super) keyed: Option<Box<super::keyed::Applier>>,
}

impl Publisher {
    fn idle(&self) -> bool {
        let applying = self.keyed.as_ref().is_some_and(|a| a.running);
        self.fifo.is_empty() && self.inflight.is_none() && !self.reading_head && !applying
    }

    /// Publishes queued, none in flight (held during a lame-duck move).
    pub(super) fn waiting(&self) -> bool {
        !self.fifo.is_empty() && self.inflight.is_none() && !self.reading_head && !self.holds()
    }

    /// A keyed channel's batch waits for the key store (`keyed.rs`).
    fn holds(&self) -> bool {
        self.keyed.as_ref().is_some_and(|a| a.holds())
    }
}

impl Bridge {
    pub(super) fn on_publish(&mut self, cmd: PublishCmd) {
        if !self.pubs.contains_key(&cmd.channel) {
            let keyed = self.snapshot_channel(&cmd.channel);
            let p = Publisher {
                keyed: keyed.then(Box::default),
                ..Publisher::default()
            };
            self.pubs.insert(cmd.channel.clone(), p);
        }
        let Some(p) = self.pubs.get_mut(&cmd.channel) else {
            return;
        };
        if p.fifo.len() >= self.cfg.queue_max {
            self.stats.inc(Stat::FailChannelQueueFull);
            let reason = "too many publishes wait for this channel";
            return self.fail(vec![cmd], reason);
        }
        let channel = cmd.channel.clone();
        p.fifo.push_back(Queued {
            cmd,
            at_ns: Clock::now_ns(),
        });
        self.pump(&channel);
    }

    /// Batches on their way (or head reads for one).
    pub(super) fn batches_in_flight(&self) -> usize {
        let busy = |p: &&Publisher| p.inflight.is_some() || p.reading_head;
        self.pubs.values().filter(busy).count()
    }

    /// Starts the next batch if none is in flight (and no lame-duck move holds them).
    pub(super) fn pump(&mut self, channel: &Arc<str>) {
        let hold = self.holds_publishes();
        let Some(p) = self.pubs.get_mut(channel) else {
            return;
        };
        if p.inflight.is_some() || p.reading_head || p.holds() || p.fifo.is_empty() || hold {
            if p.idle() && self.pubs.len() > 100_000 {
                self.pubs.remove(channel); // Bounded: forget idle heads beyond 100k channels.
            }
            return;
        }
        let Some(head) = p.head.clone() else {
            p.reading_head = true;
            return self.spawn_head_read(channel, false);
        };
        let items = take_batch(&mut p.fifo, self.cfg.batch_max, self.cfg.payload_budget);
        self.msg_counter += 1;
        let mut fl = InFlight {
            items,
            msg_id: format!("{}.{}", self.cfg.node, self.msg_counter),
            started_ns: Clock::now_ns(),
            ambiguous: false,
            conflicts: 0,
            attempts: 0,
            epoch: Arc::from(""),
            first_seq: 0,
            prev: 0,
            payload: Bytes::new(),
        };
        number(&mut fl, &head, channel);
        if let Some(p) = self.pubs.get_mut(channel) {
            p.inflight = Some(fl);
        }
        self.send_inflight(channel);
    }

    /// Reads the channel's head for the publisher (`successor`: the message after the
    /// in-flight batch's CAS value instead).
    fn spawn_head_read(&self, channel: &Arc<str>, successor_of: bool) {
        let Some(stream) = self.io.stream(channel) else {
            return;
        };
        let subject = subject::ingest(channel, self.io.shards);
        let channel = channel.clone();
        let after = self
            .pubs
            .get(&channel)
            .and_then(|p| p.inflight.as_ref())
            .map_or(0, |f| f.prev);
        self.io.spawn(async move {
            if successor_of {
                let result = stream.next(&subject, after + 1).await;
                return Done::Successor { channel, result };
            }
            let result = stream.last(&subject).await;
            Done::PubHead { channel, result }
        });
    }

    /// Sends (or sends again) the in-flight batch.
    pub(super) fn send_inflight(&mut self, channel: &Arc<str>) {
        let Some(fl) = self.pubs.get_mut(channel).and_then(|p| p.inflight.as_mut()) else {
            return;
        };
        fl.attempts += 1;
        let msg = publish_message(fl, &self.cfg.node);
        let subject = subject::ingest(channel, self.io.shards);
        let js = self.io.js.clone();
        let channel = channel.clone();
        self.io.spawn(async move {
            let sent_ns = Clock::now_ns();
            let result = match js.send_publish(subject, msg).await {
                Ok(ack) => ack.await.map_err(|e| e.kind()),
                Err(e) => Err(e.kind()),
            };
            Done::Published {
                channel,
                sent_ns,
                result,
            }
        });
    }

    pub(super) fn on_pub_head(&mut self, channel: &Arc<str>, result: HeadRead) {
        let Some(p) = self.pubs.get_mut(channel) else {
            return;
        };
        let head = match result {
            Ok(Some(msg)) => head_of(&msg),
            Ok(None) => Some(Head::empty()),
            Err(_) => None,
        };
        let Some(head) = head else {
            // No answer (no leader yet, disconnected): try again shortly, within the bound.
            return self.head_read_failed(channel);
        };
        if p.reading_head {
            p.reading_head = false;
            p.head = Some(head);
            return self.pump(channel);
        }
        // A renumbering after a conflict.
        p.head = Some(head.clone());
        if let Some(fl) = p.inflight.as_mut() {
            number(fl, &head, channel);
            fl.ambiguous = false;
            self.send_inflight(channel);
        }
    }

    fn head_read_failed(&mut self, channel: &Arc<str>) {
        let now = Clock::now_ns();
        let retry_max = self.cfg.retry_max_ns;
        let Some(p) = self.pubs.get_mut(channel) else {
            return;
        };
        let oldest = p
            .inflight
            .as_ref()
            .map(|f| f.started_ns)
            .or_else(|| p.fifo.front().map(|q| q.at_ns))
            .unwrap_or(now);
        if now.saturating_sub(oldest) > retry_max {
            let mut items: Vec<PublishCmd> = p.inflight.take().map(|f| f.items).unwrap_or_default();
            items.extend(p.fifo.drain(..).map(|q| q.cmd));
            p.reading_head = false;
            p.head = None;
            self.stats.add(Stat::FailOutcomeUnknown, items.len() as u64);
            return self.fail(items, "the cluster did not answer in time; outcome unknown");
        }
        let successor = false;
        let channel2 = channel.clone();
        let io = self.io.clone();
        let delay = Duration::from_millis(50 + super::central::jitter_ms(50));
        let stream = self.io.stream(channel);
        let subject = subject::ingest(channel, self.io.shards);
        let _ = successor;
        io.spawn(async move {
            tokio::time::sleep(delay).await;
            let result = match stream {
                Some(s) => s.last(&subject).await,
                None => Err("no stream".into()),
            };
            Done::PubHead {
                channel: channel2,
                result,
            }
        });
    }

    pub(super) fn on_published(
        &mut self,
        channel: &Arc<str>,
        sent_ns: u64,
        result: Result<PublishAck, PublishErrorKind>,
    ) {
        self.stats
            .record_ack_ns(Clock::now_ns().saturating_sub(sent_ns));
        match result {
            Ok(ack) => self.on_ack(channel, ack.sequence),
            Err(PublishErrorKind::WrongLastSequence) => self.on_conflict(channel),
            Err(PublishErrorKind::MaxPayloadExceeded) => {
                let items = self.take_inflight(channel);
                self.stats.add(Stat::FailRejected, items.len() as u64);
                self.fail(items, "the message is larger than the cluster accepts");
                self.pump(channel);
            }
            Err(_) => self.on_ambiguous(channel),
        }
    }

    fn take_inflight(&mut self, channel: &Arc<str>) -> Vec<PublishCmd> {
        self.pubs
            .get_mut(channel)
            .and_then(|p| p.inflight.take())
            .map(|f| f.items)
            .unwrap_or_default()
    }

    /// Stored at stream sequence `sseq`: the new head; acknowledge; next batch.
    fn on_ack(&mut self, channel: &Arc<str>, sseq: u64) {
        let Some(p) = self.pubs.get_mut(channel) else {
            return;
        };
        let Some(fl) = p.inflight.take() else {
            return;
        };
        let count = fl.items.len() as u64;
        p.head = Some(Head {
            epoch: fl.epoch.clone(),
            seq: fl.first_seq + count - 1,
            sseq,
        });
        if fl.ambiguous {
            let waited_ms = Clock::now_ns().saturating_sub(fl.started_ns) / 1_000_000;
            self.stats.inc(Stat::PublishStalls);
            self.stats.record_stall_ms(waited_ms);
        }
        self.stats.add(Stat::Published, count);
        let job = p.keyed.is_some().then(|| apply_job(&fl, sseq));
        self.acknowledge(channel, fl.items, fl.first_seq);
        if let Some(job) = job.flatten() {
            // Keyed snapshots: the key store takes this batch (`keyed.rs`).
            self.apply_after_ack(channel, job);
        }
        self.pump(channel);
    }

    fn acknowledge(&mut self, channel: &Arc<str>, items: Vec<PublishCmd>, first_seq: u64) {
        let mut per_loop: Vec<(usize, Vec<Ack>)> = Vec::new();
        for (i, cmd) in items.into_iter().enumerate() {
            let Some(id) = cmd.ack else {
                continue;
            };
            let ack = Ack {
                conn: cmd.origin.conn,
                id,
                seq: Some(first_seq + i as u64),
                binary: cmd.binary,
            };
            match per_loop.iter_mut().find(|(l, _)| *l == cmd.origin.loop_id) {
                Some((_, acks)) => acks.push(ack),
                None => per_loop.push((cmd.origin.loop_id, vec![ack])),
            }
        }
        for (to, acks) in per_loop {
            let channel = channel.clone();
            self.out.control(to, ClusterMsg::Acked { channel, acks });
        }
    }

    /// Tells every publisher of `items` that its publish failed.
    pub(super) fn fail(&mut self, items: Vec<PublishCmd>, reason: &'static str) {
        for cmd in items {
            let msg = ClusterMsg::Failed {
                conn: cmd.origin.conn,
                ack: cmd.ack,
                reason,
            };
            self.out.control(cmd.origin.loop_id, msg);
        }
    }

    fn on_conflict(&mut self, channel: &Arc<str>) {
        self.stats.inc(Stat::CasConflicts);
        let Some(fl) = self.pubs.get_mut(channel).and_then(|p| p.inflight.as_mut()) else {
            return;
        };
        fl.conflicts += 1;
        if fl.conflicts > CONFLICTS_MAX {
            let items = self.take_inflight(channel);
            self.stats.add(Stat::FailRejected, items.len() as u64);
            self.fail(items, "too many concurrent writers on this channel");
            return self.pump(channel);
        }
        // After an ambiguous attempt, the batch may be stored already: it can only be the
        // successor of its CAS value (docs/CLUSTER.md, "the successor check").
        let ambiguous = fl.ambiguous;
        self.spawn_head_read(channel, ambiguous);
    }

    pub(super) fn on_successor(&mut self, channel: &Arc<str>, result: HeadRead) {
        let Some(fl) = self.pubs.get_mut(channel).and_then(|p| p.inflight.as_mut()) else {
            return;
        };
        if let Ok(Some(msg)) = &result {
            let id = header(&msg.headers, "Nats-Msg-Id");
            if id == Some(fl.msg_id.as_str()) {
                return self.on_ack(channel, msg.sequence);
            }
        }
        if result.is_err() {
            return self.on_ambiguous(channel);
        }
        self.spawn_head_read(channel, false);
    }

    /// No answer (timeout, no stream leader, disconnected): resend the same bytes after a
    /// backoff, within `--nats-publish-retry`.
    fn on_ambiguous(&mut self, channel: &Arc<str>) {
        self.stats.inc(Stat::PublishRetries);
        let now = Clock::now_ns();
        let retry_max = self.cfg.retry_max_ns;
        let Some(fl) = self.pubs.get_mut(channel).and_then(|p| p.inflight.as_mut()) else {
            return;
        };
        fl.ambiguous = true;
        if now.saturating_sub(fl.started_ns) > retry_max {
            let items = self.take_inflight(channel);
            if let Some(p) = self.pubs.get_mut(channel) {
                p.head = None;
            }
            self.stats.add(Stat::FailOutcomeUnknown, items.len() as u64);
            self.fail(items, "the cluster did not answer in time; outcome unknown");
            return self.pump(channel);
        }
        let backoff = 20u64 << fl.attempts.min(5);
        let delay = Duration::from_millis(backoff + super::central::jitter_ms(backoff));
        let channel = channel.clone();
        self.io.spawn(async move {
            tokio::time::sleep(delay).await;
            Done::Resend { channel }
        });
    }
}

/// A stored batch as a key-store update: its last record (every record has the batch's key).
fn apply_job(fl: &InFlight, sseq: u64) -> Option<super::keys::ApplyJob> {
    let last = fl.items.last()?;
    let last_seq = fl.first_seq + fl.items.len() as u64 - 1;
    let rec = super::keys::Rec {
        seq: last_seq,
        content: last.body.clone(),
        binary: last.binary,
        deleted: last.delete,
    };
    Some(super::keys::ApplyJob {
        upto: sseq,
        prev: fl.prev,
        epoch: fl.epoch.clone(),
        first_seq: fl.first_seq,
        last_seq,
        key: last.key.as_deref().unwrap_or_default().to_string(),
        rec,
        since_ns: Clock::now_ns(),
    })
}

/// The batch: consecutive publishes of one origin, one key and one kind (text/binary),
/// at most `max` of them and about `budget` bytes.
fn take_batch(fifo: &mut VecDeque<Queued>, max: usize, budget: usize) -> Vec<PublishCmd> {
    let mut items: Vec<PublishCmd> = Vec::new();
    let mut bytes = 0;
    while let Some(q) = fifo.front() {
        if let Some(first) = items.first() {
            let same = q.cmd.origin == first.origin
                && q.cmd.key == first.key
                && q.cmd.binary == first.binary;
            if !same || items.len() >= max || bytes + q.cmd.body.len() + 512 > budget {
                break;
            }
        }
        bytes += q.cmd.body.len() + 512;
        if let Some(q) = fifo.pop_front() {
            items.push(q.cmd);
        }
    }
    items
}

/// Numbers the batch after `head` (a new epoch on an empty channel) and encodes its frames.
fn number(fl: &mut InFlight, head: &Head, channel: &Arc<str>) {
    let (epoch, first_seq, prev) = match head.is_empty() {
        true => (mint_epoch(), 1, 0),
        false => (head.epoch.clone(), head.seq + 1, head.sseq),
    };
    let bodies: Vec<Vec<u8>> = fl
        .items
        .iter()
        .enumerate()
        .map(|(i, cmd)| {
            let seq = first_seq + i as u64;
            let mut out = Vec::with_capacity(cmd.body.len() + 96 + channel.len());
            if cmd.binary {
                // Channel names are at most 255 bytes (config validation): cannot fail.
                let _ = crate::command::encode_binary_message(&mut out, channel, seq, &cmd.body);
            } else {
                // The same body as one node's (`runtime/publish.rs`): a keyed publish's
                // delivery carries its `key` (and `"delete":true`).
                let message = (&**channel, &cmd.body[..], &*cmd.from, seq);
                let key = cmd.key.as_deref();
                crate::command::encode_keyed_message(&mut out, message, key, cmd.delete);
            }
            out
        })
        .collect();
    fl.payload = env::encode_records(&bodies);
    fl.epoch = epoch;
    fl.first_seq = first_seq;
    fl.prev = prev;
}

/// The JetStream message of the in-flight batch.
fn publish_message(fl: &InFlight, node: &str) -> PublishMessage {
    let mut h = HeaderMap::new();
    h.insert(env::SEQ, fl.first_seq.to_string().as_str());
    h.insert(env::COUNT, fl.items.len().to_string().as_str());
    h.insert(env::EPOCH, &*fl.epoch);
    h.insert(env::PREV, fl.prev.to_string().as_str());
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    h.insert(env::TS, ts.to_string().as_str());
    if let Some(first) = fl.items.first() {
        h.insert(env::FROM, env::from_header(node, first.origin).as_str());
        h.insert(env::NAME, &*first.from);
        if first.binary {
            h.insert(env::BINARY, "1");
        }
        if let Some(key) = &first.key {
            h.insert(env::KEY, &**key);
        }
    }
    PublishMessage::build()
        .payload(fl.payload.clone())
        .headers(h)
        .message_id(&fl.msg_id)
        .expected_last_subject_sequence(fl.prev)
}
