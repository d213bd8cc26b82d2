//! `wsrelay-swarm`: parse the command line, run the scenario, print the report.

// Functions stay at most 60 lines (clippy.toml; issue 12).
#![warn(clippy::too_many_lines)]

use clap::Parser;
use loadtest::agent::controller::{run_controller, ControllerPlan};
use loadtest::cli::{Action, Cli};

fn main() {
    let cli = Cli::parse();
    let json = cli.command.json();
    let report_path = cli.command.report_path();
    match cli.command.into_action() {
        Action::Run(options) => match loadtest::run::run(*options) {
            Ok(report) => print_run(&report, json, report_path),
            Err(e) => fail(&e.to_string()),
        },
        Action::Echo(args) => {
            let common = args.common.clone();
            let report = match &common.nats {
                Some(url) => ControllerPlan::echo(&args, &raw_args())
                    .and_then(|plan| run_controller(&plan, url, common.agents)),
                None => args.run(),
            };
            finish(report, &common)
        }
        Action::Script(args) => {
            let common = args.common.clone();
            let report = match &common.nats {
                Some(url) => ControllerPlan::script(&args, &raw_args())
                    .and_then(|plan| run_controller(&plan, url, common.agents)),
                None => args.run(),
            };
            finish(report, &common)
        }
        Action::Board(args) => match loadtest::market::board::run(&args) {
            Ok(r) if json => println!("{}", r.to_json()),
            Ok(r) => print!("{}", r.to_text()),
            Err(e) => fail(&e),
        },
        Action::Throttle(args) => match loadtest::market::throttle::run(&args) {
            Ok(r) if json => println!("{}", r.to_json()),
            Ok(r) => print!("{}", r.to_text()),
            Err(e) => fail(&e),
        },
        Action::Agent(args) => {
            if let Err(e) = loadtest::agent::run_agent(&args) {
                fail(&e);
            }
        }
        Action::RecvBench {
            deliveries,
            content_bytes,
        } => match loadtest::recv_bench::run(deliveries, content_bytes) {
            Ok(bench) => print_recv_bench(&bench, json),
            Err(e) => fail(&e.to_string()),
        },
    }
}

/// Prints the report of `run` (JSON or text) and writes its HTML page to `--report`.
fn print_run(
    report: &loadtest::report::Report,
    json: bool,
    report_path: Option<std::path::PathBuf>,
) {
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    if let Some(path) = report_path {
        if let Err(e) = std::fs::write(&path, loadtest::html::render(report)) {
            fail(&format!("--report {}: {e}", path.display()));
        }
    }
}

/// Prints the result of `recv-bench` (JSON or text).
fn print_recv_bench(bench: &loadtest::recv_bench::RecvBench, json: bool) {
    if json {
        println!(
            "{{\"deliveries\":{},\"elapsed_s\":{:.4},\"frame_bytes\":{},\"deliveries_per_s\":{:.0}}}",
            bench.deliveries, bench.elapsed_s, bench.frame_bytes, bench.per_s()
        );
    } else {
        println!(
            "recv-bench: {} deliveries of {} bytes in {:.3} CPU-s on one thread: {:.2} M deliveries/s \
             (decode + UTF-8 + scan + gap check + histogram; no syscalls)",
            bench.deliveries,
            bench.frame_bytes,
            bench.elapsed_s,
            bench.per_s() / 1e6
        );
    }
}

/// Prints a run of `echo` or `script`; exits 1 when a threshold failed, 2 on an error.
fn finish(
    report: Result<loadtest::report::Report, String>,
    common: &loadtest::any::args::AnyCommon,
) {
    match report.and_then(|r| loadtest::any::args::finish(&r, common)) {
        Ok(0) => {}
        Ok(status) => std::process::exit(status),
        Err(e) => fail(&e),
    }
}

/// The command line after the binary and the subcommand (what a controller forwards).
fn raw_args() -> Vec<String> {
    std::env::args().skip(2).collect()
}

fn fail(message: &str) -> ! {
    eprintln!("wsrelay-swarm: {message}");
    std::process::exit(2);
}
