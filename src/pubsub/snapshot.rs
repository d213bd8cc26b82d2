//! The keyed snapshot of one channel: the latest message per `key`, kept by the channel's
//! owner (the one place that numbers it, `registry.rs`), so that a snapshot reflecting seq N
//! and the live stream from N + 1 meet with no gap and no duplicate.
//!
//! Owns: per key the latest content (a copy: a snapshot must not pin the run buffer the
//! message was encoded into), its seq and whether it was binary; the order of keys by last
//! update (least recently updated first, for eviction and for the snapshot's entry order);
//! the byte count; and the encoded snapshot frames of the current seq (one JSON, one binary:
//! a burst of subscribers to a quiet board shares one encode).
//! May not touch: connections, sockets, the clock.
//!
//! Limits, each with its policy: at most `keys_max` keys and `bytes_max` bytes (keys plus
//! contents plus [`ENTRY_OVERHEAD_BYTES`] of envelope each: the budget bounds the frame) per
//! channel; beyond either, the least recently updated keys are evicted, and the
//! evictions are counted (`Evicted`, exported as `wsrelay_snapshot_evicted_total`). A message
//! with `"delete":true` removes its key. Messages without a key share one entry (key `null`).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::command::{encode_binary_snapshot, encode_snapshot, SnapshotEntry, SnapshotHead};
use crate::hash::FxHashMap;

/// Bytes counted per entry besides its key and content: its JSON envelope
/// (`{"key":"","content":,"seq":<20 digits>},`), so that the budget bounds the snapshot frame.
pub const ENTRY_OVERHEAD_BYTES: usize = 50;
use crate::proto::frame::{FrameBuilder, OpCode, PreparedFrame};

/// Bounds of one channel's snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotLimits {
    /// Keys kept (`--snapshot-max-keys`).
    pub keys_max: usize,
    /// Bytes of keys and contents kept (`--snapshot-max-bytes`).
    pub bytes_max: usize,
}

/// Keys evicted by one update, by the limit that evicted them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evicted {
    /// Evicted beyond `keys_max`.
    pub by_keys: u64,
    /// Evicted beyond `bytes_max`.
    pub by_bytes: u64,
}

/// One message to fold into a snapshot.
#[derive(Debug, Clone, Copy)]
pub struct Update<'a> {
    /// Its key (`None`: published without one).
    pub key: Option<&'a str>,
    /// Its seq.
    pub seq: u64,
    /// Its verbatim JSON content or binary payload.
    pub content: &'a [u8],
    /// A binary publish.
    pub binary: bool,
    /// `"delete":true`: remove the key instead.
    pub delete: bool,
}

#[derive(Debug)]
struct Entry {
    seq: u64,
    content: Bytes,
    binary: bool,
}

/// The latest message per key of one channel. Invariants: `order` holds exactly one
/// `(entry.seq, key)` per entry; `bytes` is the sum of the entries' key and content lengths
/// plus [`ENTRY_OVERHEAD_BYTES`] each.
#[derive(Debug, Default)]
pub struct Snapshot {
    entries: FxHashMap<Arc<str>, Entry>,
    order: BTreeMap<u64, Arc<str>>,
    bytes: usize,
    /// The encoded snapshot for the channel seq it was encoded at, JSON and binary.
    cached: [Option<(u64, PreparedFrame)>; 2],
}

impl Snapshot {
    /// Folds one message in, then evicts the least recently updated keys beyond the limits.
    pub fn update(&mut self, u: Update<'_>, limits: SnapshotLimits) -> Evicted {
        let key = u.key.unwrap_or_default();
        self.remove(key);
        if !u.delete {
            let key: Arc<str> = Arc::from(key);
            self.bytes += entry_bytes(&key, u.content);
            self.order.insert(u.seq, key.clone());
            let entry = Entry {
                seq: u.seq,
                content: Bytes::copy_from_slice(u.content),
                binary: u.binary,
            };
            self.entries.insert(key, entry);
        }
        self.evict(limits)
    }

    fn remove(&mut self, key: &str) {
        if let Some(old) = self.entries.remove(key) {
            self.order.remove(&old.seq);
            self.bytes -= entry_bytes(key, &old.content);
        }
    }

    fn evict(&mut self, limits: SnapshotLimits) -> Evicted {
        let mut evicted = Evicted::default();
        while self.entries.len() > limits.keys_max || self.bytes > limits.bytes_max {
            let by_keys = self.entries.len() > limits.keys_max;
            let Some((_, key)) = self.order.pop_first() else {
                break;
            };
            if let Some(old) = self.entries.remove(&key) {
                self.bytes -= entry_bytes(&key, &old.content);
            }
            match by_keys {
                true => evicted.by_keys += 1,
                false => evicted.by_bytes += 1,
            }
        }
        evicted
    }

    /// Keys kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no key is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of keys and contents kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The snapshot frame for `head` (the channel's current seq and epoch), JSON or binary;
    /// encoded once per seq and shared by every subscriber that asks at that seq.
    pub fn frame(&mut self, head: SnapshotHead<'_>, binary: bool) -> PreparedFrame {
        let slot = &mut self.cached[usize::from(binary)];
        if let Some((seq, frame)) = slot {
            if *seq == head.seq {
                return frame.clone();
            }
        }
        let entries = self.order.values().filter_map(|key| {
            self.entries.get(key).map(|e| SnapshotEntry {
                key: (!key.is_empty()).then_some(&**key),
                content: &e.content,
                seq: e.seq,
                binary: e.binary,
            })
        });
        let capacity = 128 + self.bytes + self.entries.len() * 48;
        let frame = if binary {
            let mut f = FrameBuilder::new(OpCode::Binary, capacity);
            // Channel names are at most 255 bytes (config validation), so this cannot fail.
            let entries = ExactLen(entries, self.entries.len());
            let encoded = f.append_with(|out| encode_binary_snapshot(out, head, entries));
            debug_assert!(encoded.is_ok());
            f.finish()
        } else {
            let mut f = FrameBuilder::new(OpCode::Text, capacity);
            f.append_with(|out| encode_snapshot(out, head, entries));
            f.finish()
        };
        self.cached[usize::from(binary)] = Some((head.seq, frame.clone()));
        frame
    }
}

/// What one entry counts against the byte budget.
fn entry_bytes(key: &str, content: &[u8]) -> usize {
    key.len() + content.len() + ENTRY_OVERHEAD_BYTES
}

/// An iterator whose length is known (every key of `order` has an entry, by invariant).
struct ExactLen<I>(I, usize);

impl<I: Iterator> Iterator for ExactLen<I> {
    type Item = I::Item;
    fn next(&mut self) -> Option<I::Item> {
        let item = self.0.next()?;
        self.1 = self.1.saturating_sub(1);
        Some(item)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.1, Some(self.1))
    }
}

impl<I: Iterator> ExactSizeIterator for ExactLen<I> {}

#[cfg(test)]
mod tests {
    use super::*;

    const WIDE: SnapshotLimits = SnapshotLimits {
        keys_max: 100,
        bytes_max: 1 << 20,
    };

    fn set(
        s: &mut Snapshot,
        key: &str,
        seq: u64,
        content: &str,
        limits: SnapshotLimits,
    ) -> Evicted {
        let u = Update {
            key: Some(key),
            seq,
            content: content.as_bytes(),
            binary: false,
            delete: false,
        };
        s.update(u, limits)
    }

    fn json(s: &mut Snapshot, seq: u64) -> String {
        let head = SnapshotHead {
            channel: "c",
            seq,
            epoch: "e",
        };
        let frame = s.frame(head, false);
        let b = frame.bytes();
        let header = if b[1] & 0x7f == 126 { 4 } else { 2 };
        String::from_utf8(b[header..].to_vec()).unwrap()
    }

    #[test]
    fn keeps_the_latest_per_key_in_update_order_and_deletes() {
        let mut s = Snapshot::default();
        set(&mut s, "a", 1, "1", WIDE);
        set(&mut s, "b", 2, "2", WIDE);
        set(&mut s, "a", 3, "3", WIDE);
        let want = r#"{"type":"snapshot","channel":"c","seq":3,"epoch":"e","entries":[{"key":"b","content":2,"seq":2},{"key":"a","content":3,"seq":3}]}"#;
        assert_eq!(json(&mut s, 3), want);
        let del = Update {
            key: Some("b"),
            seq: 4,
            content: b"null",
            binary: false,
            delete: true,
        };
        s.update(del, WIDE);
        assert_eq!((s.len(), s.bytes()), (1, 52));
        assert!(json(&mut s, 4).contains(r#""entries":[{"key":"a","content":3,"seq":3}]"#));
    }

    #[test]
    fn evicts_least_recently_updated_beyond_keys_and_bytes() {
        let mut s = Snapshot::default();
        let two_keys = SnapshotLimits {
            keys_max: 2,
            bytes_max: 1 << 20,
        };
        set(&mut s, "a", 1, "1", two_keys);
        set(&mut s, "b", 2, "2", two_keys);
        set(&mut s, "a", 3, "3", two_keys); // a is now the most recent
        let e = set(&mut s, "c", 4, "4", two_keys);
        assert_eq!(
            e,
            Evicted {
                by_keys: 1,
                by_bytes: 0
            }
        );
        assert!(json(&mut s, 4).contains(r#"[{"key":"a","content":3,"seq":3},{"key":"c""#));
        let sixty_bytes = SnapshotLimits {
            keys_max: 100,
            bytes_max: 60,
        };
        // a and c count 1 + 1 + 50 each, d 1 + 4 + 50: only d fits in 60.
        let e = set(&mut s, "d", 5, "4444", sixty_bytes);
        assert_eq!(
            e,
            Evicted {
                by_keys: 0,
                by_bytes: 2
            }
        );
        assert_eq!((s.len(), s.bytes()), (1, 55));
    }

    #[test]
    fn the_encoded_frame_is_shared_until_the_seq_moves() {
        let mut s = Snapshot::default();
        set(&mut s, "a", 1, "1", WIDE);
        let head = |seq| SnapshotHead {
            channel: "c",
            seq,
            epoch: "e",
        };
        let one = s.frame(head(1), false);
        let again = s.frame(head(1), false);
        assert_eq!(one.bytes().as_ptr(), again.bytes().as_ptr());
        let binary = s.frame(head(1), true);
        assert_eq!(binary.bytes()[0], 0x82);
        set(&mut s, "a", 2, "2", WIDE);
        assert_ne!(s.frame(head(2), false).bytes(), one.bytes());
    }
}
