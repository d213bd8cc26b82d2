//! The cluster-mode settings (`--nats` and its companions): part of `Config` in every server
//! build, so that a file or command line naming them parses the same way with or without the
//! `cluster` feature; without the feature, `--nats` is refused at start-up.
//!
//! Owns: the values, their defaults and their validation. Every one is restart-only
//! (`runtime/reload.rs`): the streams, the connection and the queues are made at start-up.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::ConfigError;

/// Most streams (`--nats-shards`).
pub const SHARDS_MAX: u32 = 1024;

/// Storage of the JetStream streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatsStorage {
    /// On disk (production).
    File,
    /// In the servers' memory (development, CI).
    Memory,
}

impl NatsStorage {
    /// Parses `file` or `memory`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "file" => Some(Self::File),
            "memory" => Some(Self::Memory),
            _ => None,
        }
    }

    /// The command-line spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Memory => "memory",
        }
    }
}

/// Scale-out through NATS JetStream (docs/CLUSTER.md). Cluster mode is on when `nats_urls` is
/// not empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// NATS server URLs (`--nats`, repeatable; env `WS_NATS_URL`, comma-separated). Empty: the
    /// single-node relay, with no NATS code anywhere.
    pub nats_urls: Vec<String>,
    /// Streams `WSR_0..WSR_{K-1}` the channels are hashed onto. Cluster-wide: every relay must
    /// use the same K (changing it moves channels to new streams, so their epochs change).
    pub shards: u32,
    /// Replicas of each stream: 1 (one server) or 3 (a 3-server cluster, quorum commit).
    pub replicas: usize,
    /// Stream storage.
    pub storage: NatsStorage,
    /// This relay's name in `Nats-Msg-Id` and `Wsr-From` (default: host name + pid).
    pub node_name: Option<String>,
    /// NATS credentials file (JWT + nkey seed).
    pub creds: Option<PathBuf>,
    /// NATS token.
    pub token: Option<String>,
    /// When NATS is unreachable at start-up: wait for it (reporting not ready on `/healthz`)
    /// instead of exiting with an error.
    pub wait: bool,
    /// Loop → bridge command queue (publishes, subscribes). Full: the publish is refused with
    /// a retryable `unavailable` error, counted.
    pub command_queue_len_max: usize,
    /// Bridge → each loop queue. Full: the message is dropped, counted, and the channel is
    /// repaired from the stream (the bridge never blocks).
    pub loop_queue_len_max: usize,
    /// Bridge messages one loop handles per turn before its sockets get their turn again
    /// (fairness; the rest is handled next turn, without sleeping).
    pub loop_msgs_per_turn_max: usize,
    /// Publishes waiting per channel while one batch is in flight. Beyond: `unavailable`.
    pub publish_queue_len_max: usize,
    /// Frames coalesced into one JetStream message at most.
    pub publish_batch_max: usize,
    /// How long a publish is retried (timeouts, no leader) before its publisher is told the
    /// outcome is unknown. Longer than a Raft election (4-9 s on nats-server 2.9).
    pub publish_retry_max: Duration,
    /// Presence across relays (`--presence-for`): a relay not heard for this long is gone and
    /// its members leave; relays heartbeat every third of it.
    pub presence_timeout: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig::DEFAULT
    }
}

impl ClusterConfig {
    /// The defaults (cluster mode off), as a constant for `Config`'s defaults table.
    pub const DEFAULT: ClusterConfig = ClusterConfig {
        nats_urls: Vec::new(),
        shards: 8,
        replicas: 1,
        storage: NatsStorage::File,
        node_name: None,
        creds: None,
        token: None,
        wait: false,
        command_queue_len_max: 65_536,
        loop_queue_len_max: 65_536,
        loop_msgs_per_turn_max: 4096,
        publish_queue_len_max: 10_000,
        publish_batch_max: 1_000,
        publish_retry_max: Duration::from_secs(15),
        presence_timeout: Duration::from_secs(3),
    };
}

impl ClusterConfig {
    /// Cluster mode is on.
    pub fn enabled(&self) -> bool {
        !self.nats_urls.is_empty()
    }

    /// Checks the values (only when cluster mode is on; the defaults always pass).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |m: &str| Err(ConfigError(m.to_string()));
        if !self.enabled() {
            return Ok(());
        }
        if !cfg!(feature = "cluster") {
            return fail("--nats needs a build with the `cluster` feature");
        }
        if !(1..=SHARDS_MAX).contains(&self.shards) {
            return fail("nats-shards must be 1..=1024");
        }
        if self.replicas != 1 && self.replicas != 3 {
            return fail("nats-replicas must be 1 or 3");
        }
        if self.creds.is_some() && self.token.is_some() {
            return fail("give either --nats-creds or --nats-token, not both");
        }
        if let Some(name) = &self.node_name {
            let ok = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return fail("node-name must be 1-64 characters of [A-Za-z0-9_-]");
            }
        }
        let queues = [
            self.command_queue_len_max,
            self.loop_queue_len_max,
            self.loop_msgs_per_turn_max,
            self.publish_queue_len_max,
            self.publish_batch_max,
        ];
        if queues.iter().any(|&q| !(1..=1 << 24).contains(&q)) {
            return fail(
                "nats queue sizes, messages per turn and the batch size must be 1..=16,777,216",
            );
        }
        if self.publish_retry_max < Duration::from_millis(100)
            || self.publish_retry_max > Duration::from_secs(600)
        {
            return fail("nats-publish-retry must be 100 ms ..= 600 s");
        }
        if self.presence_timeout < Duration::from_millis(300)
            || self.presence_timeout > Duration::from_secs(60)
        {
            return fail("nats-presence-timeout must be 300 ms ..= 60 s");
        }
        Ok(())
    }
}
