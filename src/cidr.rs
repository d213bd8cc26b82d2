//! Address ranges in CIDR notation (RFC 4632 §3.1 for IPv4, RFC 4291 §2.3 for IPv6), for
//! `--trusted-proxy`.
//!
//! Owns: parsing `ADDR/PREFIX` (or a bare address: one host) and the membership test.
//! Invariants: IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what a dual-stack socket reports
//! for an IPv4 peer) are compared as the IPv4 address they map, on both sides, so one range
//! covers a peer however the kernel spelled it. Host bits beyond the prefix are refused rather
//! than silently masked: `10.0.0.1/8` is a typo more often than an intention. IPv4 ranges are
//! written as IPv4 (`::ffff:10.0.0.0/104` is refused: its prefix is wider than IPv4).

use std::net::IpAddr;
use std::str::FromStr;

/// A range of addresses: an address and how many leading bits of it are fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix_bits: u8,
}

/// Why a range did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// The part before `/` is not an IPv4 or IPv6 address.
    #[error("not an IP address")]
    BadAddress,
    /// The prefix is not a decimal number of bits within the family's width (32 or 128).
    #[error("prefix length must be 0..=32 for IPv4, 0..=128 for IPv6")]
    BadPrefix,
    /// Bits are set past the prefix (e.g. `10.0.0.1/8`; write `10.0.0.0/8`).
    #[error("address has bits set past the prefix length")]
    HostBitsSet,
}

impl Cidr {
    /// The range `addr/prefix_bits`.
    pub fn new(addr: IpAddr, prefix_bits: u8) -> Result<Cidr, CidrError> {
        let addr = addr.to_canonical();
        let width = family_bits(addr);
        if prefix_bits > width {
            return Err(CidrError::BadPrefix);
        }
        if bits(addr) & !mask(prefix_bits, width) != 0 {
            return Err(CidrError::HostBitsSet);
        }
        Ok(Cidr { addr, prefix_bits })
    }

    /// Whether `ip` is in the range (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        if ip.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        let m = mask(self.prefix_bits, family_bits(ip));
        bits(ip) & m == bits(self.addr)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| CidrError::BadAddress)?;
        let prefix_bits = match prefix {
            None => family_bits(addr.to_canonical()),
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse().map_err(|_| CidrError::BadPrefix)?
            }
            Some(_) => return Err(CidrError::BadPrefix),
        };
        Cidr::new(addr, prefix_bits)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_bits)
    }
}

/// Whether any range of `ranges` holds `ip`.
pub fn any_contains(ranges: &[Cidr], ip: IpAddr) -> bool {
    ranges.iter().any(|r| r.contains(ip))
}

fn family_bits(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// The address as an integer, right-aligned (IPv4 in the low 32 bits).
fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The `prefix_bits` leading bits of a `width`-bit address set, right-aligned like [`bits`].
fn mask(prefix_bits: u8, width: u8) -> u128 {
    let all: u128 = match width {
        128 => u128::MAX,
        w => (1u128 << w) - 1,
    };
    match prefix_bits {
        0 => 0,
        p if p >= width => all,
        p => all & !(all >> p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn ipv4_ranges_hold_exactly_their_addresses() {
        let r = cidr("10.1.0.0/16");
        assert!(r.contains(ip("10.1.0.0")));
        assert!(r.contains(ip("10.1.255.255")));
        assert!(!r.contains(ip("10.2.0.0")));
        assert!(!r.contains(ip("10.0.255.255")));
        assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!cidr("0.0.0.0/0").contains(ip("2001:db8::1")));
    }

    #[test]
    fn a_bare_address_is_one_host() {
        let r = cidr("192.0.2.7");
        assert_eq!(r.to_string(), "192.0.2.7/32");
        assert!(r.contains(ip("192.0.2.7")));
        assert!(!r.contains(ip("192.0.2.6")));
        assert_eq!(cidr("::1").to_string(), "::1/128");
    }

    #[test]
    fn ipv6_ranges_hold_exactly_their_addresses() {
        let r = cidr("2001:db8:cafe::/48");
        assert!(r.contains(ip("2001:db8:cafe:ffff::1")));
        assert!(!r.contains(ip("2001:db8:caff::1")));
        assert!(!r.contains(ip("10.0.0.1")));
    }

    #[test]
    fn ipv4_mapped_addresses_match_ipv4_ranges_both_ways() {
        assert!(cidr("127.0.0.0/8").contains(ip("::ffff:127.0.0.1")));
        assert!(cidr("::ffff:10.9.9.9").contains(ip("10.9.9.9")));
    }

    #[test]
    fn bad_ranges_are_refused_with_their_reason() {
        let err = |s: &str| s.parse::<Cidr>().err();
        assert_eq!(err("10.0.0.0/33"), Some(CidrError::BadPrefix));
        assert_eq!(err("::/129"), Some(CidrError::BadPrefix));
        assert_eq!(err("10.0.0.0/"), Some(CidrError::BadPrefix));
        assert_eq!(err("10.0.0.0/+8"), Some(CidrError::BadPrefix));
        assert_eq!(err("10.0.0.0/0008"), Some(CidrError::BadPrefix));
        assert_eq!(err("10.0.0.1/8"), Some(CidrError::HostBitsSet));
        assert_eq!(err("example.com/8"), Some(CidrError::BadAddress));
        assert_eq!(err(""), Some(CidrError::BadAddress));
    }
}
