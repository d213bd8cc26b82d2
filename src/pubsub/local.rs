//! The subscriber side of channels: which connections of this loop subscribe to what.
//!
//! Owns: channel → set of local `ConnId`s, the count of subscribe requests still waiting for
//! the owner's answer, and the last seq this loop received per channel (to notice a seq jump
//! caused by a dropped cross-loop message and tell the subscribers, never silently).
//! May not touch: connections themselves, sockets, other loops.
//!
//! Interest rule (what keeps owner and subscriber loops consistent without counting every
//! subscriber at the owner): a loop is "interested" in a channel while it has a subscriber or a
//! pending subscribe. It tells the owner `uninterest` exactly when that count drops to zero.
//! Subscribe requests and uninterest notices travel the same FIFO queue, so the owner always
//! sees them in the order they were made.

use std::sync::Arc;

use indexmap::IndexSet;

use crate::conn_id::ConnId;
use crate::hash::{FxBuild, FxHashMap};

/// This loop's view of one channel.
#[derive(Debug, Default)]
pub struct LocalChannel {
    /// Subscribed connections on this loop (O(1) insert, remove and contiguous iteration).
    pub subscribers: IndexSet<ConnId, FxBuild>,
    /// Subscribe requests sent to the owner and not answered yet.
    pending: u32,
    /// Highest seq received for this channel (0: none yet).
    last_seq: u64,
    /// Throttled subscribers on this loop: not in `subscribers` (they are served from the
    /// loop's latest values, `runtime/throttle.rs`), but they keep the loop interested.
    throttled: u32,
}

impl LocalChannel {
    fn is_unused(&self) -> bool {
        self.subscribers.is_empty() && self.pending == 0 && self.throttled == 0
    }
}

/// A jump in a channel's seq as seen by this loop: messages `from..=to` never arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqGap {
    /// First missing seq.
    pub from: u64,
    /// Last missing seq.
    pub to: u64,
}

/// Channel → local subscribers, for one loop.
#[derive(Debug, Default)]
pub struct LocalIndex {
    channels: FxHashMap<Arc<str>, LocalChannel>,
    subscriptions: usize,
}

impl LocalIndex {
    /// Notes a subscribe request on its way to the owner.
    pub fn begin_subscribe(&mut self, channel: &str) {
        match self.channels.get_mut(channel) {
            Some(c) => c.pending += 1,
            None => {
                let c = LocalChannel {
                    pending: 1,
                    ..LocalChannel::default()
                };
                self.channels.insert(Arc::from(channel), c);
            }
        }
    }

    /// The owner answered: `conn` now receives deliveries after `seq`. Returns false if the
    /// request was unknown (a bug upstream; nothing is changed).
    pub fn complete_subscribe(&mut self, channel: &str, conn: ConnId, seq: u64) -> bool {
        let Some(c) = self.channels.get_mut(channel) else {
            return false;
        };
        if c.pending == 0 {
            return false;
        }
        c.pending -= 1;
        c.last_seq = c.last_seq.max(seq);
        if c.subscribers.insert(conn) {
            self.subscriptions += 1;
        }
        true
    }

    /// The owner answered a throttled subscriber's request: it counts for interest but is
    /// not in the subscriber set. `first`: it was not subscribed before (a second subscribe
    /// only answers the request). Returns false if the request was unknown.
    pub fn complete_throttled_subscribe(&mut self, channel: &str, seq: u64, first: bool) -> bool {
        let Some(c) = self.channels.get_mut(channel) else {
            return false;
        };
        if c.pending == 0 {
            return false;
        }
        c.pending -= 1;
        c.last_seq = c.last_seq.max(seq);
        if first {
            c.throttled += 1;
            self.subscriptions += 1;
        }
        true
    }

    /// Removes a throttled subscriber of `channel`. Returns true when the loop lost interest.
    pub fn remove_throttled(&mut self, channel: &str) -> bool {
        let Some(c) = self.channels.get_mut(channel) else {
            return false;
        };
        if c.throttled > 0 {
            c.throttled -= 1;
            self.subscriptions -= 1;
        }
        self.forget_if_unused(channel)
    }

    /// The owner answered a request whose connection no longer wants it (closed or
    /// unsubscribed meanwhile). Returns true when the loop lost interest (tell the owner).
    pub fn abandon_subscribe(&mut self, channel: &str) -> bool {
        let Some(c) = self.channels.get_mut(channel) else {
            return false;
        };
        c.pending = c.pending.saturating_sub(1);
        self.forget_if_unused(channel)
    }

    /// Removes `conn` from `channel`. Returns true when the loop lost interest.
    pub fn remove(&mut self, channel: &str, conn: ConnId) -> bool {
        let Some(c) = self.channels.get_mut(channel) else {
            return false;
        };
        if c.subscribers.swap_remove(&conn) {
            self.subscriptions -= 1;
        }
        self.forget_if_unused(channel)
    }

    /// The local subscribers of `channel`.
    pub fn subscribers(&self, channel: &str) -> Option<&IndexSet<ConnId, FxBuild>> {
        self.channels.get(channel).map(|c| &c.subscribers)
    }

    /// Records a run of deliveries `first..=last`; reports the seqs skipped since the last
    /// one seen (a dropped cross-loop message).
    pub fn note_seqs(&mut self, channel: &str, first: u64, last: u64) -> Option<SeqGap> {
        let c = self.channels.get_mut(channel)?;
        let seen = c.last_seq;
        c.last_seq = c.last_seq.max(last);
        (seen != 0 && first > seen + 1).then_some(SeqGap {
            from: seen + 1,
            to: first - 1,
        })
    }

    /// The owner reports `gap` dropped for this loop: returns the part after the last seq seen
    /// (what no delivery and no earlier jump covered), and moves the last seq past the gap.
    pub fn note_dropped(&mut self, channel: &str, gap: SeqGap) -> Option<SeqGap> {
        let c = self.channels.get_mut(channel)?;
        let from = gap.from.max(c.last_seq + 1);
        c.last_seq = c.last_seq.max(gap.to);
        (from <= gap.to).then_some(SeqGap { from, to: gap.to })
    }

    /// The channel's numbering restarted (cluster mode: a new epoch): the next seq expected
    /// is `seq + 1`.
    pub fn reset_seq(&mut self, channel: &str, seq: u64) {
        if let Some(c) = self.channels.get_mut(channel) {
            c.last_seq = seq;
        }
    }

    /// Number of channels with local interest.
    pub fn channels(&self) -> usize {
        self.channels.len()
    }

    /// Number of (connection, channel) subscriptions on this loop.
    pub fn subscriptions(&self) -> usize {
        self.subscriptions
    }

    fn forget_if_unused(&mut self, channel: &str) -> bool {
        let unused = self.channels.get(channel).is_some_and(|c| c.is_unused());
        if unused {
            self.channels.remove(channel);
        }
        unused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(slot: u32) -> ConnId {
        ConnId::new(slot, 0)
    }

    #[test]
    fn interest_lasts_while_a_subscriber_or_a_pending_request_exists() {
        let mut ix = LocalIndex::default();
        ix.begin_subscribe("a");
        ix.begin_subscribe("a");
        assert!(ix.complete_subscribe("a", id(1), 0));
        assert!(!ix.remove("a", id(1)), "a request is still pending");
        assert!(ix.complete_subscribe("a", id(2), 0));
        assert!(ix.remove("a", id(2)));
        assert_eq!(ix.channels(), 0);
    }

    #[test]
    fn throttled_subscribers_keep_interest_without_joining_the_set() {
        let mut ix = LocalIndex::default();
        ix.begin_subscribe("a");
        assert!(ix.complete_throttled_subscribe("a", 5, true));
        assert_eq!(ix.subscribers("a").map(|s| s.len()), Some(0));
        assert_eq!(ix.subscriptions(), 1);
        ix.begin_subscribe("a"); // subscribing twice
        assert!(ix.complete_throttled_subscribe("a", 5, false));
        assert_eq!(ix.subscriptions(), 1);
        assert!(
            ix.remove_throttled("a"),
            "the last one leaves: interest lost"
        );
        assert_eq!(ix.channels(), 0);
    }

    #[test]
    fn abandoned_request_releases_interest() {
        let mut ix = LocalIndex::default();
        ix.begin_subscribe("a");
        assert!(ix.abandon_subscribe("a"));
        assert!(ix.subscribers("a").is_none());
    }

    #[test]
    fn seq_jump_is_reported_once() {
        let mut ix = LocalIndex::default();
        ix.begin_subscribe("a");
        ix.complete_subscribe("a", id(1), 3);
        assert_eq!(ix.note_seqs("a", 4, 4), None);
        assert_eq!(ix.note_seqs("a", 7, 9), Some(SeqGap { from: 5, to: 6 }));
        assert_eq!(ix.note_seqs("a", 10, 10), None);
    }

    #[test]
    fn a_reported_drop_is_trimmed_to_what_was_not_seen_and_not_reported_twice() {
        let mut ix = LocalIndex::default();
        ix.begin_subscribe("a");
        ix.complete_subscribe("a", id(1), 3);
        assert_eq!(ix.note_seqs("a", 4, 5), None);
        let gap = SeqGap { from: 2, to: 8 };
        assert_eq!(ix.note_dropped("a", gap), Some(SeqGap { from: 6, to: 8 }));
        assert_eq!(ix.note_dropped("a", gap), None, "already reported");
        assert_eq!(
            ix.note_seqs("a", 9, 9),
            None,
            "the next run follows the gap"
        );
        assert_eq!(ix.note_dropped("b", gap), None, "no interest");
    }

    #[test]
    fn subscription_count_follows_inserts_and_removes() {
        let mut ix = LocalIndex::default();
        for s in 0..3 {
            ix.begin_subscribe("a");
            ix.complete_subscribe("a", id(s), 0);
        }
        assert_eq!(ix.subscriptions(), 3);
        ix.remove("a", id(1));
        assert_eq!(ix.subscriptions(), 2);
        assert_eq!(ix.subscribers("a").map(|s| s.len()), Some(2));
    }
}
