//! Smoke tests: short bounded scenarios against an in-process relay on 127.0.0.1:0, checking
//! exact delivery accounting (every measured publish reaches every other subscriber once).

use std::time::Duration;

use loadtest::cli::Cli;
use loadtest::report::Report;
use loadtest::run::run;

use clap::Parser;

fn run_args(args: &[&str]) -> Report {
    let mut argv = vec!["wsrelay-swarm"];
    argv.extend_from_slice(args);
    let mut options = Cli::parse_from(argv).command.into_options();
    options.progress = false;
    options.setup_timeout = Duration::from_secs(20);
    run(options).expect("the run starts")
}

fn assert_exact_delivery(report: &Report, audience: u64) {
    let s = &report.stats;
    assert!(
        s.sent_total > 0,
        "nothing was published: {}",
        report.to_text()
    );
    assert_eq!(s.received_total, s.due_total, "{}", report.to_text());
    assert_eq!(
        s.due_window,
        s.sent_window * audience,
        "{}",
        report.to_text()
    );
    assert_eq!(s.received_window, s.due_window, "{}", report.to_text());
    assert_eq!(report.loss(), 0);
    assert_eq!(s.gap_messages, 0);
    assert_eq!(s.reordered, 0);
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(s.latency_ns.len(), s.received_window);
    // Every measured publish reports how late it left the swarm.
    assert_eq!(s.send_lag_ns.len(), s.sent_window);
}

#[test]
fn fanout_one_to_twenty_loses_nothing() {
    let report = run_args(&[
        "fanout",
        "--subscribers",
        "20",
        "--rate",
        "1000",
        "--warmup",
        "50ms",
        "--duration",
        "200ms",
        "--drain",
        "5s",
    ]);
    assert_eq!(report.stats.conns_ready, 21);
    assert_exact_delivery(&report, 20);
}

#[test]
fn fanout_at_max_rate_over_two_threads_loses_nothing() {
    let report = run_args(&[
        "fanout",
        "--publishers",
        "2",
        "--subscribers",
        "30",
        "--channels",
        "2",
        "--threads",
        "2",
        "--duration",
        "500ms",
        "--warmup",
        "50ms",
        "--window",
        "3000",
    ]);
    assert_eq!(report.stats.conns_ready, 32);
    assert_exact_delivery(&report, 15);
}

#[test]
fn binary_rooms_reach_every_other_member() {
    let report = run_args(&[
        "rooms",
        "--rooms",
        "3",
        "--members",
        "4",
        "--hz",
        "100",
        "--binary",
        "--warmup",
        "50ms",
        "--duration",
        "200ms",
    ]);
    assert_eq!(report.stats.conns_ready, 12);
    assert_exact_delivery(&report, 3);
}

#[test]
fn conns_opens_and_holds_idle_connections() {
    let report = run_args(&["conns", "--connections", "50", "--hold", "100ms"]);
    assert_eq!(report.stats.conns_ready, 50);
    assert_eq!(report.stats.conns_failed, 0);
    assert_eq!(report.stats.connect_us.len(), 50);
    assert!(report.server_bytes_per_conn().is_some());
}

#[test]
fn churn_opens_and_closes_while_fanout_flows() {
    let report = run_args(&[
        "churn",
        "--subscribers",
        "10",
        "--rate",
        "500",
        "--churn-rate",
        "100",
        "--churn-hold",
        "20ms",
        "--warmup",
        "0s",
        "--duration",
        "300ms",
    ]);
    assert_exact_delivery(&report, 10);
    assert!(report.stats.churn_opened > 0);
    // Each churn connection that finished its close handshake got the relay's 1000 echo.
    let echoed = report.stats.close_codes.get(&1000).copied().unwrap_or(0);
    assert!(echoed > 0, "{}", report.to_text());
    assert!(echoed <= report.stats.churn_closed);
    assert!(report.stats.churn_closed <= report.stats.churn_opened);
}

/// Connections beyond one source address's ports come from 127.0.0.2, 127.0.0.3, …: a relay
/// that admits 20 connections per client IP takes all 60 when the swarm spreads them over
/// sources of 20, and refuses 40 of the same 60 from one source (which shows the limit is on).
#[test]
fn connections_beyond_one_source_use_further_loopback_addresses() {
    let mut config = wsrelay::Config::loopback_for_tests(1);
    config.connections_per_ip_max = 20;
    let relay = wsrelay::Server::start(config).expect("relay starts");
    let url = format!("ws://{}/", relay.local_addr());
    let conns = |extra: &[&str]| {
        let mut args = vec![
            "conns",
            "--url",
            &url,
            "--connections",
            "60",
            "--hold",
            "200ms",
        ];
        args.extend_from_slice(extra);
        run_args(&args)
    };

    let spread = conns(&["--ports-per-source", "20"]);
    assert_eq!(spread.stats.conns_ready, 60, "{}", spread.to_text());
    assert_eq!(spread.stats.conns_failed, 0, "{}", spread.to_text());

    let one_source = conns(&[]);
    assert_eq!(one_source.stats.conns_ready, 20, "{}", one_source.to_text());
    assert_eq!(
        one_source.stats.conns_failed,
        40,
        "{}",
        one_source.to_text()
    );
}

#[test]
fn several_urls_spread_subscribers_and_keep_publishers_on_the_first() {
    // Two relays that are not joined: subscribers on the second one get nothing, which shows
    // exactly where each connection went (publisher and 2 subscribers on A, 2 on B).
    let a = wsrelay::Server::start(wsrelay::Config::loopback_for_tests(1)).expect("relay a");
    let b = wsrelay::Server::start(wsrelay::Config::loopback_for_tests(1)).expect("relay b");
    let url_a = format!("ws://{}/", a.local_addr());
    let url_b = format!("ws://{}/", b.local_addr());
    let report = run_args(&[
        "fanout",
        "--subscribers",
        "4",
        "--rate",
        "200",
        "--duration",
        "200ms",
        "--drain",
        "300ms",
        "--url",
        &url_a,
        "--url",
        &url_b,
    ]);
    let s = &report.stats;
    assert_eq!(s.conns_ready, 5, "{}", report.to_text());
    assert!(s.sent_window > 0);
    assert_eq!(s.due_window, s.sent_window * 4);
    assert_eq!(s.received_window, s.sent_window * 2, "{}", report.to_text());
    assert_eq!(
        report.target,
        format!(
            "subscribers on {}, {}; publishers on {}",
            a.local_addr(),
            b.local_addr(),
            a.local_addr()
        )
    );
}

#[test]
fn rooms_with_ticks_deliver_everything_in_batches() {
    for binary in [false, true] {
        let mut args = vec![
            "rooms",
            "--rooms",
            "4",
            "--members",
            "5",
            "--hz",
            "100",
            "--tick",
            "20",
            "--warmup",
            "50ms",
            "--duration",
            "300ms",
            "--drain",
            "5s",
        ];
        if binary {
            args.push("--binary");
        }
        let report = run_args(&args);
        assert_exact_delivery(&report, 4);
        let s = &report.stats;
        // Each member's own messages come back in its room's batches; they are not deliveries.
        assert_eq!(s.own_in_batch, s.sent_total, "{}", report.to_text());
        // A batch carries several deliveries: fewer frames than deliveries.
        assert!(
            s.delivery_frames_during_window < s.received_during_window,
            "{}",
            report.to_text()
        );
    }
}
