//! Timers: the loop's side of the sessions' deadlines (`session/timeouts.rs` decides what is
//! due; this file arms the wheel and does what the outcome asks: count, write, close).
//!
//! Each connection has at most one wheel entry, armed at its session's earliest deadline.
//! Deadlines that move later do not touch the wheel: when the entry fires, the session
//! re-checks and the entry is re-armed at the next deadline (the lazy re-check of the design).

use std::num::NonZeroU64;

use crate::close_code;
use crate::conn_id::ConnId;
use crate::metrics::Counter;
use crate::runtime::conn::{Armed, CloseReason, Conn};
use crate::runtime::event_loop::EventLoop;
use crate::session::{CloseStarted, Timeout, Timeouts};

impl EventLoop {
    /// Fires every due wheel entry.
    pub(super) fn expire_timers(&mut self) {
        let mut fired = std::mem::take(&mut self.work.fired);
        self.timers.expire(self.now_ns, &mut fired);
        for &id in &fired {
            if let Some(conn) = self.conn_mut(id) {
                conn.armed = Armed::Not;
                self.on_timer(id);
            }
        }
        fired.clear();
        self.work.fired = fired;
    }

    fn on_timer(&mut self, id: ConnId) {
        let (now_ns, t) = (self.now_ns, self.env.timeouts);
        let drain = (close_code::DRAINING, "server draining");
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        match conn.session.handle_timeout(now_ns, &t, drain) {
            Timeout::Nothing => {}
            Timeout::PingQueued => {
                self.metrics.inc(Counter::HeartbeatPingsSent);
                self.metrics.inc(Counter::TimerHeartbeatPing);
                self.mark_dirty(id);
            }
            Timeout::Terminate(reason) => self.terminate(id, reason),
            Timeout::IdleClosed(started) => {
                self.metrics.inc(Counter::TimerIdle);
                self.close_started(id, started);
            }
            Timeout::Drained(started) => self.close_started(id, started),
            Timeout::AuthDeadline => self.on_auth_deadline(id),
        }
        self.rearm(id);
    }

    /// Counts a close the session queued and schedules its write.
    pub(super) fn close_started(&mut self, id: ConnId, started: Option<CloseStarted>) {
        let Some(started) = started else {
            return;
        };
        if started.dropped > 0 {
            self.metrics
                .add(Counter::DropNotOpen, started.dropped as u64);
        }
        if let Some(code) = started.code {
            self.metrics.close_sent(code);
        }
        self.mark_dirty(id);
        self.rearm(id);
    }

    /// A pong: the heartbeat round trip is over.
    pub(super) fn on_heartbeat_answered(&mut self, id: ConnId, rtt_ns: Option<u64>) {
        if let Some(rtt_ns) = rtt_ns {
            self.metrics.record_heartbeat_rtt_ns(rtt_ns);
            // The armed entry is at the pong deadline; the next ping is due sooner.
            self.rearm(id);
        }
    }

    /// Ends a connection that stopped answering: no close handshake (the peer is presumed gone),
    /// a best-effort close frame is dropped with the socket.
    fn terminate(&mut self, id: ConnId, reason: CloseReason) {
        let expired = match reason {
            CloseReason::HeartbeatTimeout => Counter::TimerHeartbeatTimeout,
            CloseReason::HandshakeTimeout => Counter::TimerHandshake,
            _ => Counter::TimerClose,
        };
        self.metrics.inc(expired);
        self.mark_closed(id);
    }

    /// Arms the connection's wheel entry at its earliest deadline, if that is earlier than the
    /// armed one (a later armed entry would fire too late; an earlier one re-checks lazily).
    pub(super) fn rearm(&mut self, id: ConnId) {
        let t = &self.env.timeouts;
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let Some(next) = conn.session.next_deadline(t).and_then(NonZeroU64::new) else {
            return;
        };
        match conn.armed {
            Armed::At(_, at_ns) if at_ns <= next => {}
            Armed::At(key, _) => {
                self.timers.cancel(key);
                conn.armed = Armed::At(self.timers.insert(next.get(), id), next);
            }
            Armed::Not => conn.armed = Armed::At(self.timers.insert(next.get(), id), next),
        }
    }

    /// Removes a reaped connection's wheel entry.
    pub(super) fn disarm(&mut self, conn: &Conn) {
        if let Armed::At(key, _) = conn.armed {
            self.timers.cancel(key);
        }
    }
}

/// The session's timeouts from the configuration (refreshed with it on reload).
pub(super) fn timeouts(cfg: &crate::config::Config) -> Timeouts {
    let ns = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    Timeouts {
        handshake_ns: ns(cfg.handshake_timeout),
        heartbeat_interval_ns: ns(cfg.heartbeat_interval),
        heartbeat_timeout_ns: ns(cfg.heartbeat_timeout),
        idle_ns: ns(cfg.idle_timeout),
        close_ns: ns(cfg.close_timeout),
    }
}
