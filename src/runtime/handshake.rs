//! Handshake phase: read the HTTP request head (after the PROXY header, when one is required:
//! `client_addr.rs`), then either upgrade to WebSocket (RFC 6455 §4.2),
//! answer a plain HTTP endpoint (`/metrics`, `/stats`, `/status`, `/healthz` where metrics are
//! served; `/client.js`, `/client.d.ts` on the relay port), or refuse with a status and a
//! one-line reason. The parsing and the exact response bytes live in `proto::handshake`
//! (sans-IO); this file only routes and queues.

use bytes::Bytes;

use crate::conn_id::ConnId;
use crate::metrics::stats_json::RelayInfo;
use crate::metrics::Counter;
use crate::proto::handshake::{self as hs, RequestHead, REQUEST_HEAD_BYTES_MAX};
use crate::proto::{Decode, HandshakeError};
use crate::runtime::authn::UpgradeAuth;
use crate::runtime::conn::{Admission, Endpoint, Phase};
use crate::runtime::event_loop::{EventLoop, RECV_BUF_BYTES};
use crate::session::Reply;
use crate::web::{self, Asset};

/// Where an accepted request goes.
enum Route {
    Upgrade(Endpoint),
    Http(HttpPath),
    NotFound,
}

/// The plain HTTP endpoints.
#[derive(Clone, Copy)]
enum HttpPath {
    Metrics,
    Stats,
    Healthz,
    /// An embedded web asset (`crate::web`).
    Asset(&'static Asset, Counter),
}

impl EventLoop {
    /// Appends `recv_buf[..n]` to the buffered input: the PROXY header first when it is awaited
    /// (`client_addr.rs`), then the request head, acted on once complete.
    pub(super) fn on_handshake_bytes(&mut self, id: ConnId, n: usize) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        conn.head_mut()
            .extend_from_slice(&self.scratch.recv_buf[..n]);
        if conn.admission == Admission::AwaitingProxyHeader && !self.take_proxy_header(id) {
            return;
        }
        self.parse_head(id);
    }

    /// Parses the buffered request head and acts once it is complete.
    fn parse_head(&mut self, id: ConnId) {
        let Some(conn) = self
            .conn_mut(id)
            .filter(|c| matches!(c.session.phase(), Phase::Handshaking { .. }))
        else {
            return;
        };
        let head_buf = conn.take_head();
        match hs::parse_request_head(&head_buf) {
            Ok(Decode::Partial) if head_buf.len() <= REQUEST_HEAD_BYTES_MAX => {
                if let Some(conn) = self.conn_mut(id) {
                    conn.head = Some(Box::new(head_buf));
                }
            }
            Ok(Decode::Partial) => self.refuse(id, HandshakeError::HeadTooLarge),
            Err(e) => self.refuse(id, e),
            Ok(Decode::Complete(head, used)) => {
                if !self.settle_forwarded(id, &head) {
                    return; // refused by the connection limits
                }
                let upgraded = self.route(id, &head);
                if upgraded {
                    self.decode_leftover(id, head_buf.get(used..).unwrap_or_default());
                }
            }
        }
    }

    /// Acts on a complete request head. Returns true when the connection is now a WebSocket.
    fn route(&mut self, id: ConnId, head: &RequestHead<'_>) -> bool {
        let endpoint = match self.conn_mut(id) {
            Some(c) => c.session.endpoint,
            None => return false,
        };
        match self.classify(endpoint, head) {
            Route::NotFound => self.respond_not_found(id),
            Route::Http(path) => self.respond_http(id, head, path),
            Route::Upgrade(endpoint) => return self.upgrade(id, head, endpoint),
        }
        false
    }

    fn classify(&self, endpoint: Endpoint, head: &RequestHead<'_>) -> Route {
        let http = match head.path {
            "/metrics" => Some(HttpPath::Metrics),
            "/stats" => Some(HttpPath::Stats),
            "/healthz" => Some(HttpPath::Healthz),
            "/status" => Some(HttpPath::Asset(&web::STATUS_HTML, Counter::HttpStatus)),
            _ => None,
        };
        if endpoint == Endpoint::Http {
            return http.map_or(Route::NotFound, Route::Http);
        }
        // The client library is for applications: always on the relay port.
        let client = match head.path {
            "/client.js" => Some(HttpPath::Asset(&web::CLIENT_JS, Counter::HttpClient)),
            "/client.d.ts" => Some(HttpPath::Asset(&web::CLIENT_DTS, Counter::HttpClient)),
            _ => None,
        };
        if let Some(path) = client.filter(|_| !hs::wants_websocket(head)) {
            return Route::Http(path);
        }
        if let Some(path) = http.filter(|_| !hs::wants_websocket(head)) {
            // Served on the relay port only when no separate metrics address is configured.
            if self.env.config.metrics_addr.is_none() {
                return Route::Http(path);
            }
        }
        match head.path {
            "/" | "/ws" => Route::Upgrade(Endpoint::Relay),
            "/echo" if self.env.config.echo_enabled => Route::Upgrade(Endpoint::Echo),
            _ => Route::NotFound,
        }
    }

    /// Validates and answers an upgrade request (RFC 6455 §4.2.1, §4.2.2).
    fn upgrade(&mut self, id: ConnId, head: &RequestHead<'_>, endpoint: Endpoint) -> bool {
        let upgrade = match hs::validate_upgrade(head) {
            Ok(u) => u,
            Err(e) => {
                self.refuse(id, e);
                return false;
            }
        };
        if !self.check_origin(id, upgrade.origin) {
            return false;
        }
        if let UpgradeAuth::Refused = self.auth_at_upgrade(id, upgrade.query, head.cookie) {
            return false;
        }
        let (deflate, extensions) = match self.negotiate_deflate(head) {
            Ok(Some((agreed, answer))) => (Some(agreed), Some(answer)),
            Ok(None) => (None, None),
            Err(e) => {
                self.refuse(id, e);
                return false;
            }
        };
        let cfg = &self.env.config;
        let protocol = hs::select_protocol(upgrade.protocols, &cfg.subprotocols);
        let mut response = Vec::with_capacity(160);
        let accept = hs::accept_key(upgrade.key);
        hs::encode_switching_protocols(&mut response, &accept, protocol, extensions.as_deref());
        let Some(conn) = self.conn_mut(id) else {
            return false;
        };
        if deflate.is_some() {
            conn.session.allow_compressed();
        }
        conn.deflate = deflate;
        conn.session.upgrade(endpoint, Bytes::from(response));
        self.conns.websocket_opened();
        self.metrics.inc(Counter::HandshakesCompleted);
        if endpoint == Endpoint::Relay {
            self.send_connected(id);
        }
        self.mark_dirty(id);
        self.rearm(id);
        true
    }

    /// Sends `{"type":"connected","id":...,"addr":...}`: `addr` is the client's address as the
    /// relay sees it (from the PROXY header or a trusted proxy's forwarding header, if any),
    /// told to the client itself only.
    fn send_connected(&mut self, id: ConnId) {
        let loop_id = self.id;
        let node = self.cluster_node();
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        let id_string = conn.id_string(node.as_deref(), loop_id);
        let addr = conn.peer_ip.to_string();
        // Right after the upgrade: queued (the loop marks the connection dirty next).
        let _ = conn.session.reply(Reply::Connected {
            id: &id_string,
            addr: &addr,
        });
    }

    /// Frames that arrived in the same read as the end of the request head.
    fn decode_leftover(&mut self, id: ConnId, leftover: &[u8]) {
        for chunk in leftover.chunks(RECV_BUF_BYTES) {
            self.scratch.recv_buf[..chunk.len()].copy_from_slice(chunk);
            self.decode(id, 0, chunk.len());
        }
    }

    /// Refuses a bad request with its status and one-line reason, then closes.
    pub(super) fn refuse(&mut self, id: ConnId, err: HandshakeError) {
        let mut out = Vec::with_capacity(192);
        hs::encode_handshake_error(&mut out, err);
        self.metrics
            .inc_opt(Counter::handshake_rejected(err.status()));
        self.warn_refused(err.kind(), err.reason());
        self.respond(id, out);
    }

    fn respond_not_found(&mut self, id: ConnId) {
        let mut out = Vec::with_capacity(160);
        let body = b"not found: WebSocket endpoints are / and /ws\n";
        hs::encode_http_response(&mut out, 404, "Not Found", "text/plain", &[], body);
        self.metrics.inc(Counter::HandshakeRejected404);
        self.metrics.inc(Counter::HttpNotFound);
        self.respond(id, out);
    }

    /// Serves `/metrics`, `/stats`, `/healthz` or an embedded asset (GET only).
    fn respond_http(&mut self, id: ConnId, head: &RequestHead<'_>, path: HttpPath) {
        let mut out = Vec::with_capacity(4096);
        if head.method != "GET" {
            let headers = [("Allow", "GET")];
            let body = b"method not allowed\n";
            let status = (405, "Method Not Allowed");
            hs::encode_http_response(&mut out, status.0, status.1, "text/plain", &headers, body);
            return self.respond(id, out);
        }
        if matches!(path, HttpPath::Healthz) && !self.cluster_ready() {
            // Cluster mode without a working NATS connection: not ready (503).
            self.metrics.inc(Counter::HttpHealthz);
            let body = b"not ready: NATS not connected\n";
            let status = (503, "Service Unavailable");
            hs::encode_http_response(&mut out, status.0, status.1, "text/plain", &[], body);
            return self.respond(id, out);
        }
        let mut body = String::new();
        let (counter, content_type, headers, bytes): (_, _, &[(&str, &str)], _) = match path {
            HttpPath::Metrics => {
                self.render_metrics(&mut body);
                let content_type = crate::metrics::PROMETHEUS_CONTENT_TYPE;
                (Counter::HttpMetrics, content_type, &[], body.as_bytes())
            }
            HttpPath::Stats => {
                self.render_stats(&mut body);
                let content_type = crate::metrics::STATS_JSON_CONTENT_TYPE;
                (Counter::HttpStats, content_type, &[], body.as_bytes())
            }
            HttpPath::Healthz => (Counter::HttpHealthz, "text/plain", &[], b"ok\n".as_slice()),
            HttpPath::Asset(asset, counter) => {
                (counter, asset.content_type, asset.headers, asset.body)
            }
        };
        self.metrics.inc(counter);
        hs::encode_http_response(&mut out, 200, "OK", content_type, headers, bytes);
        self.respond(id, out);
    }

    /// False in cluster mode while NATS is not connected (`/healthz` answers 503).
    fn cluster_ready(&self) -> bool {
        let cluster = self.env.shared.cluster.as_ref();
        cluster.is_none_or(|c| c.is_ready())
    }

    /// The Prometheus page: the loops' metrics and, in cluster mode, the bridge's.
    fn render_metrics(&self, body: &mut String) {
        self.env.shared.with_export(|e| e.render_prometheus(body));
        if let Some(cluster) = &self.env.shared.cluster {
            cluster.render_prometheus(body);
        }
    }

    /// The `/stats` JSON document (with the `cluster` member in cluster mode).
    fn render_stats(&self, body: &mut String) {
        let relay = RelayInfo {
            version: crate::VERSION,
            revision: crate::GIT_REVISION,
            uptime_ms: self.now_ns / 1_000_000,
        };
        self.env
            .shared
            .with_export(|e| e.render_stats_json_with(&relay, body));
        if let Some(cluster) = &self.env.shared.cluster {
            crate::metrics::stats_json::append_member(body, "cluster", |out| {
                cluster.write_stats_json(out);
            });
        }
    }

    /// Queues a complete HTTP response; the connection closes once it is written.
    pub(super) fn respond(&mut self, id: ConnId, response: Vec<u8>) {
        let (now_ns, t) = (self.now_ns, self.env.timeouts);
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        conn.session.respond(now_ns, Bytes::from(response), &t);
        self.mark_dirty(id);
        self.rearm(id);
    }
}
