//! Changing the configuration of a running relay without dropping a connection.
//!
//! Owns: the live configuration every loop reads (`LiveConfig`: an `Arc<Config>` behind a lock
//! and a generation counter) and the rule of what may change at run time (`merge_reload`).
//! May not touch: connections (each loop picks the new configuration up itself, at the start
//! of a turn: one atomic load per turn, a lock only when the generation moved).
//!
//! What changes at run time: authentication (keys re-read, claims rules, cookie and query
//! tokens, the auth timeout), the TLS certificate, key and client CA (files re-read; new
//! connections take them, open ones keep their session), the `Origin` allow-list, trusted proxies and their forwarding
//! header, connection and message rate limits,
//! connection counts, subscriptions per connection, slow-consumer policies, timeouts and the
//! heartbeat. They apply to what happens after the reload: new connections, the next deadline
//! armed, the next delivery; a connection's message-rate bucket keeps the rate it started
//! with. Everything else (addresses, threads, sizes of buffers and queues, retention, metrics
//! settings, and every cluster setting: `--nats` and its companions) keeps its start-up value
//! and is reported as needing a restart.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use crate::config::Config;

/// The configuration the loops read, replaced as a whole by a reload.
#[derive(Debug)]
pub struct LiveConfig {
    current: RwLock<Arc<Config>>,
    generation: AtomicU64,
}

impl LiveConfig {
    /// The start-up configuration, generation 0.
    pub fn new(config: &Config) -> Self {
        LiveConfig {
            current: RwLock::new(Arc::new(config.clone())),
            generation: AtomicU64::new(0),
        }
    }

    /// The configuration now in force.
    pub fn current(&self) -> Arc<Config> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The current configuration and its generation, if newer than `seen`.
    pub(super) fn newer_than(&self, seen: u64) -> Option<(Arc<Config>, u64)> {
        let generation = self.generation.load(Ordering::Acquire);
        (generation != seen).then(|| (self.current(), generation))
    }

    /// Publishes `config` to every loop (they take it at their next turn).
    pub(super) fn publish(&self, config: Config) {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        *current = Arc::new(config);
        self.generation.fetch_add(1, Ordering::Release);
    }
}

/// What a reload changed, by flag name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Settings now in force with a new value (`auth` whenever authentication is on: its key
    /// files are read again, and a key's content is not compared).
    pub changed: Vec<&'static str>,
    /// Settings whose new value was ignored: they take effect at the next start.
    pub needs_restart: Vec<&'static str>,
}

/// The configuration to publish: `old` with every run-time setting taken from `new`, and the
/// lists of what changed and what needs a restart.
pub fn merge_reload(old: &Config, new: Config) -> (Config, Reloaded) {
    let mut applied = old.clone();
    let mut report = Reloaded::default();
    let Merged { auth, tls } = merge_fields(&mut applied, new, &mut report);
    if old.auth.is_some() || auth.is_some() {
        report.changed.push("auth");
    }
    applied.auth = auth;
    // The certificate, key and client CA are read again and taken by new connections; turning
    // TLS on or off changes what the port speaks: that waits for a restart.
    match (&old.tls, tls) {
        (Some(_), Some(tls)) => {
            report.changed.push("tls");
            applied.tls = Some(tls);
        }
        (None, None) => {}
        (_, _) => report.needs_restart.push("tls-cert"),
    }
    (applied, report)
}

/// The settings `merge_reload` decides itself (their files are re-read: a reload always
/// counts as a change when they are on).
struct Merged {
    auth: Option<Arc<crate::auth::Verifier>>,
    tls: Option<Arc<crate::tls::TlsServer>>,
}

/// Writes `merge_fields` from the table below: it destructures `Config` exhaustively, so a new
/// setting does not compile until it is given its kind here (`live`: taken at run time and
/// reported as changed; `restart`: kept, and reported as needing a restart when it differs).
macro_rules! reload_kinds {
    (
        merged: { $($merged:ident),* $(,)? }
        live: { $($live:ident => $live_flag:literal),* $(,)? }
        restart: { $($restart:ident => $restart_flag:literal),* $(,)? }
    ) => {
        /// Takes the `live` settings of `new` into `applied`, reports every difference, and
        /// returns the `merged` ones for the caller.
        fn merge_fields(applied: &mut Config, new: Config, report: &mut Reloaded) -> Merged {
            let Config { $($merged,)* $($live,)* $($restart,)* } = new;
            $(
                if format!("{:?}", applied.$live) != format!("{:?}", $live) {
                    report.changed.push($live_flag);
                }
                applied.$live = $live;
            )*
            $(
                if format!("{:?}", applied.$restart) != format!("{:?}", $restart) {
                    report.needs_restart.push($restart_flag);
                }
            )*
            Merged { $($merged),* }
        }
    };
}

reload_kinds! {
    merged: { auth, tls }
    live: {
        heartbeat_interval => "heartbeat-interval",
        heartbeat_timeout => "heartbeat-timeout",
        handshake_timeout => "handshake-timeout",
        close_timeout => "close-timeout",
        idle_timeout => "idle-timeout",
        shutdown_grace => "shutdown-grace",
        drain_over => "drain-over",
        slow_consumer => "slow-consumer",
        slow_consumer_rules => "slow-consumer-for",
        connections_max => "max-connections",
        subscriptions_per_connection_max => "max-subscriptions",
        ip_buckets_max => "ip buckets",
        auth_timeout => "auth-timeout",
        connect_rate_per_s => "connect-rate",
        connect_rate_per_ip_per_s => "connect-rate-per-ip",
        connections_per_ip_max => "max-connections-per-ip",
        origins_allowed => "allowed-origin",
        messages_per_s_max => "max-messages-per-second",
        auth_query_token => "auth-query-token",
        auth_cookie => "auth-cookie",
        trusted_proxies => "trusted-proxy",
        forwarded_header => "forwarded-header",
    }
    restart: {
        listen_addr => "bind/port",
        loops => "threads",
        backlog => "backlog",
        message_bytes_max => "max-message-size",
        channel_bytes_max => "max-channel-length",
        echo_enabled => "echo",
        deflate_enabled => "deflate",
        deflate_min_bytes => "deflate-min-size",
        deflate_contexts_max => "deflate-max-contexts",
        subprotocols => "protocol",
        outbox_bytes_max => "max-queued-bytes",
        control_bytes_max => "control budget",
        history_size => "history-size",
        history_ttl => "history-ttl",
        history_bytes_max => "history-max-bytes",
        last_value => "last-value",
        snapshot_patterns => "snapshot-for",
        snapshot_keys_max => "snapshot-max-keys",
        snapshot_bytes_max => "snapshot-max-bytes",
        throttle_keys_max => "throttle-max-keys",
        mesh_inbox_len_max => "mesh inbox",
        inbox_msgs_per_turn_max => "inbox messages per turn",
        publish_queue_len_max => "publish queue",
        publish_queue_bytes_max => "publish queue bytes",
        idle_channels_max => "idle channels",
        timer_tick => "timer tick",
        latency_metrics => "no-latency-metrics",
        metrics_interval => "metrics-interval",
        metrics_addr => "metrics-bind",
        log_format => "log-format",
        proxy_protocol => "proxy-protocol",
        tick_rules => "tick-for",
        presence_patterns => "presence-for",
        presence_list_max => "presence-max-list",
        cluster => "nats",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn run_time_settings_apply_and_the_others_wait_for_a_restart() {
        let old = Config::default();
        let new = Config {
            origins_allowed: vec!["https://b.example".into()],
            connections_per_ip_max: 7,
            heartbeat_interval: Duration::from_secs(3),
            loops: old.loops + 1,
            message_bytes_max: 4096,
            ..Config::default()
        };
        let (applied, report) = merge_reload(&old, new);
        assert_eq!(
            report.changed,
            [
                "heartbeat-interval",
                "max-connections-per-ip",
                "allowed-origin"
            ]
        );
        assert_eq!(report.needs_restart, ["threads", "max-message-size"]);
        assert_eq!(applied.origins_allowed, ["https://b.example"]);
        assert_eq!(applied.connections_per_ip_max, 7);
        assert_eq!(applied.heartbeat_interval, Duration::from_secs(3));
        assert_eq!(applied.loops, old.loops, "kept until a restart");
        assert_eq!(applied.message_bytes_max, old.message_bytes_max);
    }

    #[test]
    fn cluster_settings_wait_for_a_restart() {
        let old = Config::default();
        let mut new = Config::default();
        new.cluster.nats_urls = vec!["nats://127.0.0.1:4222".into()];
        let (applied, report) = merge_reload(&old, new);
        assert_eq!(report.needs_restart, ["nats"]);
        assert!(!applied.cluster.enabled(), "kept until a restart");
    }

    #[test]
    fn an_unchanged_configuration_reports_nothing() {
        let (_, report) = merge_reload(&Config::default(), Config::default());
        assert_eq!(report, Reloaded::default());
    }

    #[test]
    fn loops_see_a_published_configuration_once() {
        let live = LiveConfig::new(&Config::default());
        assert!(live.newer_than(0).is_none());
        live.publish(Config {
            connections_max: 3,
            ..Config::default()
        });
        let (config, generation) = live.newer_than(0).expect("newer");
        assert_eq!((config.connections_max, generation), (3, 1));
        assert!(live.newer_than(generation).is_none());
    }
}

#[cfg(test)]
mod tls_tests {
    use super::*;
    use std::sync::Arc;

    use crate::tls::{TlsFiles, TlsServer};

    /// A self-signed certificate for `localhost` in `dir/name.{crt,key}`, loaded.
    fn tls(name: &str) -> Option<Arc<TlsServer>> {
        let dir = std::env::temp_dir().join(format!("wsrelay-reload-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
        let files = TlsFiles {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
            client_ca: None,
        };
        std::fs::write(&files.cert, made.cert.pem()).expect("write");
        std::fs::write(&files.key, made.signing_key.serialize_pem()).expect("write");
        Some(Arc::new(TlsServer::load(files).expect("load")))
    }

    #[test]
    fn a_new_certificate_is_live_but_turning_tls_on_or_off_waits_for_a_restart() {
        let old = Config {
            tls: tls("a"),
            ..Config::default()
        };
        let (applied, report) = merge_reload(
            &old,
            Config {
                tls: tls("b"),
                ..Config::default()
            },
        );
        assert_eq!(report.changed, ["tls"]);
        let files = applied.tls.as_ref().map(|t| t.files().cert.clone());
        assert!(files.is_some_and(|f| f.ends_with("b.crt")));

        let (applied, report) = merge_reload(&old, Config::default());
        assert_eq!(report.needs_restart, ["tls-cert"]);
        assert!(applied.tls.is_some(), "kept until a restart");
        let (applied, report) = merge_reload(&Config::default(), old.clone());
        assert_eq!(report.needs_restart, ["tls-cert"]);
        assert!(applied.tls.is_none());
    }
}
