//! Binary data-plane messages: client publishes in, server messages and gaps out.
//!
//! Layouts (integers big-endian, `L` is one byte so a channel name carries at most 255 bytes):
//! - `[BINARY_OP_PUBLISH][L][channel][payload]`   client → server
//! - `[BINARY_OP_PUBLISH_ACKED][L][channel][I][id: I bytes][payload]`   client → server, asks
//!   for an acknowledgement (`I` 1-64)
//! - `[BINARY_OP_MESSAGE][L][channel][seq: u64][payload]`   server → client
//! - `[BINARY_OP_GAP][L][channel][from: u64][to: u64]`   server → client
//! - `[BINARY_OP_ACK][L][channel][I][id][seq: u64]`   server → client, the message's `seq` (0:
//!   accepted but not numbered: no subscriber and nothing retained)
//!
//! The payload is opaque: it is never inspected, copied once by the encoder.

use crate::command::channel::is_valid_channel_name;
use crate::command::error::CommandError;

/// Client → server op byte: publish an opaque payload.
pub const BINARY_OP_PUBLISH: u8 = 0x01;
/// Server → client op byte: a sequenced message.
pub const BINARY_OP_MESSAGE: u8 = 0x01;
/// Server → client op byte: a gap `[from, to]` the client cannot recover.
pub const BINARY_OP_GAP: u8 = 0x02;
/// Client → server op byte: publish with an acknowledgement id.
pub const BINARY_OP_PUBLISH_ACKED: u8 = 0x04;
/// Server → client op byte: the acknowledgement of a publish.
pub const BINARY_OP_ACK: u8 = 0x04;
/// Longest channel name the one-byte length field can carry.
pub const CHANNEL_BYTES_MAX_BINARY: usize = u8::MAX as usize;
/// Bytes of a binary gap besides the channel name: op, length, `from`, `to`.
pub const BINARY_GAP_LEN_FIXED: usize = 2 + 8 + 8;

/// Bytes of a binary message besides channel and payload: op, length, `seq`.
const BINARY_MESSAGE_LEN_FIXED: usize = 2 + 8;

/// A decoded binary publish; both fields borrow the received message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BinaryPublish<'a> {
    /// Target channel, already checked against the channel-name rule.
    pub channel: &'a str,
    /// Opaque bytes to deliver.
    pub payload: &'a [u8],
    /// Acknowledgement id (1-64 bytes), with `BINARY_OP_PUBLISH_ACKED`.
    pub id: Option<&'a [u8]>,
}

/// Why a server binary message could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The channel name does not fit the one-byte length field.
    #[error("channel name of {channel_bytes} bytes exceeds the binary limit of 255")]
    ChannelTooLong {
        /// Length of the rejected channel name.
        channel_bytes: usize,
    },
}

/// Decodes `[0x01][L][L bytes channel][payload]` or, with an acknowledgement id,
/// `[0x04][L][channel][I][I bytes id][payload]`.
pub fn decode_binary(
    msg: &[u8],
    channel_bytes_max: usize,
) -> Result<BinaryPublish<'_>, CommandError> {
    let (&op, rest) = msg.split_first().ok_or(CommandError::EmptyBinary)?;
    if op != BINARY_OP_PUBLISH && op != BINARY_OP_PUBLISH_ACKED {
        return Err(CommandError::UnknownBinaryOp);
    }
    let (&channel_len, rest) = rest
        .split_first()
        .ok_or(CommandError::TruncatedBinaryHeader)?;
    let (channel, payload) = rest
        .split_at_checked(usize::from(channel_len))
        .ok_or(CommandError::TruncatedBinaryHeader)?;
    if !is_valid_channel_name(channel, channel_bytes_max) {
        return Err(CommandError::InvalidChannelName);
    }
    // The charset is ASCII, so this cannot fail after the check above.
    let channel = std::str::from_utf8(channel).map_err(|_| CommandError::InvalidChannelName)?;
    if op == BINARY_OP_PUBLISH {
        return Ok(BinaryPublish {
            channel,
            payload,
            id: None,
        });
    }
    let (&id_len, rest) = payload.split_first().ok_or(CommandError::InvalidId)?;
    let (id, payload) = rest
        .split_at_checked(usize::from(id_len))
        .ok_or(CommandError::InvalidId)?;
    if id.is_empty() || id.len() > crate::command::ACK_ID_BYTES_MAX {
        return Err(CommandError::InvalidId);
    }
    Ok(BinaryPublish {
        channel,
        payload,
        id: Some(id),
    })
}

/// Appends `[0x04][L][channel][I][id][seq u64 BE]` (`seq` 0: not numbered). `id` is at most
/// 64 bytes (checked when decoded) and the channel at most 255.
pub fn encode_binary_ack(
    out: &mut Vec<u8>,
    channel: &str,
    id: &[u8],
    seq: u64,
) -> Result<(), EncodeError> {
    let channel_len = u8::try_from(channel.len()).map_err(|_| EncodeError::ChannelTooLong {
        channel_bytes: channel.len(),
    })?;
    let id_len = u8::try_from(id.len()).unwrap_or(u8::MAX);
    out.push(BINARY_OP_ACK);
    out.push(channel_len);
    out.extend_from_slice(channel.as_bytes());
    out.push(id_len);
    out.extend_from_slice(&id[..usize::from(id_len)]);
    out.extend_from_slice(&seq.to_be_bytes());
    Ok(())
}

/// Exact length of the message [`encode_binary_message`] writes.
pub fn binary_message_len(channel: &str, payload: &[u8]) -> usize {
    BINARY_MESSAGE_LEN_FIXED + channel.len() + payload.len()
}

/// Appends `[0x01][L][channel][seq u64 BE][payload]`.
pub fn encode_binary_message(
    out: &mut Vec<u8>,
    channel: &str,
    seq: u64,
    payload: &[u8],
) -> Result<(), EncodeError> {
    let channel_len = channel_len_byte(channel)?;
    out.reserve(binary_message_len(channel, payload));
    out.extend_from_slice(&[BINARY_OP_MESSAGE, channel_len]);
    out.extend_from_slice(channel.as_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// Appends `[0x02][L][channel][from u64 BE][to u64 BE]`.
pub fn encode_binary_gap(
    out: &mut Vec<u8>,
    channel: &str,
    from: u64,
    to: u64,
) -> Result<(), EncodeError> {
    let channel_len = channel_len_byte(channel)?;
    out.reserve(BINARY_GAP_LEN_FIXED + channel.len());
    out.extend_from_slice(&[BINARY_OP_GAP, channel_len]);
    out.extend_from_slice(channel.as_bytes());
    out.extend_from_slice(&from.to_be_bytes());
    out.extend_from_slice(&to.to_be_bytes());
    Ok(())
}

fn channel_len_byte(channel: &str) -> Result<u8, EncodeError> {
    u8::try_from(channel.len()).map_err(|_| EncodeError::ChannelTooLong {
        channel_bytes: channel.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_publish() {
        let msg = b"\x01\x06md.abc\x00\xffpayload";
        let publish = decode_binary(msg, 128).unwrap();
        assert_eq!(publish.channel, "md.abc");
        assert_eq!(publish.payload, b"\x00\xffpayload");
    }

    #[test]
    fn decodes_empty_payload() {
        let publish = decode_binary(b"\x01\x01a", 128).unwrap();
        assert_eq!((publish.channel, publish.payload), ("a", &b""[..]));
    }

    #[test]
    fn rejects_each_malformed_header() {
        assert_eq!(decode_binary(b"", 128), Err(CommandError::EmptyBinary));
        assert_eq!(
            decode_binary(b"\x02\x01a", 128),
            Err(CommandError::UnknownBinaryOp)
        );
        assert_eq!(
            decode_binary(b"\x01", 128),
            Err(CommandError::TruncatedBinaryHeader)
        );
        assert_eq!(
            decode_binary(b"\x01\x05abcd", 128),
            Err(CommandError::TruncatedBinaryHeader)
        );
        assert_eq!(
            decode_binary(b"\x01\x00xyz", 128),
            Err(CommandError::InvalidChannelName)
        );
        assert_eq!(
            decode_binary(b"\x01\x03a b", 128),
            Err(CommandError::InvalidChannelName)
        );
        assert_eq!(
            decode_binary(b"\x01\x04abcd", 3),
            Err(CommandError::InvalidChannelName)
        );
    }

    #[test]
    fn encodes_message_exact_bytes() {
        let mut out = b"prefix".to_vec();
        encode_binary_message(&mut out, "md.abc", 0x0102_0304_0506_0708, b"hi").unwrap();
        assert_eq!(
            out,
            b"prefix\x01\x06md.abc\x01\x02\x03\x04\x05\x06\x07\x08hi"
        );
        assert_eq!(binary_message_len("md.abc", b"hi"), out.len() - 6);
    }

    #[test]
    fn encodes_gap_exact_bytes() {
        let mut out = Vec::new();
        encode_binary_gap(&mut out, "c", 5, u64::MAX).unwrap();
        let mut expected = b"\x02\x01c\0\0\0\0\0\0\0\x05".to_vec();
        expected.extend_from_slice(&[0xff; 8]);
        assert_eq!(out, expected);
        assert_eq!(out.len(), BINARY_GAP_LEN_FIXED + 1);
    }

    #[test]
    fn encoders_reject_channel_over_255_bytes() {
        let long = "a".repeat(256);
        let mut out = Vec::new();
        let expected = Err(EncodeError::ChannelTooLong { channel_bytes: 256 });
        assert_eq!(encode_binary_message(&mut out, &long, 1, b""), expected);
        assert_eq!(encode_binary_gap(&mut out, &long, 1, 2), expected);
        assert!(out.is_empty());
        let longest = "a".repeat(CHANNEL_BYTES_MAX_BINARY);
        assert_eq!(encode_binary_gap(&mut out, &longest, 1, 2), Ok(()));
    }

    proptest! {
        #[test]
        fn decode_binary_never_panics(msg in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_binary(&msg, 128);
        }

        #[test]
        fn publish_round_trips(channel in "[A-Za-z0-9._:-]{1,128}", payload in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut msg = vec![BINARY_OP_PUBLISH, channel.len() as u8];
            msg.extend_from_slice(channel.as_bytes());
            msg.extend_from_slice(&payload);
            let publish = decode_binary(&msg, 128).unwrap();
            prop_assert_eq!(publish.channel, channel.as_str());
            prop_assert_eq!(publish.payload, &payload[..]);
        }
    }
}
