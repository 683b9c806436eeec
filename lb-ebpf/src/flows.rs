//! Counting of the flows the daemon pinned, and the peer's last TSval it needs at hand-off.
use core::intrinsics::{atomic_xadd, AtomicOrdering};

use lb_common::{Counter, FlowKey};

use crate::{counters, frame::Frame, maps, options, parse::Packet};

/// Counts a frame of a pinned flow. `delivered`: the frame goes on to the socket (not
/// dropped by a frozen hand-off).
#[inline(never)]
pub fn count(frame_len: u64, frame: &Frame, packet: &Packet, key: &FlowKey, delivered: bool) {
    let Some(value) = maps::LB_FLOWS.get_ptr_mut(key) else {
        return;
    };
    // SAFETY: the pointer comes from a successful map lookup and stays valid for the
    // duration of this program run (RCU); the counters are only touched with atomic adds,
    // which the verifier accepts on map values.
    unsafe {
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*value).packets, 1);
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*value).bytes, frame_len);
    }
    counters::add(Counter::FlowPackets, 1);
    counters::add(Counter::FlowBytes, frame_len);
    let mut tsval = 0;
    if options::tsval(frame, packet.l4, packet.tcp_hlen, &mut tsval) {
        // SAFETY: as above. Plain stores: only frames of this one direction write them, and
        // the daemon reads them once the flow is frozen, when a torn pair would be
        // overwritten by the next frame anyway.
        unsafe {
            (*value).peer_tsval = tsval;
            (*value).tsval_seen = 1;
        }
    }
    let payload = packet.l4_len.saturating_sub(packet.tcp_hlen) as u32;
    if delivered && payload > 0 {
        let Some(seq) = frame.be32(packet.l4 + TCP_SEQ) else {
            return;
        };
        let end = seq.wrapping_add(payload);
        // SAFETY: as above; plain stores of one direction's frames. Frames racing on two
        // CPUs may leave the older end: the daemon then sees less than was delivered, as if
        // the newer frame had come a moment later, which its settle margin covers.
        unsafe {
            // Modulo 2^32: a retransmission does not move the end back.
            if (*value).data_seen == 0 || (end.wrapping_sub((*value).data_end) as i32) > 0 {
                (*value).data_end = end;
                (*value).data_seen = 1;
            }
        }
    }
}

const TCP_SEQ: usize = 4;
