//! Per-thread measurements and their merge: latency and connect-time histograms, counters, and
//! errors by kind.
//!
//! Owns: what was observed. May not touch: sockets, clocks, shared state (each driver thread
//! owns one `ThreadStats`; they are merged once, at the end, with `Histogram::add`).

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

/// Highest latency recorded, ns (longer ones are clamped: a minute is already a failure).
pub const LATENCY_NS_MAX: u64 = 60_000_000_000;
/// Highest connect time recorded, µs.
pub const CONNECT_US_MAX: u64 = 60_000_000;

/// The measured window: messages stamped inside it count toward latency and loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First stamp time inside, ns since the epoch.
    pub start_ns: u64,
    /// First stamp time after.
    pub end_ns: u64,
}

impl Window {
    /// A window nothing falls into (before the run starts).
    pub const NEVER: Window = Window {
        start_ns: u64::MAX,
        end_ns: u64::MAX,
    };

    /// Whether a message stamped `at_ns` is measured.
    #[inline]
    pub fn contains(self, at_ns: u64) -> bool {
        at_ns >= self.start_ns && at_ns < self.end_ns
    }
}

/// What one driver thread observed.
#[derive(Debug, Clone)]
pub struct ThreadStats {
    /// Receipt minus scheduled send time of measured deliveries, ns.
    pub latency_ns: Histogram<u64>,
    /// TCP connect start to the server's `connected` message, µs.
    pub connect_us: Histogram<u64>,
    /// Publishes sent (all phases).
    pub sent_total: u64,
    /// Publishes stamped inside the window.
    pub sent_window: u64,
    /// Deliveries due (sent × audience), all phases.
    pub due_total: u64,
    /// Deliveries due for publishes stamped inside the window.
    pub due_window: u64,
    /// Deliveries received by measured subscribers, all phases.
    pub received_total: u64,
    /// Deliveries received for publishes stamped inside the window.
    pub received_window: u64,
    /// Deliveries received (any stamp) while the window was open: the throughput, which
    /// stays meaningful when a slow server delivers window publishes only after it.
    pub received_during_window: u64,
    /// Publishes not sent because the publisher's own send buffer was full.
    pub publish_skipped: u64,
    /// Messages missing in a publisher's sequence, as seen by subscribers.
    pub gap_messages: u64,
    /// Deliveries older than one already seen from the same publisher.
    pub reordered: u64,
    /// Gap notices from the relay (slow-consumer drop policy).
    pub gap_notices: u64,
    /// Deliveries received by churn connections (not measured).
    pub churn_deliveries: u64,
    /// Frames that carried deliveries (one per message, or one per room tick batch) received
    /// while the window was open: frames per delivery is this over `received_during_window`.
    pub delivery_frames_during_window: u64,
    /// A member's own messages in its room's batches (a batch carries them: not deliveries).
    pub own_in_batch: u64,
    /// Connections that completed setup (connected and subscribed).
    pub conns_ready: u64,
    /// Connections that failed before setup completed.
    pub conns_failed: u64,
    /// Connections that were open and ready, then lost before the end.
    pub conns_lost: u64,
    /// Churn connections opened.
    pub churn_opened: u64,
    /// Churn connections closed by the swarm after their hold time.
    pub churn_closed: u64,
    /// Errors by kind (`connect_refused`, `protocol_...`, `handshake_...`, `server_error`).
    pub errors: BTreeMap<String, u64>,
    /// Close codes received from the server.
    pub close_codes: BTreeMap<u16, u64>,
    /// CPU-seconds of this thread over the window (set at the window's end).
    pub cpu_window_s: f64,
    /// How late each measured publish left the swarm: send time minus scheduled time, ns.
    /// Latency counts from the scheduled time, so this part of it is the swarm's own delay
    /// (a busy driver thread), not the server's.
    pub send_lag_ns: Histogram<u64>,
}

impl Default for ThreadStats {
    fn default() -> Self {
        Self {
            latency_ns: new_histogram(LATENCY_NS_MAX),
            connect_us: new_histogram(CONNECT_US_MAX),
            sent_total: 0,
            sent_window: 0,
            due_total: 0,
            due_window: 0,
            received_total: 0,
            received_window: 0,
            received_during_window: 0,
            publish_skipped: 0,
            gap_messages: 0,
            reordered: 0,
            gap_notices: 0,
            churn_deliveries: 0,
            delivery_frames_during_window: 0,
            own_in_batch: 0,
            conns_ready: 0,
            conns_failed: 0,
            conns_lost: 0,
            churn_opened: 0,
            churn_closed: 0,
            errors: BTreeMap::new(),
            close_codes: BTreeMap::new(),
            cpu_window_s: 0.0,
            send_lag_ns: new_histogram(LATENCY_NS_MAX),
        }
    }
}

fn new_histogram(high: u64) -> Histogram<u64> {
    // Three significant digits: 0.1% resolution at every magnitude.
    Histogram::new_with_bounds(1, high, 3).expect("static histogram bounds are valid")
}

impl ThreadStats {
    /// Counts one error of `kind`.
    pub fn error(&mut self, kind: &str) {
        *self.errors.entry(kind.to_string()).or_default() += 1;
    }

    /// Records a latency (clamped to the histogram's range).
    #[inline]
    pub fn record_latency(&mut self, latency_ns: u64) {
        let _ = self.latency_ns.record(latency_ns.clamp(1, LATENCY_NS_MAX));
    }

    /// Records how late a publish was sent (clamped to the histogram's range; 0 counts as 1).
    #[inline]
    pub fn record_send_lag(&mut self, lag_ns: u64) {
        let _ = self.send_lag_ns.record(lag_ns.clamp(1, LATENCY_NS_MAX));
    }

    /// Records a connect time.
    pub fn record_connect(&mut self, connect_us: u64) {
        let _ = self.connect_us.record(connect_us.clamp(1, CONNECT_US_MAX));
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &ThreadStats) {
        let _ = self.latency_ns.add(&other.latency_ns);
        let _ = self.connect_us.add(&other.connect_us);
        let _ = self.send_lag_ns.add(&other.send_lag_ns);
        self.sent_total += other.sent_total;
        self.sent_window += other.sent_window;
        self.due_total += other.due_total;
        self.due_window += other.due_window;
        self.received_total += other.received_total;
        self.received_window += other.received_window;
        self.received_during_window += other.received_during_window;
        self.publish_skipped += other.publish_skipped;
        self.gap_messages += other.gap_messages;
        self.reordered += other.reordered;
        self.gap_notices += other.gap_notices;
        self.churn_deliveries += other.churn_deliveries;
        self.delivery_frames_during_window += other.delivery_frames_during_window;
        self.own_in_batch += other.own_in_batch;
        self.conns_ready += other.conns_ready;
        self.conns_failed += other.conns_failed;
        self.conns_lost += other.conns_lost;
        self.churn_opened += other.churn_opened;
        self.churn_closed += other.churn_closed;
        for (kind, n) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += n;
        }
        for (code, n) in &other.close_codes {
            *self.close_codes.entry(*code).or_default() += n;
        }
        self.cpu_window_s += other.cpu_window_s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_half_open() {
        let w = Window {
            start_ns: 10,
            end_ns: 20,
        };
        assert!(!w.contains(9));
        assert!(w.contains(10));
        assert!(w.contains(19));
        assert!(!w.contains(20));
        assert!(!Window::NEVER.contains(u64::MAX - 1));
    }

    #[test]
    fn merge_adds_counters_histograms_and_errors() {
        let mut a = ThreadStats::default();
        let mut b = ThreadStats::default();
        a.record_latency(1_000);
        b.record_send_lag(500);
        b.record_latency(2_000_000);
        b.received_window = 5;
        b.error("connect_refused");
        b.close_codes.insert(4100, 2);
        a.merge(&b);
        assert_eq!(a.latency_ns.len(), 2);
        assert_eq!(a.send_lag_ns.len(), 1);
        assert_eq!(a.received_window, 5);
        assert_eq!(a.errors["connect_refused"], 1);
        assert_eq!(a.close_codes[&4100], 2);
    }
}
