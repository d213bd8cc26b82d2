//! The browser client (`clients/js`) and the status page, through the README's one test
//! command: the client's type check (`npm run check`: TypeScript strict on the module and its
//! `.d.ts`), its unit tests under Node's test runner, a Node run against the relay binary, and
//! end-to-end scripts that drive Debian's Chromium (playwright-core, no browser download)
//! against this build's relay binary (one of them in cluster mode, with Debian's nats-server).
//! `npm ci` runs first when `clients/js/node_modules` does not match `package-lock.json`.
//!
//! Missing `node`, `npm` or `/usr/bin/chromium` fails these tests (`.ci/run` installs them);
//! `WSRELAY_SKIP_BROWSER=1` skips them explicitly. The scripts start every relay and browser
//! themselves and kill them by PID when they end; a script that hangs is stopped after
//! `SCRIPT_TIMEOUT` with SIGTERM (it then kills its children), SIGKILL 5 s later.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Set to `1` to skip (not fail) these tests on a machine without Node or Chromium.
const SKIP_ENV: &str = "WSRELAY_SKIP_BROWSER";
/// The browser the scripts drive (Debian's `chromium` package); `CHROMIUM` overrides.
const CHROMIUM_DEFAULT: &str = "/usr/bin/chromium";
/// Upper bound on one script, far above its usual run time (10-20 s).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);

/// One script at a time: they share `node_modules` (npm ci) and two CPU cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/js")
}

fn skip_requested() -> bool {
    let skip = std::env::var(SKIP_ENV).is_ok_and(|v| v == "1");
    if skip {
        eprintln!("{SKIP_ENV}=1: browser client tests skipped");
    }
    skip
}

/// Fails with a helpful message unless `program --version` runs.
fn require(program: &str) {
    let ok = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "`{program}` is needed by the browser client tests (apt-get install -y chromium nodejs npm, \
         as .ci/run does); set {SKIP_ENV}=1 to skip them"
    );
}

fn chromium_path() -> String {
    let path = std::env::var("CHROMIUM").unwrap_or_else(|_| CHROMIUM_DEFAULT.to_owned());
    assert!(
        Path::new(&path).exists(),
        "{path} is missing (apt-get install -y chromium); set {SKIP_ENV}=1 to skip"
    );
    path
}

/// The `packages` map of a lockfile, without the root entry (`""`); empty when unreadable.
fn locked_packages(path: &Path) -> serde_json::Map<String, serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let mut packages = match value.get_mut("packages").map(serde_json::Value::take) {
        Some(serde_json::Value::Object(packages)) => packages,
        _ => serde_json::Map::new(),
    };
    packages.remove("");
    packages
}

/// Whether `node_modules` holds what `package-lock.json` pins: npm's record of the installed
/// tree (`node_modules/.package-lock.json`) has the same entry for every package it lists,
/// lists every package that is not optional (optional ones are the other platforms' binaries
/// of esbuild and TypeScript), and nothing the lockfile does not.
fn node_modules_match_lockfile() -> bool {
    let wanted = locked_packages(&js_dir().join("package-lock.json"));
    let installed = locked_packages(&js_dir().join("node_modules/.package-lock.json"));
    let optional = |entry: &serde_json::Value| entry.get("optional") == Some(&true.into());
    !installed.is_empty()
        && installed
            .iter()
            .all(|(name, entry)| wanted.get(name) == Some(entry))
        && wanted
            .iter()
            .all(|(name, entry)| optional(entry) || installed.contains_key(name))
}

/// `npm ci` (dev dependencies only: playwright-core, typescript, esbuild, from the npm
/// registry) unless `node_modules` already matches the lockfile.
fn ensure_node_modules() {
    if node_modules_match_lockfile() {
        return;
    }
    require("npm");
    let output = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
        .current_dir(js_dir())
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .output()
        .expect("npm runs");
    assert!(
        output.status.success(),
        "npm ci failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Reads a child's pipe to the end on a thread (so a full pipe never blocks the child).
fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}

/// Waits for `child`; past the deadline, SIGTERM (by its PID), then SIGKILL.
fn wait_bounded(child: &mut Child) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    std::thread::sleep(Duration::from_secs(5));
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// What a script needs besides `node`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Needs {
    /// Node alone (the unit tests import nothing from `node_modules`).
    Node,
    /// The dev dependencies (`npm ci`): TypeScript, esbuild.
    Modules,
    /// The dev dependencies and Chromium.
    Browser,
}

/// Runs `program ARGS` (`node` or `npm`) in `clients/js` with the relay binary's path and
/// asserts exit status 0, printing the output on failure (and its `screenshot:` lines always).
fn run_in_js_dir(program: &str, args: &[&str], needs: Needs, env: &[(&str, &str)]) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    require("node");
    require(program);
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(js_dir())
        .env("WSRELAY_BIN", env!("CARGO_BIN_EXE_wsrelay"))
        .env("WSRELAY_ARTIFACTS", env!("CARGO_TARGET_TMPDIR"))
        .env("WSRELAY_VERSION", env!("CARGO_PKG_VERSION"))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if needs != Needs::Node {
        ensure_node_modules();
    }
    if needs == Needs::Browser {
        command.env("CHROMIUM", chromium_path());
    }
    let mut child = command.spawn().expect("node starts");
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = wait_bounded(&mut child);
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    for line in stdout.lines().filter(|l| l.contains("screenshot:")) {
        println!("{line}");
    }
    match status {
        Some(status) if status.success() => {}
        Some(status) => panic!("{program} {args:?} failed ({status}):\n{stdout}\n{stderr}"),
        None => {
            panic!("{program} {args:?} timed out after {SCRIPT_TIMEOUT:?}:\n{stdout}\n{stderr}")
        }
    }
}

/// Runs `node ARGS` in `clients/js` (see [`run_in_js_dir`]); `browser`: with Chromium.
fn run_node(args: &[&str], browser: bool) {
    let needs = if browser { Needs::Browser } else { Needs::Node };
    run_in_js_dir("node", args, needs, &[]);
}

/// TypeScript strict on `dist/client.js` (its JSDoc) and on a usage file against
/// `dist/client.d.ts`: a JSDoc or declaration that no longer matches the code fails here.
#[test]
fn js_client_types_pass_typescript_strict() {
    if skip_requested() {
        return;
    }
    run_in_js_dir("npm", &["run", "check"], Needs::Modules, &[]);
}

#[test]
fn js_client_unit_tests_pass_under_node() {
    if skip_requested() {
        return;
    }
    run_node(
        &[
            "--test",
            "test/unit/client.test.mjs",
            "test/unit/dts.test.mjs",
        ],
        false,
    );
}

#[test]
fn js_client_in_chromium_against_the_relay_binary() {
    if skip_requested() {
        return;
    }
    run_node(&["test/e2e/client.e2e.mjs"], true);
}

/// `(major, minor)` of `node --version` (`v20.20.2` → `(20, 20)`).
fn node_version() -> (u32, u32) {
    let output = Command::new("node")
        .arg("--version")
        .output()
        .expect("node runs");
    let text = String::from_utf8_lossy(&output.stdout);
    let mut parts = text.trim().trim_start_matches('v').split('.');
    let mut next = || parts.next().and_then(|p| p.parse().ok());
    match (next(), next()) {
        (Some(major), Some(minor)) => (major, minor),
        _ => panic!("unexpected `node --version`: {text:?}"),
    }
}

/// The client in Node against the relay binary: with the `ws` package as its `WebSocket`
/// option (Node 18-21), and with the runtime's own WebSocket where it has one (Node >= 22, or
/// 20.10+ with `--experimental-websocket`), which the script is then told to require.
#[test]
fn js_client_in_node_against_the_relay_binary() {
    if skip_requested() {
        return;
    }
    require("node");
    let (major, minor) = node_version();
    let flag_needed = major == 21 || (major == 20 && minor >= 10);
    let has_websocket = major >= 22 || flag_needed;
    let mut args = Vec::new();
    if flag_needed {
        args.push("--experimental-websocket");
    }
    args.push("test/e2e/node.e2e.mjs");
    let expect = if has_websocket { "1" } else { "0" };
    run_in_js_dir(
        "node",
        &args,
        Needs::Modules,
        &[("WSRELAY_EXPECT_RUNTIME_WEBSOCKET", expect)],
    );
}

/// Debian's nats-server (`NATS_SERVER_BIN` overrides; /usr/sbin is off a non-root PATH), or
/// `None` when it is missing and `WSRELAY_SKIP_NATS=1` says to skip (as tests/cluster.rs).
fn nats_server_bin() -> Option<String> {
    let bin = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "/usr/sbin/nats-server".into());
    if Path::new(&bin).exists() {
        return Some(bin);
    }
    if std::env::var("WSRELAY_SKIP_NATS").is_ok_and(|v| v == "1") {
        eprintln!("{bin} missing and WSRELAY_SKIP_NATS=1: cluster browser test skipped");
        return None;
    }
    panic!(
        "{bin} not found: apt-get install -y nats-server (as .ci/run does), set NATS_SERVER_BIN, \
         or set WSRELAY_SKIP_NATS=1 to skip"
    );
}

/// Cluster mode (one nats-server, two relays): the page's relay is SIGKILLed while publishes
/// go on through the other, then restarted on its port; the page recovers every seq once.
#[test]
fn js_client_in_chromium_recovers_with_no_loss_across_a_relay_restart_in_cluster_mode() {
    if skip_requested() {
        return;
    }
    let Some(nats) = nats_server_bin() else {
        return;
    };
    run_in_js_dir(
        "node",
        &["test/e2e/cluster.e2e.mjs"],
        Needs::Browser,
        &[("NATS_SERVER_BIN", &nats)],
    );
}

#[test]
fn status_page_in_chromium_shows_the_figures_of_stats() {
    if skip_requested() {
        return;
    }
    run_node(&["test/e2e/status.e2e.mjs"], true);
}

#[test]
fn market_primitives_in_chromium_snapshot_seam_binary_snapshot_and_throttle() {
    if skip_requested() {
        return;
    }
    run_node(&["test/e2e/market.e2e.mjs"], true);
}
