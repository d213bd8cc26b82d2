//! Build script: embeds the git revision of the source tree as `WSRELAY_GIT_REVISION`
//! (`git rev-parse --short HEAD`), shown by `wsrelay --version` and `/stats`. Without git or
//! without a repository (a source tarball) it is `unknown`: the build never fails for it. A
//! build without `.git` that knows its revision (deploy/Dockerfile) sets it in the
//! environment variable `WSRELAY_GIT_REVISION`, which wins. A revision is a commit hash in hex
//! (`git rev-parse --short HEAD` or the full hash): a given value that is not (a tag such as
//! `v1.2`) is ignored with a build warning, and git's answer or `unknown` is used instead.
//!
//! Reruns only when HEAD moves: the `HEAD` file of the git directory (in a worktree `.git` is
//! a file that points elsewhere, so the directory is asked from git) and the ref file HEAD
//! points to, plus `packed-refs` where refs may live after `git gc`.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

fn rerun_if_exists(path: &Path) {
    // A path that does not exist would make cargo rerun this script on every build.
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=WSRELAY_GIT_REVISION");
    let hex = |r: &String| !r.is_empty() && r.bytes().all(|b| b.is_ascii_hexdigit());
    let given = std::env::var("WSRELAY_GIT_REVISION").ok();
    if let Some(r) = given
        .as_ref()
        .filter(|r| !hex(r) && !r.is_empty() && *r != "unknown")
    {
        println!("cargo:warning=WSRELAY_GIT_REVISION={r:?} is not a hex commit hash: ignored");
    }
    let revision = given
        .filter(hex)
        .or_else(|| git(&["rev-parse", "--short", "HEAD"]).filter(hex))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=WSRELAY_GIT_REVISION={revision}");
    if let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        rerun_if_exists(&Path::new(&git_dir).join("HEAD"));
    }
    let common = git(&["rev-parse", "--git-common-dir"]);
    if let (Some(common), Some(reference)) = (common, git(&["symbolic-ref", "-q", "HEAD"])) {
        let common = Path::new(&common);
        rerun_if_exists(&common.join(&reference));
        rerun_if_exists(&common.join("packed-refs"));
    }
}
