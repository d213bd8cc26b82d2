//! `throttle`: one hot channel at a fixed publish rate, many subscribers throttled to
//! `throttle_ms`. Measures deliveries per second (the relay's work) and the server's CPU, and
//! checks what the subscribers got: seqs in order, values never older than one already seen,
//! and, after the publisher stops and one drain, the last published value of every key at every
//! subscriber (`stale_values` must be 0).

use super::*;

const CHANNEL: &str = "md.hot";

/// What one subscriber thread saw.
#[derive(Debug, Default)]
struct Seen {
    deliveries_window: u64,
    deliveries_total: u64,
    order_errors: u64,
    gaps: u64,
    errors: u64,
    /// Per subscriber: key → last counter received.
    last: Vec<HashMap<String, u64>>,
    /// Per subscriber: deliveries received.
    count: Vec<u64>,
}

/// The run's figures.
#[derive(Debug)]
pub struct ThrottleReport {
    args: ThrottleArgs,
    published_window: u64,
    window_s: f64,
    seen: Seen,
    stale_values: u64,
    server_cpu_s: Option<f64>,
    publish_errors: u64,
}

struct Flags {
    window: AtomicBool,
    stop: AtomicBool,
    ready: Barrier,
}

/// Runs the scenario.
pub fn run(args: &ThrottleArgs) -> Result<ThrottleReport, String> {
    let (url, _server) = target(&args.common, in_process_config(args.common.relay_loops))?;
    let threads = args.common.threads.max(1);
    let flags = Arc::new(Flags {
        window: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        ready: Barrier::new(threads + 1),
    });
    let failed = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (url, flags, failed) = (url.clone(), flags.clone(), failed.clone());
            let (n, ms) = (share(args.subscribers, threads, t), args.throttle_ms);
            std::thread::spawn(move || subscriber_thread(&url, n, ms, &flags, &failed))
        })
        .collect();
    flags.ready.wait();
    let mut publisher = connect(&url, 1)?.pop().ok_or("no publisher")?;
    let published = publish(&mut publisher, args, &flags);
    // Drain: three intervals (at least half a second) for the last values to go out.
    let drain =
        Duration::from_millis(u64::from(args.throttle_ms) * 3).max(Duration::from_millis(500));
    let drain_end = Instant::now() + drain;
    while Instant::now() < drain_end {
        publisher.next_event(Duration::from_millis(10));
    }
    flags.stop.store(true, Ordering::SeqCst);
    let mut seen = Seen::default();
    for h in handles {
        let part = h.join().map_err(|_| "subscriber thread panicked")??;
        seen.deliveries_window += part.deliveries_window;
        seen.deliveries_total += part.deliveries_total;
        seen.order_errors += part.order_errors;
        seen.gaps += part.gaps;
        seen.errors += part.errors;
        seen.last.extend(part.last);
        seen.count.extend(part.count);
    }
    if failed.load(Ordering::SeqCst) > 0 {
        return Err("a subscriber thread failed to set up".into());
    }
    let stale_values = stale(&seen, &published.last);
    Ok(ThrottleReport {
        args: args.clone(),
        published_window: published.window,
        window_s: published.window_s,
        seen,
        stale_values,
        server_cpu_s: published.server_cpu_s,
        publish_errors: published.errors,
    })
}

/// Subscribers × keys whose last value is not the last one published.
fn stale(seen: &Seen, last: &HashMap<String, u64>) -> u64 {
    let mut stale = 0;
    for (i, sub) in seen.last.iter().enumerate() {
        for (key, n) in last {
            if sub.get(key) != Some(n) {
                stale += 1;
                if std::env::var_os("SWARM_DEBUG_STALE").is_some() {
                    let got = seen.count.get(i);
                    eprintln!(
                        "stale: subscriber {i} key {key:?} has {:?}, last {n}, {got:?} received",
                        sub.get(key)
                    );
                }
            }
        }
    }
    stale
}

struct Published {
    window: u64,
    window_s: f64,
    errors: u64,
    last: HashMap<String, u64>,
    server_cpu_s: Option<f64>,
}

/// Publishes at the rate for warm-up + window, pacing against the clock (a late loop sends
/// its backlog at once).
fn publish(c: &mut Client, args: &ThrottleArgs, flags: &Flags) -> Published {
    let start = Instant::now();
    let (warm_end, end) = (args.warmup, args.warmup + args.duration);
    let mut out = Published {
        window: 0,
        window_s: args.duration.as_secs_f64(),
        errors: 0,
        last: HashMap::new(),
        server_cpu_s: None,
    };
    let (mut n, mut cpu_start, mut in_window) = (0u64, None, false);
    loop {
        let elapsed = start.elapsed();
        if elapsed >= end {
            break;
        }
        if !in_window && elapsed >= warm_end {
            in_window = true;
            cpu_start = cpu_of(args.common.server_pid);
            flags.window.store(true, Ordering::SeqCst);
        }
        let due = (elapsed.as_secs_f64() * args.rate) as u64;
        while n < due {
            n += 1;
            let key = (args.keys > 0).then(|| format!("k{}", n % u64::from(args.keys)));
            let body = content(n, args.size);
            let sent = match &key {
                Some(k) => c.publish_keyed(CHANNEL, k, &body, false),
                None => c.publish(CHANNEL, &body),
            };
            match sent {
                Ok(()) => {
                    out.last.insert(key.unwrap_or_default(), n);
                    out.window += u64::from(in_window);
                }
                Err(_) => out.errors += 1,
            }
        }
        c.next_event(Duration::from_micros(200));
    }
    flags.window.store(false, Ordering::SeqCst);
    out.server_cpu_s = cpu_start
        .zip(cpu_of(args.common.server_pid))
        .map(|(a, b)| b - a);
    out
}

fn subscriber_thread(
    url: &str,
    n: usize,
    throttle_ms: u32,
    flags: &Flags,
    failed: &AtomicUsize,
) -> Result<Seen, String> {
    let clients = connect(url, n).and_then(|mut clients| {
        subscribe_all(&mut clients, throttle_ms)?;
        Ok(clients)
    });
    let mut clients = match clients {
        Ok(c) => c,
        Err(e) => {
            failed.fetch_add(1, Ordering::SeqCst);
            flags.ready.wait();
            return Err(e);
        }
    };
    flags.ready.wait();
    let mut seen = Seen {
        last: vec![HashMap::new(); n],
        count: vec![0; n],
        ..Seen::default()
    };
    let mut last_seq = vec![0u64; n];
    while !flags.stop.load(Ordering::SeqCst) {
        let window = flags.window.load(Ordering::Relaxed);
        for (i, c) in clients.iter_mut().enumerate() {
            while let Some(event) = c.try_next_event() {
                seen.note(i, event, window, &mut last_seq[i]);
            }
        }
    }
    Ok(seen)
}

impl Seen {
    fn note(&mut self, i: usize, event: Event, window: bool, last_seq: &mut u64) {
        match event {
            Event::Message {
                seq, content, key, ..
            } => {
                self.deliveries_total += 1;
                self.count[i] += 1;
                self.deliveries_window += u64::from(window);
                self.order_errors += u64::from(seq <= *last_seq);
                *last_seq = seq;
                let n = counter_of(&content).unwrap_or(0);
                let last = self.last[i].entry(key.unwrap_or_default()).or_insert(0);
                self.order_errors += u64::from(n < *last);
                *last = n;
            }
            Event::Gap { .. } => self.gaps += 1,
            Event::ServerError { .. } | Event::Disconnected(_) | Event::Stopped(_) => {
                self.errors += 1
            }
            _ => {}
        }
    }
}

/// Subscribes every client with `throttle_ms` and waits for every `subscribed`.
fn subscribe_all(clients: &mut [Client], throttle_ms: u32) -> Result<(), String> {
    let options = SubscribeOptions {
        throttle_ms: Some(throttle_ms),
        binary: false,
        ..SubscribeOptions::default()
    };
    for c in clients.iter_mut() {
        c.subscribe_with(CHANNEL, options)
            .map_err(|e| e.to_string())?;
    }
    let mut pending = clients.len();
    let started = Instant::now();
    while pending > 0 {
        for c in clients.iter_mut() {
            while let Some(event) = c.try_next_event() {
                match event {
                    Event::Subscribed { throttle_ms: t, .. } if t == Some(throttle_ms) => {
                        pending -= 1
                    }
                    Event::ServerError { message } => return Err(message),
                    _ => {}
                }
            }
        }
        if started.elapsed() > SETUP_TIMEOUT {
            return Err("subscriptions not all confirmed within 60 s".into());
        }
    }
    Ok(())
}

impl ThrottleReport {
    /// Deliveries per second in the window.
    pub fn deliveries_per_s(&self) -> f64 {
        self.seen.deliveries_window as f64 / self.window_s
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> String {
        let a = &self.args;
        let cpu = self.server_cpu_s;
        serde_json::json!({
            "scenario": "throttle",
            "subscribers": a.subscribers,
            "throttle_ms": a.throttle_ms,
            "keys": a.keys,
            "rate_target": a.rate,
            "published_window": self.published_window,
            "publish_rate": self.published_window as f64 / self.window_s,
            "publish_errors": self.publish_errors,
            "window_s": self.window_s,
            "deliveries_window": self.seen.deliveries_window,
            "deliveries_total": self.seen.deliveries_total,
            "deliveries_per_s": self.deliveries_per_s(),
            "deliveries_per_subscriber_per_s": self.deliveries_per_s() / a.subscribers.max(1) as f64,
            "server_cpu_s": cpu,
            "server_cpu_pct": cpu.map(|c| 100.0 * c / self.window_s),
            "server_cpu_us_per_delivery": cpu.map(|c| 1e6 * c / self.seen.deliveries_window.max(1) as f64),
            "stale_values": self.stale_values,
            "order_errors": self.seen.order_errors,
            "gap_notices": self.seen.gaps,
            "errors": self.seen.errors,
        })
        .to_string()
    }

    /// The report as text.
    pub fn to_text(&self) -> String {
        let a = &self.args;
        let cpu = match self.server_cpu_s {
            Some(c) => format!(
                "{:.1}% of a core, {:.2} µs per delivery",
                100.0 * c / self.window_s,
                1e6 * c / self.seen.deliveries_window.max(1) as f64
            ),
            None => "not measured (give --server-pid)".into(),
        };
        format!(
            "throttle: {} subscribers at {} ms, {} keys, {:.0} publishes/s for {:.1} s\n\
             deliveries: {:.0}/s ({:.1} per subscriber per s), {} in the window\n\
             server CPU: {cpu}\n\
             stale values at the end: {}, order errors: {}, gap notices: {}, errors: {}, publish errors: {}\n",
            a.subscribers,
            a.throttle_ms,
            a.keys,
            self.published_window as f64 / self.window_s,
            self.window_s,
            self.deliveries_per_s(),
            self.deliveries_per_s() / a.subscribers.max(1) as f64,
            self.seen.deliveries_window,
            self.stale_values,
            self.seen.order_errors,
            self.seen.gaps,
            self.seen.errors,
            self.publish_errors,
        )
    }
}
