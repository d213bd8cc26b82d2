//! `wss://` in the scenarios for any server (`echo`, `script`): the swarm's clients go through
//! rustls like the relay scenarios' (`--tls-ca FILE` or `--tls-insecure`). The server is
//! wsrelay's `/echo` on 127.0.0.1:0 over TLS, with a CA and a certificate for 127.0.0.1 made
//! here (rcgen). Exact counts as in plain `ws://`; a certificate from another CA fails every
//! setup; `wss://` without a trust flag is refused before the run.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use loadtest::cli::{Action, Cli};
use loadtest::report::Report;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use wsrelay::tls::{TlsFiles, TlsServer};

/// A throwaway CA: its PEM file, and the server's certificate and key (for 127.0.0.1) it signed.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn make_pki(name: &str) -> Pki {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("swarm-tls")
        .join(name);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, format!("swarm test CA {name}"));
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &ca).expect("signed");
    let write = |file: &str, text: &str| {
        let path = dir.join(file);
        std::fs::write(&path, text).expect("write PEM");
        path
    };
    Pki {
        ca: write("ca.crt", &ca.pem()),
        cert: write("server.crt", &cert.pem()),
        key: write("server.key", &key.serialize_pem()),
    }
}

/// wsrelay serving `/echo` over TLS only.
fn tls_echo_relay(pki: &Pki) -> wsrelay::ServerHandle {
    let tls = TlsServer::load(TlsFiles {
        cert: pki.cert.clone(),
        key: pki.key.clone(),
        client_ca: None,
    })
    .expect("TLS files load");
    let mut config = wsrelay::Config::loopback_for_tests(1);
    config.echo_enabled = true;
    config.tls = Some(Arc::new(tls));
    wsrelay::Server::start(config).expect("relay starts")
}

fn run(argv: &[&str]) -> Report {
    let mut full = vec!["wsrelay-swarm"];
    full.extend_from_slice(argv);
    match Cli::parse_from(full).command.into_action() {
        Action::Echo(args) => args.run().expect("the run starts"),
        Action::Script(args) => args.run().expect("the run starts"),
        other => panic!("not echo or script: {other:?}"),
    }
}

/// 4 connections at 100 messages/s each for 300 ms over TLS, trusting the CA: exactly 120
/// stamped in the window, all back, nothing else.
#[test]
fn echo_over_wss_with_the_ca_loses_nothing() {
    let pki = make_pki("echo");
    let relay = tls_echo_relay(&pki);
    let url = format!("wss://{}/echo", relay.local_addr());
    let ca = pki.ca.to_str().expect("utf-8 path");
    let report = run(&[
        "echo",
        "--url",
        &url,
        "--tls-ca",
        ca,
        "--connections",
        "4",
        "--rate",
        "400",
        "--warmup",
        "0s",
        "--duration",
        "300ms",
    ]);
    let s = &report.stats;
    let text = report.to_text();
    assert_eq!(s.conns_ready, 4, "{text}");
    assert_eq!(s.sent_window, 4 * 30, "{text}");
    assert_eq!(s.received_window, s.sent_window, "{text}");
    assert_eq!(s.received_total, s.sent_total, "{text}");
    assert_eq!(report.loss(), 0, "{text}");
    assert_eq!((s.gap_messages, s.reordered), (0, 0), "{text}");
    assert!(s.errors.is_empty(), "{text}");
    assert!(text.contains("wss://"), "{text}");
}

/// A script over TLS with --tls-insecure (the certificate is not checked, the handshake is
/// real): the same exact counts.
#[test]
fn script_over_wss_insecure_loses_nothing() {
    let pki = make_pki("script");
    let relay = tls_echo_relay(&pki);
    let path = pki.ca.with_file_name("echo.toml");
    let scenario = format!(
        "warmup = \"0s\"\nduration = \"200ms\"\n[[group]]\nurl = \"wss://{}/echo\"\nclients = 3\n\
         [group.send]\nrate = 50\n",
        relay.local_addr()
    );
    std::fs::write(&path, scenario).expect("scenario");
    let report = run(&[
        "script",
        path.to_str().expect("utf-8 path"),
        "--tls-insecure",
    ]);
    let s = &report.stats;
    let text = report.to_text();
    assert_eq!(s.conns_ready, 3, "{text}");
    assert_eq!(s.sent_window, 3 * 10, "{text}");
    assert_eq!(s.received_total, s.sent_total, "{text}");
    assert_eq!(report.loss(), 0, "{text}");
    assert!(s.errors.is_empty(), "{text}");
}

/// The server's certificate is from another CA: every client fails its setup in the TLS
/// handshake (counted as `setup_tls`), none is ready, nothing is sent.
#[test]
fn a_certificate_from_another_ca_fails_every_setup() {
    let pki = make_pki("server");
    let other = make_pki("other");
    let relay = tls_echo_relay(&pki);
    let url = format!("wss://{}/echo", relay.local_addr());
    let ca = other.ca.to_str().expect("utf-8 path");
    let report = run(&[
        "echo",
        "--url",
        &url,
        "--tls-ca",
        ca,
        "--connections",
        "3",
        "--duration",
        "100ms",
        "--setup-timeout",
        "10s",
    ]);
    let s = &report.stats;
    let text = report.to_text();
    assert_eq!((s.conns_ready, s.conns_failed), (0, 3), "{text}");
    assert_eq!(s.errors.get("setup_tls"), Some(&3), "{text}");
    assert_eq!(s.sent_total, 0, "{text}");
}

/// `wss://` without --tls-ca or --tls-insecure: refused before the run (exit 2, the reason).
#[test]
fn wss_without_a_trust_flag_is_refused() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wsrelay-swarm"))
        .args([
            "echo",
            "--url",
            "wss://127.0.0.1:9/echo",
            "--duration",
            "1s",
        ])
        .output()
        .expect("the swarm runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("wss://127.0.0.1:9/echo: wss:// needs --tls-ca FILE"),
        "{stderr}"
    );
}
