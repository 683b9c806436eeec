//! The TCP options the splice rewrites (timestamps, SACK), found by a bounded walk.
//!
//! Each walk looks for one kind and returns at the first match: the only state carried from
//! one step to the next is the offset, which keeps the verifier's exploration linear in the
//! number of steps (a single walk noting several options made it combinatorial and blew
//! the 1M-instruction budget).
use crate::frame::{opaque, Frame};

const KIND_EOL: u8 = 0;
const KIND_NOP: u8 = 1;
pub const KIND_SACK: u8 = 5;
pub const KIND_TIMESTAMP: u8 = 8;
pub const TIMESTAMP_LEN: usize = 10;
/// Options start right after the fixed TCP header.
pub const OPTIONS_START: usize = 20;
/// Options examined before giving up. Real stacks send at most six options on a non-SYN
/// segment (NOP, NOP, TS, NOP, NOP, SACK); a longer list is left partly unwalked, which
/// bounds the verifier's work.
const MAX_STEPS: usize = 12;
/// The layout Linux and most stacks use: NOP, NOP, then the timestamp option first.
const ALIGNED_TIMESTAMP: u32 = 0x0101_080A;

/// An option of the TCP header: its offset from the start of the header and its length.
#[derive(Clone, Copy)]
pub struct Found {
    pub at: usize,
    pub len: usize,
}

/// Walks the options of the TCP header at `tcp` (`tcp_hlen` bytes long) to the first option
/// of `kind`. Stops at EOL, at a malformed length or at the end of the header.
#[inline(always)]
pub fn find(frame: &Frame, tcp: usize, tcp_hlen: usize, wanted: u8) -> Option<Found> {
    let mut at = OPTIONS_START;
    for _ in 0..MAX_STEPS {
        if at >= tcp_hlen {
            return None;
        }
        // Kind and length in one read; a NOP or EOL in the frame's very last byte ends
        // the walk, which loses nothing.
        let word = frame.be16(tcp + at)?;
        let kind = (word >> 8) as u8;
        if kind == KIND_EOL {
            return None;
        }
        if kind == KIND_NOP {
            at += 1;
            continue;
        }
        let len = (word & 0xFF) as usize;
        if len < 2 || at + len > tcp_hlen {
            return None;
        }
        if kind == wanted {
            return Some(Found { at, len });
        }
        // at + len <= tcp_hlen <= 60, so the mask never changes the value; it widens the
        // verifier's view of the offset to 0..=63 whatever path led here, so that the
        // paths through the walk converge instead of multiplying. Hidden from LLVM, which
        // would otherwise prove the mask redundant and drop it.
        at = opaque(at + len) & 0x3F;
    }
    None
}

/// The timestamp option of the segment at `tcp`, if it carries a well-formed one.
#[inline(always)]
pub fn timestamp(frame: &Frame, tcp: usize, tcp_hlen: usize) -> Option<usize> {
    if tcp_hlen >= OPTIONS_START + 12 && frame.be32(tcp + OPTIONS_START)? == ALIGNED_TIMESTAMP {
        return Some(OPTIONS_START + 2);
    }
    let found = find(frame, tcp, tcp_hlen, KIND_TIMESTAMP)?;
    (found.len == TIMESTAMP_LEN).then_some(found.at)
}

/// The TSval (host order) of the segment at `tcp`, written to `tsval`; false without one.
/// Out of line so that the caller's state after the walk is one scalar, whatever path the
/// walk took; an out-parameter because a BPF function cannot return a pair (LLVM would
/// return a pointer into the caller's stack, which the verifier refuses).
#[inline(never)]
pub fn tsval(frame: &Frame, tcp: usize, tcp_hlen: usize, tsval: &mut u32) -> bool {
    let Some(at) = timestamp(frame, tcp, tcp_hlen) else {
        return false;
    };
    match frame.be32(tcp + at + 2) {
        Some(value) => {
            *tsval = value;
            true
        }
        None => false,
    }
}
