//! Agent mode through a real `nats-server` on a free loopback port: two agents (the real
//! binary) and a controller split one echo run, start it together and produce one report
//! whose counts are the sums of the agents'.
//!
//! nats-server is `$NATS_SERVER_BIN`, by default `/usr/sbin/nats-server` (Debian's package;
//! off a non-root PATH), as in tests/cluster/harness.rs. Fails when it is missing, unless
//! `WSRELAY_SKIP_NATS=1`. Every process started
//! here is killed by its PID when the test ends, also on failure (`Killed` guards).

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
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

/// The nats-server binary, or `None` when the tests are to be skipped (explicitly).
fn nats_bin() -> Option<PathBuf> {
    let bin = PathBuf::from(
        std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "/usr/sbin/nats-server".into()),
    );
    if bin.exists() {
        return Some(bin);
    }
    if std::env::var("WSRELAY_SKIP_NATS").is_ok_and(|v| v == "1") {
        eprintln!(
            "skipping: {} missing and WSRELAY_SKIP_NATS=1",
            bin.display()
        );
        return None;
    }
    panic!(
        "{} not found: apt-get install -y nats-server, set NATS_SERVER_BIN, or set \
         WSRELAY_SKIP_NATS=1 to skip agent mode",
        bin.display()
    );
}

fn start_nats(bin: &PathBuf) -> (Killed, String) {
    let port = free_port();
    let child = Command::new(bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server starts");
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

/// The controller: 10 connections at 1,000 messages/s for 300 ms on 2 agents, JSON report.
fn run_echo_controller(nats: &str, url: &str) -> std::process::Output {
    let flags = "--agents 2 --connections 10 --rate 1000 --warmup 0s --duration 300ms --json";
    Command::new(env!("CARGO_BIN_EXE_wsrelay-swarm"))
        .args(["echo", "--nats", nats, "--url", url])
        .args(flags.split(' '))
        // The echo server runs in this test's process, on the controller's machine.
        .args(["--server-pid", &std::process::id().to_string()])
        .output()
        .expect("the controller runs")
}

#[test]
fn two_agents_and_a_controller_merge_one_report() {
    let Some(bin) = nats_bin() else {
        return;
    };
    let (_nats_guard, nats) = start_nats(&bin);
    let mut config = wsrelay::Config::loopback_for_tests(1);
    config.echo_enabled = true;
    let relay = wsrelay::Server::start(config).expect("relay starts");
    let url = format!("ws://{}/echo", relay.local_addr());
    let _agents = [start_agent(&nats, "agent-a"), start_agent(&nats, "agent-b")];

    let output = run_echo_controller(&nats, &url);
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
    // The controller measured the server's CPU over the window (the agents cannot see its
    // process). The run is shorter than a second: no per-second sample, null, not 0.
    assert!(
        report["server_cpu_s"].as_f64().is_some_and(|s| s >= 0.0),
        "{report}"
    );
    assert_eq!(
        report["series"]["conns_open"],
        serde_json::json!([null]),
        "{report}"
    );
}

/// `--server-pid` with `--nats` names a process on the controller's machine: one that does not
/// exist here is refused before any agent is asked (no NATS needed). 4194305 is above the
/// largest pid Linux hands out (pid_max ≤ 2^22).
#[test]
fn a_controller_refuses_a_server_pid_it_cannot_see() {
    let output = Command::new(env!("CARGO_BIN_EXE_wsrelay-swarm"))
        .args([
            "echo",
            "--nats",
            "nats://127.0.0.1:9",
            "--url",
            "ws://127.0.0.1:9/echo",
        ])
        .args(["--server-pid", "4194305"])
        .output()
        .expect("the controller runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--server-pid 4194305: no such process on this machine"),
        "{stderr}"
    );
}

/// A remote target runs only when the controller AND the agent allow it: an agent started
/// without --allow-remote refuses the run that a controller with --allow-remote sends, and the
/// controller reports why (exit status 2). A controller without the flag refuses it before
/// asking any agent. (192.0.2.1 is TEST-NET-1, RFC 5737: nothing is connected to.)
#[test]
fn an_agent_refuses_a_remote_target_unless_it_allows_remote_itself() {
    let remote = ["--url", "ws://192.0.2.1:9/echo", "--duration", "1s"];
    let output = Command::new(env!("CARGO_BIN_EXE_wsrelay-swarm"))
        .args(["echo", "--nats", "nats://127.0.0.1:9"])
        .args(remote)
        .output()
        .expect("the controller runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("is not a loopback address; pass --allow-remote"),
        "{stderr}"
    );

    let Some(bin) = nats_bin() else {
        return;
    };
    let (_nats_guard, nats) = start_nats(&bin);
    let _agent = start_agent(&nats, "agent-local");
    let output = Command::new(env!("CARGO_BIN_EXE_wsrelay-swarm"))
        .args(["echo", "--nats", &nats, "--allow-remote"])
        .args(remote)
        .output()
        .expect("the controller runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("agent agent-local: this agent was started without --allow-remote"),
        "{stderr}"
    );
    assert!(
        stderr.contains("192.0.2.1 is not a loopback address"),
        "{stderr}"
    );
}
