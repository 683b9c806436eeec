//! The data plane: listening sockets (`listeners`, `listen_socket`), admission limits, reading
//! and classifying each ClientHello (`classify`), routing through the applied snapshot
//! (`snapshot`: lb-core's compiled configuration bound to live per-server state), proxying
//! (`proxy`), the user-space relays (`fastpath`: copy and splice) and the hand-off of a
//! connection to the kernel program (`handoff`); keepalive and idle timeouts (`liveness`), the
//! access log (`access`) and refusal counts (`refusals`).
pub mod access;
pub mod admission;
pub mod classify;
pub mod fastpath;
pub mod handoff;
pub mod listen_socket;
pub mod listeners;
pub mod liveness;
pub mod proxy;
pub mod refusals;
pub mod server_state;
pub mod snapshot;
