//! Command line: `wsrelay [serve] [FLAGS]`, `wsrelay config check FILE`, `wsrelay config
//! default`. Every flag has a default that runs a useful relay, the flags users expect from
//! the environment have an environment fallback, and every flag can also be a key of a
//! configuration file (`--config`, see `config_file.rs`).

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::sync::{Arc, LazyLock};

use wsrelay::auth::{AuthConfig, AuthConfigError, ChannelPattern, Verifier};
use wsrelay::cidr::Cidr;
use wsrelay::config::{Config, ForwardedHeader, LogFormat, SlowConsumerPolicy};

/// The library's defaults: every flag's default is read from here, so the two cannot drift
/// (a test below checks that no flags at all give exactly `Config::default()`).
static DEFAULTS: LazyLock<Config> = LazyLock::new(Config::default);

/// A duration as the whole milliseconds the flags take.
fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// wsrelay: a WebSocket pub/sub relay.
#[derive(Debug, Parser)]
// `args_conflicts_with_subcommands`: `wsrelay --config F serve ...` is a usage error, not a
// `serve` that silently ignores the flags written before it.
#[command(
    name = "wsrelay",
    version = wsrelay::VERSION_WITH_REVISION,
    about,
    long_about = None,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the relay (the default).
    Serve(Box<ServeArgs>),
    /// Configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate FILE and print the effective configuration (FILE, environment, defaults).
    Check {
        /// The configuration file (TOML).
        file: PathBuf,
    },
    /// Print a complete configuration file with every key, its help and its default.
    Default,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Action {
    /// Run the relay with these flags.
    Serve(Box<ServeArgs>),
    /// Print this and exit successfully (`config check`, `config default`).
    Print(String),
}

/// Why the command line could not be used.
#[derive(Debug)]
pub enum CliError {
    /// clap's own answer: `--help`, `--version`, or a malformed flag (`exit` prints it).
    Clap(clap::Error),
    /// A configuration file or value that cannot be used (exit status 2).
    Usage(String),
}

impl From<String> for CliError {
    fn from(message: String) -> Self {
        CliError::Usage(message)
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Clap(e) => write!(f, "{}", e.to_string().trim_end()),
            CliError::Usage(m) => f.write_str(m),
        }
    }
}

/// Parses the command line, then applies the configuration file below the flags and the
/// environment. Used at start-up and again for every reload (SIGHUP): the same flags and
/// environment, the file read anew.
pub fn action(argv: Vec<OsString>) -> Result<Action, CliError> {
    let root = Cli::command();
    let matches = root
        .clone()
        .try_get_matches_from(&argv)
        .map_err(CliError::Clap)?;
    if let Some(("config", m)) = matches.subcommand() {
        return config_action(&root, m).map_err(CliError::Usage);
    }
    let (cmd, serve) = serve_part(&root, &matches);
    let mut argv = argv;
    if let Some(path) = serve.get_one::<PathBuf>("config") {
        argv.extend(crate::config_file::flags_from_file(path, cmd, serve)?);
    }
    let cli = Cli::try_parse_from(&argv).map_err(CliError::Clap)?;
    Ok(Action::Serve(Box::new(cli.into_serve())))
}

/// The serve flags' command and matches: top level, or under `serve`.
fn serve_part<'a>(
    root: &'a clap::Command,
    m: &'a ArgMatches,
) -> (&'a clap::Command, &'a ArgMatches) {
    match (m.subcommand(), root.find_subcommand("serve")) {
        (Some(("serve", sub)), Some(cmd)) => (cmd, sub),
        _ => (root, m),
    }
}

fn config_action(root: &clap::Command, m: &ArgMatches) -> Result<Action, String> {
    let serve_cmd = root.find_subcommand("serve").unwrap_or(root);
    let Some(("check", check)) = m.subcommand() else {
        return Ok(Action::Print(crate::config_file::default_file(serve_cmd)));
    };
    let Some(file) = check.get_one::<PathBuf>("file") else {
        return Err("config check: FILE is required".into());
    };
    // The file as `serve` would read it: environment variables still apply.
    let mut argv: Vec<OsString> = vec!["wsrelay".into(), "serve".into(), "--config".into()];
    argv.push(file.clone().into_os_string());
    let first = serve_cmd
        .clone()
        .try_get_matches_from(&argv[1..])
        .map_err(|e| e.to_string())?;
    argv.extend(crate::config_file::flags_from_file(
        file, serve_cmd, &first,
    )?);
    let merged = serve_cmd
        .clone()
        .try_get_matches_from(&argv[1..])
        .map_err(|e| e.to_string())?;
    let args = ServeArgs::from_arg_matches(&merged).map_err(|e| e.to_string())?;
    let config = args.to_config()?;
    config.validate().map_err(|e| e.to_string())?;
    Ok(Action::Print(crate::config_file::effective(
        serve_cmd, &merged,
    )))
}

impl Cli {
    /// The serve flags, whichever way they were given.
    pub fn into_serve(self) -> ServeArgs {
        match self.command {
            Some(Command::Serve(args)) => *args,
            Some(Command::Config(_)) | None => self.serve,
        }
    }
}

/// Flags of `wsrelay serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (TOML, the flags' names as keys); flags and environment override it.
    #[arg(long, env = "WS_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "WS_BIND", default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Port to listen on.
    #[arg(long, env = "WS_PORT", default_value_t = 8080)]
    port: u16,
    /// Event loops (threads); default: available cores.
    #[arg(long, env = "WS_THREADS")]
    threads: Option<usize>,
    /// Largest message in bytes; larger ones close the connection with 1009.
    #[arg(long, default_value_t = DEFAULTS.message_bytes_max)]
    max_message_size: usize,
    /// Longest channel name in bytes (1-255).
    #[arg(long, default_value_t = DEFAULTS.channel_bytes_max)]
    max_channel_length: usize,
    /// Server ping after this many ms of silence (0: no heartbeat).
    #[arg(long, env = "WS_HEARTBEAT_INTERVAL", default_value_t = ms(DEFAULTS.heartbeat_interval))]
    heartbeat_interval: u64,
    /// Terminate a pinged connection that sends nothing for this many ms.
    #[arg(long, env = "WS_HEARTBEAT_TIMEOUT", default_value_t = ms(DEFAULTS.heartbeat_timeout))]
    heartbeat_timeout: u64,
    /// Time to complete the HTTP upgrade, ms (slowloris defence).
    #[arg(long, default_value_t = ms(DEFAULTS.handshake_timeout))]
    handshake_timeout: u64,
    /// Time the peer has to answer our close frame, ms.
    #[arg(long, default_value_t = ms(DEFAULTS.close_timeout))]
    close_timeout: u64,
    /// Close connections silent for this many ms (0: off).
    #[arg(long, default_value_t = ms(DEFAULTS.idle_timeout))]
    idle_timeout: u64,
    /// On SIGINT/SIGTERM, wait this many ms for close replies.
    #[arg(long, default_value_t = ms(DEFAULTS.shutdown_grace))]
    shutdown_grace: u64,
    /// Spread shutdown closes (code 4200) over this many ms (0: all at once with 1001).
    #[arg(long, default_value_t = ms(DEFAULTS.drain_over))]
    drain_over: u64,
    /// Serve /echo (conformance endpoint).
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true")]
    echo: bool,
    /// Negotiate permessage-deflate (RFC 7692) with clients that offer it.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true")]
    deflate: bool,
    /// Messages shorter than this many bytes go uncompressed.
    #[arg(long, default_value_t = DEFAULTS.deflate_min_bytes)]
    deflate_min_size: usize,
    /// Connections (process-wide) given their own compression contexts (context takeover);
    /// beyond it offers are answered without takeover. 0: shared compression only.
    #[arg(long, default_value_t = DEFAULTS.deflate_contexts_max)]
    deflate_max_contexts: usize,
    /// Accepted subprotocol (repeatable, in preference order).
    #[arg(long = "protocol")]
    protocols: Vec<String>,
    /// Bytes of deliveries queued per connection before the slow-consumer policy acts.
    #[arg(long, default_value_t = DEFAULTS.outbox_bytes_max)]
    max_queued_bytes: usize,
    /// Slow-consumer policy: close (4100), drop (gap notice), conflate (latest per channel/key).
    #[arg(long, default_value = DEFAULTS.slow_consumer.as_str(), value_parser = parse_policy)]
    slow_consumer: SlowConsumerPolicy,
    /// Per-channel policy, PATTERN=POLICY (repeatable, first match wins), e.g. 'md.*=conflate'.
    #[arg(long = "slow-consumer-for", value_parser = parse_policy_rule)]
    slow_consumer_rules: Vec<(ChannelPattern, SlowConsumerPolicy)>,
    /// Room ticks, PATTERN=MS (repeatable, first match wins), e.g. 'room.*=50': deliveries on
    /// matching channels are sent once per tick as one batch frame per subscriber.
    #[arg(long = "tick-for", value_parser = parse_tick_rule)]
    tick_rules: Vec<(ChannelPattern, u64)>,
    /// Keep presence (members, joins and leaves) on channels matching PATTERN (repeatable).
    #[arg(long = "presence-for", value_parser = parse_pattern)]
    presence_patterns: Vec<ChannelPattern>,
    /// Members listed in one presence message (the count is always exact).
    #[arg(long, default_value_t = DEFAULTS.presence_list_max)]
    presence_max_list: usize,
    /// Messages retained per channel for recovery with `since` (0: off).
    #[arg(long, default_value_t = DEFAULTS.history_size)]
    history_size: usize,
    /// Age limit of retained messages, ms (0: none).
    #[arg(long, default_value_t = ms(DEFAULTS.history_ttl))]
    history_ttl: u64,
    /// Bytes of retained history in the whole process; beyond it the oldest are evicted.
    #[arg(long, default_value_t = DEFAULTS.history_bytes_max)]
    history_max_bytes: usize,
    /// Send each new subscriber the channel's latest message.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true")]
    last_value: bool,
    /// Keep the latest message per key of matching channels; new subscribers get a snapshot
    /// of them (PATTERN, repeatable, e.g. 'board.*').
    #[arg(long = "snapshot-for", value_parser = parse_pattern)]
    snapshot_for: Vec<ChannelPattern>,
    /// Keys kept per snapshot channel; beyond it the least recently updated is evicted.
    #[arg(long, default_value_t = DEFAULTS.snapshot_keys_max)]
    snapshot_max_keys: usize,
    /// Bytes (keys, contents, 50 per entry) kept per snapshot channel; beyond it the least
    /// recently updated keys are evicted.
    #[arg(long, default_value_t = DEFAULTS.snapshot_bytes_max)]
    snapshot_max_bytes: usize,
    /// Keys per channel whose latest delivery a loop keeps for throttled subscribers.
    #[arg(long, default_value_t = DEFAULTS.throttle_keys_max)]
    throttle_max_keys: usize,
    /// Connections per process; beyond it the handshake gets 503.
    #[arg(long, default_value_t = DEFAULTS.connections_max)]
    max_connections: usize,
    /// Open connections from one source IP (0: unlimited); over it: 503.
    #[arg(long, default_value_t = DEFAULTS.connections_per_ip_max)]
    max_connections_per_ip: usize,
    /// New connections per second, whole process (0: unlimited); over it: 503 + Retry-After.
    #[arg(long, default_value_t = DEFAULTS.connect_rate_per_s)]
    connect_rate: u64,
    /// New connections per second from one source IP (0: unlimited).
    #[arg(long, default_value_t = DEFAULTS.connect_rate_per_ip_per_s)]
    connect_rate_per_ip: u64,
    /// Allowed Origin header value (repeatable; none given: any origin). Others get 403.
    #[arg(long = "allowed-origin")]
    allowed_origins: Vec<String>,
    /// Data messages per second per connection (0: unlimited); over it: error, then 4101.
    #[arg(long, default_value_t = DEFAULTS.messages_per_s_max)]
    max_messages_per_second: u64,
    /// Subscriptions per connection.
    #[arg(long, default_value_t = DEFAULTS.subscriptions_per_connection_max)]
    max_subscriptions: usize,
    /// Serve /metrics, /stats, /healthz on this address instead of the relay port.
    #[arg(long)]
    metrics_bind: Option<SocketAddr>,
    /// Do not time deliveries (relay-latency histogram stays empty); for measuring its cost.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true")]
    no_latency_metrics: bool,
    /// Metrics snapshot interval, ms.
    #[arg(long, default_value_t = ms(DEFAULTS.metrics_interval))]
    metrics_interval: u64,
    /// Listen backlog.
    #[arg(long, default_value_t = DEFAULTS.backlog)]
    backlog: u32,
    /// Log level: a filter directive, e.g. `info` or `wsrelay=debug,warn` (RUST_LOG syntax).
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log_level: String,
    /// Log format: text or json.
    #[arg(long, default_value = "text", value_parser = parse_log_format)]
    log_format: LogFormat,
    /// Require HS256 JWTs signed with this secret (at least 32 bytes).
    #[arg(long, env = "WS_AUTH_HS256_SECRET", hide_env_values = true)]
    auth_hs256_secret: Option<String>,
    /// Require RS256 JWTs verified with this RSA public key (PEM file).
    #[arg(long, env = "WS_AUTH_RS256_PUBLIC_KEY")]
    auth_rs256_public_key: Option<std::path::PathBuf>,
    /// Verify tokens with the keys of this JWK Set file (RFC 7517; HS256/RS256, chosen by
    /// `kid`); read again on SIGHUP, so keys rotate without a restart.
    #[arg(long, env = "WS_AUTH_JWKS_FILE")]
    auth_jwks_file: Option<std::path::PathBuf>,
    /// Required `aud` claim value.
    #[arg(long)]
    auth_audience: Option<String>,
    /// Required `iss` claim value.
    #[arg(long)]
    auth_issuer: Option<String>,
    /// Clock-skew allowance for `exp`/`nbf`, seconds (at most 300).
    #[arg(long, default_value_t = 0)]
    auth_leeway: u64,
    /// Time to send `{"type":"auth"}`, ms.
    #[arg(long, default_value_t = ms(DEFAULTS.auth_timeout))]
    auth_timeout: u64,
    /// Also accept `?token=` in the URL (less safe: URLs end up in logs).
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true")]
    auth_query_token: bool,
    /// Also take the token from this cookie of the upgrade request (needs --allowed-origin).
    #[arg(long)]
    auth_cookie: Option<String>,
    /// Require a PROXY protocol v1/v2 header on every relay connection and take the client
    /// address from it (only for a port that nothing but the load balancer can reach).
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true")]
    proxy_protocol: bool,
    /// Take the client address from the forwarding header of peers in this range, CIDR or
    /// address (repeatable); others' forwarding headers are ignored.
    #[arg(long = "trusted-proxy", value_parser = parse_cidr)]
    trusted_proxies: Vec<Cidr>,
    /// The forwarding header the trusted proxies write: x-forwarded-for or forwarded (RFC 7239).
    #[arg(long, default_value = DEFAULTS.forwarded_header.as_str(), value_parser = parse_forwarded_header)]
    forwarded_header: ForwardedHeader,
    /// Serve wss:// (and HTTPS metrics) with this certificate chain (PEM, leaf first); needs
    /// --tls-key. Read again on SIGHUP: new connections see the new certificate.
    #[arg(long, env = "WS_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "WS_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by these CAs (PEM; mTLS); needs --tls-cert.
    #[arg(long, env = "WS_TLS_CLIENT_CA", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    #[command(flatten)]
    cluster: crate::cli_cluster::ClusterArgs,
}

fn parse_cidr(s: &str) -> Result<Cidr, String> {
    s.parse().map_err(|e| format!("{e}"))
}

fn parse_forwarded_header(s: &str) -> Result<ForwardedHeader, String> {
    ForwardedHeader::parse(s).ok_or_else(|| "expected x-forwarded-for or forwarded".into())
}

fn parse_policy(s: &str) -> Result<SlowConsumerPolicy, String> {
    SlowConsumerPolicy::parse(s).ok_or_else(|| "expected close, drop or conflate".into())
}

fn parse_pattern(s: &str) -> Result<ChannelPattern, String> {
    ChannelPattern::parse(s).map_err(|e| format!("pattern: {e}"))
}

fn parse_policy_rule(s: &str) -> Result<(ChannelPattern, SlowConsumerPolicy), String> {
    let (pattern, policy) = s.split_once('=').ok_or("expected PATTERN=POLICY")?;
    let pattern = ChannelPattern::parse(pattern).map_err(|e| format!("pattern: {e}"))?;
    Ok((pattern, parse_policy(policy)?))
}

fn parse_tick_rule(s: &str) -> Result<(ChannelPattern, u64), String> {
    let (pattern, period) = s.split_once('=').ok_or("expected PATTERN=MS")?;
    let pattern = ChannelPattern::parse(pattern).map_err(|e| format!("pattern: {e}"))?;
    let period = period
        .parse::<u64>()
        .map_err(|_| "expected a tick period in ms after '='")?;
    Ok((pattern, period))
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err("expected text or json".into()),
    }
}

impl ServeArgs {
    /// The log level directive (not part of `Config`: logging belongs to the binary).
    pub fn log_level(&self) -> &str {
        &self.log_level
    }

    /// The token verifier these flags describe, if any (reads the key file).
    fn verifier(&self) -> Result<Option<Arc<Verifier>>, String> {
        let rs256_public_key_pem = match &self.auth_rs256_public_key {
            Some(path) => {
                Some(std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?)
            }
            None => None,
        };
        let jwks = match &self.auth_jwks_file {
            Some(path) => {
                Some(std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?)
            }
            None => None,
        };
        let cfg = AuthConfig {
            jwks,
            hs256_secret: self
                .auth_hs256_secret
                .as_ref()
                .map(|s| s.as_bytes().to_vec()),
            rs256_public_key_pem,
            audience: self.auth_audience.clone(),
            issuer: self.auth_issuer.clone(),
            leeway_s: self.auth_leeway,
            ..AuthConfig::default()
        };
        let verifier = Verifier::new(&cfg).map_err(|e| match (&self.auth_jwks_file, e) {
            (
                Some(path),
                AuthConfigError::JwksMalformed
                | AuthConfigError::JwksDuplicateKid
                | AuthConfigError::JwksNoUsableKey,
            ) => format!("{}: {e}", path.display()),
            _ => format!("authentication: {e}"),
        })?;
        Ok(verifier.map(Arc::new))
    }

    /// The configuration these flags describe.
    pub fn to_config(&self) -> Result<Config, String> {
        let auth = self.verifier()?;
        let tls = self.tls()?;
        Ok(Config {
            tls,
            ..self.to_config_with(auth)
        })
    }

    /// The certificate, key and client CA, read now (at start-up and on every reload).
    fn tls(&self) -> Result<Option<Arc<wsrelay::tls::TlsServer>>, String> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let files = wsrelay::tls::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: self.tls_client_ca.clone(),
        };
        let server = wsrelay::tls::TlsServer::load(files).map_err(|e| format!("tls: {e}"))?;
        Ok(Some(Arc::new(server)))
    }

    fn to_config_with(&self, auth: Option<Arc<Verifier>>) -> Config {
        let ms = Duration::from_millis;
        let defaults = Config::default();
        Config {
            listen_addr: SocketAddr::new(self.bind, self.port),
            loops: self.threads.unwrap_or(defaults.loops),
            backlog: self.backlog,
            message_bytes_max: self.max_message_size,
            channel_bytes_max: self.max_channel_length,
            heartbeat_interval: ms(self.heartbeat_interval),
            heartbeat_timeout: ms(self.heartbeat_timeout),
            handshake_timeout: ms(self.handshake_timeout),
            close_timeout: ms(self.close_timeout),
            idle_timeout: ms(self.idle_timeout),
            shutdown_grace: ms(self.shutdown_grace),
            drain_over: ms(self.drain_over),
            echo_enabled: self.echo,
            deflate_enabled: self.deflate,
            deflate_min_bytes: self.deflate_min_size,
            deflate_contexts_max: self.deflate_max_contexts,
            subprotocols: self.protocols.clone(),
            outbox_bytes_max: self.max_queued_bytes,
            slow_consumer: self.slow_consumer,
            slow_consumer_rules: self.slow_consumer_rules.clone(),
            history_size: self.history_size,
            history_ttl: ms(self.history_ttl),
            history_bytes_max: self.history_max_bytes,
            last_value: self.last_value,
            snapshot_patterns: self.snapshot_for.clone(),
            snapshot_keys_max: self.snapshot_max_keys,
            snapshot_bytes_max: self.snapshot_max_bytes,
            throttle_keys_max: self.throttle_max_keys,
            connections_max: self.max_connections,
            subscriptions_per_connection_max: self.max_subscriptions,
            metrics_addr: self.metrics_bind,
            metrics_interval: ms(self.metrics_interval),
            latency_metrics: !self.no_latency_metrics,
            log_format: self.log_format,
            auth,
            auth_timeout: ms(self.auth_timeout),
            auth_query_token: self.auth_query_token,
            auth_cookie: self.auth_cookie.clone(),
            connections_per_ip_max: self.max_connections_per_ip,
            connect_rate_per_s: self.connect_rate,
            connect_rate_per_ip_per_s: self.connect_rate_per_ip,
            origins_allowed: self.allowed_origins.clone(),
            messages_per_s_max: self.max_messages_per_second,
            proxy_protocol: self.proxy_protocol,
            trusted_proxies: self.trusted_proxies.clone(),
            forwarded_header: self.forwarded_header,
            tick_rules: self
                .tick_rules
                .iter()
                .map(|(pattern, period)| (pattern.clone(), ms(*period)))
                .collect(),
            presence_patterns: self.presence_patterns.clone(),
            presence_list_max: self.presence_max_list,
            cluster: self.cluster.to_config(),
            ..defaults
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{e}"));
        cli.into_serve()
            .to_config()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn no_flags_give_exactly_the_library_defaults() {
        assert_eq!(
            format!("{:?}", parse(&["wsrelay"])),
            format!("{:?}", Config::default())
        );
        assert_eq!(
            format!("{:?}", parse(&["wsrelay", "serve"])),
            format!("{:?}", Config::default())
        );
    }

    #[test]
    fn flags_reach_the_config() {
        let c = parse(&[
            "wsrelay",
            "--max-message-size",
            "2048",
            "--history-max-bytes",
            "1048576",
            "--heartbeat-interval",
            "1500",
        ]);
        assert_eq!(c.message_bytes_max, 2048);
        assert_eq!(c.history_bytes_max, 1 << 20);
        assert_eq!(c.heartbeat_interval, Duration::from_millis(1500));
    }

    #[test]
    fn proxy_flags_reach_the_config() {
        let c = parse(&[
            "wsrelay",
            "--proxy-protocol",
            "--trusted-proxy",
            "10.0.0.0/8",
            "--trusted-proxy",
            "2001:db8::1",
            "--forwarded-header",
            "forwarded",
        ]);
        assert!(c.proxy_protocol);
        let ranges: Vec<String> = c.trusted_proxies.iter().map(|r| r.to_string()).collect();
        assert_eq!(ranges, ["10.0.0.0/8", "2001:db8::1/128"]);
        assert_eq!(c.forwarded_header, ForwardedHeader::Forwarded);
        let bad = Cli::try_parse_from(["wsrelay", "--trusted-proxy", "10.0.0.1/8"]);
        assert!(bad.is_err());
    }

    /// The configuration `action` gives for `args` (after the file, if any).
    fn config_of(args: &[&str]) -> Config {
        let argv = args.iter().map(OsString::from).collect();
        match action(argv) {
            Ok(Action::Serve(serve)) => serve.to_config().unwrap_or_else(|e| panic!("{e}")),
            Ok(Action::Print(p)) => panic!("printed {p}"),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn a_flag_turns_off_a_switch_the_file_turns_on() {
        let path = std::env::temp_dir().join(format!("wsrelay-switch-{}.toml", std::process::id()));
        std::fs::write(&path, "echo = true\ndeflate = true\n").unwrap_or_else(|e| panic!("{e}"));
        let f = path.to_str().unwrap_or_else(|| panic!("utf-8 path"));
        let from_file = config_of(&["wsrelay", "--config", f]);
        assert!(from_file.echo_enabled && from_file.deflate_enabled);
        let off = config_of(&["wsrelay", "--config", f, "--echo=false", "--deflate=false"]);
        assert!(!off.echo_enabled && !off.deflate_enabled);
        let on = config_of(&[
            "wsrelay",
            "serve",
            "--config",
            f,
            "--echo",
            "--deflate=true",
        ]);
        assert!(on.echo_enabled && on.deflate_enabled);
        let _ = std::fs::remove_file(&path);
        assert!(parse(&["wsrelay", "--echo"]).echo_enabled);
        assert!(!parse(&["wsrelay", "--echo=false"]).echo_enabled);
        assert!(Cli::try_parse_from(["wsrelay", "--echo=maybe"]).is_err());
    }
}
