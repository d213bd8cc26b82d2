//! Conflation (the `conflate` slow-consumer policy): keep only the newest not-yet-written
//! delivery per conflation key (a channel, or a channel and the publish's `key`).
//!
//! O(1) per message: an index maps each key to the absolute position of its queued entry. A
//! newer delivery for the same key turns the old entry into a tombstone (its bytes dropped, its
//! budget released) and is appended at the tail, so the connection still receives its
//! channel's messages in seq order and always the freshest value. The replaced seq is reported
//! to the caller, which tells the client with a `gap` notice.
//!
//! Bounds: tombstones are trimmed from the front as the socket drains and compacted away when
//! they outnumber live entries, and the index is rebuilt at the same time, so memory stays
//! proportional to the live entries, which the data budget bounds.

use bytes::Bytes;

use crate::hash::FxHashMap;

use super::{Budget, Entry, Lanes, Outbox, SendStatus};

/// Key → absolute position of its queued entry.
#[derive(Debug, Default)]
pub(super) struct Index {
    positions: FxHashMap<u64, u64>,
    tombstones: usize,
}

impl Index {
    /// Approximate heap bytes: the box and the map's slots with their control bytes.
    pub(super) fn heap_bytes(&self) -> usize {
        let slot = std::mem::size_of::<(u64, u64)>() + 1;
        std::mem::size_of::<Index>() + self.positions.capacity() * slot
    }
}

/// Slack of tombstones tolerated before compaction.
const TOMBSTONES_SLACK: usize = 64;

/// What a conflated push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conflated {
    /// Queued, refused for budget, or refused because closing.
    pub status: SendStatus,
    /// The seq of the delivery it replaced, if any.
    pub replaced_seq: Option<u64>,
}

impl Outbox {
    /// Queues a delivery under the conflate policy: an older unwritten delivery with the same
    /// `key` (non-zero) is replaced. `seq` is this delivery's seq.
    pub fn push_conflated(
        &mut self,
        bytes: Bytes,
        read_at_ns: u64,
        key: u64,
        seq: u64,
    ) -> Conflated {
        let data_bytes_max = self.data_bytes_max as usize;
        self.lanes_mut()
            .push_conflated(bytes, read_at_ns, key, seq, data_bytes_max)
    }

    /// Queues a conflated notice (a `gap` notice under the conflate policy) outside the data
    /// budget: at most one per key is ever queued, so notices are bounded by subscriptions.
    /// Returns true when it replaced an unwritten notice for the same key.
    pub fn push_conflated_notice(&mut self, bytes: Bytes, key: u64) -> bool {
        self.lanes_mut().push_conflated_notice(bytes, key)
    }

    /// True when an entry for `key` is queued and not yet being written.
    pub fn conflation_queued(&self, key: u64) -> bool {
        self.lanes
            .as_deref()
            .is_some_and(|lanes| lanes.conflation_queued(key))
    }
}

impl Lanes {
    fn push_conflated(
        &mut self,
        bytes: Bytes,
        read_at_ns: u64,
        key: u64,
        seq: u64,
        data_bytes_max: usize,
    ) -> Conflated {
        if self.closed {
            let status = SendStatus::Closed;
            return Conflated {
                status,
                replaced_seq: None,
            };
        }
        let replaced_seq = self.tombstone(key);
        if self.data_bytes + bytes.len() > data_bytes_max {
            let status = SendStatus::Full;
            return Conflated {
                status,
                replaced_seq,
            };
        }
        self.data_bytes += bytes.len();
        let mut entry = Entry::new(bytes, Budget::Data, read_at_ns);
        entry.seq = seq;
        entry.key = key;
        self.data.push_back(entry);
        let position = self.popped_total + self.data.len() as u64 - 1;
        self.index().positions.insert(key, position);
        self.compact_if_needed();
        Conflated {
            status: SendStatus::Queued,
            replaced_seq,
        }
    }

    fn push_conflated_notice(&mut self, bytes: Bytes, key: u64) -> bool {
        if self.closed {
            return false;
        }
        let replaced = self.tombstone(key).is_some();
        self.data_bytes += bytes.len();
        let mut entry = Entry::new(bytes, Budget::Data, 0);
        entry.key = key;
        self.data.push_back(entry);
        let position = self.popped_total + self.data.len() as u64 - 1;
        self.index().positions.insert(key, position);
        self.compact_if_needed();
        replaced
    }

    fn conflation_queued(&self, key: u64) -> bool {
        let Some(position) = self
            .conflation
            .as_ref()
            .and_then(|ix| ix.positions.get(&key))
        else {
            return false;
        };
        let Some(offset) = position.checked_sub(self.popped_total) else {
            return false;
        };
        usize::try_from(offset)
            .ok()
            .and_then(|o| self.data.get(o))
            .is_some_and(|e| e.key == key && !e.bytes.is_empty())
    }

    /// Turns the queued entry for `key` into a tombstone; returns its seq.
    fn tombstone(&mut self, key: u64) -> Option<u64> {
        let popped_total = self.popped_total;
        let position = self.conflation.as_ref()?.positions.get(&key).copied()?;
        let offset = usize::try_from(position.checked_sub(popped_total)?).ok()?;
        let entry = self
            .data
            .get_mut(offset)
            .filter(|e| e.key == key && !e.bytes.is_empty())?;
        let seq = entry.seq;
        self.data_bytes -= entry.bytes.len();
        entry.bytes = Bytes::new();
        self.index().tombstones += 1;
        self.trim_tombstones();
        Some(seq)
    }

    fn index(&mut self) -> &mut Index {
        self.conflation.get_or_insert_with(Box::default)
    }

    /// Pops tombstones from the front, so the queue never starts with nothing to write.
    pub(super) fn trim_tombstones(&mut self) {
        while self
            .data
            .front()
            .is_some_and(|e| e.bytes.is_empty() && e.budget == Budget::Data)
        {
            self.data.pop_front();
            self.popped_total += 1;
            if let Some(ix) = self.conflation.as_mut() {
                ix.tombstones = ix.tombstones.saturating_sub(1);
            }
        }
    }

    /// Drops tombstones and rebuilds the index when tombstones outnumber live entries.
    fn compact_if_needed(&mut self) {
        let Some(ix) = self.conflation.as_ref() else {
            return;
        };
        let live = self.data.len().saturating_sub(ix.tombstones);
        let stale = ix.positions.len() > 2 * live + TOMBSTONES_SLACK;
        if ix.tombstones <= live + TOMBSTONES_SLACK && !stale {
            return;
        }
        let front = self.data.len();
        self.data
            .retain(|e| !(e.bytes.is_empty() && e.budget == Budget::Data));
        // Positions are absolute: keep `data[0]`'s position meaningful after the removal.
        self.popped_total += (front - self.data.len()) as u64;
        let base = self.popped_total;
        let mut positions = FxHashMap::default();
        for (i, e) in self.data.iter().enumerate().filter(|(_, e)| e.key != 0) {
            positions.insert(e.key, base + i as u64);
        }
        self.conflation = Some(Box::new(Index {
            positions,
            tombstones: 0,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::tests::{b, gather};

    #[test]
    fn newer_delivery_replaces_the_queued_one_for_its_key_and_goes_last() {
        let mut o = Outbox::new(1024, 1024);
        assert_eq!(o.push_conflated(b("A1"), 1, 7, 1).replaced_seq, None);
        o.push_conflated(b("B2"), 1, 8, 2);
        let r = o.push_conflated(b("A3"), 1, 7, 3);
        assert_eq!((r.status, r.replaced_seq), (SendStatus::Queued, Some(1)));
        assert_eq!(gather(&o), b"B2A3");
        assert_eq!(o.data_bytes(), 4);
    }

    #[test]
    fn a_partly_written_delivery_is_never_replaced() {
        let mut o = Outbox::new(1024, 1024);
        o.push_conflated(b("AAAA"), 1, 7, 1);
        o.advance(2, &mut |_, _, _| {});
        let r = o.push_conflated(b("A2"), 1, 7, 2);
        assert_eq!(r.replaced_seq, None);
        assert_eq!(gather(&o), b"AAA2");
    }

    #[test]
    fn a_stalled_subscriber_holds_one_entry_per_key_whatever_the_rate() {
        let mut o = Outbox::new(1 << 20, 1024);
        for seq in 1..=100_000u64 {
            o.push_conflated(b("xx"), 1, seq % 3 + 1, seq);
        }
        assert_eq!(o.data_bytes(), 6);
        let lanes = o.lanes.as_deref().expect("in use");
        assert!(
            lanes.data.len() <= 3 + 3 + TOMBSTONES_SLACK,
            "{} entries",
            lanes.data.len()
        );
        assert!(lanes
            .conflation
            .as_ref()
            .is_some_and(|ix| ix.positions.len() <= 3 + TOMBSTONES_SLACK));
    }

    #[test]
    fn replacement_frees_budget_for_the_newer_value() {
        let mut o = Outbox::new(4, 64);
        o.push_conflated(b("AAAA"), 1, 7, 1);
        assert_eq!(
            o.push_conflated(b("BBBB"), 1, 8, 2).status,
            SendStatus::Full
        );
        let r = o.push_conflated(b("CCCC"), 1, 7, 3);
        assert_eq!((r.status, r.replaced_seq), (SendStatus::Queued, Some(1)));
        assert_eq!(gather(&o), b"CCCC");
    }

    #[test]
    fn written_entries_are_not_found_again() {
        let mut o = Outbox::new(64, 64);
        o.push_conflated(b("A1"), 1, 7, 1);
        o.advance(2, &mut |_, _, _| {});
        assert!(o.is_empty());
        assert_eq!(o.push_conflated(b("A2"), 1, 7, 2).replaced_seq, None);
    }
}
