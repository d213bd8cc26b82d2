//! The properties the fuzz targets check, shared with `tests/fuzz_regressions.rs` (both include
//! this file with `#[path]`), so a corpus file replayed by `cargo test` goes through exactly the
//! checks libFuzzer ran on it.
//!
//! Owns: the oracle of each target (what must hold for ANY input). May not touch: the relay's
//! code (it only calls the public sans-IO API of `wsrelay::proto` and `wsrelay::command`).
//! Every check panics on a violated property; "no panic" in the codec itself is the baseline.
//!
//! Input layouts (the first bytes steer the target, the rest is the data under test):
//! - `handshake`: the whole input is a request head, then a response head.
//! - `decoder_*`: `[limit][n][n chunk sizes][stream...]`, see [`DecoderInput`].
//! - `command_json`, `command_binary`: the whole input is one message.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use serde_json::value::RawValue;
use wsrelay::command::{
    decode_binary, encode_binary_message, encode_message, is_valid_channel_name, Command,
    CommandDecoder, CHANNEL_BYTES_MAX_DEFAULT, KEY_BYTES_MAX, TOKEN_BYTES_MAX,
};
use wsrelay::proto::close::is_valid_on_wire;
use wsrelay::proto::frame::{encode_client_frame, encode_server_frame};
use wsrelay::proto::handshake::{
    accept_key, encode_handshake_error, encode_switching_protocols, parse_request_head,
    parse_response_head, validate_upgrade, REQUEST_HEAD_BYTES_MAX, RESPONSE_HEAD_BYTES_MAX,
};
use wsrelay::proto::{Decode, Decoder, DecoderLimits, Event, OpCode, ProtocolError, Role};

/// Accept value of the RFC 6455 §1.3 sample key, expected by the client-role check.
pub const SAMPLE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
/// Masking key of re-encoded client frames (fixed: the oracle needs determinism, not secrecy).
const FUZZ_MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
/// Smallest message limit a decoder target uses; the first input byte adds 0-255 to it, so
/// both the 7-bit and the 16-bit length encodings cross the limit.
const MESSAGE_BYTES_MAX_BASE: usize = 64;
/// Most chunk sizes the decoder input layout may carry.
const CHUNK_SIZES_MAX: usize = 8;
/// Channel limit of the command targets (the relay's default).
const CHANNEL_BYTES_MAX: usize = CHANNEL_BYTES_MAX_DEFAULT;

// ---------------------------------------------------------------------------------------------
// handshake

/// Request-head parsing and validation (server role), then response-head parsing (client role).
pub fn check_handshake(data: &[u8]) {
    check_request_head(data);
    check_response_head(data);
}

fn check_request_head(data: &[u8]) {
    match parse_request_head(data) {
        Ok(Decode::Complete(head, head_len)) => {
            assert!(head_len <= data.len().min(REQUEST_HEAD_BYTES_MAX));
            // The head alone parses to the same length: trailing bytes never change it.
            let again = parse_request_head(&data[..head_len]);
            assert!(matches!(again, Ok(Decode::Complete(_, n)) if n == head_len));
            check_upgrade(&head);
        }
        Ok(Decode::Partial) => assert!(data.len() < REQUEST_HEAD_BYTES_MAX),
        Err(error) => check_handshake_error_response(error),
    }
}

fn check_upgrade(head: &wsrelay::proto::RequestHead<'_>) {
    match validate_upgrade(head) {
        Ok(upgrade) => {
            assert_eq!(upgrade.key.len(), 24, "a valid key is 24 base64 characters");
            let accept = accept_key(upgrade.key);
            assert_eq!(accept.len(), 28);
            let mut out = Vec::new();
            encode_switching_protocols(&mut out, &accept, upgrade.protocols, None);
            assert!(out.starts_with(b"HTTP/1.1 101 ") && out.ends_with(b"\r\n\r\n"));
        }
        Err(error) => check_handshake_error_response(error),
    }
}

fn check_handshake_error_response(error: wsrelay::proto::HandshakeError) {
    let mut out = Vec::new();
    encode_handshake_error(&mut out, error);
    let status = format!("HTTP/1.1 {} ", error.status());
    assert!(out.starts_with(status.as_bytes()), "{error:?}");
    assert!((400..600).contains(&error.status()));
}

fn check_response_head(data: &[u8]) {
    match parse_response_head(data, SAMPLE_ACCEPT) {
        Ok(Decode::Complete(head, head_len)) => {
            assert!(head_len <= data.len().min(RESPONSE_HEAD_BYTES_MAX));
            assert_eq!(head.status, 101);
            let again = parse_response_head(&data[..head_len], SAMPLE_ACCEPT);
            assert!(matches!(again, Ok(Decode::Complete(_, n)) if n == head_len));
        }
        Ok(Decode::Partial) => assert!(data.len() < RESPONSE_HEAD_BYTES_MAX),
        Err(_) => {}
    }
}

// ---------------------------------------------------------------------------------------------
// frame decoder

/// An event copied out of the decoder, so runs can be compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedEvent {
    /// A text message.
    Text(Vec<u8>),
    /// A binary message.
    Binary(Vec<u8>),
    /// A ping payload.
    Ping(Vec<u8>),
    /// A pong payload.
    Pong(Vec<u8>),
    /// A close frame: code and reason, or none.
    Close(Option<(u16, String)>),
}

impl OwnedEvent {
    fn from_event(event: Event<'_>) -> Self {
        match event {
            Event::Text(p) => Self::Text(p.to_vec()),
            Event::Binary(p) => Self::Binary(p.to_vec()),
            Event::Ping(p) => Self::Ping(p.to_vec()),
            Event::Pong(p) => Self::Pong(p.to_vec()),
            Event::Close(c) => Self::Close(c.map(|c| (c.code, c.reason.to_string()))),
            // Property: without `allow_compressed` (never called here) RSV1 is refused.
            Event::CompressedText(_) | Event::CompressedBinary(_) => {
                panic!("compressed event from a decoder that did not negotiate permessage-deflate")
            }
        }
    }

    /// The single frame that carries this event.
    fn opcode_and_payload(&self) -> (OpCode, Vec<u8>) {
        match self {
            Self::Text(p) => (OpCode::Text, p.clone()),
            Self::Binary(p) => (OpCode::Binary, p.clone()),
            Self::Ping(p) => (OpCode::Ping, p.clone()),
            Self::Pong(p) => (OpCode::Pong, p.clone()),
            Self::Close(None) => (OpCode::Close, Vec::new()),
            Self::Close(Some((code, reason))) => {
                let mut p = code.to_be_bytes().to_vec();
                p.extend_from_slice(reason.as_bytes());
                (OpCode::Close, p)
            }
        }
    }
}

/// The decoder targets' input: `[limit][n][n chunk sizes][stream]`. The stream is fed in chunks
/// of the given sizes, cycling (a size of 0 feeds an empty slice); with no sizes, in one piece.
#[derive(Debug)]
pub struct DecoderInput<'a> {
    /// The decoder's `message_bytes_max`.
    pub message_bytes_max: usize,
    /// Chunk sizes to cut the stream at.
    pub chunk_sizes: &'a [u8],
    /// The frame stream.
    pub stream: &'a [u8],
}

impl<'a> DecoderInput<'a> {
    /// Splits a fuzz input into its parts (`None` if it is too short to hold the prefix).
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        let (&limit, rest) = data.split_first()?;
        let (&n, rest) = rest.split_first()?;
        let n = usize::from(n) % (CHUNK_SIZES_MAX + 1);
        let chunk_sizes = rest.get(..n)?;
        Some(Self {
            message_bytes_max: MESSAGE_BYTES_MAX_BASE + usize::from(limit),
            chunk_sizes,
            stream: &rest[n..],
        })
    }
}

/// Result of decoding a whole stream: its events and the error that ended it, if any.
type Outcome = (Vec<OwnedEvent>, Option<ProtocolError>);

/// Decodes a stream fed in chunks and checks: limits on every event, the poisoned decoder
/// repeats its error, the same events and error as one single feed, and every event re-encoded
/// by the peer's encoder decodes back to itself.
pub fn check_decoder(role: Role, data: &[u8]) {
    let Some(input) = DecoderInput::parse(data) else {
        return;
    };
    let limits = DecoderLimits {
        message_bytes_max: input.message_bytes_max,
    };
    let chunked = decode_chunked(role, limits, input.stream, input.chunk_sizes);
    let whole = decode_chunked(role, limits, input.stream, &[]);
    assert_eq!(chunked, whole, "chunk boundaries changed the outcome");
    for event in &chunked.0 {
        check_event_limits(event, limits);
        check_event_round_trip(role, limits, event);
    }
    check_stream_round_trip(role, limits, input.stream);
}

/// Feeds `stream` in chunks of `sizes` (cycling; empty: one piece), collecting events. A size
/// of 0 feeds an empty slice; sizes that are all 0 would never progress, so they mean one
/// empty feed and then one piece.
pub fn decode_chunked(role: Role, limits: DecoderLimits, stream: &[u8], sizes: &[u8]) -> Outcome {
    let all_zero = sizes.iter().all(|&size| size == 0);
    let mut decoder = Decoder::new(role, limits);
    let mut events = Vec::new();
    let mut rest = stream.to_vec();
    let mut turn = 0;
    loop {
        let take = match sizes.get(turn % sizes.len().max(1)) {
            Some(&size) if !(all_zero && turn > 0) => usize::from(size).min(rest.len()),
            _ => rest.len(),
        };
        turn += 1;
        let mut chunk: Vec<u8> = rest.drain(..take).collect();
        if let Err(error) = feed_collect(&mut decoder, &mut chunk, &mut events) {
            check_poisoned(&mut decoder, error, &mut rest);
            return (events, Some(error));
        }
        if rest.is_empty() {
            return (events, None);
        }
    }
}

fn feed_collect(
    decoder: &mut Decoder,
    chunk: &mut [u8],
    events: &mut Vec<OwnedEvent>,
) -> Result<(), ProtocolError> {
    let feed = decoder.feed(chunk, |event| {
        events.push(OwnedEvent::from_event(event));
        ControlFlow::Continue(())
    })?;
    assert_eq!(
        feed,
        wsrelay::proto::Feed::Drained,
        "the callback never breaks"
    );
    Ok(())
}

/// After an error, every later feed (of the rest, or of nothing) returns the same error and
/// delivers nothing; the decoder holds no buffer.
fn check_poisoned(decoder: &mut Decoder, error: ProtocolError, rest: &mut [u8]) {
    for input in [rest, &mut []] {
        let again = decoder.feed(input, |event| panic!("event after an error: {event:?}"));
        assert_eq!(again, Err(error), "a poisoned decoder repeats its error");
    }
    assert_eq!(
        decoder.buffered_bytes(),
        0,
        "a poisoned decoder frees its buffer"
    );
}

fn check_event_limits(event: &OwnedEvent, limits: DecoderLimits) {
    match event {
        OwnedEvent::Text(p) => {
            assert!(p.len() <= limits.message_bytes_max);
            assert!(std::str::from_utf8(p).is_ok(), "text events are UTF-8");
        }
        OwnedEvent::Binary(p) => assert!(p.len() <= limits.message_bytes_max),
        OwnedEvent::Ping(p) | OwnedEvent::Pong(p) => assert!(p.len() <= 125),
        OwnedEvent::Close(Some((code, reason))) => {
            assert!(is_valid_on_wire(*code), "close code {code}");
            assert!(reason.len() <= 123);
        }
        OwnedEvent::Close(None) => {}
    }
}

/// The frame the PEER would send: servers decode masked client frames and vice versa.
fn encode_peer_frame(role: Role, out: &mut Vec<u8>, fin: bool, opcode: OpCode, payload: &[u8]) {
    match role {
        Role::Server => encode_client_frame(out, fin, opcode, payload, FUZZ_MASK),
        Role::Client => encode_server_frame(out, fin, opcode, payload),
    }
}

/// An event re-encoded as one frame, and as two fragments for a data message, decodes back to
/// exactly that event.
fn check_event_round_trip(role: Role, limits: DecoderLimits, event: &OwnedEvent) {
    let (opcode, payload) = event.opcode_and_payload();
    let mut wire = Vec::new();
    encode_peer_frame(role, &mut wire, true, opcode, &payload);
    let decoded = decode_chunked(role, limits, &wire, &[]);
    assert_eq!(
        decoded,
        (vec![event.clone()], None),
        "single-frame round trip"
    );
    if opcode.is_control() {
        return;
    }
    let (first, second) = payload.split_at(payload.len() / 2);
    let mut wire = Vec::new();
    encode_peer_frame(role, &mut wire, false, opcode, first);
    encode_peer_frame(role, &mut wire, true, OpCode::Continuation, second);
    let decoded = decode_chunked(role, limits, &wire, &[1, 7]);
    assert_eq!(
        decoded,
        (vec![event.clone()], None),
        "fragmented round trip"
    );
}

/// The raw stream bytes as a binary payload (arbitrary content, any length) survive a round
/// trip when they fit the limit, and are refused with 1009 before any buffering when not.
fn check_stream_round_trip(role: Role, limits: DecoderLimits, stream: &[u8]) {
    let mut wire = Vec::new();
    encode_peer_frame(role, &mut wire, true, OpCode::Binary, stream);
    let decoded = decode_chunked(role, limits, &wire, &[3]);
    if stream.len() <= limits.message_bytes_max {
        assert_eq!(decoded, (vec![OwnedEvent::Binary(stream.to_vec())], None));
    } else {
        assert_eq!(decoded, (vec![], Some(ProtocolError::MessageTooBig)));
    }
}

// ---------------------------------------------------------------------------------------------
// JSON commands

/// Decodes one JSON command and checks what an `Ok` promises; decoding again with the warm
/// decoder gives the same answer; `Ok` implies the text is JSON by serde_json's reading too.
pub fn check_command_json(data: &[u8]) {
    let mut decoder = CommandDecoder::new();
    let first = format!("{:?}", decoder.decode(data, CHANNEL_BYTES_MAX));
    let result = decoder.decode(data, CHANNEL_BYTES_MAX);
    assert_eq!(
        first,
        format!("{result:?}"),
        "a warm decoder answers the same"
    );
    let Ok(command) = result else {
        return;
    };
    let text = std::str::from_utf8(data).expect("an accepted command is UTF-8");
    assert!(
        is_json(text),
        "simd-json accepted what serde_json rejects: {text:?}"
    );
    check_command(data, command);
}

/// Whether `text` is one JSON value (RawValue: syntax only, so numbers of any size pass).
fn is_json(text: &str) -> bool {
    serde_json::from_str::<&RawValue>(text).is_ok()
}

fn check_command(data: &[u8], command: Command<'_>) {
    match command {
        Command::Subscribe { channel, .. }
        | Command::Unsubscribe { channel }
        | Command::Presence { channel } => {
            assert!(is_valid_channel_name(channel.as_bytes(), CHANNEL_BYTES_MAX));
        }
        Command::Publish {
            channel,
            content,
            key,
            id,
            ..
        } => {
            assert!(
                id.is_none_or(|id| (1..=64).contains(&id.len())),
                "ack id bounds"
            );
            check_publish(data, channel, content, key)
        }
        Command::Auth { token } => assert!(!token.is_empty() && token.len() <= TOKEN_BYTES_MAX),
        Command::Ping => {}
    }
}

fn check_publish(data: &[u8], channel: &str, content: &[u8], key: Option<&str>) {
    assert!(is_valid_channel_name(channel.as_bytes(), CHANNEL_BYTES_MAX));
    if let Some(key) = key {
        assert!(!key.is_empty() && key.len() <= KEY_BYTES_MAX, "key {key:?}");
    }
    assert!(
        is_sub_slice(data, content),
        "content is a span of the input"
    );
    let content_text = std::str::from_utf8(content).expect("content is UTF-8");
    assert_eq!(content_text, content_text.trim_matches(is_json_space));
    assert!(
        is_json(content_text),
        "content is one JSON value: {content_text:?}"
    );
    check_delivery_carries(channel, content_text);
}

/// The delivery built from this publish is JSON whose `content` is the same bytes.
fn check_delivery_carries(channel: &str, content: &str) {
    let mut out = Vec::new();
    encode_message(&mut out, channel, content.as_bytes(), "0-1-1", 7);
    let text = std::str::from_utf8(&out).expect("delivery is UTF-8");
    let fields: BTreeMap<String, &RawValue> =
        serde_json::from_str(text).expect("delivery is a JSON object");
    assert_eq!(fields["content"].get(), content);
    assert_eq!(fields["channel"].get(), format!("\"{channel}\""));
    assert_eq!(fields["seq"].get(), "7");
}

fn is_json_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// Whether `part` lies inside `whole` (same allocation, in bounds).
fn is_sub_slice(whole: &[u8], part: &[u8]) -> bool {
    let whole_range = whole.as_ptr_range();
    let part_range = part.as_ptr_range();
    whole_range.start <= part_range.start && part_range.end <= whole_range.end
}

// ---------------------------------------------------------------------------------------------
// binary commands

/// Decodes one binary publish; an `Ok` is exactly `[0x01][L][channel][payload]` of the input,
/// and its delivery encodes back to the documented layout.
pub fn check_command_binary(data: &[u8]) {
    let Ok(publish) = decode_binary(data, CHANNEL_BYTES_MAX) else {
        return;
    };
    let channel = publish.channel.as_bytes();
    assert!(is_valid_channel_name(channel, CHANNEL_BYTES_MAX));
    assert_eq!(data[0], 0x01);
    assert_eq!(usize::from(data[1]), channel.len());
    assert_eq!(&data[2..2 + channel.len()], channel);
    assert_eq!(&data[2 + channel.len()..], publish.payload);
    let mut out = Vec::new();
    encode_binary_message(&mut out, publish.channel, 9, publish.payload).expect("channel fits");
    let seq_at = 2 + channel.len();
    assert_eq!(&out[..seq_at], &data[..seq_at]);
    assert_eq!(&out[seq_at..seq_at + 8], &9u64.to_be_bytes());
    assert_eq!(&out[seq_at + 8..], publish.payload);
}

// ---------------------------------------------------------------------------------------------
// proxy_header

/// The PROXY protocol header parser (`proto::proxy_header`): the whole input is the start of a
/// connection.
pub fn check_proxy_header(data: &[u8]) {
    use wsrelay::proto::proxy_header::{parse, Origin, Version, V1_BYTES_MAX, V2_BYTES_MAX};
    match parse(data) {
        Ok(Decode::Complete(header, used)) => {
            assert!(used <= data.len());
            let max = match header.version {
                Version::V1 => V1_BYTES_MAX,
                Version::V2 => V2_BYTES_MAX,
            };
            assert!(used <= max, "{used} > {max}");
            // Self-delimiting: the header alone parses the same, and any strict prefix of it
            // is still incomplete (never an error: the rest could have arrived later).
            assert_eq!(parse(&data[..used]), Ok(Decode::Complete(header, used)));
            for cut in [0, used / 2, used - 1] {
                assert_eq!(parse(&data[..cut]), Ok(Decode::Partial), "cut at {cut}");
            }
            if let Origin::Relayed {
                source,
                destination,
            } = header.origin
            {
                assert_eq!(source.is_ipv4(), destination.is_ipv4());
            }
        }
        // Bounded: more bytes than the largest header never stay incomplete.
        Ok(Decode::Partial) => assert!(data.len() < V2_BYTES_MAX),
        // Refusals are decided on the bytes seen: more input never turns one into a header.
        Err(e) => {
            let mut more = data.to_vec();
            more.extend_from_slice(b"\r\n\r\n");
            assert_eq!(parse(&more), Err(e));
        }
    }
}
