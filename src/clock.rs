//! Time for the whole process.
//!
//! Owns: the process-wide epoch. `Clock::now_ns` is the only place that reads the monotonic
//! clock; event loops call it once per turn (and once after each socket write, to time the
//! delivery) and pass the value down, so the sans-IO modules never read time themselves and
//! tests can drive time by hand. All loops count from the same epoch, so a timestamp carried
//! in a message between loops means the same instant everywhere.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

static EPOCH: OnceLock<Instant> = OnceLock::new();
static UNIX_AT_EPOCH_NS: OnceLock<u64> = OnceLock::new();

/// Reads the process-wide monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock;

impl Clock {
    /// Nanoseconds since the process epoch (the first call). Monotonic.
    #[inline]
    pub fn now_ns() -> u64 {
        let epoch = *EPOCH.get_or_init(Instant::now);
        // u64 nanoseconds last 584 years.
        epoch.elapsed().as_nanos() as u64
    }

    /// The Unix time (ns) of the monotonic clock's zero, read once: `now_ns() + this` is a
    /// wall-clock time that never jumps afterwards. Cluster mode aligns room ticks on it, so
    /// that relays on synchronised hosts tick together.
    pub fn unix_at_epoch_ns() -> u64 {
        *UNIX_AT_EPOCH_NS.get_or_init(|| {
            let wall = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            wall.saturating_sub(Clock::now_ns())
        })
    }

    /// Seconds since the Unix epoch, for token expiry checks (wall clock, not monotonic).
    pub fn unix_now_s() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_monotonic() {
        let a = Clock::now_ns();
        let b = Clock::now_ns();
        assert!(b >= a);
    }
}
