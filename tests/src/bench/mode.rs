//! The modes the benchmark compares and what each changes: whether the daemon runs, with
//! which frontend `fastpath`, on which interfaces XDP is attached, and where
//! clients dial.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

use anyhow::{bail, Context, Result};

use crate::config::{Config, Farm, Frontend, Route, Rule, Server};
use crate::daemon::{Daemon, DaemonOpts};
use crate::netns::{LB_CLI_IF, LB_SRV_IF};
use crate::{Topology, LB_VIP};

/// nginx's h2 server (the h2 farm's only server) and h1 server (the h1 farm's).
pub const H2_SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 77, 2, 2)), 8443);
pub const H1_SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 77, 2, 4)), 8443);
/// The frontend's port on the load balancer.
pub const FRONTEND_PORT: u16 = 443;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    /// No daemon: the client dials nginx, the lb namespace forwards packets (the limit).
    Direct,
    /// The daemon relays through user-space buffers.
    Copy,
    /// The daemon relays with splice(2).
    Splice,
    /// The daemon hands routed connections to the XDP program (XDP on both interfaces) once
    /// they moved the daemon's threshold (`fastpath: auto`, the production default): short
    /// connections stay on splice, bulk ones go to XDP.
    Xdp,
}

impl Mode {
    pub const ALL: [Mode; 4] = [Mode::Direct, Mode::Copy, Mode::Splice, Mode::Xdp];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Direct => "direct",
            Mode::Copy => "copy",
            Mode::Splice => "splice",
            Mode::Xdp => "xdp",
        }
    }

    /// Where an HTTP/2 client dials in this mode.
    pub fn h2_target(self) -> SocketAddr {
        match self {
            Mode::Direct => H2_SERVER,
            _ => SocketAddr::new(IpAddr::V4(LB_VIP), FRONTEND_PORT),
        }
    }

    /// Where an HTTP/1.1 client dials in this mode (the same frontend: ALPN routes).
    pub fn h1_target(self) -> SocketAddr {
        match self {
            Mode::Direct => H1_SERVER,
            _ => SocketAddr::new(IpAddr::V4(LB_VIP), FRONTEND_PORT),
        }
    }

    /// The load balancer's interfaces that carry the XDP program. Copy and splice keep it
    /// where a deployment has it (the client side: source ACL, accounting); the hand-off
    /// needs it on both sides to redirect frames between them.
    pub fn xdp_ifaces(self) -> Vec<String> {
        match self {
            Mode::Direct => Vec::new(),
            Mode::Copy | Mode::Splice => vec![LB_CLI_IF.to_string()],
            Mode::Xdp => vec![LB_CLI_IF.to_string(), LB_SRV_IF.to_string()],
        }
    }

    /// The daemon's configuration: one frontend on :443 with this mode's `fastpath`, h2
    /// clients (ALPN) to the h2 farm, everything else to the h1 farm.
    pub fn config(self) -> Config {
        let frontend = Frontend::new(1, &FRONTEND_PORT.to_string())
            .default_farm(2)
            .named("bench")
            .fastpath(match self {
                Mode::Xdp => "auto",
                other => other.name(),
            });
        Config::new()
            .frontend(frontend)
            .farm(Farm::new(1, "h2").server(server(1, H2_SERVER)))
            .farm(Farm::new(2, "h1").server(server(2, H1_SERVER)))
            .route(Route::to_farm(1, 1, 1).rule(Rule::new("protocol", "is", "http/2.0")))
    }

    /// Starts the daemon for this mode (none for `direct`). `xdp_mode` is `--xdp-mode`.
    pub fn start_lb(self, topo: &Topology, xdp_mode: &str) -> Result<Option<Daemon>> {
        if self == Mode::Direct {
            return Ok(None);
        }
        // The frontend's `fastpath` alone selects the mode.
        let opts = DaemonOpts {
            xdp_mode: xdp_mode.to_string(),
            ifaces: self.xdp_ifaces(),
            print_log_on_drop: false,
            ..DaemonOpts::default()
        };
        let daemon = Daemon::start_with(topo, &self.config(), opts)
            .with_context(|| format!("starting lb-user for mode {self}"))?;
        Ok(Some(daemon))
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
            None => bail!("unknown mode {s:?} (direct, copy, splice, xdp)"),
        }
    }
}
