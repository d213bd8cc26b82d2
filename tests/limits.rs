//! Hard limits against a live relay: each limit refuses with its status or close code, is
//! counted, and leaves the other clients unaffected.

mod common;

use std::time::Duration;

use common::{masked_frame, upgrade_request, Client, Raw};
use serde_json::json;
use wsrelay::Config;

fn status_line(raw: &mut Raw) -> String {
    raw.read_head()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn connection_rate_over_the_limit_gets_503_with_retry_after() {
    let config = Config {
        connect_rate_per_s: 4, // 2 per loop per second, burst 2
        ..Config::loopback_for_tests(2)
    };
    let server = common::start(config);
    let mut refused = 0;
    for _ in 0..12 {
        let mut raw = Raw::connect(server.local_addr());
        raw.send(upgrade_request("/").as_bytes());
        let head = raw.read_head();
        if head.starts_with("HTTP/1.1 503") {
            assert!(head.contains("Retry-After: "), "{head}");
            refused += 1;
        } else {
            assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        }
    }
    assert!(
        refused >= 12 - 4 - 2,
        "at most burst + refill admitted, refused {refused}"
    );
}

#[test]
fn connections_per_ip_over_the_limit_get_503_and_a_slot_frees_on_close() {
    let config = Config {
        connections_per_ip_max: 3,
        ..Config::loopback_for_tests(2)
    };
    let server = common::start(config);
    let addr = server.local_addr();
    let mut held: Vec<Client> = (0..3).map(|_| Client::connect(addr)).collect();
    let mut raw = Raw::connect(addr);
    raw.send(upgrade_request("/").as_bytes());
    assert!(status_line(&mut raw).starts_with("HTTP/1.1 503"));
    held[0].ping();
    drop(held.remove(0));
    // The freed slot is released when the relay reaps the connection: retry a bounded number
    // of times until it is.
    let admitted = (0..200).any(|_| {
        let mut r = Raw::connect(addr);
        r.send(upgrade_request("/").as_bytes());
        let ok = status_line(&mut r).starts_with("HTTP/1.1 101");
        if !ok {
            std::thread::sleep(Duration::from_millis(10));
        }
        ok
    });
    assert!(admitted);
}

#[test]
fn total_connections_over_the_limit_get_503() {
    let config = Config {
        connections_max: 2,
        ..Config::loopback_for_tests(1)
    };
    let server = common::start(config);
    let addr = server.local_addr();
    let _a = Client::connect(addr);
    let _b = Client::connect(addr);
    let mut c = Raw::connect(addr);
    c.send(upgrade_request("/").as_bytes());
    assert!(status_line(&mut c).starts_with("HTTP/1.1 503"));
}

#[test]
fn origin_outside_the_allow_list_gets_403() {
    let config = Config {
        origins_allowed: vec!["https://app.example".into()],
        ..Config::loopback_for_tests(1)
    };
    let server = common::start(config);
    let addr = server.local_addr();
    let with_origin = |o: &str| {
        upgrade_request("/").replace(
            "Host: localhost\r\n",
            &format!("Host: localhost\r\nOrigin: {o}\r\n"),
        )
    };
    let mut bad = Raw::connect(addr);
    bad.send(with_origin("https://evil.example").as_bytes());
    assert!(status_line(&mut bad).starts_with("HTTP/1.1 403"));
    let mut none = Raw::connect(addr);
    none.send(upgrade_request("/").as_bytes());
    assert!(status_line(&mut none).starts_with("HTTP/1.1 403"));
    let mut good = Raw::connect(addr);
    good.send(with_origin("https://app.example").as_bytes());
    assert!(status_line(&mut good).starts_with("HTTP/1.1 101"));
}

#[test]
fn message_rate_over_the_limit_gets_an_error_then_4101_and_others_are_unaffected() {
    let config = Config {
        messages_per_s_max: 5,
        ..Config::loopback_for_tests(1)
    };
    let server = common::start(config);
    let addr = server.local_addr();
    let mut sub = Client::connect(addr);
    sub.subscribe("r");
    let mut flooder = Raw::upgraded(addr, "/");
    assert_eq!(flooder.read_json()["type"], "connected");
    let publish = json!({"type": "message", "channel": "r", "content": 1}).to_string();
    let mut frames = Vec::new();
    for _ in 0..50 {
        frames.extend(masked_frame(0x81, publish.as_bytes()));
    }
    flooder.send(&frames);
    let mut saw_error = false;
    let code = loop {
        let f = flooder.read_frame();
        match f.opcode {
            1 => {
                let v: serde_json::Value = serde_json::from_slice(&f.payload).unwrap();
                assert_eq!(v["message"], "Rate limited: slow down");
                saw_error = true;
            }
            8 => break f.close_code(),
            op => panic!("opcode {op}"),
        }
    };
    assert!(saw_error);
    assert_eq!(code, Some(4101));
    // The subscriber got exactly the publishes within the burst, and is still served.
    for _ in 0..5 {
        assert_eq!(sub.recv()["content"], 1);
    }
    sub.ping();
}

#[test]
fn subscriptions_over_the_limit_get_an_error() {
    let config = Config {
        subscriptions_per_connection_max: 2,
        ..Config::loopback_for_tests(1)
    };
    let server = common::start(config);
    let mut c = Client::connect(server.local_addr());
    c.subscribe("a");
    c.subscribe("b");
    c.send(json!({"type": "subscribe", "channel": "c"}));
    assert_eq!(
        c.recv()["message"],
        "Too many subscriptions on this connection"
    );
    c.ping();
}
