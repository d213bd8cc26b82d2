//! The channel-name rule, shared by JSON commands, conflation keys and binary frames:
//! `1..=channel_bytes_max` bytes, each in `[A-Za-z0-9._:-]`.
//!
//! The charset is ASCII-only on purpose: names never need JSON escaping, fit metrics labels
//! and log lines verbatim, and a byte count equals a character count.

/// `ALLOWED[b]` is true when byte `b` may appear in a channel name.
const ALLOWED: [bool; 256] = allowed_table();

const fn allowed_table() -> [bool; 256] {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-');
        byte += 1;
    }
    table
}

/// True when `name` is `1..=channel_bytes_max` bytes of `[A-Za-z0-9._:-]`.
#[inline]
pub fn is_valid_channel_name(name: &[u8], channel_bytes_max: usize) -> bool {
    !name.is_empty()
        && name.len() <= channel_bytes_max
        && name.iter().all(|&b| ALLOWED[usize::from(b)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_allowed_byte() {
        let all = b"ABCXYZabcxyz0189._:-";
        assert!(is_valid_channel_name(all, 128));
    }

    #[test]
    fn rejects_empty_and_over_limit() {
        assert!(!is_valid_channel_name(b"", 128));
        assert!(is_valid_channel_name(&[b'a'; 128], 128));
        assert!(!is_valid_channel_name(&[b'a'; 129], 128));
        assert!(!is_valid_channel_name(b"abcd", 3));
    }

    #[test]
    fn rejects_bytes_outside_charset() {
        for bad in [
            &b"a b"[..],
            b"a/b",
            b"a\"b",
            b"a\\b",
            b"\xc3\xa9",
            b"a\0",
            b"a*",
            b"a#",
        ] {
            assert!(!is_valid_channel_name(bad, 128), "{bad:?}");
        }
    }

    #[test]
    fn table_matches_the_documented_charset() {
        let expected = (0u8..=255)
            .filter(|b| b.is_ascii_alphanumeric() || b"._:-".contains(b))
            .count();
        assert_eq!(ALLOWED.iter().filter(|&&ok| ok).count(), expected);
        assert_eq!(expected, 26 * 2 + 10 + 4);
    }
}
