//! permessage-deflate compression and decompression (RFC 7692 §7.2), sans-IO, over `flate2`
//! with the pure-Rust `miniz_oxide` backend (raw DEFLATE, RFC 1951).
//!
//! Owns: one compression context ([`Deflater`]) and one decompression context
//! ([`Inflater`]), the 4-byte `00 00 ff ff` tail (removed after compressing, §7.2.1, appended
//! before inflating, §7.2.2), the inflated-size bound, and the server window limit.
//! May not touch: sockets, frames (the caller sets RSV1 and builds the frame).
//!
//! Window bits. `miniz_oxide` always compresses with a 32 KiB window (15 bits). A peer that
//! asked for `server_max_window_bits=N < 15` is honoured by a full flush (which empties the
//! compressor's dictionary) after every 2^N input bytes: no back-reference can then reach
//! further than 2^N - 1 bytes, so a decoder with a 2^N window reads the stream. Inflating
//! always uses a 32 KiB window, which reads any client window (8-15 bits).
//!
//! Memory (from miniz_oxide 0.9's buffer sizes, not measured): a `Deflater` holds its
//! compressor, about 310 KiB (32 KiB dictionary, 64 KiB hash chains, 64 KiB hash table, 64 KiB
//! LZ codes, 85 KiB output buffer); an `Inflater` its decompressor, about 43 KiB (the 32 KiB
//! window and the Huffman tables).
//! The relay keeps one of each per loop, plus one pair per connection with context takeover,
//! bounded by `--deflate-max-contexts`.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::proto::extensions::WINDOW_BITS_MAX;
use crate::proto::frame::{encode_header, OpCode, CLIENT_HEADER_BYTES_MAX};

/// The bytes a sync flush ends with, removed from each compressed message (§7.2.1).
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// Output growth step when inflating (the buffer grows to the limit in steps of this or the
/// current size, whichever is larger).
const INFLATE_STEP_BYTES: usize = 4096;

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// The inflated message exceeds the limit (a decompression bomb or just too big: 1009).
    TooBig,
    /// Not a valid DEFLATE stream (1007, RFC 7692 §8.2.3.x / RFC 6455 §7.4.1).
    BadData,
}

/// A compression context: without takeover it is reset before each message.
pub struct Deflater {
    compress: Compress,
    /// Keep the dictionary between messages (context takeover, §7.1.1).
    takeover: bool,
    /// Input bytes since the dictionary was last emptied (window limit below 15 bits).
    since_full_flush: usize,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater")
            .field("takeover", &self.takeover)
            .finish_non_exhaustive()
    }
}

impl Deflater {
    /// A context at the default compression level (6: zlib's default).
    pub fn new(takeover: bool) -> Self {
        Self {
            compress: Compress::new(Compression::default(), false),
            takeover,
            since_full_flush: 0,
        }
    }

    /// Appends the compressed payload of `message` to `out`, without the 4-byte tail
    /// (§7.2.1), never referring further back than 2^`window_bits` - 1 bytes.
    pub fn compress(&mut self, message: &[u8], window_bits: u8, out: &mut Vec<u8>) {
        if !self.takeover {
            self.compress.reset();
            self.since_full_flush = 0;
        }
        let window = match window_bits {
            WINDOW_BITS_MAX.. => usize::MAX,
            bits => 1usize << bits,
        };
        let mut rest = message;
        loop {
            let room = window.saturating_sub(self.since_full_flush).max(1);
            let (chunk, after) = rest.split_at(rest.len().min(room));
            let full = chunk.len() == room && !after.is_empty();
            let flush = if full {
                FlushCompress::Full
            } else {
                FlushCompress::Sync
            };
            self.compress_all(chunk, flush, out);
            self.since_full_flush = if full {
                0
            } else {
                self.since_full_flush + chunk.len()
            };
            rest = after;
            if rest.is_empty() {
                break;
            }
        }
        // §7.2.1: remove the 4 octets 0x00 0x00 0xff 0xff at the tail end.
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
    }

    /// Feeds all of `input` with `flush`, growing `out` as needed.
    fn compress_all(&mut self, input: &[u8], flush: FlushCompress, out: &mut Vec<u8>) {
        let mut consumed = 0;
        loop {
            // DEFLATE's worst case is the input plus 5 bytes per stored block, plus the flush.
            out.reserve(input.len() - consumed + 64);
            let before_in = self.compress.total_in();
            let before_out = out.len();
            let status =
                self.compress
                    .compress_vec(input.get(consumed..).unwrap_or_default(), out, flush);
            let taken = (self.compress.total_in() - before_in) as usize;
            consumed += taken;
            // Done when the input is used and the flush left room unused (nothing pending).
            if consumed >= input.len() && out.len() < out.capacity() {
                return;
            }
            if status.is_err() || (taken == 0 && out.len() == before_out) {
                return;
            }
        }
    }
}

/// A decompression context (32 KiB window); reset per message without context takeover.
pub struct Inflater {
    decompress: Decompress,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater").finish_non_exhaustive()
    }
}

impl Default for Inflater {
    fn default() -> Self {
        Self::new()
    }
}

impl Inflater {
    /// A fresh raw-DEFLATE context.
    pub fn new() -> Self {
        Self {
            decompress: Decompress::new(false),
        }
    }

    /// Forgets the previous messages (no context takeover, or after an error).
    pub fn reset(&mut self) {
        self.decompress.reset(false);
    }

    /// Inflates one message's payload with the tail appended (§7.2.2) into `out` (cleared
    /// first). More than `max_bytes` of output is [`InflateError::TooBig`], detected before
    /// `out` grows beyond the limit (plus the allocator's rounding).
    pub fn inflate(
        &mut self,
        payload: &[u8],
        max_bytes: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        out.clear();
        for input in [payload, &TAIL[..]] {
            if self.inflate_part(input, max_bytes, out)? == Status::StreamEnd {
                // A final block (BFINAL) ends the stream: what follows is ignored, and the
                // next message starts a fresh stream.
                self.reset();
                break;
            }
        }
        Ok(())
    }

    fn inflate_part(
        &mut self,
        input: &[u8],
        max_bytes: usize,
        out: &mut Vec<u8>,
    ) -> Result<Status, InflateError> {
        let limit = max_bytes.saturating_add(1);
        let mut consumed = 0;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= limit {
                    return Err(InflateError::TooBig);
                }
                let step = out.len().max(INFLATE_STEP_BYTES).min(limit - out.len());
                out.reserve_exact(step);
            }
            let before_in = self.decompress.total_in();
            let before_out = out.len();
            let status = self
                .decompress
                .decompress_vec(
                    input.get(consumed..).unwrap_or_default(),
                    out,
                    FlushDecompress::Sync,
                )
                .map_err(|_| InflateError::BadData)?;
            if out.len() > max_bytes {
                return Err(InflateError::TooBig);
            }
            consumed += (self.decompress.total_in() - before_in) as usize;
            let done = consumed >= input.len() && out.len() < out.capacity();
            if done || status == Status::StreamEnd {
                return Ok(status);
            }
            if consumed < input.len() && out.len() == before_out && out.len() < out.capacity() {
                // No progress with room to spare: the stream cannot continue.
                return Err(InflateError::BadData);
            }
        }
    }
}

/// RSV1 in the first header byte: the message is compressed (RFC 7692 §6).
pub const RSV1_BIT: u8 = 0x40;

/// Appends one final server frame with RSV1 set whose payload is `message` compressed
/// (§6.1: RSV1 on the first and here only frame). `scratch` is reused for the compressed bytes.
pub fn encode_compressed_frame(
    deflater: &mut Deflater,
    opcode: OpCode,
    message: &[u8],
    window_bits: u8,
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) {
    scratch.clear();
    deflater.compress(message, window_bits, scratch);
    let mut header = [0; CLIENT_HEADER_BYTES_MAX];
    let len = encode_header(&mut header, true, opcode, scratch.len() as u64, None);
    header[0] |= RSV1_BIT;
    out.reserve(len + scratch.len());
    out.extend_from_slice(header.get(..len).unwrap_or_default());
    out.extend_from_slice(scratch);
}

/// The first header byte and the payload of one complete unmasked server frame (as built by
/// `proto::frame`); `None` if `frame` is not exactly one such frame.
pub fn server_frame_parts(frame: &[u8]) -> Option<(u8, &[u8])> {
    let (&b0, rest) = frame.split_first()?;
    let (&b1, rest) = rest.split_first()?;
    let (len, payload) = match b1 & 0x7f {
        126 => {
            let (len, payload) = rest.split_first_chunk::<2>()?;
            (u64::from(u16::from_be_bytes(*len)), payload)
        }
        127 => {
            let (len, payload) = rest.split_first_chunk::<8>()?;
            (u64::from_be_bytes(*len), payload)
        }
        len7 => (u64::from(len7), rest),
    };
    (b1 & 0x80 == 0 && payload.len() as u64 == len).then_some((b0, payload))
}

#[cfg(test)]
mod tests;
