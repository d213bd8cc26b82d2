//! A small, fast, non-cryptographic hasher for the per-loop maps (channel name → subscribers,
//! connection → position).
//!
//! Why not SipHash: these maps are on the publish path and their keys are short. Why that is
//! safe: every map is per loop and bounded, and the keys an attacker controls (channel names)
//! are limited in length and count by configuration, so a hash-flooding attack can at worst
//! slow the attacker's own loop, never grow memory. The algorithm is FxHash (rustc's).

use std::hash::{BuildHasherDefault, Hasher};

/// FxHash: one multiply and one rotate per word.
#[derive(Debug, Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add_to_hash(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add_to_hash(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add_to_hash(u64::from_le_bytes(w));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add_to_hash(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add_to_hash(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add_to_hash(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add_to_hash(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// `BuildHasher` for `HashMap`/`IndexSet` with FxHash.
pub type FxBuild = BuildHasherDefault<FxHasher>;

/// A `HashMap` with FxHash.
pub type FxHashMap<K, V> = std::collections::HashMap<K, V, FxBuild>;

/// Stable 64-bit hash of a byte string (used to pick a channel's owner loop: it must give the
/// same answer on every loop and in every release, so it is spelled out here, FNV-1a).
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_reference_vectors() {
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn fx_hash_distinguishes_short_channel_names() {
        use std::hash::Hash;
        let h = |s: &str| {
            let mut x = FxHasher::default();
            s.hash(&mut x);
            x.finish()
        };
        assert_ne!(h("md.a"), h("md.b"));
        assert_ne!(h("ab"), h("ba"));
        assert_ne!(h("room.1"), h("room.10"));
    }
}
