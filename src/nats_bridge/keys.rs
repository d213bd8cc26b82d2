//! Keyed snapshots across relays (`--snapshot-for` with `--nats`; docs/CLUSTER.md, "Keyed
//! snapshots"). The key store `WSRK_<k>` keeps one record per key (`max_msgs_per_subject =
//! 1`: the latest, or a tombstone) and one watermark per channel: `W`, every message of the
//! channel with seq <= W is applied to the records (its headers: `Wsr-Seq` = W, `Wsr-Sseq` =
//! the stream sequence of that message, `Wsr-Epoch`).
//!
//! Owns: the fold of a channel's stored messages into the latest record per key
//! ([`Folded`]); the applier ([`apply`]: the publishing relay, after each PubAck of a
//! snapshot channel's batch and before its next batch, folds the stream after `W` up to its
//! own message and writes each record under compare-and-set on the record's subject, then
//! moves `W` forward under compare-and-set: any relay may apply another's messages, every
//! step is idempotent, a conflict re-reads); the loader ([`load`]: watermark, records, head,
//! then the stream between `W` and the head folded over the records: the exact snapshot at
//! the head); and the bridge side of both (`Bridge::snapshot_*`: the applier holds the
//! channel's next batch; the loader's result is brought up to what the live path delivered
//! and handed to the owner loop as `ClusterMsg::Snapshot`).
//!
//! Limits: one fold reads at most [`FETCH_MAX`] stored messages (the applier then moves `W`
//! to where it stopped and goes on; a loader gives up and retries); a load reads at most
//! [`RECORDS_MAX`] records; records are written [`WRITES_IN_FLIGHT`] at a time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::push::OrderedConfig;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::Stream;
use async_nats::jetstream::Context;
use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt;

use super::direct::Store;
use super::live::LiveMsg;
use super::publish::{head_of, header, header_u64};
use crate::cluster::envelope as env;
use crate::cluster::{subject, SnapshotEntry};

/// Watermark header: the stream sequence of the last message applied.
const SSEQ: &str = "Wsr-Sseq";
/// Record header: a tombstone (the key was deleted at `Wsr-Seq`).
const DELETED: &str = "Wsr-Del";
/// Stored messages one fold reads at most.
pub(super) const FETCH_MAX: usize = 65_536;
/// Records one load reads at most (beyond: the load fails and is retried).
pub(super) const RECORDS_MAX: usize = 1_000_000;
/// Record writes in flight at once per apply.
pub(super) const WRITES_IN_FLIGHT: usize = 64;
/// Compare-and-set rounds one apply (or one record write) may meet.
const CAS_ROUNDS_MAX: u32 = 100;
/// A direct get answered 404 or an error (a lagging follower, an election) is asked again
/// this many times within one fold.
const MISSES_MAX: u32 = 5;
/// Longest silence while reading records (the server sends them back to back).
const RECORDS_IDLE: Duration = Duration::from_secs(5);

/// One key's latest message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Rec {
    /// Its seq (the last seq of the stored message that carried it).
    pub seq: u64,
    /// Verbatim content (empty for a tombstone).
    pub content: Bytes,
    /// A binary publish.
    pub binary: bool,
    /// `"delete":true`: a tombstone.
    pub deleted: bool,
}

/// A channel's keys folded up to a position (`epoch`, `seq`, stream sequence `sseq`).
#[derive(Debug, Default)]
pub(super) struct Folded {
    pub epoch: Arc<str>,
    pub seq: u64,
    pub sseq: u64,
    pub keys: HashMap<String, Rec>,
    /// Seqs missing between the position and a folded message (past retention).
    pub lost: u64,
}

impl Folded {
    /// Nothing folded yet, at a position.
    pub(super) fn at(epoch: Arc<str>, seq: u64, sseq: u64) -> Folded {
        Folded {
            epoch,
            seq,
            sseq,
            ..Folded::default()
        }
    }

    /// Folds the channel's next stored message (stream order). A new epoch starts over
    /// (the keys of the old numbering are gone with its history); a seq jump is counted.
    pub(super) fn fold(&mut self, m: &LiveMsg) {
        if m.sseq() <= self.sseq {
            return;
        }
        self.sseq = m.sseq();
        if *m.epoch() != *self.epoch {
            if !self.epoch.is_empty() || self.seq != 0 {
                self.keys.clear();
            }
            self.epoch = Arc::from(m.epoch());
            self.seq = 0;
        } else if m.seq() <= self.seq {
            return; // Repeats seqs already folded (a CAS the server did not enforce).
        }
        self.lost += m.seq().saturating_sub(self.seq + 1);
        self.seq = m.last_seq();
        // Every record of one stored message has the message's key: the last one wins.
        let Some(body) = m.bodies().and_then(|b| b.last().cloned()) else {
            return;
        };
        let Some((content, deleted)) = env::keyed_parts(&body, m.binary()) else {
            return;
        };
        let rec = Rec {
            seq: self.seq,
            content: body.slice_ref(content),
            binary: m.binary(),
            deleted,
        };
        self.keys
            .insert(m.key().unwrap_or_default().to_string(), rec);
    }

    /// The snapshot's entries: live keys, least recently updated first.
    pub(super) fn entries(&self) -> Vec<SnapshotEntry> {
        let mut out: Vec<SnapshotEntry> = self
            .keys
            .iter()
            .filter(|(_, r)| !r.deleted)
            .map(|(k, r)| SnapshotEntry {
                key: Arc::from(k.as_str()),
                seq: r.seq,
                content: r.content.clone(),
                binary: r.binary,
            })
            .collect();
        out.sort_by_key(|e| e.seq);
        out
    }
}

/// What the applier and the loader need for one channel.
#[derive(Clone)]
pub(super) struct KeyIo {
    pub main: Store,
    pub keys: Store,
    pub key_stream: Stream,
    pub js: Context,
    pub client: async_nats::Client,
    pub channel: Arc<str>,
    pub ingest: String,
    pub watermark: String,
    pub shards: u32,
}

/// A watermark: the position, and the record's own stream sequence (the CAS value; 0:
/// none yet).
#[derive(Debug, Default, Clone)]
pub(super) struct Watermark {
    epoch: Arc<str>,
    seq: u64,
    sseq: u64,
    rseq: u64,
}

async fn read_watermark(k: &KeyIo) -> Result<Watermark, String> {
    let Some(m) = k.keys.last(&k.watermark).await? else {
        return Ok(Watermark::default());
    };
    let h = &m.headers;
    Ok(Watermark {
        epoch: Arc::from(header(h, env::EPOCH).unwrap_or_default()),
        seq: header_u64(h, env::SEQ).unwrap_or(0),
        sseq: header_u64(h, SSEQ).unwrap_or(0),
        rseq: m.sequence,
    })
}

/// Folds the channel's stored messages after `f.sseq` up to stream sequence `upto`. True
/// when it got there (or the stream holds nothing more up to it).
async fn fetch_fold(main: &Store, ingest: &str, f: &mut Folded, upto: u64) -> Result<bool, String> {
    let mut misses = 0;
    for _ in 0..FETCH_MAX {
        if f.sseq >= upto {
            return Ok(true);
        }
        match main.next(ingest, f.sseq + 1).await {
            Ok(Some(m)) if m.sequence <= upto => match LiveMsg::from_stream(&m) {
                Some(msg) => f.fold(&msg),
                None => f.sseq = m.sequence, // Not a wsrelay message: skipped.
            },
            Ok(Some(_)) => return Ok(true),
            Ok(None) if misses >= MISSES_MAX => return Ok(true),
            Err(e) if misses >= MISSES_MAX => return Err(e),
            Ok(None) | Err(_) => {
                misses += 1;
                tokio::time::sleep(Duration::from_millis(5 << misses)).await;
            }
        }
    }
    Ok(f.sseq >= upto)
}

/// One batch of the relay's own, stored, to apply: its stream sequence (`upto`), its
/// channel's previous message (`prev`, the batch's CAS value), its seqs and its key's last
/// record (every record of a batch has one key).
#[derive(Debug, Clone)]
pub(super) struct ApplyJob {
    pub upto: u64,
    pub prev: u64,
    pub epoch: Arc<str>,
    pub first_seq: u64,
    pub last_seq: u64,
    pub key: String,
    pub rec: Rec,
    /// When the first attempt started (the retry bound).
    pub since_ns: u64,
}

/// What an applier remembers between its batches (the CAS values it wrote last), so that a
/// channel written by this relay alone costs two round trips per batch: the records, then
/// the watermark. A stale value costs one conflict and a read. Bounded: [`CACHED_KEYS_MAX`].
#[derive(Debug, Default)]
pub(super) struct KeyCache {
    wm: Option<Watermark>,
    /// key → (record stream sequence, epoch, seq).
    recs: HashMap<String, (u64, Arc<str>, u64)>,
}

/// Record CAS values an applier keeps per channel (beyond: forgotten, read again).
pub(super) const CACHED_KEYS_MAX: usize = 4096;

/// Applies the channel's stored messages up to the job's batch to the key store. When the
/// watermark is right before the batch (the usual case with one writer), the batch is
/// applied from the relay's own copy; otherwise the stream after the watermark is folded
/// (another relay's batches, applied for it). Returns the seqs found lost (past retention).
pub(super) async fn apply(k: &KeyIo, job: &ApplyJob, cache: &mut KeyCache) -> Result<u64, String> {
    let mut lost = 0;
    for _ in 0..CAS_ROUNDS_MAX {
        let w = match cache.wm.take() {
            Some(w) => w,
            None => read_watermark(k).await?,
        };
        if w.sseq >= job.upto {
            cache.wm = Some(w);
            return Ok(lost); // Applied already (by another relay, or an earlier round).
        }
        let next_to_w = *w.epoch == *job.epoch && w.seq + 1 == job.first_seq;
        let (f, reached) =
            if w.sseq == job.prev && (next_to_w || (w.sseq == 0 && job.first_seq == 1)) {
                let mut f = Folded::at(job.epoch.clone(), job.last_seq, job.upto);
                f.keys.insert(job.key.clone(), job.rec.clone());
                (f, true)
            } else {
                let mut f = Folded::at(w.epoch.clone(), w.seq, w.sseq);
                let reached = fetch_fold(&k.main, &k.ingest, &mut f, job.upto).await?;
                (f, reached)
            };
        write_records(k, &f, cache).await?;
        if f.sseq == w.sseq {
            return Ok(lost); // Nothing stored after W up to the batch any more.
        }
        if let Some(rseq) = cas_watermark(k, &f, w.rseq).await? {
            // Counted by the relay whose watermark move covered the loss (once).
            lost += f.lost;
            cache.wm = Some(Watermark {
                epoch: f.epoch.clone(),
                seq: f.seq,
                sseq: f.sseq,
                rseq,
            });
            if reached {
                return Ok(lost);
            }
        }
    }
    Err("too many concurrent key-store updates".into())
}

/// Writes every folded record whose stored version is older, `WRITES_IN_FLIGHT` at a time;
/// remembers the CAS values written.
async fn write_records(k: &KeyIo, f: &Folded, cache: &mut KeyCache) -> Result<(), String> {
    let all: Vec<(&String, &Rec)> = f.keys.iter().collect();
    for chunk in all.chunks(WRITES_IN_FLIGHT) {
        let writes = chunk.iter().map(|(key, rec)| {
            let known = cache.recs.get(*key).cloned();
            put_record(k, key, rec, &f.epoch, known)
        });
        let results = futures_util::future::join_all(writes).await;
        for ((key, rec), r) in chunk.iter().zip(results) {
            match r? {
                Some(rseq) => {
                    if cache.recs.len() >= CACHED_KEYS_MAX {
                        cache.recs.clear();
                    }
                    let v = (rseq, f.epoch.clone(), rec.seq);
                    cache.recs.insert((*key).clone(), v);
                }
                None => {
                    cache.recs.remove(*key);
                }
            }
        }
    }
    Ok(())
}

/// One record, written only over an older one (another epoch, or a lower seq), under
/// compare-and-set on its subject; `known`: the CAS value and version this relay wrote last
/// (tried first, without a read). `Some(stream sequence)` when written, `None` when the
/// stored record was already as new.
async fn put_record(
    k: &KeyIo,
    key: &str,
    rec: &Rec,
    epoch: &Arc<str>,
    mut known: Option<(u64, Arc<str>, u64)>,
) -> Result<Option<u64>, String> {
    let subject = subject::key_record(&k.channel, Some(key), k.shards);
    for _ in 0..CAS_ROUNDS_MAX {
        let (rseq, stored) = match known.take() {
            Some((rseq, e, seq)) => (rseq, Some((Some(e), seq))),
            None => match k.keys.last(&subject).await? {
                Some(m) => {
                    let seq = header_u64(&m.headers, env::SEQ).unwrap_or(0);
                    let e = header(&m.headers, env::EPOCH).map(Arc::from);
                    (m.sequence, Some((e, seq)))
                }
                None => (0, None),
            },
        };
        if let Some((Some(e), seq)) = &stored {
            if **e == **epoch && *seq >= rec.seq {
                return Ok(None);
            }
        }
        let mut h = HeaderMap::new();
        h.insert(env::SEQ, rec.seq.to_string().as_str());
        h.insert(env::EPOCH, &**epoch);
        if rec.binary {
            h.insert(env::BINARY, "1");
        }
        if rec.deleted {
            h.insert(DELETED, "1");
        }
        let msg = PublishMessage::build()
            .payload(rec.content.clone())
            .headers(h)
            .expected_last_subject_sequence(rseq);
        if let Some(written) = stored_at(&k.js, subject.clone(), msg).await? {
            return Ok(Some(written));
        }
    }
    Err("too many concurrent writers of one key".into())
}

/// Moves the watermark to `f`'s position if it is still the one read (`rseq`); its new
/// stream sequence, or `None`: another relay moved it meanwhile.
async fn cas_watermark(k: &KeyIo, f: &Folded, rseq: u64) -> Result<Option<u64>, String> {
    let mut h = HeaderMap::new();
    h.insert(env::SEQ, f.seq.to_string().as_str());
    h.insert(env::EPOCH, &*f.epoch);
    h.insert(SSEQ, f.sseq.to_string().as_str());
    let msg = PublishMessage::build()
        .payload(Bytes::new())
        .headers(h)
        .expected_last_subject_sequence(rseq);
    stored_at(&k.js, k.watermark.clone(), msg).await
}

/// Publishes under compare-and-set: the stream sequence when stored, `None` on
/// `WrongLastSequence`.
async fn stored_at(
    js: &Context,
    subject: String,
    msg: PublishMessage,
) -> Result<Option<u64>, String> {
    let ack = js
        .send_publish(subject, msg)
        .await
        .map_err(|e| e.to_string())?;
    match ack.await {
        Ok(ack) => Ok(Some(ack.sequence)),
        Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Reads the channel's snapshot: the exact latest value per key as of the returned position
/// (the channel's head when read, or the watermark if a lagging server answered an older
/// head). Read in this order: watermark, records, head, so that every record is at most the
/// head (records are written after their message was stored).
pub(super) async fn load(k: &KeyIo) -> Result<Folded, String> {
    let mut last_err = String::new();
    for attempt in 0..3u64 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(20 << attempt)).await;
        }
        let w = read_watermark(k).await?;
        let records = read_records(k).await?;
        let head = k.main.last(&k.ingest).await?.as_ref().and_then(head_of);
        let Some(h) = head else {
            return Ok(Folded::default()); // Empty channel: no keys.
        };
        let same = *w.epoch == *h.epoch;
        let target = match same {
            true => h.seq.max(w.seq),
            false => h.seq,
        };
        let ahead = records
            .iter()
            .any(|(_, r, e)| **e == *h.epoch && r.seq > target);
        if ahead {
            last_err = "a record is newer than the head read (a lagging server)".into();
            continue;
        }
        let mut f = match same {
            true => Folded::at(h.epoch.clone(), w.seq, w.sseq),
            false => Folded::at(h.epoch.clone(), 0, 0),
        };
        for (key, rec, epoch) in records {
            if *epoch == *h.epoch {
                f.keys.insert(key, rec);
            }
        }
        if fetch_fold(&k.main, &k.ingest, &mut f, h.sseq).await? {
            return Ok(f);
        }
        last_err = "the stream after the watermark could not be read".into();
    }
    Err(last_err)
}

/// Folds more of the stream into a loaded snapshot, up to stream sequence `upto`.
pub(super) async fn extend(k: &KeyIo, mut f: Folded, upto: u64) -> Result<Folded, String> {
    match fetch_fold(&k.main, &k.ingest, &mut f, upto).await? {
        true => Ok(f),
        false => Err("the stream could not be read up to the live position".into()),
    }
}

/// Every record of the channel (an ordered push consumer, last message per subject, read
/// until nothing is pending): (key, record, its epoch).
async fn read_records(k: &KeyIo) -> Result<Vec<(String, Rec, Arc<str>)>, String> {
    let prefix = format!("{}.", k.watermark);
    let config = OrderedConfig {
        deliver_subject: k.client.new_inbox(),
        filter_subject: format!("{prefix}*"),
        deliver_policy: DeliverPolicy::LastPerSubject,
        ..Default::default()
    };
    let consumer = k
        .key_stream
        .create_consumer(config)
        .await
        .map_err(|e| format!("key store consumer: {e}"))?;
    if consumer.cached_info().num_pending == 0 {
        return Ok(Vec::new());
    }
    let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    loop {
        let next = tokio::time::timeout(RECORDS_IDLE, messages.next()).await;
        let m = match next {
            Ok(Some(Ok(m))) => m,
            Ok(Some(Err(e))) => return Err(format!("reading key records: {e}")),
            Ok(None) | Err(_) => return Err("reading key records: no answer".into()),
        };
        let pending = m.info().map(|i| i.pending).unwrap_or(0);
        if let Some(r) = record_of(&m.message, &prefix) {
            out.push(r);
        }
        if pending == 0 {
            return Ok(out);
        }
        if out.len() >= RECORDS_MAX {
            return Err(format!("more than {RECORDS_MAX} key records"));
        }
    }
}

/// A key record as read by a consumer: (key, record, epoch).
fn record_of(m: &async_nats::Message, prefix: &str) -> Option<(String, Rec, Arc<str>)> {
    let h = m.headers.as_ref()?;
    let key = subject::unescape_key(m.subject.as_str().strip_prefix(prefix)?)?;
    let rec = Rec {
        seq: header_u64(h, env::SEQ)?,
        content: m.payload.clone(),
        binary: header(h, env::BINARY).is_some(),
        deleted: header(h, DELETED).is_some(),
    };
    Some((key, rec, Arc::from(header(h, env::EPOCH)?)))
}

/// A stored message (tests).
#[cfg(test)]
fn stream_msg(epoch: &str, seq: u64, sseq: u64, key: &str, bodies: &[Vec<u8>]) -> LiveMsg {
    LiveMsg::for_test((epoch, seq, sseq), key, bodies)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(seq: u64, key: &str, content: &str, delete: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let message = ("b", content.as_bytes(), "p", seq);
        crate::command::encode_keyed_message(&mut out, message, Some(key), delete);
        out
    }

    fn contents(f: &Folded) -> Vec<(String, u64, String)> {
        f.entries()
            .into_iter()
            .map(|e| {
                let c = String::from_utf8_lossy(&e.content).into_owned();
                (e.key.to_string(), e.seq, c)
            })
            .collect()
    }

    #[test]
    fn folding_keeps_the_last_record_per_key_and_applies_deletes() {
        let mut f = Folded::at(Arc::from("e"), 0, 0);
        f.fold(&stream_msg("e", 1, 10, "a", &[body(1, "a", "1", false)]));
        let two = [body(2, "b", "2", false), body(3, "b", r#"{"x":3}"#, false)];
        f.fold(&stream_msg("e", 2, 11, "b", &two));
        f.fold(&stream_msg("e", 4, 12, "c", &[body(4, "c", "4", false)]));
        f.fold(&stream_msg("e", 5, 13, "a", &[body(5, "a", "null", true)]));
        assert_eq!((f.seq, f.sseq, f.lost), (5, 13, 0));
        let want = vec![
            ("b".to_string(), 3, r#"{"x":3}"#.to_string()),
            ("c".to_string(), 4, "4".to_string()),
        ];
        assert_eq!(contents(&f), want);
        assert!(f.keys["a"].deleted, "the tombstone is kept for the store");
        // Older or equal stream positions are ignored; a seq jump is counted.
        f.fold(&stream_msg("e", 4, 12, "c", &[body(4, "c", "9", false)]));
        f.fold(&stream_msg("e", 9, 20, "c", &[body(9, "c", "9", false)]));
        assert_eq!((f.seq, f.lost), (9, 3));
    }

    #[test]
    fn a_new_epoch_starts_over_and_repeated_seqs_are_skipped() {
        let mut f = Folded::at(Arc::from("e"), 3, 7);
        f.keys.insert(
            "a".into(),
            Rec {
                seq: 2,
                content: Bytes::from_static(b"1"),
                binary: false,
                deleted: false,
            },
        );
        f.fold(&stream_msg("e", 3, 8, "b", &[body(3, "b", "2", false)]));
        assert_eq!(
            (f.seq, f.sseq, f.keys.len()),
            (3, 8, 1),
            "seq 3 was folded already"
        );
        f.fold(&stream_msg("f", 1, 9, "c", &[body(1, "c", "3", false)]));
        assert_eq!(contents(&f), vec![("c".to_string(), 1, "3".to_string())]);
        assert_eq!((&*f.epoch, f.seq, f.lost), ("f", 1, 0));
    }

    #[test]
    fn a_record_subject_gives_back_its_key() {
        let prefix = "wsr.k.3.board.";
        let mut headers = HeaderMap::new();
        headers.insert(env::SEQ, "7");
        headers.insert(env::EPOCH, "e");
        headers.insert(DELETED, "1");
        let m = async_nats::Message {
            subject: "wsr.k.3.board.a_2eb".into(),
            reply: None,
            payload: Bytes::new(),
            headers: Some(headers),
            status: None,
            description: None,
            length: 0,
        };
        let (key, rec, epoch) = record_of(&m, prefix).expect("a record");
        assert_eq!(
            (key.as_str(), rec.seq, rec.deleted, &*epoch),
            ("a.b", 7, true, "e")
        );
    }
}
