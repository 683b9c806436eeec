//! Every map the kernel programs share with the daemon, declared once: its name in the
//! object file, its kind, key, value and capacity. The program builds its statics from these
//! declarations (lb-ebpf `maps.rs`, which checks at compile time that each static's name and
//! kind match), and the daemon opens each map through one typed helper taking the
//! declaration, so neither side writes a map's name or types anywhere else.
use crate::{counter::Counter, AclV4, AclV6, FlowKey, FlowValue, FrontendKey, FrontendPolicy, SpliceEntry};

/// A kind of BPF map, tagged with the kernel's `enum bpf_map_type` number.
pub trait MapKind {
    const BPF_MAP_TYPE: u32;
}

/// The kinds of map the programs use (marker types: the daemon picks its aya handle by them).
pub mod kind {
    use super::MapKind;

    pub struct Hash;
    pub struct PerCpuArray;
    pub struct LruHash;
    pub struct LpmTrie;
    pub struct DevMapHash;
    /// A ring buffer: its "capacity" is its size in bytes (a power of two, a multiple of the
    /// page size), its records are values of the declared type, and it has no key.
    pub struct RingBuf;

    impl MapKind for Hash {
        const BPF_MAP_TYPE: u32 = 1;
    }
    impl MapKind for PerCpuArray {
        const BPF_MAP_TYPE: u32 = 6;
    }
    impl MapKind for LruHash {
        const BPF_MAP_TYPE: u32 = 9;
    }
    impl MapKind for LpmTrie {
        const BPF_MAP_TYPE: u32 = 11;
    }
    impl MapKind for DevMapHash {
        const BPF_MAP_TYPE: u32 = 25;
    }
    impl MapKind for RingBuf {
        const BPF_MAP_TYPE: u32 = 27;
    }
}

/// One map of the object file.
pub trait MapDecl {
    /// The symbol of the map in the object file; the daemon looks the map up by it.
    const NAME: &'static str;
    type Kind: MapKind;
    /// For an LPM trie, the data after the prefix length.
    type Key: Copy + 'static;
    type Value: Copy + 'static;
    const CAPACITY: u32;
}

macro_rules! declare_map {
    ($(#[$doc:meta])* $decl:ident = $name:literal: $kind:ident<$key:ty, $value:ty>, $capacity:expr) => {
        $(#[$doc])*
        pub struct $decl;

        impl MapDecl for $decl {
            const NAME: &'static str = $name;
            type Kind = kind::$kind;
            type Key = $key;
            type Value = $value;
            const CAPACITY: u32 = $capacity;
        }
    };
}

declare_map!(
    /// Connections the daemon classified, keyed from both ends (client side and server side).
    /// An LRU: it must hold every live connection (two entries each).
    FlowsMap = "LB_FLOWS": LruHash<FlowKey, FlowValue>, 262_144
);

declare_map!(
    /// Frontend listening addresses (and wildcard entries) to their ACL policy.
    FrontendsMap = "LB_FRONTENDS": Hash<FrontendKey, FrontendPolicy>, 65_536
);

declare_map!(
    /// Source CIDRs per ACL id. The value is unused (presence is the answer).
    AclV4Map = "LB_ACL_V4": LpmTrie<AclV4, u8>, 65_536
);

declare_map!(
    /// The same for IPv6 sources.
    AclV6Map = "LB_ACL_V6": LpmTrie<AclV6, u8>, 65_536
);

declare_map!(
    /// One slot per [`Counter`], summed over the CPUs by the daemon.
    CountersMap = "LB_COUNTERS": PerCpuArray<u32, u64>, Counter::COUNT
);

declare_map!(
    /// Handed-off flows, keyed by the frame as it arrives. A plain hash: an LRU could evict a
    /// live flow (and a frame of a retired socket reaching the kernel gets a RST). Two entries
    /// per handed-off connection (262,144 entries: 131,072 connections, about 50 MB of kernel
    /// memory); when it is full, connections stay in user space.
    SpliceMap = "LB_SPLICE": Hash<FlowKey, SpliceEntry>, 262_144
);

declare_map!(
    /// Interfaces a spliced frame may leave by, keyed by ifindex (value: the same ifindex).
    EgressMap = "LB_EGRESS": DevMapHash<u32, u32>, 64
);

declare_map!(
    /// Flows of the splice map the reaper should look at soon (docs/fastpath.md, "The end
    /// of a flow"): the program notes a key when it first sees a FIN, an RST, a SYN or a
    /// missing route on it, and when the flow moves in a new second. Between its scans of the
    /// whole map the reaper reads only these. 1 MiB: 26,000 notes between two reads.
    SpliceNotesMap = "LB_SPLICE_NOTES": RingBuf<(), FlowKey>, 1 << 20
);

/// Whether two names are the same, at compile time (lb-ebpf checks its statics with it).
pub const fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether the map `M` is of kind `K`, at compile time.
pub const fn is_kind<M: MapDecl, K: MapKind>() -> bool {
    M::Kind::BPF_MAP_TYPE == K::BPF_MAP_TYPE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_compare_whole() {
        assert!(same_name(FlowsMap::NAME, "LB_FLOWS"));
        assert!(!same_name(FlowsMap::NAME, "LB_FLOW"));
        assert!(!same_name(SpliceMap::NAME, "LB_SPLICX"));
        assert!(is_kind::<SpliceMap, kind::Hash>() && !is_kind::<FlowsMap, kind::Hash>());
    }
}
