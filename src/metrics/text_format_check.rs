//! Test-only STRICT parser of the Prometheus text exposition format 0.0.4, stricter than
//! Prometheus itself so that any sloppiness in the renderer fails a test:
//! - every family is `# HELP` immediately followed by `# TYPE`, declared once, samples
//!   contiguous after it; no other comments, no blank lines, output ends with `\n`;
//! - metric names match `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names `[a-zA-Z_][a-zA-Z0-9_]*`;
//! - label values use only the `\\`, `\"`, `\n` escapes; no duplicate labels or series;
//! - values are decimal, `NaN`, `+Inf` or `-Inf`; no timestamps;
//! - counters end in `_total` and are finite and non-negative; summaries have `quantile`
//!   labels in [0, 1] plus unlabeled `_sum` and `_count`.

/// Label pairs of one sample, in output order.
pub type Labels = Vec<(String, String)>;

/// One parsed sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Labels,
    pub value: f64,
}

/// One parsed family.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedFamily {
    pub name: String,
    pub help: String,
    pub kind: String,
    pub samples: Vec<Sample>,
}

/// A whole parsed exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Exposition {
    pub families: Vec<ParsedFamily>,
}

impl Exposition {
    /// Names of the families of `kind` (e.g. "counter").
    pub fn families_of_kind(&self, kind: &str) -> Vec<&str> {
        let matching = self.families.iter().filter(|f| f.kind == kind);
        matching.map(|f| f.name.as_str()).collect()
    }

    /// Value of the sample `name` with exactly the one `label` (or no label).
    pub fn value(&self, name: &str, label: Option<(&str, &str)>) -> Option<f64> {
        let wanted: Vec<(String, String)> = label
            .map(|(k, v)| vec![(k.to_owned(), v.to_owned())])
            .unwrap_or_default();
        self.samples()
            .find(|s| s.name == name && s.labels == wanted)
            .map(|s| s.value)
    }

    /// Every sample of every family.
    pub fn samples(&self) -> impl Iterator<Item = &Sample> {
        self.families.iter().flat_map(|f| f.samples.iter())
    }
}

/// Parses `text`, returning the first violation as `line N: reason`.
pub fn parse_strict(text: &str) -> Result<Exposition, String> {
    let body = text
        .strip_suffix('\n')
        .ok_or("output must end with a line feed")?;
    let mut families: Vec<ParsedFamily> = Vec::new();
    let mut series: Vec<(String, Labels)> = Vec::new();
    let mut lines = body.split('\n').enumerate().peekable();
    while let Some((i, line)) = lines.next() {
        let at = |e: String| format!("line {}: {e}: {line:?}", i + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let type_line = lines.next().map(|(_, l)| l).unwrap_or_default();
            let family = parse_family(rest, type_line).map_err(at)?;
            if families.iter().any(|f| f.name == family.name) {
                return Err(at("family declared twice".into()));
            }
            families.push(family);
            continue;
        }
        let family = families
            .last_mut()
            .ok_or_else(|| at("sample before any family".into()))?;
        let sample = parse_sample(line).map_err(at)?;
        check_sample_in_family(&sample, family).map_err(at)?;
        let key = (sample.name.clone(), sample.labels.clone());
        if series.contains(&key) {
            return Err(at("duplicate series".into()));
        }
        series.push(key);
        family.samples.push(sample);
    }
    Ok(Exposition { families })
}

fn parse_family(help_rest: &str, type_line: &str) -> Result<ParsedFamily, String> {
    let (name, help) = help_rest.split_once(' ').ok_or("HELP without text")?;
    check_metric_name(name)?;
    check_help_escapes(help)?;
    let type_rest = type_line
        .strip_prefix("# TYPE ")
        .ok_or("HELP not immediately followed by TYPE")?;
    let (type_name, kind) = type_rest.split_once(' ').ok_or("TYPE without kind")?;
    if type_name != name {
        return Err(format!("TYPE names {type_name}, HELP names {name}"));
    }
    if !matches!(
        kind,
        "counter" | "gauge" | "summary" | "histogram" | "untyped"
    ) {
        return Err(format!("unknown TYPE {kind}"));
    }
    if kind == "counter" && !name.ends_with("_total") {
        return Err("counter family must end in _total".into());
    }
    Ok(ParsedFamily {
        name: name.to_owned(),
        help: help.to_owned(),
        kind: kind.to_owned(),
        samples: Vec::new(),
    })
}

fn check_metric_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(format!("invalid metric name {name:?}"))
    }
}

fn check_label_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if first_ok && rest_ok && !name.starts_with("__") {
        Ok(())
    } else {
        Err(format!("invalid label name {name:?}"))
    }
}

fn check_help_escapes(help: &str) -> Result<(), String> {
    let mut chars = help.chars();
    while let Some(c) = chars.next() {
        if c == '\\' && !matches!(chars.next(), Some('\\' | 'n')) {
            return Err("invalid escape in HELP".into());
        }
    }
    Ok(())
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("sample without value")?;
    let (name, mut rest) = line.split_at(name_end);
    check_metric_name(name)?;
    let mut labels = Vec::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(after_brace)?;
        labels = parsed;
        rest = after;
    }
    let value_text = rest.strip_prefix(' ').ok_or("missing space before value")?;
    let value = parse_value(value_text)?;
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses `k="v",k="v"}` and returns the labels and the text after `}`.
fn parse_labels(mut rest: &str) -> Result<(Labels, &str), String> {
    let mut labels: Labels = Vec::new();
    loop {
        let (key, after_key) = rest.split_once("=\"").ok_or("label without =\"")?;
        check_label_name(key)?;
        if labels.iter().any(|(k, _)| k == key) {
            return Err(format!("duplicate label {key}"));
        }
        let (value, after_value) = parse_label_value(after_key)?;
        labels.push((key.to_owned(), value));
        if let Some(after) = after_value.strip_prefix('}') {
            return Ok((labels, after));
        }
        rest = after_value
            .strip_prefix(',')
            .ok_or("expected , or } after label")?;
    }
}

/// Unescapes a label value up to its closing quote; returns it and the text after the quote.
fn parse_label_value(text: &str) -> Result<(String, &str), String> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &text[i + 1..])),
            '\\' => match chars.next() {
                Some((_, '\\')) => value.push('\\'),
                Some((_, '"')) => value.push('"'),
                Some((_, 'n')) => value.push('\n'),
                _ => return Err("invalid escape in label value".into()),
            },
            other => value.push(other),
        }
    }
    Err("unterminated label value".into())
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "NaN" => return Ok(f64::NAN),
        "+Inf" => return Ok(f64::INFINITY),
        "-Inf" => return Ok(f64::NEG_INFINITY),
        _ => {}
    }
    let decimal_chars = text
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'));
    let starts_ok = text.starts_with(|c: char| c.is_ascii_digit() || c == '-');
    if !(decimal_chars && starts_ok) {
        return Err(format!("invalid value {text:?} (timestamp or junk?)"));
    }
    text.parse::<f64>()
        .map_err(|e| format!("value {text:?}: {e}"))
}

fn check_sample_in_family(sample: &Sample, family: &ParsedFamily) -> Result<(), String> {
    match family.kind.as_str() {
        "counter" => check_counter_sample(sample, family),
        "summary" => check_summary_sample(sample, family),
        _ if sample.name == family.name => Ok(()),
        _ => Err(format!("sample outside family {}", family.name)),
    }
}

fn check_counter_sample(sample: &Sample, family: &ParsedFamily) -> Result<(), String> {
    if sample.name != family.name {
        return Err(format!("sample outside family {}", family.name));
    }
    if !(sample.value.is_finite() && sample.value >= 0.0) {
        return Err("counter value must be finite and >= 0".into());
    }
    Ok(())
}

fn check_summary_sample(sample: &Sample, family: &ParsedFamily) -> Result<(), String> {
    let suffix = sample.name.strip_prefix(family.name.as_str());
    match suffix {
        Some("_sum" | "_count") if sample.labels.is_empty() => Ok(()),
        Some("") => check_quantile_labels(&sample.labels),
        _ => Err(format!("bad summary sample for {}", family.name)),
    }
}

fn check_quantile_labels(labels: &[(String, String)]) -> Result<(), String> {
    let quantile = labels
        .iter()
        .find(|(k, _)| k == "quantile")
        .ok_or("summary sample without quantile")?;
    let q: f64 = quantile.1.parse().map_err(|_| "quantile not a float")?;
    if (0.0..=1.0).contains(&q) {
        Ok(())
    } else {
        Err("quantile outside [0, 1]".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
# HELP a_total Help \\\\ with \\n escapes.
# TYPE a_total counter
a_total{k=\"v\\\"1\"} 3
# HELP s Summary.
# TYPE s summary
s{quantile=\"0.5\"} NaN
s_sum 0.000001
s_count 1
";

    #[test]
    fn accepts_well_formed_output() {
        let p = parse_strict(GOOD);
        assert_eq!(p.as_ref().map(|p| p.families.len()), Ok(2));
        let value = p.ok().and_then(|p| p.value("a_total", Some(("k", "v\"1"))));
        assert_eq!(value, Some(3.0));
    }

    #[test]
    fn rejects_each_violation() {
        let bad = [
            GOOD.trim_end(),
            "# TYPE a_total counter\na_total 1\n",
            "# HELP a_total x\na_total 1\n",
            "# HELP a x\n# TYPE a counter\na 1\n",
            "# HELP a_total x\n# TYPE a_total counter\na_total -1\n",
            "# HELP a_total x\n# TYPE a_total counter\na_total 1 1700000000\n",
            "# HELP a_total x\n# TYPE a_total counter\na_total{k=\"\\t\"} 1\n",
            "# HELP a_total x\n# TYPE a_total counter\na_total{k=\"v\",} 1\n",
            "# HELP a_total x\n# TYPE a_total counter\na_total 1\na_total 2\n",
            "# HELP a_total x\n# TYPE a_total counter\nb_total 1\n",
            "# HELP 1a x\n# TYPE 1a gauge\n",
            "# HELP g x\n# TYPE g gauge\n# HELP g x\n# TYPE g gauge\n",
            "# HELP s x\n# TYPE s summary\ns 1\n",
            "# HELP s x\n# TYPE s summary\ns{quantile=\"2\"} 1\n",
            "# HELP g x\n# TYPE g gauge\n\ng 1\n",
            "# HELP g x\n# TYPE g gauge\ng{__k=\"v\"} 1\n",
        ];
        for text in bad {
            assert!(parse_strict(text).is_err(), "accepted: {text:?}");
        }
    }
}
