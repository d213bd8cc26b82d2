//! The NATS bridge (cluster mode, the `cluster` feature): one thread running async-nats on a
//! tokio `current_thread` runtime, between the event loops and NATS JetStream. See
//! docs/CLUSTER.md and ARCHITECTURE.md ("Cluster mode"); the design is
//! `shared/design/scale-out.md`.
//!
//! Owns: the NATS connection, the K streams (`streams.rs`), the per-channel publishers (CAS
//! numbering, coalescing, retries: `publish.rs`), the per-channel live subscriptions with
//! their continuity check and repair (`live.rs`), recovery reads (`fetch.rs`), the timed direct gets all of them use (`direct.rs`), the move away from a server in
//! lame-duck mode (`lame_duck.rs`), and the
//! queues to the loops (`out.rs`).
//!
//! Rules: the bridge never blocks a loop (loops `try_send` into a bounded queue) and a loop
//! never blocks the bridge (it pushes into a bounded queue per loop and drops + repairs when
//! full). One task (`central.rs`) owns all state; network round trips run as spawned tasks
//! whose results come back to it as messages, so no state is shared or locked.

mod central;
mod direct;
mod fetch;
mod keyed;
mod keys;
mod lame_duck;
mod live;
mod out;
mod presence;
mod publish;
mod streams;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::cluster::{ClusterStats, LoopPort};
use crate::config::Config;

/// A started bridge.
#[derive(Debug)]
pub struct Started {
    /// Stops the bridge when dropped.
    pub handle: BridgeHandle,
    /// One per loop, in loop order.
    pub ports: Vec<LoopPort>,
    /// Shared metrics.
    pub stats: Arc<ClusterStats>,
}

/// The bridge thread; dropping it stops the thread and waits for it.
#[derive(Debug)]
pub struct BridgeHandle {
    stop: Arc<AtomicBool>,
    notify: Arc<tokio::sync::Notify>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for BridgeHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.notify.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the bridge thread is given.
struct Setup {
    config: Config,
    node: String,
    wakers: Vec<Arc<mio::Waker>>,
    loop_txs: Vec<crossbeam_channel::Sender<crate::cluster::ClusterMsg>>,
    cmd_rx: crossbeam_channel::Receiver<crate::cluster::BridgeCmd>,
    notify: Arc<tokio::sync::Notify>,
    stop: Arc<AtomicBool>,
    stats: Arc<ClusterStats>,
}

/// Starts the bridge thread. Without `--nats-wait`, returns once NATS is connected and the
/// streams are checked, or fails with the reason; with it, returns at once (`/healthz` says
/// not ready until then).
pub fn start(config: &Config, wakers: &[Arc<mio::Waker>]) -> io::Result<Started> {
    let c = &config.cluster;
    let (cmd_tx, cmd_rx) = crossbeam_channel::bounded(c.command_queue_len_max);
    let notify = Arc::new(tokio::sync::Notify::new());
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(ClusterStats::default());
    let mut loop_txs = Vec::new();
    let mut ports = Vec::new();
    let node = node_name(c.node_name.as_deref());
    stats.set_node(&node);
    let node_arc: Arc<str> = Arc::from(node.as_str());
    for _ in wakers {
        let (tx, rx) = crossbeam_channel::bounded(c.loop_queue_len_max);
        loop_txs.push(tx);
        let n = notify.clone();
        ports.push(LoopPort {
            cmd: cmd_tx.clone(),
            wake: Arc::new(move || n.notify_one()),
            rx,
            stats: stats.clone(),
            node: node_arc.clone(),
        });
    }
    let setup = Setup {
        config: config.clone(),
        node,
        wakers: wakers.to_vec(),
        loop_txs,
        cmd_rx,
        notify: notify.clone(),
        stop: stop.clone(),
        stats: stats.clone(),
    };
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Result<(), String>>(1);
    let wait = c.wait;
    let thread = std::thread::Builder::new()
        .name("wsrelay-nats".into())
        .spawn(move || run_thread(setup, ready_tx))?;
    let handle = BridgeHandle {
        stop,
        notify,
        thread: Some(thread),
    };
    if !wait {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(io::Error::other(e)),
            Err(_) => return Err(io::Error::other("the NATS bridge thread ended")),
        }
    }
    Ok(Started {
        handle,
        ports,
        stats,
    })
}

fn run_thread(setup: Setup, ready: std::sync::mpsc::SyncSender<Result<(), String>>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(format!("tokio runtime: {e}")));
            return;
        }
    };
    rt.block_on(async move {
        let wait = setup.config.cluster.wait;
        let conn = loop {
            match central::connect(&setup).await {
                Ok(conn) => break conn,
                Err(e) if wait && !setup.stop.load(Ordering::Acquire) => {
                    tracing::warn!("cluster: {e}; waiting for NATS (--nats-wait)");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            }
        };
        setup.stats.set_ready(true);
        let _ = ready.send(Ok(()));
        central::run(setup, conn).await;
    });
}

/// `--node-name`, or the host name and the pid; then a boot nonce, so that a restarted relay
/// never reuses a message id of its previous run.
fn node_name(configured: Option<&str>) -> String {
    let base = match configured {
        Some(n) => n.to_string(),
        None => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| {
                    h.trim()
                        .bytes()
                        .filter(|b| b.is_ascii_alphanumeric() || *b == b'-')
                        .map(char::from)
                        .collect::<String>()
                })
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "relay".into());
            format!("{host}-{}", std::process::id())
        }
    };
    format!("{base}.{}", crate::cluster::envelope::mint_epoch())
}
