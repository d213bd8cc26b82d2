//! Thresholds: pass/fail rules such as `p99 < 50ms` or `errors < 0.1%`, checked against the
//! report after the run; any failure makes the exit status 1 (as CI users expect of k6).
//!
//! Owns: the rule language and its evaluation. May not touch: anything live.
//!
//! Metrics: `p50`, `p90`, `p99`, `p999`, `max` (latency; units ns, us, µs, ms, s), `errors`
//! (errors + missing replies; a count, or with `%` a share of replies expected plus
//! connections planned), `loss` (missing replies; count, or `%` of expected),
//! `conns_failed` (count), `received_per_s` (throughput).

use serde_json::{json, Value};

use crate::report::Report;

/// A metric a threshold reads.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Metric {
    Latency(f64),
    LatencyMax,
    Errors,
    Loss,
    ConnsFailed,
    ReceivedPerS,
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

/// One rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// As written.
    pub text: String,
    metric: Metric,
    op: Op,
    /// Limit in the metric's base unit (µs for latency, a count, or a percentage).
    limit: f64,
    percent: bool,
}

/// A rule checked against a run.
#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdResult {
    /// The rule as written.
    pub text: String,
    /// The measured value (µs, count, % or per second).
    pub value: f64,
    /// Whether it holds.
    pub pass: bool,
}

impl ThresholdResult {
    /// JSON form.
    pub fn to_json(&self) -> Value {
        json!({"threshold": self.text, "value": self.value, "pass": self.pass})
    }
}

impl Threshold {
    /// Parses `METRIC OP VALUE[UNIT]`.
    pub fn parse(text: &str) -> Result<Threshold, String> {
        let ops = [
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("==", Op::Eq),
            ("<", Op::Lt),
            (">", Op::Gt),
        ];
        let (at, symbol, op) = ops
            .iter()
            .filter_map(|&(symbol, op)| text.find(symbol).map(|at| (at, symbol, op)))
            .min_by_key(|&(at, symbol, _)| (at, usize::MAX - symbol.len()))
            .ok_or_else(|| format!("threshold {text:?}: expected METRIC < VALUE"))?;
        let name = text[..at].trim();
        let value = text[at + symbol.len()..].trim();
        let metric = match name {
            "p50" => Metric::Latency(0.5),
            "p90" => Metric::Latency(0.9),
            "p99" => Metric::Latency(0.99),
            "p999" | "p99.9" => Metric::Latency(0.999),
            "max" => Metric::LatencyMax,
            "errors" => Metric::Errors,
            "loss" => Metric::Loss,
            "conns_failed" => Metric::ConnsFailed,
            "received_per_s" => Metric::ReceivedPerS,
            _ => {
                return Err(format!(
                    "threshold {text:?}: unknown metric {name:?} (p50, p90, p99, p999, max, \
                     errors, loss, conns_failed, received_per_s)"
                ))
            }
        };
        let (limit, percent) = parse_limit(metric, value)
            .ok_or_else(|| format!("threshold {text:?}: bad value {value:?} for {name}"))?;
        Ok(Threshold {
            text: text.trim().to_string(),
            metric,
            op,
            limit,
            percent,
        })
    }

    /// Checks the rule against `report`.
    pub fn check(&self, report: &Report) -> ThresholdResult {
        let s = &report.stats;
        let errors: u64 = s.errors.values().sum::<u64>() + report.loss().max(0) as u64;
        let value = match self.metric {
            // No samples: NaN, which fails every comparison (nothing measured is no pass).
            Metric::Latency(_) if s.latency_ns.is_empty() => f64::NAN,
            Metric::Latency(q) => s.latency_ns.value_at_quantile(q) as f64 / 1e3,
            Metric::LatencyMax => s.latency_ns.max() as f64 / 1e3,
            Metric::Errors if self.percent => percent(errors, s.due_window + report.conns_planned),
            Metric::Errors => errors as f64,
            Metric::Loss if self.percent => percent(report.loss().max(0) as u64, s.due_window),
            Metric::Loss => report.loss() as f64,
            Metric::ConnsFailed => (s.conns_failed + s.conns_lost) as f64,
            Metric::ReceivedPerS => report.delivered_per_s(),
        };
        let pass = match self.op {
            Op::Lt => value < self.limit,
            Op::Le => value <= self.limit,
            Op::Gt => value > self.limit,
            Op::Ge => value >= self.limit,
            Op::Eq => value == self.limit,
        };
        ThresholdResult {
            text: self.text.clone(),
            value,
            pass,
        }
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    part as f64 * 100.0 / whole as f64
}

/// The limit in the metric's base unit, and whether it is a percentage.
fn parse_limit(metric: Metric, value: &str) -> Option<(f64, bool)> {
    let number = |n: &str| n.trim().parse::<f64>().ok().filter(|v| v.is_finite());
    match metric {
        Metric::Latency(_) | Metric::LatencyMax => {
            let units = [
                ("ns", 1e-3),
                ("us", 1.0),
                ("µs", 1.0),
                ("ms", 1e3),
                ("s", 1e6),
            ];
            units
                .iter()
                .find_map(|&(unit, scale)| value.strip_suffix(unit).map(|n| (n, scale)))
                .and_then(|(n, scale)| number(n).map(|v| (v * scale, false)))
        }
        Metric::Errors | Metric::Loss => match value.strip_suffix('%') {
            Some(n) => number(n).map(|v| (v, true)),
            None => number(value).map(|v| (v, false)),
        },
        Metric::ConnsFailed | Metric::ReceivedPerS => number(value).map(|v| (v, false)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rules_with_units() {
        let t = Threshold::parse("p99 < 50ms").unwrap();
        assert_eq!(
            (t.metric, t.op, t.limit),
            (Metric::Latency(0.99), Op::Lt, 50_000.0)
        );
        let t = Threshold::parse("errors<=0.1%").unwrap();
        assert_eq!(
            (t.metric, t.op, t.limit, t.percent),
            (Metric::Errors, Op::Le, 0.1, true)
        );
        let t = Threshold::parse("loss == 0").unwrap();
        assert_eq!((t.op, t.limit, t.percent), (Op::Eq, 0.0, false));
        assert!(Threshold::parse("p99 < 50")
            .unwrap_err()
            .contains("bad value"));
        assert!(Threshold::parse("p42 < 5ms")
            .unwrap_err()
            .contains("unknown metric"));
        assert!(Threshold::parse("p99 50ms").is_err());
    }
}
