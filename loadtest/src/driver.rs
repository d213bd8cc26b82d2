//! A driver thread: one mio poll, a slab of connections, one read buffer. Opens its share of
//! the plan's connections at the ramp rate, sets them up, publishes on schedule once the run
//! starts, opens and closes churn connections, and returns what it measured when told to stop.
//!
//! Owns: its connections and its `ThreadStats`. May not touch: other threads' connections.
//! Talks to the coordinator only through `Control` atomics, updated once per turn (never per
//! message).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use socket2::{Domain, Protocol, Socket, Type};

use crate::conn::{Conn, ConnKind, End, Phase, PublishCtx, RecvCtx};
use crate::payload::{append_close, PublishTemplate};
use crate::plan::{ConnSpec, Plan};
use crate::schedule::Schedule;
use crate::stats::{ThreadStats, Window};
use crate::sys::{now_ns, thread_cpu_s};
use crate::targets::Targets;

/// Bytes of the per-thread read buffer (lent to each connection in turn).
const READ_BUF_BYTES: usize = 64 << 10;
/// Readiness events handled per poll.
const EVENTS_MAX: usize = 4096;
/// Publishes due are sent between every this many readiness events of one poll.
const PUBLISH_CHECK_EVERY_EVENTS: usize = 64;
/// How long the server has to answer the swarm's close before the socket is dropped.
const CLOSE_WAIT_NS: u64 = 1_000_000_000;

/// Knobs shared by every driver.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Driver threads.
    pub threads: usize,
    /// New steady connections per second (all threads together).
    pub ramp_per_s: f64,
    /// Connections per thread between connect and ready at once.
    pub setups_inflight_max: usize,
    /// Max-rate flow window: deliveries due but not received, process-wide.
    pub inflight_deliveries_max: u64,
    /// Warm-up after the start, ns (publishes stamped in it are not measured).
    pub warmup_ns: u64,
    /// Measured window after the warm-up, ns; publishing stops at its end.
    pub duration_ns: u64,
    /// Offer permessage-deflate without context takeover (`--deflate`).
    pub deflate: bool,
    /// JSON publishes carry market-data-like content (`--market-data`).
    pub market_data: bool,
}

/// Counters pushed by drivers once per turn.
#[derive(Debug, Default)]
pub struct Progress {
    /// Publishes sent.
    pub sent_total: AtomicU64,
    /// Deliveries due, all phases.
    pub due_total: AtomicU64,
    /// Deliveries received by measured subscribers, all phases.
    pub received_total: AtomicU64,
    /// Deliveries due for measured publishes.
    pub due_window: AtomicU64,
    /// Deliveries received for measured publishes.
    pub received_window: AtomicU64,
    /// Steady connections ready.
    pub conns_ready: AtomicU64,
    /// Steady connections failed or lost.
    pub conns_failed: AtomicU64,
}

/// Coordination between the coordinator and the drivers.
#[derive(Debug, Default)]
pub struct Control {
    /// When the run started, ns since the epoch (0: setting up).
    pub start_ns: AtomicU64,
    /// Drivers stop, close their connections and return.
    pub stop: AtomicBool,
    /// Drivers whose connections are all set up (or failed).
    pub threads_settled: AtomicUsize,
    /// Live counters.
    pub progress: Progress,
}

/// What every driver shares, read-only apart from `control`.
#[derive(Debug)]
pub struct Shared {
    /// The plan.
    pub plan: Plan,
    /// Where to connect.
    pub targets: Targets,
    /// TLS for every connection (`wss://`, `--tls`).
    pub tls: Option<crate::tls::TlsClient>,
    /// Source addresses (empty: the kernel picks).
    pub sources: Vec<IpAddr>,
    /// Connections per source address.
    pub ports_per_source: usize,
    /// Knobs.
    pub settings: Settings,
    /// Coordination.
    pub control: Control,
}

/// Values last pushed to `Progress`, to push deltas.
#[derive(Debug, Default, Clone, Copy)]
struct Pushed {
    sent_total: u64,
    due_total: u64,
    received_total: u64,
    due_window: u64,
    received_window: u64,
    conns_ready: u64,
    conns_failed: u64,
}

/// Where the run is, as this driver sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    SettingUp,
    Settled,
    Running,
    WindowClosed,
}

/// One driver thread's state.
#[derive(Debug)]
pub struct Driver {
    index: usize,
    shared: Arc<Shared>,
    poll: Poll,
    events: Option<Events>,
    conns: Slab<Conn>,
    specs: Vec<(usize, ConnSpec)>,
    opened: usize,
    setups_inflight: usize,
    setup_started_ns: u64,
    publisher_keys: Vec<usize>,
    /// Constant-rate publishers by next due time: a turn visits only those that are due
    /// (visiting 2,000 room members every millisecond cost more than their messages).
    publish_queue: BinaryHeap<Reverse<(u64, usize)>>,
    /// Max-rate publishers, visited every turn.
    max_rate_keys: Vec<usize>,
    churn_keys: Vec<usize>,
    read_buf: Box<[u8]>,
    /// The thread's permessage-deflate inflater (servers answer without context takeover).
    inflate: crate::conn::InflateScratch,
    stats: ThreadStats,
    pushed: Pushed,
    stage: Stage,
    window: Window,
    /// This thread's CPU time when the measured window opened (after the warm-up).
    cpu_at_window_start_s: Option<f64>,
    rng: u64,
}

impl Driver {
    /// Driver `index` of `threads`: takes every `threads`-th connection of the plan.
    pub fn new(index: usize, shared: Arc<Shared>) -> io::Result<Driver> {
        let threads = shared.settings.threads.max(1);
        let specs = shared
            .plan
            .conns
            .iter()
            .copied()
            .enumerate()
            .skip(index)
            .step_by(threads)
            .collect();
        Ok(Driver {
            index,
            poll: Poll::new()?,
            events: Some(Events::with_capacity(EVENTS_MAX)),
            conns: Slab::new(),
            specs,
            opened: 0,
            setups_inflight: 0,
            setup_started_ns: now_ns(),
            publisher_keys: Vec::new(),
            publish_queue: BinaryHeap::new(),
            max_rate_keys: Vec::new(),
            churn_keys: Vec::new(),
            read_buf: vec![0; READ_BUF_BYTES].into_boxed_slice(),
            inflate: Default::default(),
            stats: ThreadStats::default(),
            pushed: Pushed::default(),
            stage: Stage::SettingUp,
            window: Window::NEVER,
            cpu_at_window_start_s: None,
            rng: 0x9e37_79b9_7f4a_7c15 ^ (index as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9),
            shared,
        })
    }

    /// Runs until `control.stop`; returns the measurements.
    pub fn run(mut self) -> ThreadStats {
        while !self.shared.control.stop.load(Ordering::Acquire) {
            let now = now_ns();
            self.advance_stage(now);
            self.open_due(now);
            self.publish_due(now);
            self.churn_due(now);
            self.poll_once();
            self.push_progress();
        }
        if self.stage == Stage::Running {
            self.close_cpu_window();
        }
        self.close_all();
        self.stats
    }

    fn advance_stage(&mut self, now: u64) {
        let settings = &self.shared.settings;
        match self.stage {
            Stage::SettingUp if self.opened == self.specs.len() && self.setups_inflight == 0 => {
                self.shared
                    .control
                    .threads_settled
                    .fetch_add(1, Ordering::AcqRel);
                self.stage = Stage::Settled;
            }
            Stage::Settled => {
                let start_ns = self.shared.control.start_ns.load(Ordering::Acquire);
                if start_ns != 0 {
                    let window_start = start_ns + settings.warmup_ns;
                    self.window = Window {
                        start_ns: window_start,
                        end_ns: window_start + settings.duration_ns,
                    };
                    self.start_schedules(start_ns);
                    self.stage = Stage::Running;
                }
            }
            Stage::Running if now >= self.window.end_ns => {
                self.close_cpu_window();
                self.stage = Stage::WindowClosed;
            }
            Stage::Running
                if now >= self.window.start_ns && self.cpu_at_window_start_s.is_none() =>
            {
                self.cpu_at_window_start_s = Some(thread_cpu_s());
            }
            _ => {}
        }
    }

    /// CPU time spent in the measured window only: the warm-up is not counted, as it is not
    /// in the window's deliveries either.
    fn close_cpu_window(&mut self) {
        let now_cpu_s = thread_cpu_s();
        self.stats.cpu_window_s = now_cpu_s - self.cpu_at_window_start_s.unwrap_or(now_cpu_s);
    }

    fn start_schedules(&mut self, start_ns: u64) {
        let plan = &self.shared.plan;
        for &key in &self.publisher_keys {
            let Some(publisher) = self
                .conns
                .get_mut(key)
                .and_then(|c| c.session.publisher.as_deref_mut())
            else {
                continue;
            };
            let Some(spec) = plan.publishers.get(publisher.index as usize) else {
                continue;
            };
            let schedule = Schedule::new(spec.rate, start_ns, spec.phase_ns, self.window.end_ns);
            if schedule.is_max() {
                self.max_rate_keys.push(key);
            } else if let Some(first_ns) = schedule.next_due_ns() {
                self.publish_queue.push(Reverse((first_ns, key)));
            }
            publisher.schedule = Some(schedule);
        }
    }

    /// Opens steady connections at the ramp rate, bounded by the setups in flight.
    fn open_due(&mut self, now: u64) {
        let settings = &self.shared.settings;
        let per_thread = settings.ramp_per_s / settings.threads.max(1) as f64;
        let inflight_max = settings.setups_inflight_max;
        let elapsed_s = now.saturating_sub(self.setup_started_ns) as f64 / 1e9;
        let due = ((elapsed_s * per_thread) as usize + 1).min(self.specs.len());
        while self.opened < due && self.setups_inflight < inflight_max {
            let (ordinal, spec) = self.specs[self.opened];
            self.opened += 1;
            self.open_steady(ordinal, spec, now);
        }
    }

    fn open_steady(&mut self, ordinal: usize, spec: ConnSpec, now: u64) {
        let publishes = spec.publisher.is_some();
        let Some(key) = self.open(ordinal, ConnKind::Steady, publishes, now) else {
            self.stats.conns_failed += 1;
            return;
        };
        let plan = &self.shared.plan;
        let conn = &mut self.conns[key];
        if let Some(channel) = spec.subscribe {
            conn.subscribe_to(channel, &plan.routes);
        }
        if let Some(p) = spec.publisher {
            let Some(publisher) = plan.publishers.get(p as usize) else {
                return;
            };
            let name = &plan.routes.channel_names[publisher.channel as usize];
            let template = if plan.binary {
                PublishTemplate::binary(name, plan.content_bytes)
            } else if self.shared.settings.market_data {
                PublishTemplate::market_data(name, plan.content_bytes, p)
            } else {
                PublishTemplate::json(name, plan.content_bytes)
            };
            conn.publish_as(p, publisher.audience, template);
            self.publisher_keys.push(key);
        }
    }

    /// Starts a TCP connect to the connection's target (`publishes`: it carries a publisher);
    /// returns the slab key, or counts the error.
    fn open(&mut self, ordinal: usize, kind: ConnKind, publishes: bool, now: u64) -> Option<usize> {
        let shared = &self.shared;
        let source = shared
            .sources
            .get(ordinal / shared.ports_per_source.max(1))
            .copied();
        let (target, to) = shared.targets.for_conn(ordinal, publishes);
        let stream = match connect(to.addr, source) {
            Ok(stream) => stream,
            Err(e) => {
                self.stats.error(connect_error_kind(&e));
                return None;
            }
        };
        let tls = match shared.tls.as_ref().map(|t| t.session()) {
            None => None,
            Some(Ok(session)) => Some(session),
            Some(Err(_)) => {
                self.stats.error("tls_session");
                return None;
            }
        };
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let mut conn = Conn::new(stream, tls, kind, now);
        conn.target = target;
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut conn.stream, Token(key), interest)
        {
            self.stats.error(connect_error_kind(&e));
            return None;
        }
        entry.insert(conn);
        self.setups_inflight += 1;
        Some(key)
    }

    fn poll_once(&mut self) {
        let timeout = match self.stage {
            Stage::Running => Duration::from_millis(1),
            _ => Duration::from_millis(5),
        };
        let Some(mut events) = self.events.take() else {
            return;
        };
        if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                self.stats.error("poll_failed");
            }
        }
        for (i, event) in events.iter().enumerate() {
            if i % PUBLISH_CHECK_EVERY_EVENTS == PUBLISH_CHECK_EVERY_EVENTS - 1 {
                // A batch of thousands of receipts takes milliseconds: publishes falling due
                // meanwhile go out now, not after it (the swarm's own lag stays small).
                self.publish_due(now_ns());
            }
            let key = event.token().0;
            if event.is_writable() {
                self.on_writable(key);
            }
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                self.on_readable(key);
            }
        }
        self.events = Some(events);
    }

    fn on_writable(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.session.phase == Phase::Connecting {
            match conn.stream.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => return self.fail(key, connect_error_kind(&e)),
            }
            match conn.stream.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => return self.fail(key, connect_error_kind(&e)),
            }
            let nonce = self.next_nonce();
            let conn = &mut self.conns[key];
            let target = self.shared.targets.get(conn.target);
            conn.start_handshake(target, nonce, self.shared.settings.deflate);
        }
        self.flush(key);
    }

    fn on_readable(&mut self, key: usize) {
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if conn.tls.is_some() {
                return self.on_readable_tls(key);
            }
            let n = match conn.stream.read(&mut self.read_buf) {
                Ok(0) => return self.fail(key, "eof"),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.fail(key, io_error_kind(&e)),
            };
            if !self.on_plaintext(key, n) {
                return;
            }
            if n < self.read_buf.len() {
                // A short read emptied the receive queue; a later arrival raises a new edge.
                return;
            }
        }
    }

    /// TLS: ciphertext into rustls until the socket is drained, each record's plaintext
    /// handled as a plain read's bytes; handshake records written as they are produced.
    fn on_readable_tls(&mut self, key: usize) {
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            let Some(tls) = conn.tls.as_mut() else {
                return;
            };
            match tls.read_tls(&mut conn.stream) {
                Ok(0) => return self.fail(key, "eof"),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.fail(key, io_error_kind(&e)),
            }
            if tls.process_new_packets().is_err() {
                // The alert rustls queued tells the server why (best effort).
                let _ = tls.write_tls(&mut conn.stream);
                return self.fail(key, "tls");
            }
            loop {
                let Some(tls) = self.conns.get_mut(key).and_then(|c| c.tls.as_mut()) else {
                    return;
                };
                let n = match tls.reader().read(&mut self.read_buf) {
                    Ok(0) => return self.fail(key, "eof"),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => return self.fail(key, "eof"),
                };
                if !self.on_plaintext(key, n) {
                    return;
                }
            }
            self.flush(key);
        }
    }

    /// Handles `read_buf[..n]`; false when the connection ended.
    fn on_plaintext(&mut self, key: usize, n: usize) -> bool {
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        let was_ready = conn.session.phase == Phase::Ready;
        let mut ctx = RecvCtx {
            stats: &mut self.stats,
            now_ns: now_ns(),
            window: self.window,
            routes: &self.shared.plan.routes,
            inflate: &mut self.inflate,
        };
        let result = conn.on_bytes(&mut self.read_buf[..n], &mut ctx);
        let phase = conn.session.phase;
        match result {
            Err(End::Protocol(kind)) | Err(End::Handshake(kind)) => {
                self.fail(key, kind);
                return false;
            }
            Ok(()) => {}
        }
        if !was_ready && phase == Phase::Ready {
            self.on_ready(key);
        }
        self.flush(key);
        if phase == Phase::Closed {
            self.remove(key);
            return false;
        }
        true
    }

    fn on_ready(&mut self, key: usize) {
        self.setups_inflight = self.setups_inflight.saturating_sub(1);
        if let Some(conn) = self.conns.get(key) {
            if conn.session.kind == ConnKind::Churn {
                self.churn_keys.push(key);
            }
        }
    }

    fn flush(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if !conn.wants_write() {
            return;
        }
        if let Err(e) = conn.flush() {
            self.fail(key, io_error_kind(&e));
        }
    }

    /// Records why `key` ended and drops it.
    fn fail(&mut self, key: usize, kind: &str) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let (phase, conn_kind) = (conn.session.phase, conn.session.kind);
        let expected_end = matches!(phase, Phase::Closing { .. } | Phase::Closed);
        if !expected_end {
            let prefix = if phase == Phase::Ready {
                "lost"
            } else {
                "setup"
            };
            self.stats.error(&format!("{prefix}_{kind}"));
            match (conn_kind, phase) {
                (ConnKind::Steady, Phase::Ready) => self.stats.conns_lost += 1,
                (ConnKind::Steady, _) => self.stats.conns_failed += 1,
                (ConnKind::Churn, _) => {}
            }
        }
        self.remove(key);
    }

    fn remove(&mut self, key: usize) {
        if let Some(mut conn) = self.conns.try_remove(key) {
            if !matches!(
                conn.session.phase,
                Phase::Ready | Phase::Closing { .. } | Phase::Closed
            ) {
                self.setups_inflight = self.setups_inflight.saturating_sub(1);
            }
            if conn.session.kind == ConnKind::Churn {
                self.stats.churn_closed += 1;
            }
            let _ = self.poll.registry().deregister(&mut conn.stream);
        }
    }

    fn publish_due(&mut self, now: u64) {
        if self.stage != Stage::Running || self.publisher_keys.is_empty() {
            return;
        }
        let progress = &self.shared.control.progress;
        let due = progress.due_total.load(Ordering::Relaxed) + self.stats.due_total
            - self.pushed.due_total;
        let received = progress.received_total.load(Ordering::Relaxed) + self.stats.received_total
            - self.pushed.received_total;
        let mut inflight = due.saturating_sub(received);
        while let Some(&Reverse((due_ns, key))) = self.publish_queue.peek() {
            if due_ns > now {
                break;
            }
            self.publish_queue.pop();
            if let Some(next_ns) = self.publish_one(key, now, &mut inflight) {
                self.publish_queue.push(Reverse((next_ns, key)));
            }
        }
        for i in 0..self.max_rate_keys.len() {
            let key = self.max_rate_keys[i];
            self.publish_one(key, now, &mut inflight);
        }
    }

    /// Sends what publisher `key` has due; returns when its next message is due (`None`
    /// when it is gone or its schedule ended).
    fn publish_one(&mut self, key: usize, now: u64, inflight: &mut u64) -> Option<u64> {
        let conn = self.conns.get_mut(key)?;
        if conn.session.phase != Phase::Ready {
            return None;
        }
        let mut ctx = PublishCtx {
            stats: &mut self.stats,
            now_ns: now,
            window: self.window,
            inflight_deliveries: inflight,
            inflight_deliveries_max: self.shared.settings.inflight_deliveries_max,
        };
        let appended = conn.session.publish_due(&mut ctx);
        let next_ns = conn
            .session
            .publisher
            .as_ref()
            .and_then(|p| p.schedule.as_ref())
            .and_then(Schedule::next_due_ns);
        if appended {
            self.flush(key);
        }
        next_ns
    }

    /// Opens churn connections at their rate while the run publishes, and closes those whose
    /// hold time is over.
    fn churn_due(&mut self, now: u64) {
        let Some(churn) = self.shared.plan.churn else {
            return;
        };
        if self.stage != Stage::Running {
            return;
        }
        let start_ns = self.shared.control.start_ns.load(Ordering::Relaxed);
        let per_thread = churn.opens_per_s / self.shared.settings.threads.max(1) as f64;
        let elapsed_s = now.saturating_sub(start_ns) as f64 / 1e9;
        let due = (elapsed_s * per_thread) as u64;
        while now < self.window.end_ns && self.stats.churn_opened < due {
            self.stats.churn_opened += 1;
            let ordinal = self.shared.plan.conns.len() + self.stats.churn_opened as usize;
            if let Some(key) = self.open(ordinal, ConnKind::Churn, false, now) {
                self.conns[key].subscribe_to(churn.channel, &self.shared.plan.routes);
            }
        }
        self.close_churned(now, churn.hold_ns);
    }

    fn close_churned(&mut self, now: u64, hold_ns: u64) {
        let mut i = 0;
        while i < self.churn_keys.len() {
            let key = self.churn_keys[i];
            let phase = self
                .conns
                .get(key)
                .map(|c| (c.session.phase, c.session.ready_at_ns));
            match phase {
                Some((Phase::Ready, ready_at)) if now >= ready_at + hold_ns => {
                    let conn = &mut self.conns[key];
                    append_close(&mut conn.session.out, 1000);
                    conn.session.phase = Phase::Closing {
                        deadline_ns: now + CLOSE_WAIT_NS,
                    };
                    self.flush(key);
                }
                Some((Phase::Closing { deadline_ns }, _)) if now >= deadline_ns => {
                    self.stats.error("churn_close_timeout");
                    self.remove(key);
                }
                Some((Phase::Ready | Phase::Closing { .. }, _)) => {}
                _ => {
                    self.churn_keys.swap_remove(i);
                    continue;
                }
            }
            i += 1;
        }
    }

    fn push_progress(&mut self) {
        let progress = &self.shared.control.progress;
        let s = &self.stats;
        let now = Pushed {
            sent_total: s.sent_total,
            due_total: s.due_total,
            received_total: s.received_total,
            due_window: s.due_window,
            received_window: s.received_window,
            conns_ready: s.conns_ready,
            conns_failed: s.conns_failed + s.conns_lost,
        };
        let last = self.pushed;
        let pairs = [
            (&progress.sent_total, now.sent_total - last.sent_total),
            (&progress.due_total, now.due_total - last.due_total),
            (
                &progress.received_total,
                now.received_total - last.received_total,
            ),
            (&progress.due_window, now.due_window - last.due_window),
            (
                &progress.received_window,
                now.received_window - last.received_window,
            ),
            (&progress.conns_ready, now.conns_ready - last.conns_ready),
            (&progress.conns_failed, now.conns_failed - last.conns_failed),
        ];
        for (counter, delta) in pairs {
            if delta != 0 {
                counter.fetch_add(delta, Ordering::Relaxed);
            }
        }
        self.pushed = now;
    }

    /// Sends a close frame on every connection (best effort) and drops them all.
    fn close_all(&mut self) {
        for (_, conn) in self.conns.iter_mut() {
            append_close(&mut conn.session.out, 1000);
            let _ = conn.flush();
        }
        self.conns.clear();
    }

    /// 16 pseudo-random bytes for a handshake key (xorshift: the key only needs to differ
    /// between connections, §4.1's randomness protects proxies, not a load test).
    fn next_nonce(&mut self) -> [u8; 16] {
        let mut nonce = [0u8; 16];
        for half in nonce.chunks_exact_mut(8) {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            half.copy_from_slice(&self.rng.to_le_bytes());
        }
        nonce
    }

    /// This driver's index.
    pub fn index(&self) -> usize {
        self.index
    }
}

/// A non-blocking TCP connect to `target` from `source` (port chosen by the kernel).
pub fn connect(target: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    if let Some(source) = source {
        socket.bind(&SocketAddr::new(source, 0).into())?;
    }
    match socket.connect(&target.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

/// A stable label for a connect-time error.
pub fn connect_error_kind(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EMFILE) | Some(libc::ENFILE) => "connect_open_file_limit",
        Some(libc::EADDRNOTAVAIL) => "connect_no_source_port",
        Some(libc::ECONNREFUSED) => "connect_refused",
        Some(libc::ETIMEDOUT) => "connect_timed_out",
        _ => "connect_failed",
    }
}

/// A stable label for a read or write error.
pub fn io_error_kind(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::ConnectionReset => "reset",
        io::ErrorKind::BrokenPipe => "broken_pipe",
        io::ErrorKind::ConnectionAborted => "aborted",
        _ => "io_error",
    }
}
