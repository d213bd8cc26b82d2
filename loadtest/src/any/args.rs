//! Command line of the scenarios for any server (`echo`, `script`) and their conversion into
//! a run: the target (or an in-process wsrelay serving `/echo`), the scenario, the output.
//!
//! Owns: these flags and the echo scenario's shape. May not touch: sockets, threads.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::any::driver::AnySettings;
use crate::any::run::{run_any, AnyOptions};
use crate::any::scenario::{Group, Matching, Payload, Periodic, Scenario};
use crate::any::threshold::Threshold;
use crate::cli::parse_duration;
use crate::payload::JSON_CONTENT_BYTES_MIN;
use crate::report::Report;
use crate::run::ServerProbe;
use crate::scan::BINARY_STAMP_BYTES;
use crate::schedule::Rate;
use crate::target::Target;
use crate::tls::{TlsClient, TlsClients, Trust};

/// Largest `--payload-file`.
const PAYLOAD_FILE_BYTES_MAX: u64 = 1 << 20;

/// Flags of `echo` and `script`.
#[derive(Debug, Clone, Args)]
pub struct AnyCommon {
    /// Allow a non-loopback target (only a server you are allowed to load).
    #[arg(long)]
    pub allow_remote: bool,
    /// Driver threads (each a mio loop).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// The server's pid: its CPU time is reported.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Print the report as JSON (with the per-second series).
    #[arg(long)]
    pub json: bool,
    /// Also write a self-contained HTML report to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// New connections per second while setting up (clients without stages).
    #[arg(long, default_value_t = 5000.0)]
    pub ramp: f64,
    /// Longest setup before the run starts anyway.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub setup_timeout: Duration,
    /// A pass/fail rule, e.g. "p99 < 50ms" or "errors < 0.1%" (repeatable; a failure makes
    /// the exit status 1).
    #[arg(long = "threshold")]
    pub thresholds: Vec<String>,
    /// Controller mode: run on agents (`wsrelay-swarm agent --nats URL`) found through this
    /// NATS server, split between them, started at one agreed time, merged into one report.
    #[arg(long)]
    pub nats: Option<String>,
    /// Agents to wait for (controller mode).
    #[arg(long, default_value_t = 1, requires = "nats")]
    pub agents: u32,
    /// `wss://` targets: trust the server certificates these CAs signed (PEM file).
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// `wss://` targets: do not verify the server's certificate (self-signed, loopback only).
    #[arg(long, conflicts_with = "tls_ca")]
    pub tls_insecure: bool,
}

/// How echo replies are matched to what was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MatchMode {
    /// A sequence stamp embedded in the payload (the default with --size).
    Seq,
    /// In send order, one reply per message (servers that change the payload).
    Order,
}

/// `echo` flags.
#[derive(Debug, Clone, Args)]
pub struct EchoArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: AnyCommon,
    /// Target `ws://HOST:PORT/PATH`; without it an in-process wsrelay serving /echo is used.
    #[arg(long)]
    pub url: Option<String>,
    /// Connections.
    #[arg(long, default_value_t = 100)]
    pub connections: u32,
    /// Messages per second, all connections together.
    #[arg(long, conflicts_with = "rate_per_connection")]
    pub rate: Option<f64>,
    /// Messages per second of each connection.
    #[arg(long)]
    pub rate_per_connection: Option<f64>,
    /// Payload bytes (text: at least 63, binary: at least 16, to carry the stamp).
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Send this file's bytes as every message (replies are matched in order).
    #[arg(long, conflicts_with = "size")]
    pub payload_file: Option<PathBuf>,
    /// Binary frames instead of text.
    #[arg(long)]
    pub binary: bool,
    /// How replies are matched (default: seq, or order with --payload-file).
    #[arg(long = "match", value_enum)]
    pub match_mode: Option<MatchMode>,
    /// Measured window.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Warm-up before the window.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Longest wait for outstanding replies after the window.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub drain: Duration,
}

/// `script` flags.
#[derive(Debug, Clone, Args)]
pub struct ScriptArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: AnyCommon,
    /// The scenario file (TOML).
    pub file: PathBuf,
}

/// A run ready to start, and the in-process relay it measures (if any).
#[derive(Debug)]
pub struct Prepared {
    /// The run.
    pub options: AnyOptions,
    /// Kept alive for the run.
    pub relay: Option<wsrelay::ServerHandle>,
}

impl Prepared {
    /// Runs it to its end.
    pub fn run(self) -> Result<Report, String> {
        let report = run_any(self.options).map_err(|e| e.to_string());
        drop(self.relay);
        report
    }
}

impl EchoArgs {
    /// Runs the echo scenario; `Err` is a message for the user.
    pub fn run(self) -> Result<Report, String> {
        self.prepare()?.run()
    }

    /// The run these flags ask for (starting the in-process relay without `--url`).
    pub fn prepare(&self) -> Result<Prepared, String> {
        let relay = match &self.url {
            Some(_) => None,
            None => Some(start_echo_relay().map_err(|e| format!("in-process relay: {e}"))?),
        };
        let url = match (&self.url, &relay) {
            (Some(url), _) => url.clone(),
            (None, Some(relay)) => format!("ws://{}/echo", relay.local_addr()),
            (None, None) => return Err("no target".into()),
        };
        let target = Target::parse(&url, self.common.allow_remote).map_err(|e| e.to_string())?;
        let probe = match (self.common.server_pid, &relay) {
            (Some(pid), _) => ServerProbe::Pid(pid),
            (None, Some(_)) => ServerProbe::InProcess,
            (None, None) => ServerProbe::Unknown,
        };
        let label = match relay {
            Some(_) => format!("in-process wsrelay /echo at {}", target.addr),
            None => url.clone(),
        };
        let scenario = self.scenario(target)?;
        Ok(Prepared {
            options: options(scenario, &self.common, probe, label)?,
            relay,
        })
    }

    /// The echo scenario these flags describe.
    pub fn scenario(&self, target: Target) -> Result<Scenario, String> {
        let connections = self.connections.max(1);
        let per_connection = match (self.rate, self.rate_per_connection) {
            (Some(total), None) => total / f64::from(connections),
            (None, Some(each)) => each,
            (None, None) => 10.0,
            (Some(_), Some(_)) => return Err("--rate or --rate-per-connection, not both".into()),
        };
        if !(per_connection > 0.0 && per_connection.is_finite()) {
            return Err("the rate must be a positive number".into());
        }
        let payload = match &self.payload_file {
            Some(path) => Payload::Fixed {
                bytes: read_payload_file(path)?,
                binary: self.binary,
            },
            None => Payload::Stamped {
                bytes: self.size.max(if self.binary {
                    BINARY_STAMP_BYTES
                } else {
                    JSON_CONTENT_BYTES_MIN
                }),
                binary: self.binary,
            },
        };
        let matching = match (self.match_mode, &payload) {
            (Some(MatchMode::Seq), Payload::Fixed { .. }) => {
                return Err("--match seq needs the swarm's own payload (--size), not \
                            --payload-file: use --match order"
                    .into())
            }
            (Some(MatchMode::Order), _) | (None, Payload::Fixed { .. }) => Matching::Order,
            _ => Matching::Stamp,
        };
        Ok(Scenario {
            name: "echo".into(),
            groups: vec![Group {
                name: "echo".into(),
                clients_max: connections,
                stages: Vec::new(),
                urls: vec![target],
                headers: Vec::new(),
                subprotocols: Vec::new(),
                on_open: Vec::new(),
                periodic: Some(Periodic {
                    rate: Rate::PerSecond(per_connection),
                    payload,
                    matching,
                }),
                reactions: Vec::new(),
                sent_at: None,
            }],
            warmup_ns: self.warmup.as_nanos() as u64,
            duration_ns: self.duration.as_nanos() as u64,
            drain_ns: self.drain.as_nanos() as u64,
            thresholds: parse_thresholds(&self.common.thresholds)?,
        })
    }
}

impl ScriptArgs {
    /// Runs the scenario file; `Err` is a message for the user.
    pub fn run(self) -> Result<Report, String> {
        self.prepare()?.run()
    }

    /// The run the scenario file asks for.
    pub fn prepare(&self) -> Result<Prepared, String> {
        let scenario = crate::any::file::load(&self.file, self.common.allow_remote)?;
        self.prepare_scenario(scenario)
    }

    /// The run of scenario text sent by a controller (files it names are read relative to
    /// the agent's working directory).
    pub fn prepare_text(&self, text: &str) -> Result<Prepared, String> {
        let scenario = crate::any::file::parse(text, Path::new("."), self.common.allow_remote)
            .map_err(|e| format!("scenario from the controller: {e}"))?;
        self.prepare_scenario(scenario)
    }

    fn prepare_scenario(&self, mut scenario: Scenario) -> Result<Prepared, String> {
        scenario
            .thresholds
            .extend(parse_thresholds(&self.common.thresholds)?);
        let probe = self
            .common
            .server_pid
            .map_or(ServerProbe::Unknown, ServerProbe::Pid);
        let label = scenario
            .groups
            .iter()
            .flat_map(|g| g.urls.iter().map(Target::url))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Prepared {
            options: options(scenario, &self.common, probe, label)?,
            relay: None,
        })
    }
}

fn options(
    scenario: Scenario,
    common: &AnyCommon,
    probe: ServerProbe,
    label: String,
) -> Result<AnyOptions, String> {
    Ok(AnyOptions {
        tls: tls_clients(&scenario, common)?,
        scenario,
        settings: AnySettings {
            threads: common.threads.max(1),
            ramp_per_s: common.ramp.max(1.0),
            setups_inflight_max: 1024,
            shard: (0, 1),
        },
        probe,
        setup_timeout: common.setup_timeout,
        target_label: label,
        gate: None,
    })
}

/// The TLS client of every `wss://` target (by group, then by URL; `None`: plain `ws://`),
/// made once here so that a bad CA file or a missing trust flag stops the run before it
/// starts.
fn tls_clients(scenario: &Scenario, common: &AnyCommon) -> Result<TlsClients, String> {
    let trust = match (&common.tls_ca, common.tls_insecure) {
        (Some(path), _) => Some(Trust::CaFile(path.clone())),
        (None, true) => Some(Trust::Insecure),
        (None, false) => None,
    };
    let client = |target: &Target| match (target.tls, &trust) {
        (false, _) => Ok(None),
        (true, None) => Err(format!(
            "{}: wss:// needs --tls-ca FILE (the CA that signed the server's certificate) or \
             --tls-insecure (a self-signed certificate on loopback)",
            target.url()
        )),
        (true, Some(trust)) => TlsClient::new(target.host_name(), trust)
            .map(Some)
            .map_err(|e| format!("{}: {e}", target.url())),
    };
    scenario
        .groups
        .iter()
        .map(|g| g.urls.iter().map(client).collect())
        .collect()
}

/// Parses `--threshold` rules.
pub fn parse_thresholds(texts: &[String]) -> Result<Vec<Threshold>, String> {
    texts.iter().map(|t| Threshold::parse(t)).collect()
}

fn read_payload_file(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file =
        std::fs::File::open(path).map_err(|e| format!("--payload-file {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(PAYLOAD_FILE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("--payload-file {}: {e}", path.display()))?;
    if bytes.len() as u64 > PAYLOAD_FILE_BYTES_MAX {
        return Err(format!(
            "--payload-file {}: larger than {PAYLOAD_FILE_BYTES_MAX} bytes",
            path.display()
        ));
    }
    Ok(bytes)
}

fn start_echo_relay() -> std::io::Result<wsrelay::ServerHandle> {
    let mut config = wsrelay::Config::loopback_for_tests(1);
    config.echo_enabled = true;
    wsrelay::Server::start(config)
}

/// Prints the report (text or JSON), writes the HTML report if asked; returns the exit
/// status: 0, or 1 when a threshold failed.
pub fn finish(report: &Report, common: &AnyCommon) -> Result<i32, String> {
    if common.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    if let Some(path) = &common.report {
        std::fs::write(path, crate::html::render(report))
            .map_err(|e| format!("--report {}: {e}", path.display()))?;
        if !common.json {
            println!("  report       {}", path.display());
        }
    }
    Ok(if report.thresholds_pass() { 0 } else { 1 })
}
