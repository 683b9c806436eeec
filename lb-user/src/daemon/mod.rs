//! The process around the rooms: `serve` wires control plane, data plane, kernel and
//! telemetry together; `apply` swaps in a new applied configuration; signals, draining,
//! systemd notification, logging and the runtime file other tools read.
pub mod apply;
pub mod drain;
pub mod logging;
pub mod notify;
pub mod runtime;
pub mod serve;
pub mod signals;
