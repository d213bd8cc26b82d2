//! The reconnecting session, sans-IO: the behaviour applications otherwise write by hand
//! around the browser WebSocket API.
//!
//! Owns: the session lifecycle (`Connecting → Open → (Closing) → Waiting → Connecting …`,
//! until `Stopped`), the reconnect decision per close cause (`close_code::reconnect_advice`),
//! the backoff attempt counter (reset after a successful open, bounded by `retries_max`), the
//! application heartbeat, re-authentication and re-subscription with `since`/`epoch` on every
//! open, the per-channel last seq and epoch, and the bounded event queue.
//! May not touch: sockets and the clock. Time comes in as `now` on every call, so tests drive
//! a fake clock; the driver turns [`Transport`] requests into TCP connects and closes and
//! reports back with `handle_connected`, `handle_connect_failed`, `handle_bytes` and
//! `handle_eof`.
//!
//! Invariants:
//! - At most one connection exists; a `Transport::Close` always precedes the next
//!   `Transport::Connect`.
//! - Only a connection ended by the application's `close()` or with a "never" close code is
//!   not retried; everything else is, until `retries_max` consecutive attempts failed.
//! - Queued events stay below `events_max` plus a handful of lifecycle events: once the queue
//!   is full, input stops being consumed until the application drains it.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use indexmap::IndexMap;

use crate::client::commands::{self, check_channel};
use crate::client::connection::{Connection, ConnectionLimits, Incoming};
use crate::client::error::SendError;
use crate::client::event::{Disconnect, Event, StopReason};
use crate::client::options::Options;
use crate::client::rng::Rng;
use crate::client::server_event::ServerEventParser;
use crate::client::url::WsUrl;
use crate::close_code::ReconnectAdvice;
use crate::proto::close::code;

mod events;

use events::{binary_event, text_event};

/// What the session asks of the I/O driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Open a TCP connection to the URL's host and port, then report back.
    Connect,
    /// Write `farewell` if possible (a close reply), then drop the socket.
    Close {
        /// Last bytes of the ended connection, best effort.
        farewell: Vec<u8>,
    },
}

/// The last position seen on a subscribed channel, sent as `since`/`epoch` on re-subscribe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelPosition {
    /// Last seq received (or announced by `subscribed`, or skipped by a gap).
    pub seq: Option<u64>,
    /// Epoch of that numbering.
    pub epoch: Option<String>,
    /// How the channel was subscribed (sent again on every re-subscribe).
    pub options: SubscribeOptions,
}

/// How to subscribe: throttled, and in which form a snapshot should come.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// `throttle_ms`: the latest value per key at most every this many ms (10-60,000).
    pub throttle_ms: Option<u32>,
    /// `"binary":true`: a snapshot comes as a binary message.
    pub binary: bool,
    /// `"presence":true`: the member list, then joins and leaves; asked again on every open
    /// (a fresh list each time).
    pub presence: bool,
}

impl ChannelPosition {
    /// `since` and `epoch` for a resuming subscribe: both, or neither.
    fn resume_point(&self) -> Option<(u64, &str)> {
        Some((self.seq?, self.epoch.as_deref()?))
    }

    fn on_subscribed(&mut self, seq: u64, epoch: &str, recovered: Option<bool>) {
        let same_epoch = self.epoch.as_deref() == Some(epoch) && self.seq.is_some();
        // Recovered: the missed messages follow and advance `seq` themselves. A repeated
        // subscribe in the same epoch keeps `seq`, since deliveries up to the announced seq
        // may still be queued behind the reply.
        let keep = same_epoch && recovered != Some(false);
        if !keep {
            self.seq = Some(seq);
            self.epoch = Some(epoch.to_owned());
        }
    }

    fn on_delivery(&mut self, seq: u64) {
        self.seq = Some(self.seq.map_or(seq, |last| last.max(seq)));
    }
}

/// The application heartbeat of an open connection.
#[derive(Debug, Clone, Copy)]
struct Heartbeat {
    /// When the next ping is due (`None`: heartbeat off).
    next_ping_at: Option<Instant>,
    /// When the oldest unanswered ping was sent.
    awaiting_since: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// TCP connect and handshake in progress, bounded by `deadline`.
    Connecting {
        deadline: Instant,
    },
    Open(Heartbeat),
    /// Our close frame is out; the server has until `deadline` to answer.
    Closing {
        deadline: Instant,
        code: u16,
    },
    /// Waiting to reconnect.
    Waiting {
        until: Instant,
    },
    Stopped,
}

/// A reconnecting client session (sans-IO).
#[derive(Debug)]
pub struct Session {
    url: WsUrl,
    options: Options,
    rng: Rng,
    parser: ServerEventParser,
    phase: Phase,
    connection: Option<Connection>,
    /// Consecutive attempts since the last successful open.
    attempts: u32,
    subscriptions: IndexMap<String, ChannelPosition>,
    events: VecDeque<Event>,
    transports: VecDeque<Transport>,
    /// Reused buffer for command payloads.
    scratch: Vec<u8>,
}

impl Session {
    /// A session that starts connecting at `now` (the first request is `Transport::Connect`).
    pub fn new(url: WsUrl, options: Options, rng: Rng, now: Instant) -> Self {
        let mut session = Self {
            url,
            phase: Phase::Stopped,
            options,
            rng,
            parser: ServerEventParser::new(),
            connection: None,
            attempts: 0,
            subscriptions: IndexMap::new(),
            events: VecDeque::new(),
            transports: VecDeque::new(),
            scratch: Vec::new(),
        };
        session.begin_attempt(now);
        session
    }

    /// The URL this session connects to.
    pub fn url(&self) -> &WsUrl {
        &self.url
    }

    /// The next request for the driver.
    pub fn poll_transport(&mut self) -> Option<Transport> {
        self.transports.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must be called next (`None`: only input can change anything).
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Connecting { deadline } | Phase::Closing { deadline, .. } => Some(deadline),
            Phase::Waiting { until } => Some(until),
            Phase::Open(heartbeat) => {
                let answer_by = heartbeat
                    .awaiting_since
                    .map(|sent| sent + self.options.heartbeat_timeout);
                [heartbeat.next_ping_at, answer_by]
                    .into_iter()
                    .flatten()
                    .min()
            }
            Phase::Stopped => None,
        }
    }

    /// Whether the session has room for more events, i.e. should be given input.
    pub fn wants_input(&self) -> bool {
        self.events.len() < self.options.events_max
    }

    /// Whether the session ended for good.
    pub fn is_stopped(&self) -> bool {
        matches!(self.phase, Phase::Stopped)
    }

    /// Whether a connection is open (commands can be sent).
    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open(_))
    }

    /// The position last seen on `channel`, if subscribed.
    pub fn channel_position(&self, channel: &str) -> Option<&ChannelPosition> {
        self.subscriptions.get(channel)
    }

    /// Bytes to write to the socket.
    pub fn transmit(&self) -> &[u8] {
        self.connection.as_ref().map_or(&[], |c| c.transmit())
    }

    /// Marks `bytes` of [`Self::transmit`] as written.
    pub fn advance_transmit(&mut self, bytes: usize) {
        if let Some(connection) = self.connection.as_mut() {
            connection.advance_transmit(bytes);
        }
    }

    /// The TCP connection requested by `Transport::Connect` is established.
    pub fn handle_connected(&mut self, _now: Instant) {
        if matches!(self.phase, Phase::Connecting { .. }) && self.connection.is_none() {
            let limits = ConnectionLimits {
                message_bytes_max: self.options.message_bytes_max,
                send_bytes_max: self.options.send_bytes_max,
                deflate: self.options.deflate,
            };
            let rng = Rng::from_seed(self.rng.next_u64());
            self.connection = Some(Connection::start(&self.url, rng, limits));
        }
    }

    /// The TCP connection requested by `Transport::Connect` failed.
    pub fn handle_connect_failed(&mut self, now: Instant, error: std::io::ErrorKind) {
        if matches!(self.phase, Phase::Connecting { .. }) {
            self.end_connection(now, Disconnect::ConnectFailed(error));
        }
    }

    /// The socket reached EOF or failed.
    pub fn handle_eof(&mut self, now: Instant) {
        match self.phase {
            Phase::Closing { code, .. } => {
                self.end_connection(now, Disconnect::ClosedByUser { code })
            }
            Phase::Connecting { .. } | Phase::Open(_) => {
                self.end_connection(now, Disconnect::ConnectionLost)
            }
            Phase::Waiting { .. } | Phase::Stopped => {}
        }
    }

    /// Input from the socket. Returns the bytes consumed; fewer than `input.len()` when the
    /// event queue filled up (pass the rest again once events were taken).
    pub fn handle_bytes(&mut self, now: Instant, input: &mut [u8]) -> usize {
        let mut consumed = 0;
        while consumed < input.len() && self.wants_input() {
            let rest = input.get_mut(consumed..).unwrap_or_default();
            let (used, signal) = self.feed_connection(rest);
            consumed += used;
            match signal {
                Some(Signal::Opened) => self.on_open(now),
                Some(Signal::Ended(cause)) => {
                    self.end_connection(now, cause);
                    return input.len();
                }
                None if used == 0 => break,
                None => {}
            }
        }
        consumed
    }

    /// Advances timers to `now`: connect and close deadlines, heartbeat, reconnect delay.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::Connecting { deadline } if now >= deadline => {
                self.end_connection(now, Disconnect::HandshakeTimeout)
            }
            Phase::Closing { deadline, code } if now >= deadline => {
                self.end_connection(now, Disconnect::ClosedByUser { code })
            }
            Phase::Waiting { until } if now >= until => self.begin_attempt(now),
            Phase::Open(heartbeat) => self.check_heartbeat(now, heartbeat),
            _ => {}
        }
    }

    /// Closes for good: a close handshake if open (then `Stopped`), at once otherwise.
    pub fn close(&mut self, now: Instant) {
        match self.phase {
            Phase::Open(_) => {
                if let Some(connection) = self.connection.as_mut() {
                    connection.close(code::NORMAL);
                }
                let deadline = now + self.options.close_timeout;
                self.phase = Phase::Closing {
                    deadline,
                    code: code::NORMAL,
                };
            }
            Phase::Connecting { .. } | Phase::Waiting { .. } => {
                self.drop_connection();
                self.stop(StopReason::ClosedByUser);
            }
            Phase::Closing { .. } | Phase::Stopped => {}
        }
    }

    /// Subscribes to `channel` now if open, and on every later open (with `since`/`epoch`).
    pub fn subscribe(&mut self, channel: &str) -> Result<(), SendError> {
        self.subscribe_with(channel, SubscribeOptions::default())
    }

    /// Subscribes with presence (`"presence":true`): `Event::Presence` with the members, then
    /// `Event::Join`/`Event::Leave`; again on every later open (a fresh list each time).
    pub fn subscribe_with_presence(&mut self, channel: &str) -> Result<(), SendError> {
        let options = SubscribeOptions {
            presence: true,
            ..SubscribeOptions::default()
        };
        self.subscribe_with(channel, options)
    }

    /// [`Session::subscribe`] with options (throttle, binary snapshot), kept for re-subscribes.
    pub fn subscribe_with(
        &mut self,
        channel: &str,
        options: SubscribeOptions,
    ) -> Result<(), SendError> {
        check_channel(channel).map_err(|_| SendError::InvalidChannel)?;
        let known = self.subscriptions.contains_key(channel);
        if !known && self.subscriptions.len() >= self.options.subscriptions_max {
            return Err(SendError::TooManySubscriptions);
        }
        if self.is_open() {
            self.send_with(|out| {
                commands::encode_subscribe_with(out, channel, None, None, options)
            })?;
        }
        let position = self.subscriptions.entry(channel.to_owned()).or_default();
        match known {
            false => position.options = options,
            // Subscribing again with presence adds it (the relay answers with the list).
            true => position.options.presence |= options.presence,
        }
        Ok(())
    }

    /// Asks for the members of `channel` now (`Event::Presence`). Needs an open connection.
    pub fn presence(&mut self, channel: &str) -> Result<(), SendError> {
        check_channel(channel).map_err(|_| SendError::InvalidChannel)?;
        self.send_with(|out| commands::encode_presence(out, channel))
    }

    /// Forgets `channel` and unsubscribes now if open.
    pub fn unsubscribe(&mut self, channel: &str) -> Result<(), SendError> {
        check_channel(channel).map_err(|_| SendError::InvalidChannel)?;
        if self.is_open() {
            self.send_with(|out| commands::encode_unsubscribe(out, channel))?;
        }
        self.subscriptions.shift_remove(channel);
        Ok(())
    }

    /// Publishes one JSON value (`content_json`, sent verbatim) to `channel`.
    pub fn publish(&mut self, channel: &str, content_json: &str) -> Result<(), SendError> {
        check_channel(channel).map_err(|_| SendError::InvalidChannel)?;
        self.send_with(|out| commands::encode_publish(out, channel, content_json))
    }

    /// Publishes one JSON value under `key` (the snapshot, throttling and conflation key);
    /// `delete` removes the key from the channel's snapshot.
    pub fn publish_keyed(
        &mut self,
        channel: &str,
        key: &str,
        content_json: &str,
        delete: bool,
    ) -> Result<(), SendError> {
        check_channel(channel).map_err(|_| SendError::InvalidChannel)?;
        self.send_with(|out| {
            commands::encode_publish_keyed(out, channel, key, content_json, delete)
        })
    }

    /// Publishes opaque bytes to `channel` over the binary data plane.
    pub fn publish_binary(&mut self, channel: &str, payload: &[u8]) -> Result<(), SendError> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let result = commands::encode_binary_publish(&mut scratch, channel, payload)
            .map_err(|_| SendError::InvalidChannel)
            .and_then(|()| self.open_connection()?.send_binary(&scratch));
        self.scratch = scratch;
        result
    }

    /// Sends a raw text message (a command this library has no helper for).
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.open_connection()?.send_text(text.as_bytes())
    }

    fn open_connection(&mut self) -> Result<&mut Connection, SendError> {
        match (self.phase, self.connection.as_mut()) {
            (Phase::Open(_), Some(connection)) => Ok(connection),
            _ => Err(SendError::NotOpen),
        }
    }

    /// Encodes a text command into the scratch buffer and sends it.
    fn send_with(&mut self, encode: impl FnOnce(&mut Vec<u8>)) -> Result<(), SendError> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        encode(&mut scratch);
        let result = self.open_connection().and_then(|c| c.send_text(&scratch));
        self.scratch = scratch;
        result
    }
}

/// A lifecycle change found while feeding the connection, handled after the feed.
enum Signal {
    Opened,
    Ended(Disconnect),
}

impl Session {
    /// Feeds the connection until input ends, the queue fills, it opens, or it ends.
    fn feed_connection(&mut self, input: &mut [u8]) -> (usize, Option<Signal>) {
        let Self {
            connection,
            parser,
            subscriptions,
            events,
            phase,
            options,
            ..
        } = self;
        let Some(connection) = connection.as_mut() else {
            return (input.len(), None);
        };
        let mut signal = None;
        let used = connection.handle_bytes(input, |incoming| {
            if let Phase::Open(heartbeat) = phase {
                // Any message proves the connection alive, not only the pong.
                heartbeat.awaiting_since = None;
            }
            match incoming {
                Incoming::Open => signal = Some(Signal::Opened),
                Incoming::Ended(cause) => signal = Some(Signal::Ended(cause)),
                Incoming::Text(text) => events.push_back(text_event(parser, subscriptions, text)),
                Incoming::Binary(bytes) => events.push_back(binary_event(subscriptions, bytes)),
                Incoming::Ping | Incoming::Pong => {}
            }
            match signal.is_some() || events.len() >= options.events_max {
                true => ControlFlow::Break(()),
                false => ControlFlow::Continue(()),
            }
        });
        (used, signal)
    }

    /// The handshake completed: reset the backoff, re-authenticate, re-subscribe.
    fn on_open(&mut self, now: Instant) {
        self.attempts = 0;
        let interval = self.options.heartbeat_interval;
        self.phase = Phase::Open(Heartbeat {
            next_ping_at: (!interval.is_zero()).then(|| now + interval),
            awaiting_since: None,
        });
        self.send_auth();
        let resubscribed_channels = self.resubscribe_all();
        self.events.push_back(Event::Open {
            resubscribed_channels,
        });
    }

    fn send_auth(&mut self) {
        let Some(token) = self.options.auth.as_mut().and_then(|source| source()) else {
            return;
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        // An unusable token (empty or over 8 KiB) is not sent; the server's auth timeout
        // then closes with 4008 and the session stops, which surfaces the problem.
        if commands::encode_auth(&mut scratch, &token).is_ok() {
            let _ = self.open_connection().and_then(|c| c.send_text(&scratch));
        }
        self.scratch = scratch;
    }

    /// Sends one subscribe per remembered channel, resuming where known. Returns the count.
    fn resubscribe_all(&mut self) -> u32 {
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut sent = 0;
        for (channel, position) in &self.subscriptions {
            scratch.clear();
            let (since, epoch) = position.resume_point().unzip();
            commands::encode_subscribe_with(&mut scratch, channel, since, epoch, position.options);
            if let Some(connection) = self.connection.as_mut() {
                // A full buffer right after open means `send_bytes_max` is smaller than the
                // subscription list; those channels are retried on the next open.
                sent += u32::from(connection.send_text(&scratch).is_ok());
            }
        }
        self.scratch = scratch;
        sent
    }

    fn check_heartbeat(&mut self, now: Instant, mut heartbeat: Heartbeat) {
        let timeout = self.options.heartbeat_timeout;
        if heartbeat
            .awaiting_since
            .is_some_and(|sent| now >= sent + timeout)
        {
            if let Some(connection) = self.connection.as_mut() {
                connection.abandon();
            }
            self.end_connection(now, Disconnect::HeartbeatTimeout);
            return;
        }
        if heartbeat.next_ping_at.is_none_or(|due| now < due) {
            return;
        }
        // A full send buffer skips this ping; the deadline still runs, which is right: a
        // connection that cannot drain for `heartbeat_timeout` is as good as dead.
        let _ = self.send_with(commands::encode_ping);
        heartbeat.awaiting_since.get_or_insert(now);
        heartbeat.next_ping_at = Some(now + self.options.heartbeat_interval);
        self.phase = Phase::Open(heartbeat);
    }

    /// The current connection (or attempt) ended with `cause`: report it and decide.
    fn end_connection(&mut self, now: Instant, cause: Disconnect) {
        self.drop_connection();
        let user_closing = matches!(self.phase, Phase::Closing { .. } | Phase::Stopped)
            || matches!(cause, Disconnect::ClosedByUser { .. });
        let (code, advice) = (cause.code(), cause.advice());
        self.events.push_back(Event::Disconnected(cause));
        if user_closing {
            self.stop(StopReason::ClosedByUser);
            return;
        }
        match advice {
            ReconnectAdvice::Never => self.stop(StopReason::DoNotReconnect { code }),
            ReconnectAdvice::AtOnce => self.schedule_retry(now, Duration::ZERO),
            ReconnectAdvice::WithBackoff => {
                let delay = self.options.backoff.delay(self.attempts, &mut self.rng);
                self.schedule_retry(now, delay);
            }
        }
    }

    fn schedule_retry(&mut self, now: Instant, delay: Duration) {
        if self.attempts >= self.options.retries_max {
            let attempts = self.attempts;
            self.stop(StopReason::RetriesExhausted { attempts });
            return;
        }
        self.attempts += 1;
        self.phase = Phase::Waiting { until: now + delay };
        self.events.push_back(Event::Reconnecting {
            attempt: self.attempts,
            delay,
        });
    }

    fn begin_attempt(&mut self, now: Instant) {
        self.phase = Phase::Connecting {
            deadline: now + self.options.connect_timeout,
        };
        self.transports.push_back(Transport::Connect);
    }

    /// Hands the socket back to the driver with the connection's last bytes.
    fn drop_connection(&mut self) {
        let farewell = self
            .connection
            .take()
            .map(|mut c| c.take_transmit())
            .unwrap_or_default();
        self.transports.push_back(Transport::Close { farewell });
    }

    fn stop(&mut self, reason: StopReason) {
        self.phase = Phase::Stopped;
        self.events.push_back(Event::Stopped(reason));
    }
}

#[cfg(test)]
mod tests;
