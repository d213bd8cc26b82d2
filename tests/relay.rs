//! The pub/sub protocol against a live relay with two event loops: subscribe, publish,
//! unsubscribe, seq numbering, order, errors. Clients are the independent `tungstenite` client.

mod common;

use common::{clients_on_every_loop, relay, Client};
use serde_json::json;
use tungstenite::Message;

#[test]
fn connected_message_carries_an_opaque_id() {
    let server = relay(2);
    let a = Client::connect(server.local_addr());
    let b = Client::connect(server.local_addr());
    assert!(!a.id.is_empty());
    assert_ne!(a.id, b.id);
    assert!(!a.id.contains("127.0.0.1"));
}

#[test]
fn publish_reaches_every_other_subscriber_across_loops_with_seq() {
    let server = relay(2);
    let mut clients = clients_on_every_loop(server.local_addr(), 2, 16);
    for c in clients.iter_mut() {
        c.subscribe("md.BTC-USD");
    }
    let (publisher, others) = clients.split_first_mut().unwrap();
    publisher.publish("md.BTC-USD", json!({"px": 101.5, "qty": [1, 2]}));
    for c in others.iter_mut() {
        let m = c.recv();
        assert_eq!(
            m,
            json!({"type": "message", "channel": "md.BTC-USD",
                   "content": {"px": 101.5, "qty": [1, 2]}, "from": publisher.id, "seq": 1})
        );
    }
    // The publisher did not get its own message: its next reply is the pong.
    publisher.ping();
}

#[test]
fn content_is_forwarded_verbatim() {
    let server = relay(1);
    let mut a = Client::connect(server.local_addr());
    let mut b = Client::connect(server.local_addr());
    b.subscribe("c");
    a.send_text(r#"{"type":"message","channel":"c","content": [1.50, "x\u0041", {"k" : null}] }"#);
    let Message::Text(t) = b.ws.read().unwrap() else {
        panic!("text expected")
    };
    let expected = format!(
        r#"{{"type":"message","channel":"c","content":[1.50, "x\u0041", {{"k" : null}}],"from":"{}","seq":1}}"#,
        a.id
    );
    assert_eq!(t.as_str(), expected);
}

#[test]
fn publisher_need_not_be_subscribed_and_subscribed_publisher_is_skipped() {
    let server = relay(2);
    let mut clients = clients_on_every_loop(server.local_addr(), 2, 12);
    for c in clients.iter_mut().skip(1) {
        c.subscribe("room.1");
    }
    clients[0].publish("room.1", json!("from outside"));
    clients[1].publish("room.1", json!("from inside"));
    for c in clients.iter_mut().skip(2) {
        // Two publishers: each one's order is kept, but not their interleaving.
        let mut got = [c.recv()["content"].clone(), c.recv()["content"].clone()];
        got.sort_by_key(|v| v.to_string());
        assert_eq!(got, [json!("from inside"), json!("from outside")]);
    }
    assert_eq!(clients[1].recv()["content"], "from outside");
    clients[1].ping();
}

#[test]
fn seq_is_gap_free_per_channel_with_publishers_on_both_loops() {
    let server = relay(2);
    let mut clients = clients_on_every_loop(server.local_addr(), 2, 12);
    let mut sub = Client::connect(server.local_addr());
    sub.subscribe("seq.test");
    sub.subscribe("seq.other");
    let n = 50;
    for i in 0..n {
        for (k, c) in clients.iter_mut().enumerate() {
            c.publish("seq.test", json!([k, i]));
        }
    }
    clients[0].publish("seq.other", json!("x"));
    let total = n * clients.len();
    let mut last_by_publisher = vec![None; clients.len()];
    let (mut next_seq, mut other_seen) = (1u64, false);
    // Channels are numbered independently; seq.other may arrive anywhere among seq.test.
    while next_seq <= total as u64 || !other_seen {
        let m = sub.recv();
        if m["channel"] == "seq.other" {
            assert!(!other_seen);
            assert_eq!(m["seq"], 1);
            other_seen = true;
            continue;
        }
        assert_eq!(m["channel"], "seq.test");
        assert_eq!(m["seq"], next_seq, "gap-free numbering");
        next_seq += 1;
        let k = m["content"][0].as_u64().unwrap() as usize;
        let i = m["content"][1].as_u64().unwrap();
        assert_eq!(
            last_by_publisher[k].map_or(0, |l: u64| l + 1),
            i,
            "per-publisher order"
        );
        last_by_publisher[k] = Some(i);
    }
    sub.ping();
}

#[test]
fn subscribed_reports_the_current_seq() {
    let server = relay(2);
    let mut a = Client::connect(server.local_addr());
    let mut b = Client::connect(server.local_addr());
    a.subscribe("s");
    for _ in 0..3 {
        b.publish("s", json!(1));
    }
    for _ in 0..3 {
        a.recv();
    }
    let mut c = Client::connect(server.local_addr());
    let reply = c.subscribe("s");
    assert_eq!(reply["seq"], 3);
    assert!(reply["epoch"].as_str().is_some_and(|e| !e.is_empty()));
}

#[test]
fn unsubscribe_stops_deliveries() {
    // One loop: a delivery to b, if any, is queued before b's pong, so the test can fail.
    let server = relay(1);
    let mut a = Client::connect(server.local_addr());
    let mut b = Client::connect(server.local_addr());
    b.subscribe("u");
    b.send(json!({"type": "unsubscribe", "channel": "u"}));
    assert_eq!(b.recv(), json!({"type": "unsubscribed", "channel": "u"}));
    a.publish("u", json!("lost"));
    a.ping();
    b.ping(); // Nothing arrived before the pong.
}

#[test]
fn order_holds_for_many_messages_to_many_subscribers() {
    let server = relay(2);
    let mut subs = clients_on_every_loop(server.local_addr(), 2, 20);
    for s in subs.iter_mut() {
        s.subscribe("bulk");
    }
    let mut publisher = Client::connect(server.local_addr());
    for i in 0..500 {
        publisher.publish("bulk", json!(i));
    }
    for s in subs.iter_mut() {
        for i in 0..500 {
            let m = s.recv();
            assert_eq!(m["content"], i);
            assert_eq!(m["seq"], i + 1);
        }
    }
}

#[test]
fn application_ping_gets_pong() {
    let server = relay(1);
    let mut a = Client::connect(server.local_addr());
    a.ping();
}

#[test]
fn invalid_json_gets_an_error_and_the_connection_keeps_working() {
    let server = relay(1);
    let mut a = Client::connect(server.local_addr());
    a.send_text("{not json");
    assert_eq!(
        a.recv(),
        json!({"type": "error", "message": "Invalid JSON"})
    );
    a.subscribe("still.works");
}

#[test]
fn bad_commands_get_errors_and_change_nothing() {
    let server = relay(1);
    let mut a = Client::connect(server.local_addr());
    let bad = [
        json!({"type": "dance"}),
        json!({"channel": "x"}),
        json!({"type": 5}),
        json!({"type": "subscribe"}),
        json!({"type": "subscribe", "channel": 7}),
        json!({"type": "subscribe", "channel": ""}),
        json!({"type": "subscribe", "channel": "has space"}),
        json!({"type": "subscribe", "channel": "x".repeat(129)}),
        json!({"type": "message", "channel": "x"}),
        json!([1, 2, 3]),
    ];
    for cmd in bad {
        a.send(cmd.clone());
        let reply = a.recv();
        assert_eq!(reply["type"], "error", "{cmd} → {reply}");
        assert!(
            reply["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{reply}"
        );
    }
    a.ping();
}

#[test]
fn binary_publish_is_delivered_with_seq() {
    let server = relay(2);
    let mut clients = clients_on_every_loop(server.local_addr(), 2, 8);
    for c in clients.iter_mut().skip(1) {
        c.subscribe("bin");
    }
    let mut frame = vec![0x01, 3];
    frame.extend_from_slice(b"bin");
    frame.extend_from_slice(&[9, 8, 7]);
    clients[0].ws.send(Message::binary(frame)).unwrap();
    for c in clients.iter_mut().skip(1) {
        let Message::Binary(b) = c.ws.read().unwrap() else {
            panic!("binary expected")
        };
        let mut want = vec![0x01, 3];
        want.extend_from_slice(b"bin");
        want.extend_from_slice(&1u64.to_be_bytes());
        want.extend_from_slice(&[9, 8, 7]);
        assert_eq!(b.as_ref(), want.as_slice());
    }
}

#[test]
fn malformed_binary_gets_an_error_and_the_connection_stays() {
    let server = relay(1);
    let mut a = Client::connect(server.local_addr());
    for bad in [vec![], vec![0x09, 1, b'x'], vec![0x01, 10, b'a']] {
        a.ws.send(Message::binary(bad)).unwrap();
        assert_eq!(a.recv()["type"], "error");
    }
    a.ping();
}

#[test]
fn a_closed_subscriber_does_not_disturb_the_others() {
    let server = relay(2);
    let mut subs = clients_on_every_loop(server.local_addr(), 2, 10);
    for s in subs.iter_mut() {
        s.subscribe("z");
    }
    let gone = subs.remove(0);
    drop(gone);
    let mut p = Client::connect(server.local_addr());
    for i in 0..20 {
        p.publish("z", json!(i));
    }
    for s in subs.iter_mut() {
        for i in 0..20 {
            assert_eq!(s.recv()["content"], i);
        }
    }
}
