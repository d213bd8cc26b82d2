//! Throughput of the RFC 6455 codec hot paths: decoding small masked text frames, encoding
//! server frames, masking and UTF-8 validation.
//!
//! Instruction counts: with `WSRELAY_BENCH_FIXED=1` the binary runs the fixed decode
//! workloads of `fixed` once instead of criterion, for `valgrind --tool=callgrind`
//! (docs/BENCHMARKS.md, "Instruction counts").

use std::hint::black_box;
use std::ops::ControlFlow;

use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use wsrelay::proto::decoder::{Decoder, DecoderLimits, Event, Role};
use wsrelay::proto::frame::{
    encode_client_frame, encode_server_frame, FrameBuilder, OpCode, PreparedFrame,
};
use wsrelay::proto::mask::apply_mask;
use wsrelay::proto::utf8::Utf8Validator;

/// Frames per decode iteration.
const FRAMES_PER_BATCH: usize = 1000;
/// Payload of each benchmarked frame, in bytes.
const PAYLOAD_BYTES: usize = 100;

fn json_payload() -> Vec<u8> {
    let mut payload =
        br#"{"op":"publish","topic":"prices.eu","data":{"bid":101.25,"ask":101.5}}"#.to_vec();
    payload.resize(PAYLOAD_BYTES, b' ');
    payload
}

fn stream(role: Role, opcode: OpCode) -> Vec<u8> {
    let payload = json_payload();
    let mut wire = Vec::new();
    for i in 0..FRAMES_PER_BATCH {
        let key = (i as u32).to_le_bytes();
        match role {
            Role::Server => encode_client_frame(&mut wire, true, opcode, &payload, key),
            Role::Client => encode_server_frame(&mut wire, true, opcode, &payload),
        }
    }
    wire
}

fn bench_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(FRAMES_PER_BATCH as u64));
    let cases = [
        ("server_masked_text_100B_x1000", Role::Server, OpCode::Text),
        (
            "server_masked_binary_100B_x1000",
            Role::Server,
            OpCode::Binary,
        ),
        (
            "client_unmasked_text_100B_x1000",
            Role::Client,
            OpCode::Text,
        ),
    ];
    for (name, role, opcode) in cases {
        let wire = stream(role, opcode);
        let mut decoder = Decoder::new(
            role,
            DecoderLimits {
                message_bytes_max: 1 << 20,
            },
        );
        group.bench_function(name, |b| {
            b.iter_batched_ref(
                || wire.clone(),
                |input| decode_batch(&mut decoder, input),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

fn decode_batch(decoder: &mut Decoder, input: &mut [u8]) -> usize {
    let mut bytes_total = 0;
    let result = decoder.feed(input, |event| {
        if let Event::Text(payload) | Event::Binary(payload) = event {
            bytes_total += payload.len();
        }
        ControlFlow::Continue(())
    });
    black_box(result).ok();
    bytes_total
}

fn bench_encode(c: &mut Criterion) {
    let payload = json_payload();
    let mut group = c.benchmark_group("encode");
    group.bench_function("frame_builder_100B", |b| {
        b.iter(|| {
            let mut builder = FrameBuilder::new(OpCode::Text, PAYLOAD_BYTES);
            builder.extend_from_slice(black_box(&payload));
            black_box(builder.finish())
        })
    });
    group.bench_function("prepared_frame_new_100B", |b| {
        b.iter(|| black_box(PreparedFrame::new(OpCode::Text, black_box(&payload))))
    });
    let shared = PreparedFrame::new(OpCode::Text, &payload);
    group.bench_function("prepared_frame_clone", |b| {
        b.iter(|| black_box(shared.clone()))
    });
    group.finish();
}

fn bench_mask(c: &mut Criterion) {
    let mut group = c.benchmark_group("mask");
    for bytes_len in [1024usize, 64 * 1024] {
        let mut buf = vec![0x5Au8; bytes_len];
        group.throughput(Throughput::Bytes(bytes_len as u64));
        group.bench_function(format!("apply_mask_{}KiB", bytes_len / 1024), |b| {
            b.iter(|| apply_mask(black_box(&mut buf), [1, 2, 3, 4], 1))
        });
    }
    group.finish();
}

fn bench_utf8(c: &mut Criterion) {
    let ascii = json_payload().repeat(10);
    let mixed = "κόσμε prices €uro 日本語 ".repeat(40).into_bytes();
    let mut group = c.benchmark_group("utf8");
    for (name, text) in [("ascii_1000B", &ascii), ("mixed_1200B", &mixed)] {
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(format!("validator_{name}"), |b| {
            b.iter(|| {
                let mut validator = Utf8Validator::new();
                black_box(
                    validator
                        .feed(black_box(text))
                        .and_then(|()| validator.finish()),
                )
            })
        });
        group.bench_function(format!("std_from_utf8_{name}"), |b| {
            b.iter(|| black_box(std::str::from_utf8(black_box(text)).is_ok()))
        });
        group.bench_function(format!("simdutf8_basic_{name}"), |b| {
            b.iter(|| black_box(simdutf8::basic::from_utf8(black_box(text)).is_ok()))
        });
    }
    group.finish();
}

/// Fixed workloads for callgrind: each `#[inline(never)]` function decodes 1,000 frames; its
/// inclusive instruction count / 1,000 is the cost per frame.
mod fixed {
    use super::*;

    /// Batches per measured function.
    const BATCHES: usize = 10;

    pub fn run() {
        let wire = stream(Role::Server, OpCode::Text);
        let mut decoder = Decoder::new(
            Role::Server,
            DecoderLimits {
                message_bytes_max: 1 << 20,
            },
        );
        for _ in 0..BATCHES {
            whole_feeds_1000(&mut decoder, &mut wire.clone());
        }
        let frame_len = wire.len() / FRAMES_PER_BATCH;
        for _ in 0..BATCHES {
            split_feeds_1000(&mut decoder, &wire, frame_len);
        }
    }

    /// 1,000 masked 100-byte text frames in one feed (the zero-copy path).
    #[inline(never)]
    fn whole_feeds_1000(decoder: &mut Decoder, input: &mut [u8]) {
        black_box(decode_batch(decoder, input));
    }

    /// The same 1,000 frames, each fed in two pieces cut inside its payload (the buffered
    /// path: header parsed, payload copied across feeds). Includes the copies of the pieces.
    #[inline(never)]
    fn split_feeds_1000(decoder: &mut Decoder, wire: &[u8], frame_len: usize) {
        let mut piece = Vec::with_capacity(frame_len);
        for frame in wire.chunks(frame_len) {
            let (head, tail) = frame.split_at(frame_len / 2);
            for part in [head, tail] {
                piece.clear();
                piece.extend_from_slice(part);
                black_box(decode_batch(decoder, &mut piece));
            }
        }
    }
}

criterion_group!(benches, bench_decode, bench_encode, bench_mask, bench_utf8);

fn main() {
    if std::env::var_os("WSRELAY_BENCH_FIXED").is_some() {
        fixed::run();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
