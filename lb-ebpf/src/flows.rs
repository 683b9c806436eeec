//! Counting of the flows the daemon pinned, and the peer's last TSval it needs at hand-off.
use core::intrinsics::{atomic_xadd, AtomicOrdering};

use lb_common::{counter, FlowKey};

use crate::{counters, frame::Frame, maps, options, parse::Packet};

#[inline(never)]
pub fn count(frame_len: u64, frame: &Frame, packet: &Packet, key: &FlowKey) {
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
    counters::add(counter::FLOW_PACKETS, 1);
    counters::add(counter::FLOW_BYTES, frame_len);
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
}
