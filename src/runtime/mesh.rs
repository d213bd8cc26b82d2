//! Messages between event loops: one bounded crossbeam queue per loop plus its `mio::Waker`.
//!
//! Owns: the senders to every loop, this loop's inbox, the per-peer overflow queues and the set
//! of peers to wake at the end of the turn.
//!
//! Rules (the design's invariants):
//! - A loop never blocks on another: `try_send` only. When a peer's queue is full the message
//!   waits in this loop's bounded per-peer overflow queue (FIFO order is kept: nothing is sent
//!   directly while older messages wait) and is retried on the next turns. When the overflow is
//!   full too, the message is dropped and counted (`queue_drops_total{reason="mesh_full"}`).
//! - A dropped `Deliver` (or room `Tick` batch) is reported to the peer, promptly, even when its channel then goes
//!   quiet: its seqs are recorded per (peer, channel), merged into one range, and sent as a
//!   small `Gap` message once the peer's overflow has drained (never dropped; bounded by one
//!   entry per channel this loop owns). A later `Deliver` of the channel that reaches the peer
//!   clears the record instead: the receiving loop sees the seq jump itself. Either way its
//!   subscribers get a `gap` notice for exactly the seqs they missed. An `EpochReset` of the
//!   channel clears it too (its subscribers are told `recovered:false` for the new epoch; a
//!   gap in the old numbering would be misread in the new one).
//! - Every kind of message is bounded while parked, each by a named policy:
//!   - data (`Publish`, `Deliver`, `Tick`, presence `Changes`) and `Uninterest`: dropped
//!     beyond `overflow_len_max` parked (a lost `Uninterest` leaves a stale interest bit at the
//!     owner: the loop gets deliveries for a channel nobody there reads, and ignores them,
//!     until the channel's next unsubscribe);
//!   - requests (`Subscribe`, presence `Query`): at most `overflow_len_max` in flight from one
//!     loop (beyond, the client gets an error at once), so their answers (`Subscribed`, a
//!     presence `List` answering a query) are bounded by the same number and never dropped (a
//!     subscriber must not wait forever for its `subscribed`);
//!   - `Acks`: at most `overflow_len_max` publishes asking for an acknowledgement in flight
//!     from one loop to the owners (beyond, the publish is refused at once with an error, as
//!     when it is dropped), so the owners' acknowledgements are bounded by the same number
//!     and never dropped (a publisher gets its acknowledgement or an error);
//!   - `EpochReset`: a newer one of a channel supersedes a parked older one, which is removed
//!     with the channel's deliveries parked after it (old numbering; the new `subscribed`
//!     says `recovered:false`): at most one per channel;
//!   - presence `Join`/`Leave`: a `Leave` cancels the member's parked `Join` (the owner never
//!     needs to hear of either), so at most a `Leave` and a `Join` per presence membership of
//!     this loop; a presence `List` that is not a query's answer follows one `Join` each;
//!   - `Gap`: never parked (kept merged per channel, see below).
//!
//!   Removed and cancelled messages are counted (`queue_drops_total{reason="mesh_merged"}`).
//! - One wake per peer per turn: peers are noted in a 64-bit mask while working and woken once
//!   in `wake_peers` (an eventfd write costs a syscall).
//! - Messages are data, never closures; one message per peer loop, never per subscriber.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::conn_id::{ConnId, ConnRef, LoopId};
use crate::hash::FxHashMap;
use crate::pubsub::local::SeqGap;
use crate::pubsub::SubscribeOutcome;
use crate::runtime::presence::PresenceMsg;

/// What a publish carries to the channel's owner loop.
#[derive(Debug, Clone)]
pub enum PublishBody {
    /// JSON `content`, verbatim, and the optional conflation key.
    Json {
        /// The raw JSON value.
        content: Bytes,
        /// Conflation key.
        key: Option<Arc<str>>,
        /// `"delete":true` (removes the key from the channel's snapshot).
        delete: bool,
    },
    /// Opaque binary payload.
    Binary(Bytes),
}

/// Everything one loop can ask of another.
#[derive(Debug)]
pub enum LoopMsg {
    /// A publish read on another loop, for the owner to number and fan out.
    Publish {
        /// Channel name.
        channel: Arc<str>,
        /// Publisher's public name (`from`).
        from: Arc<str>,
        /// The publisher, who must not receive its own message.
        origin: ConnRef,
        /// The message.
        body: PublishBody,
        /// When it was read off the publisher's socket.
        read_at_ns: u64,
        /// The publisher's acknowledgement id, if it asked for one.
        ack: Option<Box<[u8]>>,
    },
    /// The owner's acknowledgements of publishes read on the receiving loop.
    Acks {
        /// Channel name.
        channel: Arc<str>,
        /// One per acknowledged publish, in seq order.
        acks: Vec<crate::runtime::ack::Ack>,
    },
    /// A numbered, encoded run of messages for the receiving loop's subscribers.
    Deliver {
        /// The run, encoded once by the owner and shared by every loop.
        batch: Arc<crate::runtime::deliver::Batch>,
    },
    /// A room tick's batch for the receiving loop's subscribers (`tick.rs`).
    Tick {
        /// The batch, encoded once by the owner and shared by every loop.
        batch: Arc<crate::runtime::tick::TickBatch>,
    },
    /// Presence between a member's loop and the channel's owner (`presence.rs`).
    Presence(crate::runtime::presence::PresenceMsg),
    /// A subscribe request for the owner.
    Subscribe {
        /// Channel name.
        channel: Arc<str>,
        /// The subscribing connection.
        origin: ConnRef,
        /// Recovery position (`since`, `epoch`).
        since: Option<(u64, Option<Arc<str>>)>,
        /// The subscriber wants a snapshot as a binary frame.
        binary_snapshot: bool,
    },
    /// The owner's answer to `Subscribe`.
    Subscribed {
        /// Channel name.
        channel: Arc<str>,
        /// The subscribing connection.
        conn: ConnId,
        /// Seq, epoch, replay.
        outcome: SubscribeOutcome,
    },
    /// Cluster mode: the channel's numbering restarted in a new epoch (its retained history
    /// was lost); subscribers are told before the first message of the new numbering.
    EpochReset {
        /// Channel name.
        channel: Arc<str>,
        /// The new epoch.
        epoch: Arc<str>,
        /// The seq before the new numbering's next message.
        seq: u64,
    },
    /// The owner dropped the deliveries `gap` of `channel` for the receiving loop (its
    /// overflow was full) and has sent no later delivery of the channel since: the receiver
    /// tells its subscribers without waiting for the channel's next message.
    Gap {
        /// Channel name.
        channel: Arc<str>,
        /// The seqs that never arrived.
        gap: SeqGap,
        /// The dropped deliveries were binary frames (the notice uses the same encoding).
        binary: bool,
    },
    /// The sending loop has no subscriber of `channel` any more.
    Uninterest {
        /// Channel name.
        channel: Arc<str>,
        /// The loop that lost interest.
        from: LoopId,
    },
}

/// A loop's handle to one peer.
#[derive(Debug, Clone)]
pub struct PeerHandle {
    /// The peer's inbox.
    pub tx: Sender<LoopMsg>,
    /// The peer's waker.
    pub waker: Arc<mio::Waker>,
}

/// Outcome of `Mesh::send`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeshSend {
    /// Sent or parked in the overflow queue.
    Accepted,
    /// Overflow full: dropped.
    Dropped,
}

/// This loop's side of the mesh.
#[derive(Debug)]
pub struct Mesh {
    me: LoopId,
    peers: Vec<PeerHandle>,
    inbox: Receiver<LoopMsg>,
    overflow: Vec<VecDeque<LoopMsg>>,
    overflow_len_max: usize,
    wake_mask: u64,
    /// Subscribe requests sent to owners and not answered yet.
    subscribes_in_flight: usize,
    /// Per peer: channel → deliveries dropped for it and not reported yet (module rules).
    dropped: Vec<FxHashMap<Arc<str>, DroppedRun>>,
    /// Publishes asking for an acknowledgement sent to owners and not acknowledged yet.
    acks_in_flight: usize,
    /// Parked messages removed or cancelled by a newer one since the last `take_merged`.
    merged: u64,
}

/// Deliveries of one channel dropped for one peer, merged into one range.
#[derive(Debug, Clone, Copy)]
struct DroppedRun {
    gap: SeqGap,
    binary: bool,
}

impl Mesh {
    /// Wires this loop to every loop (itself included, at index `me`).
    pub fn new(
        me: LoopId,
        peers: Vec<PeerHandle>,
        inbox: Receiver<LoopMsg>,
        overflow_len_max: usize,
    ) -> Self {
        let overflow = peers.iter().map(|_| VecDeque::new()).collect();
        let dropped = peers.iter().map(|_| FxHashMap::default()).collect();
        Mesh {
            dropped,
            me,
            peers,
            inbox,
            overflow,
            overflow_len_max,
            wake_mask: 0,
            subscribes_in_flight: 0,
            acks_in_flight: 0,
            merged: 0,
        }
    }

    /// Number of loops.
    pub fn loops(&self) -> usize {
        self.peers.len()
    }

    /// True when one more subscribe request may be sent (see the module rules).
    pub fn may_request_subscribe(&self) -> bool {
        self.subscribes_in_flight < self.overflow_len_max
    }

    /// Sends to `to` without blocking (see the module rules).
    pub fn send(&mut self, to: LoopId, msg: LoopMsg) -> MeshSend {
        debug_assert_ne!(to, self.me, "a loop does not message itself");
        let request = match &msg {
            LoopMsg::Subscribe { .. } => true,
            LoopMsg::Presence(p) => p.is_request(),
            _ => false,
        };
        if request {
            self.subscribes_in_flight += 1;
        }
        let wants_ack = matches!(msg, LoopMsg::Publish { ack: Some(_), .. });
        if wants_ack && self.acks_in_flight >= self.overflow_len_max {
            return MeshSend::Dropped;
        }
        // Only when a drop for this peer is unreported (rare): no work on the common path.
        let clears = match (&msg, self.dropped.get(to)) {
            (LoopMsg::Deliver { .. } | LoopMsg::Tick { .. }, Some(d)) if !d.is_empty() => {
                numbered_run(&msg).map(|(channel, ..)| channel.clone())
            }
            (LoopMsg::EpochReset { channel, .. }, Some(d)) if !d.is_empty() => {
                Some(channel.clone())
            }
            _ => None,
        };
        let (Some(peer), Some(overflow)) = (self.peers.get(to), self.overflow.get_mut(to)) else {
            return MeshSend::Dropped;
        };
        let refused = match overflow.is_empty() {
            true => match peer.tx.try_send(msg) {
                Ok(()) => {
                    self.wake_mask |= 1 << to;
                    None
                }
                Err(TrySendError::Full(m) | TrySendError::Disconnected(m)) => {
                    park(overflow, m, self.overflow_len_max, &mut self.merged)
                }
            },
            false => park(overflow, msg, self.overflow_len_max, &mut self.merged),
        };
        match refused {
            None => {
                self.acks_in_flight += usize::from(wants_ack);
                if let Some(channel) = clears {
                    // A later delivery reaches the peer: it sees the seq jump itself. Or a new
                    // epoch (`recovered:false`) makes the old numbering's gaps moot.
                    self.dropped[to].remove(&channel);
                }
                MeshSend::Accepted
            }
            Some(msg) => {
                self.note_dropped(to, &msg);
                MeshSend::Dropped
            }
        }
    }

    /// Records a dropped `Deliver` or room `Tick` for `to`, merged with the channel's earlier
    /// unreported drops (consecutive: any delivery accepted in between cleared the record).
    fn note_dropped(&mut self, to: LoopId, msg: &LoopMsg) {
        let (Some((channel, gap, binary)), Some(dropped)) =
            (numbered_run(msg), self.dropped.get_mut(to))
        else {
            return;
        };
        dropped
            .entry(channel.clone())
            .and_modify(|run| {
                run.gap.from = run.gap.from.min(gap.from);
                run.gap.to = run.gap.to.max(gap.to);
            })
            .or_insert(DroppedRun { gap, binary });
    }

    /// Retries parked messages in order, then reports unreported drops to peers whose
    /// overflow has drained; returns true while something still waits.
    pub fn retry_overflow(&mut self) -> bool {
        let mut waiting = false;
        for (to, queue) in self.overflow.iter_mut().enumerate() {
            while let Some(msg) = queue.pop_front() {
                match self.peers[to].tx.try_send(msg) {
                    Ok(()) => self.wake_mask |= 1 << to,
                    Err(TrySendError::Full(m) | TrySendError::Disconnected(m)) => {
                        queue.push_front(m);
                        waiting = true;
                        break;
                    }
                }
            }
            if queue.is_empty() && !self.dropped[to].is_empty() {
                match send_gaps(&self.peers[to], &mut self.dropped[to]) {
                    GapsSent::None => waiting = true,
                    GapsSent::Some => {
                        self.wake_mask |= 1 << to;
                        waiting = true;
                    }
                    GapsSent::All => self.wake_mask |= 1 << to,
                }
            }
        }
        waiting
    }

    /// Takes the next message from this loop's inbox.
    pub fn try_recv(&mut self) -> Option<LoopMsg> {
        let msg = self.inbox.try_recv().ok()?;
        let answer = match &msg {
            LoopMsg::Subscribed { .. } => true,
            LoopMsg::Presence(p) => p.is_answer(),
            _ => false,
        };
        if answer {
            self.subscribes_in_flight = self.subscribes_in_flight.saturating_sub(1);
        }
        if let LoopMsg::Acks { acks, .. } = &msg {
            self.acks_in_flight = self.acks_in_flight.saturating_sub(acks.len());
        }
        Some(msg)
    }

    /// Parked messages removed or cancelled by a newer one since the last call (counted).
    pub fn take_merged(&mut self) -> u64 {
        std::mem::take(&mut self.merged)
    }

    /// Messages waiting in this loop's inbox.
    pub fn inbox_depth(&self) -> usize {
        self.inbox.len()
    }

    /// Wakes every peer that was sent something this turn, once. Returns how many.
    pub fn wake_peers(&mut self) -> u32 {
        let mask = std::mem::take(&mut self.wake_mask);
        let mut woken = 0;
        for (i, peer) in self.peers.iter().enumerate() {
            if mask & (1 << i) != 0 {
                // A failed wake means the peer's poll is gone (shutting down); nothing to do.
                let _ = peer.waker.wake();
                woken += 1;
            }
        }
        woken
    }

    /// Wakes every loop (shutdown).
    pub fn wake_all(&self) {
        for peer in &self.peers {
            let _ = peer.waker.wake();
        }
    }
}

/// How many unreported drops `send_gaps` got into a peer's inbox.
enum GapsSent {
    None,
    Some,
    All,
}

/// The channel, seqs and encoding of a message that carries numbered deliveries (a fan-out run
/// or a room's tick batch): what a receiver misses when it is dropped.
fn numbered_run(msg: &LoopMsg) -> Option<(&Arc<str>, SeqGap, bool)> {
    match msg {
        LoopMsg::Deliver { batch } => Some((
            &batch.channel,
            SeqGap {
                from: batch.first_seq,
                to: batch.last_seq(),
            },
            batch.is_binary(),
        )),
        LoopMsg::Tick { batch } => Some((
            &batch.channel,
            SeqGap {
                from: batch.first_seq,
                to: batch.last_seq,
            },
            batch.binary,
        )),
        _ => None,
    }
}

/// Sends one `Gap` per channel with unreported drops, until the peer's inbox is full.
fn send_gaps(peer: &PeerHandle, dropped: &mut FxHashMap<Arc<str>, DroppedRun>) -> GapsSent {
    let mut sent = GapsSent::None;
    while let Some(channel) = dropped.keys().next().cloned() {
        let Some(run) = dropped.remove(&channel) else {
            break;
        };
        let msg = LoopMsg::Gap {
            channel,
            gap: run.gap,
            binary: run.binary,
        };
        match peer.tx.try_send(msg) {
            Ok(()) => sent = GapsSent::Some,
            Err(TrySendError::Full(m) | TrySendError::Disconnected(m)) => {
                if let LoopMsg::Gap { channel, .. } = m {
                    dropped.insert(channel, run);
                }
                return sent;
            }
        }
    }
    GapsSent::All
}

/// Parks a message for a full peer, by the policy of its kind (see the module rules).
/// Returns the message when it is dropped; `merged` counts parked messages it replaced.
fn park(
    queue: &mut VecDeque<LoopMsg>,
    msg: LoopMsg,
    len_max: usize,
    merged: &mut u64,
) -> Option<LoopMsg> {
    let droppable = matches!(
        msg,
        LoopMsg::Publish { .. }
            | LoopMsg::Deliver { .. }
            | LoopMsg::Tick { .. }
            | LoopMsg::Uninterest { .. }
    ) || matches!(&msg, LoopMsg::Presence(p) if p.droppable());
    if droppable && queue.len() >= len_max {
        return Some(msg);
    }
    match &msg {
        LoopMsg::Presence(PresenceMsg::Leave {
            channel, member, ..
        }) => {
            let join = queue.iter().rposition(|m| {
                matches!(m, LoopMsg::Presence(PresenceMsg::Join { channel: c, member: j, .. })
                    if c == channel && j == member)
            });
            if let Some(i) = join {
                queue.remove(i);
                *merged += 2;
                return None;
            }
        }
        LoopMsg::EpochReset { channel, .. } => supersede_epoch(queue, channel, merged),
        _ => {}
    }
    queue.push_back(msg);
    None
}

/// Removes the parked `EpochReset` of `channel`, if any, and the channel's deliveries parked
/// after it (numbered in the epoch a newer reset replaces).
fn supersede_epoch(queue: &mut VecDeque<LoopMsg>, channel: &Arc<str>, merged: &mut u64) {
    let of_channel = |m: &LoopMsg, resets: bool| match m {
        LoopMsg::EpochReset { channel: c, .. } => c == channel,
        LoopMsg::Deliver { batch } => !resets && batch.channel == *channel,
        _ => false,
    };
    let Some(older) = queue.iter().rposition(|m| of_channel(m, true)) else {
        return;
    };
    let before = queue.len();
    let mut i = 0;
    queue.retain(|m| {
        let keep = i < older || !of_channel(m, false);
        i += 1;
        keep
    });
    *merged += (before - queue.len()) as u64;
}

#[cfg(test)]
mod tests;
