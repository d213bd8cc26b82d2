//! A client's data message as a request for the loop, and the gate it passes first
//! (`Session::read_request`): decoded (JSON commands by `command::CommandDecoder`, binary
//! publishes by `command::decode_binary`), then checked against the connection's
//! authentication state and grant. The loop routes what passes (subscribe, publish, presence,
//! auth); what does not is answered here with the error the client gets (`{"type":"error"}`,
//! queued by the session) and handed back to the loop as a [`Refused`] to count; the
//! connection stays open.
//!
//! The decoder's buffers are the loop's (one per loop, lent per message): a session holds no
//! decode buffer, so an idle connection stays small.

use crate::command::{BinaryPublish, Command, CommandDecoder, CommandError};
use crate::outbox::SendStatus;
use crate::proto::frame::OpCode;

use super::{AuthState, Reply, Session};

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

/// A request the session refused and already answered: what the loop counts and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// The `wsrelay_command_errors_total` label (and the warning's kind).
    pub kind: &'static str,
    /// The warning's text.
    pub warning: &'static str,
    /// What became of the error reply (`Full`: the client does not read its replies).
    pub status: SendStatus,
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
    /// A data message of the relay endpoint as a request: a text message is one JSON command,
    /// a binary one a binary publish (`channel_bytes_max` bounds the channel), then the gate
    /// (`authorize`). A message that does not decode, or that the gate refuses, is answered
    /// now (`{"type":"error"}`) and returned as [`Refused`].
    pub fn read_request<'a>(
        &mut self,
        opcode: OpCode,
        message: &'a [u8],
        decoder: &'a mut CommandDecoder,
        channel_bytes_max: usize,
    ) -> Result<Request<'a>, Refused> {
        let decoded = match opcode {
            OpCode::Text => decoder
                .decode(message, channel_bytes_max)
                .map(Request::from),
            _ => crate::command::decode_binary(message, channel_bytes_max).map(Request::from),
        };
        let request = decoded.map_err(|e| self.refuse_invalid(e))?;
        match self.authorize(&request) {
            Ok(()) => Ok(request),
            Err(refusal) => Err(self.refuse(refusal)),
        }
    }

    /// Answers a message that is not a command.
    fn refuse_invalid(&mut self, e: CommandError) -> Refused {
        Refused {
            kind: e.kind(),
            warning: e.message(),
            status: self.reply(Reply::Invalid(e)),
        }
    }

    /// Answers a request the gate refused.
    fn refuse(&mut self, refusal: Refusal<'_>) -> Refused {
        let (kind, warning, reply) = match refusal {
            Refusal::Unauthenticated => (
                "unauthenticated",
                "command before auth",
                Reply::Unauthenticated,
            ),
            Refusal::SubscribeForbidden(channel) => (
                "forbidden",
                FORBIDDEN,
                Reply::Forbidden { channel, ack: None },
            ),
            Refusal::PublishForbidden(channel, ack) => {
                ("forbidden", FORBIDDEN, Reply::Forbidden { channel, ack })
            }
        };
        Refused {
            kind,
            warning,
            status: self.reply(reply),
        }
    }

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

/// The warning of a request the token's grant refuses.
const FORBIDDEN: &str = "channel not permitted by the token";

#[cfg(test)]
mod tests;
