//! The keyed snapshot a subscriber of a `--snapshot-for` channel receives first, in JSON and
//! in binary, and the binary decoder the client library uses (sans-IO, no allocation but the
//! output).
//!
//! JSON: `{"type":"snapshot","channel":C,"seq":N,"epoch":E,"entries":[{"key":K,"content":V,
//! "seq":S},...]}`, entries oldest update first; `key` is `null` for the entry of messages
//! published without a key. Entries of binary publishes are left out of the JSON form (JSON
//! cannot carry their bytes verbatim); a client that publishes binary asks for the binary form.
//!
//! Binary (integers big-endian), op [`BINARY_OP_SNAPSHOT`]:
//! `[0x05][L][channel][seq u64][E u8][epoch][count u32]` then `count` entries
//! `[flags u8][K u8][key: K bytes][seq u64][len u32][content: len bytes]`; flags bit 0: the
//! content is an opaque binary payload (else JSON text); `K` 0: no key.

use crate::command::binary::EncodeError;
use crate::command::encode::write_json_string;

/// Server → client op byte: a keyed snapshot.
pub const BINARY_OP_SNAPSHOT: u8 = 0x05;
/// Entry flag: the content is a binary payload, not JSON text.
pub const SNAPSHOT_ENTRY_BINARY: u8 = 0x01;

/// One key's latest message in a snapshot. `content` is the publish's verbatim JSON value, or
/// its binary payload when `binary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotEntry<'a> {
    /// The key (`None`: the message was published without one).
    pub key: Option<&'a str>,
    /// The message's verbatim content.
    pub content: &'a [u8],
    /// The message's seq.
    pub seq: u64,
    /// `content` is an opaque binary payload.
    pub binary: bool,
}

/// The head of a snapshot: its channel, the channel's seq it reflects, and the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotHead<'a> {
    /// Channel name.
    pub channel: &'a str,
    /// Every message up to this seq is reflected; live deliveries continue from `seq + 1`.
    pub seq: u64,
    /// Epoch of the numbering.
    pub epoch: &'a str,
}

/// Appends the JSON snapshot (binary entries are left out, see the module docs).
pub fn encode_snapshot<'a>(
    out: &mut Vec<u8>,
    head: SnapshotHead<'_>,
    entries: impl Iterator<Item = SnapshotEntry<'a>>,
) {
    out.extend_from_slice(br#"{"type":"snapshot","channel":"#);
    write_json_string(out, head.channel);
    out.extend_from_slice(br#","seq":"#);
    out.extend_from_slice(itoa::Buffer::new().format(head.seq).as_bytes());
    out.extend_from_slice(br#","epoch":"#);
    write_json_string(out, head.epoch);
    out.extend_from_slice(br#","entries":["#);
    let mut first = true;
    for e in entries.filter(|e| !e.binary) {
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(br#"{"key":"#);
        match e.key {
            Some(k) => write_json_string(out, k),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(br#","content":"#);
        out.extend_from_slice(e.content);
        out.extend_from_slice(br#","seq":"#);
        out.extend_from_slice(itoa::Buffer::new().format(e.seq).as_bytes());
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
}

/// Appends the binary snapshot. Keys are at most 128 bytes and contents at most the message
/// limit (1 GiB), so only an over-long channel name fails.
pub fn encode_binary_snapshot<'a>(
    out: &mut Vec<u8>,
    head: SnapshotHead<'_>,
    entries: impl ExactSizeIterator<Item = SnapshotEntry<'a>>,
) -> Result<(), EncodeError> {
    let channel_len =
        u8::try_from(head.channel.len()).map_err(|_| EncodeError::ChannelTooLong {
            channel_bytes: head.channel.len(),
        })?;
    let epoch = head.epoch.as_bytes();
    let epoch = &epoch[..epoch.len().min(usize::from(u8::MAX))];
    out.extend_from_slice(&[BINARY_OP_SNAPSHOT, channel_len]);
    out.extend_from_slice(head.channel.as_bytes());
    out.extend_from_slice(&head.seq.to_be_bytes());
    out.push(epoch.len() as u8);
    out.extend_from_slice(epoch);
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for e in entries {
        let key = e.key.unwrap_or_default().as_bytes();
        let key = &key[..key.len().min(usize::from(u8::MAX))];
        out.push(if e.binary { SNAPSHOT_ENTRY_BINARY } else { 0 });
        out.push(key.len() as u8);
        out.extend_from_slice(key);
        out.extend_from_slice(&e.seq.to_be_bytes());
        out.extend_from_slice(&(e.content.len() as u32).to_be_bytes());
        out.extend_from_slice(e.content);
    }
    Ok(())
}

/// A decoded binary snapshot: its head and its entries, borrowing the message.
pub type DecodedSnapshot<'a> = (SnapshotHead<'a>, Vec<SnapshotEntry<'a>>);

/// Decodes a binary snapshot (`None`: truncated, not a snapshot, or names not UTF-8).
pub fn decode_binary_snapshot(msg: &[u8]) -> Option<DecodedSnapshot<'_>> {
    let mut r = Reader(msg);
    if r.u8()? != BINARY_OP_SNAPSHOT {
        return None;
    }
    let channel_len = usize::from(r.u8()?);
    let channel = std::str::from_utf8(r.take(channel_len)?).ok()?;
    let seq = r.u64()?;
    let epoch_len = usize::from(r.u8()?);
    let epoch = std::str::from_utf8(r.take(epoch_len)?).ok()?;
    let count = r.u32()? as usize;
    // Each entry has at least 14 bytes: a count beyond what is left is a lie, not a reserve.
    let mut entries = Vec::with_capacity(count.min(r.0.len() / 14));
    for _ in 0..count {
        let flags = r.u8()?;
        let key_len = usize::from(r.u8()?);
        let key = std::str::from_utf8(r.take(key_len)?).ok()?;
        let seq = r.u64()?;
        let len = r.u32()? as usize;
        let content = r.take(len)?;
        entries.push(SnapshotEntry {
            key: (!key.is_empty()).then_some(key),
            content,
            seq,
            binary: flags & SNAPSHOT_ENTRY_BINARY != 0,
        });
    }
    r.0.is_empty().then_some((
        SnapshotHead {
            channel,
            seq,
            epoch,
        },
        entries,
    ))
}

/// A cursor over a received message.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)?.try_into().ok().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8)?.try_into().ok().map(u64::from_be_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<SnapshotEntry<'static>> {
        vec![
            SnapshotEntry {
                key: Some("BTC"),
                content: br#"{"px":1}"#,
                seq: 3,
                binary: false,
            },
            SnapshotEntry {
                key: None,
                content: b"\x00\xff",
                seq: 5,
                binary: true,
            },
            SnapshotEntry {
                key: None,
                content: b"7",
                seq: 6,
                binary: false,
            },
        ]
    }

    const HEAD: SnapshotHead<'static> = SnapshotHead {
        channel: "b.1",
        seq: 6,
        epoch: "e-1",
    };

    #[test]
    fn json_snapshot_exact_without_binary_entries() {
        let mut out = Vec::new();
        encode_snapshot(&mut out, HEAD, entries().into_iter());
        let want = r#"{"type":"snapshot","channel":"b.1","seq":6,"epoch":"e-1","entries":[{"key":"BTC","content":{"px":1},"seq":3},{"key":null,"content":7,"seq":6}]}"#;
        assert_eq!(String::from_utf8(out).unwrap(), want);
        let mut empty = Vec::new();
        encode_snapshot(&mut empty, HEAD, std::iter::empty());
        assert!(empty.ends_with(br#""entries":[]}"#));
    }

    #[test]
    fn binary_snapshot_round_trips_and_truncation_is_refused() {
        let mut out = Vec::new();
        encode_binary_snapshot(&mut out, HEAD, entries().into_iter()).unwrap();
        assert_eq!(&out[..5], &[0x05, 3, b'b', b'.', b'1']);
        let (head, got) = decode_binary_snapshot(&out).unwrap();
        assert_eq!((head, got), (HEAD, entries()));
        for cut in 0..out.len() {
            assert!(
                decode_binary_snapshot(&out[..cut]).is_none(),
                "cut at {cut}"
            );
        }
        out.push(0);
        assert!(decode_binary_snapshot(&out).is_none(), "trailing bytes");
    }
}
