//! The decision for frames of a handed-off flow (FASTPATH.md): frozen while the daemon takes
//! the offsets, then live, rewritten and sent straight to the other connection's peer.
use core::intrinsics::{atomic_xadd, AtomicOrdering};

use aya_ebpf::{bindings::xdp_action, helpers::bpf_ktime_get_ns, programs::XdpContext};
use lb_common::{counter, splice_seen, splice_state, FlowKey, SpliceEntry};

use crate::{
    counters, egress, flows,
    frame::Frame,
    maps,
    parse::{Packet, TCP_FLAG_FIN, TCP_FLAG_RST, TCP_FLAG_SYN},
    rewrite,
};

/// The verdict for a frame of a flow in the splice map, or None when the flow is not
/// handed off (or in a state this program does not know) and takes the ordinary path.
#[inline(always)]
pub fn handle(ctx: &XdpContext, frame: &Frame, packet: &Packet, key: &FlowKey) -> Option<u32> {
    let entry = maps::LB_SPLICE.get_ptr_mut(key)?;
    // SAFETY: a successful lookup yields a pointer to the value, valid for this run (RCU).
    let state = unsafe { (*entry).state };
    match state {
        splice_state::FROZEN => {
            // The daemon still reads the peer's TSval from the flow map while frozen.
            flows::count(frame, packet, key);
            Some(frozen(packet))
        }
        splice_state::LIVE => Some(live(ctx, frame, packet, entry)),
        _ => None,
    }
}

/// No byte may land in a socket that is about to be retired, so anything that advances the
/// sequence space (payload, SYN, FIN) is dropped, to be retransmitted once live. Pure ACKs
/// and RSTs reach the kernel: the send queues must drain, and a reset must not be lost.
#[inline(always)]
fn frozen(packet: &Packet) -> u32 {
    if packet.has(TCP_FLAG_RST) {
        counters::add(counter::PASSED, 1);
        return xdp_action::XDP_PASS;
    }
    if packet.has_payload() || packet.has(TCP_FLAG_SYN | TCP_FLAG_FIN) {
        counters::add(counter::FROZEN_DROPPED, 1);
        return xdp_action::XDP_DROP;
    }
    counters::add(counter::PASSED, 1);
    xdp_action::XDP_PASS
}

#[inline(always)]
fn live(ctx: &XdpContext, frame: &Frame, packet: &Packet, entry: *mut SpliceEntry) -> u32 {
    let frame_len = frame.len();
    let mut seen = 0;
    if packet.has(TCP_FLAG_FIN) {
        seen |= splice_seen::FIN;
    }
    if packet.has(TCP_FLAG_RST) {
        seen |= splice_seen::RST;
    }
    // SAFETY: `entry` comes from a successful lookup and stays valid for this run (RCU).
    // `seen` and `last_ns` are plain stores: each direction has its own entry, and the
    // reaper only needs to see them eventually; the counters use atomic adds. The rules
    // are then read in place, as aya's own map `get` does (a copy would crowd the 512-byte
    // stack): the fields read through `rules` are only written by the daemon, which must
    // not change a LIVE entry's rules (it deletes the entry at the end of the flow); a
    // frame racing such a change would be rewritten with a mix of old and new rules.
    let rules: &SpliceEntry = unsafe {
        if seen != 0 {
            (*entry).seen |= seen;
        }
        (*entry).last_ns = bpf_ktime_get_ns();
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*entry).packets, 1);
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*entry).bytes, frame_len);
        &*entry
    };
    // A SYN of a live flow is not part of the spliced connections (a stray retransmission
    // or a new connection reusing the 4-tuple): translating it would corrupt both ends.
    // Tagged frames are not spliced: the next hop's MACs come untagged from the FIB.
    if packet.has(TCP_FLAG_SYN) || packet.vlan || rules.family != packet.family {
        counters::add(counter::SPLICE_ERRORS, 1);
        return xdp_action::XDP_DROP;
    }
    if rewrite::rewrite(frame, packet, rules).is_none() {
        counters::add(counter::SPLICE_ERRORS, 1);
        return xdp_action::XDP_DROP;
    }
    egress::send(ctx, frame, packet, rules)
}
