//! The kernel programs' counters: one table, read by everyone who names a counter.
//!
//! [`with_counters!`] holds the list — variant, name, help — in index order. This module
//! derives [`Counter`] and its names from it; the daemon derives its statistics struct (the
//! `lb-user stats` JSON) and its metrics from it, the test kit its `Counters`. A counter
//! added here appears everywhere; none can be listed in one place and forgotten in another.

/// Calls `$callback! { $( #[doc] Variant name "help", )* }` with every counter, in the order
/// of their slots in the per-CPU array. `name` is the counter's name in the statistics (the
/// field of the `lb-user stats` JSON, the `lb_kernel_<name>_total` metric); `help` is the
/// metric's help text.
#[macro_export]
macro_rules! with_counters {
    ($callback:ident) => {
        $callback! {
            /// Packets the program handed to the kernel stack untouched.
            Passed passed "Frames the kernel programs handed to the stack untouched.",
            /// SYNs dropped by a frontend's source ACL.
            AclDropped acl_dropped "SYNs dropped by a frontend's source ACL (ACL drops).",
            /// Packets of pinned flows (both directions).
            FlowPackets flow_packets "Frames of pinned (proxied) flows, both directions.",
            /// Bytes (whole frames) of pinned flows.
            FlowBytes flow_bytes "Bytes (whole frames) of pinned flows.",
            /// Frames the parser could not read far enough to decide on (passed to the kernel).
            Unparsed unparsed "Frames the parser could not read far enough to decide on.",
            /// Frames of handed-off flows rewritten and sent on (XDP_TX or redirect).
            SplicedPackets spliced_packets "Frames of handed-off flows rewritten and sent on by XDP/tc.",
            /// Bytes (whole frames, as received) of those frames.
            SplicedBytes spliced_bytes "Bytes (whole frames) of handed-off flows sent on.",
            /// Data-bearing frames dropped while their flow was frozen for hand-off (the peer
            /// retransmits them once the flow is live).
            FrozenDropped frozen_dropped "Data frames dropped while their flow was frozen for a hand-off (retransmitted later).",
            /// Frames of live flows dropped because bpf_fib_lookup found no next hop (or no
            /// neighbour).
            FibFailed fib_failed "Frames of live handed-off flows dropped for want of a next hop.",
            /// Frames of live flows dropped because they cannot be part of the spliced
            /// connections (a SYN, a VLAN tag, another address family) or could not be
            /// rewritten (truncated options).
            SpliceErrors splice_errors "Frames of live handed-off flows that could not be rewritten.",
            /// Frames of live flows the XDP program left to the tc program: a partial checksum
            /// (only the skb knows how to complete it), an egress that cannot take XDP frames,
            /// or no next hop known to the FIB yet.
            XdpDeferred xdp_deferred "Frames of live handed-off flows XDP left to tc.",
            /// RSTs of live flows dropped because their sequence number lies outside the
            /// receiver's window (RFC 5961 §3: a blind reset must not end a connection).
            RstOutOfWindow rst_out_of_window "RSTs of live handed-off flows dropped outside their receiver's window (RFC 5961).",
            /// Frames of live flows tc sent through the kernel's neighbour subsystem because
            /// the FIB knew the route but not the next hop's MAC (an entry that expired while
            /// the retired sockets were silent): the kernel resolves it, queueing the frame
            /// meanwhile.
            NeighResolved neigh_resolved "Frames of live handed-off flows sent through the kernel's neighbour resolution.",
            /// SYNs that met a live flow's entry (a client reusing the address and port of a
            /// flow whose end was not seen, or a spoofer): dropped, and the daemon probes the
            /// flow (an RST from a peer whose connection is gone then ends it).
            SynOnLive syn_on_live "SYNs that met a live handed-off flow (dropped; the daemon probes the flow's peer).",
            /// Frames our sockets sent to a peer of a flow being handed off, whose window the
            /// egress program closed (zero): the peer stops sending, so that the freeze finds
            /// nothing in flight to drop.
            WindowsHeld windows_held "Frames to a peer of a flow being handed off whose advertised window was closed.",
            /// Notes for the reaper (`LB_SPLICE_NOTES`) that found the ring full: the reaper
            /// then reads the whole splice map instead.
            NotesLost notes_lost "Notes for the hand-off reaper lost to a full ring (the reaper then scans the whole splice map).",
        }
    };
}

macro_rules! counter_enum {
    ($($(#[$doc:meta])* $variant:ident $name:ident $help:literal,)*) => {
        /// A slot of the per-CPU counter array: the discriminant is the index.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Counter {
            $($(#[$doc])* $variant,)*
        }

        impl Counter {
            /// Every counter, by index.
            pub const ALL: [Counter; Self::COUNT as usize] = [$(Counter::$variant,)*];
            /// Their names, by index.
            pub const NAMES: [&'static str; Self::COUNT as usize] = [$(stringify!($name),)*];
            const HELP: [&'static str; Self::COUNT as usize] = [$($help,)*];
            const METRICS: [&'static str; Self::COUNT as usize] = [$(concat!("kernel_", stringify!($name)),)*];
            /// Slots of the array.
            pub const COUNT: u32 = [$(stringify!($name),)*].len() as u32;
        }
    };
}

with_counters!(counter_enum);

impl Counter {
    /// The slot of this counter in the per-CPU array.
    pub const fn index(self) -> u32 {
        self as u32
    }

    /// Its name in the statistics.
    pub const fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// One line saying what it counts (the metric's help).
    pub const fn help(self) -> &'static str {
        Self::HELP[self as usize]
    }

    /// The metric family, `kernel_<name>` (the exposition adds `lb_` and `_total`).
    pub const fn metric(self) -> &'static str {
        Self::METRICS[self as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::Counter;

    #[test]
    fn indices_follow_the_table() {
        for (i, counter) in Counter::ALL.iter().enumerate() {
            assert_eq!(counter.index() as usize, i);
        }
        assert_eq!(Counter::ALL.len(), Counter::COUNT as usize);
    }

    #[test]
    fn names_and_metrics_agree() {
        assert_eq!(Counter::AclDropped.name(), "acl_dropped");
        assert_eq!(Counter::AclDropped.metric(), "kernel_acl_dropped");
        assert_eq!(Counter::NeighResolved.index(), 12);
        for counter in Counter::ALL {
            assert!(!counter.help().is_empty());
        }
    }
}
