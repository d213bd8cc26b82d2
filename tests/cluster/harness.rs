//! Real components for the cluster tests: Debian's `nats-server` (2.9.10 in CI) with
//! JetStream on random loopback ports and a fresh store directory per test, and `wsrelay`
//! processes pointed at it. Every process is killed by its own PID when its guard drops.
//!
//! The binary is `$NATS_SERVER_BIN` (default `/usr/sbin/nats-server`, not on a non-root
//! PATH). When it is missing the tests FAIL, unless `WSRELAY_SKIP_NATS=1` says to skip them
//! (local runs only; `.ci/run` installs the package).
#![allow(dead_code)]

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Deadline for anything that may wait for an election (design: >= 20 s).
pub const ELECTION_DEADLINE: Duration = Duration::from_secs(30);

/// The nats-server binary, or `None` when the tests are to be skipped (explicitly).
pub fn nats_bin() -> Option<PathBuf> {
    let bin = PathBuf::from(
        std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "/usr/sbin/nats-server".into()),
    );
    if bin.exists() {
        return Some(bin);
    }
    if std::env::var("WSRELAY_SKIP_NATS").is_ok_and(|v| v == "1") {
        eprintln!(
            "skipping: {} missing and WSRELAY_SKIP_NATS=1",
            bin.display()
        );
        return None;
    }
    panic!(
        "{} not found: install Debian's nats-server package (apt-get install -y nats-server), \
         set NATS_SERVER_BIN, or set WSRELAY_SKIP_NATS=1 to skip the cluster tests",
        bin.display()
    );
}

/// One nats-server (R1 streams, a fresh store under a new temporary directory) and two
/// relays `a` and `b` on it, started with `flags`; `None` when nats-server is missing and
/// `WSRELAY_SKIP_NATS=1` (see `nats_bin`).
pub fn r1_pair(tag: &str, flags: &[&str]) -> Option<(TempDir, NatsNode, RelayProc, RelayProc)> {
    let bin = nats_bin()?;
    let dir = TempDir::new(tag);
    let nats = NatsNode::single(&bin, &dir.0);
    let urls = [nats.url()];
    let a = RelayProc::start(&dir.0, "a", &urls, flags);
    let b = RelayProc::start(&dir.0, "b", &urls, flags);
    Some((dir, nats, a, b))
}

/// A fresh directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "wsrelay-cluster-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("WSRELAY_KEEP_TEST_DIR").is_some() {
            eprintln!("test files kept in {}", self.0.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn kill(child: &mut Child, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status();
}

/// One nats-server process.
pub struct NatsNode {
    child: Option<Child>,
    pub conf: PathBuf,
    pub client_port: u16,
    pub http_port: u16,
    log: PathBuf,
}

impl NatsNode {
    /// A single JetStream server with its store in `dir`.
    pub fn single(bin: &Path, dir: &Path) -> NatsNode {
        NatsNode::single_on(bin, dir, free_port())
    }

    /// A single JetStream server on `client_port`.
    pub fn single_on(bin: &Path, dir: &Path, client_port: u16) -> NatsNode {
        NatsNode::single_with(bin, dir, client_port, "")
    }

    /// A single JetStream server on `client_port` with `extra` configuration lines.
    pub fn single_with(bin: &Path, dir: &Path, client_port: u16, extra: &str) -> NatsNode {
        let http_port = free_port();
        let conf = dir.join("single.conf");
        let body = format!(
            "listen: 127.0.0.1:{client_port}\nhttp: 127.0.0.1:{http_port}\n\
             jetstream {{ store_dir: \"{}\", max_memory_store: 256MB, max_file_store: 1GB }}\n{extra}\n",
            dir.join("store").display()
        );
        std::fs::write(&conf, body).expect("write conf");
        let mut node = NatsNode {
            child: None,
            conf,
            client_port,
            http_port,
            log: dir.join("nats.log"),
        };
        node.start(bin);
        node.wait_jsz(|j| j.contains("\"config\""));
        node
    }

    fn start(&mut self, bin: &Path) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(bin)
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_port)
    }

    /// SIGKILL (a crash).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c, "-KILL");
            let _ = c.wait();
        }
    }

    /// `nats-server --signal ldm=<pid>`: lame-duck mode (stops accepting clients, tells the
    /// connected ones, closes them after `lame_duck_grace_period`).
    pub fn lame_duck(&self, bin: &Path) {
        let pid = self.child.as_ref().expect("server runs").id();
        let status = Command::new(bin)
            .arg("--signal")
            .arg(format!("ldm={pid}"))
            .status()
            .expect("nats-server --signal");
        assert!(status.success(), "nats-server --signal ldm={pid}: {status}");
    }

    /// Starts again on the same configuration and store.
    pub fn restart(&mut self, bin: &Path) {
        self.kill();
        self.start(bin);
    }

    /// `GET /jsz` (with `query`), or an empty string while the server does not answer.
    pub fn jsz(&self, query: &str) -> String {
        http_get_body(self.http_port, &format!("/jsz{query}")).unwrap_or_default()
    }

    /// Polls `/jsz` until `ready` says yes (panics after the election deadline).
    pub fn wait_jsz(&self, ready: impl Fn(&str) -> bool) {
        let until = Instant::now() + ELECTION_DEADLINE;
        while Instant::now() < until {
            if ready(&self.jsz("")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        panic!("nats-server on {} not ready; log:\n{log}", self.client_port);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for NatsNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three JetStream servers with full routes (design §11).
pub struct NatsCluster {
    pub nodes: Vec<NatsNode>,
    bin: PathBuf,
}

impl NatsCluster {
    /// Starts the three servers; a start that loses a port race ("address already in use":
    /// the ports are picked by binding and releasing) is retried on new ports.
    pub fn start(bin: &Path, dir: &Path) -> NatsCluster {
        for _ in 0..5 {
            if let Some(cluster) = NatsCluster::try_start(bin, dir) {
                return cluster;
            }
        }
        panic!("could not start a 3-node nats-server cluster");
    }

    fn try_start(bin: &Path, dir: &Path) -> Option<NatsCluster> {
        let mut picked = std::collections::BTreeSet::new();
        while picked.len() < 9 {
            picked.insert(free_port());
        }
        let p: Vec<u16> = picked.into_iter().collect();
        let ports: Vec<(u16, u16, u16)> = (0..3).map(|i| (p[i], p[3 + i], p[6 + i])).collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{}", p.1))
            .collect();
        let mut nodes = Vec::new();
        for (i, (client, route, http)) in ports.iter().enumerate() {
            let conf = dir.join(format!("n{}.conf", i + 1));
            let body = format!(
                "server_name: n{n}\nlisten: 127.0.0.1:{client}\nhttp: 127.0.0.1:{http}\n\
                 jetstream {{ store_dir: \"{store}\", max_memory_store: 256MB, max_file_store: 1GB }}\n\
                 lame_duck_grace_period: 60s\nlame_duck_duration: 120s\n\
                 cluster {{\n  name: wsr\n  listen: 127.0.0.1:{route}\n  routes: [ {routes} ]\n}}\n",
                n = i + 1,
                store = dir.join(format!("n{}", i + 1)).display(),
                routes = routes.join(", "),
            );
            std::fs::write(&conf, body).expect("conf");
            let mut node = NatsNode {
                child: None,
                conf,
                client_port: *client,
                http_port: *http,
                log: dir.join(format!("n{}.log", i + 1)),
            };
            node.start(bin);
            nodes.push(node);
        }
        let mut cluster = NatsCluster {
            nodes,
            bin: bin.to_path_buf(),
        };
        let until = Instant::now() + ELECTION_DEADLINE;
        while !cluster.nodes.iter().all(|n| meta_ready(&n.jsz(""))) {
            let exited = cluster.nodes.iter_mut().any(|n| {
                n.child
                    .as_mut()
                    .is_none_or(|c| matches!(c.try_wait(), Ok(Some(_))))
            });
            if exited || Instant::now() > until {
                for n in &cluster.nodes {
                    eprintln!("nats-server start failed; log:\n{}", n.log());
                }
                let _ = std::fs::remove_dir_all(dir.join("n1"));
                let _ = std::fs::remove_dir_all(dir.join("n2"));
                let _ = std::fs::remove_dir_all(dir.join("n3"));
                return None; // Dropping the nodes kills the others.
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(cluster)
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsNode::url).collect()
    }

    /// The server name of the leader of `stream`, as the servers report it.
    pub fn stream_leader(&self, stream: &str) -> Option<String> {
        for n in &self.nodes {
            let jsz = n.jsz("?streams=true");
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&jsz) else {
                continue;
            };
            for acc in v["account_details"].as_array().into_iter().flatten() {
                for s in acc["stream_detail"].as_array().into_iter().flatten() {
                    if s["name"] == stream {
                        if let Some(l) = s["cluster"]["leader"].as_str() {
                            return Some(l.to_string());
                        }
                    }
                }
            }
        }
        None
    }

    /// SIGKILLs the leader of `stream`; returns its index.
    pub fn kill_leader(&mut self, stream: &str) -> usize {
        let leader = self.stream_leader(stream).expect("stream has a leader");
        let i: usize = leader
            .trim_start_matches('n')
            .parse::<usize>()
            .expect("server name n<i>")
            - 1;
        self.nodes[i].kill();
        i
    }

    /// The index of the server the relay named `relay` (`--node-name`) is connected to.
    pub fn server_of(&self, relay: &str) -> Option<usize> {
        let needle = format!("\"name\": \"{relay}.");
        let compact = format!("\"name\":\"{relay}.");
        self.nodes.iter().position(|n| {
            let connz = http_get_body(n.http_port, "/connz").unwrap_or_default();
            connz.contains(&needle) || connz.contains(&compact)
        })
    }

    /// Waits until every server reports the meta group with 3 peers and `streams` streams
    /// each with a leader.
    pub fn wait_streams_led(&self, streams: u32) {
        let until = Instant::now() + ELECTION_DEADLINE;
        while Instant::now() < until {
            let meta = self.nodes.iter().all(|n| meta_ready(&n.jsz("")));
            let led = (0..streams).all(|k| self.stream_leader(&format!("WSR_{k}")).is_some());
            if meta && led {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the cluster did not report 3 peers and {streams} stream leaders");
    }

    /// Puts server `i` into lame-duck mode (its clients are closed only after 60 s: a
    /// test's relay that moves before did so on its own).
    pub fn lame_duck(&self, i: usize) {
        self.nodes[i].lame_duck(&self.bin);
    }

    pub fn restart(&mut self, i: usize) {
        let bin = self.bin.clone();
        self.nodes[i].restart(&bin);
    }
}

/// `/jsz` says the meta group has a leader and 3 peers.
pub fn meta_ready(jsz: &str) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(jsz) else {
        return false;
    };
    let leader = v["meta_cluster"]["leader"].as_str().unwrap_or("");
    !leader.is_empty() && v["meta_cluster"]["cluster_size"] == 3
}

/// A plain HTTP/1.0 GET on loopback; the body.
pub fn http_get_body(port: u16, path: &str) -> Option<String> {
    use std::io::Read;
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// A `wsrelay` process pointed at NATS.
pub struct RelayProc {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub log: PathBuf,
    args: Vec<String>,
    dir: PathBuf,
}

impl RelayProc {
    /// Starts `wsrelay` with `--nats` for every URL plus `extra`, 2 loops, on a free port;
    /// returns once it listens.
    pub fn start(dir: &Path, name: &str, urls: &[String], extra: &[&str]) -> RelayProc {
        let mut args: Vec<String> = vec![
            "--bind".into(),
            "127.0.0.1".into(),
            "--threads".into(),
            "2".into(),
            "--node-name".into(),
            name.into(),
        ];
        for u in urls {
            args.push("--nats".into());
            args.push(u.clone());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut r = RelayProc {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log: dir.join(format!("{name}.log")),
            args,
            dir: dir.to_path_buf(),
        };
        // A port picked by bind-and-release may be taken meanwhile: pick again.
        for _ in 0..5 {
            match r.spawn(free_port()) {
                Ok(()) => return r,
                Err(log) if log.contains("in use") => continue,
                Err(log) => panic!("wsrelay exited:\n{log}"),
            }
        }
        panic!("wsrelay found no free port");
    }

    fn spawn(&mut self, port: u16) -> Result<(), String> {
        let _ = std::fs::remove_file(&self.log);
        let log = std::fs::File::create(&self.log).expect("relay log");
        // `WSRELAY_BIN` (measurements only: a release build) overrides the test build.
        let bin =
            std::env::var("WSRELAY_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_wsrelay").into());
        let child = Command::new(bin)
            .args(&self.args)
            .args(["--port", &port.to_string()])
            .env(
                "RUST_LOG",
                std::env::var("WSRELAY_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env_remove("WS_NATS_URL")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("wsrelay starts");
        self.child = Some(child);
        let until = Instant::now() + ELECTION_DEADLINE;
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(rest) = text.split("listening on ws://").nth(1) {
                let addr = rest.split_whitespace().next().expect("address");
                self.addr = addr.parse().expect("socket address");
                return Ok(());
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    self.child = None;
                    return Err(format!("({status}) {text}"));
                }
            }
            assert!(Instant::now() < until, "wsrelay did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c, "-KILL");
            let _ = c.wait();
        }
    }

    /// SIGTERM (a graceful stop), then waits for the process to end.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c, "-TERM");
            let _ = c.wait();
        }
    }

    /// Starts again (same flags, same port).
    pub fn restart(&mut self) {
        self.kill();
        let port = self.addr.port();
        if let Err(log) = self.spawn(port) {
            panic!("wsrelay did not restart:\n{log}");
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `/metrics` of the relay.
    pub fn metrics(&self) -> String {
        http_get_body(self.addr.port(), "/metrics").unwrap_or_default()
    }

    /// `/stats` of the relay, parsed (`Null` when unreachable or not JSON).
    pub fn stats(&self) -> serde_json::Value {
        let body = http_get_body(self.addr.port(), "/stats").unwrap_or_default();
        serde_json::from_str(&body).unwrap_or_default()
    }

    /// One metric's value (first sample whose line starts with `name`).
    pub fn metric(&self, name: &str) -> f64 {
        self.metrics()
            .lines()
            .find(|l| l.starts_with(name) && !l.starts_with('#'))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for RelayProc {
    fn drop(&mut self) {
        self.kill();
    }
}
