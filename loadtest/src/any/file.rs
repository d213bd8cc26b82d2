//! The scenario file (TOML) of `wsrelay-swarm script`: read, checked and turned into a
//! `Scenario`. Errors name the file, and the line (TOML syntax and unknown keys) or the key
//! path (`group[1].send.match`) of what is wrong.
//!
//! Owns: the file format. May not touch: sockets, threads. The format is documented with
//! examples in loadtest/README.md.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::any::scenario::{
    Expect, Extract, Group, Matching, Message, OpenStep, Payload, Periodic, Reaction, Scenario,
    Stage,
};
use crate::any::template::Template;
use crate::any::threshold::Threshold;
use crate::cli::parse_duration;
use crate::payload::JSON_CONTENT_BYTES_MIN;
use crate::schedule::Rate;
use crate::target::Target;

/// Largest scenario file read.
const FILE_BYTES_MAX: u64 = 1 << 20;
/// Most clients one group may have.
const CLIENTS_MAX: u32 = 1_000_000;
/// Largest regex program (bytes of compiled automaton).
const REGEX_BYTES_MAX: usize = 1 << 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileScenario {
    name: Option<String>,
    warmup: Option<String>,
    duration: Option<String>,
    drain: Option<String>,
    #[serde(default)]
    thresholds: Vec<String>,
    #[serde(default, rename = "group")]
    groups: Vec<FileGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGroup {
    name: Option<String>,
    url: Option<String>,
    #[serde(default)]
    urls: Vec<String>,
    clients: Option<u32>,
    #[serde(default)]
    stages: Vec<FileStage>,
    #[serde(default)]
    subprotocols: Vec<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    sent_at: Option<FileExtract>,
    #[serde(default)]
    on_open: Vec<FileOpenStep>,
    send: Option<FileSend>,
    #[serde(default)]
    on_message: Vec<FileReaction>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStage {
    duration: String,
    clients: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileExtract {
    pointer: Option<String>,
    regex: Option<String>,
    equals: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOpenStep {
    send: Option<String>,
    #[serde(default)]
    binary: bool,
    wait_for: Option<FileExtract>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSend {
    rate: f64,
    template: Option<String>,
    stamp_bytes: Option<usize>,
    #[serde(default)]
    binary: bool,
    #[serde(rename = "match")]
    matching: Option<FileMatch>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FileMatch {
    Word(String),
    Table(FileMatchTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMatchTable {
    pointer: Option<String>,
    regex: Option<String>,
    equals: Option<String>,
    deliveries: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileReaction {
    when: FileExtract,
    send: String,
    #[serde(default)]
    binary: bool,
}

/// Reads and checks the scenario file at `path`; every target must be loopback unless
/// `allow_remote`.
pub fn load(path: &Path, allow_remote: bool) -> Result<Scenario, String> {
    use std::io::Read;
    let name = path.display();
    let file = std::fs::File::open(path).map_err(|e| format!("{name}: {e}"))?;
    let mut text = String::new();
    file.take(FILE_BYTES_MAX)
        .read_to_string(&mut text)
        .map_err(|e| format!("{name}: {e}"))?;
    let base_dir = path.parent().unwrap_or(Path::new("."));
    parse(&text, base_dir, allow_remote).map_err(|e| format!("{name}: {e}"))
}

/// Parses scenario text; files it names are read relative to `base_dir`.
pub fn parse(text: &str, base_dir: &Path, allow_remote: bool) -> Result<Scenario, String> {
    let file: FileScenario = toml::from_str(text).map_err(|e| e.to_string())?;
    if file.groups.is_empty() {
        return Err("no [[group]]: a scenario needs at least one group of clients".into());
    }
    let ctx = Build {
        base_dir,
        allow_remote,
    };
    let groups = file
        .groups
        .into_iter()
        .enumerate()
        .map(|(i, g)| ctx.group(i, g))
        .collect::<Result<Vec<_>, _>>()?;
    let duration = |key: &str, value: Option<String>, default: &str| {
        parse_duration(value.as_deref().unwrap_or(default))
            .map(|d| d.as_nanos() as u64)
            .map_err(|e| format!("{key}: {e}"))
    };
    let warmup_ns = duration("warmup", file.warmup, "0s")?;
    let drain_ns = duration("drain", file.drain, "5s")?;
    let stages_ns = groups
        .iter()
        .map(|g| Stage::total_ns(&g.stages))
        .max()
        .unwrap_or(0);
    let duration_ns = match (file.duration, stages_ns) {
        (Some(d), _) => duration("duration", Some(d), "")?,
        (None, 0) => duration("duration", None, "5s")?,
        (None, stages_ns) => stages_ns.saturating_sub(warmup_ns),
    };
    check_window_covers_stages(warmup_ns, duration_ns, stages_ns)?;
    if duration_ns == 0 {
        return Err("duration: the measured window is empty (warmup covers the stages?)".into());
    }
    let thresholds = file
        .thresholds
        .iter()
        .enumerate()
        .map(|(i, t)| Threshold::parse(t).map_err(|e| format!("thresholds[{i}]: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Scenario {
        name: file.name.unwrap_or_else(|| "script".into()),
        groups,
        warmup_ns,
        duration_ns,
        drain_ns,
        thresholds,
    })
}

/// The run ends after warm-up + duration (+ drain): a shorter window than the stages would
/// cut them off silently (their hold and ramp-down never run), so it is refused.
fn check_window_covers_stages(
    warmup_ns: u64,
    duration_ns: u64,
    stages_ns: u64,
) -> Result<(), String> {
    let run_ns = warmup_ns.saturating_add(duration_ns);
    if run_ns >= stages_ns {
        return Ok(());
    }
    let s = |ns: u64| format!("{:.3}s", ns as f64 / 1e9);
    Err(format!(
        "duration: warmup {} + duration {} ends the run {} before the stages end ({} in all): \
         the later stages would never run; leave duration out (the window is then the stages' \
         length minus warmup) or make it at least {}",
        s(warmup_ns),
        s(duration_ns),
        s(stages_ns - run_ns),
        s(stages_ns),
        s(stages_ns.saturating_sub(warmup_ns)),
    ))
}

/// What checking a group needs.
struct Build<'a> {
    base_dir: &'a Path,
    allow_remote: bool,
}

impl Build<'_> {
    fn group(&self, index: usize, g: FileGroup) -> Result<Group, String> {
        let name = g.name.clone().unwrap_or_else(|| format!("group{index}"));
        let key = format!("group[{index}] ({name})");
        let at = |sub: &str| format!("{key}.{sub}");
        let (clients_max, stages) = self.clients(&at("stages"), g.clients, &g.stages)?;
        let mut url_texts = g.urls.clone();
        url_texts.extend(g.url.clone());
        if url_texts.is_empty() {
            return Err(format!(
                "{key}: no url (url = \"ws://127.0.0.1:PORT/PATH\")"
            ));
        }
        let urls = url_texts
            .iter()
            .map(|u| {
                Target::parse(u, self.allow_remote).map_err(|e| format!("{}: {u}: {e}", at("url")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let headers = g
            .headers
            .iter()
            .map(|(n, v)| Ok((n.clone(), self.template(&at(&format!("headers.{n}")), v)?)))
            .collect::<Result<Vec<_>, String>>()?;
        let on_open = g
            .on_open
            .iter()
            .enumerate()
            .map(|(i, step)| self.open_step(&at(&format!("on_open[{i}]")), step))
            .collect::<Result<Vec<_>, _>>()?;
        let periodic = g
            .send
            .as_ref()
            .map(|s| self.periodic(&at("send"), s))
            .transpose()?;
        let reactions = g
            .on_message
            .iter()
            .enumerate()
            .map(|(i, r)| self.reaction(&at(&format!("on_message[{i}]")), r))
            .collect::<Result<Vec<_>, _>>()?;
        let sent_at = g
            .sent_at
            .as_ref()
            .map(|e| self.extract(&at("sent_at"), e))
            .transpose()?;
        Ok(Group {
            name,
            clients_max,
            stages,
            urls,
            headers,
            subprotocols: g.subprotocols,
            on_open,
            periodic,
            reactions,
            sent_at,
        })
    }

    fn clients(
        &self,
        key: &str,
        clients: Option<u32>,
        stages: &[FileStage],
    ) -> Result<(u32, Vec<Stage>), String> {
        let stages = stages
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let duration_ns = parse_duration(&s.duration)
                    .map_err(|e| format!("{key}[{i}].duration: {e}"))?
                    .as_nanos() as u64;
                if duration_ns == 0 {
                    return Err(format!("{key}[{i}].duration: must be longer than 0"));
                }
                Ok(Stage {
                    duration_ns,
                    clients: s.clients,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let clients_max = match (clients, stages.is_empty()) {
            (Some(_), false) => {
                return Err(format!("{key}: give clients or stages, not both"));
            }
            (Some(n), true) => n,
            (None, false) => stages.iter().map(|s| s.clients).max().unwrap_or(0),
            (None, true) => return Err(format!("{key}: no clients (clients = N or stages)")),
        };
        if clients_max == 0 || clients_max > CLIENTS_MAX {
            return Err(format!("{key}: clients must be 1..={CLIENTS_MAX}"));
        }
        Ok((clients_max, stages))
    }

    fn template(&self, key: &str, text: &str) -> Result<Template, String> {
        Template::parse(text, self.base_dir).map_err(|e| format!("{key}: {e}"))
    }

    fn message(&self, key: &str, text: &str, binary: bool, recv: bool) -> Result<Message, String> {
        let template = self.template(key, text)?;
        if template.uses_recv() && !recv {
            return Err(format!("{key}: recv(...) is only known in on_message"));
        }
        Ok(Message { template, binary })
    }

    fn open_step(&self, key: &str, step: &FileOpenStep) -> Result<OpenStep, String> {
        if step.send.is_none() && step.wait_for.is_none() {
            return Err(format!("{key}: a step needs send, wait_for or both"));
        }
        Ok(OpenStep {
            send: step
                .send
                .as_deref()
                .map(|t| self.message(&format!("{key}.send"), t, step.binary, false))
                .transpose()?,
            wait_for: step
                .wait_for
                .as_ref()
                .map(|w| self.expect(&format!("{key}.wait_for"), w))
                .transpose()?,
        })
    }

    fn reaction(&self, key: &str, r: &FileReaction) -> Result<Reaction, String> {
        Ok(Reaction {
            when: self.expect(&format!("{key}.when"), &r.when)?,
            send: self.message(&format!("{key}.send"), &r.send, r.binary, true)?,
        })
    }

    fn extract(&self, key: &str, e: &FileExtract) -> Result<Extract, String> {
        match (&e.pointer, &e.regex) {
            (Some(p), None) if p.is_empty() || p.starts_with('/') => {
                Ok(Extract::Pointer(p.clone()))
            }
            (Some(p), None) => Err(format!("{key}.pointer: {p:?} is not a JSON pointer (/a/b)")),
            (None, Some(r)) => regex::bytes::RegexBuilder::new(r)
                .size_limit(REGEX_BYTES_MAX)
                .build()
                .map(Extract::Regex)
                .map_err(|err| format!("{key}.regex: {err}")),
            _ => Err(format!("{key}: give pointer or regex (one of them)")),
        }
    }

    fn expect(&self, key: &str, e: &FileExtract) -> Result<Expect, String> {
        let equals = e
            .equals
            .as_deref()
            .ok_or_else(|| format!("{key}: equals is missing"))?;
        let equals = self.template(&format!("{key}.equals"), equals)?;
        if let Some(variable) = equals.fresh_variable() {
            // `equals` is rendered again when a message is compared: a fresh random number
            // or clock reading there never equals the one that was sent.
            return Err(format!(
                "{key}.equals: {{{{{variable}}}}} takes a new value each time it is compared, \
                 so it can never reliably equal what a message carries (a match on it never \
                 succeeds); use {{{{seq}}}}, {{{{client}}}} or a literal"
            ));
        }
        Ok(Expect {
            extract: self.extract(key, e)?,
            equals,
        })
    }

    fn periodic(&self, key: &str, s: &FileSend) -> Result<Periodic, String> {
        if !(s.rate > 0.0 && s.rate.is_finite()) {
            return Err(format!(
                "{key}.rate: a positive number of messages per second per client"
            ));
        }
        let payload = match (&s.template, s.stamp_bytes) {
            (Some(t), None) => {
                Payload::Template(self.message(&format!("{key}.template"), t, s.binary, false)?)
            }
            (None, bytes) => Payload::Stamped {
                bytes: bytes.unwrap_or(JSON_CONTENT_BYTES_MIN).max(if s.binary {
                    16
                } else {
                    JSON_CONTENT_BYTES_MIN
                }),
                binary: s.binary,
            },
            (Some(_), Some(_)) => return Err(format!("{key}: template or stamp_bytes, not both")),
        };
        let matching = match (&s.matching, &payload) {
            (None, Payload::Stamped { .. }) => Matching::Stamp,
            (None, _) => Matching::None,
            (Some(FileMatch::Word(w)), _) => match w.as_str() {
                "order" => Matching::Order,
                "none" => Matching::None,
                "stamp" if matches!(payload, Payload::Stamped { .. }) => Matching::Stamp,
                "stamp" => {
                    return Err(format!(
                        "{key}.match: stamp needs the swarm's payload (no template)"
                    ))
                }
                other => {
                    return Err(format!(
                        "{key}.match: unknown {other:?} (order, none, stamp, or a table)"
                    ))
                }
            },
            (Some(FileMatch::Table(t)), _) => self.match_table(&format!("{key}.match"), t)?,
        };
        Ok(Periodic {
            rate: Rate::PerSecond(s.rate),
            payload,
            matching,
        })
    }

    fn match_table(&self, key: &str, t: &FileMatchTable) -> Result<Matching, String> {
        if let Some(expect) = t.deliveries {
            if t.pointer.is_some() || t.regex.is_some() || t.equals.is_some() {
                return Err(format!(
                    "{key}: deliveries stands alone (receivers say sent_at)"
                ));
            }
            return Ok(Matching::Deliveries { expect });
        }
        let extract = FileExtract {
            pointer: t.pointer.clone(),
            regex: t.regex.clone(),
            equals: t.equals.clone(),
        };
        Ok(Matching::Key(self.expect(key, &extract)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(text: &str) -> String {
        parse(text, Path::new("."), false).unwrap_err()
    }

    #[test]
    fn parses_a_full_scenario() {
        let text = r#"
            name = "api"
            duration = "2s"
            thresholds = ["p99 < 50ms", "errors < 0.1%"]
            [[group]]
            name = "users"
            url = "ws://127.0.0.1:9/api"
            clients = 4
            subprotocols = ["demo.v1"]
            headers = { Authorization = "Bearer t{{client}}" }
            [[group.on_open]]
            send = '{"type":"login","user":"u{{client}}"}'
            wait_for = { pointer = "/type", equals = "logged_in" }
            [group.send]
            rate = 10
            template = '{"type":"req","id":{{seq}}}'
            match = { pointer = "/id", equals = "{{seq}}" }
            [[group.on_message]]
            when = { regex = '"type":"(ping)"', equals = "ping" }
            send = '{"type":"pong","id":{{recv(/id)}}}'
        "#;
        let s = parse(text, Path::new("."), false).unwrap();
        assert_eq!(s.name, "api");
        assert_eq!(s.duration_ns, 2_000_000_000);
        assert_eq!(s.thresholds.len(), 2);
        let g = &s.groups[0];
        assert_eq!(g.clients_max, 4);
        assert_eq!(g.headers[0].0, "Authorization");
        assert!(matches!(
            g.periodic.as_ref().unwrap().matching,
            Matching::Key(_)
        ));
        assert_eq!(g.reactions.len(), 1);
    }

    #[test]
    fn stages_set_the_peak_and_the_length() {
        let text = r#"
            [[group]]
            url = "ws://127.0.0.1:9/"
            stages = [{ duration = "1s", clients = 10 }, { duration = "2s", clients = 10 }, { duration = "500ms", clients = 0 }]
        "#;
        let s = parse(text, Path::new("."), false).unwrap();
        assert_eq!(s.groups[0].clients_max, 10);
        assert_eq!(s.duration_ns, 3_500_000_000);
        // An explicit duration must cover the stages (with the warm-up), not cut them off.
        let with = |top: &str| format!("{top}\n{text}");
        let e = parse(&with("duration = \"1s\""), Path::new("."), false).unwrap_err();
        assert!(
            e.contains("duration:") && e.contains("never run") && e.contains("at least 3.500s"),
            "{e}"
        );
        let e = parse(
            &with("warmup = \"1s\"\nduration = \"2s\""),
            Path::new("."),
            false,
        );
        assert!(e.unwrap_err().contains("at least 2.500s"));
        let s = parse(
            &with("warmup = \"1s\"\nduration = \"2500ms\""),
            Path::new("."),
            false,
        );
        assert_eq!(s.unwrap().duration_ns, 2_500_000_000);
        let s = parse(&with("duration = \"10s\""), Path::new("."), false);
        assert_eq!(s.unwrap().duration_ns, 10_000_000_000);
    }

    #[test]
    fn errors_name_the_line_or_the_key() {
        let e = parse_err("[[group]]\nurl = \"ws://127.0.0.1:9/\"\nclients = 1\nclinets = 2\n");
        assert!(e.contains("line 4") && e.contains("clinets"), "{e}");
        let e = parse_err("[[group]]\nname = \"a\"\nurl = \"ws://10.0.0.1:9/\"\nclients = 1\n");
        assert!(
            e.contains("group[0] (a).url") && e.contains("--allow-remote"),
            "{e}"
        );
        let e = parse_err(
            "[[group]]\nurl = \"ws://127.0.0.1:9/\"\nclients = 1\n[group.send]\nrate = 1\ntemplate = \"{{nope}}\"\n",
        );
        assert!(
            e.contains("group[0] (group0).send.template") && e.contains("unknown variable"),
            "{e}"
        );
        let e = parse_err(
            "[[group]]\nurl = \"ws://127.0.0.1:9/\"\nclients = 1\n[group.send]\nrate = 1\nmatch = { pointer = \"id\", equals = \"1\" }\n",
        );
        assert!(e.contains("send.match.pointer"), "{e}");
        let e = parse_err(
            "thresholds = [\"p99 < 5\"]\n[[group]]\nurl = \"ws://127.0.0.1:9/\"\nclients = 1\n",
        );
        assert!(e.contains("thresholds[0]"), "{e}");
        assert!(parse_err("duration = \"1s\"").contains("no [[group]]"));
        let e = parse_err(
            "[[group]]\nurl = \"ws://127.0.0.1:9/\"\nclients = 1\n[group.send]\nrate = 1\ntemplate = '{\"r\":{{random_int(1,9)}}}'\nmatch = { pointer = \"/r\", equals = \"{{random_int(1,9)}}\" }\n",
        );
        assert!(
            e.contains("send.match.equals")
                && e.contains("{{random_int}}")
                && e.contains("never succeeds"),
            "{e}"
        );
    }
}

#[cfg(test)]
mod readme_tests {
    use super::*;

    /// Every TOML example of loadtest/README.md is a valid scenario.
    #[test]
    fn readme_examples_parse() {
        let readme = include_str!("../../README.md");
        let dir = std::env::temp_dir().join(format!("swarm-readme-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tokens.txt"), "t0\nt1\n").unwrap();
        let examples: Vec<&str> = readme
            .split("```toml")
            .skip(1)
            .filter_map(|block| block.split("```").next())
            .collect();
        assert_eq!(examples.len(), 3);
        for example in examples {
            if let Err(e) = parse(example, &dir, false) {
                panic!("{e}\n{example}");
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
