//! Health checking: per-farm probes of the servers that enable them (`probe: true`). Each
//! probed server has a task that probes it every `interval` (≥ 1 s, default 30 s), each
//! probe bounded by min(interval, 10 s), and records the result in the server's
//! `ServerRuntime`: two consecutive failures mark it down, one success up. The balancer
//! skips servers that are down.
//!
//! - `checker`: the tasks, kept in step with each applied snapshot;
//! - `task`: one server's probe loop and its logs;
//! - `spec`: a probe's settings resolved for one server; `check`: one probe, by type;
//! - `tcp`, `tls`, `http` (with the sans-io `http_response`), `smtp`, `mysql`, `pgsql`,
//!   `oco`: the probe types of IPLB;
//! - `conn`: connect, TLS handshake, bounded reads; `tls_config`: the probes' TLS client;
//! - `error`: why a probe failed, as the server's last error says it.
mod check;
mod checker;
mod conn;
mod error;
mod http;
mod http_response;
mod mysql;
mod oco;
mod pgsql;
mod smtp;
mod spec;
mod task;
mod tcp;
mod tls;
mod tls_config;

pub use check::probe_once;
pub use checker::HealthChecker;
pub use error::ProbeError;
pub use spec::{Kind, ProbeSpec};

#[cfg(test)]
mod tests;
