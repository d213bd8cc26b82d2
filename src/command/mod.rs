//! Application protocol codec of the relay (sans-IO): client commands in, server events out.
//!
//! Owns: the JSON command schema (`subscribe`, `unsubscribe`, `message`, `ping`, `auth`),
//! the binary data-plane layout, the channel-name rule, the client-facing error texts and
//! the exact bytes of every server message.
//!
//! May not touch: sockets, WebSocket framing (RFC 6455 headers are added by the caller; every
//! writer here appends only the *payload* of one message), subscriptions, sequence numbers or
//! authentication policy. It never allocates per message on the decode path beyond the
//! reusable scratch of [`CommandDecoder`].
//!
//! Invariants:
//! - A [`Command::Publish`] `content` is the verbatim byte span of the client's JSON value
//!   (whitespace around it trimmed), so fanout forwards exactly what was published.
//! - Every channel name this module accepts satisfies [`is_valid_channel_name`].
//! - Every JSON writer emits compact JSON with keys in the documented order and strings escaped
//!   per RFC 8259 section 7.
//!
//! Wire layouts (binary, all integers big-endian):
//! - client → server `[0x01][L: u8][L bytes channel][payload]`: publish (op [`BINARY_OP_PUBLISH`]);
//! - server → client `[0x01][L][channel][seq: u64][payload]`: message (op [`BINARY_OP_MESSAGE`]);
//! - server → client `[0x02][L][channel][from: u64][to: u64]`: gap (op [`BINARY_OP_GAP`]);
//! - server → client `[0x03][L][channel]` + entries `[seq u64][F u16][from][N u32][payload]`:
//!   a room tick's batch (op [`BINARY_OP_BATCH`], `game.rs`);
//! - server → client `[0x05][L][channel][seq: u64]...`: keyed snapshot (op
//!   [`BINARY_OP_SNAPSHOT`], `snapshot.rs`).

mod binary;
mod channel;
mod decode;
mod encode;
mod error;
mod game;
mod snapshot;
pub(crate) mod span;
pub(crate) mod tape;

pub use binary::{
    binary_message_len, decode_binary, encode_binary_ack, encode_binary_gap, encode_binary_message,
    BinaryPublish, EncodeError, BINARY_GAP_LEN_FIXED, BINARY_OP_ACK, BINARY_OP_GAP,
    BINARY_OP_MESSAGE, BINARY_OP_PUBLISH, BINARY_OP_PUBLISH_ACKED, CHANNEL_BYTES_MAX_BINARY,
};
pub use channel::is_valid_channel_name;
pub use decode::{Command, CommandDecoder, SCRATCH_BYTES_INITIAL, SCRATCH_BYTES_RETAINED_MAX};
pub use encode::{
    encode_ack, encode_authenticated, encode_connected, encode_error, encode_error_with_code,
    encode_error_with_id, encode_gap, encode_keyed_message, encode_message, encode_pong,
    encode_subscribed, encode_subscribed_throttled, encode_unsubscribed, json_string_len,
    message_len_hint, write_json_string,
};
pub use error::CommandError;
pub use game::{
    batch_close, batch_entry, batch_entry_len, batch_open, binary_batch_entry,
    binary_batch_entry_len, binary_batch_open, binary_message_payload, encode_presence,
    encode_presence_change, message_parts, MemberRef, BATCH_JSON_FIXED, BINARY_OP_BATCH,
};
pub use snapshot::{
    decode_binary_snapshot, encode_binary_snapshot, encode_snapshot, DecodedSnapshot,
    SnapshotEntry, SnapshotHead, BINARY_OP_SNAPSHOT, SNAPSHOT_ENTRY_BINARY,
};

/// Default upper bound of a channel name, in bytes (the caller passes its own `channel_bytes_max`).
pub const CHANNEL_BYTES_MAX_DEFAULT: usize = 128;

/// Upper bound of a conflation `key`, in bytes (fixed: not tied to the channel limit).
pub const KEY_BYTES_MAX: usize = 128;

/// Upper bound of a publish acknowledgement `id` (JSON or binary), in bytes.
pub const ACK_ID_BYTES_MAX: usize = 64;

/// Shortest `throttle_ms` a subscribe may ask for (one delivery per key per 10 ms).
pub const THROTTLE_MS_MIN: u32 = 10;
/// Longest `throttle_ms` a subscribe may ask for (one minute).
pub const THROTTLE_MS_MAX: u32 = 60_000;

/// Upper bound of an `auth` token (a JWT), in bytes after JSON unescaping.
pub const TOKEN_BYTES_MAX: usize = 8192;
