//! Presence (`--presence-for`) over real sockets: the list on subscribe with
//! `"presence":true`, joins and leaves (unsubscribe and disconnect), asking again with
//! `{"type":"presence"}`, members and watchers on two event loops, exact counts under churn
//! (with the storm bound coalescing changes), `--presence-max-list` with the exact count, the
//! authenticated subject as `sub`, and the refusals with their counters.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{clients_on_every_loop, http_get, Client};
use serde_json::{json, Value};
use wsrelay::auth::ChannelPattern;
use wsrelay::pubsub::owner_of;
use wsrelay::{Config, ServerHandle};

fn relay_with_presence(loops: usize, tweak: impl FnOnce(&mut Config)) -> ServerHandle {
    let mut config = Config::loopback_for_tests(loops);
    config.presence_patterns = vec![ChannelPattern::parse("room.*").expect("pattern")];
    tweak(&mut config);
    common::start(config)
}

/// Subscribes with `"presence":true`: returns the list that follows `subscribed`.
fn watch(c: &mut Client, channel: &str) -> Value {
    c.send(json!({"type":"subscribe","channel":channel,"presence":true}));
    assert_eq!(c.recv()["type"], "subscribed");
    let list = c.recv();
    assert_eq!(list["type"], "presence", "{list}");
    list
}

fn ids(list: &Value) -> BTreeSet<String> {
    list["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_string())
        .collect()
}

fn member(c: &Client) -> Value {
    json!({"id": c.id, "sub": null})
}

fn metric(addr: SocketAddr, series: &str) -> f64 {
    let (_, body) = http_get(addr, "/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn wait_metric(addr: SocketAddr, series: &str, want: f64) {
    for _ in 0..200 {
        if metric(addr, series) == want {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{series} never reached {want}: {}", metric(addr, series));
}

#[test]
fn a_watcher_sees_joins_and_leaves_on_unsubscribe_and_disconnect() {
    let server = relay_with_presence(1, |_| {});
    let addr = server.local_addr();
    let mut watcher = Client::connect(addr);
    let list = watch(&mut watcher, "room.1");
    assert_eq!(
        list,
        json!({"type":"presence","channel":"room.1","count":1,"members":[member(&watcher)]})
    );
    let mut a = Client::connect(addr);
    a.subscribe("room.1");
    let join = json!({"type":"join","channel":"room.1","member":member(&a)});
    assert_eq!(watcher.recv(), join);
    let mut b = Client::connect(addr);
    b.subscribe("room.1");
    assert_eq!(watcher.recv()["member"], member(&b));
    a.send(json!({"type":"unsubscribe","channel":"room.1"}));
    assert_eq!(a.recv()["type"], "unsubscribed");
    let leave = json!({"type":"leave","channel":"room.1","member":member(&a)});
    assert_eq!(watcher.recv(), leave);
    let b_member = member(&b);
    drop(b); // disconnect without unsubscribing
    assert_eq!(
        watcher.recv(),
        json!({"type":"leave","channel":"room.1","member":b_member})
    );
    // Asking again, by anyone (a non-member too).
    let mut asker = Client::connect(addr);
    asker.send(json!({"type":"presence","channel":"room.1"}));
    assert_eq!(
        asker.recv(),
        json!({"type":"presence","channel":"room.1","count":1,"members":[member(&watcher)]})
    );
    wait_metric(addr, "wsrelay_presence_events_total{event=\"join\"}", 3.0);
    wait_metric(addr, "wsrelay_presence_events_total{event=\"leave\"}", 2.0);
}

#[test]
fn presence_spans_event_loops() {
    let server = relay_with_presence(2, |_| {});
    let addr = server.local_addr();
    let mut clients = clients_on_every_loop(addr, 2, 4);
    // A channel owned by loop 1, watched from loop 0 and joined from both loops.
    let channel = (0..100)
        .map(|i| format!("room.{i}"))
        .find(|c| owner_of(c, 2) == 1)
        .expect("a channel of loop 1");
    let at = clients.iter().position(|c| c.loop_id() == 0).unwrap();
    let mut watcher = clients.remove(at);
    watch(&mut watcher, &channel);
    let mut expected = BTreeSet::from([watcher.id.clone()]);
    for c in clients.iter_mut() {
        c.subscribe(&channel);
        let join = watcher.recv();
        assert_eq!(
            (join["type"].as_str(), &join["member"]),
            (Some("join"), &member(c))
        );
        expected.insert(c.id.clone());
    }
    // A second watcher on loop 1 sees the same list.
    let other = clients.iter_mut().find(|c| c.loop_id() == 1).unwrap();
    other.send(json!({"type":"subscribe","channel":channel,"presence":true}));
    assert_eq!(other.recv()["type"], "subscribed");
    let list = other.recv();
    assert_eq!(list["count"], expected.len());
    assert_eq!(ids(&list), expected);
    for c in clients.drain(..) {
        let id = c.id.clone();
        drop(c);
        let leave = watcher.recv();
        assert_eq!(
            (leave["type"].as_str(), &leave["member"]["id"]),
            (Some("leave"), &json!(id))
        );
    }
    watcher.send(json!({"type":"presence","channel":channel}));
    assert_eq!(watcher.recv()["count"], 1);
}

#[test]
fn counts_stay_exact_under_churn_from_two_loops() {
    let server = relay_with_presence(2, |_| {});
    let addr = server.local_addr();
    let mut watcher = Client::connect(addr);
    watch(&mut watcher, "room.churn");
    let rounds = 40;
    let stayed = churn_from_four_threads(addr, rounds);
    let mut expected: BTreeSet<String> = stayed.iter().map(|c| c.id.clone()).collect();
    expected.insert(watcher.id.clone());
    // Counts are exact at once.
    let mut asker = Client::connect(addr);
    let count = || {
        let mut asker = Client::connect(addr);
        asker.send(json!({"type":"presence","channel":"room.churn"}));
        asker.recv()["count"].as_u64().expect("count")
    };
    // Leaves of dropped connections are told when the relay reads their close: wait for them
    // (bounded by a count), then the count is exact.
    for _ in 0..200 {
        if count() == expected.len() as u64 {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    asker.send(json!({"type":"presence","channel":"room.churn"}));
    let list = asker.recv();
    assert_eq!(list["count"], expected.len());
    assert_eq!(ids(&list), expected);
    converge_watcher_view(&mut watcher, &expected);
    let joins = 1.0 + 4.0 * f64::from(rounds);
    wait_metric(addr, "wsrelay_presence_events_total{event=\"join\"}", joins);
}

/// Four threads each join `room.churn` `rounds` times, and of every three joiners one
/// unsubscribes, one disconnects and one stays. Returns the ones that stayed.
fn churn_from_four_threads(addr: SocketAddr, rounds: u32) -> Vec<Client> {
    let workers: Vec<_> = (0..4)
        .map(|w| {
            std::thread::spawn(move || {
                let mut stay = Vec::new();
                for r in 0..rounds {
                    let mut c = Client::connect(addr);
                    c.subscribe("room.churn");
                    match r % 3 {
                        0 => {
                            c.send(json!({"type":"unsubscribe","channel":"room.churn"}));
                            assert_eq!(c.recv()["type"], "unsubscribed");
                        }
                        1 => drop(c),
                        _ => stay.push(c),
                    }
                }
                let _ = w;
                stay
            })
        })
        .collect();
    workers
        .into_iter()
        .flat_map(|w| w.join().expect("worker"))
        .collect()
}

/// The watcher's view, rebuilt from its list and the changes, converges on the members
/// (changes held by the storm bound arrive when their window ends); any other message fails.
fn converge_watcher_view(watcher: &mut Client, expected: &BTreeSet<String>) {
    let mut view = BTreeSet::from([watcher.id.clone()]);
    while view != *expected {
        let m = watcher.recv();
        let id = m["member"]["id"].as_str().map(str::to_string);
        match (m["type"].as_str(), id) {
            (Some("join"), Some(id)) => {
                view.insert(id);
            }
            (Some("leave"), Some(id)) => {
                view.remove(&id);
            }
            (Some("presence"), _) => view = ids(&m),
            other => panic!("unexpected {other:?}: {m}"),
        }
    }
}

#[test]
fn the_list_is_capped_and_the_count_stays_exact() {
    let server = relay_with_presence(1, |c| c.presence_list_max = 3);
    let addr = server.local_addr();
    let mut members: Vec<Client> = (0..5).map(|_| Client::connect(addr)).collect();
    for m in members.iter_mut() {
        m.subscribe("room.full");
    }
    let mut watcher = Client::connect(addr);
    let list = watch(&mut watcher, "room.full");
    assert_eq!(list["count"], 6);
    assert_eq!(list["members"].as_array().unwrap().len(), 3);
    wait_metric(
        addr,
        "wsrelay_presence_events_total{event=\"list_capped\"}",
        1.0,
    );
}

#[test]
fn presence_is_refused_where_it_is_off_and_the_subscription_goes_on() {
    let server = relay_with_presence(1, |_| {});
    let addr = server.local_addr();
    let mut c = Client::connect(addr);
    c.send(json!({"type":"subscribe","channel":"md.x","presence":true}));
    let mut replies = [c.recv(), c.recv()];
    replies.sort_by_key(|v| v["type"].as_str().unwrap_or_default().to_string());
    assert_eq!(
        replies[0],
        json!({"type":"error","message":"Presence is not enabled on channel: md.x"})
    );
    assert_eq!(replies[1]["type"], "subscribed");
    c.send(json!({"type":"presence","channel":"md.x"}));
    assert_eq!(
        c.recv(),
        json!({"type":"error","message":"Presence is not enabled on channel: md.x"})
    );
    c.send(json!({"type":"subscribe","channel":"room.1","presence":"yes"}));
    assert_eq!(
        c.recv(),
        json!({"type":"error","message":"Invalid field: presence (expected true or false)"})
    );
}

#[test]
fn sub_is_the_authenticated_subject() {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    use wsrelay::auth::{AuthConfig, Verifier};
    const SECRET: &[u8] = b"test-secret-0123456789abcdef-0123456789";
    let verifier = Verifier::new(&AuthConfig {
        hs256_secret: Some(SECRET.to_vec()),
        ..AuthConfig::default()
    })
    .unwrap()
    .expect("auth on");
    let server = relay_with_presence(1, |c| c.auth = Some(Arc::new(verifier)));
    let exp = wsrelay::clock::Clock::unix_now_s() + 60;
    let mut c = Client::connect(server.local_addr());
    let claims = json!({"sub": "alice", "exp": exp, "channels": {"subscribe": ["room.*"]}});
    let key = EncodingKey::from_secret(SECRET).unwrap();
    let token = encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap();
    c.send(json!({"type":"auth","token":token}));
    assert_eq!(c.recv()["type"], "authenticated");
    let list = watch(&mut c, "room.a");
    assert_eq!(list["members"], json!([{"id": c.id, "sub": "alice"}]));
}

#[test]
fn a_join_leave_storm_is_coalesced_and_counted() {
    let server = relay_with_presence(1, |_| {});
    let addr = server.local_addr();
    let mut watcher = Client::connect(addr);
    watch(&mut watcher, "room.storm");
    let mut flapper = Client::connect(addr);
    // 200 joins and leaves written at once: the relay reads them in one go, far faster than
    // its 32 changes per 100 ms window, so most are held and cancel out.
    let pairs = 200;
    for _ in 0..pairs {
        for kind in ["subscribe", "unsubscribe"] {
            let text = json!({"type": kind, "channel": "room.storm"}).to_string();
            flapper.ws.write(tungstenite::Message::text(text)).unwrap();
        }
    }
    flapper.ws.flush().unwrap();
    let mut last_ack = 0;
    while last_ack < pairs {
        if flapper.recv()["type"] == "unsubscribed" {
            last_ack += 1;
        }
    }
    // Every change is told alone, or cancelled by its opposite (counted), or told when its
    // window ends: frames + coalesced = changes. Wait for the counter to settle first.
    let series = "wsrelay_presence_events_total{event=\"coalesced\"}";
    let mut coalesced = -1.0;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(200));
        let now = metric(addr, series);
        if now == coalesced && now > 0.0 {
            break;
        }
        coalesced = now;
    }
    assert!(coalesced > 0.0, "the storm was coalesced");
    let changes = 2 * pairs;
    let frames = changes - coalesced as u32;
    let mut view = BTreeSet::from([watcher.id.clone()]);
    for _ in 0..frames {
        let m = watcher.recv();
        let id = m["member"]["id"].as_str().map(str::to_string);
        match (m["type"].as_str(), id) {
            (Some("join"), Some(id)) => view.insert(id),
            (Some("leave"), Some(id)) => view.remove(&id),
            other => panic!("unexpected {other:?}"),
        };
    }
    assert_eq!(view, BTreeSet::from([watcher.id.clone()]));
    // Nothing more: the next message is the answer to a question asked now.
    watcher.send(json!({"type":"presence","channel":"room.storm"}));
    assert_eq!(watcher.recv()["count"], 1);
}

#[test]
fn an_unsubscribe_before_the_answer_still_pairs_its_join_and_leave() {
    let server = relay_with_presence(2, |_| {});
    let addr = server.local_addr();
    let mut clients = clients_on_every_loop(addr, 2, 4);
    for _ in 0..64 {
        if clients.iter().filter(|c| c.loop_id() == 0).count() >= 2 {
            break;
        }
        clients.push(Client::connect(addr));
    }
    // A channel owned by loop 1; the flapper sits on loop 0, so its subscribe waits for the
    // owner's answer while the unsubscribe arrives.
    let channel = (0..100)
        .map(|i| format!("room.{i}"))
        .find(|c| owner_of(c, 2) == 1)
        .expect("a channel of loop 1");
    let at = clients.iter().position(|c| c.loop_id() == 0).unwrap();
    let mut flapper = clients.remove(at);
    let at = clients.iter().position(|c| c.loop_id() == 0).unwrap();
    let mut watcher = clients.remove(at);
    watch(&mut watcher, &channel);
    for _ in 0..20 {
        let sub = json!({"type":"subscribe","channel":channel,"presence":true}).to_string();
        let unsub = json!({"type":"unsubscribe","channel":channel}).to_string();
        flapper.ws.write(tungstenite::Message::text(sub)).unwrap();
        flapper.ws.write(tungstenite::Message::text(unsub)).unwrap();
    }
    flapper.ws.flush().unwrap();
    // Only the first answer finds the subscription (it is then unsubscribed); the others are
    // abandoned. Either way the flapper ends up not subscribed, and its one join has its leave:
    // a leave without a join would also drop the watcher count of its loop (the bug this
    // pins), and the watcher below would never hear of `late`.
    assert_eq!(flapper.recv()["type"], "subscribed");
    assert_eq!(flapper.recv()["type"], "unsubscribed");
    // The watcher on the flapper's loop still gets changes, and the count is exact.
    let mut late = clients.remove(0);
    late.subscribe(&channel);
    let mut asker = Client::connect(addr);
    for _ in 0..200 {
        asker.send(json!({"type":"presence","channel":channel}));
        if asker.recv()["count"] == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    asker.send(json!({"type":"presence","channel":channel}));
    let list = asker.recv();
    assert_eq!(list["count"], 2);
    assert_eq!(
        ids(&list),
        BTreeSet::from([watcher.id.clone(), late.id.clone()])
    );
    let late_member = member(&late);
    loop {
        let m = watcher.recv();
        if m["type"] == "join" && m["member"] == late_member {
            break;
        }
    }
}
