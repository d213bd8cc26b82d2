//! Agent mode through a real `nats-server` on a free loopback port: two agents (the real
//! binary) and a controller split one echo run, start it together and produce one report
//! whose counts are the sums of the agents'.
//!
//! Fails when `nats-server` is missing, unless `WSRELAY_SKIP_NATS=1`. Every process started
//! here is killed by its PID when the test ends, also on failure (`Killed` guards).

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A child process killed (by its PID) and reaped when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn start_nats() -> (Killed, String) {
    let port = free_port();
    let child = Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server starts (apt-get install -y nats-server, or set WSRELAY_SKIP_NATS=1)");
    let guard = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nats-server did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (guard, format!("nats://127.0.0.1:{port}"))
}

fn start_agent(nats: &str, name: &str) -> Killed {
    let child = Command::new(env!("CARGO_BIN_EXE_wsrelay-swarm"))
        .args(["agent", "--nats", nats, "--name", name, "--max-runs", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("agent starts");
    Killed(child)
}

fn sum(agents: &[Value], key: &str) -> u64 {
    agents.iter().map(|a| a[key].as_u64().expect(key)).sum()
}

#[test]
fn two_agents_and_a_controller_merge_one_report() {
    if std::env::var("WSRELAY_SKIP_NATS").is_ok_and(|v| v == "1") {
        eprintln!("WSRELAY_SKIP_NATS=1: agent mode is not tested");
        return;
    }
    let (_nats_guard, nats) = start_nats();
    let mut config = wsrelay::Config::loopback_for_tests(1);
    config.echo_enabled = true;
    let relay = wsrelay::Server::start(config).expect("relay starts");
    let url = format!("ws://{}/echo", relay.local_addr());
    let _agents = [start_agent(&nats, "agent-a"), start_agent(&nats, "agent-b")];

    let output = Command::new(env!("CARGO_BIN_EXE_wsrelay-swarm"))
        .args([
            "echo",
            "--nats",
            &nats,
            "--agents",
            "2",
            "--url",
            &url,
            "--connections",
            "10",
            "--rate",
            "1000",
            "--warmup",
            "0s",
            "--duration",
            "300ms",
            "--json",
        ])
        .output()
        .expect("the controller runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "controller failed: {stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    let agents = report["agents"].as_array().expect("agents in the report");
    assert_eq!(agents.len(), 2, "{report}");
    let names: Vec<&str> = agents.iter().filter_map(|a| a["agent"].as_str()).collect();
    assert_eq!(names, ["agent-a", "agent-b"]);
    for agent in agents {
        assert_eq!(agent["connections_planned"], 5, "{agent}");
        assert!(agent["clock_offset_ns"].is_i64(), "{agent}");
        assert!(agent["clock_rtt_ns"].is_u64(), "{agent}");
    }
    // The merged counts are the agents' sums, and the split loses nothing: 10 connections at
    // 100 messages/s each for 300 ms are exactly 300 messages stamped in the window.
    assert_eq!(report["sent"].as_u64(), Some(sum(agents, "sent")));
    assert_eq!(report["received"].as_u64(), Some(sum(agents, "received")));
    assert_eq!(
        report["connections"]["ready"].as_u64(),
        Some(sum(agents, "connections_ready"))
    );
    assert_eq!(report["sent"], 300, "{report}");
    assert_eq!(report["received"], 300, "{report}");
    assert_eq!(report["connections"]["ready"], 10, "{report}");
    assert_eq!(report["loss"], 0, "{report}");
    assert_eq!(report["latency_us"]["samples"], 300, "{report}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
}
