//! Where a rewritten frame goes: the kernel's FIB picks the next hop for the new
//! addresses; the frame leaves through the ingress interface (XDP_TX) or another one
//! (redirect through the devmap).
use core::mem::{size_of, zeroed};

use aya_ebpf::{
    bindings::{bpf_fib_lookup, xdp_action, BPF_FIB_LKUP_RET_SUCCESS},
    helpers::bpf_fib_lookup as fib_lookup,
    programs::XdpContext,
};
use lb_common::{counter, SpliceEntry, FAMILY_V4};

use crate::{
    counters,
    frame::Frame,
    maps,
    parse::{Packet, IPPROTO_TCP, IPV6_HLEN},
};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const ETH_ALEN: usize = 6;

#[inline(never)]
pub fn send(ctx: &XdpContext, frame: &Frame, packet: &Packet, rules: &SpliceEntry) -> u32 {
    match next_hop(ctx, frame, packet, rules) {
        // A failed lookup (no route, no neighbour yet, MTU) drops the frame: the kernel's
        // socket is retired and would answer with a RST; the peer retransmits instead.
        None => {
            counters::add(counter::FIB_FAILED, 1);
            xdp_action::XDP_DROP
        }
        Some(hop) => forward(ctx, frame, &hop),
    }
}

#[inline(always)]
fn forward(ctx: &XdpContext, frame: &Frame, hop: &bpf_fib_lookup) -> u32 {
    if frame.set_bytes(0, &hop.dmac).is_none() || frame.set_bytes(ETH_ALEN, &hop.smac).is_none() {
        counters::add(counter::SPLICE_ERRORS, 1);
        return xdp_action::XDP_DROP;
    }
    let action = if hop.ifindex == ingress_ifindex(ctx) {
        xdp_action::XDP_TX
    } else {
        // The fallback in the low bits of the flags is what we get back if the egress is
        // not in the devmap (the daemon attaches to it before handing a flow off to it).
        match maps::LB_EGRESS.redirect(hop.ifindex, u64::from(xdp_action::XDP_DROP)) {
            Ok(action) => action,
            Err(_) => {
                counters::add(counter::SPLICE_ERRORS, 1);
                return xdp_action::XDP_DROP;
            }
        }
    };
    counters::add(counter::SPLICED_PACKETS, 1);
    counters::add(counter::SPLICED_BYTES, frame.len());
    action
}

#[inline(always)]
fn ingress_ifindex(ctx: &XdpContext) -> u32 {
    // SAFETY: ctx.ctx is the xdp_md the kernel passed to this run; reading its fields is the
    // context access the verifier rewrites.
    unsafe { (*ctx.ctx).ingress_ifindex }
}

/// Asks the FIB for the next hop of the rewritten frame, as the kernel would route it
/// arriving on the ingress interface (that interface must have forwarding enabled).
#[inline(always)]
fn next_hop(ctx: &XdpContext, frame: &Frame, packet: &Packet, rules: &SpliceEntry) -> Option<bpf_fib_lookup> {
    // SAFETY: bpf_fib_lookup is plain old data (integers and unions of integers); all zero
    // is its documented "no flags, no VLAN, main table" input.
    let mut params: bpf_fib_lookup = unsafe { zeroed() };
    params.l4_protocol = IPPROTO_TCP;
    params.sport = rules.src_port;
    params.dport = rules.dst_port;
    params.ifindex = ingress_ifindex(ctx);
    let l3 = packet.l3;
    if packet.family == FAMILY_V4 {
        params.family = AF_INET;
        // tot_len lets the lookup check the egress MTU.
        params.__bindgen_anon_1.tot_len = frame.be16(l3 + 2)?;
        params.__bindgen_anon_2.tos = frame.be16(l3)? as u8;
        params.__bindgen_anon_3.ipv4_src =
            u32::from_ne_bytes([rules.src_addr[0], rules.src_addr[1], rules.src_addr[2], rules.src_addr[3]]);
        params.__bindgen_anon_4.ipv4_dst =
            u32::from_ne_bytes([rules.dst_addr[0], rules.dst_addr[1], rules.dst_addr[2], rules.dst_addr[3]]);
    } else {
        params.family = AF_INET6;
        params.__bindgen_anon_1.tot_len = (IPV6_HLEN + packet.l4_len) as u16;
        params.__bindgen_anon_3.ipv6_src = words(&rules.src_addr);
        params.__bindgen_anon_4.ipv6_dst = words(&rules.dst_addr);
    }
    // SAFETY: params is a live stack object of exactly the size we pass; the helper only
    // reads and writes inside it and reads the context.
    let rc = unsafe {
        fib_lookup(ctx.ctx as *mut _, &mut params, size_of::<bpf_fib_lookup>() as i32, 0)
    };
    (rc == i64::from(BPF_FIB_LKUP_RET_SUCCESS)).then_some(params)
}

#[inline(always)]
fn words(addr: &[u8; 16]) -> [u32; 4] {
    let mut out = [0u32; 4];
    for (i, word) in out.iter_mut().enumerate() {
        *word = u32::from_ne_bytes([addr[4 * i], addr[4 * i + 1], addr[4 * i + 2], addr[4 * i + 3]]);
    }
    out
}
