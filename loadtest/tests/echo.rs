//! The `echo` scenario against a real echo server: wsrelay's `/echo` on 127.0.0.1:0, with exact
//! accounting (every message sent in the window comes back once, none lost, none foreign).

use clap::Parser;
use loadtest::cli::{Action, Cli};
use loadtest::report::Report;

fn echo_relay() -> wsrelay::ServerHandle {
    let mut config = wsrelay::Config::loopback_for_tests(1);
    config.echo_enabled = true;
    wsrelay::Server::start(config).expect("relay starts")
}

fn run_echo(url: &str, extra: &[&str]) -> Report {
    let mut argv = vec!["wsrelay-swarm", "echo", "--url", url];
    argv.extend_from_slice(extra);
    match Cli::parse_from(argv).command.into_action() {
        Action::Echo(args) => args.run().expect("the run starts"),
        other => panic!("not an echo run: {other:?}"),
    }
}

fn assert_exact(report: &Report, connections: u64) {
    let s = &report.stats;
    let text = report.to_text();
    assert_eq!(s.conns_ready, connections, "{text}");
    assert!(s.sent_window > 0, "{text}");
    assert_eq!(s.due_window, s.sent_window, "{text}");
    assert_eq!(s.received_window, s.sent_window, "{text}");
    assert_eq!(s.received_total, s.sent_total, "{text}");
    assert_eq!(report.loss(), 0, "{text}");
    assert_eq!(s.latency_ns.len(), s.received_window, "{text}");
    assert_eq!(s.send_lag_ns.len(), s.sent_window, "{text}");
    assert_eq!(s.gap_messages, 0, "{text}");
    assert_eq!(s.reordered, 0, "{text}");
    assert_eq!(s.publish_skipped, 0, "{text}");
    assert!(s.errors.is_empty(), "{text}");
    assert_eq!(report.any.map(|a| a.unmatched_total), Some(0), "{text}");
}

/// 20 connections at 100 messages/s each for 300 ms: the schedule fixes the count exactly
/// (each connection's messages fall at phase + k × 10 ms).
#[test]
fn echo_text_matched_by_sequence_loses_nothing() {
    let relay = echo_relay();
    let url = format!("ws://{}/echo", relay.local_addr());
    let report = run_echo(
        &url,
        &[
            "--connections",
            "20",
            "--rate",
            "2000",
            "--warmup",
            "100ms",
            "--duration",
            "300ms",
        ],
    );
    assert_exact(&report, 20);
    // 300 ms at 100/s per connection: exactly 30 scheduled per connection in the window.
    assert_eq!(report.stats.sent_window, 20 * 30, "{}", report.to_text());
    let json = report.to_json();
    assert_eq!(json["expected"], json["received"]);
    assert_eq!(json["loss"], 0);
    let series = &json["series"];
    let received: u64 = series["received"]
        .as_array()
        .expect("per-second received")
        .iter()
        .filter_map(|v| v.as_u64())
        .sum();
    assert_eq!(received, report.stats.received_total);
}

/// Two driver threads share the connections (3 and 2); the counts are the same as on one.
#[test]
fn echo_binary_matched_in_order_loses_nothing() {
    let relay = echo_relay();
    let url = format!("ws://{}/echo", relay.local_addr());
    let report = run_echo(
        &url,
        &[
            "--connections",
            "5",
            "--threads",
            "2",
            "--rate-per-connection",
            "200",
            "--binary",
            "--size",
            "512",
            "--match",
            "order",
            "--warmup",
            "0s",
            "--duration",
            "250ms",
        ],
    );
    assert_exact(&report, 5);
    assert_eq!(report.stats.sent_window, 5 * 50, "{}", report.to_text());
}

#[test]
fn echo_payload_file_is_sent_verbatim_and_matched_in_order() {
    let relay = echo_relay();
    let url = format!("ws://{}/echo", relay.local_addr());
    let path = std::env::temp_dir().join(format!("swarm-echo-payload-{}", std::process::id()));
    std::fs::write(
        &path,
        br#"{"op":"ping","body":"any bytes the server echoes"}"#,
    )
    .unwrap();
    let report = run_echo(
        &url,
        &[
            "--connections",
            "3",
            "--rate",
            "300",
            "--payload-file",
            path.to_str().unwrap(),
            "--warmup",
            "0s",
            "--duration",
            "200ms",
        ],
    );
    std::fs::remove_file(&path).unwrap();
    assert_exact(&report, 3);
    assert_eq!(report.stats.sent_window, 3 * 20, "{}", report.to_text());
}

/// A non-loopback `--url` without --allow-remote: exit status 2 and the reason, no report.
/// (192.0.2.1 is TEST-NET-1, RFC 5737: nothing would answer there anyway.)
#[test]
fn echo_refuses_a_remote_url_without_allow_remote() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wsrelay-swarm"))
        .args(["echo", "--url", "ws://192.0.2.1:9/echo", "--duration", "1s"])
        .output()
        .expect("the swarm runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("192.0.2.1 is not a loopback address; pass --allow-remote"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "no report: {:?}", output.stdout);
}
