//! The K streams `WSR_0..WSR_{K-1}` (docs/CLUSTER.md, "Streams"): created at start-up when
//! missing, checked when present. A stream whose configuration conflicts with this relay's
//! (another K's subjects, replicas, storage, per-subject history, age, RePublish, direct
//! gets) is refused with a clear error: relays sharing a NATS must agree. With
//! `--snapshot-for`, also the key stores `WSRK_<k>` (docs/CLUSTER.md, "Keyed snapshots"):
//! subjects `wsr.k.<k>.>`, one message per subject (the latest record of each key, and the
//! channel's watermark), the same storage, replicas and age as `WSR_<k>`, direct gets on.

use std::time::Duration;

use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::stream::{Config as StreamConfig, Republish, StorageType, Stream};
use async_nats::jetstream::Context;
use async_nats::jetstream::ErrorCode;

use crate::cluster::subject;
use crate::cluster_config::NatsStorage;
use crate::config::Config;

/// The deduplication window (longer than any retry; nats-server requires it <= max_age).
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// With `--snapshot-for`, the streams keep at least this many messages per channel: the key
/// store applies a relay's batches after their PubAck, at most two of them unapplied per
/// writing relay (`keyed.rs`), and when the watermark is behind, the stream must still hold
/// what follows it (docs/CLUSTER.md, "Keyed snapshots across relays": up to 32 relays
/// writing one channel at once; beyond, what the stream lost is counted).
pub(super) const KEYED_RING_MIN: usize = 64;

/// The configuration of stream `k` for this relay's settings.
pub(super) fn wanted(config: &Config, k: u32) -> StreamConfig {
    let c = &config.cluster;
    let max_age = config.history_ttl;
    let duplicate_window = match max_age.is_zero() {
        true => DUPLICATE_WINDOW,
        false => DUPLICATE_WINDOW.min(max_age),
    };
    StreamConfig {
        name: subject::stream_name(k),
        subjects: vec![format!("wsr.c.{k}.>")],
        // The per-channel ring; at least the head (the last value and the next CAS), and
        // with keyed snapshots what the key store may still have to apply.
        max_messages_per_subject: ring(config) as i64,
        max_age,
        storage: match c.storage {
            NatsStorage::File => StorageType::File,
            NatsStorage::Memory => StorageType::Memory,
        },
        num_replicas: c.replicas,
        duplicate_window,
        allow_direct: true,
        republish: Some(Republish {
            source: format!("wsr.c.{k}.>"),
            destination: format!("wsr.l.{k}.>"),
            headers_only: false,
        }),
        ..Default::default()
    }
}

/// Messages kept per channel by the streams.
fn ring(config: &Config) -> usize {
    match config.snapshot_patterns.is_empty() {
        true => config.history_size.max(1),
        false => config.history_size.max(KEYED_RING_MIN),
    }
}

/// The key store of shard `k` (`--snapshot-for`): one record per subject.
pub(super) fn wanted_keys(config: &Config, k: u32) -> StreamConfig {
    let main = wanted(config, k);
    StreamConfig {
        name: subject::key_stream_name(k),
        subjects: vec![format!("wsr.k.{k}.>")],
        max_messages_per_subject: 1,
        republish: None,
        ..main
    }
}

/// The first difference that matters between an existing stream and the wanted one.
fn conflict(have: &StreamConfig, want: &StreamConfig) -> Option<String> {
    let checks: [(&str, String, String); 7] = [
        (
            "subjects",
            format!("{:?}", have.subjects),
            format!("{:?}", want.subjects),
        ),
        (
            "num_replicas",
            have.num_replicas.to_string(),
            want.num_replicas.to_string(),
        ),
        (
            "storage",
            format!("{:?}", have.storage),
            format!("{:?}", want.storage),
        ),
        (
            "max_msgs_per_subject (--history-size, at least 64 with --snapshot-for)",
            have.max_messages_per_subject.to_string(),
            want.max_messages_per_subject.to_string(),
        ),
        (
            "max_age (--history-ttl)",
            format!("{:?}", have.max_age),
            format!("{:?}", want.max_age),
        ),
        (
            "republish",
            format!(
                "{:?}",
                have.republish.as_ref().map(|r| (&r.source, &r.destination))
            ),
            format!(
                "{:?}",
                want.republish.as_ref().map(|r| (&r.source, &r.destination))
            ),
        ),
        (
            "allow_direct",
            have.allow_direct.to_string(),
            want.allow_direct.to_string(),
        ),
    ];
    checks
        .into_iter()
        .find(|(_, h, w)| h != w)
        .map(|(field, h, w)| format!("{field} is {h}, this relay needs {w}"))
}

/// Creates or checks every stream; returns them in shard order.
pub(super) async fn ensure(js: &Context, config: &Config) -> Result<Vec<Stream>, String> {
    ensure_with(js, config, wanted).await
}

/// Creates or checks every key store (none without `--snapshot-for`), in shard order.
pub(super) async fn ensure_keys(js: &Context, config: &Config) -> Result<Vec<Stream>, String> {
    if config.snapshot_patterns.is_empty() {
        return Ok(Vec::new());
    }
    ensure_with(js, config, wanted_keys).await
}

async fn ensure_with(
    js: &Context,
    config: &Config,
    wanted: fn(&Config, u32) -> StreamConfig,
) -> Result<Vec<Stream>, String> {
    let mut out = Vec::new();
    for k in 0..config.cluster.shards {
        let want = wanted(config, k);
        let name = want.name.clone();
        let stream = match js.get_stream(&name).await {
            Ok(s) => {
                if let Some(why) = conflict(&s.cached_info().config, &want) {
                    return Err(format!(
                        "stream {name} exists with another configuration: {why}. Every relay \
                         on one NATS must use the same --nats-shards, --nats-replicas, \
                         --nats-storage, --history-size, --history-ttl and --snapshot-for (on or off); delete the streams \
                         (nats stream rm) or fix the flags"
                    ));
                }
                s
            }
            Err(e) if not_found(&e) => js
                .create_stream(want)
                .await
                .map_err(|e| format!("creating stream {name}: {e}"))?,
            Err(e) => return Err(format!("reading stream {name}: {e}")),
        };
        out.push(stream);
    }
    Ok(out)
}

fn not_found(e: &async_nats::jetstream::context::GetStreamError) -> bool {
    matches!(e.kind(), GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND)
}
