//! The kernel boundary, shared by the XDP/tc program and the daemon: every BPF map
//! (`maps`), the counters (`counter`), and the keys and values the maps hold.
//!
//! Every type is `#[repr(C)]` with explicit padding so that both sides agree on the layout
//! byte for byte; addresses and ports are kept in network byte order, as the packet carries
//! them, so the kernel side never converts.
#![no_std]

pub mod addr;
pub mod counter;
pub mod csum;
pub mod maps;
pub mod tcp;

pub use counter::Counter;

/// Address family tags used in keys (not the kernel's AF_* numbers: these are ours).
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// Program names as they appear in the object file (the functions of lb-ebpf `main.rs`).
pub const PROGRAM_XDP: &str = "lb_xdp";
pub const PROGRAM_TC: &str = "lb_tc";
/// The tc program on the egress of the same interfaces (hold.rs in lb-ebpf).
pub const PROGRAM_TC_EGRESS: &str = "lb_tc_egress";

/// One direction of a TCP connection as seen by the load balancer's host:
/// `remote` is the peer (client or server), `local` is our address on that connection.
/// IPv4 addresses occupy the first 4 bytes of the 16; the rest is zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    pub remote_addr: [u8; 16],
    pub local_addr: [u8; 16],
    /// Network byte order.
    pub remote_port: u16,
    /// Network byte order.
    pub local_port: u16,
    pub family: u8,
    pub _pad: [u8; 3],
}

impl FlowKey {
    /// Addresses as `addr::addr_bytes` lays them out, ports in network byte order. The one
    /// place a key is assembled, so the kernel program and the daemon cannot disagree on it.
    #[inline(always)]
    pub const fn new(remote_addr: [u8; 16], local_addr: [u8; 16], remote_port: u16, local_port: u16, family: u8) -> Self {
        Self { remote_addr, local_addr, remote_port, local_port, family, _pad: [0; 3] }
    }
}

/// Which side of the spliced pair a flow entry describes.
pub mod side {
    pub const CLIENT: u8 = 0;
    pub const SERVER: u8 = 1;
}

/// What the daemon decided for a connection; the XDP program counts its traffic.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowValue {
    pub frontend_id: u32,
    pub farm_id: u32,
    pub server_id: u32,
    pub side: u8,
    /// 1 once `peer_tsval` holds a value.
    pub tsval_seen: u8,
    /// 1 once `data_end` holds a value.
    pub data_seen: u8,
    pub _pad: u8,
    /// The TSval (host byte order) of the last frame received from the peer that carried a
    /// timestamp option: the hand-off needs it to keep PAWS holding (docs/fastpath.md).
    pub peer_tsval: u32,
    /// The furthest sequence number (host byte order) just past the payload of a frame the
    /// program let through to the socket. At hand-off the socket must have received, in
    /// order, everything up to it: otherwise some of it is still on its way through the
    /// stack, or waits in the out-of-order queue, and would be lost with the socket.
    pub data_end: u32,
    /// Updated by the XDP program with atomic adds.
    pub packets: u64,
    pub bytes: u64,
}

/// Hand-off state of a splice entry.
pub mod splice_state {
    /// The daemon is about to freeze the flow: frames pass to the sockets as if the flow
    /// were not handed off, but every frame our socket sends to this direction's sender
    /// advertises a zero window (the egress program), so that the sender stops and nothing
    /// is in flight from it when the freeze begins dropping.
    pub const HELD: u8 = 3;
    /// The daemon is taking the offsets: data-bearing frames (payload, SYN or FIN) are
    /// dropped so that no byte lands in a socket about to be retired; pure ACKs and RSTs pass
    /// to the kernel, so that the sockets' send queues can drain. Our sockets' windows stay
    /// closed, as when HELD.
    pub const FROZEN: u8 = 1;
    /// Frames are rewritten and sent to the other connection's peer.
    pub const LIVE: u8 = 2;
}

/// What the daemon found both connections negotiated (`SpliceEntry::options`).
pub mod splice_option {
    /// Timestamps on both connections: TSval += tsval_add, TSecr -= tsecr_sub.
    pub const TIMESTAMPS: u8 = 1;
    /// SACK on both connections: every SACK block edge -= ack_sub.
    pub const SACK: u8 = 2;
}

/// What the XDP program saw of a live flow (`SpliceEntry::seen`), for the daemon's reaper.
pub mod splice_seen {
    pub const FIN: u8 = 1;
    pub const RST: u8 = 2;
    /// A frame of this direction was dropped for want of a route (`fib_failed`).
    pub const FIB_FAILED: u8 = 4;
    /// HELD or FROZEN: our socket told this direction's sender a zero window; `last_ack`
    /// and `last_ns` then hold that frame's acknowledgment number and time (the egress
    /// program writes them; the daemon rewrites the whole entry when the flow goes live).
    pub const WINDOW_CLOSED: u8 = 8;
}

/// How to rewrite a frame of a handed-off flow, keyed by the [`FlowKey`] of the frame as it
/// arrives (client to frontend, or server to the load balancer's connecting address).
///
/// Arithmetic is modulo 2^32 (docs/fastpath.md): `seq += seq_add`, `ack -= ack_sub` (only when the
/// ACK flag is set), SACK edges `-= ack_sub`, and the window is rescaled from the sender's
/// shift to the load balancer's shift on the egress connection:
/// `min(65535, (win << wscale_in) >> wscale_out)`, at least 1 when `win > 0`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SpliceEntry {
    /// New source address: the load balancer's on the egress connection (network order,
    /// IPv4 in the first 4 bytes).
    pub src_addr: [u8; 16],
    /// New destination: the peer of the egress connection.
    pub dst_addr: [u8; 16],
    /// Network byte order.
    pub src_port: u16,
    /// Network byte order.
    pub dst_port: u16,
    pub seq_add: u32,
    pub ack_sub: u32,
    pub tsval_add: u32,
    pub tsecr_sub: u32,
    /// One of [`splice_state`].
    pub state: u8,
    /// Bits of [`splice_option`].
    pub options: u8,
    pub wscale_in: u8,
    pub wscale_out: u8,
    /// FAMILY_V4 or FAMILY_V6, the same on both connections.
    pub family: u8,
    /// Bits of [`splice_seen`], set by the XDP program.
    pub seen: u8,
    /// The window field (unscaled, as received) of the last frame with the ACK flag: with
    /// `last_ack` and `wscale_in`, the window in which the program accepts an RST sent to
    /// this direction's sender. The daemon sets both when the flow goes live.
    pub last_win: u16,
    /// SYNs that met this live entry (wrapping): a new connection from the same address and
    /// port, or a spoofer. The daemon probes the sender when it sees the count change: a
    /// peer whose old connection is gone answers with an RST that ends the flow.
    pub syns: u16,
    pub _pad: [u8; 2],
    /// bpf_ktime_get_ns() of the last frame that moved the flow: data, a FIN or an RST, an
    /// acknowledgment or window that changed. Duplicate ACKs (answers to keepalive probes)
    /// leave it, so that an idle flow stays idle.
    pub last_ns: u64,
    /// Frames and bytes (whole frames as received) forwarded, atomic adds.
    pub packets: u64,
    pub bytes: u64,
    /// Frames that carried payload, atomic adds: with `last_ack` of the reverse entry, the
    /// daemon tells a stalled flow (data keeps coming, the receiver's ACK never moves).
    pub data_packets: u64,
    /// The acknowledgment number (as received) of the last frame with the ACK flag: what
    /// this direction's sender has received of the other direction.
    pub last_ack: u32,
    /// The highest sequence number (as received) past a data frame's payload or a FIN: the
    /// sender's next sequence number as far as the program has seen (retransmissions of
    /// older data do not move it back).
    pub data_end: u32,
}

impl SpliceEntry {
    /// The key of the flow's other direction: the frames its receiver sends back arrive
    /// with the addresses this entry rewrites frames to. The kernel program looks it up
    /// (an RST's window, the reaper's notes) and so does the daemon.
    #[inline(always)]
    pub fn reverse_key(&self) -> FlowKey {
        FlowKey::new(self.dst_addr, self.src_addr, self.dst_port, self.src_port, self.family)
    }
}

/// A listening address of a frontend. `addr` all zero means "any address of this family".
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FrontendKey {
    pub addr: [u8; 16],
    /// Network byte order.
    pub port: u16,
    pub family: u8,
    pub _pad: u8,
}

pub mod acl_mode {
    /// No source restriction.
    pub const NONE: u8 = 0;
    /// Only sources in the frontend's ACL may open connections.
    pub const ALLOW: u8 = 1;
    /// Sources in the frontend's ACL are dropped.
    pub const DENY: u8 = 2;
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FrontendPolicy {
    pub frontend_id: u32,
    /// Scopes the frontend's entries in the shared LPM tries.
    pub acl_id: u32,
    pub acl_mode: u8,
    pub _pad: [u8; 7],
}

/// LPM trie data for IPv4 ACLs: the ACL id comes first so that one trie serves every
/// frontend; its 32 bits are always part of the prefix (prefix_len = 32 + CIDR length).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AclV4 {
    /// Big endian, so that the trie compares it bit by bit from the top.
    pub acl_id: [u8; 4],
    pub addr: [u8; 4],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AclV6 {
    pub acl_id: [u8; 4],
    pub addr: [u8; 16],
}

/// Bits of the ACL id at the front of every trie key.
pub const ACL_ID_BITS: u32 = 32;

#[cfg(feature = "user")]
// Unsafe here: `aya::Pod` is an unsafe trait; implementing it is the promise below.
#[allow(unsafe_code)]
mod pod {
    // SAFETY (all impls): each type is #[repr(C)], Copy, made only of integers and byte arrays
    // with explicit padding fields, so every bit pattern is valid and there are no implicit
    // padding bytes the kernel could read uninitialised.
    // SAFETY: FlowKey is as stated above (repr(C), Copy, integers and byte arrays, explicit padding).
    unsafe impl aya::Pod for super::FlowKey {}
    // SAFETY: FlowValue is as stated above (repr(C), Copy, integers and byte arrays, explicit padding).
    unsafe impl aya::Pod for super::FlowValue {}
    // SAFETY: FrontendKey is as stated above (repr(C), Copy, integers and byte arrays, explicit padding).
    unsafe impl aya::Pod for super::FrontendKey {}
    // SAFETY: FrontendPolicy is as stated above (repr(C), Copy, integers and byte arrays, explicit padding).
    unsafe impl aya::Pod for super::FrontendPolicy {}
    // SAFETY: AclV4 is as stated above (repr(C), Copy, integers and byte arrays, explicit padding).
    unsafe impl aya::Pod for super::AclV4 {}
    // SAFETY: AclV6 is as stated above (repr(C), Copy, integers and byte arrays, explicit padding).
    unsafe impl aya::Pod for super::AclV6 {}
    // SAFETY: SpliceEntry is as stated above (repr(C), Copy, integers and byte arrays, explicit padding).
    unsafe impl aya::Pod for super::SpliceEntry {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<FlowKey>(), 40);
        assert_eq!(size_of::<FlowValue>(), 40);
        assert_eq!(size_of::<SpliceEntry>(), 104);
        assert_eq!(size_of::<FrontendKey>(), 20);
        assert_eq!(size_of::<FrontendPolicy>(), 16);
        assert_eq!(size_of::<AclV4>(), 8);
        assert_eq!(size_of::<AclV6>(), 20);
    }
}
