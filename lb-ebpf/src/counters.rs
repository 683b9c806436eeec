//! Per-CPU counters: no atomics needed, the daemon sums the CPUs.
use lb_common::Counter;

use crate::maps::LB_COUNTERS;

#[inline(always)]
pub fn add(counter: Counter, amount: u64) {
    if let Some(slot) = LB_COUNTERS.get_ptr_mut(counter.index()) {
        // SAFETY: a per-CPU array slot belongs to this CPU while the program runs with
        // preemption disabled; nothing else writes it concurrently.
        unsafe { *slot += amount };
    }
}
