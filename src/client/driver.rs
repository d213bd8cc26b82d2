//! The blocking convenience client: one [`Session`] driven over a `mio` poll and a
//! non-blocking TCP socket, with the real clock.
//!
//! Owns: the socket (non-blocking connect, reads until `WouldBlock`, writes of the session's
//! transmit buffer), name resolution (blocking `ToSocketAddrs`, once per attempt), the
//! receive buffer, and `Instant::now()`. This file, `tls.rs` (TLS records over this file's
//! socket, for `wss://`) and `rng.rs` (one read of the OS entropy) are the only places in
//! `client` that perform I/O; everything else is sans-IO.
//!
//! Invariants:
//! - The receive buffer is fixed (64 KiB); bytes the session did not consume (its event queue
//!   was full) stay there and are fed again before the socket is read again, so the socket is
//!   read only while the application keeps up (TCP backpressure reaches the server).
//! - Every socket gets a fresh token (a generation), so a readiness event of a dropped socket
//!   cannot be mistaken for its successor's.
//! - Nothing blocks longer than the caller's timeout, except name resolution of a host name.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::client::error::{ConnectError, SendError};
use crate::client::event::Event;
use crate::client::options::Options;
use crate::client::rng::Rng;
use crate::client::session::{Session, SubscribeOptions, Transport};
use crate::client::tls::{self, TlsSetup};
use crate::client::url::WsUrl;

/// Receive buffer size: one read takes up to this many bytes.
const RECEIVE_BUFFER_BYTES: usize = 64 * 1024;
/// Readiness events fetched per poll (one socket: a few suffice).
const POLL_EVENTS_MAX: usize = 16;

#[derive(Debug)]
struct Socket {
    stream: TcpStream,
    /// The TLS session (`wss://`); `None`: plain.
    tls: Option<Box<rustls::ClientConnection>>,
    token: Token,
    connected: bool,
    readable: bool,
    writable: bool,
}

impl Socket {
    /// Plaintext in: from the socket, or through TLS.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.tls.as_mut() {
            None => self.stream.read(buf),
            Some(session) => tls::read(session, &mut self.stream, buf),
        }
    }

    /// Plaintext out: to the socket, or through TLS.
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self.tls.as_mut() {
            None => self.stream.write(data),
            Some(session) => tls::write(session, &mut self.stream, data),
        }
    }

    /// TLS records (handshake, encrypted data) are waiting to be written.
    fn tls_wants_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.wants_write())
    }
}

/// A reconnecting wsrelay client with a blocking API.
///
/// ```no_run
/// use std::time::Duration;
/// use wsrelay::client::{Client, Event, Options};
///
/// let mut client = Client::connect("ws://127.0.0.1:8080/", Options::default()).unwrap();
/// client.subscribe("md.BTC-USD").unwrap(); // remembered, sent on every (re)open
/// while let Some(event) = client.next_event(Duration::from_secs(30)) {
///     match event {
///         Event::Message { channel, content, seq, .. } => println!("{channel} #{seq}: {content}"),
///         Event::Stopped(reason) => { println!("stopped: {reason:?}"); break }
///         _ => {}
///     }
/// }
/// ```
pub struct Client {
    session: Session,
    poll: Poll,
    poll_events: Events,
    socket: Option<Socket>,
    /// Incremented per socket; the low bits of its token.
    socket_generation: usize,
    /// Connect attempts made, to rotate over resolved addresses.
    connects_total: usize,
    receive: Box<[u8]>,
    /// Unconsumed received bytes: `receive[receive_start..receive_end]`.
    receive_start: usize,
    receive_end: usize,
    /// What `wss://` connections are made with.
    tls: Option<TlsSetup>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("session", &self.session)
            .field("socket", &self.socket)
            .field("receive_pending", &(self.receive_end - self.receive_start))
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Starts connecting to `url` (`ws://host[:port][/path]`) and returns at once; the first
    /// event is `Open` (or `Disconnected` + `Reconnecting` if the server is not there yet).
    pub fn connect(url: &str, options: Options) -> Result<Self, ConnectError> {
        let url = WsUrl::parse(url)?;
        let tls = match url.tls {
            true => Some(TlsSetup::new(&url.host, &options.tls)?),
            false => None,
        };
        let now = Instant::now();
        let mut client = Self {
            session: Session::new(url, options, Rng::from_os(), now),
            poll: Poll::new()?,
            poll_events: Events::with_capacity(POLL_EVENTS_MAX),
            socket: None,
            socket_generation: 0,
            connects_total: 0,
            receive: vec![0; RECEIVE_BUFFER_BYTES].into_boxed_slice(),
            receive_start: 0,
            receive_end: 0,
            tls,
        };
        client.drive(now);
        Ok(client)
    }

    /// Waits up to `timeout` for the next event, doing all I/O and timers meanwhile. `None`:
    /// the timeout passed, or the session stopped and every event was taken.
    pub fn next_event(&mut self, timeout: Duration) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            self.drive(now);
            if let Some(event) = self.session.poll_event() {
                return Some(event);
            }
            if self.session.is_stopped() || now >= deadline {
                return None;
            }
            let wake_at = self
                .session
                .poll_timeout()
                .map_or(deadline, |t| t.min(deadline));
            self.wait(wake_at.saturating_duration_since(now));
        }
    }

    /// Does the I/O that is ready now, without blocking, and returns the next event if there
    /// is one. For programs that drive many clients from one thread in turn (the swarm): a
    /// short `next_event` timeout can pass before its readiness check, this cannot.
    pub fn try_next_event(&mut self) -> Option<Event> {
        self.drive(Instant::now());
        if let Some(event) = self.session.poll_event() {
            return Some(event);
        }
        self.wait(Duration::ZERO);
        self.drive(Instant::now());
        self.session.poll_event()
    }

    /// The sans-IO session (positions per channel, state).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Whether a connection is open.
    pub fn is_open(&self) -> bool {
        self.session.is_open()
    }

    /// Whether the session ended for good.
    pub fn is_stopped(&self) -> bool {
        self.session.is_stopped()
    }

    /// Subscribes now if open, and again (resuming) on every reconnect.
    pub fn subscribe(&mut self, channel: &str) -> Result<(), SendError> {
        let result = self.session.subscribe(channel);
        self.flush(Instant::now());
        result
    }

    /// Subscribes with presence: `Event::Presence`, then `Event::Join`/`Event::Leave`; again
    /// (with a fresh list) on every reconnect.
    pub fn subscribe_with_presence(&mut self, channel: &str) -> Result<(), SendError> {
        let result = self.session.subscribe_with_presence(channel);
        self.flush(Instant::now());
        result
    }

    /// Subscribes with options (`throttle_ms`, binary snapshot); remembered for reconnects.
    pub fn subscribe_with(
        &mut self,
        channel: &str,
        options: SubscribeOptions,
    ) -> Result<(), SendError> {
        let result = self.session.subscribe_with(channel, options);
        self.flush(Instant::now());
        result
    }

    /// Asks for the members of `channel` now (`Event::Presence`).
    pub fn presence(&mut self, channel: &str) -> Result<(), SendError> {
        let result = self.session.presence(channel);
        self.flush(Instant::now());
        result
    }

    /// Publishes one JSON value under `key`; `delete` removes the key from the snapshot.
    pub fn publish_keyed(
        &mut self,
        channel: &str,
        key: &str,
        content_json: &str,
        delete: bool,
    ) -> Result<(), SendError> {
        let result = self
            .session
            .publish_keyed(channel, key, content_json, delete);
        self.flush(Instant::now());
        result
    }

    /// Unsubscribes and forgets the channel.
    pub fn unsubscribe(&mut self, channel: &str) -> Result<(), SendError> {
        let result = self.session.unsubscribe(channel);
        self.flush(Instant::now());
        result
    }

    /// Publishes one JSON value (sent verbatim) to `channel`. Needs an open connection.
    pub fn publish(&mut self, channel: &str, content_json: &str) -> Result<(), SendError> {
        let result = self.session.publish(channel, content_json);
        self.flush(Instant::now());
        result
    }

    /// Publishes opaque bytes over the binary data plane. Needs an open connection.
    pub fn publish_binary(&mut self, channel: &str, payload: &[u8]) -> Result<(), SendError> {
        let result = self.session.publish_binary(channel, payload);
        self.flush(Instant::now());
        result
    }

    /// Sends a raw text message. Needs an open connection.
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        let result = self.session.send_text(text);
        self.flush(Instant::now());
        result
    }

    /// Starts closing for good; keep calling `next_event` until `Stopped`.
    pub fn close(&mut self) {
        let now = Instant::now();
        self.session.close(now);
        self.drive(now);
    }

    /// One round of everything that needs no waiting.
    fn drive(&mut self, now: Instant) {
        self.session.handle_timeout(now);
        self.run_transports(now);
        self.pump_input(now);
        self.flush(now);
        self.run_transports(now);
    }

    fn run_transports(&mut self, now: Instant) {
        while let Some(transport) = self.session.poll_transport() {
            match transport {
                Transport::Connect => self.start_connect(now),
                Transport::Close { farewell } => self.close_socket(&farewell),
            }
        }
    }

    fn start_connect(&mut self, now: Instant) {
        self.connects_total += 1;
        let opened = self.resolve().and_then(|addr| self.open_socket(addr));
        if let Err(error) = opened {
            self.session.handle_connect_failed(now, error.kind());
        }
    }

    /// The attempt's address: the resolved addresses in rotation, one per attempt.
    fn resolve(&self) -> io::Result<SocketAddr> {
        let url = self.session.url();
        let addrs: Vec<SocketAddr> = (url.host.as_str(), url.port).to_socket_addrs()?.collect();
        let index = self.connects_total % addrs.len().max(1);
        addrs
            .get(index)
            .copied()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "host has no address"))
    }

    fn open_socket(&mut self, addr: SocketAddr) -> io::Result<()> {
        let tls = self.tls.as_ref().map(TlsSetup::connect).transpose()?;
        let mut stream = TcpStream::connect(addr)?;
        self.socket_generation = self.socket_generation.wrapping_add(1);
        let token = Token(self.socket_generation);
        let interest = Interest::READABLE | Interest::WRITABLE;
        self.poll
            .registry()
            .register(&mut stream, token, interest)?;
        self.socket = Some(Socket {
            stream,
            tls,
            token,
            connected: false,
            readable: false,
            writable: false,
        });
        Ok(())
    }

    fn close_socket(&mut self, farewell: &[u8]) {
        self.receive_start = 0;
        self.receive_end = 0;
        let Some(mut socket) = self.socket.take() else {
            return;
        };
        if socket.connected && !farewell.is_empty() {
            // Best effort: a close reply that does not fit the socket buffer now is dropped.
            let _ = socket.write(farewell);
        }
        if let (true, Some(session)) = (socket.connected, socket.tls.as_mut()) {
            tls::close(session, &mut socket.stream);
        }
        let _ = self.poll.registry().deregister(&mut socket.stream);
    }

    /// Polls for readiness for up to `wait` and records it on the socket.
    fn wait(&mut self, wait: Duration) {
        match self.poll.poll(&mut self.poll_events, Some(wait)) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => return,
            Err(_) => {
                // The poll itself failed (not expected on a valid epoll fd): give up this
                // connection and let the session's retry policy decide.
                self.session.handle_eof(Instant::now());
                return;
            }
        }
        let Some(socket) = self.socket.as_mut() else {
            return;
        };
        for event in self
            .poll_events
            .iter()
            .filter(|e| e.token() == socket.token)
        {
            socket.readable |= event.is_readable() || event.is_read_closed() || event.is_error();
            socket.writable |= event.is_writable() || event.is_error();
        }
        if !socket.connected && socket.writable {
            self.finish_connect(Instant::now());
        }
    }

    /// A writable edge on a connecting socket: connected, or failed (mio's documented check).
    fn finish_connect(&mut self, now: Instant) {
        let Some(socket) = self.socket.as_mut() else {
            return;
        };
        let outcome = match socket.stream.take_error() {
            Ok(Some(error)) | Err(error) => Err(error),
            Ok(None) => socket.stream.peer_addr().map(|_| ()),
        };
        match outcome {
            Ok(()) => {
                socket.connected = true;
                socket.readable = true;
                let _ = socket.stream.set_nodelay(true);
                self.session.handle_connected(now);
            }
            // Spurious wake-up: still connecting.
            Err(error) if error.kind() == io::ErrorKind::NotConnected => socket.writable = false,
            Err(error) => self.session.handle_connect_failed(now, error.kind()),
        }
    }

    /// Feeds buffered input, then reads while the session wants input and the socket has any.
    fn pump_input(&mut self, now: Instant) {
        loop {
            if self.receive_start < self.receive_end {
                let pending = &mut self.receive[self.receive_start..self.receive_end];
                self.receive_start += self.session.handle_bytes(now, pending);
                if self.receive_start < self.receive_end {
                    return;
                }
            }
            self.receive_start = 0;
            self.receive_end = 0;
            if !self.session.wants_input() || !self.read_once(now) {
                return;
            }
        }
    }

    /// One read into the empty receive buffer. Returns whether bytes arrived.
    fn read_once(&mut self, now: Instant) -> bool {
        let Some(socket) = self.socket.as_mut().filter(|s| s.connected && s.readable) else {
            return false;
        };
        loop {
            match socket.read(&mut self.receive) {
                Ok(0) => break,
                Ok(bytes) => {
                    self.receive_end = bytes;
                    return true;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    socket.readable = false;
                    return false;
                }
                Err(_) => break,
            }
        }
        // EOF or a socket error: the connection is gone.
        socket.readable = false;
        self.session.handle_eof(now);
        false
    }

    /// Writes the session's transmit buffer until it is empty or the socket is full.
    fn flush(&mut self, now: Instant) {
        let Some(socket) = self.socket.as_mut().filter(|s| s.connected) else {
            return;
        };
        while socket.writable && (!self.session.transmit().is_empty() || socket.tls_wants_write()) {
            match socket.write(self.session.transmit()) {
                // TLS: rustls' buffer is full before the handshake ended; the rest waits.
                Ok(0) if socket.tls.is_some() => return,
                Ok(bytes) => self.session.advance_transmit(bytes),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => socket.writable = false,
                Err(_) => {
                    self.session.handle_eof(now);
                    return;
                }
            }
        }
    }
}
