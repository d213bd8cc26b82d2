//! The bounded per-connection queue of outgoing frames, with a control lane.
//!
//! Owns: the frames queued for one connection's socket and the byte counts of each lane.
//! May not touch: sockets (the runtime gathers `io_slices` and reports what `sendmsg` wrote
//! with `advance`), the clock, or any other connection.
//!
//! Lanes, in write order:
//! 1. the frame already partly written (a frame is never interleaved with another, RFC 6455
//!    §5.4: frames of different messages must not be mixed on the wire);
//! 2. the control lane (pong frames, one per ping and in order; error, subscribed, pong replies
//!    to `{"type":"ping"}`): jumps ahead of queued data so that a congested but alive
//!    connection still hears its replies. RFC 6455 §5.5.3 would allow answering only the most
//!    recent ping, but strict peers and conformance suites expect one pong per ping with its
//!    payload, so each ping gets its own, bounded by the control budget;
//! 3. the data lane: deliveries, plus "ordered control" frames (`unsubscribed`, `gap`) that must
//!    keep their place among deliveries but are never dropped by the data policy;
//! 4. the final close frame, written last; after it nothing is accepted.
//!
//! Budgets: data frames are limited by `data_bytes_max`; when a push would exceed it the
//! caller gets `SendStatus::Full` and applies the slow-consumer policy. Control frames (lanes 2-3
//! of control kind) are limited by `control_bytes_max`; a client that never reads its replies
//! (or floods pings) exhausts it, and the caller closes the connection (`SendStatus::Full`
//! again).
//!
//! Memory: an outbox that holds nothing is a three-word handle; its lanes are boxed on the
//! first push and freed by `release_idle` once everything was written (issue 12: an idle
//! connection costs at most 256 bytes).

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes};

mod conflate;

pub use conflate::Conflated;

/// What happened to a frame offered to the outbox (uWebSockets' vocabulary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStatus {
    /// Queued; the connection needs a flush.
    Queued,
    /// The lane's budget is used up; nothing was queued.
    Full,
    /// The connection is closing or closed; nothing was queued.
    Closed,
}

/// Which budget a queued frame counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Budget {
    Data,
    Control,
}

/// One queued frame.
#[derive(Debug)]
struct Entry {
    /// The frame; empty once conflation replaced it (a tombstone, skipped when writing).
    bytes: Bytes,
    budget: Budget,
    /// When the publish that produced this frame was read off its socket (ns, process epoch);
    /// 0 for frames that are not deliveries.
    read_at_ns: u64,
    /// The frame's first byte as queued (FIN + opcode), kept for the sent-frames counter after
    /// a partial write has advanced `bytes`.
    first_byte: u8,
    /// The delivery's seq (0 for other frames), reported when conflation replaces it.
    seq: u64,
    /// Conflation key of a delivery (0: none).
    key: u64,
    /// Deliveries this entry carries (a run of messages encoded back to back).
    count: u32,
}

/// The most slices gathered for one `sendmsg`. Linux's IOV_MAX is 1024; 64 frames of typical
/// relay size already exceed a socket buffer, so more would only cost gather time.
pub const IO_SLICES_MAX: usize = 64;

/// Bounded queue of frames for one connection.
///
/// Idle, it is a handle of two words (checked by `tests::idle_outbox_is_two_words`): the
/// budgets, and a pointer to the lanes that is null until the first frame is queued. The lanes
/// live in one box so that the thousands of connections that are subscribed to nothing cost no
/// queue memory; `release_idle` frees the box once everything was written.
#[derive(Debug)]
pub struct Outbox {
    /// Queues and counters; `None` until the first push and again after `release_idle` on a
    /// drained, open outbox.
    lanes: Option<Box<Lanes>>,
    /// The budgets, held in 32 bits (an idle outbox is 16 bytes; budgets beyond 4 GiB are taken
    /// as 4 GiB).
    data_bytes_max: u32,
    control_bytes_max: u32,
}

/// The lanes and their byte counts: everything an outbox holds while it has been in use.
#[derive(Debug, Default)]
struct Lanes {
    head: Option<Entry>,
    control: VecDeque<Entry>,
    data: VecDeque<Entry>,
    close: Option<Bytes>,
    data_bytes: usize,
    control_bytes: usize,
    closed: bool,
    /// Entries ever popped from the front of `data` (absolute position of `data[0]`).
    popped_total: u64,
    /// Bytes ever written from this outbox (a slow reader's progress).
    written_total: u64,
    /// Conflation index, allocated by the first conflated push.
    conflation: Option<Box<conflate::Index>>,
}

impl Outbox {
    /// An empty outbox with the given budgets. Allocates nothing until a frame is queued.
    pub fn new(data_bytes_max: usize, control_bytes_max: usize) -> Self {
        Outbox {
            lanes: None,
            data_bytes_max: u32::try_from(data_bytes_max).unwrap_or(u32::MAX),
            control_bytes_max: u32::try_from(control_bytes_max).unwrap_or(u32::MAX),
        }
    }

    /// Queues a delivery. `read_at_ns` timestamps the publish for the relay-latency histogram.
    #[inline]
    pub fn push_data(&mut self, bytes: Bytes, read_at_ns: u64) -> SendStatus {
        self.push_data_n(bytes, read_at_ns, 1)
    }

    /// Queues `count` deliveries encoded back to back in `bytes` as one entry (all or none).
    /// Inlined: it is the fan-out's per-subscriber step.
    #[inline]
    pub fn push_data_n(&mut self, bytes: Bytes, read_at_ns: u64, count: u32) -> SendStatus {
        let data_bytes_max = self.data_bytes_max as usize;
        let lanes = self.lanes_mut();
        if lanes.closed {
            return SendStatus::Closed;
        }
        if lanes.data_bytes + bytes.len() > data_bytes_max {
            return SendStatus::Full;
        }
        lanes.data_bytes += bytes.len();
        let mut entry = Entry::new(bytes, Budget::Data, read_at_ns);
        entry.count = count;
        lanes.data.push_back(entry);
        SendStatus::Queued
    }

    /// True when a delivery of `len` bytes would be queued now (open and within budget).
    #[inline]
    pub fn data_fits(&self, len: usize) -> bool {
        match self.lanes.as_deref() {
            Some(lanes) => !lanes.closed && lanes.data_bytes + len <= self.data_bytes_max as usize,
            None => len <= self.data_bytes_max as usize,
        }
    }

    /// Queues a recovered (history) frame regardless of the data budget: replay is bounded by
    /// the history size, and refusing it would defeat recovery. Its bytes count as data.
    pub fn push_replay(&mut self, bytes: Bytes) -> SendStatus {
        let lanes = self.lanes_mut();
        if lanes.closed {
            return SendStatus::Closed;
        }
        lanes.data_bytes += bytes.len();
        lanes.data.push_back(Entry::new(bytes, Budget::Data, 0));
        SendStatus::Queued
    }

    /// Queues a reply that must keep its place among deliveries (`unsubscribed`, `gap`).
    pub fn push_ordered_control(&mut self, bytes: Bytes) -> SendStatus {
        self.queue_control(bytes, true)
    }

    /// Queues a reply that may overtake queued deliveries (`error`, `subscribed`, `pong`).
    pub fn push_control(&mut self, bytes: Bytes) -> SendStatus {
        self.queue_control(bytes, false)
    }

    /// Queues bytes that must go out before anything else and survive `close_now`: the 101
    /// response of the upgrade (a client may pipeline frames behind its request, and a close
    /// caused by one of them must still follow the 101 on the wire). Only on an empty outbox.
    pub fn push_first(&mut self, bytes: Bytes) -> SendStatus {
        let lanes = self.lanes_mut();
        if lanes.head.is_some() || lanes.closed {
            debug_assert!(false, "push_first on a used outbox");
            return SendStatus::Closed;
        }
        lanes.head = Some(Entry::control(bytes));
        SendStatus::Queued
    }

    /// Queues the pong answering one ping (RFC 6455 §5.5.3), in the control lane after the
    /// pongs already queued: one pong per ping, in order. `Full` when the control budget is
    /// used up (a ping flood): the caller closes the connection instead of coalescing.
    pub fn push_pong(&mut self, bytes: Bytes) -> SendStatus {
        self.queue_control(bytes, false)
    }

    /// Queues the close frame after everything already queued (graceful: shutdown, drain).
    /// Nothing is accepted afterwards.
    pub fn close_after_queued(&mut self, close_frame: Bytes) {
        self.lanes_mut().close_after_queued(close_frame);
    }

    /// Discards queued data and replies (except a partly written frame, which must be finished
    /// to keep the stream well-framed) and queues the close frame next. Returns how many
    /// deliveries were discarded, for the drop counter.
    pub fn close_now(&mut self, close_frame: Bytes) -> usize {
        let lanes = self.lanes_mut();
        let dropped = lanes
            .data
            .iter()
            .filter(|e| e.budget == Budget::Data)
            .count();
        lanes.popped_total += lanes.data.len() as u64;
        lanes.data.clear();
        lanes.conflation = None;
        lanes.control.clear();
        lanes.data_bytes = 0;
        lanes.control_bytes = 0;
        lanes.closed = false;
        lanes.close_after_queued(close_frame);
        dropped
    }

    /// True once a close frame was queued: data is no longer accepted.
    pub fn is_closing(&self) -> bool {
        self.lanes.as_deref().is_some_and(|lanes| lanes.closed)
    }

    /// True when nothing at all is waiting to be written.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.lanes.as_deref().is_none_or(Lanes::is_empty)
    }

    /// True when the close frame has been completely written.
    pub fn close_written(&self) -> bool {
        self.is_closing() && self.is_empty()
    }

    /// Bytes queued in both lanes (the metrics gauge `outbox_bytes`).
    pub fn queued_bytes(&self) -> usize {
        self.lanes
            .as_deref()
            .map_or(0, |lanes| lanes.data_bytes + lanes.control_bytes)
    }

    /// Bytes written since the outbox was last idle (its lanes' box was made): a write
    /// in progress is seen by this moving.
    pub fn written_total(&self) -> u64 {
        self.lanes.as_deref().map_or(0, |lanes| lanes.written_total)
    }

    /// Bytes of deliveries queued (the slow-consumer budget's use).
    pub fn data_bytes(&self) -> usize {
        self.lanes.as_deref().map_or(0, |lanes| lanes.data_bytes)
    }

    /// Heap bytes held by the outbox itself: the lanes' box, the queues' capacity and the
    /// conflation index (the queued frames' bytes are shared `Bytes`, counted by
    /// `queued_bytes`). 0 for an outbox that holds nothing.
    pub fn heap_bytes(&self) -> usize {
        self.lanes.as_deref().map_or(0, Lanes::heap_bytes)
    }

    /// Fills `slices` with the frames to write next, in lane order. Returns how many.
    pub fn io_slices<'a>(&'a self, slices: &mut [IoSlice<'a>; IO_SLICES_MAX]) -> usize {
        let Some(lanes) = self.lanes.as_deref() else {
            return 0;
        };
        let mut n = 0;
        let mut put = |b: &'a [u8]| {
            if n < IO_SLICES_MAX && !b.is_empty() {
                slices[n] = IoSlice::new(b);
                n += 1;
            }
        };
        if let Some(h) = &lanes.head {
            put(&h.bytes);
        }
        lanes
            .control
            .iter()
            .chain(&lanes.data)
            .for_each(|e| put(&e.bytes));
        if let Some(c) = &lanes.close {
            put(c);
        }
        n
    }

    /// Consumes `written` bytes in the order `io_slices` gathered them. Calls `on_written`
    /// for every frame written completely, with its first byte (FIN and opcode, RFC 6455 §5.2)
    /// and, for deliveries, the `read_at_ns` of its publish (0 otherwise).
    pub fn advance(&mut self, mut written: usize, on_written: &mut impl FnMut(u8, u64, u32)) {
        let Some(lanes) = self.lanes.as_deref_mut() else {
            debug_assert!(written == 0, "advance past the queued bytes");
            return;
        };
        lanes.written_total += written as u64;
        while written > 0 {
            let Some(mut entry) = lanes.take_next() else {
                debug_assert!(false, "advance past the queued bytes");
                return;
            };
            let len = entry.bytes.len();
            if len == 0 {
                continue; // A conflation tombstone: nothing was written for it.
            }
            if written < len {
                entry.bytes.advance(written);
                lanes.head = Some(entry);
                return;
            }
            written -= len;
            on_written(entry.first_byte, entry.read_at_ns, entry.count);
        }
        lanes.trim_tombstones();
    }

    /// Gives the outbox's memory back to the allocator when it holds nothing (an idle
    /// connection should cost its handle and nothing more): a drained, open outbox frees its
    /// lanes' box; otherwise each empty queue frees its capacity. Busy connections keep their
    /// capacity: the caller calls this only for connections that went quiet.
    pub fn release_idle(&mut self) {
        let Some(lanes) = self.lanes.as_deref_mut() else {
            return;
        };
        if lanes.is_empty() && !lanes.closed {
            // Nothing queued, nothing partly written, no close pending: the counters are all
            // zero and the conflation positions refer to nothing.
            self.lanes = None;
            return;
        }
        if lanes.control.is_empty() && lanes.control.capacity() > 0 {
            lanes.control = VecDeque::new();
        }
        if lanes.data.is_empty() && lanes.data.capacity() > 0 {
            lanes.data = VecDeque::new();
            lanes.conflation = None;
        }
    }

    /// Queues a control frame against the control budget: among the deliveries (`ordered`)
    /// or in the control lane that overtakes them.
    fn queue_control(&mut self, bytes: Bytes, ordered: bool) -> SendStatus {
        let control_bytes_max = self.control_bytes_max as usize;
        let lanes = self.lanes_mut();
        if lanes.closed {
            return SendStatus::Closed;
        }
        if lanes.control_bytes + bytes.len() > control_bytes_max {
            return SendStatus::Full;
        }
        lanes.control_bytes += bytes.len();
        let lane = if ordered {
            &mut lanes.data
        } else {
            &mut lanes.control
        };
        lane.push_back(Entry::control(bytes));
        SendStatus::Queued
    }

    /// The lanes, allocated on first use.
    #[inline]
    fn lanes_mut(&mut self) -> &mut Lanes {
        self.lanes.get_or_insert_with(Lanes::boxed)
    }
}

impl Lanes {
    /// New empty lanes in their box (out of line: once per idle-to-busy transition).
    #[cold]
    #[inline(never)]
    fn boxed() -> Box<Lanes> {
        Box::default()
    }

    fn is_empty(&self) -> bool {
        self.head.is_none()
            && self.control.is_empty()
            && self.data.is_empty()
            && self.close.is_none()
    }

    fn close_after_queued(&mut self, close_frame: Bytes) {
        if !self.closed {
            self.closed = true;
            self.close = Some(close_frame);
        }
    }

    /// Removes the next frame in write order, releasing its budget.
    fn take_next(&mut self) -> Option<Entry> {
        if let Some(h) = self.head.take() {
            return Some(h);
        }
        if let Some(c) = self.control.pop_front() {
            self.control_bytes -= c.bytes.len();
            return Some(c);
        }
        if let Some(e) = self.data.pop_front() {
            self.popped_total += 1;
            match e.budget {
                Budget::Data => self.data_bytes -= e.bytes.len(),
                Budget::Control => self.control_bytes -= e.bytes.len(),
            }
            return Some(e);
        }
        self.close.take().map(Entry::control)
    }

    fn heap_bytes(&self) -> usize {
        let entries = self.control.capacity() + self.data.capacity();
        let index = self
            .conflation
            .as_deref()
            .map_or(0, conflate::Index::heap_bytes);
        std::mem::size_of::<Lanes>() + entries * std::mem::size_of::<Entry>() + index
    }
}

impl Entry {
    fn new(bytes: Bytes, budget: Budget, read_at_ns: u64) -> Entry {
        let first_byte = bytes.first().copied().unwrap_or(0);
        Entry {
            bytes,
            budget,
            read_at_ns,
            first_byte,
            seq: 0,
            key: 0,
            count: 1,
        }
    }

    fn control(bytes: Bytes) -> Entry {
        Entry::new(bytes, Budget::Control, 0)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The bytes the next `sendmsg` would send (test helper shared with `conflate`).
    pub(crate) fn gather(o: &Outbox) -> Vec<u8> {
        let mut slices = [IoSlice::new(&[]); IO_SLICES_MAX];
        let n = o.io_slices(&mut slices);
        slices[..n].iter().flat_map(|s| s.iter().copied()).collect()
    }

    /// A static frame (test helper shared with `conflate`).
    pub(crate) fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    /// Issue 12 (≤ 256 bytes per idle connection): an idle outbox is a pointer and the two
    /// budgets (32 bits each: `config::OUTBOX_BYTES_MAX`), no more.
    #[test]
    fn idle_outbox_is_two_words() {
        assert!(std::mem::size_of::<Outbox>() <= 2 * std::mem::size_of::<usize>());
        assert_eq!(Outbox::new(1024, 1024).heap_bytes(), 0);
    }

    #[test]
    fn a_drained_outbox_releases_its_heap_and_works_again() {
        let mut o = Outbox::new(1024, 1024);
        o.push_data(b("AAAA"), 1);
        o.push_control(b("c"));
        assert!(o.heap_bytes() > 0);
        o.release_idle();
        assert!(o.heap_bytes() > 0, "released while frames are queued");
        o.advance(5, &mut |_, _, _| {});
        assert!(o.is_empty());
        o.release_idle();
        assert_eq!(o.heap_bytes(), 0);
        assert_eq!((o.queued_bytes(), o.data_bytes()), (0, 0));
        assert_eq!(o.push_data(b("BB"), 1), SendStatus::Queued);
        assert_eq!(gather(&o), b"BB");
        assert_eq!(o.queued_bytes(), 2);
    }

    #[test]
    fn a_partly_written_frame_keeps_the_lanes() {
        let mut o = Outbox::new(1024, 1024);
        o.push_data(b("AAAA"), 1);
        o.advance(1, &mut |_, _, _| {});
        o.release_idle();
        assert!(o.heap_bytes() > 0);
        assert_eq!(gather(&o), b"AAA");
    }

    #[test]
    fn a_written_close_is_remembered_after_release_idle() {
        let mut o = Outbox::new(1024, 1024);
        o.close_after_queued(b("X"));
        o.advance(1, &mut |_, _, _| {});
        o.release_idle();
        assert!(o.close_written());
        assert_eq!(o.push_data(b("A"), 1), SendStatus::Closed);
        assert!(!o.data_fits(1));
    }

    #[test]
    fn a_fresh_outbox_applies_its_budgets() {
        let o = Outbox::new(4, 4);
        assert!(o.data_fits(4) && !o.data_fits(5));
        assert!(!o.is_closing() && o.is_empty() && !o.close_written());
        let mut o = Outbox::new(4, 4);
        assert_eq!(o.push_control(b("ccccc")), SendStatus::Full);
        assert_eq!(o.push_data(b("AAAAA"), 1), SendStatus::Full);
        o.advance(0, &mut |_, _, _| {});
        assert!(o.is_empty());
    }

    #[test]
    fn release_after_conflation_restarts_positions() {
        let mut o = Outbox::new(1024, 1024);
        o.push_conflated(b("A1"), 1, 7, 1);
        o.advance(2, &mut |_, _, _| {});
        o.release_idle();
        assert_eq!(o.heap_bytes(), 0);
        assert_eq!(o.push_conflated(b("A2"), 1, 7, 2).replaced_seq, None);
        assert!(o.conflation_queued(7));
        let r = o.push_conflated(b("A3"), 1, 7, 3);
        assert_eq!(r.replaced_seq, Some(2));
        assert_eq!(gather(&o), b"A3");
    }

    #[test]
    fn control_overtakes_data_but_not_a_partly_written_frame() {
        let mut o = Outbox::new(1024, 1024);
        o.push_data(b("AAAA"), 1);
        o.advance(2, &mut |_, _, _| {});
        o.push_pong(b("p"));
        o.push_control(b("c"));
        o.push_data(b("BB"), 2);
        assert_eq!(gather(&o), b"AApcBB");
    }

    #[test]
    fn ordered_control_keeps_its_place() {
        let mut o = Outbox::new(1024, 1024);
        o.push_data(b("A"), 1);
        o.push_ordered_control(b("u"));
        o.push_data(b("B"), 1);
        assert_eq!(gather(&o), b"AuB");
    }

    #[test]
    fn data_budget_refuses_and_control_still_fits() {
        let mut o = Outbox::new(4, 4);
        assert_eq!(o.push_data(b("AAA"), 1), SendStatus::Queued);
        assert_eq!(o.push_data(b("BB"), 1), SendStatus::Full);
        assert_eq!(o.push_control(b("cc")), SendStatus::Queued);
        assert_eq!(o.push_control(b("ccc")), SendStatus::Full);
        assert_eq!(o.queued_bytes(), 5);
    }

    #[test]
    fn every_pong_is_kept_in_order_until_the_control_budget_is_used() {
        let mut o = Outbox::new(16, 6);
        assert_eq!(o.push_pong(b("p1")), SendStatus::Queued);
        assert_eq!(o.push_pong(b("p2")), SendStatus::Queued);
        assert_eq!(o.push_pong(b("p3")), SendStatus::Queued);
        assert_eq!(o.push_pong(b("p4")), SendStatus::Full);
        assert_eq!(gather(&o), b"p1p2p3");
        assert_eq!(o.queued_bytes(), 6);
    }

    #[test]
    fn advance_reports_each_completed_frame_once_in_write_order() {
        let mut o = Outbox::new(64, 64);
        o.push_data(b("AAAA"), 7);
        o.push_control(b("c"));
        o.push_data(b("BB"), 9);
        let mut seen = Vec::new();
        let mut record = |first: u8, t: u64, _n: u32| seen.push((first, t));
        o.advance(3, &mut record);
        o.advance(2, &mut record);
        o.advance(2, &mut record);
        assert_eq!(seen, vec![(b'c', 0), (b'A', 7), (b'B', 9)]);
        assert!(o.is_empty());
        assert_eq!(o.queued_bytes(), 0);
    }

    #[test]
    fn close_now_discards_queued_data_but_finishes_the_partial_frame() {
        let mut o = Outbox::new(64, 64);
        o.push_data(b("AAAA"), 1);
        o.push_data(b("BBBB"), 1);
        o.advance(1, &mut |_, _, _| {});
        assert_eq!(o.close_now(b("X")), 1);
        assert_eq!(gather(&o), b"AAAX");
        assert_eq!(o.push_data(b("C"), 1), SendStatus::Closed);
        o.advance(4, &mut |_, _, _| {});
        assert!(o.close_written());
    }

    #[test]
    fn close_after_queued_writes_the_close_frame_last() {
        let mut o = Outbox::new(64, 64);
        o.push_data(b("AA"), 1);
        o.close_after_queued(b("X"));
        assert_eq!(o.push_control(b("c")), SendStatus::Closed);
        assert_eq!(gather(&o), b"AAX");
    }
}
