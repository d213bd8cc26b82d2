//! Presence, the owner side (`--presence-for`): who subscribes to a channel, kept by the
//! channel's owner loop, the single point every join and leave goes through (each member's
//! loop tells it over the FIFO mesh queue, so the count is exact whatever loop members sit
//! on). Sans-IO: the loop passes `now_ns` and sends the encoded frames this returns.
//!
//! Owns: per channel, the members (connection → id and subject), how many watchers (members
//! that asked `"presence":true`) each loop has, and the join/leave storm bound. In cluster
//! mode (`--nats`) also the members other relays reported (`MemberKey::Remote`, fed by the
//! NATS bridge), whether the channel's first sync with the other relays is over, and the list
//! answers waiting for it (`pending`).
//!
//! Storm bound (per channel): the first `CHANGES_PER_WINDOW_MAX` changes of each
//! `WINDOW_NS` window are told at once, one frame each. Beyond that, changes are held until
//! the window ends and coalesced: a join and a leave of the same member cancel out
//! (`coalesced`, counted), and what remains goes out as one buffer of join/leave frames; or,
//! when more than `--presence-max-list` changes remain, as one `presence` list instead
//! (`list_instead`). So a watcher receives at most `CHANGES_PER_WINDOW_MAX + 1` presence
//! writes per window per channel, each at most a bounded size.

use std::sync::Arc;

use bytes::Bytes;
use indexmap::IndexMap;

use crate::command::{encode_presence, encode_presence_change, MemberRef};
use crate::conn_id::{ConnRef, LoopId};
use crate::hash::{FxBuild, FxHashMap};
use crate::proto::frame::{FrameBuilder, OpCode};

/// Length of a storm window: held changes are coalesced and told at its end.
pub const WINDOW_NS: u64 = 100_000_000;
/// Changes of one channel told one by one per window before the rest is held.
pub const CHANGES_PER_WINDOW_MAX: u32 = 32;

/// Who a member is, to the owner: a connection of this relay, or (cluster mode) a member
/// another relay reported, by its cluster-wide id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MemberKey {
    /// A connection of this relay.
    Local(ConnRef),
    /// A member of another relay (its id names the relay).
    Remote(Arc<str>),
}

/// A list answer the owner gives once the channel is synced: who asked, whether it starts
/// watching, whether it answers a `Query`.
pub type PendingList = (ConnRef, bool, bool);

/// A member as the owner keeps it.
#[derive(Debug, Clone)]
pub struct Member {
    /// Its connection id (`<loop>-<slot>-<generation>`).
    pub id: Arc<str>,
    /// Its authenticated subject (auth on).
    pub sub: Option<Arc<str>>,
}

impl Member {
    fn as_ref(&self) -> MemberRef<'_> {
        MemberRef {
            id: &self.id,
            sub: self.sub.as_deref(),
        }
    }
}

/// One channel's presence.
#[derive(Debug, Default)]
struct Channel {
    members: IndexMap<MemberKey, Member, FxBuild>,
    /// Members that are connections of this relay.
    local: usize,
    /// Watchers per loop (index: loop id).
    watchers: Vec<u32>,
    window_start_ns: u64,
    window_changes: u32,
    /// Changes held in this window: member → (joined, member).
    held: IndexMap<MemberKey, (bool, Member), FxBuild>,
    /// The members of other relays are known (always, on one node).
    synced: bool,
    /// Lists to answer once synced.
    pending: Vec<PendingList>,
}

impl Channel {
    /// Nothing of this relay's own is left (remote members go with the channel: nobody here
    /// is told about them any more).
    fn is_unused(&self) -> bool {
        self.local == 0
            && self.held.is_empty()
            && self.pending.is_empty()
            && self.watchers.iter().all(|&n| n == 0)
    }

    fn watcher_mask(&self) -> u64 {
        self.watchers
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .fold(0, |mask, (l, _)| mask | 1 << l)
    }
}

/// What a change calls for.
#[derive(Debug)]
pub enum Outcome {
    /// Tell the watchers now.
    Tell(Broadcast),
    /// Nothing to send (no watcher, or held with a flush already scheduled).
    Quiet,
    /// Held: schedule `flush` of the channel at this time (the first held change of a
    /// window; later ones ride on it).
    FlushAt(u64),
}

/// What the owner sends after a change.
#[derive(Debug)]
pub struct Broadcast {
    /// Loops with watchers.
    pub loops: u64,
    /// The frames, back to back.
    pub bytes: Bytes,
    /// Frames in `bytes`.
    pub frames: u32,
}

/// What a change did, for the counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Changes cancelled by their opposite within one window.
    pub coalesced: u64,
    /// A list was sent instead of a burst of changes.
    pub list_instead: bool,
    /// A list left members out (`--presence-max-list`).
    pub capped: bool,
}

/// The presence of every owned channel that has some.
#[derive(Debug, Default)]
pub struct PresenceTable {
    channels: FxHashMap<Arc<str>, Channel>,
    /// Cluster mode: a new channel is not synced until the bridge says so.
    clustered: bool,
}

impl PresenceTable {
    /// Exact number of members of `channel`.
    pub fn count(&self, channel: &str) -> usize {
        self.channels.get(channel).map_or(0, |c| c.members.len())
    }

    /// A table for cluster mode: channels wait for their first sync before answering lists.
    pub fn clustered() -> Self {
        PresenceTable {
            channels: FxHashMap::default(),
            clustered: true,
        }
    }

    /// True when `channel` has presence state here.
    pub fn has(&self, channel: &str) -> bool {
        self.channels.contains_key(channel)
    }

    /// True when lists of `channel` can be answered now (cluster mode: after its first sync).
    pub fn is_synced(&self, channel: &str) -> bool {
        match self.channels.get(channel) {
            Some(c) => c.synced,
            None => !self.clustered,
        }
    }

    /// Keeps a list answer until the channel is synced.
    pub fn defer_list(&mut self, channel: &str, pending: PendingList) {
        self.channel_mut(channel).pending.push(pending);
    }

    /// A deferred list answer for `conn` dropped (it left first). True when there was one.
    pub fn drop_pending(&mut self, channel: &str, conn: ConnRef) -> bool {
        let Some(c) = self.channels.get_mut(channel) else {
            return false;
        };
        let before = c.pending.len();
        c.pending.retain(|(to, watch, _)| !(*to == conn && *watch));
        c.pending.len() != before
    }

    /// The channel is synced: the lists waiting for it, to answer now.
    pub fn set_synced(&mut self, channel: &str) -> Vec<PendingList> {
        match self.channels.get_mut(channel) {
            Some(c) => {
                c.synced = true;
                std::mem::take(&mut c.pending)
            }
            None => Vec::new(),
        }
    }

    /// A member's description.
    pub fn member(&self, channel: &str, key: &MemberKey) -> Option<Member> {
        self.channels.get(channel)?.members.get(key).cloned()
    }

    /// The members of other relays.
    pub fn remote_members(&self, channel: &str) -> Vec<Member> {
        let Some(c) = self.channels.get(channel) else {
            return Vec::new();
        };
        c.members
            .iter()
            .filter(|(k, _)| matches!(k, MemberKey::Remote(_)))
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// A member joins (`joined` is its description) or leaves (`None`).
    pub fn change(
        &mut self,
        channel: &str,
        member: MemberKey,
        joined: Option<Member>,
        now_ns: u64,
        counts: &mut Counts,
    ) -> Outcome {
        let c = self.channel_mut(channel);
        let local = matches!(member, MemberKey::Local(_));
        let member = match joined {
            Some(m) => {
                if c.members.insert(member.clone(), m.clone()).is_some() {
                    return Outcome::Quiet; // already a member (a repeated remote join)
                }
                c.local += usize::from(local);
                (true, member, m)
            }
            None => match c.members.swap_remove(&member) {
                Some(m) => {
                    c.local -= usize::from(local);
                    (false, member, m)
                }
                None => return Outcome::Quiet, // not a member (a bug upstream, or remote)
            },
        };
        let first = c.window_changes == 0 && c.held.is_empty();
        if first || now_ns >= c.window_start_ns + WINDOW_NS {
            c.window_start_ns = now_ns;
            c.window_changes = 0;
        }
        let held_before = !c.held.is_empty();
        if c.window_changes < CHANGES_PER_WINDOW_MAX && !held_before {
            c.window_changes += 1;
            let loops = c.watcher_mask();
            if loops == 0 {
                return Outcome::Quiet;
            }
            let (joined, _, m) = member;
            let bytes = change_frame(channel, joined, m.as_ref());
            return Outcome::Tell(Broadcast {
                loops,
                bytes,
                frames: 1,
            });
        }
        let (joined, key, m) = member;
        match c.held.get(&key) {
            Some((was_join, _)) if *was_join != joined => {
                c.held.swap_remove(&key);
                counts.coalesced += 2;
            }
            _ => {
                c.held.insert(key, (joined, m));
            }
        }
        match held_before {
            true => Outcome::Quiet,
            false => Outcome::FlushAt(c.window_start_ns + WINDOW_NS),
        }
    }

    /// The window of `channel` ended: its held changes, coalesced (see the module rules).
    pub fn flush(
        &mut self,
        channel: &str,
        list_max: usize,
        now_ns: u64,
        counts: &mut Counts,
    ) -> Option<Broadcast> {
        let c = self.channels.get_mut(channel)?;
        let held = std::mem::take(&mut c.held);
        c.window_start_ns = now_ns;
        c.window_changes = 0;
        let loops = c.watcher_mask();
        let out = match (held.is_empty(), loops) {
            (true, _) | (_, 0) => None,
            _ if held.len() > list_max => {
                counts.list_instead = true;
                let (bytes, capped) = self.list_frame(channel, list_max);
                counts.capped |= capped;
                Some(Broadcast {
                    loops,
                    bytes,
                    frames: 1,
                })
            }
            _ => Some(changes_frames(channel, &held, loops)),
        };
        self.forget_if_unused(channel);
        out
    }

    /// `{"type":"presence",...}` for `channel`: the exact count and at most `list_max`
    /// members. Returns the frame and whether members were left out.
    pub fn list_frame(&self, channel: &str, list_max: usize) -> (Bytes, bool) {
        let empty = IndexMap::default();
        let members = self.channels.get(channel).map_or(&empty, |c| &c.members);
        let listed = members.len().min(list_max);
        let mut f = FrameBuilder::new(OpCode::Text, 64 + channel.len() + listed * 48);
        f.append_with(|out| {
            let refs = members.values().take(list_max).map(Member::as_ref);
            encode_presence(out, channel, members.len() as u64, refs)
        });
        (f.finish().into_bytes(), members.len() > list_max)
    }

    /// A watcher on `loop_id` starts (`+1`) or stops (`-1`) receiving changes.
    pub fn watch(&mut self, channel: &str, loop_id: LoopId, start: bool) {
        let c = self.channel_mut(channel);
        if c.watchers.len() <= loop_id {
            c.watchers.resize(loop_id + 1, 0);
        }
        let n = &mut c.watchers[loop_id];
        *n = if start { *n + 1 } else { n.saturating_sub(1) };
        self.forget_if_unused(channel);
    }

    /// Drops a channel's state once nothing is left in it.
    pub fn forget_if_unused(&mut self, channel: &str) {
        if self.channels.get(channel).is_some_and(Channel::is_unused) {
            self.channels.remove(channel);
        }
    }

    /// Channels with presence state on this loop.
    pub fn len(&self) -> usize {
        self.channels.len()
    }

    /// True when no channel has presence state here.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    fn channel_mut(&mut self, channel: &str) -> &mut Channel {
        if !self.channels.contains_key(channel) {
            let c = Channel {
                synced: !self.clustered,
                ..Channel::default()
            };
            self.channels.insert(Arc::from(channel), c);
        }
        // Inserted above; `entry` would need an owned key on every change.
        self.channels
            .get_mut(channel)
            .expect("presence channel inserted above")
    }
}

fn change_frame(channel: &str, joined: bool, member: MemberRef<'_>) -> Bytes {
    let mut f = FrameBuilder::new(OpCode::Text, 96 + channel.len() + member.id.len());
    f.append_with(|out| encode_presence_change(out, joined, channel, member));
    f.finish().into_bytes()
}

fn changes_frames(
    channel: &str,
    held: &IndexMap<MemberKey, (bool, Member), FxBuild>,
    loops: u64,
) -> Broadcast {
    let mut wire = Vec::new();
    for (joined, m) in held.values() {
        wire.extend_from_slice(&change_frame(channel, *joined, m.as_ref()));
    }
    Broadcast {
        loops,
        bytes: Bytes::from(wire),
        frames: held.len() as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn_id::ConnId;

    fn who(n: u32) -> (MemberKey, Member) {
        let conn = MemberKey::Local(ConnRef {
            loop_id: 0,
            conn: ConnId::new(n, 0),
        });
        let member = Member {
            id: Arc::from(format!("0-{n}-0")),
            sub: None,
        };
        (conn, member)
    }

    #[test]
    fn counts_are_exact_and_changes_reach_watchers() {
        let mut t = PresenceTable::default();
        let mut counts = Counts::default();
        let (a, ma) = who(1);
        assert!(matches!(
            t.change("r", a.clone(), Some(ma), 0, &mut counts),
            Outcome::Quiet
        ));
        t.watch("r", 1, true);
        let (b, mb) = who(2);
        let Outcome::Tell(told) = t.change("r", b.clone(), Some(mb), 0, &mut counts) else {
            panic!("a watcher is told at once");
        };
        assert_eq!((told.loops, told.frames), (0b10, 1));
        assert_eq!(t.count("r"), 2);
        let (bytes, capped) = t.list_frame("r", 1);
        assert!(capped);
        let text = String::from_utf8_lossy(&bytes[2..]).into_owned();
        assert_eq!(
            text,
            r#"{"type":"presence","channel":"r","count":2,"members":[{"id":"0-1-0","sub":null}]}"#
        );
        t.change("r", a, None, 0, &mut counts);
        t.change("r", b, None, 0, &mut counts);
        t.watch("r", 1, false);
        assert!(t.is_empty());
    }

    #[test]
    fn a_storm_is_held_coalesced_and_told_once_per_window() {
        let mut t = PresenceTable::default();
        let mut counts = Counts::default();
        t.watch("r", 0, true);
        for n in 0..CHANGES_PER_WINDOW_MAX {
            let (c, m) = who(n);
            let told = t.change("r", c.clone(), Some(m), 5, &mut counts);
            assert!(matches!(told, Outcome::Tell(_)));
        }
        let (c, m) = who(1000);
        let held = t.change("r", c.clone(), Some(m), 6, &mut counts);
        assert!(matches!(held, Outcome::FlushAt(due) if due == 5 + WINDOW_NS));
        let cancelled = t.change("r", c, None, 7, &mut counts);
        assert!(matches!(cancelled, Outcome::Quiet));
        assert_eq!(counts.coalesced, 2);
        let (d, md) = who(1001);
        // The held set went empty with the cancel: a new flush is asked (the old one is
        // harmless: a flush of nothing tells nothing).
        assert!(matches!(
            t.change("r", d, Some(md), 8, &mut counts),
            Outcome::FlushAt(_)
        ));
        let told = t.flush("r", 100, 5 + WINDOW_NS, &mut counts).unwrap();
        assert_eq!(told.frames, 1, "only the join of 1001 is left");
        assert_eq!(t.count("r"), CHANGES_PER_WINDOW_MAX as usize + 1);
        // Over the list cap: one list instead of the burst.
        for n in 2000..2000 + CHANGES_PER_WINDOW_MAX + 5 {
            let (c, m) = who(n);
            t.change("r", c, Some(m), 10 + WINDOW_NS, &mut counts);
        }
        let told = t.flush("r", 3, 10 + 2 * WINDOW_NS, &mut counts).unwrap();
        assert!(counts.list_instead && counts.capped);
        assert_eq!(told.frames, 1);
    }
}
