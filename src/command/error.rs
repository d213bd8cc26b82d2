//! Client-facing decode errors: one variant per rule, each with the exact text the server
//! sends back in `{"type":"error","message":...}` and a snake_case metrics label.

/// Why a client message (JSON text or binary) was rejected.
///
/// `Display` (via `thiserror`) and [`CommandError::message`] yield the same text; the unit
/// tests pin both for every variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Not valid JSON (RFC 8259), including invalid UTF-8 and numbers simd-json cannot
    /// represent (integers beyond 64 bits) and nesting deeper than simd-json's 1024 levels.
    #[error("Invalid JSON")]
    InvalidJson,
    /// Valid JSON whose top level is not an object.
    #[error("Invalid message: expected a JSON object")]
    NotAnObject,
    /// `type` is missing or not a string.
    #[error("Missing or invalid field: type")]
    InvalidType,
    /// `type` is a string naming no command.
    #[error("Unknown type")]
    UnknownType,
    /// `channel` is missing or not a string.
    #[error("Missing or invalid field: channel")]
    InvalidChannelField,
    /// `channel` (or the binary header's channel) breaks the channel-name rule. The text
    /// quotes the default limit: `message` is `&'static str` so it cannot embed the
    /// caller's `channel_bytes_max` without allocating.
    #[error("Invalid channel name: 1-128 bytes of [A-Za-z0-9._:-]")]
    InvalidChannelName,
    /// A `message` command without `content`.
    #[error("Missing field: content")]
    MissingContent,
    /// `since` is present but not a non-negative integer that fits in `u64`.
    #[error("Invalid field: since (expected a non-negative integer)")]
    InvalidSince,
    /// `epoch` is present but not a string.
    #[error("Invalid field: epoch (expected a string)")]
    InvalidEpoch,
    /// `key` is present but not 1-128 bytes of the channel charset.
    #[error("Invalid field: key (expected 1-128 bytes of [A-Za-z0-9._:-])")]
    InvalidKey,
    /// `id` (a publish acknowledgement request) is not a string of 1-64 bytes.
    #[error("Invalid field: id (expected a string of 1-64 bytes)")]
    InvalidId,
    /// `presence` (subscribe) is present but not a boolean.
    #[error("Invalid field: presence (expected true or false)")]
    InvalidPresence,
    /// `throttle_ms` is present but not an integer from 10 to 60,000.
    #[error("Invalid field: throttle_ms (expected an integer from 10 to 60000)")]
    InvalidThrottle,
    /// `binary` (subscribe) is present but not a boolean.
    #[error("Invalid field: binary (expected true or false)")]
    InvalidBinary,
    /// `delete` (publish) is present but not a boolean.
    #[error("Invalid field: delete (expected true or false)")]
    InvalidDelete,
    /// `token` is missing, not a string, empty or longer than 8192 bytes.
    #[error("Missing or invalid field: token")]
    InvalidToken,
    /// A field this protocol reads appears twice in the top-level object. Rejected rather
    /// than first- or last-wins so that no two parsers can disagree about which value counts.
    #[error("Duplicate field")]
    DuplicateField,
    /// A binary message with no bytes.
    #[error("Empty binary message")]
    EmptyBinary,
    /// A binary message whose first byte is not a known op.
    #[error("Unknown binary op")]
    UnknownBinaryOp,
    /// A binary message whose channel length byte is missing or exceeds the bytes left.
    #[error("Truncated binary header")]
    TruncatedBinaryHeader,
}

impl CommandError {
    /// Exact text for the client's `{"type":"error","message":...}`.
    pub fn message(&self) -> &'static str {
        match self {
            Self::InvalidJson => "Invalid JSON",
            Self::NotAnObject => "Invalid message: expected a JSON object",
            Self::InvalidType => "Missing or invalid field: type",
            Self::UnknownType => "Unknown type",
            Self::InvalidChannelField => "Missing or invalid field: channel",
            Self::InvalidChannelName => "Invalid channel name: 1-128 bytes of [A-Za-z0-9._:-]",
            Self::MissingContent => "Missing field: content",
            Self::InvalidSince => "Invalid field: since (expected a non-negative integer)",
            Self::InvalidEpoch => "Invalid field: epoch (expected a string)",
            Self::InvalidKey => "Invalid field: key (expected 1-128 bytes of [A-Za-z0-9._:-])",
            Self::InvalidId => "Invalid field: id (expected a string of 1-64 bytes)",
            Self::InvalidPresence => "Invalid field: presence (expected true or false)",
            Self::InvalidThrottle => {
                "Invalid field: throttle_ms (expected an integer from 10 to 60000)"
            }
            Self::InvalidBinary => "Invalid field: binary (expected true or false)",
            Self::InvalidDelete => "Invalid field: delete (expected true or false)",
            Self::InvalidToken => "Missing or invalid field: token",
            Self::DuplicateField => "Duplicate field",
            Self::EmptyBinary => "Empty binary message",
            Self::UnknownBinaryOp => "Unknown binary op",
            Self::TruncatedBinaryHeader => "Truncated binary header",
        }
    }

    /// Stable snake_case label for metrics (`command_errors_total{kind=...}`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::NotAnObject => "not_an_object",
            Self::InvalidType => "invalid_type",
            Self::UnknownType => "unknown_type",
            Self::InvalidChannelField => "invalid_channel_field",
            Self::InvalidChannelName => "invalid_channel_name",
            Self::MissingContent => "missing_content",
            Self::InvalidSince => "invalid_since",
            Self::InvalidEpoch => "invalid_epoch",
            Self::InvalidKey => "invalid_key",
            Self::InvalidId => "invalid_id",
            Self::InvalidPresence => "invalid_presence",
            Self::InvalidThrottle => "invalid_throttle",
            Self::InvalidBinary => "invalid_binary",
            Self::InvalidDelete => "invalid_delete",
            Self::InvalidToken => "invalid_token",
            Self::DuplicateField => "duplicate_field",
            Self::EmptyBinary => "empty_binary",
            Self::UnknownBinaryOp => "unknown_binary_op",
            Self::TruncatedBinaryHeader => "truncated_binary_header",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [CommandError; 20] = [
        CommandError::InvalidJson,
        CommandError::NotAnObject,
        CommandError::InvalidType,
        CommandError::UnknownType,
        CommandError::InvalidChannelField,
        CommandError::InvalidChannelName,
        CommandError::MissingContent,
        CommandError::InvalidSince,
        CommandError::InvalidEpoch,
        CommandError::InvalidKey,
        CommandError::InvalidId,
        CommandError::InvalidPresence,
        CommandError::InvalidThrottle,
        CommandError::InvalidBinary,
        CommandError::InvalidDelete,
        CommandError::InvalidToken,
        CommandError::DuplicateField,
        CommandError::EmptyBinary,
        CommandError::UnknownBinaryOp,
        CommandError::TruncatedBinaryHeader,
    ];

    #[test]
    fn display_equals_message_for_every_variant() {
        for error in ALL {
            assert_eq!(error.to_string(), error.message(), "{error:?}");
        }
    }

    #[test]
    fn kinds_are_unique_snake_case() {
        let mut kinds: Vec<&str> = ALL.iter().map(CommandError::kind).collect();
        assert!(kinds
            .iter()
            .all(|k| k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), ALL.len());
    }

    #[test]
    fn messages_are_unique() {
        let mut messages: Vec<&str> = ALL.iter().map(CommandError::message).collect();
        messages.sort_unstable();
        messages.dedup();
        assert_eq!(messages.len(), ALL.len());
    }
}
