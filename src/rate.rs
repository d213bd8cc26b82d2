//! Token buckets for rate limits (new connections, messages per connection). Sans-IO: the
//! caller passes `now_ns`. Integer arithmetic in nano-tokens, so no drift and no floats.

/// A token bucket: `rate_per_s` tokens per second, holding at most `burst`.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    /// Current tokens × 1e9 (nano-tokens).
    nano_tokens: u64,
    /// Capacity × 1e9.
    nano_capacity: u64,
    /// Tokens per second (1 token = 1e9 nano-tokens per 1e9 ns: one nano-token per ns per
    /// token/s).
    rate_per_s: u64,
    last_ns: u64,
}

const NANO: u64 = 1_000_000_000;

impl TokenBucket {
    /// A full bucket. `rate_per_s == 0` means unlimited (every take succeeds).
    pub fn new(rate_per_s: u64, burst: u64, now_ns: u64) -> Self {
        let nano_capacity = burst.max(1).saturating_mul(NANO);
        TokenBucket {
            nano_tokens: nano_capacity,
            nano_capacity,
            rate_per_s,
            last_ns: now_ns,
        }
    }

    /// Takes one token if available.
    pub fn try_take(&mut self, now_ns: u64) -> bool {
        if self.rate_per_s == 0 {
            return true;
        }
        self.refill(now_ns);
        if self.nano_tokens >= NANO {
            self.nano_tokens -= NANO;
            true
        } else {
            false
        }
    }

    /// True when the bucket is full (the client has been within its rate for a while).
    pub fn is_full(&mut self, now_ns: u64) -> bool {
        self.refill(now_ns);
        self.nano_tokens >= self.nano_capacity
    }

    /// Seconds until one token is available (for `Retry-After`), at least 1.
    pub fn retry_after_s(&self) -> u64 {
        if self.rate_per_s == 0 {
            return 1;
        }
        let missing = NANO.saturating_sub(self.nano_tokens);
        (missing / self.rate_per_s / NANO + 1).max(1)
    }

    fn refill(&mut self, now_ns: u64) {
        let elapsed_ns = now_ns.saturating_sub(self.last_ns);
        self.last_ns = self.last_ns.max(now_ns);
        let added = elapsed_ns.saturating_mul(self.rate_per_s);
        self.nano_tokens = self
            .nano_tokens
            .saturating_add(added)
            .min(self.nano_capacity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill_at_the_rate() {
        let mut b = TokenBucket::new(10, 3, 0);
        assert!(b.try_take(0) && b.try_take(0) && b.try_take(0));
        assert!(!b.try_take(0));
        assert!(
            !b.try_take(99_999_999),
            "0.1 s gives one token at 10/s, not before"
        );
        assert!(b.try_take(100_000_000));
        assert!(!b.try_take(100_000_000));
    }

    #[test]
    fn never_holds_more_than_the_burst() {
        let mut b = TokenBucket::new(1000, 2, 0);
        assert!(b.is_full(10 * NANO));
        assert!(b.try_take(10 * NANO) && b.try_take(10 * NANO));
        assert!(!b.try_take(10 * NANO));
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let mut b = TokenBucket::new(0, 1, 0);
        assert!((0..1000).all(|_| b.try_take(0)));
    }

    #[test]
    fn time_going_backwards_adds_nothing() {
        let mut b = TokenBucket::new(10, 1, 1_000);
        assert!(b.try_take(1_000));
        assert!(!b.try_take(0));
    }
}
