//! Every knob of the client, with its default and the reason for it.

use std::time::Duration;

use crate::client::backoff::Backoff;
use crate::client::tls::TlsTrust;

/// Supplies the token of the `{"type":"auth","token":...}` message sent first on every
/// connection. Called once per successful open, so it may mint a fresh token each time;
/// `None` skips the auth message on that connection.
pub type AuthTokenSource = Box<dyn FnMut() -> Option<String> + Send>;

/// Options of a reconnecting client session.
pub struct Options {
    /// Delays between attempts.
    pub backoff: Backoff,
    /// Consecutive failed attempts after which the session stops with
    /// `StopReason::RetriesExhausted`. Default 20 (with the default backoff, about 8 minutes
    /// of trying); `u32::MAX` is effectively unbounded.
    pub retries_max: u32,
    /// Time for TCP connect plus the opening handshake. Default 5 s.
    pub connect_timeout: Duration,
    /// Interval of the application ping `{"type":"ping"}`. Zero disables the heartbeat.
    /// Default 15 s, the browser recipe of docs/PROTOCOL.md.
    pub heartbeat_interval: Duration,
    /// Time after a ping within which some message must arrive, else the connection is
    /// declared dead, dropped and reconnected. Default 10 s.
    pub heartbeat_timeout: Duration,
    /// Time the server has to answer our close frame. Default 1 s (the relay's own default).
    pub close_timeout: Duration,
    /// Largest message accepted from the server; larger closes with 1009 and stops. Default
    /// 1 MiB, the relay's default limit.
    pub message_bytes_max: usize,
    /// Largest amount of unsent data; a send beyond it returns `SendError::BufferFull`.
    /// Default 4 MiB.
    pub send_bytes_max: usize,
    /// Events queued for the application before the client stops reading the socket (TCP
    /// then slows the server down). Default 4096.
    pub events_max: usize,
    /// Channels remembered for re-subscription. Default 1024, the relay's default limit.
    pub subscriptions_max: usize,
    /// Token source for re-authentication on every connection; `None`: no auth message.
    pub auth: Option<AuthTokenSource>,
    /// Trust for `wss://` URLs. Default: the system's root certificates.
    pub tls: TlsTrust,
    /// Offer permessage-deflate (RFC 7692): the server's messages may then arrive compressed,
    /// and ours of at least 128 bytes are sent compressed. Default off.
    pub deflate: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            backoff: Backoff::default(),
            retries_max: 20,
            connect_timeout: Duration::from_secs(5),
            heartbeat_interval: Duration::from_secs(15),
            heartbeat_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(1),
            message_bytes_max: 1 << 20,
            send_bytes_max: 4 << 20,
            events_max: 4096,
            subscriptions_max: 1024,
            auth: None,
            tls: TlsTrust::default(),
            deflate: false,
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("backoff", &self.backoff)
            .field("retries_max", &self.retries_max)
            .field("connect_timeout", &self.connect_timeout)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("heartbeat_timeout", &self.heartbeat_timeout)
            .field("close_timeout", &self.close_timeout)
            .field("message_bytes_max", &self.message_bytes_max)
            .field("send_bytes_max", &self.send_bytes_max)
            .field("events_max", &self.events_max)
            .field("subscriptions_max", &self.subscriptions_max)
            .field("auth", &self.auth.as_ref().map(|_| "<token source>"))
            .field("tls", &self.tls)
            .field("deflate", &self.deflate)
            .finish()
    }
}
