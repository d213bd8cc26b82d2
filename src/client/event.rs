//! What the reconnecting session tells the application: owned, typed events.
//!
//! Owns: [`Event`], the cause of each ended connection ([`Disconnect`]) with the reconnect
//! policy it implies, and why a session stopped ([`StopReason`]). May not touch: state.

use std::io;
use std::time::Duration;

use crate::client::server_event::SnapshotItem;
pub use crate::client::server_event::{BatchMessage, BinaryBatchMessage, PresenceMember};
use crate::close_code::{self, reconnect_advice, ReconnectAdvice};
use crate::proto::close::code;
use crate::proto::{ClientHandshakeError, ProtocolError};

/// One thing that happened to the session, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The opening handshake completed. The optional `auth` message and one `subscribe` per
    /// remembered channel (with `since`/`epoch` where known) have been queued, in that order.
    Open {
        /// How many channels were re-subscribed.
        resubscribed_channels: u32,
    },
    /// `connected`: the server's id for this connection.
    Connected {
        /// The connection id (the `from` of this connection's publishes).
        id: String,
    },
    /// `subscribed`.
    Subscribed {
        /// The channel.
        channel: String,
        /// The channel's current seq.
        seq: u64,
        /// The numbering's epoch.
        epoch: String,
        /// `Some` when the subscribe asked for recovery: whether missed messages follow.
        recovered: Option<bool>,
        /// The interval of a throttled subscription.
        throttle_ms: Option<u32>,
    },
    /// A keyed snapshot (`--snapshot-for` channels), JSON or binary: the latest message per
    /// key up to `seq`; live messages follow from `seq + 1`.
    Snapshot {
        /// The channel.
        channel: String,
        /// Every message up to this seq is reflected.
        seq: u64,
        /// The numbering's epoch.
        epoch: String,
        /// The entries, least recently updated first.
        entries: Vec<SnapshotItem>,
    },
    /// `unsubscribed`.
    Unsubscribed {
        /// The channel.
        channel: String,
    },
    /// A JSON delivery.
    Message {
        /// The channel.
        channel: String,
        /// Verbatim JSON of the published value.
        content: String,
        /// Publisher's connection id.
        from: String,
        /// Sequence number within the channel.
        seq: u64,
        /// The publish's `key`, if it had one.
        key: Option<String>,
        /// `"delete":true`: the key was removed from the channel's snapshot.
        delete: bool,
    },
    /// A binary delivery.
    Binary {
        /// The channel.
        channel: String,
        /// Sequence number within the channel.
        seq: u64,
        /// Opaque payload.
        payload: Vec<u8>,
    },
    /// Messages `from..=to` of `channel` were skipped by the server (JSON or binary notice).
    Gap {
        /// The channel.
        channel: String,
        /// First skipped seq.
        from: u64,
        /// Last skipped seq.
        to: u64,
    },
    /// A room tick's batch (`--tick-for`): every message of the tick, in seq order (the
    /// member's own messages included: compare `from` with the `Connected` id).
    Batch {
        /// The channel.
        channel: String,
        /// The messages.
        messages: Vec<BatchMessage>,
    },
    /// A room tick's binary batch.
    BinaryBatch {
        /// The channel.
        channel: String,
        /// The messages.
        messages: Vec<BinaryBatchMessage>,
    },
    /// `presence`: the members of a channel (after a subscribe with presence, or when asked).
    Presence {
        /// The channel.
        channel: String,
        /// Exact number of members.
        count: u64,
        /// The members listed (at most the relay's `--presence-max-list`).
        members: Vec<PresenceMember>,
    },
    /// A member joined a channel this session watches.
    Join {
        /// The channel.
        channel: String,
        /// Who.
        member: PresenceMember,
    },
    /// A member left a channel this session watches.
    Leave {
        /// The channel.
        channel: String,
        /// Who.
        member: PresenceMember,
    },
    /// `pong`: the answer to an application ping.
    Pong,
    /// `authenticated`.
    Authenticated {
        /// The token's subject.
        sub: String,
    },
    /// `error`: the server refused a command (the connection stays open).
    ServerError {
        /// The server's reason.
        message: String,
    },
    /// A text message that is not a known server message, verbatim.
    UnknownText(String),
    /// A binary message that is not a known server message, verbatim.
    UnknownBinary(Vec<u8>),
    /// A connection (or connection attempt) ended.
    Disconnected(Disconnect),
    /// A new attempt is scheduled after `delay` (zero: at once).
    Reconnecting {
        /// Attempts since the last successful open, this one included (1 = first retry).
        attempt: u32,
        /// Wait before connecting.
        delay: Duration,
    },
    /// The session ended for good; no event follows.
    Stopped(StopReason),
}

/// Why a connection or connection attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disconnect {
    /// TCP connect failed (refused, unreachable, name not resolved, ...).
    ConnectFailed(io::ErrorKind),
    /// The server answered the upgrade with something other than a valid 101 (§4.1).
    HandshakeRejected(ClientHandshakeError),
    /// TCP connect plus handshake took longer than `connect_timeout`.
    HandshakeTimeout,
    /// The server sent a close frame (we echoed it).
    ServerClosed {
        /// Its status code, `None` for an empty close payload (1005).
        code: Option<u16>,
        /// Its reason text.
        reason: String,
    },
    /// TCP ended (EOF, reset) without a close frame: 1006.
    ConnectionLost,
    /// The server broke RFC 6455; we sent the error's close code and dropped the connection.
    ProtocolViolation(ProtocolError),
    /// No message arrived within `heartbeat_timeout` after an application ping.
    HeartbeatTimeout,
    /// Our own close completed (answered, or unanswered within `close_timeout`).
    ClosedByUser {
        /// The code we sent.
        code: u16,
    },
}

impl Disconnect {
    /// The close code this end stands for (RFC 6455 §7.1.5; 1006 for an abnormal end).
    pub fn code(&self) -> u16 {
        match self {
            Self::ServerClosed { code, .. } => code.unwrap_or(code::NO_STATUS),
            Self::ProtocolViolation(error) => error.close_code(),
            Self::ClosedByUser { code } => *code,
            Self::HeartbeatTimeout => close_code::HEARTBEAT_TIMEOUT,
            Self::ConnectFailed(_)
            | Self::HandshakeRejected(_)
            | Self::HandshakeTimeout
            | Self::ConnectionLost => code::ABNORMAL,
        }
    }

    /// What the session does next, following `close_code::reconnect_advice`. A heartbeat miss
    /// is detected here, not by the server, so the network path is suspect: backoff, not the
    /// "at once" that the server's own 4201 asks for.
    pub fn advice(&self) -> ReconnectAdvice {
        match self {
            Self::ClosedByUser { .. } => ReconnectAdvice::Never,
            Self::HeartbeatTimeout => ReconnectAdvice::WithBackoff,
            _ => reconnect_advice(self.code()),
        }
    }
}

/// Why a session stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The application called `close()`.
    ClosedByUser,
    /// The connection ended with a cause that says "do not reconnect" (4000-4099, 1002,
    /// 1003, 1007, 1008, 1009).
    DoNotReconnect {
        /// The close code behind the decision.
        code: u16,
    },
    /// `retries_max` consecutive attempts failed.
    RetriesExhausted {
        /// Attempts made since the last successful open.
        attempts: u32,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_follows_the_close_code_convention() {
        let server = |code| Disconnect::ServerClosed {
            code: Some(code),
            reason: String::new(),
        };
        assert_eq!(server(4001).advice(), ReconnectAdvice::Never);
        assert_eq!(server(4100).advice(), ReconnectAdvice::WithBackoff);
        assert_eq!(server(4200).advice(), ReconnectAdvice::AtOnce);
        assert_eq!(server(1001).advice(), ReconnectAdvice::WithBackoff);
        assert_eq!(Disconnect::ConnectionLost.code(), 1006);
        assert_eq!(
            Disconnect::ConnectionLost.advice(),
            ReconnectAdvice::WithBackoff
        );
        assert_eq!(
            Disconnect::HeartbeatTimeout.advice(),
            ReconnectAdvice::WithBackoff
        );
        assert_eq!(
            Disconnect::ProtocolViolation(ProtocolError::MessageTooBig).advice(),
            ReconnectAdvice::Never
        );
        assert_eq!(
            Disconnect::ServerClosed {
                code: None,
                reason: String::new()
            }
            .advice(),
            ReconnectAdvice::WithBackoff
        );
    }
}
