//! Parsing server events as the client sees them, from the relay's own encoders.

use super::*;
use crate::command::{
    encode_binary_gap, encode_binary_message, encode_connected, encode_gap, encode_message,
    encode_pong, encode_subscribed,
};

type Encoder = fn(&mut Vec<u8>);

/// Paired assertion: the relay's batch writer parses back to its fields.
#[test]
fn parses_the_relays_batches() {
    use crate::command::{batch_close, batch_entry, batch_open};
    let mut parser = ServerEventParser::new();
    let mut out = Vec::new();
    batch_open(&mut out, "room.1");
    batch_entry(&mut out, true, br#"{"a" : [1,"]"]}"#, 4, "x\"y");
    batch_entry(&mut out, false, b"null", 5, "z");
    batch_close(&mut out);
    let text = std::str::from_utf8(&out).unwrap();
    let ServerEvent::Batch { channel, messages } = parser.parse(text).unwrap() else {
        panic!("not a batch");
    };
    assert_eq!(channel, "room.1");
    let entries = parser.batch_entries(&text[messages.0..messages.1]).unwrap();
    let want = |content: &str, seq, from: &str| BatchMessage {
        content: content.into(),
        seq,
        from: from.into(),
    };
    assert_eq!(
        entries,
        [want(r#"{"a" : [1,"]"]}"#, 4, "x\"y"), want("null", 5, "z")]
    );
}

/// Paired assertion: the relay's presence writers (list, join/leave) parse back.
#[test]
fn parses_the_relays_presence_lists_and_changes() {
    use crate::command::{encode_presence, encode_presence_change, MemberRef};
    let mut parser = ServerEventParser::new();
    let mut out = Vec::new();
    let alice = MemberRef {
        id: "0-1-1",
        sub: Some("alice"),
    };
    let anon = MemberRef {
        id: "1-2-3",
        sub: None,
    };
    encode_presence(&mut out, "r", 9, [alice, anon].into_iter());
    let text = std::str::from_utf8(&out).unwrap();
    let ServerEvent::Presence { count, members, .. } = parser.parse(text).unwrap() else {
        panic!("not a presence list");
    };
    assert_eq!(count, 9);
    let listed = parser.members(&text[members.0..members.1]).unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].sub.as_deref(), Some("alice"));
    assert_eq!(
        (listed[1].id.as_str(), listed[1].sub.as_deref()),
        ("1-2-3", None)
    );
    out.clear();
    encode_presence_change(&mut out, false, "r", anon);
    let text = std::str::from_utf8(&out).unwrap();
    let ServerEvent::PresenceChange { joined, member, .. } = parser.parse(text).unwrap() else {
        panic!("not a change");
    };
    assert!(!joined);
    let who = parser.members(&text[member.0..member.1]).unwrap();
    assert_eq!(who[0].id, "1-2-3");
}

/// Paired assertion: the relay's binary batch writer parses back; a truncated batch fails.
#[test]
fn parses_the_relays_binary_batches() {
    use crate::command::{binary_batch_entry, binary_batch_open};
    let mut out = Vec::new();
    binary_batch_open(&mut out, "r").unwrap();
    binary_batch_entry(&mut out, 7, "f", b"\x01");
    let Ok(BinaryEvent::Batch { entries, .. }) = parse_binary(&out) else {
        panic!("not a binary batch");
    };
    let read = binary_batch_entries(entries).unwrap();
    assert_eq!((read[0].seq, read[0].payload.as_slice()), (7, &[1u8][..]));
    assert!(binary_batch_entries(&entries[..entries.len() - 1]).is_err());
}

/// Paired assertion: every message the relay's encoder writes parses back to its fields.
#[test]
fn parses_what_the_relay_encodes() {
    let mut parser = ServerEventParser::new();
    let mut out = Vec::new();
    encode_message(&mut out, "md.X", br#"{"s":"a,\"from\":1}"}"#, "0-1-2", 9);
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        parser.parse(&text),
        Ok(ServerEvent::Message {
            channel: "md.X",
            content: r#"{"s":"a,\"from\":1}"}"#,
            from: "0-1-2",
            seq: 9,
            key: None,
            delete: false,
        })
    );
    let cases: [(Encoder, ServerEvent<'static>); 4] = [
        (
            |o| encode_connected(o, "0-1-2", "127.0.0.1"),
            ServerEvent::Connected { id: "0-1-2" },
        ),
        (encode_pong, ServerEvent::Pong),
        (
            |o| encode_subscribed(o, "c", 4, "e.1", Some(true)),
            ServerEvent::Subscribed {
                channel: "c",
                seq: 4,
                epoch: "e.1",
                recovered: Some(true),
                throttle_ms: None,
            },
        ),
        (
            |o| encode_gap(o, "c", 3, 5),
            ServerEvent::Gap {
                channel: "c",
                from: 3,
                to: 5,
            },
        ),
    ];
    for (encode, expected) in cases {
        let mut out = Vec::new();
        encode(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(parser.parse(&text), Ok(expected));
    }
}

#[test]
fn snapshots_parse_back() {
    use crate::command::{encode_snapshot, SnapshotEntry, SnapshotHead};
    let mut parser = ServerEventParser::new();
    let mut out = Vec::new();
    let entries = [
        SnapshotEntry {
            key: Some("a"),
            content: br#"{"x":[1,"}{"]}"#,
            seq: 3,
            binary: false,
        },
        SnapshotEntry {
            key: None,
            content: b"7",
            seq: 4,
            binary: false,
        },
    ];
    let head = SnapshotHead {
        channel: "b",
        seq: 4,
        epoch: "e",
    };
    encode_snapshot(&mut out, head, entries.into_iter());
    let text = String::from_utf8(out).unwrap();
    let Ok(ServerEvent::Snapshot { entries, seq, .. }) = parser.parse(&text) else {
        panic!("{text}");
    };
    assert_eq!(seq, 4);
    let entries = entries.to_owned();
    let items = parser.snapshot_entries(&entries).unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(
        (items[0].key.as_deref(), &items[0].content[..], items[0].seq),
        (Some("a"), &br#"{"x":[1,"}{"]}"#[..], 3)
    );
    assert_eq!(
        (items[1].key.as_deref(), &items[1].content[..]),
        (None, &b"7"[..])
    );
}

#[test]
fn keyed_messages_and_throttled_subscribes_parse_back() {
    use crate::command::{encode_keyed_message, encode_subscribed_throttled};
    let mut parser = ServerEventParser::new();
    let mut out = Vec::new();
    encode_keyed_message(&mut out, ("b", b"1", "f", 5), Some("k"), true);
    let text = String::from_utf8(out).unwrap();
    assert!(matches!(
        parser.parse(&text),
        Ok(ServerEvent::Message {
            key: Some("k"),
            delete: true,
            ..
        })
    ));
    let mut out = Vec::new();
    encode_subscribed_throttled(&mut out, "b", 1, "e", None, Some(250));
    let text = String::from_utf8(out).unwrap();
    assert!(matches!(
        parser.parse(&text),
        Ok(ServerEvent::Subscribed {
            throttle_ms: Some(250),
            ..
        })
    ));
}

#[test]
fn content_keeps_its_bytes_in_any_member_order() {
    let mut parser = ServerEventParser::new();
    let text =
        r#"{"seq":1, "content" : [1, {"a" : 2}] ,"type":"message","from":"f","channel":"c"}"#;
    let event = parser.parse(text);
    assert!(matches!(
        event,
        Ok(ServerEvent::Message {
            content: r#"[1, {"a" : 2}]"#,
            ..
        })
    ));
}

#[test]
fn rejects_each_rule() {
    let mut parser = ServerEventParser::new();
    let cases = [
        ("nope", ServerEventError::InvalidJson),
        ("[1]", ServerEventError::NotAnObject),
        (r#"{"type":1}"#, ServerEventError::InvalidType),
        (r#"{"type":"hello"}"#, ServerEventError::UnknownType),
        (
            r#"{"type":"subscribed","channel":"c","seq":-1,"epoch":"e"}"#,
            ServerEventError::InvalidField("seq"),
        ),
        (
            r#"{"type":"message","channel":"c","from":"f","seq":1}"#,
            ServerEventError::InvalidField("content"),
        ),
    ];
    for (text, error) in cases {
        assert_eq!(parser.parse(text), Err(error), "{text}");
    }
}

#[test]
fn binary_round_trip_and_truncation() {
    let mut out = Vec::new();
    encode_binary_message(&mut out, "c", 7, b"xy").unwrap();
    assert_eq!(
        parse_binary(&out),
        Ok(BinaryEvent::Message {
            channel: "c",
            seq: 7,
            payload: b"xy"
        })
    );
    let mut gap = Vec::new();
    encode_binary_gap(&mut gap, "c", 2, 3).unwrap();
    assert_eq!(
        parse_binary(&gap),
        Ok(BinaryEvent::Gap {
            channel: "c",
            from: 2,
            to: 3
        })
    );
    for len in 0..gap.len() {
        assert_eq!(
            parse_binary(&gap[..len]),
            Err(ServerEventError::MalformedBinary)
        );
    }
    assert_eq!(
        parse_binary(&[9, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        Err(ServerEventError::MalformedBinary)
    );
}
