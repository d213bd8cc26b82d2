//! The cluster flags of `wsrelay serve` (`--nats` and its companions; docs/CLUSTER.md),
//! flattened into `ServeArgs`: each is also a configuration-file key of the same name.

use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use clap::Args;
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
    #[arg(long)]
    nats_wait: bool,
    /// Loop → NATS bridge command queue; full: publishes get `unavailable`.
    #[arg(long, default_value_t = DEFAULTS.command_queue_len_max)]
    nats_command_queue: usize,
    /// NATS bridge → loop queue; full: dropped and repaired from the stream.
    #[arg(long, default_value_t = DEFAULTS.loop_queue_len_max)]
    nats_loop_queue: usize,
    /// Publishes waiting per channel while one is in flight; beyond: `unavailable`.
    #[arg(long, default_value_t = DEFAULTS.publish_queue_len_max)]
    nats_publish_queue: usize,
    /// Publishes coalesced into one JetStream message at most.
    #[arg(long, default_value_t = DEFAULTS.publish_batch_max)]
    nats_publish_batch: usize,
    /// Retry a publish this many ms (timeouts, elections) before answering `unavailable`.
    #[arg(long, default_value_t = DEFAULTS.publish_retry_max.as_millis() as u64)]
    nats_publish_retry: u64,
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
            publish_queue_len_max: self.nats_publish_queue,
            publish_batch_max: self.nats_publish_batch,
            publish_retry_max: Duration::from_millis(self.nats_publish_retry),
        }
    }
}
