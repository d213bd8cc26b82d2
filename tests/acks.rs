//! Publish acknowledgements on a single node: a publish with an `id` is answered with its
//! `seq` once numbered (JSON and binary), also when the channel's owner is another loop; an
//! unnumbered publish (nobody subscribed) is acknowledged with `seq: null`; a bad `id` is an
//! error; a publish without `id` is not answered.

mod common;

use common::{clients_on_every_loop, Client};
use serde_json::{json, Value};
use tungstenite::protocol::Message;
use wsrelay::pubsub::owner_of;

fn publish_with_id(c: &mut Client, channel: &str, content: Value, id: &str) {
    c.send(json!({"type": "message", "channel": channel, "content": content, "id": id}));
}

#[test]
fn acks_carry_the_seq_the_subscribers_see_in_order() {
    let server = common::relay(1);
    let mut sub = Client::connect(server.local_addr());
    sub.subscribe("px");
    let mut publisher = Client::connect(server.local_addr());
    for (n, id) in ["a-1", "a-2", "a \"3\""].iter().enumerate() {
        publish_with_id(&mut publisher, "px", json!({"n": n}), id);
    }
    for (n, id) in ["a-1", "a-2", "a \"3\""].iter().enumerate() {
        let seq = n as u64 + 1;
        assert_eq!(
            publisher.recv(),
            json!({"type": "ack", "id": id, "channel": "px", "seq": seq})
        );
        let got = sub.recv();
        assert_eq!(
            (got["seq"].as_u64(), &got["content"]),
            (Some(seq), &json!({"n": n}))
        );
    }
}

#[test]
fn acks_come_back_from_the_owner_loop() {
    let server = common::relay(2);
    let clients = clients_on_every_loop(server.local_addr(), 2, 4);
    let (mut publisher, others): (Vec<_>, Vec<_>) =
        clients.into_iter().partition(|c| c.loop_id() == 0);
    let mut publisher = publisher.remove(0);
    let mut sub = others.into_iter().next().expect("a client on loop 1");
    // A channel owned by loop 1: the publish travels to it and the ack travels back.
    let channel = (0..100)
        .map(|i| format!("remote.{i}"))
        .find(|c| owner_of(c, 2) == 1)
        .expect("a channel of loop 1");
    sub.subscribe(&channel);
    publish_with_id(&mut publisher, &channel, json!(1), "x");
    publish_with_id(&mut publisher, &channel, json!(2), "y");
    assert_eq!(
        publisher.recv(),
        json!({"type":"ack","id":"x","channel":channel,"seq":1})
    );
    assert_eq!(
        publisher.recv(),
        json!({"type":"ack","id":"y","channel":channel,"seq":2})
    );
    assert_eq!(sub.recv()["seq"], 1);
    assert_eq!(sub.recv()["seq"], 2);
}

#[test]
fn a_publish_nobody_receives_is_acknowledged_unnumbered() {
    let server = common::relay(1);
    let mut publisher = Client::connect(server.local_addr());
    publish_with_id(&mut publisher, "empty", json!(1), "q");
    assert_eq!(
        publisher.recv(),
        json!({"type":"ack","id":"q","channel":"empty","seq":null})
    );
}

#[test]
fn bad_ids_are_errors_and_no_id_means_no_answer() {
    let server = common::relay(1);
    let mut sub = Client::connect(server.local_addr());
    sub.subscribe("c");
    let mut publisher = Client::connect(server.local_addr());
    let long = "i".repeat(65);
    for id in [json!(""), json!(long), json!(7), json!({"a": 1})] {
        publisher.send(json!({"type":"message","channel":"c","content":1,"id":id}));
        let e = publisher.recv();
        assert_eq!(e["type"], "error", "{id}");
        assert_eq!(
            e["message"],
            "Invalid field: id (expected a string of 1-64 bytes)"
        );
    }
    publisher.publish("c", json!("no id"));
    publisher.ping(); // the next message is the pong: no ack was sent
    let got = sub.recv();
    assert_eq!(
        (got["seq"].as_u64(), &got["content"]),
        (Some(1), &json!("no id"))
    );
}

#[test]
fn binary_publishes_get_binary_acks() {
    let server = common::relay(1);
    let mut sub = Client::connect(server.local_addr());
    sub.subscribe("bin");
    let mut publisher = Client::connect(server.local_addr());
    // [0x04][L]["bin"][I]["k1"][payload]
    let mut frame = vec![0x04, 3];
    frame.extend_from_slice(b"bin");
    frame.push(2);
    frame.extend_from_slice(b"k1");
    frame.extend_from_slice(&[0xde, 0xad]);
    publisher.ws.send(Message::binary(frame)).expect("send");
    let ack = match publisher.ws.read().expect("ack") {
        Message::Binary(b) => b.to_vec(),
        other => panic!("expected a binary ack, got {other:?}"),
    };
    let mut expected = vec![0x04, 3];
    expected.extend_from_slice(b"bin");
    expected.push(2);
    expected.extend_from_slice(b"k1");
    expected.extend_from_slice(&1u64.to_be_bytes());
    assert_eq!(ack, expected);
    match sub.ws.read().expect("delivery") {
        Message::Binary(b) => {
            let mut want = vec![0x01, 3];
            want.extend_from_slice(b"bin");
            want.extend_from_slice(&1u64.to_be_bytes());
            want.extend_from_slice(&[0xde, 0xad]);
            assert_eq!(b.to_vec(), want);
        }
        other => panic!("expected a binary delivery, got {other:?}"),
    }
    // An id length past the payload is an error, and nothing is published.
    publisher
        .ws
        .send(Message::binary(vec![0x04, 3, b'b', b'i', b'n', 9, b'x']))
        .expect("send");
    let e = common::read_json(&mut publisher.ws);
    assert_eq!(
        e["message"],
        "Invalid field: id (expected a string of 1-64 bytes)"
    );
}
