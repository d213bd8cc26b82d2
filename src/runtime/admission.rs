//! Admission control: limits on new connections (rate, total and per source IP; open
//! connections per source IP) and on the messages one connection may send per second, and the
//! `Origin` allow-list. Each refusal is answered (503 with `Retry-After`, 403, or an error then
//! close 4101) and counted.
//!
//! Rates are token buckets per loop, each with a 1/N share of the configured rate (connections
//! are spread over the loops by the kernel, so the sum is the configured rate). The per-IP
//! bucket table is bounded (`Config::ip_buckets_max`); when full, idle (full) buckets are dropped
//! first. Open connections per IP are counted process-wide in one map behind a mutex that is
//! touched once per admitted and once per closed connection, never per message.
//!
//! The process-wide limits (`--connect-rate`, `--max-connections`) do not depend on the
//! client's address: they are checked once, at accept, for every relay connection, so that a
//! connection whose address comes later (a PROXY header, a trusted proxy's request head) is
//! bounded from its first moment, not only by the handshake timeout. The per-IP limits use the
//! client address (`client_addr.rs`): the TCP peer's, or the one a PROXY header or a trusted
//! proxy's forwarding header names; they are checked once, as soon as that address is final.
//! A connection counted in the per-IP map is released exactly once, when it is reaped
//! (`Admission::Counted`).

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use crate::close_code;
use crate::conn_id::ConnId;
use crate::metrics::Counter;
use crate::proto::handshake as hs;
use crate::rate::TokenBucket;
use crate::runtime::conn::RateStanding;
use crate::runtime::conn::{Admission, CloseReason};
use crate::runtime::dispatch::CloseHow;
use crate::runtime::event_loop::EventLoop;
use crate::session::Reply;

/// Why a new connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Over the connection rate (total or per IP): come back after `retry_after_s`.
    RateLimited { retry_after_s: u64 },
    /// Over the open connections allowed (total or per IP).
    Full,
}

impl EventLoop {
    /// Checks a relay connection just accepted against the process-wide limits (new
    /// connections per second, open connections); refuses it with 503 if over one. Returns
    /// true when it may go on (to its PROXY header, its request head, or `admit`).
    pub(super) fn admit_process_wide(&mut self, id: ConnId) -> bool {
        let Some(peer) = self.conn_mut(id).map(|c| c.peer_ip) else {
            return false;
        };
        let refusal = if !self.net.connect_bucket.try_take(self.now_ns) {
            let retry_after_s = self.net.connect_bucket.retry_after_s();
            Some(Refusal::RateLimited { retry_after_s })
        } else if self.env.shared.conns_open.load(Ordering::Relaxed)
            > self.env.config.connections_max
        {
            Some(Refusal::Full)
        } else {
            None
        };
        match refusal {
            None => true,
            Some(refusal) => {
                self.refuse_admission(id, peer, refusal);
                false
            }
        }
    }

    /// Checks a connection whose client address is now final (`client_addr.rs`) against the
    /// per-IP limits; refuses it with 503 if over one. Returns true when admitted.
    pub(super) fn admit(&mut self, id: ConnId) -> bool {
        let Some(ip) = self.conn_mut(id).map(|c| c.peer_ip) else {
            return false;
        };
        let outcome = match self.check_ip_rate(ip) {
            Some(refusal) => Err(refusal),
            None => self.check_ip_count(ip),
        };
        let admission = match outcome {
            Ok(true) => Admission::Counted,
            Ok(false) | Err(_) => Admission::Uncounted,
        };
        if let Some(conn) = self.conn_mut(id) {
            conn.admission = admission;
        }
        match outcome {
            Ok(_) => true,
            Err(refusal) => {
                self.refuse_admission(id, ip, refusal);
                false
            }
        }
    }

    fn check_ip_rate(&mut self, ip: IpAddr) -> Option<Refusal> {
        let now_ns = self.now_ns;
        let per_ip_rate = self.per_loop_share(self.env.config.connect_rate_per_ip_per_s);
        if per_ip_rate == 0 {
            return None;
        }
        let buckets_max = self.env.config.ip_buckets_max;
        if self.net.ip_buckets.len() >= buckets_max && !self.net.ip_buckets.contains_key(&ip) {
            self.net.ip_buckets.retain(|_, b| !b.is_full(now_ns));
        }
        if self.net.ip_buckets.len() >= buckets_max && !self.net.ip_buckets.contains_key(&ip) {
            // Table full of active sources: treat the newcomer as over its rate.
            return Some(Refusal::RateLimited { retry_after_s: 1 });
        }
        let bucket = self
            .net
            .ip_buckets
            .entry(ip)
            .or_insert_with(|| TokenBucket::new(per_ip_rate, per_ip_rate, now_ns));
        match bucket.try_take(now_ns) {
            true => None,
            false => Some(Refusal::RateLimited {
                retry_after_s: bucket.retry_after_s(),
            }),
        }
    }

    /// The per-IP open-connection limit. `Ok(true)` when `ip` was counted in the per-IP map
    /// (then it must be released exactly once: `release_ip` when the connection is reaped).
    fn check_ip_count(&mut self, ip: IpAddr) -> Result<bool, Refusal> {
        let per_ip_max = self.env.config.connections_per_ip_max;
        if per_ip_max == 0 {
            return Ok(false);
        }
        let mut counts = match self.env.shared.ip_conns.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        let n = counts.entry(ip).or_insert(0);
        if *n as usize >= per_ip_max {
            return Err(Refusal::Full);
        }
        *n += 1;
        Ok(true)
    }

    /// Releases the per-IP count of a reaped connection that was `Admission::Counted`.
    pub(super) fn release_ip(&self, ip: IpAddr) {
        let mut counts = match self.env.shared.ip_conns.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(n) = counts.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&ip);
            }
        }
    }

    fn refuse_admission(&mut self, id: ConnId, ip: IpAddr, refusal: Refusal) {
        let (reason, body, retry_after_s) = match refusal {
            Refusal::RateLimited { retry_after_s } => (
                CloseReason::RateLimited,
                &b"rate limited: too many new connections, retry later\n"[..],
                retry_after_s,
            ),
            Refusal::Full => (
                CloseReason::ServerFull,
                &b"server full: too many connections, retry later\n"[..],
                1,
            ),
        };
        self.warn_refused(
            reason.label(),
            &format!("connection from {ip} refused with 503"),
        );
        let retry = retry_after_s.to_string();
        let headers = [("Retry-After", retry.as_str())];
        let mut out = Vec::with_capacity(192);
        hs::encode_http_response(
            &mut out,
            503,
            "Service Unavailable",
            "text/plain",
            &headers,
            body,
        );
        self.metrics.inc(Counter::HandshakeRejected503);
        if let Some(conn) = self.conn_mut(id) {
            conn.set_close_reason(reason);
        }
        self.respond(id, out);
    }

    /// The configured rate's share for one loop (at least 1 when the rate is not 0).
    pub(super) fn per_loop_share(&self, rate: u64) -> u64 {
        match rate {
            0 => 0,
            r => (r / self.mesh.loops().max(1) as u64).max(1),
        }
    }

    /// `Origin` allow-list (RFC 6455 §10.2): true when allowed; otherwise answers 403.
    pub(super) fn check_origin(&mut self, id: ConnId, origin: Option<&str>) -> bool {
        let allowed = &self.env.config.origins_allowed;
        if allowed.is_empty() || origin.is_some_and(|o| allowed.iter().any(|a| a == o)) {
            return true;
        }
        self.warn_refused("origin_forbidden", "Origin not in the allow-list");
        let mut out = Vec::with_capacity(160);
        let body = b"forbidden: Origin not allowed\n";
        hs::encode_http_response(&mut out, 403, "Forbidden", "text/plain", &[], body);
        self.metrics.inc(Counter::HandshakeRejected403);
        self.respond(id, out);
        false
    }

    /// Per-connection message rate: true when the message may be processed. The first excess
    /// gets an error; an excess while already warned closes with 4101. The warning is lifted
    /// once the bucket is full again.
    pub(super) fn take_message_token(&mut self, id: ConnId) -> bool {
        let (now_ns, rate_per_s) = (self.now_ns, self.env.config.messages_per_s_max);
        let Some(conn) = self.conn_mut(id) else {
            return false;
        };
        if rate_per_s == 0 {
            return true; // No limit (a reload to 0 lifts it for every connection).
        }
        // The bucket is made on the first message (with the rate then in force).
        let (bucket, standing) = conn.session.extras_mut().rate.get_or_insert_with(|| {
            let bucket = TokenBucket::new(rate_per_s, rate_per_s, now_ns);
            (bucket, RateStanding::Within)
        });
        if bucket.try_take(now_ns) {
            if *standing == RateStanding::Warned && bucket.is_full(now_ns) {
                *standing = RateStanding::Within;
            }
            return true;
        }
        let warned = std::mem::replace(standing, RateStanding::Warned) == RateStanding::Warned;
        self.metrics.command_error("rate_limited");
        if warned {
            conn_rate_close(self, id);
        } else {
            self.reply(id, Reply::RateLimited);
        }
        false
    }
}

fn conn_rate_close(lp: &mut EventLoop, id: ConnId) {
    if let Some(conn) = lp.conn_mut(id) {
        conn.set_close_reason(CloseReason::RateLimited);
    }
    // After what is queued: the client must see the error that warned it.
    lp.start_close(
        id,
        Some(close_code::RATE_LIMITED),
        "rate limited",
        CloseHow::AfterQueued,
    );
}
