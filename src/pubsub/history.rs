//! The retained messages of one channel, for recovery with `since`.
//!
//! A ring of at most `size_max` frames, each with its `seq` and the time it was published;
//! entries older than the TTL are pruned when the channel is touched. Frames are the encoded
//! `PreparedFrame`s themselves (shared `Bytes`), so retaining costs no copy. It counts the bytes
//! of the frames it holds, so that the owner can keep all channels within one byte budget
//! (`registry.rs`, `budget.rs`); every removal reports what it freed.

use std::collections::VecDeque;

use crate::proto::frame::PreparedFrame;

/// One retained message.
#[derive(Debug, Clone)]
struct Retained {
    seq: u64,
    at_ns: u64,
    frame: PreparedFrame,
}

/// Bounded history of one channel. Invariant: seqs are consecutive, oldest first; `bytes` is
/// the sum of the retained frames' lengths.
#[derive(Debug, Default)]
pub struct History {
    ring: VecDeque<Retained>,
    bytes: usize,
}

/// What a removal freed: messages and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Freed {
    /// Messages removed.
    pub messages: usize,
    /// Bytes of their frames.
    pub bytes: usize,
}

impl Freed {
    fn add(&mut self, bytes: usize) {
        self.messages += 1;
        self.bytes += bytes;
    }
}

impl History {
    /// Appends the newest message, pushing out the oldest beyond `size_max`. Returns what was
    /// pushed out.
    pub fn push(&mut self, seq: u64, at_ns: u64, frame: PreparedFrame, size_max: usize) -> Freed {
        let mut freed = Freed::default();
        if size_max == 0 {
            return freed;
        }
        debug_assert!(self.ring.back().is_none_or(|r| r.seq + 1 == seq));
        while self.ring.len() >= size_max {
            match self.pop_oldest() {
                Some(bytes) => freed.add(bytes),
                None => break,
            }
        }
        self.bytes += frame.bytes().len();
        self.ring.push_back(Retained { seq, at_ns, frame });
        freed
    }

    /// Drops entries published before `now_ns - ttl_ns` (ttl 0: keep). Returns what it freed.
    pub fn prune(&mut self, now_ns: u64, ttl_ns: u64) -> Freed {
        let mut freed = Freed::default();
        if ttl_ns == 0 {
            return freed;
        }
        let cutoff = now_ns.saturating_sub(ttl_ns);
        while self.ring.front().is_some_and(|r| r.at_ns < cutoff) {
            match self.pop_oldest() {
                Some(bytes) => freed.add(bytes),
                None => break,
            }
        }
        freed
    }

    /// The seq of the oldest retained message.
    pub fn oldest_seq(&self) -> Option<u64> {
        self.ring.front().map(|r| r.seq)
    }

    /// Removes the oldest retained message; returns its frame's length.
    pub fn pop_oldest(&mut self) -> Option<usize> {
        let r = self.ring.pop_front()?;
        let len = r.frame.bytes().len();
        self.bytes -= len;
        Some(len)
    }

    /// What the whole history holds (what dropping it frees).
    pub fn held(&self) -> Freed {
        Freed {
            messages: self.ring.len(),
            bytes: self.bytes,
        }
    }

    /// The frames with `seq > since`, oldest first, if every one of them is still retained
    /// (`since + 1` is the oldest retained seq or newer); `None` when some were lost.
    pub fn since(&self, since: u64, current_seq: u64) -> Option<Vec<PreparedFrame>> {
        if since >= current_seq {
            return Some(Vec::new());
        }
        let oldest = self.ring.front()?.seq;
        if oldest > since + 1 {
            return None;
        }
        let skip = (since + 1 - oldest) as usize;
        Some(
            self.ring
                .iter()
                .skip(skip)
                .map(|r| r.frame.clone())
                .collect(),
        )
    }

    /// True when nothing is retained.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// Number of retained messages.
    pub fn len(&self) -> usize {
        self.ring.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::frame::OpCode;

    fn frame(n: u64) -> PreparedFrame {
        PreparedFrame::new(OpCode::Text, n.to_string().as_bytes())
    }

    fn filled(size_max: usize, upto: u64) -> History {
        let mut h = History::default();
        for s in 1..=upto {
            h.push(s, s * 10, frame(s), size_max);
        }
        h
    }

    #[test]
    fn bytes_follow_every_push_and_removal() {
        let mut h = filled(3, 5); // keeps 3, 4, 5: frames of 2 + 1 bytes each
        assert_eq!(
            h.held(),
            Freed {
                messages: 3,
                bytes: 9
            }
        );
        let freed = h.push(6, 60, frame(1000), 3);
        assert_eq!(
            freed,
            Freed {
                messages: 1,
                bytes: 3
            }
        );
        assert_eq!(
            h.held(),
            Freed {
                messages: 3,
                bytes: 12
            }
        );
        assert_eq!(h.oldest_seq(), Some(4));
        assert_eq!(h.pop_oldest(), Some(3));
        assert_eq!(
            h.prune(1000, 1),
            Freed {
                messages: 2,
                bytes: 9
            }
        );
        assert_eq!(h.held(), Freed::default());
    }

    #[test]
    fn since_returns_exactly_the_missed_frames() {
        let h = filled(10, 5);
        let got = h.since(2, 5).unwrap();
        let want: Vec<_> = (3..=5).map(|s| frame(s).bytes().clone()).collect();
        let got: Vec<_> = got.iter().map(|f| f.bytes().clone()).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn since_beyond_retention_is_none() {
        let h = filled(3, 10); // keeps 8, 9, 10
        assert!(h.since(6, 10).is_none());
        assert_eq!(h.since(7, 10).map(|v| v.len()), Some(3));
    }

    #[test]
    fn since_current_or_later_needs_nothing() {
        let h = filled(3, 10);
        assert_eq!(h.since(10, 10).map(|v| v.len()), Some(0));
    }

    #[test]
    fn ttl_prunes_old_entries() {
        let mut h = filled(10, 5); // at 10, 20, .., 50
        h.prune(55, 20); // cutoff 35: keeps 40, 50
        assert_eq!(h.len(), 2);
        assert!(h.since(3, 5).is_some());
        assert!(h.since(2, 5).is_none());
    }

    #[test]
    fn zero_size_retains_nothing() {
        let h = filled(0, 5);
        assert!(h.is_empty());
        assert!(h.since(4, 5).is_none());
    }
}
