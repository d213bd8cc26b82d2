//! A connection's subscriptions as its session holds them: where each stands with the
//! channel's owner, its epoch, what it asked for (presence, throttle), and the gaps its
//! subscriber was not told of yet, with the notices that tell them (RFC-level output of this
//! connection, queued on its ordered control lane). Who subscribes to a channel (the pub/sub
//! index) and routing are the loop's.

use std::sync::Arc;

use crate::command as encode;
use crate::outbox::SendStatus;
use crate::proto::frame::{FrameBuilder, OpCode, PreparedFrame};
use crate::pubsub::local::SeqGap;

use super::Session;

/// A subscription of this connection.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// Channel name.
    pub channel: Arc<str>,
    /// Answered by the channel's owner yet?
    pub state: SubState,
    /// Epoch of the channel's numbering, from the owner's answer.
    pub epoch: Arc<str>,
    /// Seqs skipped for this connection and not told yet.
    pub gap: Option<PendingGap>,
    /// Under `conflate`: the range of the last conflated gap notice queued.
    pub conflated_gap: Option<SeqGap>,
    /// It asked for presence (`"presence":true` on a `--presence-for` channel): it gets the
    /// member list and the joins and leaves (`presence.rs`).
    pub watch_presence: bool,
    /// `throttle_ms` of a throttled subscription (served by `throttle.rs`, not the fan-out).
    pub throttle_ms: Option<u32>,
}

/// Where a subscription stands with the channel's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubState {
    /// Waiting for the owner's answer (`subscribed` not sent yet).
    Pending,
    /// Unsubscribe was asked while pending: answer both in order when the owner replies.
    PendingThenUnsubscribe,
    /// Answered: deliveries flow.
    Active,
}

/// Seqs a subscriber skipped and has not been told of yet.
#[derive(Debug, Clone, Copy)]
pub struct PendingGap {
    /// The skipped seqs (a range: later skips widen it).
    pub range: SeqGap,
    /// Tell it in binary (the skipped deliveries were binary frames) rather than JSON.
    pub binary: bool,
}

/// Whether some subscription holds a gap not told yet: a cache of
/// `list.iter().any(|s| s.gap.is_some())`, read once per delivery.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) enum Untold {
    /// Every gap was told.
    #[default]
    Nothing,
    /// Some subscription has a gap to tell (before its next delivery, or as soon as the
    /// outbox has drained, whichever comes first).
    Gaps,
}

/// The channels a connection subscribed (or is subscribing) to. (Whether a gap is untold is
/// kept beside it in the session, where it packs with the other one-byte fields.)
#[derive(Debug, Default)]
pub struct Subscriptions {
    /// Boxed, and only while there is one: a connection that subscribes to nothing pays one
    /// pointer (issue 12: at most 256 bytes per idle connection).
    #[allow(
        clippy::box_collection,
        reason = "8 bytes per idle connection instead of 24"
    )]
    list: Option<Box<Vec<Subscription>>>,
}

impl Subscriptions {
    /// The subscription to `channel`, if any.
    pub fn get_mut(&mut self, channel: &str) -> Option<&mut Subscription> {
        self.list
            .as_mut()?
            .iter_mut()
            .find(|s| &*s.channel == channel)
    }

    /// Removes the subscription to `channel`; returns it.
    pub fn take(&mut self, channel: &str) -> Option<Subscription> {
        let list = self.list.as_mut()?;
        let pos = list.iter().position(|s| &*s.channel == channel)?;
        let sub = list.swap_remove(pos);
        if list.is_empty() {
            self.list = None;
        }
        Some(sub)
    }

    /// Adds a subscription (the caller checked the per-connection limit).
    pub fn push(&mut self, subscription: Subscription) {
        self.list
            .get_or_insert_with(Default::default)
            .push(subscription);
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.list.as_ref().map_or(0, |l| l.len())
    }

    /// None at all.
    pub fn is_empty(&self) -> bool {
        self.list.is_none()
    }

    /// Takes the untold gap of `channel`, if any; returns it and whether others remain.
    fn take_gap(&mut self, channel: &str) -> Option<(PendingGap, bool)> {
        let gap = self.get_mut(channel).and_then(|s| s.gap.take())?;
        let others = self
            .list
            .iter()
            .flat_map(|l| l.iter())
            .any(|s| s.gap.is_some());
        Some((gap, others))
    }
}

impl Session {
    /// All subscriptions, taken out (the connection is being reaped).
    pub fn take_subscriptions(&mut self) -> Vec<Subscription> {
        self.untold_gaps = Untold::Nothing;
        self.subscriptions.list.take().map_or_else(Vec::new, |l| *l)
    }

    /// True when some subscription has a gap its subscriber was not told of yet.
    pub fn gaps_untold(&self) -> bool {
        self.untold_gaps == Untold::Gaps
    }

    /// Records that the subscriber skipped `gap` on `channel` (widening a gap not told yet).
    pub fn note_gap(&mut self, channel: &str, gap: SeqGap, binary: bool) {
        let Some(sub) = self.subscriptions.get_mut(channel) else {
            return;
        };
        let range = match sub.gap {
            Some(g) => SeqGap {
                from: g.range.from.min(gap.from),
                to: g.range.to.max(gap.to),
            },
            None => gap,
        };
        sub.gap = Some(PendingGap { range, binary });
        self.untold_gaps = Untold::Gaps;
    }

    /// Queues the gap notice of `channel`, if it has one, right before the next delivery (the
    /// client learns of the skip before the next message), in the delivery's encoding: JSON
    /// before a text frame, binary before a binary one.
    pub fn queue_gap_notice(&mut self, channel: &str, binary: bool) -> SendStatus {
        let Some((gap, others)) = self.subscriptions.take_gap(channel) else {
            return SendStatus::Queued;
        };
        if !others {
            self.untold_gaps = Untold::Nothing;
        }
        let notice = encode_gap_notice(channel, gap.range, binary);
        self.outbox.push_ordered_control(notice.into_bytes())
    }

    /// Queues every untold gap notice, each in the encoding of the deliveries it missed:
    /// called when the outbox has drained, so that a subscriber that caught up learns of what
    /// it missed without waiting for the next message on a quiet channel. `Full` when the
    /// control budget cannot take them (the caller closes the connection).
    pub fn queue_pending_gap_notices(&mut self) -> SendStatus {
        self.untold_gaps = Untold::Nothing;
        let mut status = SendStatus::Queued;
        for sub in self
            .subscriptions
            .list
            .iter_mut()
            .flat_map(|l| l.iter_mut())
        {
            let Some(gap) = sub.gap.take() else {
                continue;
            };
            let notice = encode_gap_notice(&sub.channel, gap.range, gap.binary);
            match self.outbox.push_ordered_control(notice.into_bytes()) {
                SendStatus::Queued => {}
                other => status = other,
            }
        }
        status
    }
}

/// A gap notice in JSON or binary.
pub fn encode_gap_notice(channel: &str, gap: SeqGap, binary: bool) -> PreparedFrame {
    if binary {
        let mut f = FrameBuilder::new(OpCode::Binary, 2 + channel.len() + 16);
        // Channel names are at most 255 bytes (config validation), so this cannot fail.
        let encoded =
            f.append_with(|out| encode::encode_binary_gap(out, channel, gap.from, gap.to));
        debug_assert!(encoded.is_ok());
        f.finish()
    } else {
        let mut f = FrameBuilder::new(OpCode::Text, 64 + channel.len());
        f.append_with(|out| encode::encode_gap(out, channel, gap.from, gap.to));
        f.finish()
    }
}

#[cfg(test)]
mod tests;
