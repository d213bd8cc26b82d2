//! Per-event-loop timing wheel: every timer of one event loop (heartbeat ping, pong deadline,
//! close-handshake timeout, idle timeout, ...) lives in one [`TimerWheel`].
//!
//! # What this module owns, and what it may not touch
//! It owns the timer entries and the wheel bookkeeping, nothing else. It never reads a clock
//! (the event loop reads the clock once per loop turn and passes `now_ns`, plain `u64`
//! nanoseconds since a process-wide epoch), performs no I/O, and knows nothing about
//! connections: the payload `T` is opaque (typically a small `Copy` token such as
//! `(connection token, timer kind)`). Driving it from `mio::Poll` is the caller's job:
//! `poll(timeout = next_deadline_ns() - now)`, then `expire(now, &mut fired)`.
//!
//! # Design: one hashed wheel with absolute deadlines (no hierarchy)
//! A single ring of `slots` buckets, `tick_ns` wide each; a timer whose deadline falls in tick
//! `t` (counted from the wheel origin) is linked into bucket `t mod slots`. Timers further than
//! one revolution away share the bucket with nearer ones ("rounds"); instead of a decrementing
//! rounds counter each entry keeps its absolute `deadline_ns`, so a bucket scan compares
//! `deadline_ns <= now_ns` and never writes to entries that are not due.
//!
//! Why not a hierarchical wheel: the relay's timers are dominated by heartbeats of one period
//! (for example 30 s), and the default wheel (4096 slots of 10 ms = 40.96 s) covers that in one
//! revolution, so nearly every timer sits in its final bucket from the start and is touched
//! exactly once, when it fires. A hierarchy would cascade every heartbeat through one or more
//! levels (extra relinking per timer) to serve rare far-future timers that the flat ring
//! already handles at the cost below. A flat ring also keeps `next_deadline_ns` a single
//! bitmap walk, and the `slots` knob of the API maps onto it directly.
//!
//! # Costs (n = armed timers, S = slots, k = timers in one bucket)
//! - `insert`, `cancel`, `reset`: O(1) (free-list slab + intrusive doubly-linked bucket list).
//! - `expire` over elapsed ticks: O(min(elapsed ticks, S) / 64) bitmap words, plus O(k) for
//!   every bucket whose lower-bound deadline `slot_min_ns` is due; that scan fires every due
//!   timer and visits the not-due ones once.
//! - Far-future timers (beyond one revolution) cost nothing per tick: a bucket is scanned only
//!   when its `slot_min_ns` is due, so a far timer is visited at most once per scan of its
//!   bucket, which happens at most once per revolution per due batch in that bucket (amortized
//!   O(1) per revolution per far timer, and zero when it shares its bucket with nothing due).
//! - A loop that calls `expire` many times inside one tick rescans the current bucket only when
//!   a timer in it is actually due (the bucket minimum is re-derived on every scan).
//! - `next_deadline_ns`: O(S / 64) bitmap words plus at most [`NEXT_DEADLINE_PROBES_MAX`]
//!   bucket minima; never proportional to n.
//!
//! # Memory
//! `Entry<T>` is 24 bytes plus `Option<T>` (40 bytes for an 8-byte token). Per wheel, fixed:
//! `S * 12` bytes (bucket head + bucket minimum) plus the `S / 8` byte occupancy bitmap. The
//! entry `Vec` grows with the peak number of armed timers and is reused through a free list,
//! never shrunk. Its limit is `timers_max` (at most [`TIMERS_MAX`], the `u32` index space);
//! policy at the limit: [`TimerWheel::try_insert`] rejects with
//! [`TimerError::TimersMaxExceeded`], [`TimerWheel::insert`] panics (documented).
//!
//! # Semantics
//! - Exact: `expire(now_ns)` fires a timer iff `deadline_ns <= now_ns`, never early. Ticks only
//!   hash timers into buckets and round the wake-up time of [`TimerWheel::next_deadline_ns`] up
//!   to a tick boundary, which batches one tick's worth of timers into one wake-up (so a caller
//!   that sleeps until `next_deadline_ns` is at most one tick late).
//! - Deadlines at or before the last `now_ns` seen fire at the next `expire`.
//! - Time going backwards (`now_ns` below the last one) makes `expire` a no-op.
//! - Order inside one `expire` batch: buckets in ascending tick order starting at the current
//!   tick, newest-inserted first within a bucket; no global deadline order is promised (a
//!   batch that spans a whole revolution interleaves rounds).
//!
//! # Invariants
//! 1. Every armed entry is linked in exactly one bucket, `entries[i].slot`, and that bucket's
//!    occupancy bit is set; a bucket's bit is set iff its list is non-empty.
//! 2. `slot_min_ns[s]` is `<=` every armed deadline in bucket `s` (`u64::MAX` when empty);
//!    cancels may leave it stale-low, which only costs a spurious scan or wake-up.
//! 3. Every armed entry with `deadline_ns <= last_now_ns` sits in the bucket of
//!    `current_tick`; every other armed entry sits in the bucket of its own deadline tick,
//!    which is `>= current_tick`.
//! 4. A vacant entry has `value == None` and is on the free list (linked through `next`);
//!    its generation was bumped when it was vacated, so old [`TimerKey`]s no longer match.
//!
//! Bucket and entry indices used with `[]` come from the masked tick or from links maintained
//! under these invariants; indices derived from a caller's `TimerKey` go through `get`.

/// Default tick width: 10 ms, the resolution the relay's heartbeats need.
pub const DEFAULT_TICK_NS: u64 = 10_000_000;
/// Default number of buckets: with [`DEFAULT_TICK_NS`] one revolution is 40.96 s, longer than
/// the heartbeat period, so heartbeats never wrap.
pub const DEFAULT_SLOTS: usize = 4096;
/// Upper bound for the `slots` argument of [`TimerWheel::new`] (4 Mi buckets, 48 MiB).
pub const SLOTS_MAX: usize = 1 << 22;
/// Most timers one wheel can hold at once: the `u32` entry index space minus the list sentinel.
pub const TIMERS_MAX: usize = (u32::MAX - 1) as usize;
/// Buckets whose minimum `next_deadline_ns` inspects before settling for a bucket's tick floor
/// as the bound; keeps the call O(S / 64) even when buckets hold only far-future timers.
pub const NEXT_DEADLINE_PROBES_MAX: usize = 8;

/// List terminator for bucket lists and the free list.
const NIL: u32 = u32::MAX;
/// Bits per word of the occupancy bitmap.
const BITMAP_WORD_BITS: usize = 64;

/// Handle to one armed timer; stale handles are harmless (generation-checked).
///
/// A key goes stale when its timer fires, is cancelled or is re-armed with
/// [`TimerWheel::reset`]; the generation is a wrapping `u32` per entry, so a stale key could
/// only alias after 2^32 reuses of the same entry while the caller still holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerKey {
    index: u32,
    generation: u32,
}

/// Why a timer could not be armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimerError {
    /// The wheel already holds `timers_max` armed timers (its entry-slab limit).
    #[error("timer wheel already holds {timers_max} armed timers, its limit")]
    TimersMaxExceeded {
        /// The limit in force.
        timers_max: usize,
    },
}

/// One slab entry: an armed timer, or a vacant cell on the free list.
#[derive(Debug)]
struct Entry<T> {
    deadline_ns: u64,
    /// Previous entry in the bucket list (`NIL` at the head).
    prev: u32,
    /// Next entry in the bucket list, or in the free list while vacant.
    next: u32,
    generation: u32,
    /// Bucket this entry is linked into (meaningless while vacant).
    slot: u32,
    value: Option<T>,
}

/// A hashed timing wheel owned by one event loop; see the module documentation.
#[derive(Debug)]
pub struct TimerWheel<T> {
    entries: Vec<Entry<T>>,
    free_head: u32,
    /// First entry of each bucket list (`NIL` when empty).
    slot_heads: Vec<u32>,
    /// Lower bound of the deadlines in each bucket (invariant 2).
    slot_min_ns: Vec<u64>,
    /// One bit per bucket, set iff the bucket list is non-empty.
    occupied: Vec<u64>,
    origin_ns: u64,
    tick_ns: u64,
    slot_mask: u64,
    /// The latest `now_ns` passed to `expire` (the origin before the first call).
    last_now_ns: u64,
    /// Tick containing `last_now_ns`.
    current_tick: u64,
    armed_total: usize,
    timers_max: usize,
}

impl<T> TimerWheel<T> {
    /// Creates an empty wheel whose time origin is `start_ns`.
    ///
    /// `tick_ns` is the resolution (a timer fires in the first `expire` call at or after its
    /// deadline, never early, at most one tick late for a caller that sleeps until
    /// [`next_deadline_ns`](Self::next_deadline_ns)); `0` is raised to 1 ns. `slots` is the
    /// number of buckets, rounded up to a power of two within `1..=SLOTS_MAX`.
    pub fn new(tick_ns: u64, slots: usize, start_ns: u64) -> Self {
        let slots = slots.clamp(1, SLOTS_MAX).next_power_of_two();
        let bitmap_words = slots.div_ceil(BITMAP_WORD_BITS);
        let tick_ns = tick_ns.max(1);
        Self {
            entries: Vec::new(),
            free_head: NIL,
            slot_heads: vec![NIL; slots],
            slot_min_ns: vec![u64::MAX; slots],
            occupied: vec![0; bitmap_words],
            origin_ns: start_ns,
            tick_ns,
            slot_mask: slots as u64 - 1,
            last_now_ns: start_ns,
            current_tick: 0,
            armed_total: 0,
            timers_max: TIMERS_MAX,
        }
    }

    /// Reserves room for `timers` armed timers up front (virtual memory: pages become resident
    /// as entries are used), so that a storm of new timers never reallocates and copies the
    /// entry table on the loop's turn, nor leaves the old tables resident in the heap.
    pub fn with_capacity(mut self, timers: usize) -> Self {
        self.entries.reserve_exact(timers.min(self.timers_max));
        self
    }

    /// Lowers the number of timers this wheel may hold at once (clamped to [`TIMERS_MAX`]).
    pub fn with_timers_max(mut self, timers_max: usize) -> Self {
        self.timers_max = timers_max.min(TIMERS_MAX);
        self
    }

    /// Tick width in nanoseconds.
    pub fn tick_ns(&self) -> u64 {
        self.tick_ns
    }

    /// Number of buckets (a power of two).
    pub fn slots(&self) -> usize {
        self.slot_heads.len()
    }

    /// Number of armed timers.
    pub fn len(&self) -> usize {
        self.armed_total
    }

    /// True when no timer is armed.
    pub fn is_empty(&self) -> bool {
        self.armed_total == 0
    }

    /// Arms a timer firing at `deadline_ns`; O(1). A deadline in the past fires at the next
    /// [`expire`](Self::expire).
    ///
    /// # Panics
    /// When the wheel already holds `timers_max` timers; use [`try_insert`](Self::try_insert)
    /// where that limit is reachable.
    pub fn insert(&mut self, deadline_ns: u64, value: T) -> TimerKey {
        match self.try_insert(deadline_ns, value) {
            Ok(key) => key,
            Err(error) => panic!("TimerWheel::insert: {error}"),
        }
    }

    /// Arms a timer firing at `deadline_ns`; O(1). Rejects it (dropping `value`) when the wheel
    /// already holds `timers_max` timers.
    pub fn try_insert(&mut self, deadline_ns: u64, value: T) -> Result<TimerKey, TimerError> {
        if self.armed_total >= self.timers_max {
            return Err(TimerError::TimersMaxExceeded {
                timers_max: self.timers_max,
            });
        }
        let index = self.allocate(deadline_ns, value);
        self.link(index, deadline_ns);
        self.armed_total += 1;
        Ok(self.key_of(index))
    }

    /// Disarms a timer and returns its value; O(1). `None` for a stale key (fired, cancelled,
    /// re-armed, or from another wheel's slab reuse).
    pub fn cancel(&mut self, key: TimerKey) -> Option<T> {
        let index = self.armed_index(key)?;
        self.unlink(index);
        self.armed_total -= 1;
        self.vacate(index)
    }

    /// Re-arms a timer to `deadline_ns`, keeping its value; O(1). Equivalent to cancel +
    /// insert: `key` goes stale and the returned key replaces it. `None` for a stale key.
    pub fn reset(&mut self, key: TimerKey, deadline_ns: u64) -> Option<TimerKey> {
        let index = self.armed_index(key)?;
        self.unlink(index);
        let entry = &mut self.entries[index as usize];
        entry.generation = entry.generation.wrapping_add(1);
        entry.deadline_ns = deadline_ns;
        self.link(index, deadline_ns);
        Some(self.key_of(index))
    }

    /// Moves every timer with `deadline_ns <= now_ns` into `out` and returns how many it moved.
    ///
    /// Batch order: buckets in ascending tick order from the current tick, newest-inserted
    /// first within a bucket; not globally sorted by deadline. A `now_ns` below the previous
    /// call's is a no-op (time going backwards), returning 0. Jumps over many ticks cost at
    /// most one walk over the occupancy bitmap, whatever the jump.
    pub fn expire(&mut self, now_ns: u64, out: &mut Vec<T>) -> usize {
        if now_ns < self.last_now_ns {
            return 0;
        }
        let now_tick = self.tick_of(now_ns);
        let ticks_to_scan = (now_tick - self.current_tick).saturating_add(1);
        let dist_end = ticks_to_scan.min(self.slots() as u64) as usize;
        let start_slot = self.slot_of_tick(self.current_tick);
        let mut fired_total = 0;
        let mut dist = 0;
        while let Some(found) = self.next_occupied_dist(start_slot, dist, dist_end) {
            let slot = self.slot_at(start_slot, found);
            if self.slot_min_ns[slot] <= now_ns {
                fired_total += self.fire_due_in_slot(slot, now_ns, out);
            }
            dist = found + 1;
        }
        self.last_now_ns = now_ns;
        self.current_tick = now_tick;
        fired_total
    }

    /// When the caller should next call [`expire`](Self::expire): use it as the poll timeout.
    ///
    /// `None` when no timer is armed. Otherwise never later than the earliest armed deadline
    /// rounded up to a tick boundary (the rounding batches a tick's timers into one wake-up),
    /// and equal to the last `now_ns` when a timer is already due. It may be earlier than
    /// needed (a spurious wake-up that fires nothing) when buckets hold only timers of later
    /// revolutions or cancels left a bucket minimum stale. Cost: O(slots / 64) bitmap words.
    pub fn next_deadline_ns(&self) -> Option<u64> {
        if self.is_empty() {
            return None;
        }
        let start_slot = self.slot_of_tick(self.current_tick);
        let mut best_ns = u64::MAX;
        let mut probes_left = NEXT_DEADLINE_PROBES_MAX;
        let mut dist = 0;
        while let Some(found) = self.next_occupied_dist(start_slot, dist, self.slots()) {
            let floor_ns = self.dist_floor_ns(found);
            if floor_ns >= best_ns {
                break;
            }
            if probes_left == 0 {
                // Every deadline in this and any later bucket is at or after `floor_ns`.
                best_ns = floor_ns;
                break;
            }
            probes_left -= 1;
            let slot = self.slot_at(start_slot, found);
            best_ns = best_ns.min(self.slot_wake_ns(slot, floor_ns));
            dist = found + 1;
        }
        Some(best_ns)
    }

    /// Wake-up time for one bucket: its minimum clamped to the bucket's floor, due now when
    /// already past, otherwise rounded up to the next tick boundary.
    fn slot_wake_ns(&self, slot: usize, floor_ns: u64) -> u64 {
        let wake_ns = self.slot_min_ns[slot].max(floor_ns);
        if wake_ns <= self.last_now_ns {
            self.last_now_ns
        } else {
            self.round_up_to_tick_ns(wake_ns)
        }
    }

    /// Earliest deadline any timer in the bucket `dist` buckets after the current one can
    /// have (invariant 3): `last_now_ns` for the current bucket, else the bucket's tick start.
    fn dist_floor_ns(&self, dist: usize) -> u64 {
        if dist == 0 {
            self.last_now_ns
        } else {
            self.tick_start_ns(self.current_tick.saturating_add(dist as u64))
        }
    }

    /// Unlinks and returns every timer in `slot` with `deadline_ns <= now_ns`, then re-derives
    /// the bucket minimum from the survivors.
    fn fire_due_in_slot(&mut self, slot: usize, now_ns: u64, out: &mut Vec<T>) -> usize {
        let mut fired_total = 0;
        let mut survivors_min_ns = u64::MAX;
        let mut cursor = self.slot_heads[slot];
        while cursor != NIL {
            let entry = &self.entries[cursor as usize];
            let (next, deadline_ns) = (entry.next, entry.deadline_ns);
            if deadline_ns <= now_ns {
                self.unlink(cursor);
                self.armed_total -= 1;
                out.extend(self.vacate(cursor));
                fired_total += 1;
            } else {
                survivors_min_ns = survivors_min_ns.min(deadline_ns);
            }
            cursor = next;
        }
        if self.slot_heads[slot] != NIL {
            self.slot_min_ns[slot] = survivors_min_ns;
        }
        fired_total
    }

    /// Takes a vacant cell from the free list (or grows the slab) and fills it.
    fn allocate(&mut self, deadline_ns: u64, value: T) -> u32 {
        if let Some(entry) = self.entries.get_mut(self.free_head as usize) {
            let index = self.free_head;
            self.free_head = entry.next;
            entry.deadline_ns = deadline_ns;
            entry.value = Some(value);
            return index;
        }
        // `try_insert` keeps `armed_total < timers_max <= TIMERS_MAX` and the free list is
        // empty here, so the new index is below `NIL`.
        let index = self.entries.len() as u32;
        self.entries.push(Entry {
            deadline_ns,
            prev: NIL,
            next: NIL,
            generation: 0,
            slot: 0,
            value: Some(value),
        });
        index
    }

    /// Empties an unlinked cell, bumps its generation (stale keys) and frees it.
    fn vacate(&mut self, index: u32) -> Option<T> {
        let entry = &mut self.entries[index as usize];
        entry.generation = entry.generation.wrapping_add(1);
        entry.next = self.free_head;
        self.free_head = index;
        entry.value.take()
    }

    /// Pushes an entry onto the front of the bucket its deadline hashes to (invariant 3).
    fn link(&mut self, index: u32, deadline_ns: u64) {
        let tick = self.tick_of(deadline_ns).max(self.current_tick);
        let slot = self.slot_of_tick(tick);
        let old_head = self.slot_heads[slot];
        let entry = &mut self.entries[index as usize];
        entry.prev = NIL;
        entry.next = old_head;
        entry.slot = slot as u32;
        if let Some(head) = self.entries.get_mut(old_head as usize) {
            head.prev = index;
        }
        self.slot_heads[slot] = index;
        self.slot_min_ns[slot] = self.slot_min_ns[slot].min(deadline_ns);
        self.occupied[slot / BITMAP_WORD_BITS] |= 1 << (slot % BITMAP_WORD_BITS);
    }

    /// Removes an entry from its bucket list, clearing the bucket when it empties.
    fn unlink(&mut self, index: u32) {
        let entry = &self.entries[index as usize];
        let (prev, next, slot) = (entry.prev, entry.next, entry.slot as usize);
        match self.entries.get_mut(prev as usize) {
            Some(prev_entry) => prev_entry.next = next,
            None => self.slot_heads[slot] = next,
        }
        if let Some(next_entry) = self.entries.get_mut(next as usize) {
            next_entry.prev = prev;
        }
        if self.slot_heads[slot] == NIL {
            self.slot_min_ns[slot] = u64::MAX;
            self.occupied[slot / BITMAP_WORD_BITS] &= !(1 << (slot % BITMAP_WORD_BITS));
        }
    }

    /// Slab index of the timer `key` names, if it is still armed with that generation.
    fn armed_index(&self, key: TimerKey) -> Option<u32> {
        let entry = self.entries.get(key.index as usize)?;
        let armed = entry.generation == key.generation && entry.value.is_some();
        armed.then_some(key.index)
    }

    fn key_of(&self, index: u32) -> TimerKey {
        TimerKey {
            index,
            generation: self.entries[index as usize].generation,
        }
    }

    /// Smallest `dist` in `from_dist..dist_end` whose bucket `(start_slot + dist) mod slots`
    /// is occupied, walking the bitmap a word at a time.
    fn next_occupied_dist(
        &self,
        start_slot: usize,
        from_dist: usize,
        dist_end: usize,
    ) -> Option<usize> {
        let mut dist = from_dist;
        while dist < dist_end {
            let pos = self.slot_at(start_slot, dist);
            let bits = self.occupied[pos / BITMAP_WORD_BITS] >> (pos % BITMAP_WORD_BITS);
            if bits != 0 {
                let found = dist + bits.trailing_zeros() as usize;
                return (found < dist_end).then_some(found);
            }
            // Skip to the end of this word, or of the ring when it is smaller than a word.
            let word_end = ((pos | (BITMAP_WORD_BITS - 1)) + 1).min(self.slots());
            dist += word_end - pos;
        }
        None
    }

    fn slot_at(&self, start_slot: usize, dist: usize) -> usize {
        (start_slot + dist) & (self.slot_mask as usize)
    }

    fn slot_of_tick(&self, tick: u64) -> usize {
        (tick & self.slot_mask) as usize
    }

    /// Tick containing `at_ns`; instants before the origin belong to tick 0.
    fn tick_of(&self, at_ns: u64) -> u64 {
        at_ns.saturating_sub(self.origin_ns) / self.tick_ns
    }

    fn tick_start_ns(&self, tick: u64) -> u64 {
        self.origin_ns
            .saturating_add(tick.saturating_mul(self.tick_ns))
    }

    /// `at_ns` rounded up to the next tick boundary (itself when on one), saturating.
    fn round_up_to_tick_ns(&self, at_ns: u64) -> u64 {
        let tick = self.tick_of(at_ns);
        let start_ns = self.tick_start_ns(tick);
        if start_ns >= at_ns {
            start_ns
        } else {
            self.tick_start_ns(tick.saturating_add(1))
        }
    }
}

#[cfg(test)]
mod tests;
