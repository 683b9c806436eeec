//! lb-user: the daemon of a TLS-aware L4 load balancer. It reads each connection's TLS
//! ClientHello (without terminating TLS), routes it by ALPN, SNI and source to a farm,
//! picks a server and relays the bytes, while its XDP program enforces source ACLs before
//! any handshake and accounts pinned flows.
pub mod access;
pub mod api;
pub mod admission;
pub mod apply;
pub mod attach;
pub mod bpf;
pub mod classify;
pub mod config_file;
pub mod control;
pub mod drain;
pub mod fastpath;
pub mod flow_table;
pub mod handoff;
pub mod health;
pub mod kernel_map;
pub mod kernel_policy;
pub mod kernel_stats;
pub mod listen_socket;
pub mod listeners;
pub mod map_batch;
pub mod map_handles;
pub mod liveness;
pub mod logging;
pub mod notify;
pub mod pin;
pub mod proxy;
pub mod refusals;
pub mod runtime;
pub mod serve;
pub mod signals;
pub mod server_state;
pub mod snapshot;
pub mod status;
pub mod store;
pub mod telemetry;
