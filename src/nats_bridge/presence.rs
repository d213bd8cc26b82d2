//! Presence across relays, the bridge's side (cluster mode with `--presence-for`;
//! docs/CLUSTER.md, "Presence across relays"). Each relay knows its own members exactly (the
//! owner loops); this module tells them to the other relays and keeps theirs, over core NATS
//! (no JetStream: presence is soft state, rebuilt from the live relays):
//!
//! - `wsr.p.<k>.<tok>` (one per channel, subscribed while the relay tracks the channel):
//!   `J`/`L` deltas (a member joined or left) and `F` full lists (the first of one or more
//!   parts; `A` appends, `Wsr-End` marks the last), each with the sender's `Wsr-Node`, its
//!   counter `Wsr-G` and `Wsr-Prev`, the counter of its previous message on the channel
//!   (0: the sender's state of the channel is new, it had no member before). One publisher's
//!   messages on one subject arrive in order (NATS), so a delta whose `Wsr-Prev` is not the
//!   last counter seen from that relay means one was lost: the receiver asks that relay
//!   alone for its list again.
//! - `wsr.ps.<k>.<tok>` (every relay subscribes to `wsr.ps.>`): a sync request. Every relay
//!   answers with its `F` list on the channel subject (empty when it has no member), so the
//!   answer is ordered with its deltas.
//! - `wsr.hb`: heartbeats (`H`, every third of `--nats-presence-timeout`; a relay hearing a
//!   new one answers at once) and `B` (bye, on shutdown). A relay not heard for
//!   `--nats-presence-timeout` (checked at each heartbeat) is gone: its
//!   members leave every channel (the bound on a killed relay's members). While this relay
//!   itself is disconnected nobody expires; after a reconnect (or a slow-consumer event) it
//!   re-sends its lists and asks for everyone's.
//!
//! A channel's first sync: SUB the channel subject, flush (the server has the SUB), publish
//! the request, then wait for an answer from every relay heard alive (at least `DISCOVERY`
//! after start-up, so that the relays are known) or `SYNC_TIMEOUT`; then the owner loop gets
//! the full set (`PresenceReset`, `synced`) and answers its waiting lists. Later changes go to
//! the owner loop as `PresenceRemote` on the loop queue; when it is full they are dropped
//! and the owner gets the full set again instead (never a wait).
//!
//! Bounds: outgoing messages go through one bounded queue (`OUT_QUEUE_LEN_MAX`) to one
//! publishing task (order kept); when it is full the channel's list is re-sent later in
//! full (`republish`). Incoming messages come through a bounded queue; ids and subjects from
//! the network are length-checked, and at most `MEMBERS_PER_RELAY_MAX` members are kept per
//! relay and channel; a full list is split into parts under the NATS payload limit.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt;
use indexmap::IndexMap;
use tokio::sync::mpsc;

use super::central::Bridge;
use super::publish::{header, header_u64};
use crate::clock::Clock;
use crate::cluster::stats::Stat;
use crate::cluster::{subject, ClusterMsg, ClusterStats};
use crate::conn_id::LoopId;
use crate::pubsub::presence::Member;

mod members;
mod wire;

use members::{apply_delta, apply_list, diff};
use wire::{channel_subject, decode, put, put_member};

/// Heartbeats per node timeout (`--nats-presence-timeout`): a relay is gone after missing
/// about this many.
const BEATS_PER_TIMEOUT: u32 = 3;
/// After start-up, first syncs wait at least this long (other relays answer the first
/// heartbeat at once: they are known by then).
const DISCOVERY: Duration = Duration::from_millis(300);
/// A first sync ends after this long even if a relay did not answer.
const SYNC_TIMEOUT: Duration = Duration::from_secs(2);
/// Outgoing presence messages waiting for the publishing task.
const OUT_QUEUE_LEN_MAX: usize = 65_536;
/// Incoming presence messages waiting for the central task.
pub(super) const IN_QUEUE_LEN_MAX: usize = 65_536;
/// Expired relays remembered (a relay heard again after it expired here is asked for its
/// lists); beyond, the set is cleared.
const EXPIRED_MAX: usize = 1024;
/// Members of one relay on one channel kept at most (beyond, its further joins and list
/// entries are ignored: a relay's own limits keep it far below).
const MEMBERS_PER_RELAY_MAX: usize = 1 << 20;
/// Longest member id or subject taken from the network.
const FIELD_BYTES_MAX: usize = 1024;

const HEARTBEATS: &str = "wsr.hb";
const SYNCS: &str = "wsr.ps.>";
const NODE: &str = "Wsr-Node";
const OP: &str = "Wsr-Op";
const G: &str = "Wsr-G";
const PREV: &str = "Wsr-Prev";
const END: &str = "Wsr-End";
const TO: &str = "Wsr-To";

/// What the presence subscriptions forward to the central task.
pub(super) enum PresenceEvent {
    /// The channel subject's SUB reached the server: send the sync request.
    Subscribed { channel: Arc<str>, gen: u64 },
    /// A message on a channel subject.
    Channel {
        channel: Arc<str>,
        gen: u64,
        msg: async_nats::Message,
    },
    /// A heartbeat or a sync request.
    Global(async_nats::Message),
}

/// Another relay's members of one channel.
#[derive(Default)]
struct Remote {
    members: IndexMap<Arc<str>, Member>,
    /// Its counter of the last message applied.
    last: u64,
    /// A list arriving in parts.
    incoming: Option<IndexMap<Arc<str>, Member>>,
}

/// One tracked channel.
struct Chan {
    owner: LoopId,
    gen: u64,
    task: tokio::task::AbortHandle,
    local: IndexMap<Arc<str>, Member>,
    /// This relay's counter of its last message on the channel.
    prev: u64,
    remote: HashMap<Arc<str>, Remote>,
    /// The first sync: started at, relays that answered (`None`: over).
    sync: Option<(u64, HashSet<Arc<str>>)>,
    /// Changes for the owner loop.
    changes: Vec<(bool, Member)>,
    /// The owner loop missed changes: send the full set.
    reset: bool,
    /// Our list could not be queued: send it in full later.
    republish: bool,
}

impl Drop for Chan {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The bridge's presence state (present only with `--presence-for`).
pub(super) struct PresenceNet {
    node: Arc<str>,
    stats: Arc<ClusterStats>,
    /// Relays expired here (bounded by `EXPIRED_MAX`): heard again, their lists are asked.
    expired: HashSet<Arc<str>>,
    shards: u32,
    payload_max: usize,
    out: mpsc::Sender<(String, HeaderMap, Bytes)>,
    events: mpsc::Sender<PresenceEvent>,
    /// Other relays heard, with when.
    nodes: HashMap<Arc<str>, u64>,
    chans: HashMap<Arc<str>, Chan>,
    /// Channels with changes or a reset for their owner, or a list to re-send.
    dirty: HashSet<Arc<str>>,
    /// Channels whose first sync is under way.
    syncing: HashSet<Arc<str>>,
    counter: u64,
    started_ns: u64,
    next_beat_ns: u64,
    /// A relay not heard for this long is gone (`--nats-presence-timeout`).
    timeout: Duration,
    /// How often this relay says it is alive.
    beat: Duration,
}

impl PresenceNet {
    /// Starts the publishing task and the heartbeat and sync-request subscriptions.
    pub(super) fn start(
        client: &async_nats::Client,
        node: &str,
        shards: u32,
        payload_max: usize,
        events: mpsc::Sender<PresenceEvent>,
        stats: Arc<ClusterStats>,
        timeout: Duration,
    ) -> Self {
        let beat = timeout / BEATS_PER_TIMEOUT;
        let (out, mut out_rx) = mpsc::channel::<(String, HeaderMap, Bytes)>(OUT_QUEUE_LEN_MAX);
        let c = client.clone();
        tokio::spawn(async move {
            while let Some((subject, h, payload)) = out_rx.recv().await {
                // Lost while disconnected: the lists are re-sent after the reconnect.
                let _ = c.publish_with_headers(subject, h, payload).await;
            }
        });
        spawn_global_subs(client, node, events.clone());
        let now = Clock::now_ns();
        PresenceNet {
            node: Arc::from(node),
            stats,
            expired: HashSet::new(),
            shards,
            payload_max,
            out,
            events,
            nodes: HashMap::new(),
            chans: HashMap::new(),
            dirty: HashSet::new(),
            syncing: HashSet::new(),
            counter: 0,
            started_ns: now,
            next_beat_ns: now + beat.as_nanos() as u64,
            timeout,
            beat,
        }
    }

    fn headers(&self, op: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(NODE, &*self.node);
        h.insert(OP, op);
        h
    }

    /// Queues a message; `false` when the queue is full.
    fn send(&self, subject: String, h: HeaderMap, payload: Bytes) -> bool {
        let sent = self.out.try_send((subject, h, payload)).is_ok();
        if !sent {
            self.stats.inc(Stat::PresenceSendDrops);
        }
        sent
    }

    fn heartbeat(&mut self, op: &str) {
        let h = self.headers(op);
        let _ = self.send(HEARTBEATS.into(), h, Bytes::new());
    }

    /// The bye, sent when the relay stops (the others drop its members at once).
    pub(super) async fn bye(&self, client: &async_nats::Client) {
        let h = self.headers("B");
        let _ = client
            .publish_with_headers(HEARTBEATS, h, Bytes::new())
            .await;
        let _ = client.flush().await;
    }

    /// This relay's list of `channel` on its subject, in parts under the payload limit.
    fn send_list(&mut self, channel: &str) {
        let empty = IndexMap::new();
        let (members, g) = match self.chans.get(channel) {
            Some(c) => (&c.local, c.prev),
            None => (&empty, 0),
        };
        let subj = channel_subject(channel, self.shards);
        let mut parts = Vec::new();
        let mut payload = Vec::new();
        put(&mut payload, channel.as_bytes());
        for m in members.values() {
            if payload.len() + m.id.len() + m.sub.as_ref().map_or(0, |s| s.len()) + 16
                > self.payload_max
            {
                parts.push(std::mem::take(&mut payload));
                put(&mut payload, channel.as_bytes());
            }
            put_member(&mut payload, m);
        }
        parts.push(payload);
        let last = parts.len() - 1;
        let mut queued = true;
        for (i, part) in parts.into_iter().enumerate() {
            let mut h = self.headers(if i == 0 { "F" } else { "A" });
            h.insert(G, g.to_string().as_str());
            if i == last {
                h.insert(END, "1");
            }
            queued &= self.send(subj.clone(), h, Bytes::from(part));
        }
        if !queued {
            if let Some(c) = self.chans.get_mut(channel) {
                c.republish = true;
                self.dirty.insert(Arc::from(channel));
            }
        }
    }

    fn request_sync(&mut self, channel: &str, to: Option<&str>) {
        let mut h = self.headers("S");
        if let Some(to) = to {
            h.insert(TO, to);
        }
        let mut payload = Vec::new();
        put(&mut payload, channel.as_bytes());
        let subj = format!(
            "wsr.ps.{}.{}",
            subject::shard_of(channel, self.shards),
            subject::escape(channel)
        );
        let _ = self.send(subj, h, Bytes::from(payload));
    }
}

impl Bridge {
    /// The owner loop holds presence state for `channel`: follow the other relays' members.
    pub(super) fn on_presence_track(&mut self, channel: Arc<str>, owner: LoopId, gen: u64) {
        let Some(p) = self.presence.as_mut() else {
            return;
        };
        if let Some(c) = p.chans.get_mut(&channel) {
            // Tracked again without an untrack in between (not sent by the loops): answer.
            c.owner = owner;
            c.gen = gen;
            c.reset = true;
            p.dirty.insert(channel);
            return;
        }
        let task = spawn_channel_sub(&self.io.client, &channel, gen, p);
        let chan = Chan {
            owner,
            gen,
            task,
            local: IndexMap::new(),
            prev: 0,
            remote: HashMap::new(),
            sync: Some((Clock::now_ns(), HashSet::new())),
            changes: Vec::new(),
            reset: false,
            republish: false,
        };
        p.syncing.insert(channel.clone());
        p.chans.insert(channel, chan);
    }

    pub(super) fn on_presence_untrack(&mut self, channel: &Arc<str>) {
        if let Some(p) = self.presence.as_mut() {
            p.chans.remove(channel);
            p.dirty.remove(channel);
            p.syncing.remove(channel);
        }
    }

    /// A member of this relay joined or left: told to the others.
    pub(super) fn on_presence_local(&mut self, channel: &Arc<str>, joined: bool, m: Member) {
        let Some(p) = self.presence.as_mut() else {
            return;
        };
        p.counter += 1;
        let g = p.counter;
        let Some(c) = p.chans.get_mut(channel) else {
            return;
        };
        let prev = std::mem::replace(&mut c.prev, g);
        match joined {
            true => c.local.insert(m.id.clone(), m.clone()),
            false => c.local.swap_remove(&m.id),
        };
        let mut h = p.headers(if joined { "J" } else { "L" });
        h.insert(G, g.to_string().as_str());
        h.insert(PREV, prev.to_string().as_str());
        let mut payload = Vec::new();
        put(&mut payload, channel.as_bytes());
        put_member(&mut payload, &m);
        if !p.send(channel_subject(channel, p.shards), h, Bytes::from(payload)) {
            if let Some(c) = p.chans.get_mut(channel) {
                c.republish = true;
                p.dirty.insert(channel.clone());
            }
        }
    }

    pub(super) fn on_presence_event(&mut self, ev: PresenceEvent) {
        let Some(p) = self.presence.as_mut() else {
            return;
        };
        match ev {
            PresenceEvent::Subscribed { channel, gen } => {
                if p.chans.get(&channel).is_some_and(|c| c.gen == gen) {
                    if let Some(c) = p.chans.get_mut(&channel) {
                        // (Again, if the first sync ended by its timeout before the SUB.)
                        c.sync = Some((Clock::now_ns(), HashSet::new()));
                        p.syncing.insert(channel.clone());
                    }
                    p.request_sync(&channel, None);
                    p.check_sync(&channel);
                }
            }
            PresenceEvent::Channel { channel, gen, msg } => {
                if p.chans.get(&channel).is_some_and(|c| c.gen == gen) {
                    p.on_channel_msg(&channel, &msg);
                }
            }
            PresenceEvent::Global(msg) => p.on_global(&msg),
        }
    }

    /// Every bridge wake: heartbeats, expiry, first-sync timeouts, changes to the owners.
    pub(super) fn presence_turn(&mut self) {
        let connected = !self.disconnected;
        let Some(p) = self.presence.as_mut() else {
            return;
        };
        let now = Clock::now_ns();
        if now >= p.next_beat_ns {
            p.next_beat_ns = now + p.beat.as_nanos() as u64;
            p.heartbeat("H");
            if connected {
                p.expire(now);
            }
        }
        let syncing: Vec<Arc<str>> = p.syncing.iter().cloned().collect();
        for channel in syncing {
            p.check_sync(&channel);
        }
        p.flush_dirty(&mut self.out);
        self.stats
            .set_presence(p.nodes.len() as u64, p.chans.len() as u64);
    }

    /// After a reconnect or a slow-consumer event: nobody expires for a while, our lists go
    /// out again and everyone's are asked for.
    pub(super) fn presence_resync(&mut self) {
        let Some(p) = self.presence.as_mut() else {
            return;
        };
        let now = Clock::now_ns();
        for seen in p.nodes.values_mut() {
            *seen = now;
        }
        p.heartbeat("H");
        let channels: Vec<Arc<str>> = p.chans.keys().cloned().collect();
        for channel in channels {
            p.send_list(&channel);
            p.request_sync(&channel, None);
        }
    }
}

/// Subscribes to heartbeats and sync requests, sends the first heartbeat once the server has
/// the SUBs (the relays that answer it at once are heard: first syncs wait `DISCOVERY` for
/// them), then forwards both to the central task.
fn spawn_global_subs(client: &async_nats::Client, node: &str, events: mpsc::Sender<PresenceEvent>) {
    let c = client.clone();
    let tx = events;
    let mut hello = HeaderMap::new();
    hello.insert(NODE, node);
    hello.insert(OP, "H");
    tokio::spawn(async move {
        let (Ok(beats), Ok(syncs)) = (c.subscribe(HEARTBEATS).await, c.subscribe(SYNCS).await)
        else {
            tracing::error!("cluster: presence subscriptions failed");
            return;
        };
        // The first heartbeat once the server has our SUBs: the relays that answer it at
        // once are heard (the first syncs wait `DISCOVERY` for them).
        let _ = c.flush().await;
        let _ = c
            .publish_with_headers(HEARTBEATS, hello, Bytes::new())
            .await;
        let mut both = futures_util::stream::select(beats, syncs);
        while let Some(m) = both.next().await {
            if tx.send(PresenceEvent::Global(m)).await.is_err() {
                return;
            }
        }
    });
}

/// SUB the channel subject, flush (the server has the SUB), tell the central task, forward.
fn spawn_channel_sub(
    client: &async_nats::Client,
    channel: &Arc<str>,
    gen: u64,
    p: &PresenceNet,
) -> tokio::task::AbortHandle {
    let client = client.clone();
    let tx = p.events.clone();
    let channel = channel.clone();
    let subj = channel_subject(&channel, p.shards);
    tokio::spawn(async move {
        let Ok(mut sub) = client.subscribe(subj).await else {
            return;
        };
        let _ = client.flush().await;
        let ch = channel.clone();
        if tx
            .send(PresenceEvent::Subscribed { channel: ch, gen })
            .await
            .is_err()
        {
            return;
        }
        while let Some(msg) = sub.next().await {
            let channel = channel.clone();
            if tx
                .send(PresenceEvent::Channel { channel, gen, msg })
                .await
                .is_err()
            {
                return;
            }
        }
    })
    .abort_handle()
}

impl PresenceNet {
    fn sender(&self, msg: &async_nats::Message) -> Option<(Arc<str>, String)> {
        let h = msg.headers.as_ref()?;
        let node = header(h, NODE)?;
        if node == &*self.node || node.len() > FIELD_BYTES_MAX {
            return None;
        }
        Some((Arc::from(node), header(h, OP)?.to_string()))
    }

    /// A heartbeat, a bye, or a sync request.
    fn on_global(&mut self, msg: &async_nats::Message) {
        let Some((node, op)) = self.sender(msg) else {
            return;
        };
        match op.as_str() {
            "H" => {
                let now = Clock::now_ns();
                if self.nodes.insert(node.clone(), now).is_some() {
                    return;
                }
                self.heartbeat("H"); // A new relay: it learns of us at once.
                if self.expired.remove(&node) {
                    // Expired here while alive (it was slow, or cut off): its lists again.
                    let channels: Vec<Arc<str>> = self.chans.keys().cloned().collect();
                    for channel in channels {
                        self.request_sync(&channel, Some(&node));
                    }
                }
            }
            "B" => self.forget_node(&node),
            "S" => {
                let to = msg.headers.as_ref().and_then(|h| header(h, TO));
                if to.is_some_and(|to| to != &*self.node) {
                    return;
                }
                if let Some((channel, _)) = decode(&msg.payload) {
                    let channel = channel.to_string();
                    self.send_list(&channel);
                }
            }
            _ => {}
        }
    }

    /// A delta or a list on a tracked channel's subject.
    fn on_channel_msg(&mut self, channel: &Arc<str>, msg: &async_nats::Message) {
        let Some((node, op)) = self.sender(msg) else {
            return;
        };
        let Some(h) = msg.headers.as_ref() else {
            return;
        };
        let (Some(g), Some((_, members))) = (header_u64(h, G), decode(&msg.payload)) else {
            return;
        };
        let end = header(h, END).is_some();
        let prev = header_u64(h, PREV).unwrap_or(0);
        self.nodes.entry(node.clone()).or_insert_with(Clock::now_ns);
        let Some(c) = self.chans.get_mut(channel) else {
            return;
        };
        let r = c.remote.entry(node.clone()).or_default();
        let mut changes = Vec::new();
        let resync = match op.as_str() {
            "J" | "L" => apply_delta(r, op == "J", g, prev, members, &mut changes),
            "F" | "A" => {
                apply_list(r, op == "F", end, g, members, &mut changes);
                if let Some((_, answered)) = c.sync.as_mut().filter(|_| end) {
                    answered.insert(node.clone());
                }
                false
            }
            _ => return,
        };
        if c.sync.is_none() && !c.reset {
            c.changes.extend(changes);
            self.dirty.insert(channel.clone());
        }
        if resync {
            self.stats.inc(Stat::PresenceResyncs);
            self.request_sync(channel, Some(&node));
        }
        if end {
            self.check_sync(channel);
        }
    }

    /// Ends a channel's first sync when every relay heard alive answered (after the
    /// discovery time), or at its timeout.
    fn check_sync(&mut self, channel: &Arc<str>) {
        let now = Clock::now_ns();
        let discovered = now >= self.started_ns + DISCOVERY.as_nanos() as u64;
        let Some(c) = self.chans.get_mut(channel) else {
            return;
        };
        let Some((started, answered)) = c.sync.as_ref() else {
            return;
        };
        let all = self.nodes.keys().all(|n| answered.contains(n));
        let timed_out = now >= started + SYNC_TIMEOUT.as_nanos() as u64;
        if (all && discovered) || timed_out {
            if timed_out && !all {
                self.stats.inc(Stat::PresenceSyncTimeouts);
            }
            c.sync = None;
            c.reset = true;
            c.changes.clear();
            self.syncing.remove(channel);
            self.dirty.insert(channel.clone());
        }
    }

    /// Drops relays not heard for the node timeout.
    fn expire(&mut self, now: u64) {
        let timeout = self.timeout.as_nanos() as u64;
        let gone: Vec<Arc<str>> = self
            .nodes
            .iter()
            .filter(|(_, &seen)| seen + timeout < now)
            .map(|(n, _)| n.clone())
            .collect();
        for node in gone {
            tracing::info!(%node, timeout = ?self.timeout, "cluster: relay not heard; its presence members leave");
            self.stats.inc(Stat::PresenceNodesExpired);
            if self.expired.len() >= EXPIRED_MAX {
                self.expired.clear();
            }
            self.expired.insert(node.clone());
            self.forget_node(&node);
        }
    }

    /// A relay is gone: its members leave every channel.
    fn forget_node(&mut self, node: &Arc<str>) {
        self.nodes.remove(node);
        let channels: Vec<Arc<str>> = self.chans.keys().cloned().collect();
        for channel in channels {
            let Some(c) = self.chans.get_mut(&channel) else {
                continue;
            };
            if let Some(r) = c.remote.remove(node) {
                if c.sync.is_none() && !c.reset {
                    diff(&r.members, &IndexMap::new(), &mut c.changes);
                    self.dirty.insert(channel.clone());
                }
            }
            self.check_sync(&channel);
        }
    }

    /// Sends the owners their changes (or the full set when they missed some), and re-sends
    /// lists that did not fit the outgoing queue.
    fn flush_dirty(&mut self, out: &mut super::out::Outs) {
        let dirty: Vec<Arc<str>> = self.dirty.drain().collect();
        for channel in dirty {
            let Some(c) = self.chans.get_mut(&channel) else {
                continue;
            };
            if std::mem::take(&mut c.republish) {
                self.send_list(&channel);
            }
            let Some(c) = self.chans.get_mut(&channel) else {
                continue;
            };
            let msg = if c.reset {
                let members = c
                    .remote
                    .values()
                    .flat_map(|r| r.members.values().cloned())
                    .collect();
                ClusterMsg::PresenceReset {
                    channel: channel.clone(),
                    gen: c.gen,
                    members,
                    synced: c.sync.is_none(),
                }
            } else if !c.changes.is_empty() {
                ClusterMsg::PresenceRemote {
                    channel: channel.clone(),
                    gen: c.gen,
                    changes: std::mem::take(&mut c.changes),
                }
            } else {
                continue;
            };
            match out.live(c.owner, msg) {
                Ok(()) => c.reset = false,
                Err(_) => {
                    // The owner's queue is full: it gets the full set once there is room.
                    self.stats.inc(Stat::PresenceOwnerResets);
                    c.changes.clear();
                    c.reset = true;
                    self.dirty.insert(channel);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
