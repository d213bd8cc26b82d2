//! Server → client messages of the wsrelay protocol (docs/PROTOCOL.md), parsed with
//! simd-json's tape (no `Value` tree) into borrowed, typed events.
//!
//! Owns: the schema of `connected`, `subscribed`, `unsubscribed`, `message`, `gap`, `pong`,
//! `authenticated`, `error` and of the binary message and gap. May not touch: connection or
//! subscription state (the session interprets the events).
//!
//! Policy: unknown fields are ignored (the relay may add some); a message whose `type` is not
//! one of the above is [`ServerEventError::UnknownType`], which the session passes to the
//! application verbatim instead of failing. A delivery's `content` is the verbatim span of the
//! server's text, found through simd-json's structural indexes like the relay's own decoder,
//! so the application parses it with whatever JSON library it likes.
//!
//! Buffers (scratch copy, simd-json buffers, tape) grow to the largest message, which the
//! connection's message limit bounds.

use simd_json::{Buffers, Node, StaticNode, Tape, INPUT_PADDING};

use crate::command::span::member_value_span;
use crate::command::tape::{for_each_member, Member};
use crate::command::{BINARY_OP_BATCH, BINARY_OP_GAP, BINARY_OP_MESSAGE};

/// Initial scratch capacity, in bytes (a delivery of small content fits).
const SCRATCH_BYTES_INITIAL: usize = 1024;

/// One server text message. Strings borrow the parser's scratch (unescaped); `content`
/// borrows the received text (verbatim JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerEvent<'a> {
    /// `{"type":"connected","id":I}`: first message of a connection.
    Connected {
        /// This connection's id (the `from` of its publishes).
        id: &'a str,
    },
    /// `{"type":"subscribed","channel":C,"seq":N,"epoch":E[,"recovered":B]}`
    Subscribed {
        /// The channel.
        channel: &'a str,
        /// The channel's current sequence number.
        seq: u64,
        /// The numbering the sequence belongs to.
        epoch: &'a str,
        /// Present when the subscribe carried `since`: whether the missed messages follow.
        recovered: Option<bool>,
        /// The interval of a throttled subscription.
        throttle_ms: Option<u32>,
    },
    /// `{"type":"unsubscribed","channel":C}`
    Unsubscribed {
        /// The channel.
        channel: &'a str,
    },
    /// `{"type":"message","channel":C,"content":V,"from":F,"seq":N}`
    Message {
        /// The channel.
        channel: &'a str,
        /// Verbatim JSON of the published value.
        content: &'a str,
        /// Id of the publishing connection.
        from: &'a str,
        /// Sequence number within the channel.
        seq: u64,
        /// The publish's `key`, if it had one.
        key: Option<&'a str>,
        /// `"delete":true`: the key was removed from the channel's snapshot.
        delete: bool,
    },
    /// `{"type":"snapshot","channel":C,"seq":N,"epoch":E,"entries":[...]}`: the latest
    /// message per key; live messages follow from `seq + 1`.
    Snapshot {
        /// The channel.
        channel: &'a str,
        /// Every message up to this seq is reflected.
        seq: u64,
        /// The numbering's epoch.
        epoch: &'a str,
        /// Verbatim JSON of the `entries` array ([`ServerEventParser::snapshot_entries`]).
        entries: &'a str,
    },
    /// `{"type":"gap","channel":C,"from":S1,"to":S2}`: messages `S1..=S2` were skipped.
    Gap {
        /// The channel.
        channel: &'a str,
        /// First skipped seq.
        from: u64,
        /// Last skipped seq.
        to: u64,
    },
    /// `{"type":"pong"}`
    Pong,
    /// `{"type":"authenticated","sub":S}`
    Authenticated {
        /// The token's subject.
        sub: &'a str,
    },
    /// `{"type":"error","message":M}`
    Error {
        /// Human-readable reason.
        message: &'a str,
    },
    /// `{"type":"batch","channel":C,"messages":[…]}`: a room tick (`--tick-for`). The
    /// entries are read with [`ServerEventParser::batch_entries`] from `messages`.
    Batch {
        /// The channel.
        channel: &'a str,
        /// Byte range of the `messages` array in the parsed text.
        messages: (usize, usize),
    },
    /// `{"type":"presence","channel":C,"count":n,"members":[…]}`; members are read with
    /// [`ServerEventParser::members`] from `members`.
    Presence {
        /// The channel.
        channel: &'a str,
        /// Exact number of members.
        count: u64,
        /// Byte range of the `members` array in the parsed text.
        members: (usize, usize),
    },
    /// `{"type":"join"|"leave","channel":C,"member":{…}}`; the member is read with
    /// [`ServerEventParser::members`] from `member` (an object: one member).
    PresenceChange {
        /// `join` (true) or `leave`.
        joined: bool,
        /// The channel.
        channel: &'a str,
        /// Byte range of the `member` object in the parsed text.
        member: (usize, usize),
    },
}

/// One entry of a JSON batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchMessage {
    /// Verbatim JSON of the published value.
    pub content: String,
    /// Sequence number within the channel.
    pub seq: u64,
    /// Publisher's connection id (or subject).
    pub from: String,
}

/// One entry of a binary batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryBatchMessage {
    /// Sequence number within the channel.
    pub seq: u64,
    /// Publisher's connection id (or subject).
    pub from: String,
    /// Opaque payload.
    pub payload: Vec<u8>,
}

/// A presence member.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PresenceMember {
    /// The member connection's id.
    pub id: String,
    /// Its authenticated subject (`None` without authentication).
    pub sub: Option<String>,
}

/// One server binary message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryEvent<'a> {
    /// `[0x01][L][channel][seq u64 BE][payload]`
    Message {
        /// The channel.
        channel: &'a str,
        /// Sequence number within the channel.
        seq: u64,
        /// Opaque payload.
        payload: &'a [u8],
    },
    /// `[0x02][L][channel][from u64 BE][to u64 BE]`
    Gap {
        /// The channel.
        channel: &'a str,
        /// First skipped seq.
        from: u64,
        /// Last skipped seq.
        to: u64,
    },
    /// `[0x03][L][channel]` + entries `[seq u64][F u16][from][N u32][payload]`: a room tick.
    Batch {
        /// The channel.
        channel: &'a str,
        /// The entries, read with [`binary_batch_entries`].
        entries: &'a [u8],
    },
}

/// Reads the entries of a binary batch (`BinaryEvent::Batch::entries`).
pub fn binary_batch_entries(
    mut entries: &[u8],
) -> Result<Vec<BinaryBatchMessage>, ServerEventError> {
    let malformed = ServerEventError::MalformedBinary;
    let mut out = Vec::new();
    while let Some((seq, rest)) = entries.split_first_chunk::<8>() {
        let (from_len, rest) = rest.split_first_chunk::<2>().ok_or(malformed)?;
        let (from, rest) = rest
            .split_at_checked(usize::from(u16::from_be_bytes(*from_len)))
            .ok_or(malformed)?;
        let (len, rest) = rest.split_first_chunk::<4>().ok_or(malformed)?;
        let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| malformed)?;
        let (payload, rest) = rest.split_at_checked(len).ok_or(malformed)?;
        out.push(BinaryBatchMessage {
            seq: u64::from_be_bytes(*seq),
            from: String::from_utf8_lossy(from).into_owned(),
            payload: payload.to_vec(),
        });
        entries = rest;
    }
    match entries.is_empty() {
        true => Ok(out),
        false => Err(malformed),
    }
}

/// Why a server message was not understood. One variant per rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ServerEventError {
    /// Not valid JSON (RFC 8259).
    #[error("invalid JSON")]
    InvalidJson,
    /// Valid JSON, but not an object.
    #[error("not a JSON object")]
    NotAnObject,
    /// `type` is missing or not a string.
    #[error("missing or invalid type")]
    InvalidType,
    /// `type` names no known server message.
    #[error("unknown type")]
    UnknownType,
    /// A field the type needs is missing or has the wrong JSON type.
    #[error("missing or invalid field {0}")]
    InvalidField(&'static str),
    /// A binary message shorter than its header, or an unknown op byte.
    #[error("malformed binary message")]
    MalformedBinary,
}

/// Reusable parser: one per session, so its buffers stay warm.
pub struct ServerEventParser {
    scratch: Vec<u8>,
    buffers: Buffers,
    tape: Tape<'static>,
}

impl std::fmt::Debug for ServerEventParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerEventParser")
            .field("scratch_capacity", &self.scratch.capacity())
            .finish_non_exhaustive()
    }
}

impl Default for ServerEventParser {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerEventParser {
    /// A parser with small initial buffers.
    pub fn new() -> Self {
        Self {
            scratch: Vec::with_capacity(SCRATCH_BYTES_INITIAL + INPUT_PADDING),
            buffers: Buffers::new(SCRATCH_BYTES_INITIAL),
            tape: Tape(Vec::new()),
        }
    }

    /// Parses the `entries` of a [`ServerEvent::Snapshot`] (the verbatim array) into owned
    /// entries: key, verbatim JSON content, seq.
    pub fn snapshot_entries(&mut self, array: &str) -> Result<Vec<SnapshotItem>, ServerEventError> {
        let spans = self.with_tape(array, |nodes, structurals| {
            let Some(&Node::Array { len, .. }) = nodes.first() else {
                return Err(ServerEventError::InvalidField("entries"));
            };
            match crate::command::span::array_element_spans(array.as_bytes(), structurals) {
                Some(spans) if spans.len() == len => Ok(spans),
                _ => Err(ServerEventError::InvalidField("entries")),
            }
        })?;
        let mut items = Vec::with_capacity(spans.len());
        for span in spans {
            let text = array.get(span).ok_or(ServerEventError::InvalidJson)?;
            let item = self.with_tape(text, |nodes, structurals| {
                let fields = Fields::collect(nodes)?;
                Ok(SnapshotItem {
                    key: optional_string(fields.key, "key")?.map(str::to_owned),
                    content: content_span(fields.content, text, structurals)?.into(),
                    seq: unsigned(fields.seq, "seq")?,
                    binary: false,
                })
            })?;
            items.push(item);
        }
        Ok(items)
    }

    /// Runs `read` over the tape and structural indexes of `text`.
    fn with_tape<T>(
        &mut self,
        text: &str,
        read: impl FnOnce(&[Node<'_>], &[u32]) -> Result<T, ServerEventError>,
    ) -> Result<T, ServerEventError> {
        let Self {
            scratch,
            buffers,
            tape: tape_slot,
        } = self;
        scratch.clear();
        scratch.extend_from_slice(text.as_bytes());
        scratch.resize(text.len() + INPUT_PADDING, b' ');
        let mut tape = std::mem::replace(tape_slot, Tape(Vec::new())).reset();
        let result = simd_json::fill_tape_padded(scratch, text.len(), buffers, &mut tape)
            .map_err(|_| ServerEventError::InvalidJson)
            .and_then(|()| read(&tape.0, buffers.structural_indexes()));
        *tape_slot = tape.reset();
        result
    }

    /// Parses one text message (already validated UTF-8 by the WebSocket layer).
    pub fn parse<'a>(&'a mut self, text: &'a str) -> Result<ServerEvent<'a>, ServerEventError> {
        let Self {
            scratch,
            buffers,
            tape: tape_slot,
        } = self;
        // simd-json unescapes strings in place: parse a padded copy, keep `text` intact.
        scratch.clear();
        scratch.extend_from_slice(text.as_bytes());
        scratch.resize(text.len() + INPUT_PADDING, b' ');
        let mut tape = std::mem::replace(tape_slot, Tape(Vec::new())).reset();
        let result = simd_json::fill_tape_padded(scratch, text.len(), buffers, &mut tape)
            .map_err(|_| ServerEventError::InvalidJson)
            .and_then(|()| {
                let fields = Fields::collect(&tape.0)?;
                interpret(&fields, text, buffers.structural_indexes())
            });
        *tape_slot = tape.reset();
        result
    }
}

impl ServerEventParser {
    /// The entries of a batch's `messages` array (`ServerEvent::Batch`), `content` verbatim.
    pub fn batch_entries(&mut self, array: &str) -> Result<Vec<BatchMessage>, ServerEventError> {
        let mut out = Vec::new();
        for element in self.array_elements(array)? {
            let text = array.get(element.0..element.1).unwrap_or_default();
            let entry = self.with_fields(text, |fields, text, structurals| {
                Ok(BatchMessage {
                    content: content_span(fields.content, text, structurals)?.to_owned(),
                    seq: unsigned(fields.seq, "seq")?,
                    from: string(fields.from, "from")?.to_owned(),
                })
            })?;
            out.push(entry);
        }
        Ok(out)
    }

    /// The members of a `presence` list (an array) or of a join/leave (one object).
    pub fn members(&mut self, json: &str) -> Result<Vec<PresenceMember>, ServerEventError> {
        let elements = match json.trim_start().starts_with('[') {
            true => self.array_elements(json)?,
            false => vec![(0, json.len())],
        };
        let mut out = Vec::with_capacity(elements.len());
        for element in elements {
            let text = json.get(element.0..element.1).unwrap_or_default();
            out.push(self.with_fields(text, |fields, _, _| {
                let sub = match fields.sub.map(|m| m.value) {
                    Some(Node::String(s)) => Some(s.to_owned()),
                    None | Some(Node::Static(StaticNode::Null)) => None,
                    Some(_) => return Err(ServerEventError::InvalidField("sub")),
                };
                Ok(PresenceMember {
                    id: string(fields.id, "id")?.to_owned(),
                    sub,
                })
            })?);
        }
        Ok(out)
    }

    /// Byte ranges of the elements of the JSON array `text`.
    fn array_elements(&mut self, text: &str) -> Result<Vec<(usize, usize)>, ServerEventError> {
        self.with_tape(text, |_, structurals| {
            crate::command::span::array_element_spans(text.as_bytes(), structurals)
                .map(|spans| spans.into_iter().map(|r| (r.start, r.end)).collect())
                .ok_or(ServerEventError::InvalidJson)
        })
    }

    /// Parses the object `text` and hands its fields to `read`.
    fn with_fields<T>(
        &mut self,
        text: &str,
        read: impl FnOnce(&Fields<'_>, &str, &[u32]) -> Result<T, ServerEventError>,
    ) -> Result<T, ServerEventError> {
        self.with_tape(text, |nodes, structurals| {
            let fields = Fields::collect(nodes)?;
            read(&fields, text, structurals)
        })
    }
}

/// One entry of a snapshot, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotItem {
    /// The key (`None`: messages published without one).
    pub key: Option<String>,
    /// The verbatim JSON content, or the binary payload when `binary`.
    pub content: Vec<u8>,
    /// The message's seq.
    pub seq: u64,
    /// A binary payload (binary snapshots only).
    pub binary: bool,
}

/// Parses one binary message.
pub fn parse_binary(msg: &[u8]) -> Result<BinaryEvent<'_>, ServerEventError> {
    let [op, channel_len, rest @ ..] = msg else {
        return Err(ServerEventError::MalformedBinary);
    };
    let (channel, rest) = rest
        .split_at_checked(usize::from(*channel_len))
        .ok_or(ServerEventError::MalformedBinary)?;
    let channel = std::str::from_utf8(channel).map_err(|_| ServerEventError::MalformedBinary)?;
    if *op == BINARY_OP_BATCH {
        return Ok(BinaryEvent::Batch {
            channel,
            entries: rest,
        });
    }
    let (first, rest) = rest
        .split_first_chunk::<8>()
        .ok_or(ServerEventError::MalformedBinary)?;
    let first = u64::from_be_bytes(*first);
    match *op {
        BINARY_OP_MESSAGE => Ok(BinaryEvent::Message {
            channel,
            seq: first,
            payload: rest,
        }),
        BINARY_OP_GAP => {
            let to = rest
                .first_chunk::<8>()
                .filter(|_| rest.len() == 8)
                .ok_or(ServerEventError::MalformedBinary)?;
            Ok(BinaryEvent::Gap {
                channel,
                from: first,
                to: u64::from_be_bytes(*to),
            })
        }
        _ => Err(ServerEventError::MalformedBinary),
    }
}

/// The known top-level members of one server message (later duplicates win; the relay never
/// sends any).
#[derive(Default)]
struct Fields<'a> {
    kind: Option<Member<'a>>,
    channel: Option<Member<'a>>,
    seq: Option<Member<'a>>,
    epoch: Option<Member<'a>>,
    recovered: Option<Member<'a>>,
    content: Option<Member<'a>>,
    from: Option<Member<'a>>,
    to: Option<Member<'a>>,
    id: Option<Member<'a>>,
    sub: Option<Member<'a>>,
    message: Option<Member<'a>>,
    messages: Option<Member<'a>>,
    count: Option<Member<'a>>,
    members: Option<Member<'a>>,
    member: Option<Member<'a>>,
    key: Option<Member<'a>>,
    delete: Option<Member<'a>>,
    throttle_ms: Option<Member<'a>>,
    entries: Option<Member<'a>>,
}

impl<'a> Fields<'a> {
    fn collect(nodes: &[Node<'a>]) -> Result<Self, ServerEventError> {
        let mut fields = Self::default();
        let errors = (ServerEventError::NotAnObject, ServerEventError::InvalidJson);
        for_each_member(nodes, errors, |name, member| {
            if let Some(slot) = fields.slot(name) {
                *slot = Some(member);
            }
            Ok(())
        })?;
        Ok(fields)
    }

    fn slot(&mut self, name: &str) -> Option<&mut Option<Member<'a>>> {
        Some(match name {
            "type" => &mut self.kind,
            "channel" => &mut self.channel,
            "seq" => &mut self.seq,
            "epoch" => &mut self.epoch,
            "recovered" => &mut self.recovered,
            "content" => &mut self.content,
            "from" => &mut self.from,
            "to" => &mut self.to,
            "id" => &mut self.id,
            "sub" => &mut self.sub,
            "message" => &mut self.message,
            "messages" => &mut self.messages,
            "count" => &mut self.count,
            "members" => &mut self.members,
            "member" => &mut self.member,
            "key" => &mut self.key,
            "delete" => &mut self.delete,
            "throttle_ms" => &mut self.throttle_ms,
            "entries" => &mut self.entries,
            _ => return None,
        })
    }
}

fn string<'a>(member: Option<Member<'a>>, name: &'static str) -> Result<&'a str, ServerEventError> {
    match member.map(|m| m.value) {
        Some(Node::String(s)) => Ok(s),
        _ => Err(ServerEventError::InvalidField(name)),
    }
}

fn unsigned(member: Option<Member<'_>>, name: &'static str) -> Result<u64, ServerEventError> {
    match member.map(|m| m.value) {
        Some(Node::Static(StaticNode::U64(n))) => Ok(n),
        Some(Node::Static(StaticNode::I64(n))) => {
            u64::try_from(n).map_err(|_| ServerEventError::InvalidField(name))
        }
        _ => Err(ServerEventError::InvalidField(name)),
    }
}

fn optional_bool(
    member: Option<Member<'_>>,
    name: &'static str,
) -> Result<Option<bool>, ServerEventError> {
    match member.map(|m| m.value) {
        None | Some(Node::Static(StaticNode::Null)) => Ok(None),
        Some(Node::Static(StaticNode::Bool(b))) => Ok(Some(b)),
        Some(_) => Err(ServerEventError::InvalidField(name)),
    }
}

/// An optional unsigned member that must fit in 32 bits.
fn optional_u32(
    member: Option<Member<'_>>,
    name: &'static str,
) -> Result<Option<u32>, ServerEventError> {
    match member {
        None => Ok(None),
        Some(m) => u32::try_from(unsigned(Some(m), name)?)
            .map(Some)
            .map_err(|_| ServerEventError::InvalidField(name)),
    }
}

fn interpret<'a>(
    fields: &Fields<'a>,
    text: &'a str,
    structurals: &[u32],
) -> Result<ServerEvent<'a>, ServerEventError> {
    let kind = string(fields.kind, "type").map_err(|_| ServerEventError::InvalidType)?;
    Ok(match kind {
        "message" => ServerEvent::Message {
            channel: string(fields.channel, "channel")?,
            content: content_span(fields.content, text, structurals)?,
            from: string(fields.from, "from")?,
            seq: unsigned(fields.seq, "seq")?,
            key: optional_string(fields.key, "key")?,
            delete: optional_bool(fields.delete, "delete")? == Some(true),
        },
        "subscribed" => ServerEvent::Subscribed {
            channel: string(fields.channel, "channel")?,
            seq: unsigned(fields.seq, "seq")?,
            epoch: string(fields.epoch, "epoch")?,
            recovered: optional_bool(fields.recovered, "recovered")?,
            throttle_ms: optional_u32(fields.throttle_ms, "throttle_ms")?,
        },
        "snapshot" => ServerEvent::Snapshot {
            channel: string(fields.channel, "channel")?,
            seq: unsigned(fields.seq, "seq")?,
            epoch: string(fields.epoch, "epoch")?,
            entries: member_span(fields.entries, "entries", text, structurals)?,
        },
        "pong" => ServerEvent::Pong,
        "gap" => ServerEvent::Gap {
            channel: string(fields.channel, "channel")?,
            from: unsigned(fields.from, "from")?,
            to: unsigned(fields.to, "to")?,
        },
        "connected" => ServerEvent::Connected {
            id: string(fields.id, "id")?,
        },
        "unsubscribed" => ServerEvent::Unsubscribed {
            channel: string(fields.channel, "channel")?,
        },
        "authenticated" => ServerEvent::Authenticated {
            sub: string(fields.sub, "sub")?,
        },
        "error" => ServerEvent::Error {
            message: string(fields.message, "message")?,
        },
        "batch" => ServerEvent::Batch {
            channel: string(fields.channel, "channel")?,
            messages: value_range(fields.messages, "messages", text, structurals)?,
        },
        "presence" => ServerEvent::Presence {
            channel: string(fields.channel, "channel")?,
            count: unsigned(fields.count, "count")?,
            members: value_range(fields.members, "members", text, structurals)?,
        },
        "join" | "leave" => ServerEvent::PresenceChange {
            joined: kind == "join",
            channel: string(fields.channel, "channel")?,
            member: value_range(fields.member, "member", text, structurals)?,
        },
        _ => return Err(ServerEventError::UnknownType),
    })
}

/// The byte range of a member's value in the parsed text.
fn value_range(
    member: Option<Member<'_>>,
    name: &'static str,
    text: &str,
    structurals: &[u32],
) -> Result<(usize, usize), ServerEventError> {
    let member = member.ok_or(ServerEventError::InvalidField(name))?;
    member_value_span(text.as_bytes(), structurals, member.ordinal, member.is_last)
        .map(|span| (span.start, span.end))
        .ok_or(ServerEventError::InvalidJson)
}

fn optional_string<'a>(
    member: Option<Member<'a>>,
    name: &'static str,
) -> Result<Option<&'a str>, ServerEventError> {
    match member.map(|m| m.value) {
        None | Some(Node::Static(StaticNode::Null)) => Ok(None),
        Some(Node::String(s)) => Ok(Some(s)),
        Some(_) => Err(ServerEventError::InvalidField(name)),
    }
}

/// The verbatim text of the `content` member.
fn content_span<'a>(
    member: Option<Member<'_>>,
    text: &'a str,
    structurals: &[u32],
) -> Result<&'a str, ServerEventError> {
    member_span(member, "content", text, structurals)
}

/// The verbatim text of a top-level member's value.
fn member_span<'a>(
    member: Option<Member<'_>>,
    name: &'static str,
    text: &'a str,
    structurals: &[u32],
) -> Result<&'a str, ServerEventError> {
    let member = member.ok_or(ServerEventError::InvalidField(name))?;
    member_value_span(text.as_bytes(), structurals, member.ordinal, member.is_last)
        // The span starts and ends at JSON structural boundaries, which are ASCII, so `get`
        // only fails on an index layout `span.rs` does not expect.
        .and_then(|span| text.get(span))
        .ok_or(ServerEventError::InvalidJson)
}

#[cfg(test)]
mod tests;
