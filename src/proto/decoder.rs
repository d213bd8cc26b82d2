//! Streaming RFC 6455 frame decoder, sans-IO, for the server role and the client role.
//!
//! Owns: per-connection parse state (a partial header of at most 14 bytes, the frame in
//! progress, the reassembly buffer of a fragmented message, the UTF-8 carry of a text message).
//! All of it lives in a box (`Partial`) allocated by the first frame that is split across feeds
//! or fragmented; between frames on the zero-copy path the decoder is a 24-byte handle with no
//! heap (issue 12: an idle connection costs at most 256 bytes).
//! May not touch: sockets, clocks, writing replies (the caller answers pings and closes).
//!
//! Invariants:
//! - Zero-copy fast path: a complete unfragmented frame (data or control) that lies entirely in
//!   the caller's input is unmasked in place and delivered as a slice of that input. Only a
//!   frame split across feeds and fragmented messages are copied into `message`.
//! - `message` holds the data of the message in progress (at most
//!   `DecoderLimits::message_bytes_max`), then, while a control frame split across feeds is
//!   being received, that control frame's payload (at most 125 bytes, §5.5). It is released
//!   when a message completes if its capacity grew beyond `MESSAGE_RETAIN_BYTES_MAX` (with
//!   the whole `Partial` box), and by `release_idle_buffer` when it holds nothing.
//! - Fail fast: every rule is checked on the first byte that can violate it (header bits as
//!   they arrive, the announced length before any payload is buffered, UTF-8 per piece).
//! - After an error the decoder is poisoned: every later feed returns the same error.

use std::ops::ControlFlow;

use crate::proto::close::{parse_close_payload, CloseFrame};
use crate::proto::error::ProtocolError;
use crate::proto::frame::CLIENT_HEADER_BYTES_MAX;
use crate::proto::mask::{apply_mask, apply_mask_check_ascii};
use crate::proto::utf8::{is_ascii, Utf8Validator};

/// Capacity of the reassembly buffer kept between messages; a larger buffer is freed when its
/// message completes, so idle connections hold at most this much.
pub const MESSAGE_RETAIN_BYTES_MAX: usize = 4096;

/// Largest control frame payload (§5.5).
const CONTROL_PAYLOAD_BYTES_MAX: u64 = 125;
/// FIN bit (§5.2).
const FIN_BIT: u8 = 0x80;
/// RSV1-3 bits (§5.2).
const RSV_BITS: u8 = 0x70;
/// RSV1: the "Per-Message Compressed" bit of permessage-deflate (RFC 7692 §6).
const RSV1_BIT: u8 = 0x40;
/// Opcode bits (§5.2).
const OPCODE_BITS: u8 = 0x0F;
/// MASK bit of the second byte (§5.2).
const MASK_BIT: u8 = 0x80;
/// 7-bit payload length bits (§5.2).
const LEN7_BITS: u8 = 0x7F;
/// Bytes of the masking key (§5.3).
const MASK_KEY_BYTES: usize = 4;

/// Which end of the connection this decoder runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Decodes client frames: every frame MUST be masked (§5.1).
    Server,
    /// Decodes server frames: no frame may be masked (§5.1).
    Client,
}

/// Size limits enforced by the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderLimits {
    /// Largest data frame payload and largest reassembled message, in bytes. Exceeding it is
    /// [`ProtocolError::MessageTooBig`], detected from the header before buffering. Control
    /// frames are bounded by §5.5 (125 bytes) instead.
    pub message_bytes_max: usize,
}

/// A decoded message or control frame. Slices borrow the caller's input or the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete text message, already validated as UTF-8 (§8.1).
    Text(&'a [u8]),
    /// A complete binary message.
    Binary(&'a [u8]),
    /// A ping; the caller answers with a pong carrying the same payload (§5.5.2).
    Ping(&'a [u8]),
    /// A pong (§5.5.3).
    Pong(&'a [u8]),
    /// A close frame, `None` without a status code (§5.5.1).
    Close(Option<CloseFrame<'a>>),
    /// A complete compressed text message (RSV1 on its first frame, permessage-deflate
    /// negotiated: [`Decoder::allow_compressed`]), still compressed: the caller inflates it
    /// and validates the UTF-8 (RFC 7692 §6.1).
    CompressedText(&'a [u8]),
    /// A complete compressed binary message, still compressed.
    CompressedBinary(&'a [u8]),
}

/// How a successful [`Decoder::feed`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// All input was decoded or buffered.
    Drained,
    /// The callback returned `Break`; input after `consumed_bytes` was dropped undecoded.
    Stopped {
        /// Input bytes decoded up to and including the frame whose event stopped decoding.
        consumed_bytes: usize,
    },
}

/// Type of the data message in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MessageKind {
    Text,
    Binary,
}

/// Control frame types (§5.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ControlKind {
    Close,
    Ping,
    Pong,
}

/// What a frame carries, with the continuation opcode resolved to its message's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrameKind {
    Data(MessageKind),
    Control(ControlKind),
}

/// A complete, validated frame header.
#[derive(Debug, Clone, Copy)]
struct FrameHeader {
    fin: bool,
    kind: FrameKind,
    /// Whether this data frame starts a message (Text/Binary rather than Continuation).
    starts_message: bool,
    /// RSV1 set on the first frame of a message (permessage-deflate).
    compressed: bool,
    mask: Option<[u8; MASK_KEY_BYTES]>,
    payload_len: u64,
    header_len: usize,
}

/// A frame whose payload is arriving across feeds.
#[derive(Debug, Clone, Copy)]
struct FrameInProgress {
    fin: bool,
    kind: FrameKind,
    /// Key rotated so that index 0 applies to the next payload byte.
    mask: Option<[u8; MASK_KEY_BYTES]>,
    remaining_bytes: u64,
    /// Start of a control frame's payload in `message` (after the data message so far).
    control_start: usize,
}

/// Position within the frame stream.
#[derive(Debug, Clone, Copy)]
enum State {
    /// Between frames; `len` bytes of the next header are buffered.
    Header {
        buf: [u8; CLIENT_HEADER_BYTES_MAX],
        len: u8,
    },
    /// Inside a frame's payload.
    Payload(FrameInProgress),
}

const STATE_IDLE: State = State::Header {
    buf: [0; CLIENT_HEADER_BYTES_MAX],
    len: 0,
};

/// The streaming frame decoder of one connection (16 bytes on 64-bit targets, checked by
/// `tests::idle_decoder_is_two_words`; no allocation until a frame is split across feeds or a
/// message is fragmented).
#[derive(Debug)]
pub struct Decoder {
    /// State between feeds; `None` while no frame or message is in progress and nothing is
    /// retained (the zero-copy path never allocates it).
    partial: Option<Box<Partial>>,
    /// `DecoderLimits::message_bytes_max`, held in 32 bits (an idle decoder is 16 bytes;
    /// limits beyond 4 GiB are taken as 4 GiB).
    message_bytes_max: u32,
    role: Role,
    /// permessage-deflate was negotiated: RSV1 may be set on a message's first frame.
    compression: bool,
    /// Set by the first error; returned by every later feed.
    poisoned: Option<ProtocolError>,
}

/// What a frame split across feeds or a fragmented message needs kept between feeds.
#[derive(Debug)]
struct Partial {
    /// Reassembly buffer; see the module invariants.
    message: Vec<u8>,
    state: State,
    /// Type of the data message in progress (fragmented, or a single frame split across
    /// feeds); `None` between messages.
    message_kind: Option<MessageKind>,
    utf8: Utf8Validator,
    /// The message in progress is compressed (its bytes are not UTF-8 checked here).
    message_compressed: bool,
}

impl Partial {
    /// A fresh box (out of line: once per idle-to-buffering transition).
    #[cold]
    #[inline(never)]
    fn boxed() -> Box<Partial> {
        Box::new(Partial {
            message: Vec::new(),
            state: STATE_IDLE,
            message_kind: None,
            utf8: Utf8Validator::new(),
            message_compressed: false,
        })
    }

    /// True when nothing is in progress: no header bytes, no payload, no message.
    fn is_between_messages(&self) -> bool {
        matches!(self.state, State::Header { len: 0, .. }) && self.message_kind.is_none()
    }
}

impl Decoder {
    /// A decoder at the start of a frame stream.
    pub fn new(role: Role, limits: DecoderLimits) -> Self {
        Self {
            partial: None,
            message_bytes_max: u32::try_from(limits.message_bytes_max).unwrap_or(u32::MAX),
            role,
            compression: false,
            poisoned: None,
        }
    }

    /// Accepts RSV1 on the first frame of data messages from now on (permessage-deflate was
    /// negotiated, RFC 7692 §6): such messages are delivered as `Compressed*` events.
    pub fn allow_compressed(&mut self) {
        self.compression = true;
    }

    /// Decodes every complete frame in `input`, unmasking in place, and calls `on_event` for
    /// each complete message and control frame, in order. Unfinished frames are buffered.
    ///
    /// Generic over the callback so the hot loop is monomorphised and the callback inlined
    /// (a `&mut dyn FnMut` also works as `F`). If `on_event` returns `Break`, decoding stops
    /// at that frame's end and the rest of `input` is dropped (used after a Close). Events
    /// for frames before a violation are delivered before the error is returned. The decoder
    /// does not stop by itself after a Close event: the caller returns `Break` there.
    pub fn feed<F>(&mut self, input: &mut [u8], mut on_event: F) -> Result<Feed, ProtocolError>
    where
        F: FnMut(Event<'_>) -> ControlFlow<()>,
    {
        if let Some(error) = self.poisoned {
            return Err(error);
        }
        let result = self.decode_all(input, &mut on_event);
        if let Err(error) = result {
            self.poison(error);
        }
        result
    }

    /// Bytes of heap memory held by this decoder (for metrics and memory limits): the
    /// reassembly buffer's capacity and the box that holds it.
    pub fn buffered_bytes(&self) -> usize {
        self.partial.as_deref().map_or(0, |partial| {
            std::mem::size_of::<Partial>() + partial.message.capacity()
        })
    }

    /// Frees the reassembly buffer if it holds no data (e.g. when a connection goes idle), and
    /// the whole partial state when no frame or message is in progress.
    pub fn release_idle_buffer(&mut self) {
        let Some(partial) = self.partial.as_deref_mut() else {
            return;
        };
        if !partial.message.is_empty() {
            return;
        }
        if partial.is_between_messages() {
            self.partial = None;
        } else {
            partial.message = Vec::new();
        }
    }

    /// Records the first error and frees the buffer: a poisoned decoder holds no memory.
    fn poison(&mut self, error: ProtocolError) {
        self.poisoned = Some(error);
        self.partial = None;
    }

    /// The partial state, allocated on first use.
    #[inline]
    fn partial_mut(&mut self) -> &mut Partial {
        self.partial.get_or_insert_with(Partial::boxed)
    }

    /// Type of the data message in progress, if any.
    #[inline]
    fn message_kind(&self) -> Option<MessageKind> {
        self.partial
            .as_deref()
            .and_then(|partial| partial.message_kind)
    }

    /// Bytes of the data message reassembled so far.
    #[inline]
    fn message_len(&self) -> usize {
        self.partial
            .as_deref()
            .map_or(0, |partial| partial.message.len())
    }

    /// The decode loop: alternates header and payload steps until the input is used up.
    fn decode_all<F>(&mut self, input: &mut [u8], on_event: &mut F) -> Result<Feed, ProtocolError>
    where
        F: FnMut(Event<'_>) -> ControlFlow<()>,
    {
        let mut pos = 0;
        while pos < input.len() {
            let in_payload = match self.partial.as_deref() {
                Some(Partial {
                    state: State::Payload(frame),
                    ..
                }) => Some(*frame),
                _ => None,
            };
            let flow = match in_payload {
                None => match self.take_header(input, &mut pos)? {
                    Some(header) => self.begin_frame(header, input, &mut pos, on_event)?,
                    None => ControlFlow::Continue(()),
                },
                Some(frame) => self.continue_payload(frame, input, &mut pos, on_event)?,
            };
            if flow.is_break() {
                return Ok(Feed::Stopped {
                    consumed_bytes: pos,
                });
            }
        }
        Ok(Feed::Drained)
    }

    /// Starts the payload of `header`: delivers it zero-copy if possible, else buffers.
    #[inline]
    fn begin_frame<F>(
        &mut self,
        header: FrameHeader,
        input: &mut [u8],
        pos: &mut usize,
        on_event: &mut F,
    ) -> Result<ControlFlow<()>, ProtocolError>
    where
        F: FnMut(Event<'_>) -> ControlFlow<()>,
    {
        // Zero-copy only for a frame that is a whole message or a control frame: fragments
        // of a message must be reassembled anyway.
        let standalone =
            header.fin && (header.starts_message || matches!(header.kind, FrameKind::Control(_)));
        if standalone {
            if let Some(payload) = complete_payload(input, *pos, header.payload_len) {
                *pos += payload.len();
                return deliver_standalone(header, payload, on_event);
            }
        }
        let frame = self.enter_frame(header);
        self.continue_payload(frame, input, pos, on_event)
    }

    /// Records the start of a buffered frame and returns its progress state.
    fn enter_frame(&mut self, header: FrameHeader) -> FrameInProgress {
        let partial = self.partial_mut();
        if let (FrameKind::Data(kind), true) = (header.kind, header.starts_message) {
            partial.message_kind = Some(kind);
            partial.message_compressed = header.compressed;
            partial.utf8.reset();
        }
        FrameInProgress {
            fin: header.fin,
            kind: header.kind,
            mask: header.mask,
            remaining_bytes: header.payload_len,
            control_start: partial.message.len(),
        }
    }

    /// Consumes the available part of a buffered frame's payload; on the frame's last byte,
    /// delivers the message or control frame.
    fn continue_payload<F>(
        &mut self,
        mut frame: FrameInProgress,
        input: &mut [u8],
        pos: &mut usize,
        on_event: &mut F,
    ) -> Result<ControlFlow<()>, ProtocolError>
    where
        F: FnMut(Event<'_>) -> ControlFlow<()>,
    {
        let partial = self.partial_mut();
        let available = input.get_mut(*pos..).unwrap_or_default();
        let take = available
            .len()
            .min(usize::try_from(frame.remaining_bytes).unwrap_or(usize::MAX));
        let chunk = &mut available[..take];
        *pos += take;
        frame.remaining_bytes -= take as u64;
        if frame.kind == FrameKind::Data(MessageKind::Text) && !partial.message_compressed {
            // §8.1: fail fast on the first invalid byte, even mid-frame. ASCII needs no
            // validation unless it would end a multi-byte sequence carried from before.
            let ascii = unmask_check_ascii(chunk, frame.mask);
            if !(ascii && partial.utf8.is_char_boundary()) {
                partial
                    .utf8
                    .feed(chunk)
                    .map_err(|_| ProtocolError::InvalidUtf8)?;
            }
        } else if let Some(key) = frame.mask {
            apply_mask(chunk, key, 0);
        }
        frame.mask = frame.mask.map(|key| rotate_key(key, take));
        partial.message.extend_from_slice(chunk);
        if frame.remaining_bytes > 0 {
            partial.state = State::Payload(frame);
            return Ok(ControlFlow::Continue(()));
        }
        partial.state = STATE_IDLE;
        self.finish_frame(frame, on_event)
    }

    /// Handles the last byte of a buffered frame.
    fn finish_frame<F>(
        &mut self,
        frame: FrameInProgress,
        on_event: &mut F,
    ) -> Result<ControlFlow<()>, ProtocolError>
    where
        F: FnMut(Event<'_>) -> ControlFlow<()>,
    {
        match frame.kind {
            FrameKind::Control(kind) => {
                let message = &mut self.partial_mut().message;
                let payload = message.get(frame.control_start..).unwrap_or_default();
                let flow = on_event(control_event(kind, payload)?);
                message.truncate(frame.control_start);
                Ok(flow)
            }
            FrameKind::Data(_) if !frame.fin => Ok(ControlFlow::Continue(())),
            FrameKind::Data(kind) => self.finish_message(kind, on_event),
        }
    }

    /// Delivers the reassembled message and applies the buffer retention policy.
    fn finish_message<F>(
        &mut self,
        kind: MessageKind,
        on_event: &mut F,
    ) -> Result<ControlFlow<()>, ProtocolError>
    where
        F: FnMut(Event<'_>) -> ControlFlow<()>,
    {
        let partial = self.partial_mut();
        partial.message_kind = None;
        let event = match (kind, std::mem::take(&mut partial.message_compressed)) {
            (MessageKind::Text, true) => Event::CompressedText(&partial.message),
            (MessageKind::Binary, true) => Event::CompressedBinary(&partial.message),
            (MessageKind::Text, false) => {
                partial
                    .utf8
                    .finish()
                    .map_err(|_| ProtocolError::InvalidUtf8)?;
                Event::Text(&partial.message)
            }
            (MessageKind::Binary, false) => Event::Binary(&partial.message),
        };
        let flow = on_event(event);
        partial.message.clear();
        if partial.message.capacity() > MESSAGE_RETAIN_BYTES_MAX {
            // Between messages (the frame's state was reset before delivery): nothing to keep.
            self.partial = None;
        }
        Ok(flow)
    }
}

/// The payload of `payload_len` bytes at `start`, if it lies entirely inside `input`.
#[inline]
fn complete_payload(input: &mut [u8], start: usize, payload_len: u64) -> Option<&mut [u8]> {
    let end = start.checked_add(usize::try_from(payload_len).ok()?)?;
    input.get_mut(start..end)
}

/// Unmasks and delivers a frame that is complete inside the caller's input.
#[inline]
fn deliver_standalone<F>(
    header: FrameHeader,
    payload: &mut [u8],
    on_event: &mut F,
) -> Result<ControlFlow<()>, ProtocolError>
where
    F: FnMut(Event<'_>) -> ControlFlow<()>,
{
    if header.compressed {
        return Ok(on_event(deliver_compressed(header, payload)));
    }
    if header.kind == FrameKind::Data(MessageKind::Text) {
        // §8.1: text must be UTF-8.
        if !unmask_check_ascii(payload, header.mask) && simdutf8::basic::from_utf8(payload).is_err()
        {
            return Err(ProtocolError::InvalidUtf8);
        }
        return Ok(on_event(Event::Text(payload)));
    }
    if let Some(key) = header.mask {
        apply_mask(payload, key, 0);
    }
    let event = match header.kind {
        FrameKind::Control(kind) => control_event(kind, payload)?,
        FrameKind::Data(_) => Event::Binary(payload),
    };
    Ok(on_event(event))
}

/// Unmasks a whole compressed message; its UTF-8 is checked after inflating (RFC 7692 §6.1).
#[cold]
fn deliver_compressed(header: FrameHeader, payload: &mut [u8]) -> Event<'_> {
    if let Some(key) = header.mask {
        apply_mask(payload, key, 0);
    }
    match header.kind {
        FrameKind::Data(MessageKind::Text) => Event::CompressedText(payload),
        _ => Event::CompressedBinary(payload),
    }
}

/// Unmasks `payload` if masked and returns whether it is all ASCII (hence valid UTF-8), in
/// one pass (see `apply_mask_check_ascii` for why).
#[inline]
fn unmask_check_ascii(payload: &mut [u8], mask: Option<[u8; MASK_KEY_BYTES]>) -> bool {
    match mask {
        Some(key) => apply_mask_check_ascii(payload, key, 0),
        None => is_ascii(payload),
    }
}

/// Builds the event of a complete control frame; a close payload is validated (§5.5.1).
#[inline]
fn control_event(kind: ControlKind, payload: &[u8]) -> Result<Event<'_>, ProtocolError> {
    Ok(match kind {
        ControlKind::Close => Event::Close(parse_close_payload(payload)?),
        ControlKind::Ping => Event::Ping(payload),
        ControlKind::Pong => Event::Pong(payload),
    })
}

/// The masking key as seen from `consumed` payload bytes further on (§5.3).
#[inline]
fn rotate_key(key: [u8; MASK_KEY_BYTES], consumed: usize) -> [u8; MASK_KEY_BYTES] {
    let mut rotated = key;
    rotated.rotate_left(consumed % MASK_KEY_BYTES);
    rotated
}

mod header;

#[cfg(test)]
mod tests;
