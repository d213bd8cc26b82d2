use super::*;
use crate::command::encode::{encode_message, message_len_hint};
use crate::command::CHANNEL_BYTES_MAX_DEFAULT as MAX;
use proptest::prelude::*;

fn decode_ok(text: &str) -> Command<'_> {
    // Leaks one decoder per call so the returned borrow outlives it; tests only.
    let decoder = Box::leak(Box::new(CommandDecoder::new()));
    decoder.decode(text.as_bytes(), MAX).unwrap()
}

fn decode_err(text: &str) -> CommandError {
    CommandDecoder::new()
        .decode(text.as_bytes(), MAX)
        .unwrap_err()
}

fn content_of(text: &str) -> &str {
    match decode_ok(text) {
        Command::Publish { content, .. } => std::str::from_utf8(content).unwrap(),
        other => panic!("not a publish: {other:?}"),
    }
}

#[test]
fn subscribe_minimal_and_full() {
    let minimal = decode_ok(r#"{"type":"subscribe","channel":"md.abc"}"#);
    let expected = Command::Subscribe {
        channel: "md.abc",
        since: None,
        epoch: None,
        throttle_ms: None,
        binary: false,
        presence: false,
    };
    assert_eq!(minimal, expected);
    let full = decode_ok(
        r#"{"epoch":"e-7","since":18446744073709551615,"channel":"a","type":"subscribe"}"#,
    );
    let expected = Command::Subscribe {
        channel: "a",
        since: Some(u64::MAX),
        epoch: Some("e-7"),
        throttle_ms: None,
        binary: false,
        presence: false,
    };
    assert_eq!(full, expected);
}

#[test]
fn subscribe_null_optionals_are_absent_and_zero_since_is_kept() {
    let text = r#"{"type":"subscribe","channel":"a","since":null,"epoch":null}"#;
    assert_eq!(
        decode_ok(text),
        Command::Subscribe {
            channel: "a",
            since: None,
            epoch: None,
            throttle_ms: None,
            binary: false,
            presence: false,
        }
    );
    let zero = decode_ok(r#"{"type":"subscribe","channel":"a","since":0}"#);
    assert_eq!(
        zero,
        Command::Subscribe {
            channel: "a",
            since: Some(0),
            epoch: None,
            throttle_ms: None,
            binary: false,
            presence: false,
        }
    );
}

#[test]
fn escaped_channel_is_unescaped_then_checked() {
    let text = r#"{"type":"subscribe","channel":"md\u002eabc"}"#;
    assert_eq!(
        decode_ok(text),
        Command::Subscribe {
            channel: "md.abc",
            since: None,
            epoch: None,
            throttle_ms: None,
            binary: false,
            presence: false,
        }
    );
    let bad = r#"{"type":"subscribe","channel":"md\u0020abc"}"#;
    assert_eq!(decode_err(bad), CommandError::InvalidChannelName);
}

#[test]
fn escaped_keys_are_matched_after_unescaping() {
    let text = r#"{"typ\u0065":"message","ch\u0061nnel":"c","c\u006fntent":[1,2]}"#;
    assert_eq!(content_of(text), "[1,2]");
}

#[test]
fn unsubscribe_ping_auth() {
    let unsub = decode_ok(r#"{"type":"unsubscribe","channel":"x:y-z_0"}"#);
    assert_eq!(unsub, Command::Unsubscribe { channel: "x:y-z_0" });
    assert_eq!(
        decode_ok(r#" {"type":"ping","extra":{"ignored":[1]}} "#),
        Command::Ping
    );
    let auth = decode_ok(r#"{"type":"auth","token":"aaa.bbb.ccc"}"#);
    assert_eq!(
        auth,
        Command::Auth {
            token: "aaa.bbb.ccc"
        }
    );
}

#[test]
fn publish_with_key() {
    let text = r#"{"type":"message","channel":"c","content":"hi","key":"k.1"}"#;
    let expected = Command::Publish {
        channel: "c",
        content: br#""hi""#,
        key: Some("k.1"),
        id: None,
        delete: false,
    };
    assert_eq!(decode_ok(text), expected);
}

#[test]
fn content_spans_are_verbatim() {
    let cases = [
        r#"{"a":{"b":[1,{"c":null}]},"d":"}"}"#,
        r#"[[], {}, [[["x"]]]]"#,
        r#""say \"hi\" [ { } ] \\""#,
        r#""\u00e9\n\t""#,
        "-1.5e+10",
        "0",
        "true",
        "false",
        "null",
        "{}",
        "[]",
        r#""""#,
        "\"é ü 日本\"",
    ];
    for content in cases {
        let text = format!(r#"{{"type":"message","channel":"c","content":{content},"z":1}}"#);
        assert_eq!(content_of(&text), content, "{text}");
        let last = format!(r#"{{"type":"message","channel":"c","content":{content}}}"#);
        assert_eq!(content_of(&last), content, "{last}");
    }
}

#[test]
fn content_span_trims_surrounding_whitespace() {
    let text = "{ \"content\" :\n\t [ 1 , 2 ] \r\n, \"type\":\"message\",\"channel\":\"c\" }";
    assert_eq!(content_of(text), "[ 1 , 2 ]");
    let scalar = "{\"type\":\"message\",\"channel\":\"c\",\"content\":  -1.5e+10  }";
    assert_eq!(content_of(scalar), "-1.5e+10");
}

#[test]
fn content_after_tricky_members() {
    let text =
        r#"{"x":"\"}]","y":[{"}":"{"}],"type":"message","channel":"c","content":{"k":"\\"}}"#;
    assert_eq!(content_of(text), r#"{"k":"\\"}"#);
}

#[test]
fn content_null_is_a_publish_of_null() {
    assert_eq!(
        content_of(r#"{"type":"message","channel":"c","content":null}"#),
        "null"
    );
}

#[test]
fn text_is_not_modified() {
    let text = br#"{"type":"message","channel":"md\u002eabc","content":"a\nb"}"#.to_vec();
    let before = text.clone();
    let mut decoder = CommandDecoder::new();
    let command = decoder.decode(&text, MAX).unwrap();
    let expected = Command::Publish {
        channel: "md.abc",
        content: br#""a\nb""#,
        key: None,
        id: None,
        delete: false,
    };
    assert_eq!(command, expected);
    assert_eq!(text, before);
}

#[test]
fn decoder_is_reusable_across_messages() {
    let mut decoder = CommandDecoder::new();
    for i in 0..3u64 {
        let text = format!(r#"{{"type":"subscribe","channel":"c{i}","since":{i}}}"#);
        let channel = format!("c{i}");
        let command = decoder.decode(text.as_bytes(), MAX).unwrap();
        assert_eq!(
            command,
            Command::Subscribe {
                channel: &channel,
                since: Some(i),
                epoch: None,
                throttle_ms: None,
                binary: false,
                presence: false,
            }
        );
        assert_eq!(decoder.decode(b"nope", MAX), Err(CommandError::InvalidJson));
    }
}

#[test]
fn oversized_buffers_are_released_and_never_below_initial() {
    let mut decoder = CommandDecoder::new();
    let big_content = "x".repeat(SCRATCH_BYTES_RETAINED_MAX * 2);
    let big = format!(r#"{{"type":"message","channel":"c","content":"{big_content}"}}"#);
    assert!(decoder.decode(big.as_bytes(), MAX).is_ok());
    assert!(decoder.scratch.capacity() > SCRATCH_BYTES_RETAINED_MAX * 2);
    assert_eq!(
        decoder.decode(br#"{"type":"ping"}"#, MAX),
        Ok(Command::Ping)
    );
    let capacity = decoder.scratch.capacity();
    assert!((SCRATCH_BYTES_INITIAL..=SCRATCH_BYTES_RETAINED_MAX).contains(&capacity));
}

#[test]
fn channel_limit_is_the_callers() {
    let text = br#"{"type":"unsubscribe","channel":"abcd"}"#;
    let mut decoder = CommandDecoder::new();
    assert_eq!(
        decoder.decode(text, 3),
        Err(CommandError::InvalidChannelName)
    );
    assert_eq!(
        decoder.decode(text, 4),
        Ok(Command::Unsubscribe { channel: "abcd" })
    );
    let long = format!(
        r#"{{"type":"unsubscribe","channel":"{}"}}"#,
        "a".repeat(129)
    );
    assert_eq!(decode_err(&long), CommandError::InvalidChannelName);
}

#[test]
fn error_json_and_shape() {
    assert_eq!(decode_err(""), CommandError::InvalidJson);
    assert_eq!(decode_err(r#"{"type":"ping""#), CommandError::InvalidJson);
    assert_eq!(
        decode_err(r#"{"type":"ping"} x"#),
        CommandError::InvalidJson
    );
    assert_eq!(decode_err(r#"{"type":'ping'}"#), CommandError::InvalidJson);
    assert_eq!(decode_err("[1,2]"), CommandError::NotAnObject);
    assert_eq!(decode_err(r#""ping""#), CommandError::NotAnObject);
    assert_eq!(decode_err("42"), CommandError::NotAnObject);
    assert_eq!(decode_err("null"), CommandError::NotAnObject);
}

#[test]
fn error_type_field() {
    assert_eq!(decode_err("{}"), CommandError::InvalidType);
    assert_eq!(decode_err(r#"{"type":1}"#), CommandError::InvalidType);
    assert_eq!(decode_err(r#"{"type":null}"#), CommandError::InvalidType);
    assert_eq!(decode_err(r#"{"type":"Ping"}"#), CommandError::UnknownType);
    assert_eq!(
        decode_err(r#"{"type":"publish","channel":"c"}"#),
        CommandError::UnknownType
    );
}

#[test]
fn error_channel_field() {
    assert_eq!(
        decode_err(r#"{"type":"subscribe"}"#),
        CommandError::InvalidChannelField
    );
    assert_eq!(
        decode_err(r#"{"type":"unsubscribe","channel":5}"#),
        CommandError::InvalidChannelField
    );
    assert_eq!(
        decode_err(r#"{"type":"message","channel":["c"],"content":1}"#),
        CommandError::InvalidChannelField
    );
    assert_eq!(
        decode_err(r#"{"type":"subscribe","channel":""}"#),
        CommandError::InvalidChannelName
    );
    assert_eq!(
        decode_err(r#"{"type":"subscribe","channel":"a/b"}"#),
        CommandError::InvalidChannelName
    );
}

#[test]
fn error_publish_fields() {
    assert_eq!(
        decode_err(r#"{"type":"message","channel":"c"}"#),
        CommandError::MissingContent
    );
    let bad_keys = [r#""""#, "1", r#""a b""#, "[]"];
    for key in bad_keys {
        let text = format!(r#"{{"type":"message","channel":"c","content":1,"key":{key}}}"#);
        assert_eq!(decode_err(&text), CommandError::InvalidKey, "{text}");
    }
    let long_key = format!(
        r#"{{"type":"message","channel":"c","content":1,"key":"{}"}}"#,
        "k".repeat(129)
    );
    assert_eq!(decode_err(&long_key), CommandError::InvalidKey);
}

#[test]
fn error_subscribe_fields() {
    for since in ["-1", "1.5", "1e2", r#""5""#, "true", "[]"] {
        let text = format!(r#"{{"type":"subscribe","channel":"c","since":{since}}}"#);
        assert_eq!(decode_err(&text), CommandError::InvalidSince, "{text}");
    }
    for epoch in ["1", "{}", "false"] {
        let text = format!(r#"{{"type":"subscribe","channel":"c","epoch":{epoch}}}"#);
        assert_eq!(decode_err(&text), CommandError::InvalidEpoch, "{text}");
    }
}

#[test]
fn error_auth_token() {
    assert_eq!(decode_err(r#"{"type":"auth"}"#), CommandError::InvalidToken);
    assert_eq!(
        decode_err(r#"{"type":"auth","token":""}"#),
        CommandError::InvalidToken
    );
    assert_eq!(
        decode_err(r#"{"type":"auth","token":7}"#),
        CommandError::InvalidToken
    );
    let at_limit = format!(
        r#"{{"type":"auth","token":"{}"}}"#,
        "t".repeat(TOKEN_BYTES_MAX)
    );
    assert!(
        matches!(decode_ok(&at_limit), Command::Auth { token } if token.len() == TOKEN_BYTES_MAX)
    );
    let over = format!(
        r#"{{"type":"auth","token":"{}"}}"#,
        "t".repeat(TOKEN_BYTES_MAX + 1)
    );
    assert_eq!(decode_err(&over), CommandError::InvalidToken);
}

#[test]
fn duplicate_known_fields_are_rejected_unknown_ones_ignored() {
    let twice = r#"{"type":"message","channel":"c","content":1,"content":2}"#;
    assert_eq!(decode_err(twice), CommandError::DuplicateField);
    let type_twice = r#"{"type":"ping","type":"ping"}"#;
    assert_eq!(decode_err(type_twice), CommandError::DuplicateField);
    let escaped_twice = r#"{"type":"ping","t\u0079pe":"ping"}"#;
    assert_eq!(decode_err(escaped_twice), CommandError::DuplicateField);
    assert_eq!(decode_ok(r#"{"type":"ping","x":1,"x":2}"#), Command::Ping);
}

#[test]
fn unused_known_fields_are_not_validated() {
    let text = r#"{"type":"ping","channel":7,"since":-1,"token":""}"#;
    assert_eq!(decode_ok(text), Command::Ping);
}

#[test]
fn numbers_simd_json_cannot_represent_are_invalid_json() {
    let huge_int = r#"{"type":"message","channel":"c","content":123456789012345678901234567890}"#;
    assert_eq!(decode_err(huge_int), CommandError::InvalidJson);
}

/// Arbitrary JSON values, including strings full of quotes, brackets and control characters.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e15f64..1e15).prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        "[\"\\\\{}\\[\\],: a]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("[a-z\"\\\\{}]{0,4}", inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn decode_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = CommandDecoder::new().decode(&bytes, MAX);
    }

    #[test]
    fn decode_never_panics_on_json_like_text(tail in "[\\[\\]{}\",: a-z0-9\\\\.-]{0,64}") {
        let text = format!(r#"{{"type":"message","channel":"c","content":{tail}"#);
        let _ = CommandDecoder::new().decode(text.as_bytes(), MAX);
        let _ = CommandDecoder::new().decode(tail.as_bytes(), MAX);
    }

    #[test]
    fn content_span_is_the_verbatim_value(value in json_value(), pretty in any::<bool>(), content_first in any::<bool>()) {
        let content = if pretty {
            serde_json::to_string_pretty(&value).unwrap()
        } else {
            serde_json::to_string(&value).unwrap()
        };
        let text = if content_first {
            format!("{{ \"content\" : {content} ,\n\"type\":\"message\",\"channel\":\"c\",\"pad\":[\"]\"]}}")
        } else {
            format!("{{\"type\":\"message\",\"pad\":{{\"a\":\"}}\"}},\"channel\":\"c\",\"content\":\t{content}\n}}")
        };
        let mut decoder = CommandDecoder::new();
        let Command::Publish { content: span, .. } = decoder.decode(text.as_bytes(), MAX).unwrap() else {
            panic!("not a publish");
        };
        prop_assert_eq!(span, content.as_bytes());
        let reparsed: serde_json::Value = serde_json::from_slice(span).unwrap();
        let expected: serde_json::Value = serde_json::from_str(&content).unwrap();
        prop_assert_eq!(reparsed, expected);
    }

    #[test]
    fn encoded_message_parses_to_the_expected_object(
        value in json_value(),
        channel in "[A-Za-z0-9._:-]{1,128}",
        from in any::<String>(),
        seq in any::<u64>(),
    ) {
        let content = serde_json::to_string(&value).unwrap();
        let mut out = Vec::new();
        encode_message(&mut out, &channel, content.as_bytes(), &from, seq);
        prop_assert!(out.len() <= message_len_hint(&channel, content.as_bytes(), &from));
        let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let expected = serde_json::json!({
            "type": "message",
            "channel": channel,
            "content": serde_json::from_str::<serde_json::Value>(&content).unwrap(),
            "from": from,
            "seq": seq,
        });
        prop_assert_eq!(parsed, expected);
    }
}

#[test]
fn publish_with_an_ack_id() {
    let text = r#"{"type":"message","channel":"c","content":1,"id":"o \"17\""}"#;
    let expected = Command::Publish {
        channel: "c",
        content: b"1",
        key: None,
        id: Some("o \"17\""),
        delete: false,
    };
    assert_eq!(decode_ok(text), expected);
    let long = format!("\"{}\"", "x".repeat(65));
    for bad in ["\"\"", "5", "[]", long.as_str()] {
        let text = format!(r#"{{"type":"message","channel":"c","content":1,"id":{bad}}}"#);
        let mut decoder = CommandDecoder::new();
        let got = decoder.decode(text.as_bytes(), MAX).map(|_| ());
        assert_eq!(got, Err(CommandError::InvalidId), "{bad}");
    }
}

#[test]
fn presence_on_subscribe_and_the_presence_command() {
    let watch = decode_ok(r#"{"type":"subscribe","channel":"room.1","presence":true}"#);
    assert_eq!(
        watch,
        Command::Subscribe {
            channel: "room.1",
            since: None,
            epoch: None,
            throttle_ms: None,
            binary: false,
            presence: true
        }
    );
    let null = decode_ok(r#"{"type":"subscribe","channel":"r","presence":null}"#);
    assert!(matches!(
        null,
        Command::Subscribe {
            presence: false,
            ..
        }
    ));
    let bad = r#"{"type":"subscribe","channel":"r","presence":1}"#;
    assert_eq!(decode_err(bad), CommandError::InvalidPresence);
    let twice = r#"{"type":"subscribe","channel":"r","presence":true,"presence":false}"#;
    assert_eq!(decode_err(twice), CommandError::DuplicateField);
    let ask = decode_ok(r#"{"type":"presence","channel":"room.1"}"#);
    assert_eq!(ask, Command::Presence { channel: "room.1" });
    assert_eq!(
        decode_err(r#"{"type":"presence"}"#),
        CommandError::InvalidChannelField
    );
}
