//! Reading a header: bounded (at most 107 bytes of a v1 line, at most 16 + 65,535 bytes of a
//! v2 header are looked at), no panics on any input, typed errors naming the byte offset.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    str::FromStr,
};

use thiserror::Error;

use super::{
    ProxyHeader, PP2_TYPE_ALPN, PP2_TYPE_AUTHORITY, TLV_HEADER_LEN, V1_MAX_LEN, V1_PREFIX, V2_CMD_LOCAL, V2_CMD_PROXY, V2_FIXED_LEN, V2_SIGNATURE, V2_TCP4,
    V2_TCP4_ADDR_LEN, V2_TCP6, V2_TCP6_ADDR_LEN, V2_UNSPEC,
};
use crate::model::ProxyProtocolVersion;

/// Why bytes are not (yet) a PROXY header. Offsets count from the header's first byte.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    /// Everything so far is valid; at least `need` bytes in all are needed to decide.
    #[error("PROXY header incomplete: {have} bytes so far, at least {need} needed")]
    Incomplete {
        /// Bytes given.
        have: usize,

        /// Bytes needed at least.
        need: usize,
    },
    /// Neither the v1 `PROXY ` prefix nor the v2 signature.
    #[error("not a PROXY protocol header (neither the v1 \"PROXY \" prefix nor the v2 signature)")]
    NotProxy,
    /// A v1 line longer than the specification allows.
    #[error("PROXY v1 line has no CRLF within the first {max} bytes")]
    V1TooLong {
        /// The longest v1 line (107 bytes).
        max: usize,
    },
    /// A v1 line that does not follow the grammar.
    #[error("PROXY v1 line: {what} at offset {offset}")]
    V1Malformed {
        /// The part at fault.
        what: &'static str,

        /// Where it starts.
        offset: usize,
    },
    /// The 13th byte: version 2 with command LOCAL (0x20) or PROXY (0x21) expected.
    #[error("PROXY v2 version/command byte {0:#04x} is neither LOCAL (0x20) nor PROXY (0x21)")]
    V2VersionCommand(u8),
    /// The 14th byte: only TCP over IPv4 (0x11) or IPv6 (0x21), or UNSPEC (0x00), are read.
    #[error("PROXY v2 family/transport byte {0:#04x} is not supported (TCP4 0x11, TCP6 0x21 or UNSPEC 0x00)")]
    V2Family(u8),
    /// A v2 header too short for the addresses of its family.
    #[error("PROXY v2 length {len} is shorter than the {need}-byte address block of its family")]
    V2ShortAddresses {
        /// The header's length field.
        len: usize,

        /// The family's address block size.
        need: usize,
    },
    /// A v2 TLV that overruns the header or is malformed.
    #[error("PROXY v2 TLV at offset {offset}: {what}")]
    V2Tlv {
        /// What is wrong with it.
        what: &'static str,

        /// Where the TLV starts.
        offset: usize,
    },
}

/// `PROXY`: the addresses are the real connection's. `LOCAL` (v2 only): the connection was
/// made by the proxy itself (a health check); the receiver uses the real endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// A connection of the proxy's own.
    Local,
    /// A relayed client connection.
    Proxy,
}

/// The endpoints a header announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addresses {
    /// TCP over IPv4 (both addresses IPv4) or IPv6 (both IPv6).
    Tcp {
        /// The client's address and port.
        client: SocketAddr,
        /// The address and port the client connected to.
        frontend: SocketAddr,
    },
    /// v1 `UNKNOWN`, v2 `UNSPEC` or a `LOCAL` command: no usable addresses.
    Unknown,
}

/// A parsed header borrowing its TLV values from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// v1 or v2.
    pub version: ProxyProtocolVersion,
    /// `PROXY` or `LOCAL`.
    pub command: Command,
    /// The endpoints announced.
    pub addresses: Addresses,
    /// `PP2_TYPE_AUTHORITY`, if present (v2).
    pub authority: Option<&'a [u8]>,
    /// `PP2_TYPE_ALPN`, if present (v2).
    pub alpn: Option<&'a [u8]>,
    /// Header bytes: the connection's own data starts at this offset.
    pub len: usize,
}

impl<'a> Parsed<'a> {
    /// What a sender's [`ProxyHeader`] said, if the header is a `PROXY` one with addresses.
    pub fn header(&self) -> Option<ProxyHeader<'a>> {
        match (self.command, self.addresses) {
            (Command::Proxy, Addresses::Tcp { client, frontend }) => Some(ProxyHeader { client, frontend, authority: self.authority, alpn: self.alpn }),
            _ => None,
        }
    }
}

/// Reads the PROXY header (v1 or v2) at the start of `input`.
pub fn parse(input: &[u8]) -> Result<Parsed<'_>, ParseError> {
    if is_prefix_either_way(input, &V2_SIGNATURE) {
        parse_v2(input)
    } else if is_prefix_either_way(input, V1_PREFIX) {
        parse_v1(input)
    } else {
        Err(ParseError::NotProxy)
    }
}

/// True if the shorter of `input` and `expected` is a prefix of the other.
fn is_prefix_either_way(input: &[u8], expected: &[u8]) -> bool {
    let n = input.len().min(expected.len());
    input[..n] == expected[..n]
}

fn parse_v1(input: &[u8]) -> Result<Parsed<'_>, ParseError> {
    let window = &input[..input.len().min(V1_MAX_LEN)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return Err(if input.len() >= V1_MAX_LEN {
            ParseError::V1TooLong { max: V1_MAX_LEN }
        } else {
            ParseError::Incomplete { have: input.len(), need: input.len() + 1 }
        });
    };
    let len = end + 2;
    let unknown = Parsed { version: ProxyProtocolVersion::V1, command: Command::Proxy, addresses: Addresses::Unknown, authority: None, alpn: None, len };
    let mut fields = Fields { line: &input[..end], at: V1_PREFIX.len() };
    let proto = fields.next("missing protocol")?;
    match proto.1 {
        // The rest of an UNKNOWN line is to be ignored, whatever it holds.
        b"UNKNOWN" => return Ok(unknown),
        b"TCP4" | b"TCP6" => {}
        _ => return Err(ParseError::V1Malformed { what: "protocol is not TCP4, TCP6 or UNKNOWN", offset: proto.0 }),
    }
    let v6 = proto.1 == b"TCP6";
    let client_ip = fields.next("missing source address").and_then(|f| v1_ip(f, v6))?;
    let frontend_ip = fields.next("missing destination address").and_then(|f| v1_ip(f, v6))?;
    let client_port = fields.next("missing source port").and_then(v1_port)?;
    let frontend_port = fields.next("missing destination port").and_then(v1_port)?;
    if fields.at <= end {
        return Err(ParseError::V1Malformed { what: "bytes after the destination port", offset: fields.at });
    }
    Ok(Parsed {
        addresses: Addresses::Tcp { client: SocketAddr::new(client_ip, client_port), frontend: SocketAddr::new(frontend_ip, frontend_port) },
        ..unknown
    })
}

/// Space-separated fields of a v1 line (exactly one space between fields, none doubled).
struct Fields<'a> {
    line: &'a [u8],
    /// Offset of the next field; past the end once the last one was taken.
    at: usize,
}

impl<'a> Fields<'a> {
    /// The next field and its offset.
    fn next(&mut self, missing: &'static str) -> Result<(usize, &'a [u8]), ParseError> {
        let start = self.at;
        let rest = self.line.get(start..).filter(|r| !r.is_empty()).ok_or(ParseError::V1Malformed { what: missing, offset: start })?;
        let field = rest.split(|&b| b == b' ').next().unwrap_or_default();
        if field.is_empty() {
            return Err(ParseError::V1Malformed { what: "empty field (two spaces in a row)", offset: start });
        }
        self.at = start + field.len() + 1;
        Ok((start, field))
    }
}

fn v1_ip((offset, field): (usize, &[u8]), v6: bool) -> Result<IpAddr, ParseError> {
    let bad = |what| ParseError::V1Malformed { what, offset };
    let text = std::str::from_utf8(field).map_err(|_| bad("address is not ASCII"))?;
    if v6 {
        Ipv6Addr::from_str(text).map(IpAddr::V6).map_err(|_| bad("not an IPv6 address"))
    } else {
        Ipv4Addr::from_str(text).map(IpAddr::V4).map_err(|_| bad("not an IPv4 address"))
    }
}

/// Decimal 0..=65535 without leading zeros or sign.
fn v1_port((offset, field): (usize, &[u8])) -> Result<u16, ParseError> {
    let bad = |what| ParseError::V1Malformed { what, offset };
    if !field.iter().all(u8::is_ascii_digit) || field.len() > 5 {
        return Err(bad("port is not a decimal number of at most 5 digits"));
    }
    if field.len() > 1 && field[0] == b'0' {
        return Err(bad("port has a leading zero"));
    }
    let value = field.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    u16::try_from(value).map_err(|_| bad("port is above 65535"))
}

fn parse_v2(input: &[u8]) -> Result<Parsed<'_>, ParseError> {
    let Some(fixed) = input.get(..V2_FIXED_LEN) else {
        return Err(ParseError::Incomplete { have: input.len(), need: V2_FIXED_LEN });
    };
    let command = match fixed[12] {
        V2_CMD_LOCAL => Command::Local,
        V2_CMD_PROXY => Command::Proxy,
        other => return Err(ParseError::V2VersionCommand(other)),
    };
    let family = fixed[13];
    let payload_len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    let len = V2_FIXED_LEN + payload_len;
    let Some(payload) = input.get(V2_FIXED_LEN..len) else {
        return Err(ParseError::Incomplete { have: input.len(), need: len });
    };
    let mut parsed = Parsed { version: ProxyProtocolVersion::V2, command, addresses: Addresses::Unknown, authority: None, alpn: None, len };
    // LOCAL: the block is to be skipped whatever it holds. UNSPEC: its layout is unknown.
    if command == Command::Local || family == V2_UNSPEC {
        return Ok(parsed);
    }
    let addr_len = match family {
        V2_TCP4 => V2_TCP4_ADDR_LEN,
        V2_TCP6 => V2_TCP6_ADDR_LEN,
        other => return Err(ParseError::V2Family(other)),
    };
    let (block, tlvs) = payload.split_at_checked(addr_len).ok_or(ParseError::V2ShortAddresses { len: payload_len, need: addr_len })?;
    parsed.addresses = v2_addresses(block);
    read_tlvs(tlvs, V2_FIXED_LEN + addr_len, &mut parsed)?;
    Ok(parsed)
}

/// Two addresses then two ports; `block` is exactly 12 or 36 bytes.
fn v2_addresses(block: &[u8]) -> Addresses {
    let half = (block.len() - 4) / 2;
    let (ips, ports) = block.split_at(2 * half);
    let ip = |bytes: &[u8]| match <[u8; 4]>::try_from(bytes) {
        Ok(v4) => IpAddr::from(v4),
        Err(_) => IpAddr::from(<[u8; 16]>::try_from(bytes).unwrap_or_default()),
    };
    let port = |at: usize| u16::from_be_bytes([ports[at], ports[at + 1]]);
    Addresses::Tcp { client: SocketAddr::new(ip(&ips[..half]), port(0)), frontend: SocketAddr::new(ip(&ips[half..]), port(2)) }
}

/// Walks the TLVs, keeping ALPN and authority; other types are skipped unchecked (CRC32C
/// included: it is not verified).
fn read_tlvs<'a>(mut rest: &'a [u8], mut offset: usize, parsed: &mut Parsed<'a>) -> Result<(), ParseError> {
    while !rest.is_empty() {
        let bad = |what| ParseError::V2Tlv { what, offset };
        let [kind, hi, lo, tail @ ..] = rest else {
            return Err(bad("truncated TLV header"));
        };
        let value_len = usize::from(u16::from_be_bytes([*hi, *lo]));
        let (value, tail) = tail.split_at_checked(value_len).ok_or(bad("value runs past the header's end"))?;
        let slot = match *kind {
            PP2_TYPE_ALPN => Some((&mut parsed.alpn, "duplicate ALPN TLV")),
            PP2_TYPE_AUTHORITY => Some((&mut parsed.authority, "duplicate authority TLV")),
            _ => None,
        };
        if let Some((slot, duplicate)) = slot {
            if slot.replace(value).is_some() {
                return Err(bad(duplicate));
            }
        }
        offset += TLV_HEADER_LEN + value_len;
        rest = tail;
    }
    Ok(())
}
