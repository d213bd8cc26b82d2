//! TLS on a relay connection (`--tls-cert`): rustls' sans-IO `ServerConnection` driven by the
//! loop's read and flush phases, inside the loop's thread (no extra thread, no async).
//!
//! Owns: the per-connection TLS state (`TlsConn`), moving ciphertext between the socket and
//! rustls (`read_tls`/`process_new_packets`/`write_tls`), the check of the first bytes (plain
//! text to a TLS port is answered `400` in plain text, then closed), the classification and
//! counting of handshake failures, and `close_notify` before our write side is shut.
//! May not touch: the WebSocket protocol (the read phase gets plaintext as from a plain socket;
//! the flush phase hands the outbox's slices to rustls as it would to `sendmsg`).
//!
//! Encode once, encrypt per connection: the outbox still holds clones of the run's one encoded
//! buffer; each TLS connection encrypts them into its own records (unavoidable: every session
//! has its own keys).
//!
//! Bounds (rustls 0.23's, per connection): incoming records ≤ 16.7 KiB buffered (64 KiB while a
//! handshake message is being joined), received plaintext ≤ 16 KiB (always read out before
//! more ciphertext is read), encrypted output ≤ `TLS_SEND_BUFFER_BYTES_MAX` (beyond it rustls
//! takes no more plaintext: the rest waits in the outbox, under the outbox's own budget).
//! The handshake timeout armed at accept covers the TLS handshake and the HTTP upgrade both.
//!
//! Plain connections never enter this module: `Conn::tls` is `None` and the read and flush
//! phases take their plain path after one check of that field.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::{ServerConfig, ServerConnection};

use crate::clock::Clock;
use crate::conn_id::ConnId;
use crate::metrics::{Counter, LoopMetrics};
use crate::outbox::IO_SLICES_MAX;
use crate::proto::handshake as hs;
use crate::runtime::conn::{CloseReason, Conn};
use crate::runtime::event_loop::EventLoop;
use crate::runtime::flush::{account_written, send_slices, WriteOutcome};
use crate::runtime::read::ReadOutcome;

/// Encrypted output one connection may hold in rustls before it takes no more plaintext.
pub const TLS_SEND_BUFFER_BYTES_MAX: usize = 64 * 1024;

/// First byte of a TLS record carrying a handshake message (RFC 8446 §5.1, `ContentType`).
const RECORD_TYPE_HANDSHAKE: u8 = 22;

/// The answer to plain text on the TLS port (like nginx's "plain HTTP request was sent to
/// HTTPS port"): the client sees why instead of a reset or garbage.
const NOT_TLS_BODY: &[u8] = b"this port speaks TLS: use wss:// or https://\n";

/// One connection's TLS session.
pub struct TlsConn {
    session: ServerConnection,
    /// The first input was seen (and was a TLS record).
    started: bool,
    /// The handshake completed (counted once).
    handshaken: bool,
}

impl fmt::Debug for TlsConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConn")
            .field("started", &self.started)
            .field("handshaken", &self.handshaken)
            .finish_non_exhaustive()
    }
}

impl TlsConn {
    /// A server session with the configuration in force now (a reload changes only what
    /// later connections get).
    pub fn new(config: &Arc<ServerConfig>) -> Result<Box<Self>, rustls::Error> {
        let mut session = ServerConnection::new(Arc::clone(config))?;
        session.set_buffer_limit(Some(TLS_SEND_BUFFER_BYTES_MAX));
        Ok(Box::new(TlsConn {
            session,
            started: false,
            handshaken: false,
        }))
    }

    /// rustls has records to write (handshake messages, alerts, encrypted data).
    pub fn wants_write(&self) -> bool {
        self.session.wants_write()
    }
}

/// What went wrong in one TLS read.
enum Refusal {
    /// The first bytes were not a TLS record.
    NotTls,
    /// rustls refused the input (an alert is queued), counted in this series.
    Failed(Counter),
}

impl EventLoop {
    /// One read of a TLS connection: plaintext already decrypted, else ciphertext from the
    /// socket until some plaintext comes out or the socket is drained. Failures are handled
    /// here (answer, alert, close) and end the read.
    pub(super) fn read_tls_once(&mut self, id: ConnId) -> ReadOutcome {
        let Some(conn) = self.conns.get_mut(id) else {
            return ReadOutcome::WouldBlock;
        };
        let Some(tls) = conn.tls.as_mut() else {
            return ReadOutcome::WouldBlock;
        };
        let result = read_plaintext(
            tls,
            &conn.stream,
            &mut self.scratch.recv_buf,
            &mut self.metrics,
        );
        if !tls.handshaken && !tls.session.is_handshaking() {
            tls.handshaken = true;
            self.metrics.inc(Counter::TlsHandshakeOk);
        }
        let wants_write = tls.wants_write();
        if matches!(result, Ok(ReadOutcome::Bytes(_) | ReadOutcome::More(_))) {
            conn.session.on_bytes_received(self.now_ns);
        }
        if wants_write {
            self.mark_dirty(id);
        }
        match result {
            Ok(outcome) => outcome,
            Err(refusal) => {
                self.refuse_tls(id, refusal);
                ReadOutcome::WouldBlock
            }
        }
    }

    fn refuse_tls(&mut self, id: ConnId, refusal: Refusal) {
        match refusal {
            Refusal::NotTls => {
                self.metrics.inc(Counter::TlsHandshakeNotTls);
                self.metrics.inc(Counter::HandshakeRejected400);
                self.warn_refused("tls_not_tls", "plain text on the TLS port");
                if let Some(conn) = self.conn_mut(id) {
                    // The answer goes out in plain text: the client does not speak TLS.
                    conn.tls = None;
                }
                let mut out = Vec::with_capacity(160);
                let body = NOT_TLS_BODY;
                hs::encode_http_response(&mut out, 400, "Bad Request", "text/plain", &[], body);
                self.respond(id, out);
            }
            Refusal::Failed(counter) => {
                self.metrics.inc(counter);
                let Some(conn) = self.conn_mut(id) else {
                    return;
                };
                conn.set_close_reason(CloseReason::Tls);
                // The alert rustls queued (best effort: a few bytes into an idle socket), then
                // the session is dropped: what the peer still sends is read and discarded
                // while lingering, so that closing does not reset the connection and lose
                // the alert.
                if let Some(mut tls) = conn.tls.take() {
                    let _ = tls.session.write_tls(&mut SocketWriter(&conn.stream));
                }
                self.linger(id);
            }
        }
    }

    /// Queues `close_notify` and writes it, best effort (it is 24 bytes into a socket whose
    /// outbox just drained), before the caller shuts our write side (RFC 8446 §6.1).
    pub(super) fn send_close_notify(conn: &mut Conn) {
        if let Some(tls) = conn.tls.as_mut() {
            tls.session.send_close_notify();
            let _ = tls.session.write_tls(&mut SocketWriter(&conn.stream));
        }
    }
}

fn read_plaintext(
    tls: &mut TlsConn,
    stream: &TcpStream,
    buf: &mut [u8],
    metrics: &mut LoopMetrics,
) -> Result<ReadOutcome, Refusal> {
    if !tls.started {
        match read_first(tls, stream, buf, metrics)? {
            ReadOutcome::More(_) => {}
            other => return Ok(other),
        }
    }
    loop {
        match tls.session.reader().read(buf) {
            // `close_notify` received (0) or TCP ended without it (UnexpectedEof).
            Ok(0) => return Ok(ReadOutcome::Eof),
            Ok(n) => return Ok(ReadOutcome::More(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return Ok(ReadOutcome::Eof),
        }
        match tls.session.read_tls(&mut SocketReader(stream)) {
            // EOF is noted by rustls: the reader reports it after the last plaintext.
            Ok(n) => metrics.add(Counter::ReceivedBytes, n as u64),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadOutcome::WouldBlock),
            Err(_) => return Ok(ReadOutcome::Failed),
        }
        metrics.inc(Counter::SocketReads);
        process(tls)?;
    }
}

/// The connection's first bytes: read raw so that plain text can be told from a TLS record
/// and answered in kind, then handed to rustls.
fn read_first(
    tls: &mut TlsConn,
    stream: &TcpStream,
    buf: &mut [u8],
    metrics: &mut LoopMetrics,
) -> Result<ReadOutcome, Refusal> {
    let n = loop {
        match (&mut { stream }).read(buf) {
            Ok(0) => return Ok(ReadOutcome::Eof),
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadOutcome::WouldBlock),
            Err(_) => return Ok(ReadOutcome::Failed),
        }
    };
    metrics.inc(Counter::SocketReads);
    metrics.add(Counter::ReceivedBytes, n as u64);
    tls.started = true;
    let mut input = buf.get(..n).unwrap_or_default();
    if input.first() != Some(&RECORD_TYPE_HANDSHAKE) {
        return Err(Refusal::NotTls);
    }
    while !input.is_empty() {
        // Fails only when rustls' bounded buffer is full: a handshake message over 64 KiB.
        if tls.session.read_tls(&mut input).is_err() {
            return Err(Refusal::Failed(Counter::TlsHandshakeFailed));
        }
        process(tls)?;
    }
    Ok(ReadOutcome::More(0))
}

/// Decrypts what was read; a failure is classified for the metrics (rustls queued the alert).
fn process(tls: &mut TlsConn) -> Result<(), Refusal> {
    match tls.session.process_new_packets() {
        Ok(_) => Ok(()),
        Err(e) => Err(Refusal::Failed(classify(&e))),
    }
}

fn classify(e: &rustls::Error) -> Counter {
    match e {
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
            Counter::TlsHandshakeClientCertificate
        }
        _ => Counter::TlsHandshakeFailed,
    }
}

/// Writes as much of the outbox as rustls and the socket take: queued records first, then
/// the outbox's slices encrypted (up to `TLS_SEND_BUFFER_BYTES_MAX` at a time).
pub(super) fn write_outbox_tls(
    conn: &mut Conn,
    metrics: &mut LoopMetrics,
    timed: bool,
) -> WriteOutcome {
    let Conn {
        tls,
        stream,
        session,
        ..
    } = conn;
    let outbox = &mut session.outbox;
    let Some(tls) = tls.as_mut() else {
        return WriteOutcome::Failed;
    };
    loop {
        while tls.session.wants_write() {
            match tls.session.write_tls(&mut SocketWriter(stream)) {
                Ok(0) => return WriteOutcome::Failed,
                Ok(n) => {
                    metrics.inc(Counter::SocketWrites);
                    metrics.add(Counter::SentBytes, n as u64);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return WriteOutcome::Blocked,
                Err(_) => return WriteOutcome::Failed,
            }
        }
        if outbox.is_empty() {
            return WriteOutcome::Drained;
        }
        let mut slices = [IoSlice::new(&[]); IO_SLICES_MAX];
        let n = outbox.io_slices(&mut slices);
        let taken = match tls.session.writer().write_vectored(&slices[..n]) {
            Ok(taken) => taken,
            Err(_) => return WriteOutcome::Failed,
        };
        if taken == 0 && !tls.session.wants_write() {
            // Before the handshake completes (nothing is queued for such a connection).
            return WriteOutcome::Blocked;
        }
        let written_at_ns = if timed { Clock::now_ns() } else { 0 };
        account_written(outbox, taken, metrics, timed, written_at_ns);
    }
}

/// The socket as rustls' source of ciphertext.
struct SocketReader<'a>(&'a TcpStream);

impl Read for SocketReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&mut { self.0 }).read(buf)
    }
}

/// The socket as rustls' sink of records: `sendmsg` with `MSG_NOSIGNAL`, like plain writes.
struct SocketWriter<'a>(&'a TcpStream);

impl Write for SocketWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        send_slices(self.0, &[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        send_slices(self.0, bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
