//! Reading a whole BPF hash map in batches (`BPF_MAP_LOOKUP_BATCH`, Linux 5.6+): a scan of
//! a map holding 200,000 entries takes about fifty syscalls, where aya's iterator takes two
//! per entry (next key, then lookup) — 400,000 every scan, a core's worth at the reaper's pace.
//! aya 0.14 has no batch operations, hence the raw syscall here, at the kernel boundary.
// Unsafe here: BPF_MAP_LOOKUP_BATCH has no safe wrapper in aya: one raw bpf(2) call and the buffers it fills.
#![allow(unsafe_code)]
use std::{
    io,
    mem::size_of,
    os::fd::{AsFd, AsRawFd},
};

use aya::{maps::MapData, Pod};

/// `BPF_MAP_LOOKUP_BATCH` of `enum bpf_cmd` (include/uapi/linux/bpf.h).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
/// Entries asked for per syscall: large enough that a scan takes few calls, small enough
/// that the buffers stay modest (a hash map answers by whole buckets; a bucket never holds
/// this many entries).
const CHUNK: usize = 4096;
/// The kernel's internal ENOTSUPP, which BPF commands return for an unsupported map kind.
const ENOTSUPP: i32 = 524;

/// The `batch` member of `union bpf_attr`, as the kernel lays it out.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Every entry of the hash map `map` whose keys are `K` and values `V` (not per-CPU), as of
/// the scan, into `found` (cleared first: a caller that scans again and again keeps one
/// buffer, instead of faulting in a new one of tens of megabytes per scan of a large map).
/// Entries added or removed meanwhile may or may not be in it. `Err` with `InvalidInput`
/// when the kernel or the map kind has no batch lookup: the caller iterates.
pub fn lookup_all<K: Pod, V: Pod>(map: &MapData, found: &mut Vec<(K, V)>) -> io::Result<()> {
    found.clear();
    // A hash map's batch token is a bucket index (u32); 8 bytes leave room for any kind.
    let mut token_in = [0u8; 8];
    let mut token_out = [0u8; 8];
    let mut keys: Vec<K> = Vec::with_capacity(CHUNK);
    let mut values: Vec<V> = Vec::with_capacity(CHUNK);
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { token_in.as_mut_ptr() as u64 },
            out_batch: token_out.as_mut_ptr() as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: CHUNK as u32,
            map_fd: map.fd().as_fd().as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // SAFETY: `attr` is a valid `bpf_attr.batch` of the size passed; `keys` and `values`
        // have room for `count` (CHUNK) elements of the map's key and value sizes (`K` and
        // `V` are the map's types: `Pod`, any bit pattern valid); `token_in`/`token_out`
        // hold at least the map's batch token (4 bytes for a hash map). The kernel writes
        // no more than that, and only during the call.
        let ret = unsafe { libc::syscall(libc::SYS_bpf, BPF_MAP_LOOKUP_BATCH, &mut attr as *mut BatchAttr, size_of::<BatchAttr>() as u32) };
        let err = (ret < 0).then(io::Error::last_os_error);
        let filled = (attr.count as usize).min(CHUNK);
        if err.as_ref().is_none_or(|e| e.raw_os_error() == Some(libc::ENOENT)) {
            // SAFETY: the kernel filled the first `filled` elements of each buffer (it sets
            // `count` to what it copied, also on ENOENT, the end of the map).
            unsafe {
                keys.set_len(filled);
                values.set_len(filled);
            }
            found.extend(keys.drain(..).zip(values.drain(..)));
        }
        match err {
            None => {}
            Some(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            Some(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) | Some(ENOTSUPP)) => {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, e));
            }
            Some(e) => return Err(e),
        }
        token_in = token_out;
        first = false;
    }
}
