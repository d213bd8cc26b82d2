//! The browser client (`clients/js`) and the status page, through the README's one test
//! command: the client's unit tests under Node's test runner, and end-to-end scripts that
//! drive Debian's Chromium (playwright-core, no browser download) against this build's relay
//! binary. `npm ci` runs first when `clients/js/node_modules` is missing.
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

/// `npm ci` (playwright-core only, from the npm registry) unless already installed.
fn ensure_node_modules() {
    if js_dir()
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
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

/// Runs `node ARGS` in `clients/js` with the relay binary's path and asserts exit status 0,
/// printing the script's output on failure (and its `screenshot:` lines always).
fn run_node(args: &[&str], browser: bool) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    require("node");
    let mut command = Command::new("node");
    command
        .args(args)
        .current_dir(js_dir())
        .env("WSRELAY_BIN", env!("CARGO_BIN_EXE_wsrelay"))
        .env("WSRELAY_ARTIFACTS", env!("CARGO_TARGET_TMPDIR"))
        .env("WSRELAY_VERSION", env!("CARGO_PKG_VERSION"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if browser {
        ensure_node_modules();
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
        Some(status) => panic!("node {args:?} failed ({status}):\n{stdout}\n{stderr}"),
        None => panic!("node {args:?} timed out after {SCRIPT_TIMEOUT:?}:\n{stdout}\n{stderr}"),
    }
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
