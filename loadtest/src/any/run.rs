//! The coordinator of a run against any server: starts the drivers, waits for the clients
//! that connect before the start, starts the run, samples connections and CPU once a second,
//! drains outstanding replies, stops the drivers, merges what they measured and checks the
//! thresholds.
//!
//! Owns: the run's timeline. May not touch: clients (drivers own them).
//!
//! Bounded: setup by `setup_timeout`, sending by warm-up + duration (or the stages), the drain
//! by the scenario's drain; then the drivers stop by themselves.

use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::any::conn::AnyCounters;
use crate::any::driver::{AnyControl, AnyDriver, AnySettings, AnyShared, DriverResult};
use crate::any::scenario::Scenario;
use crate::report::Report;
use crate::run::{RunError, ServerProbe, WindowCosts};
use crate::sampler::{Counters, Sampler};
use crate::series::Series;
use crate::stats::ThreadStats;
use crate::sys;

/// Delay between the start decision and the first send, so every driver sees it in time.
const START_DELAY_NS: u64 = 20_000_000;

/// How an agent's run waits for the controller's agreed start: the run reports its setup
/// seconds on `settled`, then waits for the start time (Unix ns) on `start_at_unix_ns`.
#[derive(Debug)]
pub struct StartGate {
    /// Setup done (seconds it took).
    pub settled: mpsc::Sender<f64>,
    /// The agreed start, ns since the Unix epoch on this machine's clock.
    pub start_at_unix_ns: mpsc::Receiver<u64>,
}

/// What to run.
#[derive(Debug)]
pub struct AnyOptions {
    /// The scenario.
    pub scenario: Scenario,
    /// Driver knobs.
    pub settings: AnySettings,
    /// Where server CPU is read.
    pub probe: ServerProbe,
    /// Longest setup before the run starts anyway.
    pub setup_timeout: Duration,
    /// What the report calls the target.
    pub target_label: String,
    /// Agent mode: wait for the controller's start.
    pub gate: Option<StartGate>,
    /// TLS of each `wss://` target (by group, then URL).
    pub tls: crate::tls::TlsClients,
}

/// Runs `options` to its end and checks its thresholds.
pub fn run_any(options: AnyOptions) -> Result<Report, RunError> {
    sys::raise_open_file_limit();
    let probe = options.probe;
    let shared = Arc::new(AnyShared {
        scenario: options.scenario.clone(),
        settings: options.settings.clone(),
        control: AnyControl::default(),
        tls: options.tls.clone(),
    });
    let drivers = spawn(&shared)?;
    let setup_s = wait_for_setup(&shared, options.setup_timeout);
    let scenario = &shared.scenario;
    let start_ns = match start_time(&options, setup_s) {
        Ok(start_ns) => start_ns,
        Err(e) => {
            shared.control.stop.store(true, Ordering::Release);
            let _ = join(drivers, 0);
            return Err(RunError::Cancelled(e));
        }
    };
    shared.control.start_ns.store(start_ns, Ordering::Release);
    let window_start_ns = start_ns + scenario.warmup_ns;
    let window_end_ns = window_start_ns + scenario.duration_ns;
    let mut sampler = Sampler::new(start_ns, probe, Counters::default());
    let window = WindowCosts::measure(probe, (window_start_ns, window_end_ns), |at_ns| {
        run_until(at_ns, &shared, &mut sampler)
    });
    let drain_s = drain(&shared, &mut sampler, scenario.drain_ns);
    shared.control.stop.store(true, Ordering::Release);
    let (stats, series, counters) = join(drivers, start_ns);
    let mut report = Report {
        scenario: scenario.name.clone(),
        target: options.target_label.clone(),
        threads: options.settings.threads,
        conns_planned: clients_in_shard(scenario, &options.settings),
        setup_s,
        warmup_s: scenario.warmup_ns as f64 / 1e9,
        duration_s: scenario.duration_ns as f64 / 1e9,
        drain_s,
        server_cpu_window_s: window.server_cpu_s,
        server_wait_window_s: window.server_wait_s,
        swarm_wait_window_s: window.swarm_wait_s,
        server_rss_before_kib: None,
        server_rss_after_kib: probe.rss_kib(),
        server_in_process: matches!(probe, ServerProbe::InProcess),
        limit_note: None,
        stats,
        server_latency: None,
        series: Some(sampler.into_report(Some(series))),
        thresholds: Vec::new(),
        any: Some(counters),
        agents: Vec::new(),
    };
    report.thresholds = scenario
        .thresholds
        .iter()
        .map(|t| t.check(&report))
        .collect();
    Ok(report)
}

/// When the run starts (ns): after a short delay, or, for an agent, when the controller says
/// (`Err` when it cancels or does not answer).
fn start_time(options: &AnyOptions, setup_s: f64) -> Result<u64, String> {
    match &options.gate {
        None => Ok(sys::now_ns() + START_DELAY_NS),
        Some(gate) => wait_for_start(gate, setup_s, options.setup_timeout),
    }
}

/// The scenario's clients this process drives (its shard).
fn clients_in_shard(scenario: &Scenario, settings: &AnySettings) -> u64 {
    (0..scenario.clients_total())
        .filter(|&c| settings.in_shard(c))
        .count() as u64
}

fn spawn(shared: &Arc<AnyShared>) -> Result<Vec<JoinHandle<DriverResult>>, RunError> {
    (0..shared.settings.threads.max(1))
        .map(|index| {
            let driver = AnyDriver::new(index, shared.clone()).map_err(RunError::Driver)?;
            std::thread::Builder::new()
                .name(format!("swarm-{index}"))
                .spawn(move || driver.run())
                .map_err(RunError::Driver)
        })
        .collect()
}

fn join(
    drivers: Vec<JoinHandle<DriverResult>>,
    start_ns: u64,
) -> (ThreadStats, Series, AnyCounters) {
    let mut stats = ThreadStats::default();
    let mut series = Series::new(start_ns);
    let mut counters = AnyCounters::default();
    for handle in drivers {
        match handle.join() {
            Ok(result) => {
                stats.merge(&result.stats);
                series.merge(&result.series);
                counters.unmatched_total += result.counters.unmatched_total;
                counters.reactions_total += result.counters.reactions_total;
                counters.open_messages_total += result.counters.open_messages_total;
                counters.ramped_down_total += result.counters.ramped_down_total;
            }
            Err(_) => stats.error("driver_panicked"),
        }
    }
    (stats, series, counters)
}

/// Reports the setup and converts the agreed start (Unix ns) to the swarm's clock.
fn wait_for_start(gate: &StartGate, setup_s: f64, timeout: Duration) -> Result<u64, String> {
    let _ = gate.settled.send(setup_s);
    let start_at_unix_ns = gate
        .start_at_unix_ns
        .recv_timeout(timeout)
        .map_err(|_| "no start from the controller".to_string())?;
    let (now_unix_ns, now_ns) = (sys::unix_ns(), sys::now_ns());
    // A start already past (a slow setup) is taken at once; the run then starts late.
    Ok(now_ns + start_at_unix_ns.saturating_sub(now_unix_ns))
}

fn wait_for_setup(shared: &AnyShared, timeout: Duration) -> f64 {
    let started = sys::now_ns();
    let deadline = started + timeout.as_nanos() as u64;
    let threads = shared.settings.threads.max(1);
    while shared.control.threads_settled.load(Ordering::Acquire) < threads
        && sys::now_ns() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    (sys::now_ns() - started) as f64 / 1e9
}

/// Waits for every reply still due, at most `drain_ns`; returns seconds.
fn drain(shared: &AnyShared, sampler: &mut Sampler, drain_ns: u64) -> f64 {
    let started = sys::now_ns();
    let deadline = started + drain_ns;
    let control = &shared.control;
    std::thread::sleep(Duration::from_millis(10));
    while control.received_total.load(Ordering::Relaxed) < control.due_total.load(Ordering::Relaxed)
        && sys::now_ns() < deadline
    {
        sampler.sample_due(|| counters(shared));
        std::thread::sleep(Duration::from_millis(5));
    }
    (sys::now_ns() - started) as f64 / 1e9
}

/// Sleeps until `at_ns`, sampling every second on the way.
fn run_until(at_ns: u64, shared: &AnyShared, sampler: &mut Sampler) {
    loop {
        let now = sys::now_ns();
        if now >= at_ns {
            return;
        }
        sampler.sample_due(|| counters(shared));
        let wake_ns = at_ns.min(sampler.next_due_ns()).max(now + 1);
        std::thread::sleep(Duration::from_nanos((wake_ns - now).min(100_000_000)));
    }
}

/// The drivers' live counters.
fn counters(shared: &AnyShared) -> Counters {
    let c = &shared.control;
    Counters {
        sent_total: c.sent_total.load(Ordering::Relaxed),
        received_total: c.received_total.load(Ordering::Relaxed),
        errors_total: 0,
        conns_open: c.conns_open.load(Ordering::Relaxed),
    }
}
