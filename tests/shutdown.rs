//! Graceful shutdown: the real binary under SIGTERM closes every client with 1001 and exits 0;
//! the in-process handle does the same; a drain spreads 4200 closes.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{masked_frame, Raw};
use wsrelay::Config;

/// The relay process of a test; killed (by its own PID) if the test fails before it exits.
struct Relay(std::process::Child);

impl Drop for Relay {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Starts the `wsrelay` binary on a free loopback port and returns it with its address,
/// read from the start-up line.
fn spawn_binary(extra: &[&str]) -> (Relay, SocketAddr, BufReader<std::process::ChildStderr>) {
    let mut relay = Relay(
        Command::new(env!("CARGO_BIN_EXE_wsrelay"))
            .args(["--bind", "127.0.0.1", "--port", "0", "--threads", "2"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("binary starts"),
    );
    let mut stderr = BufReader::new(relay.0.stderr.take().expect("stderr"));
    let mut line = String::new();
    loop {
        line.clear();
        let n = stderr.read_line(&mut line).expect("read log");
        assert!(n > 0, "binary exited early");
        if let Some(rest) = line.split("listening on ws://").nth(1) {
            let addr = rest.split_whitespace().next().expect("address");
            return (relay, addr.parse().expect("socket address"), stderr);
        }
    }
}

#[test]
fn sigterm_closes_every_client_with_1001_and_exits_0() {
    let (mut child, addr, mut stderr) = spawn_binary(&[]);
    let mut clients: Vec<Raw> = (0..6).map(|_| Raw::upgraded(addr, "/")).collect();
    for c in clients.iter_mut() {
        assert_eq!(c.read_json()["type"], "connected");
    }
    sigterm(&child);
    for c in clients.iter_mut() {
        assert_eq!(c.read_close_code(), Some(1001));
        // Answer the close like a well-behaved client.
        c.send(&masked_frame(0x88, &1001u16.to_be_bytes()));
        assert!(c.reads_eof());
    }
    let exit = child.0.wait().expect("wait");
    assert!(exit.success(), "exit status {exit:?}");
    let mut rest = String::new();
    while stderr.read_line(&mut rest).unwrap_or(0) > 0 {}
    assert!(
        rest.contains("6 connections closed"),
        "summary line: {rest}"
    );
}

/// Sends SIGTERM to the relay process this test started (by its PID).
fn sigterm(relay: &Relay) {
    let status = Command::new("kill")
        .args(["-TERM", &relay.0.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

#[test]
fn a_second_signal_exits_at_once_with_status_1() {
    // A 10-minute grace and close timeout, and a client that never answers our close: only
    // the second signal can end the process before they are over.
    let (mut child, addr, _stderr) =
        spawn_binary(&["--shutdown-grace", "600000", "--close-timeout", "600000"]);
    let mut client = Raw::upgraded(addr, "/");
    assert_eq!(client.read_json()["type"], "connected");
    sigterm(&child);
    assert_eq!(client.read_close_code(), Some(1001));
    assert_eq!(
        child.0.try_wait().expect("try_wait"),
        None,
        "still in its grace"
    );
    sigterm(&child);
    // Bounded wait (far below the grace): the test fails instead of hanging.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(exit) = child.0.try_wait().expect("try_wait") {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exit after the second signal"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(exit.code(), Some(1), "exit status {exit:?}");
    assert!(client.reads_eof());
}

#[test]
fn handle_shutdown_flushes_queued_messages_before_the_close() {
    let server = common::relay(1);
    let mut a = common::Client::connect(server.local_addr());
    let mut b = Raw::upgraded(server.local_addr(), "/");
    assert_eq!(b.read_json()["type"], "connected");
    b.send(&masked_frame(
        0x81,
        br#"{"type":"subscribe","channel":"s"}"#,
    ));
    assert_eq!(b.read_json()["type"], "subscribed");
    for i in 0..10 {
        a.publish("s", serde_json::json!(i));
    }
    a.ping();
    server.shutdown();
    for i in 0..10 {
        assert_eq!(b.read_json()["content"], i);
    }
    assert_eq!(b.read_close_code(), Some(1001));
    let summary = server.join();
    assert_eq!(summary.connections_closed, 2);
}

#[test]
fn drain_spreads_closes_with_the_reconnect_now_code() {
    let config = Config {
        drain_over: Duration::from_millis(200),
        timer_tick: Duration::from_millis(5),
        ..Config::loopback_for_tests(1)
    };
    let server = common::start(config);
    let mut clients: Vec<Raw> = (0..4)
        .map(|_| Raw::upgraded(server.local_addr(), "/"))
        .collect();
    for c in clients.iter_mut() {
        assert_eq!(c.read_json()["type"], "connected");
    }
    server.shutdown();
    for c in clients.iter_mut() {
        assert_eq!(c.read_close_code(), Some(4200));
    }
}

#[test]
fn no_new_connections_are_accepted_after_shutdown_begins() {
    let server = common::relay(1);
    let addr = server.local_addr();
    let mut c = Raw::upgraded(addr, "/");
    assert_eq!(c.read_json()["type"], "connected");
    server.shutdown();
    assert_eq!(c.read_close_code(), Some(1001));
    c.send(&masked_frame(0x88, &1001u16.to_be_bytes()));
    assert!(c.reads_eof());
    server.join();
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err());
}
