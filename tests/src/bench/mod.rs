//! The network benchmark behind `cargo xtask bench` (the `lb-bench` binary): real TLS servers
//! (nginx) and real clients (curl, h2load) in the kit's three namespaces, the client talking to
//! nginx either straight through the load balancer's namespace (`direct`: plain IP forwarding,
//! the limit) or through the daemon in one of its fast-path modes. Numbers live here and
//! never in a timed test.
//!
//! - [`mode`]: what each mode changes (daemon flags, frontend `fastpath`, where clients dial);
//! - [`nginx`]: the h2 and h1 farms, one nginx in the server namespace;
//! - [`usage`]: CPU and memory counters read around each workload;
//! - [`h2load`], [`curl`]: running the clients and reading what they print;
//! - [`workloads`]: bulk transfer, new connections, connection latency, idle-connection memory;
//! - [`report`]: one record per (mode, workload), the JSON file and the table;
//! - [`interrupt`]: Ctrl-C ends the run through the guards, which remove everything.

pub mod curl;
pub mod h2load;
pub mod interrupt;
pub mod mode;
pub mod nginx;
pub mod report;
pub mod stats;
pub mod usage;
pub mod workloads;

pub use mode::Mode;
pub use report::Record;
pub use workloads::Sizes;
