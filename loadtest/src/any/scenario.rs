//! The model of a run against any WebSocket server: groups of virtual clients, what each
//! sends on open, at a rate and in reaction to messages, how a reply is recognised, how many
//! clients are connected over time (stages), and the thresholds that set the exit status.
//! Built by the `echo` command line or read from a scenario file (`any::file`).
//!
//! Owns: the description. May not touch: sockets, clocks, threads.

use regex::bytes::Regex;
use serde_json::Value;

use crate::any::template::Template;
use crate::any::threshold::Threshold;
use crate::schedule::Rate;
use crate::target::Target;

/// A whole run.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Name for the report.
    pub name: String,
    /// Client groups, in client-index order.
    pub groups: Vec<Group>,
    /// Warm-up after the start (sends stamped in it are not measured), ns.
    pub warmup_ns: u64,
    /// Measured window after the warm-up, ns (with stages: the stages' length minus warm-up).
    pub duration_ns: u64,
    /// Longest wait for outstanding replies after the window, ns.
    pub drain_ns: u64,
    /// Pass/fail rules for the exit status.
    pub thresholds: Vec<Threshold>,
}

/// Virtual clients that behave alike.
#[derive(Debug, Clone)]
pub struct Group {
    /// Name for errors and the report.
    pub name: String,
    /// Most clients connected at once (fixed count, or the stages' peak).
    pub clients_max: u32,
    /// Client counts over time; empty: all `clients_max` connect before the start.
    pub stages: Vec<Stage>,
    /// Client `i` connects to `urls[i % len]`.
    pub urls: Vec<Target>,
    /// Extra request headers (values rendered per client).
    pub headers: Vec<(String, Template)>,
    /// `Sec-WebSocket-Protocol` values offered.
    pub subprotocols: Vec<String>,
    /// Sent in order once the handshake completes; the client is ready after the last.
    pub on_open: Vec<OpenStep>,
    /// Messages at a constant rate per client, each measured by its reply.
    pub periodic: Option<Periodic>,
    /// Messages sent when a received message matches.
    pub reactions: Vec<Reaction>,
    /// Where received messages carry a scheduled send time (`{{sent_at_ns}}` of a sender in
    /// this process): each one found is a delivery, latency = receipt − that time.
    pub sent_at: Option<Extract>,
}

/// Reach `clients` connected clients over `duration_ns`, linearly from the previous count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage {
    /// Length, ns.
    pub duration_ns: u64,
    /// Clients connected at the stage's end.
    pub clients: u32,
}

/// A message to send: a template rendered per message, text or binary.
#[derive(Debug, Clone)]
pub struct Message {
    /// Payload template.
    pub template: Template,
    /// Binary frame instead of text.
    pub binary: bool,
}

/// One step of the opening sequence.
#[derive(Debug, Clone)]
pub struct OpenStep {
    /// What to send, if anything.
    pub send: Option<Message>,
    /// Wait for a message matching this before the next step.
    pub wait_for: Option<Expect>,
}

/// A test on a received message: the value found by `extract` equals the rendered template.
#[derive(Debug, Clone)]
pub struct Expect {
    /// Where the value is.
    pub extract: Extract,
    /// What it must equal (rendered with the client's variables).
    pub equals: Template,
}

/// How a value is found in a received message.
#[derive(Debug, Clone)]
pub enum Extract {
    /// A JSON pointer (RFC 6901) into the message parsed as JSON; strings compare by content,
    /// other values by their JSON text.
    Pointer(String),
    /// The first capture group of a regex (the whole match without a group).
    Regex(Regex),
}

/// What a periodic message carries.
#[derive(Debug, Clone)]
pub enum Payload {
    /// The swarm's stamp (scheduled time, client, counter) padded to `bytes`: JSON text
    /// `{"t":..,"p":..,"i":..,"x":".."}` or a 16-byte binary prefix.
    Stamped {
        /// Payload bytes.
        bytes: usize,
        /// Binary frame instead of text.
        binary: bool,
    },
    /// The same bytes every time (`--payload-file`).
    Fixed {
        /// Payload.
        bytes: Vec<u8>,
        /// Binary frame instead of text.
        binary: bool,
    },
    /// A template rendered per message.
    Template(Message),
}

/// How a reply closes a periodic message's latency measurement.
#[derive(Debug, Clone)]
pub enum Matching {
    /// The reply carries the stamp back (echo servers).
    Stamp,
    /// Replies come back in send order, one per message.
    Order,
    /// The reply's extracted value equals the message's rendered key (e.g. `{{seq}}`).
    Key(Expect),
    /// Each send is due `expect` deliveries on clients of this process whose group measures
    /// `sent_at` (pub/sub: the message carries `{{sent_at_ns}}`).
    Deliveries {
        /// Deliveries each send is due to produce.
        expect: u32,
    },
    /// Nothing is measured (fire and forget).
    None,
}

/// Messages at a constant rate per client.
#[derive(Debug, Clone)]
pub struct Periodic {
    /// Per client.
    pub rate: Rate,
    /// What is sent.
    pub payload: Payload,
    /// How the reply is recognised.
    pub matching: Matching,
}

/// A message sent when a received one matches.
#[derive(Debug, Clone)]
pub struct Reaction {
    /// The test.
    pub when: Expect,
    /// The answer (may use `{{recv(/pointer)}}`).
    pub send: Message,
}

impl Stage {
    /// Clients connected `at_ns` after the start, following `stages` from 0 (the last
    /// stage's count after their end).
    pub fn clients_at(stages: &[Stage], at_ns: u64) -> u32 {
        let mut from = 0u32;
        let mut stage_start_ns = 0u64;
        for stage in stages {
            let end_ns = stage_start_ns + stage.duration_ns;
            if at_ns < end_ns {
                let done = (at_ns - stage_start_ns) as f64 / stage.duration_ns.max(1) as f64;
                let delta = f64::from(stage.clients) - f64::from(from);
                return (f64::from(from) + delta * done).floor().max(0.0) as u32;
            }
            from = stage.clients;
            stage_start_ns = end_ns;
        }
        from
    }

    /// Total length of `stages`, ns.
    pub fn total_ns(stages: &[Stage]) -> u64 {
        stages.iter().map(|s| s.duration_ns).sum()
    }
}

impl Extract {
    /// The value in `message` as a string (`parsed`: the message as JSON, parsed at most once
    /// per message by the caller).
    pub fn find(&self, message: &[u8], parsed: &mut Option<Option<Value>>) -> Option<String> {
        match self {
            Extract::Pointer(pointer) => {
                let value = parsed
                    .get_or_insert_with(|| serde_json::from_slice(message).ok())
                    .as_ref()?;
                match value.pointer(pointer)? {
                    Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                }
            }
            Extract::Regex(regex) => {
                let captures = regex.captures(message)?;
                let found = captures.get(1).or_else(|| captures.get(0))?;
                String::from_utf8(found.as_bytes().to_vec()).ok()
            }
        }
    }
}

impl Scenario {
    /// Clients in the run (every group at its peak).
    pub fn clients_total(&self) -> u64 {
        self.groups.iter().map(|g| u64::from(g.clients_max)).sum()
    }

    /// Start and peak of every group's client indices.
    pub fn group_offsets(&self) -> Vec<u64> {
        let mut offset = 0;
        self.groups
            .iter()
            .map(|g| {
                let start = offset;
                offset += u64::from(g.clients_max);
                start
            })
            .collect()
    }

    /// Whether any group follows stages (clients connect during the run).
    pub fn staged(&self) -> bool {
        self.groups.iter().any(|g| !g.stages.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_interpolate_and_hold_the_last_count() {
        let stages = [
            Stage {
                duration_ns: 100,
                clients: 10,
            },
            Stage {
                duration_ns: 100,
                clients: 10,
            },
            Stage {
                duration_ns: 50,
                clients: 0,
            },
        ];
        assert_eq!(Stage::clients_at(&stages, 0), 0);
        assert_eq!(Stage::clients_at(&stages, 55), 5);
        assert_eq!(Stage::clients_at(&stages, 100), 10);
        assert_eq!(Stage::clients_at(&stages, 199), 10);
        assert_eq!(Stage::clients_at(&stages, 225), 5);
        assert_eq!(Stage::clients_at(&stages, 10_000), 0);
        assert_eq!(Stage::total_ns(&stages), 250);
    }

    #[test]
    fn extracts_by_pointer_and_regex() {
        let message = br#"{"type":"reply","id":17,"who":"ann"}"#;
        let mut parsed = None;
        let id = Extract::Pointer("/id".into()).find(message, &mut parsed);
        assert_eq!(id.as_deref(), Some("17"));
        let who = Extract::Pointer("/who".into()).find(message, &mut parsed);
        assert_eq!(who.as_deref(), Some("ann"));
        let re = Extract::Regex(Regex::new(r#""id":(\d+)"#).unwrap());
        assert_eq!(re.find(message, &mut None).as_deref(), Some("17"));
        let mut not_json = None;
        assert_eq!(
            Extract::Pointer("/id".into()).find(b"hello", &mut not_json),
            None
        );
    }
}
