//! Frame handling: client commands (JSON and binary), control frames, the close handshake and
//! protocol errors. Pub/sub routing itself is in `deliver.rs`.

use std::sync::Arc;

use bytes::Bytes;

use crate::close_code;
use crate::command::{self as encode, CommandError};
use crate::conn_id::ConnId;
use crate::metrics::Counter;
use crate::outbox::SendStatus;
use crate::proto::close::code;
use crate::proto::frame::{FrameBuilder, OpCode, PreparedFrame};
use crate::proto::ProtocolError;
use crate::runtime::conn::CloseReason;
use crate::runtime::event_loop::EventLoop;
pub(super) use crate::session::CloseHow;
pub(super) use crate::session::Published;
use crate::session::{PeerClose, PongQueued, Request};

impl EventLoop {
    /// A complete text message on the relay endpoint: one JSON command.
    pub(super) fn on_text(&mut self, id: ConnId, text: &[u8]) {
        let Some(mut commands) = self.scratch.commands.take() else {
            return;
        };
        let max = self.env.config.channel_bytes_max;
        match commands.decode(text, max) {
            Ok(command) => self.on_request(id, Request::from(command)),
            Err(e) => self.command_error(id, e),
        }
        self.scratch.commands = Some(commands);
    }

    /// A complete binary message on the relay endpoint: a binary publish.
    pub(super) fn on_binary(&mut self, id: ConnId, msg: &[u8]) {
        match crate::command::decode_binary(msg, self.env.config.channel_bytes_max) {
            Ok(publish) => self.on_request(id, Request::from(publish)),
            Err(e) => self.command_error(id, e),
        }
    }

    /// A request that the connection's session lets through is routed; a refused one is
    /// answered with its error.
    fn on_request(&mut self, id: ConnId, request: Request<'_>) {
        let verdict = match self.conn_mut(id) {
            Some(conn) => conn.session.authorize(&request),
            None => return,
        };
        if let Err(refusal) = verdict {
            return self.refuse_request(id, refusal);
        }
        if matches!(
            request,
            Request::Subscribe { .. } | Request::Unsubscribe { .. }
        ) {
            // Keep the connection's order: its earlier publishes are numbered first.
            self.flush_publishes();
        }
        match request {
            Request::Subscribe {
                channel,
                since,
                epoch,
                options,
            } => {
                let since = since.map(|s| (s, epoch.map(Arc::from)));
                self.subscribe(id, channel, since, options)
            }
            Request::Presence { channel } => self.presence_query(id, channel),
            Request::Unsubscribe { channel } => self.unsubscribe(id, channel),
            Request::Publish {
                channel,
                message,
                key,
                ack,
            } => {
                self.metrics.inc(match message {
                    Published::Json { .. } => Counter::PublishedJson,
                    Published::Binary(_) => Counter::PublishedBinary,
                });
                self.publish(id, channel, message, key, ack);
            }
            Request::Ping => self.reply(id, encode::encode_pong),
            Request::Auth { token } => self.on_auth(id, token),
        }
    }

    /// Answers a bad command with `{"type":"error","message":...}`; the connection stays open.
    pub(super) fn command_error(&mut self, id: ConnId, e: CommandError) {
        self.metrics.command_error(e.kind());
        self.warn_refused(e.kind(), e.message());
        self.reply(id, |out| encode::encode_error(out, e.message()));
    }

    /// Queues a JSON reply on the control lane (may overtake queued deliveries).
    pub(super) fn reply(&mut self, id: ConnId, write: impl FnOnce(&mut Vec<u8>)) {
        let mut frame = FrameBuilder::new(OpCode::Text, 64);
        frame.append_with(write);
        let bytes = frame.finish().into_bytes();
        self.queue_control(id, bytes, false);
    }

    /// Queues a JSON reply that keeps its place among deliveries (`unsubscribed`, `gap`).
    pub(super) fn reply_ordered(&mut self, id: ConnId, write: impl FnOnce(&mut Vec<u8>)) {
        let mut frame = FrameBuilder::new(OpCode::Text, 64);
        frame.append_with(write);
        let bytes = frame.finish().into_bytes();
        self.queue_control(id, bytes, true);
    }

    /// Queues a control-budget frame. A client that never reads its replies runs out of control
    /// budget and is closed as a slow consumer: replies are never silently dropped.
    pub(super) fn queue_control(&mut self, id: ConnId, bytes: Bytes, ordered: bool) {
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        let status = match ordered {
            true => conn.session.outbox.push_ordered_control(bytes),
            false => conn.session.outbox.push_control(bytes),
        };
        match status {
            SendStatus::Queued => self.mark_dirty(id),
            SendStatus::Closed => self.metrics.inc(Counter::DropNotOpen),
            SendStatus::Full => self.close_slow_consumer(id),
        }
    }

    /// Echo endpoint: the same message back, same opcode.
    pub(super) fn echo(&mut self, id: ConnId, opcode: OpCode, payload: &[u8]) {
        let compressed = match self.conn_mut(id).is_some_and(|c| c.deflate.is_some()) {
            true => self.echo_frame(id, opcode, payload),
            false => None,
        };
        let frame = match compressed {
            Some(bytes) => PreparedFrame::from_wire(bytes),
            None => PreparedFrame::new(opcode, payload),
        };
        let bytes = frame.into_bytes();
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        // The echo endpoint is a conformance target: one message of the largest size fits the
        // data budget (config validation). When it does not fit beside what is queued (several
        // large messages in one read), what is queued is written first, as for pongs; only a
        // client whose socket is full too is closed as a slow consumer.
        if !conn.session.outbox.data_fits(bytes.len()) {
            self.flush(id);
        }
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        let status = conn.session.outbox.push_data(bytes, 0);
        match status {
            SendStatus::Queued => self.mark_dirty(id),
            SendStatus::Closed => {}
            SendStatus::Full => self.close_slow_consumer(id),
        }
    }

    /// RFC 6455 §5.5.2-3: the session queued one pong per ping, with its payload. When the
    /// control budget is full (many pings in one read), the queued pongs are written at once
    /// and the pong queued again; only a peer that does not read its pongs (the socket is full
    /// too) is closed with 1008, rather than pongs silently coalesced.
    pub(super) fn on_pong_queued(&mut self, id: ConnId, mut queued: PongQueued) {
        if let PongQueued::Full(pong) = queued {
            self.flush(id);
            queued = match self.conn_mut(id) {
                Some(conn) => conn.session.retry_pong(pong),
                None => PongQueued::NotOpen,
            };
        }
        match queued {
            PongQueued::Queued => self.mark_dirty(id),
            PongQueued::NotOpen => {}
            PongQueued::Full(_) => self.close_ping_flood(id),
        }
    }

    /// More unanswered pings than the control budget holds: 1008 (policy violation).
    fn close_ping_flood(&mut self, id: ConnId) {
        self.warn_refused(
            "ping_flood",
            "pings faster than their pongs are read, closing",
        );
        if let Some(conn) = self.conn_mut(id) {
            conn.set_close_reason(CloseReason::PingFlood);
        }
        // Nothing more is processed from a peer that floods: no reply is awaited.
        let close = (Some(code::POLICY), "too many pings");
        self.start_close_awaiting(id, close, CloseHow::AfterQueued, PeerClose::NotAwaited);
    }

    /// A framing violation: close with the rule's code (1002, 1007 or 1009) and drop TCP once
    /// the close frame is out (RFC 6455 §7.1.7 "Fail the WebSocket Connection"). Frames are
    /// processed in order: what the frames before the bad one earned (echoes, replies, pongs)
    /// is written before the close frame, as strict implementations do.
    pub(super) fn on_protocol_error(&mut self, id: ConnId, e: ProtocolError) {
        self.metrics.protocol_error(e.kind());
        self.warn_refused(e.kind(), "RFC 6455 violation, closing");
        let (now_ns, t) = (self.now_ns, self.env.timeouts);
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        let started = conn.session.fail(now_ns, &e, &t);
        // Flushed this turn even when our close was already out: TCP closes once it is written.
        self.mark_dirty(id);
        self.close_started(id, started);
    }

    /// Outbox over budget under the `close` policy (or replies not read): 4100.
    pub(super) fn close_slow_consumer(&mut self, id: ConnId) {
        self.metrics.inc(Counter::DropSlowConsumerClose);
        if let Some(conn) = self.conn_mut(id) {
            conn.set_close_reason(CloseReason::SlowConsumer);
        }
        self.start_close(
            id,
            Some(close_code::SLOW_CONSUMER),
            "slow consumer",
            CloseHow::DiscardQueued,
        );
    }

    /// Queues our close frame and enters CLOSING, awaiting the peer's answer. `code: None`
    /// sends an empty close payload.
    pub(super) fn start_close(
        &mut self,
        id: ConnId,
        code: Option<u16>,
        reason: &str,
        how: CloseHow,
    ) {
        self.start_close_awaiting(id, (code, reason), how, PeerClose::Awaited);
    }

    fn start_close_awaiting(
        &mut self,
        id: ConnId,
        close: (Option<u16>, &str),
        how: CloseHow,
        peer: PeerClose,
    ) {
        let (now_ns, t) = (self.now_ns, self.env.timeouts);
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        let started = conn.session.start_close(now_ns, close, how, peer, &t);
        self.close_started(id, started);
    }
}
