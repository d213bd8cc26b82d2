//! The mesh's bounds and drop reports, against a peer whose inbox is full.

use super::*;
use crate::pubsub::presence::Member;
use crate::runtime::deliver::Batch;
use crossbeam_channel::bounded;

const LEN_MAX: usize = 16;

/// Loop 0's side of a 2-loop mesh whose peer (loop 1) has a full inbox of one message.
struct FullPeer {
    mesh: Mesh,
    own_tx: Sender<LoopMsg>,
    peer_rx: Receiver<LoopMsg>,
    _poll: mio::Poll,
}

fn full_peer() -> FullPeer {
    let poll = mio::Poll::new().unwrap();
    let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0)).unwrap());
    let (own_tx, own_rx) = bounded(LEN_MAX);
    let (peer_tx, peer_rx) = bounded(1);
    let peers = vec![
        PeerHandle {
            tx: own_tx.clone(),
            waker: waker.clone(),
        },
        PeerHandle { tx: peer_tx, waker },
    ];
    let mut mesh = Mesh::new(0, peers, own_rx, LEN_MAX);
    assert_eq!(mesh.send(1, uninterest("fill")), MeshSend::Accepted);
    FullPeer {
        mesh,
        own_tx,
        peer_rx,
        _poll: poll,
    }
}

impl FullPeer {
    fn parked(&self) -> usize {
        self.mesh.overflow[1].len()
    }

    /// Sends `n` messages made by `make`; returns how many were accepted.
    fn send_n(&mut self, n: usize, make: impl Fn(usize) -> LoopMsg) -> usize {
        (0..n)
            .filter(|&i| self.mesh.send(1, make(i)) == MeshSend::Accepted)
            .count()
    }

    /// Everything the peer receives while it reads until nothing more comes.
    fn drain_peer(&mut self) -> Vec<LoopMsg> {
        let mut got = Vec::new();
        loop {
            while let Ok(m) = self.peer_rx.try_recv() {
                got.push(m);
            }
            if !self.mesh.retry_overflow() && self.peer_rx.is_empty() {
                return got;
            }
        }
    }
}

fn uninterest(channel: &str) -> LoopMsg {
    LoopMsg::Uninterest {
        channel: Arc::from(channel),
        from: 0,
    }
}

fn conn(i: usize) -> ConnRef {
    ConnRef {
        loop_id: 0,
        conn: ConnId::new(i as u32, 1),
    }
}

fn publish(i: usize, ack: bool) -> LoopMsg {
    LoopMsg::Publish {
        channel: Arc::from("a"),
        from: Arc::from("p"),
        origin: conn(i),
        body: PublishBody::Binary(Bytes::new()),
        read_at_ns: 0,
        ack: ack.then(|| Box::from(&b"id"[..])),
    }
}

fn deliver(channel: &str, first_seq: u64, len: usize) -> LoopMsg {
    let frames = (0..len)
        .map(|_| crate::runtime::deliver::FrameMeta {
            start: 0,
            len: 0,
            origin: None,
            read_at_ns: 0,
            conflation_key: 0,
        })
        .collect();
    LoopMsg::Deliver {
        batch: Arc::new(Batch {
            channel: Arc::from(channel),
            first_seq,
            bytes: Bytes::new(),
            frames,
            compressed: Default::default(),
        }),
    }
}

fn epoch_reset(seq: u64) -> LoopMsg {
    LoopMsg::EpochReset {
        channel: Arc::from("a"),
        epoch: Arc::from(format!("e{seq}")),
        seq,
    }
}

fn join(i: usize) -> LoopMsg {
    LoopMsg::Presence(PresenceMsg::Join {
        channel: Arc::from("room"),
        member: conn(i),
        desc: Member {
            id: Arc::from(format!("0-{i}-1")),
            sub: None,
        },
        watch: true,
    })
}

fn leave(i: usize) -> LoopMsg {
    LoopMsg::Presence(PresenceMsg::Leave {
        channel: Arc::from("room"),
        member: conn(i),
        watched: true,
    })
}

#[test]
fn data_and_uninterest_are_dropped_beyond_the_bound() {
    let kinds: [&dyn Fn(usize) -> LoopMsg; 4] = [
        &|i| publish(i, false),
        &|i| deliver("a", i as u64 + 1, 1),
        &|_| uninterest("a"),
        &|_| {
            LoopMsg::Presence(PresenceMsg::Changes {
                channel: Arc::from("room"),
                bytes: Bytes::new(),
                frames: 1,
            })
        },
    ];
    for make in kinds {
        let mut p = full_peer();
        assert_eq!(p.send_n(2 * LEN_MAX, make), LEN_MAX);
        assert_eq!(p.parked(), LEN_MAX);
    }
}

#[test]
fn requests_and_acknowledged_publishes_are_capped_in_flight_at_the_source() {
    let mut p = full_peer();
    for _ in 0..LEN_MAX {
        assert!(p.mesh.may_request_subscribe());
        let msg = LoopMsg::Presence(PresenceMsg::Query {
            channel: Arc::from("room"),
            conn: conn(0),
            watch: false,
        });
        assert_eq!(p.mesh.send(1, msg), MeshSend::Accepted);
    }
    assert!(
        !p.mesh.may_request_subscribe(),
        "answers stay within the cap"
    );

    let mut p = full_peer();
    assert_eq!(p.send_n(2 * LEN_MAX, |i| publish(i, true)), LEN_MAX);
    assert_eq!(p.parked(), LEN_MAX, "the owners' acks are bounded alike");
    let acks = (0..2)
        .map(|i| crate::runtime::ack::Ack {
            conn: conn(i).conn,
            id: Box::from(&b"id"[..]),
            seq: Some(i as u64 + 1),
            binary: false,
        })
        .collect();
    let channel = Arc::from("a");
    p.own_tx.send(LoopMsg::Acks { channel, acks }).unwrap();
    assert!(p.mesh.try_recv().is_some());
    assert_eq!(p.drain_peer().len(), 1 + LEN_MAX, "the peer has room again");
    assert_eq!(
        p.send_n(3, |i| publish(i, true)),
        2,
        "two were acknowledged"
    );
    assert_eq!(p.mesh.send(1, publish(0, false)), MeshSend::Accepted);
}

#[test]
fn a_newer_epoch_reset_supersedes_the_parked_one_and_its_deliveries() {
    let mut p = full_peer();
    assert_eq!(p.mesh.send(1, deliver("a", 1, 1)), MeshSend::Accepted);
    assert_eq!(p.mesh.send(1, deliver("b", 1, 1)), MeshSend::Accepted);
    for seq in 0..2 * LEN_MAX as u64 {
        assert_eq!(p.mesh.send(1, epoch_reset(seq * 10)), MeshSend::Accepted);
        p.mesh.send(1, deliver("a", seq * 10 + 1, 1));
    }
    // The deliveries before the first reset, the newest reset and its delivery.
    assert_eq!(p.parked(), 4);
    assert!(p.mesh.take_merged() > 0, "counted");
    let got = p.drain_peer();
    let seqs: Vec<(String, u64)> = got
        .iter()
        .filter_map(|m| match m {
            LoopMsg::Deliver { batch } => Some((batch.channel.to_string(), batch.first_seq)),
            LoopMsg::EpochReset { seq, .. } => Some(("reset".into(), *seq)),
            _ => None,
        })
        .collect();
    let last = (2 * LEN_MAX as u64 - 1) * 10;
    let expected = [("a", 1), ("b", 1), ("reset", last), ("a", last + 1)];
    let expected: Vec<(String, u64)> = expected.iter().map(|&(c, s)| (c.into(), s)).collect();
    assert_eq!(seqs, expected);
}

#[test]
fn a_leave_cancels_the_parked_join_of_its_member() {
    let mut p = full_peer();
    for i in 0..2 * LEN_MAX {
        assert_eq!(p.mesh.send(1, join(i)), MeshSend::Accepted);
        assert_eq!(p.mesh.send(1, leave(i)), MeshSend::Accepted);
    }
    assert_eq!(p.parked(), 0);
    assert_eq!(p.mesh.take_merged(), 4 * LEN_MAX as u64);
    // One membership: at most its Leave and a new Join stay parked.
    for _ in 0..2 * LEN_MAX {
        p.mesh.send(1, join(7));
        p.mesh.send(1, leave(7));
    }
    p.mesh.send(1, leave(8));
    p.mesh.send(1, join(8));
    assert_eq!(p.parked(), 2, "a leave whose join was delivered is kept");
}

#[test]
fn dropped_deliveries_are_reported_merged_once_the_overflow_drains() {
    let mut p = full_peer();
    for seq in 1..=LEN_MAX as u64 {
        assert_eq!(p.mesh.send(1, deliver("a", seq, 1)), MeshSend::Accepted);
    }
    assert_eq!(p.mesh.send(1, deliver("a", 17, 2)), MeshSend::Dropped);
    assert_eq!(p.mesh.send(1, deliver("a", 19, 3)), MeshSend::Dropped);
    assert_eq!(p.mesh.send(1, deliver("b", 5, 1)), MeshSend::Dropped);
    let got = p.drain_peer();
    assert_eq!(
        got.len(),
        1 + LEN_MAX + 2,
        "the filler, the parked, two gaps"
    );
    let mut gaps: Vec<(String, u64, u64)> = got
        .iter()
        .filter_map(|m| match m {
            LoopMsg::Gap { channel, gap, .. } => Some((channel.to_string(), gap.from, gap.to)),
            _ => None,
        })
        .collect();
    gaps.sort();
    assert_eq!(gaps, [("a".into(), 17, 21), ("b".into(), 5, 5)]);
}

fn tick(channel: &str, first_seq: u64, last_seq: u64) -> LoopMsg {
    LoopMsg::Tick {
        batch: Arc::new(crate::runtime::tick::TickBatch {
            channel: Arc::from(channel),
            first_seq,
            last_seq,
            bytes: Bytes::new(),
            frames: 1,
            binary: true,
            read_at_ns: 0,
        }),
    }
}

#[test]
fn dropped_tick_batches_are_reported_like_deliveries() {
    let mut p = full_peer();
    for seq in 1..=LEN_MAX as u64 {
        assert_eq!(p.mesh.send(1, tick("room", seq, seq)), MeshSend::Accepted);
    }
    assert_eq!(p.mesh.send(1, tick("room", 17, 20)), MeshSend::Dropped);
    assert_eq!(p.mesh.send(1, tick("room", 21, 22)), MeshSend::Dropped);
    let gaps: Vec<(String, u64, u64, bool)> = p
        .drain_peer()
        .iter()
        .filter_map(|m| match m {
            LoopMsg::Gap {
                channel,
                gap,
                binary,
            } => Some((channel.to_string(), gap.from, gap.to, *binary)),
            _ => None,
        })
        .collect();
    assert_eq!(gaps, [("room".into(), 17, 22, true)], "one binary notice");

    let mut p = full_peer();
    for seq in 1..=LEN_MAX as u64 {
        p.mesh.send(1, tick("room", seq, seq));
    }
    assert_eq!(p.mesh.send(1, tick("room", 17, 17)), MeshSend::Dropped);
    while p.peer_rx.try_recv().is_ok() {}
    assert!(p.mesh.retry_overflow());
    assert_eq!(p.mesh.send(1, tick("room", 18, 18)), MeshSend::Accepted);
    assert!(
        p.drain_peer()
            .iter()
            .all(|m| !matches!(m, LoopMsg::Gap { .. })),
        "a later tick that reaches the peer clears the record"
    );
}

#[test]
fn a_later_delivery_that_reaches_the_peer_clears_the_record() {
    let mut p = full_peer();
    for seq in 1..=LEN_MAX as u64 {
        p.mesh.send(1, deliver("a", seq, 1));
    }
    assert_eq!(p.mesh.send(1, deliver("a", 17, 1)), MeshSend::Dropped);
    while p.peer_rx.try_recv().is_ok() {}
    assert!(p.mesh.retry_overflow(), "one parked still waits");
    assert_eq!(p.mesh.send(1, deliver("a", 18, 1)), MeshSend::Accepted);
    let got = p.drain_peer();
    assert!(
        got.iter().all(|m| !matches!(m, LoopMsg::Gap { .. })),
        "the receiver sees the jump from 16 to 18 itself"
    );

    let mut p = full_peer();
    for seq in 1..=LEN_MAX as u64 {
        p.mesh.send(1, deliver("a", seq, 1));
    }
    assert_eq!(p.mesh.send(1, deliver("a", 17, 1)), MeshSend::Dropped);
    assert_eq!(p.mesh.send(1, epoch_reset(0)), MeshSend::Accepted);
    let got = p.drain_peer();
    assert!(
        got.iter().all(|m| !matches!(m, LoopMsg::Gap { .. })),
        "a new epoch: no gap in the old numbering"
    );
}
