//! Unit tests of the counter series and the bounded label maps.

use super::*;
use proptest::prelude::*;

#[test]
fn every_counter_has_metadata_matching_its_family_shape() {
    for &c in Counter::ALL {
        let family = c.family();
        assert_eq!(family.kind, MetricKind::Counter);
        assert!(family.name.starts_with("wsrelay_"), "{}", family.name);
        assert!(family.name.ends_with("_total"), "{}", family.name);
        assert_eq!(family.label_key.is_some(), c.label_value().is_some());
    }
    assert_eq!(Counter::COUNT, 108);
}

#[test]
fn counter_families_are_contiguous_and_series_unique() {
    let mut seen_families: Vec<&str> = Vec::new();
    let mut seen_series: Vec<(&str, Option<&str>)> = Vec::new();
    for &c in Counter::ALL {
        let name = c.family().name;
        if seen_families.last() != Some(&name) {
            assert!(!seen_families.contains(&name), "{name} split");
            seen_families.push(name);
        }
        let series = (name, c.label_value());
        assert!(!seen_series.contains(&series), "{series:?} twice");
        seen_series.push(series);
    }
    assert_eq!(seen_families.len(), 32);
}

#[test]
fn index_matches_position_in_all() {
    for (position, &c) in Counter::ALL.iter().enumerate() {
        assert_eq!(c.index(), position);
    }
}

#[test]
fn opcode_and_status_helpers_map_to_labeled_series() {
    assert_eq!(
        Counter::frame_received(0x1),
        Some(Counter::FramesReceivedText)
    );
    assert_eq!(
        Counter::frame_received(0xA),
        Some(Counter::FramesReceivedPong)
    );
    assert_eq!(Counter::frame_received(0x3), None);
    assert_eq!(
        Counter::frame_sent(0x0),
        Some(Counter::FramesSentContinuation)
    );
    assert_eq!(Counter::frame_sent(0xB), None);
    let rejected = Counter::handshake_rejected(431);
    assert_eq!(rejected.and_then(Counter::label_value), Some("431"));
    assert_eq!(Counter::handshake_rejected(500), None);
}

#[test]
fn close_code_labels_align_with_codes() {
    for (code, label) in KNOWN_CLOSE_CODES.iter().zip(CLOSE_CODE_LABELS) {
        assert_eq!(code.to_string(), label);
    }
    assert!(KNOWN_CLOSE_CODES.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(CLOSE_CODE_LABELS.last(), Some(&OVERFLOW_LABEL));
}

#[test]
fn close_codes_count_known_and_fold_unknown_into_other() {
    let mut counts = CloseCodeCounts::default();
    for code in [1000, 1000, 4201, 3000, 4999, 0, 1005] {
        counts.record(code);
    }
    assert_eq!(counts.get("1000"), 2);
    assert_eq!(counts.get("4201"), 1);
    assert_eq!(counts.get("other"), 4);
    assert_eq!(counts.get("1001"), 0);
    assert_eq!(counts.iter().count(), 18);
    assert_eq!(counts.iter().map(|(_, n)| n).sum::<u64>(), 7);
}

#[test]
fn close_codes_merge_adds_slots() {
    let mut a = CloseCodeCounts::default();
    let mut b = CloseCodeCounts::default();
    a.record(1000);
    b.record(1000);
    b.record(3333);
    a.merge(&b);
    assert_eq!((a.get("1000"), a.get("other")), (2, 1));
}

#[test]
fn labeled_counts_open_set() {
    let mut counts = LabeledCounts::default();
    counts.add("invalid_utf8", 1);
    counts.add("unknown_opcode", 2);
    counts.add("invalid_utf8", 3);
    assert_eq!(counts.get("invalid_utf8"), 4);
    assert_eq!(counts.get("unknown_opcode"), 2);
    assert_eq!(counts.get("never"), 0);
    let order: Vec<_> = counts.iter().collect();
    assert_eq!(order, vec![("invalid_utf8", 4), ("unknown_opcode", 2)]);
}

#[test]
fn labeled_counts_fold_past_bound_into_other() {
    const LABELS: [&str; 34] = [
        "a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9", "b0", "b1", "b2", "b3", "b4",
        "b5", "b6", "b7", "b8", "b9", "c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9",
        "d0", "d1", "d2", "d3",
    ];
    let mut counts = LabeledCounts::default();
    for label in LABELS {
        counts.add(label, 1);
    }
    counts.add("a0", 1);
    assert_eq!(counts.len(), LABELED_DISTINCT_MAX + 1);
    assert_eq!(counts.get("d1"), 1);
    assert_eq!(counts.get("d2"), 0);
    assert_eq!(counts.get(OVERFLOW_LABEL), 2);
    assert_eq!(counts.get("a0"), 2);
}

const KINDS: [&str; 40] = [
    "k00", "k01", "k02", "k03", "k04", "k05", "k06", "k07", "k08", "k09", "k10", "k11", "k12",
    "k13", "k14", "k15", "k16", "k17", "k18", "k19", "k20", "k21", "k22", "k23", "k24", "k25",
    "k26", "k27", "k28", "k29", "k30", "k31", "k32", "k33", "k34", "k35", "k36", "k37", "k38",
    "other",
];

proptest! {
    #[test]
    fn labeled_counts_stay_bounded_and_conserve_total(
        picks in proptest::collection::vec((0usize..KINDS.len(), 1u64..5), 0..200)
    ) {
        let mut counts = LabeledCounts::default();
        let mut expected_total = 0;
        for &(i, n) in &picks {
            counts.add(KINDS[i], n);
            expected_total += n;
        }
        prop_assert!(counts.len() <= LABELED_DISTINCT_MAX + 1);
        prop_assert_eq!(counts.iter().map(|(_, n)| n).sum::<u64>(), expected_total);
    }

    #[test]
    fn close_codes_conserve_total(codes in proptest::collection::vec(any::<u16>(), 0..100)) {
        let mut counts = CloseCodeCounts::default();
        for &code in &codes {
            counts.record(code);
        }
        prop_assert_eq!(counts.iter().map(|(_, n)| n).sum::<u64>(), codes.len() as u64);
    }
}
