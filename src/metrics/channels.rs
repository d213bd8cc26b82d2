//! The busiest channels: a bounded top-N by publishes per metrics interval, for `/stats` (and
//! the status page).
//!
//! Owns: the selection (at most [`TOP_CHANNELS`] entries per loop, and after merging) and its
//! order. May not touch: the counting itself. A channel's owner loop already numbers every
//! publish (`seq`), so nothing is added to the publish path: once per metrics interval the loop
//! walks its owned channels, offers each one's `seq` advance since the previous walk to a
//! [`TopChannels`], and ships the result in its snapshot. A channel is owned by exactly one
//! loop, so merging is a sort of the loops' lists.
//!
//! Only channels with state count: subscribed ones, or retained ones with `--history-size` /
//! `--last-value` (a publish to a channel with neither reaches no one and is not numbered).

/// Entries kept per loop and in the merged list.
pub const TOP_CHANNELS: usize = 10;

/// One channel's publishes over one interval of its owner loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRate {
    /// Channel name.
    pub channel: String,
    /// Messages published to it during the interval.
    pub messages: u64,
    /// Its seq at the end of the interval.
    pub seq: u64,
    /// Length of the interval in milliseconds.
    pub window_ms: u64,
}

/// The busiest channels of one interval, most messages first (ties: by name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopChannels {
    entries: Vec<ChannelRate>,
}

impl TopChannels {
    /// Keeps `channel` if it is among the [`TOP_CHANNELS`] busiest offered so far. Allocates
    /// only for a channel that gets in; idle channels (0 messages) never do.
    pub fn offer(&mut self, channel: &str, messages: u64, seq: u64, window_ms: u64) {
        let full = self.entries.len() >= TOP_CHANNELS;
        let beats = |e: &ChannelRate| {
            (messages, std::cmp::Reverse(channel))
                > (e.messages, std::cmp::Reverse(e.channel.as_str()))
        };
        if messages == 0 || (full && !self.entries.last().is_some_and(beats)) {
            return;
        }
        let at = self
            .entries
            .iter()
            .position(beats)
            .unwrap_or(self.entries.len());
        let entry = ChannelRate {
            channel: channel.to_owned(),
            messages,
            seq,
            window_ms,
        };
        self.entries.insert(at, entry);
        self.entries.truncate(TOP_CHANNELS);
    }

    /// The merged top of several loops' lists.
    pub fn merge<'a>(lists: impl IntoIterator<Item = &'a TopChannels>) -> TopChannels {
        let mut merged = TopChannels::default();
        for entry in lists.into_iter().flat_map(|l| l.entries.iter()) {
            merged.offer(&entry.channel, entry.messages, entry.seq, entry.window_ms);
        }
        merged
    }

    /// The entries, busiest first.
    pub fn entries(&self) -> &[ChannelRate] {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(top: &TopChannels) -> Vec<(&str, u64)> {
        top.entries()
            .iter()
            .map(|e| (e.channel.as_str(), e.messages))
            .collect()
    }

    #[test]
    fn keeps_the_busiest_in_order_and_skips_idle_channels() {
        let mut top = TopChannels::default();
        for i in 0..30u64 {
            top.offer(&format!("c{i:02}"), i % 15, i, 1000);
        }
        let got = names(&top);
        assert_eq!(got.len(), TOP_CHANNELS);
        assert_eq!(
            got,
            [
                ("c14", 14),
                ("c29", 14),
                ("c13", 13),
                ("c28", 13),
                ("c12", 12),
                ("c27", 12),
                ("c11", 11),
                ("c26", 11),
                ("c10", 10),
                ("c25", 10)
            ]
        );
        let mut idle = TopChannels::default();
        idle.offer("quiet", 0, 7, 1000);
        assert!(idle.entries().is_empty());
    }

    #[test]
    fn merge_takes_the_top_of_all_loops() {
        let mut a = TopChannels::default();
        let mut b = TopChannels::default();
        a.offer("a.1", 5, 50, 1000);
        a.offer("a.2", 1, 10, 1000);
        b.offer("b.1", 3, 30, 1001);
        let merged = TopChannels::merge([&a, &b]);
        assert_eq!(names(&merged), [("a.1", 5), ("b.1", 3), ("a.2", 1)]);
        assert_eq!(merged.entries()[1].window_ms, 1001);
    }
}
