//! Unit tests of `timer`.

use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

const TICK_NS: u64 = 10;
const SLOTS: usize = 8;
const REVOLUTION_NS: u64 = TICK_NS * SLOTS as u64;

fn wheel() -> TimerWheel<u32> {
    TimerWheel::new(TICK_NS, SLOTS, 0)
}

/// Fired values of one `expire` call, sorted (batch order is unspecified).
fn fire(wheel: &mut TimerWheel<u32>, now_ns: u64) -> Vec<u32> {
    let mut out = Vec::new();
    let fired_total = wheel.expire(now_ns, &mut out);
    assert_eq!(fired_total, out.len());
    out.sort_unstable();
    out
}

#[test]
fn entry_stays_within_48_bytes_for_an_8_byte_token() {
    assert_eq!(std::mem::size_of::<Entry<u64>>(), 40);
    assert_eq!(std::mem::size_of::<TimerKey>(), 8);
}

#[test]
fn new_normalises_slots_and_tick() {
    let wheel = TimerWheel::<u32>::new(0, 100, 0);
    assert_eq!((wheel.slots(), wheel.tick_ns()), (128, 1));
    let wheel = TimerWheel::<u32>::new(5, 0, 0);
    assert_eq!(wheel.slots(), 1);
    let wheel = TimerWheel::<u32>::new(5, usize::MAX, 0);
    assert_eq!(wheel.slots(), SLOTS_MAX);
}

#[test]
fn fires_exactly_at_deadline_never_early() {
    let mut wheel = wheel();
    wheel.insert(30, 1);
    wheel.insert(35, 2);
    assert_eq!(fire(&mut wheel, 29), Vec::<u32>::new());
    assert_eq!(fire(&mut wheel, 30), vec![1]);
    assert_eq!(fire(&mut wheel, 34), Vec::<u32>::new());
    assert_eq!(fire(&mut wheel, 35), vec![2]);
    assert!(wheel.is_empty());
}

#[test]
fn expire_on_tick_boundaries_fires_each_tick_batch_once() {
    let mut wheel = wheel();
    for deadline_ns in [10, 11, 19, 20, 21] {
        wheel.insert(deadline_ns, deadline_ns as u32);
    }
    assert_eq!(fire(&mut wheel, 10), vec![10]);
    assert_eq!(fire(&mut wheel, 20), vec![11, 19, 20]);
    assert_eq!(fire(&mut wheel, 30), vec![21]);
    assert_eq!(fire(&mut wheel, 40), Vec::<u32>::new());
}

#[test]
fn cancel_before_expiry_returns_value_and_prevents_firing() {
    let mut wheel = wheel();
    let key = wheel.insert(50, 7);
    assert_eq!(wheel.len(), 1);
    assert_eq!(wheel.cancel(key), Some(7));
    assert_eq!(wheel.len(), 0);
    assert_eq!(fire(&mut wheel, 100), Vec::<u32>::new());
    assert_eq!(wheel.next_deadline_ns(), None);
}

#[test]
fn cancel_after_expiry_or_twice_returns_none() {
    let mut wheel = wheel();
    let fired = wheel.insert(10, 1);
    let cancelled = wheel.insert(20, 2);
    assert_eq!(fire(&mut wheel, 10), vec![1]);
    assert_eq!(wheel.cancel(fired), None);
    assert_eq!(wheel.cancel(cancelled), Some(2));
    assert_eq!(wheel.cancel(cancelled), None);
}

#[test]
fn stale_key_after_slab_reuse_returns_none() {
    let mut wheel = wheel();
    let old_key = wheel.insert(10, 1);
    assert_eq!(wheel.cancel(old_key), Some(1));
    let new_key = wheel.insert(10, 2);
    assert_ne!(old_key, new_key);
    assert_eq!(wheel.cancel(old_key), None);
    assert_eq!(wheel.reset(old_key, 50), None);
    assert_eq!(wheel.len(), 1);
    assert_eq!(wheel.cancel(new_key), Some(2));
}

#[test]
fn reset_moves_deadline_and_stales_old_key() {
    let mut wheel = wheel();
    let key = wheel.insert(20, 9);
    let re_armed = wheel.reset(key, 45);
    assert!(re_armed.is_some());
    assert_eq!(wheel.cancel(key), None);
    assert_eq!(fire(&mut wheel, 44), Vec::<u32>::new());
    assert_eq!(fire(&mut wheel, 45), vec![9]);
    let stale = re_armed.and_then(|key| wheel.reset(key, 100));
    assert_eq!(stale, None);
}

#[test]
fn reset_earlier_and_later_fire_at_new_deadline() {
    let mut wheel = wheel();
    let early = wheel.insert(500, 1);
    let late = wheel.insert(15, 2);
    assert!(wheel.reset(early, 15).is_some());
    assert!(wheel.reset(late, 500).is_some());
    assert_eq!(fire(&mut wheel, 15), vec![1]);
    assert_eq!(fire(&mut wheel, 499), Vec::<u32>::new());
    assert_eq!(fire(&mut wheel, 500), vec![2]);
}

#[test]
fn wrap_around_over_many_revolutions_keeps_periodic_timer_exact() {
    let mut wheel = wheel();
    let period_ns = 3 * TICK_NS + 7;
    wheel.insert(period_ns, 0);
    let mut fired_at_ns = Vec::new();
    let mut now_ns = 0;
    while now_ns < 100 * REVOLUTION_NS {
        now_ns += TICK_NS;
        let mut out = Vec::new();
        wheel.expire(now_ns, &mut out);
        for _ in out {
            fired_at_ns.push(now_ns);
            wheel.insert(now_ns + period_ns, 0);
        }
    }
    // Deadline 37 ns after each firing, seen on the next 10 ns tick: every 40 ns.
    let expected: Vec<u64> = (1..)
        .map(|n: u64| n * 40)
        .take_while(|at_ns| *at_ns <= 100 * REVOLUTION_NS)
        .collect();
    assert_eq!(fired_at_ns, expected);
}

#[test]
fn ten_thousand_timers_in_one_slot_fire_together() {
    let mut wheel = wheel();
    for value in 0..10_000u32 {
        wheel.insert(40 + u64::from(value % 10), value);
    }
    assert_eq!(fire(&mut wheel, 39), Vec::<u32>::new());
    assert_eq!(wheel.len(), 10_000);
    let fired = fire(&mut wheel, 49);
    assert_eq!(fired, (0..10_000).collect::<Vec<u32>>());
    assert!(wheel.is_empty());
}

#[test]
fn partially_due_slot_keeps_later_timers() {
    let mut wheel = wheel();
    for value in 0..10_000u32 {
        wheel.insert(40 + u64::from(value % 10), value);
    }
    let fired = fire(&mut wheel, 44);
    let expected: Vec<u32> = (0..10_000).filter(|value| value % 10 <= 4).collect();
    assert_eq!(fired, expected);
    assert_eq!(wheel.len(), 5_000);
    // Rounded up to the tick boundary after the earliest survivor (45).
    assert_eq!(wheel.next_deadline_ns(), Some(50));
}

#[test]
fn far_future_timer_fires_once_at_its_tick_after_100_revolutions() {
    let mut wheel = wheel();
    let far_ns = 100 * REVOLUTION_NS + 3 * TICK_NS;
    wheel.insert(far_ns, 1);
    // A neighbour in the same bucket every revolution forces scans of it.
    wheel.insert(3 * TICK_NS, 2);
    let mut fired_at_ns = Vec::new();
    let mut now_ns = 0;
    while now_ns <= far_ns + 2 * REVOLUTION_NS {
        let mut out = Vec::new();
        wheel.expire(now_ns, &mut out);
        fired_at_ns.extend(out.iter().filter(|value| **value == 1).map(|_| now_ns));
        if out.contains(&2) {
            wheel.insert(now_ns + REVOLUTION_NS, 2);
        }
        now_ns += TICK_NS;
    }
    assert_eq!(fired_at_ns, vec![far_ns]);
}

#[test]
fn deadline_in_the_past_fires_at_next_expire() {
    let mut wheel = TimerWheel::new(TICK_NS, SLOTS, 1_000);
    assert_eq!(fire(&mut wheel, 1_500), Vec::<u32>::new());
    wheel.insert(3, 1);
    wheel.insert(1_200, 2);
    wheel.insert(1_500, 3);
    assert_eq!(wheel.next_deadline_ns(), Some(1_500));
    assert_eq!(fire(&mut wheel, 1_500), vec![1, 2, 3]);
}

#[test]
fn large_time_jump_delivers_everything_due() {
    let mut wheel = wheel();
    for value in 0..100u32 {
        wheel.insert(u64::from(value) * 37, value);
    }
    wheel.insert(1_000_000, 1_000);
    let fired = fire(&mut wheel, 999_999);
    assert_eq!(fired, (0..100).collect::<Vec<u32>>());
    assert_eq!(fire(&mut wheel, 5_000_000), vec![1_000]);
}

#[test]
fn time_going_backwards_is_a_no_op() {
    let mut wheel = wheel();
    wheel.insert(50, 1);
    assert_eq!(fire(&mut wheel, 100), vec![1]);
    wheel.insert(60, 2);
    assert_eq!(fire(&mut wheel, 70), Vec::<u32>::new());
    assert_eq!(wheel.len(), 1);
    assert_eq!(fire(&mut wheel, 100), vec![2]);
}

#[test]
fn next_deadline_rounds_up_to_tick_boundary() {
    let mut wheel = wheel();
    assert_eq!(wheel.next_deadline_ns(), None);
    wheel.insert(23, 1);
    assert_eq!(wheel.next_deadline_ns(), Some(30));
    wheel.insert(20, 2);
    assert_eq!(wheel.next_deadline_ns(), Some(20));
    assert_eq!(fire(&mut wheel, 20), vec![2]);
    assert_eq!(wheel.next_deadline_ns(), Some(30));
    assert_eq!(fire(&mut wheel, 30), vec![1]);
    assert_eq!(wheel.next_deadline_ns(), None);
}

#[test]
fn next_deadline_finds_near_timer_behind_far_one_in_current_slot() {
    let mut wheel = wheel();
    wheel.insert(10 * REVOLUTION_NS + 5, 1);
    wheel.insert(55, 2);
    assert_eq!(wheel.next_deadline_ns(), Some(60));
}

#[test]
fn next_deadline_for_far_future_timer_is_exact_when_alone() {
    let mut wheel = wheel();
    let far_ns = 100 * REVOLUTION_NS + 30;
    wheel.insert(far_ns, 1);
    assert_eq!(wheel.next_deadline_ns(), Some(far_ns));
}

#[test]
fn try_insert_rejects_beyond_timers_max() {
    let mut wheel = wheel().with_timers_max(2);
    let first = wheel.try_insert(10, 1);
    assert!(first.is_ok());
    assert!(wheel.try_insert(20, 2).is_ok());
    let rejected = wheel.try_insert(30, 3);
    assert_eq!(
        rejected,
        Err(TimerError::TimersMaxExceeded { timers_max: 2 })
    );
    assert_eq!(
        rejected.map_err(|error| error.to_string()),
        Err("timer wheel already holds 2 armed timers, its limit".to_owned())
    );
    assert_eq!(first.ok().and_then(|key| wheel.cancel(key)), Some(1));
    assert!(wheel.try_insert(30, 3).is_ok());
}

#[test]
fn slab_reuses_freed_entries() {
    let mut wheel = wheel();
    for round in 0..100u64 {
        let keys: Vec<TimerKey> = (0..10).map(|v| wheel.insert(round * 5, v)).collect();
        for key in keys {
            assert!(wheel.cancel(key).is_some());
        }
    }
    assert_eq!(wheel.entries.len(), 10);
}

/// One step of the model-based property test.
#[derive(Debug, Clone)]
enum Op {
    /// Arm a timer at `now + offset - 50` (so some deadlines are already past).
    Insert(u64),
    /// Cancel the n-th key ever handed out (modulo count).
    Cancel(usize),
    /// Re-arm the n-th key at `now + offset - 50`.
    Reset(usize, u64),
    /// Advance time (or move it back by 20 for the `Back` case) and expire.
    Expire(u64),
    Back,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let offset = prop_oneof![0..200u64, 0..(20 * REVOLUTION_NS)];
    prop_oneof![
        4 => offset.clone().prop_map(Op::Insert),
        1 => any::<usize>().prop_map(Op::Cancel),
        1 => (any::<usize>(), offset).prop_map(|(n, off)| Op::Reset(n, off)),
        3 => prop_oneof![0..30u64, 0..(3 * REVOLUTION_NS)].prop_map(Op::Expire),
        1 => Just(Op::Back),
    ]
}

/// Naive reference: armed timers by value id, fired iff deadline <= now.
struct Model {
    armed: BTreeMap<u32, u64>,
    last_now_ns: u64,
}

impl Model {
    fn expire(&mut self, now_ns: u64) -> Vec<u32> {
        if now_ns < self.last_now_ns {
            return Vec::new();
        }
        self.last_now_ns = now_ns;
        let due: Vec<u32> = self
            .armed
            .iter()
            .filter(|(_, deadline_ns)| **deadline_ns <= now_ns)
            .map(|(value, _)| *value)
            .collect();
        for value in &due {
            self.armed.remove(value);
        }
        due
    }
}

fn round_up(at_ns: u64, origin_ns: u64) -> u64 {
    let offset_ns = at_ns.saturating_sub(origin_ns);
    origin_ns + offset_ns.div_ceil(TICK_NS) * TICK_NS
}

fn check_next_deadline(wheel: &TimerWheel<u32>, model: &Model, origin_ns: u64) {
    let next_ns = wheel.next_deadline_ns();
    let Some(earliest_ns) = model.armed.values().min().copied() else {
        assert_eq!(next_ns, None);
        return;
    };
    let next_ns = next_ns.unwrap_or(u64::MAX);
    assert!(next_ns >= model.last_now_ns, "{next_ns} before last now");
    if earliest_ns <= model.last_now_ns {
        assert_eq!(next_ns, model.last_now_ns);
    } else {
        assert!(
            next_ns <= round_up(earliest_ns, origin_ns),
            "{next_ns} late"
        );
    }
}

proptest! {
    #[test]
    fn matches_naive_model(
        origin_ns in 0..1_000u64,
        ops in proptest::collection::vec(op_strategy(), 1..300),
    ) {
        let mut wheel = TimerWheel::new(TICK_NS, SLOTS, origin_ns);
        let mut model = Model { armed: BTreeMap::new(), last_now_ns: origin_ns };
        let mut keys: Vec<(TimerKey, u32)> = Vec::new();
        let mut now_ns = origin_ns;
        let mut next_value = 0u32;
        for op in ops {
            match op {
                Op::Insert(offset) => {
                    let deadline_ns = (now_ns + offset).saturating_sub(50);
                    keys.push((wheel.insert(deadline_ns, next_value), next_value));
                    model.armed.insert(next_value, deadline_ns);
                    next_value += 1;
                }
                Op::Cancel(n) if !keys.is_empty() => {
                    let (key, value) = keys[n % keys.len()];
                    let expected = model.armed.remove(&value).map(|_| value);
                    prop_assert_eq!(wheel.cancel(key), expected);
                }
                Op::Reset(n, offset) if !keys.is_empty() => {
                    let slot = n % keys.len();
                    let (key, value) = keys[slot];
                    let deadline_ns = (now_ns + offset).saturating_sub(50);
                    let re_armed = wheel.reset(key, deadline_ns);
                    prop_assert_eq!(re_armed.is_some(), model.armed.contains_key(&value));
                    if let Some(new_key) = re_armed {
                        model.armed.insert(value, deadline_ns);
                        keys[slot] = (new_key, value);
                    }
                }
                Op::Expire(advance_ns) => {
                    now_ns += advance_ns;
                    let expected = model.expire(now_ns);
                    prop_assert_eq!(fire(&mut wheel, now_ns), expected);
                }
                Op::Back => {
                    let back_ns = now_ns.saturating_sub(20);
                    prop_assert_eq!(fire(&mut wheel, back_ns), model.expire(back_ns));
                }
                Op::Cancel(_) | Op::Reset(..) => {}
            }
            prop_assert_eq!(wheel.len(), model.armed.len());
            check_next_deadline(&wheel, &model, origin_ns);
        }
    }

    #[test]
    fn sleeping_until_next_deadline_is_never_more_than_one_tick_late(
        deadlines in proptest::collection::vec(0..(30 * REVOLUTION_NS), 1..200),
    ) {
        let mut wheel = TimerWheel::new(TICK_NS, SLOTS, 0);
        for (value, deadline_ns) in deadlines.iter().enumerate() {
            wheel.insert(*deadline_ns, value as u32);
        }
        let mut fired_total = 0;
        while let Some(wake_ns) = wheel.next_deadline_ns() {
            let mut out = Vec::new();
            wheel.expire(wake_ns, &mut out);
            for value in out {
                let deadline_ns = deadlines[value as usize];
                prop_assert!(deadline_ns <= wake_ns);
                prop_assert!(wake_ns < deadline_ns + TICK_NS, "late: {} for {}", wake_ns, deadline_ns);
                fired_total += 1;
            }
        }
        prop_assert_eq!(fired_total, deadlines.len());
    }
}
