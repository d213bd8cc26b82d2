//! Exact-byte tests of the PROXY header parser: every shape the spec allows, and one refusal
//! per rule, including every truncation of valid headers (never an error, never a panic).

use super::*;

fn complete(buf: &[u8]) -> (ProxyHeader, usize) {
    match parse(buf) {
        Ok(Decode::Complete(h, used)) => (h, used),
        other => panic!("expected a complete header, got {other:?} for {buf:?}"),
    }
}

fn err(buf: &[u8]) -> ProxyHeaderError {
    match parse(buf) {
        Err(e) => e,
        other => panic!("expected an error, got {other:?} for {buf:?}"),
    }
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn relayed(source: &str, destination: &str) -> Origin {
    Origin::Relayed {
        source: sa(source),
        destination: sa(destination),
    }
}

/// A v2 header: signature, `ver_cmd`, `fam`, the length of `payload`, `payload`.
fn v2(ver_cmd: u8, fam: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(ver_cmd);
    out.push(fam);
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

const V2_TCP4_PAYLOAD: [u8; 12] = [
    192, 0, 2, 10, // source 192.0.2.10
    10, 0, 0, 5, // destination 10.0.0.5
    0xd4, 0x31, // source port 54321
    0x01, 0xbb, // destination port 443
];

fn v2_tcp6_payload() -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
    p.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
    p.extend_from_slice(&40000u16.to_be_bytes());
    p.extend_from_slice(&8080u16.to_be_bytes());
    p
}

#[test]
fn v1_tcp4_with_the_request_in_the_same_segment() {
    let line = b"PROXY TCP4 192.0.2.10 10.0.0.5 54321 443\r\n";
    let mut buf = line.to_vec();
    buf.extend_from_slice(b"GET / HTTP/1.1\r\n");
    let (h, used) = complete(&buf);
    assert_eq!(used, line.len());
    assert_eq!(h.version, Version::V1);
    assert_eq!(h.origin, relayed("192.0.2.10:54321", "10.0.0.5:443"));
    assert_eq!(h.source(), Some(sa("192.0.2.10:54321")));
}

#[test]
fn v1_tcp6() {
    let line = b"PROXY TCP6 2001:db8::1 2001:db8::2 40000 8080\r\n";
    let (h, used) = complete(line);
    assert_eq!(used, line.len());
    assert_eq!(
        h.origin,
        relayed("[2001:db8::1]:40000", "[2001:db8::2]:8080")
    );
}

#[test]
fn v1_unknown_short_and_long_forms_use_no_address() {
    let (h, used) = complete(b"PROXY UNKNOWN\r\nGET");
    assert_eq!(
        (h.version, h.origin, used),
        (Version::V1, Origin::Unknown, 15)
    );
    // §2.1: anything after UNKNOWN before the CRLF is ignored.
    let line = b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_eq!(line.len(), V1_BYTES_MAX);
    let (h, used) = complete(line);
    assert_eq!((h.origin, used), (Origin::Unknown, V1_BYTES_MAX));
    assert_eq!(h.source(), None);
}

#[test]
fn v1_limits_of_ports_and_addresses() {
    let (h, _) = complete(b"PROXY TCP4 255.255.255.255 0.0.0.0 65535 0\r\n");
    assert_eq!(h.origin, relayed("255.255.255.255:65535", "0.0.0.0:0"));
}

#[test]
fn v1_longer_than_107_bytes_is_refused_at_byte_107() {
    let mut line = b"PROXY UNKNOWN ".to_vec();
    line.resize(V1_BYTES_MAX - 1, b'x');
    assert_eq!(parse(&line), Ok(Decode::Partial));
    line.push(b'x');
    assert_eq!(err(&line), ProxyHeaderError::V1TooLong);
    // A CRLF at bytes 108-109 is too late.
    line.extend_from_slice(b"\r\n");
    assert_eq!(err(&line), ProxyHeaderError::V1TooLong);
}

#[test]
fn v1_line_ends_other_than_crlf_are_refused() {
    let e = ProxyHeaderError::V1BadLineEnd;
    assert_eq!(err(b"PROXY TCP4 192.0.2.10 10.0.0.5 1 2\n"), e);
    assert_eq!(err(b"PROXY TCP4 192.0.2.10 10.0.0.5 1 2\rX"), e);
    assert_eq!(err(b"PROXY TCP4 192.0.2.10\r 10.0.0.5 1 2\r\n"), e);
    // A CR as the last byte so far may still be followed by its LF.
    assert_eq!(
        parse(b"PROXY TCP4 192.0.2.10 10.0.0.5 1 2\r"),
        Ok(Decode::Partial)
    );
}

#[test]
fn v1_field_rules() {
    use ProxyHeaderError::*;
    assert_eq!(
        err(b"PROXY TCP5 192.0.2.10 10.0.0.5 1 2\r\n"),
        V1UnknownProtocol
    );
    assert_eq!(
        err(b"PROXY tcp4 192.0.2.10 10.0.0.5 1 2\r\n"),
        V1UnknownProtocol
    );
    assert_eq!(err(b"PROXY TCP4\r\n"), V1BadFields);
    assert_eq!(err(b"PROXY TCP4 192.0.2.10 10.0.0.5 1\r\n"), V1BadFields);
    assert_eq!(
        err(b"PROXY TCP4 192.0.2.10 10.0.0.5 1 2 3\r\n"),
        V1BadFields
    );
    assert_eq!(err(b"PROXY TCP4  192.0.2.10 10.0.0.5 1 2\r\n"), V1BadFields);
    assert_eq!(err(b"PROXY TCP4 192.0.2.10 10.0.0.5 1 2 \r\n"), V1BadFields);
    assert_eq!(
        err(b"PROXY TCP4 2001:db8::1 10.0.0.5 1 2\r\n"),
        V1BadAddress
    );
    assert_eq!(
        err(b"PROXY TCP6 192.0.2.10 2001:db8::2 1 2\r\n"),
        V1BadAddress
    );
    assert_eq!(
        err(b"PROXY TCP4 192.0.2.010 10.0.0.5 1 2\r\n"),
        V1BadAddress
    );
    assert_eq!(
        err(b"PROXY TCP4 192.0.2.256 10.0.0.5 1 2\r\n"),
        V1BadAddress
    );
    assert_eq!(
        err(b"PROXY TCP4 192.0.2.10 10.0.0.5 65536 2\r\n"),
        V1BadPort
    );
    assert_eq!(err(b"PROXY TCP4 192.0.2.10 10.0.0.5 080 2\r\n"), V1BadPort);
    assert_eq!(err(b"PROXY TCP4 192.0.2.10 10.0.0.5 +80 2\r\n"), V1BadPort);
    assert_eq!(
        err(b"PROXY TCP4 192.0.2.10 10.0.0.5 1 999999\r\n"),
        V1BadPort
    );
}

#[test]
fn v2_tcp4_with_the_request_in_the_same_segment() {
    let header = v2(0x21, 0x11, &V2_TCP4_PAYLOAD);
    assert_eq!(header.len(), 28);
    let mut buf = header.clone();
    buf.extend_from_slice(b"GET / HTTP/1.1\r\n");
    let (h, used) = complete(&buf);
    assert_eq!(used, 28);
    assert_eq!(h.version, Version::V2);
    assert_eq!(h.origin, relayed("192.0.2.10:54321", "10.0.0.5:443"));
}

#[test]
fn v2_tcp4_exact_bytes_as_haproxy_sends_them() {
    // 172.19.0.1:42578 -> 172.19.0.3:80, as captured from HAProxy's `send-proxy-v2`.
    let bytes = [
        0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00,
        0x0c, 0xac, 0x13, 0x00, 0x01, 0xac, 0x13, 0x00, 0x03, 0xa6, 0x52, 0x00, 0x50,
    ];
    let (h, used) = complete(&bytes);
    assert_eq!(used, 28);
    assert_eq!(h.origin, relayed("172.19.0.1:42578", "172.19.0.3:80"));
}

#[test]
fn v2_tcp6() {
    let header = v2(0x21, 0x21, &v2_tcp6_payload());
    assert_eq!(header.len(), 16 + 36);
    let (h, used) = complete(&header);
    assert_eq!(used, 52);
    assert_eq!(
        h.origin,
        relayed("[2001:db8::1]:40000", "[2001:db8::2]:8080")
    );
}

#[test]
fn v2_tlvs_after_the_addresses_are_skipped() {
    let mut payload = V2_TCP4_PAYLOAD.to_vec();
    // PP2_TYPE_NOOP (0x04) with 3 bytes, then an AWS-style custom TLV (0xEA).
    payload.extend_from_slice(&[0x04, 0x00, 0x03, 0, 0, 0, 0xea, 0x00, 0x02, b'v', b'p']);
    let header = v2(0x21, 0x11, &payload);
    let (h, used) = complete(&header);
    assert_eq!(used, header.len());
    assert_eq!(h.source(), Some(sa("192.0.2.10:54321")));
}

#[test]
fn v2_local_ignores_family_and_addresses_but_honours_the_length() {
    let (h, used) = complete(&v2(0x20, 0x00, &[]));
    assert_eq!(
        (h.version, h.origin, used),
        (Version::V2, Origin::Local, 16)
    );
    // A LOCAL command that still carries an address block: skipped, not used.
    let header = v2(0x20, 0x11, &V2_TCP4_PAYLOAD);
    let (h, used) = complete(&header);
    assert_eq!((h.origin, used), (Origin::Local, 28));
}

#[test]
fn v2_proxy_with_unspec_or_unix_family_has_no_usable_address() {
    let (h, used) = complete(&v2(0x21, 0x00, &[]));
    assert_eq!((h.origin, used), (Origin::Unknown, 16));
    let (h, used) = complete(&v2(0x21, 0x31, &[0u8; 216]));
    assert_eq!((h.origin, used), (Origin::Unknown, 232));
    // AF_INET with an unspecified transport: addresses skipped.
    let (h, _) = complete(&v2(0x21, 0x10, &V2_TCP4_PAYLOAD));
    assert_eq!(h.origin, Origin::Unknown);
}

#[test]
fn v2_rules() {
    use ProxyHeaderError::*;
    assert_eq!(err(&v2(0x11, 0x11, &V2_TCP4_PAYLOAD)), V2BadVersion);
    assert_eq!(err(&v2(0x31, 0x11, &V2_TCP4_PAYLOAD)), V2BadVersion);
    assert_eq!(err(&v2(0x22, 0x11, &V2_TCP4_PAYLOAD)), V2BadCommand);
    assert_eq!(err(&v2(0x2f, 0x11, &V2_TCP4_PAYLOAD)), V2BadCommand);
    assert_eq!(err(&v2(0x21, 0x41, &V2_TCP4_PAYLOAD)), V2BadFamily);
    assert_eq!(err(&v2(0x21, 0x13, &V2_TCP4_PAYLOAD)), V2BadFamily);
    // Length shorter than the family's address block (TCP4 needs 12, TCP6 36, UNIX 216).
    assert_eq!(
        err(&v2(0x21, 0x11, &V2_TCP4_PAYLOAD[..11])),
        V2LengthMismatch
    );
    assert_eq!(err(&v2(0x21, 0x21, &V2_TCP4_PAYLOAD)), V2LengthMismatch);
    assert_eq!(err(&v2(0x21, 0x31, &[0u8; 215])), V2LengthMismatch);
}

#[test]
fn v2_oversized_is_refused_from_the_fixed_part_alone() {
    let mut fixed = V2_SIGNATURE.to_vec();
    fixed.extend_from_slice(&[0x21, 0x11]);
    fixed.extend_from_slice(&((V2_PAYLOAD_BYTES_MAX + 1) as u16).to_be_bytes());
    assert_eq!(err(&fixed), ProxyHeaderError::V2TooLong);
    let mut at_max = V2_SIGNATURE.to_vec();
    at_max.extend_from_slice(&[0x21, 0x11]);
    at_max.extend_from_slice(&(V2_PAYLOAD_BYTES_MAX as u16).to_be_bytes());
    assert_eq!(parse(&at_max), Ok(Decode::Partial));
    at_max.extend_from_slice(&V2_TCP4_PAYLOAD);
    at_max.resize(V2_BYTES_MAX, 0);
    assert_eq!(complete(&at_max).1, V2_BYTES_MAX);
}

#[test]
fn anything_else_is_a_missing_header() {
    assert_eq!(err(b"GET / HTTP/1.1\r\n"), ProxyHeaderError::Missing);
    assert_eq!(err(b"PROXY\t"), ProxyHeaderError::Missing);
    assert_eq!(err(b"PROXYX"), ProxyHeaderError::Missing);
    assert_eq!(err(b"\r\n\r\n\x01"), ProxyHeaderError::Missing);
    assert_eq!(err(b"\x16\x03\x01"), ProxyHeaderError::Missing); // a TLS ClientHello
    assert_eq!(parse(b""), Ok(Decode::Partial));
}

#[test]
fn every_truncation_of_a_valid_header_is_partial() {
    let mut headers: Vec<Vec<u8>> = vec![
        b"PROXY TCP4 192.0.2.10 10.0.0.5 54321 443\r\n".to_vec(),
        b"PROXY TCP6 2001:db8::1 2001:db8::2 40000 8080\r\n".to_vec(),
        b"PROXY UNKNOWN\r\n".to_vec(),
        v2(0x21, 0x11, &V2_TCP4_PAYLOAD),
        v2(0x21, 0x21, &v2_tcp6_payload()),
        v2(0x20, 0x00, &[]),
    ];
    for header in headers.drain(..) {
        for cut in 0..header.len() {
            assert_eq!(
                parse(&header[..cut]),
                Ok(Decode::Partial),
                "{header:?} cut at {cut}"
            );
        }
        assert_eq!(complete(&header).1, header.len());
    }
}

#[test]
fn arbitrary_input_never_panics_and_never_claims_more_than_it_has() {
    use proptest::prelude::*;
    let mut runner = proptest::test_runner::TestRunner::default();
    let prefixes = prop_oneof![
        Just(V2_SIGNATURE.to_vec()),
        Just(b"PROXY ".to_vec()),
        Just(Vec::new())
    ];
    let strategy = (prefixes, proptest::collection::vec(any::<u8>(), 0..300));
    let result = runner.run(&strategy, |(prefix, tail)| {
        let mut buf = prefix;
        buf.extend_from_slice(&tail);
        if let Ok(Decode::Complete(_, used)) = parse(&buf) {
            prop_assert!(used <= buf.len());
            prop_assert!(used <= V2_BYTES_MAX);
        }
        Ok(())
    });
    assert!(result.is_ok(), "{result:?}");
}
