//! The client's source of masking keys, handshake nonces and backoff jitter.
//!
//! Owns: a SplitMix64 generator (64 bits of state, one multiply-xorshift mix per output) and
//! its seeding from the operating system. May not touch: anything else; the session takes an
//! `Rng` by value, so tests inject a fixed seed and get reproducible jitter.
//!
//! Why a small non-cryptographic generator is sufficient here. RFC 6455 §5.3 asks for masking
//! keys an attacker cannot predict; the threat (§10.3) is a hostile author of payload bytes,
//! such as a script in a browser, who picks bytes that a broken intermediary would parse as
//! HTTP, which requires knowing the key before choosing the bytes. In this library the payload
//! author is the application that links it, and a third party that does not see the traffic
//! cannot guess a stream seeded with 64 bits of OS entropy per client. An on-path observer who
//! sees the keys could reconstruct the state, but can already read and inject the traffic of an
//! unencrypted `ws://` connection, so masking never protected against it. What the generator
//! must not be is constant or shared by all clients (as a fixed test mask would be), and it is
//! neither. The same stream spreads reconnect jitter, where only uniformity matters.

use std::hash::{BuildHasher, Hasher};
use std::io::Read;

/// SplitMix64's increment (the golden ratio in 64-bit fixed point).
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// A seeded SplitMix64 generator.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator with a fixed seed (tests, reproducible runs).
    pub fn from_seed(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A generator seeded with 8 bytes of `/dev/urandom`, or, where that cannot be read, with
    /// the standard library's per-process random hash keys (also drawn from the OS).
    pub fn from_os() -> Self {
        Self::from_seed(os_seed().unwrap_or_else(hash_keys_seed))
    }

    /// The next 64 uniformly distributed bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A fresh masking key (§5.3).
    pub fn mask_key(&mut self) -> [u8; 4] {
        // The high half of the output is the better-mixed one.
        ((self.next_u64() >> 32) as u32).to_ne_bytes()
    }

    /// A fresh 16-byte handshake nonce (§4.1).
    pub fn nonce16(&mut self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.next_u64().to_ne_bytes());
        out[8..].copy_from_slice(&self.next_u64().to_ne_bytes());
        out
    }

    /// A uniform value in `0..bound` (0 when `bound` is 0), by Lemire's multiply-shift; the
    /// bias is below 2^-64 · bound, far under anything jitter cares about.
    pub fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

fn os_seed() -> Option<u64> {
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .ok()?;
    Some(u64::from_ne_bytes(bytes))
}

fn hash_keys_seed() -> u64 {
    // `RandomState` keys come from the OS; SipHash of a distinct input is unpredictable without
    // them.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_reference_values() {
        // First outputs of SplitMix64 seeded with 1234567 (Vigna's reference implementation).
        let mut rng = Rng::from_seed(1_234_567);
        assert_eq!(rng.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(rng.next_u64(), 3_203_168_211_198_807_973);
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = Rng::from_seed(7);
        let mut seen = [false; 10];
        for _ in 0..1000 {
            let v = rng.below(10);
            assert!(v < 10);
            seen[v as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(rng.below(0), 0);
    }

    #[test]
    fn consecutive_mask_keys_differ_and_os_seeds_differ() {
        let mut rng = Rng::from_seed(1);
        assert_ne!(rng.mask_key(), rng.mask_key());
        assert_ne!(Rng::from_os().next_u64(), Rng::from_os().next_u64());
    }
}
