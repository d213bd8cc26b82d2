//! Liveness and lifecycle against a live relay: the wiring of the sessions' deadlines to the
//! loop's timer wheel and sockets (heartbeat ping/terminate, handshake, close-handshake and idle
//! timeouts). What is due when, and which bytes go out, is tested with a fake clock in
//! `src/session/tests.rs`; these tests assert events, never timing.

mod common;

use std::time::Duration;

use common::{masked_frame, Client, Raw};
use wsrelay::Config;

fn config(heartbeat_ms: u64, timeout_ms: u64) -> Config {
    Config {
        heartbeat_interval: Duration::from_millis(heartbeat_ms),
        heartbeat_timeout: Duration::from_millis(timeout_ms),
        timer_tick: Duration::from_millis(5),
        ..Config::loopback_for_tests(2)
    }
}

#[test]
fn silent_client_is_pinged_and_terminated_when_it_never_answers() {
    let server = common::start(config(100, 100));
    let mut c = Raw::upgraded(server.local_addr(), "/");
    assert_eq!(c.read_json()["type"], "connected");
    let ping = c.read_frame();
    assert_eq!(ping.opcode, 0x9, "a heartbeat ping arrives");
    // We never answer: the server drops the TCP connection.
    assert!(c.reads_eof(), "terminated after the heartbeat timeout");
}

#[test]
fn client_that_answers_pings_stays_connected_across_many_intervals() {
    // A long pong timeout: after each pong the next ping must come one interval later, not
    // at the old pong deadline (the reader's 5 s timeout would fail this test).
    let server = common::start(config(50, 30_000));
    let mut c = Raw::upgraded(server.local_addr(), "/");
    assert_eq!(c.read_json()["type"], "connected");
    for _ in 0..6 {
        let ping = c.read_frame();
        assert_eq!(ping.opcode, 0x9);
        c.send(&masked_frame(0x8a, &ping.payload));
    }
    c.send(&masked_frame(0x81, br#"{"type":"ping"}"#));
    assert_eq!(c.read_json(), serde_json::json!({"type": "pong"}));
}

#[test]
fn half_open_handshake_is_closed_after_the_timeout_and_others_are_unaffected() {
    let config = Config {
        handshake_timeout: Duration::from_millis(200),
        timer_tick: Duration::from_millis(5),
        ..Config::loopback_for_tests(1)
    };
    let server = common::start(config);
    let mut slow = Raw::connect(server.local_addr());
    slow.send(b"GET / HTTP/1.1\r\nHost: x\r\n");
    let mut good = Client::connect(server.local_addr());
    good.ping();
    slow.send(b"X-Trickle: 1\r\n");
    assert!(slow.reads_eof(), "slowloris connection dropped");
    good.ping();
}

#[test]
fn peer_that_never_answers_our_close_is_dropped_after_the_close_timeout() {
    let config = Config {
        close_timeout: Duration::from_millis(100),
        timer_tick: Duration::from_millis(5),
        ..Config::loopback_for_tests(1)
    };
    let server = common::start(config);
    let mut c = Raw::upgraded(server.local_addr(), "/");
    assert_eq!(c.read_json()["type"], "connected");
    server.shutdown();
    assert_eq!(c.read_close_code(), Some(1001));
    // No close reply from us: TCP is dropped anyway, and nothing follows the close frame.
    assert!(c.reads_eof());
}

#[test]
fn idle_connection_is_closed_after_the_idle_timeout_with_1000() {
    let config = Config {
        idle_timeout: Duration::from_millis(1000),
        heartbeat_interval: Duration::ZERO,
        timer_tick: Duration::from_millis(5),
        ..Config::loopback_for_tests(1)
    };
    let server = common::start(config);
    let mut idle = Raw::upgraded(server.local_addr(), "/");
    assert_eq!(idle.read_json()["type"], "connected");
    assert_eq!(idle.read_close_code(), Some(1000));
}
