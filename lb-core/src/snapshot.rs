//! The configuration compiled: every check a refresh makes (ids, references, ports, ranges,
//! rules, probes) and everything parsed once (routes pre-sorted, rules compiled, CIDRs and
//! addresses parsed, server lists resolved), so that the per-connection path only reads.
//!
//! Pure: the daemon binds the result to its run-time state (health, counters, balancer
//! tables) in `lb-user`'s snapshot; validating a write compiles without any of it.
mod spec;

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use ipnet::IpNet;

use crate::{
    error::ConfigError,
    model::{Farm, Frontend, Route, ServerStatus, ServiceConfig},
    routing::{parse_source, CompiledRule},
};

pub use spec::{AclMode, Compiled, FarmSpec, FrontendSpec, RouteSpec, ServerSpec, SourceAcl, TargetSpec};

/// How long a client has to complete its ClientHello when the frontend does not say.
pub const DEFAULT_INSPECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Live connections a frontend carries before its listeners stop accepting.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 20_000;
const MAX_MAX_CONNECTIONS: u32 = 1_000_000;
/// A frontend's `idleTimeout` when unset: like the hand-off's `--handoff-idle-timeout`.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u32 = 900;
/// A week: `idleTimeout: 0` is there for longer.
const MAX_IDLE_TIMEOUT_SECS: u32 = 604_800;
const MAX_PORT: u16 = 49151;

/// Validates the whole configuration and compiles it; the first error wins and nothing of a
/// failed configuration is used.
pub fn compile(config: &ServiceConfig) -> Result<Compiled, ConfigError> {
    let mut farms = compile_farms(&config.farms)?;
    attach_probe_alpn(&mut farms, &config.routes);
    let mut frontends = Vec::new();
    let mut frontend_ids = HashSet::new();
    for frontend in &config.frontends {
        let id = required_id("frontend", frontend.frontend_id, "frontendId")?;
        if !frontend_ids.insert(id) {
            return Err(ConfigError::new("frontend", Some(id), "frontendId", "duplicate id"));
        }
        frontends.push(compile_frontend(frontend, id, &farms)?);
    }
    let mut route_ids = HashSet::new();
    let mut routes_by_frontend: HashMap<u32, Vec<(u16, RouteSpec)>> = HashMap::new();
    for route in &config.routes {
        let id = required_id("route", route.route_id, "routeId")?;
        if !route_ids.insert(id) {
            return Err(ConfigError::new("route", Some(id), "routeId", "duplicate id"));
        }
        if !frontend_ids.contains(&route.frontend_id) {
            return Err(ConfigError::new("route", Some(id), "frontendId", format!("frontend {} does not exist", route.frontend_id)));
        }
        let weight = route.weight.unwrap_or(0);
        routes_by_frontend.entry(route.frontend_id).or_default().push((weight, compile_route(route, id, &farms)?));
    }
    for frontend in &mut frontends {
        let mut routes = routes_by_frontend.remove(&frontend.id).unwrap_or_default();
        // Ids grow with creation, so they stand for creation order.
        routes.sort_by_key(|(weight, route)| (route.target != TargetSpec::Reject, *weight, route.id));
        frontend.routes = routes.into_iter().map(|(_, r)| r).collect();
        frontend.needs_hello = frontend.routes.iter().flat_map(|r| &r.rules).any(CompiledRule::needs_hello);
    }
    check_listen_conflicts(&frontends)?;
    let mut farms: Vec<(usize, FarmSpec)> = farms.into_values().collect();
    farms.sort_by_key(|(position, _)| *position);
    Ok(Compiled { frontends, farms: farms.into_iter().map(|(_, farm)| farm).collect() })
}

/// Farms by id, each with its position in the configuration.
type Farms = HashMap<u32, (usize, FarmSpec)>;

fn required_id(object: &'static str, id: Option<u32>, field: &'static str) -> Result<u32, ConfigError> {
    match id {
        Some(0) => Err(ConfigError::new(object, Some(0), field, "ids start at 1")),
        Some(id) => Ok(id),
        None => Err(ConfigError::new(object, None, field, "missing id")),
    }
}

fn compile_farms(farms: &[Farm]) -> Result<Farms, ConfigError> {
    let mut plans = HashMap::new();
    let mut server_ids = HashSet::new();
    for (position, farm) in farms.iter().enumerate() {
        let id = required_id("farm", farm.farm_id, "farmId")?;
        let balance = farm.balance.unwrap_or_default();
        if farm.port == Some(0) || farm.port.is_some_and(|p| p > MAX_PORT) {
            return Err(ConfigError::new("farm", Some(id), "port", format!("port must be in 1..={MAX_PORT}")));
        }
        if let Some(probe) = &farm.probe {
            crate::probe::validate(probe, id)?;
        }
        let mut servers = Vec::new();
        for server in &farm.servers {
            let sid = required_id("server", server.server_id, "serverId")?;
            if !server_ids.insert(sid) {
                return Err(ConfigError::new("server", Some(sid), "serverId", "duplicate id"));
            }
            let err = |field, message: String| ConfigError::new("server", Some(sid), field, message);
            let address: IpAddr = server.address.trim().parse().map_err(|_| err("address", format!("{:?} is not an IPv4 or IPv6 address", server.address)))?;
            let port = server.port.or(farm.port).ok_or_else(|| err("port", "no port on the server nor on its farm".into()))?;
            if port == 0 {
                return Err(err("port", "port must be in 1..=65535".into()));
            }
            let weight = server.weight.unwrap_or(1);
            if weight > 256 {
                return Err(err("weight", format!("weight {weight} is out of 0..=256")));
            }
            servers.push(ServerSpec {
                id: sid,
                name: server.display_name.clone().unwrap_or_else(|| format!("server {sid}")),
                address: SocketAddr::new(address, port),
                weight: weight.into(),
                backup: server.backup,
                active: server.status.unwrap_or_default() == ServerStatus::Active,
                probe: server.probe,
                ssl: server.ssl,
                proxy_protocol: server.proxy_protocol_version,
                on_marked_down: server.on_marked_down,
                maxconn: server.maxconn,
            });
        }
        let plan = FarmSpec {
            id,
            name: farm.display_name.clone().unwrap_or_else(|| format!("farm {id}")),
            servers,
            balance,
            sticky: farm.stickiness.is_some(),
            probe: farm.probe.clone(),
            probe_alpn: Vec::new(),
        };
        if plans.insert(id, (position, plan)).is_some() {
            return Err(ConfigError::new("farm", Some(id), "farmId", "duplicate id"));
        }
    }
    Ok(plans)
}

fn compile_frontend(frontend: &Frontend, id: u32, farms: &Farms) -> Result<FrontendSpec, ConfigError> {
    let err = |field, message: String| ConfigError::new("frontend", Some(id), field, message);
    let ports = parse_ports(&frontend.port).map_err(|m| err("port", m))?;
    let default_farm = match frontend.default_farm_id {
        Some(farm_id) if farms.contains_key(&farm_id) => Some(farm_id),
        Some(farm_id) => return Err(err("defaultFarmId", format!("farm {farm_id} does not exist"))),
        None => None,
    };
    let parse_nets = |field, list: &Option<Vec<String>>| -> Result<Vec<IpNet>, ConfigError> {
        list.iter().flatten().map(|s| parse_source(s.trim()).ok_or_else(|| err(field, format!("{s:?} is not an IP address or CIDR")))).collect()
    };
    let allowed = parse_nets("allowedSource", &frontend.allowed_source)?;
    let denied = parse_nets("deniedSource", &frontend.denied_source)?;
    let acl = match (allowed.is_empty(), denied.is_empty()) {
        (true, true) => SourceAcl { mode: AclMode::None, nets: vec![] },
        (false, true) => SourceAcl { mode: AclMode::Allow, nets: allowed },
        (true, false) => SourceAcl { mode: AclMode::Deny, nets: denied },
        (false, false) => return Err(err("allowedSource", "allowedSource and deniedSource can not both be set".into())),
    };
    let addresses = frontend
        .dedicated_ipfo
        .iter()
        .flatten()
        .map(|s| {
            let s = s.trim();
            // IPLB writes failover IPs as /32 CIDRs.
            let bare = s.strip_suffix("/32").or_else(|| s.strip_suffix("/128")).unwrap_or(s);
            bare.parse::<IpAddr>().map_err(|_| err("dedicatedIpfo", format!("{s:?} is not an IP address")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let inspect_timeout = match frontend.inspect_timeout {
        None => DEFAULT_INSPECT_TIMEOUT,
        Some(secs) if secs.is_finite() && (0.1..=300.0).contains(&secs) => Duration::from_secs_f64(secs),
        Some(secs) => return Err(err("inspectTimeout", format!("{secs} is out of 0.1..=300 seconds"))),
    };
    let idle_timeout = match frontend.idle_timeout.unwrap_or(DEFAULT_IDLE_TIMEOUT_SECS) {
        0 => None,
        secs if secs <= MAX_IDLE_TIMEOUT_SECS => Some(Duration::from_secs(secs.into())),
        secs => return Err(err("idleTimeout", format!("{secs} is out of 0..={MAX_IDLE_TIMEOUT_SECS} seconds (0: no idle timeout)"))),
    };
    let max_connections = match frontend.max_connections {
        None => DEFAULT_MAX_CONNECTIONS,
        Some(n) if (1..=MAX_MAX_CONNECTIONS).contains(&n) => n,
        Some(n) => return Err(err("maxConnections", format!("{n} is out of 1..={MAX_MAX_CONNECTIONS}"))),
    };
    Ok(FrontendSpec {
        id,
        max_connections,
        fastpath: frontend.fastpath.unwrap_or_default(),
        name: frontend.display_name.clone().unwrap_or_else(|| format!("frontend {id}")),
        ports: if frontend.disabled { vec![] } else { ports },
        addresses,
        acl,
        default_farm,
        routes: vec![],
        inspect_timeout,
        idle_timeout,
        needs_hello: false,
    })
}

fn compile_route(route: &Route, id: u32, farms: &Farms) -> Result<RouteSpec, ConfigError> {
    let err = |field, message: String| ConfigError::new("route", Some(id), field, message);
    if route.weight.is_some_and(|w| w > 255) {
        return Err(err("weight", "weight must be in 0..=255".into()));
    }
    let target = match route.action.kind.as_str() {
        "reject" => TargetSpec::Reject,
        "farm" => {
            let target = route.action.target.as_deref().ok_or_else(|| err("action.target", "a farm action needs a target farm id".into()))?;
            let farm_id: u32 = target.trim().parse().map_err(|_| err("action.target", format!("{target:?} is not a farm id")))?;
            if !farms.contains_key(&farm_id) {
                return Err(err("action.target", format!("farm {farm_id} does not exist")));
            }
            TargetSpec::Farm(farm_id)
        }
        other => return Err(err("action.type", format!("unknown action {other:?}; expected farm or reject"))),
    };
    let mut rule_ids = HashSet::new();
    let rules = route
        .rules
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            let rid = rule.rule_id.unwrap_or(i as u32 + 1);
            if !rule_ids.insert(rid) {
                return Err(ConfigError::new("rule", Some(rid), "ruleId", format!("duplicate id in route {id}")));
            }
            CompiledRule::compile(rule, rid)
        })
        .collect::<Result<_, _>>()?;
    Ok(RouteSpec { id, target, rules })
}

/// The ALPN ids routes select on, gathered per target farm for its `tls` probe.
fn attach_probe_alpn(farms: &mut Farms, routes: &[Route]) {
    for route in routes {
        let Some(farm_id) = route.action.target.as_deref().and_then(|t| t.trim().parse::<u32>().ok()) else { continue };
        let Some((_, farm)) = farms.get_mut(&farm_id) else { continue };
        for rule in route.rules.iter().filter(|r| !r.negate && (r.match_ == "is" || r.match_ == "in")) {
            let pattern = rule.pattern.as_deref().unwrap_or_default();
            for item in pattern.split(',').map(str::trim) {
                let id: Option<&[u8]> = match (rule.field.as_str(), item) {
                    ("protocol", "http/2.0" | "http/2" | "h2") => Some(b"h2"),
                    ("protocol", "http/1.1") => Some(b"http/1.1"),
                    ("alpn", other) if !other.is_empty() => Some(other.as_bytes()),
                    _ => None,
                };
                if let Some(id) = id {
                    if !farm.probe_alpn.iter().any(|known| known == id) {
                        farm.probe_alpn.push(id.to_vec());
                    }
                }
            }
        }
    }
}

/// `443`, `8000-8010` or `80,443` (and combinations), each in 1..=49151.
pub fn parse_ports(spec: &str) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for part in spec.split(',').map(str::trim) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let parse =
            |s: &str| s.parse::<u16>().ok().filter(|p| (1..=MAX_PORT).contains(p)).ok_or_else(|| format!("{s:?} in {spec:?} is not a port in 1..={MAX_PORT}"));
        let (lo, hi) = (parse(lo)?, parse(hi)?);
        if lo > hi {
            return Err(format!("range {part:?} is reversed"));
        }
        ports.extend(lo..=hi);
    }
    ports.sort_unstable();
    ports.dedup();
    Ok(ports)
}

/// Two enabled frontends may share a port only on distinct dedicated addresses.
fn check_listen_conflicts(frontends: &[FrontendSpec]) -> Result<(), ConfigError> {
    let mut seen: HashMap<(Option<IpAddr>, u16), u32> = HashMap::new();
    for f in frontends {
        for &port in &f.ports {
            let keys: Vec<Option<IpAddr>> = if f.addresses.is_empty() { vec![None] } else { f.addresses.iter().copied().map(Some).collect() };
            for key in keys {
                let clash = seen.get(&(key, port)).or_else(|| seen.get(&(None, port))).or_else(|| {
                    if key.is_none() {
                        seen.iter().find(|((_, p), _)| *p == port).map(|(_, id)| id)
                    } else {
                        None
                    }
                });
                if let Some(other) = clash {
                    return Err(ConfigError::new("frontend", Some(f.id), "port", format!("port {port} is already used by frontend {other}")));
                }
                seen.insert((key, port), f.id);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
