//! The shipped monitoring files against a live relay: every metric name used by the Prometheus
//! alerting rules (`deploy/prometheus/wsrelay-alerts.yml`) and the Grafana dashboard
//! (`deploy/grafana/wsrelay-dashboard.json`) is exported by `/metrics` after some traffic, and
//! every literal label value they select on is one the relay exports. Also checks the rules
//! file's structure (what `promtool check rules` would refuse first, for machines without
//! promtool; `.ci/run` runs promtool too when it is installed).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{http_get, unmasked_frame, Client, Raw};
use serde::Deserialize;
use serde_json::json;
use wsrelay::Config;

const RULES: &str = include_str!("../deploy/prometheus/wsrelay-alerts.yml");
const DASHBOARD: &str = include_str!("../deploy/grafana/wsrelay-dashboard.json");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    groups: Vec<Group>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Group {
    name: String,
    rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    alert: String,
    expr: String,
    #[serde(rename = "for")]
    for_: Option<String>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

/// Every `wsrelay_[a-z_]+` name in `text`, with the label matchers written right after it.
fn metric_uses(text: &str) -> Vec<(String, String)> {
    let mut uses = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("wsrelay_") {
        let boundary = rest[..at]
            .chars()
            .last()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        let tail = &rest[at..];
        let len = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        let after = &tail[len..];
        let matchers = match after.strip_prefix('{') {
            Some(m) => m.split('}').next().unwrap_or_default().to_string(),
            None => String::new(),
        };
        if boundary {
            uses.push((tail[..len].to_string(), matchers));
        }
        rest = &tail[len..];
    }
    uses
}

/// `key="value"` and `key=~"a|b"` matchers with literal values (JSON escapes undone), except
/// on the target labels the relay does not set (`instance`, `job`).
fn literal_matchers(matchers: &str) -> Vec<(String, String)> {
    let matchers = matchers.replace("\\\"", "\"");
    let mut out = Vec::new();
    for m in matchers.split(',') {
        let Some((key, value)) = m.split_once('=') else {
            continue;
        };
        let key = key.trim();
        let (regex, value) = match value.strip_prefix('~') {
            Some(v) => (true, v),
            None => (false, value),
        };
        let value = value.trim().trim_matches('"');
        if ["instance", "job"].contains(&key) || key.ends_with('!') {
            continue;
        }
        let literal = |v: &str| {
            v.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        };
        let values: Vec<&str> = match regex {
            true => value.split('|').collect(),
            false => vec![value],
        };
        for v in values.into_iter().filter(|v| literal(v)) {
            out.push((key.to_string(), v.to_string()));
        }
    }
    out
}

/// Sample name → the `key="value"` pairs seen on its series, from a live `/metrics`.
fn live_series(body: &str) -> BTreeMap<String, BTreeSet<(String, String)>> {
    let mut series: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = series.entry(line[..name_end].to_string()).or_default();
        if let Some(inner) = line[name_end..]
            .strip_prefix('{')
            .and_then(|l| l.split('}').next())
        {
            for pair in inner.split(',') {
                if let Some((k, v)) = pair.split_once('=') {
                    labels.insert((k.to_string(), v.trim_matches('"').to_string()));
                }
            }
        }
    }
    series
}

/// A relay after a little of everything: subscriptions and publishes across two loops, a
/// protocol error, a command error, an HTTP refusal; returns its `/metrics` text.
fn metrics_after_traffic() -> String {
    let server = common::start(Config {
        heartbeat_interval: std::time::Duration::from_millis(20),
        ..Config::loopback_for_tests(2)
    });
    let addr = server.local_addr();
    let mut subs = common::clients_on_every_loop(addr, 2, 2);
    for s in subs.iter_mut() {
        s.subscribe("deploy");
    }
    let mut publisher = Client::connect(addr);
    for n in 0..20 {
        publisher.publish("deploy", json!(n));
    }
    for s in subs.iter_mut() {
        for n in 0..20 {
            assert_eq!(s.recv()["content"], n);
        }
    }
    let want = 20 * subs.len();
    publisher.send_text("not a command");
    assert_eq!(publisher.recv()["type"], "error");
    let mut broken = Raw::upgraded(addr, "/");
    broken.send(&unmasked_frame(0x81, b"x"));
    assert_eq!(broken.read_close_code(), Some(1002));
    let (status, _) = http_get(addr, "/nowhere");
    assert!(status.starts_with("HTTP/1.1 404"), "{status}");
    // Snapshots reach the exporter every 50 ms: wait (bounded) until all of the above shows.
    for _ in 0..200 {
        let (_, body) = http_get(addr, "/metrics");
        let live = live_series(&body);
        let seen = |name: &str| live.contains_key(name);
        let delivered = body.contains(&format!("wsrelay_messages_delivered_total {want}\n"));
        if delivered
            && seen("wsrelay_protocol_errors_total")
            && seen("wsrelay_command_errors_total")
        {
            return body;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("the traffic never showed in /metrics");
}

#[test]
fn every_metric_and_label_value_of_the_alerts_and_the_dashboard_is_exported() {
    let body = metrics_after_traffic();
    let live = live_series(&body);
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).expect("dashboard JSON");
    let mut checked = 0;
    for (file, text) in [("alerts", RULES), ("dashboard", DASHBOARD)] {
        let uses = metric_uses(text);
        assert!(
            uses.len() > 10,
            "{file}: only {} metric uses found",
            uses.len()
        );
        for (name, matchers) in uses {
            let labels = live
                .get(&name)
                .unwrap_or_else(|| panic!("{file} uses {name}, which /metrics does not export"));
            for (key, value) in literal_matchers(&matchers) {
                assert!(
                    labels.contains(&(key.clone(), value.clone())),
                    "{file}: {name}{{{key}=\"{value}\"}} is not exported (known: {labels:?})"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 40, "{checked}");
    // The PromQL of the dashboard is in its panels' targets: make sure the scan saw them all.
    let panels = dashboard["panels"].as_array().expect("panels");
    let exprs: Vec<&str> = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str())
        .collect();
    assert!(exprs.len() >= 20, "{}", exprs.len());
    for expr in exprs {
        assert!(
            !metric_uses(expr).is_empty(),
            "a target without a wsrelay metric: {expr}"
        );
        assert_eq!(
            expr.matches('(').count(),
            expr.matches(')').count(),
            "{expr}"
        );
    }
}

#[test]
fn the_alerting_rules_are_well_formed() {
    let file: RuleFile = serde_yaml_ng::from_str(RULES).expect("rules YAML");
    let mut names = BTreeSet::new();
    let rules: Vec<&Rule> = file.groups.iter().flat_map(|g| &g.rules).collect();
    assert!(file.groups.iter().all(|g| !g.name.is_empty()));
    assert!(rules.len() >= 10, "{}", rules.len());
    for rule in &rules {
        assert!(names.insert(rule.alert.clone()), "{} twice", rule.alert);
        assert!(rule.alert.starts_with("Wsrelay"), "{}", rule.alert);
        let expr = &rule.expr;
        assert_eq!(
            expr.matches('(').count(),
            expr.matches(')').count(),
            "{expr}"
        );
        assert_eq!(
            expr.matches('{').count(),
            expr.matches('}').count(),
            "{expr}"
        );
        if let Some(for_) = &rule.for_ {
            let (n, unit) = for_.split_at(for_.len() - 1);
            assert!(n.parse::<u32>().is_ok() && "smhd".contains(unit), "{for_}");
        }
        let severity = rule.labels.get("severity").map(String::as_str);
        assert!(
            matches!(severity, Some("warning" | "critical")),
            "{}",
            rule.alert
        );
        for key in ["summary", "description"] {
            let text = rule.annotations.get(key).map(String::as_str);
            assert!(text.is_some_and(|t| !t.is_empty()), "{} {key}", rule.alert);
        }
    }
    // docs/OPERATIONS.md tells operators to alert on refused reloads: the rule ships.
    let reload = rules
        .iter()
        .find(|r| r.alert == "WsrelayConfigReloadFailed")
        .expect("WsrelayConfigReloadFailed");
    assert!(
        reload
            .expr
            .contains("wsrelay_config_reloads_total{result=\"error\"}"),
        "{}",
        reload.expr
    );
}

#[test]
fn the_scanners_see_names_matchers_and_boundaries() {
    let uses = metric_uses(r#"rate(wsrelay_a_total{reason="x",instance=~"$i"}[5m]) xwsrelay_b"#);
    assert_eq!(
        uses,
        [(
            "wsrelay_a_total".into(),
            r#"reason="x",instance=~"$i""#.into()
        )]
    );
    assert_eq!(
        literal_matchers(r#"result=~\"missing|malformed\",instance=~\"$instance\""#),
        [
            ("result".to_string(), "missing".to_string()),
            ("result".to_string(), "malformed".to_string())
        ]
    );
}
