//! Direct gets (`$JS.API.DIRECT.GET.WSR_<k>`), timed: every head read, repair fetch,
//! successor check and recovery read goes through [`Store`], which records its round trip
//! in `wsrelay_cluster_direct_get_seconds` (docs/CLUSTER.md, "Metrics and health") and
//! maps a 404 to `Ok(None)`.

use std::sync::Arc;

use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::{DirectGetError, DirectGetErrorKind, Stream};

use super::central::HeadRead;
use crate::clock::Clock;
use crate::cluster::ClusterStats;

/// One stream, for reads.
#[derive(Clone)]
pub(super) struct Store {
    stream: Stream,
    stats: Arc<ClusterStats>,
}

impl Store {
    pub fn new(stream: Stream, stats: Arc<ClusterStats>) -> Store {
        Store { stream, stats }
    }

    /// The last message of `subject` (`None`: the channel is empty).
    pub async fn last(&self, subject: &str) -> HeadRead {
        let t = Clock::now_ns();
        let r = self.stream.direct_get_last_for_subject(subject).await;
        self.done(t, r)
    }

    /// The first message of `subject` at stream sequence `from` or later.
    pub async fn next(&self, subject: &str, from: u64) -> HeadRead {
        let t = Clock::now_ns();
        let r = self
            .stream
            .direct_get_next_for_subject(subject, Some(from))
            .await;
        self.done(t, r)
    }

    /// The message at stream sequence `sseq`.
    pub async fn at(&self, sseq: u64) -> HeadRead {
        let t = Clock::now_ns();
        let r = self.stream.direct_get(sseq).await;
        self.done(t, r)
    }

    fn done(&self, started_ns: u64, r: Result<StreamMessage, DirectGetError>) -> HeadRead {
        self.stats
            .record_direct_get_ns(Clock::now_ns().saturating_sub(started_ns));
        found(r)
    }
}

/// A direct get's answer: the message, `None` for 404, or the error.
fn found(r: Result<StreamMessage, DirectGetError>) -> HeadRead {
    match r {
        Ok(m) => Ok(Some(m)),
        Err(e) if matches!(e.kind(), DirectGetErrorKind::NotFound) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}
