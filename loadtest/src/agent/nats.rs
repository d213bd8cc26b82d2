//! A minimal NATS client over a blocking `std::net::TcpStream`: the text protocol's CONNECT,
//! PUB, SUB, MSG, PING and PONG (https://docs.nats.io/reference/reference-protocols/nats-protocol),
//! enough for the swarm's controller and agents to exchange a few messages per run. No TLS,
//! no auth, no reconnects (a lost server ends the run with an error).
//!
//! Owns: the NATS connection. May not touch: the load (agents run it elsewhere). Bounded:
//! message payloads up to the server's `max_payload` and [`PAYLOAD_BYTES_MAX`]; control lines
//! up to [`LINE_BYTES_MAX`].

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Largest payload accepted or sent.
pub const PAYLOAD_BYTES_MAX: usize = 8 << 20;
/// Largest protocol line (`INFO {...}`, `MSG ...`).
const LINE_BYTES_MAX: usize = 64 << 10;

/// A message received on a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    /// Subject it was published to.
    pub subject: String,
    /// Reply subject, if the publisher gave one.
    pub reply: Option<String>,
    /// Payload.
    pub payload: Vec<u8>,
}

/// A connection to a NATS server.
#[derive(Debug)]
pub struct Nats {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    next_sid: u64,
    max_payload: usize,
    /// A line whose end has not arrived yet (kept across read timeouts).
    partial_line: Vec<u8>,
}

/// `nats://host:port` (or `host:port`) → a socket address.
pub fn parse_url(url: &str) -> io::Result<SocketAddr> {
    let rest = url.strip_prefix("nats://").unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    let with_port = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:4222")
    };
    with_port
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("cannot resolve {url}")))
}

impl Nats {
    /// Connects, reads the server's INFO, sends CONNECT and waits for the PONG of a PING.
    pub fn connect(url: &str, name: &str) -> io::Result<Nats> {
        let addr = parse_url(url)?;
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        let writer = stream.try_clone()?;
        let mut nats = Nats {
            reader: BufReader::new(stream),
            writer,
            next_sid: 1,
            max_payload: PAYLOAD_BYTES_MAX,
            partial_line: Vec::new(),
        };
        nats.set_timeout(Some(Duration::from_secs(5)))?;
        let info = nats.read_line()?;
        let json = info
            .strip_prefix("INFO ")
            .ok_or_else(|| protocol_error(&format!("expected INFO, got {info:?}")))?;
        if let Ok(info) = serde_json::from_str::<serde_json::Value>(json) {
            if let Some(max) = info["max_payload"].as_u64() {
                nats.max_payload = (max as usize).min(PAYLOAD_BYTES_MAX);
            }
        }
        let connect = serde_json::json!({
            "verbose": false, "pedantic": false, "name": name, "lang": "rust-wsrelay-swarm",
            "version": env!("CARGO_PKG_VERSION"), "protocol": 0,
        });
        write!(nats.writer, "CONNECT {connect}\r\nPING\r\n")?;
        loop {
            match nats.read_line()?.as_str() {
                "PONG" => break,
                "PING" => nats.writer.write_all(b"PONG\r\n")?,
                line if line.starts_with("-ERR") => return Err(protocol_error(line)),
                _ => {}
            }
        }
        nats.set_timeout(None)?;
        Ok(nats)
    }

    fn set_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.reader.get_ref().set_read_timeout(timeout)
    }

    /// Subscribes to `subject` (wildcards allowed); returns the subscription id.
    pub fn subscribe(&mut self, subject: &str) -> io::Result<u64> {
        check_token(subject)?;
        let sid = self.next_sid;
        self.next_sid += 1;
        write!(self.writer, "SUB {subject} {sid}\r\n")?;
        Ok(sid)
    }

    /// Publishes `payload` to `subject`, with an optional reply subject.
    pub fn publish(
        &mut self,
        subject: &str,
        reply: Option<&str>,
        payload: &[u8],
    ) -> io::Result<()> {
        check_token(subject)?;
        if payload.len() > self.max_payload {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "message of {} bytes exceeds the NATS max_payload of {}",
                    payload.len(),
                    self.max_payload
                ),
            ));
        }
        let mut head = format!("PUB {subject} ");
        if let Some(reply) = reply {
            check_token(reply)?;
            head.push_str(reply);
            head.push(' ');
        }
        head.push_str(&format!("{}\r\n", payload.len()));
        let mut frame = head.into_bytes();
        frame.extend_from_slice(payload);
        frame.extend_from_slice(b"\r\n");
        self.writer.write_all(&frame)
    }

    /// Sends a PING and waits for its PONG: every earlier PUB and SUB has been processed by
    /// the server (messages received meanwhile are returned).
    pub fn flush(&mut self, timeout: Duration) -> io::Result<Vec<Msg>> {
        self.writer.write_all(b"PING\r\n")?;
        let deadline = Instant::now() + timeout;
        let mut received = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no PONG from NATS"));
            }
            match self.next_event(left)? {
                Some(Event::Pong) => return Ok(received),
                Some(Event::Msg(msg)) => received.push(msg),
                None => {}
            }
        }
    }

    /// The next message, waiting at most `timeout` (`None`: none arrived).
    pub fn next_msg(&mut self, timeout: Duration) -> io::Result<Option<Msg>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            if let Some(Event::Msg(msg)) = self.next_event(left)? {
                return Ok(Some(msg));
            }
        }
    }

    /// Reads one protocol event; answers PINGs itself.
    fn next_event(&mut self, timeout: Duration) -> io::Result<Option<Event>> {
        self.set_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        let line = match self.read_line() {
            Ok(line) => line,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        if line == "PING" {
            self.writer.write_all(b"PONG\r\n")?;
            return Ok(None);
        }
        if line == "PONG" {
            return Ok(Some(Event::Pong));
        }
        if line.starts_with("-ERR") {
            return Err(protocol_error(&line));
        }
        let Some(args) = line.strip_prefix("MSG ") else {
            return Ok(None);
        };
        let parts: Vec<&str> = args.split_whitespace().collect();
        let (subject, reply, len) = match parts.as_slice() {
            [subject, _sid, len] => (*subject, None, *len),
            [subject, _sid, reply, len] => (*subject, Some(reply.to_string()), *len),
            _ => return Err(protocol_error(&format!("bad MSG line {line:?}"))),
        };
        let len: usize = len
            .parse()
            .map_err(|_| protocol_error(&format!("bad MSG length in {line:?}")))?;
        if len > PAYLOAD_BYTES_MAX {
            return Err(protocol_error(&format!("MSG of {len} bytes is too large")));
        }
        self.set_timeout(Some(Duration::from_secs(5)))?;
        let mut payload = vec![0; len + 2];
        self.reader.read_exact(&mut payload)?;
        payload.truncate(len);
        Ok(Some(Event::Msg(Msg {
            subject: subject.to_string(),
            reply,
            payload,
        })))
    }

    fn read_line(&mut self) -> io::Result<String> {
        let room = LINE_BYTES_MAX.saturating_sub(self.partial_line.len()) as u64;
        // A timeout may strike mid-line: what was read stays in `partial_line` for the next call.
        let read = (&mut self.reader)
            .take(room)
            .read_until(b'\n', &mut self.partial_line)?;
        if read == 0 && self.partial_line.last() != Some(&b'\n') {
            if room == 0 {
                return Err(protocol_error("protocol line too long"));
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "NATS closed the connection",
            ));
        }
        if self.partial_line.last() != Some(&b'\n') {
            return Err(io::Error::new(io::ErrorKind::WouldBlock, "partial line"));
        }
        let line = std::mem::take(&mut self.partial_line);
        let text = String::from_utf8(line).map_err(|_| protocol_error("line is not UTF-8"))?;
        Ok(text.trim_end_matches(['\r', '\n']).to_string())
    }
}

/// Protocol events the client reacts to.
enum Event {
    Msg(Msg),
    Pong,
}

fn check_token(subject: &str) -> io::Result<()> {
    if subject.is_empty() || subject.bytes().any(|b| b.is_ascii_whitespace()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad NATS subject {subject:?}"),
        ));
    }
    Ok(())
}

fn protocol_error(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("NATS: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        assert_eq!(
            parse_url("nats://127.0.0.1:4333").unwrap(),
            "127.0.0.1:4333".parse().unwrap()
        );
        assert_eq!(parse_url("127.0.0.1").unwrap().port(), 4222);
        assert!(check_token("a b").is_err());
    }
}
