//! Writing a header: v1 text or v2 binary, into a buffer the caller owns.

use std::{io::Write, net::IpAddr};

use thiserror::Error;

use super::{
    ProxyHeader, WireAddrs, PP2_TYPE_ALPN, PP2_TYPE_AUTHORITY, TLV_HEADER_LEN, V1_MAX_LEN, V2_CMD_PROXY, V2_FIXED_LEN, V2_SIGNATURE, V2_TCP4, V2_TCP4_ADDR_LEN,
    V2_TCP6, V2_TCP6_ADDR_LEN,
};
use crate::model::ProxyProtocolVersion;

/// A header that the wire format can not carry.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// The v2 length field is 16 bits: addresses and TLVs together must fit in 65,535 bytes.
    #[error("PROXY v2 addresses and TLVs take {len} bytes, above the 65535-byte limit of the length field (authority {authority} bytes, ALPN {alpn} bytes)")]
    TooLong {
        /// Bytes after the fixed header.
        len: usize,

        /// Of which the SNI TLV value.
        authority: usize,

        /// Of which the ALPN TLV value.
        alpn: usize,
    },
}

impl ProxyHeader<'_> {
    /// Bytes to reserve for [`encode`](Self::encode): exact for v2, the longest possible
    /// line (107 bytes) for v1.
    pub fn capacity(&self, version: ProxyProtocolVersion) -> usize {
        match version {
            ProxyProtocolVersion::V1 => V1_MAX_LEN,
            ProxyProtocolVersion::V2 => V2_FIXED_LEN + self.v2_payload_len(),
        }
    }

    /// Appends the header to `out`. v1 carries no TLVs: `authority` and `alpn` are ignored.
    pub fn encode(&self, version: ProxyProtocolVersion, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match version {
            ProxyProtocolVersion::V1 => {
                self.encode_v1(out);
                Ok(())
            }
            ProxyProtocolVersion::V2 => self.encode_v2(out),
        }
    }

    /// The header in a buffer of its own, allocated once at the right size.
    pub fn to_vec(&self, version: ProxyProtocolVersion) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(self.capacity(version));
        self.encode(version, &mut out)?;
        Ok(out)
    }

    fn encode_v1(&self, out: &mut Vec<u8>) {
        let (proto, client, frontend) = match WireAddrs::of(self.client, self.frontend) {
            WireAddrs::V4 { client, frontend } => ("TCP4", client, frontend),
            WireAddrs::V6 { client, frontend } => ("TCP6", client, frontend),
        };
        // Display gives what the specification asks: dotted quads, RFC 5952 IPv6 text
        // (both sides are IPv6 here, never mapped), decimal ports without leading zeros.
        // Writing to a Vec can not fail.
        let _ = write!(out, "PROXY {proto} {} {} {} {}\r\n", client.ip(), frontend.ip(), client.port(), frontend.port());
    }

    fn encode_v2(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let payload = self.v2_payload_len();
        let len = u16::try_from(payload).map_err(|_| EncodeError::TooLong {
            len: payload,
            authority: self.authority.map_or(0, <[u8]>::len),
            alpn: self.alpn.map_or(0, <[u8]>::len),
        })?;
        out.reserve(V2_FIXED_LEN + payload);
        out.extend_from_slice(&V2_SIGNATURE);
        out.push(V2_CMD_PROXY);
        match WireAddrs::of(self.client, self.frontend) {
            WireAddrs::V4 { client, frontend } => {
                out.push(V2_TCP4);
                out.extend_from_slice(&len.to_be_bytes());
                push_ip(out, client.ip());
                push_ip(out, frontend.ip());
                out.extend_from_slice(&client.port().to_be_bytes());
                out.extend_from_slice(&frontend.port().to_be_bytes());
            }
            WireAddrs::V6 { client, frontend } => {
                out.push(V2_TCP6);
                out.extend_from_slice(&len.to_be_bytes());
                push_ip(out, client.ip());
                push_ip(out, frontend.ip());
                out.extend_from_slice(&client.port().to_be_bytes());
                out.extend_from_slice(&frontend.port().to_be_bytes());
            }
        }
        // Each value is shorter than the whole payload, which fits in 16 bits.
        for (kind, value) in [(PP2_TYPE_ALPN, self.alpn), (PP2_TYPE_AUTHORITY, self.authority)] {
            if let Some(value) = value {
                out.push(kind);
                out.extend_from_slice(&(value.len() as u16).to_be_bytes());
                out.extend_from_slice(value);
            }
        }
        Ok(())
    }

    /// Bytes after the 16 fixed ones: addresses and TLVs.
    fn v2_payload_len(&self) -> usize {
        let addresses = match WireAddrs::of(self.client, self.frontend) {
            WireAddrs::V4 { .. } => V2_TCP4_ADDR_LEN,
            WireAddrs::V6 { .. } => V2_TCP6_ADDR_LEN,
        };
        let tlv = |value: Option<&[u8]>| value.map_or(0, |v| TLV_HEADER_LEN + v.len());
        addresses + tlv(self.alpn) + tlv(self.authority)
    }
}

fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => out.extend_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out.extend_from_slice(&v6.octets()),
    }
}
