//! Closing the window of a flow being handed off (docs/fastpath.md, "Hold"). Runs on the
//! egress of the interfaces the daemon serves, on the frames our own sockets send.
//!
//! Frames a peer sends while its flow is frozen are dropped, and a busy peer that loses a
//! whole window at once recovers only by timeout (hundreds of milliseconds). So before
//! freezing, the daemon holds the flow: every frame our socket sends to that peer advertises
//! a zero window. The peer stops after the data already in flight, which still lands in the
//! socket and is relayed; once nothing moves, the freeze drops nothing. When the flow goes
//! live the daemon sends each peer the other peer's real window.
use lb_common::{splice_state, Counter, FlowKey};

use crate::{counters, frame::Frame, hook, maps, parse::Packet};

const TCP_WINDOW: usize = 14;
const TCP_CHECK: usize = 16;

/// Closes the window of a frame our socket sends to a peer whose flow is held or frozen.
#[inline(always)]
pub fn egress(hook: &hook::Tc, frame: &Frame, packet: &Packet) {
    // The entry of the peer's own frames: keyed as they arrive, i.e. this frame reversed.
    let key = FlowKey {
        remote_addr: packet.dst_addr,
        local_addr: packet.src_addr,
        remote_port: packet.dst_port,
        local_port: packet.src_port,
        family: packet.family,
        _pad: [0; 3],
    };
    // SAFETY: a successful lookup yields a pointer to the value, valid for this run (RCU);
    // only `state`, a byte the daemon writes whole, is read.
    let Some(state) = maps::LB_SPLICE.get_ptr(&key).map(|entry| unsafe { (*entry).state }) else {
        return;
    };
    if state != splice_state::HELD && state != splice_state::FROZEN {
        return;
    }
    let at = packet.l4 + TCP_WINDOW;
    let Some(window) = frame.be16(at) else {
        return;
    };
    if window == 0 || frame.set_be16(at, 0).is_none() {
        return;
    }
    counters::add(Counter::WindowsHeld, 1);
    // The kernel's helper honours the skb's checksum state: our sockets' frames usually
    // carry a partial checksum (completed later over the header as it is now), which then
    // takes no change. Size 2: `from` and `to` are the field as loaded from memory.
    hook.0.l4_csum_replace(packet.l4 + TCP_CHECK, u64::from(window.to_be()), 0, 2).ok();
}
