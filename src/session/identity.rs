//! Who the peer is and what it may do: its authentication state and grant, its public name,
//! its message-rate standing, and the two rare deadlines (authentication, drain). Boxed on first use (most connections never authenticate by
//! message, never publish, have no rate configured): an idle connection pays one pointer.

use std::sync::Arc;

use crate::auth::Grant;

use super::Session;

/// Where a connection stands with authentication.
#[derive(Debug)]
pub enum AuthState {
    /// Authentication is off: everything is allowed.
    NotRequired,
    /// Waiting for `{"type":"auth"}`; only `auth` and `ping` are accepted.
    Pending,
    /// Authenticated: the token's subject and permissions.
    Granted(Box<Grant>),
}

impl AuthState {
    /// May this connection subscribe to `channel`?
    pub fn may_subscribe(&self, channel: &str) -> bool {
        match self {
            AuthState::NotRequired => true,
            AuthState::Pending => false,
            AuthState::Granted(g) => g.subscribe.allows(channel),
        }
    }

    /// May this connection publish to `channel`?
    pub fn may_publish(&self, channel: &str) -> bool {
        match self {
            AuthState::NotRequired => true,
            AuthState::Pending => false,
            AuthState::Granted(g) => g.publish.allows(channel),
        }
    }
}

/// Where a connection stands with its message rate (`--max-messages-per-s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateStanding {
    /// Within its rate (or its bucket refilled since the warning).
    Within,
    /// It was told it is over its rate; the next excess closes it (4101).
    Warned,
}

/// Per-connection state most connections never use, boxed on first use so that an idle
/// connection stays small (issue 12: at most 256 bytes).
#[derive(Debug)]
pub struct Extras {
    /// Public name (`from` in deliveries): the token's `sub`, or the connection id, made on
    /// the first publish (most connections never publish: they should not pay for it).
    pub name: Option<Arc<str>>,
    /// Authentication state (`NotRequired` when auth is off).
    pub auth: AuthState,
    /// `--max-messages-per-s`: the bucket of data messages it may still send, and whether it
    /// was told it is over its rate (made on its first message while a rate is configured).
    pub rate: Option<(crate::rate::TokenBucket, RateStanding)>,
    /// Authentication deadline: the `auth` message (pending) or the token's expiry (0: none).
    pub auth_deadline_ns: u64,
    /// Graceful drain: close this connection at this time (0: none).
    pub drain_at_ns: u64,
}

/// The auth state of a connection without extras.
static NOT_REQUIRED: AuthState = AuthState::NotRequired;

impl Session {
    /// Its authentication state.
    pub fn auth(&self) -> &AuthState {
        self.extras.as_ref().map_or(&NOT_REQUIRED, |e| &e.auth)
    }

    /// The extras, made on first use.
    pub fn extras_mut(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(|| {
            Box::new(Extras {
                name: None,
                auth: AuthState::NotRequired,
                rate: None,
                auth_deadline_ns: 0,
                drain_at_ns: 0,
            })
        })
    }

    /// The authentication deadline (0: none).
    pub fn auth_deadline_ns(&self) -> u64 {
        self.extras.as_ref().map_or(0, |e| e.auth_deadline_ns)
    }

    /// When the graceful drain closes it (0: not draining).
    pub fn drain_at_ns(&self) -> u64 {
        self.extras.as_ref().map_or(0, |e| e.drain_at_ns)
    }

    /// Sets (or clears, with 0) the authentication deadline.
    pub fn set_auth_deadline(&mut self, at_ns: u64) {
        if at_ns != 0 || self.extras.is_some() {
            self.extras_mut().auth_deadline_ns = at_ns;
        }
    }

    /// Schedules the graceful drain's close of this connection at `at_ns` (open connections).
    pub fn drain_at(&mut self, at_ns: u64) {
        self.extras_mut().drain_at_ns = at_ns.max(1);
    }

    /// Its public name, if it has one yet (it published, or a token named it).
    pub fn name(&self) -> Option<&Arc<str>> {
        self.extras.as_ref().and_then(|e| e.name.as_ref())
    }

    /// Authentication is required and no token came with the upgrade: only `auth` and `ping`
    /// are accepted until a token verifies, and the connection is closed at `deadline_ns`.
    pub fn await_auth(&mut self, deadline_ns: u64) {
        self.extras_mut().auth = AuthState::Pending;
        self.set_auth_deadline(deadline_ns);
    }

    /// A token verified: its subject becomes the public name (`from`), its permissions apply
    /// from now on, and the connection is closed when it expires (`expiry_ns`, 0: never).
    pub fn grant(&mut self, grant: Grant, expiry_ns: u64) {
        let extras = self.extras_mut();
        extras.name = Some(Arc::from(grant.sub.as_str()));
        extras.auth = AuthState::Granted(Box::new(grant));
        self.set_auth_deadline(expiry_ns);
    }
}
