//! The two places the program runs, and what differs between them. The decisions (ACL,
//! splice, accounting) and the rewrite are shared; a hook only says how to read the frame,
//! how to finish the TCP checksum and how to send the frame on.
//!
//! - tc (clsact ingress) runs on every interface the daemon serves. It sees the skb: GRO
//!   and GSO aggregates of up to 64 KiB, whose checksum state (complete, partial, already
//!   verified) the kernel's checksum helpers honour; its redirect hands the skb to the
//!   egress device's transmit path, which every device takes (a veth needs no NAPI on its
//!   peer for it). It is the path that always works.
//! - XDP runs, in addition, on interfaces whose driver gives it frames before any skb
//!   exists (NICs): it splices what it can do right and cheaply, and leaves (XDP_PASS) the
//!   rest to tc on the same interface.
use core::ffi::c_void;

use aya_ebpf::{
    bindings::{xdp_action, BPF_F_PSEUDO_HDR, TC_ACT_OK, TC_ACT_SHOT},
    helpers::{bpf_redirect, bpf_redirect_neigh},
    programs::{TcContext, XdpContext},
};
use lb_common::{csum::Delta, Counter};

use crate::{counters, egress, frame::Frame, parse::Packet, rewrite};

/// TCP header offset of the checksum field.
const TCP_CHECK: usize = 16;
/// Headers a frame may need in its linear part: Ethernet, one VLAN tag, a 60-byte IPv4
/// header and a 60-byte TCP header.
const HEADERS_MAX: u32 = 138;

/// The change a rewrite made to the TCP checksum, split the way the kernel's checksum
/// helpers need it: a partial checksum covers the pseudo-header only.
#[derive(Clone, Copy)]
pub struct Checksums {
    /// Addresses (pseudo-header).
    pub pseudo: Delta,
    /// Ports, sequence numbers, window and options (TCP header).
    pub header: Delta,
}

pub trait Hook {
    /// Hands the frame on to the kernel, untouched by this program.
    const PASS: u32;
    const DROP: u32;
    /// Whether this is the XDP hook (which defers to tc what it cannot do right).
    const XDP: bool;

    fn frame(&self) -> Frame;
    /// The frame's whole length, as the byte counters count it (an skb's, GSO included).
    fn len(&self) -> u64;
    /// Whether the frame carried a VLAN tag outside its bytes (skb metadata).
    fn vlan_offloaded(&self) -> bool;
    fn ingress_ifindex(&self) -> u32;
    /// The context argument of bpf_fib_lookup.
    fn fib_ctx(&self) -> *mut c_void;
    /// Whether bpf_fib_lookup should check the egress MTU against the IP header's length;
    /// tc leaves it to the kernel, which knows an skb's segment size.
    const FIB_CHECKS_LENGTH: bool;
    /// Finishes the rewritten frame's TCP checksum and sends it to `hop`.
    fn send(&self, frame: &Frame, packet: &Packet, sums: Checksums, hop: &egress::Hop) -> u32;
}

pub struct Xdp<'a>(pub &'a XdpContext);

impl Hook for Xdp<'_> {
    const PASS: u32 = xdp_action::XDP_PASS;
    const DROP: u32 = xdp_action::XDP_DROP;
    const XDP: bool = true;
    const FIB_CHECKS_LENGTH: bool = true;

    #[inline(always)]
    fn frame(&self) -> Frame {
        Frame::new(self.0.data(), self.0.data_end())
    }

    #[inline(always)]
    fn len(&self) -> u64 {
        (self.0.data_end() - self.0.data()) as u64
    }

    #[inline(always)]
    fn vlan_offloaded(&self) -> bool {
        false
    }

    #[inline(always)]
    fn ingress_ifindex(&self) -> u32 {
        // SAFETY: ctx.ctx is the xdp_md the kernel passed to this run; reading its fields is
        // the context access the verifier rewrites.
        unsafe { (*self.0.ctx).ingress_ifindex }
    }

    #[inline(always)]
    fn fib_ctx(&self) -> *mut c_void {
        self.0.ctx as *mut c_void
    }

    /// XDP only ever rewrites frames whose checksum is complete (splice.rs defers the
    /// others to tc), so the field takes the change directly.
    #[inline(always)]
    fn send(&self, frame: &Frame, packet: &Packet, sums: Checksums, hop: &egress::Hop) -> u32 {
        if rewrite::apply_to_complete(frame, packet, sums).is_none() {
            counters::add(Counter::SpliceErrors, 1);
            return Self::DROP;
        }
        egress::xdp_send(hop.ifindex)
    }
}

pub struct Tc<'a>(pub &'a TcContext);

impl Tc<'_> {
    /// Makes the headers readable in place: GRO and some drivers leave them in the skb's
    /// paged part. Pulling is a no-op when they already are linear.
    #[inline(always)]
    pub fn pull_headers(&self) {
        let len = self.0.len();
        let want = if len < HEADERS_MAX { len } else { HEADERS_MAX };
        if ((self.0.data_end() - self.0.data()) as u32) < want {
            // A failure leaves the frame as it was: the parser then finds it too short and
            // passes it on.
            self.0.pull_data(want).ok();
        }
    }

    /// Completes the rewrite's TCP checksum change through the kernel's helper, which knows
    /// the skb's checksum state: a complete checksum takes every change, a partial one (the
    /// pseudo-header sum, completed later by offload or software) only the addresses.
    /// Invalidates every pointer into the frame: nothing may read or write it afterwards.
    #[inline(always)]
    pub fn finish_checksum(&self, l4: usize, sums: Checksums) -> Option<()> {
        let at = l4 + TCP_CHECK;
        // Size 0: `to` is a sum to add, not a field value (bpf_l4_csum_replace's diff mode).
        // The kernel sums 16-bit words as loaded from memory, little-endian here; ours are
        // big-endian values, and a ones' complement sum of byte-swapped words is the
        // byte-swapped sum (RFC 1071).
        let pseudo = u64::from(sums.pseudo.folded().to_be());
        self.0.l4_csum_replace(at, 0, pseudo, u64::from(BPF_F_PSEUDO_HDR)).ok()?;
        let header = u64::from(sums.header.folded().to_be());
        self.0.l4_csum_replace(at, 0, header, 0).ok()
    }

    #[inline(always)]
    pub fn redirect(&self, hop: &egress::Hop) -> u32 {
        if hop.unresolved() {
            counters::add(Counter::NeighResolved, 1);
            // SAFETY: a plain helper call; without parameters (null, 0) the kernel looks
            // the next hop up itself from the rewritten headers and fills both MACs.
            return unsafe { bpf_redirect_neigh(hop.ifindex, core::ptr::null_mut(), 0, 0) as u32 };
        }
        // SAFETY: a plain helper call; it only records the target in per-CPU state.
        unsafe { bpf_redirect(hop.ifindex, 0) as u32 }
    }
}

impl Hook for Tc<'_> {
    const PASS: u32 = TC_ACT_OK as u32;
    const DROP: u32 = TC_ACT_SHOT as u32;
    const XDP: bool = false;
    const FIB_CHECKS_LENGTH: bool = false;

    #[inline(always)]
    fn frame(&self) -> Frame {
        Frame::new(self.0.data(), self.0.data_end())
    }

    #[inline(always)]
    fn len(&self) -> u64 {
        u64::from(self.0.len())
    }

    #[inline(always)]
    fn vlan_offloaded(&self) -> bool {
        // SAFETY: skb is the __sk_buff the kernel passed to this run; reading its fields is
        // the context access the verifier rewrites.
        unsafe { (*self.0.skb.skb).vlan_present != 0 }
    }

    #[inline(always)]
    // Named after the XDP context's field; at tc ingress the skb's `ifindex` is that same
    // device, the one the frame arrived on.
    #[allow(clippy::misnamed_getters)]
    fn ingress_ifindex(&self) -> u32 {
        // SAFETY: as above.
        unsafe { (*self.0.skb.skb).ifindex }
    }

    #[inline(always)]
    fn fib_ctx(&self) -> *mut c_void {
        self.0.skb.skb as *mut c_void
    }

    #[inline(always)]
    fn send(&self, _frame: &Frame, packet: &Packet, sums: Checksums, hop: &egress::Hop) -> u32 {
        if self.finish_checksum(packet.l4, sums).is_none() {
            counters::add(Counter::SpliceErrors, 1);
            return Self::DROP;
        }
        self.redirect(hop)
    }
}
