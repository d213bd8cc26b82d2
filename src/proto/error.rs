//! Error values of the RFC 6455 codec: one variant per protocol or handshake rule.
//!
//! Owns: [`ProtocolError`] (frame-level rules, mapped to the close code the relay sends back),
//! [`HandshakeError`] (server-side opening handshake rules, mapped to an HTTP status) and
//! [`ClientHandshakeError`] (client-side checks of the server's 101 response).
//! Invariants: every variant names exactly one rule; `kind()` labels are unique snake_case
//! strings, stable because they end up as metric label values.

use crate::proto::close::code;

/// A violation of RFC 6455 framing rules by the peer. The connection must be failed (§7.1.7)
/// with [`ProtocolError::close_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// §5.1: a server MUST close the connection upon receiving an unmasked frame.
    #[error("client frame is not masked (RFC 6455 §5.1)")]
    UnmaskedClientFrame,
    /// §5.1: a client MUST close the connection if it detects a masked frame.
    #[error("server frame is masked (RFC 6455 §5.1)")]
    MaskedServerFrame,
    /// §5.2: RSV1-3 MUST be 0 unless an extension is negotiated (we negotiate none).
    #[error("reserved bits set without a negotiated extension (RFC 6455 §5.2)")]
    ReservedBitsSet,
    /// §5.2: opcodes 0x3-0x7 and 0xB-0xF are reserved; receiving one MUST fail the connection.
    #[error("reserved opcode (RFC 6455 §5.2)")]
    UnknownOpcode,
    /// §5.5: control frames MUST NOT be fragmented.
    #[error("fragmented control frame (RFC 6455 §5.5)")]
    ControlFrameFragmented,
    /// §5.5: control frames MUST have a payload length of 125 bytes or less.
    #[error("control frame payload longer than 125 bytes (RFC 6455 §5.5)")]
    ControlFrameTooLong,
    /// §5.4: a continuation frame arrived while no fragmented message was in progress.
    #[error("continuation frame without a message start (RFC 6455 §5.4)")]
    ContinuationWithoutStart,
    /// §5.4: fragments of different messages MUST NOT be interleaved.
    #[error("new data frame inside a fragmented message (RFC 6455 §5.4)")]
    DataFrameInsideFragmentedMessage,
    /// §5.2: the most significant bit of a 64-bit payload length MUST be 0.
    #[error("64-bit payload length with the most significant bit set (RFC 6455 §5.2)")]
    PayloadLengthMsbSet,
    /// §8.1: a text message whose payload is not valid UTF-8 MUST fail the connection.
    #[error("text message is not valid UTF-8 (RFC 6455 §8.1)")]
    InvalidUtf8,
    /// §7.4.1 (1009): the frame or reassembled message exceeds the configured limit.
    #[error("message exceeds the configured size limit")]
    MessageTooBig,
    /// §5.5.1: a close payload, if present, starts with a 2-byte code, so 1 byte is invalid.
    #[error("close frame payload of exactly one byte (RFC 6455 §5.5.1)")]
    ClosePayloadOneByte,
    /// §7.4: the close code is not one an endpoint may send on the wire.
    #[error("invalid close code (RFC 6455 §7.4)")]
    InvalidCloseCode,
    /// §5.5.1: the close reason is not valid UTF-8.
    #[error("close reason is not valid UTF-8 (RFC 6455 §5.5.1)")]
    InvalidCloseReason,
    /// RFC 7692 §6.1/§7.2.2: a compressed message is not a valid DEFLATE stream: the data is
    /// inconsistent with its type (RFC 6455 §7.4.1: 1007).
    #[error("compressed message is not valid DEFLATE data (RFC 7692 §7.2.2)")]
    InvalidCompressedData,
}

impl ProtocolError {
    /// The close code to send when failing the connection for this error (§7.4.1).
    ///
    /// 1007 only for invalid UTF-8 in a text message; a malformed close frame (1-byte payload,
    /// bad code, non-UTF-8 reason) is a framing error, hence 1002 per the relay spec.
    pub fn close_code(self) -> u16 {
        match self {
            Self::InvalidUtf8 | Self::InvalidCompressedData => code::INVALID_PAYLOAD,
            Self::MessageTooBig => code::TOO_BIG,
            _ => code::PROTOCOL_ERROR,
        }
    }

    /// A stable snake_case label for metrics.
    pub fn kind(self) -> &'static str {
        match self {
            Self::UnmaskedClientFrame => "unmasked_client_frame",
            Self::MaskedServerFrame => "masked_server_frame",
            Self::ReservedBitsSet => "reserved_bits_set",
            Self::UnknownOpcode => "unknown_opcode",
            Self::ControlFrameFragmented => "control_frame_fragmented",
            Self::ControlFrameTooLong => "control_frame_too_long",
            Self::ContinuationWithoutStart => "continuation_without_start",
            Self::DataFrameInsideFragmentedMessage => "data_frame_inside_fragmented_message",
            Self::PayloadLengthMsbSet => "payload_length_msb_set",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::InvalidCompressedData => "invalid_compressed_data",
            Self::MessageTooBig => "message_too_big",
            Self::ClosePayloadOneByte => "close_payload_one_byte",
            Self::InvalidCloseCode => "invalid_close_code",
            Self::InvalidCloseReason => "invalid_close_reason",
        }
    }
}

/// A server-side opening handshake rejection (RFC 6455 §4.2.1), answered with an HTTP error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// §4.2.1 item 1: the method MUST be GET.
    #[error("method is not GET")]
    MethodNotGet,
    /// §4.2.1 item 1: HTTP/1.1 or higher is required.
    #[error("HTTP version is not 1.1 or higher")]
    NotHttp11,
    /// §4.2.1 item 2: a Host header field is required.
    #[error("missing Host header")]
    MissingHost,
    /// §4.2.1 item 3: the Upgrade header field MUST contain the token "websocket".
    #[error("Upgrade header lacks the websocket token")]
    MissingUpgrade,
    /// §4.2.1 item 4: the Connection header field MUST contain the token "Upgrade".
    #[error("Connection header lacks the upgrade token")]
    MissingConnectionUpgrade,
    /// §4.2.1 item 6 / §4.4: Sec-WebSocket-Version MUST be 13, otherwise answer 426.
    #[error("unsupported Sec-WebSocket-Version")]
    UnsupportedVersion,
    /// §4.2.1 item 5: Sec-WebSocket-Key is required.
    #[error("missing Sec-WebSocket-Key header")]
    MissingKey,
    /// §4.1 / §11.3.1: the key MUST be the base64 encoding of exactly 16 bytes.
    #[error("Sec-WebSocket-Key is not base64 of 16 bytes")]
    InvalidKey,
    /// RFC 7230 §5.4 (Host) and RFC 6455 §11.3 (Key, Version, Protocol policy): a header that
    /// must appear at most once appears several times.
    #[error("header field repeated")]
    DuplicateHeader,
    /// RFC 7230 §3: the request line or a header field cannot be parsed.
    #[error("malformed HTTP request head")]
    Malformed,
    /// The head does not end within `REQUEST_HEAD_BYTES_MAX` bytes (RFC 6585 §5: 431).
    #[error("request head too large")]
    HeadTooLarge,
    /// More header fields than the parser's fixed table holds (RFC 6585 §5: 431).
    #[error("too many header fields")]
    TooManyHeaders,
    /// RFC 6455 §9.1: `Sec-WebSocket-Extensions` does not follow the extension-list grammar
    /// (a well-formed offer with bad parameters is declined instead, RFC 7692 §5).
    #[error("malformed Sec-WebSocket-Extensions")]
    MalformedExtensions,
}

impl HandshakeError {
    /// The HTTP status code to answer with.
    pub fn status(self) -> u16 {
        match self {
            Self::UnsupportedVersion => 426,
            Self::HeadTooLarge | Self::TooManyHeaders => 431,
            _ => 400,
        }
    }

    /// A one-line human-readable reason, used as the response body.
    pub fn reason(self) -> &'static str {
        match self {
            Self::MethodNotGet => "WebSocket handshake requires the GET method",
            Self::NotHttp11 => "WebSocket handshake requires HTTP/1.1",
            Self::MissingHost => "missing Host header",
            Self::MissingUpgrade => "Upgrade header must contain websocket",
            Self::MissingConnectionUpgrade => "Connection header must contain Upgrade",
            Self::UnsupportedVersion => "only Sec-WebSocket-Version 13 is supported",
            Self::MissingKey => "missing Sec-WebSocket-Key header",
            Self::InvalidKey => "Sec-WebSocket-Key must be base64 of 16 bytes",
            Self::DuplicateHeader => "a header that must appear once is repeated",
            Self::Malformed => "malformed HTTP request",
            Self::HeadTooLarge => "request head too large",
            Self::TooManyHeaders => "too many header fields",
            Self::MalformedExtensions => "malformed Sec-WebSocket-Extensions header",
        }
    }

    /// A stable snake_case label for metrics.
    pub fn kind(self) -> &'static str {
        match self {
            Self::MethodNotGet => "method_not_get",
            Self::NotHttp11 => "not_http11",
            Self::MissingHost => "missing_host",
            Self::MissingUpgrade => "missing_upgrade",
            Self::MissingConnectionUpgrade => "missing_connection_upgrade",
            Self::UnsupportedVersion => "unsupported_version",
            Self::MissingKey => "missing_key",
            Self::InvalidKey => "invalid_key",
            Self::DuplicateHeader => "duplicate_header",
            Self::Malformed => "malformed",
            Self::HeadTooLarge => "head_too_large",
            Self::TooManyHeaders => "too_many_headers",
            Self::MalformedExtensions => "malformed_extensions",
        }
    }
}

/// A client-side rejection of the server's opening handshake response (RFC 6455 §4.1, the
/// numbered checks after "the client MUST validate the server's response").
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClientHandshakeError {
    /// §4.1 item 1: any status other than 101 means the handshake did not complete.
    #[error("server answered HTTP {0} instead of 101")]
    UnexpectedStatus(u16),
    /// §4.1 item 2: the Upgrade header field MUST contain "websocket".
    #[error("response Upgrade header lacks websocket")]
    MissingUpgrade,
    /// §4.1 item 3: the Connection header field MUST contain "Upgrade".
    #[error("response Connection header lacks upgrade")]
    MissingConnectionUpgrade,
    /// §4.1 item 4: Sec-WebSocket-Accept is required.
    #[error("missing Sec-WebSocket-Accept")]
    MissingAccept,
    /// §4.1 item 4: Sec-WebSocket-Accept MUST match SHA-1(key + GUID).
    #[error("Sec-WebSocket-Accept does not match the key")]
    AcceptMismatch,
    /// §4.1 item 5: the client offers no extension, so the server MUST NOT select one.
    #[error("server selected an extension that was not offered")]
    UnexpectedExtension,
    /// RFC 7230 §3: the status line or a header field cannot be parsed.
    #[error("malformed HTTP response head")]
    Malformed,
    /// The head does not end within `RESPONSE_HEAD_BYTES_MAX` bytes.
    #[error("response head too large")]
    HeadTooLarge,
    /// More header fields than the parser's fixed table holds.
    #[error("too many header fields in response")]
    TooManyHeaders,
}

impl ClientHandshakeError {
    /// A stable snake_case label for metrics.
    pub fn kind(self) -> &'static str {
        match self {
            Self::UnexpectedStatus(_) => "unexpected_status",
            Self::MissingUpgrade => "missing_upgrade",
            Self::MissingConnectionUpgrade => "missing_connection_upgrade",
            Self::MissingAccept => "missing_accept",
            Self::AcceptMismatch => "accept_mismatch",
            Self::UnexpectedExtension => "unexpected_extension",
            Self::Malformed => "malformed",
            Self::HeadTooLarge => "head_too_large",
            Self::TooManyHeaders => "too_many_headers",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_close_codes() {
        assert_eq!(ProtocolError::InvalidUtf8.close_code(), 1007);
        assert_eq!(ProtocolError::MessageTooBig.close_code(), 1009);
        assert_eq!(ProtocolError::InvalidCloseReason.close_code(), 1002);
        assert_eq!(ProtocolError::UnmaskedClientFrame.close_code(), 1002);
        assert_eq!(ProtocolError::PayloadLengthMsbSet.close_code(), 1002);
    }

    #[test]
    fn handshake_statuses() {
        assert_eq!(HandshakeError::UnsupportedVersion.status(), 426);
        assert_eq!(HandshakeError::HeadTooLarge.status(), 431);
        assert_eq!(HandshakeError::TooManyHeaders.status(), 431);
        assert_eq!(HandshakeError::InvalidKey.status(), 400);
        assert_eq!(HandshakeError::Malformed.kind(), "malformed");
    }

    #[test]
    fn kinds_are_snake_case() {
        let kinds = [
            ProtocolError::DataFrameInsideFragmentedMessage.kind(),
            ProtocolError::ClosePayloadOneByte.kind(),
            HandshakeError::MissingConnectionUpgrade.kind(),
            ClientHandshakeError::UnexpectedStatus(200).kind(),
        ];
        for kind in kinds {
            assert!(kind
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit()));
        }
    }
}
