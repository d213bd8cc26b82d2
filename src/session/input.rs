//! Client frames in, one at a time: the session decodes, answers what RFC 6455 makes it answer
//! (pongs, the close handshake, protocol errors) and hands the loop each data message.
//!
//! Pull, not push: `read_frame` decodes up to the end of the next complete frame and returns
//! what it was, so the loop can act on a message with its whole state (other connections, the
//! pub/sub index) while the session is not borrowed. Frames are processed strictly in order:
//! the replies earned by the frames before a bad one are queued before the close (§7.1.7).
//!
//! Zero-copy: a message that arrived as one frame is returned as a range of the caller's input
//! (unmasked in place); only a fragmented message, already reassembled by the decoder, is
//! copied once more into the caller's `assembled` buffer.

use std::ops::{ControlFlow, Range};

use crate::proto::close::CloseFrame;
use crate::proto::decoder::{Event, Feed};
use crate::proto::frame::OpCode;
use crate::proto::ProtocolError;

use super::{CloseStarted, PongQueued, Session, Timeouts};

/// Where a data message's payload is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Span {
    /// In the input passed to `read_frame`, at these offsets (the single-frame fast path).
    Input(Range<usize>),
    /// In the `assembled` buffer passed to `read_frame` (a fragmented message).
    Assembled,
}

/// One frame's outcome, for the loop to count and act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A complete data message for the endpoint (relay commands or echo). `compressed`: RSV1
    /// was set (permessage-deflate), the payload is still deflated.
    Message {
        /// `Text` or `Binary`.
        opcode: OpCode,
        /// Deflated (RFC 7692): inflate before use.
        compressed: bool,
        /// Where the payload is.
        span: Span,
    },
    /// A data frame after our close frame: not processed (§5.5.1).
    Ignored,
    /// A ping; its pong's fate (`Full`: write what is queued, then `retry_pong`).
    Ping(PongQueued),
    /// A pong; the heartbeat round trip when our ping was out.
    Pong {
        /// Nanoseconds since our ping, if one was outstanding.
        rtt_ns: Option<u64>,
    },
    /// The peer's close frame (its status code, `None` without one), and our answer if queued.
    /// Nothing after it is decoded.
    Close {
        /// The peer's status code.
        code: Option<u16>,
        /// Our close frame, when this queued it.
        started: Option<CloseStarted>,
    },
}

/// What `read_frame` did with the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadStep {
    /// A frame ended `consumed` bytes into the input; decode the rest with another call.
    Frame {
        /// Input bytes up to the end of this frame.
        consumed: usize,
        /// What it was.
        received: Received,
    },
    /// All input was decoded or buffered; no complete frame is left in it.
    Drained,
    /// The input broke a framing rule (§7.1.7). The loop first finishes acting on the messages
    /// before it (their publishes, their replies), then fails the connection with `fail`.
    Failed(ProtocolError),
}

/// A control frame's payload copied out of the decoder (at most 125 bytes, §5.5).
enum Control {
    Ping([u8; 125], u8),
    Pong,
    Close(Option<u16>),
}

/// The first event of a feed, owned or as an offset, so that the decoder borrow ends.
enum Captured {
    Data(OpCode, bool, Span),
    Control(Control),
}

impl Session {
    /// Decodes `input` up to the end of the next complete frame and handles it: a data message
    /// is returned for the loop; a ping is answered, a pong ends the heartbeat round trip, a
    /// close frame is answered (§5.5.1); a framing violation is returned (§7.1.7).
    pub fn read_frame(
        &mut self,
        now_ns: u64,
        input: &mut [u8],
        assembled: &mut Vec<u8>,
        t: &Timeouts,
    ) -> ReadStep {
        let base = input.as_ptr() as usize;
        let len = input.len();
        let mut captured = None;
        let result = self.decoder.feed(input, |event| {
            captured = Some(capture(event, base, len, assembled));
            ControlFlow::Break(())
        });
        let consumed = match result {
            Ok(Feed::Stopped { consumed_bytes }) => consumed_bytes,
            Ok(Feed::Drained) => return ReadStep::Drained,
            Err(error) => return ReadStep::Failed(error),
        };
        let received = match captured {
            Some(captured) => self.on_captured(now_ns, captured, t),
            None => return ReadStep::Drained,
        };
        ReadStep::Frame { consumed, received }
    }

    fn on_captured(&mut self, now_ns: u64, captured: Captured, t: &Timeouts) -> Received {
        match captured {
            Captured::Control(Control::Close(code)) => {
                let frame = code.map(|code| CloseFrame { code, reason: "" });
                let started = self.on_close_frame(now_ns, frame, t);
                Received::Close { code, started }
            }
            Captured::Control(Control::Pong) => Received::Pong {
                rtt_ns: self.on_pong(now_ns),
            },
            // §5.5.1: after our close frame, data (and pings) are no longer processed.
            _ if !self.is_open() => Received::Ignored,
            Captured::Control(Control::Ping(buf, n)) => {
                Received::Ping(self.queue_pong(&buf[..usize::from(n)]))
            }
            Captured::Data(opcode, compressed, span) => Received::Message {
                opcode,
                compressed,
                span,
            },
        }
    }
}

/// Copies what the loop needs out of a decoder event: a control payload by value, a data
/// payload as its offsets in the input or, when the decoder reassembled it, into `assembled`.
fn capture(event: Event<'_>, base: usize, len: usize, assembled: &mut Vec<u8>) -> Captured {
    let mut data = |opcode, compressed, payload: &[u8]| {
        let start = (payload.as_ptr() as usize).wrapping_sub(base);
        let span = match start <= len && payload.len() <= len - start {
            true => Span::Input(start..start + payload.len()),
            false => {
                assembled.clear();
                assembled.extend_from_slice(payload);
                Span::Assembled
            }
        };
        Captured::Data(opcode, compressed, span)
    };
    match event {
        Event::Text(p) => data(OpCode::Text, false, p),
        Event::Binary(p) => data(OpCode::Binary, false, p),
        Event::CompressedText(p) => data(OpCode::Text, true, p),
        Event::CompressedBinary(p) => data(OpCode::Binary, true, p),
        Event::Ping(p) => {
            let mut buf = [0; 125];
            let n = p.len().min(buf.len());
            buf[..n].copy_from_slice(&p[..n]);
            Captured::Control(Control::Ping(buf, n as u8))
        }
        Event::Pong(_) => Captured::Control(Control::Pong),
        Event::Close(frame) => Captured::Control(Control::Close(frame.map(|f| f.code))),
    }
}

#[cfg(test)]
mod tests;
