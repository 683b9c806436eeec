//! Test kit for the load balancer's integration tests and demo.
//!
//! Every network test owns a [`Topology`]: three network namespaces (client, load balancer,
//! servers) joined by veth pairs, removed on drop even when the test panics. Backends are real
//! TLS servers ([`Backends`], the `lb-backend` binary), the daemon runs in the lb namespace
//! ([`Daemon`]), and clients are real TLS stacks: rustls from inside a namespace ([`in_netns`],
//! [`client`]) or `curl` ([`curl`]).

pub mod api;
pub mod backends;
pub mod bench;
pub mod bgp;
pub mod certs;
pub mod chromium;
pub mod client;
pub mod config;
pub mod curl;
pub mod daemon;
pub mod echo;
pub mod etcd;
pub mod ethtool;
pub mod h2;
pub mod hello;
pub mod hostile;
mod http1;
pub mod lab;
pub mod lb_cluster;
pub mod load;
pub mod netns;
pub mod plain;
pub mod proc;
pub mod procfs;
pub mod raw;
pub mod soak;
pub mod stall_probe;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use backends::Backends;
pub use certs::Certs;
pub use client::{ClientOpts, EchoReport, EchoSession, HttpResponse};
pub use config::{Action, Config, Farm, Frontend, Route, Rule, Server};
pub use daemon::{Daemon, DaemonOpts, Stats};
pub use lab::Lab;
pub use netns::{in_netns, run_in, spawn_in, Topology, VethKind};
pub use proc::ChildGuard;

/// The load balancer's address on the client side (`lbc`).
pub const LB_VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 1);
/// The client's primary address (`c0`).
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 2);
/// The client's second address (`c0`), used for source rules and ACLs.
pub const CLIENT_IP2: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 3);
/// The load balancer's address on the server side (`lbs`).
pub const LB_SERVER_SIDE_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 1);
/// The server namespace's addresses (`s0`).
pub const SERVER_IPS: [Ipv4Addr; 4] = [Ipv4Addr::new(10, 77, 2, 2), Ipv4Addr::new(10, 77, 2, 3), Ipv4Addr::new(10, 77, 2, 4), Ipv4Addr::new(10, 77, 2, 5)];

/// `10.77.1.1:port`: a frontend address as a client dials it.
pub fn vip(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(LB_VIP), port)
}

/// True when the process can create namespaces and load XDP programs.
#[allow(unsafe_code)] // geteuid(2): libc has no safe wrapper
pub fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Each listed function, taking the veth kind, becomes a module with one test per kind
/// (kernel-default veths and wire-like ones). The calling file imports `anyhow::Result`.
#[macro_export]
macro_rules! on_both_veths {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::*;

            #[test]
            fn default_veth() -> anyhow::Result<()> {
                $crate::require_root!();
                super::$name($crate::VethKind::Default)
            }

            #[test]
            fn wire_veth() -> anyhow::Result<()> {
                $crate::require_root!();
                super::$name($crate::VethKind::Wire)
            }
        }
    )*};
}

/// Fails the calling test with a clear message when not running as root: a test that could
/// not run must never look passed.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::is_root() {
            anyhow::bail!("{}: needs root (network namespaces, veth, kernel programs); run as root (`cargo xtask test`)", module_path!());
        }
    };
}

/// The workspace root (the parent of this package).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// Resolves a workspace binary: the environment variable `env_var` if set, else the binary next
/// to the running executable (tests live in `target/<profile>/deps/`, binaries one level up),
/// else `<workspace>/target/debug/<name>`.
pub fn bin_path(env_var: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env_var).filter(|v| !v.is_empty()) {
        return PathBuf::from(path);
    }
    if let Ok(exe) = std::env::current_exe() {
        let mut dir = exe.parent().map(PathBuf::from);
        if dir.as_ref().and_then(|d| d.file_name()).is_some_and(|n| n == "deps") {
            dir = dir.and_then(|d| d.parent().map(PathBuf::from));
        }
        if let Some(candidate) = dir.map(|d| d.join(name)).filter(|p| p.is_file()) {
            return candidate;
        }
    }
    workspace_root().join("target").join("debug").join(name)
}

/// The daemon binary: `LB_USER_BIN`, else `target/debug/lb-user`.
pub fn lb_user_bin() -> PathBuf {
    bin_path("LB_USER_BIN", "lb-user")
}

/// The backend binary: `LB_BACKEND_BIN`, else `target/debug/lb-backend`.
pub fn lb_backend_bin() -> PathBuf {
    bin_path("LB_BACKEND_BIN", "lb-backend")
}

/// Polls `probe` every `every` until it yields `Some` or `timeout` passes (bounded in time and,
/// through the interval, in count). Returns the last value seen as `None` on timeout.
pub fn wait_for<T>(timeout: Duration, every: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}
