//! lb-user: the daemon of a TLS-aware L4 load balancer. It reads each connection's TLS
//! ClientHello (without terminating TLS), routes it by ALPN, SNI and source to a farm,
//! picks a server and relays the bytes, while its XDP program enforces source ACLs before
//! any handshake and accounts pinned flows.
//!
//! Its rooms, in the order a configuration flows through them (docs/architecture.md):
//! `api` → `control` (staged changes, refresh tasks) → `store` (redb) → `daemon::apply` →
//! `dataplane` (listeners, classification, routing, relays, hand-off) → `kernel` (the tc/XDP
//! programs and their maps). Beside them: `health` (probes), `telemetry` (metrics), `status`
//! (the status page), `cluster` (a zone served by several nodes: announcing its VIPs over BGP).
//! The pure logic they share is the `lb-core` crate.
pub mod api;
pub mod cluster;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod health;
pub mod kernel;
pub mod status;
pub mod store;
pub mod telemetry;
