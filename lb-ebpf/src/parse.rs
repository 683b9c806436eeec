//! Bounded header parsing: Ethernet (one optional VLAN tag), IPv4 / IPv6, TCP.
//! Every read is checked against the end of the frame, as the verifier demands.
use aya_ebpf::programs::XdpContext;
use lb_common::{FlowKey, FAMILY_V4, FAMILY_V6};

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
const IPPROTO_TCP: u8 = 6;
const IPV4_MIN_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
const TCP_MIN_HLEN: usize = 20;
const TCP_FLAG_SYN: u8 = 0x02;
const TCP_FLAG_ACK: u8 = 0x10;
const IPV4_FRAG_MASK: u16 = 0x3FFF; // MF flag and fragment offset

/// The fields of a TCP segment the program decides on. Addresses and ports stay in
/// network byte order.
pub struct Packet {
    pub family: u8,
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    pub flags: u8,
}

impl Packet {
    #[inline(always)]
    pub fn is_syn_without_ack(&self) -> bool {
        self.flags & (TCP_FLAG_SYN | TCP_FLAG_ACK) == TCP_FLAG_SYN
    }

    /// The key of the flow this frame belongs to, from the receiving host's point of view.
    #[inline(always)]
    pub fn flow_key(&self) -> FlowKey {
        FlowKey {
            remote_addr: self.src_addr,
            local_addr: self.dst_addr,
            remote_port: self.src_port,
            local_port: self.dst_port,
            family: self.family,
            _pad: [0; 3],
        }
    }
}

/// A pointer to `len` readable bytes at `offset`, or None past the end of the frame.
#[inline(always)]
fn bytes_at(ctx: &XdpContext, offset: usize, len: usize) -> Option<*const u8> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + len > end {
        return None;
    }
    Some((start + offset) as *const u8)
}

#[inline(always)]
fn read_u8(ctx: &XdpContext, offset: usize) -> Option<u8> {
    let p = bytes_at(ctx, offset, 1)?;
    // SAFETY: bytes_at proved one readable byte at p.
    Some(unsafe { *p })
}

#[inline(always)]
fn read_be16(ctx: &XdpContext, offset: usize) -> Option<u16> {
    let p = bytes_at(ctx, offset, 2)?;
    // SAFETY: bytes_at proved two readable bytes at p.
    Some(u16::from_be_bytes(unsafe { [*p, *p.add(1)] }))
}

#[inline(always)]
fn read_n<const N: usize>(ctx: &XdpContext, offset: usize) -> Option<[u8; N]> {
    let p = bytes_at(ctx, offset, N)?;
    // SAFETY: bytes_at proved N readable bytes at p; read_unaligned copes with any alignment.
    Some(unsafe { core::ptr::read_unaligned(p as *const [u8; N]) })
}

#[inline(always)]
pub fn tcp_packet(ctx: &XdpContext) -> Option<Packet> {
    let mut l3 = ETH_HLEN;
    let mut ethertype = read_be16(ctx, 12)?;
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        ethertype = read_be16(ctx, ETH_HLEN + 2)?;
        l3 += VLAN_HLEN;
    }
    let mut packet = Packet {
        family: 0,
        src_addr: [0; 16],
        dst_addr: [0; 16],
        src_port: 0,
        dst_port: 0,
        flags: 0,
    };
    let l4 = match ethertype {
        ETH_P_IP => {
            let version_ihl = read_u8(ctx, l3)?;
            let ihl = ((version_ihl & 0x0F) as usize) * 4;
            if version_ihl >> 4 != 4 || ihl < IPV4_MIN_HLEN {
                return None;
            }
            if read_u8(ctx, l3 + 9)? != IPPROTO_TCP {
                return None;
            }
            // Only a first fragment carries the TCP header; TCP normally never fragments.
            if read_be16(ctx, l3 + 6)? & IPV4_FRAG_MASK != 0 {
                return None;
            }
            packet.family = FAMILY_V4;
            let src: [u8; 4] = read_n(ctx, l3 + 12)?;
            let dst: [u8; 4] = read_n(ctx, l3 + 16)?;
            packet.src_addr[..4].copy_from_slice(&src);
            packet.dst_addr[..4].copy_from_slice(&dst);
            l3 + ihl
        }
        ETH_P_IPV6 => {
            // Extension headers are rare on TCP; such frames go to the kernel unjudged.
            if read_u8(ctx, l3 + 6)? != IPPROTO_TCP {
                return None;
            }
            packet.family = FAMILY_V6;
            packet.src_addr = read_n(ctx, l3 + 8)?;
            packet.dst_addr = read_n(ctx, l3 + 24)?;
            l3 + IPV6_HLEN
        }
        _ => return None,
    };
    // Read the TCP header through the very pointer that was bounds-checked: recomputing it
    // from the variable IPv4 header length would lose the verifier's range proof.
    let tcp = bytes_at(ctx, l4, TCP_MIN_HLEN)?;
    // SAFETY: bytes_at proved TCP_MIN_HLEN readable bytes at tcp; ports are bytes 0..4 and
    // the flags byte 13.
    unsafe {
        packet.src_port = u16::from_ne_bytes([*tcp, *tcp.add(1)]);
        packet.dst_port = u16::from_ne_bytes([*tcp.add(2), *tcp.add(3)]);
        packet.flags = *tcp.add(13);
    }
    Some(packet)
}
