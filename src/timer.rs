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
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const TICK_NS: u64 = 10;
    const SLOTS: usize = 8;
    const REVOLUTION_NS: u64 = TICK_NS * SLOTS as u64;

    fn wheel() -> TimerWheel<u32> {
        TimerWheel::new(TICK_NS, SLOTS, 0)
    }

    /// Fired values of one `expire` call, sorted (batch order is unspecified).
    fn fire(wheel: &mut TimerWheel<u32>, now_ns: u64) -> Vec<u32> {
        let mut out = Vec::new();
        let fired_total = wheel.expire(now_ns, &mut out);
        assert_eq!(fired_total, out.len());
        out.sort_unstable();
        out
    }

    #[test]
    fn entry_stays_within_48_bytes_for_an_8_byte_token() {
        assert_eq!(std::mem::size_of::<Entry<u64>>(), 40);
        assert_eq!(std::mem::size_of::<TimerKey>(), 8);
    }

    #[test]
    fn new_normalises_slots_and_tick() {
        let wheel = TimerWheel::<u32>::new(0, 100, 0);
        assert_eq!((wheel.slots(), wheel.tick_ns()), (128, 1));
        let wheel = TimerWheel::<u32>::new(5, 0, 0);
        assert_eq!(wheel.slots(), 1);
        let wheel = TimerWheel::<u32>::new(5, usize::MAX, 0);
        assert_eq!(wheel.slots(), SLOTS_MAX);
    }

    #[test]
    fn fires_exactly_at_deadline_never_early() {
        let mut wheel = wheel();
        wheel.insert(30, 1);
        wheel.insert(35, 2);
        assert_eq!(fire(&mut wheel, 29), Vec::<u32>::new());
        assert_eq!(fire(&mut wheel, 30), vec![1]);
        assert_eq!(fire(&mut wheel, 34), Vec::<u32>::new());
        assert_eq!(fire(&mut wheel, 35), vec![2]);
        assert!(wheel.is_empty());
    }

    #[test]
    fn expire_on_tick_boundaries_fires_each_tick_batch_once() {
        let mut wheel = wheel();
        for deadline_ns in [10, 11, 19, 20, 21] {
            wheel.insert(deadline_ns, deadline_ns as u32);
        }
        assert_eq!(fire(&mut wheel, 10), vec![10]);
        assert_eq!(fire(&mut wheel, 20), vec![11, 19, 20]);
        assert_eq!(fire(&mut wheel, 30), vec![21]);
        assert_eq!(fire(&mut wheel, 40), Vec::<u32>::new());
    }

    #[test]
    fn cancel_before_expiry_returns_value_and_prevents_firing() {
        let mut wheel = wheel();
        let key = wheel.insert(50, 7);
        assert_eq!(wheel.len(), 1);
        assert_eq!(wheel.cancel(key), Some(7));
        assert_eq!(wheel.len(), 0);
        assert_eq!(fire(&mut wheel, 100), Vec::<u32>::new());
        assert_eq!(wheel.next_deadline_ns(), None);
    }

    #[test]
    fn cancel_after_expiry_or_twice_returns_none() {
        let mut wheel = wheel();
        let fired = wheel.insert(10, 1);
        let cancelled = wheel.insert(20, 2);
        assert_eq!(fire(&mut wheel, 10), vec![1]);
        assert_eq!(wheel.cancel(fired), None);
        assert_eq!(wheel.cancel(cancelled), Some(2));
        assert_eq!(wheel.cancel(cancelled), None);
    }

    #[test]
    fn stale_key_after_slab_reuse_returns_none() {
        let mut wheel = wheel();
        let old_key = wheel.insert(10, 1);
        assert_eq!(wheel.cancel(old_key), Some(1));
        let new_key = wheel.insert(10, 2);
        assert_ne!(old_key, new_key);
        assert_eq!(wheel.cancel(old_key), None);
        assert_eq!(wheel.reset(old_key, 50), None);
        assert_eq!(wheel.len(), 1);
        assert_eq!(wheel.cancel(new_key), Some(2));
    }

    #[test]
    fn reset_moves_deadline_and_stales_old_key() {
        let mut wheel = wheel();
        let key = wheel.insert(20, 9);
        let re_armed = wheel.reset(key, 45);
        assert!(re_armed.is_some());
        assert_eq!(wheel.cancel(key), None);
        assert_eq!(fire(&mut wheel, 44), Vec::<u32>::new());
        assert_eq!(fire(&mut wheel, 45), vec![9]);
        let stale = re_armed.and_then(|key| wheel.reset(key, 100));
        assert_eq!(stale, None);
    }

    #[test]
    fn reset_earlier_and_later_fire_at_new_deadline() {
        let mut wheel = wheel();
        let early = wheel.insert(500, 1);
        let late = wheel.insert(15, 2);
        assert!(wheel.reset(early, 15).is_some());
        assert!(wheel.reset(late, 500).is_some());
        assert_eq!(fire(&mut wheel, 15), vec![1]);
        assert_eq!(fire(&mut wheel, 499), Vec::<u32>::new());
        assert_eq!(fire(&mut wheel, 500), vec![2]);
    }

    #[test]
    fn wrap_around_over_many_revolutions_keeps_periodic_timer_exact() {
        let mut wheel = wheel();
        let period_ns = 3 * TICK_NS + 7;
        wheel.insert(period_ns, 0);
        let mut fired_at_ns = Vec::new();
        let mut now_ns = 0;
        while now_ns < 100 * REVOLUTION_NS {
            now_ns += TICK_NS;
            let mut out = Vec::new();
            wheel.expire(now_ns, &mut out);
            for _ in out {
                fired_at_ns.push(now_ns);
                wheel.insert(now_ns + period_ns, 0);
            }
        }
        // Deadline 37 ns after each firing, seen on the next 10 ns tick: every 40 ns.
        let expected: Vec<u64> = (1..)
            .map(|n: u64| n * 40)
            .take_while(|at_ns| *at_ns <= 100 * REVOLUTION_NS)
            .collect();
        assert_eq!(fired_at_ns, expected);
    }

    #[test]
    fn ten_thousand_timers_in_one_slot_fire_together() {
        let mut wheel = wheel();
        for value in 0..10_000u32 {
            wheel.insert(40 + u64::from(value % 10), value);
        }
        assert_eq!(fire(&mut wheel, 39), Vec::<u32>::new());
        assert_eq!(wheel.len(), 10_000);
        let fired = fire(&mut wheel, 49);
        assert_eq!(fired, (0..10_000).collect::<Vec<u32>>());
        assert!(wheel.is_empty());
    }

    #[test]
    fn partially_due_slot_keeps_later_timers() {
        let mut wheel = wheel();
        for value in 0..10_000u32 {
            wheel.insert(40 + u64::from(value % 10), value);
        }
        let fired = fire(&mut wheel, 44);
        let expected: Vec<u32> = (0..10_000).filter(|value| value % 10 <= 4).collect();
        assert_eq!(fired, expected);
        assert_eq!(wheel.len(), 5_000);
        // Rounded up to the tick boundary after the earliest survivor (45).
        assert_eq!(wheel.next_deadline_ns(), Some(50));
    }

    #[test]
    fn far_future_timer_fires_once_at_its_tick_after_100_revolutions() {
        let mut wheel = wheel();
        let far_ns = 100 * REVOLUTION_NS + 3 * TICK_NS;
        wheel.insert(far_ns, 1);
        // A neighbour in the same bucket every revolution forces scans of it.
        wheel.insert(3 * TICK_NS, 2);
        let mut fired_at_ns = Vec::new();
        let mut now_ns = 0;
        while now_ns <= far_ns + 2 * REVOLUTION_NS {
            let mut out = Vec::new();
            wheel.expire(now_ns, &mut out);
            fired_at_ns.extend(out.iter().filter(|value| **value == 1).map(|_| now_ns));
            if out.contains(&2) {
                wheel.insert(now_ns + REVOLUTION_NS, 2);
            }
            now_ns += TICK_NS;
        }
        assert_eq!(fired_at_ns, vec![far_ns]);
    }

    #[test]
    fn deadline_in_the_past_fires_at_next_expire() {
        let mut wheel = TimerWheel::new(TICK_NS, SLOTS, 1_000);
        assert_eq!(fire(&mut wheel, 1_500), Vec::<u32>::new());
        wheel.insert(3, 1);
        wheel.insert(1_200, 2);
        wheel.insert(1_500, 3);
        assert_eq!(wheel.next_deadline_ns(), Some(1_500));
        assert_eq!(fire(&mut wheel, 1_500), vec![1, 2, 3]);
    }

    #[test]
    fn large_time_jump_delivers_everything_due() {
        let mut wheel = wheel();
        for value in 0..100u32 {
            wheel.insert(u64::from(value) * 37, value);
        }
        wheel.insert(1_000_000, 1_000);
        let fired = fire(&mut wheel, 999_999);
        assert_eq!(fired, (0..100).collect::<Vec<u32>>());
        assert_eq!(fire(&mut wheel, 5_000_000), vec![1_000]);
    }

    #[test]
    fn time_going_backwards_is_a_no_op() {
        let mut wheel = wheel();
        wheel.insert(50, 1);
        assert_eq!(fire(&mut wheel, 100), vec![1]);
        wheel.insert(60, 2);
        assert_eq!(fire(&mut wheel, 70), Vec::<u32>::new());
        assert_eq!(wheel.len(), 1);
        assert_eq!(fire(&mut wheel, 100), vec![2]);
    }

    #[test]
    fn next_deadline_rounds_up_to_tick_boundary() {
        let mut wheel = wheel();
        assert_eq!(wheel.next_deadline_ns(), None);
        wheel.insert(23, 1);
        assert_eq!(wheel.next_deadline_ns(), Some(30));
        wheel.insert(20, 2);
        assert_eq!(wheel.next_deadline_ns(), Some(20));
        assert_eq!(fire(&mut wheel, 20), vec![2]);
        assert_eq!(wheel.next_deadline_ns(), Some(30));
        assert_eq!(fire(&mut wheel, 30), vec![1]);
        assert_eq!(wheel.next_deadline_ns(), None);
    }

    #[test]
    fn next_deadline_finds_near_timer_behind_far_one_in_current_slot() {
        let mut wheel = wheel();
        wheel.insert(10 * REVOLUTION_NS + 5, 1);
        wheel.insert(55, 2);
        assert_eq!(wheel.next_deadline_ns(), Some(60));
    }

    #[test]
    fn next_deadline_for_far_future_timer_is_exact_when_alone() {
        let mut wheel = wheel();
        let far_ns = 100 * REVOLUTION_NS + 30;
        wheel.insert(far_ns, 1);
        assert_eq!(wheel.next_deadline_ns(), Some(far_ns));
    }

    #[test]
    fn try_insert_rejects_beyond_timers_max() {
        let mut wheel = wheel().with_timers_max(2);
        let first = wheel.try_insert(10, 1);
        assert!(first.is_ok());
        assert!(wheel.try_insert(20, 2).is_ok());
        let rejected = wheel.try_insert(30, 3);
        assert_eq!(
            rejected,
            Err(TimerError::TimersMaxExceeded { timers_max: 2 })
        );
        assert_eq!(
            rejected.map_err(|error| error.to_string()),
            Err("timer wheel already holds 2 armed timers, its limit".to_owned())
        );
        assert_eq!(first.ok().and_then(|key| wheel.cancel(key)), Some(1));
        assert!(wheel.try_insert(30, 3).is_ok());
    }

    #[test]
    fn slab_reuses_freed_entries() {
        let mut wheel = wheel();
        for round in 0..100u64 {
            let keys: Vec<TimerKey> = (0..10).map(|v| wheel.insert(round * 5, v)).collect();
            for key in keys {
                assert!(wheel.cancel(key).is_some());
            }
        }
        assert_eq!(wheel.entries.len(), 10);
    }

    /// One step of the model-based property test.
    #[derive(Debug, Clone)]
    enum Op {
        /// Arm a timer at `now + offset - 50` (so some deadlines are already past).
        Insert(u64),
        /// Cancel the n-th key ever handed out (modulo count).
        Cancel(usize),
        /// Re-arm the n-th key at `now + offset - 50`.
        Reset(usize, u64),
        /// Advance time (or move it back by 20 for the `Back` case) and expire.
        Expire(u64),
        Back,
    }

    fn op_strategy() -> impl Strategy<Value = Op> {
        let offset = prop_oneof![0..200u64, 0..(20 * REVOLUTION_NS)];
        prop_oneof![
            4 => offset.clone().prop_map(Op::Insert),
            1 => any::<usize>().prop_map(Op::Cancel),
            1 => (any::<usize>(), offset).prop_map(|(n, off)| Op::Reset(n, off)),
            3 => prop_oneof![0..30u64, 0..(3 * REVOLUTION_NS)].prop_map(Op::Expire),
            1 => Just(Op::Back),
        ]
    }

    /// Naive reference: armed timers by value id, fired iff deadline <= now.
    struct Model {
        armed: BTreeMap<u32, u64>,
        last_now_ns: u64,
    }

    impl Model {
        fn expire(&mut self, now_ns: u64) -> Vec<u32> {
            if now_ns < self.last_now_ns {
                return Vec::new();
            }
            self.last_now_ns = now_ns;
            let due: Vec<u32> = self
                .armed
                .iter()
                .filter(|(_, deadline_ns)| **deadline_ns <= now_ns)
                .map(|(value, _)| *value)
                .collect();
            for value in &due {
                self.armed.remove(value);
            }
            due
        }
    }

    fn round_up(at_ns: u64, origin_ns: u64) -> u64 {
        let offset_ns = at_ns.saturating_sub(origin_ns);
        origin_ns + offset_ns.div_ceil(TICK_NS) * TICK_NS
    }

    fn check_next_deadline(wheel: &TimerWheel<u32>, model: &Model, origin_ns: u64) {
        let next_ns = wheel.next_deadline_ns();
        let Some(earliest_ns) = model.armed.values().min().copied() else {
            assert_eq!(next_ns, None);
            return;
        };
        let next_ns = next_ns.unwrap_or(u64::MAX);
        assert!(next_ns >= model.last_now_ns, "{next_ns} before last now");
        if earliest_ns <= model.last_now_ns {
            assert_eq!(next_ns, model.last_now_ns);
        } else {
            assert!(
                next_ns <= round_up(earliest_ns, origin_ns),
                "{next_ns} late"
            );
        }
    }

    proptest! {
        #[test]
        fn matches_naive_model(
            origin_ns in 0..1_000u64,
            ops in proptest::collection::vec(op_strategy(), 1..300),
        ) {
            let mut wheel = TimerWheel::new(TICK_NS, SLOTS, origin_ns);
            let mut model = Model { armed: BTreeMap::new(), last_now_ns: origin_ns };
            let mut keys: Vec<(TimerKey, u32)> = Vec::new();
            let mut now_ns = origin_ns;
            let mut next_value = 0u32;
            for op in ops {
                match op {
                    Op::Insert(offset) => {
                        let deadline_ns = (now_ns + offset).saturating_sub(50);
                        keys.push((wheel.insert(deadline_ns, next_value), next_value));
                        model.armed.insert(next_value, deadline_ns);
                        next_value += 1;
                    }
                    Op::Cancel(n) if !keys.is_empty() => {
                        let (key, value) = keys[n % keys.len()];
                        let expected = model.armed.remove(&value).map(|_| value);
                        prop_assert_eq!(wheel.cancel(key), expected);
                    }
                    Op::Reset(n, offset) if !keys.is_empty() => {
                        let slot = n % keys.len();
                        let (key, value) = keys[slot];
                        let deadline_ns = (now_ns + offset).saturating_sub(50);
                        let re_armed = wheel.reset(key, deadline_ns);
                        prop_assert_eq!(re_armed.is_some(), model.armed.contains_key(&value));
                        if let Some(new_key) = re_armed {
                            model.armed.insert(value, deadline_ns);
                            keys[slot] = (new_key, value);
                        }
                    }
                    Op::Expire(advance_ns) => {
                        now_ns += advance_ns;
                        let expected = model.expire(now_ns);
                        prop_assert_eq!(fire(&mut wheel, now_ns), expected);
                    }
                    Op::Back => {
                        let back_ns = now_ns.saturating_sub(20);
                        prop_assert_eq!(fire(&mut wheel, back_ns), model.expire(back_ns));
                    }
                    Op::Cancel(_) | Op::Reset(..) => {}
                }
                prop_assert_eq!(wheel.len(), model.armed.len());
                check_next_deadline(&wheel, &model, origin_ns);
            }
        }

        #[test]
        fn sleeping_until_next_deadline_is_never_more_than_one_tick_late(
            deadlines in proptest::collection::vec(0..(30 * REVOLUTION_NS), 1..200),
        ) {
            let mut wheel = TimerWheel::new(TICK_NS, SLOTS, 0);
            for (value, deadline_ns) in deadlines.iter().enumerate() {
                wheel.insert(*deadline_ns, value as u32);
            }
            let mut fired_total = 0;
            while let Some(wake_ns) = wheel.next_deadline_ns() {
                let mut out = Vec::new();
                wheel.expire(wake_ns, &mut out);
                for value in out {
                    let deadline_ns = deadlines[value as usize];
                    prop_assert!(deadline_ns <= wake_ns);
                    prop_assert!(wake_ns < deadline_ns + TICK_NS, "late: {} for {}", wake_ns, deadline_ns);
                    fired_total += 1;
                }
            }
            prop_assert_eq!(fired_total, deadlines.len());
        }
    }
}
