//! The envelope of a channel message in JetStream (docs/CLUSTER.md, "Envelope"): headers
//! carry the metadata, the payload is the ready-to-send frame body (encoded once by the
//! publishing relay), or, for a coalesced message (`Wsr-Count` > 1), `Wsr-Count` records of a
//! u32 big-endian length and a frame body. Receiving relays add the WebSocket header only.
//!
//! Owns: header names, the record format, turning stored bodies into a `Batch` of frames.
//! Sans-IO.

use std::sync::Arc;

use bytes::Bytes;

use crate::conn_id::ConnRef;
use crate::proto::frame::{encode_header, OpCode, CLIENT_HEADER_BYTES_MAX};
use crate::runtime::{Batch, FrameMeta};

/// Channel `seq` of the message's first frame.
pub const SEQ: &str = "Wsr-Seq";
/// Frames in the message (>= 1).
pub const COUNT: &str = "Wsr-Count";
/// The channel's epoch.
pub const EPOCH: &str = "Wsr-Epoch";
/// Stream sequence of the channel's previous message (the CAS value; backward pointer).
pub const PREV: &str = "Wsr-Prev";
/// `<node>/<loop>/<conn>` of the publisher (echo suppression on its own relay).
pub const FROM: &str = "Wsr-From";
/// Ingress wall-clock time, ns since the Unix epoch (fan-in lag).
pub const TS: &str = "Wsr-Ts";
/// The publisher's public name (the `from` clients see): a receiving relay that batches a
/// room's messages per tick (`--tick-for`) needs it for binary messages, whose frames do not
/// carry it.
pub const NAME: &str = "Wsr-Name";
/// Present (`1`) on binary messages.
pub const BINARY: &str = "Wsr-Bin";
/// The publishes' conflation `key` (a coalesced message has one key for all its frames).
pub const KEY: &str = "Wsr-Key";

/// Payload of a message holding `bodies` (one body: itself; more: length-prefixed records).
pub fn encode_records(bodies: &[Vec<u8>]) -> Bytes {
    if let [one] = bodies {
        return Bytes::copy_from_slice(one);
    }
    let len = bodies.iter().map(|b| 4 + b.len()).sum();
    let mut out = Vec::with_capacity(len);
    for b in bodies {
        out.extend_from_slice(&(b.len() as u32).to_be_bytes());
        out.extend_from_slice(b);
    }
    Bytes::from(out)
}

/// The `count` frame bodies of a payload; `None` when it is not well formed.
pub fn split_records(payload: &Bytes, count: u64) -> Option<Vec<Bytes>> {
    if count == 1 {
        return Some(vec![payload.clone()]);
    }
    let mut out = Vec::with_capacity(usize::try_from(count).ok()?.min(4096));
    let mut at = 0usize;
    while at < payload.len() {
        let len_bytes: [u8; 4] = payload.get(at..at + 4)?.try_into().ok()?;
        let len = u32::from_be_bytes(len_bytes) as usize;
        let start = at + 4;
        let end = start.checked_add(len)?;
        if end > payload.len() {
            return None;
        }
        out.push(payload.slice(start..end));
        at = end;
    }
    (out.len() as u64 == count).then_some(out)
}

/// One body as a complete unmasked server frame.
pub fn frame(body: &[u8], binary: bool) -> Bytes {
    let opcode = if binary { OpCode::Binary } else { OpCode::Text };
    let mut header = [0u8; CLIENT_HEADER_BYTES_MAX];
    let n = encode_header(&mut header, true, opcode, body.len() as u64, None);
    let mut out = Vec::with_capacity(n + body.len());
    out.extend_from_slice(&header[..n]);
    out.extend_from_slice(body);
    Bytes::from(out)
}

/// What a live message's frames share.
#[derive(Debug, Clone)]
pub struct BatchMeta<'a> {
    /// Channel name.
    pub channel: &'a Arc<str>,
    /// Seq of the first body.
    pub first_seq: u64,
    /// Binary frames.
    pub binary: bool,
    /// The publisher, when it is a connection of this relay.
    pub origin: Option<ConnRef>,
    /// Conflation key.
    pub key: Option<&'a str>,
    /// When the bridge received it (the relay latency is measured from here).
    pub read_at_ns: u64,
}

/// The bodies as one `Batch`: frames back to back in one buffer, as the owner loop encodes a
/// run on one node (`runtime/publish.rs`).
pub fn batch(meta: &BatchMeta<'_>, bodies: &[Bytes]) -> Batch {
    let mut wire = Vec::with_capacity(bodies.iter().map(|b| b.len() + 10).sum());
    let mut frames = Vec::with_capacity(bodies.len());
    let opcode = if meta.binary {
        OpCode::Binary
    } else {
        OpCode::Text
    };
    let conflation = conflation_key(meta.channel, meta.key.map(str::as_bytes));
    for body in bodies {
        let mut header = [0u8; CLIENT_HEADER_BYTES_MAX];
        let n = encode_header(&mut header, true, opcode, body.len() as u64, None);
        let start = wire.len();
        wire.extend_from_slice(&header[..n]);
        wire.extend_from_slice(body);
        frames.push(FrameMeta {
            start: start as u32,
            len: (wire.len() - start) as u32,
            origin: meta.origin,
            read_at_ns: meta.read_at_ns,
            conflation_key: conflation,
        });
    }
    Batch {
        channel: meta.channel.clone(),
        first_seq: meta.first_seq,
        bytes: Bytes::from(wire),
        frames,
        compressed: Default::default(),
    }
}

/// The conflation key of a delivery: the same function as `runtime/publish.rs` (a channel, or
/// a channel and `key`; never 0), so conflation works alike in both modes.
fn conflation_key(channel: &str, key: Option<&[u8]>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = crate::hash::FxHasher::default();
    channel.hash(&mut h);
    key.hash(&mut h);
    h.finish() | 1
}

/// `Wsr-From` of a publisher of node `node`.
pub fn from_header(node: &str, origin: ConnRef) -> String {
    format!("{node}/{}/{}", origin.loop_id, origin.conn.to_token_value())
}

/// The publisher named by a `Wsr-From`, if it is a connection of node `node`.
pub fn origin_of(value: &str, node: &str) -> Option<ConnRef> {
    let rest = value.strip_prefix(node)?.strip_prefix('/')?;
    let (loop_id, conn) = rest.split_once('/')?;
    Some(ConnRef {
        loop_id: loop_id.parse().ok()?,
        conn: crate::conn_id::ConnId::from_token_value(conn.parse().ok()?),
    })
}

/// A new epoch: eight random lowercase letters (minted by the writer whose CAS from an empty
/// channel succeeds). The randomness is std's per-process hasher keys mixed with the time and
/// a counter: unpredictable enough to tell numberings apart, not a secret.
pub fn mint_epoch() -> Arc<str> {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let mut x = h.finish();
    let mut s = String::with_capacity(8);
    for _ in 0..8 {
        s.push(char::from(b'a' + (x % 26) as u8));
        x /= 26;
    }
    Arc::from(s)
}

/// A stored message body's snapshot entry: its verbatim content (the JSON `content`, or
/// the binary payload) and whether it deletes its key (`"delete":true`, the last member a
/// keyed body can end with: `command::encode_keyed_message`). `None`: not a message body.
pub fn keyed_parts(body: &[u8], binary: bool) -> Option<(&[u8], bool)> {
    if binary {
        return crate::command::binary_message_payload(body).map(|p| (p, false));
    }
    let (content, _) = crate::command::message_parts(body)?;
    Some((content, body.ends_with(br#","delete":true}"#)))
}

/// The body of a server frame (unmasked, as `frame` and the loops build them).
pub fn frame_body(frame: &[u8]) -> Option<&[u8]> {
    let header = match frame.get(1)? & 0x7f {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    frame.get(header..)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let bodies = vec![b"{\"a\":1}".to_vec(), Vec::new(), b"xyz".to_vec()];
        let payload = encode_records(&bodies);
        let back = split_records(&payload, 3).unwrap_or_default();
        assert_eq!(back.len(), 3);
        for (a, b) in bodies.iter().zip(&back) {
            assert_eq!(&a[..], &b[..]);
        }
        assert!(split_records(&payload, 2).is_none());
        assert!(split_records(&Bytes::from_static(&[0, 0, 0, 9, 1]), 1).is_some());
        assert!(split_records(&Bytes::from_static(&[0, 0, 0, 9, 1]), 2).is_none());
        let one = encode_records(&bodies[..1]);
        assert_eq!(&one[..], b"{\"a\":1}");
    }

    #[test]
    fn origins_are_recognised_only_on_their_node() {
        let origin = ConnRef {
            loop_id: 1,
            conn: crate::conn_id::ConnId::from_token_value(77),
        };
        let h = from_header("n1.abc", origin);
        assert_eq!(origin_of(&h, "n1.abc"), Some(origin));
        assert_eq!(origin_of(&h, "n1.ab"), None);
        assert_eq!(origin_of(&h, "n2.abc"), None);
    }

    #[test]
    fn epochs_are_eight_letters_and_differ() {
        let a = mint_epoch();
        let b = mint_epoch();
        assert_eq!(a.len(), 8);
        assert!(a.bytes().all(|c| c.is_ascii_lowercase()));
        assert_ne!(a, b);
    }
}
