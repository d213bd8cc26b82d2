//! Replays the fuzz corpus as ordinary tests: every file under `tests/fuzz_corpus/<target>/`
//! (hand-made `seed_*` inputs from `fuzz/make_seeds.py`, `cmin_*` inputs kept from a
//! minimized fuzz corpus, and `found_*` inputs that made a fuzz run fail) goes through the
//! same checks as the libFuzzer target of that name, which are
//! included from `fuzz/checks.rs`. So `cargo test` keeps every past finding fixed without
//! nightly features or libFuzzer. See docs/FUZZING.md.

#[path = "../fuzz/checks.rs"]
mod checks;
#[path = "../fuzz/session_checks.rs"]
mod session_checks;

use std::path::{Path, PathBuf};

use wsrelay::proto::Role;

/// The corpus files of `target`, sorted so failures name the same file on every run.
fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_corpus")
        .join(target);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "corpus {} is empty", dir.display());
    paths
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).expect("read corpus file");
            (path, bytes)
        })
        .collect()
}

/// Runs `check` on every corpus file of `target`; a panic names the file.
fn replay(target: &str, check: impl Fn(&[u8])) {
    for (path, bytes) in corpus(target) {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&bytes)));
        if let Err(panic) = outcome {
            eprintln!("corpus file {} failed", path.display());
            std::panic::resume_unwind(panic);
        }
    }
}

#[test]
fn handshake_corpus_holds_its_properties() {
    replay("handshake", checks::check_handshake);
}

#[test]
fn decoder_server_corpus_holds_its_properties() {
    replay("decoder_server", |data| {
        checks::check_decoder(Role::Server, data)
    });
}

#[test]
fn decoder_client_corpus_holds_its_properties() {
    replay("decoder_client", |data| {
        checks::check_decoder(Role::Client, data)
    });
}

#[test]
fn command_json_corpus_holds_its_properties() {
    replay("command_json", checks::check_command_json);
}

#[test]
fn command_binary_corpus_holds_its_properties() {
    replay("command_binary", checks::check_command_binary);
}

#[test]
fn proxy_header_corpus_holds_its_properties() {
    replay("proxy_header", checks::check_proxy_header);
}

/// The hand-made seeds of `target` (files named `seed_*`).
fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    corpus(target)
        .into_iter()
        .filter(|(path, _)| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("seed_"))
        })
        .collect()
}

/// The checks are not vacuous: the seeds reach the accepting paths the oracles inspect.
#[test]
fn seeds_reach_the_accepting_paths() {
    use wsrelay::command::{decode_binary, Command, CommandDecoder};
    use wsrelay::proto::handshake::{parse_request_head, validate_upgrade};
    use wsrelay::proto::Decode;

    let request = &seeds("handshake")
        .into_iter()
        .find(|(p, _)| p.ends_with("seed_rfc6455_1_3_request"))
        .expect("seed present")
        .1;
    let Ok(Decode::Complete(head, _)) = parse_request_head(request) else {
        panic!("the RFC request parses");
    };
    assert_eq!(
        validate_upgrade(&head).expect("valid upgrade").path,
        "/chat"
    );

    let publishes = seeds("command_json")
        .iter()
        .filter(|(_, text)| {
            let mut decoder = CommandDecoder::new();
            matches!(decoder.decode(text, 128), Ok(Command::Publish { .. }))
        })
        .count();
    assert!(publishes >= 5, "only {publishes} publish seeds decode");
    let binary_ok = seeds("command_binary")
        .iter()
        .filter(|(_, msg)| decode_binary(msg, 128).is_ok())
        .count();
    assert_eq!(binary_ok, 2);

    use wsrelay::proto::proxy_header::parse as parse_proxy_header;
    let proxy_ok = seeds("proxy_header")
        .iter()
        .filter(|(_, data)| matches!(parse_proxy_header(data), Ok(Decode::Complete(..))))
        .count();
    assert_eq!(proxy_ok, 9);
}

/// The split-equivalence oracle compares real events: the RFC 6455 §5.7 masked "Hello" split
/// byte by byte decodes to the same single text event as the whole frame.
#[test]
fn decoder_oracle_sees_events() {
    let limits = wsrelay::proto::DecoderLimits {
        message_bytes_max: 64,
    };
    let hello = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    let whole = checks::decode_chunked(Role::Server, limits, &hello, &[]);
    let bytewise = checks::decode_chunked(Role::Server, limits, &hello, &[1]);
    assert_eq!(
        whole,
        (vec![checks::OwnedEvent::Text(b"Hello".to_vec())], None)
    );
    assert_eq!(bytewise, whole);
}

#[test]
fn session_corpus_holds_its_properties() {
    replay("session", session_checks::check_session);
}
