//! Frame encoding (RFC 6455 §5.2): opcodes, headers, and encode-once server frames.
//!
//! Owns: the wire layout of outgoing frames, for both roles, and the shared
//! [`PreparedFrame`] that the pub/sub fanout hands to many connections.
//! May not touch: sockets, per-connection state.
//! Invariants: headers always use the minimal length encoding (§5.2); server frames are never
//! masked and client frames always are (§5.1); a `PreparedFrame` built here is a complete frame
//! with FIN set and its clones share one allocation.

use bytes::{Buf, Bytes};

use crate::proto::mask::apply_mask;

/// Largest header of a frame sent by the server: 2 + 8-byte length, no mask.
pub const SERVER_HEADER_BYTES_MAX: usize = 10;
/// Largest header of a frame sent by a client: 2 + 8-byte length + 4-byte mask key.
pub const CLIENT_HEADER_BYTES_MAX: usize = 14;

/// FIN bit of the first header byte (§5.2).
const FIN_BIT: u8 = 0x80;
/// MASK bit of the second header byte (§5.2).
const MASK_BIT: u8 = 0x80;
/// Largest length encoded directly in the 7-bit field (§5.2).
const LEN7_MAX: u64 = 125;
/// 7-bit length value announcing a 16-bit extended length (§5.2).
const LEN7_EXTENDED_16: u8 = 126;
/// 7-bit length value announcing a 64-bit extended length (§5.2).
const LEN7_EXTENDED_64: u8 = 127;

/// Frame opcodes defined by RFC 6455 §5.2 (0x3-0x7 and 0xB-0xF are reserved).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0x0: continuation of a fragmented message.
    Continuation,
    /// 0x1: text message (UTF-8).
    Text,
    /// 0x2: binary message.
    Binary,
    /// 0x8: connection close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl OpCode {
    /// Decodes the 4-bit opcode field; `None` for reserved values.
    #[inline]
    pub fn from_u8(value: u8) -> Option<Self> {
        match value {
            0x0 => Some(Self::Continuation),
            0x1 => Some(Self::Text),
            0x2 => Some(Self::Binary),
            0x8 => Some(Self::Close),
            0x9 => Some(Self::Ping),
            0xA => Some(Self::Pong),
            _ => None,
        }
    }

    /// The 4-bit wire value.
    #[inline]
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Control frames (close, ping, pong) have the opcode MSB set (§5.5).
    #[inline]
    pub fn is_control(self) -> bool {
        self.as_u8() & 0x8 != 0
    }
}

/// Writes a frame header into `out[..n]` and returns `n` (§5.2, minimal length encoding).
/// With `mask`, the MASK bit and key are written; the caller masks the payload.
#[inline]
pub fn encode_header(
    out: &mut [u8; CLIENT_HEADER_BYTES_MAX],
    fin: bool,
    opcode: OpCode,
    payload_len: u64,
    mask: Option<[u8; 4]>,
) -> usize {
    out[0] = if fin { FIN_BIT } else { 0 } | opcode.as_u8();
    let mask_bit = if mask.is_some() { MASK_BIT } else { 0 };
    let mut len = 2;
    if payload_len <= LEN7_MAX {
        out[1] = mask_bit | payload_len as u8;
    } else if let Ok(len16) = u16::try_from(payload_len) {
        out[1] = mask_bit | LEN7_EXTENDED_16;
        out[2..4].copy_from_slice(&len16.to_be_bytes());
        len = 4;
    } else {
        out[1] = mask_bit | LEN7_EXTENDED_64;
        out[2..10].copy_from_slice(&payload_len.to_be_bytes());
        len = 10;
    }
    if let Some(key) = mask {
        out[len..len + 4].copy_from_slice(&key);
        len += 4;
    }
    len
}

/// Appends one unmasked server frame to `out` (§5.1: servers MUST NOT mask).
pub fn encode_server_frame(out: &mut Vec<u8>, fin: bool, opcode: OpCode, payload: &[u8]) {
    let mut header = [0; CLIENT_HEADER_BYTES_MAX];
    let header_len = encode_header(&mut header, fin, opcode, payload.len() as u64, None);
    out.reserve(header_len + payload.len());
    out.extend_from_slice(&header[..header_len]);
    out.extend_from_slice(payload);
}

/// Appends one masked client frame to `out` (§5.1: clients MUST mask every frame; §5.3: the
/// key must be fresh and unpredictable, which is the caller's job).
pub fn encode_client_frame(
    out: &mut Vec<u8>,
    fin: bool,
    opcode: OpCode,
    payload: &[u8],
    mask: [u8; 4],
) {
    let mut header = [0; CLIENT_HEADER_BYTES_MAX];
    let header_len = encode_header(&mut header, fin, opcode, payload.len() as u64, Some(mask));
    out.reserve(header_len + payload.len());
    out.extend_from_slice(&header[..header_len]);
    let payload_start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[payload_start..], mask, 0);
}

/// A complete, unmasked server frame with FIN set, encoded once and shared by many
/// connections: cloning clones the `Bytes` handle, never the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedFrame {
    /// Header followed by payload, exactly as sent on the wire.
    bytes: Bytes,
}

impl PreparedFrame {
    /// Encodes `payload` as a single final server frame.
    pub fn new(opcode: OpCode, payload: &[u8]) -> Self {
        let mut wire = Vec::with_capacity(SERVER_HEADER_BYTES_MAX + payload.len());
        encode_server_frame(&mut wire, true, opcode, payload);
        Self {
            bytes: Bytes::from(wire),
        }
    }

    /// Wraps bytes that already hold a complete encoded frame (trusted, not re-validated).
    pub fn from_wire(bytes: Bytes) -> Self {
        Self { bytes }
    }

    /// The wire bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The wire bytes, by value.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// Wire length in bytes (header + payload).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether there are no wire bytes (only possible via [`PreparedFrame::from_wire`]).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The opcode in the first header byte, if any and not reserved.
    pub fn opcode(&self) -> Option<OpCode> {
        self.bytes.first().and_then(|b0| OpCode::from_u8(b0 & 0x0F))
    }
}

/// Builds one server frame without copying the payload: the payload is written after
/// `SERVER_HEADER_BYTES_MAX` reserved bytes, and [`FrameBuilder::finish`] writes the header
/// right-aligned into that room. The reserved room is private, so callers can only append.
#[derive(Debug)]
pub struct FrameBuilder {
    /// `SERVER_HEADER_BYTES_MAX` reserved bytes followed by the payload.
    wire: Vec<u8>,
    /// Opcode written by `finish`.
    opcode: OpCode,
}

impl FrameBuilder {
    /// Starts a frame; `payload_capacity` bytes are reserved up front (a hint, not a limit).
    pub fn new(opcode: OpCode, payload_capacity: usize) -> Self {
        let mut wire = Vec::with_capacity(SERVER_HEADER_BYTES_MAX + payload_capacity);
        wire.resize(SERVER_HEADER_BYTES_MAX, 0);
        Self { wire, opcode }
    }

    /// Appends payload bytes.
    #[inline]
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.wire.extend_from_slice(bytes);
    }

    /// Appends one payload byte.
    #[inline]
    pub fn push(&mut self, byte: u8) {
        self.wire.push(byte);
    }

    /// Appends a string (e.g. JSON fragments).
    #[inline]
    pub fn push_str(&mut self, text: &str) {
        self.wire.extend_from_slice(text.as_bytes());
    }

    /// Lets an encoder that writes into a `Vec<u8>` append the payload in place (no copy).
    /// The encoder must only append: the reserved header room is checked afterwards, and a
    /// closure that shrank the buffer into it is a bug (debug assertion; in release the room
    /// is restored with zero payload so no header byte is ever overwritten by payload).
    #[inline]
    pub fn append_with<R>(&mut self, encode: impl FnOnce(&mut Vec<u8>) -> R) -> R {
        let result = encode(&mut self.wire);
        debug_assert!(self.wire.len() >= SERVER_HEADER_BYTES_MAX);
        if self.wire.len() < SERVER_HEADER_BYTES_MAX {
            self.wire.resize(SERVER_HEADER_BYTES_MAX, 0);
        }
        result
    }

    /// Payload bytes written so far.
    #[inline]
    pub fn payload_len(&self) -> usize {
        self.wire.len() - SERVER_HEADER_BYTES_MAX
    }

    /// The payload written so far.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.wire.get(SERVER_HEADER_BYTES_MAX..).unwrap_or_default()
    }

    /// The payload written so far, mutable in place (its length cannot change this way).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        self.wire
            .get_mut(SERVER_HEADER_BYTES_MAX..)
            .unwrap_or_default()
    }

    /// Shortens the payload to `payload_len` bytes (no effect if already shorter).
    pub fn truncate_payload(&mut self, payload_len: usize) {
        self.wire
            .truncate(SERVER_HEADER_BYTES_MAX.saturating_add(payload_len));
    }

    /// Writes the header just before the payload and returns the frame, without copying the
    /// payload (the unused part of the reserved room stays in the allocation, unsent).
    pub fn finish(mut self) -> PreparedFrame {
        let mut header = [0; CLIENT_HEADER_BYTES_MAX];
        let payload_len = self.payload_len() as u64;
        let header_len = encode_header(&mut header, true, self.opcode, payload_len, None);
        let start = SERVER_HEADER_BYTES_MAX - header_len;
        self.wire[start..SERVER_HEADER_BYTES_MAX].copy_from_slice(&header[..header_len]);
        let mut bytes = Bytes::from(self.wire);
        // `advance` moves the start pointer; `slice` would allocate a shared header.
        bytes.advance(start);
        PreparedFrame { bytes }
    }
}

impl std::io::Write for FrameBuilder {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.extend_from_slice(bytes);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl std::fmt::Write for FrameBuilder {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        self.push_str(text);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(fin: bool, opcode: OpCode, len: u64, mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = [0; CLIENT_HEADER_BYTES_MAX];
        let n = encode_header(&mut out, fin, opcode, len, mask);
        out[..n].to_vec()
    }

    #[test]
    fn opcode_round_trip() {
        for value in 0..16u8 {
            if let Some(opcode) = OpCode::from_u8(value) {
                assert_eq!(opcode.as_u8(), value);
                assert_eq!(opcode.is_control(), value >= 8);
            } else {
                assert!(matches!(value, 3..=7 | 0xB..=0xF));
            }
        }
    }

    #[test]
    fn minimal_length_encoding_boundaries() {
        assert_eq!(header(true, OpCode::Text, 0, None), [0x81, 0x00]);
        assert_eq!(header(true, OpCode::Text, 125, None), [0x81, 125]);
        assert_eq!(
            header(true, OpCode::Binary, 126, None),
            [0x82, 126, 0x00, 126]
        );
        assert_eq!(
            header(true, OpCode::Binary, 256, None),
            [0x82, 0x7E, 0x01, 0x00]
        );
        assert_eq!(
            header(true, OpCode::Binary, 65535, None),
            [0x82, 126, 0xFF, 0xFF]
        );
        assert_eq!(
            header(true, OpCode::Binary, 65536, None),
            [0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]
        );
        assert_eq!(header(false, OpCode::Continuation, 1, None), [0x00, 0x01]);
    }

    #[test]
    fn masked_header() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        assert_eq!(
            header(true, OpCode::Text, 5, Some(key)),
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d]
        );
        let wide = header(true, OpCode::Binary, 70000, Some(key));
        assert_eq!(wide.len(), CLIENT_HEADER_BYTES_MAX);
        assert_eq!(&wide[10..], &key);
    }

    #[test]
    fn rfc_5_7_client_and_server_frames() {
        let mut out = Vec::new();
        encode_client_frame(
            &mut out,
            true,
            OpCode::Text,
            b"Hello",
            [0x37, 0xfa, 0x21, 0x3d],
        );
        assert_eq!(
            out,
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
        out.clear();
        encode_server_frame(&mut out, true, OpCode::Text, b"Hello");
        assert_eq!(out, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        out.clear();
        encode_server_frame(&mut out, false, OpCode::Text, b"Hel");
        encode_server_frame(&mut out, true, OpCode::Continuation, b"lo");
        assert_eq!(out, [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f]);
    }

    #[test]
    fn prepared_frame_shares_bytes() {
        let frame = PreparedFrame::new(OpCode::Text, b"Hello");
        assert_eq!(
            frame.bytes().as_ref(),
            &[0x81, 0x05, b'H', b'e', b'l', b'l', b'o']
        );
        let clone = frame.clone();
        assert_eq!(clone.bytes().as_ptr(), frame.bytes().as_ptr());
        assert_eq!(frame.len(), 7);
        assert!(!frame.is_empty());
        assert_eq!(frame.opcode(), Some(OpCode::Text));
        assert_eq!(PreparedFrame::from_wire(Bytes::new()).opcode(), None);
    }

    #[test]
    fn builder_matches_prepared_frame_at_every_length_class() {
        for len in [0usize, 1, 125, 126, 65535, 65536, 70000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut builder = FrameBuilder::new(OpCode::Binary, len);
            builder.extend_from_slice(&payload);
            assert_eq!(builder.payload_len(), len);
            let payload_ptr = builder.payload().as_ptr();
            let built = builder.finish();
            assert_eq!(
                built,
                PreparedFrame::new(OpCode::Binary, &payload),
                "len {len}"
            );
            let header_len = built.len() - len;
            assert_eq!(
                built.bytes()[header_len..].as_ptr(),
                payload_ptr,
                "payload was copied"
            );
        }
    }

    #[test]
    fn builder_write_traits() {
        let mut builder = FrameBuilder::new(OpCode::Text, 16);
        builder.push(b'{');
        std::fmt::Write::write_fmt(&mut builder, format_args!("\"n\":{}", 42)).ok();
        std::io::Write::write_all(&mut builder, b"}").ok();
        builder.push_str("xx");
        builder.truncate_payload(8);
        builder.payload_mut()[0] = b'[';
        assert_eq!(builder.finish().bytes().as_ref(), b"\x81\x08[\"n\":42}");
    }
}
