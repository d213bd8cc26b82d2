//! The client library against a real relay on 127.0.0.1:0 (and, for a close code the relay
//! cannot send without auth, a scripted server built from the relay's codec). Assertions are
//! on events; `next_event` timeouts only turn a bug into a failure instead of a hang.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use wsrelay::client::{
    Backoff, Client, Disconnect, Event, Options, SnapshotItem, StopReason, SubscribeOptions,
};
use wsrelay::proto::close::encode_close_payload;
use wsrelay::proto::frame::encode_server_frame;
use wsrelay::proto::handshake::{
    accept_key, encode_switching_protocols, parse_request_head, validate_upgrade,
};
use wsrelay::proto::{Decode, OpCode};
use wsrelay::{Config, Server, ServerHandle};

use common::READ_TIMEOUT;

/// Fast retries so a restart test takes milliseconds, and enough of them to outlast it.
fn fast_options() -> Options {
    Options {
        backoff: Backoff {
            base: Duration::from_millis(10),
            cap: Duration::from_millis(100),
            jitter: Duration::from_millis(10),
        },
        retries_max: 200,
        ..Options::default()
    }
}

fn url(addr: SocketAddr) -> String {
    format!("ws://{addr}/")
}

/// Returns the first event matching `wanted`, with every event before it.
fn wait_for(client: &mut Client, wanted: impl Fn(&Event) -> bool) -> (Event, Vec<Event>) {
    let mut before = Vec::new();
    loop {
        match client.next_event(READ_TIMEOUT) {
            Some(event) if wanted(&event) => return (event, before),
            Some(event) => before.push(event),
            None => panic!("no matching event; saw {before:?}"),
        }
    }
}

/// Connects, waits for `connected`, subscribes to `channel` and waits for `subscribed`.
fn subscribed_client(addr: SocketAddr, channel: &str) -> Client {
    let mut client = Client::connect(&url(addr), fast_options()).unwrap();
    wait_for(&mut client, |e| matches!(e, Event::Connected { .. }));
    client.subscribe(channel).unwrap();
    wait_for(&mut client, |e| matches!(e, Event::Subscribed { .. }));
    client
}

/// An open client that has seen `connected`; returns it with its id.
fn publisher(addr: SocketAddr) -> (Client, String) {
    let mut client = Client::connect(&url(addr), fast_options()).unwrap();
    let (event, _) = wait_for(&mut client, |e| matches!(e, Event::Connected { .. }));
    let Event::Connected { id } = event else {
        unreachable!()
    };
    (client, id)
}

fn relay_on(addr: SocketAddr, config: Config) -> ServerHandle {
    Server::start(Config {
        listen_addr: addr,
        ..config
    })
    .expect("relay starts on the same port")
}

#[test]
fn subscribe_publish_and_receive_json_and_binary() {
    let relay = common::relay(2);
    let mut subscriber = subscribed_client(relay.local_addr(), "md.BTC");
    let (mut publisher, publisher_id) = publisher(relay.local_addr());
    publisher.publish("md.BTC", r#"{"px":101.5}"#).unwrap();
    let (event, _) = wait_for(&mut subscriber, |e| matches!(e, Event::Message { .. }));
    assert_eq!(
        event,
        Event::Message {
            channel: "md.BTC".into(),
            content: r#"{"px":101.5}"#.into(),
            from: publisher_id,
            seq: 1,
            key: None,
            delete: false,
        }
    );
    publisher.publish_binary("md.BTC", b"\x00raw\xff").unwrap();
    let (event, _) = wait_for(&mut subscriber, |e| matches!(e, Event::Binary { .. }));
    assert_eq!(
        event,
        Event::Binary {
            channel: "md.BTC".into(),
            seq: 2,
            payload: b"\x00raw\xff".to_vec()
        }
    );
    let position = subscriber.session().channel_position("md.BTC").unwrap();
    assert_eq!(position.seq, Some(2));
}

#[test]
fn application_ping_gets_a_pong_and_server_errors_are_events() {
    let relay = common::relay(1);
    let (mut client, _) = publisher(relay.local_addr());
    client.send_text(r#"{"type":"ping"}"#).unwrap();
    wait_for(&mut client, |e| *e == Event::Pong);
    client.publish("c", "not json").unwrap();
    let (event, _) = wait_for(&mut client, |e| matches!(e, Event::ServerError { .. }));
    assert_eq!(
        event,
        Event::ServerError {
            message: "Invalid JSON".into()
        }
    );
}

#[test]
fn relay_killed_and_restarted_on_the_same_port_client_comes_back_subscribed() {
    let first = common::relay(2);
    let addr = first.local_addr();
    let mut subscriber = subscribed_client(addr, "room.1");
    first.shutdown_immediately();
    first.join();
    // The immediate stop may still get a 1001 out before dropping the socket, or not.
    let (lost, _) = wait_for(&mut subscriber, |e| matches!(e, Event::Disconnected(_)));
    let Event::Disconnected(cause) = lost else {
        unreachable!()
    };
    assert!(
        matches!(cause, Disconnect::ConnectionLost)
            || matches!(
                cause,
                Disconnect::ServerClosed {
                    code: Some(1001),
                    ..
                }
            ),
        "{cause:?}"
    );
    // Both mean "reconnect with backoff".
    let (retry, _) = wait_for(&mut subscriber, |e| matches!(e, Event::Reconnecting { .. }));
    assert!(
        matches!(retry, Event::Reconnecting { attempt: 1, delay } if delay >= Duration::from_millis(10))
    );

    let second = relay_on(addr, Config::loopback_for_tests(2));
    let (open, before) = wait_for(&mut subscriber, |e| matches!(e, Event::Open { .. }));
    assert_eq!(
        open,
        Event::Open {
            resubscribed_channels: 1
        }
    );
    assert!(
        !before.iter().any(|e| matches!(e, Event::Stopped(_))),
        "{before:?}"
    );
    let (resubscribed, _) = wait_for(&mut subscriber, |e| matches!(e, Event::Subscribed { .. }));
    assert!(matches!(resubscribed, Event::Subscribed { ref channel, .. } if channel == "room.1"));

    let (mut publisher, _) = publisher(second.local_addr());
    publisher.publish("room.1", r#""back""#).unwrap();
    let (event, _) = wait_for(&mut subscriber, |e| matches!(e, Event::Message { .. }));
    assert!(matches!(event, Event::Message { ref content, seq: 1, .. } if content == r#""back""#));
}

#[test]
fn drain_close_4200_reconnects_at_once_to_the_next_relay() {
    let draining = Server::start(Config {
        drain_over: Duration::from_millis(20),
        ..Config::loopback_for_tests(1)
    })
    .unwrap();
    let addr = draining.local_addr();
    let mut subscriber = subscribed_client(addr, "md.ETH");
    // The rolling restart: the successor listens on the same port (SO_REUSEPORT) before the
    // old relay stops accepting and drains.
    let successor = relay_on(addr, Config::loopback_for_tests(1));
    draining.shutdown();
    let (closed, _) = wait_for(&mut subscriber, |e| matches!(e, Event::Disconnected(_)));
    assert_eq!(
        closed,
        Event::Disconnected(Disconnect::ServerClosed {
            code: Some(4200),
            reason: closed_reason(&closed)
        })
    );
    let (retry, _) = wait_for(&mut subscriber, |e| matches!(e, Event::Reconnecting { .. }));
    assert_eq!(
        retry,
        Event::Reconnecting {
            attempt: 1,
            delay: Duration::ZERO
        }
    );
    wait_for(&mut subscriber, |e| matches!(e, Event::Subscribed { .. }));
    let (mut publisher, _) = publisher(successor.local_addr());
    publisher.publish("md.ETH", "42").unwrap();
    let (event, _) = wait_for(&mut subscriber, |e| matches!(e, Event::Message { .. }));
    assert!(matches!(event, Event::Message { ref content, .. } if content == "42"));
    draining.join();
}

fn closed_reason(event: &Event) -> String {
    match event {
        Event::Disconnected(Disconnect::ServerClosed { reason, .. }) => reason.clone(),
        _ => String::new(),
    }
}

#[test]
fn user_close_completes_the_handshake_and_stops() {
    let relay = common::relay(1);
    let (mut client, _) = publisher(relay.local_addr());
    client.close();
    let (stopped, before) = wait_for(&mut client, |e| matches!(e, Event::Stopped(_)));
    assert_eq!(stopped, Event::Stopped(StopReason::ClosedByUser));
    assert_eq!(
        before,
        [Event::Disconnected(Disconnect::ClosedByUser { code: 1000 })]
    );
    assert_eq!(client.next_event(Duration::ZERO), None);
}

/// A one-shot server: completes the handshake, sends a close with `code`, reads the echo.
fn scripted_close_server(
    code: u16,
) -> (SocketAddr, std::thread::JoinHandle<(TcpListener, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        let mut request = Vec::new();
        let mut chunk = [0u8; 4096];
        let key = loop {
            let n = stream.read(&mut chunk).unwrap();
            request.extend_from_slice(&chunk[..n]);
            if let Ok(Decode::Complete(head, _)) = parse_request_head(&request) {
                break validate_upgrade(&head).unwrap().key.to_owned();
            }
        };
        let mut out = Vec::new();
        encode_switching_protocols(&mut out, &accept_key(&key), None, None);
        let mut payload = Vec::new();
        encode_close_payload(&mut payload, code, "unauthorized");
        encode_server_frame(&mut out, true, OpCode::Close, &payload);
        stream.write_all(&out).unwrap();
        let mut echo = vec![0u8; 8];
        stream.read_exact(&mut echo).unwrap();
        listener.set_nonblocking(true).unwrap();
        (listener, echo)
    });
    (addr, handle)
}

#[test]
fn server_close_4001_does_not_reconnect() {
    let (addr, server) = scripted_close_server(4001);
    let mut client = Client::connect(&url(addr), fast_options()).unwrap();
    let (stopped, before) = wait_for(&mut client, |e| matches!(e, Event::Stopped(_)));
    assert_eq!(
        stopped,
        Event::Stopped(StopReason::DoNotReconnect { code: 4001 })
    );
    assert_eq!(
        before,
        [
            Event::Open {
                resubscribed_channels: 0
            },
            Event::Disconnected(Disconnect::ServerClosed {
                code: Some(4001),
                reason: "unauthorized".into()
            })
        ]
    );
    let (listener, echo) = server.join().unwrap();
    // The echo: a masked close frame (0x88, MASK|2) whose unmasked payload is 4001.
    assert_eq!((echo[0], echo[1]), (0x88, 0x82));
    let code = [echo[6] ^ echo[2], echo[7] ^ echo[3]];
    assert_eq!(u16::from_be_bytes(code), 4001);
    // Stopped means no socket and no timer: nothing can connect again.
    assert_eq!(client.next_event(Duration::ZERO), None);
    let no_second_connection = listener.accept().map(|_| ()).map_err(|e| e.kind());
    assert_eq!(no_second_connection, Err(std::io::ErrorKind::WouldBlock));
}

/// Subscribes with `options` and returns the `subscribed` event.
fn subscribe_with(client: &mut Client, channel: &str, options: SubscribeOptions) -> Event {
    client.subscribe_with(channel, options).unwrap();
    wait_for(client, |e| matches!(e, Event::Subscribed { .. })).0
}

/// Subscribes (JSON) until the `subscribed` reply counts `want_seq` publishes (they are
/// numbered before the subscribe only if they arrived first; at most 100 tries) and returns
/// the snapshot that follows it.
fn snapshot_at_seq(client: &mut Client, channel: &str, want_seq: u64) -> Event {
    for _ in 0..100 {
        let Event::Subscribed { seq, .. } =
            subscribe_with(client, channel, SubscribeOptions::default())
        else {
            unreachable!()
        };
        let (event, _) = wait_for(client, |e| matches!(e, Event::Snapshot { .. }));
        if seq == want_seq {
            return event;
        }
        client.unsubscribe(channel).unwrap();
        wait_for(client, |e| matches!(e, Event::Unsubscribed { .. }));
    }
    panic!("never saw the {want_seq} publishes");
}

#[test]
fn snapshots_keyed_messages_and_throttle_reach_the_application() {
    let relay = common::start(Config {
        snapshot_patterns: vec![wsrelay::auth::ChannelPattern::parse("board.*").unwrap()],
        ..Config::loopback_for_tests(2)
    });
    let addr = relay.local_addr();
    let (mut publisher, _) = publisher(addr);
    publisher.publish_keyed("board.c", "a", "1", false).unwrap();
    publisher.publish_keyed("board.c", "b", "2", false).unwrap();
    publisher
        .publish_keyed("board.c", "a", "null", true)
        .unwrap();
    publisher.publish_binary("board.c", b"\x01raw").unwrap();
    let (mut json, _) = self::publisher(addr);
    let Event::Snapshot { seq, entries, .. } = snapshot_at_seq(&mut json, "board.c", 4) else {
        unreachable!()
    };
    assert_eq!(seq, 4);
    let b = SnapshotItem {
        key: Some("b".into()),
        content: b"2".to_vec(),
        seq: 2,
        binary: false,
    };
    assert_eq!(
        entries,
        std::slice::from_ref(&b),
        "JSON snapshots leave binary entries out"
    );
    let (mut binary, _) = self::publisher(addr);
    let options = SubscribeOptions {
        binary: true,
        throttle_ms: Some(20),
        ..SubscribeOptions::default()
    };
    let Event::Subscribed { throttle_ms, .. } = subscribe_with(&mut binary, "board.c", options)
    else {
        unreachable!()
    };
    assert_eq!(throttle_ms, Some(20));
    let (event, _) = wait_for(&mut binary, |e| matches!(e, Event::Snapshot { .. }));
    let Event::Snapshot { entries, .. } = event else {
        unreachable!()
    };
    let raw = SnapshotItem {
        key: None,
        content: b"\x01raw".to_vec(),
        seq: 4,
        binary: true,
    };
    assert_eq!(entries, [b, raw]);
    publisher.publish_keyed("board.c", "c", "3", false).unwrap();
    for client in [&mut json, &mut binary] {
        let (event, _) = wait_for(client, |e| matches!(e, Event::Message { .. }));
        let Event::Message { seq, key, .. } = event else {
            unreachable!()
        };
        assert_eq!((seq, key.as_deref()), (5, Some("c")));
    }
}
