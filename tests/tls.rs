//! `wss://` on the relay port (`--tls-cert`, `--tls-key`, `--tls-client-ca`), over real
//! sockets with certificates made here (`rcgen`): a rustls + tungstenite client subscribes and
//! receives; `/metrics` answers over TLS; plain text to the TLS port gets a plain-text 400; a
//! bad client hello gets an alert; mTLS with, without, and with an expired client certificate;
//! SIGHUP swaps the certificate for new connections while open ones stay (the real binary).
//! Every failure is counted and leaves the other connections alone.

mod common;

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::relay_process::RelayProcess;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};
use wsrelay::tls::{TlsFiles, TlsServer};
use wsrelay::{Config, ServerHandle};

type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// A CA and what it signed, as PEM files in a scratch directory.
struct Pki {
    dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, PEM.
struct Issued {
    cert_pem: String,
    key_pem: String,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("tls")
            .join(name);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("wsrelay test CA {name}"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let ca = CertifiedIssuer::self_signed(params, key).expect("CA");
        Pki { dir, ca }
    }

    fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }

    /// A certificate for `name` (a DNS name or an address), valid now, or expired in 2020.
    fn issue(&self, name: &str, expired: bool) -> Issued {
        let mut params = CertificateParams::new(vec![name.to_string()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        if expired {
            params.not_before = rcgen::date_time_ymd(2019, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        }
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca).expect("signed");
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    fn write(&self, file: &str, text: &str) -> PathBuf {
        let path = self.dir.join(file);
        std::fs::write(&path, text).expect("write PEM");
        path
    }

    /// Server files for `localhost`; with `client_ca`, client certificates are required.
    fn server_files(&self, client_ca: bool) -> TlsFiles {
        let server = self.issue("localhost", false);
        TlsFiles {
            cert: self.write("server.crt", &server.cert_pem),
            key: self.write("server.key", &server.key_pem),
            client_ca: client_ca.then(|| self.write("ca.crt", &self.ca_pem())),
        }
    }
}

fn relay_with(files: TlsFiles) -> ServerHandle {
    let tls = TlsServer::load(files).expect("TLS files load");
    common::start(Config {
        tls: Some(Arc::new(tls)),
        ..Config::loopback_for_tests(2)
    })
}

fn client_config(ca: CertificateDer<'static>, identity: Option<&Issued>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca).expect("CA root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(id) => {
            let chain = vec![CertificateDer::from_pem_slice(id.cert_pem.as_bytes()).expect("cert")];
            let key = PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes()).expect("key");
            builder.with_client_auth_cert(chain, key).expect("identity")
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// TCP, then the TLS handshake to its end (an error if the server refused it).
fn tls_connect(addr: SocketAddr, config: Arc<ClientConfig>) -> std::io::Result<TlsStream> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(common::READ_TIMEOUT))?;
    let name = ServerName::try_from("localhost").expect("name");
    let conn = ClientConnection::new(config, name).expect("client session");
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

fn wss(addr: SocketAddr, config: Arc<ClientConfig>) -> WebSocket<TlsStream> {
    let stream = tls_connect(addr, config).expect("TLS handshake");
    let (mut ws, response) =
        tungstenite::client::client("wss://localhost/", stream).expect("upgrade");
    assert_eq!(response.status(), 101);
    assert_eq!(read_json(&mut ws)["type"], "connected");
    ws
}

fn read_json(ws: &mut WebSocket<TlsStream>) -> Value {
    loop {
        match ws.read().expect("read a message") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("JSON"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

fn send(ws: &mut WebSocket<TlsStream>, v: Value) {
    ws.send(Message::text(v.to_string())).expect("send");
}

fn subscribe(ws: &mut WebSocket<TlsStream>, channel: &str) {
    send(ws, json!({"type": "subscribe", "channel": channel}));
    assert_eq!(read_json(ws)["type"], "subscribed");
}

/// A publish from one wss client reaches another, with the exact content.
fn assert_relays(publisher: &mut WebSocket<TlsStream>, subscriber: &mut WebSocket<TlsStream>) {
    let content = json!({"px": 101.25, "qty": 3});
    send(
        publisher,
        json!({"type": "message", "channel": "ticks", "content": content}),
    );
    let got = read_json(subscriber);
    assert_eq!(got["type"], "message", "{got}");
    assert_eq!(got["channel"], "ticks");
    assert_eq!(got["content"], content);
}

/// GET `path` over TLS (no client certificate unless `config` has one).
fn https_get(addr: SocketAddr, config: Arc<ClientConfig>, path: &str) -> (String, String) {
    let mut stream = tls_connect(addr, config).expect("TLS handshake");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("request");
    let mut all = Vec::new();
    // The relay ends with close_notify: a clean end of stream, not an error.
    stream
        .read_to_end(&mut all)
        .expect("response to close_notify");
    let text = String::from_utf8(all).expect("utf-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    (head.lines().next().unwrap_or("").to_string(), body.into())
}

/// Polls `/metrics` over TLS until `series` (exact line) appears.
fn wait_for_series(addr: SocketAddr, config: &Arc<ClientConfig>, series: &str) {
    for _ in 0..300 {
        let (_, body) = https_get(addr, config.clone(), "/metrics");
        if body.lines().any(|l| l == series) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("never saw {series}");
}

#[test]
fn a_wss_client_subscribes_and_receives_over_tls_1_3_and_1_2() {
    let pki = Pki::new("pubsub");
    // Metrics on their own plain port here: polling them over TLS would count handshakes.
    let tls = TlsServer::load(pki.server_files(false)).expect("TLS files load");
    let server = common::start(Config {
        tls: Some(Arc::new(tls)),
        metrics_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..Config::loopback_for_tests(2)
    });
    let addr = server.local_addr();
    let metrics_addr = server.metrics_addr().expect("metrics listener");
    let config = client_config(pki.ca_der(), None);
    let mut subscriber = wss(addr, config.clone());
    assert_eq!(
        subscriber.get_ref().conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(
        subscriber.get_ref().conn.alpn_protocol(),
        Some(&b"http/1.1"[..])
    );
    subscribe(&mut subscriber, "ticks");

    // A TLS 1.2-only client: the relay still speaks it.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca_der()).expect("root");
    let tls12 = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("TLS 1.2")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut publisher = wss(addr, Arc::new(tls12));
    assert_eq!(
        publisher.get_ref().conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert_relays(&mut publisher, &mut subscriber);

    // A large message crosses many TLS records whole.
    let big = "x".repeat(200_000);
    send(
        &mut publisher,
        json!({"type": "message", "channel": "ticks", "content": big}),
    );
    assert_eq!(read_json(&mut subscriber)["content"], big);

    let series = "wsrelay_tls_handshakes_total{result=\"ok\"} 2";
    for _ in 0..300 {
        let (_, body) = common::http_get(metrics_addr, "/metrics");
        if body.lines().any(|l| l == series) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("never saw {series}");
}

#[test]
fn plain_text_to_the_tls_port_gets_a_plain_400_and_others_go_on() {
    let pki = Pki::new("plain");
    let server = relay_with(pki.server_files(false));
    let addr = server.local_addr();
    let config = client_config(pki.ca_der(), None);
    let mut subscriber = wss(addr, config.clone());
    subscribe(&mut subscriber, "ticks");

    let mut raw = common::Raw::connect(addr);
    raw.send(common::upgrade_request("/").as_bytes());
    let answer = raw.read_to_end();
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    assert!(
        answer.ends_with("\r\n\r\nthis port speaks TLS: use wss:// or https://\n"),
        "{answer}"
    );

    let mut publisher = wss(addr, config.clone());
    assert_relays(&mut publisher, &mut subscriber);
    wait_for_series(
        addr,
        &config,
        "wsrelay_tls_handshakes_total{result=\"not_tls\"} 1",
    );
    let (_, metrics) = https_get(addr, config.clone(), "/metrics");
    assert!(metrics.contains("wsrelay_handshakes_rejected_total{status=\"400\"} 1"));
    // The other HTTP endpoints answer over TLS too.
    let (status, body) = https_get(addr, config.clone(), "/healthz");
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("HTTP/1.1 200 OK", "ok\n")
    );
    let (status, body) = https_get(addr, config, "/stats");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.starts_with('{'), "{body}");
}

#[test]
fn a_malformed_client_hello_gets_an_alert_and_is_counted() {
    let pki = Pki::new("hello");
    let server = relay_with(pki.server_files(false));
    let addr = server.local_addr();
    let config = client_config(pki.ca_der(), None);
    let mut subscriber = wss(addr, config.clone());
    subscribe(&mut subscriber, "ticks");

    // A handshake record whose body is not a ClientHello (type 0x42, 3 bytes of junk).
    let mut raw = common::Raw::connect(addr);
    raw.send(&[
        0x16, 0x03, 0x01, 0x00, 0x07, 0x42, 0x00, 0x00, 0x03, 1, 2, 3,
    ]);
    let mut answer = Vec::new();
    let mut stream = raw.stream.try_clone().expect("clone");
    let _ = stream.read_to_end(&mut answer);
    // One alert record: content type 21, TLS 1.2 record version, 2 bytes, level fatal (2).
    assert_eq!(
        answer.get(..6),
        Some(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02][..])
    );

    let mut publisher = wss(addr, config.clone());
    assert_relays(&mut publisher, &mut subscriber);
    wait_for_series(
        addr,
        &config,
        "wsrelay_tls_handshakes_total{result=\"failed\"} 1",
    );
    wait_for_series(
        addr,
        &config,
        "wsrelay_connections_closed_total{reason=\"tls\"} 1",
    );
}

/// mTLS: the client's first read after the handshake sees the server's alert when its
/// certificate was refused (TLS 1.3 clients finish before the server has checked it).
fn refused_after_handshake(addr: SocketAddr, config: Arc<ClientConfig>) -> String {
    let mut stream = match tls_connect(addr, config) {
        Ok(s) => s,
        Err(e) => return e.to_string(),
    };
    let request = common::upgrade_request("/");
    let _ = stream.write_all(request.as_bytes());
    let mut buf = [0u8; 512];
    match stream.read(&mut buf) {
        Ok(n) => panic!("expected an alert, got {n} bytes"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn mtls_requires_a_valid_client_certificate() {
    let pki = Pki::new("mtls");
    let server = relay_with(pki.server_files(true));
    let addr = server.local_addr();
    let alice = pki.issue("alice.example", false);
    let with_cert = client_config(pki.ca_der(), Some(&alice));
    let mut subscriber = wss(addr, with_cert.clone());
    subscribe(&mut subscriber, "ticks");

    let without = refused_after_handshake(addr, client_config(pki.ca_der(), None));
    assert!(without.contains("CertificateRequired"), "{without}");

    let stale = pki.issue("bob.example", true);
    let expired = refused_after_handshake(addr, client_config(pki.ca_der(), Some(&stale)));
    assert!(expired.contains("CertificateExpired"), "{expired}");

    let other_pki = Pki::new("mtls-other");
    let mallory = other_pki.issue("mallory.example", false);
    let untrusted = refused_after_handshake(addr, client_config(pki.ca_der(), Some(&mallory)));
    assert!(untrusted.contains("UnknownCA"), "{untrusted}");

    let mut publisher = wss(addr, with_cert.clone());
    assert_relays(&mut publisher, &mut subscriber);
    wait_for_series(
        addr,
        &with_cert,
        "wsrelay_tls_handshakes_total{result=\"client_certificate\"} 3",
    );
}

#[test]
fn a_missing_or_bad_file_is_a_clear_error() {
    let pki = Pki::new("files");
    let files = pki.server_files(false);
    let no_key = TlsServer::load(TlsFiles {
        key: pki.write("empty.key", ""),
        ..files.clone()
    });
    assert_eq!(
        no_key.expect_err("no key").to_string(),
        format!(
            "{}: no PEM private key found (PKCS#8, PKCS#1 or SEC1)",
            pki.dir.join("empty.key").display()
        )
    );
    let other = pki.issue("localhost", false);
    let mismatch = TlsServer::load(TlsFiles {
        key: pki.write("other.key", &other.key_pem),
        ..files.clone()
    });
    assert!(mismatch.is_err(), "a key that is not the certificate's");
    let missing = TlsServer::load(TlsFiles {
        cert: pki.dir.join("absent.crt"),
        ..files.clone()
    });
    assert!(missing
        .expect_err("missing")
        .to_string()
        .starts_with("reading "));
    // The PROXY header would come before the ClientHello: refused at start.
    let both = wsrelay::Server::start(Config {
        tls: Some(Arc::new(TlsServer::load(files).expect("load"))),
        proxy_protocol: true,
        ..Config::loopback_for_tests(1)
    });
    let refusal = both.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        refusal.contains("tls-cert with proxy-protocol is not supported"),
        "{refusal}"
    );
}

/// The relay binary serving TLS with `--tls-cert`/`--tls-key`.
struct Relay(RelayProcess);

impl std::ops::Deref for Relay {
    type Target = RelayProcess;
    fn deref(&self) -> &RelayProcess {
        &self.0
    }
}

impl Relay {
    fn start(cert: &Path, key: &Path) -> Relay {
        let args = [OsStr::new("--tls-cert"), cert.as_os_str()];
        let key_args = [OsStr::new("--tls-key"), key.as_os_str()];
        Relay(RelayProcess::start(args.into_iter().chain(key_args), "wss"))
    }

    /// Sends SIGHUP and waits until the reload is counted with `result` (`n` in all), reading
    /// `/metrics` over TLS.
    fn hup_and_wait(&self, config: &Arc<ClientConfig>, result: &str, n: u64) {
        self.sighup();
        let series = format!("wsrelay_config_reloads_total{{result=\"{result}\"}} {n}");
        wait_for_series(self.addr, config, &series);
    }
}

fn leaf_of(ws: &WebSocket<TlsStream>) -> CertificateDer<'static> {
    let certs = ws
        .get_ref()
        .conn
        .peer_certificates()
        .expect("server certificate");
    certs.first().expect("leaf").clone().into_owned()
}

#[test]
fn sighup_swaps_the_certificate_for_new_connections_and_keeps_open_ones() {
    let pki = Pki::new("reload");
    let first = pki.issue("localhost", false);
    let cert = pki.write("live.crt", &first.cert_pem);
    let key = pki.write("live.key", &first.key_pem);
    let relay = Relay::start(&cert, &key);
    let config = client_config(pki.ca_der(), None);
    let mut subscriber = wss(relay.addr, config.clone());
    subscribe(&mut subscriber, "ticks");
    let first_der = CertificateDer::from_pem_slice(first.cert_pem.as_bytes()).expect("der");
    assert_eq!(leaf_of(&subscriber), first_der);

    let second = pki.issue("localhost", false);
    pki.write("live.crt", &second.cert_pem);
    pki.write("live.key", &second.key_pem);
    relay.hup_and_wait(&config, "ok", 1);
    assert!(relay.logged("configuration reloaded; changed: [tls]"));
    let mut publisher = wss(relay.addr, config.clone());
    let second_der = CertificateDer::from_pem_slice(second.cert_pem.as_bytes()).expect("der");
    assert_eq!(
        leaf_of(&publisher),
        second_der,
        "new connections: new certificate"
    );
    assert_eq!(leaf_of(&subscriber), first_der);
    assert_relays(&mut publisher, &mut subscriber);

    // A bad key file: the reload is refused, the second certificate stays in force.
    pki.write(
        "live.key",
        "-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n",
    );
    relay.hup_and_wait(&config, "error", 1);
    assert!(relay.logged("configuration reload refused, nothing changed: tls: "));
    let mut third = wss(relay.addr, config);
    assert_eq!(leaf_of(&third), second_der);
    subscribe(&mut third, "ticks");
    assert_relays(&mut publisher, &mut subscriber);
    assert_eq!(read_json(&mut third)["type"], "message");
}

/// Waits for the first event `wanted` accepts; panics on a timeout.
fn wait_for(
    client: &mut wsrelay::client::Client,
    wanted: impl Fn(&wsrelay::client::Event) -> bool,
) -> wsrelay::client::Event {
    let mut seen = Vec::new();
    loop {
        match client.next_event(common::READ_TIMEOUT) {
            Some(event) if wanted(&event) => return event,
            Some(event) => seen.push(event),
            None => panic!("no matching event; saw {seen:?}"),
        }
    }
}

#[test]
fn the_client_library_speaks_wss_with_a_given_ca_and_refuses_an_unknown_one() {
    use wsrelay::client::{Client, Event, Options, StopReason, TlsTrust};
    let pki = Pki::new("library");
    let server = relay_with(pki.server_files(false));
    let url = format!("wss://localhost:{}/", server.local_addr().port());
    let trusting = || Options {
        tls: TlsTrust::CaPem(pki.ca_pem().into_bytes()),
        ..Options::default()
    };
    let mut subscriber = Client::connect(&url, trusting()).expect("client");
    subscriber.subscribe("ticks").expect("subscribe");
    wait_for(&mut subscriber, |e| matches!(e, Event::Subscribed { .. }));
    let mut publisher = Client::connect(&url, trusting()).expect("client");
    wait_for(&mut publisher, |e| matches!(e, Event::Connected { .. }));
    // Large enough to span several TLS records and socket writes.
    let content = format!("\"{}\"", "y".repeat(100_000));
    publisher.publish("ticks", &content).expect("publish");
    let got = wait_for(&mut subscriber, |e| matches!(e, Event::Message { .. }));
    assert!(
        matches!(got, Event::Message { ref channel, content: ref c, seq: 1, .. }
        if channel == "ticks" && *c == content)
    );

    // Another CA: the certificate is refused, the session gives up after its retries.
    let stranger = Pki::new("library-other");
    let options = Options {
        tls: TlsTrust::CaPem(stranger.ca_pem().into_bytes()),
        retries_max: 1,
        ..Options::default()
    };
    let mut refused = Client::connect(&url, options).expect("client");
    let stopped = wait_for(&mut refused, |e| matches!(e, Event::Stopped(_)));
    assert!(
        matches!(stopped, Event::Stopped(StopReason::RetriesExhausted { .. })),
        "{stopped:?}"
    );
}

#[test]
fn the_handshake_timeout_covers_an_unfinished_tls_handshake() {
    let pki = Pki::new("slow");
    let tls = TlsServer::load(pki.server_files(false)).expect("TLS files load");
    let server = common::start(Config {
        tls: Some(Arc::new(tls)),
        handshake_timeout: Duration::from_millis(200),
        ..Config::loopback_for_tests(1)
    });
    let addr = server.local_addr();
    // A record header announcing 100 bytes of ClientHello, then silence (slowloris over TLS).
    let mut raw = common::Raw::connect(addr);
    raw.send(&[0x16, 0x03, 0x01, 0x00, 0x64, 0x01]);
    let mut rest = Vec::new();
    let _ = raw.stream.read_to_end(&mut rest);
    assert!(rest.is_empty(), "dropped without an answer: {rest:?}");
    let config = client_config(pki.ca_der(), None);
    wait_for_series(
        addr,
        &config,
        "wsrelay_connections_closed_total{reason=\"handshake_timeout\"} 1",
    );
}
