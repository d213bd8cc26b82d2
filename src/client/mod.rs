//! The wsrelay client library: a client-role WebSocket over `mio` that speaks the relay's JSON
//! and binary protocol, and a reconnecting session that does what applications otherwise
//! write by hand around the browser WebSocket API.
//!
//! Layers, bottom up (all sans-IO except the driver):
//! - [`connection`]: one RFC 6455 connection in the client role, on the crate's own codec
//!   (`proto`, `Role::Client`): handshake, masked frames with a fresh key each, ping answers,
//!   close handshake, message and send-buffer limits.
//! - [`commands`] and [`server_event`]: the typed protocol (subscribe with `since`/`epoch`,
//!   unsubscribe, publish JSON or binary, ping, auth, presence; parsed server events,
//!   room tick batches and presence included) with simd-json.
//! - [`session`]: reconnect only on unexpected closes, following the close-code convention of
//!   [`crate::close_code`]; exponential backoff with jitter ([`backoff`]), bounded retries,
//!   reset after a successful open; the application heartbeat; re-authentication and
//!   re-subscription with the last seq and epoch per channel on every open. Time is an input.
//! - [`driver`]: [`Client`], the blocking API: `Client::connect(url, options)`, then
//!   `next_event(timeout)`; the only file here that touches sockets and the clock, with
//!   [`tls`] (rustls over the driver's socket for `wss://`: system roots, a given CA, or the
//!   caller's rustls configuration).
//!
//! May not touch: the relay's runtime. Depends on `proto` (wire format) and `command` (JSON
//! string writer, channel rule, binary layout, content spans) only.
//!
//! Not supported: subprotocol negotiation, extensions (permessage-deflate).

pub mod backoff;
pub mod commands;
pub mod connection;
pub mod driver;
pub mod error;
pub mod event;
pub mod options;
pub mod rng;
pub mod server_event;
pub mod session;
pub mod tls;
pub mod url;

pub use backoff::Backoff;
pub use driver::Client;
pub use error::{ConnectError, SendError};
pub use event::{BatchMessage, BinaryBatchMessage, Disconnect, Event, PresenceMember, StopReason};
pub use options::{AuthTokenSource, Options};
pub use rng::Rng;
pub use server_event::SnapshotItem;
pub use session::{ChannelPosition, Session, SubscribeOptions, Transport};
pub use tls::{TlsSetupError, TlsTrust};
pub use url::{UrlError, WsUrl};

#[cfg(test)]
mod scripted_server;
