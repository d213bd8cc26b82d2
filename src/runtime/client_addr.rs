//! The client address of a relay connection behind load balancers, and when the connection
//! limits are applied to it.
//!
//! Owns: the order of the first steps of a relay connection: with `--proxy-protocol` the PROXY
//! header (`proto::proxy_header`) must come first and names the client; when the address so
//! far belongs to a `--trusted-proxy`, the request head's forwarding header names the client
//! (`proto::forwarded`, rightmost untrusted hop). The process-wide limits of `admission.rs`
//! apply at accept, before any of this; as soon as the address is final the per-IP limits
//! apply to it, once. Everything here happens once per connection, before the upgrade;
//! nothing per message.
//!
//! A missing or malformed PROXY header drops the connection without an answer (the peer is a
//! proxy, and the bytes may not even be HTTP; HAProxy's `proxy-protocol.txt` §2.1: "abort the
//! connection"), counted as `wsrelay_connections_closed_total{reason="proxy_header"}`.

use std::sync::Arc;

use crate::cidr;
use crate::conn_id::ConnId;
use crate::metrics::Counter;
use crate::proto::forwarded::{self, ForwardedHeader};
use crate::proto::handshake::RequestHead;
use crate::proto::proxy_header::{self, Origin, ProxyHeaderError, Version};
use crate::proto::Decode;
use crate::runtime::conn::{Admission, CloseReason, Endpoint};
use crate::runtime::event_loop::EventLoop;

impl EventLoop {
    /// A relay connection was just accepted: the process-wide limits, then await its PROXY
    /// header, or settle its address.
    pub(super) fn start_relay_conn(&mut self, id: ConnId) {
        if !self.admit_process_wide(id) {
            return;
        }
        if self.env.config.proxy_protocol {
            if let Some(conn) = self.conn_mut(id) {
                conn.admission = Admission::AwaitingProxyHeader;
            }
            return;
        }
        self.settle_address(id);
    }

    /// The address known so far is final unless it is a trusted proxy's (then the request
    /// head will name the client). Returns false when the connection was refused.
    fn settle_address(&mut self, id: ConnId) -> bool {
        let trusted = &self.env.config.trusted_proxies;
        let Some(conn) = self.conns.get_mut(id) else {
            return false;
        };
        if cidr::any_contains(trusted, conn.peer_ip) {
            conn.admission = Admission::AwaitingRequestHead;
            return true;
        }
        self.admit(id)
    }

    /// Reads the PROXY header from the front of the connection's buffered input. True when it
    /// was taken and the connection goes on: what follows it (the request head, possibly
    /// already there) stays buffered for the handshake.
    pub(super) fn take_proxy_header(&mut self, id: ConnId) -> bool {
        let Some(conn) = self.conn_mut(id) else {
            return false;
        };
        let header = match proxy_header::parse(conn.head_mut()) {
            Ok(Decode::Partial) => return false,
            Err(e) => {
                self.refuse_proxy_header(id, e);
                return false;
            }
            Ok(Decode::Complete(header, used)) => {
                let head = conn.head_mut();
                head.drain(..used.min(head.len()));
                header
            }
        };
        if let Some(source) = header.source() {
            conn.peer_ip = source.ip().to_canonical();
        }
        conn.admission = Admission::Uncounted;
        let counter = match (header.origin, header.version) {
            (Origin::Relayed { .. }, Version::V1) => Counter::ProxyHeaderV1,
            (Origin::Relayed { .. }, Version::V2) => Counter::ProxyHeaderV2,
            (Origin::Local | Origin::Unknown, _) => Counter::ProxyHeaderLocal,
        };
        self.metrics.inc(counter);
        self.settle_address(id)
    }

    /// Drops a connection whose PROXY header is missing or malformed, without an answer: our
    /// write side is shut at once and the rest of its input is read and discarded (lingering)
    /// so that the close is a FIN, not a reset.
    fn refuse_proxy_header(&mut self, id: ConnId, e: ProxyHeaderError) {
        let counter = match e {
            ProxyHeaderError::Missing => Counter::ProxyHeaderMissing,
            _ => Counter::ProxyHeaderMalformed,
        };
        self.metrics.inc(counter);
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        let peer = conn.peer_ip;
        conn.set_close_reason(CloseReason::ProxyHeader);
        conn.head = None;
        self.warn_refused(e.kind(), &format!("{e} from {peer}; connection dropped"));
        self.linger(id);
    }

    /// A complete request head: when the address so far is a trusted proxy's, its forwarding
    /// header names the client; then the connection limits apply. A forwarding header from any
    /// other peer is ignored (and counted). Returns false when the connection was refused.
    pub(super) fn settle_forwarded(&mut self, id: ConnId, head: &RequestHead<'_>) -> bool {
        let cfg = Arc::clone(&self.env.config);
        let fields = match cfg.forwarded_header {
            ForwardedHeader::XForwardedFor => &head.x_forwarded_for,
            ForwardedHeader::Forwarded => &head.forwarded,
        };
        let Some(conn) = self.conns.get_mut(id) else {
            return false;
        };
        if conn.admission != Admission::AwaitingRequestHead {
            if conn.session.endpoint == Endpoint::Relay && !fields.is_empty() {
                self.metrics.inc(Counter::ForwardedIgnored);
            }
            return true;
        }
        if !fields.is_empty() {
            self.metrics.inc(Counter::ForwardedUsed);
        }
        let trusted = |ip| cidr::any_contains(&cfg.trusted_proxies, ip);
        conn.peer_ip =
            forwarded::client_address(cfg.forwarded_header, fields, conn.peer_ip, trusted);
        conn.admission = Admission::Uncounted;
        self.admit(id)
    }
}
