//! One client connection as the event loop holds it: its slot in the loop's table.
//!
//! Owns: the socket (and TLS session), the connection's `Session` (its protocol state: phase,
//! decoder, outbox, deadlines, identity, subscriptions), the handshake input, the loop's marks
//! (timer wheel entry, dirty/blocked flush state), its client address and admission, and its
//! permessage-deflate contexts. Nothing is queued for a connection that is not `Open`: the
//! outbox refuses data once a close frame is queued, and a `Closed` connection is reaped at the
//! end of the turn without another write.

use std::sync::Arc;

use mio::net::TcpStream;

use crate::conn_id::ConnId;
use crate::metrics::Counter;

use crate::session::Session;
pub use crate::session::{
    AuthState, CloseReason, Endpoint, Extras, PendingGap, Phase, RateStanding, SubState,
    Subscription,
};
use crate::timer::TimerKey;

impl CloseReason {
    /// The series of `wsrelay_connections_closed_total` it counts in.
    pub fn counter(self) -> Counter {
        match self {
            Self::ClientClose => Counter::ClosedClientClose,
            Self::ProtocolError => Counter::ClosedProtocolError,
            Self::InvalidUtf8 => Counter::ClosedInvalidUtf8,
            Self::MessageTooBig => Counter::ClosedMessageTooBig,
            Self::SlowConsumer => Counter::ClosedSlowConsumer,
            Self::HeartbeatTimeout => Counter::ClosedHeartbeatTimeout,
            Self::HandshakeTimeout => Counter::ClosedHandshakeTimeout,
            Self::CloseTimeout => Counter::ClosedCloseTimeout,
            Self::IdleTimeout => Counter::ClosedIdleTimeout,
            Self::AuthFailed => Counter::ClosedAuthFailed,
            Self::AuthTimeout => Counter::ClosedAuthTimeout,
            Self::RateLimited => Counter::ClosedRateLimited,
            Self::Shutdown => Counter::ClosedShutdown,
            Self::IoError => Counter::ClosedIoError,
            Self::PeerReset => Counter::ClosedPeerReset,
            Self::ServerFull => Counter::ClosedServerFull,
            Self::HttpDone => Counter::ClosedHttpDone,
            Self::PingFlood => Counter::ClosedPingFlood,
            Self::ProxyHeader => Counter::ClosedProxyHeader,
            Self::Tls => Counter::ClosedTls,
        }
    }

    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Self::ClientClose => "client_close",
            Self::ProtocolError => "protocol_error",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::MessageTooBig => "message_too_big",
            Self::SlowConsumer => "slow_consumer",
            Self::HeartbeatTimeout => "heartbeat_timeout",
            Self::HandshakeTimeout => "handshake_timeout",
            Self::CloseTimeout => "close_timeout",
            Self::IdleTimeout => "idle_timeout",
            Self::AuthFailed => "auth_failed",
            Self::AuthTimeout => "auth_timeout",
            Self::RateLimited => "rate_limited",
            Self::Shutdown => "shutdown",
            Self::IoError => "io_error",
            Self::PeerReset => "peer_reset",
            Self::ServerFull => "server_full",
            Self::HttpDone => "http_done",
            Self::PingFlood => "ping_flood",
            Self::ProxyHeader => "proxy_header",
            Self::Tls => "tls",
        }
    }
}

/// Where a connection stands with the flush phase (`flush.rs`): in this turn's dirty list or
/// not, registered for WRITABLE or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Nothing queued this turn; READABLE interest only.
    Idle,
    /// In this turn's dirty list.
    Dirty,
    /// The socket was full: WRITABLE interest until the outbox drains.
    Blocked,
    /// Blocked, and in this turn's dirty list too.
    BlockedDirty,
}

impl Flush {
    /// Registered for WRITABLE (the socket is full).
    pub fn is_blocked(self) -> bool {
        matches!(self, Flush::Blocked | Flush::BlockedDirty)
    }

    /// Taken off the dirty list (the flush began).
    fn undirtied(self) -> Self {
        match self {
            Flush::Dirty => Flush::Idle,
            Flush::BlockedDirty => Flush::Blocked,
            other => other,
        }
    }

    /// With WRITABLE interest registered (`blocked`) or dropped.
    pub fn with_blocked(self, blocked: bool) -> Self {
        let dirty = matches!(self, Flush::Dirty | Flush::BlockedDirty);
        match (blocked, dirty) {
            (false, false) => Flush::Idle,
            (false, true) => Flush::Dirty,
            (true, false) => Flush::Blocked,
            (true, true) => Flush::BlockedDirty,
        }
    }
}

/// The connection's entry on the loop's timer wheel, armed at its session's next deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Armed {
    /// No entry.
    Not,
    /// The wheel entry and its deadline (never 0: the niche keeps `Armed` at 16 bytes).
    At(TimerKey, std::num::NonZeroU64),
}

/// One connection.
#[derive(Debug)]
pub struct Conn {
    /// The socket.
    pub stream: TcpStream,
    /// The TLS session on a `--tls-cert` relay port (`runtime/tls.rs`); `None`: plain (one
    /// pointer: plain connections pay 8 bytes, TLS ones the session on the heap).
    pub tls: Option<Box<crate::runtime::tls::TlsConn>>,
    /// Its handle on this loop.
    pub id: ConnId,
    /// The protocol state machine: phase, decoder, outbox, deadlines, close handshake,
    /// identity, subscriptions (`session/`).
    pub session: Session,
    /// The input while handshaking: the PROXY header when one is awaited (bounded by
    /// `proxy_header::V2_BYTES_MAX`), then the request head (`REQUEST_HEAD_BYTES_MAX`); boxed
    /// (one pointer) and freed once the handshake is over.
    pub head: Option<Box<Vec<u8>>>,
    /// Its timer wheel entry, if armed.
    pub armed: Armed,
    /// In this turn's dirty list, registered for WRITABLE (only while the outbox is not empty
    /// after a flush).
    pub flush: Flush,
    /// The client's address: the TCP peer's, or the one named by the PROXY header or a trusted
    /// proxy's forwarding header once read (for the per-IP limits and logs; never shown to
    /// other clients).
    pub peer_ip: std::net::IpAddr,
    /// Where the connection stands with its address and the connection limits.
    pub admission: Admission,
    /// permessage-deflate, when negotiated (`compression.rs`); `None` otherwise.
    pub deflate: Option<Box<super::compression::ConnDeflate>>,
}

/// Where a relay connection stands with its client address and the connection limits
/// (`admission.rs`). The per-IP limits are applied once, when the address is final: at accept,
/// after the PROXY header, or after the request head of a trusted proxy (the process-wide ones
/// always at accept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// `--proxy-protocol`: the PROXY header has not been read yet.
    AwaitingProxyHeader,
    /// The address so far is a trusted proxy's: its forwarding header will name the client.
    AwaitingRequestHead,
    /// Admitted and counted in the per-IP open-connection map: released exactly once, when
    /// the connection is reaped.
    Counted,
    /// Not counted: admitted without a per-IP limit, refused, or not subject to the limits
    /// (the metrics listener).
    Uncounted,
}

impl Conn {
    /// The opaque connection id, `<loop>-<slot>-<generation>` (never an address); in cluster
    /// mode `<node>/<loop>-<slot>-<generation>` (`node`: the relay's name and boot nonce), so
    /// that ids are unique across relays.
    pub fn id_string(&self, node: Option<&str>, loop_id: usize) -> String {
        match node {
            None => format!("{loop_id}-{}", self.id),
            Some(node) => format!("{node}/{loop_id}-{}", self.id),
        }
    }

    /// The public name used as `from`: the token's subject, or the connection id (made once,
    /// on the first publish).
    pub fn name(&mut self, node: Option<&str>, loop_id: usize) -> Arc<str> {
        if let Some(name) = self.session.name() {
            return name.clone();
        }
        let name: Arc<str> = Arc::from(self.id_string(node, loop_id));
        self.session.extras_mut().name = Some(name.clone());
        name
    }

    /// True once it has a public name (it published, or a token named it).
    pub fn has_name(&self) -> bool {
        self.session.name().is_some()
    }

    /// Its authentication state.
    pub fn auth(&self) -> &AuthState {
        self.session.auth()
    }

    /// The buffered handshake input (made on first use).
    pub fn head_mut(&mut self) -> &mut Vec<u8> {
        self.head.get_or_insert_with(Default::default)
    }

    /// Takes the buffered handshake input out.
    pub fn take_head(&mut self) -> Vec<u8> {
        self.head.take().map(|b| *b).unwrap_or_default()
    }

    /// Puts the connection in this turn's dirty list, once (every path that queues output
    /// calls this: the flush phase writes it before the next `poll`).
    pub fn mark_dirty(&mut self, dirty: &mut Vec<ConnId>) {
        self.flush = match self.flush {
            Flush::Idle => Flush::Dirty,
            Flush::Blocked => Flush::BlockedDirty,
            Flush::Dirty | Flush::BlockedDirty => return,
        };
        dirty.push(self.id);
    }

    /// The flush of this turn began: off the dirty list.
    pub fn take_dirty(&mut self) {
        self.flush = self.flush.undirtied();
    }

    /// Records the close reason the first time only.
    pub fn set_close_reason(&mut self, reason: CloseReason) {
        self.session.set_close_reason(reason);
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// An idle connection costs at most 256 bytes of relay memory (issue 12): its `Conn` in
    /// the slab, its timer wheel entry, nothing on the heap. (Debug builds add 8 bytes of
    /// mio's selector id to the socket; the release build is 8 bytes smaller.)
    #[test]
    fn connection_state_stays_small() {
        let conn = std::mem::size_of::<Conn>();
        eprintln!(
            "Conn {conn} B, Session {} B",
            std::mem::size_of::<crate::session::Session>()
        );
        assert!(conn <= 176, "{conn}");
        // The session holds the protocol state and two boxes made on first use: the identity
        // (with the rare auth and drain deadlines) and the subscription list.
        assert!(std::mem::size_of::<crate::session::Session>() <= 88);
    }
}
