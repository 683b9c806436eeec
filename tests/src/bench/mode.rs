//! The modes the benchmark compares and what each changes: which load balancer runs in the
//! lb namespace (none, a peer a user would pick instead, or our daemon with which frontend
//! `fastpath`), on which interfaces the daemon attaches its XDP program, and where clients
//! dial.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

use anyhow::{bail, Context, Result};

use super::peers::{Peer, PeerKind};
use super::usage::alive;
use crate::config::{Config, Farm, Frontend, Route, Rule, Server};
use crate::daemon::{Daemon, DaemonOpts};
use crate::netns::{LB_CLI_IF, LB_SRV_IF};
use crate::{Topology, LB_VIP};

/// nginx's h2 server (the h2 farm's only server) and h1 server (the h1 farm's).
pub const H2_SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 77, 2, 2)), 8443);
pub const H1_SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 77, 2, 4)), 8443);
/// The frontend's port on the load balancer (ours and the peers').
pub const FRONTEND_PORT: u16 = 443;

/// The frontend every load balancer listens on.
pub fn frontend() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(LB_VIP), FRONTEND_PORT)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    /// No load balancer: the client dials nginx, the lb namespace forwards packets (the limit).
    Direct,
    /// HAProxy in TCP mode, routing on the ClientHello's ALPN, splicing both ways.
    Haproxy,
    /// nginx `stream {}` with `ssl_preread`, routing on the ALPN.
    NginxStream,
    /// Our daemon relaying through user-space buffers (`fastpath: copy`).
    Copy,
    /// Our daemon relaying with splice(2) (`fastpath: splice`).
    Splice,
    /// Our daemon handing every routed connection to its kernel fast path right after the
    /// hello (`fastpath: xdp`).
    Xdp,
    /// Our daemon as deployed (`fastpath: auto`, the default): splice first, the kernel
    /// hand-off once a connection has moved the daemon's threshold.
    Auto,
}

impl Mode {
    pub const ALL: [Mode; 7] = [Mode::Direct, Mode::Haproxy, Mode::NginxStream, Mode::Copy, Mode::Splice, Mode::Xdp, Mode::Auto];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Direct => "direct",
            Mode::Haproxy => "haproxy",
            Mode::NginxStream => "nginx-stream",
            Mode::Copy => "copy",
            Mode::Splice => "splice",
            Mode::Xdp => "xdp",
            Mode::Auto => "auto",
        }
    }

    /// Whether this mode runs our daemon (and so has its counters).
    pub fn is_ours(self) -> bool {
        matches!(self, Mode::Copy | Mode::Splice | Mode::Xdp | Mode::Auto)
    }

    /// Where an HTTP/2 client dials in this mode.
    pub fn h2_target(self) -> SocketAddr {
        match self {
            Mode::Direct => H2_SERVER,
            _ => frontend(),
        }
    }

    /// Where an HTTP/1.1 client dials in this mode (the same frontend: ALPN routes).
    pub fn h1_target(self) -> SocketAddr {
        match self {
            Mode::Direct => H1_SERVER,
            _ => frontend(),
        }
    }

    /// The load balancer's interfaces our daemon attaches its kernel programs to (`--iface`;
    /// it picks the hook on each by itself). Copy and splice keep them where a deployment
    /// has them (the client side: source ACL, accounting); the hand-off needs both sides to
    /// redirect frames between them.
    pub fn xdp_ifaces(self) -> Vec<String> {
        match self {
            Mode::Copy | Mode::Splice => vec![LB_CLI_IF.to_string()],
            Mode::Xdp | Mode::Auto => vec![LB_CLI_IF.to_string(), LB_SRV_IF.to_string()],
            Mode::Direct | Mode::Haproxy | Mode::NginxStream => Vec::new(),
        }
    }

    /// Our daemon's configuration: one frontend on :443 with this mode's `fastpath`, h2
    /// clients (ALPN) to the h2 farm, everything else to the h1 farm. The peers get the same
    /// routing in their own words (see `peers`).
    pub fn config(self) -> Config {
        let frontend = Frontend::new(1, &FRONTEND_PORT.to_string()).default_farm(2).named("bench").fastpath(self.name());
        Config::new()
            .frontend(frontend)
            .farm(Farm::new(1, "h2").server(server(1, H2_SERVER)))
            .farm(Farm::new(2, "h1").server(server(2, H1_SERVER)))
            .route(Route::to_farm(1, 1, 1).rule(Rule::new("protocol", "is", "http/2.0")))
    }

    /// Starts this mode's load balancer in the lb namespace (none for `direct`).
    /// `xdp_mode` is the daemon's `--xdp-mode`, `lb_workers` the threads (or worker
    /// processes) of whichever load balancer it is.
    pub fn start_lb(self, topo: &Topology, xdp_mode: &str, lb_workers: usize) -> Result<Option<Lb>> {
        let peer = |kind| Peer::start(kind, topo.lb(), lb_workers).map(|p| Some(Lb::Peer(p)));
        match self {
            Mode::Direct => Ok(None),
            Mode::Haproxy => peer(PeerKind::Haproxy),
            Mode::NginxStream => peer(PeerKind::NginxStream),
            Mode::Copy | Mode::Splice | Mode::Xdp | Mode::Auto => {
                // The frontend's `fastpath` alone selects the mode.
                let opts = DaemonOpts {
                    xdp_mode: xdp_mode.to_string(),
                    ifaces: self.xdp_ifaces(),
                    print_log_on_drop: false,
                    // The `pinned` workload times API requests beside the connections.
                    extra_args: vec!["--api".into(), "127.0.0.1:0".into(), "--worker-threads".into(), lb_workers.to_string()],
                    ..DaemonOpts::default()
                };
                let daemon = Daemon::start_with(topo, &self.config(), opts).with_context(|| format!("starting lb-user for mode {self}"))?;
                Ok(Some(Lb::Ours(daemon)))
            }
        }
    }
}

/// The load balancer of a mode, running; stopped on drop.
pub enum Lb {
    Ours(Daemon),
    Peer(Peer),
}

impl Lb {
    /// Our daemon, if this is it.
    pub fn daemon(&self) -> Option<&Daemon> {
        match self {
            Lb::Ours(d) => Some(d),
            Lb::Peer(_) => None,
        }
    }

    /// Every process whose CPU time and memory are the load balancer's: the daemon's one
    /// process (all its threads), or a peer's process tree (nginx's master and workers).
    pub fn pids(&self) -> Result<Vec<u32>> {
        match self {
            Lb::Ours(d) => Ok(vec![d.pid()?]),
            Lb::Peer(p) => p.pids(),
        }
    }

    /// Whether the load balancer's (main) process still runs.
    pub fn is_alive(&self) -> bool {
        let main = match self {
            Lb::Ours(d) => d.pid().ok(),
            Lb::Peer(p) => p.pid(),
        };
        main.is_some_and(alive)
    }

    /// Its log, for a failure report.
    pub fn log_excerpt(&self) -> String {
        match self {
            Lb::Ours(d) => d.log_excerpt(),
            Lb::Peer(p) => p.log_tail(),
        }
    }
}

fn server(id: u32, addr: SocketAddr) -> Server {
    Server::new(id, &addr.ip().to_string(), addr.port())
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Mode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match Mode::ALL.iter().find(|m| m.name() == s) {
            Some(m) => Ok(*m),
            None => {
                let names: Vec<&str> = Mode::ALL.iter().map(|m| m.name()).collect();
                bail!("unknown mode {s:?} ({})", names.join(", "))
            }
        }
    }
}
