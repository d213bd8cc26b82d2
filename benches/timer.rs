//! Timing-wheel costs for the heartbeat workload: 100,000 idle connections, each with one
//! heartbeat timer re-armed 30 s ahead whenever it fires, on the default wheel (10 ms ticks,
//! 4096 slots).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;
use wsrelay::timer::{TimerWheel, DEFAULT_SLOTS, DEFAULT_TICK_NS};

const CONNECTIONS_TOTAL: u64 = 100_000;
const HEARTBEAT_PERIOD_NS: u64 = 30_000_000_000;
const TICKS_PER_PERIOD: u64 = HEARTBEAT_PERIOD_NS / DEFAULT_TICK_NS;

/// A wheel holding one heartbeat per connection, deadlines spread evenly over one period.
fn heartbeat_wheel() -> TimerWheel<u64> {
    let mut wheel = TimerWheel::new(DEFAULT_TICK_NS, DEFAULT_SLOTS, 0);
    let spacing_ns = HEARTBEAT_PERIOD_NS / CONNECTIONS_TOTAL;
    for token in 0..CONNECTIONS_TOTAL {
        wheel.insert((token + 1) * spacing_ns, token);
    }
    wheel
}

/// One event-loop tick: expire what is due and re-arm each fired heartbeat.
fn heartbeat_tick(wheel: &mut TimerWheel<u64>, now_ns: u64, fired: &mut Vec<u64>) -> usize {
    let fired_total = wheel.expire(now_ns, fired);
    for token in fired.drain(..) {
        wheel.insert(now_ns + HEARTBEAT_PERIOD_NS, token);
    }
    fired_total
}

fn bench_insert_cancel(c: &mut Criterion) {
    let mut wheel = heartbeat_wheel();
    let mut deadline_ns = HEARTBEAT_PERIOD_NS;
    c.bench_function("insert+cancel pair (100k armed)", |b| {
        b.iter(|| {
            deadline_ns += 7_919;
            let key = wheel.insert(black_box(deadline_ns), 1);
            black_box(wheel.cancel(key))
        })
    });
}

fn bench_reset(c: &mut Criterion) {
    let mut wheel = heartbeat_wheel();
    let mut key = wheel.insert(HEARTBEAT_PERIOD_NS, u64::MAX);
    let mut deadline_ns = HEARTBEAT_PERIOD_NS;
    c.bench_function("reset (100k armed)", |b| {
        b.iter(|| {
            deadline_ns += 7_919;
            key = wheel.reset(key, black_box(deadline_ns)).unwrap_or(key);
        })
    });
}

fn bench_one_tick(c: &mut Criterion) {
    let mut wheel = heartbeat_wheel();
    let mut fired = Vec::with_capacity(1024);
    let mut now_ns = 0;
    let mut group = c.benchmark_group("heartbeat 100k");
    // 100,000 timers over 3,000 ticks: 33.3 fired per tick on average.
    group.bench_function("one expire tick with re-arm (~33 fired)", |b| {
        b.iter(|| {
            now_ns += DEFAULT_TICK_NS;
            black_box(heartbeat_tick(&mut wheel, now_ns, &mut fired))
        })
    });
    group.bench_function("one expire call inside a tick, nothing due", |b| {
        b.iter(|| black_box(wheel.expire(black_box(now_ns), &mut fired)))
    });
    group.bench_function("next_deadline_ns", |b| {
        b.iter(|| black_box(wheel.next_deadline_ns()))
    });
    group.finish();
}

fn bench_full_period(c: &mut Criterion) {
    let mut group = c.benchmark_group("heartbeat 100k period");
    group.sample_size(10);
    // One iteration = 3,000 ticks = every timer fired and re-armed exactly once, so the
    // per-element figure is the cost per fired heartbeat including its re-arm.
    group.throughput(Throughput::Elements(CONNECTIONS_TOTAL));
    group.bench_function("30 s of ticks (per timer fired)", |b| {
        b.iter_batched_ref(
            heartbeat_wheel,
            |wheel| {
                let mut fired = Vec::with_capacity(1024);
                let mut fired_total = 0;
                for tick in 1..=TICKS_PER_PERIOD {
                    fired_total += heartbeat_tick(wheel, tick * DEFAULT_TICK_NS, &mut fired);
                }
                assert_eq!(fired_total as u64, CONNECTIONS_TOTAL);
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_insert_cancel,
    bench_reset,
    bench_one_tick,
    bench_full_period
);
criterion_main!(benches);
