//! The server's CPU in agent mode (`--server-pid` with `--nats`). The agents run on other
//! machines and cannot see the server's process, so the controller measures it: the pid must
//! be a process on the controller's machine (refused otherwise, with the reason). A thread
//! reads `/proc/PID/stat` at the agreed start, at the end of every second after it, and at the
//! window's start and end (on the controller's wall clock, the one the start was agreed on).
//!
//! Owns: that thread (stopped and joined when the probe is dropped or finished). Bounded: at
//! most [`SERIES_SECONDS_MAX`] seconds, and it ends when told to.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::series::SERIES_SECONDS_MAX;
use crate::sys;

/// How often the thread looks at the clock.
const TICK: Duration = Duration::from_millis(10);

/// What the controller measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerCpu {
    /// CPU-seconds over the measured window (`None`: the process went away).
    pub window_s: Option<f64>,
    /// CPU % of one core per second of the run, second 0 starting at the agreed start.
    pub per_second_pct: Vec<f64>,
}

/// Refuses a `--server-pid` the controller cannot read.
pub fn check(pid: u32) -> Result<(), String> {
    match sys::pid_cpu_s(pid) {
        Some(_) => Ok(()),
        None => Err(format!(
            "--server-pid {pid}: no such process on this machine; with --nats the controller \
             measures the server's CPU itself (the agents cannot see it), so the server must \
             run where the controller runs (or leave --server-pid out)"
        )),
    }
}

/// The running measurement.
#[derive(Debug)]
pub struct ServerCpuProbe {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<ServerCpu>>,
}

/// The agreed times, ns on the controller's wall clock.
#[derive(Debug, Clone, Copy)]
pub struct Times {
    /// The agreed start.
    pub start_unix_ns: u64,
    /// Warm-up, ns.
    pub warmup_ns: u64,
    /// Measured window, ns.
    pub duration_ns: u64,
}

impl ServerCpuProbe {
    /// Starts measuring process `pid` over `times`.
    pub fn start(pid: u32, times: Times) -> ServerCpuProbe {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("swarm-server-cpu".into())
                .spawn(move || measure(pid, times, &stop))
                .ok()
        };
        ServerCpuProbe { stop, thread }
    }

    /// Stops and returns what was measured.
    pub fn finish(mut self) -> ServerCpu {
        self.stop.store(true, Ordering::Release);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for ServerCpuProbe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn measure(pid: u32, times: Times, stop: &AtomicBool) -> ServerCpu {
    let window_start = times.start_unix_ns + times.warmup_ns;
    let window_end = window_start + times.duration_ns;
    while sys::unix_ns() < times.start_unix_ns && !stop.load(Ordering::Acquire) {
        std::thread::sleep(TICK);
    }
    let mut out = ServerCpu::default();
    let mut last = sys::pid_cpu_s(pid);
    let mut at_window_start = None;
    let mut window_done = false;
    while !stop.load(Ordering::Acquire) && out.per_second_pct.len() < SERIES_SECONDS_MAX {
        let now = sys::unix_ns();
        if at_window_start.is_none() && now >= window_start {
            at_window_start = sys::pid_cpu_s(pid);
        }
        if !window_done && now >= window_end {
            window_done = true;
            out.window_s = sys::pid_cpu_s(pid)
                .zip(at_window_start)
                .map(|(end, start)| end - start);
        }
        let second_end =
            times.start_unix_ns + (out.per_second_pct.len() as u64 + 1) * 1_000_000_000;
        if now >= second_end {
            let cpu = sys::pid_cpu_s(pid);
            match cpu.zip(last) {
                Some((now_s, before_s)) => out.per_second_pct.push((now_s - before_s) * 100.0),
                None => break,
            }
            last = cpu;
        }
        std::thread::sleep(TICK);
    }
    out
}
