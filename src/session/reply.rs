//! What the relay answers one connection, as typed values: the session encodes each reply
//! (JSON text, or binary for a binary publisher's ack) into one frame and queues it on its
//! control lane, so that `runtime/` encodes no per-connection JSON. The loop keeps only the
//! reaction to the returned `SendStatus` (flush it, count it, or close a client that does not
//! read its replies).
//!
//! Owns: the wording of every per-connection reply and error (docs/PROTOCOL.md), and which
//! lane each reply takes: `unsubscribed` and the `subscribed` of an epoch reset keep their
//! place among deliveries (ordered control), every other reply may overtake queued deliveries.
//! Not here: frames encoded once for many subscribers (messages, tick batches, snapshots,
//! presence lists and changes: `runtime/publish.rs`, `tick.rs`, `presence.rs`), which reach a
//! session through `handle_delivery`.

use bytes::Bytes;

use crate::command::{self as encode, CommandError};
use crate::outbox::SendStatus;
use crate::proto::frame::{FrameBuilder, OpCode};

use super::Session;

/// One reply to one connection (fields borrowed from the request or the loop's state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    /// `{"type":"connected","id":I,"addr":A}`, right after the upgrade.
    Connected {
        /// The connection's public id.
        id: &'a str,
        /// The client's address as the relay sees it.
        addr: &'a str,
    },
    /// `{"type":"subscribed",...}`: the owner's answer to a subscribe.
    Subscribed {
        /// The channel.
        channel: &'a str,
        /// The channel's seq at the answer.
        seq: u64,
        /// The numbering's epoch.
        epoch: &'a str,
        /// Whether the asked position was recovered (`None`: none was asked).
        recovered: Option<bool>,
        /// A throttled subscription's interval.
        throttle_ms: Option<u32>,
    },
    /// A fresh `subscribed` (`"recovered":false`) telling that the channel's numbering was
    /// reset to `epoch` (cluster mode), in order with the deliveries.
    EpochReset {
        /// The channel.
        channel: &'a str,
        /// The seq before the new numbering.
        seq: u64,
        /// The new epoch.
        epoch: &'a str,
    },
    /// `{"type":"unsubscribed","channel":C}`, in order with the deliveries.
    Unsubscribed {
        /// The channel.
        channel: &'a str,
    },
    /// `{"type":"pong"}`.
    Pong,
    /// A publish's acknowledgement: JSON `{"type":"ack",...}`, or binary op 0x04 for a binary
    /// publish (seq 0: not numbered).
    Ack {
        /// The channel.
        channel: &'a str,
        /// The publish's id.
        id: &'a [u8],
        /// Its seq (`None`: accepted, not numbered).
        seq: Option<u64>,
        /// The publish was binary.
        binary: bool,
    },
    /// `{"type":"authenticated","sub":S}`.
    Authenticated {
        /// The token's subject.
        sub: &'a str,
    },
    /// A command that could not be decoded.
    Invalid(CommandError),
    /// A command other than `auth`/`ping` before authentication.
    Unauthenticated,
    /// The token does not allow `channel`; `ack`: the refused publish's id, echoed when
    /// it is UTF-8 so that the client can match the error to it.
    Forbidden {
        /// The channel.
        channel: &'a str,
        /// The publish's id.
        ack: Option<&'a [u8]>,
    },
    /// Too many subscribe requests wait for other loops.
    Busy,
    /// The connection holds the most subscriptions it may.
    TooManySubscriptions,
    /// `"presence":true` (or a presence query) on a channel without presence.
    PresenceOff {
        /// The channel.
        channel: &'a str,
    },
    /// `auth` on a server without authentication.
    AuthNotConfigured,
    /// A second `auth`.
    AlreadyAuthenticated,
    /// The first message over `--max-messages-per-s` (the next one closes).
    RateLimited,
    /// A publish with an id that could not reach its channel's owner (mesh full).
    Unsequenced {
        /// The publish's id (echoed when UTF-8).
        id: &'a [u8],
    },
    /// Cluster mode: `{"type":"error","code":"unavailable",...}` for `reason`.
    Unavailable {
        /// Why, in a few words.
        reason: &'a str,
        /// The publish's id (echoed when UTF-8).
        ack: Option<&'a [u8]>,
    },
}

/// Which part of the outbox a reply goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    /// May overtake queued deliveries.
    Control,
    /// Keeps its place among deliveries.
    Ordered,
}

const UNAUTHENTICATED: &str = "Unauthorized: send {\"type\":\"auth\",\"token\":...} first";
const BUSY: &str = "Relay busy: too many subscriptions in progress, retry";
const TOO_MANY_SUBSCRIPTIONS: &str = "Too many subscriptions on this connection";
const AUTH_NOT_CONFIGURED: &str = "Authentication is not configured on this server";
const ALREADY_AUTHENTICATED: &str = "Already authenticated";
const RATE_LIMITED: &str = "Rate limited: slow down";
const UNSEQUENCED: &str =
    "unavailable: the relay is overloaded, the message was not sequenced; retry";

impl Session {
    /// Encodes `reply` into one frame and queues it on its lane. A client that never reads
    /// its replies runs out of control budget (`Full`: the loop closes it as a slow
    /// consumer); replies are never silently dropped.
    pub fn reply(&mut self, reply: Reply<'_>) -> SendStatus {
        let Some(frame) = reply.frame() else {
            // Nothing to send (a binary ack whose channel is too long to encode: channel
            // names are at most 255 bytes by config validation, so it does not happen).
            return SendStatus::Queued;
        };
        match reply.lane() {
            Lane::Control => self.outbox.push_control(frame),
            Lane::Ordered => self.outbox.push_ordered_control(frame),
        }
    }
}

impl Reply<'_> {
    fn lane(&self) -> Lane {
        match self {
            Reply::Unsubscribed { .. } | Reply::EpochReset { .. } => Lane::Ordered,
            _ => Lane::Control,
        }
    }

    /// The reply's frame (`None`: it cannot be encoded).
    fn frame(&self) -> Option<Bytes> {
        if let Reply::Ack {
            channel,
            id,
            seq,
            binary: true,
        } = *self
        {
            let mut frame = FrameBuilder::new(OpCode::Binary, 2 + channel.len() + id.len() + 9);
            let encoded = frame
                .append_with(|out| encode::encode_binary_ack(out, channel, id, seq.unwrap_or(0)));
            return encoded.ok().map(|()| frame.finish().into_bytes());
        }
        let mut frame = FrameBuilder::new(OpCode::Text, 64);
        frame.append_with(|out| self.write_json(out));
        Some(frame.finish().into_bytes())
    }

    /// The JSON text of every reply but a binary ack.
    fn write_json(&self, out: &mut Vec<u8>) {
        match *self {
            Reply::Connected { id, addr } => encode::encode_connected(out, id, addr),
            Reply::Subscribed {
                channel,
                seq,
                epoch,
                recovered,
                throttle_ms,
            } => encode::encode_subscribed_throttled(
                out,
                channel,
                seq,
                epoch,
                recovered,
                throttle_ms,
            ),
            Reply::EpochReset {
                channel,
                seq,
                epoch,
            } => encode::encode_subscribed(out, channel, seq, epoch, Some(false)),
            Reply::Unsubscribed { channel } => encode::encode_unsubscribed(out, channel),
            Reply::Pong => encode::encode_pong(out),
            Reply::Ack {
                channel, id, seq, ..
            } => {
                // JSON ids were decoded from a JSON string: UTF-8.
                let id = std::str::from_utf8(id).unwrap_or_default();
                encode::encode_ack(out, id, channel, seq)
            }
            Reply::Authenticated { sub } => encode::encode_authenticated(out, sub),
            _ => self.write_error(out),
        }
    }

    /// `{"type":"error",...}` replies.
    fn write_error(&self, out: &mut Vec<u8>) {
        let error = |out: &mut Vec<u8>, msg: &str| encode::encode_error(out, msg);
        match *self {
            Reply::Invalid(e) => error(out, e.message()),
            Reply::Unauthenticated => error(out, UNAUTHENTICATED),
            Reply::Forbidden { channel, ack } => {
                let msg = format!("forbidden: {channel}");
                match ack.and_then(|a| std::str::from_utf8(a).ok()) {
                    Some(id) => encode::encode_error_with_id(out, &msg, id),
                    None => error(out, &msg),
                }
            }
            Reply::Busy => error(out, BUSY),
            Reply::TooManySubscriptions => error(out, TOO_MANY_SUBSCRIPTIONS),
            Reply::PresenceOff { channel } => error(
                out,
                &format!("Presence is not enabled on channel: {channel}"),
            ),
            Reply::AuthNotConfigured => error(out, AUTH_NOT_CONFIGURED),
            Reply::AlreadyAuthenticated => error(out, ALREADY_AUTHENTICATED),
            Reply::RateLimited => error(out, RATE_LIMITED),
            // Errors are JSON text, also for binary publishers; an id that is not UTF-8
            // (binary ids may be any bytes) cannot be put in it.
            Reply::Unsequenced { id } => match std::str::from_utf8(id) {
                Ok(id) => encode::encode_error_with_id(out, UNSEQUENCED, id),
                Err(_) => error(out, UNSEQUENCED),
            },
            Reply::Unavailable { reason, ack } => {
                let msg = format!("unavailable: {reason}; retry");
                let id = ack.and_then(|a| std::str::from_utf8(a).ok());
                encode::encode_error_with_code(out, "unavailable", &msg, id)
            }
            Reply::Connected { .. }
            | Reply::Subscribed { .. }
            | Reply::EpochReset { .. }
            | Reply::Unsubscribed { .. }
            | Reply::Pong
            | Reply::Ack { .. }
            | Reply::Authenticated { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests;
