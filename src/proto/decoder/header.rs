//! Frame headers (RFC 6455 §5.2): completing a header split across feeds and validating each
//! byte as it arrives (fail fast: RSV bits, opcode, fragmentation rules, the mask bit, the
//! announced length against the control and message limits).

use crate::proto::error::ProtocolError;
use crate::proto::frame::{OpCode, CLIENT_HEADER_BYTES_MAX};

use super::{
    ControlKind, Decoder, FrameHeader, FrameKind, MessageKind, Partial, Role, State,
    CONTROL_PAYLOAD_BYTES_MAX, FIN_BIT, LEN7_BITS, MASK_BIT, MASK_KEY_BYTES, OPCODE_BITS, RSV1_BIT,
    RSV_BITS, STATE_IDLE,
};

impl Decoder {
    /// Completes the next header from buffered bytes plus `input[*pos..]`. Returns `None`
    /// (with everything buffered) if the input ends inside the header.
    pub(super) fn take_header(
        &mut self,
        input: &[u8],
        pos: &mut usize,
    ) -> Result<Option<FrameHeader>, ProtocolError> {
        let (mut buf, buffered) = match self.partial.as_deref() {
            None => ([0; CLIENT_HEADER_BYTES_MAX], 0),
            Some(Partial {
                state: State::Header { buf, len },
                ..
            }) => (*buf, usize::from(*len)),
            Some(_) => return Ok(None),
        };
        let available = input.get(*pos..).unwrap_or_default();
        if buffered == 0 {
            // Fast path: the header is parsed straight from the input.
            if let Some(header) = self.parse_header(available)? {
                *pos += header.header_len;
                return Ok(Some(header));
            }
        }
        let copied = available.len().min(CLIENT_HEADER_BYTES_MAX - buffered);
        buf[buffered..buffered + copied].copy_from_slice(&available[..copied]);
        match self.parse_header(&buf[..buffered + copied])? {
            Some(header) => {
                // Only the header's own bytes are consumed; the rest is payload.
                *pos += header.header_len - buffered;
                if let Some(partial) = self.partial.as_deref_mut() {
                    partial.state = STATE_IDLE;
                }
                Ok(Some(header))
            }
            None => {
                *pos += copied;
                self.partial_mut().state = State::Header {
                    buf,
                    len: (buffered + copied) as u8,
                };
                Ok(None)
            }
        }
    }

    /// Validates the header bytes present in `bytes` (fail fast: each rule is checked as soon
    /// as its byte is there) and returns the header once all of it is present.
    #[inline]
    fn parse_header(&self, bytes: &[u8]) -> Result<Option<FrameHeader>, ProtocolError> {
        let Some(&b0) = bytes.first() else {
            return Ok(None);
        };
        let (fin, kind, starts_message) = self.check_first_byte(b0)?;
        let compressed = b0 & RSV_BITS != 0;
        let Some(&b1) = bytes.get(1) else {
            return Ok(None);
        };
        let masked = self.check_mask_bit(b1)?;
        let Some((payload_len, len_end)) = parse_payload_len(b1, bytes)? else {
            return Ok(None);
        };
        self.check_payload_len(kind, payload_len)?;
        let header_len = len_end + if masked { MASK_KEY_BYTES } else { 0 };
        let mask = match masked {
            true => match bytes
                .get(len_end..header_len)
                .and_then(|key| key.first_chunk())
            {
                Some(key) => Some(*key),
                None => return Ok(None),
            },
            false => None,
        };
        Ok(Some(FrameHeader {
            fin,
            kind,
            starts_message,
            compressed,
            mask,
            payload_len,
            header_len,
        }))
    }

    /// Checks RSV bits, opcode and fragmentation rules of the first header byte.
    #[inline]
    fn check_first_byte(&self, b0: u8) -> Result<(bool, FrameKind, bool), ProtocolError> {
        // §5.2: RSV1-3 MUST be 0 unless an extension defines them.
        if b0 & RSV_BITS != 0 {
            self.check_rsv1(b0)?;
        }
        let fin = b0 & FIN_BIT != 0;
        let opcode = OpCode::from_u8(b0 & OPCODE_BITS).ok_or(ProtocolError::UnknownOpcode)?;
        let (kind, starts_message) = match opcode {
            OpCode::Text => (
                FrameKind::Data(self.start_message(MessageKind::Text)?),
                true,
            ),
            OpCode::Binary => (
                FrameKind::Data(self.start_message(MessageKind::Binary)?),
                true,
            ),
            // §5.4: a continuation frame only follows a non-final data frame.
            OpCode::Continuation => match self.message_kind() {
                Some(kind) => (FrameKind::Data(kind), false),
                None => return Err(ProtocolError::ContinuationWithoutStart),
            },
            OpCode::Close => (FrameKind::Control(ControlKind::Close), false),
            OpCode::Ping => (FrameKind::Control(ControlKind::Ping), false),
            OpCode::Pong => (FrameKind::Control(ControlKind::Pong), false),
        };
        // §5.5: control frames MUST NOT be fragmented.
        if matches!(kind, FrameKind::Control(_)) && !fin {
            return Err(ProtocolError::ControlFrameFragmented);
        }
        Ok((fin, kind, starts_message))
    }

    /// RFC 7692 §6: with permessage-deflate, RSV1 (and only RSV1) may be set, and only on the
    /// first frame of a data message (§6.1: never on a continuation; control frames are not
    /// compressed). Anything else fails the connection (1002).
    #[cold]
    fn check_rsv1(&self, b0: u8) -> Result<(), ProtocolError> {
        let first_data_frame = matches!(
            OpCode::from_u8(b0 & OPCODE_BITS),
            Some(OpCode::Text | OpCode::Binary)
        );
        match self.compression && b0 & RSV_BITS == RSV1_BIT && first_data_frame {
            true => Ok(()),
            false => Err(ProtocolError::ReservedBitsSet),
        }
    }

    /// §5.4: a new data message may not start inside a fragmented one.
    #[inline]
    fn start_message(&self, kind: MessageKind) -> Result<MessageKind, ProtocolError> {
        match self.message_kind() {
            Some(_) => Err(ProtocolError::DataFrameInsideFragmentedMessage),
            None => Ok(kind),
        }
    }

    /// §5.1: clients MUST mask, servers MUST NOT.
    #[inline]
    fn check_mask_bit(&self, b1: u8) -> Result<bool, ProtocolError> {
        let masked = b1 & MASK_BIT != 0;
        match (self.role, masked) {
            (Role::Server, false) => Err(ProtocolError::UnmaskedClientFrame),
            (Role::Client, true) => Err(ProtocolError::MaskedServerFrame),
            _ => Ok(masked),
        }
    }

    /// §5.5 control length, and the message limit (fail fast, before any payload arrives).
    #[inline]
    fn check_payload_len(&self, kind: FrameKind, payload_len: u64) -> Result<(), ProtocolError> {
        let limit = match kind {
            FrameKind::Control(_) if payload_len > CONTROL_PAYLOAD_BYTES_MAX => {
                return Err(ProtocolError::ControlFrameTooLong)
            }
            FrameKind::Control(_) => return Ok(()),
            FrameKind::Data(_) => {
                (self.message_bytes_max as usize).saturating_sub(self.message_len())
            }
        };
        if payload_len > limit as u64 {
            return Err(ProtocolError::MessageTooBig);
        }
        Ok(())
    }
}

/// Parses the payload length field (§5.2). Returns the length and the offset where it ends,
/// or `None` if the extended length bytes are not all present yet.
#[inline]
fn parse_payload_len(b1: u8, bytes: &[u8]) -> Result<Option<(u64, usize)>, ProtocolError> {
    let extended = bytes.get(2..).unwrap_or_default();
    match b1 & LEN7_BITS {
        126 => Ok(extended
            .first_chunk::<2>()
            .map(|len| (u64::from(u16::from_be_bytes(*len)), 4))),
        127 => {
            // §5.2: the most significant bit MUST be 0; checked on its own byte.
            if extended.first().is_some_and(|&msb| msb & 0x80 != 0) {
                return Err(ProtocolError::PayloadLengthMsbSet);
            }
            Ok(extended
                .first_chunk::<8>()
                .map(|len| (u64::from_be_bytes(*len), 10)))
        }
        len7 => Ok(Some((u64::from(len7), 2))),
    }
}
