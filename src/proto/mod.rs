//! Sans-IO RFC 6455 codec of the relay: opening handshake, frame decoding and encoding, close
//! payloads, masking and incremental UTF-8 validation, for the server role and the client role
//! (the load-test swarm and the client library); and what may precede or accompany the
//! handshake behind load balancers: the PROXY protocol header (`proxy_header`) and the
//! forwarding headers (`forwarded`).
//!
//! Owns: the wire format only. May not touch: sockets, clocks, mio, connection lifecycle
//! (the caller sends pongs, close replies and HTTP errors built with these functions).
//!
//! Invariants:
//! - No allocation per frame on the decode fast path: complete frames are unmasked in place
//!   and delivered as slices of the caller's buffer.
//! - Every buffer is bounded: a partial header by 14 bytes, a message by
//!   [`DecoderLimits::message_bytes_max`], a control payload by 125 bytes (§5.5), a UTF-8
//!   carry by 3 bytes, a request head by [`handshake::REQUEST_HEAD_BYTES_MAX`], a PROXY
//!   header by [`proxy_header::V2_BYTES_MAX`].
//! - Every rule violation is a distinct error variant, detected on the first offending byte.

pub mod close;
pub mod decoder;
#[cfg(feature = "deflate")]
pub mod deflate;
pub mod error;
pub mod extensions;
pub mod forwarded;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod proxy_header;
pub mod utf8;

pub use close::CloseFrame;
pub use decoder::{Decoder, DecoderLimits, Event, Feed, Role};
pub use error::{ClientHandshakeError, HandshakeError, ProtocolError};
pub use frame::{FrameBuilder, OpCode, PreparedFrame};
pub use handshake::{RequestHead, ResponseHead, Upgrade};
pub use mask::apply_mask;
pub use utf8::{Utf8Error, Utf8Validator};

/// Result of parsing an item from the front of a byte buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decode<T> {
    /// The item and the number of bytes it occupied.
    Complete(T, usize),
    /// More bytes are needed; nothing was consumed.
    Partial,
}
