//! Room ticks in cluster mode (`--tick-for` with `--nats`; docs/CLUSTER.md, "Room ticks
//! across relays"). JetStream numbers a room's publishes like any channel's (publishers are
//! acknowledged once they are stored, as every cluster publish); the batching applies on the
//! delivering side: each relay's owner loop of a room holds the live messages the bridge hands
//! it and, once per period, takes them into its registry (`cluster_accept`, retention), encodes
//! them ONCE as the single-node batch frames (`tick.rs`, `encode_entries`) and hands the same
//! bytes to every interested loop and subscriber.
//!
//! Rules:
//! - Held messages are not taken into the registry yet: a subscribe answered meanwhile
//!   reports the seq before them, and they come to it in the next batch (the single-node seam).
//! - A batch holds contiguous seqs of one epoch: a seq jump (an announced gap) or an epoch
//!   change ends it; the epoch notice goes out between the two batches.
//! - The entries come from the stored message bodies (`command::message_parts`,
//!   `binary_message_payload`) and the publisher's name (`Wsr-Name`), so the frames are those
//!   of one node. Ticks share the loop's schedule with single-node rooms (`Ticks`) and fall on
//!   multiples of the period in wall-clock time, so relays on synchronised hosts tick together.
//! - Bounded like a single-node room: at `publish_queue_len_max` messages or
//!   `publish_queue_bytes_max` bytes held, the room ticks at once (`forced`, counted).
//! - A channel without a tick rule never reaches this module (one `tick_for` per live batch,
//!   which is one `is_empty` test without `--tick-for`).
//!
//! Encodes frames ONCE for many subscribers (encode-once is an invariant): these are not
//! per-connection replies and stay here; every reply to one connection is a `session::Reply`
//! encoded by its session, and each subscriber gets the shared frame through
//! `Session::handle_delivery`.

use std::cmp::Reverse;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::command as encode;
use crate::metrics::Counter;
use crate::runtime::event_loop::EventLoop;
use crate::runtime::tick::{encode_entries, next_tick_ns, Entry};
use crate::runtime::Batch;

/// A room's live messages waiting for its tick.
#[derive(Debug)]
pub(super) struct LiveRoom {
    /// When it ticks next.
    pub(super) due_ns: u64,
    held: Vec<Held>,
    messages: usize,
    bytes: usize,
}

#[derive(Debug)]
struct Held {
    batch: Arc<Batch>,
    epoch: Arc<str>,
    from: Option<Arc<str>>,
}

/// Messages of one batch being built: (live batch, frame index, publisher name).
type Run = Vec<(Arc<Batch>, usize, Option<Arc<str>>)>;

impl EventLoop {
    /// The owner's part of a live batch of a room: held until the room's tick.
    pub(super) fn hold_live_for_tick(
        &mut self,
        batch: Arc<Batch>,
        epoch: Arc<str>,
        from: Option<Arc<str>>,
        period: Duration,
    ) {
        let period_ns = period.as_nanos().max(1) as u64;
        let now_ns = self.now_ns;
        let channel = batch.channel.clone();
        let ticks = &mut self.channels.ticks;
        let room = ticks.live.entry(channel.clone()).or_insert_with(|| {
            let due_ns = next_wall_tick_ns(now_ns, period_ns, Clock::unix_at_epoch_ns());
            ticks.schedule.push(Reverse((due_ns, channel.clone())));
            LiveRoom {
                due_ns,
                held: Vec::new(),
                messages: 0,
                bytes: 0,
            }
        });
        room.messages += batch.frames.len();
        room.bytes += batch.bytes.len();
        room.held.push(Held { batch, epoch, from });
        let full = room.messages >= self.env.config.publish_queue_len_max
            || room.bytes >= self.env.config.publish_queue_bytes_max;
        if full {
            self.metrics.inc(Counter::TickForced);
            self.tick_live_room(&channel);
        }
    }

    /// Ticks a room now if it holds live messages (before its state is re-read).
    pub(super) fn tick_live_room_if_held(&mut self, channel: &Arc<str>) {
        if self.channels.ticks.live.contains_key(channel) {
            self.tick_live_room(channel);
        }
    }

    /// Takes a room's held live messages into the registry and delivers them as batches.
    pub(super) fn tick_live_room(&mut self, channel: &Arc<str>) {
        let Some(room) = self.channels.ticks.live.remove(channel) else {
            return;
        };
        let mut run: Run = Vec::new();
        let mut run_first = 0;
        let mut interest = 0;
        for h in room.held {
            let first = h.batch.first_seq;
            let count = h.batch.frames.len() as u64;
            let Some((now_interest, changed, reset)) = self
                .channels
                .owned
                .cluster_accept(channel, &h.epoch, first, count)
            else {
                continue; // Not watched here any more.
            };
            if changed || run_first + run.len() as u64 != first {
                self.send_live_tick(channel, &mut run, run_first, interest);
                run_first = first;
            }
            interest = now_interest;
            if changed {
                let before = first.saturating_sub(1);
                self.announce_epoch(channel, &h.epoch, before, interest, reset);
            }
            if self.channels.owned.retains() {
                let frames = (0..h.batch.frames.len()).map(|i| h.batch.prepared(i));
                let evicted = self
                    .channels
                    .owned
                    .retain(channel, first, frames, self.now_ns);
                self.metrics.add(Counter::HistoryEvicted, evicted);
            }
            for i in 0..h.batch.frames.len() {
                run.push((h.batch.clone(), i, h.from.clone()));
            }
        }
        self.send_live_tick(channel, &mut run, run_first, interest);
    }

    /// Encodes a run of contiguous messages as one tick's batch and delivers it.
    fn send_live_tick(&mut self, channel: &Arc<str>, run: &mut Run, first_seq: u64, interest: u64) {
        if run.is_empty() {
            return;
        }
        let frames: Vec<bytes::Bytes> = run.iter().map(|(b, i, _)| b.frame_bytes(*i)).collect();
        let entries: Vec<Entry<'_>> = run
            .iter()
            .zip(&frames)
            .map(|((b, i, from), frame)| entry_of(frame, from.as_deref(), b.frames[*i].read_at_ns))
            .collect();
        let limit = self.env.config.message_bytes_max;
        let batch = encode_entries(&entries, channel, first_seq, limit);
        drop(entries);
        run.clear();
        self.send_tick_batch(batch, interest);
    }
}

/// The next tick after `now_ns` (loop clock) on a multiple of `period_ns` of wall-clock
/// time (`unix_at_zero_ns`: the Unix time of the loop clock's zero): relays on hosts whose
/// clocks are synchronised tick a room together.
fn next_wall_tick_ns(now_ns: u64, period_ns: u64, unix_at_zero_ns: u64) -> u64 {
    let phase = unix_at_zero_ns % period_ns;
    next_tick_ns(now_ns + phase, period_ns) - phase
}

/// A batch entry from a stored message frame (an unmasked server frame: RFC 6455 §5.2 header,
/// then the body as `runtime/cluster.rs` receives it). A body of another shape (not written by
/// a relay) becomes a `null` JSON entry, so that seqs stay contiguous.
fn entry_of<'a>(frame: &'a [u8], name: Option<&'a str>, read_at_ns: u64) -> Entry<'a> {
    let binary = frame.first().is_some_and(|b| b & 0x0f == 0x2);
    let header = match frame.get(1).map(|b| b & 0x7f) {
        Some(126) => 4,
        Some(127) => 10,
        _ => 2,
    };
    let body = frame.get(header..).unwrap_or_default();
    let (body, raw_from) = match binary {
        true => (encode::binary_message_payload(body), None),
        false => match encode::message_parts(body) {
            Some((content, from)) => (Some(content), std::str::from_utf8(from).ok()),
            None => (None, None),
        },
    };
    // The raw `from` is still JSON-escaped: used only when it needs no unescaping.
    let raw_from = raw_from.filter(|f| !f.contains('\\'));
    match body {
        Some(body) => Entry {
            binary,
            body,
            from: name.or(raw_from).unwrap_or_default(),
            read_at_ns,
        },
        None => Entry {
            binary: false,
            body: b"null",
            from: name.unwrap_or_default(),
            read_at_ns,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::envelope;

    #[test]
    fn ticks_fall_on_multiples_of_the_period_in_wall_clock_time() {
        // Loop clock zero at Unix time 1_000_030: ticks every 50 at Unix 1_000_050, …
        let zero = 1_000_030;
        assert_eq!(next_wall_tick_ns(0, 50, zero), 20);
        assert_eq!(next_wall_tick_ns(19, 50, zero), 20);
        assert_eq!(next_wall_tick_ns(20, 50, zero), 70);
        for now in [0, 7, 20, 69, 1234] {
            assert_eq!((next_wall_tick_ns(now, 50, zero) + zero) % 50, 0);
            assert!(next_wall_tick_ns(now, 50, zero) > now);
        }
    }

    #[test]
    fn entries_come_from_stored_frames() {
        let mut body = Vec::new();
        encode::encode_message(&mut body, "room.1", br#"{"x":1}"#, "a.q/0-1-1", 5);
        let frame = envelope::frame(&body, false);
        let e = entry_of(&frame, None, 9);
        assert_eq!(
            (e.binary, e.body, e.from),
            (false, br#"{"x":1}"#.as_slice(), "a.q/0-1-1")
        );
        let big = vec![b'7'; 300];
        body.clear();
        encode::encode_message(&mut body, "room.1", &big, "n", 6);
        let frame = envelope::frame(&body, false);
        assert_eq!(entry_of(&frame, Some("named"), 0).body, big.as_slice());
        assert_eq!(entry_of(&frame, Some("named"), 0).from, "named");
        body.clear();
        encode::encode_binary_message(&mut body, "room.1", 7, &[0, 1, 2]).expect("binary");
        let frame = envelope::frame(&body, true);
        let e = entry_of(&frame, Some("b.q/1-2-3"), 0);
        assert_eq!(
            (e.binary, e.body, e.from),
            (true, [0u8, 1, 2].as_slice(), "b.q/1-2-3")
        );
        let odd = envelope::frame(b"{\"type\":\"other\"}", false);
        assert_eq!(entry_of(&odd, None, 0).body, b"null");
    }
}
