//! Read phase: move bytes from readable sockets into the connection's state machine.
//!
//! Edge-triggered discipline: a socket is read until `WouldBlock`, or until a short read (the
//! kernel's receive queue was emptied, so a later arrival raises a new edge: this saves one
//! `recvfrom` returning EAGAIN per event), or until the per-turn budget
//! `READ_BYTES_PER_TURN_MAX` is spent, in which case the connection waits in `pending_reads`
//! and the next poll does not sleep.

use std::io::{self, Read};
use std::ops::ControlFlow;

use crate::conn_id::ConnId;
use crate::metrics::Counter;
use crate::proto::close::code;
use crate::proto::frame::OpCode;
use crate::runtime::conn::{CloseReason, Endpoint, Phase};
use crate::runtime::event_loop::{EventLoop, READ_BYTES_PER_TURN_MAX};
use crate::session::{AfterEof, ReadStep, Received, Span};

/// A reassembled (fragmented) message buffer larger than this is freed after use rather than
/// kept for the next one: one huge message must not pin its memory for the loop's lifetime.
const ASSEMBLED_RETAIN_BYTES_MAX: usize = 64 * 1024;

/// What one `read` call gave.
pub(super) enum ReadOutcome {
    /// Bytes from the socket; fewer than asked for means the socket is drained.
    Bytes(usize),
    /// Plaintext from a TLS session: read on until `WouldBlock` whatever its length (records
    /// may still be buffered in rustls or in the socket).
    More(usize),
    Eof,
    WouldBlock,
    Failed,
}

impl EventLoop {
    /// Reads connections whose budget ran out last turn.
    pub(super) fn read_pending(&mut self) {
        let pending = std::mem::take(&mut self.work.pending_reads);
        for id in pending {
            // To the end: a FIN may have been reported with the event that started this read.
            self.read_conn_to_end(id);
        }
    }

    /// Reads `id` until drained, closed, or out of budget.
    pub(super) fn read_conn(&mut self, id: ConnId) {
        self.read_until(id, false);
    }

    /// Reads `id` until EOF or `WouldBlock` (no short-read shortcut): the peer's FIN is known
    /// to be pending.
    pub(super) fn read_conn_to_end(&mut self, id: ConnId) {
        self.read_until(id, true);
    }

    fn read_until(&mut self, id: ConnId, to_end: bool) {
        let mut budget = READ_BYTES_PER_TURN_MAX;
        loop {
            if !self.conn_mut(id).is_some_and(|c| c.session.reads_allowed()) {
                return;
            }
            match self.read_once(id) {
                ReadOutcome::Bytes(n) => {
                    self.on_bytes(id, n);
                    if n < self.scratch.recv_buf.len() && !to_end {
                        return;
                    }
                    budget = budget.saturating_sub(n);
                    if budget == 0 {
                        self.work.pending_reads.push(id);
                        return;
                    }
                }
                ReadOutcome::More(n) => {
                    self.on_bytes(id, n);
                    budget = budget.saturating_sub(n);
                    if budget == 0 {
                        self.work.pending_reads.push(id);
                        return;
                    }
                }
                ReadOutcome::WouldBlock => return,
                ReadOutcome::Eof => return self.on_eof(id),
                ReadOutcome::Failed => return self.on_io_error(id),
            }
        }
    }

    fn read_once(&mut self, id: ConnId) -> ReadOutcome {
        let Some(conn) = self.conns.get_mut(id) else {
            return ReadOutcome::WouldBlock;
        };
        if conn.tls.is_some() {
            return self.read_tls_once(id);
        }
        loop {
            return match conn.stream.read(&mut self.scratch.recv_buf) {
                Ok(0) => ReadOutcome::Eof,
                Ok(n) => {
                    conn.session.on_bytes_received(self.now_ns);
                    self.metrics.inc(Counter::SocketReads);
                    self.metrics.add(Counter::ReceivedBytes, n as u64);
                    ReadOutcome::Bytes(n)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadOutcome::WouldBlock,
                Err(_) => ReadOutcome::Failed,
            };
        }
    }

    /// Hands `recv_buf[..n]` to the connection's current phase.
    fn on_bytes(&mut self, id: ConnId, n: usize) {
        let Some(phase) = self.conn_mut(id).map(|c| c.session.phase()) else {
            return;
        };
        match phase {
            Phase::Handshaking { .. } => self.on_handshake_bytes(id, n),
            Phase::Open | Phase::Closing { .. } => self.decode(id, 0, n),
            // Bytes after our response or close are read only to reach the peer's FIN.
            Phase::Responding { .. } | Phase::Lingering { .. } | Phase::Closed => {}
        }
    }

    /// Decodes `recv_buf[from..to]` as client frames, one frame per step: the session answers
    /// pings and the close handshake itself and returns each data message, which the loop acts
    /// on with its whole state. The buffers are moved out of `self` for the call.
    pub(super) fn decode(&mut self, id: ConnId, from: usize, to: usize) {
        let mut buf = std::mem::take(&mut self.scratch.recv_buf);
        let mut assembled = std::mem::take(&mut self.scratch.assembled);
        let mut at = from;
        let mut failed = None;
        while at < to {
            let (now_ns, t) = (self.now_ns, self.env.timeouts);
            let (Some(conn), Some(input)) = (self.conns.get_mut(id), buf.get_mut(at..to)) else {
                break;
            };
            let (consumed, received) =
                match conn.session.read_frame(now_ns, input, &mut assembled, &t) {
                    ReadStep::Frame { consumed, received } => (consumed, received),
                    ReadStep::Drained => break,
                    ReadStep::Failed(error) => {
                        failed = Some(error);
                        break;
                    }
                };
            let payload = match &received {
                Received::Message {
                    span: Span::Input(r),
                    ..
                } => buf.get(at + r.start..at + r.end),
                Received::Message {
                    span: Span::Assembled,
                    ..
                } => Some(&assembled[..]),
                _ => None,
            };
            at += consumed;
            if self
                .on_received(id, received, payload.unwrap_or_default())
                .is_break()
            {
                break;
            }
        }
        self.scratch.recv_buf = buf;
        assembled.clear();
        if assembled.capacity() <= ASSEMBLED_RETAIN_BYTES_MAX {
            self.scratch.assembled = assembled;
        }
        // The publishes of this input are numbered and fanned out as runs, now: before the
        // close of a protocol error, so that what the frames before it earned goes out first.
        self.flush_publishes();
        if let Some(error) = failed {
            self.on_protocol_error(id, error);
        }
    }

    /// One frame as the session handled it: a data message is acted on (echo, command,
    /// publish), the rest is counted and its output scheduled.
    fn on_received(&mut self, id: ConnId, received: Received, payload: &[u8]) -> ControlFlow<()> {
        match received {
            Received::Message { .. } if !self.take_message_token(id) => {}
            Received::Message {
                opcode,
                compressed: true,
                ..
            } => return self.inflate_message(id, payload, opcode),
            Received::Message { opcode, .. } => self.on_data_message(id, opcode, payload),
            Received::Ignored => {}
            Received::Ping(queued) => {
                self.metrics.inc(Counter::FramesReceivedPing);
                self.on_pong_queued(id, queued);
            }
            Received::Pong { rtt_ns } => {
                self.metrics.inc(Counter::FramesReceivedPong);
                self.on_heartbeat_answered(id, rtt_ns);
            }
            Received::Close { code, started } => {
                self.metrics.inc(Counter::FramesReceivedClose);
                self.metrics.close_received(code.unwrap_or(code::NO_STATUS));
                self.mark_dirty(id);
                self.close_started(id, started);
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }

    /// A data message that arrived compressed, once inflated (permessage-deflate).
    pub(super) fn on_data_message(&mut self, id: ConnId, opcode: OpCode, payload: &[u8]) {
        let endpoint = self.conn_mut(id).map(|c| c.session.endpoint);
        let binary = opcode == OpCode::Binary;
        self.metrics.inc(match binary {
            true => Counter::FramesReceivedBinary,
            false => Counter::FramesReceivedText,
        });
        match endpoint {
            Some(Endpoint::Echo) => self.echo(id, opcode, payload),
            _ => self.on_command(id, opcode, payload),
        }
    }

    /// TCP FIN from the peer. An HTTP response still being written is finished first (the
    /// client may half-close after its request); anything else ends now.
    fn on_eof(&mut self, id: ConnId) {
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        if conn.session.on_eof() == AfterEof::Close {
            self.mark_closed(id);
        }
    }

    fn on_io_error(&mut self, id: ConnId) {
        if let Some(conn) = self.conn_mut(id) {
            conn.set_close_reason(CloseReason::IoError);
        }
        self.mark_closed(id);
    }
}
