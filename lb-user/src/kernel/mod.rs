//! The kernel boundary: loading and attaching the tc/XDP programs (`bpf`, `attach`), pinning
//! them for restarts (`pin`), and every access to their maps, each opened from its one
//! declaration in `lb_common::maps` (`kernel_map`), shared between threads (`map_handles`),
//! read in batches (`map_batch`); the flow and ACL tables (`flow_table`, `kernel_policy`) and
//! the statistics read back (`kernel_stats`). Unsafe code lives here and in a few socket
//! option calls of the data plane, each block with its invariant.
pub mod attach;
pub mod bpf;
pub mod flow_table;
pub mod kernel_map;
pub mod kernel_policy;
pub mod kernel_stats;
pub mod map_batch;
pub mod map_handles;
pub mod pin;
pub mod xdp_egress;
pub mod xdp_features;
