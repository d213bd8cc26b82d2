//! Subscriptions on the loop: subscribe (asking the channel's owner for seq, epoch and
//! replay), the owner's answer, unsubscribe, and the interest bookkeeping with the owner.
//!
//! Seam rule: a connection joins the local subscriber set when the owner's answer arrives.
//! Every delivery the owner numbered before answering travelled the same FIFO queue ahead of
//! the answer, so replay (seq ≤ answer) and live deliveries (seq > answer) meet with no gap and
//! no duplicate.

use std::sync::Arc;

use crate::conn_id::LoopId;
use crate::conn_id::{ConnId, ConnRef};
use crate::proto::frame::PreparedFrame;
use crate::pubsub::{owner_of, Since, SubscribeOutcome};
use crate::runtime::conn::SubState;
use crate::runtime::conn::Subscription;
use crate::runtime::event_loop::EventLoop;
use crate::runtime::mesh::LoopMsg;
use crate::session::Reply;

pub(super) use crate::session::SubscribeOptions;

impl EventLoop {
    /// `{"type":"subscribe"}`: ask the owner for the seq, epoch and replay; the connection gets
    /// deliveries once the answer is in (`on_subscribed`).
    pub(super) fn subscribe(
        &mut self,
        id: ConnId,
        channel: &str,
        since: Option<(u64, Option<Arc<str>>)>,
        options: SubscribeOptions,
    ) {
        let owner = owner_of(channel, self.mesh.loops());
        if owner != self.id && !self.mesh.may_request_subscribe() {
            // Too many subscribe requests wait for other loops (a subscribe storm): refuse
            // this one now rather than queue without bound (mesh.rs, module rules).
            self.metrics.command_error("busy");
            return self.reply(id, Reply::Busy);
        }
        // The session's gate allowed the channel (`Session::authorize`).
        let watch = options.presence && self.presence_requested(id, channel);
        if self.record_subscription(id, channel, watch, options) {
            self.channels.local.begin_subscribe(channel);
            self.ask_owner(id, channel, owner, since, options);
        }
    }

    /// Adds the pending subscription to the connection (or, subscribed already, starts the
    /// presence watch it now asks for). False when refused (too many subscriptions, answered)
    /// or when the connection is gone.
    fn record_subscription(
        &mut self,
        id: ConnId,
        channel: &str,
        watch: bool,
        options: SubscribeOptions,
    ) -> bool {
        let max = self.env.config.subscriptions_per_connection_max;
        let Some(conn) = self.conn_mut(id) else {
            return false;
        };
        if let Some(sub) = conn.session.subscriptions.get_mut(channel) {
            if watch
                && !std::mem::replace(&mut sub.watch_presence, true)
                && sub.state == SubState::Active
            {
                self.presence_watch(id, channel);
            }
            return true;
        }
        if conn.session.subscriptions.len() >= max {
            self.metrics.command_error("too_many_subscriptions");
            self.reply(id, Reply::TooManySubscriptions);
            return false;
        }
        conn.session.subscriptions.push(Subscription {
            channel: Arc::from(channel),
            state: SubState::Pending,
            epoch: Arc::from(""),
            gap: None,
            conflated_gap: None,
            watch_presence: watch,
            throttle_ms: options.throttle_ms,
        });
        true
    }

    /// Asks the channel's owner (this loop, the cluster's stream, or another loop) for the
    /// subscription's seq, epoch and replay; the answer comes to `on_subscribed`.
    fn ask_owner(
        &mut self,
        id: ConnId,
        channel: &str,
        owner: LoopId,
        since: Option<(u64, Option<Arc<str>>)>,
        options: SubscribeOptions,
    ) {
        let origin = ConnRef {
            loop_id: self.id,
            conn: id,
        };
        if owner == self.id && self.cluster.is_some() {
            return self.cluster_subscribe(Arc::from(channel), origin, since, options.binary);
        }
        if owner != self.id {
            let msg = LoopMsg::Subscribe {
                channel: Arc::from(channel),
                origin,
                since,
                binary_snapshot: options.binary,
            };
            self.mesh_send(owner, msg);
            return;
        }
        let since = since.as_ref().map(|(seq, epoch)| Since {
            seq: *seq,
            epoch: epoch.as_deref(),
        });
        let (now_ns, binary) = (self.now_ns, options.binary);
        let owned = &mut self.channels.owned;
        let outcome = owned.subscribe(channel, self.id, since, now_ns, binary);
        self.on_subscribed(id, channel, outcome);
    }

    /// The owner's answer: `subscribed`, then the replay, then live deliveries.
    pub(super) fn on_subscribed(&mut self, id: ConnId, channel: &str, outcome: SubscribeOutcome) {
        let Some(conn) = self.conn_mut(id) else {
            return self.abandon_subscribe(channel);
        };
        let Some(sub) = conn.session.subscriptions.get_mut(channel) else {
            return self.abandon_subscribe(channel);
        };
        let prior = std::mem::replace(&mut sub.state, SubState::Active);
        let was_pending = prior != SubState::Active;
        sub.epoch = outcome.epoch.clone();
        let unsubscribe = prior == SubState::PendingThenUnsubscribe;
        let watch = sub.watch_presence;
        let throttle_ms = sub.throttle_ms;
        let (seq, epoch) = (outcome.seq, &*outcome.epoch);
        match throttle_ms {
            None => {
                self.channels.local.complete_subscribe(channel, id, seq);
            }
            Some(ms) => {
                self.channels
                    .local
                    .complete_throttled_subscribe(channel, seq, was_pending);
                if was_pending {
                    self.throttle_join(id, channel, ms, seq);
                }
            }
        }
        let subscribed = Reply::Subscribed {
            channel,
            seq,
            epoch,
            recovered: outcome.recovered,
            throttle_ms,
        };
        self.reply(id, subscribed);
        if was_pending && self.env.config.presence_for(channel) {
            // Joins before an unsubscribe asked meanwhile, so that its leave has a join.
            self.presence_join(id, channel, watch);
        }
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
            conn.session.handle_replay(frame.into_bytes());
        }
        self.mark_dirty(id);
    }

    /// An answer for a connection that left or unsubscribed meanwhile.
    fn abandon_subscribe(&mut self, channel: &str) {
        if self.channels.local.abandon_subscribe(channel) {
            self.lose_interest(channel);
        }
    }

    /// `{"type":"unsubscribe"}`: idempotent; answered in order with the deliveries.
    pub(super) fn unsubscribe(&mut self, id: ConnId, channel: &str) {
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        match conn.session.subscriptions.get_mut(channel) {
            Some(sub) if sub.state != SubState::Active => {
                sub.state = SubState::PendingThenUnsubscribe;
                return;
            }
            Some(_) => {
                if let Some(sub) = conn.session.subscriptions.take(channel) {
                    self.leave(id, &sub);
                }
            }
            None => {}
        }
        self.reply(id, Reply::Unsubscribed { channel });
    }

    /// Removes every subscription of a closed connection.
    pub(super) fn drop_subscriptions(&mut self, id: ConnId, subscriptions: Vec<Subscription>) {
        for sub in subscriptions.iter().filter(|s| s.state == SubState::Active) {
            self.leave(id, sub);
        }
    }

    /// `id` leaves an answered subscription: out of the fan-out set, or of the throttled ones,
    /// and out of the channel's members when it keeps presence.
    fn leave(&mut self, id: ConnId, sub: &Subscription) {
        let lost = match sub.throttle_ms {
            None => self.channels.local.remove(&sub.channel, id),
            Some(_) => {
                self.throttle_leave(id, &sub.channel);
                self.channels.local.remove_throttled(&sub.channel)
            }
        };
        if lost {
            self.lose_interest(&sub.channel);
        }
        if self.env.config.presence_for(&sub.channel) {
            self.presence_leave(id, &sub.channel, sub.watch_presence);
        }
    }

    /// Tells the owner this loop has no subscriber of `channel` any more.
    fn lose_interest(&mut self, channel: &str) {
        let owner = owner_of(channel, self.mesh.loops());
        if owner == self.id {
            self.channels.owned.uninterest(channel, self.id);
            self.cluster_uninterest(channel);
        } else {
            let from = self.id;
            let channel = Arc::from(channel);
            self.mesh_send(owner, LoopMsg::Uninterest { channel, from });
        }
    }
}
