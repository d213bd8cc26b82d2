//! Deliveries in: what each becomes in the outbox, and the conflated gap notice.

use std::sync::Arc;

use super::*;
use crate::session::tests::upgraded;
use crate::session::tests::{timeouts, written};
use crate::session::{CloseHow, PeerClose, SubState, Subscription};

fn open(outbox_bytes_max: usize) -> Session {
    let mut s = upgraded(outbox_bytes_max, 1 << 12);
    written(&mut s);
    s
}

const FRAME: &[u8] = b"\x81\x03abc";

#[test]
fn deliveries_are_queued_within_the_data_budget_and_refused_once_closing() {
    let mut s = open(12);
    assert!(s.delivery_fits(12));
    assert!(!s.delivery_fits(13));
    let two = Bytes::from_static(b"\x81\x03abc\x81\x03def");
    assert_eq!(s.handle_delivery_n(two, 7, 2), SendStatus::Queued);
    assert!(!s.delivery_fits(5), "10 of 12 bytes are queued");
    let frame = Bytes::from_static(FRAME);
    assert_eq!(s.handle_delivery(frame.clone(), 8), SendStatus::Full);
    assert_eq!(written(&mut s), b"\x81\x03abc\x81\x03def");
    assert_eq!(s.handle_delivery(frame.clone(), 9), SendStatus::Queued);
    written(&mut s);
    let t = timeouts();
    let close = (Some(1001), "bye");
    s.start_close(0, close, CloseHow::AfterQueued, PeerClose::Awaited, &t);
    assert_eq!(s.handle_delivery(frame, 10), SendStatus::Closed);
    assert!(!s.delivery_fits(1));
}

#[test]
fn replay_is_never_refused_by_the_data_budget() {
    let mut s = open(4);
    assert_eq!(
        s.handle_replay(Bytes::from_static(FRAME)),
        SendStatus::Queued
    );
    assert_eq!(
        s.handle_replay(Bytes::from_static(FRAME)),
        SendStatus::Queued
    );
    assert_eq!(written(&mut s), [FRAME, FRAME].concat());
}

#[test]
fn a_conflated_delivery_replaces_the_queued_one_of_its_key() {
    let mut s = open(1 << 10);
    let first = s.handle_conflated_delivery(Bytes::from_static(b"\x81\x011"), 0, 3, 10);
    assert_eq!(
        (first.status, first.replaced_seq),
        (SendStatus::Queued, None)
    );
    let second = s.handle_conflated_delivery(Bytes::from_static(b"\x81\x012"), 0, 3, 11);
    assert_eq!(
        (second.status, second.replaced_seq),
        (SendStatus::Queued, Some(10))
    );
    assert_eq!(written(&mut s), b"\x81\x012");
}

#[test]
fn the_conflated_gap_notice_widens_while_queued_then_starts_over() {
    let mut s = open(1 << 10);
    s.subscriptions.push(Subscription {
        channel: Arc::from("c"),
        state: SubState::Active,
        epoch: Arc::from("e"),
        gap: None,
        conflated_gap: None,
        watch_presence: false,
        throttle_ms: None,
    });
    s.tell_conflated("c", 5, false, 2);
    s.tell_conflated("c", 7, false, 2);
    s.tell_conflated("other", 1, false, 4);
    let notice = br#"{"type":"gap","channel":"c","from":5,"to":7}"#;
    assert_eq!(
        written(&mut s),
        [&[0x81, notice.len() as u8], &notice[..]].concat()
    );
    s.tell_conflated("c", 9, true, 2);
    let mut binary = vec![0x82, 19, 0x02, 1, b'c'];
    binary.extend_from_slice(&9u64.to_be_bytes());
    binary.extend_from_slice(&9u64.to_be_bytes());
    assert_eq!(written(&mut s), binary, "a fresh notice in binary");
}
