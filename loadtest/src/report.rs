//! The end-of-run report: derived figures (rates, loss, CPU per million deliveries, memory per
//! connection), a human summary and a JSON document for machines.
//!
//! Owns: presentation. May not touch: anything live (it runs after the drivers stopped).

use serde_json::{json, Value};

use crate::stats::ThreadStats;

/// Everything measured in one run.
#[derive(Debug, Clone)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// What was measured.
    pub target: String,
    /// Driver threads.
    pub threads: usize,
    /// Steady connections planned.
    pub conns_planned: u64,
    /// Seconds to set every connection up.
    pub setup_s: f64,
    /// Warm-up seconds.
    pub warmup_s: f64,
    /// Measured seconds.
    pub duration_s: f64,
    /// Seconds spent waiting for outstanding deliveries after publishing.
    pub drain_s: f64,
    /// Server CPU-seconds over the window (`--server-pid`, or the in-process relay's loops).
    pub server_cpu_window_s: Option<f64>,
    /// Seconds the server's threads were runnable but waiting for a CPU, over the window.
    pub server_wait_window_s: Option<f64>,
    /// Seconds the swarm's driver threads were runnable but waiting for a CPU.
    pub swarm_wait_window_s: Option<f64>,
    /// Server RSS before any connection, KiB.
    pub server_rss_before_kib: Option<u64>,
    /// Server RSS at the window's end, KiB.
    pub server_rss_after_kib: Option<u64>,
    /// The relay ran in the swarm's process (its RSS includes the swarm).
    pub server_in_process: bool,
    /// Set when the open-file limit stops the run short.
    pub limit_note: Option<String>,
    /// Merged measurements.
    pub stats: ThreadStats,
    /// The relay's own latency from its `/stats` (wsrelay targets only).
    pub server_latency: Option<crate::server_stats::ServerLatency>,
    /// Per-second series (runs of the `echo` and `script` scenarios).
    pub series: Option<crate::series::SeriesReport>,
    /// Thresholds checked after the run (any failing: exit status 1).
    pub thresholds: Vec<crate::any::threshold::ThresholdResult>,
    /// Counters of the `echo` and `script` engine.
    pub any: Option<crate::any::conn::AnyCounters>,
    /// Agent mode: each agent's share and clock offset.
    pub agents: Vec<crate::agent::controller::AgentSummary>,
}

impl Report {
    /// Measured deliveries missing at the end (negative: duplicates).
    pub fn loss(&self) -> i64 {
        self.stats.due_window as i64 - self.stats.received_window as i64
    }

    /// Deliveries received per second while the window was open.
    pub fn delivered_per_s(&self) -> f64 {
        self.stats.received_during_window as f64 / self.duration_s.max(1e-9)
    }

    /// Measured publishes per second.
    pub fn sent_per_s(&self) -> f64 {
        self.stats.sent_window as f64 / self.duration_s.max(1e-9)
    }

    /// Frames that carried deliveries per delivery, both while the window was open (1 without
    /// room ticks; 1 / messages per batch with them).
    pub fn frames_per_delivery(&self) -> Option<f64> {
        let deliveries = self.stats.received_during_window;
        (deliveries > 0 && self.stats.delivery_frames_during_window > 0)
            .then(|| self.stats.delivery_frames_during_window as f64 / deliveries as f64)
    }

    /// Server CPU-seconds per million deliveries received during the window.
    pub fn server_cpu_s_per_million(&self) -> Option<f64> {
        let deliveries = self.stats.received_during_window;
        self.server_cpu_window_s
            .filter(|_| deliveries > 0)
            .map(|cpu| cpu * 1e6 / deliveries as f64)
    }

    /// Swarm CPU-seconds per million deliveries received during the window.
    pub fn swarm_cpu_s_per_million(&self) -> Option<f64> {
        let deliveries = self.stats.received_during_window;
        (deliveries > 0).then(|| self.stats.cpu_window_s * 1e6 / deliveries as f64)
    }

    /// Server memory per ready connection, bytes (RSS delta / connections).
    pub fn server_bytes_per_conn(&self) -> Option<f64> {
        let (before, after) = (self.server_rss_before_kib?, self.server_rss_after_kib?);
        let conns = self.stats.conns_ready.max(1);
        Some((after as f64 - before as f64) * 1024.0 / conns as f64)
    }

    fn latency_us(&self, quantile: f64) -> f64 {
        quantile_us(&self.stats.latency_ns, quantile)
    }

    fn send_lag_us(&self, quantile: f64) -> f64 {
        quantile_us(&self.stats.send_lag_ns, quantile)
    }

    fn connect_us(&self, quantile: f64) -> u64 {
        self.stats.connect_us.value_at_quantile(quantile)
    }

    /// Whether every threshold holds (true without thresholds).
    pub fn thresholds_pass(&self) -> bool {
        self.thresholds.iter().all(|t| t.pass)
    }

    /// The machine-readable report: the fields of every scenario, plus `series`,
    /// `distribution`, `thresholds` and `replies` when the run has them.
    pub fn to_json(&self) -> Value {
        let mut value = self.base_json();
        if let Some(object) = value.as_object_mut() {
            if let Some(series) = &self.series {
                object.insert("series".into(), series.to_json());
            }
            if self.series.is_some() || self.any.is_some() {
                let points: Vec<Value> = crate::series::percentile_points(&self.stats.latency_ns)
                    .into_iter()
                    .map(|(pct, us)| json!({"percentile": pct, "latency_us": us}))
                    .collect();
                object.insert("distribution".into(), Value::Array(points));
            }
            if !self.thresholds.is_empty() {
                let results = self.thresholds.iter().map(|t| t.to_json()).collect();
                object.insert("thresholds".into(), Value::Array(results));
                object.insert("thresholds_pass".into(), json!(self.thresholds_pass()));
            }
            if !self.agents.is_empty() {
                let agents = self.agents.iter().map(|a| a.to_json()).collect();
                object.insert("agents".into(), Value::Array(agents));
            }
            if let Some(any) = &self.any {
                object.insert(
                    "messages".into(),
                    json!({"unmatched": any.unmatched_total, "reactions": any.reactions_total,
                           "on_open": any.open_messages_total,
                           "ramped_down": any.ramped_down_total}),
                );
            }
        }
        value
    }

    fn base_json(&self) -> Value {
        let s = &self.stats;
        let lat = |q| self.latency_us(q);
        let mut value = json!({
            "scenario": self.scenario,
            "target": self.target,
            "threads": self.threads,
            "connections": {
                "planned": self.conns_planned, "ready": s.conns_ready,
                "failed": s.conns_failed, "lost": s.conns_lost, "setup_s": self.setup_s,
                "connect_us": {"p50": self.connect_us(0.5), "p99": self.connect_us(0.99),
                               "max": s.connect_us.max()},
            },
            "window_s": self.duration_s, "warmup_s": self.warmup_s, "drain_s": self.drain_s,
            "sent": s.sent_window, "sent_per_s": self.sent_per_s(),
            "expected": s.due_window, "received": s.received_window,
            "delivered_per_s": self.delivered_per_s(),
            "received_during_window": s.received_during_window, "loss": self.loss(),
            "publish_skipped": s.publish_skipped, "gap_messages": s.gap_messages,
            "reordered": s.reordered, "gap_notices": s.gap_notices,
            "latency_us": {"p50": lat(0.5), "p90": lat(0.9), "p99": lat(0.99),
                           "p999": lat(0.999), "max": s.latency_ns.max() as f64 / 1e3,
                           "samples": s.latency_ns.len()},
            "send_lag_us": {"p50": self.send_lag_us(0.5), "p99": self.send_lag_us(0.99),
                            "max": s.send_lag_ns.max() as f64 / 1e3},
            "churn": {"opened": s.churn_opened, "ended": s.churn_closed,
                      "deliveries": s.churn_deliveries},
            "errors": s.errors, "close_codes": s.close_codes,
            "swarm_cpu_s": s.cpu_window_s,
            "swarm_cpu_s_per_million": self.swarm_cpu_s_per_million(),
            "server_cpu_s": self.server_cpu_window_s,
            "server_run_queue_wait_s": self.server_wait_window_s,
            "swarm_run_queue_wait_s": self.swarm_wait_window_s,
            "server_cpu_s_per_million": self.server_cpu_s_per_million(),
            "server_rss_before_kib": self.server_rss_before_kib,
            "server_rss_after_kib": self.server_rss_after_kib,
            "server_bytes_per_conn": self.server_bytes_per_conn(),
            "server_in_process": self.server_in_process,
            "limit_note": self.limit_note,
            "server_relay_latency": self.server_latency.map(|l| json!({
                "count": l.count, "p50_ns": l.p50_ns, "p99_ns": l.p99_ns,
                "p999_ns": l.p999_ns, "max_ns": l.max_ns,
            })),
        });
        value["delivery_frames"] = json!(s.delivery_frames_during_window);
        value["frames_per_delivery"] = json!(self.frames_per_delivery());
        value["own_in_batch"] = json!(s.own_in_batch);
        value
    }

    /// The human summary.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let s = &self.stats;
        let mut line = |text: String| {
            out.push_str(&text);
            out.push('\n');
        };
        line(format!(
            "wsrelay-swarm {} against {}",
            self.scenario, self.target
        ));
        line(format!(
            "  connections  {} ready of {} planned, {} failed, {} lost; setup {:.2} s; connect p50 {} µs p99 {} µs max {} µs",
            s.conns_ready, self.conns_planned, s.conns_failed, s.conns_lost, self.setup_s,
            self.connect_us(0.5), self.connect_us(0.99), s.connect_us.max()
        ));
        if s.due_total > 0 || s.sent_total > 0 {
            self.traffic_lines(&mut line);
        }
        if s.churn_opened > 0 {
            line(format!(
                "  churn        opened {} ended {} (their deliveries {})",
                s.churn_opened, s.churn_closed, s.churn_deliveries
            ));
        }
        line(self.cpu_line());
        if let Some(memory) = self.memory_line() {
            line(memory);
        }
        if !s.errors.is_empty() || !s.close_codes.is_empty() {
            line(format!(
                "  errors       {:?}  close codes {:?}",
                s.errors, s.close_codes
            ));
        }
        self.outcome_lines(&mut line);
        out
    }

    /// The server's memory per connection, when its RSS was read.
    fn memory_line(&self) -> Option<String> {
        let bytes = self.server_bytes_per_conn()?;
        Some(format!(
            "  memory       server RSS {} → {} KiB: {:.0} bytes per connection{}",
            self.server_rss_before_kib.unwrap_or(0),
            self.server_rss_after_kib.unwrap_or(0),
            bytes,
            if self.server_in_process {
                " (in-process: includes the swarm's side)"
            } else {
                ""
            }
        ))
    }

    /// What the run adds to the swarm's figures: the descriptor-limit note, the scripted
    /// scenario's messages, each agent's share, and the thresholds' verdicts.
    fn outcome_lines(&self, line: &mut impl FnMut(String)) {
        if let Some(note) = &self.limit_note {
            line(format!("  LIMIT        {note}"));
        }
        if let Some(any) = &self.any {
            line(format!(
                "  messages     on open {}, reactions {}, unmatched received {}; clients closed by ramp-down {}",
                any.open_messages_total, any.reactions_total, any.unmatched_total,
                any.ramped_down_total
            ));
        }
        for a in &self.agents {
            line(format!(
                "  agent        {}: {} of {} clients ready, sent {} received {}; clock offset {:+.3} ms (±{:.3} ms)",
                a.name, a.conns_ready, a.conns_planned, a.sent_window, a.received_window,
                a.clock_offset_ns as f64 / 1e6, a.clock_rtt_ns as f64 / 2e6
            ));
        }
        for t in &self.thresholds {
            line(format!(
                "  threshold    {} {} (measured {:.3})",
                if t.pass { "PASS" } else { "FAIL" },
                t.text,
                t.value
            ));
        }
    }

    fn traffic_lines(&self, line: &mut impl FnMut(String)) {
        let s = &self.stats;
        line(format!(
            "  window       {:.1} s after {:.1} s warm-up (drain {:.2} s), {} driver thread(s)",
            self.duration_s, self.warmup_s, self.drain_s, self.threads
        ));
        line(format!(
            "  throughput   sent {:.0}/s, delivered {:.0}/s (received while the window was open)",
            self.sent_per_s(),
            self.delivered_per_s()
        ));
        line(format!(
            "  deliveries   expected {} received {} loss {} (gaps {}, reordered {}, gap notices {}, publishes skipped {})",
            s.due_window, s.received_window, self.loss(), s.gap_messages, s.reordered,
            s.gap_notices, s.publish_skipped
        ));
        if let Some(f) = self.frames_per_delivery() {
            line(format!(
                "  frames       {:.3} per delivery ({} frames carried {} deliveries while the window was open; own messages in batches {})",
                f, s.delivery_frames_during_window, s.received_during_window, s.own_in_batch
            ));
        }
        line(format!(
            "  all phases   sent {} due {} received {} (warm-up and window)",
            s.sent_total, s.due_total, s.received_total
        ));
        line(format!(
            "  latency µs   p50 {:.0}  p90 {:.0}  p99 {:.0}  p99.9 {:.0}  max {:.0}  (from the scheduled send time; {} samples)",
            self.latency_us(0.5), self.latency_us(0.9), self.latency_us(0.99),
            self.latency_us(0.999), s.latency_ns.max() as f64 / 1e3, s.latency_ns.len()
        ));
        if !s.send_lag_ns.is_empty() {
            line(format!(
                "  send lag µs  p50 {:.0}  p99 {:.0}  max {:.0}  (publishes leaving the swarm after their scheduled time: the swarm's share of the latency)",
                self.send_lag_us(0.5), self.send_lag_us(0.99), s.send_lag_ns.max() as f64 / 1e3
            ));
        }
        if let Some(l) = self.server_latency {
            line(format!(
                "  relay says   read → write p50 {:.0}  p99 {:.0}  p99.9 {:.0}  max {:.0} µs ({} deliveries, whole run; the rest of end-to-end is kernel, network and the swarm)",
                l.p50_ns as f64 / 1e3, l.p99_ns as f64 / 1e3, l.p999_ns as f64 / 1e3,
                l.max_ns as f64 / 1e3, l.count
            ));
        }
    }

    fn cpu_line(&self) -> String {
        let window = self.duration_s.max(1e-9);
        let swarm = format!(
            "swarm {:.2} CPU-s ({:.0}% of one core){}",
            self.stats.cpu_window_s,
            100.0 * self.stats.cpu_window_s / window,
            self.swarm_cpu_s_per_million()
                .map(|c| format!(", {c:.3} per M deliveries"))
                .unwrap_or_default()
        );
        let server = match self.server_cpu_window_s {
            Some(cpu) => format!(
                "server {:.2} CPU-s ({:.0}% of one core){}",
                cpu,
                100.0 * cpu / window,
                self.server_cpu_s_per_million()
                    .map(|c| format!(", {c:.3} per M deliveries"))
                    .unwrap_or_default()
            ),
            None => "server CPU unknown (pass --server-pid)".to_string(),
        };
        let waits = format!(
            "  cpu wait     runnable but waiting for a CPU: swarm {}, server {} (other load on the machine)",
            fmt_seconds(self.swarm_wait_window_s),
            fmt_seconds(self.server_wait_window_s)
        );
        format!("  cpu          {swarm}; {server}\n{waits}")
    }
}

fn fmt_seconds(value: Option<f64>) -> String {
    value.map_or_else(|| "unknown".to_string(), |s| format!("{s:.2} s"))
}

/// `quantile` of a histogram of nanoseconds, in µs (0 when empty).
fn quantile_us(h: &hdrhistogram::Histogram<u64>, quantile: f64) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    h.value_at_quantile(quantile) as f64 / 1e3
}
