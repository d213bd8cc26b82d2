//! Another relay's members of one channel, kept from its deltas (joins, leaves) and full
//! lists, with the changes each one makes for the owner loop; bounded per relay and channel.

use std::sync::Arc;

use indexmap::IndexMap;

use super::{Remote, MEMBERS_PER_RELAY_MAX};
use crate::pubsub::presence::Member;

/// A relay's join or leave. Returns true when one of its changes was lost before it (its
/// list must be asked again).
pub(super) fn apply_delta(
    r: &mut Remote,
    joined: bool,
    g: u64,
    prev: u64,
    members: Vec<Member>,
    changes: &mut Vec<(bool, Member)>,
) -> bool {
    if prev == 0 && r.last != 0 {
        // Its state of the channel is new: it had no member before.
        let old = std::mem::take(&mut r.members);
        diff(&old, &IndexMap::new(), changes);
    }
    let lost = prev != 0 && prev != r.last;
    r.last = g;
    for m in members {
        let applied = match joined {
            true if r.members.len() >= MEMBERS_PER_RELAY_MAX => false,
            true => r.members.insert(m.id.clone(), m.clone()).is_none(),
            false => r.members.swap_remove(&m.id).is_some(),
        };
        if applied {
            changes.push((joined, m));
        }
    }
    lost
}

/// A part of a relay's full list (`first`: it starts one; `end`: it completes it).
pub(super) fn apply_list(
    r: &mut Remote,
    first: bool,
    end: bool,
    g: u64,
    members: Vec<Member>,
    changes: &mut Vec<(bool, Member)>,
) {
    let incoming = match first {
        true => r.incoming.insert(IndexMap::new()),
        false => r.incoming.get_or_insert_with(IndexMap::new),
    };
    let room = MEMBERS_PER_RELAY_MAX.saturating_sub(incoming.len());
    incoming.extend(members.into_iter().take(room).map(|m| (m.id.clone(), m)));
    if end {
        let new = r.incoming.take().unwrap_or_default();
        diff(&r.members, &new, changes);
        r.members = new;
        r.last = g;
    }
}

/// The difference from `old` to `new`, as (joined, member) changes.
pub(super) fn diff(
    old: &IndexMap<Arc<str>, Member>,
    new: &IndexMap<Arc<str>, Member>,
    out: &mut Vec<(bool, Member)>,
) {
    out.extend(
        old.iter()
            .filter(|(id, _)| !new.contains_key(*id))
            .map(|(_, m)| (false, m.clone())),
    );
    out.extend(
        new.iter()
            .filter(|(id, _)| !old.contains_key(*id))
            .map(|(_, m)| (true, m.clone())),
    );
}
