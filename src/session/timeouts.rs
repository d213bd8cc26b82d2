//! Deadlines: the handshake timeout, the heartbeat (ping when silent, terminate when the pong
//! does not come), the idle timeout, the close-handshake and lingering timeouts, the graceful
//! drain and the authentication deadline.
//!
//! A session has one next deadline (`next_deadline`), which the loop arms on its timer wheel.
//! Deadlines that move later (every received byte pushes the heartbeat back) are not re-armed:
//! when the entry fires, `handle_timeout` re-reads the state, acts on what is really due and
//! the loop re-arms at the next deadline (the lazy re-check). So a busy connection costs nothing
//! per message, and a silent one one wheel operation per heartbeat interval.

use crate::proto::frame::{OpCode, PreparedFrame};

use super::{CloseHow, CloseReason, CloseStarted, PeerClose, Phase, Session};

/// The configured timeouts, in nanoseconds (0: off where a timeout may be off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// The upgrade request (and the TLS handshake before it) must complete within this.
    pub handshake_ns: u64,
    /// Ping a connection silent for this long (0: no heartbeat).
    pub heartbeat_interval_ns: u64,
    /// Terminate when the heartbeat ping is not answered within this.
    pub heartbeat_timeout_ns: u64,
    /// Close (1000) a connection silent for this long (0: never).
    pub idle_ns: u64,
    /// The peer must answer our close frame (or send its FIN while lingering) within this.
    pub close_ns: u64,
}

/// A deadline kept in the session's extras (few connections have one).
enum RareDeadline {
    Drain,
    Auth,
}

/// What a passed deadline did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// Nothing was due (a deadline that moved later): re-arm.
    Nothing,
    /// The connection was silent for a heartbeat interval: a ping is queued (and idle buffers
    /// were given back).
    PingQueued,
    /// It stopped answering: close the socket now, without a close handshake (the peer is
    /// presumed gone). The reason is recorded.
    Terminate(CloseReason),
    /// Silent past the idle timeout: a close 1000 is queued (`None`: a close was under way).
    IdleClosed(Option<CloseStarted>),
    /// Its turn in the graceful drain came: a close is queued with `code`.
    Drained(Option<CloseStarted>),
    /// The authentication deadline passed (the loop knows whether auth is pending or expired).
    AuthDeadline,
}

impl Session {
    /// Acts on whatever is due at `now_ns`. `drain_close` is the code and reason of the drain's
    /// close frame (the loop's choice: 4200 "server draining").
    pub fn handle_timeout(
        &mut self,
        now_ns: u64,
        t: &Timeouts,
        drain_close: (u16, &str),
    ) -> Timeout {
        match self.phase {
            Phase::Handshaking { deadline_ns } if now_ns >= deadline_ns => {
                self.terminate(CloseReason::HandshakeTimeout)
            }
            Phase::Closing { deadline_ns, .. } if now_ns >= deadline_ns => {
                self.terminate(CloseReason::CloseTimeout)
            }
            Phase::Lingering { deadline_ns } if now_ns >= deadline_ns => {
                let reason = self.close_reason.unwrap_or(CloseReason::CloseTimeout);
                self.terminate(reason)
            }
            Phase::Responding {
                input,
                deadline_ns,
                written,
            } if now_ns >= deadline_ns => {
                let now_written = self.outbox.written_total() as u32; // Low bits: a change.
                if now_written == written {
                    // Nothing written since the last check: the client does not read.
                    return self.terminate(CloseReason::HttpDone);
                }
                self.phase = Phase::Responding {
                    input,
                    deadline_ns: now_ns + t.handshake_ns,
                    written: now_written,
                };
                Timeout::Nothing
            }
            Phase::Open => self.open_timeout(now_ns, t, drain_close),
            _ => Timeout::Nothing,
        }
    }

    fn terminate(&mut self, reason: CloseReason) -> Timeout {
        self.set_close_reason(reason);
        Timeout::Terminate(reason)
    }

    fn open_timeout(&mut self, now_ns: u64, t: &Timeouts, drain_close: (u16, &str)) -> Timeout {
        if let Some(due) = self.take_rare_deadline(now_ns) {
            return self.on_rare_deadline(now_ns, due, t, drain_close);
        }
        let l = &mut self.liveness;
        if l.ping_sent_ns != 0 && l.last_rx_ns > l.ping_sent_ns {
            l.ping_sent_ns = 0; // Something arrived after the ping: alive.
        }
        if t.idle_ns != 0 && now_ns >= l.last_rx_ns + t.idle_ns {
            self.set_close_reason(CloseReason::IdleTimeout);
            let close = (Some(1000), "idle timeout");
            let how = CloseHow::DiscardQueued;
            return Timeout::IdleClosed(self.start_close(
                now_ns,
                close,
                how,
                PeerClose::Awaited,
                t,
            ));
        }
        if t.heartbeat_interval_ns == 0 {
            return Timeout::Nothing;
        }
        match l.ping_sent_ns {
            0 if now_ns >= l.last_rx_ns + t.heartbeat_interval_ns => {
                self.queue_heartbeat_ping(now_ns)
            }
            0 => Timeout::Nothing,
            sent if now_ns >= sent + t.heartbeat_timeout_ns => {
                self.terminate(CloseReason::HeartbeatTimeout)
            }
            _ => Timeout::Nothing,
        }
    }

    /// The drain or authentication deadline that passed, cleared (drain first).
    fn take_rare_deadline(&mut self, now_ns: u64) -> Option<RareDeadline> {
        let e = self.extras.as_deref_mut()?;
        if e.drain_at_ns != 0 && now_ns >= e.drain_at_ns {
            e.drain_at_ns = 0;
            return Some(RareDeadline::Drain);
        }
        if e.auth_deadline_ns != 0 && now_ns >= e.auth_deadline_ns {
            e.auth_deadline_ns = 0;
            return Some(RareDeadline::Auth);
        }
        None
    }

    fn on_rare_deadline(
        &mut self,
        now_ns: u64,
        due: RareDeadline,
        t: &Timeouts,
        drain_close: (u16, &str),
    ) -> Timeout {
        match due {
            RareDeadline::Drain => {
                self.set_close_reason(CloseReason::Shutdown);
                let close = (Some(drain_close.0), drain_close.1);
                let how = CloseHow::AfterQueued;
                Timeout::Drained(self.start_close(now_ns, close, how, PeerClose::Awaited, t))
            }
            RareDeadline::Auth => Timeout::AuthDeadline,
        }
    }

    /// RFC 6455 §5.5.2: a ping to a silent connection; the payload is free, we send none.
    fn queue_heartbeat_ping(&mut self, now_ns: u64) -> Timeout {
        // `0` means "no ping out": a ping at time 0 (a fake clock's start) is recorded at 1 ns.
        self.liveness.ping_sent_ns = now_ns.max(1);
        // Silent for a heartbeat interval: give idle buffers back.
        self.outbox.release_idle();
        self.decoder.release_idle_buffer();
        let ping = PreparedFrame::new(OpCode::Ping, &[]).into_bytes();
        self.outbox.push_control(ping);
        Timeout::PingQueued
    }

    /// The earliest deadline, if any: where the loop arms the connection's timer.
    pub fn next_deadline(&self, t: &Timeouts) -> Option<u64> {
        let l = &self.liveness;
        let deadline = match self.phase {
            Phase::Handshaking { deadline_ns }
            | Phase::Closing { deadline_ns, .. }
            | Phase::Responding { deadline_ns, .. }
            | Phase::Lingering { deadline_ns } => deadline_ns,
            Phase::Open => [
                self.heartbeat_deadline(t),
                match t.idle_ns {
                    0 => 0,
                    idle => l.last_rx_ns + idle,
                },
                self.drain_at_ns(),
                self.auth_deadline_ns(),
            ]
            .into_iter()
            .filter(|&d| d != 0)
            .min()
            .unwrap_or(0),
            Phase::Closed => 0,
        };
        (deadline != 0).then_some(deadline)
    }

    /// When the heartbeat next needs attention: the ping, or the pong deadline (0: off).
    fn heartbeat_deadline(&self, t: &Timeouts) -> u64 {
        match (t.heartbeat_interval_ns, self.liveness.ping_sent_ns) {
            (0, _) => 0,
            (interval, 0) => self.liveness.last_rx_ns + interval,
            (_, sent) => sent + t.heartbeat_timeout_ns,
        }
    }
}
