//! What a compiled configuration is made of: each object checked, parsed and resolved.
use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use ipnet::IpNet;

use crate::{
    balance::Backend,
    model::{Balance, Fastpath, OnMarkedDown, Probe, ProxyProtocolVersion},
    routing::CompiledRule,
};

/// A server of a farm, checked and resolved (its port defaulted to the farm's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// The server id, unique across the service.
    pub id: u32,
    /// Its display name, or `server ID`.
    pub name: String,
    /// Where connections go.
    pub address: SocketAddr,
    /// 0..=256.
    pub weight: u32,
    /// Serves only when no regular server can.
    pub backup: bool,
    /// `status: active`.
    pub active: bool,
    /// Health checks apply only when set.
    pub probe: bool,
    /// Probes speak TLS to this server.
    pub ssl: bool,
    /// The PROXY protocol header the server receives first, if any.
    pub proxy_protocol: Option<ProxyProtocolVersion>,
    /// What happens to its connections when it is marked down.
    pub on_marked_down: Option<OnMarkedDown>,
    /// Concurrent connections before `first` moves on to the next server (beyond IPLB).
    pub maxconn: Option<u32>,
}

impl ServerSpec {
    /// The server as balancing sees it.
    pub fn backend(&self) -> Backend {
        Backend { id: self.id, address: self.address, weight: self.weight, backup: self.backup, active: self.active, maxconn: self.maxconn }
    }
}

/// A farm, checked, with its servers.
#[derive(Debug, Clone)]
pub struct FarmSpec {
    /// The farm id.
    pub id: u32,
    /// Its display name, or `farm ID`.
    pub name: String,
    /// Every configured server, including inactive and zero-weight ones (probed, reported).
    pub servers: Vec<ServerSpec>,
    /// The algorithm.
    pub balance: Balance,
    /// `stickiness: sourceIp`.
    pub sticky: bool,
    /// The health check, checked against the probe catalogue.
    pub probe: Option<Probe>,
    /// ALPN protocols the routes to this farm select on (a `tls` probe offers them and
    /// requires the server to pick one).
    pub probe_alpn: Vec<Vec<u8>>,
}

/// Whether a frontend's source list admits or refuses the sources it lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclMode {
    /// No list: every source may connect.
    None,
    /// `allowedSource`: only the listed sources.
    Allow,
    /// `deniedSource`: all but the listed sources.
    Deny,
}

/// A frontend's source list, parsed.
#[derive(Debug, Clone)]
pub struct SourceAcl {
    /// How the list applies.
    pub mode: AclMode,
    /// The listed networks (a bare address is a /32 or /128).
    pub nets: Vec<IpNet>,
}

impl SourceAcl {
    /// Whether a client at `source` may connect. The kernel programs apply the same lists to
    /// SYNs on the interfaces they serve; this is the check for every other way in (no
    /// `--iface`, a second NIC, a VLAN, `lo`). `source` must be canonical (an IPv4 client of
    /// a dual-stack socket as IPv4), as the lists hold it.
    pub fn admits(&self, source: IpAddr) -> bool {
        let listed = || self.nets.iter().any(|net| net.contains(&source));
        match self.mode {
            AclMode::None => true,
            AclMode::Allow => listed(),
            AclMode::Deny => !listed(),
        }
    }
}

/// What a matching route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetSpec {
    /// Sends the connection to this farm (known to exist).
    Farm(u32),
    /// Closes the connection.
    Reject,
}

/// A route, checked, with its rules compiled.
#[derive(Debug)]
pub struct RouteSpec {
    /// The route id.
    pub id: u32,
    /// What it does with a matching connection.
    pub target: TargetSpec,
    /// All must match.
    pub rules: Vec<CompiledRule>,
}

/// A frontend, checked, with its routes in evaluation order.
#[derive(Debug)]
pub struct FrontendSpec {
    /// The frontend id.
    pub id: u32,
    /// Its display name, or `frontend ID`.
    pub name: String,
    /// Ports to listen on; empty when the frontend is disabled.
    pub ports: Vec<u16>,
    /// Empty: every address of the host, IPv4 and IPv6.
    pub addresses: Vec<IpAddr>,
    /// Who may connect.
    pub acl: SourceAcl,
    /// The farm for connections no route takes (known to exist).
    pub default_farm: Option<u32>,
    /// In evaluation order: reject routes first, then ascending weight, then creation order.
    pub routes: Vec<RouteSpec>,
    /// How long a client has to complete its ClientHello.
    pub inspect_timeout: Duration,
    /// A relayed connection idle this long is closed; None: never.
    pub idle_timeout: Option<Duration>,
    /// Live connections before the listeners stop accepting.
    pub max_connections: u32,
    /// How a routed connection's bytes move.
    pub fastpath: Fastpath,
    /// False when no rule looks at the ClientHello: the decision is made at accept time and
    /// server-first protocols work.
    pub needs_hello: bool,
}

/// A whole configuration, compiled; farms in configuration order.
#[derive(Debug, Default)]
pub struct Compiled {
    /// Every frontend, in configuration order.
    pub frontends: Vec<FrontendSpec>,
    /// Every farm, in configuration order.
    pub farms: Vec<FarmSpec>,
}
