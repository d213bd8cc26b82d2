//! Prometheus text exposition format 0.0.4 rendering of an [`ExportView`].
//!
//! Owns: family/series ordering, escaping, number formatting for `GET /metrics`.
//! May not touch: the figures themselves (computed by the exporter).
//!
//! Invariants:
//! - Each family is written once, as `# HELP`, `# TYPE`, then all its samples, in a fixed order
//!   (declaration order; open label sets sorted by label value), so output is stable.
//! - Label values and HELP text are escaped as the format requires (`\\`, `\"`, `\n`).
//! - Latencies are exported in seconds (Prometheus base unit) as exact decimals of the
//!   nanosecond values (`12345 ns` -> `0.000012345`), never through floating point.
//! - Empty summaries export `NaN` quantiles (as the reference client libraries do) with
//!   `_sum 0` and `_count 0`.

use super::counters::{families, CloseCodeCounts, Counter, Family};
use super::exporter::{ExportView, Exporter};
use super::latency::{Latency, LatencySummary, QUANTILE_LABELS};
use super::snapshot::Gauge;
use std::fmt::{self, Write};

/// `Content-Type` of the output.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Exporter {
    /// Appends the text exposition of the merged metrics to `out`.
    pub fn render_prometheus(&self, out: &mut String) {
        write_prometheus(&self.view(), out);
    }
}

/// Appends the text exposition of `view` to `out`.
pub fn write_prometheus(view: &ExportView, out: &mut String) {
    // `fmt::Write` for `String` never fails; the Result only exists to use `write!`.
    let _infallible = write_all(view, out);
}

fn write_all(view: &ExportView, out: &mut String) -> fmt::Result {
    write_counters(view, out)?;
    write_close_codes(&families::CLOSE_CODES_SENT, &view.close_sent, out)?;
    write_close_codes(&families::CLOSE_CODES_RECEIVED, &view.close_received, out)?;
    write_labeled(&families::PROTOCOL_ERRORS, &view.protocol_errors, out)?;
    write_labeled(&families::COMMAND_ERRORS, &view.command_errors, out)?;
    let reloads = view.config_reloads;
    let reloads = [("ok", reloads.ok), ("error", reloads.error)];
    write_labeled(&families::CONFIG_RELOADS, &reloads, out)?;
    write_gauges(view, out)?;
    for kind in Latency::ALL {
        write_summary(kind.family(), &view.latency[kind.index()], out)?;
    }
    Ok(())
}

/// A sample value as printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SampleValue {
    Int(u64),
    SecondsFromNs(u64),
    NaN,
}

impl fmt::Display for SampleValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NS_PER_SECOND: u64 = 1_000_000_000;
        match *self {
            SampleValue::Int(n) => write!(f, "{n}"),
            SampleValue::SecondsFromNs(ns) => {
                write!(f, "{}.{:09}", ns / NS_PER_SECOND, ns % NS_PER_SECOND)
            }
            SampleValue::NaN => f.write_str("NaN"),
        }
    }
}

fn write_header(family: &Family, out: &mut String) -> fmt::Result {
    out.push_str("# HELP ");
    out.push_str(family.name);
    out.push(' ');
    escape_help(family.help, out);
    out.push('\n');
    writeln!(out, "# TYPE {} {}", family.name, family.kind.as_str())
}

/// Writes `name{key="value"} value` (or `name value` when unlabeled).
fn write_sample(
    name: &str,
    suffix: &str,
    label: Option<(&str, &str)>,
    value: SampleValue,
    out: &mut String,
) -> fmt::Result {
    out.push_str(name);
    out.push_str(suffix);
    if let Some((key, label_value)) = label {
        out.push('{');
        out.push_str(key);
        out.push_str("=\"");
        escape_label_value(label_value, out);
        out.push_str("\"}");
    }
    writeln!(out, " {value}")
}

fn write_counters(view: &ExportView, out: &mut String) -> fmt::Result {
    for series in Counter::ALL.chunk_by(|a, b| a.family() == b.family()) {
        let Some(family) = series.first().map(|c| c.family()) else {
            continue;
        };
        write_header(family, out)?;
        for &c in series {
            let label = family.label_key.zip(c.label_value());
            write_sample(
                family.name,
                "",
                label,
                SampleValue::Int(view.counter(c)),
                out,
            )?;
        }
    }
    Ok(())
}

fn write_close_codes(family: &Family, counts: &CloseCodeCounts, out: &mut String) -> fmt::Result {
    write_header(family, out)?;
    for (code, count) in counts.iter() {
        let label = family.label_key.map(|key| (key, code));
        write_sample(family.name, "", label, SampleValue::Int(count), out)?;
    }
    Ok(())
}

fn write_labeled(family: &Family, entries: &[(&str, u64)], out: &mut String) -> fmt::Result {
    write_header(family, out)?;
    for &(label_value, count) in entries {
        let label = family.label_key.map(|key| (key, label_value));
        write_sample(family.name, "", label, SampleValue::Int(count), out)?;
    }
    Ok(())
}

fn write_gauges(view: &ExportView, out: &mut String) -> fmt::Result {
    for gauge in Gauge::ALL {
        let family = gauge.total_family();
        write_header(family, out)?;
        let total = view.gauges_total.get(gauge);
        write_sample(family.name, "", None, SampleValue::Int(total), out)?;
    }
    for gauge in Gauge::ALL {
        write_per_loop_gauge(view, gauge, out)?;
    }
    Ok(())
}

fn write_per_loop_gauge(view: &ExportView, gauge: Gauge, out: &mut String) -> fmt::Result {
    let family = gauge.per_loop_family();
    write_header(family, out)?;
    for lp in &view.loops {
        let loop_id = lp.loop_id.to_string();
        let label = family.label_key.map(|key| (key, loop_id.as_str()));
        write_sample(
            family.name,
            "",
            label,
            SampleValue::Int(lp.gauges.get(gauge)),
            out,
        )?;
    }
    Ok(())
}

fn write_summary(family: &Family, summary: &LatencySummary, out: &mut String) -> fmt::Result {
    write_header(family, out)?;
    for (i, quantile) in QUANTILE_LABELS.iter().enumerate() {
        let value = match summary.quantiles_ns.as_ref().and_then(|q| q.get(i)) {
            Some(&ns) => SampleValue::SecondsFromNs(ns),
            None => SampleValue::NaN,
        };
        let label = family.label_key.map(|key| (key, *quantile));
        write_sample(family.name, "", label, value, out)?;
    }
    let sum = SampleValue::SecondsFromNs(summary.sum_ns);
    write_sample(family.name, "_sum", None, sum, out)?;
    write_sample(
        family.name,
        "_count",
        None,
        SampleValue::Int(summary.count),
        out,
    )
}

/// Label values escape backslash, double quote and line feed (format 0.0.4).
fn escape_label_value(value: &str, out: &mut String) {
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            other => out.push(other),
        }
    }
}

/// HELP text escapes backslash and line feed only (format 0.0.4).
fn escape_help(help: &str, out: &mut String) {
    for ch in help.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            other => out.push(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::text_format_check::{parse_strict, Exposition};
    use crate::metrics::{Gauges, LoopMetrics};

    fn render(exporter: &Exporter) -> Exposition {
        let mut text = String::new();
        exporter.render_prometheus(&mut text);
        match parse_strict(&text) {
            Ok(parsed) => parsed,
            Err(e) => panic!("invalid exposition: {e}\n{text}"),
        }
    }

    fn sample_exporter() -> Exporter {
        let mut a = LoopMetrics::new(0);
        let mut b = LoopMetrics::new(1);
        a.inc(Counter::ConnectionsAccepted);
        b.add(Counter::ConnectionsAccepted, 2);
        a.inc(Counter::ClosedPeerReset);
        a.add(Counter::SentBytes, 4096);
        a.inc(Counter::FramesSentText);
        b.inc(Counter::FramesReceivedText);
        a.close_sent(1009);
        b.close_received(3001);
        a.protocol_error("unmasked_client_frame");
        b.command_error("bad_channel");
        a.set_gauges(Gauges {
            connections_open: 5,
            outbox_bytes: 10,
            ..Gauges::default()
        });
        b.set_gauges(Gauges {
            connections_open: 7,
            ..Gauges::default()
        });
        a.record_relay_latency_ns(12_345);
        b.record_relay_latency_ns(1_500);
        let mut exporter = Exporter::new(2);
        exporter.absorb(a.snapshot());
        exporter.absorb(b.snapshot());
        exporter
    }

    #[test]
    fn whole_output_is_strictly_valid() {
        let parsed = render(&sample_exporter());
        let counters = parsed.families_of_kind("counter");
        assert_eq!(counters.len(), 30);
        assert!(counters.iter().all(|name| name.ends_with("_total")));
        assert_eq!(parsed.families_of_kind("gauge").len(), 10);
        assert_eq!(parsed.families_of_kind("summary").len(), 3);
    }

    #[test]
    fn counter_values_are_exact() {
        let p = render(&sample_exporter());
        assert_eq!(
            p.value("wsrelay_connections_accepted_total", None),
            Some(3.0)
        );
        let peer_reset = Some(("reason", "peer_reset"));
        assert_eq!(
            p.value("wsrelay_connections_closed_total", peer_reset),
            Some(1.0)
        );
        let shutdown = Some(("reason", "shutdown"));
        assert_eq!(
            p.value("wsrelay_connections_closed_total", shutdown),
            Some(0.0)
        );
        assert_eq!(p.value("wsrelay_sent_bytes_total", None), Some(4096.0));
        let text = Some(("opcode", "text"));
        assert_eq!(p.value("wsrelay_frames_sent_total", text), Some(1.0));
        assert_eq!(p.value("wsrelay_frames_received_total", text), Some(1.0));
    }

    #[test]
    fn bounded_and_open_label_maps_are_exported() {
        let p = render(&sample_exporter());
        let sent = "wsrelay_close_codes_sent_total";
        assert_eq!(p.value(sent, Some(("code", "1009"))), Some(1.0));
        assert_eq!(p.value(sent, Some(("code", "other"))), Some(0.0));
        let received = "wsrelay_close_codes_received_total";
        assert_eq!(p.value(received, Some(("code", "other"))), Some(1.0));
        let kind = Some(("kind", "unmasked_client_frame"));
        assert_eq!(p.value("wsrelay_protocol_errors_total", kind), Some(1.0));
        let kind = Some(("kind", "bad_channel"));
        assert_eq!(p.value("wsrelay_command_errors_total", kind), Some(1.0));
    }

    #[test]
    fn gauges_are_summed_and_per_loop() {
        let p = render(&sample_exporter());
        assert_eq!(p.value("wsrelay_connections_open", None), Some(12.0));
        let loop1 = Some(("loop", "1"));
        assert_eq!(p.value("wsrelay_loop_connections_open", loop1), Some(7.0));
        let loop0 = Some(("loop", "0"));
        assert_eq!(p.value("wsrelay_loop_outbox_bytes", loop0), Some(10.0));
    }

    #[test]
    fn summaries_are_in_exact_seconds() {
        let mut text = String::new();
        sample_exporter().render_prometheus(&mut text);
        // 12_345 ns lies in an HdrHistogram bucket of width 8 (3 significant digits):
        // [12_344, 12_351], reported by its upper bound.
        let expected = "\
wsrelay_relay_latency_seconds{quantile=\"0.5\"} 0.000001500
wsrelay_relay_latency_seconds{quantile=\"0.9\"} 0.000012351
wsrelay_relay_latency_seconds{quantile=\"0.99\"} 0.000012351
wsrelay_relay_latency_seconds{quantile=\"0.999\"} 0.000012351
wsrelay_relay_latency_seconds{quantile=\"1\"} 0.000012351
wsrelay_relay_latency_seconds_sum 0.000013845
wsrelay_relay_latency_seconds_count 2
";
        assert!(text.contains(expected), "{text}");
    }

    #[test]
    fn empty_summary_has_nan_quantiles_and_zero_count() {
        let p = render(&sample_exporter());
        let name = "wsrelay_heartbeat_rtt_seconds";
        let max = p.value(name, Some(("quantile", "1")));
        assert!(max.is_some_and(f64::is_nan));
        assert_eq!(
            p.value("wsrelay_heartbeat_rtt_seconds_count", None),
            Some(0.0)
        );
        assert_eq!(
            p.value("wsrelay_heartbeat_rtt_seconds_sum", None),
            Some(0.0)
        );
    }

    #[test]
    fn output_starts_with_header_and_is_deterministic() {
        let exporter = sample_exporter();
        let (mut first, mut second) = (String::new(), String::new());
        exporter.render_prometheus(&mut first);
        exporter.render_prometheus(&mut second);
        assert_eq!(first, second);
        let head = "\
# HELP wsrelay_connections_accepted_total TCP connections accepted.
# TYPE wsrelay_connections_accepted_total counter
wsrelay_connections_accepted_total 3
# HELP wsrelay_connections_closed_total Connections closed, by reason.
# TYPE wsrelay_connections_closed_total counter
wsrelay_connections_closed_total{reason=\"client_close\"} 0
";
        assert!(first.starts_with(head), "{first}");
    }

    #[test]
    fn escaping_follows_the_format() {
        let mut out = String::new();
        escape_label_value("a\\b\"c\nd", &mut out);
        assert_eq!(out, "a\\\\b\\\"c\\nd");
        out.clear();
        escape_help("x\\y\"z\n", &mut out);
        assert_eq!(out, "x\\\\y\"z\\n");
    }

    #[test]
    fn odd_label_values_still_parse() {
        let mut view = sample_exporter().view();
        view.protocol_errors = vec![("quote\"back\\slash\nline", 4)];
        let mut text = String::new();
        write_prometheus(&view, &mut text);
        let p = parse_strict(&text);
        let kind = Some(("kind", "quote\"back\\slash\nline"));
        let value = p
            .ok()
            .and_then(|p| p.value("wsrelay_protocol_errors_total", kind));
        assert_eq!(value, Some(4.0));
    }

    #[test]
    fn seconds_are_exact_decimals() {
        let cases = [
            (0, "0.000000000"),
            (12_345, "0.000012345"),
            (60_000_000_001, "60.000000001"),
        ];
        for (ns, text) in cases {
            assert_eq!(SampleValue::SecondsFromNs(ns).to_string(), text);
        }
    }
}
