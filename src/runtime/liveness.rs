//! Timers: handshake timeout, heartbeat ping and terminate, close-handshake timeout, lingering
//! close, idle timeout and the graceful drain, all on the loop's one timer wheel.
//!
//! Each connection has at most one wheel entry, armed at its earliest deadline. Deadlines that
//! move later (every received byte pushes the heartbeat back) do not touch the wheel: when the
//! entry fires, `on_timer` re-reads the connection's state, acts on what is really due and
//! re-arms at the next deadline (the lazy re-check of the design). So a busy connection costs
//! nothing per message, and a silent one one wheel operation per heartbeat interval.

use crate::close_code;
use crate::conn_id::ConnId;
use crate::metrics::Counter;
use crate::proto::frame::{OpCode, PreparedFrame};
use crate::runtime::conn::{CloseReason, Conn, Phase};
use crate::runtime::dispatch::CloseHow;
use crate::runtime::event_loop::EventLoop;

/// What a due timer asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    Nothing,
    Ping,
    Terminate(CloseReason),
    CloseIdle,
    Drain,
    AuthDeadline,
}

impl EventLoop {
    /// Fires every due wheel entry.
    pub(super) fn expire_timers(&mut self) {
        let mut fired = std::mem::take(&mut self.fired);
        self.timers.expire(self.now_ns, &mut fired);
        for &id in &fired {
            if let Some(conn) = self.conn_mut(id) {
                conn.liveness.armed = None;
                self.on_timer(id);
            }
        }
        fired.clear();
        self.fired = fired;
    }

    fn on_timer(&mut self, id: ConnId) {
        let (now_ns, config) = (self.now_ns, self.config.clone());
        let due = match self.conn_mut(id) {
            Some(conn) => due_action(conn, now_ns, &config),
            None => return,
        };
        match due {
            Due::Nothing => {}
            Due::Ping => self.send_heartbeat_ping(id),
            Due::Terminate(reason) => self.terminate(id, reason),
            Due::CloseIdle => {
                self.metrics.inc(Counter::TimerIdle);
                if let Some(conn) = self.conn_mut(id) {
                    conn.set_close_reason(CloseReason::IdleTimeout);
                }
                self.start_close(id, Some(1000), "idle timeout", CloseHow::DiscardQueued);
            }
            Due::AuthDeadline => self.on_auth_deadline(id),
            Due::Drain => {
                if let Some(conn) = self.conn_mut(id) {
                    conn.liveness.drain_at_ns = 0;
                    conn.set_close_reason(CloseReason::Shutdown);
                }
                let code = close_code::DRAINING;
                self.start_close(id, Some(code), "server draining", CloseHow::AfterQueued);
            }
        }
        self.rearm(id);
    }

    /// RFC 6455 §5.5.2: a ping to a silent connection; the payload is free, we send nothing.
    fn send_heartbeat_ping(&mut self, id: ConnId) {
        let now_ns = self.now_ns;
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        conn.liveness.ping_sent_ns = Some(now_ns);
        // Silent for a heartbeat interval: give idle buffers back.
        conn.outbox.release_idle();
        conn.decoder.release_idle_buffer();
        let ping = PreparedFrame::new(OpCode::Ping, &[]).into_bytes();
        conn.outbox.push_control(ping);
        self.metrics.inc(Counter::HeartbeatPingsSent);
        self.metrics.inc(Counter::TimerHeartbeatPing);
        self.mark_dirty(id);
    }

    /// A pong: the heartbeat round trip is over.
    pub(super) fn on_pong(&mut self, id: ConnId) {
        let now_ns = self.now_ns;
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        if let Some(sent) = conn.liveness.ping_sent_ns.take() {
            self.metrics
                .record_heartbeat_rtt_ns(now_ns.saturating_sub(sent));
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
        if let Some(conn) = self.conn_mut(id) {
            conn.set_close_reason(reason);
        }
        self.mark_closed(id);
    }

    /// Arms the connection's wheel entry at its earliest deadline, if that is earlier than the
    /// armed one (a later armed entry would fire too late; an earlier one re-checks lazily).
    pub(super) fn rearm(&mut self, id: ConnId) {
        let cfg = &self.config;
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let Some(next) = next_deadline(conn, cfg) else {
            return;
        };
        match conn.liveness.armed {
            Some((_, armed_at)) if armed_at <= next => {}
            Some((key, _)) => {
                self.timers.cancel(key);
                conn.liveness.armed = Some((self.timers.insert(next, id), next));
            }
            None => conn.liveness.armed = Some((self.timers.insert(next, id), next)),
        }
    }

    /// Removes a reaped connection's wheel entry.
    pub(super) fn disarm(&mut self, conn: &Conn) {
        if let Some((key, _)) = conn.liveness.armed {
            self.timers.cancel(key);
        }
    }
}

/// The connection's earliest deadline, if any.
fn next_deadline(conn: &Conn, cfg: &crate::config::Config) -> Option<u64> {
    let l = &conn.liveness;
    let mut next = u64::MAX;
    let mut consider = |t: u64| {
        if t != 0 {
            next = next.min(t);
        }
    };
    match conn.phase {
        Phase::Handshaking => consider(l.handshake_deadline_ns),
        Phase::Closing | Phase::Lingering => consider(l.close_deadline_ns),
        Phase::Open => {
            consider(heartbeat_deadline(conn, cfg));
            consider(idle_deadline(conn, cfg));
            consider(l.drain_at_ns);
            consider(l.auth_deadline_ns);
        }
        Phase::Responding => consider(l.close_deadline_ns),
        Phase::Closed => {}
    }
    (next != u64::MAX).then_some(next)
}

/// When the heartbeat next needs attention: ping due, or the pong deadline.
fn heartbeat_deadline(conn: &Conn, cfg: &crate::config::Config) -> u64 {
    let interval_ns = cfg.heartbeat_interval.as_nanos() as u64;
    if interval_ns == 0 {
        return 0;
    }
    match conn.liveness.ping_sent_ns {
        Some(sent) => sent + cfg.heartbeat_timeout.as_nanos() as u64,
        None => conn.liveness.last_rx_ns + interval_ns,
    }
}

fn idle_deadline(conn: &Conn, cfg: &crate::config::Config) -> u64 {
    let idle_ns = cfg.idle_timeout.as_nanos() as u64;
    match idle_ns {
        0 => 0,
        _ => conn.liveness.last_rx_ns + idle_ns,
    }
}

/// Decides what is due now. Any received byte counts as liveness (issue: "any inbound frame
/// counts"): a pending ping is forgiven when something arrived after it.
fn due_action(conn: &mut Conn, now_ns: u64, cfg: &crate::config::Config) -> Due {
    let l = &mut conn.liveness;
    match conn.phase {
        Phase::Handshaking if l.handshake_deadline_ns != 0 && now_ns >= l.handshake_deadline_ns => {
            Due::Terminate(CloseReason::HandshakeTimeout)
        }
        Phase::Closing | Phase::Lingering | Phase::Responding
            if l.close_deadline_ns != 0 && now_ns >= l.close_deadline_ns =>
        {
            let reason = match conn.phase {
                Phase::Closing => CloseReason::CloseTimeout,
                _ => conn.close_reason.unwrap_or(CloseReason::CloseTimeout),
            };
            Due::Terminate(reason)
        }
        Phase::Open => open_due(conn, now_ns, cfg),
        _ => Due::Nothing,
    }
}

fn open_due(conn: &mut Conn, now_ns: u64, cfg: &crate::config::Config) -> Due {
    let l = &mut conn.liveness;
    if l.drain_at_ns != 0 && now_ns >= l.drain_at_ns {
        return Due::Drain;
    }
    if l.auth_deadline_ns != 0 && now_ns >= l.auth_deadline_ns {
        return Due::AuthDeadline;
    }
    if let Some(sent) = l.ping_sent_ns {
        if l.last_rx_ns > sent {
            l.ping_sent_ns = None; // Something arrived after the ping: alive.
        }
    }
    let idle_ns = cfg.idle_timeout.as_nanos() as u64;
    if idle_ns != 0 && now_ns >= l.last_rx_ns + idle_ns {
        return Due::CloseIdle;
    }
    let interval_ns = cfg.heartbeat_interval.as_nanos() as u64;
    if interval_ns == 0 {
        return Due::Nothing;
    }
    match l.ping_sent_ns {
        Some(sent) if now_ns >= sent + cfg.heartbeat_timeout.as_nanos() as u64 => {
            Due::Terminate(CloseReason::HeartbeatTimeout)
        }
        None if now_ns >= l.last_rx_ns + interval_ns => Due::Ping,
        _ => Due::Nothing,
    }
}
