//! Several nodes serving one zone: membership and applied revisions in etcd (`node`),
//! their VIPs announced over BGP (`bgp`).
pub mod bgp;
pub mod cache;
pub mod node;
