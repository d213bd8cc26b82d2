//! The publish path on the loop: queue the publishes read this turn, then number and encode
//! each run of consecutive publishes on one channel at once.
//!
//! Why runs: a publisher at full speed delivers dozens of messages per socket read. Encoding
//! the run into ONE buffer (frames back to back) lets every subscriber receive the whole run as
//! one `Bytes` handle: one outbox entry, one iovec, one touch of each subscriber's state per
//! run instead of per message. This is what keeps the fan-out memory-bound cost flat
//! (docs/BENCHMARKS.md). Runs never reorder: the queue is flushed in order, before any
//! subscribe or unsubscribe of the same loop is handled and at the end of each connection's
//! input and of each inbox drain, so every flush happens within the turn.
//!
//! Publishes for channels owned by another loop are forwarded there (one mesh message each,
//! one copy of the content); the owner queues them the same way and numbers them in runs.
//!
//! Encodes frames ONCE for many subscribers (encode-once is an invariant): these are not
//! per-connection replies and stay here; every reply to one connection is a `session::Reply`
//! encoded by its session, and each subscriber gets the shared frame through
//! `Session::handle_delivery`.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use crate::command as encode;
use crate::conn_id::{ConnId, ConnRef, LoopId};
use crate::metrics::Counter;
use crate::proto::frame::{encode_header, OpCode, CLIENT_HEADER_BYTES_MAX};
use crate::pubsub::owner_of;
use crate::pubsub::snapshot::Update;
use crate::runtime::deliver::{Batch, FrameMeta};
use crate::runtime::dispatch::Published;
use crate::runtime::event_loop::EventLoop;
use crate::runtime::mesh::{LoopMsg, MeshSend, PublishBody};

/// One publish waiting to be numbered with its neighbours.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    channel: Range<usize>,
    body: Range<usize>,
    key: Option<Range<usize>>,
    binary: bool,
    /// `"delete":true` (removes the key from the channel's snapshot).
    delete: bool,
    from: Arc<str>,
    origin: ConnRef,
    read_at_ns: u64,
    /// Acknowledgement id, when the publisher asked for one (in the arena).
    ack: Option<Range<usize>>,
}

/// The loop's queue of publishes (contents copied into one arena, reused every turn). Bounded
/// by `Config::publish_queue_len_max` and `publish_queue_bytes_max`: beyond either, the queue
/// is numbered and fanned out at once (a forced flush; nothing is dropped).
#[derive(Debug)]
pub(super) struct PublishQueue {
    arena: Vec<u8>,
    items: Vec<Pending>,
    /// Scratch for encoding one message's payload before its header is known.
    scratch: Vec<u8>,
    len_max: usize,
    bytes_max: usize,
    /// Queued publishes that asked for an acknowledgement (0: the ack pass is skipped).
    acks_queued: usize,
}

impl Pending {
    /// The acknowledgement id, if the publisher asked for one.
    pub(super) fn ack_id<'q>(&self, queue: &'q PublishQueue) -> Option<&'q [u8]> {
        self.ack.as_ref().map(|r| queue.bytes_at(r))
    }

    /// The publisher.
    pub(super) fn origin(&self) -> ConnRef {
        self.origin
    }

    /// A binary publish.
    pub(super) fn is_binary(&self) -> bool {
        self.binary
    }

    /// The publisher's public name (`from`).
    pub(super) fn from(&self) -> &str {
        &self.from
    }

    /// When it was read off the publisher's socket.
    pub(super) fn read_at_ns(&self) -> u64 {
        self.read_at_ns
    }

    /// Its content (JSON) or payload (binary).
    pub(super) fn body<'q>(&self, queue: &'q PublishQueue) -> &'q [u8] {
        queue.bytes_at(&self.body)
    }

    /// This publish as a command for the cluster bridge (content copied once).
    fn to_cluster(&self, queue: &PublishQueue, channel: &Arc<str>) -> crate::cluster::PublishCmd {
        crate::cluster::PublishCmd {
            channel: channel.clone(),
            body: Bytes::copy_from_slice(queue.bytes_at(&self.body)),
            key: self.key.as_ref().map(|k| Arc::from(queue.str_at(k))),
            delete: self.delete,
            binary: self.binary,
            from: self.from.clone(),
            origin: self.origin,
            ack: self.ack.as_ref().map(|r| Box::from(queue.bytes_at(r))),
        }
    }
}

impl PublishQueue {
    /// True when some queued publish asked for an acknowledgement.
    pub(super) fn has_acks(&self) -> bool {
        self.acks_queued > 0
    }

    /// The queued publishes, in order.
    pub(super) fn items(&self) -> &[Pending] {
        &self.items
    }

    /// An empty queue with the given forced-flush bounds.
    pub(super) fn new(len_max: usize, bytes_max: usize) -> Self {
        PublishQueue {
            arena: Vec::new(),
            items: Vec::new(),
            scratch: Vec::new(),
            len_max,
            bytes_max,
            acks_queued: 0,
        }
    }

    fn push(
        &mut self,
        channel: &str,
        body: &[u8],
        key: Option<&str>,
        meta: PublishMeta,
        ack: Option<&[u8]>,
    ) {
        let PublishMeta {
            binary,
            delete,
            from,
            origin,
            read_at_ns,
        } = meta;
        let channel = self.copy(channel.as_bytes());
        let body = self.copy(body);
        let key = key.map(|k| self.copy(k.as_bytes()));
        let ack = ack.map(|a| self.copy(a));
        self.acks_queued += usize::from(ack.is_some());
        self.items.push(Pending {
            ack,
            channel,
            body,
            key,
            binary,
            delete,
            from,
            origin,
            read_at_ns,
        });
    }

    /// Copies `other`'s publishes `run` to the end of this queue (a room tick holds them).
    pub(super) fn push_from(&mut self, other: &PublishQueue, run: Range<usize>) {
        for p in &other.items[run] {
            let channel = self.copy(other.bytes_at(&p.channel));
            let body = self.copy(other.bytes_at(&p.body));
            let key = p.key.as_ref().map(|k| self.copy(other.bytes_at(k)));
            let ack = p.ack.as_ref().map(|a| self.copy(other.bytes_at(a)));
            self.acks_queued += usize::from(ack.is_some());
            self.items.push(Pending {
                channel,
                body,
                key,
                ack,
                ..p.clone()
            });
        }
    }

    /// True when the queue is at one of its bounds.
    pub(super) fn at_bound(&self) -> bool {
        self.is_full()
    }

    /// Empties the queue, keeping its memory.
    pub(super) fn clear(&mut self) {
        self.items.clear();
        self.arena.clear();
        self.acks_queued = 0;
    }

    fn copy(&mut self, bytes: &[u8]) -> Range<usize> {
        let start = self.arena.len();
        self.arena.extend_from_slice(bytes);
        start..self.arena.len()
    }

    fn is_full(&self) -> bool {
        self.items.len() >= self.len_max || self.arena.len() >= self.bytes_max
    }

    fn str_at(&self, r: &Range<usize>) -> &str {
        // Channel names and keys were validated as ASCII before they were queued.
        self.arena
            .get(r.clone())
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default()
    }

    pub(super) fn bytes_at(&self, r: &Range<usize>) -> &[u8] {
        self.arena.get(r.clone()).unwrap_or_default()
    }
}

impl EventLoop {
    /// A publish read from connection `id`: checked, then queued for its run. `ack`: the
    /// publisher asked for an acknowledgement under this id (`ack.rs`).
    pub(super) fn publish(
        &mut self,
        id: ConnId,
        channel: &str,
        msg: Published<'_>,
        key: Option<&str>,
        ack: Option<&[u8]>,
    ) {
        let loop_id = self.id;
        let node = self.cluster_node();
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        let from = conn.name(node.as_deref(), loop_id);
        let origin = ConnRef { loop_id, conn: id };
        let (body, binary, delete) = match msg {
            Published::Json { content, delete } => (content, false, delete),
            Published::Binary(payload) => (payload, true, false),
        };
        let meta = PublishMeta {
            binary,
            delete,
            from,
            origin,
            read_at_ns: self.now_ns,
        };
        self.queue_publish(channel, body, key, meta, ack);
    }

    /// Queues a publish (local or forwarded); flushes when the queue is full.
    pub(super) fn queue_publish(
        &mut self,
        channel: &str,
        body: &[u8],
        key: Option<&str>,
        meta: PublishMeta,
        ack: Option<&[u8]>,
    ) {
        self.channels.publishes.push(channel, body, key, meta, ack);
        if self.channels.publishes.is_full() {
            self.flush_publishes();
        }
    }

    /// Numbers and sends every queued publish, run by run, in order.
    pub(super) fn flush_publishes(&mut self) {
        if self.channels.publishes.items.is_empty() {
            return;
        }
        // Moved out for the flush (the handlers need the whole loop); an empty stand-in holds
        // its place and allocates nothing.
        let mut queue = std::mem::replace(&mut self.channels.publishes, PublishQueue::new(0, 0));
        let mut start = 0;
        while start < queue.items.len() {
            // One allocation per run: the name is shared by the batch and the mesh messages.
            let channel: Arc<str> = Arc::from(queue.str_at(&queue.items[start].channel));
            let run_len = queue.items[start..]
                .iter()
                .take_while(|p| queue.str_at(&p.channel) == &*channel)
                .count();
            self.publish_run(&mut queue, &channel, start..start + run_len);
            start += run_len;
        }
        queue.items.clear();
        queue.arena.clear();
        queue.acks_queued = 0;
        self.channels.publishes = queue;
    }

    fn publish_run(&mut self, queue: &mut PublishQueue, channel: &Arc<str>, run: Range<usize>) {
        if self.cluster.is_some() {
            // Cluster mode (decided at start-up): the stream numbers it (`cluster.rs`).
            let items = queue.items[run].iter();
            let cmds = items.map(|p| p.to_cluster(queue, channel)).collect();
            return self.cluster_publish(cmds);
        }
        let owner = owner_of(channel, self.mesh.loops());
        if owner == self.id {
            self.publish_owned(queue, channel, run);
        } else {
            self.forward(queue, channel, run, owner);
        }
    }

    /// Sends a run to the channel's owner loop: one message per publish, the content copied.
    fn forward(
        &mut self,
        queue: &PublishQueue,
        channel: &Arc<str>,
        run: Range<usize>,
        owner: LoopId,
    ) {
        for p in &queue.items[run] {
            let content = Bytes::copy_from_slice(queue.bytes_at(&p.body));
            let body = match p.binary {
                true => PublishBody::Binary(content),
                false => PublishBody::Json {
                    content,
                    key: p.key.as_ref().map(|k| Arc::from(queue.str_at(k))),
                    delete: p.delete,
                },
            };
            let ack = p.ack.as_ref().map(|r| Box::from(queue.bytes_at(r)));
            let msg = LoopMsg::Publish {
                channel: channel.clone(),
                from: p.from.clone(),
                origin: p.origin,
                body,
                read_at_ns: p.read_at_ns,
                ack: ack.clone(),
            };
            if self.mesh_send(owner, msg) == MeshSend::Dropped {
                if let Some(ack) = ack {
                    self.refuse_unsequenced(p.origin.conn, &ack);
                }
            }
        }
    }

    /// The owner's part: number the run, encode it once into one buffer, retain it, and hand
    /// it to every interested loop (one mesh message per loop) and to local subscribers.
    fn publish_owned(&mut self, queue: &mut PublishQueue, channel: &Arc<str>, run: Range<usize>) {
        if let Some(period) = self.env.config.tick_for(channel) {
            // A room: held until its tick (`tick.rs`), then numbered and sent as one batch.
            return self.hold_for_tick(queue, channel, run, period);
        }
        let count = run.len() as u64;
        let Some(reserved) = self.channels.owned.reserve(channel, count, self.now_ns) else {
            // Nobody subscribes and nothing is retained: it reaches no one, unnumbered.
            return self.send_acks(queue, channel, run, None);
        };
        self.send_acks(queue, channel, run.clone(), Some(reserved.first_seq));
        let batch = encode_run(queue, channel, run.clone(), reserved.first_seq);
        if reserved.snapshot {
            self.fold_into_snapshot(queue, channel, run, reserved.first_seq);
        }
        if self.channels.owned.retains() {
            let frames = (0..batch.frames.len()).map(|i| batch.prepared(i));
            let evicted =
                self.channels
                    .owned
                    .retain(channel, reserved.first_seq, frames, self.now_ns);
            self.metrics.add(Counter::HistoryEvicted, evicted);
        }
        let batch = Arc::new(batch);
        let me = 1u64 << self.id;
        let mut others = reserved.interest & !me;
        while others != 0 {
            let to = others.trailing_zeros() as LoopId;
            others &= others - 1;
            self.mesh_send(
                to,
                LoopMsg::Deliver {
                    batch: batch.clone(),
                },
            );
        }
        if reserved.interest & me != 0 {
            self.deliver_batch(&batch);
        }
    }
}

impl EventLoop {
    /// Keeps the run's messages in the channel's keyed snapshot (`--snapshot-for` channels
    /// only: the caller checked `Reserved::snapshot`); counts the keys that evicted.
    fn fold_into_snapshot(
        &mut self,
        queue: &PublishQueue,
        channel: &str,
        run: Range<usize>,
        first_seq: u64,
    ) {
        let updates = queue.items[run].iter().enumerate().map(|(i, p)| Update {
            key: p.key.as_ref().map(|k| queue.str_at(k)),
            seq: first_seq + i as u64,
            content: queue.bytes_at(&p.body),
            binary: p.binary,
            delete: p.delete,
        });
        let evicted = self.channels.owned.snapshot(channel, updates);
        self.metrics
            .add(Counter::SnapshotEvictedKeys, evicted.by_keys);
        self.metrics
            .add(Counter::SnapshotEvictedBytes, evicted.by_bytes);
    }
}

/// What travels with a publish besides its channel, body, key and ack id.
#[derive(Debug, Clone)]
pub(super) struct PublishMeta {
    /// A binary publish.
    pub binary: bool,
    /// `"delete":true`.
    pub delete: bool,
    /// The publisher's public name.
    pub from: Arc<str>,
    /// The publisher.
    pub origin: ConnRef,
    /// When it was read off the publisher's socket.
    pub read_at_ns: u64,
}

/// Encodes a run's frames back to back (seqs from `first_seq`) into one buffer.
pub(super) fn encode_run(
    queue: &mut PublishQueue,
    channel: &Arc<str>,
    run: Range<usize>,
    first_seq: u64,
) -> Batch {
    let PublishQueue {
        arena,
        items,
        scratch,
        ..
    } = queue;
    let mut wire = Vec::with_capacity(run.len() * (64 + channel.len()));
    let mut frames = Vec::with_capacity(run.len());
    for (i, p) in items[run].iter().enumerate() {
        let seq = first_seq + i as u64;
        let body = arena.get(p.body.clone()).unwrap_or_default();
        scratch.clear();
        let opcode = encode_payload(scratch, (channel, arena), p, body, seq);
        let mut header = [0u8; CLIENT_HEADER_BYTES_MAX];
        let header_len = encode_header(&mut header, true, opcode, scratch.len() as u64, None);
        let start = wire.len();
        wire.extend_from_slice(&header[..header_len]);
        wire.extend_from_slice(scratch);
        let key = p.key.as_ref().and_then(|k| arena.get(k.clone()));
        frames.push(FrameMeta {
            start: start as u32,
            len: (wire.len() - start) as u32,
            origin: Some(p.origin),
            read_at_ns: p.read_at_ns,
            conflation_key: conflation_key(channel, key),
        });
    }
    Batch {
        channel: channel.clone(),
        first_seq,
        bytes: Bytes::from(wire),
        frames,
        compressed: Default::default(),
    }
}

/// Writes one delivery's payload; returns its opcode.
fn encode_payload(
    out: &mut Vec<u8>,
    (channel, arena): (&str, &[u8]),
    p: &Pending,
    body: &[u8],
    seq: u64,
) -> OpCode {
    if p.binary {
        // Channel names are at most 255 bytes (config validation), so this cannot fail.
        let encoded = encode::encode_binary_message(out, channel, seq, body);
        debug_assert!(encoded.is_ok());
        OpCode::Binary
    } else if p.key.is_some() || p.delete {
        // The key travels with the delivery so that subscribers can keep the latest value
        // per key (snapshots, throttled subscriptions); unkeyed publishes are unchanged.
        let key = p.key.as_ref().and_then(|k| arena.get(k.clone()));
        let key = key.and_then(|k| std::str::from_utf8(k).ok());
        encode::encode_keyed_message(out, (channel, body, &p.from, seq), key, p.delete);
        OpCode::Text
    } else {
        encode::encode_message(out, channel, body, &p.from, seq);
        OpCode::Text
    }
}

/// The conflation key of a publish: its channel, or its channel and `key`. Never 0.
fn conflation_key(channel: &str, key: Option<&[u8]>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = crate::hash::FxHasher::default();
    channel.hash(&mut h);
    key.hash(&mut h);
    h.finish() | 1
}
