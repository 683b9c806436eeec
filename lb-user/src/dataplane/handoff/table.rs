//! The splice map (LB_SPLICE): what the daemon writes for the XDP program to carry a flow.
use std::sync::atomic::{AtomicBool, Ordering};

use aya::maps::{IterableMap, MapError};
use lb_common::{maps::SpliceMap, splice_state, FlowKey, SpliceEntry};

use super::stats::Fallback;
use crate::{
    kernel::kernel_map::{self, Handle, KernelMapError},
    kernel::map_handles::MapHandles,
};

/// A write to the splice map failed.
#[derive(Debug, thiserror::Error)]
#[error("writing a live splice entry")]
pub struct SpliceWriteError(#[source] pub MapError);

pub struct SpliceTable {
    // Several handles: the reaper's scan of the whole map never holds up a hand-off.
    map: MapHandles<SpliceMap>,
    /// An entry was added since the last read of the whole map. Only a hand-off adds entries
    /// (the kernel programs never do), so an empty map nobody wrote to is still empty.
    added: AtomicBool,
}

impl SpliceTable {
    pub fn new(map: Handle<SpliceMap>) -> Result<Self, KernelMapError> {
        Ok(Self { map: MapHandles::per_cpu(map)?, added: AtomicBool::new(false) })
    }

    /// Whether an entry was added since the last [`Self::entries_into`].
    pub fn added_since_read(&self) -> bool {
        self.added.load(Ordering::Acquire)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Handle<SpliceMap>) -> T) -> T {
        self.map.with(f)
    }

    /// Holds both directions: frames still reach the sockets, but our sockets advertise a
    /// zero window to both peers (the egress program), so that they stop sending.
    pub fn hold(&self, keys: [FlowKey; 2]) -> Result<(), Fallback> {
        self.write_state(keys, splice_state::HELD)
    }

    /// Freezes both directions: from now on no data-bearing frame reaches the two sockets.
    pub fn freeze(&self, keys: [FlowKey; 2]) -> Result<(), Fallback> {
        self.write_state(keys, splice_state::FROZEN)
    }

    /// Writes an entry of `state` for both keys, or neither (new entries need free slots;
    /// overwriting a held pair does not).
    fn write_state(&self, keys: [FlowKey; 2], state: u8) -> Result<(), Fallback> {
        let entry = SpliceEntry { state, ..SpliceEntry::default() };
        // Before the write: a read of the whole map that misses the entries leaves the flag set.
        self.added.store(true, Ordering::Release);
        self.with(|map| {
            for (i, key) in keys.iter().enumerate() {
                if let Err(e) = map.insert(key, entry, 0) {
                    for undo in &keys[..i] {
                        map.remove(undo).ok();
                    }
                    return Err(if is_full(&e) { Fallback::MapFull } else { Fallback::Error });
                }
            }
            Ok(())
        })
    }

    /// Makes both directions live. Overwriting existing (frozen) entries needs no free slot.
    pub fn go_live(&self, entries: &[(FlowKey, SpliceEntry); 2]) -> Result<(), SpliceWriteError> {
        self.with(|map| {
            for (key, entry) in entries {
                map.insert(key, entry, 0).map_err(SpliceWriteError)?;
            }
            Ok(())
        })
    }

    pub fn remove(&self, keys: &[FlowKey]) {
        self.with(|map| {
            for key in keys {
                // Already gone is fine: removal is idempotent.
                map.remove(key).ok();
            }
        });
    }

    /// Removes a live pair's two entries. True when this call is the one that ended the
    /// pair: it removed the pair's first key in [`pair_name`]'s order, which the kernel lets
    /// only one of two racing callers do (the reaper retiring the flow, its connection task
    /// tearing it down), so that the pair is counted out once.
    pub fn remove_pair(&self, a: &FlowKey, b: &FlowKey) -> bool {
        let first = pair_name(a, b);
        let second = if first == *a { b } else { a };
        self.with(|map| {
            let ended = map.remove(&first).is_ok();
            map.remove(second).ok();
            ended
        })
    }

    /// Every entry, as of now (entries removed meanwhile are skipped): in batches of
    /// thousands per syscall where the kernel can, else one entry (two syscalls) at a time.
    pub fn entries(&self) -> Vec<(FlowKey, SpliceEntry)> {
        let mut all = Vec::new();
        self.entries_into(&mut all);
        all
    }

    /// [`Self::entries`] into `all` (cleared first), whose buffer the caller keeps between scans.
    pub fn entries_into(&self, all: &mut Vec<(FlowKey, SpliceEntry)>) {
        // Cleared before reading: an entry added during the read sets it again.
        self.added.store(false, Ordering::Release);
        self.with(|map| {
            if let Err(e) = crate::kernel::map_batch::lookup_all(map.map(), all) {
                if e.kind() != std::io::ErrorKind::InvalidInput {
                    tracing::debug!(error = %e, "batch lookup of the splice map failed: iterating");
                }
                all.clear();
                all.extend(map.iter().filter_map(Result::ok));
            }
        })
    }

    pub fn get(&self, key: &FlowKey) -> Option<SpliceEntry> {
        self.with(|map| map.get(key, 0).ok())
    }

    pub fn map_id(&self) -> Result<u32, KernelMapError> {
        self.with(|map| kernel_map::id::<SpliceMap>(map))
    }
}

fn is_full(e: &MapError) -> bool {
    matches!(e, MapError::SyscallError(s) if s.io_error.raw_os_error() == Some(libc::E2BIG))
}

/// The name of a pair of directions: the smaller of its two keys, the same from either end.
pub fn pair_name(a: &FlowKey, b: &FlowKey) -> FlowKey {
    let order = |k: &FlowKey| (k.remote_addr, k.local_addr, k.remote_port, k.local_port);
    if order(a) <= order(b) {
        *a
    } else {
        *b
    }
}
