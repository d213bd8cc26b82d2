//! `wsrelay --version` names the version and the git revision the binary was built from
//! (embedded by `build.rs`; `unknown` outside a git checkout).

use std::process::Command;

/// The revision of the source tree, as `build.rs` computes it.
fn tree_revision() -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

#[test]
fn version_prints_the_version_and_the_revision_of_this_tree() {
    let out = Command::new(env!("CARGO_BIN_EXE_wsrelay"))
        .arg("--version")
        .output()
        .expect("run wsrelay --version");
    assert!(out.status.success());
    let expected = format!(
        "wsrelay {} ({})\n",
        env!("CARGO_PKG_VERSION"),
        tree_revision()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    assert_eq!(wsrelay::GIT_REVISION, tree_revision());
}
