//! The latest delivery per key of one channel on one loop, shared by all of the loop's
//! throttled subscribers of that channel (`runtime/throttle.rs` delivers from it).
//!
//! Owns: per key (the delivery's conflation key: the channel, or the channel and the publish's
//! `key`) the latest encoded frame, its seq, read time and publisher; the order of keys by seq
//! (so "everything updated after seq S" is a range walk). Sans-IO, no clock.
//!
//! Why per loop and per channel, not per subscriber: a publish updates one slot here (O(log
//! keys)), whatever the number of throttled subscribers; each subscriber only remembers the
//! last seq it was sent, and its delivery walks the keys updated since. So the cost is per
//! delivery, not per publish per subscriber.
//!
//! Limits: at most `keys_max` keys (`--throttle-max-keys`); beyond it the least recently
//! updated key is evicted and counted (a throttled subscriber that was not sent its latest
//! value before then will not get it). Frames are slices of the run they were encoded in
//! when that run is small, else copies, so a slot never pins more than
//! [`SLICE_RUN_BYTES_MAX`] of a run buffer.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::conn_id::ConnRef;
use crate::hash::FxHashMap;

/// A frame from a run buffer up to this size is kept as a slice of it; from a larger run it is
/// copied (one small copy per message, only on channels with throttled subscribers).
pub const SLICE_RUN_BYTES_MAX: usize = 4096;

/// The latest delivery of one key.
#[derive(Debug, Clone)]
pub struct Slot {
    /// Its seq.
    pub seq: u64,
    /// The encoded frame (WebSocket header included), as every subscriber gets it.
    pub frame: Bytes,
    /// When its publish was read (relay latency).
    pub read_at_ns: u64,
    /// Its publisher (never sent its own message).
    pub origin: Option<ConnRef>,
}

/// Latest delivery per key. Invariant: `order` holds exactly one `(slot.seq, key)` per slot.
#[derive(Debug)]
pub struct Latest {
    slots: FxHashMap<u64, Slot>,
    order: BTreeMap<u64, u64>,
    keys_max: usize,
}

impl Latest {
    /// An empty table of at most `keys_max` keys.
    pub fn new(keys_max: usize) -> Self {
        Latest {
            slots: FxHashMap::default(),
            order: BTreeMap::new(),
            keys_max: keys_max.max(1),
        }
    }

    /// Records the newest delivery of `key`; returns how many keys that evicted (0 or 1).
    pub fn update(&mut self, key: u64, slot: Slot) -> u64 {
        self.order.insert(slot.seq, key);
        if let Some(old) = self.slots.insert(key, slot) {
            self.order.remove(&old.seq);
        }
        let mut evicted = 0;
        while self.slots.len() > self.keys_max {
            let Some((_, key)) = self.order.pop_first() else {
                break;
            };
            self.slots.remove(&key);
            evicted += 1;
        }
        evicted
    }

    /// The latest delivery of every key updated after `seq`, in seq order.
    pub fn after(&self, seq: u64) -> impl Iterator<Item = &Slot> + '_ {
        self.order
            .range(seq.saturating_add(1)..)
            .filter_map(|(_, key)| self.slots.get(key))
    }

    /// True when some key was updated after `seq`.
    pub fn has_after(&self, seq: u64) -> bool {
        self.order
            .last_key_value()
            .is_some_and(|(&newest, _)| newest > seq)
    }

    /// Keys kept.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when no key is kept.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// The frame to keep for message `frame` of a run encoded into `run`.
pub fn keep_frame(run: &Bytes, frame: std::ops::Range<usize>) -> Bytes {
    if run.len() <= SLICE_RUN_BYTES_MAX {
        run.slice(frame)
    } else {
        Bytes::copy_from_slice(&run[frame])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(seq: u64) -> Slot {
        Slot {
            seq,
            frame: Bytes::from(seq.to_string()),
            read_at_ns: 0,
            origin: None,
        }
    }

    fn seqs_after(l: &Latest, seq: u64) -> Vec<u64> {
        l.after(seq).map(|s| s.seq).collect()
    }

    #[test]
    fn keeps_the_latest_per_key_in_seq_order() {
        let mut l = Latest::new(10);
        for (key, seq) in [(1, 1), (2, 2), (1, 3), (3, 4), (2, 5)] {
            assert_eq!(l.update(key, slot(seq)), 0);
        }
        assert_eq!(seqs_after(&l, 0), [3, 4, 5]);
        assert_eq!(seqs_after(&l, 3), [4, 5]);
        assert!(l.has_after(4) && !l.has_after(5));
        assert_eq!(seqs_after(&l, 5), Vec::<u64>::new());
    }

    #[test]
    fn evicts_the_least_recently_updated_beyond_the_cap() {
        let mut l = Latest::new(2);
        l.update(1, slot(1));
        l.update(2, slot(2));
        l.update(1, slot(3));
        assert_eq!(l.update(3, slot(4)), 1);
        assert_eq!(seqs_after(&l, 0), [3, 4]);
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn small_runs_are_sliced_and_large_ones_copied() {
        let small = Bytes::from(vec![7u8; 100]);
        let kept = keep_frame(&small, 10..20);
        assert_eq!(kept.as_ptr(), small[10..].as_ptr());
        let large = Bytes::from(vec![7u8; SLICE_RUN_BYTES_MAX + 1]);
        let kept = keep_frame(&large, 10..20);
        assert_ne!(kept.as_ptr(), large[10..].as_ptr());
        assert_eq!(kept.len(), 10);
    }
}
