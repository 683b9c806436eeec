//! The decision for frames of a handed-off flow (docs/fastpath.md, "The kernel side of a live flow"): frozen while the daemon takes
//! the offsets, then live, rewritten and sent straight to the other connection's peer.
//!
//! tc does all of it. XDP, where it also runs, only takes live frames it can finish on its
//! own (complete checksum, a next hop that takes XDP frames) and leaves every other frame
//! of the flow to tc: a frame is handled by exactly one of them, so counters and the
//! flow's accounting never count it twice.
use core::intrinsics::{atomic_xadd, AtomicOrdering};

use aya_ebpf::helpers::bpf_ktime_get_ns;
use lb_common::{csum::Delta, splice_seen, splice_state, Counter, FlowKey, SpliceEntry};

use crate::{
    counters,
    egress::{self, Hop},
    flows,
    frame::Frame,
    hook::{self, Checksums, Hook},
    maps, notes,
    parse::{Packet, TCP_FLAG_ACK, TCP_FLAG_FIN, TCP_FLAG_RST, TCP_FLAG_SYN},
    rewrite,
};

const TCP_SEQ: usize = 4;
const TCP_ACK: usize = 8;
const TCP_WINDOW: usize = 14;

/// The verdict for a frame of a flow in the splice map, from XDP; None when the flow is not
/// handed off, and the frame takes the ordinary path.
#[inline(always)]
pub fn xdp(hook: &hook::Xdp, frame: &Frame, packet: &Packet, key: &FlowKey) -> Option<u32> {
    let entry = maps::LB_SPLICE.get_ptr_mut(key)?;
    // SAFETY: a successful lookup yields a pointer to the value, valid for this run (RCU).
    if unsafe { (*entry).state } != splice_state::LIVE {
        return Some(hook::Xdp::PASS);
    }
    Some(live(hook, frame, packet, entry))
}

/// The verdict for a frame of a flow in the splice map, from tc; None when the flow is not
/// handed off.
#[inline(always)]
pub fn tc(hook: &hook::Tc, frame: &Frame, packet: &Packet, key: &FlowKey) -> Option<u32> {
    let entry = maps::LB_SPLICE.get_ptr_mut(key)?;
    // SAFETY: as above.
    let state = unsafe { (*entry).state };
    match state {
        splice_state::FROZEN => {
            // The daemon still reads the peer's TSval from the flow map while frozen.
            // Only pure ACKs and RSTs get through a frozen flow: no data is delivered.
            flows::count(hook.len(), frame, packet, key, false);
            Some(frozen::<hook::Tc>(packet))
        }
        splice_state::LIVE => Some(live(hook, frame, packet, entry)),
        _ => None,
    }
}

/// No byte may land in a socket that is about to be retired, so anything that advances the
/// sequence space (payload, SYN, FIN) is dropped, to be retransmitted once live. Pure ACKs
/// and RSTs reach the kernel: the send queues must drain, and a reset must not be lost.
#[inline(always)]
fn frozen<H: Hook>(packet: &Packet) -> u32 {
    if packet.has(TCP_FLAG_RST) {
        counters::add(Counter::Passed, 1);
        return H::PASS;
    }
    if packet.has_payload() || packet.has(TCP_FLAG_SYN | TCP_FLAG_FIN) {
        counters::add(Counter::FrozenDropped, 1);
        return H::DROP;
    }
    counters::add(Counter::Passed, 1);
    H::PASS
}

// Out of line: its locals (the FIB lookup's parameters, the checksum sums) would otherwise
// sit in the entry point's frame, and the stacks of a call chain share 512 bytes.
#[inline(never)]
fn live<H: Hook>(hook: &H, frame: &Frame, packet: &Packet, entry: *mut SpliceEntry) -> u32 {
    // SAFETY: `entry` comes from a successful lookup and stays valid for this run (RCU).
    // The rules are read in place, as aya's own map `get` does (a copy would crowd the
    // 512-byte stack): the fields read through `rules` are only written by the daemon, which
    // must not change a LIVE entry's rules (it deletes the entry at the end of the flow); a
    // frame racing such a change would be rewritten with a mix of old and new rules.
    let rules: &SpliceEntry = unsafe { &*entry };
    // A SYN of a live flow is not part of the spliced connections (a new connection reusing
    // the 4-tuple, or a spoofer): translating it would corrupt both ends. Counted on the
    // entry, for the daemon to probe the sender: if its old connection is gone, the probe
    // draws the RST that ends the flow, and the SYN's retransmission finds the listener.
    if packet.has(TCP_FLAG_SYN) {
        counters::add(Counter::SynOnLive, 1);
        // SAFETY: as in `account`: a plain store the reaper reads eventually.
        unsafe { (*entry).syns = (*entry).syns.wrapping_add(1) };
        notes::note(rules);
        return H::DROP;
    }
    // Tagged frames are not spliced: the next hop's MACs come untagged from the FIB.
    if packet.vlan || rules.family != packet.family {
        counters::add(Counter::SpliceErrors, 1);
        return H::DROP;
    }
    if H::XDP && rewrite::looks_partial(frame, packet) {
        return deferred::<H>();
    }
    let mut hop = Hop::default();
    if !egress::next_hop(hook, frame, packet, rules, &mut hop) {
        if H::XDP {
            return deferred::<H>();
        }
        // No route: the kernel's socket is retired and would answer with a RST, so the
        // frame is dropped; the peer retransmits. Marked on the flow, for the daemon to
        // count and report it.
        counters::add(Counter::FibFailed, 1);
        if rules.seen & splice_seen::FIB_FAILED == 0 {
            // SAFETY: as in `account`: a plain store the reaper reads eventually.
            unsafe { (*entry).seen |= splice_seen::FIB_FAILED };
            notes::note(rules);
        }
        return H::DROP;
    }
    if H::XDP && !egress::xdp_can_send(hop.ifindex) {
        return deferred::<H>();
    }
    let mut ends_flow = false;
    if packet.has(TCP_FLAG_RST) {
        match reset(frame, packet, rules) {
            Reset::Exact => ends_flow = true,
            Reset::InWindow => {}
            Reset::Outside => {
                counters::add(Counter::RstOutOfWindow, 1);
                return H::DROP;
            }
        }
    }
    account(hook, frame, packet, entry, ends_flow);
    let mut sums = Checksums { pseudo: Delta::ZERO, header: Delta::ZERO };
    // An unresolved hop gets its MACs from the kernel's neighbour subsystem (tc only).
    if !rewrite::rewrite(frame, packet, rules, &mut sums) || (!hop.unresolved() && frame.set_bytes(0, &hop.macs).is_none()) {
        counters::add(Counter::SpliceErrors, 1);
        return H::DROP;
    }
    // Counted first: finishing the checksum may end every access to the frame.
    counters::add(Counter::SplicedPackets, 1);
    counters::add(Counter::SplicedBytes, hook.len());
    hook.send(frame, packet, sums, &hop)
}

/// Where an RST of a live flow falls in its receiver's window (RFC 5961 §3.2).
enum Reset {
    /// At the receiver's next expected byte: it resets the connection, and the flow ends.
    Exact,
    /// Inside the window: sent on, the receiver answers with a challenge ACK (a live peer
    /// then resets exactly, a spoofer cannot); the flow goes on meanwhile.
    InWindow,
    /// Outside the window (or the receiver's direction is unknown): dropped, so that a blind
    /// reset cannot end a connection.
    Outside,
}

/// The receiver's position is what it last acknowledged, from the entry of the frames it
/// sends (the daemon seeds it at hand-off; the receiver's ACKs move it).
// Out of line: a second map key and entry pointer on the rare RST path only.
#[inline(never)]
fn reset(frame: &Frame, packet: &Packet, rules: &SpliceEntry) -> Reset {
    let Some(receiver) = maps::LB_SPLICE.get_ptr(&rules.reverse_key()) else {
        return Reset::Outside;
    };
    let Some(seq) = frame.be32(packet.l4 + TCP_SEQ) else {
        return Reset::Outside;
    };
    // SAFETY: a successful lookup yields a pointer to the value, valid for this run (RCU);
    // the fields are plain loads (a stale value only makes the window a frame older).
    let (next, window, shift) = unsafe { ((*receiver).last_ack, (*receiver).last_win, (*receiver).wscale_in) };
    let offset = seq.wrapping_add(rules.seq_add).wrapping_sub(next);
    // An RST sent right behind data (or a FIN) reaches us before the receiver acknowledged
    // it: at the sender's next sequence number (the daemon seeds it at hand-off, data and
    // FINs forwarded this way move it), it is exact for the receiver, which resets, though
    // not yet at its last ACK. Judged in-window, the flow would outlive both sockets, and a
    // new connection on the same ports would meet its entry.
    let at_data_end = rules.data_end != 0 && seq == rules.data_end;
    if offset == 0 || at_data_end {
        return Reset::Exact;
    }
    // RFC 7323 caps the shift at 14.
    let window = (window as u32) << (shift.min(14) as u32);
    if offset < window.max(1) {
        Reset::InWindow
    } else {
        Reset::Outside
    }
}

#[inline(always)]
fn deferred<H: Hook>() -> u32 {
    counters::add(Counter::XdpDeferred, 1);
    H::PASS
}

/// What the daemon's reaper reads of a live flow: FIN/RST seen, the last frame's time,
/// frames and bytes, and the progress numbers its stall check compares. The flow is noted
/// for the reaper when it shows a new end (FIN, RST) and when it moves in a new second.
#[inline(always)]
fn account<H: Hook>(hook: &H, frame: &Frame, packet: &Packet, entry: *mut SpliceEntry, reset: bool) {
    let mut seen = 0;
    if packet.has(TCP_FLAG_FIN) {
        seen |= splice_seen::FIN;
    }
    if reset {
        seen |= splice_seen::RST;
    }
    let seq = frame.be32(packet.l4 + TCP_SEQ).unwrap_or(0);
    let ack = frame.be32(packet.l4 + TCP_ACK).unwrap_or(0);
    let win = frame.be16(packet.l4 + TCP_WINDOW).unwrap_or(0);
    let payload = packet.l4_len.saturating_sub(packet.tcp_hlen) as u32;
    // A FIN takes a sequence number: an RST sent after it is exact one past the data.
    let end = seq.wrapping_add(payload).wrapping_add(packet.has(TCP_FLAG_FIN) as u32);
    // SAFETY: `entry` comes from a successful lookup and stays valid for this run (RCU).
    // `seen`, `last_ns`, `last_ack`, `last_win` and `data_end` are plain stores: each
    // direction has its own entry, and the reaper only needs to see them eventually (a torn
    // or stale value delays a stall report by one scan at most); the counters use atomic adds.
    unsafe {
        let mut moved = seen != 0 || payload > 0;
        let mut noted = seen & !(*entry).seen != 0;
        if seen != 0 {
            (*entry).seen |= seen;
        }
        // Serial-number comparisons (RFC 1982): a reordered older ACK or a retransmission
        // must not move the positions the RST check relies on backwards.
        if packet.has(TCP_FLAG_ACK) && (ack.wrapping_sub((*entry).last_ack) as i32) >= 0 {
            moved |= ack != (*entry).last_ack || win != (*entry).last_win;
            (*entry).last_ack = ack;
            (*entry).last_win = win;
        }
        if end != seq && ((*entry).data_end == 0 || (end.wrapping_sub((*entry).data_end) as i32) > 0) {
            (*entry).data_end = end;
        }
        if payload > 0 {
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*entry).data_packets, 1);
        }
        if moved {
            let now = bpf_ktime_get_ns();
            noted |= (now ^ (*entry).last_ns) >> notes::SECOND_SHIFT != 0;
            (*entry).last_ns = now;
        }
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*entry).packets, 1);
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*entry).bytes, hook.len());
        if noted {
            notes::note(&*entry);
        }
    }
}
