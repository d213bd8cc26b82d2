//! Reloading the configuration file on SIGHUP, against the real binary: origins and limits
//! change for new connections while open connections stay; the log level and per-channel
//! slow-consumer rules change live; a bad file changes nothing; both are logged and counted
//! in `wsrelay_config_reloads_total{result}`.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::relay_process::RelayProcess;
use common::{masked_frame, Raw};
use serde_json::json;

/// The relay binary started with `--config FILE`.
struct Relay(RelayProcess);

impl std::ops::Deref for Relay {
    type Target = RelayProcess;
    fn deref(&self) -> &RelayProcess {
        &self.0
    }
}

impl Relay {
    fn start(config: &std::path::Path) -> Relay {
        let config = config.to_str().expect("utf-8 path");
        Relay(RelayProcess::start(["--config", config], "ws"))
    }

    /// Sends SIGHUP and waits until the reload is counted with `result` (`n` in all).
    fn hup_and_wait(&self, result: &str, n: u64) {
        self.sighup();
        let series = format!("wsrelay_config_reloads_total{{result=\"{result}\"}} {n}");
        for _ in 0..500 {
            let (_, metrics) = common::http_get(self.addr, "/metrics");
            if metrics.lines().any(|l| l == series) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("reload never counted as {series}");
    }
}

fn config_file(name: &str, text: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("reload");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

/// Upgrades with an `Origin`; returns the status line and the client after `connected`.
fn connect(addr: SocketAddr, origin: &str) -> (String, Raw) {
    upgrade(Raw::connect(addr), origin)
}

/// As `connect`, from the loopback address `source` (127.0.0.0/8): the per-IP limit then
/// counts only this test's connections from `source`, not the `/metrics` polls of
/// `hup_and_wait` or refused upgrades, which the relay forgets only when it reaps them.
fn connect_from(addr: SocketAddr, source: [u8; 4], origin: &str) -> (String, Raw) {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let source = SocketAddr::from((source, 0));
    socket.bind(&source.into()).expect("bind a loopback source");
    socket.connect(&addr.into()).expect("tcp connect");
    let stream: std::net::TcpStream = socket.into();
    stream
        .set_read_timeout(Some(common::READ_TIMEOUT))
        .expect("timeout");
    upgrade(Raw::from_stream(stream), origin)
}

fn upgrade(mut r: Raw, origin: &str) -> (String, Raw) {
    let request = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n",
        common::KEY
    );
    r.send(request.as_bytes());
    let status = r.read_head().lines().next().unwrap_or_default().to_string();
    if status.contains(" 101 ") {
        assert_eq!(r.read_json()["type"], "connected");
    }
    (status, r)
}

const OK: &str = "HTTP/1.1 101 Switching Protocols";

#[test]
fn sighup_changes_origins_and_limits_for_new_connections_and_keeps_open_ones() {
    let file = config_file(
        "live.toml",
        "allowed-origin = [\"https://a.example\"]\nmetrics-interval = 20\n",
    );
    let relay = Relay::start(&file);
    let (status, mut subscriber) = connect(relay.addr, "https://a.example");
    assert_eq!(status, OK);
    subscriber.send(&masked_frame(
        0x81,
        json!({"type":"subscribe","channel":"t"})
            .to_string()
            .as_bytes(),
    ));
    assert_eq!(subscriber.read_json()["type"], "subscribed");

    std::fs::write(
        &file,
        "allowed-origin = [\"https://b.example\"]\nmetrics-interval = 20\n\
         max-connections-per-ip = 3\nmax-message-size = 2048\n",
    )
    .expect("rewrite config");
    relay.hup_and_wait("ok", 1);

    // New connections meet the new origins...
    assert_eq!(
        connect(relay.addr, "https://a.example").0,
        "HTTP/1.1 403 Forbidden"
    );
    // ...and the new per-IP limit: three from one address, the fourth is refused.
    let source = [127, 0, 0, 2];
    let (status, mut publisher) = connect_from(relay.addr, source, "https://b.example");
    assert_eq!(status, OK);
    let (status, _second) = connect_from(relay.addr, source, "https://b.example");
    assert_eq!(status, OK);
    let (status, _third) = connect_from(relay.addr, source, "https://b.example");
    assert_eq!(status, OK);
    let (status, _) = connect_from(relay.addr, source, "https://b.example");
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
    // The connection opened before the reload was not dropped.
    let publish = json!({"type":"message","channel":"t","content":"after reload"});
    publisher.send(&masked_frame(0x81, publish.to_string().as_bytes()));
    let got = subscriber.read_json();
    assert_eq!(
        (got["content"].as_str(), got["seq"].as_u64()),
        (Some("after reload"), Some(1))
    );

    assert!(
        relay.logged("configuration reloaded; changed: [max-connections-per-ip, allowed-origin]")
    );
    assert!(relay.logged("need a restart (kept as they were): [max-message-size]"));
}

#[test]
fn a_bad_file_on_sighup_changes_nothing() {
    let file = config_file(
        "bad.toml",
        "allowed-origin = [\"https://a.example\"]\nmetrics-interval = 20\n",
    );
    let relay = Relay::start(&file);
    let broken_files = [
        "allowed-orign = [\"https://b.example\"]\n",
        "allowed-origin = [\"https://b.example\"]\nport = \"abc\"\n",
        "allowed-origin = [\"https://b.example\"]\nmax-message-size = 67108864\n",
        "not toml at all = = =\n",
    ];
    for (n, broken) in broken_files.into_iter().enumerate() {
        std::fs::write(&file, broken).expect("rewrite config");
        relay.hup_and_wait("error", n as u64 + 1);
        assert_eq!(connect(relay.addr, "https://a.example").0, OK, "{broken}");
        assert_eq!(
            connect(relay.addr, "https://b.example").0,
            "HTTP/1.1 403 Forbidden",
            "{broken}"
        );
    }
    assert!(relay.logged("configuration reload refused, nothing changed"));
}

#[test]
fn sighup_changes_the_log_level() {
    let file = config_file(
        "level.toml",
        "log-level = \"info\"\nmetrics-interval = 20\n",
    );
    let config = file.to_str().expect("utf-8 path");
    // No RUST_LOG: it is the environment of --log-level and would win over the file.
    let relay = Relay(RelayProcess::start_with_rust_log(
        ["--config", config],
        "ws",
        None,
    ));
    let info_line = "configuration reloaded; changed: [";
    // Lowered to warn: the reload's own info line is no longer written...
    std::fs::write(&file, "log-level = \"warn\"\nmetrics-interval = 20\n").expect("rewrite");
    relay.hup_and_wait("ok", 1);
    relay.hup_and_wait("ok", 2);
    // ...raised to info again: it is, and names the change.
    std::fs::write(&file, "log-level = \"info\"\nmetrics-interval = 20\n").expect("rewrite");
    relay.hup_and_wait("ok", 3);
    assert!(relay.logged("configuration reloaded; changed: [log-level]"));
    assert_eq!(
        relay.count_logged(info_line),
        1,
        "only the reload at info was logged at info: the two at warn were not"
    );
}

/// A subscriber to `channel` that stops reading: a small receive buffer, never read.
fn stalled_subscriber(addr: SocketAddr, channel: &str) -> Raw {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("small buffer");
    socket.connect(&addr.into()).expect("tcp connect");
    let stream: std::net::TcpStream = socket.into();
    stream
        .set_read_timeout(Some(common::READ_TIMEOUT))
        .expect("timeout");
    let (status, mut raw) = upgrade(Raw::from_stream(stream), "https://any.example");
    assert_eq!(status, OK);
    let cmd = json!({"type": "subscribe", "channel": channel}).to_string();
    raw.send(&masked_frame(0x81, cmd.as_bytes()));
    assert_eq!(raw.read_json()["type"], "subscribed");
    raw
}

/// Most 1 KB messages published at a stalled subscriber: 30 MB, far beyond its 64 KiB outbox
/// and the socket buffers (the same bound as tests/data_plane.rs).
const FLOOD_MESSAGES: u64 = 30_000;
/// Counted when the close policy acts (the connection is counted closed only after the close
/// handshake, which the stalled subscriber delays).
const SLOW_CLOSED: &str = "wsrelay_queue_drops_total{reason=\"slow_consumer_close\"} ";

/// Publishes 1 KB messages on `channel` until the close policy has acted (checked
/// every 1000 messages), at most `FLOOD_MESSAGES`; returns whether it did.
fn flood_until_slow_close(addr: SocketAddr, channel: &str) -> bool {
    let mut publisher = common::Client::connect(addr);
    let pad = "x".repeat(1000);
    for i in 1..=FLOOD_MESSAGES {
        publisher.publish(channel, json!({"i": i, "pad": pad}));
        if i % 1000 == 0 {
            publisher.ping();
            let (_, metrics) = common::http_get(addr, "/metrics");
            let acted = metrics
                .lines()
                .filter_map(|l| l.strip_prefix(SLOW_CLOSED))
                .any(|n| n != "0");
            if acted {
                return true;
            }
        }
    }
    false
}

#[test]
fn sighup_changes_the_per_channel_slow_consumer_rules() {
    let limits = "max-queued-bytes = 65536\nmax-message-size = 16384\nclose-timeout = 60000\n\
                  slow-consumer = \"drop\"\nmetrics-interval = 20\n";
    let file = config_file(
        "rules.toml",
        &format!("{limits}slow-consumer-for = [\"md.*=drop\"]\n"),
    );
    let relay = Relay::start(&file);
    std::fs::write(
        &file,
        format!("{limits}slow-consumer-for = [\"md.*=close\", \"chat.*=conflate\"]\n"),
    )
    .expect("rewrite config");
    relay.hup_and_wait("ok", 1);
    assert!(relay.logged(
        "configuration reloaded; changed: [slow-consumer-for]; need a restart (kept as they were): []"
    ));
    // Before the reload a stalled subscriber of md.* had its deliveries dropped; now it is
    // closed with 4100 once its outbox is full.
    let mut slow = stalled_subscriber(relay.addr, "md.a");
    assert!(
        flood_until_slow_close(relay.addr, "md.a"),
        "the stalled subscriber was never closed"
    );
    let mut next = 1;
    loop {
        let frame = slow
            .read_frame_within(Duration::from_secs(5))
            .expect("frames, then a close frame");
        match frame.opcode {
            1 => {
                let m: serde_json::Value = serde_json::from_slice(&frame.payload).expect("json");
                assert_eq!(
                    m["seq"], next,
                    "a prefix of the stream, in order, no gap notice"
                );
                next += 1;
            }
            8 => break assert_eq!(frame.close_code(), Some(4100)),
            op => panic!("unexpected opcode {op}"),
        }
    }
}

/// A JWK Set with one HS256 key.
fn jwks(kid: &str, secret: &[u8]) -> String {
    use base64::Engine as _;
    let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    json!({"keys": [{"kty": "oct", "kid": kid, "alg": "HS256", "k": k}]}).to_string()
}

fn token(kid: Option<&str>, secret: &[u8]) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = kid.map(str::to_string);
    let exp = wsrelay::clock::Clock::unix_now_s() + 600;
    let key = jsonwebtoken::EncodingKey::from_secret(secret).expect("key");
    jsonwebtoken::encode(&header, &json!({"sub": "alice", "exp": exp}), &key).expect("token")
}

/// The status line of an upgrade carrying `?token=`.
fn upgrade_with_token(addr: SocketAddr, token: &str) -> String {
    let mut r = Raw::connect(addr);
    let request = format!(
        "GET /?token={token} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        common::KEY
    );
    r.send(request.as_bytes());
    r.read_head().lines().next().unwrap_or_default().to_string()
}

#[test]
fn jwks_keys_rotate_on_sighup_without_a_restart() {
    const OLD: &[u8] = b"old-secret-0123456789abcdef-0123456789abc";
    const NEW: &[u8] = b"new-secret-0123456789abcdef-0123456789abc";
    let keys = config_file("keys.json", &jwks("old", OLD));
    let file = config_file(
        "jwks.toml",
        &format!(
            "auth-jwks-file = {:?}\nauth-query-token = true\nmetrics-interval = 20\n",
            keys.to_str().expect("utf-8 path")
        ),
    );
    let relay = Relay::start(&file);
    assert_eq!(upgrade_with_token(relay.addr, &token(Some("old"), OLD)), OK);
    assert_eq!(
        upgrade_with_token(relay.addr, &token(None, OLD)),
        OK,
        "the only key"
    );
    let unknown = upgrade_with_token(relay.addr, &token(Some("new"), NEW));
    assert_eq!(unknown, "HTTP/1.1 401 Unauthorized");

    // Rotation: the provider publishes only the new key; the relay reloads.
    std::fs::write(&keys, jwks("new", NEW)).expect("rewrite keys");
    relay.hup_and_wait("ok", 1);
    assert_eq!(upgrade_with_token(relay.addr, &token(Some("new"), NEW)), OK);
    let retired = upgrade_with_token(relay.addr, &token(Some("old"), OLD));
    assert_eq!(retired, "HTTP/1.1 401 Unauthorized", "the old kid is gone");

    // A broken key file on reload keeps the keys in force.
    std::fs::write(&keys, "{\"keys\": 5}").expect("break keys");
    relay.hup_and_wait("error", 1);
    assert_eq!(upgrade_with_token(relay.addr, &token(Some("new"), NEW)), OK);
    assert!(relay.logged("keys.json: JWK Set is malformed"));
}
