//! The bridge's queues to the loops: one bounded crossbeam queue per loop (`--nats-loop-queue`)
//! plus the loop's `mio::Waker`, woken once per bridge wake (not per message).
//!
//! Policy: live messages are never waited for: when a loop's queue (and the backlog in front
//! of it) is full, `live` says so and the caller drops the message, counts it and repairs the
//! channel from the stream later. Control messages (heads, recovery ranges, publish outcomes)
//! are never dropped: they wait in a backlog that keeps FIFO order with later messages to the
//! same loop; the backlog is bounded by what caused them (one head per watch, one range per
//! recovery, one outcome per publish, each bounded by its queue).

use std::collections::VecDeque;
use std::sync::Arc;

use crossbeam_channel::{Sender, TrySendError};

use crate::cluster::ClusterMsg;

struct LoopOut {
    tx: Sender<ClusterMsg>,
    waker: Arc<mio::Waker>,
    backlog: VecDeque<ClusterMsg>,
    sent: bool,
}

/// The queues to every loop.
pub(super) struct Outs {
    loops: Vec<LoopOut>,
}

impl Outs {
    pub(super) fn new(txs: &[Sender<ClusterMsg>], wakers: &[Arc<mio::Waker>]) -> Self {
        let loops = txs
            .iter()
            .zip(wakers)
            .map(|(tx, waker)| LoopOut {
                tx: tx.clone(),
                waker: waker.clone(),
                backlog: VecDeque::new(),
                sent: false,
            })
            .collect();
        Outs { loops }
    }

    /// A message that must arrive: sent now, or parked in order.
    pub(super) fn control(&mut self, to: usize, msg: ClusterMsg) {
        let Some(l) = self.loops.get_mut(to) else {
            return;
        };
        if !l.backlog.is_empty() {
            return l.backlog.push_back(msg);
        }
        match l.tx.try_send(msg) {
            Ok(()) => l.sent = true,
            Err(TrySendError::Full(msg)) => l.backlog.push_back(msg),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// A live message: `Err(msg)` when the loop cannot take it now (the caller repairs).
    pub(super) fn live(&mut self, to: usize, msg: ClusterMsg) -> Result<(), ClusterMsg> {
        let Some(l) = self.loops.get_mut(to) else {
            return Ok(());
        };
        if !l.backlog.is_empty() {
            // Behind parked control messages: only as many as the queue holds.
            if l.backlog.len() >= l.tx.capacity().unwrap_or(0) {
                return Err(msg);
            }
            l.backlog.push_back(msg);
            return Ok(());
        }
        match l.tx.try_send(msg) {
            Ok(()) => {
                l.sent = true;
                Ok(())
            }
            Err(TrySendError::Full(msg)) => Err(msg),
            Err(TrySendError::Disconnected(_)) => Ok(()),
        }
    }

    /// Moves parked messages into the queues, then wakes every loop that was sent something.
    pub(super) fn flush(&mut self) {
        for l in &mut self.loops {
            while let Some(msg) = l.backlog.pop_front() {
                match l.tx.try_send(msg) {
                    Ok(()) => l.sent = true,
                    Err(TrySendError::Full(msg)) => {
                        l.backlog.push_front(msg);
                        break;
                    }
                    Err(TrySendError::Disconnected(_)) => l.backlog.clear(),
                }
            }
            if std::mem::take(&mut l.sent) {
                // A loop whose poll is gone is shutting down.
                let _ = l.waker.wake();
            }
        }
    }
}
