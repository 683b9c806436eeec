//! Per-CPU counters: no atomics needed, the daemon sums the CPUs.
use crate::maps::LB_COUNTERS;

#[inline(always)]
pub fn add(index: u32, amount: u64) {
    if let Some(slot) = LB_COUNTERS.get_ptr_mut(index) {
        // SAFETY: a per-CPU array slot belongs to this CPU while the program runs with
        // preemption disabled; nothing else writes it concurrently.
        unsafe { *slot += amount };
    }
}
