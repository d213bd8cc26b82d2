//! One client connection of the swarm: the opening handshake, the command exchange that makes
//! it ready (connected, then subscribed), the deliveries it checks, and the publishes it sends.
//!
//! Owns: per-connection protocol state, kept small for 100,000+ connections (no read buffer:
//! the driver lends its per-thread buffer; the handshake buffer lives only until the 101). May
//! not touch: the poll, the clock (`now_ns` arrives in the context), other connections.

use std::io::{self, Write};
use std::ops::ControlFlow;

use mio::net::TcpStream;
use wsrelay::proto::decoder::{Decoder, DecoderLimits, Event, Role};
use wsrelay::proto::deflate::{InflateError, Inflater};
use wsrelay::proto::extensions::{accept_client, client_offer};
use wsrelay::proto::handshake::{
    accept_key, encode_client_request, generate_key, parse_response_head,
    parse_response_head_offered,
};
use wsrelay::proto::Decode;

use crate::payload::{append_close, append_pong, subscribe_frame, PublishTemplate};
use crate::plan::Routes;
use crate::scan::{
    for_each_batch_stamp, for_each_binary_batch_stamp, scan_binary, scan_text, BinaryMessage,
    Stamp, TextMessage,
};
use crate::schedule::Schedule;
use crate::stats::{ThreadStats, Window};
use crate::target::Target;

/// Largest message the swarm accepts from a server.
const MESSAGE_BYTES_MAX: usize = 1 << 20;
/// Bytes a publisher may have queued before constant-rate publishes are skipped (and counted):
/// a server that stops reading must not make the swarm grow without bound.
pub const PUBLISH_QUEUE_BYTES_MAX: usize = 4 << 20;
/// Bytes a max-rate publisher appends per turn before yielding to reads.
const MAX_RATE_BATCH_BYTES: usize = 64 << 10;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// TCP connect in progress.
    Connecting,
    /// Upgrade request sent, waiting for the 101.
    Handshaking,
    /// Waiting for the server's `connected` message.
    AwaitConnected,
    /// Subscribe sent, waiting for `subscribed`.
    Subscribing,
    /// Set up; publishing and receiving.
    Ready,
    /// Close sent by the swarm, waiting for the server's close (until the deadline).
    Closing {
        /// When the connection is dropped without the reply, ns.
        deadline_ns: u64,
    },
    /// Finished; the driver drops it.
    Closed,
}

/// Whether a connection is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnKind {
    /// Part of the plan; its deliveries count toward latency and loss.
    Steady,
    /// Opened and closed by the churn scenario; not measured.
    Churn,
}

/// Why a connection ended abnormally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The server broke RFC 6455 (decoder error kind).
    Protocol(&'static str),
    /// The server's handshake response was rejected (kind).
    Handshake(&'static str),
}

/// A subscriber's checks: the next message index expected from each publisher of its channel.
#[derive(Debug)]
pub struct Subscriber {
    channel: u32,
    next_index: Box<[u32]>,
}

/// A publisher's template, schedule and audience.
#[derive(Debug)]
pub struct Publisher {
    /// Index in the plan.
    pub index: u32,
    audience: u32,
    template: PublishTemplate,
    /// Set when the run starts.
    pub schedule: Option<Schedule>,
}

/// What a receive needs besides the connection.
#[derive(Debug)]
pub struct RecvCtx<'a> {
    /// The thread's measurements.
    pub stats: &'a mut ThreadStats,
    /// When the bytes were read.
    pub now_ns: u64,
    /// The measured window.
    pub window: Window,
    /// Publisher → channel and rank.
    pub routes: &'a Routes,
    /// The thread's inflater, for compressed deliveries.
    pub inflate: &'a mut InflateScratch,
}

/// One inflater per driver thread: the swarm offers `server_no_context_takeover`, so every
/// compressed message is inflated from a fresh context.
#[derive(Debug, Default)]
pub struct InflateScratch {
    inflater: Inflater,
    out: Vec<u8>,
}

/// What a publish turn needs besides the connection.
#[derive(Debug)]
pub struct PublishCtx<'a> {
    /// The thread's measurements.
    pub stats: &'a mut ThreadStats,
    /// Now.
    pub now_ns: u64,
    /// The measured window.
    pub window: Window,
    /// Deliveries due but not yet received, process-wide (max rate only).
    pub inflight_deliveries: &'a mut u64,
    /// Limit of `inflight_deliveries` for max-rate publishers.
    pub inflight_deliveries_max: u64,
}

/// A connection's protocol state apart from the decoder.
#[derive(Debug)]
pub struct Session {
    /// Life phase.
    pub phase: Phase,
    /// Measured or churn.
    pub kind: ConnKind,
    /// Bytes to send (commands, pongs, publishes), bounded by the publish policy.
    pub out: Vec<u8>,
    /// When the TCP connect started, ns.
    pub opened_at_ns: u64,
    /// When setup completed, ns (0 before).
    pub ready_at_ns: u64,
    /// Subscriber checks, if subscribed.
    pub subscriber: Option<Box<Subscriber>>,
    /// Publisher state, if publishing.
    pub publisher: Option<Box<Publisher>>,
}

/// One connection.
#[derive(Debug)]
pub struct Conn {
    /// The socket.
    pub stream: TcpStream,
    /// The TLS session (`wss://`), `None`: plain.
    pub tls: Option<Box<rustls::ClientConnection>>,
    decoder: Decoder,
    /// The 101 response head being received, the accept value it must carry, and whether
    /// permessage-deflate was offered.
    handshake: Option<Box<(Vec<u8>, String, bool)>>,
    /// Everything else.
    pub session: Session,
    /// Which of the run's targets it is connected to (`Targets::get`).
    pub target: usize,
}

impl Conn {
    /// A connection whose TCP connect was just started.
    pub fn new(
        stream: TcpStream,
        tls: Option<Box<rustls::ClientConnection>>,
        kind: ConnKind,
        now_ns: u64,
    ) -> Conn {
        Conn {
            stream,
            tls,
            decoder: Decoder::new(
                Role::Client,
                DecoderLimits {
                    message_bytes_max: MESSAGE_BYTES_MAX,
                },
            ),
            handshake: None,
            session: Session {
                phase: Phase::Connecting,
                kind,
                out: Vec::new(),
                opened_at_ns: now_ns,
                ready_at_ns: 0,
                subscriber: None,
                publisher: None,
            },
            target: 0,
        }
    }

    /// Makes this connection subscribe to `channel` once connected.
    pub fn subscribe_to(&mut self, channel: u32, routes: &Routes) {
        let publishers = routes.publishers_per_channel.get(channel as usize).copied();
        self.session.subscriber = Some(Box::new(Subscriber {
            channel,
            next_index: vec![0; publishers.unwrap_or(0) as usize].into_boxed_slice(),
        }));
    }

    /// Makes this connection publish with `template` to `audience` subscribers.
    pub fn publish_as(&mut self, index: u32, audience: u32, template: PublishTemplate) {
        self.session.publisher = Some(Box::new(Publisher {
            index,
            audience,
            template,
            schedule: None,
        }));
    }

    /// The TCP connect completed: queue the upgrade request (§4.1) with a key made of `nonce`.
    pub fn start_handshake(&mut self, target: &Target, nonce: [u8; 16], deflate: bool) {
        let key = generate_key(nonce);
        let offer = client_offer(true);
        let extra: &[(&str, &str)] = match deflate {
            true => &[("Sec-WebSocket-Extensions", offer.as_str())],
            false => &[],
        };
        encode_client_request(
            &mut self.session.out,
            &target.host,
            &target.path,
            &key,
            None,
            extra,
        );
        self.handshake = Some(Box::new((
            Vec::with_capacity(256),
            accept_key(&key),
            deflate,
        )));
        self.session.phase = Phase::Handshaking;
    }

    /// Handles bytes read from the socket.
    pub fn on_bytes(&mut self, bytes: &mut [u8], ctx: &mut RecvCtx<'_>) -> Result<(), End> {
        if self.handshake.is_some() {
            return self.on_handshake_bytes(bytes, ctx);
        }
        let Conn {
            decoder, session, ..
        } = self;
        decoder
            .feed(bytes, |event| session.on_event(event, ctx))
            .map(|_| ())
            .map_err(|e| End::Protocol(e.kind()))
    }

    fn on_handshake_bytes(&mut self, bytes: &mut [u8], ctx: &mut RecvCtx<'_>) -> Result<(), End> {
        let Some(handshake) = self.handshake.as_deref_mut() else {
            return Ok(());
        };
        let (buf, accept, offered) = handshake;
        buf.extend_from_slice(bytes);
        let parsed = match offered {
            true => parse_response_head_offered(buf, accept),
            false => parse_response_head(buf, accept),
        };
        match parsed {
            Ok(Decode::Partial) => Ok(()),
            Ok(Decode::Complete(head, head_len)) => {
                if !head.extensions.is_empty() {
                    // RFC 7692 §5: an answer the client cannot accept fails the connection;
                    // the offer asked for no server context takeover.
                    match accept_client(head.extensions.as_slice()) {
                        Ok(p) if p.server_no_context_takeover => self.decoder.allow_compressed(),
                        _ => return Err(End::Handshake("bad_extension_answer")),
                    }
                }
                let mut rest = buf.split_off(head_len);
                self.handshake = None;
                self.session.phase = Phase::AwaitConnected;
                self.on_bytes(&mut rest, ctx)
            }
            Err(e) => Err(End::Handshake(e.kind())),
        }
    }

    /// Something is waiting to be written: queued bytes, or TLS records.
    pub fn wants_write(&self) -> bool {
        !self.session.out.is_empty() || self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Writes queued bytes until done or the socket is full.
    pub fn flush(&mut self) -> io::Result<()> {
        if let Some(tls) = self.tls.as_mut() {
            return flush_tls(tls, &mut self.stream, &mut self.session.out);
        }
        let out = &mut self.session.out;
        let mut written = 0;
        while written < out.len() {
            match self.stream.write(&out[written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if written == out.len() {
            out.clear();
        } else {
            out.drain(..written);
        }
        Ok(())
    }
}

/// Hands `out` to rustls (bounded by its 64 KiB buffer: the rest stays in `out`), then writes
/// its records until done or the socket is full.
pub(crate) fn flush_tls(
    tls: &mut rustls::ClientConnection,
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    loop {
        if !out.is_empty() {
            let taken = tls.writer().write(out)?;
            out.drain(..taken);
        }
        if !tls.wants_write() {
            return Ok(());
        }
        match tls.write_tls(stream) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

impl Session {
    fn on_event(&mut self, event: Event<'_>, ctx: &mut RecvCtx<'_>) -> ControlFlow<()> {
        match event {
            Event::Text(text) => self.on_text(text, ctx),
            Event::Binary(bytes) => self.on_binary(bytes, ctx),
            Event::Ping(payload) => append_pong(&mut self.out, payload),
            Event::Pong(_) => {}
            Event::CompressedText(bytes) | Event::CompressedBinary(bytes) => {
                let binary = matches!(event, Event::CompressedBinary(_));
                return self.on_compressed(bytes, binary, ctx);
            }
            Event::Close(frame) => {
                // 1005: the close carried no status code (§7.1.5).
                let code = frame.map_or(1005, |f| f.code);
                *ctx.stats.close_codes.entry(code).or_default() += 1;
                if !matches!(self.phase, Phase::Closing { .. }) {
                    append_close(&mut self.out, 1000);
                }
                self.phase = Phase::Closed;
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }

    /// A compressed message (RFC 7692): inflated with the thread's context, then checked like
    /// an uncompressed one. A bad stream ends the connection like a protocol error.
    fn on_compressed(
        &mut self,
        bytes: &[u8],
        binary: bool,
        ctx: &mut RecvCtx<'_>,
    ) -> ControlFlow<()> {
        let mut out = std::mem::take(&mut ctx.inflate.out);
        ctx.inflate.inflater.reset();
        let result = ctx
            .inflate
            .inflater
            .inflate(bytes, MESSAGE_BYTES_MAX, &mut out);
        let flow = match result {
            Ok(()) if binary => {
                self.on_binary(&out, ctx);
                ControlFlow::Continue(())
            }
            Ok(()) => {
                self.on_text(&out, ctx);
                ControlFlow::Continue(())
            }
            Err(InflateError::TooBig) => {
                ctx.stats.error("inflate_too_big");
                ControlFlow::Break(())
            }
            Err(InflateError::BadData) => {
                ctx.stats.error("inflate_bad_data");
                ControlFlow::Break(())
            }
        };
        ctx.inflate.out = out;
        flow
    }

    /// A binary message: a delivery, a room's batch, a gap notice.
    fn on_binary(&mut self, bytes: &[u8], ctx: &mut RecvCtx<'_>) {
        match scan_binary(bytes) {
            BinaryMessage::Delivery(stamp) => {
                self.count_frame(ctx);
                self.on_delivery(stamp, ctx)
            }
            BinaryMessage::Batch => self.on_binary_batch(bytes, ctx),
            BinaryMessage::Gap => ctx.stats.gap_notices += 1,
            BinaryMessage::Malformed => ctx.stats.error("malformed_binary"),
        }
    }

    fn on_text(&mut self, text: &[u8], ctx: &mut RecvCtx<'_>) {
        match scan_text(text) {
            TextMessage::Delivery(stamp) => {
                self.count_frame(ctx);
                self.on_delivery(stamp, ctx)
            }
            TextMessage::Batch => self.on_batch(text, ctx),
            TextMessage::Connected => self.on_connected(ctx),
            TextMessage::Subscribed if self.phase == Phase::Subscribing => self.become_ready(ctx),
            TextMessage::Subscribed | TextMessage::OtherReply => {}
            TextMessage::Gap => ctx.stats.gap_notices += 1,
            TextMessage::Error => ctx.stats.error("server_error_reply"),
            TextMessage::Malformed => ctx.stats.error("malformed_text"),
        }
    }

    fn on_connected(&mut self, ctx: &mut RecvCtx<'_>) {
        if self.phase != Phase::AwaitConnected {
            return;
        }
        let channel = self.subscriber.as_ref().map(|s| s.channel);
        let name = channel.and_then(|c| ctx.routes.channel_names.get(c as usize));
        match name {
            Some(name) => {
                self.out.extend_from_slice(&subscribe_frame(name));
                self.phase = Phase::Subscribing;
            }
            None => self.become_ready(ctx),
        }
    }

    fn become_ready(&mut self, ctx: &mut RecvCtx<'_>) {
        self.phase = Phase::Ready;
        self.ready_at_ns = ctx.now_ns;
        if self.kind == ConnKind::Steady {
            ctx.stats.conns_ready += 1;
        }
        ctx.stats
            .record_connect(ctx.now_ns.saturating_sub(self.opened_at_ns) / 1_000);
    }

    /// Counts one frame that carried deliveries (frames per delivery).
    #[inline]
    fn count_frame(&self, ctx: &mut RecvCtx<'_>) {
        if ctx.window.contains(ctx.now_ns) && self.kind == ConnKind::Steady {
            ctx.stats.delivery_frames_during_window += 1;
        }
    }

    /// A room tick's JSON batch: every entry is a delivery, except the member's own messages.
    fn on_batch(&mut self, text: &[u8], ctx: &mut RecvCtx<'_>) {
        self.count_frame(ctx);
        let own = self.publisher.as_ref().map(|p| p.index);
        for_each_batch_stamp(text, |stamp| match stamp {
            Some(s) if Some(s.publisher) == own => ctx.stats.own_in_batch += 1,
            Some(s) => self.on_delivery(s, ctx),
            None => ctx.stats.error("malformed_batch_entry"),
        });
    }

    /// A room tick's binary batch.
    fn on_binary_batch(&mut self, bytes: &[u8], ctx: &mut RecvCtx<'_>) {
        self.count_frame(ctx);
        let own = self.publisher.as_ref().map(|p| p.index);
        let read = for_each_binary_batch_stamp(bytes, |stamp| match stamp {
            Some(s) if Some(s.publisher) == own => ctx.stats.own_in_batch += 1,
            Some(s) => self.on_delivery(s, ctx),
            None => ctx.stats.error("malformed_batch_entry"),
        });
        if read.is_none() {
            ctx.stats.error("malformed_binary");
        }
    }

    /// The hot path: checks a delivery's publisher and order, and records its latency.
    #[inline]
    fn on_delivery(&mut self, stamp: Stamp, ctx: &mut RecvCtx<'_>) {
        let Some(subscriber) = self.subscriber.as_deref_mut() else {
            return ctx.stats.error("unexpected_delivery");
        };
        if self.kind == ConnKind::Churn {
            ctx.stats.churn_deliveries += 1;
            return;
        }
        let p = stamp.publisher as usize;
        let routes = ctx.routes;
        let next = match (routes.channel_of.get(p), routes.rank_of.get(p)) {
            (Some(&channel), Some(&rank)) if channel == subscriber.channel => {
                subscriber.next_index.get_mut(rank as usize)
            }
            _ => None,
        };
        let Some(next) = next else {
            return ctx.stats.error("foreign_delivery");
        };
        let stats = &mut *ctx.stats;
        stats.received_total += 1;
        if stamp.index >= *next {
            stats.gap_messages += u64::from(stamp.index - *next);
            *next = stamp.index + 1;
        } else {
            stats.reordered += 1;
        }
        if ctx.window.contains(ctx.now_ns) {
            stats.received_during_window += 1;
        }
        if ctx.window.contains(stamp.sent_at_ns) {
            stats.received_window += 1;
            stats.record_latency(ctx.now_ns.saturating_sub(stamp.sent_at_ns));
        }
    }

    /// Appends every publish due at `ctx.now_ns`; returns whether anything was appended.
    pub fn publish_due(&mut self, ctx: &mut PublishCtx<'_>) -> bool {
        let Some(publisher) = self.publisher.as_deref_mut() else {
            return false;
        };
        let Some(schedule) = publisher.schedule.as_mut() else {
            return false;
        };
        let start_len = self.out.len();
        let audience = u64::from(publisher.audience);
        loop {
            if schedule.is_max()
                && (*ctx.inflight_deliveries + audience > ctx.inflight_deliveries_max
                    || self.out.len() - start_len >= MAX_RATE_BATCH_BYTES
                    || self.out.len() >= PUBLISH_QUEUE_BYTES_MAX)
            {
                break;
            }
            let Some(due) = schedule.poll_due(ctx.now_ns) else {
                break;
            };
            if self.out.len() >= PUBLISH_QUEUE_BYTES_MAX {
                ctx.stats.publish_skipped += 1;
                continue;
            }
            let stamp = Stamp {
                sent_at_ns: due.scheduled_ns,
                publisher: publisher.index,
                index: due.index,
            };
            publisher.template.append(&mut self.out, stamp);
            count_publish(ctx, audience, due.scheduled_ns);
        }
        self.out.len() > start_len
    }
}

fn count_publish(ctx: &mut PublishCtx<'_>, audience: u64, scheduled_ns: u64) {
    let stats = &mut *ctx.stats;
    stats.sent_total += 1;
    stats.due_total += audience;
    *ctx.inflight_deliveries += audience;
    if ctx.window.contains(scheduled_ns) {
        stats.sent_window += 1;
        stats.due_window += audience;
        stats.record_send_lag(ctx.now_ns.saturating_sub(scheduled_ns));
    }
}
