//! Validation of the configuration: defaults, limits, and combinations refused at start.

use super::*;

#[test]
fn default_config_is_valid() {
    assert_eq!(Config::default().validate(), Ok(()));
}

#[test]
fn an_outbox_budget_beyond_32_bits_is_refused_not_clamped() {
    let at_max = Config {
        outbox_bytes_max: OUTBOX_BYTES_MAX,
        ..Config::default()
    };
    assert_eq!(at_max.validate(), Ok(()));
    let beyond = Config {
        outbox_bytes_max: OUTBOX_BYTES_MAX + 1,
        ..Config::default()
    };
    let refused = beyond.validate().map_err(|e| e.0).err().unwrap_or_default();
    assert!(
        refused.contains("max-queued-bytes must be 1024 ..= 4 GiB - 1"),
        "{refused}"
    );
}

#[test]
fn cluster_mode_takes_presence_ticks_and_snapshots() {
    let room = ChannelPattern::parse("room.*").expect("pattern");
    let mut c = Config::default();
    c.cluster.nats_urls = vec!["nats://127.0.0.1:4222".into()];
    c.presence_patterns = vec![room.clone()];
    assert_eq!(c.validate(), Ok(()));
    let mut ticks = c.clone();
    ticks.tick_rules = vec![(room.clone(), Duration::from_millis(50))];
    assert_eq!(ticks.validate(), Ok(()));
    let mut snapshots = c.clone();
    snapshots.snapshot_patterns = vec![room];
    assert_eq!(snapshots.validate(), Ok(()));
}

#[test]
fn an_outbox_smaller_than_one_delivery_of_the_largest_message_is_rejected() {
    let mut c = Config {
        message_bytes_max: 64 << 20,
        ..Config::default()
    };
    let err = c.validate().map_err(|e| e.0).err().unwrap_or_default();
    assert!(
        err.contains("--max-queued-bytes to at least 67112960"),
        "{err}"
    );
    c.outbox_bytes_max = (64 << 20) + 4096 - 1;
    assert!(c.validate().is_err());
    c.outbox_bytes_max += 1;
    assert_eq!(c.validate(), Ok(()));
}

#[test]
fn durations_past_the_maximum_are_rejected() {
    let too_long = DURATION_MAX + Duration::from_millis(1);
    let cases: [fn(&mut Config, Duration); 4] = [
        |c, d| c.heartbeat_interval = d,
        |c, d| c.idle_timeout = d,
        |c, d| c.history_ttl = d,
        |c, d| c.close_timeout = d,
    ];
    for set in cases {
        let mut c = Config::default();
        set(&mut c, too_long);
        assert!(c.validate().is_err());
        set(&mut c, DURATION_MAX);
        assert_eq!(c.validate(), Ok(()));
    }
}

#[test]
fn history_size_and_budget_are_bounded() {
    let c = Config {
        history_size: HISTORY_SIZE_MAX + 1,
        ..Config::default()
    };
    assert!(c.validate().is_err());
    let c = Config {
        history_bytes_max: 1000,
        ..Config::default()
    };
    assert!(c.validate().is_err());
}

#[test]
fn zero_loops_is_rejected() {
    let c = Config {
        loops: 0,
        ..Config::default()
    };
    assert!(c.validate().is_err());
}

#[test]
fn per_channel_policy_rules_match_first_and_fall_back_to_the_default() {
    let pat = |p: &str| ChannelPattern::parse(p).unwrap();
    let c = Config {
        slow_consumer_rules: vec![
            (pat("md.*"), SlowConsumerPolicy::Conflate),
            (pat("md.raw"), SlowConsumerPolicy::Drop),
        ],
        ..Config::default()
    };
    assert_eq!(c.slow_consumer_for("md.BTC"), SlowConsumerPolicy::Conflate);
    assert_eq!(c.slow_consumer_for("md.raw"), SlowConsumerPolicy::Conflate);
    assert_eq!(c.slow_consumer_for("room.1"), SlowConsumerPolicy::Close);
}

#[test]
fn slow_consumer_policy_round_trips() {
    for p in [
        SlowConsumerPolicy::Close,
        SlowConsumerPolicy::Drop,
        SlowConsumerPolicy::Conflate,
    ] {
        assert_eq!(SlowConsumerPolicy::parse(p.as_str()), Some(p));
    }
    assert_eq!(SlowConsumerPolicy::parse("ignore"), None);
}
