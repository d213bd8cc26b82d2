//! `--config FILE` (env `WS_CONFIG`): every flag of `wsrelay serve` as a TOML key with the
//! flag's own name (`max-message-size = 1048576`, `allowed-origin = ["https://a.example"]`).
//!
//! Owns: reading and checking the file, and turning it into flags. Precedence is flags >
//! environment > file > defaults: the command line is parsed first, and the file supplies only
//! the flags whose value still came from a default; then everything is parsed again. Every
//! value passes the flag's own parser, so a file cannot express what a flag cannot, and every
//! error names the file, the line and the key.
//!
//! Also the two `wsrelay config` commands: `check` (the effective configuration, each value
//! with where it came from) and `default` (a complete commented file).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::Path;

use clap::builder::PossibleValue;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};

/// Largest configuration file read (a configuration is a few KiB; this is a sanity bound).
const FILE_BYTES_MAX: u64 = 1 << 20;
/// Flags printed as `<redacted>` by `config check`.
const SECRET_KEYS: &[&str] = &["auth-hs256-secret", "nats-token"];

/// A switch: `--X` sets it, `--X=false` clears it (so a flag can undo a file's `X = true`).
fn is_switch(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::SetTrue)
        || arg
            .get_possible_values()
            .iter()
            .map(PossibleValue::get_name)
            .eq(["true", "false"])
}

/// Flags that are not configuration.
fn is_config_key(arg: &Arg) -> bool {
    !matches!(arg.get_id().as_str(), "help" | "version" | "config") && arg.get_long().is_some()
}

/// Reads `path` and returns the flags it supplies for every key whose flag was not given on
/// the command line or in the environment (`matches` are the serve flags parsed so far,
/// `cmd` the command they belong to).
pub fn flags_from_file(
    path: &Path,
    cmd: &Command,
    matches: &ArgMatches,
) -> Result<Vec<OsString>, String> {
    let text = read_bounded(path)?;
    let file = path.display();
    let keys = key_lines(&text).map_err(|e| format!("{file}: {e}"))?;
    let table: toml::Table = text.parse().map_err(|e| format!("{file}: {e}"))?;
    let mut flags = Vec::new();
    for (key, value) in &table {
        let line = keys
            .iter()
            .find(|(k, _)| k == key)
            .map_or(0, |(_, line)| *line);
        let at = |msg: String| format!("{file}:{line}: {key}: {msg}");
        let arg = cmd
            .get_arguments()
            .find(|a| is_config_key(a) && a.get_long() == Some(key.as_str()))
            .ok_or_else(|| at("unknown key (the keys are the flags of `wsrelay serve`)".into()))?;
        let values = values_of(arg, value).map_err(at)?;
        for v in &values {
            check_value(arg, v).map_err(at)?;
        }
        let source = matches.value_source(arg.get_id().as_str());
        if matches!(
            source,
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue; // Flags and environment win over the file.
        }
        flags.extend(
            values
                .iter()
                .map(|v| OsString::from(format!("--{key}={v}"))),
        );
    }
    Ok(flags)
}

fn read_bounded(path: &Path) -> Result<String, String> {
    let file = path.display();
    let len = std::fs::metadata(path)
        .map_err(|e| format!("{file}: {e}"))?
        .len();
    if len > FILE_BYTES_MAX {
        return Err(format!("{file}: larger than 1 MiB"));
    }
    std::fs::read_to_string(path).map_err(|e| format!("{file}: {e}"))
}

/// Every top-level key with its line (1-based). Sections are refused: all keys are top-level.
fn key_lines(text: &str) -> Result<Vec<(String, usize)>, String> {
    let table = toml::de::DeTable::parse(text).map_err(|e| e.to_string())?;
    let line_of = |offset: usize| 1 + text[..offset.min(text.len())].matches('\n').count();
    let mut keys = Vec::new();
    for (key, value) in table.get_ref() {
        let line = line_of(key.span().start);
        if value.get_ref().as_table().is_some() {
            return Err(format!(
                "line {line}: [{}]: sections are not used; put every key at the top level",
                key.get_ref()
            ));
        }
        keys.push((key.get_ref().to_string(), line));
    }
    Ok(keys)
}

/// The flag values a TOML value stands for, checked against the flag's kind.
fn values_of(arg: &Arg, value: &toml::Value) -> Result<Vec<String>, String> {
    let scalar = |v: &toml::Value| match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        other => Err(format!(
            "expected a string or a number, found {}",
            other.type_str()
        )),
    };
    match (arg.get_action(), value) {
        (_, toml::Value::Boolean(b)) if is_switch(arg) => Ok(vec![b.to_string()]),
        (_, other) if is_switch(arg) => Err(format!(
            "expected true or false, found {}",
            other.type_str()
        )),
        (ArgAction::Append, toml::Value::Array(items)) => items.iter().map(scalar).collect(),
        (ArgAction::Append, one) => scalar(one).map(|v| vec![v]),
        (_, toml::Value::Array(_)) => Err("expected one value, found an array".into()),
        (_, one) => scalar(one).map(|v| vec![v]),
    }
}

/// Runs the flag's own value parser on `value` (through a one-flag command: clap does not
/// expose the parser alone), so the error is the file's, with its line.
fn check_value(arg: &Arg, value: &str) -> Result<(), String> {
    let Some(long) = arg.get_long() else {
        return Ok(());
    };
    if is_switch(arg) {
        return Ok(());
    }
    let probe = Command::new("wsrelay").arg(arg.clone().env(None::<&str>));
    probe
        .try_get_matches_from(["wsrelay", &format!("--{long}={value}")])
        .map(|_| ())
        .map_err(|e| first_line(&e.to_string()))
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    line.trim_start_matches("error: ").to_string()
}

/// The effective configuration as TOML, each value with where it came from (`config check`:
/// there are no flags then, so a value from the command line is a value from the file).
pub fn effective(cmd: &Command, matches: &ArgMatches) -> String {
    let mut out = String::from(
        "# wsrelay: effective configuration (flags > environment > file > defaults)\n",
    );
    for arg in cmd.get_arguments().filter(|a| is_config_key(a)) {
        let (Some(key), id) = (arg.get_long(), arg.get_id().as_str()) else {
            continue;
        };
        let source = match matches.value_source(id) {
            Some(ValueSource::CommandLine) => "file",
            Some(ValueSource::EnvVariable) => "environment",
            Some(ValueSource::DefaultValue) => "default",
            _ => "",
        };
        let raw: Vec<String> = matches
            .get_raw(id)
            .map(|vs| vs.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let value = match arg.get_action() {
            _ if is_switch(arg) => matches.get_flag(id).to_string(),
            _ if raw.is_empty() => {
                let _ = writeln!(out, "# {key} is not set");
                continue;
            }
            _ if SECRET_KEYS.contains(&key) => "\"<redacted>\"".into(),
            ArgAction::Append => format!(
                "[{}]",
                raw.iter()
                    .map(|v| toml_scalar(v))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => raw.first().map(|v| toml_scalar(v)).unwrap_or_default(),
        };
        let _ = writeln!(out, "{key} = {value}  # {source}");
    }
    out
}

/// A complete configuration file with every key, its help and its default (`config default`).
pub fn default_file(cmd: &Command) -> String {
    let mut out = String::from(
        "# wsrelay configuration file: every flag of `wsrelay serve`, same names.\n\
         # Use it with `wsrelay --config FILE` (or WS_CONFIG=FILE). Flags and environment\n\
         # variables override it. Keys left commented out keep their built-in default.\n",
    );
    for arg in cmd.get_arguments().filter(|a| is_config_key(a)) {
        let Some(key) = arg.get_long() else {
            continue;
        };
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        let _ = write!(out, "\n# {help}\n");
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let line = match (arg.get_action(), defaults.first()) {
            _ if is_switch(arg) => format!("{key} = false"),
            (ArgAction::Append, _) => format!("# {key} = []"),
            (_, Some(d)) => format!("{key} = {}", toml_scalar(d)),
            (_, None) => format!("# {key} = (not set)"),
        };
        let _ = writeln!(out, "{line}");
    }
    out
}

/// A flag value as a TOML scalar: numbers bare, anything else a quoted string.
fn toml_scalar(v: &str) -> String {
    if v.parse::<i64>().is_ok() || v.parse::<u64>().is_ok() {
        return v.to_string();
    }
    toml::Value::String(v.to_string()).to_string()
}
