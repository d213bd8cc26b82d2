//! The HTML report (`--report run.html`): one self-contained file, no scripts or assets from
//! anywhere, with the summary and inline SVG charts: latency percentiles per second, the HDR
//! percentile distribution (log scale), throughput and errors per second, connections open,
//! swarm and server CPU. The report's JSON is embedded too (`<script type="application/json"
//! id="report-json">`), so the figures can be re-read by machines.
//!
//! Owns: presentation as HTML. May not touch: anything live.

use std::fmt::Write as _;

use serde_json::Value;

use crate::report::Report;
use crate::series::{percentile_points, SeriesReport};

/// Chart size in SVG units.
const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 240.0;
/// Plot margins: left (axis labels), right, top, bottom.
const MARGIN: (f64, f64, f64, f64) = (64.0, 32.0, 16.0, 36.0);
/// Line colours, in series order.
const COLOURS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// How values map to the plot's height.
#[derive(Debug, Clone, Copy)]
enum Scale {
    /// 0 to max.
    Linear(f64),
    /// 10^low to 10^high.
    Log(i32, i32),
}

impl Scale {
    /// A linear scale for values up to `max`, or a log scale over the decades they span.
    fn fit(values: impl Iterator<Item = f64> + Clone, log: bool) -> Scale {
        let max = values.clone().fold(0.0, f64::max);
        if !log {
            return Scale::Linear(nice_max(max));
        }
        let min = values.filter(|v| *v > 0.0).fold(f64::INFINITY, f64::min);
        if !min.is_finite() || max <= 0.0 {
            return Scale::Log(0, 1);
        }
        let low = min.log10().floor() as i32;
        let high = (max.log10().ceil() as i32).max(low + 1);
        Scale::Log(low, high)
    }

    /// `value` as a fraction of the plot's height.
    fn at(self, value: f64) -> f64 {
        match self {
            Scale::Linear(max) => value / max,
            Scale::Log(low, high) => {
                (value.max(1e-9).log10() - f64::from(low)) / f64::from(high - low)
            }
        }
    }

    fn ticks(self) -> Vec<(f64, String)> {
        match self {
            Scale::Linear(max) => ticks(max)
                .into_iter()
                .map(|t| (t / max, short(t)))
                .collect(),
            Scale::Log(low, high) => (low..=high)
                .map(|e| (self.at(10f64.powi(e)), short(10f64.powi(e))))
                .collect(),
        }
    }
}

/// One line of a chart: a name and a value per x (None: a gap).
struct Line<'a> {
    name: &'a str,
    values: Vec<Option<f64>>,
}

/// Renders the whole report as one HTML document.
pub fn render(report: &Report) -> String {
    let json = report.to_json();
    let mut html = String::with_capacity(64 << 10);
    html.push_str(HEAD);
    let _ = write!(
        html,
        "<h1>wsrelay-swarm {}</h1><p class=\"target\">{}</p>",
        escape(&report.scenario),
        escape(&report.target)
    );
    summary(&mut html, &json);
    thresholds(&mut html, report);
    let empty = SeriesReport::default();
    let series = report.series.as_ref().unwrap_or(&empty);
    charts(&mut html, report, series);
    let _ = write!(
        html,
        "<h2>Text summary</h2><pre>{}</pre>\
         <script type=\"application/json\" id=\"report-json\">{}</script></body></html>",
        escape(&report.to_text()),
        json.to_string().replace("</", "<\\/")
    );
    html.push('\n');
    html
}

fn summary(html: &mut String, json: &Value) {
    let rows: [(&str, &str, String); 12] = [
        (
            "connections_ready",
            "connections ready",
            num(&json["connections"]["ready"]),
        ),
        (
            "connections_failed",
            "connections failed",
            num(&json["connections"]["failed"]),
        ),
        ("sent", "sent (window)", num(&json["sent"])),
        (
            "expected",
            "expected (replies or deliveries)",
            num(&json["expected"]),
        ),
        ("received", "received", num(&json["received"])),
        ("loss", "loss", num(&json["loss"])),
        (
            "latency_p50_us",
            "latency p50 µs",
            num(&json["latency_us"]["p50"]),
        ),
        (
            "latency_p99_us",
            "latency p99 µs",
            num(&json["latency_us"]["p99"]),
        ),
        (
            "latency_p999_us",
            "latency p99.9 µs",
            num(&json["latency_us"]["p999"]),
        ),
        (
            "latency_max_us",
            "latency max µs",
            num(&json["latency_us"]["max"]),
        ),
        ("sent_per_s", "sent per second", num(&json["sent_per_s"])),
        (
            "errors",
            "errors",
            errors_total(&json["errors"]).to_string(),
        ),
    ];
    html.push_str("<h2>Summary</h2><table class=\"summary\">");
    for (key, label, value) in rows {
        let _ = write!(
            html,
            "<tr><th>{label}</th><td data-key=\"{key}\">{value}</td></tr>"
        );
    }
    html.push_str(
        "</table><p class=\"note\">Latency counts from each message's SCHEDULED send \
        time (open model), so a server stall shows as latency instead of thinning the load.</p>",
    );
}

fn thresholds(html: &mut String, report: &Report) {
    if report.thresholds.is_empty() {
        return;
    }
    html.push_str("<h2>Thresholds</h2><ul class=\"thresholds\">");
    for t in &report.thresholds {
        let _ = write!(
            html,
            "<li class=\"{}\">{} {} (measured {:.3})</li>",
            if t.pass { "pass" } else { "fail" },
            if t.pass { "PASS" } else { "FAIL" },
            escape(&t.text),
            t.value
        );
    }
    html.push_str("</ul>");
}

fn charts(html: &mut String, report: &Report, series: &SeriesReport) {
    html.push_str("<div class=\"charts\">");
    latency_chart(html, series);
    distribution_chart(html, report);
    throughput_chart(html, series);
    load_charts(html, series);
    html.push_str("</div>");
}

/// One value per second of the run (`None` where there is none).
fn per_second(series: &SeriesReport, f: impl Fn(usize) -> Option<f64>) -> Vec<Option<f64>> {
    (0..series.len()).map(f).collect()
}

/// Latency percentiles per second, or a title saying the scenario does not record them.
fn latency_chart(html: &mut String, series: &SeriesReport) {
    let latency = [
        Line {
            name: "p50",
            values: per_second(series, |i| series.latency_us(i, 0.5)),
        },
        Line {
            name: "p99",
            values: per_second(series, |i| series.latency_us(i, 0.99)),
        },
        Line {
            name: "p99.9",
            values: per_second(series, |i| series.latency_us(i, 0.999)),
        },
    ];
    let recorded = latency.iter().any(|l| l.values.iter().any(Option::is_some));
    let title = if recorded || series.is_empty() {
        "Latency per second (µs, log scale)"
    } else {
        "Latency per second: not recorded by this scenario (echo and script record it)"
    };
    time_chart(html, "latency", title, &latency, true);
}

/// Messages sent and received, and errors, per second.
fn throughput_chart(html: &mut String, series: &SeriesReport) {
    let second = |i: usize| series.series.seconds.get(i);
    let throughput = [
        Line {
            name: "sent/s",
            values: per_second(series, |i| second(i).map(|s| s.sent_total as f64)),
        },
        Line {
            name: "received/s",
            values: per_second(series, |i| second(i).map(|s| s.received_total as f64)),
        },
        Line {
            name: "errors/s",
            values: per_second(series, |i| second(i).map(|s| s.errors_total as f64)),
        },
    ];
    time_chart(
        html,
        "throughput",
        "Throughput and errors per second (the last second is partial)",
        &throughput,
        false,
    );
}

/// Connections open, and the CPU of the swarm and of the server, per second.
fn load_charts(html: &mut String, series: &SeriesReport) {
    let sample = |i: usize| series.samples.get(i);
    let conns = [Line {
        name: "connections open",
        values: per_second(series, |i| sample(i).map(|s| s.conns_open as f64)),
    }];
    time_chart(html, "connections", "Connections open", &conns, false);
    let cpu = [
        Line {
            name: "swarm CPU %",
            values: per_second(series, |i| sample(i).map(|s| s.swarm_cpu_pct)),
        },
        Line {
            name: "server CPU %",
            values: per_second(series, |i| sample(i).and_then(|s| s.server_cpu_pct)),
        },
    ];
    time_chart(html, "cpu", "CPU (% of one core)", &cpu, false);
}

/// A chart of values per second of the run.
fn time_chart(html: &mut String, id: &str, title: &str, lines: &[Line<'_>], log: bool) {
    let n = lines.iter().map(|l| l.values.len()).max().unwrap_or(0);
    let scale = Scale::fit(
        lines
            .iter()
            .flat_map(|l| l.values.iter().flatten().copied()),
        log,
    );
    let x_max = (n.saturating_sub(1)).max(1) as f64;
    let x_ticks: Vec<(f64, String)> = ticks(x_max)
        .into_iter()
        .map(|t| (t / x_max, format!("{} s", short(t))))
        .collect();
    open_chart(html, id, title, &x_ticks, &scale.ticks());
    for (k, line) in lines.iter().enumerate() {
        let points: Vec<(f64, f64)> = line
            .values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| (i as f64 / x_max, scale.at(v))))
            .collect();
        polyline(html, line.name, COLOURS[k % COLOURS.len()], &points);
    }
    close_chart(html, lines.iter().map(|l| l.name));
}

/// The HDR percentile plot: x = 1/(1−q) on a log scale, y = latency.
fn distribution_chart(html: &mut String, report: &Report) {
    let points = percentile_points(&report.stats.latency_ns);
    let x_of = |pct: f64| {
        let tail = (1.0 - pct / 100.0).max(1e-5);
        (-tail.log10() / 5.0).min(1.0)
    };
    let scale = Scale::fit(points.iter().map(|p| p.1), true);
    let x_ticks: Vec<(f64, String)> = ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
        .iter()
        .enumerate()
        .map(|(k, label)| (k as f64 / 5.0, label.to_string()))
        .collect();
    let y_ticks = scale.ticks();
    open_chart(
        html,
        "distribution",
        "Latency distribution (µs by percentile; log scales)",
        &x_ticks,
        &y_ticks,
    );
    let scaled: Vec<(f64, f64)> = points
        .iter()
        .map(|&(pct, us)| (x_of(pct), scale.at(us)))
        .collect();
    polyline(html, "latency", COLOURS[0], &scaled);
    close_chart(html, ["latency"].into_iter());
}

fn open_chart(
    html: &mut String,
    id: &str,
    title: &str,
    x_ticks: &[(f64, String)],
    y_ticks: &[(f64, String)],
) {
    let (left, right, top, bottom) = MARGIN;
    let (plot_w, plot_h) = (WIDTH - left - right, HEIGHT - top - bottom);
    let _ = write!(
        html,
        "<figure class=\"chart\" id=\"chart-{id}\"><figcaption>{}</figcaption>\
         <svg class=\"chart\" data-chart=\"{id}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         width=\"{WIDTH}\" height=\"{HEIGHT}\" xmlns=\"http://www.w3.org/2000/svg\">\
         <rect x=\"{left}\" y=\"{top}\" width=\"{plot_w}\" height=\"{plot_h}\" class=\"plot\"/>",
        escape(title)
    );
    for (at, label) in x_ticks {
        let x = left + at * plot_w;
        let _ = write!(
            html,
            "<line x1=\"{x:.1}\" y1=\"{top}\" x2=\"{x:.1}\" y2=\"{:.1}\" class=\"grid\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" class=\"xtick\">{}</text>",
            top + plot_h,
            top + plot_h + 16.0,
            escape(label)
        );
    }
    for (at, label) in y_ticks {
        let y = top + plot_h - at * plot_h;
        let _ = write!(
            html,
            "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" class=\"grid\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" class=\"ytick\">{}</text>",
            left + plot_w,
            left - 6.0,
            y + 4.0,
            escape(label)
        );
    }
}

/// Draws `points` (x, y in 0..=1 of the plot area).
fn polyline(html: &mut String, name: &str, colour: &str, points: &[(f64, f64)]) {
    let (left, right, top, bottom) = MARGIN;
    let (plot_w, plot_h) = (WIDTH - left - right, HEIGHT - top - bottom);
    let mut coords = String::new();
    for &(x, y) in points {
        let _ = write!(
            coords,
            "{:.1},{:.1} ",
            left + x.clamp(0.0, 1.0) * plot_w,
            top + plot_h - y.clamp(0.0, 1.0) * plot_h
        );
    }
    let _ = write!(
        html,
        "<polyline class=\"series\" data-series=\"{}\" data-points=\"{}\" points=\"{}\" \
         stroke=\"{colour}\"/>",
        escape(name),
        points.len(),
        coords.trim_end()
    );
}

fn close_chart<'a>(html: &mut String, names: impl Iterator<Item = &'a str>) {
    html.push_str("</svg><div class=\"legend\">");
    for (k, name) in names.enumerate() {
        let _ = write!(
            html,
            "<span><i style=\"background:{}\"></i>{}</span>",
            COLOURS[k % COLOURS.len()],
            escape(name)
        );
    }
    html.push_str("</div></figure>");
}

/// A round upper bound ≥ `value` (1, 2 or 5 × 10^k).
fn nice_max(value: f64) -> f64 {
    if value <= 0.0 || !value.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&v| v >= value)
        .unwrap_or(10.0 * magnitude)
}

/// Five evenly spaced ticks from 0 to `max`.
fn ticks(max: f64) -> Vec<f64> {
    (0..=4).map(|k| max * f64::from(k) / 4.0).collect()
}

/// `12k`, `3.5M`, `250`.
fn short(value: f64) -> String {
    let trimmed = |text: String| {
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            text
        }
    };
    match value {
        v if v >= 1e6 => format!("{}M", trimmed(format!("{:.3}", v / 1e6))),
        v if v >= 1e4 => format!("{:.0}k", v / 1e3),
        v if v >= 100.0 => format!("{v:.0}"),
        v if v >= 10.0 => trimmed(format!("{v:.1}")),
        v => trimmed(format!("{v:.2}")),
    }
}

fn num(value: &Value) -> String {
    match value {
        Value::Number(n) if n.is_f64() => format!("{:.1}", n.as_f64().unwrap_or(0.0)),
        Value::Number(n) => n.to_string(),
        Value::Null => "–".to_string(),
        other => other.to_string(),
    }
}

fn errors_total(errors: &Value) -> u64 {
    errors
        .as_object()
        .map_or(0, |e| e.values().filter_map(Value::as_u64).sum())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const HEAD: &str = "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>wsrelay-swarm report</title><style>\
body{font-family:system-ui,sans-serif;margin:24px;color:#222;background:#fff}\
h1{font-size:20px;margin:0}h2{font-size:16px;margin:20px 0 8px}\
.target{color:#555;margin:4px 0 12px}\
table.summary{border-collapse:collapse}table.summary th{text-align:left;font-weight:normal;\
color:#555;padding:2px 16px 2px 0}table.summary td{font-variant-numeric:tabular-nums;text-align:right}\
.charts{display:flex;flex-wrap:wrap;gap:16px}figure.chart{margin:0;border:1px solid #ddd;padding:8px}\
figcaption{font-size:14px;margin-bottom:4px}svg .plot{fill:#fafafa;stroke:#999}\
svg .grid{stroke:#e4e4e4}svg .xtick{font-size:11px;text-anchor:middle;fill:#555}\
svg .ytick{font-size:11px;text-anchor:end;fill:#555}\
svg .series{fill:none;stroke-width:1.8}.legend span{margin-right:14px;font-size:12px}\
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}\
.pass{color:#1a7f37}.fail{color:#cf222e;font-weight:bold}.note{color:#555;font-size:12px}\
pre{background:#f6f8fa;padding:8px;font-size:12px;overflow-x:auto}\
</style></head><body>";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_are_round() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(3.2), 5.0);
        assert_eq!(nice_max(1200.0), 2000.0);
        assert_eq!(short(25_000.0), "25k");
        assert_eq!(short(2_500_000.0), "2.5M");
        assert_eq!(short(0.5), "0.5");
        assert_eq!(escape("<a&\"b\">"), "&lt;a&amp;&quot;b&quot;&gt;");
    }
}
