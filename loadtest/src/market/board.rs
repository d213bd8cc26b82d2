//! `board`: N boards (channels `board.C`, which the relay must keep as snapshots:
//! `--snapshot-for 'board.*'`) of K keys each are filled, then S subscribers subscribe at once
//! and each needs its whole board. Measures the time from a subscriber's subscribe to its full
//! snapshot (K entries), the snapshot bytes, and the server's CPU over the storm; with
//! `--update-rate` the boards change meanwhile and each subscriber checks the seam (its first
//! live message is the snapshot's seq + 1).

use super::*;

/// What one subscriber got.
#[derive(Debug, Clone, Copy, Default)]
struct Got {
    elapsed_ms: f64,
    bytes: usize,
    entries: usize,
    seq: u64,
    /// The first live message's seq (0: none yet).
    first_live: u64,
}

/// The run's figures.
#[derive(Debug)]
pub struct BoardReport {
    args: BoardArgs,
    got: Vec<Got>,
    all_done_ms: f64,
    server_cpu_s: Option<f64>,
    updates: u64,
}

struct Sync {
    connected: Barrier,
    go: Barrier,
    done: AtomicUsize,
}

/// Runs the scenario.
pub fn run(args: &BoardArgs) -> Result<BoardReport, String> {
    let (url, _server) = target(&args.common, in_process_config(args.common.relay_loops))?;
    let mut publisher = connect(&url, 1)?.pop().ok_or("no publisher")?;
    fill(&mut publisher, args)?;
    wait_full(&url, args)?;
    let threads = args.common.threads.max(1);
    let sync = Arc::new(Sync {
        connected: Barrier::new(threads + 1),
        go: Barrier::new(threads + 1),
        done: AtomicUsize::new(0),
    });
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (url, sync, args) = (url.clone(), sync.clone(), args.clone());
            let first = (0..t)
                .map(|i| share(args.subscribers, threads, i))
                .sum::<usize>();
            let n = share(args.subscribers, threads, t);
            std::thread::spawn(move || subscriber_thread(&url, first, n, &args, &sync))
        })
        .collect();
    sync.connected.wait();
    let cpu_start = cpu_of(args.common.server_pid);
    let t0 = Instant::now();
    sync.go.wait();
    let updates = update_while(&mut publisher, args, || {
        sync.done.load(Ordering::SeqCst) == threads
    });
    let all_done_ms = t0.elapsed().as_secs_f64() * 1e3;
    let server_cpu_s = cpu_start
        .zip(cpu_of(args.common.server_pid))
        .map(|(a, b)| b - a);
    let mut got = Vec::with_capacity(args.subscribers);
    for h in handles {
        got.extend(h.join().map_err(|_| "subscriber thread panicked")??);
    }
    Ok(BoardReport {
        args: args.clone(),
        got,
        all_done_ms,
        server_cpu_s,
        updates,
    })
}

/// Publishes every key of every board once.
fn fill(c: &mut Client, args: &BoardArgs) -> Result<(), String> {
    let mut n = 0;
    for board in 0..args.channels {
        for key in 0..args.keys {
            n += 1;
            let channel = format!("board.{board}");
            let body = content(n, args.size);
            while c
                .publish_keyed(&channel, &format!("k{key}"), &body, false)
                .is_err()
            {
                c.next_event(Duration::from_millis(1)); // the send buffer is full: drain it
            }
        }
    }
    c.next_event(Duration::from_millis(10));
    Ok(())
}

/// Waits until a subscriber of each board sees all its keys in the snapshot.
fn wait_full(url: &str, args: &BoardArgs) -> Result<(), String> {
    let mut checker = connect(url, 1)?.pop().ok_or("no checker")?;
    let started = Instant::now();
    for board in 0..args.channels {
        let channel = format!("board.{board}");
        loop {
            checker.subscribe(&channel).map_err(|e| e.to_string())?;
            let entries = loop {
                match checker.next_event(Duration::from_secs(5)) {
                    Some(Event::Snapshot { entries, .. }) => break entries.len(),
                    Some(Event::ServerError { message }) => return Err(message),
                    Some(_) => {}
                    None => return Err(format!("{channel}: no snapshot (is the relay started with --snapshot-for 'board.*'?)")),
                }
            };
            checker.unsubscribe(&channel).map_err(|e| e.to_string())?;
            if entries == args.keys as usize {
                break;
            }
            if started.elapsed() > SETUP_TIMEOUT {
                return Err(format!(
                    "{channel}: {entries} of {} keys after 60 s",
                    args.keys
                ));
            }
        }
    }
    Ok(())
}

/// Publishes updates of random keys at `--update-rate` until `done()`; returns how many.
fn update_while(c: &mut Client, args: &BoardArgs, done: impl Fn() -> bool) -> u64 {
    let start = Instant::now();
    let mut sent = 0u64;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    while !done() {
        if start.elapsed() > SETUP_TIMEOUT {
            break;
        }
        let due = (start.elapsed().as_secs_f64() * args.update_rate) as u64;
        while sent < due {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let board = (state % u64::from(args.channels.max(1))) as u32;
            let key = (state >> 32) % u64::from(args.keys.max(1));
            let channel = format!("board.{board}");
            let body = content(1_000_000 + sent, args.size);
            sent += u64::from(
                c.publish_keyed(&channel, &format!("k{key}"), &body, false)
                    .is_ok(),
            );
        }
        c.next_event(Duration::from_millis(1));
    }
    sent
}

fn subscriber_thread(
    url: &str,
    first: usize,
    n: usize,
    args: &BoardArgs,
    sync: &Sync,
) -> Result<Vec<Got>, String> {
    let clients = connect(url, n);
    sync.connected.wait();
    sync.go.wait();
    let mut clients = match clients {
        Ok(c) => c,
        Err(e) => {
            sync.done.fetch_add(1, Ordering::SeqCst);
            return Err(e);
        }
    };
    let mut sent_at = Vec::with_capacity(n);
    for (i, c) in clients.iter_mut().enumerate() {
        let board = (first + i) as u32 % args.channels.max(1);
        sent_at.push(Instant::now());
        c.subscribe(&format!("board.{board}"))
            .map_err(|e| e.to_string())?;
    }
    let mut got = vec![Got::default(); n];
    let want_live = args.update_rate > 0.0;
    let started = Instant::now();
    let complete = |g: &Got| g.entries > 0 && (!want_live || g.first_live > 0);
    while !got.iter().all(complete) && started.elapsed() < SETUP_TIMEOUT {
        for (i, c) in clients.iter_mut().enumerate() {
            while let Some(event) = c.try_next_event() {
                note(&mut got[i], event, sent_at[i]);
            }
        }
    }
    sync.done.fetch_add(1, Ordering::SeqCst);
    Ok(got)
}

fn note(got: &mut Got, event: Event, sent_at: Instant) {
    match event {
        Event::Snapshot {
            channel,
            seq,
            epoch,
            entries,
        } if got.entries == 0 => {
            got.elapsed_ms = sent_at.elapsed().as_secs_f64() * 1e3;
            got.entries = entries.len();
            got.seq = seq;
            got.bytes = snapshot_bytes(&channel, seq, &epoch, &entries);
        }
        Event::Message { seq, .. } if got.entries > 0 && got.first_live == 0 => {
            got.first_live = seq;
        }
        _ => {}
    }
}

/// The size of the snapshot message as the relay encodes it (the same encoder).
fn snapshot_bytes(
    channel: &str,
    seq: u64,
    epoch: &str,
    entries: &[wsrelay::client::SnapshotItem],
) -> usize {
    let mut out = Vec::new();
    let head = SnapshotHead {
        channel,
        seq,
        epoch,
    };
    let entries = entries.iter().map(|e| SnapshotEntry {
        key: e.key.as_deref(),
        content: &e.content,
        seq: e.seq,
        binary: e.binary,
    });
    encode_snapshot(&mut out, head, entries);
    out.len()
}

impl BoardReport {
    fn percentile_ms(&self, q: f64) -> f64 {
        let mut t: Vec<f64> = self.got.iter().map(|g| g.elapsed_ms).collect();
        t.sort_by(f64::total_cmp);
        let i = ((t.len() as f64 - 1.0) * q).round() as usize;
        t.get(i).copied().unwrap_or(0.0)
    }

    fn full(&self) -> usize {
        self.got
            .iter()
            .filter(|g| g.entries == self.args.keys as usize)
            .count()
    }

    fn seam_errors(&self) -> usize {
        self.got
            .iter()
            .filter(|g| g.first_live != 0 && g.first_live != g.seq + 1)
            .count()
    }

    fn bytes_total(&self) -> usize {
        self.got.iter().map(|g| g.bytes).sum()
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> String {
        let a = &self.args;
        serde_json::json!({
            "scenario": "board",
            "channels": a.channels,
            "keys": a.keys,
            "subscribers": a.subscribers,
            "size": a.size,
            "update_rate": a.update_rate,
            "updates_sent": self.updates,
            "full_snapshots": self.full(),
            "snapshot_bytes_mean": self.bytes_total() / self.got.len().max(1),
            "snapshot_bytes_total": self.bytes_total(),
            "time_to_snapshot_ms_p50": self.percentile_ms(0.5),
            "time_to_snapshot_ms_p99": self.percentile_ms(0.99),
            "time_to_snapshot_ms_max": self.percentile_ms(1.0),
            "all_done_ms": self.all_done_ms,
            "server_cpu_s": self.server_cpu_s,
            "seam_errors": self.seam_errors(),
        })
        .to_string()
    }

    /// The report as text.
    pub fn to_text(&self) -> String {
        let a = &self.args;
        let cpu = match self.server_cpu_s {
            Some(c) => format!("{:.3} s", c),
            None => "not measured (give --server-pid)".into(),
        };
        format!(
            "board: {} boards × {} keys of {} bytes, {} subscribers{}\n\
             full snapshots: {} of {}; {} bytes each on average, {:.1} MB in all\n\
             time to the full snapshot: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; all done after {:.1} ms\n\
             server CPU over the storm: {cpu}; seam errors: {}\n\
             (time resolution: one round over a thread's connections, a few ms)\n",
            a.channels,
            a.keys,
            a.size,
            a.subscribers,
            match a.update_rate > 0.0 {
                true => format!(", {} updates/s meanwhile ({} sent)", a.update_rate, self.updates),
                false => String::new(),
            },
            self.full(),
            self.got.len(),
            self.bytes_total() / self.got.len().max(1),
            self.bytes_total() as f64 / 1e6,
            self.percentile_ms(0.5),
            self.percentile_ms(0.99),
            self.percentile_ms(1.0),
            self.all_done_ms,
            self.seam_errors(),
        )
    }
}
