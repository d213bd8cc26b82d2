//! Command codec benchmarks: simd-json tape decoding vs a serde_json baseline on the same
//! inputs, plus `encode_message` and `decode_binary`.
//!
//! Run: `cargo bench --bench command -- --quick` (or `--measurement-time 2`).

use std::borrow::Cow;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde::Deserialize;
use serde_json::value::RawValue;
use wsrelay::command::{
    decode_binary, encode_message, is_valid_channel_name, Command, CommandDecoder, CommandError,
    CHANNEL_BYTES_MAX_DEFAULT,
};

/// The top-level fields, as a flat serde struct: the fastest serde_json shape that still
/// borrows strings (Cow for escapes) and keeps `content` verbatim (`RawValue`).
#[derive(Deserialize)]
struct ClientFrame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    channel: Option<Cow<'a, str>>,
    #[serde(default)]
    since: Option<u64>,
    #[serde(borrow, default)]
    epoch: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
    #[serde(borrow, default)]
    key: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    token: Option<Cow<'a, str>>,
}

/// The serde_json counterpart of `CommandDecoder::decode`, for comparison only (error
/// mapping is coarser; the field rules are the same).
enum SerdeCommand<'a> {
    Subscribe {
        channel: Cow<'a, str>,
        since: Option<u64>,
        epoch: Option<Cow<'a, str>>,
    },
    Unsubscribe {
        channel: Cow<'a, str>,
    },
    Publish {
        channel: Cow<'a, str>,
        content: &'a [u8],
        key: Option<Cow<'a, str>>,
    },
    Ping,
    Auth {
        token: Cow<'a, str>,
    },
}

fn decode_with_serde(
    text: &[u8],
    channel_bytes_max: usize,
) -> Result<SerdeCommand<'_>, CommandError> {
    let frame: ClientFrame<'_> =
        serde_json::from_slice(text).map_err(|_| CommandError::InvalidJson)?;
    let channel = || -> Result<Cow<'_, str>, CommandError> {
        let channel = frame
            .channel
            .clone()
            .ok_or(CommandError::InvalidChannelField)?;
        match is_valid_channel_name(channel.as_bytes(), channel_bytes_max) {
            true => Ok(channel),
            false => Err(CommandError::InvalidChannelName),
        }
    };
    match &*frame.kind {
        "subscribe" => Ok(SerdeCommand::Subscribe {
            channel: channel()?,
            since: frame.since,
            epoch: frame.epoch.clone(),
        }),
        "unsubscribe" => Ok(SerdeCommand::Unsubscribe {
            channel: channel()?,
        }),
        "message" => {
            let content = frame.content.ok_or(CommandError::MissingContent)?;
            let content = content.get().as_bytes();
            Ok(SerdeCommand::Publish {
                channel: channel()?,
                content,
                key: frame.key.clone(),
            })
        }
        "ping" => Ok(SerdeCommand::Ping),
        "auth" => frame
            .token
            .clone()
            .map(|token| SerdeCommand::Auth { token })
            .ok_or(CommandError::InvalidToken),
        _ => Err(CommandError::UnknownType),
    }
}

/// True when both decoders produced the same command (checked once per input, before timing).
fn same_command(serde: &SerdeCommand<'_>, simd: &Command<'_>) -> bool {
    match (serde, simd) {
        (
            SerdeCommand::Subscribe {
                channel,
                since,
                epoch,
            },
            Command::Subscribe {
                channel: c,
                since: s,
                epoch: e,
                ..
            },
        ) => channel == c && since == s && epoch.as_deref() == *e,
        (SerdeCommand::Unsubscribe { channel }, Command::Unsubscribe { channel: c }) => {
            channel == c
        }
        (
            SerdeCommand::Publish {
                channel,
                content,
                key,
            },
            Command::Publish {
                channel: c,
                content: b,
                key: k,
                ..
            },
        ) => channel == c && content == b && key.as_deref() == *k,
        (SerdeCommand::Ping, Command::Ping) => true,
        (SerdeCommand::Auth { token }, Command::Auth { token: t }) => token == t,
        _ => false,
    }
}

const TICK: &str =
    r#"{"px":"65432.10","qty":"0.125","side":"buy","ts":1732550400123,"venue":"xyz"}"#;

fn subscribe_text() -> String {
    r#"{"type":"subscribe","channel":"md.btc-usd","since":123456,"epoch":"e-1f3a"}"#.to_owned()
}

fn publish_text(content: &str) -> String {
    format!(r#"{{"type":"message","channel":"md.btc-usd","content":{content}}}"#)
}

/// About 1 KiB: an array of ticks.
fn content_1k() -> String {
    format!("[{}]", [TICK; 12].join(","))
}

fn bench_decode(c: &mut Criterion) {
    let inputs = [
        ("subscribe", subscribe_text()),
        ("publish_100b", publish_text(TICK)),
        ("publish_1k", publish_text(&content_1k())),
    ];
    let mut group = c.benchmark_group("decode");
    for (name, text) in &inputs {
        group.throughput(Throughput::Bytes(text.len() as u64));
        let mut decoder = CommandDecoder::new();
        let serde = decode_with_serde(text.as_bytes(), CHANNEL_BYTES_MAX_DEFAULT);
        let simd = decoder.decode(text.as_bytes(), CHANNEL_BYTES_MAX_DEFAULT);
        assert!(
            matches!((serde, simd), (Ok(a), Ok(b)) if same_command(&a, &b)),
            "{name}"
        );
        group.bench_with_input(BenchmarkId::new("simd_json", name), text, |b, text| {
            b.iter(|| {
                let command = decoder.decode(black_box(text.as_bytes()), CHANNEL_BYTES_MAX_DEFAULT);
                black_box(command.is_ok())
            })
        });
        group.bench_with_input(BenchmarkId::new("serde_json", name), text, |b, text| {
            b.iter(|| {
                black_box(
                    decode_with_serde(black_box(text.as_bytes()), CHANNEL_BYTES_MAX_DEFAULT)
                        .is_ok(),
                )
            })
        });
    }
    group.finish();
}

fn bench_encode_message(c: &mut Criterion) {
    let mut out = Vec::with_capacity(512);
    c.bench_function("encode_message/100b", |b| {
        b.iter(|| {
            out.clear();
            encode_message(
                &mut out,
                black_box("md.btc-usd"),
                black_box(TICK.as_bytes()),
                black_box("user-1234"),
                black_box(987_654_321),
            );
            black_box(out.len())
        })
    });
}

fn bench_decode_binary(c: &mut Criterion) {
    let mut msg = vec![0x01, 10];
    msg.extend_from_slice(b"md.btc-usd");
    msg.extend_from_slice(&[0xab; 100]);
    c.bench_function("decode_binary/100b", |b| {
        b.iter(|| black_box(decode_binary(black_box(&msg), CHANNEL_BYTES_MAX_DEFAULT).is_ok()))
    });
}

criterion_group!(
    benches,
    bench_decode,
    bench_encode_message,
    bench_decode_binary
);
criterion_main!(benches);
