//! Session tests with a fake clock and a scripted server built from the relay's own codec.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::*;
use crate::client::backoff::Backoff;
use crate::client::options::AuthTokenSource;
use crate::client::scripted_server::*;
use crate::command::{encode_binary_message, encode_gap, encode_message, encode_subscribed};
use crate::proto::{Decoder, DecoderLimits, OpCode, Role};

const BASE: Duration = Duration::from_millis(100);
const CAP: Duration = Duration::from_millis(1000);
const JITTER: Duration = Duration::from_millis(50);
const MS: Duration = Duration::from_millis(1);

fn options() -> Options {
    Options {
        backoff: Backoff {
            base: BASE,
            cap: CAP,
            jitter: JITTER,
        },
        retries_max: 10,
        heartbeat_interval: Duration::from_secs(15),
        heartbeat_timeout: Duration::from_secs(10),
        ..Options::default()
    }
}

/// A session, a fake clock, and the server side of its current connection.
struct Harness {
    session: Session,
    now: Instant,
    /// Server-role decoder of what the client sends on the current connection.
    server: Decoder,
}

impl Harness {
    fn new(options: Options) -> Self {
        let now = Instant::now();
        let url = WsUrl::parse("ws://relay.test/").unwrap();
        Self {
            session: Session::new(url, options, Rng::from_seed(9), now),
            now,
            server: server_decoder(),
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.session.handle_timeout(self.now);
    }

    fn transports(&mut self) -> Vec<Transport> {
        std::iter::from_fn(|| self.session.poll_transport()).collect()
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.session.poll_event()).collect()
    }

    /// Expects a connect request, then completes TCP and the handshake.
    fn open(&mut self) -> Vec<Event> {
        let transports = self.transports();
        assert_eq!(
            transports.last(),
            Some(&Transport::Connect),
            "{transports:?}"
        );
        self.session.handle_connected(self.now);
        let request = self.session.transmit().to_vec();
        self.session.advance_transmit(request.len());
        self.server = server_decoder();
        self.receive(&answer_101(&request));
        self.events()
    }

    fn receive(&mut self, bytes: &[u8]) {
        let mut input = bytes.to_vec();
        let used = self.session.handle_bytes(self.now, &mut input);
        assert_eq!(used, input.len());
    }

    fn receive_text(&mut self, encode: impl FnOnce(&mut Vec<u8>)) {
        let mut payload = Vec::new();
        encode(&mut payload);
        self.receive(&server_frame(OpCode::Text, &payload));
    }

    /// Text messages the client sent since the last call (decoded as a server would).
    fn sent_texts(&mut self) -> Vec<String> {
        let mut bytes = self.session.transmit().to_vec();
        self.session.advance_transmit(bytes.len());
        let mut texts = Vec::new();
        self.server
            .feed(&mut bytes, |event| {
                match event {
                    crate::proto::Event::Text(t) => texts.push(String::from_utf8_lossy(t).into()),
                    crate::proto::Event::Close(f) => {
                        texts.push(format!("close {:?}", f.map(|f| f.code)))
                    }
                    _ => {}
                }
                ControlFlow::Continue(())
            })
            .expect("client frames are valid");
        texts
    }

    /// Fails the pending connect attempt; returns the delay the session announced.
    fn fail_connect(&mut self) -> Vec<Event> {
        let transports = self.transports();
        assert_eq!(
            transports.last(),
            Some(&Transport::Connect),
            "{transports:?}"
        );
        let refused = std::io::ErrorKind::ConnectionRefused;
        self.session.handle_connect_failed(self.now, refused);
        self.events()
    }
}

fn server_decoder() -> Decoder {
    Decoder::new(
        Role::Server,
        DecoderLimits {
            message_bytes_max: 1 << 20,
        },
    )
}

fn reconnect_delay(events: &[Event]) -> (u32, Duration) {
    match events.last() {
        Some(&Event::Reconnecting { attempt, delay }) => (attempt, delay),
        other => panic!("expected Reconnecting, got {other:?} in {events:?}"),
    }
}

fn assert_within_backoff(n: u32, delay: Duration) {
    let floor = (BASE * 2u32.pow(n)).min(CAP);
    assert!(
        delay >= floor && delay <= floor + JITTER,
        "retry {n}: {delay:?} not in [{floor:?}, {:?}]",
        floor + JITTER
    );
}

#[test]
fn backoff_delays_grow_within_bounds_and_the_next_connect_waits_for_them() {
    let mut h = Harness::new(options());
    for n in 0..8 {
        let events = h.fail_connect();
        assert_eq!(
            events[0],
            Event::Disconnected(Disconnect::ConnectFailed(
                std::io::ErrorKind::ConnectionRefused
            ))
        );
        let (attempt, delay) = reconnect_delay(&events);
        assert_eq!(attempt, n + 1);
        assert_within_backoff(n, delay);
        assert!(matches!(h.transports()[..], [Transport::Close { .. }]));
        h.advance(delay - Duration::from_nanos(1));
        assert_eq!(h.transports(), [], "connect before the delay elapsed");
        h.advance(Duration::from_nanos(1));
        assert_eq!(
            h.session.poll_timeout(),
            Some(h.now + h.session.options.connect_timeout)
        );
    }
}

#[test]
fn gives_up_after_retries_max_consecutive_failures() {
    let mut h = Harness::new(Options {
        retries_max: 3,
        ..options()
    });
    for attempt in 1..=3 {
        let events = h.fail_connect();
        assert_eq!(reconnect_delay(&events).0, attempt);
        h.advance(CAP + JITTER);
    }
    let events = h.fail_connect();
    assert_eq!(
        events.last(),
        Some(&Event::Stopped(StopReason::RetriesExhausted {
            attempts: 3
        }))
    );
    h.advance(CAP * 100);
    assert!(h.transports().iter().all(|t| *t != Transport::Connect));
    assert_eq!(h.session.poll_timeout(), None);
    assert!(h.session.is_stopped());
}

#[test]
fn attempts_reset_after_a_successful_open() {
    let mut h = Harness::new(options());
    for _ in 0..3 {
        h.fail_connect();
        h.advance(CAP + JITTER);
    }
    assert_eq!(
        h.open(),
        [Event::Open {
            resubscribed_channels: 0
        }]
    );
    h.session.handle_eof(h.now);
    let events = h.events();
    assert_eq!(events[0], Event::Disconnected(Disconnect::ConnectionLost));
    let (attempt, delay) = reconnect_delay(&events);
    assert_eq!(attempt, 1);
    assert_within_backoff(0, delay);
}

#[test]
fn no_reconnect_after_the_users_close() {
    let mut h = Harness::new(options());
    h.open();
    h.session.close(h.now);
    assert_eq!(h.sent_texts(), ["close Some(1000)"]);
    assert_eq!(h.session.publish("a", "1"), Err(SendError::NotOpen));
    h.receive(&close_frame(1000, ""));
    assert_eq!(
        h.events(),
        [
            Event::Disconnected(Disconnect::ClosedByUser { code: 1000 }),
            Event::Stopped(StopReason::ClosedByUser)
        ]
    );
    h.advance(CAP * 100);
    assert!(h.transports().iter().all(|t| *t != Transport::Connect));
}

#[test]
fn an_unanswered_close_still_stops_after_the_close_timeout() {
    let mut h = Harness::new(options());
    h.open();
    h.session.close(h.now);
    h.advance(h.session.options.close_timeout - MS);
    assert_eq!(h.events(), []);
    h.advance(MS);
    assert_eq!(
        h.events().last(),
        Some(&Event::Stopped(StopReason::ClosedByUser))
    );
}

#[test]
fn closing_while_waiting_to_reconnect_stops_at_once() {
    let mut h = Harness::new(options());
    h.fail_connect();
    h.session.close(h.now);
    assert_eq!(h.events(), [Event::Stopped(StopReason::ClosedByUser)]);
    h.advance(CAP * 100);
    assert!(h.transports().iter().all(|t| *t != Transport::Connect));
}

#[test]
fn no_reconnect_after_4001() {
    let mut h = Harness::new(options());
    h.open();
    h.receive(&close_frame(4001, ""));
    let events = h.events();
    assert_eq!(
        events,
        [
            Event::Disconnected(Disconnect::ServerClosed {
                code: Some(4001),
                reason: String::new()
            }),
            Event::Stopped(StopReason::DoNotReconnect { code: 4001 })
        ]
    );
    // The close is echoed in the farewell bytes: a masked close frame with 4001.
    let transports = h.transports();
    let [Transport::Close { farewell }] = &transports[..] else {
        panic!("{transports:?}");
    };
    assert_eq!((farewell[0], farewell[1]), (0x88, 0x82));
    h.advance(CAP * 100);
    assert_eq!(h.transports(), []);
}

#[test]
fn immediate_reconnect_after_4200() {
    let mut h = Harness::new(options());
    h.open();
    h.receive(&close_frame(4200, ""));
    assert_eq!(reconnect_delay(&h.events()), (1, Duration::ZERO));
    h.advance(Duration::ZERO);
    assert_eq!(h.transports().last(), Some(&Transport::Connect));
}

#[test]
fn backoff_after_4100_and_after_a_lost_connection() {
    let mut h = Harness::new(options());
    h.open();
    h.receive(&close_frame(4100, ""));
    let (_, delay) = reconnect_delay(&h.events());
    assert_within_backoff(0, delay);
}

#[test]
fn heartbeat_miss_drops_the_connection_and_reconnects() {
    let mut h = Harness::new(options());
    h.open();
    h.advance(Duration::from_secs(15) - MS);
    assert_eq!(h.sent_texts(), Vec::<String>::new());
    h.advance(MS);
    assert_eq!(h.sent_texts(), [r#"{"type":"ping"}"#]);
    h.advance(Duration::from_secs(10) - MS);
    assert_eq!(h.events(), []);
    h.advance(MS);
    let events = h.events();
    assert_eq!(events[0], Event::Disconnected(Disconnect::HeartbeatTimeout));
    assert_within_backoff(0, reconnect_delay(&events).1);
    // A dead connection gets no farewell: nothing would arrive.
    assert_eq!(h.transports(), [Transport::Close { farewell: vec![] }]);
}

#[test]
fn answered_heartbeats_keep_the_connection() {
    let mut h = Harness::new(options());
    h.open();
    for _ in 0..10 {
        h.advance(Duration::from_secs(15));
        assert_eq!(h.sent_texts(), [r#"{"type":"ping"}"#]);
        h.advance(Duration::from_secs(9));
        h.receive_text(|o| o.extend_from_slice(br#"{"type":"pong"}"#));
        assert_eq!(h.events(), [Event::Pong]);
        h.advance(Duration::from_secs(2));
    }
    assert!(h.session.is_open());
}

#[test]
fn reconnect_reauthenticates_then_resubscribes_with_since_and_epoch() {
    let minted = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&minted);
    let auth: AuthTokenSource =
        Box::new(move || Some(format!("tok-{}", counter.fetch_add(1, Ordering::Relaxed))));
    let mut h = Harness::new(Options {
        auth: Some(auth),
        ..options()
    });
    h.open();
    h.session.subscribe("a").unwrap();
    h.session.subscribe("b").unwrap();
    h.session.subscribe("gone").unwrap();
    h.session.unsubscribe("gone").unwrap();
    assert_eq!(
        h.sent_texts(),
        [
            r#"{"type":"auth","token":"tok-0"}"#,
            r#"{"type":"subscribe","channel":"a"}"#,
            r#"{"type":"subscribe","channel":"b"}"#,
            r#"{"type":"subscribe","channel":"gone"}"#,
            r#"{"type":"unsubscribe","channel":"gone"}"#,
        ]
    );
    h.receive_text(|o| encode_subscribed(o, "a", 5, "E1", None));
    h.receive_text(|o| encode_message(o, "a", b"{}", "0-1-1", 6));
    h.receive_text(|o| encode_message(o, "a", b"{}", "0-1-1", 7));
    h.receive_text(|o| encode_gap(o, "a", 8, 9));
    h.receive_text(|o| encode_subscribed(o, "b", 0, "F1", None));
    let mut binary = Vec::new();
    encode_binary_message(&mut binary, "b", 1, b"xy").unwrap();
    h.receive(&server_frame(OpCode::Binary, &binary));
    let events = h.events();
    assert_eq!(events.len(), 6, "{events:?}");
    assert_eq!(
        events[5],
        Event::Binary {
            channel: "b".into(),
            seq: 1,
            payload: b"xy".to_vec()
        }
    );

    h.session.handle_eof(h.now);
    h.advance(CAP + JITTER);
    assert_eq!(
        h.open().last(),
        Some(&Event::Open {
            resubscribed_channels: 2
        })
    );
    assert_eq!(
        h.sent_texts(),
        [
            r#"{"type":"auth","token":"tok-1"}"#,
            r#"{"type":"subscribe","channel":"a","since":9,"epoch":"E1"}"#,
            r#"{"type":"subscribe","channel":"b","since":1,"epoch":"F1"}"#,
        ]
    );
}

#[test]
fn recovery_outcome_sets_the_next_resume_point() {
    let mut h = Harness::new(options());
    h.session.subscribe("a").unwrap();
    h.open();
    assert_eq!(h.sent_texts(), [r#"{"type":"subscribe","channel":"a"}"#]);
    h.receive_text(|o| encode_subscribed(o, "a", 5, "E1", None));
    // Recovered: the announced seq is not taken, the replayed messages advance the position.
    h.receive_text(|o| encode_subscribed(o, "a", 9, "E1", Some(true)));
    assert_eq!(h.session.channel_position("a").unwrap().seq, Some(5));
    h.receive_text(|o| encode_message(o, "a", b"1", "x", 6));
    assert_eq!(h.session.channel_position("a").unwrap().seq, Some(6));
    // Not recovered (relay restarted: new epoch): start over from the announced seq.
    h.receive_text(|o| encode_subscribed(o, "a", 2, "E2", Some(false)));
    let position = h.session.channel_position("a").unwrap();
    assert_eq!(
        (position.seq, position.epoch.as_deref()),
        (Some(2), Some("E2"))
    );
}

#[test]
fn a_full_event_queue_stops_consuming_input_until_drained() {
    let mut h = Harness::new(Options {
        events_max: 2,
        ..options()
    });
    h.open();
    let mut input = Vec::new();
    for seq in 1..=5 {
        let mut payload = Vec::new();
        encode_message(&mut payload, "a", b"0", "x", seq);
        input.extend(server_frame(OpCode::Text, &payload));
    }
    let mut seqs = Vec::new();
    let mut offset = 0;
    while offset < input.len() {
        offset += h.session.handle_bytes(h.now, &mut input[offset..]);
        assert!(h.session.events.len() <= 2);
        assert!(!h.session.wants_input() || offset == input.len());
        seqs.extend(h.events().into_iter().filter_map(|e| match e {
            Event::Message { seq, .. } => Some(seq),
            _ => None,
        }));
    }
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
}

#[test]
fn sends_need_an_open_connection_but_subscriptions_are_remembered() {
    let mut h = Harness::new(options());
    assert_eq!(h.session.publish("a", "1"), Err(SendError::NotOpen));
    assert_eq!(
        h.session.subscribe("bad name"),
        Err(SendError::InvalidChannel)
    );
    assert_eq!(h.session.subscribe("a"), Ok(()));
    let many = Options {
        subscriptions_max: 1,
        ..options()
    };
    let mut small = Harness::new(many);
    small.session.subscribe("a").unwrap();
    assert_eq!(
        small.session.subscribe("b"),
        Err(SendError::TooManySubscriptions)
    );
    assert_eq!(small.session.subscribe("a"), Ok(()));
}

#[test]
fn connect_timeout_counts_as_a_failed_attempt() {
    let mut h = Harness::new(options());
    h.transports();
    h.session.handle_connected(h.now);
    h.advance(h.session.options.connect_timeout);
    let events = h.events();
    assert_eq!(events[0], Event::Disconnected(Disconnect::HandshakeTimeout));
    assert_within_backoff(0, reconnect_delay(&events).1);
}
