//! The cluster flags of `wsrelay serve` (`--nats` and its companions; docs/CLUSTER.md),
//! flattened into `ServeArgs`: each is also a configuration-file key of the same name.

use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use clap::{ArgAction, Args};
use wsrelay::cluster_config::NatsStorage;
use wsrelay::config::ClusterConfig;

static DEFAULTS: LazyLock<ClusterConfig> = LazyLock::new(ClusterConfig::default);

/// Scale-out through NATS JetStream.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// NATS server URL (repeatable; env: comma-separated). Turns cluster mode on.
    #[arg(long = "nats", env = "WS_NATS_URL", value_delimiter = ',')]
    nats: Vec<String>,
    /// JetStream streams the channels are hashed onto (the same on every relay).
    #[arg(long, default_value_t = DEFAULTS.shards)]
    nats_shards: u32,
    /// Replicas of each stream: 1 or 3.
    #[arg(long, default_value_t = DEFAULTS.replicas)]
    nats_replicas: usize,
    /// Stream storage: file or memory.
    #[arg(long, default_value = DEFAULTS.storage.as_str(), value_parser = parse_storage)]
    nats_storage: NatsStorage,
    /// This relay's name in message ids (default: host name + pid).
    #[arg(long)]
    node_name: Option<String>,
    /// NATS credentials file.
    #[arg(long)]
    nats_creds: Option<PathBuf>,
    /// NATS token.
    #[arg(long, env = "WS_NATS_TOKEN", hide_env_values = true)]
    nats_token: Option<String>,
    /// Wait for NATS at start-up (not ready on /healthz meanwhile) instead of exiting.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true")]
    nats_wait: bool,
    /// Loop → NATS bridge command queue; full: publishes get `unavailable`.
    #[arg(long, default_value_t = DEFAULTS.command_queue_len_max)]
    nats_command_queue: usize,
    /// NATS bridge → loop queue; full: dropped and repaired from the stream.
    #[arg(long, default_value_t = DEFAULTS.loop_queue_len_max)]
    nats_loop_queue: usize,
    /// NATS bridge messages a loop handles per turn before its sockets (fairness).
    #[arg(long, default_value_t = DEFAULTS.loop_msgs_per_turn_max)]
    nats_loop_msgs_per_turn: usize,
    /// Publishes waiting per channel while one is in flight; beyond: `unavailable`.
    #[arg(long, default_value_t = DEFAULTS.publish_queue_len_max)]
    nats_publish_queue: usize,
    /// Publishes coalesced into one JetStream message at most.
    #[arg(long, default_value_t = DEFAULTS.publish_batch_max)]
    nats_publish_batch: usize,
    /// Retry a publish this many ms (timeouts, elections) before answering `unavailable`.
    #[arg(long, default_value_t = DEFAULTS.publish_retry_max.as_millis() as u64)]
    nats_publish_retry: u64,
    /// Presence across relays: ms without a heartbeat after which a relay's members leave.
    #[arg(long, default_value_t = DEFAULTS.presence_timeout.as_millis() as u64)]
    nats_presence_timeout: u64,
}

fn parse_storage(s: &str) -> Result<NatsStorage, String> {
    NatsStorage::parse(s).ok_or_else(|| "expected file or memory".into())
}

impl ClusterArgs {
    /// The cluster configuration these flags describe.
    pub fn to_config(&self) -> ClusterConfig {
        ClusterConfig {
            nats_urls: self
                .nats
                .iter()
                .filter(|u| !u.is_empty())
                .cloned()
                .collect(),
            shards: self.nats_shards,
            replicas: self.nats_replicas,
            storage: self.nats_storage,
            node_name: self.node_name.clone(),
            creds: self.nats_creds.clone(),
            token: self.nats_token.clone(),
            wait: self.nats_wait,
            command_queue_len_max: self.nats_command_queue,
            loop_queue_len_max: self.nats_loop_queue,
            loop_msgs_per_turn_max: self.nats_loop_msgs_per_turn,
            publish_queue_len_max: self.nats_publish_queue,
            publish_batch_max: self.nats_publish_batch,
            publish_retry_max: Duration::from_millis(self.nats_publish_retry),
            presence_timeout: Duration::from_millis(self.nats_presence_timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::Cli;
    use wsrelay::config::Config;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let cli = Cli::try_parse_from(args).map_err(|e| e.to_string())?;
        let config = cli.into_serve().to_config()?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    #[test]
    fn cluster_flags_reach_the_config() {
        let c = parse(&[
            "wsrelay",
            "--nats",
            "nats://127.0.0.1:4222,nats://127.0.0.1:4223",
            "--nats",
            "nats://127.0.0.1:4224",
            "--nats-shards",
            "16",
            "--nats-replicas",
            "3",
            "--nats-storage",
            "memory",
            "--node-name",
            "relay-a",
            "--nats-token",
            "s3cret",
            "--nats-wait",
            "--nats-loop-queue",
            "4",
            "--nats-loop-msgs-per-turn",
            "64",
            "--nats-publish-retry",
            "20000",
            "--nats-presence-timeout",
            "1500",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let k = &c.cluster;
        assert_eq!(k.nats_urls.len(), 3);
        assert!(k.enabled() && k.wait);
        assert_eq!((k.shards, k.replicas), (16, 3));
        assert_eq!(k.storage, wsrelay::cluster_config::NatsStorage::Memory);
        assert_eq!(k.node_name.as_deref(), Some("relay-a"));
        assert_eq!(k.token.as_deref(), Some("s3cret"));
        assert_eq!(k.loop_queue_len_max, 4);
        assert_eq!(k.loop_msgs_per_turn_max, 64);
        assert_eq!(k.publish_retry_max, std::time::Duration::from_secs(20));
        assert_eq!(k.presence_timeout, std::time::Duration::from_millis(1500));
    }

    #[test]
    fn impossible_cluster_values_are_refused() {
        for bad in [
            &["wsrelay", "--nats", "nats://x", "--nats-replicas", "2"][..],
            &["wsrelay", "--nats", "nats://x", "--nats-shards", "0"],
            &["wsrelay", "--nats", "nats://x", "--node-name", "a.b"],
            &[
                "wsrelay",
                "--nats",
                "nats://x",
                "--nats-loop-msgs-per-turn",
                "0",
            ],
            &[
                "wsrelay",
                "--nats",
                "nats://x",
                "--nats-token",
                "t",
                "--nats-creds",
                "/c",
            ],
            &["wsrelay", "--nats-storage", "disk"],
            &[
                "wsrelay",
                "--nats",
                "nats://x",
                "--nats-presence-timeout",
                "100",
            ],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        // Without --nats the companions are inert: the single-node relay.
        let c = parse(&["wsrelay", "--nats-replicas", "2"]).unwrap_or_else(|e| panic!("{e}"));
        assert!(!c.cluster.enabled());
    }
}
