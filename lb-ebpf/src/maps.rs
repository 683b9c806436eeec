//! Every map of the program, in one place. Sizes and layouts come from lb-common.
use aya_ebpf::{
    macros::map,
    maps::{DevMapHash, HashMap, LpmTrie, LruHashMap, PerCpuArray},
};
use lb_common::{
    counter, AclV4, AclV6, FlowKey, FlowValue, FrontendKey, FrontendPolicy, SpliceEntry, ACL_MAX,
    EGRESS_MAX, FLOWS_MAX, FRONTENDS_MAX, SPLICE_MAX,
};

/// Connections the daemon classified, keyed from both ends (client side and server side).
#[map]
pub static LB_FLOWS: LruHashMap<FlowKey, FlowValue> = LruHashMap::with_max_entries(FLOWS_MAX, 0);

/// Frontend listening addresses (and wildcard entries) to their ACL policy.
#[map]
pub static LB_FRONTENDS: HashMap<FrontendKey, FrontendPolicy> =
    HashMap::with_max_entries(FRONTENDS_MAX, 0);

/// Source CIDRs per ACL id. The value is unused (presence is the answer).
#[map]
pub static LB_ACL_V4: LpmTrie<AclV4, u8> = LpmTrie::with_max_entries(ACL_MAX, 0);

#[map]
pub static LB_ACL_V6: LpmTrie<AclV6, u8> = LpmTrie::with_max_entries(ACL_MAX, 0);

#[map]
pub static LB_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Handed-off flows, keyed by the frame as it arrives. A plain hash: an LRU could evict a
/// live flow, and a frame of a retired socket reaching the kernel gets a RST.
#[map]
pub static LB_SPLICE: HashMap<FlowKey, SpliceEntry> = HashMap::with_max_entries(SPLICE_MAX, 0);

/// Interfaces a spliced frame may leave by, keyed by ifindex (value: the same ifindex).
#[map]
pub static LB_EGRESS: DevMapHash = DevMapHash::with_max_entries(EGRESS_MAX, 0);
