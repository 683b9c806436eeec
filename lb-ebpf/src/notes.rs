//! Notes to the daemon's reaper: keys of the splice map worth a look before its next scan of
//! the whole map (an end seen, a SYN, a missing route, a flow that moved in a new second).
use lb_common::{Counter, FlowKey, SpliceEntry};

use crate::{counters, maps::LB_SPLICE_NOTES};

/// `BPF_RB_NO_WAKEUP`: the reaper reads on its own clock, so no frame pays for a wake-up.
const NO_WAKEUP: u64 = 1;

/// A flow moves "in a new second" when its last frame's time and this one's differ above
/// bit 30 (about 1.07 s): a busy flow is noted about once a second per direction.
pub const SECOND_SHIFT: u32 = 30;

/// Notes the flow of `rules` by its other direction's key, which the entry holds (the reaper
/// looks at both directions of a pair anyway). Out of line, with the key in its own frame:
/// carrying the frame's own key through `live` would cost that frame a slot that the
/// 512-byte stack of the call chain does not have.
#[inline(never)]
pub fn note(rules: &SpliceEntry) {
    if LB_SPLICE_NOTES.output::<FlowKey>(rules.reverse_key(), NO_WAKEUP).is_err() {
        // The reaper scans the whole map when it sees this counter move.
        counters::add(Counter::NotesLost, 1);
    }
}
