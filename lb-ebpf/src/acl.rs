//! Source ACLs of frontends, enforced on SYNs before any handshake.
use aya_ebpf::maps::lpm_trie::Key;
use lb_common::{acl_mode, AclV4, AclV6, FrontendKey, ACL_ID_BITS, FAMILY_V4};

use crate::{maps, parse::Packet};

/// Whether the client of this SYN may open a connection to the frontend it addresses.
/// Traffic to ports that are not frontends is not ours to judge.
/// Out of line: its map keys then never share a call chain's stack with the splice path.
#[inline(never)]
pub fn admits(packet: &Packet) -> bool {
    let Some(policy) = frontend_policy(packet) else {
        return true;
    };
    match policy.acl_mode {
        acl_mode::ALLOW => source_listed(packet, policy.acl_id),
        acl_mode::DENY => !source_listed(packet, policy.acl_id),
        _ => true,
    }
}

/// A frontend bound to this exact address wins over one bound to every address.
#[inline(always)]
fn frontend_policy(packet: &Packet) -> Option<lb_common::FrontendPolicy> {
    let mut key = FrontendKey { addr: packet.dst_addr, port: packet.dst_port, family: packet.family, _pad: 0 };
    // SAFETY: hash map values are plain old data read by copy while the program runs (RCU).
    if let Some(policy) = unsafe { maps::LB_FRONTENDS.get(&key) } {
        return Some(*policy);
    }
    key.addr = [0; 16];
    // SAFETY: as above: a plain-old-data value copied out under RCU.
    unsafe { maps::LB_FRONTENDS.get(&key) }.copied()
}

#[inline(always)]
fn source_listed(packet: &Packet, acl_id: u32) -> bool {
    let acl = acl_id.to_be_bytes();
    if packet.family == FAMILY_V4 {
        let mut addr = [0u8; 4];
        addr.copy_from_slice(&packet.src_addr[..4]);
        let key = Key::new(ACL_ID_BITS + 32, AclV4 { acl_id: acl, addr });
        maps::LB_ACL_V4.get(&key).is_some()
    } else {
        let key = Key::new(ACL_ID_BITS + 128, AclV6 { acl_id: acl, addr: packet.src_addr });
        maps::LB_ACL_V6.get(&key).is_some()
    }
}
