//! Room ticks (`--tick-for PATTERN=MS`): the owner loop of a matching channel holds its
//! publishes and, once per period, numbers them, encodes them ONCE as one batch frame (more
//! when the batch is over `--max-message-size`, or mixes JSON and binary messages) and hands
//! the same bytes to every interested loop and every subscriber: every member of a room gets
//! the same batch at the same tick, one outbox entry each.
//!
//! Owns: the held publishes of each room with pending messages (`Ticks::rooms`), the schedule
//! of their next ticks (a min-heap: the loop's timer wheel has a 10 ms resolution, too coarse
//! for 16 ms ticks), the encoding of a tick's batch and its delivery on every loop.
//!
//! Rules:
//! - Held messages are not numbered yet: a subscribe answered meanwhile reports the seq
//!   before them, and they come to the new subscriber in the next batch (no gap, no
//!   duplicate; history and last value keep each message once it is numbered). Publishers are
//!   acknowledged at the tick, with the seq their message has in the batch.
//! - Ticks are aligned on multiples of the period of the loop clock, so rooms with one period
//!   fire in the same turn. A room with nothing held has no entry and costs nothing: an empty
//!   tick sends nothing.
//! - Bounded: a room holds at most `publish_queue_len_max` messages and
//!   `publish_queue_bytes_max` bytes; reaching either ticks it at once (`forced`, counted).
//! - Everyone gets the same batch, including a subscriber's own messages (its `from` says so):
//!   a batch per publisher would defeat encode-once.
//! - A channel without a tick rule never reaches this module: one `is_empty` test per run of
//!   publishes when no rule is configured, one pattern walk per run otherwise.
//!
//! Encodes frames ONCE for many subscribers (encode-once is an invariant): these are not
//! per-connection replies and stay here; a batch is shared by the whole room; every reply to one connection is a `session::Reply`
//! encoded by its session, and each subscriber gets the shared frame through
//! `Session::handle_delivery`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::command as encode;
use crate::config::SlowConsumerPolicy;
use crate::conn_id::{ConnId, LoopId};
use crate::hash::FxHashMap;
use crate::metrics::Counter;
use crate::outbox::SendStatus;
use crate::proto::frame::{encode_header, OpCode, CLIENT_HEADER_BYTES_MAX};
use crate::pubsub::local::SeqGap;
use crate::runtime::deliver::Overflow;
use crate::runtime::event_loop::EventLoop;
use crate::runtime::mesh::LoopMsg;
use crate::runtime::publish::{encode_run, PublishQueue};

/// One tick's messages of one room, numbered and encoded once; shared read-only by every loop
/// that delivers it.
#[derive(Debug)]
pub struct TickBatch {
    /// Channel name.
    pub channel: Arc<str>,
    /// Seq of the first message.
    pub first_seq: u64,
    /// Seq of the last message.
    pub last_seq: u64,
    /// The batch frames, back to back (usually one).
    pub bytes: Bytes,
    /// Number of frames in `bytes`.
    pub frames: u32,
    /// The first frame is binary (a pending gap notice is told in binary then).
    pub binary: bool,
    /// The earliest read time of its messages (relay latency is measured from it).
    pub read_at_ns: u64,
}

impl TickBatch {
    /// Messages in the batch.
    pub fn messages(&self) -> u64 {
        self.last_seq - self.first_seq + 1
    }
}

/// A room with held publishes.
#[derive(Debug)]
struct Room {
    /// When it ticks next.
    due_ns: u64,
    held: PublishQueue,
}

/// A loop's rooms with held publishes and their schedule.
#[derive(Debug, Default)]
pub(super) struct Ticks {
    rooms: FxHashMap<Arc<str>, Room>,
    /// Cluster mode: rooms holding live messages from the stream (`cluster_tick.rs`).
    pub(super) live: FxHashMap<Arc<str>, super::cluster_tick::LiveRoom>,
    /// (due, channel) of every room in `rooms` and `live`; exactly one entry per room.
    pub(super) schedule: BinaryHeap<Reverse<(u64, Arc<str>)>>,
    /// Empty queues kept for reuse (their arenas stay warm), at most `SPARE_QUEUES_MAX`.
    spare: Vec<PublishQueue>,
}

/// Emptied hold queues kept for the next rooms that fill (memory stays bounded by it).
const SPARE_QUEUES_MAX: usize = 64;

impl Ticks {
    /// When the earliest room ticks (`None`: nothing is held).
    pub(super) fn next_due_ns(&self) -> Option<u64> {
        self.schedule.peek().map(|Reverse((due, _))| *due)
    }
}

/// The next multiple of `period_ns` after `now_ns`.
pub(super) fn next_tick_ns(now_ns: u64, period_ns: u64) -> u64 {
    (now_ns / period_ns + 1) * period_ns
}

impl EventLoop {
    /// Holds a run of publishes of a room until its tick (the owner's part of `publish_owned`).
    pub(super) fn hold_for_tick(
        &mut self,
        queue: &PublishQueue,
        channel: &Arc<str>,
        run: Range<usize>,
        period: Duration,
    ) {
        let period_ns = period.as_nanos().max(1) as u64;
        let now_ns = self.now_ns;
        let (len_max, bytes_max) = (
            self.env.config.publish_queue_len_max,
            self.env.config.publish_queue_bytes_max,
        );
        let ticks = &mut self.channels.ticks;
        let room = ticks.rooms.entry(channel.clone()).or_insert_with(|| {
            let due_ns = next_tick_ns(now_ns, period_ns);
            ticks.schedule.push(Reverse((due_ns, channel.clone())));
            let held = ticks
                .spare
                .pop()
                .unwrap_or_else(|| PublishQueue::new(len_max, bytes_max));
            Room { due_ns, held }
        });
        room.held.push_from(queue, run);
        if room.held.at_bound() {
            self.metrics.inc(Counter::TickForced);
            self.tick_room(channel);
        }
    }

    /// Ticks every room that is due (called once per turn when something is held).
    pub(super) fn fire_ticks(&mut self) {
        while let Some(Reverse((due_ns, channel))) = self.channels.ticks.schedule.peek().cloned() {
            if due_ns > self.now_ns {
                break;
            }
            self.channels.ticks.schedule.pop();
            // A room ticked early (forced) has a new entry or none: skip stale ones.
            if self
                .channels
                .ticks
                .rooms
                .get(&channel)
                .is_some_and(|r| r.due_ns == due_ns)
            {
                self.tick_room(&channel);
            } else if self
                .channels
                .ticks
                .live
                .get(&channel)
                .is_some_and(|r| r.due_ns == due_ns)
            {
                self.tick_live_room(&channel);
            }
        }
    }

    /// Ticks every room now, whatever its schedule (shutdown).
    pub(super) fn tick_all_now(&mut self) {
        let rooms: Vec<Arc<str>> = self.channels.ticks.rooms.keys().cloned().collect();
        for channel in &rooms {
            self.tick_room(channel);
        }
        let live: Vec<Arc<str>> = self.channels.ticks.live.keys().cloned().collect();
        for channel in &live {
            self.tick_live_room(channel);
        }
        self.channels.ticks.schedule.clear();
    }

    /// Numbers a room's held publishes, acknowledges them, retains them, encodes the batch
    /// once and delivers it everywhere.
    fn tick_room(&mut self, channel: &Arc<str>) {
        let Some(Room { mut held, .. }) = self.channels.ticks.rooms.remove(channel) else {
            return;
        };
        let count = held.items().len();
        if count > 0 {
            self.publish_tick(&mut held, channel, count);
        }
        held.clear();
        if self.channels.ticks.spare.len() < SPARE_QUEUES_MAX {
            self.channels.ticks.spare.push(held);
        }
    }

    fn publish_tick(&mut self, held: &mut PublishQueue, channel: &Arc<str>, count: usize) {
        let Some(reserved) = self
            .channels
            .owned
            .reserve(channel, count as u64, self.now_ns)
        else {
            // Nobody subscribes and nothing is retained: it reaches no one, unnumbered.
            return self.send_acks(held, channel, 0..count, None);
        };
        let first_seq = reserved.first_seq;
        self.send_acks(held, channel, 0..count, Some(first_seq));
        if self.channels.owned.retains() {
            // Recovery and last value replay single messages, as on any channel.
            let run = encode_run(held, channel, 0..count, first_seq);
            let frames = (0..run.frames.len()).map(|i| run.prepared(i));
            let evicted = self
                .channels
                .owned
                .retain(channel, first_seq, frames, self.now_ns);
            self.metrics.add(Counter::HistoryEvicted, evicted);
        }
        let limit = self.env.config.message_bytes_max;
        let batch = encode_tick(held, channel, first_seq, limit);
        self.send_tick_batch(batch, reserved.interest);
    }

    /// Hands a tick's batch (encoded once) to every interested loop, this one directly.
    pub(super) fn send_tick_batch(&mut self, batch: TickBatch, interest: u64) {
        let batch = Arc::new(batch);
        self.metrics.inc(Counter::TickBatches);
        self.metrics.add(
            Counter::TickSplits,
            u64::from(batch.frames.saturating_sub(1)),
        );
        let me = 1u64 << self.id;
        let mut others = interest & !me;
        while others != 0 {
            let to = others.trailing_zeros() as LoopId;
            others &= others - 1;
            let batch = batch.clone();
            self.mesh_send(to, LoopMsg::Tick { batch });
        }
        if interest & me != 0 {
            self.deliver_tick(&batch);
        }
    }

    /// Queues a tick's batch to every local subscriber of its room: one outbox entry each.
    pub(super) fn deliver_tick(&mut self, batch: &TickBatch) {
        let channel = &*batch.channel;
        if let Some(gap) = self
            .channels
            .local
            .note_seqs(channel, batch.first_seq, batch.last_seq)
        {
            self.note_gap_for_all(channel, gap, batch.binary);
        }
        let Some(subscribers) = self.channels.local.subscribers(channel) else {
            return;
        };
        let range = SeqGap {
            from: batch.first_seq,
            to: batch.last_seq,
        };
        let mut overflowed = std::mem::take(&mut self.work.overflowed);
        let mut delivered = 0;
        for &cid in subscribers {
            let Some(conn) = self.conns.get_mut(cid) else {
                continue;
            };
            let fits = conn.session.delivery_fits(batch.bytes.len());
            if fits
                && conn.session.gaps_untold()
                && conn.session.queue_gap_notice(channel, batch.binary) == SendStatus::Full
            {
                overflowed.push((cid, range, Overflow::Control));
                continue;
            }
            let status =
                conn.session
                    .handle_delivery_n(batch.bytes.clone(), batch.read_at_ns, batch.frames);
            match status {
                SendStatus::Queued => {
                    delivered += batch.messages();
                    conn.mark_dirty(&mut self.work.dirty);
                }
                SendStatus::Full => overflowed.push((cid, range, Overflow::Data)),
                SendStatus::Closed => overflowed.push((cid, range, Overflow::Closed)),
            }
        }
        self.metrics.add(Counter::MessagesDelivered, delivered);
        let policy = self.env.config.slow_consumer_for(channel);
        for &(cid, gap, what) in &overflowed {
            self.settle_tick_overflow(cid, batch, gap, what, policy);
        }
        overflowed.clear();
        self.work.overflowed = overflowed;
    }

    /// A subscriber that could not take a batch: the channel's slow-consumer policy (a batch
    /// is never conflated: `conflate` drops it like `drop`, with a gap notice).
    fn settle_tick_overflow(
        &mut self,
        cid: ConnId,
        batch: &TickBatch,
        gap: SeqGap,
        what: Overflow,
        policy: SlowConsumerPolicy,
    ) {
        match (what, policy) {
            (Overflow::Closed, _) => self.metrics.inc(Counter::DropNotOpen),
            (Overflow::Control, _) | (_, SlowConsumerPolicy::Close) => {
                self.close_slow_consumer(cid)
            }
            (_, SlowConsumerPolicy::Drop | SlowConsumerPolicy::Conflate) => {
                self.metrics
                    .add(Counter::DropSlowConsumer, gap.to - gap.from + 1);
                self.note_gap(cid, &batch.channel, gap, batch.binary);
            }
        }
    }
}

/// One message of a tick's batch.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry<'a> {
    /// A binary message.
    pub binary: bool,
    /// The JSON content (verbatim) or the binary payload.
    pub body: &'a [u8],
    /// The publisher's public name.
    pub from: &'a str,
    /// When it was read (or received from the stream, in cluster mode).
    pub read_at_ns: u64,
}

/// Encodes held publishes (seqs from `first_seq`) as batch frames (`encode_entries`).
fn encode_tick(held: &PublishQueue, channel: &Arc<str>, first_seq: u64, limit: usize) -> TickBatch {
    let entries: Vec<Entry<'_>> = held
        .items()
        .iter()
        .map(|p| Entry {
            binary: p.is_binary(),
            body: p.body(held),
            from: p.from(),
            read_at_ns: p.read_at_ns(),
        })
        .collect();
    encode_entries(&entries, channel, first_seq, limit)
}

/// Encodes a tick's messages (seqs from `first_seq`) as batch frames, back to back: a new
/// frame starts when the encoding changes (JSON ↔ binary) or when the next entry would take
/// the frame's payload over `limit` (a single entry over it still goes, alone).
pub(super) fn encode_entries(
    items: &[Entry<'_>],
    channel: &Arc<str>,
    first_seq: u64,
    limit: usize,
) -> TickBatch {
    let hint: usize = items.iter().map(|e| e.body.len() + e.from.len() + 64).sum();
    let mut wire = Vec::with_capacity(hint + channel.len() + 64);
    let mut payload = Vec::new();
    let mut frames = 0u32;
    let mut open: Option<bool> = None; // the open frame's encoding: Some(binary)
    let mut entries = 0usize;
    for (i, p) in items.iter().enumerate() {
        let (binary, body) = (p.binary, p.body);
        let entry_len = match binary {
            true => encode::binary_batch_entry_len(p.from, body),
            false => encode::batch_entry_len(body, p.from),
        };
        let full = entries > 0 && payload.len() + entry_len + 2 > limit;
        if open.is_some_and(|b| b != binary) || full {
            close_frame(&mut wire, &mut payload, open, &mut frames);
            open = None;
        }
        if open.is_none() {
            open = Some(binary);
            entries = 0;
            match binary {
                // Channel names are at most 255 bytes (config validation): cannot fail.
                true => {
                    let _ = encode::binary_batch_open(&mut payload, channel);
                }
                false => encode::batch_open(&mut payload, channel),
            }
        }
        let seq = first_seq + i as u64;
        match binary {
            true => encode::binary_batch_entry(&mut payload, seq, p.from, body),
            false => encode::batch_entry(&mut payload, entries == 0, body, seq, p.from),
        }
        entries += 1;
    }
    close_frame(&mut wire, &mut payload, open, &mut frames);
    TickBatch {
        channel: channel.clone(),
        first_seq,
        last_seq: first_seq + items.len().saturating_sub(1) as u64,
        bytes: Bytes::from(wire),
        frames,
        binary: items.first().is_some_and(|p| p.binary),
        read_at_ns: items.iter().map(|p| p.read_at_ns).min().unwrap_or(0),
    }
}

/// Closes the open batch frame (if any): its payload framed (RFC 6455 §5.2, a server frame is
/// unmasked) and appended to `wire`.
fn close_frame(wire: &mut Vec<u8>, payload: &mut Vec<u8>, open: Option<bool>, frames: &mut u32) {
    let Some(binary) = open else {
        return;
    };
    let opcode = match binary {
        true => OpCode::Binary,
        false => {
            encode::batch_close(payload);
            OpCode::Text
        }
    };
    let mut header = [0u8; CLIENT_HEADER_BYTES_MAX];
    let header_len = encode_header(&mut header, true, opcode, payload.len() as u64, None);
    wire.extend_from_slice(&header[..header_len]);
    wire.extend_from_slice(payload);
    payload.clear();
    *frames += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_align_on_multiples_of_the_period() {
        assert_eq!(next_tick_ns(0, 16), 16);
        assert_eq!(next_tick_ns(15, 16), 16);
        assert_eq!(next_tick_ns(16, 16), 32);
        assert_eq!(next_tick_ns(1_000_000_007, 50_000_000), 1_050_000_000);
    }
}
