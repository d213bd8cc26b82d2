//! One server connection's RFC 6455 state machine, without I/O and without a clock of its own
//! (issue 12): the lifecycle phase with the data each phase needs, the frame decoder, the
//! outbox, the liveness deadlines (handshake, heartbeat, idle, close handshake, lingering close,
//! drain, authentication) and the close handshake.
//!
//! Inputs are method calls carrying `now` (nanoseconds on the loop's monotonic clock): client
//! bytes (`read_frame`, one frame per call: it answers pings and the close handshake itself and
//! returns each data message to the loop), a data message read as a request (`read_request`),
//! a compressed one inflated (`inflate`), a reply to send (`reply`), deliveries
//! (`handle_delivery`), a deadline passed, the outbox drained.
//! Outputs are what it queued in its outbox (written by the loop) and the returned outcome
//! (what the loop must do: count, close the socket, re-arm the timer at `next_deadline`).
//!
//! Owns: `Phase`, the `Decoder`, the `Outbox`, the `Liveness` deadlines, the close reason, the
//! peer's identity (authentication state and grant, public name, rate standing), the JSON and
//! binary protocol of its commands and the gate they pass (`requests.rs`: decoded with the
//! loop's lent decoder, refused with the error it gets), every reply to its connection
//! (`reply.rs`: `Reply`, encoded here: the loop encodes no per-connection JSON), deliveries in
//! (`delivery.rs`), permessage-deflate inflation with the loop's lent tools (`inflate.rs`) and
//! its subscriptions with their untold gaps and gap notices (`subscriptions.rs`).
//! May not touch: sockets, the timer wheel, the clock, metrics, other connections, the pub/sub
//! index, routing (all the event loop's, `runtime/`). Every behaviour here is
//! tested with a fake clock and exact bytes (`tests.rs`) and fuzzed (`fuzz/fuzz_targets/session.rs`).

mod close;
mod delivery;
mod identity;
mod inflate;
mod input;
mod reply;
mod requests;
mod subscriptions;
mod timeouts;

#[cfg(test)]
mod tests;

use bytes::Bytes;

use crate::outbox::{Outbox, SendStatus};
use crate::proto::decoder::{Decoder, DecoderLimits, Role};
use crate::proto::frame::{OpCode, PreparedFrame};

pub use close::{CloseHow, CloseStarted, PeerClose};
pub use identity::{AuthState, Extras, RateStanding};
pub use inflate::{InflateFailure, LoopInflate};
pub use input::{ReadStep, Received, Span};
pub use reply::Reply;
pub use requests::{Published, Refusal, Refused, Request, SubscribeOptions};
pub use subscriptions::{encode_gap_notice, PendingGap, SubState, Subscription, Subscriptions};
pub use timeouts::{Timeout, Timeouts};

/// Lifecycle of a connection (RFC 6455 §4 and §7: CONNECTING → OPEN → CLOSING → CLOSED), each
/// phase carrying the deadline it is bounded by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// TCP accepted; the HTTP upgrade request is being read (CONNECTING), until `deadline_ns`.
    Handshaking {
        /// The upgrade (or the TLS handshake before it) must complete before this.
        deadline_ns: u64,
    },
    /// WebSocket open; frames flow (OPEN).
    Open,
    /// Our close frame is queued or sent (CLOSING).
    Closing {
        /// The peer must answer before this.
        deadline_ns: u64,
        /// Whether the peer's close frame is still awaited.
        peer: PeerClose,
    },
    /// An HTTP response (error status or `/metrics`) is being written; then TCP closes. A
    /// response that makes no progress for a handshake timeout is dropped: a client that asks
    /// and never reads cannot hold the connection forever.
    Responding {
        /// Whether the peer's FIN was read (then the response is finished and TCP closed).
        input: Input,
        /// Check for progress at this time.
        deadline_ns: u64,
        /// The outbox's `written_total` at the last check (low 32 bits: moved means progress).
        written: u32,
    },
    /// Our last bytes are written and our write side is shut; reading until the peer's FIN so
    /// that the kernel does not reset the connection and lose those bytes (lingering close).
    Lingering {
        /// Give up waiting for the FIN at this time.
        deadline_ns: u64,
    },
    /// Done; reaped at the end of the turn (CLOSED).
    Closed,
}

/// Whether the peer may still send (its FIN not read yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// The peer's direction is open.
    Open,
    /// The peer's FIN was read.
    Ended,
}

/// What the connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Pub/sub relay (`/`, `/ws`).
    Relay,
    /// Echo every message (`/echo`, conformance suites).
    Echo,
    /// Plain HTTP (metrics listener).
    Http,
}

/// Why a connection ended: the `reason` label of `wsrelay_connections_closed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent a close frame.
    ClientClose,
    /// A framing rule of RFC 6455 was broken (1002).
    ProtocolError,
    /// Text was not UTF-8 (1007).
    InvalidUtf8,
    /// A message over the size limit (1009).
    MessageTooBig,
    /// Its outbox overflowed under the `close` policy (4100).
    SlowConsumer,
    /// No answer to the heartbeat ping in time.
    HeartbeatTimeout,
    /// The upgrade request did not complete in time.
    HandshakeTimeout,
    /// The peer did not answer our close in time.
    CloseTimeout,
    /// Silent for longer than the idle timeout.
    IdleTimeout,
    /// Authentication failed (4001).
    AuthFailed,
    /// No authentication in time.
    AuthTimeout,
    /// Over a rate limit.
    RateLimited,
    /// Server shutdown or drain.
    Shutdown,
    /// A socket error.
    IoError,
    /// TCP ended without a close frame.
    PeerReset,
    /// Refused: too many connections.
    ServerFull,
    /// An HTTP request (not a WebSocket) was answered.
    HttpDone,
    /// More pings than the control budget holds pongs for (1008).
    PingFlood,
    /// The PROXY protocol header was missing or malformed (dropped without an answer).
    ProxyHeader,
    /// A TLS failure: the handshake failed, or a record after it was bad (an alert was sent).
    Tls,
}

/// Liveness state of an open connection (deadlines are absolute, 0 meaning none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Liveness {
    /// When the last bytes arrived.
    pub last_rx_ns: u64,
    /// When our unanswered heartbeat ping was sent (0: none outstanding).
    pub ping_sent_ns: u64,
}

/// Sizes a new session is built with.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// Largest message the decoder accepts (1009 beyond).
    pub message_bytes_max: usize,
    /// The outbox's data budget.
    pub outbox_bytes_max: usize,
    /// The outbox's control budget (replies, pongs, gap notices, the close frame).
    pub control_bytes_max: usize,
}

/// One connection's protocol state (see the module header).
#[derive(Debug)]
pub struct Session {
    phase: Phase,
    /// What the connection is for (set at the upgrade).
    pub endpoint: Endpoint,
    /// Frame decoder (client frames, server role); fed only through `read_frame`.
    decoder: Decoder,
    /// Outgoing frames.
    pub outbox: Outbox,
    liveness: Liveness,
    close_reason: Option<CloseReason>,
    protocol: Protocol,
    /// Authentication state and grant, public name, rate standing (`identity.rs`), boxed on
    /// first use.
    extras: Option<Box<Extras>>,
    /// Channels subscribed or being subscribed (`subscriptions.rs`).
    pub subscriptions: Subscriptions,
    /// Whether some subscription has a gap not told yet.
    untold_gaps: subscriptions::Untold,
}

/// What the connection speaks: HTTP until the upgrade, WebSocket after it (counted in the
/// `connections_open` gauge until reaped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// The upgrade has not completed (or an HTTP request was answered).
    Http,
    /// The upgrade completed.
    WebSocket,
}

/// What a pong for a received ping became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PongQueued {
    /// Queued.
    Queued,
    /// The connection is closing: not sent.
    NotOpen,
    /// The control budget is full: write what is queued, then `retry_pong` with these bytes.
    Full(Bytes),
}

/// What the end of the peer's input (its FIN) means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterEof {
    /// An HTTP response is still being written: finish it.
    FinishResponse,
    /// The connection is done: close the socket.
    Close,
}

impl Session {
    /// A connection just accepted: reading its upgrade request until `now + handshake`.
    pub fn new(now_ns: u64, endpoint: Endpoint, limits: SessionLimits, t: &Timeouts) -> Self {
        let decoder_limits = DecoderLimits {
            message_bytes_max: limits.message_bytes_max,
        };
        Session {
            phase: Phase::Handshaking {
                deadline_ns: now_ns + t.handshake_ns,
            },
            endpoint,
            decoder: Decoder::new(Role::Server, decoder_limits),
            outbox: Outbox::new(limits.outbox_bytes_max, limits.control_bytes_max),
            liveness: Liveness {
                last_rx_ns: now_ns,
                ..Liveness::default()
            },
            close_reason: None,
            protocol: Protocol::Http,
            extras: None,
            subscriptions: Subscriptions::default(),
            untold_gaps: subscriptions::Untold::Nothing,
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// True while WebSocket frames are processed (OPEN).
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// True once the upgrade completed (whatever the phase now).
    pub fn is_websocket(&self) -> bool {
        self.protocol == Protocol::WebSocket
    }

    /// The liveness deadlines.
    pub fn liveness(&self) -> &Liveness {
        &self.liveness
    }

    /// Why it closed (or is closing), once known.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.close_reason
    }

    /// Records the close reason the first time only.
    pub fn set_close_reason(&mut self, reason: CloseReason) {
        self.close_reason.get_or_insert(reason);
    }

    /// Bytes arrived: any byte counts as liveness (a pending ping is forgiven at its deadline).
    pub fn on_bytes_received(&mut self, now_ns: u64) {
        self.liveness.last_rx_ns = now_ns;
    }

    /// True while the socket is still read.
    pub fn reads_allowed(&self) -> bool {
        !matches!(
            self.phase,
            Phase::Closed
                | Phase::Responding {
                    input: Input::Ended,
                    ..
                }
        )
    }

    /// The upgrade succeeded: OPEN. `response` (the `101`) is written before anything else.
    pub fn upgrade(&mut self, endpoint: Endpoint, response: Bytes) {
        self.phase = Phase::Open;
        self.protocol = Protocol::WebSocket;
        self.endpoint = endpoint;
        self.outbox.push_first(response);
    }

    /// Answers an HTTP request: the response is the last thing written, whatever its size (a
    /// large /metrics page is not refused by the control budget meant for WebSocket replies);
    /// TCP closes once it is out.
    pub fn respond(&mut self, now_ns: u64, response: Bytes, t: &Timeouts) {
        self.set_close_reason(CloseReason::HttpDone);
        self.outbox.close_after_queued(response);
        self.phase = Phase::Responding {
            input: Input::Open,
            deadline_ns: now_ns + t.handshake_ns,
            written: self.outbox.written_total() as u32,
        };
    }

    /// permessage-deflate was negotiated at the upgrade (RFC 7692 §6): RSV1 may be set on the
    /// first frame of data messages, which `read_frame` then returns as compressed.
    pub fn allow_compressed(&mut self) {
        self.decoder.allow_compressed();
    }

    /// RFC 6455 §5.5.2-3: a ping is answered with a pong carrying the same payload, one pong
    /// per ping.
    pub fn queue_pong(&mut self, payload: &[u8]) -> PongQueued {
        let pong = PreparedFrame::new(OpCode::Pong, payload).into_bytes();
        self.retry_pong(pong)
    }

    /// Queues a pong made by `queue_pong` again (after the loop wrote what was queued).
    pub fn retry_pong(&mut self, pong: Bytes) -> PongQueued {
        match self.outbox.push_pong(pong.clone()) {
            SendStatus::Queued => PongQueued::Queued,
            SendStatus::Closed => PongQueued::NotOpen,
            SendStatus::Full => PongQueued::Full(pong),
        }
    }

    /// A pong: the heartbeat round trip is over. Returns its duration when a ping was out.
    pub fn on_pong(&mut self, now_ns: u64) -> Option<u64> {
        match std::mem::take(&mut self.liveness.ping_sent_ns) {
            0 => None,
            sent => Some(now_ns.saturating_sub(sent)),
        }
    }

    /// The peer's FIN. Returns what the loop must do.
    pub fn on_eof(&mut self) -> AfterEof {
        match self.phase {
            Phase::Responding {
                deadline_ns,
                written,
                ..
            } => {
                self.phase = Phase::Responding {
                    input: Input::Ended,
                    deadline_ns,
                    written,
                };
                return AfterEof::FinishResponse;
            }
            Phase::Open | Phase::Handshaking { .. } => {
                self.set_close_reason(CloseReason::PeerReset)
            }
            Phase::Closing {
                peer: PeerClose::Awaited,
                ..
            } => self.set_close_reason(CloseReason::PeerReset),
            _ => {}
        }
        AfterEof::Close
    }

    /// Marks the connection CLOSED. Returns true the first time (the loop queues it for reaping).
    pub fn mark_closed(&mut self) -> bool {
        let first = self.phase != Phase::Closed;
        self.phase = Phase::Closed;
        first
    }

    /// The peer's FIN was already read, so lingering would wait for nothing.
    pub fn peer_input_ended(&self) -> bool {
        matches!(
            self.phase,
            Phase::Responding {
                input: Input::Ended,
                ..
            }
        )
    }
}
