//! Counter series: the closed set in [`Counter`] plus the two bounded label maps for series
//! whose label values are open-ended ([`CloseCodeCounts`], [`LabeledCounts`]).
//!
//! Owns: metric family metadata ([`Family`]) and the counting containers.
//! May not touch: histograms, gauges, export formats (see `latency`, `snapshot`, `prometheus`).
//!
//! Invariants:
//! - Every [`Counter`] variant maps to exactly one `(family, label value)` pair, and the variants
//!   of one family are contiguous in [`Counter::ALL`] so exporters emit each family once.
//! - Counters only ever increase (wrapping is impossible in practice: 2^64 events).
//! - [`CloseCodeCounts`] and [`LabeledCounts`] hold a bounded number of series whatever the
//!   peers send: unknown values fold into the [`OVERFLOW_LABEL`] series.

/// Label value of the series that absorbs values past a map's bound (or unknown close codes).
pub const OVERFLOW_LABEL: &str = "other";

/// Prometheus metric type of a family (text exposition format 0.0.4 `# TYPE` keyword).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Monotonically increasing count; family name ends in `_total`.
    Counter,
    /// Point-in-time value that may go up or down.
    Gauge,
    /// Quantiles plus `_sum` and `_count`.
    Summary,
}

impl MetricKind {
    /// The keyword used on the `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Summary => "summary",
        }
    }
}

/// Static description of one exported metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    /// Full Prometheus name, e.g. `wsrelay_frames_sent_total`.
    pub name: &'static str,
    /// One-line `# HELP` text.
    pub help: &'static str,
    /// Metric type.
    pub kind: MetricKind,
    /// The single label key of this family's series, if any.
    pub label_key: Option<&'static str>,
}

const fn counter(name: &'static str, help: &'static str, key: Option<&'static str>) -> Family {
    Family {
        name,
        help,
        kind: MetricKind::Counter,
        label_key: key,
    }
}

/// Counter families, in export order.
pub mod families {
    use super::{counter, Family};

    /// TCP connections accepted by a loop.
    pub const CONNECTIONS_ACCEPTED: Family = counter(
        "wsrelay_connections_accepted_total",
        "TCP connections accepted.",
        None,
    );
    /// Upgrades completed (101 sent).
    pub const HANDSHAKES_COMPLETED: Family = counter(
        "wsrelay_handshakes_completed_total",
        "WebSocket upgrades completed (101 Switching Protocols sent).",
        None,
    );
    /// accept(2) failures (EMFILE and friends).
    pub const ACCEPT_ERRORS: Family = counter(
        "wsrelay_accept_errors_total",
        "accept(2) calls that failed, by reason (descriptor or kernel memory exhaustion).",
        Some("reason"),
    );
    /// Connections closed, by reason.
    pub const CONNECTIONS_CLOSED: Family = counter(
        "wsrelay_connections_closed_total",
        "Connections closed, by reason.",
        Some("reason"),
    );
    /// Close codes the server sent.
    pub const CLOSE_CODES_SENT: Family = counter(
        "wsrelay_close_codes_sent_total",
        "WebSocket Close frames sent, by close code (unknown codes as \"other\").",
        Some("code"),
    );
    /// Close codes received from clients.
    pub const CLOSE_CODES_RECEIVED: Family = counter(
        "wsrelay_close_codes_received_total",
        "WebSocket Close frames received, by close code (unknown codes as \"other\").",
        Some("code"),
    );
    /// Opening handshakes refused, by HTTP status.
    pub const HANDSHAKES_REJECTED: Family = counter(
        "wsrelay_handshakes_rejected_total",
        "Opening handshakes rejected, by HTTP status sent.",
        Some("status"),
    );
    /// Plain HTTP requests served, by path.
    pub const HTTP_REQUESTS: Family = counter(
        "wsrelay_http_requests_total",
        "Plain HTTP requests served, by path.",
        Some("path"),
    );
    /// Frames read, by opcode.
    pub const FRAMES_RECEIVED: Family = counter(
        "wsrelay_frames_received_total",
        "WebSocket frames received, by opcode.",
        Some("opcode"),
    );
    /// Frames written, by opcode.
    pub const FRAMES_SENT: Family = counter(
        "wsrelay_frames_sent_total",
        "WebSocket frames sent, by opcode.",
        Some("opcode"),
    );
    /// Bytes read from sockets.
    pub const RECEIVED_BYTES: Family = counter(
        "wsrelay_received_bytes_total",
        "Bytes read from client sockets.",
        None,
    );
    /// Bytes written to sockets.
    pub const SENT_BYTES: Family = counter(
        "wsrelay_sent_bytes_total",
        "Bytes written to client sockets.",
        None,
    );
    /// Publish commands accepted, by payload encoding.
    pub const MESSAGES_PUBLISHED: Family = counter(
        "wsrelay_messages_published_total",
        "Messages published, by payload encoding.",
        Some("encoding"),
    );
    /// Deliveries: one per subscriber that had the frame queued.
    pub const MESSAGES_DELIVERED: Family = counter(
        "wsrelay_messages_delivered_total",
        "Message deliveries queued, one per subscriber.",
        None,
    );
    /// Codec protocol violations, by kind (open label set).
    pub const PROTOCOL_ERRORS: Family = counter(
        "wsrelay_protocol_errors_total",
        "WebSocket protocol violations detected, by kind.",
        Some("kind"),
    );
    /// Rejected client commands, by kind (open label set).
    pub const COMMAND_ERRORS: Family = counter(
        "wsrelay_command_errors_total",
        "Client commands rejected, by kind.",
        Some("kind"),
    );
    /// Timer expiries, by timer kind.
    pub const TIMER_EXPIRIES: Family = counter(
        "wsrelay_timer_expiries_total",
        "Timers expired, by kind.",
        Some("kind"),
    );
    /// Frames not queued, by reason.
    pub const QUEUE_DROPS: Family = counter(
        "wsrelay_queue_drops_total",
        "Outbound messages dropped instead of queued, by reason.",
        Some("reason"),
    );
    /// Cross-loop mesh messages sent.
    pub const MESH_MESSAGES_SENT: Family = counter(
        "wsrelay_mesh_messages_sent_total",
        "Messages sent to other event loops.",
        None,
    );
    /// Cross-loop mesh messages received.
    pub const MESH_MESSAGES_RECEIVED: Family = counter(
        "wsrelay_mesh_messages_received_total",
        "Messages received from other event loops.",
        None,
    );
    /// Wakeups signalled to other loops.
    pub const MESH_WAKEUPS: Family = counter(
        "wsrelay_mesh_wakeups_total",
        "Wakeups signalled to other event loops.",
        None,
    );
    /// WebSocket Pings sent by the heartbeat.
    pub const HEARTBEAT_PINGS_SENT: Family = counter(
        "wsrelay_heartbeat_pings_sent_total",
        "Heartbeat Ping frames sent.",
        None,
    );
    /// Event-loop iterations.
    pub const LOOP_TURNS: Family = counter(
        "wsrelay_loop_turns_total",
        "Event loop iterations (poll returns).",
        None,
    );
    /// Configuration reloads (SIGHUP), by result; counted by the exporter, once per process.
    pub const CONFIG_RELOADS: Family = counter(
        "wsrelay_config_reloads_total",
        "Configuration reloads (SIGHUP), by result: ok (applied) or error (the old one stays).",
        Some("result"),
    );
    /// Retained messages evicted for the history byte budget.
    pub const HISTORY_EVICTED: Family = counter(
        "wsrelay_history_evicted_total",
        "Retained history messages evicted, oldest first, to stay within --history-max-bytes.",
        None,
    );
    /// Keys evicted from keyed snapshots, by the limit that evicted them.
    pub const SNAPSHOT_EVICTED: Family = counter(
        "wsrelay_snapshot_evicted_total",
        "Keys evicted from channel snapshots, least recently updated first, by limit \
         (--snapshot-max-keys, --snapshot-max-bytes).",
        Some("limit"),
    );
    /// Deliveries queued to throttled subscribers (also in `MESSAGES_DELIVERED`).
    pub const THROTTLE_DELIVERED: Family = counter(
        "wsrelay_throttled_deliveries_total",
        "Deliveries queued to throttled subscribers (latest value per key, at most every \
         throttle_ms); also counted in wsrelay_messages_delivered_total.",
        None,
    );
    /// Keys evicted from a loop's latest values for throttled subscribers.
    pub const THROTTLE_KEYS_EVICTED: Family = counter(
        "wsrelay_throttle_keys_evicted_total",
        "Keys evicted, least recently updated first, from a channel's latest values kept for \
         throttled subscribers (--throttle-max-keys).",
        None,
    );
    /// Socket system calls that moved bytes, by direction: deliveries per write is the
    /// batching the relay achieved.
    pub const SOCKET_SYSCALLS: Family = counter(
        "wsrelay_socket_syscalls_total",
        "Socket reads and writes that moved bytes, by direction.",
        Some("direction"),
    );
    /// permessage-deflate negotiations, by outcome.
    pub const DEFLATE_NEGOTIATIONS: Family = counter(
        "wsrelay_deflate_negotiations_total",
        "permessage-deflate offers answered (RFC 7692), by outcome: shared (no server context takeover), takeover (own context), declined (no acceptable offer).",
        Some("outcome"),
    );
    /// Messages compressed, by mode.
    pub const DEFLATE_COMPRESSIONS: Family = counter(
        "wsrelay_deflate_compressions_total",
        "Messages compressed: shared (once per run and window, for every subscriber) or per connection (context takeover).",
        Some("mode"),
    );
    /// Messages inflated, by outcome.
    pub const DEFLATE_INFLATIONS: Family = counter(
        "wsrelay_deflate_inflations_total",
        "Compressed messages received, by outcome: ok, too_big (closed 1009), bad_data (closed 1007).",
        Some("outcome"),
    );
    /// PROXY protocol headers (`--proxy-protocol`), by outcome.
    pub const PROXY_HEADERS: Family = counter(
        "wsrelay_proxy_headers_total",
        "PROXY protocol headers read (v1, v2: client address taken; local: the proxy's own \
         connection, TCP peer used) or refused (missing, malformed), with --proxy-protocol.",
        Some("result"),
    );
    /// Room ticks (`--tick-for`), by event.
    pub const TICKS: Family = counter(
        "wsrelay_ticks_total",
        "Room ticks (--tick-for): batches encoded (one per room per tick with messages), \
         extra frames of batches split at --max-message-size, ticks forced early by a full hold.",
        Some("event"),
    );
    /// Presence changes (`--presence-for`), by event.
    pub const PRESENCE_EVENTS: Family = counter(
        "wsrelay_presence_events_total",
        "Presence (--presence-for): joins and leaves, changes coalesced away under load (a \
         join and leave within one window), full lists sent instead of a burst, lists capped \
         at --presence-max-list.",
        Some("event"),
    );
    /// Forwarding headers (`X-Forwarded-For` or `Forwarded`), by what was done with them.
    pub const FORWARDED_HEADERS: Family = counter(
        "wsrelay_forwarded_headers_total",
        "Requests with the forwarding header (--forwarded-header): used (sent by a \
         --trusted-proxy) or ignored (sent by any other peer).",
        Some("result"),
    );
    /// TLS handshakes on the relay port (`--tls-cert`), by outcome.
    pub const TLS_HANDSHAKES: Family = counter(
        "wsrelay_tls_handshakes_total",
        "TLS handshakes on the relay port: ok, or failed: not_tls (plain text to the TLS port, \
         answered 400 in plain text), client_certificate (missing, expired, untrusted: mTLS), \
         failed (a bad client hello, no common version, suite or ALPN protocol).",
        Some("result"),
    );
}

/// Static metadata of one [`Counter`] series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesMeta {
    /// The family the series belongs to.
    pub family: &'static Family,
    /// The value of the family's label key, `None` for unlabeled families.
    pub label_value: Option<&'static str>,
}

/// Declares [`Counter`], [`Counter::ALL`] and the metadata table from one list so the three
/// can never disagree (the metadata array is typed `[_; Counter::COUNT]`).
macro_rules! define_counters {
    ($( $(#[$attr:meta])* $variant:ident => $family:ident $([$value:literal])? ,)*) => {
        /// One counter series with a fixed label set. Backed by `[u64; Counter::COUNT]`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Counter {
            $( $(#[$attr])* $variant, )*
        }

        impl Counter {
            /// Every series, in export order (families contiguous).
            pub const ALL: &'static [Counter] = &[$( Counter::$variant, )*];
            /// Number of series.
            pub const COUNT: usize = Self::ALL.len();
            const META: [SeriesMeta; Self::COUNT] = [$(
                SeriesMeta {
                    family: &families::$family,
                    label_value: define_counters!(@label $($value)?),
                },
            )*];
        }
    };
    (@label) => { None };
    (@label $value:literal) => { Some($value) };
}

define_counters! {
    /// A TCP connection was accepted.
    ConnectionsAccepted => CONNECTIONS_ACCEPTED,
    /// Closing handshake initiated by the client completed.
    ClosedClientClose => CONNECTIONS_CLOSED ["client_close"],
    /// Closed with 1002 after an RFC 6455 framing violation.
    ClosedProtocolError => CONNECTIONS_CLOSED ["protocol_error"],
    /// Closed with 1007: a text message was not UTF-8 (RFC 6455 §8.1).
    ClosedInvalidUtf8 => CONNECTIONS_CLOSED ["invalid_utf8"],
    /// Closed with 1009: message exceeded the configured size limit.
    ClosedMessageTooBig => CONNECTIONS_CLOSED ["message_too_big"],
    /// Closed because the outbox exceeded its limit.
    ClosedSlowConsumer => CONNECTIONS_CLOSED ["slow_consumer"],
    /// Closed because no Pong arrived in time.
    ClosedHeartbeatTimeout => CONNECTIONS_CLOSED ["heartbeat_timeout"],
    /// Closed because the opening handshake did not complete in time.
    ClosedHandshakeTimeout => CONNECTIONS_CLOSED ["handshake_timeout"],
    /// Dropped because the peer never answered our Close frame.
    ClosedCloseTimeout => CONNECTIONS_CLOSED ["close_timeout"],
    /// Closed after the idle period without traffic.
    ClosedIdleTimeout => CONNECTIONS_CLOSED ["idle_timeout"],
    /// Closed because authentication was refused.
    ClosedAuthFailed => CONNECTIONS_CLOSED ["auth_failed"],
    /// Closed because authentication did not happen in time.
    ClosedAuthTimeout => CONNECTIONS_CLOSED ["auth_timeout"],
    /// Closed for exceeding a rate limit.
    ClosedRateLimited => CONNECTIONS_CLOSED ["rate_limited"],
    /// Closed with 1001 during server shutdown.
    ClosedShutdown => CONNECTIONS_CLOSED ["shutdown"],
    /// Dropped after a socket I/O error.
    ClosedIoError => CONNECTIONS_CLOSED ["io_error"],
    /// Peer closed TCP (EOF) without a Close frame.
    ClosedPeerReset => CONNECTIONS_CLOSED ["peer_reset"],
    /// Refused because the connection limit was reached.
    ClosedServerFull => CONNECTIONS_CLOSED ["server_full"],
    /// A plain HTTP request (metrics, refusal) was answered and the connection closed.
    ClosedHttpDone => CONNECTIONS_CLOSED ["http_done"],
    /// Closed with 1008: pings arrived faster than their pongs could be written.
    ClosedPingFlood => CONNECTIONS_CLOSED ["ping_flood"],
    /// Dropped without an answer: the PROXY protocol header was missing or malformed.
    ClosedProxyHeader => CONNECTIONS_CLOSED ["proxy_header"],
    /// Closed on a TLS failure: a failed handshake or a bad record after it (an alert sent).
    ClosedTls => CONNECTIONS_CLOSED ["tls"],
    /// Accepted at the file-descriptor limit with the reserve descriptor, answered 503 and
    /// closed so that the listen backlog drains.
    ClosedDescriptorLimit => CONNECTIONS_CLOSED ["descriptor_limit"],
    /// Upgrades completed.
    HandshakesCompleted => HANDSHAKES_COMPLETED,
    /// accept(2) failed with EMFILE: the process's descriptor limit.
    AcceptErrorsEmfile => ACCEPT_ERRORS ["emfile"],
    /// accept(2) failed with ENFILE: the system's descriptor limit.
    AcceptErrorsEnfile => ACCEPT_ERRORS ["enfile"],
    /// accept(2) failed with ENOBUFS or ENOMEM: kernel memory.
    AcceptErrorsNoMemory => ACCEPT_ERRORS ["no_memory"],
    /// accept(2) failed otherwise (e.g. ECONNABORTED).
    AcceptErrorsOther => ACCEPT_ERRORS ["other"],
    /// Handshake answered `400 Bad Request` (RFC 6455 §4.2.1 requirements not met).
    HandshakeRejected400 => HANDSHAKES_REJECTED ["400"],
    /// 401: the `token` query parameter did not verify.
    HandshakeRejected401 => HANDSHAKES_REJECTED ["401"],
    /// Handshake answered `403 Forbidden` (e.g. Origin refused).
    HandshakeRejected403 => HANDSHAKES_REJECTED ["403"],
    /// Handshake answered `404 Not Found`.
    HandshakeRejected404 => HANDSHAKES_REJECTED ["404"],
    /// Handshake answered `426 Upgrade Required` (unsupported `Sec-WebSocket-Version`).
    HandshakeRejected426 => HANDSHAKES_REJECTED ["426"],
    /// Handshake answered `431 Request Header Fields Too Large`.
    HandshakeRejected431 => HANDSHAKES_REJECTED ["431"],
    /// Handshake answered `503 Service Unavailable`.
    HandshakeRejected503 => HANDSHAKES_REJECTED ["503"],
    /// `GET /metrics` served.
    HttpMetrics => HTTP_REQUESTS ["metrics"],
    /// `GET /stats` served.
    HttpStats => HTTP_REQUESTS ["stats"],
    /// `GET /healthz` served.
    HttpHealthz => HTTP_REQUESTS ["healthz"],
    /// `GET /status` served (the live status page).
    HttpStatus => HTTP_REQUESTS ["status"],
    /// `GET /client.js` or `GET /client.d.ts` served (the browser client library).
    HttpClient => HTTP_REQUESTS ["client"],
    /// Any other plain HTTP path.
    HttpNotFound => HTTP_REQUESTS ["not_found"],
    /// Text frame received (opcode 0x1).
    FramesReceivedText => FRAMES_RECEIVED ["text"],
    /// Binary frame received (opcode 0x2).
    FramesReceivedBinary => FRAMES_RECEIVED ["binary"],
    /// Continuation frame received (opcode 0x0).
    FramesReceivedContinuation => FRAMES_RECEIVED ["continuation"],
    /// Ping frame received (opcode 0x9).
    FramesReceivedPing => FRAMES_RECEIVED ["ping"],
    /// Pong frame received (opcode 0xA).
    FramesReceivedPong => FRAMES_RECEIVED ["pong"],
    /// Close frame received (opcode 0x8).
    FramesReceivedClose => FRAMES_RECEIVED ["close"],
    /// Text frame sent (opcode 0x1).
    FramesSentText => FRAMES_SENT ["text"],
    /// Binary frame sent (opcode 0x2).
    FramesSentBinary => FRAMES_SENT ["binary"],
    /// Continuation frame sent (opcode 0x0).
    FramesSentContinuation => FRAMES_SENT ["continuation"],
    /// Ping frame sent (opcode 0x9).
    FramesSentPing => FRAMES_SENT ["ping"],
    /// Pong frame sent (opcode 0xA).
    FramesSentPong => FRAMES_SENT ["pong"],
    /// Close frame sent (opcode 0x8).
    FramesSentClose => FRAMES_SENT ["close"],
    /// Bytes read from client sockets (add the `read` return value).
    ReceivedBytes => RECEIVED_BYTES,
    /// Bytes written to client sockets (add the `write` return value).
    SentBytes => SENT_BYTES,
    /// Publish with a JSON payload accepted.
    PublishedJson => MESSAGES_PUBLISHED ["json"],
    /// Publish with a binary payload accepted.
    PublishedBinary => MESSAGES_PUBLISHED ["binary"],
    /// One subscriber had a published frame queued.
    MessagesDelivered => MESSAGES_DELIVERED,
    /// Heartbeat timer fired and a Ping is due.
    TimerHeartbeatPing => TIMER_EXPIRIES ["heartbeat_ping"],
    /// Pong deadline passed.
    TimerHeartbeatTimeout => TIMER_EXPIRIES ["heartbeat_timeout"],
    /// Opening handshake deadline passed.
    TimerHandshake => TIMER_EXPIRIES ["handshake"],
    /// Closing handshake deadline passed.
    TimerClose => TIMER_EXPIRIES ["close"],
    /// Idle deadline passed.
    TimerIdle => TIMER_EXPIRIES ["idle"],
    /// Authentication deadline passed.
    TimerAuth => TIMER_EXPIRIES ["auth"],
    /// Dropped because the subscriber's outbox was over its limit.
    DropSlowConsumer => QUEUE_DROPS ["slow_consumer_drop"],
    /// Replaced by a newer message on a conflating channel.
    DropConflated => QUEUE_DROPS ["conflated"],
    /// Subscriber no longer open (closing or closed).
    DropNotOpen => QUEUE_DROPS ["not_open"],
    /// Cross-loop mesh queue was full.
    DropMeshFull => QUEUE_DROPS ["mesh_full"],
    /// Parked cross-loop message removed or cancelled by a newer one (`runtime/mesh.rs`).
    DropMeshMerged => QUEUE_DROPS ["mesh_merged"],
    /// Deliveries discarded because the subscriber was closed for the `close` policy.
    DropSlowConsumerClose => QUEUE_DROPS ["slow_consumer_close"],
    /// Message pushed to another loop's mesh inbox.
    MeshMessagesSent => MESH_MESSAGES_SENT,
    /// Message popped from this loop's mesh inbox.
    MeshMessagesReceived => MESH_MESSAGES_RECEIVED,
    /// Wakeup signalled to another loop.
    MeshWakeups => MESH_WAKEUPS,
    /// Heartbeat Ping frame sent.
    HeartbeatPingsSent => HEARTBEAT_PINGS_SENT,
    /// One event-loop iteration.
    LoopTurns => LOOP_TURNS,
    /// A retained message was evicted for the history byte budget.
    HistoryEvicted => HISTORY_EVICTED,
    /// A room's tick batch was encoded (one per room per tick with messages).
    TickBatches => TICKS ["batch"],
    /// A batch frame beyond the first (split at `--max-message-size` or by encoding).
    TickSplits => TICKS ["split"],
    /// A room ticked early because its held publishes reached the publish-queue bounds.
    TickForced => TICKS ["forced"],
    /// A member joined a presence channel.
    PresenceJoins => PRESENCE_EVENTS ["join"],
    /// A member left a presence channel.
    PresenceLeaves => PRESENCE_EVENTS ["leave"],
    /// A held change cancelled by its opposite within one storm window.
    PresenceCoalesced => PRESENCE_EVENTS ["coalesced"],
    /// A list was sent instead of more held changes than `--presence-max-list`.
    PresenceResync => PRESENCE_EVENTS ["list_instead"],
    /// A presence list left members out (`--presence-max-list`; the count stays exact).
    PresenceListCapped => PRESENCE_EVENTS ["list_capped"],
    /// A snapshot key was evicted beyond `--snapshot-max-keys`.
    SnapshotEvictedKeys => SNAPSHOT_EVICTED ["max_keys"],
    /// A snapshot key was evicted beyond `--snapshot-max-bytes`.
    SnapshotEvictedBytes => SNAPSHOT_EVICTED ["max_bytes"],
    /// A delivery was queued to a throttled subscriber.
    ThrottleDelivered => THROTTLE_DELIVERED,
    /// A key was evicted from the latest values kept for throttled subscribers.
    ThrottleKeysEvicted => THROTTLE_KEYS_EVICTED,
    /// A read from a client socket returned bytes.
    SocketReads => SOCKET_SYSCALLS ["read"],
    /// A write (`sendmsg`) to a client socket took bytes.
    SocketWrites => SOCKET_SYSCALLS ["write"],
    /// A v1 PROXY header named the client.
    ProxyHeaderV1 => PROXY_HEADERS ["v1"],
    /// A v2 PROXY header named the client.
    ProxyHeaderV2 => PROXY_HEADERS ["v2"],
    /// A valid PROXY header without a client address (v2 LOCAL, v1 UNKNOWN, v2 AF_UNSPEC or
    /// AF_UNIX): the TCP peer's address is used.
    ProxyHeaderLocal => PROXY_HEADERS ["local"],
    /// The connection did not start with a PROXY header.
    ProxyHeaderMissing => PROXY_HEADERS ["missing"],
    /// The PROXY header broke a rule of the spec.
    ProxyHeaderMalformed => PROXY_HEADERS ["malformed"],
    /// A trusted proxy's forwarding header named the client.
    ForwardedUsed => FORWARDED_HEADERS ["used"],
    /// A forwarding header from a peer that is not a trusted proxy was ignored.
    ForwardedIgnored => FORWARDED_HEADERS ["ignored"],
    /// A TLS handshake completed.
    TlsHandshakeOk => TLS_HANDSHAKES ["ok"],
    /// The first bytes on the TLS port were not a TLS record (plain HTTP or WebSocket).
    TlsHandshakeNotTls => TLS_HANDSHAKES ["not_tls"],
    /// The client certificate was missing, expired or not signed by `--tls-client-ca`.
    TlsHandshakeClientCertificate => TLS_HANDSHAKES ["client_certificate"],
    /// Any other handshake failure (malformed client hello, nothing in common, an alert).
    TlsHandshakeFailed => TLS_HANDSHAKES ["failed"],
    /// Offer accepted without server context takeover (the shared compressed copy).
    DeflateShared => DEFLATE_NEGOTIATIONS ["shared"],
    /// Offer accepted with a per-connection compression context.
    DeflateTakeover => DEFLATE_NEGOTIATIONS ["takeover"],
    /// permessage-deflate offered, no offer acceptable: no compression.
    DeflateDeclined => DEFLATE_NEGOTIATIONS ["declined"],
    /// One message compressed once for every subscriber of a run (shared mode).
    DeflateCompressedShared => DEFLATE_COMPRESSIONS ["shared"],
    /// One message compressed for one connection (context takeover, or an echo).
    DeflateCompressedConn => DEFLATE_COMPRESSIONS ["connection"],
    /// A compressed message inflated.
    InflateOk => DEFLATE_INFLATIONS ["ok"],
    /// A compressed message inflated beyond --max-message-size: closed 1009.
    InflateTooBig => DEFLATE_INFLATIONS ["too_big"],
    /// A compressed message that is not valid DEFLATE: closed 1007.
    InflateBadData => DEFLATE_INFLATIONS ["bad_data"],
}

impl Counter {
    /// Position of this series in a `[u64; Counter::COUNT]` array.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Static metadata of this series.
    pub fn meta(self) -> &'static SeriesMeta {
        &Self::META[self.index()]
    }

    /// The family this series belongs to.
    pub fn family(self) -> &'static Family {
        self.meta().family
    }

    /// The label value (for the family's label key), if the family is labeled.
    pub fn label_value(self) -> Option<&'static str> {
        self.meta().label_value
    }

    /// Series for a received frame, by RFC 6455 §5.2 opcode; `None` for reserved opcodes.
    pub fn frame_received(opcode: u8) -> Option<Counter> {
        let series = match opcode {
            0x0 => Counter::FramesReceivedContinuation,
            0x1 => Counter::FramesReceivedText,
            0x2 => Counter::FramesReceivedBinary,
            0x8 => Counter::FramesReceivedClose,
            0x9 => Counter::FramesReceivedPing,
            0xA => Counter::FramesReceivedPong,
            _ => return None,
        };
        Some(series)
    }

    /// Series for a sent frame, by RFC 6455 §5.2 opcode; `None` for reserved opcodes.
    pub fn frame_sent(opcode: u8) -> Option<Counter> {
        let series = match opcode {
            0x0 => Counter::FramesSentContinuation,
            0x1 => Counter::FramesSentText,
            0x2 => Counter::FramesSentBinary,
            0x8 => Counter::FramesSentClose,
            0x9 => Counter::FramesSentPing,
            0xA => Counter::FramesSentPong,
            _ => return None,
        };
        Some(series)
    }

    /// Series for a rejected handshake, by HTTP status; `None` for statuses not tracked.
    pub fn handshake_rejected(status: u16) -> Option<Counter> {
        let series = match status {
            400 => Counter::HandshakeRejected400,
            401 => Counter::HandshakeRejected401,
            403 => Counter::HandshakeRejected403,
            404 => Counter::HandshakeRejected404,
            426 => Counter::HandshakeRejected426,
            431 => Counter::HandshakeRejected431,
            503 => Counter::HandshakeRejected503,
            _ => return None,
        };
        Some(series)
    }
}

/// Close codes with their own series (RFC 6455 §7.4.1 codes plus the relay's 4xxx codes),
/// sorted ascending for binary search.
pub const KNOWN_CLOSE_CODES: [u16; 17] = [
    1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 4001, 4003, 4008, 4100, 4101, 4102, 4200,
    4201,
];

/// Label values of a [`CloseCodeCounts`], index-aligned with [`KNOWN_CLOSE_CODES`] and the
/// trailing [`OVERFLOW_LABEL`] slot.
pub const CLOSE_CODE_LABELS: [&str; CLOSE_CODE_SLOTS] = [
    "1000",
    "1001",
    "1002",
    "1003",
    "1007",
    "1008",
    "1009",
    "1010",
    "1011",
    "4001",
    "4003",
    "4008",
    "4100",
    "4101",
    "4102",
    "4200",
    "4201",
    OVERFLOW_LABEL,
];

/// Known codes plus one overflow slot.
pub const CLOSE_CODE_SLOTS: usize = KNOWN_CLOSE_CODES.len() + 1;

/// Counts per close code. Bounded policy: a fixed slot per [`KNOWN_CLOSE_CODES`] entry and one
/// [`OVERFLOW_LABEL`] slot for any other code (peers may send any 3000-4999 code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CloseCodeCounts {
    counts: [u64; CLOSE_CODE_SLOTS],
}

impl CloseCodeCounts {
    /// Counts one occurrence of `code`.
    pub fn record(&mut self, code: u16) {
        let slot = KNOWN_CLOSE_CODES
            .binary_search(&code)
            .unwrap_or(KNOWN_CLOSE_CODES.len());
        if let Some(count) = self.counts.get_mut(slot) {
            *count += 1;
        }
    }

    /// Count recorded under `label` (a code such as `"1000"` or [`OVERFLOW_LABEL`]).
    pub fn get(&self, label: &str) -> u64 {
        self.iter()
            .find(|(l, _)| *l == label)
            .map_or(0, |(_, count)| count)
    }

    /// `(label, count)` for every slot, known codes ascending, overflow last.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        CLOSE_CODE_LABELS.iter().copied().zip(self.counts)
    }

    /// Adds every slot of `other` into `self` (used to sum loops).
    pub fn merge(&mut self, other: &CloseCodeCounts) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine = mine.saturating_add(theirs);
        }
    }
}

/// Bound of [`LabeledCounts`]: distinct labels kept before folding into [`OVERFLOW_LABEL`].
pub const LABELED_DISTINCT_MAX: usize = 32;

/// Counts per `&'static str` label for rare-path families whose label set is open
/// (codec protocol errors, command errors). Linear scan: these events are rare and the set is
/// small. Bounded policy: at most [`LABELED_DISTINCT_MAX`] distinct labels, later new labels
/// count under [`OVERFLOW_LABEL`] (so at most `LABELED_DISTINCT_MAX + 1` entries).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabeledCounts {
    entries: Vec<(&'static str, u64)>,
}

impl LabeledCounts {
    /// Adds `n` to the series of `label`.
    pub fn add(&mut self, label: &'static str, n: u64) {
        if let Some(count) = self.slot_mut(label) {
            *count = count.saturating_add(n);
            return;
        }
        let label = if self.entries.len() < LABELED_DISTINCT_MAX {
            label
        } else {
            OVERFLOW_LABEL
        };
        match self.slot_mut(label) {
            Some(count) => *count = count.saturating_add(n),
            None => self.entries.push((label, n)),
        }
    }

    fn slot_mut(&mut self, label: &str) -> Option<&mut u64> {
        self.entries
            .iter_mut()
            .find(|(l, _)| *l == label)
            .map(|(_, count)| count)
    }

    /// Count recorded under `label`.
    pub fn get(&self, label: &str) -> u64 {
        self.iter()
            .find(|(l, _)| *l == label)
            .map_or(0, |(_, count)| count)
    }

    /// `(label, count)` in first-seen order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.entries.iter().copied()
    }

    /// Number of distinct labels held (overflow included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests;
