//! Recovery from the stream (docs/CLUSTER.md, "Subscribe and recovery"): the frames a
//! recovering client missed that the owner loop's ring does not hold, `after < seq <= upto`
//! in the client's epoch. Walks the channel's messages backwards along `Wsr-Prev` from the
//! last one this node delivered (one direct get per stored message); all or nothing: a
//! pointer the stream no longer holds, or another epoch, is `None` (`recovered:false`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::central::{Bridge, Done};
use super::direct::Store;
use super::live::LiveMsg;
use crate::cluster::envelope as env;
use crate::cluster::subject;
use crate::conn_id::LoopId;

impl Bridge {
    pub(super) fn on_fetch(
        &mut self,
        channel: Arc<str>,
        owner: LoopId,
        ticket: u64,
        (after, upto): (u64, u64),
        epoch: Arc<str>,
    ) {
        let Some(stream) = self.io.stream(&channel) else {
            let msg = crate::cluster::ClusterMsg::Fetched {
                channel,
                ticket,
                frames: None,
            };
            return self.out.control(owner, msg);
        };
        let steps_max = self.cfg.fetch_steps_max;
        let subject = subject::ingest(&channel, self.io.shards);
        self.io.spawn(async move {
            let frames = walk_back(&stream, &subject, (after, upto), &epoch, steps_max).await;
            Done::Fetched {
                channel,
                owner,
                ticket,
                frames,
            }
        });
    }
}

/// One direct get by stream sequence, asked again when a lagging follower answers 404.
async fn get(stream: &Store, sseq: u64) -> Option<async_nats::jetstream::message::StreamMessage> {
    for attempt in 0..3u64 {
        match stream.at(sseq).await {
            Ok(Some(m)) => return Some(m),
            Ok(None) | Err(_) => tokio::time::sleep(Duration::from_millis(10 << attempt)).await,
        }
    }
    None
}

async fn walk_back(
    stream: &Store,
    subject: &str,
    (after, upto): (u64, u64),
    epoch: &str,
    steps_max: usize,
) -> Option<Vec<Bytes>> {
    // Start from the channel's last stored message.
    let head = stream.last(subject).await.ok()??;
    let mut msg = LiveMsg::from_stream(&head)?;
    let mut parts: Vec<(u64, bool, Vec<Bytes>)> = Vec::new();
    for _ in 0..steps_max {
        if msg.epoch() != epoch {
            return None;
        }
        if msg.seq() <= upto {
            parts.push((msg.seq(), msg.binary(), msg.bodies()?));
        }
        if msg.seq() <= after.saturating_add(1) {
            return Some(frames(parts, after, upto));
        }
        let prev = msg.prev();
        if prev == 0 {
            return None; // The channel starts after `after + 1`.
        }
        msg = LiveMsg::from_stream(&get(stream, prev).await?)?;
    }
    None
}

/// The frames with `after < seq <= upto`, oldest first.
fn frames(mut parts: Vec<(u64, bool, Vec<Bytes>)>, after: u64, upto: u64) -> Vec<Bytes> {
    parts.reverse();
    let mut out = Vec::new();
    for (first, binary, bodies) in parts {
        for (i, body) in bodies.iter().enumerate() {
            let seq = first + i as u64;
            if seq > after && seq <= upto {
                out.push(env::frame(body, binary));
            }
        }
    }
    out
}
