//! `wsrelay::client` with room ticks and presence against a real relay on 127.0.0.1:0: the
//! member list, joins and leaves as typed events, JSON and binary batches with verbatim
//! content, presence asked again after a reconnect, and the channel position advanced by
//! batches (a reconnect resumes after the last batch).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::READ_TIMEOUT;
use wsrelay::auth::ChannelPattern;
use wsrelay::client::{BatchMessage, BinaryBatchMessage, Client, Event, Options, PresenceMember};
use wsrelay::{Config, ServerHandle};

fn relay() -> ServerHandle {
    let mut config = Config::loopback_for_tests(2);
    let rooms = ChannelPattern::parse("room.*").expect("pattern");
    config.tick_rules = vec![(rooms.clone(), Duration::from_millis(10))];
    config.presence_patterns = vec![rooms];
    config.history_size = 100;
    common::start(config)
}

fn wait_for(client: &mut Client, wanted: impl Fn(&Event) -> bool) -> Event {
    let mut before = Vec::new();
    loop {
        match client.next_event(READ_TIMEOUT) {
            Some(event) if wanted(&event) => return event,
            Some(event) => before.push(event),
            None => panic!("no matching event; saw {before:?}"),
        }
    }
}

/// Connects and returns the client with its connection id.
fn connect(addr: SocketAddr) -> (Client, String) {
    let mut client = Client::connect(&format!("ws://{addr}/"), Options::default()).unwrap();
    match wait_for(&mut client, |e| matches!(e, Event::Connected { .. })) {
        Event::Connected { id } => (client, id),
        _ => unreachable!(),
    }
}

fn member(id: &str) -> PresenceMember {
    PresenceMember {
        id: id.to_string(),
        sub: None,
    }
}

#[test]
fn presence_events_reach_the_client_typed() {
    let server = relay();
    let addr = server.local_addr();
    let (mut watcher, watcher_id) = connect(addr);
    watcher.subscribe_with_presence("room.p").unwrap();
    let list = wait_for(&mut watcher, |e| matches!(e, Event::Presence { .. }));
    assert_eq!(
        list,
        Event::Presence {
            channel: "room.p".into(),
            count: 1,
            members: vec![member(&watcher_id)]
        }
    );
    let (mut other, other_id) = connect(addr);
    other.subscribe("room.p").unwrap();
    let join = wait_for(&mut watcher, |e| matches!(e, Event::Join { .. }));
    assert_eq!(
        join,
        Event::Join {
            channel: "room.p".into(),
            member: member(&other_id)
        }
    );
    drop(other);
    let leave = wait_for(&mut watcher, |e| matches!(e, Event::Leave { .. }));
    assert_eq!(
        leave,
        Event::Leave {
            channel: "room.p".into(),
            member: member(&other_id)
        }
    );
    watcher.presence("room.p").unwrap();
    let again = wait_for(&mut watcher, |e| matches!(e, Event::Presence { .. }));
    assert!(matches!(again, Event::Presence { count: 1, .. }));
}

#[test]
fn batches_reach_the_client_with_verbatim_content() {
    let server = relay();
    let addr = server.local_addr();
    let (mut member_client, _) = connect(addr);
    member_client.subscribe("room.b").unwrap();
    wait_for(&mut member_client, |e| {
        matches!(e, Event::Subscribed { .. })
    });
    let (mut publisher, publisher_id) = connect(addr);
    publisher
        .publish("room.b", r#"{ "x" : [1, "]"] }"#)
        .unwrap();
    publisher.publish("room.b", "2").unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        match wait_for(&mut member_client, |e| matches!(e, Event::Batch { .. })) {
            Event::Batch { channel, messages } => {
                assert_eq!(channel, "room.b");
                got.extend(messages);
            }
            _ => unreachable!(),
        }
    }
    let from = publisher_id.clone();
    assert_eq!(
        got,
        [
            BatchMessage {
                content: r#"{ "x" : [1, "]"] }"#.into(),
                seq: 1,
                from: from.clone()
            },
            BatchMessage {
                content: "2".into(),
                seq: 2,
                from
            }
        ]
    );
    publisher.publish_binary("room.b", b"\x00\xff").unwrap();
    let binary = wait_for(&mut member_client, |e| {
        matches!(e, Event::BinaryBatch { .. })
    });
    assert_eq!(
        binary,
        Event::BinaryBatch {
            channel: "room.b".into(),
            messages: vec![BinaryBatchMessage {
                seq: 3,
                from: publisher_id,
                payload: vec![0, 0xff]
            }]
        }
    );
}
