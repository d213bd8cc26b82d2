//! Accept phase: take every pending connection from this loop's listeners (edge-triggered:
//! until `WouldBlock`), set TCP_NODELAY, register it and arm its handshake timeout (which also
//! bounds the wait for a PROXY header); relay connections then go to `client_addr.rs`. At the
//! descriptor limit, waiting clients are answered 503 with the reserve descriptor, or the
//! listeners are retried later (`accept_guard.rs`).

use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::sync::atomic::Ordering;

use mio::net::TcpStream;
use mio::{Interest, Token};

use crate::conn_id::ConnId;
use crate::metrics::Counter;
use crate::runtime::accept_guard::AcceptFailure;
use crate::runtime::conn::{Admission, Armed, Conn, Endpoint, Flush};
use crate::runtime::event_loop::EventLoop;
use crate::runtime::tls::TlsConn;
use crate::session::{Session, SessionLimits};

impl EventLoop {
    /// Accepts on the relay listener.
    pub(super) fn accept_relay(&mut self) {
        while let Some((stream, ip)) = self.accept_one(false) {
            if let Some(id) = self.add_conn(stream, Endpoint::Relay, ip) {
                self.start_relay_conn(id);
            }
        }
    }

    /// Accepts on the metrics listener: these connections only speak plain HTTP.
    pub(super) fn accept_metrics(&mut self) {
        while let Some((stream, ip)) = self.accept_one(true) {
            self.add_conn(stream, Endpoint::Http, ip);
        }
    }

    fn accept_one(&mut self, metrics: bool) -> Option<(TcpStream, IpAddr)> {
        loop {
            let listener = self.listener_of(metrics)?;
            match listener.accept() {
                // A dual-stack listener reports IPv4 peers as `::ffff:a.b.c.d`: one spelling.
                Ok((stream, addr)) => return Some((stream, addr.ip().to_canonical())),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.net.accept_guard.on_backlog_empty();
                    return None;
                }
                Err(e) => {
                    let failure = AcceptFailure::of(&e);
                    self.metrics.inc(failure.counter());
                    self.warn_refused("accept_failed", &format!("accept failed: {e}"));
                    if failure.is_descriptor_limit() && self.net.accept_guard.release_reserve() {
                        // One descriptor is free now: answer one waiting client and go on.
                        // (At the limit `accept` fails even on an empty backlog: stop there.)
                        let shed = self.shed_one(metrics);
                        self.net.accept_guard.restore_reserve();
                        match shed {
                            Shed::Answered => continue,
                            Shed::BacklogEmpty => {
                                self.net.accept_guard.on_backlog_empty();
                                return None;
                            }
                            Shed::Failed => {}
                        }
                    }
                    // The connection stays in the backlog, and edge-triggered readiness will not
                    // report it again: try again from the poll timeout.
                    self.net.accept_guard.schedule_retry(self.now_ns);
                    return None;
                }
            }
        }
    }

    fn listener_of(&self, metrics: bool) -> Option<&mio::net::TcpListener> {
        match metrics {
            true => self.net.metrics_listener.as_ref(),
            false => self.net.listener.as_ref(),
        }
    }

    /// At the descriptor limit, with the reserve descriptor released: accepts one waiting
    /// connection, answers `503` with `Retry-After`, and closes it, so the backlog drains and the
    /// client learns to come back instead of hanging (RFC 9110 §15.6.4).
    fn shed_one(&mut self, metrics: bool) -> Shed {
        let Some(listener) = self.listener_of(metrics) else {
            return Shed::BacklogEmpty;
        };
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Shed::BacklogEmpty,
            Err(_) => return Shed::Failed,
        };
        // Read what the client already sent, so that closing does not reset the connection and
        // discard the answer; then answer and close. Best effort: the socket is new and empty.
        let mut request = [0u8; 1024];
        let _ = (&stream).read(&mut request);
        let _ = (&stream).write_all(self.net.accept_guard.response());
        let _ = stream.shutdown(std::net::Shutdown::Write);
        self.metrics.inc(Counter::HandshakeRejected503);
        self.metrics.inc(Counter::ClosedDescriptorLimit);
        Shed::Answered
    }

    /// Tries the listeners again after an accept failure, once the retry delay has passed.
    pub(super) fn retry_accept_if_due(&mut self) {
        if self.net.accept_guard.take_due(self.now_ns) {
            self.accept_relay();
            self.accept_metrics();
        }
    }

    fn add_conn(
        &mut self,
        mut stream: TcpStream,
        endpoint: Endpoint,
        ip: IpAddr,
    ) -> Option<ConnId> {
        // Latency over throughput: relay frames are small and must leave at once.
        let _ = stream.set_nodelay(true);
        // More than 4 billion connections on one loop: refuse by dropping.
        let id = self.conns.next_id()?;
        let token = Token(id.to_token_value());
        if let Err(e) = self
            .net
            .poll
            .registry()
            .register(&mut stream, token, Interest::READABLE)
        {
            tracing::warn!(loop_id = self.id, error = %e, "register failed");
            return None;
        }
        let tls = match (&self.env.config.tls, endpoint) {
            // The metrics listener (`--metrics-bind`) stays plain HTTP.
            (Some(tls), Endpoint::Relay) => match TlsConn::new(tls.config()) {
                Ok(session) => Some(session),
                Err(e) => {
                    tracing::warn!(loop_id = self.id, error = %e, "TLS session refused");
                    let _ = self.net.poll.registry().deregister(&mut stream);
                    return None;
                }
            },
            _ => None,
        };
        let cfg = &self.env.config;
        let limits = SessionLimits {
            message_bytes_max: cfg.message_bytes_max,
            outbox_bytes_max: cfg.outbox_bytes_max,
            control_bytes_max: cfg.control_bytes_max,
        };
        self.conns.insert(Conn {
            stream,
            tls,
            id,
            session: Session::new(self.now_ns, endpoint, limits, &self.env.timeouts),
            head: None,
            armed: Armed::Not,
            flush: Flush::Idle,
            peer_ip: ip,
            admission: Admission::Uncounted,
            deflate: None,
        });
        self.env.shared.conns_open.fetch_add(1, Ordering::Relaxed);
        self.metrics.inc(Counter::ConnectionsAccepted);
        self.rearm(id);
        Some(id)
    }
}

/// What `shed_one` did with the reserve descriptor.
enum Shed {
    /// A waiting client was answered 503 and closed.
    Answered,
    /// Nobody was waiting.
    BacklogEmpty,
    /// The accept failed again (another thread took the descriptor).
    Failed,
}
