//! The PROXY protocol header (HAProxy's `doc/proxy-protocol.txt`, versions 1 and 2) that an L4
//! load balancer (AWS NLB, HAProxy `send-proxy`, Envoy) sends before the first byte of the
//! relayed connection, to tell the server the client's address. Sans-IO.
//!
//! Owns: recognising either version at the front of a buffer, parsing it, and its rules.
//! May not touch: sockets, what the caller does with the address, the bytes after the header
//! (the HTTP request, which may arrive in the same segment: `Complete` says where it starts).
//!
//! Invariants:
//! - Bounded: a v1 line is at most [`V1_BYTES_MAX`] bytes (spec §2.1) and a v2 header at most
//!   [`V2_BYTES_MAX`]; beyond that the header is refused, never buffered further.
//! - `Partial` only while what arrived is a strict prefix of a header that may still be valid;
//!   the first byte that cannot belong to one is an error, one variant per rule.
//! - Never panics on input: every index is checked.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::proto::Decode;

/// §2.1: the longest v1 line, CRLF included ("PROXY UNKNOWN" with two full IPv6 addresses).
pub const V1_BYTES_MAX: usize = 107;
/// §2.2: the 12-byte signature that starts a v2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// §2.2: the fixed part of a v2 header: signature, version/command, family/transport, length.
pub const V2_FIXED_BYTES: usize = 16;
/// Largest v2 address block plus TLVs accepted (the length field allows 65,535). The largest
/// address block is 216 bytes (AF_UNIX); the TLVs load balancers add (AWS VPC endpoint id,
/// Azure link id, unique id of at most 128 bytes, TLS details) fit with room to spare.
pub const V2_PAYLOAD_BYTES_MAX: usize = 2048;
/// Largest v2 header accepted.
pub const V2_BYTES_MAX: usize = V2_FIXED_BYTES + V2_PAYLOAD_BYTES_MAX;

/// §2.1: a v1 header starts with these 6 bytes ("PROXY" and exactly one space).
const V1_PREFIX: &[u8] = b"PROXY ";

/// Which version of the protocol the header used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Human-readable (§2.1).
    V1,
    /// Binary (§2.2).
    V2,
}

/// What the header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Relayed on behalf of a client: v1 `TCP4`/`TCP6`, v2 `PROXY` over AF_INET/AF_INET6.
    Relayed {
        /// The client's address and port.
        source: SocketAddr,
        /// The address and port the client connected to (on the proxy).
        destination: SocketAddr,
    },
    /// v2 `LOCAL`: the proxy's own connection (health checks); the TCP peer is the client
    /// (§2.2: the receiver "must use the real connection endpoints").
    Local,
    /// v1 `UNKNOWN`, or v2 `PROXY` with AF_UNSPEC, AF_UNIX or an unspecified transport: a valid
    /// header without a usable address; the TCP peer's address is used (§2.1, §2.2).
    Unknown,
}

/// A parsed PROXY protocol header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// v1 or v2.
    pub version: Version,
    /// The addresses it carries, if any.
    pub origin: Origin,
}

impl ProxyHeader {
    /// The client's address when the header names one.
    pub fn source(&self) -> Option<SocketAddr> {
        match self.origin {
            Origin::Relayed { source, .. } => Some(source),
            Origin::Local | Origin::Unknown => None,
        }
    }
}

/// A header that breaks a rule of the spec: the connection must be dropped (§2.1: "Any
/// sequence which does not exactly match the protocol must be discarded and cause the
/// receiver to abort the connection"; §2.2 likewise for unassigned values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyHeaderError {
    /// The connection starts with neither the v1 `PROXY ` nor the v2 signature (§2.2, end:
    /// "the protocol is not covered by this specification and the connection must be dropped").
    #[error("no PROXY protocol header")]
    Missing,
    /// §2.1: no CRLF within the first 107 bytes.
    #[error("PROXY v1 line longer than 107 bytes")]
    V1TooLong,
    /// §2.1: a lone CR or LF where the CRLF ending was expected.
    #[error("PROXY v1 line not ended by CRLF")]
    V1BadLineEnd,
    /// §2.1: the protocol is not `TCP4`, `TCP6` or `UNKNOWN`.
    #[error("PROXY v1 protocol is not TCP4, TCP6 or UNKNOWN")]
    V1UnknownProtocol,
    /// §2.1: not exactly five fields separated by exactly one space.
    #[error("PROXY v1 line does not have its five space-separated fields")]
    V1BadFields,
    /// §2.1: an address is not in the canonical format of the announced family.
    #[error("PROXY v1 address is not a valid address of its family")]
    V1BadAddress,
    /// §2.1: a port is not a decimal number in 0..=65535 without heading zeroes.
    #[error("PROXY v1 port is not a decimal number in 0..=65535")]
    V1BadPort,
    /// §2.2: the version (high nibble of the 13th byte) is not 2.
    #[error("PROXY v2 version is not 2")]
    V2BadVersion,
    /// §2.2: the command (low nibble of the 13th byte) is neither LOCAL (0) nor PROXY (1).
    #[error("PROXY v2 command is neither LOCAL nor PROXY")]
    V2BadCommand,
    /// §2.2: the address family is over 3 (AF_UNIX) or the transport over 2 (DGRAM).
    #[error("PROXY v2 address family or transport is unassigned")]
    V2BadFamily,
    /// §2.2: the length is shorter than the address block of the announced family.
    #[error("PROXY v2 length is shorter than its address block")]
    V2LengthMismatch,
    /// The length announces more than [`V2_PAYLOAD_BYTES_MAX`] bytes.
    #[error("PROXY v2 header longer than the relay accepts")]
    V2TooLong,
}

impl ProxyHeaderError {
    /// A stable snake_case label for logs.
    pub fn kind(self) -> &'static str {
        match self {
            Self::Missing => "proxy_header_missing",
            Self::V1TooLong => "proxy_v1_too_long",
            Self::V1BadLineEnd => "proxy_v1_bad_line_end",
            Self::V1UnknownProtocol => "proxy_v1_unknown_protocol",
            Self::V1BadFields => "proxy_v1_bad_fields",
            Self::V1BadAddress => "proxy_v1_bad_address",
            Self::V1BadPort => "proxy_v1_bad_port",
            Self::V2BadVersion => "proxy_v2_bad_version",
            Self::V2BadCommand => "proxy_v2_bad_command",
            Self::V2BadFamily => "proxy_v2_bad_family",
            Self::V2LengthMismatch => "proxy_v2_length_mismatch",
            Self::V2TooLong => "proxy_v2_too_long",
        }
    }
}

/// Parses the PROXY header at the front of `buf`. `Complete` carries the header's length: the
/// bytes after it are the relayed connection's first bytes.
pub fn parse(buf: &[u8]) -> Result<Decode<ProxyHeader>, ProxyHeaderError> {
    if starts_like(buf, &V2_SIGNATURE) {
        return match buf.len() >= V2_SIGNATURE.len() {
            true => parse_v2(buf),
            false => Ok(Decode::Partial),
        };
    }
    if starts_like(buf, V1_PREFIX) {
        return match buf.len() >= V1_PREFIX.len() {
            true => parse_v1(buf),
            false => Ok(Decode::Partial),
        };
    }
    Err(ProxyHeaderError::Missing)
}

/// Whether `buf` and `prefix` agree on their common length (an empty `buf` agrees).
fn starts_like(buf: &[u8], prefix: &[u8]) -> bool {
    let n = buf.len().min(prefix.len());
    buf.get(..n) == prefix.get(..n)
}

/// §2.1. `buf` starts with `PROXY `.
fn parse_v1(buf: &[u8]) -> Result<Decode<ProxyHeader>, ProxyHeaderError> {
    let window = buf.get(..V1_BYTES_MAX).unwrap_or(buf);
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        if let Some(cr) = window.iter().position(|&b| b == b'\r') {
            if cr + 1 < window.len() {
                return Err(ProxyHeaderError::V1BadLineEnd); // CR followed by something else
            }
        }
        return match window.len() == V1_BYTES_MAX {
            true => Err(ProxyHeaderError::V1TooLong),
            false => Ok(Decode::Partial),
        };
    };
    let line = window.get(..lf).unwrap_or_default();
    let Some(line) = line.strip_suffix(b"\r") else {
        return Err(ProxyHeaderError::V1BadLineEnd);
    };
    if line.contains(&b'\r') {
        return Err(ProxyHeaderError::V1BadLineEnd);
    }
    let fields = line.get(V1_PREFIX.len()..).unwrap_or_default();
    let origin = parse_v1_fields(fields)?;
    let header = ProxyHeader {
        version: Version::V1,
        origin,
    };
    Ok(Decode::Complete(header, lf + 1))
}

/// The fields after `PROXY `: `PROTO SRC DST SPORT DPORT`, or `UNKNOWN` and anything.
fn parse_v1_fields(fields: &[u8]) -> Result<Origin, ProxyHeaderError> {
    let (proto, rest) = match fields.iter().position(|&b| b == b' ') {
        Some(i) => (fields.get(..i).unwrap_or_default(), fields.get(i + 1..)),
        None => (fields, None),
    };
    let v6 = match proto {
        // §2.1: "the receiver must ignore anything presented before the CRLF is found".
        b"UNKNOWN" => return Ok(Origin::Unknown),
        b"TCP4" => false,
        b"TCP6" => true,
        _ => return Err(ProxyHeaderError::V1UnknownProtocol),
    };
    let rest = rest.ok_or(ProxyHeaderError::V1BadFields)?;
    let mut parts = rest.split(|&b| b == b' ');
    let mut next = || parts.next().ok_or(ProxyHeaderError::V1BadFields);
    let (src, dst, sport, dport) = (next()?, next()?, next()?, next()?);
    if parts.next().is_some() {
        return Err(ProxyHeaderError::V1BadFields);
    }
    let source = SocketAddr::new(v1_address(src, v6)?, v1_port(sport)?);
    let destination = SocketAddr::new(v1_address(dst, v6)?, v1_port(dport)?);
    Ok(Origin::Relayed {
        source,
        destination,
    })
}

/// An address of the announced family. (Rust's parsers refuse heading zeroes in IPv4, as the
/// spec asks.) An empty field means a doubled space: a field error, not an address error.
fn v1_address(field: &[u8], v6: bool) -> Result<IpAddr, ProxyHeaderError> {
    if field.is_empty() {
        return Err(ProxyHeaderError::V1BadFields);
    }
    let text = std::str::from_utf8(field).map_err(|_| ProxyHeaderError::V1BadAddress)?;
    let ip = match v6 {
        false => text.parse::<Ipv4Addr>().map(IpAddr::V4),
        true => text.parse::<Ipv6Addr>().map(IpAddr::V6),
    };
    ip.map_err(|_| ProxyHeaderError::V1BadAddress)
}

/// §2.1: decimal, 0..=65535, no heading zeroes (`0` itself is fine), digits only.
fn v1_port(field: &[u8]) -> Result<u16, ProxyHeaderError> {
    if field.is_empty() {
        return Err(ProxyHeaderError::V1BadFields);
    }
    let digits_only = field.len() <= 5 && field.iter().all(u8::is_ascii_digit);
    let heading_zero = field.len() > 1 && field.first() == Some(&b'0');
    if !digits_only || heading_zero {
        return Err(ProxyHeaderError::V1BadPort);
    }
    let value = field
        .iter()
        .fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
    u16::try_from(value).map_err(|_| ProxyHeaderError::V1BadPort)
}

/// §2.2. `buf` starts with the 12-byte signature.
fn parse_v2(buf: &[u8]) -> Result<Decode<ProxyHeader>, ProxyHeaderError> {
    let Some(&ver_cmd) = buf.get(12) else {
        return Ok(Decode::Partial);
    };
    if ver_cmd >> 4 != 2 {
        return Err(ProxyHeaderError::V2BadVersion);
    }
    let local = match ver_cmd & 0x0f {
        0x0 => true,
        0x1 => false,
        _ => return Err(ProxyHeaderError::V2BadCommand),
    };
    let Some(&fam) = buf.get(13) else {
        return Ok(Decode::Partial);
    };
    let (family, transport) = (fam >> 4, fam & 0x0f);
    if family > 3 || transport > 2 {
        return Err(ProxyHeaderError::V2BadFamily);
    }
    let (Some(&hi), Some(&lo)) = (buf.get(14), buf.get(15)) else {
        return Ok(Decode::Partial);
    };
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    if len > V2_PAYLOAD_BYTES_MAX {
        return Err(ProxyHeaderError::V2TooLong);
    }
    let total = V2_FIXED_BYTES + len;
    let Some(payload) = buf.get(V2_FIXED_BYTES..total) else {
        return Ok(Decode::Partial);
    };
    // §2.2: LOCAL discards the address block "including the family which is ignored", but the
    // length is always honoured ("Receivers MUST always consider this field").
    let origin = match local {
        true => Origin::Local,
        false => v2_origin(family, transport, payload)?,
    };
    let header = ProxyHeader {
        version: Version::V2,
        origin,
    };
    Ok(Decode::Complete(header, total))
}

/// The addresses of a v2 `PROXY` command; TLVs after them are skipped (§2.2.x: optional).
fn v2_origin(family: u8, transport: u8, payload: &[u8]) -> Result<Origin, ProxyHeaderError> {
    let block = match family {
        0x1 => 12,  // 2 × 4 address bytes + 2 × 2 port bytes
        0x2 => 36,  // 2 × 16 + 2 × 2
        0x3 => 216, // 2 × 108
        _ => 0,     // AF_UNSPEC: no address
    };
    let addresses = payload
        .get(..block)
        .ok_or(ProxyHeaderError::V2LengthMismatch)?;
    // AF_UNSPEC, AF_UNIX, or an unspecified transport: nothing the relay can use as an IP.
    if !(family == 0x1 || family == 0x2) || transport == 0 {
        return Ok(Origin::Unknown);
    }
    let (source, destination) = match family {
        0x1 => (v4_at(addresses, 0, 8), v4_at(addresses, 4, 10)),
        _ => (v6_at(addresses, 0, 32), v6_at(addresses, 16, 34)),
    };
    match (source, destination) {
        (Some(source), Some(destination)) => Ok(Origin::Relayed {
            source,
            destination,
        }),
        _ => Err(ProxyHeaderError::V2LengthMismatch),
    }
}

fn port_at(b: &[u8], at: usize) -> Option<u16> {
    let bytes: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
    Some(u16::from_be_bytes(bytes))
}

fn v4_at(b: &[u8], addr_at: usize, port_at_: usize) -> Option<SocketAddr> {
    let octets: [u8; 4] = b.get(addr_at..addr_at + 4)?.try_into().ok()?;
    Some(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::from(octets)),
        port_at(b, port_at_)?,
    ))
}

fn v6_at(b: &[u8], addr_at: usize, port_at_: usize) -> Option<SocketAddr> {
    let octets: [u8; 16] = b.get(addr_at..addr_at + 16)?.try_into().ok()?;
    Some(SocketAddr::new(
        IpAddr::V6(Ipv6Addr::from(octets)),
        port_at(b, port_at_)?,
    ))
}

#[cfg(test)]
mod tests;
