//! Typed names for connections and loops.
//!
//! A `ConnId` names one connection on one loop. Its generation changes each time a slab slot is
//! reused, so a late event, timer or cross-loop reply for a closed connection can never reach
//! the connection that took its slot (quinn's `ConnectionHandle`, the slab docs).

use std::num::NonZeroU32;

/// Index of an event loop, 0-based. At most 64 loops (interest masks are `u64`).
pub type LoopId = usize;

/// One connection on one loop: slab slot plus generation. The fields are private: only the
/// loop's connection table (`runtime::conns`) makes ids and resolves them, always checking the
/// generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    slot: u32,
    /// Never 0 (the connection table skips it): `Option<ConnId>` and the timer wheel's entries
    /// holding one stay 8 bytes smaller per connection.
    generation: NonZeroU32,
}

impl ConnId {
    /// The id of the connection in `slot` at `generation` (made by the connection table).
    /// A generation of 0 (which the table never gives) is taken as 1.
    pub(crate) fn new(slot: u32, generation: u32) -> Self {
        let generation = NonZeroU32::new(generation).unwrap_or(NonZeroU32::MIN);
        ConnId { slot, generation }
    }

    /// The slab slot, for the connection table's lookup (which checks the generation too).
    pub(crate) fn slot_index(self) -> usize {
        self.slot as usize
    }

    /// Packs into a `mio::Token` value. Slot in the low 32 bits, generation above: tokens of
    /// reused slots differ, so a stale readiness event is recognised and ignored.
    pub fn to_token_value(self) -> usize {
        ((self.generation.get() as usize) << 32) | self.slot as usize
    }

    /// Unpacks a token value made by `to_token_value`.
    pub fn from_token_value(v: usize) -> ConnId {
        ConnId::new((v & 0xffff_ffff) as u32, (v >> 32) as u32)
    }
}

impl std::fmt::Display for ConnId {
    /// `<slot>-<generation>`: the opaque connection id clients see (with the loop in front).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.slot, self.generation)
    }
}

/// A connection anywhere in the process: which loop, which connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnRef {
    /// The loop that owns the connection.
    pub loop_id: LoopId,
    /// The connection on that loop.
    pub conn: ConnId,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trip_keeps_slot_and_generation() {
        let id = ConnId::new(0xdead_beef, 0x1234_5678);
        assert_eq!(ConnId::from_token_value(id.to_token_value()), id);
        assert_eq!(
            std::mem::size_of::<Option<ConnId>>(),
            8,
            "the generation's niche"
        );
    }
}
