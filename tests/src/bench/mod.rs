//! The network benchmark behind `cargo xtask bench` (the `lb-bench` binary): real TLS servers
//! (nginx) and real clients (curl, h2load) in the kit's three namespaces, built once per kind
//! of veth, the client talking to nginx either straight through the load balancer's namespace
//! (`direct`: plain IP forwarding, the limit), through a peer a user would pick instead
//! (HAProxy, nginx stream), or through our daemon in one of its fast-path modes. Numbers live
//! here and never in a timed test.
//!
//! - [`mode`]: what each mode changes (which load balancer, frontend `fastpath`, interfaces);
//! - [`peers`]: HAProxy and nginx stream, configured for TLS passthrough on the ALPN;
//! - [`nginx`]: the h2 and h1 farms, one nginx in the server namespace;
//! - [`usage`]: CPU and memory counters read around each workload;
//! - [`h2load`], [`curl`]: running the clients and reading what they print;
//! - [`workloads`]: bulk transfer, new connections, connection latency, idle-connection memory,
//!   and new connections beside API requests with 100,000 handed-off flows in the map ([`pinned`]);
//! - [`runner`]: one mode on one topology, failures recorded as such;
//! - [`report`]: one record per (veth, mode, workload, round), the JSON file, medians;
//! - [`table`], [`targets`]: what the run prints;
//! - [`interrupt`]: Ctrl-C ends the run through the guards, which remove everything.

pub mod curl;
pub mod h2load;
pub mod interrupt;
pub mod mode;
pub mod nginx;
pub mod peers;
pub mod pinned;
pub mod report;
pub mod runner;
pub mod stats;
pub mod table;
pub mod targets;
pub mod usage;
pub mod workloads;

pub use mode::Mode;
pub use report::Record;
pub use workloads::Sizes;
