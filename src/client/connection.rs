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
use crate::proto::deflate::{Deflater, InflateError, Inflater, RSV1_BIT};
use crate::proto::extensions::{self, DeflateParams, WINDOW_BITS_MAX};
use crate::proto::frame::{encode_client_frame, CLIENT_HEADER_BYTES_MAX};
use crate::proto::handshake::{
    accept_key, encode_client_request, generate_key, parse_response_head,
    parse_response_head_offered, RESPONSE_HEAD_BYTES_MAX,
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
    /// Offer permessage-deflate (RFC 7692); the server may decline.
    pub deflate: bool,
}

/// Messages shorter than this are sent uncompressed even with permessage-deflate.
pub const DEFLATE_MIN_BYTES: usize = 128;
/// Capacity of the inflate buffer kept between messages.
const INFLATE_RETAIN_BYTES_MAX: usize = 64 * 1024;

/// permessage-deflate as agreed with the server (RFC 7692).
#[derive(Debug)]
struct ClientDeflate {
    params: DeflateParams,
    /// Our context: kept across messages unless the server asked `client_no_context_takeover`.
    deflater: Deflater,
    /// The server's context: reset per message when it announced `server_no_context_takeover`.
    inflater: Inflater,
    /// The inflated message being handed out.
    out: Vec<u8>,
    /// Compressed bytes of the message being sent.
    scratch: Vec<u8>,
}

impl ClientDeflate {
    fn new(params: DeflateParams) -> Box<Self> {
        Box::new(Self {
            params,
            deflater: Deflater::new(!params.client_no_context_takeover),
            inflater: Inflater::new(),
            out: Vec::new(),
            scratch: Vec::new(),
        })
    }

    /// Inflates one message into `out` (1009 beyond `limit`, 1007 for a bad stream).
    fn inflate(&mut self, payload: &[u8], limit: usize) -> Result<&[u8], ProtocolError> {
        if self.params.server_no_context_takeover {
            self.inflater.reset();
        }
        if self.out.capacity() > INFLATE_RETAIN_BYTES_MAX {
            self.out = Vec::new();
        }
        match self.inflater.inflate(payload, limit, &mut self.out) {
            Ok(()) => Ok(&self.out),
            Err(InflateError::TooBig) => Err(ProtocolError::MessageTooBig),
            Err(InflateError::BadData) => Err(ProtocolError::InvalidCompressedData),
        }
    }
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

    /// A frame whose payload is compressed: RSV1 set (RFC 7692 §6).
    fn push_compressed_frame(&mut self, opcode: OpCode, payload: &[u8], mask: [u8; 4]) {
        self.push_frame(opcode, payload, mask);
        // The frame just pushed is the buffer's tail.
        let frame_start = self.buf.len().saturating_sub(frame_len(payload.len()));
        if let Some(b0) = self.buf.get_mut(frame_start) {
            *b0 |= RSV1_BIT;
        }
    }
}

/// Length of a masked client frame with `payload_len` bytes of payload (§5.2).
fn frame_len(payload_len: usize) -> usize {
    let extended = match payload_len {
        0..=125 => 0,
        126..=0xffff => 2,
        _ => 8,
    };
    2 + extended + 4 + payload_len
}

/// One WebSocket connection in the client role.
#[derive(Debug)]
pub struct Connection {
    phase: Phase,
    decoder: Decoder,
    transmit: Transmit,
    rng: Rng,
    limits: ConnectionLimits,
    /// permessage-deflate, once the server accepted our offer.
    deflate: Option<Box<ClientDeflate>>,
}

impl Connection {
    /// Starts the opening handshake: the request is queued for sending (§4.1).
    pub fn start(url: &WsUrl, mut rng: Rng, limits: ConnectionLimits) -> Self {
        let key = generate_key(rng.nonce16());
        let mut transmit = Transmit::default();
        let offer = extensions::client_offer(false);
        let extra: &[(&str, &str)] = match limits.deflate {
            true => &[("Sec-WebSocket-Extensions", offer.as_str())],
            false => &[],
        };
        encode_client_request(
            &mut transmit.buf,
            &url.host_header,
            &url.path_and_query,
            &key,
            None,
            extra,
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
            deflate: None,
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
        let mask = self.rng.mask_key();
        match self.deflate.as_deref_mut() {
            Some(d) if payload.len() >= DEFLATE_MIN_BYTES => {
                let bits = d.params.client_max_window_bits.unwrap_or(WINDOW_BITS_MAX);
                let mut compressed = std::mem::take(&mut d.scratch);
                compressed.clear();
                d.deflater.compress(payload, bits, &mut compressed);
                self.transmit
                    .push_compressed_frame(opcode, &compressed, mask);
                d.scratch = compressed;
            }
            _ => self.transmit.push_frame(opcode, payload, mask),
        }
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
        let offered = self.limits.deflate;
        let parsed = match offered {
            true => parse_response_head_offered(head, expected_accept),
            false => parse_response_head(head, expected_accept),
        }
        .and_then(|decode| match decode {
            Decode::Complete(response, head_len) => {
                Ok(Some((head_len, agreed_deflate(&response)?)))
            }
            Decode::Partial => Ok(None),
        });
        match parsed {
            Ok(None) => copied,
            Ok(Some((head_len, agreed))) => {
                // The head ends inside this input, after the bytes buffered before it.
                let used = head_len - head_before;
                self.phase = Phase::Open;
                if let Some(params) = agreed {
                    self.decoder.allow_compressed();
                    self.deflate = Some(ClientDeflate::new(params));
                }
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
            deflate,
        } = self;
        let mut ended = None;
        let mut failed = None;
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
            // The decoder allows RSV1 only once permessage-deflate was agreed.
            Event::CompressedText(bytes) | Event::CompressedBinary(bytes) => {
                let binary = matches!(event, Event::CompressedBinary(_));
                match inflated(deflate, bytes, binary, limits.message_bytes_max) {
                    Ok(incoming) => on_incoming(incoming),
                    Err(e) => {
                        failed = Some(e);
                        ControlFlow::Break(())
                    }
                }
            }
        });
        match (failed.map_or(result, Err), ended) {
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

/// A compressed message, inflated (1009 beyond `limit`, 1007 for a bad stream or bad UTF-8).
fn inflated<'d>(
    deflate: &'d mut Option<Box<ClientDeflate>>,
    bytes: &[u8],
    binary: bool,
    limit: usize,
) -> Result<Incoming<'d>, ProtocolError> {
    let d = deflate
        .as_deref_mut()
        .ok_or(ProtocolError::ReservedBitsSet)?;
    let message = d.inflate(bytes, limit)?;
    match binary {
        true => Ok(Incoming::Binary(message)),
        false => simdutf8::basic::from_utf8(message)
            .map(Incoming::Text)
            .map_err(|_| ProtocolError::InvalidUtf8),
    }
}

/// permessage-deflate as the server answered our offer (RFC 7692 §5: an answer we cannot
/// accept fails the handshake); `None` when it did not answer.
fn agreed_deflate(
    response: &crate::proto::handshake::ResponseHead<'_>,
) -> Result<Option<DeflateParams>, crate::proto::ClientHandshakeError> {
    if response.extensions.is_empty() {
        return Ok(None);
    }
    extensions::accept_client(response.extensions.as_slice())
        .map(Some)
        .map_err(|_| crate::proto::ClientHandshakeError::UnexpectedExtension)
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
