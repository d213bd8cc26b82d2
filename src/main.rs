//! The `wsrelay` binary: parse flags (and the configuration file), start the relay, reload the
//! configuration on SIGHUP, shut down gracefully on SIGINT/SIGTERM (a second signal exits at
//! once), print a one-line summary.

#![forbid(unsafe_code)]
// Functions stay at most 60 lines (clippy.toml; issue 12).
#![warn(clippy::too_many_lines)]

mod cli;
mod cli_cluster;
mod config_file;
mod logging;

use std::process::ExitCode;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use wsrelay::config::Config;
use wsrelay::{Server, ServerHandle};

fn main() -> ExitCode {
    let args = match cli::action(std::env::args_os().collect()) {
        Ok(cli::Action::Serve(args)) => args,
        Ok(cli::Action::Print(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(cli::CliError::Clap(e)) => e.exit(),
        Err(cli::CliError::Usage(e)) => {
            eprintln!("wsrelay: {e}");
            return ExitCode::from(2);
        }
    };
    let config = match args.to_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wsrelay: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Values that cannot work are a usage error, like a bad flag (clap's status 2).
    if let Err(e) = config.validate() {
        eprintln!("wsrelay: {e}");
        return ExitCode::from(2);
    }
    let filter = match logging::parse(args.log_level()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("wsrelay: {e}");
            return ExitCode::from(2);
        }
    };
    let log_level = logging::init(config.log_format, filter, args.log_level());
    install_panic_policy();
    match run(config, &log_level) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("wsrelay: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: Config, log_level: &logging::LogLevel) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    let server = Server::start(config.clone())?;
    tracing::info!(
        "wsrelay listening on {}://{} with {} event loops (max message {} B, heartbeat {} ms / {} ms, outbox {} B, slow consumer: {})",
        if config.tls.is_some() { "wss" } else { "ws" },
        server.local_addr(),
        config.loops,
        config.message_bytes_max,
        config.heartbeat_interval.as_millis(),
        config.heartbeat_timeout.as_millis(),
        config.outbox_bytes_max,
        config.slow_consumer.as_str(),
    );
    if let Some(addr) = server.metrics_addr() {
        tracing::info!("metrics on http://{addr}/metrics");
    }
    if config.auth.is_none() {
        tracing::warn!("authentication is not configured: anyone can subscribe and publish");
    }
    for signal in signals.forever() {
        match signal {
            SIGHUP => reload(&server, log_level),
            _ => break,
        }
    }
    tracing::info!("shutting down: closing connections with 1001 (signal again to exit now)");
    server.shutdown();
    std::thread::spawn(move || {
        if signals.forever().any(|s| s != SIGHUP) {
            eprintln!("wsrelay: second signal, exiting now");
            std::process::exit(1);
        }
    });
    let summary = server.join();
    tracing::info!(
        "wsrelay stopped: {} connections closed, {} messages published, {} delivered",
        summary.connections_closed,
        summary.messages_published,
        summary.messages_delivered
    );
    Ok(())
}

/// SIGHUP: the command line again with the configuration file read anew (and key files),
/// applied without dropping connections; a file that does not work changes nothing.
fn reload(server: &ServerHandle, log_level: &logging::LogLevel) {
    let loaded = match cli::action(std::env::args_os().collect()) {
        Ok(cli::Action::Serve(args)) => args
            .to_config()
            .and_then(|c| logging::parse(args.log_level()).map(|_| (c, args))),
        Ok(cli::Action::Print(_)) => Err("not a serve command line".into()),
        Err(e) => Err(e.to_string()),
    };
    let (config, args) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            server.reload_failed();
            return tracing::error!("configuration reload refused, nothing changed: {e}");
        }
    };
    match server.reload(config) {
        Ok(report) => {
            let mut changed = report.changed;
            if log_level.apply(args.log_level()).unwrap_or(false) {
                changed.push("log-level");
            }
            tracing::info!(
                "configuration reloaded; changed: [{}]; need a restart (kept as they were): [{}]",
                changed.join(", "),
                report.needs_restart.join(", ")
            );
        }
        Err(e) => tracing::error!("configuration reload refused, nothing changed: {e}"),
    }
}

/// A panic means a broken invariant, never bad input (input errors are values). Policy: log it
/// and abort the whole process, so a supervisor restarts a clean relay instead of leaving a
/// loop dead while its connections hang.
fn install_panic_policy() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!("panic: {info}; aborting");
        default_hook(info);
        std::process::abort();
    }));
}
