//! Close frame payloads (RFC 6455 §5.5.1, §7.4): status codes, parsing and encoding.
//!
//! Owns: the close code constants, the wire-validity rule for received codes and the
//! payload layout (2-byte big-endian code followed by a UTF-8 reason).
//! Invariants: an encoded close payload is never longer than 125 bytes (§5.5), and a reason
//! is only ever cut at a UTF-8 character boundary.

use crate::proto::error::ProtocolError;

/// Close status codes (RFC 6455 §7.4.1 and the IANA "WebSocket Close Code Number" registry).
pub mod code {
    /// Normal closure: the purpose of the connection is fulfilled.
    pub const NORMAL: u16 = 1000;
    /// The endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: u16 = 1001;
    /// The peer violated the protocol.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// The endpoint received a data type it cannot accept.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// Reserved: no status code was present. MUST NOT be sent on the wire (§7.4.1).
    pub const NO_STATUS: u16 = 1005;
    /// Reserved: the connection closed without a close frame. MUST NOT be sent (§7.4.1).
    pub const ABNORMAL: u16 = 1006;
    /// A message payload was inconsistent with its type (e.g. non-UTF-8 text).
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A message violated the endpoint's policy.
    pub const POLICY: u16 = 1008;
    /// A message was too big to process.
    pub const TOO_BIG: u16 = 1009;
    /// The client expected the server to negotiate an extension.
    pub const MANDATORY_EXT: u16 = 1010;
    /// The server hit an unexpected condition.
    pub const INTERNAL: u16 = 1011;
}

/// Largest close payload: control frames carry at most 125 bytes (§5.5).
const CLOSE_PAYLOAD_BYTES_MAX: usize = 125;
/// Size of the status code prefix of a close payload (§5.5.1).
const CLOSE_CODE_BYTES: usize = 2;

/// Whether `code` may appear in a received close frame (§7.4.1, §7.4.2, IANA registry).
///
/// 1004 is reserved, 1005/1006/1015 are reserved for local use only and MUST NOT be sent,
/// 1012-2999 are unassigned or reserved for extensions, 3000-4999 belong to libraries and
/// applications.
pub fn is_valid_on_wire(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

/// A decoded close frame body: its code and (possibly empty) reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseFrame<'a> {
    /// The status code, valid on the wire per [`is_valid_on_wire`].
    pub code: u16,
    /// The UTF-8 reason, at most 123 bytes.
    pub reason: &'a str,
}

/// Parses a received close payload (§5.5.1). An empty payload means "no status" (`None`).
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<CloseFrame<'_>>, ProtocolError> {
    let Some((code_bytes, reason_bytes)) = payload.split_first_chunk::<CLOSE_CODE_BYTES>() else {
        return match payload.len() {
            0 => Ok(None),
            _ => Err(ProtocolError::ClosePayloadOneByte),
        };
    };
    let code = u16::from_be_bytes(*code_bytes);
    if !is_valid_on_wire(code) {
        return Err(ProtocolError::InvalidCloseCode);
    }
    // §5.5.1: the body after the code is UTF-8 encoded data.
    let reason =
        std::str::from_utf8(reason_bytes).map_err(|_| ProtocolError::InvalidCloseReason)?;
    Ok(Some(CloseFrame { code, reason }))
}

/// Appends a close payload (code + reason) to `out`. The reason is truncated at a character
/// boundary so that the payload fits the 125-byte control frame limit (§5.5).
pub fn encode_close_payload(out: &mut Vec<u8>, code: u16, reason: &str) {
    let reason_bytes_max = CLOSE_PAYLOAD_BYTES_MAX - CLOSE_CODE_BYTES;
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(truncate_at_char_boundary(reason, reason_bytes_max).as_bytes());
}

/// The longest prefix of `text` that is at most `bytes_max` bytes and ends on a char boundary.
fn truncate_at_char_boundary(text: &str, bytes_max: usize) -> &str {
    let mut end = bytes_max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_validity_matches_autobahn_7_7_and_7_9() {
        for valid in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            assert!(is_valid_on_wire(valid), "{valid}");
        }
        for invalid in [
            0, 999, 1004, 1005, 1006, 1012, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!is_valid_on_wire(invalid), "{invalid}");
        }
    }

    #[test]
    fn parse_empty_is_no_status() {
        assert_eq!(parse_close_payload(&[]), Ok(None));
    }

    #[test]
    fn parse_one_byte_fails() {
        assert_eq!(
            parse_close_payload(&[3]),
            Err(ProtocolError::ClosePayloadOneByte)
        );
    }

    #[test]
    fn parse_code_and_reason() {
        let parsed = parse_close_payload(&[0x03, 0xE8, b'b', b'y', b'e']);
        assert_eq!(
            parsed,
            Ok(Some(CloseFrame {
                code: 1000,
                reason: "bye"
            }))
        );
        let bare = parse_close_payload(&[0x0F, 0xA0]);
        assert_eq!(
            bare,
            Ok(Some(CloseFrame {
                code: 4000,
                reason: ""
            }))
        );
    }

    #[test]
    fn parse_rejects_bad_code_and_reason() {
        assert_eq!(
            parse_close_payload(&[0x03, 0xED]),
            Err(ProtocolError::InvalidCloseCode)
        );
        let bad_reason = [0x03, 0xE8, 0xCE, 0xBA, 0xED, 0xA0, 0x80];
        assert_eq!(
            parse_close_payload(&bad_reason),
            Err(ProtocolError::InvalidCloseReason)
        );
    }

    #[test]
    fn encode_round_trips() {
        let mut out = Vec::new();
        encode_close_payload(&mut out, 1001, "shutting down");
        assert_eq!(&out[..2], &[0x03, 0xE9]);
        let parsed = parse_close_payload(&out);
        assert_eq!(
            parsed,
            Ok(Some(CloseFrame {
                code: 1001,
                reason: "shutting down"
            }))
        );
    }

    #[test]
    fn encode_truncates_at_char_boundary() {
        // 62 two-byte chars = 124 bytes: only 61 (122 bytes) fit in 123 bytes of reason.
        let reason = "é".repeat(62);
        let mut out = Vec::new();
        encode_close_payload(&mut out, 1000, &reason);
        assert_eq!(out.len(), 2 + 122);
        let ascii = "a".repeat(200);
        out.clear();
        encode_close_payload(&mut out, 1000, &ascii);
        assert_eq!(out.len(), 125);
    }
}
