//! Where the swarm connects: `ws://HOST:PORT/PATH`, the loopback-only rule, and the source
//! addresses that let one host open more connections than one address has ephemeral ports.
//!
//! Owns: address arithmetic. May not touch: sockets.
//!
//! Policy: the swarm sends only to 127.0.0.0/8 or ::1 unless `--allow-remote` is given. A load
//! generator pointed at someone else's server by a typo is an attack; the flag makes intent
//! explicit.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

/// Why a target was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetError {
    /// Only `ws://` and `wss://` are supported.
    UnsupportedScheme,
    /// The host or port could not be parsed or resolved.
    BadAddress(String),
    /// The address is not loopback and `--allow-remote` was not given.
    NotLoopback(IpAddr),
}

impl std::fmt::Display for TargetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnsupportedScheme => write!(f, "only ws:// and wss:// URLs are supported"),
            Self::BadAddress(what) => write!(f, "cannot resolve {what}"),
            Self::NotLoopback(ip) => write!(
                f,
                "{ip} is not a loopback address; pass --allow-remote to load a remote server \
                 you are allowed to load"
            ),
        }
    }
}

/// A resolved target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Server address.
    pub addr: SocketAddr,
    /// `Host` header value.
    pub host: String,
    /// Request target (path and query).
    pub path: String,
    /// `wss://`: TLS (the swarm's `--tls` also turns it on).
    pub tls: bool,
}

impl Target {
    /// Parses `ws://host:port/path` or `wss://…`; refuses non-loopback addresses unless
    /// `allow_remote`.
    pub fn parse(url: &str, allow_remote: bool) -> Result<Target, TargetError> {
        let (rest, tls) = match (url.strip_prefix("ws://"), url.strip_prefix("wss://")) {
            (Some(rest), _) => (rest, false),
            (None, Some(rest)) => (rest, true),
            (None, None) => return Err(TargetError::UnsupportedScheme),
        };
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, "/"),
        };
        let has_port = match authority.strip_prefix('[') {
            Some(bracketed) => bracketed.contains("]:"),
            None => authority.contains(':'),
        };
        let with_port = if has_port {
            authority.to_string()
        } else {
            format!("{authority}:{}", if tls { 443 } else { 80 })
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|_| TargetError::BadAddress(authority.to_string()))?
            .next()
            .ok_or_else(|| TargetError::BadAddress(authority.to_string()))?;
        if !allow_remote && !addr.ip().is_loopback() {
            return Err(TargetError::NotLoopback(addr.ip()));
        }
        Ok(Target {
            addr,
            host: authority.to_string(),
            path: path.to_string(),
            tls,
        })
    }

    /// The URL again (`ws://` or `wss://`, host, path).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}{}", self.host, self.path)
    }

    /// The host without the port (the TLS server name): `127.0.0.1`, `localhost`, `[::1]`.
    pub fn host_name(&self) -> &str {
        match self.host.rsplit_once(':') {
            Some((name, port)) if !port.contains(']') => name,
            _ => &self.host,
        }
    }

    /// The target of an in-process relay listening on `addr`.
    pub fn local(addr: SocketAddr) -> Target {
        Target {
            addr,
            host: addr.to_string(),
            path: "/".to_string(),
            tls: false,
        }
    }
}

/// 127.0.0.2 ..= 127.0.0.254: connections beyond these sources' ports fail to connect (and are
/// counted as such).
const SOURCE_ADDRESSES_MAX: usize = 253;

/// Source addresses for `connections` connections to `target`: one address while the ports of
/// one suffice, then 127.0.0.2, 127.0.0.3, … (loopback IPv4 targets only: elsewhere the host
/// has one address and the kernel picks it).
pub fn source_addresses(
    target: SocketAddr,
    connections: usize,
    ports_per_source: usize,
) -> Vec<IpAddr> {
    let needed = connections.div_ceil(ports_per_source.max(1)).max(1);
    match target.ip() {
        IpAddr::V4(ip) if ip.is_loopback() && needed > 1 => (0..needed.min(SOURCE_ADDRESSES_MAX))
            .map(|k| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + k as u8)))
            .collect(),
        _ => Vec::new(),
    }
}

/// Usable ephemeral ports per source address, from `ip_local_port_range`, minus a margin for
/// the rest of the machine.
pub fn ports_per_source() -> usize {
    const MARGIN_PORTS: usize = 1_000;
    let range =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut bounds = range
        .split_whitespace()
        .filter_map(|s| s.parse::<usize>().ok());
    match (bounds.next(), bounds.next()) {
        (Some(low), Some(high)) if high > low + MARGIN_PORTS => high - low - MARGIN_PORTS,
        _ => 28_000,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_loopback_urls() {
        let t = Target::parse("ws://127.0.0.1:8080/", false).unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t.path, "/");
        assert_eq!(t.host, "127.0.0.1:8080");
        let t = Target::parse("ws://127.3.4.5:9/ws?x=1", false).unwrap();
        assert_eq!(t.path, "/ws?x=1");
        assert!(Target::parse("ws://[::1]:9", false).is_ok_and(|t| t.host_name() == "[::1]"));
        assert_eq!(
            Target::parse("wss://[::1]", false).unwrap().host_name(),
            "[::1]"
        );
        let t = Target::parse("wss://localhost:9/p", false).unwrap();
        assert_eq!(
            (t.host_name(), t.url().as_str()),
            ("localhost", "wss://localhost:9/p")
        );
        assert_eq!(
            Target::parse("ws://127.0.0.1", false).unwrap().addr.port(),
            80
        );
    }

    #[test]
    fn refuses_remote_targets_without_the_flag() {
        assert_eq!(
            Target::parse("ws://10.1.2.3:80/", false),
            Err(TargetError::NotLoopback("10.1.2.3".parse().unwrap()))
        );
        assert!(Target::parse("ws://10.1.2.3:80/", true).is_ok());
        assert!(Target::parse("wss://127.0.0.1:1/", false).is_ok_and(|t| t.tls));
        assert_eq!(
            Target::parse("wss://127.0.0.1", false).map(|t| t.addr.port()),
            Ok(443)
        );
        assert_eq!(
            Target::parse("http://127.0.0.1:1/", false),
            Err(TargetError::UnsupportedScheme)
        );
    }

    #[test]
    fn adds_source_addresses_beyond_one_address_worth_of_ports() {
        let target: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert!(source_addresses(target, 20_000, 27_000).is_empty());
        let sources = source_addresses(target, 100_000, 27_000);
        assert_eq!(sources.len(), 4);
        assert_eq!(sources[0], "127.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(sources[3], "127.0.0.5".parse::<IpAddr>().unwrap());
        let sources = source_addresses(target, 1_000_000, 1_000);
        assert_eq!(sources.len(), SOURCE_ADDRESSES_MAX);
        assert_eq!(sources[252], "127.0.0.254".parse::<IpAddr>().unwrap());
    }
}
