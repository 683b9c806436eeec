//! PROXY protocol, versions 1 and 2 (HAProxy's `proxy-protocol.txt`): the header a server with
//! `proxyProtocolVersion` receives before the client's first bytes, so that it sees the real
//! client address and the frontend address the client dialled instead of ours.
//!
//! Sans-io, codec only: [`ProxyHeader::encode`] writes into the caller's buffer (the daemon
//! allocates one buffer per connection, sized by [`ProxyHeader::capacity`]); [`parse`] reads a
//! header from a byte slice with bounded look-ahead and typed errors. The daemon only sends
//! headers; the parser serves round-trip tests and anyone checking what a server receives.
//!
//! What is sent:
//! - **v1**: `PROXY TCP4|TCP6 <client ip> <frontend ip> <client port> <frontend port>\r\n`.
//!   IPv4-mapped IPv6 addresses (how a dual-stack socket sees an IPv4 peer) are written as
//!   `TCP4`; if one side is IPv4 and the other IPv6, the IPv4 side is written mapped, as `TCP6`.
//! - **v2**: signature, version 2 / command `PROXY`, `AF_INET` or `AF_INET6` over `STREAM`
//!   (same family rules as v1), addresses and ports, then TLVs when the ClientHello was read:
//!   - `PP2_TYPE_ALPN`: the **first protocol id the client offered**. HAProxy sends the
//!     protocol it negotiated; we do not terminate TLS and never learn the server's choice, so
//!     the client's first preference is the best we know. Servers that need the negotiated
//!     protocol must read it from their own TLS handshake.
//!   - `PP2_TYPE_AUTHORITY`: the SNI host name, as the hello reader keeps it (ASCII,
//!     lowercased: DNS names compare case-insensitively).
//!
//!   No CRC32C or NOOP TLVs. The hello is only read on frontends whose rules look at it (so
//!   that server-first protocols keep working elsewhere); behind other frontends, and for
//!   clients that are not TLS, the v2 header carries the addresses alone.
//!
//! ```
//! # use lb_core::{model::ProxyProtocolVersion, proxy_protocol::{parse, ProxyHeader}};
//! let header = ProxyHeader::new("10.0.0.7:50000".parse().unwrap(), "192.0.2.1:443".parse().unwrap());
//! let bytes = header.to_vec(ProxyProtocolVersion::V1).unwrap();
//! assert_eq!(bytes, b"PROXY TCP4 10.0.0.7 192.0.2.1 50000 443\r\n");
//! assert_eq!(parse(&bytes).unwrap().header(), Some(header));
//! ```

mod encode;
mod parse;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

pub use encode::EncodeError;
pub use parse::{parse, Addresses, Command, ParseError, Parsed};

use crate::hello::ClientHello;

/// The 12 bytes every v2 header starts with.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Signature, version/command, family/transport and the 2-byte length.
pub const V2_FIXED_LEN: usize = 16;
/// The longest v1 line a receiver must accept, CRLF included.
pub const V1_MAX_LEN: usize = 107;
/// The v1 line's first bytes.
pub const V1_PREFIX: &[u8; 6] = b"PROXY ";

/// v2 TLV type of the application protocol (section 2.2 of the specification).
pub const PP2_TYPE_ALPN: u8 = 0x01;
/// v2 TLV type of the host name the client asked for (its SNI).
pub const PP2_TYPE_AUTHORITY: u8 = 0x02;

/// Version 2 in the high nibble, command in the low one.
const V2_CMD_LOCAL: u8 = 0x20;
const V2_CMD_PROXY: u8 = 0x21;
/// Address family in the high nibble, transport in the low one.
const V2_UNSPEC: u8 = 0x00;
const V2_TCP4: u8 = 0x11;
const V2_TCP6: u8 = 0x21;
/// Address block sizes: two addresses then two ports.
const V2_TCP4_ADDR_LEN: usize = 4 + 4 + 2 + 2;
const V2_TCP6_ADDR_LEN: usize = 16 + 16 + 2 + 2;
/// TLV type and 2-byte length.
const TLV_HEADER_LEN: usize = 3;

/// What one connection's header says. The addresses are written as the specification wants
/// whatever form they come in (IPv4-mapped IPv6 addresses become IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader<'a> {
    /// The client's address: the source of the connection we accepted.
    pub client: SocketAddr,
    /// The address the client connected to: the accepted socket's local address.
    pub frontend: SocketAddr,
    /// `PP2_TYPE_AUTHORITY` (v2 only): the SNI host name.
    pub authority: Option<&'a [u8]>,
    /// `PP2_TYPE_ALPN` (v2 only): one protocol id.
    pub alpn: Option<&'a [u8]>,
}

impl<'a> ProxyHeader<'a> {
    /// Addresses only, no TLVs.
    pub fn new(client: SocketAddr, frontend: SocketAddr) -> Self {
        Self { client, frontend, authority: None, alpn: None }
    }

    /// The header for a connection whose ClientHello was read (`None`: not read, or not TLS):
    /// its SNI as the authority and its first offered ALPN id.
    pub fn for_connection(client: SocketAddr, frontend: SocketAddr, hello: Option<&'a ClientHello>) -> Self {
        Self { client, frontend, authority: hello.and_then(ClientHello::sni).map(str::as_bytes), alpn: hello.and_then(|h| h.alpn().next()) }
    }
}

/// The address pair as written on the wire: both IPv4, or both IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WireAddrs {
    V4 { client: SocketAddr, frontend: SocketAddr },
    V6 { client: SocketAddr, frontend: SocketAddr },
}

impl WireAddrs {
    fn of(client: SocketAddr, frontend: SocketAddr) -> Self {
        let (c, f) = (canonical(client), canonical(frontend));
        match (c.ip(), f.ip()) {
            (IpAddr::V4(_), IpAddr::V4(_)) => Self::V4 { client: c, frontend: f },
            _ => Self::V6 { client: as_v6(c), frontend: as_v6(f) },
        }
    }
}

/// IPv4-mapped IPv6 addresses as IPv4; scope and flow label dropped (the header has no room).
fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => SocketAddr::new(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4), addr.port()),
        IpAddr::V4(_) => addr,
    }
}

fn as_v6(addr: SocketAddr) -> SocketAddr {
    let ip: Ipv6Addr = match addr.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    SocketAddr::new(IpAddr::V6(ip), addr.port())
}
