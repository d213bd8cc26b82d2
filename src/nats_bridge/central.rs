//! The bridge's one task: owns every piece of state, takes loop commands, results of the
//! spawned network round trips, live messages and connection events, in one `select!` loop.
//! After each wake it drains whatever else is ready, then pushes to the loops and wakes each
//! loop once (the design's batching rule).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::stream::Stream;
use async_nats::jetstream::Context;
use async_nats::{Client, ConnectOptions, Event, ServerAddr};
use bytes::Bytes;
use tokio::sync::mpsc;

use super::direct::Store;
use super::out::Outs;
use super::Setup;
use crate::cluster::stats::Stat;
use crate::cluster::{subject, BridgeCmd, ClusterStats};
use crate::conn_id::LoopId;

/// Live messages and subscription heads waiting for the central task. Full: the forwarding
/// task waits, async-nats buffers (65,536 per subscription) and beyond that reports a slow
/// consumer, which makes every live channel re-read its head (repair).
const LIVE_QUEUE_LEN_MAX: usize = 65_536;
/// Items handled per wake before the loops are served (the rest right after).
const BATCH_MAX: usize = 4096;
/// Per-attempt wait for a JetStream reply (well below `--nats-publish-retry`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// A connected bridge.
pub(super) struct Conn {
    client: Client,
    js: Context,
    streams: Vec<Stream>,
    key_streams: Vec<Stream>,
    events: mpsc::UnboundedReceiver<Event>,
}

/// Connects to NATS and creates or checks the streams.
pub(super) async fn connect(setup: &Setup) -> Result<Conn, String> {
    let c = &setup.config.cluster;
    let mut addrs = Vec::new();
    for url in &c.nats_urls {
        let addr: ServerAddr = url
            .parse()
            .map_err(|e| format!("--nats {url}: not a NATS URL: {e}"))?;
        addrs.push(addr);
    }
    let (ev_tx, events) = mpsc::unbounded_channel();
    let mut opts = ConnectOptions::new()
        .name(&setup.node)
        .connection_timeout(Duration::from_secs(2))
        .request_timeout(Some(REQUEST_TIMEOUT))
        .reconnect_delay_callback(reconnect_delay)
        .event_callback(move |ev| {
            // Unbounded: events are few (connects, disconnects, slow consumers).
            let _ = ev_tx.send(ev);
            async {}
        });
    if let Some(token) = &c.token {
        opts = opts.token(token.clone());
    }
    if let Some(path) = &c.creds {
        opts = opts
            .credentials_file(path)
            .await
            .map_err(|e| format!("--nats-creds {}: {e}", path.display()))?;
    }
    let client = opts
        .connect(addrs)
        .await
        .map_err(|e| format!("cannot connect to NATS at {}: {e}", c.nats_urls.join(",")))?;
    let js = async_nats::jetstream::ContextBuilder::new()
        .timeout(REQUEST_TIMEOUT)
        .build(client.clone());
    let streams = super::streams::ensure(&js, &setup.config).await?;
    let key_streams = super::streams::ensure_keys(&js, &setup.config).await?;
    setup.stats.set_connected(true);
    note_server(&setup.stats, &client);
    Ok(Conn {
        client,
        js,
        streams,
        key_streams,
        events,
    })
}

/// Records the server of the current connection (its INFO) for `/stats`.
fn note_server(stats: &ClusterStats, client: &Client) {
    let info = client.server_info();
    stats.set_server(crate::cluster::stats::NatsServer {
        name: info.server_name,
        version: info.version,
        host: info.host,
        port: info.port,
    });
}

/// [`note_server`] now and again shortly: async-nats sends `Connected` before it publishes
/// the new connection's INFO, so the first read may still be the previous server's.
fn note_server_soon(stats: &Arc<ClusterStats>, client: &Client) {
    note_server(stats, client);
    let (stats, client) = (stats.clone(), client.clone());
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(250)).await;
        note_server(&stats, &client);
    });
}

/// async-nats's backoff (2^(n-1) ms up to 4 s) with jitter, so relays do not reconnect in
/// step after a server loss.
fn reconnect_delay(attempts: usize) -> Duration {
    let base = 1u64 << attempts.min(12);
    let capped = base.min(4000);
    Duration::from_millis(capped / 2 + jitter_ms(capped / 2 + 1))
}

/// A pseudo-random number of ms below `below` (std's hasher keys; no crate needed).
pub(super) fn jitter_ms(below: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(crate::clock::Clock::now_ns());
    h.finish() % below.max(1)
}

/// A head read: the last message of a channel's subject (`None`: the channel is empty).
pub(super) type HeadRead = Result<Option<StreamMessage>, String>;

/// Results of spawned round trips, back to the central task.
pub(super) enum Done {
    /// A publisher's head read.
    PubHead { channel: Arc<str>, result: HeadRead },
    /// A publish attempt's outcome.
    Published {
        channel: Arc<str>,
        sent_ns: u64,
        result: Result<PublishAck, PublishErrorKind>,
    },
    /// The successor of an ambiguous batch's CAS value.
    Successor { channel: Arc<str>, result: HeadRead },
    /// A backoff ended: send the in-flight batch again.
    Resend { channel: Arc<str> },
    /// Messages fetched to close a gap (stream order).
    Repaired {
        channel: Arc<str>,
        gen: u64,
        msgs: Vec<StreamMessage>,
        complete: bool,
    },
    /// A head re-read of a live channel (reconnect, slow consumer, quiet tail).
    ResyncHead {
        channel: Arc<str>,
        gen: u64,
        result: HeadRead,
    },
    /// A key-store update (keyed snapshots) ended: the seqs found lost, or the error.
    Applied {
        channel: Arc<str>,
        job: Box<super::keys::ApplyJob>,
        cache: Box<super::keys::KeyCache>,
        result: Result<u64, String>,
    },
    /// A keyed snapshot read (or brought further along the stream).
    SnapshotRead {
        channel: Arc<str>,
        gen: u64,
        result: Result<super::keys::Folded, String>,
    },
    /// A lame-duck reconnect was asked (`false`: no other server to go to).
    LameDuckSwitch(bool),
    /// A recovery range.
    Fetched {
        channel: Arc<str>,
        owner: LoopId,
        ticket: u64,
        frames: Option<Vec<Bytes>>,
    },
}

/// What a live subscription's task forwards, in order.
pub(super) struct LiveEvent {
    pub channel: Arc<str>,
    pub gen: u64,
    pub kind: LiveKind,
}

/// The head read right after the SUB, then the live messages.
pub(super) enum LiveKind {
    Head(HeadRead),
    Msg(async_nats::Message),
}

/// What spawned tasks need.
#[derive(Clone)]
pub(super) struct Io {
    pub client: Client,
    pub js: Context,
    pub streams: Vec<Stream>,
    /// The key stores (`--snapshot-for`; empty without).
    pub key_streams: Vec<Stream>,
    pub shards: u32,
    pub stats: Arc<ClusterStats>,
    pub done: mpsc::UnboundedSender<Done>,
    pub live: mpsc::Sender<LiveEvent>,
}

impl Io {
    /// The stream of `channel`, for (timed) direct gets.
    pub fn stream(&self, channel: &str) -> Option<Store> {
        let k = subject::shard_of(channel, self.shards) as usize;
        let stream = self.streams.get(k)?.clone();
        Some(Store::new(stream, self.stats.clone()))
    }

    /// The key store of `channel` (`None` without `--snapshot-for`).
    pub fn key_stream(&self, channel: &str) -> Option<Stream> {
        let k = subject::shard_of(channel, self.shards) as usize;
        self.key_streams.get(k).cloned()
    }

    /// Runs `fut` on the runtime and sends its result to the central task.
    pub fn spawn<F>(&self, fut: F)
    where
        F: std::future::Future<Output = Done> + Send + 'static,
    {
        let done = self.done.clone();
        tokio::spawn(async move {
            let _ = done.send(fut.await);
        });
    }
}

/// Settings the state machines read.
pub(super) struct Cfg {
    pub node: String,
    pub batch_max: usize,
    pub queue_max: usize,
    pub retry_max_ns: u64,
    pub payload_budget: usize,
    pub fetch_steps_max: usize,
    /// The configuration (keyed snapshots: `keyed.rs`, `Config::keyed_in_cluster`).
    pub config: Arc<crate::config::Config>,
}

/// All of the bridge's state.
pub(super) struct Bridge {
    pub io: Io,
    pub cfg: Cfg,
    pub stats: Arc<ClusterStats>,
    pub out: Outs,
    pub pubs: HashMap<Arc<str>, super::publish::Publisher>,
    pub lives: HashMap<Arc<str>, super::live::Live>,
    pub next_gen: u64,
    pub msg_counter: u64,
    pub disconnected: bool,
    /// Presence across relays (`--presence-for`; `presence.rs`).
    pub presence: Option<super::presence::PresenceNet>,
    /// Leaving a lame-duck server (`lame_duck.rs`).
    pub lame: super::lame_duck::LameDuck,
}

/// Serves until the relay stops.
pub(super) async fn run(setup: Setup, conn: Conn) {
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let (live_tx, mut live_rx) = mpsc::channel(LIVE_QUEUE_LEN_MAX);
    let (presence_tx, mut presence_rx) = mpsc::channel(super::presence::IN_QUEUE_LEN_MAX);
    let Conn {
        client,
        js,
        streams,
        key_streams,
        events,
    } = conn;
    let io = Io {
        client,
        js,
        streams,
        key_streams,
        shards: setup.config.cluster.shards,
        stats: setup.stats.clone(),
        done: done_tx,
        live: live_tx,
    };
    let mut b = new_bridge(&setup, io, presence_tx);
    let mut events = events;
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !setup.stop.load(Ordering::Acquire) {
        tokio::select! {
            _ = setup.notify.notified() => b.drain_cmds(&setup),
            Some(d) = done_rx.recv() => b.on_done(d),
            Some(ev) = live_rx.recv() => b.on_live_event(ev),
            Some(e) = events.recv() => b.on_event(e),
            Some(ev) = presence_rx.recv() => b.on_presence_event(ev),
            _ = tick.tick() => b.lame_duck_tick(),
        }
        for _ in 0..BATCH_MAX {
            match presence_rx.try_recv() {
                Ok(ev) => b.on_presence_event(ev),
                Err(_) => break,
            }
        }
        for _ in 0..BATCH_MAX {
            match live_rx.try_recv() {
                Ok(ev) => b.on_live_event(ev),
                Err(_) => break,
            }
        }
        for _ in 0..BATCH_MAX {
            match done_rx.try_recv() {
                Ok(d) => b.on_done(d),
                Err(_) => break,
            }
        }
        b.presence_turn();
        b.out.flush();
    }
    if let Some(p) = b.presence.as_ref() {
        p.bye(&b.io.client).await;
    }
}

/// The bridge's state around its connection (and presence's, with `--presence-for`).
fn new_bridge(
    setup: &Setup,
    io: Io,
    presence_tx: mpsc::Sender<super::presence::PresenceEvent>,
) -> Bridge {
    let c = &setup.config.cluster;
    let max_payload = io.client.server_info().max_payload.max(64 * 1024);
    let presence = (!setup.config.presence_patterns.is_empty()).then(|| {
        super::presence::PresenceNet::start(
            &io.client,
            &setup.node,
            c.shards,
            max_payload.saturating_sub(16 * 1024),
            presence_tx,
            setup.stats.clone(),
            c.presence_timeout,
        )
    });
    Bridge {
        io,
        cfg: Cfg {
            node: setup.node.clone(),
            batch_max: c.publish_batch_max,
            queue_max: c.publish_queue_len_max,
            retry_max_ns: c.publish_retry_max.as_nanos() as u64,
            payload_budget: max_payload.saturating_sub(16 * 1024),
            fetch_steps_max: setup.config.history_size.max(1) + 2,
            config: Arc::new(setup.config.clone()),
        },
        stats: setup.stats.clone(),
        out: Outs::new(&setup.loop_txs, &setup.wakers),
        pubs: HashMap::new(),
        lives: HashMap::new(),
        next_gen: 0,
        msg_counter: 0,
        disconnected: false,
        presence,
        lame: super::lame_duck::LameDuck::Off,
    }
}

impl Bridge {
    fn drain_cmds(&mut self, setup: &Setup) {
        let mut n = 0;
        while let Ok(cmd) = setup.cmd_rx.try_recv() {
            n += 1;
            match cmd {
                BridgeCmd::Publish(p) => self.on_publish(p),
                BridgeCmd::Watch { channel, owner } => self.on_watch(channel, owner),
                BridgeCmd::Unwatch { channel } => self.on_unwatch(&channel),
                BridgeCmd::SnapshotLoad { channel } => self.spawn_load(&channel, Duration::ZERO),
                BridgeCmd::Fetch {
                    channel,
                    owner,
                    ticket,
                    after,
                    upto,
                    epoch,
                } => self.on_fetch(channel, owner, ticket, (after, upto), epoch),
                BridgeCmd::PresenceTrack {
                    channel,
                    owner,
                    gen,
                } => self.on_presence_track(channel, owner, gen),
                BridgeCmd::PresenceUntrack { channel } => self.on_presence_untrack(&channel),
                BridgeCmd::PresenceLocal {
                    channel,
                    joined,
                    member,
                } => self.on_presence_local(&channel, joined, member),
            }
            if n == BATCH_MAX {
                setup.notify.notify_one(); // the rest after the loops are served
                break;
            }
        }
        self.stats.set_queue_depth(setup.cmd_rx.len() as u64);
    }

    fn on_done(&mut self, d: Done) {
        match d {
            Done::PubHead { channel, result } => self.on_pub_head(&channel, result),
            Done::Published {
                channel,
                sent_ns,
                result,
            } => self.on_published(&channel, sent_ns, result),
            Done::Successor { channel, result } => self.on_successor(&channel, result),
            Done::Resend { channel } => self.send_inflight(&channel),
            Done::Repaired {
                channel,
                gen,
                msgs,
                complete,
            } => self.on_repaired(&channel, gen, msgs, complete),
            Done::ResyncHead {
                channel,
                gen,
                result,
            } => self.on_resync_head(&channel, gen, result),
            Done::LameDuckSwitch(asked) => self.on_lame_duck_switch(asked),
            Done::Applied {
                channel,
                job,
                cache,
                result,
            } => self.on_applied(&channel, *job, *cache, result),
            Done::SnapshotRead {
                channel,
                gen,
                result,
            } => self.on_snapshot_read(&channel, gen, result),
            Done::Fetched {
                channel,
                owner,
                ticket,
                frames,
            } => {
                let msg = crate::cluster::ClusterMsg::Fetched {
                    channel,
                    ticket,
                    frames,
                };
                self.out.control(owner, msg);
            }
        }
    }

    fn on_event(&mut self, e: Event) {
        match e {
            Event::Connected => {
                self.stats.set_connected(true);
                note_server_soon(&self.stats, &self.io.client);
                if std::mem::take(&mut self.disconnected) {
                    self.stats.inc(Stat::Reconnects);
                    tracing::info!("cluster: reconnected to NATS; re-reading live heads");
                    self.resync_all();
                    self.presence_resync();
                }
                self.lame_duck_connected();
            }
            Event::Disconnected => {
                self.stats.set_connected(false);
                self.stats.inc(Stat::EventDisconnected);
                self.disconnected = true;
                tracing::warn!("cluster: disconnected from NATS");
            }
            Event::SlowConsumer(_) => {
                self.stats.inc(Stat::SlowConsumer);
                self.resync_all();
                self.presence_resync();
            }
            Event::LameDuckMode => self.on_lame_duck(),
            Event::ServerError(e) => {
                self.stats.inc(Stat::EventServerError);
                tracing::warn!("cluster: NATS server error: {e}");
            }
            Event::ClientError(e) => {
                self.stats.inc(Stat::EventClientError);
                tracing::warn!("cluster: NATS client error: {e}");
            }
            other => tracing::info!("cluster: NATS event: {other}"),
        }
    }
}
