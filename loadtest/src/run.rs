//! The coordinator: resolves the target (or starts an in-process relay), raises the open-file
//! limit, starts the driver threads, waits for setup, starts the run, samples server and swarm
//! CPU over the measured window, drains, stops the drivers and merges what they measured.
//!
//! Owns: the run's timeline. May not touch: connections (drivers own them).
//!
//! Every run is bounded: setup by `setup_timeout`, publishing by warm-up + duration, the
//! drain by `drain_max`; then the drivers stop by themselves.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use wsrelay::{Config, Server, ServerHandle};

use crate::driver::{Control, Driver, Settings, Shared};
use crate::plan::Plan;
use crate::report::Report;
use crate::sampler::{Counters, Sampler};
use crate::stats::ThreadStats;
use crate::sys;
use crate::target::{ports_per_source, source_addresses, Target, TargetError};
use crate::targets::Targets;

/// Descriptors kept free for everything else (poll, relay listeners, stdio).
const SPARE_FDS: u64 = 64;
/// Delay between the start decision and the first publish, so every driver sees it in time.
const START_DELAY_NS: u64 = 20_000_000;

/// What to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Scenario name for the report.
    pub scenario: String,
    /// Who does what.
    pub plan: Plan,
    /// `ws://` targets (subscribers spread over them); empty starts an in-process relay.
    pub urls: Vec<String>,
    /// Where publishing connections go (default: the first of `urls`).
    pub publish_url: Option<String>,
    /// Permit non-loopback targets.
    pub allow_remote: bool,
    /// Connect with TLS even to a `ws://` URL (`--tls`).
    pub tls: bool,
    /// How to trust the server's certificate when connecting with TLS.
    pub tls_trust: Option<crate::tls::Trust>,
    /// Event loops of the in-process relay.
    pub relay_loops: usize,
    /// Connections per source address (`None`: from `ip_local_port_range`).
    pub ports_per_source: Option<usize>,
    /// The server's pid, for its CPU and memory.
    pub server_pid: Option<u32>,
    /// Setup timeout.
    pub setup_timeout: Duration,
    /// Longest wait after publishing for outstanding deliveries.
    pub drain_max: Duration,
    /// Driver knobs.
    pub settings: Settings,
    /// Draw a live progress line on stderr.
    pub progress: bool,
}

/// Why a run could not happen.
#[derive(Debug)]
pub enum RunError {
    /// Bad or refused target.
    Target(TargetError),
    /// The in-process relay did not start.
    Relay(std::io::Error),
    /// A driver thread could not be created.
    Driver(std::io::Error),
    /// An agent's run was called off before it started.
    Cancelled(String),
    /// The TLS options could not be used (no trust given, an unreadable CA file).
    Tls(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Target(e) => write!(f, "target: {e}"),
            Self::Relay(e) => write!(f, "in-process relay: {e}"),
            Self::Driver(e) => write!(f, "driver thread: {e}"),
            Self::Cancelled(e) => write!(f, "cancelled: {e}"),
            Self::Tls(e) => write!(f, "tls: {e}"),
        }
    }
}

/// Where server CPU and memory are read.
#[derive(Debug, Clone, Copy)]
pub enum ServerProbe {
    /// A server process (`--server-pid`).
    Pid(u32),
    /// The in-process relay's loop threads.
    InProcess,
    /// Not known.
    Unknown,
}

impl ServerProbe {
    /// CPU-seconds so far.
    pub fn cpu_s(self) -> Option<f64> {
        match self {
            Self::Pid(pid) => sys::pid_cpu_s(pid),
            Self::InProcess => Some(sys::own_threads_cpu_s("wsrelay-loop")),
            Self::Unknown => None,
        }
    }

    /// Seconds runnable but waiting for a CPU so far.
    pub fn run_queue_wait_s(self) -> Option<f64> {
        match self {
            Self::Pid(pid) => sys::run_queue_wait_s(pid, ""),
            Self::InProcess => sys::run_queue_wait_s(std::process::id(), "wsrelay-loop"),
            Self::Unknown => None,
        }
    }

    /// Resident memory, KiB.
    pub fn rss_kib(self) -> Option<u64> {
        match self {
            Self::Pid(pid) => sys::pid_rss_kib(pid),
            Self::InProcess => sys::pid_rss_kib(std::process::id()),
            Self::Unknown => None,
        }
    }
}

/// Runs one scenario to its end.
pub fn run(options: RunOptions) -> Result<Report, RunError> {
    let relay = match options.urls.is_empty() {
        false => None,
        true => Some(start_relay(&options)?),
    };
    let targets = match &relay {
        Some(relay) => Targets::single(Target::local(relay.local_addr())),
        None => resolve_targets(&options)?,
    };
    let probe = match (options.server_pid, &relay) {
        (Some(pid), _) => ServerProbe::Pid(pid),
        (None, Some(_)) => ServerProbe::InProcess,
        (None, None) => ServerProbe::Unknown,
    };
    let limit_note = check_open_file_limit(&options, relay.is_some());
    let mut report = coordinate(&options, targets.clone(), probe)?;
    report.target = match relay {
        Some(_) => format!(
            "in-process wsrelay ({} loop) at {}",
            options.relay_loops,
            targets.primary().addr
        ),
        None => targets.describe(),
    };
    report.limit_note = limit_note;
    Ok(report)
}

/// Every `--url` (and `--publish-url`), parsed under the loopback rule.
fn resolve_targets(options: &RunOptions) -> Result<Targets, RunError> {
    let parse = |url: &String| Target::parse(url, options.allow_remote).map_err(RunError::Target);
    let spread = options
        .urls
        .iter()
        .map(parse)
        .collect::<Result<Vec<_>, _>>()?;
    let publish = options.publish_url.as_ref().map(parse).transpose()?;
    Targets::new(spread, publish).ok_or(RunError::Target(TargetError::BadAddress(
        "no --url".to_string(),
    )))
}

/// The in-process relay (no --url), with what the run's flags need of it.
fn start_relay(options: &RunOptions) -> Result<ServerHandle, RunError> {
    let mut config = Config::loopback_for_tests(options.relay_loops.max(1));
    config.deflate_enabled = options.settings.deflate;
    if let Some(ms) = options.plan.tick_ms {
        let rooms = wsrelay::auth::ChannelPattern::parse("room.*").map_err(|e| {
            RunError::Relay(std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
        })?;
        config.tick_rules = vec![(rooms, Duration::from_millis(ms))];
    }
    Server::start(config).map_err(RunError::Relay)
}

/// Raises the limit and says clearly when it will stop the run.
fn check_open_file_limit(options: &RunOptions, in_process: bool) -> Option<String> {
    let limit = sys::raise_open_file_limit();
    let per_conn = if in_process { 2 } else { 1 };
    let conns = options.plan.conns.len() as u64;
    let needed = conns * per_conn + SPARE_FDS;
    if needed <= limit {
        return None;
    }
    let note = format!(
        "the open-file limit ({limit}, raised to the hard limit) allows about {} connections{}; \
         {conns} are planned, so the rest fail as connect_open_file_limit. Raise `ulimit -n` \
         (hard limit) or point --url at a relay in another process.",
        limit.saturating_sub(SPARE_FDS) / per_conn,
        if in_process {
            " (two descriptors each: the relay is in this process)"
        } else {
            ""
        }
    );
    eprintln!("wsrelay-swarm: {note}");
    Some(note)
}

fn coordinate(
    options: &RunOptions,
    targets: Targets,
    probe: ServerProbe,
) -> Result<Report, RunError> {
    let ports = options
        .ports_per_source
        .unwrap_or_else(ports_per_source)
        .max(1);
    let total_conns = options.plan.conns.len();
    let tls = client_tls(options, &targets)?;
    let shared = Arc::new(Shared {
        tls,
        plan: options.plan.clone(),
        sources: source_addresses(targets.primary().addr, total_conns, ports),
        ports_per_source: ports,
        targets,
        settings: options.settings.clone(),
        control: Control::default(),
    });
    let rss_before_kib = probe.rss_kib();
    let drivers = spawn_drivers(&shared)?;
    let mut progress = ProgressLine::new(options.progress, &options.scenario);
    let setup_s = wait_for_setup(&shared, options.setup_timeout, &mut progress);
    let timeline = Timeline::start(&shared);
    let start_ns = shared.control.start_ns.load(Ordering::Acquire);
    let mut sampler = Sampler::new(start_ns, probe, counters(&shared));
    let window = WindowCosts::measure(
        probe,
        (timeline.window_start_ns, timeline.window_end_ns),
        |at_ns| sleep_until(at_ns, &shared, &mut progress, &mut sampler),
    );
    let rss_after_kib = probe.rss_kib();
    let drain_s = drain(&shared, options.drain_max, &mut progress, &mut sampler);
    shared.control.stop.store(true, Ordering::Release);
    progress.finish();
    let stats = join_drivers(drivers);
    Ok(Report {
        scenario: options.scenario.clone(),
        target: String::new(),
        threads: options.settings.threads,
        conns_planned: total_conns as u64,
        setup_s,
        warmup_s: options.settings.warmup_ns as f64 / 1e9,
        duration_s: options.settings.duration_ns as f64 / 1e9,
        drain_s,
        server_cpu_window_s: window.server_cpu_s,
        server_wait_window_s: window.server_wait_s,
        swarm_wait_window_s: window.swarm_wait_s,
        server_rss_before_kib: rss_before_kib,
        server_rss_after_kib: rss_after_kib,
        server_in_process: matches!(probe, ServerProbe::InProcess),
        limit_note: None,
        stats,
        server_latency: server_latency(&shared),
        series: Some(sampler.into_report(None)),
        thresholds: Vec::new(),
        any: None,
        agents: Vec::new(),
    })
}

/// The TLS client of a run over TLS (`--tls` or a `wss://` target), for the primary target's
/// host name; `None` in plain TCP.
fn client_tls(
    options: &RunOptions,
    targets: &Targets,
) -> Result<Option<crate::tls::TlsClient>, RunError> {
    match (options.tls || targets.tls(), &options.tls_trust) {
        (false, _) => Ok(None),
        (true, None) => Err(RunError::Tls(
            "TLS needs --tls-ca FILE or --tls-insecure".into(),
        )),
        (true, Some(trust)) => {
            let primary = targets.primary();
            let host = primary
                .host
                .rsplit_once(':')
                .map_or(primary.host.as_str(), |(h, _)| h);
            Ok(Some(
                crate::tls::TlsClient::new(host, trust).map_err(RunError::Tls)?,
            ))
        }
    }
}

/// `/stats` is read in plain HTTP; over TLS it is not read (the report has no server latency
/// then: run the relay with --metrics-bind to see it there).
fn server_latency(shared: &Shared) -> Option<crate::server_stats::ServerLatency> {
    let primary = shared.targets.primary();
    match shared.tls.is_some() {
        false => crate::server_stats::fetch(primary.addr, &primary.host),
        true => None,
    }
}

/// What the measured window cost: server CPU, and run-queue waits of the server and of the
/// swarm (each `None` where it cannot be read).
pub(crate) struct WindowCosts {
    pub(crate) server_cpu_s: Option<f64>,
    pub(crate) server_wait_s: Option<f64>,
    pub(crate) swarm_wait_s: Option<f64>,
}

impl WindowCosts {
    /// Runs `run_until` to the window's start (ns), reads the counters, runs it to the
    /// window's end and reads them again.
    pub(crate) fn measure(
        probe: ServerProbe,
        (start_ns, end_ns): (u64, u64),
        mut run_until: impl FnMut(u64),
    ) -> WindowCosts {
        run_until(start_ns);
        let server_cpu_start = probe.cpu_s();
        let waits_start = (probe.run_queue_wait_s(), swarm_run_queue_wait_s());
        run_until(end_ns);
        let server_cpu_end = probe.cpu_s();
        let waits_end = (probe.run_queue_wait_s(), swarm_run_queue_wait_s());
        WindowCosts {
            server_cpu_s: server_cpu_start.zip(server_cpu_end).map(|(a, b)| b - a),
            server_wait_s: waits_start.0.zip(waits_end.0).map(|(a, b)| b - a),
            swarm_wait_s: waits_start.1.zip(waits_end.1).map(|(a, b)| b - a),
        }
    }
}

/// Seconds the swarm's driver threads waited for a CPU so far.
pub fn swarm_run_queue_wait_s() -> Option<f64> {
    sys::run_queue_wait_s(std::process::id(), "swarm-")
}

fn spawn_drivers(shared: &Arc<Shared>) -> Result<Vec<JoinHandle<ThreadStats>>, RunError> {
    (0..shared.settings.threads.max(1))
        .map(|index| {
            let driver = Driver::new(index, shared.clone()).map_err(RunError::Driver)?;
            std::thread::Builder::new()
                .name(format!("swarm-{index}"))
                .spawn(move || driver.run())
                .map_err(RunError::Driver)
        })
        .collect()
}

fn join_drivers(drivers: Vec<JoinHandle<ThreadStats>>) -> ThreadStats {
    let mut total = ThreadStats::default();
    for handle in drivers {
        match handle.join() {
            Ok(stats) => total.merge(&stats),
            Err(_) => total.error("driver_panicked"),
        }
    }
    total
}

/// Waits until every driver has set up its connections (or the timeout); returns seconds.
fn wait_for_setup(shared: &Shared, timeout: Duration, progress: &mut ProgressLine) -> f64 {
    let started = sys::now_ns();
    let deadline = started + timeout.as_nanos() as u64;
    let threads = shared.settings.threads.max(1);
    while shared.control.threads_settled.load(Ordering::Acquire) < threads
        && sys::now_ns() < deadline
    {
        progress.draw(shared, "setup");
        std::thread::sleep(Duration::from_millis(10));
    }
    (sys::now_ns() - started) as f64 / 1e9
}

/// The run's fixed instants.
struct Timeline {
    window_start_ns: u64,
    window_end_ns: u64,
}

impl Timeline {
    fn start(shared: &Shared) -> Timeline {
        let start_ns = sys::now_ns() + START_DELAY_NS;
        shared.control.start_ns.store(start_ns, Ordering::Release);
        let window_start_ns = start_ns + shared.settings.warmup_ns;
        Timeline {
            window_start_ns,
            window_end_ns: window_start_ns + shared.settings.duration_ns,
        }
    }
}

fn sleep_until(at_ns: u64, shared: &Shared, progress: &mut ProgressLine, sampler: &mut Sampler) {
    loop {
        let now = sys::now_ns();
        if now >= at_ns {
            return;
        }
        progress.draw(shared, "run");
        sampler.sample_due(|| counters(shared));
        let wake_ns = at_ns.min(sampler.next_due_ns()).max(now + 1);
        std::thread::sleep(Duration::from_nanos((wake_ns - now).min(100_000_000)));
    }
}

/// The drivers' live counters, for the per-second samples.
fn counters(shared: &Shared) -> Counters {
    let p = &shared.control.progress;
    Counters {
        sent_total: p.sent_total.load(Ordering::Relaxed),
        received_total: p.received_total.load(Ordering::Relaxed),
        errors_total: p.conns_failed.load(Ordering::Relaxed),
        // Steady connections that became ready (the drivers count no closes of them).
        conns_open: p.conns_ready.load(Ordering::Relaxed),
    }
}

/// Waits for every delivery still due (warm-up and window), at most `drain_max`; returns
/// seconds.
fn drain(
    shared: &Shared,
    drain_max: Duration,
    progress: &mut ProgressLine,
    sampler: &mut Sampler,
) -> f64 {
    let started = sys::now_ns();
    let deadline = started + drain_max.as_nanos() as u64;
    let p = &shared.control.progress;
    // Let drivers push their last counters of the window first.
    std::thread::sleep(Duration::from_millis(10));
    while p.received_total.load(Ordering::Relaxed) < p.due_total.load(Ordering::Relaxed)
        && sys::now_ns() < deadline
    {
        progress.draw(shared, "drain");
        sampler.sample_due(|| counters(shared));
        std::thread::sleep(Duration::from_millis(5));
    }
    (sys::now_ns() - started) as f64 / 1e9
}

/// The live progress line (indicatif, on stderr; hidden when stderr is not a terminal or with
/// `--json`), redrawn at most every 250 ms from the drivers' shared counters.
struct ProgressLine {
    bar: Option<ProgressBar>,
    last_draw_ns: u64,
    last_received: u64,
    last_sent: u64,
}

impl ProgressLine {
    const INTERVAL_NS: u64 = 250_000_000;

    fn new(enabled: bool, scenario: &str) -> Self {
        let bar = (enabled && sys::stderr_is_tty()).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{prefix}] {elapsed} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(scenario.to_string());
            bar
        });
        Self {
            bar,
            last_draw_ns: sys::now_ns(),
            last_received: 0,
            last_sent: 0,
        }
    }

    fn draw(&mut self, shared: &Shared, stage: &str) {
        let now = sys::now_ns();
        let Some(bar) = &self.bar else {
            return;
        };
        if now < self.last_draw_ns + Self::INTERVAL_NS {
            return;
        }
        let p = &shared.control.progress;
        let received = p.received_total.load(Ordering::Relaxed);
        let sent = p.sent_total.load(Ordering::Relaxed);
        let elapsed_s = (now - self.last_draw_ns) as f64 / 1e9;
        bar.set_message(format!(
            "{stage}: ready {}/{} failed {} | sent {:.0}/s | delivered {:.0}/s | due-received {}",
            p.conns_ready.load(Ordering::Relaxed),
            shared.plan.conns.len(),
            p.conns_failed.load(Ordering::Relaxed),
            (sent - self.last_sent) as f64 / elapsed_s,
            (received - self.last_received) as f64 / elapsed_s,
            p.due_total.load(Ordering::Relaxed).saturating_sub(received),
        ));
        bar.tick();
        self.last_draw_ns = now;
        self.last_received = received;
        self.last_sent = sent;
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
