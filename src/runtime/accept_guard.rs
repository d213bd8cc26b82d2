//! What the accept phase does when `accept(2)` fails for want of descriptors or kernel memory.
//!
//! Owns: one reserve descriptor per loop (an open `/dev/null`) and the retry deadline of the
//! listeners. May not touch: connections.
//!
//! Why: listeners are edge-triggered. When `accept` fails with `EMFILE` the connection stays in
//! the backlog and no new readiness event comes for it, so without help the loop would accept
//! again only when another client knocks, and real clients would time out behind a flood.
//! Two remedies, as nginx and libuv use them:
//! - at a descriptor limit (`EMFILE`, `ENFILE`) the loop closes its reserve descriptor, accepts
//!   one connection with it, answers `503` with `Retry-After` and closes it, then takes the
//!   reserve back, until the backlog is empty: clients get a clear answer, not a hang;
//! - when that is not possible (no reserve, or `ENOBUFS`/`ENOMEM`), the listeners are retried
//!   from the loop's poll timeout with a doubling backoff (`ACCEPT_RETRY_MIN_NS` to
//!   `ACCEPT_RETRY_MAX_NS`, 1 ms doubling to 100 ms): accepting resumes by itself once
//!   descriptors are free, and a loop stuck at the limit wakes about ten times a second for it
//!   (no busy loop).

use std::fs::File;
use std::io;

use crate::metrics::Counter;

/// First retry delay after a failed accept.
pub(super) const ACCEPT_RETRY_MIN_NS: u64 = 1_000_000;
/// Longest retry delay while accepts keep failing.
pub(super) const ACCEPT_RETRY_MAX_NS: u64 = 100_000_000;

/// Why an `accept(2)` failed, for the `reason` label of `wsrelay_accept_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AcceptFailure {
    /// `EMFILE`: the process's descriptor limit (`RLIMIT_NOFILE`).
    ProcessDescriptors,
    /// `ENFILE`: the system-wide descriptor limit.
    SystemDescriptors,
    /// `ENOBUFS` or `ENOMEM`: kernel memory for the socket.
    NoMemory,
    /// Anything else (e.g. `ECONNABORTED`: the client gave up while queued).
    Other,
}

impl AcceptFailure {
    /// Classifies an `accept` error (not `WouldBlock` or `Interrupted`).
    pub(super) fn of(error: &io::Error) -> Self {
        match error.raw_os_error() {
            Some(libc::EMFILE) => Self::ProcessDescriptors,
            Some(libc::ENFILE) => Self::SystemDescriptors,
            Some(libc::ENOBUFS | libc::ENOMEM) => Self::NoMemory,
            _ => Self::Other,
        }
    }

    /// The counter series it is counted in.
    pub(super) fn counter(self) -> Counter {
        match self {
            Self::ProcessDescriptors => Counter::AcceptErrorsEmfile,
            Self::SystemDescriptors => Counter::AcceptErrorsEnfile,
            Self::NoMemory => Counter::AcceptErrorsNoMemory,
            Self::Other => Counter::AcceptErrorsOther,
        }
    }

    /// True when one freed descriptor lets the next `accept` succeed.
    pub(super) fn is_descriptor_limit(self) -> bool {
        matches!(self, Self::ProcessDescriptors | Self::SystemDescriptors)
    }
}

/// The reserve descriptor and the listeners' retry deadline of one loop.
#[derive(Debug)]
pub(super) struct AcceptGuard {
    reserve: Option<File>,
    /// The `503` answer for clients accepted with the reserve descriptor.
    response: Vec<u8>,
    retry_at_ns: Option<u64>,
    backoff_ns: u64,
}

impl AcceptGuard {
    /// Takes the reserve descriptor (if even that fails, only the retry remedy is left).
    pub(super) fn new() -> Self {
        let mut response = Vec::with_capacity(192);
        crate::proto::handshake::encode_http_response(
            &mut response,
            503,
            "Service Unavailable",
            "text/plain",
            &[("Retry-After", "1")],
            b"server at its file descriptor limit, retry later\n",
        );
        AcceptGuard {
            reserve: open_reserve(),
            response,
            retry_at_ns: None,
            backoff_ns: ACCEPT_RETRY_MIN_NS,
        }
    }

    /// Closes the reserve descriptor so that one `accept` can succeed. False when there is none
    /// (it could not be taken back last time and still cannot).
    pub(super) fn release_reserve(&mut self) -> bool {
        if self.reserve.is_none() {
            self.reserve = open_reserve();
        }
        self.reserve.take().is_some()
    }

    /// The `503` answer for a client shed at the descriptor limit.
    pub(super) fn response(&self) -> &[u8] {
        &self.response
    }

    /// Takes the reserve descriptor back after the shed connection was closed.
    pub(super) fn restore_reserve(&mut self) {
        if self.reserve.is_none() {
            self.reserve = open_reserve();
        }
    }

    /// Schedules another try of the listeners, backing off while accepts keep failing.
    pub(super) fn schedule_retry(&mut self, now_ns: u64) {
        if self.retry_at_ns.is_none() {
            self.retry_at_ns = Some(now_ns + self.backoff_ns);
            self.backoff_ns = (self.backoff_ns * 2).min(ACCEPT_RETRY_MAX_NS);
        }
    }

    /// An accept drained the backlog (`WouldBlock`): back to normal.
    pub(super) fn on_backlog_empty(&mut self) {
        self.backoff_ns = ACCEPT_RETRY_MIN_NS;
    }

    /// The retry deadline, for the poll timeout.
    pub(super) fn retry_at_ns(&self) -> Option<u64> {
        self.retry_at_ns
    }

    /// True (once) when the retry deadline has passed.
    pub(super) fn take_due(&mut self, now_ns: u64) -> bool {
        match self.retry_at_ns {
            Some(at) if at <= now_ns => {
                self.retry_at_ns = None;
                true
            }
            _ => false,
        }
    }
}

fn open_reserve() -> Option<File> {
    File::open("/dev/null").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_classified_by_errno() {
        let of = |errno| AcceptFailure::of(&io::Error::from_raw_os_error(errno));
        assert_eq!(of(libc::EMFILE), AcceptFailure::ProcessDescriptors);
        assert_eq!(of(libc::ENFILE), AcceptFailure::SystemDescriptors);
        assert_eq!(of(libc::ENOBUFS), AcceptFailure::NoMemory);
        assert_eq!(of(libc::ENOMEM), AcceptFailure::NoMemory);
        assert_eq!(of(libc::ECONNABORTED), AcceptFailure::Other);
        assert!(of(libc::EMFILE).is_descriptor_limit());
        assert!(!of(libc::ENOMEM).is_descriptor_limit());
    }

    #[test]
    fn retries_back_off_until_the_backlog_empties() {
        let mut g = AcceptGuard::new();
        g.schedule_retry(0);
        assert_eq!(g.retry_at_ns(), Some(ACCEPT_RETRY_MIN_NS));
        // A second failure before the retry keeps the first deadline.
        g.schedule_retry(10);
        assert_eq!(g.retry_at_ns(), Some(ACCEPT_RETRY_MIN_NS));
        assert!(!g.take_due(ACCEPT_RETRY_MIN_NS - 1));
        assert!(g.take_due(ACCEPT_RETRY_MIN_NS));
        assert!(!g.take_due(ACCEPT_RETRY_MIN_NS));
        g.schedule_retry(100);
        assert_eq!(g.retry_at_ns(), Some(100 + 2 * ACCEPT_RETRY_MIN_NS));
        for _ in 0..20 {
            let at = g.retry_at_ns().unwrap_or(0);
            assert!(g.take_due(at));
            g.schedule_retry(at);
        }
        let at = g.retry_at_ns().unwrap_or(0);
        assert!(g.take_due(at));
        g.schedule_retry(0);
        assert_eq!(g.retry_at_ns(), Some(ACCEPT_RETRY_MAX_NS));
        assert!(g.take_due(ACCEPT_RETRY_MAX_NS));
        g.on_backlog_empty();
        g.schedule_retry(0);
        assert_eq!(g.retry_at_ns(), Some(ACCEPT_RETRY_MIN_NS));
    }

    #[test]
    fn the_reserve_is_released_once_and_taken_back() {
        let mut g = AcceptGuard::new();
        assert!(g.release_reserve());
        g.restore_reserve();
        assert!(g.release_reserve());
    }
}
