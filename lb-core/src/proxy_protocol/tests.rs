//! Exact bytes for known headers, typed errors for broken ones, and properties: every header
//! round-trips through the parser, every prefix of one is `Incomplete`, no input panics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;

use super::*;
use crate::{
    hello::{HelloReader, Progress},
    model::ProxyProtocolVersion::{V1, V2},
};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("literal socket address")
}

/// Chromium's hello from the reader's fixtures: SNI www.example.test, ALPN h2 then http/1.1.
fn chrome_hello() -> ClientHello {
    let text = include_str!("../../tests/fixtures/chrome_hello.hex");
    let digits: Vec<u8> = text.lines().filter(|l| !l.starts_with('#')).flat_map(str::bytes).filter(u8::is_ascii_hexdigit).collect();
    let bytes: Vec<u8> = digits.chunks(2).map(|pair| u8::from_str_radix(std::str::from_utf8(pair).expect("ascii"), 16).expect("hex")).collect();
    match HelloReader::new().feed(&bytes) {
        Ok(Progress::Complete(hello)) => hello,
        other => panic!("fixture is a complete hello: {other:?}"),
    }
}

#[test]
fn v1_ipv4_header_is_the_specification_line() {
    let header = ProxyHeader::new(addr("192.168.0.1:56324"), addr("192.168.0.11:443"));
    assert_eq!(header.to_vec(V1).unwrap(), b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
}

#[test]
fn v1_ipv4_mapped_addresses_of_a_dual_stack_socket_are_written_as_tcp4() {
    let header = ProxyHeader::new(addr("[::ffff:10.77.1.2]:40000"), addr("[::ffff:10.77.1.1]:443"));
    assert_eq!(header.to_vec(V1).unwrap(), b"PROXY TCP4 10.77.1.2 10.77.1.1 40000 443\r\n");
}

#[test]
fn v1_ipv6_header_uses_compressed_text() {
    let header = ProxyHeader::new(addr("[fd77:1::2]:40000"), addr("[fd77:1::1]:443"));
    assert_eq!(header.to_vec(V1).unwrap(), b"PROXY TCP6 fd77:1::2 fd77:1::1 40000 443\r\n");
}

#[test]
fn v1_mixed_families_are_written_as_tcp6_with_the_ipv4_side_mapped() {
    let header = ProxyHeader::new(addr("10.0.0.1:1"), addr("[2001:db8::1]:2"));
    assert_eq!(header.to_vec(V1).unwrap(), b"PROXY TCP6 ::ffff:10.0.0.1 2001:db8::1 1 2\r\n");
}

#[test]
fn v1_longest_header_fits_the_107_byte_limit() {
    let max = SocketAddr::new(IpAddr::V6(Ipv6Addr::new(0xffff, 0xfffe, 0xffff, 0xfffe, 0xffff, 0xfffe, 0xffff, 0xfffe)), 65535);
    let header = ProxyHeader::new(max, max);
    let bytes = header.to_vec(V1).unwrap();
    assert_eq!(bytes.len(), 104, "{}", String::from_utf8_lossy(&bytes));
    assert!(bytes.len() <= header.capacity(V1));
    assert_eq!(parse(&bytes).unwrap().header(), Some(header));
}

#[test]
fn v1_ignores_tlvs() {
    let header = ProxyHeader { authority: Some(b"a.test"), alpn: Some(b"h2"), ..ProxyHeader::new(addr("10.0.0.1:1"), addr("10.0.0.2:2")) };
    assert_eq!(header.to_vec(V1).unwrap(), b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n");
}

#[test]
fn v2_ipv4_header_with_alpn_and_authority_tlvs() {
    let header = ProxyHeader { authority: Some(b"a.test"), alpn: Some(b"h2"), ..ProxyHeader::new(addr("10.77.1.2:40000"), addr("10.77.1.1:443")) };
    let mut expected = V2_SIGNATURE.to_vec();
    expected.extend_from_slice(&[0x21, 0x11, 0, 12 + 5 + 9]);
    expected.extend_from_slice(&[10, 77, 1, 2, 10, 77, 1, 1, 0x9c, 0x40, 0x01, 0xbb]);
    expected.extend_from_slice(&[0x01, 0, 2, b'h', b'2']);
    expected.extend_from_slice(&[0x02, 0, 6]);
    expected.extend_from_slice(b"a.test");
    let bytes = header.to_vec(V2).unwrap();
    assert_eq!(bytes, expected);
    assert_eq!(bytes.len(), header.capacity(V2));
    assert_eq!(bytes.capacity(), header.capacity(V2), "one allocation of the exact size");
}

#[test]
fn v2_ipv6_header_without_tlvs() {
    let header = ProxyHeader::new(addr("[fd77:1::2]:40000"), addr("[fd77:1::1]:443"));
    let mut expected = V2_SIGNATURE.to_vec();
    expected.extend_from_slice(&[0x21, 0x21, 0, 36]);
    expected.extend_from_slice(&"fd77:1::2".parse::<Ipv6Addr>().unwrap().octets());
    expected.extend_from_slice(&"fd77:1::1".parse::<Ipv6Addr>().unwrap().octets());
    expected.extend_from_slice(&[0x9c, 0x40, 0x01, 0xbb]);
    assert_eq!(header.to_vec(V2).unwrap(), expected);
}

#[test]
fn v2_ipv4_mapped_addresses_are_sent_as_af_inet() {
    let header = ProxyHeader::new(addr("[::ffff:10.77.1.2]:40000"), addr("[::ffff:10.77.1.1]:443"));
    let bytes = header.to_vec(V2).unwrap();
    assert_eq!(&bytes[12..16], &[0x21, 0x11, 0, 12]);
    let parsed = parse(&bytes).unwrap();
    assert_eq!(parsed.addresses, Addresses::Tcp { client: addr("10.77.1.2:40000"), frontend: addr("10.77.1.1:443") });
}

#[test]
fn v2_payload_over_65535_bytes_is_refused() {
    let big = vec![b'a'; 65535];
    let header = ProxyHeader { authority: Some(&big), ..ProxyHeader::new(addr("10.0.0.1:1"), addr("10.0.0.2:2")) };
    assert!(matches!(header.to_vec(V2), Err(EncodeError::TooLong { authority: 65535, alpn: 0, .. })));
    let fits = vec![b'a'; 65535 - 12 - 3];
    let header = ProxyHeader { authority: Some(&fits), ..header };
    assert_eq!(parse(&header.to_vec(V2).unwrap()).unwrap().authority, Some(&fits[..]));
}

#[test]
fn header_for_a_tls_connection_carries_sni_and_first_offered_alpn() {
    let hello = chrome_hello();
    let header = ProxyHeader::for_connection(addr("10.77.1.2:40000"), addr("10.77.1.1:443"), Some(&hello));
    assert_eq!(header.authority, Some(&b"www.example.test"[..]));
    assert_eq!(header.alpn, Some(&b"h2"[..]), "the client's first choice, not http/1.1");
    let bytes = header.to_vec(V2).unwrap();
    assert_eq!(parse(&bytes).unwrap().header(), Some(header));
}

#[test]
fn header_without_a_hello_carries_addresses_only() {
    let header = ProxyHeader::for_connection(addr("10.77.1.2:40000"), addr("10.77.1.1:443"), None);
    assert_eq!(header, ProxyHeader::new(addr("10.77.1.2:40000"), addr("10.77.1.1:443")));
    assert_eq!(header.to_vec(V2).unwrap().len(), V2_FIXED_LEN + 12);
}

#[test]
fn parser_reports_where_the_connection_data_starts() {
    let mut stream = ProxyHeader::new(addr("10.0.0.1:1"), addr("10.0.0.2:2")).to_vec(V1).unwrap();
    let header_len = stream.len();
    stream.extend_from_slice(b"\x16\x03\x01rest of the hello");
    assert_eq!(parse(&stream).unwrap().len, header_len);
}

#[test]
fn parser_reads_v1_unknown_and_v2_local_and_unspec_without_addresses() {
    for input in [&b"PROXY UNKNOWN\r\n"[..], b"PROXY UNKNOWN ffff::1 ::1 1 2\r\n"] {
        let parsed = parse(input).unwrap();
        assert_eq!((parsed.addresses, parsed.len, parsed.header()), (Addresses::Unknown, input.len(), None));
    }
    for (command, family) in [(0x20, 0x11), (0x21, 0x00)] {
        let mut input = V2_SIGNATURE.to_vec();
        input.extend_from_slice(&[command, family, 0, 3, 0xff, 0xff, 0xff]);
        let parsed = parse(&input).unwrap();
        assert_eq!((parsed.addresses, parsed.len), (Addresses::Unknown, input.len()));
    }
}

#[test]
fn parser_errors_are_typed_and_located() {
    use ParseError::*;
    let v2 = |rest: &[u8]| [&V2_SIGNATURE[..], rest].concat();
    let cases: Vec<(Vec<u8>, ParseError)> = vec![
        (b"GET / HTTP/1.1\r\n".to_vec(), NotProxy),
        (b"\x16\x03\x01".to_vec(), NotProxy),
        (b"PROXY TCP4 1.2.3.4".to_vec(), Incomplete { have: 18, need: 19 }),
        (vec![b'P'; 1].into_iter().chain(*b"ROXY ").chain([b'x'; 120]).collect(), V1TooLong { max: 107 }),
        (b"PROXY TCP5 1.2.3.4 1.2.3.5 1 2\r\n".to_vec(), V1Malformed { what: "protocol is not TCP4, TCP6 or UNKNOWN", offset: 6 }),
        (b"PROXY TCP4 1.2.3.4  1.2.3.5 1 2\r\n".to_vec(), V1Malformed { what: "empty field (two spaces in a row)", offset: 19 }),
        (b"PROXY TCP4 ::1 1.2.3.5 1 2\r\n".to_vec(), V1Malformed { what: "not an IPv4 address", offset: 11 }),
        (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n".to_vec(), V1Malformed { what: "not an IPv6 address", offset: 11 }),
        (b"PROXY TCP4 1.2.3.4 1.2.3.5 01 2\r\n".to_vec(), V1Malformed { what: "port has a leading zero", offset: 27 }),
        (b"PROXY TCP4 1.2.3.4 1.2.3.5 1 65536\r\n".to_vec(), V1Malformed { what: "port is above 65535", offset: 29 }),
        (b"PROXY TCP4 1.2.3.4 1.2.3.5 1 +2\r\n".to_vec(), V1Malformed { what: "port is not a decimal number of at most 5 digits", offset: 29 }),
        (b"PROXY TCP4 1.2.3.4 1.2.3.5 1\r\n".to_vec(), V1Malformed { what: "missing destination port", offset: 29 }),
        (b"PROXY TCP4 1.2.3.4 1.2.3.5 1 2 3\r\n".to_vec(), V1Malformed { what: "bytes after the destination port", offset: 31 }),
        (V2_SIGNATURE[..7].to_vec(), Incomplete { have: 7, need: 16 }),
        (v2(&[0x21, 0x11, 0, 12, 1, 2]), Incomplete { have: 18, need: 28 }),
        (v2(&[0x11, 0x11, 0, 0]), V2VersionCommand(0x11)),
        (v2(&[0x22, 0x11, 0, 0]), V2VersionCommand(0x22)),
        (v2(&[0x21, 0x12, 0, 0]), V2Family(0x12)),
        (v2(&[0x21, 0x31, 0, 0]), V2Family(0x31)),
        (v2(&[0x21, 0x21, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), V2ShortAddresses { len: 12, need: 36 }),
        (v2(&[0x21, 0x11, 0, 14, 1, 1, 1, 1, 2, 2, 2, 2, 0, 1, 0, 2, 0x01, 0]), V2Tlv { what: "truncated TLV header", offset: 28 }),
        (v2(&[0x21, 0x11, 0, 16, 1, 1, 1, 1, 2, 2, 2, 2, 0, 1, 0, 2, 0x02, 0, 2, b'a']), V2Tlv { what: "value runs past the header's end", offset: 28 }),
        (v2(&[0x21, 0x11, 0, 20, 1, 1, 1, 1, 2, 2, 2, 2, 0, 1, 0, 2, 0x01, 0, 1, b'a', 0x01, 0, 1, b'b']), V2Tlv { what: "duplicate ALPN TLV", offset: 32 }),
    ];
    for (input, expected) in cases {
        assert_eq!(parse(&input), Err(expected), "input {:?}", String::from_utf8_lossy(&input));
    }
}

#[test]
fn parser_skips_unknown_tlvs() {
    let header = ProxyHeader { alpn: Some(b"h2"), ..ProxyHeader::new(addr("10.0.0.1:1"), addr("10.0.0.2:2")) };
    let mut bytes = header.to_vec(V2).unwrap();
    bytes.extend_from_slice(&[0x04, 0, 3, 0, 0, 0]); // NOOP
    let payload = u16::from_be_bytes([bytes[14], bytes[15]]) + 6;
    bytes[14..16].copy_from_slice(&payload.to_be_bytes());
    assert_eq!(parse(&bytes).unwrap().header(), Some(header));
}

fn socket_pair() -> impl Strategy<Value = (SocketAddr, SocketAddr)> {
    let v4 = (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port));
    let v6 = (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port));
    prop_oneof![(v4.clone(), v4.clone()), (v6.clone(), v6.clone()), (v4.clone(), v6.clone()), (v6, v4)]
}

fn tlv_value(max: usize) -> impl Strategy<Value = Option<Vec<u8>>> {
    prop::option::of(prop::collection::vec(any::<u8>(), 0..max))
}

/// What the parser must give back: the addresses as the wire writes them.
fn as_written(header: ProxyHeader<'_>) -> ProxyHeader<'_> {
    let (client, frontend) = match WireAddrs::of(header.client, header.frontend) {
        WireAddrs::V4 { client, frontend } | WireAddrs::V6 { client, frontend } => (client, frontend),
    };
    ProxyHeader { client, frontend, ..header }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn v1_round_trip_gives_the_same_addresses((client, frontend) in socket_pair(), tail in prop::collection::vec(any::<u8>(), 0..64)) {
        let header = ProxyHeader::new(client, frontend);
        let mut bytes = header.to_vec(V1).unwrap();
        prop_assert!(bytes.len() <= V1_MAX_LEN);
        let len = bytes.len();
        bytes.extend_from_slice(&tail);
        let parsed = parse(&bytes).unwrap();
        prop_assert_eq!(parsed.len, len);
        prop_assert_eq!(parsed.header(), Some(as_written(header)));
        if header.client.ip().to_canonical() == header.client.ip() && header.frontend.ip().to_canonical() == header.frontend.ip() && header.client.is_ipv4() == header.frontend.is_ipv4() {
            prop_assert_eq!(parsed.header(), Some(header), "same family, nothing mapped: identical");
        }
    }

    #[test]
    fn v2_round_trip_gives_the_same_addresses_authority_and_alpn(
        (client, frontend) in socket_pair(),
        authority in tlv_value(300),
        alpn in tlv_value(256),
        tail in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let header = ProxyHeader { client, frontend, authority: authority.as_deref(), alpn: alpn.as_deref() };
        let mut bytes = header.to_vec(V2).unwrap();
        prop_assert_eq!(bytes.len(), header.capacity(V2));
        let len = bytes.len();
        bytes.extend_from_slice(&tail);
        let parsed = parse(&bytes).unwrap();
        prop_assert_eq!(parsed.len, len);
        prop_assert_eq!(parsed.header(), Some(as_written(header)));
    }

    #[test]
    fn every_prefix_of_a_header_is_incomplete(
        (client, frontend) in socket_pair(),
        authority in tlv_value(64),
        v2 in any::<bool>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let header = ProxyHeader { client, frontend, authority: authority.as_deref(), alpn: Some(b"h2") };
        let bytes = header.to_vec(if v2 { V2 } else { V1 }).unwrap();
        let prefix = &bytes[..cut.index(bytes.len())];
        let incomplete = matches!(parse(prefix), Err(ParseError::Incomplete { have, need }) if have == prefix.len() && need > have && need <= bytes.len());
        prop_assert!(incomplete, "{:?}", parse(prefix));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_bounded(&bytes);
    }

    #[test]
    fn arbitrary_v1_lines_never_panic(line in "PROXY [ -~]{0,110}(\r\n)?") {
        check_bounded(line.as_bytes());
    }

    #[test]
    fn arbitrary_v2_bodies_never_panic(
        command in prop_oneof![Just(0x20u8), Just(0x21), any::<u8>()],
        family in prop_oneof![Just(0x11u8), Just(0x21), Just(0x00), any::<u8>()],
        body in prop::collection::vec(any::<u8>(), 0..400),
        declared in prop::option::of(any::<u16>()),
    ) {
        let len = declared.unwrap_or(body.len() as u16);
        let input = [&V2_SIGNATURE[..], &[command, family], &len.to_be_bytes(), &body].concat();
        check_bounded(&input);
    }

    #[test]
    fn mutated_headers_never_panic(
        (client, frontend) in socket_pair(),
        v2 in any::<bool>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let header = ProxyHeader { client, frontend, authority: Some(b"www.example.test"), alpn: Some(b"h2") };
        let mut bytes = header.to_vec(if v2 { V2 } else { V1 }).unwrap();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        check_bounded(&bytes);
    }
}

/// Parses without panicking, and a header that parses lies within the input and its limits.
fn check_bounded(input: &[u8]) {
    if let Ok(parsed) = parse(input) {
        assert!(parsed.len <= input.len());
        match parsed.version {
            V1 => assert!(parsed.len <= V1_MAX_LEN),
            V2 => assert!(parsed.len <= V2_FIXED_LEN + usize::from(u16::MAX)),
        }
    }
}
