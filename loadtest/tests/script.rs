//! Scripted scenarios against servers that do not speak wsrelay's protocol: a small JSON API
//! written here (tungstenite, one thread per connection on 127.0.0.1:0) with login, subscribe,
//! request/reply and server pings; thresholds that set the real binary's exit status; ramp
//! stages that open and close the planned numbers of clients.

use std::collections::BTreeSet;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use clap::Parser;
use loadtest::cli::{Action, Cli};
use loadtest::report::Report;
use serde_json::{json, Value};
use tungstenite::handshake::server::{Request, Response};
use tungstenite::Message;

/// What the test server saw.
#[derive(Debug, Default)]
struct Seen {
    connections: u64,
    open_now: u64,
    open_max: u64,
    tokens: BTreeSet<String>,
    protocol_offered: u64,
    logins: u64,
    subscribes: u64,
    requests: u64,
    pongs: u64,
    /// `t` of every request that had one (`{{now_ns}}`), in arrival order.
    now_values: Vec<u64>,
    /// Requests whose `t` was lower than the previous one on the same connection.
    now_decreased: u64,
    /// `r` of every request that had one (`{{random_int(a,b)}}`).
    randoms: Vec<i64>,
}

/// The JSON API: `login` → `logged_in`, `subscribe` → `subscribed` then a `ping` push,
/// `req` → `reply` with the same id (its `t` and `r` recorded), `reqp` → a `ping` push then
/// the `reply`, `pong` counted.
struct ApiServer {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<Vec<JoinHandle<()>>>>,
}

impl ApiServer {
    fn start() -> ApiServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut threads = Vec::new();
                while !stop.load(Ordering::Acquire) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let seen = seen.clone();
                            threads.push(std::thread::spawn(move || serve(stream, &seen)));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
                threads
            })
        };
        ApiServer {
            addr,
            seen,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// Stops accepting and waits for every connection thread (they end when the swarm has
    /// closed its clients), so the counts are final.
    fn finish(mut self) -> Seen {
        self.stop.store(true, Ordering::Release);
        if let Some(acceptor) = self.acceptor.take() {
            for thread in acceptor.join().expect("acceptor") {
                thread.join().expect("connection thread");
            }
        }
        std::mem::take(&mut *self.seen.lock().expect("lock"))
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// tungstenite's handshake callback returns its own (large) error response type.
#[allow(clippy::result_large_err)]
fn serve(stream: TcpStream, seen: &Mutex<Seen>) {
    stream.set_nonblocking(false).expect("blocking");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let callback = |request: &Request, mut response: Response| {
        let mut s = seen.lock().expect("lock");
        if let Some(auth) = request.headers().get("authorization") {
            s.tokens.insert(auth.to_str().unwrap_or("").to_string());
        }
        let offered = request
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|p| p.trim() == "demo.v1"));
        if offered {
            s.protocol_offered += 1;
            response
                .headers_mut()
                .insert("sec-websocket-protocol", "demo.v1".parse().expect("header"));
        }
        Ok(response)
    };
    let Ok(mut ws) = tungstenite::accept_hdr(stream, callback) else {
        return;
    };
    {
        let mut s = seen.lock().expect("lock");
        s.connections += 1;
        s.open_now += 1;
        s.open_max = s.open_max.max(s.open_now);
    }
    let mut last_now = 0;
    while let Ok(message) = ws.read() {
        let Message::Text(text) = message else {
            continue;
        };
        let request: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
        record_variables(&request, &mut last_now, seen);
        let replies = answer(&request, seen);
        if replies.first().is_some_and(|r| r["type"] == "close_me") {
            let _ = ws.close(None);
            continue;
        }
        for reply in replies {
            if ws.send(Message::text(reply.to_string())).is_err() {
                break;
            }
        }
    }
    seen.lock().expect("lock").open_now -= 1;
}

/// Records the `t` (`{{now_ns}}`) and `r` (`{{random_int}}`) a request carries.
fn record_variables(request: &Value, last_now: &mut u64, seen: &Mutex<Seen>) {
    let mut s = seen.lock().expect("lock");
    if let Some(t) = request["t"].as_u64() {
        if t < *last_now {
            s.now_decreased += 1;
        }
        *last_now = t;
        s.now_values.push(t);
    }
    if let Some(r) = request["r"].as_i64() {
        s.randoms.push(r);
    }
}

fn answer(request: &Value, seen: &Mutex<Seen>) -> Vec<Value> {
    let mut s = seen.lock().expect("lock");
    match request["type"].as_str() {
        Some("login") => {
            s.logins += 1;
            vec![json!({"type": "logged_in", "user": request["user"]})]
        }
        Some("subscribe") => {
            s.subscribes += 1;
            vec![
                json!({"type": "subscribed", "topic": request["topic"]}),
                json!({"type": "ping", "id": 7}),
            ]
        }
        Some("req") => {
            s.requests += 1;
            // `re` repeats the id under a key only replies have (for regex matching).
            vec![json!({"type": "reply", "ok": true, "id": request["id"], "re": request["id"]})]
        }
        Some("reqp") => {
            s.requests += 1;
            vec![
                json!({"type": "ping", "id": 7}),
                json!({"type": "reply", "ok": true, "id": request["id"]}),
            ]
        }
        Some("pong") if request["id"] == 7 => {
            s.pongs += 1;
            vec![]
        }
        Some("bye") => vec![json!({"type": "close_me"})],
        _ => vec![json!({"type": "error"})],
    }
}

fn scenario_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("script-{name}"));
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

fn run_script(path: &std::path::Path) -> Report {
    let argv = [
        "wsrelay-swarm",
        "script",
        path.to_str().expect("utf-8 path"),
    ];
    match Cli::parse_from(argv).command.into_action() {
        Action::Script(args) => args.run().expect("the run starts"),
        other => panic!("not a script run: {other:?}"),
    }
}

#[test]
fn login_subscribe_and_request_reply_matched_by_json_pointer() {
    let server = ApiServer::start();
    let dir = scenario_dir("api");
    let tokens: String = (0..6).map(|i| format!("tok-{i}\n")).collect();
    std::fs::write(dir.join("tokens.txt"), tokens).expect("tokens");
    let scenario = format!(
        r#"
name = "api"
warmup = "0s"
duration = "300ms"
thresholds = ["loss == 0", "errors == 0"]

[[group]]
name = "users"
url = "ws://{addr}/api"
clients = 6
subprotocols = ["demo.v1"]
headers = {{ Authorization = "Bearer {{{{line(tokens.txt)}}}}" }}

[[group.on_open]]
send = '{{"type":"login","user":"u{{{{client}}}}"}}'
wait_for = {{ pointer = "/type", equals = "logged_in" }}

[[group.on_open]]
send = '{{"type":"subscribe","topic":"news"}}'
wait_for = {{ pointer = "/topic", equals = "news" }}

[group.send]
rate = 50
template = '{{"type":"req","id":{{{{seq}}}},"user":"u{{{{client}}}}"}}'
match = {{ pointer = "/id", equals = "{{{{seq}}}}" }}

[[group.on_message]]
when = {{ pointer = "/type", equals = "ping" }}
send = '{{"type":"pong","id":{{{{recv(/id)}}}}}}'
"#,
        addr = server.addr
    );
    let path = dir.join("api.toml");
    std::fs::write(&path, scenario).expect("scenario");
    let report = run_script(&path);
    let seen = server.finish();
    let s = &report.stats;
    let text = report.to_text();

    assert_eq!(s.conns_ready, 6, "{text}");
    assert_eq!(seen.connections, 6, "{seen:?}");
    assert_eq!(seen.protocol_offered, 6, "{seen:?}");
    let expected_tokens: BTreeSet<String> = (0..6).map(|i| format!("Bearer tok-{i}")).collect();
    assert_eq!(seen.tokens, expected_tokens);
    assert_eq!(
        (seen.logins, seen.subscribes, seen.pongs),
        (6, 6, 6),
        "{seen:?}"
    );
    // 300 ms at 50/s per client: exactly 15 requests per client stamped in the window.
    assert_eq!(s.sent_window, 6 * 15, "{text}");
    assert_eq!(s.received_window, s.sent_window, "{text}");
    assert_eq!(report.loss(), 0, "{text}");
    assert_eq!(seen.requests, s.sent_total, "{text}");
    assert_eq!(s.received_total, s.sent_total, "{text}");
    assert_eq!(s.latency_ns.len(), s.received_window, "{text}");
    assert!(s.errors.is_empty(), "{text}");
    let any = report.any.expect("engine counters");
    assert_eq!(any.open_messages_total, 12, "{text}");
    assert_eq!(any.reactions_total, 6, "{text}");
    assert_eq!(any.unmatched_total, 0, "{text}");
    assert!(report.thresholds_pass(), "{text}");
}

#[test]
fn ramp_stages_open_and_close_the_planned_clients() {
    let server = ApiServer::start();
    let dir = scenario_dir("ramp");
    let scenario = format!(
        r#"
[[group]]
url = "ws://{addr}/api"
stages = [
  {{ duration = "300ms", clients = 8 }},
  {{ duration = "1s", clients = 8 }},
  {{ duration = "300ms", clients = 2 }},
]
[[group.on_open]]
send = '{{"type":"login","user":"u{{{{client}}}}"}}'
wait_for = {{ pointer = "/type", equals = "logged_in" }}
"#,
        addr = server.addr
    );
    let path = dir.join("ramp.toml");
    std::fs::write(&path, scenario).expect("scenario");
    let report = run_script(&path);
    let seen = server.finish();
    let text = report.to_text();
    assert_eq!(report.conns_planned, 8, "{text}");
    assert_eq!(report.stats.conns_ready, 8, "{text}");
    assert_eq!(report.stats.conns_failed, 0, "{text}");
    assert_eq!(report.any.map(|a| a.ramped_down_total), Some(6), "{text}");
    assert_eq!(seen.connections, 8, "{seen:?}");
    assert_eq!(seen.logins, 8, "{seen:?}");
    // All eight were open at once during the hold, never more.
    assert_eq!(seen.open_max, 8, "{seen:?}");
    assert_eq!(seen.open_now, 0, "{seen:?}");
}

/// Runs the real binary on a scenario for wsrelay's `/echo` (path given) and returns its exit
/// status and stdout.
fn run_binary_against_echo(path_on_server: &str) -> (Option<i32>, String) {
    let mut config = wsrelay::Config::loopback_for_tests(1);
    config.echo_enabled = true;
    let relay = wsrelay::Server::start(config).expect("relay starts");
    let dir = scenario_dir(&format!("thresholds{}", path_on_server.replace('/', "-")));
    let scenario = format!(
        r#"
warmup = "0s"
duration = "200ms"
drain = "2s"
thresholds = ["conns_failed == 0", "loss == 0", "errors < 0.1%"]
[[group]]
url = "ws://{addr}{path_on_server}"
clients = 3
[group.send]
rate = 50
"#,
        addr = relay.local_addr()
    );
    let path = dir.join("echo.toml");
    std::fs::write(&path, scenario).expect("scenario");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wsrelay-swarm"))
        .arg("script")
        .arg(&path)
        .output()
        .expect("the swarm runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn thresholds_set_the_exit_status() {
    let (status, stdout) = run_binary_against_echo("/echo");
    assert_eq!(status, Some(0), "{stdout}");
    assert!(stdout.contains("PASS conns_failed == 0"), "{stdout}");
    assert!(stdout.contains("PASS loss == 0"), "{stdout}");

    // The relay answers /nope with 404: every client fails, so the thresholds fail.
    let (status, stdout) = run_binary_against_echo("/nope");
    assert_eq!(status, Some(1), "{stdout}");
    assert!(stdout.contains("FAIL conns_failed == 0"), "{stdout}");
    assert!(stdout.contains("FAIL errors < 0.1%"), "{stdout}");
}

/// Pub/sub measured by the deliveries' own send time: wsrelay as the pub/sub server (its
/// protocol written out in the scenario, as for any other server): 3 subscribers, 1
/// publisher whose messages carry `{{sent_at_ns}}`, each due 3 deliveries.
#[test]
fn pubsub_deliveries_are_counted_and_timed_from_the_sent_at_they_carry() {
    let relay = wsrelay::Server::start(wsrelay::Config::loopback_for_tests(1)).expect("relay");
    let dir = scenario_dir("pubsub");
    let scenario = format!(
        r#"
warmup = "0s"
duration = "300ms"
thresholds = ["loss == 0"]

[[group]]
name = "subscribers"
url = "ws://{addr}/"
clients = 3
sent_at = {{ pointer = "/content/t" }}
[[group.on_open]]
send = '{{"type":"subscribe","channel":"prices"}}'
wait_for = {{ pointer = "/type", equals = "subscribed" }}

[[group]]
name = "publishers"
url = "ws://{addr}/"
clients = 1
[group.send]
rate = 100
template = '{{"type":"message","channel":"prices","content":{{"t":{{{{sent_at_ns}}}},"n":{{{{seq}}}}}}}}'
match = {{ deliveries = 3 }}
"#,
        addr = relay.local_addr()
    );
    let path = dir.join("pubsub.toml");
    std::fs::write(&path, scenario).expect("scenario");
    let report = run_script(&path);
    let s = &report.stats;
    let text = report.to_text();
    assert_eq!(s.conns_ready, 4, "{text}");
    // 300 ms at 100/s: 30 publishes in the window, each due at the 3 subscribers.
    assert_eq!(s.sent_window, 30, "{text}");
    assert_eq!(s.due_window, 90, "{text}");
    assert_eq!(s.received_window, 90, "{text}");
    assert_eq!(s.received_total, s.due_total, "{text}");
    assert_eq!(s.latency_ns.len(), 90, "{text}");
    assert_eq!(report.loss(), 0, "{text}");
    assert!(s.errors.is_empty(), "{text}");
    assert!(report.thresholds_pass(), "{text}");
}

/// A server that closes clients during their opening steps fails their setup: counted once
/// each, and the run goes on (setup does not wait for them).
#[test]
fn clients_closed_by_the_server_during_setup_are_failed_setups() {
    let server = ApiServer::start();
    let dir = scenario_dir("setup-close");
    let scenario = format!(
        r#"
duration = "100ms"
[[group]]
url = "ws://{addr}/api"
clients = 3
[[group.on_open]]
send = '{{"type":"bye"}}'
wait_for = {{ pointer = "/type", equals = "never" }}
"#,
        addr = server.addr
    );
    let path = dir.join("setup-close.toml");
    std::fs::write(&path, scenario).expect("scenario");
    let report = run_script(&path);
    let seen = server.finish();
    let text = report.to_text();
    assert_eq!(seen.connections, 3, "{seen:?}");
    assert_eq!(report.stats.conns_ready, 0, "{text}");
    assert_eq!(report.stats.conns_failed, 3, "{text}");
    assert_eq!(
        report.stats.errors.get("setup_closed_by_server"),
        Some(&3),
        "{text}"
    );
}

/// `{{now_ns}}` and `{{random_int(a,b)}}` as the server receives them; replies matched by a
/// regex; a reaction chosen by a regex `when` that sends `{{recv(/id)}}` (the message is parsed
/// as JSON for it even though no pointer looked at it).
#[test]
fn now_ns_and_random_int_reach_the_server_and_regexes_match() {
    let server = ApiServer::start();
    let dir = scenario_dir("variables");
    let scenario = format!(
        r#"
warmup = "0s"
duration = "300ms"
[[group]]
url = "ws://{addr}/api"
clients = 6
[[group.on_open]]
send = '{{"type":"subscribe","topic":"news"}}'
wait_for = {{ regex = '"topic":"(\w+)"', equals = "news" }}
[group.send]
rate = 50
template = '{{"type":"req","id":{{{{seq}}}},"t":{{{{now_ns}}}},"r":{{{{random_int(3,9)}}}}}}'
match = {{ regex = '"re":(\d+)', equals = "{{{{seq}}}}" }}
[[group.on_message]]
when = {{ regex = '"type":"(ping)"', equals = "ping" }}
send = '{{"type":"pong","id":{{{{recv(/id)}}}}}}'
"#,
        addr = server.addr
    );
    let path = dir.join("variables.toml");
    std::fs::write(&path, scenario).expect("scenario");
    let before_ns = loadtest::sys::now_ns();
    let report = run_script(&path);
    let after_ns = loadtest::sys::now_ns();
    let seen = server.finish();
    let s = &report.stats;
    let text = report.to_text();

    // Regex matching closes every request: exact counts as with a JSON pointer.
    assert_eq!(s.conns_ready, 6, "{text}");
    assert_eq!(s.sent_window, 6 * 15, "{text}");
    assert_eq!(s.received_window, s.sent_window, "{text}");
    assert_eq!(s.received_total, s.sent_total, "{text}");
    assert_eq!(report.loss(), 0, "{text}");
    assert!(s.errors.is_empty(), "{text}");
    // Every ping was answered with its id (a regex `when` plus recv(/id)).
    assert_eq!(seen.pongs, 6, "{seen:?}");
    let any = report.any.expect("engine counters");
    assert_eq!((any.reactions_total, any.unmatched_total), (6, 0), "{text}");

    // {{now_ns}}: the swarm's clock (ns, monotonic) at rendering: inside the run, never going
    // back on a connection, and moving over the run.
    assert_eq!(seen.now_values.len() as u64, s.sent_total, "{seen:?}");
    for &t in &seen.now_values {
        assert!(
            (before_ns..=after_ns).contains(&t),
            "{t} not in {before_ns}..={after_ns}"
        );
    }
    assert_eq!(seen.now_decreased, 0, "{seen:?}");
    let (low, high) = (seen.now_values.iter().min(), seen.now_values.iter().max());
    assert!(low < high, "now_ns never moved: {seen:?}");

    // {{random_int(3,9)}}: inside [3, 9], and not one value repeated.
    assert_eq!(seen.randoms.len() as u64, s.sent_total, "{seen:?}");
    assert!(
        seen.randoms.iter().all(|r| (3..=9).contains(r)),
        "{:?}",
        seen.randoms
    );
    let distinct: BTreeSet<i64> = seen.randoms.iter().copied().collect();
    assert!(distinct.len() > 1, "{:?}", seen.randoms);
}

/// Matching in order: the server pushes a `ping` before each reply. The push is claimed by a
/// reaction, so it is not taken for the reply: the reply that follows closes the measurement.
#[test]
fn in_order_matching_skips_pushes_that_a_reaction_claims() {
    let server = ApiServer::start();
    let dir = scenario_dir("order-push");
    let scenario = format!(
        r#"
warmup = "0s"
duration = "300ms"
[[group]]
url = "ws://{addr}/api"
clients = 4
[group.send]
rate = 50
template = '{{"type":"reqp","id":{{{{seq}}}}}}'
match = "order"
[[group.on_message]]
when = {{ pointer = "/type", equals = "ping" }}
send = '{{"type":"pong","id":{{{{recv(/id)}}}}}}'
"#,
        addr = server.addr
    );
    let path = dir.join("order-push.toml");
    std::fs::write(&path, scenario).expect("scenario");
    let report = run_script(&path);
    let seen = server.finish();
    let s = &report.stats;
    let text = report.to_text();
    assert_eq!(s.sent_window, 4 * 15, "{text}");
    assert_eq!(seen.requests, s.sent_total, "{seen:?}");
    assert_eq!(s.received_window, s.sent_window, "{text}");
    assert_eq!(s.received_total, s.sent_total, "{text}");
    assert_eq!(report.loss(), 0, "{text}");
    let any = report.any.expect("engine counters");
    // One pong per push, and no reply left over (a push taken for a reply would leave one).
    assert_eq!(any.reactions_total, s.sent_total, "{text}");
    assert_eq!(seen.pongs, s.sent_total, "{seen:?}");
    assert_eq!(any.unmatched_total, 0, "{text}");
    assert!(s.errors.is_empty(), "{text}");
}

/// A non-loopback target without --allow-remote: the real binary refuses the scenario with
/// exit status 2 and says why, before connecting anywhere. (192.0.2.1 is TEST-NET-1, RFC 5737.)
#[test]
fn a_remote_target_is_refused_without_allow_remote() {
    let dir = scenario_dir("remote");
    let path = dir.join("remote.toml");
    std::fs::write(
        &path,
        "duration = \"1s\"\n[[group]]\nname = \"far\"\nurl = \"ws://192.0.2.1:9/\"\nclients = 1\n",
    )
    .expect("scenario");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wsrelay-swarm"))
        .arg("script")
        .arg(&path)
        .output()
        .expect("the swarm runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("group[0] (far).url"), "{stderr}");
    assert!(
        stderr.contains("192.0.2.1 is not a loopback address; pass --allow-remote"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "no report: {:?}", output.stdout);
}
