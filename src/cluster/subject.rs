//! Channel → NATS subject (docs/CLUSTER.md, "Subjects"): `wsr.c.<k>.<tok>` (ingest and
//! history, stream `WSR_<k>`) and `wsr.l.<k>.<tok>` (the live copy RePublish makes), with
//! `k = fnv1a(channel) % K` and `<tok>` the channel escaped into one subject token: bytes in
//! `[A-Za-z0-9-]` pass, every other byte becomes `_` and two lowercase hex digits (reversible;
//! NATS forbids `.`, `*`, `>` and whitespace in a token and reserves `$`).

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
}
