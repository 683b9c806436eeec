//! The XDP program of the load balancer. It holds no policy: it executes what the daemon
//! wrote into the maps. Decision flow, top to bottom:
//! 1. a SYN to a frontend whose source ACL refuses the client is dropped before any handshake;
//! 2. a frame of a handed-off flow follows the splice map: dropped or passed while the
//!    daemon freezes the flow, rewritten and sent to the other peer once live (splice.rs);
//! 3. a frame of a flow the daemon pinned is counted against that flow (flows.rs);
//! 4. everything else goes on to the kernel's TCP stack.
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
mod maps;
mod options;
mod parse;
mod rewrite;
mod splice;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_common::counter;

use crate::frame::Frame;

#[xdp]
pub fn lb_xdp(ctx: XdpContext) -> u32 {
    let frame = Frame::new(&ctx);
    let Some(packet) = parse::tcp_packet(&frame) else {
        // Not TCP over IP, or a frame we cannot read far enough: the kernel decides.
        counters::add(counter::PASSED, 1);
        return xdp_action::XDP_PASS;
    };
    if packet.is_syn_without_ack() && !acl::admits(&packet) {
        counters::add(counter::ACL_DROPPED, 1);
        return xdp_action::XDP_DROP;
    }
    let key = packet.flow_key();
    if let Some(action) = splice::handle(&ctx, &frame, &packet, &key) {
        return action;
    }
    flows::count(&frame, &packet, &key);
    counters::add(counter::PASSED, 1);
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
