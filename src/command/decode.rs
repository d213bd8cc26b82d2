//! Client → server JSON commands, decoded with simd-json's tape API (no `Value` tree).
//!
//! Pipeline per message: copy `text` into a padded scratch buffer (simd-json unescapes strings
//! in place, and the caller's bytes must stay intact for verbatim forwarding), build the tape
//! with [`simd_json::fill_tape_padded`] (validates the whole document, RFC 8259), collect the
//! known top-level members in one pass, then check the fields the command `type` needs.
//! A publish's `content` is located in the *original* text through simd-json's structural
//! indexes (see `span.rs`), so it is forwarded byte for byte.
//!
//! Field policy:
//! - unknown top-level fields are ignored, as are known fields the command does not use;
//! - a known field (`type`, `channel`, `since`, `epoch`, `presence`, `content`, `key`, `id`,
//!   `token`, `throttle_ms`, `binary`, `delete`) present twice is
//!   [`CommandError::DuplicateField`], whatever the command;
//! - optional fields (`since`, `epoch`, `key`, `presence`, `throttle_ms`, `binary`,
//!   `delete`) set to `null` count as absent, like serde's
//!   `Option`; `content: null` is a present value (a publish of `null`).
//!
//! Buffer policy (scratch, simd-json buffers, tape): they grow to fit the current message,
//! which the caller bounds with its WebSocket message limit. A decode after a message larger
//! than [`SCRATCH_BYTES_RETAINED_MAX`] releases them back to [`SCRATCH_BYTES_INITIAL`], so one
//! huge message does not pin memory for the connection's lifetime; they never shrink below
//! the initial size.

use simd_json::{Buffers, Node, StaticNode, Tape, INPUT_PADDING};

use crate::command::channel::is_valid_channel_name;
use crate::command::error::CommandError;
use crate::command::span::member_value_span;
use crate::command::tape::{for_each_member, Member};
use crate::command::{
    ACK_ID_BYTES_MAX, KEY_BYTES_MAX, THROTTLE_MS_MAX, THROTTLE_MS_MIN, TOKEN_BYTES_MAX,
};

/// Initial (and minimum) capacity of the decoder's scratch copy, in bytes.
pub const SCRATCH_BYTES_INITIAL: usize = 4096;
/// Largest scratch capacity kept between messages; above it, buffers are released on the
/// next decode of a message that fits in it.
pub const SCRATCH_BYTES_RETAINED_MAX: usize = 64 * 1024;
/// Initial tape capacity, in nodes (a publish of a small object needs a few dozen).
const TAPE_NODES_INITIAL: usize = 256;

/// One decoded client command. Strings borrow the decoder's scratch (unescaped) and
/// `content` borrows the original text (verbatim).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// `{"type":"subscribe","channel":C[,"since":u64][,"epoch":E]}`
    Subscribe {
        /// Channel to subscribe to (passed the channel-name rule).
        channel: &'a str,
        /// Last sequence number the client saw, to resume after it.
        since: Option<u64>,
        /// Epoch of the numbering `since` belongs to.
        epoch: Option<&'a str>,
        /// `throttle_ms`: at most one delivery per key every this many ms, the latest
        /// ([`THROTTLE_MS_MIN`]..=[`THROTTLE_MS_MAX`]).
        throttle_ms: Option<u32>,
        /// `"binary":true`: a snapshot comes as a binary frame (op `0x05`).
        binary: bool,
        /// `"presence":true`: also receive the member list and joins/leaves.
        presence: bool,
    },
    /// `{"type":"presence","channel":C}`: the channel's member list, now.
    Presence {
        /// Channel asked about.
        channel: &'a str,
    },
    /// `{"type":"unsubscribe","channel":C}`
    Unsubscribe {
        /// Channel to leave.
        channel: &'a str,
    },
    /// `{"type":"message","channel":C,"content":V[,"key":K][,"id":I]}`
    Publish {
        /// Target channel.
        channel: &'a str,
        /// Verbatim bytes of the JSON value `V`, whitespace around it trimmed.
        content: &'a [u8],
        /// Conflation key (1-128 bytes of the channel charset).
        key: Option<&'a str>,
        /// Acknowledgement requested under this id (1-64 bytes): the relay answers
        /// `{"type":"ack","id":I,...}` once the message is numbered.
        id: Option<&'a str>,
        /// `"delete":true`: the message removes its key from the channel's snapshot.
        delete: bool,
    },
    /// `{"type":"ping"}`
    Ping,
    /// `{"type":"auth","token":T}`
    Auth {
        /// The bearer token (a JWT), non-empty, at most 8192 bytes.
        token: &'a str,
    },
}

/// Reusable decoder: one per event-loop thread, so the buffers are warm for every message.
pub struct CommandDecoder {
    /// Padded copy of the message, unescaped in place by simd-json.
    scratch: Vec<u8>,
    /// simd-json's stage-1/stage-2 working memory, including the structural indexes.
    buffers: Buffers,
    /// Tape storage; empty between calls, its lifetime rebound per message by `Tape::reset`.
    tape: Tape<'static>,
}

impl std::fmt::Debug for CommandDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandDecoder")
            .field("scratch_capacity", &self.scratch.capacity())
            .finish_non_exhaustive()
    }
}

impl Default for CommandDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl CommandDecoder {
    /// A decoder with buffers sized for [`SCRATCH_BYTES_INITIAL`]-byte messages.
    pub fn new() -> Self {
        Self {
            scratch: Vec::with_capacity(SCRATCH_BYTES_INITIAL + INPUT_PADDING),
            buffers: Buffers::new(SCRATCH_BYTES_INITIAL),
            tape: Tape(Vec::with_capacity(TAPE_NODES_INITIAL)),
        }
    }

    /// Decodes one JSON text message. `text` is not modified; see the module docs for the
    /// field policy. `channel_bytes_max` bounds `channel` (default
    /// [`crate::command::CHANNEL_BYTES_MAX_DEFAULT`]).
    pub fn decode<'a>(
        &'a mut self,
        text: &'a [u8],
        channel_bytes_max: usize,
    ) -> Result<Command<'a>, CommandError> {
        self.release_oversized(text.len());
        let Self {
            scratch,
            buffers,
            tape: tape_slot,
        } = self;
        copy_padded(scratch, text);
        let mut tape = std::mem::replace(tape_slot, Tape(Vec::new())).reset();
        let result = simd_json::fill_tape_padded(scratch, text.len(), buffers, &mut tape)
            .map_err(|_| CommandError::InvalidJson)
            .and_then(|()| {
                let located = Located {
                    text,
                    structurals: buffers.structural_indexes(),
                };
                interpret(&tape.0, located, channel_bytes_max)
            });
        *tape_slot = tape.reset();
        result
    }

    /// Applies the buffer policy: drop capacity above the retained maximum once a message
    /// that fits in it arrives.
    fn release_oversized(&mut self, text_bytes: usize) {
        let oversized = self.scratch.capacity() > SCRATCH_BYTES_RETAINED_MAX + INPUT_PADDING;
        if oversized && text_bytes <= SCRATCH_BYTES_RETAINED_MAX {
            *self = Self::new();
        }
    }
}

/// Scratch = `text` followed by the padding simd-json's SIMD loads may over-read.
fn copy_padded(scratch: &mut Vec<u8>, text: &[u8]) {
    scratch.clear();
    scratch.reserve(text.len() + INPUT_PADDING);
    scratch.extend_from_slice(text);
    scratch.resize(text.len() + INPUT_PADDING, b' ');
}

/// The original text and simd-json's structural indexes for it, to locate verbatim spans.
#[derive(Clone, Copy)]
struct Located<'a, 's> {
    text: &'a [u8],
    structurals: &'s [u32],
}

/// The known top-level members of one message.
#[derive(Default)]
struct Fields<'a> {
    kind: Option<Member<'a>>,
    channel: Option<Member<'a>>,
    since: Option<Member<'a>>,
    epoch: Option<Member<'a>>,
    content: Option<Member<'a>>,
    key: Option<Member<'a>>,
    id: Option<Member<'a>>,
    token: Option<Member<'a>>,
    presence: Option<Member<'a>>,
    throttle_ms: Option<Member<'a>>,
    binary: Option<Member<'a>>,
    delete: Option<Member<'a>>,
}

impl<'a> Fields<'a> {
    /// One pass over the root object's members; nested values are skipped by node count.
    fn collect(nodes: &[Node<'a>]) -> Result<Self, CommandError> {
        let mut fields = Self::default();
        let errors = (CommandError::NotAnObject, CommandError::InvalidJson);
        for_each_member(nodes, errors, |name, member| fields.record(name, member))?;
        Ok(fields)
    }

    fn record(&mut self, name: &str, member: Member<'a>) -> Result<(), CommandError> {
        let slot = match name {
            "type" => &mut self.kind,
            "channel" => &mut self.channel,
            "since" => &mut self.since,
            "epoch" => &mut self.epoch,
            "content" => &mut self.content,
            "key" => &mut self.key,
            "id" => &mut self.id,
            "token" => &mut self.token,
            "presence" => &mut self.presence,
            "throttle_ms" => &mut self.throttle_ms,
            "binary" => &mut self.binary,
            "delete" => &mut self.delete,
            _ => return Ok(()),
        };
        match slot.replace(member) {
            Some(_) => Err(CommandError::DuplicateField),
            None => Ok(()),
        }
    }

    fn channel(&self, channel_bytes_max: usize) -> Result<&'a str, CommandError> {
        let channel = string_value(self.channel).ok_or(CommandError::InvalidChannelField)?;
        if !is_valid_channel_name(channel.as_bytes(), channel_bytes_max) {
            return Err(CommandError::InvalidChannelName);
        }
        Ok(channel)
    }
}

fn string_value(member: Option<Member<'_>>) -> Option<&str> {
    match member?.value {
        Node::String(s) => Some(s),
        _ => None,
    }
}

/// `None` when the member is absent or `null`; `Some(node)` otherwise.
fn optional_value(member: Option<Member<'_>>) -> Option<Node<'_>> {
    match member?.value {
        Node::Static(StaticNode::Null) => None,
        value => Some(value),
    }
}

fn interpret<'a>(
    nodes: &[Node<'a>],
    located: Located<'a, '_>,
    channel_bytes_max: usize,
) -> Result<Command<'a>, CommandError> {
    let fields = Fields::collect(nodes)?;
    match string_value(fields.kind).ok_or(CommandError::InvalidType)? {
        "subscribe" => subscribe(&fields, channel_bytes_max),
        "unsubscribe" => Ok(Command::Unsubscribe {
            channel: fields.channel(channel_bytes_max)?,
        }),
        "message" => publish(&fields, located, channel_bytes_max),
        "ping" => Ok(Command::Ping),
        "presence" => Ok(Command::Presence {
            channel: fields.channel(channel_bytes_max)?,
        }),
        "auth" => auth(&fields),
        _ => Err(CommandError::UnknownType),
    }
}

fn subscribe<'a>(
    fields: &Fields<'a>,
    channel_bytes_max: usize,
) -> Result<Command<'a>, CommandError> {
    let channel = fields.channel(channel_bytes_max)?;
    let since = match optional_value(fields.since) {
        None => None,
        Some(Node::Static(StaticNode::U64(n))) => Some(n),
        Some(Node::Static(StaticNode::I64(n))) => {
            Some(u64::try_from(n).map_err(|_| CommandError::InvalidSince)?)
        }
        Some(_) => return Err(CommandError::InvalidSince),
    };
    let epoch = match optional_value(fields.epoch) {
        None => None,
        Some(Node::String(epoch)) => Some(epoch),
        Some(_) => return Err(CommandError::InvalidEpoch),
    };
    let throttle_ms = match optional_value(fields.throttle_ms) {
        None => None,
        Some(Node::Static(StaticNode::U64(n))) => Some(throttle_in_range(n)?),
        Some(Node::Static(StaticNode::I64(n))) => {
            Some(throttle_in_range(u64::try_from(n).unwrap_or(0))?)
        }
        Some(_) => return Err(CommandError::InvalidThrottle),
    };
    Ok(Command::Subscribe {
        channel,
        since,
        epoch,
        throttle_ms,
        binary: flag(fields.binary, CommandError::InvalidBinary)?,
        presence: flag(fields.presence, CommandError::InvalidPresence)?,
    })
}

/// `throttle_ms` must be within [`THROTTLE_MS_MIN`]..=[`THROTTLE_MS_MAX`].
fn throttle_in_range(n: u64) -> Result<u32, CommandError> {
    match u32::try_from(n) {
        Ok(ms) if (THROTTLE_MS_MIN..=THROTTLE_MS_MAX).contains(&ms) => Ok(ms),
        _ => Err(CommandError::InvalidThrottle),
    }
}

/// An optional boolean field: absent or `null` is false.
fn flag(member: Option<Member<'_>>, invalid: CommandError) -> Result<bool, CommandError> {
    match optional_value(member) {
        None => Ok(false),
        Some(Node::Static(StaticNode::Bool(b))) => Ok(b),
        Some(_) => Err(invalid),
    }
}

fn publish<'a>(
    fields: &Fields<'a>,
    located: Located<'a, '_>,
    channel_bytes_max: usize,
) -> Result<Command<'a>, CommandError> {
    let channel = fields.channel(channel_bytes_max)?;
    let content_member = fields.content.ok_or(CommandError::MissingContent)?;
    let key = match optional_value(fields.key) {
        None => None,
        Some(Node::String(key)) if is_valid_channel_name(key.as_bytes(), KEY_BYTES_MAX) => {
            Some(key)
        }
        Some(_) => return Err(CommandError::InvalidKey),
    };
    let id = match optional_value(fields.id) {
        None => None,
        Some(Node::String(id)) if (1..=ACK_ID_BYTES_MAX).contains(&id.len()) => Some(id),
        Some(_) => return Err(CommandError::InvalidId),
    };
    // The document is valid, so a span is always found; `InvalidJson` only guards against a
    // structural-index layout this module does not expect.
    let span = member_value_span(
        located.text,
        located.structurals,
        content_member.ordinal,
        content_member.is_last,
    )
    .ok_or(CommandError::InvalidJson)?;
    let content = located.text.get(span).ok_or(CommandError::InvalidJson)?;
    Ok(Command::Publish {
        channel,
        content,
        key,
        id,
        delete: flag(fields.delete, CommandError::InvalidDelete)?,
    })
}

fn auth<'a>(fields: &Fields<'a>) -> Result<Command<'a>, CommandError> {
    match string_value(fields.token) {
        Some(token) if !token.is_empty() && token.len() <= TOKEN_BYTES_MAX => {
            Ok(Command::Auth { token })
        }
        _ => Err(CommandError::InvalidToken),
    }
}

#[cfg(test)]
mod tests;
