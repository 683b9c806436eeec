//! The kernel program's notes to the reaper (`LB_SPLICE_NOTES`, docs/fastpath.md "The end of
//! a flow"): keys of splice entries that showed a FIN, an RST, a SYN or a missing route, or
//! moved in a new second. Between its scans of the whole map the reaper reads only these.
use aya::maps::{MapData, RingBuf};
use lb_common::{Counter, FlowKey};

use crate::kernel::bpf::KernelReadout;

pub struct Notes {
    ring: RingBuf<MapData>,
    kernel: KernelReadout,
    /// `notes_lost` as of the last drain.
    lost: u64,
}

impl Notes {
    pub fn new(ring: RingBuf<MapData>, kernel: KernelReadout) -> Self {
        let lost = kernel.get(Counter::NotesLost).unwrap_or(0);
        Self { ring, kernel, lost }
    }

    /// Adds every note since the last call to `keys`. True when the kit may have missed
    /// some (the ring was full, or the lost counter cannot be read): only a scan of the
    /// whole map then sees everything.
    pub fn drain(&mut self, keys: &mut impl Extend<FlowKey>) -> bool {
        while let Some(record) = self.ring.next() {
            // A record of another size is not ours to read; the full scan it leads to sees all.
            match key_of(&record) {
                Some(key) => keys.extend([key]),
                None => return true,
            }
        }
        match self.kernel.get(Counter::NotesLost) {
            Ok(lost) => std::mem::replace(&mut self.lost, lost) != lost,
            Err(_) => true,
        }
    }
}

/// The key a record holds: `FlowKey`'s `repr(C)` layout, as the program wrote it.
fn key_of(record: &[u8]) -> Option<FlowKey> {
    let record: &[u8; size_of::<FlowKey>()] = record.try_into().ok()?;
    let at = |i: usize| [record[i], record[i + 1]];
    Some(FlowKey::new(record[0..16].try_into().ok()?, record[16..32].try_into().ok()?, u16::from_ne_bytes(at(32)), u16::from_ne_bytes(at(34)), record[36]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_the_key_the_program_wrote() {
        let key = FlowKey::new([1; 16], [2; 16], 0x1234, 443u16.to_be(), 6);
        // The bytes of the key as the program's `output` copies them.
        let mut record = Vec::new();
        record.extend_from_slice(&key.remote_addr);
        record.extend_from_slice(&key.local_addr);
        record.extend_from_slice(&key.remote_port.to_ne_bytes());
        record.extend_from_slice(&key.local_port.to_ne_bytes());
        record.extend_from_slice(&[key.family, 0, 0, 0]);
        assert_eq!(key_of(&record), Some(key));
        assert_eq!(key_of(&record[..39]), None);
    }
}
