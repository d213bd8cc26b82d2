//! Rate-limited warnings: at most one log line per kind of refused input per interval, with
//! the number of suppressed occurrences, so a flood of bad frames cannot flood the log (or cost
//! a formatted line per frame). Sans-IO: the caller passes `now_ns`.

/// Most distinct kinds tracked; further kinds share the last slot (bounded memory).
const KINDS_MAX: usize = 64;

/// One kind's window.
#[derive(Debug, Clone, Copy)]
struct Window {
    kind: &'static str,
    last_logged_ns: u64,
    suppressed: u64,
}

/// Per-loop limiter of warning lines.
#[derive(Debug)]
pub struct LogLimiter {
    interval_ns: u64,
    windows: Vec<Window>,
}

impl LogLimiter {
    /// At most one line per kind per `interval_ns`.
    pub fn new(interval_ns: u64) -> Self {
        LogLimiter {
            interval_ns,
            windows: Vec::new(),
        }
    }

    /// Whether a line for `kind` may be written now; `Some(n)` with the number of occurrences
    /// suppressed since the last line, `None` to stay silent (the occurrence is counted).
    pub fn allow(&mut self, kind: &'static str, now_ns: u64) -> Option<u64> {
        let interval_ns = self.interval_ns;
        let w = self.window(kind);
        if w.last_logged_ns != 0 && now_ns < w.last_logged_ns + interval_ns {
            w.suppressed += 1;
            return None;
        }
        w.last_logged_ns = now_ns.max(1);
        Some(std::mem::take(&mut w.suppressed))
    }

    fn window(&mut self, kind: &'static str) -> &mut Window {
        let pos = self.windows.iter().position(|w| w.kind == kind);
        let i = match pos {
            Some(i) => i,
            None if self.windows.len() < KINDS_MAX => {
                let fresh = Window {
                    kind,
                    last_logged_ns: 0,
                    suppressed: 0,
                };
                self.windows.push(fresh);
                self.windows.len() - 1
            }
            None => KINDS_MAX - 1,
        };
        &mut self.windows[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_kind_per_interval_with_the_suppressed_count() {
        let mut l = LogLimiter::new(1_000);
        assert_eq!(l.allow("a", 10), Some(0));
        assert_eq!(l.allow("a", 20), None);
        assert_eq!(l.allow("a", 500), None);
        assert_eq!(l.allow("b", 500), Some(0), "kinds are independent");
        assert_eq!(l.allow("a", 1_010), Some(2));
        assert_eq!(l.allow("a", 1_011), None);
    }

    #[test]
    fn memory_is_bounded_by_the_number_of_kinds() {
        const NAMES: [&str; 3] = ["x", "y", "z"];
        let mut l = LogLimiter::new(1_000);
        for i in 0..1000 {
            l.allow(NAMES[i % 3], 5);
        }
        assert!(l.windows.len() <= KINDS_MAX);
    }
}
