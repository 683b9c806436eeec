//! Closing the window of a flow being handed off (docs/fastpath.md, "Hold"). Runs on the
//! egress of the interfaces the daemon serves, on the frames our own sockets send.
//!
//! Frames a peer sends while its flow is frozen are dropped, and a busy peer that loses a
//! whole window at once recovers only by timeout (hundreds of milliseconds). So before
//! freezing, the daemon holds the flow: every frame our socket sends to that peer advertises
//! a zero window. The peer stops after the data already in flight, which still lands in the
//! socket and is relayed; once nothing moves, the freeze drops nothing. When the flow goes
//! live the daemon sends each peer the other peer's real window.
use aya_ebpf::helpers::bpf_ktime_get_ns;
use lb_common::{splice_seen, splice_state, Counter};

use crate::{
    counters,
    frame::Frame,
    hook, maps,
    parse::{Packet, TCP_FLAG_ACK},
};

const TCP_ACK: usize = 8;
const TCP_WINDOW: usize = 14;
const TCP_CHECK: usize = 16;

/// Closes the window of a frame our socket sends to a peer whose flow is held or frozen.
#[inline(always)]
pub fn egress(hook: &hook::Tc, frame: &Frame, packet: &Packet) {
    // The entry of the peer's own frames: keyed as they arrive, i.e. this frame reversed.
    let key = packet.reply_key();
    let Some(entry) = maps::LB_SPLICE.get_ptr_mut(&key) else {
        return;
    };
    // SAFETY: a successful lookup yields a pointer to the value, valid for this run (RCU).
    let state = unsafe { (*entry).state };
    if state != splice_state::HELD && state != splice_state::FROZEN {
        return;
    }
    let at = packet.l4 + TCP_WINDOW;
    let (Some(window), Some(ack)) = (frame.be16(at), frame.be32(packet.l4 + TCP_ACK)) else {
        return;
    };
    if packet.has(TCP_FLAG_ACK) {
        // Tells the daemon how far the peer has been told to stop, and when: it freezes
        // once that covers everything the peer delivered, for a round trip. Plain stores
        // of fields nothing else writes while the flow is held; the daemon reads them
        // eventually.
        // SAFETY: as above.
        unsafe {
            (*entry).last_ack = ack;
            (*entry).last_ns = bpf_ktime_get_ns();
            (*entry).seen |= splice_seen::WINDOW_CLOSED;
        }
    }
    // Through the helper, not the frame's pointer: a program that writes packet data
    // directly gets a prologue that unclones every skb it sees, and the frames our sockets
    // send are clones (TCP keeps the original for retransmission), held flow or not.
    if window == 0 || hook.0.store(at, &0u16, 0).is_err() {
        return;
    }
    counters::add(Counter::WindowsHeld, 1);
    // The kernel's helper honours the skb's checksum state: our sockets' frames usually
    // carry a partial checksum (completed later over the header as it is now), which then
    // takes no change. Size 2: `from` and `to` are the field as loaded from memory.
    hook.0.l4_csum_replace(packet.l4 + TCP_CHECK, u64::from(window.to_be()), 0, 2).ok();
}
