//! The applied configuration: an immutable snapshot of what `lb_core::snapshot::compile`
//! checked and parsed, bound to the daemon's run-time state (server health and live
//! connections, counters, stickiness tables, balancer tables), so that the per-connection
//! path only reads.
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use crate::{
    dataplane::server_state::{Runtimes, ServerRuntime},
    telemetry::counters::{FarmCounters, FrontendCounters, RouteCounters},
};
use lb_core::{
    balance::{Backend, Balancer, Live},
    error::ConfigError,
    model::{Fastpath, OnMarkedDown, Probe, ProxyProtocolVersion, ServiceConfig},
    routing::{CompiledRule, ConnFacts, HelloFacts},
    snapshot::{compile, Compiled, FarmSpec, FrontendSpec, RouteSpec, ServerSpec, TargetSpec},
};
// The daemon's plans carry these as they are.
pub use lb_core::snapshot::{AclMode, SourceAcl};

#[derive(Debug, Clone)]
pub struct ServerPlan {
    pub id: u32,
    pub name: String,
    pub address: SocketAddr,
    pub weight: u32,
    pub backup: bool,
    pub active: bool,
    /// Health checks apply only when set.
    pub probe: bool,
    /// Probes speak TLS to this server.
    pub ssl: bool,
    pub proxy_protocol: Option<ProxyProtocolVersion>,
    pub on_marked_down: Option<OnMarkedDown>,
    /// Concurrent connections before `first` moves on to the next server (beyond IPLB).
    pub maxconn: Option<u32>,
    /// Health and live connections; shared across snapshots for the same server id.
    pub runtime: Arc<ServerRuntime>,
}

impl ServerPlan {
    fn bind(spec: ServerSpec, runtime: Arc<ServerRuntime>) -> Self {
        let ServerSpec { id, name, address, weight, backup, active, probe, ssl, proxy_protocol, on_marked_down, maxconn } = spec;
        Self { id, name, address, weight, backup, active, probe, ssl, proxy_protocol, on_marked_down, maxconn, runtime }
    }

    /// The server as balancing sees it.
    pub fn backend(&self) -> Backend {
        Backend { id: self.id, address: self.address, weight: self.weight, backup: self.backup, active: self.active, maxconn: self.maxconn }
    }

    #[cfg(test)]
    pub fn test_default() -> Self {
        Self {
            id: 0,
            name: String::new(),
            address: "127.0.0.1:1".parse().expect("literal"),
            weight: 1,
            backup: false,
            active: true,
            probe: false,
            ssl: false,
            proxy_protocol: None,
            on_marked_down: None,
            maxconn: None,
            runtime: Arc::default(),
        }
    }
}

#[derive(Debug)]
pub struct FarmPlan {
    pub id: u32,
    pub name: String,
    /// Every configured server, including inactive and zero-weight ones (probed, reported).
    pub servers: Vec<Arc<ServerPlan>>,
    pub balancer: Balancer,
    pub probe: Option<Probe>,
    /// ALPN protocols the routes to this farm select on (a `tls` probe offers them and
    /// requires the server to pick one).
    pub probe_alpn: Vec<Vec<u8>>,
    /// Shared across snapshots for the same farm id.
    pub counters: Arc<FarmCounters>,
}

impl FarmPlan {
    fn bind(spec: FarmSpec, runtimes: &Runtimes) -> Self {
        let FarmSpec { id, name, servers, balance, sticky, probe, probe_alpn } = spec;
        let backends: Vec<Backend> = servers.iter().map(ServerSpec::backend).collect();
        let servers = servers
            .into_iter()
            .map(|s| {
                let runtime = runtimes.get_or_create(s.id);
                Arc::new(ServerPlan::bind(s, runtime))
            })
            .collect();
        let sticky = sticky.then(|| runtimes.sticky_table(id));
        Self { id, name, servers, balancer: Balancer::new(balance, &backends, sticky), probe, probe_alpn, counters: runtimes.farm_counters(id) }
    }

    /// A server for a new connection from `client`, or None when none can take it.
    /// `excluded` are servers that just failed to accept this connection.
    pub fn pick(&self, client: IpAddr, excluded: &[u32]) -> Option<&Arc<ServerPlan>> {
        self.balancer.pick(client, excluded, &ServersLive(&self.servers)).map(|i| &self.servers[i])
    }
}

/// The balancer reads health and live connections from the servers' shared runtime.
struct ServersLive<'a>(&'a [Arc<ServerPlan>]);

impl Live for ServersLive<'_> {
    fn is_up(&self, index: usize) -> bool {
        self.0[index].runtime.is_up()
    }

    fn active_connections(&self, index: usize) -> u32 {
        self.0[index].runtime.active_connections()
    }
}

#[derive(Debug)]
pub enum RouteTarget {
    Farm(Arc<FarmPlan>),
    Reject,
}

#[derive(Debug)]
pub struct RoutePlan {
    pub id: u32,
    pub target: RouteTarget,
    pub rules: Vec<CompiledRule>,
    /// Shared across snapshots for the same route id.
    pub counters: Arc<RouteCounters>,
}

#[derive(Debug)]
pub struct FrontendPlan {
    pub id: u32,
    pub name: String,
    pub ports: Vec<u16>,
    /// Empty: every address of the host, IPv4 and IPv6.
    pub addresses: Vec<IpAddr>,
    pub acl: SourceAcl,
    pub default_farm: Option<Arc<FarmPlan>>,
    /// In evaluation order: reject routes first, then ascending weight, then creation order.
    pub routes: Vec<RoutePlan>,
    pub inspect_timeout: Duration,
    /// A relayed connection idle this long is closed; None: never.
    pub idle_timeout: Option<Duration>,
    pub max_connections: u32,
    pub fastpath: Fastpath,
    /// False when no rule looks at the ClientHello: the decision is made at accept time and
    /// server-first protocols work.
    pub needs_hello: bool,
    /// Shared across snapshots for the same frontend id.
    pub counters: Arc<FrontendCounters>,
}

/// What to do with a connection.
#[derive(Debug)]
pub enum Decision<'a> {
    Farm {
        route_id: Option<u32>,
        farm: &'a Arc<FarmPlan>,
        route: Option<&'a RoutePlan>,
    },
    Reject {
        route_id: u32,
        route: &'a RoutePlan,
    },
    /// Nothing matched and the frontend has no default farm.
    Close,
}

impl Decision<'_> {
    /// The route that decided, if one did (not the default farm).
    pub fn route(&self) -> Option<&RoutePlan> {
        match self {
            Decision::Farm { route, .. } => *route,
            Decision::Reject { route, .. } => Some(route),
            Decision::Close => None,
        }
    }
}

impl FrontendPlan {
    /// `farms` holds every farm the compiled frontend references (compile checked them).
    fn bind(spec: FrontendSpec, farms: &HashMap<u32, Arc<FarmPlan>>, runtimes: &Runtimes) -> Self {
        let FrontendSpec { id, name, ports, addresses, acl, default_farm, routes, inspect_timeout, idle_timeout, max_connections, fastpath, needs_hello } =
            spec;
        let farm = |farm_id: u32| Arc::clone(&farms[&farm_id]);
        let routes = routes
            .into_iter()
            .map(|RouteSpec { id, target, rules }| RoutePlan {
                id,
                target: match target {
                    TargetSpec::Farm(farm_id) => RouteTarget::Farm(farm(farm_id)),
                    TargetSpec::Reject => RouteTarget::Reject,
                },
                rules,
                counters: runtimes.route_counters(id),
            })
            .collect();
        Self {
            id,
            name,
            ports,
            addresses,
            acl,
            default_farm: default_farm.map(farm),
            routes,
            inspect_timeout,
            idle_timeout,
            max_connections,
            fastpath,
            needs_hello,
            counters: runtimes.frontend_counters(id),
        }
    }

    pub fn decide<H: HelloFacts>(&self, facts: &ConnFacts<'_, H>) -> Decision<'_> {
        for route in &self.routes {
            if route.rules.iter().all(|rule| rule.matches(facts)) {
                return match &route.target {
                    RouteTarget::Farm(farm) => Decision::Farm { route_id: Some(route.id), farm, route: Some(route) },
                    RouteTarget::Reject => Decision::Reject { route_id: route.id, route },
                };
            }
        }
        match &self.default_farm {
            Some(farm) => Decision::Farm { route_id: None, farm, route: None },
            None => Decision::Close,
        }
    }
}

#[derive(Debug, Default)]
pub struct Snapshot {
    pub frontends: Vec<Arc<FrontendPlan>>,
    pub farms: HashMap<u32, Arc<FarmPlan>>,
}

impl Snapshot {
    /// Validates the whole configuration and compiles it; the first error wins and nothing
    /// of a failed configuration is used.
    pub fn compile(config: &ServiceConfig) -> Result<Self, ConfigError> {
        Self::compile_in(config, &Runtimes::default())
    }

    /// Compiles with the run-time state (health, live connections, stickiness) of servers
    /// and farms that `runtimes` already knows, so that a refresh keeps it.
    pub fn compile_in(config: &ServiceConfig, runtimes: &Runtimes) -> Result<Self, ConfigError> {
        let Compiled { frontends, farms } = compile(config)?;
        let farms: HashMap<u32, Arc<FarmPlan>> = farms.into_iter().map(|f| (f.id, Arc::new(FarmPlan::bind(f, runtimes)))).collect();
        let frontends = frontends.into_iter().map(|f| Arc::new(FrontendPlan::bind(f, &farms, runtimes))).collect();
        Ok(Self { frontends, farms })
    }
}

#[cfg(test)]
mod tests;
