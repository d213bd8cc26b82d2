//! Several load machines: `wsrelay-swarm agent --nats URL` on each, and a controller (`echo`
//! or `script` with `--nats URL --agents N`) that finds the agents, measures their clock
//! offsets, splits the clients between them (agent k of n runs clients c with c % n == k),
//! starts them at one agreed time and merges their counters and HDR histograms into one
//! report. Everything travels as JSON on NATS subjects; nothing else is on the wire.
//!
//! Subjects (prefix `wsrelay-swarm`):
//! - `discover` (request): every agent answers `{"agent": NAME}`.
//! - `agent.NAME.clock` (request): the agent answers `{"unix_ns": T}` (its wall clock).
//! - `agent.NAME.prepare` (request): `{"command", "args", "scenario", "shard": [k, n]}`; the
//!   agent sets its clients up and answers `{"type": "ready"}` (or `"error"`) on the reply
//!   subject, later `{"type": "result", "result": …}` there.
//! - `agent.NAME.start`: `{"start_at_unix_ns": T}` in the agent's clock.
//!
//! Owns: agent mode. May not touch: the load engine's internals (it runs `any::run`).

pub mod controller;
pub mod nats;
pub mod server_cpu;
pub mod wire;

use std::sync::mpsc;
use std::time::Duration;

use clap::{Args, Parser};
use serde_json::{json, Value};

use crate::agent::nats::{Msg, Nats};
use crate::agent::wire::AgentResult;
use crate::any::args::Prepared;
use crate::any::run::StartGate;
use crate::cli::{Action, Cli};
use crate::sys;

/// Subject prefix of every agent-mode message.
pub const PREFIX: &str = "wsrelay-swarm";

/// `agent` flags.
#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// NATS server, e.g. nats://127.0.0.1:4222.
    #[arg(long)]
    pub nats: String,
    /// This agent's name (unique among agents; default: host name and pid).
    #[arg(long)]
    pub name: Option<String>,
    /// Exit after this many runs (default: serve until stopped).
    #[arg(long)]
    pub max_runs: Option<u32>,
    /// Accept runs whose target is not loopback (the controller must ask for it too with its
    /// own --allow-remote). Without it this agent loads 127.0.0.0/8 and ::1 only, whatever a
    /// message on NATS asks.
    #[arg(long)]
    pub allow_remote: bool,
}

/// Serves runs until `max_runs` (or forever); `Err` ends the agent with a message.
pub fn run_agent(args: &AgentArgs) -> Result<(), String> {
    let name = args.name.clone().unwrap_or_else(default_name);
    if name.is_empty() || name.contains(['.', ' ', '*', '>']) {
        return Err(format!("agent name {name:?}: no dots, spaces or wildcards"));
    }
    let mut nats = Nats::connect(&args.nats, &format!("wsrelay-swarm agent {name}"))
        .map_err(|e| format!("NATS {}: {e}", args.nats))?;
    nats.subscribe(&format!("{PREFIX}.discover"))
        .and_then(|_| nats.subscribe(&format!("{PREFIX}.agent.{name}.>")))
        .and_then(|_| nats.flush(Duration::from_secs(5)).map(|_| ()))
        .map_err(|e| format!("NATS: {e}"))?;
    eprintln!("wsrelay-swarm agent {name}: ready on {}", args.nats);
    let mut runs = 0;
    while args.max_runs.is_none_or(|max| runs < max) {
        let msg = match nats.next_msg(Duration::from_secs(1)) {
            Ok(Some(msg)) => msg,
            Ok(None) => continue,
            Err(e) => return Err(format!("NATS: {e}")),
        };
        let Some(reply) = msg.reply.clone() else {
            continue;
        };
        let answered = match msg.subject.rsplit('.').next() {
            Some("discover") => {
                nats.publish(&reply, None, json!({"agent": name}).to_string().as_bytes())
            }
            Some("clock") => nats.publish(
                &reply,
                None,
                json!({"unix_ns": sys::unix_ns()}).to_string().as_bytes(),
            ),
            Some("prepare") => {
                runs += 1;
                serve_run(&mut nats, (&name, args.allow_remote), &msg, &reply)
            }
            _ => Ok(()),
        };
        answered.map_err(|e| format!("NATS: {e}"))?;
    }
    Ok(())
}

fn default_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{host}-{}", std::process::id())
}

/// Prepares, waits for the start, runs, and answers on `reply`: ready, then the result (or an
/// error at any point).
fn serve_run(
    nats: &mut Nats,
    (name, allow_remote): (&str, bool),
    msg: &Msg,
    reply: &str,
) -> std::io::Result<()> {
    let answer =
        |nats: &mut Nats, value: Value| nats.publish(reply, None, value.to_string().as_bytes());
    let error = |e: String| json!({"type": "error", "agent": name, "error": e});
    let request: Value = match serde_json::from_slice(&msg.payload) {
        Ok(v) => v,
        Err(e) => return answer(nats, error(format!("prepare: not JSON: {e}"))),
    };
    let prepared = match prepare(&request, allow_remote) {
        Ok(p) => p,
        Err(e) => return answer(nats, error(e)),
    };
    let setup_timeout = prepared.options.setup_timeout;
    let (settled_tx, settled_rx) = mpsc::channel();
    let (start_tx, start_rx) = mpsc::channel();
    let mut prepared = prepared;
    prepared.options.gate = Some(StartGate {
        settled: settled_tx,
        start_at_unix_ns: start_rx,
    });
    let run = std::thread::spawn(move || run_for_result(prepared));
    let setup_s = settled_rx
        .recv_timeout(setup_timeout + Duration::from_secs(5))
        .unwrap_or(f64::NAN);
    answer(
        nats,
        json!({"type": "ready", "agent": name, "setup_s": setup_s}),
    )?;
    // Wait for the start (bounded by the run's own setup timeout: it gives up after it).
    let start_subject = format!("{PREFIX}.agent.{name}.start");
    let deadline = sys::now_ns() + setup_timeout.as_nanos() as u64;
    while sys::now_ns() < deadline {
        match nats.next_msg(Duration::from_millis(100))? {
            Some(m) if m.subject == start_subject => {
                let start = serde_json::from_slice::<Value>(&m.payload)
                    .ok()
                    .and_then(|v| v["start_at_unix_ns"].as_u64());
                if let Some(start) = start {
                    let _ = start_tx.send(start);
                    break;
                }
            }
            _ => {}
        }
    }
    drop(start_tx);
    // Keep answering the server's PINGs while the run goes on.
    while !run.is_finished() {
        let _ = nats.next_msg(Duration::from_millis(100))?;
    }
    let value = match run.join() {
        Ok(Ok(result)) => json!({"type": "result", "agent": name, "result": result}),
        Ok(Err(e)) => error(e),
        Err(_) => error("the run panicked".into()),
    };
    answer(nats, value)
}

fn run_for_result(prepared: Prepared) -> Result<Value, String> {
    let shard = prepared.options.settings.shard;
    let report = prepared.run()?;
    let series = report.series.unwrap_or_default();
    AgentResult {
        setup_s: report.setup_s,
        drain_s: report.drain_s,
        conns_planned: report.conns_planned,
        stats: report.stats,
        series: series.series,
        samples: series.samples,
        counters: report.any.unwrap_or_default(),
    }
    .to_json()
    .map(|mut v| {
        v["shard"] = json!([shard.0, shard.1]);
        v
    })
}

/// The run a controller's `prepare` asks for (checked like a command line). A remote target
/// needs `--allow-remote` from the controller AND this agent's own `allow_remote`: the
/// controller's word alone (anyone who can publish on the NATS server) is not enough.
fn prepare(request: &Value, allow_remote: bool) -> Result<Prepared, String> {
    let command = request["command"].as_str().unwrap_or("");
    let args: Vec<String> = request["args"]
        .as_array()
        .ok_or("prepare: args is missing")?
        .iter()
        .map(|a| {
            a.as_str()
                .map(str::to_string)
                .ok_or("prepare: args must be strings")
        })
        .collect::<Result<_, _>>()?;
    let shard = match (request["shard"][0].as_u64(), request["shard"][1].as_u64()) {
        (Some(k), Some(n)) if k < n && n <= u64::from(u32::MAX) => (k as u32, n as u32),
        _ => return Err("prepare: shard must be [k, n] with k < n".into()),
    };
    let mut argv = vec!["wsrelay-swarm".to_string(), command.to_string()];
    argv.extend(args);
    if command == "script" {
        argv.push("controller-scenario.toml".into());
    }
    let cli = Cli::try_parse_from(&argv).map_err(|e| format!("prepare: {e}"))?;
    let refused = |asked: bool| {
        move |e: String| match asked && !allow_remote {
            true => format!("this agent was started without --allow-remote: {e}"),
            false => e,
        }
    };
    let mut prepared = match cli.command.into_action() {
        Action::Echo(mut a) if a.url.is_some() => {
            let asked = a.common.allow_remote;
            a.common.allow_remote &= allow_remote;
            a.prepare().map_err(refused(asked))?
        }
        Action::Echo(_) => return Err("agents need --url (no in-process server)".into()),
        Action::Script(mut a) => {
            let text = request["scenario"]
                .as_str()
                .ok_or("prepare: scenario is missing")?;
            let asked = a.common.allow_remote;
            a.common.allow_remote &= allow_remote;
            a.prepare_text(text).map_err(refused(asked))?
        }
        _ => return Err(format!("prepare: {command:?} cannot run on agents")),
    };
    prepared.options.settings.shard = shard;
    Ok(prepared)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A remote target needs --allow-remote from the controller AND the agent. Preparing
    /// connects nowhere (192.0.2.1 is TEST-NET-1, RFC 5737).
    #[test]
    fn a_remote_target_needs_both_sides_to_allow_it() {
        let request = |allow: bool| {
            let mut args = vec!["--url", "ws://192.0.2.1:9/echo", "--duration", "1s"];
            if allow {
                args.push("--allow-remote");
            }
            json!({"command": "echo", "args": args, "shard": [0, 1]})
        };
        let err = |r: Result<Prepared, String>| r.err().unwrap_or_default();
        let e = err(prepare(&request(true), false));
        assert!(
            e.starts_with("this agent was started without --allow-remote"),
            "{e}"
        );
        let e = err(prepare(&request(false), true));
        assert!(e.contains("pass --allow-remote"), "{e}");
        assert!(!e.contains("this agent"), "{e}");
        assert!(prepare(&request(true), true).is_ok());
    }
}
