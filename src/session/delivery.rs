//! Deliveries in: frames encoded once for many subscribers (a run of messages, a tick batch,
//! a presence list or change, recovered history, an echo) handed to this connection's
//! outbox, and the conflated gap notice that tells a conflated subscriber what it skipped.
//!
//! The fan-out calls these once per subscriber: each is `#[inline]` and is exactly the
//! outbox's own step (no branch, no copy: the frame is a `Bytes` handle clone), so routing a
//! delivery through the session costs nothing over pushing it directly.

use bytes::Bytes;

use crate::outbox::{Conflated, SendStatus};
use crate::pubsub::local::SeqGap;

use super::{encode_gap_notice, Session};

impl Session {
    /// True when a delivery of `len` bytes would be queued now (open and within the data
    /// budget): the fan-out asks before it queues a gap notice or splits a run.
    #[inline]
    pub fn delivery_fits(&self, len: usize) -> bool {
        self.outbox.data_fits(len)
    }

    /// One delivery (a frame shared with other subscribers). `read_at_ns` (0: none) times the
    /// relay latency once it is written.
    #[inline]
    pub fn handle_delivery(&mut self, frame: Bytes, read_at_ns: u64) -> SendStatus {
        self.outbox.push_data(frame, read_at_ns)
    }

    /// `count` deliveries encoded back to back in `frames`, queued as one entry (all or none).
    #[inline]
    pub fn handle_delivery_n(&mut self, frames: Bytes, read_at_ns: u64, count: u32) -> SendStatus {
        self.outbox.push_data_n(frames, read_at_ns, count)
    }

    /// A delivery under the `conflate` policy: it replaces the queued one of `key` (whose seq
    /// is returned) instead of queueing behind it.
    #[inline]
    pub fn handle_conflated_delivery(
        &mut self,
        frame: Bytes,
        read_at_ns: u64,
        key: u64,
        seq: u64,
    ) -> Conflated {
        self.outbox.push_conflated(frame, read_at_ns, key, seq)
    }

    /// Recovered history (or the last value) after `subscribed`: never refused by the data
    /// budget (replay is bounded by the history size; refusing it would defeat recovery).
    pub fn handle_replay(&mut self, frame: Bytes) -> SendStatus {
        self.outbox.push_replay(frame)
    }

    /// Conflation replaced the delivery of seq `skipped` on `channel`: queue (or widen) the
    /// channel's one pending conflated gap notice (conflation `key`), in the delivery's
    /// encoding. The notice widens while the previous one is still queued, unwritten.
    pub fn tell_conflated(&mut self, channel: &str, skipped: u64, binary: bool, key: u64) {
        let still_queued = self.outbox.conflation_queued(key);
        let Some(sub) = self.subscriptions.get_mut(channel) else {
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
        let notice = encode_gap_notice(channel, gap, binary);
        self.outbox.push_conflated_notice(notice.into_bytes(), key);
    }
}

#[cfg(test)]
mod tests;
