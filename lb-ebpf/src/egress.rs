//! Where a rewritten frame goes: the kernel's FIB picks the next hop for the new
//! addresses; from XDP the frame leaves through the devmap, the ingress interface included;
//! tc redirects the skb (hook.rs).
use core::mem::{size_of, zeroed};

use aya_ebpf::{
    bindings::{bpf_fib_lookup, xdp_action, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS},
    helpers::bpf_fib_lookup as fib_lookup,
};
use lb_common::{SpliceEntry, FAMILY_V4};

use crate::{
    frame::Frame,
    hook::Hook,
    maps,
    parse::{Packet, IPPROTO_TCP, IPV6_HLEN},
};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const ETH_ALEN: usize = 6;

/// The XDP program may send a frame out of `ifindex`: one the daemon put in the devmap (it
/// leaves out interfaces that cannot take XDP frames). The ingress interface is no exception:
/// a one-armed load balancer sends every frame back out of the interface it came in on.
#[inline(always)]
pub fn xdp_can_send(ifindex: u32) -> bool {
    maps::LB_EGRESS.get(ifindex).is_some()
}

/// A redirect through the devmap, even back out of the ingress interface. Not XDP_TX: on a
/// veth it queues the frame for the peer without waking the peer's NAPI unless the peer runs
/// an XDP program itself (a peer with only GRO on then holds the frames until some other
/// packet comes by, and the flow stalls); a devmap redirect flushes the peer's queue after
/// every batch. A NIC's driver sends a redirect to itself through its XDP transmit queues,
/// as XDP_TX would.
#[inline(always)]
pub fn xdp_send(ifindex: u32) -> u32 {
    // xdp_can_send checked the devmap: the fallback is only for an entry the daemon
    // removed since.
    match maps::LB_EGRESS.redirect(ifindex, u64::from(xdp_action::XDP_DROP)) {
        Ok(action) => action,
        Err(action) => action,
    }
}

/// Where a rewritten frame goes: the egress interface and the frame's new MACs
/// (destination then source, as the Ethernet header holds them).
#[derive(Default)]
pub struct Hop {
    pub ifindex: u32,
    pub macs: [u8; 2 * ETH_ALEN],
}

impl Hop {
    /// The route is known but not the next hop's MAC (`macs` stays zero: a flag of its own
    /// would not fit the 512-byte stack): only tc can send the frame, through the kernel's
    /// neighbour resolution.
    #[inline(always)]
    pub fn unresolved(&self) -> bool {
        self.macs[..ETH_ALEN] == [0; ETH_ALEN]
    }
}

/// Asks the FIB for the next hop of the rewritten frame, as the kernel would route it
/// arriving on the ingress interface (that interface must have forwarding enabled); false
/// without one. Out of line, with an out-parameter (a BPF function cannot return a struct),
/// so that the lookup's 64-byte parameters never share a call chain's 512-byte stack with
/// the rewrite.
///
/// A route without a resolved neighbour still answers (with `unresolved` set) for tc,
/// which can have the kernel resolve it; XDP cannot.
#[inline(never)]
pub fn next_hop<H: Hook>(hook: &H, frame: &Frame, packet: &Packet, rules: &SpliceEntry, hop: &mut Hop) -> bool {
    let Some(params) = lookup(hook, frame, packet, rules) else {
        return false;
    };
    hop.ifindex = params.ifindex;
    hop.macs[..ETH_ALEN].copy_from_slice(&params.dmac);
    hop.macs[ETH_ALEN..].copy_from_slice(&params.smac);
    true
}

#[inline(always)]
fn lookup<H: Hook>(hook: &H, frame: &Frame, packet: &Packet, rules: &SpliceEntry) -> Option<bpf_fib_lookup> {
    // SAFETY: bpf_fib_lookup is plain old data (integers and unions of integers); all zero
    // is its documented "no flags, no VLAN, main table" input.
    let mut params: bpf_fib_lookup = unsafe { zeroed() };
    params.l4_protocol = IPPROTO_TCP;
    params.sport = rules.src_port;
    params.dport = rules.dst_port;
    params.ifindex = hook.ingress_ifindex();
    let l3 = packet.l3;
    if packet.family == FAMILY_V4 {
        params.family = AF_INET;
        // tot_len lets the lookup check the egress MTU; tc leaves it 0 so that the kernel
        // checks the skb itself (a GSO aggregate is longer than the MTU, its segments not).
        let tot_len = frame.be16(l3 + 2)?;
        params.__bindgen_anon_1.tot_len = if H::FIB_CHECKS_LENGTH { tot_len } else { 0 };
        params.__bindgen_anon_2.tos = frame.be16(l3)? as u8;
        params.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes([rules.src_addr[0], rules.src_addr[1], rules.src_addr[2], rules.src_addr[3]]);
        params.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes([rules.dst_addr[0], rules.dst_addr[1], rules.dst_addr[2], rules.dst_addr[3]]);
    } else {
        params.family = AF_INET6;
        params.__bindgen_anon_1.tot_len = if H::FIB_CHECKS_LENGTH { (IPV6_HLEN + packet.l4_len) as u16 } else { 0 };
        params.__bindgen_anon_3.ipv6_src = words(&rules.src_addr);
        params.__bindgen_anon_4.ipv6_dst = words(&rules.dst_addr);
    }
    // SAFETY: params is a live stack object of exactly the size we pass; the helper only
    // reads and writes inside it and reads the context.
    let rc = unsafe { fib_lookup(hook.fib_ctx() as *mut _, &mut params, size_of::<bpf_fib_lookup>() as i32, 0) };
    if rc == i64::from(BPF_FIB_LKUP_RET_SUCCESS) {
        return Some(params);
    }
    if rc == i64::from(BPF_FIB_LKUP_RET_NO_NEIGH) && !H::XDP {
        // The egress interface is known; no MAC is (see Hop::unresolved).
        params.dmac = [0; ETH_ALEN];
        params.smac = [0; ETH_ALEN];
        return Some(params);
    }
    None
}

#[inline(always)]
fn words(addr: &[u8; 16]) -> [u32; 4] {
    let mut out = [0u32; 4];
    for (i, word) in out.iter_mut().enumerate() {
        *word = u32::from_ne_bytes([addr[4 * i], addr[4 * i + 1], addr[4 * i + 2], addr[4 * i + 3]]);
    }
    out
}
