//! Scale-out through NATS JetStream, the part every server build has: the vocabulary between
//! the event loops and the NATS bridge thread (`nats_bridge`, built with the `cluster`
//! feature), the channel → subject mapping and the message envelope. See docs/CLUSTER.md and
//! ARCHITECTURE.md ("Cluster mode").
//!
//! Owns: `BridgeCmd` (loop → bridge, `try_send` on a bounded crossbeam queue plus a wake
//! callback), `ClusterMsg` (bridge → loop, a bounded crossbeam queue per loop plus the loop's
//! `mio::Waker`), `LoopPort` (one loop's ends), the shared counters (`ClusterStats`).
//! May not touch: sockets, `mio` registration, tokio (the loops never see an async type).

pub mod envelope;
pub mod stats;
pub mod subject;

use std::sync::Arc;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::conn_id::{ConnId, ConnRef, LoopId};
use crate::pubsub::presence::Member;
use crate::runtime::ack::Ack;
use crate::runtime::Batch;
pub use stats::ClusterStats;

/// A publish handed to the bridge (one per client publish).
#[derive(Debug)]
pub struct PublishCmd {
    /// Channel name.
    pub channel: Arc<str>,
    /// The raw JSON `content`, or the binary payload.
    pub body: Bytes,
    /// Conflation key (JSON publishes only), carried in the delivery as on one node.
    pub key: Option<Arc<str>>,
    /// `"delete":true`, carried in the delivery as on one node.
    pub delete: bool,
    /// A binary publish.
    pub binary: bool,
    /// Publisher's public name (`from`).
    pub from: Arc<str>,
    /// The publisher.
    pub origin: ConnRef,
    /// Acknowledgement id, when the publisher asked for one.
    pub ack: Option<Box<[u8]>>,
}

/// One key of a keyed snapshot read from the key store (`--snapshot-for`).
#[derive(Debug, Clone)]
pub struct SnapshotEntry {
    /// The key ("" for publishes without one).
    pub key: Arc<str>,
    /// The seq of its latest message.
    pub seq: u64,
    /// Its verbatim JSON content or binary payload.
    pub content: Bytes,
    /// A binary publish.
    pub binary: bool,
}

/// Everything a loop asks of the bridge.
#[derive(Debug)]
pub enum BridgeCmd {
    /// Sequence and store a publish.
    Publish(PublishCmd),
    /// The owner loop has (pending) subscribers of `channel`: subscribe to its live subject,
    /// read its head, answer with `ClusterMsg::Head`, then deliver live messages in order.
    Watch {
        /// Channel name.
        channel: Arc<str>,
        /// The channel's owner loop.
        owner: LoopId,
    },
    /// Keyed snapshots: read `channel`'s snapshot from the key store again (the owner lost
    /// its cache to a gap or an epoch change) and answer with `ClusterMsg::Snapshot`.
    SnapshotLoad {
        /// Channel name (watched).
        channel: Arc<str>,
    },
    /// Nobody on this node subscribes to `channel` any more.
    Unwatch {
        /// Channel name.
        channel: Arc<str>,
    },
    /// Presence (`--presence-for`): the owner loop keeps presence state for `channel`; the
    /// bridge follows the other relays' members of it (`nats_bridge::presence`).
    PresenceTrack {
        /// Channel name.
        channel: Arc<str>,
        /// The channel's owner loop.
        owner: LoopId,
        /// Echoed in what the bridge sends back (an older tracking's answers are ignored).
        gen: u64,
    },
    /// No presence state for `channel` on this relay any more.
    PresenceUntrack {
        /// Channel name.
        channel: Arc<str>,
    },
    /// A member of this relay joined or left `channel`: told to the other relays.
    PresenceLocal {
        /// Channel name.
        channel: Arc<str>,
        /// Joined (else left).
        joined: bool,
        /// The member (its id is cluster-wide: `<node>/<loop>-<slot>-<generation>`).
        member: Member,
    },
    /// Recovery from the stream: the frames with `after < seq <= upto` in `epoch`.
    Fetch {
        /// Channel name.
        channel: Arc<str>,
        /// The channel's owner loop (where the answer goes).
        owner: LoopId,
        /// Ticket the answer carries.
        ticket: u64,
        /// The client's `since`.
        after: u64,
        /// The last seq wanted (the owner's ring holds what follows).
        upto: u64,
        /// The epoch the client recovers in.
        epoch: Arc<str>,
    },
}

/// Everything the bridge tells a loop.
#[derive(Debug)]
pub enum ClusterMsg {
    /// The head of a watched channel (after the live subscription), or its new state after an
    /// epoch change: adopt it, answer waiting subscribers.
    Head {
        /// Channel name.
        channel: Arc<str>,
        /// Epoch ("" when the channel is empty).
        epoch: Arc<str>,
        /// The last seq (0: empty).
        seq: u64,
        /// The head message's frames (seqs `seq - len + 1 ..= seq`), ready to send.
        frames: Vec<Bytes>,
    },
    /// Live messages in stream order (a seq jump is an announced gap).
    Live {
        /// The frames, numbered and encoded once.
        batch: Arc<Batch>,
        /// Their epoch.
        epoch: Arc<str>,
        /// The publisher's public name (`Wsr-Name`), for room tick batches.
        from: Option<Arc<str>>,
        /// The messages' key (`Wsr-Key`), on `--snapshot-for` channels only (`None`
        /// elsewhere: nothing is allocated for it).
        key: Option<Arc<str>>,
    },
    /// Keyed snapshots: `channel`'s latest value per key as of (`epoch`, `seq`), read from
    /// the key store. The owner installs it once its registry is at that position (live
    /// messages up to `seq` may still be on their way behind it).
    Snapshot {
        /// Channel name.
        channel: Arc<str>,
        /// The numbering.
        epoch: Arc<str>,
        /// The position.
        seq: u64,
        /// Live keys, least recently updated first.
        entries: Vec<SnapshotEntry>,
    },
    /// A recovery range (`None`: the stream no longer holds it).
    Fetched {
        /// Channel name.
        channel: Arc<str>,
        /// The `Fetch` ticket.
        ticket: u64,
        /// The frames, oldest first.
        frames: Option<Vec<Bytes>>,
    },
    /// Members of other relays joined or left a tracked presence channel (in order).
    PresenceRemote {
        /// Channel name.
        channel: Arc<str>,
        /// The `PresenceTrack` generation.
        gen: u64,
        /// (joined, member), oldest first.
        changes: Vec<(bool, Member)>,
    },
    /// Every member of other relays of a tracked presence channel (after its first sync, or
    /// after changes were dropped on a full loop queue): the owner takes the difference.
    PresenceReset {
        /// Channel name.
        channel: Arc<str>,
        /// The `PresenceTrack` generation.
        gen: u64,
        /// The other relays' members.
        members: Vec<Member>,
        /// The first sync is over: lists waiting for it are answered.
        synced: bool,
    },
    /// Publishes sequenced (JetStream acked) for publishers on this loop that asked.
    Acked {
        /// Channel name.
        channel: Arc<str>,
        /// One per publish.
        acks: Vec<Ack>,
    },
    /// A publish that was not (or may not have been) sequenced.
    Failed {
        /// The publisher.
        conn: ConnId,
        /// Its acknowledgement id, if any.
        ack: Option<Box<[u8]>>,
        /// Why (sent to the client).
        reason: &'static str,
    },
}

/// Wakes the bridge after commands were queued (a tokio `Notify` behind a closure, so that
/// the loops never see an async type).
pub type BridgeWake = Arc<dyn Fn() + Send + Sync>;

/// One loop's ends of the bridge.
pub struct LoopPort {
    /// Commands to the bridge.
    pub cmd: Sender<BridgeCmd>,
    /// Wakes the bridge.
    pub wake: BridgeWake,
    /// This loop's queue from the bridge (drained every turn).
    pub rx: Receiver<ClusterMsg>,
    /// Shared counters.
    pub stats: Arc<ClusterStats>,
    /// This relay's node name with its boot nonce (`<name>.<nonce>`): the prefix of
    /// connection ids in cluster mode.
    pub node: Arc<str>,
}

impl std::fmt::Debug for LoopPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopPort")
            .field("queued", &self.rx.len())
            .finish_non_exhaustive()
    }
}

impl LoopPort {
    /// Queues a command (never blocks). `false`: the queue is full.
    pub fn send(&self, cmd: BridgeCmd) -> bool {
        match self.cmd.try_send(cmd) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }

    /// Queues a command (never blocks); a full queue hands it back.
    pub fn try_send(&self, cmd: BridgeCmd) -> Result<(), BridgeCmd> {
        self.cmd.try_send(cmd).map_err(|e| match e {
            TrySendError::Full(c) | TrySendError::Disconnected(c) => c,
        })
    }
}
