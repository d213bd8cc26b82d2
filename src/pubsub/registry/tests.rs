use super::*;
use crate::proto::frame::OpCode;

fn retention(history_size: usize, last_value: bool) -> RetentionConfig {
    RetentionConfig {
        history_size,
        history_ttl_ns: 0,
        last_value,
        idle_channels_max: 2,
        history_bytes_max: usize::MAX,
    }
}

fn enc(seq: u64) -> PreparedFrame {
    PreparedFrame::new(OpCode::Text, seq.to_string().as_bytes())
}

/// Publishes one message the way the loop does: reserve, encode, retain.
fn publish(r: &mut ChannelRegistry, channel: &str) -> Option<Reserved> {
    let reserved = r.reserve(channel, 1, 0)?;
    r.retain(
        channel,
        reserved.first_seq,
        std::iter::once(enc(reserved.first_seq)),
        0,
    );
    Some(reserved)
}

/// Publishes `n` messages of 2 + 1 frame bytes ("1".."9") to `channel`.
fn publish_n(r: &mut ChannelRegistry, channel: &str, n: u64) -> u64 {
    (0..n)
        .map(|_| {
            let reserved = r.reserve(channel, 1, 0).map_or(0, |x| x.first_seq);
            let frame = PreparedFrame::new(OpCode::Text, b"x");
            r.retain(channel, reserved, std::iter::once(frame), 0)
        })
        .sum()
}

#[test]
fn cluster_state_follows_the_streams_numbering() {
    let mut r = ChannelRegistry::new(retention(100, true), "t".into());
    let empty: Arc<str> = Arc::from("");
    assert!(!r.cluster_adopt("c", &empty, 0, Vec::new(), 0));
    r.subscribe("c", 1, None, 0, false);
    let e1: Arc<str> = Arc::from("aaaaaaaa");
    // The first writer's epoch: a change from none, not a reset.
    assert_eq!(r.cluster_accept("c", &e1, 1, 3), Some((2, true, false)));
    r.retain("c", 1, (1..=3).map(enc), 0);
    let since = |seq| {
        Some(Since {
            seq,
            epoch: Some("aaaaaaaa"),
        })
    };
    assert_eq!(r.subscribe("c", 1, since(1), 0, false).replay.len(), 2);
    // A jump (an announced gap) drops the ring: it never holds a hole.
    assert_eq!(r.cluster_accept("c", &e1, 6, 1), Some((2, false, false)));
    r.retain("c", 6, std::iter::once(enc(6)), 0);
    assert_eq!(
        r.subscribe("c", 1, since(3), 0, false).recovered,
        Some(false)
    );
    assert_eq!(r.cluster_view("c").map(|v| (v.1, v.2)), Some((6, Some(6))));
    // A new epoch on a live channel is a reset; the interest stays.
    let e2: Arc<str> = Arc::from("bbbbbbbb");
    assert_eq!(r.cluster_accept("c", &e2, 1, 1), Some((2, true, true)));
    assert!(r.cluster_adopt("c", &e1, 9, vec![enc(9)], 0));
    assert_eq!(r.cluster_interest("c"), 2);
    r.uninterest("c", 1);
    assert!(r.cluster_drop_if_unwatched("c"));
    assert!(!r.has("c"));
    assert_eq!(r.cluster_accept("c", &e1, 10, 1), None);
}

#[test]
fn the_byte_budget_evicts_the_oldest_history_of_any_channel() {
    let mut config = retention(100, false);
    config.history_bytes_max = 30; // ten 3-byte frames
    let mut r = ChannelRegistry::new(config, "t".into());
    let ea = r.subscribe("a", 0, None, 0, false).epoch;
    r.subscribe("b", 0, None, 0, false);
    assert_eq!(publish_n(&mut r, "a", 6), 0);
    assert_eq!(publish_n(&mut r, "b", 4), 0);
    assert_eq!(r.history_bytes(), 30);
    // Three more on b push out a's three oldest (seqs 1-3), not b's.
    assert_eq!(publish_n(&mut r, "b", 3), 3);
    assert_eq!((r.history_bytes(), r.history_evicted_total()), (30, 3));
    let from = |seq| Since {
        seq,
        epoch: Some(&*ea),
    };
    let lost = r.subscribe("a", 0, Some(from(2)), 0, false);
    assert_eq!((lost.recovered, lost.replay.len()), (Some(false), 0));
    let kept = r.subscribe("a", 0, Some(from(3)), 0, false);
    assert_eq!((kept.recovered, kept.replay.len()), (Some(true), 3));
}

#[test]
fn the_budget_order_stays_bounded_when_channels_evict_by_size() {
    let mut config = retention(2, false);
    config.history_bytes_max = 1 << 30;
    let mut r = ChannelRegistry::new(config, "t".into());
    r.subscribe("a", 0, None, 0, false);
    publish_n(&mut r, "a", 10_000);
    assert_eq!(r.history_bytes(), 6);
    assert!(
        r.budget.order_len() <= 2 * 2 + 1024 + 1,
        "{}",
        r.budget.order_len()
    );
}

#[test]
fn a_dropped_channel_releases_its_history_bytes() {
    let mut r = ChannelRegistry::new(retention(10, false), "t".into());
    r.subscribe("a", 0, None, 0, false);
    publish_n(&mut r, "a", 4);
    assert_eq!(r.history_bytes(), 12);
    r.uninterest("a", 0);
    for c in ["b", "c", "d"] {
        r.subscribe(c, 0, None, 0, false);
        r.uninterest(c, 0); // parks idle: the two-channel cap evicts "a"
    }
    assert_eq!(r.history_bytes(), 0);
}

fn sample(r: &mut ChannelRegistry) -> Vec<(String, u64, u64)> {
    let mut seen = Vec::new();
    r.sample_publishes(|name, messages, seq| seen.push((name.to_owned(), messages, seq)));
    seen.sort();
    seen
}

#[test]
fn sampling_counts_publishes_since_the_previous_walk() {
    let mut r = ChannelRegistry::new(retention(4, false), "e".into());
    for channel in ["a", "a", "a", "b"] {
        publish(&mut r, channel);
    }
    let first = sample(&mut r);
    assert_eq!(first, [("a".into(), 3, 3), ("b".into(), 1, 1)]);
    assert_eq!(sample(&mut r), [("a".into(), 0, 3), ("b".into(), 0, 1)]);
    publish(&mut r, "a");
    publish(&mut r, "a");
    assert_eq!(sample(&mut r), [("a".into(), 2, 5), ("b".into(), 0, 1)]);
}

#[test]
fn seq_counts_from_one_per_channel() {
    let mut r = ChannelRegistry::new(retention(0, false), "t".into());
    r.subscribe("a", 0, None, 0, false);
    r.subscribe("b", 1, None, 0, false);
    assert_eq!(publish(&mut r, "a").map(|n| n.first_seq), Some(1));
    assert_eq!(publish(&mut r, "a").map(|n| n.first_seq), Some(2));
    let b = publish(&mut r, "b").unwrap();
    assert_eq!((b.first_seq, b.interest), (1, 0b10));
}

#[test]
fn a_run_reserves_consecutive_seqs() {
    let mut r = ChannelRegistry::new(retention(10, false), "t".into());
    r.subscribe("a", 0, None, 0, false);
    assert_eq!(r.reserve("a", 5, 0).map(|n| n.first_seq), Some(1));
    assert_eq!(r.reserve("a", 1, 0).map(|n| n.first_seq), Some(6));
}

#[test]
fn publish_without_subscribers_or_retention_reaches_no_one() {
    let mut r = ChannelRegistry::new(retention(0, false), "t".into());
    assert!(publish(&mut r, "a").is_none());
    assert!(r.is_empty());
}

#[test]
fn recovery_replays_missed_messages_in_the_same_epoch() {
    let mut r = ChannelRegistry::new(retention(10, false), "t".into());
    let first = r.subscribe("a", 0, None, 0, false);
    for _ in 0..5 {
        publish(&mut r, "a");
    }
    let since = Since {
        seq: 3,
        epoch: Some(&first.epoch),
    };
    let out = r.subscribe("a", 1, Some(since), 0, false);
    assert_eq!(
        (out.seq, out.recovered, out.replay.len()),
        (5, Some(true), 2)
    );
    assert_eq!(out.replay[0].bytes().as_ref(), enc(4).bytes().as_ref());
}

#[test]
fn stale_epoch_is_not_recovered() {
    let mut r = ChannelRegistry::new(retention(10, false), "t".into());
    r.subscribe("a", 0, None, 0, false);
    publish(&mut r, "a");
    let since = Since {
        seq: 0,
        epoch: Some("other"),
    };
    let out = r.subscribe("a", 0, Some(since), 0, false);
    assert_eq!((out.recovered, out.replay.len()), (Some(false), 0));
}

#[test]
fn uninterest_without_retention_forgets_the_channel_and_a_new_epoch_follows() {
    let mut r = ChannelRegistry::new(retention(0, false), "t".into());
    let e1 = r.subscribe("a", 0, None, 0, false).epoch;
    publish(&mut r, "a");
    r.uninterest("a", 0);
    assert!(r.is_empty());
    let again = r.subscribe("a", 0, None, 0, false);
    assert_eq!(again.seq, 0);
    assert_ne!(again.epoch, e1);
}

#[test]
fn last_value_is_replayed_to_new_subscribers() {
    let mut r = ChannelRegistry::new(retention(0, true), "t".into());
    publish(&mut r, "a");
    publish(&mut r, "a");
    let out = r.subscribe("a", 0, None, 0, false);
    assert_eq!(out.replay.len(), 1);
    assert_eq!(out.replay[0].bytes().as_ref(), enc(2).bytes().as_ref());
}

#[test]
fn idle_retaining_channels_are_capped() {
    let mut r = ChannelRegistry::new(retention(4, false), "t".into());
    for ch in ["a", "b", "c", "d"] {
        publish(&mut r, ch);
    }
    assert_eq!(r.len(), 2);
}
