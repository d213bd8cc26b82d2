//! A client's data message as a request for the loop, and the gate it passes first: decoded
//! (JSON commands by `command::CommandDecoder`, binary publishes by `command::decode_binary`),
//! then checked against the connection's authentication state and grant. The loop routes what
//! passes (subscribe, publish, presence, auth); what does not is refused with the error the
//! client gets (`{"type":"error"}`, counted), and the connection stays open.

use crate::command::{BinaryPublish, Command};

use super::{AuthState, Session};

/// What a subscribe asks for besides its channel and recovery position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// `throttle_ms`: the latest value per key at most every this many ms.
    pub throttle_ms: Option<u32>,
    /// `"binary":true`: a snapshot comes as a binary frame.
    pub binary: bool,
    /// `"presence":true`: also the member list, then joins and leaves.
    pub presence: bool,
}

/// A publish as read from the client, borrowed from the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published<'a> {
    /// Raw JSON content; `delete`: remove its key from the channel's snapshot.
    Json {
        /// The verbatim JSON value.
        content: &'a [u8],
        /// `"delete":true`.
        delete: bool,
    },
    /// Binary payload.
    Binary(&'a [u8]),
}

/// One command of the relay protocol (docs/PROTOCOL.md), JSON or binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// Join a channel, resuming after `since` of `epoch` when given.
    Subscribe {
        /// The channel.
        channel: &'a str,
        /// Last seq the client saw.
        since: Option<u64>,
        /// The numbering `since` belongs to.
        epoch: Option<&'a str>,
        /// Throttle, binary snapshot, presence.
        options: SubscribeOptions,
    },
    /// The channel's member list, now.
    Presence {
        /// The channel.
        channel: &'a str,
    },
    /// Leave a channel.
    Unsubscribe {
        /// The channel.
        channel: &'a str,
    },
    /// Publish to a channel.
    Publish {
        /// The channel.
        channel: &'a str,
        /// The content.
        message: Published<'a>,
        /// Conflation and snapshot key.
        key: Option<&'a str>,
        /// Acknowledgement id, when one is asked for.
        ack: Option<&'a [u8]>,
    },
    /// `{"type":"ping"}`: answered with `{"type":"pong"}`.
    Ping,
    /// A token for a connection that came without one.
    Auth {
        /// The bearer token.
        token: &'a str,
    },
}

/// Why the session refused a request (answered with an error; the connection stays open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal<'a> {
    /// Authentication is pending: only `auth` and `ping` are accepted.
    Unauthenticated,
    /// The token's grant does not allow subscribing to (or asking the members of) `channel`.
    SubscribeForbidden(&'a str),
    /// The token's grant does not allow publishing to `channel`; `ack`: the publish's id, so
    /// that the client can match the error to it.
    PublishForbidden(&'a str, Option<&'a [u8]>),
}

impl<'a> From<Command<'a>> for Request<'a> {
    fn from(command: Command<'a>) -> Self {
        match command {
            Command::Subscribe {
                channel,
                since,
                epoch,
                throttle_ms,
                binary,
                presence,
            } => Request::Subscribe {
                channel,
                since,
                epoch,
                options: SubscribeOptions {
                    throttle_ms,
                    binary,
                    presence,
                },
            },
            Command::Presence { channel } => Request::Presence { channel },
            Command::Unsubscribe { channel } => Request::Unsubscribe { channel },
            Command::Publish {
                channel,
                content,
                key,
                id,
                delete,
            } => Request::Publish {
                channel,
                message: Published::Json { content, delete },
                key,
                ack: id.map(str::as_bytes),
            },
            Command::Ping => Request::Ping,
            Command::Auth { token } => Request::Auth { token },
        }
    }
}

impl<'a> From<BinaryPublish<'a>> for Request<'a> {
    fn from(publish: BinaryPublish<'a>) -> Self {
        Request::Publish {
            channel: publish.channel,
            message: Published::Binary(publish.payload),
            key: None,
            ack: publish.id,
        }
    }
}

impl Session {
    /// The gate every request passes before the loop acts on it: while authentication is
    /// pending only `auth` and `ping` pass; after it, the token's grant decides per channel.
    pub fn authorize<'a>(&self, request: &Request<'a>) -> Result<(), Refusal<'a>> {
        let auth = self.auth();
        match *request {
            Request::Auth { .. } | Request::Ping => Ok(()),
            _ if matches!(auth, AuthState::Pending) => Err(Refusal::Unauthenticated),
            Request::Subscribe { channel, .. } | Request::Presence { channel }
                if !auth.may_subscribe(channel) =>
            {
                Err(Refusal::SubscribeForbidden(channel))
            }
            Request::Publish { channel, ack, .. } if !auth.may_publish(channel) => {
                Err(Refusal::PublishForbidden(channel, ack))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
