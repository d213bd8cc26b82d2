//! Errors the client returns to the caller (as values; connection ends are events instead).

use std::io;

use crate::client::url::UrlError;

/// Why a send was refused. Nothing was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No connection is open (connecting, waiting to reconnect, closing or stopped).
    #[error("no open connection")]
    NotOpen,
    /// The send buffer would exceed `send_bytes_max`: the server or the network is slower
    /// than the application; retry after `next_event` has flushed.
    #[error("send buffer full")]
    BufferFull,
    /// The channel name breaks the protocol's rule.
    #[error("invalid channel name")]
    InvalidChannel,
    /// More than `subscriptions_max` channels.
    #[error("too many subscriptions")]
    TooManySubscriptions,
}

/// Why `Client::connect` could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL is not a usable `ws://` URL.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// Creating the poll failed.
    #[error("poll setup failed: {0}")]
    Poll(#[from] io::Error),
    /// `wss://`: the trust roots or the server name could not be used.
    #[error("tls: {0}")]
    Tls(#[from] crate::client::tls::TlsSetupError),
}
