//! Frame handling: routing the requests a connection's session read and let through
//! (`Session::read_request`: the JSON and binary protocol is decoded and gated there), the
//! reaction to a queued reply (`Session::reply` encodes it), the echo endpoint, pongs, the close
//! handshake and protocol errors. Pub/sub routing itself is in `deliver.rs`.
//!
//! Encodes nothing of the JSON protocol: every per-connection reply is a `session::Reply`.

use std::sync::Arc;

use crate::close_code;
use crate::conn_id::ConnId;
use crate::metrics::Counter;
use crate::outbox::SendStatus;
use crate::proto::close::code;
use crate::proto::frame::{OpCode, PreparedFrame};
use crate::proto::ProtocolError;
use crate::runtime::conn::CloseReason;
use crate::runtime::event_loop::EventLoop;
pub(super) use crate::session::CloseHow;
pub(super) use crate::session::Published;
use crate::session::{PeerClose, PongQueued, Refused, Reply, Request};

impl EventLoop {
    /// A complete data message on the relay endpoint: the session reads it as a request (a
    /// text message is a JSON command, a binary one a binary publish; the loop lends its
    /// decoder) and gates it. What passes is routed; what does not was answered by the
    /// session and is counted here.
    pub(super) fn on_command(&mut self, id: ConnId, opcode: OpCode, message: &[u8]) {
        let Some(mut decoder) = self.scratch.commands.take() else {
            return;
        };
        let max = self.env.config.channel_bytes_max;
        if let Some(conn) = self.conns.get_mut(id) {
            match conn
                .session
                .read_request(opcode, message, &mut decoder, max)
            {
                Ok(request) => self.route_request(id, request),
                Err(refused) => self.on_refused(id, refused),
            }
        }
        self.scratch.commands = Some(decoder);
    }

    /// Acts on a request the connection's session let through.
    fn route_request(&mut self, id: ConnId, request: Request<'_>) {
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
            Request::Ping => self.reply(id, Reply::Pong),
            Request::Auth { token } => self.on_auth(id, token),
        }
    }

    /// A message the session refused (not a command, or not allowed) and answered with its
    /// error: counted and logged; the connection stays open.
    fn on_refused(&mut self, id: ConnId, refused: Refused) {
        self.metrics.command_error(refused.kind);
        self.warn_refused(refused.kind, refused.warning);
        self.after_reply(id, refused.status);
    }

    /// Queues `reply` to `id` (the session encodes it, `session/reply.rs`) and reacts to what
    /// became of it.
    pub(super) fn reply(&mut self, id: ConnId, reply: Reply<'_>) {
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        let status = conn.session.reply(reply);
        self.after_reply(id, status);
    }

    /// The loop's reaction to a reply the session queued (or refused): flush it this turn;
    /// count one refused because the connection is closing; close a client whose control
    /// budget is full: it does not read its replies, and replies are never silently dropped.
    pub(super) fn after_reply(&mut self, id: ConnId, status: SendStatus) {
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
        if !conn.session.delivery_fits(bytes.len()) {
            self.flush(id);
        }
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        let status = conn.session.handle_delivery(bytes, 0);
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
