//! PROXY protocol: whatever a header says, encoding then parsing gives it back (addresses
//! as the specification normalises them); arbitrary bytes never panic the parser.
#![no_main]

use std::net::{IpAddr, SocketAddr};

use lb_core::{
    model::ProxyProtocolVersion,
    proxy_protocol::{parse, ProxyHeader},
};
use libfuzzer_sys::fuzz_target;

#[derive(arbitrary::Arbitrary, Debug)]
struct Input {
    v2: bool,
    client: ([u8; 16], u16, bool),
    frontend: ([u8; 16], u16, bool),
    authority: Option<Vec<u8>>,
    alpn: Option<Vec<u8>>,
    noise: Vec<u8>,
}

fn addr((bytes, port, v4): ([u8; 16], u16, bool)) -> SocketAddr {
    let ip = if v4 { IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]]) } else { IpAddr::from(bytes) };
    SocketAddr::new(ip, port)
}

fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(lb_core::routing::canonical(a.ip()), a.port())
}

fuzz_target!(|input: Input| {
    let _ = parse(&input.noise);
    let version = if input.v2 { ProxyProtocolVersion::V2 } else { ProxyProtocolVersion::V1 };
    let header = ProxyHeader { client: addr(input.client), frontend: addr(input.frontend), authority: input.authority.as_deref(), alpn: input.alpn.as_deref() };
    let Ok(bytes) = header.to_vec(version) else { return };
    let parsed = parse(&bytes).expect("our own header parses");
    assert_eq!(parsed.len, bytes.len());
    let back = parsed.header().expect("a PROXY command with addresses");
    // Mixed families are sent as IPv6 (IPv4 mapped); same families keep their form.
    let same_family = canonical(header.client).is_ipv4() == canonical(header.frontend).is_ipv4();
    if same_family {
        assert_eq!(canonical(back.client), canonical(header.client));
        assert_eq!(canonical(back.frontend), canonical(header.frontend));
    }
    if input.v2 {
        // Present TLVs come back byte for byte; absent ones stay absent.
        for (sent, got) in [(header.authority, back.authority), (header.alpn, back.alpn)] {
            match sent {
                Some(value) if !value.is_empty() => assert_eq!(got, Some(value)),
                None => assert_eq!(got, None),
                Some(_) => {}
            }
        }
    }
});
