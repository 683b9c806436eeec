//! The kernel side of the load balancer. It holds no policy: it executes what the daemon
//! wrote into the maps. Two entry points share every decision (hook.rs says where each
//! runs). Decision flow, top to bottom:
//! 1. a SYN to a frontend whose source ACL refuses the client is dropped before any handshake;
//! 2. a frame of a handed-off flow follows the splice map: dropped or passed while the
//!    daemon freezes the flow, rewritten and sent to the other peer once live (splice.rs);
//! 3. a frame of a flow the daemon pinned is counted against that flow (flows.rs);
//! 4. everything else goes on to the kernel's TCP stack.
//!
//! On egress, a third entry point closes the window our sockets advertise to the peers of a
//! flow about to be frozen (hold.rs).
//!
//! XDP, where it runs, does steps 1 and the live part of 2, and passes everything else to
//! tc on the same interface, which does it all: each frame is counted once.
#![no_std]
#![no_main]
// The BPF target has no atomic RMW in core's Atomic types; the intrinsic lowers to BPF_ATOMIC add.
#![feature(core_intrinsics)]
// Inline asm on the BPF target (frame.rs hides the frame's end from LLVM).
#![feature(asm_experimental_arch)]
#![allow(internal_features)]

mod acl;
mod counters;
mod egress;
mod flows;
mod frame;
mod hold;
mod hook;
mod maps;
mod notes;
mod options;
mod parse;
mod rewrite;
mod splice;

use aya_ebpf::{
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use lb_common::Counter;

use crate::hook::Hook;

#[xdp]
pub fn lb_xdp(ctx: XdpContext) -> u32 {
    let hook = hook::Xdp(&ctx);
    let frame = hook.frame();
    // Anything this program does not splice, tc judges and counts.
    let mut packet = parse::Packet::default();
    if parse::tcp_packet(&frame, &mut packet) != parse::Parsed::Tcp {
        return hook::Xdp::PASS;
    }
    if packet.is_syn_without_ack() && !acl::admits(&packet) {
        counters::add(Counter::AclDropped, 1);
        return hook::Xdp::DROP;
    }
    splice::xdp(&hook, &frame, &packet, &packet.flow_key()).unwrap_or(hook::Xdp::PASS)
}

#[classifier]
pub fn lb_tc(ctx: TcContext) -> i32 {
    let hook = hook::Tc(&ctx);
    hook.pull_headers();
    let frame = hook.frame();
    let mut packet = parse::Packet::default();
    match parse::tcp_packet(&frame, &mut packet) {
        parse::Parsed::Tcp => {}
        // Not TCP over IP, or a frame we cannot read far enough: the kernel decides.
        parse::Parsed::Other => {
            counters::add(Counter::Passed, 1);
            return hook::Tc::PASS as i32;
        }
        parse::Parsed::Unparsed => {
            counters::add(Counter::Unparsed, 1);
            return hook::Tc::PASS as i32;
        }
    }
    packet.vlan |= hook.vlan_offloaded();
    if packet.is_syn_without_ack() && !acl::admits(&packet) {
        counters::add(Counter::AclDropped, 1);
        return hook::Tc::DROP as i32;
    }
    let key = packet.flow_key();
    if let Some(verdict) = splice::tc(&hook, &frame, &packet, &key) {
        return verdict as i32;
    }
    flows::count(hook.len(), &frame, &packet, &key, true);
    counters::add(Counter::Passed, 1);
    hook::Tc::PASS as i32
}

/// The frames our own sockets send: only the windows of flows being handed off change.
#[classifier]
pub fn lb_tc_egress(ctx: TcContext) -> i32 {
    let hook = hook::Tc(&ctx);
    // No pull: our sockets build their headers in the skb's linear part, and pulling makes
    // the skb writable, which copies the header of every clone TCP sends.
    let frame = hook.frame();
    let mut packet = parse::Packet::default();
    if parse::tcp_packet(&frame, &mut packet) == parse::Parsed::Tcp {
        hold::egress(&hook, &frame, &packet);
    }
    hook::Tc::PASS as i32
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
