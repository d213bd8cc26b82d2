//! One client-role WebSocket connection (RFC 6455), sans-IO: bytes in, events and bytes out.
//!
//! Owns: the opening handshake (request, §4.1 response checks), the frame decoder in the
//! client role, masking every outgoing frame with a fresh key (§5.3), answering pings (§5.5.2),
//! the close handshake in both directions (§5.5.1, §7), and the bounded send buffer.
//! May not touch: sockets, clocks, reconnect policy, the application protocol.
//!
//! Lifecycle: `Handshaking → Open → Closing → Closed` (`Closing` only after our own close).
//! Every end is reported once, as [`Incoming::Ended`], and leaves the connection `Closed`; the
//! bytes still in the send buffer (a close reply) are the caller's to flush before dropping
//! the socket. After `Closed`, input is discarded and sends are refused.
//!
//! Limits: the response head is at most `RESPONSE_HEAD_BYTES_MAX` bytes; a message at most
//! `message_bytes_max` (larger: close 1009); the send buffer at most `send_bytes_max` of data
//! (a send beyond it is refused), plus one pong and one close frame (a pong is skipped while
//! the buffer is over budget, which §5.5.3 allows: only the latest ping needs an answer).

use std::ops::ControlFlow;

use crate::client::error::SendError;
use crate::client::event::Disconnect;
use crate::client::rng::Rng;
use crate::client::url::WsUrl;
use crate::proto::close::{encode_close_payload, CloseFrame};
use crate::proto::frame::{encode_client_frame, CLIENT_HEADER_BYTES_MAX};
use crate::proto::handshake::{
    accept_key, encode_client_request, generate_key, parse_response_head, RESPONSE_HEAD_BYTES_MAX,
};
use crate::proto::{Decode, Decoder, DecoderLimits, Event, Feed, OpCode, ProtocolError, Role};

/// Send-buffer capacity kept while idle; a buffer that grew past it is freed once empty.
const TRANSMIT_RETAIN_BYTES_MAX: usize = 64 * 1024;

/// Size limits of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Largest message accepted from the server; larger closes with 1009.
    pub message_bytes_max: usize,
    /// Largest amount of queued, unsent data.
    pub send_bytes_max: usize,
}

/// What the connection hands to its owner while decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// The handshake completed; frames follow.
    Open,
    /// A complete text message (valid UTF-8).
    Text(&'a str),
    /// A complete binary message.
    Binary(&'a [u8]),
    /// A ping (already answered).
    Ping,
    /// A pong.
    Pong,
    /// The connection ended; nothing follows.
    Ended(Disconnect),
}

#[derive(Debug)]
enum Phase {
    Handshaking {
        expected_accept: String,
        head: Vec<u8>,
    },
    Open,
    Closing {
        code: u16,
    },
    Closed,
}

/// Outgoing bytes with a read offset, so a partial write does not shift the buffer.
#[derive(Debug, Default)]
struct Transmit {
    buf: Vec<u8>,
    sent: usize,
}

impl Transmit {
    fn pending(&self) -> &[u8] {
        self.buf.get(self.sent..).unwrap_or_default()
    }

    fn advance(&mut self, bytes: usize) {
        self.sent = (self.sent + bytes).min(self.buf.len());
        if self.sent == self.buf.len() {
            self.clear();
        }
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.sent = 0;
        if self.buf.capacity() > TRANSMIT_RETAIN_BYTES_MAX {
            self.buf = Vec::new();
        }
    }

    fn push_frame(&mut self, opcode: OpCode, payload: &[u8], mask: [u8; 4]) {
        // Reclaim the sent prefix before growing, so the buffer stays near its pending size.
        if self.sent > 0 && self.sent * 2 >= self.buf.len() {
            self.buf.drain(..self.sent);
            self.sent = 0;
        }
        encode_client_frame(&mut self.buf, true, opcode, payload, mask);
    }
}

/// One WebSocket connection in the client role.
#[derive(Debug)]
pub struct Connection {
    phase: Phase,
    decoder: Decoder,
    transmit: Transmit,
    rng: Rng,
    limits: ConnectionLimits,
}

impl Connection {
    /// Starts the opening handshake: the request is queued for sending (§4.1).
    pub fn start(url: &WsUrl, mut rng: Rng, limits: ConnectionLimits) -> Self {
        let key = generate_key(rng.nonce16());
        let mut transmit = Transmit::default();
        encode_client_request(
            &mut transmit.buf,
            &url.host_header,
            &url.path_and_query,
            &key,
            None,
            &[],
        );
        let decoder_limits = DecoderLimits {
            message_bytes_max: limits.message_bytes_max,
        };
        Self {
            phase: Phase::Handshaking {
                expected_accept: accept_key(&key),
                head: Vec::new(),
            },
            decoder: Decoder::new(Role::Client, decoder_limits),
            transmit,
            rng,
            limits,
        }
    }

    /// Whether the handshake completed and no close was sent or received.
    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open)
    }

    /// Whether the connection ended.
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Bytes waiting to be written to the socket.
    pub fn transmit(&self) -> &[u8] {
        self.transmit.pending()
    }

    /// Marks `bytes` of [`Self::transmit`] as written.
    pub fn advance_transmit(&mut self, bytes: usize) {
        self.transmit.advance(bytes);
    }

    /// Takes the unsent bytes (for a last write before the socket is dropped).
    pub fn take_transmit(&mut self) -> Vec<u8> {
        let pending = self.transmit.pending().to_vec();
        self.transmit.clear();
        pending
    }

    /// Queues one text message.
    pub fn send_text(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.send(OpCode::Text, payload)
    }

    /// Queues one binary message.
    pub fn send_binary(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.send(OpCode::Binary, payload)
    }

    fn send(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), SendError> {
        if !self.is_open() {
            return Err(SendError::NotOpen);
        }
        let after = self.transmit.pending().len() + CLIENT_HEADER_BYTES_MAX + payload.len();
        if after > self.limits.send_bytes_max {
            return Err(SendError::BufferFull);
        }
        self.transmit
            .push_frame(opcode, payload, self.rng.mask_key());
        Ok(())
    }

    /// Starts our close handshake with `code` (§5.5.1). Returns whether a close frame was
    /// queued; before the handshake completes there is nothing to close but the socket.
    pub fn close(&mut self, code: u16) -> bool {
        match self.phase {
            Phase::Open => {
                let mut payload = Vec::with_capacity(2);
                encode_close_payload(&mut payload, code, "");
                self.transmit
                    .push_frame(OpCode::Close, &payload, self.rng.mask_key());
                self.phase = Phase::Closing { code };
                true
            }
            Phase::Handshaking { .. } => {
                self.abandon();
                false
            }
            Phase::Closing { .. } | Phase::Closed => false,
        }
    }

    /// Drops the connection without a close handshake (dead peer): nothing more is sent.
    pub fn abandon(&mut self) {
        self.phase = Phase::Closed;
        self.transmit.clear();
    }

    /// Consumes input from the socket and reports what it carried, in order. Returns the
    /// number of bytes consumed: less than `input.len()` only when `on_incoming` returned
    /// `Break` (the rest is undecoded and must be passed again).
    pub fn handle_bytes<F>(&mut self, input: &mut [u8], mut on_incoming: F) -> usize
    where
        F: FnMut(Incoming<'_>) -> ControlFlow<()>,
    {
        match self.phase {
            Phase::Handshaking { .. } => self.handle_handshake(input, &mut on_incoming),
            Phase::Open | Phase::Closing { .. } => self.handle_frames(input, &mut on_incoming),
            Phase::Closed => input.len(),
        }
    }

    fn handle_handshake<F>(&mut self, input: &mut [u8], on_incoming: &mut F) -> usize
    where
        F: FnMut(Incoming<'_>) -> ControlFlow<()>,
    {
        let Phase::Handshaking {
            expected_accept,
            head,
        } = &mut self.phase
        else {
            return 0;
        };
        let head_before = head.len();
        // One byte over the limit lets the parser report `HeadTooLarge` instead of waiting.
        let room = (RESPONSE_HEAD_BYTES_MAX + 1).saturating_sub(head_before);
        let copied = input.len().min(room);
        head.extend_from_slice(input.get(..copied).unwrap_or_default());
        let parsed = parse_response_head(head, expected_accept).map(|decode| match decode {
            Decode::Complete(_, head_len) => Some(head_len),
            Decode::Partial => None,
        });
        match parsed {
            Ok(None) => copied,
            Ok(Some(head_len)) => {
                // The head ends inside this input, after the bytes buffered before it.
                let used = head_len - head_before;
                self.phase = Phase::Open;
                if on_incoming(Incoming::Open).is_break() {
                    return used;
                }
                let rest = input.get_mut(used..).unwrap_or_default();
                used + self.handle_frames(rest, on_incoming)
            }
            Err(error) => {
                self.abandon();
                let _ = on_incoming(Incoming::Ended(Disconnect::HandshakeRejected(error)));
                input.len()
            }
        }
    }

    fn handle_frames<F>(&mut self, input: &mut [u8], on_incoming: &mut F) -> usize
    where
        F: FnMut(Incoming<'_>) -> ControlFlow<()>,
    {
        let Self {
            phase,
            decoder,
            transmit,
            rng,
            limits,
        } = self;
        let mut ended = None;
        let result = decoder.feed(input, |event| match event {
            Event::Text(bytes) => match simdutf8::basic::from_utf8(bytes) {
                Ok(text) => on_incoming(Incoming::Text(text)),
                // The decoder validated it (§8.1); unreachable, and harmless if reached.
                Err(_) => ControlFlow::Continue(()),
            },
            Event::Binary(bytes) => on_incoming(Incoming::Binary(bytes)),
            Event::Ping(payload) => {
                if transmit.pending().len() <= limits.send_bytes_max {
                    transmit.push_frame(OpCode::Pong, payload, rng.mask_key());
                }
                on_incoming(Incoming::Ping)
            }
            Event::Pong(_) => on_incoming(Incoming::Pong),
            Event::Close(frame) => {
                ended = Some(close_received(phase, transmit, rng, frame));
                ControlFlow::Break(())
            }
            // The client offers no extension, so its decoder never allows RSV1: unreachable.
            Event::CompressedText(_) | Event::CompressedBinary(_) => ControlFlow::Continue(()),
        });
        match (result, ended) {
            (Ok(_), Some(disconnect)) => {
                let _ = on_incoming(Incoming::Ended(disconnect));
                input.len()
            }
            (Ok(Feed::Drained), None) => input.len(),
            (Ok(Feed::Stopped { consumed_bytes }), None) => consumed_bytes,
            (Err(error), _) => {
                self.fail(error);
                let _ = on_incoming(Incoming::Ended(Disconnect::ProtocolViolation(error)));
                input.len()
            }
        }
    }

    /// §7.1.7: fail the connection, sending the error's close code unless we already sent a
    /// close frame.
    fn fail(&mut self, error: ProtocolError) {
        if matches!(self.phase, Phase::Open) {
            let mut payload = Vec::with_capacity(2);
            encode_close_payload(&mut payload, error.close_code(), "");
            let mask = self.rng.mask_key();
            self.transmit.push_frame(OpCode::Close, &payload, mask);
        }
        self.phase = Phase::Closed;
    }
}

/// A close frame arrived: the end of our close handshake, or the server's close, which we
/// echo with its status code (§5.5.1).
fn close_received(
    phase: &mut Phase,
    transmit: &mut Transmit,
    rng: &mut Rng,
    frame: Option<CloseFrame<'_>>,
) -> Disconnect {
    let previous = std::mem::replace(phase, Phase::Closed);
    if let Phase::Closing { code } = previous {
        return Disconnect::ClosedByUser { code };
    }
    let mut payload = Vec::with_capacity(2);
    if let Some(frame) = frame {
        encode_close_payload(&mut payload, frame.code, "");
    }
    transmit.push_frame(OpCode::Close, &payload, rng.mask_key());
    Disconnect::ServerClosed {
        code: frame.map(|f| f.code),
        reason: frame.map(|f| f.reason.to_owned()).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests;
