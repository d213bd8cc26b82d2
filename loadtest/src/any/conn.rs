//! One virtual client of a run against any WebSocket server: the opening handshake (headers,
//! subprotocols), the opening steps (login, subscribe, each optionally awaiting a reply), the
//! periodic messages and the matching of their replies, and reactions to received messages.
//!
//! Owns: per-client protocol state; pending measurements are bounded
//! ([`PENDING_MAX`]; sends beyond it are skipped and counted). May not touch: the poll, the
//! clock (`now_ns` arrives in the context), other clients.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::ops::ControlFlow;

use mio::net::TcpStream;
use serde_json::Value;
use wsrelay::proto::decoder::{Decoder, DecoderLimits, Event, Role};
use wsrelay::proto::frame::{encode_client_frame, OpCode};
use wsrelay::proto::handshake::{
    accept_key, encode_client_request, generate_key, parse_response_head,
};
use wsrelay::proto::Decode;

use crate::any::scenario::{Expect, Group, Matching, Message, Payload};
use crate::any::template::Vars;
use crate::conn::PUBLISH_QUEUE_BYTES_MAX;
use crate::payload::{append_close, append_pong, PublishTemplate, FIXED_TEST_MASK};
use crate::scan::{scan_binary_stamp_prefix, scan_stamp_object, Stamp};
use crate::schedule::Schedule;
use crate::series::Series;
use crate::stats::{ThreadStats, Window};
use crate::target::Target;

/// Largest message accepted from a server.
const MESSAGE_BYTES_MAX: usize = 1 << 20;
/// Replies awaited per client at once; sends beyond are skipped (`publish_skipped`).
pub const PENDING_MAX: usize = 65_536;

/// Where a client is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// TCP connect in progress.
    Connecting,
    /// Upgrade request sent, waiting for the 101.
    Handshaking,
    /// Running the opening steps; `step` is the one whose reply is awaited.
    Opening {
        /// Index into the group's `on_open`.
        step: usize,
    },
    /// Ready: periodic messages flow.
    Ready,
    /// Close sent, waiting for the server's (replies still count until then).
    Closing {
        /// When the socket is dropped without it, ns.
        deadline_ns: u64,
    },
    /// Finished; the driver drops it.
    Closed,
}

/// Why a client ended abnormally: the same cases as the relay scenarios' connections.
pub use crate::conn::End;

/// Replies awaited.
#[derive(Debug)]
enum Pending {
    None,
    /// Scheduled send times in send order.
    Order(VecDeque<u64>),
    /// Scheduled send time by the key the reply must carry.
    Keys(HashMap<String, u64>),
}

/// Counters of this engine that `ThreadStats` has no field for.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyCounters {
    /// Data messages received that closed no measurement and matched no reaction.
    pub unmatched_total: u64,
    /// Messages sent by reactions.
    pub reactions_total: u64,
    /// Messages sent by opening steps.
    pub open_messages_total: u64,
    /// Clients closed by a ramp-down stage.
    pub ramped_down_total: u64,
}

/// What a client needs besides itself.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// Its group.
    pub group: &'a Group,
    /// Precomputed stamped frame of the group (stamped payloads only).
    pub stamped: Option<&'a PublishTemplate>,
    /// Precomputed frame of a fixed payload.
    pub fixed: Option<&'a [u8]>,
    /// The thread's measurements.
    pub stats: &'a mut ThreadStats,
    /// The thread's per-second measurements.
    pub series: &'a mut Series,
    /// The engine's own counters.
    pub counters: &'a mut AnyCounters,
    /// Now, ns.
    pub now_ns: u64,
    /// The measured window.
    pub window: Window,
    /// Random state.
    pub rng: &'a mut u64,
}

impl Ctx<'_> {
    /// Counts an error of `kind`, in the totals and in the current second.
    pub fn error(&mut self, kind: &str) {
        self.stats.error(kind);
        self.series.error(self.now_ns);
    }
}

/// One client.
#[derive(Debug)]
pub struct Client {
    /// The socket.
    pub stream: TcpStream,
    /// `wss://`: the TLS session the bytes go through (`None`: plain TCP).
    pub tls: Option<Box<rustls::ClientConnection>>,
    /// Taken out while it feeds events to the rest of the client.
    decoder: Option<Decoder>,
    handshake: Option<Box<(Vec<u8>, String)>>,
    /// Life phase.
    pub phase: Phase,
    /// Bytes to send, bounded by [`PUBLISH_QUEUE_BYTES_MAX`] for periodic messages.
    pub out: Vec<u8>,
    /// Index in the run.
    pub client: u32,
    /// Index in its group.
    pub group_client: u32,
    /// Its group's index.
    pub group: u32,
    /// When the TCP connect started, ns.
    pub opened_at_ns: u64,
    /// Set when the run starts (or when it became ready, if later).
    pub schedule: Option<Schedule>,
    pending: Pending,
    /// Stamp matching: the next counter expected back.
    next_index: u32,
}

impl Client {
    /// A client whose TCP connect was just started.
    pub fn new(
        (stream, tls): (TcpStream, Option<Box<rustls::ClientConnection>>),
        ids: (u32, u32, u32),
        group: &Group,
        now_ns: u64,
    ) -> Client {
        let pending = match group.periodic.as_ref().map(|p| &p.matching) {
            Some(Matching::Order) => Pending::Order(VecDeque::new()),
            Some(Matching::Key(_)) => Pending::Keys(HashMap::new()),
            _ => Pending::None,
        };
        Client {
            stream,
            tls,
            decoder: Some(Decoder::new(Role::Client, limits())),
            handshake: None,
            phase: Phase::Connecting,
            out: Vec::new(),
            client: ids.0,
            group_client: ids.1,
            group: ids.2,
            opened_at_ns: now_ns,
            schedule: None,
            pending,
            next_index: 0,
        }
    }

    /// The TCP connect completed: queue the upgrade request with the group's headers.
    pub fn start_handshake(&mut self, target: &Target, nonce: [u8; 16], ctx: &mut Ctx<'_>) {
        let key = generate_key(nonce);
        let rendered: Vec<(String, String)> = ctx
            .group
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), value.render_string(&mut self.vars(ctx, 0, 0))))
            .collect();
        let headers: Vec<(&str, &str)> = rendered
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let protocols = ctx.group.subprotocols.join(", ");
        let protocol = (!protocols.is_empty()).then_some(protocols.as_str());
        encode_client_request(
            &mut self.out,
            &target.host,
            &target.path,
            &key,
            protocol,
            &headers,
        );
        self.handshake = Some(Box::new((Vec::with_capacity(256), accept_key(&key))));
        self.phase = Phase::Handshaking;
    }

    fn vars<'r>(&self, ctx: &'r mut Ctx<'_>, seq: u64, sent_at_ns: u64) -> Vars<'r> {
        Vars {
            client: u64::from(self.client),
            group_client: u64::from(self.group_client),
            seq,
            now_ns: ctx.now_ns,
            sent_at_ns,
            recv: None,
            rng: ctx.rng,
        }
    }

    /// Handles bytes read from the socket.
    pub fn on_bytes(&mut self, bytes: &mut [u8], ctx: &mut Ctx<'_>) -> Result<(), End> {
        if let Some(handshake) = self.handshake.as_deref_mut() {
            let (buf, accept) = handshake;
            buf.extend_from_slice(bytes);
            let head_len = match parse_response_head(buf, accept) {
                Ok(Decode::Partial) => return Ok(()),
                Ok(Decode::Complete(_, head_len)) => head_len,
                Err(e) => return Err(End::Handshake(e.kind())),
            };
            let mut rest = buf.split_off(head_len);
            self.handshake = None;
            self.phase = Phase::Opening { step: 0 };
            self.run_open_steps(0, ctx);
            return self.on_bytes(&mut rest, ctx);
        }
        let Some(mut decoder) = self.decoder.take() else {
            return Ok(());
        };
        let result = decoder
            .feed(bytes, |event| self.on_event(event, ctx))
            .map(|_| ())
            .map_err(|e| End::Protocol(e.kind()));
        self.decoder = Some(decoder);
        result
    }

    fn on_event(&mut self, event: Event<'_>, ctx: &mut Ctx<'_>) -> ControlFlow<()> {
        match event {
            Event::Text(bytes) => self.on_message(bytes, false, ctx),
            Event::Binary(bytes) => self.on_message(bytes, true, ctx),
            // This mode offers no extension, so its decoder never allows RSV1: unreachable.
            Event::CompressedText(_) | Event::CompressedBinary(_) => {}
            Event::Ping(payload) => append_pong(&mut self.out, payload),
            Event::Pong(_) => {}
            Event::Close(frame) => {
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

    /// Sends the opening steps from `step` until one awaits a reply; ready after the last.
    fn run_open_steps(&mut self, mut step: usize, ctx: &mut Ctx<'_>) {
        let steps = &ctx.group.on_open;
        while let Some(open) = steps.get(step) {
            if let Some(message) = &open.send {
                self.send_message(message, 0, None, ctx);
                ctx.counters.open_messages_total += 1;
            }
            if open.wait_for.is_some() {
                self.phase = Phase::Opening { step };
                return;
            }
            step += 1;
        }
        self.phase = Phase::Ready;
        ctx.stats.conns_ready += 1;
        ctx.stats
            .record_connect(ctx.now_ns.saturating_sub(self.opened_at_ns) / 1_000);
    }

    /// Renders `message` and queues it as one frame.
    fn send_message(&mut self, message: &Message, seq: u64, recv: Option<&Value>, ctx: &mut Ctx) {
        let mut vars = self.vars(ctx, seq, ctx.now_ns);
        vars.recv = recv;
        append_rendered(&mut self.out, message, &mut vars);
    }

    fn on_message(&mut self, bytes: &[u8], binary: bool, ctx: &mut Ctx<'_>) {
        let mut parsed: Option<Option<Value>> = None;
        if let Phase::Opening { step } = self.phase {
            let waited = ctx
                .group
                .on_open
                .get(step)
                .and_then(|s| s.wait_for.as_ref());
            if let Some(expect) = waited {
                if self.matches(expect, bytes, &mut parsed, ctx) {
                    self.run_open_steps(step + 1, ctx);
                    return;
                }
            }
        }
        // In order, a reply is any message nothing else claims: a push that `sent_at` or a
        // reaction recognises (a heartbeat, a ping) is not taken for the oldest reply.
        let in_order = matches!(
            ctx.group.periodic.as_ref().map(|p| &p.matching),
            Some(Matching::Order)
        );
        let mut handled = !in_order && self.match_reply(bytes, binary, &mut parsed, ctx);
        if let Some(extract) = &ctx.group.sent_at {
            if let Some(sent_at_ns) = extract
                .find(bytes, &mut parsed)
                .and_then(|v| v.parse().ok())
            {
                record_reply(ctx, sent_at_ns);
                handled = true;
            }
        }
        handled |= self.react(bytes, &mut parsed, ctx);
        if in_order && !handled {
            handled = self.match_reply(bytes, binary, &mut parsed, ctx);
        }
        if !handled {
            ctx.counters.unmatched_total += 1;
        }
    }

    /// Runs every reaction whose `when` matches `bytes`; returns whether any did.
    fn react(
        &mut self,
        bytes: &[u8],
        parsed: &mut Option<Option<Value>>,
        ctx: &mut Ctx<'_>,
    ) -> bool {
        let mut handled = false;
        for reaction in &ctx.group.reactions {
            if !self.matches(&reaction.when, bytes, parsed, ctx) {
                continue;
            }
            handled = true;
            if self.out.len() >= PUBLISH_QUEUE_BYTES_MAX {
                // A server that sends but does not read cannot grow the queue.
                ctx.error("reaction_skipped_queue_full");
                continue;
            }
            if reaction.send.template.uses_recv() {
                // A regex `when` leaves the message unparsed; `recv()` needs it as JSON.
                parsed.get_or_insert_with(|| serde_json::from_slice(bytes).ok());
            }
            let recv = parsed.as_ref().and_then(Option::as_ref).cloned();
            self.send_message(&reaction.send, 0, recv.as_ref(), ctx);
            ctx.counters.reactions_total += 1;
        }
        handled
    }

    fn matches(
        &self,
        expect: &Expect,
        bytes: &[u8],
        parsed: &mut Option<Option<Value>>,
        ctx: &mut Ctx<'_>,
    ) -> bool {
        let Some(found) = expect.extract.find(bytes, parsed) else {
            return false;
        };
        let mut vars = self.vars(ctx, 0, 0);
        found == expect.equals.render_string(&mut vars)
    }

    /// Closes a periodic message's measurement if `bytes` is its reply; returns whether it was.
    fn match_reply(
        &mut self,
        bytes: &[u8],
        binary: bool,
        parsed: &mut Option<Option<Value>>,
        ctx: &mut Ctx<'_>,
    ) -> bool {
        let Some(periodic) = ctx.group.periodic.as_ref() else {
            return false;
        };
        match &periodic.matching {
            Matching::Stamp => {
                let stamp = if binary {
                    scan_binary_stamp_prefix(bytes)
                } else {
                    scan_stamp_object(bytes)
                };
                match stamp {
                    Some(stamp) if stamp.publisher == self.client => {
                        self.check_order(stamp, ctx);
                        record_reply(ctx, stamp.sent_at_ns);
                        true
                    }
                    Some(_) => {
                        ctx.error("foreign_reply");
                        true
                    }
                    None => false,
                }
            }
            Matching::Order => match &mut self.pending {
                Pending::Order(queue) => match queue.pop_front() {
                    Some(sent_at_ns) => {
                        record_reply(ctx, sent_at_ns);
                        true
                    }
                    None => false,
                },
                _ => false,
            },
            Matching::Key(expect) => {
                let Some(key) = expect.extract.find(bytes, parsed) else {
                    return false;
                };
                let Pending::Keys(keys) = &mut self.pending else {
                    return false;
                };
                match keys.remove(&key) {
                    Some(sent_at_ns) => {
                        record_reply(ctx, sent_at_ns);
                        true
                    }
                    None => false,
                }
            }
            Matching::Deliveries { .. } | Matching::None => false,
        }
    }

    fn check_order(&mut self, stamp: Stamp, ctx: &mut Ctx<'_>) {
        if stamp.index >= self.next_index {
            ctx.stats.gap_messages += u64::from(stamp.index - self.next_index);
            self.next_index = stamp.index + 1;
        } else {
            ctx.stats.reordered += 1;
        }
    }

    /// Appends every periodic message due at `ctx.now_ns`; returns whether any was.
    pub fn send_due(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let Some(periodic) = ctx.group.periodic.as_ref() else {
            return false;
        };
        let Some(mut schedule) = self.schedule.take() else {
            return false;
        };
        let start_len = self.out.len();
        let expect = match periodic.matching {
            Matching::None => 0,
            Matching::Deliveries { expect } => u64::from(expect),
            _ => 1,
        };
        while let Some(due) = schedule.poll_due(ctx.now_ns) {
            if self.out.len() >= PUBLISH_QUEUE_BYTES_MAX || self.pending_full() {
                ctx.stats.publish_skipped += 1;
                continue;
            }
            self.append_periodic(
                &periodic.payload,
                &periodic.matching,
                due.index,
                due.scheduled_ns,
                ctx,
            );
            count_send(ctx, expect, due.scheduled_ns);
        }
        self.schedule = Some(schedule);
        self.out.len() > start_len
    }

    fn pending_full(&self) -> bool {
        match &self.pending {
            Pending::None => false,
            Pending::Order(queue) => queue.len() >= PENDING_MAX,
            Pending::Keys(keys) => keys.len() >= PENDING_MAX,
        }
    }

    fn append_periodic(
        &mut self,
        payload: &Payload,
        matching: &Matching,
        index: u32,
        scheduled_ns: u64,
        ctx: &mut Ctx<'_>,
    ) {
        match (payload, ctx.stamped, ctx.fixed) {
            (Payload::Stamped { .. }, Some(template), _) => {
                let stamp = Stamp {
                    sent_at_ns: scheduled_ns,
                    publisher: self.client,
                    index,
                };
                template.append(&mut self.out, stamp);
            }
            (Payload::Fixed { .. }, _, Some(frame)) => self.out.extend_from_slice(frame),
            (Payload::Template(message), _, _) => {
                let mut vars = self.vars(ctx, u64::from(index), scheduled_ns);
                append_rendered(&mut self.out, message, &mut vars);
            }
            _ => return,
        }
        match (matching, &mut self.pending) {
            (Matching::Order, Pending::Order(queue)) => queue.push_back(scheduled_ns),
            (Matching::Key(expect), Pending::Keys(_)) => {
                let mut vars = self.vars(ctx, u64::from(index), scheduled_ns);
                let key = expect.equals.render_string(&mut vars);
                if let Pending::Keys(keys) = &mut self.pending {
                    if keys.insert(key, scheduled_ns).is_some() {
                        ctx.error("duplicate_reply_key");
                    }
                }
            }
            _ => {}
        }
    }

    /// Queues a close frame and waits for the server's until `deadline_ns`.
    pub fn start_close(&mut self, deadline_ns: u64) {
        append_close(&mut self.out, 1000);
        self.phase = Phase::Closing { deadline_ns };
        self.schedule = None;
    }

    /// Something is waiting to be written: queued bytes, or TLS records.
    pub fn wants_write(&self) -> bool {
        !self.out.is_empty() || self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Writes queued bytes until done or the socket is full.
    pub fn flush(&mut self) -> io::Result<()> {
        if let Some(tls) = self.tls.as_mut() {
            return crate::conn::flush_tls(tls, &mut self.stream, &mut self.out);
        }
        let mut written = 0;
        while written < self.out.len() {
            match self.stream.write(&self.out[written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.drain(..written);
        Ok(())
    }
}

/// Renders `message` and appends it as one masked frame.
fn append_rendered(out: &mut Vec<u8>, message: &Message, vars: &mut Vars<'_>) {
    let mut text = String::new();
    message.template.render(&mut text, vars);
    let opcode = if message.binary {
        OpCode::Binary
    } else {
        OpCode::Text
    };
    encode_client_frame(out, true, opcode, text.as_bytes(), FIXED_TEST_MASK);
}

fn limits() -> DecoderLimits {
    DecoderLimits {
        message_bytes_max: MESSAGE_BYTES_MAX,
    }
}

/// Counts a reply to a message scheduled at `sent_at_ns`.
#[inline]
fn record_reply(ctx: &mut Ctx<'_>, sent_at_ns: u64) {
    let stats = &mut *ctx.stats;
    let latency_ns = ctx.now_ns.saturating_sub(sent_at_ns);
    stats.received_total += 1;
    if ctx.window.contains(ctx.now_ns) {
        stats.received_during_window += 1;
    }
    if ctx.window.contains(sent_at_ns) {
        stats.received_window += 1;
        stats.record_latency(latency_ns);
    }
    ctx.series.received(ctx.now_ns, latency_ns);
}

/// Counts a send due `expect` replies.
#[inline]
fn count_send(ctx: &mut Ctx<'_>, expect: u64, scheduled_ns: u64) {
    let stats = &mut *ctx.stats;
    stats.sent_total += 1;
    stats.due_total += expect;
    ctx.series.sent(ctx.now_ns);
    if ctx.window.contains(scheduled_ns) {
        stats.sent_window += 1;
        stats.due_window += expect;
        stats.record_send_lag(ctx.now_ns.saturating_sub(scheduled_ns));
    }
}
