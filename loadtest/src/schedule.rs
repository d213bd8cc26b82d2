//! A publisher's send schedule: open-loop constant rate, or as fast as the flow window allows.
//!
//! Owns: which message is due when. May not touch: clocks (`now` is passed in), sockets.
//!
//! Coordinated omission: at a constant rate, message `i` is due at `start + phase + i *
//! interval` whatever happened before; a publisher that fell behind sends every overdue
//! message at once, each stamped with its SCHEDULED time, so a stalled server shows up as
//! latency instead of silently thinning the load.

/// When a publisher sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// As fast as the in-flight window allows (closed loop; latency from the actual send).
    Max,
    /// This many messages per second, open loop.
    PerSecond(f64),
}

/// One message to send now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// The stamp's time: scheduled (constant rate) or now (max).
    pub scheduled_ns: u64,
    /// The publisher's message counter.
    pub index: u32,
}

/// The schedule of one publisher.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// 0.0 for [`Rate::Max`].
    interval_ns: f64,
    first_ns: u64,
    end_ns: u64,
    index: u32,
}

impl Schedule {
    /// Sends from `start_ns + phase_ns` every `1/rate` seconds until `end_ns` (exclusive).
    pub fn new(rate: Rate, start_ns: u64, phase_ns: u64, end_ns: u64) -> Self {
        let interval_ns = match rate {
            Rate::Max => 0.0,
            Rate::PerSecond(per_s) => 1e9 / per_s,
        };
        Self {
            interval_ns,
            first_ns: start_ns + phase_ns,
            end_ns,
            index: 0,
        }
    }

    /// Whether this schedule runs at max rate.
    pub fn is_max(&self) -> bool {
        self.interval_ns == 0.0
    }

    /// The next message if it is due at `now_ns`, advancing the schedule.
    pub fn poll_due(&mut self, now_ns: u64) -> Option<Due> {
        let scheduled_ns = if self.is_max() {
            now_ns
        } else {
            self.due_at(self.index)
        };
        if scheduled_ns > now_ns || scheduled_ns >= self.end_ns || now_ns < self.first_ns {
            return None;
        }
        let due = Due {
            scheduled_ns,
            index: self.index,
        };
        self.index += 1;
        Some(due)
    }

    /// When the next message is due (`None` once the schedule has ended).
    pub fn next_due_ns(&self) -> Option<u64> {
        let next = if self.is_max() {
            self.first_ns
        } else {
            self.due_at(self.index)
        };
        (next < self.end_ns).then_some(next)
    }

    /// Messages handed out so far.
    pub fn sent(&self) -> u32 {
        self.index
    }

    fn due_at(&self, index: u32) -> u64 {
        self.first_ns + (f64::from(index) * self.interval_ns) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_rate_is_open_loop_and_stamps_scheduled_times() {
        // 1,000/s from t=1,000 with phase 250: due at 1,250, 1,001,250, 2,001,250, ...
        let mut s = Schedule::new(Rate::PerSecond(1000.0), 1_000, 250, 10_000_000);
        assert_eq!(s.poll_due(1_249), None);
        assert_eq!(
            s.poll_due(1_300),
            Some(Due {
                scheduled_ns: 1_250,
                index: 0
            })
        );
        assert_eq!(s.poll_due(1_300), None);
        assert_eq!(s.next_due_ns(), Some(1_001_250));
        // A publisher that stalls for 3 ms sends the overdue messages with their own times.
        let late: Vec<u64> = std::iter::from_fn(|| s.poll_due(3_500_000))
            .map(|d| d.scheduled_ns)
            .collect();
        assert_eq!(late, vec![1_001_250, 2_001_250, 3_001_250]);
        assert_eq!(s.sent(), 4);
    }

    #[test]
    fn schedule_stops_at_end() {
        let mut s = Schedule::new(Rate::PerSecond(1000.0), 0, 0, 2_000_000);
        let all: Vec<u32> = std::iter::from_fn(|| s.poll_due(u64::MAX / 2))
            .map(|d| d.index)
            .collect();
        assert_eq!(all, vec![0, 1]);
        assert_eq!(s.next_due_ns(), None);
    }

    #[test]
    fn max_rate_stamps_now_until_end() {
        let mut s = Schedule::new(Rate::Max, 100, 0, 1_000);
        assert_eq!(s.poll_due(50), None);
        assert_eq!(
            s.poll_due(500),
            Some(Due {
                scheduled_ns: 500,
                index: 0
            })
        );
        assert_eq!(s.poll_due(500).map(|d| d.index), Some(1));
        assert_eq!(s.poll_due(1_000), None);
    }
}
