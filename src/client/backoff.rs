//! Reconnect delays: `min(base · 2^n, cap) + random(0..jitter)`, n = failed attempts so far.
//!
//! Owns: the delay formula and its overflow-free arithmetic. May not touch: the attempt
//! counter's lifecycle (the session resets it after a successful open and enforces
//! `retries_max`).

use std::time::Duration;

use crate::client::rng::Rng;

/// Exponential backoff with additive jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry (n = 0), before jitter.
    pub base: Duration,
    /// Largest delay before jitter.
    pub cap: Duration,
    /// Upper bound (exclusive) of the random delay added to each retry, so that clients
    /// dropped together do not come back together.
    pub jitter: Duration,
}

impl Default for Backoff {
    /// 250 ms doubling to 30 s, plus up to 1 s: a relay restart sees its clients return over
    /// about a second instead of in one burst, and a long outage costs one attempt per ~30 s.
    fn default() -> Self {
        Self {
            base: Duration::from_millis(250),
            cap: Duration::from_secs(30),
            jitter: Duration::from_secs(1),
        }
    }
}

impl Backoff {
    /// `min(base · 2^n, cap)`: the deterministic part of the delay for retry `n` (0-based).
    pub fn floor(&self, n: u32) -> Duration {
        // 2^n overflows u32 from n = 32; any shift that far is past every sensible cap.
        let factor = 1u32.checked_shl(n).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The delay for retry `n`: the floor plus a uniform jitter in `0..jitter`.
    pub fn delay(&self, n: u32, rng: &mut Rng) -> Duration {
        let jitter_ns = u64::try_from(self.jitter.as_nanos()).unwrap_or(u64::MAX);
        self.floor(n) + Duration::from_nanos(rng.below(jitter_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_then_caps() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(1000),
            jitter: Duration::ZERO,
        };
        let floors: Vec<u128> = (0..6).map(|n| b.floor(n).as_millis()).collect();
        assert_eq!(floors, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.floor(40), Duration::from_millis(1000));
        assert_eq!(
            b.delay(3, &mut Rng::from_seed(1)),
            Duration::from_millis(800)
        );
    }

    #[test]
    fn every_delay_is_within_floor_and_floor_plus_jitter() {
        let b = Backoff {
            base: Duration::from_millis(10),
            cap: Duration::from_millis(300),
            jitter: Duration::from_millis(50),
        };
        let mut rng = Rng::from_seed(42);
        for n in 0..40 {
            for _ in 0..50 {
                let d = b.delay(n, &mut rng);
                let floor = Duration::from_millis(10 * 2u64.pow(n.min(20))).min(b.cap);
                assert!(d >= floor && d < floor + b.jitter, "n={n} d={d:?}");
            }
        }
    }
}
