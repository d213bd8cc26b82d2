//! The feature split stays honest: the client library (`--no-default-features --features
//! client`) depends on none of the server's or the binary's crates, and it compiles on its own.
//!
//! Runs the same `cargo` that runs this test, `--offline` (the client's crates are a subset of
//! what the default build has already fetched). `cargo check` uses its own target directory
//! under `CARGO_TARGET_TMPDIR`, so it never waits for the lock the outer `cargo test` holds.

use std::path::Path;
use std::process::{Command, Output};

/// Crates only the relay (`server`) or the binary (`cli`) may pull in, at any depth.
const SERVER_ONLY: &[&str] = &[
    "async-nats",
    "clap",
    "crossbeam-channel",
    "crossbeam-utils",
    "hdrhistogram",
    "hmac",
    "jsonwebtoken",
    "rsa",
    "serde_json",
    "sha2",
    "signal-hook",
    "slab",
    "socket2",
    "tracing",
    "tracing-subscriber",
    "tokio",
    "futures-util",
];

/// The client build's direct dependencies: the codec's plus `mio` (the driver), `indexmap`
/// (the session's channel positions), `rustls` and `rustls-native-certs` (`wss://`) and
/// `flate2` (permessage-deflate).
const CLIENT_DIRECT: &[&str] = &[
    "base64",
    "bytes",
    "flate2",
    "httparse",
    "indexmap",
    "itoa",
    "mio",
    "rustls",
    "rustls-native-certs",
    "sha1_smol",
    "simd-json",
    "simdutf8",
    "thiserror",
];

const CLIENT_ONLY: &[&str] = &[
    "-p",
    "wsrelay",
    "--no-default-features",
    "--features",
    "client",
];

fn cargo(args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .args(CLIENT_ONLY)
        .arg("--offline")
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo: {e}"));
    assert!(
        output.status.success(),
        "cargo {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Package names, one per `cargo tree --prefix none` line (`name vX.Y.Z [(...)]`), deduplicated.
fn tree_names(extra: &[&str]) -> Vec<String> {
    let mut args = vec!["tree", "-e", "normal", "--prefix", "none"];
    args.extend_from_slice(extra);
    let output = cargo(&args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut names: Vec<String> = stdout
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn client_dependency_tree_has_no_server_crate() {
    let names = tree_names(&[]);
    assert!(names.iter().any(|n| n == "wsrelay"), "{names:?}");
    let leaked: Vec<&String> = names
        .iter()
        .filter(|n| SERVER_ONLY.contains(&n.as_str()))
        .collect();
    assert_eq!(leaked, Vec::<&String>::new(), "whole tree: {names:?}");
}

#[test]
fn client_direct_dependencies_are_exactly_the_codec_and_driver() {
    let mut direct = tree_names(&["--depth", "1"]);
    direct.retain(|n| n != "wsrelay");
    assert_eq!(direct, CLIENT_DIRECT);
}

#[test]
fn client_library_compiles_alone() {
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("features-client");
    let target_dir = target_dir.to_string_lossy();
    cargo(&["check", "--lib", "--quiet", "--target-dir", &target_dir]);
}
