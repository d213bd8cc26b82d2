//! One byte budget for the history of every channel a loop owns, oldest message evicted first.
//!
//! Owns: the count of retained bytes and messages, and the order in which messages were
//! retained across channels (`(channel, seq)`, oldest first). May not touch: the histories
//! themselves (the registry removes what this names).
//!
//! Why: `--history-size` bounds one channel, but a relay with a million channels would still
//! retain without bound. The budget's order queue may hold entries of messages already removed
//! by their channel's own limits (size, TTL, a dropped channel); those are skipped when met and
//! compacted away when they outnumber the live ones, so the queue stays within twice the number
//! of retained messages (plus a constant).

use std::collections::VecDeque;
use std::sync::Arc;

use crate::pubsub::history::Freed;

/// Stale entries tolerated before a compaction (amortises the scan).
const STALE_SLACK: usize = 1024;

/// The budget of one loop's retained history.
#[derive(Debug)]
pub struct HistoryBudget {
    bytes_max: usize,
    bytes: usize,
    messages: usize,
    order: VecDeque<(Arc<str>, u64)>,
    evicted_total: u64,
}

impl HistoryBudget {
    /// An empty budget of `bytes_max` bytes.
    pub fn new(bytes_max: usize) -> Self {
        HistoryBudget {
            bytes_max,
            bytes: 0,
            messages: 0,
            order: VecDeque::new(),
            evicted_total: 0,
        }
    }

    /// A message of `len` bytes was retained as `seq` of `channel`.
    pub fn retained(&mut self, channel: Arc<str>, seq: u64, len: usize) {
        self.bytes += len;
        self.messages += 1;
        self.order.push_back((channel, seq));
    }

    /// Messages were removed by their channel's own limits (or with their channel).
    pub fn released(&mut self, freed: Freed) {
        self.bytes -= freed.bytes.min(self.bytes);
        self.messages -= freed.messages.min(self.messages);
    }

    /// True while more bytes are retained than the budget allows.
    pub fn over(&self) -> bool {
        self.bytes > self.bytes_max
    }

    /// The oldest retained entry (possibly stale: the caller checks it is still retained).
    pub fn pop_oldest(&mut self) -> Option<(Arc<str>, u64)> {
        self.order.pop_front()
    }

    /// The caller evicted a message of `len` bytes for the budget.
    pub fn evicted(&mut self, len: usize) {
        self.released(Freed {
            messages: 1,
            bytes: len,
        });
        self.evicted_total += 1;
    }

    /// Drops stale entries when they outnumber the retained messages. `is_live(channel, seq)`
    /// tells whether a message is still retained.
    pub fn compact(&mut self, mut is_live: impl FnMut(&str, u64) -> bool) {
        if self.order.len() <= 2 * self.messages + STALE_SLACK {
            return;
        }
        self.order.retain(|(channel, seq)| is_live(channel, *seq));
    }

    /// Messages evicted for the budget so far.
    pub fn evicted_total(&self) -> u64 {
        self.evicted_total
    }

    /// Bytes retained now.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Entries in the order queue (for tests of its bound).
    pub fn order_len(&self) -> usize {
        self.order.len()
    }
}
