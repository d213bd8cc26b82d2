//! Command line: one subcommand per scenario, every run bounded by defaults.
//!
//! Owns: flags, their defaults and their conversion into a `RunOptions`. May not touch:
//! sockets, threads.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::driver::Settings;
use crate::plan::{ChurnSpec, FanoutShape, Plan, RoomsShape};
use crate::run::RunOptions;
use crate::schedule::Rate;

/// A bounded WebSocket client swarm for pub/sub relays (fanout, rooms, conns, churn) and any
/// WebSocket server (echo, script; several machines with agent). With no --url the relay
/// scenarios and echo start an in-process wsrelay on a free loopback port and measure that.
/// Targets must be loopback (127.0.0.0/8, ::1) unless --allow-remote is given.
#[derive(Debug, Parser)]
#[command(name = "wsrelay-swarm", version)]
pub struct Cli {
    /// The scenario.
    #[command(subcommand)]
    pub command: Command,
}

/// Scenarios.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// P publishers → S subscribers on C channels.
    Fanout(FanoutArgs),
    /// R rooms × K members; each member publishes to its room at H Hz.
    Rooms(RoomsArgs),
    /// Open N idle connections at a bounded ramp, hold them, report connect times and memory.
    Conns(ConnsArgs),
    /// A fanout while connections open and close at a given rate.
    Churn(ChurnArgs),
    /// CPU cost of the receive path alone (decode, scan, check, record), no I/O.
    RecvBench(RecvBenchArgs),
    /// N connections send to any echo server at a fixed rate; latency per reply.
    Echo(crate::any::args::EchoArgs),
    /// A scripted scenario for any WebSocket server, from a TOML file.
    Script(crate::any::args::ScriptArgs),
    /// Serve runs for a controller (echo or script with --nats) through NATS.
    Agent(crate::agent::AgentArgs),
    /// N boards × K keys kept as keyed snapshots; S subscribers each need a whole board
    /// (time to the full snapshot, bytes). The relay needs --snapshot-for 'board.*'.
    Board(crate::market::BoardArgs),
    /// One hot channel, many subscribers with throttle_ms (deliveries/s, server CPU, stale
    /// values at the end).
    Throttle(crate::market::ThrottleArgs),
}

/// `recv-bench` flags.
#[derive(Debug, Clone, Args)]
pub struct RecvBenchArgs {
    /// Deliveries to process.
    #[arg(long, default_value_t = 20_000_000)]
    pub deliveries: u64,
    /// Content bytes per delivery.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Action {
    /// A scenario run.
    Run(Box<RunOptions>),
    /// The echo scenario.
    Echo(Box<crate::any::args::EchoArgs>),
    /// A scenario file.
    Script(Box<crate::any::args::ScriptArgs>),
    /// Agent mode.
    Agent(crate::agent::AgentArgs),
    /// The `board` scenario.
    Board(Box<crate::market::BoardArgs>),
    /// The `throttle` scenario.
    Throttle(Box<crate::market::ThrottleArgs>),
    /// The receive-path benchmark.
    RecvBench {
        /// Deliveries to process.
        deliveries: u64,
        /// Content bytes per delivery.
        content_bytes: usize,
    },
}

/// Flags of every scenario.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Target `ws://HOST:PORT/PATH`; without it an in-process relay is started. Repeat it for
    /// relays joined in a cluster: subscribers spread over every URL in turn, publishers go to
    /// the first (or to --publish-url).
    #[arg(long = "url")]
    pub urls: Vec<String>,
    /// Where publishing connections go when several --url are given (default: the first).
    #[arg(long)]
    pub publish_url: Option<String>,
    /// Allow a non-loopback target (only a server you are allowed to load).
    #[arg(long)]
    pub allow_remote: bool,
    /// Connect with TLS (as a `wss://` URL does); needs --tls-ca or --tls-insecure.
    #[arg(long)]
    pub tls: bool,
    /// With TLS: trust the server certificates these CAs signed (PEM file).
    #[arg(long)]
    pub tls_ca: Option<std::path::PathBuf>,
    /// With TLS: do not verify the server's certificate (self-signed, loopback only).
    #[arg(long, conflicts_with = "tls_ca")]
    pub tls_insecure: bool,
    /// Driver threads (each a mio loop; no thread per connection).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// The server's pid: its CPU time and RSS are reported.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write a self-contained HTML report to this file.
    #[arg(long)]
    pub report: Option<std::path::PathBuf>,
    /// New connections per second during setup.
    #[arg(long, default_value_t = 5000.0)]
    pub ramp: f64,
    /// Longest setup before the run starts anyway (e.g. 30s, 500ms).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub setup_timeout: Duration,
    /// Event loops of the in-process relay (without --url).
    #[arg(long, default_value_t = 1)]
    pub relay_loops: usize,
    /// Connections per source address before the next one (127.0.0.2, 127.0.0.3, …) is used
    /// (default: the ephemeral ports of `ip_local_port_range` minus 1,000, about 27,000).
    #[arg(long)]
    pub ports_per_source: Option<usize>,
    /// Offer permessage-deflate (RFC 7692) without context takeover on every connection;
    /// compressed deliveries are inflated before they are checked. The in-process relay
    /// then runs with `--deflate`.
    #[arg(long)]
    pub deflate: bool,
}

impl Default for Common {
    fn default() -> Self {
        Common {
            urls: Vec::new(),
            publish_url: None,
            allow_remote: false,
            tls: false,
            tls_ca: None,
            tls_insecure: false,
            threads: 1,
            server_pid: None,
            json: false,
            report: None,
            ramp: 5000.0,
            setup_timeout: Duration::from_secs(60),
            relay_loops: 1,
            ports_per_source: None,
            deflate: false,
        }
    }
}

/// Flags of the scenarios that publish.
#[derive(Debug, Clone, Args)]
pub struct Traffic {
    /// Content bytes per publish (JSON content value, or binary payload after the channel).
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Use the binary data plane.
    #[arg(long)]
    pub binary: bool,
    /// JSON content shaped like market data (an order book of varying prices and sizes)
    /// instead of `x` padding, so that compression sees realistic text (`--deflate`).
    #[arg(long)]
    pub market_data: bool,
    /// Measured window.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Warm-up before the window (publishes in it are not measured).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Longest wait for outstanding deliveries after publishing stops.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub drain: Duration,
    /// Max-rate flow window: deliveries due but not yet received (50 publishes to 1,000
    /// subscribers keep a fast server busy without queueing seconds at a slow one).
    #[arg(long, default_value_t = 50_000)]
    pub window: u64,
}

/// `fanout` flags.
#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub traffic: Traffic,
    /// Publishers (P).
    #[arg(long, default_value_t = 1)]
    pub publishers: u32,
    /// Subscribers (S).
    #[arg(long, default_value_t = 1000)]
    pub subscribers: u32,
    /// Channels (C).
    #[arg(long, default_value_t = 1)]
    pub channels: u32,
    /// Publishes per second (all publishers together), or `max`.
    #[arg(long, default_value = "max", value_parser = parse_rate)]
    pub rate: Rate,
}

/// `rooms` flags.
#[derive(Debug, Clone, Args)]
pub struct RoomsArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub traffic: Traffic,
    /// Rooms (R).
    #[arg(long, default_value_t = 250)]
    pub rooms: u32,
    /// Members per room (K).
    #[arg(long, default_value_t = 8)]
    pub members: u32,
    /// Publishes per second of each member (H).
    #[arg(long, default_value_t = 20.0)]
    pub hz: f64,
    /// Rooms tick every MS ms (wsrelay `--tick-for 'room.*=MS'`: one batch frame per member
    /// per tick). Sets it on the in-process relay; start an external relay with it.
    #[arg(long, value_name = "MS")]
    pub tick: Option<u64>,
}

/// `conns` flags.
#[derive(Debug, Clone, Args)]
pub struct ConnsArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// Connections (N).
    #[arg(long, default_value_t = 1000)]
    pub connections: u32,
    /// How long to hold them once set up.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub hold: Duration,
}

/// `churn` flags.
#[derive(Debug, Clone, Args)]
pub struct ChurnArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub fanout: FanoutArgs,
    /// Churn connections opened per second.
    #[arg(long, default_value_t = 200.0)]
    pub churn_rate: f64,
    /// How long each churn connection stays after setup.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub churn_hold: Duration,
}

/// `10s`, `250ms`, `2m`, `1.5` (seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("not a duration: {text} (try 10s, 250ms, 2m)"))?;
    if !(0.0..=86_400.0).contains(&(value * scale)) {
        return Err(format!("duration out of range: {text}"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

/// `max` or a positive number of messages per second.
pub fn parse_rate(text: &str) -> Result<Rate, String> {
    if text.eq_ignore_ascii_case("max") {
        return Ok(Rate::Max);
    }
    match text.parse::<f64>() {
        Ok(per_s) if per_s > 0.0 && per_s.is_finite() => Ok(Rate::PerSecond(per_s)),
        _ => Err(format!("not a rate: {text} (a positive number or max)")),
    }
}

impl Command {
    /// Whether JSON output was asked.
    pub fn json(&self) -> bool {
        match self {
            Command::Fanout(a) => a.common.json,
            Command::Rooms(a) => a.common.json,
            Command::Conns(a) => a.common.json,
            Command::Churn(a) => a.fanout.common.json,
            Command::RecvBench(a) => a.json,
            Command::Echo(a) => a.common.json,
            Command::Script(a) => a.common.json,
            Command::Board(a) => a.common.json,
            Command::Throttle(a) => a.common.json,
            Command::Agent(_) => false,
        }
    }

    /// Where the HTML report goes, if asked (`--report`).
    pub fn report_path(&self) -> Option<std::path::PathBuf> {
        match self {
            Command::Fanout(a) => a.common.report.clone(),
            Command::Rooms(a) => a.common.report.clone(),
            Command::Conns(a) => a.common.report.clone(),
            Command::Churn(a) => a.fanout.common.report.clone(),
            Command::Echo(a) => a.common.report.clone(),
            Command::Script(a) => a.common.report.clone(),
            Command::RecvBench(_)
            | Command::Agent(_)
            | Command::Board(_)
            | Command::Throttle(_) => None,
        }
    }

    /// What this command asks for.
    pub fn into_action(self) -> Action {
        match self {
            Command::RecvBench(a) => Action::RecvBench {
                deliveries: a.deliveries,
                content_bytes: a.size,
            },
            Command::Echo(a) => Action::Echo(Box::new(a)),
            Command::Script(a) => Action::Script(Box::new(a)),
            Command::Agent(a) => Action::Agent(a),
            Command::Board(a) => Action::Board(Box::new(a)),
            Command::Throttle(a) => Action::Throttle(Box::new(a)),
            scenario => Action::Run(Box::new(scenario.into_options())),
        }
    }

    /// The run a scenario asks for (`recv-bench` is not one: it runs no connections).
    pub fn into_options(self) -> RunOptions {
        match self {
            Command::RecvBench(_)
            | Command::Echo(_)
            | Command::Script(_)
            | Command::Agent(_)
            | Command::Board(_)
            | Command::Throttle(_) => options(
                "recv-bench",
                Plan::idle(0),
                &Common::default(),
                None,
                Duration::ZERO,
            ),
            Command::Fanout(a) => fanout_options("fanout", &a, None),
            Command::Churn(a) => {
                let churn = ChurnSpec {
                    opens_per_s: a.churn_rate,
                    hold_ns: a.churn_hold.as_nanos() as u64,
                    channel: 0,
                };
                fanout_options("churn", &a.fanout, Some(churn))
            }
            Command::Rooms(a) => {
                let shape = RoomsShape {
                    rooms: a.rooms,
                    members: a.members.max(1),
                    hz: a.hz,
                };
                let mut plan = Plan::rooms(shape, a.traffic.size, a.traffic.binary);
                plan.tick_ms = a.tick.filter(|&ms| ms > 0);
                let name = match plan.tick_ms {
                    Some(ms) => format!("rooms --tick {ms}"),
                    None => "rooms".to_string(),
                };
                options(&name, plan, &a.common, Some(&a.traffic), Duration::ZERO)
            }
            Command::Conns(a) => {
                options("conns", Plan::idle(a.connections), &a.common, None, a.hold)
            }
        }
    }
}

fn fanout_options(name: &str, a: &FanoutArgs, churn: Option<ChurnSpec>) -> RunOptions {
    let shape = FanoutShape {
        publishers: a.publishers,
        subscribers: a.subscribers,
        channels: a.channels,
        rate: a.rate,
    };
    let mut plan = Plan::fanout(shape, a.traffic.size, a.traffic.binary);
    plan.churn = churn;
    options(name, plan, &a.common, Some(&a.traffic), Duration::ZERO)
}

fn options(
    name: &str,
    plan: Plan,
    common: &Common,
    traffic: Option<&Traffic>,
    hold: Duration,
) -> RunOptions {
    let (warmup, duration, drain, window) = match traffic {
        Some(t) => (t.warmup, t.duration, t.drain, t.window),
        None => (Duration::ZERO, hold, Duration::ZERO, 0),
    };
    RunOptions {
        scenario: name.to_string(),
        plan,
        urls: common.urls.clone(),
        publish_url: common.publish_url.clone(),
        allow_remote: common.allow_remote,
        tls: common.tls,
        tls_trust: match (&common.tls_ca, common.tls_insecure) {
            (Some(path), _) => Some(crate::tls::Trust::CaFile(path.clone())),
            (None, true) => Some(crate::tls::Trust::Insecure),
            (None, false) => None,
        },
        relay_loops: common.relay_loops,
        ports_per_source: common.ports_per_source,
        server_pid: common.server_pid,
        setup_timeout: common.setup_timeout,
        drain_max: drain,
        settings: Settings {
            threads: common.threads.max(1),
            ramp_per_s: common.ramp.max(1.0),
            setups_inflight_max: 1024,
            inflight_deliveries_max: window.max(1),
            warmup_ns: warmup.as_nanos() as u64,
            duration_ns: duration.as_nanos() as u64,
            deflate: common.deflate,
            market_data: traffic.is_some_and(|t| t.market_data),
        },
        progress: !common.json,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations_and_rates() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_rate("MAX"), Ok(Rate::Max));
        assert_eq!(parse_rate("2000"), Ok(Rate::PerSecond(2000.0)));
        assert!(parse_rate("0").is_err());
    }

    #[test]
    fn cli_builds_bounded_runs() {
        let cli = Cli::parse_from(["wsrelay-swarm", "rooms", "--rooms", "2", "--members", "3"]);
        let options = cli.command.into_options();
        assert_eq!(options.plan.conns.len(), 6);
        assert_eq!(options.settings.duration_ns, 5_000_000_000);
        assert!(options.urls.is_empty());
    }
}
