//! Scenarios turned into a plan: every connection's role, every publisher's channel, rate and
//! audience, and the routing tables subscribers use to check what they receive.
//!
//! Owns: who does what. May not touch: sockets, clocks, threads.

use crate::schedule::Rate;

/// What one connection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnSpec {
    /// The channel it subscribes to, if any.
    pub subscribe: Option<u32>,
    /// The publisher it carries, if any (index into `Plan::publishers`).
    pub publisher: Option<u32>,
}

/// One publisher.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PublisherSpec {
    /// Channel it publishes to.
    pub channel: u32,
    /// Deliveries each publish is due to produce (subscribers of the channel, minus itself).
    pub audience: u32,
    /// Messages per second, or max.
    pub rate: Rate,
    /// Offset of its first message from the start, spreading publishers over one interval.
    pub phase_ns: u64,
}

/// Read-only tables a subscriber consults per delivery.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    /// Channel of each publisher.
    pub channel_of: Vec<u32>,
    /// Rank of each publisher among its channel's publishers (index of its gap tracker).
    pub rank_of: Vec<u32>,
    /// Publishers per channel.
    pub publishers_per_channel: Vec<u32>,
    /// Channel names.
    pub channel_names: Vec<String>,
}

/// Connections opened and closed while traffic flows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChurnSpec {
    /// New connections per second.
    pub opens_per_s: f64,
    /// How long each stays open after its setup completed, ns.
    pub hold_ns: u64,
    /// Channel churn connections subscribe to.
    pub channel: u32,
}

/// Everything the drivers need to know about a run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Every steady connection, in opening order.
    pub conns: Vec<ConnSpec>,
    /// Every publisher.
    pub publishers: Vec<PublisherSpec>,
    /// Routing tables.
    pub routes: Routes,
    /// Content bytes of each publish.
    pub content_bytes: usize,
    /// Binary data plane instead of JSON.
    pub binary: bool,
    /// Churn, if any.
    pub churn: Option<ChurnSpec>,
    /// Rooms tick every this many ms (`rooms --tick`): the in-process relay is started with
    /// `--tick-for room.*=MS`; an external one must be (the swarm reads batches either way).
    pub tick_ms: Option<u64>,
}

/// The shape of a fanout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FanoutShape {
    /// Publishers (P).
    pub publishers: u32,
    /// Subscribers (S).
    pub subscribers: u32,
    /// Channels (C): publisher p and subscriber s use channels p % C and s % C.
    pub channels: u32,
    /// Total publishes per second across publishers, or max.
    pub rate: Rate,
}

/// The shape of a rooms run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoomsShape {
    /// Rooms (R).
    pub rooms: u32,
    /// Members per room (K), each publishing and subscribed.
    pub members: u32,
    /// Publishes per second of each member.
    pub hz: f64,
}

impl Plan {
    /// P publishers and S subscribers over C channels.
    pub fn fanout(shape: FanoutShape, content_bytes: usize, binary: bool) -> Plan {
        let channels = shape.channels.max(1);
        let mut subs_per_channel = vec![0u32; channels as usize];
        for s in 0..shape.subscribers {
            subs_per_channel[(s % channels) as usize] += 1;
        }
        let per_publisher = match shape.rate {
            Rate::Max => Rate::Max,
            Rate::PerSecond(total) => Rate::PerSecond(total / f64::from(shape.publishers.max(1))),
        };
        let publishers: Vec<PublisherSpec> = (0..shape.publishers)
            .map(|p| PublisherSpec {
                channel: p % channels,
                audience: subs_per_channel[(p % channels) as usize],
                rate: per_publisher,
                phase_ns: phase_ns(per_publisher, p, shape.publishers),
            })
            .collect();
        let mut conns: Vec<ConnSpec> = (0..shape.subscribers)
            .map(|s| ConnSpec {
                subscribe: Some(s % channels),
                publisher: None,
            })
            .collect();
        conns.extend((0..shape.publishers).map(|p| ConnSpec {
            subscribe: None,
            publisher: Some(p),
        }));
        let names = (0..channels).map(|c| format!("ch.{c}")).collect();
        Plan::assemble(conns, publishers, names, content_bytes, binary)
    }

    /// R rooms of K members; each member is subscribed to its room and publishes to it.
    pub fn rooms(shape: RoomsShape, content_bytes: usize, binary: bool) -> Plan {
        let members_total = shape.rooms * shape.members;
        let rate = Rate::PerSecond(shape.hz);
        let publishers = (0..members_total)
            .map(|m| PublisherSpec {
                channel: m / shape.members,
                audience: shape.members - 1,
                rate,
                phase_ns: phase_ns(rate, m, members_total),
            })
            .collect();
        let conns = (0..members_total)
            .map(|m| ConnSpec {
                subscribe: Some(m / shape.members),
                publisher: Some(m),
            })
            .collect();
        let names = (0..shape.rooms).map(|r| format!("room.{r}")).collect();
        Plan::assemble(conns, publishers, names, content_bytes, binary)
    }

    /// N idle connections.
    pub fn idle(connections: u32) -> Plan {
        let conns = (0..connections)
            .map(|_| ConnSpec {
                subscribe: None,
                publisher: None,
            })
            .collect();
        Plan::assemble(conns, Vec::new(), Vec::new(), 0, false)
    }

    fn assemble(
        conns: Vec<ConnSpec>,
        publishers: Vec<PublisherSpec>,
        channel_names: Vec<String>,
        content_bytes: usize,
        binary: bool,
    ) -> Plan {
        let mut publishers_per_channel = vec![0u32; channel_names.len()];
        let mut rank_of = Vec::with_capacity(publishers.len());
        for p in &publishers {
            let count = &mut publishers_per_channel[p.channel as usize];
            rank_of.push(*count);
            *count += 1;
        }
        Plan {
            conns,
            routes: Routes {
                channel_of: publishers.iter().map(|p| p.channel).collect(),
                rank_of,
                publishers_per_channel,
                channel_names,
            },
            publishers,
            content_bytes,
            binary,
            churn: None,
            tick_ms: None,
        }
    }
}

/// Spreads `count` publishers evenly over one interval, so that they do not fire together.
fn phase_ns(rate: Rate, index: u32, count: u32) -> u64 {
    match rate {
        Rate::Max => 0,
        Rate::PerSecond(per_s) => (1e9 / per_s * f64::from(index) / f64::from(count.max(1))) as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fanout_spreads_publishers_and_subscribers_over_channels() {
        let shape = FanoutShape {
            publishers: 4,
            subscribers: 10,
            channels: 2,
            rate: Rate::PerSecond(4000.0),
        };
        let plan = Plan::fanout(shape, 100, false);
        assert_eq!(plan.conns.len(), 14);
        assert_eq!(plan.publishers[1].channel, 1);
        assert_eq!(plan.publishers[1].audience, 5);
        assert_eq!(plan.publishers[1].rate, Rate::PerSecond(1000.0));
        assert_eq!(plan.publishers[2].phase_ns, 500_000);
        assert_eq!(plan.routes.rank_of, vec![0, 0, 1, 1]);
        assert_eq!(plan.routes.publishers_per_channel, vec![2, 2]);
    }

    #[test]
    fn rooms_members_publish_to_their_room_and_skip_themselves() {
        let shape = RoomsShape {
            rooms: 3,
            members: 4,
            hz: 20.0,
        };
        let plan = Plan::rooms(shape, 100, true);
        assert_eq!(plan.conns.len(), 12);
        assert_eq!(plan.conns[5].subscribe, Some(1));
        assert_eq!(plan.conns[5].publisher, Some(5));
        assert_eq!(plan.publishers[5].audience, 3);
        assert_eq!(plan.routes.rank_of[5], 1);
        assert_eq!(plan.routes.channel_names[2], "room.2");
    }
}
