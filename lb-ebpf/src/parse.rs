//! Bounded header parsing: Ethernet (one optional VLAN tag), IPv4 / IPv6, TCP.
use lb_common::{FlowKey, FAMILY_V4, FAMILY_V6};

use crate::frame::Frame;

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
pub const IPPROTO_TCP: u8 = 6;
const IPV4_MIN_HLEN: usize = 20;
pub const IPV6_HLEN: usize = 40;
pub const TCP_MIN_HLEN: usize = 20;
pub const TCP_FLAG_FIN: u8 = 0x01;
pub const TCP_FLAG_SYN: u8 = 0x02;
pub const TCP_FLAG_RST: u8 = 0x04;
pub const TCP_FLAG_ACK: u8 = 0x10;
const IPV4_FRAG_MASK: u16 = 0x3FFF; // MF flag and fragment offset

/// The fields of a TCP segment the program decides on, and where its headers are.
/// Addresses and ports stay in network byte order.
#[derive(Default)]
pub struct Packet {
    pub family: u8,
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    pub flags: u8,
    /// Whether a VLAN tag sits between the Ethernet header and the IP header.
    pub vlan: bool,
    /// Offsets of the IP and TCP headers from the start of the frame.
    pub l3: usize,
    pub l4: usize,
    /// TCP header length (data offset × 4), options included.
    pub tcp_hlen: usize,
    /// TCP header and payload, as the IP header counts them.
    pub l4_len: usize,
}

impl Packet {
    #[inline(always)]
    pub fn is_syn_without_ack(&self) -> bool {
        self.flags & (TCP_FLAG_SYN | TCP_FLAG_ACK) == TCP_FLAG_SYN
    }

    #[inline(always)]
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    #[inline(always)]
    pub fn has_payload(&self) -> bool {
        self.l4_len > self.tcp_hlen
    }

    /// The key the answers to this frame arrive with: this frame's, reversed (for a frame
    /// our host sends, the key of its peer's frames).
    #[inline(always)]
    pub fn reply_key(&self) -> FlowKey {
        FlowKey::new(self.dst_addr, self.src_addr, self.dst_port, self.src_port, self.family)
    }

    /// The key of the flow this frame belongs to, from the receiving host's point of view.
    #[inline(always)]
    pub fn flow_key(&self) -> FlowKey {
        FlowKey::new(self.src_addr, self.dst_addr, self.src_port, self.dst_port, self.family)
    }
}

/// What the parser made of a frame.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A TCP segment: `packet` holds its fields.
    Tcp,
    /// Not TCP over IP (ARP, UDP, ICMP...): none of the program's business.
    Other,
    /// It claims to carry TCP (or may: an IPv6 extension header, a fragment) but the
    /// program cannot read its TCP header: truncated, malformed, or beyond what it parses.
    /// The kernel decides on it; the program counts it (`unparsed`).
    Unparsed,
}

/// Parses the frame into `packet`. An out-parameter rather than a returned Option: the entry
/// points' stack frame would hold the Option and the Packet both.
#[inline(always)]
pub fn tcp_packet(frame: &Frame, packet: &mut Packet) -> Parsed {
    match read_tcp_packet(frame, packet) {
        Ok(()) => Parsed::Tcp,
        Err(skip) => skip,
    }
}

/// A read past the frame's end: the frame is shorter than its headers say.
#[inline(always)]
fn need<T>(value: Option<T>) -> Result<T, Parsed> {
    value.ok_or(Parsed::Unparsed)
}

#[inline(always)]
fn read_tcp_packet(frame: &Frame, packet: &mut Packet) -> Result<(), Parsed> {
    let mut l3 = ETH_HLEN;
    let mut ethertype = need(frame.be16(12))?;
    let mut vlan = false;
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        ethertype = need(frame.be16(ETH_HLEN + 2))?;
        l3 += VLAN_HLEN;
        vlan = true;
    }
    packet.vlan = vlan;
    packet.l3 = l3;
    match ethertype {
        ETH_P_IP => {
            let version_ihl = (need(frame.be16(l3))? >> 8) as u8;
            let ihl = ((version_ihl & 0x0F) as usize) * 4;
            if version_ihl >> 4 != 4 || ihl < IPV4_MIN_HLEN {
                return Err(Parsed::Unparsed);
            }
            // TTL and protocol.
            if need(frame.be16(l3 + 8))? as u8 != IPPROTO_TCP {
                return Err(Parsed::Other);
            }
            // Only a first fragment carries the TCP header; TCP normally never fragments.
            if need(frame.be16(l3 + 6))? & IPV4_FRAG_MASK != 0 {
                return Err(Parsed::Unparsed);
            }
            packet.family = FAMILY_V4;
            let src: [u8; 4] = need(frame.bytes(l3 + 12))?;
            let dst: [u8; 4] = need(frame.bytes(l3 + 16))?;
            packet.src_addr[..4].copy_from_slice(&src);
            packet.dst_addr[..4].copy_from_slice(&dst);
            packet.l4_len = (need(frame.be16(l3 + 2))? as usize).saturating_sub(ihl);
            packet.l4 = l3 + ihl;
        }
        ETH_P_IPV6 => {
            // Next header and hop limit. Extension headers are rare on TCP; such frames go
            // to the kernel unjudged (and counted).
            let next = (need(frame.be16(l3 + 6))? >> 8) as u8;
            if next != IPPROTO_TCP {
                return Err(if is_ipv6_extension(next) { Parsed::Unparsed } else { Parsed::Other });
            }
            packet.family = FAMILY_V6;
            packet.src_addr = need(frame.bytes(l3 + 8))?;
            packet.dst_addr = need(frame.bytes(l3 + 24))?;
            packet.l4_len = need(frame.be16(l3 + 4))? as usize;
            packet.l4 = l3 + IPV6_HLEN;
        }
        _ => return Err(Parsed::Other),
    }
    let l4 = packet.l4;
    let ports: [u8; 4] = need(frame.bytes(l4))?;
    packet.src_port = u16::from_ne_bytes([ports[0], ports[1]]);
    packet.dst_port = u16::from_ne_bytes([ports[2], ports[3]]);
    // Data offset and flags.
    let offset_flags = need(frame.be16(l4 + 12))?;
    packet.tcp_hlen = ((offset_flags >> 12) as usize) * 4;
    packet.flags = offset_flags as u8;
    if packet.tcp_hlen < TCP_MIN_HLEN {
        return Err(Parsed::Unparsed);
    }
    Ok(())
}

/// IPv6 next-header values that may precede a TCP header (hop-by-hop, routing, fragment,
/// destination options, authentication).
#[inline(always)]
fn is_ipv6_extension(next: u8) -> bool {
    matches!(next, 0 | 43 | 44 | 51 | 60)
}
