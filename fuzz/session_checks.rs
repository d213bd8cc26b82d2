//! The properties of the `session` fuzz target, shared with `tests/fuzz_regressions.rs` (both
//! include this file with `#[path]`): one server connection (`wsrelay::session::Session`)
//! driven through its whole life by fuzzer-chosen operations: client bytes in arbitrary chunks
//! (decoded by the session's `read_frame` one frame at a time, as the event loop does; each
//! data message is also read as a relay request, `read_request`, and answered with its
//! `Reply`, refusals answered by the session itself), deliveries (`handle_delivery`), partial socket writes, clock advances that fire deadlines, the peer's FIN, a
//! graceful close, a drain and an authentication deadline.
//!
//! Checked for every input:
//! - no panic;
//! - nothing is written after our close frame, and everything written parses as server frames
//!   (an HTTP 101 head first);
//! - the outbox never holds more than its data and control budgets (plus the one frame that
//!   may exceed a budget when it is empty: a message up to the size limit);
//! - after a deadline was handled, the next deadline is strictly later than `now` (the loop
//!   never spins on a deadline that does not move).
//!
//! Input layout: a sequence of operations `[op][arg][bytes...]` (see [`Op`]).
#![allow(dead_code)]

use std::ops::ControlFlow;

use bytes::Bytes;
use wsrelay::command::CommandDecoder;
use wsrelay::proto::{Decoder, DecoderLimits, Event, OpCode, Role};
use wsrelay::session::{
    AfterEof, CloseHow, Endpoint, PeerClose, PongQueued, ReadStep, Received, Reply, Request,
    Session, SessionLimits, Span, Timeout, Timeouts,
};

const MS: u64 = 1_000_000;
const LIMITS: SessionLimits = SessionLimits {
    message_bytes_max: 512,
    outbox_bytes_max: 2048,
    control_bytes_max: 512,
};
const TIMEOUTS: Timeouts = Timeouts {
    handshake_ns: 50 * MS,
    heartbeat_interval_ns: 100 * MS,
    heartbeat_timeout_ns: 30 * MS,
    idle_ns: 400 * MS,
    close_ns: 20 * MS,
};
const RESPONSE: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\n\r\n";

/// One connection under test and what the "socket" received.
struct Harness {
    session: Session,
    now_ns: u64,
    /// Bytes written to the peer so far.
    wire: Vec<u8>,
    closed: bool,
    /// The loop's command decoder, lent to the session per message.
    decoder: CommandDecoder,
}

/// Runs the operations of `data` on a fresh session and checks the properties.
pub fn check_session(data: &[u8]) {
    let mut h = Harness {
        session: Session::new(0, Endpoint::Relay, LIMITS, &TIMEOUTS),
        now_ns: 0,
        wire: Vec::new(),
        closed: false,
        decoder: CommandDecoder::new(),
    };
    let mut ops = data;
    while let [op, arg, rest @ ..] = ops {
        let take = usize::from(*arg).min(rest.len());
        let (bytes, tail) = rest.split_at(take);
        h.apply(*op, *arg, bytes);
        h.check_budgets();
        ops = tail;
        if h.closed {
            break;
        }
    }
    h.write(usize::MAX);
    check_wire(&h.wire);
}

impl Harness {
    fn apply(&mut self, op: u8, arg: u8, bytes: &[u8]) {
        match op % 9 {
            0 => self.upgrade(),
            1 => self.client_bytes(bytes),
            2 => self.advance(u64::from(arg) * MS),
            3 => self.deliver(bytes),
            4 => self.write(usize::from(arg) * 8),
            5 => self.eof(),
            6 => self.close_gracefully(),
            7 => self.session.drain_at(self.now_ns + u64::from(arg) * MS),
            _ => self
                .session
                .set_auth_deadline(self.now_ns + u64::from(arg) * MS),
        }
    }

    fn upgrade(&mut self) {
        if let wsrelay::session::Phase::Handshaking { .. } = self.session.phase() {
            self.session
                .upgrade(Endpoint::Relay, Bytes::from_static(RESPONSE));
        }
    }

    /// Client frames: the bytes are masked and framed by the fuzzer itself (anything goes).
    fn client_bytes(&mut self, bytes: &[u8]) {
        self.session.on_bytes_received(self.now_ns);
        if !matches!(
            self.session.phase(),
            wsrelay::session::Phase::Open | wsrelay::session::Phase::Closing { .. }
        ) {
            return;
        }
        let mut input = bytes.to_vec();
        let mut assembled = Vec::new();
        let mut at = 0;
        while at < input.len() {
            let step =
                self.session
                    .read_frame(self.now_ns, &mut input[at..], &mut assembled, &TIMEOUTS);
            let (consumed, received) = match step {
                ReadStep::Frame { consumed, received } => (consumed, received),
                ReadStep::Drained => return,
                ReadStep::Failed(e) => {
                    self.session.fail(self.now_ns, &e, &TIMEOUTS);
                    return;
                }
            };
            let payload = match &received {
                Received::Message {
                    span: Span::Input(r),
                    ..
                } => input[at + r.start..at + r.end].to_vec(),
                Received::Message {
                    span: Span::Assembled,
                    ..
                } => assembled.clone(),
                _ => Vec::new(),
            };
            at += consumed;
            if self.on_received(received, &payload).is_break() {
                return;
            }
        }
    }

    /// What the event loop does with each frame the session returns (echo endpoint for data).
    fn on_received(&mut self, received: Received, payload: &[u8]) -> ControlFlow<()> {
        match received {
            Received::Message { opcode, .. } => {
                self.request(opcode, payload);
                self.echo(opcode, payload)
            }
            Received::Ping(PongQueued::Full(pong)) => {
                self.write(usize::MAX);
                if let PongQueued::Full(_) = self.session.retry_pong(pong) {
                    let close = (Some(1008), "too many pings");
                    let how = CloseHow::AfterQueued;
                    self.session.start_close(
                        self.now_ns,
                        close,
                        how,
                        PeerClose::NotAwaited,
                        &TIMEOUTS,
                    );
                }
            }
            Received::Close { .. } => return ControlFlow::Break(()),
            Received::Ping(_) | Received::Pong { .. } | Received::Ignored => {}
        }
        ControlFlow::Continue(())
    }

    /// The relay endpoint: the message read as a request and answered as the loop would
    /// (a refusal was answered by the session).
    fn request(&mut self, opcode: OpCode, payload: &[u8]) {
        let read = self
            .session
            .read_request(opcode, payload, &mut self.decoder, 128);
        let reply = match read {
            Ok(Request::Ping) => Reply::Pong,
            Ok(Request::Subscribe { channel, since, .. }) => Reply::Subscribed {
                channel,
                seq: since.unwrap_or(0),
                epoch: "e",
                recovered: since.map(|_| true),
                throttle_ms: None,
            },
            Ok(Request::Unsubscribe { channel }) => Reply::Unsubscribed { channel },
            Ok(Request::Publish {
                channel,
                ack: Some(id),
                message,
                ..
            }) => Reply::Ack {
                channel,
                id,
                seq: Some(1),
                binary: matches!(message, wsrelay::session::Published::Binary(_)),
            },
            Ok(_) | Err(_) => return,
        };
        let _ = self.session.reply(reply);
    }

    /// The echo endpoint: the message back with its opcode.
    fn echo(&mut self, opcode: OpCode, payload: &[u8]) {
        let frame = wsrelay::proto::frame::PreparedFrame::new(opcode, payload);
        let _ = self.session.handle_delivery(frame.into_bytes(), 0);
    }

    /// A delivery of `bytes` as one binary frame (refused when closing or over budget). Only
    /// an upgraded connection can have subscriptions, so nothing is delivered before.
    fn deliver(&mut self, bytes: &[u8]) {
        if !self.session.is_websocket() {
            return;
        }
        let frame = wsrelay::proto::frame::PreparedFrame::new(OpCode::Binary, bytes);
        let _ = self
            .session
            .handle_delivery(frame.into_bytes(), self.now_ns);
    }

    /// The socket takes up to `max` bytes; then the drained-outbox rules apply.
    fn write(&mut self, max: usize) {
        let mut left = max;
        while left > 0 && !self.session.outbox.is_empty() {
            let mut slices = [std::io::IoSlice::new(&[]); wsrelay::outbox::IO_SLICES_MAX];
            let n = self.session.outbox.io_slices(&mut slices);
            let gathered: Vec<u8> = slices[..n].iter().flat_map(|s| s.iter().copied()).collect();
            let taken = gathered.len().min(left);
            self.wire.extend_from_slice(&gathered[..taken]);
            self.session.outbox.advance(taken, &mut |_, _, _| {});
            left -= taken;
        }
        if self.session.outbox.is_empty() && self.session.finished_writing() {
            if self.session.peer_input_ended() {
                self.closed = self.session.mark_closed();
            } else {
                self.session.linger(self.now_ns, &TIMEOUTS);
            }
        }
    }

    fn eof(&mut self) {
        if self.session.on_eof() == AfterEof::Close {
            self.closed = self.session.mark_closed();
        }
    }

    fn close_gracefully(&mut self) {
        let close = (Some(1001), "going away");
        let how = CloseHow::AfterQueued;
        self.session
            .start_close(self.now_ns, close, how, PeerClose::Awaited, &TIMEOUTS);
    }

    /// Moves the clock and fires what is due, as the loop's wheel would.
    fn advance(&mut self, by_ns: u64) {
        self.now_ns += by_ns;
        while let Some(due) = self.session.next_deadline(&TIMEOUTS) {
            if due > self.now_ns {
                return;
            }
            let drain = (4200, "server draining");
            match self.session.handle_timeout(self.now_ns, &TIMEOUTS, drain) {
                Timeout::Terminate(_) => {
                    self.closed = self.session.mark_closed();
                    return;
                }
                Timeout::AuthDeadline => {
                    let close = (Some(4008), "authentication timeout");
                    let how = CloseHow::DiscardQueued;
                    self.session.start_close(
                        self.now_ns,
                        close,
                        how,
                        PeerClose::Awaited,
                        &TIMEOUTS,
                    );
                }
                _ => {}
            }
            if let Some(next) = self.session.next_deadline(&TIMEOUTS) {
                assert!(
                    next > self.now_ns,
                    "deadline {next} not after now {}",
                    self.now_ns
                );
            }
        }
    }

    fn check_budgets(&self) {
        let outbox = &self.session.outbox;
        let bound = LIMITS.outbox_bytes_max + LIMITS.control_bytes_max + LIMITS.message_bytes_max;
        assert!(
            outbox.queued_bytes() <= bound + RESPONSE.len() + 16,
            "outbox holds {} bytes",
            outbox.queued_bytes()
        );
    }
}

/// The wire must be (an HTTP 101 head, then) server frames with nothing after a close frame.
fn check_wire(wire: &[u8]) {
    let frames = match wire.strip_prefix(RESPONSE) {
        Some(frames) => frames,
        None => {
            assert!(wire.is_empty(), "bytes before the upgrade: {wire:?}");
            return;
        }
    };
    let mut decoder = Decoder::new(
        Role::Client,
        DecoderLimits {
            message_bytes_max: 1 << 20,
        },
    );
    let mut input = frames.to_vec();
    let mut closed = false;
    let result = decoder.feed(&mut input, |event| {
        assert!(!closed, "a frame after the close frame");
        closed = matches!(event, Event::Close(_));
        ControlFlow::Continue(())
    });
    assert!(
        result.is_ok(),
        "our output is not valid RFC 6455: {result:?}"
    );
}
