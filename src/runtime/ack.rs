//! Publish acknowledgements: a publish carrying an `id` (JSON `"id"`, or the binary op `0x04`)
//! is answered once the channel's owner has numbered it, with
//! `{"type":"ack","id":I,"channel":C,"seq":N}` (binary: `[0x04][L][channel][I][id][seq]`), or
//! with an error carrying the same `id` when it is refused. A publisher that sent no `id` is
//! never answered: the common path pays nothing.
//!
//! The owner numbers the run (`publish.rs`), then acknowledges each publish that asked: on its
//! own loop directly, for publishers on other loops with one `LoopMsg::Acks` per loop and run.
//! The acknowledgement is a reply (control lane): it may overtake deliveries queued to the
//! publisher, never the message it acknowledges on the wire to other subscribers (those were
//! queued before it was sent).

use std::ops::Range;
use std::sync::Arc;

use crate::conn_id::{ConnId, LoopId};
use crate::runtime::event_loop::EventLoop;
use crate::runtime::mesh::LoopMsg;
use crate::runtime::publish::PublishQueue;
use crate::session::Reply;

/// One acknowledgement travelling back to the publisher's loop.
#[derive(Debug)]
pub struct Ack {
    /// The publisher on the receiving loop.
    pub conn: ConnId,
    /// Its id for the publish.
    pub id: Box<[u8]>,
    /// The message's seq; `None`: accepted but not numbered (it reached no one).
    pub seq: Option<u64>,
    /// Answer in binary (the publish was binary).
    pub binary: bool,
}

impl EventLoop {
    /// Acknowledges the publishes of `run` that asked, numbered from `first_seq` (`None`: not
    /// numbered).
    pub(super) fn send_acks(
        &mut self,
        queue: &PublishQueue,
        channel: &Arc<str>,
        run: Range<usize>,
        first_seq: Option<u64>,
    ) {
        if !queue.has_acks() {
            return; // The common case: nobody asked; no pass over the run.
        }
        let mut remote: Vec<(LoopId, Vec<Ack>)> = Vec::new();
        for (i, p) in queue.items()[run].iter().enumerate() {
            let Some(id) = p.ack_id(queue) else {
                continue;
            };
            let seq = first_seq.map(|first| first + i as u64);
            if p.origin().loop_id == self.id {
                self.reply_ack(p.origin().conn, channel, id, seq, p.is_binary());
                continue;
            }
            let ack = Ack {
                conn: p.origin().conn,
                id: Box::from(id),
                seq,
                binary: p.is_binary(),
            };
            match remote.iter_mut().find(|(l, _)| *l == p.origin().loop_id) {
                Some((_, acks)) => acks.push(ack),
                None => remote.push((p.origin().loop_id, vec![ack])),
            }
        }
        for (to, acks) in remote {
            let channel = channel.clone();
            self.mesh_send(to, LoopMsg::Acks { channel, acks });
        }
    }

    /// Queues one acknowledgement to the publisher `conn` of this loop.
    pub(super) fn reply_ack(
        &mut self,
        conn: ConnId,
        channel: &str,
        id: &[u8],
        seq: Option<u64>,
        binary: bool,
    ) {
        let ack = Reply::Ack {
            channel,
            id,
            seq,
            binary,
        };
        self.reply(conn, ack);
    }

    /// A publish with an acknowledgement id that could not reach its channel's owner (the
    /// mesh was full): it was not numbered and will not be; the publisher may retry.
    pub(super) fn refuse_unsequenced(&mut self, conn: ConnId, id: &[u8]) {
        self.reply(conn, Reply::Unsequenced { id });
    }
}
