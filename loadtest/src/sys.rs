//! Operating-system facts the report needs: the open-file limit, CPU time of threads and
//! processes, resident memory, and whether stderr is a terminal. Linux only (`/proc`).
//!
//! Owns: libc and /proc reads. May not touch: sockets, the run's state.

use std::time::Instant;

/// The swarm's clock: ns since a process-local epoch, shared by publishers and subscribers
/// in this process so that receipt minus stamp is a latency.
pub fn now_ns() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Wall-clock time, ns since the Unix epoch (agents and controller agree on start times with
/// it; latency never uses it).
pub fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Raises the soft open-file limit to the hard limit; returns the soft limit in force.
pub fn raise_open_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; the resource constant is valid.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads a valid struct; failure leaves the old limit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = limit.rlim_max;
        }
    }
    limit.rlim_cur
}

/// CPU-seconds (user + system) consumed so far by the calling thread.
pub fn thread_cpu_s() -> f64 {
    rusage_cpu_s(libc::RUSAGE_THREAD)
}

/// CPU-seconds (user + system) consumed so far by this whole process.
pub fn process_cpu_s() -> f64 {
    rusage_cpu_s(libc::RUSAGE_SELF)
}

fn rusage_cpu_s(who: libc::c_int) -> f64 {
    // SAFETY: rusage is plain data; zeroed is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    if unsafe { libc::getrusage(who, &mut usage) } != 0 {
        return 0.0;
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Clock ticks per second of /proc CPU times.
fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// utime + stime of a `/proc/.../stat` line, in seconds.
fn stat_cpu_s(stat: &str) -> Option<f64> {
    // The command name (field 2) may contain spaces; fields after its ')' are fixed.
    let after_comm = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 and 15 of the line are utime and stime: 11 and 12 after the command.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks_per_s())
}

/// CPU-seconds of process `pid` (from /proc/PID/stat).
pub fn pid_cpu_s(pid: u32) -> Option<f64> {
    stat_cpu_s(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// CPU-seconds of this process's threads whose name starts with `prefix` (the in-process
/// relay's loops are `wsrelay-loop-N`).
pub fn own_threads_cpu_s(prefix: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .filter_map(Result::ok)
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.starts_with(prefix))
        })
        .filter_map(|task| stat_cpu_s(&std::fs::read_to_string(task.path().join("stat")).ok()?))
        .sum()
}

/// Seconds the threads of process `pid` whose name starts with `prefix` (any name when
/// empty) spent runnable but waiting for a CPU (second field of /proc/.../schedstat). On a
/// shared machine this says whether a figure measured the program or the machine's queue.
pub fn run_queue_wait_s(pid: u32, prefix: &str) -> Option<f64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let waited_ns: u64 = tasks
        .filter_map(Result::ok)
        .filter(|task| {
            prefix.is_empty()
                || std::fs::read_to_string(task.path().join("comm"))
                    .is_ok_and(|name| name.starts_with(prefix))
        })
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
            stat.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .sum();
    Some(waited_ns as f64 / 1e9)
}

/// Resident memory of process `pid` in KiB (VmRSS).
pub fn pid_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Whether stderr is a terminal (the live progress line is drawn only then).
pub fn stderr_is_tty() -> bool {
    // SAFETY: isatty has no preconditions.
    unsafe { libc::isatty(libc::STDERR_FILENO) == 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_line_with_spaces_in_the_name() {
        let line = "42 (a b) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 10 1000 10";
        let ticks = clock_ticks_per_s();
        assert_eq!(stat_cpu_s(line), Some(300.0 / ticks));
    }

    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        assert!(pid_rss_kib(pid).unwrap() > 0);
        assert!(pid_cpu_s(pid).is_some());
        assert!(run_queue_wait_s(pid, "").is_some());
        assert!(raise_open_file_limit() >= 256);
    }
}
