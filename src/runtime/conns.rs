//! The connection table of one loop: a slab of `Conn` whose only accessors check the `ConnId`
//! generation, so a stale handle (a late event, timer or cross-loop reply for a connection
//! whose slot was reused) can never reach another connection.
//!
//! Owns: the slab and the generation counter that names each new connection.
//! May not touch: sockets or protocol state (it stores connections; the phases act on them).

use slab::Slab;

use crate::conn_id::ConnId;
use crate::runtime::conn::Conn;

/// The connections of one loop.
#[derive(Debug, Default)]
pub(super) struct Conns {
    slab: Slab<Conn>,
    generation: u32,
    /// Upgraded (WebSocket) connections not yet reaped: the `connections_open` gauge.
    websockets_open: u64,
}

impl Conns {
    /// A table with room for `slots` connections reserved up front.
    ///
    /// Why: a `Vec` that doubles leaves each old buffer behind in the allocator's heap once
    /// glibc has raised its mmap threshold (it does after the first large buffer is freed),
    /// and those pages stay resident: 600-700 KiB at 15,000 connections, 45 bytes each
    /// (docs/BENCHMARKS.md, "Idle memory"). A reservation made at start-up is one `mmap` of
    /// untouched pages: resident only as slots fill, never copied during a connection storm.
    pub(super) fn with_capacity(slots: usize) -> Self {
        Self {
            slab: Slab::with_capacity(slots),
            ..Self::default()
        }
    }

    /// The connection `id`, if it still exists (same slot and generation).
    pub(super) fn get(&self, id: ConnId) -> Option<&Conn> {
        self.slab.get(id.slot_index()).filter(|c| c.id == id)
    }

    /// The connection `id`, if it still exists (same slot and generation).
    pub(super) fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.slab.get_mut(id.slot_index()).filter(|c| c.id == id)
    }

    /// The id the next `insert` will get (a fresh generation of the next free slot); `None`
    /// past 4 billion connections on one loop.
    pub(super) fn next_id(&mut self) -> Option<ConnId> {
        let slot = u32::try_from(self.slab.vacant_key()).ok()?;
        // Generation 0 is never given (see `ConnId`).
        self.generation = self.generation.checked_add(1).unwrap_or(1);
        Some(ConnId::new(slot, self.generation))
    }

    /// Stores a connection made with the id `next_id` just returned.
    pub(super) fn insert(&mut self, conn: Conn) {
        let expected = conn.id.slot_index();
        let slot = self.slab.insert(conn);
        debug_assert_eq!(slot, expected, "insert follows next_id");
    }

    /// Takes the connection `id` out of the table, if it still exists.
    pub(super) fn remove(&mut self, id: ConnId) -> Option<Conn> {
        self.get(id)?;
        Some(self.slab.remove(id.slot_index()))
    }

    /// Every connection, in slot order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Conn> {
        self.slab.iter().map(|(_, c)| c)
    }

    /// The ids of every connection (to act on each while the table changes).
    pub(super) fn ids(&self) -> Vec<ConnId> {
        self.iter().map(|c| c.id).collect()
    }

    /// Connections held.
    pub(super) fn len(&self) -> usize {
        self.slab.len()
    }

    /// A connection completed its upgrade.
    pub(super) fn websocket_opened(&mut self) {
        self.websockets_open += 1;
    }

    /// An upgraded connection was reaped.
    pub(super) fn websocket_closed(&mut self) {
        self.websockets_open = self.websockets_open.saturating_sub(1);
    }

    /// Upgraded connections not yet reaped.
    pub(super) fn websockets_open(&self) -> u64 {
        self.websockets_open
    }

    /// True when no connection is held.
    pub(super) fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }
}
