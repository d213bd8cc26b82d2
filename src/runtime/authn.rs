//! Authentication on the loop: the `auth` message, the optional `token` query parameter and
//! cookie, the auth timeout and token expiry. The token checks themselves are in
//! `crate::auth`; the connection's auth state, the gate every request passes (pending: only
//! `auth` and `ping`; granted: per channel) and the answers to refused requests are in the
//! session (`session/identity.rs`, `session/requests.rs`, `session/reply.rs`), all sans-IO.
//!
//! Policy: when a verifier is configured every connection must authenticate. Until it does,
//! only `auth` and `ping` are accepted (anything else gets an error and changes nothing). A bad
//! token closes with 4001, no token within `auth_timeout` closes with 4008, and a token that
//! expires while connected closes with 4001: do-not-reconnect codes, because retrying with the
//! same token cannot succeed (the client library mints a fresh one before reconnecting).

use crate::clock::Clock;
use crate::close_code;
use crate::conn_id::ConnId;
use crate::metrics::Counter;
use crate::proto::handshake as hs;
use crate::runtime::conn::{AuthState, CloseReason};
use crate::runtime::dispatch::CloseHow;
use crate::runtime::event_loop::EventLoop;
use crate::session::Reply;

/// Outcome of checking a connection at upgrade time.
pub(super) enum UpgradeAuth {
    /// Proceed with the upgrade.
    Proceed,
    /// Refused with 401; the response is queued.
    Refused,
}

impl EventLoop {
    /// Sets the connection's auth state before the 101 is sent: off, pending, or granted from a
    /// `token` query parameter or the `--auth-cookie` cookie (when enabled; a bad token is
    /// refused with 401; the Origin allow-list was checked before).
    pub(super) fn auth_at_upgrade(
        &mut self,
        id: ConnId,
        query: Option<&str>,
        cookie: Option<&str>,
    ) -> UpgradeAuth {
        let Some(verifier) = self.env.config.auth.clone() else {
            return UpgradeAuth::Proceed;
        };
        let config = &self.env.config;
        let from_query = query
            .filter(|_| config.auth_query_token)
            .and_then(query_token);
        let from_cookie = || {
            let name = config.auth_cookie.as_deref()?;
            hs::cookie_value(cookie?, name).filter(|t| !t.is_empty())
        };
        let token = from_query.or_else(from_cookie);
        let Some(token) = token else {
            let deadline = self.now_ns + self.env.config.auth_timeout.as_nanos() as u64;
            if let Some(conn) = self.conn_mut(id) {
                conn.session.await_auth(deadline);
            }
            return UpgradeAuth::Proceed;
        };
        match verifier.verify(token, Clock::unix_now_s()) {
            Ok(grant) => {
                self.grant(id, grant);
                UpgradeAuth::Proceed
            }
            Err(e) => {
                self.metrics.command_error(e.kind());
                self.warn_refused(e.kind(), e.message());
                self.respond_unauthorized(id);
                UpgradeAuth::Refused
            }
        }
    }

    fn respond_unauthorized(&mut self, id: ConnId) {
        let mut out = Vec::with_capacity(160);
        let body = b"unauthorized: the token did not verify\n";
        hs::encode_http_response(&mut out, 401, "Unauthorized", "text/plain", &[], body);
        self.metrics.inc(Counter::HandshakeRejected401);
        if let Some(conn) = self.conn_mut(id) {
            conn.set_close_reason(CloseReason::AuthFailed);
        }
        self.respond(id, out);
    }

    /// `{"type":"auth","token":...}`.
    pub(super) fn on_auth(&mut self, id: ConnId, token: &str) {
        let Some(verifier) = self.env.config.auth.clone() else {
            self.metrics.command_error("auth_not_configured");
            return self.reply(id, Reply::AuthNotConfigured);
        };
        if !matches!(
            self.conn_mut(id).map(|c| c.auth()),
            Some(AuthState::Pending)
        ) {
            self.metrics.command_error("already_authenticated");
            return self.reply(id, Reply::AlreadyAuthenticated);
        }
        match verifier.verify(token, Clock::unix_now_s()) {
            Ok(grant) => {
                let sub = grant.sub.clone();
                self.grant(id, grant);
                self.reply(id, Reply::Authenticated { sub: &sub });
            }
            Err(e) => {
                self.metrics.command_error(e.kind());
                self.warn_refused(e.kind(), e.message());
                self.close_unauthorized(
                    id,
                    CloseReason::AuthFailed,
                    close_code::UNAUTHORIZED,
                    "Unauthorized",
                );
            }
        }
    }

    /// Records a verified token: `from` becomes its subject; the deadline becomes its expiry.
    fn grant(&mut self, id: ConnId, grant: crate::auth::Grant) {
        let leeway_s = self.env.config.auth.as_ref().map_or(0, |v| v.leeway_s());
        let expiry_ns = grant.expires_at_unix_s.map_or(0, |exp| {
            let left_s = (exp + leeway_s).saturating_sub(Clock::unix_now_s());
            self.now_ns + left_s.saturating_mul(1_000_000_000)
        });
        if let Some(conn) = self.conn_mut(id) {
            conn.session.grant(grant, expiry_ns);
        }
        self.rearm(id);
    }

    /// The auth deadline passed: no `auth` in time (4008), or the token expired (4001).
    pub(super) fn on_auth_deadline(&mut self, id: ConnId) {
        self.metrics.inc(Counter::TimerAuth);
        let pending = match self.conn_mut(id) {
            Some(conn) => matches!(conn.auth(), AuthState::Pending),
            None => return,
        };
        if pending {
            let code = close_code::AUTH_TIMEOUT;
            self.close_unauthorized(id, CloseReason::AuthTimeout, code, "authentication timeout");
        } else {
            let code = close_code::UNAUTHORIZED;
            self.close_unauthorized(id, CloseReason::AuthFailed, code, "token expired");
        }
    }

    fn close_unauthorized(&mut self, id: ConnId, reason: CloseReason, code: u16, text: &str) {
        if let Some(conn) = self.conn_mut(id) {
            conn.set_close_reason(reason);
        }
        self.start_close(id, Some(code), text, CloseHow::DiscardQueued);
    }
}

/// The `token` parameter of a query string (JWTs are base64url and dots: no percent-decoding).
fn query_token(query: &str) -> Option<&str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::query_token;

    #[test]
    fn token_is_found_among_other_parameters() {
        assert_eq!(query_token("a=1&token=x.y.z&b=2"), Some("x.y.z"));
        assert_eq!(query_token("token="), None);
        assert_eq!(query_token("tokens=1"), None);
    }
}
