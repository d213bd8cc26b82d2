//! Presence across relays, the loop's side (cluster mode with `--presence-for`; docs/CLUSTER.md,
//! "Presence"). The owner loop of a presence channel keeps its table as on one node
//! (`presence.rs`); in cluster mode it also:
//! - tells the bridge when the table starts or stops holding the channel (`PresenceTrack` /
//!   `PresenceUntrack`, with a generation so that answers to an older tracking are ignored),
//!   and every join and leave of its own members (`PresenceLocal`), in order;
//! - takes the other relays' members from the bridge (`PresenceRemote`: changes, through the
//!   same storm bound as local ones; `PresenceReset`: the full set, applied as a difference);
//! - answers lists only once the channel's first sync is over (`PresenceReset` with `synced`):
//!   until then they wait in the table (`pending`).
//!
//! Bounds: presence commands that do not fit the bridge queue wait in `retry` (FIFO, so a
//! join is never told after its leave); it holds at most what the loop's members cause (one
//! track, join, leave, untrack per membership), the same bound as joins and leaves between
//! loops. Without `--nats` none of this runs (`self.cluster` is `None`).

use std::collections::VecDeque;
use std::sync::Arc;

use crate::cluster::BridgeCmd;
use crate::hash::{FxBuild, FxHashMap};

type FxHashSet<T> = std::collections::HashSet<T, FxBuild>;
use crate::pubsub::presence::{Member, MemberKey};
use crate::runtime::event_loop::EventLoop;

/// One loop's presence bookkeeping in cluster mode.
#[derive(Debug, Default)]
pub(super) struct ClusterPresence {
    /// Channels the bridge tracks for this loop, with the generation of their tracking.
    tracked: FxHashMap<Arc<str>, u64>,
    next_gen: u64,
    /// Commands the bridge queue could not take yet, in order.
    retry: VecDeque<BridgeCmd>,
}

impl EventLoop {
    /// Cluster mode: tells the bridge when the table started or stopped holding `channel`.
    pub(super) fn presence_track_sync(&mut self, channel: &Arc<str>) {
        let has = self.channels.presence.owned.has(channel);
        let owner = self.id;
        let Some(cluster) = self.cluster.as_deref_mut() else {
            return;
        };
        let p = &mut cluster.presence;
        let cmd = match (has, p.tracked.contains_key(channel)) {
            (true, false) => {
                p.next_gen += 1;
                p.tracked.insert(channel.clone(), p.next_gen);
                BridgeCmd::PresenceTrack {
                    channel: channel.clone(),
                    owner,
                    gen: p.next_gen,
                }
            }
            (false, true) => {
                p.tracked.remove(channel);
                BridgeCmd::PresenceUntrack {
                    channel: channel.clone(),
                }
            }
            _ => return,
        };
        self.send_presence_cmd(cmd);
    }

    /// Cluster mode: a member of this relay joined or left `channel`.
    pub(super) fn presence_tell_cluster(&mut self, channel: &Arc<str>, joined: bool, m: Member) {
        let cmd = BridgeCmd::PresenceLocal {
            channel: channel.clone(),
            joined,
            member: m,
        };
        self.send_presence_cmd(cmd);
    }

    fn send_presence_cmd(&mut self, cmd: BridgeCmd) {
        let Some(cluster) = self.cluster.as_deref_mut() else {
            return;
        };
        cluster.wake_bridge_later();
        if !cluster.presence.retry.is_empty() {
            return cluster.presence.retry.push_back(cmd);
        }
        if let Err(cmd) = cluster.port.try_send(cmd) {
            cluster.presence.retry.push_back(cmd);
        }
    }

    /// Sends the presence commands that waited for room in the bridge queue (every turn).
    pub(super) fn retry_presence_cmds(&mut self) {
        let Some(cluster) = self.cluster.as_deref_mut() else {
            return;
        };
        while let Some(cmd) = cluster.presence.retry.pop_front() {
            if let Err(cmd) = cluster.port.try_send(cmd) {
                cluster.presence.retry.push_front(cmd);
                break;
            }
            cluster.wake_bridge_later();
        }
    }

    /// True when `gen` is the current tracking of `channel` (older answers are ignored).
    fn presence_current(&self, channel: &str, gen: u64) -> bool {
        self.cluster
            .as_deref()
            .and_then(|c| c.presence.tracked.get(channel))
            .is_some_and(|&g| g == gen)
    }

    /// Members of other relays joined or left.
    pub(super) fn on_presence_remote(
        &mut self,
        channel: Arc<str>,
        gen: u64,
        changes: Vec<(bool, Member)>,
    ) {
        if !self.presence_current(&channel, gen) || !self.channels.presence.owned.has(&channel) {
            return;
        }
        for (joined, m) in changes {
            if !self.channels.presence.owned.has(&channel) {
                break; // Nothing of this relay's own is left: the channel is untracked.
            }
            let key = MemberKey::Remote(m.id.clone());
            self.presence_change(&channel, key, joined.then_some(m));
        }
        self.presence_track_sync(&channel);
    }

    /// The other relays' full member set: applied as the difference with what the table
    /// holds; after the first sync, the lists waiting for it are answered.
    pub(super) fn on_presence_reset(
        &mut self,
        channel: Arc<str>,
        gen: u64,
        members: Vec<Member>,
        synced: bool,
    ) {
        if !self.presence_current(&channel, gen) || !self.channels.presence.owned.has(&channel) {
            return;
        }
        let wanted: FxHashSet<Arc<str>> = members.iter().map(|m| m.id.clone()).collect();
        let held = self.channels.presence.owned.remote_members(&channel);
        let have: FxHashSet<Arc<str>> = held.iter().map(|m| m.id.clone()).collect();
        for m in held.into_iter().filter(|m| !wanted.contains(&m.id)) {
            self.presence_change(&channel, MemberKey::Remote(m.id), None);
        }
        for m in members.into_iter().filter(|m| !have.contains(&m.id)) {
            let key = MemberKey::Remote(m.id.clone());
            self.presence_change(&channel, key, Some(m));
        }
        if synced {
            for (to, watch, query) in self.channels.presence.owned.set_synced(&channel) {
                self.send_list(channel.clone(), to, watch, query);
            }
            self.channels.presence.owned.forget_if_unused(&channel);
        }
        self.presence_track_sync(&channel);
    }
}
