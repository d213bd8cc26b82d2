//! Client → server commands of the wsrelay protocol (docs/PROTOCOL.md), as message payloads.
//!
//! Owns: the exact bytes of `subscribe`, `unsubscribe`, `message`, `ping` and `auth`, and of a
//! binary publish. May not touch: WebSocket framing (the connection masks and frames each
//! payload) or any state. Strings go through the relay's own JSON string writer, so a channel
//! name or token with quotes still yields valid JSON.

use crate::client::session::SubscribeOptions;
use crate::command::{is_valid_channel_name, write_json_string, CHANNEL_BYTES_MAX_BINARY};
use crate::command::{BINARY_OP_PUBLISH, TOKEN_BYTES_MAX};

/// A command that cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CommandBuildError {
    /// Channel names are 1-255 bytes of `[A-Za-z0-9._:-]` (the relay's limit may be lower).
    #[error("invalid channel name")]
    InvalidChannel,
    /// Tokens are 1-8192 bytes.
    #[error("invalid token length")]
    InvalidToken,
}

/// Checks a channel name against the protocol's charset and the binary length limit (255
/// bytes); the relay may enforce a lower `--max-channel-length` and answers `error` then.
pub fn check_channel(channel: &str) -> Result<(), CommandBuildError> {
    match is_valid_channel_name(channel.as_bytes(), CHANNEL_BYTES_MAX_BINARY) {
        true => Ok(()),
        false => Err(CommandBuildError::InvalidChannel),
    }
}

/// `{"type":"subscribe","channel":C}` plus `,"since":S` and `,"epoch":E` when given.
pub fn encode_subscribe(out: &mut Vec<u8>, channel: &str, since: Option<u64>, epoch: Option<&str>) {
    encode_subscribe_with(out, channel, since, epoch, SubscribeOptions::default());
}

/// `{"type":"presence","channel":C}`: the channel's members, now.
pub fn encode_presence(out: &mut Vec<u8>, channel: &str) {
    out.extend_from_slice(br#"{"type":"presence","channel":"#);
    write_json_string(out, channel);
    out.push(b'}');
}

/// [`encode_subscribe`] plus `,"throttle_ms":T`, `,"binary":true` and `,"presence":true` as
/// `options` ask.
pub fn encode_subscribe_with(
    out: &mut Vec<u8>,
    channel: &str,
    since: Option<u64>,
    epoch: Option<&str>,
    options: SubscribeOptions,
) {
    out.extend_from_slice(br#"{"type":"subscribe","channel":"#);
    write_json_string(out, channel);
    if let Some(since) = since {
        out.extend_from_slice(br#","since":"#);
        out.extend_from_slice(itoa::Buffer::new().format(since).as_bytes());
    }
    if let Some(epoch) = epoch {
        out.extend_from_slice(br#","epoch":"#);
        write_json_string(out, epoch);
    }
    if let Some(ms) = options.throttle_ms {
        out.extend_from_slice(br#","throttle_ms":"#);
        out.extend_from_slice(itoa::Buffer::new().format(ms).as_bytes());
    }
    if options.binary {
        out.extend_from_slice(br#","binary":true"#);
    }
    if options.presence {
        out.extend_from_slice(br#","presence":true"#);
    }
    out.push(b'}');
}

/// `{"type":"message","channel":C,"key":K,"content":V}` plus `,"delete":true` when asked.
pub fn encode_publish_keyed(
    out: &mut Vec<u8>,
    channel: &str,
    key: &str,
    content_json: &str,
    delete: bool,
) {
    out.extend_from_slice(br#"{"type":"message","channel":"#);
    write_json_string(out, channel);
    out.extend_from_slice(br#","key":"#);
    write_json_string(out, key);
    out.extend_from_slice(br#","content":"#);
    out.extend_from_slice(content_json.as_bytes());
    if delete {
        out.extend_from_slice(br#","delete":true"#);
    }
    out.push(b'}');
}

/// `{"type":"unsubscribe","channel":C}`
pub fn encode_unsubscribe(out: &mut Vec<u8>, channel: &str) {
    out.extend_from_slice(br#"{"type":"unsubscribe","channel":"#);
    write_json_string(out, channel);
    out.push(b'}');
}

/// `{"type":"message","channel":C,"content":V}`. `content_json` is copied verbatim and must be
/// one JSON value; the relay answers `Invalid JSON` otherwise.
pub fn encode_publish(out: &mut Vec<u8>, channel: &str, content_json: &str) {
    out.extend_from_slice(br#"{"type":"message","channel":"#);
    write_json_string(out, channel);
    out.extend_from_slice(br#","content":"#);
    out.extend_from_slice(content_json.as_bytes());
    out.push(b'}');
}

/// `{"type":"ping"}`: the application heartbeat.
pub fn encode_ping(out: &mut Vec<u8>) {
    out.extend_from_slice(br#"{"type":"ping"}"#);
}

/// `{"type":"auth","token":T}`
pub fn encode_auth(out: &mut Vec<u8>, token: &str) -> Result<(), CommandBuildError> {
    if token.is_empty() || token.len() > TOKEN_BYTES_MAX {
        return Err(CommandBuildError::InvalidToken);
    }
    out.extend_from_slice(br#"{"type":"auth","token":"#);
    write_json_string(out, token);
    out.push(b'}');
    Ok(())
}

/// `[0x01][L][channel][payload]`: a binary publish.
pub fn encode_binary_publish(
    out: &mut Vec<u8>,
    channel: &str,
    payload: &[u8],
) -> Result<(), CommandBuildError> {
    check_channel(channel)?;
    let channel_len = u8::try_from(channel.len()).map_err(|_| CommandBuildError::InvalidChannel)?;
    out.reserve(2 + channel.len() + payload.len());
    out.extend_from_slice(&[BINARY_OP_PUBLISH, channel_len]);
    out.extend_from_slice(channel.as_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{decode_binary, Command, CommandDecoder};

    fn text(write: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        write(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn exact_bytes() {
        assert_eq!(
            text(|o| encode_subscribe(o, "md.BTC", Some(41), Some("e.0-3"))),
            r#"{"type":"subscribe","channel":"md.BTC","since":41,"epoch":"e.0-3"}"#
        );
        assert_eq!(
            text(|o| encode_subscribe(o, "a", None, None)),
            r#"{"type":"subscribe","channel":"a"}"#
        );
        assert_eq!(
            text(|o| encode_unsubscribe(o, "a")),
            r#"{"type":"unsubscribe","channel":"a"}"#
        );
        assert_eq!(
            text(|o| encode_publish(o, "a", r#"{"px":1}"#)),
            r#"{"type":"message","channel":"a","content":{"px":1}}"#
        );
        assert_eq!(text(encode_ping), r#"{"type":"ping"}"#);
        assert_eq!(
            text(|o| encode_auth(o, "t\"k").unwrap()),
            r#"{"type":"auth","token":"t\"k"}"#
        );
    }

    /// Paired assertion across the boundary: what the client encodes, the relay decodes.
    #[test]
    fn relay_decoder_reads_what_the_client_writes() {
        let mut decoder = CommandDecoder::new();
        let sub = text(|o| encode_subscribe(o, "c", Some(7), Some("e")));
        assert_eq!(
            decoder.decode(sub.as_bytes(), 128),
            Ok(Command::Subscribe {
                channel: "c",
                since: Some(7),
                epoch: Some("e"),
                throttle_ms: None,
                binary: false,
                presence: false,
            })
        );
        let publish = text(|o| encode_publish(o, "c", "[1, 2]"));
        assert_eq!(
            decoder.decode(publish.as_bytes(), 128),
            Ok(Command::Publish {
                channel: "c",
                content: b"[1, 2]",
                key: None,
                id: None,
                delete: false,
            })
        );
        let mut binary = Vec::new();
        encode_binary_publish(&mut binary, "c", b"\x00\xff").unwrap();
        let decoded = decode_binary(&binary, 128).unwrap();
        assert_eq!((decoded.channel, decoded.payload), ("c", &b"\x00\xff"[..]));
    }

    #[test]
    fn refuses_bad_channels_and_tokens() {
        let mut out = Vec::new();
        let long = "x".repeat(256);
        assert_eq!(
            encode_binary_publish(&mut out, &long, b""),
            Err(CommandBuildError::InvalidChannel)
        );
        assert_eq!(check_channel("a b"), Err(CommandBuildError::InvalidChannel));
        assert_eq!(
            encode_auth(&mut out, ""),
            Err(CommandBuildError::InvalidToken)
        );
        assert!(out.is_empty());
    }
}
