//! Channels: who owns them, who subscribes to them, their sequence numbers and history.
//! Sans-IO: no sockets, no clock, no threads; loops call in with `now_ns`.
//!
//! The single point that numbers a channel: every channel is owned by exactly one loop,
//! `owner_of(channel)` (a stable hash). Only the owner assigns `seq`, keeps the history and the
//! last value, and knows which loops have subscribers (`interest`, a 64-bit mask). A publish
//! read on another loop is forwarded to the owner, which numbers it, encodes the frame once and
//! hands the same bytes to every interested loop, itself included. Because each pair of loops is
//! connected by one FIFO queue, every subscriber sees a channel's messages in `seq` order, gap
//! free, whichever loop the publishers and subscribers sit on.
//!
//! - `registry`: the owner side (`ChannelRegistry`): seq, epoch, interest, history, last value.
//! - `history`: the bounded ring of retained frames of one channel.
//! - `snapshot`: the latest message per key of one channel (`--snapshot-for`), kept by the owner.
//! - `throttle`: the latest delivery per key of a channel on a subscriber loop, shared by its
//!   throttled subscribers.
//! - `local`: the subscriber side (`LocalIndex`): channel → connections on this loop.
//! - `presence`: the owner side of presence (`--presence-for`): members, watchers per loop,
//!   the join/leave storm bound.

pub mod budget;
pub mod history;
pub mod local;
pub mod presence;
pub mod registry;
pub mod snapshot;
pub mod throttle;

pub use history::History;
pub use local::LocalIndex;
pub use registry::{
    ChannelRegistry, Reserved, RetentionConfig, Since, SnapshotConfig, SubscribeOutcome,
};

use crate::conn_id::LoopId;
use crate::hash::fnv1a_64;

/// The loop that owns `channel`: the same answer on every loop.
pub fn owner_of(channel: &str, loops: usize) -> LoopId {
    debug_assert!(loops > 0);
    (fnv1a_64(channel.as_bytes()) % loops.max(1) as u64) as LoopId
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_is_stable_and_in_range() {
        for loops in 1..8 {
            for ch in ["a", "md.BTC-USD", "room.42"] {
                let o = owner_of(ch, loops);
                assert!(o < loops);
                assert_eq!(o, owner_of(ch, loops));
            }
        }
    }
}
