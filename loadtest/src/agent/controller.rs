//! The controller of agent mode: finds N agents on NATS, measures each one's clock offset
//! (best of several request/reply round trips), sends each its shard of the run, waits until
//! all are set up, starts them at one agreed instant, and merges their results into one
//! report (counters added, HDR histograms added bucket by bucket, per-second series aligned on
//! the common start).
//!
//! Owns: the controller's side of the NATS subjects (see `agent`). May not touch: the load.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::agent::nats::Nats;
use crate::agent::server_cpu::{self, ServerCpu, ServerCpuProbe, Times};
use crate::agent::wire::AgentResult;
use crate::agent::PREFIX;
use crate::any::args::{parse_thresholds, EchoArgs, ScriptArgs};
use crate::any::conn::AnyCounters;
use crate::any::threshold::Threshold;
use crate::report::Report;
use crate::series::{Sample, Series, SeriesReport};
use crate::stats::ThreadStats;
use crate::sys;
use crate::target::Target;

/// Round trips per agent to measure its clock offset.
const CLOCK_PROBES: usize = 7;
/// How long agents are looked for.
const DISCOVER_TIMEOUT: Duration = Duration::from_secs(30);
/// Delay between the last agent's ready and the agreed start.
const START_LEAD_NS: u64 = 500_000_000;
/// Flags the controller keeps for itself (with their values).
const CONTROLLER_FLAGS: [&str; 6] = [
    "--nats",
    "--agents",
    "--json",
    "--report",
    "--threshold",
    "--server-pid",
];

/// What the controller runs on the agents.
#[derive(Debug, Clone)]
pub struct ControllerPlan {
    /// `echo` or `script`.
    pub command: String,
    /// The command's flags, as the agents parse them.
    pub args: Vec<String>,
    /// The scenario file's text (`script`).
    pub scenario: Option<String>,
    /// Longest a run can take from prepare to result (setup, warm-up, window, drain).
    pub run_bound: Duration,
    /// Checked on the merged report.
    pub thresholds: Vec<Threshold>,
    /// What the report calls the target.
    pub target_label: String,
    /// Warm-up seconds.
    pub warmup_s: f64,
    /// Measured window seconds.
    pub duration_s: f64,
    /// `--server-pid`: a process on the controller's machine whose CPU the controller reads.
    pub server_pid: Option<u32>,
}

impl ControllerPlan {
    /// The plan of an `echo` command line (`raw`: its flags after `echo`).
    pub fn echo(args: &EchoArgs, raw: &[String]) -> Result<ControllerPlan, String> {
        let url = args
            .url
            .clone()
            .ok_or("agent mode needs --url (agents load one server)")?;
        let common = &args.common;
        // Refused here, before any agent is asked (each agent checks again on its own).
        Target::parse(&url, common.allow_remote).map_err(|e| format!("--url {url}: {e}"))?;
        Ok(ControllerPlan {
            command: "echo".into(),
            args: forwarded_args(raw, None),
            scenario: None,
            run_bound: common.setup_timeout + args.warmup + args.duration + args.drain + SLACK,
            thresholds: parse_thresholds(&common.thresholds)?,
            target_label: url,
            warmup_s: args.warmup.as_secs_f64(),
            duration_s: args.duration.as_secs_f64(),
            server_pid: checked_server_pid(common.server_pid)?,
        })
    }

    /// The plan of a `script` command line (`raw`: its flags and file after `script`).
    pub fn script(args: &ScriptArgs, raw: &[String]) -> Result<ControllerPlan, String> {
        let text = std::fs::read_to_string(&args.file)
            .map_err(|e| format!("{}: {e}", args.file.display()))?;
        let scenario = crate::any::file::load(&args.file, args.common.allow_remote)?;
        let mut thresholds = scenario.thresholds.clone();
        thresholds.extend(parse_thresholds(&args.common.thresholds)?);
        let ns = |n: u64| Duration::from_nanos(n);
        let file = args.file.to_string_lossy();
        Ok(ControllerPlan {
            command: "script".into(),
            args: forwarded_args(raw, Some(&file)),
            scenario: Some(text),
            run_bound: args.common.setup_timeout
                + ns(scenario.warmup_ns + scenario.duration_ns + scenario.drain_ns)
                + SLACK,
            thresholds,
            target_label: scenario.name.clone(),
            warmup_s: scenario.warmup_ns as f64 / 1e9,
            duration_s: scenario.duration_ns as f64 / 1e9,
            server_pid: checked_server_pid(args.common.server_pid)?,
        })
    }
}

/// `--server-pid` in controller mode: it must name a process the controller can read.
fn checked_server_pid(pid: Option<u32>) -> Result<Option<u32>, String> {
    pid.map(|pid| server_cpu::check(pid).map(|()| pid))
        .transpose()
}

/// Added to a run's bound for messages, joins and the start lead.
const SLACK: Duration = Duration::from_secs(30);

/// One agent as the report shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSummary {
    /// Its name.
    pub name: String,
    /// Its wall clock minus the controller's, ns (from the round trip with the least delay).
    pub clock_offset_ns: i64,
    /// That round trip, ns (the offset is exact to within half of it).
    pub clock_rtt_ns: u64,
    /// Clients it ran.
    pub conns_planned: u64,
    /// Clients it set up.
    pub conns_ready: u64,
    /// Messages it sent in the window.
    pub sent_window: u64,
    /// Replies it received for them.
    pub received_window: u64,
}

impl AgentSummary {
    /// JSON form.
    pub fn to_json(&self) -> Value {
        json!({"agent": self.name, "clock_offset_ns": self.clock_offset_ns,
               "clock_rtt_ns": self.clock_rtt_ns, "connections_planned": self.conns_planned,
               "connections_ready": self.conns_ready, "sent": self.sent_window,
               "received": self.received_window})
    }
}

/// The command line minus the controller's own flags (and the scenario file's path).
pub fn forwarded_args(raw: &[String], positional: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip_value = false;
    for arg in raw {
        if skip_value {
            skip_value = false;
            continue;
        }
        if Some(arg.as_str()) == positional {
            continue;
        }
        let flag = arg.split('=').next().unwrap_or(arg);
        if CONTROLLER_FLAGS.contains(&flag) {
            skip_value = !arg.contains('=') && flag != "--json";
            continue;
        }
        out.push(arg.clone());
    }
    out
}

/// Runs `plan` on `agents` agents found through `nats_url`; returns the merged report.
pub fn run_controller(
    plan: &ControllerPlan,
    nats_url: &str,
    agents: u32,
) -> Result<Report, String> {
    let mut nats = Nats::connect(nats_url, "wsrelay-swarm controller")
        .map_err(|e| format!("NATS {nats_url}: {e}"))?;
    let inbox = format!(
        "{PREFIX}.inbox.{:x}{:x}",
        sys::unix_ns(),
        std::process::id()
    );
    nats.subscribe(&format!("{inbox}.>"))
        .map_err(|e| format!("NATS: {e}"))?;
    let names = discover(&mut nats, &inbox, agents as usize)?;
    let mut clocks = BTreeMap::new();
    for name in &names {
        clocks.insert(name.clone(), measure_clock(&mut nats, &inbox, name)?);
    }
    for (k, name) in names.iter().enumerate() {
        let request = json!({"command": plan.command, "args": plan.args,
                             "scenario": plan.scenario, "shard": [k, names.len()]});
        publish(
            &mut nats,
            &format!("{PREFIX}.agent.{name}.prepare"),
            Some(&format!("{inbox}.run.{name}")),
            &request,
        )?;
    }
    let ready = collect(&mut nats, &inbox, &names, "ready", plan.run_bound)?;
    let setup_s = ready
        .values()
        .filter_map(|v| v["setup_s"].as_f64())
        .fold(0.0, f64::max);
    let start_at_ns = sys::unix_ns() + START_LEAD_NS;
    for name in &names {
        let (offset_ns, _) = clocks[name];
        let agent_start = start_at_ns.saturating_add_signed(offset_ns);
        publish(
            &mut nats,
            &format!("{PREFIX}.agent.{name}.start"),
            None,
            &json!({"start_at_unix_ns": agent_start}),
        )?;
    }
    let probe = plan.server_pid.map(|pid| {
        let times = Times {
            start_unix_ns: start_at_ns,
            warmup_ns: (plan.warmup_s * 1e9) as u64,
            duration_ns: (plan.duration_s * 1e9) as u64,
        };
        ServerCpuProbe::start(pid, times)
    });
    let results = collect(&mut nats, &inbox, &names, "result", plan.run_bound)?;
    let mut report = merge(plan, &names, &clocks, &results, setup_s)?;
    if let Some(probe) = probe {
        add_server_cpu(&mut report, &probe.finish());
    }
    Ok(report)
}

/// The server CPU the controller measured, into the merged report (per second where the
/// agents sampled that second too).
fn add_server_cpu(report: &mut Report, cpu: &ServerCpu) {
    report.server_cpu_window_s = cpu.window_s;
    if let Some(series) = report.series.as_mut() {
        fill_server_cpu(&mut series.samples, &cpu.per_second_pct);
    }
}

/// Seconds beyond the agents' samples stay unsampled (null), not made up.
fn fill_server_cpu(samples: &mut [Sample], per_second_pct: &[f64]) {
    for (sample, pct) in samples.iter_mut().zip(per_second_pct) {
        sample.server_cpu_pct = Some(*pct);
    }
}

fn publish(
    nats: &mut Nats,
    subject: &str,
    reply: Option<&str>,
    value: &Value,
) -> Result<(), String> {
    nats.publish(subject, reply, value.to_string().as_bytes())
        .map_err(|e| format!("NATS publish {subject}: {e}"))
}

/// Asks until `count` agents answered (their names, sorted).
fn discover(nats: &mut Nats, inbox: &str, count: usize) -> Result<Vec<String>, String> {
    let deadline = sys::now_ns() + DISCOVER_TIMEOUT.as_nanos() as u64;
    let reply = format!("{inbox}.discover");
    let mut names = std::collections::BTreeSet::new();
    while names.len() < count && sys::now_ns() < deadline {
        publish(
            nats,
            &format!("{PREFIX}.discover"),
            Some(&reply),
            &json!({}),
        )?;
        let until = sys::now_ns() + 250_000_000;
        while sys::now_ns() < until {
            let Some(msg) = nats
                .next_msg(Duration::from_millis(50))
                .map_err(|e| format!("NATS: {e}"))?
            else {
                continue;
            };
            if msg.subject != reply {
                continue;
            }
            let answer: Value = serde_json::from_slice(&msg.payload).unwrap_or(Value::Null);
            if let Some(name) = answer["agent"].as_str() {
                names.insert(name.to_string());
            }
        }
    }
    if names.len() < count {
        return Err(format!(
            "found {} of {count} agents in {} s: {names:?} (start them with `wsrelay-swarm agent --nats URL`)",
            names.len(),
            DISCOVER_TIMEOUT.as_secs()
        ));
    }
    Ok(names.into_iter().take(count).collect())
}

/// (offset ns, round trip ns) of the probe with the shortest round trip.
fn measure_clock(nats: &mut Nats, inbox: &str, name: &str) -> Result<(i64, u64), String> {
    let mut best: Option<(i64, u64)> = None;
    for probe in 0..CLOCK_PROBES {
        let reply = format!("{inbox}.clock.{name}.{probe}");
        let sent_ns = sys::unix_ns();
        publish(
            nats,
            &format!("{PREFIX}.agent.{name}.clock"),
            Some(&reply),
            &json!({}),
        )?;
        let deadline = sys::now_ns() + 5_000_000_000;
        while sys::now_ns() < deadline {
            let Some(msg) = nats
                .next_msg(Duration::from_millis(100))
                .map_err(|e| format!("NATS: {e}"))?
            else {
                continue;
            };
            let received_ns = sys::unix_ns();
            if msg.subject != reply {
                continue;
            }
            let answer: Value = serde_json::from_slice(&msg.payload).unwrap_or(Value::Null);
            let Some(agent_ns) = answer["unix_ns"].as_u64() else {
                break;
            };
            let rtt_ns = received_ns.saturating_sub(sent_ns);
            let midpoint = sent_ns as i128 + i128::from(rtt_ns / 2);
            let offset = (agent_ns as i128 - midpoint) as i64;
            if best.is_none_or(|(_, rtt)| rtt_ns < rtt) {
                best = Some((offset, rtt_ns));
            }
            break;
        }
    }
    best.ok_or_else(|| format!("agent {name} did not answer the clock probes"))
}

/// Waits for one `kind` message from every agent on the run inbox; an agent's error ends it.
fn collect(
    nats: &mut Nats,
    inbox: &str,
    names: &[String],
    kind: &str,
    bound: Duration,
) -> Result<BTreeMap<String, Value>, String> {
    let deadline = sys::now_ns() + bound.as_nanos() as u64;
    let mut got = BTreeMap::new();
    while got.len() < names.len() {
        if sys::now_ns() >= deadline {
            let missing: Vec<&String> = names.iter().filter(|n| !got.contains_key(*n)).collect();
            return Err(format!(
                "no {kind} from agents {missing:?} in {} s",
                bound.as_secs()
            ));
        }
        let Some(msg) = nats
            .next_msg(Duration::from_millis(100))
            .map_err(|e| format!("NATS: {e}"))?
        else {
            continue;
        };
        let Some(name) = msg.subject.strip_prefix(&format!("{inbox}.run.")) else {
            continue;
        };
        let value: Value = serde_json::from_slice(&msg.payload).unwrap_or(Value::Null);
        match value["type"].as_str() {
            Some("error") => {
                return Err(format!(
                    "agent {name}: {}",
                    value["error"].as_str().unwrap_or("?")
                ))
            }
            Some(t) if t == kind && names.iter().any(|n| n == name) => {
                got.insert(name.to_string(), value);
            }
            _ => {}
        }
    }
    Ok(got)
}

fn merge(
    plan: &ControllerPlan,
    names: &[String],
    clocks: &BTreeMap<String, (i64, u64)>,
    results: &BTreeMap<String, Value>,
    setup_s: f64,
) -> Result<Report, String> {
    let mut stats = ThreadStats::default();
    let mut series = Series::default();
    let mut samples: Vec<Sample> = Vec::new();
    let mut counters = AnyCounters::default();
    let mut summaries = Vec::new();
    let mut conns_planned = 0;
    let mut drain_s: f64 = 0.0;
    for name in names {
        let result = AgentResult::from_json(&results[name]["result"])
            .map_err(|e| format!("agent {name}: {e}"))?;
        stats.merge(&result.stats);
        series.merge(&result.series);
        add_samples(&mut samples, &result.samples);
        counters.unmatched_total += result.counters.unmatched_total;
        counters.reactions_total += result.counters.reactions_total;
        counters.open_messages_total += result.counters.open_messages_total;
        counters.ramped_down_total += result.counters.ramped_down_total;
        conns_planned += result.conns_planned;
        drain_s = drain_s.max(result.drain_s);
        let (clock_offset_ns, clock_rtt_ns) = clocks[name];
        summaries.push(AgentSummary {
            name: name.clone(),
            clock_offset_ns,
            clock_rtt_ns,
            conns_planned: result.conns_planned,
            conns_ready: result.stats.conns_ready,
            sent_window: result.stats.sent_window,
            received_window: result.stats.received_window,
        });
    }
    let mut report = Report {
        scenario: plan.command.clone(),
        target: format!("{} via {} agents", plan.target_label, names.len()),
        threads: names.len() * threads_per_agent(&plan.args),
        conns_planned,
        setup_s,
        warmup_s: plan.warmup_s,
        duration_s: plan.duration_s,
        drain_s,
        server_cpu_window_s: None,
        server_wait_window_s: None,
        swarm_wait_window_s: None,
        server_rss_before_kib: None,
        server_rss_after_kib: None,
        server_in_process: false,
        limit_note: None,
        stats,
        server_latency: None,
        series: Some(SeriesReport { series, samples }),
        thresholds: Vec::new(),
        any: Some(counters),
        agents: summaries,
    };
    report.thresholds = plan.thresholds.iter().map(|t| t.check(&report)).collect();
    Ok(report)
}

/// `--threads` of the forwarded flags (each agent runs that many drivers).
fn threads_per_agent(args: &[String]) -> usize {
    let value = args
        .iter()
        .enumerate()
        .find_map(|(i, a)| match a.strip_prefix("--threads") {
            Some("") => args.get(i + 1).cloned(),
            Some(rest) => rest.strip_prefix('=').map(str::to_string),
            None => None,
        });
    value.and_then(|v| v.parse().ok()).unwrap_or(1).max(1)
}

/// Per-second samples of agents added (connections and CPU of all load machines).
fn add_samples(total: &mut Vec<Sample>, more: &[Sample]) {
    if total.len() < more.len() {
        total.resize(more.len(), Sample::default());
    }
    for (t, m) in total.iter_mut().zip(more) {
        t.conns_open += m.conns_open;
        t.swarm_cpu_pct += m.swarm_cpu_pct;
        t.server_cpu_pct = match (t.server_cpu_pct, m.server_cpu_pct) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_controller_keeps_its_own_flags() {
        let raw: Vec<String> = [
            "--url",
            "ws://127.0.0.1:1/echo",
            "--nats",
            "nats://x:1",
            "--agents=2",
            "--json",
            "--rate",
            "100",
            "--report",
            "r.html",
            "--threshold",
            "p99 < 5ms",
            "run.toml",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            forwarded_args(&raw, Some("run.toml")),
            ["--url", "ws://127.0.0.1:1/echo", "--rate", "100"]
        );
        assert_eq!(threads_per_agent(&["--threads".into(), "3".into()]), 3);
        assert_eq!(threads_per_agent(&["--threads=2".into()]), 2);
        assert_eq!(threads_per_agent(&[]), 1);
    }

    #[test]
    fn server_cpu_fills_the_seconds_the_agents_sampled() {
        let mut samples = vec![Sample::default(); 2];
        fill_server_cpu(&mut samples, &[40.0, 60.0, 80.0]);
        let pct: Vec<Option<f64>> = samples.iter().map(|s| s.server_cpu_pct).collect();
        assert_eq!(pct, [Some(40.0), Some(60.0)]);
    }
}
