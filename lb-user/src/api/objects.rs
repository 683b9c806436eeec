//! The API's shapes of farms, servers and routes. They carry the read-only fields IPLB gives
//! them (ids, a server's `farmId` and `serverState`, a route's `rules` and `status`), which
//! are accepted and ignored on input so that what a GET returns can be sent back as is.
//! Frontends, rules and probes use the model's own types.
use crate::dataplane::server_state::HealthReport;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::control::{RouteStatus, RouteView};
use lb_core::model::{Balance, Farm, OnMarkedDown, Probe, ProxyProtocolVersion, Route, RouteAction, Rule, Server, ServerStatus, Stickiness};

fn zone_all() -> String {
    lb_core::validate::ALL_ZONES.to_string()
}

/// A TCP farm. Its servers are under `/tcp/farm/{farmId}/server`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = Farm)]
pub struct FarmBody {
    /// Assigned by the service.
    #[serde(default)]
    #[schema(read_only)]
    pub farm_id: Option<u32>,
    /// A zone of the service, or `all` (default).
    #[serde(default = "zone_all")]
    pub zone: String,
    /// Default port of its servers.
    #[serde(default)]
    pub port: Option<u16>,
    /// `roundrobin` when null.
    #[serde(default)]
    pub balance: Option<Balance>,
    #[serde(default)]
    pub stickiness: Option<Stickiness>,
    #[serde(default)]
    pub probe: Option<Probe>,
    #[serde(default)]
    pub display_name: Option<String>,
}

impl From<Farm> for FarmBody {
    fn from(f: Farm) -> Self {
        Self { farm_id: f.farm_id, zone: f.zone, port: f.port, balance: f.balance, stickiness: f.stickiness, probe: f.probe, display_name: f.display_name }
    }
}

impl From<FarmBody> for Farm {
    fn from(f: FarmBody) -> Self {
        Farm {
            farm_id: f.farm_id,
            zone: f.zone,
            port: f.port,
            balance: f.balance,
            stickiness: f.stickiness,
            probe: f.probe,
            display_name: f.display_name,
            servers: Vec::new(),
        }
    }
}

/// A server's health as seen from one zone.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerState {
    pub zone: String,
    /// `unchecked` until health checks run.
    #[schema(example = "unchecked")]
    pub status: String,
    /// RFC 3339; null when never checked.
    pub last_check: Option<String>,
    pub last_error: Option<String>,
}

/// A server of a TCP farm.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = Server)]
pub struct ServerBody {
    /// Assigned by the service.
    #[serde(default)]
    #[schema(read_only)]
    pub server_id: Option<u32>,
    /// The farm it belongs to (from the path).
    #[serde(default)]
    #[schema(read_only)]
    pub farm_id: Option<u32>,
    /// IPv4 or IPv6 address.
    pub address: String,
    /// Null: the farm's port.
    #[serde(default)]
    pub port: Option<u16>,
    /// `active` when null.
    #[serde(default)]
    pub status: Option<ServerStatus>,
    /// 0..=256; 0 takes no new connections; null means 1.
    #[serde(default)]
    pub weight: Option<u16>,
    #[serde(default)]
    pub backup: bool,
    #[serde(default)]
    pub probe: bool,
    #[serde(default)]
    pub ssl: bool,
    #[serde(default)]
    pub proxy_protocol_version: Option<ProxyProtocolVersion>,
    #[serde(default)]
    pub on_marked_down: Option<OnMarkedDown>,
    /// Concurrent connections the `first` algorithm gives this server before the next
    /// (beyond IPLB; null = unlimited).
    #[serde(default)]
    pub maxconn: Option<u32>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    #[schema(read_only)]
    pub server_state: Vec<ServerState>,
}

impl ServerBody {
    /// `health` is the daemon's own zone's verdict (the first of `zones`), when applied here.
    pub fn new(farm_id: u32, s: Server, zones: &[String], health: Option<HealthReport>) -> Self {
        let server_state = zones
            .iter()
            .enumerate()
            .map(|(i, zone)| match health.as_ref().filter(|_| i == 0) {
                Some(h) => ServerState {
                    zone: zone.clone(),
                    status: h.status.to_string(),
                    last_check: h.last_check.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
                    last_error: h.last_error.clone(),
                },
                None => ServerState { zone: zone.clone(), status: "unchecked".into(), last_check: None, last_error: None },
            })
            .collect();
        Self {
            server_id: s.server_id,
            farm_id: Some(farm_id),
            address: s.address,
            port: s.port,
            status: s.status,
            weight: s.weight,
            backup: s.backup,
            probe: s.probe,
            ssl: s.ssl,
            proxy_protocol_version: s.proxy_protocol_version,
            on_marked_down: s.on_marked_down,
            maxconn: s.maxconn,
            display_name: s.display_name,
            server_state,
        }
    }
}

impl From<ServerBody> for Server {
    fn from(s: ServerBody) -> Self {
        Server {
            server_id: s.server_id,
            address: s.address,
            port: s.port,
            status: s.status,
            weight: s.weight,
            backup: s.backup,
            probe: s.probe,
            ssl: s.ssl,
            proxy_protocol_version: s.proxy_protocol_version,
            on_marked_down: s.on_marked_down,
            maxconn: s.maxconn,
            display_name: s.display_name,
        }
    }
}

/// A TCP route. Its rules are under `/tcp/route/{routeId}/rule`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = Route)]
pub struct RouteBody {
    /// Assigned by the service.
    #[serde(default)]
    #[schema(read_only)]
    pub route_id: Option<u32>,
    pub frontend_id: u32,
    /// `{"type": "farm", "target": "<farmId>"}` (target is a string) or `{"type": "reject"}`.
    pub action: RouteAction,
    /// 0..=255; lower is evaluated first (after every reject route); null means 0.
    #[serde(default)]
    pub weight: Option<u16>,
    #[serde(default)]
    pub display_name: Option<String>,
    /// Its rules, in id order.
    #[serde(default)]
    #[schema(read_only)]
    pub rules: Vec<Rule>,
    #[serde(default)]
    #[schema(read_only)]
    pub status: Option<RouteStatus>,
}

impl From<RouteView> for RouteBody {
    fn from(v: RouteView) -> Self {
        let r = v.route;
        Self {
            route_id: r.route_id,
            frontend_id: r.frontend_id,
            action: r.action,
            weight: r.weight,
            display_name: r.display_name,
            rules: r.rules,
            status: Some(v.status),
        }
    }
}

impl From<RouteBody> for Route {
    fn from(r: RouteBody) -> Self {
        Route { route_id: r.route_id, frontend_id: r.frontend_id, action: r.action, weight: r.weight, display_name: r.display_name, rules: Vec::new() }
    }
}
