//! Cost of metrics recording and export.
//!
//! - `hot_path/deliver`: per delivery, `inc(MessagesDelivered)` + `record_relay_latency_ns`
//!   (latencies spread over 1 us .. 1 ms so different buckets are touched).
//! - `snapshot/*`: one loop's snapshot (counter copy + histogram swap) with freshly allocated
//!   or recycled empty histograms; dropping the snapshot is excluded.
//! - `absorb`: merging one snapshot with a full interval into the exporter.
//! - `render/*`: full Prometheus and JSON renders for 2 loops with data.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;
use wsrelay::metrics::{Counter, Exporter, Gauges, LatencySet, LoopMetrics};

/// Deterministic latencies in 1 us .. ~1 ms (xorshift, no RNG dependency).
fn latencies_ns(n: usize) -> Vec<u64> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            1_000 + state % 1_000_000
        })
        .collect()
}

fn loaded_loop(loop_id: usize) -> LoopMetrics {
    let mut m = LoopMetrics::new(loop_id);
    for &ns in &latencies_ns(10_000) {
        m.inc(Counter::MessagesDelivered);
        m.record_relay_latency_ns(ns);
        m.record_cross_loop_latency_ns(ns / 2);
    }
    m.record_heartbeat_rtt_ns(80_000);
    m.close_sent(1000);
    m.protocol_error("invalid_utf8");
    m.command_error("invalid_json");
    m.set_gauges(Gauges {
        connections_open: 1000,
        channels: 50,
        subscriptions: 5000,
        outbox_bytes: 1 << 20,
        mesh_inbox_depth: 3,
    });
    m
}

fn bench_hot_path(c: &mut Criterion) {
    let samples = latencies_ns(4096);
    let mut m = LoopMetrics::new(0);
    let mut group = c.benchmark_group("hot_path");
    group.throughput(Throughput::Elements(1));
    group.bench_function("deliver", |b| {
        let mut i = 0usize;
        b.iter(|| {
            let ns = samples[i & 4095];
            i = i.wrapping_add(1);
            m.inc(black_box(Counter::MessagesDelivered));
            m.record_relay_latency_ns(black_box(ns));
        })
    });
    group.bench_function("inc_only", |b| {
        b.iter(|| m.inc(black_box(Counter::MessagesDelivered)))
    });
    group.finish();
}

fn bench_snapshot(c: &mut Criterion) {
    let mut m = loaded_loop(0);
    let mut group = c.benchmark_group("snapshot");
    group.bench_function("fresh_alloc", |b| b.iter_with_large_drop(|| m.snapshot()));
    // With `spawn_exporter_recycling`: the loop installs a set the exporter already emptied.
    group.bench_function("recycled", |b| {
        b.iter_batched(
            LatencySet::new,
            |emptied| {
                m.recycle(emptied);
                m.snapshot()
            },
            BatchSize::NumIterations(8),
        )
    });
    group.finish();
}

fn bench_absorb(c: &mut Criterion) {
    let mut exporter = Exporter::new(1);
    let mut m = loaded_loop(0);
    let template = m.snapshot();
    c.bench_function("absorb", |b| {
        b.iter_batched(
            || template.clone(),
            |snap| exporter.absorb(snap),
            BatchSize::LargeInput,
        )
    });
}

fn bench_render(c: &mut Criterion) {
    let mut exporter = Exporter::new(2);
    for loop_id in 0..2 {
        exporter.absorb(loaded_loop(loop_id).snapshot());
    }
    let mut out = String::with_capacity(16 * 1024);
    let mut group = c.benchmark_group("render");
    group.bench_function("prometheus_2_loops", |b| {
        b.iter(|| {
            out.clear();
            exporter.render_prometheus(&mut out);
            black_box(out.len())
        })
    });
    group.bench_function("stats_json_2_loops", |b| {
        b.iter(|| {
            out.clear();
            exporter.render_stats_json(&mut out);
            black_box(out.len())
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = bench_hot_path, bench_snapshot, bench_absorb, bench_render
}
criterion_main!(benches);
