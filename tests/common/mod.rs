//! Test helpers shared by the integration tests: start a relay on 127.0.0.1:0, connect real
//! clients (the independent `tungstenite` client, and a raw-socket client that sends exact
//! bytes), read with timeouts so a broken server fails a test instead of hanging it.
#![allow(dead_code)]

pub mod board;
pub mod relay_process;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{json, Value};
use tungstenite::protocol::Message;
use tungstenite::WebSocket;
use wsrelay::{Config, Server, ServerHandle};

/// How long a test waits for any single expected byte before failing.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts a relay with `loops` loops on a free loopback port, with test-friendly defaults.
pub fn relay(loops: usize) -> ServerHandle {
    start(Config::loopback_for_tests(loops))
}

/// Starts a relay with `config` (its address should be 127.0.0.1:0).
pub fn start(config: Config) -> ServerHandle {
    Server::start(config).expect("relay starts")
}

/// A JSON client over the real `tungstenite` client.
pub struct Client {
    pub ws: WebSocket<TcpStream>,
    pub id: String,
}

impl Client {
    /// Connects to `/` and reads the `connected` message.
    pub fn connect(addr: SocketAddr) -> Client {
        Self::connect_path(addr, "/")
    }

    /// Connects to `path` and reads the `connected` message.
    pub fn connect_path(addr: SocketAddr, path: &str) -> Client {
        let mut ws = Self::connect_raw_ws(addr, path);
        let hello = read_json(&mut ws);
        assert_eq!(hello["type"], "connected", "first message: {hello}");
        let id = hello["id"].as_str().expect("id is a string").to_string();
        Client { ws, id }
    }

    /// Connects without reading anything (echo endpoint).
    pub fn connect_raw_ws(addr: SocketAddr, path: &str) -> WebSocket<TcpStream> {
        let stream = TcpStream::connect(addr).expect("tcp connect");
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        let url = format!("ws://{addr}{path}");
        let (ws, _) = tungstenite::client::client(url.as_str(), stream).expect("handshake");
        ws
    }

    pub fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).expect("send");
    }

    pub fn send_text(&mut self, s: &str) {
        self.ws.send(Message::text(s.to_string())).expect("send");
    }

    pub fn recv(&mut self) -> Value {
        read_json(&mut self.ws)
    }

    /// Subscribes and waits for `subscribed`; returns it.
    pub fn subscribe(&mut self, channel: &str) -> Value {
        self.send(json!({"type": "subscribe", "channel": channel}));
        let v = self.recv();
        assert_eq!(v["type"], "subscribed", "{v}");
        assert_eq!(v["channel"], channel);
        v
    }

    pub fn publish(&mut self, channel: &str, content: Value) {
        self.send(json!({"type": "message", "channel": channel, "content": content}));
    }

    /// Round trip through the server: everything sent before is processed after this returns.
    pub fn ping(&mut self) {
        self.send(json!({"type": "ping"}));
        let v = self.recv();
        assert_eq!(v, json!({"type": "pong"}));
    }

    /// The loop that holds this connection (ids are `<loop>-<slot>-<generation>`, after
    /// `<node>/` in cluster mode).
    pub fn loop_id(&self) -> usize {
        self.id
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .split('-')
            .next()
            .and_then(|s| s.parse().ok())
            .expect("loop in id")
    }
}

/// Reads the next text message and parses it as JSON (skipping pings/pongs).
pub fn read_json(ws: &mut WebSocket<TcpStream>) -> Value {
    loop {
        match ws.read().expect("read a message") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("valid JSON"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

/// Opens at least `n` clients, more (up to 64 extra) until the kernel's SO_REUSEPORT hashing
/// has put some on every loop; asserts every loop holds some.
pub fn clients_on_every_loop(addr: SocketAddr, loops: usize, n: usize) -> Vec<Client> {
    let mut clients: Vec<Client> = (0..n).map(|_| Client::connect(addr)).collect();
    let covered = |cs: &[Client]| (0..loops).all(|l| cs.iter().any(|c| c.loop_id() == l));
    for _ in 0..64 {
        if covered(&clients) {
            break;
        }
        clients.push(Client::connect(addr));
    }
    assert!(
        covered(&clients),
        "some loop got no client; ids: {:?}",
        clients.iter().map(|c| &c.id).collect::<Vec<_>>()
    );
    clients
}

/// A raw TCP client: exact bytes out, exact bytes in.
pub struct Raw {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

/// A server frame as read by `Raw`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The close code of a close frame (None for an empty payload).
    pub fn close_code(&self) -> Option<u16> {
        assert_eq!(self.opcode, 8, "not a close frame: {self:?}");
        (self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).expect("tcp connect");
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        Raw::from_stream(stream)
    }

    /// Wraps an already connected stream.
    pub fn from_stream(stream: TcpStream) -> Raw {
        stream.set_nodelay(true).unwrap();
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    /// Reads one frame, or `None` if nothing arrives within `quiet` (used only to detect that
    /// the server has nothing more queued, never as an assertion about speed).
    pub fn read_frame_within(&mut self, quiet: Duration) -> Option<Frame> {
        self.stream.set_read_timeout(Some(quiet)).unwrap();
        let frame = loop {
            if let Some((frame, used)) = parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                break Some(frame);
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => break None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break None
                }
                Err(e) => panic!("read failed: {e}"),
            }
        };
        self.stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        frame
    }

    /// Connects and completes the upgrade on `path`; returns the client positioned after the
    /// 101 response.
    pub fn upgraded(addr: SocketAddr, path: &str) -> Raw {
        let mut raw = Raw::connect(addr);
        raw.send(upgrade_request(path).as_bytes());
        let head = raw.read_head();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        raw
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Sends one masked client frame.
    pub fn send_frame(&mut self, first_byte: u8, payload: &[u8]) {
        self.send(&masked_frame(first_byte, payload));
    }

    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 65536];
        match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                n
            }
            Err(e) => panic!("read failed (timeout means the server did not answer): {e}"),
        }
    }

    /// Reads an HTTP response head (up to CRLFCRLF) and returns it as text.
    pub fn read_head(&mut self) -> String {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..end + 4).collect();
                return String::from_utf8(head).expect("ascii head");
            }
            assert!(self.fill() > 0, "EOF before the end of the response head");
        }
    }

    /// Reads the whole HTTP response until EOF.
    pub fn read_to_end(&mut self) -> String {
        while self.fill() > 0 {}
        String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned()
    }

    /// Reads one server frame (unmasked, RFC 6455 §5.1).
    pub fn read_frame(&mut self) -> Frame {
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                return frame;
            }
            assert!(self.fill() > 0, "EOF while waiting for a frame");
        }
    }

    /// Reads one server frame and its first header byte (FIN, RSV1-3, opcode).
    pub fn read_frame_b0(&mut self) -> (u8, Frame) {
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.buf) {
                let b0 = self.buf[0];
                self.buf.drain(..used);
                return (b0, frame);
            }
            assert!(self.fill() > 0, "EOF while waiting for a frame");
        }
    }

    /// Reads frames until a text one, returns it as JSON.
    pub fn read_json(&mut self) -> Value {
        loop {
            let f = self.read_frame();
            if f.opcode == 1 {
                return serde_json::from_slice(&f.payload).expect("JSON");
            }
        }
    }

    /// Reads frames until the close frame; returns its code. Skips data frames.
    pub fn read_close_code(&mut self) -> Option<u16> {
        loop {
            let f = self.read_frame();
            if f.opcode == 8 {
                return f.close_code();
            }
        }
    }

    /// True when the server closed TCP (EOF) with nothing more to read.
    pub fn reads_eof(&mut self) -> bool {
        self.buf.is_empty() && self.fill() == 0
    }
}

pub fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// A masked client frame with an arbitrary first byte (FIN, RSV, opcode).
pub fn masked_frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![first_byte];
    push_len(&mut out, payload.len(), 0x80);
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// An UNMASKED client frame (a protocol violation for a server).
pub fn unmasked_frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first_byte];
    push_len(&mut out, payload.len(), 0);
    out.extend_from_slice(payload);
    out
}

fn push_len(out: &mut Vec<u8>, len: usize, mask_bit: u8) {
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= 0xffff {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

fn parse_server_frame(buf: &[u8]) -> Option<(Frame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    assert_eq!(buf[1] & 0x80, 0, "server frames must not be masked");
    let (len, mut pos) = match buf[1] & 0x7f {
        126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
        127 => {
            let b: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(b) as usize, 10)
        }
        n => (n as usize, 2),
    };
    let payload = buf.get(pos..pos + len)?.to_vec();
    pos += len;
    let frame = Frame {
        fin: buf[0] & 0x80 != 0,
        opcode: buf[0] & 0x0f,
        payload,
    };
    Some((frame, pos))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// GET `path` over plain HTTP; returns (status line, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut raw = Raw::connect(addr);
    raw.send(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes());
    let all = raw.read_to_end();
    let (head, body) = all.split_once("\r\n\r\n").expect("head and body");
    let status = head.lines().next().unwrap_or_default().to_string();
    (status, body.to_string())
}
