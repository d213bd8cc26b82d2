//! permessage-deflate on the loop (RFC 7692): the negotiation at the upgrade, handing
//! compressed messages to the session to inflate (`session/inflate.rs` decides which context
//! reads them and maps failures to close codes; the loop lends its shared inflater and buffer,
//! `session::LoopInflate`, and counts), and the compressed copies of runs.
//!
//! Owns: each connection's agreement ([`ConnDeflate`], boxed in `Conn`, `None` when not
//! negotiated, with its own contexts under context takeover), the loop's shared compressor
//! ([`LoopDeflate`]: one without context takeover, one scratch buffer), and the compressed
//! variants of a `Batch` ([`CompressedVariants`]).
//!
//! Invariants:
//! - With `--deflate` off nothing here runs: no connection has a `ConnDeflate`, the delivery
//!   loop's only extra work is one `is_some()` per subscriber, and no batch variant is built.
//! - Shared mode compresses a run once per server window (8-15 bits) for the whole process:
//!   the first loop that delivers it to a compressed subscriber builds the variant and stores
//!   it in the batch (`OnceLock::set`, never waiting for another loop; two loops racing both
//!   compress and one copy is kept). Counted in `wsrelay_deflate_compressions_total{mode="shared"}`.
//! - Context takeover: a connection with its own compressor only compresses a message that
//!   will be queued (its outbox has room), so every compressed message reaches the client in
//!   order and both dictionaries stay in step; conflated deliveries go uncompressed.
//! - Own contexts are bounded process-wide by `--deflate-max-contexts`, reserved at the
//!   upgrade and released when the connection is dropped ([`ContextSlot`]).

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use crate::metrics::Counter;
use crate::proto::deflate::{self, Deflater, Inflater};
use crate::proto::error::HandshakeError;
use crate::proto::extensions::{self, DeflateParams, ServerPolicy, WINDOW_BITS_MIN};
use crate::proto::forwarded::FIELDS_MAX;
use crate::proto::frame::OpCode;
use crate::proto::handshake::RequestHead;
use crate::runtime::event_loop::EventLoop;
use crate::session::InflateFailure;

/// Capacity of a compression scratch buffer kept between messages.
const SCRATCH_RETAIN_BYTES_MAX: usize = 64 * 1024;
/// Server windows with a variant of their own (8..=15 bits).
const WINDOWS: usize = 8;

/// One reserved own-context slot of `--deflate-max-contexts`, released on drop.
#[derive(Debug)]
pub struct ContextSlot(Arc<AtomicUsize>);

impl Drop for ContextSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's own contexts (context takeover).
#[derive(Debug)]
pub struct OwnContexts {
    /// Compresses this connection's messages, keeping the dictionary between them.
    pub deflater: Deflater,
    /// Inflates the client's messages when the client keeps its context (otherwise the
    /// loop's inflater, reset per message, reads them).
    pub inflater: Option<Inflater>,
    _slot: ContextSlot,
}

/// What a connection agreed to.
#[derive(Debug)]
pub struct ConnDeflate {
    /// The parameters answered.
    pub params: DeflateParams,
    /// Own contexts when the server keeps its context; `None`: shared mode.
    pub own: Option<OwnContexts>,
}

/// The loop's compressor, made on first use (its inflater is the session's tool,
/// `session::LoopInflate`).
#[derive(Debug, Default)]
pub struct LoopDeflate {
    deflater: Option<Box<Deflater>>,
    /// Compressed bytes of one message.
    scratch: Vec<u8>,
}

/// A run re-encoded with its messages compressed (those of at least `--deflate-min-size`).
#[derive(Debug)]
pub struct CompressedRun {
    /// The frames, back to back.
    pub bytes: Bytes,
    /// Offset and length of each frame in `bytes`, in the run's order.
    pub frames: Vec<(u32, u32)>,
}

impl CompressedRun {
    /// Frame `i` alone (a slice, not a copy).
    pub fn frame_bytes(&self, i: usize) -> Bytes {
        match self.frames.get(i) {
            Some(&(start, len)) => self
                .bytes
                .slice(start as usize..start as usize + len as usize),
            None => Bytes::new(),
        }
    }
}

/// The compressed copies of one run, built on demand, one per server window.
#[derive(Debug, Default)]
pub struct CompressedVariants {
    by_window: [OnceLock<Arc<CompressedRun>>; WINDOWS],
}

/// The variant index for a server window of `bits`: windows at least as large as the run's
/// largest frame give the same bytes as 15 bits, so they share its variant.
pub fn variant_index(bits: u8, largest_frame: usize) -> usize {
    let window = 1usize << bits;
    let bits = if window >= largest_frame { 15 } else { bits };
    usize::from(bits.saturating_sub(WINDOW_BITS_MIN)).min(WINDOWS - 1)
}

impl EventLoop {
    /// Answers a permessage-deflate offer at the upgrade: `Ok(None)` when compression is off,
    /// not offered or declined; `Err` (400) when the header is malformed (RFC 6455 §9.1).
    pub(super) fn negotiate_deflate(
        &mut self,
        head: &RequestHead<'_>,
    ) -> Result<Option<(Box<ConnDeflate>, String)>, HandshakeError> {
        if !self.env.config.deflate_enabled || head.ws_extensions.is_empty() {
            return Ok(None);
        }
        if usize::from(head.ws_extension_fields) > FIELDS_MAX {
            return Err(HandshakeError::MalformedExtensions);
        }
        let counter = &self.env.shared.deflate_contexts;
        let max = self.env.config.deflate_contexts_max;
        let policy = ServerPolicy {
            takeover_available: counter.load(Ordering::Acquire) < max,
        };
        let fields = head.ws_extensions.as_slice();
        let Some(mut params) = extensions::negotiate_server(fields, policy)
            .map_err(|_| HandshakeError::MalformedExtensions)?
        else {
            self.metrics.inc(Counter::DeflateDeclined);
            return Ok(None);
        };
        let mut own = None;
        if !params.server_no_context_takeover {
            match reserve_slot(counter, max) {
                Some(slot) => {
                    own = Some(OwnContexts {
                        deflater: Deflater::new(true),
                        inflater: (!params.client_no_context_takeover).then(Inflater::new),
                        _slot: slot,
                    })
                }
                // Another loop took the last one meanwhile: answered without takeover.
                None => {
                    params.server_no_context_takeover = true;
                    params.client_no_context_takeover = true;
                }
            }
        }
        self.metrics.inc(match own {
            Some(_) => Counter::DeflateTakeover,
            None => Counter::DeflateShared,
        });
        let mut answer = String::with_capacity(96);
        extensions::encode_response(&mut answer, &params);
        Ok(Some((Box::new(ConnDeflate { params, own }), answer)))
    }

    /// A compressed message from `id`: the session inflates it (`session/inflate.rs`: with
    /// the connection's own inflater when the client keeps its context, else the loop's;
    /// bounded by `--max-message-size`: 1009 beyond; a bad stream: 1007; text checked as
    /// UTF-8: 1007), then it is handled as if it had come uncompressed. `Break` when the
    /// connection was failed.
    pub(super) fn inflate_message(
        &mut self,
        id: crate::conn_id::ConnId,
        payload: &[u8],
        opcode: OpCode,
    ) -> ControlFlow<()> {
        let max = self.env.config.message_bytes_max;
        let Some(conn) = self.conns.get_mut(id) else {
            return ControlFlow::Break(());
        };
        let mut tools = std::mem::take(&mut self.scratch.inflate);
        let own = conn.deflate.as_mut().and_then(|d| d.own.as_mut());
        let own = own.and_then(|own| own.inflater.as_mut());
        let inflated = conn.session.inflate(opcode, payload, own, &mut tools, max);
        let flow = match inflated {
            Ok(message) => {
                self.metrics.inc(Counter::InflateOk);
                self.on_data_message(id, opcode, message);
                ControlFlow::Continue(())
            }
            Err(failure) => {
                self.metrics.inc(match failure {
                    InflateFailure::TooBig => Counter::InflateTooBig,
                    InflateFailure::BadData => Counter::InflateBadData,
                    InflateFailure::BadText => Counter::InflateOk,
                });
                self.on_protocol_error(id, failure.error());
                ControlFlow::Break(())
            }
        };
        tools.recycle();
        self.scratch.inflate = tools;
        flow
    }

    /// The echo of `payload` for a connection with compression: compressed when at least
    /// `--deflate-min-size` (with its own context, or the loop's), plain otherwise.
    pub(super) fn echo_frame(
        &mut self,
        id: crate::conn_id::ConnId,
        opcode: OpCode,
        payload: &[u8],
    ) -> Option<Bytes> {
        if payload.len() < self.env.config.deflate_min_bytes {
            return None;
        }
        let conn = self.conns.get_mut(id)?;
        let agreed = conn.deflate.as_mut()?;
        let bits = agreed.params.server_window_bits();
        let mut scratch = std::mem::take(&mut self.scratch.deflate.scratch);
        let mut out = Vec::with_capacity(payload.len() / 2 + 16);
        let deflater = match agreed.own.as_mut() {
            Some(own) => &mut own.deflater,
            None => self
                .scratch
                .deflate
                .deflater
                .get_or_insert_with(|| Box::new(Deflater::new(false))),
        };
        deflate::encode_compressed_frame(deflater, opcode, payload, bits, &mut scratch, &mut out);
        self.scratch.deflate.scratch = trimmed(scratch);
        self.metrics.inc(Counter::DeflateCompressedConn);
        Some(Bytes::from(out))
    }

    /// The shared compressed copy of `batch` for a server window of `bits`, built now if no
    /// loop has built it yet.
    pub(super) fn shared_variant(
        &mut self,
        batch: &crate::runtime::deliver::Batch,
        index: usize,
    ) -> Arc<CompressedRun> {
        let bits = WINDOW_BITS_MIN + index as u8;
        let Some(slot) = batch.compressed.by_window.get(index) else {
            return Arc::new(CompressedRun {
                bytes: batch.bytes.clone(),
                frames: Vec::new(),
            });
        };
        if let Some(run) = slot.get() {
            return run.clone();
        }
        let (run, compressed) = self.compress_run(batch, bits);
        self.metrics
            .add(Counter::DeflateCompressedShared, compressed);
        let run = Arc::new(run);
        // A loop that set it meanwhile wins; ours is dropped (both are correct).
        let _ = slot.set(run.clone());
        slot.get().cloned().unwrap_or(run)
    }

    /// Re-encodes every frame of `batch`, compressing those of at least the minimum size.
    fn compress_run(
        &mut self,
        batch: &crate::runtime::deliver::Batch,
        bits: u8,
    ) -> (CompressedRun, u64) {
        let min = self.env.config.deflate_min_bytes;
        let deflater = self
            .scratch
            .deflate
            .deflater
            .get_or_insert_with(|| Box::new(Deflater::new(false)));
        let mut scratch = std::mem::take(&mut self.scratch.deflate.scratch);
        let mut out = Vec::with_capacity(batch.bytes.len() / 2 + 16);
        let mut frames = Vec::with_capacity(batch.frames.len());
        let mut compressed = 0;
        for i in 0..batch.frames.len() {
            let start = out.len();
            let frame = batch.frame_bytes(i);
            match deflate::server_frame_parts(&frame) {
                Some((b0, payload)) if payload.len() >= min => {
                    let opcode = OpCode::from_u8(b0 & 0x0f).unwrap_or(OpCode::Binary);
                    deflate::encode_compressed_frame(
                        deflater,
                        opcode,
                        payload,
                        bits,
                        &mut scratch,
                        &mut out,
                    );
                    compressed += 1;
                }
                _ => out.extend_from_slice(&frame),
            }
            frames.push((start as u32, (out.len() - start) as u32));
        }
        self.scratch.deflate.scratch = trimmed(scratch);
        let run = CompressedRun {
            bytes: Bytes::from(out),
            frames,
        };
        (run, compressed)
    }
}

/// `buf`, emptied, or a fresh one if a large message made it grow past
/// `SCRATCH_RETAIN_BYTES_MAX` (scratch buffers do not keep a large message's memory).
pub fn trimmed(mut buf: Vec<u8>) -> Vec<u8> {
    buf.clear();
    match buf.capacity() > SCRATCH_RETAIN_BYTES_MAX {
        true => Vec::new(),
        false => buf,
    }
}

/// Takes one own-context slot if fewer than `max` are taken.
fn reserve_slot(counter: &Arc<AtomicUsize>, max: usize) -> Option<ContextSlot> {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()
        .map(|_| ContextSlot(counter.clone()))
}

/// Compresses frame `frame` (a complete plain server frame) with a connection's own context;
/// a frame below `min` payload bytes is returned as it is.
pub fn compress_own(
    deflater: &mut Deflater,
    frame: Bytes,
    bits: u8,
    min: usize,
    scratch: &mut Vec<u8>,
) -> (Bytes, bool) {
    match deflate::server_frame_parts(&frame) {
        Some((b0, payload)) if payload.len() >= min => {
            let opcode = OpCode::from_u8(b0 & 0x0f).unwrap_or(OpCode::Binary);
            let mut out = Vec::with_capacity(payload.len() / 2 + 16);
            deflate::encode_compressed_frame(deflater, opcode, payload, bits, scratch, &mut out);
            (Bytes::from(out), true)
        }
        _ => (frame, false),
    }
}
