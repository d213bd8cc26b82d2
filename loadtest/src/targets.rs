//! Which server each connection of a relay scenario goes to when several `--url`s are given
//! (relays joined by a cluster): subscribers spread over every URL in turn, publishers go to
//! the publish URL (`--publish-url`, or the first `--url`), so the run measures deliveries
//! that cross from one relay to the others.
//!
//! Owns: the choice of target per connection. May not touch: sockets.

use crate::target::Target;

/// The resolved targets of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targets {
    /// Every subscriber target, in the order given; never empty.
    spread: Vec<Target>,
    /// Where connections that publish go.
    publish: Target,
}

impl Targets {
    /// One server for everything.
    pub fn single(target: Target) -> Targets {
        Targets {
            spread: vec![target.clone()],
            publish: target,
        }
    }

    /// Several servers: subscribers over `spread` (not empty), publishers on `publish` (the
    /// first of `spread` when `None`).
    pub fn new(spread: Vec<Target>, publish: Option<Target>) -> Option<Targets> {
        let publish = publish.or_else(|| spread.first().cloned())?;
        Some(Targets { spread, publish })
    }

    /// The target of connection `ordinal`; `publishes` when it carries a publisher.
    pub fn for_conn(&self, ordinal: usize, publishes: bool) -> (usize, &Target) {
        if publishes {
            return (usize::MAX, &self.publish);
        }
        let index = ordinal % self.spread.len();
        (index, &self.spread[index])
    }

    /// The target behind an index returned by `for_conn`.
    pub fn get(&self, index: usize) -> &Target {
        self.spread.get(index).unwrap_or(&self.publish)
    }

    /// The first target (where the server's own statistics are read, and source addresses
    /// are chosen against).
    pub fn primary(&self) -> &Target {
        &self.publish
    }

    /// Some target is `wss://`: every connection of the run uses TLS.
    pub fn tls(&self) -> bool {
        self.publish.tls || self.spread.iter().any(|t| t.tls)
    }

    /// How many distinct targets connections go to.
    pub fn len(&self) -> usize {
        let publish_is_spread = self.spread.contains(&self.publish);
        self.spread.len() + usize::from(!publish_is_spread)
    }

    /// Never true: there is always at least one target.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// `addr` list for the report.
    pub fn describe(&self) -> String {
        let mut out: Vec<String> = self.spread.iter().map(|t| t.addr.to_string()).collect();
        if self.len() > 1 {
            out = vec![format!(
                "subscribers on {}; publishers on {}",
                out.join(", "),
                self.publish.addr
            )];
        }
        out.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn target(port: u16) -> Target {
        Target::local(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    #[test]
    fn subscribers_spread_in_turn_and_publishers_go_to_the_publish_url() {
        let targets = Targets::new(vec![target(1), target(2)], None).expect("not empty");
        let ports: Vec<u16> = (0..4)
            .map(|n| targets.for_conn(n, false).1.addr.port())
            .collect();
        assert_eq!(ports, [1, 2, 1, 2]);
        assert_eq!(targets.for_conn(3, true).1.addr.port(), 1);
        let (index, _) = targets.for_conn(1, false);
        assert_eq!(targets.get(index).addr.port(), 2);
        assert_eq!(targets.len(), 2);
        assert_eq!(
            targets.describe(),
            "subscribers on 127.0.0.1:1, 127.0.0.1:2; publishers on 127.0.0.1:1"
        );
    }

    #[test]
    fn a_separate_publish_url_is_a_third_target() {
        let targets = Targets::new(vec![target(1), target(2)], Some(target(3))).expect("ok");
        let (index, t) = targets.for_conn(0, true);
        assert_eq!((t.addr.port(), targets.get(index).addr.port()), (3, 3));
        assert_eq!(targets.len(), 3);
        assert_eq!(Targets::new(Vec::new(), None), None);
        assert_eq!(Targets::single(target(5)).describe(), "127.0.0.1:5");
    }
}
