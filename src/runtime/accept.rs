//! Accept phase: take every pending connection from this loop's listeners (edge-triggered:
//! until `WouldBlock`), set TCP_NODELAY, register it and arm its handshake timeout.

use std::io;
use std::net::IpAddr;
use std::sync::atomic::Ordering;

use mio::net::TcpStream;
use mio::{Interest, Token};

use crate::conn_id::ConnId;
use crate::metrics::Counter;
use crate::outbox::Outbox;
use crate::proto::decoder::{Decoder, DecoderLimits, Role};
use crate::rate::TokenBucket;
use crate::runtime::conn::{AuthState, Conn, Endpoint, Liveness, Phase};
use crate::runtime::event_loop::EventLoop;

impl EventLoop {
    /// Accepts on the relay listener.
    pub(super) fn accept_relay(&mut self) {
        while let Some((stream, ip)) = self.accept_one(false) {
            if let Some(id) = self.add_conn(stream, Endpoint::Relay, ip) {
                self.admit(id, ip);
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
        let listener = if metrics {
            self.metrics_listener.as_ref()
        } else {
            self.listener.as_ref()
        }?;
        loop {
            match listener.accept() {
                Ok((stream, addr)) => return Some((stream, addr.ip())),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) => {
                    // EMFILE/ENFILE/ENOBUFS: the connection stays in the backlog; say so once
                    // per burst and try again on the next readiness event.
                    tracing::warn!(loop_id = self.id, error = %e, "accept failed");
                    self.metrics.inc(Counter::AcceptErrors);
                    return None;
                }
            }
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
        self.generation = self.generation.wrapping_add(1);
        let entry = self.conns.vacant_entry();
        let Ok(slot) = u32::try_from(entry.key()) else {
            return None; // More than 4 billion connections on one loop: refuse by dropping.
        };
        let id = ConnId {
            slot,
            generation: self.generation,
        };
        let token = Token(id.to_token_value());
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, token, Interest::READABLE)
        {
            tracing::warn!(loop_id = self.id, error = %e, "register failed");
            return None;
        }
        let cfg = &self.shared.config;
        let limits = DecoderLimits {
            message_bytes_max: cfg.message_bytes_max,
        };
        let liveness = Liveness {
            last_rx_ns: self.now_ns,
            handshake_deadline_ns: self.now_ns + cfg.handshake_timeout.as_nanos() as u64,
            ..Liveness::default()
        };
        entry.insert(Conn {
            stream,
            id,
            phase: Phase::Handshaking,
            endpoint,
            head: Vec::new(),
            decoder: Decoder::new(Role::Server, limits),
            outbox: Outbox::new(cfg.outbox_bytes_max, cfg.control_bytes_max),
            name: None,
            subscriptions: Vec::new(),
            liveness,
            dirty: false,
            wants_writable: false,
            close_reason: None,
            close_received: false,
            peer_fin: false,
            gaps_pending: false,
            upgraded: false,
            auth: AuthState::NotRequired,
            peer_ip: ip,
            ip_counted: false,
            msg_bucket: TokenBucket::new(
                cfg.messages_per_s_max,
                cfg.messages_per_s_max,
                self.now_ns,
            ),
            rate_warned: false,
        });
        self.shared.conns_open.fetch_add(1, Ordering::Relaxed);
        self.metrics.inc(Counter::ConnectionsAccepted);
        self.rearm(id);
        Some(id)
    }
}
