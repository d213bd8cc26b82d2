//! `GET /stats` JSON rendering of an [`ExportView`]: the same figures as `/metrics`, keyed by
//! the same family names, for humans and scripts without a Prometheus parser.
//!
//! Owns: the JSON layout and JSON string escaping.
//! May not touch: the figures themselves (computed by the exporter).
//!
//! Layout (all integers are exact; latencies stay in nanoseconds):
//! ```text
//! {"counters":{"wsrelay_connections_accepted_total":3,
//!              "wsrelay_connections_closed_total":{"client_close":0,...},...},
//!  "gauges":{"wsrelay_connections_open":12,...},
//!  "loops":[{"loop":0,"snapshots":4,"gauges":{...}},...],
//!  "latency":{"relay":{"count":2,"sum_ns":13845,"p50_ns":1500,"p90_ns":12351,
//!                      "p99_ns":12351,"p999_ns":12351,"max_ns":12351,"mean_ns":6922.5},...,
//!             "relay_window":{"count":2,...,"mean_ns":6922.5,"window_s":300}},
//!  "exporter":{"snapshots_absorbed":8,"snapshots_rejected":0},
//!  "channels":{"top":[{"channel":"md.BTC","messages":40,"seq":1234,"window_ms":1000},...]},
//!  "relay":{"version":"0.1.0","revision":"a954611","uptime_ms":5021},
//!  "cluster":{...}}
//! ```
//! `relay` is present when the caller passes [`RelayInfo`] (the `/stats` handler does);
//! `cluster` only in cluster mode (`--nats`), added by the handler with [`append_member`] and
//! written by `ClusterStats::write_stats_json` (docs/CLUSTER.md, "Metrics").
//! `latency.relay_window` is the relay latency of the last `window_s` seconds (the exporter's
//! ring, 2 significant digits); the others are cumulative since start.
//! Labeled families are objects keyed by label value. Quantiles and the mean are `null` when a
//! latency has no samples (JSON has no NaN).

use super::counters::{families, CloseCodeCounts, Counter, Family};
use super::exporter::{ExportView, Exporter};
use super::latency::{Latency, LatencySummary};
use super::snapshot::{Gauge, Gauges};
use std::fmt::{self, Write};

/// `Content-Type` of the output.
pub const STATS_JSON_CONTENT_TYPE: &str = "application/json";

/// JSON keys of the exported quantiles, index-aligned with `QUANTILES`.
const QUANTILE_KEYS: [&str; 5] = ["p50_ns", "p90_ns", "p99_ns", "p999_ns", "max_ns"];

/// Facts about the process that are not metrics, for the `relay` member.
#[derive(Debug, Clone, Copy)]
pub struct RelayInfo<'a> {
    /// The relay's version (`CARGO_PKG_VERSION`).
    pub version: &'a str,
    /// The git revision it was built from (`crate::GIT_REVISION`).
    pub revision: &'a str,
    /// Time since the process started serving, in milliseconds.
    pub uptime_ms: u64,
}

impl Exporter {
    /// Appends the stats JSON document of the merged metrics to `out`.
    pub fn render_stats_json(&self, out: &mut String) {
        write_stats_json(&self.view(), None, out);
    }

    /// Like [`Self::render_stats_json`], with the `relay` member (version, revision, uptime).
    pub fn render_stats_json_with(&self, relay: &RelayInfo<'_>, out: &mut String) {
        write_stats_json(&self.view(), Some(relay), out);
    }
}

/// Appends the stats JSON document of `view` (and `relay`, if given) to `out`.
pub fn write_stats_json(view: &ExportView, relay: Option<&RelayInfo<'_>>, out: &mut String) {
    // `fmt::Write` for `String` never fails; the Result only exists to use `write!`.
    let _infallible = write_document(view, relay, out);
}

/// Emits `{`, comma-separated `"key":value` members, and `}`.
struct JsonObject<'a> {
    out: &'a mut String,
    empty: bool,
}

impl<'a> JsonObject<'a> {
    fn open(out: &'a mut String) -> Self {
        out.push('{');
        JsonObject { out, empty: true }
    }

    /// Writes the separator and `"key":`, returning the buffer for the value.
    fn key(&mut self, key: &str) -> &mut String {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        write_json_string(key, self.out);
        self.out.push(':');
        self.out
    }

    fn uint(&mut self, key: &str, value: u64) -> fmt::Result {
        write!(self.key(key), "{value}")
    }

    fn close(self) {
        self.out.push('}');
    }
}

fn write_document(
    view: &ExportView,
    relay: Option<&RelayInfo<'_>>,
    out: &mut String,
) -> fmt::Result {
    let mut doc = JsonObject::open(out);
    write_counters(view, doc.key("counters"))?;
    write_gauges(&view.gauges_total, doc.key("gauges"))?;
    write_loops(view, doc.key("loops"))?;
    write_latencies(view, doc.key("latency"))?;
    let mut exporter = JsonObject::open(doc.key("exporter"));
    exporter.uint("snapshots_absorbed", view.snapshots_absorbed)?;
    exporter.uint("snapshots_rejected", view.snapshots_rejected)?;
    exporter.close();
    write_top_channels(view, doc.key("channels"))?;
    if let Some(info) = relay {
        let mut object = JsonObject::open(doc.key("relay"));
        write_json_string(info.version, object.key("version"));
        write_json_string(info.revision, object.key("revision"));
        object.uint("uptime_ms", info.uptime_ms)?;
        object.close();
    }
    doc.close();
    Ok(())
}

/// `{"top":[...]}`: the busiest channels of the latest metrics interval, busiest first.
fn write_top_channels(view: &ExportView, out: &mut String) -> fmt::Result {
    let mut object = JsonObject::open(out);
    let list = object.key("top");
    list.push('[');
    for (i, entry) in view.top_channels.entries().iter().enumerate() {
        if i > 0 {
            list.push(',');
        }
        let mut item = JsonObject::open(list);
        write_json_string(&entry.channel, item.key("channel"));
        item.uint("messages", entry.messages)?;
        item.uint("seq", entry.seq)?;
        item.uint("window_ms", entry.window_ms)?;
        item.close();
    }
    list.push(']');
    object.close();
    Ok(())
}

fn write_counters(view: &ExportView, out: &mut String) -> fmt::Result {
    let mut counters = JsonObject::open(out);
    for series in Counter::ALL.chunk_by(|a, b| a.family() == b.family()) {
        let Some(&first) = series.first() else {
            continue;
        };
        let family = first.family();
        if family.label_key.is_none() {
            counters.uint(family.name, view.counter(first))?;
            continue;
        }
        let labeled = series
            .iter()
            .filter_map(|&c| Some((c.label_value()?, view.counter(c))));
        write_labeled(labeled, counters.key(family.name))?;
    }
    write_close_codes(&families::CLOSE_CODES_SENT, &view.close_sent, &mut counters)?;
    write_close_codes(
        &families::CLOSE_CODES_RECEIVED,
        &view.close_received,
        &mut counters,
    )?;
    let protocol = view.protocol_errors.iter().copied();
    write_labeled(protocol, counters.key(families::PROTOCOL_ERRORS.name))?;
    let command = view.command_errors.iter().copied();
    write_labeled(command, counters.key(families::COMMAND_ERRORS.name))?;
    let reloads = view.config_reloads;
    let reloads = [("ok", reloads.ok), ("error", reloads.error)];
    write_labeled(
        reloads.into_iter(),
        counters.key(families::CONFIG_RELOADS.name),
    )?;
    counters.close();
    Ok(())
}

fn write_close_codes(
    family: &Family,
    counts: &CloseCodeCounts,
    counters: &mut JsonObject<'_>,
) -> fmt::Result {
    write_labeled(counts.iter(), counters.key(family.name))
}

fn write_labeled<'l>(
    entries: impl Iterator<Item = (&'l str, u64)>,
    out: &mut String,
) -> fmt::Result {
    let mut object = JsonObject::open(out);
    for (label, count) in entries {
        object.uint(label, count)?;
    }
    object.close();
    Ok(())
}

fn write_gauges(gauges: &Gauges, out: &mut String) -> fmt::Result {
    let mut object = JsonObject::open(out);
    for gauge in Gauge::ALL {
        object.uint(gauge.total_family().name, gauges.get(gauge))?;
    }
    object.close();
    Ok(())
}

fn write_loops(view: &ExportView, out: &mut String) -> fmt::Result {
    out.push('[');
    for (i, lp) in view.loops.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let mut object = JsonObject::open(out);
        object.uint("loop", lp.loop_id as u64)?;
        object.uint("snapshots", lp.snapshots_absorbed)?;
        write_gauges(&lp.gauges, object.key("gauges"))?;
        object.close();
    }
    out.push(']');
    Ok(())
}

fn write_latencies(view: &ExportView, out: &mut String) -> fmt::Result {
    let mut object = JsonObject::open(out);
    for kind in Latency::ALL {
        write_latency(&view.latency[kind.index()], object.key(kind.json_key()))?;
    }
    let window = object.key("relay_window");
    write_latency(&view.relay_window, window)?;
    // `{...}` → `{...,"window_s":300}`.
    window.pop();
    write!(window, ",\"window_s\":{}}}", view.window_s)?;
    object.close();
    Ok(())
}

fn write_latency(summary: &LatencySummary, out: &mut String) -> fmt::Result {
    let mut object = JsonObject::open(out);
    object.uint("count", summary.count)?;
    object.uint("sum_ns", summary.sum_ns)?;
    for (i, key) in QUANTILE_KEYS.iter().enumerate() {
        match summary.quantiles_ns.as_ref().and_then(|q| q.get(i)) {
            Some(&ns) => object.uint(key, ns)?,
            None => object.key(key).push_str("null"),
        }
    }
    match summary.mean_ns() {
        Some(mean) => write!(object.key("mean_ns"), "{mean:.1}")?,
        None => object.key("mean_ns").push_str("null"),
    }
    object.close();
    Ok(())
}

/// Adds the member `"key":value` to the complete JSON object in `doc` (its closing `}` is
/// replaced), `value` written by `write`: how other modules add to `/stats` (cluster mode's
/// `cluster` member) without this module knowing their figures.
pub fn append_member(doc: &mut String, key: &str, write: impl FnOnce(&mut String)) {
    if doc.ends_with('}') {
        doc.pop();
        if !doc.ends_with('{') {
            doc.push(',');
        }
        write_json_string(key, doc);
        doc.push(':');
        write(doc);
        doc.push('}');
    }
}

/// Writes `text` as a JSON string (RFC 8259 §7: quote, backslash and controls escaped).
pub fn write_json_string(text: &str, out: &mut String) {
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _infallible = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::text_format_check::parse_strict;
    use crate::metrics::{Gauges, LoopMetrics};
    use serde_json::Value;

    fn sample_exporter() -> Exporter {
        let mut a = LoopMetrics::new(0);
        let mut b = LoopMetrics::new(1);
        a.inc(Counter::ConnectionsAccepted);
        b.add(Counter::ConnectionsAccepted, 2);
        b.add(Counter::ReceivedBytes, 777);
        a.inc(Counter::ClosedSlowConsumer);
        a.inc(Counter::PublishedJson);
        a.close_sent(4008);
        b.close_received(1000);
        b.protocol_error("control_frame_too_long");
        a.command_error("unknown_type");
        a.set_gauges(Gauges {
            subscriptions: 3,
            ..Gauges::default()
        });
        b.set_gauges(Gauges {
            subscriptions: 4,
            mesh_inbox_depth: 1,
            ..Gauges::default()
        });
        for ns in [1_000, 2_000, 3_000, 1_000_000] {
            a.record_relay_latency_ns(ns);
        }
        b.record_cross_loop_latency_ns(2_500);
        let mut exporter = Exporter::new(2);
        exporter.absorb(a.snapshot());
        exporter.absorb(b.snapshot());
        exporter
    }

    fn stats(exporter: &Exporter) -> Value {
        let mut text = String::new();
        exporter.render_stats_json(&mut text);
        match serde_json::from_str(&text) {
            Ok(value) => value,
            Err(e) => panic!("invalid JSON: {e}\n{text}"),
        }
    }

    #[test]
    fn top_channels_are_merged_over_loops_busiest_first() {
        let mut exporter = sample_exporter();
        assert_eq!(stats(&exporter)["channels"], serde_json::json!({"top": []}));
        for (loop_id, channel, messages) in [(0, "md.a", 3), (1, "md.\"b", 7)] {
            let mut metrics = LoopMetrics::new(loop_id);
            let mut top = crate::metrics::TopChannels::default();
            top.offer(channel, messages, 40 + messages, 1000);
            metrics.set_top_channels(top);
            let mut snap = metrics.snapshot();
            snap.seq = 1;
            exporter.absorb(snap);
        }
        let expected = serde_json::json!({"top": [
            {"channel": "md.\"b", "messages": 7, "seq": 47, "window_ms": 1000},
            {"channel": "md.a", "messages": 3, "seq": 43, "window_ms": 1000},
        ]});
        assert_eq!(stats(&exporter)["channels"], expected);
    }

    #[test]
    fn relay_member_has_version_and_uptime_only_when_given() {
        let exporter = sample_exporter();
        assert!(stats(&exporter).get("relay").is_none());
        let mut text = String::new();
        let info = RelayInfo {
            version: "1.2.3",
            revision: "a954611",
            uptime_ms: 5021,
        };
        exporter.render_stats_json_with(&info, &mut text);
        let value: Value = serde_json::from_str(&text).unwrap_or_default();
        let expected =
            serde_json::json!({"version": "1.2.3", "revision": "a954611", "uptime_ms": 5021});
        assert_eq!(value["relay"], expected);
    }

    #[test]
    fn exact_values_after_known_increments() {
        let s = stats(&sample_exporter());
        let counters = &s["counters"];
        assert_eq!(counters["wsrelay_connections_accepted_total"], 3);
        assert_eq!(counters["wsrelay_received_bytes_total"], 777);
        assert_eq!(
            counters["wsrelay_connections_closed_total"]["slow_consumer"],
            1
        );
        assert_eq!(counters["wsrelay_messages_published_total"]["json"], 1);
        assert_eq!(counters["wsrelay_close_codes_sent_total"]["4008"], 1);
        assert_eq!(counters["wsrelay_close_codes_received_total"]["1000"], 1);
        let protocol = &counters["wsrelay_protocol_errors_total"];
        assert_eq!(protocol["control_frame_too_long"], 1);
        assert_eq!(counters["wsrelay_command_errors_total"]["unknown_type"], 1);
        assert_eq!(s["gauges"]["wsrelay_subscriptions"], 7);
        assert_eq!(s["loops"][1]["gauges"]["wsrelay_mesh_inbox_depth"], 1);
        assert_eq!(s["loops"][0]["loop"], 0);
        assert_eq!(s["exporter"]["snapshots_absorbed"], 2);
    }

    #[test]
    fn latency_figures_are_exact_and_null_when_empty() {
        let s = stats(&sample_exporter());
        let relay = &s["latency"]["relay"];
        assert_eq!(relay["count"], 4);
        assert_eq!(relay["sum_ns"], 1_006_000);
        assert_eq!(relay["p50_ns"], 2_000);
        assert_eq!(relay["mean_ns"], 251_500.0);
        let max = sample_exporter()
            .latency_summary(Latency::Relay)
            .quantiles_ns;
        assert_eq!(max.map(|q| q[4]), Some(1_000_447));
        assert_eq!(relay["max_ns"], 1_000_447);
        let rtt = &s["latency"]["heartbeat_rtt"];
        assert_eq!(
            (rtt["count"].as_u64(), rtt["p99_ns"].is_null()),
            (Some(0), true)
        );
        assert!(rtt["mean_ns"].is_null());
        // The window holds the same four samples (absorbed just now).
        let window = &s["latency"]["relay_window"];
        assert_eq!(
            (window["count"].as_u64(), window["sum_ns"].as_u64()),
            (Some(4), Some(1_006_000))
        );
        // At 2 significant digits: the upper bound of 2 µs's bucket.
        let p50 = crate::metrics::latency::LatencyHistogram::coarse()
            .histogram()
            .highest_equivalent(2_000);
        assert_eq!(
            (window["p50_ns"].as_u64(), window["window_s"].as_u64()),
            (Some(p50), Some(300))
        );
        assert!(window["p999_ns"].as_u64().is_some_and(|ns| ns >= 1_000_000));
    }

    /// Every Prometheus sample has the same value in the JSON document.
    #[test]
    fn same_values_as_prometheus_output() {
        let exporter = sample_exporter();
        let s = stats(&exporter);
        let mut text = String::new();
        exporter.render_prometheus(&mut text);
        let parsed = parse_strict(&text);
        let Ok(parsed) = parsed else {
            panic!("invalid exposition {parsed:?}");
        };
        let mut compared = 0;
        for sample in parsed.samples() {
            let json = json_value_of(&s, sample);
            // NaN (empty summary quantile) must match NaN, so compare bit patterns.
            assert_eq!(
                json.map(f64::to_bits),
                Some(sample.value.to_bits()),
                "{sample:?}"
            );
            compared += 1;
        }
        assert_eq!(compared, parsed.samples().count());
        assert!(compared > 100, "{compared}");
    }

    /// Finds the JSON figure matching one Prometheus sample, converted to the sample's unit.
    fn json_value_of(s: &Value, sample: &crate::metrics::text_format_check::Sample) -> Option<f64> {
        let label = sample.labels.first().map(|(k, v)| (k.as_str(), v.as_str()));
        if let Some(("loop", loop_label)) = label {
            let rest = sample.name.strip_prefix("wsrelay_loop_")?;
            let loop_id: usize = loop_label.parse().ok()?;
            let gauges = &s["loops"]
                .as_array()?
                .iter()
                .find(|l| l["loop"] == loop_id)?["gauges"];
            return gauges[format!("wsrelay_{rest}")].as_f64();
        }
        if let Some(latency) = latency_of(s, &sample.name, label) {
            return latency;
        }
        let family = &s["counters"][&sample.name];
        let value = match label {
            Some((_, v)) => &family[v],
            None if family.is_null() => &s["gauges"][&sample.name],
            None => family,
        };
        value.as_f64()
    }

    /// `Some(figure)` when `name` is a summary sample; JSON ns are converted to seconds.
    fn latency_of(s: &Value, name: &str, label: Option<(&str, &str)>) -> Option<Option<f64>> {
        let kind = Latency::ALL
            .into_iter()
            .find(|k| name.starts_with(k.family().name))?;
        let json = &s["latency"][kind.json_key()];
        let suffix = &name[kind.family().name.len()..];
        let key = match (suffix, label) {
            ("_count", _) => return Some(json["count"].as_f64()),
            ("_sum", _) => "sum_ns",
            (_, Some((_, q))) => {
                let i = crate::metrics::latency::QUANTILE_LABELS
                    .iter()
                    .position(|l| *l == q)?;
                QUANTILE_KEYS[i]
            }
            _ => return Some(None),
        };
        // Empty summaries: NaN in Prometheus, null in JSON.
        let seconds = json[key].as_f64().map_or(f64::NAN, |ns| ns / 1e9);
        Some(Some(seconds))
    }

    #[test]
    fn members_are_appended_to_a_complete_object() {
        let mut doc = String::from("{}");
        append_member(&mut doc, "a", |out| out.push('1'));
        append_member(&mut doc, "b\"", |out| out.push_str("{}"));
        assert_eq!(doc, "{\"a\":1,\"b\\\"\":{}}");
        let mut broken = String::from("{\"a\":");
        append_member(&mut broken, "b", |out| out.push('2'));
        assert_eq!(broken, "{\"a\":", "not an object: left alone");
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut out = String::new();
        write_json_string("a\"b\\c\n\u{1}", &mut out);
        assert_eq!(out, "\"a\\\"b\\\\c\\n\\u0001\"");
    }
}
