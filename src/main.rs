//! The `wsrelay` binary: parse flags, start the relay, wait for SIGINT/SIGTERM, shut down
//! gracefully (a second signal exits at once), print a one-line summary.

#![forbid(unsafe_code)]

mod cli;
mod config_file;

use std::io::IsTerminal;
use std::process::ExitCode;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use wsrelay::config::{Config, LogFormat};
use wsrelay::Server;

fn main() -> ExitCode {
    let args = match cli::action(std::env::args_os().collect()) {
        Ok(cli::Action::Serve(args)) => args,
        Ok(cli::Action::Print(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
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
    init_logging(config.log_format);
    install_panic_policy();
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("wsrelay: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: Config) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    let server = Server::start(config.clone())?;
    tracing::info!(
        "wsrelay listening on ws://{} with {} event loops (max message {} B, heartbeat {} ms / {} ms, outbox {} B, slow consumer: {})",
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
    if signals.forever().next().is_some() {
        tracing::info!("shutting down: closing connections with 1001 (signal again to exit now)");
        server.shutdown();
        std::thread::spawn(move || {
            if signals.forever().next().is_some() {
                eprintln!("wsrelay: second signal, exiting now");
                std::process::exit(1);
            }
        });
    }
    let summary = server.join();
    tracing::info!(
        "wsrelay stopped: {} connections closed, {} messages published, {} delivered",
        summary.connections_closed,
        summary.messages_published,
        summary.messages_delivered
    );
    Ok(())
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a terminal: a log file or journald gets plain text.
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
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
