//! Throttled subscriptions (`"throttle_ms":T`): each such subscriber gets, at most once every
//! T ms, the latest delivery of every key (of the channel, for messages without a key) that
//! changed since its previous delivery, each with its own seq. Skipped messages are not
//! losses: no gap notice.
//!
//! Owns: per channel with throttled subscribers on this loop, the latest delivery per key
//! (`pubsub::throttle::Latest`, updated once per message whatever the number of subscribers)
//! and each throttled subscriber's state (interval, the last seq it was sent, when it may next
//! be sent something, its timer); the loop's throttle timer wheel.
//! May not touch: sockets (the flush phase writes what is queued here), other loops; a
//! subscriber's outbox other than through `Session::handle_delivery` (the shared frame).
//!
//! Schedule, per subscriber: "idle" (nothing new since its last delivery: no timer, listed in
//! the channel's `idle`) or "armed" (a timer at the time it may next be sent something). A
//! message wakes the idle subscribers only: one is served at once if its interval has passed
//! since its last delivery, else armed at that time. A timer serves what changed, re-arms one
//! interval later if it sent something, and goes idle otherwise. So a publish costs one table
//! update plus the idle subscribers it wakes, and each subscriber costs one timer per
//! delivery: 1,000 subscribers at 100 ms cost 10,000 timer firings a second at any publish
//! rate. A full outbox keeps the news for the next interval (the latest values then).
//!
//! Why a wheel of its own (the same `TimerWheel` as the connection timers): a 1 ms tick for
//! intervals from 10 ms (the connection wheel ticks at `--timer-tick`, 10 ms by default, far
//! too coarse for a 10 ms interval), and payloads that name the channel. It exists only once a
//! throttled subscription does; without one the loop pays one `is_empty` check per delivered
//! run and per turn.

use std::sync::Arc;

use crate::conn_id::{ConnId, ConnRef, LoopId};
use crate::hash::FxHashMap;
use crate::metrics::Counter;
use crate::outbox::SendStatus;
use crate::pubsub::throttle::{keep_frame, Latest, Slot};
use crate::runtime::conn::Conn;
use crate::runtime::deliver::Batch;
use crate::runtime::event_loop::EventLoop;
use crate::timer::{TimerKey, TimerWheel};

/// Tick of the throttle wheel: a tenth of the shortest interval.
const WHEEL_TICK_NS: u64 = 1_000_000;
/// Buckets of the throttle wheel: 4.1 s per revolution (longer intervals wait their round).
const WHEEL_SLOTS: usize = 4096;
const NS_PER_MS: u64 = 1_000_000;

/// A throttle timer: which subscriber of which channel to serve.
type Due = (ConnId, Arc<str>);

/// The loop's throttled subscriptions.
#[derive(Debug, Default)]
pub(super) struct Throttles {
    channels: FxHashMap<Arc<str>, ThrottledChannel>,
    wheel: Option<TimerWheel<Due>>,
    fired: Vec<Due>,
    keys_max: usize,
}

#[derive(Debug)]
struct ThrottledChannel {
    latest: Latest,
    subs: FxHashMap<ConnId, Sub>,
    /// Subscribers with no timer, waiting for news.
    idle: Vec<ConnId>,
}

#[derive(Debug)]
struct Sub {
    interval_ns: u64,
    /// The highest seq this subscriber was sent (or skipped as its own).
    sent_upto: u64,
    /// It may be sent something again from then on.
    next_allowed_ns: u64,
    armed: Option<TimerKey>,
}

impl Throttles {
    /// No throttled subscription: `--throttle-max-keys` keys per channel once there is.
    pub(super) fn new(keys_max: usize) -> Self {
        Throttles {
            keys_max,
            ..Throttles::default()
        }
    }

    /// True when this loop has no throttled subscriber (the delivery path skips it all).
    pub(super) fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// The next throttle timer.
    pub(super) fn next_deadline_ns(&self) -> Option<u64> {
        self.wheel.as_ref()?.next_deadline_ns()
    }

    fn arm(&mut self, channel: &Arc<str>, id: ConnId, at_ns: u64, now_ns: u64) {
        let wheel = self
            .wheel
            .get_or_insert_with(|| TimerWheel::new(WHEEL_TICK_NS, WHEEL_SLOTS, now_ns));
        let Some(sub) = self
            .channels
            .get_mut(channel)
            .and_then(|c| c.subs.get_mut(&id))
        else {
            return;
        };
        if let Some(key) = sub.armed.take() {
            wheel.cancel(key);
        }
        sub.armed = Some(wheel.insert(at_ns, (id, channel.clone())));
    }
}

impl EventLoop {
    /// A throttled subscription starts after the owner's answer at `seq` (the replay, if any,
    /// covered everything up to it).
    pub(super) fn throttle_join(&mut self, id: ConnId, channel: &str, interval_ms: u32, seq: u64) {
        let keys_max = self.channels.throttles.keys_max;
        let ch = self
            .channels
            .throttles
            .channels
            .entry(Arc::from(channel))
            .or_insert_with(|| ThrottledChannel {
                latest: Latest::new(keys_max),
                subs: FxHashMap::default(),
                idle: Vec::new(),
            });
        let sub = Sub {
            interval_ns: u64::from(interval_ms) * NS_PER_MS,
            sent_upto: seq,
            next_allowed_ns: self.now_ns,
            armed: None,
        };
        if ch.subs.insert(id, sub).is_none() {
            ch.idle.push(id);
        }
    }

    /// A throttled subscription ends (unsubscribe or close).
    pub(super) fn throttle_leave(&mut self, id: ConnId, channel: &str) {
        let Some(ch) = self.channels.throttles.channels.get_mut(channel) else {
            return;
        };
        if let Some(sub) = ch.subs.remove(&id) {
            if let (Some(key), Some(wheel)) = (sub.armed, self.channels.throttles.wheel.as_mut()) {
                wheel.cancel(key);
            }
        }
        ch.idle.retain(|&c| c != id);
        if ch.subs.is_empty() {
            self.channels.throttles.channels.remove(channel);
        }
    }

    /// A run reached this loop: keep its latest delivery per key for the throttled
    /// subscribers of its channel, and wake the idle ones.
    pub(super) fn throttle_batch(&mut self, batch: &Batch) {
        let Some(channel) = self
            .channels
            .throttles
            .channels
            .get_key_value(&*batch.channel)
            .map(|(name, _)| name.clone())
        else {
            return;
        };
        let Some(ch) = self.channels.throttles.channels.get_mut(&channel) else {
            return;
        };
        let mut evicted = 0;
        for (i, f) in batch.frames.iter().enumerate() {
            let start = f.start as usize;
            let slot = Slot {
                seq: batch.first_seq + i as u64,
                frame: keep_frame(&batch.bytes, start..start + f.len as usize),
                read_at_ns: f.read_at_ns,
                origin: f.origin,
            };
            evicted += ch.latest.update(f.conflation_key, slot);
        }
        self.metrics.add(Counter::ThrottleKeysEvicted, evicted);
        let idle = std::mem::take(&mut ch.idle);
        for id in idle {
            self.throttle_wake(&channel, id);
        }
    }

    /// News for an idle subscriber: served now if its interval has passed, else armed.
    fn throttle_wake(&mut self, channel: &Arc<str>, id: ConnId) {
        let now_ns = self.now_ns;
        let Some(sub) = self
            .channels
            .throttles
            .channels
            .get(channel)
            .and_then(|c| c.subs.get(&id))
        else {
            return;
        };
        if now_ns >= sub.next_allowed_ns {
            self.throttle_serve(channel, id);
        } else {
            let at = sub.next_allowed_ns;
            self.channels.throttles.arm(channel, id, at, now_ns);
        }
    }

    /// Fires the due throttle timers.
    pub(super) fn expire_throttles(&mut self) {
        let Some(wheel) = self.channels.throttles.wheel.as_mut() else {
            return;
        };
        let mut fired = std::mem::take(&mut self.channels.throttles.fired);
        wheel.expire(self.now_ns, &mut fired);
        for (id, channel) in fired.drain(..) {
            let Some(sub) = self
                .channels
                .throttles
                .channels
                .get_mut(&channel)
                .and_then(|c| c.subs.get_mut(&id))
            else {
                continue; // It left (its timer was cancelled then; this is defensive).
            };
            sub.armed = None;
            self.throttle_serve(&channel, id);
        }
        self.channels.throttles.fired = fired;
    }

    /// Sends the subscriber what changed since its last delivery; arms its next look one
    /// interval later, or lists it idle when there was nothing new.
    fn throttle_serve(&mut self, channel: &Arc<str>, id: ConnId) {
        let now_ns = self.now_ns;
        let me = self.id;
        let Some(ch) = self.channels.throttles.channels.get_mut(channel) else {
            return;
        };
        let Some(conn) = self.conns.get_mut(id) else {
            return; // Closed: reaping drops the subscription.
        };
        let (queued, blocked) = send_news(ch, conn, me);
        if queued > 0 {
            conn.mark_dirty(&mut self.work.dirty);
        }
        self.metrics.add(Counter::ThrottleDelivered, queued);
        self.metrics.add(Counter::MessagesDelivered, queued);
        let Some(sub) = ch.subs.get_mut(&id) else {
            return;
        };
        let next = if queued > 0 {
            sub.next_allowed_ns = now_ns + sub.interval_ns;
            sub.next_allowed_ns
        } else if blocked {
            now_ns + sub.interval_ns // retry with the latest values then
        } else {
            ch.idle.push(id);
            return;
        };
        self.channels.throttles.arm(channel, id, next, now_ns);
    }
}

/// Queues the latest delivery of every key updated since the subscriber's last one (never its
/// own messages), oldest first. Returns (queued, blocked: news left because the outbox is
/// full or closing).
fn send_news(ch: &mut ThrottledChannel, conn: &mut Conn, me: LoopId) -> (u64, bool) {
    let Some(sub) = ch.subs.get_mut(&conn.id) else {
        return (0, false);
    };
    let own = ConnRef {
        loop_id: me,
        conn: conn.id,
    };
    let mut queued = 0;
    for slot in ch.latest.after(sub.sent_upto) {
        if slot.origin != Some(own) {
            match conn
                .session
                .handle_delivery(slot.frame.clone(), slot.read_at_ns)
            {
                SendStatus::Queued => queued += 1,
                SendStatus::Full | SendStatus::Closed => return (queued, true),
            }
        }
        sub.sent_upto = slot.seq;
    }
    (queued, false)
}
