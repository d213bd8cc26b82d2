//! The client address from the forwarding headers of an HTTP request: `X-Forwarded-For` (the
//! de facto list of hops) and `Forwarded: for=` (RFC 7239 §4, §5.2, §6). Sans-IO.
//!
//! Owns: reading the hops of either header, right to left, and picking the client by the
//! "rightmost untrusted hop" rule. May not touch: which peers are trusted (the caller passes
//! the test) or where the header fields come from (`handshake::RequestHead` keeps them).
//!
//! Why right to left: every proxy appends the address it received the request from, so the
//! right end of the list was written by the proxy nearest the relay, and the left end by
//! whoever sent the request, which may be anyone. Walking from the right past hops that are
//! trusted proxies, the first untrusted hop is the client as the last trusted proxy saw it;
//! everything to its left is that client's own claim, and is ignored.
//!
//! Invariants: no allocation; a hop that cannot be read stops the walk (the address used is
//! then the last trusted hop read, never a guess from further left).

use std::net::{IpAddr, Ipv4Addr};

/// Which forwarding header the trusted proxies write. Only one is read: a client can always
/// add the other one, and a proxy that does not know it would pass it on untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, HAProxy, Envoy, AWS ALB, Cloudflare).
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239).
    Forwarded,
}

impl ForwardedHeader {
    /// Parses the command-line spelling (`x-forwarded-for`, `forwarded`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "x-forwarded-for" => Some(Self::XForwardedFor),
            "forwarded" => Some(Self::Forwarded),
            _ => None,
        }
    }

    /// The command-line spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::XForwardedFor => "x-forwarded-for",
            Self::Forwarded => "forwarded",
        }
    }
}

/// Stands for a field whose value is not text: read as a hop that cannot be read.
pub const UNREADABLE_HOP: &str = "unknown";

/// Most fields of one forwarding header kept from a request head. Repeated fields form one
/// list in order (RFC 9110 §5.3); when there are more, the leftmost are dropped, which can only
/// end the walk earlier, at a trusted hop.
pub const FIELDS_MAX: usize = 4;

/// The fields of one forwarding header, in arrival order (the last [`FIELDS_MAX`] of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeaderFields<'a> {
    fields: [&'a str; FIELDS_MAX],
    len: usize,
}

impl<'a> HeaderFields<'a> {
    /// Appends one field value; beyond [`FIELDS_MAX`] the oldest is dropped.
    pub fn push(&mut self, value: &'a str) {
        if self.len == FIELDS_MAX {
            self.fields.rotate_left(1);
            self.len -= 1;
        }
        if let Some(slot) = self.fields.get_mut(self.len) {
            *slot = value;
            self.len += 1;
        }
    }

    /// True when the header was not present.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The kept fields, oldest first.
    pub fn as_slice(&self) -> &[&'a str] {
        self.fields.get(..self.len).unwrap_or_default()
    }
}

/// The client address: walks the hops of `fields` from the right, starting from `peer` (the
/// trusted proxy that sent the request), and returns the first hop that is not `trusted`; if
/// every hop is trusted, or a hop cannot be read, the last trusted hop read.
pub fn client_address(
    header: ForwardedHeader,
    fields: &HeaderFields<'_>,
    peer: IpAddr,
    trusted: impl Fn(IpAddr) -> bool,
) -> IpAddr {
    let mut current = peer;
    for field in fields.as_slice().iter().rev() {
        for item in field.rsplit(',') {
            let item = item.trim();
            if item.is_empty() {
                continue; // RFC 9110 §5.6.1: empty list elements are ignored
            }
            let hop = match header {
                ForwardedHeader::XForwardedFor => node_address(item),
                ForwardedHeader::Forwarded => forwarded_for(item),
            };
            match hop {
                Some(ip) => current = ip.to_canonical(),
                None => return current,
            }
            if !trusted(current) {
                return current;
            }
        }
    }
    current
}

/// One `X-Forwarded-For` entry or RFC 7239 node: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:80`. `None` for anything else (`unknown`, `_hidden`).
fn node_address(node: &str) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return ip.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6);
    }
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    let (ip, port) = node.split_once(':')?;
    match is_port(port) {
        true => ip.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
        false => None,
    }
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u16>().is_ok()
}

/// The `for=` node of one RFC 7239 `forwarded-element` (`for=...;proto=...;by=...`), its
/// quotes removed (§4: IPv6 nodes must be quoted). `None` when absent or unreadable.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let value = element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("for")
            .then_some(value.trim())
    })?;
    let node = match value.strip_prefix('"') {
        Some(quoted) => quoted.strip_suffix('"')?,
        None => value,
    };
    // A quoted-string with escapes is not an address (§6 forbids nothing, but no node needs it).
    if node.contains('\\') || node.contains('"') {
        return None;
    }
    node_address(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn fields<'a>(values: &[&'a str]) -> HeaderFields<'a> {
        let mut f = HeaderFields::default();
        for v in values {
            f.push(v);
        }
        f
    }

    /// Trusted: 10.0.0.0/8 and ::1.
    fn trusted(ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => v4.octets()[0] == 10,
            IpAddr::V6(v6) => v6.is_loopback(),
        }
    }

    fn xff(values: &[&str]) -> IpAddr {
        client_address(
            ForwardedHeader::XForwardedFor,
            &fields(values),
            ip("10.0.0.1"),
            trusted,
        )
    }

    fn fwd(values: &[&str]) -> IpAddr {
        client_address(
            ForwardedHeader::Forwarded,
            &fields(values),
            ip("10.0.0.1"),
            trusted,
        )
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        assert_eq!(xff(&["203.0.113.7"]), ip("203.0.113.7"));
        // The client claims 1.1.1.1; the trusted proxies saw 203.0.113.7.
        assert_eq!(xff(&["1.1.1.1, 203.0.113.7, 10.0.0.2"]), ip("203.0.113.7"));
        assert_eq!(
            xff(&["1.1.1.1,203.0.113.7,10.0.0.2,10.0.0.3"]),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn repeated_fields_are_one_list_in_order() {
        assert_eq!(
            xff(&["1.1.1.1, 203.0.113.7", "10.0.0.2"]),
            ip("203.0.113.7")
        );
        assert_eq!(xff(&["198.51.100.1", "10.0.0.2", ""]), ip("198.51.100.1"));
    }

    #[test]
    fn all_trusted_gives_the_leftmost_and_no_header_gives_the_peer() {
        assert_eq!(xff(&["10.9.9.9, 10.0.0.2"]), ip("10.9.9.9"));
        assert_eq!(xff(&[]), ip("10.0.0.1"));
        assert_eq!(xff(&[" , "]), ip("10.0.0.1"));
    }

    #[test]
    fn an_unreadable_hop_stops_at_the_last_trusted_one() {
        assert_eq!(xff(&["203.0.113.7, garbage, 10.0.0.2"]), ip("10.0.0.2"));
        assert_eq!(xff(&["203.0.113.7, unknown"]), ip("10.0.0.1"));
        assert_eq!(xff(&["203.0.113.7:99999"]), ip("10.0.0.1"));
    }

    #[test]
    fn node_spellings_with_ports_and_brackets() {
        assert_eq!(xff(&["203.0.113.7:4711"]), ip("203.0.113.7"));
        assert_eq!(xff(&["2001:db8::7"]), ip("2001:db8::7"));
        assert_eq!(xff(&["[2001:db8::7]"]), ip("2001:db8::7"));
        assert_eq!(xff(&["[2001:db8::7]:4711"]), ip("2001:db8::7"));
        assert_eq!(xff(&["[2001:db8::7]x"]), ip("10.0.0.1"));
        // IPv4-mapped hops are IPv4 (they would otherwise escape IPv4 trust ranges).
        assert_eq!(
            xff(&["::ffff:10.0.0.9, ::ffff:203.0.113.7"]),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn forwarded_for_elements() {
        assert_eq!(fwd(&["for=203.0.113.7"]), ip("203.0.113.7"));
        assert_eq!(
            fwd(&["for=1.1.1.1, for=203.0.113.7;proto=https;by=10.0.0.1, for=10.0.0.2"]),
            ip("203.0.113.7")
        );
        assert_eq!(
            fwd(&[r#"For="[2001:db8:cafe::17]:4711""#]),
            ip("2001:db8:cafe::17")
        );
        assert_eq!(
            fwd(&["proto=https;for=\"203.0.113.7:80\""]),
            ip("203.0.113.7")
        );
        // Obfuscated, unknown, or absent `for`: unreadable, stop at the last trusted hop.
        assert_eq!(fwd(&["for=203.0.113.7, for=_hidden"]), ip("10.0.0.1"));
        assert_eq!(fwd(&["for=unknown"]), ip("10.0.0.1"));
        assert_eq!(fwd(&["by=10.0.0.1;proto=http"]), ip("10.0.0.1"));
        assert_eq!(fwd(&["for=\"203.0.113.7"]), ip("10.0.0.1"));
    }

    #[test]
    fn the_other_header_is_not_read() {
        // An X-Forwarded-For value read as Forwarded has no `for=`: nothing is taken from it.
        assert_eq!(fwd(&["203.0.113.7"]), ip("10.0.0.1"));
        assert_eq!(xff(&["for=203.0.113.7"]), ip("10.0.0.1"));
    }

    #[test]
    fn more_fields_than_kept_drop_the_leftmost() {
        let f = fields(&["a", "b", "c", "d", "e"]);
        assert_eq!(f.as_slice(), &["b", "c", "d", "e"]);
        assert!(HeaderFields::default().is_empty());
    }

    #[test]
    fn header_spellings_round_trip() {
        for h in [ForwardedHeader::XForwardedFor, ForwardedHeader::Forwarded] {
            assert_eq!(ForwardedHeader::parse(h.as_str()), Some(h));
        }
        assert_eq!(ForwardedHeader::parse("x-real-ip"), None);
    }
}
