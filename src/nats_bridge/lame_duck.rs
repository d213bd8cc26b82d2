//! NATS lame-duck mode (docs/CLUSTER.md, "Lame-duck mode"). A server put into lame duck
//! (`nats-server --signal ldm=<pid>`, before maintenance) stops accepting connections, tells
//! its clients (an INFO with `ldm`: async-nats's `Event::LameDuckMode`), and after a grace
//! period (10 s by default) closes them at random over `lame_duck_duration`. Waiting for that
//! close would lose whatever is in flight at an unknown moment; instead the bridge moves on
//! its own terms, at once:
//!
//! 1. **Drain**: no new publish batch (nor publisher head read) starts; the batches in flight
//!    get their acks (at most [`DRAIN_MAX`]); new publishes wait in their channel's queue.
//! 2. **Switch**: if async-nats knows another server (its pool: the `--nats` URLs and the
//!    servers the cluster advertised), `Client::force_reconnect` closes the connection and
//!    async-nats connects to another one (the lame-duck server no longer accepts), re-sends the
//!    subscriptions, and the `Connected` event re-reads every live head and repairs
//!    (`central.rs`), as after any reconnect.
//! 3. **Resume**: on `Connected` (or after [`SWITCH_MAX`] without one) the waiting publishes
//!    go out.

use std::time::Duration;

use super::central::{Bridge, Done};
use crate::clock::Clock;
use crate::cluster::stats::Stat;

/// Longest wait for the in-flight batches before switching anyway (their retries then
/// resend them on the new connection, deduplicated by `Nats-Msg-Id`).
const DRAIN_MAX: Duration = Duration::from_secs(1);
/// Longest hold of new batches after the switch was asked (no server reachable: publishes
/// then take the ordinary retry path and its `--nats-publish-retry` bound).
const SWITCH_MAX: Duration = Duration::from_secs(5);

/// Where the bridge is in a lame-duck move.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) enum LameDuck {
    /// Normal service.
    #[default]
    Off,
    /// Waiting for the batches in flight (since, ns).
    Draining(u64),
    /// Reconnect asked, waiting for `Connected` (since, ns).
    Switching(u64),
}

impl Bridge {
    /// The connected server announced lame-duck mode.
    pub(super) fn on_lame_duck(&mut self) {
        self.stats.inc(Stat::EventLameDuck);
        if self.lame != LameDuck::Off {
            return; // Already moving.
        }
        tracing::warn!("cluster: the NATS server is in lame-duck mode; moving to another one");
        self.lame = LameDuck::Draining(Clock::now_ns());
        self.lame_duck_tick();
    }

    /// New publish batches wait while a move is under way.
    pub(super) fn holds_publishes(&self) -> bool {
        self.lame != LameDuck::Off
    }

    /// Called on every bridge tick (5 ms) and after each event.
    pub(super) fn lame_duck_tick(&mut self) {
        let now = Clock::now_ns();
        match self.lame {
            LameDuck::Off => {}
            LameDuck::Draining(since) => {
                let waited = now.saturating_sub(since);
                if self.batches_in_flight() > 0 && waited < DRAIN_MAX.as_nanos() as u64 {
                    return;
                }
                self.lame = LameDuck::Switching(now);
                let client = self.io.client.clone();
                self.io
                    .spawn(async move { Done::LameDuckSwitch(switch(&client).await) });
            }
            LameDuck::Switching(since) => {
                if now.saturating_sub(since) >= SWITCH_MAX.as_nanos() as u64 {
                    tracing::warn!("cluster: lame duck: no reconnection yet; publishing again");
                    self.resume_publishes();
                }
            }
        }
    }

    /// The reconnect was asked (`true`) or there is nowhere to go (`false`: one server
    /// known; the connection stays until the server closes it).
    pub(super) fn on_lame_duck_switch(&mut self, asked: bool) {
        if !asked && matches!(self.lame, LameDuck::Switching(_)) {
            self.resume_publishes();
        }
    }

    /// The connection is up (again): a move, if any, is over.
    pub(super) fn lame_duck_connected(&mut self) {
        if matches!(self.lame, LameDuck::Switching(_)) {
            tracing::info!("cluster: lame duck: moved to another NATS server");
            self.resume_publishes();
        }
    }

    fn resume_publishes(&mut self) {
        self.lame = LameDuck::Off;
        let waiting: Vec<_> = self
            .pubs
            .iter()
            .filter(|(_, p)| p.waiting())
            .map(|(c, _)| c.clone())
            .collect();
        for channel in waiting {
            self.pump(&channel);
        }
    }
}

/// Asks async-nats to reconnect if its pool (the `--nats` URLs and the servers the cluster
/// advertised) has another server; `false` if it has not or the client is closed.
async fn switch(client: &async_nats::Client) -> bool {
    match client.server_pool().await {
        Ok(pool) if pool.len() >= 2 => {}
        Ok(_) => {
            tracing::warn!("cluster: lame duck: no other NATS server known; staying");
            return false;
        }
        Err(e) => {
            tracing::warn!("cluster: lame duck: {e}");
            return false;
        }
    }
    match client.force_reconnect().await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!("cluster: lame duck: reconnect not possible: {e}");
            false
        }
    }
}
