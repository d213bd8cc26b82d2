//! The session's lifecycle with a fake clock: exact deadlines and exact bytes. These replace
//! the real-time liveness tests (50-300 ms windows over sockets); `tests/liveness.rs` keeps a
//! few that prove the loop's wiring.

use bytes::Bytes;

use super::*;
use crate::proto::close::CloseFrame;
use crate::proto::ProtocolError;

const MS: u64 = 1_000_000;

pub(super) fn timeouts() -> Timeouts {
    Timeouts {
        handshake_ns: 5_000 * MS,
        heartbeat_interval_ns: 30_000 * MS,
        heartbeat_timeout_ns: 10_000 * MS,
        idle_ns: 0,
        close_ns: 2_000 * MS,
    }
}

const LIMITS: SessionLimits = SessionLimits {
    message_bytes_max: 1 << 20,
    outbox_bytes_max: 1 << 16,
    control_bytes_max: 1 << 12,
};

const DRAIN: (u16, &str) = (4200, "server draining");

/// Everything the session queued, as the socket would receive it.
pub(super) fn written(s: &mut Session) -> Vec<u8> {
    let mut out = Vec::new();
    while !s.outbox.is_empty() {
        let mut slices = [std::io::IoSlice::new(&[]); crate::outbox::IO_SLICES_MAX];
        let n = s.outbox.io_slices(&mut slices);
        let chunk: Vec<u8> = slices[..n]
            .iter()
            .flat_map(|sl| sl.iter().copied())
            .collect();
        out.extend_from_slice(&chunk);
        s.outbox.advance(chunk.len(), &mut |_, _, _| {});
    }
    out
}

/// An upgraded relay session at time 0 with these budgets (its 101 still queued).
pub(super) fn upgraded(outbox_bytes_max: usize, control_bytes_max: usize) -> Session {
    let limits = SessionLimits {
        message_bytes_max: 1 << 16,
        outbox_bytes_max,
        control_bytes_max,
    };
    let mut s = Session::new(0, Endpoint::Relay, limits, &timeouts());
    s.upgrade(Endpoint::Relay, Bytes::from_static(b"HTTP/1.1 101\r\n\r\n"));
    s
}

fn open_session(now: u64, t: &Timeouts) -> Session {
    let mut s = Session::new(now, Endpoint::Relay, LIMITS, t);
    s.upgrade(Endpoint::Relay, Bytes::from_static(b"HTTP/1.1 101\r\n\r\n"));
    assert_eq!(written(&mut s), b"HTTP/1.1 101\r\n\r\n");
    s
}

fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut out = vec![0x88, (2 + reason.len()) as u8];
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(reason.as_bytes());
    out
}

#[test]
fn a_handshake_not_completed_in_time_is_terminated_at_its_deadline() {
    let t = timeouts();
    let mut s = Session::new(1_000, Endpoint::Relay, LIMITS, &t);
    assert_eq!(s.next_deadline(&t), Some(1_000 + 5_000 * MS));
    assert_eq!(
        s.handle_timeout(1_000 + 5_000 * MS - 1, &t, DRAIN),
        Timeout::Nothing
    );
    let due = s.handle_timeout(1_000 + 5_000 * MS, &t, DRAIN);
    assert_eq!(due, Timeout::Terminate(CloseReason::HandshakeTimeout));
    assert_eq!(s.close_reason(), Some(CloseReason::HandshakeTimeout));
    assert!(written(&mut s).is_empty(), "terminated without a byte");
}

#[test]
fn a_silent_connection_is_pinged_then_terminated_when_the_pong_never_comes() {
    let t = timeouts();
    let mut s = open_session(0, &t);
    assert_eq!(s.next_deadline(&t), Some(30_000 * MS));
    assert_eq!(
        s.handle_timeout(30_000 * MS, &t, DRAIN),
        Timeout::PingQueued
    );
    assert_eq!(written(&mut s), [0x89, 0x00], "an empty ping");
    assert_eq!(s.next_deadline(&t), Some(40_000 * MS), "the pong deadline");
    assert_eq!(
        s.handle_timeout(40_000 * MS - 1, &t, DRAIN),
        Timeout::Nothing
    );
    let due = s.handle_timeout(40_000 * MS, &t, DRAIN);
    assert_eq!(due, Timeout::Terminate(CloseReason::HeartbeatTimeout));
}

#[test]
fn a_pong_ends_the_round_trip_and_the_next_ping_is_one_interval_after_the_last_bytes() {
    let t = timeouts();
    let mut s = open_session(0, &t);
    assert_eq!(
        s.handle_timeout(30_000 * MS, &t, DRAIN),
        Timeout::PingQueued
    );
    s.on_bytes_received(30_004 * MS);
    assert_eq!(s.on_pong(30_004 * MS), Some(4 * MS), "the round trip");
    assert_eq!(s.on_pong(30_005 * MS), None, "one round trip per ping");
    assert_eq!(s.next_deadline(&t), Some(60_004 * MS));
    assert_eq!(s.handle_timeout(40_000 * MS, &t, DRAIN), Timeout::Nothing);
}

#[test]
fn any_bytes_after_the_ping_count_as_liveness() {
    let t = timeouts();
    let mut s = open_session(0, &t);
    assert_eq!(
        s.handle_timeout(30_000 * MS, &t, DRAIN),
        Timeout::PingQueued
    );
    written(&mut s);
    // A data frame, not a pong: still alive at the pong deadline; the next ping is due one
    // interval after those bytes.
    s.on_bytes_received(35_000 * MS);
    assert_eq!(s.handle_timeout(40_000 * MS, &t, DRAIN), Timeout::Nothing);
    assert_eq!(s.next_deadline(&t), Some(65_000 * MS));
    assert_eq!(
        s.handle_timeout(65_000 * MS, &t, DRAIN),
        Timeout::PingQueued
    );
}

#[test]
fn the_idle_timeout_closes_with_1000_and_waits_for_the_close_reply() {
    let t = Timeouts {
        idle_ns: 60_000 * MS,
        heartbeat_interval_ns: 0,
        ..timeouts()
    };
    let mut s = open_session(0, &t);
    s.on_bytes_received(10_000 * MS);
    assert_eq!(s.next_deadline(&t), Some(70_000 * MS));
    let due = s.handle_timeout(70_000 * MS, &t, DRAIN);
    let started = CloseStarted {
        dropped: 0,
        code: Some(1000),
    };
    assert_eq!(due, Timeout::IdleClosed(Some(started)));
    assert_eq!(written(&mut s), close_frame(1000, "idle timeout"));
    assert_eq!(s.next_deadline(&t), Some(72_000 * MS), "the close timeout");
    assert!(!s.finished_writing(), "the peer's close is awaited");
    let due = s.handle_timeout(72_000 * MS, &t, DRAIN);
    assert_eq!(due, Timeout::Terminate(CloseReason::CloseTimeout));
    assert_eq!(
        s.close_reason(),
        Some(CloseReason::IdleTimeout),
        "the first reason stays"
    );
}

#[test]
fn a_peer_that_answers_our_close_finishes_the_handshake_and_lingers_bounded() {
    let t = timeouts();
    let mut s = open_session(0, &t);
    let close = (Some(1001), "going away");
    let how = CloseHow::AfterQueued;
    assert!(s
        .start_close(5, close, how, PeerClose::Awaited, &t)
        .is_some());
    assert!(
        s.start_close(6, close, how, PeerClose::Awaited, &t)
            .is_none(),
        "one close"
    );
    assert_eq!(written(&mut s), close_frame(1001, "going away"));
    let frame = CloseFrame {
        code: 1001,
        reason: "",
    };
    assert_eq!(
        s.on_close_frame(7, Some(frame), &t),
        None,
        "not echoed: ours went first"
    );
    assert!(s.finished_writing());
    s.linger(8, &t);
    assert_eq!(s.next_deadline(&t), Some(8 + 2_000 * MS));
    let due = s.handle_timeout(8 + 2_000 * MS, &t, DRAIN);
    assert_eq!(due, Timeout::Terminate(CloseReason::ClientClose));
}

#[test]
fn the_peers_close_is_echoed_with_its_code_and_queued_data_is_dropped() {
    let t = timeouts();
    let mut s = open_session(0, &t);
    s.outbox.push_data(Bytes::from_static(b"\x81\x01x"), 0);
    let frame = CloseFrame {
        code: 1000,
        reason: "bye",
    };
    let started = s.on_close_frame(3, Some(frame), &t);
    assert_eq!(
        started,
        Some(CloseStarted {
            dropped: 1,
            code: Some(1000)
        })
    );
    assert_eq!(written(&mut s), [0x88, 0x02, 0x03, 0xe8]);
    assert!(s.finished_writing(), "the server closes TCP first");
    // An empty close is answered with an empty close (§5.5.1).
    let mut s = open_session(0, &t);
    s.on_close_frame(3, None, &t);
    assert_eq!(written(&mut s), [0x88, 0x00]);
}

#[test]
fn a_protocol_error_sends_what_was_earned_then_the_close_and_awaits_nothing() {
    let t = timeouts();
    let mut s = open_session(0, &t);
    assert_eq!(s.queue_pong(b"p1"), PongQueued::Queued);
    s.fail(9, &ProtocolError::InvalidUtf8, &t);
    assert_eq!(s.close_reason(), Some(CloseReason::InvalidUtf8));
    let mut expected = vec![0x8a, 0x02, b'p', b'1'];
    expected.extend_from_slice(&[0x88, 0x02, 0x03, 0xef]);
    assert_eq!(written(&mut s), expected, "the pong, then 1007");
    assert!(
        s.finished_writing(),
        "no close reply is awaited after a failure"
    );
    assert_eq!(
        s.queue_pong(b"p2"),
        PongQueued::NotOpen,
        "nothing after the close"
    );
}

#[test]
fn pongs_beyond_the_control_budget_are_handed_back_not_dropped() {
    let t = timeouts();
    let mut s = open_session(0, &t);
    let payload = [7u8; 125];
    let queued = (0..64)
        .take_while(|_| s.queue_pong(&payload) == PongQueued::Queued)
        .count();
    assert!(queued < 64, "the control budget is bounded");
    let PongQueued::Full(pong) = s.queue_pong(&payload) else {
        panic!("a full budget hands the pong back");
    };
    assert_eq!(written(&mut s).len(), queued * 127);
    assert_eq!(
        s.retry_pong(pong),
        PongQueued::Queued,
        "after a write it fits"
    );
    assert_eq!(written(&mut s)[..2], [0x8a, 125]);
}

#[test]
fn the_drain_closes_at_its_turn_after_what_is_queued() {
    let t = timeouts();
    let mut s = open_session(0, &t);
    s.drain_at(500 * MS);
    assert_eq!(s.next_deadline(&t), Some(500 * MS));
    s.outbox.push_data(Bytes::from_static(b"\x81\x01x"), 0);
    let due = s.handle_timeout(500 * MS, &t, DRAIN);
    let started = CloseStarted {
        dropped: 0,
        code: Some(4200),
    };
    assert_eq!(due, Timeout::Drained(Some(started)));
    let mut expected = b"\x81\x01x".to_vec();
    expected.extend_from_slice(&close_frame(4200, "server draining"));
    assert_eq!(written(&mut s), expected);
    assert_eq!(s.close_reason(), Some(CloseReason::Shutdown));
}

#[test]
fn the_auth_deadline_is_reported_once() {
    let t = timeouts();
    let mut s = open_session(0, &t);
    s.set_auth_deadline(3_000 * MS);
    assert_eq!(s.next_deadline(&t), Some(3_000 * MS));
    assert_eq!(
        s.handle_timeout(3_000 * MS, &t, DRAIN),
        Timeout::AuthDeadline
    );
    assert_eq!(
        s.next_deadline(&t),
        Some(30_000 * MS),
        "back to the heartbeat"
    );
}

#[test]
fn an_http_response_finishes_even_after_the_peers_fin() {
    let t = timeouts();
    let mut s = Session::new(0, Endpoint::Http, LIMITS, &t);
    s.respond(7, Bytes::from_static(b"HTTP/1.1 200 OK\r\n\r\n"), &t);
    assert_eq!(
        s.next_deadline(&t),
        Some(7 + 5_000 * MS),
        "progress is checked"
    );
    assert_eq!(s.on_eof(), AfterEof::FinishResponse);
    assert!(!s.reads_allowed());
    assert!(s.peer_input_ended());
    assert_eq!(written(&mut s), b"HTTP/1.1 200 OK\r\n\r\n");
    assert!(s.finished_writing());
    assert_eq!(s.close_reason(), Some(CloseReason::HttpDone));
}

#[test]
fn a_fin_without_a_close_frame_is_a_reset_and_closes_once() {
    let t = timeouts();
    let mut s = open_session(0, &t);
    assert_eq!(s.on_eof(), AfterEof::Close);
    assert_eq!(s.close_reason(), Some(CloseReason::PeerReset));
    assert!(s.mark_closed());
    assert!(!s.mark_closed(), "queued for reaping once");
    assert_eq!(s.next_deadline(&t), None);
}

#[test]
fn a_protocol_error_while_closing_stops_waiting_for_the_peers_close() {
    let t = timeouts();
    let mut s = open_session(0, &t);
    let close = (Some(1001), "going away");
    s.start_close(1, close, CloseHow::AfterQueued, PeerClose::Awaited, &t);
    assert_eq!(written(&mut s), close_frame(1001, "going away"));
    assert!(!s.finished_writing());
    assert_eq!(
        s.fail(2, &ProtocolError::InvalidUtf8, &t),
        None,
        "one close frame"
    );
    assert!(s.finished_writing(), "TCP closes now");
    assert!(written(&mut s).is_empty());
}

#[test]
fn a_connection_that_keeps_talking_is_never_idle() {
    let t = Timeouts {
        idle_ns: 1_000 * MS,
        heartbeat_interval_ns: 0,
        ..timeouts()
    };
    let mut s = open_session(0, &t);
    for step in 1..=30 {
        let now = step * 50 * MS;
        s.on_bytes_received(now);
        assert_eq!(s.handle_timeout(now, &t, DRAIN), Timeout::Nothing);
        assert_eq!(s.next_deadline(&t), Some(now + 1_000 * MS));
    }
    assert!(s.is_open());
}

#[test]
fn an_http_response_that_is_not_read_is_dropped_one_that_progresses_is_not() {
    let t = timeouts();
    let response = Bytes::from(vec![b'x'; 10_000]);
    // Read slowly: 1,000 bytes per check, always some progress.
    let mut slow = Session::new(0, Endpoint::Http, LIMITS, &t);
    slow.respond(0, response.clone(), &t);
    let mut now = 0;
    for _ in 0..5 {
        now = slow.next_deadline(&t).expect("a progress check");
        slow.outbox.advance(1_000, &mut |_, _, _| {});
        assert_eq!(slow.handle_timeout(now, &t, DRAIN), Timeout::Nothing);
    }
    assert_eq!(slow.next_deadline(&t), Some(now + 5_000 * MS));
    // Never read: dropped at the first check.
    let mut stuck = Session::new(0, Endpoint::Http, LIMITS, &t);
    stuck.respond(0, response, &t);
    let due = stuck.handle_timeout(5_000 * MS, &t, DRAIN);
    assert_eq!(due, Timeout::Terminate(CloseReason::HttpDone));
}
