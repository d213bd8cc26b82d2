//! The server's own view of latency: after a run against wsrelay, the swarm reads the relay's
//! `/stats` and prints its relay latency (publish read off the socket → bytes handed to the
//! subscriber's socket) next to the swarm's end-to-end latency, so users see how much of the
//! total is the relay and how much is the network stack and the clients.
//!
//! Owns: one bounded HTTP GET on loopback (2 s timeouts). Servers without `/stats` (the peers)
//! simply yield `None`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

/// Largest `/stats` response read.
const RESPONSE_BYTES_MAX: u64 = 1 << 20;

/// The relay's relay-latency summary, over its whole life (warm-up included).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerLatency {
    /// Deliveries timed.
    pub count: u64,
    /// Median, ns.
    pub p50_ns: u64,
    /// 99th percentile, ns.
    pub p99_ns: u64,
    /// 99.9th percentile, ns.
    pub p999_ns: u64,
    /// Largest, ns.
    pub max_ns: u64,
}

/// GET `/stats` from `addr`; `None` if the server has no such endpoint or does not answer.
pub fn fetch(addr: SocketAddr, host: &str) -> Option<ServerLatency> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let request = format!("GET /stats HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = Vec::new();
    stream
        .take(RESPONSE_BYTES_MAX)
        .read_to_end(&mut response)
        .ok()?;
    parse(&response)
}

/// Extracts the relay latency from a raw `/stats` HTTP response.
pub fn parse(response: &[u8]) -> Option<ServerLatency> {
    let text = std::str::from_utf8(response).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    let stats: Value = serde_json::from_str(body).ok()?;
    let relay = &stats["latency"]["relay"];
    let field = |name: &str| relay[name].as_u64();
    Some(ServerLatency {
        count: field("count")?,
        p50_ns: field("p50_ns")?,
        p99_ns: field("p99_ns")?,
        p999_ns: field("p999_ns")?,
        max_ns: field("max_ns")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_latency_is_read_from_a_stats_response() {
        let body = r#"{"latency":{"relay":{"count":5,"p50_ns":1000,"p99_ns":2000,"p999_ns":3000,"max_ns":4000}}}"#;
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let want = ServerLatency {
            count: 5,
            p50_ns: 1000,
            p99_ns: 2000,
            p999_ns: 3000,
            max_ns: 4000,
        };
        assert_eq!(parse(response.as_bytes()), Some(want));
    }

    #[test]
    fn a_server_without_stats_yields_none() {
        assert_eq!(parse(b"HTTP/1.1 404 Not Found\r\n\r\nnope"), None);
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\n\r\n{}"), None);
    }
}
