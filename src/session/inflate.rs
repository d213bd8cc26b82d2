//! permessage-deflate in (RFC 7692): a compressed data message inflated, bounded by the
//! message size limit, with the close code each failure gets. The session decides which
//! context reads the message: the connection's own inflater when the client keeps its
//! context (its dictionary spans messages, §7.1.1.1), otherwise the loop's shared one, reset
//! before each message (`client_no_context_takeover`).
//!
//! The shared inflater and the output buffer are the loop's ([`LoopInflate`], one per loop,
//! lent per message), and the own inflater stays in the connection's deflate agreement
//! (`runtime/compression.rs`): the session itself holds no inflate state, so an idle
//! connection stays small.

use crate::proto::deflate::{InflateError, Inflater};
use crate::proto::frame::OpCode;
use crate::proto::ProtocolError;

use super::Session;

/// Capacity of the inflate buffer kept between messages (a larger one is freed after use:
/// one huge message must not pin its memory for the loop's lifetime).
const INFLATE_RETAIN_BYTES_MAX: usize = 64 * 1024;

/// The loop's inflate tools, shared by its connections: the inflater of connections whose
/// client resets its context per message (made on first use), and the output buffer.
#[derive(Debug, Default)]
pub struct LoopInflate {
    inflater: Option<Box<Inflater>>,
    /// The inflated message (bounded by `--max-message-size`; trimmed by `recycle`).
    out: Vec<u8>,
}

impl LoopInflate {
    /// The message read last is done with: the buffer is emptied, and freed if a large
    /// message made it grow past 64 KiB.
    pub fn recycle(&mut self) {
        self.out.clear();
        if self.out.capacity() > INFLATE_RETAIN_BYTES_MAX {
            self.out = Vec::new();
        }
    }
}

/// Why a compressed message was refused; the connection is failed with its error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateFailure {
    /// It inflates beyond the message size limit (a decompression bomb or just too big).
    TooBig,
    /// Not a valid DEFLATE stream.
    BadData,
    /// It inflated, but a text message is not UTF-8.
    BadText,
}

impl InflateFailure {
    /// The protocol error the connection is failed with: 1009 for `TooBig` (RFC 6455
    /// §7.4.1), 1007 for a bad stream (RFC 7692 §8.2.3) or text that is not UTF-8
    /// (RFC 6455 §8.1).
    pub fn error(self) -> ProtocolError {
        match self {
            InflateFailure::TooBig => ProtocolError::MessageTooBig,
            InflateFailure::BadData => ProtocolError::InvalidCompressedData,
            InflateFailure::BadText => ProtocolError::InvalidUtf8,
        }
    }
}

impl Session {
    /// Inflates the compressed data message `compressed` (`opcode`: Text or Binary) with
    /// `own`, the connection's own inflater when the client keeps its context, or else the
    /// loop's, reset first. At most `max` bytes; a text message must be UTF-8. The message
    /// is returned in the loop's buffer (`tools.recycle()` once it is handled).
    pub fn inflate<'t>(
        &self,
        opcode: OpCode,
        compressed: &[u8],
        own: Option<&mut Inflater>,
        tools: &'t mut LoopInflate,
        max: usize,
    ) -> Result<&'t [u8], InflateFailure> {
        let LoopInflate { inflater, out } = tools;
        let inflated = match own {
            Some(inflater) => inflater.inflate(compressed, max, out),
            None => {
                let inflater = inflater.get_or_insert_with(Default::default);
                inflater.reset();
                inflater.inflate(compressed, max, out)
            }
        };
        match inflated {
            Err(InflateError::TooBig) => Err(InflateFailure::TooBig),
            Err(InflateError::BadData) => Err(InflateFailure::BadData),
            Ok(()) if opcode == OpCode::Text && simdutf8::basic::from_utf8(out).is_err() => {
                Err(InflateFailure::BadText)
            }
            Ok(()) => Ok(&out[..]),
        }
    }
}

#[cfg(test)]
mod tests;
