//! Channel → NATS subject (docs/CLUSTER.md, "Subjects"): `wsr.c.<k>.<tok>` (ingest and
//! history, stream `WSR_<k>`) and `wsr.l.<k>.<tok>` (the live copy RePublish makes), with
//! `k = fnv1a(channel) % K` and `<tok>` the channel escaped into one subject token: bytes in
//! `[A-Za-z0-9-]` pass, every other byte becomes `_` and two lowercase hex digits (reversible;
//! NATS forbids `.`, `*`, `>` and whitespace in a token and reserves `$`).
//! Keyed snapshots (`--snapshot-for`) add the key store `WSRK_<k>`: the channel's watermark
//! record `wsr.k.<k>.<tok>` and one record per key `wsr.k.<k>.<tok>.<keytok>` (the key
//! escaped the same way; the empty key, a publish without one, is `_`, which no escaped key
//! can be).

use crate::hash::fnv1a_64;

/// The stream (shard) of `channel` among `shards`.
pub fn shard_of(channel: &str, shards: u32) -> u32 {
    (fnv1a_64(channel.as_bytes()) % u64::from(shards.max(1))) as u32
}

/// The stream name of shard `k`.
pub fn stream_name(k: u32) -> String {
    format!("WSR_{k}")
}

/// `channel` as one subject token.
pub fn escape(channel: &str) -> String {
    let mut out = String::with_capacity(channel.len());
    for b in channel.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(char::from(b));
        } else {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push('_');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    out
}

/// The ingest subject of `channel`.
pub fn ingest(channel: &str, shards: u32) -> String {
    format!("wsr.c.{}.{}", shard_of(channel, shards), escape(channel))
}

/// The live subject of `channel`.
pub fn live(channel: &str, shards: u32) -> String {
    format!("wsr.l.{}.{}", shard_of(channel, shards), escape(channel))
}

/// The key store (stream) name of shard `k`.
pub fn key_stream_name(k: u32) -> String {
    format!("WSRK_{k}")
}

/// The watermark record's subject of `channel` (also the prefix of its key records).
pub fn key_watermark(channel: &str, shards: u32) -> String {
    format!("wsr.k.{}.{}", shard_of(channel, shards), escape(channel))
}

/// The record subject of `key` in `channel` (`None` and `""` are the same entry).
pub fn key_record(channel: &str, key: Option<&str>, shards: u32) -> String {
    let key = key.unwrap_or_default();
    let tok = match key.is_empty() {
        true => "_".to_string(),
        false => escape(key),
    };
    format!("{}.{tok}", key_watermark(channel, shards))
}

/// The key back from a record subject's last token (`None`: not an escaped token).
pub fn unescape_key(token: &str) -> Option<String> {
    if token == "_" {
        return Some(String::new());
    }
    let b = token.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'_' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_follows_the_design_examples() {
        assert_eq!(escape("btc-usd"), "btc-usd");
        assert_eq!(escape("room:42"), "room_3a42");
        assert_eq!(escape("a.b"), "a_2eb");
        assert_eq!(escape("é"), "_c3_a9");
        assert_eq!(escape("a_b"), "a_5fb");
        assert_eq!(escape("x y*>$"), "x_20y_2a_3e_24");
    }

    #[test]
    fn subjects_share_the_shard() {
        let k = shard_of("room:42", 8);
        assert!(k < 8);
        assert_eq!(ingest("room:42", 8), format!("wsr.c.{k}.room_3a42"));
        assert_eq!(live("room:42", 8), format!("wsr.l.{k}.room_3a42"));
        assert_eq!(shard_of("anything", 1), 0);
    }

    #[test]
    fn key_records_sit_under_the_watermark_and_round_trip() {
        let k = shard_of("board:1", 8);
        assert_eq!(key_watermark("board:1", 8), format!("wsr.k.{k}.board_3a1"));
        let rec = key_record("board:1", Some("a.b c"), 8);
        assert_eq!(rec, format!("wsr.k.{k}.board_3a1.a_2eb_20c"));
        assert_eq!(
            key_record("board:1", None, 8),
            key_record("board:1", Some(""), 8)
        );
        assert!(key_record("board:1", Some(""), 8).ends_with("._"));
        for key in ["a.b c", "é_x", "-_-"] {
            assert_eq!(unescape_key(&escape(key)).as_deref(), Some(key));
        }
        assert_eq!(unescape_key("_"), Some(String::new()));
        assert_eq!(unescape_key("a_2"), None);
    }
}
