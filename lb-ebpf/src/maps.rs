//! Every map of the program, in one place, built from the declarations in `lb_common::maps`
//! (name, kind, key, value and capacity are written there and nowhere else).
use aya_ebpf::{
    macros::map,
    maps::{DevMapHash, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use lb_common::maps::{is_kind, kind, same_name, AclV4Map, AclV6Map, CountersMap, EgressMap, FlowsMap, FrontendsMap, MapDecl, SpliceMap, SpliceNotesMap};

/// `kernel_map!(STATIC: Kind = Decl)` declares the map `Decl` as `STATIC`. aya's `#[map]`
/// exports a static under its own identifier (the attribute takes only a literal name), so
/// the identifier must be the declared name: checked at compile time, with the kind.
macro_rules! kernel_map {
    ($(#[$doc:meta])* $static:ident: $kind:ident = $decl:ty) => {
        $(#[$doc])*
        #[map]
        pub static $static: kernel_map!(@type $kind, $decl) =
            <kernel_map!(@type $kind, $decl)>::with_max_entries(<$decl as MapDecl>::CAPACITY, 0);
        const _: () = assert!(same_name(stringify!($static), <$decl as MapDecl>::NAME), "the static must bear the declared name");
        const _: () = assert!(is_kind::<$decl, kind::$kind>(), "the static must be of the declared kind");
        kernel_map!(@key $kind, $decl);
    };
    (@type Hash, $decl:ty) => { HashMap<<$decl as MapDecl>::Key, <$decl as MapDecl>::Value> };
    (@type LruHash, $decl:ty) => { LruHashMap<<$decl as MapDecl>::Key, <$decl as MapDecl>::Value> };
    (@type LpmTrie, $decl:ty) => { LpmTrie<<$decl as MapDecl>::Key, <$decl as MapDecl>::Value> };
    (@type PerCpuArray, $decl:ty) => { PerCpuArray<<$decl as MapDecl>::Value> };
    (@type DevMapHash, $decl:ty) => { DevMapHash };
    // Arrays and devmaps have u32 keys (and a devmap u32 values) whatever the declaration
    // says: make it say so.
    (@key PerCpuArray, $decl:ty) => {
        const _: fn(<$decl as MapDecl>::Key) -> u32 = |key| key;
    };
    (@key DevMapHash, $decl:ty) => {
        const _: fn(<$decl as MapDecl>::Key, <$decl as MapDecl>::Value) -> (u32, u32) = |key, value| (key, value);
    };
    (@key $kind:ident, $decl:ty) => {};
}

kernel_map!(LB_FLOWS: LruHash = FlowsMap);
kernel_map!(LB_FRONTENDS: Hash = FrontendsMap);
kernel_map!(LB_ACL_V4: LpmTrie = AclV4Map);
kernel_map!(LB_ACL_V6: LpmTrie = AclV6Map);
kernel_map!(LB_COUNTERS: PerCpuArray = CountersMap);
kernel_map!(LB_SPLICE: Hash = SpliceMap);
kernel_map!(LB_EGRESS: DevMapHash = EgressMap);

/// A ring buffer is built from its size in bytes and has no key, so it is declared outside
/// `kernel_map!`, with the same checks.
#[map]
pub static LB_SPLICE_NOTES: RingBuf = RingBuf::with_byte_size(<SpliceNotesMap as MapDecl>::CAPACITY, 0);
const _: () = assert!(same_name("LB_SPLICE_NOTES", <SpliceNotesMap as MapDecl>::NAME), "the static must bear the declared name");
const _: () = assert!(is_kind::<SpliceNotesMap, kind::RingBuf>(), "the static must be of the declared kind");
