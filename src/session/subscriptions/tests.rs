//! Untold gaps and their notices, with exact bytes.

use std::sync::Arc;

use super::*;
use crate::session::tests::upgraded;
use crate::session::tests::written;

fn subscribed(channels: &[&str]) -> Session {
    let mut s = upgraded(1 << 16, 1 << 12);
    written(&mut s);
    for channel in channels {
        s.subscriptions.push(Subscription {
            channel: Arc::from(*channel),
            state: SubState::Active,
            epoch: Arc::from("e"),
            gap: None,
            conflated_gap: None,
            watch_presence: false,
            throttle_ms: None,
        });
    }
    s
}

fn json_gap(channel: &str, from: u64, to: u64) -> Vec<u8> {
    let body = format!(r#"{{"type":"gap","channel":"{channel}","from":{from},"to":{to}}}"#);
    let mut frame = vec![0x81, body.len() as u8];
    frame.extend_from_slice(body.as_bytes());
    frame
}

#[test]
fn gaps_widen_until_told_and_the_notice_goes_before_the_next_delivery() {
    let mut s = subscribed(&["a", "b"]);
    assert!(!s.gaps_untold());
    s.note_gap("a", SeqGap { from: 5, to: 6 }, false);
    s.note_gap("a", SeqGap { from: 3, to: 4 }, false);
    s.note_gap("nope", SeqGap { from: 1, to: 1 }, false);
    assert!(s.gaps_untold());
    assert_eq!(
        s.queue_gap_notice("b", false),
        SendStatus::Queued,
        "b has none"
    );
    assert!(written(&mut s).is_empty());
    assert_eq!(s.queue_gap_notice("a", false), SendStatus::Queued);
    assert_eq!(
        written(&mut s),
        json_gap("a", 3, 6),
        "one notice for the widened range"
    );
    assert!(!s.gaps_untold(), "nothing left to tell");
}

#[test]
fn a_drained_subscriber_is_told_every_gap_each_in_its_encoding() {
    let mut s = subscribed(&["a", "bin"]);
    s.note_gap("a", SeqGap { from: 2, to: 2 }, false);
    s.note_gap("bin", SeqGap { from: 7, to: 9 }, true);
    assert_eq!(s.queue_gap_notice("a", false), SendStatus::Queued);
    assert!(s.gaps_untold(), "bin's gap is still untold");
    written(&mut s);
    assert_eq!(s.queue_pending_gap_notices(), SendStatus::Queued);
    let mut binary = vec![0x82, 2 + 3 + 16, 0x02, 3]; // op 0x02: gap (PROTOCOL.md)
    binary.extend_from_slice(b"bin");
    binary.extend_from_slice(&7u64.to_be_bytes());
    binary.extend_from_slice(&9u64.to_be_bytes());
    assert_eq!(written(&mut s), binary);
    assert!(!s.gaps_untold());
    assert_eq!(s.take_subscriptions().len(), 2);
    assert!(s.subscriptions.is_empty());
}
