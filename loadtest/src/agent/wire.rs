//! What agents send the controller at the end of a run, as JSON on NATS: every counter of
//! `ThreadStats`, its histograms in HdrHistogram's V2 serialization (base64), the per-second
//! series (per-second latency histograms likewise) and samples, and the engine's counters.
//! The controller decodes and merges them exactly (histograms add bucket by bucket).
//!
//! Owns: the result encoding. May not touch: sockets.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

use crate::any::conn::AnyCounters;
use crate::series::{Sample, Second, Series};
use crate::stats::ThreadStats;

/// One agent's measurements.
#[derive(Debug, Clone)]
pub struct AgentResult {
    /// Counters and histograms.
    pub stats: ThreadStats,
    /// Per-second measurements.
    pub series: Series,
    /// Per-second samples (connections, CPU).
    pub samples: Vec<Sample>,
    /// Engine counters.
    pub counters: AnyCounters,
    /// Seconds the setup took.
    pub setup_s: f64,
    /// Seconds the drain took.
    pub drain_s: f64,
    /// Clients this agent planned.
    pub conns_planned: u64,
}

fn histogram_to_base64(h: &Histogram<u64>) -> Result<String, String> {
    let mut bytes = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut bytes)
        .map_err(|e| format!("histogram serialization: {e:?}"))?;
    Ok(BASE64.encode(bytes))
}

fn histogram_from(value: &Value, key: &str) -> Result<Histogram<u64>, String> {
    let text = value[key]
        .as_str()
        .ok_or_else(|| format!("result: {key} is missing"))?;
    let bytes = BASE64
        .decode(text)
        .map_err(|e| format!("result: {key}: {e}"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("result: {key}: {e:?}"))
}

/// Counter fields of `ThreadStats`, by name.
const COUNTERS: [&str; 17] = [
    "sent_total",
    "sent_window",
    "due_total",
    "due_window",
    "received_total",
    "received_window",
    "received_during_window",
    "publish_skipped",
    "gap_messages",
    "reordered",
    "gap_notices",
    "churn_deliveries",
    "conns_ready",
    "conns_failed",
    "conns_lost",
    "churn_opened",
    "churn_closed",
];

fn counter_mut<'a>(s: &'a mut ThreadStats, name: &str) -> Option<&'a mut u64> {
    Some(match name {
        "sent_total" => &mut s.sent_total,
        "sent_window" => &mut s.sent_window,
        "due_total" => &mut s.due_total,
        "due_window" => &mut s.due_window,
        "received_total" => &mut s.received_total,
        "received_window" => &mut s.received_window,
        "received_during_window" => &mut s.received_during_window,
        "publish_skipped" => &mut s.publish_skipped,
        "gap_messages" => &mut s.gap_messages,
        "reordered" => &mut s.reordered,
        "gap_notices" => &mut s.gap_notices,
        "churn_deliveries" => &mut s.churn_deliveries,
        "conns_ready" => &mut s.conns_ready,
        "conns_failed" => &mut s.conns_failed,
        "conns_lost" => &mut s.conns_lost,
        "churn_opened" => &mut s.churn_opened,
        "churn_closed" => &mut s.churn_closed,
        _ => return None,
    })
}

impl AgentResult {
    /// The JSON sent on NATS.
    pub fn to_json(&self) -> Result<Value, String> {
        let mut stats = self.stats.clone();
        let mut counters = Map::new();
        for name in COUNTERS {
            let value = counter_mut(&mut stats, name).map_or(0, |v| *v);
            counters.insert(name.into(), json!(value));
        }
        let seconds = self
            .series
            .seconds
            .iter()
            .map(|s| {
                Ok(json!({
                    "sent": s.sent_total, "received": s.received_total, "errors": s.errors_total,
                    "latency_ns": histogram_to_base64(&s.latency_ns)?,
                }))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let samples: Vec<Value> = self
            .samples
            .iter()
            .map(|s| json!([s.conns_open, s.swarm_cpu_pct, s.server_cpu_pct]))
            .collect();
        let c = &self.counters;
        Ok(json!({
            "counters": counters,
            "errors": self.stats.errors,
            "close_codes": self.stats.close_codes,
            "cpu_window_s": self.stats.cpu_window_s,
            "latency_ns": histogram_to_base64(&self.stats.latency_ns)?,
            "connect_us": histogram_to_base64(&self.stats.connect_us)?,
            "send_lag_ns": histogram_to_base64(&self.stats.send_lag_ns)?,
            "seconds": seconds,
            "samples": samples,
            "engine": [c.unmatched_total, c.reactions_total, c.open_messages_total, c.ramped_down_total],
            "setup_s": self.setup_s,
            "drain_s": self.drain_s,
            "conns_planned": self.conns_planned,
        }))
    }

    /// Decodes what `to_json` produced (received data: every field checked).
    pub fn from_json(value: &Value) -> Result<AgentResult, String> {
        let engine = |i: usize| value["engine"][i].as_u64().unwrap_or(0);
        Ok(AgentResult {
            stats: stats_from_json(value)?,
            series: series_from_json(value)?,
            samples: samples_from_json(value),
            counters: AnyCounters {
                unmatched_total: engine(0),
                reactions_total: engine(1),
                open_messages_total: engine(2),
                ramped_down_total: engine(3),
            },
            setup_s: value["setup_s"].as_f64().unwrap_or(0.0),
            drain_s: value["drain_s"].as_f64().unwrap_or(0.0),
            conns_planned: value["conns_planned"].as_u64().unwrap_or(0),
        })
    }
}

/// The counters, errors, close codes, CPU and histograms of a result (`counters.*` required).
fn stats_from_json(value: &Value) -> Result<ThreadStats, String> {
    let mut stats = ThreadStats::default();
    for name in COUNTERS {
        let v = value["counters"][name]
            .as_u64()
            .ok_or_else(|| format!("result: counters.{name} is missing"))?;
        if let Some(field) = counter_mut(&mut stats, name) {
            *field = v;
        }
    }
    if let Some(errors) = value["errors"].as_object() {
        for (kind, n) in errors {
            stats.errors.insert(kind.clone(), n.as_u64().unwrap_or(0));
        }
    }
    if let Some(codes) = value["close_codes"].as_object() {
        for (code, n) in codes {
            if let Ok(code) = code.parse::<u16>() {
                stats.close_codes.insert(code, n.as_u64().unwrap_or(0));
            }
        }
    }
    stats.cpu_window_s = value["cpu_window_s"].as_f64().unwrap_or(0.0);
    stats.latency_ns = merge_into(stats.latency_ns, histogram_from(value, "latency_ns")?);
    stats.connect_us = merge_into(stats.connect_us, histogram_from(value, "connect_us")?);
    stats.send_lag_ns = merge_into(stats.send_lag_ns, histogram_from(value, "send_lag_ns")?);
    Ok(stats)
}

/// The per-second series of a result.
fn series_from_json(value: &Value) -> Result<Series, String> {
    let mut series = Series::default();
    for second in value["seconds"].as_array().into_iter().flatten() {
        series.seconds.push(Second {
            sent_total: second["sent"].as_u64().unwrap_or(0),
            received_total: second["received"].as_u64().unwrap_or(0),
            errors_total: second["errors"].as_u64().unwrap_or(0),
            latency_ns: merge_into(
                Second::default().latency_ns,
                histogram_from(second, "latency_ns")?,
            ),
        });
    }
    Ok(series)
}

/// The per-second samples (connections open, CPU) of a result.
fn samples_from_json(value: &Value) -> Vec<Sample> {
    value["samples"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| Sample {
            conns_open: s[0].as_u64().unwrap_or(0),
            swarm_cpu_pct: s[1].as_f64().unwrap_or(0.0),
            server_cpu_pct: s[2].as_f64(),
        })
        .collect()
}

/// `decoded` added into an empty histogram of the swarm's bounds (so later merges line up).
fn merge_into(mut empty: Histogram<u64>, decoded: Histogram<u64>) -> Histogram<u64> {
    if empty.add(&decoded).is_err() {
        return decoded;
    }
    empty
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_survives_the_wire() {
        let mut stats = ThreadStats {
            sent_window: 7,
            received_window: 6,
            ..ThreadStats::default()
        };
        stats.record_latency(1_500_000);
        stats.record_latency(3_000);
        stats.error("setup_eof");
        stats.close_codes.insert(1000, 2);
        let mut series = Series::new(0);
        series.received(1_200_000_000, 9_000);
        let result = AgentResult {
            stats,
            series,
            samples: vec![Sample {
                conns_open: 3,
                swarm_cpu_pct: 12.5,
                server_cpu_pct: None,
            }],
            counters: AnyCounters {
                reactions_total: 4,
                ..AnyCounters::default()
            },
            setup_s: 0.5,
            drain_s: 0.1,
            conns_planned: 3,
        };
        let text = result.to_json().unwrap().to_string();
        let back = AgentResult::from_json(&serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(back.stats.sent_window, 7);
        assert_eq!(back.stats.received_window, 6);
        assert_eq!(back.stats.latency_ns.len(), 2);
        assert_eq!(back.stats.latency_ns.max(), result.stats.latency_ns.max());
        assert_eq!(back.stats.errors["setup_eof"], 1);
        assert_eq!(back.stats.close_codes[&1000], 2);
        assert_eq!(back.series.seconds.len(), 2);
        assert_eq!(back.series.seconds[1].received_total, 1);
        assert_eq!(back.samples[0].conns_open, 3);
        assert_eq!(back.counters.reactions_total, 4);
        assert!(AgentResult::from_json(&json!({})).is_err());
    }
}
