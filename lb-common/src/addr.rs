//! Addresses as the maps hold them: 16 bytes, IPv4 in the first four, plus a family tag.
use core::net::IpAddr;

use crate::{FAMILY_V4, FAMILY_V6};

/// Our 16-byte address form: IPv4 in the first four bytes (IPv4-mapped IPv6 counts as IPv4,
/// since that is what the packet carries).
pub fn addr_bytes(addr: IpAddr) -> ([u8; 16], u8) {
    let mut out = [0u8; 16];
    match addr.to_canonical() {
        IpAddr::V4(v4) => {
            out[..4].copy_from_slice(&v4.octets());
            (out, FAMILY_V4)
        }
        IpAddr::V6(v6) => (v6.octets(), FAMILY_V6),
    }
}

/// The address a map's 16 bytes and family tag stand for.
pub fn bytes_addr(bytes: &[u8; 16], family: u8) -> IpAddr {
    if family == FAMILY_V4 {
        IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
    } else {
        IpAddr::from(*bytes)
    }
}

#[cfg(test)]
mod tests {
    use core::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    #[test]
    fn mapped_ipv4_is_ipv4() {
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped());
        let (bytes, family) = addr_bytes(mapped);
        assert_eq!(family, FAMILY_V4);
        assert_eq!(bytes_addr(&bytes, family), IpAddr::from([192, 0, 2, 7]));
    }

    #[test]
    fn ipv6_round_trips() {
        let addr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        let (bytes, family) = addr_bytes(addr);
        assert_eq!((family, bytes_addr(&bytes, family)), (FAMILY_V6, addr));
    }
}
