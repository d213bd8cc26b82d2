//! Runtime configuration: every limit of the relay, with its unit in its name and the reason for
//! its default.
//!
//! Owns: the `Config` value that is built once at start-up (from the command line, see
//! `cli.rs`, or by tests and the swarm directly), validated once, and then shared read-only by
//! every event loop through an `Arc`. Nothing here touches sockets or threads.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use crate::auth::{ChannelPattern, Verifier};
use crate::cidr::Cidr;
pub use crate::cluster_config::ClusterConfig;
pub use crate::proto::forwarded::ForwardedHeader;

/// What the relay does with a subscriber whose outbox (bytes queued for its socket) is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowConsumerPolicy {
    /// Close the connection with 4100 (slow consumer: reconnect with backoff, then recover with
    /// `since`). The default: the client learns at once and recovery fills the hole exactly.
    Close,
    /// Drop the newest frames for that connection and send a `gap` notice before the next
    /// delivery on the channel, or once its outbox has drained, whichever comes first.
    Drop,
    /// Keep only the newest not-yet-written message per channel (or per channel and `key`) for
    /// that connection, and send a `gap` notice for what was skipped.
    Conflate,
}

impl SlowConsumerPolicy {
    /// Parses the command-line spelling (`close`, `drop`, `conflate`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "close" => Some(Self::Close),
            "drop" => Some(Self::Drop),
            "conflate" => Some(Self::Conflate),
            _ => None,
        }
    }

    /// The command-line spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Close => "close",
            Self::Drop => "drop",
            Self::Conflate => "conflate",
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Upper bound of `deflate_contexts_max`: each context holds about 350 KiB (miniz_oxide's
/// compressor and decompressor), so 100,000 is already 35 GB.
pub const DEFLATE_CONTEXTS_MAX: usize = 100_000;

/// Every knob of the relay. Durations are `Duration`s; sizes carry `_bytes` in their names.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address of the WebSocket listener. Port 0 picks a free port (tests).
    pub listen_addr: SocketAddr,
    /// Number of event loops (threads). Default: available cores.
    pub loops: usize,
    /// Listen backlog per loop listener. Default 1024: a reconnect storm of thousands of clients
    /// must not see refused SYNs while the loops catch up.
    pub backlog: u32,
    /// Largest accepted message (one frame or a reassembled fragmented message). Larger: close
    /// 1009. Default 1 MiB.
    pub message_bytes_max: usize,
    /// Longest accepted channel name. Default 128 bytes.
    pub channel_bytes_max: usize,
    /// Silence after which the server sends a WebSocket ping. Zero disables the heartbeat.
    pub heartbeat_interval: Duration,
    /// Time a pinged connection has to send any frame before it is terminated.
    pub heartbeat_timeout: Duration,
    /// Time a new TCP connection has to complete its HTTP upgrade request (slowloris defence).
    pub handshake_timeout: Duration,
    /// Time the peer has to answer our close frame before we drop the TCP connection.
    pub close_timeout: Duration,
    /// Close connections that sent nothing for this long (zero: off). Default off: the heartbeat
    /// already removes dead peers, and silent subscribers are normal.
    pub idle_timeout: Duration,
    /// After SIGINT/SIGTERM: how long to wait for close replies before exiting.
    pub shutdown_grace: Duration,
    /// Spread the shutdown closes over this window (zero: close all at once with 1001).
    pub drain_over: Duration,
    /// Serve `/echo` (conformance endpoint). Off by default.
    pub echo_enabled: bool,
    /// Negotiate permessage-deflate (RFC 7692) when a client offers it. Off by default.
    pub deflate_enabled: bool,
    /// Messages shorter than this (payload bytes) are sent uncompressed (RSV1 clear).
    /// Default 128.
    pub deflate_min_bytes: usize,
    /// Connections with their own compression contexts (context takeover), process-wide;
    /// beyond it an offer is answered without takeover (shared compression). Default 0: every
    /// connection shares one compressed copy per run.
    pub deflate_contexts_max: usize,
    /// Subprotocols the server accepts, in preference order (empty: none negotiated).
    pub subprotocols: Vec<String>,
    /// Per-connection budget of queued data frames (bytes) before the slow-consumer policy acts.
    /// Default 4 MiB: about 40,000 100-byte messages of slack for a subscriber that stalls.
    pub outbox_bytes_max: usize,
    /// Separate budget for control frames (pong, close, error, subscribed, gap) so that a
    /// congested but alive connection still answers its heartbeat. Default 64 KiB.
    pub control_bytes_max: usize,
    /// What happens when `outbox_bytes_max` is reached.
    pub slow_consumer: SlowConsumerPolicy,
    /// Per-channel overrides of `slow_consumer`, first match wins (e.g. `md.*` → conflate).
    pub slow_consumer_rules: Vec<(ChannelPattern, SlowConsumerPolicy)>,
    /// Messages retained per channel for recovery with `since` (0: no history).
    pub history_size: usize,
    /// Retention time of history entries (zero: kept until pushed out by `history_size`).
    pub history_ttl: Duration,
    /// Bytes of retained history in the whole process (each loop keeps 1/N of it); beyond it
    /// the oldest retained messages of any channel are evicted first, and counted. Default
    /// 256 MiB: history can never grow with the number of channels until memory runs out.
    pub history_bytes_max: usize,
    /// Send a channel's latest message to each new subscriber.
    pub last_value: bool,
    /// Channels (patterns, `--snapshot-for`) whose owner keeps the latest message per `key`
    /// and answers each new subscriber with a snapshot of them (`pubsub/snapshot.rs`).
    pub snapshot_patterns: Vec<ChannelPattern>,
    /// Keys one channel's snapshot keeps; beyond it the least recently updated key is
    /// evicted, and counted. Default 10,000: a large order book or instrument board.
    pub snapshot_keys_max: usize,
    /// Bytes one channel's snapshot keeps (keys, contents and 50 bytes of envelope per entry,
    /// so this bounds the snapshot frame); beyond it the least recently updated keys are
    /// evicted, and counted. Default 1,000,000: the snapshot is one message, and this fits the
    /// 1 MiB default message limit of the relay's client library.
    pub snapshot_bytes_max: usize,
    /// Keys per channel whose latest delivery a loop keeps for its throttled subscribers;
    /// beyond it the least recently updated key is evicted, and counted. Default 10,000.
    pub throttle_keys_max: usize,
    /// Connections per process; beyond it the handshake gets 503.
    pub connections_max: usize,
    /// Subscriptions one connection may hold.
    pub subscriptions_per_connection_max: usize,
    /// Length (messages) of each loop's inbox from other loops; also the bound of each per-peer
    /// overflow queue and of the subscribe requests one loop has in flight to the others.
    pub mesh_inbox_len_max: usize,
    /// Messages from other loops handled per turn before sockets get their turn again
    /// (fairness between the mesh and the sockets).
    pub inbox_msgs_per_turn_max: usize,
    /// Publishes one loop queues before numbering them as runs (a forced flush beyond it:
    /// bounds the queue and the size of one run).
    pub publish_queue_len_max: usize,
    /// Bytes of channel names and contents one loop queues before a forced flush.
    pub publish_queue_bytes_max: usize,
    /// Channels one loop keeps for their history or last value while nobody subscribes;
    /// beyond it the longest idle is forgotten (a new epoch if it comes back).
    pub idle_channels_max: usize,
    /// Per-IP connect-rate buckets one loop keeps; when full, idle buckets are dropped first
    /// and a new source beyond it is refused as over its rate.
    pub ip_buckets_max: usize,
    /// Resolution of the timer wheel.
    pub timer_tick: Duration,
    /// Time every delivery into the relay-latency histogram (one clock read per `sendmsg` and
    /// one histogram record per outbox entry). On by default; off only to measure its cost.
    pub latency_metrics: bool,
    /// How often loops hand metrics snapshots to the exporter.
    pub metrics_interval: Duration,
    /// Optional separate address for `/metrics`, `/stats` and `/healthz`.
    pub metrics_addr: Option<SocketAddr>,
    /// Log line format.
    pub log_format: LogFormat,
    /// Token verifier; `None`: authentication off (anyone may subscribe and publish).
    pub auth: Option<Arc<Verifier>>,
    /// Time a connection has to send `{"type":"auth"}` when authentication is on.
    pub auth_timeout: Duration,
    /// New connections per second, whole process (token bucket split evenly over the loops;
    /// 0: unlimited). Over it: 503 with `Retry-After`. Default 20,000/s: a reconnect storm
    /// cannot flatten the relay, a normal one is served at once.
    pub connect_rate_per_s: u64,
    /// New connections per second from one source IP (per loop share; 0: unlimited).
    pub connect_rate_per_ip_per_s: u64,
    /// Open connections from one source IP (0: unlimited). Over it: 503.
    pub connections_per_ip_max: usize,
    /// Allowed `Origin` values (empty: any, including none). Others get 403.
    pub origins_allowed: Vec<String>,
    /// Data messages per second one connection may send (0: unlimited, the default: trusted
    /// publishers of market data send 100k+/s). Over it: an error, then close 4101.
    pub messages_per_s_max: u64,
    /// Also accept the token as a `token` query parameter of the upgrade URL (less safe: URLs
    /// end up in proxy and access logs).
    pub auth_query_token: bool,
    /// Also accept the token from this cookie of the upgrade request (browsers send it by
    /// themselves for pages of the same site). Requires `origins_allowed`: cookies make
    /// cross-site WebSocket hijacking possible (RFC 6455 §10.2), the allow-list prevents it.
    pub auth_cookie: Option<String>,
    /// Require the PROXY protocol header (v1 or v2, HAProxy's `proxy-protocol.txt`) at the start
    /// of every connection to the relay listener, and take the client address from it. Off by
    /// default: only for a listener that nothing but the load balancer can reach (the header
    /// is believed as sent).
    pub proxy_protocol: bool,
    /// Serve `wss://` (and HTTPS for `/metrics`, `/stats`, `/healthz`) on the relay port with
    /// this certificate and key (`--tls-cert`, `--tls-key`, `--tls-client-ca` for mTLS);
    /// `None`: plain `ws://`. Reloaded on SIGHUP (new connections see the new certificate).
    /// The `--metrics-bind` listener stays plain HTTP.
    pub tls: Option<Arc<crate::tls::TlsServer>>,
    /// Peers (TCP peer, or the address of the PROXY header) whose forwarding header names the
    /// client (`forwarded_header`, rightmost untrusted hop). Empty (the default): forwarding
    /// headers are ignored.
    pub trusted_proxies: Vec<Cidr>,
    /// Which forwarding header the trusted proxies write.
    pub forwarded_header: ForwardedHeader,
    /// Room ticks (`--tick-for PATTERN=MS`, first match wins): deliveries on matching
    /// channels are held by the owner loop and sent once per period as one batch frame.
    /// Empty (the default): no channel ticks and the publish path is unchanged.
    pub tick_rules: Vec<(ChannelPattern, Duration)>,
    /// Presence (`--presence-for PATTERN`): subscribers of matching channels are members
    /// whose joins and leaves are told to the subscribers that asked (`"presence":true`).
    pub presence_patterns: Vec<ChannelPattern>,
    /// Members listed in one `presence` message (the count is always exact). Default 1,000:
    /// a list stays within about 100 KB.
    pub presence_list_max: usize,
    /// Scale-out through NATS JetStream (`--nats`; off by default). Restart-only.
    pub cluster: ClusterConfig,
}

impl Config {
    /// Every default, as a table, for a machine of one core (`Default` sets `loops` to the
    /// cores available).
    const DEFAULT_FOR_ONE_CORE: Config = Config {
        listen_addr: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 8080)),
        loops: 1,
        backlog: 1024,
        message_bytes_max: 1 << 20,
        channel_bytes_max: 128,
        heartbeat_interval: Duration::from_millis(30_000),
        heartbeat_timeout: Duration::from_millis(10_000),
        handshake_timeout: Duration::from_secs(5),
        close_timeout: Duration::from_secs(1),
        idle_timeout: Duration::ZERO,
        shutdown_grace: Duration::from_secs(5),
        drain_over: Duration::ZERO,
        echo_enabled: false,
        deflate_enabled: false,
        deflate_min_bytes: 128,
        deflate_contexts_max: 0,
        subprotocols: Vec::new(),
        outbox_bytes_max: 4 << 20,
        control_bytes_max: 64 << 10,
        slow_consumer: SlowConsumerPolicy::Close,
        slow_consumer_rules: Vec::new(),
        history_size: 0,
        history_ttl: Duration::ZERO,
        history_bytes_max: 256 << 20,
        last_value: false,
        snapshot_patterns: Vec::new(),
        snapshot_keys_max: 10_000,
        snapshot_bytes_max: 1_000_000,
        throttle_keys_max: 10_000,
        connections_max: 1_000_000,
        subscriptions_per_connection_max: 1024,
        mesh_inbox_len_max: 65_536,
        inbox_msgs_per_turn_max: 4096,
        publish_queue_len_max: 1024,
        publish_queue_bytes_max: 1 << 20,
        idle_channels_max: 100_000,
        ip_buckets_max: 65_536,
        timer_tick: Duration::from_millis(10),
        metrics_interval: Duration::from_secs(1),
        latency_metrics: true,
        metrics_addr: None,
        log_format: LogFormat::Text,
        auth: None,
        auth_timeout: Duration::from_secs(5),
        auth_query_token: false,
        auth_cookie: None,
        connect_rate_per_s: 20_000,
        connect_rate_per_ip_per_s: 2_000,
        connections_per_ip_max: 20_000,
        origins_allowed: Vec::new(),
        messages_per_s_max: 0,
        proxy_protocol: false,
        tls: None,
        trusted_proxies: Vec::new(),
        forwarded_header: ForwardedHeader::XForwardedFor,
        tick_rules: Vec::new(),
        presence_patterns: Vec::new(),
        presence_list_max: 1000,
        cluster: ClusterConfig::DEFAULT,
    };
}

impl Default for Config {
    fn default() -> Self {
        Config {
            loops: std::thread::available_parallelism().map_or(1, |n| n.get()),
            ..Config::DEFAULT_FOR_ONE_CORE
        }
    }
}

/// The longest duration any setting may have: 30 days. Keeps every `now + duration` in
/// nanoseconds (u64: 584 years) far from overflowing.
pub const DURATION_MAX: Duration = Duration::from_secs(30 * 24 * 3600);
/// Most messages `history_size` may retain per channel.
pub const HISTORY_SIZE_MAX: usize = 1_000_000;
/// Upper bound of what a delivery adds to its message: the frame header (at most 14 bytes),
/// `{"type":"message","channel":…,"content":…,"seq":…,"from":…}` with a channel of at most 255
/// bytes and a `from` of at most 256 bytes, both JSON-escaped (at most 6 bytes per byte).
pub const DELIVERY_ENVELOPE_BYTES_MAX: usize = 4096;
/// Largest byte budget of the history: 16 GiB.
pub const QUEUE_BYTES_MAX: usize = 16 << 30;
/// Largest per-connection outbox budget: 4 GiB - 1 (the outbox holds its budgets in 32 bits,
/// which keeps an idle connection small; issue 12).
pub const OUTBOX_BYTES_MAX: usize = u32::MAX as usize;
/// Shortest and longest room tick period (`--tick-for`).
pub const TICK_PERIOD_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(1)..=Duration::from_secs(60);
/// Most members one `presence` message may list (`--presence-max-list`).
pub const PRESENCE_LIST_MAX: usize = 100_000;
/// Most `--trusted-proxy` ranges (each new connection from a proxy is tested against all).
pub const TRUSTED_PROXIES_MAX: usize = 1024;

fn check(ok: bool, message: &str) -> Result<(), ConfigError> {
    match ok {
        true => Ok(()),
        false => Err(ConfigError(message.to_string())),
    }
}

/// A configuration value that cannot work, found at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid configuration: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Checks every rule once, at start-up (tungstenite's `assert_valid` idea): ranges of each
    /// value, and combinations that could not work. Durations are capped at `DURATION_MAX` so
    /// that no `now + duration` in nanoseconds can overflow.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_sizes()?;
        self.validate_caps()?;
        self.validate_durations()?;
        self.validate_combinations()
    }

    /// Threads, and the byte and entry budgets of messages, queues, history, snapshots and
    /// throttles (what bounds memory).
    fn validate_sizes(&self) -> Result<(), ConfigError> {
        check(
            (1..=64).contains(&self.loops),
            "threads must be 1..=64 (loops are tracked in a 64-bit interest mask)",
        )?;
        check(
            (125..=1 << 30).contains(&self.message_bytes_max),
            "max-message-size must be 125 bytes ..= 1 GiB",
        )?;
        check(
            self.deflate_contexts_max <= DEFLATE_CONTEXTS_MAX,
            "deflate-max-contexts must be at most 100,000 (about 350 KiB each)",
        )?;
        check(
            (1..=255).contains(&self.channel_bytes_max),
            "max-channel-length must be 1..=255 (binary frames carry it in one byte)",
        )?;
        check(
            (1024..=OUTBOX_BYTES_MAX).contains(&self.outbox_bytes_max),
            "max-queued-bytes must be 1024 ..= 4 GiB - 1 (per connection)",
        )?;
        check(
            (1024..=1 << 30).contains(&self.control_bytes_max),
            "control budget must be 1024 bytes ..= 1 GiB",
        )?;
        check(
            self.history_size <= HISTORY_SIZE_MAX,
            "history-size must be at most 1,000,000 messages per channel",
        )?;
        check(
            (1 << 20..=QUEUE_BYTES_MAX).contains(&self.history_bytes_max),
            "history-max-bytes must be 1 MiB ..= 16 GiB",
        )?;
        check(
            (1..=1_000_000).contains(&self.snapshot_keys_max),
            "snapshot-max-keys must be 1 ..= 1,000,000",
        )?;
        check(
            (1024..=1 << 30).contains(&self.snapshot_bytes_max),
            "snapshot-max-bytes must be 1 KiB ..= 1 GiB",
        )?;
        check(
            (1..=1_000_000).contains(&self.throttle_keys_max),
            "throttle-max-keys must be 1 ..= 1,000,000",
        )
    }

    /// Per-loop and per-connection caps, and the lengths of the rule lists.
    fn validate_caps(&self) -> Result<(), ConfigError> {
        check(
            (16..=1 << 24).contains(&self.mesh_inbox_len_max),
            "mesh inbox must hold 16 ..= 16,777,216 messages",
        )?;
        check(
            self.subscriptions_per_connection_max >= 1,
            "max-subscriptions must be at least 1",
        )?;
        check(
            self.connections_max >= 1,
            "max-connections must be at least 1",
        )?;
        check(
            self.inbox_msgs_per_turn_max >= 1
                && self.publish_queue_len_max >= 1
                && self.publish_queue_bytes_max >= 1
                && self.idle_channels_max >= 1
                && self.ip_buckets_max >= 1,
            "per-loop caps (inbox per turn, publish queue, idle channels, IP buckets) must be >= 1",
        )?;
        check(
            self.tick_rules
                .iter()
                .all(|(_, period)| TICK_PERIOD_RANGE.contains(period)),
            "tick-for periods must be 1 ..= 60,000 ms",
        )?;
        check(
            (1..=PRESENCE_LIST_MAX).contains(&self.presence_list_max),
            "presence-max-list must be 1 ..= 100,000",
        )?;
        check(
            self.trusted_proxies.len() <= TRUSTED_PROXIES_MAX,
            "at most 1024 --trusted-proxy ranges",
        )
    }

    fn validate_durations(&self) -> Result<(), ConfigError> {
        let named = [
            ("heartbeat-interval", self.heartbeat_interval),
            ("heartbeat-timeout", self.heartbeat_timeout),
            ("handshake-timeout", self.handshake_timeout),
            ("close-timeout", self.close_timeout),
            ("idle-timeout", self.idle_timeout),
            ("shutdown-grace", self.shutdown_grace),
            ("drain-over", self.drain_over),
            ("history-ttl", self.history_ttl),
            ("auth-timeout", self.auth_timeout),
            ("metrics-interval", self.metrics_interval),
        ];
        for (name, value) in named {
            if value > DURATION_MAX {
                return Err(ConfigError(format!(
                    "{name} must be at most 30 days ({} ms)",
                    DURATION_MAX.as_millis()
                )));
            }
        }
        let at_least_1ms = [
            ("handshake-timeout", self.handshake_timeout),
            ("close-timeout", self.close_timeout),
            ("auth-timeout", self.auth_timeout),
        ];
        for (name, value) in at_least_1ms {
            if value < Duration::from_millis(1) {
                return Err(ConfigError(format!("{name} must be at least 1 ms")));
            }
        }
        check(
            self.heartbeat_interval.is_zero() || !self.heartbeat_timeout.is_zero(),
            "heartbeat-timeout must be > 0 when the heartbeat is on",
        )?;
        check(
            !self.timer_tick.is_zero() && self.timer_tick <= Duration::from_secs(1),
            "timer tick must be 1 ns ..= 1 s",
        )?;
        check(
            self.metrics_interval >= Duration::from_millis(10),
            "metrics interval must be at least 10 ms",
        )
    }

    fn validate_combinations(&self) -> Result<(), ConfigError> {
        check(
            !(self.tls.is_some() && self.proxy_protocol),
            "tls-cert with proxy-protocol is not supported: the PROXY header would come before \
             the TLS handshake; terminate TLS at the load balancer, or drop --proxy-protocol",
        )?;
        self.cluster.validate()?;
        if let Some(name) = &self.auth_cookie {
            check(
                self.auth.is_some(),
                "auth-cookie needs a token verifier (--auth-hs256-secret, --auth-rs256-public-key \
                 or --auth-jwks-file)",
            )?;
            check(
                !self.origins_allowed.is_empty(),
                "auth-cookie needs --allowed-origin: a browser sends cookies to the relay from any \
                 site's page, so without an Origin allow-list any site could open authenticated \
                 connections in its visitors' name (cross-site WebSocket hijacking)",
            )?;
            check(
                crate::proto::handshake::is_cookie_name(name),
                "auth-cookie must be a cookie name (RFC 6265 token: visible ASCII, no separators)",
            )?;
        }
        let needed = self.outbox_bytes_needed();
        if self.outbox_bytes_max < needed {
            return Err(ConfigError(format!(
                "max-queued-bytes ({}) cannot hold one max-message-size message ({} bytes) with \
                 its envelope ({DELIVERY_ENVELOPE_BYTES_MAX} bytes): a message the relay \
                 accepts could never be delivered; set --max-queued-bytes to at least {needed} \
                 or lower --max-message-size",
                self.outbox_bytes_max, self.message_bytes_max
            )));
        }
        Ok(())
    }

    /// The smallest outbox that holds one delivery of the largest accepted message: the
    /// message, its JSON envelope and its frame header. (Replies and notices have their own
    /// control budget.)
    pub fn outbox_bytes_needed(&self) -> usize {
        self.message_bytes_max + DELIVERY_ENVELOPE_BYTES_MAX
    }

    /// The slow-consumer policy of `channel`: the first matching rule, else the default.
    pub fn slow_consumer_for(&self, channel: &str) -> SlowConsumerPolicy {
        self.slow_consumer_rules
            .iter()
            .find(|(pattern, _)| pattern.matches(channel))
            .map_or(self.slow_consumer, |(_, policy)| *policy)
    }

    /// The tick period of `channel`: the first matching `--tick-for` rule (`None`: the
    /// channel does not tick). Called once per run of publishes, never per delivery.
    pub fn tick_for(&self, channel: &str) -> Option<Duration> {
        if self.tick_rules.is_empty() {
            return None;
        }
        self.tick_rules
            .iter()
            .find(|(pattern, _)| pattern.matches(channel))
            .map(|(_, period)| *period)
    }

    /// True when `channel` keeps presence (`--presence-for`). Called once per subscribe,
    /// unsubscribe and close, never per delivery.
    pub fn presence_for(&self, channel: &str) -> bool {
        !self.presence_patterns.is_empty()
            && self.presence_patterns.iter().any(|p| p.matches(channel))
    }

    /// True when `channel` keeps a keyed snapshot in cluster mode: it matches
    /// `--snapshot-for` and is not a `--tick-for` room (rooms take live messages at their
    /// ticks, which the snapshot cache does not follow: docs/CLUSTER.md, "Keyed snapshots").
    /// Asked once per subscribe, watch and publisher, never per message.
    pub fn keyed_in_cluster(&self, channel: &str) -> bool {
        self.snapshot_for(channel) && self.tick_for(channel).is_none()
    }

    /// True when `channel` keeps a keyed snapshot (`--snapshot-for`). Asked once per channel
    /// state the owner creates, never per message.
    pub fn snapshot_for(&self, channel: &str) -> bool {
        self.snapshot_patterns.iter().any(|p| p.matches(channel))
    }

    /// A configuration for tests and the in-process swarm: loopback, a free port.
    pub fn loopback_for_tests(loops: usize) -> Self {
        Config {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            loops,
            metrics_interval: Duration::from_millis(50),
            // Tests and the in-process swarm open thousands of connections from 127.0.0.1;
            // the tests of the limits turn them on explicitly.
            connect_rate_per_s: 0,
            connect_rate_per_ip_per_s: 0,
            connections_per_ip_max: 0,
            ..Config::default()
        }
    }
}

#[cfg(test)]
mod tests;
