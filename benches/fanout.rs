//! Cost of the fan-out step: one encoded frame queued to N subscribers' outboxes (what the loop
//! does per publish and per local subscriber, before any syscall), and of draining the
//! outboxes as `writev` would (gather + advance), per delivery.
//!
//! Run: `cargo bench --bench fanout`
//!
//! Instruction counts (deterministic, unlike criterion's timed loop): with
//! `WSRELAY_BENCH_FIXED=1` the binary runs the fixed workloads of `fixed` once instead of
//! criterion; run it under `valgrind --tool=callgrind` and read each `fixed::*` function's
//! inclusive cost (docs/BENCHMARKS.md, "Instruction counts").

use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use indexmap::IndexSet;
use slab::Slab;
use std::io::IoSlice;
use wsrelay::hash::FxBuild;
use wsrelay::outbox::{Outbox, IO_SLICES_MAX};
use wsrelay::proto::frame::{FrameBuilder, OpCode};

fn frame() -> bytes::Bytes {
    let mut f = FrameBuilder::new(OpCode::Text, 160);
    f.extend_from_slice(br#"{"type":"message","channel":"md.BTC-USD","content":{"px":101.5,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"},"from":"0-1-1","seq":123456}"#);
    f.finish().into_bytes()
}

/// The subscriber set as the loop keeps it, by slab key (the relay's `ConnId` adds a
/// generation the table checks; its hashing costs the same).
fn subscribers(n: u32) -> (Slab<Outbox>, IndexSet<(u32, u32), FxBuild>) {
    let mut slab = Slab::new();
    let mut set = IndexSet::default();
    for _ in 0..n {
        let slot = slab.insert(Outbox::new(4 << 20, 64 << 10)) as u32;
        set.insert((slot, 1));
    }
    (slab, set)
}

fn queue_to_n(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout_queue");
    for n in [1_000u32, 10_000] {
        g.throughput(Throughput::Elements(u64::from(n)));
        g.bench_function(format!("{n}_subscribers"), |b| {
            let f = frame();
            b.iter_batched_ref(
                || subscribers(n),
                |(slab, set)| {
                    for id in set.iter() {
                        if let Some(o) = slab.get_mut(id.0 as usize) {
                            o.push_data(f.clone(), 1);
                        }
                    }
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

fn drain_per_delivery(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout_drain");
    let frames_per_conn = 16;
    g.throughput(Throughput::Elements(1_000 * frames_per_conn));
    g.bench_function("1000x16_gather_advance", |b| {
        let f = frame();
        b.iter_batched_ref(
            || {
                let (mut slab, set) = subscribers(1_000);
                for id in set.iter() {
                    for _ in 0..frames_per_conn {
                        slab[id.0 as usize].push_data(f.clone(), 1);
                    }
                }
                slab
            },
            |slab| {
                for (_, o) in slab.iter_mut() {
                    let mut slices = [IoSlice::new(&[]); IO_SLICES_MAX];
                    let n = o.io_slices(&mut slices);
                    let total: usize = slices[..n].iter().map(|s| s.len()).sum();
                    o.advance(total, &mut |_, _, _| {});
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// Fixed workloads for callgrind: each `#[inline(never)]` function is one measured step, and
/// its inclusive instruction count divided by its operation count is the cost per operation.
mod fixed {
    use super::*;

    /// Subscribers of the fixed workloads.
    const CONNS: u32 = 1_000;
    /// Publishes per measured round.
    const ROUNDS: usize = 100;

    pub fn run() {
        let f = frame();
        let (mut slab, set) = subscribers(CONNS);
        first_push_per_conn(&mut slab, &set, &f);
        drain_all(&mut slab);
        for _ in 0..ROUNDS {
            queue_1000(&mut slab, &set, &f);
            drain_1000(&mut slab);
        }
        release_idle_1000(&mut slab);
        std::hint::black_box(&slab);
    }

    /// 1,000 pushes into outboxes that never held anything (allocation included).
    #[inline(never)]
    fn first_push_per_conn(
        slab: &mut Slab<Outbox>,
        set: &IndexSet<(u32, u32), FxBuild>,
        f: &bytes::Bytes,
    ) {
        queue(slab, set, f);
    }

    /// 1,000 pushes into outboxes that are in use (the steady fan-out step).
    #[inline(never)]
    fn queue_1000(slab: &mut Slab<Outbox>, set: &IndexSet<(u32, u32), FxBuild>, f: &bytes::Bytes) {
        queue(slab, set, f);
    }

    fn queue(slab: &mut Slab<Outbox>, set: &IndexSet<(u32, u32), FxBuild>, f: &bytes::Bytes) {
        for id in set.iter() {
            if let Some(o) = slab.get_mut(id.0 as usize) {
                o.push_data(f.clone(), 1);
            }
        }
    }

    /// 1,000 gathers + advances of one frame each (what a flush does around `writev`).
    #[inline(never)]
    fn drain_1000(slab: &mut Slab<Outbox>) {
        drain_all(slab);
    }

    fn drain_all(slab: &mut Slab<Outbox>) {
        for (_, o) in slab.iter_mut() {
            let mut slices = [IoSlice::new(&[]); IO_SLICES_MAX];
            let n = o.io_slices(&mut slices);
            let total: usize = slices[..n].iter().map(|s| s.len()).sum();
            o.advance(total, &mut |_, _, _| {});
        }
    }

    /// 1,000 `release_idle` calls on drained outboxes.
    #[inline(never)]
    fn release_idle_1000(slab: &mut Slab<Outbox>) {
        for (_, o) in slab.iter_mut() {
            o.release_idle();
        }
    }
}

criterion_group!(benches, queue_to_n, drain_per_delivery);

fn main() {
    if std::env::var_os("WSRELAY_BENCH_FIXED").is_some() {
        fixed::run();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
