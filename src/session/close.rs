//! The close handshake (RFC 6455 §5.5.1, §7.1) and the lingering close after it.

use crate::proto::close::CloseFrame;
use crate::proto::frame::{OpCode, PreparedFrame};
use crate::proto::ProtocolError;

use super::{CloseReason, Phase, Session, Timeouts};

/// Whether the peer's close frame is still awaited while CLOSING.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerClose {
    /// We sent ours first; the peer's answer is awaited (until the close deadline).
    Awaited,
    /// The peer's close frame was received (ours echoes it).
    Received,
    /// The connection failed (a protocol error, a ping flood): no answer is awaited, TCP
    /// closes once our close frame is written (§7.1.7 "Fail the WebSocket Connection").
    NotAwaited,
}

/// What happens to queued frames when a close starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseHow {
    /// Drop queued deliveries and replies: the connection failed or the peer is leaving.
    DiscardQueued,
    /// Write everything queued first (graceful shutdown, or the replies earned by the frames
    /// before a bad one).
    AfterQueued,
}

/// A close frame was queued: what the loop counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseStarted {
    /// Queued frames dropped to make way for it (`DiscardQueued`).
    pub dropped: usize,
    /// The status code sent, if any.
    pub code: Option<u16>,
}

impl Session {
    /// Queues our close frame and enters CLOSING. `code: None` sends an empty close payload.
    /// Returns `None` when a close is already under way or the connection is not a WebSocket.
    pub fn start_close(
        &mut self,
        now_ns: u64,
        close: (Option<u16>, &str),
        how: CloseHow,
        peer: PeerClose,
        t: &Timeouts,
    ) -> Option<CloseStarted> {
        let (code, reason) = close;
        if self.outbox.is_closing() || !matches!(self.phase, Phase::Open | Phase::Closing { .. }) {
            return None;
        }
        let mut payload = Vec::with_capacity(2 + reason.len());
        if let Some(code) = code {
            crate::proto::close::encode_close_payload(&mut payload, code, reason);
        }
        let frame = PreparedFrame::new(OpCode::Close, &payload).into_bytes();
        let dropped = match how {
            CloseHow::DiscardQueued => self.outbox.close_now(frame),
            CloseHow::AfterQueued => {
                self.outbox.close_after_queued(frame);
                0
            }
        };
        self.phase = Phase::Closing {
            deadline_ns: now_ns + t.close_ns,
            peer,
        };
        Some(CloseStarted { dropped, code })
    }

    /// The peer's close frame (§5.5.1): echo its status code unless we already sent ours (none
    /// received → none sent). TCP closes once ours is written (the server closes first, §7.1.1).
    pub fn on_close_frame(
        &mut self,
        now_ns: u64,
        frame: Option<CloseFrame<'_>>,
        t: &Timeouts,
    ) -> Option<CloseStarted> {
        self.set_close_reason(CloseReason::ClientClose);
        match self.phase {
            Phase::Open => {
                let echo = frame.map(|f| f.code);
                let how = CloseHow::DiscardQueued;
                self.start_close(now_ns, (echo, ""), how, PeerClose::Received, t)
            }
            Phase::Closing { deadline_ns, .. } => {
                self.phase = Phase::Closing {
                    deadline_ns,
                    peer: PeerClose::Received,
                };
                None
            }
            _ => None,
        }
    }

    /// A framing violation (§7.1.7): close with the rule's code (1002, 1007 or 1009) after
    /// what the frames before the bad one earned, awaiting no answer.
    pub fn fail(&mut self, now_ns: u64, e: &ProtocolError, t: &Timeouts) -> Option<CloseStarted> {
        self.set_close_reason(match e {
            ProtocolError::InvalidUtf8 => CloseReason::InvalidUtf8,
            ProtocolError::MessageTooBig => CloseReason::MessageTooBig,
            _ => CloseReason::ProtocolError,
        });
        if let Phase::Closing { deadline_ns, .. } = self.phase {
            // Our close is out already: stop waiting for the peer's.
            self.phase = Phase::Closing {
                deadline_ns,
                peer: PeerClose::NotAwaited,
            };
            return None;
        }
        let close = (Some(e.close_code()), "");
        self.start_close(
            now_ns,
            close,
            CloseHow::AfterQueued,
            PeerClose::NotAwaited,
            t,
        )
    }

    /// The outbox just drained: true when the connection's last bytes are out (an HTTP
    /// response, or our close frame with the peer's already received or not awaited), so the
    /// loop shuts its write side and lingers.
    pub fn finished_writing(&self) -> bool {
        match self.phase {
            Phase::Responding { .. } => true,
            Phase::Closing { peer, .. } => {
                self.outbox.close_written() && peer != PeerClose::Awaited
            }
            _ => false,
        }
    }

    /// Our write side is shut: read (and discard) until the peer's FIN, at most until the close
    /// timeout, so that unread input does not make the kernel reset the connection and lose
    /// what we sent.
    pub fn linger(&mut self, now_ns: u64, t: &Timeouts) {
        self.phase = Phase::Lingering {
            deadline_ns: now_ns + t.close_ns,
        };
    }
}
