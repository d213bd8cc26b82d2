//! A driver thread of a run against any server: one mio poll and a slab of clients. Opens its
//! share of every group's clients (all before the start, or following the group's stages
//! during the run, closing the newest first on a ramp-down), sends periodic messages on
//! schedule, and returns what it measured when told to stop.
//!
//! Owns: its clients, its `ThreadStats` and `Series`. May not touch: other threads' clients.
//! Talks to the coordinator only through `AnyControl` atomics, updated once per turn.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use wsrelay::proto::frame::{encode_client_frame, OpCode};

use crate::any::conn::{AnyCounters, Client, Ctx, End, Phase};
use crate::any::scenario::{Group, Payload, Stage};
pub use crate::any::shared::{AnyControl, AnySettings, AnyShared, DriverResult};
use crate::driver::connect;
use crate::payload::{PublishTemplate, FIXED_TEST_MASK};
use crate::schedule::Schedule;
use crate::series::Series;
use crate::stats::{ThreadStats, Window};
use crate::sys::{now_ns, thread_cpu_s};

const READ_BUF_BYTES: usize = 64 << 10;
const EVENTS_MAX: usize = 4096;
/// How long the server has to answer a close before the socket is dropped.
const CLOSE_WAIT_NS: u64 = 1_000_000_000;

/// A `Ctx` for group `$g` made of the driver's fields, borrowed apart from `clients`.
macro_rules! ctx {
    ($driver:ident, $g:expr, $now:expr) => {
        Ctx {
            group: &$driver.shared.scenario.groups[$g],
            stamped: $driver.groups[$g].stamped.as_ref(),
            fixed: $driver.groups[$g].fixed.as_deref(),
            stats: &mut $driver.stats,
            series: &mut $driver.series,
            counters: &mut $driver.counters,
            now_ns: $now,
            window: $driver.window,
            rng: &mut $driver.rng,
        }
    };
}

/// A group as one driver sees it.
#[derive(Debug)]
struct GroupSlots {
    /// Index of the group's first client in the run.
    offset: u32,
    /// This thread's clients of the group (indices in the group, ascending).
    owned: Vec<u32>,
    /// Slab key of each owned client that is open (`None`: not opened, failed or closed).
    keys: Vec<Option<usize>>,
    /// Owned clients opened so far (a prefix of `owned`; closing takes from its end).
    opened: usize,
    stamped: Option<PublishTemplate>,
    fixed: Option<Vec<u8>>,
}

impl GroupSlots {
    /// Driver `index`'s share of `group` (whose first client has run index `offset`), with
    /// its periodic payload prepared.
    fn new(group: &Group, offset: u32, settings: &AnySettings, index: usize) -> GroupSlots {
        let owned: Vec<u32> = (0..group.clients_max)
            .filter(|k| settings.owns(u64::from(offset + k), index))
            .collect();
        let (stamped, fixed) = prepared_payload(group.periodic.as_ref().map(|p| &p.payload));
        GroupSlots {
            offset,
            keys: vec![None; owned.len()],
            owned,
            opened: 0,
            stamped,
            fixed,
        }
    }
}

/// A periodic payload made ready to send: a template to stamp, or a whole masked frame.
fn prepared_payload(payload: Option<&Payload>) -> (Option<PublishTemplate>, Option<Vec<u8>>) {
    match payload {
        Some(Payload::Stamped {
            bytes,
            binary: false,
        }) => (Some(PublishTemplate::echo_json(*bytes)), None),
        Some(Payload::Stamped {
            bytes,
            binary: true,
        }) => (Some(PublishTemplate::echo_binary(*bytes)), None),
        Some(Payload::Fixed { bytes, binary }) => {
            let opcode = if *binary {
                OpCode::Binary
            } else {
                OpCode::Text
            };
            let mut frame = Vec::new();
            encode_client_frame(&mut frame, true, opcode, bytes, FIXED_TEST_MASK);
            (None, Some(frame))
        }
        _ => (None, None),
    }
}

/// One driver thread.
#[derive(Debug)]
pub struct AnyDriver {
    shared: Arc<AnyShared>,
    poll: Poll,
    events: Option<Events>,
    clients: Slab<Client>,
    groups: Vec<GroupSlots>,
    setups_inflight: usize,
    setup_started_ns: u64,
    send_queue: BinaryHeap<Reverse<(u64, usize)>>,
    read_buf: Box<[u8]>,
    stats: ThreadStats,
    series: Series,
    counters: AnyCounters,
    started: bool,
    settled: bool,
    window: Window,
    end_ns: u64,
    cpu_at_window_start_s: Option<f64>,
    cpu_closed: bool,
    conns_open: u64,
    conns_open_pushed: u64,
    closing_checked_ns: u64,
    pushed: (u64, u64, u64),
    rng: u64,
}

impl AnyDriver {
    /// Driver `index`: takes every client whose run index ≡ `index` (mod threads).
    pub fn new(index: usize, shared: Arc<AnyShared>) -> io::Result<AnyDriver> {
        let settings = &shared.settings;
        let offsets = shared.scenario.group_offsets();
        let groups = shared
            .scenario
            .groups
            .iter()
            .zip(offsets)
            .map(|(group, offset)| GroupSlots::new(group, offset as u32, settings, index))
            .collect();
        Ok(AnyDriver {
            poll: Poll::new()?,
            events: Some(Events::with_capacity(EVENTS_MAX)),
            clients: Slab::new(),
            groups,
            setups_inflight: 0,
            setup_started_ns: now_ns(),
            send_queue: BinaryHeap::new(),
            read_buf: vec![0; READ_BUF_BYTES].into_boxed_slice(),
            stats: ThreadStats::default(),
            series: Series::default(),
            counters: AnyCounters::default(),
            started: false,
            settled: false,
            window: Window::NEVER,
            end_ns: u64::MAX,
            cpu_at_window_start_s: None,
            cpu_closed: false,
            conns_open: 0,
            conns_open_pushed: 0,
            closing_checked_ns: 0,
            pushed: (0, 0, 0),
            rng: 0x9e37_79b9_7f4a_7c15 ^ (index as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9),
            shared,
        })
    }

    /// Runs until `control.stop`; returns the measurements.
    pub fn run(mut self) -> DriverResult {
        while !self.shared.control.stop.load(Ordering::Acquire) {
            let now = now_ns();
            self.advance(now);
            self.open_setup_clients(now);
            self.follow_stages(now);
            self.send_due(now);
            self.poll_once();
            self.expire_closing(now);
            self.push_progress();
        }
        self.close_cpu_window();
        for (_, client) in self.clients.iter_mut() {
            client.start_close(0);
            let _ = client.flush();
        }
        self.clients.clear();
        DriverResult {
            stats: self.stats,
            series: self.series,
            counters: self.counters,
        }
    }

    fn advance(&mut self, now: u64) {
        let control = &self.shared.control;
        if !self.settled && self.setup_done() {
            self.settled = true;
            control.threads_settled.fetch_add(1, Ordering::AcqRel);
        }
        if !self.started {
            let start_ns = control.start_ns.load(Ordering::Acquire);
            if start_ns != 0 && self.settled {
                let scenario = &self.shared.scenario;
                let window_start = start_ns + scenario.warmup_ns;
                self.window = Window {
                    start_ns: window_start,
                    end_ns: window_start + scenario.duration_ns,
                };
                self.end_ns = self.window.end_ns;
                self.series = Series::new(start_ns);
                self.started = true;
                self.start_schedules(start_ns);
            }
            return;
        }
        if self.cpu_at_window_start_s.is_none() && now >= self.window.start_ns {
            self.cpu_at_window_start_s = Some(thread_cpu_s());
        }
        if now >= self.window.end_ns {
            self.close_cpu_window();
        }
    }

    fn close_cpu_window(&mut self) {
        if self.cpu_closed || !self.started {
            return;
        }
        self.cpu_closed = true;
        let now_cpu_s = thread_cpu_s();
        self.stats.cpu_window_s = now_cpu_s - self.cpu_at_window_start_s.unwrap_or(now_cpu_s);
    }

    /// Whether every client of the groups without stages was opened and set up.
    fn setup_done(&self) -> bool {
        let scenario = &self.shared.scenario;
        self.setups_inflight == 0
            && self
                .groups
                .iter()
                .zip(&scenario.groups)
                .all(|(slots, group)| !group.stages.is_empty() || slots.opened == slots.owned.len())
    }

    /// Opens the clients of groups without stages at the ramp rate, before the start.
    fn open_setup_clients(&mut self, now: u64) {
        if self.settled {
            return;
        }
        let settings = self.shared.settings.clone();
        let per_thread = settings.ramp_per_s / settings.threads.max(1) as f64;
        let elapsed_s = now.saturating_sub(self.setup_started_ns) as f64 / 1e9;
        let mut budget = (elapsed_s * per_thread) as usize + 1;
        let opened_so_far: usize = self.groups.iter().map(|g| g.opened).sum();
        budget = budget.saturating_sub(opened_so_far);
        for g in 0..self.groups.len() {
            if !self.shared.scenario.groups[g].stages.is_empty() {
                continue;
            }
            while budget > 0
                && self.groups[g].opened < self.groups[g].owned.len()
                && self.setups_inflight < settings.setups_inflight_max
            {
                self.open_next(g, now);
                budget -= 1;
            }
        }
    }

    /// Opens or closes clients of staged groups to follow their stages.
    fn follow_stages(&mut self, now: u64) {
        if !self.started {
            return;
        }
        let start_ns = self.shared.control.start_ns.load(Ordering::Relaxed);
        let shared = self.shared.clone();
        for (g, group) in shared.scenario.groups.iter().enumerate() {
            if group.stages.is_empty() {
                continue;
            }
            let target = Stage::clients_at(&group.stages, now.saturating_sub(start_ns));
            let owned_target = self.groups[g].owned.partition_point(|&k| k < target);
            while self.groups[g].opened < owned_target
                && self.setups_inflight < shared.settings.setups_inflight_max
            {
                self.open_next(g, now);
            }
            while self.groups[g].opened > owned_target {
                let slots = &mut self.groups[g];
                slots.opened -= 1;
                if let Some(key) = slots.keys[slots.opened].take() {
                    self.counters.ramped_down_total += 1;
                    self.close_client(key, now);
                }
            }
        }
    }

    /// Closes a client for a ramp-down: a close frame once the handshake is done, else the
    /// socket is dropped.
    fn close_client(&mut self, key: usize, now: u64) {
        let Some(client) = self.clients.get_mut(key) else {
            return;
        };
        match client.phase {
            Phase::Connecting | Phase::Handshaking => {
                self.setups_inflight = self.setups_inflight.saturating_sub(1);
                return self.remove(key);
            }
            Phase::Opening { .. } => {
                self.setups_inflight = self.setups_inflight.saturating_sub(1);
            }
            Phase::Ready => self.conns_open = self.conns_open.saturating_sub(1),
            Phase::Closing { .. } | Phase::Closed => return,
        }
        client.start_close(now + CLOSE_WAIT_NS);
        self.flush(key);
    }

    fn open_next(&mut self, g: usize, now: u64) {
        let slots = &mut self.groups[g];
        let position = slots.opened;
        slots.opened += 1;
        let group_client = slots.owned[position];
        let client_index = slots.offset + group_client;
        let group = &self.shared.scenario.groups[g];
        let Some(target) = group
            .urls
            .get(client_index as usize % group.urls.len().max(1))
        else {
            return;
        };
        let url = client_index as usize % group.urls.len().max(1);
        let tls = match self.shared.tls[g][url].as_ref().map(|t| t.session()) {
            None => None,
            Some(Ok(session)) => Some(session),
            Some(Err(_)) => {
                self.stats.conns_failed += 1;
                return self.count_error("setup_tls_session", now);
            }
        };
        let stream = match connect(target.addr, None) {
            Ok(stream) => stream,
            Err(e) => {
                self.stats.conns_failed += 1;
                self.count_error(crate::driver::connect_error_kind(&e), now);
                return;
            }
        };
        let ids = (client_index, group_client, g as u32);
        let mut client = Client::new((stream, tls), ids, group, now);
        let entry = self.clients.vacant_entry();
        let key = entry.key();
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut client.stream, Token(key), interest)
        {
            self.stats.conns_failed += 1;
            self.count_error(crate::driver::connect_error_kind(&e), now);
            return;
        }
        entry.insert(client);
        self.groups[g].keys[position] = Some(key);
        self.setups_inflight += 1;
    }

    fn count_error(&mut self, kind: &str, now: u64) {
        self.stats.error(kind);
        self.series.error(now);
    }

    fn start_schedules(&mut self, start_ns: u64) {
        let keys: Vec<usize> = self
            .clients
            .iter()
            .filter(|(_, c)| c.phase == Phase::Ready)
            .map(|(key, _)| key)
            .collect();
        for key in keys {
            self.start_schedule(key, start_ns);
        }
    }

    /// Starts client `key`'s periodic messages from `from_ns` (spread over one interval
    /// across the group's clients).
    fn start_schedule(&mut self, key: usize, from_ns: u64) {
        let Some(client) = self.clients.get_mut(key) else {
            return;
        };
        let group = &self.shared.scenario.groups[client.group as usize];
        let Some(periodic) = &group.periodic else {
            return;
        };
        let phase_ns = match periodic.rate {
            crate::schedule::Rate::PerSecond(per_s) => {
                (1e9 / per_s * f64::from(client.group_client) / f64::from(group.clients_max.max(1)))
                    as u64
            }
            crate::schedule::Rate::Max => 0,
        };
        let schedule = Schedule::new(periodic.rate, from_ns, phase_ns, self.end_ns);
        if let Some(first_ns) = schedule.next_due_ns() {
            self.send_queue.push(Reverse((first_ns, key)));
        }
        client.schedule = Some(schedule);
    }

    fn send_due(&mut self, now: u64) {
        while let Some(&Reverse((due_ns, key))) = self.send_queue.peek() {
            if due_ns > now {
                break;
            }
            self.send_queue.pop();
            if let Some(next_ns) = self.send_one(key, now) {
                self.send_queue.push(Reverse((next_ns, key)));
            }
        }
    }

    fn send_one(&mut self, key: usize, now: u64) -> Option<u64> {
        let client = self.clients.get_mut(key)?;
        if client.phase != Phase::Ready {
            return None;
        }
        let g = client.group as usize;
        let mut ctx = ctx!(self, g, now);
        let appended = client.send_due(&mut ctx);
        let next_ns = client.schedule.as_ref().and_then(Schedule::next_due_ns);
        if appended {
            self.flush(key);
        }
        next_ns
    }

    fn poll_once(&mut self) {
        let timeout = if self.started {
            Duration::from_millis(1)
        } else {
            Duration::from_millis(5)
        };
        let Some(mut events) = self.events.take() else {
            return;
        };
        if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                self.count_error("poll_failed", now_ns());
            }
        }
        for (i, event) in events.iter().enumerate() {
            if i % 64 == 63 {
                self.send_due(now_ns());
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
        let Some(client) = self.clients.get_mut(key) else {
            return;
        };
        if client.phase == Phase::Connecting {
            match client.stream.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => {
                    return self.fail(key, crate::driver::connect_error_kind(&e));
                }
            }
            match client.stream.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => return self.fail(key, crate::driver::connect_error_kind(&e)),
            }
            let nonce = self.next_nonce();
            let shared = self.shared.clone();
            let Some(client) = self.clients.get_mut(key) else {
                return;
            };
            let (g, index) = (client.group as usize, client.client as usize);
            let group = &shared.scenario.groups[g];
            let Some(target) = group.urls.get(index % group.urls.len().max(1)) else {
                return self.fail(key, "no_url");
            };
            let mut ctx = ctx!(self, g, now_ns());
            client.start_handshake(target, nonce, &mut ctx);
        }
        self.flush(key);
    }

    fn on_readable(&mut self, key: usize) {
        loop {
            let Some(client) = self.clients.get_mut(key) else {
                return;
            };
            if client.tls.is_some() {
                return self.on_readable_tls(key);
            }
            let n = match client.stream.read(&mut self.read_buf) {
                Ok(0) => return self.fail(key, "eof"),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.fail(key, crate::driver::io_error_kind(&e)),
            };
            if !self.on_plaintext(key, n) || n < self.read_buf.len() {
                return;
            }
        }
    }

    /// `wss://`: ciphertext into rustls until the socket is drained, each record's plaintext
    /// handled as a plain read's bytes; handshake records written as they are produced (as
    /// the relay scenarios' driver does).
    fn on_readable_tls(&mut self, key: usize) {
        loop {
            let Some(client) = self.clients.get_mut(key) else {
                return;
            };
            let Some(tls) = client.tls.as_mut() else {
                return;
            };
            match tls.read_tls(&mut client.stream) {
                Ok(0) => return self.fail(key, "eof"),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.fail(key, crate::driver::io_error_kind(&e)),
            }
            if tls.process_new_packets().is_err() {
                // The alert rustls queued tells the server why (best effort).
                let _ = tls.write_tls(&mut client.stream);
                return self.fail(key, "tls");
            }
            loop {
                let Some(tls) = self.clients.get_mut(key).and_then(|c| c.tls.as_mut()) else {
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

    /// Handles `read_buf[..n]`; false when the client ended.
    fn on_plaintext(&mut self, key: usize, n: usize) -> bool {
        let Some(client) = self.clients.get_mut(key) else {
            return false;
        };
        let before = client.phase;
        let was_ready = before == Phase::Ready;
        let g = client.group as usize;
        let now = now_ns();
        let mut ctx = ctx!(self, g, now);
        let result = client.on_bytes(&mut self.read_buf[..n], &mut ctx);
        let phase = client.phase;
        if let Err(End::Protocol(kind) | End::Handshake(kind)) = result {
            self.fail(key, kind);
            return false;
        }
        if !was_ready && phase == Phase::Ready {
            self.on_ready(key, now);
        }
        self.flush(key);
        if phase == Phase::Closed {
            self.on_server_close(key, before);
            return false;
        }
        self.clients.contains(key)
    }

    /// The close handshake ended (phase `before` the bytes that closed it): a close the swarm
    /// started, a ready client the server closed, or a client the server closed during setup
    /// (a failed setup).
    fn on_server_close(&mut self, key: usize, before: Phase) {
        match before {
            Phase::Closing { .. } | Phase::Closed => {}
            Phase::Ready => self.conns_open = self.conns_open.saturating_sub(1),
            Phase::Connecting | Phase::Handshaking | Phase::Opening { .. } => {
                self.setups_inflight = self.setups_inflight.saturating_sub(1);
                self.stats.conns_failed += 1;
                self.count_error("setup_closed_by_server", now_ns());
            }
        }
        self.remove(key);
    }

    fn on_ready(&mut self, key: usize, now: u64) {
        self.setups_inflight = self.setups_inflight.saturating_sub(1);
        self.conns_open += 1;
        if self.started {
            self.start_schedule(key, now);
        }
    }

    fn flush(&mut self, key: usize) {
        let Some(client) = self.clients.get_mut(key) else {
            return;
        };
        if !client.wants_write() {
            return;
        }
        if let Err(e) = client.flush() {
            self.fail(key, crate::driver::io_error_kind(&e));
        }
    }

    /// Records why `key` ended (unless it was closing) and drops it.
    fn fail(&mut self, key: usize, kind: &str) {
        let Some(client) = self.clients.get(key) else {
            return;
        };
        let phase = client.phase;
        if !matches!(phase, Phase::Closing { .. } | Phase::Closed) {
            let prefix = if phase == Phase::Ready {
                "lost"
            } else {
                "setup"
            };
            self.count_error(&format!("{prefix}_{kind}"), now_ns());
            match phase {
                Phase::Ready => {
                    self.stats.conns_lost += 1;
                    self.conns_open = self.conns_open.saturating_sub(1);
                }
                _ => {
                    self.stats.conns_failed += 1;
                    self.setups_inflight = self.setups_inflight.saturating_sub(1);
                }
            }
        }
        self.remove(key);
    }

    fn remove(&mut self, key: usize) {
        if let Some(mut client) = self.clients.try_remove(key) {
            let _ = self.poll.registry().deregister(&mut client.stream);
            if let Some(slots) = self.groups.get_mut(client.group as usize) {
                if let Ok(position) = slots.owned.binary_search(&client.group_client) {
                    if slots.keys[position] == Some(key) {
                        slots.keys[position] = None;
                    }
                }
            }
        }
    }

    /// Drops clients whose close was not answered in time (checked every 10 ms).
    fn expire_closing(&mut self, now: u64) {
        if now < self.closing_checked_ns + 10_000_000 {
            return;
        }
        self.closing_checked_ns = now;
        let expired: Vec<usize> = self
            .clients
            .iter()
            .filter(
                |(_, c)| matches!(c.phase, Phase::Closing { deadline_ns } if now >= deadline_ns),
            )
            .map(|(key, _)| key)
            .collect();
        for key in expired {
            self.count_error("close_timeout", now);
            self.remove(key);
        }
    }

    fn push_progress(&mut self) {
        let control = &self.shared.control;
        let s = &self.stats;
        let now = (s.sent_total, s.due_total, s.received_total);
        let pairs = [
            (&control.sent_total, now.0 - self.pushed.0),
            (&control.due_total, now.1 - self.pushed.1),
            (&control.received_total, now.2 - self.pushed.2),
        ];
        for (counter, delta) in pairs {
            if delta != 0 {
                counter.fetch_add(delta, Ordering::Relaxed);
            }
        }
        self.pushed = now;
        if self.conns_open > self.conns_open_pushed {
            control
                .conns_open
                .fetch_add(self.conns_open - self.conns_open_pushed, Ordering::Relaxed);
        } else if self.conns_open < self.conns_open_pushed {
            control
                .conns_open
                .fetch_sub(self.conns_open_pushed - self.conns_open, Ordering::Relaxed);
        }
        self.conns_open_pushed = self.conns_open;
    }

    fn next_nonce(&mut self) -> [u8; 16] {
        let mut nonce = [0u8; 16];
        for half in nonce.chunks_exact_mut(8) {
            half.copy_from_slice(&crate::any::template::next_random(&mut self.rng).to_le_bytes());
        }
        nonce
    }
}
