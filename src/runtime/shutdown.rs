//! Shutdown and reaping.
//!
//! Graceful shutdown (SIGINT/SIGTERM, or `ServerHandle::shutdown`): every loop stops accepting
//! (its listener is dropped, so the kernel refuses new connections), closes every open
//! connection with 1001 "going away" after what is already queued, waits up to
//! `shutdown_grace` for the close replies, then drops whatever is left and ends. With
//! `drain_over`, closes are spread evenly over that window with 4200 ("reconnect at once") so
//! that a rolling deploy does not send every client back at the same instant.

use std::sync::atomic::Ordering;

use crate::conn_id::ConnId;
use crate::proto::close::code;
use crate::runtime::conn::{Admission, CloseReason, Phase};
use crate::runtime::dispatch::CloseHow;
use crate::runtime::event_loop::EventLoop;
use crate::runtime::ShutdownState;

/// A loop's shutdown in progress.
#[derive(Debug, Clone, Copy)]
pub struct Drain {
    /// After this, remaining connections are dropped.
    pub deadline_ns: u64,
    /// Connections closed since shutdown began.
    pub closed_total: u64,
}

impl EventLoop {
    /// Starts the shutdown once the process-wide state asks for it.
    pub(super) fn check_shutdown(&mut self) {
        if self.env.shutdown.is_some() {
            return;
        }
        match self.env.shared.shutdown_state() {
            ShutdownState::Running => {}
            ShutdownState::Graceful => self.begin_shutdown(),
            ShutdownState::Immediate => {
                self.begin_shutdown();
                if let Some(d) = self.env.shutdown.as_mut() {
                    d.deadline_ns = 0;
                }
            }
        }
    }

    fn begin_shutdown(&mut self) {
        // Rooms' held messages go out before the closes (best effort for subscribers on other
        // loops, which may be closing already).
        self.tick_all_now();
        let cfg = &self.env.config;
        let drain_ns = cfg.drain_over.as_nanos() as u64;
        let grace_ns = cfg.shutdown_grace.as_nanos() as u64;
        self.env.shutdown = Some(Drain {
            deadline_ns: self.now_ns + drain_ns + grace_ns,
            closed_total: 0,
        });
        if let Some(mut l) = self.net.listener.take() {
            let _ = self.net.poll.registry().deregister(&mut l);
        }
        if let Some(mut l) = self.net.metrics_listener.take() {
            let _ = self.net.poll.registry().deregister(&mut l);
        }
        let ids: Vec<ConnId> = self.conns.ids();
        let count = ids.len().max(1) as u64;
        for (i, id) in ids.into_iter().enumerate() {
            let at_ns = self.now_ns + drain_ns * i as u64 / count;
            self.shut_one(id, drain_ns, at_ns);
        }
    }

    fn shut_one(&mut self, id: ConnId, drain_ns: u64, at_ns: u64) {
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        match conn.session.phase() {
            Phase::Open if drain_ns > 0 => {
                conn.session.drain_at(at_ns);
                self.rearm(id);
            }
            Phase::Open => {
                conn.set_close_reason(CloseReason::Shutdown);
                self.start_close(
                    id,
                    Some(code::GOING_AWAY),
                    "going away",
                    CloseHow::AfterQueued,
                );
            }
            Phase::Handshaking { .. } => {
                conn.set_close_reason(CloseReason::Shutdown);
                self.mark_closed(id);
            }
            _ => {}
        }
    }

    /// True when the loop may end: shutdown began and every connection is gone, or the grace
    /// period is over (then what is left is dropped).
    pub(super) fn shutdown_complete(&mut self) -> bool {
        let Some(drain) = self.env.shutdown else {
            return false;
        };
        if self.conns.is_empty() {
            return true;
        }
        if self.now_ns < drain.deadline_ns {
            return false;
        }
        let ids: Vec<ConnId> = self.conns.ids();
        for id in ids {
            self.mark_closed(id);
        }
        self.reap_closed();
        true
    }

    /// Removes connections that reached `Closed`: socket closed, subscriptions dropped, timer
    /// cancelled, counters updated.
    pub(super) fn reap_closed(&mut self) {
        let closed = std::mem::take(&mut self.work.closed);
        for &id in &closed {
            let Some(mut conn) = self.conns.remove(id) else {
                continue;
            };
            self.disarm(&conn);
            let _ = self.net.poll.registry().deregister(&mut conn.stream);
            let subscriptions = conn.session.take_subscriptions();
            self.drop_subscriptions(id, subscriptions);
            if conn.session.is_websocket() {
                self.conns.websocket_closed();
            }
            if conn.admission == Admission::Counted {
                self.release_ip(conn.peer_ip);
            }
            let reason = conn.session.close_reason().unwrap_or(CloseReason::IoError);
            self.metrics.inc(reason.counter());
            self.env.shared.conns_open.fetch_sub(1, Ordering::Relaxed);
            if let Some(d) = self.env.shutdown.as_mut() {
                d.closed_total += 1;
            }
        }
        let mut closed = closed;
        closed.clear();
        if self.work.closed.is_empty() {
            self.work.closed = closed;
        }
    }
}
