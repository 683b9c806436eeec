//! The process around the rooms: `apply` swaps in a new applied configuration; signals,
//! draining, systemd notification, logging and the runtime file other tools read. The
//! binary's `serve` (`src/serve.rs`) wires control plane, data plane, kernel and telemetry
//! together with these.
pub mod apply;
pub mod drain;
pub mod logging;
pub mod notify;
pub mod runtime;
pub mod signals;
