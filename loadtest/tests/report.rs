//! The HTML report renders in headless Chromium: a short `echo` run of the real binary writes
//! `--report` and `--json`; `report-check/check.js` (playwright-core driving the system's
//! Chromium, never a downloaded one) checks that every chart is drawn and that the summary's
//! figures equal the JSON, and saves a screenshot under the target directory.
//!
//! Fails when node or Chromium is missing, unless `WSRELAY_SKIP_BROWSER=1`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn skip_browser() -> bool {
    std::env::var("WSRELAY_SKIP_BROWSER").is_ok_and(|v| v == "1")
}

fn check_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("report-check")
}

/// Installs the checker's locked dependencies when they are missing.
fn npm_ci(dir: &Path) {
    if dir.join("node_modules/playwright-core").is_dir() {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .current_dir(dir)
        .status()
        .expect("npm runs (install nodejs and npm, or set WSRELAY_SKIP_BROWSER=1)");
    assert!(status.success(), "npm ci failed in {}", dir.display());
}

/// Runs a short `echo` (20 clients, 2,000 msg/s, 2.5 s, threshold `loss == 0`) that writes
/// its HTML report to `html`; it must succeed. Returns its JSON report (stdout).
fn run_echo_with_html_report(html: &Path) -> Vec<u8> {
    let run = Command::new(env!("CARGO_BIN_EXE_wsrelay-swarm"))
        .args([
            "echo",
            "--connections",
            "20",
            "--rate",
            "2000",
            "--warmup",
            "0s",
            "--duration",
            "2500ms",
            "--threshold",
            "loss == 0",
            "--json",
            "--report",
        ])
        .arg(html)
        .output()
        .expect("the swarm runs");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    run.stdout
}

#[test]
fn html_report_renders_in_headless_chromium() {
    if skip_browser() {
        eprintln!("WSRELAY_SKIP_BROWSER=1: the HTML report is not rendered");
        return;
    }
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "no Chromium at {chromium}: apt-get install -y chromium, or set WSRELAY_SKIP_BROWSER=1"
    );
    let dir = check_dir();
    npm_ci(&dir);

    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-check");
    std::fs::create_dir_all(&out_dir).expect("target tmp dir");
    let html = out_dir.join("echo-report.html");
    let json_path = out_dir.join("echo-report.json");
    let screenshot = out_dir.join("echo-report.png");
    let _ = std::fs::remove_file(&screenshot);

    let stdout = run_echo_with_html_report(&html);
    std::fs::write(&json_path, &stdout).expect("json written");
    let json: serde_json::Value = serde_json::from_slice(&stdout).expect("JSON report");
    assert_eq!(json["loss"], 0);
    assert_eq!(json["thresholds_pass"], true);

    let check = Command::new("node")
        .arg(dir.join("check.js"))
        .args([&html, &json_path, &screenshot])
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node runs (install nodejs, or set WSRELAY_SKIP_BROWSER=1)");
    assert!(
        check.status.success(),
        "report check failed:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        screenshot.is_file(),
        "no screenshot at {}",
        screenshot.display()
    );
    println!("screenshot: {}", screenshot.display());
}
