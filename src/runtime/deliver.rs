//! Pub/sub routing on the loop: subscribe and unsubscribe, publish to the channel's owner, and
//! delivery of the owner's encoded frame to this loop's subscribers, with the slow-consumer
//! policy applied per subscriber.
//!
//! The path of one publish (see ARCHITECTURE.md): read loop → owner loop (numbers it, encodes
//! the frame once) → every interested loop (one mesh message each) → each subscriber's outbox
//! (a `Bytes` handle clone, no copy) → `writev`.

use std::sync::Arc;

use bytes::Bytes;

use crate::command as encode;
use crate::config::SlowConsumerPolicy;
use crate::conn_id::{ConnId, ConnRef, LoopId};
use crate::metrics::Counter;
use crate::outbox::SendStatus;
use crate::proto::frame::{FrameBuilder, OpCode, PreparedFrame};
use crate::pubsub::local::SeqGap;
use crate::pubsub::{owner_of, Since, SubscribeOutcome};
use crate::runtime::conn::{Conn, Subscription};
use crate::runtime::dispatch::Published;
use crate::runtime::event_loop::{EventLoop, INBOX_MSGS_PER_TURN_MAX};
use crate::runtime::mesh::{LoopMsg, MeshSend, PublishBody};

impl EventLoop {
    /// `{"type":"subscribe"}`: ask the owner for the seq, epoch and replay; the connection gets
    /// deliveries once the answer is in (`on_subscribed`).
    pub(super) fn subscribe(
        &mut self,
        id: ConnId,
        channel: &str,
        since: Option<(u64, Option<Arc<str>>)>,
    ) {
        let max = self.shared.config.subscriptions_per_connection_max;
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        if !conn.auth.may_subscribe(channel) {
            return self.forbidden(id, channel);
        }
        if conn.subscription_mut(channel).is_none() {
            if conn.subscriptions.len() >= max {
                self.metrics.command_error("too_many_subscriptions");
                let msg = "Too many subscriptions on this connection";
                return self.reply(id, |out| encode::encode_error(out, msg));
            }
            conn.subscriptions.push(Subscription {
                channel: Arc::from(channel),
                pending: true,
                unsubscribe_when_answered: false,
                epoch: Arc::from(""),
                last_seq: 0,
                gap: None,
                conflated_gap: None,
            });
        }
        self.local.begin_subscribe(channel);
        let owner = owner_of(channel, self.mesh.loops());
        if owner == self.id {
            let since = since.as_ref().map(|(seq, epoch)| Since {
                seq: *seq,
                epoch: epoch.as_deref(),
            });
            let outcome = self.owned.subscribe(channel, self.id, since, self.now_ns);
            self.on_subscribed(id, channel, outcome);
        } else {
            let origin = self.conn_ref(id);
            let msg = LoopMsg::Subscribe {
                channel: Arc::from(channel),
                origin,
                since,
            };
            self.mesh_send(owner, msg);
        }
    }

    /// The owner's answer: `subscribed`, then the replay, then live deliveries.
    pub(super) fn on_subscribed(&mut self, id: ConnId, channel: &str, outcome: SubscribeOutcome) {
        let Some(conn) = self.conn_mut(id) else {
            return self.abandon_subscribe(channel);
        };
        let Some(sub) = conn.subscription_mut(channel) else {
            return self.abandon_subscribe(channel);
        };
        let was_pending = std::mem::replace(&mut sub.pending, false);
        sub.epoch = outcome.epoch.clone();
        let unsubscribe = sub.unsubscribe_when_answered;
        self.local.complete_subscribe(channel, id, outcome.seq);
        let (seq, epoch) = (outcome.seq, &*outcome.epoch);
        self.reply(id, |out| {
            encode::encode_subscribed(out, channel, seq, epoch, outcome.recovered)
        });
        if unsubscribe {
            return self.unsubscribe(id, channel);
        }
        if was_pending {
            self.replay(id, outcome.replay);
        }
    }

    /// Queues recovered history (or the last value). Replay is bounded by `--history-size`
    /// messages and is never refused by the data budget: dropping it would defeat recovery.
    fn replay(&mut self, id: ConnId, frames: Vec<PreparedFrame>) {
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        for frame in frames {
            conn.outbox.push_replay(frame.into_bytes());
        }
        self.mark_dirty(id);
    }

    /// An answer for a connection that left or unsubscribed meanwhile.
    fn abandon_subscribe(&mut self, channel: &str) {
        if self.local.abandon_subscribe(channel) {
            self.lose_interest(channel);
        }
    }

    /// `{"type":"unsubscribe"}`: idempotent; answered in order with the deliveries.
    pub(super) fn unsubscribe(&mut self, id: ConnId, channel: &str) {
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        match conn.subscription_mut(channel) {
            Some(sub) if sub.pending => {
                sub.unsubscribe_when_answered = true;
                return;
            }
            Some(_) => {
                conn.take_subscription(channel);
                if self.local.remove(channel, id) {
                    self.lose_interest(channel);
                }
            }
            None => {}
        }
        self.reply_ordered(id, |out| encode::encode_unsubscribed(out, channel));
    }

    /// Removes every subscription of a closed connection.
    pub(super) fn drop_subscriptions(&mut self, id: ConnId, subscriptions: Vec<Subscription>) {
        for sub in subscriptions.iter().filter(|s| !s.pending) {
            if self.local.remove(&sub.channel, id) {
                self.lose_interest(&sub.channel);
            }
        }
    }

    /// Tells the owner this loop has no subscriber of `channel` any more.
    fn lose_interest(&mut self, channel: &str) {
        let owner = owner_of(channel, self.mesh.loops());
        if owner == self.id {
            self.owned.uninterest(channel, self.id);
        } else {
            let from = self.id;
            let channel = Arc::from(channel);
            self.mesh_send(owner, LoopMsg::Uninterest { channel, from });
        }
    }

    /// A publish read from connection `id`: numbered here if this loop owns the channel,
    /// otherwise forwarded to the owner (one copy of the content, one mesh message).
    pub(super) fn publish(
        &mut self,
        id: ConnId,
        channel: &str,
        msg: Published<'_>,
        key: Option<&str>,
    ) {
        let loop_id = self.id;
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        if !conn.auth.may_publish(channel) {
            return self.forbidden(id, channel);
        }
        let from = conn.name(loop_id);
        let origin = self.conn_ref(id);
        let owner = owner_of(channel, self.mesh.loops());
        if owner == self.id {
            let now_ns = self.now_ns;
            return self.publish_owned(channel, (&from, key), msg, Some(origin), now_ns);
        }
        let body = match msg {
            Published::Json(content) => PublishBody::Json {
                content: Bytes::copy_from_slice(content),
                key: key.map(Arc::from),
            },
            Published::Binary(payload) => PublishBody::Binary(Bytes::copy_from_slice(payload)),
        };
        let msg = LoopMsg::Publish {
            channel: Arc::from(channel),
            from,
            origin,
            body,
            read_at_ns: self.now_ns,
        };
        self.mesh_send(owner, msg);
    }

    /// The owner's part: number, encode once, hand to every interested loop.
    fn publish_owned(
        &mut self,
        channel: &str,
        (from, key): (&str, Option<&str>),
        msg: Published<'_>,
        origin: Option<ConnRef>,
        read_at_ns: u64,
    ) {
        let encode = |seq| encode_delivery(channel, from, msg, seq);
        let Some(numbered) = self.owned.publish(channel, self.now_ns, encode) else {
            return;
        };
        let conflation_key = conflation_key(channel, key);
        let me = 1u64 << self.id;
        let mut others = numbered.interest & !me;
        if others != 0 {
            let shared_channel: Arc<str> = Arc::from(channel);
            while others != 0 {
                let to = others.trailing_zeros() as LoopId;
                others &= others - 1;
                let msg = LoopMsg::Deliver {
                    channel: shared_channel.clone(),
                    seq: numbered.seq,
                    frame: numbered.frame.clone(),
                    origin,
                    read_at_ns,
                    conflation_key,
                };
                self.mesh_send(to, msg);
            }
        }
        if numbered.interest & me != 0 {
            self.deliver_local(&Delivery {
                channel,
                seq: numbered.seq,
                frame: &numbered.frame,
                origin,
                read_at_ns,
                conflation_key,
            });
        }
    }

    /// Queues the delivery to every local subscriber of its channel except the publisher.
    fn deliver_local(&mut self, d: &Delivery<'_>) {
        if let Some(gap) = self.local.note_seq(d.channel, d.seq) {
            self.note_gap_for_all(d.channel, gap);
        }
        let skip = d.origin.filter(|o| o.loop_id == self.id).map(|o| o.conn);
        let policy = self.shared.config.slow_consumer_for(d.channel);
        let Some(subscribers) = self.local.subscribers(d.channel) else {
            return;
        };
        let mut delivered = 0u64;
        for &cid in subscribers {
            if Some(cid) == skip {
                continue;
            }
            let Some(conn) = self.conns.get_mut(cid.slot as usize) else {
                continue;
            };
            let pushed = match policy {
                // Conflate only a connection whose socket is full (its last flush blocked): a
                // subscriber that keeps up gets every message, even several per turn.
                SlowConsumerPolicy::Conflate if conn.wants_writable => {
                    let (pushed, replaced) = push_conflated(conn, d);
                    if let Some(skipped) = replaced {
                        self.overflowed.push((cid, skipped, Overflow::Conflated));
                    }
                    pushed
                }
                _ => push_in_order(conn, d),
            };
            match pushed {
                Pushed::Queued => {
                    delivered += 1;
                    if !conn.dirty {
                        conn.dirty = true;
                        self.dirty.push(cid);
                    }
                }
                Pushed::Full => self.overflowed.push((cid, d.seq, Overflow::Data)),
                Pushed::Overflowed(o) => self.overflowed.push((cid, d.seq, o)),
                Pushed::Closed => self.metrics.inc(Counter::DropNotOpen),
            }
        }
        self.metrics.add(Counter::MessagesDelivered, delivered);
        self.settle_overflow(d, policy);
    }

    /// Applies the slow-consumer policy to the subscribers whose outbox was full.
    fn settle_overflow(&mut self, d: &Delivery<'_>, policy: SlowConsumerPolicy) {
        let channel = d.channel;
        let overflowed = std::mem::take(&mut self.overflowed);
        for &(cid, seq, lane) in &overflowed {
            match (lane, policy) {
                (Overflow::Conflated, _) => {
                    self.metrics.inc(Counter::DropConflated);
                    self.tell_conflated(cid, d, seq);
                }
                (Overflow::Control, _) | (_, SlowConsumerPolicy::Close) => {
                    self.close_slow_consumer(cid)
                }
                (Overflow::Data, SlowConsumerPolicy::Drop | SlowConsumerPolicy::Conflate) => {
                    self.metrics.inc(Counter::DropSlowConsumer);
                    self.note_gap(cid, channel, SeqGap { from: seq, to: seq });
                }
            }
        }
        self.overflowed = overflowed;
        self.overflowed.clear();
    }

    /// Conflation replaced `skipped` for `cid`: queue (or widen) the channel's one pending
    /// conflated gap notice, in the delivery's encoding.
    fn tell_conflated(&mut self, cid: ConnId, d: &Delivery<'_>, skipped: u64) {
        let Some(conn) = self.conn_mut(cid) else {
            return;
        };
        let key = notice_key(d.channel);
        let still_queued = conn.outbox.conflation_queued(key);
        let Some(sub) = conn.subscription_mut(d.channel) else {
            return;
        };
        let gap = match (sub.conflated_gap, still_queued) {
            (Some(g), true) => SeqGap {
                from: g.from.min(skipped),
                to: g.to.max(skipped),
            },
            _ => SeqGap {
                from: skipped,
                to: skipped,
            },
        };
        sub.conflated_gap = Some(gap);
        let notice = encode_gap_notice(d.channel, gap, is_binary(d.frame));
        conn.outbox.push_conflated_notice(notice.into_bytes(), key);
    }

    /// Every local subscriber of `channel` missed `gap` (a mesh message was dropped).
    fn note_gap_for_all(&mut self, channel: &str, gap: SeqGap) {
        self.metrics
            .add(Counter::DropMeshFull, gap.to - gap.from + 1);
        let ids: Vec<ConnId> = self
            .local
            .subscribers(channel)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        for cid in ids {
            self.note_gap(cid, channel, gap);
        }
    }

    /// Records that `cid` skipped `gap` on `channel`; told before its next delivery there.
    fn note_gap(&mut self, cid: ConnId, channel: &str, gap: SeqGap) {
        let Some(conn) = self.conn_mut(cid) else {
            return;
        };
        let Some(sub) = conn.subscription_mut(channel) else {
            return;
        };
        sub.gap = Some(match sub.gap {
            Some(g) => SeqGap {
                from: g.from.min(gap.from),
                to: g.to.max(gap.to),
            },
            None => gap,
        });
        conn.gaps_pending = true;
    }

    /// Handles up to `INBOX_MSGS_PER_TURN_MAX` messages from other loops.
    pub(super) fn drain_inbox(&mut self) {
        let mut handled = 0;
        while handled < INBOX_MSGS_PER_TURN_MAX {
            let Some(msg) = self.mesh.try_recv() else {
                break;
            };
            handled += 1;
            self.on_loop_msg(msg);
        }
        self.inbox_backlog = handled == INBOX_MSGS_PER_TURN_MAX;
        self.metrics
            .add(Counter::MeshMessagesReceived, handled as u64);
    }

    fn on_loop_msg(&mut self, msg: LoopMsg) {
        match msg {
            LoopMsg::Publish {
                channel,
                from,
                origin,
                body,
                read_at_ns,
            } => {
                self.record_hop(read_at_ns);
                let (published, key) = match &body {
                    PublishBody::Json { content, key } => {
                        (Published::Json(content), key.as_deref())
                    }
                    PublishBody::Binary(payload) => (Published::Binary(payload), None),
                };
                let from_key = (&*from, key);
                self.publish_owned(&channel, from_key, published, Some(origin), read_at_ns);
            }
            LoopMsg::Deliver {
                channel,
                seq,
                frame,
                origin,
                read_at_ns,
                conflation_key,
            } => {
                self.record_hop(read_at_ns);
                self.deliver_local(&Delivery {
                    channel: &channel,
                    seq,
                    frame: &frame,
                    origin,
                    read_at_ns,
                    conflation_key,
                });
            }
            LoopMsg::Subscribe {
                channel,
                origin,
                since,
            } => {
                let since_ref = since.as_ref().map(|(seq, epoch)| Since {
                    seq: *seq,
                    epoch: epoch.as_deref(),
                });
                let outcome =
                    self.owned
                        .subscribe(&channel, origin.loop_id, since_ref, self.now_ns);
                let conn = origin.conn;
                self.mesh_send(
                    origin.loop_id,
                    LoopMsg::Subscribed {
                        channel,
                        conn,
                        outcome,
                    },
                );
            }
            LoopMsg::Subscribed {
                channel,
                conn,
                outcome,
            } => self.on_subscribed(conn, &channel, outcome),
            LoopMsg::Uninterest { channel, from } => self.owned.uninterest(&channel, from),
        }
    }

    fn record_hop(&mut self, read_at_ns: u64) {
        let hop_ns = self.now_ns.saturating_sub(read_at_ns);
        self.metrics.record_cross_loop_latency_ns(hop_ns);
    }

    /// Sends to another loop; a drop is counted (and later seen as a seq gap by the receiver).
    pub(super) fn mesh_send(&mut self, to: LoopId, msg: LoopMsg) {
        match self.mesh.send(to, msg) {
            MeshSend::Accepted => self.metrics.inc(Counter::MeshMessagesSent),
            MeshSend::Dropped => self.metrics.inc(Counter::DropMeshFull),
        }
    }

    fn conn_ref(&self, id: ConnId) -> ConnRef {
        ConnRef {
            loop_id: self.id,
            conn: id,
        }
    }
}

/// One numbered message on its way to this loop's subscribers.
#[derive(Debug, Clone, Copy)]
pub(super) struct Delivery<'a> {
    channel: &'a str,
    seq: u64,
    frame: &'a PreparedFrame,
    origin: Option<ConnRef>,
    read_at_ns: u64,
    /// Conflation key: the channel, or the channel and the publish's `key`.
    conflation_key: u64,
}

/// What went wrong for one subscriber during a delivery (settled after the fan-out loop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Overflow {
    /// The data budget: the slow-consumer policy decides.
    Data,
    /// The control budget (a gap notice did not fit): the client reads nothing; close it.
    Control,
    /// Conflation replaced the delivery with this seq (carried in the tuple's seq).
    Conflated,
}

/// Default policies (`close`, `drop`): the delivery keeps its place in order; a pending gap
/// notice is queued right before it, but only if the delivery itself will be queued (a notice
/// per dropped message would fill the control budget instead).
fn push_in_order(conn: &mut Conn, d: &Delivery<'_>) -> Pushed {
    let fits = conn.outbox.data_fits(d.frame.len());
    if fits && conn.gaps_pending && queue_gap_notice(conn, d.channel, d.frame) == SendStatus::Full {
        return Pushed::Overflowed(Overflow::Control);
    }
    Pushed::from(conn.outbox.push_data(d.frame.bytes().clone(), d.read_at_ns))
}

/// `conflate` policy, for a subscriber whose socket is full: the newest delivery per key
/// replaces an unwritten older one.
fn push_conflated(conn: &mut Conn, d: &Delivery<'_>) -> (Pushed, Option<u64>) {
    let bytes = d.frame.bytes().clone();
    let r = conn
        .outbox
        .push_conflated(bytes, d.read_at_ns, d.conflation_key, d.seq);
    (Pushed::from(r.status), r.replaced_seq)
}

/// What pushing one delivery to one subscriber did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pushed {
    Queued,
    Full,
    Closed,
    /// Something else overflowed first (the gap notice); settle it, skip the delivery.
    Overflowed(Overflow),
}

impl From<SendStatus> for Pushed {
    fn from(s: SendStatus) -> Pushed {
        match s {
            SendStatus::Queued => Pushed::Queued,
            SendStatus::Full => Pushed::Full,
            SendStatus::Closed => Pushed::Closed,
        }
    }
}

/// The conflation key of a publish: its channel, or its channel and `key`. Never 0.
fn conflation_key(channel: &str, key: Option<&str>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = crate::hash::FxHasher::default();
    channel.hash(&mut h);
    key.hash(&mut h);
    h.finish() | 1
}

/// The key of a channel's conflated gap notice (distinct from every delivery key).
fn notice_key(channel: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = crate::hash::FxHasher::default();
    "gap notice".hash(&mut h);
    channel.hash(&mut h);
    h.finish() & !1 | 2
}

fn is_binary(frame: &PreparedFrame) -> bool {
    frame
        .bytes()
        .first()
        .is_some_and(|b| b & 0x0f == OpCode::Binary.as_u8())
}

/// A gap notice in JSON or binary.
fn encode_gap_notice(channel: &str, gap: SeqGap, binary: bool) -> PreparedFrame {
    if binary {
        let mut f = FrameBuilder::new(OpCode::Binary, 2 + channel.len() + 16);
        // Channel names are at most 255 bytes (config validation), so this cannot fail.
        let encoded =
            f.append_with(|out| encode::encode_binary_gap(out, channel, gap.from, gap.to));
        debug_assert!(encoded.is_ok());
        f.finish()
    } else {
        let mut f = FrameBuilder::new(OpCode::Text, 64 + channel.len());
        f.append_with(|out| encode::encode_gap(out, channel, gap.from, gap.to));
        f.finish()
    }
}

/// Queues the gap notice of `channel` for `conn`, if it has one, right before the delivery
/// `next` (RFC-style in-band notice: the client learns of the skip before the next message).
/// The notice has the delivery's encoding: JSON before a text frame, binary before a binary one.
fn queue_gap_notice(conn: &mut Conn, channel: &str, next: &PreparedFrame) -> SendStatus {
    let Some(gap) = conn.subscription_mut(channel).and_then(|s| s.gap.take()) else {
        return SendStatus::Queued;
    };
    conn.gaps_pending = conn.subscriptions.iter().any(|s| s.gap.is_some());
    let notice = encode_gap_notice(channel, gap, is_binary(next));
    conn.outbox.push_ordered_control(notice.into_bytes())
}

/// Encodes one delivery frame; the owner calls it once per publish, whatever the fanout.
fn encode_delivery(channel: &str, from: &str, msg: Published<'_>, seq: u64) -> PreparedFrame {
    match msg {
        Published::Json(content) => {
            let hint = encode::message_len_hint(channel, content, from);
            let mut frame = FrameBuilder::new(OpCode::Text, hint);
            frame.append_with(|out| encode::encode_message(out, channel, content, from, seq));
            frame.finish()
        }
        Published::Binary(payload) => {
            let mut frame =
                FrameBuilder::new(OpCode::Binary, 2 + channel.len() + 8 + payload.len());
            // Channel names are at most 255 bytes (config validation), so this cannot fail.
            let encoded =
                frame.append_with(|out| encode::encode_binary_message(out, channel, seq, payload));
            debug_assert!(encoded.is_ok());
            frame.finish()
        }
    }
}
