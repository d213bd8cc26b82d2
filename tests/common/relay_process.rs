//! The real `wsrelay` binary as a child process, for tests of what only the binary does
//! (configuration files, SIGHUP reloads, TLS files): started on 127.0.0.1:0 with `args`, its
//! log read by a thread, killed by its PID when dropped (also on failure).

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running relay binary.
pub struct RelayProcess {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RelayProcess {
    /// Starts the binary with two loops on a free loopback port plus `args`, and waits for its
    /// "listening on SCHEME://ADDR" line (`scheme` is `ws` or `wss`).
    pub fn start<I, S>(args: I, scheme: &str) -> RelayProcess
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Self::start_with_rust_log(args, scheme, Some("info"))
    }

    /// As `start`, with `RUST_LOG` set to `rust_log`, or removed for `None` (the level then
    /// comes from `--log-level` or the file; it must let the "listening" line through).
    pub fn start_with_rust_log<I, S>(args: I, scheme: &str, rust_log: Option<&str>) -> RelayProcess
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new(env!("CARGO_BIN_EXE_wsrelay"));
        command
            .args(args)
            .args(["--bind", "127.0.0.1", "--port", "0", "--threads", "2"])
            .env_remove("WS_CONFIG");
        match rust_log {
            Some(level) => command.env("RUST_LOG", level),
            None => command.env_remove("RUST_LOG"),
        };
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("binary runs");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let needle = format!("listening on {scheme}://");
        let mut line = String::new();
        let addr = loop {
            line.clear();
            let n = stderr.read_line(&mut line).expect("read log");
            assert!(n > 0, "relay exited before listening");
            if let Some(rest) = line.split(needle.as_str()).nth(1) {
                let addr = rest.split_whitespace().next().expect("addr");
                break addr.parse().expect("addr");
            }
        };
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        RelayProcess { child, addr, log }
    }

    /// Sends SIGHUP (a configuration reload).
    pub fn sighup(&self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Whether the relay logged `needle`. The log is read by another thread and the relay
    /// counts a reload before it logs it, so this waits for the line (bounded: 10 s, only to
    /// stop a hung test).
    pub fn logged(&self, needle: &str) -> bool {
        for _ in 0..1000 {
            let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
            if log.iter().any(|l| l.contains(needle)) {
                return true;
            }
            drop(log);
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// How many lines logged so far contain `needle` (no waiting: wait with `logged` first).
    pub fn count_logged(&self, needle: &str) -> usize {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.iter().filter(|l| l.contains(needle)).count()
    }
}
