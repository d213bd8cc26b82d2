//! Delivery on the loop: a numbered, encoded run of messages (a `Batch`) reaches this loop's
//! subscribers of its channel, with the slow-consumer policy applied per subscriber; and the
//! inbox of messages from other loops.
//!
//! The path of one publish (see ARCHITECTURE.md): read loop → owner loop (numbers the run,
//! encodes it once, `publish.rs`) → every interested loop (one mesh message each) → each
//! subscriber's outbox (a `Bytes` handle clone of the whole run, no copy) → `sendmsg`.
//!
//! Each subscriber is handed the shared frames through its session (`handle_delivery`,
//! `handle_delivery_n`, `handle_conflated_delivery`: inlined, exactly the outbox's own step);
//! gap notices, conflated or not, are encoded by the session. Nothing here encodes JSON.

use std::sync::Arc;

use bytes::Bytes;

use crate::config::SlowConsumerPolicy;
use crate::conn_id::{ConnId, ConnRef, LoopId};
use crate::metrics::Counter;
use crate::outbox::SendStatus;
use crate::proto::deflate::Deflater;
use crate::proto::frame::{OpCode, PreparedFrame};
use crate::pubsub::local::SeqGap;
use crate::pubsub::Since;
use crate::runtime::compression::{self, CompressedRun, CompressedVariants};
use crate::runtime::conn::Conn;
use crate::runtime::event_loop::EventLoop;
use crate::runtime::mesh::{LoopMsg, MeshSend, PublishBody};
use crate::runtime::publish::PublishMeta;

/// A run of consecutive messages of one channel, numbered from `first_seq` and encoded once,
/// back to back, into `bytes`. Shared read-only by every loop that delivers it.
#[derive(Debug)]
pub struct Batch {
    /// Channel name.
    pub channel: Arc<str>,
    /// Seq of the first message.
    pub first_seq: u64,
    /// The frames, back to back.
    pub bytes: Bytes,
    /// One entry per message, in seq order.
    pub frames: Vec<FrameMeta>,
    /// Its permessage-deflate copies, built when a compressed subscriber first needs one
    /// (`compression.rs`); empty with `--deflate` off.
    pub compressed: CompressedVariants,
}

/// Where one message of a batch is, and where it came from.
#[derive(Debug, Clone, Copy)]
pub struct FrameMeta {
    /// Offset of the frame in `Batch::bytes`.
    pub start: u32,
    /// Length of the frame.
    pub len: u32,
    /// The publisher (never receives its own message).
    pub origin: Option<ConnRef>,
    /// When the publish was read off the publisher's socket.
    pub read_at_ns: u64,
    /// Conflation key (the channel, or the channel and the publish's `key`).
    pub conflation_key: u64,
}

impl Batch {
    /// Seq of the last message.
    pub(super) fn last_seq(&self) -> u64 {
        self.first_seq + self.frames.len().saturating_sub(1) as u64
    }

    pub(super) fn frame_bytes(&self, i: usize) -> Bytes {
        let f = &self.frames[i];
        let start = f.start as usize;
        self.bytes.slice(start..start + f.len as usize)
    }

    /// Message `i` as a frame of its own (history, last value): a slice, not a copy.
    pub fn prepared(&self, i: usize) -> PreparedFrame {
        PreparedFrame::from_wire(self.frame_bytes(i))
    }

    /// The earliest read time in the run (the relay latency of the whole run is measured
    /// from it: conservative).
    fn read_at_ns(&self) -> u64 {
        self.frames.first().map_or(0, |f| f.read_at_ns)
    }

    /// The run is binary frames.
    pub(super) fn is_binary(&self) -> bool {
        self.bytes
            .first()
            .is_some_and(|b| b & 0x0f == OpCode::Binary.as_u8())
    }
}

impl EventLoop {
    /// Queues the batch to every local subscriber of its channel except each message's
    /// publisher.
    pub(super) fn deliver_batch(&mut self, batch: &Batch) {
        let channel = &*batch.channel;
        if let Some(gap) = self
            .channels
            .local
            .note_seqs(channel, batch.first_seq, batch.last_seq())
        {
            self.note_gap_for_all(channel, gap, batch.is_binary());
        }
        if !self.channels.throttles.is_empty() {
            self.throttle_batch(batch);
        }
        let me = self.id;
        let local_origins = self.local_origins_of(batch);
        let policy = self.env.config.slow_consumer_for(channel);
        let Some(subscribers) = self.channels.local.subscribers(channel) else {
            self.scratch.local_origins = local_origins;
            return;
        };
        let mut delivered = 0u64;
        let mut compressed_subs = std::mem::take(&mut self.scratch.compressed_subs);
        for &cid in subscribers {
            let Some(conn) = self.conns.get_mut(cid) else {
                continue;
            };
            // permessage-deflate subscribers are served after the others (`deliver_deflate`).
            if conn.deflate.is_some() {
                compressed_subs.push(cid);
                continue;
            }
            let own = local_origins.contains(&cid);
            let conflate = policy == SlowConsumerPolicy::Conflate && conn.flush.is_blocked();
            // A run that does not fit as a whole goes message by message: what fits is queued
            // and only the rest meets the slow-consumer policy (a run is an optimisation and
            // must not change what a subscriber receives).
            let split = !conn.session.delivery_fits(batch.bytes.len());
            let queued = if own || conflate || split {
                push_one_by_one(
                    conn,
                    batch,
                    &mut Wire::Plain,
                    me,
                    conflate,
                    &mut self.work.overflowed,
                )
            } else {
                push_run(conn, batch, None, &mut self.work.overflowed)
            };
            if queued > 0 {
                delivered += queued;
                conn.mark_dirty(&mut self.work.dirty);
            }
        }
        if !compressed_subs.is_empty() {
            delivered += self.deliver_deflate(batch, &compressed_subs, &local_origins, policy);
            compressed_subs.clear();
        }
        self.scratch.compressed_subs = compressed_subs;
        self.scratch.local_origins = local_origins;
        self.metrics.add(Counter::MessagesDelivered, delivered);
        self.settle_overflow(batch, policy);
    }

    /// This loop's publishers in the run (usually none or one), found once per run rather
    /// than scanned per subscriber (in `self.scratch.local_origins`' buffer, to be given back).
    fn local_origins_of(&mut self, batch: &Batch) -> Vec<ConnId> {
        let me = self.id;
        let mut local_origins = std::mem::take(&mut self.scratch.local_origins);
        local_origins.clear();
        let local = batch
            .frames
            .iter()
            .filter_map(|f| f.origin.filter(|o| o.loop_id == me));
        for origin in local {
            if !local_origins.contains(&origin.conn) {
                local_origins.push(origin.conn);
            }
        }
        local_origins
    }

    /// The batch to the subscribers that negotiated permessage-deflate: the shared compressed
    /// copy for their server window, or, with their own context, message by message.
    fn deliver_deflate(
        &mut self,
        batch: &Batch,
        subs: &[ConnId],
        local_origins: &[ConnId],
        policy: SlowConsumerPolicy,
    ) -> u64 {
        let largest = batch.frames.iter().map(|f| f.len as usize).max();
        let mut delivered = 0;
        for &cid in subs {
            let Some((bits, takeover)) = self.conns.get_mut(cid).and_then(|c| {
                let d = c.deflate.as_ref()?;
                Some((d.params.server_window_bits(), d.own.is_some()))
            }) else {
                continue;
            };
            let index = compression::variant_index(bits, largest.unwrap_or(0));
            let shared = (!takeover).then(|| self.shared_variant(batch, index));
            let own = local_origins.contains(&cid);
            delivered += self.deliver_deflate_to(batch, cid, shared.as_deref(), bits, own, policy);
        }
        delivered
    }

    /// One permessage-deflate subscriber: `shared` is the run's compressed copy, `None` for a
    /// connection with its own context (compressed here, message by message).
    fn deliver_deflate_to(
        &mut self,
        batch: &Batch,
        cid: ConnId,
        shared: Option<&CompressedRun>,
        bits: u8,
        own: bool,
        policy: SlowConsumerPolicy,
    ) -> u64 {
        let (me, min) = (self.id, self.env.config.deflate_min_bytes);
        let mut scratch = std::mem::take(&mut self.scratch.own_scratch);
        let Some(conn) = self.conns.get_mut(cid) else {
            return 0;
        };
        let conflate = policy == SlowConsumerPolicy::Conflate && conn.flush.is_blocked();
        let overflowed = &mut self.work.overflowed;
        let mut agreed = conn.deflate.take();
        let queued = match (agreed.as_mut().and_then(|d| d.own.as_mut()), shared) {
            (Some(ctx), _) => {
                let mut wire = Wire::Own(OwnWire {
                    deflater: &mut ctx.deflater,
                    bits,
                    min,
                    scratch: &mut scratch,
                    compressed: 0,
                });
                let queued = push_one_by_one(conn, batch, &mut wire, me, conflate, overflowed);
                if let Wire::Own(own) = wire {
                    self.metrics
                        .add(Counter::DeflateCompressedConn, own.compressed);
                }
                queued
            }
            (None, Some(run))
                if own || conflate || !conn.session.delivery_fits(run.bytes.len()) =>
            {
                push_one_by_one(
                    conn,
                    batch,
                    &mut Wire::Shared(run),
                    me,
                    conflate,
                    overflowed,
                )
            }
            (None, run) => push_run(conn, batch, run, overflowed),
        };
        conn.deflate = agreed;
        self.scratch.own_scratch = compression::trimmed(scratch);
        if queued > 0 {
            conn.mark_dirty(&mut self.work.dirty);
        }
        queued
    }

    /// Applies the slow-consumer policy to the subscribers whose outbox was full, and tells
    /// conflated ones what was skipped.
    fn settle_overflow(&mut self, batch: &Batch, policy: SlowConsumerPolicy) {
        let overflowed = std::mem::take(&mut self.work.overflowed);
        for &(cid, gap, what) in &overflowed {
            match (what, policy) {
                (Overflow::Conflated, _) => {
                    self.metrics.inc(Counter::DropConflated);
                    self.tell_conflated(cid, batch, gap.from);
                }
                (Overflow::Closed, _) => self.metrics.inc(Counter::DropNotOpen),
                (Overflow::Control, _) | (_, SlowConsumerPolicy::Close) => {
                    self.close_slow_consumer(cid)
                }
                (Overflow::Data, SlowConsumerPolicy::Drop | SlowConsumerPolicy::Conflate) => {
                    self.metrics
                        .add(Counter::DropSlowConsumer, gap.to - gap.from + 1);
                    self.note_gap(cid, &batch.channel, gap, batch.is_binary());
                }
            }
        }
        self.work.overflowed = overflowed;
        self.work.overflowed.clear();
    }

    /// Conflation replaced `skipped` for `cid`: the session queues (or widens) the channel's
    /// one pending conflated gap notice, in the delivery's encoding.
    fn tell_conflated(&mut self, cid: ConnId, batch: &Batch, skipped: u64) {
        let Some(conn) = self.conn_mut(cid) else {
            return;
        };
        let key = notice_key(&batch.channel);
        conn.session
            .tell_conflated(&batch.channel, skipped, batch.is_binary(), key);
    }

    /// Every local subscriber of `channel` missed `gap` (a mesh message was dropped): counted
    /// here, in messages, once per loop (the sender does not count numbered deliveries).
    pub(super) fn note_gap_for_all(&mut self, channel: &str, gap: SeqGap, binary: bool) {
        self.metrics
            .add(Counter::DropMeshFull, gap.to - gap.from + 1);
        let ids: Vec<ConnId> = self
            .channels
            .local
            .subscribers(channel)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        for cid in ids {
            self.note_gap(cid, channel, gap, binary);
        }
    }

    /// Records that `cid` skipped `gap` on `channel`; told before its next delivery there, or
    /// when its outbox has drained (`flush.rs`), whichever comes first.
    pub(super) fn note_gap(&mut self, cid: ConnId, channel: &str, gap: SeqGap, binary: bool) {
        if let Some(conn) = self.conn_mut(cid) {
            conn.session.note_gap(channel, gap, binary);
        }
    }

    /// The owner dropped `gap` of `channel` for this loop and sent nothing of it since: every
    /// local subscriber is marked dirty so that it is told once its outbox has drained
    /// (`flush.rs`), without waiting for the channel's next message.
    fn on_mesh_gap(&mut self, channel: &str, gap: SeqGap, binary: bool) {
        let Some(gap) = self.channels.local.note_dropped(channel, gap) else {
            return;
        };
        self.note_gap_for_all(channel, gap, binary);
        let Some(subscribers) = self.channels.local.subscribers(channel) else {
            return;
        };
        for &cid in subscribers {
            if let Some(conn) = self.conns.get_mut(cid) {
                conn.mark_dirty(&mut self.work.dirty);
            }
        }
    }

    /// Handles up to `Config::inbox_msgs_per_turn_max` messages from other loops.
    pub(super) fn drain_inbox(&mut self) {
        self.work.inbox_backlog = self.drain_cluster();
        let per_turn_max = self.env.config.inbox_msgs_per_turn_max;
        let mut handled = 0;
        while handled < per_turn_max {
            let Some(msg) = self.mesh.try_recv() else {
                break;
            };
            handled += 1;
            self.on_loop_msg(msg);
        }
        self.flush_publishes();
        self.work.inbox_backlog |= handled == per_turn_max;
        self.metrics
            .add(Counter::MeshMessagesReceived, handled as u64);
    }

    fn on_loop_msg(&mut self, msg: LoopMsg) {
        if !matches!(msg, LoopMsg::Publish { .. }) {
            // Publishes queued from earlier messages are numbered before anything else.
            self.flush_publishes();
        }
        match msg {
            LoopMsg::Publish {
                channel,
                from,
                origin,
                body,
                read_at_ns,
                ack,
            } => {
                let meta = (from, origin, read_at_ns);
                self.on_forwarded_publish(&channel, &body, meta, ack.as_deref())
            }
            LoopMsg::Acks { channel, acks } => {
                for ack in acks {
                    self.reply_ack(ack.conn, &channel, &ack.id, ack.seq, ack.binary);
                }
            }
            LoopMsg::Deliver { batch } => {
                self.record_hop(batch.read_at_ns());
                self.deliver_batch(&batch);
            }
            LoopMsg::Tick { batch } => self.deliver_tick(&batch),
            LoopMsg::Presence(msg) => self.on_presence_msg(msg),
            LoopMsg::Subscribe {
                channel,
                origin,
                since,
                binary_snapshot,
            } => self.answer_subscribe(channel, origin, since, binary_snapshot),
            LoopMsg::Subscribed {
                channel,
                conn,
                outcome,
            } => self.on_subscribed(conn, &channel, outcome),
            LoopMsg::EpochReset {
                channel,
                epoch,
                seq,
            } => self.on_epoch_reset(&channel, &epoch, seq),
            LoopMsg::Gap {
                channel,
                gap,
                binary,
            } => self.on_mesh_gap(&channel, gap, binary),
            LoopMsg::Uninterest { channel, from } => {
                self.channels.owned.uninterest(&channel, from);
                self.cluster_uninterest(&channel);
            }
        }
    }

    /// A publish another loop read for a channel this loop owns: numbered here.
    fn on_forwarded_publish(
        &mut self,
        channel: &Arc<str>,
        body: &PublishBody,
        (from, origin, read_at_ns): (Arc<str>, ConnRef, u64),
        ack: Option<&[u8]>,
    ) {
        self.record_hop(read_at_ns);
        let (content, key, binary, delete) = match body {
            PublishBody::Json {
                content,
                key,
                delete,
            } => (content, key.as_deref(), false, *delete),
            PublishBody::Binary(payload) => (payload, None, true, false),
        };
        let meta = PublishMeta {
            binary,
            delete,
            from,
            origin,
            read_at_ns,
        };
        self.queue_publish(channel, content, key, meta, ack);
    }

    /// The owner's side of a subscribe from another loop.
    fn answer_subscribe(
        &mut self,
        channel: Arc<str>,
        origin: ConnRef,
        since: Option<(u64, Option<Arc<str>>)>,
        binary_snapshot: bool,
    ) {
        if self.cluster.is_some() {
            return self.cluster_subscribe(channel, origin, since, binary_snapshot);
        }
        let since = since.as_ref().map(|(seq, epoch)| Since {
            seq: *seq,
            epoch: epoch.as_deref(),
        });
        let outcome = self.channels.owned.subscribe(
            &channel,
            origin.loop_id,
            since,
            self.now_ns,
            binary_snapshot,
        );
        let conn = origin.conn;
        let reply = LoopMsg::Subscribed {
            channel,
            conn,
            outcome,
        };
        self.mesh_send(origin.loop_id, reply);
    }

    fn record_hop(&mut self, read_at_ns: u64) {
        let hop_ns = self.now_ns.saturating_sub(read_at_ns);
        self.metrics.record_cross_loop_latency_ns(hop_ns);
    }

    /// Sends to another loop. A dropped message is counted once: numbered deliveries (a run or
    /// a tick batch) by the receiver, in messages, when it learns of the gap (a seq jump or a
    /// `Gap` report); anything else here, one per message.
    pub(super) fn mesh_send(&mut self, to: LoopId, msg: LoopMsg) -> MeshSend {
        let numbered = matches!(msg, LoopMsg::Deliver { .. } | LoopMsg::Tick { .. });
        let sent = self.mesh.send(to, msg);
        match sent {
            MeshSend::Accepted => self.metrics.inc(Counter::MeshMessagesSent),
            MeshSend::Dropped if numbered => {}
            MeshSend::Dropped => self.metrics.inc(Counter::DropMeshFull),
        }
        let merged = self.mesh.take_merged();
        if merged != 0 {
            self.metrics.add(Counter::DropMeshMerged, merged);
        }
        sent
    }
}

/// What went wrong for one subscriber during a delivery (settled after the fan-out loop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Overflow {
    /// The data budget: the slow-consumer policy decides.
    Data,
    /// The control budget (a gap notice did not fit): the client reads nothing; close it.
    Control,
    /// The outbox refused because the connection is closing (nothing to settle but counting).
    Closed,
    /// Conflation replaced the delivery whose seq is the gap's `from`.
    Conflated,
}

/// The common case: the whole run as one outbox entry (a pending gap notice goes first, but
/// only if the run itself will be queued: a notice per dropped run would fill the control
/// budget). Returns the number of messages queued.
fn push_run(
    conn: &mut Conn,
    batch: &Batch,
    compressed: Option<&CompressedRun>,
    overflowed: &mut Vec<(ConnId, SeqGap, Overflow)>,
) -> u64 {
    let gap = SeqGap {
        from: batch.first_seq,
        to: batch.last_seq(),
    };
    let bytes = compressed.map_or(&batch.bytes, |run| &run.bytes);
    let fits = conn.session.delivery_fits(bytes.len());
    if fits
        && conn.session.gaps_untold()
        && conn
            .session
            .queue_gap_notice(&batch.channel, batch.is_binary())
            == SendStatus::Full
    {
        overflowed.push((conn.id, gap, Overflow::Control));
        return 0;
    }
    let count = batch.frames.len() as u32;
    match conn
        .session
        .handle_delivery_n(bytes.clone(), batch.read_at_ns(), count)
    {
        SendStatus::Queued => u64::from(count),
        SendStatus::Full => {
            overflowed.push((conn.id, gap, Overflow::Data));
            0
        }
        SendStatus::Closed => {
            overflowed.push((conn.id, gap, Overflow::Closed));
            0
        }
    }
}

/// Which bytes a subscriber gets for each message of a run.
pub(super) enum Wire<'a> {
    /// The run as encoded (no compression negotiated).
    Plain,
    /// The run's shared compressed copy.
    Shared(&'a CompressedRun),
    /// Compressed now with the connection's own context (server window bits, minimum size,
    /// scratch buffer): only a message that will be queued is compressed, so the client's
    /// dictionary stays in step; conflated ones go plain.
    Own(OwnWire<'a>),
}

/// A connection's own compression context, for [`Wire::Own`].
pub(super) struct OwnWire<'a> {
    pub deflater: &'a mut Deflater,
    /// Server window bits.
    pub bits: u8,
    /// `--deflate-min-size`.
    pub min: usize,
    pub scratch: &'a mut Vec<u8>,
    /// Messages compressed so far (for the metric).
    pub compressed: u64,
}

/// Room kept beyond a message's plain size before compressing it with a connection's own
/// context: an incompressible message grows by a few bytes (stored blocks), and it must
/// still be queued once compressed.
const COMPRESS_MARGIN_BYTES: usize = 64;

impl Wire<'_> {
    /// Message `i`'s bytes when it will be queued as a plain delivery (`fits`).
    fn frame(&mut self, batch: &Batch, i: usize, conn: &Conn) -> Bytes {
        match self {
            Wire::Plain => batch.frame_bytes(i),
            Wire::Shared(run) => run.frame_bytes(i),
            Wire::Own(own) => {
                let plain = batch.frame_bytes(i);
                if !conn
                    .session
                    .delivery_fits(plain.len() + COMPRESS_MARGIN_BYTES)
                {
                    return plain;
                }
                let (bytes, done) =
                    compression::compress_own(own.deflater, plain, own.bits, own.min, own.scratch);
                own.compressed += u64::from(done);
                bytes
            }
        }
    }

    /// Message `i`'s bytes for a conflated delivery (it may be replaced before it is sent).
    fn conflated_frame(&self, batch: &Batch, i: usize) -> Bytes {
        match self {
            Wire::Shared(run) => run.frame_bytes(i),
            Wire::Plain | Wire::Own(..) => batch.frame_bytes(i),
        }
    }
}

/// Message by message: when the subscriber published some of the run itself (it must not get
/// its own messages), or when it is conflated (its socket is full, conflate policy).
fn push_one_by_one(
    conn: &mut Conn,
    batch: &Batch,
    wire: &mut Wire<'_>,
    me: LoopId,
    conflate: bool,
    overflowed: &mut Vec<(ConnId, SeqGap, Overflow)>,
) -> u64 {
    let mut queued = 0;
    let own = ConnRef {
        loop_id: me,
        conn: conn.id,
    };
    for (i, f) in batch.frames.iter().enumerate() {
        if f.origin == Some(own) {
            continue;
        }
        let seq = batch.first_seq + i as u64;
        let one = SeqGap { from: seq, to: seq };
        let status = if conflate {
            let bytes = wire.conflated_frame(batch, i);
            let r =
                conn.session
                    .handle_conflated_delivery(bytes, f.read_at_ns, f.conflation_key, seq);
            if let Some(skipped) = r.replaced_seq {
                overflowed.push((
                    conn.id,
                    SeqGap {
                        from: skipped,
                        to: skipped,
                    },
                    Overflow::Conflated,
                ));
            }
            r.status
        } else {
            // The plain frame is never shorter than the compressed one (bar a few bytes of
            // an incompressible message): what fits plain fits compressed.
            let fits = conn.session.delivery_fits(batch.frames[i].len as usize);
            if fits
                && conn.session.gaps_untold()
                && conn
                    .session
                    .queue_gap_notice(&batch.channel, batch.is_binary())
                    == SendStatus::Full
            {
                overflowed.push((conn.id, one, Overflow::Control));
                return queued;
            }
            let bytes = wire.frame(batch, i, conn);
            conn.session.handle_delivery(bytes, f.read_at_ns)
        };
        match status {
            SendStatus::Queued => queued += 1,
            SendStatus::Full => overflowed.push((conn.id, one, Overflow::Data)),
            SendStatus::Closed => overflowed.push((conn.id, one, Overflow::Closed)),
        }
    }
    queued
}

/// The key of a channel's conflated gap notice (distinct from every delivery key: delivery
/// keys are odd, notice keys even).
fn notice_key(channel: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = crate::hash::FxHasher::default();
    "gap notice".hash(&mut h);
    channel.hash(&mut h);
    (h.finish() & !1) | 2
}
