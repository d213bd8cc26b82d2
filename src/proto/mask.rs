//! Payload masking (RFC 6455 §5.3): XOR with a 4-byte key, applied in place.
//!
//! Owns: the masking transform only (it is its own inverse, so it masks and unmasks).
//! Invariants: byte `i` of a frame payload is XORed with `key[i % 4]`; masking a payload in
//! several pieces (passing each piece's payload offset) gives the same bytes as masking it
//! whole. Safe code only: the 8-byte chunk loop is auto-vectorised by LLVM.

/// Word size of the fast path.
const WORD_BYTES: usize = 8;
/// The high bit of every byte of a word: zero after OR-ing only ASCII bytes.
const ASCII_HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// XORs `buf` with `key`, where `buf[0]` is byte number `offset` of the frame payload (§5.3).
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let key = key_at_offset(key, offset);
    let key_word = key_word(key);
    let (words, tail) = buf.as_chunks_mut::<WORD_BYTES>();
    for word in words {
        *word = (u64::from_ne_bytes(*word) ^ key_word).to_ne_bytes();
    }
    // `words` covers a multiple of 8 bytes, so the tail starts at a key phase of 0.
    apply_mask_bytewise(tail, key, 0);
}

/// Like [`apply_mask`], and returns whether every unmasked byte is ASCII (< 0x80).
///
/// Why fused: validating UTF-8 right after masking re-reads bytes that are still in the store
/// buffer with differently aligned loads, and store-to-load forwarding fails (measured: text
/// decoding at about half the speed of binary). ORing the words while they are in registers
/// makes the common all-ASCII (JSON) text payload free to validate.
#[inline]
pub fn apply_mask_check_ascii(buf: &mut [u8], key: [u8; 4], offset: usize) -> bool {
    let key = key_at_offset(key, offset);
    let key_word = key_word(key);
    let (words, tail) = buf.as_chunks_mut::<WORD_BYTES>();
    let mut bits_or = 0u64;
    for word in words {
        let unmasked = u64::from_ne_bytes(*word) ^ key_word;
        bits_or |= unmasked;
        *word = unmasked.to_ne_bytes();
    }
    let mut tail_or = 0u8;
    for (i, byte) in tail.iter_mut().enumerate() {
        *byte ^= key[i % 4];
        tail_or |= *byte;
    }
    bits_or & ASCII_HIGH_BITS == 0 && tail_or.is_ascii()
}

/// Reference implementation: one byte at a time. Used for tails and as the test oracle.
#[inline]
pub fn apply_mask_bytewise(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte ^= key[(offset + i) % 4];
    }
}

/// The key repeated over a word, in memory order.
#[inline]
fn key_word(key: [u8; 4]) -> u64 {
    u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ])
}

/// The key rotated so that index 0 applies to payload byte `offset`.
#[inline]
fn key_at_offset(key: [u8; 4], offset: usize) -> [u8; 4] {
    let mut rotated = key;
    rotated.rotate_left(offset % 4);
    rotated
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    #[test]
    fn rfc_5_7_hello() {
        let mut payload = *b"Hello";
        apply_mask(&mut payload, KEY, 0);
        assert_eq!(payload, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }

    #[test]
    fn fast_equals_naive_at_all_alignments_offsets_lengths() {
        let source: Vec<u8> = (0..=255u8).cycle().take(128).collect();
        for align in 0..8 {
            for offset in 0..8 {
                for len in 0..100 {
                    let mut fast = source.clone();
                    let mut naive = source.clone();
                    apply_mask(&mut fast[align..align + len], KEY, offset);
                    apply_mask_bytewise(&mut naive[align..align + len], KEY, offset);
                    assert_eq!(fast, naive, "align {align} offset {offset} len {len}");
                    let mut checked = source.clone();
                    let ascii =
                        apply_mask_check_ascii(&mut checked[align..align + len], KEY, offset);
                    assert_eq!(checked, naive, "align {align} offset {offset} len {len}");
                    assert_eq!(ascii, naive[align..align + len].is_ascii());
                }
            }
        }
    }

    proptest! {
        #[test]
        fn pieces_equal_whole(data in proptest::collection::vec(any::<u8>(), 0..300),
                              key in any::<[u8; 4]>(), cut in any::<prop::sample::Index>()) {
            let mut whole = data.clone();
            apply_mask_bytewise(&mut whole, key, 0);
            let mut pieces = data.clone();
            let cut = cut.index(data.len() + 1);
            let (left, right) = pieces.split_at_mut(cut);
            apply_mask(left, key, 0);
            apply_mask(right, key, cut);
            prop_assert_eq!(pieces, whole.clone());
            let mut checked = data.clone();
            let ascii = apply_mask_check_ascii(&mut checked, key, 0);
            prop_assert_eq!(ascii, whole.is_ascii());
            prop_assert_eq!(checked, whole);
        }
    }
}
