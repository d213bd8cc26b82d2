//! Payload templates of scripted scenarios: literal text with `{{variable}}` slots, parsed
//! once when the scenario is loaded and rendered per message.
//!
//! Owns: the template language. May not touch: sockets, clocks (times arrive in `Vars`).
//!
//! Variables: `{{client}}` (the client's index in the run), `{{group_client}}` (its index in
//! its group), `{{seq}}` (the message counter of the sender), `{{now_ns}}` (the swarm's clock
//! at rendering), `{{sent_at_ns}}` (the scheduled send time, the latency origin),
//! `{{random_int(a,b)}}` (inclusive), `{{line(file)}}` (line number `client` of a file,
//! wrapping; e.g. one token per client), `{{recv(/json/pointer)}}` (a value of the received
//! message, in reactions only; its JSON text unless a string).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

/// Largest file `{{line(file)}}` reads.
const LINE_FILE_BYTES_MAX: u64 = 64 << 20;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Client,
    GroupClient,
    Seq,
    NowNs,
    SentAtNs,
    RandomInt { low: i64, high: i64 },
    Line(Arc<Vec<String>>),
    Recv(String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

/// Values a rendering can use.
#[derive(Debug)]
pub struct Vars<'a> {
    /// The client's index in the run.
    pub client: u64,
    /// The client's index in its group.
    pub group_client: u64,
    /// The sender's message counter.
    pub seq: u64,
    /// Now, ns on the swarm's clock.
    pub now_ns: u64,
    /// Scheduled send time, ns on the swarm's clock.
    pub sent_at_ns: u64,
    /// The received message (reactions).
    pub recv: Option<&'a Value>,
    /// xorshift state for `random_int`.
    pub rng: &'a mut u64,
}

impl Template {
    /// Parses `text`; files named by `line(...)` are read relative to `base_dir`.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| format!("unclosed `{{{{` in template {text:?}"))?;
            parts.push(parse_variable(after[..close].trim(), base_dir)?);
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// A template without variables.
    pub fn literal(text: &str) -> Template {
        Template {
            parts: vec![Part::Literal(text.to_string())],
        }
    }

    /// Whether it uses `{{recv(...)}}` (only valid in reactions).
    pub fn uses_recv(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Recv(_)))
    }

    /// The first variable whose value changes at every rendering (`now_ns`, `random_int`):
    /// an `equals` using one is rendered afresh when compared, so it can never match what
    /// was sent.
    pub fn fresh_variable(&self) -> Option<&'static str> {
        self.parts.iter().find_map(|p| match p {
            Part::NowNs => Some("now_ns"),
            Part::RandomInt { .. } => Some("random_int"),
            _ => None,
        })
    }

    /// Appends the rendering to `out`.
    pub fn render(&self, out: &mut String, vars: &mut Vars<'_>) {
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Client => push_u64(out, vars.client),
                Part::GroupClient => push_u64(out, vars.group_client),
                Part::Seq => push_u64(out, vars.seq),
                Part::NowNs => push_u64(out, vars.now_ns),
                Part::SentAtNs => push_u64(out, vars.sent_at_ns),
                Part::RandomInt { low, high } => {
                    let span = (*high as i128 - *low as i128 + 1) as u128;
                    let pick = (u128::from(next_random(vars.rng)) % span) as i128;
                    let _ = write!(out, "{}", *low as i128 + pick);
                }
                Part::Line(lines) => {
                    if let Some(line) = lines.get(vars.client as usize % lines.len().max(1)) {
                        out.push_str(line);
                    }
                }
                Part::Recv(pointer) => match vars.recv.and_then(|v| v.pointer(pointer)) {
                    Some(Value::String(s)) => out.push_str(s),
                    Some(other) => out.push_str(&other.to_string()),
                    None => {}
                },
            }
        }
    }

    /// The rendering as a new string.
    pub fn render_string(&self, vars: &mut Vars<'_>) -> String {
        let mut out = String::new();
        self.render(&mut out, vars);
        out
    }
}

fn push_u64(out: &mut String, value: u64) {
    let _ = write!(out, "{value}");
}

fn parse_variable(name: &str, base_dir: &Path) -> Result<Part, String> {
    match name {
        "client" => return Ok(Part::Client),
        "group_client" => return Ok(Part::GroupClient),
        "seq" => return Ok(Part::Seq),
        "now_ns" => return Ok(Part::NowNs),
        "sent_at_ns" => return Ok(Part::SentAtNs),
        _ => {}
    }
    let (function, argument) = name
        .strip_suffix(')')
        .and_then(|n| n.split_once('('))
        .ok_or_else(|| unknown_variable(name))?;
    match function.trim() {
        "random_int" => parse_random_int(argument),
        "line" => read_lines(&base_dir.join(argument.trim())).map(|l| Part::Line(Arc::new(l))),
        "recv" if argument.trim().starts_with('/') || argument.trim().is_empty() => {
            Ok(Part::Recv(argument.trim().to_string()))
        }
        "recv" => Err(format!(
            "recv({argument}): the argument is a JSON pointer such as /id"
        )),
        _ => Err(unknown_variable(name)),
    }
}

fn unknown_variable(name: &str) -> String {
    format!(
        "unknown variable {{{{{name}}}}} (known: client, group_client, seq, now_ns, sent_at_ns, \
         random_int(a,b), line(file), recv(/pointer))"
    )
}

fn parse_random_int(argument: &str) -> Result<Part, String> {
    let bad = || format!("random_int({argument}): expected two integers a,b with a <= b");
    let (a, b) = argument.split_once(',').ok_or_else(bad)?;
    let low: i64 = a.trim().parse().map_err(|_| bad())?;
    let high: i64 = b.trim().parse().map_err(|_| bad())?;
    if low > high {
        return Err(bad());
    }
    Ok(Part::RandomInt { low, high })
}

fn read_lines(path: &Path) -> Result<Vec<String>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("line({}): {e}", path.display()))?;
    let mut text = String::new();
    file.take(LINE_FILE_BYTES_MAX)
        .read_to_string(&mut text)
        .map_err(|e| format!("line({}): {e}", path.display()))?;
    let lines: Vec<String> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if lines.is_empty() {
        return Err(format!("line({}): the file has no lines", path.display()));
    }
    Ok(lines)
}

/// xorshift64: cheap, seeded per thread (a load test needs spread, not secrecy).
pub fn next_random(state: &mut u64) -> u64 {
    let mut x = (*state).max(1);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str, recv: Option<&Value>) -> String {
        let t = Template::parse(template, Path::new(".")).unwrap();
        let mut rng = 7;
        let mut vars = Vars {
            client: 3,
            group_client: 1,
            seq: 42,
            now_ns: 1_000,
            sent_at_ns: 900,
            recv,
            rng: &mut rng,
        };
        t.render_string(&mut vars)
    }

    #[test]
    fn renders_variables() {
        assert_eq!(
            render(
                r#"{"c":{{client}},"g":{{ group_client }},"id":{{seq}},"t":{{sent_at_ns}},"n":{{now_ns}}}"#,
                None
            ),
            r#"{"c":3,"g":1,"id":42,"t":900,"n":1000}"#
        );
        let n: i64 = render("{{random_int(-2, 2)}}", None).parse().unwrap();
        assert!((-2..=2).contains(&n));
        let recv = serde_json::json!({"id": 9, "who": "ann"});
        assert_eq!(render("{{recv(/id)}}-{{recv(/who)}}", Some(&recv)), "9-ann");
    }

    #[test]
    fn reads_a_line_per_client() {
        let dir = std::env::temp_dir().join(format!("swarm-template-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tokens.txt"), "t0\nt1\n\nt2\nt3\n").unwrap();
        let t = Template::parse("Bearer {{line(tokens.txt)}}", &dir).unwrap();
        let mut rng = 1;
        let mut vars = Vars {
            client: 5,
            group_client: 0,
            seq: 0,
            now_ns: 0,
            sent_at_ns: 0,
            recv: None,
            rng: &mut rng,
        };
        assert_eq!(t.render_string(&mut vars), "Bearer t1");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rejects_bad_templates_with_a_reason() {
        let err = |t: &str| Template::parse(t, Path::new(".")).unwrap_err();
        assert!(err("{{nope}}").contains("unknown variable"));
        assert!(err("{{seq").contains("unclosed"));
        assert!(err("{{random_int(5,1)}}").contains("a <= b"));
        assert!(err("{{line(/no/such/file)}}").contains("/no/such/file"));
    }
}
