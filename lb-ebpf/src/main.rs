//! The XDP program of the load balancer. It holds no policy: it executes what the daemon
//! wrote into the maps. Decision flow, top to bottom:
//! 1. a SYN to a frontend whose source ACL refuses the client is dropped before any handshake;
//! 2. a frame of a flow the daemon pinned is counted (packets, bytes) against that flow;
//! 3. everything goes on to the kernel's TCP stack.
#![no_std]
#![no_main]
// The BPF target has no atomic RMW in core's Atomic types; the intrinsic lowers to BPF_ATOMIC add.
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod acl;
mod counters;
mod maps;
mod parse;

use core::intrinsics::{atomic_xadd, AtomicOrdering};

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_common::counter;

use crate::parse::Packet;

#[xdp]
pub fn lb_xdp(ctx: XdpContext) -> u32 {
    let frame_len = (ctx.data_end() - ctx.data()) as u64;
    let Some(packet) = parse::tcp_packet(&ctx) else {
        // Not TCP over IP, or a frame we cannot read far enough: the kernel decides.
        counters::add(counter::PASSED, 1);
        return xdp_action::XDP_PASS;
    };
    if packet.is_syn_without_ack() && !acl::admits(&packet) {
        counters::add(counter::ACL_DROPPED, 1);
        return xdp_action::XDP_DROP;
    }
    count_pinned_flow(&packet, frame_len);
    counters::add(counter::PASSED, 1);
    xdp_action::XDP_PASS
}

fn count_pinned_flow(packet: &Packet, frame_len: u64) {
    let key = packet.flow_key();
    if let Some(value) = maps::LB_FLOWS.get_ptr_mut(&key) {
        // SAFETY: the pointer comes from a successful map lookup and stays valid for the
        // duration of this program run (RCU); the counters are only touched with atomic adds,
        // which the verifier accepts on map values.
        unsafe {
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*value).packets, 1);
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*value).bytes, frame_len);
        }
        counters::add(counter::FLOW_PACKETS, 1);
        counters::add(counter::FLOW_BYTES, frame_len);
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
