//! The configuration file, seen through the real binary: `--config FILE` below flags and
//! environment and above defaults; `config check` and `config default`; errors that name the
//! file, the line and the key, with exit status 2.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// A file in this test binary's scratch directory (removed with the target directory).
fn write(name: &str, text: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("config_file");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

fn wsrelay(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wsrelay"));
    cmd.args(args).env_remove("WS_PORT").env_remove("WS_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("binary runs")
}

/// Starts the relay, returns its start-up line, stops it (by its PID).
fn start_line(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wsrelay"));
    cmd.args(args)
        .env_remove("WS_PORT")
        .env_remove("WS_CONFIG")
        .env_remove("WS_HEARTBEAT_INTERVAL")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("binary runs");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    let _ = stderr.read_line(&mut line);
    let _ = child.kill();
    let _ = child.wait();
    line
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn flags_beat_environment_beat_file_beat_defaults() {
    // One key set in all three places, its effective value printed in the start-up line.
    let file = write(
        "precedence.toml",
        "heartbeat-interval = 1000\nmax-message-size = 2048\n",
    );
    let f = file.to_str().expect("utf-8 path");
    let local = ["--config", f, "--bind", "127.0.0.1", "--port", "0"];
    let env = [("WS_HEARTBEAT_INTERVAL", "2000")];
    let all_three = start_line(
        &[&local[..], &["--heartbeat-interval", "3000"][..]].concat(),
        &env,
    );
    assert!(
        all_three.contains("heartbeat 3000 ms"),
        "flag over env: {all_three}"
    );
    let env_and_file = start_line(&local, &env);
    assert!(
        env_and_file.contains("heartbeat 2000 ms"),
        "env over file: {env_and_file}"
    );
    let file_only = start_line(&local, &[]);
    assert!(
        file_only.contains("heartbeat 1000 ms"),
        "file over default: {file_only}"
    );
    assert!(file_only.contains("max message 2048 B"), "{file_only}");
    let defaults = start_line(&local[2..], &[]);
    assert!(
        defaults.contains("heartbeat 30000 ms") && defaults.contains("max message 1048576 B"),
        "defaults: {defaults}"
    );
    let env_file = start_line(&local[2..], &[("WS_CONFIG", f)]);
    assert!(
        env_file.contains("heartbeat 1000 ms"),
        "WS_CONFIG: {env_file}"
    );
}

#[test]
fn flags_before_serve_are_a_usage_error_and_serve_takes_its_own() {
    let file = write("serve.toml", "heartbeat-interval = 1000\n");
    let f = file.to_str().expect("utf-8 path");
    // Flags written before `serve` used to be dropped silently (the file with them).
    let mixed = wsrelay(&["--config", f, "serve", "--port", "0"], &[]);
    let stderr = text(&mixed.stderr);
    assert_eq!(mixed.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("the subcommand 'serve' cannot be used with '--config"),
        "{stderr}"
    );
    let after = start_line(
        &["serve", "--config", f, "--bind", "127.0.0.1", "--port", "0"],
        &[],
    );
    assert!(after.contains("heartbeat 1000 ms"), "{after}");
    let by_env = start_line(
        &["serve", "--bind", "127.0.0.1", "--port", "0"],
        &[("WS_CONFIG", f)],
    );
    assert!(by_env.contains("heartbeat 1000 ms"), "{by_env}");
}

#[test]
fn config_check_prints_the_effective_configuration_with_sources() {
    let file = write(
        "check.toml",
        "# comment\nport = 9300\nallowed-origin = [\"https://a.example\", \"https://b.example\"]\n\
         echo = true\nauth-hs256-secret = \"0123456789abcdef0123456789abcdef\"\n",
    );
    let f = file.to_str().expect("utf-8 path");
    let out = wsrelay(&["config", "check", f], &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for line in [
        "port = 9300  # file",
        "allowed-origin = [\"https://a.example\", \"https://b.example\"]  # file",
        "echo = true  # file",
        "auth-hs256-secret = \"<redacted>\"  # file",
        "max-message-size = 1048576  # default",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "missing {line:?} in\n{stdout}"
        );
    }
    assert!(!stdout.contains("0123456789abcdef"), "secret printed");
    let env = wsrelay(&["config", "check", f], &[("WS_PORT", "9400")]);
    assert!(text(&env.stdout)
        .lines()
        .any(|l| l == "port = 9400  # environment"));
}

#[test]
fn errors_name_the_file_the_line_and_the_key_and_exit_2() {
    let cases = [
        (
            "unknown.toml",
            "port = 9300\n\nmax-mesage-size = 5\n",
            ":3: max-mesage-size: unknown key",
        ),
        (
            "type.toml",
            "echo = 1\n",
            ":1: echo: expected true or false, found integer",
        ),
        (
            "value.toml",
            "\nport = \"abc\"\n",
            ":2: port: invalid value 'abc'",
        ),
        (
            "array.toml",
            "port = [1, 2]\n",
            ":1: port: expected one value, found an array",
        ),
        (
            "section.toml",
            "port = 1\n[relay]\necho = true\n",
            "line 2: [relay]: sections are not used",
        ),
        ("syntax.toml", "port = \n", "syntax.toml: "),
        (
            "config.toml",
            "config = \"other.toml\"\n",
            ":1: config: unknown key",
        ),
    ];
    for (name, body, expected) in cases {
        let file = write(name, body);
        let f = file.to_str().expect("utf-8 path");
        for args in [
            vec!["config", "check", f],
            vec!["--config", f, "--port", "0"],
        ] {
            let out = wsrelay(&args, &[]);
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{name} {args:?}: {stderr}");
            assert!(stderr.contains(expected), "{name}: {stderr}");
        }
    }
}

#[test]
fn an_invalid_combination_in_a_file_is_refused_by_check() {
    let file = write("combo.toml", "max-message-size = 67108864\n");
    let out = wsrelay(
        &["config", "check", file.to_str().expect("utf-8 path")],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--max-queued-bytes to at least"));
}

#[test]
fn the_default_file_is_complete_and_checks_clean() {
    let out = wsrelay(&["config", "default"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let default = text(&out.stdout);
    let help = text(&wsrelay(&["serve", "--help"], &[]).stdout);
    // Every flag of `serve` (but --config and --help) is a key of the default file.
    let flags: Vec<&str> = help
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("--"))
        .filter_map(|w| {
            w.split(|c: char| !c.is_ascii_alphanumeric() && c != '-')
                .next()
        })
        .filter(|w| !w.is_empty() && *w != "config" && *w != "help")
        .collect();
    assert!(flags.len() >= 40, "{flags:?}");
    for flag in flags {
        let keyed = default.lines().any(|l| {
            l.trim_start_matches("# ")
                .starts_with(&format!("{flag} = "))
        });
        assert!(keyed, "{flag} missing from the default file");
    }
    let file = write("default.toml", &default);
    let check = wsrelay(
        &["config", "check", file.to_str().expect("utf-8 path")],
        &[],
    );
    assert_eq!(check.status.code(), Some(0), "{}", text(&check.stderr));
}
