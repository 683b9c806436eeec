//! Translation of a segment of one connection into the other's numbers (docs/fastpath.md, "The translation arithmetic"):
//! addresses, ports, sequence and acknowledgment numbers, window, timestamps and SACK
//! edges; the IPv4 header checksum is updated here, the TCP checksum by the hook
//! (incrementally, RFC 1624).
use lb_common::{csum, csum::Delta, splice_option, tcp::rescale_window, SpliceEntry, FAMILY_V4};

use crate::{
    frame::Frame,
    hook::Checksums,
    options,
    parse::{Packet, IPPROTO_TCP, TCP_FLAG_ACK},
};

const IPV4_CHECK: usize = 10;
const IPV4_SRC: usize = 12;
const IPV4_DST: usize = 16;
const IPV6_SRC: usize = 8;
const IPV6_DST: usize = 24;
const TCP_SEQ: usize = 4;
const TCP_ACK: usize = 8;
const TCP_WINDOW: usize = 14;
const TCP_CHECK: usize = 16;
const SACK_BLOCK_LEN: usize = 8;
const SACK_MAX_BLOCKS: usize = 4;

/// Rewrites the frame in place, all but the TCP checksum, and returns how the checksum
/// must change (the hook applies it: hook.rs). None if the frame is shorter than its
/// headers claim; the frame may then be half rewritten and must be dropped.
#[inline(never)]
pub fn rewrite(frame: &Frame, packet: &Packet, rules: &SpliceEntry, sums: &mut Checksums) -> bool {
    rewrite_headers(frame, packet, rules, sums).is_some()
}

// Out of line with an out-parameter: a BPF function cannot return a pair (see below).
#[inline(always)]
fn rewrite_headers(frame: &Frame, packet: &Packet, rules: &SpliceEntry, sums: &mut Checksums) -> Option<()> {
    let tcp = packet.l4;
    if !frame.holds(tcp, packet.tcp_hlen) {
        return None;
    }
    // The TCP checksum covers the addresses through the pseudo-header.
    let pseudo = addresses(frame, packet, rules)?;
    let mut delta =
        Delta::ZERO.word(u16::from_be(packet.src_port), u16::from_be(rules.src_port)).word(u16::from_be(packet.dst_port), u16::from_be(rules.dst_port));
    frame.set_bytes(tcp, &rules.src_port.to_ne_bytes())?;
    frame.set_bytes(tcp + 2, &rules.dst_port.to_ne_bytes())?;

    let seq = frame.be32(tcp + TCP_SEQ)?;
    let new_seq = seq.wrapping_add(rules.seq_add);
    frame.set_be32(tcp + TCP_SEQ, new_seq)?;
    delta = delta.word32(seq, new_seq);

    if packet.has(TCP_FLAG_ACK) {
        let ack = frame.be32(tcp + TCP_ACK)?;
        let new_ack = ack.wrapping_sub(rules.ack_sub);
        frame.set_be32(tcp + TCP_ACK, new_ack)?;
        delta = delta.word32(ack, new_ack);
    }

    // SYNs never reach here (their window is never scaled, and live flows drop them).
    let window = frame.be16(tcp + TCP_WINDOW)?;
    let new_window = rescale_window(window, rules.wscale_in, rules.wscale_out);
    frame.set_be16(tcp + TCP_WINDOW, new_window)?;
    delta = delta.word(window, new_window);

    if rules.options != 0 && packet.tcp_hlen > options::OPTIONS_START {
        delta = delta.combine(rewrite_options(frame, tcp, packet.tcp_hlen, rules)?);
    }
    *sums = Checksums { pseudo, header: delta };
    Some(())
}

/// Applies the rewrite's change to a complete TCP checksum in place (XDP, which only ever
/// rewrites frames whose checksum is complete: see `looks_partial`).
#[inline(always)]
pub fn apply_to_complete(frame: &Frame, packet: &Packet, sums: Checksums) -> Option<()> {
    let at = packet.l4 + TCP_CHECK;
    let check = frame.be16(at)?;
    frame.set_be16(at, sums.pseudo.combine(sums.header).apply(check))
}

/// Whether the checksum field holds the pseudo-header sum a sender leaves to offload
/// (csum::partial_check). XDP sees no skb, so cannot complete such a checksum or know the
/// frame's state: it leaves the frame to tc, whose skb knows.
#[inline(always)]
pub fn looks_partial(frame: &Frame, packet: &Packet) -> bool {
    let Some(check) = frame.be16(packet.l4 + TCP_CHECK) else {
        return false;
    };
    let pseudo = if packet.family == FAMILY_V4 {
        csum::pseudo_v4(&prefix::<4>(&packet.src_addr), &prefix::<4>(&packet.dst_addr), IPPROTO_TCP, packet.l4_len as u16)
    } else {
        csum::pseudo_v6(&packet.src_addr, &packet.dst_addr, IPPROTO_TCP, packet.l4_len as u32)
    };
    check == csum::partial_check(pseudo)
}

/// Rewrites source and destination, updates the IPv4 header checksum, and returns the
/// change to the TCP pseudo-header sum.
#[inline(always)]
fn addresses(frame: &Frame, packet: &Packet, rules: &SpliceEntry) -> Option<Delta> {
    let l3 = packet.l3;
    if packet.family == FAMILY_V4 {
        let delta = address_delta::<4>(&packet.src_addr, &rules.src_addr).combine(address_delta::<4>(&packet.dst_addr, &rules.dst_addr));
        frame.set_bytes(l3 + IPV4_SRC, &prefix::<4>(&rules.src_addr))?;
        frame.set_bytes(l3 + IPV4_DST, &prefix::<4>(&rules.dst_addr))?;
        let check = frame.be16(l3 + IPV4_CHECK)?;
        frame.set_be16(l3 + IPV4_CHECK, delta.apply(check))?;
        Some(delta)
    } else {
        let delta = address_delta::<16>(&packet.src_addr, &rules.src_addr).combine(address_delta::<16>(&packet.dst_addr, &rules.dst_addr));
        frame.set_bytes(l3 + IPV6_SRC, &rules.src_addr)?;
        frame.set_bytes(l3 + IPV6_DST, &rules.dst_addr)?;
        Some(delta)
    }
}

/// The first N bytes of an address (IPv4 sits in the first four of our 16).
#[inline(always)]
fn prefix<const N: usize>(addr: &[u8; 16]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&addr[..N]);
    out
}

/// Out of line on purpose: inlined, LLVM hoists all 32 loads of an IPv6 address pair ahead
/// of the sums and spills them, which overflows the 512-byte BPF stack.
#[inline(never)]
fn address_delta<const N: usize>(old: &[u8; 16], new: &[u8; 16]) -> Delta {
    Delta::ZERO.bytes::<N>(&prefix::<N>(old), &prefix::<N>(new))
}

/// Timestamps and SACK edges. Options may sit at odd offsets from the TCP header start,
/// where the checksum's words straddle them: each option's delta is computed as if it were
/// aligned, then realigned by its offset's parity.
#[inline(always)]
fn rewrite_options(frame: &Frame, tcp: usize, tcp_hlen: usize, rules: &SpliceEntry) -> Option<Delta> {
    let mut timestamp = Delta::ZERO;
    if rules.options & splice_option::TIMESTAMPS != 0 && !rewrite_timestamp(frame, tcp, tcp_hlen, rules, &mut timestamp) {
        return None;
    }
    let mut sack = Delta::ZERO;
    if rules.options & splice_option::SACK != 0 && !rewrite_sack(frame, tcp, tcp_hlen, rules, &mut sack) {
        return None;
    }
    Some(timestamp.combine(sack))
}

// The two rewrites below are out of line so that after the call the verifier carries one
// scalar, not every offset their walk could take (inlined, the program exceeds the
// verifier's budget). They report through an out-parameter because a BPF function cannot
// return a pair: LLVM would return a pointer into the caller's stack, which the verifier
// refuses. False means the frame ended inside the option: drop it.

/// TSval += tsval_add, TSecr -= tsecr_sub.
#[inline(never)]
fn rewrite_timestamp(frame: &Frame, tcp: usize, tcp_hlen: usize, rules: &SpliceEntry, delta: &mut Delta) -> bool {
    let Some(at) = options::timestamp(frame, tcp, tcp_hlen) else {
        return true;
    };
    let (Some(tsval), Some(tsecr)) = (frame.be32(tcp + at + 2), frame.be32(tcp + at + 6)) else {
        return false;
    };
    let new_tsval = tsval.wrapping_add(rules.tsval_add);
    let new_tsecr = tsecr.wrapping_sub(rules.tsecr_sub);
    if frame.set_be32(tcp + at + 2, new_tsval).is_none() || frame.set_be32(tcp + at + 6, new_tsecr).is_none() {
        return false;
    }
    *delta = Delta::ZERO.word32(tsval, new_tsval).word32(tsecr, new_tsecr).realigned(at as u32);
    true
}

/// Every SACK block edge -= ack_sub (the edges acknowledge the same sequence space).
#[inline(never)]
fn rewrite_sack(frame: &Frame, tcp: usize, tcp_hlen: usize, rules: &SpliceEntry, delta: &mut Delta) -> bool {
    let Some(sack) = options::find(frame, tcp, tcp_hlen, options::KIND_SACK) else {
        return true;
    };
    let blocks = (sack.len - 2) / SACK_BLOCK_LEN;
    let mut sum = Delta::ZERO;
    for block in 0..SACK_MAX_BLOCKS {
        if block >= blocks {
            break;
        }
        let at = tcp + sack.at + 2 + block * SACK_BLOCK_LEN;
        let (Some(left), Some(right)) = (frame.be32(at), frame.be32(at + 4)) else {
            return false;
        };
        let new_left = left.wrapping_sub(rules.ack_sub);
        let new_right = right.wrapping_sub(rules.ack_sub);
        if frame.set_be32(at, new_left).is_none() || frame.set_be32(at + 4, new_right).is_none() {
            return false;
        }
        sum = sum.word32(left, new_left).word32(right, new_right);
    }
    *delta = sum.realigned(sack.at as u32);
    true
}
