//! Flush phase: write every dirty connection's outbox with vectored writes, and move
//! connections whose last bytes are out to their next phase.
//!
//! Each `sendmsg` gathers up to `IO_SLICES_MAX` queued frames (uWS's "cork"); a connection is
//! written until its outbox is empty or the socket is full, so one turn may take several
//! `sendmsg` calls for a connection with more queued than one call gathers. A short write
//! means the socket buffer is full: the connection registers for WRITABLE and is flushed again
//! when the kernel says so. WRITABLE interest is held only while
//! the outbox is not empty, so idle connections cost no wakeups.

use std::io::{self, IoSlice};
use std::net::Shutdown;

use mio::{Interest, Token};

use crate::clock::Clock;
use crate::conn_id::ConnId;
use crate::metrics::{Counter, LoopMetrics};
use crate::outbox::{Outbox, SendStatus, IO_SLICES_MAX};
use crate::runtime::conn::{CloseReason, Conn, Phase};

use crate::runtime::event_loop::EventLoop;
use crate::runtime::tls::write_outbox_tls;

/// What writing one connection ended with.
pub(super) enum WriteOutcome {
    /// Everything queued is written.
    Drained,
    /// The socket is full; wait for WRITABLE.
    Blocked,
    /// The socket failed.
    Failed,
}

impl EventLoop {
    /// Flushes every connection marked dirty this turn, including those a flush itself marks
    /// (a close queued while flushing is written in the same turn).
    pub(super) fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.work.dirty);
        while !dirty.is_empty() {
            for &id in &dirty {
                self.flush(id);
            }
            dirty.clear();
            std::mem::swap(&mut dirty, &mut self.work.dirty);
        }
        self.work.dirty = dirty;
    }

    /// Writes `id`'s outbox now, as far as the socket takes it (also called mid-turn when a
    /// budget is full, so that what is queued leaves before more is refused).
    pub(super) fn flush(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        conn.take_dirty();
        if matches!(
            conn.session.phase(),
            Phase::Closed | Phase::Lingering { .. }
        ) {
            return;
        }
        let timed = self.env.config.latency_metrics;
        let mut outcome = write_outbox(conn, &mut self.metrics, timed);
        if matches!(outcome, WriteOutcome::Drained) && conn.session.gaps_untold() {
            // Caught up: tell it now what it missed, not when the next message comes (on a
            // quiet channel that may be minutes away, and its screen would look current).
            if conn.session.queue_pending_gap_notices() == SendStatus::Full {
                return self.close_slow_consumer(id);
            }
            outcome = write_outbox(conn, &mut self.metrics, timed);
        }
        match outcome {
            WriteOutcome::Failed => {
                conn.set_close_reason(CloseReason::IoError);
                self.mark_closed(id);
            }
            WriteOutcome::Blocked => self.want_writable(id, true),
            WriteOutcome::Drained => {
                self.want_writable(id, false);
                self.after_drained(id);
            }
        }
    }

    /// Registers or drops WRITABLE interest when it changes.
    fn want_writable(&mut self, id: ConnId, want: bool) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if conn.flush.is_blocked() == want {
            return;
        }
        let interest = match want {
            true => Interest::READABLE | Interest::WRITABLE,
            false => Interest::READABLE,
        };
        let token = Token(id.to_token_value());
        match self
            .net
            .poll
            .registry()
            .reregister(&mut conn.stream, token, interest)
        {
            Ok(()) => conn.flush = conn.flush.with_blocked(want),
            Err(_) => {
                conn.set_close_reason(CloseReason::IoError);
                self.mark_closed(id);
            }
        }
    }

    /// The outbox is empty: an HTTP response or our close frame may just have gone out.
    fn after_drained(&mut self, id: ConnId) {
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        if conn.session.subscriptions.is_empty() && !conn.has_name() {
            // Nothing will be delivered to it and it never published: don't keep its queue
            // around (100k idle connections must stay cheap). Subscribers and publishers (acks
            // and errors come back on every publish) give theirs back when they go silent.
            conn.session.outbox.release_idle();
        }
        // RFC 6455 §7.1.1: once both close frames were exchanged the server closes TCP first.
        if conn.session.finished_writing() {
            self.linger(id);
        }
    }

    /// Shuts our write side and waits (bounded by the close timeout) for the peer's FIN, so that
    /// unread input does not make the kernel reset the connection and discard what we sent.
    pub(super) fn linger(&mut self, id: ConnId) {
        let (now_ns, t) = (self.now_ns, self.env.timeouts);
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        let peer_fin = conn.session.peer_input_ended();
        if !peer_fin {
            Self::send_close_notify(conn);
        }
        if peer_fin || conn.stream.shutdown(Shutdown::Write).is_err() {
            return self.mark_closed(id);
        }
        conn.session.linger(now_ns, &t);
        self.rearm(id);
    }
}

/// Writes as much of the outbox as the socket takes (through TLS on a TLS connection).
#[inline]
fn write_outbox(conn: &mut Conn, metrics: &mut LoopMetrics, timed: bool) -> WriteOutcome {
    if conn.tls.is_some() {
        return write_outbox_tls(conn, metrics, timed);
    }
    while !conn.session.outbox.is_empty() {
        let mut slices = [IoSlice::new(&[]); IO_SLICES_MAX];
        let n = conn.session.outbox.io_slices(&mut slices);
        let gathered: usize = slices[..n].iter().map(|s| s.len()).sum();
        let written = match send_slices(&conn.stream, &slices[..n]) {
            Ok(0) => return WriteOutcome::Failed,
            Ok(w) => w,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return WriteOutcome::Blocked,
            Err(_) => return WriteOutcome::Failed,
        };
        let written_at_ns = if timed { Clock::now_ns() } else { 0 };
        metrics.inc(Counter::SocketWrites);
        metrics.add(Counter::SentBytes, written as u64);
        account_written(
            &mut conn.session.outbox,
            written,
            metrics,
            timed,
            written_at_ns,
        );
        if written < gathered {
            return WriteOutcome::Blocked;
        }
    }
    WriteOutcome::Drained
}

/// Drops `written` bytes from the outbox, counting the frames it completed and their relay
/// latency (`written_at_ns`, when `timed`).
#[inline]
pub(super) fn account_written(
    outbox: &mut Outbox,
    written: usize,
    metrics: &mut LoopMetrics,
    timed: bool,
    written_at_ns: u64,
) {
    outbox.advance(written, &mut |first_byte, read_at_ns, count| {
        if let Some(c) = Counter::frame_sent(first_byte & 0x0f) {
            metrics.add(c, u64::from(count));
        }
        if timed && read_at_ns != 0 {
            let latency_ns = written_at_ns.saturating_sub(read_at_ns);
            metrics.record_relay_latency_ns_n(latency_ns, u64::from(count));
        }
    });
}

/// One `sendmsg` (`send` for a single slice) with `MSG_NOSIGNAL`: a peer that reset the
/// connection is an `EPIPE` error here, never a SIGPIPE that would kill a process embedding the
/// relay without ignoring the signal (`writev` cannot take flags). Cost: the same as `writev`
/// within noise (loopback_send_cost.py: 5.05-5.40 CPU-µs per 130-byte send, 5.20-5.40 per
/// `writev`; docs/BENCHMARKS.md), almost all of it the kernel's TCP path, not the call.
pub(super) fn send_slices(
    stream: &mio::net::TcpStream,
    slices: &[IoSlice<'_>],
) -> io::Result<usize> {
    let socket = socket2::SockRef::from(stream);
    match slices {
        [one] => socket.send_with_flags(one, libc::MSG_NOSIGNAL),
        _ => socket.send_vectored_with_flags(slices, libc::MSG_NOSIGNAL),
    }
}
