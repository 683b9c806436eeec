//! Keys and values of every BPF map, shared by the XDP program and the daemon.
//!
//! Every type is `#[repr(C)]` with explicit padding so that both sides agree on the layout
//! byte for byte; addresses and ports are kept in network byte order, as the packet carries
//! them, so the kernel side never converts.
#![no_std]

/// Address family tags used in keys (not the kernel's AF_* numbers: these are ours).
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// Map names as they appear in the object file; the daemon looks them up by these.
pub const MAP_FLOWS: &str = "LB_FLOWS";
pub const MAP_FRONTENDS: &str = "LB_FRONTENDS";
pub const MAP_ACL_V4: &str = "LB_ACL_V4";
pub const MAP_ACL_V6: &str = "LB_ACL_V6";
pub const MAP_COUNTERS: &str = "LB_COUNTERS";
pub const PROGRAM_XDP: &str = "lb_xdp";

/// Capacities. The flow map is an LRU: it must hold every live connection (two entries each).
pub const FLOWS_MAX: u32 = 262_144;
pub const FRONTENDS_MAX: u32 = 65_536;
pub const ACL_MAX: u32 = 65_536;

/// Indices into the per-CPU counter array.
pub mod counter {
    /// Packets the program handed to the kernel stack untouched.
    pub const PASSED: u32 = 0;
    /// SYNs dropped by a frontend's source ACL.
    pub const ACL_DROPPED: u32 = 1;
    /// Packets of pinned flows (both directions).
    pub const FLOW_PACKETS: u32 = 2;
    /// Bytes (whole frames) of pinned flows.
    pub const FLOW_BYTES: u32 = 3;
    /// Frames the parser could not read far enough to decide on (passed to the kernel).
    pub const UNPARSED: u32 = 4;
    pub const COUNT: u32 = 5;
}

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
    pub _pad: [u8; 3],
    /// Updated by the XDP program with atomic adds.
    pub packets: u64,
    pub bytes: u64,
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
mod pod {
    // SAFETY (all impls): each type is #[repr(C)], Copy, made only of integers and byte arrays
    // with explicit padding fields, so every bit pattern is valid and there are no implicit
    // padding bytes the kernel could read uninitialised.
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::FlowValue {}
    unsafe impl aya::Pod for super::FrontendKey {}
    unsafe impl aya::Pod for super::FrontendPolicy {}
    unsafe impl aya::Pod for super::AclV4 {}
    unsafe impl aya::Pod for super::AclV6 {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<FlowKey>(), 40);
        assert_eq!(size_of::<FlowValue>(), 32);
        assert_eq!(size_of::<FrontendKey>(), 20);
        assert_eq!(size_of::<FrontendPolicy>(), 16);
        assert_eq!(size_of::<AclV4>(), 8);
        assert_eq!(size_of::<AclV6>(), 20);
    }
}
