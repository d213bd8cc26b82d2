//! Presence on the loop (`--presence-for`): members' loops tell the channel's owner of joins
//! and leaves; the owner keeps the exact member table (`pubsub::presence`) and tells the loops
//! with watchers, encoding each change once; each loop hands the same bytes to its watchers.
//!
//! Who is who:
//! - a *member* is any connection subscribed to a presence channel (it joins when its
//!   subscription is answered, leaves on unsubscribe or close);
//! - a *watcher* is a member that subscribed with `"presence":true`: it gets the list
//!   (`{"type":"presence",…}`) and then `join`/`leave` messages;
//! - `{"type":"presence","channel":C}` asks the owner for the list once (any connection that
//!   may subscribe to C).
//!
//! Ordering (the seam): a watcher's join travels to the owner, which tells the change to the
//! loops with watchers first, then counts the new watcher and answers with the list; the
//! watcher's loop adds it to its local watchers when the list arrives. Every change the owner
//! told before the list was answered is in the list; every change after it reaches the
//! watcher (same FIFO queue), so it misses nothing and is not told its own join. Changes held
//! by the storm bound and told after the list may repeat what the list showed.
//!
//! Bounds: joins and leaves are never dropped between loops (at most one of each per
//! membership, so bounded by connections × `--max-subscriptions`); list requests are capped
//! by the subscribe requests in flight (`busy` beyond); the changes told to other loops are
//! data (dropped and counted when the mesh is full, like deliveries). Presence messages go to
//! the data lane of a watcher's outbox; a watcher whose outbox is full is closed as a slow
//! consumer (4100: on reconnect it gets a fresh list).
//!
//! Lists and changes are encoded ONCE by the owner (`pubsub::presence`) and shared by every
//! watcher (`Session::handle_delivery_n`); the per-connection errors of a presence request
//! (`presence_off`, `busy`) are `session::Reply`s encoded by the session.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use bytes::Bytes;
use indexmap::IndexSet;

use crate::conn_id::{ConnId, ConnRef, LoopId};
use crate::hash::{FxBuild, FxHashMap};
use crate::metrics::Counter;
use crate::outbox::SendStatus;
use crate::pubsub::owner_of;
use crate::pubsub::presence::{Broadcast, Counts, Member, MemberKey, Outcome, PresenceTable};
use crate::runtime::conn::AuthState;
use crate::runtime::conn::SubState;
use crate::runtime::event_loop::EventLoop;
use crate::runtime::mesh::LoopMsg;
use crate::session::Reply;

/// Presence messages between loops.
#[derive(Debug)]
pub enum PresenceMsg {
    /// Member's loop → owner: a subscription to a presence channel was answered.
    Join {
        /// Channel name.
        channel: Arc<str>,
        /// The member.
        member: ConnRef,
        /// Its description.
        desc: Member,
        /// It watches (wants the list, then the changes).
        watch: bool,
    },
    /// Member's loop → owner: the member unsubscribed or closed.
    Leave {
        /// Channel name.
        channel: Arc<str>,
        /// The member.
        member: ConnRef,
        /// It was a watcher.
        watched: bool,
    },
    /// A connection's loop → owner: send the list (and start watching when `watch`).
    Query {
        /// Channel name.
        channel: Arc<str>,
        /// Who asks.
        conn: ConnRef,
        /// An existing member starts watching.
        watch: bool,
    },
    /// Owner → asker's loop: the list.
    List {
        /// Channel name.
        channel: Arc<str>,
        /// Who asked.
        conn: ConnId,
        /// `{"type":"presence",…}`, framed.
        bytes: Bytes,
        /// Add the asker to the channel's local watchers.
        watch: bool,
        /// The answer to a `Query` (counted as a request in flight by the mesh).
        query: bool,
    },
    /// Owner → loops with watchers: join/leave frames (or a list), back to back.
    Changes {
        /// Channel name.
        channel: Arc<str>,
        /// The frames.
        bytes: Bytes,
        /// Frames in `bytes`.
        frames: u32,
    },
}

impl PresenceMsg {
    /// Dropped beyond the mesh overflow bound (data), rather than parked without bound.
    pub fn droppable(&self) -> bool {
        matches!(self, PresenceMsg::Changes { .. })
    }

    /// A request whose answer the asker waits for (counted with subscribe requests).
    pub fn is_request(&self) -> bool {
        matches!(self, PresenceMsg::Query { .. })
    }

    /// The answer to such a request.
    pub fn is_answer(&self) -> bool {
        matches!(self, PresenceMsg::List { query: true, .. })
    }
}

/// A loop's presence state: the owned channels' tables, this loop's watchers, and the storm
/// windows to flush.
#[derive(Debug, Default)]
pub(super) struct Presence {
    pub(super) owned: PresenceTable,
    watchers: FxHashMap<Arc<str>, IndexSet<ConnId, FxBuild>>,
    flushes: BinaryHeap<Reverse<(u64, Arc<str>)>>,
}

impl Presence {
    /// A loop's presence state; `clustered`: cluster mode (lists wait for a channel's sync
    /// with the other relays, `cluster_presence.rs`).
    pub(super) fn new(clustered: bool) -> Self {
        Presence {
            owned: match clustered {
                true => PresenceTable::clustered(),
                false => PresenceTable::default(),
            },
            ..Presence::default()
        }
    }

    /// When the next storm window ends (`None`: nothing held).
    pub(super) fn next_due_ns(&self) -> Option<u64> {
        self.flushes.peek().map(|Reverse((due, _))| *due)
    }
}

impl EventLoop {
    /// `"presence":true` on a subscribe: true when the channel keeps presence; otherwise the
    /// client is told (the subscription itself goes on).
    pub(super) fn presence_requested(&mut self, id: ConnId, channel: &str) -> bool {
        if self.env.config.presence_for(channel) {
            return true;
        }
        self.metrics.command_error("presence_off");
        self.reply(id, Reply::PresenceOff { channel });
        false
    }

    /// A subscription to a presence channel was answered: the connection joins.
    pub(super) fn presence_join(&mut self, id: ConnId, channel: &str, watch: bool) {
        let loop_id = self.id;
        let node = self.cluster_node();
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        let desc = Member {
            id: Arc::from(conn.id_string(node.as_deref(), loop_id)),
            sub: auth_subject(conn.auth()),
        };
        let member = ConnRef { loop_id, conn: id };
        let channel = Arc::from(channel);
        let msg = PresenceMsg::Join {
            channel,
            member,
            desc,
            watch,
        };
        self.send_presence_owner(msg);
    }

    /// The member unsubscribed or closed.
    pub(super) fn presence_leave(&mut self, id: ConnId, channel: &str, watched: bool) {
        if watched {
            self.forget_watcher(channel, id);
        }
        let member = ConnRef {
            loop_id: self.id,
            conn: id,
        };
        let channel = Arc::from(channel);
        self.send_presence_owner(PresenceMsg::Leave {
            channel,
            member,
            watched,
        });
    }

    /// A member that was not watching asks to (a second subscribe with `"presence":true`).
    pub(super) fn presence_watch(&mut self, id: ConnId, channel: &str) {
        self.ask_presence_owner(id, channel, true);
    }

    /// Asks the owner of `channel` for its member list for `id` (and, with `watch`, for the
    /// joins and leaves that follow).
    fn ask_presence_owner(&mut self, id: ConnId, channel: &str, watch: bool) {
        let conn = ConnRef {
            loop_id: self.id,
            conn: id,
        };
        let channel = Arc::from(channel);
        self.send_presence_owner(PresenceMsg::Query {
            channel,
            conn,
            watch,
        });
    }

    /// `{"type":"presence","channel":C}`: the list, once.
    pub(super) fn presence_query(&mut self, id: ConnId, channel: &str) {
        // The session's gate allowed the channel (`Session::authorize`).
        if !self.presence_requested(id, channel) {
            return;
        }
        let owner = owner_of(channel, self.mesh.loops());
        if owner != self.id && !self.mesh.may_request_subscribe() {
            self.metrics.command_error("busy");
            return self.reply(id, Reply::Busy);
        }
        self.ask_presence_owner(id, channel, false);
    }

    fn send_presence_owner(&mut self, msg: PresenceMsg) {
        let channel = match &msg {
            PresenceMsg::Join { channel, .. }
            | PresenceMsg::Leave { channel, .. }
            | PresenceMsg::Query { channel, .. } => channel.clone(),
            _ => return,
        };
        let owner = owner_of(&channel, self.mesh.loops());
        if owner == self.id {
            self.on_presence_msg(msg);
        } else {
            self.mesh_send(owner, LoopMsg::Presence(msg));
        }
    }

    /// A presence message from another loop (or this one, when it owns the channel).
    pub(super) fn on_presence_msg(&mut self, msg: PresenceMsg) {
        match msg {
            PresenceMsg::Join {
                channel,
                member,
                desc,
                watch,
            } => {
                self.metrics.inc(Counter::PresenceJoins);
                let told = self.cluster.is_some().then(|| desc.clone());
                self.presence_change(&channel, MemberKey::Local(member), Some(desc));
                // Cluster mode: tracked before the join is told to the other relays.
                self.presence_track_sync(&channel);
                if let Some(desc) = told {
                    self.presence_tell_cluster(&channel, true, desc);
                }
                if watch {
                    self.answer_list(channel, member, true, false);
                }
            }
            PresenceMsg::Leave {
                channel,
                member,
                watched,
            } => {
                self.metrics.inc(Counter::PresenceLeaves);
                let owned = &mut self.channels.presence.owned;
                // A watcher whose list waits for the channel's sync was not counted yet.
                if watched && !owned.drop_pending(&channel, member) {
                    owned.watch(&channel, member.loop_id, false);
                }
                let key = MemberKey::Local(member);
                let told = match self.cluster.is_some() {
                    true => self.channels.presence.owned.member(&channel, &key),
                    false => None,
                };
                self.presence_change(&channel, key, None);
                if let Some(desc) = told {
                    self.presence_tell_cluster(&channel, false, desc);
                }
                self.presence_track_sync(&channel);
            }
            PresenceMsg::Query {
                channel,
                conn,
                watch,
            } => self.answer_list(channel, conn, watch, true),
            PresenceMsg::List {
                channel,
                conn,
                bytes,
                watch,
                ..
            } => self.on_presence_list(&channel, conn, bytes, watch),
            PresenceMsg::Changes {
                channel,
                bytes,
                frames,
            } => self.tell_watchers(&channel, &bytes, frames),
        }
    }

    /// The owner's side of a join or leave: tell the watchers now, or hold it (storm bound).
    pub(super) fn presence_change(
        &mut self,
        channel: &Arc<str>,
        member: MemberKey,
        desc: Option<Member>,
    ) {
        let mut counts = Counts::default();
        let outcome =
            self.channels
                .presence
                .owned
                .change(channel, member, desc, self.now_ns, &mut counts);
        self.metrics
            .add(Counter::PresenceCoalesced, counts.coalesced);
        match outcome {
            Outcome::Tell(b) => self.broadcast_presence(channel, b),
            Outcome::Quiet => {}
            Outcome::FlushAt(due) => self
                .channels
                .presence
                .flushes
                .push(Reverse((due, channel.clone()))),
        }
        self.channels.presence.owned.forget_if_unused(channel);
    }

    /// The owner answers with the list; a watcher is counted before the answer leaves. In
    /// cluster mode a channel's first list waits for its sync with the other relays.
    fn answer_list(&mut self, channel: Arc<str>, to: ConnRef, watch: bool, query: bool) {
        if !self.channels.presence.owned.is_synced(&channel) {
            self.channels
                .presence
                .owned
                .defer_list(&channel, (to, watch, query));
            return self.presence_track_sync(&channel);
        }
        self.send_list(channel, to, watch, query);
    }

    /// Sends the list now (counting a new watcher first).
    pub(super) fn send_list(&mut self, channel: Arc<str>, to: ConnRef, watch: bool, query: bool) {
        if watch {
            self.channels
                .presence
                .owned
                .watch(&channel, to.loop_id, true);
        }
        let list_max = self.env.config.presence_list_max;
        let (bytes, capped) = self.channels.presence.owned.list_frame(&channel, list_max);
        if capped {
            self.metrics.inc(Counter::PresenceListCapped);
        }
        let msg = PresenceMsg::List {
            channel,
            conn: to.conn,
            bytes,
            watch,
            query,
        };
        if to.loop_id == self.id {
            self.on_presence_msg(msg);
        } else {
            self.mesh_send(to.loop_id, LoopMsg::Presence(msg));
        }
    }

    /// Ends the storm windows that are due: their held changes go out coalesced.
    pub(super) fn flush_presence(&mut self) {
        while let Some(Reverse((due, channel))) = self.channels.presence.flushes.peek().cloned() {
            if due > self.now_ns {
                break;
            }
            self.channels.presence.flushes.pop();
            let mut counts = Counts::default();
            let list_max = self.env.config.presence_list_max;
            let told =
                self.channels
                    .presence
                    .owned
                    .flush(&channel, list_max, self.now_ns, &mut counts);
            if counts.list_instead {
                self.metrics.inc(Counter::PresenceResync);
            }
            if counts.capped {
                self.metrics.inc(Counter::PresenceListCapped);
            }
            if let Some(b) = told {
                self.broadcast_presence(&channel, b);
            }
            self.presence_track_sync(&channel);
        }
    }

    /// One `Changes` message per loop with watchers (encoded once), this loop's directly.
    fn broadcast_presence(&mut self, channel: &Arc<str>, b: Broadcast) {
        let me = 1u64 << self.id;
        let mut others = b.loops & !me;
        while others != 0 {
            let to = others.trailing_zeros() as LoopId;
            others &= others - 1;
            let msg = PresenceMsg::Changes {
                channel: channel.clone(),
                bytes: b.bytes.clone(),
                frames: b.frames,
            };
            self.mesh_send(to, LoopMsg::Presence(msg));
        }
        if b.loops & me != 0 {
            self.tell_watchers(channel, &b.bytes, b.frames);
        }
    }

    /// The list reached the asker's loop: queued to it; a new watcher joins the local ones.
    fn on_presence_list(&mut self, channel: &Arc<str>, conn: ConnId, bytes: Bytes, watch: bool) {
        let watching = self
            .conn_mut(conn)
            .and_then(|c| c.session.subscriptions.get_mut(channel))
            .is_some_and(|s| s.watch_presence && s.state == SubState::Active);
        if watch && !watching {
            return; // It left meanwhile: its leave tells the owner.
        }
        if watch {
            self.channels
                .presence
                .watchers
                .entry(channel.clone())
                .or_default()
                .insert(conn);
        }
        self.push_presence(conn, bytes, 1);
    }

    /// Hands the same bytes to every local watcher of `channel`.
    fn tell_watchers(&mut self, channel: &str, bytes: &Bytes, frames: u32) {
        // Taken out while pushing (pushing needs the loop); closing a watcher only marks it.
        let Some((key, watchers)) = self.channels.presence.watchers.remove_entry(channel) else {
            return;
        };
        for &id in &watchers {
            self.push_presence(id, bytes.clone(), frames);
        }
        self.channels.presence.watchers.insert(key, watchers);
    }

    fn push_presence(&mut self, id: ConnId, bytes: Bytes, frames: u32) {
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        match conn.session.handle_delivery_n(bytes, 0, frames) {
            SendStatus::Queued => self.mark_dirty(id),
            SendStatus::Closed => self.metrics.inc(Counter::DropNotOpen),
            SendStatus::Full => self.close_slow_consumer(id),
        }
    }

    fn forget_watcher(&mut self, channel: &str, id: ConnId) {
        if let Some(set) = self.channels.presence.watchers.get_mut(channel) {
            set.swap_remove(&id);
            if set.is_empty() {
                self.channels.presence.watchers.remove(channel);
            }
        }
    }
}

/// The member's `sub`: the token's subject when authentication is on.
fn auth_subject(auth: &AuthState) -> Option<Arc<str>> {
    match auth {
        AuthState::Granted(grant) => Some(Arc::from(grant.sub.as_str())),
        _ => None,
    }
}
